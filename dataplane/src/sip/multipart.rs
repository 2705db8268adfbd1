//! Multipart MIME bodies (RFC 2046 section 5.1; in SIP, RFC 5621 and RFC
//! 3261 section 20.15): an SDP offer next to an ISUP message (SIP-I, ITU-T
//! Q.1912.5; SIP-T, RFC 3372), or next to other parts.
//!
//! A body is read by offsets, with no copy and no assumption that a part is
//! text (ISUP is binary). Rebuilding replaces one part's body or leaves parts
//! out and keeps every other byte as it came: preamble, delimiters, part
//! headers, the other parts, the epilogue.

use std::ops::Range;

use super::grammar::{self, trim_lws};

/// One body part, as byte ranges of the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The part with its delimiter: from the CRLF before its `--boundary`
    /// line (or the line itself, at the start of the body) to the CRLF
    /// before the next delimiter. Leaving a part out removes this range.
    pub span: Range<usize>,
    /// The part's `Content-Type` value, empty when it has none (then
    /// `text/plain`, RFC 2046 section 5.1.1).
    pub content_type: Range<usize>,
    /// The part's content, after the blank line ending its headers.
    pub body: Range<usize>,
}

/// A parsed multipart body: the parts in order; what is before the first
/// (the preamble) and from the close delimiter on is kept as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipart<'a> {
    body: &'a [u8],
    /// The parts in order.
    pub parts: Vec<Part>,
    /// Where the close delimiter (`CRLF--boundary--`) starts.
    tail: usize,
}

/// The media type of a `Content-Type` value, without parameters or
/// whitespace: `application/sdp` of `application/sdp; charset=x`.
pub fn media_type(content_type: &[u8]) -> &[u8] {
    trim_lws(
        content_type
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default(),
    )
}

impl<'a> Multipart<'a> {
    /// The parts of `body`, whose `Content-Type` value is `content_type`:
    /// `None` unless the type is `multipart/*` with a `boundary` parameter
    /// (quoted or not) and the body holds at least one part and the close
    /// delimiter.
    pub fn parse(content_type: &[u8], body: &'a [u8]) -> Option<Multipart<'a>> {
        let ty = media_type(content_type);
        if !ty
            .get(..10)
            .is_some_and(|t| t.eq_ignore_ascii_case(b"multipart/"))
        {
            return None;
        }
        let params = content_type
            .iter()
            .position(|&b| b == b';')
            .and_then(|i| content_type.get(i..))?;
        let boundary = grammar::param(params, "boundary")??;
        let boundary = boundary
            .strip_prefix(b"\"")
            .and_then(|b| b.strip_suffix(b"\""))
            .unwrap_or(boundary);
        if boundary.is_empty() || boundary.len() > 70 {
            return None;
        }
        let mut delimiters = Delimiters {
            body,
            boundary,
            from: 0,
        };
        let mut parts = Vec::new();
        let (mut open, mut content, mut last) = delimiters.next()?;
        while !last {
            let (next, next_content, next_last) = delimiters.next()?;
            let part = content.min(next)..next;
            let (headers, part_body) = split_headers(body, part.clone());
            parts.push(Part {
                span: open..next,
                content_type: content_type_of(body, headers),
                body: part_body,
            });
            (open, content, last) = (next, next_content, next_last);
        }
        (!parts.is_empty()).then_some(Multipart {
            body,
            parts,
            tail: open,
        })
    }

    /// The content of part `i` (empty past the last part).
    pub fn part_body(&self, i: usize) -> &'a [u8] {
        self.slice(self.parts.get(i).map(|p| p.body.clone()))
    }

    /// The `Content-Type` value of part `i`, empty when it has none.
    pub fn part_type(&self, i: usize) -> &'a [u8] {
        self.slice(self.parts.get(i).map(|p| p.content_type.clone()))
    }

    /// The first part whose media type is `ty` (case-insensitive).
    pub fn find(&self, ty: &[u8]) -> Option<usize> {
        (0..self.parts.len()).find(|&i| media_type(self.part_type(i)).eq_ignore_ascii_case(ty))
    }

    /// The body again with the parts `keep` says yes to, part `i`'s content
    /// replaced by `with` when `replace` is `Some((i, with))`; every other
    /// byte as it came.
    pub fn rebuild(
        &self,
        replace: Option<(usize, &[u8])>,
        keep: impl Fn(usize) -> bool,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 64);
        let first = self.parts.first().map_or(self.tail, |p| p.span.start);
        out.extend_from_slice(self.slice(Some(0..first)));
        for (i, p) in self.parts.iter().enumerate() {
            if !keep(i) {
                continue;
            }
            match replace {
                Some((r, with)) if r == i => {
                    out.extend_from_slice(self.slice(Some(p.span.start..p.body.start)));
                    out.extend_from_slice(with);
                }
                _ => out.extend_from_slice(self.slice(Some(p.span.clone()))),
            }
        }
        out.extend_from_slice(self.body.get(self.tail..).unwrap_or_default());
        out
    }

    fn slice(&self, r: Option<Range<usize>>) -> &'a [u8] {
        r.and_then(|r| self.body.get(r)).unwrap_or_default()
    }
}

/// The delimiter lines of a body, in order: each as (where it starts,
/// counting the CRLF before it; where the part after it starts; whether it
/// is the close delimiter).
struct Delimiters<'a, 'b> {
    body: &'a [u8],
    boundary: &'b [u8],
    from: usize,
}

impl Delimiters<'_, '_> {
    fn next(&mut self) -> Option<(usize, usize, bool)> {
        let body = self.body;
        let mut i = self.from;
        loop {
            let at = i + find(body.get(i..)?, b"--")?;
            i = at + 2;
            let line_start = at == 0 || body.get(at - 1) == Some(&b'\n');
            if !line_start || !body.get(i..)?.starts_with(self.boundary) {
                continue;
            }
            let mut end = i + self.boundary.len();
            let last = body.get(end..end + 2) == Some(b"--");
            if last {
                end += 2;
            }
            // Transport padding, then the line's end.
            while body.get(end).is_some_and(|&b| b == b' ' || b == b'\t') {
                end += 1;
            }
            let content = match body.get(end..) {
                Some([b'\r', b'\n', ..]) => end + 2,
                Some([b'\n', ..]) => end + 1,
                Some([]) if last => end,
                _ if last => end,
                _ => continue,
            };
            let start = match at.checked_sub(2).and_then(|s| body.get(s..at)) {
                Some(b"\r\n") => at - 2,
                _ if at > 0 && body.get(at - 1) == Some(&b'\n') => at - 1,
                _ => at,
            };
            self.from = content;
            return Some((start, content, last));
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A part's header block and content: the headers end at the first empty
/// line; a part that starts with one has no headers.
fn split_headers(body: &[u8], part: Range<usize>) -> (Range<usize>, Range<usize>) {
    let bytes = body.get(part.clone()).unwrap_or_default();
    if bytes.starts_with(b"\r\n") {
        return (part.start..part.start, part.start + 2..part.end);
    }
    if bytes.starts_with(b"\n") {
        return (part.start..part.start, part.start + 1..part.end);
    }
    match find(bytes, b"\r\n\r\n") {
        Some(i) => (part.start..part.start + i, part.start + i + 4..part.end),
        None => match find(bytes, b"\n\n") {
            Some(i) => (part.start..part.start + i, part.start + i + 2..part.end),
            None => (part.clone(), part.end..part.end),
        },
    }
}

/// The range of the `Content-Type` value in a part's header block.
fn content_type_of(body: &[u8], headers: Range<usize>) -> Range<usize> {
    let mut at = headers.start;
    for line in body
        .get(headers.clone())
        .unwrap_or_default()
        .split(|&b| b == b'\n')
    {
        let start = at;
        at += line.len() + 1;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim_lws(line.get(..colon).unwrap_or_default());
        if !name.eq_ignore_ascii_case(b"content-type") {
            continue;
        }
        let value = line.get(colon + 1..).unwrap_or_default();
        let lead = value.len() - value.trim_ascii_start().len();
        let trimmed = value.trim_ascii();
        let from = start + colon + 1 + lead;
        return from..from + trimmed.len();
    }
    headers.start..headers.start
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISUP: &[u8] = &[
        0x01, 0x00, 0x20, 0x00, 0x0a, 0x03, 0x02, 0x0a, 0x08, 0x83, 0x90, 0x89, 0x67, 0x45, 0x23,
        0x01, 0x0f, b'\r', b'\n', b'-', b'-',
    ];

    fn sipi_body() -> Vec<u8> {
        let mut b = b"--b1\r\nContent-Type: application/sdp\r\n\r\n\
v=0\r\nc=IN IP4 10.0.1.10\r\nm=audio 40000 RTP/AVP 0\r\n\
\r\n--b1\r\nContent-Type: application/ISUP;version=itu-t92+\r\n\
Content-Disposition: signal;handling=optional\r\n\r\n"
            .to_vec();
        b.extend_from_slice(ISUP);
        b.extend_from_slice(b"\r\n--b1--\r\n");
        b
    }

    #[test]
    fn sdp_and_binary_isup_parts_are_found() {
        let body = sipi_body();
        let mp = Multipart::parse(b"multipart/mixed;boundary=b1", &body).unwrap();
        assert_eq!(mp.parts.len(), 2);
        assert_eq!(mp.find(b"application/sdp"), Some(0));
        assert_eq!(mp.find(b"application/isup"), Some(1));
        assert_eq!(
            mp.part_body(0),
            b"v=0\r\nc=IN IP4 10.0.1.10\r\nm=audio 40000 RTP/AVP 0\r\n"
        );
        assert_eq!(mp.part_body(1), ISUP);
        assert_eq!(mp.part_type(1), b"application/ISUP;version=itu-t92+");
        // Quoted boundary, spaces, a preamble and an epilogue.
        let quoted = [b"preamble\r\n".as_slice(), &body, b"epilogue"].concat();
        let mp = Multipart::parse(b"multipart/mixed ; boundary=\"b1\"", &quoted).unwrap();
        assert_eq!(mp.part_body(1), ISUP);
        assert_eq!(mp.rebuild(None, |_| true), quoted);
    }

    #[test]
    fn rebuilt_with_one_part_replaced_or_left_out_the_rest_byte_exact() {
        let body = sipi_body();
        let mp = Multipart::parse(b"multipart/mixed;boundary=b1", &body).unwrap();
        let sdp = b"v=0\r\nc=IN IP4 203.0.113.50\r\nm=audio 20000 RTP/AVP 0\r\n";
        let out = mp.rebuild(Some((0, sdp)), |_| true);
        let again = Multipart::parse(b"multipart/mixed;boundary=b1", &out).unwrap();
        assert_eq!(again.part_body(0), sdp);
        assert_eq!(again.part_body(1), ISUP);
        assert!(out.ends_with(b"\r\n--b1--\r\n"));
        let without_isup = mp.rebuild(None, |i| i != 1);
        let again = Multipart::parse(b"multipart/mixed;boundary=b1", &without_isup).unwrap();
        assert_eq!(again.parts.len(), 1);
        assert_eq!(again.part_body(0), mp.part_body(0));
        let without_sdp = mp.rebuild(None, |i| i != 0);
        let again = Multipart::parse(b"multipart/mixed;boundary=b1", &without_sdp).unwrap();
        assert_eq!(again.parts.len(), 1);
        assert_eq!(again.part_body(0), ISUP);
    }

    #[test]
    fn not_multipart_or_broken_gives_none() {
        let body = sipi_body();
        for ct in [
            b"application/sdp".as_slice(),
            b"multipart/mixed",
            b"multipart/mixed;boundary=",
            b"multipart/mixed;boundary=zz",
        ] {
            assert!(Multipart::parse(ct, &body).is_none(), "{ct:?}");
        }
        // No close delimiter.
        let cut = body.get(..body.len() - 10).unwrap();
        assert!(Multipart::parse(b"multipart/mixed;boundary=b1", cut).is_none());
        // A part without headers is text/plain.
        let bare = b"--b1\r\n\r\nhello\r\n--b1--";
        let mp = Multipart::parse(b"multipart/mixed;boundary=b1", bare).unwrap();
        assert_eq!(mp.part_type(0), b"");
        assert_eq!(mp.part_body(0), b"hello");
    }
}
