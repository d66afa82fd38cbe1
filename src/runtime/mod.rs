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
use crate::store::{Applied, Cache, Change, Create, LockGuard, Now, Store, StoreError};
use crate::sugar::{Client, NetSettings};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};

type Ack = oneshot::Sender<Result<Applied, String>>;

/// Whether this runtime has one thread: a command that reads and prints, or acts on one session
/// (`status`, `token`, `api`: `main.rs`), whose work is done one step at a time anyway.
fn one_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

/// Runs `f`, a short call on local files (a read of the cache), where it costs least: on this
/// thread when the runtime has only that one (nothing else waits for it, and a blocking thread
/// made for the call would cost more than the call), else on a blocking thread, so that the
/// screen and the other jobs go on meanwhile.
async fn on_files<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    if one_thread() {
        // A panic is an error of this call, as `spawn_blocking` makes it (its message was printed).
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .map_err(|_| "a read of the token cache panicked".to_string());
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())
}

/// The engine: one per process.
pub struct Engine {
    store: Store,
    clients: Mutex<HashMap<NetSettings, Arc<ClientSlot>>>,
    global: Arc<Semaphore>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    per_host: usize,
    global_max: usize,
    persist_tx: mpsc::UnboundedSender<(Change, Ack)>,
    reader: CacheReader,
    /// The jobs alive (queued or running), for the cache writer ([`persister`]).
    activity: Arc<Activity>,
    /// One preparation at a time in this process: each holds the file lock for a moment, and a
    /// burst of requests would otherwise keep a blocking thread each polling for it. The callers
    /// that waited meanwhile share the next one's answer ([`Engine::prepare`]).
    preparing: std::sync::atomic::AtomicBool,
    /// Told when a preparation ends, however it ends.
    prepare_ended: tokio::sync::Notify,
    /// The last preparation that failed: the callers it answers for (tickets up to the last one
    /// asked when it ended), and why.
    prepare_failed: Mutex<(u64, Option<Arc<StoreError>>)>,
    /// Identities' lock files waiting to be made ([`Engine::make_lock_file`]).
    lock_files: Arc<Mutex<LockFiles>>,
    /// Tickets of the callers of [`Engine::prepare`], in the order they asked.
    prepare_asked: AtomicU64,
    /// Every caller with a ticket up to this one is vouched for by a preparation that began after
    /// it asked and succeeded.
    prepared_upto: AtomicU64,
}

impl Engine {
    /// Must be called inside a tokio runtime (it starts the cache writer task).
    pub fn new(store: Store, settings: &Settings) -> Engine {
        let (persist_tx, rx) = mpsc::unbounded_channel();
        let activity = Arc::new(Activity::default());
        tokio::spawn(persister(store.clone(), rx, activity.clone()));
        Engine {
            clients: Mutex::new(HashMap::new()),
            global: Arc::new(Semaphore::new(settings.max_concurrency.max(1))),
            hosts: Mutex::new(HashMap::new()),
            per_host: settings.max_per_host.max(1),
            global_max: settings.max_concurrency.max(1),
            persist_tx,
            reader: CacheReader::new(store.clone()),
            activity,
            preparing: std::sync::atomic::AtomicBool::new(false),
            prepare_ended: tokio::sync::Notify::new(),
            prepare_failed: Mutex::new((0, None)),
            lock_files: Arc::default(),
            prepare_asked: AtomicU64::new(0),
            prepared_upto: AtomicU64::new(0),
            store,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The HTTP client of the profile's network settings: made once, on a blocking thread; callers
    /// at once wait for the one being made. For a profile that talks TLS ([`talks_tls`]), the
    /// system's CA certificates are read first, once, on a blocking thread too (a few hundred
    /// files); a plain `http://` profile never waits for them. A failure is not kept: the next
    /// caller tries again, and says why.
    pub(super) async fn client(&self, p: &Profile) -> Result<Client, String> {
        let key = NetSettings::of(p);
        let slot = self.client_slot(&key);
        let client = slot
            .client
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || Client::new(&key))
                    .await
                    .map_err(|e| e.to_string())?
            })
            .await
            .cloned()?;
        if client.roots_pending() && talks_tls(p) {
            slot.roots
                .get_or_try_init(|| {
                    let client = client.clone();
                    async move {
                        tokio::task::spawn_blocking(move || client.load_roots())
                            .await
                            .map_err(|e| e.to_string())?
                    }
                })
                .await?;
        }
        Ok(client)
    }

    fn client_slot(&self, key: &NetSettings) -> Arc<ClientSlot> {
        let mut clients = self.clients.lock().expect("clients lock");
        match clients.get(key) {
            Some(slot) => slot.clone(),
            None => clients.entry(key.clone()).or_default().clone(),
        }
    }

    /// Starts making the client a job for `p` will need, while the job waits for its place and
    /// its lock (once per set of network settings).
    pub(super) fn warm_client(self: &Arc<Self>, p: &Arc<Profile>) {
        let slot = self.client_slot(&NetSettings::of(p));
        // Made already (for a plain `http://` profile, say): only the CA certificates may be
        // wanted still.
        let flag = match slot.client.get() {
            Some(client) if client.roots_pending() && talks_tls(p) => &slot.warming_roots,
            Some(_) => return,
            None => &slot.warming,
        };
        if flag.swap(true, Ordering::AcqRel) {
            return;
        }
        let (engine, p) = (self.clone(), p.clone());
        // A failure here is said by the job that needs the client (it tries again).
        tokio::spawn(async move { engine.client(&p).await.ok() });
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
        on_files(move || reader.read_entry(&key)).await?
    }

    /// The whole cache as it is on disk now; read again only when the file changed since last
    /// time. For the runtime's own decisions: what reading found waits for [`Engine::read_cache`].
    pub async fn cache(&self) -> Result<Arc<Cache>, String> {
        // A version this process holds already costs a `stat`, not a trip to a blocking thread
        // (a bulk action's every request asks, twice).
        if let Some((_, cache)) = self.reader.known() {
            return Ok(cache);
        }
        let reader = self.reader.clone();
        on_files(move || reader.read_keeping_notices())
            .await?
            .map(|r| r.cache)
    }

    /// The cache for a front end, with what reading it found (said once).
    pub async fn read_cache(&self) -> Result<CacheRead, String> {
        let reader = self.reader.clone();
        on_files(move || reader.read()).await?
    }

    /// The one cache reader, for a front end that reads on its own schedule.
    pub fn reader(&self) -> &CacheReader {
        &self.reader
    }

    /// Takes the identity's cross-process lock (a bounded wait for another process).
    pub async fn lock_key(&self, key: &SessionKey) -> Result<LockGuard, String> {
        // Free now (as it nearly always is): taken here, without the round trip to a blocking
        // thread. A wait (bounded, polling) goes to a blocking thread: the runtime's other tasks
        // (the screen, a live check, a timer) go on meanwhile. When other tasks share the runtime,
        // the lock file of an identity's first lock is made there too (it can take milliseconds),
        // by the one maker of lock files.
        let create = if one_thread() {
            Create::Yes
        } else {
            Create::No
        };
        let mut now = self
            .store
            .lock_key_now(key, create)
            .map_err(|e| e.to_string())?;
        if let Now::NoFile = now {
            // An identity's first lock: its file is made by the one maker, on a blocking thread;
            // then it is taken here (or waited for below, if another took it meanwhile).
            self.make_lock_file(key).await?;
            now = self
                .store
                .lock_key_now(key, Create::No)
                .map_err(|e| e.to_string())?;
        }
        if let Now::Taken(lock) = now {
            return Ok(lock);
        }
        let store = self.store.clone();
        let key = key.clone();
        tokio::task::spawn_blocking(move || store.lock_key(&key))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Makes an identity's lock file. The files asked for at once (a bulk action into a new
    /// state directory: one per identity) are made one after another, in the order asked, on one
    /// blocking thread: making one can take milliseconds, and a thread started for each cost more
    /// than the files.
    async fn make_lock_file(&self, key: &SessionKey) -> Result<(), String> {
        let (made, rx) = oneshot::channel();
        self.ask_maker(|queue| queue.waiting.push_back((key.clone(), made)));
        rx.await
            .map_err(|_| "the lock files' maker stopped".to_string())?
            .map_err(|e| e.to_string())
    }

    /// Asks the maker of lock files for a file (`ask` queues it), starting the maker if none is
    /// at work.
    fn ask_maker(&self, ask: impl FnOnce(&mut LockFiles)) {
        let start = {
            let mut queue = self.lock_files.lock().expect("lock files queue");
            ask(&mut queue);
            !std::mem::replace(&mut queue.making, true)
        };
        if start {
            let maker = LockFileMaker {
                files: self.lock_files.clone(),
                done: false,
            };
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || maker.make_all(&store));
        }
    }

    /// Has the lock file of `key` made while its job waits for its place (when the runtime has
    /// threads to spare for it): into a new state directory, a bulk action's later waves then
    /// take their locks at once when their turn comes, instead of queueing for their files then
    /// (1 to 2 ms on the second wave's critical path at 100 profiles on 10 hosts). A file that is
    /// there already costs the maker an `open`.
    pub(super) fn warm_lock_file(&self, key: SessionKey) {
        if one_thread() {
            return;
        }
        self.ask_maker(|queue| queue.ahead.push_back(key));
    }

    /// Counts a job alive (queued or running) until the guard is dropped: while every job alive
    /// waits for the cache writer, it writes at once instead of gathering more.
    pub(super) fn job_alive(&self) -> JobAlive {
        self.activity.jobs.fetch_add(1, Ordering::AcqRel);
        JobAlive(self.activity.clone())
    }

    /// Makes sure the cache can be written before a request that rotates or ends a session.
    /// Callers at once (a bulk action's requests) share one preparation: one that began after a
    /// caller asked answers for it; callers who asked while it ran wait for the next if it
    /// succeeded, and share its failure if it failed (each waiting out a bound of its own, a bulk
    /// action under another process's lock waited the bound once per profile). Those waiting are
    /// all told at once when a preparation ends (a queue that let them go one at a time held a
    /// bulk action's first requests back by milliseconds, each woken behind the runtime's other
    /// tasks).
    pub(super) async fn prepare(&self) -> Result<(), Arc<StoreError>> {
        let ticket = self.prepare_asked.fetch_add(1, Ordering::AcqRel) + 1;
        loop {
            // Listening before looking: a preparation that ends after the look is heard.
            let ended = self.prepare_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.prepared_upto.load(Ordering::Acquire) >= ticket {
                return Ok(());
            }
            if let (upto, Some(failure)) = &*self.prepare_failed.lock().expect("prepare failed")
                && *upto >= ticket
            {
                return Err(failure.clone());
            }
            if self.preparing.swap(true, Ordering::AcqRel) {
                ended.await;
                continue;
            }
            // This caller prepares. Everyone who asked so far asked before it began.
            let preparing = Preparing(self);
            let covers = self.prepare_asked.load(Ordering::Acquire);
            let result = match self.prepare_once().await {
                Ok(()) => {
                    self.prepared_upto.fetch_max(covers, Ordering::AcqRel);
                    Ok(())
                }
                Err(e) => {
                    // A failure answers also for those who asked while it ran: they would wait
                    // out another bound for the same lock.
                    let e = Arc::new(e);
                    let upto = self.prepare_asked.load(Ordering::Acquire);
                    *self.prepare_failed.lock().expect("prepare failed") = (upto, Some(e.clone()));
                    Err(e)
                }
            };
            drop(preparing);
            return result;
        }
    }

    /// One preparation. Nothing to make (the common case, once the first preparation made the
    /// next write's file): a few calls on files that are there, in place. Else on a blocking
    /// thread: it may make files, or wait boundedly for another process's lock.
    async fn prepare_once(&self) -> Result<(), StoreError> {
        if self.store.prepared_already()? {
            return Ok(());
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.prepare())
            .await
            .unwrap_or_else(|e| {
                Err(StoreError::Io {
                    path: self.store.dir().to_path_buf(),
                    what: "cannot prepare the token cache",
                    source: std::io::Error::other(e.to_string()),
                })
            })
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

/// Whether a job for `p` makes a TLS handshake, and so needs the system's CA certificates: an
/// `https://` instance, or an `https://` proxy (the profile's; for a profile without one, the
/// environment's `HTTP_PROXY` or `ALL_PROXY` when the instance is plain `http://`).
fn talks_tls(p: &Profile) -> bool {
    if p.url.scheme() == "https" {
        return true;
    }
    match p.proxy.as_deref() {
        Some(proxy) => proxy.scheme() == "https",
        None => ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .any(|v| v.trim_start().to_ascii_lowercase().starts_with("https://")),
    }
}

/// The HTTP client of one set of network settings, once made.
#[derive(Default)]
struct ClientSlot {
    client: tokio::sync::OnceCell<Client>,
    /// The system's CA certificates read for it ([`Client::load_roots`]).
    roots: tokio::sync::OnceCell<()>,
    /// Its making was started ahead of need ([`Engine::warm_client`]).
    warming: std::sync::atomic::AtomicBool,
    /// The reading of its CA certificates was started ahead of need.
    warming_roots: std::sync::atomic::AtomicBool,
}

/// A preparation under way ([`Engine::prepare`]): when it ends, or its caller goes away
/// meanwhile, the next may begin, and those waiting are told.
struct Preparing<'a>(&'a Engine);

impl Drop for Preparing<'_> {
    fn drop(&mut self) {
        self.0.preparing.store(false, Ordering::Release);
        self.0.prepare_ended.notify_waiters();
    }
}

/// Identities' lock files waiting to be made, each with whom to tell, and whether a maker is
/// at work on them.
#[derive(Default)]
struct LockFiles {
    /// Files a job needs now (its identity's first lock): made first.
    waiting: std::collections::VecDeque<Asked>,
    /// Files of jobs still waiting for their place, made ahead when no job needs one now.
    ahead: std::collections::VecDeque<SessionKey>,
    making: bool,
}

/// The one maker of lock files at work: makes them until none is waiting, then says it stopped
/// (under the queue's lock: a file asked for after that starts another maker). Dropped before
/// that (a panic, or never run because the runtime is shutting down), it lets the next caller
/// start another, and the callers still waiting hear that it stopped.
struct LockFileMaker {
    files: Arc<Mutex<LockFiles>>,
    done: bool,
}

impl LockFileMaker {
    fn make_all(mut self, store: &Store) {
        loop {
            let next = {
                let mut queue = self.files.lock().expect("lock files queue");
                let next = match queue.waiting.pop_front() {
                    Some(now) => Some(Next::Now(now)),
                    None => queue.ahead.pop_front().map(Next::Ahead),
                };
                if next.is_none() {
                    queue.making = false;
                    self.done = true;
                }
                next
            };
            match next {
                None => return,
                Some(Next::Now((key, made))) => {
                    let _ = made.send(store.make_key_lock_file(&key));
                }
                // A file that cannot be made is said by its job, when it asks for it; the others
                // are not tried ahead (they would most likely fail the same way).
                Some(Next::Ahead(key)) => {
                    if store.make_key_lock_file(&key).is_err() {
                        self.files.lock().expect("lock files queue").ahead.clear();
                    }
                }
            }
        }
    }
}

/// A file a job waits for, and how it hears that it was made.
type Asked = (SessionKey, oneshot::Sender<Result<(), StoreError>>);

/// The maker's next file.
enum Next {
    Now(Asked),
    Ahead(SessionKey),
}

impl Drop for LockFileMaker {
    fn drop(&mut self) {
        if !self.done {
            let mut queue = self.files.lock().unwrap_or_else(|p| p.into_inner());
            queue.making = false;
            queue.waiting.clear();
            queue.ahead.clear();
        }
    }
}

/// The jobs alive in a process, for the cache writer.
#[derive(Default)]
struct Activity {
    jobs: std::sync::atomic::AtomicUsize,
    /// Told when a job ends.
    ended: tokio::sync::Notify,
}

/// A job alive: counted in [`Activity`] until dropped.
pub(super) struct JobAlive(Arc<Activity>);

impl Drop for JobAlive {
    fn drop(&mut self) {
        self.0.jobs.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_one();
    }
}

/// Writes queued changes; all changes waiting when a write starts go into that one write. A change
/// that comes after a quiet spell is written at once; one that comes sooner after the previous
/// write than [`MIN_WRITE_INTERVAL`] (or [`WRITE_DUTY`] times that write's duration, when longer,
/// up to [`MAX_WRITE_INTERVAL`]) waits for the rest of the interval, gathering others, unless every
/// job alive already waits for this write (the end of a bulk action: nothing more would come).
async fn persister(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<(Change, Ack)>,
    activity: Arc<Activity>,
) {
    let mut last_write: Option<(tokio::time::Instant, Duration)> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        if let Some((at, took)) = last_write {
            let interval = MIN_WRITE_INTERVAL.max((took * WRITE_DUTY).min(MAX_WRITE_INTERVAL));
            let deadline = tokio::time::sleep_until(at + interval);
            tokio::pin!(deadline);
            loop {
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                // A job waits for at most one change at a time: as many changes as jobs alive
                // means all of them wait (a change from outside the jobs only makes it sooner).
                let jobs = activity.jobs.load(Ordering::Acquire);
                if jobs > 0 && batch.len() >= jobs {
                    break;
                }
                tokio::select! {
                    () = &mut deadline => break,
                    more = rx.recv() => match more {
                        Some(more) => batch.push(more),
                        None => break,
                    },
                    () = activity.ended.notified() => {}
                }
            }
        }
        let started = tokio::time::Instant::now();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Expect;
    use tokio::time::Instant;

    fn change(i: usize) -> Change {
        Change {
            key: SessionKey::new("https://acme.example.com", &format!("u{i}"), "p", "sugar"),
            label: format!("u{i}"),
            expect: Expect::Held,
            apply: Box::new(|_| {}),
        }
    }

    /// A preparation whose caller went away (a job dropped while another process held the
    /// cache's lock) does not hold back the callers after it: the next one prepares on its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_preparation_whose_caller_went_away_does_not_hold_back_the_next() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let engine = Engine::new(store.clone(), &Settings::default());
        // Another process holds the cache's lock: a preparation waits for it.
        let other = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(store.lock_path())
            .unwrap();
        other.lock().unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(200), engine.prepare()).await;
        assert!(waited.is_err(), "prepared while another held the lock");
        drop(other);
        tokio::time::timeout(Duration::from_secs(5), engine.prepare())
            .await
            .expect("the next caller was held back")
            .expect("prepared");
    }

    /// A bulk action into a new state directory takes each identity's first lock, whose file must
    /// be made: made on blocking threads (it can take milliseconds), but not on a thread started
    /// for each (64 threads made and ended cost more than the files: 10 ms of CPU at 100
    /// profiles), and every lock is still taken, and exclusive.
    #[test]
    fn a_burst_of_first_locks_does_not_start_a_thread_for_each() {
        const NAME: &str = "first-locks";
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(NAME)
            .enable_all()
            .build()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let guards = rt.block_on(async {
            let engine = Arc::new(Engine::new(store.clone(), &Settings::default()));
            let mut set = tokio::task::JoinSet::new();
            for i in 0..64 {
                let engine = engine.clone();
                set.spawn(async move { engine.lock_key(&change(i).key).await });
            }
            let mut guards = Vec::new();
            while let Some(done) = set.join_next().await {
                guards.push(done.unwrap().expect("the first lock is taken"));
            }
            guards
        });
        assert_eq!(guards.len(), 64);
        for i in [0, 31, 63] {
            assert!(
                matches!(
                    store.lock_key_now(&change(i).key, Create::No).unwrap(),
                    crate::store::Now::Held
                ),
                "lock {i} is held while its guard lives"
            );
        }
        // The runtime's threads: its workers and its blocking threads (idle ones stay a while).
        let threads = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == NAME)
            })
            .count();
        // The two workers and the maker's thread; a maker that ran dry and was started again may
        // find the last one's thread not yet idle and start another. A thread for each first
        // lock made 16 and more here.
        assert!(threads <= 2 + 4, "{threads} threads for 64 first locks");
        drop(guards);
    }

    /// The end of a bulk action: when every job alive waits for the cache writer, its results
    /// are written at once, not after the rest of the write interval (the command's last
    /// answers would wait for nothing). While other jobs may still bring theirs, it gathers.
    /// (On tokio's paused clock: a wait shows as the clock moving, whatever the machine's speed.)
    #[tokio::test(start_paused = true)]
    async fn the_writer_waits_to_gather_only_while_a_job_alive_may_still_bring_a_change() {
        let tmp = tempfile::tempdir().unwrap();
        let engine = Engine::new(Store::open(tmp.path()).unwrap(), &Settings::default());
        // The first write: at once (a quiet spell before it).
        engine.persist(change(0)).await.unwrap();

        let one = engine.job_alive();
        let asked = Instant::now();
        engine.persist(change(1)).await.unwrap();
        assert!(
            asked.elapsed() < MIN_WRITE_INTERVAL,
            "the one job alive waited {:?} for its own change to be written",
            asked.elapsed()
        );

        let two = engine.job_alive();
        let asked = Instant::now();
        engine.persist(change(2)).await.unwrap();
        assert!(
            asked.elapsed() >= MIN_WRITE_INTERVAL,
            "written after {:?}, while another job alive could still bring a change",
            asked.elapsed()
        );
        drop((one, two));
        let cache = engine.load_cache().unwrap();
        assert_eq!(cache.sessions.len(), 3);
    }
}
