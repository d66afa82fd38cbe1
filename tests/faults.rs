//! Faults survived: every kind of failure, many at once in one bulk operation, each one a clear
//! per-profile error, the other profiles' sessions untouched, nothing panicking.
//!
//! Through the engine (as the screen and the shell drive it) and through the binary, against the
//! emulator's fault switches and raw sockets started here.

mod common;

use common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sugar_sessions::config::{Profile, Profiles};
use sugar_sessions::emulator::{Emulator, EmulatorConfig, Fault, InstanceConfig, UserConfig};
use sugar_sessions::runtime::{Engine, Outcome};
use sugar_sessions::session::{Entry, Op, Session, State};
use sugar_sessions::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An instance per fault, so that all of them can be on at once; `ok1` and `ok2` stay healthy.
const INSTANCES: &[&str] = &[
    "ok1", "ok2", "html502", "nonjson", "shape", "big", "redirect", "drop", "slow", "maint",
    "seats",
];

fn faulty_world() -> EmulatorConfig {
    EmulatorConfig {
        instances: INSTANCES
            .iter()
            .map(|name| {
                InstanceConfig::new(name)
                    .with_user(UserConfig::user(
                        "integration",
                        INTEGRATION_PW,
                        "Integration User",
                    ))
                    .with_platform("custom_api")
            })
            .collect(),
    }
}

/// Turns on the fault of every faulty instance.
fn faults_on(emu: &Emulator) {
    emu.set_fault("html502", Some(Fault::Html502));
    emu.set_fault("nonjson", Some(Fault::NonJson200));
    emu.set_fault("shape", Some(Fault::WrongShape200));
    emu.set_fault("big", Some(Fault::Oversized(2 << 20)));
    emu.set_fault(
        "redirect",
        Some(Fault::Redirect("https://sso.example.com/saml".into())),
    );
    emu.set_fault("drop", Some(Fault::DropMidBody));
    emu.set_fault("slow", Some(Fault::Slow(Duration::from_secs(5))));
    emu.set_maintenance("maint", true);
    emu.set_fault("seats", Some(Fault::LicenseSeats));
}

fn faults_off(emu: &Emulator) {
    for name in INSTANCES {
        emu.set_fault(name, None);
    }
    emu.set_maintenance("maint", false);
}

/// Raw sockets: a port nobody listens on, and one that accepts and never answers.
struct Sockets {
    refused: SocketAddr,
    silent: SocketAddr,
}

async fn sockets() -> Sockets {
    let refused = refused_addr();
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream); // read nothing, answer nothing, close nothing
        }
    });
    Sockets {
        refused,
        silent: silent_addr,
    }
}

/// A server that answers with headers announcing more than it sends, then closes.
async fn cut_off_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{\"access_token\":\"",
                    )
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// The profiles file: two healthy profiles first and last, every fault in between.
fn profiles_text(emu: &Emulator, s: &Sockets, cut: SocketAddr) -> String {
    let mut text = format!(
        "[defaults]\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\nplatform = \"custom_api\"\n",
    );
    let mut add = |name: &str, body: String| {
        text.push_str(&format!("\n[profiles.{name}]\n{body}\n"));
    };
    add("ok1", format!("url = \"{}\"", emu.url("ok1")));
    add("refused", format!("url = \"http://{}/sugar\"", s.refused));
    add(
        "dns",
        "url = \"https://sugar.invalid\"\ntimeout_s = 10".to_string(),
    );
    add(
        "silent",
        format!("url = \"http://{}/sugar\"\ntimeout_s = 1", s.silent),
    );
    add("cut", format!("url = \"http://{cut}/sugar\""));
    for name in [
        "html502", "nonjson", "shape", "big", "redirect", "drop", "maint", "seats",
    ] {
        add(name, format!("url = \"{}\"", emu.url(name)));
    }
    add(
        "slow",
        format!("url = \"{}\"\ntimeout_s = 1", emu.url("slow")),
    );
    add(
        "platform",
        format!(
            "url = \"{}\"\nplatform = \"not_registered\"",
            emu.url("ok1")
        ),
    );
    add(
        "wrong-pw",
        // Another platform than ok2's: the same user, platform and client would be ok2's session.
        format!(
            "url = \"{}\"\npassword = \"Wrong-Pw-44a1\"\nplatform = \"mobile\"",
            emu.url("ok2")
        ),
    );
    add(
        "bad-client",
        format!(
            "url = \"{}\"\nclient_id = \"sugar\"\nclient_secret = \"not-the-secret\"\nplatform = \"portal\"",
            emu.url("ok2")
        ),
    );
    add("ok2", format!("url = \"{}\"", emu.url("ok2")));
    text
}

/// What each faulty profile's login must say (after `NAME: login failed: `), and its kind.
fn expected_login_failures(s: &Sockets) -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "refused",
            format!("connection to {} refused", s.refused),
            "network",
        ),
        ("dns", "cannot resolve host sugar.invalid".into(), "network"),
        (
            "silent",
            format!("no answer from {} within 1 s", s.silent),
            "timeout",
        ),
        (
            "cut",
            "HTTP 200, but the connection closed before the whole answer arrived".into(),
            "network",
        ),
        (
            "html502",
            "HTTP 502 with an HTML page instead of Sugar's JSON".into(),
            "server",
        ),
        (
            "nonjson",
            "HTTP 200 with an HTML page instead of JSON".into(),
            "protocol",
        ),
        (
            "shape",
            "HTTP 200 with an unexpected answer: \"access_token\" is not a non-empty string".into(),
            "protocol",
        ),
        (
            "big",
            "HTTP 200 with a body over 1024 KiB".into(),
            "protocol",
        ),
        (
            "redirect",
            "HTTP 302 redirect to sso.example.com".into(),
            "protocol",
        ),
        (
            "drop",
            "HTTP 200, but the connection closed before the whole answer arrived".into(),
            "network",
        ),
        (
            "maint",
            "HTTP 401 need_login: SugarCRM is in maintenance mode".into(),
            "maintenance",
        ),
        ("seats", "HTTP 403 license_seats_needed".into(), "server"),
        ("slow", "within 1 s".into(), "timeout"),
        (
            "platform",
            "HTTP 422 invalid_parameter: Invalid platform specified.".into(),
            "platform",
        ),
        (
            "wrong-pw",
            "HTTP 401 need_login: You must specify a valid username and password.".into(),
            "credentials",
        ),
        (
            "bad-client",
            "HTTP 400 invalid_client".into(),
            "credentials",
        ),
    ]
}

/// Runs `op` on every profile at once, as `login --all` does; every task must finish (no panic).
async fn bulk(engine: &Arc<Engine>, profiles: &Profiles, op: Op) -> HashMap<String, Outcome> {
    let jobs: Vec<_> = profiles
        .profiles
        .iter()
        .map(|p| {
            let engine = engine.clone();
            let p = p.clone();
            tokio::spawn(async move { engine.run(&p, op, None).await })
        })
        .collect();
    let mut out = HashMap::new();
    for job in jobs {
        let o = job.await.expect("no task panics");
        out.insert(o.name.clone(), o);
    }
    out
}

fn entry_of(engine: &Engine, p: &Profile) -> Entry {
    engine
        .load_cache()
        .unwrap()
        .entry_or_default(&p.session_key())
}

fn session_of(engine: &Engine, p: &Profile) -> Option<Session> {
    entry_of(engine, p).session
}

fn profile<'a>(profiles: &'a Profiles, name: &str) -> &'a Profile {
    profiles.get(name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_login_through_every_fault_isolates_each_failure() {
    let emu = Emulator::start(faulty_world(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let s = sockets().await;
    let cut = cut_off_server().await;
    let profiles = profiles(&profiles_text(&emu, &s, cut));
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::new(
        Store::open(dir.path()).unwrap(),
        &profiles.settings,
    ));
    faults_on(&emu);

    let started = Instant::now();
    let outcomes = bulk(&engine, &profiles, Op::Login).await;
    // Everything ran at once: the slowest (1 s timeouts, a 5 s slow answer cut at 1 s) bounds it.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    for name in ["ok1", "ok2"] {
        let o = &outcomes[name];
        assert!(o.ok, "{}", o.message);
        assert_eq!(o.state, State::Active);
        assert!(session_of(&engine, profile(&profiles, name)).is_some());
    }
    let expected = expected_login_failures(&s);
    assert_eq!(expected.len() + 2, profiles.profiles.len());
    for (name, what, kind) in expected {
        let o = outcomes
            .get(name)
            .unwrap_or_else(|| panic!("{name}: no outcome among {:?}", outcomes.keys()));
        let prefix = format!("{name}: login failed: ");
        assert!(!o.ok, "{name} succeeded");
        assert_eq!(o.state, State::Error, "{}", o.message);
        assert!(o.message.starts_with(&prefix), "{}", o.message);
        assert!(
            o.message.contains(&what),
            "{name}: {:?} lacks {what:?}",
            o.message
        );
        assert!(o.message.contains("(hint: "), "{}", o.message);
        assert!(!o.message.contains(INTEGRATION_PW), "{}", o.message);
        let failure = o
            .failure
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no failure"));
        assert_eq!(failure.kind.as_str(), kind, "{name}: {failure:?}");
        assert_eq!(failure.op, Op::Login);
        // Persisted: `status` tells the same story, in the same words.
        let entry = entry_of(&engine, profile(&profiles, name));
        assert_eq!(entry.state(chrono::Utc::now()), State::Error);
        assert_eq!(
            entry.failure.as_ref().map(|f| f.render(name)),
            Some(o.message.clone())
        );
        assert!(entry.session.is_none());
    }
    // The redirect was not followed, and the SSO host named, never contacted.
    let redirect = outcomes["redirect"].failure.as_ref().unwrap();
    assert_eq!(redirect.http_status, Some(302));
    assert!(redirect.message.contains("sso.example.com"), "{redirect:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_refresh_through_faults_keeps_every_session() {
    let emu = Emulator::start(faulty_world(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let s = sockets().await;
    let cut = cut_off_server().await;
    let all = profiles(&profiles_text(&emu, &s, cut));
    // The profiles on the emulator whose login works while no fault is on.
    let names = [
        "ok1", "html502", "nonjson", "shape", "big", "redirect", "drop", "slow", "maint", "seats",
        "ok2",
    ];
    let mut chosen = all.clone();
    chosen.profiles.retain(|p| names.contains(&p.name.as_str()));
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::new(
        Store::open(dir.path()).unwrap(),
        &chosen.settings,
    ));
    let logins = bulk(&engine, &chosen, Op::Login).await;
    assert!(logins.values().all(|o| o.ok), "{logins:#?}");
    let before: HashMap<&str, Session> = names
        .iter()
        .map(|n| (*n, session_of(&engine, profile(&all, n)).unwrap()))
        .collect();

    faults_on(&emu);
    let outcomes = bulk(&engine, &chosen, Op::Refresh).await;
    for name in ["ok1", "ok2"] {
        let o = &outcomes[name];
        assert!(o.ok, "{}", o.message);
        let now = session_of(&engine, profile(&all, name)).unwrap();
        assert_ne!(now.refresh_token, before[name].refresh_token, "rotated");
    }
    let expected: HashMap<&str, &str> = [
        ("html502", "HTTP 502 with an HTML page"),
        ("nonjson", "HTTP 200 with an HTML page instead of JSON"),
        ("shape", "HTTP 200 with an unexpected answer"),
        ("big", "HTTP 200 with a body over 1024 KiB"),
        ("redirect", "HTTP 302 redirect to sso.example.com"),
        (
            "drop",
            "the connection closed before the whole answer arrived",
        ),
        ("slow", "within 1 s"),
        ("maint", "HTTP 503 maintenance"),
        ("seats", ""),
    ]
    .into_iter()
    .collect();
    for (name, what) in &expected {
        let o = &outcomes[*name];
        if *name == "seats" {
            // Licence seats are checked on password logins only: a refresh works.
            assert!(o.ok, "{}", o.message);
            continue;
        }
        assert!(!o.ok, "{name} succeeded");
        assert_eq!(o.state, State::Error, "{}", o.message);
        assert!(
            o.message.starts_with(&format!("{name}: refresh failed: ")) && o.message.contains(what),
            "{name}: {}",
            o.message
        );
        // A failure that is not Sugar rejecting the token keeps the session as it was.
        assert_eq!(
            session_of(&engine, profile(&all, name)).as_ref(),
            Some(&before[*name]),
            "{name}"
        );
    }

    // Once the faults are gone, the sessions that Sugar never saw refresh normally: nothing was lost.
    // (`drop` and `slow` let Sugar rotate the token before the answer was lost: see below.)
    faults_off(&emu);
    for name in ["html502", "nonjson", "shape", "big", "redirect", "maint"] {
        let o = engine.run(profile(&chosen, name), Op::Refresh, None).await;
        assert!(o.ok, "{}", o.message);
        assert_eq!(o.state, State::Active);
    }
    // Where the answer with the rotated refresh token was lost, Sugar rejects the old one; the
    // profile then needs a login (or gets one automatically from its password source), and says so.
    for name in ["drop", "slow"] {
        let o = engine.run(profile(&chosen, name), Op::Refresh, None).await;
        assert!(
            o.ok || o.message.contains("invalid_grant"),
            "{name}: {}",
            o.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reports_each_fault_on_its_own_line_and_exits_1() {
    let emu = Emulator::start(faulty_world(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let s = sockets().await;
    let cut = cut_off_server().await;
    faults_on(&emu);
    let dir = tempfile::tempdir().unwrap();
    let path = write_profiles(dir.path(), &profiles_text(&emu, &s, cut));
    let state = dir.path().join("state");
    let cmd = |args: &[&str]| {
        let mut c = assert_cmd::Command::cargo_bin("sugar-sessions").unwrap();
        c.arg("--profiles")
            .arg(&path)
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .env_remove("SUGAR_SESSIONS_LOG");
        c
    };
    let mut login = cmd(&["login", "--all"]);
    let out = tokio::task::spawn_blocking(move || login.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(stderr, "");
    let lines: Vec<&str> = stdout.lines().collect();
    let names = [
        "ok1",
        "refused",
        "dns",
        "silent",
        "cut",
        "html502",
        "nonjson",
        "shape",
        "big",
        "redirect",
        "drop",
        "maint",
        "seats",
        "slow",
        "platform",
        "wrong-pw",
        "bad-client",
        "ok2",
    ];
    assert_eq!(lines.len(), names.len(), "{stdout}");
    for (line, name) in lines.iter().zip(names) {
        let ok = name.starts_with("ok");
        let want = if ok {
            format!("{name}: logged in; ")
        } else {
            format!("{name}: login failed: ")
        };
        assert!(line.starts_with(&want), "{line}");
    }
    assert!(!stdout.contains(INTEGRATION_PW));

    let mut status = cmd(&["status", "--json"]);
    let out = tokio::task::spawn_blocking(move || status.output().unwrap())
        .await
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for row in rows.as_array().unwrap() {
        let name = row["name"].as_str().unwrap();
        let state = row["state"].as_str().unwrap();
        if name.starts_with("ok") {
            assert_eq!(state, "active", "{row}");
        } else {
            assert_eq!(state, "error", "{row}");
            assert!(
                row["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{name}: login failed: ")),
                "{row}"
            );
        }
    }
}

/// A server that answers each request with the response `answers` gives for its path (the
/// profile's url path comes first, so one server serves many profiles), or a 404. It reads the
/// whole request first (headers and the announced body), then answers and closes.
async fn answering_server(
    answers: impl Fn(&str) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answers = Arc::new(answers);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                    if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let response = answers(&path).unwrap_or_else(|| {
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .to_vec()
                });
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// An HTTP/1.1 response with a JSON body.
fn json_response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A profiles file with one profile per name, each at `http://ADDR/NAME` (password in the file).
fn raw_profiles(addr: SocketAddr, names: &[&str]) -> String {
    let mut text =
        "[defaults]\nusername = \"integration\"\npassword = \"Raw-Pw-2b19\"\n".to_string();
    for name in names {
        text.push_str(&format!(
            "\n[profiles.{name}]\nurl = \"http://{addr}/{name}\"\n"
        ));
    }
    text
}

/// Runs the binary with `args` on a profiles file; returns (status, stdout, stderr).
async fn run_binary(profiles_text: String, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_profiles(dir.path(), &profiles_text);
    let mut cmd = assert_cmd::Command::cargo_bin("sugar-sessions").unwrap();
    cmd.arg("--profiles")
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(args)
        .env_remove("SUGAR_SESSIONS_LOG");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetimes_out_of_range_are_a_bad_answer_not_a_panic() {
    // Each profile's token answer carries one lifetime no session can have.
    let grant = |expires_in: &str, refresh_expires_in: &str| {
        format!(
            r#"{{"access_token":"acc-1","expires_in":{expires_in},"token_type":"bearer","scope":null,"refresh_token":"ref-1","refresh_expires_in":{refresh_expires_in}}}"#
        )
    };
    let answers = [
        ("huge", grant("10000000000000", "1209600")),
        ("huge-string", grant("\"10000000000000\"", "1209600")),
        ("huge-refresh", grant("3600", "10000000000000")),
        ("huge-refresh-string", grant("3600", "\"10000000000000\"")),
        (
            "eleven-years",
            grant("3600", &(11 * 366 * 86400).to_string()),
        ),
        ("negative", grant("-3600", "1209600")),
    ];
    let names: Vec<&str> = answers.iter().map(|(n, _)| *n).collect();
    let table: HashMap<String, Vec<u8>> = answers
        .iter()
        .map(|(n, body)| {
            (
                format!("/{n}/rest/v11/oauth2/token"),
                json_response("200 OK", body),
            )
        })
        .collect();
    let addr = answering_server(move |path| table.get(path).cloned()).await;

    let (code, stdout, stderr) =
        run_binary(raw_profiles(addr, &names), &["login", "--json", "--all"]).await;
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), names.len(), "{stdout}");
    for (row, (name, _)) in rows.iter().zip(&answers) {
        let message = row["message"].as_str().unwrap();
        assert_eq!(row["name"], *name, "{row}");
        assert_eq!(row["ok"], false, "{row}");
        assert_eq!(row["state"], "error", "{row}");
        let field = if name.contains("refresh") || *name == "eleven-years" {
            "\"refresh_expires_in\""
        } else {
            "\"expires_in\""
        };
        assert!(
            message.starts_with(&format!(
                "login failed: HTTP 200 with an unexpected answer: {field} of "
            )) && message.contains(" s is out of range"),
            "{message}"
        );
        assert!(
            !message.contains("acc-1") && !message.contains("ref-1"),
            "{message}"
        );
    }

    // Without --json: one failure line per profile, and nothing stored that could overflow later.
    let (code, stdout, stderr) = run_binary(raw_profiles(addr, &names), &["login", "--all"]).await;
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), names.len(), "{stdout}");
    for (line, name) in lines.iter().zip(&names) {
        assert!(
            line.starts_with(&format!("{name}: login failed: ")),
            "{line}"
        );
        assert!(line.contains("expires_in\" of "), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_from_the_server_never_reach_the_terminal() {
    let addr = answering_server(|path| {
        if path.starts_with("/escapes/") {
            Some(json_response(
                "401 Unauthorized",
                r#"{"error":"need_login\u001b[31m","error_message":"bad\u001b]52;c;AAAA\u0007 pw\r\n\u009b2J\u007fdone"}"#,
            ))
        } else if path.starts_with("/redirect/") {
            // Escapes as a server can put them in a header: C1 controls (U+009B, the one-character
            // CSI; U+009D OSC ... U+009C ST) as UTF-8, which HTTP passes as "obs-text".
            let mut r = b"HTTP/1.1 302 Found\r\nlocation: ".to_vec();
            r.extend_from_slice(
                "https://sso.\u{9b}31mexample.com/login?next=%1B%5B2J\u{9d}0;title\u{9c}".as_bytes(),
            );
            r.extend_from_slice(b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            Some(r)
        } else {
            None
        }
    })
    .await;
    let names = ["escapes", "redirect"];
    for args in [&["login", "--all"][..], &["login", "--json", "--all"]] {
        let (code, stdout, stderr) = run_binary(raw_profiles(addr, &names), args).await;
        assert_eq!(code, Some(1), "stdout: {stdout:?}\nstderr: {stderr:?}");
        for (what, text) in [("stdout", &stdout), ("stderr", &stderr)] {
            let bad: Vec<char> = text
                .chars()
                .filter(|c| c.is_control() && *c != '\n')
                .collect();
            assert!(bad.is_empty(), "{args:?}: {what} holds {bad:?}: {text:?}");
        }
        // (`--json` has the name in a field of its own, not in the message.)
        for readable in [
            "login failed: HTTP 401 need_login",
            " pw",
            "done",
            "login failed: HTTP 302 redirect to sso.example.com (hint: ",
        ] {
            assert!(
                stdout.contains(readable),
                "{args:?}: no {readable:?} in {stdout:?}"
            );
        }
    }
}
