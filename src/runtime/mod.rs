//! The runtime: runs work on sessions (bounded concurrency, password sources, the cache protocol).
//!
//! Shared by the shell commands and the screen's runtime. The protocol (see [`crate::store`]):
//! an operation that rotates or ends a session takes the identity's lock first, re-reads the
//! entry under it, makes sure the cache can be written ([`Store::prepare`]) before sending
//! anything, and stores its result before reporting it. A check or another change computed
//! without the lock is applied only if the entry still has the generation it was computed from.
//! Results that arrive together are written together (one write for many).

mod api;
mod bounds;
mod check;
mod jobs;
mod ops;
pub mod password;
mod reader;
mod sudo;
mod token;
pub mod watch;

pub use crate::outcome::Outcome;
pub use api::{Answered, ApiError};
pub use bounds::Permit;
pub use check::CHECK_REQUESTS;
pub use jobs::{Jobs, Report, Work, WorkKind};
pub use ops::describe;
pub use reader::{CacheRead, CacheReader};
pub use token::{Need, NoToken, Token};

use crate::config::{Profile, Settings};
use crate::identity::SessionKey;
use crate::session::Entry;
use crate::store::{Applied, Cache, Change, LockGuard, Store, StoreError};
use crate::sugar::{Client, NetSettings};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};

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
    reader: CacheReader,
    /// One preparation at a time in this process: each holds the file lock for a moment, and a
    /// burst of requests would otherwise keep a blocking thread each polling for it.
    preparing: tokio::sync::Mutex<()>,
}

impl Engine {
    /// Must be called inside a tokio runtime (it starts the cache writer task).
    pub fn new(store: Store, settings: &Settings) -> Engine {
        let (persist_tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(persister(store.clone(), rx));
        Engine {
            clients: Mutex::new(HashMap::new()),
            global: Arc::new(Semaphore::new(settings.max_concurrency.max(1))),
            hosts: Mutex::new(HashMap::new()),
            per_host: settings.max_per_host.max(1),
            global_max: settings.max_concurrency.max(1),
            persist_tx,
            reader: CacheReader::new(store.clone()),
            preparing: tokio::sync::Mutex::new(()),
            store,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(super) fn client(&self, p: &Profile) -> Result<Client, String> {
        let key = NetSettings::of(p);
        let mut clients = self.clients.lock().expect("clients lock");
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let c = Client::new(&key)?;
        clients.insert(key, c.clone());
        Ok(c)
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

    /// [`current`](Self::current) for a command about one session: only that entry is built
    /// unless this process already holds the file's parse.
    pub async fn current_one(&self, key: &SessionKey) -> Result<Entry, String> {
        let reader = self.reader.clone();
        let key = key.clone();
        tokio::task::spawn_blocking(move || reader.read_entry(&key))
            .await
            .map_err(|e| e.to_string())?
    }

    /// The whole cache as it is on disk now; read again only when the file changed since last
    /// time. For the runtime's own decisions: what reading found waits for [`Engine::read_cache`].
    pub async fn cache(&self) -> Result<Arc<Cache>, String> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || reader.read_keeping_notices())
            .await
            .map_err(|e| e.to_string())?
            .map(|r| r.cache)
    }

    /// The cache for a front end, with what reading it found (said once).
    pub async fn read_cache(&self) -> Result<CacheRead, String> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || reader.read())
            .await
            .map_err(|e| e.to_string())?
    }

    /// The one cache reader, for a front end that reads on its own schedule.
    pub fn reader(&self) -> &CacheReader {
        &self.reader
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
    pub(super) async fn prepare(&self) -> Result<(), StoreError> {
        let _one = self.preparing.lock().await;
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
}

/// While results keep coming, the cache is written at most once per this interval: every write
/// rewrites the whole file, so writing once per result would cost O(N²) over a bulk action.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(25);

/// While results keep coming, writing takes at most one part in this many of the time: a cache of
/// ten thousand sessions takes tens of milliseconds to write, so it is written less often than
/// every [`MIN_WRITE_INTERVAL`] (each write stays O(sessions); their number falls as they grow).
pub const WRITE_DUTY: u32 = 4;

/// The longest a result waits for the next write (a write that was slow because it waited for
/// another process's lock does not hold the next one back for long).
pub const MAX_WRITE_INTERVAL: Duration = Duration::from_millis(500);

/// Writes queued changes; all changes waiting when a write starts go into that one write. A change
/// that comes after a quiet spell is written at once; one that comes sooner after the previous
/// write than [`MIN_WRITE_INTERVAL`] (or [`WRITE_DUTY`] times that write's duration, when longer,
/// up to [`MAX_WRITE_INTERVAL`]) waits for the rest of the interval, gathering others.
async fn persister(store: Store, mut rx: mpsc::UnboundedReceiver<(Change, Ack)>) {
    let mut last_write: Option<(tokio::time::Instant, Duration)> = None;
    while let Some(first) = rx.recv().await {
        if let Some((at, took)) = last_write {
            let interval = MIN_WRITE_INTERVAL.max((took * WRITE_DUTY).min(MAX_WRITE_INTERVAL));
            tokio::time::sleep_until(at + interval).await;
        }
        let started = tokio::time::Instant::now();
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let store = store.clone();
        let (changes, acks): (Vec<Change>, Vec<Ack>) = batch.into_iter().unzip();
        let result = tokio::task::spawn_blocking(move || store.apply(changes)).await;
        last_write = Some((started, started.elapsed()));
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
