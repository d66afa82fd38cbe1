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

use super::{CHECK_REQUESTS, Engine, Permit};
use crate::config::Profile;
use crate::outcome::Outcome;
use crate::secret::Secret;
use crate::session::{CheckReport, Op};
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
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

/// Runs jobs on an [`Engine`]; reports go to the channel given to [`Jobs::new`].
pub struct Jobs<K> {
    engine: Arc<Engine>,
    reports: mpsc::Sender<(K, Report)>,
    queued: Queued<K>,
    next: u64,
    tasks: JoinSet<()>,
}

impl<K> Jobs<K>
where
    K: Clone + Eq + Hash + Send + 'static,
{
    pub fn new(engine: Arc<Engine>, reports: mpsc::Sender<(K, Report)>) -> Jobs<K> {
        Jobs {
            engine,
            reports,
            queued: Arc::default(),
            next: 0,
            tasks: JoinSet::new(),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Queues `work` on `profile` under `key`. A job of the same key still waiting for its place
    /// is replaced (it goes without a report: the newer one takes its place).
    pub fn submit(&mut self, key: K, profile: Arc<Profile>, work: Work) {
        self.next += 1;
        let id = self.next;
        let (cancel, cancelled) = oneshot::channel::<()>();
        let replaced = self
            .queued
            .lock()
            .expect("jobs lock")
            .insert(key.clone(), (id, cancel));
        if let Some((_, older)) = replaced {
            // Dropped, not sent: the older job ends without a report.
            drop(older);
        }
        let engine = self.engine.clone();
        let alive = engine.job_alive();
        engine.warm_client(&profile);
        let reports = self.reports.clone();
        let queued = self.queued.clone();
        let places = work.places();
        // The job takes its place in line now, in the order of submission: the bounds serve their
        // waiters first come, first served, but tasks are first run in any order (two workers
        // take them at once). Polled once here, the wait is registered; the task waits on.
        let mut place = Box::pin(engine.clone().acquire_n_owned(profile.clone(), places));
        let mut first = match place.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(permit) => Some(permit),
            Poll::Pending => None,
        };
        self.tasks.spawn(async move {
            let _alive = alive;
            let permit = tokio::select! {
                biased;
                withdrawn = cancelled => {
                    if withdrawn.is_ok() {
                        // (Boxed, as the rest below.)
                        let _ = Box::pin(reports.send((key, Report::Withdrawn))).await;
                    }
                    return;
                }
                permit = async { match first.take() { Some(p) => p, None => place.await } } => permit,
            };
            // The rest is boxed when the job has its place: a queued job's task holds only the
            // wait above (the task is as large as its largest state), so that ten thousand queued
            // jobs stay small.
            Box::pin(run(engine, queued, reports, (key, id), profile, work, permit)).await;
        });
    }

    /// Withdraws the job of `key` if it is still waiting for its place; true if there was one.
    /// A job already sent runs to its end (its answer is stored).
    pub fn cancel(&mut self, key: &K) -> bool {
        let cancel = self.queued.lock().expect("jobs lock").remove(key);
        cancel.is_some_and(|(_, c)| c.send(()).is_ok())
    }

    /// Withdraws every job still waiting for its place.
    pub fn cancel_all(&mut self) {
        let all: Vec<_> = self
            .queued
            .lock()
            .expect("jobs lock")
            .drain()
            .map(|(_, (_, c))| c)
            .collect();
        for cancel in all {
            let _ = cancel.send(());
        }
    }

    /// The next task that ended, for a front end that watches for panics; `None` when none runs.
    pub async fn join_next(&mut self) -> Option<Result<(), JoinError>> {
        self.tasks.join_next().await
    }

    pub fn is_idle(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Withdraws the queued jobs and waits at most `grace` for the ones being sent; what is still
    /// running then is abandoned. Returns how many were abandoned.
    pub async fn finish(&mut self, grace: Duration) -> usize {
        self.cancel_all();
        let tasks = &mut self.tasks;
        let _ =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        let left = self.tasks.len();
        self.tasks.abort_all();
        left
    }
}

/// A job that has its place: no longer withdrawable, it runs its work and reports the result.
async fn run<K: Eq + Hash + Clone>(
    engine: Arc<Engine>,
    queued: Queued<K>,
    reports: mpsc::Sender<(K, Report)>,
    (key, id): (K, u64),
    profile: Arc<Profile>,
    work: Work,
    permit: Permit,
) {
    // No longer withdrawable (unless a newer job took the key meanwhile).
    {
        let mut queued = queued.lock().expect("jobs lock");
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
