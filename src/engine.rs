//! Runs operations on profiles: bounded concurrency, password sources, persistence.
//!
//! Shared by the shell commands and the screen's runtime. Results are persisted to the token cache
//! before they are reported; results that arrive together are written together (one write for many).

use crate::config::{PasswordSource, Profile, Settings};
use crate::secret::Secret;
use crate::session::{
    CheckReport, Entry, Failure, Op, RELOGIN_INTERVAL, RequestLog, Session, State, format_duration,
    remaining, rfc3339,
};
use crate::store::{Cache, FileStamp, Store, StoreError};
use crate::sugar::{Call, Client, Grant, NetSettings, SugarError};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// The requests a live check sends at once (ping, me, server info, server time): it takes as many
/// places under the concurrency bounds.
pub const CHECK_REQUESTS: u32 = 4;

/// What an operation on one profile came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub op: Op,
    pub ok: bool,
    /// One line for people, starting with the profile's name.
    pub message: String,
    /// The profile's cache entry after the operation (as persisted).
    pub entry: Entry,
    /// The state at the time the outcome was made.
    pub state: State,
    /// The requests sent, in order.
    pub requests: Vec<RequestLog>,
    /// The failure, when a request failed.
    pub error: Option<Box<SugarError>>,
}

/// A place in both concurrency bounds (global and per instance host).
pub struct Permit {
    _host: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

type Change = Box<dyn FnOnce(&mut Entry) + Send>;
type Ack = oneshot::Sender<Result<Entry, String>>;

/// The engine: one per process.
pub struct Engine {
    store: Store,
    clients: Mutex<HashMap<NetSettings, Client>>,
    global: Arc<Semaphore>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    per_host: usize,
    global_max: usize,
    persist_tx: mpsc::UnboundedSender<(String, Change, Ack)>,
    /// The cache as last read, with the file version it was read from: re-read only when the file changed.
    snapshot: Arc<Mutex<Option<Snapshot>>>,
}

/// A parsed cache and the version of the file it was read from.
type Snapshot = (FileStamp, Arc<Cache>);

impl Engine {
    /// Must be called inside a tokio runtime (it starts the cache writer task).
    pub fn new(store: Store, settings: &Settings) -> Engine {
        let (persist_tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(persister(store.clone(), rx));
        Engine {
            store,
            clients: Mutex::new(HashMap::new()),
            global: Arc::new(Semaphore::new(settings.max_concurrency.max(1))),
            hosts: Mutex::new(HashMap::new()),
            per_host: settings.max_per_host.max(1),
            global_max: settings.max_concurrency.max(1),
            persist_tx,
            snapshot: Arc::new(Mutex::new(None)),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Waits for a place under both bounds. Dropping the future while it waits gives nothing up.
    pub async fn acquire(&self, p: &Profile) -> Permit {
        self.acquire_n(p, 1).await
    }

    /// Waits for `n` places under both bounds, for an operation that sends `n` requests at once
    /// (a live check sends [`CHECK_REQUESTS`]); never more places than a bound has.
    pub async fn acquire_n(&self, p: &Profile, n: u32) -> Permit {
        let n = n.clamp(1, self.per_host.min(self.global_max) as u32);
        let host = {
            let mut hosts = self.hosts.lock().expect("hosts lock");
            hosts
                .entry(p.host_port())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
                .clone()
        };
        let host = host
            .acquire_many_owned(n)
            .await
            .expect("semaphores are never closed");
        let global = self
            .global
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("semaphores are never closed");
        Permit {
            _host: host,
            _global: global,
        }
    }

    fn client(&self, p: &Profile) -> Result<Client, String> {
        let key = NetSettings::of(p);
        let mut clients = self.clients.lock().expect("clients lock");
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let c = Client::new(&key)?;
        clients.insert(key, c.clone());
        Ok(c)
    }

    /// Acquires a place and runs the operation.
    pub async fn run(&self, p: &Profile, op: Op, password: Option<Secret>) -> Outcome {
        let permit = self.acquire(p).await;
        // Boxed once it may run: a thousand queued operations then hold only the small waiting
        // future each, not the whole request's state (~3 KB each).
        Box::pin(self.execute(p, op, password, permit)).await
    }

    /// Runs `op` on `p` holding `permit`. `password` is used by a login instead of the profile's source.
    pub async fn execute(
        &self,
        p: &Profile,
        op: Op,
        password: Option<Secret>,
        permit: Permit,
    ) -> Outcome {
        // What this process knew before waiting for the profile's lock: if another process
        // stores a newer session meanwhile, a refresh uses that instead of a stale refresh token.
        let seen = self.current(&p.name).await.unwrap_or_default();
        let mut run = Run {
            engine: self,
            p,
            op,
            requests: Vec::new(),
            seen,
            permit: Mutex::new(Some(permit)),
        };
        let lock = self.lock_profile(&p.name).await;
        let result = match (run.engine.client(p), lock) {
            (_, Err(msg)) | (Err(msg), _) => Err(run
                .fail_local(format!("{}: {op} failed: {msg}", p.name), false)
                .await),
            (Ok(client), Ok(_lock)) => match op {
                Op::Login => run.login(&client, password).await,
                Op::Refresh => run.refresh(&client).await,
                Op::Logout => run.logout(&client).await,
            },
        };
        run.release();
        let (ok, message, entry, error) = match result {
            Ok((message, entry)) => (true, message, entry, None),
            Err(Failed {
                message,
                entry,
                error,
            }) => (false, message, entry, error),
        };
        let state = entry.state(Utc::now());
        tracing::info!(
            profile = %p.name,
            %op,
            ok,
            state = state.as_str(),
            error = error.as_ref().map(|e| e.kind.name()),
            label = error.as_ref().and_then(|e| e.label()),
            requests = run.requests.len(),
            "operation finished"
        );
        Outcome {
            name: p.name.clone(),
            op,
            ok,
            state,
            message,
            entry,
            requests: run.requests,
            error,
        }
    }

    /// Applies `change` to the profile's entry in the cache (under the lock, merged with what other
    /// processes wrote) and returns the entry as persisted.
    pub async fn persist(
        &self,
        name: &str,
        change: impl FnOnce(&mut Entry) + Send + 'static,
    ) -> Result<Entry, String> {
        let (ack, rx) = oneshot::channel();
        self.persist_tx
            .send((name.to_string(), Box::new(change), ack))
            .map_err(|_| "the cache writer has stopped".to_string())?;
        rx.await
            .map_err(|_| "the cache writer has stopped".to_string())?
    }

    /// The current cache entry of a profile, read from disk (another process may have changed it).
    pub async fn current(&self, name: &str) -> Result<Entry, String> {
        let cache = self.cache().await?;
        Ok(cache.profiles.get(name).cloned().unwrap_or_default())
    }

    /// The whole cache as it is on disk now; read again only when the file changed since last time.
    pub async fn cache(&self) -> Result<Arc<Cache>, String> {
        let store = self.store.clone();
        let snapshot = self.snapshot.clone();
        tokio::task::spawn_blocking(move || {
            let before = store.stamp();
            if let Some((stamp, cache)) = snapshot.lock().expect("snapshot lock").as_ref()
                && before == Some(*stamp)
            {
                return Ok(cache.clone());
            }
            // Not parsed again when it is the file this process last wrote or read.
            let (cache, _) = store.load_shared().map_err(|e| e.to_string())?;
            // Keep it only if the file did not change while it was read.
            if let Some(stamp) = before
                && store.stamp() == before
            {
                *snapshot.lock().expect("snapshot lock") = Some((stamp, cache.clone()));
            }
            Ok(cache)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Takes the profile's cross-process lock (waiting for another process to finish with it).
    async fn lock_profile(&self, name: &str) -> Result<std::fs::File, String> {
        let store = self.store.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || store.lock_profile(&name))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// The whole cache, read from disk.
    pub fn load_cache(&self) -> Result<Cache, StoreError> {
        self.store.load().map(|(c, _)| c)
    }
}

/// While results keep coming, the cache is written at most once per this interval: every write
/// rewrites the whole file, so writing once per result would cost O(N²) over a bulk action.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(25);

/// Writes queued changes; all changes waiting when a write starts go into that one write. A change
/// that comes after a quiet spell is written at once; one that comes within [`MIN_WRITE_INTERVAL`]
/// of the previous write waits for the rest of the interval, gathering others.
async fn persister(store: Store, mut rx: mpsc::UnboundedReceiver<(String, Change, Ack)>) {
    let mut last_write: Option<tokio::time::Instant> = None;
    while let Some(first) = rx.recv().await {
        if let Some(at) = last_write {
            tokio::time::sleep_until(at + MIN_WRITE_INTERVAL).await;
        }
        last_write = Some(tokio::time::Instant::now());
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let store = store.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut acks = Vec::with_capacity(batch.len());
            let written = store.update(|cache| {
                let now = Utc::now();
                for (name, change, ack) in batch {
                    let entry = cache.profiles.entry(name).or_default();
                    change(entry);
                    entry.updated_at = Some(now);
                    acks.push((ack, entry.clone()));
                }
            });
            (written, acks)
        })
        .await;
        match result {
            Ok((Ok(()), acks)) => {
                tracing::debug!(changes = acks.len(), "token cache written");
                for (ack, entry) in acks {
                    let _ = ack.send(Ok(entry));
                }
            }
            Ok((Err(e), acks)) => {
                tracing::warn!(error = %e, "token cache not written");
                for (ack, _) in acks {
                    let _ = ack.send(Err(format!("the token cache could not be written: {e}")));
                }
            }
            Err(_) => {} // the batch's acks were dropped with the panicked task: callers see "stopped"
        }
    }
}

struct Failed {
    message: String,
    entry: Entry,
    error: Option<Box<SugarError>>,
}

type Step = Result<(String, Entry), Failed>;

struct Run<'a> {
    engine: &'a Engine,
    p: &'a Profile,
    op: Op,
    requests: Vec<RequestLog>,
    /// The profile's entry as read before its lock was taken.
    seen: Entry,
    /// The place in the concurrency bounds: held for requests, given up while a result is stored
    /// (writes are coalesced, so a result may wait a moment for its write; the network need not).
    permit: Mutex<Option<Permit>>,
}

impl Run<'_> {
    fn name(&self) -> &str {
        &self.p.name
    }

    /// Gives up the place in the concurrency bounds (the profile's lock stays held).
    fn release(&self) {
        let permit = self.permit.lock().expect("permit lock").take();
        drop(permit);
    }

    /// Takes a place in the concurrency bounds again before a request, if it was given up.
    async fn hold(&self) {
        if self.permit.lock().expect("permit lock").is_none() {
            let permit = self.engine.acquire(self.p).await;
            *self.permit.lock().expect("permit lock") = Some(permit);
        }
    }

    /// Stores a change of the profile's entry, without holding a place in the bounds meanwhile.
    async fn persist(
        &self,
        change: impl FnOnce(&mut Entry) + Send + 'static,
    ) -> Result<Entry, String> {
        self.release();
        self.engine.persist(self.name(), change).await
    }

    fn record<T>(&mut self, call: Call<T>) -> Result<T, Box<SugarError>> {
        self.requests.push(call.log);
        call.result.map_err(Box::new)
    }

    /// Stores a failure that is not an HTTP error (no password, a cache problem, ...).
    async fn fail_local(&self, message: String, needs_login: bool) -> Failed {
        let op = self.op;
        let m = message.clone();
        let entry = self
            .persist(move |e| {
                e.failure = Some(Failure {
                    at: Utc::now(),
                    op,
                    message: m,
                    needs_login,
                    superseded: false,
                })
            })
            .await
            .unwrap_or_default();
        Failed {
            message,
            entry,
            error: None,
        }
    }

    /// Stores a failed request; `change` adjusts the session (for example drops a rejected refresh token).
    async fn fail_http(
        &self,
        error: Box<SugarError>,
        needs_login: bool,
        change: impl FnOnce(&mut Entry) + Send + 'static,
    ) -> Failed {
        let message = error.to_string();
        self.fail_with(error, message, needs_login, false, change)
            .await
    }

    /// Stores a failed request with its message for people and how it leaves the session.
    async fn fail_with(
        &self,
        error: Box<SugarError>,
        message: String,
        needs_login: bool,
        superseded: bool,
        change: impl FnOnce(&mut Entry) + Send + 'static,
    ) -> Failed {
        let op = self.op;
        let m = message.clone();
        let entry = match self
            .persist(move |e| {
                change(e);
                e.failure = Some(Failure {
                    at: Utc::now(),
                    op,
                    message: m,
                    needs_login,
                    superseded,
                });
            })
            .await
        {
            Ok(e) => e,
            Err(cache) => {
                return Failed {
                    message: format!("{message}; and {cache}"),
                    entry: Entry::default(),
                    error: Some(error),
                };
            }
        };
        Failed {
            message,
            entry,
            error: Some(error),
        }
    }

    async fn store_session(&self, session: Session) -> Result<Entry, Failed> {
        self.persist(move |e| {
            e.session = Some(session);
            e.failure = None;
        })
        .await
        .map_err(|cache| Failed {
            message: format!("{}: {} succeeded but {cache}", self.name(), self.op),
            entry: Entry::default(),
            error: None,
        })
    }

    async fn current(&self) -> Result<Entry, Failed> {
        self.engine.current(self.name()).await.map_err(|e| Failed {
            message: format!("{}: cannot read the token cache: {e}", self.name()),
            entry: Entry::default(),
            error: None,
        })
    }

    async fn login(&mut self, client: &Client, password: Option<Secret>) -> Step {
        let password = match password {
            Some(pw) => pw,
            None => match crate::password::resolve_password(self.p).await {
                Ok(Some(pw)) => pw,
                Ok(None) => {
                    let msg = format!(
                        "{}: login failed: no password: the profile has no password_env, password_cmd or password, and there is no terminal to ask on",
                        self.name()
                    );
                    return Err(self.fail_local(msg, true).await);
                }
                Err(why) => {
                    return Err(self
                        .fail_local(format!("{}: login failed: {why}", self.name()), true)
                        .await);
                }
            },
        };
        self.hold().await;
        let call = client.login(self.p, &password).await;
        drop(password);
        let at = call.log.at;
        match self.record(call) {
            Ok(grant) => {
                let session = session_from(grant, self.p, at);
                let entry = self.store_session(session).await?;
                Ok((
                    format!(
                        "{}: logged in; {}",
                        self.name(),
                        describe(&entry, Utc::now())
                    ),
                    entry,
                ))
            }
            Err(e) => Err(self.fail_http(e, false, |_| {}).await),
        }
    }

    async fn refresh(&mut self, client: &Client) -> Step {
        let entry = self.current().await?;
        let now = Utc::now();
        if let (Some(before), Some(after)) = (&self.seen.session, &entry.session)
            && after.obtained_at > before.obtained_at
            && entry.failure.is_none()
        {
            // Another process refreshed (or logged in) while this one waited for the lock.
            return Ok((
                format!(
                    "{}: refreshed by another process just now; {}",
                    self.name(),
                    describe(&entry, now)
                ),
                entry,
            ));
        }
        let Some(session) = own_session(&entry, self.p) else {
            let msg = match &entry.session {
                Some(_) => format!(
                    "{}: refresh failed: the cached session belongs to another url, user or platform than the profile now names; log in",
                    self.name()
                ),
                None => format!("{}: refresh failed: no session: log in first", self.name()),
            };
            return Err(self.fail_local(msg, true).await);
        };
        let Some(refresh_token) = session
            .refresh_token
            .clone()
            .filter(|_| session.refresh_valid(now))
        else {
            let msg = format!(
                "{}: refresh failed: the refresh token has expired (or there is none): log in again",
                self.name()
            );
            return Err(self.fail_local(msg, true).await);
        };
        self.hold().await;
        let call = client.refresh(self.p, &refresh_token).await;
        let at = call.log.at;
        match self.record(call) {
            Ok(grant) => {
                let mut fresh = session_from(grant, self.p, at);
                fresh.hard_end = hard_end(&session, &fresh);
                let entry = self.store_session(fresh).await?;
                Ok((
                    format!(
                        "{}: refreshed; {}",
                        self.name(),
                        describe(&entry, Utc::now())
                    ),
                    entry,
                ))
            }
            Err(e) if e.is_invalid_grant() => {
                self.refresh_rejected(client, e, &session, &entry).await
            }
            Err(e) => Err(self.fail_http(e, false, |_| {}).await),
        }
    }

    /// Sugar rejected the refresh token: say why, and log in again when the profile allows it.
    async fn refresh_rejected(
        &mut self,
        client: &Client,
        e: Box<SugarError>,
        session: &Session,
        entry: &Entry,
    ) -> Step {
        let now = Utc::now();
        let expired = e.to_string().to_ascii_lowercase().contains("expired");
        // Rejected although it had not expired: another login on this user and platform ended it.
        let superseded = !expired && session.refresh_valid(now);
        let mut cause = if superseded {
            format!(
                "{}: superseded: {} ({})",
                self.name(),
                superseded_reason(self.p),
                e.what()
            )
        } else {
            e.to_string()
        };
        if self.p.relogin && self.p.password.is_non_interactive() {
            match entry.relogin_at.filter(|t| now - *t < RELOGIN_INTERVAL) {
                None => {
                    let why = e.what();
                    let (_, entry) = self.login(client, None).await?;
                    let entry = self.persist(move |e| e.relogin_at = Some(now))
                        .await
                        .unwrap_or(entry);
                    let because = if superseded { "it was superseded by another login" } else { "it was rejected" };
                    return Ok((
                        format!(
                            "{}: logged in again, because the refresh token could not be used ({because}: {why}); {}",
                            self.name(),
                            describe(&entry, Utc::now())
                        ),
                        entry,
                    ));
                }
                Some(last) => cause.push_str(&format!(
                    "; not logging in again automatically: that already happened at {} (at most once per 10 minutes), so another tool is probably logging in as {} on platform {} too",
                    rfc3339(last),
                    self.p.username,
                    self.p.platform
                )),
            }
        }
        Err(self
            .fail_with(e, cause, true, superseded, |entry| {
                if let Some(s) = &mut entry.session {
                    s.refresh_token = None;
                    s.refresh_expires_at = None;
                }
            })
            .await)
    }

    async fn remove_session(&self, message: String) -> Step {
        let entry = self
            .persist(|e| {
                e.session = None;
                e.failure = None;
            })
            .await
            .map_err(|cache| Failed {
                message: format!("{message}; but {cache}"),
                entry: Entry::default(),
                error: None,
            })?;
        Ok((message, entry))
    }

    async fn logout(&mut self, client: &Client) -> Step {
        let entry = self.current().await?;
        let Some(mut session) = entry.session.clone() else {
            return self
                .remove_session(format!("{}: no session; nothing to log out", self.name()))
                .await;
        };
        let now = Utc::now();
        if !session.access_valid(now) {
            // With a live refresh token, refresh first so that the logout revokes it on the server
            // (otherwise it stays valid there until it expires).
            let Some(refresh_token) = session
                .refresh_token
                .clone()
                .filter(|_| session.refresh_valid(now))
            else {
                return self
                    .remove_session(format!(
                        "{}: the session had already expired; removed it locally",
                        self.name()
                    ))
                    .await;
            };
            self.hold().await;
            let call = client.refresh(self.p, &refresh_token).await;
            let at = call.log.at;
            match self.record(call) {
                Ok(grant) => {
                    session = session_from(grant, self.p, at);
                    self.store_session(session.clone()).await?;
                }
                Err(e) if e.is_invalid_grant() => {
                    return self
                        .remove_session(format!(
                            "{}: the server had already ended the session ({}); removed it locally",
                            self.name(),
                            e.what()
                        ))
                        .await;
                }
                Err(e) => return Err(self.fail_http(e, false, |_| {}).await),
            }
        }
        self.hold().await;
        let call = client
            .logout(
                self.p,
                &session.access_token,
                session.refresh_token.as_ref(),
            )
            .await;
        match self.record(call) {
            Ok(()) => {
                self.remove_session(format!("{}: logged out", self.name()))
                    .await
            }
            Err(e) if e.session_gone() => {
                self.remove_session(format!(
                    "{}: the server had already ended the session ({}); removed it locally",
                    self.name(),
                    e.what()
                ))
                .await
            }
            Err(e) => Err(self.fail_http(e, false, |_| {}).await),
        }
    }
}

/// The name of an impersonation's own row and cache entry: `NAME>USER`.
pub fn sudo_name(profile: &str, user: &str) -> String {
    format!("{profile}>{user}")
}

/// The profile an impersonation acts through: the admin's instance, platform and client, as `user`,
/// with no password source (a new one comes only from another sudo) and nothing automatic.
pub fn sudo_profile(base: &Profile, user: &str) -> Profile {
    Profile {
        name: sudo_name(&base.name, user),
        username: user.to_string(),
        password: PasswordSource::Prompt,
        auto_refresh: false,
        relogin: false,
        ..base.clone()
    }
}

impl Engine {
    /// A live check of the profile's session: `GET /ping`, `/me`, server info and server time,
    /// concurrently. A session that Sugar no longer accepts is marked as such in the cache.
    pub async fn check(&self, p: &Profile) -> (Outcome, Option<CheckReport>) {
        let permit = self.acquire_n(p, CHECK_REQUESTS).await;
        self.check_holding(p, permit).await
    }

    /// [`Engine::check`] with its places in the bounds already held ([`Engine::acquire_n`] with
    /// [`CHECK_REQUESTS`]; the screen waits for them separately, so that a queued check can be
    /// withdrawn).
    pub async fn check_holding(
        &self,
        p: &Profile,
        permit: Permit,
    ) -> (Outcome, Option<CheckReport>) {
        let mut requests = Vec::new();
        let entry = self.current(&p.name).await.unwrap_or_default();
        let now = Utc::now();
        let done = |ok, message: String, entry: Entry, requests, error| Outcome {
            name: p.name.clone(),
            op: Op::Refresh,
            ok,
            state: entry.state(Utc::now()),
            message,
            entry,
            requests,
            error,
        };
        let session = own_session(&entry, p);
        let Some(session) = session.filter(|s| s.access_valid(now)) else {
            let msg = format!(
                "{}: check: no active session to check: log in first",
                p.name
            );
            return (done(false, msg, entry, requests, None), None);
        };
        let client = match self.client(p) {
            Ok(c) => c,
            Err(msg) => {
                return (
                    done(
                        false,
                        format!("{}: check failed: {msg}", p.name),
                        entry,
                        requests,
                        None,
                    ),
                    None,
                );
            }
        };
        let token = &session.access_token;
        let (ping, me, info, time) = tokio::join!(
            client.ping(p, token),
            client.me(p, token),
            client.server_info(p, token),
            client.server_time(p, token)
        );
        drop(permit);
        let latency_ms = ping.log.latency_ms;
        let time_log = time.log.clone();
        requests.extend([ping.log, me.log, info.log, time.log]);
        let first_error = [
            ping.result.err(),
            me.result.as_ref().err().cloned(),
            info.result.as_ref().err().cloned(),
        ]
        .into_iter()
        .flatten()
        .next();
        if let Some(e) = first_error {
            if e.session_gone() {
                let message = format!(
                    "{}: superseded: Sugar no longer accepts this session ({}) although it had {} left: {}",
                    p.name,
                    e.what(),
                    format_duration(remaining(session.expires_at, now)),
                    superseded_reason(p)
                );
                let m = message.clone();
                let entry = self
                    .persist(&p.name, move |e| {
                        if let Some(s) = &mut e.session {
                            s.refresh_token = None;
                            s.refresh_expires_at = None;
                        }
                        e.failure = Some(Failure {
                            at: Utc::now(),
                            op: Op::Refresh,
                            message: m,
                            needs_login: true,
                            superseded: true,
                        });
                    })
                    .await
                    .unwrap_or(entry);
                return (
                    done(false, message, entry, requests, Some(Box::new(e))),
                    None,
                );
            }
            let message = e.to_string();
            return (
                done(false, message, entry, requests, Some(Box::new(e))),
                None,
            );
        }
        let me = me.result.expect("checked above");
        let info = info.result.expect("checked above");
        // The server's clock against the local clock at the middle of the request.
        let skew_s = time.result.ok().map(|server| {
            let mid = time_log.at + TimeDelta::milliseconds(time_log.latency_ms as i64 / 2);
            (server.with_timezone(&Utc) - mid).num_seconds()
        });
        let report = CheckReport {
            at: now,
            user_name: me.user_name,
            full_name: me.full_name,
            admin: me.admin,
            flavor: info.flavor,
            version: info.version,
            skew_s,
            latency_ms,
        };
        let mut message = format!("{}: alive; {}", p.name, report.summary());
        if let Some(w) = report.skew_warning() {
            message.push_str(&format!("; warning: {w}"));
        }
        (done(true, message, entry, requests, None), Some(report))
    }

    /// With the profile's (admin) session, a session as `user` on the same platform, stored under
    /// `NAME>USER`. It has no refresh token: it ends when its access token does.
    pub async fn sudo(&self, p: &Profile, user: &str) -> Outcome {
        let permit = self.acquire(p).await;
        self.sudo_holding(p, user, permit).await
    }

    /// [`Engine::sudo`] with a place in the bounds already held (see [`Engine::check_holding`]).
    pub async fn sudo_holding(&self, p: &Profile, user: &str, permit: Permit) -> Outcome {
        let target = sudo_profile(p, user);
        let entry = self.current(&p.name).await.unwrap_or_default();
        let now = Utc::now();
        let fail = |message: String, requests, error| Outcome {
            name: target.name.clone(),
            op: Op::Login,
            ok: false,
            state: State::Error,
            message,
            entry: Entry::default(),
            requests,
            error,
        };
        let session = own_session(&entry, p);
        let Some(session) = session.filter(|s| s.access_usable(now)) else {
            return fail(
                format!(
                    "{}: sudo failed: {} has no active session: log in first",
                    target.name, p.name
                ),
                vec![],
                None,
            );
        };
        let client = match self.client(p) {
            Ok(c) => c,
            Err(msg) => return fail(format!("{}: sudo failed: {msg}", target.name), vec![], None),
        };
        let call = client.sudo(p, &session.access_token, user).await;
        drop(permit);
        let at = call.log.at;
        let requests = vec![call.log];
        match call.result {
            Err(mut e) => {
                e.profile = target.name.clone();
                fail(e.to_string(), requests, Some(Box::new(e)))
            }
            Ok(grant) => {
                let mut session = session_from(grant, &target, at);
                session.refresh_token = None;
                session.refresh_expires_at = None;
                let stored = self
                    .persist(&target.name, move |e| {
                        e.session = Some(session);
                        e.failure = None;
                    })
                    .await;
                match stored {
                    Ok(entry) => {
                        let now = Utc::now();
                        let message = format!(
                            "{}: impersonating {user} through {}'s admin session; {}",
                            target.name,
                            p.name,
                            describe(&entry, now)
                        );
                        Outcome {
                            name: target.name,
                            op: Op::Login,
                            ok: true,
                            state: entry.state(now),
                            message,
                            entry,
                            requests,
                            error: None,
                        }
                    }
                    Err(cache) => fail(
                        format!("{}: sudo succeeded but {cache}", target.name),
                        requests,
                        None,
                    ),
                }
            }
        }
    }
}

/// The cached session, if it belongs to this profile's instance, user and platform (a profile
/// whose url, user or platform changed in the file must not use another identity's tokens).
pub fn own_session(entry: &Entry, p: &Profile) -> Option<Session> {
    entry
        .session
        .clone()
        .filter(|s| s.belongs_to(p.url.as_str(), &p.username, &p.platform))
}

/// A refresh that did not move the refresh token's expiry shows that the session is capped
/// (Sugar's `max_session_lifetime`): from then on it ends at that instant, whatever is refreshed.
fn hard_end(before: &Session, after: &Session) -> Option<DateTime<Utc>> {
    match (before.refresh_expires_at, after.refresh_expires_at) {
        (Some(old), Some(new)) if new <= old + TimeDelta::seconds(2) => Some(new),
        _ => before.hard_end,
    }
}

fn session_from(grant: Grant, p: &Profile, at: DateTime<Utc>) -> Session {
    // The client refuses lifetimes out of 1 s to MAX_LIFETIME_S; should one come through anyway,
    // it is cut to that range here rather than overflow (an instant that cannot be had is `at`:
    // expired at once).
    let after = |seconds: i64| {
        TimeDelta::try_seconds(seconds.clamp(0, crate::sugar::MAX_LIFETIME_S))
            .and_then(|lifetime| at.checked_add_signed(lifetime))
            .unwrap_or(at)
    };
    Session {
        access_token: grant.access_token,
        refresh_token: grant.refresh_token,
        download_token: grant.download_token,
        obtained_at: at,
        expires_at: after(grant.expires_in),
        refresh_expires_at: grant.refresh_expires_in.map(after),
        platform: p.platform.clone(),
        username: p.username.clone(),
        url: p.url.as_str().to_string(),
        hard_end: None,
    }
}

/// Why a session that Sugar rejects before its expiry is gone, and how to avoid it.
fn superseded_reason(p: &Profile) -> String {
    format!(
        "another login as {} on platform {} ended it (Sugar keeps one session per user and platform); give each integration a platform of its own",
        p.username, p.platform
    )
}

/// `access token valid for 59m 59s (until 2026-...Z); refresh token for 14d 00h`.
pub fn describe(entry: &Entry, now: DateTime<Utc>) -> String {
    let Some(s) = &entry.session else {
        return "no session".into();
    };
    let mut out = format!(
        "access token valid for {} (until {})",
        format_duration(remaining(s.expires_at, now)),
        rfc3339(s.expires_at)
    );
    match s.refresh_expires_at {
        Some(r) if s.refresh_token.is_some() => out.push_str(&format!(
            "; refresh token for {} (until {})",
            format_duration(remaining(r, now)),
            rfc3339(r)
        )),
        _ => out.push_str("; no refresh token"),
    }
    out
}
