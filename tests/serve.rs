//! `serve` as a daemon, through the binary against the emulator: it keeps 10-second sessions
//! alive with nothing else running, hands workers usable tokens through the broker, serves
//! metrics that promtool accepts, refuses a second daemon, and ends cleanly on SIGTERM.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use sugar_sessions::emulator::{Emulator, EmulatorConfig, InstanceConfig, UserConfig};

/// `fast`: access tokens of 10 s, refresh tokens of an hour.
async fn fast_emulator() -> Emulator {
    let mut fast = InstanceConfig::new("fast")
        .with_user(UserConfig::user(
            "integration",
            INTEGRATION_PW,
            "Integration User",
        ))
        .with_platform("custom_api");
    fast.access_lifetime = Duration::from_secs(10);
    fast.refresh_lifetime = Duration::from_secs(3600);
    start_with(EmulatorConfig {
        instances: vec![fast],
    })
    .await
}

struct Daemon {
    child: Child,
    listen: String,
    socket: PathBuf,
    /// Its log lines so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let status = self.child.wait();
        if std::thread::panicking() {
            // What the daemon said, for the failure's report.
            eprintln!("the daemon ended with {status:?}; its log:");
            for line in self.log.lock().map(|l| l.clone()).unwrap_or_default() {
                eprintln!("  {line}");
            }
        }
    }
}

/// How the tests run the daemon: any free loopback port, JSON log lines.
const DAEMON: [&str; 4] = ["--listen", "127.0.0.1:0", "--log-format", "json"];

/// `sugar-sessions --profiles P --state-dir S serve ARGS...`.
fn command(profiles: &Path, state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sugar-sessions"));
    c.arg("--profiles")
        .arg(profiles)
        .arg("--state-dir")
        .arg(state)
        .arg("serve")
        .args(args)
        .env_remove("SUGAR_SESSIONS_LOG")
        .env_remove("NOTIFY_SOCKET");
    c
}

/// Starts the daemon (keeping `names`, or every profile) and waits for its `serving` line (which
/// names the port it got).
fn start_daemon(profiles: &Path, state: &Path, names: &[&str]) -> Daemon {
    let mut child = command(profiles, state, &[&DAEMON[..], names].concat())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = log.clone();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            assert!(!line.contains(INTEGRATION_PW), "a password was logged");
            kept.lock().unwrap().push(line.clone());
            if !sent
                && let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "serving"
            {
                let _ = tx.send((
                    v["listen"].as_str().unwrap_or_default().to_string(),
                    v["socket"].as_str().unwrap_or_default().to_string(),
                ));
                sent = true;
            }
        }
    });
    let (listen, socket) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the daemon says where it serves");
    Daemon {
        child,
        listen,
        socket: PathBuf::from(socket),
        log,
    }
}

/// One HTTP/1.1 GET over a stream; the status and the body.
fn get(mut stream: impl Read + Write, path: &str) -> (u16, String) {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // A chunked body (axum streams bodies of unknown length): join the chunks.
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    (status, body)
}

fn http_get(daemon: &Daemon, path: &str) -> (u16, String) {
    get(std::net::TcpStream::connect(&daemon.listen).unwrap(), path)
}

fn broker_get(daemon: &Daemon, path: &str) -> (u16, String) {
    get(
        std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap(),
        path,
    )
}

/// Sugar accepts `token` (`GET {rest}/me` with the `OAuth-Token` header).
fn accepted(rest: &str, token: &str) -> bool {
    let rest = rest.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET /{path}/me HTTP/1.1\r\nHost: {host}\r\nOAuth-Token: {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.starts_with("HTTP/1.1 200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_ten_second_sessions_alive_and_the_broker_hands_out_usable_tokens() {
    let emu = fast_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let profiles = write_profiles(
        dir.path(),
        &format!(
            "[profiles.fast]\nurl = \"{}\"\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\nplatform = \"custom_api\"\ncheck_interval_s = 10\n",
            emu.url("fast")
        ),
    );
    let state = dir.path().join("state");
    let daemon = start_daemon(&profiles, &state, &[]);

    // A second daemon on the same state directory is refused, naming the first.
    let second = command(&profiles, &state, &DAEMON).output().unwrap();
    assert_eq!(second.status.code(), Some(2));
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("another `serve` runs"), "{said}");

    // Over 35 s (three and a half access-token lifetimes), with no other process acting, a
    // worker asking the broker every second always gets a token Sugar accepts.
    let started = Instant::now();
    let mut asked = 0;
    let mut refreshed = std::collections::HashSet::new();
    while started.elapsed() < Duration::from_secs(35) {
        let (status, body) = tokio::task::block_in_place(|| broker_get(&daemon, "/token/fast"));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let token = v["access_token"].as_str().unwrap().to_string();
        assert_eq!(v["platform"], "custom_api");
        let url = v["url"].as_str().unwrap().to_string();
        assert!(url.ends_with("/fast/rest/v11"), "{url}");
        assert!(
            tokio::task::block_in_place(|| accepted(&url, &token)),
            "at {:?} the broker handed out a token Sugar refuses",
            started.elapsed()
        );
        refreshed.insert(token);
        asked += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(asked >= 30);
    assert!(
        refreshed.len() >= 3,
        "the session was refreshed as it went ({} tokens)",
        refreshed.len()
    );
    // The daemon did it, not the broker alone: refresh grants were sent before tokens ran out.
    let refreshes = emu
        .requests()
        .iter()
        .filter(|r| r.grant_type.as_deref() == Some("refresh_token"))
        .count();
    assert!(refreshes >= 3, "{refreshes} refreshes");

    // The HTTP side: health, status, metrics (checked by promtool).
    let (status, body) = tokio::task::block_in_place(|| http_get(&daemon, "/healthz"));
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = tokio::task::block_in_place(|| http_get(&daemon, "/status"));
    assert_eq!(status, 200);
    let rows: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rows[0]["name"], "fast");
    assert_eq!(rows[0]["state"], "active");
    let (status, metrics) = tokio::task::block_in_place(|| http_get(&daemon, "/metrics"));
    assert_eq!(status, 200);
    promtool(&metrics).unwrap_or_else(|e| panic!("{e}\n{metrics}"));
    for name in [
        "sugar_session_up{",
        "sugar_requests_total{op=\"refresh\",result=\"ok\"}",
        "sugar_requests_total{op=\"login\",result=\"ok\"} 1",
        "sugar_request_duration_seconds_bucket{op=\"refresh\"",
        "sugar_session_check_latency_seconds{",
        "sugar_sessions_profiles 1",
    ] {
        assert!(metrics.contains(name), "missing {name}\n{metrics}");
    }
    // An unknown profile: 404, said as JSON.
    let (status, body) = tokio::task::block_in_place(|| broker_get(&daemon, "/token/nobody"));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown_profile"));

    // SIGTERM: gone within 2 s, status 0, the socket removed.
    let mut daemon = daemon;
    // SAFETY: signals our own child.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGTERM) };
    let asked_to_stop = Instant::now();
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked_to_stop.elapsed() < Duration::from_secs(2),
            "still running 2 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(!daemon.socket.exists(), "the socket was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brokers_own_logins_and_refreshes_are_counted() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for (name, platform) in [("kept", "custom_api"), ("other", "acme_sync")] {
        text.push_str(&format!(
            "[profiles.{name}]\nurl = \"{}\"\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\nplatform = \"{platform}\"\n",
            emu.url("acme")
        ));
    }
    let profiles = write_profiles(dir.path(), &text);
    let state = dir.path().join("state");
    // The daemon keeps `kept`; a worker asks the broker for `other`, which it logs in itself.
    let daemon = start_daemon(&profiles, &state, &["kept"]);
    let (status, body) = tokio::task::block_in_place(|| broker_get(&daemon, "/token/other"));
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = tokio::task::block_in_place(|| http_get(&daemon, "/metrics"));
    let logins = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("sugar_requests_total{op=\"login\",result=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u32>().ok())
    };
    // The daemon's own login of `kept` may still be on its way: two once both are done.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut metrics = metrics;
    while logins(&metrics) != Some(2) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        metrics = tokio::task::block_in_place(|| http_get(&daemon, "/metrics")).1;
    }
    assert_eq!(logins(&metrics), Some(2), "{metrics}");
    assert!(
        metrics.contains("sugar_request_duration_seconds_count{op=\"login\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_listen_beyond_loopback_unless_asked() {
    let emu = fast_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let profiles = write_profiles(
        dir.path(),
        &format!(
            "[profiles.fast]\nurl = \"{}\"\nusername = \"integration\"\n",
            emu.url("fast")
        ),
    );
    let out = command(
        &profiles,
        &dir.path().join("state"),
        &["--listen", "0.0.0.0:0"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--listen-any"), "{said}");
}

/// SIGHUP reads the profiles file again: a new profile is kept at once; a broken file keeps the
/// profiles as they were and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_profiles_and_a_broken_file_changes_nothing() {
    let emu = fast_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let one = format!(
        "[defaults]\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\nplatform = \"custom_api\"\n\
         [profiles.first]\nurl = \"{url}\"\n",
        url = emu.url("fast")
    );
    let profiles = write_profiles(dir.path(), &one);
    let state = dir.path().join("state");
    let daemon = start_daemon(&profiles, &state, &[]);
    let names = |daemon: &Daemon| -> Vec<String> {
        let (status, body) = http_get(daemon, "/status");
        assert_eq!(status, 200, "{body}");
        let rows: Value = serde_json::from_str(&body).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(tokio::task::block_in_place(|| names(&daemon)), ["first"]);
    let hup = |daemon: &Daemon| {
        // SAFETY: signals our own child.
        unsafe { libc::kill(daemon.child.id() as i32, libc::SIGHUP) };
    };
    let within = |what: &str, ok: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !ok() {
            assert!(started.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let two = format!(
        "{one}[profiles.second]\nurl = \"{url}\"\nplatform = \"mobile\"\n",
        url = emu.url("fast")
    );
    std::fs::write(&profiles, &two).unwrap();
    hup(&daemon);
    tokio::task::block_in_place(|| {
        within("the new profile is kept after SIGHUP", &|| {
            names(&daemon) == ["first", "second"]
        })
    });

    std::fs::write(&profiles, "[profiles.first]\nurl = 3\n").unwrap();
    hup(&daemon);
    tokio::task::block_in_place(|| {
        within("the refused reload is logged", &|| {
            daemon
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("reload refused") && l.contains("profiles.toml:2:"))
        })
    });
    assert_eq!(
        tokio::task::block_in_place(|| names(&daemon)),
        ["first", "second"],
        "the profiles stay as they were"
    );
    // Still alive and serving.
    let (status, _) = tokio::task::block_in_place(|| http_get(&daemon, "/healthz"));
    assert_eq!(status, 200);
    // An edit alone, no signal: reloaded as on SIGHUP.
    let three = format!(
        "{one}[profiles.third]\nurl = \"{url}\"\nplatform = \"portal\"\n",
        url = emu.url("fast")
    );
    std::fs::write(&profiles, &three).unwrap();
    tokio::task::block_in_place(|| {
        within("the edit is applied without a signal", &|| {
            names(&daemon) == ["first", "third"]
        })
    });
}

/// The other log formats: logfmt's `key=value` pairs and the plain text, one event per line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_logs_as_logfmt_or_text() {
    let emu = fast_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let profiles = write_profiles(
        dir.path(),
        &format!(
            "[profiles.fast]\nurl = \"{}\"\nusername = \"integration\"\n",
            emu.url("fast")
        ),
    );
    for (format, wanted) in [
        (
            "logfmt",
            " level=info target=sugar_sessions::serve msg=serving listen=127.0.0.1:",
        ),
        (
            "text",
            " INFO sugar_sessions::serve: serving listen=127.0.0.1:",
        ),
    ] {
        let state = dir.path().join(format!("state-{format}"));
        let mut child = command(
            &profiles,
            &state,
            &["--listen", "127.0.0.1:0", "--log-format", format],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let stderr = child.stderr.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .find(|l| l.contains("serving"))
        })
        .await
        .unwrap()
        .expect("a serving line");
        // SAFETY: signals our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = child.wait();
        assert!(line.contains(wanted), "{format}: {line}");
        if format == "logfmt" {
            assert!(line.starts_with("ts="), "{line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_serve_refuses_the_broker_and_keeps_sessions_alive_only_with_keep_alive() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let profiles = write_profiles(
        dir.path(),
        &format!(
            "[defaults]\nread_only = true\n[profiles.kept]\nurl = \"{}\"\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\n",
            emu.url("acme")
        ),
    );
    let state = dir.path().join("state");
    let logins = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("sugar_requests_total{op=\"login\",result=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u32>().ok())
    };
    {
        // From the file: the broker refuses, nothing is kept alive, the HTTP side works.
        let daemon = start_daemon(&profiles, &state, &["kept"]);
        let (status, body) = tokio::task::block_in_place(|| broker_get(&daemon, "/token/kept"));
        assert_eq!(status, 403, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "read_only");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains("read_only = true in [defaults] of")
                && message.contains(&*profiles.to_string_lossy()),
            "{message}"
        );
        std::thread::sleep(Duration::from_millis(1500));
        let (status, _) = tokio::task::block_in_place(|| http_get(&daemon, "/healthz"));
        assert_eq!(status, 200);
        let (status, _) = tokio::task::block_in_place(|| http_get(&daemon, "/status"));
        assert_eq!(status, 200);
        let (_, metrics) = tokio::task::block_in_place(|| http_get(&daemon, "/metrics"));
        assert_eq!(logins(&metrics), None, "nothing was sent: {metrics}");
    }
    // With --keep-alive the daemon logs in to keep the session; the broker still refuses.
    let daemon = start_daemon(&profiles, &state, &["--read-only", "--keep-alive", "kept"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut metrics = String::new();
    while logins(&metrics) != Some(1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        metrics = tokio::task::block_in_place(|| http_get(&daemon, "/metrics")).1;
    }
    assert_eq!(logins(&metrics), Some(1), "{metrics}");
    let (status, body) = tokio::task::block_in_place(|| broker_get(&daemon, "/token/kept"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("set by --read-only"), "{body}");
}
