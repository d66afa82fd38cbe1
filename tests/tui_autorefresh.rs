//! The screen keeps a session alive by itself: with short token lifetimes (6 s access), the real
//! binary in a pseudo-terminal refreshes before expiry, with the rotated refresh token persisted,
//! and never sends a refresh token twice.

mod common;
#[path = "common/pty.rs"]
mod pty;

use pty::Pty;
use std::process::Command;
use std::time::{Duration, Instant};
use sugar_sessions::emulator::{Emulator, EmulatorConfig, InstanceConfig, UserConfig};

const PASSWORD: &str = "autorefresh-test-pw";

fn cached(state: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(state.join("sessions.json")).unwrap_or_default();
    let cache = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
    common::cached(&cache, "short")["session"].clone()
}

#[test]
fn a_session_is_refreshed_before_it_expires_and_the_rotation_is_stored() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut short = InstanceConfig::new("short")
        .with_user(UserConfig::user(
            "integration",
            PASSWORD,
            "Integration User",
        ))
        .with_platform("custom_api");
    short.access_lifetime = Duration::from_secs(6);
    short.refresh_lifetime = Duration::from_secs(600);
    let emu = runtime
        .block_on(Emulator::start(
            EmulatorConfig {
                instances: vec![short],
            },
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles.toml");
    std::fs::write(
        &profiles,
        format!(
            "[profiles.short]\nurl = \"{}\"\nusername = \"integration\"\npassword_env = \"AUTO_PW\"\nplatform = \"custom_api\"\n",
            emu.url("short")
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sugar-sessions"));
    cmd.arg("--profiles")
        .arg(&profiles)
        .arg("--state-dir")
        .arg(&state);
    cmd.env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("HOME", dir.path());
    cmd.env("TERM", "xterm-256color");
    cmd.env("LANG", "C.UTF-8");
    cmd.env("AUTO_PW", PASSWORD);
    let mut pty = Pty::spawn(cmd, 30, 120, true);

    pty.wait_for("the table", 20, |s| s.line_with("short").is_some());
    pty.send(b"l");
    // Six seconds left is "expiring" (under ten minutes) rather than "active".
    pty.wait_for("the login", 20, |s| {
        s.line_with("short").is_some_and(|l| l.contains("expiring"))
    });
    let first = cached(&state);
    let first_refresh = first["refresh_token"]
        .as_str()
        .expect("a refresh token is cached")
        .to_string();
    let first_expiry = first["expires_at"].as_str().unwrap().to_string();

    // Wait past the first token's expiry: the screen must have refreshed before it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut refreshes = 0;
    while Instant::now() < deadline && refreshes < 2 {
        std::thread::sleep(Duration::from_millis(200));
        refreshes = emu
            .requests()
            .iter()
            .filter(|r| r.grant_type.as_deref() == Some("refresh_token"))
            .count();
    }
    assert!(
        refreshes >= 2,
        "the screen refreshed by itself, again and again: {refreshes}"
    );
    // The last refresh answered and shown (on a loaded machine it may still be on its way).
    pty.wait_for("the refreshed row", 10, |s| {
        s.line_with("short")
            .is_some_and(|l| l.contains("active") || l.contains("expiring"))
    });
    let answered = Instant::now() + Duration::from_secs(10);
    while emu
        .requests()
        .iter()
        .any(|r| r.grant_type.is_some() && r.status == 0)
        && Instant::now() < answered
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent: Vec<String> = emu
        .requests()
        .into_iter()
        .filter_map(|r| r.refresh_token)
        .collect();
    let mut unique = sent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), sent.len(), "no refresh token was sent twice");
    assert_eq!(
        sent[0], first_refresh,
        "the first refresh used the token from the login"
    );
    // Every refresh answered 200: each used the rotated token the previous one stored.
    assert!(
        emu.requests()
            .iter()
            .filter(|r| r.grant_type.is_some())
            .all(|r| r.status == 200),
        "{:?}",
        emu.requests()
    );
    let now = cached(&state);
    assert_ne!(
        now["refresh_token"].as_str().unwrap(),
        first_refresh,
        "the rotated token is stored"
    );
    assert_ne!(now["expires_at"].as_str().unwrap(), first_expiry);
    pty.send(b"q");
    assert_eq!(
        pty.wait_exit(Duration::from_secs(5)).and_then(|e| e.code()),
        Some(0)
    );
}
