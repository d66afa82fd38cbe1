//! The Sugar emulator against `sugar-api.md`, spoken to over real HTTP (reqwest, and raw TCP where the
//! bytes matter). No real waiting beyond a few hundred milliseconds: expiry uses `advance_clock`.

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use sugar_sessions::emulator::{
    Emulator, EmulatorConfig, Fault, InstanceConfig, UserConfig, demo_config, demo_profiles_toml,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UUID_LEN: usize = 36;

fn acme() -> InstanceConfig {
    let mut acme = InstanceConfig::new("acme")
        .with_user(UserConfig::user("jim", "jim-pw", "Jim Halpert"))
        .with_user(UserConfig::user("zoe", "zoe-pw", "Zoë Ward"))
        .with_user(UserConfig {
            active: false,
            ..UserConfig::user("gone", "gone-pw", "Gone User")
        })
        .with_user(UserConfig::user("locky", "locky-pw", "Lock Able"))
        .with_platform("custom_api")
        .with_platform("acme_sync");
    acme.clients.push(("etl".into(), "etl-secret".into()));
    acme.max_failed_logins = Some(3);
    acme
}

async fn start_with(instances: Vec<InstanceConfig>) -> Emulator {
    Emulator::start(EmulatorConfig { instances }, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn start() -> Emulator {
    let mut other = InstanceConfig::new("other").with_platform("custom_api");
    other
        .users
        .push(UserConfig::user("jim", "other-pw", "Jim Other"));
    start_with(vec![acme(), other]).await
}

fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}

/// One client for all tests (building one costs more than a request). Each test has its own runtime,
/// so connections are not pooled across requests.
fn client() -> reqwest::Client {
    static CLIENT: std::sync::LazyLock<reqwest::Client> =
        std::sync::LazyLock::new(|| client_builder().pool_max_idle_per_host(0).build().unwrap());
    CLIENT.clone()
}

/// A client that gives up after `timeout`.
fn impatient(timeout: Duration) -> reqwest::Client {
    client_builder().timeout(timeout).build().unwrap()
}

/// An answer: status, headers, raw body text, and the body as JSON when it parses.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    json: Value,
}

impl Answer {
    fn error(&self) -> (&str, &str) {
        (
            self.json["error"].as_str().unwrap_or("?"),
            self.json["error_message"].as_str().unwrap_or(""),
        )
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        text,
        json,
    }
}

fn rest(emu: &Emulator, instance: &str, route: &str) -> String {
    format!("{}/rest/v11/{route}", emu.url(instance))
}

async fn post(
    emu: &Emulator,
    instance: &str,
    route: &str,
    body: Value,
    token: Option<&str>,
) -> Answer {
    let mut request = client().post(rest(emu, instance, route)).json(&body);
    if let Some(token) = token {
        request = request.header("OAuth-Token", token);
    }
    answer(request.send().await.unwrap()).await
}

async fn get(emu: &Emulator, instance: &str, route: &str, token: Option<&str>) -> Answer {
    let mut request = client().get(rest(emu, instance, route));
    if let Some(token) = token {
        request = request.header("OAuth-Token", token);
    }
    answer(request.send().await.unwrap()).await
}

async fn login(
    emu: &Emulator,
    instance: &str,
    user: &str,
    password: &str,
    platform: &str,
) -> Answer {
    let body = json!({"grant_type": "password", "client_id": "sugar", "client_secret": "",
                      "username": user, "password": password, "platform": platform});
    post(emu, instance, "oauth2/token", body, None).await
}

/// Log in (must succeed); (access_token, refresh_token).
async fn session(emu: &Emulator, user: &str, password: &str, platform: &str) -> (String, String) {
    let a = login(emu, "acme", user, password, platform).await;
    assert_eq!(a.status, 200, "{}", a.text);
    (
        a.json["access_token"].as_str().unwrap().into(),
        a.json["refresh_token"].as_str().unwrap().into(),
    )
}

async fn refresh(emu: &Emulator, refresh_token: &str, platform: Option<&str>) -> Answer {
    let mut body = json!({"grant_type": "refresh_token", "client_id": "sugar", "client_secret": "",
                          "refresh_token": refresh_token});
    if let Some(platform) = platform {
        body["platform"] = json!(platform);
    }
    post(emu, "acme", "oauth2/token", body, None).await
}

/// Send raw bytes, read until the server closes (or 2 s pass); the whole answer as text, and whether it
/// ended cleanly (EOF) rather than by an error.
async fn raw(addr: SocketAddr, request: &[u8]) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let mut clean = true;
    let deadline = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => { clean = false; break; }
            },
            _ = &mut deadline => panic!("no end of answer within 2 s: {}", String::from_utf8_lossy(&out)),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), clean)
}

fn split_head(response: &str) -> (&str, &str) {
    response.split_once("\r\n\r\n").expect("a head and a body")
}

// ---------------------------------------------------------------------------------------------------
// Logging in

#[tokio::test]
async fn login_success_has_sugars_shape() {
    let emu = start().await;
    let a = login(&emu, "acme", "jim", "jim-pw", "custom_api").await;
    assert_eq!(a.status, 200);
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    // PHP json_encode: compact, Sugar's key order, scope null.
    let keys: Vec<&str> = a
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "access_token",
        "expires_in",
        "token_type",
        "scope",
        "refresh_token",
        "refresh_expires_in",
        "download_token",
    ];
    expected.sort();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    assert!(a.text.starts_with("{\"access_token\":\""), "{}", a.text);
    assert!(
        a.text
            .contains("\"token_type\":\"bearer\",\"scope\":null,\"refresh_token\":"),
        "{}",
        a.text
    );
    assert_eq!(a.json["expires_in"], 3600);
    assert_eq!(a.json["refresh_expires_in"], 1_209_600);
    for key in ["access_token", "refresh_token", "download_token"] {
        let token = a.json[key].as_str().unwrap();
        assert_eq!(token.len(), UUID_LEN, "{key}");
        assert_eq!(token.as_bytes()[14], b'4', "{key} is a v4 UUID");
    }
    assert_ne!(a.json["access_token"], a.json["refresh_token"]);

    // The token works; `me` escapes non-ASCII like PHP and still is plain JSON.
    let zoe = login(&emu, "acme", "zoe", "zoe-pw", "custom_api").await;
    let me = get(&emu, "acme", "me", zoe.json["access_token"].as_str()).await;
    assert_eq!(me.status, 200);
    assert!(
        me.text.contains(r#""full_name":"Zo\u00eb Ward""#),
        "{}",
        me.text
    );
    assert_eq!(me.json["current_user"]["full_name"], "Zoë Ward");
    assert_eq!(me.json["current_user"]["user_name"], "zoe");
    assert_eq!(me.json["current_user"]["type"], "user");
    assert!(me.json["current_user"]["preferences"]["timezone"].is_string());
    emu.shutdown().await;
}

#[tokio::test]
async fn login_accepts_form_encoding_and_ignores_unknown_fields() {
    let emu = start().await;
    let form = [
        ("grant_type", "password"),
        ("client_id", "sugar"),
        ("client_secret", ""),
        ("username", "jim"),
        ("password", "jim-pw"),
        ("platform", "custom_api"),
        ("whatever", "ignored"),
    ];
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let a = answer(
        client()
            .post(rest(&emu, "acme", "oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["refresh_expires_in"], 1_209_600);

    let extra = json!({"grant_type": "password", "client_id": "sugar", "client_secret": "", "username": "jim",
                       "password": "jim-pw", "platform": "custom_api", "current_language": "en_us",
                       "client_info": {"app": {"name": "x"}}});
    assert_eq!(
        post(&emu, "acme", "oauth2/token", extra, None).await.status,
        200
    );
    // A login with no platform is a `base` login.
    let no_platform = json!({"grant_type": "password", "client_id": "sugar", "username": "jim", "password": "jim-pw"});
    assert_eq!(
        post(&emu, "acme", "oauth2/token", no_platform, None)
            .await
            .status,
        200
    );
    assert_eq!(emu.requests().last().unwrap().platform, None);
}

#[tokio::test]
async fn upper_case_platform_names_work_as_registered() {
    let emu = start_with(vec![acme().with_platform("SCRIBE")]).await;
    let a = login(&emu, "acme", "jim", "jim-pw", "SCRIBE").await;
    assert_eq!(a.status, 200, "{}", a.text);
    // Matched as written: the registered name only.
    for other in ["scribe", "Scribe", "BASE", "Custom_Api"] {
        let a = login(&emu, "acme", "jim", "jim-pw", other).await;
        assert_eq!(
            (a.status, a.error()),
            (422, ("invalid_parameter", "Invalid platform specified.")),
            "{other}"
        );
    }
}

#[tokio::test]
async fn login_errors_follow_the_table() {
    let emu = start().await;
    let bad_login = "You must specify a valid username and password.";
    for (user, password) in [("jim", "wrong"), ("nobody", "x"), ("gone", "gone-pw")] {
        let a = login(&emu, "acme", user, password, "custom_api").await;
        assert_eq!(
            (a.status, a.error()),
            (401, ("need_login", bad_login)),
            "{user}"
        );
    }

    let base = json!({"grant_type": "password", "client_id": "sugar", "client_secret": "",
                      "username": "jim", "password": "jim-pw", "platform": "custom_api"});
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        if value.is_null() {
            body.as_object_mut().unwrap().remove(key);
        } else {
            body[key] = value;
        }
        body
    };
    let cases = [
        (with("username", Value::Null), 400, "invalid_request"),
        (with("password", Value::Null), 400, "invalid_request"),
        (with("password", json!("")), 400, "invalid_request"),
        (
            with("grant_type", json!("client_credentials")),
            400,
            "invalid_request",
        ),
        (with("grant_type", Value::Null), 400, "invalid_request"),
        (with("client_id", json!("nope")), 400, "invalid_client"),
        (with("client_id", Value::Null), 400, "invalid_client"),
        (with("client_secret", json!("guess")), 400, "invalid_client"),
        (
            with("platform", json!("not_registered")),
            422,
            "invalid_parameter",
        ),
        (
            with("platform", json!("Bad Name")),
            422,
            "invalid_parameter",
        ),
    ];
    for (body, status, label) in cases {
        let a = post(&emu, "acme", "oauth2/token", body.clone(), None).await;
        assert_eq!(
            (a.status, a.error().0),
            (status, label),
            "{body}: {}",
            a.text
        );
        assert!(a.json["error_message"].is_string(), "{}", a.text);
    }
    let a = login(&emu, "acme", "jim", "jim-pw", "not_registered").await;
    assert_eq!(a.error().1, "Invalid platform specified.");

    // A registered client with its secret is fine.
    let etl = with("client_id", json!("etl"));
    let mut etl_ok = etl.clone();
    etl_ok["client_secret"] = json!("etl-secret");
    assert_eq!(
        post(&emu, "acme", "oauth2/token", etl.clone(), None)
            .await
            .error()
            .0,
        "invalid_client"
    );
    assert_eq!(
        post(&emu, "acme", "oauth2/token", etl_ok, None)
            .await
            .status,
        200
    );

    // Three failures lock the account, even for the right password afterwards.
    for _ in 0..3 {
        let a = login(&emu, "acme", "locky", "wrong", "custom_api").await;
        assert_eq!(a.error(), ("need_login", bad_login));
    }
    let a = login(&emu, "acme", "locky", "locky-pw", "custom_api").await;
    assert_eq!(
        (a.status, a.error()),
        (401, ("need_login", "Too many failed login attempts."))
    );
    // Other users are not affected, and successes reset the count.
    for _ in 0..2 {
        login(&emu, "acme", "jim", "wrong", "custom_api").await;
    }
    assert_eq!(
        login(&emu, "acme", "jim", "jim-pw", "custom_api")
            .await
            .status,
        200
    );
    for _ in 0..2 {
        login(&emu, "acme", "jim", "wrong", "custom_api").await;
    }
    assert_eq!(
        login(&emu, "acme", "jim", "jim-pw", "custom_api")
            .await
            .status,
        200
    );
}

// ---------------------------------------------------------------------------------------------------
// Refreshing

#[tokio::test]
async fn refresh_rotates_both_tokens() {
    let emu = start().await;
    let (access, refresh_token) = session(&emu, "jim", "jim-pw", "custom_api").await;
    let a = refresh(&emu, &refresh_token, Some("custom_api")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let new_access = a.json["access_token"].as_str().unwrap().to_string();
    let new_refresh = a.json["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new_access, access);
    assert_ne!(new_refresh, refresh_token);
    assert_eq!(a.json["expires_in"], 3600);
    assert_eq!(a.json["refresh_expires_in"], 1_209_600);
    assert_eq!(a.json["scope"], Value::Null);

    // The old refresh token is gone at once.
    let again = refresh(&emu, &refresh_token, Some("custom_api")).await;
    assert_eq!(
        (again.status, again.error()),
        (400, ("invalid_grant", "Invalid refresh token"))
    );
    // The new one works, the old access token keeps working until it expires.
    assert_eq!(
        get(&emu, "acme", "ping", Some(&new_access)).await.json,
        json!("pong")
    );
    assert_eq!(
        get(&emu, "acme", "ping", Some(&access)).await.json,
        json!("pong")
    );
    assert_eq!(emu.active_sessions("acme"), 1);
    let b = refresh(&emu, &new_refresh, Some("custom_api")).await;
    assert_eq!(b.status, 200);

    // Unknown token, missing token, wrong client.
    let a = refresh(
        &emu,
        "85053198-24b1-4521-b1a1-5342d382e0b7",
        Some("custom_api"),
    )
    .await;
    assert_eq!(
        (a.status, a.error()),
        (400, ("invalid_grant", "Invalid refresh token"))
    );
    let a = post(
        &emu,
        "acme",
        "oauth2/token",
        json!({"grant_type": "refresh_token", "client_id": "sugar"}),
        None,
    )
    .await;
    assert_eq!((a.status, a.error().0), (400, "invalid_request"));
    let current = b.json["refresh_token"].as_str().unwrap();
    let wrong_client = json!({"grant_type": "refresh_token", "client_id": "etl", "client_secret": "etl-secret",
                              "refresh_token": current, "platform": "custom_api"});
    let a = post(&emu, "acme", "oauth2/token", wrong_client, None).await;
    assert_eq!(a.error(), ("invalid_grant", "Invalid refresh token"));
    let a = refresh(&emu, current, Some("not_registered")).await;
    assert_eq!((a.status, a.error().0), (422, "invalid_parameter"));
    // Refused attempts did not consume it.
    assert_eq!(refresh(&emu, current, Some("custom_api")).await.status, 200);
}

#[tokio::test]
async fn two_racing_refreshes_one_wins() {
    let emu = start().await;
    let (_, refresh_token) = session(&emu, "jim", "jim-pw", "custom_api").await;
    let (a, b) = tokio::join!(
        refresh(&emu, &refresh_token, Some("custom_api")),
        refresh(&emu, &refresh_token, Some("custom_api"))
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 400]);
    let loser = if a.status == 400 { a } else { b };
    assert_eq!(loser.error(), ("invalid_grant", "Invalid refresh token"));
}

#[tokio::test]
async fn refresh_without_platform_lands_on_base_and_logs_the_browser_out() {
    let emu = start().await;
    let (browser_access, browser_refresh) = session(&emu, "jim", "jim-pw", "base").await;
    let (_, script_refresh) = session(&emu, "jim", "jim-pw", "custom_api").await;
    assert_eq!(emu.active_sessions("acme"), 2);

    let a = refresh(&emu, &script_refresh, None).await;
    assert_eq!(a.status, 200);
    let recorded = emu.requests().last().unwrap().clone();
    assert_eq!(
        (recorded.grant_type.as_deref(), recorded.platform.as_deref()),
        (Some("refresh_token"), None)
    );
    assert_eq!(
        recorded.refresh_token.as_deref(),
        Some(script_refresh.as_str())
    );

    // The browser's (base) session was superseded by the refreshed one.
    let b = refresh(&emu, &browser_refresh, Some("base")).await;
    assert_eq!(b.error(), ("invalid_grant", "Invalid refresh token"));
    assert_eq!(
        get(&emu, "acme", "ping", Some(&browser_access))
            .await
            .status,
        200,
        "grace period"
    );
    emu.advance_clock(Duration::from_secs(121));
    assert_eq!(
        get(&emu, "acme", "ping", Some(&browser_access))
            .await
            .status,
        401
    );
    // The refreshed session lives on platform base now.
    let c = refresh(
        &emu,
        a.json["refresh_token"].as_str().unwrap(),
        Some("base"),
    )
    .await;
    assert_eq!(c.status, 200);
    assert_eq!(emu.active_sessions("acme"), 1);
}

#[tokio::test]
async fn expiry_follows_the_emulator_clock() {
    let emu = start().await;
    let (access, refresh_token) = session(&emu, "jim", "jim-pw", "custom_api").await;
    let before: String = serde_json::from_value(
        get(&emu, "acme", "ping/whattimeisit", Some(&access))
            .await
            .json,
    )
    .unwrap();
    let before = chrono::DateTime::parse_from_rfc3339(&before).unwrap();
    assert!(before.to_rfc3339().ends_with("+00:00"));

    emu.advance_clock(Duration::from_secs(3599));
    assert_eq!(get(&emu, "acme", "ping", Some(&access)).await.status, 200);
    emu.advance_clock(Duration::from_secs(2));
    let a = get(&emu, "acme", "ping", Some(&access)).await;
    assert_eq!(
        (a.status, a.error()),
        (
            401,
            ("invalid_grant", "The access token provided has expired.")
        )
    );

    // whattimeisit needs a valid token too; a fresh one shows the moved clock.
    let (fresh, _) = session(&emu, "jim", "jim-pw", "acme_sync").await;
    let after: String = serde_json::from_value(
        get(&emu, "acme", "ping/whattimeisit", Some(&fresh))
            .await
            .json,
    )
    .unwrap();
    let after = chrono::DateTime::parse_from_rfc3339(&after).unwrap();
    assert!(
        (after - before).num_seconds() >= 3600,
        "{before} -> {after}"
    );

    emu.advance_clock(Duration::from_secs(1_209_600));
    let a = refresh(&emu, &refresh_token, Some("custom_api")).await;
    assert_eq!((a.status, a.error().0), (400, "invalid_grant"));
    assert!(
        a.error().1.starts_with("Refresh token has expired"),
        "{}",
        a.text
    );
    assert_eq!(emu.active_sessions("acme"), 0);
}

#[tokio::test]
async fn max_session_lifetime_caps_refreshes() {
    let mut capped = acme();
    capped.max_session_lifetime = Some(Duration::from_secs(7200));
    let emu = start_with(vec![capped]).await;
    let a = login(&emu, "acme", "jim", "jim-pw", "custom_api").await;
    assert_eq!(a.json["expires_in"], 3600);
    assert_eq!(a.json["refresh_expires_in"], 7200);

    emu.advance_clock(Duration::from_secs(5400));
    let b = refresh(
        &emu,
        a.json["refresh_token"].as_str().unwrap(),
        Some("custom_api"),
    )
    .await;
    assert_eq!(b.status, 200);
    let refresh_left = b.json["refresh_expires_in"].as_i64().unwrap();
    let access_left = b.json["expires_in"].as_i64().unwrap();
    assert!((1799..=1800).contains(&refresh_left), "{}", b.text);
    assert!(access_left <= 1800, "{}", b.text);

    emu.advance_clock(Duration::from_secs(1801));
    let c = refresh(
        &emu,
        b.json["refresh_token"].as_str().unwrap(),
        Some("custom_api"),
    )
    .await;
    assert_eq!(c.error().0, "invalid_grant");
    assert!(c.error().1.starts_with("Refresh token has expired"));
    let d = get(&emu, "acme", "ping", b.json["access_token"].as_str()).await;
    assert_eq!((d.status, d.error().0), (401, "invalid_grant"));
}

// ---------------------------------------------------------------------------------------------------
// One session per user per platform

#[tokio::test]
async fn a_new_login_supersedes_the_old_session_after_a_grace_period() {
    let emu = start().await;
    let (old_access, old_refresh) = session(&emu, "jim", "jim-pw", "custom_api").await;
    let (other_access, other_refresh) = session(&emu, "jim", "jim-pw", "acme_sync").await;
    let (zoe_access, _) = session(&emu, "zoe", "zoe-pw", "custom_api").await;
    assert_eq!(emu.active_sessions("acme"), 3);

    // The second login on the same platform is never refused.
    let (new_access, new_refresh) = session(&emu, "jim", "jim-pw", "custom_api").await;
    assert_eq!(emu.active_sessions("acme"), 3);
    let a = refresh(&emu, &old_refresh, Some("custom_api")).await;
    assert_eq!(
        (a.status, a.error()),
        (400, ("invalid_grant", "Invalid refresh token"))
    );

    // The old access token lives on for the grace period (120 s), then dies.
    emu.advance_clock(Duration::from_secs(119));
    assert_eq!(get(&emu, "acme", "me", Some(&old_access)).await.status, 200);
    emu.advance_clock(Duration::from_secs(2));
    let a = get(&emu, "acme", "me", Some(&old_access)).await;
    assert_eq!(
        (a.status, a.error()),
        (
            401,
            ("invalid_grant", "The access token provided is invalid.")
        )
    );

    // Other platforms, other users and the new session are untouched.
    for token in [&new_access, &other_access, &zoe_access] {
        assert_eq!(get(&emu, "acme", "ping", Some(token)).await.status, 200);
    }
    assert_eq!(
        refresh(&emu, &other_refresh, Some("acme_sync"))
            .await
            .status,
        200
    );
    assert_eq!(
        refresh(&emu, &new_refresh, Some("custom_api")).await.status,
        200
    );
    // The same user name on another instance is another user.
    let other = login(&emu, "other", "jim", "other-pw", "custom_api").await;
    assert_eq!(other.status, 200);
    assert_eq!(emu.active_sessions("acme"), 3);
    assert_eq!(emu.active_sessions("other"), 1);
}

#[tokio::test]
async fn mobile_allows_two_sessions_and_the_grace_is_configurable() {
    let mut instance = acme();
    instance.superseded_access_grace = Duration::ZERO;
    let emu = start_with(vec![instance]).await;
    let (first_access, first) = session(&emu, "jim", "jim-pw", "mobile").await;
    let (_, second) = session(&emu, "jim", "jim-pw", "mobile").await;
    assert_eq!(emu.active_sessions("acme"), 2);
    let (_, third) = session(&emu, "jim", "jim-pw", "mobile").await;
    assert_eq!(emu.active_sessions("acme"), 2);
    assert_eq!(
        refresh(&emu, &first, Some("mobile")).await.error().0,
        "invalid_grant"
    );
    // No grace: the superseded access token died with its session.
    assert_eq!(
        get(&emu, "acme", "ping", Some(&first_access)).await.status,
        401
    );
    assert_eq!(refresh(&emu, &second, Some("mobile")).await.status, 200);
    assert_eq!(refresh(&emu, &third, Some("mobile")).await.status, 200);
}

// ---------------------------------------------------------------------------------------------------
// Logging out

#[tokio::test]
async fn logout_deletes_the_access_and_refresh_token() {
    let emu = start().await;
    let (access, refresh_token) = session(&emu, "jim", "jim-pw", "custom_api").await;
    let a = post(
        &emu,
        "acme",
        "oauth2/logout",
        json!({"refresh_token": refresh_token}),
        Some(&access),
    )
    .await;
    assert_eq!((a.status, a.text.as_str()), (200, r#"{"success":true}"#));
    assert_eq!(emu.active_sessions("acme"), 0);
    let b = get(&emu, "acme", "ping", Some(&access)).await;
    assert_eq!((b.status, b.error().0), (401, "invalid_grant"));
    assert_eq!(
        refresh(&emu, &refresh_token, Some("custom_api"))
            .await
            .error()
            .0,
        "invalid_grant"
    );
    // Logging out again: the session is already gone.
    let c = post(&emu, "acme", "oauth2/logout", json!({}), Some(&access)).await;
    assert_eq!((c.status, c.error().0), (401, "invalid_grant"));
    // No token at all.
    let d = post(&emu, "acme", "oauth2/logout", json!({}), None).await;
    assert_eq!((d.status, d.error().0), (401, "need_login"));

    // Without a refresh token in the body the refresh token survives.
    let (access, refresh_token) = session(&emu, "jim", "jim-pw", "custom_api").await;
    assert_eq!(
        post(&emu, "acme", "oauth2/logout", json!({}), Some(&access))
            .await
            .status,
        200
    );
    assert_eq!(
        refresh(&emu, &refresh_token, Some("custom_api"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn logout_accepts_an_empty_json_body_like_the_php_example() {
    let emu = start().await;
    let (access, _) = session(&emu, "jim", "jim-pw", "custom_api").await;
    let request = format!(
        "POST /acme/rest/v11/oauth2/logout HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: 0\r\noauth-token: {access}\r\nConnection: close\r\n\r\n"
    );
    let (response, clean) = raw(emu.addr(), request.as_bytes()).await;
    assert!(clean);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(split_head(&response).1, r#"{"success":true}"#);
    assert_eq!(get(&emu, "acme", "ping", Some(&access)).await.status, 401);
}

// ---------------------------------------------------------------------------------------------------
// Impersonation

#[tokio::test]
async fn sudo_needs_an_admin_and_an_existing_user() {
    let emu = start().await;
    let (admin, _) = session(&emu, "admin", "admin", "custom_api").await;
    let me = get(&emu, "acme", "me", Some(&admin)).await;
    assert_eq!(
        (
            me.json["current_user"]["type"].as_str(),
            me.json["current_user"]["id"].as_str()
        ),
        (Some("admin"), Some("1"))
    );

    let a = post(
        &emu,
        "acme",
        "oauth2/sudo/jim",
        json!({"platform": "custom_api", "client_id": "sugar"}),
        Some(&admin),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.text.contains(r#""token_type":"bearer","scope":null"#));
    assert_eq!(a.json["expires_in"], 3600);
    assert!(a.json.get("refresh_token").is_none());
    let jim = a.json["access_token"].as_str().unwrap();
    assert_eq!(
        get(&emu, "acme", "me", Some(jim)).await.json["current_user"]["user_name"],
        "jim"
    );
    // The caller keeps its own token.
    assert_eq!(
        get(&emu, "acme", "me", Some(&admin)).await.json["current_user"]["user_name"],
        "admin"
    );

    let b = post(
        &emu,
        "acme",
        "oauth2/sudo/zoe",
        json!({"platform": "acme_sync", "client_id": "sugar", "needRefresh": true}),
        Some(&admin),
    )
    .await;
    assert_eq!(b.status, 200);
    let zoe_refresh = b.json["refresh_token"].as_str().unwrap();
    assert_eq!(
        refresh(&emu, zoe_refresh, Some("acme_sync")).await.status,
        200
    );

    let c = post(
        &emu,
        "acme",
        "oauth2/sudo/jim",
        json!({"platform": "custom_api"}),
        Some(jim),
    )
    .await;
    assert_eq!((c.status, c.error().0), (403, "not_authorized"));
    let d = post(
        &emu,
        "acme",
        "oauth2/sudo/nobody",
        json!({"platform": "custom_api"}),
        Some(&admin),
    )
    .await;
    assert_eq!((d.status, d.error().0), (404, "not_found"));
    let e = post(
        &emu,
        "acme",
        "oauth2/sudo/jim",
        json!({"platform": "nope"}),
        Some(&admin),
    )
    .await;
    assert_eq!((e.status, e.error().0), (422, "invalid_parameter"));
    let f = post(
        &emu,
        "acme",
        "oauth2/sudo/jim",
        json!({"platform": "custom_api"}),
        None,
    )
    .await;
    assert_eq!((f.status, f.error().0), (401, "need_login"));
}

// ---------------------------------------------------------------------------------------------------
// Maintenance

#[tokio::test]
async fn maintenance_mode_lets_only_admins_in() {
    let emu = start().await;
    let (jim, jim_refresh) = session(&emu, "jim", "jim-pw", "custom_api").await;
    emu.set_maintenance("acme", true);

    let a = login(&emu, "acme", "jim", "jim-pw", "custom_api").await;
    assert_eq!((a.status, a.error().0), (401, "need_login"));
    assert!(
        a.error()
            .1
            .contains("maintenance mode. Only admins can login"),
        "{}",
        a.text
    );
    // Wrong credentials still say so.
    assert_eq!(
        login(&emu, "acme", "jim", "bad", "custom_api")
            .await
            .error()
            .1,
        "You must specify a valid username and password."
    );

    for token in [Some(jim.as_str()), None, Some("not-a-token")] {
        let b = get(&emu, "acme", "ping", token).await;
        assert_eq!((b.status, b.error().0), (503, "maintenance"), "{token:?}");
        let url = b.json["url"].as_str().unwrap();
        assert!(url.starts_with("http://"), "{url}");
        assert!(
            b.text.contains(r#""url":"http:\/\/"#),
            "PHP escapes slashes: {}",
            b.text
        );
    }
    let c = refresh(&emu, &jim_refresh, Some("custom_api")).await;
    assert_eq!((c.status, c.error().0), (503, "maintenance"));

    let admin = login(&emu, "acme", "admin", "admin", "custom_api").await;
    assert_eq!(admin.status, 200);
    let admin_token = admin.json["access_token"].as_str();
    assert_eq!(get(&emu, "acme", "me", admin_token).await.status, 200);
    // Another instance is not in maintenance.
    assert_eq!(
        login(&emu, "other", "jim", "other-pw", "custom_api")
            .await
            .status,
        200
    );

    emu.set_maintenance("acme", false);
    assert_eq!(get(&emu, "acme", "ping", Some(&jim)).await.status, 200);
    assert_eq!(
        refresh(&emu, &jim_refresh, Some("custom_api")).await.status,
        200,
        "refused refreshes did not consume it"
    );
}

// ---------------------------------------------------------------------------------------------------
// Using a session, routes, versions

#[tokio::test]
async fn tokens_routes_and_versions() {
    let emu = start().await;
    let (access, _) = session(&emu, "jim", "jim-pw", "custom_api").await;

    let a = get(&emu, "acme", "ping", None).await;
    assert_eq!((a.status, a.error().0), (401, "need_login"));
    let a = get(
        &emu,
        "acme",
        "ping",
        Some("802b64c0-5eac-8431-a541-5342d38ac527"),
    )
    .await;
    assert_eq!(
        (a.status, a.error()),
        (
            401,
            ("invalid_grant", "The access token provided is invalid.")
        )
    );
    let bearer = client()
        .get(rest(&emu, "acme", "ping"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let bearer = answer(bearer).await;
    assert_eq!((bearer.status, bearer.text.as_str()), (200, "\"pong\""));

    let meta = get(
        &emu,
        "acme",
        "metadata?type_filter=server_info",
        Some(&access),
    )
    .await;
    assert_eq!(meta.status, 200);
    let info = &meta.json["server_info"];
    assert_eq!(
        (info["flavor"].as_str(), info["version"].as_str()),
        (Some("ENT"), Some("12.0.0"))
    );
    for key in ["build", "marketing_version", "product_name"] {
        assert!(info[key].is_string(), "{key}");
    }
    assert!(meta.json.get("config").is_none());
    assert!(
        get(&emu, "acme", "metadata", Some(&access))
            .await
            .json
            .get("config")
            .is_some()
    );

    // Unknown routes and wrong methods.
    let a = get(&emu, "acme", "Accounts/nope/whatever", Some(&access)).await;
    assert_eq!((a.status, a.error().0), (404, "no_method"));
    let a = get(&emu, "acme", "oauth2/token", None).await;
    assert_eq!((a.status, a.error().0), (404, "no_method"));
    // Unknown instance.
    let a = get(&emu, "nowhere", "ping", Some(&access)).await;
    assert_eq!(a.status, 404);
    assert_eq!(emu.requests().last().unwrap().instance, "nowhere");

    // Versions: v10..=v11_16 served, the rest 301 incorrect_version without a Location.
    for version in ["v10", "v11", "v11_4", "v11_16"] {
        let url = format!("{}/rest/{version}/ping", emu.url("acme"));
        let a = answer(
            client()
                .get(url)
                .header("OAuth-Token", &access)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 200, "{version}");
    }
    for version in [
        "v11_17", "v11_24", "v12", "v09", "v1", "v11_", "11", "latest",
    ] {
        let url = format!("{}/rest/{version}/ping", emu.url("acme"));
        let a = answer(
            client()
                .get(url)
                .header("OAuth-Token", &access)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (a.status, a.error()),
            (
                301,
                (
                    "incorrect_version",
                    "Please change your requested API version to value between 10 and 11.16."
                )
            ),
            "{version}"
        );
        assert!(!a.headers.contains_key("location"));
    }
    // The wording names the instance's own maximum.
    let newer = start_with(vec![InstanceConfig {
        max_version: "v11_24".into(),
        ..InstanceConfig::new("newer")
    }])
    .await;
    let a = answer(
        client()
            .get(format!("{}/rest/v11_25/ping", newer.url("newer")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (a.status, a.error().1),
        (
            301,
            "Please change your requested API version to value between 10 and 11.24."
        )
    );
    let a = answer(
        client()
            .get(format!("{}/rest/", emu.url("acme")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 301);
}

#[tokio::test]
async fn tolerant_of_http_1_0_and_header_case() {
    let emu = start().await;
    let body = r#"{"grant_type":"password","client_id":"sugar","client_secret":"","username":"jim","password":"jim-pw","platform":"custom_api"}"#;
    let request = format!(
        "POST /acme/rest/v11_4/oauth2/token HTTP/1.0\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (response, clean) = raw(emu.addr(), request.as_bytes()).await;
    assert!(clean);
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    let json: Value = serde_json::from_str(split_head(&response).1).unwrap();
    let access = json["access_token"].as_str().unwrap();

    let request = format!("GET /acme/rest/v11/me HTTP/1.0\r\noAuTh-ToKeN: {access}\r\n\r\n");
    let (response, _) = raw(emu.addr(), request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert!(split_head(&response).1.contains(r#""user_name":"jim""#));
    let request = format!(
        "GET /acme/rest/v11/ping HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {access}\r\nconnection: close\r\n\r\n"
    );
    let (response, _) = raw(emu.addr(), request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("\"pong\""));
}

#[tokio::test]
async fn bearer_is_read_as_sugar_13_does_and_oauth_token_wins() {
    let emu = start().await;
    let (access, _) = session(&emu, "jim", "jim-pw", "custom_api").await;
    let ping = |headers: Vec<(&'static str, String)>| {
        let mut request = client().get(rest(&emu, "acme", "ping"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move { answer(request.send().await.unwrap()).await }
    };
    let bogus = "802b64c0-5eac-8431-a541-5342d38ac527".to_string();

    let a = ping(vec![("Authorization", format!("Bearer {access}"))]).await;
    assert_eq!((a.status, a.text.as_str()), (200, "\"pong\""));
    assert!(emu.requests().last().unwrap().had_token_header);
    // Only the exact, case-sensitive `Bearer ` prefix is read.
    for value in [
        format!("bearer {access}"),
        format!("BEARER {access}"),
        format!("Basic {access}"),
        access.clone(),
    ] {
        let a = ping(vec![("Authorization", value.clone())]).await;
        assert_eq!((a.status, a.error().0), (401, "need_login"), "{value}");
        assert!(!emu.requests().last().unwrap().had_token_header, "{value}");
    }
    // Whatever follows the prefix is the token, a second space included.
    let a = ping(vec![("Authorization", format!("Bearer  {access}"))]).await;
    assert_eq!((a.status, a.error().0), (401, "invalid_grant"));

    // Both headers: OAuth-Token is read first and wins, even when it is the bad one or empty.
    let a = ping(vec![
        ("OAuth-Token", access.clone()),
        ("Authorization", format!("Bearer {bogus}")),
    ])
    .await;
    assert_eq!(a.status, 200);
    let a = ping(vec![
        ("OAuth-Token", bogus.clone()),
        ("Authorization", format!("Bearer {access}")),
    ])
    .await;
    assert_eq!(
        (a.status, a.error()),
        (
            401,
            ("invalid_grant", "The access token provided is invalid.")
        )
    );
    let a = ping(vec![
        ("OAuth-Token", String::new()),
        ("Authorization", format!("Bearer {access}")),
    ])
    .await;
    assert_eq!((a.status, a.error().0), (401, "need_login"));
}

#[tokio::test]
async fn requests_are_recorded_in_order() {
    let emu = start().await;
    let (access, refresh_token) = session(&emu, "jim", "jim-pw", "custom_api").await;
    refresh(&emu, &refresh_token, Some("custom_api")).await;
    get(&emu, "acme", "ping", Some(&access)).await;
    let recorded = emu.requests();
    assert_eq!(recorded.len(), 3);
    let (first, second, third) = (&recorded[0], &recorded[1], &recorded[2]);
    assert_eq!(
        (
            first.instance.as_str(),
            first.method.as_str(),
            first.path.as_str()
        ),
        ("acme", "POST", "/oauth2/token")
    );
    assert_eq!(
        (first.grant_type.as_deref(), first.platform.as_deref()),
        (Some("password"), Some("custom_api"))
    );
    assert_eq!(
        (
            first.had_token_header,
            first.status,
            first.refresh_token.as_deref()
        ),
        (false, 200, None)
    );
    assert_eq!(second.grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(
        second.refresh_token.as_deref(),
        Some(refresh_token.as_str())
    );
    assert_eq!(
        (
            third.method.as_str(),
            third.path.as_str(),
            third.had_token_header
        ),
        ("GET", "/ping", true)
    );
    emu.clear_requests();
    assert!(emu.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn proxy_faults_answer_instead_of_sugar() {
    let emu = start().await;
    let (access, refresh_token) = session(&emu, "jim", "jim-pw", "custom_api").await;

    emu.set_fault("acme", Some(Fault::Html502));
    let a = get(&emu, "acme", "ping", Some(&access)).await;
    assert_eq!(a.status, 502);
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(a.text.contains("502 Bad Gateway"));
    // Every route, even a refresh, which therefore did not rotate anything.
    assert_eq!(
        refresh(&emu, &refresh_token, Some("custom_api"))
            .await
            .status,
        502
    );
    // Only this instance.
    assert_eq!(
        login(&emu, "other", "jim", "other-pw", "custom_api")
            .await
            .status,
        200
    );

    emu.set_fault("acme", Some(Fault::Html504));
    let a = login(&emu, "acme", "jim", "jim-pw", "custom_api").await;
    assert_eq!(a.status, 504);
    assert!(a.text.contains("504 Gateway Time-out"));

    emu.set_fault("acme", Some(Fault::NonJson200));
    let a = login(&emu, "acme", "jim", "jim-pw", "custom_api").await;
    assert_eq!(a.status, 200);
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(serde_json::from_str::<Value>(&a.text).is_err());

    emu.set_fault("acme", Some(Fault::WrongShape200));
    let a = login(&emu, "acme", "jim", "jim-pw", "custom_api").await;
    assert_eq!(a.status, 200);
    assert!(a.json["access_token"].is_number(), "{}", a.text);
    assert_eq!(
        get(&emu, "acme", "me", Some(&access)).await.json,
        json!({"foo": 1})
    );

    emu.set_fault(
        "acme",
        Some(Fault::Redirect("https://sso.example.com/login?x=1".into())),
    );
    let a = login(&emu, "acme", "jim", "jim-pw", "custom_api").await;
    assert_eq!(a.status, 302);
    assert_eq!(a.headers["location"], "https://sso.example.com/login?x=1");
    assert!(a.text.is_empty());

    emu.set_fault("acme", Some(Fault::Oversized(2 << 20)));
    let a = get(&emu, "acme", "ping", Some(&access)).await;
    assert_eq!((a.status, a.text.len()), (200, 2 << 20));
    assert!(a.json.is_object());

    emu.set_fault("acme", None);
    assert_eq!(
        refresh(&emu, &refresh_token, Some("custom_api"))
            .await
            .status,
        200
    );
    let statuses: Vec<u16> = emu
        .requests()
        .iter()
        .filter(|r| r.instance == "acme")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200, 502, 502, 504, 200, 200, 200, 302, 200, 200]);
}

#[tokio::test]
async fn license_seats_refuse_logins_only() {
    let emu = start().await;
    let (access, refresh_token) = session(&emu, "jim", "jim-pw", "custom_api").await;
    emu.set_fault("acme", Some(Fault::LicenseSeats));
    let a = login(&emu, "acme", "zoe", "zoe-pw", "custom_api").await;
    assert_eq!((a.status, a.error().0), (403, "license_seats_needed"));
    assert_eq!(get(&emu, "acme", "ping", Some(&access)).await.status, 200);
    assert_eq!(
        refresh(&emu, &refresh_token, Some("custom_api"))
            .await
            .status,
        200
    );
    // Bad credentials are still reported as such.
    assert_eq!(
        login(&emu, "acme", "zoe", "bad", "custom_api")
            .await
            .error()
            .0,
        "need_login"
    );
}

#[tokio::test]
async fn an_expired_licence_leaves_only_admins_working() {
    let emu = start().await;
    let (jim, _) = session(&emu, "jim", "jim-pw", "custom_api").await;
    emu.set_license_expired("acme", true);
    let a = get(&emu, "acme", "me", Some(&jim)).await;
    assert_eq!((a.status, a.error().0), (503, "admin_only"));
    // Logging in still works; the admin can still use the API.
    let (fresh, _) = session(&emu, "jim", "jim-pw", "custom_api").await;
    assert_eq!(get(&emu, "acme", "ping", Some(&fresh)).await.status, 503);
    let (admin, _) = session(&emu, "admin", "admin", "custom_api").await;
    assert_eq!(get(&emu, "acme", "ping", Some(&admin)).await.status, 200);
    emu.set_license_expired("acme", false);
    assert_eq!(get(&emu, "acme", "ping", Some(&fresh)).await.status, 200);
}

#[tokio::test]
async fn slow_and_latency_delay_the_answer() {
    let emu = start().await;
    let (access, refresh_token) = session(&emu, "jim", "jim-pw", "custom_api").await;

    emu.set_fault("acme", Some(Fault::Slow(Duration::from_millis(200))));
    let started = Instant::now();
    // A client that gives up early: Sugar processed the refresh anyway.
    let quick = impatient(Duration::from_millis(50));
    let body = json!({"grant_type": "refresh_token", "client_id": "sugar", "client_secret": "",
                      "refresh_token": refresh_token, "platform": "custom_api"});
    let sent = quick
        .post(rest(&emu, "acme", "oauth2/token"))
        .json(&body)
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
    let a = get(&emu, "acme", "ping", Some(&access)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a.status, 200);
    emu.set_fault("acme", None);
    assert_eq!(
        refresh(&emu, &refresh_token, Some("custom_api"))
            .await
            .error()
            .0,
        "invalid_grant"
    );

    emu.set_latency("acme", Duration::from_millis(150));
    let started = Instant::now();
    assert_eq!(get(&emu, "acme", "ping", Some(&access)).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    emu.set_latency("acme", Duration::ZERO);
}

#[tokio::test]
async fn drop_mid_body_cuts_the_answer() {
    let emu = start().await;
    emu.set_fault("acme", Some(Fault::DropMidBody));
    let body = r#"{"grant_type":"password","client_id":"sugar","client_secret":"","username":"jim","password":"jim-pw","platform":"custom_api"}"#;
    let request = format!(
        "POST /acme/rest/v11/oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (response, _) = raw(emu.addr(), request.as_bytes()).await;
    let (head, received) = split_head(&response);
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    let announced: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    assert!(
        !received.is_empty() && received.len() < announced,
        "{} of {announced}",
        received.len()
    );

    let a = client()
        .get(rest(&emu, "acme", "ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 401);
    assert!(a.text().await.is_err());
    // The login itself went through.
    assert_eq!(emu.active_sessions("acme"), 1);
}

#[tokio::test]
async fn hang_never_answers_and_shutdown_still_ends() {
    let emu = start().await;
    emu.set_fault("acme", Some(Fault::Hang));
    let quick = impatient(Duration::from_millis(300));
    let sent = quick.get(rest(&emu, "acme", "ping")).send().await;
    assert!(sent.unwrap_err().is_timeout());
    assert_eq!(emu.requests().last().unwrap().status, 0);

    // A request left hanging does not keep the emulator from shutting down.
    let addr = emu.addr();
    let hanging = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /acme/rest/v11/ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf).await;
        buf
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    emu.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let got = tokio::time::timeout(Duration::from_secs(2), hanging)
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&got).contains("pong"));
}

#[test]
fn the_handle_can_be_shared_between_tasks() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Emulator>();
    assert_send_sync::<Fault>();
}

// ---------------------------------------------------------------------------------------------------
// The demo world

#[tokio::test]
async fn demo_world_behaves_as_its_profiles_say() {
    let emu = Emulator::start(demo_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let text = demo_profiles_toml(&emu);
    let file: toml::Table = toml::from_str(&text).unwrap();
    let defaults = file["defaults"].as_table().unwrap();
    let profiles = file["profiles"].as_table().unwrap();
    assert!((8..=10).contains(&profiles.len()));
    let allowed = [
        "url",
        "api",
        "username",
        "password",
        "password_env",
        "password_cmd",
        "platform",
        "client_id",
        "client_secret",
        "tags",
        "allow_http",
        "timeout_s",
    ];
    let mut admins = 0;
    for (name, profile) in profiles {
        let profile = profile.as_table().unwrap();
        for key in profile.keys() {
            assert!(allowed.contains(&key.as_str()), "{name}.{key}");
        }
        let setting = |key: &str| {
            profile
                .get(key)
                .or(defaults.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let url = setting("url").unwrap();
        let api = setting("api").unwrap();
        let client_id = setting("client_id").unwrap_or_else(|| "sugar".into());
        let client_secret = setting("client_secret").unwrap_or_default();
        let body = json!({"grant_type": "password", "client_id": client_id, "client_secret": client_secret,
                          "username": setting("username"), "password": setting("password"),
                          "platform": setting("platform")});
        let a = answer(
            client()
                .post(format!("{url}/rest/{api}/oauth2/token"))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        let expected = match name.as_str() {
            "acme-reports" | "initech" => (401, "need_login"),
            "umbrella" => (422, "invalid_parameter"),
            _ => (200, ""),
        };
        let got = (a.status, if a.status == 200 { "" } else { a.error().0 });
        assert_eq!(got, expected, "{name}: {}", a.text);
        if a.status == 200 {
            let me = answer(
                client()
                    .get(format!("{url}/rest/{api}/me"))
                    .header("OAuth-Token", a.json["access_token"].as_str().unwrap())
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(me.status, 200, "{name}");
            if me.json["current_user"]["type"] == "admin" {
                admins += 1;
            }
            if name == "globex" {
                assert_eq!(
                    (
                        a.json["expires_in"].as_i64(),
                        a.json["refresh_expires_in"].as_i64()
                    ),
                    (Some(90), Some(600))
                );
            }
        }
    }
    assert!(admins >= 1);
    // The file is one the profiles loader accepts.
    let loaded = sugar_sessions::config::parse(&text, std::path::Path::new("demo.toml"));
    let loaded = loaded.unwrap_or_else(|errors| panic!("{errors:?}"));
    assert_eq!(loaded.profiles.len(), profiles.len());
    assert!(
        loaded
            .profiles
            .iter()
            .all(|p| p.has_tag("prod") || p.has_tag("sandbox"))
    );
    emu.shutdown().await;
}

// ---- HTTPS ----------------------------------------------------------------------------------

async fn start_tls(names: &[&str]) -> Emulator {
    use sugar_sessions::emulator::TlsOptions;
    let options = if names.is_empty() {
        TlsOptions::default()
    } else {
        TlsOptions::for_names(names.iter().copied())
    };
    Emulator::start_tls(
        EmulatorConfig {
            instances: vec![acme()],
        },
        "127.0.0.1:0".parse().unwrap(),
        options,
    )
    .await
    .unwrap()
}

/// A client that trusts only the emulator's CA.
fn trusting(emu: &Emulator) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(emu.ca_pem().unwrap().as_bytes()).unwrap();
    client_builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn https_serves_the_same_api_with_a_certificate_from_its_own_ca() {
    let emu = start_tls(&[]).await;
    assert_eq!(emu.scheme(), "https");
    let url = emu.url("acme");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let pem = emu.ca_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let http = trusting(&emu);
    let r = http
        .post(format!("{url}/rest/v11/oauth2/token"))
        .json(
            &json!({"grant_type": "password", "client_id": "sugar", "client_secret": "",
            "username": "jim", "password": "jim-pw", "platform": "custom_api"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_string();
    let r = http
        .get(format!("{url}/rest/v11/ping"))
        .header("OAuth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "\"pong\"");
    // The instance's own URL (in a maintenance answer) is https too.
    emu.set_maintenance("acme", true);
    let r = http
        .get(format!("{url}/rest/v11/ping"))
        .header("OAuth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["url"].as_str().unwrap().starts_with("https://"),
        "{body}"
    );
    // Each emulator has a CA of its own.
    let other = start_tls(&[]).await;
    assert_ne!(other.ca_pem(), emu.ca_pem());
    assert!(trusting(&other).get(&url).send().await.is_err());
    // A plain emulator has none.
    assert_eq!(start().await.ca_pem(), None);
}

#[tokio::test]
async fn a_silent_client_does_not_hold_up_other_handshakes() {
    let emu = start_tls(&[]).await;
    // Connects and never says hello (and one that speaks plain HTTP to the TLS port).
    let _silent = TcpStream::connect(emu.addr()).await.unwrap();
    let mut plain = TcpStream::connect(emu.addr()).await.unwrap();
    plain
        .write_all(b"GET /acme/rest/v11/ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("pong"));
    let started = Instant::now();
    let r = trusting(&emu)
        .get(format!("{}/rest/v11/ping", emu.url("acme")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "served, without a token");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_tls_emulator_with_a_hanging_request_still_shuts_down() {
    let emu = start_tls(&[]).await;
    emu.set_fault("acme", Some(Fault::Hang));
    let http = trusting(&emu);
    let url = format!("{}/rest/v11/ping", emu.url("acme"));
    let hanging = tokio::spawn(async move { http.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(emu.requests().len(), 1);
    let started = Instant::now();
    emu.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let answer = tokio::time::timeout(Duration::from_secs(2), hanging)
        .await
        .expect("the hanging request ends with the emulator")
        .unwrap();
    assert!(answer.is_err() || answer.unwrap().text().await.is_err());
}

#[tokio::test]
async fn certificates_for_other_names_and_invalid_names_are_refused_at_start() {
    let emu = start_tls(&["sugar.test", "10.1.2.3"]).await;
    // Made out for those names only: 127.0.0.1 does not match.
    let err = trusting(&emu)
        .get(format!("{}/rest/v11/ping", emu.url("acme")))
        .send()
        .await
        .unwrap_err();
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = source {
        chain.push_str(&format!("{e}; "));
        source = e.source();
    }
    assert!(chain.contains("not valid for name"), "{chain}");
    let e = Emulator::start_tls(
        EmulatorConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
        sugar_sessions::emulator::TlsOptions::for_names(Vec::<String>::new()),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("at least one name"), "{e}");
}
