//! Sharing one token cache between processes: black-box tests that drive the real binary against an
//! emulator started here, each with its own state directory and profiles file.
//!
//! Each test reproduces one problem of the cache protocol of the first release (the issue "sharing
//! sessions between processes"): they fail on that code, and pass once the protocol keys entries by
//! session identity, changes them by compare-and-swap on a generation, takes the identity's lock before
//! sending, bounds lock waits (`--lock-timeout SECONDS`, naming the holder) and scales its margins with
//! the token's lifetime.
//!
//! Every child process runs under a time limit and is killed when it overstays; nothing here talks
//! to anything but the emulator on 127.0.0.1.
//!
//! What these tests take for granted of the new protocol's interface:
//! - `--lock-timeout SECONDS` is a global flag (accepted after the subcommand too), default 10 s; a
//!   lock wait that runs out exits 1 and names the holder's PID on stderr. The holder is found in
//!   the lock file (`PID COMMAND` on its first line, as [`hold_lock`] writes it) or from the kernel.
//! - The cache's lock is still `STATE/sessions.lock`, and it (or the identity's lock) is taken, and
//!   the cache known to be writable, before a grant is sent.
//! - `status --json` keeps its rows (`name`, `state`, `expires_at`), with `NAME>USER` rows for
//!   impersonations; a stored failure is an object with an `op` (`check`, `sudo`, ...) under a key
//!   naming a failure, or next to a `message`; a hard end is a non-null `hard_end` anywhere.

mod common;

use common::{ADMIN_PW, INTEGRATION_PW, write_profiles};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use sugar_sessions::emulator::{Emulator, EmulatorConfig, Fault, InstanceConfig, UserConfig};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_sugar-sessions");

/// No child may run longer than this (it is killed, and the test fails).
const LIMIT: Duration = Duration::from_secs(40);

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// What one run of the binary came to.
#[derive(Debug, Clone)]
struct Out {
    /// `None`: killed by a signal (or by us, at the time limit).
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    timed_out: bool,
    /// The command line, for messages.
    what: String,
}

impl Out {
    /// The token a `token` command printed, when it exited 0.
    fn token(&self) -> Option<String> {
        let t = self.stdout.trim();
        (self.code == Some(0) && !t.is_empty()).then(|| t.to_string())
    }

    fn show(&self) -> String {
        format!(
            "`{}` exited {:?} after {:?}{}\n--- stdout\n{}--- stderr\n{}",
            self.what,
            self.code,
            self.elapsed,
            if self.timed_out {
                " (KILLED at the time limit)"
            } else {
                ""
            },
            self.stdout,
            self.stderr
        )
    }
}

/// The command line without the paths of the test's directory: `sugar-sessions refresh acme`.
fn describe(cmd: &Command) -> String {
    let mut words = vec!["sugar-sessions".to_string()];
    let mut skip = false;
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if skip {
            skip = false;
        } else if a == "--profiles" || a == "--state-dir" {
            skip = true;
        } else if !a.starts_with("--reuid")
            && !a.starts_with("--regid")
            && a != "--clear-groups"
            && a != BIN
        {
            words.push(a.into_owned());
        }
    }
    words.join(" ")
}

/// Runs `cmd` to its end or to `limit` (then kills it), collecting its output.
fn run_blocking(mut cmd: Command, limit: Duration) -> Out {
    let what = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("the binary starts");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = so.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = se.read_to_end(&mut s);
        s
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
    for secret in [INTEGRATION_PW, ADMIN_PW, JIM_PW] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a password was printed by {what}"
        );
    }
    Out {
        code: status.code(),
        stdout,
        stderr,
        elapsed,
        timed_out,
        what,
    }
}

/// Runs `cmd` off the async runtime (the emulator keeps serving meanwhile).
async fn run(cmd: Command) -> Out {
    tokio::task::spawn_blocking(move || run_blocking(cmd, LIMIT))
        .await
        .unwrap()
}

/// Starts `cmd` now; its result is awaited later.
fn spawn(cmd: Command) -> tokio::task::JoinHandle<Out> {
    spawn_limited(cmd, LIMIT)
}

/// [`spawn`] with a time limit of its own.
fn spawn_limited(cmd: Command, limit: Duration) -> tokio::task::JoinHandle<Out> {
    tokio::task::spawn_blocking(move || run_blocking(cmd, limit))
}

/// A test's own directory: profiles file(s) and state directory.
struct Env {
    dir: tempfile::TempDir,
    profiles: PathBuf,
    state: PathBuf,
    /// Run the binary as this uid/gid (through `setpriv`): see [`Env::drop_root`].
    run_as: Option<(u32, u32)>,
}

fn env(profiles_text: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let profiles = write_profiles(dir.path(), profiles_text);
    let state = dir.path().join("state");
    Env {
        dir,
        profiles,
        state,
        run_as: None,
    }
}

impl Env {
    /// The binary with `--profiles FILE --state-dir DIR` and `args`.
    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_with(&self.profiles, args)
    }

    fn cmd_with(&self, profiles: &Path, args: &[&str]) -> Command {
        let mut c = match self.run_as {
            None => Command::new(BIN),
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg(BIN);
                c
            }
        };
        c.arg("--profiles")
            .arg(profiles)
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .env_remove("SUGAR_SESSIONS_PROFILES")
            .env_remove("SUGAR_SESSIONS_STATE_DIR")
            .env_remove("SUGAR_SESSIONS_LOG")
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy");
        c
    }

    /// As root, permissions do not stop writes: from now on the binary runs as `nobody`, and the
    /// whole directory is handed to it. False when that is not possible (no such user, no setpriv).
    fn drop_root(&mut self) -> bool {
        let Some((uid, gid)) = nobody() else {
            return false;
        };
        chown_tree(self.dir.path(), uid, gid);
        self.run_as = Some((uid, gid));
        true
    }

    /// `status --json`, by name.
    async fn status(&self) -> Vec<Value> {
        self.status_with(&self.profiles).await
    }

    async fn status_with(&self, profiles: &Path) -> Vec<Value> {
        let out = run(self.cmd_with(profiles, &["status", "--json"])).await;
        assert_eq!(out.code, Some(0), "{}", out.show());
        serde_json::from_str::<Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json prints JSON ({e}): {}", out.show()))
            .as_array()
            .expect("status --json prints an array")
            .clone()
    }

    /// The cache file as JSON (whatever its format).
    fn cache_json(&self) -> Value {
        let text =
            std::fs::read_to_string(self.state.join("sessions.json")).expect("the cache exists");
        serde_json::from_str(&text).expect("the cache parses")
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `nobody`'s uid and gid, when it exists and `setpriv` can switch to it.
fn nobody() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("nobody:"))?;
    let f: Vec<&str> = line.split(':').collect();
    let (uid, gid) = (f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?);
    let ok = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some((uid, gid))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows:#?}"))
}

fn state_of(rows: &[Value], name: &str) -> String {
    row(rows, name)["state"].as_str().unwrap_or("").to_string()
}

/// Every object in `v` (at any depth) that has a key `key`, with that key's value.
fn find_key<'a>(
    v: &'a Value,
    key: &str,
    out: &mut Vec<(&'a serde_json::Map<String, Value>, &'a Value)>,
) {
    match v {
        Value::Object(map) => {
            if let Some(x) = map.get(key) {
                out.push((map, x));
            }
            for x in map.values() {
                find_key(x, key, out);
            }
        }
        Value::Array(items) => {
            for x in items {
                find_key(x, key, out);
            }
        }
        _ => {}
    }
}

/// The failures recorded in a cache (whatever its format): objects with an `op` that sit under a
/// key naming a failure or an error, or that carry a `message`.
fn failures(v: &Value) -> Vec<Value> {
    fn walk(v: &Value, parent: &str, out: &mut Vec<Value>) {
        match v {
            Value::Object(map) => {
                let under_failure = parent.contains("fail") || parent.contains("error");
                if map.contains_key("op") && (under_failure || map.contains_key("message")) {
                    out.push(v.clone());
                }
                for (k, x) in map {
                    walk(x, &k.to_ascii_lowercase(), out);
                }
            }
            Value::Array(items) => {
                for x in items {
                    walk(x, parent, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

/// The `op` of every failure in `after` that was not in `before`.
fn new_failure_ops(before: &[Value], after: &[Value]) -> Vec<String> {
    after
        .iter()
        .filter(|f| !before.contains(f))
        .map(|f| f["op"].as_str().unwrap_or("?").to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The emulator side
// ---------------------------------------------------------------------------------------------

const JIM_PW: &str = "Jim-Pw-31f7";

fn instance(name: &str) -> InstanceConfig {
    let mut i = InstanceConfig::new(name)
        .with_user(UserConfig::user(
            "integration",
            INTEGRATION_PW,
            "Integration User",
        ))
        .with_user(UserConfig::user("jim", JIM_PW, "Jim Halpert"))
        .with_platform("custom_api");
    i.users[0] = UserConfig::admin("admin", ADMIN_PW, "Administrator");
    i
}

async fn start(instances: Vec<InstanceConfig>) -> Emulator {
    sugar_sessions::sugar::install_crypto_provider();
    Emulator::start(EmulatorConfig { instances }, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the emulator starts")
}

/// `[profiles.NAME]` for `user` on `instance`, platform custom_api, with a plain password.
fn profile(emu: &Emulator, name: &str, instance: &str, user: &str, extra: &str) -> String {
    let pw = match user {
        "admin" => ADMIN_PW,
        "jim" => JIM_PW,
        _ => INTEGRATION_PW,
    };
    format!(
        "[profiles.{name}]\nurl = \"{}\"\nusername = \"{user}\"\npassword = \"{pw}\"\nplatform = \"custom_api\"\n{extra}\n",
        emu.url(instance)
    )
}

fn http() -> reqwest::Client {
    sugar_sessions::sugar::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Whether the emulator accepts `token` now (`GET /me` answers 200).
async fn accepted(emu: &Emulator, instance: &str, token: &str) -> bool {
    let url = format!("{}/rest/v11/me", emu.url(instance));
    match http().get(url).header("OAuth-Token", token).send().await {
        Ok(r) => r.status().as_u16() == 200,
        Err(_) => false,
    }
}

/// Refresh grants that reached `instance`.
fn refresh_grants(emu: &Emulator, instance: &str) -> usize {
    emu.requests()
        .iter()
        .filter(|r| {
            r.instance == instance
                && r.path == "/oauth2/token"
                && r.grant_type.as_deref() == Some("refresh_token")
        })
        .count()
}

/// Password grants that reached `instance`.
fn password_grants(emu: &Emulator, instance: &str) -> usize {
    emu.requests()
        .iter()
        .filter(|r| {
            r.instance == instance
                && r.path == "/oauth2/token"
                && r.grant_type.as_deref() == Some("password")
        })
        .count()
}

async fn ok(out: Out) -> Out {
    assert_eq!(out.code, Some(0), "{}", out.show());
    out
}

// ---------------------------------------------------------------------------------------------
// 1. A check racing a refresh or a login destroys the new session
// ---------------------------------------------------------------------------------------------

/// `login; refresh & sleep 0.3; check` with a 1 s server latency: the check's 401 on the *old*
/// token must not clear the refresh token the other process has just stored, nor mark the
/// profile superseded. Also with a `login` instead of the `refresh` (the old session superseded at
/// once, as with `superseded_access_grace = 0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_racing_a_refresh_or_login_keeps_the_new_session() {
    let mut racing_login = instance("acme0");
    racing_login.superseded_access_grace = Duration::ZERO;
    let emu = start(vec![instance("acme"), racing_login]).await;
    let e = env(&format!(
        "{}{}",
        profile(&emu, "acme", "acme", "integration", ""),
        profile(&emu, "acme0", "acme0", "integration", "")
    ));

    let mut problems = Vec::new();

    // Racing a refresh. The emulator's clock moves past the old access token's expiry (the client
    // still believes it has an hour): Sugar answers the check on the old token with 401, as it does
    // for any token it no longer accepts, while the refresh token lives on.
    ok(run(e.cmd(&["login", "acme"])).await).await;
    emu.advance_clock(Duration::from_secs(3605));
    emu.set_latency("acme", Duration::from_secs(1));
    let refresh = spawn(e.cmd(&["refresh", "acme"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let check = run(e.cmd(&["check", "acme"])).await;
    let refresh = refresh.await.unwrap();
    emu.set_latency("acme", Duration::ZERO);
    assert!(!refresh.timed_out && !check.timed_out);
    let again = run(e.cmd(&["refresh", "acme"])).await;
    let state = state_of(&e.status().await, "acme");
    if again.code != Some(0) || state != "active" {
        problems.push(format!(
            "RACING A REFRESH: the session the refresh stored was destroyed by the check's 401 on the \
             old token (status afterwards: {state})\nracing refresh: {}\nracing check: {}\nnext refresh: {}",
            refresh.show(),
            check.show(),
            again.show()
        ));
    }

    // Racing a login: the new login ends the old session on the server at once.
    ok(run(e.cmd(&["login", "acme0"])).await).await;
    emu.set_latency("acme0", Duration::from_secs(1));
    let login = spawn(e.cmd(&["login", "acme0"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let check = run(e.cmd(&["check", "acme0"])).await;
    let login = login.await.unwrap();
    emu.set_latency("acme0", Duration::ZERO);
    assert_eq!(login.code, Some(0), "{}", login.show());
    let again = run(e.cmd(&["refresh", "acme0"])).await;
    let state = state_of(&e.status().await, "acme0");
    if again.code != Some(0) || state != "active" {
        problems.push(format!(
            "RACING A LOGIN: the session the login stored was destroyed by the check's 401 on the \
             old token (status afterwards: {state})\nracing login: {}\nracing check: {}\nnext refresh: {}",
            login.show(),
            check.show(),
            again.show()
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// 2. Twenty concurrent `token` while the cached token is due for refresh
// ---------------------------------------------------------------------------------------------

/// 20 `token acme` at once while the cached token's refresh time has come (`refresh_before_s`
/// covers the whole lifetime) and Sugar takes 3 s to answer (so that all 20 have read the cache
/// before the first answer is back): one grant reaches Sugar (the others wait for the identity's
/// lock and use its result), every one exits 0, and every token printed is accepted by Sugar once
/// all are done. Once with hour-long tokens, once with 10 s tokens (`expires_in` 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_tokens_due_for_refresh_send_one_refresh() {
    let mut acme = instance("acme");
    acme.superseded_access_grace = Duration::ZERO;
    let mut short = instance("short");
    short.superseded_access_grace = Duration::ZERO;
    short.access_lifetime = Duration::from_secs(10);
    let emu = start(vec![acme, short]).await;
    let e = env(&format!(
        "{}{}",
        profile(
            &emu,
            "acme",
            "acme",
            "integration",
            "refresh_before_s = 3600"
        ),
        profile(
            &emu,
            "short",
            "short",
            "integration",
            "refresh_before_s = 3600"
        ),
    ));
    let mut problems = Vec::new();
    for name in ["acme", "short"] {
        ok(run(e.cmd(&["login", name])).await).await;
        emu.clear_requests();
        emu.set_latency(name, Duration::from_secs(3));
        let started = Instant::now();
        let runs: Vec<_> = (0..20)
            .map(|_| spawn_limited(e.cmd(&["token", name]), Duration::from_secs(20)))
            .collect();
        let mut outs = Vec::new();
        for r in runs {
            outs.push(r.await.unwrap());
        }
        let took = started.elapsed();
        emu.set_latency(name, Duration::ZERO);
        let grants = refresh_grants(&emu, name);
        let logins = password_grants(&emu, name);
        let codes: Vec<_> = outs.iter().map(|o| o.code).collect();
        let context = format!("{name}: all 20 done in {took:?}; exit codes {codes:?}");
        for o in &outs {
            if o.code != Some(0) {
                problems.push(format!("{context}: a token command failed: {}", o.show()));
                break;
            }
        }
        for o in &outs {
            if let Some(t) = o.token()
                && !accepted(&emu, name, &t).await
            {
                problems.push(format!(
                    "{context}: a token printed with exit 0 is rejected by Sugar: {}",
                    o.show()
                ));
                break;
            }
        }
        if grants + logins > 1 {
            problems.push(format!(
                "{context}: {grants} refresh grants and {logins} password grants reached Sugar for one due \
                 session; at most 1 grant expected"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// 3. A held lock
// ---------------------------------------------------------------------------------------------

/// Holds an exclusive flock on `path` from this process, with `PID COMMAND` written in it as a
/// sugar-sessions holder records itself. Released when dropped.
fn hold_lock(path: &Path) -> std::fs::File {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    f.try_lock().expect("the lock is free to take");
    f.set_len(0).unwrap();
    writeln!(f, "{} sharing-test-holder", std::process::id()).unwrap();
    f.flush().unwrap();
    f
}

/// With `sessions.lock` held by another process, `refresh acme --lock-timeout 2` gives up after
/// about 2 s with exit 1, naming the holder's PID, and has sent nothing (the refresh token it would
/// have rotated still works once the lock is free). Without the flag, the wait is bounded by the
/// default of 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_is_waited_for_boundedly_before_anything_is_sent() {
    let emu = start(vec![instance("acme")]).await;
    let e = env(&profile(
        &emu,
        "acme",
        "acme",
        "integration",
        "relogin = false",
    ));
    ok(run(e.cmd(&["login", "acme"])).await).await;
    emu.clear_requests();
    let pid = std::process::id().to_string();
    let mut problems = Vec::new();
    {
        let _held = hold_lock(&e.state.join("sessions.lock"));
        let out = run(e.cmd(&["refresh", "acme", "--lock-timeout", "2"])).await;
        let sent = refresh_grants(&emu, "acme");
        if out.code != Some(1) {
            problems.push(format!("--lock-timeout 2: exit 1 expected: {}", out.show()));
        }
        // Well under the default bound: the flag was honoured (no upper bound tighter than
        // that, the machine may be busy).
        if out.elapsed < Duration::from_millis(1500) || out.elapsed > Duration::from_secs(9) {
            problems.push(format!(
                "--lock-timeout 2: gave up after {:?}, expected about 2 s: {}",
                out.elapsed,
                out.show()
            ));
        }
        // The failure is the profile's line (stdout), as every per-profile result.
        if !out.stdout.contains(&pid) && !out.stderr.contains(&pid) {
            problems.push(format!(
                "--lock-timeout 2: the output does not name the holder's PID {pid}: {}",
                out.show()
            ));
        }
        if sent != 0 {
            problems.push(format!(
                "--lock-timeout 2: {sent} refresh grant(s) sent while the cache's lock was held: {}",
                out.show()
            ));
        }

        // The default bound: 10 s.
        let out = run_limited(e.cmd(&["refresh", "acme"]), Duration::from_secs(20)).await;
        let sent = refresh_grants(&emu, "acme");
        if out.code != Some(1)
            || out.elapsed < Duration::from_secs(8)
            || !(out.stdout.contains(&pid) || out.stderr.contains(&pid))
        {
            problems.push(format!(
                "default lock timeout: exit 1 after about 10 s naming PID {pid} expected: {}",
                out.show()
            ));
        }
        if sent != 0 {
            problems.push(format!(
                "default lock timeout: {sent} refresh grant(s) sent while the cache's lock was held: {}",
                out.show()
            ));
        }
    }
    let out = run(e.cmd(&["refresh", "acme"])).await;
    if out.code != Some(0) {
        problems.push(format!(
            "once the lock is free, the session (its refresh token never sent) refreshes: {}",
            out.show()
        ));
    }
    let grants = refresh_grants(&emu, "acme");
    if grants != 1 {
        problems.push(format!(
            "Sugar saw {grants} refresh grants in all; exactly 1 (the last refresh) expected"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// A bulk action while another process holds the cache's lock: its requests do not each wait out
/// the bound in turn (six profiles, a 1 s bound: six seconds and more when each waited its own);
/// nothing is sent, and every profile says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_action_under_a_held_lock_waits_the_bound_once_not_once_per_profile() {
    let emu = start(vec![instance("acme"), instance("globex")]).await;
    let mut text = String::new();
    for inst in ["acme", "globex"] {
        for user in ["admin", "integration", "jim"] {
            text.push_str(&profile(&emu, &format!("{inst}-{user}"), inst, user, ""));
        }
    }
    let e = env(&text);
    ok(run(e.cmd(&["login", "--all", "--yes"])).await).await;
    emu.clear_requests();
    let out = {
        let _held = hold_lock(&e.state.join("sessions.lock"));
        run_limited(
            e.cmd(&["refresh", "--all", "--lock-timeout", "1"]),
            Duration::from_secs(30),
        )
        .await
    };
    let sent = refresh_grants(&emu, "acme") + refresh_grants(&emu, "globex");
    let mut problems = Vec::new();
    if out.code != Some(1) {
        problems.push("exit 1 expected".to_string());
    }
    // One bound (1 s): the preparation that failed answers for every request that asked before
    // it ended. Each request's own would make six; a margin for a busy machine.
    if out.elapsed > Duration::from_secs(3) {
        problems.push(format!("gave up after {:?}", out.elapsed));
    }
    if sent != 0 {
        problems.push(format!("{sent} refresh grant(s) sent under a held lock"));
    }
    for inst in ["acme", "globex"] {
        for user in ["admin", "integration", "jim"] {
            let name = format!("{inst}-{user}");
            if !out
                .stdout
                .lines()
                .any(|l| l.contains(&name) && l.contains("lock"))
            {
                problems.push(format!("{name} is not said to have failed on the lock"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:?}: {}", out.show());
}

async fn run_limited(cmd: Command, limit: Duration) -> Out {
    tokio::task::spawn_blocking(move || run_blocking(cmd, limit))
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// 4. A cache that cannot be written
// ---------------------------------------------------------------------------------------------

/// The state directory turns read-only after the logins (as root, whom permissions do not stop,
/// the binary runs as `nobody`): `refresh` fails without sending the grant, and `token` never
/// prints, with exit 0, a token Sugar rejects. Once the directory is writable again, both sessions
/// refresh with the refresh tokens they had (re-login is off, so that one cannot hide a lost one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_cannot_be_written_costs_no_session() {
    let emu = start(vec![instance("acme")]).await;
    let mut e = env(&format!(
        "{}{}",
        profile(&emu, "acme", "acme", "integration", "relogin = false"),
        profile(
            &emu,
            "due",
            "acme",
            "jim",
            "relogin = false\nrefresh_before_s = 3600"
        ),
    ));
    if is_root() && !e.drop_root() {
        eprintln!(
            "SKIPPED: running as root, where a read-only directory does not stop writes, and there \
             is no user nobody to run the binary as (through setpriv)"
        );
        return;
    }
    ok(run(e.cmd(&["login", "acme", "due"])).await).await;
    emu.clear_requests();
    std::fs::set_permissions(&e.state, std::fs::Permissions::from_mode(0o500)).unwrap();
    let mut problems = Vec::new();

    let out = run(e.cmd(&["refresh", "acme"])).await;
    let sent = refresh_grants(&emu, "acme");
    if out.code == Some(0) {
        problems.push(format!(
            "refresh succeeded although the cache cannot be written: {}",
            out.show()
        ));
    }
    if sent != 0 {
        problems.push(format!(
            "refresh sent {sent} refresh grant(s) although the cache cannot be written (the rotated \
             refresh token is lost): {}",
            out.show()
        ));
    }
    let out = run(e.cmd(&["token", "due"])).await;
    if let Some(t) = out.token()
        && !accepted(&emu, "acme", &t).await
    {
        problems.push(format!(
            "token printed, with exit 0, a token Sugar rejects: {}",
            out.show()
        ));
    }

    std::fs::set_permissions(&e.state, std::fs::Permissions::from_mode(0o700)).unwrap();
    for name in ["acme", "due"] {
        let out = run(e.cmd(&["refresh", name])).await;
        if out.code != Some(0) {
            problems.push(format!(
                "with the cache writable again, {name}'s session no longer refreshes: {}",
                out.show()
            ));
        }
    }
    assert_eq!(password_grants(&emu, "acme"), 0, "no login happened");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// 5. Two profiles files, one name
// ---------------------------------------------------------------------------------------------

/// Files A and B both define `acme-prod`, for different instances, sharing one state directory:
/// a failed login through A does not show as an error through B, and a successful `check` through
/// B clears B's own earlier error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_profiles_files_with_one_name_keep_their_own_states() {
    let emu = start(vec![instance("acme"), instance("other")]).await;
    let e = env(&profile(&emu, "acme-prod", "acme", "integration", ""));
    let file_b = e.profiles.clone();
    let a_dir = e.dir.path().join("a");
    std::fs::create_dir(&a_dir).unwrap();
    let file_a = write_profiles(
        &a_dir,
        &format!(
            "[profiles.acme-prod]\nurl = \"{}\"\nusername = \"integration\"\npassword = \"wrong-password\"\nplatform = \"custom_api\"\n",
            emu.url("other")
        ),
    );
    let mut problems = Vec::new();

    ok(run(e.cmd_with(&file_b, &["login", "acme-prod"])).await).await;
    let out = run(e.cmd_with(&file_a, &["login", "acme-prod"])).await;
    assert_eq!(out.code, Some(1), "A's login fails: {}", out.show());
    let through_a = state_of(&e.status_with(&file_a).await, "acme-prod");
    assert_eq!(through_a, "error", "A's own failure shows through A");
    let b_rows = e.status_with(&file_b).await;
    if state_of(&b_rows, "acme-prod") != "active" {
        problems.push(format!(
            "A's failed login shows through B, whose session is fine: {:#}",
            row(&b_rows, "acme-prod")
        ));
    }

    // B's own failure, then a successful check through B.
    emu.set_maintenance("acme", true);
    let out = run(e.cmd_with(&file_b, &["refresh", "acme-prod"])).await;
    assert_eq!(
        out.code,
        Some(1),
        "refresh in maintenance fails: {}",
        out.show()
    );
    emu.set_maintenance("acme", false);
    let out = run(e.cmd_with(&file_b, &["check", "acme-prod"])).await;
    assert_eq!(out.code, Some(0), "{}", out.show());
    let b_rows = e.status_with(&file_b).await;
    if state_of(&b_rows, "acme-prod") != "active" {
        problems.push(format!(
            "a successful check through B did not clear B's earlier error: {:#}",
            row(&b_rows, "acme-prod")
        ));
    }
    let through_a = state_of(&e.status_with(&file_a).await, "acme-prod");
    if through_a != "error" {
        problems.push(format!(
            "A's failed login no longer shows through A (state {through_a})"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// 6. Short token lifetimes
// ---------------------------------------------------------------------------------------------

/// An instance whose access tokens live 10 s (`expires_in` 10): `token` right after the login
/// prints that token (exit 0, no new login), and `sudo` right after the admin's login works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_token_lifetimes_are_usable() {
    let mut short = instance("short");
    short.access_lifetime = Duration::from_secs(10);
    let emu = start(vec![short]).await;
    let e = env(&format!(
        "{}{}",
        profile(&emu, "acme", "short", "integration", ""),
        profile(&emu, "admin", "short", "admin", ""),
    ));
    let mut problems = Vec::new();

    ok(run(e.cmd(&["login", "acme"])).await).await;
    let out = run(e.cmd(&["token", "acme"])).await;
    match out.token() {
        None => problems.push(format!(
            "token right after the login: exit 0 with a token expected: {}",
            out.show()
        )),
        Some(t) if !accepted(&emu, "short", &t).await => problems.push(format!(
            "token printed a token Sugar rejects: {}",
            out.show()
        )),
        Some(_) => {}
    }
    if out.stderr.contains("logged in") || password_grants(&emu, "short") != 1 {
        problems.push(format!(
            "token logged in again ({} password grants in all): {}",
            password_grants(&emu, "short"),
            out.show()
        ));
    }

    ok(run(e.cmd(&["login", "admin"])).await).await;
    let out = run(e.cmd(&["sudo", "admin", "jim"])).await;
    if out.code != Some(0) {
        problems.push(format!(
            "sudo right after the admin's login: exit 0 expected: {}",
            out.show()
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// 7. A false hard end
// ---------------------------------------------------------------------------------------------

/// A refresh right after the login moves the refresh token's expiry by only a second or so: that
/// is no sign of Sugar's `max_session_lifetime`, so no hard end is stored (the screen would show
/// `ends …`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_right_after_login_stores_no_hard_end() {
    let emu = start(vec![instance("acme")]).await;
    let e = env(&profile(&emu, "acme", "acme", "integration", ""));
    ok(run(e.cmd(&["login", "acme"])).await).await;
    ok(run(e.cmd(&["refresh", "acme"])).await).await;
    let rows = e.status().await;
    let mut found = Vec::new();
    let status = Value::Array(rows);
    find_key(&status, "hard_end", &mut found);
    let in_status: Vec<_> = found
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(_, v)| (*v).clone())
        .collect();
    let cache = e.cache_json();
    let mut found = Vec::new();
    find_key(&cache, "hard_end", &mut found);
    let in_cache: Vec<_> = found
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(_, v)| (*v).clone())
        .collect();
    assert!(
        in_status.is_empty() && in_cache.is_empty(),
        "a hard end was stored after a refresh right after the login: status --json {in_status:?}, \
         sessions.json {in_cache:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Wrong causes
// ---------------------------------------------------------------------------------------------

/// Failures are reported with their real cause and stored under the operation that failed:
/// a `sessions.lock` that is a directory is reported as such (not as "the cache writer has
/// stopped"); a failed `check` is stored with op `check`; `sudo` reports op `sudo`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_name_their_real_cause_and_operation() {
    let mut acme = instance("acme");
    acme.superseded_access_grace = Duration::ZERO;
    let emu = start(vec![acme]).await;
    let e = env(&format!(
        "{}{}{}",
        profile(&emu, "acme", "acme", "integration", "relogin = false"),
        profile(&emu, "admin", "acme", "admin", ""),
        profile(&emu, "lockdir", "acme", "jim", ""),
    ));
    let mut problems = Vec::new();

    // A lock file that is a directory: in a state directory of its own.
    let odd = e.dir.path().join("odd-state");
    std::fs::create_dir(&odd).unwrap();
    std::fs::set_permissions(&odd, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::create_dir(odd.join("sessions.lock")).unwrap();
    let mut c = Command::new(BIN);
    c.arg("--profiles")
        .arg(&e.profiles)
        .arg("--state-dir")
        .arg(&odd)
        .args(["login", "lockdir"])
        .env_remove("SUGAR_SESSIONS_PROFILES")
        .env_remove("SUGAR_SESSIONS_STATE_DIR")
        .env_remove("SUGAR_SESSIONS_LOG");
    let out = run(c).await;
    let all = format!("{}{}", out.stdout, out.stderr);
    if out.code != Some(1) || !all.contains("Is a directory") || all.contains("writer has stopped")
    {
        problems.push(format!(
            "sessions.lock is a directory: exit 1 naming the cause (\"Is a directory\") expected: {}",
            out.show()
        ));
    }

    // A check that Sugar answers with 401: another tool logged in as the same user on the same
    // platform, which ended the cached session at once (grace 0).
    ok(run(e.cmd(&["login", "acme"])).await).await;
    let before = failures(&e.cache_json());
    external_login(&emu, "acme", "integration", INTEGRATION_PW).await;
    let out = run(e.cmd(&["check", "acme"])).await;
    assert_eq!(
        out.code,
        Some(2),
        "the check fails (CRITICAL): {}",
        out.show()
    );
    let cache = e.cache_json();
    let ops = new_failure_ops(&before, &failures(&cache));
    if ops.is_empty() || ops.iter().any(|op| op != "check") {
        problems.push(format!(
            "the failed check is stored with op {ops:?}, expected \"check\" (sessions.json: {cache:#})"
        ));
    }

    // sudo: a failure (a user that does not exist) and a success: an `op` in the output, and the
    // failures it stores, say `sudo`.
    ok(run(e.cmd(&["login", "admin"])).await).await;
    for (user, expect) in [("nosuchuser", Some(1)), ("jim", Some(0))] {
        let before = failures(&e.cache_json());
        let out = run(e.cmd(&["sudo", "admin", user, "--json"])).await;
        if out.code != expect {
            problems.push(format!(
                "sudo admin {user}: exit {expect:?} expected: {}",
                out.show()
            ));
            continue;
        }
        let rows: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        let mut found = Vec::new();
        find_key(&rows, "op", &mut found);
        let mut wrong: Vec<String> = found
            .iter()
            .map(|(_, op)| op.as_str().unwrap_or("?").to_string())
            .filter(|op| op != "sudo")
            .collect();
        wrong.extend(
            new_failure_ops(&before, &failures(&e.cache_json()))
                .into_iter()
                .filter(|op| op != "sudo"),
        );
        if !wrong.is_empty() || out.stdout.contains("login failed") {
            problems.push(format!(
                "sudo admin {user} is reported or stored as op {wrong:?}, expected \"sudo\": {}",
                out.show()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Another tool logs in as `user` on platform custom_api, straight against the emulator: Sugar
/// keeps one session per user and platform, so the session cached for that user ends (at once on
/// an instance with `superseded_access_grace` 0).
async fn external_login(emu: &Emulator, instance: &str, user: &str, password: &str) {
    let url = format!("{}/rest/v11/oauth2/token", emu.url(instance));
    let body = serde_json::json!({
        "grant_type": "password", "username": user, "password": password,
        "client_id": "sugar", "client_secret": "", "platform": "custom_api",
    });
    let r = http().post(url).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "the other tool's login works");
}

// ---------------------------------------------------------------------------------------------
// 9. Twenty real processes at once, in rounds
// ---------------------------------------------------------------------------------------------

/// How long Sugar keeps accepting a superseded session's access token in the stress test.
const GRACE: Duration = Duration::from_secs(2);

/// Per profile and round: 5 `token`, 2 `refresh`, 2 `check`, 1 `login`.
const STRESS_OPS: [&str; 10] = [
    "token", "refresh", "token", "check", "login", "token", "refresh", "token", "check", "token",
];

/// 5 rounds of 20 real processes mixing `token`, `refresh`, `check` and `login` on two profiles
/// (hour-long tokens, and 20 s tokens), against a server that takes 100 ms per answer. Every
/// process exits 0; every token printed with exit 0 is accepted by Sugar right after its process
/// ends; every round ends with a usable session for both (`token` exits 0 and its token works).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_processes_in_rounds_never_hand_out_a_dead_token() {
    let mut short = instance("short");
    short.access_lifetime = Duration::from_secs(20);
    short.refresh_lifetime = Duration::from_secs(300);
    short.superseded_access_grace = GRACE;
    let mut acme = instance("acme");
    acme.superseded_access_grace = GRACE;
    let emu = std::sync::Arc::new(start(vec![acme, short]).await);
    let e = env(&format!(
        "{}{}",
        profile(&emu, "acme", "acme", "integration", ""),
        profile(&emu, "short", "short", "integration", ""),
    ));
    ok(run(e.cmd(&["login", "acme", "short"])).await).await;
    emu.set_latency("acme", Duration::from_millis(200));
    emu.set_latency("short", Duration::from_millis(200));
    let mut problems = Vec::new();
    for round in 0..5 {
        let mut jobs = Vec::new();
        for i in 0..20 {
            let name = if i % 2 == 0 { "acme" } else { "short" };
            let op = STRESS_OPS[i / 2];
            let run = spawn_limited(e.cmd(&[op, name]), Duration::from_secs(30));
            let emu = emu.clone();
            jobs.push(tokio::spawn(async move {
                let out = run.await.unwrap();
                // Checked the moment the process is done, before anything else of this round can
                // end that session.
                let rejected = match out.token() {
                    Some(t) if op == "token" => !accepted(&emu, name, &t).await,
                    _ => false,
                };
                (out, rejected)
            }));
        }
        let mut failed = 0;
        for job in jobs {
            let (out, rejected) = job.await.unwrap();
            if rejected {
                problems.push(format!(
                    "round {round}: a token printed with exit 0 was rejected by Sugar right away: {}",
                    out.show()
                ));
            }
            if out.code != Some(0) && !out.what.contains(" check ") {
                failed += 1;
                if failed <= 3 {
                    problems.push(format!("round {round}: a process failed: {}", out.show()));
                }
            }
        }
        if failed > 3 {
            problems.push(format!("round {round}: {failed} processes failed in all"));
        }
        // Past the grace of any session a process of this round superseded: what the cache holds
        // now must be the live session, not one that a lost update put back.
        tokio::time::sleep(GRACE + Duration::from_millis(500)).await;
        for name in ["acme", "short"] {
            let out = run(e.cmd(&["token", name])).await;
            let usable = match out.token() {
                Some(t) => accepted(&emu, name, &t).await,
                None => false,
            };
            if !usable {
                problems.push(format!(
                    "round {round} ends without a usable session for {name}: {}",
                    out.show()
                ));
            }
        }
        if !problems.is_empty() {
            break;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// 10. A format-1 cache of the previous release
// ---------------------------------------------------------------------------------------------

/// The cache the first release wrote (format 1, keyed by profile name), with its profiles file:
/// `status --json` shows every session it held, with its expiry; entries that held only a failure
/// may be dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_cache_keeps_its_sessions() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cache/format1");
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles.toml");
    std::fs::copy(fixture.join("profiles.toml"), &profiles).unwrap();
    std::fs::set_permissions(&profiles, std::fs::Permissions::from_mode(0o600)).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(fixture.join("sessions.json"), state.join("sessions.json")).unwrap();
    std::fs::set_permissions(
        state.join("sessions.json"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let old: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("sessions.json")).unwrap())
            .unwrap();
    let e = Env {
        dir,
        profiles,
        state,
        run_as: None,
    };
    let out = run(e.cmd(&["status", "--json"])).await;
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert!(!out.stderr.contains("did not parse"), "{}", out.show());
    let rows: Vec<Value> = serde_json::from_str::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    let mut problems = Vec::new();
    for name in [
        "acme-prod",
        "acme-admin",
        "acme-admin>sally",
        "acme-sbx",
        "globex",
        "globex-web",
        "initech-admin",
    ] {
        let want = old["profiles"][name]["session"]["expires_at"]
            .as_str()
            .unwrap();
        let want = chrono::DateTime::parse_from_rfc3339(want)
            .unwrap()
            .timestamp();
        let Some(r) = rows.iter().find(|r| r["name"] == name) else {
            problems.push(format!("{name}: no row in status --json"));
            continue;
        };
        let got = r["expires_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp());
        if got.is_none_or(|got| (got - want).abs() > 1) {
            problems.push(format!(
                "{name}: the session's expires_at is lost or changed: {r:#}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        out.stdout
    );
}

/// A name that the snapshot's one profile does not answer (`acme>nobody`: no such impersonation)
/// gets the whole file's answer, with its closest names, as the first run (a full load) gave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_one_profile_does_not_answer_gets_the_whole_files_answer() {
    let mut text = String::from("[defaults]\nplatform = \"custom_api\"\n");
    for name in ["acme", "acm", "acme-nobody"] {
        text.push_str(&format!(
            "[profiles.{name}]\nurl = \"https://{name}.example.com\"\nusername = \"u\"\n\
             password_env = \"SS_NO_PW\"\n"
        ));
    }
    let e = env(&text);
    std::fs::create_dir(&e.state).unwrap();
    std::fs::set_permissions(&e.state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let first = run(e.cmd(&["token", "acme>nobody"])).await;
    assert!(
        first.stderr.contains("did you mean") && first.stderr.contains("acme-nobody"),
        "{}",
        first.show()
    );
    let snapshot = std::fs::read_dir(&e.state).unwrap().any(|f| {
        f.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".snapshot")
    });
    assert!(snapshot, "the first run's full load wrote the snapshot");
    let again = run(e.cmd(&["token", "acme>nobody"])).await;
    assert_eq!(
        (again.code, &again.stderr),
        (first.code, &first.stderr),
        "{}",
        again.show()
    );
}

/// `token NAME` reads the profiles' snapshot for that one profile alone. On a format-1 cache the
/// store still needs every profile's client id (the old cache is keyed by name): when `token a`
/// refreshes and so rewrites the cache, `b`'s session (another client id) must stay `b`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_through_the_snapshot_keeps_a_format_1_caches_other_sessions() {
    let mut acme = instance("acme");
    acme.clients.push(("mine".to_string(), String::new()));
    let emu = start(vec![acme]).await;
    let url = emu.url("acme");
    // No secret in the file, so that it gets a snapshot: passwords from the environment.
    let e = env(&format!(
        "[defaults]\nplatform = \"custom_api\"\n\
         [profiles.a]\nurl = \"{url}\"\nusername = \"integration\"\npassword_env = \"SS_PW_A\"\n\
         [profiles.b]\nurl = \"{url}\"\nusername = \"jim\"\npassword_env = \"SS_PW_B\"\nclient_id = \"mine\"\n"
    ));
    let cmd = |args: &[&str]| {
        let mut c = e.cmd(args);
        c.env("SS_PW_A", INTEGRATION_PW).env("SS_PW_B", JIM_PW);
        c
    };
    ok(run(cmd(&["login", "--all", "--yes"])).await).await;
    // The same sessions as the first release wrote them: keyed by profile name; a's expired.
    let file = e.state.join("sessions.json");
    let v2: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let mut v1 = serde_json::json!({"version": 1, "profiles": {}});
    for entry in v2["sessions"].as_object().unwrap().values() {
        let name = entry["profile"].as_str().unwrap();
        let mut session = entry["session"].clone();
        if name == "a" {
            session["expires_at"] = Value::from("2020-01-01T00:00:00Z");
        }
        v1["profiles"][name] = serde_json::json!({"session": session});
    }
    std::fs::write(&file, serde_json::to_vec_pretty(&v1).unwrap()).unwrap();
    // A load now that the state directory is there writes the profiles' snapshot.
    ok(run(cmd(&["list"])).await).await;
    let b_token = v1["profiles"]["b"]["session"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let snapshots = std::fs::read_dir(&e.state)
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".snapshot")
        })
        .count();
    assert_eq!(
        snapshots, 1,
        "list's full load wrote the profiles' snapshot"
    );

    let refreshed = ok(run(cmd(&["token", "a"])).await).await;
    assert_eq!(refresh_grants(&emu, "acme"), 1, "{}", refreshed.show());
    let b = run(cmd(&["token", "b"])).await;
    assert_eq!(
        b.token().as_deref(),
        Some(b_token.as_str()),
        "b's stored session, kept when a's refresh rewrote the format-1 cache: {}",
        b.show()
    );
    assert_eq!(password_grants(&emu, "acme"), 2, "the two logins only");
}

// ---------------------------------------------------------------------------------------------
// Found by the protocol model (tests/protocol_model.rs), here with the real binary
// ---------------------------------------------------------------------------------------------

/// Another tool's login ended the session, and a check recorded it as superseded: `token` must not
/// print the dead access token (Sugar rejects it) but log in again and print the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_never_hands_out_a_session_known_to_be_superseded() {
    let mut acme = instance("acme");
    acme.superseded_access_grace = Duration::ZERO;
    let emu = start(vec![acme]).await;
    let e = env(&profile(&emu, "acme", "acme", "integration", ""));
    ok(run(e.cmd(&["login", "acme"])).await).await;
    external_login(&emu, "acme", "integration", INTEGRATION_PW).await;
    let check = run(e.cmd(&["check", "acme"])).await;
    assert_eq!(check.code, Some(2), "{}", check.show());
    assert_eq!(state_of(&e.status().await, "acme"), "superseded");
    let out = ok(run(e.cmd(&["token", "acme"])).await).await;
    let token = out.token().expect("a token is printed");
    assert!(
        accepted(&emu, "acme", &token).await,
        "the printed token is a live one: {}",
        out.show()
    );
    assert_eq!(state_of(&e.status().await, "acme"), "active");
}

/// The server's clock runs an hour ahead: Sugar answers the check's requests "The access token
/// provided has expired." That is an expired token, not a session another login ended: the
/// refresh token stays, nothing is marked superseded, and the next refresh works. A logout in the
/// same situation refreshes first and then revokes the session on the server for real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_expired_on_the_server_is_not_taken_for_an_ended_session() {
    let emu = start(vec![instance("acme")]).await;
    let e = env(&profile(
        &emu,
        "acme",
        "acme",
        "integration",
        "relogin = false",
    ));
    ok(run(e.cmd(&["login", "acme"])).await).await;
    emu.advance_clock(Duration::from_secs(3601));
    let check = run(e.cmd(&["check", "acme"])).await;
    assert_eq!(check.code, Some(2), "{}", check.show());
    assert!(
        !check.stdout.contains("superseded"),
        "an expired token is not a superseded session: {}",
        check.show()
    );
    assert_ne!(state_of(&e.status().await, "acme"), "superseded");
    ok(run(e.cmd(&["refresh", "acme"])).await).await;

    emu.advance_clock(Duration::from_secs(3601));
    let out = ok(run(e.cmd(&["logout", "acme"])).await).await;
    assert_eq!(
        emu.active_sessions("acme"),
        0,
        "the logout revoked the session on the server: {}",
        out.show()
    );
    assert_eq!(state_of(&e.status().await, "acme"), "logged_out");
}

/// Sugar rotated the refresh token but its answer never arrived (the connection broke mid-body).
/// The next refresh is rejected: that is this process's own lost answer, not another login, and
/// must not be reported (or stored) as superseded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_refresh_answer_is_not_reported_as_superseded() {
    let emu = start(vec![instance("acme")]).await;
    let e = env(&profile(
        &emu,
        "acme",
        "acme",
        "integration",
        "relogin = false",
    ));
    ok(run(e.cmd(&["login", "acme"])).await).await;
    emu.set_fault("acme", Some(Fault::DropMidBody));
    let lost = run(e.cmd(&["refresh", "acme"])).await;
    assert_eq!(lost.code, Some(1), "{}", lost.show());
    emu.set_fault("acme", None);
    let next = run(e.cmd(&["refresh", "acme"])).await;
    assert_eq!(next.code, Some(1), "{}", next.show());
    assert!(
        !next.stdout.contains("superseded") && next.stdout.contains("never arrived"),
        "{}",
        next.show()
    );
    assert_eq!(state_of(&e.status().await, "acme"), "error");
}

/// Our own login's answer was lost (Sugar made a new session, ending the one we hold): the check's
/// 401 on the old token is not "another login", and is not stored as superseded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_after_our_own_lost_login_answer_does_not_say_superseded() {
    let mut acme = instance("acme");
    acme.superseded_access_grace = Duration::ZERO;
    let emu = start(vec![acme]).await;
    let e = env(&profile(
        &emu,
        "acme",
        "acme",
        "integration",
        "relogin = false",
    ));
    ok(run(e.cmd(&["login", "acme"])).await).await;
    emu.set_fault("acme", Some(Fault::DropMidBody));
    let lost = run(e.cmd(&["login", "acme"])).await;
    assert_eq!(lost.code, Some(1), "{}", lost.show());
    emu.set_fault("acme", None);
    let check = run(e.cmd(&["check", "acme"])).await;
    assert_eq!(check.code, Some(2), "{}", check.show());
    assert!(!check.stdout.contains("superseded"), "{}", check.show());
    assert_ne!(state_of(&e.status().await, "acme"), "superseded");
    // A new login makes it right.
    ok(run(e.cmd(&["login", "acme"])).await).await;
    assert_eq!(state_of(&e.status().await, "acme"), "active");
}

/// A logout whose answer was lost (Sugar ended the session): the next refresh's rejection is not
/// reported as superseded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_after_our_own_lost_logout_answer_does_not_say_superseded() {
    let emu = start(vec![instance("acme")]).await;
    let e = env(&profile(
        &emu,
        "acme",
        "acme",
        "integration",
        "relogin = false",
    ));
    ok(run(e.cmd(&["login", "acme"])).await).await;
    emu.set_fault("acme", Some(Fault::DropMidBody));
    let lost = run(e.cmd(&["logout", "acme"])).await;
    assert_eq!(lost.code, Some(1), "{}", lost.show());
    emu.set_fault("acme", None);
    let next = run(e.cmd(&["refresh", "acme"])).await;
    assert_eq!(next.code, Some(1), "{}", next.show());
    assert!(
        !next.stdout.contains("superseded") && next.stdout.contains("never arrived"),
        "{}",
        next.show()
    );
    assert_ne!(state_of(&e.status().await, "acme"), "superseded");
}

/// After our own lost login answer a check found the session gone: a second check must not call
/// it superseded, and `token` must not hand out the access token the check saw rejected (it logs
/// in again instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_a_check_found_gone_is_neither_handed_out_nor_later_called_superseded() {
    let mut acme = instance("acme");
    acme.superseded_access_grace = Duration::ZERO;
    let emu = start(vec![acme]).await;
    let e = env(&profile(&emu, "acme", "acme", "integration", ""));
    ok(run(e.cmd(&["login", "acme"])).await).await;
    emu.set_fault("acme", Some(Fault::DropMidBody));
    assert_eq!(run(e.cmd(&["login", "acme"])).await.code, Some(1));
    emu.set_fault("acme", None);
    assert_eq!(run(e.cmd(&["check", "acme"])).await.code, Some(2));
    let again = run(e.cmd(&["check", "acme"])).await;
    assert_eq!(again.code, Some(2), "{}", again.show());
    assert!(!again.stdout.contains("superseded"), "{}", again.show());
    assert_ne!(state_of(&e.status().await, "acme"), "superseded");
    let out = ok(run(e.cmd(&["token", "acme"])).await).await;
    let token = out.token().expect("a token");
    assert!(accepted(&emu, "acme", &token).await, "{}", out.show());
}

/// The refresh token was rejected (another tool's login ended the session) and the automatic new
/// login failed too (the password changed): the rejected session is over, and `token` must not
/// hand out its access token (Sugar no longer accepts it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_re_login_leaves_no_dead_token_to_hand_out() {
    let mut acme = instance("acme");
    acme.superseded_access_grace = Duration::ZERO;
    let emu = start(vec![acme]).await;
    let mut e = env(&profile(&emu, "acme", "acme", "integration", ""));
    ok(run(e.cmd(&["login", "acme"])).await).await;
    external_login(&emu, "acme", "integration", INTEGRATION_PW).await;
    // The password in the profiles file goes stale.
    let stale = profile(&emu, "acme", "acme", "integration", "")
        .replace(INTEGRATION_PW, "Not-The-Password-1");
    e.profiles = write_profiles(e.dir.path(), &stale);
    let refresh = run(e.cmd(&["refresh", "acme"])).await;
    assert_eq!(refresh.code, Some(1), "{}", refresh.show());
    let out = run(e.cmd(&["token", "acme"])).await;
    if let Some(token) = out.token() {
        assert!(
            accepted(&emu, "acme", &token).await,
            "a token Sugar rejects was handed out: {}",
            out.show()
        );
    }
    assert_ne!(out.code, Some(0), "{}", out.show());
}
