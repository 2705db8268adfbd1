//! SIP over TLS end to end on loopback: the real `sbc` (socket backend)
//! with a TLS listener and a test CA, a carrier on UDP, and a gateway that
//! speaks TLS (rustls, its certificate signed by the test CA). The call
//! crosses from UDP to TLS and back; the gateway sees our TLS Via,
//! Record-Route and Contact; its BYE comes back over the connection we
//! opened; a certificate the CA did not sign is refused, and the call
//! fails over at once.

mod common;
use common::{answer, free_port, header, loopback_sbc, sbcctl, LoopbackSbc};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair};
use serde_json::Value;

/// A CA and two leaf certificates for 127.0.0.1 (PEM): (ca, (cert, key)
/// signed by it, (cert, key) self-signed by another CA).
#[allow(clippy::type_complexity)]
fn certificates() -> (String, (String, String), (String, String)) {
    let (ca, ca_key) = common::tls::ca();
    let leaf = |signer: Option<(&rcgen::Certificate, &KeyPair)>| {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = match signer {
            Some((ca, ca_key)) => params.signed_by(&key, ca, ca_key).unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        (cert.pem(), key.serialize_pem())
    };
    (ca.pem(), leaf(Some((&ca, &ca_key))), leaf(None))
}

/// Reads one SIP message (framed by Content-Length) from `s`.
fn read_message(s: &mut impl Read, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let cl: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + cl {
                let msg: Vec<u8> = buf.drain(..end + 4 + cl).collect();
                return Some(String::from_utf8_lossy(&msg).into_owned());
            }
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A gateway's TLS server settings: `cert` (PEM cert, PEM key), and when
/// `clients` is given a client certificate chaining to it is required.
fn server_config(
    cert: &(String, String),
    clients: Option<Arc<rustls::RootCertStore>>,
) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert.0.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match clients {
        Some(roots) => builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .unwrap(),
        ),
        None => builder.with_no_client_auth(),
    };
    Arc::new(builder.with_single_cert(certs, key).unwrap())
}

/// The TLS gateway: on its first connection, answers OPTIONS and INVITE
/// (200 with SDP), then sends a BYE of its own after the ACK and waits for
/// its 200. Every message it read or its BYE's answer goes to `seen`.
fn gateway(listener: TcpListener, cert: (String, String), seen: mpsc::Sender<String>) {
    let config = server_config(&cert, None);
    listener.set_nonblocking(false).unwrap();
    while let Ok((tcp, _)) = listener.accept() {
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = rustls::ServerConnection::new(config.clone()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf = Vec::new();
        let mut invite = None;
        while let Some(msg) = read_message(&mut tls, &mut buf) {
            let _ = seen.send(msg.clone());
            if msg.starts_with("OPTIONS ") {
                let _ = tls.write_all(answer(&msg, 200, "", "").as_bytes());
            } else if msg.starts_with("INVITE ") {
                let sdp = "v=0\r\no=gw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 42000 RTP/AVP 0\r\n";
                let contact = "Contact: <sip:gw@127.0.0.1;transport=tls>\r\nContent-Type: application/sdp\r\n";
                let _ = tls.write_all(answer(&msg, 200, contact, sdp).as_bytes());
                invite = Some(msg);
            } else if msg.starts_with("ACK ") {
                let inv = invite.clone().unwrap();
                // Our BYE, to the SBC's Contact, over this connection.
                let via = header(&inv, "Via").unwrap();
                let from = header(&inv, "From").unwrap();
                let to = header(&inv, "To").unwrap();
                let call_id = header(&inv, "Call-ID").unwrap();
                let bye = format!(
                    "BYE sip:sbc@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bKgwbye\r\n\
                     Max-Forwards: 70\r\nFrom: {to};tag=gw1\r\nTo: {from}\r\nCall-ID: {call_id}\r\n\
                     CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = via;
                let _ = tls.write_all(bye.as_bytes());
            } else if msg.starts_with("SIP/2.0 200") && msg.contains("BYE") {
                return;
            }
        }
    }
}

#[test]
fn a_call_crosses_from_udp_to_tls_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, good, rogue) = certificates();
    let path = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let ca_path = path("ca.pem", &ca);
    let (cert_path, key_path) = (path("sbc.pem", &good.0), path("sbc.key", &good.1));
    let tls_port = free_port();
    let LoopbackSbc {
        sbc: _sbc,
        private,
        api,
        metrics_port,
        log,
        ..
    } = loopback_sbc(
        dir.path(),
        (41200, 41300),
        &format!("public_tls = \"127.0.0.1:{tls_port}\"\n"),
        &format!("[tls]\ncert = \"{cert_path}\"\nkey = \"{key_path}\"\nca = \"{ca_path}\"\n"),
    );
    // The good gateway in group 1; the rogue one (a certificate no CA we
    // trust signed) tried first.
    let good_gw = TcpListener::bind("127.0.0.1:0").unwrap();
    let rogue_gw = TcpListener::bind("127.0.0.1:0").unwrap();
    let (seen_tx, seen) = mpsc::channel();
    let (good_port, rogue_port) = (
        good_gw.local_addr().unwrap().port(),
        rogue_gw.local_addr().unwrap().port(),
    );
    let (rogue_tx, rogue_seen) = mpsc::channel();
    thread::spawn(move || gateway(good_gw, good, seen_tx));
    thread::spawn(move || gateway(rogue_gw, rogue, rogue_tx));
    for (uri, prio) in [
        (format!("sips:127.0.0.1:{rogue_port}"), "20"),
        (format!("sip:127.0.0.1:{good_port};transport=tls"), "10"),
    ] {
        let (code, _, err) = sbcctl(&api, &["add-gateway", "1", &uri, "gw", prio, "1"]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = sbcctl(&api, &["add-carrier", "127.0.0.1", "32", "carrier", "1"]);
    assert_eq!(code, 0, "{err}");

    // The carrier calls over UDP.
    let carrier = UdpSocket::bind("127.0.0.1:0").unwrap();
    carrier
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let me = carrier.local_addr().unwrap();
    let sbc_priv: SocketAddr = format!("127.0.0.1:{private}").parse().unwrap();
    let sdp = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 43000 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:15551234567@127.0.0.1:{private} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKc1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:100@{me}>;tag=c1\r\nTo: <sip:15551234567@127.0.0.1>\r\n\
         Call-ID: tls-call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    carrier.send_to(invite.as_bytes(), sbc_priv).unwrap();
    let mut buf = [0u8; 65535];
    let ok = loop {
        let (n, _) = carrier.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no final answer: {e}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            break text;
        }
    };
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let to = header(&ok, "To").unwrap().to_string();
    let ack = format!(
        "ACK sip:15551234567@127.0.0.1:{private} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKc1a\r\n\
         Max-Forwards: 70\r\nFrom: <sip:100@{me}>;tag=c1\r\nTo: {to}\r\nCall-ID: tls-call-1\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    carrier.send_to(ack.as_bytes(), sbc_priv).unwrap();
    // The gateway's BYE arrives over UDP; answer it.
    let bye = loop {
        let (n, _) = carrier.recv_from(&mut buf).expect("the gateway's BYE");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("BYE ") {
            break text;
        }
    };
    carrier
        .send_to(answer(&bye, 200, "", "").as_bytes(), sbc_priv)
        .unwrap();

    // What the TLS gateway got: our TLS Via, Record-Route and Contact, and
    // the 200 to its BYE.
    let got: Vec<String> = seen
        .iter()
        .take_while(|m| !m.starts_with("SIP/2.0 200"))
        .collect();
    let inv = got
        .iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("an INVITE");
    let via = header(inv, "Via").unwrap();
    assert!(
        via.starts_with(&format!(
            "SIP/2.0/TLS 127.0.0.1:{tls_port};alias;branch=z9hG4bK"
        )),
        "{inv}"
    );
    assert_eq!(
        header(inv, "Record-Route"),
        Some(format!("<sip:127.0.0.1:{tls_port};transport=tls;lr>").as_str()),
        "{inv}"
    );
    assert_eq!(
        header(inv, "Contact"),
        Some(format!("<sip:sbc@127.0.0.1:{tls_port};transport=tls>").as_str()),
        "{inv}"
    );
    assert!(got.iter().any(|m| m.starts_with("ACK ")), "{got:?}");
    // The rogue gateway's handshake failed: nothing reached it.
    assert!(rogue_seen.try_recv().is_err());
    let (_, out, _) = sbcctl(&api, &["--json", "status"]);
    let status: Value = serde_json::from_str(&out).unwrap();
    let streams = &status["streams"];
    assert_eq!(streams["connected"], 1, "{status}");
    assert!(streams["failed"].as_u64().unwrap() >= 1, "{status}");
    assert!(streams["messages_out"].as_u64().unwrap() >= 3, "{status}");
    assert!(streams["messages_in"].as_u64().unwrap() >= 2, "{status}");
    assert_eq!(status["sip"]["failovers"], 1, "{status}");
    // The failed handshake ended the INVITE toward it at once (a 503 of
    // its own, RFC 3261 8.1.3.1), not by the failover timer.
    assert_eq!(status["sip"]["transport_errors"], 1, "{status}");
    // And /metrics says the same.
    let text = ureq::get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for want in [
        "sbc_streams_connected_total 1\n",
        "sbc_sip_transport_errors_total 1\n",
    ] {
        assert!(text.contains(want), "{want:?} not in /metrics:\n{text}");
    }
    assert!(text.contains("\nsbc_streams_open "), "{text}");
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn roots_of(ca_pem: &str) -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

/// Connects to the SBC's TLS listener at `port` trusting `ca_pem`: the
/// stream, handshake done, and the certificate it presented (DER).
fn tls_client(
    port: u16,
    ca_pem: &str,
) -> (
    rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    Vec<u8>,
) {
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots_of(ca_pem))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    let presented = conn.peer_certificates().unwrap()[0].to_vec();
    (rustls::StreamOwned::new(conn, tcp), presented)
}

#[test]
fn client_certificates_sighup_reload_and_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_key) = common::tls::ca();
    let (first, second, gw_cert, client) = (
        common::tls::leaf_of(&ca, &ca_key),
        common::tls::leaf_of(&ca, &ca_key),
        common::tls::leaf_of(&ca, &ca_key),
        common::tls::leaf_of(&ca, &ca_key),
    );
    let ca_pem = ca.pem();
    let path = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let ca_path = path("ca.pem", &ca_pem);
    let (cert_path, key_path) = (path("sbc.pem", &first.0), path("sbc.key", &first.1));
    let (client_path, client_key) = (path("client.pem", &client.0), path("client.key", &client.1));
    let tls_port = free_port();
    let LoopbackSbc {
        sbc,
        private,
        api,
        log,
        ..
    } = loopback_sbc(
        dir.path(),
        (41400, 41500),
        &format!("public_tls = \"127.0.0.1:{tls_port}\"\nstream_idle_timeout_s = 2\n"),
        &format!("[tls]\ncert = \"{cert_path}\"\nkey = \"{key_path}\"\nca = \"{ca_path}\"\nclient_cert = \"{client_path}\"\nclient_key = \"{client_key}\"\n"),
    );

    // A gateway that requires a client certificate of the CA (mutual TLS):
    // it reports the certificate the SBC presented and refuses the call.
    let gw = TcpListener::bind("127.0.0.1:0").unwrap();
    let gw_port = gw.local_addr().unwrap().port();
    let (presented_tx, presented) = mpsc::channel();
    let roots = Arc::new(roots_of(&ca_pem));
    thread::spawn(move || {
        let config = server_config(&gw_cert, Some(roots));
        let (tcp, _) = gw.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf = Vec::new();
        while let Some(msg) = read_message(&mut tls, &mut buf) {
            let der = tls.conn.peer_certificates().map(|c| c[0].to_vec());
            let _ = presented_tx.send(der);
            if msg.starts_with("INVITE ") {
                let _ = tls.write_all(answer(&msg, 486, "", "").as_bytes());
            }
        }
    });
    let uri = format!("sips:127.0.0.1:{gw_port}");
    let (code, _, err) = sbcctl(&api, &["add-gateway", "1", &uri, "mtls", "1", "1"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = sbcctl(&api, &["add-carrier", "127.0.0.1", "32", "carrier", "1"]);
    assert_eq!(code, 0, "{err}");
    let carrier = UdpSocket::bind("127.0.0.1:0").unwrap();
    carrier
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let me = carrier.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:15551234567@127.0.0.1:{private} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKm1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:100@{me}>;tag=m1\r\nTo: <sip:15551234567@127.0.0.1>\r\n\
         Call-ID: mtls-call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{me}>\r\nContent-Length: 0\r\n\r\n"
    );
    carrier
        .send_to(invite.as_bytes(), ("127.0.0.1", private))
        .unwrap();
    let mut buf = [0u8; 65535];
    let last = loop {
        let (n, _) = carrier.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no final answer: {e}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            break text;
        }
    };
    assert!(last.starts_with("SIP/2.0 486"), "{last}");
    assert_eq!(
        presented.recv_timeout(Duration::from_secs(5)).unwrap(),
        Some(der_of(&client.0)),
        "the SBC presented its client certificate"
    );

    // A client of the SBC's listener gets the first certificate, and an
    // idle connection is closed after stream_idle_timeout_s.
    let (mut idle, got) = tls_client(tls_port, &ca_pem);
    assert_eq!(got, der_of(&first.0));
    let since = std::time::Instant::now();
    let mut byte = [0u8; 1];
    let read = idle.read(&mut byte);
    let waited = since.elapsed();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the idle connection was closed: {read:?}"
    );
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "closed after {waited:?}, the idle timeout is 2 s"
    );

    // New files and SIGHUP: the next connection gets the second certificate.
    std::fs::write(&cert_path, &second.0).unwrap();
    std::fs::write(&key_path, &second.1).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &sbc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, got) = tls_client(tls_port, &ca_pem);
        if got == der_of(&second.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still the old certificate after SIGHUP:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(100));
    }
    // A broken file on SIGHUP keeps the certificate in force.
    std::fs::write(&cert_path, "not a certificate").unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &sbc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    thread::sleep(Duration::from_millis(500));
    let (_, got) = tls_client(tls_port, &ca_pem);
    assert_eq!(got, der_of(&second.0));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("TLS reload failed"), "{text}");
}

/// The TLS server side of a gateway at `listener`: accepts one connection
/// and sends every message it reads to `seen`, answering 200 to a BYE.
fn gateway_listener(listener: TcpListener, cert: (String, String), seen: mpsc::Sender<String>) {
    let config = server_config(&cert, None);
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config).unwrap(), tcp);
    let mut buf = Vec::new();
    while let Some(msg) = read_message(&mut tls, &mut buf) {
        if msg.starts_with("BYE ") {
            let _ = tls.write_all(answer(&msg, 200, "", "").as_bytes());
        }
        let _ = seen.send(msg);
    }
}

#[test]
fn a_request_to_a_gateway_whose_connection_closed_goes_to_its_contact() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_key) = common::tls::ca();
    let (sbc_cert, gw_cert) = (
        common::tls::leaf_of(&ca, &ca_key),
        common::tls::leaf_of(&ca, &ca_key),
    );
    let ca_pem = ca.pem();
    let path = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let ca_path = path("ca.pem", &ca_pem);
    let (cert_path, key_path) = (path("sbc.pem", &sbc_cert.0), path("sbc.key", &sbc_cert.1));
    let tls_port = free_port();
    let LoopbackSbc {
        sbc: _sbc,
        private,
        api,
        log,
        ..
    } = loopback_sbc(
        dir.path(),
        (41600, 41700),
        &format!("public_tls = \"127.0.0.1:{tls_port}\"\n"),
        &format!("[tls]\ncert = \"{cert_path}\"\nkey = \"{key_path}\"\nca = \"{ca_path}\"\n"),
    );
    // The gateway listens for connections at its Contact; the carrier is
    // a host carrier at 127.0.0.5:5060 (where outbound calls go).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let gw_port = listener.local_addr().unwrap().port();
    let (seen_tx, seen) = mpsc::channel();
    thread::spawn(move || gateway_listener(listener, gw_cert, seen_tx));
    let uri = format!("sip:127.0.0.1:{gw_port};transport=tls");
    let (code, _, err) = sbcctl(&api, &["add-gateway", "1", &uri, "gw", "1", "1"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = sbcctl(&api, &["add-carrier", "127.0.0.5", "32", "carrier", "1"]);
    assert_eq!(code, 0, "{err}");
    let carrier = UdpSocket::bind("127.0.0.5:5060").unwrap();
    carrier
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    // The gateway calls over a connection of its own.
    let (mut conn, _) = tls_client(tls_port, &ca_pem);
    let sdp = "v=0\r\no=gw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 42100 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:15551234567@127.0.0.1:{tls_port};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:{gw_port};branch=z9hG4bKgw1\r\nMax-Forwards: 70\r\n\
         From: <sip:gw@127.0.0.1>;tag=g1\r\nTo: <sip:15551234567@127.0.0.1>\r\n\
         Call-ID: flow-lost-1\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:gw@127.0.0.1:{gw_port};transport=tls>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    conn.write_all(invite.as_bytes()).unwrap();
    let mut buf = [0u8; 65535];
    let inv = loop {
        let (n, _) = carrier.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no INVITE at the carrier: {e}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("INVITE ") {
            break text;
        }
    };
    let sbc_priv: SocketAddr = format!("127.0.0.1:{private}").parse().unwrap();
    let carrier_sdp = "v=0\r\no=c 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\nm=audio 43100 RTP/AVP 0\r\n";
    let ok = answer(
        &inv,
        200,
        "Contact: <sip:c@127.0.0.5:5060>\r\nContent-Type: application/sdp\r\n",
        carrier_sdp,
    );
    carrier.send_to(ok.as_bytes(), sbc_priv).unwrap();
    let mut stream_buf = Vec::new();
    let ok_gw = loop {
        let m = read_message(&mut conn, &mut stream_buf).expect("the 200 over TLS");
        if m.starts_with("SIP/2.0 200") {
            break m;
        }
    };
    let to = header(&ok_gw, "To").unwrap().to_string();
    let sbc_contact = header(&ok_gw, "Contact")
        .unwrap()
        .trim_matches(['<', '>'])
        .to_string();
    let ack = format!(
        "ACK {sbc_contact} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{gw_port};branch=z9hG4bKgw1a\r\n\
         Max-Forwards: 70\r\nFrom: <sip:gw@127.0.0.1>;tag=g1\r\nTo: {to}\r\nCall-ID: flow-lost-1\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    conn.write_all(ack.as_bytes()).unwrap();
    thread::sleep(Duration::from_millis(300));
    // The gateway's connection goes away; the carrier hangs up.
    conn.conn.send_close_notify();
    let _ = conn.flush();
    drop(conn);
    thread::sleep(Duration::from_millis(300));
    let from = header(&inv, "From").unwrap();
    let inv_to = header(&inv, "To").unwrap();
    let call_id = header(&inv, "Call-ID").unwrap();
    let contact = header(&inv, "Contact").unwrap().trim_matches(['<', '>']);
    let routes: String = inv
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("Record-Route:"))
        .map(|v| format!("Route:{v}\r\n"))
        .collect();
    let bye = format!(
        "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bKcbye\r\n\
         Max-Forwards: 70\r\nFrom: {inv_to};tag=gw1\r\nTo: {from}\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 BYE\r\n{routes}Content-Length: 0\r\n\r\n"
    );
    carrier.send_to(bye.as_bytes(), sbc_priv).unwrap();
    let got = seen
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| {
            panic!(
                "no BYE at the gateway's Contact\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    assert!(
        got.starts_with(&format!("BYE sip:gw@127.0.0.1:{gw_port}")),
        "{got}"
    );
    let done = loop {
        let (n, _) = carrier.recv_from(&mut buf).expect("the BYE's answer");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("SIP/2.0 ") && text.contains("BYE") {
            break text;
        }
    };
    assert!(done.starts_with("SIP/2.0 200"), "{done}");
}
