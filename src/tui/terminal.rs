//! The terminal itself: raw mode and the alternate screen taken and given back (on every way
//! out, and around job control's stops), the panic hook, the signals and a hung-up terminal
//! noticed off the loop, and the exit deadline.

use super::{EXIT_DEADLINE, Ending};
use anyhow::Context as _;
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::{IsTerminal, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

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
pub(super) fn install_panic_hook() {
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
pub(super) fn arm_exit_deadline(status: i32) {
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
pub(super) enum WayOut {
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
pub(super) fn listen_for_signals(tx: mpsc::UnboundedSender<WayOut>) -> anyhow::Result<()> {
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
pub(super) fn job_control() -> bool {
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
pub(super) fn stop_process_group() {
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
pub(super) fn watch_for_hangup(tx: mpsc::UnboundedSender<WayOut>) {
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
pub(super) fn park_stdin() {
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
pub(super) fn setup_terminal() -> anyhow::Result<()> {
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

pub(super) fn enter_terminal() -> anyhow::Result<Terminal<CrosstermBackend<Stdout>>> {
    setup_terminal()?;
    Terminal::new(CrosstermBackend::new(std::io::stdout())).context("cannot set up the terminal")
}
