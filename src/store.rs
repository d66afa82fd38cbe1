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
}

/// Which version of the cache file is on disk: a rename gives a new inode, so any write changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    ino: u64,
    len: u64,
    mtime_ns: i128,
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
        Ok(Store { dir })
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

    /// Reads the cache without taking the lock (a rename is atomic, so this sees a whole file).
    pub fn load(&self) -> Result<(Cache, LoadReport), StoreError> {
        let path = self.cache_path();
        Self::check_mode(&path)?;
        match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Cache>(&bytes) {
                Ok(cache) => Ok((cache, LoadReport::default())),
                Err(e) => {
                    let _lock = self.lock()?;
                    // Re-check under the lock: another process may just have replaced it.
                    let bytes = match fs::read(&path) {
                        Ok(b) => b,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            return Ok((Cache::default(), LoadReport::default()));
                        }
                        Err(e) => return Err(io_err(&path, "cannot read the token cache")(e)),
                    };
                    if let Ok(cache) = serde_json::from_slice::<Cache>(&bytes) {
                        return Ok((cache, LoadReport::default()));
                    }
                    let aside = self.move_aside(&path)?;
                    Ok((
                        Cache::default(),
                        LoadReport {
                            moved_aside: Some((aside, e.to_string())),
                        },
                    ))
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Ok((Cache::default(), LoadReport::default()))
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
        let path = self.lock_path();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path, "cannot open the lock file"))?;
        file.lock()
            .map_err(io_err(&path, "cannot lock the token cache"))?;
        Ok(file)
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
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path, "cannot open the profile's lock file"))?;
        file.lock()
            .map_err(io_err(&path, "cannot lock the profile"))?;
        Ok(file)
    }

    /// Identifies the cache file's current content cheaply (inode, size, modification time).
    pub fn stamp(&self) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(self.cache_path()).ok()?;
        Some(FileStamp {
            ino: m.ino(),
            len: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        })
    }

    /// Read-modify-write under the lock: re-reads the cache, lets `f` change it, writes it atomically.
    /// `f` should change only the entries it is about, so that other processes' results survive.
    pub fn update<R>(&self, f: impl FnOnce(&mut Cache) -> R) -> Result<R, StoreError> {
        let _lock = self.lock()?;
        let path = self.cache_path();
        Self::check_mode(&path)?;
        let mut cache = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Cache>(&bytes) {
                Ok(c) => c,
                Err(_) => {
                    self.move_aside(&path)?;
                    Cache::default()
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Cache::default(),
            Err(e) => return Err(io_err(&path, "cannot read the token cache")(e)),
        };
        let result = f(&mut cache);
        cache.version = FORMAT_VERSION;
        self.write(&cache)?;
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

    fn write(&self, cache: &Cache) -> Result<(), StoreError> {
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
        let json = serde_json::to_vec_pretty(cache).expect("the cache always serialises");
        tmp.write_all(&json)
            .map_err(io_err(tmp.path(), "cannot write the token cache"))?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err(tmp.path(), "cannot sync the token cache"))?;
        tmp.persist(&path).map_err(|e| StoreError::Io {
            path: path.clone(),
            what: "cannot replace the token cache",
            source: e.error,
        })?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
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
