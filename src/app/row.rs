//! One profile on the screen: [`Row`], its [`RowState`], its request in flight and its last result.

use crate::config::Profile;
use crate::identity::SessionKey;
use crate::session::{self, CheckReport, Entry, Op, RequestLog, State, format_duration, remaining};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::VecDeque;
use std::sync::Arc;

/// A row stands out (and its state reads "expiring") when its access token has less than this left.
pub const EXPIRING: TimeDelta = TimeDelta::minutes(10);

/// How many recent requests are kept per profile.
pub const RECENT: usize = 20;

/// The state of a row as the screen shows it: the cache's state, refined by the time left and by
/// the request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowState {
    LoggedOut,
    LoggingIn,
    Active,
    /// Active in the cache, not yet confirmed by the server since the screen started (its
    /// background check has not returned).
    Unverified,
    Refreshing,
    Expiring,
    Expired,
    RefreshExpired,
    LoggingOut,
    Superseded,
    Error,
}

impl RowState {
    /// In the order the header counts them.
    pub const ALL: [RowState; 11] = [
        RowState::Active,
        RowState::Unverified,
        RowState::Expiring,
        RowState::Expired,
        RowState::RefreshExpired,
        RowState::Superseded,
        RowState::Error,
        RowState::LoggedOut,
        RowState::LoggingIn,
        RowState::Refreshing,
        RowState::LoggingOut,
    ];

    pub fn word(self) -> &'static str {
        match self {
            RowState::LoggedOut => "logged out",
            RowState::LoggingIn => "logging in",
            RowState::Active => "active",
            RowState::Unverified => "unverified",
            RowState::Refreshing => "refreshing",
            RowState::Expiring => "expiring",
            RowState::Expired => "expired",
            RowState::RefreshExpired => "refresh expired",
            RowState::LoggingOut => "logging out",
            RowState::Superseded => "superseded",
            RowState::Error => "error",
        }
    }

    /// A one-column symbol; the word always goes with it (never colour alone).
    pub fn symbol(self, ascii: bool) -> &'static str {
        match (self, ascii) {
            (RowState::Active, false) => "●",
            (RowState::Active, true) => "+",
            (RowState::Unverified, false) => "◇",
            (RowState::Unverified, true) => "?",
            (RowState::Expiring, false) => "◐",
            (RowState::Expiring, true) => "!",
            (RowState::Expired, false) => "◌",
            (RowState::Expired, true) => "-",
            (RowState::RefreshExpired, false) => "⊘",
            (RowState::RefreshExpired, true) => "=",
            (RowState::Superseded, false) => "⊗",
            (RowState::Superseded, true) => "X",
            (RowState::Error, false) => "✗",
            (RowState::Error, true) => "x",
            (RowState::LoggedOut, false) => "○",
            (RowState::LoggedOut, true) => "o",
            (RowState::LoggingIn | RowState::Refreshing | RowState::LoggingOut, false) => "⟳",
            (RowState::LoggingIn | RowState::Refreshing | RowState::LoggingOut, true) => "~",
        }
    }

    /// Sort rank: what needs attention first.
    pub(super) fn rank(self) -> u8 {
        match self {
            RowState::Error | RowState::Superseded => 0,
            RowState::RefreshExpired => 1,
            RowState::Expired => 2,
            RowState::Expiring => 3,
            RowState::LoggingIn => 4,
            RowState::Refreshing => 5,
            RowState::LoggingOut => 6,
            RowState::Unverified => 7,
            RowState::Active => 8,
            RowState::LoggedOut => 9,
        }
    }

    pub(super) fn index(self) -> usize {
        RowState::ALL
            .iter()
            .position(|s| *s == self)
            .expect("listed")
    }

    pub fn in_flight(self) -> bool {
        matches!(
            self,
            RowState::LoggingIn | RowState::Refreshing | RowState::LoggingOut
        )
    }

    /// The state of a profile at `now`. A check or an impersonation in flight leaves the session
    /// as it is, so its state shows (the LAST column shows the request); `unverified` turns an
    /// active session (not an expiring one: that needs attention first) into [`RowState::Unverified`].
    pub fn of(
        entry: &Entry,
        flight: Option<&Flight>,
        unverified: bool,
        now: DateTime<Utc>,
    ) -> RowState {
        if let Some(f) = flight.filter(|f| !f.detached) {
            match f.op {
                Op::Login => return RowState::LoggingIn,
                Op::Refresh => return RowState::Refreshing,
                Op::Logout => return RowState::LoggingOut,
                Op::Check | Op::Sudo | Op::Relogin => {}
            }
        }
        match entry.state(now) {
            State::Error => RowState::Error,
            State::Superseded => RowState::Superseded,
            State::LoggedOut => RowState::LoggedOut,
            State::Expired => RowState::Expired,
            State::RefreshExpired => RowState::RefreshExpired,
            State::Active => match &entry.session {
                Some(s) if remaining(s.expires_at, now) < EXPIRING => RowState::Expiring,
                _ if unverified => RowState::Unverified,
                _ => RowState::Active,
            },
        }
    }
}

/// Where a request of a profile is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a place under the concurrency bounds.
    Queued,
    /// Being sent (or its answer awaited).
    Sent,
}

/// The request in flight for a profile (at most one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flight {
    pub op: Op,
    pub phase: Phase,
    pub since: DateTime<Utc>,
    /// Cancelled by the user: the screen no longer waits for it, but its answer is still applied
    /// when it arrives, and no second request starts before then.
    pub detached: bool,
    /// Started by the screen itself (the check of a cached session at start), not by a key.
    pub background: bool,
}

/// How the last operation of a profile ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultKind {
    Ok,
    Failed,
    /// Withdrawn before it was sent.
    Withdrawn,
}

/// The last operation of a profile, for the LAST column and the details pane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastResult {
    pub op: Op,
    pub kind: ResultKind,
    pub at: DateTime<Utc>,
    /// Total time of the requests it sent; `None` when it sent none.
    pub latency_ms: Option<u64>,
    /// A few words: `ok`, `401 need_login`, `timeout`, `withdrawn`, ...
    pub summary: String,
    /// A failure's own words: Sugar's `error_message` when it sent one (`You must specify a
    /// valid username and password.` and `SugarCRM is in maintenance mode...` are both
    /// `401 need_login`), else what went wrong.
    pub message: Option<String>,
    /// A failure's hint: what a person can do about it.
    pub hint: Option<String>,
}

/// The last error of a profile, in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastError {
    pub at: DateTime<Utc>,
    pub op: Op,
    /// What happened, e.g. `login failed: HTTP 401 need_login: You must specify ...`.
    pub text: String,
    /// What a person can do about it.
    pub hint: Option<String>,
}

/// One profile on the screen.
#[derive(Clone, Debug)]
pub struct Row {
    /// Shared with the loaded profiles (and with the requests made for this row).
    pub profile: Arc<Profile>,
    /// The identity of the profile's session: what the token cache keys it by.
    pub key: SessionKey,
    /// The instance as shown: `host[:port][/path]`.
    pub instance: String,
    pub prod: bool,
    pub entry: Entry,
    pub flight: Option<Flight>,
    pub last: Option<LastResult>,
    pub last_error: Option<LastError>,
    /// Most recent last; at most [`RECENT`].
    pub recent: VecDeque<RequestLog>,
    /// The platform guard's warnings (a login here ends another session), in words.
    pub warnings: Vec<String>,
    /// The last live check that found the session alive.
    pub check: Option<CheckReport>,
    /// Requests go over plain `http://` to a host that is not loopback (`allow_http`).
    pub plain_http: bool,
    /// An impersonation (`NAME>USER`): the row index of the profile it goes through, and the user.
    pub sudo: Option<(usize, String)>,
    /// Lower-cased name, tags, instance and user, for the filter.
    pub(super) search: String,
    /// The state at the Model's clock (kept up to date by the Model).
    pub(super) state: RowState,
    /// Position in file order: the file index (of the parent, for an impersonation), then the
    /// impersonated user (none for the profile itself, so that it comes first).
    pub(super) order: (usize, Option<String>),
    /// An impersonation without a session: not shown, not counted (kept to be shown again).
    pub(super) hidden: bool,
    /// A cached session not yet confirmed by the server since the screen started.
    pub(super) unverified: bool,
    /// A login on this profile despite its warnings was confirmed (once per run).
    pub(super) guard_confirmed: bool,
}

impl Row {
    pub(super) fn new(profile: Arc<Profile>, position: usize) -> Row {
        let mut instance = profile.host_port();
        let path = profile.url.path().trim_end_matches('/');
        instance.push_str(path);
        let search = format!(
            "{}\t{}\t{}\t{}",
            profile.name,
            profile.tags.join(" "),
            instance,
            profile.username
        )
        .to_lowercase();
        Row {
            key: profile.session_key(),
            prod: profile.has_tag("prod"),
            plain_http: profile.plain_http_to_remote(),
            instance,
            search,
            profile,
            entry: Entry::default(),
            flight: None,
            last: None,
            last_error: None,
            recent: VecDeque::new(),
            warnings: Vec::new(),
            check: None,
            sudo: None,
            state: RowState::LoggedOut,
            order: (position, None),
            hidden: false,
            unverified: false,
            guard_confirmed: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.profile.name
    }

    /// The state at the Model's clock.
    pub fn state(&self) -> RowState {
        self.state
    }

    /// An impersonation (`NAME>USER`).
    pub fn is_sudo(&self) -> bool {
        self.sudo.is_some()
    }

    /// Certificates are not checked (`insecure = true` on an `https://` instance).
    pub fn insecure(&self) -> bool {
        self.profile.insecure && self.profile.url.scheme() == "https"
    }

    /// The last check found the server's clock off by more than a minute: what that means.
    pub fn skew_warning(&self) -> Option<String> {
        self.check.as_ref().and_then(|c| c.skew_warning())
    }

    /// The last check found the server's clock off by more than a minute.
    pub(super) fn skewed(&self) -> bool {
        self.check
            .as_ref()
            .and_then(|c| c.skew_s)
            .is_some_and(|s| s.abs() > session::MAX_SKEW_S)
    }

    /// The session is capped: refreshing no longer extends it beyond this instant.
    pub fn hard_end(&self) -> Option<DateTime<Utc>> {
        self.entry.session.as_ref().and_then(|s| s.hard_end)
    }

    /// Waiting for a request (queued, sent, or cancelled but still unanswered).
    pub fn busy(&self) -> bool {
        self.flight.is_some()
    }

    /// Sugar ended the session before its expiry (another login on the same platform).
    pub fn superseded(&self) -> bool {
        self.entry.failure.as_ref().is_some_and(|f| f.superseded())
    }

    /// Access token time left (`52m 07s`), while it is valid (and Sugar still accepts it).
    pub fn token_left(&self, now: DateTime<Utc>) -> Option<String> {
        let s = self.entry.session.as_ref()?;
        (s.access_valid(now) && !self.superseded())
            .then(|| format_duration(remaining(s.expires_at, now)))
    }

    /// When a login will be needed: refresh token time left while there is a valid one
    /// (`13d 23h`), or the session's hard end once refreshing no longer extends it (`ends 3m 10s`).
    pub fn refresh_left(&self, now: DateTime<Utc>) -> Option<String> {
        let s = self.entry.session.as_ref()?;
        let at = s.refresh_expires_at?;
        if !s.refresh_valid(now) {
            return None;
        }
        Some(match s.hard_end {
            Some(end) => format!("ends {}", format_duration(remaining(end.min(at), now))),
            None => format_duration(remaining(at, now)),
        })
    }

    /// The last error: this run's, else the one the cache remembers.
    pub fn error_text(&self) -> Option<(String, Option<String>)> {
        if let Some(e) = &self.last_error {
            return Some((e.text.clone(), e.hint.clone()));
        }
        let f = self.entry.failure.as_ref()?;
        Some((f.headline(), f.hint.clone()))
    }

    /// When a login will be needed, for the REFRESH sort: the refresh token's expiry (or the hard
    /// end, when sooner); none last.
    pub(super) fn refresh_key(&self) -> (bool, Option<DateTime<Utc>>) {
        let at = self.entry.session.as_ref().and_then(|s| {
            let at = s.refresh_expiry()?;
            Some(s.hard_end.map_or(at, |end| end.min(at)))
        });
        (at.is_none(), at)
    }

    /// The last result, for the LAST sort: failures first, then withdrawn requests, successes,
    /// and rows without one; by their words within each.
    pub(super) fn last_key(&self) -> (u8, String) {
        match &self.last {
            Some(l) => {
                let rank = match l.kind {
                    ResultKind::Failed => 0,
                    ResultKind::Withdrawn => 1,
                    ResultKind::Ok => 2,
                };
                (rank, l.summary.clone())
            }
            None => match &self.entry.failure {
                Some(f) => (0, f.short()),
                None => (3, String::new()),
            },
        }
    }

    pub(super) fn token_key(&self) -> (bool, Option<DateTime<Utc>>) {
        match &self.entry.session {
            Some(s) => (false, Some(s.expires_at)),
            None => (true, None),
        }
    }

    /// The next instant after `now` at which the state changes by time alone.
    pub(super) fn next_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let auto = self.next_auto_refresh_check(now);
        if self.entry.failure.is_some() {
            return auto;
        }
        let Some(s) = self.entry.session.as_ref() else {
            return auto;
        };
        let refresh = s.refresh_expiry();
        [
            Some(s.expires_at - EXPIRING),
            Some(s.expires_at),
            refresh,
            auto,
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .min()
    }

    /// The profile refreshes automatically and its time has come (nothing is in flight).
    pub(super) fn auto_refresh_due(&self, now: DateTime<Utc>) -> bool {
        self.profile.auto_refresh
            && !self.busy()
            && session::refresh_due(
                &self.profile.name,
                &self.entry,
                self.profile.refresh_before,
                now,
            )
    }

    /// When [`Row::auto_refresh_due`] may next be true: the refresh time, or the end of the pause
    /// after a failed attempt; the next tick when it is already due.
    fn next_auto_refresh_check(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.profile.auto_refresh || self.busy() {
            return None;
        }
        let s = self
            .entry
            .session
            .as_ref()
            .filter(|s| s.refresh_valid(now))?;
        let mut at = session::refresh_at(&self.profile.name, s, self.profile.refresh_before);
        if let Some(f) = &self.entry.failure {
            if f.needs_login {
                return None;
            }
            at = at.max(f.at + session::RETRY_AFTER_FAILURE);
        }
        Some(at.max(now + TimeDelta::seconds(1)))
    }
}
