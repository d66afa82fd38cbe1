//! The schema: every key of the profiles file in one table, with its type, where it may be set
//! and its check; the built-in defaults and limits; a value that passed its checks.

use super::CaCert;
use super::checks::{
    check_api, check_ca_cert, check_check_interval, check_command, check_count, check_env_name,
    check_password, check_plain_text, check_platform, check_proxy, check_refresh_before,
    check_timeout, check_url,
};
use crate::secret::Secret;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

// ---------------------------------------------------------------------------------------------
// The schema: every key of the file, in one table. To add a key: add a row here, then read it in
// `resolve` (profile keys) or in `parse` (settings from `[defaults]`).
// ---------------------------------------------------------------------------------------------

/// The TOML type a key takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
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
    /// An array of the screen's column names ([`COLUMN_NAMES`]), each once, `name` and `state`
    /// among them.
    Columns,
}

impl Kind {
    pub(super) fn expected(self) -> &'static str {
        match self {
            Kind::Str | Kind::Secret => "a string",
            Kind::Path => "a string (a file name)",
            Kind::Bool => "true or false",
            Kind::Int => "an integer",
            Kind::Tags => "an array of strings",
            Kind::Columns => "an array of column names",
        }
    }
}

/// Where a key may be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scope {
    /// Only in `[profiles.NAME]`.
    Profile,
    /// In `[profiles.NAME]` and in `[defaults]`; the profile's value wins.
    Both,
    /// Only in `[defaults]`: settings of the whole file.
    Defaults,
}

/// The table being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Table {
    Defaults,
    Profile,
}

impl Scope {
    pub(super) fn allows(self, table: Table) -> bool {
        matches!(
            (self, table),
            (Scope::Both, _)
                | (Scope::Profile, Table::Profile)
                | (Scope::Defaults, Table::Defaults)
        )
    }
}

pub(super) struct KeySpec {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) scope: Scope,
    /// Checks a value of the right type, and may convert it. The message must not quote secrets.
    pub(super) check: fn(Val) -> Result<Val, String>,
}

pub(super) const KEYS: &[KeySpec] = &[
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
        name: "password_keyring",
        kind: Kind::Bool,
        scope: Scope::Both,
        check: Ok,
    },
    KeySpec {
        name: "keyring_account",
        kind: Kind::Str,
        scope: Scope::Profile,
        check: check_plain_text,
    },
    KeySpec {
        name: "keyring_over_ssh",
        kind: Kind::Bool,
        scope: Scope::Both,
        check: Ok,
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
        name: "check_interval_s",
        kind: Kind::Int,
        scope: Scope::Both,
        check: check_check_interval,
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
    KeySpec {
        name: "read_only",
        kind: Kind::Bool,
        scope: Scope::Defaults,
        check: Ok,
    },
    KeySpec {
        name: "columns",
        kind: Kind::Columns,
        scope: Scope::Defaults,
        check: Ok,
    },
];

/// The screen's columns a `columns` list may name, in the order the screen shows them by default.
pub const COLUMN_NAMES: &[&str] = &[
    "name", "tags", "instance", "user", "platform", "state", "token", "refresh", "last",
];
/// The columns every `columns` list names: the screen never drops them.
pub(super) const REQUIRED_COLUMNS: &[&str] = &["name", "state"];

/// The keys that say where the password comes from; at most one per table (`password_keyring =
/// false` is none of them: it only says the keyring is not used).
pub(super) const PASSWORD_KEYS: &[&str] = &[
    "password",
    "password_env",
    "password_cmd",
    "password_keyring",
];

pub(super) const TOP_LEVEL_KEYS: &[&str] = &["defaults", "include", "profiles"];

pub(super) const DEFAULT_API: &str = "v11";
pub(super) const DEFAULT_CLIENT_ID: &str = "sugar";
pub(super) const DEFAULT_PLATFORM: &str = "custom_api";
pub(super) const DEFAULT_TIMEOUT_S: i64 = 20;
pub(super) const MAX_TIMEOUT_S: i64 = 600;
pub(super) const MAX_REFRESH_BEFORE_S: i64 = 86_400;
/// `check_interval_s`: from 10 s to a day.
pub(super) const CHECK_INTERVAL_S: std::ops::RangeInclusive<i64> = 10..=86_400;
pub use crate::identity::MAX_PROFILE_NAME;
/// How much of a profile name that is too long a message shows.
pub(super) const SHOWN_PROFILE_NAME: usize = 40;
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn spec(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == name)
}

pub(super) fn keys_allowed_in(table: Table) -> Vec<&'static str> {
    KEYS.iter()
        .filter(|k| k.scope.allows(table))
        .map(|k| k.name)
        .collect()
}

/// A value that passed its type check (and its key's check).
#[derive(Clone, Debug)]
pub(super) enum Val {
    Str(String),
    Secret(Secret),
    Bool(bool),
    Int(i64),
    Tags(Vec<String>),
    Columns(Vec<&'static str>),
    Url(Url),
    Path(PathBuf),
    Ca(CaCert),
}

impl Val {
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_documented_in_the_example_file() {
        let example = include_str!("../../profiles.example.toml");
        for key in KEYS {
            let shown = example.lines().any(|l| {
                l.trim_start_matches("# ")
                    .starts_with(&format!("{} = ", key.name))
            });
            assert!(shown, "profiles.example.toml does not show `{}`", key.name);
        }
        for key in TOP_LEVEL_KEYS {
            let shown = example.lines().any(|l| {
                let l = l.trim_start_matches("# ");
                l.starts_with(&format!("{key} = ")) || l.starts_with(&format!("[{key}"))
            });
            assert!(shown, "profiles.example.toml does not show `{key}`");
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
}
