//! The one cache reader: the token cache as it is on disk, parsed again only when the file
//! changed, with what reading it found (a cache moved aside) said once, by the front end that
//! reads next.

use crate::identity::SessionKey;
use crate::session::{Cache, Entry};
use crate::store::{FileStamp, Store};
use std::sync::{Arc, Mutex, Weak};

/// The cache as read.
#[derive(Debug)]
pub struct CacheRead {
    pub cache: Arc<Cache>,
    /// The version of the file it was read from, when that is certain.
    pub stamp: Option<FileStamp>,
    /// What reading found that a person should know (each said once).
    pub notices: Vec<String>,
}

/// A parsed cache and the version of the file it was read from.
/// The file version last read and its parse, held weakly: the reader never keeps an old version
/// of a cache of thousands of sessions alive (the store remembers the current one).
type Snapshot = (FileStamp, Weak<Cache>);

/// Reads the cache of one store; clones share what was read. Blocking: the runtime calls it on
/// its blocking pool.
#[derive(Clone, Debug)]
pub struct CacheReader {
    store: Store,
    /// The cache as last read, with the file version it was read from.
    snapshot: Arc<Mutex<Option<Snapshot>>>,
    /// Notices not yet handed to a front end.
    notices: Arc<Mutex<Vec<String>>>,
    /// The last entry read alone, with the file version it was read from.
    last_entry: Arc<Mutex<Option<(FileStamp, SessionKey, Entry)>>>,
    /// Held while the whole file is read and parsed: callers at once (a bulk action's operations
    /// after each write) wait for that one parse and share it instead of each reading the file.
    reading: Arc<Mutex<()>>,
}

impl CacheReader {
    pub fn new(store: Store) -> CacheReader {
        CacheReader {
            store,
            snapshot: Arc::default(),
            notices: Arc::default(),
            last_entry: Arc::default(),
            reading: Arc::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The cache as it is on disk now, with the notices not said yet (taken: said once).
    pub fn read(&self) -> Result<CacheRead, String> {
        let mut read = self.read_keeping_notices()?;
        read.notices = self.take_notices();
        Ok(read)
    }

    /// [`read`](Self::read) if the file changed since `since` (one stat when it did not).
    pub fn read_if_changed(&self, since: Option<FileStamp>) -> Option<Result<CacheRead, String>> {
        let has_notices = !self.notices.lock().expect("notices lock").is_empty();
        (self.store.stamp() != since || has_notices).then(|| self.read())
    }

    /// The entry of one identity, for a front end about one session: from the snapshot when the
    /// file did not change, else through [`Store::read_entry`] (only that entry is built). What
    /// reading found is kept for the next [`read`](Self::read) or [`take_notices`](Self::take_notices).
    pub fn read_entry(&self, key: &SessionKey) -> Result<Entry, String> {
        let before = self.store.stamp();
        if let Some(cache) = self.snapshot_at(before) {
            return Ok(cache.entry_or_default(key));
        }
        if let Some((stamp, k, entry)) = self.last_entry.lock().expect("entry lock").as_ref()
            && before == Some(*stamp)
            && k == key
        {
            return Ok(entry.clone());
        }
        let (entry, report) = self.store.read_entry(key).map_err(|e| e.to_string())?;
        self.keep_notice(report.notice());
        // Kept only when the file certainly did not change while it was read.
        if let Some(stamp) = before.filter(|_| self.store.stamp() == before) {
            *self.last_entry.lock().expect("entry lock") =
                Some((stamp, key.clone(), entry.clone()));
        }
        Ok(entry)
    }

    /// The parse of the file version `stamp`, if it is the one read last and still alive.
    fn snapshot_at(&self, stamp: Option<FileStamp>) -> Option<Arc<Cache>> {
        let snapshot = self.snapshot.lock().expect("snapshot lock");
        let (at, cache) = snapshot.as_ref()?;
        (stamp == Some(*at)).then(|| cache.upgrade()).flatten()
    }

    /// What reading found since the last time it was said.
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *self.notices.lock().expect("notices lock"))
    }

    fn keep_notice(&self, notice: Option<String>) {
        if let Some(notice) = notice {
            tracing::warn!("{notice}");
            self.notices.lock().expect("notices lock").push(notice);
        }
    }

    /// The cache as it is on disk now, and that version's stamp, if this process holds its parse
    /// already (it read or wrote that version), or if there is no file (nothing stored yet, as a
    /// read would find): a `stat` or two, cheap enough for an async task. `None`: read it
    /// ([`read_keeping_notices`](Self::read_keeping_notices)) on a blocking thread.
    pub fn known(&self) -> Option<(Option<FileStamp>, Arc<Cache>)> {
        let stamp = match self.store.stamp_or_absent() {
            Ok(Some(stamp)) => stamp,
            Ok(None) => return Some((None, Arc::default())),
            Err(_) => return None,
        };
        if let Some(cache) = self.snapshot_at(Some(stamp)) {
            return Some((Some(stamp), cache));
        }
        let (Some(stamp), Some(cache)) = self.store.known() else {
            return None;
        };
        *self.snapshot.lock().expect("snapshot lock") = Some((stamp, Arc::downgrade(&cache)));
        Some((Some(stamp), cache))
    }

    /// The cache as it is on disk now, for the runtime's own use: notices stay for a front end.
    pub fn read_keeping_notices(&self) -> Result<CacheRead, String> {
        let known = || {
            self.known().map(|(stamp, cache)| CacheRead {
                cache,
                stamp,
                notices: Vec::new(),
            })
        };
        if let Some(read) = known() {
            return Ok(read);
        }
        let _one = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        // Another caller may have read this version while this one waited.
        if let Some(read) = known() {
            return Ok(read);
        }
        let before = self.store.stamp();
        // Not parsed again when it is the file this process last wrote or read.
        let (cache, report) = self.store.load_shared().map_err(|e| e.to_string())?;
        self.keep_notice(report.notice());
        // Kept only if the file did not change while it was read.
        let after = self.store.stamp();
        let stamp = before.filter(|_| after == before);
        if let Some(stamp) = stamp {
            *self.snapshot.lock().expect("snapshot lock") = Some((stamp, Arc::downgrade(&cache)));
        }
        // The version is named only when certain: a file that changed while it was read is read
        // again next time, not taken for the version after.
        Ok(CacheRead {
            cache,
            stamp,
            notices: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Change, Expect};

    /// The first operations into a new state directory ask for the cache before anything is
    /// stored: no file is known to hold nothing (one `stat`, no read on a blocking thread), while a
    /// file this process has not read is not known.
    #[test]
    fn no_file_is_known_to_be_empty_and_a_file_not_read_yet_is_not_known() {
        let tmp = tempfile::tempdir().unwrap();
        let reader = CacheReader::new(Store::open(tmp.path()).unwrap());
        let (stamp, cache) = reader.known().expect("no file: known");
        assert_eq!(stamp, None);
        assert!(cache.sessions.is_empty());

        let writer = Store::open(tmp.path()).unwrap();
        writer
            .apply(vec![Change {
                key: SessionKey::new("https://acme.example.com", "jim", "p", "sugar"),
                label: "jim".into(),
                expect: Expect::Held,
                apply: Box::new(|_| {}),
            }])
            .unwrap();
        assert!(
            reader.known().is_none(),
            "another process's file must be read, not taken for empty"
        );
        let read = reader.read_keeping_notices().unwrap();
        assert_eq!(read.cache.sessions.len(), 1);
        let (stamp, cache) = reader.known().expect("read: known");
        assert_eq!(stamp, reader.store().stamp());
        assert!(Arc::ptr_eq(&cache, &read.cache));
    }

    /// A bulk action's operations all ask for the cache at once after each write: they must share
    /// one parse of the new file, not each read and parse it (ten thousand sessions: 6 MB each).
    #[test]
    fn readers_at_once_share_one_parse_of_a_changed_file() {
        let tmp = tempfile::tempdir().unwrap();
        let writer = Store::open(tmp.path()).unwrap();
        let changes = (0..2000)
            .map(|i| Change {
                key: SessionKey::new("https://acme.example.com", &format!("u{i}"), "p", "sugar"),
                label: format!("u{i}"),
                expect: Expect::Held,
                apply: Box::new(|_| {}),
            })
            .collect();
        writer.apply(changes).unwrap();
        let reader = CacheReader::new(Store::open(tmp.path()).unwrap());
        let start = std::sync::Barrier::new(8);
        let caches: Vec<Arc<Cache>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        reader.read_keeping_notices().unwrap().cache
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(caches[0].sessions.len(), 2000);
        for cache in &caches[1..] {
            assert!(
                Arc::ptr_eq(cache, &caches[0]),
                "the file was parsed more than once"
            );
        }
    }
}
