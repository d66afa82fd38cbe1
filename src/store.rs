//! The token cache on disk: `sessions.json` in the state directory, and the protocol every
//! process that shares it follows.
//!
//! - Entries are keyed by the session's identity ([`SessionKey`]), never by a profile's name.
//! - Every entry carries a generation. A change names the generation it was computed from and is
//!   applied only if the entry still has it ([`Expect::Generation`], compare-and-swap), or is made
//!   by the holder of the identity's lock ([`Expect::Held`]), who alone may rotate or end a session.
//!   A lost race changes nothing and hands back the entry as it now is.
//! - Locks: `sessions.lock` guards each read-modify-write of the file (held for milliseconds);
//!   `locks/<digest>.lock` guards one identity while its tokens are used to get new ones or end
//!   them (held across the request). Every wait is bounded ([`LockPolicy`]) and visible, and names
//!   the holder (recorded as `pid command` in the lock file, checked against `/proc/locks`).
//! - Nothing is sent that cannot be kept: [`Store::prepare`] takes the file lock, checks the
//!   directory, and preallocates the temporary file of the next write before a request goes out.
//! - The file is written to a temporary file, synced and renamed (a reader, or a process killed
//!   mid-write, sees the old or the new file), mode 0600 in a directory of mode 0700 owned by the
//!   user; a directory others may write to, or owned by someone else, is refused.
//! - A cache that does not parse is moved aside (kept for inspection), never silently lost; one
//!   written by a newer release is left alone. Format 1 (keyed by profile name) is read and
//!   migrated on the first write.

use crate::identity::SessionKey;
use crate::outcome::{Failure, FailureKind, Op};
use crate::session::{Entry, Session};
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const CACHE_FILE: &str = "sessions.json";
pub const LOCK_FILE: &str = "sessions.lock";
pub const LOCK_DIR: &str = "locks";
pub const FORMAT_VERSION: u32 = 2;

/// The default bound of a lock wait (`--lock-timeout`).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// A lock wait is reported (once) after this long.
pub const LOCK_NOTICE_AFTER: Duration = Duration::from_secs(1);

/// Everything the cache holds: one entry per session identity (format 2).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Cache {
    pub version: u32,
    #[serde(default)]
    pub sessions: IndexMap<SessionKey, Entry>,
}

impl Cache {
    pub fn entry(&self, key: &SessionKey) -> Option<&Entry> {
        self.sessions.get(key)
    }

    /// The entry of `key`, or an empty one (generation 0).
    pub fn entry_or_default(&self, key: &SessionKey) -> Entry {
        self.sessions.get(key).cloned().unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{}: the token cache is readable by others (mode {mode:03o}); it holds session tokens, so it is not used: run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{}: {why}: {fix}", path.display())]
    Unsafe {
        path: PathBuf,
        why: String,
        fix: String,
    },
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error(
        "{}: the lock is held by {holder}; gave up after {} s (--lock-timeout)",
        path.display(),
        waited.as_secs_f64().round()
    )]
    LockTimeout {
        path: PathBuf,
        holder: Holder,
        waited: Duration,
    },
    #[error(
        "{}: written by a newer sugar-sessions (cache format {version}, this one knows {FORMAT_VERSION}); it is left as it is: use that release, or --state-dir elsewhere",
        path.display()
    )]
    Newer { path: PathBuf, version: u32 },
}

fn io_err(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io { path, what, source }
}

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

/// What a change to an entry was computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Made by the holder of the identity's lock, who alone rotates or ends the session: applied
    /// over whatever a check or a failure wrote meanwhile.
    Held,
    /// Computed from this generation of the entry: applied only if the entry still has it.
    Generation(u64),
}

/// One change of one entry.
pub struct Change {
    pub key: SessionKey,
    /// The profile's name, recorded as the entry's label.
    pub label: String,
    pub expect: Expect,
    pub apply: Box<dyn FnOnce(&mut Entry) + Send>,
}

/// What became of a [`Change`].
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// Applied; the entry as written.
    Done(Entry),
    /// Another process changed the entry first: nothing was changed; the entry as it is.
    Lost(Entry),
}

/// The token cache of one state directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    /// The file as this process last wrote or parsed it (shared by clones).
    known: Arc<Mutex<Option<Known>>>,
    policy: LockPolicy,
    /// For reading a format-1 cache: profile name → (client id, user name).
    names: Arc<HashMap<String, (String, String)>>,
    /// The temporary file of the next write, created and preallocated before a request is sent.
    spare: Arc<Mutex<Option<Spare>>>,
}

#[derive(Debug)]
struct Spare {
    file: tempfile::NamedTempFile,
    capacity: u64,
}

/// The cache file's bytes with their parsed form: a read that finds exactly these bytes on disk
/// reuses the parsed cache instead of parsing again. Without it a bulk action re-parses the whole
/// cache for every batch of results it writes and every entry it reads: O(N²) in the profiles.
struct Known {
    bytes: Vec<u8>,
    cache: Arc<Cache>,
    /// The file version the bytes were read from or written as, when that is certain.
    stamp: Option<FileStamp>,
}

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Known({} bytes)", self.bytes.len())
    }
}

/// Which version of the cache file is on disk: a rename gives a new inode, so any write changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(m: &fs::Metadata) -> FileStamp {
        FileStamp {
            ino: m.ino(),
            len: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        }
    }
}

/// What loading found besides the cache itself.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// A cache that did not parse was moved to this path; the message says why.
    pub moved_aside: Option<(PathBuf, String)>,
}

impl LoadReport {
    /// The one wording of what loading found, for every front end.
    pub fn notice(&self) -> Option<String> {
        self.moved_aside.as_ref().map(|(aside, why)| {
            format!(
                "the token cache did not parse ({why}); it was moved aside to {}",
                aside.display()
            )
        })
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a directory that others may write to or that belongs to someone else (as OpenSSH
/// refuses such files): whoever can write there can swap the cache or plant links.
fn check_dir(dir: &Path) -> Result<(), StoreError> {
    let m = fs::metadata(dir).map_err(io_err(dir, "cannot use the state directory"))?;
    if !m.is_dir() {
        return Err(StoreError::Unsafe {
            path: dir.to_path_buf(),
            why: "the state directory is not a directory".into(),
            fix: "pass --state-dir DIR".into(),
        });
    }
    let mode = m.permissions().mode() & 0o7777;
    if m.uid() != euid() {
        return Err(StoreError::Unsafe {
            path: dir.to_path_buf(),
            why: format!(
                "the state directory belongs to uid {}, not to you (uid {})",
                m.uid(),
                euid()
            ),
            fix: format!(
                "run `chown {} {}`, or pass --state-dir DIR",
                euid(),
                dir.display()
            ),
        });
    }
    if mode & 0o022 != 0 {
        return Err(StoreError::Unsafe {
            path: dir.to_path_buf(),
            why: format!("the state directory is writable by others (mode {mode:03o})"),
            fix: format!("run `chmod 700 {}`", dir.display()),
        });
    }
    Ok(())
}

/// Creates a directory of mode 0700 when missing.
fn ensure_dir(dir: &Path, what: &'static str) -> Result<(), StoreError> {
    match fs::symlink_metadata(dir) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir, what)),
        Err(e) => Err(io_err(dir, what)(e)),
    }
}

impl Store {
    /// Opens (creating with mode 0700 when missing) a state directory; refuses one that others
    /// may write to or that belongs to someone else (and a symlink to one).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let dir = dir.into();
        ensure_dir(&dir, "cannot create the state directory")?;
        check_dir(&dir)?;
        Ok(Store {
            dir,
            known: Arc::default(),
            policy: LockPolicy::default(),
            names: Arc::default(),
            spare: Arc::default(),
        })
    }

    /// How this store's lock waits behave.
    pub fn with_lock_policy(mut self, policy: LockPolicy) -> Store {
        self.policy = policy;
        self
    }

    /// The profiles' client ids and users, for reading a format-1 cache (keyed by profile name):
    /// an entry's client id comes from the profile of that name, else `sugar`.
    pub fn with_profile_names(
        mut self,
        names: impl IntoIterator<Item = (String, String, String)>,
    ) -> Store {
        self.names = Arc::new(
            names
                .into_iter()
                .map(|(name, client, user)| (name, (client, user)))
                .collect(),
        );
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn cache_path(&self) -> PathBuf {
        self.dir.join(CACHE_FILE)
    }

    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }

    /// The lock file of one identity: named from its digest, never from names.
    pub fn key_lock_path(&self, key: &SessionKey) -> PathBuf {
        self.dir
            .join(LOCK_DIR)
            .join(format!("{}.lock", key.digest()))
    }

    /// Refuses a cache file that the group or others may read, or that is not the user's, or
    /// that is not a plain file (a symlink planted in its place).
    fn check_mode(path: &Path) -> Result<(), StoreError> {
        match fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_file() => Err(StoreError::Unsafe {
                path: path.to_path_buf(),
                why: "the token cache is not a plain file (a symlink?)".into(),
                fix: format!("remove it: `rm {}`", path.display()),
            }),
            Ok(m) if m.uid() != euid() => Err(StoreError::Unsafe {
                path: path.to_path_buf(),
                why: format!("the token cache belongs to uid {}, not to you", m.uid()),
                fix: format!("remove it or run `chown {} {}`", euid(), path.display()),
            }),
            Ok(m) if m.permissions().mode() & 0o077 != 0 => Err(StoreError::TooOpen {
                path: path.to_path_buf(),
                mode: m.permissions().mode() & 0o777,
            }),
            _ => Ok(()),
        }
    }

    fn known_len(&self) -> usize {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.as_ref().map_or(0, |k| k.bytes.len())
    }

    fn remember(&self, known: Option<Known>) {
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = known;
    }

    /// The remembered parse, if the file on disk is still the version it was read from or written as.
    fn known_at(&self, stamp: Option<FileStamp>) -> Option<Arc<Cache>> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known
            .as_ref()
            .filter(|k| stamp.is_some() && k.stamp == stamp)
            .map(|k| k.cache.clone())
    }

    /// Parses `bytes`, or reuses the parse of the same bytes from last time; `keep`: remember this
    /// parse for next time, with the file version `stamp` it was read from.
    fn parse(
        &self,
        bytes: Vec<u8>,
        keep: bool,
        stamp: Option<FileStamp>,
    ) -> Result<Arc<Cache>, Unreadable> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = known.as_mut().filter(|k| k.bytes == bytes) {
            if keep && stamp.is_some() {
                k.stamp = stamp;
            }
            return Ok(k.cache.clone());
        }
        let cache = Arc::new(decode(&bytes, &self.names)?);
        if keep {
            *known = Some(Known {
                bytes,
                cache: cache.clone(),
                stamp,
            });
        }
        Ok(cache)
    }

    /// Reads the cache without taking the lock (a rename is atomic, so this sees a whole file).
    pub fn load(&self) -> Result<(Cache, LoadReport), StoreError> {
        self.read(false)
            .map(|(cache, report)| (Arc::unwrap_or_clone(cache), report))
    }

    /// [`load`](Self::load), sharing the parsed cache: a file that did not change since this process
    /// last wrote or read it is not parsed again.
    pub fn load_shared(&self) -> Result<(Arc<Cache>, LoadReport), StoreError> {
        self.read(true)
    }

    fn read(&self, keep: bool) -> Result<(Arc<Cache>, LoadReport), StoreError> {
        let path = self.cache_path();
        Self::check_mode(&path)?;
        let before = self.stamp();
        if let Some(cache) = self.known_at(before) {
            return Ok((cache, LoadReport::default()));
        }
        let Some(bytes) = read_file(&path)? else {
            return Ok((Arc::default(), LoadReport::default()));
        };
        // The version read is certain only if the file did not change while it was read.
        let stamp = before.filter(|_| self.stamp() == before);
        match self.parse(bytes, keep, stamp) {
            Ok(cache) => Ok((cache, LoadReport::default())),
            Err(Unreadable::Newer(version)) => Err(StoreError::Newer { path, version }),
            Err(Unreadable::Broken(_)) => {
                let _lock = self.lock()?;
                // Re-check under the lock: another process may just have replaced it.
                let Some(bytes) = read_file(&path)? else {
                    return Ok((Arc::default(), LoadReport::default()));
                };
                match self.parse(bytes, keep, None) {
                    Ok(cache) => Ok((cache, LoadReport::default())),
                    Err(Unreadable::Newer(version)) => Err(StoreError::Newer { path, version }),
                    Err(Unreadable::Broken(why)) => {
                        let aside = self.move_aside(&path)?;
                        Ok((
                            Arc::default(),
                            LoadReport {
                                moved_aside: Some((aside, why)),
                            },
                        ))
                    }
                }
            }
        }
    }

    fn move_aside(&self, path: &Path) -> Result<PathBuf, StoreError> {
        let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
        let aside = self.dir.join(format!(
            "{CACHE_FILE}.corrupt-{stamp}-{}",
            std::process::id()
        ));
        fs::rename(path, &aside)
            .map_err(io_err(path, "cannot move the unreadable token cache aside"))?;
        Ok(aside)
    }

    /// The lock of the cache file (bounded, visible wait).
    fn lock(&self) -> Result<LockGuard, StoreError> {
        acquire(&self.lock_path(), "the token cache", &self.policy)
    }

    /// The lock of one identity, held while its tokens are used to get new ones or to end them, so
    /// that two processes never send the same refresh token and never decide on a stale session.
    /// Waits at most the policy's timeout; released on drop.
    pub fn lock_key(&self, key: &SessionKey) -> Result<LockGuard, StoreError> {
        let dir = self.dir.join(LOCK_DIR);
        ensure_dir(&dir, "cannot create the lock directory")?;
        acquire(
            &self.key_lock_path(key),
            &format!("the session {key}"),
            &self.policy,
        )
    }

    /// Identifies the cache file's current content cheaply (inode, size, modification time).
    pub fn stamp(&self) -> Option<FileStamp> {
        fs::symlink_metadata(self.cache_path())
            .ok()
            .map(|m| FileStamp::of(&m))
    }

    /// Makes sure the next write can succeed before a request that rotates or ends a session is
    /// sent: takes the file lock (a bounded wait that names the holder), checks the directory and
    /// the file, and creates the temporary file of the next write, preallocated to the size it
    /// will need, so that a full disk fails here and not after the server answered.
    pub fn prepare(&self) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        check_dir(&self.dir)?;
        let path = self.cache_path();
        Self::check_mode(&path)?;
        let len = fs::symlink_metadata(&path).map_or(0, |m| m.len());
        let need = len + len / 8 + 64 * 1024;
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = spare.as_ref()
            && s.capacity >= need
            && s.file.path().exists()
        {
            return Ok(());
        }
        *spare = Some(self.new_spare(need)?);
        Ok(())
    }

    fn new_spare(&self, capacity: u64) -> Result<Spare, StoreError> {
        let file = tempfile::Builder::new()
            .prefix(&format!(".sessions.{}.", std::process::id()))
            .suffix(".tmp")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(&self.dir)
            .map_err(io_err(
                &self.dir,
                "cannot create a temporary file for the token cache",
            ))?;
        preallocate(file.as_file(), capacity).map_err(io_err(
            file.path(),
            "no room for the token cache's next version",
        ))?;
        Ok(Spare { file, capacity })
    }

    /// Applies changes under the file lock: each to the entry as it is on disk now, if it still
    /// has the generation the change was computed from (or the change is the lock holder's).
    pub fn apply(&self, changes: Vec<Change>) -> Result<Vec<Applied>, StoreError> {
        self.update(|cache| apply(cache, changes, Utc::now()))
    }

    /// Read-modify-write under the lock: re-reads the cache, lets `f` change it, writes it atomically.
    /// `f` should change only the entries it is about, so that other processes' results survive.
    pub fn update<R>(&self, f: impl FnOnce(&mut Cache) -> R) -> Result<R, StoreError> {
        let _lock = self.lock()?;
        let path = self.cache_path();
        Self::check_mode(&path)?;
        let mut cache = match read_file(&path)? {
            Some(bytes) => match self.parse(bytes, false, None) {
                Ok(c) => c,
                Err(Unreadable::Newer(version)) => {
                    return Err(StoreError::Newer { path, version });
                }
                Err(Unreadable::Broken(_)) => {
                    self.move_aside(&path)?;
                    Arc::default()
                }
            },
            None => Arc::default(),
        };
        // (Readers may keep using the old version's parse until the new file replaces it: it is
        // keyed by its bytes, so it never stands for anything else.)
        let result = f(Arc::make_mut(&mut cache));
        Arc::make_mut(&mut cache).version = FORMAT_VERSION;
        let (bytes, stamp) = self.write(&cache)?;
        self.remember(Some(Known {
            bytes,
            cache,
            stamp,
        }));
        self.remove_stale_temp_files();
        Ok(result)
    }

    /// Temporary files that a killed writer left behind (we hold the lock): those of processes
    /// that are gone, and any older than a day.
    fn remove_stale_temp_files(&self) {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Some(rest) = name
                .strip_prefix(".sessions.")
                .filter(|_| name.ends_with(".tmp"))
            else {
                continue;
            };
            let owner_gone = rest
                .split('.')
                .next()
                .and_then(|pid| pid.parse::<i32>().ok())
                // SAFETY: kill with signal 0 only checks whether the process exists.
                .is_none_or(|pid| {
                    let rc = unsafe { libc::kill(pid, 0) };
                    rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
                });
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 86_400));
            if owner_gone || old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Writes the cache atomically (into the prepared temporary file when there is one); returns
    /// the bytes written and the file version they became.
    fn write(&self, cache: &Cache) -> Result<(Vec<u8>, Option<FileStamp>), StoreError> {
        let path = self.cache_path();
        // Sized like the last version, so that the buffer does not grow by doubling (and copying).
        let mut json = Vec::with_capacity(self.known_len() + 4096);
        serde_json::to_writer_pretty(&mut json, cache).expect("the cache always serialises");
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|s| s.file.path().exists());
        let mut tmp = match spare {
            Some(s) => s.file,
            None => self.new_spare(json.len() as u64)?.file,
        };
        let file = tmp.as_file_mut();
        file.write_all(&json)
            .and_then(|()| file.set_len(json.len() as u64))
            .map_err(io_err(&path, "cannot write the token cache"))?;
        file.sync_all()
            .map_err(io_err(&path, "cannot sync the token cache"))?;
        // The rename keeps the inode, size and modification time: the version the file becomes.
        let stamp = file.metadata().ok().map(|m| FileStamp::of(&m));
        tmp.persist(&path).map_err(|e| StoreError::Io {
            path: path.clone(),
            what: "cannot replace the token cache",
            source: e.error,
        })?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok((json, stamp))
    }
}

/// The compare-and-swap step of the protocol, on a cache as read under the file lock: each change
/// is applied to its entry if the entry still has the generation it was computed from (or the
/// change is the identity lock holder's), which then counts one more generation; otherwise nothing
/// changes and the entry as it is comes back. Pure: the store runs it between its read and its
/// write, and the protocol's interleaving test runs it directly.
pub fn apply(cache: &mut Cache, changes: Vec<Change>, now: DateTime<Utc>) -> Vec<Applied> {
    changes
        .into_iter()
        .map(|change| {
            let entry = cache.sessions.entry(change.key).or_default();
            if let Expect::Generation(g) = change.expect
                && entry.generation != g
            {
                return Applied::Lost(entry.clone());
            }
            (change.apply)(entry);
            entry.generation += 1;
            entry.profile = Some(change.label);
            entry.updated_at = Some(now);
            Applied::Done(entry.clone())
        })
        .collect()
}

/// Reserves `len` bytes for a file, so that writing them cannot fail for want of space. File
/// systems that cannot preallocate are left to the write itself.
fn preallocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fallocate only changes the open file's allocation.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    match rc {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Reads a file without following a symlink; `None` when it does not exist.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "cannot read the token cache")(e)),
    };
    let mut bytes = Vec::with_capacity(file.metadata().map_or(0, |m| m.len() as usize));
    file.read_to_end(&mut bytes)
        .map_err(io_err(path, "cannot read the token cache"))?;
    Ok(Some(bytes))
}

/// Opens (creating with mode 0600, never through a symlink) a lock file and takes an exclusive
/// lock on it, waiting at most the policy's timeout; then records `pid command` in it.
fn acquire(path: &Path, what: &str, policy: &LockPolicy) -> Result<LockGuard, StoreError> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(path, "cannot open the lock file"))?;
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
    let _ = file.set_len(0);
    let _ = writeln!(file, "{} {}", std::process::id(), own_command());
    Ok(LockGuard { file })
}

/// `sugar-sessions refresh`: the program and its subcommand (never more of the command line).
fn own_command() -> String {
    let args: Vec<String> = std::env::args().collect();
    let program = args
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .map_or(a.clone(), |f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "sugar-sessions".into());
    match args.iter().skip(1).find(|a| !a.starts_with('-')) {
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
    let recorded = text.lines().next().and_then(|line| {
        let (pid, cmd) = line.split_once(' ')?;
        Some((pid.parse::<u32>().ok()?, cmd.trim().to_string()))
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

/// Why a cache file could not be used.
enum Unreadable {
    /// Written by a newer release: leave it alone.
    Newer(u32),
    /// Not JSON, or not the cache's shape: moved aside.
    Broken(String),
}

/// The file as written, in either format.
#[derive(Deserialize)]
struct RawCache {
    #[serde(default)]
    version: u32,
    #[serde(default)]
    sessions: Option<IndexMap<SessionKey, Entry>>,
    /// Format 1: entries keyed by profile name.
    #[serde(default)]
    profiles: Option<IndexMap<String, V1Entry>>,
}

#[derive(Deserialize)]
struct V1Entry {
    #[serde(default)]
    session: Option<Session>,
    #[serde(default)]
    failure: Option<V1Failure>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    relogin_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct V1Failure {
    at: DateTime<Utc>,
    op: Op,
    message: String,
    #[serde(default)]
    needs_login: bool,
    #[serde(default)]
    superseded: bool,
}

fn decode(bytes: &[u8], names: &HashMap<String, (String, String)>) -> Result<Cache, Unreadable> {
    // The version first, so that a newer format is recognised even if its shape changed.
    #[derive(Deserialize)]
    struct Version {
        #[serde(default)]
        version: u32,
    }
    let version = serde_json::from_slice::<Version>(bytes)
        .map_err(|e| Unreadable::Broken(e.to_string()))?
        .version;
    if version > FORMAT_VERSION {
        return Err(Unreadable::Newer(version));
    }
    let raw: RawCache =
        serde_json::from_slice(bytes).map_err(|e| Unreadable::Broken(e.to_string()))?;
    let sessions = match (raw.sessions, raw.profiles) {
        (Some(sessions), _) => sessions,
        (None, Some(v1)) => migrate(v1, names),
        (None, None) => IndexMap::new(),
    };
    Ok(Cache {
        version: raw.version.max(1),
        sessions,
    })
}

/// Format 1 → 2: each entry with a session is keyed by the session's url, user and platform and
/// the client id of the profile of its name (else `sugar`); an impersonation `NAME>USER` by
/// NAME's identity and USER. Entries that held only a failure are dropped.
fn migrate(
    v1: IndexMap<String, V1Entry>,
    names: &HashMap<String, (String, String)>,
) -> IndexMap<SessionKey, Entry> {
    let mut out: IndexMap<SessionKey, Entry> = IndexMap::with_capacity(v1.len());
    for (name, old) in v1 {
        let Some(session) = old.session else {
            continue;
        };
        let key = match name.split_once('>') {
            Some((parent, user)) => {
                let (client, admin) = names
                    .get(parent)
                    .map(|(c, u)| (c.as_str(), u.as_str()))
                    .unwrap_or(("sugar", session.username.as_str()));
                SessionKey::new(&session.url, admin, &session.platform, client).impersonating(user)
            }
            None => {
                let client = names.get(&name).map_or("sugar", |(c, _)| c.as_str());
                SessionKey::new(&session.url, &session.username, &session.platform, client)
            }
        };
        let failure = old.failure.map(|f| {
            let text = f
                .message
                .strip_prefix(&format!("{name}: "))
                .unwrap_or(&f.message);
            let text = text
                .strip_prefix(&format!("{} failed: ", f.op))
                .or_else(|| text.strip_prefix("superseded: "))
                .unwrap_or(text);
            Failure {
                kind: if f.superseded {
                    FailureKind::Superseded
                } else if f.needs_login {
                    FailureKind::Credentials
                } else {
                    FailureKind::Server
                },
                needs_login: f.needs_login,
                ..Failure::local(f.op, f.at, text)
            }
        });
        let entry = Entry {
            generation: 1,
            profile: Some(name),
            session: Some(session),
            failure,
            updated_at: old.updated_at,
            relogin_at: old.relogin_at,
        };
        // Two names for one identity: the newer session stands.
        match out.get(&key) {
            Some(e)
                if e.session.as_ref().map(|s| s.obtained_at)
                    >= entry.session.as_ref().map(|s| s.obtained_at) => {}
            _ => {
                out.insert(key, entry);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Entry;

    fn key(user: &str) -> SessionKey {
        SessionKey::new("https://acme.example.com", user, "custom_api", "sugar")
    }

    fn put(store: &Store, user: &str) {
        store
            .apply(vec![Change {
                key: key(user),
                label: user.into(),
                expect: Expect::Held,
                apply: Box::new(|_| {}),
            }])
            .unwrap();
    }

    #[test]
    fn cache_and_dir_have_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("state")).unwrap();
        put(&store, "a");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.cache_path()), 0o600);
        assert_eq!(mode(store.dir()), 0o700);
    }

    #[test]
    fn updates_merge_instead_of_overwriting() {
        let tmp = tempfile::tempdir().unwrap();
        let one = Store::open(tmp.path()).unwrap();
        let two = Store::open(tmp.path()).unwrap();
        put(&one, "a");
        put(&two, "b");
        let (cache, _) = one.load().unwrap();
        assert_eq!(
            cache.sessions.keys().collect::<Vec<_>>(),
            [&key("a"), &key("b")]
        );
    }

    #[test]
    fn a_change_from_an_old_generation_is_lost_and_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        put(&store, "a");
        put(&store, "a");
        let change = |g, text: &'static str| Change {
            key: key("a"),
            label: "a".into(),
            expect: Expect::Generation(g),
            apply: Box::new(move |e: &mut Entry| {
                e.failure = Some(Failure::local(Op::Check, Utc::now(), text))
            }),
        };
        let applied = store.apply(vec![change(1, "stale")]).unwrap();
        assert!(
            matches!(&applied[0], Applied::Lost(e) if e.generation == 2 && e.failure.is_none())
        );
        let applied = store.apply(vec![change(2, "current")]).unwrap();
        assert!(matches!(&applied[0], Applied::Done(e) if e.generation == 3));
        let (cache, _) = store.load().unwrap();
        assert_eq!(
            cache
                .entry(&key("a"))
                .unwrap()
                .failure
                .as_ref()
                .unwrap()
                .message,
            "current"
        );
    }

    #[test]
    fn a_cache_others_can_read_is_refused_with_a_chmod_hint() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        put(&store, "a");
        fs::set_permissions(store.cache_path(), fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("readable by others (mode 644)"), "{err}");
        assert!(
            err.contains(&format!("chmod 600 {}", store.cache_path().display())),
            "{err}"
        );
        assert!(store.update(|_| ()).is_err(), "nor written");
        fs::set_permissions(store.cache_path(), fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(store.load().unwrap().0.sessions.len(), 1);
    }

    #[test]
    fn a_corrupt_cache_is_moved_aside_not_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        fs::write(store.cache_path(), b"{ not json").unwrap();
        fs::set_permissions(store.cache_path(), fs::Permissions::from_mode(0o600)).unwrap();
        let (cache, report) = store.load().unwrap();
        assert!(cache.sessions.is_empty());
        let (aside, why) = report.moved_aside.expect("moved aside");
        assert_eq!(fs::read(&aside).unwrap(), b"{ not json");
        assert!(!why.is_empty());
    }

    #[test]
    fn a_cache_of_a_newer_release_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let text = br#"{"version": 3, "whatever": []}"#;
        fs::write(store.cache_path(), text).unwrap();
        fs::set_permissions(store.cache_path(), fs::Permissions::from_mode(0o600)).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(
            err.contains("newer sugar-sessions (cache format 3"),
            "{err}"
        );
        assert!(store.update(|_| ()).is_err());
        assert_eq!(fs::read(store.cache_path()).unwrap(), text, "untouched");
    }

    #[test]
    fn a_state_dir_others_can_write_to_is_refused_and_so_is_a_symlink_to_one() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = Store::open(&open).unwrap_err().to_string();
        assert!(err.contains("writable by others (mode 777)"), "{err}");
        assert!(
            err.contains(&format!("chmod 700 {}", open.display())),
            "{err}"
        );
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&open, &link).unwrap();
        assert!(Store::open(&link).is_err());
        fs::set_permissions(&open, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(Store::open(&link).is_ok());
    }

    #[test]
    fn a_symlink_planted_as_the_cache_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("state")).unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&victim, store.cache_path()).unwrap();
        assert!(store.load().is_err());
        assert!(store.update(|_| ()).is_err());
        std::os::unix::fs::symlink(&victim, store.lock_path()).unwrap_or(());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn a_held_lock_is_waited_for_boundedly_and_its_holder_named() {
        let tmp = tempfile::tempdir().unwrap();
        let told = Arc::new(Mutex::new(Vec::<String>::new()));
        let heard = told.clone();
        let store = Store::open(tmp.path())
            .unwrap()
            .with_lock_policy(LockPolicy {
                timeout: Duration::from_millis(1500),
                on_wait: Arc::new(move |m| heard.lock().unwrap().push(m.to_string())),
            });
        let holder = acquire(&store.lock_path(), "test", &LockPolicy::default()).unwrap();
        let start = Instant::now();
        let err = store.prepare().unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(1500));
        let me = std::process::id();
        match &err {
            StoreError::LockTimeout { holder, .. } => assert_eq!(holder.pid, Some(me)),
            other => panic!("{other}"),
        }
        assert!(
            err.to_string().contains(&format!("held by {me} (")),
            "{err}"
        );
        let told = told.lock().unwrap().clone();
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(
            told[0].starts_with("waiting for the lock on the token cache held by"),
            "{told:?}"
        );
        drop(holder);
        store.prepare().unwrap();
    }

    #[test]
    fn a_lock_file_that_is_a_directory_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        fs::create_dir(store.lock_path()).unwrap();
        let err = store.prepare().unwrap_err().to_string();
        assert!(err.contains("cannot open the lock file"), "{err}");
        assert!(err.contains("Is a directory"), "{err}");
    }

    #[test]
    fn prepare_leaves_a_preallocated_private_temporary_file_that_the_next_write_uses() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        store.prepare().unwrap();
        let temps = || {
            fs::read_dir(tmp.path())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                .map(|e| e.path())
                .collect::<Vec<_>>()
        };
        let spare = temps();
        assert_eq!(spare.len(), 1);
        let m = fs::metadata(&spare[0]).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert!(
            m.blocks() * 512 >= 64 * 1024,
            "space reserved: {} blocks",
            m.blocks()
        );
        put(&store, "a");
        assert!(temps().is_empty(), "the write used it");
        assert_eq!(store.load().unwrap().0.sessions.len(), 1);
    }
}
