//! The real binary in a pseudo-terminal, against the in-process emulator: log in with keys, see the
//! row become active with a countdown, log out, quit, and find the terminal restored.
//!
//! The pty comes from `openpty(3)` (through `libc`), and [`Screen`] is a small VT parser that
//! understands what a ratatui + crossterm program writes (cursor moves, erases, SGR, private
//! modes), enough to read the screen as a person would.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sugar_sessions::emulator::{Emulator, EmulatorConfig, InstanceConfig, UserConfig};

const COLS: u16 = 120;
const ROWS: u16 = 30;
const PASSWORD: &str = "pty-test-password";

// ---------------------------------------------------------------------------------------------
// A minimal terminal.
// ---------------------------------------------------------------------------------------------

/// The terminal state after feeding it everything the program wrote.
struct Screen {
    grid: Vec<Vec<char>>,
    row: usize,
    col: usize,
    /// Private modes by number (`?1049`, `?25`, `?2004`), last value set.
    modes: HashMap<u32, bool>,
}

impl Screen {
    fn parse(bytes: &[u8]) -> Screen {
        let mut s = Screen {
            grid: vec![vec![' '; usize::from(COLS)]; usize::from(ROWS)],
            row: 0,
            col: 0,
            modes: HashMap::new(),
        };
        let text = String::from_utf8_lossy(bytes);
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\x1b' => match chars.next() {
                    Some('[') => {
                        let mut params = String::new();
                        let mut fin = None;
                        for p in chars.by_ref() {
                            if ('\x40'..='\x7e').contains(&p) {
                                fin = Some(p);
                                break;
                            }
                            params.push(p);
                        }
                        if let Some(f) = fin {
                            s.csi(&params, f);
                        }
                    }
                    Some(']') => {
                        // OSC: up to BEL or ESC \.
                        while let Some(p) = chars.next() {
                            if p == '\x07' || (p == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                                break;
                            }
                        }
                    }
                    Some('(') | Some(')') => {
                        chars.next();
                    }
                    _ => {}
                },
                '\r' => s.col = 0,
                '\n' => s.row = (s.row + 1).min(usize::from(ROWS) - 1),
                '\x08' => s.col = s.col.saturating_sub(1),
                c if c.is_control() => {}
                c => {
                    if s.col < usize::from(COLS) {
                        s.grid[s.row][s.col] = c;
                    }
                    s.col += 1;
                }
            }
        }
        s
    }

    fn csi(&mut self, params: &str, fin: char) {
        if let Some(private) = params.strip_prefix('?') {
            for p in private.split(';').filter_map(|p| p.parse::<u32>().ok()) {
                let on = fin == 'h';
                if p == 1049 && on {
                    self.clear();
                }
                self.modes.insert(p, on);
            }
            return;
        }
        let nums: Vec<usize> = params.split(';').map(|p| p.parse().unwrap_or(0)).collect();
        let n =
            |i: usize, default: usize| nums.get(i).copied().filter(|v| *v != 0).unwrap_or(default);
        let (w, h) = (usize::from(COLS), usize::from(ROWS));
        match fin {
            'H' | 'f' => {
                self.row = (n(0, 1) - 1).min(h - 1);
                self.col = (n(1, 1) - 1).min(w - 1);
            }
            'A' => self.row = self.row.saturating_sub(n(0, 1)),
            'B' => self.row = (self.row + n(0, 1)).min(h - 1),
            'C' => self.col = (self.col + n(0, 1)).min(w - 1),
            'D' => self.col = self.col.saturating_sub(n(0, 1)),
            'G' => self.col = (n(0, 1) - 1).min(w - 1),
            'J' => match nums.first().copied().unwrap_or(0) {
                2 | 3 => self.clear(),
                0 => {
                    for c in self.col..w {
                        self.grid[self.row][c] = ' ';
                    }
                    for r in self.row + 1..h {
                        self.grid[r].fill(' ');
                    }
                }
                _ => {}
            },
            'K' => {
                for c in self.col.min(w)..w {
                    self.grid[self.row][c] = ' ';
                }
            }
            _ => {}
        }
    }

    fn clear(&mut self) {
        for r in &mut self.grid {
            r.fill(' ');
        }
    }

    fn lines(&self) -> Vec<String> {
        self.grid
            .iter()
            .map(|r| r.iter().collect::<String>())
            .collect()
    }

    fn text(&self) -> String {
        self.lines().join("\n")
    }

    fn line_with(&self, needle: &str) -> Option<String> {
        self.lines().into_iter().find(|l| l.contains(needle))
    }
}

// ---------------------------------------------------------------------------------------------
// The program in a pty.
// ---------------------------------------------------------------------------------------------

struct Pty {
    master: OwnedFd,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave): (RawFd, RawFd) = (-1, -1);
    let size = libc::winsize {
        ws_row: ROWS,
        ws_col: COLS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two file descriptors; the name and termios pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty failed: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

impl Pty {
    fn spawn(profiles: &Path, state: &Path, env: &[(&str, &str)]) -> Pty {
        let (master, slave) = openpty();
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
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        cmd.stdin(io(&slave)).stdout(io(&slave)).stderr(io(&slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("the binary starts");
        drop(slave);
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = output.clone();
        let mut reader = File::from(master.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // Ends with EIO once the child has exited and the slave side is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            child,
            output,
        }
    }

    fn send(&self, keys: &str) {
        let mut f = File::from(self.master.try_clone().unwrap());
        f.write_all(keys.as_bytes()).unwrap();
        f.flush().unwrap();
    }

    fn bytes(&self) -> Vec<u8> {
        self.output.lock().unwrap().clone()
    }

    fn screen(&self) -> Screen {
        Screen::parse(&self.bytes())
    }

    /// Waits until the screen satisfies `ok`; panics with the screen after `secs`.
    fn wait_for(&mut self, what: &str, secs: u64, ok: impl Fn(&Screen) -> bool) -> Screen {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the program exited ({status}) while waiting for {what}:\n{}",
                    screen.text()
                );
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!(
                    "timed out waiting for {what}; the screen:\n{}",
                    screen.text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                let _ = self.child.kill();
                panic!(
                    "the program did not exit; the screen:\n{}",
                    self.screen().text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The terminal's line discipline is back in canonical mode with echo (raw mode is off).
    fn cooked(&self) -> bool {
        // SAFETY: tcgetattr fills a termios for a valid descriptor.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::tcgetattr(self.master.as_raw_fd(), &mut t) };
        assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        t.c_lflag & libc::ICANON != 0 && t.c_lflag & libc::ECHO != 0
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks that the program left the alternate screen and showed the cursor after it last entered
/// the alternate screen, and that raw mode is off.
fn assert_restored(pty: &Pty) {
    let out = pty.bytes();
    let find_last = |needle: &[u8]| out.windows(needle.len()).rposition(|w| w == needle);
    let entered = find_last(b"\x1b[?1049h").expect("the screen was opened");
    let left = find_last(b"\x1b[?1049l").expect("the alternate screen was left");
    let shown = find_last(b"\x1b[?25h").expect("the cursor was shown");
    assert!(
        left > entered && shown > entered,
        "restore sequences before the screen was opened"
    );
    let screen = Screen::parse(&out);
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
    let config = EmulatorConfig {
        instances: vec![
            InstanceConfig::new("acme")
                .with_user(UserConfig::user(
                    "integration",
                    PASSWORD,
                    "Integration User",
                ))
                .with_platform("custom_api"),
        ],
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
    v["profiles"][name]["session"].is_object()
}

#[test]
fn log_in_see_the_countdown_log_out_quit_and_the_terminal_is_restored() {
    let s = setup();
    let profiles = s.dir.path().join("profiles.toml");
    let state = s.dir.path().join("state");
    let mut pty = Pty::spawn(&profiles, &state, &[("PTY_TEST_PW", PASSWORD)]);

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
    // user on the same platform (each login ends the other's session): the platform guard asks
    // once, with the warning.
    pty.send("l");
    pty.wait_for("the platform guard's question", 10, |s| {
        s.text().contains("Log in to acme-sbx?")
            && s.text().contains("other also logs in as integration")
    });
    pty.send("y");
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
    pty.send("\r");
    pty.wait_for("the details pane", 10, |s| {
        s.text().contains("POST /oauth2/token")
    });
    pty.send("\r");

    // Log out with `o` (one profile, not tagged prod: no question).
    pty.send("o");
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

    pty.send("q");
    let status = pty.wait_exit(10);
    assert!(status.success(), "exit status {status}");
    assert_restored(&pty);
}

#[test]
fn sigterm_restores_the_terminal() {
    let s = setup();
    let profiles = s.dir.path().join("profiles.toml");
    let state = s.dir.path().join("state");
    let mut pty = Pty::spawn(&profiles, &state, &[("PTY_TEST_PW", PASSWORD)]);
    pty.wait_for("the table", 20, |s| s.line_with("acme-sbx").is_some());
    // SAFETY: kill sends a signal to our own child.
    unsafe {
        libc::kill(pty.child.id() as i32, libc::SIGTERM);
    }
    pty.wait_exit(10);
    assert_restored(&pty);
}
