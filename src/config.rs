//! The profiles file: schema, defaults, validation with located errors.
//!
//! Only reads the file; no other I/O.

use crate::identity::SessionKey;
use crate::secret::Secret;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue};
use url::{Host, Url};

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
    /// `auto_refresh` (default true): refresh before the access token expires, without being asked.
    pub auto_refresh: bool,
    /// `relogin` (default true): when a refresh token is rejected, log in again once through a
    /// non-interactive password source.
    pub relogin: bool,
    /// `refresh_before_s`: refresh this long before the access token expires (default: 300 s, or a
    /// fifth of the token's lifetime when that is shorter).
    pub refresh_before: Option<Duration>,
    /// `ca_cert`: certificates trusted in addition to the system's (and `SSL_CERT_FILE`).
    pub ca_cert: Option<CaCert>,
    /// `insecure = true`: any server certificate is accepted. Never the default; shown as INSECURE.
    pub insecure: bool,
    /// `proxy`: every request goes through this proxy (`http://`, `https://`, `socks5://`,
    /// `socks5h://`); without it, `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` apply.
    pub proxy: Option<Url>,
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

    /// The URL of a REST endpoint: `{root}/rest/{api}/{endpoint}`, e.g. `api_url("oauth2/token")`.
    pub fn api_url(&self, endpoint: &str) -> String {
        format!(
            "{}/rest/{}/{}",
            self.root(),
            self.api,
            endpoint.trim_start_matches('/')
        )
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_concurrency: 64,
            max_per_host: 8,
        }
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
    Io {
        file: PathBuf,
        error: std::io::Error,
    },
    /// The file was read, and has these problems (at least one).
    Invalid(Vec<ConfigError>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { file, error } => write!(
                f,
                "{}: cannot read the profiles file: {error}",
                file.display()
            ),
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
///
/// A file that holds a plain `password` is refused when others may read or change it (any of the
/// group and other permission bits set), as OpenSSH refuses such key files.
pub fn load(path: &Path) -> Result<Profiles, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|error| LoadError::Io {
        file: path.to_path_buf(),
        error,
    })?;
    let (profiles, plain_password_at) = parse_file(&text, path).map_err(LoadError::Invalid)?;
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
                     (mode {:03o}): run `chmod 600 {}`, or use password_env or password_cmd",
                    mode & 0o777,
                    path.display()
                ),
            );
            return Err(LoadError::Invalid(errs.finish()));
        }
    }
    Ok(profiles)
}

/// Validate the text of a profiles file; `path` is used in the errors.
///
/// Every problem found is reported, in the order of the file. A TOML syntax error is reported
/// alone: the parser stops there.
///
/// A `ca_cert` file is read here too (relative paths are resolved against `path`'s directory): a
/// missing or invalid one is reported like any other mistake.
pub fn parse(text: &str, path: &Path) -> Result<Profiles, Vec<ConfigError>> {
    parse_file(text, path).map(|(profiles, _)| profiles)
}

/// Where a key is: byte offset and dotted key path.
type KeyAt = (usize, String);

/// [`parse`], and where the first plain `password` key is, if any.
fn parse_file(text: &str, path: &Path) -> Result<(Profiles, Option<KeyAt>), Vec<ConfigError>> {
    let mut errs = Errors::new(text, path);
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span().unwrap_or_default();
            let mut message = format!("invalid TOML: {}", e.message());
            if e.message() == "duplicate key" {
                // The span is the key (never a value): name it.
                if let Some(key) = text.get(span.clone()).filter(|k| !k.is_empty()) {
                    message = format!("invalid TOML: duplicate key `{}`", shown(key));
                }
            }
            errs.push(span.start, None, message);
            return Err(errs.finish());
        }
    };

    let mut plain_password_at: Option<KeyAt> = None;
    let mut note_password = |layer: &Layer| {
        if let Some(f) = layer.field("password")
            && plain_password_at
                .as_ref()
                .is_none_or(|(at, _)| f.key_at < *at)
        {
            plain_password_at = Some((f.key_at, f.path.clone()));
        }
    };
    let mut defaults = Layer::default();
    let mut profile_entries = Vec::new();
    for (key, value) in root.get_ref() {
        let name: &str = key.get_ref();
        match name {
            "defaults" => match value.get_ref() {
                DeValue::Table(table) => {
                    defaults = read_layer(table, Table::Defaults, "defaults", &mut errs);
                    note_password(&defaults);
                }
                other => errs.push(
                    value.span().start,
                    Some(name.to_string()),
                    format!("expected a table ([defaults]), found {}", a_type(other)),
                ),
            },
            "profiles" => match value.get_ref() {
                DeValue::Table(table) => profile_entries.extend(table.iter()),
                DeValue::Array(_) => errs.push(
                    value.span().start,
                    Some(name.to_string()),
                    "expected a table of profiles, found an array (write each profile as \
                     [profiles.NAME], not [[profiles]])",
                ),
                other => errs.push(
                    value.span().start,
                    Some(name.to_string()),
                    format!(
                        "expected a table of profiles ([profiles.NAME]), found {}",
                        a_type(other)
                    ),
                ),
            },
            _ => errs.push(
                key.span().start,
                Some(key_segment(name)),
                unknown_top_level_key(name),
            ),
        }
    }

    let builtin = Settings::default();
    let settings = Settings {
        max_concurrency: defaults
            .count("max_concurrency")
            .unwrap_or(builtin.max_concurrency),
        max_per_host: defaults
            .count("max_per_host")
            .unwrap_or(builtin.max_per_host),
    };

    let mut profiles = Vec::with_capacity(profile_entries.len());
    for (key, value) in profile_entries {
        let name: &str = key.get_ref();
        let length = name.chars().count();
        let prefix = if length > MAX_PROFILE_NAME {
            // Shown cut short: a name of any length makes messages of bounded length.
            let start: String = name.chars().take(SHOWN_PROFILE_NAME).collect();
            format!("profiles.{}…", key_segment(&start))
        } else {
            format!("profiles.{}", key_segment(name))
        };
        if length > MAX_PROFILE_NAME {
            errs.push(
                key.span().start,
                Some(prefix.clone()),
                format!("the profile name is {length} characters long: at most {MAX_PROFILE_NAME}"),
            );
        } else if !is_valid_profile_name(name) {
            errs.push(
                key.span().start,
                Some(prefix.clone()),
                "invalid profile name: use only ASCII letters, digits, `.`, `_` and `-`",
            );
        }
        let DeValue::Table(table) = value.get_ref() else {
            // `prefix` is in TOML key syntax: what the user would write in the header.
            let message = format!(
                "expected a table ([{prefix}]), found {}",
                a_type(value.get_ref())
            );
            errs.push(value.span().start, Some(prefix), message);
            continue;
        };
        let layer = read_layer(table, Table::Profile, &prefix, &mut errs);
        note_password(&layer);
        let at = value.span().start;
        if let Some(profile) = resolve(name, &prefix, at, &layer, &defaults, &mut errs) {
            profiles.push(profile);
        }
    }

    if errs.is_empty() {
        let profiles = Profiles {
            path: path.to_path_buf(),
            profiles,
            settings,
        };
        Ok((profiles, plain_password_at))
    } else {
        Err(errs.finish())
    }
}

// ---------------------------------------------------------------------------------------------
// The schema: every key of the file, in one table. To add a key: add a row here, then read it in
// `resolve` (profile keys) or in `parse` (settings from `[defaults]`).
// ---------------------------------------------------------------------------------------------

/// The TOML type a key takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Str,
    /// A string that is never shown: kept in a [`Secret`], never quoted in an error.
    Secret,
    Bool,
    Int,
    /// An array of non-empty strings without surrounding whitespace.
    Tags,
    /// A file name: relative ones are resolved against the profiles file's directory, `~/` against
    /// the home directory.
    Path,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Str | Kind::Secret => "a string",
            Kind::Path => "a string (a file name)",
            Kind::Bool => "true or false",
            Kind::Int => "an integer",
            Kind::Tags => "an array of strings",
        }
    }
}

/// Where a key may be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Only in `[profiles.NAME]`.
    Profile,
    /// In `[profiles.NAME]` and in `[defaults]`; the profile's value wins.
    Both,
    /// Only in `[defaults]`: settings of the whole file.
    Defaults,
}

/// The table being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Defaults,
    Profile,
}

impl Scope {
    fn allows(self, table: Table) -> bool {
        matches!(
            (self, table),
            (Scope::Both, _)
                | (Scope::Profile, Table::Profile)
                | (Scope::Defaults, Table::Defaults)
        )
    }
}

struct KeySpec {
    name: &'static str,
    kind: Kind,
    scope: Scope,
    /// Checks a value of the right type, and may convert it. The message must not quote secrets.
    check: fn(Val) -> Result<Val, String>,
}

const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "url",
        kind: Kind::Str,
        scope: Scope::Profile,
        check: check_url,
    },
    KeySpec {
        name: "api",
        kind: Kind::Str,
        scope: Scope::Both,
        check: check_api,
    },
    KeySpec {
        name: "username",
        kind: Kind::Str,
        scope: Scope::Both,
        check: check_plain_text,
    },
    KeySpec {
        name: "password",
        kind: Kind::Secret,
        scope: Scope::Both,
        check: check_password,
    },
    KeySpec {
        name: "password_env",
        kind: Kind::Str,
        scope: Scope::Both,
        check: check_env_name,
    },
    KeySpec {
        name: "password_cmd",
        kind: Kind::Str,
        scope: Scope::Both,
        check: check_command,
    },
    KeySpec {
        name: "platform",
        kind: Kind::Str,
        scope: Scope::Both,
        check: check_platform,
    },
    KeySpec {
        name: "client_id",
        kind: Kind::Str,
        scope: Scope::Both,
        check: check_plain_text,
    },
    KeySpec {
        name: "client_secret",
        kind: Kind::Secret,
        scope: Scope::Both,
        check: Ok,
    },
    KeySpec {
        name: "tags",
        kind: Kind::Tags,
        scope: Scope::Both,
        check: Ok,
    },
    KeySpec {
        name: "allow_http",
        kind: Kind::Bool,
        scope: Scope::Both,
        check: Ok,
    },
    KeySpec {
        name: "timeout_s",
        kind: Kind::Int,
        scope: Scope::Both,
        check: check_timeout,
    },
    KeySpec {
        name: "auto_refresh",
        kind: Kind::Bool,
        scope: Scope::Both,
        check: Ok,
    },
    KeySpec {
        name: "relogin",
        kind: Kind::Bool,
        scope: Scope::Both,
        check: Ok,
    },
    KeySpec {
        name: "refresh_before_s",
        kind: Kind::Int,
        scope: Scope::Both,
        check: check_refresh_before,
    },
    KeySpec {
        name: "ca_cert",
        kind: Kind::Path,
        scope: Scope::Both,
        check: check_ca_cert,
    },
    KeySpec {
        name: "insecure",
        kind: Kind::Bool,
        scope: Scope::Both,
        check: Ok,
    },
    KeySpec {
        name: "proxy",
        kind: Kind::Str,
        scope: Scope::Both,
        check: check_proxy,
    },
    KeySpec {
        name: "max_concurrency",
        kind: Kind::Int,
        scope: Scope::Defaults,
        check: check_count,
    },
    KeySpec {
        name: "max_per_host",
        kind: Kind::Int,
        scope: Scope::Defaults,
        check: check_count,
    },
];

/// The keys that say where the password comes from; at most one per table.
const PASSWORD_KEYS: &[&str] = &["password", "password_env", "password_cmd"];

const TOP_LEVEL_KEYS: &[&str] = &["defaults", "profiles"];

const DEFAULT_API: &str = "v11";
const DEFAULT_CLIENT_ID: &str = "sugar";
const DEFAULT_PLATFORM: &str = "custom_api";
const DEFAULT_TIMEOUT_S: i64 = 20;
const MAX_TIMEOUT_S: i64 = 600;
const MAX_REFRESH_BEFORE_S: i64 = 86_400;
/// The longest profile name, in characters.
pub const MAX_PROFILE_NAME: usize = 128;
/// How much of a profile name that is too long a message shows.
const SHOWN_PROFILE_NAME: usize = 40;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn spec(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == name)
}

fn keys_allowed_in(table: Table) -> Vec<&'static str> {
    KEYS.iter()
        .filter(|k| k.scope.allows(table))
        .map(|k| k.name)
        .collect()
}

/// A value that passed its type check (and its key's check).
#[derive(Clone, Debug)]
enum Val {
    Str(String),
    Secret(Secret),
    Bool(bool),
    Int(i64),
    Tags(Vec<String>),
    Url(Url),
    Path(PathBuf),
    Ca(CaCert),
}

impl Val {
    fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading one table (`[defaults]` or `[profiles.NAME]`).
// ---------------------------------------------------------------------------------------------

/// One key as written in one table.
struct Field {
    spec: &'static KeySpec,
    /// Dotted path, e.g. `profiles.acme-prod.url`.
    path: String,
    key_at: usize,
    value_at: usize,
    /// `None` when the value was wrong (already reported).
    val: Option<Val>,
}

/// The known keys of one table, in file order.
#[derive(Default)]
struct Layer {
    fields: Vec<Field>,
    /// Known keys suggested for unknown ones (`usernme`): not reported again as missing.
    suggested: Vec<&'static str>,
}

impl Layer {
    fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.spec.name == name)
    }

    /// Set in this table, with a good or a bad value.
    fn has(&self, name: &str) -> bool {
        self.field(name).is_some()
    }

    /// The value, when set and good.
    fn val(&self, name: &str) -> Option<&Val> {
        self.field(name).and_then(|f| f.val.as_ref())
    }

    fn count(&self, name: &str) -> Option<usize> {
        match self.val(name)? {
            Val::Int(n) => Some(usize::try_from(*n).unwrap_or(usize::MAX)),
            _ => None,
        }
    }

    /// The password source set in this table, if any (the first one when several: an error).
    fn password(&self) -> Option<PasswordSource> {
        let field = self
            .fields
            .iter()
            .find(|f| PASSWORD_KEYS.contains(&f.spec.name))?;
        Some(match (field.spec.name, field.val.as_ref()?) {
            ("password_env", Val::Str(s)) => PasswordSource::Env(s.clone()),
            ("password_cmd", Val::Str(s)) => PasswordSource::Cmd(s.clone()),
            ("password", Val::Secret(s)) => PasswordSource::Plain(s.clone()),
            _ => return None,
        })
    }

    fn has_password_source(&self) -> bool {
        self.fields
            .iter()
            .any(|f| PASSWORD_KEYS.contains(&f.spec.name))
    }
}

fn read_layer(table: &DeTable<'_>, which: Table, prefix: &str, errs: &mut Errors<'_>) -> Layer {
    let mut layer = Layer::default();
    for (key, value) in table {
        let name: &str = key.get_ref();
        let path = format!("{prefix}.{}", key_segment(name));
        let Some(spec) = spec(name).filter(|s| s.scope.allows(which)) else {
            if spec(name).is_none() {
                layer
                    .suggested
                    .extend(closest(name, &keys_allowed_in(which)));
            }
            errs.push(key.span().start, Some(path), unknown_key(name, which));
            continue;
        };
        let value_at = value.span().start;
        let val = extract(spec.kind, value, &path, errs).and_then(|val| match (spec.check)(val) {
            Ok(val) => Some(val),
            Err(message) => {
                errs.push(value_at, Some(path.clone()), message);
                None
            }
        });
        layer.fields.push(Field {
            spec,
            path,
            key_at: key.span().start,
            value_at,
            val,
        });
    }

    let sources: Vec<&Field> = layer
        .fields
        .iter()
        .filter(|f| PASSWORD_KEYS.contains(&f.spec.name))
        .collect();
    if let [_, second, ..] = sources.as_slice() {
        let names: Vec<String> = sources
            .iter()
            .map(|f| format!("`{}`", f.spec.name))
            .collect();
        errs.push(
            second.key_at,
            Some(second.path.clone()),
            format!(
                "more than one password source ({}); keep only one",
                join_and(&names)
            ),
        );
    }
    layer
}

/// The type check of a value; reports a wrong type and returns `None`.
fn extract(
    kind: Kind,
    value: &Spanned<DeValue<'_>>,
    path: &str,
    errs: &mut Errors<'_>,
) -> Option<Val> {
    let at = value.span().start;
    match (kind, value.get_ref()) {
        (Kind::Str, DeValue::String(s)) => Some(Val::Str(s.to_string())),
        (Kind::Secret, DeValue::String(s)) => Some(Val::Secret(Secret::new(s.as_ref()))),
        (Kind::Bool, DeValue::Boolean(b)) => Some(Val::Bool(*b)),
        (Kind::Path, DeValue::String(s)) if s.trim().is_empty() => {
            errs.push(at, Some(path.to_string()), "must not be empty: a file name");
            None
        }
        (Kind::Path, DeValue::String(s)) => Some(Val::Path(resolve_path(s, errs.file))),
        (Kind::Int, DeValue::Integer(i)) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Some(Val::Int(n)),
            Err(_) => {
                errs.push(at, Some(path.to_string()), "the number is too large");
                None
            }
        },
        (Kind::Tags, DeValue::Array(items)) => {
            let mut tags = Vec::with_capacity(items.len());
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                let problem = match item.get_ref() {
                    DeValue::String(s) if s.is_empty() => Some("a tag cannot be empty".to_string()),
                    DeValue::String(s) if s.trim() != s.as_ref() => {
                        Some("a tag cannot start or end with whitespace".to_string())
                    }
                    DeValue::String(s) => {
                        tags.push(s.to_string());
                        None
                    }
                    other => Some(format!("expected a string, found {}", a_type(other))),
                };
                if let Some(message) = problem {
                    errs.push(item.span().start, Some(format!("{path}[{i}]")), message);
                    ok = false;
                }
            }
            ok.then_some(Val::Tags(tags))
        }
        (kind, other) => {
            errs.push(
                at,
                Some(path.to_string()),
                format!("expected {}, found {}", kind.expected(), a_type(other)),
            );
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checks of single values. Messages follow `KEY: `, so they need not repeat the key.
// ---------------------------------------------------------------------------------------------

fn check_url(val: Val) -> Result<Val, String> {
    // The URL itself is never quoted: it could carry a password (`https://user:pass@host`).
    let Val::Str(text) = val else { return Ok(val) };
    if text.trim() != text {
        return Err("the URL starts or ends with whitespace; remove it".into());
    }
    let mut url = Url::parse(&text).map_err(|e| {
        format!(
            "not a valid URL ({e}); expected the instance root, e.g. https://acme.sugarondemand.com"
        )
    })?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!(
            "the URL must start with https:// (or http://), not `{}:`",
            shown(url.scheme())
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL must not contain a user name or password; use `username` and a \
                    password source instead"
                .into(),
        );
    }
    if url.query().is_some() {
        return Err("the URL must not have a query (`?...`): give the instance root".into());
    }
    if url.fragment().is_some() {
        return Err("the URL must not have a fragment (`#...`): give the instance root".into());
    }
    if url
        .path_segments()
        .is_some_and(|mut segments| segments.any(|s| s == "rest"))
    {
        return Err(
            "give the instance root, without `/rest/...`: the client adds \
                    /rest/{api}/ itself (set the version with `api`)"
                .into(),
        );
    }
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    Ok(Val::Url(url))
}

fn check_api(val: Val) -> Result<Val, String> {
    let Some(text) = val.as_str() else {
        return Ok(val);
    };
    if is_valid_api(text) {
        Ok(val)
    } else {
        Err(format!(
            "invalid REST API version `{}`: expected `v`, two digits and optionally `_` and one \
             or two digits (e.g. v10, v11, v11_16)",
            shown(text)
        ))
    }
}

fn check_platform(val: Val) -> Result<Val, String> {
    let Some(text) = val.as_str() else {
        return Ok(val);
    };
    if is_valid_platform(text) {
        Ok(val)
    } else {
        Err(format!(
            "invalid platform `{}`: use 1 to 127 characters among a-z, 0-9, `_` and `-`",
            shown(text)
        ))
    }
}

/// `username`, `client_id`: sent as written, so neither empty nor padded.
fn check_plain_text(val: Val) -> Result<Val, String> {
    let Some(text) = val.as_str() else {
        return Ok(val);
    };
    if text.is_empty() {
        Err("must not be empty".into())
    } else if text.trim() != text {
        Err("starts or ends with whitespace, which would be sent as written; remove it".into())
    } else {
        Ok(val)
    }
}

fn check_password(val: Val) -> Result<Val, String> {
    match &val {
        Val::Secret(s) if s.is_empty() => {
            Err("must not be empty (remove it to be asked for the password)".into())
        }
        _ => Ok(val),
    }
}

fn check_env_name(val: Val) -> Result<Val, String> {
    // Not quoted: someone may have put the password itself here by mistake.
    let Some(text) = val.as_str() else {
        return Ok(val);
    };
    let bad = text.is_empty()
        || text
            .chars()
            .any(|c| c == '=' || c == '\0' || c.is_whitespace());
    if bad {
        Err("must be the name of an environment variable (not empty, without `=` or spaces)".into())
    } else {
        Ok(val)
    }
}

fn check_command(val: Val) -> Result<Val, String> {
    let Some(text) = val.as_str() else {
        return Ok(val);
    };
    if text.trim().is_empty() {
        Err("must not be empty: a shell command that prints the password".into())
    } else {
        Ok(val)
    }
}

fn check_timeout(val: Val) -> Result<Val, String> {
    match val {
        Val::Int(n) if !(1..=MAX_TIMEOUT_S).contains(&n) => Err(format!(
            "must be between 1 and {MAX_TIMEOUT_S} (seconds), found {n}"
        )),
        _ => Ok(val),
    }
}

fn check_refresh_before(val: Val) -> Result<Val, String> {
    match val {
        Val::Int(n) if !(1..=MAX_REFRESH_BEFORE_S).contains(&n) => Err(format!(
            "must be between 1 and {MAX_REFRESH_BEFORE_S} (seconds), found {n}"
        )),
        _ => Ok(val),
    }
}

/// A file name from the profiles file: `~/x` in the home directory, a relative one next to the
/// profiles file.
fn resolve_path(text: &str, profiles_file: &Path) -> PathBuf {
    if let Some(rest) = text.strip_prefix("~/")
        && let Some(home) = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf())
    {
        return home.join(rest);
    }
    let path = Path::new(text);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    match profiles_file.parent() {
        Some(dir) => dir.join(path),
        None => path.to_path_buf(),
    }
}

/// The most a `ca_cert` file may hold (a bundle of every public CA is about 250 KiB).
const MAX_CA_FILE: u64 = 4 * 1024 * 1024;

/// Reads a `ca_cert` file: PEM, at least one certificate, each one usable as a trust anchor.
fn check_ca_cert(val: Val) -> Result<Val, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let Val::Path(path) = val else {
        return Ok(val);
    };
    let shown_path = path.display();
    let meta = std::fs::metadata(&path)
        .map_err(|e| format!("cannot read the CA certificate file `{shown_path}`: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "`{shown_path}` is not a file: give a PEM file with the CA certificate(s)"
        ));
    }
    if meta.len() > MAX_CA_FILE {
        return Err(format!(
            "`{shown_path}` is larger than {} MiB: not a CA certificate file",
            MAX_CA_FILE / 1024 / 1024
        ));
    }
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("cannot read the CA certificate file `{shown_path}`: {e}"))?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        let cert = item.map_err(|e| format!("`{shown_path}` is not a valid PEM file: {e}"))?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(format!(
            "`{shown_path}` holds no certificate: expected PEM text with \
             -----BEGIN CERTIFICATE----- blocks"
        ));
    }
    let mut store = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store.add(cert.clone()).map_err(|e| {
            format!(
                "certificate {} in `{shown_path}` is not a valid CA certificate: {e}",
                i + 1
            )
        })?;
    }
    Ok(Val::Ca(CaCert {
        certs: Arc::new(certs.into_iter().map(|c| c.to_vec()).collect()),
        path,
    }))
}

/// `proxy`: http(s) or socks5(h), with a host, nothing after it. Never quoted: it may hold a password.
fn check_proxy(val: Val) -> Result<Val, String> {
    let Val::Str(text) = val else { return Ok(val) };
    const EXAMPLE: &str = "e.g. http://proxy.example.com:3128 or socks5h://127.0.0.1:1080";
    if text.trim() != text {
        return Err("the proxy URL starts or ends with whitespace; remove it".into());
    }
    let url = Url::parse(&text).map_err(|e| format!("not a valid proxy URL ({e}); {EXAMPLE}"))?;
    if !matches!(url.scheme(), "http" | "https" | "socks5" | "socks5h") {
        return Err(format!(
            "unsupported proxy scheme `{}:`: use http://, https://, socks5:// or socks5h:// \
             (socks5h resolves host names through the proxy, as an `ssh -D` tunnel needs)",
            shown(url.scheme())
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("the proxy URL has no host; {EXAMPLE}"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "the proxy URL must be only scheme, host and port; {EXAMPLE}"
        ));
    }
    Ok(Val::Url(url))
}

fn check_count(val: Val) -> Result<Val, String> {
    match val {
        Val::Int(n) if n < 1 => Err(format!("must be at least 1, found {n}")),
        _ => Ok(val),
    }
}

/// `v` + two digits + optionally `_` and one or two digits: `v10`, `v11`, `v11_16`.
fn is_valid_api(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('v') else {
        return false;
    };
    let (major, minor) = match rest.split_once('_') {
        Some((major, minor)) => (major, Some(minor)),
        None => (rest, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    major.len() == 2
        && digits(major)
        && minor.is_none_or(|m| (1..=2).contains(&m.len()) && digits(m))
}

/// `[a-z0-9_-]{1,127}`.
fn is_valid_platform(text: &str) -> bool {
    (1..=127).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `[A-Za-z0-9._-]+`.
fn is_valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// localhost, 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(a)) => a.is_loopback(),
        Some(Host::Ipv6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------------------------
// One profile: its table over `[defaults]` over the built-in defaults.
// ---------------------------------------------------------------------------------------------

fn resolve(
    name: &str,
    prefix: &str,
    table_at: usize,
    own: &Layer,
    defaults: &Layer,
    errs: &mut Errors<'_>,
) -> Option<Profile> {
    let pick = |key: &str| own.val(key).or_else(|| defaults.val(key));
    let pick_str = |key: &str, fallback: &'static str| -> String {
        pick(key)
            .and_then(Val::as_str)
            .unwrap_or(fallback)
            .to_string()
    };

    let url = match own.field("url") {
        None if own.suggested.contains(&"url") => None,
        None => {
            errs.push(
                table_at,
                Some(format!("{prefix}.url")),
                "missing `url` (the instance root, e.g. https://acme.sugarondemand.com)",
            );
            None
        }
        Some(Field {
            val: Some(Val::Url(url)),
            value_at,
            path,
            ..
        }) => {
            let allow_http = match pick("allow_http") {
                Some(Val::Bool(b)) => *b,
                _ => false,
            };
            if url.scheme() == "http" && !allow_http && !is_loopback(url) {
                errs.push(
                    *value_at,
                    Some(path.clone()),
                    format!(
                        "http:// to `{}` would send the password unencrypted; use https:// or \
                         set allow_http = true",
                        url.host_str().unwrap_or_default()
                    ),
                );
            }
            Some((url.clone(), allow_http))
        }
        Some(_) => None,
    };

    let misspelled = |key| own.suggested.contains(&key) || defaults.suggested.contains(&key);
    if !own.has("username") && !defaults.has("username") && !misspelled("username") {
        errs.push(
            table_at,
            Some(format!("{prefix}.username")),
            "missing `username` (set it here or in [defaults])",
        );
    }

    let password = if own.has_password_source() {
        own.password()
    } else if defaults.has_password_source() {
        defaults.password()
    } else {
        Some(PasswordSource::Prompt)
    };

    let timeout_s = match pick("timeout_s") {
        Some(Val::Int(n)) => *n,
        _ => DEFAULT_TIMEOUT_S,
    };
    let timeout = Duration::from_secs(u64::try_from(timeout_s).unwrap_or(20));

    let (url, allow_http) = url?;
    if !errs.is_empty() {
        // Not used: the file is refused. Stop building, keep checking the other profiles.
        return None;
    }
    Some(Profile {
        name: name.to_string(),
        url,
        api: pick_str("api", DEFAULT_API),
        username: pick_str("username", ""),
        password: password?,
        platform: pick_str("platform", DEFAULT_PLATFORM),
        client_id: pick_str("client_id", DEFAULT_CLIENT_ID),
        client_secret: match pick("client_secret") {
            Some(Val::Secret(s)) => s.clone(),
            _ => Secret::default(),
        },
        tags: match pick("tags") {
            Some(Val::Tags(tags)) => tags.clone(),
            _ => Vec::new(),
        },
        allow_http,
        timeout,
        connect_timeout: timeout.min(CONNECT_TIMEOUT),
        auto_refresh: !matches!(pick("auto_refresh"), Some(Val::Bool(false))),
        relogin: !matches!(pick("relogin"), Some(Val::Bool(false))),
        refresh_before: match pick("refresh_before_s") {
            Some(Val::Int(n)) => u64::try_from(*n).ok().map(Duration::from_secs),
            _ => None,
        },
        ca_cert: match pick("ca_cert") {
            Some(Val::Ca(ca)) => Some(ca.clone()),
            _ => None,
        },
        insecure: matches!(pick("insecure"), Some(Val::Bool(true))),
        proxy: match pick("proxy") {
            Some(Val::Url(url)) => Some(url.clone()),
            _ => None,
        },
        admin: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Messages.
// ---------------------------------------------------------------------------------------------

fn unknown_top_level_key(name: &str) -> String {
    let allowed = TOP_LEVEL_KEYS.join(", ");
    if spec(name).is_some() {
        return format!(
            "`{}` cannot be set at the top level: profile keys go in a [profiles.NAME] table, \
             shared ones in [defaults]; allowed keys here: {allowed}",
            shown(name)
        );
    }
    format!(
        "unknown key `{}`{}; allowed keys: {allowed}",
        shown(name),
        did_you_mean(name, TOP_LEVEL_KEYS)
    )
}

fn unknown_key(name: &str, table: Table) -> String {
    let allowed = keys_allowed_in(table);
    match (spec(name), table) {
        (Some(_), Table::Defaults) => {
            format!("`{name}` cannot be set in [defaults]: each profile sets its own")
        }
        (Some(_), Table::Profile) => {
            format!("`{name}` can only be set in [defaults]: it applies to the whole file")
        }
        (None, _) => format!(
            "unknown key `{}`{}; allowed keys: {}",
            shown(name),
            did_you_mean(name, &allowed),
            allowed.join(", ")
        ),
    }
}

/// ` (did you mean `x`?)` when a known key is close to `name`, else nothing.
fn did_you_mean(name: &str, known: &[&str]) -> String {
    match closest(name, known) {
        Some(k) => format!(" (did you mean `{k}`?)"),
        None => String::new(),
    }
}

/// The known key closest to a mistyped one: a small edit distance (ignoring case), else the only
/// key that one of them begins with (`user` for `username`).
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = name.to_lowercase();
    let best = known
        .iter()
        .map(|k| (edit_distance(&lower, k), *k))
        .filter(|(d, k)| *d <= (k.chars().count() / 4).max(1))
        .min_by_key(|(d, _)| *d);
    if let Some((_, k)) = best {
        return Some(k);
    }
    if lower.chars().count() < 3 {
        return None;
    }
    let mut prefixed = known
        .iter()
        .filter(|k| k.starts_with(&lower) || lower.starts_with(**k));
    match (prefixed.next(), prefixed.next()) {
        (Some(k), None) => Some(k),
        _ => None,
    }
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn a_type(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// One segment of a dotted key path, as it would be written in TOML: bare when it can be,
/// else quoted (`profiles."acme prod"`).
fn key_segment(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A (non-secret) value for a message: control characters escaped, long text cut.
fn shown(text: &str) -> String {
    const MAX: usize = 60;
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Locating errors.
// ---------------------------------------------------------------------------------------------

struct Errors<'a> {
    text: &'a str,
    file: &'a Path,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    /// With the byte offset they were found at, to sort them into file order.
    found: Vec<(usize, ConfigError)>,
}

impl<'a> Errors<'a> {
    fn new(text: &'a str, file: &'a Path) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Errors {
            text,
            file,
            line_starts,
            found: Vec::new(),
        }
    }

    fn push(&mut self, at: usize, key: Option<String>, message: impl Into<String>) {
        let (line, column) = self.locate(at);
        let error = ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            key,
            message: message.into(),
        };
        self.found.push((at, error));
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn locate(&self, at: usize) -> (usize, usize) {
        let mut at = at.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= at);
        let start = self.line_starts[line - 1];
        let mut column = self.text[start..at].chars().count() + 1;
        if start == 0 && at > 0 && self.text.starts_with('\u{feff}') {
            column -= 1;
        }
        (line, column)
    }

    fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    fn finish(mut self) -> Vec<ConfigError> {
        self.found.sort_by_key(|(at, _)| *at);
        self.found.into_iter().map(|(_, e)| e).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        for good in ["v10", "v11", "v11_1", "v11_16", "v99_99"] {
            assert!(is_valid_api(good), "{good}");
        }
        for bad in [
            "", "v", "v1", "v111", "11", "V11", "v11_", "v11_123", "v11-1", "v11_1a", " v11",
        ] {
            assert!(!is_valid_api(bad), "{bad}");
        }
    }

    #[test]
    fn platforms() {
        assert!(is_valid_platform("custom_api"));
        assert!(is_valid_platform("a-b_9"));
        assert!(is_valid_platform(&"a".repeat(127)));
        for bad in ["", "Base", "my platform", "é", "a.b"] {
            assert!(!is_valid_platform(bad), "{bad}");
        }
        assert!(!is_valid_platform(&"a".repeat(128)));
    }

    #[test]
    fn profile_names() {
        assert!(is_valid_profile_name("acme-prod.eu_2"));
        for bad in ["", "acme prod", "acmé", "a/b", "a:b"] {
            assert!(!is_valid_profile_name(bad), "{bad}");
        }
    }

    #[test]
    fn suggestions() {
        let profile = keys_allowed_in(Table::Profile);
        assert_eq!(closest("usernme", &profile), Some("username"));
        assert_eq!(closest("USERNAME", &profile), Some("username"));
        assert_eq!(closest("user", &profile), Some("username"));
        assert_eq!(closest("password-env", &profile), Some("password_env"));
        assert_eq!(closest("timeout", &profile), Some("timeout_s"));
        assert_eq!(closest("tag", &profile), Some("tags"));
        assert_eq!(closest("passwd", &profile), Some("password"));
        assert_eq!(closest("allowhttp", &profile), Some("allow_http"));
        assert_eq!(closest("colour", &profile), None);
        // Ambiguous prefixes suggest nothing.
        assert_eq!(closest("client", &profile), None);
        assert_eq!(closest("profile", TOP_LEVEL_KEYS), Some("profiles"));
        assert_eq!(closest("default", TOP_LEVEL_KEYS), Some("defaults"));
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("usernme", "username"), 1);
        assert_eq!(edit_distance("é", "e"), 1);
    }

    #[test]
    fn key_segments_are_written_as_in_toml() {
        assert_eq!(key_segment("acme-prod_2"), "acme-prod_2");
        assert_eq!(key_segment("acme.prod"), "\"acme.prod\"");
        assert_eq!(key_segment(""), "\"\"");
        assert_eq!(key_segment("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }

    #[test]
    fn lines_and_columns() {
        let text = "ab\r\nçd\n\nx";
        let errs = Errors::new(text, Path::new("f"));
        assert_eq!(errs.locate(0), (1, 1));
        assert_eq!(errs.locate(1), (1, 2));
        assert_eq!(errs.locate(4), (2, 1));
        // `ç` is two bytes, one column.
        assert_eq!(errs.locate(6), (2, 2));
        assert_eq!(errs.locate(8), (3, 1));
        assert_eq!(errs.locate(9), (4, 1));
        // Past the end, and inside a character: clamped.
        assert_eq!(errs.locate(100), (4, 2));
        assert_eq!(errs.locate(5), (2, 1));
        // A byte order mark takes no column.
        let errs = Errors::new("\u{feff}[x]", Path::new("f"));
        assert_eq!(errs.locate(3), (1, 1));
        assert_eq!(errs.locate(4), (1, 2));
    }

    #[test]
    fn join_lists() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(join_and(&s(&["a"])), "a");
        assert_eq!(join_and(&s(&["a", "b"])), "a and b");
        assert_eq!(join_and(&s(&["a", "b", "c"])), "a, b and c");
    }

    #[test]
    fn shown_values_are_escaped_and_cut() {
        assert_eq!(shown("a\tb"), "a\\tb");
        assert_eq!(shown(&"x".repeat(61)), format!("{}…", "x".repeat(60)));
    }

    #[test]
    fn every_key_is_documented_in_the_example_file() {
        let example = include_str!("../profiles.example.toml");
        for key in KEYS {
            let shown = example.lines().any(|l| {
                l.trim_start_matches("# ")
                    .starts_with(&format!("{} = ", key.name))
            });
            assert!(shown, "profiles.example.toml does not show `{}`", key.name);
        }
    }

    #[test]
    fn keys_are_unique_and_password_keys_are_known() {
        for (i, k) in KEYS.iter().enumerate() {
            assert!(
                KEYS[i + 1..].iter().all(|o| o.name != k.name),
                "{} twice",
                k.name
            );
        }
        for p in PASSWORD_KEYS {
            assert!(spec(p).is_some_and(|s| s.scope == Scope::Both), "{p}");
        }
    }

    #[test]
    fn connect_timeout_is_the_shorter_one() {
        let text =
            "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\ntimeout_s = 600\n";
        let p = parse(text, Path::new("f")).unwrap();
        assert_eq!(p.profiles[0].timeout, Duration::from_secs(600));
        assert_eq!(p.profiles[0].connect_timeout, CONNECT_TIMEOUT);
    }

    #[test]
    fn integers_in_other_radixes_and_too_large() {
        let base = "[profiles.a]\nurl = \"https://a.example.com\"\nusername = \"u\"\n";
        let p = parse(&format!("{base}timeout_s = 0x1e\n"), Path::new("f")).unwrap();
        assert_eq!(p.profiles[0].timeout, Duration::from_secs(30));
        let e = parse(
            &format!("{base}timeout_s = 0xffffffffffffffff\n"),
            Path::new("f"),
        )
        .unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "f:4:13: profiles.a.timeout_s: the number is too large"
        );
    }
}
