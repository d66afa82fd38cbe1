//! The binary end to end against the emulator: what a script sees.

mod common;

use assert_cmd::Command;
use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use sugar_sessions::emulator::Emulator;

struct Env {
    _dir: tempfile::TempDir,
    profiles: PathBuf,
    state: PathBuf,
}

fn env(emu: &Emulator) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[defaults]
platform = "custom_api"

[profiles.acme-prod]
url = "{acme}"
username = "integration"
password_env = "TEST_ACME_PW"
tags = ["acme", "prod"]

[profiles.acme-admin]
url = "{acme}"
username = "admin"
password_cmd = "printf '%s\n' '{admin}'"
tags = ["acme"]

[profiles.short]
url = "{short}"
username = "integration"
password = "{pw}"
tags = ["short"]

[profiles.asker]
url = "{acme}"
username = "admin"
platform = "acme_sync"
"#,
        acme = emu.url("acme"),
        short = emu.url("short"),
        admin = ADMIN_PW,
        pw = INTEGRATION_PW,
    );
    let profiles = write_profiles(dir.path(), &text);
    let state = dir.path().join("state");
    Env {
        _dir: dir,
        profiles,
        state,
    }
}

impl Env {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("sugar-sessions").unwrap();
        c.arg("--profiles")
            .arg(&self.profiles)
            .arg("--state-dir")
            .arg(&self.state);
        c.args(args);
        c.env("TEST_ACME_PW", INTEGRATION_PW);
        c.env_remove("SUGAR_SESSIONS_PROFILES")
            .env_remove("SUGAR_SESSIONS_STATE_DIR");
        c
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary off the async runtime (the emulator keeps serving meanwhile).
async fn run(mut c: Command) -> Run {
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    for secret in [INTEGRATION_PW, ADMIN_PW] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "a password was printed"
        );
    }
    run
}

fn json(text: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn by_name<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter().find(|r| r["name"] == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_status_refresh_token_logout() {
    let emu = start().await;
    let e = env(&emu);

    let r = run(e.cmd(&["login", "acme-prod", "acme-admin", "short"])).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines[0].starts_with("acme-prod: logged in; access token valid for "),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("acme-admin: logged in"));
    assert!(
        lines[2].starts_with("short: logged in; access token valid for 1m 0")
            || lines[2].contains("for 59s"),
        "{}",
        lines[2]
    );

    // The cache is private.
    let mode = std::fs::metadata(e.state.join("sessions.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let cache = std::fs::read_to_string(e.state.join("sessions.json")).unwrap();
    assert!(
        !cache.contains(INTEGRATION_PW) && !cache.contains(ADMIN_PW),
        "passwords are never written"
    );

    let r = run(e.cmd(&["status", "--json"])).await;
    assert_eq!(r.code, 0);
    let rows = json(&r.stdout);
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["acme-prod", "acme-admin", "short", "asker"],
        "file order"
    );
    let prod = by_name(&rows, "acme-prod");
    assert_eq!(prod["state"], "active");
    assert_eq!(prod["reason"], Value::Null);
    assert_eq!(prod["platform"], "custom_api");
    assert_eq!(prod["username"], "integration");
    let expires = prod["expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z'), "{expires}");
    let expires = chrono::DateTime::parse_from_rfc3339(expires).unwrap();
    let left = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!((3500..=3600).contains(&left), "{left}");
    let short = by_name(&rows, "short");
    let refresh_left =
        chrono::DateTime::parse_from_rfc3339(short["refresh_expires_at"].as_str().unwrap())
            .unwrap()
            .timestamp()
            - chrono::Utc::now().timestamp();
    assert!(
        (250..=300).contains(&refresh_left),
        "lifetimes come from the server: {refresh_left}"
    );
    assert_eq!(by_name(&rows, "asker")["state"], "logged_out");
    assert_eq!(by_name(&rows, "asker")["expires_at"], Value::Null);

    // A token for scripts: the cached one while valid.
    let first = run(e.cmd(&["token", "acme-prod"])).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let token = first.stdout.trim().to_string();
    assert!(!token.is_empty() && !token.contains(' '));
    let again = run(e.cmd(&["token", "acme-prod"])).await;
    assert_eq!(again.stdout.trim(), token);

    // Refresh by tag, JSON output.
    let r = run(e.cmd(&["refresh", "--tag", "prod", "--json"])).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    let rows = json(&r.stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], "acme-prod");
    assert_eq!(rows[0]["ok"], true);
    assert_eq!(rows[0]["state"], "active");
    // The message does not repeat the name; the expiries are fields of their own.
    assert!(
        rows[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("refreshed"),
        "{}",
        rows[0]
    );
    let expires = rows[0]["expires_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(expires).is_ok(),
        "{expires}"
    );
    assert!(rows[0]["refresh_expires_at"].as_str().is_some());
    let after = run(e.cmd(&["token", "acme-prod"])).await;
    assert_ne!(
        after.stdout.trim(),
        token,
        "the refresh rotated the access token"
    );

    // Logout of all: sessions revoked on the server and removed locally.
    let r = run(e.cmd(&["logout", "--all"])).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(
        r.stdout.lines().collect::<Vec<_>>(),
        [
            "acme-prod: logged out",
            "acme-admin: logged out",
            "short: logged out",
            "asker: no session; nothing to log out"
        ]
    );
    assert_eq!(
        emu.active_sessions("acme") + emu.active_sessions("short"),
        0
    );
    let rows = json(&run(e.cmd(&["status", "--json"])).await.stdout);
    assert!(rows.iter().all(|r| r["state"] == "logged_out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_logs_in_when_it_can_and_exits_4_when_it_cannot() {
    let emu = start().await;
    let e = env(&emu);
    let r = run(e.cmd(&["token", "short"])).await;
    assert_eq!(r.code, 0, "a non-interactive source logs in: {}", r.stderr);
    assert!(!r.stdout.trim().is_empty());

    let r = run(e.cmd(&["token", "asker"])).await;
    assert_eq!(r.code, 4);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.contains("asker: a login is needed"),
        "{}",
        r.stderr
    );

    // A login without a terminal to ask on fails for that profile only, and says why.
    let r = run(e.cmd(&["login", "asker", "short"])).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("asker: login failed: no password"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("short: logged in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_name_the_profile_and_exit_1() {
    let emu = start().await;
    let e = env(&emu);
    emu.set_maintenance("acme", true);
    let r = run(e.cmd(&["login", "--all", "--json"])).await;
    assert_eq!(r.code, 1);
    let rows = json(&r.stdout);
    let prod = by_name(&rows, "acme-prod");
    assert_eq!(prod["ok"], false);
    assert_eq!(prod["state"], "error");
    assert!(
        prod["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 401 need_login")
    );
    assert_eq!(
        by_name(&rows, "acme-admin")["ok"],
        true,
        "admins log in during maintenance"
    );
    let status = json(&run(e.cmd(&["status", "--json"])).await.stdout);
    let reason = by_name(&status, "acme-prod")["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("maintenance mode"), "{reason}");

    // Refresh without a session.
    let r = run(e.cmd(&["refresh", "asker"])).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout.trim(),
        "asker: refresh failed: no session: log in first"
    );
}

#[tokio::test]
async fn usage_errors_exit_2_and_do_nothing() {
    let emu = start().await;
    let e = env(&emu);
    let r = run(e.cmd(&["login", "nope", "acme-prod"])).await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown profile nope"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("known: acme-prod, acme-admin, short, asker")
    );
    assert!(emu.requests().is_empty(), "nothing was sent");
    assert!(!e.state.join("sessions.json").exists());
    // A typo gets the closest names, not the whole file.
    let r = run(e.cmd(&["login", "acme"])).await;
    assert!(
        r.stderr.contains("(did you mean acme-prod or acme-admin?)"),
        "{}",
        r.stderr
    );
    let r = run(e.cmd(&["login", "acme-prd", "shrot"])).await;
    assert!(
        r.stderr
            .contains("acme-prd: did you mean acme-prod?; shrot: did you mean short?"),
        "{}",
        r.stderr
    );

    let r = run(e.cmd(&["login"])).await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--all"));

    let r = run(e.cmd(&["logout", "--tag", "nosuchtag"])).await;
    assert_eq!(r.code, 2);

    let r = run(e.cmd(&["frobnicate"])).await;
    assert_eq!(r.code, 2);

    // A broken profiles file: located errors, exit 2.
    let bad = e.profiles.parent().unwrap().join("bad.toml");
    std::fs::write(&bad, "[profiles.x]\nurl = \"ftp://a\"\nusernme = \"u\"\n").unwrap();
    let mut c = e.cmd(&["status"]);
    c.arg("--profiles").arg(&bad);
    let r = run(c).await;
    assert_eq!(r.code, 2);
    let file = bad.display().to_string();
    assert!(
        r.stderr.contains(&format!("{file}:2:7: profiles.x.url:")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("{file}:3:1: profiles.x.usernme: unknown key")),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn list_shows_profiles_in_file_order_without_network() {
    let emu = start().await;
    let e = env(&emu);
    let r = run(e.cmd(&["list"])).await;
    assert_eq!(r.code, 0);
    let names: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["acme-prod", "acme-admin", "short", "asker"]);
    assert!(r.stdout.contains("(password: env)") && r.stdout.contains("(password: prompt)"));
    let rows = json(&run(e.cmd(&["list", "--json"])).await.stdout);
    assert_eq!(rows[0]["tags"], serde_json::json!(["acme", "prod"]));
    assert!(emu.requests().is_empty());
}

/// Where the second column of a `list` or `status` line starts: after the name and its padding.
fn second_column(line: &str) -> usize {
    let name_end = line.find(' ').unwrap();
    name_end + line[name_end..].find(|c| c != ' ').unwrap()
}

#[tokio::test]
async fn long_names_neither_panic_nor_push_every_line() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let long = format!("acme-{}", "x".repeat(123));
    assert_eq!(long.len(), 128, "the longest name a profiles file may have");
    let text = format!(
        "[defaults]\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\n\n\
         [profiles.short]\nurl = \"{short}\"\n\n[profiles.{long}]\nurl = \"{short}\"\nplatform = \"other_api\"\n",
        short = emu.url("short"),
    );
    let profiles = write_profiles(dir.path(), &text);
    let state = dir.path().join("state");
    // An impersonation of a user with a name far longer than any profile's, as the cache can hold
    // it (`sudo short USER` stores `short>USER`); a format-1 cache as the first release wrote it.
    let user = "u".repeat(70_000);
    std::fs::create_dir_all(&state).unwrap();
    let later = "2999-01-01T00:00:00Z";
    let cache = serde_json::json!({"version": 1, "profiles": {
        format!("short>{user}"): {"session": {
            "access_token": "acc-1", "obtained_at": "2026-01-01T00:00:00Z", "expires_at": later,
            "platform": "custom_api", "username": user, "url": emu.url("short")},
        "updated_at": "2026-01-01T00:00:00Z"}}});
    std::fs::write(state.join("sessions.json"), cache.to_string()).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(
        state.join("sessions.json"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let cmd = |args: &[&str]| {
        let mut c = Command::cargo_bin("sugar-sessions").unwrap();
        c.arg("--profiles")
            .arg(&profiles)
            .arg("--state-dir")
            .arg(&state)
            .args(args);
        c
    };

    let r = run(cmd(&["list"])).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("short "), "{}", lines[0]);
    // The short name's columns are not pushed out by the long one; the long one's line just
    // starts later.
    assert!(second_column(lines[0]) <= 42, "{}", lines[0]);
    assert!(
        lines[1].starts_with(&format!("{long}  http://")),
        "{}",
        lines[1]
    );

    let r = run(cmd(&["status"])).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(lines[0].starts_with("short "), "{}", lines[0]);
    assert!(second_column(lines[0]) <= 42, "{}", lines[0]);
    assert!(
        lines[1].starts_with(&format!("short>{user}  active")),
        "{}",
        &lines[1][..200]
    );
    assert!(
        lines[2].starts_with(&format!("{long}  logged out")),
        "{}",
        lines[2]
    );
}

/// The cache's entries by the profile that last wrote them (the cache keys them by identity).
fn cache_entries(state: &Path) -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(state.join("sessions.json")).unwrap();
    let v: Value = serde_json::from_str(&text).expect("the cache always parses");
    assert_eq!(v["version"], 2);
    v["sessions"]
        .as_object()
        .unwrap()
        .values()
        .map(|e| (e["profile"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_processes_do_not_lose_each_others_sessions() {
    let emu = start().await;
    let e = env(&emu);
    for round in 0..5 {
        let a = run(e.cmd(&["login", "acme-prod"]));
        let b = run(e.cmd(&["login", "acme-admin"]));
        let c = run(e.cmd(&["refresh", "short"]));
        let (a, b, _c) = tokio::join!(a, b, c);
        assert_eq!(
            (a.code, b.code),
            (0, 0),
            "round {round}: {} {}",
            a.stdout,
            b.stdout
        );
        let entries = cache_entries(&e.state);
        for name in ["acme-prod", "acme-admin"] {
            assert!(
                entries[name]["session"].is_object(),
                "round {round}: {name} lost"
            );
        }
    }
    // Every cached refresh token is the live one on the server.
    let r = run(e.cmd(&["refresh", "acme-prod", "acme-admin"])).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_refreshing_one_profile_send_one_refresh() {
    let emu = start().await;
    let e = env(&emu);
    assert_eq!(run(e.cmd(&["login", "acme-prod"])).await.code, 0);
    emu.set_latency("acme", std::time::Duration::from_millis(400));
    emu.clear_requests();
    let (a, b) = tokio::join!(
        run(e.cmd(&["refresh", "acme-prod"])),
        run(e.cmd(&["refresh", "acme-prod"]))
    );
    assert_eq!(
        (a.code, b.code),
        (0, 0),
        "{}{}{}{}",
        a.stdout,
        a.stderr,
        b.stdout,
        b.stderr
    );
    let refreshes = emu
        .requests()
        .iter()
        .filter(|r| r.grant_type.as_deref() == Some("refresh_token"))
        .count();
    assert_eq!(
        refreshes, 1,
        "one refresh request; the other process used its result"
    );
    let both = format!("{}{}", a.stdout, b.stdout);
    assert!(
        both.contains("acme-prod: refreshed by another process just now"),
        "{both}"
    );
    emu.set_latency("acme", std::time::Duration::ZERO);
    let r = run(e.cmd(&["refresh", "acme-prod"])).await;
    assert_eq!(r.code, 0, "the session still works: {}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_due_refreshes_exactly_the_sessions_that_are_due() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[defaults]\nplatform = \"custom_api\"\nusername = \"integration\"\npassword = \"{pw}\"\n\
         [profiles.due]\nurl = \"{acme}\"\nrefresh_before_s = 3600\n\
         [profiles.fresh]\nurl = \"{short}\"\n\
         [profiles.manual]\nurl = \"{short}\"\nplatform = \"mobile\"\nrefresh_before_s = 3600\nauto_refresh = false\n",
        pw = INTEGRATION_PW,
        acme = emu.url("acme"),
        short = emu.url("short"),
    );
    let e = Env {
        profiles: write_profiles(dir.path(), &text),
        state: dir.path().join("state"),
        _dir: dir,
    };
    assert_eq!(run(e.cmd(&["login", "--all"])).await.code, 0);
    emu.clear_requests();
    let r = run(e.cmd(&["refresh", "--due"])).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stdout);
    assert!(lines[0].starts_with("due: refreshed"), "{}", lines[0]);
    assert_eq!(emu.requests().len(), 1);

    // `token` refreshes a due session before handing out its token.
    let before = cache_entries(&e.state)["due"]["session"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = run(e.cmd(&["token", "due"])).await;
    assert_eq!(r.code, 0);
    assert_ne!(r.stdout.trim(), before);
    // ...but not one that is not due.
    let fresh = cache_entries(&e.state)["fresh"]["session"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(run(e.cmd(&["token", "fresh"])).await.stdout.trim(), fresh);
    // Nothing due: said (a cron job's mail tells it ran), `[]` in JSON.
    let r = run(e.cmd(&["refresh", "--due", "fresh", "manual"])).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "nothing due\n"));
    let r = run(e.cmd(&["refresh", "--due", "fresh", "--json"])).await;
    assert!(json(&r.stdout).is_empty(), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_sudo_from_the_shell() {
    let emu = start().await;
    let e = env(&emu);
    assert_eq!(
        run(e.cmd(&["login", "acme-admin", "acme-prod"])).await.code,
        0
    );

    let r = run(e.cmd(&["check", "acme-admin", "acme-prod", "--json"])).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (doc["status"].as_str(), doc["code"].as_i64()),
        (Some("OK"), Some(0))
    );
    let rows = doc["profiles"].as_array().unwrap().clone();
    assert_eq!(rows[0]["name"], "acme-prod", "file order");
    assert_eq!(rows[0]["full_name"], "Integration User");
    assert_eq!(rows[0]["admin"], false);
    assert_eq!(rows[1]["full_name"], "Administrator");
    assert_eq!(rows[1]["admin"], true);
    assert_eq!(rows[1]["version"], "12.0.0");
    assert!(rows[1]["clock_skew_s"].as_i64().unwrap().abs() <= 2);

    let r = run(e.cmd(&["sudo", "acme-admin", "integration"])).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout
            .starts_with("acme-admin>integration: impersonating integration")
    );
    let r = run(e.cmd(&["sudo", "acme-prod", "admin"])).await;
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("HTTP 403 not_authorized"), "{}", r.stdout);

    // The impersonation is a row of its own: status, token, logout address it by name.
    let rows = json(&run(e.cmd(&["status", "--json"])).await.stdout);
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "acme-prod",
            "acme-admin",
            "acme-admin>integration",
            "short",
            "asker"
        ]
    );
    assert_eq!(rows[2]["username"], "integration");
    assert_eq!(rows[2]["refresh_expires_at"], Value::Null);
    let token = run(e.cmd(&["token", "acme-admin>integration"])).await;
    assert_eq!(token.code, 0, "{}", token.stderr);
    let r = run(e.cmd(&["logout", "acme-admin>integration"])).await;
    assert_eq!(r.stdout.trim(), "acme-admin>integration: logged out");
    let rows = json(&run(e.cmd(&["status", "--json"])).await.stdout);
    assert_eq!(rows.len(), 4, "gone from the list once logged out");
}

#[tokio::test]
async fn list_warns_of_platforms_that_end_other_sessions() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[defaults]\nusername = \"integration\"\n\
         [profiles.web]\nurl = \"{acme}\"\nplatform = \"base\"\n\
         [profiles.sync-a]\nurl = \"{acme}\"\n\
         [profiles.sync-b]\nurl = \"{acme}\"\nclient_id = \"acme_client\"\n\
         [profiles.alone]\nurl = \"{acme}\"\nplatform = \"acme_sync\"\n",
        acme = emu.url("acme"),
    );
    let e = Env {
        profiles: write_profiles(dir.path(), &text),
        state: dir.path().join("state"),
        _dir: dir,
    };
    let r = run(e.cmd(&["list"])).await;
    assert_eq!(r.code, 0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("web "));
    assert!(
        lines[1].trim_start().starts_with(
            "warning: platform base: a login here logs integration out of Sugar's web UI"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "warning: sync-b also logs in as integration on this instance and platform custom_api"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("warning: sync-a also logs in as integration")
    );
    let rows = json(&run(e.cmd(&["list", "--json"])).await.stdout);
    assert_eq!(rows[3]["name"], "alone");
    assert_eq!(rows[3]["warnings"], serde_json::json!([]));
    assert_eq!(rows[0]["warnings"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_command_serves_https_and_writes_matching_profiles() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("demo.toml");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("sugar-sessions"))
        .args(["emulator", "--tls", "--write-profiles"])
        .arg(&profiles)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("Ctrl-C stops the emulator") {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        printed.push_str(&line);
    }
    assert!(
        printed.starts_with("Sugar emulator listening on https://127.0.0.1:"),
        "{printed}"
    );
    assert!(printed.contains("user integration"), "{printed}");
    let text = std::fs::read_to_string(&profiles).unwrap();
    assert!(text.contains("ca_cert = "), "{text}");
    assert!(text.contains("url = \"https://127.0.0.1:"), "{text}");
    let mode = std::fs::metadata(&profiles).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "it holds plain demo passwords");
    let e = Env {
        profiles,
        state: dir.path().join("state"),
        _dir: dir,
    };
    let r = run(e.cmd(&["login", "acme-prod", "umbrella"])).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("acme-prod: logged in"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("umbrella: login failed: HTTP 422 invalid_parameter"),
        "{}",
        r.stdout
    );
    // The file exists now: a second emulator refuses to overwrite it, unless --force.
    let before = std::fs::read(&e.profiles).unwrap();
    let again = std::process::Command::new(assert_cmd::cargo::cargo_bin("sugar-sessions"))
        .args(["emulator", "--write-profiles"])
        .arg(&e.profiles)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        said.contains("exists: pass --force to replace it"),
        "{said}"
    );
    assert_eq!(std::fs::read(&e.profiles).unwrap(), before);
    let mut forced = std::process::Command::new(assert_cmd::cargo::cargo_bin("sugar-sessions"))
        .args(["emulator", "--force", "--write-profiles"])
        .arg(&e.profiles)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(forced.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("Wrote a profiles file") {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        printed.push_str(&line);
    }
    let _ = forced.kill();
    let _ = forced.wait();
    assert!(printed.contains("Wrote a profiles file"), "{printed}");
    assert_ne!(std::fs::read(&e.profiles).unwrap(), before, "replaced");
}

#[test]
fn help_describes_every_option_and_no_option_a_command_does_not_read() {
    let bin = assert_cmd::cargo::cargo_bin("sugar-sessions");
    let help = |args: &[&str]| {
        let out = std::process::Command::new(&bin)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    for command in ["list", "status", "sudo", "login"] {
        let text = help(&[command, "-h"]);
        let json = text
            .lines()
            .find(|l| l.trim_start().starts_with("--json"))
            .unwrap_or_else(|| panic!("{command} has --json\n{text}"));
        assert!(
            json.trim_start().trim_start_matches("--json").trim().len() > 10,
            "{command}: --json is described\n{text}"
        );
    }
    let demo = help(&["demo", "--help"]);
    assert!(
        !demo.contains("--profiles") && !demo.contains("--state-dir"),
        "{demo}"
    );
    assert!(demo.contains("--ascii"), "{demo}");
    let emulator = help(&["emulator", "--help"]);
    assert!(
        !emulator.contains("--profiles") && !emulator.contains("--lock-timeout"),
        "{emulator}"
    );
    // An option set through the environment is not shown as one to give.
    let out = std::process::Command::new(&bin)
        .arg("token")
        .env("SUGAR_SESSIONS_PROFILES", "/nonexistent/p.toml")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("Usage: sugar-sessions token <NAME>"),
        "{said}"
    );
    // The environment still names the file.
    let out = std::process::Command::new(&bin)
        .arg("list")
        .env("SUGAR_SESSIONS_PROFILES", "/nonexistent/p.toml")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.starts_with("/nonexistent/p.toml: no profiles file here yet"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_refuses_what_changes_or_reveals_sessions_and_names_where_it_came_from() {
    let emu = start().await;
    let e = env(&emu);
    let r = run(e.cmd(&["login", "acme-prod"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sent = emu.requests().len();
    let refused: [&[&str]; 9] = [
        &["login", "short"],
        &["logout", "acme-prod"],
        &["refresh", "acme-prod"],
        &["refresh", "--due"],
        &["sudo", "acme-admin", "jim"],
        &["token", "acme-prod"],
        &["exec", "acme-prod", "--", "true"],
        &["api", "acme-prod", "GET", "/me"],
        &["refresh", "--all"],
    ];
    for args in refused {
        let r = run(e.cmd(&[&["--read-only"], args].concat())).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        let word = if args[1] == "--due" {
            "refresh --due"
        } else {
            args[0]
        };
        assert_eq!(
            r.stderr,
            format!(
                "sugar-sessions: {word} refused: read-only mode (set by --read-only); it would \
                 change or reveal a session (list, status and check work)\n"
            ),
            "{args:?}"
        );
    }
    assert_eq!(emu.requests().len(), sent, "nothing was sent");
    // Reading works: list, status, a live check.
    for args in [
        &["--read-only", "list"][..],
        &["--read-only", "status"],
        &["--read-only", "check", "acme-prod"],
    ] {
        let r = run(e.cmd(args)).await;
        assert_eq!(r.code, 0, "{args:?}: {}{}", r.stdout, r.stderr);
    }
    // From the file's [defaults]: the message names it and its path.
    let text = std::fs::read_to_string(&e.profiles).unwrap();
    let text = text.replace("[defaults]\n", "[defaults]\nread_only = true\n");
    std::fs::write(&e.profiles, text).unwrap();
    let r = run(e.cmd(&["token", "acme-prod"])).await;
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        format!(
            "sugar-sessions: token refused: read-only mode (set by read_only = true in [defaults] \
             of {}); it would change or reveal a session (list, status and check work)\n",
            e.profiles.display()
        )
    );
    let r = run(e.cmd(&["status", "--json"])).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// `list --origin` through the binary, with a catalogue included through `~/` (HOME set for the
/// binary alone) and completed by an overlay; `list` without it is unchanged.
#[test]
fn list_origin_names_the_file_and_line_of_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let conf = home.join(".config/sugar-sessions/conf.d");
    std::fs::create_dir_all(&conf).unwrap();
    for d in [dir.path().to_path_buf(), home.clone(), conf.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let clients = conf.join("clients.toml");
    std::fs::write(
        &clients,
        "[defaults]\nplatform = \"team_api\"\n\n[profiles.acme]\nurl = \"https://acme.example.com\"\ntags = [\"client\"]\n",
    )
    .unwrap();
    std::fs::set_permissions(&clients, std::fs::Permissions::from_mode(0o644)).unwrap();
    let profiles = write_profiles(
        dir.path(),
        "include = [\"~/.config/sugar-sessions/conf.d/*.toml\"]\n\n\
         [profiles.acme]\nusername = \"jim\"\npassword_env = \"ACME_PW\"\n",
    );
    let list = |args: &[&str]| {
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("sugar-sessions"))
            .arg("--profiles")
            .arg(&profiles)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("list")
            .args(args)
            .env("HOME", &home)
            .env_remove("SUGAR_SESSIONS_PROFILES")
            .env_remove("SUGAR_SESSIONS_STATE_DIR")
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    let (p, c) = (profiles.display(), clients.display());
    assert_eq!(
        list(&["--origin"]),
        format!(
            "acme  https://acme.example.com  jim on team_api (password: env)  [client]\n      \
             from: url={c}:5 username={p}:4 password_env={p}:5 platform={c}:2 tags={c}:6\n"
        )
    );
    assert_eq!(
        list(&[]),
        "acme  https://acme.example.com  jim on team_api (password: env)  [client]\n"
    );
    let rows = json(&list(&["--json", "--origin"]));
    assert_eq!(
        rows[0]["origin"],
        serde_json::json!({
            "url": format!("{c}:5"), "username": format!("{p}:4"),
            "password_env": format!("{p}:5"), "platform": format!("{c}:2"),
            "tags": format!("{c}:6"),
        })
    );
    assert!(json(&list(&["--json"]))[0].get("origin").is_none());
}

#[test]
fn list_through_the_profiles_snapshot_prints_what_the_full_load_prints() {
    // Every kind of password source, tags, a profile that does not check certificates, the
    // platform guard's two warnings, a name longer than the name column.
    let dir = tempfile::tempdir().unwrap();
    let text = "[defaults]\nusername = \"integration\"\nplatform = \"custom_api\"\n\
         [profiles.web]\nurl = \"https://acme.example.com/sugar/\"\nplatform = \"base\"\npassword_env = \"PW\"\n\
         [profiles.sync-a]\nurl = \"https://ACME.example.com/sugar\"\npassword_cmd = \"pass show a\"\ntags = [\"acme\", \"prod\"]\n\
         [profiles.sync-b]\nurl = \"https://acme.example.com/sugar\"\nclient_id = \"acme_client\"\npassword_keyring = true\n\
         [profiles.a-profile-name-well-beyond-forty-characters-long]\nurl = \"https://b.example.com\"\n\
         [profiles.zurich]\nurl = \"https://c.example.com:8443\"\ninsecure = true\ntags = [\"ch\"]\n";
    let profiles = write_profiles(dir.path(), text);
    let state = dir.path().join("state");
    let list = |args: &[&str]| {
        let out = Command::cargo_bin("sugar-sessions")
            .unwrap()
            .arg("--profiles")
            .arg(&profiles)
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .env_remove("SUGAR_SESSIONS_PROFILES")
            .env_remove("SUGAR_SESSIONS_STATE_DIR")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    for args in [&["list"][..], &["list", "--json"]] {
        // A state directory of the user's: where the snapshot is kept.
        std::fs::remove_dir_all(&state).ok();
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        let full = list(args);
        let snapshots = std::fs::read_dir(&state)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".snapshot")
            })
            .count();
        assert_eq!(snapshots, 1, "the full load wrote the snapshot");
        assert_eq!(list(args), full, "{args:?}");
        assert!(full.contains("sync-b also logs in"), "{full}");
        let insecure = full.contains("INSECURE (certificates not checked)")
            || full.contains(r#""insecure": true"#);
        assert!(full.contains("zurich") && insecure, "{full}");
    }
}
