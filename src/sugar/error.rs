//! What went wrong with a request, by kind: Sugar's errors, HTTP and transport failures, and
//! what each means to a person (the message, the hint, the failure as data).

use super::MAX_BODY;
use crate::outcome::{Failure, FailureKind};
use crate::session::Op;
use chrono::{DateTime, Utc};
use std::error::Error as _;
use std::fmt;
use std::time::Duration;
use url::Url;

/// The hint of a login that Sugar refused with the password from the profile's source.
pub const SOURCE_PASSWORD_HINT: &str = "check the username and the password source of the profile";
/// The same, for a password typed at a prompt.
pub const TYPED_PASSWORD_HINT: &str =
    "check the username, and the password typed (Caps Lock? the keyboard layout?)";

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
    /// More than `limit` bytes ([`MAX_BODY`] for Sugar's own answers).
    TooLarge {
        status: u16,
        limit: usize,
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
            | ErrorKind::TooLarge { status, .. }
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
                SOURCE_PASSWORD_HINT.into()
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
            ErrorKind::TooLarge { limit, .. } if *limit > MAX_BODY => {
                "ask for less at a time (max_num, fields) or follow the pages (--paginate)".into()
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
            ErrorKind::TooLarge { status, limit } => {
                format!("HTTP {status} with a body over {} KiB", limit / 1024)
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

pub(super) fn classify(e: &reqwest::Error, timeout: Duration, https: bool) -> ErrorKind {
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
pub(super) fn through_proxy(kind: ErrorKind, proxy: &Url) -> ErrorKind {
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
