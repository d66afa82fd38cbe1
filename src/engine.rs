//! Runs operations on sessions: bounded concurrency, password sources, and the cache protocol.
//!
//! Shared by the shell commands and the screen's runtime. The protocol (see [`crate::store`]):
//! an operation that rotates or ends a session takes the identity's lock first, re-reads the
//! entry under it, makes sure the cache can be written ([`Store::prepare`]) before sending
//! anything, and stores its result before reporting it. A check or another change computed
//! without the lock is applied only if the entry still has the generation it was computed from.
//! Results that arrive together are written together (one write for many).

use crate::config::{PasswordSource, Profile, Settings};
use crate::identity::SessionKey;
use crate::outcome::{Failure, FailureKind};
use crate::secret::Secret;
use crate::session::{
    CheckReport, Entry, Op, RELOGIN_INTERVAL, RequestLog, Session, State, format_duration,
    remaining, rfc3339,
};
use crate::store::{Applied, Cache, Change, Expect, FileStamp, LockGuard, Store, StoreError};
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
    /// The session's cache entry after the operation (as persisted; when the result could not be
    /// stored, the entry as it now stands for this process, with the failure saying so).
    pub entry: Entry,
    /// The state at the time the outcome was made.
    pub state: State,
    /// The requests sent, in order.
    pub requests: Vec<RequestLog>,
    /// What went wrong, when something did.
    pub failure: Option<Failure>,
}

/// A place in both concurrency bounds (global and per instance host).
pub struct Permit {
    _host: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

type Ack = oneshot::Sender<Result<Applied, String>>;

/// The engine: one per process.
pub struct Engine {
    store: Store,
    clients: Mutex<HashMap<NetSettings, Client>>,
    global: Arc<Semaphore>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    per_host: usize,
    global_max: usize,
    persist_tx: mpsc::UnboundedSender<(Change, Ack)>,
    /// The cache as last read, with the file version it was read from: re-read only when the file changed.
    snapshot: Arc<Mutex<Option<Snapshot>>>,
}

/// A parsed cache and the version of the file it was read from.
type Snapshot = (FileStamp, Arc<Cache>);

/// A usable access token handed out by [`Engine::token`], with the identity's lock: while it is
/// held, no other process can rotate the session, so the token printed is the stored, current one.
pub struct Token {
    pub session: Session,
    /// What was done to get it (a refresh or a login), for stderr.
    pub note: Option<String>,
    _lock: LockGuard,
}

/// Why [`Engine::token`] has no token to hand out.
#[derive(Debug)]
pub enum NoToken {
    /// A login is needed and no non-interactive password source can provide it.
    NeedsLogin(String),
    /// Something failed; the message says what.
    Failed(String),
}

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

    /// Runs `op` (login, refresh or logout) on `p` holding `permit`. `password` is used by a login
    /// instead of the profile's source.
    pub async fn execute(
        &self,
        p: &Profile,
        op: Op,
        password: Option<Secret>,
        permit: Permit,
    ) -> Outcome {
        self.execute_with(p, op, password, permit, None).await
    }

    /// [`Engine::execute`]; `held`: the identity's lock, when the caller holds it already.
    async fn execute_with(
        &self,
        p: &Profile,
        op: Op,
        password: Option<Secret>,
        permit: Permit,
        held: Option<&LockGuard>,
    ) -> Outcome {
        let key = p.session_key();
        // What this process knew before waiting for the identity's lock: if another process
        // stores a newer session meanwhile, a refresh uses that instead of a stale refresh token.
        let seen = self.current(&key).await.unwrap_or_default();
        let mut run = Run {
            engine: self,
            p,
            key: key.clone(),
            op,
            requests: Vec::new(),
            seen,
            permit: Mutex::new(Some(permit)),
        };
        // The place in the bounds stays held while waiting (boundedly) for another process: a
        // request that has its place is the next to be sent, as the bounds' queue promised.
        let lock = match held {
            Some(_) => Ok(None),
            None => self.lock_key(&key).await.map(Some),
        };
        let result = match lock {
            Err(msg) => Err(run.unstored(Failure::local(op, Utc::now(), msg))),
            Ok(_lock) => match (self.client(p), op) {
                (Err(msg), _) => Err(run.fail(Failure::local(op, Utc::now(), msg)).await),
                (Ok(client), Op::Login | Op::Relogin) => run.login(&client, password).await,
                (Ok(client), Op::Refresh) => run.refresh(&client).await,
                (Ok(client), Op::Logout) => run.logout(&client).await,
                (Ok(_), Op::Check | Op::Sudo) => Err(run.unstored(Failure::local(
                    op,
                    Utc::now(),
                    "not an operation of execute (an internal error)",
                ))),
            },
        };
        run.release();
        let op = run.op;
        let (ok, message, entry, failure) = match result {
            Ok((message, entry)) => (true, message, entry, None),
            Err(Failed {
                message,
                entry,
                failure,
            }) => (false, message, entry, Some(failure)),
        };
        let state = entry.state(Utc::now());
        tracing::info!(
            profile = %p.name,
            %op,
            ok,
            state = state.as_str(),
            kind = failure.as_ref().map(|f| f.kind.as_str()),
            label = failure.as_ref().and_then(|f| f.label.as_deref()),
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
            failure,
        }
    }

    /// Applies a change to an entry in the cache (under the file lock, merged with what other
    /// processes wrote, if its expectation holds) and says what became of it.
    pub async fn persist(&self, change: Change) -> Result<Applied, String> {
        let (ack, rx) = oneshot::channel();
        self.persist_tx
            .send((change, ack))
            .map_err(|_| "the cache writer has stopped".to_string())?;
        rx.await
            .map_err(|_| "the cache writer has stopped".to_string())?
    }

    /// The current cache entry of a session, read from disk (another process may have changed it).
    pub async fn current(&self, key: &SessionKey) -> Result<Entry, String> {
        let cache = self.cache().await?;
        Ok(cache.entry_or_default(key))
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
            let (cache, report) = store.load_shared().map_err(|e| e.to_string())?;
            if let Some(notice) = report.notice() {
                tracing::warn!("{notice}");
            }
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

    /// Takes the identity's cross-process lock (a bounded wait for another process).
    pub async fn lock_key(&self, key: &SessionKey) -> Result<LockGuard, String> {
        let store = self.store.clone();
        let key = key.clone();
        tokio::task::spawn_blocking(move || store.lock_key(&key))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Makes sure the cache can be written before a request that rotates or ends a session.
    async fn prepare(&self) -> Result<(), StoreError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.prepare()).await {
            Ok(r) => r,
            Err(e) => Err(StoreError::Io {
                path: self.store.dir().to_path_buf(),
                what: "cannot prepare the token cache",
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }

    /// The whole cache, read from disk.
    pub fn load_cache(&self) -> Result<Cache, StoreError> {
        self.store.load().map(|(c, _)| c)
    }

    /// A usable access token for `p`, following the protocol: the identity's lock is taken before
    /// deciding, the entry re-read under it (another process may have refreshed meanwhile), then
    /// the stored token is handed out if it is usable and not due, else the session is refreshed,
    /// else (through a non-interactive password source) logged in again; the result is stored
    /// before it is handed out, and the lock is held until the caller is done with the token.
    pub async fn token(&self, p: &Profile) -> Result<Token, NoToken> {
        let key = p.session_key();
        // What this process saw before waiting for the lock: a session stored by another process
        // meanwhile is handed out as it is (it was just refreshed or logged in), not refreshed again.
        let seen = self.current(&key).await.unwrap_or_default();
        let lock = self
            .lock_key(&key)
            .await
            .map_err(|e| NoToken::Failed(format!("{}: no token: {e}", p.name)))?;
        let now = Utc::now();
        let entry = self
            .current(&key)
            .await
            .map_err(|e| NoToken::Failed(format!("{}: {e}", p.name)))?;
        let stored_meanwhile = entry.failure.is_none()
            && match (&seen.session, &entry.session) {
                (Some(before), Some(after)) => after.obtained_at > before.obtained_at,
                (None, Some(_)) => true,
                _ => false,
            };
        let due = p.auto_refresh
            && !stored_meanwhile
            && crate::session::refresh_due(&p.name, &entry, p.refresh_before, now);
        // A session the cache already knows Sugar ended (superseded) is never handed out.
        let known_dead = entry.failure.as_ref().is_some_and(|f| f.superseded());
        if let Some(s) = entry.usable_session(now).filter(|_| !known_dead)
            && !due
        {
            return Ok(Token {
                session: s.clone(),
                note: None,
                _lock: lock,
            });
        }
        let mut notes = Vec::new();
        if entry.session.as_ref().is_some_and(|s| s.refresh_valid(now)) {
            let permit = self.acquire(p).await;
            let o = self
                .execute_with(p, Op::Refresh, None, permit, Some(&lock))
                .await;
            if let Some(s) = o.entry.usable_session(Utc::now()).filter(|_| o.ok) {
                return Ok(Token {
                    session: s.clone(),
                    note: Some(o.message),
                    _lock: lock,
                });
            }
            let needs_login = o.failure.as_ref().is_some_and(|f| f.needs_login);
            if !needs_login {
                // The refresh failed for another reason (the network, say): the stored token
                // serves while it is usable.
                let now = Utc::now();
                let stored = self.current(&key).await.unwrap_or_default();
                if let Some(s) = stored.usable_session(now) {
                    return Ok(Token {
                        session: s.clone(),
                        note: Some(o.message),
                        _lock: lock,
                    });
                }
                return Err(NoToken::Failed(o.message));
            }
            notes.push(o.message);
        }
        if !p.password.is_non_interactive() {
            notes.push(format!(
                "{}: a login is needed, and the profile has no non-interactive password source (password_env, password_cmd or password): run `sugar-sessions login {}`",
                p.name, p.name
            ));
            return Err(NoToken::NeedsLogin(notes.join("\n")));
        }
        let permit = self.acquire(p).await;
        let o = self
            .execute_with(p, Op::Login, None, permit, Some(&lock))
            .await;
        match o.entry.usable_session(Utc::now()).filter(|_| o.ok) {
            Some(s) => Ok(Token {
                session: s.clone(),
                note: Some(o.message),
                _lock: lock,
            }),
            None => {
                notes.push(o.message);
                Err(NoToken::Failed(notes.join("\n")))
            }
        }
    }
}

/// While results keep coming, the cache is written at most once per this interval: every write
/// rewrites the whole file, so writing once per result would cost O(N²) over a bulk action.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(25);

/// Writes queued changes; all changes waiting when a write starts go into that one write. A change
/// that comes after a quiet spell is written at once; one that comes within [`MIN_WRITE_INTERVAL`]
/// of the previous write waits for the rest of the interval, gathering others.
async fn persister(store: Store, mut rx: mpsc::UnboundedReceiver<(Change, Ack)>) {
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
        let (changes, acks): (Vec<Change>, Vec<Ack>) = batch.into_iter().unzip();
        let result = tokio::task::spawn_blocking(move || store.apply(changes)).await;
        match result {
            Ok(Ok(applied)) => {
                tracing::debug!(changes = applied.len(), "token cache written");
                for (ack, applied) in acks.into_iter().zip(applied) {
                    let _ = ack.send(Ok(applied));
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "token cache not written");
                for ack in acks {
                    let _ = ack.send(Err(format!("the token cache could not be written: {e}")));
                }
            }
            Err(_) => {} // the acks are dropped: callers see "stopped"
        }
    }
}

struct Failed {
    message: String,
    entry: Entry,
    failure: Failure,
}

type Step = Result<(String, Entry), Failed>;

struct Run<'a> {
    engine: &'a Engine,
    p: &'a Profile,
    key: SessionKey,
    op: Op,
    requests: Vec<RequestLog>,
    /// The entry as read before the identity's lock was taken.
    seen: Entry,
    /// The place in the concurrency bounds: held for requests, given up while a result is stored
    /// (writes are coalesced; the network need not wait for them).
    permit: Mutex<Option<Permit>>,
}

impl Run<'_> {
    fn name(&self) -> &str {
        &self.p.name
    }

    /// Gives up the place in the concurrency bounds (the identity's lock stays held).
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

    /// Before a request that rotates or ends the session: the cache must be known writable, and
    /// a place in the bounds held. Nothing is sent otherwise.
    async fn ready_to_send(&self) -> Result<(), Failed> {
        if let Err(e) = self.engine.prepare().await {
            let failure = Failure::local(
                self.op,
                Utc::now(),
                format!("nothing was sent, because the token cache could not keep the result: {e}"),
            );
            return Err(self.unstored(failure));
        }
        self.hold().await;
        Ok(())
    }

    /// Stores a change of the entry (this run holds the identity's lock), without holding a place
    /// in the bounds meanwhile.
    async fn persist(
        &self,
        change: impl FnOnce(&mut Entry) + Send + 'static,
    ) -> Result<Entry, String> {
        self.release();
        let applied = self
            .engine
            .persist(Change {
                key: self.key.clone(),
                label: self.p.name.clone(),
                expect: Expect::Held,
                apply: Box::new(change),
            })
            .await?;
        match applied {
            Applied::Done(e) | Applied::Lost(e) => Ok(e),
        }
    }

    fn record<T>(&mut self, call: Call<T>) -> Result<T, Box<SugarError>> {
        self.requests.push(call.log);
        call.result.map_err(Box::new)
    }

    /// A failure that is not stored (the cache or the lock could not be had, and nothing was
    /// sent): the session stays as it was; the outcome says what failed.
    fn unstored(&self, failure: Failure) -> Failed {
        let entry = self.seen.clone();
        Failed {
            message: failure.render(self.name()),
            entry,
            failure,
        }
    }

    /// Stores a failure; `change` adjusts the session (for example drops a rejected refresh token).
    async fn fail_with(
        &self,
        failure: Failure,
        change: impl FnOnce(&mut Entry) + Send + 'static,
    ) -> Failed {
        let message = failure.render(self.name());
        let f = failure.clone();
        match self
            .persist(move |e| {
                change(e);
                e.failure = Some(f);
            })
            .await
        {
            Ok(entry) => Failed {
                message,
                entry,
                failure,
            },
            Err(cache) => {
                let mut failed = self.unstored(failure.clone());
                failed.message = format!("{message}; and {cache}");
                failed.entry.failure = Some(failure);
                failed
            }
        }
    }

    async fn fail(&self, failure: Failure) -> Failed {
        self.fail_with(failure, |_| {}).await
    }

    /// Stores a new session. When that fails after the server answered, the session is lost: the
    /// outcome says so and names it, and its state is an error, never "active".
    async fn store_session(&self, session: Session) -> Result<Entry, Failed> {
        self.persist(move |e| {
            e.session = Some(session);
            e.failure = None;
        })
        .await
        .map_err(|cache| {
            let failure = Failure::local(
                self.op,
                Utc::now(),
                format!(
                    "Sugar answered, but the new session of {} could not be stored ({cache}): it is lost, and the one before it has ended",
                    self.key
                ),
            )
            .needing_login()
            .with_hint("make the state directory writable (or free space), then log in again");
            // Shown as it is: the session is gone, and this process knows it.
            let mut failed = self.unstored(failure.clone());
            failed.entry.session = None;
            failed.entry.failure = Some(failure);
            failed
        })
    }

    async fn current(&self) -> Result<Entry, Failed> {
        self.engine.current(&self.key).await.map_err(|e| {
            self.unstored(Failure::local(
                self.op,
                Utc::now(),
                format!("cannot read the token cache: {e}"),
            ))
        })
    }

    async fn login(&mut self, client: &Client, password: Option<Secret>) -> Step {
        let password = match password {
            Some(pw) => pw,
            None => match crate::password::resolve_password(self.p).await {
                Ok(Some(pw)) => pw,
                Ok(None) => {
                    let f = Failure::local(
                        self.op,
                        Utc::now(),
                        "no password: the profile has no password_env, password_cmd or password, and there is no terminal to ask on",
                    );
                    return Err(self.fail(f.needing_login()).await);
                }
                Err(why) => {
                    let f = Failure::local(self.op, Utc::now(), why);
                    return Err(self.fail(f.needing_login()).await);
                }
            },
        };
        self.ready_to_send().await?;
        let call = client.login(self.p, &password).await;
        drop(password);
        let at = call.log.at;
        match self.record(call) {
            Ok(grant) => {
                let session = match session_from(grant, self.p, at) {
                    Ok(s) => s,
                    Err(f) => return Err(self.fail(f.with_op(self.op)).await),
                };
                let entry = self.store_session(session).await?;
                let done = if self.op == Op::Relogin {
                    "logged in again"
                } else {
                    "logged in"
                };
                Ok((
                    format!("{}: {done}; {}", self.name(), describe(&entry, Utc::now())),
                    entry,
                ))
            }
            Err(e) => Err(self.fail(e.failure(self.op, Utc::now())).await),
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
        let Some(session) = entry.session.clone() else {
            let f = Failure::local(self.op, now, "no session: log in first");
            return Err(self.fail(f.needing_login()).await);
        };
        let Some(refresh_token) = session
            .refresh_token
            .clone()
            .filter(|_| session.refresh_valid(now))
        else {
            let f = Failure::local(
                self.op,
                now,
                "the refresh token has expired (or there is none): log in again",
            );
            return Err(self.fail(f.needing_login()).await);
        };
        self.ready_to_send().await?;
        let call = client.refresh(self.p, &refresh_token).await;
        let at = call.log.at;
        match self.record(call) {
            Ok(grant) => {
                let mut fresh = match session_from(grant, self.p, at) {
                    Ok(s) => s,
                    Err(f) => return Err(self.fail(f.with_op(self.op)).await),
                };
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
            Err(e) => Err(self.fail(e.failure(self.op, Utc::now())).await),
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
        let expired = e
            .failure(self.op, now)
            .message
            .to_ascii_lowercase()
            .contains("expired");
        // The last login or refresh sent with this session may have reached Sugar (which then
        // rotated the refresh token) without its answer reaching us: then the rejection is ours.
        let lost = entry.failure.as_ref().filter(|f| {
            matches!(f.kind, FailureKind::Timeout | FailureKind::Network)
                && matches!(f.op, Op::Login | Op::Refresh | Op::Relogin)
        });
        // Rejected although it had not expired, and not for a lost answer of ours: another login
        // on this user and platform ended it.
        let superseded = !expired && session.refresh_valid(now) && lost.is_none();
        let mut failure = e.failure(self.op, now).needing_login();
        if let Some(lost) = lost {
            failure.message.push_str(&format!(
                "; the answer to the {} at {} never arrived ({}), so Sugar probably rotated the refresh token then",
                lost.op,
                rfc3339(lost.at),
                lost.what()
            ));
            failure.hint = Some("log in again".into());
        }
        if superseded {
            failure.kind = FailureKind::Superseded;
            failure.message = format!("{} ({})", superseded_reason(self.p), e.what());
            failure.http_status = None;
            failure.label = None;
        }
        if self.p.relogin && self.p.password.is_non_interactive() {
            match entry.relogin_at.filter(|t| now - *t < RELOGIN_INTERVAL) {
                None => {
                    let why = e.what();
                    self.op = Op::Relogin;
                    let (_, entry) = self.login(client, None).await?;
                    let entry = self
                        .persist(move |e| e.relogin_at = Some(now))
                        .await
                        .unwrap_or(entry);
                    let because = if superseded {
                        "it was superseded by another login"
                    } else {
                        "it was rejected"
                    };
                    return Ok((
                        format!(
                            "{}: logged in again, because the refresh token could not be used ({because}: {why}); {}",
                            self.name(),
                            describe(&entry, Utc::now())
                        ),
                        entry,
                    ));
                }
                Some(last) => failure.message.push_str(&format!(
                    "; not logging in again automatically: that already happened at {} (at most once per 10 minutes), so another tool is probably logging in as {} on platform {} too",
                    rfc3339(last),
                    self.p.username,
                    self.p.platform
                )),
            }
        }
        Err(self
            .fail_with(failure, |entry| {
                if let Some(s) = &mut entry.session {
                    s.refresh_token = None;
                    s.refresh_expires_at = None;
                }
            })
            .await)
    }

    async fn remove_session(&self, message: String) -> Step {
        match self
            .persist(|e| {
                e.session = None;
                e.failure = None;
            })
            .await
        {
            Ok(entry) => Ok((message, entry)),
            Err(cache) => {
                let f = Failure::local(
                    self.op,
                    Utc::now(),
                    format!(
                        "the session was ended, but the token cache could not record it ({cache})"
                    ),
                );
                let mut failed = self.unstored(f.clone());
                failed.message = format!("{message}; but {cache}");
                failed.entry.session = None;
                failed.entry.failure = Some(f);
                Err(failed)
            }
        }
    }

    async fn logout(&mut self, client: &Client) -> Step {
        let entry = self.current().await?;
        let Some(mut session) = entry.session.clone() else {
            return self
                .remove_session(format!("{}: no session; nothing to log out", self.name()))
                .await;
        };
        let mut refreshed = false;
        loop {
            let now = Utc::now();
            if !session.access_valid(now) {
                // With a live refresh token, refresh first so that the logout revokes it on the
                // server (otherwise it stays valid there until it expires).
                let Some(refresh_token) = session
                    .refresh_token
                    .clone()
                    .filter(|_| session.refresh_valid(now) && !refreshed)
                else {
                    return self
                        .remove_session(format!(
                            "{}: the session had already expired; removed it locally",
                            self.name()
                        ))
                        .await;
                };
                self.ready_to_send().await?;
                let call = client.refresh(self.p, &refresh_token).await;
                let at = call.log.at;
                refreshed = true;
                match self.record(call) {
                    Ok(grant) => {
                        session = match session_from(grant, self.p, at) {
                            Ok(s) => s,
                            Err(f) => return Err(self.fail(f.with_op(self.op)).await),
                        };
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
                    Err(e) => return Err(self.fail(e.failure(self.op, Utc::now())).await),
                }
            }
            self.ready_to_send().await?;
            let call = client
                .logout(
                    self.p,
                    &session.access_token,
                    session.refresh_token.as_ref(),
                )
                .await;
            return match self.record(call) {
                Ok(()) => {
                    self.remove_session(format!("{}: logged out", self.name()))
                        .await
                }
                // Sugar's clock says the access token has expired although ours did not: the
                // refresh token may still live there. Refresh (once), then log out for real.
                Err(e) if e.access_expired() && !refreshed => {
                    session.expires_at = Utc::now();
                    continue;
                }
                Err(e) if e.session_gone() => {
                    self.remove_session(format!(
                        "{}: the server had already ended the session ({}); removed it locally",
                        self.name(),
                        e.what()
                    ))
                    .await
                }
                Err(e) => Err(self.fail(e.failure(self.op, Utc::now())).await),
            };
        }
    }
}

/// The name of an impersonation's own row: `NAME>USER`.
pub fn sudo_name(profile: &str, user: &str) -> String {
    format!("{profile}>{user}")
}

/// The profile an impersonation acts through: the admin's instance, platform and client, as `user`,
/// with no password source (a new one comes only from another sudo) and nothing automatic.
pub fn sudo_profile(base: &Profile, user: &str) -> Profile {
    Profile {
        name: sudo_name(&base.name, user),
        username: user.to_string(),
        admin: Some(base.username.clone()),
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
    ///
    /// The check does not take the identity's lock to send (it rotates nothing). What it finds is
    /// stored only if the entry still holds the session it checked: a 401 on a token that another
    /// process has just replaced changes nothing, and the newer session is checked instead.
    pub async fn check_holding(
        &self,
        p: &Profile,
        permit: Permit,
    ) -> (Outcome, Option<CheckReport>) {
        let key = p.session_key();
        let mut requests = Vec::new();
        let mut permit = Some(permit);
        let done = |ok, message: String, entry: Entry, requests, failure| Outcome {
            name: p.name.clone(),
            op: Op::Check,
            ok,
            state: entry.state(Utc::now()),
            message,
            entry,
            requests,
            failure,
        };
        for attempt in 0..2 {
            let entry = self.current(&key).await.unwrap_or_default();
            let now = Utc::now();
            let Some(session) = entry.session.clone().filter(|s| s.access_valid(now)) else {
                let f = Failure::local(Op::Check, now, "no active session to check: log in first");
                return (
                    done(false, f.render(&p.name), entry, requests, Some(f)),
                    None,
                );
            };
            let client = match self.client(p) {
                Ok(c) => c,
                Err(msg) => {
                    let f = Failure::local(Op::Check, now, msg);
                    return (
                        done(false, f.render(&p.name), entry, requests, Some(f)),
                        None,
                    );
                }
            };
            let held = match permit.take() {
                Some(p) => p,
                None => self.acquire_n(p, CHECK_REQUESTS).await,
            };
            let token = &session.access_token;
            let (ping, me, info, time) = tokio::join!(
                client.ping(p, token),
                client.me(p, token),
                client.server_info(p, token),
                client.server_time(p, token)
            );
            drop(held);
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
                if e.access_expired() || (e.session_gone() && Utc::now() >= session.expires_at) {
                    // Expired, not ended: the refresh token is still good; nothing is stored.
                    let f = e
                        .failure(Op::Check, Utc::now())
                        .with_hint("the access token had expired when Sugar saw it (the server's clock may run ahead of this machine's): a refresh renews it");
                    return (
                        done(false, f.render(&p.name), entry, requests, Some(f)),
                        None,
                    );
                }
                if !e.session_gone() {
                    let f = e.failure(Op::Check, Utc::now());
                    return (
                        done(false, f.render(&p.name), entry, requests, Some(f)),
                        None,
                    );
                }
                let mut f = e.failure(Op::Check, Utc::now()).needing_login();
                f.kind = FailureKind::Superseded;
                f.message = format!(
                    "Sugar no longer accepts this session ({}) although it had {} left: {}",
                    e.what(),
                    format_duration(remaining(session.expires_at, now)),
                    superseded_reason(p)
                );
                f.http_status = None;
                f.label = None;
                // Under the identity's lock, so that a refresh in flight in another process
                // finishes (and stores its new session) before this is compared.
                let lock = match self.lock_key(&key).await {
                    Ok(l) => l,
                    Err(why) => {
                        let message = format!("{}; not recorded: {why}", f.render(&p.name));
                        return (done(false, message, entry, requests, Some(f)), None);
                    }
                };
                let stored = f.clone();
                let applied = self
                    .persist(Change {
                        key: key.clone(),
                        label: p.name.clone(),
                        expect: Expect::Generation(entry.generation),
                        apply: Box::new(move |e: &mut Entry| {
                            if let Some(s) = &mut e.session {
                                s.refresh_token = None;
                                s.refresh_expires_at = None;
                            }
                            e.failure = Some(stored);
                        }),
                    })
                    .await;
                drop(lock);
                match applied {
                    Ok(Applied::Done(entry)) => {
                        return (
                            done(false, f.render(&p.name), entry, requests, Some(f)),
                            None,
                        );
                    }
                    Ok(Applied::Lost(_)) if attempt == 0 => {
                        tracing::info!(profile = %p.name, "checked a session another process had just replaced; checking the new one");
                        continue;
                    }
                    Ok(Applied::Lost(now_entry)) => {
                        let message = format!(
                            "{}: check: the session was replaced by another process while it was checked; nothing was changed",
                            p.name
                        );
                        return (done(true, message, now_entry, requests, None), None);
                    }
                    Err(cache) => {
                        let message = format!("{}; and {cache}", f.render(&p.name));
                        return (done(false, message, entry, requests, Some(f)), None);
                    }
                }
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
            // The session is alive: a failure recorded earlier no longer describes it.
            let mut entry = entry;
            if entry.failure.is_some() {
                let applied = self
                    .persist(Change {
                        key: key.clone(),
                        label: p.name.clone(),
                        expect: Expect::Generation(entry.generation),
                        apply: Box::new(|e: &mut Entry| e.failure = None),
                    })
                    .await;
                if let Ok(Applied::Done(e)) = applied {
                    entry = e;
                }
            }
            return (done(true, message, entry, requests, None), Some(report));
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// With the profile's (admin) session, a session as `user` on the same platform, stored under
    /// its own identity (shown as `NAME>USER`). It has no refresh token: it ends when its access
    /// token does.
    pub async fn sudo(&self, p: &Profile, user: &str) -> Outcome {
        let permit = self.acquire(p).await;
        self.sudo_holding(p, user, permit).await
    }

    /// [`Engine::sudo`] with a place in the bounds already held (see [`Engine::check_holding`]).
    pub async fn sudo_holding(&self, p: &Profile, user: &str, permit: Permit) -> Outcome {
        let target = sudo_profile(p, user);
        let key = target.session_key();
        let entry = self.current(&p.session_key()).await.unwrap_or_default();
        let before = self.current(&key).await.unwrap_or_default();
        let now = Utc::now();
        let outcome = |ok, message: String, entry: Entry, requests, failure| Outcome {
            name: target.name.clone(),
            op: Op::Sudo,
            ok,
            state: entry.state(Utc::now()),
            message,
            entry,
            requests,
            failure,
        };
        let fail = |f: Failure, requests| {
            outcome(
                false,
                f.render(&target.name),
                before.clone(),
                requests,
                Some(f),
            )
        };
        let Some(session) = entry.usable_session(now).cloned() else {
            let f = Failure::local(
                Op::Sudo,
                now,
                format!("{} has no active session: log in first", p.name),
            );
            return fail(f, vec![]);
        };
        let client = match self.client(p) {
            Ok(c) => c,
            Err(msg) => return fail(Failure::local(Op::Sudo, now, msg), vec![]),
        };
        // The impersonation's own session is replaced: its lock first, and a writable cache.
        drop(permit);
        let lock = match self.lock_key(&key).await {
            Ok(l) => l,
            Err(why) => return fail(Failure::local(Op::Sudo, now, why), vec![]),
        };
        if let Err(e) = self.prepare().await {
            let f = Failure::local(
                Op::Sudo,
                now,
                format!("nothing was sent, because the token cache could not keep the result: {e}"),
            );
            return fail(f, vec![]);
        }
        let permit = self.acquire(p).await;
        let call = client.sudo(p, &session.access_token, user).await;
        drop(permit);
        let at = call.log.at;
        let requests = vec![call.log];
        let grant = match call.result {
            Err(mut e) => {
                e.profile = target.name.clone();
                return fail(e.failure(Op::Sudo, Utc::now()), requests);
            }
            Ok(grant) => grant,
        };
        let mut session = match session_from(grant, &target, at) {
            Ok(s) => s,
            Err(f) => return fail(f.with_op(Op::Sudo), requests),
        };
        session.refresh_token = None;
        session.refresh_expires_at = None;
        let stored = self
            .persist(Change {
                key: key.clone(),
                label: target.name.clone(),
                expect: Expect::Held,
                apply: Box::new(move |e: &mut Entry| {
                    e.session = Some(session);
                    e.failure = None;
                }),
            })
            .await;
        drop(lock);
        match stored {
            Ok(Applied::Done(entry) | Applied::Lost(entry)) => {
                let now = Utc::now();
                let message = format!(
                    "{}: impersonating {user} through {}'s admin session; {}",
                    target.name,
                    p.name,
                    describe(&entry, now)
                );
                outcome(true, message, entry, requests, None)
            }
            Err(cache) => fail(
                Failure::local(
                    Op::Sudo,
                    Utc::now(),
                    format!("Sugar answered, but the session could not be stored: {cache}"),
                ),
                requests,
            ),
        }
    }
}

/// A refresh that did not move the refresh token's expiry although time passed shows that the
/// session is capped (Sugar's `max_session_lifetime`): from then on it ends at that instant. Only
/// a refresh 10 s or more after the previous grant that moved the expiry by less than 2 s counts;
/// a later refresh that moves it by 2 s or more clears it.
fn hard_end(before: &Session, after: &Session) -> Option<DateTime<Utc>> {
    let moved_little = TimeDelta::seconds(2);
    let long_enough = TimeDelta::seconds(10);
    match (before.refresh_expires_at, after.refresh_expires_at) {
        (Some(old), Some(new)) if new - old >= moved_little => None,
        (Some(old), Some(new)) if after.obtained_at - before.obtained_at >= long_enough => {
            let _ = old;
            Some(new)
        }
        _ => before.hard_end,
    }
}

/// The client refuses lifetimes out of range already; should one come through anyway, it is a
/// bad answer here too, never an overflow.
use crate::sugar::MAX_LIFETIME_S;

fn session_from(grant: Grant, p: &Profile, at: DateTime<Utc>) -> Result<Session, Failure> {
    let bad = |field: &str, value: i64| {
        Failure {
            kind: FailureKind::Protocol,
            ..Failure::local(
                Op::Login,
                at,
                format!(
                    "the server's {field} of {value} s is out of range (0 to {MAX_LIFETIME_S} s)"
                ),
            )
        }
        .with_hint("this does not look like a Sugar REST API answer: check the profile's url")
    };
    let until = |field: &str, secs: i64| {
        (0..=MAX_LIFETIME_S)
            .contains(&secs)
            .then(|| at.checked_add_signed(TimeDelta::seconds(secs)))
            .flatten()
            .ok_or_else(|| bad(field, secs))
    };
    Ok(Session {
        expires_at: until("expires_in", grant.expires_in)?,
        refresh_expires_at: grant
            .refresh_expires_in
            .map(|s| until("refresh_expires_in", s))
            .transpose()?,
        access_token: grant.access_token,
        refresh_token: grant.refresh_token,
        download_token: grant.download_token,
        obtained_at: at,
        platform: p.platform.clone(),
        username: p.username.clone(),
        url: p.url.as_str().to_string(),
        hard_end: None,
    })
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
