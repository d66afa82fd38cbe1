//! Bulk actions through the real binary against an emulator fleet in another process:
//! 1,000 profiles on 100 loopback hosts (127.0.0.1 ..= 127.0.0.100), 100 ms added latency.
//!
//! `cargo bench --bench bulk` (a few seconds of network waits; ~30 s in all with the sequential loops).
//! Set `BULK_PROFILES` / `BULK_HOSTS` / `BULK_LATENCY_MS` to change the world.

mod common;

use common::{Fleet, FleetServer, Measured, PASSWORD, measure, ms, report, user_name};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DEFAULT_GLOBAL: usize = 64;
const DEFAULT_PER_HOST: usize = 8;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn floor(n: usize, global: usize, per_host: usize, hosts: usize, latency: Duration) -> Duration {
    let effective = global.min(per_host * hosts).max(1);
    latency * n.div_ceil(effective) as u32
}

fn run_cli(profiles: &Path, state: &Path, args: &[&str]) -> Measured {
    let m = measure(common::on_world(profiles, state, args));
    if m.status != 0 {
        let out = String::from_utf8_lossy(&m.stdout);
        let failed: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("failed"))
            .take(3)
            .collect();
        eprintln!(
            "warning: `{}` exited {}: {}\n{}",
            args.join(" "),
            m.status,
            String::from_utf8_lossy(&m.stderr).trim(),
            failed.join("\n")
        );
    }
    m
}

struct Bulk<'a> {
    server: &'a FleetServer,
    dir: &'a Path,
}

impl Bulk<'_> {
    /// A profiles file of the first `n` profiles with these bounds, and a fresh state directory.
    fn world(
        &self,
        tag: &str,
        n: usize,
        global: usize,
        per_host: usize,
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let profiles = self.dir.join(format!("{tag}.toml"));
        common::write_private(&profiles, &self.server.profiles_toml(n, global, per_host));
        let state = self.dir.join(format!("{tag}-state"));
        (profiles, state)
    }

    fn figure(
        &self,
        what: &str,
        m: &Measured,
        n: usize,
        (global, per_host): (usize, usize),
        (wall_target, cpu_target): (Option<f64>, bool),
    ) {
        let fleet = self.server.fleet;
        let hosts = n.div_ceil(fleet.users_per_host).min(fleet.hosts);
        let fl = floor(n, global, per_host, hosts, fleet.latency);
        let ratio = m.wall.as_secs_f64() / fl.as_secs_f64();
        let ok = m.status == 0;
        report(
            &format!(
                "{what}: wall (bounds {global}/{per_host}, floor {:.0} ms)",
                ms(fl)
            ),
            format!("{:.0} ms = {ratio:.2}x floor", ms(m.wall)),
            &wall_target.map_or("(no target)".to_string(), |t| format!("<= {t}x floor")),
            wall_target.map(|t| ok && ratio <= t),
        );
        let per_op = m.cpu() / n as u32;
        report(
            &format!("{what}: client CPU per profile"),
            format!("{:.3} ms ({:.0} ms u+s)", ms(per_op), ms(m.cpu())),
            if cpu_target { "<= 1 ms" } else { "(no target)" },
            cpu_target.then_some(ok && per_op <= Duration::from_millis(1)),
        );
    }
}

/// The same logins one after another, one `curl` process each (as a shell loop would do them).
fn curl_loop(server: &FleetServer, n: usize) -> Option<(Duration, usize)> {
    Command::new("curl").arg("--version").output().ok()?;
    let started = Instant::now();
    let mut ok = 0;
    for i in 0..n {
        let h = i / server.fleet.users_per_host;
        let body = format!(
            r#"{{"grant_type":"password","client_id":"sugar","client_secret":"","username":"{}","password":"{PASSWORD}","platform":"custom_api"}}"#,
            user_name(i)
        );
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-k",
                "-X",
                "POST",
            ])
            .args(["-H", "Content-Type: application/json", "--data", &body])
            .arg(format!("{}/rest/v11/oauth2/token", server.url(h)))
            .output()
            .ok()?;
        ok += usize::from(out.stdout == b"200");
    }
    Some((started.elapsed(), ok))
}

/// The same logins one after another from one process over kept-alive connections: the strictest
/// sequential baseline (no process start-up per login).
fn in_process_loop(server: &FleetServer, n: usize) -> (Duration, usize) {
    sugar_sessions::sugar::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let started = Instant::now();
        let mut ok = 0;
        for i in 0..n {
            let h = i / server.fleet.users_per_host;
            let body = serde_json::json!({
                "grant_type": "password", "client_id": "sugar", "client_secret": "",
                "username": user_name(i), "password": PASSWORD, "platform": "custom_api",
            });
            let resp = client
                .post(format!("{}/rest/v11/oauth2/token", server.url(h)))
                .json(&body)
                .send()
                .await;
            if let Ok(r) = resp {
                let good = r.status().is_success();
                let _ = r.bytes().await;
                ok += usize::from(good);
            }
        }
        (started.elapsed(), ok)
    })
}

fn main() {
    if common::measure_if_asked() || common::serve_if_asked() {
        return;
    }
    let n = env_usize("BULK_PROFILES", 1000);
    let hosts = env_usize("BULK_HOSTS", 100);
    let latency = Duration::from_millis(env_usize("BULK_LATENCY_MS", 100) as u64);
    let fleet = Fleet {
        hosts,
        users_per_host: n.div_ceil(hosts),
        latency,
        tls: false,
    };
    println!("bulk actions: {}", common::machine());
    println!(
        "  world: {n} profiles on {hosts} emulator hosts (127.0.0.1..=127.0.0.{hosts}, {} profiles each, grouped by host in the file), {} ms added latency, emulators in a separate process",
        fleet.users_per_host,
        latency.as_millis()
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = FleetServer::start(fleet, &tmp.path().join("ca.pem")).expect("fleet server");
    let bulk = Bulk {
        server: &server,
        dir: tmp.path(),
    };
    let (g, ph) = (DEFAULT_GLOBAL, DEFAULT_PER_HOST);

    // 1,000 profiles, default bounds: login, refresh, logout.
    let (profiles, state) = bulk.world("all", n, g, ph);
    let login = run_cli(&profiles, &state, &["login", "--all"]);
    println!("\nHTTP, {n} profiles, max_concurrency {g}, max_per_host {ph}:");
    bulk.figure("login --all", &login, n, (g, ph), (Some(1.1), true));
    // 30 MB at 1,000 profiles; 50 MB at 10,000.
    let rss_target = if n <= 1000 { 30 } else { 50 };
    report(
        "login --all: peak RSS of the process",
        format!("{:.1} MB", login.max_rss_kib as f64 / 1024.0),
        &format!("<= {rss_target} MB"),
        (n <= 10_000).then_some(login.max_rss_kib <= rss_target * 1024),
    );
    let refresh = run_cli(&profiles, &state, &["refresh", "--all"]);
    bulk.figure("refresh --all", &refresh, n, (g, ph), (Some(1.1), true));
    let logout = run_cli(&profiles, &state, &["logout", "--all"]);
    bulk.figure("logout --all", &logout, n, (g, ph), (Some(1.1), true));

    // Wider bounds: how far the engine goes when the bounds allow it.
    let (g2, ph2) = (256, 8);
    let (profiles2, state2) = bulk.world("wide", n, g2, ph2);
    let wide = run_cli(&profiles2, &state2, &["login", "--all"]);
    println!("\nHTTP, {n} profiles, max_concurrency {g2}, max_per_host {ph2} (not the default):");
    bulk.figure("login --all", &wide, n, (g2, ph2), (None, true));

    // 100 profiles: bulk against sequential loops.
    let small = 100.min(n);
    let (profiles3, state3) = bulk.world("small", small, g, ph);
    let bulk_small = run_cli(&profiles3, &state3, &["login", "--all"]);
    println!(
        "\nHTTP, {small} profiles, max_concurrency {g}, max_per_host {ph}, against sequential loops:"
    );
    // Listed host by host (10 per host): the hosts must take turns to fill the global bound.
    bulk.figure(
        "login --all",
        &bulk_small,
        small,
        (g, ph),
        (Some(1.1), false),
    );
    let (seq, seq_ok) = in_process_loop(&server, small);
    report(
        "sequential logins, one process, kept-alive connections",
        format!("{:.0} ms ({seq_ok} ok)", ms(seq)),
        "",
        None,
    );
    let ratio = seq.as_secs_f64() / bulk_small.wall.as_secs_f64();
    report(
        "  bulk login --all vs that loop",
        format!("{ratio:.1}x faster"),
        ">= 20x",
        Some(bulk_small.status == 0 && seq_ok == small && ratio >= 20.0),
    );
    match curl_loop(&server, small) {
        Some((curl, curl_ok)) => {
            report(
                "sequential logins, a shell loop of curl",
                format!("{:.0} ms ({curl_ok} ok)", ms(curl)),
                "",
                None,
            );
            let ratio = curl.as_secs_f64() / bulk_small.wall.as_secs_f64();
            report(
                "  bulk login --all vs the curl loop",
                format!("{ratio:.1}x faster"),
                ">= 20x",
                Some(bulk_small.status == 0 && curl_ok == small && ratio >= 20.0),
            );
        }
        None => println!("  (no curl on this machine: the curl loop was skipped)"),
    }
    drop(server);

    // HTTPS: the same bulk login against emulators with a generated certificate.
    println!("\nHTTPS, {n} profiles, max_concurrency {g}, max_per_host {ph}:");
    match FleetServer::start(Fleet { tls: true, ..fleet }, &tmp.path().join("ca.pem")) {
        Err(e) => println!("  skipped: {e}"),
        Ok(server) => {
            let bulk = Bulk {
                server: &server,
                dir: tmp.path(),
            };
            let (profiles, state) = bulk.world("tls", n, g, ph);
            let login = run_cli(&profiles, &state, &["login", "--all"]);
            bulk.figure("login --all", &login, n, (g, ph), (None, false));
        }
    }
}
