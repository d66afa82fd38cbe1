//! The screen as a whole program: the real binary in a pseudo-terminal against an emulator fleet
//! in another process (100 loopback hosts, 100 ms latency).
//!
//! - idle: 100 active sessions, `IDLE_SECS` (default 60) seconds: CPU used and bytes written to the
//!   terminal per second;
//! - time from start to the first frame;
//! - keys under load: after `a` (select all) and `l` (log in) on 1,000 profiles, the time from a
//!   key press (`j`/`k`) to the frame that shows its effect, while the requests are in flight;
//! - peak RSS of the screen after that bulk login of 1,000 profiles.
//!
//! `cargo bench --bench whole_program` (about 90 s; `IDLE_SECS=10` for a quick look).

mod common;

use common::pty::{Pty, Screen, cpu_time};
use common::{Fleet, FleetServer, ms, report, write_private};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const ROWS: u16 = 50;
const COLS: u16 = 200;

fn screen_cmd(profiles: &Path, state: &Path) -> Command {
    let mut cmd = common::on_world(profiles, state, &[]);
    cmd.env("TERM", "xterm-256color")
        .env("LANG", "C.UTF-8")
        .env_remove("NO_COLOR");
    cmd
}

fn header(s: &Screen) -> String {
    s.lines().into_iter().next().unwrap_or_default()
}

/// Nothing queued or in flight (the header shows it while there is).
fn settled(s: &Screen) -> bool {
    let h = header(s);
    !h.contains("in flight") && !h.contains("queued")
}

fn first_frame(s: &Screen) -> bool {
    s.contains(" Profiles ")
}

fn main() {
    if common::measure_if_asked() || common::serve_if_asked() {
        return;
    }
    let idle_secs: u64 = std::env::var("IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    println!("whole program: {}", common::machine());
    let tmp = tempfile::tempdir().expect("tempdir");
    let fleet = Fleet {
        hosts: 100,
        users_per_host: 10,
        latency: Duration::from_millis(100),
        tls: false,
    };
    let server = FleetServer::start(fleet, &tmp.path().join("ca.pem")).expect("fleet server");
    println!(
        "  world: emulators on 127.0.0.1..=127.0.0.100 in another process, 100 ms latency; a {COLS}x{ROWS} pseudo-terminal; bounds 64 / 8 per host"
    );

    // Idle with 100 active sessions (logged in by the shell command first).
    let profiles = tmp.path().join("idle.toml");
    write_private(&profiles, &server.profiles_toml(100, 64, 8));
    let state = tmp.path().join("idle-state");
    let mut login = screen_cmd(&profiles, &state);
    login.args(["login", "--all"]);
    let out = common::measure(login);
    assert_eq!(out.status, 0, "login --all of the idle world failed");
    let mut firsts = Vec::new();
    for _ in 0..5 {
        let mut pty = Pty::spawn(screen_cmd(&profiles, &state), ROWS, COLS, true);
        let at = pty.wait_until(Duration::from_secs(5), first_frame);
        firsts.push(at.map(|t| t - pty.started));
        // Let the start-up checks of the cached sessions finish before quitting.
        pty.wait_until(Duration::from_secs(10), settled);
        pty.quit(Duration::from_secs(5));
    }
    let mut firsts: Vec<Duration> = firsts.into_iter().flatten().collect();
    let first = (!firsts.is_empty()).then(|| common::median(&mut firsts));

    let mut pty = Pty::spawn(screen_cmd(&profiles, &state), ROWS, COLS, true);
    pty.wait_until(Duration::from_secs(5), first_frame)
        .expect("the screen shows its first frame");
    pty.wait_until(Duration::from_secs(20), |s| {
        settled(s) && header(s).contains("100 active")
    })
    .expect("100 active sessions, checked");
    std::thread::sleep(Duration::from_secs(2));
    let cpu = |pid| cpu_time(pid).unwrap_or_default();
    let (cpu0, bytes0, t0) = (cpu(pty.pid()), pty.bytes_written(), Instant::now());
    std::thread::sleep(Duration::from_secs(idle_secs));
    let (cpu1, bytes1, t1) = (cpu(pty.pid()), pty.bytes_written(), Instant::now());
    let span = (t1 - t0).as_secs_f64();
    let cpu_share = (cpu1 - cpu0).as_secs_f64() / span * 100.0;
    let rate = (bytes1 - bytes0) as f64 / span;
    let idle_rss = common::vm_hwm_kib(pty.pid()).unwrap_or(0);
    pty.quit(Duration::from_secs(5));

    println!("\nthe screen, 100 active sessions, idle for {idle_secs} s:");
    report(
        "CPU",
        format!("{cpu_share:.2}% of a core ({:.0} ms)", ms(cpu1 - cpu0)),
        "<= 0.5%",
        Some(cpu_share <= 0.5),
    );
    report(
        "written to the terminal",
        format!("{rate:.0} B/s"),
        "<= 1.5 KB/s",
        Some(rate <= 1500.0),
    );
    report(
        "peak RSS",
        format!("{:.1} MB", idle_rss as f64 / 1024.0),
        "",
        None,
    );
    match first {
        Some(f) => report(
            "time to the first frame (median of 5 starts)",
            format!("{:.0} ms", ms(f)),
            "<= 100 ms",
            Some(f <= Duration::from_millis(100)),
        ),
        None => println!("  the first frame never came"),
    }

    // 1,000 profiles: select all, log in, and keys while the requests are in flight.
    let profiles = tmp.path().join("load.toml");
    write_private(&profiles, &server.profiles_toml(1000, 64, 8));
    let state = tmp.path().join("load-state");
    let mut pty = Pty::spawn(screen_cmd(&profiles, &state), ROWS, COLS, true);
    let first_1000 = pty
        .wait_until(Duration::from_secs(5), first_frame)
        .map(|t| t - pty.started);
    pty.send(b"a");
    pty.wait_until(Duration::from_secs(5), |s| s.contains("1000 selected"))
        .expect("all 1,000 selected");
    let pressed = Instant::now();
    pty.send(b"l");
    pty.wait_until(Duration::from_secs(5), |s| !settled(s))
        .expect("requests in flight");
    let mut lags = Vec::new();
    let mut down = true;
    loop {
        if pty.with_screen(settled) {
            break;
        }
        let (key, expect) = if down {
            (b"j", "p0001")
        } else {
            (b"k", "p0000")
        };
        let sent = Instant::now();
        pty.send(key);
        let seen = pty.wait_until(Duration::from_secs(2), |s| {
            s.line_with("▶").is_some_and(|l| l.contains(expect))
        });
        match seen {
            Some(t) => lags.push(t - sent),
            None => {
                println!("  a key press showed no effect within 2 s");
                break;
            }
        }
        down = !down;
        std::thread::sleep(Duration::from_millis(25));
    }
    pty.wait_until(Duration::from_secs(30), |s| {
        settled(s) && header(s).contains("1000 active")
    })
    .expect("1,000 active sessions");
    let bulk = pressed.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let rss = common::vm_hwm_kib(pty.pid()).unwrap_or(0);
    pty.quit(Duration::from_secs(5));

    println!("\nthe screen, 1000 profiles, a (select all) then l (log in):");
    if let Some(f) = first_1000 {
        report(
            "time to the first frame, 1000 profiles",
            format!("{:.0} ms", ms(f)),
            "<= 100 ms",
            Some(f <= Duration::from_millis(100)),
        );
    }
    report(
        "bulk login on the screen, until all show active",
        format!("{:.0} ms", ms(bulk)),
        "(floor 1600 ms)",
        None,
    );
    if lags.is_empty() {
        println!("  no key press was measured while requests were in flight");
    } else {
        let n = lags.len();
        let max = *lags.iter().max().unwrap();
        let med = common::median(&mut lags);
        report(
            &format!("key press to changed frame under load ({n} presses)"),
            format!("{:.1} ms (max {:.1})", ms(med), ms(max)),
            "<= 50 ms",
            Some(max <= Duration::from_millis(50)),
        );
    }
    report(
        "peak RSS after the bulk login",
        format!("{:.1} MB", rss as f64 / 1024.0),
        "<= 30 MB",
        Some(rss <= 30 * 1024),
    );
}
