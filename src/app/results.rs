//! What comes back: the outcomes of requests, and the token cache as read from disk.

use super::model::Model;
use super::order::Sort;
use super::row::{LastError, LastResult, RECENT, ResultKind};
use crate::engine::Outcome;
use crate::identity::SessionKey;
use crate::session::{CheckReport, Entry, Op, RequestLog};
use crate::store::Cache;
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
                let name = crate::engine::sudo_name(&self.rows[p].profile.name, user);
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
            if new != old && newer(new, old) {
                let new = new.clone();
                self.change_row(i, false, |r| r.entry = new);
                changed = true;
            }
        }
        if changed {
            self.dirty = true;
            if matches!(self.sort, Sort::State | Sort::TokenLeft) {
                self.reorder();
            }
        }
        changed
    }
}

pub(super) fn on_done(model: &mut Model, outcome: Outcome) {
    let Some(&i) = model.by_name.get(&outcome.name) else {
        return;
    };
    let at = outcome.requests.last().map_or(model.clock, |r| r.at);
    let latency_ms =
        (!outcome.requests.is_empty()).then(|| outcome.requests.iter().map(|r| r.latency_ms).sum());
    let summary = match (&outcome.failure, outcome.ok) {
        (_, true) => "ok".to_string(),
        (Some(f), false) => f.short(),
        (None, false) => "failed".to_string(),
    };
    let last_error = (!outcome.ok).then(|| match &outcome.failure {
        Some(f) => LastError {
            at,
            op: f.op,
            text: f.headline(),
            hint: f.hint.clone(),
        },
        None => LastError {
            at,
            op: outcome.op,
            text: strip_name(&outcome.message, &outcome.name).to_string(),
            hint: None,
        },
    });
    let flight = model.rows[i].flight;
    let detached = flight.is_some_and(|f| f.detached);
    // A refresh whose token Sugar rejected, saved by a new login, reports itself as a re-login.
    let op = outcome.op;
    let ok = outcome.ok;
    let message = outcome.message.clone();
    model.change_row(i, true, |r| {
        r.flight = None;
        // The server answered about this session: it is no longer merely cached.
        r.unverified = false;
        // The entry as stored (or, when it could not be stored, as it now stands with the
        // failure saying why), unless the screen already has a newer one.
        if outcome.entry.generation >= r.entry.generation {
            r.entry = outcome.entry;
        }
        for req in outcome.requests {
            if r.recent.len() == RECENT {
                r.recent.pop_front();
            }
            r.recent.push_back(req);
        }
        r.last = Some(LastResult {
            op,
            kind: if ok {
                ResultKind::Ok
            } else {
                ResultKind::Failed
            },
            at,
            latency_ms,
            summary,
        });
        if ok {
            r.last_error = None;
        } else {
            r.last_error = last_error;
        }
    });
    let message = if detached {
        format!("{message} (answer to a cancelled request, stored)")
    } else {
        message
    };
    if ok {
        model.say(message)
    } else {
        model.warn(message)
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

pub(super) fn on_checked(model: &mut Model, outcome: Outcome, report: Option<CheckReport>) {
    let Some(&i) = model.by_name.get(&outcome.name) else {
        return;
    };
    let flight = model.rows[i].flight;
    let background = flight.is_some_and(|f| f.background);
    let detached = flight.is_some_and(|f| f.detached);
    let at = outcome.requests.last().map_or(model.clock, |r| r.at);
    // The four requests run at once: the check took as long as the slowest.
    let latency_ms = report
        .as_ref()
        .map(|r| r.latency_ms)
        .or_else(|| outcome.requests.iter().map(|r| r.latency_ms).max());
    let superseded = outcome
        .entry
        .failure
        .as_ref()
        .is_some_and(|f| f.superseded());
    let summary = match (&outcome.failure, outcome.ok) {
        (_, true) => "ok".to_string(),
        (_, false) if superseded => "superseded".to_string(),
        (Some(f), false) => f.short(),
        (None, false) => "failed".to_string(),
    };
    let last_error = (!outcome.ok).then(|| {
        let (text, hint) = match &outcome.failure {
            Some(f) => (f.headline(), f.hint.clone()),
            None => (
                strip_name(&outcome.message, &outcome.name).to_string(),
                None,
            ),
        };
        LastError {
            at,
            op: Op::Check,
            text,
            hint,
        }
    });
    let ok = outcome.ok;
    let warning = report.as_ref().and_then(|r| r.skew_warning());
    let entry = outcome.entry;
    let requests = outcome.requests;
    model.change_row(i, true, |r| {
        r.flight = None;
        r.unverified = false;
        // The entry as the check found it (or as it marked it): newer than the screen's only.
        if newer(&entry, &r.entry) {
            r.entry = entry;
        }
        remember(&mut r.recent, requests);
        if report.is_some() || superseded {
            r.check = report;
        }
        r.last = Some(LastResult {
            op: Op::Check,
            kind: if ok {
                ResultKind::Ok
            } else {
                ResultKind::Failed
            },
            at,
            latency_ms,
            summary,
        });
        r.last_error = last_error;
    });
    let mut message = outcome.message;
    if detached {
        message.push_str(" (answer to a cancelled request)");
    }
    if background {
        // Checks of cached sessions at start: failures and warnings are worth a line, and so
        // is the end of the batch; a session that is fine is not.
        model.verifying = model.verifying.saturating_sub(1);
        model.verify_failed += usize::from(!ok);
        model.verify_skewed += usize::from(warning.is_some());
        if !ok || warning.is_some() {
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
    } else if ok && warning.is_none() {
        model.say(message);
    } else {
        model.warn(message);
    }
}

pub(super) fn on_impersonated(model: &mut Model, parent: &str, outcome: Outcome) {
    let Some(&p) = model.by_name.get(parent) else {
        return;
    };
    let user = outcome
        .name
        .split_once('>')
        .map_or_else(String::new, |(_, u)| u.to_string());
    let at = outcome.requests.last().map_or(model.clock, |r| r.at);
    let latency_ms =
        (!outcome.requests.is_empty()).then(|| outcome.requests.iter().map(|r| r.latency_ms).sum());
    let ok = outcome.ok;
    let summary = match &outcome.failure {
        _ if ok => "ok".to_string(),
        Some(f) => f.short(),
        None => "failed".to_string(),
    };
    let last = LastResult {
        op: Op::Sudo,
        kind: if ok {
            ResultKind::Ok
        } else {
            ResultKind::Failed
        },
        at,
        latency_ms,
        summary,
    };
    // The request was the parent's: it shows there, and so does a failure (403: not an admin,
    // 404: no such user), since no impersonation came of it.
    let last_error = (!ok).then(|| {
        let (text, hint) = match &outcome.failure {
            Some(f) => (
                format!("sudo as {user} failed: {}", f.what()),
                f.hint.clone(),
            ),
            None => (
                strip_name(&outcome.message, &outcome.name).to_string(),
                None,
            ),
        };
        LastError {
            at,
            op: Op::Sudo,
            text,
            hint,
        }
    });
    let requests = outcome.requests.clone();
    let parent_last = last.clone();
    model.change_row(p, true, |r| {
        r.flight = None;
        remember(&mut r.recent, requests);
        r.last = Some(parent_last);
        if ok {
            r.last_error = None;
        } else {
            r.last_error = last_error;
        }
    });
    if !ok {
        model.warn(outcome.message);
        return;
    }
    let i = model.sudo_row(p, &user);
    let entry = outcome.entry;
    model.change_row(i, true, |r| {
        r.entry = entry;
        r.flight = None;
        r.unverified = false;
        r.check = None;
        r.last = Some(last);
        r.last_error = None;
        r.recent.clear();
        remember(&mut r.recent, outcome.requests);
    });
    model.say(outcome.message);
}
