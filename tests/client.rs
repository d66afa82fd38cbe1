//! The Sugar client and the engine against the emulator: every answer maps to a clear, typed outcome.

mod common;

use common::*;
use std::time::Duration;
use sugar_sessions::config::Settings;
use sugar_sessions::emulator::Fault;
use sugar_sessions::runtime::Engine;
use sugar_sessions::secret::Secret;
use sugar_sessions::session::{Op, State};
use sugar_sessions::store::Store;
use sugar_sessions::sugar::{Client, ErrorKind, NetSettings, SugarError};

fn client() -> Client {
    Client::new(&NetSettings::default()).unwrap()
}

fn pw(s: &str) -> Secret {
    Secret::new(s)
}

/// The message a user sees names the profile, the status and Sugar's label and message, and never a secret.
fn assert_message(e: &SugarError, parts: &[&str]) {
    let text = e.to_string();
    assert!(text.starts_with(&format!("{}: ", e.profile)), "{text}");
    for p in parts {
        assert!(text.contains(p), "{text:?} lacks {p:?}");
    }
    for secret in [
        INTEGRATION_PW,
        ADMIN_PW,
        "client-secret-9f",
        "wrong-password-1",
    ] {
        assert!(!text.contains(secret), "{text} leaks a secret");
    }
}

#[tokio::test]
async fn login_takes_lifetimes_from_the_answer() {
    let emu = start().await;
    let c = client();
    let g = c
        .login(&integration(&emu, "acme-prod", "acme"), &pw(INTEGRATION_PW))
        .await
        .result
        .unwrap();
    assert_eq!(
        (g.expires_in, g.refresh_expires_in),
        (3600, Some(1_209_600))
    );
    assert!(g.download_token.is_some());
    let g = c
        .login(&integration(&emu, "short", "short"), &pw(INTEGRATION_PW))
        .await
        .result
        .unwrap();
    assert_eq!((g.expires_in, g.refresh_expires_in), (60, Some(300)));
}

#[tokio::test]
async fn login_errors_from_the_table() {
    let emu = start().await;
    let c = client();
    let p = integration(&emu, "acme-prod", "acme");

    let e = c
        .login(&p, &pw("wrong-password-1"))
        .await
        .result
        .unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert_message(
        &e,
        &[
            "acme-prod: login failed: HTTP 401 need_login: You must specify a valid username and password.",
            "hint: check the username",
        ],
    );

    let gone = profile(
        "gone",
        &format!("url = \"{}\"\nusername = \"gone\"", emu.url("acme")),
    );
    let e = c
        .login(&gone, &pw("Gone-Pw-1234"))
        .await
        .result
        .unwrap_err();
    assert_message(&e, &["HTTP 401 need_login"]);

    let e = c.login(&p, &pw("")).await.result.unwrap_err();
    assert_message(&e, &["HTTP 400 invalid_request"]);

    let bad_client = profile(
        "acme-client",
        &format!(
            "url = \"{}\"\nusername = \"integration\"\nclient_id = \"acme_client\"\nclient_secret = \"nope\"",
            emu.url("acme")
        ),
    );
    let e = c
        .login(&bad_client, &pw(INTEGRATION_PW))
        .await
        .result
        .unwrap_err();
    assert_message(
        &e,
        &["HTTP 400 invalid_client", "client_id and client_secret"],
    );
    let good_client = profile(
        "acme-client",
        &format!(
            "url = \"{}\"\nusername = \"integration\"\nclient_id = \"acme_client\"\nclient_secret = \"client-secret-9f\"",
            emu.url("acme")
        ),
    );
    assert!(
        c.login(&good_client, &pw(INTEGRATION_PW))
            .await
            .result
            .is_ok()
    );

    let unregistered = profile(
        "acme-bi",
        &format!(
            "url = \"{}\"\nusername = \"integration\"\nplatform = \"acme_bi\"",
            emu.url("acme")
        ),
    );
    let e = c
        .login(&unregistered, &pw(INTEGRATION_PW))
        .await
        .result
        .unwrap_err();
    assert_eq!(e.status(), Some(422));
    assert_message(
        &e,
        &[
            "HTTP 422 invalid_parameter: Invalid platform specified.",
            "\"acme_bi\" must be registered in Sugar's Admin > Configure API Platforms",
        ],
    );

    let newer = profile(
        "acme-new",
        &format!(
            "url = \"{}\"\nusername = \"integration\"\napi = \"v11_24\"",
            emu.url("acme")
        ),
    );
    let e = c
        .login(&newer, &pw(INTEGRATION_PW))
        .await
        .result
        .unwrap_err();
    assert_eq!(e.status(), Some(301));
    assert_eq!(e.label(), Some("incorrect_version"));
    assert_message(
        &e,
        &[
            "HTTP 301 incorrect_version",
            "does not serve REST API v11_24",
        ],
    );

    emu.set_fault("acme", Some(Fault::LicenseSeats));
    let e = c.login(&p, &pw(INTEGRATION_PW)).await.result.unwrap_err();
    assert_message(&e, &["HTTP 403 license_seats_needed", "licence seats"]);
}

#[tokio::test]
async fn an_account_locks_after_failed_logins() {
    let emu = start().await;
    let c = client();
    let p = integration(&emu, "acme-prod", "acme");
    for _ in 0..3 {
        c.login(&p, &pw("wrong-password-1"))
            .await
            .result
            .unwrap_err();
    }
    let e = c.login(&p, &pw(INTEGRATION_PW)).await.result.unwrap_err();
    assert_message(
        &e,
        &[
            "HTTP 401 need_login: Too many failed login attempts.",
            "account is locked",
        ],
    );
}

#[tokio::test]
async fn maintenance_mode() {
    let emu = start().await;
    let c = client();
    let admin = profile(
        "acme-admin",
        &format!("url = \"{}\"\nusername = \"admin\"", emu.url("acme")),
    );
    let user = integration(&emu, "acme-prod", "acme");
    let g = c.login(&user, &pw(INTEGRATION_PW)).await.result.unwrap();
    emu.set_maintenance("acme", true);
    let e = c
        .login(&user, &pw(INTEGRATION_PW))
        .await
        .result
        .unwrap_err();
    assert_message(&e, &["HTTP 401 need_login", "maintenance mode"]);
    let e = c.me(&user, &g.access_token).await.result.unwrap_err();
    assert_message(
        &e,
        &[
            "acme-prod: me failed: HTTP 503 maintenance",
            "try again later",
        ],
    );
    assert!(
        c.login(&admin, &pw(ADMIN_PW)).await.result.is_ok(),
        "admins still log in"
    );
}

#[tokio::test]
async fn refresh_rotates_and_the_old_token_is_dead() {
    let emu = start().await;
    let c = client();
    let p = integration(&emu, "acme-prod", "acme");
    let first = c.login(&p, &pw(INTEGRATION_PW)).await.result.unwrap();
    let old = first.refresh_token.unwrap();
    let second = c.refresh(&p, &old).await.result.unwrap();
    let new = second.refresh_token.unwrap();
    assert_ne!(old.expose(), new.expose());
    assert_ne!(first.access_token.expose(), second.access_token.expose());
    let e = c.refresh(&p, &old).await.result.unwrap_err();
    assert!(e.is_invalid_grant());
    assert_message(
        &e,
        &[
            "acme-prod: refresh failed: HTTP 400 invalid_grant: Invalid refresh token",
            "log in again",
        ],
    );
    // The refresh carried the profile's platform.
    let refreshes: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.grant_type.as_deref() == Some("refresh_token"))
        .collect();
    assert!(
        refreshes
            .iter()
            .all(|r| r.platform.as_deref() == Some("custom_api"))
    );
    // An expired refresh token says so.
    emu.advance_clock(Duration::from_secs(1_209_600 + 10));
    let e = c.refresh(&p, &new).await.result.unwrap_err();
    assert_message(
        &e,
        &[
            "HTTP 400 invalid_grant: Refresh token has expired",
            "has expired: log in again",
        ],
    );
    // And so does an expired access token on any route.
    let e = c.me(&p, &second.access_token).await.result.unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert!(e.session_gone());
    assert_message(&e, &["acme-prod: me failed: HTTP 401 invalid_grant"]);
}

#[tokio::test]
async fn me_ping_time_and_server_info() {
    let emu = start().await;
    let c = client();
    let p = profile(
        "acme-admin",
        &format!("url = \"{}\"\nusername = \"admin\"", emu.url("acme")),
    );
    let g = c.login(&p, &pw(ADMIN_PW)).await.result.unwrap();
    let me = c.me(&p, &g.access_token).await.result.unwrap();
    assert_eq!(
        (me.user_name.as_str(), me.full_name.as_str(), me.admin),
        ("admin", "Administrator", true)
    );
    c.ping(&p, &g.access_token).await.result.unwrap();
    let t = c.server_time(&p, &g.access_token).await.result.unwrap();
    assert!((t.timestamp() - chrono::Utc::now().timestamp()).abs() < 5);
    let info = c.server_info(&p, &g.access_token).await.result.unwrap();
    assert_eq!(
        (info.flavor.as_str(), info.version.as_str()),
        ("ENT", "12.0.0")
    );
    let call = c.ping(&p, &g.access_token).await;
    assert_eq!(
        (call.log.method, call.log.path, call.log.status),
        ("GET", "/ping", Some(200))
    );
}

#[tokio::test]
async fn faults_in_front_of_sugar_become_clear_errors() {
    let emu = start().await;
    let c = client();
    let p = integration(&emu, "acme-prod", "acme");
    let login = || async { c.login(&p, &pw(INTEGRATION_PW)).await.result.unwrap_err() };

    emu.set_fault("acme", Some(Fault::Html502));
    let e = login().await;
    assert_eq!(
        e.kind,
        ErrorKind::Http {
            status: 502,
            html: true
        }
    );
    assert_message(&e, &["HTTP 502 with an HTML page", "proxy"]);

    emu.set_fault("acme", Some(Fault::NonJson200));
    let e = login().await;
    assert!(
        matches!(e.kind, ErrorKind::NotJson { status: 200, .. }),
        "{e}"
    );

    emu.set_fault("acme", Some(Fault::WrongShape200));
    let e = login().await;
    assert!(
        matches!(e.kind, ErrorKind::BadShape { status: 200, .. }),
        "{e}"
    );
    assert_message(&e, &["access_token"]);

    emu.set_fault("acme", Some(Fault::Oversized(2 * 1024 * 1024)));
    let e = login().await;
    assert_eq!(
        e.kind,
        ErrorKind::TooLarge {
            status: 200,
            limit: sugar_sessions::sugar::MAX_BODY
        }
    );

    emu.set_fault("acme", Some(Fault::DropMidBody));
    let e = login().await;
    assert_eq!(e.kind, ErrorKind::Truncated { status: 200 });
    assert_message(&e, &["connection closed before the whole answer arrived"]);

    emu.clear_requests();
    emu.set_fault(
        "acme",
        Some(Fault::Redirect("https://sso.example.com/login?x=1".into())),
    );
    let e = login().await;
    assert!(matches!(e.kind, ErrorKind::Redirect { status: 302, .. }));
    assert_message(
        &e,
        &[
            "HTTP 302 redirect to sso.example.com",
            "nothing was sent there",
        ],
    );
    assert_eq!(emu.requests().len(), 1, "the redirect was not followed");

    let quick = profile(
        "slow",
        &format!(
            "url = \"{}\"\nusername = \"integration\"\nplatform = \"custom_api\"\ntimeout_s = 1",
            emu.url("acme")
        ),
    );
    emu.set_fault("acme", Some(Fault::Hang));
    let e = c
        .login(&quick, &pw(INTEGRATION_PW))
        .await
        .result
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout { .. }), "{e}");
    assert_message(
        &e,
        &["no answer from 127.0.0.1:", "within 1 s", "timeout_s"],
    );
    emu.set_fault("acme", None);
}

#[tokio::test]
async fn transport_failures_are_named() {
    let c = client();
    let port = refused_addr().port();
    let p = profile(
        "down",
        &format!("url = \"http://127.0.0.1:{port}\"\nusername = \"u\""),
    );
    let e = c.login(&p, &pw("x")).await.result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ConnectionRefused);
    assert_message(
        &e,
        &[&format!(
            "down: login failed: connection to 127.0.0.1:{port} refused"
        )],
    );

    let p = profile(
        "nowhere",
        "url = \"https://sugar.nowhere.invalid\"\nusername = \"u\"",
    );
    let e = c.login(&p, &pw("x")).await.result.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Dns, "{e}");
    assert_message(&e, &["cannot resolve host sugar.nowhere.invalid"]);

    // TLS to a server that speaks plain HTTP.
    let emu = start().await;
    let plain = emu.addr();
    let p = profile(
        "tls",
        &format!(
            "url = \"https://127.0.0.1:{}/acme\"\nusername = \"u\"",
            plain.port()
        ),
    );
    let e = c.login(&p, &pw("x")).await.result.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Tls { .. }), "{e}");
    assert_message(&e, &["TLS failure with 127.0.0.1"]);
}

fn engine_in(dir: &std::path::Path) -> Engine {
    Engine::new(Store::open(dir).unwrap(), &Settings::default())
}

#[tokio::test]
async fn the_engine_never_sends_a_refresh_token_twice() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_in(dir.path());
    let p = integration(&emu, "acme-prod", "acme");
    assert!(engine.run(&p, Op::Login, None).await.ok);
    for _ in 0..4 {
        let o = engine.run(&p, Op::Refresh, None).await;
        assert!(o.ok, "{}", o.message);
        assert_eq!(o.state, State::Active);
    }
    let sent: Vec<String> = emu
        .requests()
        .into_iter()
        .filter_map(|r| r.refresh_token)
        .collect();
    assert_eq!(sent.len(), 4);
    let mut unique = sent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), sent.len(), "a refresh token was sent twice");
}

#[tokio::test]
async fn a_second_login_on_the_same_platform_ends_the_first_session() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_in(dir.path());
    // Without the automatic re-login, so that the platform rule itself shows.
    let first = profile(
        "first",
        &format!(
            "url = \"{}\"\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\nplatform = \"custom_api\"\nrelogin = false",
            emu.url("acme")
        ),
    );
    let second = integration(&emu, "second", "acme");
    // Another tool, with a cache of its own, logs in as the same user on the same platform.
    let other_dir = tempfile::tempdir().unwrap();
    let other_tool = engine_in(other_dir.path());
    assert!(engine.run(&first, Op::Login, None).await.ok);
    assert!(other_tool.run(&second, Op::Login, None).await.ok);
    let o = engine.run(&first, Op::Refresh, None).await;
    assert!(!o.ok);
    assert_eq!(o.state, State::Superseded);
    assert!(
        o.message
            .starts_with("first: superseded: another login as integration on platform custom_api"),
        "{}",
        o.message
    );
    assert!(
        o.message.contains("HTTP 400 invalid_grant"),
        "{}",
        o.message
    );
    assert!(o.entry.failure.as_ref().unwrap().needs_login);
    assert!(
        other_tool.run(&second, Op::Refresh, None).await.ok,
        "the newer session lives"
    );
}

#[tokio::test]
async fn logout_revokes_and_tolerates_dead_sessions() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_in(dir.path());
    let p = integration(&emu, "acme-prod", "acme");
    assert!(engine.run(&p, Op::Login, None).await.ok);
    assert_eq!(emu.active_sessions("acme"), 1);
    let o = engine.run(&p, Op::Logout, None).await;
    assert!(o.ok);
    assert_eq!(o.message, "acme-prod: logged out");
    assert_eq!(o.state, State::LoggedOut);
    assert_eq!(
        emu.active_sessions("acme"),
        0,
        "the refresh token was revoked too"
    );

    let o = engine.run(&p, Op::Logout, None).await;
    assert!(o.ok);
    assert_eq!(o.message, "acme-prod: no session; nothing to log out");

    // A session the server already ended: still removed locally, and said so.
    assert!(engine.run(&p, Op::Login, None).await.ok);
    let other = integration(&emu, "other", "acme");
    let other_dir = tempfile::tempdir().unwrap();
    assert!(
        engine_in(other_dir.path())
            .run(&other, Op::Login, None)
            .await
            .ok
    );
    emu.advance_clock(Duration::from_secs(121));
    let o = engine.run(&p, Op::Logout, None).await;
    assert!(o.ok, "{}", o.message);
    assert!(
        o.message
            .contains("the server had already ended the session"),
        "{}",
        o.message
    );
    assert_eq!(o.state, State::LoggedOut);
}

#[tokio::test]
async fn logout_of_an_expired_access_token_refreshes_first_to_revoke_the_refresh_token() {
    let emu = start().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_in(dir.path());
    let p = integration(&emu, "short", "short");
    assert!(engine.run(&p, Op::Login, None).await.ok);
    // Make the cached access token look expired (the refresh token still lives).
    change_entry(&engine, &p, |e| {
        let s = e.session.as_mut().unwrap();
        s.expires_at = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    })
    .await;
    emu.clear_requests();
    let o = engine.run(&p, Op::Logout, None).await;
    assert!(o.ok, "{}", o.message);
    let paths: Vec<_> = emu
        .requests()
        .into_iter()
        .map(|r| (r.path, r.grant_type))
        .collect();
    assert_eq!(
        paths,
        [
            (
                "/oauth2/token".to_string(),
                Some("refresh_token".to_string())
            ),
            ("/oauth2/logout".to_string(), None)
        ]
    );
    assert_eq!(emu.active_sessions("short"), 0);
    assert_eq!(o.requests.len(), 2);
}
