//! `check`: a monitoring plugin. Each chosen session is checked live (or read from the cache with
//! `--offline`), judged by [`crate::monitor::judge`], and printed as the monitoring-plugins
//! guidelines ask: a status line with performance data, one line per session that is not OK,
//! the rest of the performance data; the exit status is the worst status (3 when the check
//! itself could not be made).

use super::args::CheckArgs;
use super::bulk::run_jobs;
use super::commands::{load_cache, select, with_impersonations};
use super::{Cli, Usage, load_for_command, open_store, profiles_path};
use crate::config::Profile;
use crate::monitor::{Judged, Live, Status, Thresholds, judge, perf_label, worst};
use crate::runtime::Engine;
use crate::session::Op;
use crate::text::strip_controls;
use chrono::Utc;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Names shown per status on the first line; the others are counted.
const NAMED: usize = 5;

/// One session judged, with the round trip of its live check.
struct Judgement {
    name: String,
    judged: Judged,
    state: &'static str,
    latency: Option<Duration>,
    /// What the live check found (who the user is, Sugar's version, the clock).
    report: Option<crate::session::CheckReport>,
}

pub(super) async fn check(cli: &Cli, a: &CheckArgs) -> i32 {
    let started = Instant::now();
    let result = judge_all(cli, a).await;
    let elapsed = started.elapsed();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let status = match result {
        Ok(None) => return crate::exit::INTERRUPTED,
        Ok(Some(rows)) => {
            let status = worst(rows.iter().map(|r| &r.judged));
            let text = if a.json {
                as_json(&rows, status, elapsed)
            } else {
                as_plugin_text(&rows, status, elapsed, a)
            };
            let _ = writeln!(out, "{text}");
            status
        }
        Err(Usage(message)) => {
            let message = message
                .strip_prefix("sugar-sessions: ")
                .unwrap_or(&message)
                .to_string();
            let _ = writeln!(out, "{}", unknown(&message, a.json));
            Status::Unknown
        }
    };
    let _ = out.flush();
    status.code()
}

/// The output of a check that could not be made (bad arguments, a bad profiles file, an
/// unreadable cache): UNKNOWN, in the plugin's format.
pub fn unknown(message: &str, as_json: bool) -> String {
    let message = message
        .lines()
        .map(strip_controls)
        .collect::<Vec<_>>()
        .join("\n");
    if as_json {
        return json!({"status": "UNKNOWN", "code": 3, "summary": message, "profiles": []})
            .to_string();
    }
    let mut lines = message.lines();
    let first = lines.next().unwrap_or("the check could not be made");
    let mut text = format!("SUGAR UNKNOWN - {}", first.replace('|', "/"));
    for line in lines {
        text.push('\n');
        text.push_str(&line.replace('|', "/"));
    }
    text
}

/// The sessions judged; `None` when Ctrl-C ended the live checks (what was not sent is named on
/// stderr; the status is then 130, as for every command).
async fn judge_all(cli: &Cli, a: &CheckArgs) -> Result<Option<Vec<Judgement>>, Usage> {
    if a.crit > a.warn {
        return Err(Usage(
            "--crit must not be longer than --warn (both are time left before a session ends)"
                .into(),
        ));
    }
    let th = Thresholds {
        warn: a.warn,
        crit: a.crit,
    };
    let profiles = load_for_command(cli, &profiles_path(cli)?)?;
    let engine = Arc::new(Engine::new(open_store(cli, &profiles)?, &profiles.settings));
    let mut cache = load_cache(engine.reader())?;
    let profiles = with_impersonations(&profiles, &cache);
    // Impersonations only when named: a left-over sudo session nobody uses pages nobody.
    let chosen: Vec<Arc<Profile>> = select(&profiles, &a.targets(), false)?
        .into_iter()
        .cloned()
        .collect();
    let mut live: HashMap<String, Live> = HashMap::new();
    if !a.offline {
        // Only sessions are checked: a profile that is not logged in is judged as it is.
        let to_check: Vec<Arc<Profile>> = chosen
            .iter()
            .filter(|p| {
                cache
                    .entry(&p.session_key())
                    .is_some_and(|e| e.session.is_some())
            })
            .cloned()
            .collect();
        if !to_check.is_empty() {
            let finished = run_jobs(engine.clone(), to_check, Op::Check, false).await?;
            if finished.interrupted {
                return Ok(None);
            }
            for (summary, report) in finished.outcomes {
                let message = summary
                    .message
                    .strip_prefix(&format!("{}: ", summary.name))
                    .unwrap_or(&summary.message)
                    .to_string();
                live.insert(
                    summary.name,
                    Live {
                        ok: summary.ok,
                        message,
                        report: report.map(|r| *r),
                    },
                );
            }
            // What the checks stored (a session found gone, a failure).
            cache = load_cache(engine.reader())?;
        }
    }
    let now = Utc::now();
    let empty = crate::session::Entry::default();
    Ok(Some(
        chosen
            .iter()
            .map(|p| {
                let entry = cache.entry(&p.session_key()).unwrap_or(&empty);
                let required = a.require_active || a.names.contains(&p.name);
                let checked = live.get(&p.name);
                Judgement {
                    name: p.name.clone(),
                    judged: judge(entry, now, th, required, checked),
                    state: entry.state(now).as_str(),
                    latency: checked
                        .and_then(|l| l.report.as_ref())
                        .map(|r| Duration::from_millis(r.latency_ms)),
                    report: checked.and_then(|l| l.report.clone()),
                }
            })
            .collect(),
    ))
}

/// `2 critical (acme, beta), 1 warning (gamma), 9 OK`.
fn summary(rows: &[Judgement]) -> String {
    let mut parts = Vec::new();
    for status in [Status::Critical, Status::Warning] {
        let names: Vec<&str> = rows
            .iter()
            .filter(|r| r.judged.status == status)
            .map(|r| r.name.as_str())
            .collect();
        if names.is_empty() {
            continue;
        }
        let mut shown = names[..names.len().min(NAMED)].join(", ");
        if names.len() > NAMED {
            shown.push_str(&format!(" and {} more", names.len() - NAMED));
        }
        parts.push(format!(
            "{} {} ({shown})",
            names.len(),
            status.as_str().to_lowercase()
        ));
    }
    let ok = rows
        .iter()
        .filter(|r| r.judged.status == Status::Ok)
        .count();
    parts.push(format!("{ok} OK"));
    format!(
        "{} session{}: {}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        parts.join(", ")
    )
}

/// Text from anywhere made safe for a plugin's output: no control characters, no `|` (which
/// starts the performance data).
fn plain(text: &str) -> String {
    strip_controls(text).replace('|', "/")
}

fn as_plugin_text(rows: &[Judgement], status: Status, elapsed: Duration, a: &CheckArgs) -> String {
    let mut text = format!(
        "SUGAR {status} - {} | {}={:.3}s;;;0;",
        plain(&summary(rows)),
        perf_label("check_latency"),
        elapsed.as_secs_f64()
    );
    // The sessions that are not OK, worst first, in file order within a status.
    let mut bad: Vec<&Judgement> = rows
        .iter()
        .filter(|r| r.judged.status != Status::Ok)
        .collect();
    bad.sort_by_key(|r| std::cmp::Reverse(r.judged.status));
    for r in &bad {
        text.push_str(&format!(
            "\n{} {}: {}",
            r.judged.status,
            r.name,
            plain(&r.judged.reason)
        ));
    }
    let ok = rows.len() - bad.len();
    let mut perf = Vec::new();
    for r in rows {
        if let Some(left) = r.judged.left {
            // Lower is worse: the thresholds are ranges `N:` (alert below N).
            perf.push(format!(
                "{}={}s;{}:;{}:;0;",
                perf_label(&format!("{}_left", r.name)),
                left.num_seconds().max(0),
                a.warn.num_seconds(),
                a.crit.num_seconds()
            ));
        }
        if let Some(latency) = r.latency {
            perf.push(format!(
                "{}={:.3}s;;;0;",
                perf_label(&format!("{}_latency", r.name)),
                latency.as_secs_f64()
            ));
        }
    }
    let ok_line = if bad.is_empty() {
        format!("{ok} OK")
    } else {
        format!("and {ok} OK")
    };
    text.push('\n');
    text.push_str(&ok_line);
    if !perf.is_empty() {
        text.push_str(" | ");
        text.push_str(&perf.join("\n"));
    }
    text
}

fn as_json(rows: &[Judgement], status: Status, elapsed: Duration) -> String {
    let profiles: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "status": r.judged.status.as_str(),
                "state": r.state,
                "reason": strip_controls(&r.judged.reason),
                "left_s": r.judged.left.map(|l| l.num_seconds()),
                "latency_ms": r.latency.map(|l| l.as_millis() as u64),
                "user_name": r.report.as_ref().map(|r| &r.user_name),
                "full_name": r.report.as_ref().map(|r| &r.full_name),
                "admin": r.report.as_ref().map(|r| r.admin),
                "flavor": r.report.as_ref().map(|r| &r.flavor),
                "version": r.report.as_ref().map(|r| &r.version),
                "clock_skew_s": r.report.as_ref().and_then(|r| r.skew_s),
            })
        })
        .collect();
    serde_json::to_string_pretty(&json!({
        "status": status.as_str(),
        "code": status.code(),
        "summary": summary(rows),
        "check_latency_s": elapsed.as_secs_f64(),
        "profiles": profiles,
    }))
    .expect("json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn row(name: &str, status: Status, left_s: Option<i64>) -> Judgement {
        Judgement {
            name: name.into(),
            judged: Judged {
                status,
                reason: "because | of \x1b[31mthis".to_string(),
                left: left_s.map(TimeDelta::seconds),
            },
            state: "active",
            latency: Some(Duration::from_millis(12)),
            report: None,
        }
    }

    fn args() -> CheckArgs {
        CheckArgs {
            names: vec![],
            all: true,
            tags: vec![],
            warn: TimeDelta::minutes(10),
            crit: TimeDelta::minutes(2),
            offline: false,
            require_active: false,
            json: false,
        }
    }

    #[test]
    fn the_plugin_output_follows_the_guidelines() {
        let rows = vec![
            row("acme", Status::Ok, Some(3500)),
            row("beta", Status::Critical, Some(60)),
            row("gamma", Status::Warning, Some(500)),
            row("idle", Status::Ok, None),
        ];
        let status = worst(rows.iter().map(|r| &r.judged));
        let text = as_plugin_text(&rows, status, Duration::from_millis(412), &args());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "SUGAR CRITICAL - 4 sessions: 1 critical (beta), 1 warning (gamma), 2 OK | 'check_latency'=0.412s;;;0;"
        );
        // Worst first; server text cannot start the performance data or reach a terminal raw.
        assert_eq!(lines[1], "CRITICAL beta: because / of this");
        assert_eq!(lines[2], "WARNING gamma: because / of this");
        assert_eq!(lines[3], "and 2 OK | 'acme_left'=3500s;600:;120:;0;");
        assert_eq!(lines[4], "'acme_latency'=0.012s;;;0;");
        assert!(lines.contains(&"'beta_left'=60s;600:;120:;0;"));
        assert!(!text.contains("idle_left"), "no session, no time left");
        assert_eq!(text.matches('|').count(), 2);
    }

    #[test]
    fn many_sessions_stay_short_on_the_first_line() {
        let rows: Vec<Judgement> = (0..300)
            .map(|i| row(&format!("p{i}"), Status::Critical, Some(1)))
            .collect();
        let first = as_plugin_text(&rows, Status::Critical, Duration::ZERO, &args())
            .lines()
            .next()
            .unwrap()
            .to_string();
        assert!(
            first.starts_with(
                "SUGAR CRITICAL - 300 sessions: 300 critical (p0, p1, p2, p3, p4 and 295 more), 0 OK |"
            ),
            "{first}"
        );
    }

    #[test]
    fn unknown_is_in_the_plugin_format_too() {
        assert_eq!(
            unknown("bad profiles file\nprofiles.toml:3:1: x | y", false),
            "SUGAR UNKNOWN - bad profiles file\nprofiles.toml:3:1: x / y"
        );
        let v: serde_json::Value = serde_json::from_str(&unknown("no", true)).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["code"].as_i64()),
            (Some("UNKNOWN"), Some(3))
        );
    }
}
