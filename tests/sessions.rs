//! Sessions that look after themselves and say what happened: live checks, impersonation,
//! superseded sessions, re-login (against the emulator).

mod common;

use common::*;
use std::time::Duration;
use sugar_sessions::config::Settings;
use sugar_sessions::runtime::Engine;
use sugar_sessions::session::{Op, State};
use sugar_sessions::store::Store;

fn engine_in(dir: &std::path::Path) -> Engine {
    Engine::new(Store::open(dir).unwrap(), &Settings::default())
}

fn admin(emu: &sugar_sessions::emulator::Emulator) -> sugar_sessions::config::Profile {
    profile(
        "acme-admin",
        &format!(
            "url = \"{}\"\nusername = \"admin\"\npassword = \"{ADMIN_PW}\"\nplatform = \"custom_api\"",
            emu.url("acme")
        ),
    )
}

#[tokio::test]
async fn check_reports_who_what_and_the_clock() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_in(dir.path());
    let p = admin(&emu);

    let (o, report) = engine.check(&p).await;
    assert!(!o.ok && report.is_none());
    assert_eq!(
        o.message,
        "acme-admin: check failed: no active session to check: log in first"
    );

    assert!(engine.run(&p, Op::Login, None).await.ok);
    let (o, report) = engine.check(&p).await;
    assert!(o.ok, "{}", o.message);
    let r = report.unwrap();
    assert_eq!(
        (r.user_name.as_str(), r.full_name.as_str(), r.admin),
        ("admin", "Administrator", true)
    );
    assert_eq!((r.flavor.as_str(), r.version.as_str()), ("ENT", "12.0.0"));
    assert!(r.skew_s.unwrap().abs() <= 2, "{:?}", r.skew_s);
    assert!(
        o.message.starts_with(
            "acme-admin: alive; Administrator (admin, admin) · Sugar 12.0.0 ENT · ping "
        ),
        "{}",
        o.message
    );
    assert!(!o.message.contains("warning"));
    let paths: Vec<&str> = o.requests.iter().map(|l| l.path).collect();
    assert_eq!(paths, ["/ping", "/me", "/metadata", "/ping/whattimeisit"]);

    // A server clock 5 minutes ahead is a warning.
    emu.advance_clock(Duration::from_secs(300));
    let (o, report) = engine.check(&p).await;
    assert!(o.ok);
    assert!((299..=301).contains(&report.unwrap().skew_s.unwrap()));
    assert!(
        o.message
            .contains("warning: the server's clock is 300 s ahead of this machine's")
            || o.message.contains("s ahead of this machine's"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn check_notices_a_session_sugar_no_longer_accepts() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_in(dir.path());
    // Another tool, with its own cache, logs in as the same user on the same platform.
    let other_dir = tempfile::tempdir().unwrap();
    let other = engine_in(other_dir.path());
    let first = integration(&emu, "first", "acme");
    let second = integration(&emu, "second", "acme");
    assert!(engine.run(&first, Op::Login, None).await.ok);
    assert!(other.run(&second, Op::Login, None).await.ok);
    emu.advance_clock(Duration::from_secs(121)); // past the superseded access token's grace
    let (o, report) = engine.check(&first).await;
    assert!(!o.ok && report.is_none());
    assert_ne!(o.state, State::Active, "{}", o.message);
    assert!(
        o.message.contains("Sugar no longer accepts this session"),
        "{}",
        o.message
    );
    let (o, _) = other.check(&second).await;
    assert!(o.ok, "the newer session is fine: {}", o.message);
}

#[tokio::test]
async fn sudo_gets_a_session_as_another_user() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_in(dir.path());
    let p = admin(&emu);

    let o = engine.sudo(&p, "integration").await;
    assert!(!o.ok);
    assert_eq!(o.name, "acme-admin>integration");
    assert!(
        o.message
            .contains("acme-admin has no active session: log in first"),
        "{}",
        o.message
    );

    assert!(engine.run(&p, Op::Login, None).await.ok);
    let o = engine.sudo(&p, "integration").await;
    assert!(o.ok, "{}", o.message);
    assert_eq!(o.state, State::Active);
    let s = o.entry.session.as_ref().unwrap();
    assert_eq!(s.username, "integration");
    assert!(
        s.refresh_token.is_none(),
        "an impersonation has no refresh token"
    );
    assert!(o.message.starts_with(
        "acme-admin>integration: impersonating integration through acme-admin's admin session"
    ));
    // The caller keeps its own session, and the impersonation is stored under its own name.
    let cache = engine.cache().await.unwrap();
    let key = p.session_key();
    assert!(cache.entry(&key).unwrap().session.is_some());
    assert!(
        cache
            .entry(&key.impersonating("integration"))
            .unwrap()
            .session
            .is_some()
    );

    let o = engine.sudo(&p, "nobody").await;
    assert!(!o.ok);
    assert!(o.message.contains("HTTP 404 not_found"), "{}", o.message);
    assert!(o.message.contains("no such user"), "{}", o.message);

    let user = integration(&emu, "acme-int", "acme");
    assert!(engine.run(&user, Op::Login, None).await.ok);
    let o = engine.sudo(&user, "admin").await;
    assert!(!o.ok);
    assert!(
        o.message.contains("HTTP 403 not_authorized"),
        "{}",
        o.message
    );
    assert!(
        o.message
            .contains("only an admin's session can impersonate"),
        "{}",
        o.message
    );
}

fn integration_with(
    emu: &sugar_sessions::emulator::Emulator,
    name: &str,
    extra: &str,
) -> sugar_sessions::config::Profile {
    profile(
        name,
        &format!(
            "url = \"{}\"\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\nplatform = \"custom_api\"\n{extra}",
            emu.url("acme")
        ),
    )
}

#[tokio::test]
async fn a_session_ended_by_another_login_is_superseded_and_says_why() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_in(dir.path());
    // Another tool (its own cache) logs in as the same user on the same platform.
    let other_dir = tempfile::tempdir().unwrap();
    let other = engine_in(other_dir.path());
    let first = integration_with(&emu, "first", "relogin = false");
    let second = integration_with(&emu, "second", "");
    assert!(engine.run(&first, Op::Login, None).await.ok);
    assert!(other.run(&second, Op::Login, None).await.ok);
    let o = engine.run(&first, Op::Refresh, None).await;
    assert!(!o.ok);
    assert_eq!(o.state, State::Superseded);
    assert!(
        o.message.starts_with(
            "first: superseded: another login as integration on platform custom_api ended it (Sugar keeps one session per user and platform); give each integration a platform of its own"
        ),
        "{}",
        o.message
    );
    assert!(
        o.message.contains("HTTP 400 invalid_grant"),
        "{}",
        o.message
    );
    // Stored: the state and its reason survive in the cache.
    let cached = engine
        .cache()
        .await
        .unwrap()
        .entry(&first.session_key())
        .cloned()
        .unwrap();
    assert_eq!(cached.state(chrono::Utc::now()), State::Superseded);
    assert_eq!(
        cached.reason(chrono::Utc::now()).as_deref(),
        o.message.strip_prefix("first: ")
    );
    // An expired refresh token is not "superseded".
    let lone = profile(
        "lone",
        &format!(
            "url = \"{}\"\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\nplatform = \"acme_sync\"\nrelogin = false",
            emu.url("acme")
        ),
    );
    assert!(engine.run(&lone, Op::Login, None).await.ok);
    emu.advance_clock(Duration::from_secs(1_209_600 + 60));
    let o = engine.run(&lone, Op::Refresh, None).await;
    assert_eq!(o.state, State::Error, "{}", o.message);
    assert!(
        o.message.contains("Refresh token has expired"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn a_rejected_refresh_token_logs_in_again_once_per_ten_minutes() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_in(dir.path());
    // The other tool keeps its own cache.
    let other_dir = tempfile::tempdir().unwrap();
    let other = engine_in(other_dir.path());
    let ours = integration_with(&emu, "ours", "");
    let theirs = integration_with(&emu, "theirs", "relogin = false");
    assert!(engine.run(&ours, Op::Login, None).await.ok);
    assert!(other.run(&theirs, Op::Login, None).await.ok);
    let o = engine.run(&ours, Op::Refresh, None).await;
    assert!(o.ok, "{}", o.message);
    assert!(
        o.message.starts_with("ours: logged in again, because the refresh token could not be used (it was superseded by another login: HTTP 400 invalid_grant"),
        "{}",
        o.message
    );
    assert_eq!(o.state, State::Active);
    assert!(o.entry.relogin_at.is_some());

    // The other tool logs in again, ending ours a second time within ten minutes: no loop.
    assert!(other.run(&theirs, Op::Login, None).await.ok);
    let o = engine.run(&ours, Op::Refresh, None).await;
    assert!(!o.ok);
    assert_eq!(o.state, State::Superseded);
    assert!(
        o.message
            .contains("not logging in again automatically: that already happened at"),
        "{}",
        o.message
    );
    assert!(
        o.message.contains(
            "another tool is probably logging in as integration on platform custom_api too"
        ),
        "{}",
        o.message
    );
    let logins = emu
        .requests()
        .iter()
        .filter(|r| r.grant_type.as_deref() == Some("password"))
        .count();
    assert_eq!(logins, 4, "two by each profile, no more");
}

#[tokio::test]
async fn a_capped_session_shows_its_hard_end() {
    let mut world = world();
    world.instances[1].max_session_lifetime = Some(Duration::from_secs(240));
    let emu = start_with(world).await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_in(dir.path());
    let p = integration(&emu, "short", "short");
    let o = engine.run(&p, Op::Login, None).await;
    assert!(o.ok);
    assert_eq!(o.entry.session.as_ref().unwrap().hard_end, None);
    // A refresh right after the login proves nothing (the expiry would not have moved anyway):
    // as if the login was 11 s ago.
    change_entry(&engine, &p, |e| {
        e.session.as_mut().unwrap().obtained_at -= chrono::TimeDelta::seconds(11)
    })
    .await;
    let o = engine.run(&p, Op::Refresh, None).await;
    assert!(o.ok, "{}", o.message);
    let s = o.entry.session.unwrap();
    assert_eq!(
        s.hard_end, s.refresh_expires_at,
        "the refresh did not extend the session: it ends there"
    );
}

#[tokio::test]
async fn a_check_takes_a_place_per_request_under_the_per_host_bound() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        max_concurrency: 64,
        max_per_host: 4,
        ..Settings::default()
    };
    let engine = Engine::new(Store::open(dir.path()).unwrap(), &settings);
    let p = admin(&emu);
    let held = engine
        .acquire_n(&p, sugar_sessions::runtime::CHECK_REQUESTS)
        .await;
    let blocked = tokio::time::timeout(Duration::from_millis(50), engine.acquire(&p)).await;
    assert!(
        blocked.is_err(),
        "the host's four places are all taken by one check"
    );
    drop(held);
    let free = tokio::time::timeout(Duration::from_secs(5), engine.acquire(&p)).await;
    assert!(free.is_ok());
    // Never more places than the bound has: a bound of 1 still lets a check run.
    let one = Engine::new(
        Store::open(dir.path()).unwrap(),
        &Settings {
            max_concurrency: 64,
            max_per_host: 1,
            ..Settings::default()
        },
    );
    let _p = tokio::time::timeout(Duration::from_secs(5), one.acquire_n(&p, 4))
        .await
        .expect("clamped to the bound");
}

/// An engine on `dir` whose bounds send one request at a time to each host.
fn one_per_host(dir: &std::path::Path) -> std::sync::Arc<Engine> {
    let settings = Settings {
        max_per_host: 1,
        ..Settings::default()
    };
    std::sync::Arc::new(Engine::new(Store::open(dir).unwrap(), &settings))
}

/// A job runner over `engine`, and the channel of its reports.
fn runner<K>(
    engine: std::sync::Arc<Engine>,
) -> (
    sugar_sessions::runtime::Jobs<K>,
    tokio::sync::mpsc::Receiver<(K, sugar_sessions::runtime::Report)>,
)
where
    K: Clone + Eq + std::hash::Hash + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    (sugar_sessions::runtime::Jobs::new(engine, tx), rx)
}

/// A login with the profile's own password source.
fn login() -> sugar_sessions::runtime::Work {
    sugar_sessions::runtime::Work::Op {
        op: Op::Login,
        password: None,
    }
}

/// The job runner: a job waits for its place under the bounds; while it waits it can be
/// withdrawn (reported), and a newer job for the same key replaces it (no report for the older);
/// a job that has its place runs to its end and reports its outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_one_per_key_newer_replaces_queued_and_queued_can_be_withdrawn() {
    use std::sync::Arc;
    use sugar_sessions::runtime::{Report, Work};
    let emu = start().await;
    emu.set_latency("acme", Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let (mut jobs, mut rx) = runner(one_per_host(dir.path()));
    let p = |name: &str| Arc::new(integration(&emu, name, "acme"));
    // "a" takes the one place; "b" and "c" wait behind it.
    jobs.submit("a", p("a"), login());
    tokio::time::sleep(Duration::from_millis(50)).await;
    jobs.submit("b", p("b"), login());
    jobs.submit("c", p("c"), login());
    // A newer request for "b" replaces the queued one: a check instead of a login.
    jobs.submit("b", p("b"), Work::Check);
    assert!(jobs.cancel(&"c"), "c was still queued");
    assert!(!jobs.cancel(&"zzz"), "nothing to withdraw");
    let mut seen: Vec<(&str, String)> = Vec::new();
    while seen
        .iter()
        .filter(|(_, r)| r.starts_with("done") || r == "withdrawn")
        .count()
        < 3
    {
        let (key, report) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("reports come")
            .expect("the channel is open");
        let text = match report {
            Report::Started => "started".to_string(),
            Report::Withdrawn => "withdrawn".to_string(),
            Report::Done { outcome, .. } => format!("done {}", outcome.op),
        };
        seen.push((key, text));
    }
    let of = |k: &str| -> Vec<String> {
        seen.iter()
            .filter(|(key, _)| *key == k)
            .map(|(_, r)| r.clone())
            .collect()
    };
    assert_eq!(of("a"), ["started", "done login"]);
    assert_eq!(of("c"), ["withdrawn"]);
    // One report of "b": the newer job, a check (the older login went without a word).
    assert_eq!(of("b"), ["started", "done check"], "{seen:?}");
    assert_eq!(jobs.finish(Duration::from_secs(5)).await, 0);
}

/// Jobs that wait for the same bound get it in the order they were submitted (a file's profiles
/// on one host are logged in in file order), whatever order the runtime's workers start them in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_take_their_places_in_the_order_they_were_submitted() {
    use std::sync::Arc;
    use sugar_sessions::runtime::{Report, Work};
    let emu = start().await;
    emu.set_latency("acme", Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    let engine = one_per_host(dir.path());
    for round in 0..5 {
        let (mut jobs, mut rx) = runner(engine.clone());
        let names: Vec<String> = (0..8).map(|i| format!("r{round}p{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let p = Arc::new(integration(&emu, name, "acme"));
            jobs.submit(i, p, Work::Check);
        }
        let mut started = Vec::new();
        let mut done = 0;
        while done < names.len() {
            let (i, report) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .expect("reports come")
                .expect("the channel is open");
            match report {
                Report::Started => started.push(i),
                Report::Done { .. } => done += 1,
                Report::Withdrawn => panic!("nothing was withdrawn"),
            }
        }
        assert_eq!(
            started,
            (0..names.len()).collect::<Vec<_>>(),
            "round {round}"
        );
        assert_eq!(jobs.finish(Duration::from_secs(5)).await, 0);
    }
}

/// Into a new state directory, every identity's first lock makes its lock file. Jobs waiting for
/// their place under the bounds have theirs made meanwhile, so that a bulk login's later waves
/// take their locks at once when their turn comes instead of queueing for the files then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_have_their_lock_files_made_while_they_wait() {
    use std::sync::Arc;
    use sugar_sessions::runtime::Report;
    let emu = start().await;
    emu.set_latency("acme", Duration::from_secs(4));
    let dir = tempfile::tempdir().unwrap();
    let engine = one_per_host(dir.path());
    let store = engine.store().clone();
    let (mut jobs, mut rx) = runner(engine);
    let profiles: Vec<Arc<sugar_sessions::config::Profile>> = (0..4)
        .map(|i| {
            Arc::new(profile(
                &format!("p{i}"),
                &format!(
                    "url = \"{}\"\nusername = \"user{i}\"\npassword = \"pw\"\nplatform = \"custom_api\"",
                    emu.url("acme")
                ),
            ))
        })
        .collect();
    for (i, p) in profiles.iter().enumerate() {
        jobs.submit(i, p.clone(), login());
    }
    // p0 has the host's one place (its answer takes four seconds); p1 to p3 wait behind it.
    let (first, report) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the first job starts")
        .expect("the channel is open");
    assert!(
        matches!(report, Report::Started) && first == 0,
        "p0 starts first"
    );
    let files: Vec<_> = profiles
        .iter()
        .map(|p| store.key_lock_path(&p.session_key()))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !files.iter().all(|f| f.exists()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut started = Vec::new();
    while let Ok((i, report)) = rx.try_recv() {
        if matches!(report, Report::Started) {
            started.push(i);
        }
    }
    assert!(started.is_empty(), "only p0 has its place yet: {started:?}");
    for (p, f) in profiles.iter().zip(&files) {
        assert!(f.exists(), "{}'s lock file is made while it waits", p.name);
    }
    for i in 1..4 {
        assert!(jobs.cancel(&i), "job {i} was still queued");
    }
    assert_eq!(jobs.finish(Duration::from_secs(10)).await, 0);
}

/// A login decided because the session needed one (the daemon's, with nothing to refresh with):
/// when another process logged in meanwhile (the broker, the screen, `token`), a second login would
/// end that session (Sugar keeps one per user and platform). Under the lock it is decided again,
/// and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_login_is_decided_again_under_the_lock() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = engine_in(dir.path());
    let other = engine_in(dir.path());
    let p = integration(&emu, "acme", "acme");
    // Another process logs in first; the daemon had decided from a cache without a session.
    let permit = other.acquire(&p).await;
    assert!(other.execute(&p, Op::Login, None, permit).await.ok);
    emu.clear_requests();
    let permit = daemon.acquire(&p).await;
    let o = daemon.execute_due(&p, Op::Login, permit).await;
    assert!(o.ok, "{}", o.message);
    assert!(
        o.message.contains("logged in by another process just now"),
        "{}",
        o.message
    );
    assert!(emu.requests().is_empty(), "nothing was sent");
    // A passing failure beside that session (a check that could not reach Sugar) makes it no
    // less usable: the rule that decided the login says none is needed, and none is sent.
    change_entry(&other, &p, |e| {
        e.failure = Some(sugar_sessions::outcome::Failure::local(
            Op::Check,
            chrono::Utc::now(),
            "the network went away",
        ))
    })
    .await;
    assert_eq!(
        other
            .current(&p.session_key())
            .await
            .unwrap()
            .state(chrono::Utc::now()),
        State::Error
    );
    let permit = daemon.acquire(&p).await;
    let o = daemon.execute_due(&p, Op::Login, permit).await;
    assert!(o.ok, "{}", o.message);
    assert!(emu.requests().is_empty(), "nothing was sent: {}", o.message);
    // With no session, the due login is sent.
    let permit = other.acquire(&p).await;
    assert!(other.execute(&p, Op::Logout, None, permit).await.ok);
    let permit = daemon.acquire(&p).await;
    let o = daemon.execute_due(&p, Op::Login, permit).await;
    assert!(o.ok && o.message.contains("logged in;"), "{}", o.message);
}

/// Two processes decide from the same rule that a session's refresh is due (the screen beside
/// the daemon): the one that gets the lock second finds the session refreshed and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_refresh_is_decided_again_under_the_lock() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let first = engine_in(dir.path());
    let second = engine_in(dir.path());
    let p = integration(&emu, "acme", "acme");
    let permit = first.acquire(&p).await;
    assert!(first.execute(&p, Op::Login, None, permit).await.ok);
    // Due: the hour-long access token has 20 s left (the refresh lead is 300 s).
    change_entry(&first, &p, |e| {
        let s = e.session.as_mut().unwrap();
        let now = chrono::Utc::now();
        s.obtained_at = now - chrono::TimeDelta::seconds(3580);
        s.expires_at = now + chrono::TimeDelta::seconds(20);
    })
    .await;
    // Both decided it was due; the first refreshes.
    emu.clear_requests();
    let permit = first.acquire(&p).await;
    let o = first.execute_due(&p, Op::Refresh, permit).await;
    assert!(o.ok && o.message.contains("refreshed;"), "{}", o.message);
    // The second, deciding from what it read before, finds it refreshed under the lock.
    let permit = second.acquire(&p).await;
    let o = second.execute_due(&p, Op::Refresh, permit).await;
    assert!(o.ok, "{}", o.message);
    assert!(
        o.message.contains("refreshed by another process just now"),
        "{}",
        o.message
    );
    let refreshes = emu
        .requests()
        .iter()
        .filter(|r| r.grant_type.as_deref() == Some("refresh_token"))
        .count();
    assert_eq!(refreshes, 1, "the session was refreshed once");
    // An explicit refresh is not second-guessed.
    let permit = second.acquire(&p).await;
    let o = second.execute(&p, Op::Refresh, None, permit).await;
    assert!(o.ok && o.message.contains("refreshed;"), "{}", o.message);
}

/// What a job's report says, in a word (a `Done` that failed: `failed`).
fn said(report: &sugar_sessions::runtime::Report) -> &'static str {
    use sugar_sessions::runtime::Report;
    match report {
        Report::Started => "started",
        Report::Withdrawn => "withdrawn",
        Report::Done { outcome, .. } if outcome.ok => "done",
        Report::Done { .. } => "failed",
    }
}

/// Jobs queued behind a busy host's bound hold no job of another host back (the screen submits
/// a login for a free instance after a hundred for a slow one: it goes at once), and the queued
/// ones are all withdrawn, each with its report, when the front end ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_hosts_queue_holds_no_other_host_back() {
    use std::sync::Arc;
    use sugar_sessions::runtime::Report;
    let slow = start().await;
    let free = start().await;
    slow.set_latency("acme", Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    let (mut jobs, mut rx) = runner(one_per_host(dir.path()));
    let n = 20;
    for i in 0..n {
        let p = Arc::new(integration(&slow, &format!("slow{i}"), "acme"));
        jobs.submit(format!("slow{i}"), p, login());
    }
    jobs.submit(
        "free".to_string(),
        Arc::new(integration(&free, "free", "acme")),
        login(),
    );
    let mut seen: Vec<(String, &str)> = Vec::new();
    loop {
        let (key, report) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("reports come")
            .expect("the channel is open");
        seen.push((key.clone(), said(&report)));
        if matches!(report, Report::Done { .. }) {
            assert_eq!(key, "free", "the free host's login ends first: {seen:?}");
            break;
        }
    }
    assert_eq!(
        seen.iter().filter(|(_, r)| *r == "started").count(),
        2,
        "one slow login in flight, and the free one: {seen:?}"
    );
    // The slow host's first login is on its way; the others wait, and are withdrawn now.
    assert_eq!(jobs.finish(Duration::from_secs(10)).await, 0);
    while let Ok(Some((key, report))) =
        tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
    {
        seen.push((key, said(&report)));
    }
    let of = |k: &str| -> Vec<&str> {
        seen.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, r)| *r)
            .collect()
    };
    assert_eq!(of("free"), ["started", "done"]);
    assert_eq!(of("slow0"), ["started", "done"], "{seen:?}");
    for i in 1..n {
        assert_eq!(of(&format!("slow{i}")), ["withdrawn"], "{seen:?}");
    }
}

/// A job runner that outlives its runtime (a front end that panicked with jobs queued): the
/// runtime still shuts down, without starting the queued jobs and without hanging.
#[test]
fn a_runtime_shuts_down_under_queued_jobs() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (jobs, rx) = rt.block_on(async {
        let emu = start().await;
        emu.set_latency("acme", Duration::from_secs(5));
        let (mut jobs, rx) = runner(one_per_host(dir.path()));
        for i in 0..5 {
            let p = Arc::new(integration(&emu, &format!("p{i}"), "acme"));
            jobs.submit(i, p, login());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        (jobs, rx)
    });
    let (done, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(rt);
        let _ = done.send(());
    });
    if ended.recv_timeout(Duration::from_secs(20)).is_err() {
        // (Dropping the runner would wait for the lock the stuck shutdown holds.)
        std::mem::forget(jobs);
        panic!("the runtime did not shut down: stuck under queued jobs");
    }
    drop(jobs);
    drop(rx);
}
