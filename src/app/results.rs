//! What comes back: the outcomes of requests, and the token cache as read from disk.

use super::model::Model;
use super::row::{LastError, LastResult, RECENT, ResultKind, Row};
use crate::identity::ProfileId;
use crate::identity::SessionKey;
use crate::outcome::Outcome;
use crate::session::Cache;
use crate::session::{CheckReport, Entry, Op, RequestLog};
use std::collections::{HashMap, VecDeque};

impl Model {
    /// Applies a cache read from disk; entries older than what the screen has are ignored.
    /// Impersonations (`NAME>USER`) with a session get a row after their profile's; one whose
    /// session is gone (logged out, here or by another process) is no longer shown.
    /// Returns whether any row changed.
    pub fn apply_cache(&mut self, cache: &Cache) -> bool {
        let mut changed = false;
        // Impersonations: entries keyed by a profile's identity and a user.
        let mut parents: Option<HashMap<SessionKey, Vec<usize>>> = None;
        for (key, entry) in &cache.sessions {
            let Some(user) = key.sudo.as_deref().filter(|_| entry.session.is_some()) else {
                continue;
            };
            let parents = parents.get_or_insert_with(|| {
                let mut by_key: HashMap<SessionKey, Vec<usize>> = HashMap::new();
                for (i, row) in self.rows.iter().enumerate() {
                    if !row.is_sudo() {
                        by_key.entry(row.key.clone()).or_default().push(i);
                    }
                }
                by_key
            });
            for &p in parents.get(&key.without_sudo()).into_iter().flatten() {
                let name =
                    ProfileId::stored_impersonation(&self.rows[p].profile.name, user).to_string();
                if !self.by_name.contains_key(&name) {
                    self.sudo_row(p, user);
                    changed = true;
                }
            }
        }
        for i in 0..self.rows.len() {
            let Some(new) = cache.sessions.get(&self.rows[i].key) else {
                continue;
            };
            let old = &self.rows[i].entry;
            if **new != *old && newer(new, old) {
                let new = Entry::clone(new);
                self.change_row(i, false, |r| r.entry = new);
                changed = true;
            }
        }
        if changed {
            self.dirty = true;
            if self.sort.follows_rows() {
                self.reorder();
            }
        }
        changed
    }
}

/// What a finished request was, with what only that kind of request brings back.
pub(super) enum Answer {
    /// A login, refresh or logout.
    Session,
    /// A live check, with its report when the session is alive.
    Check(Option<CheckReport>),
    /// An impersonation through `parent`'s session; the outcome names `PARENT>USER`.
    Sudo { parent: String },
}

impl Answer {
    /// Added to the message when the user had cancelled the request before its answer came.
    fn cancelled_note(&self) -> &'static str {
        match self {
            Answer::Session => " (answer to a cancelled request, stored)",
            Answer::Check(_) => " (answer to a cancelled request)",
            Answer::Sudo { .. } => "",
        }
    }
}

/// A request finished: the row whose request it was records its requests and result; the
/// session the outcome reports goes to the row it is about (the same row, or for an
/// impersonation a row of its own); the status line says how it went.
pub(super) fn on_outcome(model: &mut Model, outcome: Outcome, answer: Answer) {
    // An impersonation is a request of its parent's.
    let owner = match &answer {
        Answer::Sudo { parent } => parent.as_str(),
        _ => outcome.name.as_str(),
    };
    let Some(&i) = model.by_name.get(owner) else {
        return;
    };
    // About the identity the profile had when the request was sent: the file was edited since
    // and the profile is another session now (its answer is in the cache, under its own key).
    let about = match &answer {
        Answer::Sudo { .. } => outcome.key.admin_session_is(&model.rows[i].key),
        _ => outcome.key == model.rows[i].key,
    };
    if !about {
        return;
    }
    let Outcome {
        name,
        op,
        ok,
        mut message,
        entry,
        requests,
        failure,
        ..
    } = outcome;
    let flight = model.rows[i].flight;
    let background = flight.is_some_and(|f| f.background);
    let detached = flight.is_some_and(|f| f.detached);
    let at = requests.last().map_or(model.clock, |r| r.at);
    let total = (!requests.is_empty()).then(|| requests.iter().map(|r| r.latency_ms).sum());
    let (op, latency_ms) = match &answer {
        // A refresh whose token Sugar rejected, saved by a new login, reports itself as a re-login.
        Answer::Session => (op, total),
        // The four requests of a check run at once: the check took as long as the slowest.
        Answer::Check(report) => (
            Op::Check,
            report
                .as_ref()
                .map(|r| r.latency_ms)
                .or_else(|| requests.iter().map(|r| r.latency_ms).max()),
        ),
        Answer::Sudo { .. } => (Op::Sudo, total),
    };
    // A check that finds the session ended by Sugar says so.
    let superseded = matches!(answer, Answer::Check(_))
        && entry.failure.as_ref().is_some_and(|f| f.superseded());
    let summary = match &failure {
        _ if ok => "ok".to_string(),
        _ if superseded => "superseded".to_string(),
        Some(f) => f.short(),
        None => "failed".to_string(),
    };
    let user = name
        .split_once('>')
        .map_or_else(String::new, |(_, u)| u.to_string());
    let last_error = (!ok).then(|| {
        let (text, hint) = match &failure {
            // A failed impersonation (403: not an admin, 404: no such user) shows on the parent,
            // since no impersonation came of it.
            Some(f) if matches!(answer, Answer::Sudo { .. }) => (
                format!("sudo as {user} failed: {}", f.what()),
                f.hint.clone(),
            ),
            Some(f) => (f.headline(), f.hint.clone()),
            None => (strip_name(&message, &name).to_string(), None),
        };
        LastError {
            at,
            // A login, refresh or logout names the step that failed.
            op: match (&answer, &failure) {
                (Answer::Session, Some(f)) => f.op,
                _ => op,
            },
            text,
            hint,
        }
    });
    // What the failure says in words, beyond its summary, and what to do about it.
    let (detail, hint) = match &failure {
        _ if ok => (None, None),
        Some(f) => (Some(f.message.clone()), f.hint.clone()),
        None => (Some(strip_name(&message, &name).to_string()), None),
    };
    let detail = detail.filter(|d| !d.is_empty() && *d != summary);
    let last = LastResult {
        op,
        kind: if ok {
            ResultKind::Ok
        } else {
            ResultKind::Failed
        },
        at,
        latency_ms,
        summary,
        message: detail,
        hint,
    };
    let warning = match &answer {
        Answer::Check(Some(report)) => report.skew_warning(),
        _ => None,
    };
    if detached {
        message.push_str(answer.cancelled_note());
    }
    match answer {
        Answer::Sudo { .. } => {
            model.change_row(i, true, |r| {
                settle(r, requests.clone(), last.clone(), last_error)
            });
            if ok {
                let s = model.sudo_row(i, &user);
                model.change_row(s, true, |r| {
                    r.recent.clear();
                    settle(r, requests, last, None);
                    r.entry = entry;
                    r.unverified = false;
                    r.check = None;
                });
            }
        }
        answer => model.change_row(i, true, |r| {
            settle(r, requests, last, last_error);
            // The server answered about this session: it is no longer merely cached.
            r.unverified = false;
            // The entry as stored (or, when it could not be stored, as it now stands with the
            // failure saying why; or as a check found or marked it), unless the screen already
            // has a newer one.
            let replaces = match answer {
                Answer::Check(_) => newer(&entry, &r.entry),
                _ => entry.generation >= r.entry.generation,
            };
            if replaces {
                r.entry = entry;
            }
            if let Answer::Check(report) = answer
                && (report.is_some() || superseded)
            {
                r.check = report;
            }
        }),
    }
    if background {
        verified(model, ok, warning.is_some(), message);
    } else if ok && warning.is_none() {
        model.say(message);
    } else {
        model.warn(message);
    }
}

/// The request is answered: nothing in flight, its requests remembered, its result recorded.
fn settle(r: &mut Row, requests: Vec<RequestLog>, last: LastResult, last_error: Option<LastError>) {
    r.flight = None;
    remember(&mut r.recent, requests);
    r.last = Some(last);
    r.last_error = last_error;
}

/// One of the checks of cached sessions at start came back: failures and warnings are worth a
/// line, and so is the end of the batch; a session that is fine is not.
fn verified(model: &mut Model, ok: bool, skew_warning: bool, message: String) {
    model.verifying = model.verifying.saturating_sub(1);
    model.verify_failed += usize::from(!ok);
    model.verify_skewed += usize::from(skew_warning);
    if !ok || skew_warning {
        model.warn(message);
    }
    if model.verifying == 0 {
        let failed = std::mem::take(&mut model.verify_failed);
        let skewed = std::mem::take(&mut model.verify_skewed);
        let mut skew = match skewed {
            0 => String::new(),
            n => format!("; {n} with the server's clock off by over a minute"),
        };
        match std::mem::take(&mut model.verify_withdrawn) {
            0 => {}
            n => skew.push_str(&format!("; {n} withdrawn, still unverified (v checks)")),
        }
        if failed > 0 {
            model.warn(format!(
                "checked the cached sessions: {failed} not accepted by the server (see the rows){skew}"
            ));
        } else if skewed > 0 {
            model.warn(format!("checked the cached sessions: all alive{skew}"));
        } else {
            model.say(format!("checked the cached sessions: all alive{skew}"));
        }
    }
}

/// An entry read from the cache (or reported by a request) is newer than the screen's: a later
/// generation, or the same one written later (a cache that was reset starts counting again).
fn newer(new: &Entry, old: &Entry) -> bool {
    new.generation > old.generation
        || (new.generation == old.generation && new.updated_at >= old.updated_at)
}

/// `message` without the `NAME: ` it starts with.
fn strip_name<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .strip_prefix(name)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(message)
}

/// Adds requests to a row's recent ones, keeping at most [`RECENT`].
fn remember(recent: &mut VecDeque<RequestLog>, requests: Vec<RequestLog>) {
    for req in requests {
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(req);
    }
}
