//! The HTTP client: one per network setting, the requests Sugar's REST API takes, and request
//! bodies and answers kept out of memory once used.

use super::error::{ErrorKind, SugarError, classify, through_proxy};
use super::parse::{Grant, Me, ServerInfo, interpret, parse_grant, parse_me, scrub};
use super::tls::{self, LazyVerifier};
use crate::config::{CaCert, Profile};
use crate::secret::Secret;
use crate::session::{Op, RequestLog};
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;
use zeroize::Zeroizing;

/// The most of a response body that is read.
pub const MAX_BODY: usize = 1024 * 1024;

/// The most of an `api` answer that is read (a page of records can be large).
pub const MAX_API_BODY: usize = 64 * 1024 * 1024;

/// An answer to [`Client::raw`], whatever its status.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// The result of one request and what a person may see of it.
#[derive(Debug)]
pub struct Call<T> {
    pub result: Result<T, SugarError>,
    pub log: RequestLog,
}

/// Idle connections kept per host for reuse.
pub const POOL_IDLE_PER_HOST: usize = 2;

/// One HTTP client per distinct network setting; cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    /// What checks server certificates; `None` for an `insecure` profile's client.
    verifier: Option<Arc<LazyVerifier>>,
}

/// Makes sure one rustls crypto provider is installed for the process (ring).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Everything that needs an HTTP client of its own: profiles that agree on all of it share one
/// client (and its connection pool).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NetSettings {
    pub connect_timeout: Duration,
    /// Trusted in addition to the system's certificates (which `SSL_CERT_FILE` may replace).
    pub ca_cert: Option<CaCert>,
    /// Accept any server certificate.
    pub insecure: bool,
    /// Every request through this proxy; `None`: the `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`
    /// environment applies.
    pub proxy: Option<Url>,
}

impl Default for NetSettings {
    /// A 5 s connect timeout, the system's CAs, certificates checked, proxies from the environment.
    fn default() -> Self {
        NetSettings {
            connect_timeout: Duration::from_secs(5),
            ca_cert: None,
            insecure: false,
            proxy: None,
        }
    }
}

impl NetSettings {
    pub fn of(profile: &Profile) -> NetSettings {
        NetSettings {
            connect_timeout: profile.connect_timeout,
            ca_cert: profile.ca_cert.as_deref().cloned(),
            insecure: profile.insecure,
            proxy: profile.proxy.as_deref().cloned(),
        }
    }
}

/// `error: cause: cause`, for set-up errors whose useful part is deep in the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

impl Client {
    pub fn new(settings: &NetSettings) -> Result<Client, String> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!("sugar-sessions/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(30))
            // A burst to one host opens up to `max_per_host` connections; keeping them all
            // afterwards holds ~26 KB each (a bulk action over 100 hosts: over 20 MB) for little reuse.
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST);
        // The profile's `ca_cert` certificates (checked when the profiles file was read; again
        // here, as a client can be made for a profile that was not read from a file).
        let mut extra = Vec::new();
        if let Some(ca) = &settings.ca_cert {
            let mut check = rustls::RootCertStore::empty();
            for der in ca.certs.iter() {
                let der = rustls::pki_types::CertificateDer::from(der.clone());
                check.add(der.clone()).map_err(|e| {
                    format!(
                        "cannot use the CA certificates in {}: {}",
                        ca.path.display(),
                        error_chain(&e)
                    )
                })?;
                extra.push(der);
            }
        }
        let verifier = if settings.insecure {
            builder = builder.tls_danger_accept_invalid_certs(true);
            None
        } else {
            let verifier = Arc::new(LazyVerifier::new(extra, tls::provider()));
            let config = tls::client_config(verifier.clone())
                .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
            builder = builder.use_preconfigured_tls(config);
            Some(verifier)
        };
        if let Some(proxy) = &settings.proxy {
            // An explicit proxy replaces the environment's (reqwest then ignores HTTPS_PROXY & co).
            let proxy = reqwest::Proxy::all(proxy.as_str()).map_err(|e| {
                format!(
                    "cannot use the proxy {}://{}: {}",
                    proxy.scheme(),
                    proxy.host_str().unwrap_or(""),
                    error_chain(&e)
                )
            })?;
            builder = builder.proxy(proxy);
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {}", error_chain(&e)))?;
        tracing::debug!(
            connect_timeout_ms = settings.connect_timeout.as_millis() as u64,
            ca_cert = settings
                .ca_cert
                .as_ref()
                .map(|c| c.path.display().to_string()),
            insecure = settings.insecure,
            proxy = settings.proxy.as_ref().map(|p| format!(
                "{}://{}",
                p.scheme(),
                p.host_str().unwrap_or("")
            )),
            "new HTTP client"
        );
        Ok(Client { http, verifier })
    }

    /// Whether a TLS handshake of this client would first read the system's CA certificates.
    pub fn roots_pending(&self) -> bool {
        self.verifier.as_ref().is_some_and(|v| !v.is_loaded())
    }

    /// Reads the system's CA certificates now, if they are not read yet (blocking: a few hundred
    /// files). Otherwise the first TLS handshake does, on the thread that runs it.
    pub fn load_roots(&self) -> Result<(), String> {
        let Some(verifier) = &self.verifier else {
            return Ok(());
        };
        verifier.load()?;
        Ok(())
    }

    /// `POST /oauth2/token` with the password grant.
    pub async fn login(&self, p: &Profile, password: &Secret) -> Call<Grant> {
        let body = secret_json(&[
            ("grant_type", "password"),
            ("client_id", &p.client_id),
            ("client_secret", p.client_secret.expose()),
            ("username", &p.username),
            ("password", password.expose()),
            ("platform", &p.platform),
        ]);
        self.send(
            p,
            Op::Login.as_str(),
            Method::Post("/oauth2/token", body),
            None,
            parse_grant,
        )
        .await
    }

    /// `POST /oauth2/token` with the refresh-token grant, always with the profile's platform.
    pub async fn refresh(&self, p: &Profile, refresh_token: &Secret) -> Call<Grant> {
        let body = secret_json(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", &p.client_id),
            ("client_secret", p.client_secret.expose()),
            ("platform", &p.platform),
        ]);
        self.send(
            p,
            Op::Refresh.as_str(),
            Method::Post("/oauth2/token", body),
            None,
            parse_grant,
        )
        .await
    }

    /// `POST /oauth2/logout` with the access token, asking the server to delete the refresh token too.
    pub async fn logout(&self, p: &Profile, access: &Secret, refresh: Option<&Secret>) -> Call<()> {
        let body = match refresh {
            Some(r) => secret_json(&[("refresh_token", r.expose())]),
            None => secret_json(&[]),
        };
        self.send(
            p,
            Op::Logout.as_str(),
            Method::Post("/oauth2/logout", body),
            Some(access),
            |v| match v.get("success") {
                Some(Value::Bool(true)) => Ok(()),
                _ => Err("no \"success\": true in the logout answer".into()),
            },
        )
        .await
    }

    /// `POST /oauth2/sudo/{user}`: with an admin session, a session as `user` on the same platform
    /// (an access token only: it ends when that token does).
    pub async fn sudo(&self, p: &Profile, admin_access: &Secret, user: &str) -> Call<Grant> {
        let body = secret_json(&[("platform", &p.platform), ("client_id", &p.client_id)]);
        let target = format!("/oauth2/sudo/{}", path_segment(user));
        self.send(
            p,
            "sudo",
            Method::PostTo("/oauth2/sudo", target, body),
            Some(admin_access),
            parse_grant,
        )
        .await
    }

    /// `GET /me`.
    pub async fn me(&self, p: &Profile, access: &Secret) -> Call<Me> {
        self.send(p, "me", Method::Get("/me"), Some(access), parse_me)
            .await
    }

    /// `GET /ping`: a cheap check that the session is alive.
    pub async fn ping(&self, p: &Profile, access: &Secret) -> Call<()> {
        self.send(p, "ping", Method::Get("/ping"), Some(access), |v| {
            match v.as_str() {
                Some("pong") => Ok(()),
                _ => Err("the ping answer is not \"pong\"".into()),
            }
        })
        .await
    }

    /// `GET /ping/whattimeisit`: the server's clock.
    pub async fn server_time(&self, p: &Profile, access: &Secret) -> Call<DateTime<FixedOffset>> {
        self.send(
            p,
            "ping",
            Method::Get("/ping/whattimeisit"),
            Some(access),
            |v| {
                v.as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .ok_or_else(|| "the server time is not an RFC 3339 string".into())
            },
        )
        .await
    }

    /// `GET /metadata?type_filter=server_info`.
    pub async fn server_info(&self, p: &Profile, access: &Secret) -> Call<ServerInfo> {
        self.send(
            p,
            "server info",
            Method::Get("/metadata?type_filter=server_info"),
            Some(access),
            |v| {
                let info = v.get("server_info").ok_or("no \"server_info\" object")?;
                let info = serde_json::from_value::<ServerInfo>(info.clone())
                    .map_err(|e| format!("server_info: {e}"))?;
                // Shown by `check` and on the screen: no control characters from the server.
                let clean = crate::text::strip_controls;
                Ok(ServerInfo {
                    flavor: clean(&info.flavor),
                    version: clean(&info.version),
                    build: info.build.as_deref().map(clean),
                    product_name: info.product_name.as_deref().map(clean),
                })
            },
        )
        .await
    }

    /// One request of the user's to the profile's REST root (`api`): `target` is the path and
    /// query below `/rest/{api}` (it starts with `/`). The answer whatever its status; only a
    /// transport failure, or a body over [`MAX_API_BODY`], is an error.
    pub async fn raw(
        &self,
        p: &Profile,
        method: reqwest::Method,
        target: &str,
        body: Option<Vec<u8>>,
        access: &Secret,
    ) -> Result<RawAnswer, SugarError> {
        let err = error_of(p, "request");
        let mut req = self
            .http
            .request(method.clone(), format!("{}{target}", p.rest_root()))
            .timeout(p.timeout)
            .header("Accept", "application/json");
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let started = Instant::now();
        let answer = match with_token(req, access).send().await {
            Err(e) => Err(err(transport_error(&e, p))),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let content_type = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                read_body(resp, MAX_API_BODY)
                    .await
                    .map(|mut body| RawAnswer {
                        status,
                        content_type,
                        // Handed to the caller, who prints it: not a token answer of ours.
                        body: std::mem::take(&mut *body),
                    })
                    .map_err(|e| err(e.kind(status, p.timeout, MAX_API_BODY)))
            }
        };
        // Never the path's values or a body: the method, the status, how long it took.
        tracing::debug!(
            profile = %p.name,
            method = %method,
            status = answer.as_ref().ok().map(|a| a.status),
            outcome = answer.as_ref().err().map(|e| e.kind.name()),
            latency_ms = started.elapsed().as_millis() as u64,
            "api request"
        );
        answer
    }

    async fn send<T>(
        &self,
        p: &Profile,
        op: &'static str,
        method: Method,
        token: Option<&Secret>,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Call<T> {
        let path = method.path();
        let url = format!("{}{}", p.rest_root(), method.target());
        let err = error_of(p, op);
        let method_name = method.name();
        let mut req = match method {
            Method::Get(_) => self.http.get(&url),
            Method::Post(_, body) | Method::PostTo(_, _, body) => self
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
        };
        req = req.timeout(p.timeout).header("Accept", "application/json");
        if let Some(t) = token {
            req = with_token(req, t);
        }
        let at = Utc::now();
        let started = Instant::now();
        let mut log = RequestLog {
            at,
            method: method_name,
            path: path_for_log(path),
            status: None,
            latency_ms: 0,
        };
        tracing::trace!(
            profile = %p.name,
            op,
            method = method_name,
            path = log.path,
            host = %p.host_port(),
            "sending"
        );
        let result = match req.send().await {
            Err(e) => Err(err(transport_error(&e, p))),
            Ok(resp) => {
                let status = resp.status().as_u16();
                log.status = Some(status);
                let html = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("html"));
                // Not only visible ASCII: a UTF-8 host name is still named (`err` strips
                // control characters).
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                match read_body(resp, MAX_BODY).await {
                    Err(e) => Err(err(e.kind(status, p.timeout, MAX_BODY))),
                    Ok(body) => match interpret(status, html, location, &body) {
                        Err(kind) => Err(err(kind)),
                        Ok(mut value) => {
                            let parsed = parse(&value)
                                .map_err(|what| err(ErrorKind::BadShape { status, what }));
                            // The answer may hold tokens: leave no copy of them behind.
                            scrub(&mut value);
                            parsed
                        }
                    },
                }
            }
        };
        log.latency_ms = started.elapsed().as_millis() as u64;
        // Never a body, a header value or a token: what was asked, how it went, how long it took.
        match &result {
            Ok(_) => tracing::debug!(
                profile = %p.name,
                op,
                method = log.method,
                path = log.path,
                status = log.status,
                latency_ms = log.latency_ms,
                outcome = "ok",
                "request"
            ),
            Err(e) => tracing::debug!(
                profile = %p.name,
                op,
                method = log.method,
                path = log.path,
                status = log.status,
                latency_ms = log.latency_ms,
                outcome = e.kind.name(),
                label = e.label(),
                "request failed"
            ),
        }
        Call { result, log }
    }
}

enum Method {
    Get(&'static str),
    Post(&'static str, reqwest::Body),
    /// A POST whose path carries a value: (the path for logs, the path sent, the body).
    PostTo(&'static str, String, reqwest::Body),
}

impl Method {
    /// The path for logs and messages: never a value from a variable part.
    fn path(&self) -> &'static str {
        match self {
            Method::Get(p) | Method::Post(p, _) | Method::PostTo(p, ..) => p,
        }
    }
    /// The path sent.
    fn target(&self) -> &str {
        match self {
            Method::PostTo(_, target, _) => target,
            _ => self.path(),
        }
    }
    fn name(&self) -> &'static str {
        match self {
            Method::Get(_) => "GET",
            Method::Post(..) | Method::PostTo(..) => "POST",
        }
    }
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters stay as they are).
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn path_for_log(path: &'static str) -> &'static str {
    path.split('?').next().unwrap_or(path)
}

enum BodyError {
    TooLarge,
    Broken(reqwest::Error),
}

impl BodyError {
    /// What went wrong reading the body of an answer with `status`, in at most `limit` bytes.
    fn kind(self, status: u16, timeout: Duration, limit: usize) -> ErrorKind {
        match self {
            BodyError::TooLarge => ErrorKind::TooLarge { status, limit },
            BodyError::Broken(e) if e.is_timeout() => ErrorKind::Timeout { after: timeout },
            BodyError::Broken(_) => ErrorKind::Truncated { status },
        }
    }
}

/// The error of a request of `p` for `op`, of a kind.
fn error_of<'p>(p: &'p Profile, op: &'static str) -> impl Fn(ErrorKind) -> SugarError + 'p {
    move |kind| SugarError {
        profile: p.name.clone(),
        op,
        platform: p.platform.clone(),
        api: p.api.clone(),
        host: p.host_port(),
        kind: kind.cleaned(),
    }
}

/// Why a request of `p` got no answer (through its proxy, when it has one).
fn transport_error(e: &reqwest::Error, p: &Profile) -> ErrorKind {
    let kind = classify(e, p.timeout, p.url.scheme() == "https");
    match &p.proxy {
        Some(proxy) => through_proxy(kind, proxy),
        None => kind,
    }
}

/// The request with the session's access token in `OAuth-Token`, kept out of debug output (and
/// never indexed by header compression). A token that is no valid header value makes the request
/// fail as a builder error, which names no value.
fn with_token(req: reqwest::RequestBuilder, token: &Secret) -> reqwest::RequestBuilder {
    match reqwest::header::HeaderValue::from_str(token.expose()) {
        Ok(mut value) => {
            value.set_sensitive(true);
            req.header("OAuth-Token", value)
        }
        Err(_) => req.header("OAuth-Token", token.expose()),
    }
}

/// Reads at most `limit` bytes of the body into a buffer that is zeroized when dropped (token
/// answers are read here).
async fn read_body(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    let announced = resp.content_length();
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    // Room for the whole body up front where it is announced, so that growing leaves no copies.
    let mut buf = Zeroizing::new(Vec::with_capacity(announced.unwrap_or(4096) as usize));
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Broken)? {
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        if buf.len() + chunk.len() > buf.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                (buf.capacity() * 2).max(buf.len() + chunk.len()),
            ));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// A JSON body of string fields whose buffer is zeroized once the request is done with it
/// ([`crate::secret::json_bytes`]). (Copies that hyper or rustls make while sending are out of
/// reach.)
fn secret_json(fields: &[(&str, &str)]) -> reqwest::Body {
    reqwest::Body::from(crate::secret::json_bytes(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bodies_are_exact_json_whatever_the_characters() {
        let nasty = "pa\"ss\\word\u{1}\u{7f}\né🎉 </script>";
        let body = secret_json(&[("grant_type", "password"), ("password", nasty), ("", "")]);
        let bytes = body.as_bytes().expect("a body in memory");
        let v: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"grant_type": "password", "password": nasty, "": ""})
        );
        // The worst case of escaping fits in the buffer allocated up front (no reallocation).
        let controls: String = (0u8..32).map(char::from).collect::<String>().repeat(8);
        let body = secret_json(&[("password", &controls)]);
        let v: Value = serde_json::from_slice(body.as_bytes().unwrap()).unwrap();
        assert_eq!(v["password"], controls.as_str());
        assert_eq!(secret_json(&[]).as_bytes(), Some(&b"{}"[..]));
    }
}
