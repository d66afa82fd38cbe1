//! The token cache on disk: `sessions.json` in the state directory.
//!
//! - created with mode 0600 in a directory of mode 0700;
//! - written to a temporary file, synced, then renamed over the old one, so a reader (or a process
//!   killed mid-write) only ever sees the old or the new file;
//! - every read-modify-write holds an exclusive lock on `sessions.lock`, a separate file that the
//!   rename never replaces, and re-reads the cache under that lock before changing it, so two
//!   processes never lose each other's results (a rotated refresh token above all);
//! - a cache that does not parse is moved aside (kept for inspection), never silently lost.

use crate::session::Entry;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const CACHE_FILE: &str = "sessions.json";
pub const LOCK_FILE: &str = "sessions.lock";
const FORMAT_VERSION: u32 = 1;

/// Everything the cache holds: one entry per profile name.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Cache {
    #[serde(default = "format_version")]
    pub version: u32,
    #[serde(default)]
    pub profiles: IndexMap<String, Entry>,
}

fn format_version() -> u32 {
    FORMAT_VERSION
}

impl Cache {
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.profiles.get(name)
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
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
}

fn io_err(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io { path, what, source }
}

/// The token cache of one state directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    /// The file as this process last wrote or parsed it (shared by clones).
    known: Arc<Mutex<Option<Known>>>,
}

/// The cache file's bytes with their parsed form: a read that finds exactly these bytes on disk
/// reuses the parsed cache instead of parsing again. Without it a bulk action re-parses the whole
/// cache for every batch of results it writes and every entry it reads: O(N²) in the profiles.
struct Known {
    bytes: Vec<u8>,
    cache: Arc<Cache>,
    /// The file version the bytes were read from or written as, when that is certain: a reader that
    /// finds this version on disk takes the parse without reading the file (as the engine's snapshot
    /// does).
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
        use std::os::unix::fs::MetadataExt;
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

impl Store {
    /// Opens (creating with mode 0700 when missing) a state directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let dir = dir.into();
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io_err(&dir, "cannot create the state directory"))?;
        }
        Ok(Store {
            dir,
            known: Arc::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn cache_path(&self) -> PathBuf {
        self.dir.join(CACHE_FILE)
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }

    /// Refuses a cache file that the group or others may read, as OpenSSH does for keys.
    fn check_mode(path: &Path) -> Result<(), StoreError> {
        match fs::metadata(path) {
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
    /// Holds the lock while parsing, so that readers that find the same new file at once wait for
    /// one parse instead of each doing their own.
    fn parse(
        &self,
        bytes: Vec<u8>,
        keep: bool,
        stamp: Option<FileStamp>,
    ) -> Result<Arc<Cache>, serde_json::Error> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = known.as_mut().filter(|k| k.bytes == bytes) {
            if keep && stamp.is_some() {
                k.stamp = stamp;
            }
            return Ok(k.cache.clone());
        }
        let cache = Arc::new(serde_json::from_slice::<Cache>(&bytes)?);
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
        match fs::read(&path) {
            // The version read is certain only if the file did not change while it was read.
            Ok(bytes) => match self.parse(bytes, keep, before.filter(|_| self.stamp() == before)) {
                Ok(cache) => Ok((cache, LoadReport::default())),
                Err(e) => {
                    let _lock = self.lock()?;
                    // Re-check under the lock: another process may just have replaced it.
                    let bytes = match fs::read(&path) {
                        Ok(b) => b,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            return Ok((Arc::default(), LoadReport::default()));
                        }
                        Err(e) => return Err(io_err(&path, "cannot read the token cache")(e)),
                    };
                    if let Ok(cache) = self.parse(bytes, keep, None) {
                        return Ok((cache, LoadReport::default()));
                    }
                    let aside = self.move_aside(&path)?;
                    Ok((
                        Arc::default(),
                        LoadReport {
                            moved_aside: Some((aside, e.to_string())),
                        },
                    ))
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Ok((Arc::default(), LoadReport::default()))
            }
            Err(e) => Err(io_err(&path, "cannot read the token cache")(e)),
        }
    }

    fn move_aside(&self, path: &Path) -> Result<PathBuf, StoreError> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let aside = self.dir.join(format!(
            "{CACHE_FILE}.corrupt-{stamp}-{}",
            std::process::id()
        ));
        fs::rename(path, &aside)
            .map_err(io_err(path, "cannot move the unreadable token cache aside"))?;
        Ok(aside)
    }

    fn lock(&self) -> Result<File, StoreError> {
        lock_file(&self.lock_path(), "cannot lock the token cache")
    }

    /// An exclusive lock on one profile, held while its tokens are used to get new ones, so that two
    /// processes never send the same refresh token. Blocks until the lock is free; released on drop.
    pub fn lock_profile(&self, name: &str) -> Result<File, StoreError> {
        let dir = self.dir.join("locks");
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io_err(&dir, "cannot create the lock directory"))?;
        }
        // Profile names are [A-Za-z0-9._-]; an impersonation adds `>`, kept out of file names.
        let path = dir.join(format!("{}.lock", name.replace('>', "+")));
        lock_file(&path, "cannot lock the profile")
    }

    /// Identifies the cache file's current content cheaply (inode, size, modification time).
    pub fn stamp(&self) -> Option<FileStamp> {
        fs::metadata(self.cache_path())
            .ok()
            .map(|m| FileStamp::of(&m))
    }

    /// Read-modify-write under the lock: re-reads the cache, lets `f` change it, writes it atomically.
    /// `f` should change only the entries it is about, so that other processes' results survive.
    pub fn update<R>(&self, f: impl FnOnce(&mut Cache) -> R) -> Result<R, StoreError> {
        let _lock = self.lock()?;
        let path = self.cache_path();
        Self::check_mode(&path)?;
        let mut cache = match fs::read(&path) {
            Ok(bytes) => match self.parse(bytes, false, None) {
                Ok(c) => c,
                Err(_) => {
                    self.move_aside(&path)?;
                    Arc::default()
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Arc::default(),
            Err(e) => return Err(io_err(&path, "cannot read the token cache")(e)),
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

    /// Temporary files that a killed writer left behind (older than a minute; we hold the lock).
    fn remove_stale_temp_files(&self) {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 60));
            if name.starts_with(".sessions.") && name.ends_with(".tmp") && stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Writes the cache atomically; returns the bytes written and the file version they became.
    fn write(&self, cache: &Cache) -> Result<(Vec<u8>, Option<FileStamp>), StoreError> {
        let path = self.cache_path();
        let mut tmp = tempfile::Builder::new()
            .prefix(".sessions.")
            .suffix(".tmp")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(&self.dir)
            .map_err(io_err(
                &self.dir,
                "cannot create a temporary file for the token cache",
            ))?;
        // Sized like the last version, so that the buffer does not grow by doubling (and copying).
        let mut json = Vec::with_capacity(self.known_len() + 4096);
        serde_json::to_writer_pretty(&mut json, cache).expect("the cache always serialises");
        tmp.write_all(&json)
            .map_err(io_err(tmp.path(), "cannot write the token cache"))?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err(tmp.path(), "cannot sync the token cache"))?;
        // The rename keeps the inode, size and modification time: the version the file becomes.
        let stamp = tmp.as_file().metadata().ok().map(|m| FileStamp::of(&m));
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

/// Opens (creating with mode 0600) a lock file and takes an exclusive lock on it, waiting for it.
fn lock_file(path: &Path, what: &'static str) -> Result<File, StoreError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path, "cannot open the lock file"))?;
    file.lock().map_err(io_err(path, what))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Entry;

    #[test]
    fn cache_and_dir_have_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("state")).unwrap();
        store
            .update(|c| c.profiles.insert("a".into(), Entry::default()))
            .unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.cache_path()), 0o600);
        assert_eq!(mode(store.dir()), 0o700);
    }

    #[test]
    fn updates_merge_instead_of_overwriting() {
        let tmp = tempfile::tempdir().unwrap();
        let one = Store::open(tmp.path()).unwrap();
        let two = Store::open(tmp.path()).unwrap();
        one.update(|c| c.profiles.insert("a".into(), Entry::default()))
            .unwrap();
        two.update(|c| c.profiles.insert("b".into(), Entry::default()))
            .unwrap();
        let (cache, _) = one.load().unwrap();
        assert_eq!(cache.profiles.keys().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn a_cache_others_can_read_is_refused_with_a_chmod_hint() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        store
            .update(|c| c.profiles.insert("a".into(), Entry::default()))
            .unwrap();
        fs::set_permissions(store.cache_path(), fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("readable by others (mode 644)"), "{err}");
        assert!(
            err.contains(&format!("chmod 600 {}", store.cache_path().display())),
            "{err}"
        );
        assert!(store.update(|_| ()).is_err(), "nor written");
        fs::set_permissions(store.cache_path(), fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(store.load().unwrap().0.profiles.len(), 1);
    }

    #[test]
    fn a_corrupt_cache_is_moved_aside_not_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        fs::write(store.cache_path(), b"{ not json").unwrap();
        fs::set_permissions(store.cache_path(), fs::Permissions::from_mode(0o600)).unwrap();
        let (cache, report) = store.load().unwrap();
        assert!(cache.profiles.is_empty());
        let (aside, why) = report.moved_aside.expect("moved aside");
        assert_eq!(fs::read(&aside).unwrap(), b"{ not json");
        assert!(!why.is_empty());
    }
}
