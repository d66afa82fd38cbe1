//! Many profiles at once from the shell: jobs run concurrently under the bounds, results printed
//! in file order, passwords asked first, Ctrl-C handled (queued requests withdrawn, answers on
//! their way waited for briefly and stored).

use super::Usage;
use super::output::Summary;
use crate::config::{PasswordSource, Profile};
use crate::outcome::FailureKind;
use crate::runtime::{Engine, Jobs, Report, Work};
use crate::secret::Secret;
use crate::session::{CheckReport, Op};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How many times a typed password is asked for when Sugar refuses it (as ssh and gh do).
const TRIES: usize = 3;

/// How long Ctrl-C waits for answers already on their way before the command ends.
pub(super) const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// What became of the jobs of a bulk command, in file order.
pub(super) struct Finished {
    /// What is printed of each profile's outcome (and a live check's report, boxed: most
    /// commands have none), when it ran to the end.
    pub outcomes: Vec<(Summary, Option<Box<CheckReport>>)>,
    /// Ctrl-C ended it.
    pub interrupted: bool,
}

/// Runs `op` (or a live check, with `Op::Check`) on every profile concurrently. Profiles are
/// handed to the bounds host by host in turn, so that a file listing profiles host by host still
/// fills the global bound; passwords only a person can give are asked first, one profile at a
/// time, in file order, and each login is sent as soon as its password is typed.
///
/// Ctrl-C withdraws the requests not sent yet and waits up to [`INTERRUPT_GRACE`] for the ones
/// already sent, so that a refresh token Sugar has already rotated is not lost (a second Ctrl-C
/// ends at once). What was not sent, and what got no answer in time, is named on stderr.
pub(super) async fn run_jobs(
    engine: Arc<Engine>,
    chosen: Vec<Arc<Profile>>,
    op: Op,
    due: bool,
) -> Result<Finished, Usage> {
    // Listening before anything is asked or sent: from here on Ctrl-C is ours to handle.
    let mut interrupt = Interrupt::listen()?;
    // Reading the profiles file and the cache left megabytes free on the main thread's heap;
    // the jobs allocate on the workers' heaps. Give the free pages back before they start, so
    // that the peak is not the sum of both.
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    let n = chosen.len();
    let asks = |p: &Profile| op == Op::Login && p.password == PasswordSource::Prompt;
    let prompted = chosen.iter().filter(|p| asks(p)).count();
    // Room for every report (two a job, and two for each retry of a typed password): the jobs
    // never wait for this loop.
    let (tx, mut rx) = mpsc::channel(2 * n + 2 * (TRIES - 1) * prompted + 1);
    let mut jobs = Jobs::new(engine, tx);
    let work = |password: Option<Secret>| match op {
        Op::Check => Work::Check,
        // `refresh --due`: each decided again under its lock.
        Op::Refresh if due => Work::Due(Op::Refresh),
        op => Work::Op { op, password },
    };
    let mut submitted = vec![false; n];
    let mut tries = vec![1; n];
    for i in interleaved_by_host(&chosen) {
        if !asks(&chosen[i]) {
            jobs.submit(i, chosen[i].clone(), work(None));
            submitted[i] = true;
        }
    }
    let mut interrupted = false;
    for (i, p) in chosen.iter().enumerate() {
        if submitted[i] || interrupted {
            continue;
        }
        match ask_password(p, 1, &mut interrupt).await {
            Ok(pw) => {
                jobs.submit(i, p.clone(), work(pw));
                submitted[i] = true;
            }
            Err(Interrupted) => {
                interrupted = true;
                jobs.cancel_all();
            }
        }
    }
    let mut results: Vec<Option<(Summary, Option<Box<CheckReport>>)>> =
        (0..n).map(|_| None).collect();
    let mut started = vec![false; n];
    let mut withdrawn = vec![false; n];
    let mut left = submitted.iter().filter(|s| **s).count();
    let grace = tokio::time::sleep(if interrupted {
        INTERRUPT_GRACE
    } else {
        Duration::MAX
    });
    tokio::pin!(grace);
    while left > 0 {
        tokio::select! {
            Some((i, report)) = rx.recv() => match report {
                Report::Started => started[i] = true,
                Report::Withdrawn => {
                    withdrawn[i] = true;
                    left -= 1;
                }
                Report::Done { outcome, report, .. } => {
                    // A typed password Sugar refused is asked again, up to three tries in all.
                    let refused = outcome.failure.as_ref().is_some_and(|f| {
                        f.kind == FailureKind::Credentials && f.op == Op::Login
                    });
                    if refused && asks(&chosen[i]) && tries[i] < TRIES && !interrupted {
                        eprintln!("{}", outcome.message);
                        tries[i] += 1;
                        match ask_password(&chosen[i], tries[i], &mut interrupt).await {
                            Ok(Some(pw)) => {
                                jobs.submit(i, chosen[i].clone(), work(Some(pw)));
                                continue;
                            }
                            Ok(None) => {}
                            Err(Interrupted) => {
                                interrupted = true;
                                jobs.cancel_all();
                                grace.as_mut().reset(tokio::time::Instant::now() + INTERRUPT_GRACE);
                            }
                        }
                    }
                    results[i] = Some((Summary::from(*outcome), report.map(Box::new)));
                    left -= 1;
                }
            },
            _ = interrupt.recv() => {
                if interrupted {
                    // A second Ctrl-C: stop now.
                    break;
                }
                interrupted = true;
                jobs.cancel_all();
                eprintln!(
                    "sugar-sessions: interrupted: waiting up to {} s for answers already on their way (Ctrl-C again to stop now)",
                    INTERRUPT_GRACE.as_secs()
                );
                grace.as_mut().reset(tokio::time::Instant::now() + INTERRUPT_GRACE);
            }
            _ = &mut grace => break,
        }
    }
    for (i, p) in chosen.iter().enumerate() {
        if withdrawn[i] {
            eprintln!("{}: not sent (interrupted)", p.name);
        } else if submitted[i] && results[i].is_none() {
            if started[i] {
                eprintln!("{}: sent, but no answer came in time (interrupted)", p.name);
            } else {
                eprintln!("{}: not sent (interrupted)", p.name);
            }
        }
    }
    Ok(Finished {
        outcomes: results.into_iter().flatten().collect(),
        interrupted,
    })
}

/// The indexes of `chosen`, host by host in turn (the first of each host, then the second of
/// each, ...), each host's own profiles in file order.
fn interleaved_by_host(chosen: &[Arc<Profile>]) -> Vec<usize> {
    let mut hosts: Vec<(String, Vec<usize>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, p) in chosen.iter().enumerate() {
        let host = p.host_port();
        let at = *index.entry(host.clone()).or_insert_with(|| {
            hosts.push((host, Vec::new()));
            hosts.len() - 1
        });
        hosts[at].1.push(i);
    }
    let longest = hosts.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    (0..longest)
        .flat_map(|round| hosts.iter().filter_map(move |(_, v)| v.get(round).copied()))
        .collect()
}

/// Asks for a password on the terminal, without echo: `Ok(None)` when there is no terminal to ask
/// on (or nothing was typed), an error when the read failed (Ctrl-C interrupts it). `attempt`
/// counts from 1; later tries say which they are.
fn prompt_password(p: &Profile, attempt: usize) -> std::io::Result<Option<Secret>> {
    if !std::io::stdin().is_terminal() && std::fs::File::open("/dev/tty").is_err() {
        return Ok(None);
    }
    let again = if attempt > 1 {
        format!(", try {attempt} of {TRIES}")
    } else {
        String::new()
    };
    let prompt = format!(
        "Password for {} ({} at {}{again}): ",
        p.name,
        p.username,
        p.host_port()
    );
    let password = rpassword::prompt_password(prompt)?;
    Ok((!password.is_empty()).then(|| Secret::new(password)))
}

/// Ctrl-C at a password prompt.
struct Interrupted;

/// Asks for a profile's password on the terminal without echo. Ctrl-C puts the terminal's modes
/// back as they were before the prompt (echo on) and gives up.
async fn ask_password(
    p: &Profile,
    attempt: usize,
    interrupt: &mut Interrupt,
) -> Result<Option<Secret>, Interrupted> {
    let saved = TtyModes::save();
    let profile = p.clone();
    let prompt = tokio::task::spawn_blocking(move || prompt_password(&profile, attempt));
    let give_up = || {
        if let Some(saved) = &saved {
            saved.restore();
        }
        eprintln!();
        Err(Interrupted)
    };
    tokio::select! {
        biased;
        _ = interrupt.recv() => give_up(),
        answer = prompt => match answer {
            Ok(Ok(pw)) => Ok(pw),
            // The read was cut short: by the Ctrl-C that the branch above is about to see.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                let _ = tokio::time::timeout(std::time::Duration::from_millis(200), interrupt.recv()).await;
                give_up()
            }
            Ok(Err(_)) | Err(_) => Ok(None),
        },
    }
}

/// SIGINT (Ctrl-C) as a stream, listened to from the moment it is made.
struct Interrupt(tokio::signal::unix::Signal);

impl Interrupt {
    fn listen() -> Result<Interrupt, Usage> {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map(Interrupt)
            .map_err(|e| Usage(format!("sugar-sessions: cannot listen for Ctrl-C: {e}")))
    }

    async fn recv(&mut self) {
        self.0.recv().await;
    }
}

/// The modes of the controlling terminal, to put back after an interrupted prompt.
pub(super) struct TtyModes {
    tty: std::fs::File,
    modes: libc::termios,
}

impl TtyModes {
    pub(super) fn save() -> Option<TtyModes> {
        use std::os::fd::AsRawFd;
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        // SAFETY: tcgetattr fills a plain C struct for an open file descriptor.
        let mut modes: libc::termios = unsafe { std::mem::zeroed() };
        (unsafe { libc::tcgetattr(tty.as_raw_fd(), &mut modes) } == 0)
            .then_some(TtyModes { tty, modes })
    }

    pub(super) fn restore(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: sets the modes read by `save` on the same open terminal.
        unsafe {
            libc::tcsetattr(self.tty.as_raw_fd(), libc::TCSANOW, &self.modes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_take_turns_and_keep_their_own_order() {
        let text = "[defaults]\nusername = \"u\"\n\
            [profiles.a1]\nurl = \"https://a.example\"\n[profiles.a2]\nurl = \"https://a.example\"\n\
            [profiles.a3]\nurl = \"https://a.example\"\n[profiles.b1]\nurl = \"https://b.example\"\n\
            [profiles.c1]\nurl = \"https://c.example:8443\"\n[profiles.c2]\nurl = \"https://c.example:8443\"\n";
        let profiles = crate::config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let chosen = profiles.profiles;
        let names: Vec<&str> = interleaved_by_host(&chosen)
            .into_iter()
            .map(|i| chosen[i].name.as_str())
            .collect();
        assert_eq!(names, ["a1", "b1", "c1", "a2", "c2", "a3"]);
    }
}
