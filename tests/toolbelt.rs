//! The consultant's toolbelt through the binary against the emulator: `exec`, `api`,
//! `completions` (run by a real bash), `man`, `paths`.

mod common;

use assert_cmd::Command;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use sugar_sessions::emulator::Emulator;

struct Env {
    dir: tempfile::TempDir,
    profiles: PathBuf,
    state: PathBuf,
}

/// `prod` logs in with a password; `typed` only at a prompt.
fn env(emu: &Emulator) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[defaults]\nplatform = \"custom_api\"\nusername = \"integration\"\n\
         [profiles.prod]\nurl = \"{acme}\"\npassword = \"{INTEGRATION_PW}\"\ntags = [\"eu\", \"live\"]\n\
         [profiles.typed]\nurl = \"{acme}\"\nplatform = \"acme_sync\"\n",
        acme = emu.url("acme"),
    );
    let profiles = write_profiles(dir.path(), &text);
    let state = dir.path().join("state");
    Env {
        dir,
        profiles,
        state,
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn command(env: &Env, args: &[&str]) -> Command {
    let mut c = Command::cargo_bin("sugar-sessions").unwrap();
    c.arg("--profiles")
        .arg(&env.profiles)
        .arg("--state-dir")
        .arg(&env.state)
        .args(args)
        .env_remove("SUGAR_SESSIONS_PROFILES")
        .env_remove("SUGAR_SESSIONS_STATE_DIR")
        .env_remove("SUGAR_SESSIONS_COMPLETE");
    c
}

async fn run(env: &Env, args: &[&str]) -> Run {
    let mut c = command(env, args);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn engine(
    env: &Env,
) -> (
    sugar_sessions::runtime::Engine,
    sugar_sessions::config::Profiles,
) {
    let profiles = sugar_sessions::config::load(&env.profiles).unwrap();
    let engine = sugar_sessions::runtime::Engine::new(
        sugar_sessions::store::Store::open(&env.state).unwrap(),
        &profiles.settings,
    );
    (engine, profiles)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_the_command_with_a_token_it_made_sure_of() {
    let emu = start().await;
    let env = env(&emu);
    // Nothing cached: `exec` logs in through the password source first, stores the session, and
    // hands the command what it needs; the command's exit status is exec's.
    let r = run(
        &env,
        &[
            "exec",
            "prod",
            "--",
            "sh",
            "-c",
            "printf '%s\\n' \"$SUGAR_URL\" \"$SUGAR_TOKEN\" \"$SUGAR_TOKEN_EXPIRES\" \"$SUGAR_PLATFORM\" \"$SUGAR_PROFILE\"; exit 7",
        ],
    )
    .await;
    assert_eq!(r.code, 7, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], format!("{}/rest/v11", emu.url("acme")));
    assert!(
        chrono::DateTime::parse_from_rfc3339(lines[2]).is_ok(),
        "{}",
        lines[2]
    );
    assert_eq!(&lines[3..], ["custom_api", "prod"]);
    assert!(r.stderr.contains("prod: logged in"), "{}", r.stderr);
    // The token handed over is the stored one, and Sugar accepts it.
    let first = lines[1].to_string();
    let t = run(&env, &["token", "prod"]).await;
    assert_eq!(t.stdout.trim(), first);
    let me = run(&env, &["api", "prod", "/me"]).await;
    assert_eq!(me.code, 0, "{}", me.stderr);

    // A token with less than --min-valid left is refreshed first.
    let (engine, profiles) = engine(&env);
    let p = profiles.get("prod").unwrap().clone();
    change_entry(&engine, &p, |e| {
        let s = e.session.as_mut().unwrap();
        s.obtained_at = chrono::Utc::now() - chrono::TimeDelta::minutes(58);
        s.expires_at = chrono::Utc::now() + chrono::TimeDelta::minutes(2);
    })
    .await;
    let r = run(
        &env,
        &[
            "exec",
            "prod",
            "--min-valid",
            "5m",
            "--",
            "printenv",
            "SUGAR_TOKEN",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_ne!(r.stdout.trim(), first, "the token was refreshed");
    assert!(r.stderr.contains("refreshed"), "{}", r.stderr);
    // Enough left: handed over as it is, nothing sent.
    emu.clear_requests();
    let again = run(&env, &["exec", "prod", "--", "printenv", "SUGAR_TOKEN"]).await;
    assert_eq!(again.stdout, r.stdout);
    assert!(emu.requests().is_empty());

    // A command that does not exist: 127, said.
    let r = run(&env, &["exec", "prod", "--", "no-such-command-here"]).await;
    assert_eq!(r.code, 127);
    assert!(
        r.stderr.contains("cannot run no-such-command-here"),
        "{}",
        r.stderr
    );
    // A login needed and only a prompt to get the password from: 4, and the command never runs.
    let marker = env.dir.path().join("ran");
    let r = run(
        &env,
        &["exec", "typed", "--", "touch", marker.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(!marker.exists());
    // Without `--` there is no command.
    let r = run(&env, &["exec", "prod", "true"]).await;
    assert_eq!(r.code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_sends_one_request_and_gets_a_new_token_on_a_401() {
    let emu = start().await;
    let env = env(&emu);
    let r = run(&env, &["api", "prod", "/me"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let me: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(me["current_user"]["user_name"], "integration");

    // Another login on the same platform ends the session Sugar-side (the platform rule): the
    // cached token is refused, the refresh too, and `api` logs in again and retries once.
    let (engine, profiles) = engine(&env);
    let p = profiles.get("prod").unwrap().clone();
    let other = tempfile::tempdir().unwrap();
    let elsewhere = sugar_sessions::runtime::Engine::new(
        sugar_sessions::store::Store::open(other.path()).unwrap(),
        &profiles.settings,
    );
    let permit = elsewhere.acquire(&p).await;
    let o = elsewhere
        .execute(&p, sugar_sessions::session::Op::Login, None, permit)
        .await;
    assert!(o.ok, "{}", o.message);
    // Past the superseded token's grace.
    emu.advance_clock(std::time::Duration::from_secs(130));
    drop(engine);
    let r = run(&env, &["api", "prod", "GET", "me"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("logged in"), "{}", r.stderr);
    let statuses: Vec<u16> = emu
        .requests()
        .iter()
        .filter(|q| q.path == "/me")
        .map(|q| q.status)
        .collect();
    assert_eq!(statuses, [200, 401, 200]);

    // Sugar's error: exit 1, its label and message on stderr, the body on stdout.
    let r = run(&env, &["api", "prod", "no/such/route"]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("prod: HTTP 404 no_method: "),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("no_method"));

    // Another host is refused before anything is sent.
    emu.clear_requests();
    for path in [
        "https://evil.example.com/rest/v11/me",
        "//evil.example.com/me",
    ] {
        let r = run(&env, &["api", "prod", path]).await;
        assert_eq!(r.code, 2, "{path}");
        assert!(r.stderr.contains("refused"), "{}", r.stderr);
    }
    assert!(emu.requests().is_empty());
}

/// Asks `bash` itself to complete `line` with the script `completions bash` wrote.
fn bash_complete(env: &Env, script: &Path, line: &str) -> (Vec<String>, String) {
    let words: Vec<&str> = line.split(' ').collect();
    let program = assert_cmd::cargo::cargo_bin("sugar-sessions");
    let shell = format!(
        "source {script}\n\
         COMP_WORDS=({words})\nCOMP_CWORD={cword}\nCOMP_LINE='{line}'\nCOMP_POINT={point}\n\
         complete -p sugar-sessions >/dev/null || exit 9\n\
         func=$(complete -p sugar-sessions | sed -E 's/.* -F ([^ ]+) .*/\\1/')\n\
         $func sugar-sessions '{last}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script = script.display(),
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        cword = words.len() - 1,
        point = line.len(),
        last = words[words.len() - 1],
        prev = words[words.len().saturating_sub(2)],
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&shell)
        .current_dir(env.dir.path())
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", program.parent().unwrap().display()),
        )
        .env_remove("SUGAR_SESSIONS_PROFILES")
        .output()
        .unwrap();
    let words = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    (words, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn bash_completes_commands_flags_profile_names_and_tags_from_the_file_on_the_line() {
    let emu = start().await;
    let env = env(&emu);
    let script = env.dir.path().join("complete.bash");
    let r = run(&env, &["completions", "bash"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::fs::write(&script, &r.stdout).unwrap();
    // A profile whose password command would leave a mark if it were ever run.
    let marker = env.dir.path().join("password-cmd-ran");
    let profiles = env.profiles.display().to_string();
    std::fs::write(
        &env.profiles,
        format!(
            "{}\n[profiles.pw-cmd]\nurl = \"{}\"\npassword_cmd = \"touch {}\"\n",
            std::fs::read_to_string(&env.profiles).unwrap(),
            emu.url("acme"),
            marker.display()
        ),
    )
    .unwrap();

    let (words, _) = bash_complete(&env, &script, "sugar-sessions ex");
    assert_eq!(words, ["exec"]);
    let (words, err) = bash_complete(
        &env,
        &script,
        &format!("sugar-sessions --profiles {profiles} login "),
    );
    assert!(
        words.contains(&"prod".to_string()) && words.contains(&"pw-cmd".to_string()),
        "{words:?} {err}"
    );
    let (words, _) = bash_complete(
        &env,
        &script,
        &format!("sugar-sessions --profiles {profiles} token pr"),
    );
    assert_eq!(words, ["prod"]);
    let (words, _) = bash_complete(
        &env,
        &script,
        &format!("sugar-sessions --profiles {profiles} check --tag "),
    );
    assert_eq!(words, ["eu", "live"]);
    let (words, _) = bash_complete(
        &env,
        &script,
        &format!("sugar-sessions --profiles {profiles} api prod --pag"),
    );
    assert_eq!(words, ["--paginate"]);
    assert!(!marker.exists(), "completing ran a password command");
    // A broken profiles file: no names, and not a word on the terminal.
    std::fs::write(&env.profiles, "[profiles.acme\nurl = ").unwrap();
    let (words, err) = bash_complete(
        &env,
        &script,
        &format!("sugar-sessions --profiles {profiles} login "),
    );
    assert!(words.iter().all(|w| w != "prod"), "{words:?}");
    assert_eq!(err, "");
}

#[tokio::test]
async fn man_and_paths_describe_the_program_and_where_it_keeps_things() {
    let emu = start().await;
    let env = env(&emu);
    let r = run(&env, &["man"]).await;
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.starts_with(".ie") || r.stdout.contains(".TH sugar-sessions 1"),
        "{}",
        &r.stdout[..200]
    );
    for command in ["exec", "api", "completions", "paths"] {
        assert!(r.stdout.contains(command), "the page names {command}");
    }
    let pages = env.dir.path().join("man");
    let r = run(&env, &["man", "--out-dir", pages.to_str().unwrap()]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(pages.join("sugar-sessions.1").exists());
    assert!(pages.join("sugar-sessions-exec.1").exists());

    let r = run(&env, &["paths", "--json"]).await;
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["profiles"]["path"], env.profiles.display().to_string());
    assert_eq!(v["profiles"]["exists"], true);
    assert_eq!(v["cache"]["exists"], false);
    assert_eq!(
        v["broker_socket"]["path"],
        env.state.join("broker.sock").display().to_string()
    );
    run(&env, &["login", "prod"]).await;
    let r = run(&env, &["paths"]).await;
    let cache = r.stdout.lines().find(|l| l.starts_with("cache")).unwrap();
    assert!(cache.ends_with("sessions.json"), "{cache}");
    let log = r.stdout.lines().find(|l| l.starts_with("log")).unwrap();
    assert!(log.ends_with("(does not exist)"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_paginate_follows_next_offset_in_the_query_or_the_filter_body() {
    let emu = start().await;
    let env = env(&emu);
    let count = run(&env, &["api", "prod", "Accounts/count"]).await;
    assert_eq!(count.code, 0, "{}", count.stderr);
    let total = serde_json::from_str::<Value>(&count.stdout).unwrap()["record_count"]
        .as_u64()
        .unwrap() as usize;
    assert!(total > 100, "{total}");
    emu.clear_requests();
    let r = run(
        &env,
        &["api", "prod", "/Accounts", "-q", "max_num=50", "--paginate"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let records: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(records.len(), total);
    let mut ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "no record twice");
    let pages = emu
        .requests()
        .iter()
        .filter(|q| q.path.starts_with("/Accounts"))
        .count();
    assert_eq!(pages, total.div_ceil(50));

    // POST .../filter: the offset goes in the body, with the filter.
    let filter = r#"{"filter":[{"last_name":{"$starts":"S"}}],"max_num":7}"#;
    let count = run(
        &env,
        &[
            "api",
            "prod",
            "POST",
            "Contacts/filter/count",
            "--data",
            filter,
        ],
    )
    .await;
    let expected = serde_json::from_str::<Value>(&count.stdout).unwrap()["record_count"]
        .as_u64()
        .unwrap() as usize;
    assert!(expected > 7, "more than one page: {expected}");
    let r = run(
        &env,
        &[
            "api",
            "prod",
            "POST",
            "Contacts/filter",
            "--data",
            filter,
            "--paginate",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let records: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(records.len(), expected);
    assert!(records.iter().all(|c| {
        c["last_name"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .starts_with('s')
    }));
    // Not a list endpoint: said, exit 1.
    let r = run(&env, &["api", "prod", "me", "--paginate"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not a list endpoint"), "{}", r.stderr);
}
