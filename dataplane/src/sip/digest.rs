//! Digest authentication as a client (RFC 3261 §22.4, RFC 2617 §3.2.2 with
//! qop=auth, RFC 8760 for SHA-256 and SHA-512-256 names): read a
//! `WWW-Authenticate` / `Proxy-Authenticate` challenge, answer it with an
//! `Authorization` / `Proxy-Authorization` value.
//!
//! ```text
//!  HA1 = H(username ":" realm ":" password)
//!  HA2 = H(method ":" digest-uri)
//!  response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)   qop=auth
//!           = H(HA1 ":" nonce ":" HA2)                               no qop
//! ```

use md5::{Digest as _, Md5};
use sha2::Sha256;

/// The hash a challenge asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `MD5` (or no `algorithm`), RFC 2617.
    Md5,
    /// `SHA-256`, RFC 8760 (preferred when both are offered, §2.4).
    Sha256,
}

impl Algorithm {
    /// Its name in the `algorithm` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Lower-case hex of the hash of `parts` joined by `:`.
    fn hash(self, parts: &[&[u8]]) -> String {
        fn hex(bytes: &[u8]) -> String {
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
        let joined: Vec<u8> = parts.join(&b':');
        match self {
            Algorithm::Md5 => hex(&Md5::digest(&joined)),
            Algorithm::Sha256 => hex(&Sha256::digest(&joined)),
        }
    }
}

/// A challenge we can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, echoed back.
    pub opaque: Option<String>,
    /// The hash.
    pub algorithm: Algorithm,
    /// Whether `qop` offers `auth` (then the answer uses it).
    pub qop_auth: bool,
}

/// Reads one `Digest ...` challenge value. `None` for another scheme, an
/// algorithm we do not implement (`-sess` variants, SHA-512-256), a `qop`
/// without `auth` (only `auth-int`), or no realm or nonce.
pub fn parse_challenge(value: &[u8]) -> Option<Challenge> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = text.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let (mut realm, mut nonce, mut opaque, mut qop) = (None, None, None, None);
    let mut algorithm = Algorithm::Md5;
    for (name, v) in params(rest) {
        match name.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(v),
            "nonce" => nonce = Some(v),
            "opaque" => opaque = Some(v),
            "qop" => qop = Some(v),
            "algorithm" => {
                algorithm = if v.eq_ignore_ascii_case("MD5") {
                    Algorithm::Md5
                } else if v.eq_ignore_ascii_case("SHA-256") {
                    Algorithm::Sha256
                } else {
                    return None;
                }
            }
            _ => {}
        }
    }
    let qop_auth = match &qop {
        None => false,
        Some(q) => {
            let auth = q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth"));
            if !auth {
                return None;
            }
            true
        }
    };
    Some(Challenge {
        realm: realm?,
        nonce: nonce?,
        opaque,
        algorithm,
        qop_auth,
    })
}

/// The challenge to answer among `values` (the response's challenge
/// headers): SHA-256 before MD5 (RFC 8760 §2.4), then the first; only
/// those of `realm` when one is configured.
pub fn best_challenge<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    realm: Option<&str>,
) -> Option<Challenge> {
    let mut all: Vec<Challenge> = values
        .filter_map(parse_challenge)
        .filter(|c| realm.is_none_or(|r| r == c.realm))
        .collect();
    // Stable: SHA-256 first, the order given otherwise.
    all.sort_by_key(|c| c.algorithm != Algorithm::Sha256);
    all.into_iter().next()
}

/// `name=value` pairs of a comma-separated list, quotes removed (a quoted
/// value may hold commas; `\"` escapes kept as the quote).
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|c| c.is_ascii_whitespace() || *c == ',')
        {
            chars.next();
        }
        let name: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_string();
        if name.is_empty() {
            return out;
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        out.push((name, value));
    }
}

/// What answers a challenge: who, and for which request.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The username.
    pub username: &'a str,
    /// The password.
    pub password: &'a str,
    /// The request's method (`INVITE`).
    pub method: &'a [u8],
    /// The request's Request-URI (the digest-uri).
    pub uri: &'a [u8],
    /// Our client nonce (used with qop=auth).
    pub cnonce: &'a str,
    /// The nonce count, 1 for a nonce's first use.
    pub nc: u32,
}

/// The `response` parameter for `challenge` answered with `a`.
pub fn response(challenge: &Challenge, a: &Answer<'_>) -> String {
    let alg = challenge.algorithm;
    let ha1 = alg.hash(&[
        a.username.as_bytes(),
        challenge.realm.as_bytes(),
        a.password.as_bytes(),
    ]);
    let ha2 = alg.hash(&[a.method, a.uri]);
    if challenge.qop_auth {
        let nc = format!("{:08x}", a.nc);
        alg.hash(&[
            ha1.as_bytes(),
            challenge.nonce.as_bytes(),
            nc.as_bytes(),
            a.cnonce.as_bytes(),
            b"auth",
            ha2.as_bytes(),
        ])
    } else {
        alg.hash(&[ha1.as_bytes(), challenge.nonce.as_bytes(), ha2.as_bytes()])
    }
}

/// The whole `Authorization` / `Proxy-Authorization` value (RFC 3261
/// §22.4: quoted username, realm, nonce, uri, response, opaque, cnonce;
/// algorithm, qop, nc bare).
pub fn authorization(challenge: &Challenge, a: &Answer<'_>) -> Vec<u8> {
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
        quote(a.username),
        quote(&challenge.realm),
        quote(&challenge.nonce),
        quote(&String::from_utf8_lossy(a.uri)),
        response(challenge, a),
        challenge.algorithm.name(),
    );
    if challenge.qop_auth {
        v.push_str(&format!(
            ", cnonce=\"{}\", qop=auth, nc={:08x}",
            quote(a.cnonce),
            a.nc
        ));
    }
    if let Some(o) = &challenge.opaque {
        v.push_str(&format!(", opaque=\"{}\"", quote(o)));
    }
    v.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_md5_example() {
        // RFC 2617 section 3.5.
        let c = parse_challenge(
            br#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert!(c.qop_auth);
        let a = Answer {
            username: "Mufasa",
            password: "Circle Of Life",
            method: b"GET",
            uri: b"/dir/index.html",
            cnonce: "0a4f113b",
            nc: 1,
        };
        assert_eq!(response(&c, &a), "6629fae49393a05397450978507c4ef1");
        let h = String::from_utf8(authorization(&c, &a)).unwrap();
        assert!(
            h.starts_with("Digest username=\"Mufasa\", realm=\"testrealm@host.com\""),
            "{h}"
        );
        assert!(h.contains("qop=auth, nc=00000001"), "{h}");
        assert!(
            h.ends_with("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""),
            "{h}"
        );
    }

    #[test]
    fn rfc7616_sha256_and_md5_examples() {
        // RFC 7616 section 3.9.1 (the same computation RFC 8760 uses).
        let header = |alg: &str| {
            format!(
                "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm={alg}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            )
        };
        let a = Answer {
            username: "Mufasa",
            password: "Circle of Life",
            method: b"GET",
            uri: b"/dir/index.html",
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            nc: 1,
        };
        let sha = parse_challenge(header("SHA-256").as_bytes()).unwrap();
        assert_eq!(
            response(&sha, &a),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        let md5 = parse_challenge(header("MD5").as_bytes()).unwrap();
        assert_eq!(response(&md5, &a), "8ca523f5e9506fed4657c9700eebdbec");
        // Both offered: SHA-256 is answered (RFC 8760 2.4).
        let (h1, h2) = (header("MD5"), header("SHA-256"));
        let best = best_challenge([h1.as_bytes(), h2.as_bytes()].into_iter(), None).unwrap();
        assert_eq!(best.algorithm, Algorithm::Sha256);
        // A configured realm filters.
        assert!(best_challenge([h1.as_bytes()].into_iter(), Some("other")).is_none());
    }

    #[test]
    fn challenges_we_cannot_answer_are_none() {
        assert!(parse_challenge(b"Basic realm=\"x\"").is_none());
        assert!(parse_challenge(b"Digest realm=\"x\", nonce=\"n\", algorithm=MD5-sess").is_none());
        assert!(parse_challenge(b"Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\"").is_none());
        assert!(parse_challenge(b"Digest realm=\"x\"").is_none());
        // No qop: the RFC 2069 form.
        let c = parse_challenge(b"Digest realm=\"sip.example\",nonce=\"abc, def\"").unwrap();
        assert_eq!(c.nonce, "abc, def");
        assert!(!c.qop_auth);
        let a = Answer {
            username: "u",
            password: "p",
            method: b"INVITE",
            uri: b"sip:1@gw",
            cnonce: "c",
            nc: 1,
        };
        let h = String::from_utf8(authorization(&c, &a)).unwrap();
        assert!(!h.contains("qop"), "{h}");
    }
}
