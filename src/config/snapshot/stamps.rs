//! What a full load of the profiles file depended on, each with the check that it still holds:
//! the files read (and their text's SHA-256), the listings of the glob directories, the include
//! paths followed and the catalogues' directories.

use super::hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// One file read by the load, as it was when its text was parsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(in crate::config) struct FileStamp {
    path: PathBuf,
    dev: u64,
    ino: u64,
    uid: u32,
    mode: u32,
    len: u64,
    sha256: String,
}

impl FileStamp {
    /// The file stamped.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn into_path(self) -> PathBuf {
        self.path
    }

    /// The stamp of a file opened and read: its metadata (from the open file) and its text.
    /// `None` for anything but a regular file (a pipe is read anew each time).
    pub(in crate::config) fn of(path: &Path, meta: &Metadata, text: &str) -> Option<FileStamp> {
        meta.is_file().then(|| FileStamp {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            uid: meta.uid(),
            mode: meta.mode(),
            len: meta.len(),
            sha256: hex(&Sha256::digest(text.as_bytes())),
        })
    }

    /// The file is still the one stamped, with the same text.
    pub(super) fn holds(&self) -> bool {
        let Ok(mut file) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)
        else {
            return false;
        };
        let Ok(meta) = file.metadata() else {
            return false;
        };
        if !meta.is_file()
            || (meta.dev(), meta.ino(), meta.uid(), meta.mode(), meta.len())
                != (self.dev, self.ino, self.uid, self.mode, self.len)
        {
            return false;
        }
        // Hashed as it is read, through one small buffer: the text itself is not needed.
        let mut hasher = Sha256::new();
        match std::io::copy(&mut (&mut file).take(self.len + 1), &mut hasher) {
            Ok(n) if n == self.len => hex(&hasher.finalize()) == self.sha256,
            _ => false,
        }
    }
}

/// The entries of a directory a glob looked in: names, and whether each is a regular file
/// (following a symbolic link).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(in crate::config) struct Listing {
    dir: PathBuf,
    entries: Vec<(String, bool)>,
}

impl Listing {
    /// The directory lists the same entries now.
    pub(super) fn holds(&self) -> bool {
        Listing::of(&self.dir) == *self
    }

    /// The directory's entries now; one that cannot be read (or is not there) lists none.
    pub(in crate::config) fn of(dir: &Path) -> Listing {
        let read = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let mut entries: Vec<(String, bool)> = match std::fs::read_dir(read) {
            Ok(listing) => listing
                .flatten()
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let is_file = match e.file_type() {
                        Ok(t) if t.is_symlink() => e.path().is_file(),
                        Ok(t) => t.is_file(),
                        Err(_) => e.path().is_file(),
                    };
                    (name, is_file)
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        entries.sort();
        Listing {
            dir: dir.to_path_buf(),
            entries,
        }
    }
}

/// A path an include entry came to (read, read already through another path, or the including
/// file itself), and the file it led to: a link moved to another file changes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(in crate::config) struct Seen {
    path: PathBuf,
    file: Option<(u64, u64)>,
}

impl Seen {
    /// The path still leads to the same file (or still to none).
    pub(super) fn holds(&self) -> bool {
        Seen::of(&self.path) == *self
    }

    pub(in crate::config) fn of(path: &Path) -> Seen {
        Seen {
            path: path.to_path_buf(),
            file: std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino())),
        }
    }
}

/// A catalogue's directory: its owner and mode decide whether the catalogue may be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(in crate::config) struct DirStamp {
    dir: PathBuf,
    uid: u32,
    mode: u32,
}

impl DirStamp {
    pub(in crate::config) fn of(dir: &Path, meta: &Metadata) -> DirStamp {
        DirStamp {
            dir: dir.to_path_buf(),
            uid: meta.uid(),
            mode: meta.mode(),
        }
    }

    pub(super) fn holds(&self) -> bool {
        std::fs::metadata(&self.dir).is_ok_and(|m| (m.uid(), m.mode()) == (self.uid, self.mode))
    }
}

/// What a full load read, besides the profiles file's text: filled in by the loader.
#[derive(Default)]
pub(in crate::config) struct Reads {
    /// Every file read, in the order of [`Profiles::files`]; `None` for one that is not a
    /// regular file (then no snapshot is written).
    pub(in crate::config) files: Vec<Option<FileStamp>>,
    pub(in crate::config) listings: Vec<Listing>,
    pub(in crate::config) parents: Vec<DirStamp>,
    pub(in crate::config) seen: Vec<Seen>,
    /// Every `ca_cert` file checked, in any layer (read and checked again at each load).
    pub(in crate::config) cas: Vec<PathBuf>,
}
