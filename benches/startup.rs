//! Start-up of the real binary with many profiles and a full token cache: `status --json`,
//! `token NAME` (what scripts call constantly) and `list`.
//!
//! `cargo bench --bench startup` (a few seconds). `STARTUP_PROFILES` sets the number of profiles
//! (1,000), `STARTUP_RUNS` the number of timed runs of each command (30). `STARTUP_WORLD=DIR` writes
//! the profiles file and the cache into DIR and keeps them (to profile a command by hand).

mod common;

use common::{measure, median, ms, report};
use std::path::Path;
use std::time::Duration;

/// A command timed, with its target at 1,000 and at 10,000 profiles.
struct Case {
    args: &'static [&'static str],
    target_1k: Option<u64>,
    target_10k: Option<u64>,
}

const CASES: &[Case] = &[
    Case {
        args: &["status", "--json"],
        target_1k: Some(30),
        target_10k: Some(60),
    },
    Case {
        args: &["token", "p00042"],
        target_1k: Some(5),
        target_10k: None,
    },
    Case {
        args: &["list"],
        target_1k: Some(5),
        target_10k: None,
    },
];

fn main() {
    if common::measure_if_asked() {
        return;
    }
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
    let world = match std::env::var_os("STARTUP_WORLD") {
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            std::fs::create_dir_all(&dir).expect("STARTUP_WORLD");
            dir
        }
        None => tmp.path().to_path_buf(),
    };
    let (profiles, state) = common::full_cache_world(&world, n, 100);
    let cache_len = std::fs::metadata(state.join("sessions.json"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "  world: {n} profiles, a token cache of {n} active sessions ({:.0} KiB); {runs} runs after 3 warm-ups, stdout to a pipe",
        cache_len as f64 / 1024.0
    );
    // The same commands with one profile: the machine's floor for them (starting the process,
    // the runtime, the cache), which the thousands of profiles add to.
    let one = tempfile::tempdir().expect("tempdir");
    let (one_profiles, one_state) = common::full_cache_world(one.path(), 1, 1);
    for case in CASES {
        let target = if n <= 1000 {
            case.target_1k
        } else if n <= 10_000 {
            case.target_10k
        } else {
            None
        };
        // The profile named: p00042, or the last of fewer.
        let named = |n: usize| -> Vec<String> {
            case.args
                .iter()
                .map(|a| match a.strip_prefix('p') {
                    Some(i) if i.parse::<usize>().is_ok() => {
                        format!("p{:05}", i.parse::<usize>().unwrap_or(0).min(n - 1))
                    }
                    _ => a.to_string(),
                })
                .collect()
        };
        let args = named(n);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let med = time(&profiles, &state, &args, n, runs, target);
        if n > 1 && case.args[0] != "status" {
            let args = named(1);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let floor = time_quiet(&one_profiles, &one_state, &args, runs);
            println!(
                "  {:<52} {:>22}",
                "  the same with one profile / the profiles' cost",
                format!(
                    "{:.1} / +{:.1} ms",
                    ms(floor),
                    ms(med.saturating_sub(floor))
                )
            );
        }
    }
}

/// One run of the binary on the world, which must succeed.
fn run_once(profiles: &Path, state: &Path, args: &[&str]) -> common::Measured {
    let m = measure(common::on_world(profiles, state, args));
    assert_eq!(
        m.status,
        0,
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&m.stderr)
    );
    m
}

/// The median wall time of `runs` runs after 3 warm-ups, printed by the caller.
fn time_quiet(profiles: &Path, state: &Path, args: &[&str], runs: usize) -> Duration {
    for _ in 0..3 {
        run_once(profiles, state, args);
    }
    let mut walls: Vec<Duration> = (0..runs)
        .map(|_| run_once(profiles, state, args).wall)
        .collect();
    median(&mut walls)
}

fn time(
    profiles: &Path,
    state: &Path,
    args: &[&str],
    n: usize,
    runs: usize,
    target: Option<u64>,
) -> Duration {
    let run = || run_once(profiles, state, args);
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
    let (target_text, met) = match target {
        Some(t) => (format!("<= {t} ms"), Some(med <= Duration::from_millis(t))),
        None => (String::new(), None),
    };
    report(
        &format!("{}, {n} profiles: wall median", args.join(" ")),
        format!("{:.1} ms", ms(med)),
        &target_text,
        met,
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
    med
}
