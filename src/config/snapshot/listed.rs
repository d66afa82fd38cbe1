//! A profile as the snapshot holds it, read without being built: what `list` shows of it, and
//! what the platform guard compares (`cli/list.rs` hands it to the guard).

use super::{SnapPassword, SnapProfile};
use crate::config::{KeyringEntry, PasswordSource};

/// One profile of a valid snapshot ([`super::listing`]), its text borrowed from the snapshot.
pub struct ListedProfile<'a>(pub(super) SnapProfile<&'a str>);

impl<'a> ListedProfile<'a> {
    pub fn name(&self) -> &'a str {
        self.0.name
    }
    /// The URL as `url::Url` writes it (as [`crate::config::Profile`]'s `url.as_str()`).
    pub fn url(&self) -> &'a str {
        self.0.url
    }
    pub fn api(&self) -> &'a str {
        self.0.api
    }
    pub fn username(&self) -> &'a str {
        self.0.username
    }
    pub fn platform(&self) -> &'a str {
        self.0.platform
    }
    pub fn client_id(&self) -> &'a str {
        self.0.client_id
    }
    pub fn tags(&self) -> &[&'a str] {
        &self.0.tags
    }
    pub fn insecure(&self) -> bool {
        self.0.insecure
    }
    /// The password source's kind, as [`PasswordSource::kind`] names it.
    pub fn password_kind(&self) -> &'static str {
        // Sources without their text (an empty `String` allocates nothing): one table of names.
        match self.0.password {
            SnapPassword::Env(_) => PasswordSource::Env(String::new()).kind(),
            SnapPassword::Cmd(_) => PasswordSource::Cmd(String::new()).kind(),
            SnapPassword::Keyring { .. } => PasswordSource::Keyring(KeyringEntry {
                account: String::new(),
                over_ssh: false,
            })
            .kind(),
            SnapPassword::Prompt => PasswordSource::Prompt.kind(),
        }
    }
}
