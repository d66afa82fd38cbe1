//! Secrets stay secret: the real binary, logging at its most verbose, through login, refresh,
//! token, logout and a failed login. No password, client secret or token may appear in the log,
//! in stderr, in stdout (except `token`'s own output) or in any file of the state directory but
//! the token cache.

mod common;

use assert_cmd::Command;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use sugar_sessions::emulator::Emulator;

const WRONG_PW: &str = "Wrong-Pw-5b1e93";
const CLIENT_SECRET: &str = "client-secret-9f";

struct Env {
    _dir: tempfile::TempDir,
    profiles: PathBuf,
    state: PathBuf,
}

fn env(emu: &Emulator) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[profiles.acme-prod]
url = "{acme}"
username = "integration"
password = "{pw}"
platform = "custom_api"
client_id = "acme_client"
client_secret = "{CLIENT_SECRET}"

[profiles.acme-admin]
url = "{acme}"
username = "admin"
password_env = "TEST_ADMIN_PW"
platform = "acme_sync"

[profiles.wrong]
url = "{acme}"
username = "integration"
password_env = "TEST_WRONG_PW"
platform = "acme_sync"
"#,
        acme = emu.url("acme"),
        pw = INTEGRATION_PW,
    );
    let mut text = text;
    if let Some(pem) = emu.ca_pem() {
        std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
        text.push_str("\n[defaults]\nca_cert = \"ca.pem\"\n");
    }
    let profiles = write_profiles(dir.path(), &text);
    let state = dir.path().join("state");
    Env {
        _dir: dir,
        profiles,
        state,
    }
}

struct Out {
    args: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Env {
    async fn run(&self, args: &[&str], log: &str) -> Out {
        let mut c = Command::cargo_bin("sugar-sessions").unwrap();
        c.arg("--profiles")
            .arg(&self.profiles)
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .env("SUGAR_SESSIONS_LOG", log)
            .env("TEST_ADMIN_PW", ADMIN_PW)
            .env("TEST_WRONG_PW", WRONG_PW)
            .env_remove("SUGAR_SESSIONS_PROFILES")
            .env_remove("SUGAR_SESSIONS_STATE_DIR")
            .env_remove("RUST_LOG");
        let out = tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap();
        Out {
            args: args.join(" "),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// Every token in the cache right now.
    fn cached_tokens(&self) -> BTreeSet<String> {
        let text = std::fs::read_to_string(self.state.join("sessions.json")).unwrap();
        let mut found = BTreeSet::new();
        collect_tokens(&serde_json::from_str::<Value>(&text).unwrap(), &mut found);
        found
    }
}

fn collect_tokens(v: &Value, found: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if k.ends_with("_token") => {
                        found.insert(s.clone());
                    }
                    _ => collect_tokens(v, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_tokens(v, found)),
        _ => {}
    }
}

/// The files under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn leaks<'a>(text: &str, secrets: &'a BTreeSet<String>) -> Vec<&'a str> {
    secrets
        .iter()
        .filter(|s| text.contains(s.as_str()))
        .map(String::as_str)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_output_or_state_files_at_the_most_verbose_level() {
    no_secret_anywhere(start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_anywhere_over_tls_either() {
    let emu = Emulator::start_tls(
        world(),
        "127.0.0.1:0".parse().unwrap(),
        sugar_sessions::emulator::TlsOptions::default(),
    )
    .await
    .unwrap();
    no_secret_anywhere(emu).await;
}

async fn no_secret_anywhere(emu: Emulator) {
    let tls = emu.ca_pem().is_some();
    let e = env(&emu);
    let mut secrets: BTreeSet<String> = [INTEGRATION_PW, ADMIN_PW, WRONG_PW, CLIENT_SECRET]
        .into_iter()
        .map(String::from)
        .collect();
    let mut outs = Vec::new();
    // The dependencies asked for at trace too: they are held at debug (their trace output shows
    // protocol bytes); everything of this crate is at trace.
    let loudest = "trace,hyper=trace,hyper_util=trace,reqwest=trace,rustls=trace,h2=trace";

    let o = e.run(&["login", "acme-prod", "acme-admin"], "trace").await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    // Both profiles agree on every network setting: one HTTP client (and pool) serves them.
    let log = std::fs::read_to_string(e.state.join("sugar-sessions.log")).unwrap();
    assert_eq!(log.matches("new HTTP client").count(), 1, "{log}");
    let first = e.cached_tokens();
    assert_eq!(
        first.len(),
        6,
        "access, refresh and download tokens of two sessions"
    );
    secrets.extend(first.clone());
    outs.push(o);

    let o = e
        .run(&["refresh", "acme-prod", "acme-admin"], loudest)
        .await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let second = e.cached_tokens();
    assert!(
        second.is_disjoint(&first),
        "the refresh rotated every token"
    );
    secrets.extend(second.clone());
    outs.push(o);

    let token = e.run(&["token", "acme-prod"], "trace").await;
    assert_eq!(token.code, 0, "{}", token.stderr);
    let printed = token.stdout.trim().to_string();
    assert!(
        second.contains(&printed),
        "token prints the cached access token"
    );

    for args in [&["status", "--json"][..], &["list"][..], &["status"][..]] {
        let o = e.run(args, "trace").await;
        assert_eq!(o.code, 0, "{}", o.stderr);
        outs.push(o);
    }

    let o = e.run(&["logout", "acme-prod", "acme-admin"], "trace").await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    outs.push(o);

    let o = e.run(&["login", "wrong"], "trace").await;
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("HTTP 401 need_login"), "{}", o.stdout);
    outs.push(o);

    // What the emulator received: every refresh token sent (the cache no longer holds them all).
    for r in emu.requests() {
        secrets.extend(r.refresh_token);
    }
    assert!(secrets.len() >= 4 + 12);

    for o in &outs {
        for (what, text) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
            let found = leaks(text, &secrets);
            assert!(
                found.is_empty(),
                "`{}` {what} shows {found:?}:\n{text}",
                o.args
            );
        }
    }
    // `token` prints the access token and nothing else secret.
    let others: BTreeSet<String> = secrets.iter().filter(|s| **s != printed).cloned().collect();
    assert_eq!(token.stdout, format!("{printed}\n"));
    assert!(
        leaks(&token.stderr, &secrets).is_empty(),
        "{}",
        token.stderr
    );
    assert!(leaks(&token.stdout, &others).is_empty());

    // The state directory: the log, the lock files, ... hold nothing secret; only the cache does.
    let log_path = e.state.join("sugar-sessions.log");
    let mut checked = Vec::new();
    for file in files(&e.state) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        if name == "sessions.json" {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let found = leaks(&text, &secrets);
        assert!(found.is_empty(), "{} holds {found:?}", file.display());
        checked.push(name);
    }
    assert!(
        checked.contains(&"sugar-sessions.log".to_string()),
        "{checked:?}"
    );

    // The log is private, and it is a real log: requests, outcomes, and the libraries' own lines.
    let mode = std::fs::metadata(&log_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let log = std::fs::read_to_string(&log_path).unwrap();
    for expected in [
        "sugar-sessions started",
        "profile=acme-prod",
        "method=\"POST\"",
        "path=\"/oauth2/token\"",
        "path=\"/oauth2/logout\"",
        "status=200",
        "latency_ms=",
        "outcome=\"ok\"",
        "outcome=\"sugar\" label=\"need_login\"",
        "operation finished",
        "sending",
        "hyper_util",
        if tls { "rustls" } else { "reqwest::connect" },
    ] {
        assert!(log.contains(expected), "the log lacks {expected:?}:\n{log}");
    }
    if std::env::var_os("SHOW_LOG").is_some() {
        eprintln!("{log}");
    }
    // Held at debug: no trace lines from the libraries.
    assert!(
        !log.lines()
            .any(|l| l.contains(" TRACE ") && !l.contains("sugar_sessions")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_is_off_by_default_and_a_bad_level_is_reported() {
    let emu = start().await;
    let e = env(&emu);
    let o = e.run(&["login", "acme-prod"], "").await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(!e.state.join("sugar-sessions.log").exists());
    let o = e.run(&["status"], "sugar_sessions=loud").await;
    assert_eq!(o.code, 0);
    assert!(
        o.stderr.starts_with(
            "sugar-sessions: SUGAR_SESSIONS_LOG=\"sugar_sessions=loud\" is not a level"
        ),
        "{}",
        o.stderr
    );
    assert!(!e.state.join("sugar-sessions.log").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_password_in_a_readable_profiles_file_is_refused_with_exit_2() {
    let emu = start().await;
    let e = env(&emu);
    std::fs::set_permissions(&e.profiles, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = e.run(&["login", "acme-admin"], "").await;
    assert_eq!(o.code, 2, "{}{}", o.stdout, o.stderr);
    assert_eq!(o.stdout, "");
    assert_eq!(
        o.stderr,
        format!(
            "{p}:5:1: profiles.acme-prod.password: the file holds a plain password, and others can \
             read or change it (mode 644): run `chmod 600 {p}`, or use password_env, \
             password_cmd or password_keyring\n",
            p = e.profiles.display()
        )
    );
    assert!(emu.requests().is_empty(), "nothing was done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_planted_as_the_log_file_is_not_followed() {
    let emu = start().await;
    let e = env(&emu);
    let outside = e.profiles.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&e.state).unwrap();
    std::fs::set_permissions(&e.state, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Pointing at a file of the victim's, and at a place where none is yet.
    let victim = outside.join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let missing = outside.join("created-through-the-link");
    let log = e.state.join("sugar-sessions.log");
    for target in [&victim, &missing] {
        let _ = std::fs::remove_file(&log);
        std::os::unix::fs::symlink(target, &log).unwrap();
        let o = e.run(&["login", "acme-prod"], "debug").await;
        assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
        assert_eq!(
            o.stderr,
            format!(
                "sugar-sessions: cannot open the log file in {}: {} is a symbolic link, which is \
                 not followed; logging is off\n",
                e.state.display(),
                log.display()
            )
        );
        assert!(std::fs::symlink_metadata(&log).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "the victim was chmod-ed through the link");
        assert!(!missing.exists(), "a file was created through the link");
    }
}
