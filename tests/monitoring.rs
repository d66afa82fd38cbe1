//! `check` as a monitoring plugin and `status --format prometheus`, through the binary against
//! the emulator: exit statuses 0/1/2/3, the plugin's output, and the exposition checked by
//! Prometheus' own `promtool` (`.ci/run` installs it).

mod common;

use assert_cmd::Command;
use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use sugar_sessions::emulator::Emulator;

struct Env {
    _dir: tempfile::TempDir,
    profiles: PathBuf,
    state: PathBuf,
}

/// `prod` and `short` (60 s / 300 s lifetimes) log in with a password; `idle` never does.
fn env(emu: &Emulator) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[defaults]\nplatform = \"custom_api\"\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\n\
         [profiles.prod]\nurl = \"{acme}\"\n\
         [profiles.short]\nurl = \"{short}\"\n\
         [profiles.idle]\nurl = \"{acme}\"\nplatform = \"acme_sync\"\nusername = \"admin\"\n",
        acme = emu.url("acme"),
        short = emu.url("short"),
    );
    let profiles = write_profiles(dir.path(), &text);
    let state = dir.path().join("state");
    Env {
        _dir: dir,
        profiles,
        state,
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Env {
    async fn run(&self, args: &[&str]) -> Run {
        let mut c = Command::cargo_bin("sugar-sessions").unwrap();
        c.arg("--profiles")
            .arg(&self.profiles)
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .env_remove("SUGAR_SESSIONS_PROFILES")
            .env_remove("SUGAR_SESSIONS_STATE_DIR");
        let out = tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap();
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        };
        assert!(
            !run.stdout.contains(INTEGRATION_PW) && !run.stderr.contains(INTEGRATION_PW),
            "a password was printed"
        );
        run
    }
}

fn first_line(r: &Run) -> &str {
    r.stdout.lines().next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_is_ok_warning_or_critical_by_the_time_a_session_has_left() {
    let emu = start().await;
    let e = env(&emu);
    assert_eq!(e.run(&["login", "prod", "short"]).await.code, 0);

    // OK: two weeks left.
    let r = e.run(&["check", "prod"]).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        first_line(&r).starts_with("SUGAR OK - 1 session: 1 OK | 'check_latency'="),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("'prod_left'="), "{}", r.stdout);
    assert!(r.stdout.contains("s;600:;120:;0;"), "{}", r.stdout);
    assert!(r.stdout.contains("'prod_latency'="), "{}", r.stdout);

    // WARNING: `short`'s refresh token ends in 5 minutes, within the 10 of --warn.
    let r = e.run(&["check", "prod", "short"]).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        first_line(&r).starts_with("SUGAR WARNING - 2 sessions: 1 warning (short), 1 OK |"),
        "{}",
        r.stdout
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[1].starts_with("WARNING short: the refresh token expires in 4m"),
        "{}",
        r.stdout
    );
    assert!(lines[2].starts_with("and 1 OK | "), "{}", r.stdout);

    // CRITICAL: within --crit.
    let r = e
        .run(&["check", "short", "--warn", "1h", "--crit", "6m"])
        .await;
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(first_line(&r).starts_with("SUGAR CRITICAL - 1 session: 1 critical (short), 0 OK"));
    assert!(r.stdout.contains("'short_left'="), "{}", r.stdout);
    assert!(r.stdout.contains(";3600:;360:;0;"), "{}", r.stdout);

    // The same as JSON.
    let r = e.run(&["check", "prod", "short", "--json"]).await;
    assert_eq!(r.code, 1);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["status"], "WARNING");
    assert_eq!(doc["code"], 1);
    let short = &doc["profiles"][1];
    assert_eq!(
        (short["name"].as_str(), short["status"].as_str()),
        (Some("short"), Some("WARNING"))
    );
    assert!(short["left_s"].as_i64().unwrap() <= 300);
    assert_eq!(short["full_name"], "Integration User");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_is_critical_for_sessions_that_ended_or_that_sugar_rejects() {
    let emu = start().await;
    let e = env(&emu);
    assert_eq!(e.run(&["login", "prod", "short"]).await.code, 0);

    // Sugar no longer knows the session (its clock went past the refresh token's expiry), but the
    // cache believes it has days left: only the live check can tell.
    emu.advance_clock(Duration::from_secs(20 * 86_400));
    let r = e.run(&["check", "prod"]).await;
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stdout
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("CRITICAL prod:"),
        "{}",
        r.stdout
    );

    // From the cache alone, nothing is sent; a session the cache knows ended is critical.
    emu.clear_requests();
    let r = e.run(&["check", "prod", "--offline"]).await;
    assert!(emu.requests().is_empty(), "--offline sent a request");
    assert_eq!(r.code, 2, "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_profile_pages_only_when_named_or_required() {
    let emu = start().await;
    let e = env(&emu);
    assert_eq!(e.run(&["login", "prod"]).await.code, 0);

    // `idle` and `short` were never logged in: nobody is paged for them with --all.
    let r = e.run(&["check", "--all"]).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        first_line(&r).starts_with("SUGAR OK - 3 sessions: 3 OK"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("idle_left"), "no session, no time left");

    let r = e.run(&["check", "--all", "--require-active"]).await;
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        first_line(&r).starts_with("SUGAR CRITICAL - 3 sessions: 2 critical (short, idle), 1 OK"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("CRITICAL idle: not logged in"),
        "{}",
        r.stdout
    );

    // Named: required.
    let r = e.run(&["check", "idle", "--offline"]).await;
    assert_eq!(r.code, 2, "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_is_unknown_when_it_cannot_be_made() {
    let emu = start().await;
    let e = env(&emu);

    // Bad arguments, clap's own errors included: 3, in the plugin's format.
    for args in [
        &["check", "--warn", "soon", "prod"][..],
        &["check", "--no-such-flag"],
        &["check", "prod", "--warn", "1m", "--crit", "5m"],
        &["check", "nobody"],
    ] {
        let r = e.run(args).await;
        assert_eq!(r.code, 3, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(
            first_line(&r).starts_with("SUGAR UNKNOWN - "),
            "{args:?}: {}",
            r.stdout
        );
    }
    let r = e.run(&["check", "--json", "--warn", "x"]).await;
    assert_eq!(r.code, 3);
    let doc: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(doc["status"], "UNKNOWN");

    // A bad profiles file.
    std::fs::write(&e.profiles, "[profiles.prod]\nurl = 3\n").unwrap();
    let r = e.run(&["check", "--all"]).await;
    assert_eq!(r.code, 3, "{}", r.stdout);
    assert!(
        first_line(&r).starts_with("SUGAR UNKNOWN - "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("profiles.toml:2:"),
        "located: {}",
        r.stdout
    );

    // Other commands keep their usage status.
    assert_eq!(e.run(&["status", "--no-such-flag"]).await.code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_in_the_prometheus_format_passes_promtool() {
    let emu = start().await;
    let e = env(&emu);
    assert_eq!(e.run(&["login", "prod", "short"]).await.code, 0);
    let r = e.run(&["status", "--format", "prometheus"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    promtool(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{}", r.stdout));
    let host = emu.url("acme");
    let instance = host.trim_start_matches("http://");
    for line in [
        "# TYPE sugar_session_up gauge".to_string(),
        format!(
            "sugar_session_up{{platform=\"custom_api\",profile=\"prod\",sugar_instance=\"{instance}\",user=\"integration\"}} 1"
        ),
        format!(
            "sugar_session_state{{platform=\"acme_sync\",profile=\"idle\",state=\"logged_out\",sugar_instance=\"{instance}\",user=\"admin\"}} 1"
        ),
        format!(
            "sugar_session_state{{platform=\"acme_sync\",profile=\"idle\",state=\"active\",sugar_instance=\"{instance}\",user=\"admin\"}} 0"
        ),
        "sugar_sessions_profiles 3".to_string(),
        format!(
            "sugar_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(r.stdout.contains(&line), "missing {line}\n{}", r.stdout);
    }
    assert!(
        r.stdout
            .contains("sugar_session_refresh_expiry_timestamp_seconds{")
    );
    assert!(
        r.stdout
            .contains("sugar_session_last_success_timestamp_seconds{")
    );
    // `--json` is `--format json`.
    let a = e.run(&["status", "--json"]).await;
    let b = e.run(&["status", "--format", "json"]).await;
    let (a, b): (Value, Value) = (
        serde_json::from_str(&a.stdout).unwrap(),
        serde_json::from_str(&b.stdout).unwrap(),
    );
    assert_eq!(a.as_array().unwrap().len(), 3);
    assert_eq!(a[0]["name"], b[0]["name"]);
}
