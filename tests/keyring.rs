//! `password_keyring = true`: the OS keyring, from the binary. Without a Secret Service (the
//! usual case here): quick, clear failures naming the other sources; over SSH: refused without
//! trying; a keyring that never answers: the timeout, and the process still exits. With
//! `SUGAR_TEST_SECRET_SERVICE=1` (`.ci/run` sets it inside `dbus-run-session` with
//! `gnome-keyring-daemon`): a password stored with `password set --stdin`, used by a login against
//! the emulator from another process, and deleted.

mod common;
#[path = "common/pty.rs"]
mod pty;

use common::*;
use pty::Pty;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use sugar_sessions::emulator::Emulator;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// The binary with `profiles`, a state directory beside it, and an environment with no D-Bus
/// session and no SSH (what each test changes is set by it).
fn cmd(profiles: &Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("sugar-sessions"));
    c.arg("--profiles")
        .arg(profiles)
        .arg("--state-dir")
        .arg(profiles.with_file_name("state"))
        .args(args)
        .env_remove("SUGAR_SESSIONS_PROFILES")
        .env_remove("SUGAR_SESSIONS_STATE_DIR")
        .env_remove("SSH_CONNECTION")
        .stdin(std::process::Stdio::null());
    if std::env::var_os("SUGAR_TEST_SECRET_SERVICE").is_none() {
        // No session bus: none named, and no `bus` socket where a client looks for one.
        c.env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env("XDG_RUNTIME_DIR", profiles.with_file_name("runtime"));
    }
    c
}

/// Runs it off the async runtime (the emulator keeps serving), with `input` on standard input.
async fn run(mut c: std::process::Command, input: Option<&str>) -> Run {
    use std::io::Write;
    if input.is_some() {
        c.stdin(std::process::Stdio::piped());
    }
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let input = input.map(str::to_string);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = c.spawn().unwrap();
        if let Some(text) = input {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        took: started.elapsed(),
    };
    for secret in [INTEGRATION_PW, ADMIN_PW, "Typed-Pw-5150"] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "a password was printed:\n{}{}",
            run.stdout,
            run.stderr
        );
    }
    run
}

/// A directory with a profiles file: `keyring` (password_keyring, plus `extra` lines), `shared`
/// (the same user on the same instance, another platform) and `env` (password_env).
fn setup(url: &str, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runtime")).unwrap();
    let text = format!(
        "[profiles.keyring]\nurl = \"{url}\"\nusername = \"integration\"\nplatform = \
         \"custom_api\"\npassword_keyring = true\n{extra}\n\
         [profiles.shared]\nurl = \"{url}\"\nusername = \"integration\"\nplatform = \
         \"acme_sync\"\npassword_keyring = true\n\
         [profiles.env]\nurl = \"{url}\"\nusername = \"integration\"\npassword_env = \
         \"NOT_SET_HERE\"\n"
    );
    let path = write_profiles(dir.path(), &text);
    (dir, path)
}

/// The other sources, named in every keyring failure.
#[track_caller]
fn names_the_other_sources(text: &str) {
    for source in ["password_env", "password_cmd", "password,", "prompt"] {
        assert!(text.contains(source), "{source} not named:\n{text}");
    }
}

/// A Unix socket that accepts connections and never answers: a D-Bus peer that hangs. Counts
/// the connections.
fn silent_bus(dir: &Path) -> (String, Arc<AtomicUsize>) {
    let path = dir.join("silent-bus");
    let listener = UnixListener::bind(&path).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            held.push(conn);
        }
    });
    (format!("unix:path={}", path.display()), count)
}

fn without_secret_service() -> bool {
    if std::env::var_os("SUGAR_TEST_SECRET_SERVICE").is_some() {
        eprintln!("skipped: SUGAR_TEST_SECRET_SERVICE is set (a Secret Service is running)");
        return false;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_bus_a_login_fails_at_once_naming_the_other_sources() {
    if !without_secret_service() {
        return;
    }
    let (_dir, profiles) = setup("https://acme.example.com", "");
    let r = run(cmd(&profiles, &["login", "keyring"]), None).await;
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.took < Duration::from_secs(3),
        "not quick: {:?}\n{}",
        r.took,
        r.stderr
    );
    let all = r.stdout.clone() + &r.stderr;
    assert!(
        all.contains("the OS keyring could not be used for integration@acme.example.com"),
        "{all}"
    );
    names_the_other_sources(&all);

    let r = run(
        cmd(&profiles, &["password", "set", "keyring", "--stdin"]),
        Some("Typed-Pw-5150\n"),
    )
    .await;
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .starts_with("sugar-sessions: keyring: the OS keyring could not be used")
    );
    names_the_other_sources(&r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyring_that_never_answers_costs_three_seconds_and_the_process_still_exits() {
    if !without_secret_service() {
        return;
    }
    let (dir, profiles) = setup("https://acme.example.com", "");
    let (bus, connections) = silent_bus(dir.path());
    let mut c = cmd(&profiles, &["login", "keyring"]);
    c.env("DBUS_SESSION_BUS_ADDRESS", &bus);
    let r = run(c, None).await;
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("the OS keyring did not answer within 3 s")
            || r.stderr
                .contains("the OS keyring did not answer within 3 s"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    names_the_other_sources(&(r.stdout.clone() + &r.stderr));
    assert!(
        connections.load(Ordering::SeqCst) >= 1,
        "the bus was not tried"
    );
    assert!(
        // The timeout, then out: the thread stuck on the bus does not hold the exit (a slow,
        // shared machine may add a few seconds of start-up).
        r.took >= Duration::from_secs(3) && r.took < Duration::from_secs(10),
        "{:?}",
        r.took
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_ssh_the_keyring_is_not_tried_unless_keyring_over_ssh() {
    if !without_secret_service() {
        return;
    }
    let (dir, profiles) = setup("https://acme.example.com", "");
    let (bus, connections) = silent_bus(dir.path());
    for args in [
        &["login", "keyring"][..],
        &["password", "delete", "keyring"][..],
        // Refused before the password is asked for.
        &["password", "set", "keyring"][..],
    ] {
        let mut c = cmd(&profiles, args);
        c.env("DBUS_SESSION_BUS_ADDRESS", &bus)
            .env("SSH_CONNECTION", "192.0.2.7 50000 192.0.2.1 22");
        let r = run(c, None).await;
        assert_eq!(r.code, 1, "{args:?}: {}{}", r.stdout, r.stderr);
        let all = r.stdout + &r.stderr;
        assert!(
            all.contains("the OS keyring is not tried over SSH (SSH_CONNECTION is set)")
                && all.contains("set keyring_over_ssh = true"),
            "{all}"
        );
        names_the_other_sources(&all);
    }
    // Not tried: the bus (which would never answer) saw no connection.
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the bus was tried");

    // With keyring_over_ssh = true it is tried (and here, never answers).
    let (_dir2, profiles) = setup("https://acme.example.com", "keyring_over_ssh = true");
    let mut c = cmd(&profiles, &["login", "keyring"]);
    c.env("DBUS_SESSION_BUS_ADDRESS", &bus)
        .env("SSH_CONNECTION", "192.0.2.7 50000 192.0.2.1 22");
    let r = run(c, None).await;
    assert_eq!(r.code, 1);
    assert!(
        (r.stdout.clone() + &r.stderr).contains("did not answer within 3 s"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert!(
        connections.load(Ordering::SeqCst) >= 1,
        "the bus was not tried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_set_and_delete_refuse_profiles_that_do_not_use_the_keyring() {
    let (_dir, profiles) = setup("https://acme.example.com", "");
    let r = run(
        cmd(&profiles, &["password", "set", "env", "--stdin"]),
        Some("Typed-Pw-5150\n"),
    )
    .await;
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.stderr.trim_end(),
        "sugar-sessions: env: the profile does not take its password from the OS keyring (its \
         password source: env), so a password stored there would not be used: add \
         password_keyring = true to [profiles.env] (or to [defaults]) in place of its \
         password_env, then run this again"
    );
    let r = run(cmd(&profiles, &["password", "delete", "env"]), None).await;
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("add password_keyring = true to [profiles.env]")
    );
    // A name not in the file: the usual message.
    let r = run(cmd(&profiles, &["password", "delete", "nope"]), None).await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
    // No terminal and no --stdin.
    let r = run(cmd(&profiles, &["password", "set", "keyring"]), None).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--stdin"), "{}", r.stderr);
    // An empty line on stdin.
    let r = run(
        cmd(&profiles, &["password", "set", "keyring", "--stdin"]),
        Some("\n"),
    )
    .await;
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("no password on standard input"),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_says_the_password_is_in_the_keyring() {
    let (_dir, profiles) = setup("https://acme.example.com", "");
    let r = run(cmd(&profiles, &["list", "--json"]), None).await;
    assert_eq!(r.code, 0);
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows[0]["password_source"], "keyring");
    assert_eq!(rows[2]["password_source"], "env");
    let r = run(cmd(&profiles, &["list"]), None).await;
    assert!(r.stdout.contains("(password: keyring)"), "{}", r.stdout);
}

/// Against a real Secret Service: only with `SUGAR_TEST_SECRET_SERVICE=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_secret_service_a_stored_password_logs_in_and_is_deleted() {
    if std::env::var_os("SUGAR_TEST_SECRET_SERVICE").is_none() {
        eprintln!("skipped: set SUGAR_TEST_SECRET_SERVICE=1 with a Secret Service on the bus");
        return;
    }
    let emu: Emulator = start().await;
    let (_dir, profiles) = setup(&emu.url("acme"), "");
    let set = run(
        cmd(&profiles, &["password", "set", "keyring", "--stdin"]),
        Some(&format!("{INTEGRATION_PW}\n")),
    )
    .await;
    assert_eq!(set.code, 0, "{}{}", set.stdout, set.stderr);
    assert_eq!(
        set.stdout.trim_end(),
        "keyring: password stored in the OS keyring for integration@127.0.0.1 (service \
         sugar-sessions); also used by shared"
    );
    // Other processes find it: a store that lives in the keyring, not in one process.
    for name in ["keyring", "shared"] {
        let r = run(cmd(&profiles, &["login", name]), None).await;
        assert_eq!(r.code, 0, "{name}: {}{}", r.stdout, r.stderr);
    }
    let r = run(cmd(&profiles, &["password", "delete", "shared"]), None).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("password removed from the OS keyring"),
        "{}",
        r.stdout
    );
    let r = run(cmd(&profiles, &["login", "keyring"]), None).await;
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let all = r.stdout + &r.stderr;
    assert!(
        all.contains(
            "no password in the OS keyring for integration@127.0.0.1 (service sugar-sessions): \
             store it with `sugar-sessions password set keyring`"
        ),
        "{all}"
    );
    names_the_other_sources(&all);
    let r = run(cmd(&profiles, &["password", "delete", "keyring"]), None).await;
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("nothing to remove"), "{}", r.stdout);
}

/// `password set` in a terminal: `pw` typed at the first prompt and `again` at the second.
fn typed_twice(profiles: &Path, pw: &[u8], again: &[u8]) -> (Option<i32>, String) {
    let mut pty = Pty::spawn(
        cmd(profiles, &["password", "set", "keyring"]),
        24,
        120,
        true,
    );
    pty.wait_for("the first prompt", 10, |s| {
        s.text().contains(
            "Password for keyring (integration at acme.example.com) to store in the OS keyring:",
        )
    });
    pty.send(pw);
    pty.wait_for("the second prompt", 10, |s| {
        s.text().contains("The same password again:")
    });
    assert!(!pty.cooked(), "echo is off while the password is typed");
    pty.send(again);
    let exit = pty.wait_exit(Duration::from_secs(10)).expect("it ends");
    pty.settle();
    let text = pty.screen().text();
    assert!(
        !text.contains("Typed-Pw"),
        "the password was echoed:\n{text}"
    );
    (exit.code(), text)
}

#[test]
fn password_set_asks_twice_without_echo_and_stores_only_the_same_twice() {
    let (_dir, profiles) = setup("https://acme.example.com", "");
    let (code, text) = typed_twice(&profiles, b"Typed-Pw-5150\r", b"Typed-Pw-5151\r");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("the two passwords differ: nothing stored"),
        "{text}"
    );
    let (code, text) = typed_twice(&profiles, b"Typed-Pw-5150\r", b"Typed-Pw-5150\r");
    if std::env::var_os("SUGAR_TEST_SECRET_SERVICE").is_some() {
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains("password stored in the OS keyring"), "{text}");
        let mut delete = cmd(&profiles, &["password", "delete", "keyring"]);
        assert!(delete.output().unwrap().status.success());
    } else {
        // The same twice: handed to the keyring, which is not there.
        assert_eq!(code, Some(1), "{text}");
        assert!(text.contains("the OS keyring could not be used"), "{text}");
    }
}

#[test]
fn ctrl_c_at_the_password_set_prompt_gives_the_terminal_back() {
    let (_dir, profiles) = setup("https://acme.example.com", "");
    let mut pty = Pty::spawn(
        cmd(&profiles, &["password", "set", "keyring"]),
        24,
        120,
        true,
    );
    pty.wait_for("the prompt", 10, |s| {
        s.text().contains("to store in the OS keyring:")
    });
    let deadline = Instant::now() + Duration::from_secs(2);
    while pty.cooked() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    pty.send(b"Typed-Pw");
    pty.send(&[0x03]);
    let exit = pty
        .wait_exit(Duration::from_secs(3))
        .expect("Ctrl-C ends it");
    assert_eq!(exit.code(), Some(130));
    assert!(pty.cooked(), "echo and line editing are back");
    pty.settle();
    let text = pty.screen().text();
    assert!(text.contains("interrupted: nothing stored"), "{text}");
    assert!(!text.contains("Typed-Pw"), "{text}");
}
