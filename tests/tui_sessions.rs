//! Sessions that look after themselves, on the real screen: the binary in a pseudo-terminal
//! against the in-process emulator. A session cached by the shell shows as unverified until the
//! screen's background check returns; `v` checks it live and the details show who the user is,
//! the Sugar version, the clock skew and the latency; `u` with a user name adds an impersonation
//! row `NAME>USER` right after its profile, with its own countdown, and `o` logs it out again.

mod common;
#[path = "common/pty.rs"]
mod pty;

use pty::{Pty, Screen};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use sugar_sessions::emulator::{Emulator, EmulatorConfig, InstanceConfig, UserConfig};

const ROWS: u16 = 30;
const COLS: u16 = 120;
const ADMIN_PW: &str = "pty-admin-password";

struct World {
    _runtime: tokio::runtime::Runtime,
    emulator: Emulator,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut acme = InstanceConfig::new("acme")
            .with_user(UserConfig::user("sally", "sally-pw", "Sally Bronsen"))
            .with_platform("custom_api");
        acme.users[0] = UserConfig::admin("admin", ADMIN_PW, "Administrator");
        // Sugar's max_session_lifetime: refreshing no longer extends the session past 15 minutes.
        let mut capped = InstanceConfig::new("capped").with_platform("custom_api");
        capped.users[0] = UserConfig::admin("admin", ADMIN_PW, "Administrator");
        capped.max_session_lifetime = Some(Duration::from_secs(900));
        let emulator = runtime
            .block_on(Emulator::start(
                EmulatorConfig {
                    instances: vec![acme, capped],
                },
                "127.0.0.1:0".parse().unwrap(),
            ))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let profiles = format!(
            "[profiles.acme-admin]\nurl = \"{url}\"\nusername = \"admin\"\npassword_env = \"PTY_ADMIN_PW\"\n\
             platform = \"custom_api\"\ntags = [\"acme\"]\n\n\
             [profiles.acme-other]\nurl = \"{url}\"\nusername = \"sally\"\npassword_env = \"PTY_ADMIN_PW\"\n\
             platform = \"custom_api\"\n\n\
             [profiles.capped]\nurl = \"{capped}\"\nusername = \"admin\"\npassword_env = \"PTY_ADMIN_PW\"\n\
             platform = \"custom_api\"\n",
            url = emulator.url("acme"),
            capped = emulator.url("capped")
        );
        std::fs::write(dir.path().join("profiles.toml"), profiles).unwrap();
        World {
            _runtime: runtime,
            emulator,
            dir,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sugar-sessions"));
        cmd.arg("--profiles")
            .arg(self.dir.path().join("profiles.toml"))
            .arg("--state-dir")
            .arg(self.dir.path().join("state"));
        cmd.env_clear();
        cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd.env("HOME", self.dir.path());
        cmd.env("TERM", "xterm-256color");
        cmd.env("LANG", "C.UTF-8");
        cmd.env("PTY_ADMIN_PW", ADMIN_PW);
        cmd
    }
}

fn countdown(line: &str) -> bool {
    regex::Regex::new(r"\b\d{1,2}m \d{2}s\b")
        .unwrap()
        .is_match(line)
}

fn row(screen: &Screen, name: &str) -> String {
    screen
        .lines()
        .into_iter()
        .find(|l| l.contains(&format!(" {name} ")))
        .unwrap_or_default()
}

fn cached(state: &Path, name: &str) -> bool {
    let text = std::fs::read_to_string(state.join("sessions.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    common::cached(&v, name)["session"].is_object()
}

#[test]
fn check_and_impersonate_on_the_screen() {
    let w = World::new();
    // A session logged in from the shell: the screen finds it in the cache.
    let out = w.command().args(["login", "acme-admin"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");

    // The server answers slowly for a moment: the cached session shows as unverified until its
    // background check returns.
    w.emulator.set_latency("acme", Duration::from_millis(1500));
    let mut pty = Pty::spawn(w.command(), ROWS, COLS, true);
    pty.wait_for("the cached session, unverified", 20, |s| {
        row(s, "acme-admin").contains("◇ unverified") && countdown(&row(s, "acme-admin"))
    });
    w.emulator.set_latency("acme", Duration::ZERO);
    pty.wait_for("the background check to confirm it", 20, |s| {
        row(s, "acme-admin").contains("● active")
            && row(s, "acme-admin").contains("✓ check")
            && s.text().contains("checked the cached sessions: all alive")
    });

    // `v`: a live check of the current row; the status line and the details show what it found.
    pty.send(b"v");
    let screen = pty.wait_for("the check's answer", 20, |s| {
        s.text()
            .contains("acme-admin: alive; Administrator (admin, admin)")
    });
    let status = screen.line_with("acme-admin: alive").unwrap();
    assert!(
        status.contains("Sugar 12.0.0 ENT") && status.contains("ping") && status.contains("ms"),
        "{status}"
    );
    pty.send(b"\r");
    let screen = pty.wait_for("the details with the check", 10, |s| {
        s.text().contains("Check ") && s.text().contains("clock skew")
    });
    let check = screen.line_with("Check ").unwrap();
    assert!(
        check.contains("Administrator (admin, admin) · Sugar 12.0.0 ENT · ping")
            && check.contains("clock skew +0 s"),
        "{check}"
    );
    assert!(screen.text().contains("GET  /me"), "{}", screen.text());
    // Tokens only masked.
    let tokens = screen.line_with("Tokens").unwrap();
    assert!(
        tokens.contains("access ") && tokens.contains('…'),
        "{tokens}"
    );
    pty.send(b"\r");

    // `u` + a user name: an impersonation row right after its profile, with its own countdown
    // and no refresh time.
    pty.send(b"u");
    pty.wait_for("the user prompt", 10, |s| {
        s.text().contains("Impersonate a user through acme-admin")
    });
    pty.send(b"sally\r");
    let screen = pty.wait_for("the impersonation row", 20, |s| {
        let r = row(s, "acme-admin>sally");
        r.contains("● active") && countdown(&r)
    });
    let lines = screen.lines();
    let k = lines
        .iter()
        .position(|l| l.contains(" acme-admin>sally "))
        .unwrap();
    assert!(lines[k - 1].contains(" acme-admin "), "{}", screen.text());
    let sudo = &lines[k];
    assert!(
        sudo.contains("59m"),
        "a fresh token has about an hour: {sudo}"
    );
    assert!(sudo.contains(" — "), "no refresh column value: {sudo}");
    assert!(sudo.contains("sally"), "{sudo}");
    let state = w.dir.path().join("state");
    assert!(cached(&state, "acme-admin>sally"), "stored as NAME>USER");
    // The shell sees it too.
    let out = w.command().args(["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("acme-admin>sally"), "{text}");

    // An unknown user: the admin's row says so plainly, and no row appears.
    pty.send(b"u");
    pty.wait_for("the user prompt", 10, |s| s.text().contains("User:"));
    pty.send(b"nobody\r");
    let screen = pty.wait_for("the 404", 20, |s| row(s, "acme-admin").contains("404"));
    assert!(
        screen.text().contains("Could not find a user named nobody")
            || screen.text().contains("not_found"),
        "{}",
        screen.text()
    );
    assert!(!screen.text().contains("acme-admin>nobody "));

    // `o` on the impersonation logs it out, and its row disappears.
    pty.send(b"j");
    pty.wait_for("the cursor on the impersonation", 10, |s| {
        row(s, "acme-admin>sally").contains('▶')
    });
    pty.send(b"o");
    pty.wait_for("the impersonation to be gone", 20, |s| {
        !s.text().contains(" acme-admin>sally ")
            && s.text().contains("acme-admin>sally: logged out")
    });
    assert!(!cached(&state, "acme-admin>sally"));

    pty.send(b"q");
    let exit = pty
        .wait_exit(Duration::from_secs(10))
        .expect("the screen quits");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

#[test]
fn the_refresh_column_shows_the_hard_end_once_a_refresh_no_longer_extends_the_session() {
    let w = World::new();
    let mut pty = Pty::spawn(w.command(), ROWS, COLS, true);
    pty.wait_for("the table", 20, |s| row(s, "capped").contains("logged out"));
    pty.send(b"G");
    pty.wait_for("the cursor on capped", 10, |s| {
        row(s, "capped").contains('▶')
    });
    pty.send(b"l");
    let screen = pty.wait_for("the login", 20, |s| row(s, "capped").contains("● active"));
    // The refresh token's own expiry (the cap, 15 minutes) before any refresh: not yet known as
    // a hard end.
    let before = row(&screen, "capped");
    assert!(
        before.contains("14m 5") && !before.contains("ends"),
        "{before}"
    );
    // A refresh that does not move the refresh expiry, 10 s or more after the login (right after
    // it, an unmoved expiry proves nothing): from now on the row shows the hard end.
    std::thread::sleep(Duration::from_millis(10_500));
    pty.send(b"r");
    let screen = pty.wait_for("the hard end", 20, |s| {
        row(s, "capped").contains("ends 14m") && row(s, "capped").contains("✓ refresh")
    });
    pty.send(b"\r");
    let screen2 = pty.wait_for("the details", 10, |s| {
        s.text().contains("refreshing no longer extends it")
    });
    assert!(
        screen2.text().contains("max_session_lifetime"),
        "{}\n{}",
        screen.text(),
        screen2.text()
    );
    pty.send(b"q");
    let exit = pty
        .wait_exit(Duration::from_secs(10))
        .expect("the screen quits");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}
