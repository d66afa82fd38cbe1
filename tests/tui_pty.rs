//! The real binary in a pseudo-terminal, against the in-process emulator: log in with keys, see the
//! row become active with a countdown, log out, quit, and find the terminal restored.
//!
//! The pty and the small VT parser that reads the screen as a person would are the shared harness
//! in `tests/common/pty.rs`.

mod common;
#[path = "common/pty.rs"]
mod pty;

use pty::Pty;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use sugar_sessions::emulator::{Emulator, EmulatorConfig, InstanceConfig, UserConfig};

const COLS: u16 = 120;
const ROWS: u16 = 30;
const PASSWORD: &str = "pty-test-password";

/// The program in a pty (the shared harness), as the controlling terminal, with a clean environment.
fn spawn(profiles: &Path, state: &Path, env: &[(&str, &str)]) -> Pty {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sugar-sessions"));
    cmd.arg("--profiles")
        .arg(profiles)
        .arg("--state-dir")
        .arg(state);
    cmd.env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("HOME", state.parent().unwrap());
    cmd.env("TERM", "xterm-256color");
    cmd.env("LANG", "C.UTF-8");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Pty::spawn(cmd, ROWS, COLS, true)
}

/// Waits for the program to end; panics with the screen when it does not within `secs`.
fn wait_exit(pty: &mut Pty, secs: u64) -> pty::Exit {
    match pty.wait_exit(Duration::from_secs(secs)) {
        Some(exit) => exit,
        None => panic!(
            "the program did not exit; the screen:\n{}",
            pty.screen().text()
        ),
    }
}

/// Checks that the program left the alternate screen and showed the cursor after it last entered
/// the alternate screen, and that raw mode is off.
fn assert_restored(pty: &Pty) {
    // What the program wrote last may still be on its way through the pty.
    pty.settle();
    let out = pty.bytes();
    let find_last = |needle: &[u8]| out.windows(needle.len()).rposition(|w| w == needle);
    let entered = find_last(b"\x1b[?1049h").expect("the screen was opened");
    let left = find_last(b"\x1b[?1049l").expect("the alternate screen was left");
    let shown = find_last(b"\x1b[?25h").expect("the cursor was shown");
    assert!(
        left > entered && shown > entered,
        "restore sequences before the screen was opened"
    );
    let screen = pty.screen();
    assert_eq!(screen.modes.get(&1049), Some(&false));
    assert_eq!(screen.modes.get(&25), Some(&true));
    assert!(pty.cooked(), "raw mode is still on");
}

struct Setup {
    _runtime: tokio::runtime::Runtime,
    _emulator: Emulator,
    dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut acme = InstanceConfig::new("acme")
        .with_user(UserConfig::user(
            "integration",
            PASSWORD,
            "Integration User",
        ))
        .with_platform("custom_api");
    // A second OAuth2 client: a profile using it is another session of the same user and
    // platform for Sugar (the guard warns), and another identity for the cache.
    acme.clients
        .push(("other_client".into(), "other-secret".into()));
    let config = EmulatorConfig {
        instances: vec![acme],
    };
    let emulator = runtime
        .block_on(Emulator::start(config, "127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let profiles = format!(
        r#"[profiles.acme-sbx]
url = "{url}"
username = "integration"
password_env = "PTY_TEST_PW"
platform = "custom_api"
tags = ["acme", "sandbox"]

[profiles.other]
url = "{url}"
username = "integration"
password_env = "PTY_TEST_PW"
platform = "custom_api"
client_id = "other_client"
client_secret = "other-secret"
"#,
        url = emulator.url("acme")
    );
    std::fs::write(dir.path().join("profiles.toml"), profiles).unwrap();
    Setup {
        _runtime: runtime,
        _emulator: emulator,
        dir,
    }
}

fn is_countdown(line: &str) -> bool {
    let re = regex::Regex::new(r"\b\d{1,2}m \d{2}s\b").unwrap();
    re.is_match(line)
}

fn cached_session(state: &Path, name: &str) -> bool {
    let text = std::fs::read_to_string(state.join("sessions.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    common::cached(&v, name)["session"].is_object()
}

#[test]
fn log_in_see_the_countdown_log_out_quit_and_the_terminal_is_restored() {
    let s = setup();
    let profiles = s.dir.path().join("profiles.toml");
    let state = s.dir.path().join("state");
    let mut pty = spawn(&profiles, &state, &[("PTY_TEST_PW", PASSWORD)]);

    let screen = pty.wait_for("the table", 20, |s| {
        s.line_with("acme-sbx")
            .is_some_and(|l| l.contains("logged out"))
    });
    assert!(screen.text().contains("NAME"), "{}", screen.text());
    assert_eq!(
        screen.modes.get(&1049),
        Some(&true),
        "not on the alternate screen"
    );

    // Log in with `l` (the cursor is on the first row). acme-sbx and other log in as the same
    // user on the same platform through two clients (each login ends the other's session): the
    // platform guard asks
    // once, with the warning.
    pty.send(b"l");
    pty.wait_for("the platform guard's question", 10, |s| {
        s.text().contains("Log in to acme-sbx?")
            && s.text().contains("other also logs in as integration")
    });
    pty.send(b"y");
    let screen = pty.wait_for("the row to become active with a countdown", 20, |s| {
        s.line_with("acme-sbx")
            .is_some_and(|l| l.contains("● active") && is_countdown(&l))
    });
    let row = screen.line_with("acme-sbx").unwrap();
    assert!(
        row.contains("59m"),
        "a fresh token has about an hour: {row}"
    );
    assert!(screen.line_with("other").unwrap().contains("logged out"));
    assert!(
        cached_session(&state, "acme-sbx"),
        "the session is in the cache"
    );

    // The countdown is live: it moves by itself.
    let before = row.clone();
    pty.wait_for("the countdown to tick", 5, |s| {
        s.line_with("acme-sbx").is_some_and(|l| l != before)
    });

    // Details show the request that was sent.
    pty.send(b"\r");
    pty.wait_for("the details pane", 10, |s| {
        s.text().contains("POST /oauth2/token")
    });
    pty.send(b"\r");

    // Log out with `o` (one profile, not tagged prod: no question).
    pty.send(b"o");
    pty.wait_for("the row to be logged out", 20, |s| {
        s.line_with("acme-sbx")
            .is_some_and(|l| l.contains("logged out"))
            && s.text().contains("acme-sbx: logged out")
    });
    assert!(
        !cached_session(&state, "acme-sbx"),
        "the session is gone from the cache"
    );

    // Idle: nothing changes on the screen, so nothing is written.
    std::thread::sleep(Duration::from_millis(1500));
    let idle_start = pty.bytes().len();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        pty.bytes().len(),
        idle_start,
        "an idle screen wrote to the terminal"
    );

    pty.send(b"q");
    let exit = wait_exit(&mut pty, 10);
    assert_eq!(exit.code(), Some(0), "exit status {exit:?}");
    assert_restored(&pty);
}

#[test]
fn sigterm_restores_the_terminal() {
    let s = setup();
    let profiles = s.dir.path().join("profiles.toml");
    let state = s.dir.path().join("state");
    let mut pty = spawn(&profiles, &state, &[("PTY_TEST_PW", PASSWORD)]);
    pty.wait_for("the table", 20, |s| s.line_with("acme-sbx").is_some());
    pty.kill(libc::SIGTERM);
    wait_exit(&mut pty, 10);
    assert_restored(&pty);
}

/// The OSC 52 sequences in `out` (plain, or put together from GNU screen's DCS strings), decoded.
fn osc52_payloads(out: &[u8]) -> Vec<String> {
    use base64::Engine as _;
    // GNU screen's strings: `ESC P ... ESC \`, joined.
    let mut joined = Vec::new();
    let mut rest = out;
    while let Some(at) = rest.windows(2).position(|w| w == b"\x1bP") {
        joined.extend_from_slice(&rest[..at]);
        let end = rest[at..]
            .windows(2)
            .position(|w| w == b"\x1b\\")
            .expect("a DCS string ends");
        assert!(end + 2 <= 256, "a DCS string of {} bytes", end + 2);
        joined.extend_from_slice(&rest[at + 2..at + end]);
        rest = &rest[at + end + 2..];
    }
    joined.extend_from_slice(rest);
    let mut found = Vec::new();
    let mut rest = joined.as_slice();
    while let Some(at) = rest.windows(7).position(|w| w == b"\x1b]52;c;") {
        let body = &rest[at + 7..];
        let end = body.iter().position(|&b| b == 0x07).expect("BEL ends it");
        let text = base64::engine::general_purpose::STANDARD
            .decode(&body[..end])
            .expect("base64");
        found.push(String::from_utf8(text).unwrap());
        rest = &body[end..];
    }
    found
}

#[test]
fn y_and_e_copy_through_osc_52_plain_and_inside_gnu_screen() {
    let s = setup();
    let profiles = s.dir.path().join("profiles.toml");
    let state = s.dir.path().join("state");
    let mut pty = spawn(&profiles, &state, &[("PTY_TEST_PW", PASSWORD)]);
    pty.wait_for("the table", 20, |s| s.line_with("acme-sbx").is_some());
    // Nothing to copy yet: the status line says so.
    pty.send(b"y");
    pty.wait_for("the refusal", 10, |s| {
        s.text()
            .contains("acme-sbx: no usable access token to copy (logged out)")
    });
    pty.send(b"l");
    pty.wait_for("the platform guard's question", 10, |s| {
        s.text().contains("Log in to acme-sbx?")
    });
    pty.send(b"y");
    pty.wait_for("the row to become active", 20, |s| {
        s.line_with("acme-sbx")
            .is_some_and(|l| l.contains("● active"))
    });
    pty.send(b"y");
    let screen = pty.wait_for("the copy to be reported", 10, |s| {
        s.text()
            .contains("copied acme-sbx's access token (valid 59m")
            && s.text().contains("to the clipboard (OSC 52)")
    });
    pty.settle();
    let text = std::fs::read_to_string(state.join("sessions.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let token = common::cached(&v, "acme-sbx")["session"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let out = pty.bytes();
    assert_eq!(osc52_payloads(&out), std::slice::from_ref(&token));
    // The exact bytes: one plain OSC 52, ended by BEL.
    let plain = sugar_sessions::tui::osc52(&token, sugar_sessions::tui::Multiplexer::None);
    assert!(out.windows(plain.len()).any(|w| w == plain.as_slice()));
    // The token is nowhere else: not on the screen, not in the output outside the sequence.
    assert!(!screen.text().contains(&token));
    assert!(!out.windows(token.len()).any(|w| w == token.as_bytes()));
    // The mouse is never captured (the terminal's own selection keeps working).
    for capture in [
        &b"\x1b[?1000h"[..],
        b"\x1b[?1002h",
        b"\x1b[?1003h",
        b"\x1b[?1006h",
    ] {
        assert!(!out.windows(capture.len()).any(|w| w == capture));
    }
    pty.send(b"q");
    wait_exit(&mut pty, 10);

    // Inside GNU screen (STY): the sequence comes in DCS strings screen passes on.
    let mut pty = spawn(
        &profiles,
        &state,
        &[("PTY_TEST_PW", PASSWORD), ("STY", "4242.pts-1.jump")],
    );
    pty.wait_for("the cached session, checked", 20, |s| {
        s.line_with("acme-sbx").is_some_and(|l| is_countdown(&l))
            && s.text().contains("checked the cached sessions")
    });
    pty.send(b"e");
    pty.wait_for("the copy to be reported", 10, |s| {
        s.text().contains("copied an export line for acme-sbx")
    });
    pty.settle();
    let out = pty.bytes();
    assert!(out.windows(2).any(|w| w == b"\x1bP"), "no DCS strings");
    let url = format!("{}/rest/v11", s._emulator.url("acme").trim_end_matches('/'));
    assert_eq!(
        osc52_payloads(&out),
        [format!("export SUGAR_URL='{url}' SUGAR_TOKEN='{token}'")]
    );
    pty.send(b"q");
    wait_exit(&mut pty, 10);
    assert_restored(&pty);
}
