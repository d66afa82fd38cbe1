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
