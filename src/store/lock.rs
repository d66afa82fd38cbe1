//! Bounded, visible lock waits that name the holder: [`acquire`], [`LockPolicy`], [`LockGuard`].

use super::{StoreError, io_err};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{DEFAULT_LOCK_TIMEOUT, LOCK_NOTICE_AFTER};

/// Who holds a lock, as far as can be told.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    pub command: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.pid, &self.command) {
            (Some(pid), Some(cmd)) => write!(f, "{pid} ({cmd})"),
            (Some(pid), None) => write!(f, "{pid}"),
            _ => f.write_str("another process"),
        }
    }
}

/// How lock waits behave: their bound, and whom to tell when one takes a while.
#[derive(Clone)]
pub struct LockPolicy {
    pub timeout: Duration,
    /// Called once per wait, [`LOCK_NOTICE_AFTER`] into it, with what is waited for: the shell
    /// prints it on a terminal, the screen shows it in its footer.
    pub on_wait: Arc<dyn Fn(&str) + Send + Sync>,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            timeout: DEFAULT_LOCK_TIMEOUT,
            on_wait: Arc::new(|_| {}),
        }
    }
}

impl std::fmt::Debug for LockPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockPolicy({:?})", self.timeout)
    }
}

/// A held lock: released (and its holder record cleared) when dropped.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Clear the holder record before the lock goes (closing the file releases it).
        let _ = self.file.set_len(0);
    }
}

/// Opens (creating with mode 0600, never through a symlink) a lock file and takes an exclusive
/// lock on it, waiting at most the policy's timeout; then records `pid command` in it.
pub(super) fn acquire(
    path: &Path,
    what: &str,
    policy: &LockPolicy,
) -> Result<LockGuard, StoreError> {
    let mut file = open_lock(path)?;
    let start = Instant::now();
    let mut told = false;
    let mut pause = Duration::from_millis(2);
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => {
                return Err(io_err(path, "cannot lock the lock file")(e));
            }
        }
        let waited = start.elapsed();
        if waited >= policy.timeout {
            return Err(StoreError::LockTimeout {
                path: path.to_path_buf(),
                holder: holder_of(&mut file),
                waited,
            });
        }
        if !told && waited >= LOCK_NOTICE_AFTER {
            told = true;
            (policy.on_wait)(&format!(
                "waiting for the lock on {what} held by {}…",
                holder_of(&mut file)
            ));
        }
        std::thread::sleep(pause.min(policy.timeout.saturating_sub(waited)));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    Ok(held(file))
}

/// [`acquire`] without waiting: taken, held by another now, or (with [`Create::No`]) no lock file
/// there to take.
pub(super) fn acquire_now(path: &Path, create: Create) -> Result<Now, StoreError> {
    let file = match create {
        Create::Yes => open_lock(path)?,
        Create::No => match lock_options(false).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Now::NoFile),
            Err(e) => return Err(io_err(path, "cannot open the lock file")(e)),
        },
    };
    match file.try_lock() {
        Ok(()) => Ok(Now::Taken(held(file))),
        Err(fs::TryLockError::WouldBlock) => Ok(Now::Held),
        Err(fs::TryLockError::Error(e)) => Err(io_err(path, "cannot lock the lock file")(e)),
    }
}

/// What a lock taken without waiting ([`acquire_now`]) found.
#[derive(Debug)]
pub enum Now {
    /// Taken: held until the guard is dropped.
    Taken(LockGuard),
    /// Another holds it now.
    Held,
    /// Its lock file (or the lock directory) does not exist yet, and was not to be made.
    NoFile,
}

impl Now {
    /// The lock, when it was taken.
    pub fn taken(self) -> Option<LockGuard> {
        match self {
            Now::Taken(guard) => Some(guard),
            Now::Held | Now::NoFile => None,
        }
    }
}

/// Whether [`acquire_now`] may create the lock file. Creating a file can take milliseconds (an
/// ext4 without a journal searches past recently deleted inodes: BENCHMARKS.md, "Missed, and
/// why"): a caller that must not stand still that long asks for a lock file that is already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    Yes,
    No,
}

/// Makes a lock file (mode 0600, never through a symlink) if it is missing; takes nothing.
pub(super) fn make_lock_file(path: &Path) -> Result<(), StoreError> {
    open_lock(path).map(drop)
}

/// Opens a lock file, creating it with mode 0600, never through a symlink.
fn open_lock(path: &Path) -> Result<File, StoreError> {
    lock_options(true)
        .open(path)
        .map_err(io_err(path, "cannot open the lock file"))
}

/// How a lock file is opened: read and write, never through a symlink, made 0600 when created.
fn lock_options(create: bool) -> OpenOptions {
    let mut options = OpenOptions::new();
    options
        .create(create)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    options
}

/// The lock just taken on `file`, with its holder's record: `pid command`, in one write, so that
/// another process naming the holder reads no record or a whole one (never `pid` alone).
fn held(mut file: File) -> LockGuard {
    let _ = file.set_len(0);
    let record = format!("{} {}\n", std::process::id(), own_command());
    let _ = file.write_all(record.as_bytes());
    LockGuard { file }
}

/// The lock at `path` is free now (taken and given back at once; never waited for). A lock file
/// that cannot be opened counts as not free: the bounded wait then says why.
pub(super) fn is_free(path: &Path) -> bool {
    let Ok(file) = open_lock(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            true
        }
        Err(_) => false,
    }
}

/// `sugar-sessions refresh`: the program and its subcommand (never more of the command line).
fn own_command() -> &'static str {
    static COMMAND: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    COMMAND.get_or_init(command_of_this_process)
}

fn command_of_this_process() -> String {
    let args: Vec<String> = std::env::args().collect();
    let program = args
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .map_or(a.clone(), |f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "sugar-sessions".into());
    match crate::argv::command_word(&args) {
        Some(sub) if sub.len() <= 32 => format!("{program} {sub}"),
        _ => program,
    }
    .chars()
    .filter(|c| !c.is_control())
    .collect()
}

/// Who holds the lock on `file`: the record a sugar-sessions holder leaves in it, checked against
/// the kernel's list of locks (`/proc/locks`), which also names a holder that left no record.
fn holder_of(file: &mut File) -> Holder {
    let mut text = String::new();
    let _ = io::Seek::seek(file, io::SeekFrom::Start(0));
    let _ = file.take(256).read_to_string(&mut text);
    // Only a whole line: a record read while its holder writes it may stop anywhere (`pid `, or
    // a command cut short); the kernel's word and the process's name are used instead.
    let recorded = text.split_once('\n').and_then(|(line, _)| {
        let (pid, cmd) = line.split_once(' ')?;
        let cmd = cmd.trim();
        Some((
            pid.parse::<u32>().ok()?,
            (!cmd.is_empty()).then(|| cmd.to_string())?,
        ))
    });
    let kernel = file.metadata().ok().and_then(|m| lock_owner(m.ino()));
    match (recorded, kernel) {
        (Some((pid, cmd)), Some(k)) if pid == k => Holder {
            pid: Some(pid),
            command: Some(cmd),
        },
        (_, Some(k)) => Holder {
            pid: Some(k),
            command: process_name(k),
        },
        (Some((pid, cmd)), None) => Holder {
            pid: Some(pid),
            command: Some(cmd),
        },
        (None, None) => Holder::default(),
    }
}

/// The process holding a lock on the file with inode `ino`, from `/proc/locks` (Linux).
fn lock_owner(ino: u64) -> Option<u32> {
    let locks = fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF` (a `->` marks a waiter).
        if fields.get(1) == Some(&"->") {
            return None;
        }
        let dev_ino = fields.get(5)?;
        let file_ino = dev_ino.rsplit(':').next()?.parse::<u64>().ok()?;
        (file_ino == ino).then(|| fields.get(4)?.parse().ok())?
    })
}

/// `flock` or `sugar-sessions`: a process's name, without its arguments.
fn process_name(pid: u32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let comm: String = comm.trim().chars().filter(|c| !c.is_control()).collect();
    (!comm.is_empty()).then_some(comm)
}
