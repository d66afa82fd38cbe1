//! The job runner: the one way the screen, the shell commands (and later the daemon) run work on
//! sessions.
//!
//! A job is submitted for a key (the screen's row label, a command's profile), waits for its
//! place under the concurrency bounds, then runs to the end: once it has a place its request is
//! sent, and its answer is stored whatever the front end does meanwhile. Until then it can be
//! withdrawn ([`Jobs::cancel`]), and a newer job for the same key replaces it (as gitui's
//! `AsyncSingleJob` does: the newer request is the one that counts). What happens is reported on
//! one channel, in the order it happens for each key: [`Report::Started`] or
//! [`Report::Withdrawn`], then [`Report::Done`].

use super::{CHECK_REQUESTS, Engine, JobAlive, Permit};
use crate::config::Profile;
use crate::outcome::Outcome;
use crate::secret::Secret;
use crate::session::{CheckReport, Op};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::{JoinError, JoinSet};

/// What a job does to a session.
#[derive(Debug)]
pub enum Work {
    /// Log in, refresh or log out; `password` for a login whose password a person typed.
    Op { op: Op, password: Option<Secret> },
    /// A refresh because the session's refresh was due, or a login because the session needed
    /// one: skipped when, under the identity's lock, it no longer is ([`Engine::execute_due`]).
    Due(Op),
    /// A live check (`GET /ping`, `/me`, server info, server time).
    Check,
    /// An impersonation of `user` with the profile's (admin) session.
    Sudo { user: String },
}

/// Which kind of [`Work`] a report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkKind {
    Op,
    Check,
    Sudo,
}

impl Work {
    pub fn kind(&self) -> WorkKind {
        match self {
            Work::Op { .. } | Work::Due(_) => WorkKind::Op,
            Work::Check => WorkKind::Check,
            Work::Sudo { .. } => WorkKind::Sudo,
        }
    }

    /// Whether the job takes the lock of its profile's identity (a check only to log in again, an
    /// impersonation the lock of the session it makes).
    fn takes_lock(&self) -> bool {
        matches!(self, Work::Op { .. } | Work::Due(_))
    }

    /// How many places under the bounds the job takes: the requests it sends at once.
    fn places(&self) -> u32 {
        match self {
            Work::Check => CHECK_REQUESTS,
            Work::Op { .. } | Work::Due(_) | Work::Sudo { .. } => 1,
        }
    }
}

/// What became of a job.
#[derive(Debug)]
pub enum Report {
    /// It has its place under the bounds: it is being sent.
    Started,
    /// It was withdrawn before it was sent (by [`Jobs::cancel`] or [`Jobs::finish`]).
    Withdrawn,
    /// It ran; its result is already stored. `report`: a live check's findings, when the session
    /// was alive.
    Done {
        kind: WorkKind,
        outcome: Box<Outcome>,
        report: Option<CheckReport>,
    },
}

/// The queued (still withdrawable) job of each key, with the number that tells jobs apart.
type Queued<K> = Arc<Mutex<HashMap<K, (u64, oneshot::Sender<()>)>>>;

/// A job not yet in line for its host's bound: what it was given, nothing more (no task yet).
struct Pending<K> {
    key: K,
    id: u64,
    profile: Arc<Profile>,
    work: Work,
    cancelled: oneshot::Receiver<()>,
    alive: JobAlive,
}

/// The jobs of one instance host: how many wait in its bound's line (each in a task), and the
/// ones behind them, in the order they were submitted.
struct Line<K> {
    waiting: usize,
    backlog: VecDeque<Pending<K>>,
}

/// A job's wait for its place under the bounds.
type Place = Pin<Box<dyn Future<Output = Permit> + Send>>;

/// A job that has entered its host's line: its wait registered, its place in the line held.
struct Entered<K>
where
    K: Clone + Eq + Hash + Send + 'static,
{
    p: Pending<K>,
    place: Place,
    /// The place, when the first poll got it.
    first: Option<Permit>,
    in_line: InLine<K>,
}

/// What the jobs' tasks share with [`Jobs`] (they hold it weakly: dropping `Jobs` drops the tasks).
struct Shared<K> {
    engine: Arc<Engine>,
    reports: mpsc::Sender<(K, Report)>,
    queued: Queued<K>,
    lines: Mutex<HashMap<String, Line<K>>>,
    tasks: Mutex<JoinSet<()>>,
    /// Tasks that failed (a panic) and were taken out of `tasks` before a front end asked.
    failed: Mutex<VecDeque<JoinError>>,
    /// Wakes [`Jobs::join_next`] when a failed task was taken out of `tasks` meanwhile.
    ended: Notify,
    /// `Jobs` was dropped: nothing more starts.
    closed: AtomicBool,
    /// Where tasks are spawned, also from a task's end.
    runtime: Handle,
}

/// Runs jobs on an [`Engine`]; reports go to the channel given to [`Jobs::new`].
///
/// At most as many jobs of one host as its bound allows wait in the bound's line, each in its own
/// task; the others wait in the host's backlog as plain data and join the line, in the order they
/// were submitted, as places in it free up. Ten thousand queued jobs cost no ten thousand tasks,
/// and a host with a long backlog holds no job of another host back.
pub struct Jobs<K> {
    shared: Arc<Shared<K>>,
    next: u64,
}

impl<K> Jobs<K>
where
    K: Clone + Eq + Hash + Send + 'static,
{
    /// Must be called within a tokio runtime (its jobs run there).
    pub fn new(engine: Arc<Engine>, reports: mpsc::Sender<(K, Report)>) -> Jobs<K> {
        Jobs {
            shared: Arc::new(Shared {
                engine,
                reports,
                queued: Arc::default(),
                lines: Mutex::default(),
                tasks: Mutex::new(JoinSet::new()),
                failed: Mutex::default(),
                ended: Notify::new(),
                closed: AtomicBool::new(false),
                runtime: Handle::current(),
            }),
            next: 0,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.shared.engine
    }

    /// Queues `work` on `profile` under `key`. A job of the same key still waiting for its place
    /// is replaced (it goes without a report: the newer one takes its place).
    pub fn submit(&mut self, key: K, profile: Arc<Profile>, work: Work) {
        self.next += 1;
        let id = self.next;
        let (cancel, cancelled) = oneshot::channel::<()>();
        let replaced = lock(&self.shared.queued).insert(key.clone(), (id, cancel));
        if let Some((_, older)) = replaced {
            // Dropped, not sent: the older job ends without a report.
            drop(older);
        }
        let engine = &self.shared.engine;
        let alive = engine.job_alive();
        engine.warm_client(&profile);
        // The profile whose identity the job will lock, if it locks one.
        let lock_of = work.takes_lock().then(|| profile.clone());
        let waits = Shared::admit(
            &self.shared,
            Pending {
                key,
                id,
                profile,
                work,
                cancelled,
                alive,
            },
        );
        // Its identity's lock file is made while it waits for its place (a job that has it now
        // makes its own, first in the maker's line).
        if let (true, Some(profile)) = (waits, lock_of) {
            engine.warm_lock_file(profile.session_key());
        }
    }

    /// Withdraws the job of `key` if it is still waiting for its place; true if there was one.
    /// A job already sent runs to its end (its answer is stored).
    pub fn cancel(&mut self, key: &K) -> bool {
        let Some((id, cancel)) = lock(&self.shared.queued).remove(key) else {
            return false;
        };
        if cancel.send(()).is_err() {
            return false;
        }
        // One still in a backlog is reported now, not when its turn in the line would come.
        let found = lock(&self.shared.lines).values_mut().find_map(|line| {
            let at = line.backlog.iter().position(|p| p.id == id)?;
            line.backlog.remove(at)
        });
        if let Some(p) = found {
            self.shared.withdrawn(p);
        }
        true
    }

    /// Withdraws every job still waiting for its place.
    pub fn cancel_all(&mut self) {
        let all: Vec<_> = lock(&self.shared.queued)
            .drain()
            .map(|(_, (_, c))| c)
            .collect();
        for cancel in all {
            let _ = cancel.send(());
        }
        let backlog: Vec<Pending<K>> = lock(&self.shared.lines)
            .values_mut()
            .flat_map(|line| line.backlog.drain(..))
            .collect();
        for mut p in backlog {
            // Replaced ones (their sender dropped) go without a word, as they would have.
            if p.cancelled.try_recv().is_ok() {
                self.shared.withdrawn(p);
            }
        }
    }

    /// The next task that ended, for a front end that watches for panics; `None` when none runs.
    pub async fn join_next(&mut self) -> Option<Result<(), JoinError>> {
        let shared = &self.shared;
        loop {
            // Made before the look, so that a failure kept after it still wakes this wait.
            let kept = shared.ended.notified();
            if let Some(e) = lock(&shared.failed).pop_front() {
                return Some(Err(e));
            }
            tokio::select! {
                ended = std::future::poll_fn(|cx| lock(&shared.tasks).poll_join_next(cx)) => {
                    return ended;
                }
                () = kept => {}
            }
        }
    }

    pub fn is_idle(&self) -> bool {
        // A backlog waits only behind a task of its host.
        lock(&self.shared.tasks).is_empty() && lock(&self.shared.failed).is_empty()
    }

    /// Withdraws the queued jobs and waits at most `grace` for the ones being sent; what is still
    /// running then is abandoned. Returns how many were abandoned.
    pub async fn finish(&mut self, grace: Duration) -> usize {
        self.cancel_all();
        let _ =
            tokio::time::timeout(grace, async { while self.join_next().await.is_some() {} }).await;
        let mut tasks = lock(&self.shared.tasks);
        let left = tasks.len();
        tasks.abort_all();
        left
    }
}

impl<K> Drop for Jobs<K> {
    /// As a dropped `JoinSet` does: the tasks end (they hold what they share with `Jobs` weakly,
    /// so nothing keeps it alive).
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        lock(&self.shared.tasks).abort_all();
    }
}

impl<K> Shared<K>
where
    K: Clone + Eq + Hash + Send + 'static,
{
    /// Puts a job in its host's line if there is room there (and no backlog ahead of it), else at
    /// the end of the backlog. True when the job waits for its place (in its host's backlog or in
    /// the bound's line).
    fn admit(this: &Arc<Self>, p: Pending<K>) -> bool {
        let host = p.profile.host_port();
        let entered = {
            let mut lines = lock(&this.lines);
            let line = lines.entry(host.clone()).or_insert_with(|| Line {
                waiting: 0,
                backlog: VecDeque::new(),
            });
            if line.waiting >= this.engine.per_host || !line.backlog.is_empty() {
                line.backlog.push_back(p);
                return true;
            }
            line.waiting += 1;
            Self::enter(this, host, p)
        };
        let waits = entered.first.is_none();
        Self::start(this, entered);
        waits
    }

    /// A place in `host`'s line is free again: the next job of its backlog takes it.
    fn release(this: &Arc<Self>, host: String) {
        if this.closed.load(Ordering::Acquire) {
            // `Jobs` is gone: its tasks are being aborted, and nothing more starts.
            return;
        }
        let next = {
            let mut lines = lock(&this.lines);
            let Some(line) = lines.get_mut(&host) else {
                return;
            };
            match line.backlog.pop_front() {
                Some(p) => Some(Self::enter(this, host.clone(), p)),
                None => {
                    line.waiting -= 1;
                    if line.waiting == 0 {
                        lines.remove(&host);
                    }
                    None
                }
            }
        };
        if let Some(entered) = next {
            Self::start(this, entered);
        }
    }

    /// A job takes its place in its host's bound's line, called under the lines' lock: the bounds
    /// serve their waiters first come, first served, so the jobs of a host register their waits
    /// in the order of its backlog (under the lock), not in the order workers get to run them.
    /// Polled once here, the wait is registered; the job's task waits on.
    fn enter(this: &Arc<Self>, host: String, p: Pending<K>) -> Entered<K> {
        let mut place: Place = Box::pin(
            this.engine
                .clone()
                .acquire_n_owned(p.profile.clone(), p.work.places()),
        );
        let first = match place.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(permit) => Some(permit),
            Poll::Pending => None,
        };
        Entered {
            p,
            place,
            first,
            in_line: InLine {
                shared: Arc::downgrade(this),
                host,
            },
        }
    }

    /// The task of a job that entered its host's line.
    fn start(this: &Arc<Self>, entered: Entered<K>) {
        let Entered {
            mut p,
            place,
            mut first,
            in_line,
        } = entered;
        let engine = this.engine.clone();
        let reports = this.reports.clone();
        let queued = this.queued.clone();
        let task = async move {
            let permit = tokio::select! {
                biased;
                withdrawn = &mut p.cancelled => {
                    drop(in_line);
                    if withdrawn.is_ok() {
                        // (Boxed, as the rest below.)
                        let _ = Box::pin(reports.send((p.key, Report::Withdrawn))).await;
                    }
                    return;
                }
                permit = async { match first.take() { Some(p) => p, None => place.await } } => permit,
            };
            // Out of the line: the next job of the host's backlog steps in.
            drop(in_line);
            // The rest is boxed when the job has its place: a job waiting in line holds only the
            // wait above (a task is as large as its largest state).
            Box::pin(run(engine, queued, reports, p, permit)).await;
        };
        this.add_task(task);
    }

    /// Spawns a task of the set, first taking the ones that ended out of it: a front end that
    /// never asks for them (a bulk command) would otherwise keep every finished task's memory to
    /// the end. A panic among them is kept for [`Jobs::join_next`].
    fn add_task(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        while let Some(ended) = tasks.try_join_next() {
            if let Err(e) = ended {
                lock(&self.failed).push_back(e);
                self.ended.notify_one();
            }
        }
        let _adding = Adding::start();
        tasks.spawn_on(task, &self.runtime);
    }

    /// Reports a job withdrawn from a backlog.
    fn withdrawn(&self, p: Pending<K>) {
        let reports = self.reports.clone();
        self.add_task(async move {
            let _alive = p.alive;
            let _ = reports.send((p.key, Report::Withdrawn)).await;
        });
    }
}

/// A job's place in its host's line, given up when dropped (whatever ends the wait: the place,
/// a withdrawal, a replacement, the task's abort).
struct InLine<K>
where
    K: Clone + Eq + Hash + Send + 'static,
{
    shared: Weak<Shared<K>>,
    host: String,
}

impl<K> Drop for InLine<K>
where
    K: Clone + Eq + Hash + Send + 'static,
{
    fn drop(&mut self) {
        if ADDING.get() {
            // Dropped as it was spawned, by a runtime that is shutting down: nothing more starts
            // (and the set is locked on this thread).
            return;
        }
        if let Some(shared) = self.shared.upgrade() {
            Shared::release(&shared, std::mem::take(&mut self.host));
        }
    }
}

thread_local! {
    /// This thread is adding a task to a job set (under its lock).
    static ADDING: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as adding a task while it lives.
struct Adding;

impl Adding {
    fn start() -> Adding {
        ADDING.set(true);
        Adding
    }
}

impl Drop for Adding {
    fn drop(&mut self) {
        ADDING.set(false);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A job that has its place: no longer withdrawable, it runs its work and reports the result.
async fn run<K: Eq + Hash + Clone>(
    engine: Arc<Engine>,
    queued: Queued<K>,
    reports: mpsc::Sender<(K, Report)>,
    p: Pending<K>,
    permit: Permit,
) {
    // Counted alive until the end of its work.
    let Pending {
        key,
        id,
        profile,
        work,
        alive: _alive,
        ..
    } = p;
    // No longer withdrawable (unless a newer job took the key meanwhile).
    {
        let mut queued = lock(&queued);
        if queued.get(&key).is_some_and(|(i, _)| *i == id) {
            queued.remove(&key);
        }
    }
    let _ = reports.send((key.clone(), Report::Started)).await;
    let kind = work.kind();
    let (outcome, report) = match work {
        Work::Op { op, password } => (engine.execute(&profile, op, password, permit).await, None),
        Work::Due(op) => (engine.execute_due(&profile, op, permit).await, None),
        Work::Check => engine.check_holding(&profile, permit).await,
        Work::Sudo { user } => (engine.sudo_holding(&profile, &user, permit).await, None),
    };
    let done = Report::Done {
        kind,
        outcome: Box::new(outcome),
        report,
    };
    let _ = reports.send((key, done)).await;
}
