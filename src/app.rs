//! The screen's state machine: [`Model`], [`Msg`], [`Command`] and [`update`].
//!
//! Pure: no I/O, no clock reads, no tokio. Every function that depends on time takes `now`; the
//! runtime (`tui`) feeds key presses, task results and a 1 s tick in, and carries the returned
//! [`Command`]s out. Drawing (`ui::view`) only reads the Model.
//!
//! Scale: the Model keeps the visible order (filter + sort) cached and changes it only when
//! something that affects it changes: a keystroke in the filter narrows the previous result, a
//! result that moves one row under a time-left or state sort repositions that row alone, and time
//! based state changes (active → expiring → expired) are found from the next instant at which any
//! row changes, not by scanning every row on every tick.

use crate::config::{PasswordSource, Profile, Profiles};
use crate::engine::{Outcome, sudo_profile};
use crate::identity::SessionKey;
use crate::secret::Secret;
use crate::session::{self, CheckReport, Entry, Op, RequestLog, State, format_duration, remaining};
use crate::store::Cache;
use chrono::{DateTime, FixedOffset, Local, TimeDelta, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use zeroize::{Zeroize, Zeroizing};

/// A row stands out (and its state reads "expiring") when its access token has less than this left.
pub const EXPIRING: TimeDelta = TimeDelta::minutes(10);

/// How many recent requests are kept per profile.
pub const RECENT: usize = 20;

// ---------------------------------------------------------------------------------------------
// Inputs and outputs.
// ---------------------------------------------------------------------------------------------

/// Everything that can happen to the screen.
#[derive(Debug)]
pub enum Msg {
    /// A key press (key releases are filtered out by the runtime; they are ignored here too).
    Key(KeyEvent),
    /// Bracketed paste: text for the filter or the password prompt.
    Paste(String),
    /// The 1 s tick. The time is `update`'s `now`.
    Tick,
    /// The terminal's size, at start and after every change.
    Resize { width: u16, height: u16 },
    /// A queued request got its place under the concurrency bounds and is being sent.
    Started { name: String },
    /// A request finished; its result is already in the token cache.
    Done(Box<Outcome>),
    /// A live check finished (the report when the session is alive). A session Sugar no longer
    /// accepts is already marked so in the cache.
    Checked {
        outcome: Box<Outcome>,
        report: Option<CheckReport>,
    },
    /// An impersonation through `parent`'s session finished; `outcome.name` is `PARENT>USER`, and
    /// its session, when it worked, is already in the cache.
    Impersonated {
        parent: String,
        outcome: Box<Outcome>,
    },
    /// The screen is up: check the cached active sessions in the background (they show as
    /// unverified until their check returns).
    Verify,
    /// A queued request was withdrawn before it was sent.
    Withdrawn { name: String },
    /// The token cache as read from disk (another process may have changed it).
    CacheReloaded(Cache),
    /// Something the user should read in the status line (a cache moved aside, ...).
    Notice(String),
    /// SIGTERM, SIGHUP or a vanished terminal: quit.
    Shutdown { reason: String },
}

/// What the runtime should do.
#[derive(Debug)]
pub enum Command {
    /// Queue a request for the profile. `password` is set for logins of profiles without a
    /// non-interactive password source (typed into the prompt).
    Start {
        name: String,
        op: Op,
        password: Option<Secret>,
    },
    /// Queue a live check of the profile's session (`GET /ping`, `/me`, server info, server time).
    Check { name: String },
    /// Queue an impersonation: with `name`'s (admin) session, a session as `user`, stored as
    /// `NAME>USER`. The request is `name`'s request in flight.
    Sudo { name: String, user: String },
    /// Withdraw the profile's request if it is still queued (one already sent is left to finish).
    Cancel { name: String },
    /// Leave the screen (after waiting briefly for requests in flight).
    Quit,
    /// Step aside for job control, as Ctrl-Z does in a shell: give the terminal back and stop the
    /// process until it is continued (`fg`), then draw the screen anew.
    Suspend,
}

/// Where the profiles came from, for the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A profiles file.
    File(PathBuf),
    /// The built-in demo; `profiles_hint` is where a profiles file belongs.
    Demo { profiles_hint: PathBuf },
}

/// Time zone for the instants shown in the details pane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// The system's local time (from `TZ` / `/etc/localtime`).
    Local,
    /// A fixed offset (tests).
    Fixed(FixedOffset),
}

impl Zone {
    /// Formats `t` in this zone with a chrono format string.
    pub fn format(self, t: DateTime<Utc>, fmt: &str) -> String {
        match self {
            Zone::Local => t.with_timezone(&Local).format(fmt).to_string(),
            Zone::Fixed(off) => t.with_timezone(&off).format(fmt).to_string(),
        }
    }
}

/// How the screen draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// ASCII symbols only (locale not UTF-8, or `--ascii`).
    pub ascii: bool,
    /// Colours (off with `NO_COLOR`).
    pub color: bool,
    pub zone: Zone,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ascii: false,
            color: true,
            zone: Zone::Local,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rows.
// ---------------------------------------------------------------------------------------------

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
    fn rank(self) -> u8 {
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

    fn index(self) -> usize {
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
    pub profile: Profile,
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
    search: String,
    /// The state at the Model's clock (kept up to date by the Model).
    state: RowState,
    /// Position in file order: the file index (of the parent, for an impersonation), then the
    /// impersonated user (none for the profile itself, so that it comes first).
    order: (usize, Option<String>),
    /// An impersonation without a session: not shown, not counted (kept to be shown again).
    hidden: bool,
    /// A cached session not yet confirmed by the server since the screen started.
    unverified: bool,
    /// A login on this profile despite its warnings was confirmed (once per run).
    guard_confirmed: bool,
}

/// localhost, 127.0.0.0/8, ::1.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

impl Row {
    fn new(profile: Profile, position: usize) -> Row {
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
            plain_http: profile.url.scheme() == "http" && !is_loopback(&profile.url),
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
    fn skewed(&self) -> bool {
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

    fn token_key(&self) -> (bool, Option<DateTime<Utc>>) {
        match &self.entry.session {
            Some(s) => (false, Some(s.expires_at)),
            None => (true, None),
        }
    }

    /// The next instant after `now` at which the state changes by time alone.
    fn next_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let auto = self.next_auto_refresh_check(now);
        if self.entry.failure.is_some() {
            return auto;
        }
        let Some(s) = self.entry.session.as_ref() else {
            return auto;
        };
        let refresh = s.refresh_token.as_ref().and(s.refresh_expires_at);
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
    fn auto_refresh_due(&self, now: DateTime<Utc>) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Keys: one table per mode, used both to handle keys and to build the footer and the help.
// ---------------------------------------------------------------------------------------------

/// What a key does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    Login,
    Refresh,
    Logout,
    /// A live check of the session.
    Check,
    /// Open the prompt for the user to impersonate.
    Impersonate,
    Cancel,
    ToggleSelect,
    SelectAll,
    Filter,
    Details,
    Sort,
    Reverse,
    Escape,
    Help,
    Quit,
    /// Ctrl-Z: stop until continued (`fg`), as in a shell.
    Suspend,
    /// Filter mode: keep the filter.
    KeepFilter,
    /// Filter mode: clear the filter.
    ClearFilter,
    /// Filter and password modes: delete the last character.
    DeleteChar,
    /// Confirm dialog.
    Yes,
    No,
    /// Password prompt: send the login.
    SendPassword,
    /// Password prompt: skip this profile.
    SkipPassword,
    /// Help: close it.
    CloseHelp,
    /// User prompt: impersonate the user typed.
    SendUser,
    /// User prompt: close it without sending anything.
    CancelUser,
}

/// One key binding.
#[derive(Clone, Copy, Debug)]
pub struct Binding {
    pub keys: &'static [KeyCode],
    /// The key is pressed with Ctrl.
    pub ctrl: bool,
    /// How the keys are written in the footer and the help (UTF-8, ASCII).
    pub label: &'static str,
    pub ascii_label: &'static str,
    pub desc: &'static str,
    pub action: Action,
    /// Shown in the footer (when it applies); every binding is in the help.
    pub footer: bool,
}

const fn bind(
    keys: &'static [KeyCode],
    label: &'static str,
    ascii_label: &'static str,
    desc: &'static str,
    action: Action,
    footer: bool,
) -> Binding {
    Binding {
        keys,
        ctrl: false,
        label,
        ascii_label,
        desc,
        action,
        footer,
    }
}

const CTRL_C: Binding = Binding {
    keys: &[KeyCode::Char('c')],
    ctrl: true,
    label: "Ctrl-C",
    ascii_label: "Ctrl-C",
    desc: "quit",
    action: Action::Quit,
    footer: false,
};

/// Ctrl-\\ (SIGQUIT's key, a byte in raw mode): crossterm reads byte 0x1C as Ctrl-4, and a
/// terminal with the kitty keyboard protocol sends Ctrl-\\.
const CTRL_BACKSLASH: Binding = Binding {
    keys: &[KeyCode::Char('\\'), KeyCode::Char('4')],
    ctrl: true,
    label: "Ctrl-\\",
    ascii_label: "Ctrl-\\",
    desc: "quit",
    action: Action::Quit,
    footer: false,
};

/// Ctrl-Z (SIGTSTP's key, a byte in raw mode).
const CTRL_Z: Binding = Binding {
    keys: &[KeyCode::Char('z')],
    ctrl: true,
    label: "Ctrl-Z",
    ascii_label: "Ctrl-Z",
    desc: "suspend (fg resumes)",
    action: Action::Suspend,
    footer: false,
};

/// The main table.
pub const NORMAL_KEYS: &[Binding] = &[
    CTRL_C,
    CTRL_BACKSLASH,
    CTRL_Z,
    bind(
        &[KeyCode::Char('l')],
        "l",
        "l",
        "log in",
        Action::Login,
        true,
    ),
    bind(
        &[KeyCode::Char('r')],
        "r",
        "r",
        "refresh",
        Action::Refresh,
        true,
    ),
    bind(
        &[KeyCode::Char('o')],
        "o",
        "o",
        "log out",
        Action::Logout,
        true,
    ),
    bind(
        &[KeyCode::Char('v')],
        "v",
        "v",
        "check",
        Action::Check,
        true,
    ),
    bind(
        &[KeyCode::Char('u')],
        "u",
        "u",
        "impersonate",
        Action::Impersonate,
        true,
    ),
    bind(
        &[KeyCode::Char('c')],
        "c",
        "c",
        "cancel",
        Action::Cancel,
        true,
    ),
    bind(
        &[KeyCode::Char(' ')],
        "space",
        "space",
        "select",
        Action::ToggleSelect,
        true,
    ),
    bind(
        &[KeyCode::Char('a')],
        "a",
        "a",
        "select all shown",
        Action::SelectAll,
        false,
    ),
    bind(
        &[KeyCode::Char('/')],
        "/",
        "/",
        "filter",
        Action::Filter,
        true,
    ),
    bind(
        &[KeyCode::Enter],
        "⏎",
        "Enter",
        "details",
        Action::Details,
        true,
    ),
    bind(&[KeyCode::Char('s')], "s", "s", "sort", Action::Sort, true),
    bind(
        &[KeyCode::Char('S')],
        "S",
        "S",
        "reverse sort",
        Action::Reverse,
        false,
    ),
    bind(
        &[KeyCode::Esc],
        "Esc",
        "Esc",
        "clear filter/selection",
        Action::Escape,
        true,
    ),
    bind(
        &[KeyCode::Up, KeyCode::Char('k')],
        "↑/k",
        "Up/k",
        "up",
        Action::Up,
        false,
    ),
    bind(
        &[KeyCode::Down, KeyCode::Char('j')],
        "↓/j",
        "Down/j",
        "down",
        Action::Down,
        false,
    ),
    bind(
        &[KeyCode::PageUp],
        "PgUp",
        "PgUp",
        "page up",
        Action::PageUp,
        false,
    ),
    bind(
        &[KeyCode::PageDown],
        "PgDn",
        "PgDn",
        "page down",
        Action::PageDown,
        false,
    ),
    bind(
        &[KeyCode::Char('g'), KeyCode::Home],
        "g",
        "g",
        "first",
        Action::First,
        false,
    ),
    bind(
        &[KeyCode::Char('G'), KeyCode::End],
        "G",
        "G",
        "last",
        Action::Last,
        false,
    ),
    bind(&[KeyCode::Char('?')], "?", "?", "help", Action::Help, true),
    bind(&[KeyCode::Char('q')], "q", "q", "quit", Action::Quit, true),
];

/// While the filter is typed (every other printable key is text).
pub const FILTER_KEYS: &[Binding] = &[
    CTRL_C,
    CTRL_BACKSLASH,
    CTRL_Z,
    bind(
        &[KeyCode::Enter],
        "⏎",
        "Enter",
        "keep filter",
        Action::KeepFilter,
        true,
    ),
    bind(
        &[KeyCode::Esc],
        "Esc",
        "Esc",
        "clear filter",
        Action::ClearFilter,
        true,
    ),
    bind(
        &[KeyCode::Backspace],
        "⌫",
        "Backspace",
        "delete",
        Action::DeleteChar,
        true,
    ),
];

/// A confirmation.
pub const CONFIRM_KEYS: &[Binding] = &[
    CTRL_C,
    CTRL_BACKSLASH,
    CTRL_Z,
    bind(
        &[KeyCode::Char('y'), KeyCode::Char('Y'), KeyCode::Enter],
        "y/⏎",
        "y/Enter",
        "yes",
        Action::Yes,
        true,
    ),
    bind(
        &[KeyCode::Char('n'), KeyCode::Char('N'), KeyCode::Esc],
        "n/Esc",
        "n/Esc",
        "no",
        Action::No,
        true,
    ),
];

/// The password prompt (every other printable key is text).
pub const PASSWORD_KEYS: &[Binding] = &[
    CTRL_C,
    CTRL_BACKSLASH,
    CTRL_Z,
    bind(
        &[KeyCode::Enter],
        "⏎",
        "Enter",
        "log in",
        Action::SendPassword,
        true,
    ),
    bind(
        &[KeyCode::Esc],
        "Esc",
        "Esc",
        "skip this profile",
        Action::SkipPassword,
        true,
    ),
    bind(
        &[KeyCode::Backspace],
        "⌫",
        "Backspace",
        "delete",
        Action::DeleteChar,
        false,
    ),
];

/// The prompt for the user to impersonate (every other printable key is text).
pub const USER_KEYS: &[Binding] = &[
    CTRL_C,
    CTRL_BACKSLASH,
    CTRL_Z,
    bind(
        &[KeyCode::Enter],
        "⏎",
        "Enter",
        "impersonate",
        Action::SendUser,
        true,
    ),
    bind(
        &[KeyCode::Esc],
        "Esc",
        "Esc",
        "cancel",
        Action::CancelUser,
        true,
    ),
    bind(
        &[KeyCode::Backspace],
        "⌫",
        "Backspace",
        "delete",
        Action::DeleteChar,
        false,
    ),
];

/// The help overlay.
pub const HELP_KEYS: &[Binding] = &[
    CTRL_C,
    CTRL_BACKSLASH,
    CTRL_Z,
    bind(
        &[KeyCode::Esc, KeyCode::Char('?'), KeyCode::Char('q')],
        "Esc/?/q",
        "Esc/?/q",
        "close help",
        Action::CloseHelp,
        true,
    ),
];

impl Binding {
    pub fn matches(&self, key: &KeyEvent) -> bool {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        ctrl == self.ctrl && !alt && self.keys.contains(&key.code)
    }

    pub fn label(&self, ascii: bool) -> &'static str {
        if ascii { self.ascii_label } else { self.label }
    }
}

// ---------------------------------------------------------------------------------------------
// Modes.
// ---------------------------------------------------------------------------------------------

/// A pending confirmation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirm {
    pub op: Op,
    /// Row indices.
    rows: Vec<usize>,
    /// Names to show (all of them; the view cuts).
    pub names: Vec<String>,
    pub prod: usize,
    /// A login on profiles the platform guard warns of: `(name, warning)` for each warning.
    pub warnings: Vec<(String, String)>,
}

/// Text typed into the password prompt: zeroized when dropped, never printed.
#[derive(Default)]
struct Typed(Zeroizing<String>);

impl fmt::Debug for Typed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Typed(<{} chars>)", self.0.chars().count())
    }
}

#[derive(Debug)]
enum Mode {
    Normal,
    Filter,
    Help,
    Confirm(Confirm),
    /// The prompt for `prompts.front()`.
    Password(Typed),
    /// The prompt for the user to impersonate through row `row`'s session.
    User {
        row: usize,
        text: String,
    },
}

/// What the password prompt shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    pub name: String,
    pub username: String,
    pub instance: String,
    /// Characters typed so far (shown masked).
    pub len: usize,
    /// Profiles waiting for a password after this one.
    pub waiting: usize,
}

/// What the prompt for the user to impersonate shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPrompt {
    /// The profile whose (admin) session is used.
    pub name: String,
    /// Its user.
    pub username: String,
    pub instance: String,
    /// The user name typed so far.
    pub text: String,
}

/// The sort of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    File,
    Name,
    State,
    TokenLeft,
}

impl Sort {
    pub fn next(self) -> Sort {
        match self {
            Sort::File => Sort::Name,
            Sort::Name => Sort::State,
            Sort::State => Sort::TokenLeft,
            Sort::TokenLeft => Sort::File,
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            Sort::File => "file order",
            Sort::Name => "name",
            Sort::State => "state",
            Sort::TokenLeft => "token time left",
        }
    }
}

/// The widest text of each static column, in characters (for the column layout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldWidths {
    pub name: usize,
    pub tags: usize,
    pub instance: usize,
    pub user: usize,
    pub platform: usize,
    /// Some profile is tagged `prod`.
    pub any_prod: bool,
    /// Some profile has a warning (platform guard, insecure, plain HTTP): its mark may go next
    /// to the name when the column that shows it is dropped.
    pub any_warning: bool,
    /// The widest platform of a profile the platform guard warns of (its mark follows it).
    pub platform_warned: usize,
}

impl FieldWidths {
    fn of(rows: &[Row]) -> FieldWidths {
        let mut w = FieldWidths::default();
        for r in rows {
            w.add(r);
        }
        w
    }

    fn add(&mut self, r: &Row) {
        let len = |s: &str| s.chars().count();
        self.name = self.name.max(len(&r.profile.name));
        self.tags = self.tags.max(len(&r.profile.tags.join(" ")));
        // The screen marks an unsafe transport after the instance (` INSECURE`, ` HTTP`).
        let badge = if r.insecure() {
            9
        } else if r.plain_http {
            5
        } else {
            0
        };
        self.instance = self.instance.max(len(&r.instance) + badge);
        self.user = self.user.max(len(&r.profile.username));
        self.platform = self.platform.max(len(&r.profile.platform));
        if !r.warnings.is_empty() {
            self.platform_warned = self.platform_warned.max(len(&r.profile.platform));
        }
        self.any_prod |= r.prod;
        self.any_warning |= !r.warnings.is_empty() || r.insecure() || r.plain_http;
    }
}

/// A line for the status bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

/// How the screen's height is shared; `ui` draws with the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub header: u16,
    /// The table block, borders and column header included.
    pub table: u16,
    /// The details block (0 when closed or when there is no room).
    pub details: u16,
    pub status: u16,
    pub footer: u16,
}

impl Layout {
    /// `rows` is the number of profiles shown: when the details pane is open, the table takes
    /// no more room than they need and the pane gets the rest.
    pub fn new(height: u16, details: bool, rows: usize) -> Layout {
        let fixed = 3; // header, status, footer
        let avail = height.saturating_sub(fixed);
        if !details || avail < 12 {
            return Layout {
                header: 1,
                table: avail,
                details: 0,
                status: 1,
                footer: 1,
            };
        }
        let pane = (avail / 2).clamp(6, 16);
        let wanted = u16::try_from(rows)
            .unwrap_or(u16::MAX)
            .saturating_add(3)
            .max(4);
        let table = wanted.min(avail - pane);
        Layout {
            header: 1,
            table,
            details: avail - table,
            status: 1,
            footer: 1,
        }
    }

    /// Rows of profiles the table shows.
    pub fn table_rows(&self) -> usize {
        usize::from(self.table.saturating_sub(3))
    }
}

// ---------------------------------------------------------------------------------------------
// The Model.
// ---------------------------------------------------------------------------------------------

/// Everything the screen knows.
#[derive(Debug)]
pub struct Model {
    source: Source,
    options: Options,
    rows: Vec<Row>,
    widths: FieldWidths,
    by_name: HashMap<String, usize>,
    /// Row indices in the order shown: the filter applied, sorted.
    visible: Vec<usize>,
    /// Position in `visible`.
    cursor: usize,
    /// First position shown.
    offset: usize,
    size: (u16, u16),
    selected: Vec<bool>,
    selected_count: usize,
    filter: String,
    mode: Mode,
    sort: Sort,
    reverse: bool,
    details: bool,
    status: Option<Status>,
    /// Rows waiting for the password prompt, the current one first.
    prompts: VecDeque<usize>,
    counts: [usize; RowState::ALL.len()],
    /// Rows shown (impersonations without a session are not).
    total: usize,
    /// Impersonation rows, shown or not (file order then needs a sort).
    sudo_rows: usize,
    /// Rows whose session has a hard end (the REFRESH column then needs more room).
    hard_ends: usize,
    /// Rows whose last check found the server's clock off by more than a minute.
    skews: usize,
    /// Background checks of cached sessions still outstanding, how many of them failed, how many
    /// found the server's clock off, and how many were withdrawn before they were sent.
    verifying: usize,
    verify_failed: usize,
    verify_skewed: usize,
    verify_withdrawn: usize,
    sent: usize,
    queued: usize,
    /// No row changes state by time alone before this instant.
    next_change: Option<DateTime<Utc>>,
    clock: DateTime<Utc>,
    dirty: bool,
    /// Set by a handler that changed nothing (so that the message does not cause a draw).
    noop: bool,
    quitting: bool,
    /// Every row's filter text (see `Row::search`), one after another, and where each ends: the
    /// filter scans these 70 bytes a row in one place instead of visiting every row (10,000 rows
    /// are ~10 MB), which made one filter keystroke cost a few hundred µs.
    search: String,
    search_end: Vec<u32>,
    /// Where the filter `hits_for` first matches in the text of each row it shows (by row): a
    /// keystroke that extends the filter looks there first, and almost always finds it still.
    hits: Vec<u32>,
    hits_for: Option<String>,
    /// What each filter keystroke still in the filter took away: Backspace puts it back instead
    /// of filtering again.
    undo: Vec<Narrowed>,
}

/// What one filter keystroke changed.
#[derive(Debug)]
struct Narrowed {
    /// The filter before the keystroke (lower-cased).
    filter: String,
    /// The rows it hid: their place among the rows shown before, the row, and its `hits` entry.
    hidden: Vec<(usize, usize, u32)>,
    /// Rows still shown whose first match moved, with their `hits` entry before.
    moved: Vec<(usize, u32)>,
    /// `hits` held the matches of `filter` before the keystroke.
    known: bool,
}

/// Row `i`'s filter text in `Model::search`.
fn search_text<'a>(search: &'a str, ends: &[u32], i: usize) -> &'a str {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &search[start..ends[i] as usize]
}

impl Model {
    /// A Model over the profiles (in file order); every row starts logged out until the cache is
    /// applied with [`Msg::CacheReloaded`] (or [`Model::apply_cache`]).
    pub fn new(profiles: &Profiles, source: Source, options: Options, now: DateTime<Utc>) -> Model {
        let mut warnings = crate::guard::warnings(&profiles.profiles);
        let rows: Vec<Row> = profiles
            .profiles
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, p)| {
                let found = warnings.remove(&p.name).unwrap_or_default();
                let messages = found.iter().map(|w| w.message(&p)).collect();
                let mut row = Row::new(p, i);
                row.warnings = messages;
                row
            })
            .collect();
        let by_name = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.profile.name.clone(), i))
            .collect();
        let n = rows.len();
        let mut search = String::new();
        let mut search_end = Vec::with_capacity(n);
        for r in &rows {
            search.push_str(&r.search);
            search_end.push(search.len() as u32);
        }
        let mut counts = [0; RowState::ALL.len()];
        counts[RowState::LoggedOut.index()] = n;
        let status = match &source {
            Source::Demo { profiles_hint } => Some(Status {
                text: format!(
                    "demo: your profiles file belongs at {}",
                    profiles_hint.display()
                ),
                error: false,
            }),
            Source::File(_) => None,
        };
        Model {
            source,
            options,
            widths: FieldWidths::of(&rows),
            by_name,
            visible: (0..n).collect(),
            selected: vec![false; n],
            rows,
            cursor: 0,
            offset: 0,
            size: (80, 24),
            selected_count: 0,
            filter: String::new(),
            mode: Mode::Normal,
            sort: Sort::File,
            reverse: false,
            details: false,
            status,
            prompts: VecDeque::new(),
            counts,
            total: n,
            sudo_rows: 0,
            hard_ends: 0,
            skews: 0,
            verifying: 0,
            verify_failed: 0,
            verify_skewed: 0,
            verify_withdrawn: 0,
            sent: 0,
            queued: 0,
            next_change: None,
            clock: now,
            dirty: true,
            noop: false,
            quitting: false,
            search,
            search_end,
            hits: vec![0; n],
            hits_for: Some(String::new()),
            undo: Vec::new(),
        }
    }

    // --- read access for the view and for tests ---

    pub fn source(&self) -> &Source {
        &self.source
    }
    pub fn options(&self) -> Options {
        self.options
    }
    /// The widest text of each static column (computed once).
    pub fn field_widths(&self) -> FieldWidths {
        self.widths
    }
    /// All rows: the profiles in file order, then impersonations in the order they came
    /// (hidden ones included: see [`Model::visible`] for what is shown).
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }
    /// How many rows there are to show (the filter aside).
    pub fn total(&self) -> usize {
        self.total
    }
    /// Some row's session has a hard end.
    pub fn any_hard_end(&self) -> bool {
        self.hard_ends > 0
    }
    /// How many rows' last check found the server's clock off by more than a minute.
    pub fn skews(&self) -> usize {
        self.skews
    }
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.by_name.get(name).map(|&i| &self.rows[i])
    }
    /// Row indices in the order shown.
    pub fn visible(&self) -> &[usize] {
        &self.visible
    }
    /// Names in the order shown.
    pub fn visible_names(&self) -> Vec<&str> {
        self.visible.iter().map(|&i| self.rows[i].name()).collect()
    }
    /// Position of the cursor in [`Model::visible`].
    pub fn cursor(&self) -> usize {
        self.cursor
    }
    /// The row under the cursor.
    pub fn current(&self) -> Option<&Row> {
        self.visible.get(self.cursor).map(|&i| &self.rows[i])
    }
    /// First position shown in the table.
    pub fn offset(&self) -> usize {
        self.offset
    }
    pub fn is_selected(&self, row: usize) -> bool {
        self.selected[row]
    }
    pub fn selected_names(&self) -> Vec<&str> {
        (0..self.rows.len())
            .filter(|&i| self.selected[i])
            .map(|i| self.rows[i].name())
            .collect()
    }
    pub fn selected_count(&self) -> usize {
        self.selected_count
    }
    pub fn filter(&self) -> &str {
        &self.filter
    }
    /// The filter is being typed.
    pub fn filtering(&self) -> bool {
        matches!(self.mode, Mode::Filter)
    }
    pub fn sort(&self) -> (Sort, bool) {
        (self.sort, self.reverse)
    }
    pub fn details_open(&self) -> bool {
        self.details
    }
    pub fn help_open(&self) -> bool {
        matches!(self.mode, Mode::Help)
    }
    pub fn confirm(&self) -> Option<&Confirm> {
        match &self.mode {
            Mode::Confirm(c) => Some(c),
            _ => None,
        }
    }
    /// The password prompt, when one is open. Never the password.
    pub fn prompt(&self) -> Option<Prompt> {
        let Mode::Password(typed) = &self.mode else {
            return None;
        };
        let row = &self.rows[*self.prompts.front()?];
        Some(Prompt {
            name: row.profile.name.clone(),
            username: row.profile.username.clone(),
            instance: row.instance.clone(),
            len: typed.0.chars().count(),
            waiting: self.prompts.len() - 1,
        })
    }
    /// The prompt for the user to impersonate, when it is open.
    pub fn user_prompt(&self) -> Option<UserPrompt> {
        let Mode::User { row, text } = &self.mode else {
            return None;
        };
        let r = &self.rows[*row];
        Some(UserPrompt {
            name: r.profile.name.clone(),
            username: r.profile.username.clone(),
            instance: r.instance.clone(),
            text: text.clone(),
        })
    }
    pub fn status(&self) -> Option<&Status> {
        self.status.as_ref()
    }
    /// How many profiles are in the state (all profiles, not only the shown ones).
    pub fn count(&self, state: RowState) -> usize {
        self.counts[state.index()]
    }
    /// Requests being sent (`.0`) and queued (`.1`), cancelled ones still unanswered included.
    pub fn in_flight(&self) -> (usize, usize) {
        (self.sent, self.queued)
    }
    pub fn quitting(&self) -> bool {
        self.quitting
    }
    pub fn size(&self) -> (u16, u16) {
        self.size
    }
    pub fn layout(&self) -> Layout {
        Layout::new(self.size.1, self.details, self.visible.len())
    }
    /// The Model's notion of now: the `now` of the last update.
    pub fn clock(&self) -> DateTime<Utc> {
        self.clock
    }

    /// True once after something changed that the screen shows; the runtime draws then.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The key table of the current mode.
    pub fn keys(&self) -> &'static [Binding] {
        match self.mode {
            Mode::Normal => NORMAL_KEYS,
            Mode::Filter => FILTER_KEYS,
            Mode::Help => HELP_KEYS,
            Mode::Confirm(_) => CONFIRM_KEYS,
            Mode::Password(_) => PASSWORD_KEYS,
            Mode::User { .. } => USER_KEYS,
        }
    }

    /// The footer: the bindings of the current mode that apply now.
    pub fn footer(&self) -> Vec<&'static Binding> {
        let targets = self.targets();
        self.keys()
            .iter()
            .filter(|b| b.footer && self.applies(b.action, &targets))
            .collect()
    }

    fn applies(&self, action: Action, targets: &[usize]) -> bool {
        match action {
            Action::Login => targets
                .iter()
                .any(|&i| !self.rows[i].busy() && !self.rows[i].is_sudo()),
            Action::Refresh => targets.iter().any(|&i| self.refresh_refusal(i).is_none()),
            Action::Logout => targets
                .iter()
                .any(|&i| !self.rows[i].busy() && self.rows[i].entry.session.is_some()),
            Action::Check => targets.iter().any(|&i| self.check_refusal(i).is_none()),
            Action::Impersonate => self
                .visible
                .get(self.cursor)
                .is_some_and(|&i| self.sudo_refusal(i).is_none()),
            Action::Cancel => targets
                .iter()
                .any(|&i| self.rows[i].flight.is_some_and(|f| !f.detached)),
            Action::ToggleSelect | Action::SelectAll | Action::Details | Action::Sort => {
                !self.visible.is_empty()
            }
            Action::Escape => !self.filter.is_empty() || self.selected_count > 0,
            _ => true,
        }
    }

    /// The rows an action applies to: the selected rows the filter shows, else the cursor's row.
    fn targets(&self) -> Vec<usize> {
        if self.selected_count > 0 {
            self.visible
                .iter()
                .copied()
                .filter(|&i| self.selected[i])
                .collect()
        } else {
            self.visible.get(self.cursor).copied().into_iter().collect()
        }
    }

    /// Applies a cache read from disk; entries older than what the screen has are ignored.
    /// Impersonations (`NAME>USER`) with a session get a row after their profile's; one whose
    /// session is gone (logged out, here or by another process) is no longer shown.
    /// Returns whether any row changed.
    pub fn apply_cache(&mut self, cache: &Cache) -> bool {
        let mut changed = false;
        // Impersonations: entries keyed by a profile's identity and a user.
        let mut parents: Option<HashMap<SessionKey, Vec<usize>>> = None;
        for (key, entry) in &cache.sessions {
            let Some(user) = key.sudo.as_deref().filter(|_| entry.session.is_some()) else {
                continue;
            };
            let parents = parents.get_or_insert_with(|| {
                let mut by_key: HashMap<SessionKey, Vec<usize>> = HashMap::new();
                for (i, row) in self.rows.iter().enumerate() {
                    if !row.is_sudo() {
                        by_key.entry(row.key.clone()).or_default().push(i);
                    }
                }
                by_key
            });
            for &p in parents.get(&key.without_sudo()).into_iter().flatten() {
                let name = crate::engine::sudo_name(&self.rows[p].profile.name, user);
                if !self.by_name.contains_key(&name) {
                    self.sudo_row(p, user);
                    changed = true;
                }
            }
        }
        for i in 0..self.rows.len() {
            let Some(new) = cache.sessions.get(&self.rows[i].key) else {
                continue;
            };
            let old = &self.rows[i].entry;
            if new != old && newer(new, old) {
                let new = new.clone();
                self.change_row(i, false, |r| r.entry = new);
                changed = true;
            }
        }
        if changed {
            self.dirty = true;
            if matches!(self.sort, Sort::State | Sort::TokenLeft) {
                self.reorder();
            }
        }
        changed
    }

    // --- keeping derived data up to date ---

    /// Changes row `i` and keeps counts, next change and (when `reposition`) the order up to date.
    fn change_row(&mut self, i: usize, reposition: bool, f: impl FnOnce(&mut Row)) {
        let now = self.clock;
        let row = &mut self.rows[i];
        let (state_before, phase_before, key_before, hidden_before) = (
            row.state,
            row.flight.map(|f| f.phase),
            row.token_key(),
            row.hidden,
        );
        let (hard_end_before, skew_before) = (row.hard_end().is_some(), row.skewed());
        f(row);
        row.state = RowState::of(&row.entry, row.flight.as_ref(), row.unverified, now);
        if row.is_sudo() {
            // An impersonation shows while it has a session (or a request in flight).
            row.hidden = row.entry.session.is_none() && row.flight.is_none();
        }
        let (state_after, phase_after, hidden_after) =
            (row.state, row.flight.map(|f| f.phase), row.hidden);
        let key_changed = match self.sort {
            Sort::State => state_before != state_after,
            Sort::TokenLeft => key_before != row.token_key(),
            Sort::File | Sort::Name => false,
        };
        if let Some(t) = row.next_change(now) {
            self.next_change = Some(self.next_change.map_or(t, |n| n.min(t)));
        }
        let (hard_end_after, skew_after) = (row.hard_end().is_some(), row.skewed());
        self.hard_ends =
            self.hard_ends + usize::from(hard_end_after) - usize::from(hard_end_before);
        self.skews = self.skews + usize::from(skew_after) - usize::from(skew_before);
        if !hidden_before {
            self.counts[state_before.index()] -= 1;
        }
        if !hidden_after {
            self.counts[state_after.index()] += 1;
        }
        for (phase, add) in [(phase_before, false), (phase_after, true)] {
            let counter = match phase {
                Some(Phase::Sent) => &mut self.sent,
                Some(Phase::Queued) => &mut self.queued,
                None => continue,
            };
            if add {
                *counter += 1;
            } else {
                *counter -= 1;
            }
        }
        if hidden_before != hidden_after {
            if hidden_after {
                self.total -= 1;
                if std::mem::take(&mut self.selected[i]) {
                    self.selected_count -= 1;
                }
            } else {
                self.total += 1;
            }
            // Shown or no longer shown: the visible order changes (rare: impersonations only).
            self.reorder();
        } else if key_changed && reposition {
            self.reposition(i);
        }
    }

    /// The row of the impersonation of `user` through row `parent`, made (not shown until it
    /// has a session) when there is none yet.
    fn sudo_row(&mut self, parent: usize, user: &str) -> usize {
        let base = &self.rows[parent];
        let name = crate::engine::sudo_name(&base.profile.name, user);
        if let Some(&i) = self.by_name.get(&name) {
            return i;
        }
        let mut row = Row::new(sudo_profile(&base.profile, user), base.order.0);
        row.order.1 = Some(user.to_string());
        row.sudo = Some((parent, user.to_string()));
        row.hidden = true;
        let i = self.rows.len();
        self.widths.add(&row);
        self.by_name.insert(name, i);
        self.search.push_str(&row.search);
        self.search_end.push(self.search.len() as u32);
        self.hits.push(0);
        self.rows.push(row);
        self.selected.push(false);
        self.sudo_rows += 1;
        i
    }

    /// Moves one row to its place in the sorted visible order, keeping the cursor on its row.
    fn reposition(&mut self, i: usize) {
        let Some(from) = self.visible.iter().position(|&v| v == i) else {
            return;
        };
        // The rows shown before earlier filter keystrokes are in the old order.
        self.undo.clear();
        let cursor_row = self.visible.get(self.cursor).copied();
        self.visible.remove(from);
        let to = self
            .visible
            .partition_point(|&v| self.cmp_rows(v, i) == Ordering::Less);
        self.visible.insert(to, i);
        if let Some(c) = cursor_row {
            self.cursor = if c == i {
                to
            } else {
                let mut pos = self.cursor;
                if from < pos {
                    pos -= 1;
                }
                if to <= pos {
                    pos += 1;
                }
                pos
            };
        }
        self.scroll_to_cursor();
    }

    fn cmp_rows(&self, a: usize, b: usize) -> Ordering {
        let (ra, rb) = (&self.rows[a], &self.rows[b]);
        let by = match self.sort {
            Sort::File => ra.order.cmp(&rb.order),
            Sort::Name => {
                let lower = |r: &'_ Row| {
                    r.profile
                        .name
                        .bytes()
                        .map(|b| b.to_ascii_lowercase())
                        .collect::<Vec<_>>()
                };
                lower(ra).cmp(&lower(rb))
            }
            Sort::State => ra.state.rank().cmp(&rb.state.rank()),
            Sort::TokenLeft => ra.token_key().cmp(&rb.token_key()),
        };
        let o = by.then(a.cmp(&b));
        if self.reverse { o.reverse() } else { o }
    }

    /// Recomputes the visible order from scratch: filter, then sort. Keeps the cursor on its row.
    fn reorder(&mut self) {
        let cursor_row = self.visible.get(self.cursor).copied();
        let needle = self.filter.to_lowercase();
        self.undo.clear();
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        let (rows, search, ends, hits) =
            (&self.rows, &self.search, &self.search_end, &mut self.hits);
        let mut visible: Vec<usize> = if needle.is_empty() && self.sudo_rows == 0 {
            (0..rows.len()).collect()
        } else {
            (0..rows.len())
                .filter(|&i| {
                    // Only impersonations hide (and looking costs a visit to every row).
                    (self.sudo_rows == 0 || !rows[i].hidden)
                        && finder
                            .find(search_text(search, ends, i).as_bytes())
                            .map(|at| hits[i] = at as u32)
                            .is_some()
                })
                .collect()
        };
        self.hits_for = Some(needle);
        if self.sort == Sort::Name {
            // Compare each name's lower-case form once, not per comparison.
            let reverse = self.reverse;
            visible.sort_by_cached_key(|&i| (self.rows[i].profile.name.to_ascii_lowercase(), i));
            if reverse {
                visible.reverse();
            }
        } else if self.sort != Sort::File || self.reverse || self.sudo_rows > 0 {
            visible.sort_by(|&a, &b| self.cmp_rows(a, b));
        }
        self.visible = visible;
        self.follow(cursor_row);
    }

    /// Keeps the shown rows whose filter text contains `needle`, which is `old` (the filter before
    /// this keystroke) with text appended: that can only narrow the result. A row's first match
    /// of `needle` is at or after its first match of `old`, and usually right there.
    fn narrow(&mut self, old: &str, needle: &str) {
        let known = needle.starts_with(old) && self.hits_for.as_deref() == Some(old);
        let mut undo = Narrowed {
            filter: old.to_string(),
            hidden: Vec::new(),
            moved: Vec::new(),
            known,
        };
        let mut place = 0;
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        // Where `old` matched, `needle` matches too if what was typed follows (usually one byte).
        let added = &needle.as_bytes()[old.len().min(needle.len())..];
        let (search, ends, hits) = (&self.search, &self.search_end, &mut self.hits);
        self.visible.retain(|&i| {
            let (at_place, before) = (place, hits[i]);
            place += 1;
            let text = search_text(search, ends, i).as_bytes();
            let from = if known && !old.is_empty() {
                hits[i] as usize
            } else {
                0
            };
            let rest = &text[from..];
            let extends = match added {
                [b] if known => rest.get(old.len()) == Some(b),
                _ => rest.starts_with(needle.as_bytes()),
            };
            let found = if extends {
                Some(from)
            } else {
                finder.find(rest).map(|at| from + at)
            };
            match found {
                Some(at) => {
                    if known && at as u32 != before {
                        undo.moved.push((i, before));
                    }
                    hits[i] = at as u32;
                    true
                }
                None => {
                    undo.hidden.push((at_place, i, before));
                    false
                }
            }
        });
        self.undo.push(undo);
        self.hits_for = Some(needle.to_string());
    }

    /// After a character was taken off the filter: what the table showed before that character
    /// was typed, when nothing else changed since; else filters again.
    fn widen(&mut self) {
        let needle = self.filter.to_lowercase();
        match self.undo.pop() {
            Some(undo) if undo.filter == needle => {
                let cursor_row = self.visible.get(self.cursor).copied();
                let mut shown = std::mem::take(&mut self.visible).into_iter();
                let mut visible = Vec::with_capacity(shown.len() + undo.hidden.len());
                for &(place, i, at) in &undo.hidden {
                    while visible.len() < place {
                        match shown.next() {
                            Some(v) => visible.push(v),
                            None => break,
                        }
                    }
                    visible.push(i);
                    self.hits[i] = at;
                }
                visible.extend(shown);
                for &(i, at) in &undo.moved {
                    self.hits[i] = at;
                }
                self.hits_for = undo.known.then_some(needle);
                self.visible = visible;
                self.follow(cursor_row);
            }
            _ => self.reorder(),
        }
    }

    /// Puts the cursor back on `row` if it is shown, else keeps the position within bounds.
    fn follow(&mut self, row: Option<usize>) {
        if let Some(pos) = row.and_then(|r| self.visible.iter().position(|&v| v == r)) {
            self.cursor = pos;
        }
        self.cursor = self.cursor.min(self.visible.len().saturating_sub(1));
        self.scroll_to_cursor();
        self.dirty = true;
    }

    fn page(&self) -> usize {
        self.layout().table_rows().max(1)
    }

    fn scroll_to_cursor(&mut self) {
        let page = self.page();
        if self.cursor < self.offset {
            self.offset = self.cursor;
        } else if self.cursor >= self.offset + page {
            self.offset = self.cursor + 1 - page;
        }
        self.offset = self.offset.min(self.visible.len().saturating_sub(page));
    }

    fn move_to(&mut self, pos: usize) {
        let pos = pos.min(self.visible.len().saturating_sub(1));
        if pos != self.cursor {
            self.cursor = pos;
            self.scroll_to_cursor();
        }
    }

    /// Recomputes time-based states when the clock passed the next change.
    /// Recomputes time-based states when the clock passed the next change, and starts the
    /// automatic refreshes that are due. Returns whether a state changed.
    fn advance(&mut self, now: DateTime<Utc>, cmds: &mut Vec<Command>) -> bool {
        self.clock = now;
        if self.next_change.is_none_or(|t| now < t) {
            return false;
        }
        let mut changed = false;
        let mut due = Vec::new();
        let mut next: Option<DateTime<Utc>> = None;
        for (i, row) in self.rows.iter_mut().enumerate() {
            let state = RowState::of(&row.entry, row.flight.as_ref(), row.unverified, now);
            if state != row.state {
                if !row.hidden {
                    self.counts[row.state.index()] -= 1;
                    self.counts[state.index()] += 1;
                    changed = true;
                }
                row.state = state;
            }
            if !self.quitting && row.auto_refresh_due(now) {
                due.push(i);
            }
            if let Some(t) = row.next_change(now) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        self.next_change = next;
        if changed && self.sort == Sort::State {
            self.reorder();
        }
        for &i in &due {
            cmds.push(self.start(i, Op::Refresh, None, false));
        }
        if !due.is_empty() {
            self.resort();
        }
        match due.as_slice() {
            [] => {}
            [i] => {
                let left = self.rows[*i].token_left(now).unwrap_or_else(|| "0s".into());
                let text = format!(
                    "{}: refreshing automatically ({left} left)",
                    self.rows[*i].name()
                );
                self.say(text);
            }
            more => self.say(format!("{} sessions refreshing automatically", more.len())),
        }
        changed || !due.is_empty()
    }

    fn countdowns(&self, now: DateTime<Utc>) -> Vec<(Option<String>, Option<String>)> {
        let end = (self.offset + self.page()).min(self.visible.len());
        self.visible[self.offset.min(end)..end]
            .iter()
            .map(|&i| (self.rows[i].token_left(now), self.rows[i].refresh_left(now)))
            .collect()
    }

    fn say(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
        });
    }

    fn warn(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: true,
        });
    }

    /// Why a refresh cannot be sent for row `i`, if it cannot.
    fn refresh_refusal(&self, i: usize) -> Option<&'static str> {
        let row = &self.rows[i];
        if row.busy() {
            return Some("busy");
        }
        match &row.entry.session {
            _ if row.is_sudo() => {
                Some("an impersonation has no refresh token: u on its profile makes a new one")
            }
            None => Some("no session: log in first"),
            Some(s) if !s.refresh_valid(self.clock) => Some("no valid refresh token: log in again"),
            Some(_) => None,
        }
    }

    /// Why a live check cannot be sent for row `i`, if it cannot.
    fn check_refusal(&self, i: usize) -> Option<&'static str> {
        let row = &self.rows[i];
        if row.busy() {
            return Some("a request is already in flight");
        }
        match &row.entry.session {
            Some(s) if s.access_valid(self.clock) => None,
            _ => Some("no active session to check: log in first"),
        }
    }

    /// Why row `i`'s session cannot impersonate another user, if it cannot.
    fn sudo_refusal(&self, i: usize) -> Option<String> {
        let row = &self.rows[i];
        let name = row.name();
        if let Some((parent, _)) = &row.sudo {
            return Some(format!(
                "{name} is an impersonation: u on {} makes another",
                self.rows[*parent].name()
            ));
        }
        if row.busy() {
            return Some(format!("{name}: a request is already in flight"));
        }
        if row.entry.usable_session(self.clock).is_none() || row.superseded() {
            return Some(format!(
                "{name}: impersonating needs an active admin session: log in first"
            ));
        }
        match &row.check {
            Some(c) if !c.admin => Some(format!(
                "{name}: {} is not an admin (checked at {}): impersonating needs an admin session",
                c.user_name,
                self.options.zone.format(c.at, "%H:%M:%S")
            )),
            _ => None,
        }
    }

    /// Queues `op` for row `i`. With `reposition` false the visible order is left to the caller
    /// (one [`Model::resort`] after starting many).
    fn start(&mut self, i: usize, op: Op, password: Option<Secret>, reposition: bool) -> Command {
        self.begin(i, op, false, reposition);
        Command::Start {
            name: self.rows[i].profile.name.clone(),
            op,
            password,
        }
    }

    /// Marks row `i`'s request as queued.
    fn begin(&mut self, i: usize, op: Op, background: bool, reposition: bool) {
        let since = self.clock;
        self.change_row(i, reposition, |r| {
            r.flight = Some(Flight {
                op,
                phase: Phase::Queued,
                since,
                detached: false,
                background,
            })
        });
    }
}

impl Model {
    /// After rows changed without repositioning: sorts again when the sort depends on them.
    fn resort(&mut self) {
        if matches!(self.sort, Sort::State | Sort::TokenLeft) {
            self.reorder();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// update
// ---------------------------------------------------------------------------------------------

/// Applies a message at time `now`; returns what the runtime should do.
pub fn update(model: &mut Model, msg: Msg, now: DateTime<Utc>) -> Vec<Command> {
    match msg {
        Msg::Tick => {
            let before = model.countdowns(model.clock);
            let mut cmds = Vec::new();
            let states_changed = model.advance(now, &mut cmds);
            if states_changed || model.countdowns(now) != before {
                model.dirty = true;
            }
            cmds
        }
        msg => {
            let was_dirty = model.dirty;
            let mut auto = Vec::new();
            let states_changed = model.advance(now, &mut auto);
            model.noop = false;
            let cmds = match msg {
                Msg::Key(key) if key.kind != KeyEventKind::Release => on_key(model, key),
                Msg::Key(_) | Msg::Tick => {
                    model.noop = true;
                    Vec::new()
                }
                Msg::Paste(text) => {
                    on_paste(model, text);
                    Vec::new()
                }
                Msg::Resize { width, height } => {
                    model.size = (width, height);
                    model.scroll_to_cursor();
                    Vec::new()
                }
                Msg::Started { name } => {
                    if let Some(&i) = model.by_name.get(&name) {
                        model.change_row(i, true, |r| {
                            if let Some(f) = &mut r.flight {
                                f.phase = Phase::Sent;
                            }
                        });
                    }
                    Vec::new()
                }
                Msg::Done(outcome) => {
                    on_done(model, *outcome);
                    Vec::new()
                }
                Msg::Checked { outcome, report } => {
                    on_checked(model, *outcome, report);
                    Vec::new()
                }
                Msg::Impersonated { parent, outcome } => {
                    on_impersonated(model, &parent, *outcome);
                    Vec::new()
                }
                Msg::Verify => verify(model),
                Msg::Withdrawn { name } => {
                    let found = model
                        .by_name
                        .get(&name)
                        .and_then(|&i| model.rows[i].flight.map(|f| (i, f)));
                    match found {
                        Some((i, flight)) => {
                            let at = model.clock;
                            if flight.background {
                                model.verifying = model.verifying.saturating_sub(1);
                                model.verify_withdrawn += 1;
                            }
                            model.change_row(i, true, |r| {
                                r.flight = None;
                                r.last = Some(LastResult {
                                    op: flight.op,
                                    kind: ResultKind::Withdrawn,
                                    at,
                                    latency_ms: None,
                                    summary: "withdrawn".into(),
                                });
                            });
                            model.say(format!(
                                "{name}: {} withdrawn before it was sent",
                                flight.op
                            ));
                        }
                        None => model.noop = true,
                    }
                    Vec::new()
                }
                Msg::CacheReloaded(cache) => {
                    model.noop = !model.apply_cache(&cache);
                    Vec::new()
                }
                Msg::Notice(text) => {
                    model.warn(text);
                    Vec::new()
                }
                Msg::Shutdown { reason } => quit(model, &reason),
            };
            model.dirty = was_dirty || states_changed || !std::mem::take(&mut model.noop);
            auto.extend(cmds);
            auto
        }
    }
}

fn quit(model: &mut Model, reason: &str) -> Vec<Command> {
    model.quitting = true;
    let (sent, queued) = model.in_flight();
    if sent + queued > 0 {
        model.say(format!(
            "{reason}: waiting up to 2 s for {} request(s) in flight",
            sent + queued
        ));
    } else {
        model.say(reason.to_string());
    }
    vec![Command::Quit]
}

fn on_key(model: &mut Model, key: KeyEvent) -> Vec<Command> {
    if model.quitting {
        return Vec::new();
    }
    let action = model
        .keys()
        .iter()
        .find(|b| b.matches(&key))
        .map(|b| b.action);
    let text = match key.code {
        KeyCode::Char(c)
            if !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
        {
            Some(c)
        }
        _ => None,
    };
    match (&mut model.mode, action, text) {
        (_, Some(Action::Quit), _) if key.modifiers.contains(KeyModifiers::CONTROL) => {
            quit(model, "quitting")
        }
        (_, Some(Action::Suspend), _) => vec![Command::Suspend],
        (Mode::Filter, Some(a), _) => {
            filter_action(model, a);
            Vec::new()
        }
        (Mode::Filter, None, Some(c)) => {
            let old = model.filter.to_lowercase();
            model.filter.push(c);
            let needle = model.filter.to_lowercase();
            let cursor_row = model.visible.get(model.cursor).copied();
            // Appending a character can only narrow the result.
            model.narrow(&old, &needle);
            model.follow(cursor_row);
            Vec::new()
        }
        (Mode::Password(_), Some(a), _) => password_action(model, a),
        (Mode::Password(typed), None, Some(c)) => {
            typed.0.push(c);
            Vec::new()
        }
        (Mode::User { .. }, Some(a), _) => user_action(model, a),
        (Mode::User { text, .. }, None, Some(c)) => {
            text.push(c);
            Vec::new()
        }
        (Mode::Confirm(_), Some(Action::Yes), _) => {
            let Mode::Confirm(confirm) = std::mem::replace(&mut model.mode, Mode::Normal) else {
                unreachable!()
            };
            if confirm.op == Op::Login {
                // Asked once per profile while the screen runs.
                for &i in &confirm.rows {
                    model.rows[i].guard_confirmed = true;
                }
            }
            act(model, confirm.op, confirm.rows, true)
        }
        (Mode::Confirm(_), Some(Action::No), _) => {
            model.mode = Mode::Normal;
            model.say("cancelled: nothing was sent");
            Vec::new()
        }
        (Mode::Help, Some(Action::CloseHelp), _) => {
            model.mode = Mode::Normal;
            Vec::new()
        }
        (Mode::Normal, Some(a), _) => normal_action(model, a),
        _ => {
            model.noop = true;
            Vec::new()
        }
    }
}

fn on_paste(model: &mut Model, mut text: String) {
    let mut clean = crate::text::strip_controls(&text);
    text.zeroize();
    match &mut model.mode {
        Mode::Password(typed) => typed.0.push_str(&clean),
        Mode::User { text: typed, .. } => typed.push_str(&clean),
        Mode::Filter => {
            model.filter.push_str(&clean);
            model.reorder();
        }
        _ => model.noop = true,
    }
    clean.zeroize();
}

fn filter_action(model: &mut Model, action: Action) {
    match action {
        Action::KeepFilter => {
            model.mode = Mode::Normal;
            if !model.filter.is_empty() {
                model.say(format!(
                    "filter \"{}\": {} of {} shown",
                    model.filter,
                    model.visible.len(),
                    model.rows.len()
                ));
            }
        }
        Action::ClearFilter => {
            model.mode = Mode::Normal;
            model.filter.clear();
            model.reorder();
        }
        Action::DeleteChar if model.filter.pop().is_some() => model.widen(),
        _ => {}
    }
}

fn password_action(model: &mut Model, action: Action) -> Vec<Command> {
    let Mode::Password(typed) = &mut model.mode else {
        return Vec::new();
    };
    match action {
        Action::DeleteChar => {
            typed.0.pop();
            Vec::new()
        }
        Action::SendPassword => {
            if typed.0.is_empty() {
                model.warn("type the password, or Esc to skip this profile");
                return Vec::new();
            }
            // Move the text into the command: the Model keeps no copy.
            let password = Secret::new(std::mem::take(&mut *typed.0));
            let i = model.prompts.pop_front().expect("a prompt is open");
            let mut cmds = Vec::new();
            if model.rows[i].busy() {
                model.warn(format!(
                    "{}: a request is already in flight",
                    model.rows[i].name()
                ));
            } else {
                cmds.push(model.start(i, Op::Login, Some(password), true));
            }
            next_prompt(model);
            cmds
        }
        Action::SkipPassword => {
            let i = model.prompts.pop_front().expect("a prompt is open");
            model.say(format!("{}: login skipped", model.rows[i].name()));
            next_prompt(model);
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn user_action(model: &mut Model, action: Action) -> Vec<Command> {
    let Mode::User { row, text } = &mut model.mode else {
        return Vec::new();
    };
    let i = *row;
    match action {
        Action::DeleteChar => {
            text.pop();
            Vec::new()
        }
        Action::CancelUser => {
            model.mode = Mode::Normal;
            model.say("impersonation cancelled: nothing was sent");
            Vec::new()
        }
        Action::SendUser => {
            let user = text.trim().to_string();
            if user.is_empty() {
                model.warn("type the user name to impersonate, or Esc");
                return Vec::new();
            }
            if user.contains('>') || user.chars().any(char::is_whitespace) {
                model.warn(format!("not a user name: {user:?}"));
                return Vec::new();
            }
            model.mode = Mode::Normal;
            // The session may have changed while the name was typed.
            if let Some(why) = model.sudo_refusal(i) {
                model.warn(why);
                return Vec::new();
            }
            model.begin(i, Op::Sudo, false, true);
            let name = model.rows[i].profile.name.clone();
            model.say(format!("{name}: impersonating {user}: queued"));
            vec![Command::Sudo { name, user }]
        }
        _ => Vec::new(),
    }
}

fn next_prompt(model: &mut Model) {
    model.mode = if model.prompts.is_empty() {
        Mode::Normal
    } else {
        Mode::Password(Typed::default())
    };
}

fn normal_action(model: &mut Model, action: Action) -> Vec<Command> {
    let page = model.page();
    match action {
        Action::Up => model.move_to(model.cursor.saturating_sub(1)),
        Action::Down => model.move_to(model.cursor + 1),
        Action::PageUp => model.move_to(model.cursor.saturating_sub(page)),
        Action::PageDown => model.move_to(model.cursor + page),
        Action::First => model.move_to(0),
        Action::Last => model.move_to(usize::MAX),
        Action::Login | Action::Refresh | Action::Logout => {
            let op = match action {
                Action::Login => Op::Login,
                Action::Refresh => Op::Refresh,
                _ => Op::Logout,
            };
            let targets = model.targets();
            return act(model, op, targets, false);
        }
        Action::Check => return check(model),
        Action::Impersonate => match model.visible.get(model.cursor).copied() {
            None => model.warn("no profile here"),
            Some(i) => match model.sudo_refusal(i) {
                Some(why) => model.warn(why),
                None => {
                    model.mode = Mode::User {
                        row: i,
                        text: String::new(),
                    }
                }
            },
        },
        Action::Cancel => return cancel(model),
        Action::ToggleSelect => {
            if let Some(&i) = model.visible.get(model.cursor) {
                model.selected[i] = !model.selected[i];
                if model.selected[i] {
                    model.selected_count += 1;
                } else {
                    model.selected_count -= 1;
                }
                model.move_to(model.cursor + 1);
            }
        }
        Action::SelectAll => {
            let all = model.visible.iter().all(|&i| model.selected[i]);
            for k in 0..model.visible.len() {
                let i = model.visible[k];
                if model.selected[i] == all {
                    model.selected[i] = !all;
                    if all {
                        model.selected_count -= 1;
                    } else {
                        model.selected_count += 1;
                    }
                }
            }
            model.say(format!("{} selected", model.selected_count));
        }
        Action::Filter => model.mode = Mode::Filter,
        Action::Details => {
            model.details = !model.details;
            model.scroll_to_cursor();
        }
        Action::Sort => {
            model.sort = model.sort.next();
            model.reorder();
            model.say(format!(
                "sorted by {}{}",
                model.sort.words(),
                if model.reverse { ", reversed" } else { "" }
            ));
        }
        Action::Reverse => {
            model.reverse = !model.reverse;
            model.reorder();
            model.say(format!(
                "sorted by {}{}",
                model.sort.words(),
                if model.reverse { ", reversed" } else { "" }
            ));
        }
        Action::Escape => {
            if !model.filter.is_empty() {
                model.filter.clear();
                model.reorder();
            } else if model.selected_count > 0 {
                model.selected.iter_mut().for_each(|s| *s = false);
                model.selected_count = 0;
            }
        }
        Action::Help => model.mode = Mode::Help,
        Action::Quit => return quit(model, "quitting"),
        _ => {}
    }
    Vec::new()
}

/// Starts `op` on the rows that allow it; asks first where that is due (unless `confirmed`).
fn act(model: &mut Model, op: Op, rows: Vec<usize>, confirmed: bool) -> Vec<Command> {
    if rows.is_empty() {
        if model.selected_count > 0 {
            model.warn(format!(
                "the filter hides all {} selected profiles",
                model.selected_count
            ));
        } else {
            model.warn("no profile here");
        }
        return Vec::new();
    }
    let mut ready = Vec::new();
    let mut skipped: Vec<(String, &'static str)> = Vec::new();
    for i in rows {
        let row = &model.rows[i];
        let refusal = if row.busy() {
            Some("a request is already in flight")
        } else {
            match op {
                Op::Login if row.is_sudo() => {
                    Some("an impersonation is renewed with u on its profile, not logged in")
                }
                Op::Login => None,
                Op::Refresh => model.refresh_refusal(i),
                Op::Logout if row.entry.session.is_none() => Some("not logged in"),
                Op::Logout => None,
                Op::Check | Op::Sudo | Op::Relogin => Some("not a bulk action"),
            }
        };
        match refusal {
            Some(why) => skipped.push((row.profile.name.clone(), why)),
            None => ready.push(i),
        }
    }
    if ready.is_empty() {
        let text = match skipped.as_slice() {
            [(name, why)] => format!("{name}: {why}"),
            _ => format!(
                "{op}: nothing to do for the {} chosen profiles ({})",
                skipped.len(),
                skipped[0].1
            ),
        };
        model.warn(text);
        return Vec::new();
    }
    let prod = ready.iter().filter(|&&i| model.rows[i].prod).count();
    // A login that would end another session (platform guard) is confirmed once per profile.
    let warnings: Vec<(String, String)> = if op == Op::Login && !confirmed {
        ready
            .iter()
            .map(|&i| &model.rows[i])
            .filter(|r| !r.guard_confirmed)
            .flat_map(|r| {
                r.warnings
                    .iter()
                    .map(|w| (r.profile.name.clone(), w.clone()))
            })
            .collect()
    } else {
        Vec::new()
    };
    if !warnings.is_empty() || (op == Op::Logout && !confirmed && (prod > 0 || ready.len() > 1)) {
        let names = ready
            .iter()
            .map(|&i| model.rows[i].profile.name.clone())
            .collect();
        model.mode = Mode::Confirm(Confirm {
            op,
            rows: ready,
            names,
            prod,
            warnings,
        });
        return Vec::new();
    }
    let mut cmds = Vec::new();
    let mut prompts = 0;
    for i in ready.iter().copied() {
        if op == Op::Login && model.rows[i].profile.password == PasswordSource::Prompt {
            model.prompts.push_back(i);
            prompts += 1;
        } else {
            cmds.push(model.start(i, op, None, false));
        }
    }
    if !cmds.is_empty() {
        model.resort();
    }
    let mut text = match cmds.len() {
        0 => String::new(),
        1 => format!("{}: {op} queued", model.rows[ready[0]].name()),
        n => format!("{op}: {n} requests queued"),
    };
    if !skipped.is_empty() {
        text.push_str(&format!(
            "{}{} skipped ({})",
            if text.is_empty() { "" } else { "; " },
            skipped.len(),
            skipped[0].1
        ));
    }
    if prompts > 0 && !matches!(model.mode, Mode::Password(_)) {
        model.mode = Mode::Password(Typed::default());
    }
    if !text.is_empty() {
        model.say(text);
    }
    cmds
}

fn cancel(model: &mut Model) -> Vec<Command> {
    let mut cmds = Vec::new();
    let (mut withdrawn, mut detached) = (0, 0);
    for i in model.targets() {
        let Some(flight) = model.rows[i].flight.filter(|f| !f.detached) else {
            continue;
        };
        model.change_row(i, false, |r| {
            if let Some(f) = &mut r.flight {
                f.detached = true;
            }
        });
        match flight.phase {
            Phase::Queued => {
                withdrawn += 1;
                cmds.push(Command::Cancel {
                    name: model.rows[i].profile.name.clone(),
                });
            }
            Phase::Sent => detached += 1,
        }
    }
    if withdrawn + detached > 0 {
        model.resort();
    }
    match (withdrawn, detached) {
        (0, 0) => model.warn("nothing to cancel"),
        (w, 0) => model.say(format!("withdrawing {w} queued request(s)")),
        (w, d) => model.say(format!(
            "withdrawing {w} queued request(s); {d} already sent: not waiting for them, their answers will still be stored"
        )),
    }
    cmds
}

fn on_done(model: &mut Model, outcome: Outcome) {
    let Some(&i) = model.by_name.get(&outcome.name) else {
        return;
    };
    let at = outcome.requests.last().map_or(model.clock, |r| r.at);
    let latency_ms =
        (!outcome.requests.is_empty()).then(|| outcome.requests.iter().map(|r| r.latency_ms).sum());
    let summary = match (&outcome.failure, outcome.ok) {
        (_, true) => "ok".to_string(),
        (Some(f), false) => f.short(),
        (None, false) => "failed".to_string(),
    };
    let last_error = (!outcome.ok).then(|| match &outcome.failure {
        Some(f) => LastError {
            at,
            op: f.op,
            text: f.headline(),
            hint: f.hint.clone(),
        },
        None => LastError {
            at,
            op: outcome.op,
            text: strip_name(&outcome.message, &outcome.name).to_string(),
            hint: None,
        },
    });
    let flight = model.rows[i].flight;
    let detached = flight.is_some_and(|f| f.detached);
    // A refresh whose token Sugar rejected, saved by a new login, reports itself as a re-login.
    let op = outcome.op;
    let ok = outcome.ok;
    let message = outcome.message.clone();
    model.change_row(i, true, |r| {
        r.flight = None;
        // The server answered about this session: it is no longer merely cached.
        r.unverified = false;
        // The entry as stored (or, when it could not be stored, as it now stands with the
        // failure saying why), unless the screen already has a newer one.
        if outcome.entry.generation >= r.entry.generation {
            r.entry = outcome.entry;
        }
        for req in outcome.requests {
            if r.recent.len() == RECENT {
                r.recent.pop_front();
            }
            r.recent.push_back(req);
        }
        r.last = Some(LastResult {
            op,
            kind: if ok {
                ResultKind::Ok
            } else {
                ResultKind::Failed
            },
            at,
            latency_ms,
            summary,
        });
        if ok {
            r.last_error = None;
        } else {
            r.last_error = last_error;
        }
    });
    let message = if detached {
        format!("{message} (answer to a cancelled request, stored)")
    } else {
        message
    };
    if ok {
        model.say(message)
    } else {
        model.warn(message)
    }
}

/// An entry read from the cache (or reported by a request) is newer than the screen's: a later
/// generation, or the same one written later (a cache that was reset starts counting again).
fn newer(new: &Entry, old: &Entry) -> bool {
    new.generation > old.generation
        || (new.generation == old.generation && new.updated_at >= old.updated_at)
}

/// `message` without the `NAME: ` it starts with.
fn strip_name<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .strip_prefix(name)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(message)
}

/// Adds requests to a row's recent ones, keeping at most [`RECENT`].
fn remember(recent: &mut VecDeque<RequestLog>, requests: Vec<RequestLog>) {
    for req in requests {
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(req);
    }
}

/// `v`: a live check of each target with an active session.
fn check(model: &mut Model) -> Vec<Command> {
    let targets = model.targets();
    if targets.is_empty() {
        model.warn("no profile here");
        return Vec::new();
    }
    let mut cmds = Vec::new();
    let mut skipped: Vec<(usize, &'static str)> = Vec::new();
    for i in targets {
        match model.check_refusal(i) {
            Some(why) => skipped.push((i, why)),
            None => {
                model.begin(i, Op::Check, false, false);
                cmds.push(Command::Check {
                    name: model.rows[i].profile.name.clone(),
                });
            }
        }
    }
    if !cmds.is_empty() {
        model.resort();
    }
    let mut text = match cmds.as_slice() {
        [] => String::new(),
        [Command::Check { name }] => format!("{name}: check queued"),
        more => format!("check: {} requests queued", more.len()),
    };
    match (skipped.as_slice(), cmds.is_empty()) {
        ([], _) => {}
        ([(i, why)], true) => text = format!("{}: {why}", model.rows[*i].name()),
        (s, true) => {
            text = format!(
                "check: nothing to do for the {} chosen profiles ({})",
                s.len(),
                s[0].1
            )
        }
        (s, false) => text.push_str(&format!("; {} skipped ({})", s.len(), s[0].1)),
    }
    if cmds.is_empty() {
        model.warn(text);
    } else {
        model.say(text);
    }
    cmds
}

/// At start: checks every cached active session in the background; they show as unverified
/// until their check returns.
fn verify(model: &mut Model) -> Vec<Command> {
    let now = model.clock;
    let mut cmds = Vec::new();
    for i in 0..model.rows.len() {
        let r = &model.rows[i];
        if r.hidden || r.busy() || r.entry.state(now) != State::Active {
            continue;
        }
        model.change_row(i, false, |r| r.unverified = true);
        model.begin(i, Op::Check, true, false);
        cmds.push(Command::Check {
            name: model.rows[i].profile.name.clone(),
        });
    }
    if cmds.is_empty() {
        model.noop = true;
        return cmds;
    }
    model.resort();
    model.verifying += cmds.len();
    model.say(format!(
        "checking {} cached session{} with the server",
        cmds.len(),
        if cmds.len() == 1 { "" } else { "s" }
    ));
    cmds
}

fn on_checked(model: &mut Model, outcome: Outcome, report: Option<CheckReport>) {
    let Some(&i) = model.by_name.get(&outcome.name) else {
        return;
    };
    let flight = model.rows[i].flight;
    let background = flight.is_some_and(|f| f.background);
    let detached = flight.is_some_and(|f| f.detached);
    let at = outcome.requests.last().map_or(model.clock, |r| r.at);
    // The four requests run at once: the check took as long as the slowest.
    let latency_ms = report
        .as_ref()
        .map(|r| r.latency_ms)
        .or_else(|| outcome.requests.iter().map(|r| r.latency_ms).max());
    let superseded = outcome
        .entry
        .failure
        .as_ref()
        .is_some_and(|f| f.superseded());
    let summary = match (&outcome.failure, outcome.ok) {
        (_, true) => "ok".to_string(),
        (_, false) if superseded => "superseded".to_string(),
        (Some(f), false) => f.short(),
        (None, false) => "failed".to_string(),
    };
    let last_error = (!outcome.ok).then(|| {
        let (text, hint) = match &outcome.failure {
            Some(f) => (f.headline(), f.hint.clone()),
            None => (
                strip_name(&outcome.message, &outcome.name).to_string(),
                None,
            ),
        };
        LastError {
            at,
            op: Op::Check,
            text,
            hint,
        }
    });
    let ok = outcome.ok;
    let warning = report.as_ref().and_then(|r| r.skew_warning());
    let entry = outcome.entry;
    let requests = outcome.requests;
    model.change_row(i, true, |r| {
        r.flight = None;
        r.unverified = false;
        // The entry as the check found it (or as it marked it): newer than the screen's only.
        if newer(&entry, &r.entry) {
            r.entry = entry;
        }
        remember(&mut r.recent, requests);
        if report.is_some() || superseded {
            r.check = report;
        }
        r.last = Some(LastResult {
            op: Op::Check,
            kind: if ok {
                ResultKind::Ok
            } else {
                ResultKind::Failed
            },
            at,
            latency_ms,
            summary,
        });
        r.last_error = last_error;
    });
    let mut message = outcome.message;
    if detached {
        message.push_str(" (answer to a cancelled request)");
    }
    if background {
        // Checks of cached sessions at start: failures and warnings are worth a line, and so
        // is the end of the batch; a session that is fine is not.
        model.verifying = model.verifying.saturating_sub(1);
        model.verify_failed += usize::from(!ok);
        model.verify_skewed += usize::from(warning.is_some());
        if !ok || warning.is_some() {
            model.warn(message);
        }
        if model.verifying == 0 {
            let failed = std::mem::take(&mut model.verify_failed);
            let skewed = std::mem::take(&mut model.verify_skewed);
            let mut skew = match skewed {
                0 => String::new(),
                n => format!("; {n} with the server's clock off by over a minute"),
            };
            match std::mem::take(&mut model.verify_withdrawn) {
                0 => {}
                n => skew.push_str(&format!("; {n} withdrawn, still unverified (v checks)")),
            }
            if failed > 0 {
                model.warn(format!(
                    "checked the cached sessions: {failed} not accepted by the server (see the rows){skew}"
                ));
            } else if skewed > 0 {
                model.warn(format!("checked the cached sessions: all alive{skew}"));
            } else {
                model.say(format!("checked the cached sessions: all alive{skew}"));
            }
        }
    } else if ok && warning.is_none() {
        model.say(message);
    } else {
        model.warn(message);
    }
}

fn on_impersonated(model: &mut Model, parent: &str, outcome: Outcome) {
    let Some(&p) = model.by_name.get(parent) else {
        return;
    };
    let user = outcome
        .name
        .split_once('>')
        .map_or_else(String::new, |(_, u)| u.to_string());
    let at = outcome.requests.last().map_or(model.clock, |r| r.at);
    let latency_ms =
        (!outcome.requests.is_empty()).then(|| outcome.requests.iter().map(|r| r.latency_ms).sum());
    let ok = outcome.ok;
    let summary = match &outcome.failure {
        _ if ok => "ok".to_string(),
        Some(f) => f.short(),
        None => "failed".to_string(),
    };
    let last = LastResult {
        op: Op::Sudo,
        kind: if ok {
            ResultKind::Ok
        } else {
            ResultKind::Failed
        },
        at,
        latency_ms,
        summary,
    };
    // The request was the parent's: it shows there, and so does a failure (403: not an admin,
    // 404: no such user), since no impersonation came of it.
    let last_error = (!ok).then(|| {
        let (text, hint) = match &outcome.failure {
            Some(f) => (
                format!("sudo as {user} failed: {}", f.what()),
                f.hint.clone(),
            ),
            None => (
                strip_name(&outcome.message, &outcome.name).to_string(),
                None,
            ),
        };
        LastError {
            at,
            op: Op::Sudo,
            text,
            hint,
        }
    });
    let requests = outcome.requests.clone();
    let parent_last = last.clone();
    model.change_row(p, true, |r| {
        r.flight = None;
        remember(&mut r.recent, requests);
        r.last = Some(parent_last);
        if ok {
            r.last_error = None;
        } else {
            r.last_error = last_error;
        }
    });
    if !ok {
        model.warn(outcome.message);
        return;
    }
    let i = model.sudo_row(p, &user);
    let entry = outcome.entry;
    model.change_row(i, true, |r| {
        r.entry = entry;
        r.flight = None;
        r.unverified = false;
        r.check = None;
        r.last = Some(last);
        r.last_error = None;
        r.recent.clear();
        remember(&mut r.recent, outcome.requests);
    });
    model.say(outcome.message);
}
