//! A built-in Sugar server (axum) for tests, the demo and standalone use.
//! Written from the protocol reference (`sugar-api.md`), sharing no types with the client in `sugar`.
//!
//! Each configured instance is served under the path prefix `/{name}`; its REST root is
//! `/{name}/rest/{version}`. Routes: `POST oauth2/token` (password and refresh_token grants),
//! `POST oauth2/logout`, `POST oauth2/sudo/{user_name}`, `GET me`, `GET ping`, `GET ping/whattimeisit`,
//! `GET metadata` (`type_filter=server_info`, `config`, `full_module_list`), and the records of `records`:
//! `GET {module}`, `GET|POST {module}/filter`, `GET {module}/count`, `GET {module}/{id}` over generated
//! Accounts and Contacts.
//!
//! Behaviour worth knowing when writing tests against it:
//! - Time is the emulator clock (real time plus [`Emulator::advance_clock`] offsets); every expiry uses it.
//! - A refresh issues a new access *and* refresh token; the old refresh token dies at once, the old access
//!   token keeps working until its own expiry. A refresh without `platform` lands the session on `base`.
//! - A new refresh token for (user, platform) deletes that user's older refresh tokens on the platform
//!   (`mobile` keeps 2); the access tokens of those sessions keep working for
//!   [`InstanceConfig::superseded_access_grace`], then get 401 `invalid_grant`.
//! - Maintenance: a non-admin password login gets 401 `need_login`; everything else (refresh of a
//!   non-admin session, any route without a valid admin token) gets 503 `maintenance` with a `url`.
//! - An expired licence (`license_expired`): logins work, every other route answers non-admins 503
//!   `admin_only`.
//! - `latency` (and `Fault::Slow`) delay the answer after Sugar processed the request: a client
//!   that gives up meanwhile may have lost a rotated refresh token, as with a real slow server.
//! - Faults stand for things in front of Sugar (proxies, SSO, networks). `Html502`, `Html504`,
//!   `NonJson200`, `WrongShape200`, `Redirect`, `Hang` and `Oversized` answer instead of Sugar: the request
//!   changes nothing. `Slow` and `DropMidBody` let Sugar process the request (a login or refresh really
//!   happens, tokens rotate) and then delay or cut the answer, as a slow or broken network would.
//!   `LicenseSeats` is Sugar's own answer to a password login.
//! - An account locked by `max_failed_logins` stays locked for the emulator's lifetime.
//! - Request bodies and tokens are never logged.
//! - The access token is read as Sugar 13+ reads it: `OAuth-Token` first (winning when both are sent),
//!   else `Authorization` starting with exactly `Bearer `.

mod dataset;
mod demo;
mod http;
mod json;
mod records;
mod state;
mod tls;

pub use demo::{demo_config, demo_profiles_toml};
pub use tls::TlsOptions;

use state::InstanceState;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// The instances an emulator serves.
#[derive(Clone, Debug, Default)]
pub struct EmulatorConfig {
    pub instances: Vec<InstanceConfig>,
}

/// One Sugar instance.
#[derive(Clone, Debug)]
pub struct InstanceConfig {
    /// Served under the path prefix `/{name}`; the REST root is `/{name}/rest/{version}`.
    pub name: String,
    pub users: Vec<UserConfig>,
    /// Registered custom platforms, in addition to the built-ins `base`, `mobile` and `portal`: names of
    /// `[A-Za-z0-9_-]{1,127}`, matched as written (a registered `SCRIBE` does not admit `scribe`).
    pub platforms: Vec<String>,
    /// `(client_id, client_secret)`; default `[("sugar", "")]`.
    pub clients: Vec<(String, String)>,
    /// Default 3600 s.
    pub access_lifetime: Duration,
    /// Default 1,209,600 s (14 days).
    pub refresh_lifetime: Duration,
    /// Caps the whole session (access and refresh expiry) at login + this; refreshing no longer extends it.
    pub max_session_lifetime: Option<Duration>,
    /// How long a superseded session's access token keeps working (default 120 s).
    pub superseded_access_grace: Duration,
    /// Added to every response (default 0).
    pub latency: Duration,
    pub maintenance: bool,
    /// Highest version served, e.g. `v11_16`; `v10` up to it are served, others get 301 `incorrect_version`.
    pub max_version: String,
    /// `server_info.flavor`, e.g. `ENT`.
    pub flavor: String,
    /// `server_info.version`, e.g. `12.0.0`.
    pub version: String,
    /// Lock the account after this many failed logins in a row.
    pub max_failed_logins: Option<u32>,
    /// The licence has expired: logins still work, but every other route answers non-admins
    /// 503 `admin_only` (default false).
    pub license_expired: bool,
    /// How many Accounts records the instance holds (default 200), generated from its name: the same
    /// ones every run.
    pub accounts: usize,
    /// How many Contacts records (default 450), each linked to one of the Accounts.
    pub contacts: usize,
}

impl InstanceConfig {
    /// An instance with Sugar's defaults, one admin user (`admin` / `admin`), no custom platforms,
    /// client `sugar` with an empty secret, Sugar 12.0.0 ENT serving v10 to v11_16, 200 Accounts and
    /// 450 Contacts.
    pub fn new(name: &str) -> Self {
        InstanceConfig {
            name: name.to_string(),
            users: vec![UserConfig::admin("admin", "admin", "Administrator")],
            platforms: Vec::new(),
            clients: vec![("sugar".to_string(), String::new())],
            access_lifetime: Duration::from_secs(3600),
            refresh_lifetime: Duration::from_secs(1_209_600),
            max_session_lifetime: None,
            superseded_access_grace: Duration::from_secs(120),
            latency: Duration::ZERO,
            maintenance: false,
            max_version: "v11_16".to_string(),
            flavor: "ENT".to_string(),
            version: "12.0.0".to_string(),
            max_failed_logins: None,
            license_expired: false,
            accounts: 200,
            contacts: 450,
        }
    }

    /// Add a user (builder style).
    pub fn with_user(mut self, user: UserConfig) -> Self {
        self.users.push(user);
        self
    }

    /// Register a custom platform (builder style).
    pub fn with_platform(mut self, platform: &str) -> Self {
        self.platforms.push(platform.to_string());
        self
    }
}

/// One user of an instance.
#[derive(Clone, Debug)]
pub struct UserConfig {
    pub user_name: String,
    pub password: String,
    pub full_name: String,
    pub admin: bool,
    pub active: bool,
}

impl UserConfig {
    /// An active regular user.
    pub fn user(user_name: &str, password: &str, full_name: &str) -> Self {
        UserConfig {
            user_name: user_name.to_string(),
            password: password.to_string(),
            full_name: full_name.to_string(),
            admin: false,
            active: true,
        }
    }

    /// An active admin.
    pub fn admin(user_name: &str, password: &str, full_name: &str) -> Self {
        UserConfig {
            admin: true,
            ..UserConfig::user(user_name, password, full_name)
        }
    }
}

/// A fault injected in front of (or into) an instance, until cleared.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 502 with an HTML body (reverse proxy).
    Html502,
    /// 504 with an HTML body (reverse proxy).
    Html504,
    /// 200 `text/plain` with an HTML page in it (captive portal).
    NonJson200,
    /// 200 JSON of the wrong shape: `access_token` as a number on `oauth2/token`, `{"foo":1}` elsewhere.
    WrongShape200,
    /// 302 to this `Location` (SSO login page), empty body.
    Redirect(String),
    /// Sugar answers after this extra delay (the request is processed).
    Slow(Duration),
    /// Accept, read the request, never answer (until the emulator shuts down, then close the connection).
    Hang,
    /// Sugar processes the request; the answer's headers announce the full `Content-Length`, about half the
    /// bytes follow, then the connection closes.
    DropMidBody,
    /// 200 JSON body of exactly this many bytes (when at least 11).
    Oversized(usize),
    /// 403 `license_seats_needed` on password logins.
    LicenseSeats,
}

/// One request the emulator received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The first path segment (the instance name, or whatever an unknown prefix was).
    pub instance: String,
    pub method: String,
    /// After the REST root, e.g. `/oauth2/token`; the whole path when there is no REST root in it.
    pub path: String,
    pub grant_type: Option<String>,
    pub platform: Option<String>,
    pub refresh_token: Option<String>,
    /// An `OAuth-Token` header, or an `Authorization` header starting with exactly `Bearer `, was sent.
    pub had_token_header: bool,
    /// The status answered; 0 while none was (yet) sent, e.g. under [`Fault::Hang`].
    pub status: u16,
}

/// State shared by the handlers and the [`Emulator`] handle.
pub(crate) struct Shared {
    instances: Mutex<HashMap<String, InstanceState>>,
    clock_offset: Mutex<chrono::Duration>,
    /// The last id handed out, and the requests with their ids.
    requests: Mutex<(u64, Vec<(u64, RecordedRequest)>)>,
    shutdown: watch::Receiver<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-updated in a way that matters more than
    // losing the emulator, so keep serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + *lock(&self.clock_offset)
    }

    /// Record a request on arrival; the id lets its status be filled in later.
    pub(crate) fn record(&self, request: RecordedRequest) -> u64 {
        let mut requests = lock(&self.requests);
        requests.0 += 1;
        let id = requests.0;
        requests.1.push((id, request));
        id
    }

    pub(crate) fn set_status(&self, id: u64, status: u16) {
        if let Some((_, r)) = lock(&self.requests)
            .1
            .iter_mut()
            .rev()
            .find(|(i, _)| *i == id)
        {
            r.status = status;
        }
    }

    /// Run `f` on an instance's state, if there is such an instance.
    pub(crate) fn with_instance<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut InstanceState) -> R,
    ) -> Option<R> {
        lock(&self.instances).get_mut(name).map(f)
    }

    /// Wait for `d`, or less if the emulator shuts down; false when cut short by the shutdown.
    pub(crate) async fn sleep(&self, d: Duration) -> bool {
        if d.is_zero() {
            return true;
        }
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = shutdown.wait_for(|down| *down) => false,
        }
    }

    /// Resolves when the emulator shuts down.
    pub(crate) async fn shutting_down(&self) {
        let mut shutdown = self.shutdown.clone();
        let _ = shutdown.wait_for(|down| *down).await;
    }
}

/// A running emulator. Dropping it stops the server too; [`Emulator::shutdown`] also waits for that.
pub struct Emulator {
    addr: SocketAddr,
    /// The CA that issued the server certificate (PEM), when serving HTTPS.
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Bind `addr` (port 0 picks a free port) and serve plain HTTP in a tokio task.
    pub async fn start(config: EmulatorConfig, addr: SocketAddr) -> std::io::Result<Emulator> {
        Self::start_inner(config, addr, None).await
    }

    /// Like [`start`](Self::start), but serve HTTPS only, with a server certificate issued by a CA
    /// generated now (see [`ca_pem`](Self::ca_pem)) for the names in `tls`.
    pub async fn start_tls(
        config: EmulatorConfig,
        addr: SocketAddr,
        tls: TlsOptions,
    ) -> std::io::Result<Emulator> {
        Self::start_inner(config, addr, Some(tls)).await
    }

    async fn start_inner(
        config: EmulatorConfig,
        addr: SocketAddr,
        tls: Option<TlsOptions>,
    ) -> std::io::Result<Emulator> {
        let identity = tls.as_ref().map(tls::identity).transpose()?;
        let mut instances = HashMap::new();
        for instance in config.instances {
            if instance.name.is_empty() || instance.name.contains('/') {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("invalid instance name {:?}", instance.name),
                ));
            }
            if http::parse_version(&instance.max_version).is_none() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "instance {}: invalid max_version {:?}",
                        instance.name, instance.max_version
                    ),
                ));
            }
            let name = instance.name.clone();
            if instances
                .insert(name.clone(), InstanceState::new(instance))
                .is_some()
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("instance {name} configured twice"),
                ));
            }
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            instances: Mutex::new(instances),
            clock_offset: Mutex::new(chrono::Duration::zero()),
            requests: Mutex::new((0, Vec::new())),
            shutdown: shutdown_rx.clone(),
        });
        let (ca_pem, tls_config) = match identity {
            Some(identity) => (Some(identity.ca_pem), Some(identity.config)),
            None => (None, None),
        };
        let server = tokio::spawn(http::serve(
            listener,
            shared.clone(),
            shutdown_rx,
            tls_config,
        ));
        tracing::info!(%addr, tls = ca_pem.is_some(), "Sugar emulator listening");
        Ok(Emulator {
            addr,
            ca_pem,
            shared,
            shutdown,
            server: Some(server),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The instance root, e.g. `http://127.0.0.1:PORT/acme` (`https://` when serving TLS; no trailing
    /// slash). Does not check that the instance exists, so that tests can build URLs of unknown
    /// instances. When listening on an unspecified address (`0.0.0.0`, `::`), the URL uses the
    /// loopback address.
    pub fn url(&self, instance: &str) -> String {
        format!("{}://{}/{}", self.scheme(), self.connect_addr(), instance)
    }

    /// `https` when started with [`start_tls`](Self::start_tls), else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The PEM certificate of the CA that issued the server certificate (HTTPS only): what a client
    /// must trust, e.g. written to a file named by a profile's `ca_cert`.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The address to connect to: [`addr`](Self::addr), with an unspecified IP replaced by loopback.
    pub fn connect_addr(&self) -> SocketAddr {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        addr
    }

    /// Names of the instances served, sorted.
    pub fn instances(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.shared.instances).keys().cloned().collect();
        names.sort();
        names
    }

    fn with_instance<R>(&self, instance: &str, f: impl FnOnce(&mut InstanceState) -> R) -> R {
        match self.shared.with_instance(instance, f) {
            Some(r) => r,
            None => panic!("the emulator has no instance named {instance:?}"),
        }
    }

    /// Inject a fault into every route of `instance` (`None` clears it). Panics for an unknown instance.
    pub fn set_fault(&self, instance: &str, fault: Option<Fault>) {
        self.with_instance(instance, |i| i.fault = fault);
    }

    /// Turn maintenance mode on or off. Panics for an unknown instance.
    pub fn set_maintenance(&self, instance: &str, on: bool) {
        self.with_instance(instance, |i| i.cfg.maintenance = on);
    }

    /// Turn the expired-licence state on or off (see [`InstanceConfig::license_expired`]).
    /// Panics for an unknown instance.
    pub fn set_license_expired(&self, instance: &str, on: bool) {
        self.with_instance(instance, |i| i.cfg.license_expired = on);
    }

    /// Delay added to every response of `instance`. Panics for an unknown instance.
    pub fn set_latency(&self, instance: &str, latency: Duration) {
        self.with_instance(instance, |i| i.cfg.latency = latency);
    }

    /// Move the emulator clock forward: emulator time = real time + the sum of all advances.
    pub fn advance_clock(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        let mut offset = lock(&self.shared.clock_offset);
        *offset = offset.checked_add(&by).unwrap_or(chrono::Duration::MAX);
    }

    /// The emulator's current time.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.shared.now()
    }

    /// Everything received, in order of arrival.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests)
            .1
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).1.clear();
    }

    /// Live (unexpired) refresh tokens of `instance`. Panics for an unknown instance.
    pub fn active_sessions(&self, instance: &str) -> usize {
        let now = self.shared.now();
        self.with_instance(instance, |i| i.active_sessions(now))
    }

    /// Stop accepting, end open connections (hanging ones are closed), and wait for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), server)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .field("instances", &self.instances())
            .finish()
    }
}
