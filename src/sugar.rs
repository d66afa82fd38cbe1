//! The HTTP client for Sugar's REST API: login, refresh, logout, me, ping, server info.
//!
//! Every answer, and every way of not getting one, maps to a typed outcome whose message names the
//! profile, the HTTP status, Sugar's `error` label and `error_message`, and a hint where one helps.
//! Requests follow no redirects, read at most [`MAX_BODY`] bytes, and carry a connect timeout and a
//! total timeout. No message ever contains a password or a token.

use crate::config::{CaCert, Profile};
use crate::outcome::{Failure, FailureKind};
use crate::secret::Secret;
use crate::session::{Op, RequestLog};
use bytes::Bytes;
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::error::Error as _;
use std::fmt;
use std::time::{Duration, Instant};
use url::Url;
use zeroize::{Zeroize, Zeroizing};

/// The most of a response body that is read.
pub const MAX_BODY: usize = 1024 * 1024;

/// The longest lifetime a token answer may give a token or a refresh token: 10 years (3650 days).
/// Sugar's own are minutes to weeks; a longer one is a broken answer, and would overflow the
/// arithmetic on instants.
pub const MAX_LIFETIME_S: i64 = 3650 * 86_400;

/// What went wrong, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Sugar answered with its error JSON: `{"error": label, "error_message": text}`.
    Sugar {
        status: u16,
        label: String,
        message: Option<String>,
    },
    /// A redirect that is not a Sugar error; nothing was sent to `location`.
    Redirect {
        status: u16,
        location: Option<String>,
    },
    /// An error status without Sugar's error JSON (a proxy's HTML page, say).
    Http {
        status: u16,
        html: bool,
    },
    /// A success status whose body is not JSON.
    NotJson {
        status: u16,
        html: bool,
    },
    /// JSON, but not the shape Sugar sends.
    BadShape {
        status: u16,
        what: String,
    },
    /// More than [`MAX_BODY`] bytes.
    TooLarge {
        status: u16,
    },
    /// The connection closed before the whole body arrived.
    Truncated {
        status: u16,
    },
    ConnectionRefused,
    Dns,
    Timeout {
        after: Duration,
    },
    /// The TLS handshake failed; `cert` says what was wrong with the server's certificate, when
    /// that was the reason.
    Tls {
        detail: String,
        cert: Option<CertProblem>,
    },
    /// Any other transport failure.
    Network {
        detail: String,
    },
}

/// Why a server certificate was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertProblem {
    /// Issued by a CA that is not trusted here (a private CA without `ca_cert`, a self-signed one).
    UnknownIssuer,
    /// Made out for another host name than the one in the URL.
    WrongHost,
    /// Expired, or not valid yet.
    Validity,
    /// Anything else (revoked, bad signature, unsupported, ...).
    Other,
}

impl ErrorKind {
    /// The same error with the text that came from the server or from the network stack (Sugar's
    /// label and message, a Location header, a parse error quoting the answer, a library's error)
    /// stripped of control characters and escape sequences, so that no front end can print them.
    pub fn cleaned(self) -> ErrorKind {
        use crate::text::strip_controls as clean;
        match self {
            ErrorKind::Sugar {
                status,
                label,
                message,
            } => ErrorKind::Sugar {
                status,
                label: clean(&label),
                message: message.as_deref().map(clean),
            },
            ErrorKind::Redirect { status, location } => ErrorKind::Redirect {
                status,
                location: location.as_deref().map(clean),
            },
            ErrorKind::BadShape { status, what } => ErrorKind::BadShape {
                status,
                what: clean(&what),
            },
            ErrorKind::Tls { detail, cert } => ErrorKind::Tls {
                detail: clean(&detail),
                cert,
            },
            ErrorKind::Network { detail } => ErrorKind::Network {
                detail: clean(&detail),
            },
            other => other,
        }
    }

    /// A short machine name of the kind, for logs: `sugar`, `tls`, `timeout`, ...
    pub fn name(&self) -> &'static str {
        match self {
            ErrorKind::Sugar { .. } => "sugar",
            ErrorKind::Redirect { .. } => "redirect",
            ErrorKind::Http { .. } => "http",
            ErrorKind::NotJson { .. } => "not_json",
            ErrorKind::BadShape { .. } => "bad_shape",
            ErrorKind::TooLarge { .. } => "too_large",
            ErrorKind::Truncated { .. } => "truncated",
            ErrorKind::ConnectionRefused => "connection_refused",
            ErrorKind::Dns => "dns",
            ErrorKind::Timeout { .. } => "timeout",
            ErrorKind::Tls { .. } => "tls",
            ErrorKind::Network { .. } => "network",
        }
    }
}

/// A failed request: which profile, which operation, and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SugarError {
    pub profile: String,
    pub op: &'static str,
    pub platform: String,
    pub api: String,
    pub host: String,
    pub kind: ErrorKind,
}

impl SugarError {
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ErrorKind::Sugar { status, .. }
            | ErrorKind::Redirect { status, .. }
            | ErrorKind::Http { status, .. }
            | ErrorKind::NotJson { status, .. }
            | ErrorKind::BadShape { status, .. }
            | ErrorKind::TooLarge { status }
            | ErrorKind::Truncated { status } => Some(*status),
            _ => None,
        }
    }

    /// Sugar's `error` label, when the server sent one.
    pub fn label(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Sugar { label, .. } => Some(label),
            _ => None,
        }
    }

    /// Sugar rejected the token or refresh token (`invalid_grant`): the session is over.
    pub fn is_invalid_grant(&self) -> bool {
        self.label() == Some("invalid_grant")
    }

    /// Sugar says the access token has expired (its clock may run ahead of ours, or the token
    /// expired on the way): the session itself may well live on, with its refresh token.
    pub fn access_expired(&self) -> bool {
        matches!(&self.kind, ErrorKind::Sugar { status: 401, label, message: Some(m) }
            if label == "invalid_grant" && m.to_ascii_lowercase().contains("expired"))
    }

    /// The answer shows that the session the request used is gone on the server.
    pub fn session_gone(&self) -> bool {
        matches!(&self.kind, ErrorKind::Sugar { status: 401, label, .. } if label == "invalid_grant" || label == "need_login")
    }

    /// What a person can do about it.
    pub fn hint(&self) -> Option<String> {
        let msg = match &self.kind {
            ErrorKind::Sugar { message, .. } => message.as_deref().unwrap_or(""),
            _ => "",
        };
        let lower = msg.to_ascii_lowercase();
        Some(match &self.kind {
            ErrorKind::Sugar { status: 422, label, .. } if label == "invalid_parameter" && lower.contains("platform") => format!(
                "the platform \"{}\" must be registered in Sugar's Admin > Configure API Platforms, or the profile must use a registered one",
                self.platform
            ),
            ErrorKind::Sugar { label, .. } if label == "incorrect_version" => format!(
                "the instance does not serve REST API {}; set `api` to a version it serves (v10, v11, ...)",
                self.api
            ),
            ErrorKind::Sugar { label, .. } if label == "need_login" && lower.contains("maintenance") => {
                "the instance is in maintenance mode: only admins can log in until it ends".into()
            }
            ErrorKind::Sugar { label, .. } if label == "need_login" && lower.contains("too many") => {
                "the account is locked after failed logins: wait, or ask a Sugar admin to unlock it".into()
            }
            ErrorKind::Sugar { label, .. } if label == "need_login" && self.op == "login" => {
                "check the username and the password source of the profile".into()
            }
            ErrorKind::Sugar { label, .. } if label == "need_login" => "the session has ended: log in again".into(),
            ErrorKind::Sugar { label, .. } if label == "invalid_client" => {
                "check client_id and client_secret (Sugar's default client is \"sugar\" with an empty secret)".into()
            }
            ErrorKind::Sugar { status: 400, label, .. } if label == "invalid_grant" && lower.contains("expired") => {
                "the refresh token has expired: log in again".into()
            }
            ErrorKind::Sugar { status: 400, label, .. } if label == "invalid_grant" => {
                "the refresh token was rejected (already used, or ended by another login of this user on the same platform): log in again".into()
            }
            ErrorKind::Sugar { label, .. } if label == "invalid_grant" => "the session has ended on the server: log in again".into(),
            ErrorKind::Sugar { label, .. } if label == "maintenance" => "the instance is in maintenance mode: try again later".into(),
            ErrorKind::Sugar { label, .. } if label == "license_seats_needed" => {
                "the instance has no free licence seats for this user: ask its Sugar admin".into()
            }
            ErrorKind::Sugar { label, .. } if label == "admin_only" => "the instance's licence has expired: only admins can use it".into(),
            ErrorKind::Sugar { label, .. } if label == "not_authorized" && self.op == "sudo" => {
                "only an admin's session can impersonate another user".into()
            }
            ErrorKind::Sugar { label, .. } if label == "not_found" && self.op == "sudo" => {
                "there is no such user on this instance: check the user name".into()
            }
            ErrorKind::Sugar { label, .. } if label == "invalid_request" => "the request was incomplete: check username and password".into(),
            ErrorKind::Sugar { .. } => return None,
            ErrorKind::Redirect { location, .. } => format!(
                "the server redirected to {} (an SSO login page or a proxy?); nothing was sent there: check the profile's url",
                location_host(location.as_deref())
            ),
            ErrorKind::Http { html: true, .. } | ErrorKind::NotJson { html: true, .. } => {
                "a web page answered instead of Sugar's REST API: a proxy or load balancer in front of Sugar, or a wrong url".into()
            }
            ErrorKind::Http { status, .. } if *status >= 500 => "the server failed: try again later".into(),
            ErrorKind::Http { .. } | ErrorKind::NotJson { .. } | ErrorKind::BadShape { .. } => {
                "this does not look like a Sugar REST API: check the profile's url and api".into()
            }
            ErrorKind::TooLarge { .. } => "this does not look like a Sugar REST API: check the profile's url".into(),
            ErrorKind::Truncated { .. } => "the connection broke off: try again".into(),
            ErrorKind::ConnectionRefused => format!("nothing listens at {}: is the instance up, and the url right?", self.host),
            ErrorKind::Dns => format!("the host name {} does not resolve: check the url (or the VPN/tunnel)", self.host),
            ErrorKind::Timeout { .. } => "the server is slow or unreachable: raise timeout_s if it is only slow".into(),
            ErrorKind::Tls { cert: Some(CertProblem::UnknownIssuer), .. } => format!(
                "the certificate of {} is issued by a CA this machine does not trust: if the instance uses a private CA, set ca_cert = \"/path/to/ca.pem\" in the profile (or SSL_CERT_FILE), or check that the ca_cert given is the one that issued it",
                self.host
            ),
            ErrorKind::Tls { cert: Some(CertProblem::WrongHost), .. } => format!(
                "the certificate of {} is made out for another host name: check the host name in the profile's url (or a proxy in between shows its own certificate)",
                self.host
            ),
            ErrorKind::Tls { cert: Some(CertProblem::Validity), .. } => format!(
                "the certificate of {} has expired or is not valid yet: tell the instance's admins, and check this machine's clock",
                self.host
            ),
            ErrorKind::Tls { cert: Some(CertProblem::Other), .. } => format!(
                "the certificate of {} was not accepted: check the url's host name, and set ca_cert if the instance uses a private CA",
                self.host
            ),
            ErrorKind::Tls { cert: None, .. } => format!(
                "the TLS handshake with {} failed: check that the url's host and port serve https (or use http:// for a plain-HTTP test box)",
                self.host
            ),
            ErrorKind::Network { .. } => return None,
        })
    }

    /// The problem without the profile name and hint, e.g. `HTTP 401 need_login: You must ...`.
    pub fn what(&self) -> String {
        match &self.kind {
            ErrorKind::Sugar {
                status,
                label,
                message,
            } => match message {
                Some(m) if !m.is_empty() => format!("HTTP {status} {label}: {m}"),
                _ => format!("HTTP {status} {label}"),
            },
            ErrorKind::Redirect { status, location } => {
                format!(
                    "HTTP {status} redirect to {}",
                    location_host(location.as_deref())
                )
            }
            ErrorKind::Http { status, html: true } => {
                format!("HTTP {status} with an HTML page instead of Sugar's JSON")
            }
            ErrorKind::Http {
                status,
                html: false,
            } => format!("HTTP {status} without Sugar's error JSON"),
            ErrorKind::NotJson { status, html: true } => {
                format!("HTTP {status} with an HTML page instead of JSON")
            }
            ErrorKind::NotJson {
                status,
                html: false,
            } => format!("HTTP {status} with a body that is not JSON"),
            ErrorKind::BadShape { status, what } => {
                format!("HTTP {status} with an unexpected answer: {what}")
            }
            ErrorKind::TooLarge { status } => {
                format!("HTTP {status} with a body over {} KiB", MAX_BODY / 1024)
            }
            ErrorKind::Truncated { status } => {
                format!("HTTP {status}, but the connection closed before the whole answer arrived")
            }
            ErrorKind::ConnectionRefused => format!("connection to {} refused", self.host),
            ErrorKind::Dns => format!("cannot resolve host {}", self.host),
            ErrorKind::Timeout { after } => format!(
                "no answer from {} within {} s",
                self.host,
                after.as_secs_f64()
            ),
            ErrorKind::Tls { detail, .. } => format!("TLS failure with {}: {detail}", self.host),
            ErrorKind::Network { detail } => {
                format!("network failure with {}: {detail}", self.host)
            }
        }
    }
}

impl SugarError {
    /// This failure as data, for the cache, the screen, the shell and the log.
    pub fn failure(&self, op: Op, at: DateTime<Utc>) -> Failure {
        let message = match &self.kind {
            ErrorKind::Sugar { message, .. } => message.clone().unwrap_or_default(),
            _ => self.what(),
        };
        Failure {
            op,
            at,
            kind: self.failure_kind(),
            http_status: self.status(),
            label: self.label().map(str::to_string),
            message,
            hint: self.hint(),
            needs_login: false,
        }
    }

    /// What kind of failure this is, for people and monitoring.
    pub fn failure_kind(&self) -> FailureKind {
        let lower = match &self.kind {
            ErrorKind::Sugar { message, .. } => {
                message.as_deref().unwrap_or("").to_ascii_lowercase()
            }
            _ => String::new(),
        };
        match &self.kind {
            ErrorKind::Sugar { label, .. } => match label.as_str() {
                "need_login" if lower.contains("maintenance") => FailureKind::Maintenance,
                "maintenance" | "admin_only" => FailureKind::Maintenance,
                "invalid_parameter" if lower.contains("platform") => FailureKind::Platform,
                "incorrect_version" => FailureKind::Version,
                "need_login" | "invalid_grant" | "invalid_client" | "invalid_request"
                | "not_authorized" | "not_found" => FailureKind::Credentials,
                _ => FailureKind::Server,
            },
            ErrorKind::Http { status, .. } if *status >= 500 => FailureKind::Server,
            ErrorKind::Redirect { .. }
            | ErrorKind::Http { .. }
            | ErrorKind::NotJson { .. }
            | ErrorKind::BadShape { .. }
            | ErrorKind::TooLarge { .. } => FailureKind::Protocol,
            ErrorKind::Truncated { .. }
            | ErrorKind::ConnectionRefused
            | ErrorKind::Dns
            | ErrorKind::Network { .. } => FailureKind::Network,
            ErrorKind::Timeout { .. } => FailureKind::Timeout,
            ErrorKind::Tls { .. } => FailureKind::Tls,
        }
    }
}

impl fmt::Display for SugarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} failed: {}", self.profile, self.op, self.what())?;
        if let Some(h) = self.hint() {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SugarError {}

fn location_host(location: Option<&str>) -> String {
    match location {
        None | Some("") => "an unnamed location".into(),
        Some(l) => match url::Url::parse(l) {
            Ok(u) => u.host_str().unwrap_or("an unnamed host").to_string(),
            Err(_) => "the same host".into(), // a relative Location
        },
    }
}

/// The result of one request and what a person may see of it.
#[derive(Debug)]
pub struct Call<T> {
    pub result: Result<T, SugarError>,
    pub log: RequestLog,
}

/// Tokens granted by a login, a refresh or a sudo.
#[derive(Debug, Clone)]
pub struct Grant {
    pub access_token: Secret,
    pub expires_in: i64,
    pub refresh_token: Option<Secret>,
    pub refresh_expires_in: Option<i64>,
    pub download_token: Option<Secret>,
}

/// `GET /me`: who the session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    pub id: String,
    pub user_name: String,
    pub full_name: String,
    pub admin: bool,
}

/// `GET /metadata?type_filter=server_info`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerInfo {
    #[serde(default)]
    pub flavor: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub build: Option<String>,
    #[serde(default)]
    pub product_name: Option<String>,
}

/// Idle connections kept per host for reuse.
pub const POOL_IDLE_PER_HOST: usize = 2;

/// One HTTP client per distinct network setting; cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
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
            ca_cert: profile.ca_cert.clone(),
            insecure: profile.insecure,
            proxy: profile.proxy.clone(),
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
        if let Some(ca) = &settings.ca_cert {
            let certs = ca
                .certs
                .iter()
                .map(|der| reqwest::Certificate::from_der(der))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    format!(
                        "cannot use the CA certificates in {}: {}",
                        ca.path.display(),
                        error_chain(&e)
                    )
                })?;
            builder = builder.tls_certs_merge(certs);
        }
        if settings.insecure {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
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
        Ok(Client { http })
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

    async fn send<T>(
        &self,
        p: &Profile,
        op: &'static str,
        method: Method,
        token: Option<&Secret>,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Call<T> {
        let path = method.path();
        let url = format!(
            "{}/rest/{}{}",
            p.url.as_str().trim_end_matches('/'),
            p.api,
            method.target()
        );
        let err = |kind: ErrorKind| SugarError {
            profile: p.name.clone(),
            op,
            platform: p.platform.clone(),
            api: p.api.clone(),
            host: p.host_port(),
            kind: kind.cleaned(),
        };
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
            match reqwest::header::HeaderValue::from_str(t.expose()) {
                Ok(mut value) => {
                    // Kept out of debug output (and never indexed by header compression).
                    value.set_sensitive(true);
                    req = req.header("OAuth-Token", value);
                }
                // Not a valid header value: the request fails as a builder error, which names no value.
                Err(_) => req = req.header("OAuth-Token", t.expose()),
            }
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
            Err(e) => {
                let kind = classify(&e, p.timeout, p.url.scheme() == "https");
                Err(err(match &p.proxy {
                    Some(proxy) => through_proxy(kind, proxy),
                    None => kind,
                }))
            }
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
                match read_body(resp).await {
                    Err(BodyError::TooLarge) => Err(err(ErrorKind::TooLarge { status })),
                    Err(BodyError::Broken(e)) if e.is_timeout() => {
                        Err(err(ErrorKind::Timeout { after: p.timeout }))
                    }
                    Err(BodyError::Broken(_)) => Err(err(ErrorKind::Truncated { status })),
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

/// Reads the body into a buffer that is zeroized when dropped (token answers are read here).
async fn read_body(mut resp: reqwest::Response) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    let announced = resp.content_length();
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(BodyError::TooLarge);
    }
    // Room for the whole body up front where it is announced, so that growing leaves no copies.
    let mut buf = Zeroizing::new(Vec::with_capacity(announced.unwrap_or(4096) as usize));
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Broken)? {
        if buf.len() + chunk.len() > MAX_BODY {
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

/// Owns a request body's bytes and zeroizes them when reqwest lets go of the body.
struct ZeroOnDrop(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for ZeroOnDrop {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A JSON object of string fields, as a request body.
struct Fields<'a>(&'a [(&'a str, &'a str)]);

impl Serialize for Fields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// A JSON body written straight into a buffer that is zeroized once the request is done with it:
/// no intermediate `Value` or `String` holds the password or a token. The buffer is allocated
/// once, big enough for the worst case of escaping, so that growing it leaves no copies behind.
/// (Copies that hyper or rustls make while sending are out of reach.)
fn secret_json(fields: &[(&str, &str)]) -> reqwest::Body {
    // `\u00XX` is the longest escape: 6 bytes for 1; plus quotes, `:` and `,`.
    let capacity = 2 + fields
        .iter()
        .map(|(k, v)| 6 * (k.len() + v.len()) + 6)
        .sum::<usize>();
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity));
    serde_json::to_writer(&mut *buf, &Fields(fields)).expect("writing JSON to memory cannot fail");
    debug_assert!(buf.len() <= capacity);
    reqwest::Body::from(Bytes::from_owner(ZeroOnDrop(buf)))
}

/// Zeroizes every string in a parsed answer before it is dropped.
fn scrub(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => map.values_mut().for_each(scrub),
        _ => {}
    }
}

/// Turns a status and body into JSON or a typed error.
fn interpret(
    status: u16,
    html_type: bool,
    location: Option<String>,
    body: &[u8],
) -> Result<Value, ErrorKind> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let looks_html = html_type || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
    // Sugar's error JSON, whatever the status (a 301 incorrect_version included).
    if !(200..300).contains(&status) {
        if let Some(Value::Object(map)) = &parsed
            && let Some(Value::String(label)) = map.get("error")
        {
            let message = map
                .get("error_message")
                .and_then(|m| m.as_str())
                .map(str::to_string);
            return Err(ErrorKind::Sugar {
                status,
                label: label.clone(),
                message,
            });
        }
        if (300..400).contains(&status) {
            return Err(ErrorKind::Redirect { status, location });
        }
        return Err(ErrorKind::Http {
            status,
            html: looks_html,
        });
    }
    parsed.ok_or(ErrorKind::NotJson {
        status,
        html: looks_html,
    })
}

fn classify(e: &reqwest::Error, timeout: Duration, https: bool) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout { after: timeout };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    let mut chain = Vec::new();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return ErrorKind::ConnectionRefused,
                std::io::ErrorKind::TimedOut => return ErrorKind::Timeout { after: timeout },
                _ => {}
            }
        }
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return tls_kind(tls);
        }
        chain.push(s.to_string());
        source = match s.downcast_ref::<std::io::Error>() {
            // io::Error's source() skips the error it wraps (which may be another io::Error
            // wrapping rustls's): step into it instead.
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => s.source(),
            },
            None => s.source(),
        };
    }
    let lower = chain.join(": ").to_ascii_lowercase();
    // hyper's "client error (Connect)" says nothing the rest of the chain does not.
    chain.retain(|part| !part.starts_with("client error ("));
    let text = chain.join(": ");
    if lower.contains("dns error")
        || lower.contains("failed to lookup address")
        || lower.contains("name or service not known")
    {
        ErrorKind::Dns
    } else if lower.contains("socks") || lower.contains("tunnel") {
        // A proxy failed to connect onwards (see `through_proxy`).
        ErrorKind::Network { detail: text }
    } else if (https && lower.contains("(connect)") && !lower.contains("tcp connect error"))
        || lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
    {
        // Connected, then failed before HTTP: the TLS handshake (rustls's error comes wrapped).
        ErrorKind::Tls {
            detail: chain.last().cloned().unwrap_or_default(),
            cert: None,
        }
    } else if lower.contains("connection refused") {
        ErrorKind::ConnectionRefused
    } else {
        ErrorKind::Network {
            detail: if text.is_empty() { e.to_string() } else { text },
        }
    }
}

/// Through a proxy, the client's own connection goes to the proxy: a refused connection or a name
/// that does not resolve is the proxy's, not the instance's.
fn through_proxy(kind: ErrorKind, proxy: &Url) -> ErrorKind {
    let at = match (proxy.host_str(), proxy.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", proxy.scheme()),
        (Some(host), None) => format!("{}://{host}", proxy.scheme()),
        _ => proxy.scheme().to_string(),
    };
    let detail = match kind {
        ErrorKind::ConnectionRefused => {
            format!(
                "the proxy {at} refused the connection: is it running? (check the profile's proxy)"
            )
        }
        ErrorKind::Dns => format!("the proxy {at} does not resolve (check the profile's proxy)"),
        ErrorKind::Network { detail } => format!("through the proxy {at}: {detail}"),
        other => return other,
    };
    ErrorKind::Network { detail }
}

/// What a rustls error says, in words, and which certificate problem it is.
fn tls_kind(e: &rustls::Error) -> ErrorKind {
    use rustls::CertificateError as C;
    let problem = match e {
        rustls::Error::InvalidCertificate(c) => Some(match c {
            C::UnknownIssuer => CertProblem::UnknownIssuer,
            C::NotValidForName | C::NotValidForNameContext { .. } => CertProblem::WrongHost,
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => CertProblem::Validity,
            _ => CertProblem::Other,
        }),
        _ => None,
    };
    let detail = match problem {
        Some(CertProblem::UnknownIssuer) => {
            "the server's certificate is issued by an unknown certificate authority".to_string()
        }
        _ => e.to_string(),
    };
    ErrorKind::Tls {
        detail,
        cert: problem,
    }
}

/// Reads a token answer as the client does: status and body to JSON (or Sugar's error), then
/// [`parse_grant`]. Never panics, whatever the bytes.
pub fn parse_grant_answer(status: u16, body: &[u8]) -> Result<Grant, ErrorKind> {
    let mut value = interpret(status, false, None, body).map_err(ErrorKind::cleaned)?;
    let parsed = parse_grant(&value).map_err(|what| ErrorKind::BadShape { status, what }.cleaned());
    scrub(&mut value);
    parsed
}

/// A lifetime in seconds, as a number or a string of digits: 1 s to [`MAX_LIFETIME_S`].
fn lifetime_field(v: &Value, key: &str) -> Result<Option<i64>, String> {
    let whole: Option<i128> = match v.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Some(Value::String(s)) => s.parse::<i128>().ok(),
        Some(_) => return Err(format!("\"{key}\" is not a number")),
    };
    let Some(n) = whole else {
        return Err(format!("\"{key}\" is not a whole number of seconds"));
    };
    match i64::try_from(n) {
        Ok(n) if (1..=MAX_LIFETIME_S).contains(&n) => Ok(Some(n)),
        // Only digits and a sign are quoted: nothing else of the server's text.
        _ => Err(format!(
            "\"{key}\" of {n} s is out of range (1 s to {} days)",
            MAX_LIFETIME_S / 86_400
        )),
    }
}

fn token_field(v: &Value, key: &str) -> Result<Option<Secret>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(Secret::new(s.as_str()))),
        Some(_) => Err(format!("\"{key}\" is not a non-empty string")),
    }
}

/// Parses a token answer; never assumes lifetimes.
pub fn parse_grant(v: &Value) -> Result<Grant, String> {
    if !v.is_object() {
        return Err("the token answer is not a JSON object".into());
    }
    let access_token =
        token_field(v, "access_token")?.ok_or("no \"access_token\" in the token answer")?;
    let expires_in =
        lifetime_field(v, "expires_in")?.ok_or("no \"expires_in\" in the token answer")?;
    let refresh_token = token_field(v, "refresh_token")?;
    let refresh_expires_in = lifetime_field(v, "refresh_expires_in")?;
    if refresh_token.is_some() && refresh_expires_in.is_none() {
        return Err("a \"refresh_token\" without \"refresh_expires_in\"".into());
    }
    let download_token = token_field(v, "download_token").unwrap_or(None);
    Ok(Grant {
        access_token,
        expires_in,
        refresh_token,
        refresh_expires_in,
        download_token,
    })
}

fn parse_me(v: &Value) -> Result<Me, String> {
    let u = v
        .get("current_user")
        .filter(|u| u.is_object())
        .ok_or("no \"current_user\" object")?;
    // Shown by `check` and on the screen: no control characters from the server.
    let s = |k: &str| crate::text::strip_controls(u.get(k).and_then(|x| x.as_str()).unwrap_or(""));
    Ok(Me {
        id: s("id"),
        user_name: s("user_name"),
        full_name: s("full_name"),
        admin: s("type") == "admin",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_parsing_takes_lifetimes_from_the_answer() {
        let v = serde_json::json!({"access_token":"a-b","expires_in":90,"token_type":"bearer","scope":null,
            "refresh_token":"r","refresh_expires_in":"600","download_token":"d","extra":[1]});
        let g = parse_grant(&v).unwrap();
        assert_eq!((g.expires_in, g.refresh_expires_in), (90, Some(600)));
        assert!(
            parse_grant(&serde_json::json!({"access_token": 5, "expires_in": 1}))
                .unwrap_err()
                .contains("access_token")
        );
        assert!(
            parse_grant(&serde_json::json!({"access_token": "x"}))
                .unwrap_err()
                .contains("expires_in")
        );
        assert!(parse_grant(&serde_json::json!({"access_token": "x", "expires_in": -3})).is_err());
        assert!(parse_grant(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn lifetimes_must_be_from_one_second_to_ten_years() {
        let grant = |expires_in: Value, refresh: Value| {
            parse_grant(
                &serde_json::json!({"access_token": "a", "expires_in": expires_in,
                "refresh_token": "r", "refresh_expires_in": refresh}),
            )
        };
        let most = MAX_LIFETIME_S;
        let g = grant(most.into(), most.to_string().into()).unwrap();
        assert_eq!((g.expires_in, g.refresh_expires_in), (most, Some(most)));
        for (bad, shown) in [
            (Value::from(10_000_000_000_000_i64), "10000000000000"),
            ("10000000000000".into(), "10000000000000"),
            ((most + 1).into(), "315360001"),
            (u64::MAX.into(), "18446744073709551615"),
            ("99999999999999999999999".into(), "99999999999999999999999"),
            (0.into(), "0"),
            ("-1".into(), "-1"),
            (i64::MIN.into(), "-9223372036854775808"),
        ] {
            assert_eq!(
                grant(bad.clone(), 60.into()).unwrap_err(),
                format!("\"expires_in\" of {shown} s is out of range (1 s to 3650 days)")
            );
            assert_eq!(
                grant(60.into(), bad).unwrap_err(),
                format!("\"refresh_expires_in\" of {shown} s is out of range (1 s to 3650 days)")
            );
        }
        for bad in [
            Value::from(1.5),
            "1e3".into(),
            " 60".into(),
            "\u{1b}[2J".into(),
        ] {
            assert_eq!(
                grant(bad, 60.into()).unwrap_err(),
                "\"expires_in\" is not a whole number of seconds"
            );
        }
    }

    #[test]
    fn server_text_in_errors_is_stripped_of_control_characters() {
        let body = "{\"error\":\"need_login\\u001b[31m\",\"error_message\":\"bad\\u001b]52;c;AAAA\\u0007 pw\"}";
        assert_eq!(
            parse_grant_answer(401, body.as_bytes()).unwrap_err(),
            ErrorKind::Sugar {
                status: 401,
                label: "need_login".into(),
                message: Some("bad pw".into())
            }
        );
        let redirect = ErrorKind::Redirect {
            status: 302,
            location: Some("https://sso.\u{9b}31mexample.com/\x1b]0;t\x07".into()),
        };
        assert_eq!(
            redirect.cleaned(),
            ErrorKind::Redirect {
                status: 302,
                location: Some("https://sso.example.com/".into())
            }
        );
        let me = parse_me(
            &serde_json::json!({"current_user": {"user_name": "jim\u{1b}[2J",
            "full_name": "Jim\u{7}\u{9b}1m Halpert", "type": "user"}}),
        )
        .unwrap();
        assert_eq!(
            (me.user_name.as_str(), me.full_name.as_str()),
            ("jim", "Jim Halpert")
        );
    }

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

    #[test]
    fn scrubbing_blanks_every_string() {
        let mut v = serde_json::json!({"access_token": "abc", "n": 1, "a": ["xyz", {"r": "qq"}]});
        scrub(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"access_token": "", "n": 1, "a": ["", {"r": ""}]})
        );
    }

    #[test]
    fn sugar_error_json_wins_over_the_status_class() {
        let body = br#"{"error":"incorrect_version","error_message":"Incorrect API version"}"#;
        assert_eq!(
            interpret(301, false, None, body),
            Err(ErrorKind::Sugar {
                status: 301,
                label: "incorrect_version".into(),
                message: Some("Incorrect API version".into())
            })
        );
        assert_eq!(
            interpret(302, true, Some("https://sso.example.com/login".into()), b""),
            Err(ErrorKind::Redirect {
                status: 302,
                location: Some("https://sso.example.com/login".into())
            })
        );
        assert_eq!(
            interpret(502, false, None, b"<html>bad gateway</html>"),
            Err(ErrorKind::Http {
                status: 502,
                html: true
            })
        );
        assert_eq!(
            interpret(200, false, None, b"pong?"),
            Err(ErrorKind::NotJson {
                status: 200,
                html: false
            })
        );
    }
}
