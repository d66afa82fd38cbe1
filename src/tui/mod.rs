//! The screen's runtime: terminal setup and restore, and the one event loop.
//!
//! `select!` over the crossterm `EventStream`, the channel on which request tasks report back, a
//! 1 s tick and what does not come through the keys (SIGTERM, SIGHUP, SIGINT, SIGQUIT, a terminal
//! that hung up, and job control's SIGTSTP and SIGCONT, each noticed off the loop). Every message goes through `app::update`;
//! the Commands it returns run here (requests as tokio tasks). The screen is drawn only when the
//! Model says something it shows changed, so an idle screen writes nothing to the terminal.
//!
//! The terminal is restored by one routine, [`restore_terminal`], called on every way out: quit,
//! a signal, a vanished terminal, an error, and the panic hook installed by [`run`]; and before
//! the process stops for job control (Ctrl-Z, SIGTSTP), after which `setup_terminal` takes it
//! again and the screen is drawn anew. Every way out
//! ends the process within [`QUIT_GRACE`] (see [`Ending`] for the exit statuses), if need be by
//! force (`arm_exit_deadline`).

use crate::app::{self, Command, Model, Msg, Options, Zone};
use crate::config::Profiles;
use crate::runtime::{Engine, Jobs, Report, Work, WorkKind};
use crate::session::Op;
use crate::ui;
use anyhow::Context as _;
use chrono::Utc;
use crossterm::event::{Event, EventStream, KeyEventKind};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::{IsTerminal, Stdout};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use terminal::{
    WayOut, arm_exit_deadline, enter_terminal, install_panic_hook, job_control, listen_for_signals,
    setup_terminal, stop_process_group, watch_for_hangup,
};
use tokio::sync::mpsc;

pub use crate::app::Source;
pub use terminal::restore_terminal;

mod clipboard;
mod terminal;

pub use clipboard::{Multiplexer, osc52};

/// Every way out (q, Ctrl-C, Ctrl-\\, SIGTERM, SIGHUP, SIGINT, SIGQUIT, a vanished terminal) ends
/// the process within this.
pub const QUIT_GRACE: Duration = Duration::from_secs(2);

/// How long a way out waits for requests in flight (the engine persists their results before
/// reporting them); the rest of [`QUIT_GRACE`] is for restoring the terminal and winding down.
const FLIGHT_GRACE: Duration = Duration::from_millis(1500);

/// The last resort: this long after a way out began, the process ends whatever still holds it up
/// (see [`arm_exit_deadline`]).
const EXIT_DEADLINE: Duration = Duration::from_millis(1900);

/// How the screen ended; [`Ending::exit_status`] is the status the process exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// `q`, Ctrl-C or Ctrl-\\: 0.
    Quit,
    /// SIGTERM, SIGHUP, SIGINT or SIGQUIT: 128 + the signal's number (143, 129, 130, 131).
    Signal(i32),
    /// The terminal went away without a signal saying so (it hung up, its reads end, its writes
    /// fail): 129, as for SIGHUP.
    Vanished,
}

impl Ending {
    pub fn exit_status(self) -> i32 {
        match self {
            Ending::Quit => 0,
            Ending::Signal(signal) => 128 + signal,
            Ending::Vanished => 128 + libc::SIGHUP,
        }
    }

    /// Why the screen is closing, for the status line.
    fn reason(self) -> String {
        match self {
            Ending::Quit => "quitting".into(),
            Ending::Signal(libc::SIGTERM) => "terminated (SIGTERM)".into(),
            Ending::Signal(libc::SIGHUP) => "the terminal hung up (SIGHUP)".into(),
            Ending::Signal(libc::SIGINT) => "interrupted (SIGINT)".into(),
            Ending::Signal(libc::SIGQUIT) => "quit (SIGQUIT)".into(),
            Ending::Signal(n) => format!("signal {n}"),
            Ending::Vanished => "the terminal went away".into(),
        }
    }

    /// The terminal cannot be drawn on any more.
    fn terminal_gone(self) -> bool {
        matches!(self, Ending::Signal(libc::SIGHUP) | Ending::Vanished)
    }
}

/// Capacity of the channel on which request tasks report back. Bounded so that a flood of
/// results makes the tasks wait instead of growing memory; the loop is the only receiver, never
/// sends on it itself, and drains it between draws, so a full channel only delays the tasks.
const RESULTS: usize = 1024;

/// Messages handled at most between two draws when many arrive at once (results of a burst).
const BATCH: usize = 512;

/// What the screen runs on.
pub struct TuiOptions {
    pub profiles: Profiles,
    /// The profiles file, or the demo (with where a profiles file belongs).
    pub source: Source,
    /// ASCII symbols even when the locale is UTF-8 (`--ascii`).
    pub ascii: bool,
    /// `--read-only` (the file's `read_only` is read by the model) and `--keep-alive`.
    pub read_only: bool,
    pub keep_alive: bool,
    /// What the token cache has to say while the screen is up (a lock wait, ...): shown in the
    /// footer. The store's [`crate::store::LockPolicy`] sends into it; see [`notice_channel`].
    pub notices: Option<mpsc::UnboundedReceiver<String>>,
}

/// A lock policy for the store under the screen, whose waits are told in the footer (never
/// printed to the terminal the screen draws on), and the receiver for [`TuiOptions::notices`].
pub fn notice_channel(
    timeout: Duration,
) -> (crate::store::LockPolicy, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let policy = crate::store::LockPolicy {
        timeout,
        on_wait: Arc::new(move |what: &str| {
            let _ = tx.send(what.to_string());
        }),
    };
    (policy, rx)
}

impl TuiOptions {
    /// Options for a profiles file.
    pub fn file(profiles: Profiles, ascii: bool) -> TuiOptions {
        let source = Source::File(profiles.path.clone());
        TuiOptions {
            profiles,
            source,
            ascii,
            read_only: false,
            keep_alive: false,
            notices: None,
        }
    }

    /// Options for the demo; `profiles_hint` is where the user's profiles file belongs.
    pub fn demo(profiles: Profiles, profiles_hint: PathBuf, ascii: bool) -> TuiOptions {
        TuiOptions {
            profiles,
            source: Source::Demo { profiles_hint },
            ascii,
            read_only: false,
            keep_alive: false,
            notices: None,
        }
    }
}

/// The drawing options from the environment: ASCII when asked or when the locale is not UTF-8;
/// no colour when `NO_COLOR` is set; copying off when `SUGAR_SESSIONS_CLIPBOARD=off`.
pub fn options_from_env(ascii: bool) -> Options {
    let var = |k: &str| std::env::var(k).ok();
    let utf8 = ui::locale_is_utf8(
        var("LC_ALL").as_deref(),
        var("LC_CTYPE").as_deref(),
        var("LANG").as_deref(),
    );
    Options {
        ascii: ascii || !utf8,
        color: !ui::no_color(var("NO_COLOR").as_deref()),
        zone: Zone::Local,
        clipboard: app::Clipboard::from_env(var("SUGAR_SESSIONS_CLIPBOARD").as_deref()),
        read_only: false,
        keep_alive: false,
    }
}

/// A path as the header shows it: `~/...` under the home directory.
pub fn shown_path(path: PathBuf, home: Option<&std::path::Path>) -> PathBuf {
    match home.filter(|h| !h.as_os_str().is_empty() && *h != std::path::Path::new("/")) {
        Some(home) => match path.strip_prefix(home) {
            Ok(rest) => PathBuf::from("~").join(rest),
            Err(_) => path,
        },
        None => path,
    }
}

// ---------------------------------------------------------------------------------------------
// The loop.
// ---------------------------------------------------------------------------------------------

/// Opens the screen over the profiles and runs until the user quits (or SIGTERM, SIGHUP, SIGINT,
/// or the terminal goes away). Restores the terminal on every way out, and says which it was.
/// The process is expected to end once this returns: it is ended at the latest [`QUIT_GRACE`]
/// after the way out began, whatever still runs.
pub async fn run(engine: Arc<Engine>, opts: TuiOptions) -> anyhow::Result<Ending> {
    if !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "the screen needs a terminal on standard output; for scripts use a command \
             (sugar-sessions --help lists them)"
        );
    }
    let options = Options {
        read_only: opts.read_only,
        keep_alive: opts.keep_alive,
        ..options_from_env(opts.ascii)
    };
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let source = match opts.source {
        Source::File(path) => Source::File(shown_path(path, home.as_deref())),
        Source::Demo { profiles_hint } => Source::Demo {
            profiles_hint: shown_path(profiles_hint, home.as_deref()),
        },
    };
    // Edits of the profiles file are applied while the screen runs (not the demo's file).
    let watched = matches!(source, Source::File(_)).then(|| {
        (
            opts.profiles.path.clone(),
            opts.profiles.files.clone(),
            opts.profiles.dirs.clone(),
        )
    });
    let mut model = Model::new(&opts.profiles, source, options, Utc::now());

    // The cache as it is now, before the first frame.
    let reader = engine.reader().clone();
    let loaded = tokio::task::spawn_blocking(move || reader.read())
        .await
        .context("reading the token cache")?;
    let mut stamp = None;
    match loaded {
        Ok(read) => {
            stamp = read.stamp;
            app::update(&mut model, Msg::CacheReloaded(read.cache), Utc::now());
            for text in read.notices {
                app::update(&mut model, Msg::Notice(text), Utc::now());
            }
        }
        Err(e) => {
            app::update(
                &mut model,
                Msg::Notice(format!("cannot read the token cache: {e}")),
                Utc::now(),
            );
        }
    }

    install_panic_hook();
    let (ways_tx, ways) = mpsc::unbounded_channel();
    listen_for_signals(ways_tx.clone())?;
    watch_for_hangup(ways_tx);
    let result = match enter_terminal() {
        Ok(terminal) => {
            let mut rt = Runtime::new(engine);
            if let Some((path, files, dirs)) = watched {
                watch_profiles(path, files, dirs, rt.engine.clone(), rt.tx.clone());
            }
            let notices = opts.notices.unwrap_or_else(|| mpsc::unbounded_channel().1);
            let result = rt.run(terminal, &mut model, stamp, ways, notices).await;
            arm_exit_deadline(result.as_ref().map_or(1, |e| e.exit_status()));
            rt.finish().await;
            result
        }
        Err(e) => Err(e),
    };
    restore_terminal();
    result
}

/// Applies edits of the profiles file and of the files it includes (`files`; and new files in
/// the directories of its globs, `dirs`): each change that reads well goes to the screen with the
/// token cache as it is, and the files it reads are watched from then on; one that does not, as
/// its located error (the profiles stay as they were; the files its errors name are watched too).
fn watch_profiles(
    path: PathBuf,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    engine: Arc<Engine>,
    tx: mpsc::Sender<Msg>,
) {
    tokio::spawn(async move {
        let mut watch = crate::runtime::watch::FileWatch::watching(&files, &dirs);
        loop {
            watch.changed().await;
            let file = path.clone();
            let loaded = tokio::task::spawn_blocking(move || crate::config::load(&file)).await;
            match &loaded {
                Ok(Ok(profiles)) => watch.replace(&profiles.files, &profiles.dirs),
                Ok(Err(crate::config::LoadError::Invalid(errors))) => {
                    let named: Vec<PathBuf> = errors.iter().map(|e| e.file.clone()).collect();
                    watch.add_files(&named);
                }
                _ => {}
            }
            let msg = match loaded {
                Ok(Ok(profiles)) => match engine.cache().await {
                    Ok(cache) => Msg::ProfilesReloaded {
                        profiles: Box::new(profiles),
                        cache,
                    },
                    Err(e) => Msg::Notice(format!(
                        "profiles file changed, but the token cache cannot be read: {e}"
                    )),
                },
                Ok(Err(e)) => Msg::ProfilesBroken(e.to_string()),
                Err(_) => continue,
            };
            tracing::info!(file = %path.display(), "profiles file changed");
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    });
}

struct Runtime {
    engine: Arc<Engine>,
    /// Cache reloads and notices from background reads.
    tx: mpsc::Sender<Msg>,
    rx: Option<mpsc::Receiver<Msg>>,
    /// The requests of the rows, by row label.
    jobs: Jobs<String>,
    reports: Option<mpsc::Receiver<(String, Report)>>,
    quit: bool,
    /// The terminal is gone (SIGHUP, end or error of the event stream, a failed write): no drawing.
    gone: bool,
    /// Ctrl-Z or SIGTSTP asked for a stop.
    suspend: bool,
    /// The process was continued (SIGCONT): take the terminal again and draw everything.
    continued: bool,
    /// When this process last came back from a stop of its own (its own SIGCONT follows).
    resumed_at: Option<std::time::Instant>,
    /// tmux or GNU screen around the screen: how OSC 52 is sent.
    mux: Multiplexer,
}

impl Runtime {
    fn new(engine: Arc<Engine>) -> Runtime {
        let (tx, rx) = mpsc::channel(RESULTS);
        let (reports_tx, reports) = mpsc::channel(RESULTS);
        Runtime {
            jobs: Jobs::new(engine.clone(), reports_tx),
            engine,
            tx,
            rx: Some(rx),
            reports: Some(reports),
            quit: false,
            gone: false,
            suspend: false,
            continued: false,
            resumed_at: None,
            mux: Multiplexer::from_env(),
        }
    }

    async fn run(
        &mut self,
        terminal: Terminal<CrosstermBackend<Stdout>>,
        model: &mut Model,
        mut stamp: Option<crate::store::FileStamp>,
        mut ways: mpsc::UnboundedReceiver<WayOut>,
        mut notices: mpsc::UnboundedReceiver<String>,
    ) -> anyhow::Result<Ending> {
        // Never dropped: ratatui's Drop shows the cursor again and, when that write fails (the
        // terminal went away), reports it with `eprintln!`, which panics on a dead stderr.
        // `restore_terminal` shows the cursor on every way out instead; the screen buffers it
        // keeps are freed when the process ends, moments later.
        let mut terminal = std::mem::ManuallyDrop::new(terminal);
        let mut rx = self.rx.take().expect("run once");
        let mut reports = self.reports.take().expect("run once");
        let mut events = EventStream::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let reloading = Arc::new(AtomicBool::new(false));
        // The first way out other than the keys, if any: the exit status.
        let mut ending = None;
        // A test hook, not a feature: with SUGAR_SESSIONS_TEST_PANIC=after-first-frame the loop
        // panics right after drawing its first frame, so that tests/terminal.rs can see what a
        // panic does to the terminal with the real binary. Nothing else panics on purpose, and a
        // panic that real input could reach would be a bug to fix, not one to keep for a test.
        let mut test_panic =
            std::env::var_os("SUGAR_SESSIONS_TEST_PANIC").is_some_and(|v| v == "after-first-frame");

        let size = terminal.size().context("cannot read the terminal size")?;
        self.handle(
            model,
            Msg::Resize {
                width: size.width,
                height: size.height,
            },
        );
        // The cached sessions are checked with the server in the background.
        self.handle(model, Msg::Verify);

        loop {
            // Everything on the screen is drawn again after a stop.
            let mut redraw_all = false;
            if std::mem::take(&mut self.suspend) && !self.gone && !self.quit {
                if job_control() {
                    restore_terminal();
                    stop_process_group();
                    self.resumed_at = Some(std::time::Instant::now());
                    redraw_all = true;
                } else {
                    let text = "cannot suspend: nothing here could resume the screen (no shell \
                                with job control started it); q quits";
                    self.handle(model, Msg::Notice(text.into()));
                }
            }
            if std::mem::take(&mut self.continued) && !self.gone && !self.quit {
                // Our own stop has been dealt with already; another's (SIGSTOP) has not.
                redraw_all |= self
                    .resumed_at
                    .is_none_or(|at| at.elapsed() >= Duration::from_millis(500));
            }
            if redraw_all {
                match setup_terminal().and_then(|()| {
                    let size = terminal.size().context("cannot read the terminal size")?;
                    // Erases the screen and forgets the last frame: the next draw is whole.
                    terminal
                        .resize(ratatui::layout::Rect::new(0, 0, size.width, size.height))
                        .context("cannot set up the terminal")?;
                    Ok(size)
                }) {
                    Ok(size) => {
                        self.handle(
                            model,
                            Msg::Resize {
                                width: size.width,
                                height: size.height,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "the terminal cannot be taken again");
                        self.gone = true;
                        let msg = self.way_out(&mut ending, Ending::Vanished);
                        self.handle(model, msg);
                    }
                }
            }
            if (model.take_dirty() || redraw_all) && !self.gone {
                let now = model.clock();
                if let Err(e) = terminal.draw(|f| ui::view(model, now, f)) {
                    // The terminal cannot be written to (EIO: it went away): end, do not retry.
                    tracing::info!(error = %e, "the terminal cannot be written to");
                    self.gone = true;
                    let msg = self.way_out(&mut ending, Ending::Vanished);
                    self.handle(model, msg);
                } else if std::mem::take(&mut test_panic) {
                    panic!("a test panic (SUGAR_SESSIONS_TEST_PANIC=after-first-frame)");
                }
            }
            if self.quit {
                break;
            }
            let msg = tokio::select! {
                event = events.next() => match event {
                    Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => Msg::Key(key),
                    Some(Ok(Event::Resize(width, height))) => Msg::Resize { width, height },
                    Some(Ok(Event::Paste(text))) => Msg::Paste(text),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "the terminal cannot be read");
                        self.way_out(&mut ending, Ending::Vanished)
                    }
                    None => self.way_out(&mut ending, Ending::Vanished),
                },
                Some(msg) = rx.recv() => msg,
                Some((name, report)) = reports.recv() => Self::report_msg(name, report),
                _ = tick.tick() => {
                    self.check_cache(&mut stamp, &reloading);
                    Msg::Tick
                }
                Some(text) = notices.recv() => Msg::Notice(text),
                Some(way) = ways.recv() => match way {
                    WayOut::Signal(number) => self.way_out(&mut ending, Ending::Signal(number)),
                    WayOut::Vanished => self.way_out(&mut ending, Ending::Vanished),
                    WayOut::Suspend => {
                        self.suspend = true;
                        continue;
                    }
                    WayOut::Continued => {
                        self.continued = true;
                        continue;
                    }
                },
                Some(joined) = self.jobs.join_next(), if !self.jobs.is_idle() => match joined {
                    // A task that panicked: the panic hook has restored the terminal already.
                    Err(e) if e.is_panic() => {
                        self.gone = true;
                        return Err(anyhow::anyhow!("internal error: a request task panicked"));
                    }
                    _ => continue,
                },
            };
            self.handle(model, msg);
            // Apply whatever else already arrived before drawing once for all of it.
            for _ in 0..BATCH {
                match reports.try_recv() {
                    Ok((name, report)) => self.handle(model, Self::report_msg(name, report)),
                    Err(_) => match rx.try_recv() {
                        Ok(msg) => self.handle(model, msg),
                        Err(_) => break,
                    },
                }
            }
        }
        // Nothing reads results any more: tasks finishing now still persist theirs (the engine
        // writes before it reports); their sends simply fail.
        drop(rx);
        drop(reports);
        Ok(ending.unwrap_or(Ending::Quit))
    }

    /// What a job's report means for the screen.
    fn report_msg(name: String, report: Report) -> Msg {
        match report {
            Report::Started => Msg::Started { name },
            Report::Withdrawn => Msg::Withdrawn { name },
            Report::Done {
                kind: WorkKind::Op,
                outcome,
                ..
            } => Msg::Done(outcome),
            Report::Done {
                kind: WorkKind::Check,
                outcome,
                report,
            } => Msg::Checked { outcome, report },
            Report::Done {
                kind: WorkKind::Sudo,
                outcome,
                ..
            } => Msg::Impersonated {
                parent: name,
                outcome,
            },
        }
    }

    /// A signal or the terminal ends the screen: notes how (the first way out counts) and tells
    /// the model, which quits.
    fn way_out(&mut self, ending: &mut Option<Ending>, way: Ending) -> Msg {
        let way = *ending.get_or_insert(way);
        self.gone |= way.terminal_gone();
        Msg::Shutdown {
            reason: way.reason(),
        }
    }

    /// Withdraws queued requests, and waits at most [`FLIGHT_GRACE`] for the ones being sent.
    async fn finish(&mut self) {
        let left = self.jobs.finish(FLIGHT_GRACE).await;
        if left > 0 {
            tracing::warn!(left, "quit with requests still in flight");
        }
    }

    fn handle(&mut self, model: &mut Model, msg: Msg) {
        for command in app::update(model, msg, Utc::now()) {
            self.execute(command);
        }
    }

    fn execute(&mut self, command: Command) {
        match command {
            Command::Start {
                name,
                profile,
                op: Op::Refresh,
                due: true,
                ..
            } => self.jobs.submit(name, profile, Work::Due(Op::Refresh)),
            Command::Start {
                name,
                profile,
                op,
                password,
                ..
            } => self.jobs.submit(name, profile, Work::Op { op, password }),
            Command::Check { name, profile } => self.jobs.submit(name, profile, Work::Check),
            Command::Sudo {
                name,
                profile,
                user,
            } => self.jobs.submit(name, profile, Work::Sudo { user }),
            Command::Cancel { name } => {
                self.jobs.cancel(&name);
            }
            Command::Quit => self.quit = true,
            Command::Suspend => self.suspend = true,
            Command::Copy { text } => {
                // A failed write is the terminal going away: the next draw finds that out.
                if let Err(e) = clipboard::copy(text.expose(), self.mux) {
                    tracing::info!(error = %e, "the clipboard sequence cannot be written");
                }
            }
        }
    }

    /// Reloads the cache in the background when its file changed (another process, or our own
    /// writes); a stat per tick, nothing more, when it did not.
    fn check_cache(
        &mut self,
        stamp: &mut Option<crate::store::FileStamp>,
        reloading: &Arc<AtomicBool>,
    ) {
        let reader = self.engine.reader().clone();
        let now = reader.store().stamp();
        if now == *stamp || reloading.load(Ordering::SeqCst) {
            return;
        }
        *stamp = now;
        reloading.store(true, Ordering::SeqCst);
        let tx = self.tx.clone();
        let reloading = reloading.clone();
        tokio::task::spawn_blocking(move || {
            match reader.read() {
                Ok(read) => {
                    let _ = tx.blocking_send(Msg::CacheReloaded(read.cache));
                    for text in read.notices {
                        let _ = tx.blocking_send(Msg::Notice(text));
                    }
                }
                Err(e) => {
                    let _ =
                        tx.blocking_send(Msg::Notice(format!("cannot read the token cache: {e}")));
                }
            }
            reloading.store(false, Ordering::SeqCst);
        });
    }
}
