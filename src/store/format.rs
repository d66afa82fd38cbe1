//! The cache file's formats: format 2 as written, format 1 (keyed by profile name) read and
//! migrated.

use super::{Cache, FORMAT_VERSION};
use crate::identity::SessionKey;
use crate::outcome::{Failure, FailureKind, Op};
use crate::session::{Entry, Session, Sessions};
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

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
    sessions: Option<AllSessions>,
    /// Format 1: entries keyed by profile name.
    #[serde(default)]
    profiles: Option<IndexMap<String, V1Entry>>,
}

/// The `sessions` object, each key and entry made in its shared place at once (serde's own `Arc`
/// makes a `Box` first and moves it: two allocations and a copy for each of thousands).
struct AllSessions(Sessions);

impl<'de> Deserialize<'de> for AllSessions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AllSessions, D::Error> {
        struct Map;
        impl<'de> serde::de::Visitor<'de> for Map {
            type Value = AllSessions;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the sessions, by key")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<AllSessions, A::Error> {
                let mut out = Sessions::with_capacity_and_hasher(
                    m.size_hint().unwrap_or(0).min(4096),
                    Default::default(),
                );
                while let Some(key) = m.next_key::<SessionKey>()? {
                    let entry: Entry = m.next_value()?;
                    // A key there twice: the last one stands (as a map keeps it).
                    out.insert(Arc::new(key), Arc::new(entry));
                }
                Ok(AllSessions(out))
            }
        }
        d.deserialize_map(Map)
    }
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

pub(super) fn decode(bytes: &[u8], names: &super::Names) -> Result<Cache, Unreadable> {
    let raw: RawCache = match parse(bytes) {
        Ok(raw) => raw,
        // The version of a file that is not this shape: a newer format is left alone even if its
        // shape changed.
        Err(e) => {
            return Err(match version_of(bytes) {
                Some(v) if v > FORMAT_VERSION => Unreadable::Newer(v),
                _ => Unreadable::Broken(e.to_string()),
            });
        }
    };
    if raw.version > FORMAT_VERSION {
        return Err(Unreadable::Newer(raw.version));
    }
    let sessions = match (raw.sessions, raw.profiles) {
        (Some(AllSessions(sessions)), _) => sessions,
        (None, Some(v1)) => migrate(v1, names.get()),
        (None, None) => Sessions::default(),
    };
    Ok(Cache {
        version: raw.version.max(1),
        sessions,
    })
}

/// `T` from the JSON of `bytes`. Checked as UTF-8 once, as a whole, when it is: serde_json then
/// takes its thousands of strings as they are, instead of checking each one (a twentieth of
/// `status --json` at 10,000 sessions). Bytes that are not UTF-8 get serde_json's own error.
fn parse<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// The `version` of a JSON object, whatever else it holds.
fn version_of(bytes: &[u8]) -> Option<u32> {
    #[derive(Deserialize)]
    struct Version {
        #[serde(default)]
        version: u32,
    }
    serde_json::from_slice::<Version>(bytes)
        .ok()
        .map(|v| v.version)
}

/// The entry of `key` in a format-2 file, without building the others: `Some(None)` when the file
/// has no entry for it. `None` when the file is anything but a well-formed format-2 cache as far
/// as this reading sees (format 1, a newer format, a bad key, broken JSON, an unknown shape): the
/// caller then reads it whole, which says what is wrong. The other entries are skipped as JSON,
/// not checked as entries: a wrong one is found by the next whole read.
pub(super) fn find_entry(bytes: &[u8], key: &SessionKey) -> Option<Option<Entry>> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::fmt;

    /// One key of the `sessions` object: is it `key`? `Err` for a key that is not a session key.
    #[derive(Clone, Copy)]
    struct Matches<'k> {
        key: &'k SessionKey,
        canonical: &'k str,
    }
    impl<'de> DeserializeSeed<'de> for Matches<'_> {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl Visitor<'_> for Matches<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a session key")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
            if v == self.canonical {
                return Ok(true);
            }
            // One pass over the bytes (thousands of keys are skipped this way): the parts, and
            // whether a parse is needed. A `%` escapes; a control character, or a byte that may
            // begin one of Unicode's C1 controls (0xC2), leaves it to the parse as well.
            let (mut bars, mut parse) = (0, false);
            for b in v.bytes() {
                bars += usize::from(b == b'|');
                parse |= b == b'%' || b.is_ascii_control() || b == 0xC2;
            }
            if parse {
                // Escapes: only a parse can tell.
                return SessionKey::parse(v)
                    .map(|k| k == *self.key)
                    .map_err(E::custom);
            }
            // Without escapes, a key's text is its canonical form.
            match bars {
                3 | 4 => Ok(false),
                n => Err(E::custom(format!("a session key with {} parts", n + 1))),
            }
        }
    }

    /// The `sessions` object: the entry of the key, the last one if the key is there twice (as a
    /// whole read keeps it).
    struct Sessions<'k>(Matches<'k>);
    impl<'de> DeserializeSeed<'de> for Sessions<'_> {
        type Value = Option<Entry>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Sessions<'_> {
        type Value = Option<Entry>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("the sessions")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(hit) = map.next_key_seed(self.0)? {
                if hit {
                    found = Some(map.next_value::<Entry>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }

    /// The whole file: `version` and `sessions`; anything else is not read here.
    struct File<'k>(Matches<'k>);
    impl<'de> Visitor<'de> for File<'_> {
        type Value = Option<Option<Entry>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a token cache")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let (mut version, mut sessions, mut other) = (None, None, false);
            while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match &*name {
                    "version" if version.is_none() => version = Some(map.next_value::<u32>()?),
                    "sessions" if sessions.is_none() => {
                        sessions = Some(map.next_value_seed(Sessions(self.0))?);
                    }
                    _ => {
                        other = true;
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(match (version, sessions) {
                (Some(FORMAT_VERSION), Some(found)) if !other => Some(found),
                _ => None,
            })
        }
    }

    fn scan<'de, R: serde_json::de::Read<'de>>(
        mut de: serde_json::Deserializer<R>,
        matches: Matches,
    ) -> Option<Option<Entry>> {
        let found = de.deserialize_map(File(matches)).ok()?;
        de.end().ok()?;
        found
    }
    let canonical = key.canonical();
    let matches = Matches {
        key,
        canonical: &canonical,
    };
    // Valid UTF-8 as a whole, so that its thousands of strings are not checked one by one; bytes
    // that are not are skipped in the other entries, as they always were.
    match std::str::from_utf8(bytes) {
        Ok(text) => scan(serde_json::Deserializer::from_str(text), matches),
        Err(_) => scan(serde_json::Deserializer::from_slice(bytes), matches),
    }
}

/// How a cache this program wrote begins (`to_writer_pretty` of [`Cache`]): format 2, and the
/// `sessions` object with at least one entry.
const WRITTEN_HEAD: &[u8] = b"{\n  \"version\": 2,\n  \"sessions\": {\n";

/// Where `sessions` closes in a cache as written: the first line that is `  }` (its entries' own
/// lines are indented further, and a raw newline never occurs inside a JSON string).
const SESSIONS_CLOSE: &[u8] = b"\n  }";

/// How much of the file is read at a time by [`seek_entry`]: one buffer for the whole file, so
/// that a read of thousands of entries costs its copy, not a page fault for every page of it.
pub(super) const CHUNK: usize = 64 * 1024;

/// The entry of `key` in a cache as this program writes it, found by its text instead of by
/// parsing every entry around it: `None` whenever that is not certain, and the caller then goes
/// through [`find_entry`] (or the whole read), which decides.
///
/// A file this program wrote is pretty-printed: each session's key begins a line, indented by
/// four spaces, and a raw newline never occurs inside a JSON string, so `\n    "KEY": ` found
/// before `sessions` closes (its first line `  }`) is a key of the `sessions` object and nothing
/// else. The rest of the file is read through too (a chunk at a time, into one buffer), so that a
/// key there twice (a file edited by hand) gives the last entry, as a whole read does, and a file
/// that does not end as written (cut short, or more after `sessions`) is left to the whole read,
/// which moves a broken one aside.
///
/// What this does not look at, and [`find_entry`] does: the other keys, and whether the rest is
/// JSON (a file with a broken entry elsewhere still gives this one; the next whole read, by any
/// command that writes or lists, moves it aside), and a key spelled otherwise for the same
/// session (escapes that a parse would undo: this program writes each key in one spelling). A key
/// that is not found is left to the scan, the one that can say the file has no entry for it.
pub(super) fn seek_entry(file: &mut impl std::io::Read, key: &SessionKey) -> Option<Entry> {
    let needle = format!("\n    {}: ", serde_json::to_string(&key.canonical()).ok()?);
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    let closes = memchr::memmem::Finder::new(SESSIONS_CLOSE);
    // `buf[..filled]` holds the bytes not yet searched, after those carried over from the last
    // chunk (a needle may straddle two chunks).
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0;
    fill(file, &mut buf[..WRITTEN_HEAD.len()], &mut filled)?;
    if buf[..filled] != *WRITTEN_HEAD {
        return None;
    }
    // The head's last newline begins the first key's line: it stays in the buffer.
    let mut found: Option<Entry> = None;
    let mut from = WRITTEN_HEAD.len() - 1;
    loop {
        // Keys are looked for only before `sessions` closes, if it does in what was read.
        let close = closes.find(&buf[from..filled]).map(|c| from + c);
        if let Some(hit) = finder.find(&buf[from..close.unwrap_or(filled)]) {
            let start = from + hit + needle.len();
            let (entry, used) = entry_at(file, &mut buf, &mut filled, start)?;
            // A key there twice (a file edited by hand): the last one stands, as in a whole read.
            found = Some(entry);
            from = start + used;
            continue;
        }
        if let Some(close) = close {
            // The rest must be the file's own `}`, as written: not a file cut short, nor one
            // with more after `sessions` (where a key would not be a session's). A rest that
            // fills the buffer is more than that.
            buf.copy_within(close + SESSIONS_CLOSE.len()..filled, 0);
            filled -= close + SESSIONS_CLOSE.len();
            fill(file, &mut buf, &mut filled)?;
            let closed = filled < buf.len() && buf[..filled].trim_ascii_end() == b"\n}";
            return found.filter(|_| closed);
        }
        // Carry over what could begin a needle or the close; it is never the whole of a needle
        // already found.
        let keep = (needle.len() - 1).min(filled);
        buf.copy_within(filled - keep..filled, 0);
        filled = keep;
        from = 0;
        fill(file, &mut buf, &mut filled)?;
        if filled == keep {
            // The end of the file before `sessions` closed: cut short.
            return None;
        }
    }
}

/// The entry whose JSON begins at `buf[start..]`, reading on while it is cut by the end of what
/// was read; and how many bytes of the buffer it took from `start`. `None` when it is not an
/// entry. Each new try has the buffer full, twice as large as the last one's, so that an entry of
/// any length (or a source that hands out a few bytes at a time) is parsed a few times at most.
fn entry_at(
    file: &mut impl std::io::Read,
    buf: &mut Vec<u8>,
    filled: &mut usize,
    start: usize,
) -> Option<(Entry, usize)> {
    loop {
        let mut stream =
            serde_json::Deserializer::from_slice(&buf[start..*filled]).into_iter::<Entry>();
        match stream.next() {
            Some(Ok(entry)) => return Some((entry, stream.byte_offset())),
            // Nothing of it read yet, or cut short: read on.
            None => {}
            Some(Err(e)) if e.is_eof() => {}
            Some(Err(_)) => return None,
        }
        if *filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let before = *filled;
        fill(file, buf, filled)?;
        if *filled == before {
            return None;
        }
    }
}

/// Reads on into `buf[*filled..]` until it is full or the file ends (reads that are interrupted
/// are tried again); `None` for an error, which the whole read then reports.
fn fill(file: &mut impl std::io::Read, buf: &mut [u8], filled: &mut usize) -> Option<()> {
    while *filled < buf.len() {
        match file.read(&mut buf[*filled..]) {
            Ok(0) => break,
            Ok(n) => *filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(())
}

/// Format 1 → 2: each entry with a session is keyed by the session's url, user and platform and
/// the client id of the profile of its name (else `sugar`); an impersonation `NAME>USER` by
/// NAME's identity and USER. Entries that held only a failure are dropped.
fn migrate(v1: IndexMap<String, V1Entry>, names: &HashMap<String, (String, String)>) -> Sessions {
    let mut out = Sessions::with_capacity_and_hasher(v1.len(), Default::default());
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
                out.insert(Arc::new(key), Arc::new(entry));
            }
        }
    }
    out
}
