//! The compare-and-swap step of the cache protocol: [`Change`], [`Expect`], [`Applied`], [`apply`].

use super::Cache;
use crate::identity::SessionKey;
use crate::session::Entry;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// What a change to an entry was computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Made by the holder of the identity's lock, who alone rotates or ends the session: applied
    /// over whatever a check or a failure wrote meanwhile.
    Held,
    /// Computed from this generation of the entry: applied only if the entry still has it.
    Generation(u64),
}

/// One change of one entry.
pub struct Change {
    pub key: SessionKey,
    /// The profile's name, recorded as the entry's label.
    pub label: String,
    pub expect: Expect,
    pub apply: Box<dyn FnOnce(&mut Entry) + Send>,
}

/// What became of a [`Change`].
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// Applied; the entry as written.
    Done(Entry),
    /// Another process changed the entry first: nothing was changed; the entry as it is.
    Lost(Entry),
}

/// The compare-and-swap step of the protocol, on a cache as read under the file lock: each change
/// is applied to its entry if the entry still has the generation it was computed from (or the
/// change is the identity lock holder's), which then counts one more generation; otherwise nothing
/// changes and the entry as it is comes back. Pure: the store runs it between its read and its
/// write, and the protocol's interleaving test runs it directly.
pub fn apply(cache: &mut Cache, changes: Vec<Change>, now: DateTime<Utc>) -> Vec<Applied> {
    changes
        .into_iter()
        .map(|change| {
            // A copy of the entry only: the version readers hold keeps its own.
            let entry = Arc::make_mut(cache.sessions.entry(Arc::new(change.key)).or_default());
            if let Expect::Generation(g) = change.expect
                && entry.generation != g
            {
                return Applied::Lost(entry.clone());
            }
            (change.apply)(entry);
            entry.generation += 1;
            entry.profile = Some(change.label);
            entry.updated_at = Some(now);
            Applied::Done(entry.clone())
        })
        .collect()
}
