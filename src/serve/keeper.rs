//! What the daemon does next for each session it keeps: refresh when due, log in again through a
//! non-interactive password source when there is nothing to refresh with (at most once per
//! [`RELOGIN_INTERVAL`], longer after failures), check live every `check_interval_s`. Decided
//! from the cache entry and the time; the daemon's loop sends what is decided.

use crate::config::Profile;
use crate::session::{Entry, Op, RELOGIN_INTERVAL, refresh_due};
use chrono::{DateTime, TimeDelta, Utc};

/// The longest wait between two logins after failures.
pub const MAX_LOGIN_BACKOFF: TimeDelta = TimeDelta::hours(4);

/// What the daemon remembers of a profile between ticks.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// When the daemon last sent a login for it, and how many in a row failed.
    pub last_login: Option<DateTime<Utc>>,
    pub failed_logins: u32,
    /// When it was last checked live (or first seen, so the first check waits a whole interval).
    pub last_check: Option<DateTime<Utc>>,
    /// The profile as last seen and its session's identity, made once (not every round) until a
    /// reload brings a new profile.
    pub key: Option<(std::sync::Arc<Profile>, crate::identity::SessionKey)>,
}

impl Memory {
    /// The identity of `p`'s session, made again only when `p` is not the profile last seen.
    pub fn key_of(&mut self, p: &std::sync::Arc<Profile>) -> &crate::identity::SessionKey {
        if !self
            .key
            .as_ref()
            .is_some_and(|(seen, _)| std::sync::Arc::ptr_eq(seen, p))
        {
            self.key = Some((p.clone(), p.session_key()));
        }
        &self.key.as_ref().expect("just set").1
    }
}

impl Memory {
    /// The wait before the next login: [`RELOGIN_INTERVAL`], doubled for each failure in a row
    /// after the first, up to [`MAX_LOGIN_BACKOFF`].
    pub fn login_wait(&self) -> TimeDelta {
        let doublings = self.failed_logins.saturating_sub(1).min(8);
        (RELOGIN_INTERVAL * 2i32.pow(doublings)).min(MAX_LOGIN_BACKOFF)
    }

    fn may_log_in(&self, now: DateTime<Utc>) -> bool {
        self.last_login
            .is_none_or(|at| now - at >= self.login_wait())
    }

    /// Notes how a login the daemon sent ended.
    pub fn login_done(&mut self, ok: bool) {
        self.failed_logins = if ok { 0 } else { self.failed_logins + 1 };
    }
}

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Op(Op),
    Check,
}

/// What to do for `p` now, if anything. Impersonations (sudo sessions) are only checked: they
/// have no refresh token and no password of their own.
pub fn next(p: &Profile, entry: &Entry, memory: &Memory, now: DateTime<Utc>) -> Option<Next> {
    if entry.needs_login(now) {
        let can = !p.is_impersonation() && p.password.is_non_interactive();
        return (can && memory.may_log_in(now)).then_some(Next::Op(Op::Login));
    }
    if p.auto_refresh && !p.is_impersonation() && refresh_due(&p.name, entry, p.refresh_before, now)
    {
        return Some(Next::Op(Op::Refresh));
    }
    let interval = p.check_interval.and_then(|d| TimeDelta::from_std(d).ok())?;
    let checked = memory.last_check?;
    (entry.usable_session(now).is_some() && now - checked >= interval).then_some(Next::Check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Failure, FailureKind};
    use crate::secret::Secret;
    use crate::session::Session;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn profile(extra: &str) -> Profile {
        let text = format!(
            "[profiles.acme]\nurl = \"https://acme.example.com\"\nusername = \"u\"\npassword_env = \"PW\"\n{extra}\n"
        );
        let p = crate::config::parse(&text, std::path::Path::new("t.toml"))
            .unwrap()
            .profiles
            .remove(0);
        Profile::clone(&p)
    }

    fn entry(access_s: i64, refresh_s: Option<i64>) -> Entry {
        Entry {
            session: Some(Session {
                access_token: Secret::new("a"),
                refresh_token: refresh_s.map(|_| Secret::new("r")),
                download_token: None,
                obtained_at: now() - TimeDelta::seconds(60),
                expires_at: now() + TimeDelta::seconds(access_s),
                refresh_expires_at: refresh_s.map(|s| now() + TimeDelta::seconds(s)),
                platform: "custom_api".into(),
                username: "u".into(),
                url: "https://acme.example.com".into(),
                hard_end: None,
            }),
            ..Entry::default()
        }
    }

    #[test]
    fn a_session_is_refreshed_when_due_and_left_alone_before() {
        let p = profile("");
        let m = Memory::default();
        assert_eq!(next(&p, &entry(3600, Some(86_400)), &m, now()), None);
        assert_eq!(
            next(&p, &entry(10, Some(86_400)), &m, now()),
            Some(Next::Op(Op::Refresh))
        );
        assert_eq!(
            next(
                &profile("auto_refresh = false"),
                &entry(10, Some(86_400)),
                &m,
                now()
            ),
            None
        );
    }

    #[test]
    fn a_login_when_nothing_can_be_refreshed_at_most_every_ten_minutes_then_backing_off() {
        let p = profile("");
        let mut m = Memory::default();
        let gone = entry(-10, None);
        assert_eq!(next(&p, &gone, &m, now()), Some(Next::Op(Op::Login)));
        assert_eq!(
            next(&p, &Entry::default(), &m, now()),
            Some(Next::Op(Op::Login))
        );
        m.last_login = Some(now());
        m.login_done(false);
        assert_eq!(next(&p, &gone, &m, now() + TimeDelta::minutes(9)), None);
        assert_eq!(
            next(&p, &gone, &m, now() + TimeDelta::minutes(10)),
            Some(Next::Op(Op::Login))
        );
        m.login_done(false);
        assert_eq!(m.login_wait(), TimeDelta::minutes(20));
        for _ in 0..20 {
            m.login_done(false);
        }
        assert_eq!(m.login_wait(), MAX_LOGIN_BACKOFF);
        m.login_done(true);
        assert_eq!(m.login_wait(), RELOGIN_INTERVAL);
        // Never a prompt: a profile that would ask is left alone.
        let asks = profile("").clone();
        let asks = Profile {
            password: crate::config::PasswordSource::Prompt,
            ..asks
        };
        assert_eq!(next(&asks, &gone, &Memory::default(), now()), None);
    }

    #[test]
    fn a_superseded_session_is_logged_in_again_and_a_passing_failure_is_not() {
        let p = profile("");
        let mut superseded = entry(3600, Some(86_400));
        superseded.failure = Some(Failure {
            kind: FailureKind::Superseded,
            ..Failure::local(Op::Check, now(), "x")
        });
        assert_eq!(
            next(&p, &superseded, &Memory::default(), now()),
            Some(Next::Op(Op::Login))
        );
        // A network failure while the session still works: no login (the refresh retries).
        let mut flaky = entry(3600, Some(86_400));
        flaky.failure = Some(Failure {
            kind: FailureKind::Network,
            ..Failure::local(Op::Refresh, now(), "connection refused")
        });
        assert_eq!(next(&p, &flaky, &Memory::default(), now()), None);
    }

    #[test]
    fn live_checks_every_interval_once_one_has_passed() {
        let p = profile("check_interval_s = 60");
        let e = entry(3600, Some(86_400));
        let mut m = Memory {
            last_check: Some(now()),
            ..Memory::default()
        };
        assert_eq!(next(&p, &e, &m, now() + TimeDelta::seconds(30)), None);
        assert_eq!(
            next(&p, &e, &m, now() + TimeDelta::seconds(60)),
            Some(Next::Check)
        );
        m.last_check = None;
        assert_eq!(
            next(&p, &e, &m, now()),
            None,
            "not before it was first seen"
        );
        assert_eq!(next(&profile(""), &e, &Memory::default(), now()), None);
    }
}
