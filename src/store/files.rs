//! The state directory and its files: ownership and mode checks, reads without following
//! symlinks, preallocation.

use super::{StoreError, io_err};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub(super) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a directory that others may write to or that belongs to someone else (as OpenSSH
/// refuses such files): whoever can write there can swap the cache or plant links.
pub(super) fn check_dir(dir: &Path) -> Result<(), StoreError> {
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
pub(super) fn ensure_dir(dir: &Path, what: &'static str) -> Result<(), StoreError> {
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

/// Reserves `len` bytes for a file, so that writing them cannot fail for want of space. File
/// systems that cannot preallocate are left to the write itself.
pub(super) fn preallocate(file: &File, len: u64) -> io::Result<()> {
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
pub(super) fn read_file(path: &Path) -> Result<Option<FileBytes>, StoreError> {
    let Some(mut file) = open_file(path)? else {
        return Ok(None);
    };
    read_rest(&mut file, path).map(Some)
}

/// Opens a file for reading without following a symlink; `None` when it does not exist.
pub(super) fn open_file(path: &Path) -> Result<Option<File>, StoreError> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "cannot read the token cache")(e)),
    }
}

/// A file's bytes, read whole.
pub(super) enum FileBytes {
    Heap(Vec<u8>),
    /// A large file in memory of its own (see [`read_rest`]): its bytes are that range of it.
    Mapped(memmap2::MmapMut, std::ops::Range<usize>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Heap(v) => v,
            FileBytes::Mapped(m, bytes) => &m[bytes.clone()],
        }
    }
}

/// From this size on, a file is read into memory that the kernel may back with huge pages.
pub(super) const HUGE_PAGE: usize = 2 << 20;

/// The whole of an open file (from its start, wherever it was read to).
///
/// A file of 2 MiB or more (the cache of a few thousand sessions) is read into an anonymous
/// mapping of its own, advised to be backed by transparent huge pages: the kernel then faults in
/// a few 2 MiB pages instead of one 4 KiB page at a time (at 10,000 sessions, 1,500 of the 6,500
/// page faults of `status --json`, a tenth of its time on a virtual machine). Where huge pages are
/// off, the advice changes nothing. A file that grows while it is read is read whole all the same.
pub(super) fn read_rest(file: &mut File, path: &Path) -> Result<FileBytes, StoreError> {
    use std::io::Seek;
    let err = |e| io_err(path, "cannot read the token cache")(e);
    let size = file.metadata().map_or(0, |m| m.len() as usize);
    file.seek(io::SeekFrom::Start(0)).map_err(err)?;
    // A huge page is one only where it is aligned: the bytes start at the first boundary of a
    // mapping one huge page longer (the pages of the slack are never touched).
    let map = (size >= HUGE_PAGE)
        .then(|| memmap2::MmapMut::map_anon(size + HUGE_PAGE).ok())
        .flatten();
    let Some(mut map) = map else {
        let mut bytes = Vec::with_capacity(size);
        file.read_to_end(&mut bytes).map_err(err)?;
        return Ok(FileBytes::Heap(bytes));
    };
    let _ = map.advise(memmap2::Advice::HugePage);
    let at = map.as_ptr().align_offset(HUGE_PAGE);
    let mut len = 0;
    while len < size {
        match file.read(&mut map[at + len..at + size]) {
            Ok(0) => return Ok(FileBytes::Mapped(map, at..at + len)),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(err(e)),
        }
    }
    // Longer than it was when looked at: the rest joins what was read.
    let mut more = Vec::new();
    file.read_to_end(&mut more).map_err(err)?;
    if more.is_empty() {
        return Ok(FileBytes::Mapped(map, at..at + len));
    }
    let mut bytes = Vec::with_capacity(len + more.len());
    bytes.extend_from_slice(&map[at..at + len]);
    bytes.extend_from_slice(&more);
    Ok(FileBytes::Heap(bytes))
}
