//! Writing SIP messages: a small builder that owns one output buffer and
//! always closes the header section with a correct Content-Length.

use std::io::Write;

/// Builds one message into a `Vec<u8>`.
#[derive(Debug)]
pub struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    /// Starts a request with its Request-Line, `METHOD SP Request-URI SP SIP/2.0 CRLF` (RFC 3261
    /// §7.1); `method` and `uri` are written as given.
    pub fn request(method: &[u8], uri: &[u8]) -> Builder {
        let mut buf = Vec::with_capacity(1024);
        buf.extend_from_slice(method);
        buf.push(b' ');
        buf.extend_from_slice(uri);
        buf.extend_from_slice(b" SIP/2.0\r\n");
        Builder { buf }
    }

    /// Starts a response with its Status-Line, `SIP/2.0 SP code SP reason CRLF` (RFC 3261 §7.2).
    pub fn response(code: u16, reason: &[u8]) -> Builder {
        let mut buf = Vec::with_capacity(1024);
        let _ = write!(buf, "SIP/2.0 {code} ");
        buf.extend_from_slice(reason);
        buf.extend_from_slice(b"\r\n");
        Builder { buf }
    }

    /// `Name: value` from parts written back to back.
    pub fn header(&mut self, name: &str, parts: &[&[u8]]) -> &mut Builder {
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b": ");
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Raw, already terminated header lines.
    pub fn raw(&mut self, lines: &[u8]) -> &mut Builder {
        self.buf.extend_from_slice(lines);
        self
    }

    /// Direct access for writers that stream a header value (the sanitizer).
    pub fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Closes the header section with `Content-Length` (the body's length in bytes) and an empty
    /// line, appends `body`, and returns the whole message.
    pub fn finish(mut self, body: &[u8]) -> Vec<u8> {
        let _ = write!(self.buf, "Content-Length: {}\r\n\r\n", body.len());
        self.buf.extend_from_slice(body);
        self.buf
    }
}

/// The reason phrase of a status code we generate (RFC 3261 section 21 and
/// the RFCs that add codes: 422 RFC 4028); `Unknown` for any other.
pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        422 => "Session Interval Too Small",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::SipMessage;

    #[test]
    fn built_message_parses_back() {
        let mut b = Builder::request(b"OPTIONS", b"sip:10.0.0.1");
        b.header("Via", &[b"SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKx"])
            .header("From", &[b"<sip:a@10.0.0.2>;tag=1"])
            .header("To", &[b"<sip:10.0.0.1>"])
            .header("Call-ID", &[b"abc"])
            .header("CSeq", &[b"1 OPTIONS"]);
        let bytes = b.finish(b"");
        let m = SipMessage::parse(&bytes).unwrap();
        assert_eq!(m.call_id, b"abc");
        assert!(m.body.is_empty());
    }
}
