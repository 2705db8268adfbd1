//! Digest authentication toward gateways that challenge (RFC 3261 22.2,
//! RFC 8760): the INVITE goes again with credentials, one CSeq higher on
//! the same leg, and what follows in the dialog stays in step; a second
//! challenge fails the attempt over; without credentials the challenge goes
//! back to the caller as before.

use super::*;
use crate::routing::Credentials;
use crate::sip::digest;

const CHALLENGE: &str =
    "Digest realm=\"lk.example\", nonce=\"n0nce\", qop=\"auth\", algorithm=SHA-256, opaque=\"op\"";

/// `snapshot_multi` with credentials on gateway 1 (203.0.113.10).
fn with_credentials(realm: Option<&str>) -> RouteSnapshot {
    let mut snap = snapshot_multi(100, 100);
    snap.gateways[0].auth = Some(Arc::new(Credentials {
        username: "trunk".into(),
        password: "pw".into(),
        realm: realm.map(str::to_string),
    }));
    snap
}

/// The gateway's 401 (or 407) to `req`, with `challenge`.
fn challenge(req: &str, code: u16, header_name: &str, challenge: &str) -> String {
    answer(req, code, "ch", false).replacen(
        "Content-Length: 0",
        &format!("{header_name}: {challenge}\r\nContent-Length: 0"),
        1,
    )
}

fn invite_in(sent: &[(Side, SocketAddr, String)]) -> String {
    sent.iter()
        .find(|s| s.2.starts_with("INVITE"))
        .map(|s| s.2.clone())
        .expect("an INVITE")
}

#[test]
fn a_challenge_is_answered_and_the_dialog_stays_in_step() {
    let mut peers = Peers::with(with_credentials(None), Policy::default());
    let sent = peers.send(Side::Private, CARRIER, &invite("a1", "a1"));
    let first = invite_in(&sent);
    assert_eq!(header(&first, "CSeq"), Some("1 INVITE"));
    let sent = peers.send(
        Side::Public,
        GATEWAY,
        &challenge(&first, 401, "WWW-Authenticate", CHALLENGE),
    );
    assert!(sent[0].2.starts_with("ACK "), "the 401 is acknowledged");
    assert_eq!(header(&sent[0].2, "CSeq"), Some("1 ACK"));
    let second = invite_in(&sent);
    assert!(
        sent.iter().all(|s| s.1 != addr(CARRIER)),
        "the caller sees nothing of the challenge"
    );
    assert_eq!(sent[1].1, addr(GATEWAY), "the same gateway");
    assert_eq!(header(&second, "CSeq"), Some("2 INVITE"));
    assert_eq!(header(&second, "Call-ID"), header(&first, "Call-ID"));
    assert_eq!(header(&second, "From"), header(&first, "From"));
    assert_ne!(header(&second, "Via"), header(&first, "Via"));
    // The answer, checked the way the gateway would.
    let auth = header(&second, "Authorization").expect("Authorization");
    let ruri = second.split(' ').nth(1).unwrap();
    let cnonce = auth
        .split("cnonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    let ch = digest::parse_challenge(CHALLENGE.as_bytes()).unwrap();
    let want = digest::response(
        &ch,
        &digest::Answer {
            username: "trunk",
            password: "pw",
            method: b"INVITE",
            uri: ruri.as_bytes(),
            cnonce,
            nc: 1,
        },
    );
    assert!(auth.contains(&format!("response=\"{want}\"")), "{auth}");
    assert!(auth.contains("username=\"trunk\"") && auth.contains("algorithm=SHA-256"));
    assert!(auth.contains(&format!("uri=\"{ruri}\"")) && auth.contains("opaque=\"op\""));
    assert!(!second.contains("\"pw\""), "the password never leaves");
    assert_eq!(peers.stats.auth_answered.get(), 1);

    // The 200 goes back with the caller's own CSeq.
    let sent = peers.send(Side::Public, GATEWAY, &answer(&second, 200, "gw", true));
    let ok = sent.iter().find(|s| s.1 == addr(CARRIER)).unwrap();
    assert_eq!(status(&ok.2), 200);
    assert_eq!(header(&ok.2, "CSeq"), Some("1 INVITE"));
    let to = header(&ok.2, "To").unwrap().to_string();
    let from = header(&invite("a1", "a1"), "From").unwrap().to_string();
    // The caller's ACK and BYE go on one CSeq higher.
    let ack = in_dialog(
        "ACK",
        "sip:x@10.0.0.100:5060",
        "a1@10.0.1.10",
        &from,
        &to,
        "ack1",
        1,
    );
    let sent = peers.send(Side::Private, CARRIER, &ack);
    assert_eq!(header(&sent[0].2, "CSeq"), Some("2 ACK"));
    let bye = in_dialog(
        "BYE",
        "sip:x@10.0.0.100:5060",
        "a1@10.0.1.10",
        &from,
        &to,
        "bye1",
        2,
    );
    let sent = peers.send(Side::Private, CARRIER, &bye);
    let out = sent.iter().find(|s| s.2.starts_with("BYE")).unwrap();
    assert_eq!(header(&out.2, "CSeq"), Some("3 BYE"));
    let sent = peers.send(Side::Public, GATEWAY, &answer(&out.2, 200, "gw", false));
    let back = sent.iter().find(|s| s.1 == addr(CARRIER)).unwrap();
    assert_eq!(header(&back.2, "CSeq"), Some("2 BYE"));
}

#[test]
fn a_proxy_challenge_gets_proxy_authorization_with_md5() {
    let mut peers = Peers::with(with_credentials(Some("lk.example")), Policy::default());
    let sent = peers.send(Side::Private, CARRIER, &invite("a2", "a2"));
    let first = invite_in(&sent);
    let md5 = "Digest realm=\"lk.example\", nonce=\"abc\"";
    let sent = peers.send(
        Side::Public,
        GATEWAY,
        &challenge(&first, 407, "Proxy-Authenticate", md5),
    );
    let second = invite_in(&sent);
    let auth = header(&second, "Proxy-Authorization").expect("Proxy-Authorization");
    assert!(
        auth.contains("algorithm=MD5") && !auth.contains("qop"),
        "{auth}"
    );
    assert!(header(&second, "Authorization").is_none());
}

#[test]
fn a_second_challenge_or_another_realm_fails_over() {
    let mut peers = Peers::with(with_credentials(None), Policy::default());
    let sent = peers.send(Side::Private, CARRIER, &invite("a3", "a3"));
    let first = invite_in(&sent);
    let sent = peers.send(
        Side::Public,
        GATEWAY,
        &challenge(&first, 401, "WWW-Authenticate", CHALLENGE),
    );
    let second = invite_in(&sent);
    // A wrong password: challenged again, the next gateway takes the call.
    let sent = peers.send(
        Side::Public,
        GATEWAY,
        &challenge(&second, 401, "WWW-Authenticate", CHALLENGE),
    );
    assert!(sent[0].2.starts_with("ACK "));
    assert_eq!(sent[1].1, addr("203.0.113.11:5060"));
    assert!(
        header(&sent[1].2, "Authorization").is_none(),
        "no credentials there"
    );
    assert_eq!(peers.stats.auth_refused.get(), 1);
    assert_eq!(peers.stats.failovers.get(), 1);

    // Credentials only for another realm: the same.
    let mut peers = Peers::with(with_credentials(Some("elsewhere")), Policy::default());
    let sent = peers.send(Side::Private, CARRIER, &invite("a4", "a4"));
    let first = invite_in(&sent);
    let sent = peers.send(
        Side::Public,
        GATEWAY,
        &challenge(&first, 401, "WWW-Authenticate", CHALLENGE),
    );
    assert_eq!(sent[1].1, addr("203.0.113.11:5060"));
}

#[test]
fn without_credentials_the_challenge_goes_back_to_the_caller() {
    let mut peers = Peers::with(snapshot_multi(100, 100), Policy::default());
    let sent = peers.send(Side::Private, CARRIER, &invite("a5", "a5"));
    let first = invite_in(&sent);
    let sent = peers.send(
        Side::Public,
        GATEWAY,
        &challenge(&first, 401, "WWW-Authenticate", CHALLENGE),
    );
    let back = sent.iter().find(|s| s.1 == addr(CARRIER)).unwrap();
    assert_eq!(status(&back.2), 401);
    assert_eq!(header(&back.2, "WWW-Authenticate"), Some(CHALLENGE));
    assert_eq!(peers.stats.auth_answered.get(), 0);
}

#[test]
fn an_in_dialog_request_challenged_goes_again_with_credentials() {
    let mut peers = Peers::with(with_credentials(None), Policy::default());
    let sent = peers.send(Side::Private, CARRIER, &invite("a6", "a6"));
    let first = invite_in(&sent);
    // Answered at once, no challenge to the INVITE.
    let sent = peers.send(Side::Public, GATEWAY, &answer(&first, 200, "gw", true));
    let ok = sent.iter().find(|s| s.1 == addr(CARRIER)).unwrap();
    let to = header(&ok.2, "To").unwrap().to_string();
    let from = header(&invite("a6", "a6"), "From").unwrap().to_string();
    let ruri = "sip:x@10.0.0.100:5060";
    let ack = in_dialog("ACK", ruri, "a6@10.0.1.10", &from, &to, "k", 1);
    peers.send(Side::Private, CARRIER, &ack);
    // The gateway challenges the carrier's BYE.
    let bye = in_dialog("BYE", ruri, "a6@10.0.1.10", &from, &to, "b6", 2);
    let sent = peers.send(Side::Private, CARRIER, &bye);
    let out = sent
        .iter()
        .find(|s| s.2.starts_with("BYE"))
        .unwrap()
        .2
        .clone();
    assert_eq!(header(&out, "CSeq"), Some("2 BYE"));
    let sent = peers.send(
        Side::Public,
        GATEWAY,
        &challenge(&out, 401, "WWW-Authenticate", CHALLENGE),
    );
    assert_eq!(sent.len(), 1, "only the BYE again, nothing to the carrier");
    let again = &sent[0].2;
    assert!(again.starts_with("BYE "), "{again}");
    assert_eq!(header(again, "CSeq"), Some("3 BYE"));
    assert_eq!(header(again, "Call-ID"), header(&out, "Call-ID"));
    assert_eq!(header(again, "To"), header(&out, "To"));
    assert_ne!(header(again, "Via"), header(&out, "Via"));
    assert!(header(again, "Authorization").is_some_and(|a| a.contains("username=\"trunk\"")));
    // Its 200 reaches the carrier with the carrier's CSeq.
    let sent = peers.send(Side::Public, GATEWAY, &answer(again, 200, "gw", false));
    let back = sent.iter().find(|s| s.1 == addr(CARRIER)).unwrap();
    assert_eq!(status(&back.2), 200);
    assert_eq!(header(&back.2, "CSeq"), Some("2 BYE"));
    assert_eq!(peers.stats.auth_answered.get(), 1);
}
