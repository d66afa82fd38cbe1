//! Start-up of the real binary: `status --json` with 1,000 profiles and a full token cache.
//!
//! `cargo bench --bench startup` (about a second). `STARTUP_RUNS` sets the number of timed runs.

mod common;

use common::{binary, measure, median, ms, report};
use std::process::Command;
use std::time::Duration;

fn main() {
    let n: usize = std::env::var("STARTUP_PROFILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let runs: usize = std::env::var("STARTUP_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    println!("start-up: {}", common::machine());
    let tmp = tempfile::tempdir().expect("tempdir");
    let (profiles, state) = common::full_cache_world(tmp.path(), n, 100);
    let cache_len = std::fs::metadata(state.join("sessions.json"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "  world: {n} profiles, a token cache of {n} active sessions ({:.0} KiB); {runs} runs after 3 warm-ups, stdout to a pipe",
        cache_len as f64 / 1024.0
    );
    let run = || {
        let mut cmd = Command::new(binary());
        cmd.arg("--profiles")
            .arg(&profiles)
            .arg("--state-dir")
            .arg(&state)
            .args(["status", "--json"])
            .env_remove("RUST_LOG");
        let m = measure(cmd);
        assert_eq!(
            m.status,
            0,
            "status --json failed: {}",
            String::from_utf8_lossy(&m.stderr)
        );
        m
    };
    for _ in 0..3 {
        run();
    }
    let mut walls = Vec::with_capacity(runs);
    let mut cpus = Vec::with_capacity(runs);
    let mut rss = 0;
    let mut out_len = 0;
    for _ in 0..runs {
        let m = run();
        walls.push(m.wall);
        cpus.push(m.cpu());
        rss = rss.max(m.max_rss_kib);
        out_len = m.stdout.len();
    }
    let med = median(&mut walls);
    let (min, max) = (walls[0], walls[walls.len() - 1]);
    report(
        &format!("status --json, {n} profiles: wall median"),
        format!("{:.1} ms", ms(med)),
        "<= 30 ms",
        Some(med <= Duration::from_millis(30)),
    );
    println!(
        "  {:<52} {:>22}",
        "  min / max",
        format!("{:.1} / {:.1} ms", ms(min), ms(max))
    );
    report(
        "  CPU median (user + system)",
        format!("{:.1} ms", ms(median(&mut cpus))),
        "",
        None,
    );
    report(
        "  peak RSS",
        format!("{:.1} MB", rss as f64 / 1024.0),
        "",
        None,
    );
    report(
        "  output",
        format!("{:.0} KiB", out_len as f64 / 1024.0),
        "",
        None,
    );
}
