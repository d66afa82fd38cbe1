//! HTTPS for the emulator: a certificate authority generated at start, and a server certificate it
//! issued, served through tokio-rustls. Clients trust the CA through [`super::Emulator::ca_pem`]
//! (a profile's `ca_cert`), or do not, which is how an unknown CA is tested.

use axum::serve::Listener;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How the emulator's server certificate is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// The names the certificate is made out for: DNS names or IP addresses. Default: `localhost`,
    /// `127.0.0.1` and `::1`. Give another name (`wrong.example`) to serve a certificate for the
    /// wrong host.
    pub names: Vec<String>,
    /// Serve a certificate that expired in 2001 (default false).
    pub expired: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            expired: false,
        }
    }
}

impl TlsOptions {
    /// A certificate for exactly these names.
    pub fn for_names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TlsOptions {
            names: names.into_iter().map(Into::into).collect(),
            expired: false,
        }
    }
}

/// What a TLS emulator serves with.
pub(super) struct Identity {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    pub config: Arc<rustls::ServerConfig>,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
}

/// A fresh CA and a server certificate from it for `options.names`.
pub(super) fn identity(options: &TlsOptions) -> io::Result<Identity> {
    if options.names.is_empty() {
        return Err(invalid(
            "TLS options",
            "the certificate needs at least one name",
        ));
    }
    let ca_key = KeyPair::generate().map_err(|e| invalid("CA key", e))?;
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| invalid("CA", e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A name of its own: two emulators' CAs must not be mistaken for one another.
    let ca_name = format!(
        "sugar-sessions emulator CA {}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(|e| invalid("CA", e))?;

    let leaf_key = KeyPair::generate().map_err(|e| invalid("server key", e))?;
    let mut leaf = CertificateParams::new(options.names.clone())
        .map_err(|e| invalid("server certificate names", e))?;
    leaf.distinguished_name
        .push(DnType::CommonName, options.names[0].as_str());
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    if options.expired {
        leaf.not_before = rcgen::date_time_ymd(2000, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let leaf = leaf
        .signed_by(&leaf_key, &ca)
        .map_err(|e| invalid("server certificate", e))?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS versions", e))?
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .map_err(|e| invalid("server certificate", e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Identity {
        ca_pem: ca.pem(),
        config: Arc::new(config),
    })
}

/// How long a client may take over the handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections and hands over those whose TLS handshake succeeded. Handshakes run in
/// tasks of their own, so one slow or silent client never holds up the others.
pub(super) struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    pub(super) fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        mut shutdown: watch::Receiver<bool>,
    ) -> io::Result<TlsListener> {
        let addr = tcp.local_addr()?;
        let (tx, incoming) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let stopped = async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = tcp.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(error) => {
                            // Out of file descriptors and the like: wait a little, as axum does.
                            tracing::debug!(%error, "emulator: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = &mut stopped => break,
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "emulator: TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "emulator: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { incoming, addr })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(connection) => connection,
            // The acceptor stopped (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
