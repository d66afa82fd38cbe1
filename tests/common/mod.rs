//! Shared by the integration tests: an emulator world and profiles that point at it.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::time::Duration;
use sugar_sessions::app::{Model, Msg, Options, Source, update};
use sugar_sessions::config::{self, Profile, Profiles};
use sugar_sessions::emulator::{Emulator, EmulatorConfig, InstanceConfig, UserConfig};

pub const INTEGRATION_PW: &str = "Integration-Pw-8d41";
pub const ADMIN_PW: &str = "Admin-Pw-77c2";

/// `acme`: an admin, an integration user, an inactive user, platforms `custom_api` and `acme_sync`, a second
/// client with a secret, account locking after 3 failures. `short`: lifetimes of 60 s / 300 s.
pub fn world() -> EmulatorConfig {
    let mut acme = InstanceConfig::new("acme")
        .with_user(UserConfig::user(
            "integration",
            INTEGRATION_PW,
            "Integration User",
        ))
        .with_user(UserConfig {
            active: false,
            ..UserConfig::user("gone", "Gone-Pw-1234", "Former Employee")
        })
        .with_platform("custom_api")
        .with_platform("acme_sync");
    acme.users[0] = UserConfig::admin("admin", ADMIN_PW, "Administrator");
    acme.clients
        .push(("acme_client".into(), "client-secret-9f".into()));
    acme.max_failed_logins = Some(3);
    let mut short = InstanceConfig::new("short")
        .with_user(UserConfig::user(
            "integration",
            INTEGRATION_PW,
            "Integration User",
        ))
        .with_platform("custom_api");
    short.access_lifetime = Duration::from_secs(60);
    short.refresh_lifetime = Duration::from_secs(300);
    EmulatorConfig {
        instances: vec![acme, short],
    }
}

pub async fn start() -> Emulator {
    start_with(world()).await
}

pub async fn start_with(config: EmulatorConfig) -> Emulator {
    Emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("emulator starts")
}

/// Parses a profiles file text (the path is only used in messages).
pub fn profiles(text: &str) -> Profiles {
    match config::parse(text, Path::new("test-profiles.toml")) {
        Ok(p) => p,
        Err(errors) => panic!("test profiles do not parse: {errors:?}"),
    }
}

/// One profile `[profiles.NAME]` with `body` (TOML lines).
pub fn profile(name: &str, body: &str) -> Profile {
    let p = profiles(&format!("[profiles.{name}]\n{body}\n"))
        .profiles
        .remove(0);
    std::sync::Arc::unwrap_or_clone(p)
}

/// A standard profile for the integration user of `instance`.
pub fn integration(emu: &Emulator, name: &str, instance: &str) -> Profile {
    profile(
        name,
        &format!(
            "url = \"{}\"\nusername = \"integration\"\npassword = \"{INTEGRATION_PW}\"\nplatform = \"custom_api\"",
            emu.url(instance)
        ),
    )
}

/// A profiles file on disk, mode 0600, for the binary.
pub fn write_profiles(dir: &Path, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("profiles.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The entry a profile labelled `label` last wrote in a token cache read as JSON (format 2 keys
/// entries by the session's identity, and records the profile's name in each); `Null` if none.
pub fn cached(cache: &serde_json::Value, label: &str) -> serde_json::Value {
    cache["sessions"]
        .as_object()
        .and_then(|sessions| {
            sessions
                .values()
                .find(|e| e["profile"].as_str() == Some(label))
        })
        .cloned()
        .unwrap_or_default()
}

/// Changes a profile's cache entry as the holder of its identity's lock would (for tests that
/// set up a state: an expiry in the past, a login longer ago).
pub async fn change_entry(
    engine: &sugar_sessions::runtime::Engine,
    p: &Profile,
    f: impl FnOnce(&mut sugar_sessions::session::Entry) + Send + 'static,
) {
    engine
        .persist(sugar_sessions::store::Change {
            key: p.session_key(),
            label: p.name.clone(),
            expect: sugar_sessions::store::Expect::Held,
            apply: Box::new(f),
        })
        .await
        .expect("the cache is written");
}

/// `promtool check metrics` on `text`: its complaints, if any.
pub fn promtool(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("promtool (Prometheus' checker) is needed: apt-get install prometheus ({e})")
        })?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}

/// An address on 127.0.0.1 where nothing listens: a connection is refused. A listener is bound
/// and dropped; a process another test forks at that moment holds a copy of it until it execs,
/// so the address is returned only once a connection is actually refused.
pub fn refused_addr() -> std::net::SocketAddr {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    addr
}

/// The fixed instant of the screen's pure tests: 2026-03-01 12:00 UTC.
pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// The screen's model of `profiles` (from `profiles.toml`) at [`t0`], on a 120x30 terminal.
pub fn screen_model(profiles: &Profiles, options: Options) -> Model {
    let mut m = Model::new(
        profiles,
        Source::File("profiles.toml".into()),
        options,
        t0(),
    );
    update(
        &mut m,
        Msg::Resize {
            width: 120,
            height: 30,
        },
        t0(),
    );
    m
}
