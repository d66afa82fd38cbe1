//! The screen's pure parts with 10,000 profiles: one frame of the table at 200x50 (`TestBackend`,
//! through `Terminal::draw`, so the diff against the previous frame is included), and `update` for
//! one key press (move, filter keystrokes, select all).
//!
//! `cargo bench --bench screen` (a few seconds). `SCREEN_PROFILES` changes the number of profiles.
//! Times are the thread's CPU time (medians, with the worst case), not the wall clock, so that
//! other processes on the machine do not inflate them.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use sugar_sessions::app::{Model, Msg, Options, Source, Zone, update};
use sugar_sessions::store::Cache;
use sugar_sessions::ui;

const W: u16 = 200;
const H: u16 = 50;

/// 10,000 profiles over 500 instances, with a mix of states: active (some expiring soon), expired,
/// failed, logged out.
fn world(n: usize, now: DateTime<Utc>) -> (Model, Cache) {
    let mut text =
        String::from("[defaults]\nplatform = \"custom_api\"\npassword_env = \"BENCH_PW\"\n");
    let at = |secs: i64| {
        (now + TimeDelta::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let mut entries = serde_json::Map::new();
    for i in 0..n {
        let h = i % 500;
        let url = format!("https://client{h:03}.sugarondemand.com");
        let tags = match i % 5 {
            0 => "\"prod\", \"emea\"",
            1 => "\"sandbox\", \"emea\"",
            2 => "\"prod\", \"amer\"",
            _ => "\"sandbox\", \"apac\"",
        };
        text.push_str(&format!(
            "\n[profiles.client{h:03}-p{i:05}]\nurl = \"{url}\"\nusername = \"svc_{i:05}\"\ntags = [{tags}]\n"
        ));
        let session = serde_json::json!({
            "access_token": format!("{i:08}-5eac-8431-a541-5342d38ac527"),
            "refresh_token": format!("{i:08}-24b1-4521-b1a1-5342d382e0b7"),
            "obtained_at": at(-600),
            "expires_at": at(match i % 10 { 0 => 240, 1 => -30, _ => 3000 - (i as i64 % 600) }),
            "refresh_expires_at": at(1_209_000),
            "platform": "custom_api",
            "username": format!("svc_{i:05}"),
            "url": url,
        });
        let entry = match i % 10 {
            9 => serde_json::json!({}),
            8 => serde_json::json!({
                "failure": {
                    "at": at(-60), "op": "login", "needs_login": true, "kind": "credentials",
                    "http_status": 401, "label": "need_login",
                    "message": "You must specify a valid username and password.",
                    "hint": "check the username and the password source of the profile",
                },
            }),
            _ => serde_json::json!({ "session": session, "updated_at": at(-600) }),
        };
        entries.insert(format!("{url}|svc_{i:05}|custom_api|sugar"), entry);
    }
    let path = Path::new("/home/ops/.config/sugar-sessions/profiles.toml");
    let profiles = sugar_sessions::config::parse(&text, path).expect("benchmark profiles parse");
    let cache: Cache =
        serde_json::from_value(serde_json::json!({"version": 2, "sessions": entries}))
            .expect("the cache format this benchmark writes is the crate's");
    let options = Options {
        ascii: false,
        color: true,
        zone: Zone::Local,
        clipboard: Default::default(),
        read_only: false,
        keep_alive: false,
    };
    let model = Model::new(&profiles, Source::File(PathBuf::from(path)), options, now);
    (model, cache)
}

/// The CPU time this thread has used: unlike the wall clock, not inflated when other processes
/// take the core (the machine these run on is shared).
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_THREAD_CPUTIME_ID is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Times `f` in thread CPU time.
fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let t = cpu_now();
    let r = f();
    (r, cpu_now().saturating_sub(t))
}

fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

/// Median and maximum of `samples`.
fn stats(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let n: usize = std::env::var("SCREEN_PROFILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    println!("screen: {}", common::machine());
    let mut now = Utc::now();
    let started = Instant::now();
    let (mut m, cache) = world(n, now);
    update(&mut m, Msg::CacheReloaded(cache.into()), now);
    update(
        &mut m,
        Msg::Resize {
            width: W,
            height: H,
        },
        now,
    );
    println!(
        "  world: {n} profiles on 500 instances (active, expiring, expired, failed, logged out), {W}x{H}; set up in {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    // One frame: the real draw path (view, then the diff against the previous buffer), with the
    // clock moving one second per frame so that every countdown on screen changes.
    let mut terminal = Terminal::new(TestBackend::new(W, H)).expect("test terminal");
    terminal.draw(|f| ui::view(&m, now, f)).unwrap();
    let mut frames = Vec::with_capacity(300);
    for _ in 0..300 {
        now += TimeDelta::seconds(1);
        update(&mut m, Msg::Tick, now);
        let (drawn, t) = timed(|| terminal.draw(|f| ui::view(&m, now, f)));
        drawn.unwrap();
        frames.push(t);
    }
    let (med, max) = stats(&mut frames);
    common::report(
        &format!("one frame of the table, {n} profiles, {W}x{H}"),
        format!("{:.0} us (max {:.0})", us(med), us(max)),
        "<= 1 ms",
        Some(med <= Duration::from_millis(1)),
    );
    // With the details pane open.
    update(&mut m, key(KeyCode::Enter), now);
    let mut frames = Vec::with_capacity(100);
    for _ in 0..100 {
        now += TimeDelta::seconds(1);
        update(&mut m, Msg::Tick, now);
        let (drawn, t) = timed(|| terminal.draw(|f| ui::view(&m, now, f)));
        drawn.unwrap();
        frames.push(t);
    }
    update(&mut m, key(KeyCode::Enter), now);
    let (dmed, dmax) = stats(&mut frames);
    common::report(
        "  the same with the details pane open",
        format!("{:.0} us (max {:.0})", us(dmed), us(dmax)),
        "<= 1 ms",
        Some(dmed <= Duration::from_millis(1)),
    );

    // update for one key press.
    let time_keys = |m: &mut Model, keys: &[KeyCode], rounds: usize| {
        let mut v = Vec::with_capacity(keys.len() * rounds);
        for _ in 0..rounds {
            for k in keys {
                let (cmds, t) = timed(|| update(m, key(*k), now));
                v.push(t);
                drop(cmds);
            }
        }
        stats(&mut v)
    };
    let key_report = |what: &str, (med, max): (Duration, Duration)| {
        common::report(
            &format!("update, one key, {n} profiles: {what}"),
            format!("{:.1} us (max {:.0})", us(med), us(max)),
            "<= 100 us",
            Some(med <= Duration::from_micros(100)),
        );
    };
    key_report(
        "move (j / k)",
        time_keys(&mut m, &[KeyCode::Char('j'), KeyCode::Char('k')], 500),
    );
    key_report(
        "page down / up",
        time_keys(&mut m, &[KeyCode::PageDown, KeyCode::PageUp], 200),
    );
    key_report(
        "select all (a), twice",
        time_keys(&mut m, &[KeyCode::Char('a'), KeyCode::Char('a')], 50),
    );
    // Filter: `/`, then "client12" typed (each keystroke narrows), then erased (each widens).
    let typed: Vec<KeyCode> = "client12".chars().map(KeyCode::Char).collect();
    let erased = vec![KeyCode::Backspace; typed.len()];
    let (mut narrow, mut widen) = (Vec::new(), Vec::new());
    let mut per_key = vec![Vec::new(); typed.len()];
    update(&mut m, key(KeyCode::Char('/')), now);
    for _ in 0..30 {
        for (j, k) in typed.iter().enumerate() {
            let t = timed(|| update(&mut m, key(*k), now)).1;
            narrow.push(t);
            per_key[j].push(t);
        }
        for k in &erased {
            widen.push(timed(|| update(&mut m, key(*k), now)).1);
        }
    }
    let shown = {
        for k in &typed {
            update(&mut m, key(*k), now);
        }
        m.visible().len()
    };
    key_report("filter keystroke that narrows", stats(&mut narrow));
    let each: Vec<String> = per_key
        .iter_mut()
        .zip("client12".chars())
        .map(|(v, c)| format!("{c} {:.0}", us(stats(v).0)))
        .collect();
    println!(
        "    each keystroke of \"client12\", median us: {}",
        each.join(", ")
    );
    key_report("filter keystroke that widens", stats(&mut widen));
    update(&mut m, key(KeyCode::Esc), now);
    println!("  (\"client12\" leaves {shown} of {n} rows)");
    // The 1 s tick (countdowns, due refreshes) is not a key, but runs as often.
    let mut ticks = Vec::with_capacity(200);
    for _ in 0..200 {
        now += TimeDelta::seconds(1);
        ticks.push(timed(|| update(&mut m, Msg::Tick, now)).1);
    }
    let (tmed, tmax) = stats(&mut ticks);
    common::report(
        &format!("update, 1 s tick, {n} profiles"),
        format!("{:.1} us (max {:.0})", us(tmed), us(tmax)),
        "(no target)",
        None,
    );
}
