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
//! - Nothing is sent that cannot be kept: [`Store::prepare`] makes sure the file lock can be had,
//!   checks the directory, and has the temporary file of the next write preallocated before a
//!   request goes out.
//! - The file is written to a temporary file, synced and renamed (a reader, or a process killed
//!   mid-write, sees the old or the new file), mode 0600 in a directory of mode 0700 owned by the
//!   user; a directory others may write to, or owned by someone else, is refused.
//! - A cache that does not parse is moved aside (kept for inspection), never silently lost; one
//!   written by a newer release is left alone. Format 1 (keyed by profile name) is read and
//!   migrated on the first write.

mod files;
mod format;
mod lock;
mod protocol;
#[cfg(test)]
mod tests;

pub use crate::session::Cache;
pub use lock::{Holder, LockGuard, LockPolicy};
pub use protocol::{Applied, Change, Expect, apply};

use crate::identity::SessionKey;
use crate::session::Entry;
use chrono::Utc;
use files::{check_dir, ensure_dir, euid, open_file, preallocate, read_file, read_rest};
use format::{Unreadable, decode};
pub use lock::{Create, Now};
use lock::{acquire, acquire_now, make_lock_file};

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const CACHE_FILE: &str = "sessions.json";
pub const LOCK_FILE: &str = "sessions.lock";
pub const LOCK_DIR: &str = "locks";
/// The token broker's socket (`serve`) in the state directory.
pub const BROKER_SOCKET: &str = "broker.sock";
pub const FORMAT_VERSION: u32 = 2;

/// The default bound of a lock wait (`--lock-timeout`).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// A lock wait is reported (once) after this long.
pub const LOCK_NOTICE_AFTER: Duration = Duration::from_secs(1);

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

pub(super) fn io_err(
    path: &Path,
    what: &'static str,
) -> impl FnOnce(io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io { path, what, source }
}

/// Profile name → (client id, user name), for reading a format-1 cache: made when first needed.
#[derive(Clone, Default)]
pub(super) struct Names {
    make: Option<Arc<NamesFn>>,
    made: Arc<std::sync::OnceLock<HashMap<String, (String, String)>>>,
}

type NamesFn = dyn Fn() -> HashMap<String, (String, String)> + Send + Sync;

impl Names {
    pub(super) fn get(&self) -> &HashMap<String, (String, String)> {
        self.made
            .get_or_init(|| self.make.as_ref().map(|make| make()).unwrap_or_default())
    }
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Names")
    }
}

/// The token cache of one state directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    /// The file as this process last wrote or parsed it (shared by clones).
    known: Arc<Mutex<Option<Known>>>,
    policy: LockPolicy,
    /// For reading a format-1 cache: profile name → (client id, user name).
    names: Names,
    /// The temporary file of the next write, created and preallocated before a request is sent.
    spare: Arc<Mutex<Option<Spare>>>,
    /// This process is writing the cache (holds its lock) now.
    writing: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug)]
struct Spare {
    file: tempfile::NamedTempFile,
    capacity: u64,
}

impl Spare {
    /// Still there, with room for a version that needs `need` bytes.
    fn fits(&self, need: u64) -> bool {
        self.capacity >= need && self.file.path().exists()
    }
}

/// The room `prepare` wants ready for the next write of a cache file of `len` bytes: the file as
/// it is, and some growth.
fn spare_need(len: u64) -> u64 {
    len + len / 8 + 64 * 1024
}

/// The room a write makes ready for the next one, before its own version is written: enough for
/// [`spare_need`] of that version too when it grows by what one write of a bulk action adds, so
/// that requests prepared meanwhile find it ready.
fn spare_size(len: u64) -> u64 {
    spare_need(spare_need(len))
}

/// Marks this process as writing while it lives.
struct Writing<'a>(&'a std::sync::atomic::AtomicBool);

impl<'a> Writing<'a> {
    fn mark(flag: &'a std::sync::atomic::AtomicBool) -> Writing<'a> {
        flag.store(true, std::sync::atomic::Ordering::Release);
        Writing(flag)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// The parsed form of the file version this process last wrote or read: a read that finds that
/// version on disk reuses it instead of parsing again. Without it a bulk action re-parses the
/// whole cache for every batch of results it writes and every entry it reads: O(N²) in the
/// profiles. (Only its length is kept of the text: ten thousand sessions are megabytes.)
struct Known {
    len: usize,
    cache: Arc<Cache>,
    /// The file version the bytes were read from or written as, when that is certain.
    stamp: Option<FileStamp>,
}

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Known({} bytes)", self.len)
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
            names: Names::default(),
            spare: Arc::default(),
            writing: Arc::default(),
        })
    }

    /// How this store's lock waits behave.
    pub fn with_lock_policy(mut self, policy: LockPolicy) -> Store {
        self.policy = policy;
        self
    }

    /// The profiles' client ids and users, for reading a format-1 cache (keyed by profile name):
    /// an entry's client id comes from the profile of that name, else `sugar`.
    /// `names` is called only when a format-1 file is read, at most once: a command that reads
    /// a format-2 cache does not build the table for its thousands of profiles.
    pub fn with_profile_names<I>(mut self, names: impl Fn() -> I + Send + Sync + 'static) -> Store
    where
        I: IntoIterator<Item = (String, String, String)>,
    {
        self.names = Names {
            make: Some(Arc::new(move || {
                names()
                    .into_iter()
                    .map(|(name, client, user)| (name, (client, user)))
                    .collect()
            })),
            made: Arc::default(),
        };
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
        known.as_ref().map_or(0, |k| k.len)
    }

    /// The version of the file on disk now, and the parse this process holds of it (it read or
    /// wrote that version), if any. The file is looked at while the remembered parse cannot
    /// change: a write replaces both at once (see [`write`](Self::write)), so a look during a
    /// write sees the old file with the old parse or the new file with the new one, never the
    /// old file with the new parse (which sent it to read and parse the whole file again).
    pub fn known(&self) -> (Option<FileStamp>, Option<Arc<Cache>>) {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = self.stamp();
        let cache = known
            .as_ref()
            .filter(|k| stamp.is_some() && k.stamp == stamp)
            .map(|k| k.cache.clone());
        (stamp, cache)
    }

    /// Parses `bytes`; `keep`: remember this parse for next time, with the file version `stamp`
    /// it was read from.
    fn parse(
        &self,
        bytes: files::FileBytes,
        keep: bool,
        stamp: Option<FileStamp>,
    ) -> Result<Arc<Cache>, Unreadable> {
        let cache = Arc::new(decode(&bytes, &self.names)?);
        // Remembered only as a certain version, and never over the parse of the version the file
        // is now (a read that began before this process's last write finishes after it), nor
        // while this process writes: the write remembers the version it makes just before the
        // rename, and a read finishing in between would replace it with the version it replaces.
        if keep && stamp.is_some() {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            let current = known.as_ref().and_then(|k| k.stamp);
            let writing = self.writing.load(std::sync::atomic::Ordering::Acquire);
            if current.is_none() || (current != self.stamp() && !writing) {
                *known = Some(Known {
                    len: bytes.len(),
                    cache: cache.clone(),
                    stamp,
                });
            }
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
        let (before, known) = self.known();
        if let Some(cache) = known {
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

    /// The entry of one identity as the file holds it now, for a command about one session
    /// (`token`): a file this process already parsed is not parsed again, and otherwise only that
    /// entry is built: found by its key's text in a file as this program writes it (a cache of
    /// thousands of sessions costs a read through one small buffer), else by a scan. Anything
    /// unusual (format 1, a newer format, a broken file) goes through the whole read, which says
    /// what is wrong and moves a broken file aside. A file as written whose *other* entries are
    /// broken (a hand edit) still gives this one: the next whole read, by any command that
    /// writes or shows every session, moves it aside.
    pub fn read_entry(&self, key: &SessionKey) -> Result<(Entry, LoadReport), StoreError> {
        let path = self.cache_path();
        Self::check_mode(&path)?;
        if let (_, Some(cache)) = self.known() {
            return Ok((cache.entry_or_default(key), LoadReport::default()));
        }
        let Some(mut file) = open_file(&path)? else {
            return Ok((Entry::default(), LoadReport::default()));
        };
        // A file as this program writes it: the entry found by its key's text, read a chunk at
        // a time. Anything else (no entry, another shape, a file cut short): the scan.
        if let Some(entry) = format::seek_entry(&mut file, key) {
            return Ok((entry, LoadReport::default()));
        }
        let bytes = read_rest(&mut file, &path)?;
        if let Some(found) = format::find_entry(&bytes, key) {
            return Ok((found.unwrap_or_default(), LoadReport::default()));
        }
        let (cache, report) = self.read(true)?;
        Ok((cache.entry_or_default(key), report))
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

    /// The lock a daemon holds for its lifetime (`serve.lock`): one daemon per state directory.
    /// Never waited for: a second daemon is refused at once, naming the first.
    pub fn lock_daemon(&self) -> Result<LockGuard, StoreError> {
        let policy = LockPolicy {
            timeout: std::time::Duration::ZERO,
            on_wait: Arc::new(|_| {}),
        };
        acquire(&self.dir.join("serve.lock"), "the daemon's lock", &policy)
    }

    /// The lock of one identity, held while its tokens are used to get new ones or to end them, so
    /// that two processes never send the same refresh token and never decide on a stale session.
    /// Waits at most the policy's timeout; released on drop.
    pub fn lock_key(&self, key: &SessionKey) -> Result<LockGuard, StoreError> {
        acquire(
            &self.key_lock_file(key)?,
            &format!("the session {key}"),
            &self.policy,
        )
    }

    /// [`lock_key`](Self::lock_key) without waiting: taken, held by another now, or, with
    /// [`Create::No`], no lock file (or lock directory) there yet.
    pub fn lock_key_now(&self, key: &SessionKey, create: Create) -> Result<Now, StoreError> {
        let path = match create {
            Create::Yes => self.key_lock_file(key)?,
            Create::No => self.key_lock_path(key),
        };
        acquire_now(&path, create)
    }

    /// Makes an identity's lock file (and the lock directory) if missing, without taking it.
    pub fn make_key_lock_file(&self, key: &SessionKey) -> Result<(), StoreError> {
        make_lock_file(&self.key_lock_file(key)?)
    }

    /// [`key_lock_path`](Self::key_lock_path), its directory made when missing.
    fn key_lock_file(&self, key: &SessionKey) -> Result<PathBuf, StoreError> {
        ensure_dir(&self.dir.join(LOCK_DIR), "cannot create the lock directory")?;
        Ok(self.key_lock_path(key))
    }

    /// Identifies the cache file's current content cheaply (inode, size, modification time).
    pub fn stamp(&self) -> Option<FileStamp> {
        self.stamp_or_absent().ok().flatten()
    }

    /// [`stamp`](Self::stamp), telling apart no file (`Ok(None)`: nothing stored yet) from a
    /// file that cannot be looked at: one `stat`.
    pub fn stamp_or_absent(&self) -> std::io::Result<Option<FileStamp>> {
        match fs::symlink_metadata(self.cache_path()) {
            Ok(m) => Ok(Some(FileStamp::of(&m))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes sure the next write can succeed before a request that rotates or ends a session is
    /// sent: checks the directory and the file, makes sure the file lock can be had (waiting
    /// boundedly, naming the holder, only when another process holds it), and that the temporary
    /// file of the next write exists, preallocated to the size it will need, so that a full disk
    /// fails here and not after the server answered.
    pub fn prepare(&self) -> Result<(), StoreError> {
        if self.prepared_already()? {
            return Ok(());
        }
        let need = self.spare_wanted();
        let _lock = self.lock()?;
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if spare.as_ref().is_some_and(|s| s.fits(need)) {
            return Ok(());
        }
        *spare = Some(self.new_spare(need)?);
        Ok(())
    }

    /// The room the next write's file must have for the cache file as it is now.
    fn spare_wanted(&self) -> u64 {
        spare_need(fs::symlink_metadata(self.cache_path()).map_or(0, |m| m.len()))
    }

    /// [`prepare`](Self::prepare) when there is nothing to make: the directory and the file are
    /// checked, the next write's file is ready (each write makes the one after it) and the lock
    /// is free or held by this process's own write. A few calls on files that are there, never a
    /// wait: `Ok(false)` when a preparation must make something or wait for another process.
    pub(crate) fn prepared_already(&self) -> Result<bool, StoreError> {
        check_dir(&self.dir)?;
        Self::check_mode(&self.cache_path())?;
        let need = self.spare_wanted();
        let ready = {
            let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
            spare.as_ref().is_some_and(|s| s.fits(need))
        };
        // The lock is only probed, not waited for, unless another process holds it. Many
        // requests at once then never queue behind this process's own writes.
        Ok(ready
            && (self.writing.load(std::sync::atomic::Ordering::Acquire)
                || lock::is_free(&self.lock_path())))
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
        let lock = self.lock()?;
        let _writing = Writing::mark(&self.writing);
        // Released while still marked as writing (locals drop in reverse): a `prepare` at that
        // moment sees this process's own write, never a lock held by nobody it knows of.
        let _lock = lock;
        let path = self.cache_path();
        Self::check_mode(&path)?;
        // The file as this process last wrote or read it (certainly that version): not read again.
        let mut cache = if let (_, Some(cache)) = self.known() {
            cache
        } else {
            match read_file(&path)? {
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
            }
        };
        // (Readers may keep using the old version's parse until the new file replaces it: it is
        // keyed by its bytes, so it never stands for anything else.)
        let result = f(Arc::make_mut(&mut cache));
        Arc::make_mut(&mut cache).version = FORMAT_VERSION;
        self.write(&cache)?;
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

    /// Writes the cache atomically (into the prepared temporary file when there is one), having
    /// first made the next write's file, and remembers it as the version the file becomes in the
    /// same moment as the rename: readers of this process that see the new file find its parse at
    /// once, instead of each reading it while the directory is synced.
    fn write(&self, cache: &Arc<Cache>) -> Result<(), StoreError> {
        let path = self.cache_path();
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|s| s.file.path().exists());
        // The length of the version being replaced.
        let last_len = fs::symlink_metadata(&path).map_or(self.known_len() as u64, |m| m.len());
        let mut tmp = match spare {
            Some(s) => s.file,
            // Sized like the last version (a full disk fails here, before anything is written).
            None => self.new_spare(last_len + 4096)?.file,
        };
        // The file of the next write, made now (under the lock), before this one is written:
        // requests prepared while this write runs find it ready (`prepare`) instead of each
        // waiting for this write's syncs. A full disk shows there, before a request is sent.
        match self.new_spare(spare_size(last_len)) {
            Ok(next) => *self.spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(next),
            // The next request's `prepare` makes it again, and fails there, before sending.
            Err(e) => {
                tracing::warn!(error = %e, "cannot prepare the next write of the token cache")
            }
        }
        // Written straight into the file: a cache of thousands of sessions is never held in
        // memory a second time as text.
        let file = tmp.as_file_mut();
        let len = {
            use std::io::Seek;
            let mut out = io::BufWriter::with_capacity(64 * 1024, &mut *file);
            serde_json::to_writer_pretty(&mut out, &**cache)
                .map_err(io::Error::from)
                .and_then(|()| out.flush())
                .and_then(|()| out.get_mut().stream_position())
                .map_err(io_err(&path, "cannot write the token cache"))?
        };
        file.set_len(len)
            .map_err(io_err(&path, "cannot write the token cache"))?;
        file.sync_all()
            .map_err(io_err(&path, "cannot sync the token cache"))?;
        // The rename keeps the inode, size and modification time: the version the file becomes.
        let stamp = file.metadata().ok().map(|m| FileStamp::of(&m));
        // Until the rename, no file has that stamp: the parse stands for nothing else meanwhile.
        // Both change under the lock of what is known ([`known`](Self::known)).
        {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            *known = Some(Known {
                len: len as usize,
                cache: cache.clone(),
                stamp,
            });
            tmp.persist(&path).map_err(|e| {
                *known = None;
                StoreError::Io {
                    path: path.clone(),
                    what: "cannot replace the token cache",
                    source: e.error,
                }
            })?;
        }
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
