//! Impersonation: with an admin's session, a session as another user.

use crate::config::Profile;
use crate::outcome::{Failure, Outcome};
use crate::session::{Entry, Op};
use crate::store::{Applied, Change, Expect};
use chrono::Utc;

use super::ops::{describe, session_from};
use super::{Engine, Permit};

impl Engine {
    /// With the profile's (admin) session, a session as `user` on the same platform, stored under
    /// its own identity (shown as `NAME>USER`). It has no refresh token: it ends when its access
    /// token does.
    pub async fn sudo(&self, p: &Profile, user: &str) -> Outcome {
        let permit = self.acquire(p).await;
        self.sudo_holding(p, user, permit).await
    }

    /// [`Engine::sudo`] with a place in the bounds already held (see [`Engine::check_holding`]).
    pub async fn sudo_holding(&self, p: &Profile, user: &str, permit: Permit) -> Outcome {
        let target = p.impersonation(user);
        let key = target.session_key();
        let entry = self.current(&p.session_key()).await.unwrap_or_default();
        let before = self.current(&key).await.unwrap_or_default();
        let now = Utc::now();
        let outcome = |ok, message: String, entry: Entry, requests, failure| Outcome {
            name: target.name.clone(),
            key: key.clone(),
            op: Op::Sudo,
            ok,
            state: entry.state(Utc::now()),
            message,
            entry,
            requests,
            failure,
        };
        let fail = |f: Failure, requests| {
            outcome(
                false,
                f.render(&target.name),
                before.clone(),
                requests,
                Some(f),
            )
        };
        let Some(session) = entry.usable_session(now).cloned() else {
            let f = Failure::local(
                Op::Sudo,
                now,
                format!("{} has no active session: log in first", p.name),
            );
            return fail(f, vec![]);
        };
        let client = match self.client(p).await {
            Ok(c) => c,
            Err(msg) => return fail(Failure::local(Op::Sudo, now, msg), vec![]),
        };
        // The impersonation's own session is replaced: its lock first, and a writable cache.
        drop(permit);
        let lock = match self.lock_key(&key).await {
            Ok(l) => l,
            Err(why) => return fail(Failure::local(Op::Sudo, now, why), vec![]),
        };
        if let Err(e) = self.prepare().await {
            let f = Failure::local(
                Op::Sudo,
                now,
                format!("nothing was sent, because the token cache could not keep the result: {e}"),
            );
            return fail(f, vec![]);
        }
        let permit = self.acquire(p).await;
        let call = client.sudo(p, &session.access_token, user).await;
        drop(permit);
        let at = call.log.at;
        let requests = vec![call.log];
        let grant = match call.result {
            Err(mut e) => {
                e.profile = target.name.clone();
                return fail(e.failure(Op::Sudo, Utc::now()), requests);
            }
            Ok(grant) => grant,
        };
        let mut session = match session_from(grant, &target, at) {
            Ok(s) => s,
            Err(f) => return fail(f.with_op(Op::Sudo), requests),
        };
        session.refresh_token = None;
        session.refresh_expires_at = None;
        let stored = self
            .persist(Change {
                key: key.clone(),
                label: target.name.clone(),
                expect: Expect::Held,
                apply: Box::new(move |e: &mut Entry| {
                    e.session = Some(session);
                    e.failure = None;
                }),
            })
            .await;
        drop(lock);
        match stored {
            Ok(Applied::Done(entry) | Applied::Lost(entry)) => {
                let now = Utc::now();
                let message = format!(
                    "{}: impersonating {user} through {}'s admin session; {}",
                    target.name,
                    p.name,
                    describe(&entry, now)
                );
                outcome(true, message, entry, requests, None)
            }
            Err(cache) => fail(
                Failure::local(
                    Op::Sudo,
                    Utc::now(),
                    format!("Sugar answered, but the session could not be stored: {cache}"),
                ),
                requests,
            ),
        }
    }
}
