//! A usable access token for a script: the protocol of `token` (and later `exec` and `api`).

use crate::config::Profile;
use crate::outcome::Outcome;
use crate::secret::Secret;
use crate::session::{Op, Session};
use crate::store::LockGuard;
use chrono::{DateTime, TimeDelta, Utc};
use std::time::{Duration, Instant};

use super::Engine;

/// A usable access token handed out by [`Engine::token`], with the identity's lock: while it is
/// held, no other process can rotate the session, so the token printed is the stored, current one.
pub struct Token {
    pub session: Session,
    /// What was done to get it (a refresh or a login), for stderr.
    pub note: Option<String>,
    _lock: LockGuard,
}

/// Why [`Engine::token`] has no token to hand out.
#[derive(Debug)]
pub enum NoToken {
    /// A login is needed and no non-interactive password source can provide it.
    NeedsLogin(String),
    /// Something failed; the message says what.
    Failed(String),
}

/// What a caller needs of the token beyond being usable now.
#[derive(Clone, Copy, Debug, Default)]
pub struct Need<'a> {
    /// Valid for at least this long (`exec --min-valid`); for a short-lived token, at most half of
    /// its lifetime (a 10-minute token is refreshed when 5 minutes are left, not at once again).
    pub min_valid: Option<TimeDelta>,
    /// Sugar refused this access token (a 401 to `api`): a stored token that is this one is
    /// not handed out again; one stored since (by another process) is.
    pub rejected: Option<&'a Secret>,
}

impl Need<'_> {
    /// Whether the session `s`, usable at `now`, serves.
    pub fn met_by(&self, s: &Session, now: DateTime<Utc>) -> bool {
        let long_enough = self.min_valid.is_none_or(|min| {
            let half_life = (s.expires_at - s.obtained_at) / 2;
            s.expires_at - now >= min.min(half_life)
        });
        let refused = self
            .rejected
            .is_some_and(|r| r.expose() == s.access_token.expose());
        long_enough && !refused
    }
}

impl Engine {
    /// A usable access token for `p`, following the protocol: the identity's lock is taken before
    /// deciding, the entry re-read under it (another process may have refreshed meanwhile), then
    /// the stored token is handed out if it is usable and not due, else the session is refreshed,
    /// else (through a non-interactive password source) logged in again; the result is stored
    /// before it is handed out, and the lock is held until the caller is done with the token.
    pub async fn token(&self, p: &Profile) -> Result<Token, NoToken> {
        self.token_with(p, Need::default(), |_, _| {}).await
    }

    /// [`Engine::token`] for a `need` (a minimum validity, a token Sugar refused), telling
    /// `observe` of every operation it sent to Sugar (a refresh, a login) and how long it took
    /// from when it got its place (the daemon counts them).
    pub async fn token_with(
        &self,
        p: &Profile,
        need: Need<'_>,
        mut observe: impl FnMut(&Outcome, Duration),
    ) -> Result<Token, NoToken> {
        let key = p.session_key();
        // What this process saw before waiting for the lock: a session stored by another process
        // meanwhile is handed out as it is (it was just refreshed or logged in), not refreshed again.
        let seen = self.current_one(&key).await.unwrap_or_default();
        let lock = self
            .lock_key(&key)
            .await
            .map_err(|e| NoToken::Failed(format!("{}: no token: {e}", p.name)))?;
        let now = Utc::now();
        let entry = self
            .current_one(&key)
            .await
            .map_err(|e| NoToken::Failed(format!("{}: {e}", p.name)))?;
        let stored_meanwhile = entry.failure.is_none()
            && match (&seen.session, &entry.session) {
                (Some(before), Some(after)) => after.obtained_at > before.obtained_at,
                (None, Some(_)) => true,
                _ => false,
            };
        let due = p.auto_refresh
            && !stored_meanwhile
            && crate::session::refresh_due(&p.name, &entry, p.refresh_before, now);
        // A session the cache already knows Sugar ended (superseded) is never handed out.
        let known_dead = entry.failure.as_ref().is_some_and(|f| f.superseded());
        if let Some(s) = entry.usable_session(now).filter(|_| !known_dead)
            && !due
            && need.met_by(s, now)
        {
            return Ok(Token {
                session: s.clone(),
                note: None,
                _lock: lock,
            });
        }
        let mut notes = Vec::new();
        if entry.session.as_ref().is_some_and(|s| s.refresh_valid(now)) {
            let permit = self.acquire(p).await;
            let started = Instant::now();
            let o = self
                .execute_with(p, Op::Refresh, None, permit, Some(&lock))
                .await;
            observe(&o, started.elapsed());
            if let Some(s) = o.entry.usable_session(Utc::now()).filter(|_| o.ok) {
                return Ok(Token {
                    session: s.clone(),
                    note: Some(o.message),
                    _lock: lock,
                });
            }
            let needs_login = o.failure.as_ref().is_some_and(|f| f.needs_login);
            if !needs_login {
                // The refresh failed for another reason (the network, say): the stored token
                // serves while it is usable.
                let now = Utc::now();
                let stored = self.current(&key).await.unwrap_or_default();
                if let Some(s) = stored.usable_session(now).filter(|s| need.met_by(s, now)) {
                    return Ok(Token {
                        session: s.clone(),
                        note: Some(o.message),
                        _lock: lock,
                    });
                }
                return Err(NoToken::Failed(o.message));
            }
            notes.push(o.message);
        }
        if !p.password.is_non_interactive() {
            notes.push(format!(
                "{}: a login is needed, and the profile has no non-interactive password source (password_env, password_cmd, password or password_keyring): run `sugar-sessions login {}`",
                p.name, p.name
            ));
            return Err(NoToken::NeedsLogin(notes.join("\n")));
        }
        let permit = self.acquire(p).await;
        let started = Instant::now();
        let o = self
            .execute_with(p, Op::Login, None, permit, Some(&lock))
            .await;
        observe(&o, started.elapsed());
        match o.entry.usable_session(Utc::now()).filter(|_| o.ok) {
            Some(s) => Ok(Token {
                session: s.clone(),
                note: Some(o.message),
                _lock: lock,
            }),
            None => {
                notes.push(o.message);
                Err(NoToken::Failed(notes.join("\n")))
            }
        }
    }
}
