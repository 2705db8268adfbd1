//! TLS for SIP (RFC 3261 §26.2, RFC 5630) with rustls and the ring
//! provider: our server certificate for gateways that connect to us
//! (reloaded from its files on SIGHUP), and the client side that verifies
//! a gateway's certificate for its host name (RFC 5922) against `[tls] ca`
//! or the system's roots, optionally with our own client certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use serde::Deserialize;

/// `[tls]`: certificates and how gateways are verified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Our certificate chain (PEM), presented on `sip.public_tls`.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// CA certificates (PEM bundle) that gateways' certificates must chain
    /// to; absent: the system's roots.
    pub ca: Option<PathBuf>,
    /// Verify gateways' certificates and host names (default true). `false`
    /// is for labs only and is logged as a warning at start.
    #[serde(default = "yes")]
    pub verify: bool,
    /// Our client certificate for gateways that ask for one (mutual TLS).
    pub client_cert: Option<PathBuf>,
    /// Its private key.
    pub client_key: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

impl Default for TlsConfig {
    fn default() -> TlsConfig {
        TlsConfig {
            cert: None,
            key: None,
            ca: None,
            verify: true,
            client_cert: None,
            client_key: None,
        }
    }
}

/// Why TLS cannot be set up; names the config key (`tls.cert`, `api.tls_key`, ...) and the file.
#[derive(Debug, thiserror::Error)]
#[error("{key} ({path}): {message}")]
pub struct TlsError {
    /// The key, e.g. `cert`.
    pub key: &'static str,
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// rustls with the ring provider (aws-lc-rs would need cmake and NASM to
/// build; ring's lack of post-quantum key exchange is why it is deprecated).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError {
        key,
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(certs)
}

fn private_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError {
        key,
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn required<'a>(path: &'a Option<PathBuf>, key: &'static str) -> Result<&'a Path, TlsError> {
    path.as_deref().ok_or(TlsError {
        key,
        path: String::new(),
        message: "is required for sip.public_tls".into(),
    })
}

/// The TLS settings in force: the server side (swapped on reload) and the
/// client side.
#[derive(Debug)]
pub struct Tls {
    cfg: TlsConfig,
    server: RwLock<Option<Arc<ServerConfig>>>,
    client: Arc<ClientConfig>,
}

impl Tls {
    /// Loads what `cfg` names; the server side only when `serve` (a TLS
    /// listener is configured: then `cert` and `key` are required).
    pub fn new(cfg: &TlsConfig, serve: bool) -> Result<Tls, TlsError> {
        let server = if serve {
            Some(Arc::new(server_config(cfg)?))
        } else {
            None
        };
        Ok(Tls {
            client: Arc::new(client_config(cfg)?),
            server: RwLock::new(server),
            cfg: cfg.clone(),
        })
    }

    /// Reads the server certificate and key again (SIGHUP); on error the
    /// old ones stay and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let mut server = self.server.write().unwrap_or_else(|e| e.into_inner());
        if server.is_some() {
            *server = Some(Arc::new(server_config(&self.cfg)?));
        }
        Ok(())
    }

    /// The server side now, if a TLS listener is configured.
    pub fn server(&self) -> Option<Arc<ServerConfig>> {
        self.server
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The client side.
    pub fn client(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }
}

fn server_config(cfg: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let cert_path = required(&cfg.cert, "tls.cert")?;
    let key_path = required(&cfg.key, "tls.key")?;
    server_config_from(("tls.cert", cert_path), ("tls.key", key_path))
}

/// A TLS server configuration (rustls, ring) presenting the certificate
/// chain in PEM file `cert.1` with the private key in `key.1`; `cert.0`
/// and `key.0` are their config keys, named in errors (e.g. `api.tls_cert`).
///
/// # Errors
/// A file that cannot be read or holds no certificate or key, or a key that
/// does not match: [`TlsError`] naming the key and the file.
pub fn server_config_from(
    (cert_key, cert_path): (&'static str, &Path),
    (key_key, key_path): (&'static str, &Path),
) -> Result<ServerConfig, TlsError> {
    let chain = certs(cert_key, cert_path)?;
    let key = private_key(key_key, key_path)?;
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| TlsError {
            key: key_key,
            path: key_path.display().to_string(),
            message: e.to_string(),
        })
}

fn client_config(cfg: &TlsConfig) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            key: "tls.verify",
            path: String::new(),
            message: e.to_string(),
        })?;
    let builder = if cfg.verify {
        let mut roots = RootCertStore::empty();
        match &cfg.ca {
            Some(ca) => {
                for c in certs("tls.ca", ca)? {
                    roots.add(c).map_err(|e| TlsError {
                        key: "tls.ca",
                        path: ca.display().to_string(),
                        message: e.to_string(),
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    tracing::warn!(
                        "no system root certificates found: set tls.ca to verify gateways"
                    );
                }
            }
        }
        builder.with_root_certificates(roots)
    } else {
        tracing::warn!(
            "tls.verify = false: gateways' certificates are NOT verified; for labs only, never in production"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    };
    match (&cfg.client_cert, &cfg.client_key) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(
                certs("tls.client_cert", c)?,
                private_key("tls.client_key", k)?,
            )
            .map_err(|e| TlsError {
                key: "tls.client_key",
                path: k.display().to_string(),
                message: e.to_string(),
            }),
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(_), None) => Err(TlsError {
            key: "tls.client_key",
            path: String::new(),
            message: "is required with tls.client_cert".into(),
        }),
        (None, Some(_)) => Err(TlsError {
            key: "tls.client_cert",
            path: String::new(),
            message: "is required with tls.client_key".into(),
        }),
    }
}

/// The name a gateway's certificate is checked for: its host name, or its
/// IP address when it is provisioned as one.
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.to_string()).ok()
}

/// `tls.verify = false`: accepts any certificate (signatures still checked).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
