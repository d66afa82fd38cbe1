//! A profile as the snapshot holds it, read without being built: what `list` shows of it, and
//! what the platform guard compares (`cli/list.rs` hands it to the guard).

use super::{SnapPassword, SnapProfile};
use crate::config::{CaCert, KeyringEntry, PasswordSource};
use std::collections::HashMap;
use std::path::PathBuf;

/// One profile of a valid snapshot ([`super::with_listing`]): what `list` shows of it, its text
/// borrowed from the snapshot.
pub struct ListedProfile<'a> {
    pub name: &'a str,
    /// The URL as `url::Url` writes it (as [`crate::config::Profile`]'s `url.as_str()`).
    pub url: &'a str,
    pub api: &'a str,
    pub username: &'a str,
    pub platform: &'a str,
    pub client_id: &'a str,
    pub tags: Vec<&'a str>,
    pub insecure: bool,
    /// The password source's kind, as [`PasswordSource::kind`] names it.
    pub password_kind: &'static str,
}

impl<'a> ListedProfile<'a> {
    /// What `list` shows of `p`; `None` when its `ca_cert` is not one of the checked `cas` (as
    /// a profile built from the snapshot must have it).
    pub(super) fn of(p: SnapProfile<&'a str>, cas: &HashMap<PathBuf, CaCert>) -> Option<Self> {
        if p.ca_cert
            .as_ref()
            .is_some_and(|file| !cas.contains_key(file))
        {
            return None;
        }
        // Sources without their text (an empty `String` allocates nothing): one table of names.
        let password_kind = match p.password {
            SnapPassword::Env(_) => PasswordSource::Env(String::new()).kind(),
            SnapPassword::Cmd(_) => PasswordSource::Cmd(String::new()).kind(),
            SnapPassword::Keyring { .. } => PasswordSource::Keyring(KeyringEntry {
                account: String::new(),
                over_ssh: false,
            })
            .kind(),
            SnapPassword::Prompt => PasswordSource::Prompt.kind(),
        };
        Some(ListedProfile {
            name: p.name,
            url: p.url,
            api: p.api,
            username: p.username,
            platform: p.platform,
            client_id: p.client_id,
            tags: p.tags,
            insecure: p.insecure,
            password_kind,
        })
    }
}
