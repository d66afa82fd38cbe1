//! Watching the profiles file and the files it includes: the screen and the daemon apply edits
//! while they run.
//!
//! The directories holding the files are watched (editors replace a file by renaming a new one
//! over it, which a watch on the file itself would lose), and so are the directories of the
//! include globs (a new file there is a new catalogue); events are debounced, and the stamps are
//! also polled every 2 s for where events are not delivered (network file systems, some
//! containers). A change is reported when the stamps differ from the ones last reported. The set
//! watched changes with the file: [`FileWatch::replace`] after each reload.

use notify::{RecursiveMode, Watcher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the files' stamps are looked at, events or not.
pub const POLL: Duration = Duration::from_secs(2);
/// How long events must have stopped before the file is read (an editor writes in steps).
pub const QUIET: Duration = Duration::from_millis(150);

/// What says a file changed: its device, inode, size and modification time (`None`: not there).
/// For a directory, its modification time changes when an entry is added, removed or renamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp(Option<(u64, u64, u64, i64, i64)>);

impl Stamp {
    pub fn of(path: &Path) -> Stamp {
        Stamp(
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec())),
        )
    }
}

/// What is watched: files, and directories whose entries matter.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Set {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Set {
    fn new(files: &[PathBuf], dirs: &[PathBuf]) -> Set {
        let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        Set {
            files: files.iter().map(absolute).collect(),
            dirs: dirs.iter().map(absolute).collect(),
        }
    }

    /// The stamps of every file and directory, in order.
    fn stamps(&self) -> Vec<Stamp> {
        self.files
            .iter()
            .chain(&self.dirs)
            .map(|p| Stamp::of(p))
            .collect()
    }

    /// An event about `path` concerns the set: one of the files (or a file of the same name
    /// next to it: a rename over it), or an entry of one of the directories.
    fn concerns(&self, path: &Path) -> bool {
        self.files.iter().any(|f| {
            f == path || (f.file_name() == path.file_name() && f.parent() == path.parent())
        }) || self
            .dirs
            .iter()
            .any(|d| path.parent() == Some(d) || path == d)
    }

    /// The directories given to the platform's watcher: each file's and each glob's.
    fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let parents = self.files.iter().filter_map(|f| f.parent());
        for d in parents.chain(self.dirs.iter().map(PathBuf::as_path)) {
            if !dirs.iter().any(|x| x == d) {
                dirs.push(d.to_path_buf());
            }
        }
        dirs
    }
}

/// Watches a set of files and directories: the profiles file, the files it includes, the
/// directories of its globs.
pub struct FileWatch {
    set: Set,
    seen: Vec<Stamp>,
    tx: mpsc::UnboundedSender<()>,
    events: mpsc::UnboundedReceiver<()>,
    /// The events' channel closed.
    closed: bool,
    /// When the last event came, while waiting for the quiet after it.
    pending: Option<tokio::time::Instant>,
    /// New stamps, and since when the files have held them.
    candidate: Option<(Vec<Stamp>, tokio::time::Instant)>,
    poll: tokio::time::Interval,
    /// Kept alive while watching; `None` where the platform's watcher could not be set up (then
    /// only the polling notices changes).
    _watcher: Option<notify::RecommendedWatcher>,
}

impl FileWatch {
    /// Starts watching `path` alone, whose current content is taken as seen. Needs a tokio
    /// runtime.
    pub fn new(path: &Path) -> FileWatch {
        FileWatch::watching(&[path.to_path_buf()], &[])
    }

    /// Starts watching `files` and the entries of `dirs` (a loaded profiles file's `files` and
    /// `dirs`), as they are now taken as seen. Needs a tokio runtime.
    pub fn watching(files: &[PathBuf], dirs: &[PathBuf]) -> FileWatch {
        let set = Set::new(files, dirs);
        let (tx, events) = mpsc::unbounded_channel();
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        FileWatch {
            seen: set.stamps(),
            _watcher: watcher(&set, tx.clone()),
            set,
            tx,
            events,
            closed: false,
            pending: None,
            candidate: None,
            poll,
        }
    }

    /// Watches another set from now on (after a reload: the includes may have changed). A path
    /// watched already keeps what was last seen of it (an edit made since the reload read it is
    /// still a change); a new one is taken as seen as it is now. The same set again changes
    /// nothing.
    pub fn replace(&mut self, files: &[PathBuf], dirs: &[PathBuf]) {
        let set = Set::new(files, dirs);
        if set == self.set {
            return;
        }
        self._watcher = None;
        self._watcher = watcher(&set, self.tx.clone());
        self.closed = false;
        let before: Vec<&PathBuf> = self.set.files.iter().chain(&self.set.dirs).collect();
        self.seen = set
            .files
            .iter()
            .chain(&set.dirs)
            .map(|p| match before.iter().position(|b| *b == p) {
                Some(i) => self.seen[i],
                None => Stamp::of(p),
            })
            .collect();
        self.candidate = None;
        self.set = set;
    }

    /// Watches `files` too, from now on (the files a refused edit's errors name: an include just
    /// added and not yet right is followed until it is).
    pub fn add_files(&mut self, files: &[PathBuf]) {
        let mut all = self.set.files.clone();
        for f in files {
            let f = std::path::absolute(f).unwrap_or_else(|_| f.clone());
            if !all.contains(&f) {
                all.push(f);
            }
        }
        let dirs = self.set.dirs.clone();
        self.replace(&all, &dirs);
    }

    /// The profiles file (the first file watched).
    pub fn path(&self) -> &Path {
        self.set
            .files
            .first()
            .map_or(Path::new(""), PathBuf::as_path)
    }

    /// Waits until a file changed from what was last seen, and then held still for [`QUIET`]
    /// (a file written in place, truncated then written, is not read half-way). It is looked at
    /// after events (debounced by [`QUIET`]) and at a poll every [`POLL`]. Cancel-safe: all it
    /// waits for is kept in `self`, so a `select!` that drops it loses nothing.
    pub async fn changed(&mut self) {
        loop {
            let wake = [
                self.pending.map(|at| at + QUIET),
                self.candidate.as_ref().map(|(_, at)| *at + QUIET),
            ]
            .into_iter()
            .flatten()
            .min();
            let timer = async move {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                got = self.events.recv(), if !self.closed => {
                    match got {
                        Some(()) => self.pending = Some(tokio::time::Instant::now()),
                        // The watcher is gone: polling alone.
                        None => self.closed = true,
                    }
                    continue;
                }
                _ = timer => {}
                _ = self.poll.tick() => {}
            }
            let now = tokio::time::Instant::now();
            if self.pending.is_some_and(|at| at + QUIET <= now) {
                self.pending = None;
            }
            let stamps = self.set.stamps();
            match &self.candidate {
                // Held still long enough: a change, if it is one.
                Some((held, since)) if *held == stamps && *since + QUIET <= now => {
                    self.candidate = None;
                    if stamps != self.seen {
                        self.seen = stamps;
                        return;
                    }
                }
                // Still holding: wait on.
                Some((held, _)) if *held == stamps => {}
                _ if stamps != self.seen => self.candidate = Some((stamps, now)),
                _ => self.candidate = None,
            }
        }
    }
}

/// The platform's watcher on the set's directories, sending on `tx` for the events that concern
/// it; `None` when none could be watched (polling alone).
fn watcher(set: &Set, tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    let concerned = set.clone();
    let made = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else {
            // Overflow or an error: look at the files anyway.
            let _ = tx.send(());
            return;
        };
        if event.paths.is_empty() || event.paths.iter().any(|p| concerned.concerns(p)) {
            let _ = tx.send(());
        }
    });
    let mut w = match made {
        Ok(w) => w,
        Err(e) => {
            tracing::info!(error = %e, "no file events for the profiles file; polling every 2 s");
            return None;
        }
    };
    let mut any = false;
    for dir in set.watched_dirs() {
        match w.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => any = true,
            // Not there yet (an empty conf.d not made): the poll sees it appear.
            Err(e) => {
                tracing::info!(dir = %dir.display(), error = %e, "not watched; polled every 2 s")
            }
        }
    }
    any.then_some(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_replaced_by_rename_is_noticed_at_once_and_an_untouched_one_never() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profiles.toml");
        std::fs::write(&path, "one").unwrap();
        let mut watch = FileWatch::new(&path);
        // Nothing changes: nothing is reported (well past a poll).
        assert!(
            tokio::time::timeout(POLL + Duration::from_millis(500), watch.changed())
                .await
                .is_err()
        );
        // As editors save: a new file renamed over the old one.
        let tmp = dir.path().join(".profiles.toml.swp");
        std::fs::write(&tmp, "two, longer").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        // Waited for as a daemon's loop does: in a select that a 50 ms tick keeps cancelling.
        let noticed = async {
            loop {
                tokio::select! {
                    _ = watch.changed() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), noticed)
            .await
            .expect("the change is reported");
        // Removed: reported too.
        std::fs::remove_file(&path).unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("the removal is reported");
    }

    /// A reload reads the files, then replaces the set: an edit of a file already watched made
    /// in between is still a change (it was not read).
    #[tokio::test]
    async fn an_edit_between_a_reload_and_the_new_set_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("profiles.toml");
        let clients = dir.path().join("clients.toml");
        std::fs::write(&top, "top").unwrap();
        std::fs::write(&clients, "clients").unwrap();
        let mut watch = FileWatch::watching(std::slice::from_ref(&top), &[]);
        std::fs::write(&top, "top, edited after the reload read it").unwrap();
        watch.replace(&[top.clone(), clients.clone()], &[]);
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("the edit made before the new set is reported");
    }

    #[tokio::test]
    async fn a_new_file_in_a_glob_directory_and_an_included_file_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("profiles.toml");
        let team = dir.path().join("team");
        let conf = dir.path().join("conf.d");
        std::fs::create_dir(&team).unwrap();
        std::fs::create_dir(&conf).unwrap();
        std::fs::write(&top, "top").unwrap();
        let clients = team.join("clients.toml");
        std::fs::write(&clients, "clients").unwrap();
        let mut watch = FileWatch::watching(std::slice::from_ref(&top), &[]);
        // After a reload read the includes: the set grows.
        watch.replace(&[top.clone(), clients.clone()], std::slice::from_ref(&conf));
        assert_eq!(watch.path(), top);
        assert!(
            tokio::time::timeout(POLL + Duration::from_millis(500), watch.changed())
                .await
                .is_err(),
            "nothing changed"
        );
        // A new catalogue in conf.d (renamed into place, as tools write files).
        let tmp = dir.path().join("new.tmp");
        std::fs::write(&tmp, "[profiles.x]").unwrap();
        std::fs::rename(&tmp, conf.join("new.toml")).unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("the new file in the glob's directory is reported");
        // An included file written in place.
        std::fs::write(&clients, "clients, edited").unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("the included file's edit is reported");
        // A file in another directory, not watched: nothing.
        std::fs::write(dir.path().join("elsewhere.toml"), "x").unwrap();
        assert!(
            tokio::time::timeout(POLL + Duration::from_millis(500), watch.changed())
                .await
                .is_err(),
            "a file outside the set is not a change"
        );
    }
}
