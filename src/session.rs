//! What a session is, and the rules that decide its state at a given time.
//!
//! Pure: no I/O, no clock reads. Every function that depends on time takes `now`.

use crate::identity::SessionKey;
pub use crate::outcome::{Failure, FailureKind, Op};
use crate::secret::Secret;
use chrono::{DateTime, TimeDelta, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A token is handed out only while it has at least this long left, or a fifth of its lifetime
/// when that is shorter (see [`Session::usable_margin`]).
pub const MIN_USABLE: TimeDelta = TimeDelta::seconds(30);

/// The tokens of one logged-in session and when they expire.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Session {
    pub access_token: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_token: Option<Secret>,
    #[serde(deserialize_with = "crate::time_serde::instant")]
    pub obtained_at: DateTime<Utc>,
    /// Absolute expiry of the access token (from `expires_in`).
    #[serde(deserialize_with = "crate::time_serde::instant")]
    pub expires_at: DateTime<Utc>,
    /// Absolute expiry of the refresh token (from `refresh_expires_in`), when there is one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::time_serde::optional"
    )]
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// The platform and user this session belongs to.
    pub platform: String,
    pub username: String,
    /// The instance root the session was obtained from.
    pub url: String,
    /// Refreshing no longer extends the session (Sugar's `max_session_lifetime`): it ends here.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::time_serde::optional"
    )]
    pub hard_end: Option<DateTime<Utc>>,
}

impl Session {
    pub fn access_valid(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }

    /// How long the access token must still be valid to be handed out: [`MIN_USABLE`], or a
    /// fifth of the token's lifetime when that is shorter (a 10 s token is usable for 8 s). Never
    /// more than the default refresh lead, so a token that is no longer usable is due for its
    /// automatic refresh (unless the profile set a shorter `refresh_before_s`).
    pub fn usable_margin(&self) -> TimeDelta {
        let lifetime = (self.expires_at - self.obtained_at).max(TimeDelta::zero());
        MIN_USABLE.min(lifetime / 5)
    }

    /// The access token can still be handed to a script: valid for at least [`Session::usable_margin`].
    pub fn access_usable(&self, now: DateTime<Utc>) -> bool {
        now + self.usable_margin() < self.expires_at
    }

    /// Sugar no longer accepts this session (a check found it gone, or its refresh token was
    /// rejected): nothing of it may be used again. The refresh token goes, and the access token
    /// counts as expired from `now` (Sugar may still take it for a moment after another login,
    /// but handing it out would hand out a token about to die, or already dead).
    pub fn end(&mut self, now: DateTime<Utc>) {
        self.refresh_token = None;
        self.refresh_expires_at = None;
        self.expires_at = self.expires_at.min(now);
    }

    /// When the refresh token expires, when the session has one.
    pub fn refresh_expiry(&self) -> Option<DateTime<Utc>> {
        self.refresh_token.as_ref().and(self.refresh_expires_at)
    }

    /// A refresh token exists and has not expired.
    pub fn refresh_valid(&self, now: DateTime<Utc>) -> bool {
        self.refresh_token.is_some() && self.refresh_expires_at.is_some_and(|t| now < t)
    }
}

/// What the token cache knows of one session (keyed by its [`crate::identity::SessionKey`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// Counts the changes of this entry: a change computed from one generation is applied only
    /// while the entry still has it (compare-and-swap). 0: never written.
    #[serde(default)]
    pub generation: u64,
    /// The name of the profile that last changed it (a label for people; not the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::time_serde::optional"
    )]
    pub updated_at: Option<DateTime<Utc>>,
    /// The last automatic re-login (at most one per [`RELOGIN_INTERVAL`]).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::time_serde::optional"
    )]
    pub relogin_at: Option<DateTime<Utc>>,
}

/// Everything the cache holds: one entry per session identity (format 2).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Cache {
    pub version: u32,
    #[serde(default)]
    /// Entries are shared: a change copies the map's pointers and the entries it changes, not
    /// every entry (readers keep the version they hold while a write makes the next).
    pub sessions: Sessions,
}

/// The cache's entries by identity, in file order. Hashed with foldhash: the keys come from this
/// user's own 0600 file, and hashing ten thousand of them with SipHash was a twentieth of
/// `status --json`.
pub type Sessions = IndexMap<Arc<SessionKey>, Arc<Entry>, foldhash::fast::RandomState>;

impl Cache {
    pub fn entry(&self, key: &SessionKey) -> Option<&Entry> {
        self.sessions.get(key).map(|e| &**e)
    }

    /// Sets the entry of `key`.
    pub fn insert(&mut self, key: SessionKey, entry: Entry) {
        self.sessions.insert(Arc::new(key), Arc::new(entry));
    }

    /// The entry of `key`, or an empty one (generation 0).
    pub fn entry_or_default(&self, key: &SessionKey) -> Entry {
        self.entry(key).cloned().unwrap_or_default()
    }
}

/// At most one automatic re-login per profile in this long.
pub const RELOGIN_INTERVAL: TimeDelta = TimeDelta::minutes(10);

/// The state of a profile's session as the cache knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Active,
    Expired,
    RefreshExpired,
    Superseded,
    Error,
    LoggedOut,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Active,
        State::Expired,
        State::RefreshExpired,
        State::Superseded,
        State::Error,
        State::LoggedOut,
    ];

    /// The machine name used in JSON and the cache (`refresh_expired`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Expired => "expired",
            State::RefreshExpired => "refresh_expired",
            State::Superseded => "superseded",
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
            State::Superseded => "superseded",
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
    /// Only a new login makes a session of this entry usable again: there is none, its refresh
    /// token expired or another login superseded it, or a failure says so (or left neither a
    /// usable access token nor a valid refresh token). The one rule of the daemon's decision and
    /// of its second look under the identity's lock.
    pub fn needs_login(&self, now: DateTime<Utc>) -> bool {
        match self.state(now) {
            State::LoggedOut | State::RefreshExpired | State::Superseded => true,
            State::Error => {
                self.failure.as_ref().is_some_and(|f| f.needs_login)
                    || self
                        .session
                        .as_ref()
                        .is_none_or(|s| !s.refresh_valid(now) && !s.access_usable(now))
            }
            State::Active | State::Expired => false,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> State {
        if let Some(f) = &self.failure {
            return if f.superseded() {
                State::Superseded
            } else {
                State::Error
            };
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
            return Some(f.render_unnamed());
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
            hard_end: None,
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
            failure: Some(Failure::local(
                Op::Login,
                at("2026-01-01T00:00:00Z"),
                "boom",
            )),
            ..Default::default()
        };
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(e.state(now), State::Error);
        assert_eq!(e.reason(now).as_deref(), Some("login failed: boom"));
    }

    #[test]
    fn the_usable_margin_scales_with_a_short_lifetime() {
        // A 10 s token: usable until 2 s before its end, and due for refresh by then.
        let obtained = at("2026-01-01T00:00:00Z");
        let s = Session {
            obtained_at: obtained,
            expires_at: obtained + TimeDelta::seconds(10),
            refresh_token: Some("r".into()),
            refresh_expires_at: Some(obtained + TimeDelta::seconds(600)),
            ..session("2026-01-01T01:00:00Z", None)
        };
        assert_eq!(s.usable_margin(), TimeDelta::seconds(2));
        assert!(s.access_usable(obtained));
        assert!(s.access_usable(obtained + TimeDelta::milliseconds(7900)));
        assert!(!s.access_usable(obtained + TimeDelta::seconds(8)));
        let e = Entry {
            session: Some(s.clone()),
            ..Default::default()
        };
        let due = refresh_at("acme", &s, None);
        assert!(
            due >= obtained + TimeDelta::milliseconds(7800)
                && due <= obtained + TimeDelta::seconds(8)
        );
        // Whenever the token is no longer usable, its refresh is due: never "unusable but not due".
        for ms in (0..10_000).step_by(100) {
            let now = obtained + TimeDelta::milliseconds(ms);
            assert!(
                s.access_usable(now) || refresh_due("acme", &e, None, now),
                "at {ms} ms"
            );
        }
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

/// Refresh this long before the access token expires, unless the profile says otherwise.
pub const DEFAULT_REFRESH_BEFORE: TimeDelta = TimeDelta::seconds(300);
/// A failed refresh is not retried automatically sooner than this.
pub const RETRY_AFTER_FAILURE: TimeDelta = TimeDelta::seconds(30);

/// How long before the access token's expiry a session is refreshed: the profile's
/// `refresh_before_s`, else 300 s, or a fifth of the token's lifetime when that is shorter.
pub fn refresh_lead(session: &Session, configured: Option<std::time::Duration>) -> TimeDelta {
    let lifetime = session.expires_at - session.obtained_at;
    match configured.and_then(|d| TimeDelta::from_std(d).ok()) {
        Some(lead) => lead.min(lifetime),
        None => DEFAULT_REFRESH_BEFORE.min(lifetime / 5),
    }
}

/// A spread of up to a tenth of the lead (at most 30 s), fixed for one profile and one token, so
/// that a fleet logged in together does not refresh in the same second.
pub fn refresh_jitter(name: &str, session: &Session, lead: TimeDelta) -> TimeDelta {
    let span = (lead.num_milliseconds() / 10).min(30_000);
    if span <= 0 {
        return TimeDelta::zero();
    }
    // FNV-1a over the name and the moment the token was obtained: stable, cheap, well spread.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name
        .bytes()
        .chain(session.obtained_at.timestamp_millis().to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    TimeDelta::milliseconds((h % span as u64) as i64)
}

/// When the session should be refreshed automatically.
pub fn refresh_at(
    name: &str,
    session: &Session,
    configured: Option<std::time::Duration>,
) -> DateTime<Utc> {
    let lead = refresh_lead(session, configured);
    session.expires_at - lead - refresh_jitter(name, session, lead)
}

/// True when an automatic refresh of this entry should start now: it has a live refresh token,
/// its refresh time has come, and no recent failure (or one that needs a login) stands in the way.
pub fn refresh_due(
    name: &str,
    entry: &Entry,
    configured: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> bool {
    let Some(session) = &entry.session else {
        return false;
    };
    if !session.refresh_valid(now) {
        return false;
    }
    if let Some(f) = &entry.failure
        && (f.needs_login || now - f.at < RETRY_AFTER_FAILURE)
    {
        return false;
    }
    now >= refresh_at(name, session, configured)
}

#[cfg(test)]
mod refresh_timing {
    use super::*;
    use std::time::Duration;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn session(lifetime_s: i64) -> Session {
        let obtained = at("2026-01-01T00:00:00Z");
        Session {
            access_token: "a".into(),
            refresh_token: Some("r".into()),
            download_token: None,
            obtained_at: obtained,
            expires_at: obtained + TimeDelta::seconds(lifetime_s),
            refresh_expires_at: Some(obtained + TimeDelta::days(14)),
            platform: "p".into(),
            username: "u".into(),
            url: "http://x".into(),
            hard_end: None,
        }
    }

    #[test]
    fn the_lead_is_five_minutes_or_a_fifth_of_a_short_lifetime() {
        assert_eq!(refresh_lead(&session(3600), None), TimeDelta::seconds(300));
        assert_eq!(refresh_lead(&session(90), None), TimeDelta::seconds(18));
        assert_eq!(
            refresh_lead(&session(3600), Some(Duration::from_secs(600))),
            TimeDelta::seconds(600)
        );
        assert_eq!(
            refresh_lead(&session(60), Some(Duration::from_secs(600))),
            TimeDelta::seconds(60)
        );
    }

    #[test]
    fn jitter_is_bounded_stable_and_differs_between_profiles() {
        let s = session(3600);
        let lead = refresh_lead(&s, None);
        let spreads: Vec<TimeDelta> = (0..50)
            .map(|i| refresh_jitter(&format!("p{i}"), &s, lead))
            .collect();
        assert!(
            spreads
                .iter()
                .all(|j| *j >= TimeDelta::zero() && *j < TimeDelta::seconds(30))
        );
        assert_eq!(
            refresh_jitter("p1", &s, lead),
            refresh_jitter("p1", &s, lead)
        );
        let mut distinct = spreads.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 40, "a fleet spreads out");
    }

    #[test]
    fn due_at_the_refresh_time_and_not_before() {
        let s = session(3600);
        let e = Entry {
            session: Some(s.clone()),
            ..Default::default()
        };
        let when = refresh_at("acme", &s, None);
        assert!(when <= s.expires_at - TimeDelta::seconds(300));
        assert!(when > s.expires_at - TimeDelta::seconds(330));
        assert!(!refresh_due("acme", &e, None, when - TimeDelta::seconds(1)));
        assert!(refresh_due("acme", &e, None, when));
        // Past the access expiry, as long as the refresh token lives.
        assert!(refresh_due(
            "acme",
            &e,
            None,
            s.expires_at + TimeDelta::hours(1)
        ));
        assert!(!refresh_due(
            "acme",
            &e,
            None,
            s.obtained_at + TimeDelta::days(15)
        ));
    }

    #[test]
    fn failures_hold_automatic_refresh_back() {
        let s = session(3600);
        let now = s.expires_at;
        let failed = |needs_login, ago| Entry {
            session: Some(s.clone()),
            failure: Some(Failure {
                needs_login,
                ..Failure::local(Op::Refresh, now - TimeDelta::seconds(ago), "x")
            }),
            ..Default::default()
        };
        assert!(
            !refresh_due("acme", &failed(true, 3600), None, now),
            "a login is needed"
        );
        assert!(
            !refresh_due("acme", &failed(false, 5), None, now),
            "just failed: wait"
        );
        assert!(
            refresh_due("acme", &failed(false, 31), None, now),
            "retry after a while"
        );
        assert!(!refresh_due("acme", &Entry::default(), None, now));
    }
}

/// What a live check of a session found (`GET /ping`, `/me`, server info, server time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub at: DateTime<Utc>,
    pub user_name: String,
    pub full_name: String,
    pub admin: bool,
    /// Sugar's flavor and version, e.g. `ENT`, `14.0.0`.
    pub flavor: String,
    pub version: String,
    /// Server clock minus local clock, in seconds, when the server told its time.
    pub skew_s: Option<i64>,
    /// Round trip of `GET /ping`.
    pub latency_ms: u64,
}

/// Clock skew beyond this makes countdowns unreliable: warn.
pub const MAX_SKEW_S: i64 = 60;

impl CheckReport {
    /// `Integration User (integration, admin) · Sugar 12.0.0 ENT · clock skew +1 s · ping 12 ms`.
    pub fn summary(&self) -> String {
        let role = if self.admin { ", admin" } else { "" };
        let skew = match self.skew_s {
            Some(s) => format!(" · clock skew {s:+} s"),
            None => String::new(),
        };
        format!(
            "{} ({}{role}) · Sugar {} {} · ping {} ms{skew}",
            self.full_name, self.user_name, self.version, self.flavor, self.latency_ms
        )
    }

    /// A warning when the server's clock is off by more than [`MAX_SKEW_S`].
    pub fn skew_warning(&self) -> Option<String> {
        let s = self.skew_s?;
        (s.abs() > MAX_SKEW_S).then(|| {
            format!(
                "the server's clock is {} s {} this machine's: expiry countdowns, computed from the local clock, may be off by that much",
                s.abs(),
                if s > 0 { "ahead of" } else { "behind" }
            )
        })
    }
}
