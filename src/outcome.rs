//! What was done to a session ([`Op`]) and how it failed ([`Failure`]), as data.
//!
//! Pure: no I/O. A failure is stored in the cache, shown on the screen, printed by the shell
//! commands and logged; [`Failure::render`] is the one place that turns it into words, and
//! nothing parses those words back.

use crate::session::{Entry, RequestLog, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What is done to a session: the one verb of the screen, the cache and the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Login,
    Refresh,
    Logout,
    /// A live check (`GET /ping`, `/me`, server info, server time).
    Check,
    /// An impersonation (`POST /oauth2/sudo/USER`).
    Sudo,
    /// A login made automatically because the refresh token was rejected.
    Relogin,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Login => "login",
            Op::Refresh => "refresh",
            Op::Logout => "logout",
            Op::Check => "check",
            Op::Sudo => "sudo",
            Op::Relogin => "re-login",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of thing went wrong: what a person (or a monitoring check) acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The user, password, client or token was not accepted.
    Credentials,
    /// The platform is not registered on the instance.
    Platform,
    /// The instance is in maintenance mode (or admin-only).
    Maintenance,
    /// The instance does not serve the REST API version.
    Version,
    /// Connection refused, name not resolved, connection broken.
    Network,
    /// The TLS handshake or the certificate failed.
    Tls,
    /// No answer in time.
    Timeout,
    /// The server failed (5xx, or a Sugar error with no better kind).
    Server,
    /// The answer was not what Sugar sends (HTML, redirect, bad JSON, out-of-range values).
    Protocol,
    /// Another login for the same user and platform ended the session.
    Superseded,
    /// A local problem: no password, the cache or a lock, a password command.
    Local,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Credentials => "credentials",
            FailureKind::Platform => "platform",
            FailureKind::Maintenance => "maintenance",
            FailureKind::Version => "version",
            FailureKind::Network => "network",
            FailureKind::Tls => "tls",
            FailureKind::Timeout => "timeout",
            FailureKind::Server => "server",
            FailureKind::Protocol => "protocol",
            FailureKind::Superseded => "superseded",
            FailureKind::Local => "local",
        }
    }
}

/// A failed attempt on a session.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub op: Op,
    #[serde(deserialize_with = "crate::time_serde::instant")]
    pub at: DateTime<Utc>,
    pub kind: FailureKind,
    /// The HTTP status, when an answer arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Sugar's `error` label (`need_login`, `invalid_grant`, ...), when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Sugar's `error_message` when it sent its error JSON; else what went wrong, in words
    /// (without the profile's name, the operation or the hint).
    pub message: String,
    /// What a person can do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// A new login is needed (the refresh token was rejected, there is no password, ...).
    #[serde(default)]
    pub needs_login: bool,
}

impl Failure {
    /// A failure that is not an answer from Sugar.
    pub fn local(op: Op, at: DateTime<Utc>, message: impl Into<String>) -> Failure {
        Failure {
            op,
            at,
            kind: FailureKind::Local,
            http_status: None,
            label: None,
            message: message.into(),
            hint: None,
            needs_login: false,
        }
    }

    pub fn needing_login(mut self) -> Failure {
        self.needs_login = true;
        self
    }

    /// The same failure, of another operation.
    pub fn with_op(mut self, op: Op) -> Failure {
        self.op = op;
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    pub fn superseded(&self) -> bool {
        self.kind == FailureKind::Superseded
    }

    /// A request that rotates or ends the session (login, refresh, logout) got no whole answer:
    /// Sugar may have acted on it (rotated or ended the session) without our knowing. A later
    /// rejection of the session is then most likely our own doing, not another login's.
    pub fn answer_may_be_lost(&self) -> bool {
        matches!(self.kind, FailureKind::Timeout | FailureKind::Network)
            && matches!(self.op, Op::Login | Op::Refresh | Op::Relogin | Op::Logout)
    }

    /// The problem without the profile, the operation or the hint:
    /// `HTTP 401 need_login: You must specify a valid username and password.`
    pub fn what(&self) -> String {
        match (&self.label, self.http_status) {
            (Some(label), Some(status)) if self.message.is_empty() => {
                format!("HTTP {status} {label}")
            }
            (Some(label), Some(status)) => format!("HTTP {status} {label}: {}", self.message),
            _ => self.message.clone(),
        }
    }

    /// `login failed: HTTP 401 need_login: ...`, or for a superseded session `superseded: ...`:
    /// the failure without the profile's name and the hint.
    pub fn headline(&self) -> String {
        if self.superseded() {
            format!("superseded: {}", self.what())
        } else {
            format!("{} failed: {}", self.op, self.what())
        }
    }

    /// The whole failure in words for a profile labelled `name`:
    /// `acme: login failed: HTTP 401 need_login: ... (hint: ...)`, or for a superseded session
    /// `acme: superseded: ...`.
    pub fn render(&self, name: &str) -> String {
        let mut out = format!("{name}: {}", self.headline());
        if let Some(h) = &self.hint {
            out.push_str(" (hint: ");
            out.push_str(h);
            out.push(')');
        }
        out
    }

    /// A few words for a narrow column: `401 need_login`, `HTTP 502`, `timeout`.
    pub fn short(&self) -> String {
        match (&self.label, self.http_status) {
            (Some(label), Some(status)) => format!("{status} {label}"),
            (None, Some(status)) => format!("HTTP {status}"),
            _ => match self.kind {
                FailureKind::Tls => "TLS".into(),
                FailureKind::Local => "failed".into(),
                kind => kind.as_str().into(),
            },
        }
    }

    /// [`render`](Self::render) without the profile's name: `login failed: ...`.
    pub fn render_unnamed(&self) -> String {
        let full = self.render("");
        full.strip_prefix(": ").unwrap_or(&full).to_string()
    }
}

/// What an operation on one profile came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    /// The identity of the session it is about (for an impersonation, the impersonation's): a
    /// screen whose profile changed identity meanwhile (the file was edited) does not take it.
    pub key: crate::identity::SessionKey,
    pub op: Op,
    pub ok: bool,
    /// One line for people, starting with the profile's name.
    pub message: String,
    /// The session's cache entry after the operation (as persisted; when the result could not be
    /// stored, the entry as it now stands for this process, with the failure saying so).
    pub entry: Entry,
    /// The state at the time the outcome was made.
    pub state: State,
    /// The requests sent, in order.
    pub requests: Vec<RequestLog>,
    /// What went wrong, when something did.
    pub failure: Option<Failure>,
}

impl Outcome {
    /// `ok`, or the failure's kind: the `result` label of the daemon's metrics and logs.
    pub fn result(&self) -> &'static str {
        self.failure.as_ref().map_or("ok", |f| f.kind.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_sugar_error_renders_status_label_message_and_hint() {
        let f = Failure {
            op: Op::Login,
            at: at(),
            kind: FailureKind::Credentials,
            http_status: Some(401),
            label: Some("need_login".into()),
            message: "You must specify a valid username and password.".into(),
            hint: Some("check the username".into()),
            needs_login: false,
        };
        assert_eq!(
            f.render("acme"),
            "acme: login failed: HTTP 401 need_login: You must specify a valid username and password. (hint: check the username)"
        );
        assert_eq!(
            f.render_unnamed(),
            "login failed: HTTP 401 need_login: You must specify a valid username and password. (hint: check the username)"
        );
    }

    #[test]
    fn local_and_superseded_failures_read_as_such() {
        let f = Failure::local(Op::Check, at(), "no active session to check: log in first");
        assert_eq!(
            f.render("acme"),
            "acme: check failed: no active session to check: log in first"
        );
        let s = Failure {
            kind: FailureKind::Superseded,
            ..Failure::local(Op::Refresh, at(), "another login ended it")
        };
        assert_eq!(s.render("acme"), "acme: superseded: another login ended it");
    }
}
