//! The terminal is never left broken: the real binary in a pseudo-terminal, against the in-process
//! emulator, through every way out — a panic, SIGTERM, SIGHUP, SIGINT, SIGQUIT, the Ctrl-C and
//! Ctrl-\\ keys, and the pty vanishing (its master closed, as sshd does when a connection drops,
//! with and without the pty being the controlling terminal) — and through job control (SIGTSTP
//! and the Ctrl-Z key, then SIGCONT). Each way out must restore the terminal where there still is
//! one (raw mode off, cursor shown, alternate screen left), end the process within 2 s with the
//! documented exit status, keep the cache whole (answers received before the end are in it), and
//! leave no process behind.

mod common;
#[path = "common/pty.rs"]
mod pty;

use pty::{Exit, Pty};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use sugar_sessions::emulator::{Emulator, EmulatorConfig, InstanceConfig, UserConfig};

const ROWS: u16 = 30;
const COLS: u16 = 120;
const PASSWORD: &str = "terminal-test-password";
/// Every way out ends the process within this.
const LIMIT: Duration = Duration::from_secs(2);
/// The answer to a request in flight at the end comes this long after it was sent: well within
/// the wait for requests in flight.
const SHORT_LATENCY: Duration = Duration::from_millis(700);

struct Setup {
    _runtime: tokio::runtime::Runtime,
    emulator: Emulator,
    dir: tempfile::TempDir,
}

impl Setup {
    fn profiles(&self) -> PathBuf {
        self.dir.path().join("profiles.toml")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The binary with a clean environment, on our profiles and state directory.
    fn command(&self, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sugar-sessions"));
        cmd.arg("--profiles")
            .arg(self.profiles())
            .arg("--state-dir")
            .arg(self.state());
        cmd.env_clear();
        cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd.env("HOME", self.dir.path());
        cmd.env("TERM", "xterm-256color");
        cmd.env("LANG", "C.UTF-8");
        cmd.env("TERMINAL_TEST_PW", PASSWORD);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// The screen in a new pty, up to the first drawn table.
    fn screen(&self, controlling: bool, env: &[(&str, &str)]) -> Pty {
        let mut pty = Pty::spawn(self.command(env), ROWS, COLS, controlling);
        pty.wait_for("the table", 20, |s| {
            s.line_with("alpha")
                .is_some_and(|l| l.contains("logged out"))
        });
        pty
    }
}

/// Two instances on one emulator (`fast`, and `slow` whose latency a test sets), and profiles
/// `alpha` on fast, `bravo` on slow, and `viacmd` whose password comes from a slow `password_cmd`.
fn setup() -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let instance = |name: &str| {
        InstanceConfig::new(name)
            .with_user(UserConfig::user(
                "integration",
                PASSWORD,
                "Integration User",
            ))
            .with_platform("custom_api")
            .with_platform("cmd_api")
    };
    let config = EmulatorConfig {
        instances: vec![instance("fast"), instance("slow")],
    };
    let emulator = runtime.block_on(common::start_with(config));
    let dir = tempfile::tempdir().unwrap();
    // Each on its own instance or platform: no profile's login ends another's session.
    let profile = |name: &str, instance: &str, platform: &str, password: &str| {
        format!(
            "[profiles.{name}]\nurl = \"{}\"\nusername = \"integration\"\n{password}\nplatform = \"{platform}\"\n\n",
            emulator.url(instance)
        )
    };
    let text = [
        profile(
            "alpha",
            "fast",
            "custom_api",
            "password_env = \"TERMINAL_TEST_PW\"",
        ),
        profile(
            "bravo",
            "slow",
            "custom_api",
            "password_env = \"TERMINAL_TEST_PW\"",
        ),
        // The shell forks `sleep` (it is not the last command): a process of its own to leave
        // behind. The odd duration tells it apart from any other `sleep` on the machine.
        profile(
            "viacmd",
            "fast",
            "cmd_api",
            "password_cmd = \"sleep 30.417; echo never-used\"",
        ),
    ]
    .concat();
    common::write_profiles(dir.path(), &text);
    Setup {
        _runtime: runtime,
        emulator,
        dir,
    }
}

impl Setup {
    /// The screen in a new pty, as a job of a shell with job control (see [`Pty::spawn_job`]), up
    /// to the first drawn table.
    fn job_screen(&self) -> Pty {
        let mut pty = Pty::spawn_job(self.command(&[]), ROWS, COLS);
        pty.wait_for("the table", 20, |s| {
            s.line_with("alpha")
                .is_some_and(|l| l.contains("logged out"))
        });
        pty
    }
}

/// Logs `alpha` in (the first row) and waits until its answer is on the screen, and so in the cache
/// (results are stored before they are reported).
fn log_in_alpha(pty: &mut Pty) {
    pty.send(b"l");
    pty.wait_for("alpha to be active", 20, |s| {
        s.line_with("alpha").is_some_and(|l| l.contains("active"))
    });
}

/// Logs `bravo` in (the second row) with the slow instance answering after `latency`, and waits
/// until the emulator has the request (it is in flight: no answer yet).
fn send_bravo(s: &Setup, pty: &mut Pty, latency: Duration) {
    s.emulator.set_latency("slow", latency);
    pty.send(b"jl");
    let start = Instant::now();
    while !s
        .emulator
        .requests()
        .iter()
        .any(|r| r.instance == "slow" && r.path == "/oauth2/token" && r.status == 0)
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "bravo's login never reached the emulator; the screen:\n{}",
            pty.screen().text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for the end, which must come within [`LIMIT`] of `since`.
fn ended_within_limit(pty: &mut Pty, since: Instant, what: &str) -> Exit {
    // Waits a little longer than the limit, to tell "late" from "never".
    let exit = pty.wait_exit(LIMIT + Duration::from_secs(3));
    let Some(exit) = exit else {
        panic!(
            "the program did not end after {what} (its CPU time: {:?}); the screen:\n{}",
            pty::cpu_time(pty.pid()),
            pty.screen().text()
        );
    };
    let took = exit.at.duration_since(since);
    assert!(
        took < LIMIT,
        "the program took {took:?} to end after {what}"
    );
    exit
}

/// The program left the alternate screen and showed the cursor after it last entered the
/// alternate screen, and the line discipline is back to canonical mode with echo.
fn assert_restored(pty: &Pty) {
    pty.settle();
    let out = pty.bytes();
    let find_last = |needle: &[u8]| out.windows(needle.len()).rposition(|w| w == needle);
    let entered = find_last(b"\x1b[?1049h").expect("the screen was opened");
    let left = find_last(b"\x1b[?1049l").expect("the alternate screen was left");
    let shown = find_last(b"\x1b[?25h").expect("the cursor was shown");
    assert!(
        left > entered && shown > entered,
        "restore sequences only before the screen was opened: {:?}",
        String::from_utf8_lossy(&out[out.len().saturating_sub(300)..])
    );
    let screen = pty.screen();
    assert_eq!(
        screen.modes.get(&1049),
        Some(&false),
        "on the alternate screen"
    );
    assert_eq!(screen.modes.get(&25), Some(&true), "the cursor is hidden");
    assert!(pty.cooked(), "raw mode is still on (no ICANON or no ECHO)");
}

/// The cache file parses; returns it.
fn cache(state: &Path) -> serde_json::Value {
    let path = state.join("sessions.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the cache {} cannot be read: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("the cache does not parse: {e}\n{text}"))
}

fn has_session(cache: &serde_json::Value, name: &str) -> bool {
    common::cached(cache, name)["session"]["access_token"].is_string()
}

/// Nothing the program started is still running (the program had a session of its own).
fn assert_nothing_left(pty: &Pty) {
    let left = pty::session_members(pty.session());
    assert!(
        left.is_empty(),
        "processes left behind: {:?}",
        left.iter()
            .map(|p| format!("{p}: {}", pty::cmdline(*p)))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_panic_restores_the_terminal_then_prints_the_message_and_fails() {
    let s = setup();
    // A session in the cache before the screen opens: the panic must not damage it.
    let login = s
        .command(&[])
        .args(["login", "alpha"])
        .output()
        .expect("the binary runs");
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );

    let mut pty = Pty::spawn(
        s.command(&[("SUGAR_SESSIONS_TEST_PANIC", "after-first-frame")]),
        ROWS,
        COLS,
        true,
    );
    let exit = pty
        .wait_exit(Duration::from_secs(20))
        .expect("the program ends after its panic");
    let opened = pty
        .first_seen(b"\x1b[?1049h")
        .expect("the screen was opened");
    let took = exit.at.duration_since(opened);
    assert!(took < LIMIT, "the panic took {took:?} to end the program");
    assert!(
        exit.code().is_some_and(|c| c != 0),
        "a panic must fail: {exit:?}"
    );
    assert_restored(&pty);

    // The message comes after the terminal was restored, so that it stays readable.
    let out = pty.bytes();
    let text = String::from_utf8_lossy(&out);
    let message = text
        .find("SUGAR_SESSIONS_TEST_PANIC")
        .unwrap_or_else(|| panic!("no panic message in the output:\n{text}"));
    let restored = text.rfind("\x1b[?1049l").unwrap();
    assert!(
        message > restored,
        "the panic message was printed before the terminal was restored"
    );
    assert!(text[restored..].contains("panicked"), "{text}");

    let cache = cache(&s.state());
    assert!(has_session(&cache, "alpha"), "{cache}");
    assert_nothing_left(&pty);
}

#[test]
fn sigterm_restores_stores_the_answer_in_flight_and_exits_143() {
    let s = setup();
    let mut pty = s.screen(true, &[]);
    log_in_alpha(&mut pty);
    send_bravo(&s, &mut pty, SHORT_LATENCY);

    let signalled = pty.kill(libc::SIGTERM);
    let exit = ended_within_limit(&mut pty, signalled, "SIGTERM");
    assert_eq!(exit.code(), Some(143), "{exit:?}");
    assert_restored(&pty);
    let cache = cache(&s.state());
    assert!(has_session(&cache, "alpha"), "{cache}");
    assert!(
        has_session(&cache, "bravo"),
        "the answer to the request in flight was not waited for: {cache}"
    );
    assert_nothing_left(&pty);
}

#[test]
fn sighup_restores_and_exits_129_without_waiting_long_for_a_slow_server() {
    let s = setup();
    let mut pty = s.screen(true, &[]);
    log_in_alpha(&mut pty);
    // An answer that would come far later than the program may wait.
    send_bravo(&s, &mut pty, Duration::from_secs(30));

    let signalled = pty.kill(libc::SIGHUP);
    let exit = ended_within_limit(&mut pty, signalled, "SIGHUP");
    assert_eq!(exit.code(), Some(129), "{exit:?}");
    assert_restored(&pty);
    let cache = cache(&s.state());
    assert!(has_session(&cache, "alpha"), "{cache}");
    assert!(!has_session(&cache, "bravo"), "{cache}");
    assert_nothing_left(&pty);
}

#[test]
fn sigint_restores_and_exits_130() {
    let s = setup();
    let mut pty = s.screen(true, &[]);
    log_in_alpha(&mut pty);
    let signalled = pty.kill(libc::SIGINT);
    let exit = ended_within_limit(&mut pty, signalled, "SIGINT");
    assert_eq!(exit.code(), Some(130), "{exit:?}");
    assert_restored(&pty);
    assert!(has_session(&cache(&s.state()), "alpha"));
    assert_nothing_left(&pty);
}

#[test]
fn the_ctrl_c_key_restores_waits_for_the_request_in_flight_and_exits_0() {
    let s = setup();
    let mut pty = s.screen(true, &[]);
    log_in_alpha(&mut pty);
    send_bravo(&s, &mut pty, SHORT_LATENCY);

    // In raw mode Ctrl-C is a byte for the program, not a signal.
    pty.send(b"\x03");
    let pressed = Instant::now();
    let exit = ended_within_limit(&mut pty, pressed, "Ctrl-C");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert_restored(&pty);
    let cache = cache(&s.state());
    assert!(has_session(&cache, "alpha"), "{cache}");
    assert!(has_session(&cache, "bravo"), "{cache}");
    assert_nothing_left(&pty);
}

/// The pty's master closes while a request is in flight: the program ends within the limit, having
/// stored the answer, and without spinning on the dead terminal meanwhile.
fn vanish(controlling: bool) {
    let s = setup();
    let mut pty = s.screen(controlling, &[]);
    log_in_alpha(&mut pty);
    // Long enough to see a spin, short enough to be waited for.
    send_bravo(&s, &mut pty, Duration::from_millis(1000));

    let before = pty::cpu_time(pty.pid()).expect("the program runs");
    let closed = pty.close_master();
    let exit = ended_within_limit(&mut pty, closed, "the terminal vanished");
    let wall = exit.at.duration_since(closed);
    let cpu = exit.cpu.saturating_sub(before);
    assert!(
        cpu < Duration::from_millis(150),
        "the program used {cpu:?} of CPU in the {wall:?} between the terminal vanishing and its end"
    );
    assert_eq!(
        exit.code(),
        Some(129),
        "a vanished terminal is a hang-up: {exit:?}"
    );
    let cache = cache(&s.state());
    assert!(has_session(&cache, "alpha"), "{cache}");
    assert!(
        has_session(&cache, "bravo"),
        "the answer to the request in flight was not waited for: {cache}"
    );
    assert_nothing_left(&pty);
}

#[test]
fn the_controlling_terminal_vanishing_ends_the_program_without_spinning() {
    // As under sshd: the kernel also sends SIGHUP.
    vanish(true);
}

#[test]
fn a_terminal_that_is_not_the_controlling_one_vanishing_ends_the_program_without_spinning() {
    // No SIGHUP: only the terminal itself (reads at end of file, writes failing) says it is gone.
    vanish(false);
}

#[test]
fn a_password_cmd_still_running_at_the_end_is_killed_with_its_children() {
    let s = setup();
    let mut pty = s.screen(true, &[]);
    // The last row: its password_cmd runs `sleep 30` in a child of its shell.
    pty.send(b"Gl");
    let start = Instant::now();
    // It runs in a session of its own (no controlling terminal): found by its command line.
    while pty::processes_with_cmdline("sleep 30.417").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the password_cmd did not start; the screen:\n{}",
            pty.screen().text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let signalled = pty.kill(libc::SIGTERM);
    let exit = ended_within_limit(&mut pty, signalled, "SIGTERM");
    assert_eq!(exit.code(), Some(143), "{exit:?}");
    assert_restored(&pty);
    assert_nothing_left(&pty);
    let start = Instant::now();
    while !pty::processes_with_cmdline("sleep 30.417").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the password_cmd's sleep was left running"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The terminal stops reading (a stalled SSH connection: the pty's buffer fills and the program's
/// next write blocks for ever). A signal still ends the program in time, with raw mode off.
#[test]
fn a_stalled_terminal_does_not_hold_the_program_past_the_limit() {
    let s = setup();
    let mut pty = s.screen(true, &[]);
    pty.pause_reading(true);
    // Each `?` opens or closes the help, a redraw of much of the screen: enough to fill the
    // buffer many times over.
    let start = Instant::now();
    while pty.main_thread_syscall() != Some(libc::SYS_write) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the program's writes never blocked (its main thread is in system call {:?})",
            pty.main_thread_syscall()
        );
        pty.send(b"??");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        pty.main_thread_syscall(),
        Some(libc::SYS_write),
        "blocked writing to the terminal"
    );

    let signalled = pty.kill(libc::SIGTERM);
    let exit = ended_within_limit(&mut pty, signalled, "SIGTERM to a stalled terminal");
    assert_eq!(exit.code(), Some(143), "{exit:?}");
    assert!(pty.cooked(), "raw mode is still on (no ICANON or no ECHO)");
    assert_nothing_left(&pty);
}

/// The demo (its own emulator and a temporary state directory) ends in time too, and its
/// temporary directory (with the demo's tokens) is removed on the way.
#[test]
fn the_demo_ends_in_time_and_removes_its_temporary_directory() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sugar-sessions"));
    cmd.arg("demo").env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("HOME", dir.path());
    cmd.env("TMPDIR", &tmp);
    cmd.env("TERM", "xterm-256color");
    cmd.env("LANG", "C.UTF-8");
    let mut pty = Pty::spawn(cmd, ROWS, COLS, true);
    pty.wait_for("the demo's table", 20, |s| s.text().contains("logged out"));
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        1,
        "the demo's temporary directory"
    );
    // A session, and so a connection to the demo's emulator that its shutdown must not wait on.
    pty.send(b"l");
    pty.wait_for("a demo login", 20, |s| s.text().contains("active"));

    let signalled = pty.kill(libc::SIGTERM);
    let exit = ended_within_limit(&mut pty, signalled, "SIGTERM");
    assert_eq!(exit.code(), Some(143), "{exit:?}");
    assert_restored(&pty);
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "the demo left {left:?}");
    assert_nothing_left(&pty);
}

/// Commands print to a pipe whose reader left (EPIPE: Rust ignores SIGPIPE) or to a terminal that
/// went away (EIO) without panicking: the output is dropped and the status is the command's own.
#[test]
fn output_to_a_closed_pipe_or_a_vanished_terminal_does_not_panic() {
    let s = setup();
    let closed_pipe = || {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two new descriptors, owned from here on.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read);
        write
    };
    let vanished_terminal = || {
        let (master, slave) = pty::openpty(ROWS, COLS);
        drop(master);
        slave
    };
    for (sink, stdout) in [
        ("a closed pipe", closed_pipe()),
        ("a vanished terminal", vanished_terminal()),
    ] {
        for command in [&["list"][..], &["status"], &["--help"]] {
            let out = s
                .command(&[])
                .args(command)
                .stdout(stdout.try_clone().unwrap())
                .stderr(std::process::Stdio::piped())
                .output()
                .expect("the binary runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{command:?} to {sink}: {}; stderr: {stderr}",
                out.status
            );
            assert!(
                !stderr.contains("panicked"),
                "{command:?} to {sink}: {stderr}"
            );
        }
    }
}

#[test]
fn sigquit_restores_and_exits_131() {
    let s = setup();
    let mut pty = s.screen(true, &[]);
    log_in_alpha(&mut pty);
    let signalled = pty.kill(libc::SIGQUIT);
    let exit = ended_within_limit(&mut pty, signalled, "SIGQUIT");
    assert_eq!(exit.code(), Some(131), "{exit:?}");
    assert_restored(&pty);
    assert!(has_session(&cache(&s.state()), "alpha"));
    assert_nothing_left(&pty);
}

#[test]
fn the_ctrl_backslash_key_quits_like_q() {
    let s = setup();
    let mut pty = s.screen(true, &[]);
    // In raw mode Ctrl-\ is a byte for the program, not SIGQUIT.
    pty.send(b"\x1c");
    let pressed = Instant::now();
    let exit = ended_within_limit(&mut pty, pressed, "Ctrl-\\");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert_restored(&pty);
    assert_nothing_left(&pty);
}

/// The program's state in `/proc` comes to be (or stays) `state` within `secs`.
fn wait_state(pty: &Pty, state: char, secs: u64) {
    let start = Instant::now();
    while pty::process_state(pty.pid()) != Some(state) {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "the program is in state {:?}, not {state:?}; the screen:\n{}",
            pty::process_state(pty.pid()),
            pty.screen().text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The screen is suspended by `suspend`: it gives the terminal back (alternate screen left, cursor
/// shown, raw mode off) and then stops, and stays stopped; SIGCONT (what `fg` sends) brings it
/// back in raw mode on the alternate screen, drawn in full; then `q` quits with 0.
fn suspend_and_continue(s: &Setup, suspend: impl FnOnce(&mut Pty)) {
    let mut pty = s.job_screen();
    log_in_alpha(&mut pty);
    assert!(!pty.cooked(), "raw mode is on while the screen is up");
    let before = pty.bytes().len();
    suspend(&mut pty);
    wait_state(&pty, 'T', 10);
    // What it wrote before stopping has been read, and it has written nothing since.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pty::process_state(pty.pid()), Some('T'), "it stays stopped");
    let out = pty.bytes()[before..].to_vec();
    let find = |needle: &[u8]| out.windows(needle.len()).rposition(|w| w == needle);
    assert!(
        find(b"\x1b[?1049l").is_some() && find(b"\x1b[?25h").is_some(),
        "the terminal was not restored before stopping: {:?}",
        String::from_utf8_lossy(&out)
    );
    let screen = pty.screen();
    assert_eq!(
        screen.modes.get(&1049),
        Some(&false),
        "on the alternate screen while stopped"
    );
    assert_eq!(
        screen.modes.get(&25),
        Some(&true),
        "the cursor is hidden while stopped"
    );
    assert!(pty.cooked(), "raw mode is still on while stopped");

    let stopped_at = pty.bytes().len();
    pty.kill(libc::SIGCONT);
    // The alternate screen again, erased, and the whole table drawn anew after it: the emulated
    // screen is blank after entering the alternate screen, so the lines below come from a full
    // redraw.
    let screen = pty.wait_for("the screen drawn again", 10, |screen| {
        screen.modes.get(&1049) == Some(&true)
            && screen.modes.get(&25) == Some(&false)
            && screen
                .line_with("NAME")
                .is_some_and(|l| l.contains("STATE"))
            && screen
                .line_with("alpha")
                .is_some_and(|l| l.contains("active"))
            && screen
                .line_with("bravo")
                .is_some_and(|l| l.contains("logged out"))
    });
    let again = pty.bytes()[stopped_at..].to_vec();
    assert!(
        again.windows(8).any(|w| w == b"\x1b[?1049h"),
        "the alternate screen was not entered again: {}",
        screen.text()
    );
    assert!(!pty.cooked(), "raw mode is not back on");
    assert_ne!(pty::process_state(pty.pid()), Some('T'));
    // And it works as before.
    pty.send(b"q");
    let exit = ended_within_limit(&mut pty, Instant::now(), "q");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert_restored(&pty);
    assert_nothing_left(&pty);
}

#[test]
fn sigtstp_gives_the_terminal_back_stops_and_sigcont_draws_the_screen_again() {
    let s = setup();
    suspend_and_continue(&s, |pty| {
        pty.kill(libc::SIGTSTP);
    });
}

#[test]
fn the_ctrl_z_key_suspends_like_sigtstp() {
    let s = setup();
    // In raw mode Ctrl-Z is a byte for the program, not SIGTSTP.
    suspend_and_continue(&s, |pty| pty.send(b"\x1a"));
}

/// Without a shell that could continue it (its process group is orphaned, as when it is run by
/// `ssh -t host sugar-sessions`), a stop would leave it stopped for good: the kernel drops
/// SIGTSTP there, and the screen says so and stays.
#[test]
fn without_job_control_ctrl_z_says_so_and_the_screen_stays() {
    let s = setup();
    let mut pty = s.screen(true, &[]);
    let before = pty.bytes().len();
    pty.send(b"\x1a");
    pty.wait_for("the notice", 10, |screen| {
        screen.text().contains("cannot suspend")
    });
    pty.kill(libc::SIGTSTP);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pty::process_state(pty.pid()).map(|c| c != 'T'), Some(true));
    let out = pty.bytes()[before..].to_vec();
    assert!(
        !out.windows(8).any(|w| w == b"\x1b[?1049l"),
        "the screen was left: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert!(!pty.cooked());
    log_in_alpha(&mut pty);
    pty.send(b"q");
    let exit = ended_within_limit(&mut pty, Instant::now(), "q");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert_restored(&pty);
}
