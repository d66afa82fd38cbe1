//! Ctrl-C on the shell commands: a password prompt gives the terminal back with echo on, and a
//! bulk action withdraws what it has not sent yet but keeps the answers already on their way.

mod common;
#[path = "common/pty.rs"]
mod pty;

use common::*;
use pty::Pty;
use std::process::Command;
use std::time::{Duration, Instant};

fn binary() -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("sugar-sessions"));
    c.env_remove("SUGAR_SESSIONS_PROFILES")
        .env_remove("SUGAR_SESSIONS_STATE_DIR")
        .env_remove("SUGAR_SESSIONS_LOG");
    c
}

#[test]
fn ctrl_c_at_the_password_prompt_gives_the_terminal_back_with_echo() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = write_profiles(
        dir.path(),
        "[profiles.asker]\nurl = \"http://127.0.0.1:9/acme\"\nusername = \"admin\"\n",
    );
    let mut cmd = binary();
    cmd.arg("--profiles")
        .arg(&profiles)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["login", "asker"]);
    let mut pty = Pty::spawn(cmd, 24, 100, true);
    pty.wait_for("the password prompt", 10, |s| {
        s.text()
            .contains("Password for asker (admin at 127.0.0.1:9):")
    });
    let deadline = Instant::now() + Duration::from_secs(2);
    while pty.cooked() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pty.cooked(), "echo is off while the password is typed");
    pty.send(b"half-typ");
    pty.send(&[0x03]);
    let exit = pty
        .wait_exit(Duration::from_secs(3))
        .expect("Ctrl-C ends the command");
    assert_eq!(exit.code(), Some(130));
    assert!(pty.cooked(), "echo and line editing are back");
    assert!(
        !pty.screen().text().contains("half-typ"),
        "the password was never echoed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_bulk_login_withdraws_the_queued_and_keeps_the_sent() {
    let emu = start().await;
    emu.set_latency("acme", Duration::from_millis(800));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[defaults]\nmax_per_host = 1\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\n\
         [profiles.one]\nurl = \"{acme}\"\nplatform = \"custom_api\"\n\
         [profiles.two]\nurl = \"{acme}\"\nplatform = \"acme_sync\"\n\
         [profiles.three]\nurl = \"{acme}\"\nplatform = \"mobile\"\n",
        acme = emu.url("acme"),
    );
    let profiles = write_profiles(dir.path(), &text);
    let state = dir.path().join("state");
    let mut cmd = binary();
    cmd.arg("--profiles")
        .arg(&profiles)
        .arg("--state-dir")
        .arg(&state)
        .args(["login", "--all"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    // Ctrl-C once the first login is on its way (the emulator has it, the answer is 800 ms off).
    let waiting = Instant::now();
    while !emu
        .requests()
        .iter()
        .any(|r| r.grant_type.as_deref() == Some("password"))
    {
        assert!(
            waiting.elapsed() < Duration::from_secs(20),
            "the first login never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SAFETY: signals our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "ended within the grace"
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(130), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("one: logged in"),
        "the answer on its way was kept: {stdout}"
    );
    assert!(
        stderr.contains("two: not sent (interrupted)")
            && stderr.contains("three: not sent (interrupted)"),
        "{stderr}"
    );
    let logins = emu
        .requests()
        .iter()
        .filter(|r| r.grant_type.as_deref() == Some("password"))
        .count();
    assert_eq!(logins, 1, "nothing was sent after Ctrl-C");
    let cache: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("sessions.json")).unwrap())
            .unwrap();
    assert!(common::cached(&cache, "one")["session"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_cmd_cannot_draw_on_the_terminal() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[profiles.viacmd]\nurl = \"{}\"\nusername = \"integration\"\nplatform = \"custom_api\"\n\
         password_cmd = \"echo DRAWN-ON-THE-TTY > /dev/tty; echo '{INTEGRATION_PW}'\"\n",
        emu.url("acme")
    );
    let profiles = write_profiles(dir.path(), &text);
    let mut cmd = binary();
    cmd.arg("--profiles")
        .arg(&profiles)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["login", "viacmd"]);
    let mut pty = Pty::spawn(cmd, 24, 120, true);
    let exit = tokio::task::spawn_blocking(move || {
        let exit = pty.wait_exit(Duration::from_secs(10));
        // What it wrote just before it ended may still be on its way through the pty.
        let drained = Instant::now();
        while !pty.screen().text().contains("viacmd:") && drained.elapsed() < Duration::from_secs(3)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        (exit, pty.screen().text())
    })
    .await
    .unwrap();
    let (exit, screen) = exit;
    assert_eq!(exit.and_then(|e| e.code()), Some(0), "{screen}");
    assert!(screen.contains("viacmd: logged in"), "{screen}");
    assert!(
        !screen.contains("DRAWN-ON-THE-TTY"),
        "the command reached the terminal:\n{screen}"
    );
}

/// `check` is interrupted like the other bulk commands: Ctrl-C withdraws the checks not sent yet,
/// names them, and ends with 130 (it used to ignore Ctrl-C until every check was done).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_bulk_check_withdraws_the_queued() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[defaults]\nmax_per_host = 1\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\n\
         [profiles.one]\nurl = \"{acme}\"\nplatform = \"custom_api\"\n\
         [profiles.two]\nurl = \"{acme}\"\nplatform = \"acme_sync\"\n\
         [profiles.three]\nurl = \"{acme}\"\nplatform = \"mobile\"\n",
        acme = emu.url("acme"),
    );
    let profiles = write_profiles(dir.path(), &text);
    let state = dir.path().join("state");
    let run = |args: &[&str]| {
        let mut cmd = binary();
        cmd.arg("--profiles")
            .arg(&profiles)
            .arg("--state-dir")
            .arg(&state)
            .args(args);
        cmd
    };
    let login = run(&["login", "--all"]).output().unwrap();
    assert_eq!(login.status.code(), Some(0));
    emu.clear_requests();
    emu.set_latency("acme", Duration::from_millis(800));
    let mut cmd = run(&["check", "--all"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let waiting = Instant::now();
    while emu.requests().is_empty() {
        assert!(
            waiting.elapsed() < Duration::from_secs(20),
            "the first check never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SAFETY: signals our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("two: not sent (interrupted)")
            && stderr.contains("three: not sent (interrupted)"),
        "{stderr}"
    );
}

/// `sugar-sessions --profiles P --state-dir S ARGS` on a pseudo-terminal of 30 x 160.
fn on_terminal(profiles: &std::path::Path, state: &std::path::Path, args: &[&str]) -> Pty {
    let mut cmd = binary();
    cmd.arg("--profiles")
        .arg(profiles)
        .arg("--state-dir")
        .arg(state)
        .args(args);
    Pty::spawn(cmd, 30, 160, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_password_gets_three_tries_with_a_hint_that_fits() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let profiles = write_profiles(
        dir.path(),
        &format!(
            "[profiles.typed]\nurl = \"{}\"\nusername = \"integration\"\nplatform = \"custom_api\"\n",
            emu.url("acme")
        ),
    );
    let state = dir.path().join("state");
    let mut pty =
        tokio::task::block_in_place(|| on_terminal(&profiles, &state, &["login", "typed"]));
    // Typed once echo is off, as a person would: the prompt is written just before.
    let type_in = |pty: &Pty, text: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while pty.cooked() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        pty.send(format!("{text}\r").as_bytes());
    };
    tokio::task::block_in_place(|| {
        pty.wait_for("the first prompt", 10, |s| {
            s.contains("Password for typed (integration at")
        });
        type_in(&pty, "wrong-1");
        pty.wait_for("the second try", 10, |s| s.contains("try 2 of 3):"));
        type_in(&pty, "wrong-2");
        pty.wait_for("the third try", 10, |s| s.contains("try 3 of 3):"));
        type_in(&pty, INTEGRATION_PW);
    });
    let exit =
        tokio::task::block_in_place(|| pty.wait_exit(Duration::from_secs(10))).expect("it ends");
    assert_eq!(exit.code(), Some(0));
    // What it wrote last may still be on its way through the pty.
    let text = tokio::task::block_in_place(|| {
        pty.wait_for_output("the outcome", 10, |s| s.contains("typed: logged in"))
    })
    .text();
    assert!(
        text.contains("hint: check the username, and the password typed"),
        "a hint for a typed password, not the profile's source: {text}"
    );
    assert!(
        !text.contains("wrong-1") && !text.contains(INTEGRATION_PW),
        "{text}"
    );
    let logins = emu
        .requests()
        .iter()
        .filter(|r| r.grant_type.as_deref() == Some("password"))
        .count();
    assert_eq!(logins, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_on_platform_base_warns_and_asks_once_on_a_terminal() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[defaults]\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\n\
         [profiles.web]\nurl = \"{acme}\"\nplatform = \"base\"\n\
         [profiles.api]\nurl = \"{acme}\"\nplatform = \"custom_api\"\n",
        acme = emu.url("acme"),
    );
    let profiles = write_profiles(dir.path(), &text);
    let state = dir.path().join("state");
    let warning =
        "web: warning: platform base: a login here logs integration out of Sugar's web UI";
    // Declined: the profile is left out, the others logged in.
    let mut pty =
        tokio::task::block_in_place(|| on_terminal(&profiles, &state, &["login", "web", "api"]));
    tokio::task::block_in_place(|| {
        pty.wait_for("the question", 10, |s| {
            s.contains("Log in on web anyway? [y/N]")
        });
        pty.send(b"n\r");
    });
    let exit = tokio::task::block_in_place(|| pty.wait_exit(Duration::from_secs(10))).unwrap();
    // A profile left out was not logged in: 1, as for a failure.
    assert_eq!(exit.code(), Some(1));
    let text = tokio::task::block_in_place(|| {
        pty.wait_for_output("the outcome", 10, |s| s.contains("api: logged in"))
    })
    .text();
    assert!(text.contains(warning), "{text}");
    assert!(
        text.contains("web: not logged in (not confirmed)"),
        "{text}"
    );
    assert!(text.contains("api: logged in"), "{text}");
    let platforms: Vec<String> = emu
        .requests()
        .iter()
        .filter_map(|r| r.platform.clone())
        .collect();
    assert_eq!(platforms, ["custom_api"]);
    // --yes: no question.
    let mut pty =
        tokio::task::block_in_place(|| on_terminal(&profiles, &state, &["login", "--yes", "web"]));
    let exit = tokio::task::block_in_place(|| pty.wait_exit(Duration::from_secs(10))).unwrap();
    assert_eq!(exit.code(), Some(0));
    let text = tokio::task::block_in_place(|| {
        pty.wait_for_output("the outcome", 10, |s| s.contains("web: logged in"))
    })
    .text();
    assert!(
        text.contains(warning) && text.contains("web: logged in"),
        "{text}"
    );
    assert!(!text.contains("anyway?"), "{text}");
    // Without a terminal: the warning alone.
    let out = binary()
        .arg("--profiles")
        .arg(&profiles)
        .arg("--state-dir")
        .arg(&state)
        .args(["login", "web"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(warning) && !said.contains("anyway?"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_status_on_a_terminal_have_a_header_and_aligned_columns() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[defaults]\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\n\
         [profiles.a]\nurl = \"{acme}\"\nplatform = \"custom_api\"\ntags = [\"prod\"]\n\
         [profiles.long-profile-name]\nurl = \"{acme}/\"\nplatform = \"acme_sync\"\nusername = \"admin\"\n",
        acme = emu.url("acme"),
    );
    let profiles = write_profiles(dir.path(), &text);
    let state = dir.path().join("state");
    let mut pty = tokio::task::block_in_place(|| on_terminal(&profiles, &state, &["list"]));
    tokio::task::block_in_place(|| pty.wait_exit(Duration::from_secs(10))).unwrap();
    let lines = tokio::task::block_in_place(|| {
        pty.wait_for_output("the list", 10, |s| s.contains("long-profile-name"))
    })
    .lines();
    let header = &lines[0];
    assert!(header.starts_with("NAME "), "{lines:?}");
    let column = |line: &str, word: &str| line.find(word).unwrap();
    for (word, heading) in [
        ("integration", "USER"),
        ("custom_api", "PLATFORM"),
        ("plain", "PASSWORD"),
        ("prod", "TAGS"),
    ] {
        assert_eq!(
            column(&lines[1], word),
            column(header, heading),
            "{lines:?}"
        );
    }
    assert_eq!(
        column(&lines[2], "admin"),
        column(header, "USER"),
        "{lines:?}"
    );
    assert_eq!(
        column(&lines[2], "acme_sync"),
        column(header, "PLATFORM"),
        "{lines:?}"
    );
    let mut pty = tokio::task::block_in_place(|| on_terminal(&profiles, &state, &["status"]));
    tokio::task::block_in_place(|| pty.wait_exit(Duration::from_secs(10))).unwrap();
    let lines = tokio::task::block_in_place(|| {
        pty.wait_for_output("the status", 10, |s| s.contains("long-profile-name"))
    })
    .lines();
    assert!(
        lines[0].starts_with("NAME ") && lines[0].contains("STATE"),
        "{lines:?}"
    );
    assert_eq!(
        column(&lines[1], "logged out"),
        column(&lines[0], "STATE"),
        "{lines:?}"
    );
    // Into a pipe: no header (scripts read the lines as they were).
    let out = binary()
        .arg("--profiles")
        .arg(&profiles)
        .args(["list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("a "));
}
