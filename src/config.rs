//! The profiles file: schema, defaults, validation with located errors.
//!
//! Only reads the file; no other I/O.

use crate::secret::Secret;
use std::fmt;
use std::path::{Path, PathBuf};
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
    /// None of them: ask the user on the terminal.
    Prompt,
}

impl PasswordSource {
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
}

impl Profile {
    /// `host` or `host:port` of the instance, for display and for the per-host concurrency bound.
    pub fn host_port(&self) -> String {
        let host = self.url.host_str().unwrap_or("");
        match self.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// Settings of the whole file (from `[defaults]`) that are not profile keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `max_concurrency`: requests in flight at once across all profiles (default 64).
    pub max_concurrency: usize,
    /// `max_per_host`: requests in flight at once to one instance host and port (default 8).
    pub max_per_host: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { max_concurrency: 64, max_per_host: 8 }
    }
}

/// A loaded profiles file.
#[derive(Clone, Debug)]
pub struct Profiles {
    pub path: PathBuf,
    /// In the order of the file.
    pub profiles: Vec<Profile>,
    pub settings: Settings,
}

impl Profiles {
    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }
}

/// One problem in the profiles file, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Dotted key path, e.g. `profiles.acme-prod.url`; `None` for syntax errors outside any key.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a profiles file could not be used.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Io { file: PathBuf, error: std::io::Error },
    /// The file was read, and has these problems (at least one).
    Invalid(Vec<ConfigError>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { file, error } => write!(f, "{}: cannot read the profiles file: {error}", file.display()),
            LoadError::Invalid(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// Read and validate a profiles file.
pub fn load(path: &Path) -> Result<Profiles, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|error| LoadError::Io { file: path.to_path_buf(), error })?;
    parse(&text, path).map_err(LoadError::Invalid)
}

/// Validate the text of a profiles file; `path` is used in the errors.
pub fn parse(text: &str, path: &Path) -> Result<Profiles, Vec<ConfigError>> {
    let _ = (text, path);
    unimplemented!("config::parse is being written")
}
