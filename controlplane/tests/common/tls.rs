//! Test certificates (rcgen): a CA and leaf certificates for 127.0.0.1.

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// A new CA: its certificate and key.
pub fn ca() -> (rcgen::Certificate, KeyPair) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    (ca_params.self_signed(&ca_key).unwrap(), ca_key)
}

/// A certificate for 127.0.0.1 signed by `ca` (PEM cert, PEM key).
pub fn leaf_of(ca: &rcgen::Certificate, ca_key: &KeyPair) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    (
        params.signed_by(&key, ca, ca_key).unwrap().pem(),
        key.serialize_pem(),
    )
}
