//! Which intake lane a SIP message takes before it is parsed: a glance at
//! its start line and its `To` header, no allocation, no full parse.

/// Whether `bytes` continue something the SBC already holds, and so go
/// ahead of new work when the engine is behind: a response, or a request
/// that is part of a transaction or dialog in progress (`ACK`, `BYE`,
/// `CANCEL`, `PRACK`, `UPDATE`, or any request whose `To` has a tag, RFC
/// 3261 §12.2). `false` for a new request (an INVITE, OPTIONS, REGISTER
/// outside a dialog) and for what does not look like SIP.
pub fn continues_dialog(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"SIP/") {
        return true;
    }
    let method = bytes.split(|&b| b == b' ').next().unwrap_or_default();
    if [&b"ACK"[..], b"BYE", b"CANCEL", b"PRACK", b"UPDATE"].contains(&method) {
        return true;
    }
    // The header lines up to the blank line: is there a `To` (or `t`) with a tag?
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let head = bytes.get(..head_end).unwrap_or(bytes);
    head.split(|&b| b == b'\n').skip(1).any(|line| {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, value) = line.split_at(colon);
        let name = name.trim_ascii();
        (name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"t"))
            && value.windows(5).any(|w| w.eq_ignore_ascii_case(b";tag="))
    })
}

#[cfg(test)]
mod tests {
    use super::continues_dialog;

    #[test]
    fn responses_and_in_dialog_requests_continue_new_requests_do_not() {
        let new = b"INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:1@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\nv=0;tag=x\r\n";
        assert!(!continues_dialog(new));
        let re = b"INVITE sip:1@h SIP/2.0\r\nFrom: <sip:a@h>;tag=1\r\nt: <sip:1@h> ;TAG=9\r\n\r\n";
        assert!(continues_dialog(re));
        assert!(continues_dialog(b"SIP/2.0 200 OK\r\n\r\n"));
        assert!(continues_dialog(b"BYE sip:x SIP/2.0\r\n\r\n"));
        assert!(continues_dialog(b"ACK sip:x SIP/2.0\r\n\r\n"));
        assert!(!continues_dialog(
            b"OPTIONS sip:x SIP/2.0\r\nFrom: <sip:a@h>;tag=1\r\n\r\n"
        ));
        assert!(!continues_dialog(b"\x00\x01garbage"));
        assert!(!continues_dialog(b""));
    }
}
