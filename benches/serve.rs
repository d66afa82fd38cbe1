//! The daemon at rest: `serve` keeping 1,000 sessions with one-hour tokens (no refresh due in the
//! measured minute), its CPU and peak RSS over `SERVE_IDLE_SECS` (60), and the time of a scrape of
//! `/metrics` (median of 30).
//!
//! `cargo bench --bench serve` (about 70 s). `SERVE_PROFILES` sets the number of profiles.

mod common;

use common::pty::cpu_time;
use common::{median, ms, report, vm_hwm_kib};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn scrape(addr: &str) -> (Duration, usize) {
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = Vec::new();
    stream.read_to_end(&mut body).unwrap();
    assert!(body.starts_with(b"HTTP/1.1 200"), "the scrape failed");
    (started.elapsed(), body.len())
}

fn main() {
    let n = env_usize("SERVE_PROFILES", 1000);
    let idle = Duration::from_secs(env_usize("SERVE_IDLE_SECS", 60) as u64);
    println!("serve: {}", common::machine());
    let tmp = tempfile::tempdir().expect("tempdir");
    // One-hour tokens with at least 49 minutes left: nothing is due while it is measured.
    let (profiles, state) = common::full_cache_world(tmp.path(), n, 100);
    println!(
        "  world: {n} profiles, {n} active sessions (one-hour tokens), nothing due; idle {} s",
        idle.as_secs()
    );
    let mut child = common::on_world(
        &profiles,
        &state,
        &[
            "serve",
            "--all",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
    )
    .env("SUGAR_SESSIONS_LOG", "info")
    .env_remove("NOTIFY_SOCKET")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("serve starts");
    let pid = child.id() as libc::pid_t;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == "serving"
            {
                let _ = tx.send(v["listen"].as_str().unwrap_or_default().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the daemon says where it serves");
    // Settled: the first rounds read the cache.
    std::thread::sleep(Duration::from_secs(3));
    let cpu_before = cpu_time(pid).expect("cpu time");
    let started = Instant::now();
    std::thread::sleep(idle);
    let cpu = cpu_time(pid).expect("cpu time") - cpu_before;
    let share = cpu.as_secs_f64() / started.elapsed().as_secs_f64() * 100.0;
    report(
        &format!("serve, {n} kept sessions, idle: CPU"),
        format!("{share:.3}% of a core"),
        "<= 0.2%",
        Some(share <= 0.2),
    );
    let mut scrapes = Vec::new();
    let mut size = 0;
    for _ in 0..33 {
        let (took, len) = scrape(&addr);
        scrapes.push(took);
        size = len;
    }
    let mut measured = scrapes.split_off(3);
    let med = median(&mut measured);
    report(
        &format!("scrape of /metrics, {n} profiles: wall median"),
        format!("{:.1} ms", ms(med)),
        "<= 20 ms",
        Some(med <= Duration::from_millis(20)),
    );
    report(
        "  exposition",
        format!("{:.0} KiB", size as f64 / 1024.0),
        "",
        None,
    );
    let rss = vm_hwm_kib(pid).unwrap_or(0);
    report(
        "serve: peak RSS",
        format!("{:.1} MB", rss as f64 / 1024.0),
        "<= 30 MB",
        Some(rss <= 30 * 1024),
    );
    // SAFETY: signals our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = child.wait();
}
