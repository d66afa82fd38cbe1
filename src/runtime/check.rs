//! The live check of a session: ping, me, server info, server time.

use crate::config::Profile;
use crate::outcome::{Failure, FailureKind, Outcome};
use crate::session::{CheckReport, Entry, Op, format_duration, remaining, rfc3339};
use crate::store::{Applied, Change, Expect};
use chrono::{TimeDelta, Utc};

use super::ops::superseded_reason;
use super::{Engine, Permit};

/// The requests a live check sends at once (ping, me, server info, server time): it takes as many
/// places under the concurrency bounds.
pub const CHECK_REQUESTS: u32 = 4;

impl Engine {
    /// A live check of the profile's session: `GET /ping`, `/me`, server info and server time,
    /// concurrently. A session that Sugar no longer accepts is marked as such in the cache.
    pub async fn check(&self, p: &Profile) -> (Outcome, Option<CheckReport>) {
        let permit = self.acquire_n(p, CHECK_REQUESTS).await;
        self.check_holding(p, permit).await
    }

    /// [`Engine::check`] with its places in the bounds already held ([`Engine::acquire_n`] with
    /// [`CHECK_REQUESTS`]; the screen waits for them separately, so that a queued check can be
    /// withdrawn).
    ///
    /// The check does not take the identity's lock to send (it rotates nothing). What it finds is
    /// stored only if the entry still holds the session it checked: a 401 on a token that another
    /// process has just replaced changes nothing, and the newer session is checked instead.
    pub async fn check_holding(
        &self,
        p: &Profile,
        permit: Permit,
    ) -> (Outcome, Option<CheckReport>) {
        let key = p.session_key();
        let mut requests = Vec::new();
        let mut permit = Some(permit);
        let done = |ok, message: String, entry: Entry, requests, failure| Outcome {
            name: p.name.clone(),
            key: key.clone(),
            op: Op::Check,
            ok,
            state: entry.state(Utc::now()),
            message,
            entry,
            requests,
            failure,
        };
        for attempt in 0..2 {
            let entry = self.current(&key).await.unwrap_or_default();
            let now = Utc::now();
            let Some(session) = entry.session.clone().filter(|s| s.access_valid(now)) else {
                let f = Failure::local(Op::Check, now, "no active session to check: log in first");
                return (
                    done(false, f.render(&p.name), entry, requests, Some(f)),
                    None,
                );
            };
            let client = match self.client(p).await {
                Ok(c) => c,
                Err(msg) => {
                    let f = Failure::local(Op::Check, now, msg);
                    return (
                        done(false, f.render(&p.name), entry, requests, Some(f)),
                        None,
                    );
                }
            };
            let held = match permit.take() {
                Some(p) => p,
                None => self.acquire_n(p, CHECK_REQUESTS).await,
            };
            let token = &session.access_token;
            let (ping, me, info, time) = tokio::join!(
                client.ping(p, token),
                client.me(p, token),
                client.server_info(p, token),
                client.server_time(p, token)
            );
            drop(held);
            let latency_ms = ping.log.latency_ms;
            let time_log = time.log.clone();
            requests.extend([ping.log, me.log, info.log, time.log]);
            let first_error = [
                ping.result.err(),
                me.result.as_ref().err().cloned(),
                info.result.as_ref().err().cloned(),
            ]
            .into_iter()
            .flatten()
            .next();
            if let Some(e) = first_error {
                if e.access_expired() || (e.session_gone() && Utc::now() >= session.expires_at) {
                    // Expired, not ended: the refresh token is still good; nothing is stored.
                    let f = e
                        .failure(Op::Check, Utc::now())
                        .with_hint("the access token had expired when Sugar saw it (the server's clock may run ahead of this machine's): a refresh renews it");
                    return (
                        done(false, f.render(&p.name), entry, requests, Some(f)),
                        None,
                    );
                }
                if !e.session_gone() {
                    let f = e.failure(Op::Check, Utc::now());
                    return (
                        done(false, f.render(&p.name), entry, requests, Some(f)),
                        None,
                    );
                }
                // The verdict depends on what the entry records beside the session: decided again
                // from the entry it is stored over.
                let verdict = |recorded: Option<&Failure>| -> Failure {
                    let mut f = e.failure(Op::Check, Utc::now()).needing_login();
                    f.http_status = None;
                    f.label = None;
                    match recorded
                        .filter(|r| !r.superseded() && (r.answer_may_be_lost() || r.needs_login))
                    {
                        // Our own request whose answer was lost probably replaced or ended it
                        // (or that was found already, and a login is needed).
                        Some(lost) if lost.answer_may_be_lost() => {
                            f.message = format!(
                                "Sugar no longer accepts this session ({}); the answer to the {} at {} never arrived ({}), so that {} probably replaced or ended it",
                                e.what(),
                                lost.op,
                                rfc3339(lost.at),
                                lost.what(),
                                lost.op
                            );
                            f.hint = Some("log in again".into());
                        }
                        Some(known) => {
                            f.message = format!(
                                "Sugar no longer accepts this session ({}); {}",
                                e.what(),
                                known.headline()
                            );
                            f.hint = Some("log in again".into());
                        }
                        None => {
                            f.kind = FailureKind::Superseded;
                            f.message = format!(
                                "Sugar no longer accepts this session ({}) although it had {} left: {}",
                                e.what(),
                                format_duration(remaining(session.expires_at, now)),
                                superseded_reason(p)
                            );
                        }
                    }
                    f
                };
                let mut f = verdict(entry.failure.as_ref());
                // Under the identity's lock, so that a refresh in flight in another process
                // finishes (and stores its new session) before this is compared.
                let lock = match self.lock_key(&key).await {
                    Ok(l) => l,
                    Err(why) => {
                        let message = format!("{}; not recorded: {why}", f.render(&p.name));
                        return (done(false, message, entry, requests, Some(f)), None);
                    }
                };
                // Stored if the entry still holds the session that was checked: a change of
                // another process that left that session (a failure noted beside it) is taken
                // into account and the verdict stored over it; a new session is checked instead.
                let mut generation = entry.generation;
                let mut applied;
                let mut tries = 0;
                loop {
                    let stored = f.clone();
                    applied = self
                        .persist(Change {
                            key: key.clone(),
                            label: p.name.clone(),
                            expect: Expect::Generation(generation),
                            apply: Box::new(move |e: &mut Entry| {
                                if let Some(s) = &mut e.session {
                                    s.end(Utc::now());
                                }
                                e.failure = Some(stored);
                            }),
                        })
                        .await;
                    tries += 1;
                    match &applied {
                        Ok(Applied::Lost(now_entry))
                            if tries < 4
                                && now_entry
                                    .session
                                    .as_ref()
                                    .is_some_and(|s| s.access_token == session.access_token) =>
                        {
                            generation = now_entry.generation;
                            f = verdict(now_entry.failure.as_ref());
                        }
                        _ => break,
                    }
                }
                drop(lock);
                match applied {
                    Ok(Applied::Done(entry)) => {
                        return (
                            done(false, f.render(&p.name), entry, requests, Some(f)),
                            None,
                        );
                    }
                    Ok(Applied::Lost(_)) if attempt == 0 => {
                        tracing::info!(profile = %p.name, "checked a session another process had just replaced; checking the new one");
                        continue;
                    }
                    Ok(Applied::Lost(now_entry)) => {
                        let f = Failure::local(
                            Op::Check,
                            Utc::now(),
                            "the session was replaced twice by other processes while it was checked; nothing was changed: check again",
                        );
                        return (
                            done(false, f.render(&p.name), now_entry, requests, Some(f)),
                            None,
                        );
                    }
                    Err(cache) => {
                        let message = format!("{}; and {cache}", f.render(&p.name));
                        return (done(false, message, entry, requests, Some(f)), None);
                    }
                }
            }
            let me = me.result.expect("checked above");
            let info = info.result.expect("checked above");
            // The server's clock against the local clock at the middle of the request.
            let skew_s = time.result.ok().map(|server| {
                let mid = time_log.at + TimeDelta::milliseconds(time_log.latency_ms as i64 / 2);
                (server.with_timezone(&Utc) - mid).num_seconds()
            });
            let report = CheckReport {
                at: now,
                user_name: me.user_name,
                full_name: me.full_name,
                admin: me.admin,
                flavor: info.flavor,
                version: info.version,
                skew_s,
                latency_ms,
            };
            let mut message = format!("{}: alive; {}", p.name, report.summary());
            if let Some(w) = report.skew_warning() {
                message.push_str(&format!("; warning: {w}"));
            }
            // The session is alive: a failure recorded earlier no longer describes it. Not a
            // superseded one: Sugar keeps accepting a superseded access token for a while.
            let mut entry = entry;
            // Nor a lost answer of ours: the stored refresh token may be the one Sugar rotated away.
            if entry
                .failure
                .as_ref()
                .is_some_and(|f| !f.superseded() && !f.answer_may_be_lost())
            {
                let applied = self
                    .persist(Change {
                        key: key.clone(),
                        label: p.name.clone(),
                        expect: Expect::Generation(entry.generation),
                        apply: Box::new(|e: &mut Entry| e.failure = None),
                    })
                    .await;
                if let Ok(Applied::Done(e)) = applied {
                    entry = e;
                }
            }
            return (done(true, message, entry, requests, None), Some(report));
        }
        unreachable!("the loop returns on its second attempt")
    }
}
