//! What a session is, and the rules that decide its state at a given time.
//!
//! Pure: no I/O, no clock reads. Every function that depends on time takes `now`.

use crate::secret::Secret;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A token is handed out by `token` only while it has at least this long left.
pub const MIN_USABLE: TimeDelta = TimeDelta::seconds(30);

/// The tokens of one logged-in session and when they expire.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Session {
    pub access_token: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_token: Option<Secret>,
    pub obtained_at: DateTime<Utc>,
    /// Absolute expiry of the access token (from `expires_in`).
    pub expires_at: DateTime<Utc>,
    /// Absolute expiry of the refresh token (from `refresh_expires_in`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// The platform and user this session belongs to.
    pub platform: String,
    pub username: String,
    /// The instance root the session was obtained from.
    pub url: String,
}

impl Session {
    pub fn access_valid(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }

    /// The access token can still be handed to a script: valid for at least [`MIN_USABLE`].
    pub fn access_usable(&self, now: DateTime<Utc>) -> bool {
        now + MIN_USABLE < self.expires_at
    }

    /// A refresh token exists and has not expired.
    pub fn refresh_valid(&self, now: DateTime<Utc>) -> bool {
        self.refresh_token.is_some() && self.refresh_expires_at.is_some_and(|t| now < t)
    }

    /// True when this session was obtained for the given identity; a profile whose url,
    /// user or platform changed in the file must not reuse another identity's tokens.
    pub fn belongs_to(&self, url: &str, username: &str, platform: &str) -> bool {
        self.url == url && self.username == username && self.platform == platform
    }
}

/// Which operation was attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Login,
    Refresh,
    Logout,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Login => "login",
            Op::Refresh => "refresh",
            Op::Logout => "logout",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last attempt on a profile failed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub at: DateTime<Utc>,
    pub op: Op,
    /// The full message a user sees (names the profile, the status, Sugar's error, a hint).
    pub message: String,
    /// The failure means a new login is needed (for example the refresh token was rejected).
    #[serde(default)]
    pub needs_login: bool,
}

/// What the token cache knows of one profile.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// The state of a profile's session as the cache knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Active,
    Expired,
    RefreshExpired,
    Error,
    LoggedOut,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Active,
        State::Expired,
        State::RefreshExpired,
        State::Error,
        State::LoggedOut,
    ];

    /// The machine name used in JSON and the cache (`refresh_expired`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Expired => "expired",
            State::RefreshExpired => "refresh_expired",
            State::Error => "error",
            State::LoggedOut => "logged_out",
        }
    }

    /// Words for people (`refresh expired`).
    pub fn words(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Expired => "expired",
            State::RefreshExpired => "refresh expired",
            State::Error => "error",
            State::LoggedOut => "logged out",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Entry {
    /// The state at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> State {
        if self.failure.is_some() {
            return State::Error;
        }
        match &self.session {
            None => State::LoggedOut,
            Some(s) if s.access_valid(now) => State::Active,
            Some(s) if s.refresh_valid(now) => State::Expired,
            Some(_) => State::RefreshExpired,
        }
    }

    /// Why the profile is in its state, when that needs saying.
    pub fn reason(&self, now: DateTime<Utc>) -> Option<String> {
        if let Some(f) = &self.failure {
            return Some(f.message.clone());
        }
        match (&self.session, self.state(now)) {
            (Some(_), State::Expired) => {
                Some("the access token expired; a refresh will renew it".into())
            }
            (Some(s), State::RefreshExpired) if s.refresh_token.is_none() => Some(
                "the access token expired and there is no refresh token; a login is needed".into(),
            ),
            (Some(_), State::RefreshExpired) => {
                Some("the refresh token expired; a login is needed".into())
            }
            _ => None,
        }
    }

    /// A session whose access token can be handed out now.
    pub fn usable_session(&self, now: DateTime<Utc>) -> Option<&Session> {
        self.session.as_ref().filter(|s| s.access_usable(now))
    }
}

/// Seconds from `now` until `at`, never negative.
pub fn remaining(at: DateTime<Utc>, now: DateTime<Utc>) -> TimeDelta {
    (at - now).max(TimeDelta::zero())
}

/// A compact duration for countdowns: `52m 07s`, `4h 05m`, `13d 23h`, `45s`.
pub fn format_duration(d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, mins, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d {hours:02}h")
    } else if hours > 0 {
        format!("{hours}h {mins:02}m")
    } else if mins > 0 {
        format!("{mins}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// RFC 3339 UTC with a `Z`, to the second: the one timestamp format of the program's output.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn session(expires: &str, refresh: Option<&str>) -> Session {
        Session {
            access_token: "a".into(),
            refresh_token: refresh.map(|_| "r".into()),
            download_token: None,
            obtained_at: at("2026-01-01T00:00:00Z"),
            expires_at: at(expires),
            refresh_expires_at: refresh.map(at),
            platform: "p".into(),
            username: "u".into(),
            url: "http://x".into(),
        }
    }

    #[test]
    fn state_follows_the_clock() {
        let e = Entry {
            session: Some(session(
                "2026-01-01T01:00:00Z",
                Some("2026-01-15T00:00:00Z"),
            )),
            ..Default::default()
        };
        assert_eq!(e.state(at("2026-01-01T00:30:00Z")), State::Active);
        assert_eq!(e.state(at("2026-01-01T01:00:00Z")), State::Expired);
        assert_eq!(e.state(at("2026-01-15T00:00:00Z")), State::RefreshExpired);
        assert_eq!(
            Entry::default().state(at("2026-01-01T00:00:00Z")),
            State::LoggedOut
        );
    }

    #[test]
    fn a_failure_is_an_error_state_with_its_reason() {
        let e = Entry {
            session: None,
            failure: Some(Failure {
                at: at("2026-01-01T00:00:00Z"),
                op: Op::Login,
                message: "x: boom".into(),
                needs_login: false,
            }),
            updated_at: None,
        };
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(e.state(now), State::Error);
        assert_eq!(e.reason(now).as_deref(), Some("x: boom"));
    }

    #[test]
    fn usable_needs_a_margin() {
        let e = Entry {
            session: Some(session("2026-01-01T01:00:00Z", None)),
            ..Default::default()
        };
        assert!(e.usable_session(at("2026-01-01T00:59:00Z")).is_some());
        assert!(e.usable_session(at("2026-01-01T00:59:40Z")).is_none());
    }

    #[test]
    fn durations_read_like_countdowns() {
        assert_eq!(format_duration(TimeDelta::seconds(52 * 60 + 7)), "52m 07s");
        assert_eq!(
            format_duration(TimeDelta::seconds(4 * 3600 + 5 * 60 + 9)),
            "4h 05m"
        );
        assert_eq!(
            format_duration(TimeDelta::seconds(13 * 86_400 + 23 * 3600)),
            "13d 23h"
        );
        assert_eq!(format_duration(TimeDelta::seconds(45)), "45s");
        assert_eq!(format_duration(TimeDelta::seconds(-5)), "0s");
    }
}

/// One HTTP request as a person may see it: never a secret, never a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestLog {
    pub at: DateTime<Utc>,
    pub method: &'static str,
    /// The path below the REST root, e.g. `/oauth2/token`.
    pub path: &'static str,
    /// The HTTP status, when an answer arrived.
    pub status: Option<u16>,
    pub latency_ms: u64,
}
