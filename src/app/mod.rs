//! The screen's state machine: [`Model`], [`Msg`], [`Command`] and [`update`].
//!
//! Pure: no I/O, no clock reads, no tokio. Every function that depends on time takes `now`; the
//! runtime (`tui`) feeds key presses, task results and a 1 s tick in, and carries the returned
//! [`Command`]s out. Drawing (`ui::view`) only reads the Model.
//!
//! Scale: the Model keeps the visible order (filter + sort) cached and changes it only when
//! something that affects it changes: a keystroke in the filter narrows the previous result, a
//! result that moves one row under a time-left or state sort repositions that row alone, and time
//! based state changes (active → expiring → expired) are found from the next instant at which any
//! row changes, not by scanning every row on every tick.

mod columns;
mod copy;
mod input;
mod keys;
mod model;
mod order;
mod reload;
mod requests;
mod results;
mod row;

pub use columns::{Column, DROP_ORDER, columns};
pub use copy::{Clipboard, MAX_ENCODED, shell_quote};
pub use input::{Prompt, UserPrompt};
pub use keys::{
    Action, Binding, CONFIRM_KEYS, FILTER_KEYS, HELP_KEYS, NORMAL_KEYS, PASSWORD_KEYS, USER_KEYS,
};
pub use model::{FieldWidths, Layout, Model, Options, Source, Status, Zone};
pub use order::Sort;
pub use requests::Confirm;
pub use row::{EXPIRING, Flight, LastError, LastResult, Phase, RECENT, ResultKind, Row, RowState};

use crate::config::Profile;
use crate::outcome::Outcome;
use crate::secret::Secret;
use crate::session::Cache;
use crate::session::{CheckReport, Op};
use chrono::{DateTime, Utc};
use crossterm::event::{KeyEvent, KeyEventKind};
use input::on_paste;
use keys::on_key;
use requests::verify;
use results::{Answer, on_outcome};
use std::sync::Arc;

/// Everything that can happen to the screen.
#[derive(Debug)]
pub enum Msg {
    /// A key press (key releases are filtered out by the runtime; they are ignored here too).
    Key(KeyEvent),
    /// Bracketed paste: text for the filter or the password prompt.
    Paste(String),
    /// The 1 s tick. The time is `update`'s `now`.
    Tick,
    /// The terminal's size, at start and after every change.
    Resize { width: u16, height: u16 },
    /// A queued request got its place under the concurrency bounds and is being sent.
    Started { name: String },
    /// A request finished; its result is already in the token cache.
    Done(Box<Outcome>),
    /// A live check finished (the report when the session is alive). A session Sugar no longer
    /// accepts is already marked so in the cache.
    Checked {
        outcome: Box<Outcome>,
        report: Option<CheckReport>,
    },
    /// An impersonation through `parent`'s session finished; `outcome.name` is `PARENT>USER`, and
    /// its session, when it worked, is already in the cache.
    Impersonated {
        parent: String,
        outcome: Box<Outcome>,
    },
    /// The screen is up: check the cached active sessions in the background (they show as
    /// unverified until their check returns).
    Verify,
    /// A queued request was withdrawn before it was sent.
    Withdrawn { name: String },
    /// The token cache as read from disk (another process may have changed it).
    CacheReloaded(Arc<Cache>),
    /// The profiles file changed, and reads well: its profiles, and the token cache as it is.
    ProfilesReloaded {
        profiles: Box<crate::config::Profiles>,
        cache: Arc<Cache>,
    },
    /// The profiles file changed into one that cannot be used: the located error.
    ProfilesBroken(String),
    /// Something the user should read in the status line (a cache moved aside, ...).
    Notice(String),
    /// SIGTERM, SIGHUP or a vanished terminal: quit.
    Shutdown { reason: String },
}

/// What the runtime should do. Each request carries the profile it is for, resolved (an
/// impersonation's profile included): the runtime never looks a name up again.
#[derive(Debug)]
pub enum Command {
    /// Queue a request for the profile. `password` is set for logins of profiles without a
    /// non-interactive password source (typed into the prompt).
    Start {
        name: String,
        profile: Arc<Profile>,
        op: Op,
        password: Option<Secret>,
        /// An automatic refresh, started because it was due: the runtime skips it if another
        /// process refreshed the session first.
        due: bool,
    },
    /// Queue a live check of the profile's session (`GET /ping`, `/me`, server info, server time).
    Check { name: String, profile: Arc<Profile> },
    /// Queue an impersonation: with `name`'s (admin) session, a session as `user`, stored as
    /// `NAME>USER`. The request is `name`'s request in flight.
    Sudo {
        name: String,
        profile: Arc<Profile>,
        user: String,
    },
    /// Withdraw the profile's request if it is still queued (one already sent is left to finish).
    Cancel { name: String },
    /// Put `text` on the clipboard: the runtime writes it to the terminal in an OSC 52 sequence
    /// (the only way a token reaches the terminal).
    Copy { text: Secret },
    /// Leave the screen (after waiting briefly for requests in flight).
    Quit,
    /// Step aside for job control, as Ctrl-Z does in a shell: give the terminal back and stop the
    /// process until it is continued (`fg`), then draw the screen anew.
    Suspend,
}

/// Applies a message at time `now`; returns what the runtime should do.
pub fn update(model: &mut Model, msg: Msg, now: DateTime<Utc>) -> Vec<Command> {
    match msg {
        Msg::Tick => {
            let before = model.countdowns(model.clock);
            let mut cmds = Vec::new();
            let states_changed = model.advance(now, &mut cmds);
            if states_changed || model.countdowns(now) != before {
                model.dirty = true;
            }
            cmds
        }
        msg => {
            let was_dirty = model.dirty;
            let mut auto = Vec::new();
            let states_changed = model.advance(now, &mut auto);
            model.noop = false;
            let cmds = match msg {
                Msg::Key(key) if key.kind != KeyEventKind::Release => on_key(model, key),
                Msg::Key(_) | Msg::Tick => {
                    model.noop = true;
                    Vec::new()
                }
                Msg::Paste(text) => {
                    on_paste(model, text);
                    Vec::new()
                }
                Msg::Resize { width, height } => {
                    model.size = (width, height);
                    model.scroll_to_cursor();
                    Vec::new()
                }
                Msg::Started { name } => {
                    if let Some(&i) = model.by_name.get(&name) {
                        model.change_row(i, true, |r| {
                            if let Some(f) = &mut r.flight {
                                f.phase = Phase::Sent;
                            }
                        });
                    }
                    Vec::new()
                }
                Msg::Done(outcome) => {
                    on_outcome(model, *outcome, Answer::Session);
                    Vec::new()
                }
                Msg::Checked { outcome, report } => {
                    on_outcome(model, *outcome, Answer::Check(report));
                    Vec::new()
                }
                Msg::Impersonated { parent, outcome } => {
                    on_outcome(model, *outcome, Answer::Sudo { parent });
                    Vec::new()
                }
                Msg::Verify => verify(model),
                Msg::Withdrawn { name } => {
                    let found = model
                        .by_name
                        .get(&name)
                        .and_then(|&i| model.rows[i].flight.map(|f| (i, f)));
                    match found {
                        Some((i, flight)) => {
                            let at = model.clock;
                            if flight.background {
                                model.verifying = model.verifying.saturating_sub(1);
                                model.verify_withdrawn += 1;
                            }
                            model.change_row(i, true, |r| {
                                r.flight = None;
                                r.last = Some(LastResult {
                                    op: flight.op,
                                    kind: ResultKind::Withdrawn,
                                    at,
                                    latency_ms: None,
                                    summary: "withdrawn".into(),
                                    message: None,
                                    hint: None,
                                });
                            });
                            model.say(format!(
                                "{name}: {} withdrawn before it was sent",
                                flight.op
                            ));
                        }
                        None => model.noop = true,
                    }
                    Vec::new()
                }
                Msg::CacheReloaded(cache) => {
                    model.noop = !model.apply_cache(&cache);
                    Vec::new()
                }
                Msg::ProfilesReloaded { profiles, cache } => {
                    model.apply_profiles(&profiles, &cache)
                }
                Msg::ProfilesBroken(error) => {
                    model.profiles_broken(error);
                    Vec::new()
                }
                Msg::Notice(text) => {
                    model.warn(text);
                    Vec::new()
                }
                Msg::Shutdown { reason } => quit(model, &reason),
            };
            model.dirty = was_dirty || states_changed || !std::mem::take(&mut model.noop);
            auto.extend(cmds);
            auto
        }
    }
}

fn quit(model: &mut Model, reason: &str) -> Vec<Command> {
    model.quitting = true;
    let (sent, queued) = model.in_flight();
    if sent + queued > 0 {
        model.say(format!(
            "{reason}: waiting up to 2 s for {} request(s) in flight",
            sent + queued
        ));
    } else {
        model.say(reason.to_string());
    }
    vec![Command::Quit]
}
