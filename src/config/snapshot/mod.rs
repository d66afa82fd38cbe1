//! A validated snapshot of a profiles file, so that the commands scripts call constantly
//! (`token`, `list`, `status`) skip the TOML parse and the located-error walk while nothing
//! changed.
//!
//! After a full load without a problem, the resolved profiles are written to the state
//! directory (`profiles-HASH.snapshot`, 0600, by an atomic rename) together with what the
//! load depended on (in postcard, a compact binary form of serde): each file read (device, inode, owner, mode, length and the SHA-256 of the
//! text parsed), the listing of each directory a glob looked in, the owner and mode of each
//! catalogue's directory, the file each include path led to (a moved link), every `ca_cert` file
//! of any layer (read and checked again each time), the home directory (`~/` includes) and the program (its version and
//! the executable's size and modification time). A load through the snapshot reads every one of
//! those files again and compares; any difference, or a snapshot that cannot be read or
//! trusted, falls back to the full load (which writes a new snapshot). The `ca_cert` files are
//! read and checked again each time, as the full load does.
//!
//! No secret is ever written: a file set whose profiles hold a plain `password` or a
//! `client_secret` gets no snapshot, and is parsed in full each time.
//!
//! A snapshot is trusted only when it is a regular file owned by the user, readable by nobody
//! else, in a directory only the user may write to (the token cache's own rules): it decides
//! where passwords are sent.

use super::checks::check_ca_cert;
use super::schema::{COLUMN_NAMES, Val};
use super::{CaCert, KeyringEntry, PasswordSource, Profile, Profiles, Settings};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

mod listed;
mod stamps;
pub use listed::ListedProfile;
pub(super) use stamps::{DirStamp, FileStamp, Listing, Reads, Seen};

/// Bumped when the snapshot's shape or meaning changes (the program stamp covers rebuilds too).
/// 2: each profile encoded on its own.
const FORMAT: u32 = 2;

/// The most a snapshot file may hold: far above 10,000 profiles (about 3 MB).
const MAX_SNAPSHOT: u64 = 64 * 1024 * 1024;

/// The snapshot file.
#[derive(Serialize, Deserialize)]
struct Snapshot<'a> {
    format: u32,
    program: String,
    home: Option<PathBuf>,
    files: Vec<FileStamp>,
    listings: Vec<Listing>,
    parents: Vec<DirStamp>,
    seen: Vec<Seen>,
    cas: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    settings: SnapSettings,
    #[serde(borrow)]
    profiles: Vec<Encoded<'a>>,
}

/// A profile's name and its [`SnapProfile`], encoded on its own: a command on one profile
/// (`token NAME`, which scripts call constantly) decodes that one alone, borrowing the rest.
#[derive(Serialize, Deserialize)]
struct Encoded<'a> {
    name: &'a str,
    #[serde(serialize_with = "as_bytes")]
    body: &'a [u8],
}

/// A byte slice as bytes (serde writes a `[u8]` as a sequence, and reads a borrowed one as bytes).
fn as_bytes<S: serde::Serializer>(bytes: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(bytes)
}

#[derive(Serialize, Deserialize)]
struct SnapSettings {
    max_concurrency: usize,
    max_per_host: usize,
    read_only: bool,
    columns: Option<Vec<String>>,
}

/// A resolved profile without its secrets (it has none: see the module's doc). Its text is
/// `String`s when a profile is built from it, borrowed from the snapshot's bytes when it is only
/// listed or written (`S = &str`: the same encoding).
#[derive(Serialize, Deserialize)]
struct SnapProfile<S = String> {
    name: S,
    url: S,
    api: S,
    username: S,
    password: SnapPassword<S>,
    platform: S,
    client_id: S,
    tags: Vec<S>,
    allow_http: bool,
    timeout_ms: u64,
    connect_timeout_ms: u64,
    auto_refresh: bool,
    relogin: bool,
    refresh_before_ms: Option<u64>,
    check_interval_ms: Option<u64>,
    ca_cert: Option<PathBuf>,
    insecure: bool,
    proxy: Option<S>,
}

#[derive(Serialize, Deserialize)]
enum SnapPassword<S = String> {
    Env(S),
    Cmd(S),
    Keyring { account: S, over_ssh: bool },
    Prompt,
}

/// Where the snapshot of the profiles file `path` is kept in `state_dir`.
pub(super) fn snapshot_path(state_dir: &Path, path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let digest = Sha256::digest(absolute.as_os_str().as_encoded_bytes());
    state_dir.join(format!("profiles-{}.snapshot", &hex(&digest)[..16]))
}

/// The profiles of `path` from its snapshot in `state_dir`, when there is one that still
/// describes every file the load read; `None` otherwise. With `only`, and a snapshot that holds
/// a profile of that name, that profile alone is decoded, and the [`Rest`] comes with it; every
/// profile otherwise.
pub(super) fn load(
    state_dir: &Path,
    path: &Path,
    only: Option<&str>,
) -> Option<(Profiles, Option<Rest>)> {
    let bytes = read_trusted(&snapshot_path(state_dir, path))?;
    let (snap, cas) = checked(&bytes, path)?;
    let columns = match snap.settings.columns {
        Some(names) => Some(
            names
                .iter()
                .map(|n| COLUMN_NAMES.iter().copied().find(|c| c == n))
                .collect::<Option<Vec<&'static str>>>()?,
        ),
        None => None,
    };
    let one = only.and_then(|name| snap.profiles.iter().find(|e| e.name == name));
    let partial = one.is_some();
    let encoded = match one {
        Some(one) => std::slice::from_ref(one),
        None => &snap.profiles[..],
    };
    // Profiles of one instance share its URL: each one parsed once.
    let mut urls: HashMap<String, Url> = HashMap::new();
    let mut profiles = Vec::with_capacity(encoded.len());
    for e in encoded {
        let p = e.decode()?;
        profiles.push(Arc::new(p.resolve(&cas, &mut urls)?));
    }
    let profiles = Profiles {
        path: path.to_path_buf(),
        files: snap.files.into_iter().map(FileStamp::into_path).collect(),
        dirs: snap.dirs,
        profiles,
        settings: Settings {
            max_concurrency: snap.settings.max_concurrency,
            max_per_host: snap.settings.max_per_host,
            read_only: snap.settings.read_only,
            columns,
        },
        origins: HashMap::new(),
    };
    Some((profiles, partial.then_some(Rest { bytes })))
}

/// The snapshot in `bytes`, when it is this program's, of this format, for `path`, and every
/// file, listing, directory and path it depended on is as it was; with its `ca_cert` files, read
/// and checked again (every one of the file set, as a full load does, even one that every
/// profile overrides).
fn checked<'a>(bytes: &'a [u8], path: &Path) -> Option<(Snapshot<'a>, HashMap<PathBuf, CaCert>)> {
    let snap: Snapshot = postcard::from_bytes(bytes).ok()?;
    if snap.format != FORMAT
        || snap.program != program()?
        || snap.home != home()
        || snap.files.first().map(FileStamp::path) != Some(path)
    {
        return None;
    }
    if !snap.files.iter().all(FileStamp::holds)
        || !snap.listings.iter().all(Listing::holds)
        || !snap.parents.iter().all(DirStamp::holds)
        || !snap.seen.iter().all(Seen::holds)
    {
        return None;
    }
    let mut cas: HashMap<PathBuf, CaCert> = HashMap::new();
    for file in &snap.cas {
        match check_ca_cert(Val::Path(file.clone())) {
            Ok(Val::Ca(ca)) => cas.insert(file.clone(), ca),
            _ => return None,
        };
    }
    Some((snap, cas))
}

/// `f` of the profiles of a file set as its valid snapshot holds them, for `list`: read where
/// they lie in its bytes, not built into [`Profile`]s (no copy of their text, no URL parsed
/// again: at 1,000 profiles that was half of `list`). `None` when the snapshot is not valid, or a
/// profile in it cannot be read: the full load answers then, and writes it again.
pub(in crate::config) fn with_listing<R>(
    state_dir: &Path,
    path: &Path,
    f: impl FnOnce(&[ListedProfile<'_>]) -> R,
) -> Option<R> {
    let bytes = read_trusted(&snapshot_path(state_dir, path))?;
    let (snap, cas) = checked(&bytes, path)?;
    let profiles = snap
        .profiles
        .iter()
        .map(|e| ListedProfile::of(e.decode()?, &cas))
        .collect::<Option<Vec<_>>>()?;
    Some(f(&profiles))
}

/// The rest of a snapshot read for one profile: the same bytes (the file set that was checked,
/// not the file as it may be now), decoded further only if asked.
pub struct Rest {
    bytes: Vec<u8>,
}

impl Rest {
    /// (name, client id, user) of every profile of the file set, for reading a cache of the first
    /// release (keyed by profile name); `None` when one of them cannot be decoded.
    pub fn names(&self) -> Option<Vec<(String, String, String)>> {
        let snap: Snapshot = postcard::from_bytes(&self.bytes).ok()?;
        snap.profiles
            .iter()
            .map(|e| {
                e.decode::<String>()
                    .map(|p| (p.name, p.client_id, p.username))
            })
            .collect()
    }
}

impl<'a> Encoded<'a> {
    /// The profile, when its body is one whole profile of this entry's name: its text as
    /// `String`s, or borrowed from the snapshot's bytes (`S = &str`).
    fn decode<S: Deserialize<'a> + AsRef<str>>(&self) -> Option<SnapProfile<S>> {
        let (p, left): (SnapProfile<S>, _) = postcard::take_from_bytes(self.body).ok()?;
        (left.is_empty() && p.name.as_ref() == self.name).then_some(p)
    }
}

impl SnapProfile {
    /// The profile this stands for, its `ca_cert` among the checked `cas` and its URL parsed
    /// (or taken from `urls`, the ones parsed already); `None` when the snapshot does not hold
    /// together.
    fn resolve(
        self,
        cas: &HashMap<PathBuf, CaCert>,
        urls: &mut HashMap<String, Url>,
    ) -> Option<Profile> {
        // Every profile's file is among them (it is one of a layer's).
        let ca_cert = match self.ca_cert {
            Some(file) => Some(Box::new(cas.get(&file)?.clone())),
            None => None,
        };
        Some(Profile {
            name: self.name,
            url: match urls.get(&self.url) {
                Some(url) => url.clone(),
                None => {
                    let url = Url::parse(&self.url).ok()?;
                    urls.insert(self.url, url.clone());
                    url
                }
            },
            api: self.api,
            username: self.username,
            password: match self.password {
                SnapPassword::Env(v) => PasswordSource::Env(v),
                SnapPassword::Cmd(c) => PasswordSource::Cmd(c),
                SnapPassword::Keyring { account, over_ssh } => {
                    PasswordSource::Keyring(KeyringEntry { account, over_ssh })
                }
                SnapPassword::Prompt => PasswordSource::Prompt,
            },
            platform: self.platform,
            client_id: self.client_id,
            client_secret: Secret::default(),
            tags: self.tags,
            allow_http: self.allow_http,
            timeout: Duration::from_millis(self.timeout_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            auto_refresh: self.auto_refresh,
            relogin: self.relogin,
            refresh_before: self.refresh_before_ms.map(Duration::from_millis),
            check_interval: self.check_interval_ms.map(Duration::from_millis),
            ca_cert,
            insecure: self.insecure,
            proxy: match self.proxy {
                Some(proxy) => Some(Box::new(Url::parse(&proxy).ok()?)),
                None => None,
            },
            admin: None,
        })
    }
}

/// Writes the snapshot of a full load, when it may hold it (no secret, every file a regular
/// one) and the state directory is there and private. Best effort: a snapshot not written
/// only means the next load is a full one.
pub(super) fn save(state_dir: &Path, loaded: &Profiles, reads: Reads) {
    let Some(files) = reads.files.into_iter().collect::<Option<Vec<FileStamp>>>() else {
        return;
    };
    let Some(program) = program() else {
        return;
    };
    let mut profiles = Vec::with_capacity(loaded.profiles.len());
    for p in &loaded.profiles {
        let password = match &p.password {
            PasswordSource::Env(v) => SnapPassword::Env(v.as_str()),
            PasswordSource::Cmd(c) => SnapPassword::Cmd(c.as_str()),
            PasswordSource::Keyring(k) => SnapPassword::Keyring {
                account: k.account.as_str(),
                over_ssh: k.over_ssh,
            },
            PasswordSource::Prompt => SnapPassword::Prompt,
            PasswordSource::Plain(_) => return,
        };
        let proxy_secret = p
            .proxy
            .as_ref()
            .is_some_and(|u| !u.username().is_empty() || u.password().is_some());
        if p.holds_secret() || p.admin.is_some() || proxy_secret {
            return;
        }
        let snap = SnapProfile {
            name: p.name.as_str(),
            url: p.url.as_str(),
            api: p.api.as_str(),
            username: p.username.as_str(),
            password,
            platform: p.platform.as_str(),
            client_id: p.client_id.as_str(),
            tags: p.tags.iter().map(String::as_str).collect(),
            allow_http: p.allow_http,
            timeout_ms: millis(p.timeout),
            connect_timeout_ms: millis(p.connect_timeout),
            auto_refresh: p.auto_refresh,
            relogin: p.relogin,
            refresh_before_ms: p.refresh_before.map(millis),
            check_interval_ms: p.check_interval.map(millis),
            ca_cert: p.ca_cert.as_ref().map(|c| c.path.clone()),
            insecure: p.insecure,
            proxy: p.proxy.as_deref().map(Url::as_str),
        };
        let Ok(body) = postcard::to_allocvec(&snap) else {
            return;
        };
        profiles.push((p.name.as_str(), body));
    }
    let snap = Snapshot {
        format: FORMAT,
        program,
        home: home(),
        files,
        listings: reads.listings,
        parents: reads.parents,
        seen: reads.seen,
        cas: reads.cas,
        dirs: loaded.dirs.clone(),
        settings: SnapSettings {
            max_concurrency: loaded.settings.max_concurrency,
            max_per_host: loaded.settings.max_per_host,
            read_only: loaded.settings.read_only,
            columns: loaded
                .settings
                .columns
                .as_ref()
                .map(|c| c.iter().map(|n| n.to_string()).collect()),
        },
        profiles: profiles
            .iter()
            .map(|(name, body)| Encoded { name, body })
            .collect(),
    };
    if !private_dir(state_dir) {
        return;
    }
    let Ok(bytes) = postcard::to_allocvec(&snap) else {
        return;
    };
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        // tempfile creates the file 0600.
        let mut tmp = tempfile::Builder::new()
            .prefix(".profiles-snapshot-")
            .tempfile_in(state_dir)?;
        tmp.write_all(&bytes)?;
        tmp.persist(snapshot_path(state_dir, &loaded.path))?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::debug!(error = %e, "profiles snapshot not written");
    }
}

/// The snapshot's bytes, when it is a regular file of the user's, 0600 or stricter, in a
/// private directory, and not too large.
fn read_trusted(file: &Path) -> Option<Vec<u8>> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(file)
        .ok()?;
    let meta = f.metadata().ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != me || meta.mode() & 0o077 != 0 || meta.len() > MAX_SNAPSHOT
    {
        return None;
    }
    if !private_dir(file.parent()?) {
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize + 1);
    f.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// A directory of the user's that nobody else may write to.
/// A state directory that is a symbolic link is followed, as the token cache's own checks do.
fn private_dir(dir: &Path) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    std::fs::metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == me && m.mode() & 0o022 == 0)
}

/// The program that wrote a snapshot: its version and its executable's file (device, inode,
/// size, modification and change times). A rebuilt or reinstalled program is a new file with a
/// new change time even when its modification time is kept (`cp -p`, packages, Nix's 1970), so
/// it never reads an older build's snapshot (postcard does not describe its fields).
fn program() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let meta = std::fs::metadata(exe).ok()?;
    Some(format!(
        "{} {} {} {} {}.{} {}.{}",
        env!("CARGO_PKG_VERSION"),
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    ))
}

/// The home directory `~/` in an include or a `ca_cert` path stands for.
fn home() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests;
