//! The profiles file: schema, defaults, validation with located errors.
//!
//! Only reads the file and the files it includes; no other I/O.
//!
//! Here: what a loaded file is (profiles, settings, password sources) and the entry points
//! [`load`] and [`parse`]. `schema`: every key of the file; `checks`: checks of single values;
//! `validate`: the walk over one file, and one profile resolved from its layers; `include`: the
//! files a file includes (catalogues), their rules, overlays and where each key came from;
//! `errors`: located errors; `messages`: their wording and suggestions.

mod checks;
mod errors;
mod include;
mod messages;
mod schema;
mod snapshot;
mod validate;

pub use errors::{ConfigError, LoadError};
pub use schema::{COLUMN_NAMES, MAX_PROFILE_NAME};
pub use snapshot::{ListedProfile, Rest};

/// Up to three known names close to a mistyped one, closest first.
pub fn close_names<'k>(name: &str, known: &[&'k str]) -> Vec<&'k str> {
    messages::close(name, known, 3)
}

use crate::identity::{ProfileId, SessionKey};
use crate::secret::Secret;
use errors::Errors;
use include::parse_file;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Where a profile's password comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// `password_env = "VAR"`: read the environment variable at use.
    Env(String),
    /// `password_cmd = "pass show x"`: run with `sh -c`, first line of stdout.
    Cmd(String),
    /// `password = "..."`: plain text in the file.
    Plain(Secret),
    /// `password_keyring = true`: the OS keyring (Secret Service, macOS Keychain, Windows
    /// Credential Manager), service `sugar-sessions`.
    Keyring(KeyringEntry),
    /// None of them: ask the user on the terminal.
    Prompt,
}

/// Where in the OS keyring a profile's password is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringEntry {
    /// `keyring_account`, else `USER@INSTANCE-HOST`: profiles of one user on one instance share it.
    pub account: String,
    /// `keyring_over_ssh = true`: tried even when `SSH_CONNECTION` is set.
    pub over_ssh: bool,
}

/// The keyring's service name: every entry of sugar-sessions is under it.
pub const KEYRING_SERVICE: &str = "sugar-sessions";

impl PasswordSource {
    /// What `list` and the details pane call it: env, cmd, plain, keyring or prompt.
    pub fn kind(&self) -> &'static str {
        match self {
            PasswordSource::Env(_) => "env",
            PasswordSource::Cmd(_) => "cmd",
            PasswordSource::Plain(_) => "plain",
            PasswordSource::Keyring(_) => "keyring",
            PasswordSource::Prompt => "prompt",
        }
    }

    /// True when the password can be had without asking a person.
    pub fn is_non_interactive(&self) -> bool {
        !matches!(self, PasswordSource::Prompt)
    }
}

/// One fully resolved profile: `[defaults]` applied, validated.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The table key: `[A-Za-z0-9._-]+`.
    pub name: String,
    /// The instance root, as written (validated http(s) with a host). The client appends `/rest/{api}/...`.
    pub url: Url,
    /// REST version, e.g. `v11`, `v11_16`.
    pub api: String,
    pub username: String,
    pub password: PasswordSource,
    pub platform: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub tags: Vec<String>,
    pub allow_http: bool,
    /// Total timeout of one request (`timeout_s`, default 20 s).
    pub timeout: Duration,
    /// Connect timeout (5 s, or `timeout` when that is shorter).
    pub connect_timeout: Duration,
    /// `auto_refresh` (default true): refresh before the access token expires, without being asked.
    pub auto_refresh: bool,
    /// `relogin` (default true): when a refresh token is rejected, log in again once through a
    /// non-interactive password source.
    pub relogin: bool,
    /// `refresh_before_s`: refresh this long before the access token expires (default: 300 s, or a
    /// fifth of the token's lifetime when that is shorter).
    pub refresh_before: Option<Duration>,
    /// `check_interval_s`: `serve` checks the session live this often (none by default).
    pub check_interval: Option<Duration>,
    /// `ca_cert`: certificates trusted in addition to the system's (and `SSL_CERT_FILE`).
    /// (Boxed, as `proxy`: most profiles have none, and thousands of profiles are held at once.)
    pub ca_cert: Option<Box<CaCert>>,
    /// `insecure = true`: any server certificate is accepted. Never the default; shown as INSECURE.
    pub insecure: bool,
    /// `proxy`: every request goes through this proxy (`http://`, `https://`, `socks5://`,
    /// `socks5h://`); without it, `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` apply.
    pub proxy: Option<Box<Url>>,
    /// For an impersonation (sudo) profile: the admin whose session made it (`username` is then
    /// the impersonated user). `None` for every profile of the file.
    pub admin: Option<String>,
}

/// The certificates of a `ca_cert` file, read and checked when the profiles file is loaded.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CaCert {
    /// The file, resolved against the profiles file's directory.
    pub path: PathBuf,
    /// Its certificates (DER), in the order of the file; at least one.
    pub certs: Arc<Vec<Vec<u8>>>,
}

impl fmt::Debug for CaCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CaCert({}, {} certificate(s))",
            self.path.display(),
            self.certs.len()
        )
    }
}

impl Profile {
    /// Whether the profile holds a secret in memory (a plain password, a client secret), which is
    /// zeroized when it is dropped.
    pub fn holds_secret(&self) -> bool {
        matches!(self.password, PasswordSource::Plain(_)) || !self.client_secret.is_empty()
    }

    /// `host` or `host:port` of the instance, for display and for the per-host concurrency bound.
    pub fn host_port(&self) -> String {
        let host = self.url.host_str().unwrap_or("");
        match self.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }

    /// The instance root without a trailing slash, e.g. `https://acme.sugarondemand.com` or
    /// `http://127.0.0.1:8080/acme`.
    pub fn root(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }

    /// The REST root: `{root}/rest/{api}`, e.g. `https://acme.sugarondemand.com/rest/v11`.
    pub fn rest_root(&self) -> String {
        format!("{}/rest/{}", self.root(), self.api)
    }

    /// The URL of a REST endpoint: `{root}/rest/{api}/{endpoint}`, e.g. `api_url("oauth2/token")`.
    pub fn api_url(&self, endpoint: &str) -> String {
        format!("{}/{}", self.rest_root(), endpoint.trim_start_matches('/'))
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// An impersonation (sudo) profile for `user`, made with this profile's (admin) session: its
    /// instance, platform and client, as `user`, labelled `NAME>USER`, with no password source (a
    /// new session comes only from another impersonation) and nothing automatic.
    pub fn impersonation(&self, user: &str) -> Profile {
        Profile {
            name: ProfileId::stored_impersonation(&self.name, user).to_string(),
            username: user.to_string(),
            admin: Some(self.username.clone()),
            password: PasswordSource::Prompt,
            auto_refresh: false,
            relogin: false,
            ..self.clone()
        }
    }

    /// Requests go over plain `http://` to a host that is not loopback (`allow_http`).
    pub fn plain_http_to_remote(&self) -> bool {
        self.url.scheme() == "http" && !checks::is_loopback(&self.url)
    }

    /// An impersonation profile (`NAME>USER`), not one of the file.
    pub fn is_impersonation(&self) -> bool {
        self.admin.is_some()
    }

    /// The identity of the profile's session: what the token cache keys it by.
    pub fn session_key(&self) -> SessionKey {
        match &self.admin {
            Some(admin) => {
                SessionKey::new(self.url.as_str(), admin, &self.platform, &self.client_id)
                    .impersonating(&self.username)
            }
            None => SessionKey::new(
                self.url.as_str(),
                &self.username,
                &self.platform,
                &self.client_id,
            ),
        }
    }
}

/// Settings of the whole file (from `[defaults]`) that are not profile keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `max_concurrency`: requests in flight at once across all profiles (default 64).
    pub max_concurrency: usize,
    /// `max_per_host`: requests in flight at once to one instance host and port (default 8).
    pub max_per_host: usize,
    /// `read_only = true`: the screen and the commands only show sessions (see README's
    /// "Read-only mode"); default false.
    pub read_only: bool,
    /// `columns`: the screen's columns, chosen and ordered (names of [`COLUMN_NAMES`], `name` and
    /// `state` among them); `None`: all of them in the default order.
    pub columns: Option<Vec<&'static str>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_concurrency: 64,
            max_per_host: 8,
            read_only: false,
            columns: None,
        }
    }
}

/// A loaded profiles file.
#[derive(Clone, Debug)]
pub struct Profiles {
    pub path: PathBuf,
    /// In the order of the file; shared with the jobs that act on them (ten thousand profiles
    /// are not copied for a bulk action).
    pub profiles: Vec<Arc<Profile>>,
    pub settings: Settings,
    /// Every file read: the profiles file first, then the files it includes, in the order read.
    pub files: Vec<PathBuf>,
    /// The directories of the globs of `include` (a new file there may be a new catalogue).
    pub dirs: Vec<PathBuf>,
    /// Where each profile's keys were set (`list --origin`), by profile name; empty unless asked
    /// for ([`load_with_origins`], [`parse`]).
    pub origins: std::collections::HashMap<String, Origins>,
}

/// Where one key of a profile was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub key: &'static str,
    /// An index into [`Profiles::files`].
    pub file: usize,
    /// 1-based.
    pub line: usize,
}

/// Where a profile's keys were set, in the schema's order; keys left to the built-in defaults are
/// not there.
pub type Origins = Vec<Origin>;

impl Profiles {
    /// Where each key of a profile was set, as key and `FILE:LINE` (`list --origin`).
    pub fn origin_of(&self, name: &str) -> Vec<(&'static str, String)> {
        self.origins
            .get(name)
            .into_iter()
            .flatten()
            .map(|o| {
                let file = self.files.get(o.file).map(|f| f.display().to_string());
                (o.key, format!("{}:{}", file.unwrap_or_default(), o.line))
            })
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name).map(|p| &**p)
    }
}

/// Read and validate a profiles file.
///
/// A file that holds a plain `password` is refused when others may read or change it (any of the
/// group and other permission bits set), as OpenSSH refuses such key files.
pub fn load(path: &Path) -> Result<Profiles, LoadError> {
    load_as(path, false)
}

/// [`load`], with where each key was set ([`Profiles::origins`], for `list --origin`): finding
/// that costs a line number per key, which every other command goes without.
pub fn load_with_origins(path: &Path) -> Result<Profiles, LoadError> {
    load_as(path, true)
}

/// [`load`] through the validated snapshot kept in `state_dir` (see `snapshot.rs`): the same
/// profiles, without the TOML parse and the walk while no file the load read has changed. A
/// full load writes the snapshot again when it may hold the result (no secret in it).
pub fn load_cached(path: &Path, state_dir: Option<&Path>) -> Result<Profiles, LoadError> {
    load_cached_for(path, state_dir, None).map(|(profiles, _)| profiles)
}

/// [`load_cached`] for a command on the one profile `only`: when the snapshot is valid and holds
/// it, that profile alone is decoded, with the [`Rest`] of the snapshot (the profiles are then not
/// the file's whole set: no other profile, no name to suggest). Every profile otherwise, and no
/// rest.
pub fn load_cached_for(
    path: &Path,
    state_dir: Option<&Path>,
    only: Option<&str>,
) -> Result<(Profiles, Option<Rest>), LoadError> {
    let Some(dir) = state_dir else {
        return load(path).map(|profiles| (profiles, None));
    };
    if let Some(loaded) = snapshot::load(dir, path, only) {
        return Ok(loaded);
    }
    let (profiles, reads) = read_and_parse(path, false, true)?;
    snapshot::save(dir, &profiles, reads);
    Ok((profiles, None))
}

/// `f` of the profiles of `path` as its valid snapshot in `state_dir` holds them, for `list`: read
/// where they lie, not built. `None` when there is no snapshot that holds ([`load_cached`] then).
pub fn with_listing<R>(
    path: &Path,
    state_dir: Option<&Path>,
    f: impl FnOnce(&[ListedProfile<'_>]) -> R,
) -> Option<R> {
    snapshot::with_listing(state_dir?, path, f)
}

fn load_as(path: &Path, origins: bool) -> Result<Profiles, LoadError> {
    read_and_parse(path, origins, false).map(|(profiles, _)| profiles)
}

/// Reads and validates the file; `reads`: keep what the load read (for the snapshot: each file's
/// SHA-256, the glob directories' listings, ...), which only [`load_cached`] wants.
fn read_and_parse(
    path: &Path,
    origins: bool,
    reads: bool,
) -> Result<(Profiles, snapshot::Reads), LoadError> {
    use std::io::Read;
    let io = |error| LoadError::Io {
        file: path.to_path_buf(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io)?;
    let stamp = file
        .metadata()
        .ok()
        .filter(|_| reads)
        .and_then(|meta| snapshot::FileStamp::of(path, &meta, &text));
    let (profiles, plain_password_at, reads) =
        parse_file(&text, path, stamp, origins).map_err(LoadError::Invalid)?;
    if let Some((at, key)) = plain_password_at {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|error| LoadError::Io {
                file: path.to_path_buf(),
                error,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            let mut errs = Errors::new(&text, path);
            errs.push(
                at,
                Some(key),
                format!(
                    "the file holds a plain password, and others can read or change it \
                     (mode {:03o}): run `chmod 600 {}`, or use password_env, password_cmd or \
                     password_keyring",
                    mode & 0o777,
                    path.display()
                ),
            );
            return Err(LoadError::Invalid(errs.finish()));
        }
    }
    Ok((profiles, reads))
}

/// Validate the text of a profiles file; `path` is used in the errors.
///
/// Every problem found is reported, in the order of the file. A TOML syntax error is reported
/// alone: the parser stops there.
///
/// A `ca_cert` file is read here too (relative paths are resolved against `path`'s directory): a
/// missing or invalid one is reported like any other mistake.
pub fn parse(text: &str, path: &Path) -> Result<Profiles, Vec<ConfigError>> {
    parse_file(text, path, None, true).map(|(profiles, _, _)| profiles)
}
