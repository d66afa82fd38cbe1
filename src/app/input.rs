//! Text typed into the screen: the filter line, the password prompt and the prompt for the user
//! to impersonate.

use super::Command;
use super::keys::Action;
use super::model::{Mode, Model};
use crate::secret::Secret;
use crate::session::Op;
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// Text typed into the password prompt: zeroized when dropped, never printed.
#[derive(Default)]
pub(super) struct Typed(pub(super) Zeroizing<String>);

impl fmt::Debug for Typed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Typed(<{} chars>)", self.0.chars().count())
    }
}

/// What the password prompt shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    pub name: String,
    pub username: String,
    pub instance: String,
    /// Characters typed so far (shown masked).
    pub len: usize,
    /// Profiles waiting for a password after this one.
    pub waiting: usize,
}

/// What the prompt for the user to impersonate shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPrompt {
    /// The profile whose (admin) session is used.
    pub name: String,
    /// Its user.
    pub username: String,
    pub instance: String,
    /// The user name typed so far.
    pub text: String,
}

impl Model {
    /// The password prompt, when one is open. Never the password.
    pub fn prompt(&self) -> Option<Prompt> {
        let Mode::Password(typed) = &self.mode else {
            return None;
        };
        let row = &self.rows[*self.prompts.front()?];
        Some(Prompt {
            name: row.profile.name.clone(),
            username: row.profile.username.clone(),
            instance: row.instance.clone(),
            len: typed.0.chars().count(),
            waiting: self.prompts.len() - 1,
        })
    }
    /// The prompt for the user to impersonate, when it is open.
    pub fn user_prompt(&self) -> Option<UserPrompt> {
        let Mode::User { row, text } = &self.mode else {
            return None;
        };
        let r = &self.rows[*row];
        Some(UserPrompt {
            name: r.profile.name.clone(),
            username: r.profile.username.clone(),
            instance: r.instance.clone(),
            text: text.clone(),
        })
    }
}

pub(super) fn on_paste(model: &mut Model, mut text: String) {
    let mut clean = crate::text::strip_controls(&text);
    text.zeroize();
    match &mut model.mode {
        Mode::Password(typed) => typed.0.push_str(&clean),
        Mode::User { text: typed, .. } => typed.push_str(&clean),
        Mode::Filter => {
            model.filter.push_str(&clean);
            model.reorder();
        }
        _ => model.noop = true,
    }
    clean.zeroize();
}

pub(super) fn filter_action(model: &mut Model, action: Action) {
    match action {
        Action::KeepFilter => {
            model.mode = Mode::Normal;
            if !model.filter.is_empty() {
                model.say(format!(
                    "filter \"{}\": {} of {} shown",
                    model.filter,
                    model.visible.len(),
                    model.rows.len()
                ));
            }
        }
        Action::ClearFilter => {
            model.mode = Mode::Normal;
            model.filter.clear();
            model.reorder();
        }
        Action::DeleteChar if model.filter.pop().is_some() => model.widen(),
        _ => {}
    }
}

pub(super) fn password_action(model: &mut Model, action: Action) -> Vec<Command> {
    let Mode::Password(typed) = &mut model.mode else {
        return Vec::new();
    };
    match action {
        Action::DeleteChar => {
            typed.0.pop();
            Vec::new()
        }
        Action::SendPassword => {
            if typed.0.is_empty() {
                model.warn("type the password, or Esc to skip this profile");
                return Vec::new();
            }
            // Move the text into the command: the Model keeps no copy.
            let password = Secret::new(std::mem::take(&mut *typed.0));
            let i = model.prompts.pop_front().expect("a prompt is open");
            let mut cmds = Vec::new();
            if model.rows[i].busy() {
                model.warn(format!(
                    "{}: a request is already in flight",
                    model.rows[i].name()
                ));
            } else {
                cmds.push(model.start(i, Op::Login, Some(password), true));
            }
            next_prompt(model);
            cmds
        }
        Action::SkipPassword => {
            let i = model.prompts.pop_front().expect("a prompt is open");
            model.say(format!("{}: login skipped", model.rows[i].name()));
            next_prompt(model);
            Vec::new()
        }
        _ => Vec::new(),
    }
}

pub(super) fn user_action(model: &mut Model, action: Action) -> Vec<Command> {
    let Mode::User { row, text } = &mut model.mode else {
        return Vec::new();
    };
    let i = *row;
    match action {
        Action::DeleteChar => {
            text.pop();
            Vec::new()
        }
        Action::CancelUser => {
            model.mode = Mode::Normal;
            model.say("impersonation cancelled: nothing was sent");
            Vec::new()
        }
        Action::SendUser => {
            let user = text.trim().to_string();
            if user.is_empty() {
                model.warn("type the user name to impersonate, or Esc");
                return Vec::new();
            }
            if !crate::identity::is_valid_user_name(&user) {
                model.warn(format!("not a user name: {user:?}"));
                return Vec::new();
            }
            model.mode = Mode::Normal;
            // The session may have changed while the name was typed.
            if let Some(why) = model.sudo_refusal(i) {
                model.warn(why);
                return Vec::new();
            }
            model.begin(i, Op::Sudo, false, true);
            let name = model.rows[i].profile.name.clone();
            model.say(format!("{name}: impersonating {user}: queued"));
            let profile = model.rows[i].profile.clone();
            vec![Command::Sudo {
                name,
                profile,
                user,
            }]
        }
        _ => Vec::new(),
    }
}

fn next_prompt(model: &mut Model) {
    model.mode = if model.prompts.is_empty() {
        Mode::Normal
    } else {
        Mode::Password(Typed::default())
    };
}
