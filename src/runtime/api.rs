//! One authenticated request of the user's to a profile's REST root (`api`, later the screen's
//! record views): the token through the protocol of `token`, and on a 401 one refresh (or login)
//! and one retry.

use super::{Engine, Need, NoToken};
use crate::config::Profile;
use crate::secret::Secret;
use crate::sugar::RawAnswer;

/// Why a request could not be made or answered.
#[derive(Debug)]
pub enum ApiError {
    /// No usable token (see [`NoToken`]).
    NoToken(NoToken),
    /// The request itself failed (the network, a body too large); the message names the profile.
    Failed(String),
}

/// An answer, and what was done to get a token for it (a refresh, a login), for stderr.
#[derive(Debug)]
pub struct Answered {
    pub answer: RawAnswer,
    pub notes: Vec<String>,
}

impl Engine {
    /// Sends `method target` (the path and query below `/rest/{api}`, starting with `/`) with
    /// `body` as the profile's session. The token is held (its identity's lock) only for the
    /// request; a 401 gets the session refreshed, or logged in again through a non-interactive
    /// password source, and the request sent once more.
    pub async fn api(
        &self,
        p: &Profile,
        method: reqwest::Method,
        target: &str,
        body: Option<&[u8]>,
    ) -> Result<Answered, ApiError> {
        let client = self
            .client(p)
            .await
            .map_err(|e| ApiError::Failed(format!("{}: {e}", p.name)))?;
        let mut notes = Vec::new();
        let mut rejected: Option<Secret> = None;
        loop {
            let need = Need {
                min_valid: None,
                rejected: rejected.as_ref(),
            };
            let token = self
                .token_with(p, need, |_, _| {})
                .await
                .map_err(ApiError::NoToken)?;
            notes.extend(token.note.clone());
            let access = token.session.access_token.clone();
            let answer = client
                .raw(p, method.clone(), target, body.map(<[u8]>::to_vec), &access)
                .await
                .map_err(|e| ApiError::Failed(e.to_string()))?;
            drop(token);
            if answer.status == 401 && rejected.is_none() {
                tracing::info!(profile = %p.name, "api: the token was refused (401), getting another");
                rejected = Some(access);
                continue;
            }
            return Ok(Answered { answer, notes });
        }
    }
}
