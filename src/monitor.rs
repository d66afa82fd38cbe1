//! Monitoring verdicts, as the monitoring-plugins guidelines ask (Nagios, Icinga, Zabbix and
//! Sensu read them): each session judged OK, WARNING or CRITICAL from its cache entry, the time,
//! the thresholds and, when there was one, a live check; UNKNOWN is for the check itself failing.
//! Pure: no I/O, no clock (the time is an argument).

use crate::session::{CheckReport, Entry, MAX_SKEW_S, State, format_duration};
use chrono::{DateTime, TimeDelta, Utc};
use std::fmt;

/// A monitoring status; its number is the plugin's exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    /// The check could not be made (a bad profiles file, an unreadable cache, bad arguments).
    Unknown = 3,
}

impl Status {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// `OK`, `WARNING`, `CRITICAL`, `UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a session's end is near enough to warn about, and to page about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub warn: TimeDelta,
    pub crit: TimeDelta,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            warn: TimeDelta::minutes(10),
            crit: TimeDelta::minutes(2),
        }
    }
}

/// What a live check of the session found.
#[derive(Clone, Debug)]
pub struct Live {
    /// Sugar accepted the session.
    pub ok: bool,
    /// What happened, in words (without the profile's name).
    pub message: String,
    pub report: Option<CheckReport>,
}

/// One session judged.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    pub status: Status,
    /// Why, in words (without the profile's name).
    pub reason: String,
    /// Time to the session's last usable instant, when it has one (negative: past).
    pub left: Option<TimeDelta>,
}

/// The last instant a session can be used: its refresh token's expiry (or its hard end, when
/// refreshing no longer extends it); for a session without a refresh token, its access token's.
pub fn last_usable(entry: &Entry) -> Option<(DateTime<Utc>, &'static str)> {
    let s = entry.session.as_ref()?;
    let (at, what) = match (&s.refresh_token, s.refresh_expires_at) {
        (Some(_), Some(r)) => (r, "the refresh token expires"),
        _ => (s.expires_at, "the access token expires (no refresh token)"),
    };
    Some(match s.hard_end {
        Some(end) if end < at => (end, "the session reaches its hard end"),
        _ => (at, what),
    })
}

/// Judges one session. `required`: a session must exist (the profile was named, or
/// `--require-active`); otherwise a logged-out profile is OK. `live`: the live check's result,
/// `None` when judging from the cache alone.
pub fn judge(
    entry: &Entry,
    now: DateTime<Utc>,
    th: Thresholds,
    required: bool,
    live: Option<&Live>,
) -> Judged {
    let left = last_usable(entry).map(|(at, _)| at - now);
    let critical = |reason: String| Judged {
        status: Status::Critical,
        reason,
        left,
    };
    if let Some(live) = live.filter(|l| !l.ok) {
        return critical(format!("the live check failed: {}", live.message));
    }
    match entry.state(now) {
        State::Superseded => {
            return critical(
                "superseded: another login for the same user and platform ended the session".into(),
            );
        }
        State::Error => {
            let why = entry
                .failure
                .as_ref()
                .map_or_else(|| "an error".to_string(), |f| f.render_unnamed());
            return critical(why);
        }
        State::LoggedOut if required => return critical("not logged in".into()),
        State::LoggedOut => {
            return Judged {
                status: Status::Ok,
                reason: "not logged in (not required)".into(),
                left: None,
            };
        }
        State::RefreshExpired => {
            return critical("expired, with nothing to refresh it with: log in again".into());
        }
        State::Active | State::Expired => {}
    }
    let Some((at, what)) = last_usable(entry) else {
        return critical("no session".into());
    };
    let remaining = at - now;
    let mut judged = if remaining <= TimeDelta::zero() {
        critical(format!(
            "{what}: it ended {} ago",
            format_duration(-remaining)
        ))
    } else {
        let status = if remaining < th.crit {
            Status::Critical
        } else if remaining < th.warn {
            Status::Warning
        } else {
            Status::Ok
        };
        Judged {
            status,
            reason: format!("{what} in {}", format_duration(remaining)),
            left,
        }
    };
    if let Some(skew) = live.and_then(|l| l.report.as_ref()).and_then(|r| r.skew_s)
        && skew.abs() > MAX_SKEW_S
    {
        judged.status = judged.status.max(Status::Warning);
        judged.reason = format!(
            "{}; the server's clock is {skew:+} s from ours (countdowns are off by as much)",
            judged.reason
        );
    }
    judged
}

/// The worst status of many (OK when there are none).
pub fn worst<'a>(all: impl IntoIterator<Item = &'a Judged>) -> Status {
    all.into_iter()
        .map(|j| j.status)
        .max()
        .unwrap_or(Status::Ok)
}

/// A Nagios performance-data label: quoted, a quote doubled, `=` (which ends a label) replaced.
pub fn perf_label(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''").replace('=', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Failure, FailureKind, Op};
    use crate::secret::Secret;
    use crate::session::Session;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn entry(access_s: i64, refresh_s: Option<i64>) -> Entry {
        let now = now();
        Entry {
            session: Some(Session {
                access_token: Secret::new("a"),
                refresh_token: refresh_s.map(|_| Secret::new("r")),
                download_token: None,
                obtained_at: now - TimeDelta::minutes(1),
                expires_at: now + TimeDelta::seconds(access_s),
                refresh_expires_at: refresh_s.map(|s| now + TimeDelta::seconds(s)),
                platform: "custom_api".into(),
                username: "u".into(),
                url: "https://acme.example.com".into(),
                hard_end: None,
            }),
            ..Entry::default()
        }
    }

    fn status(e: &Entry, required: bool, live: Option<&Live>) -> Status {
        judge(e, now(), Thresholds::default(), required, live).status
    }

    #[test]
    fn the_last_usable_instant_decides_against_the_thresholds() {
        // The refresh token's expiry counts, not the access token's.
        assert_eq!(status(&entry(30, Some(3600)), false, None), Status::Ok);
        assert_eq!(
            status(&entry(3600, Some(540)), false, None),
            Status::Warning
        );
        assert_eq!(
            status(&entry(3600, Some(100)), false, None),
            Status::Critical
        );
        // Without a refresh token, the access token's expiry.
        assert_eq!(status(&entry(3600, None), false, None), Status::Ok);
        assert_eq!(status(&entry(300, None), false, None), Status::Warning);
        // An access token expired with a refresh token still good: OK (it will be refreshed).
        let j = judge(
            &entry(-10, Some(86_400)),
            now(),
            Thresholds::default(),
            false,
            None,
        );
        assert_eq!(
            (j.status, j.left),
            (Status::Ok, Some(TimeDelta::seconds(86_400)))
        );
        // A hard end before the refresh expiry is the end.
        let mut capped = entry(3600, Some(86_400));
        capped.session.as_mut().unwrap().hard_end = Some(now() + TimeDelta::seconds(300));
        let j = judge(&capped, now(), Thresholds::default(), false, None);
        assert_eq!(j.status, Status::Warning);
        assert!(j.reason.contains("hard end"), "{}", j.reason);
    }

    #[test]
    fn ended_superseded_failed_and_rejected_sessions_are_critical() {
        assert_eq!(status(&entry(-10, Some(-5)), false, None), Status::Critical);
        assert_eq!(status(&entry(-10, None), false, None), Status::Critical);
        let mut e = entry(3600, Some(86_400));
        e.failure = Some(Failure {
            kind: FailureKind::Superseded,
            ..Failure::local(Op::Check, now(), "x")
        });
        assert_eq!(status(&e, false, None), Status::Critical);
        let mut e = entry(3600, Some(86_400));
        e.failure = Some(Failure::local(Op::Refresh, now(), "the disk is full"));
        let j = judge(&e, now(), Thresholds::default(), false, None);
        assert_eq!(j.status, Status::Critical);
        assert!(j.reason.contains("the disk is full"), "{}", j.reason);
        let rejected = Live {
            ok: false,
            message: "401 invalid_grant".into(),
            report: None,
        };
        assert_eq!(
            status(&entry(3600, Some(86_400)), false, Some(&rejected)),
            Status::Critical
        );
    }

    #[test]
    fn a_logged_out_profile_pages_only_when_required() {
        assert_eq!(status(&Entry::default(), false, None), Status::Ok);
        assert_eq!(status(&Entry::default(), true, None), Status::Critical);
    }

    #[test]
    fn clock_skew_seen_live_warns() {
        let report = |skew| Live {
            ok: true,
            message: "ok".into(),
            report: Some(CheckReport {
                at: now(),
                user_name: "u".into(),
                full_name: "U".into(),
                admin: false,
                flavor: "ENT".into(),
                version: "14.0.0".into(),
                skew_s: Some(skew),
                latency_ms: 10,
            }),
        };
        let e = entry(3600, Some(86_400));
        assert_eq!(status(&e, false, Some(&report(5))), Status::Ok);
        let j = judge(&e, now(), Thresholds::default(), false, Some(&report(-300)));
        assert_eq!(j.status, Status::Warning);
        assert!(j.reason.contains("-300 s"), "{}", j.reason);
        // Worse stays worse.
        let short = entry(3600, Some(60));
        assert_eq!(status(&short, false, Some(&report(300))), Status::Critical);
    }

    #[test]
    fn labels_are_quoted_for_nagios() {
        assert_eq!(perf_label("acme_left"), "'acme_left'");
        assert_eq!(perf_label("a'b=c"), "'a''b_c'");
        assert_eq!(worst([].iter()), Status::Ok);
    }
}
