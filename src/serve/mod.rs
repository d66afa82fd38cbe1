//! `serve`: the daemon. In the foreground, under a supervisor (systemd: `Type=notify`), it keeps
//! the chosen sessions alive (refreshes when due, logs in again through non-interactive password
//! sources, checks live every `check_interval_s`), hands tokens to integration workers through a
//! broker on a Unix socket, and serves `/metrics`, `/healthz` and `/status` over HTTP.
//!
//! One `serve` per state directory (it holds `serve.lock` for its lifetime). It shares the cache
//! with the screen and the shell through the same protocol: a session another process refreshed
//! is not refreshed again. SIGHUP reloads the profiles file; SIGTERM and SIGINT end it within
//! 2 s (requests in flight get 1.5 s, and what they return is stored).

mod broker;
mod http;
mod keeper;
mod notify;

use crate::cli::{
    Cli, LogFormat, ServeArgs, Usage, load_profiles, open_store_with, profiles_path,
    read_only_from, select, with_impersonations,
};
use crate::config::{Profile, Profiles};
use crate::exit;
use crate::metrics::DaemonMetrics;
use crate::runtime::{Engine, Jobs, Report, Work};
use crate::session::{Cache, Op};
use chrono::Utc;
use keeper::{Memory, Next};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

/// How often the daemon looks at its sessions.
const TICK: Duration = Duration::from_secs(1);
/// How long requests in flight are waited for at the end.
const FINISH_GRACE: Duration = Duration::from_millis(1500);
/// `/healthz` fails when the loop has not gone round for this long.
const HEALTHY_WITHIN: Duration = Duration::from_secs(10);

/// What the daemon's servers share with its loop.
pub(crate) struct Shared {
    pub engine: Arc<Engine>,
    /// The profiles kept, and the whole file (the broker serves any profile of it).
    pub kept: RwLock<Arc<Vec<Arc<Profile>>>>,
    pub file: RwLock<Arc<Profiles>>,
    pub metrics: DaemonMetrics,
    /// The latency of each kept session's last live check, by profile name.
    pub latencies: Mutex<HashMap<String, Duration>>,
    /// When the loop last went round, in milliseconds since `started` (a monotonic clock: the
    /// wall clock stepping does not make the daemon look dead or alive).
    pub heartbeat: AtomicU64,
    pub started: Instant,
    /// `--read-only` was given (the file's `read_only` is read from [`Shared::file`], which a
    /// reload replaces).
    pub read_only_flag: bool,
    /// `--keep-alive`: in read-only mode, sessions are still kept alive.
    pub keep_alive: bool,
}

impl Shared {
    /// The cache as it is now (through the one reader).
    pub async fn cache(&self) -> Result<Arc<Cache>, String> {
        self.engine.cache().await
    }

    pub fn kept(&self) -> Arc<Vec<Arc<Profile>>> {
        self.kept.read().expect("kept lock").clone()
    }

    pub fn file(&self) -> Arc<Profiles> {
        self.file.read().expect("file lock").clone()
    }

    /// Where read-only mode came from (the flag, or the file's `[defaults]`), when it is on.
    pub fn read_only(&self) -> Option<String> {
        read_only_from(self.read_only_flag, &self.file())
    }

    /// Sessions are kept alive: not in read-only mode, unless `--keep-alive` was given.
    fn keeps_alive(&self) -> bool {
        self.keep_alive || self.read_only().is_none()
    }
}

pub fn log_format(f: LogFormat) -> crate::logging::StderrFormat {
    match f {
        LogFormat::Text => crate::logging::StderrFormat::Text,
        LogFormat::Json => crate::logging::StderrFormat::Json,
        LogFormat::Logfmt => crate::logging::StderrFormat::Logfmt,
    }
}

/// The profiles to keep: those chosen on the command line, with the impersonations the cache
/// holds for them.
fn choose(
    profiles: &Profiles,
    cache: &Cache,
    args: &ServeArgs,
) -> Result<Vec<Arc<Profile>>, Usage> {
    let all = with_impersonations(profiles, cache);
    Ok(select(&all, &args.targets(), true)?
        .into_iter()
        .cloned()
        .collect())
}

pub async fn run(cli: &Cli, args: &ServeArgs) -> Result<i32, Usage> {
    if !args.listen.ip().is_loopback() && !args.listen_any {
        return Err(Usage(format!(
            "sugar-sessions: --listen {} is not a loopback address: the metrics and /status name your instances and users; add --listen-any to serve them there",
            args.listen
        )));
    }
    let path = profiles_path(cli)?;
    let profiles = load_profiles(&path)?;
    // The daemon never waits long for a lock: it logs and tries again on its next round.
    let policy = crate::store::LockPolicy {
        timeout: crate::cli::lock_timeout(cli),
        on_wait: Arc::new(|what: &str| tracing::info!("{what}")),
    };
    let store = open_store_with(cli, &profiles, policy)?;
    let _daemon = store.lock_daemon().map_err(|e| match e {
        crate::store::StoreError::LockTimeout { holder, .. } => Usage(format!(
            "sugar-sessions: another `serve` runs on {}: process {holder}",
            store.dir().display()
        )),
        e => Usage(format!("sugar-sessions: {e}")),
    })?;
    let socket_path = args
        .socket
        .clone()
        .unwrap_or_else(|| store.dir().join(crate::store::BROKER_SOCKET));
    let engine = Arc::new(Engine::new(store, &profiles.settings));
    let cache = engine
        .cache()
        .await
        .map_err(|e| Usage(format!("sugar-sessions: {e}")))?;
    let kept = choose(&profiles, &cache, args)?;
    log_guard_warnings(&kept);
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        kept: RwLock::new(Arc::new(kept)),
        file: RwLock::new(Arc::new(profiles)),
        metrics: DaemonMetrics::new(),
        latencies: Mutex::default(),
        heartbeat: AtomicU64::new(0),
        started: Instant::now(),
        read_only_flag: cli.read_only,
        keep_alive: cli.keep_alive,
    });
    if let Some(source) = shared.read_only() {
        tracing::info!(
            keep_alive = shared.keep_alive,
            "read-only mode (set by {source}): the broker hands out no tokens; {}",
            if shared.keep_alive {
                "sessions are kept alive (--keep-alive)"
            } else {
                "sessions are not kept alive (--keep-alive would)"
            }
        );
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let tcp = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| {
            Usage(format!(
                "sugar-sessions: cannot listen on {}: {e}",
                args.listen
            ))
        })?;
    let listen = tcp.local_addr().unwrap_or(args.listen);
    let broker = broker::bind(&socket_path).map_err(|e| Usage(format!("sugar-sessions: {e}")))?;
    // Listening for signals before saying it serves: a SIGHUP or SIGTERM right after `serving`
    // (or systemd's READY) must not find the default action (the end of the process) in place.
    let (Ok(term), Ok(int), Ok(hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return Err(Usage("sugar-sessions: cannot listen for signals".into()));
    };
    let http_task = tokio::spawn(http::serve(tcp, shared.clone(), stopped(stop_rx.clone())));
    let broker_task = tokio::spawn(broker::serve(broker, shared.clone(), stopped(stop_rx)));
    tracing::info!(
        %listen,
        socket = %socket_path.display(),
        profiles = shared.kept().len(),
        version = env!("CARGO_PKG_VERSION"),
        "serving"
    );
    let notifier = notify::Notifier::from_env();
    notifier.send("READY=1");

    let code = keep(&shared, args, &path, &notifier, &stop_tx, [term, int, hup]).await;

    let _ = tokio::time::timeout(Duration::from_millis(300), async {
        let _ = http_task.await;
        let _ = broker_task.await;
    })
    .await;
    broker::remove(&socket_path);
    tracing::info!("stopped");
    Ok(code)
}

/// Resolves when `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// The daemon's loop: every [`TICK`], what is due is sent; reports are counted; signals handled.
async fn keep(
    shared: &Arc<Shared>,
    args: &ServeArgs,
    path: &Path,
    notifier: &notify::Notifier,
    stop: &watch::Sender<bool>,
    [mut term, mut int, mut hup]: [tokio::signal::unix::Signal; 3],
) -> i32 {
    let (tx, mut reports) = mpsc::channel::<(String, Report)>(1024);
    let mut jobs: Jobs<String> = Jobs::new(shared.engine.clone(), tx);
    let mut memory: HashMap<String, Memory> = HashMap::new();
    // When each job in flight got its place (or was submitted, until it does).
    let mut in_flight: HashMap<String, Instant> = HashMap::new();
    // The profiles file is reloaded on its edits (and its includes', and on new files in the
    // directories of its globs) as on SIGHUP.
    let file = shared.file();
    let mut watch = crate::runtime::watch::FileWatch::watching(&file.files, &file.dirs);
    drop(file);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_watchdog = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                shared.heartbeat.store(
                    shared.started.elapsed().as_millis() as u64,
                    Ordering::Relaxed,
                );
                if let Some(every) = notifier.watchdog
                    && last_watchdog.elapsed() >= every / 2
                {
                    notifier.send("WATCHDOG=1");
                    last_watchdog = Instant::now();
                }
                round(shared, &mut jobs, &mut memory, &mut in_flight).await;
            }
            Some((name, report)) = reports.recv() => {
                done(shared, &mut memory, &mut in_flight, name, report);
            }
            _ = hup.recv() => reload_and_watch(shared, args, path, &mut watch).await,
            _ = watch.changed() => reload_and_watch(shared, args, path, &mut watch).await,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // The servers stop taking requests first (the broker would start new ones); the jobs in
    // flight then get the grace, and what they return is stored.
    notifier.send("STOPPING=1");
    let _ = stop.send(true);
    tracing::info!(
        in_flight = in_flight.len(),
        "stopping: waiting at most 1.5 s for requests in flight"
    );
    let abandoned = jobs.finish(FINISH_GRACE).await;
    while let Ok((name, report)) = reports.try_recv() {
        done(shared, &mut memory, &mut in_flight, name, report);
    }
    if abandoned > 0 {
        tracing::warn!(abandoned, "requests still in flight were abandoned");
    }
    exit::OK
}

/// One round: each kept session's next step, if any, is submitted (under the bounds).
async fn round(
    shared: &Shared,
    jobs: &mut Jobs<String>,
    memory: &mut HashMap<String, Memory>,
    in_flight: &mut HashMap<String, Instant>,
) {
    if !shared.keeps_alive() {
        // Read-only without --keep-alive: nothing is sent; /metrics and /status read the cache.
        return;
    }
    let cache = match shared.cache().await {
        Ok(cache) => cache,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the token cache; trying again next round");
            return;
        }
    };
    let now = Utc::now();
    let kept = shared.kept();
    let empty = crate::session::Entry::default();
    for p in kept.iter() {
        if in_flight.contains_key(&p.name) {
            continue;
        }
        if !memory.contains_key(&p.name) {
            memory.insert(
                p.name.clone(),
                Memory {
                    last_check: Some(now),
                    ..Memory::default()
                },
            );
        }
        let mem = memory.get_mut(&p.name).expect("just inserted");
        let entry = cache.entry(mem.key_of(p)).unwrap_or(&empty);
        let Some(next) = keeper::next(p, entry, mem, now) else {
            continue;
        };
        let work = match next {
            Next::Op(Op::Login) => {
                mem.last_login = Some(now);
                tracing::info!(profile = %p.name, "logging in (nothing to refresh with)");
                Work::Due(Op::Login)
            }
            // What `keeper::next` decided: a login or a refresh, each decided again under the lock.
            Next::Op(op) => Work::Due(op),
            Next::Check => {
                mem.last_check = Some(now);
                Work::Check
            }
        };
        in_flight.insert(p.name.clone(), Instant::now());
        jobs.submit(p.name.clone(), p.clone(), work);
    }
}

/// A job's report: counted, remembered, logged.
fn done(
    shared: &Shared,
    memory: &mut HashMap<String, Memory>,
    in_flight: &mut HashMap<String, Instant>,
    name: String,
    report: Report,
) {
    let (outcome, check) = match report {
        // The request's duration counts from here, not from the wait for its place.
        Report::Started => {
            in_flight.insert(name, Instant::now());
            return;
        }
        Report::Withdrawn => {
            in_flight.remove(&name);
            return;
        }
        Report::Done {
            outcome, report, ..
        } => (outcome, report),
    };
    let took = in_flight
        .remove(&name)
        .map_or(Duration::ZERO, |at| at.elapsed());
    shared.metrics.sent(&outcome, took);
    if outcome.op == Op::Login
        && let Some(m) = memory.get_mut(&name)
    {
        m.login_done(outcome.ok);
    }
    if let Some(report) = check {
        shared
            .latencies
            .lock()
            .expect("latencies lock")
            .insert(name.clone(), Duration::from_millis(report.latency_ms));
    }
    if outcome.ok {
        tracing::info!(profile = %name, op = outcome.op.as_str(), "{}", outcome.message);
    } else {
        let result = outcome.result();
        tracing::warn!(profile = %name, op = outcome.op.as_str(), result, "{}", outcome.message);
    }
}

/// The platform guard's warnings of the kept profiles, in `list`'s words: a daemon that keeps a
/// profile on `base`, or two of one user on one platform, ends other sessions with each login.
fn log_guard_warnings(kept: &[Arc<Profile>]) {
    for (name, warnings) in crate::guard::warnings(kept) {
        if let Some(p) = kept.iter().find(|p| p.name == name) {
            for w in warnings {
                tracing::warn!(profile = %name, "{}", w.message(p));
            }
        }
    }
}

/// SIGHUP or an edit: the profiles file read again, and the files it is made of watched (with
/// those a refused reload's errors name, so that fixing them is seen).
async fn reload_and_watch(
    shared: &Shared,
    args: &ServeArgs,
    path: &Path,
    watch: &mut crate::runtime::watch::FileWatch,
) {
    let named = reload(shared, args, path).await;
    let file = shared.file();
    watch.replace(&file.files, &file.dirs);
    watch.add_files(&named);
}

/// SIGHUP: the profiles file read again; a broken one keeps the profiles as they were.
/// Returns the files a refused edit's errors name (watched from then on, so that an include just
/// added and not yet right is followed until it is).
async fn reload(shared: &Shared, args: &ServeArgs, path: &Path) -> Vec<std::path::PathBuf> {
    let profiles = match crate::config::load(path) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("reload refused, the profiles stay as they were: {e}");
            return match e {
                crate::config::LoadError::Invalid(errors) => {
                    errors.into_iter().map(|e| e.file).collect()
                }
                crate::config::LoadError::Io { .. } => Vec::new(),
            };
        }
    };
    let cache = match shared.cache().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("reload refused: cannot read the token cache: {e}");
            return Vec::new();
        }
    };
    match choose(&profiles, &cache, args) {
        Ok(kept) => {
            tracing::info!(profiles = kept.len(), "profiles reloaded");
            log_guard_warnings(&kept);
            *shared.kept.write().expect("kept lock") = Arc::new(kept);
            *shared.file.write().expect("file lock") = Arc::new(profiles);
        }
        Err(Usage(e)) => tracing::error!("reload refused, the profiles stay as they were: {e}"),
    }
    Vec::new()
}
