//! The operations that rotate or end a session (login, refresh, logout), under the identity's
//! lock, with the cache known writable before anything is sent.

use crate::config::Profile;
use crate::identity::SessionKey;
use crate::outcome::{Failure, FailureKind, Outcome};
use crate::secret::Secret;
use crate::session::{
    Entry, Op, RELOGIN_INTERVAL, RequestLog, Session, format_duration, remaining, rfc3339,
};
use crate::store::{Applied, Change, Expect, LockGuard};
use crate::sugar::{Call, Client, Grant, MAX_LIFETIME_S, SugarError};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Mutex;

use super::{Engine, Permit};

impl Engine {
    /// Acquires a place and runs the operation.
    pub async fn run(&self, p: &Profile, op: Op, password: Option<Secret>) -> Outcome {
        let permit = self.acquire(p).await;
        // Boxed once it may run: a thousand queued operations then hold only the small waiting
        // future each, not the whole request's state (~3 KB each).
        Box::pin(self.execute(p, op, password, permit)).await
    }

    /// Runs `op` (login, refresh or logout) on `p` holding `permit`. `password` is used by a login
    /// instead of the profile's source.
    pub async fn execute(
        &self,
        p: &Profile,
        op: Op,
        password: Option<Secret>,
        permit: Permit,
    ) -> Outcome {
        self.execute_with(p, op, password, permit, None).await
    }

    /// A refresh (or a login) decided from what the cache held: the refresh was due (the screen's
    /// automatic refresh, the daemon's, `refresh --due`), or the session needed a login (the
    /// daemon's, with nothing to refresh with). Under the identity's lock it is decided again:
    /// when the session stored by then no longer needs it (another process refreshed it, or
    /// logged in, after this one read the cache), nothing is sent, so that two processes deciding
    /// from the same rule never refresh one session twice, nor end a fresh login with another.
    pub async fn execute_due(&self, p: &Profile, op: Op, permit: Permit) -> Outcome {
        self.execute_inner(p, op, None, permit, None, true).await
    }

    /// [`Engine::execute`]; `held`: the identity's lock, when the caller holds it already.
    pub(super) async fn execute_with(
        &self,
        p: &Profile,
        op: Op,
        password: Option<Secret>,
        permit: Permit,
        held: Option<&LockGuard>,
    ) -> Outcome {
        self.execute_inner(p, op, password, permit, held, false)
            .await
    }

    async fn execute_inner(
        &self,
        p: &Profile,
        op: Op,
        password: Option<Secret>,
        permit: Permit,
        held: Option<&LockGuard>,
        due: bool,
    ) -> Outcome {
        let key = p.session_key();
        // What this process knew before waiting for the identity's lock: if another process
        // stores a newer session meanwhile, a refresh uses that instead of a stale refresh token.
        let seen = self.current(&key).await.unwrap_or_default();
        let mut run = Run {
            engine: self,
            p,
            key: key.clone(),
            op,
            requests: Vec::new(),
            seen,
            permit: Mutex::new(Some(permit)),
            due,
        };
        // The client first: at the start of a bulk action it is being made (the system's CA
        // certificates read), and the identities' locks wait for it rather than compete with it.
        let client = self.client(p).await;
        // The place in the bounds stays held while waiting (boundedly) for another process: a
        // request that has its place is the next to be sent, as the bounds' queue promised.
        let lock = match held {
            Some(_) => Ok(None),
            None => self.lock_key(&key).await.map(Some),
        };
        let result = match lock {
            Err(msg) => Err(run.unstored(Failure::local(op, Utc::now(), msg))),
            Ok(_lock) => match (client, op) {
                (Err(msg), _) => Err(run.fail(Failure::local(op, Utc::now(), msg)).await),
                (Ok(client), Op::Login | Op::Relogin) => run.login(&client, password).await,
                (Ok(client), Op::Refresh) => run.refresh(&client).await,
                (Ok(client), Op::Logout) => run.logout(&client).await,
                (Ok(_), Op::Check | Op::Sudo) => Err(run.unstored(Failure::local(
                    op,
                    Utc::now(),
                    "not an operation of execute (an internal error)",
                ))),
            },
        };
        run.release();
        let op = run.op;
        let (ok, message, entry, failure) = match result {
            Ok((message, entry)) => (true, message, entry, None),
            Err(Failed {
                message,
                entry,
                failure,
            }) => (false, message, entry, Some(failure)),
        };
        let state = entry.state(Utc::now());
        tracing::info!(
            profile = %p.name,
            %op,
            ok,
            state = state.as_str(),
            kind = failure.as_ref().map(|f| f.kind.as_str()),
            label = failure.as_ref().and_then(|f| f.label.as_deref()),
            requests = run.requests.len(),
            "operation finished"
        );
        Outcome {
            name: p.name.clone(),
            key,
            op,
            ok,
            state,
            message,
            entry,
            requests: run.requests,
            failure,
        }
    }
}

struct Failed {
    message: String,
    entry: Entry,
    failure: Failure,
}

type Step = Result<(String, Entry), Failed>;

struct Run<'a> {
    engine: &'a Engine,
    p: &'a Profile,
    key: SessionKey,
    op: Op,
    requests: Vec<RequestLog>,
    /// The entry as read before the identity's lock was taken.
    seen: Entry,
    /// The place in the concurrency bounds: held for requests, given up while a result is stored
    /// (writes are coalesced; the network need not wait for them).
    permit: Mutex<Option<Permit>>,
    /// An operation decided because it was due (a refresh, or the daemon's login): skipped if it
    /// no longer is, looked at again under the lock.
    due: bool,
}

impl Run<'_> {
    fn name(&self) -> &str {
        &self.p.name
    }

    /// Gives up the place in the concurrency bounds (the identity's lock stays held).
    fn release(&self) {
        let permit = self.permit.lock().expect("permit lock").take();
        drop(permit);
    }

    /// Takes a place in the concurrency bounds again before a request, if it was given up.
    async fn hold(&self) {
        if self.permit.lock().expect("permit lock").is_none() {
            let permit = self.engine.acquire(self.p).await;
            *self.permit.lock().expect("permit lock") = Some(permit);
        }
    }

    /// Before a request that rotates or ends the session: the cache must be known writable, and
    /// a place in the bounds held. Nothing is sent otherwise.
    async fn ready_to_send(&self) -> Result<(), Failed> {
        if let Err(e) = self.engine.prepare().await {
            let failure = Failure::local(
                self.op,
                Utc::now(),
                format!("nothing was sent, because the token cache could not keep the result: {e}"),
            );
            return Err(self.unstored(failure));
        }
        self.hold().await;
        Ok(())
    }

    /// Stores a change of the entry (this run holds the identity's lock), without holding a place
    /// in the bounds meanwhile.
    async fn persist(
        &self,
        change: impl FnOnce(&mut Entry) + Send + 'static,
    ) -> Result<Entry, String> {
        self.release();
        let applied = self
            .engine
            .persist(Change {
                key: self.key.clone(),
                label: self.p.name.clone(),
                expect: Expect::Held,
                apply: Box::new(change),
            })
            .await?;
        match applied {
            Applied::Done(e) | Applied::Lost(e) => Ok(e),
        }
    }

    fn record<T>(&mut self, call: Call<T>) -> Result<T, Box<SugarError>> {
        self.requests.push(call.log);
        call.result.map_err(Box::new)
    }

    /// A failure that is not stored (the cache or the lock could not be had, and nothing was
    /// sent): the session stays as it was; the outcome says what failed.
    fn unstored(&self, failure: Failure) -> Failed {
        let entry = self.seen.clone();
        Failed {
            message: failure.render(self.name()),
            entry,
            failure,
        }
    }

    /// Stores a failure; `change` adjusts the session (for example drops a rejected refresh token).
    async fn fail_with(
        &self,
        failure: Failure,
        change: impl FnOnce(&mut Entry) + Send + 'static,
    ) -> Failed {
        let message = failure.render(self.name());
        let f = failure.clone();
        match self
            .persist(move |e| {
                change(e);
                e.failure = Some(f);
            })
            .await
        {
            Ok(entry) => Failed {
                message,
                entry,
                failure,
            },
            Err(cache) => {
                let mut failed = self.unstored(failure.clone());
                failed.message = format!("{message}; and {cache}");
                failed.entry.failure = Some(failure);
                failed
            }
        }
    }

    async fn fail(&self, failure: Failure) -> Failed {
        self.fail_with(failure, |_| {}).await
    }

    /// Stores a new session. When that fails after the server answered, the session is lost: the
    /// outcome says so and names it, and its state is an error, never "active".
    async fn store_session(&self, session: Session) -> Result<Entry, Failed> {
        self.persist(move |e| {
            e.session = Some(session);
            e.failure = None;
        })
        .await
        .map_err(|cache| {
            let failure = Failure::local(
                self.op,
                Utc::now(),
                format!(
                    "Sugar answered, but the new session of {} could not be stored ({cache}): it is lost, and the one before it has ended",
                    self.key
                ),
            )
            .needing_login()
            .with_hint("make the state directory writable (or free space), then log in again");
            // Shown as it is: the session is gone, and this process knows it.
            let mut failed = self.unstored(failure.clone());
            failed.entry.session = None;
            failed.entry.failure = Some(failure);
            failed
        })
    }

    async fn current(&self) -> Result<Entry, Failed> {
        self.engine.current(&self.key).await.map_err(|e| {
            self.unstored(Failure::local(
                self.op,
                Utc::now(),
                format!("cannot read the token cache: {e}"),
            ))
        })
    }

    async fn login(&mut self, client: &Client, password: Option<Secret>) -> Step {
        // Given by the caller: typed at a prompt (the shell's or the screen's).
        let typed = password.is_some();
        if self.due {
            // Decided because the session needed a login: it no longer does when another process
            // logged in (or refreshed) meanwhile, and a login now would end that session.
            let entry = self.current().await?;
            let now = Utc::now();
            if !entry.needs_login(now) {
                return Ok((
                    format!(
                        "{}: logged in by another process just now; {}",
                        self.name(),
                        describe(&entry, now)
                    ),
                    entry,
                ));
            }
        }
        let password = match password {
            Some(pw) => pw,
            None => match super::password::resolve_password(self.p).await {
                Ok(Some(pw)) => pw,
                Ok(None) => {
                    let f = Failure::local(
                        self.op,
                        Utc::now(),
                        "no password: the profile has no password_env, password_cmd, password or password_keyring, and there is no terminal to ask on",
                    );
                    return Err(self.fail(f.needing_login()).await);
                }
                Err(why) => {
                    let f = Failure::local(self.op, Utc::now(), why);
                    return Err(self.fail(f.needing_login()).await);
                }
            },
        };
        self.ready_to_send().await?;
        let call = client.login(self.p, &password).await;
        drop(password);
        let at = call.log.at;
        match self.record(call) {
            Ok(grant) => {
                let session = match session_from(grant, self.p, at) {
                    Ok(s) => s,
                    Err(f) => return Err(self.fail(f.with_op(self.op)).await),
                };
                let entry = self.store_session(session).await?;
                let done = if self.op == Op::Relogin {
                    "logged in again"
                } else {
                    "logged in"
                };
                Ok((
                    format!("{}: {done}; {}", self.name(), describe(&entry, Utc::now())),
                    entry,
                ))
            }
            Err(e) => {
                let mut f = e.failure(self.op, Utc::now());
                if typed && f.hint.as_deref() == Some(crate::sugar::SOURCE_PASSWORD_HINT) {
                    f.hint = Some(crate::sugar::TYPED_PASSWORD_HINT.into());
                }
                Err(self.fail(f).await)
            }
        }
    }

    async fn refresh(&mut self, client: &Client) -> Step {
        let entry = self.current().await?;
        let now = Utc::now();
        // Another process refreshed (or logged in) while this one waited for the lock; or, for a
        // refresh decided because it was due, before this one read the cache it decided from.
        let stored_meanwhile = matches!(
            (&self.seen.session, &entry.session),
            (Some(before), Some(after)) if after.obtained_at > before.obtained_at
        ) && entry.failure.is_none();
        let no_longer_due = self.due
            && entry.usable_session(now).is_some()
            && !crate::session::refresh_due(&self.p.name, &entry, self.p.refresh_before, now);
        if stored_meanwhile || no_longer_due {
            return Ok((
                format!(
                    "{}: refreshed by another process just now; {}",
                    self.name(),
                    describe(&entry, now)
                ),
                entry,
            ));
        }
        let Some(session) = entry.session.clone() else {
            let f = Failure::local(self.op, now, "no session: log in first");
            return Err(self.fail(f.needing_login()).await);
        };
        let Some(refresh_token) = session
            .refresh_token
            .clone()
            .filter(|_| session.refresh_valid(now))
        else {
            let f = Failure::local(
                self.op,
                now,
                "the refresh token has expired (or there is none): log in again",
            );
            return Err(self.fail(f.needing_login()).await);
        };
        self.ready_to_send().await?;
        let call = client.refresh(self.p, &refresh_token).await;
        let at = call.log.at;
        match self.record(call) {
            Ok(grant) => {
                let mut fresh = match session_from(grant, self.p, at) {
                    Ok(s) => s,
                    Err(f) => return Err(self.fail(f.with_op(self.op)).await),
                };
                fresh.hard_end = hard_end(&session, &fresh);
                let entry = self.store_session(fresh).await?;
                Ok((
                    format!(
                        "{}: refreshed; {}",
                        self.name(),
                        describe(&entry, Utc::now())
                    ),
                    entry,
                ))
            }
            Err(e) if e.is_invalid_grant() => {
                self.refresh_rejected(client, e, &session, &entry).await
            }
            Err(e) => Err(self.fail(e.failure(self.op, Utc::now())).await),
        }
    }

    /// Sugar rejected the refresh token: say why, and log in again when the profile allows it.
    async fn refresh_rejected(
        &mut self,
        client: &Client,
        e: Box<SugarError>,
        session: &Session,
        entry: &Entry,
    ) -> Step {
        let now = Utc::now();
        let expired = e
            .failure(self.op, now)
            .message
            .to_ascii_lowercase()
            .contains("expired");
        // The last login or refresh sent with this session may have reached Sugar (which then
        // rotated the refresh token) without its answer reaching us: then the rejection is ours.
        let lost = entry.failure.as_ref().filter(|f| f.answer_may_be_lost());
        // Rejected although it had not expired, and not for a lost answer of ours: another login
        // on this user and platform ended it.
        let superseded = !expired && session.refresh_valid(now) && lost.is_none();
        let mut failure = e.failure(self.op, now).needing_login();
        if let Some(lost) = lost {
            failure.message.push_str(&format!(
                "; the answer to the {} at {} never arrived ({}), so Sugar probably rotated the refresh token then",
                lost.op,
                rfc3339(lost.at),
                lost.what()
            ));
            failure.hint = Some("log in again".into());
        }
        if superseded {
            failure.kind = FailureKind::Superseded;
            failure.message = format!("{} ({})", superseded_reason(self.p), e.what());
            failure.http_status = None;
            failure.label = None;
        }
        if self.p.relogin && self.p.password.is_non_interactive() {
            match entry.relogin_at.filter(|t| now - *t < RELOGIN_INTERVAL) {
                None => {
                    let why = e.what();
                    self.op = Op::Relogin;
                    let (_, entry) = match self.login(client, None).await {
                        Ok(done) => done,
                        // The new login failed too: the rejected session is over all the same.
                        Err(mut failed) => {
                            if let Ok(ended) = self
                                .persist(|e| {
                                    if let Some(s) = &mut e.session {
                                        s.end(Utc::now());
                                    }
                                })
                                .await
                            {
                                failed.entry = ended;
                            }
                            return Err(failed);
                        }
                    };
                    let entry = self
                        .persist(move |e| e.relogin_at = Some(now))
                        .await
                        .unwrap_or(entry);
                    let because = if superseded {
                        "it was superseded by another login"
                    } else {
                        "it was rejected"
                    };
                    return Ok((
                        format!(
                            "{}: logged in again, because the refresh token could not be used ({because}: {why}); {}",
                            self.name(),
                            describe(&entry, Utc::now())
                        ),
                        entry,
                    ));
                }
                Some(last) => failure.message.push_str(&format!(
                    "; not logging in again automatically: that already happened at {} (at most once per 10 minutes), so another tool is probably logging in as {} on platform {} too",
                    rfc3339(last),
                    self.p.username,
                    self.p.platform
                )),
            }
        }
        Err(self
            .fail_with(failure, |entry| {
                if let Some(s) = &mut entry.session {
                    s.end(Utc::now());
                }
            })
            .await)
    }

    async fn remove_session(&self, message: String) -> Step {
        match self
            .persist(|e| {
                e.session = None;
                e.failure = None;
            })
            .await
        {
            Ok(entry) => Ok((message, entry)),
            Err(cache) => {
                let f = Failure::local(
                    self.op,
                    Utc::now(),
                    format!(
                        "the session was ended, but the token cache could not record it ({cache})"
                    ),
                );
                let mut failed = self.unstored(f.clone());
                failed.message = format!("{message}; but {cache}");
                failed.entry.session = None;
                failed.entry.failure = Some(f);
                Err(failed)
            }
        }
    }

    async fn logout(&mut self, client: &Client) -> Step {
        let entry = self.current().await?;
        let Some(mut session) = entry.session.clone() else {
            return self
                .remove_session(format!("{}: no session; nothing to log out", self.name()))
                .await;
        };
        let mut refreshed = false;
        loop {
            let now = Utc::now();
            if !session.access_valid(now) {
                // With a live refresh token, refresh first so that the logout revokes it on the
                // server (otherwise it stays valid there until it expires).
                let Some(refresh_token) = session
                    .refresh_token
                    .clone()
                    .filter(|_| session.refresh_valid(now) && !refreshed)
                else {
                    return self
                        .remove_session(format!(
                            "{}: the session had already expired; removed it locally",
                            self.name()
                        ))
                        .await;
                };
                self.ready_to_send().await?;
                let call = client.refresh(self.p, &refresh_token).await;
                let at = call.log.at;
                refreshed = true;
                match self.record(call) {
                    Ok(grant) => {
                        session = match session_from(grant, self.p, at) {
                            Ok(s) => s,
                            Err(f) => return Err(self.fail(f.with_op(self.op)).await),
                        };
                        self.store_session(session.clone()).await?;
                    }
                    Err(e) if e.is_invalid_grant() => {
                        return self
                            .remove_session(format!(
                                "{}: the server had already ended the session ({}); removed it locally",
                                self.name(),
                                e.what()
                            ))
                            .await;
                    }
                    Err(e) => return Err(self.fail(e.failure(self.op, Utc::now())).await),
                }
            }
            self.ready_to_send().await?;
            let call = client
                .logout(
                    self.p,
                    &session.access_token,
                    session.refresh_token.as_ref(),
                )
                .await;
            return match self.record(call) {
                Ok(()) => {
                    self.remove_session(format!("{}: logged out", self.name()))
                        .await
                }
                // Sugar's clock says the access token has expired although ours did not: the
                // refresh token may still live there. Refresh (once), then log out for real.
                Err(e) if e.access_expired() && !refreshed => {
                    session.expires_at = Utc::now();
                    continue;
                }
                Err(e) if e.session_gone() => {
                    self.remove_session(format!(
                        "{}: the server had already ended the session ({}); removed it locally",
                        self.name(),
                        e.what()
                    ))
                    .await
                }
                Err(e) => Err(self.fail(e.failure(self.op, Utc::now())).await),
            };
        }
    }
}

/// A refresh that did not move the refresh token's expiry although time passed shows that the
/// session is capped (Sugar's `max_session_lifetime`): from then on it ends at that instant. Only
/// a refresh 10 s or more after the previous grant that moved the expiry by less than 2 s counts;
/// a later refresh that moves it by 2 s or more clears it.
fn hard_end(before: &Session, after: &Session) -> Option<DateTime<Utc>> {
    let moved_little = TimeDelta::seconds(2);
    let long_enough = TimeDelta::seconds(10);
    match (before.refresh_expires_at, after.refresh_expires_at) {
        (Some(old), Some(new)) if new - old >= moved_little => None,
        (Some(_), Some(new)) if after.obtained_at - before.obtained_at >= long_enough => Some(new),
        _ => before.hard_end,
    }
}

/// The session a grant gives. The client refuses lifetimes out of range already; should one come
/// through anyway, it is a bad answer here too, never an overflow.
pub(super) fn session_from(
    grant: Grant,
    p: &Profile,
    at: DateTime<Utc>,
) -> Result<Session, Failure> {
    let bad = |field: &str, value: i64| {
        Failure {
            kind: FailureKind::Protocol,
            ..Failure::local(
                Op::Login,
                at,
                format!(
                    "the server's {field} of {value} s is out of range (0 to {MAX_LIFETIME_S} s)"
                ),
            )
        }
        .with_hint("this does not look like a Sugar REST API answer: check the profile's url")
    };
    let until = |field: &str, secs: i64| {
        (0..=MAX_LIFETIME_S)
            .contains(&secs)
            .then(|| at.checked_add_signed(TimeDelta::seconds(secs)))
            .flatten()
            .ok_or_else(|| bad(field, secs))
    };
    Ok(Session {
        expires_at: until("expires_in", grant.expires_in)?,
        refresh_expires_at: grant
            .refresh_expires_in
            .map(|s| until("refresh_expires_in", s))
            .transpose()?,
        access_token: grant.access_token,
        refresh_token: grant.refresh_token,
        download_token: grant.download_token,
        obtained_at: at,
        platform: p.platform.clone(),
        username: p.username.clone(),
        url: p.url.as_str().to_string(),
        hard_end: None,
    })
}

/// Why a session that Sugar rejects before its expiry is gone, and how to avoid it.
pub(super) fn superseded_reason(p: &Profile) -> String {
    format!(
        "another login as {} on platform {} ended it (Sugar keeps one session per user and platform); give each integration a platform of its own",
        p.username, p.platform
    )
}

/// `access token valid for 59m 59s (until 2026-...Z); refresh token for 14d 00h`.
pub fn describe(entry: &Entry, now: DateTime<Utc>) -> String {
    let Some(s) = &entry.session else {
        return "no session".into();
    };
    let mut out = format!(
        "access token valid for {} (until {})",
        format_duration(remaining(s.expires_at, now)),
        rfc3339(s.expires_at)
    );
    match s.refresh_expires_at {
        Some(r) if s.refresh_token.is_some() => out.push_str(&format!(
            "; refresh token for {} (until {})",
            format_duration(remaining(r, now)),
            rfc3339(r)
        )),
        _ => out.push_str("; no refresh token"),
    }
    out
}
