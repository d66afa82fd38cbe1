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
use crate::ui;
use anyhow::Context as _;
use chrono::Utc;
use crossterm::event::{
    DisableBracketedPaste, EnableBracketedPaste, Event, EventStream, KeyEventKind,
};
use crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::{IsTerminal, Stdout, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

pub use crate::app::Source;

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
            notices: None,
        }
    }

    /// Options for the demo; `profiles_hint` is where the user's profiles file belongs.
    pub fn demo(profiles: Profiles, profiles_hint: PathBuf, ascii: bool) -> TuiOptions {
        TuiOptions {
            profiles,
            source: Source::Demo { profiles_hint },
            ascii,
            notices: None,
        }
    }
}

/// The drawing options from the environment: ASCII when asked or when the locale is not UTF-8;
/// no colour when `NO_COLOR` is set.
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
// The terminal.
// ---------------------------------------------------------------------------------------------

/// The terminal is in raw mode / on the alternate screen (and must be restored).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Puts the terminal back as it was: raw mode off, bracketed paste off, alternate screen left,
/// cursor shown. Does nothing when the screen is not up; safe to call more than once and from
/// the panic hook.
pub fn restore_terminal() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let _ = disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = execute!(
        out,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        cursor::Show
    );
    let _ = out.flush();
}

/// Chains a panic hook that restores the terminal before the previous hook prints the message.
/// Installed once per process.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let screen_was_up = ACTIVE.load(Ordering::SeqCst);
            restore_terminal();
            previous(info);
            if screen_was_up {
                arm_exit_deadline(crate::exit::PANIC);
            }
        }));
    });
}

/// Starts (once) a thread that ends the process [`EXIT_DEADLINE`] from now with `status`, in case
/// the orderly way out is held up: a write to a terminal whose other side stopped reading (a
/// stalled SSH connection) blocks for ever, and a blocking task cannot be cancelled. On the way
/// only raw mode is switched off (a termios call, which does not wait for the terminal); no escape
/// sequence is written and stdout is not flushed (`_exit`), since those could block too. The cache
/// is replaced atomically, so ending during a write leaves the previous cache whole.
fn arm_exit_deadline(status: i32) {
    static ARMED: AtomicBool = AtomicBool::new(false);
    if ARMED.swap(true, Ordering::SeqCst) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("exit-deadline".into())
        .spawn(move || {
            std::thread::sleep(EXIT_DEADLINE);
            if ACTIVE.swap(false, Ordering::SeqCst) {
                let _ = disable_raw_mode();
            }
            tracing::warn!(status, "the way out was held up; ending the process");
            // SAFETY: ends the process at once, without running anything else.
            unsafe { libc::_exit(status) }
        });
    if spawned.is_err() {
        ARMED.store(false, Ordering::SeqCst);
    }
}

/// What does not come through the screen's keys: a way out, or job control.
#[derive(Debug, Clone, Copy)]
enum WayOut {
    Signal(i32),
    /// The terminal hung up.
    Vanished,
    /// SIGTSTP: not a way out, but a step aside until the process is continued.
    Suspend,
    /// SIGCONT: the process was continued after a stop (by us or by anyone).
    Continued,
}

/// Listens for SIGTERM, SIGHUP, SIGINT and SIGQUIT, and job control's SIGTSTP and SIGCONT, on a
/// task of its own, so that a signal is heard even while the loop is held up, and from before the
/// terminal is touched: once a signal is listened for it no longer ends (or stops) the process on
/// the spot, which could leave the terminal in raw mode.
fn listen_for_signals(tx: mpsc::UnboundedSender<WayOut>) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut quit = signal(SignalKind::quit()).context("cannot listen for SIGQUIT")?;
    let mut tstp =
        signal(SignalKind::from_raw(libc::SIGTSTP)).context("cannot listen for SIGTSTP")?;
    let mut cont =
        signal(SignalKind::from_raw(libc::SIGCONT)).context("cannot listen for SIGCONT")?;
    tokio::spawn(async move {
        loop {
            let way = tokio::select! {
                Some(()) = term.recv() => WayOut::Signal(libc::SIGTERM),
                Some(()) = hup.recv() => WayOut::Signal(libc::SIGHUP),
                Some(()) = int.recv() => WayOut::Signal(libc::SIGINT),
                Some(()) = quit.recv() => WayOut::Signal(libc::SIGQUIT),
                Some(()) = tstp.recv() => WayOut::Suspend,
                Some(()) = cont.recv() => WayOut::Continued,
                else => return,
            };
            if let WayOut::Signal(number) = way {
                arm_exit_deadline(Ending::Signal(number).exit_status());
            }
            if tx.send(way).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// Whether a shell could continue the process after a stop: its process group is not orphaned
/// (the parent of one of its members is in the same session but another group, as a job-control
/// shell is). The kernel drops SIGTSTP sent to an orphaned group, and SIGSTOP there would leave
/// the screen stopped with nothing to continue it (as under `ssh -t host sugar-sessions`). Where
/// `/proc` cannot tell, it is assumed.
fn job_control() -> bool {
    // (parent, process group, session) of a process.
    let ids = |pid: libc::pid_t| -> Option<(libc::pid_t, libc::pid_t, libc::pid_t)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let mut fields = text[text.rfind(')')? + 1..].split_whitespace().skip(1);
        let mut next = || fields.next()?.parse().ok();
        Some((next()?, next()?, next()?))
    };
    // SAFETY: these only read the process's own ids.
    let (me, group, session) = unsafe { (libc::getpid(), libc::getpgrp(), libc::getsid(0)) };
    let outside_parent = |(parent, _, _): (libc::pid_t, libc::pid_t, libc::pid_t)| {
        ids(parent).is_some_and(|(_, g, s)| g != group && s == session)
    };
    match ids(me) {
        // The usual case: a shell started this process as a job.
        Some(own) if outside_parent(own) => true,
        Some(_) => std::fs::read_dir("/proc").map_or(true, |dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
                .filter_map(ids)
                .any(|member| member.1 == group && outside_parent(member))
        }),
        None => true,
    }
}

/// Stops the process group as the terminal's Ctrl-Z would (SIGTSTP, with its default action:
/// stop), and returns once the process is continued. The handler installed to listen for SIGTSTP
/// is set aside meanwhile, and put back only once the signal has been taken: whichever thread
/// takes it stops the whole process, this thread too before it returns from a system call, so
/// that nothing runs on until the process is continued.
fn stop_process_group() {
    // SAFETY: sigaction with a zeroed struct set to SIG_DFL, and the previous action restored as
    // it was; kill, sigpending and sigismember on valid arguments.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut default.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGTSTP, &default, &mut previous) != 0 {
            libc::raise(libc::SIGSTOP);
            return;
        }
        libc::kill(0, libc::SIGTSTP);
        for _ in 0..1000 {
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pending);
            if libc::sigpending(&mut pending) != 0
                || libc::sigismember(&pending, libc::SIGTSTP) != 1
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        libc::sigaction(libc::SIGTSTP, &previous, std::ptr::null_mut());
    }
}

/// Watches the terminal for a hang-up (its other side closed, as when an SSH connection drops)
/// from a thread of its own, blocked in `poll(2)` asking for no event at all: poll still reports
/// the hang-up and error conditions, and nothing else wakes it, so it costs nothing while the
/// terminal lives. This also covers a terminal that is not the controlling one, which no SIGHUP
/// announces.
fn watch_for_hangup(tx: mpsc::UnboundedSender<WayOut>) {
    let stdin_is_tty = std::io::stdin().is_terminal();
    let fd = if stdin_is_tty {
        libc::STDIN_FILENO
    } else {
        libc::STDOUT_FILENO
    };
    let _ = std::thread::Builder::new()
        .name("hangup-watch".into())
        .spawn(move || {
            loop {
                let mut p = libc::pollfd {
                    fd,
                    events: 0,
                    revents: 0,
                };
                // SAFETY: one pollfd, for a standard descriptor that stays open.
                let rc = unsafe { libc::poll(&mut p, 1, -1) };
                if rc < 0 {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                if p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                    if stdin_is_tty {
                        park_stdin();
                    }
                    arm_exit_deadline(Ending::Vanished.exit_status());
                    let _ = tx.send(WayOut::Vanished);
                    return;
                }
            }
        });
}

/// crossterm's event reader (0.29) retries a read that fails or finds the end of the file at once
/// and for ever, so on a terminal that hung up its thread would spin at full speed until the
/// process ends. Standard input is replaced by the read end of a pipe that nobody writes to (the
/// write end stays open, so reads wait rather than end): the reader's next read waits there.
fn park_stdin() {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new descriptors; dup2 replaces descriptor 0 in one step.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return;
        }
        libc::dup2(fds[0], libc::STDIN_FILENO);
        libc::close(fds[0]);
        // fds[1], the write end, stays open for the life of the process on purpose.
    }
}

/// Takes the terminal for the screen: raw mode, the alternate screen (erased), bracketed paste,
/// cursor hidden. Again after a stop too, when a shell may have put its own modes back meanwhile.
fn setup_terminal() -> anyhow::Result<()> {
    ACTIVE.store(true, Ordering::SeqCst);
    // crossterm does nothing when it holds raw mode to be on already: put its saved modes back
    // first (nothing when it is off).
    let _ = disable_raw_mode();
    enable_raw_mode().context("cannot put the terminal in raw mode")?;
    // A plain erase, not `Terminal::clear`: that asks the terminal for the cursor position and
    // fails on terminals that do not answer.
    execute!(
        std::io::stdout(),
        EnterAlternateScreen,
        EnableBracketedPaste,
        cursor::Hide,
        Clear(ClearType::All)
    )
    .context("cannot set up the terminal")
}

fn enter_terminal() -> anyhow::Result<Terminal<CrosstermBackend<Stdout>>> {
    setup_terminal()?;
    Terminal::new(CrosstermBackend::new(std::io::stdout())).context("cannot set up the terminal")
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
    let options = options_from_env(opts.ascii);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let source = match opts.source {
        Source::File(path) => Source::File(shown_path(path, home.as_deref())),
        Source::Demo { profiles_hint } => Source::Demo {
            profiles_hint: shown_path(profiles_hint, home.as_deref()),
        },
    };
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
                op,
                password,
            } => self
                .jobs
                .submit(name, Arc::new(*profile), Work::Op { op, password }),
            Command::Check { name, profile } => {
                self.jobs.submit(name, Arc::new(*profile), Work::Check)
            }
            Command::Sudo {
                name,
                profile,
                user,
            } => self
                .jobs
                .submit(name, Arc::new(*profile), Work::Sudo { user }),
            Command::Cancel { name } => {
                self.jobs.cancel(&name);
            }
            Command::Quit => self.quit = true,
            Command::Suspend => self.suspend = true,
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
