//! Server certificates checked against the system's CAs, which are read at the first need.
//!
//! Reading them is most of the cost of making an HTTP client (on Linux, every file that
//! `SSL_CERT_FILE` and `SSL_CERT_DIR` name, or the system's bundle: a few hundred certificates
//! parsed). A plain `http://` instance never needs them, and a bulk action would otherwise wait
//! for them before its first request. So the client's TLS configuration holds a [`LazyVerifier`]:
//! the platform's verifier (`rustls-platform-verifier`, as reqwest would make it) is made when a
//! certificate is first checked, or ahead of that by [`LazyVerifier::load`] on a blocking thread
//! when a job knows it will talk TLS.

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// The platform's certificate verifier, with the profile's `ca_cert` certificates added, made on
/// first use. A failure to make it (no CA certificates on the system) is not kept: the next
/// handshake tries again and fails with the same words.
#[derive(Debug)]
pub struct LazyVerifier {
    extra: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    loaded: OnceLock<rustls_platform_verifier::Verifier>,
    /// One making at a time: the others wait for it rather than read the certificates again.
    making: Mutex<()>,
}

impl LazyVerifier {
    pub fn new(extra: Vec<CertificateDer<'static>>, provider: Arc<CryptoProvider>) -> Self {
        LazyVerifier {
            extra,
            provider,
            loaded: OnceLock::new(),
            making: Mutex::new(()),
        }
    }

    /// Makes the verifier now if it is not made yet (reads the system's CA certificates: blocking).
    /// The error says what is missing and what a person can do.
    pub fn load(&self) -> Result<&rustls_platform_verifier::Verifier, String> {
        if let Some(v) = self.loaded.get() {
            return Ok(v);
        }
        let _one = self.making.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = self.loaded.get() {
            return Ok(v);
        }
        let made = rustls_platform_verifier::Verifier::new_with_extra_roots(
            self.extra.iter().cloned(),
            self.provider.clone(),
        )
        .map_err(|e| {
            let why = match e {
                rustls::Error::General(why) => why,
                other => other.to_string(),
            };
            format!(
                "cannot read this machine's CA certificates ({why}): install them (the ca-certificates package), point SSL_CERT_FILE at a bundle, or set ca_cert in the profile"
            )
        })?;
        tracing::debug!("CA certificates read");
        Ok(self.loaded.get_or_init(|| made))
    }

    /// Whether the system's certificates are read already.
    pub fn is_loaded(&self) -> bool {
        self.loaded.get().is_some()
    }
}

impl ServerCertVerifier for LazyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Said as what it is, not as a problem of the server's certificate.
        self.load()
            .map_err(rustls::Error::General)?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    // The signatures of the handshake are checked with the provider's algorithms, as the
    // platform's verifier does on every platform: nothing here needs the certificates.
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The TLS configuration of a client that checks certificates, as reqwest makes it by default
/// (every TLS version the provider has, HTTP/1.1 by ALPN, SNI on), with the lazy verifier.
pub fn client_config(verifier: Arc<LazyVerifier>) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = verifier.provider.clone();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The process's crypto provider (ring, installed by [`super::install_crypto_provider`]).
pub fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}
