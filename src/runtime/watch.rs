//! Watching the profiles file: the screen and the daemon apply edits while they run.
//!
//! The directory holding the file is watched (editors replace a file by renaming a new one over
//! it, which a watch on the file itself would lose), events are debounced, and the file's stamp
//! is also polled every 2 s for where events are not delivered (network file systems, some
//! containers). A change is reported when the stamp differs from the one last reported.

use notify::{RecursiveMode, Watcher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the file's stamp is looked at, events or not.
pub const POLL: Duration = Duration::from_secs(2);
/// How long events must have stopped before the file is read (an editor writes in steps).
pub const QUIET: Duration = Duration::from_millis(150);

/// What says a file changed: its device, inode, size and modification time (`None`: not there).
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

/// Watches one file (for now the profiles file; its includes later).
pub struct FileWatch {
    path: PathBuf,
    seen: Stamp,
    events: mpsc::UnboundedReceiver<()>,
    /// The events' channel closed.
    closed: bool,
    /// When the last event came, while waiting for the quiet after it.
    pending: Option<tokio::time::Instant>,
    /// A new stamp, and since when the file has held it.
    candidate: Option<(Stamp, tokio::time::Instant)>,
    poll: tokio::time::Interval,
    /// Kept alive while watching; `None` where the platform's watcher could not be set up (then
    /// only the polling notices changes).
    _watcher: Option<notify::RecommendedWatcher>,
}

impl FileWatch {
    /// Starts watching `path`, whose current content is taken as seen. Needs a tokio runtime.
    pub fn new(path: &Path) -> FileWatch {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let (tx, events) = mpsc::unbounded_channel();
        let name = path.file_name().map(|n| n.to_os_string());
        let watched = path.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else {
                // Overflow or an error: look at the file anyway.
                let _ = tx.send(());
                return;
            };
            if event.paths.is_empty()
                || event
                    .paths
                    .iter()
                    .any(|p| p == &watched || p.file_name().map(|n| n.to_os_string()) == name)
            {
                let _ = tx.send(());
            }
        })
        .and_then(|mut w| {
            let dir = path.parent().unwrap_or(Path::new("/"));
            w.watch(dir, RecursiveMode::NonRecursive).map(|()| w)
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::info!(error = %e, "no file events for the profiles file; polling every 2 s");
                None
            }
        };
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        FileWatch {
            seen: Stamp::of(&path),
            path,
            events,
            closed: false,
            pending: None,
            candidate: None,
            poll,
            _watcher: watcher,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until the file changed from what was last seen, and then held still for [`QUIET`]
    /// (a file written in place, truncated then written, is not read half-way). It is looked at
    /// after events (debounced by [`QUIET`]) and at a poll every [`POLL`]. Cancel-safe: all it
    /// waits for is kept in `self`, so a `select!` that drops it loses nothing.
    pub async fn changed(&mut self) {
        loop {
            let wake = [
                self.pending.map(|at| at + QUIET),
                self.candidate.map(|(_, at)| at + QUIET),
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
            let stamp = Stamp::of(&self.path);
            match self.candidate {
                // Held still long enough: a change, if it is one.
                Some((held, since)) if held == stamp && since + QUIET <= now => {
                    self.candidate = None;
                    if stamp != self.seen {
                        self.seen = stamp;
                        return;
                    }
                }
                // Still holding: wait on.
                Some((held, _)) if held == stamp => {}
                _ if stamp != self.seen => self.candidate = Some((stamp, now)),
                _ => self.candidate = None,
            }
        }
    }
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
}
