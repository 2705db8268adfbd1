//! Small RFC 3261 grammar pieces over borrowed bytes: tokens, LWS, quoted
//! strings, comma lists, parameters, name-addr, Via and SIP URIs.
//!
//! Every function returns `None` on a grammar error instead of guessing, so
//! the scanner can answer 400 where RFC 4475 asks for it.

/// `token` characters (RFC 3261 25.1).
pub fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Linear white space, including the CR/LF of folded lines.
pub fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `s` without leading and trailing LWS (see [`is_lws`]); empty when `s` is all LWS.
pub fn trim_lws(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_lws(b)).map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

/// Words separated by LWS.
pub fn split_lws(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&b| is_lws(b)).filter(|w| !w.is_empty())
}

/// Decimal digits into a `u32`; `None` when empty, not digits or above 2^32-1.
pub fn parse_u32(s: &[u8]) -> Option<u32> {
    let s = trim_lws(s);
    if s.is_empty() || s.len() > 10 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = s
        .iter()
        .fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0'));
    u32::try_from(v).ok()
}

/// Decimal digits, saturating at `u32::MAX` (for Max-Forwards and friends).
pub fn parse_u32_saturating(s: &[u8]) -> Option<u32> {
    let s = trim_lws(s);
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |acc, &b| {
        acc.saturating_mul(10).saturating_add(u32::from(b - b'0'))
    }))
}

/// Index just past a quoted string starting at `s[start] == '"'`.
fn skip_quoted(s: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return Some(i + 1),
            b'\\' => {
                let next = *s.get(i + 1)?;
                if next == b'\r' || next == b'\n' {
                    return None;
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    None
}

/// Splits a header value on the commas that separate list elements (outside
/// quotes and angle brackets). Empty elements are kept so callers reject them.
pub fn split_list(s: &[u8]) -> ListIter<'_> {
    ListIter {
        s,
        pos: 0,
        done: false,
    }
}

/// The elements of a comma-separated header value, from [`split_list`]: each trimmed of LWS; a
/// trailing or doubled comma yields an empty element, an unterminated quoted string runs to the
/// end.
#[derive(Debug)]
pub struct ListIter<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let mut i = start;
        let mut in_angle = false;
        while let Some(&b) = self.s.get(i) {
            match b {
                b'"' => match skip_quoted(self.s, i) {
                    Some(end) => {
                        i = end;
                        continue;
                    }
                    None => {
                        i = self.s.len();
                        break;
                    }
                },
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b',' if !in_angle => break,
                _ => {}
            }
            i += 1;
        }
        let item = trim_lws(self.s.get(start..i).unwrap_or_default());
        if i >= self.s.len() {
            self.done = true;
        } else {
            self.pos = i + 1;
        }
        Some(item)
    }
}

/// Whether `s` is a well-formed `*(SEMI generic-param)` list (RFC 3261 §25.1).
/// `s` starts at the first `;` (or is empty).
pub fn params_valid(s: &[u8]) -> bool {
    Params::new(s).all(|p| p.is_some())
}

/// Looks up parameter `name` (case-insensitive) in a `;`-parameter list as [`params_valid`] takes
/// it: `None` when absent (or after a grammar error), `Some(None)` when present without a value,
/// `Some(Some(value))` with the value as written (quotes or `[...]` kept).
pub fn param<'a>(s: &'a [u8], name: &str) -> Option<Option<&'a [u8]>> {
    Params::new(s)
        .map_while(|p| p)
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v)
}

/// One parameter: its name and its value if it has one.
type Param<'a> = (&'a [u8], Option<&'a [u8]>);

/// Iterates parameters; yields `None` once on a grammar error and stops.
struct Params<'a> {
    s: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Params<'a> {
    fn new(s: &'a [u8]) -> Self {
        Params {
            s,
            pos: 0,
            failed: false,
        }
    }

    fn skip_lws(&mut self) {
        while self.s.get(self.pos).copied().is_some_and(is_lws) {
            self.pos += 1;
        }
    }

    fn fail(&mut self) -> Option<Option<Param<'a>>> {
        self.failed = true;
        Some(None)
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Option<Param<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        self.skip_lws();
        if self.pos >= self.s.len() {
            return None;
        }
        if self.s.get(self.pos) != Some(&b';') {
            return self.fail();
        }
        self.pos += 1;
        self.skip_lws();
        let name_start = self.pos;
        while self.s.get(self.pos).copied().is_some_and(is_token) {
            self.pos += 1;
        }
        let name = self.s.get(name_start..self.pos).unwrap_or_default();
        if name.is_empty() {
            return self.fail();
        }
        self.skip_lws();
        if self.s.get(self.pos) != Some(&b'=') {
            return Some(Some((name, None)));
        }
        self.pos += 1;
        self.skip_lws();
        let value_start = self.pos;
        match self.s.get(self.pos) {
            Some(b'"') => match skip_quoted(self.s, self.pos) {
                Some(end) => self.pos = end,
                None => return self.fail(),
            },
            Some(b'[') => match self
                .s
                .get(self.pos..)
                .and_then(|r| r.iter().position(|&b| b == b']'))
            {
                Some(off) => self.pos += off + 1,
                None => return self.fail(),
            },
            _ => {
                while self
                    .s
                    .get(self.pos)
                    .copied()
                    .is_some_and(|b| is_token(b) || b == b':')
                {
                    self.pos += 1;
                }
            }
        }
        let value = self.s.get(value_start..self.pos).unwrap_or_default();
        if value.is_empty() {
            return self.fail();
        }
        Some(Some((name, Some(value))))
    }
}

/// The raw `name[=value]` pieces of a `;`-separated parameter list.
pub fn split_params(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&b| b == b';')
        .map(trim_lws)
        .filter(|p| !p.is_empty())
}

/// `name-addr` or `addr-spec` followed by header parameters (To, From,
/// Contact, Route, Record-Route values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written (quoted string or tokens), possibly empty.
    pub display: &'a [u8],
    /// The URI without the angle brackets: `scheme:rest`, no whitespace or `<>`.
    pub uri: &'a [u8],
    /// Header parameters, starting at the first `;` (may be empty).
    pub params: &'a [u8],
    /// Whether the URI was in `<>`.
    pub bracketed: bool,
}

impl<'a> NameAddr<'a> {
    /// Parses one To, From, Contact, Route or Record-Route value: `"display" <uri>;params`,
    /// `display <uri>;params`, or a bare addr-spec whose `;params` belong to the header (RFC 3261
    /// §20.10). `None` on a grammar error (e.g. an unquoted comma in the display name, spaces
    /// inside `<>`, a bare addr-spec with `?` or `,`, malformed parameters).
    pub fn parse(value: &'a [u8]) -> Option<NameAddr<'a>> {
        let v = trim_lws(value);
        let (display, rest) = if v.first() == Some(&b'"') {
            let end = skip_quoted(v, 0)?;
            let rest = trim_lws(v.get(end..)?);
            if rest.first() != Some(&b'<') {
                return None;
            }
            (v.get(..end)?, rest)
        } else if let Some(lt) = v.iter().position(|&b| b == b'<') {
            let display = trim_lws(v.get(..lt)?);
            if !display.iter().all(|&b| is_token(b) || is_lws(b)) {
                return None;
            }
            (display, v.get(lt..)?)
        } else {
            // addr-spec: the URI ends at the first ';', and may hold no
            // ',', '?' or whitespace (RFC 3261 20.10).
            let end = v.iter().position(|&b| b == b';').unwrap_or(v.len());
            let uri = trim_lws(v.get(..end)?);
            if uri.iter().any(|&b| b == b',' || b == b'?' || is_lws(b)) || !uri_shape_ok(uri) {
                return None;
            }
            let params = v.get(end..)?;
            if !params_valid(params) {
                return None;
            }
            return Some(NameAddr {
                display: b"",
                uri,
                params,
                bracketed: false,
            });
        };
        // rest starts with '<'.
        let gt = rest.iter().position(|&b| b == b'>')?;
        let uri = rest.get(1..gt)?;
        if !uri_shape_ok(uri) {
            return None;
        }
        let params = trim_lws(rest.get(gt + 1..)?);
        if !params_valid(params) {
            return None;
        }
        Some(NameAddr {
            display,
            uri,
            params,
            bracketed: true,
        })
    }

    /// The `tag` parameter (RFC 3261 §19.3); `None` when absent or written without a value.
    pub fn tag(&self) -> Option<&'a [u8]> {
        param(self.params, "tag").flatten()
    }
}

/// `scheme ":" something`, with no whitespace or angle brackets anywhere.
fn uri_shape_ok(uri: &[u8]) -> bool {
    let Some(colon) = uri.iter().position(|&b| b == b':') else {
        return false;
    };
    let scheme = uri.get(..colon).unwrap_or_default();
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && colon + 1 < uri.len()
        && !uri.iter().any(|&b| is_lws(b) || b == b'<' || b == b'>')
}

/// One Via value (RFC 3261 20.42), with whitespace allowed around the `/`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// The transport token as written (`UDP`, `TCP`, ...; any case).
    pub transport: &'a [u8],
    /// The sent-by host: hostname, IPv4 literal or bracketed `[IPv6]`.
    pub host: &'a [u8],
    /// The sent-by port, when written.
    pub port: Option<u16>,
    /// The `branch` parameter value (RFC 3261 §8.1.1.7); never the bare magic cookie `z9hG4bK`.
    pub branch: Option<&'a [u8]>,
    /// Whether an `rport` parameter is present, with or without a value (RFC 3581).
    pub rport: bool,
}

impl<'a> Via<'a> {
    /// Parses one Via value: `SIP / 2.0 / transport`, LWS, sent-by, then parameters. `None` on a
    /// grammar error, for a protocol other than `SIP/2.0`, or for a `branch` without a value or
    /// equal to the bare magic cookie.
    pub fn parse(value: &'a [u8]) -> Option<Via<'a>> {
        let v = trim_lws(value);
        let mut pos = 0;
        let mut fields: [&[u8]; 3] = [b""; 3];
        for (i, field) in fields.iter_mut().enumerate() {
            while v.get(pos).copied().is_some_and(is_lws) {
                pos += 1;
            }
            if i > 0 {
                if v.get(pos) != Some(&b'/') {
                    return None;
                }
                pos += 1;
                while v.get(pos).copied().is_some_and(is_lws) {
                    pos += 1;
                }
            }
            let start = pos;
            while v.get(pos).copied().is_some_and(is_token) {
                pos += 1;
            }
            *field = v.get(start..pos)?;
            if field.is_empty() {
                return None;
            }
        }
        let [name, version, transport] = fields;
        if !name.eq_ignore_ascii_case(b"SIP") || version != b"2.0" {
            return None;
        }
        if !v.get(pos).copied().is_some_and(is_lws) {
            return None;
        }
        let rest = trim_lws(v.get(pos..)?);
        let end = rest
            .iter()
            .position(|&b| b == b';' || is_lws(b))
            .unwrap_or(rest.len());
        let (host, port) = parse_hostport(rest.get(..end)?)?;
        let params = trim_lws(rest.get(end..)?);
        if !params_valid(params) {
            return None;
        }
        let branch = match param(params, "branch") {
            Some(Some(b)) => Some(b),
            Some(None) => return None,
            None => None,
        };
        // The bare magic cookie is no branch at all (RFC 4475 3.2.1).
        if branch.is_some_and(|b| b.eq_ignore_ascii_case(b"z9hG4bK")) {
            return None;
        }
        let rport = param(params, "rport").is_some();
        Some(Via {
            transport,
            host,
            port,
            branch,
            rport,
        })
    }

    /// An RFC 3261 branch (with the magic cookie), usable as a transaction key.
    pub fn rfc3261_branch(&self) -> Option<&'a [u8]> {
        self.branch
            .filter(|b| b.len() > 7 && b.get(..7) == Some(b"z9hG4bK"))
    }
}

/// `host [":" port]`: hostname, IPv4 or `[IPv6]`.
pub fn parse_hostport(s: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let (host, port) = if s.first() == Some(&b'[') {
        let close = s.iter().position(|&b| b == b']')?;
        let host = s.get(..=close)?;
        match s.get(close + 1..)? {
            [] => (host, None),
            [b':', port @ ..] => (host, Some(port)),
            _ => return None,
        }
    } else {
        match s.iter().position(|&b| b == b':') {
            Some(c) => (s.get(..c)?, Some(s.get(c + 1..)?)),
            None => (s, None),
        }
    };
    if host.is_empty()
        || !(host.first() == Some(&b'[')
            || host
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    {
        return None;
    }
    let port = match port {
        Some(p) => Some(u16::try_from(parse_u32(p)?).ok()?),
        None => None,
    };
    Some((host, port))
}

/// A `sip:`/`sips:` URI split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// The user part (before `@`), `;params` of a telephone-subscriber included; `None` when absent
    /// or empty.
    pub user: Option<&'a [u8]>,
    /// The host: hostname, IPv4 literal or bracketed `[IPv6]`.
    pub host: &'a [u8],
    /// The port, when written.
    pub port: Option<u16>,
    /// URI parameters, starting at the first `;` (may be empty).
    pub params: &'a [u8],
    /// Whether a `?headers` part follows (not allowed in a Request-URI or a gateway destination).
    pub has_headers: bool,
}

impl<'a> SipUri<'a> {
    /// Splits a `sip:` or `sips:` URI (scheme case-insensitive; nothing is percent-decoded). `None`
    /// for another scheme or a malformed host or port.
    pub fn parse(uri: &'a [u8]) -> Option<SipUri<'a>> {
        let colon = uri.iter().position(|&b| b == b':')?;
        let scheme = uri.get(..colon)?;
        if !scheme.eq_ignore_ascii_case(b"sip") && !scheme.eq_ignore_ascii_case(b"sips") {
            return None;
        }
        let rest = uri.get(colon + 1..)?;
        let (user, hostpart) = match rest.iter().position(|&b| b == b'@') {
            Some(at) => (Some(rest.get(..at)?), rest.get(at + 1..)?),
            None => (None, rest),
        };
        let end = hostpart
            .iter()
            .position(|&b| b == b';' || b == b'?')
            .unwrap_or(hostpart.len());
        let (host, port) = parse_hostport(hostpart.get(..end)?)?;
        let tail = hostpart.get(end..)?;
        let q = tail.iter().position(|&b| b == b'?');
        let params = tail.get(..q.unwrap_or(tail.len()))?;
        Some(SipUri {
            user: user.filter(|u| !u.is_empty()),
            host,
            port,
            params,
            has_headers: q.is_some(),
        })
    }

    /// The user part without a `;param` tail (telephone-subscriber style).
    pub fn user_number(&self) -> Option<&'a [u8]> {
        self.user
            .map(|u| u.split(|&b| b == b';').next().unwrap_or(u))
    }
}

/// Parses an IPv4 dotted quad.
pub fn parse_ipv4(s: &[u8]) -> Option<std::net::Ipv4Addr> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(b"\"Bob\" <sip:bob@example.com>;tag=x1").unwrap();
        assert_eq!(n.uri, b"sip:bob@example.com");
        assert_eq!(n.tag(), Some(&b"x1"[..]));
        let n = NameAddr::parse(b"sip:bob@example.com;tag=x2").unwrap();
        assert!(!n.bracketed);
        assert_eq!(n.tag(), Some(&b"x2"[..]));
        assert!(NameAddr::parse(b"caller<sip:caller@example.com>;tag=323").is_some());
        assert!(NameAddr::parse(b"Bell, Alexander <sip:a@example.com>").is_none());
        assert!(NameAddr::parse(b"\"W\" < sip:t@example.org >").is_none());
        assert!(NameAddr::parse(b"\"Mr. J. User <sip:j@example.com>").is_none());
        assert!(NameAddr::parse(b"sip:user@example.com?Route=%3Csip:x%3E").is_none());
        assert!(NameAddr::parse(b"\"Joe\" <sip:joe@example.org>;;;;").is_none());
    }

    #[test]
    fn via_forms() {
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.host, b"192.0.2.2");
        assert_eq!(v.branch, Some(&b"390skdjuw"[..]));
        assert!(v.rfc3261_branch().is_none());
        let v = Via::parse(b"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport").unwrap();
        assert_eq!(v.port, Some(5060));
        assert!(v.rport);
        assert!(Via::parse(b"SIP/2.0/UDP 192.0.2.15;;").is_none());
        assert!(Via::parse(b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK").is_none());
    }

    #[test]
    fn list_split_respects_quotes_and_brackets() {
        let items: Vec<_> = split_list(b"<sip:a;x=1,2>, \"a,b\" <sip:b>,,").collect();
        assert_eq!(
            items,
            vec![&b"<sip:a;x=1,2>"[..], b"\"a,b\" <sip:b>", b"", b""]
        );
    }

    #[test]
    fn sip_uri_parts() {
        let u = SipUri::parse(b"sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.host, b"example.com");
        let u = SipUri::parse(b"sip:+1555@10.0.0.1:5080;user=phone").unwrap();
        assert_eq!(u.user, Some(&b"+1555"[..]));
        assert_eq!(u.port, Some(5080));
        assert_eq!(u.params, b";user=phone");
        assert!(
            SipUri::parse(b"sip:user@example.com?Route=x")
                .unwrap()
                .has_headers
        );
    }
}
