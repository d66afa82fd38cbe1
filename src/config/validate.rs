//! The walk over a profiles file: the top level, each table's keys (type and check), then each
//! profile over `[defaults]` over the built-in defaults; every problem is collected, located.

use super::checks::{is_loopback, is_valid_profile_name, resolve_path};
use super::errors::Errors;
use super::messages::{
    a_type, closest, join_and, key_segment, shown, unknown_column, unknown_key,
    unknown_top_level_key,
};
use super::schema::{
    COLUMN_NAMES, CONNECT_TIMEOUT, DEFAULT_API, DEFAULT_CLIENT_ID, DEFAULT_PLATFORM,
    DEFAULT_TIMEOUT_S, KeySpec, Kind, MAX_PROFILE_NAME, PASSWORD_KEYS, REQUIRED_COLUMNS,
    SHOWN_PROFILE_NAME, Table, Val, keys_allowed_in, spec,
};
use super::{KeyringEntry, PasswordSource, Profile, Settings};
use crate::secret::Secret;
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where a key is: byte offset and dotted key path.
pub(super) type KeyAt = (usize, String);

/// One `[profiles.NAME]` table as read.
pub(super) struct ProfileTable {
    pub(super) name: String,
    /// `profiles.NAME`, in TOML key syntax (cut short when too long).
    pub(super) prefix: String,
    /// Where the table's value starts (missing keys are reported there).
    pub(super) at: usize,
    /// Where its name is.
    pub(super) key_at: usize,
    pub(super) layer: Layer,
}

/// One entry of `include = [...]`: as written, where, and its key path (`include[0]`).
pub(super) struct IncludeEntry {
    pub(super) text: String,
    pub(super) at: usize,
    pub(super) key: String,
}

/// What one file says: its `[defaults]`, its profile tables, its includes.
#[derive(Default)]
pub(super) struct Walked {
    pub(super) defaults: Layer,
    pub(super) tables: Vec<ProfileTable>,
    pub(super) includes: Vec<IncludeEntry>,
    /// Where the first plain `password` key is, if any.
    pub(super) plain_password_at: Option<KeyAt>,
}

/// The top level of one file and each of its tables' keys (type and check); problems go to
/// `errs`. `None` for a TOML syntax error (reported alone: the parser stops there).
pub(super) fn walk_file(text: &str, errs: &mut Errors) -> Option<Walked> {
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
            return None;
        }
    };

    let mut walked = Walked::default();
    let mut plain_password_at: Option<KeyAt> = None;
    let mut note_password = |layer: &Layer| {
        if let Some(f) = layer.field("password")
            && plain_password_at
                .as_ref()
                .is_none_or(|(at, _)| f.key_at < *at)
        {
            plain_password_at = Some((f.key_at, layer.path_of(f)));
        }
    };
    let mut profile_entries = Vec::new();
    for (key, value) in root.get_ref() {
        let name: &str = key.get_ref();
        match name {
            "defaults" => match value.get_ref() {
                DeValue::Table(table) => {
                    walked.defaults = read_layer(table, Table::Defaults, "defaults", "", errs);
                    note_password(&walked.defaults);
                }
                other => errs.push(
                    value.span().start,
                    Some(name.to_string()),
                    format!("expected a table ([defaults]), found {}", a_type(other)),
                ),
            },
            "include" => walked.includes = includes(value, errs),
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
        let layer = read_layer(table, Table::Profile, &prefix, name, errs);
        note_password(&layer);
        if layer.fields.is_empty() && layer.dotted {
            // `[profiles.acme.prod]` alone: said once, not also as a profile `acme` missing
            // everything.
            continue;
        }
        walked.tables.push(ProfileTable {
            name: name.to_string(),
            prefix,
            at: value.span().start,
            key_at: key.span().start,
            layer,
        });
    }
    walked.plain_password_at = plain_password_at;
    Some(walked)
}

/// `include = ["team/clients.toml", "conf.d/*.toml"]`: an array of non-empty strings.
fn includes(value: &Spanned<DeValue<'_>>, errs: &mut Errors) -> Vec<IncludeEntry> {
    let DeValue::Array(items) = value.get_ref() else {
        errs.push(
            value.span().start,
            Some("include".into()),
            format!(
                "expected an array of file names (include = [\"team/clients.toml\"]), found {}",
                a_type(value.get_ref())
            ),
        );
        return Vec::new();
    };
    let mut entries = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = format!("include[{i}]");
        let at = item.span().start;
        match item.get_ref() {
            DeValue::String(s) if s.trim().is_empty() => {
                errs.push(at, Some(key), "must not be empty: a file name or a glob");
            }
            DeValue::String(s) => entries.push(IncludeEntry {
                text: s.to_string(),
                at,
                key,
            }),
            other => errs.push(
                at,
                Some(key),
                format!("expected a file name (a string), found {}", a_type(other)),
            ),
        }
    }
    entries
}

/// Settings of the whole file, from its `[defaults]`.
pub(super) fn settings(defaults: &Layer) -> Settings {
    let builtin = Settings::default();
    Settings {
        max_concurrency: defaults
            .count("max_concurrency")
            .unwrap_or(builtin.max_concurrency),
        max_per_host: defaults
            .count("max_per_host")
            .unwrap_or(builtin.max_per_host),
        read_only: match defaults.val("read_only") {
            Some(Val::Bool(b)) => *b,
            _ => builtin.read_only,
        },
        columns: match defaults.val("columns") {
            Some(Val::Columns(c)) => Some(c.clone()),
            _ => builtin.columns,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Reading one table (`[defaults]` or `[profiles.NAME]`).
// ---------------------------------------------------------------------------------------------

/// One key as written in one table.
pub(super) struct Field {
    pub(super) spec: &'static KeySpec,
    pub(super) key_at: usize,
    value_at: usize,
    /// `None` when the value was wrong (already reported).
    val: Option<Val>,
}

/// The known keys of one table, in file order.
#[derive(Default)]
pub(super) struct Layer {
    /// The table's dotted path, e.g. `profiles.acme-prod`.
    prefix: String,
    pub(super) fields: Vec<Field>,
    /// Known keys suggested for unknown ones (`usernme`): not reported again as missing.
    suggested: Vec<&'static str>,
    /// A table inside the profile's table: `[profiles.acme.prod]` for `"acme.prod"`.
    dotted: bool,
}

impl Layer {
    /// A key's dotted path, e.g. `profiles.acme-prod.url`: made only for a message (known keys
    /// are bare keys, written as they are).
    pub(super) fn path_of(&self, field: &Field) -> String {
        format!("{}.{}", self.prefix, field.spec.name)
    }

    pub(super) fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.spec.name == name)
    }

    /// The `ca_cert` of this table, when set and good (its file read and checked).
    pub(super) fn ca_cert(&self) -> Option<&super::CaCert> {
        match self.val("ca_cert")? {
            Val::Ca(ca) => Some(ca),
            _ => None,
        }
    }

    /// Set in this table, with a good or a bad value.
    pub(super) fn has(&self, name: &str) -> bool {
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

    /// The password source set in this table, if any (the first one when several: an error);
    /// `password_keyring = false` alone is [`PasswordSource::Prompt`]. The keyring's account and
    /// SSH rule are filled in by `resolve`.
    fn password(&self) -> Option<PasswordSource> {
        let Some(field) = self.fields.iter().find(|f| is_source(f)) else {
            return self
                .has("password_keyring")
                .then_some(PasswordSource::Prompt);
        };
        Some(match (field.spec.name, field.val.as_ref()?) {
            ("password_env", Val::Str(s)) => PasswordSource::Env(s.clone()),
            ("password_cmd", Val::Str(s)) => PasswordSource::Cmd(s.clone()),
            ("password", Val::Secret(s)) => PasswordSource::Plain(s.clone()),
            ("password_keyring", Val::Bool(true)) => PasswordSource::Keyring(KeyringEntry {
                account: String::new(),
                over_ssh: false,
            }),
            _ => return None,
        })
    }

    /// Says where the password comes from (`password_keyring = false` too: not from the
    /// keyring of `[defaults]`).
    pub(super) fn has_password_source(&self) -> bool {
        self.fields
            .iter()
            .any(|f| PASSWORD_KEYS.contains(&f.spec.name))
    }
}

/// A key that names a password source: one of [`PASSWORD_KEYS`], but not `password_keyring =
/// false` (a bad value counts: reported once, as itself).
fn is_source(f: &Field) -> bool {
    PASSWORD_KEYS.contains(&f.spec.name)
        && !(f.spec.name == "password_keyring" && matches!(f.val, Some(Val::Bool(false))))
}

fn read_layer(
    table: &DeTable<'_>,
    which: Table,
    prefix: &str,
    profile: &str,
    errs: &mut Errors,
) -> Layer {
    let mut layer = Layer {
        prefix: prefix.to_string(),
        ..Layer::default()
    };
    for (key, value) in table {
        let name: &str = key.get_ref();
        let path = || format!("{prefix}.{}", key_segment(name));
        if which == Table::Profile
            && spec(name).is_none()
            && matches!(value.get_ref(), DeValue::Table(_))
        {
            // `[profiles.acme.prod]` is TOML for a table `prod` inside the profile `acme`.
            layer.dotted = true;
            let dotted = format!("{profile}.{name}");
            errs.push(
                key.span().start,
                Some(path()),
                format!(
                    "`{}` is a table inside the profile `{}`: a profile name with a dot must be \
                     quoted: [profiles.{}]",
                    shown(name),
                    shown(profile),
                    key_segment(&dotted)
                ),
            );
            continue;
        }
        let Some(spec) = spec(name).filter(|s| s.scope.allows(which)) else {
            if spec(name).is_none() {
                layer
                    .suggested
                    .extend(closest(name, &keys_allowed_in(which)));
            }
            errs.push(key.span().start, Some(path()), unknown_key(name, which));
            continue;
        };
        let value_at = value.span().start;
        let val = extract(spec.kind, value, &path, errs).and_then(|val| match (spec.check)(val) {
            Ok(val) => Some(val),
            Err(message) => {
                errs.push(value_at, Some(path()), message);
                None
            }
        });
        layer.fields.push(Field {
            spec,
            key_at: key.span().start,
            value_at,
            val,
        });
    }

    let sources: Vec<&Field> = layer.fields.iter().filter(|f| is_source(f)).collect();
    if let [_, second, ..] = sources.as_slice() {
        let names: Vec<String> = sources
            .iter()
            .map(|f| format!("`{}`", f.spec.name))
            .collect();
        errs.push(
            second.key_at,
            Some(layer.path_of(second)),
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
    path: &dyn Fn() -> String,
    errs: &mut Errors,
) -> Option<Val> {
    let at = value.span().start;
    match (kind, value.get_ref()) {
        (Kind::Str, DeValue::String(s)) => Some(Val::Str(s.to_string())),
        (Kind::Secret, DeValue::String(s)) => Some(Val::Secret(Secret::new(s.as_ref()))),
        (Kind::Bool, DeValue::Boolean(b)) => Some(Val::Bool(*b)),
        (Kind::Path, DeValue::String(s)) if s.trim().is_empty() => {
            errs.push(at, Some(path()), "must not be empty: a file name");
            None
        }
        (Kind::Path, DeValue::String(s)) => Some(Val::Path(resolve_path(s, &errs.file))),
        (Kind::Int, DeValue::Integer(i)) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Some(Val::Int(n)),
            Err(_) => {
                errs.push(at, Some(path()), "the number is too large");
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
                    errs.push(item.span().start, Some(format!("{}[{i}]", path())), message);
                    ok = false;
                }
            }
            ok.then_some(Val::Tags(tags))
        }
        (Kind::Columns, DeValue::Array(items)) => columns(items, at, path, errs),
        (kind, other) => {
            errs.push(
                at,
                Some(path()),
                format!("expected {}, found {}", kind.expected(), a_type(other)),
            );
            None
        }
    }
}

/// A `columns` list: known names, each once, `name` and `state` among them; every mistake
/// located at its element.
fn columns(
    items: &[Spanned<DeValue<'_>>],
    at: usize,
    path: &dyn Fn() -> String,
    errs: &mut Errors,
) -> Option<Val> {
    let mut names: Vec<&'static str> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let problem = match item.get_ref() {
            DeValue::String(s) => match COLUMN_NAMES.iter().find(|c| **c == s.as_ref()) {
                Some(c) if names.contains(c) => Some(format!("`{c}` is listed twice")),
                Some(c) => {
                    names.push(c);
                    None
                }
                None => Some(unknown_column(s)),
            },
            other => Some(format!(
                "expected a column name (a string), found {}",
                a_type(other)
            )),
        };
        if let Some(message) = problem {
            errs.push(item.span().start, Some(format!("{}[{i}]", path())), message);
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let missing: Vec<String> = REQUIRED_COLUMNS
        .iter()
        .filter(|c| !names.contains(c))
        .map(|c| format!("`{c}`"))
        .collect();
    if !missing.is_empty() {
        errs.push(
            at,
            Some(path()),
            format!(
                "{} missing: the screen always shows the name and the state",
                join_and(&missing)
            ),
        );
        return None;
    }
    Some(Val::Columns(names))
}

// ---------------------------------------------------------------------------------------------
// One profile: its tables (overlays first) over the `[defaults]` of its files over the built-in
// defaults.
// ---------------------------------------------------------------------------------------------

/// A table of one file (an index into the errors of every file read).
#[derive(Clone, Copy)]
pub(super) struct Placed<'l> {
    pub(super) layer: &'l Layer,
    pub(super) file: usize,
    /// Where the table starts (its value).
    pub(super) at: usize,
}

/// The first layer that sets each key wins: `tables` (the overlays of the including files, the
/// top-level one first, then the table that defines the profile, which is last), then `defaults`
/// (the `[defaults]` of the same files, in the same order). Every layer is non-empty.
pub(super) fn resolve(
    name: &str,
    prefix: &str,
    tables: &[Placed<'_>],
    defaults: &[Placed<'_>],
    errs: &mut [Errors],
) -> Option<Profile> {
    let all = || tables.iter().chain(defaults);
    let pick = |key: &str| all().find_map(|p| p.layer.val(key));
    let pick_str = |key: &str, fallback: &'static str| -> String {
        pick(key)
            .and_then(Val::as_str)
            .unwrap_or(fallback)
            .to_string()
    };
    let misspelled = |key| all().any(|p| p.layer.suggested.contains(&key));
    let defining = *tables.last()?;

    let url = match tables.iter().find(|p| p.layer.has("url")) {
        None if tables.iter().any(|p| p.layer.suggested.contains(&"url")) => None,
        None => {
            errs[defining.file].push(
                defining.at,
                Some(format!("{prefix}.url")),
                "missing `url` (the instance root, e.g. https://acme.sugarondemand.com)",
            );
            None
        }
        Some(placed) => match placed.layer.field("url") {
            Some(
                field @ Field {
                    val: Some(Val::Url(url)),
                    value_at,
                    ..
                },
            ) => {
                let allow_http = match pick("allow_http") {
                    Some(Val::Bool(b)) => *b,
                    _ => false,
                };
                if url.scheme() == "http" && !allow_http && !is_loopback(url) {
                    errs[placed.file].push(
                        *value_at,
                        Some(placed.layer.path_of(field)),
                        format!(
                            "http:// to `{}` would send the password unencrypted; use https:// \
                             or set allow_http = true",
                            url.host_str().unwrap_or_default()
                        ),
                    );
                }
                Some((url.clone(), allow_http))
            }
            _ => None,
        },
    };

    if !all().any(|p| p.layer.has("username")) && !misspelled("username") {
        errs[defining.file].push(
            defining.at,
            Some(format!("{prefix}.username")),
            "missing `username` (set it here or in [defaults])",
        );
    }

    let mut password = match all().find(|p| p.layer.has_password_source()) {
        Some(p) => p.layer.password(),
        None => Some(PasswordSource::Prompt),
    };
    let account = tables.iter().find(|p| p.layer.has("keyring_account"));
    if let Some(PasswordSource::Keyring(entry)) = &mut password {
        entry.over_ssh = matches!(pick("keyring_over_ssh"), Some(Val::Bool(true)));
        entry.account = match pick("keyring_account") {
            Some(Val::Str(account)) => account.clone(),
            // USER@INSTANCE-HOST: two profiles of one user on one instance share the entry.
            _ => format!(
                "{}@{}",
                pick_str("username", ""),
                url.as_ref()
                    .and_then(|(u, _)| u.host_str())
                    .unwrap_or_default()
            ),
        };
    } else if password.is_some()
        && let Some(placed) = account
        && let Some(field) = placed.layer.field("keyring_account")
    {
        errs[placed.file].push(
            field.key_at,
            Some(placed.layer.path_of(field)),
            "the password does not come from the OS keyring: set password_keyring = true, or \
             remove keyring_account",
        );
    }

    let timeout_s = match pick("timeout_s") {
        Some(Val::Int(n)) => *n,
        _ => DEFAULT_TIMEOUT_S,
    };
    let timeout = Duration::from_secs(u64::try_from(timeout_s).unwrap_or(20));

    let (url, allow_http) = url?;
    if errs.iter().any(|e| !e.is_empty()) {
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
        check_interval: match pick("check_interval_s") {
            Some(Val::Int(n)) => u64::try_from(*n).ok().map(Duration::from_secs),
            _ => None,
        },
        ca_cert: match pick("ca_cert") {
            Some(Val::Ca(ca)) => Some(Box::new(ca.clone())),
            _ => None,
        },
        insecure: matches!(pick("insecure"), Some(Val::Bool(true))),
        proxy: match pick("proxy") {
            Some(Val::Url(url)) => Some(Box::new(url.clone())),
            _ => None,
        },
        admin: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use std::path::Path;

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
