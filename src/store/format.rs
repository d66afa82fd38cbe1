//! The cache file's formats: format 2 as written, format 1 (keyed by profile name) read and
//! migrated.

use super::{Cache, FORMAT_VERSION};
use crate::identity::SessionKey;
use crate::outcome::{Failure, FailureKind, Op};
use crate::session::{Entry, Session};
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::HashMap;

/// Why a cache file could not be used.
pub(super) enum Unreadable {
    /// Written by a newer release: leave it alone.
    Newer(u32),
    /// Not JSON, or not the cache's shape: moved aside.
    Broken(String),
}

/// The file as written, in either format.
#[derive(Deserialize)]
struct RawCache {
    #[serde(default)]
    version: u32,
    #[serde(default)]
    sessions: Option<IndexMap<SessionKey, Entry>>,
    /// Format 1: entries keyed by profile name.
    #[serde(default)]
    profiles: Option<IndexMap<String, V1Entry>>,
}

#[derive(Deserialize)]
struct V1Entry {
    #[serde(default)]
    session: Option<Session>,
    #[serde(default)]
    failure: Option<V1Failure>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    relogin_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct V1Failure {
    at: DateTime<Utc>,
    op: Op,
    message: String,
    #[serde(default)]
    needs_login: bool,
    #[serde(default)]
    superseded: bool,
}

pub(super) fn decode(
    bytes: &[u8],
    names: &HashMap<String, (String, String)>,
) -> Result<Cache, Unreadable> {
    // The version first, so that a newer format is recognised even if its shape changed.
    #[derive(Deserialize)]
    struct Version {
        #[serde(default)]
        version: u32,
    }
    let version = serde_json::from_slice::<Version>(bytes)
        .map_err(|e| Unreadable::Broken(e.to_string()))?
        .version;
    if version > FORMAT_VERSION {
        return Err(Unreadable::Newer(version));
    }
    let raw: RawCache =
        serde_json::from_slice(bytes).map_err(|e| Unreadable::Broken(e.to_string()))?;
    let sessions = match (raw.sessions, raw.profiles) {
        (Some(sessions), _) => sessions,
        (None, Some(v1)) => migrate(v1, names),
        (None, None) => IndexMap::new(),
    };
    Ok(Cache {
        version: raw.version.max(1),
        sessions,
    })
}

/// Format 1 → 2: each entry with a session is keyed by the session's url, user and platform and
/// the client id of the profile of its name (else `sugar`); an impersonation `NAME>USER` by
/// NAME's identity and USER. Entries that held only a failure are dropped.
fn migrate(
    v1: IndexMap<String, V1Entry>,
    names: &HashMap<String, (String, String)>,
) -> IndexMap<SessionKey, Entry> {
    let mut out: IndexMap<SessionKey, Entry> = IndexMap::with_capacity(v1.len());
    for (name, old) in v1 {
        let Some(session) = old.session else {
            continue;
        };
        let key = match name.split_once('>') {
            Some((parent, user)) => {
                let (client, admin) = names
                    .get(parent)
                    .map(|(c, u)| (c.as_str(), u.as_str()))
                    .unwrap_or(("sugar", session.username.as_str()));
                SessionKey::new(&session.url, admin, &session.platform, client).impersonating(user)
            }
            None => {
                let client = names.get(&name).map_or("sugar", |(c, _)| c.as_str());
                SessionKey::new(&session.url, &session.username, &session.platform, client)
            }
        };
        let failure = old.failure.map(|f| {
            let text = f
                .message
                .strip_prefix(&format!("{name}: "))
                .unwrap_or(&f.message);
            let text = text
                .strip_prefix(&format!("{} failed: ", f.op))
                .or_else(|| text.strip_prefix("superseded: "))
                .unwrap_or(text);
            Failure {
                kind: if f.superseded {
                    FailureKind::Superseded
                } else if f.needs_login {
                    FailureKind::Credentials
                } else {
                    FailureKind::Server
                },
                needs_login: f.needs_login,
                ..Failure::local(f.op, f.at, text)
            }
        });
        let entry = Entry {
            generation: 1,
            profile: Some(name),
            session: Some(session),
            failure,
            updated_at: old.updated_at,
            relogin_at: old.relogin_at,
        };
        // Two names for one identity: the newer session stands.
        match out.get(&key) {
            Some(e)
                if e.session.as_ref().map(|s| s.obtained_at)
                    >= entry.session.as_ref().map(|s| s.obtained_at) => {}
            _ => {
                out.insert(key, entry);
            }
        }
    }
    out
}
