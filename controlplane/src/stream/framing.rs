//! Framing SIP on a byte stream (RFC 3261 §18.3): a message is its start
//! line and headers up to the empty line, then exactly Content-Length
//! bytes of body (Content-Length is mandatory on streams). Between
//! messages a peer may send the keep-alives of RFC 5626 §3.5.1: a
//! double CRLF "ping", answered with a single CRLF "pong".

/// What a stream may carry before it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message, headers and body, in bytes.
    pub max_message: usize,
    /// The most header lines (start line and folded lines included).
    pub max_headers: usize,
}

impl Default for Limits {
    /// 64 KiB (the largest UDP datagram, so nothing crosses over TCP that
    /// could not over UDP) and 256 header lines.
    fn default() -> Limits {
        Limits {
            max_message: 65_535,
            max_headers: 256,
        }
    }
}

/// One thing read off a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole SIP message.
    Message(Vec<u8>),
    /// A CRLFCRLF keep-alive ping: answer [`PONG`].
    Ping,
}

/// The answer to a keep-alive ping (RFC 5626 §4.4.1).
pub const PONG: &[u8] = b"\r\n";

/// Why a stream broke the framing; the connection is then closed (there is
/// no way to find the next message's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// Headers or the whole message are larger than [`Limits::max_message`].
    #[error("message larger than the limit")]
    TooLarge,
    /// More header lines than [`Limits::max_headers`].
    #[error("too many header lines")]
    TooManyHeaders,
    /// No Content-Length (`l`) header: mandatory on streams (RFC 3261 §18.3).
    #[error("no Content-Length on a stream")]
    NoContentLength,
    /// A Content-Length that is no number, or two that differ.
    #[error("bad Content-Length")]
    BadContentLength,
}

/// Cuts a byte stream into SIP messages: [`Framer::push`] what was read,
/// then take [`Framer::next_frame`] until it gives `None`.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    limits: Limits,
}

impl Framer {
    /// A framer with `limits`.
    pub fn new(limits: Limits) -> Framer {
        Framer {
            buf: Vec::with_capacity(4096),
            limits,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that are not a whole frame yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, `None` until more bytes arrive, or why the
    /// stream cannot be framed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.drain(..4);
                return Ok(Some(Frame::Ping));
            }
            // A lone CRLF (a pong, or stray line ends before a message,
            // RFC 3261 §7.5) is skipped once we know it is not a ping.
            if self.buf.starts_with(b"\r\n") && self.buf.get(2).is_some_and(|&b| b != b'\r') {
                self.buf.drain(..2);
                continue;
            }
            break;
        }
        if self.buf.starts_with(b"\r") && self.buf.len() < 4 {
            return Ok(None);
        }
        let Some(end) = find(&self.buf, b"\r\n\r\n") else {
            if self.buf.len() > self.limits.max_message {
                return Err(FramingError::TooLarge);
            }
            return Ok(None);
        };
        let head = self.buf.get(..end).unwrap_or_default();
        let lines = head.split(|&b| b == b'\n').count();
        if lines > self.limits.max_headers {
            return Err(FramingError::TooManyHeaders);
        }
        let body_len = content_length(head)?;
        let total = end
            .checked_add(4)
            .and_then(|n| n.checked_add(body_len))
            .ok_or(FramingError::TooLarge)?;
        if total > self.limits.max_message {
            return Err(FramingError::TooLarge);
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        let msg = std::mem::replace(&mut self.buf, rest);
        Ok(Some(Frame::Message(msg)))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The Content-Length (or compact `l`) of a header block; every copy must agree.
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found: Option<usize> = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let name = name.trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = value.get(1..).unwrap_or_default().trim_ascii();
        let n = std::str::from_utf8(value)
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or(FramingError::BadContentLength)?;
        if found.is_some_and(|f| f != n) {
            return Err(FramingError::BadContentLength);
        }
        found = Some(n);
    }
    found.ok_or(FramingError::NoContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 0\r\n\r\n";

    fn invite(body: &str) -> Vec<u8> {
        format!(
            "INVITE sip:a@b SIP/2.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn messages_split_at_any_byte_come_out_whole_and_in_order() {
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend(invite("v=0\r\n"));
        stream.extend(b"\r\n");
        stream.extend(OPTIONS);
        for cut in 1..stream.len() {
            let mut f = Framer::new(Limits::default());
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                f.push(part);
                while let Some(frame) = f.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            assert_eq!(
                got,
                vec![
                    Frame::Ping,
                    Frame::Message(invite("v=0\r\n")),
                    Frame::Message(OPTIONS.to_vec())
                ],
                "cut at {cut}"
            );
            assert_eq!(f.pending(), 0);
        }
    }

    #[test]
    fn broken_framing_is_an_error() {
        let cases: [(&[u8], FramingError); 4] = [
            (
                b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n",
                FramingError::NoContentLength,
            ),
            (
                b"INVITE sip:a@b SIP/2.0\r\nContent-Length: x1\r\n\r\n",
                FramingError::BadContentLength,
            ),
            (
                b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n",
                FramingError::BadContentLength,
            ),
            (
                b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 99999999\r\n\r\n",
                FramingError::TooLarge,
            ),
        ];
        for (bytes, err) in cases {
            let mut f = Framer::new(Limits::default());
            f.push(bytes);
            assert_eq!(
                f.next_frame(),
                Err(err),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let limits = Limits {
            max_message: 200,
            max_headers: 3,
        };
        let mut f = Framer::new(limits);
        f.push(b"INVITE sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\nl: 0\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::TooManyHeaders));
        // Headers that never end are cut off at the limit.
        let mut f = Framer::new(limits);
        f.push(&[b'a'; 201]);
        assert_eq!(f.next_frame(), Err(FramingError::TooLarge));
    }
}
