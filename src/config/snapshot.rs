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
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Bumped when the snapshot's shape or meaning changes (the program stamp covers rebuilds too).
/// 2: each profile encoded on its own.
const FORMAT: u32 = 2;

/// The most a snapshot file may hold: far above 10,000 profiles (about 3 MB).
const MAX_SNAPSHOT: u64 = 64 * 1024 * 1024;

/// One file read by the load, as it was when its text was parsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FileStamp {
    path: PathBuf,
    dev: u64,
    ino: u64,
    uid: u32,
    mode: u32,
    len: u64,
    sha256: String,
}

impl FileStamp {
    /// The stamp of a file opened and read: its metadata (from the open file) and its text.
    /// `None` for anything but a regular file (a pipe is read anew each time).
    pub(super) fn of(path: &Path, meta: &Metadata, text: &str) -> Option<FileStamp> {
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
    fn holds(&self) -> bool {
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
        let mut bytes = Vec::with_capacity(self.len as usize + 1);
        if file.read_to_end(&mut bytes).is_err() {
            return false;
        }
        hex(&Sha256::digest(&bytes)) == self.sha256
    }
}

/// The entries of a directory a glob looked in: names, and whether each is a regular file
/// (following a symbolic link).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Listing {
    dir: PathBuf,
    entries: Vec<(String, bool)>,
}

impl Listing {
    /// The directory's entries now; `None` when it cannot be read (not there: no entries).
    pub(super) fn of(dir: &Path) -> Listing {
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
pub(super) struct Seen {
    path: PathBuf,
    file: Option<(u64, u64)>,
}

impl Seen {
    pub(super) fn of(path: &Path) -> Seen {
        Seen {
            path: path.to_path_buf(),
            file: std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino())),
        }
    }
}

/// A catalogue's directory: its owner and mode decide whether the catalogue may be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DirStamp {
    dir: PathBuf,
    uid: u32,
    mode: u32,
}

impl DirStamp {
    pub(super) fn of(dir: &Path, meta: &Metadata) -> DirStamp {
        DirStamp {
            dir: dir.to_path_buf(),
            uid: meta.uid(),
            mode: meta.mode(),
        }
    }

    fn holds(&self) -> bool {
        std::fs::metadata(&self.dir).is_ok_and(|m| (m.uid(), m.mode()) == (self.uid, self.mode))
    }
}

/// What a full load read, besides the profiles file's text: filled in by the loader.
#[derive(Default)]
pub(super) struct Reads {
    /// Every file read, in the order of [`Profiles::files`]; `None` for one that is not a
    /// regular file (then no snapshot is written).
    pub(super) files: Vec<Option<FileStamp>>,
    pub(super) listings: Vec<Listing>,
    pub(super) parents: Vec<DirStamp>,
    pub(super) seen: Vec<Seen>,
    /// Every `ca_cert` file checked, in any layer (read and checked again at each load).
    pub(super) cas: Vec<PathBuf>,
}

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

/// A resolved profile without its secrets (it has none: see the module's doc).
#[derive(Serialize, Deserialize)]
struct SnapProfile {
    name: String,
    url: String,
    api: String,
    username: String,
    password: SnapPassword,
    platform: String,
    client_id: String,
    tags: Vec<String>,
    allow_http: bool,
    timeout_ms: u64,
    connect_timeout_ms: u64,
    auto_refresh: bool,
    relogin: bool,
    refresh_before_ms: Option<u64>,
    check_interval_ms: Option<u64>,
    ca_cert: Option<PathBuf>,
    insecure: bool,
    proxy: Option<String>,
}

#[derive(Serialize, Deserialize)]
enum SnapPassword {
    Env(String),
    Cmd(String),
    Keyring { account: String, over_ssh: bool },
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
    let snap: Snapshot = postcard::from_bytes(&bytes).ok()?;
    if snap.format != FORMAT
        || snap.program != program()?
        || snap.home != home()
        || snap.files.first().map(|f| f.path.as_path()) != Some(path)
    {
        return None;
    }
    if !snap.files.iter().all(FileStamp::holds)
        || !snap.listings.iter().all(|l| Listing::of(&l.dir) == *l)
        || !snap.parents.iter().all(DirStamp::holds)
        || !snap.seen.iter().all(|s| Seen::of(&s.path) == *s)
    {
        return None;
    }
    let columns = match snap.settings.columns {
        Some(names) => Some(
            names
                .iter()
                .map(|n| COLUMN_NAMES.iter().copied().find(|c| c == n))
                .collect::<Option<Vec<&'static str>>>()?,
        ),
        None => None,
    };
    // Every ca_cert file of the file set is read and checked again, as a full load does, even
    // one that every profile overrides.
    let mut cas: HashMap<PathBuf, CaCert> = HashMap::new();
    for file in snap.cas {
        match check_ca_cert(Val::Path(file.clone())) {
            Ok(Val::Ca(ca)) => cas.insert(file, ca),
            _ => return None,
        };
    }
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
        files: snap.files.into_iter().map(|f| f.path).collect(),
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
            .map(|e| e.decode().map(|p| (p.name, p.client_id, p.username)))
            .collect()
    }
}

impl Encoded<'_> {
    /// The profile, when its body is one whole profile of this entry's name.
    fn decode(&self) -> Option<SnapProfile> {
        let (p, left): (SnapProfile, _) = postcard::take_from_bytes(self.body).ok()?;
        (left.is_empty() && p.name == self.name).then_some(p)
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
            PasswordSource::Env(v) => SnapPassword::Env(v.clone()),
            PasswordSource::Cmd(c) => SnapPassword::Cmd(c.clone()),
            PasswordSource::Keyring(k) => SnapPassword::Keyring {
                account: k.account.clone(),
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
            name: p.name.clone(),
            url: p.url.to_string(),
            api: p.api.clone(),
            username: p.username.clone(),
            password,
            platform: p.platform.clone(),
            client_id: p.client_id.clone(),
            tags: p.tags.clone(),
            allow_http: p.allow_http,
            timeout_ms: millis(p.timeout),
            connect_timeout_ms: millis(p.connect_timeout),
            auto_refresh: p.auto_refresh,
            relogin: p.relogin,
            refresh_before_ms: p.refresh_before.map(millis),
            check_interval_ms: p.check_interval.map(millis),
            ca_cert: p.ca_cert.as_ref().map(|c| c.path.clone()),
            insecure: p.insecure,
            proxy: p.proxy.as_deref().map(Url::to_string),
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
mod tests {
    use super::super::{load as full_load, load_cached};
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct World {
        dir: tempfile::TempDir,
        state: PathBuf,
        profiles: PathBuf,
    }

    fn world(text: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        let profiles = dir.path().join("profiles.toml");
        write(&profiles, text);
        World {
            dir,
            state,
            profiles,
        }
    }

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    impl World {
        fn cached(&self) -> Profiles {
            load_cached(&self.profiles, Some(&self.state)).unwrap()
        }
        /// The error of a load through the snapshot (which must fail).
        fn error(&self) -> String {
            load_cached(&self.profiles, Some(&self.state))
                .unwrap_err()
                .to_string()
        }
        fn through_snapshot(&self) -> Option<Profiles> {
            load(&self.state, &self.profiles, None).map(|(p, rest)| {
                assert!(rest.is_none());
                p
            })
        }
        fn snapshot(&self) -> PathBuf {
            snapshot_path(&self.state, &self.profiles)
        }
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
    }

    fn shown(p: &Profiles) -> String {
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}",
            p.profiles, p.settings, p.files, p.dirs
        )
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    const RICH: &str = r#"
include = ["conf.d/*.toml", "team.toml"]

[defaults]
platform = "ops"
max_concurrency = 12
max_per_host = 3
columns = ["name", "state", "user", "token"]
password_env = "OPS_PW"

[profiles.acme]
url = "https://acme.example.com/sugar"
username = "integration"
tags = ["acme", "prod"]
timeout_s = 7
refresh_before_s = 120
check_interval_s = 60
proxy = "socks5h://127.0.0.1:1080"

[profiles.local]
url = "http://127.0.0.1:8080/x"
username = "admin"
password_cmd = "pass show local"
api = "v11_20"
client_id = "mine"
auto_refresh = false
relogin = false

[profiles.kr]
url = "https://kr.example.com"
username = "kim"
password_keyring = true
keyring_account = "kim@kr"
keyring_over_ssh = true

[profiles.ask]
url = "https://ask.example.com"
username = "asker"
password_keyring = false

[profiles.team-one]
tags = ["mine"]
"#;

    fn rich() -> World {
        let w = world(RICH);
        write(&w.path("ca.pem"), &ca_pem());
        write(
            &w.path("conf.d/a.toml"),
            "[profiles.cat-a]\nurl = \"https://a.example.com\"\nusername = \"u\"\nca_cert = \"../ca.pem\"\n",
        );
        write(
            &w.path("team.toml"),
            "[defaults]\nusername = \"team\"\n[profiles.team-one]\nurl = \"https://t.example.com\"\n",
        );
        w
    }

    #[test]
    fn a_snapshot_gives_what_the_full_load_gives() {
        let w = rich();
        let full = w.cached();
        assert!(w.snapshot().exists(), "a full load writes the snapshot");
        let snap = w.through_snapshot().expect("the snapshot is used");
        assert_eq!(shown(&snap), shown(&full));
        assert_eq!(shown(&w.cached()), shown(&full_load(&w.profiles).unwrap()));
        let mode = std::fs::metadata(w.snapshot())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Profiles of the file and of the catalogues, all there.
        let names: Vec<&str> = snap.profiles.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["cat-a", "team-one", "acme", "local", "kr", "ask"]);
    }

    #[test]
    fn one_profile_is_decoded_alone_and_an_unknown_name_gets_them_all() {
        let w = rich();
        let full = w.cached();
        let (one, rest) = load(&w.state, &w.profiles, Some("kr")).expect("the snapshot is used");
        // The rest names every profile of the file set, with its client id.
        let names = rest.unwrap().names().unwrap();
        let local = names.iter().find(|n| n.0 == "local").unwrap();
        assert_eq!((local.1.as_str(), local.2.as_str()), ("mine", "admin"));
        assert_eq!(names.len(), full.profiles.len());
        let kr = full.profiles.iter().find(|p| p.name == "kr").unwrap();
        assert_eq!(format!("{:?}", one.profiles), format!("{:?}", [kr]));
        assert_eq!(
            format!("{:?}", one.settings),
            format!("{:?}", full.settings)
        );
        // A catalogue's profile, with its checked ca_cert.
        let (one, _) = load(&w.state, &w.profiles, Some("cat-a")).unwrap();
        assert!(one.profiles[0].ca_cert.is_some());
        let (all, rest) = load(&w.state, &w.profiles, Some("nosuch")).unwrap();
        assert!(rest.is_none());
        assert_eq!(shown(&all), shown(&full));
    }

    #[test]
    fn an_edit_that_keeps_the_size_and_the_times_is_seen() {
        let w = world("[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"anna\"\n");
        w.cached();
        let before = std::fs::metadata(&w.profiles).unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&w.profiles)
            .unwrap();
        std::fs::write(
            &w.profiles,
            "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"bert\"\n",
        )
        .unwrap();
        file.set_times(
            std::fs::FileTimes::new()
                .set_modified(before.modified().unwrap())
                .set_accessed(before.accessed().unwrap()),
        )
        .unwrap();
        assert_eq!(w.cached().profiles[0].username, "bert");
    }

    #[test]
    fn a_file_holding_a_secret_gets_no_snapshot() {
        for secret in [
            "password = \"hunter2-xyz\"",
            "client_secret = \"hunter2-xyz\"",
        ] {
            let w = world(&format!(
                "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n{secret}\n"
            ));
            let p = w.cached();
            assert_eq!(p.profiles.len(), 1);
            assert!(!w.snapshot().exists(), "{secret}: no snapshot");
            for entry in std::fs::read_dir(&w.state).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                assert!(!bytes.windows(7).any(|b| b == b"hunter2"));
            }
        }
    }

    #[test]
    fn a_new_catalogue_in_a_glob_directory_is_read() {
        let w = rich();
        w.cached();
        write(
            &w.path("conf.d/b.toml"),
            "[profiles.cat-b]\nurl = \"https://b.example.com\"\nusername = \"u\"\n",
        );
        assert!(w.through_snapshot().is_none());
        assert!(w.cached().get("cat-b").is_some());
        std::fs::remove_file(w.path("conf.d/b.toml")).unwrap();
        assert!(w.cached().get("cat-b").is_none());
    }

    #[test]
    fn a_catalogue_others_may_change_is_refused_again() {
        let w = rich();
        w.cached();
        let cat = w.path("conf.d/a.toml");
        std::fs::set_permissions(&cat, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = w.error();
        assert!(e.contains("others can change"), "{e}");
        std::fs::set_permissions(w.path("conf.d"), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(&cat, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = w.error();
        assert!(e.contains("writable by others"), "{e}");
    }

    #[test]
    fn a_broken_ca_file_is_reported() {
        let w = rich();
        w.cached();
        write(&w.path("ca.pem"), "not a certificate\n");
        let e = w.error();
        assert!(e.contains("ca_cert"), "{e}");
    }

    #[test]
    fn a_broken_profiles_file_is_reported_where_it_is_broken() {
        let w = rich();
        w.cached();
        write(
            &w.profiles,
            &RICH.replace("timeout_s = 7", "timeout_s = \"7\""),
        );
        let e = load_cached(&w.profiles, Some(&w.state)).unwrap_err();
        assert!(
            e.to_string().contains(":15:13: profiles.acme.timeout_s"),
            "{e}"
        );
    }

    #[test]
    fn a_link_to_a_file_read_already_is_followed_again_when_it_moves() {
        let w = world("include = [\"cat/prod.toml\", \"conf.d/*.toml\"]\n");
        write(
            &w.path("cat/prod.toml"),
            "[profiles.prod]\nurl = \"https://p.example.com\"\nusername = \"u\"\n",
        );
        write(
            &w.path("cat/staging.toml"),
            "[profiles.staging]\nurl = \"https://s.example.com\"\nusername = \"u\"\n",
        );
        std::fs::create_dir(w.path("conf.d")).unwrap();
        std::os::unix::fs::symlink("../cat/prod.toml", w.path("conf.d/x.toml")).unwrap();
        assert!(w.cached().get("staging").is_none());
        std::fs::remove_file(w.path("conf.d/x.toml")).unwrap();
        std::os::unix::fs::symlink("../cat/staging.toml", w.path("conf.d/x.toml")).unwrap();
        assert!(w.cached().get("staging").is_some());
    }

    #[test]
    fn a_ca_file_every_profile_overrides_is_still_checked() {
        let w = world(
            "[defaults]\nca_cert = \"corp.pem\"\n[profiles.a]\nurl = \"https://a.example.com\"\n\
             username = \"u\"\nca_cert = \"own.pem\"\n",
        );
        write(&w.path("corp.pem"), &ca_pem());
        write(&w.path("own.pem"), &ca_pem());
        w.cached();
        assert!(w.through_snapshot().is_some());
        write(&w.path("corp.pem"), "garbage\n");
        let e = w.error();
        assert!(e.contains("defaults.ca_cert"), "{e}");
    }

    #[test]
    fn a_proxy_with_a_password_gets_no_snapshot() {
        let w = world(
            "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n\
             proxy = \"http://alice:hunter2-xyz@proxy.example.com:3128\"\n",
        );
        w.cached();
        assert!(!w.snapshot().exists());
    }

    /// A snapshot that still describes the files, but says something else of a profile: what
    /// someone who could write to it would make.
    fn forge(w: &World) {
        let bytes = std::fs::read(w.snapshot()).unwrap();
        let mut snap: Snapshot = postcard::from_bytes(&bytes).unwrap();
        let mut p: SnapProfile = postcard::from_bytes(snap.profiles[0].body).unwrap();
        p.url = "https://evil.example.net/".into();
        let body = postcard::to_allocvec(&p).unwrap();
        snap.profiles[0].body = &body;
        std::fs::write(w.snapshot(), postcard::to_allocvec(&snap).unwrap()).unwrap();
    }

    #[test]
    fn an_entry_with_another_profiles_body_or_a_cut_or_padded_one_is_not_used() {
        let w = world(
            "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"anna\"\n\
             [profiles.b]\nurl = \"https://b.example.com\"\nusername = \"bert\"\n",
        );
        w.cached();
        let bytes = std::fs::read(w.snapshot()).unwrap();
        // `a`'s body made from `a`'s and `b`'s.
        type Body = dyn Fn(&[u8], &[u8]) -> Vec<u8>;
        let a = |make: &Body| {
            let mut snap: Snapshot = postcard::from_bytes(&bytes).unwrap();
            let body = make(snap.profiles[0].body, snap.profiles[1].body);
            snap.profiles[0].body = &body;
            std::fs::write(w.snapshot(), postcard::to_allocvec(&snap).unwrap()).unwrap();
            load(&w.state, &w.profiles, Some("a"))
        };
        // `a` in front of `b`'s body; `a`'s body cut short; `a`'s body with a byte more.
        assert!(a(&|_, b| b.to_vec()).is_none());
        assert!(a(&|a, _| a[..a.len() / 2].to_vec()).is_none());
        assert!(a(&|a, _| [a, &[0]].concat()).is_none());
        // Either way the full load answers, and writes a sound snapshot again.
        assert_eq!(w.cached().get("a").unwrap().username, "anna");
        let (one, rest) = load(&w.state, &w.profiles, Some("a")).unwrap();
        assert!(rest.is_some());
        assert_eq!(one.profiles[0].username, "anna");
    }

    #[test]
    fn a_snapshot_others_may_change_is_not_trusted() {
        let w = world("[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n");
        w.cached();
        forge(&w);
        // The forgery is read when the file is private (what makes the checks below the ones
        // that refuse it)...
        assert_eq!(
            w.cached().profiles[0].url.as_str(),
            "https://evil.example.net/"
        );
        // ...and not when others may read or change it, or its directory.
        std::fs::set_permissions(w.snapshot(), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            w.cached().profiles[0].url.as_str(),
            "https://a.example.com/"
        );
        forge(&w);
        std::fs::set_permissions(w.snapshot(), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&w.state, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            w.cached().profiles[0].url.as_str(),
            "https://a.example.com/"
        );
    }

    #[test]
    fn a_damaged_snapshot_is_read_past() {
        let w = rich();
        let full = w.cached();
        let bytes = std::fs::read(w.snapshot()).unwrap();
        for damaged in [&b"garbage"[..], &bytes[..bytes.len() / 2], &[]] {
            std::fs::write(w.snapshot(), damaged).unwrap();
            assert_eq!(shown(&w.cached()), shown(&full));
        }
        // The last full load wrote a good one again.
        assert!(w.through_snapshot().is_some());
    }

    #[test]
    fn a_state_directory_reached_through_a_link_keeps_a_snapshot() {
        let w = world("[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n");
        let link = w.path("state-link");
        std::os::unix::fs::symlink(&w.state, &link).unwrap();
        load_cached(&w.profiles, Some(&link)).unwrap();
        assert!(load(&link, &w.profiles, None).is_some());
    }

    #[test]
    fn a_state_directory_others_may_write_to_gets_no_snapshot() {
        let w = world("[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n");
        std::fs::set_permissions(&w.state, std::fs::Permissions::from_mode(0o777)).unwrap();
        w.cached();
        assert!(!w.snapshot().exists());
    }
}
