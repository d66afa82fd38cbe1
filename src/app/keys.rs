//! Keys: one table per mode, used both to handle keys and to build the footer and the help;
//! what a key does in each mode.

use super::copy::{Clipboard, CopyKind, copy};
use super::input::{filter_action, password_action, user_action};
use super::model::{Mode, Model};
use super::requests::{act, cancel, check};
use super::{Command, quit};
use crate::session::Op;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    Login,
    Refresh,
    Logout,
    /// A live check of the session.
    Check,
    /// Open the prompt for the user to impersonate.
    Impersonate,
    /// Copy the access token to the clipboard (OSC 52).
    CopyToken,
    /// Copy `export SUGAR_URL=... SUGAR_TOKEN=...` to the clipboard (OSC 52).
    CopyExport,
    Cancel,
    ToggleSelect,
    SelectAll,
    Filter,
    Details,
    Sort,
    Reverse,
    Escape,
    Help,
    Quit,
    /// Ctrl-Z: stop until continued (`fg`), as in a shell.
    Suspend,
    /// Filter mode: keep the filter.
    KeepFilter,
    /// Filter mode: clear the filter.
    ClearFilter,
    /// Filter and password modes: delete the last character.
    DeleteChar,
    /// Confirm dialog.
    Yes,
    No,
    /// Password prompt: send the login.
    SendPassword,
    /// Password prompt: skip this profile.
    SkipPassword,
    /// Help: close it.
    CloseHelp,
    /// User prompt: impersonate the user typed.
    SendUser,
    /// User prompt: close it without sending anything.
    CancelUser,
}

/// One key binding.
#[derive(Clone, Copy, Debug)]
pub struct Binding {
    pub keys: &'static [KeyCode],
    /// The key is pressed with Ctrl.
    pub ctrl: bool,
    /// How the keys are written in the footer and the help (UTF-8, ASCII).
    pub label: &'static str,
    pub ascii_label: &'static str,
    pub desc: &'static str,
    pub action: Action,
    /// Shown in the footer (when it applies); every binding is in the help.
    pub footer: bool,
}

const fn bind(
    keys: &'static [KeyCode],
    label: &'static str,
    ascii_label: &'static str,
    desc: &'static str,
    action: Action,
    footer: bool,
) -> Binding {
    Binding {
        keys,
        ctrl: false,
        label,
        ascii_label,
        desc,
        action,
        footer,
    }
}

const CTRL_C: Binding = Binding {
    keys: &[KeyCode::Char('c')],
    ctrl: true,
    label: "Ctrl-C",
    ascii_label: "Ctrl-C",
    desc: "quit",
    action: Action::Quit,
    footer: false,
};

/// Ctrl-\\ (SIGQUIT's key, a byte in raw mode): crossterm reads byte 0x1C as Ctrl-4, and a
/// terminal with the kitty keyboard protocol sends Ctrl-\\.
const CTRL_BACKSLASH: Binding = Binding {
    keys: &[KeyCode::Char('\\'), KeyCode::Char('4')],
    ctrl: true,
    label: "Ctrl-\\",
    ascii_label: "Ctrl-\\",
    desc: "quit",
    action: Action::Quit,
    footer: false,
};

/// Ctrl-Z (SIGTSTP's key, a byte in raw mode).
const CTRL_Z: Binding = Binding {
    keys: &[KeyCode::Char('z')],
    ctrl: true,
    label: "Ctrl-Z",
    ascii_label: "Ctrl-Z",
    desc: "suspend (fg resumes)",
    action: Action::Suspend,
    footer: false,
};

/// The main table.
pub const NORMAL_KEYS: &[Binding] = &[
    CTRL_C,
    CTRL_BACKSLASH,
    CTRL_Z,
    bind(
        &[KeyCode::Char('l')],
        "l",
        "l",
        "log in",
        Action::Login,
        true,
    ),
    bind(
        &[KeyCode::Char('r')],
        "r",
        "r",
        "refresh",
        Action::Refresh,
        true,
    ),
    bind(
        &[KeyCode::Char('o')],
        "o",
        "o",
        "log out",
        Action::Logout,
        true,
    ),
    bind(
        &[KeyCode::Char('v')],
        "v",
        "v",
        "check",
        Action::Check,
        true,
    ),
    bind(
        &[KeyCode::Char('u')],
        "u",
        "u",
        "impersonate",
        Action::Impersonate,
        true,
    ),
    bind(
        &[KeyCode::Char('y')],
        "y",
        "y",
        "copy token",
        Action::CopyToken,
        true,
    ),
    bind(
        &[KeyCode::Char('e')],
        "e",
        "e",
        "copy export line",
        Action::CopyExport,
        false,
    ),
    bind(
        &[KeyCode::Char('c')],
        "c",
        "c",
        "cancel",
        Action::Cancel,
        true,
    ),
    bind(
        &[KeyCode::Char(' ')],
        "space",
        "space",
        "select",
        Action::ToggleSelect,
        true,
    ),
    bind(
        &[KeyCode::Char('a')],
        "a",
        "a",
        "select all shown",
        Action::SelectAll,
        false,
    ),
    bind(
        &[KeyCode::Char('/')],
        "/",
        "/",
        "filter",
        Action::Filter,
        true,
    ),
    bind(
        &[KeyCode::Enter],
        "⏎",
        "Enter",
        "details",
        Action::Details,
        true,
    ),
    bind(
        &[KeyCode::Char('s')],
        "s",
        "s",
        "sort by next column",
        Action::Sort,
        true,
    ),
    bind(
        &[KeyCode::Char('S')],
        "S",
        "S",
        "reverse sort",
        Action::Reverse,
        false,
    ),
    bind(
        &[KeyCode::Esc],
        "Esc",
        "Esc",
        "close details/clear filter/selection",
        Action::Escape,
        true,
    ),
    bind(
        &[KeyCode::Up, KeyCode::Char('k')],
        "↑/k",
        "Up/k",
        "up",
        Action::Up,
        false,
    ),
    bind(
        &[KeyCode::Down, KeyCode::Char('j')],
        "↓/j",
        "Down/j",
        "down",
        Action::Down,
        false,
    ),
    bind(
        &[KeyCode::PageUp],
        "PgUp",
        "PgUp",
        "page up",
        Action::PageUp,
        false,
    ),
    bind(
        &[KeyCode::PageDown],
        "PgDn",
        "PgDn",
        "page down",
        Action::PageDown,
        false,
    ),
    bind(
        &[KeyCode::Char('g'), KeyCode::Home],
        "g",
        "g",
        "first",
        Action::First,
        false,
    ),
    bind(
        &[KeyCode::Char('G'), KeyCode::End],
        "G",
        "G",
        "last",
        Action::Last,
        false,
    ),
    bind(&[KeyCode::Char('?')], "?", "?", "help", Action::Help, true),
    bind(&[KeyCode::Char('q')], "q", "q", "quit", Action::Quit, true),
];

/// While the filter is typed (every other printable key is text).
pub const FILTER_KEYS: &[Binding] = &[
    CTRL_C,
    CTRL_BACKSLASH,
    CTRL_Z,
    bind(
        &[KeyCode::Enter],
        "⏎",
        "Enter",
        "keep filter",
        Action::KeepFilter,
        true,
    ),
    bind(
        &[KeyCode::Esc],
        "Esc",
        "Esc",
        "clear filter",
        Action::ClearFilter,
        true,
    ),
    bind(
        &[KeyCode::Backspace],
        "⌫",
        "Backspace",
        "delete",
        Action::DeleteChar,
        true,
    ),
];

/// A confirmation.
pub const CONFIRM_KEYS: &[Binding] = &[
    CTRL_C,
    CTRL_BACKSLASH,
    CTRL_Z,
    bind(
        &[KeyCode::Char('y'), KeyCode::Char('Y'), KeyCode::Enter],
        "y/⏎",
        "y/Enter",
        "yes",
        Action::Yes,
        true,
    ),
    bind(
        &[KeyCode::Char('n'), KeyCode::Char('N'), KeyCode::Esc],
        "n/Esc",
        "n/Esc",
        "no",
        Action::No,
        true,
    ),
];

/// The password prompt (every other printable key is text).
pub const PASSWORD_KEYS: &[Binding] = &[
    CTRL_C,
    CTRL_BACKSLASH,
    CTRL_Z,
    bind(
        &[KeyCode::Enter],
        "⏎",
        "Enter",
        "log in",
        Action::SendPassword,
        true,
    ),
    bind(
        &[KeyCode::Esc],
        "Esc",
        "Esc",
        "skip this profile",
        Action::SkipPassword,
        true,
    ),
    bind(
        &[KeyCode::Backspace],
        "⌫",
        "Backspace",
        "delete",
        Action::DeleteChar,
        false,
    ),
];

/// The prompt for the user to impersonate (every other printable key is text).
pub const USER_KEYS: &[Binding] = &[
    CTRL_C,
    CTRL_BACKSLASH,
    CTRL_Z,
    bind(
        &[KeyCode::Enter],
        "⏎",
        "Enter",
        "impersonate",
        Action::SendUser,
        true,
    ),
    bind(
        &[KeyCode::Esc],
        "Esc",
        "Esc",
        "cancel",
        Action::CancelUser,
        true,
    ),
    bind(
        &[KeyCode::Backspace],
        "⌫",
        "Backspace",
        "delete",
        Action::DeleteChar,
        false,
    ),
];

/// The help overlay.
pub const HELP_KEYS: &[Binding] = &[
    CTRL_C,
    CTRL_BACKSLASH,
    CTRL_Z,
    bind(
        &[KeyCode::Esc, KeyCode::Char('?'), KeyCode::Char('q')],
        "Esc/?/q",
        "Esc/?/q",
        "close help",
        Action::CloseHelp,
        true,
    ),
];

impl Binding {
    pub fn matches(&self, key: &KeyEvent) -> bool {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        ctrl == self.ctrl && !alt && self.keys.contains(&key.code)
    }

    pub fn label(&self, ascii: bool) -> &'static str {
        if ascii { self.ascii_label } else { self.label }
    }
}

impl Model {
    /// The key table of the current mode.
    pub fn keys(&self) -> &'static [Binding] {
        match self.mode {
            Mode::Normal => NORMAL_KEYS,
            Mode::Filter => FILTER_KEYS,
            Mode::Help => HELP_KEYS,
            Mode::Confirm(_) => CONFIRM_KEYS,
            Mode::Password(_) => PASSWORD_KEYS,
            Mode::User { .. } => USER_KEYS,
        }
    }

    /// The footer: the bindings of the current mode that apply now.
    pub fn footer(&self) -> Vec<&'static Binding> {
        let targets = self.targets();
        self.keys()
            .iter()
            .filter(|b| b.footer && self.applies(b.action, &targets))
            .collect()
    }

    /// Why `action` is refused on a read-only screen, if it is: what changes a session (log in,
    /// refresh, log out, impersonate, and a check of many at once) or shows a token (the copies).
    /// What a read-only screen refuses of `action`, in words (`None`: allowed). Asked for every
    /// key hint of every frame: nothing is formatted here.
    pub(super) fn read_only_refusal(&self, action: Action) -> Option<&'static str> {
        if !self.options.read_only {
            return None;
        }
        Some(match action {
            Action::Login => "l (log in)",
            Action::Refresh => "r (refresh)",
            Action::Logout => "o (log out)",
            Action::Impersonate => "u (impersonate)",
            Action::CopyToken => "y (copy token)",
            Action::CopyExport => "e (copy export line)",
            Action::Check if self.selected_count > 0 => "a check of the selected profiles",
            _ => return None,
        })
    }

    fn applies(&self, action: Action, targets: &[usize]) -> bool {
        if self.read_only_refusal(action).is_some() {
            return false;
        }
        match action {
            Action::Login => targets
                .iter()
                .any(|&i| !self.rows[i].busy() && !self.rows[i].is_sudo()),
            Action::Refresh => targets.iter().any(|&i| self.refresh_refusal(i).is_none()),
            Action::Logout => targets
                .iter()
                .any(|&i| !self.rows[i].busy() && self.rows[i].entry.session.is_some()),
            Action::Check => targets.iter().any(|&i| self.check_refusal(i).is_none()),
            Action::Impersonate => self
                .visible
                .get(self.cursor)
                .is_some_and(|&i| self.sudo_refusal(i).is_none()),
            Action::CopyToken | Action::CopyExport => {
                self.options.clipboard == Clipboard::Osc52
                    && self
                        .visible
                        .get(self.cursor)
                        .is_some_and(|&i| self.copyable(i))
            }
            Action::Cancel => targets
                .iter()
                .any(|&i| self.rows[i].flight.is_some_and(|f| !f.detached)),
            Action::ToggleSelect | Action::SelectAll | Action::Details | Action::Sort => {
                !self.visible.is_empty()
            }
            Action::Escape => self.details || !self.filter.is_empty() || self.selected_count > 0,
            _ => true,
        }
    }
}

pub(super) fn on_key(model: &mut Model, key: KeyEvent) -> Vec<Command> {
    if model.quitting {
        return Vec::new();
    }
    let action = model
        .keys()
        .iter()
        .find(|b| b.matches(&key))
        .map(|b| b.action);
    let text = match key.code {
        KeyCode::Char(c)
            if !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
        {
            Some(c)
        }
        _ => None,
    };
    match (&mut model.mode, action, text) {
        (_, Some(Action::Quit), _) if key.modifiers.contains(KeyModifiers::CONTROL) => {
            quit(model, "quitting")
        }
        (_, Some(Action::Suspend), _) => vec![Command::Suspend],
        (Mode::Filter, Some(a), _) => {
            filter_action(model, a);
            Vec::new()
        }
        (Mode::Filter, None, Some(c)) => {
            let old = model.filter.to_lowercase();
            model.filter.push(c);
            let needle = model.filter.to_lowercase();
            let cursor_row = model.visible.get(model.cursor).copied();
            // Appending a character can only narrow the result.
            model.narrow(&old, &needle);
            model.follow(cursor_row);
            Vec::new()
        }
        (Mode::Password(_), Some(a), _) => password_action(model, a),
        (Mode::Password(typed), None, Some(c)) => {
            typed.0.push(c);
            Vec::new()
        }
        (Mode::User { .. }, Some(a), _) => user_action(model, a),
        (Mode::User { text, .. }, None, Some(c)) => {
            text.push(c);
            Vec::new()
        }
        (Mode::Confirm(_), Some(Action::Yes), _) => {
            let Mode::Confirm(confirm) = std::mem::replace(&mut model.mode, Mode::Normal) else {
                unreachable!()
            };
            if confirm.op == Op::Login {
                // Asked once per profile while the screen runs.
                for &i in &confirm.rows {
                    model.rows[i].guard_confirmed = true;
                }
            }
            act(model, confirm.op, confirm.rows, true)
        }
        (Mode::Confirm(_), Some(Action::No), _) => {
            model.mode = Mode::Normal;
            model.say("cancelled: nothing was sent");
            Vec::new()
        }
        (Mode::Help, Some(Action::CloseHelp), _) => {
            model.mode = Mode::Normal;
            Vec::new()
        }
        (Mode::Normal, Some(a), _) => normal_action(model, a),
        (Mode::Normal, None, _) if !is_modifier(&key) => {
            model.say("unknown key, ? for help");
            Vec::new()
        }
        _ => {
            model.noop = true;
            Vec::new()
        }
    }
}

/// A modifier key on its own (reported by terminals with the kitty keyboard protocol): not a
/// key the user meant as a command.
fn is_modifier(key: &KeyEvent) -> bool {
    matches!(key.code, KeyCode::Modifier(_) | KeyCode::Null)
}

fn normal_action(model: &mut Model, action: Action) -> Vec<Command> {
    if let Some(what) = model.read_only_refusal(action) {
        model.warn(format!(
            "read-only screen: {what} is refused; this screen only shows sessions"
        ));
        return Vec::new();
    }
    let page = model.page();
    match action {
        Action::Up => model.move_to(model.cursor.saturating_sub(1)),
        Action::Down => model.move_to(model.cursor + 1),
        Action::PageUp => model.move_to(model.cursor.saturating_sub(page)),
        Action::PageDown => model.move_to(model.cursor + page),
        Action::First => model.move_to(0),
        Action::Last => model.move_to(usize::MAX),
        Action::Login | Action::Refresh | Action::Logout => {
            let op = match action {
                Action::Login => Op::Login,
                Action::Refresh => Op::Refresh,
                _ => Op::Logout,
            };
            let targets = model.targets();
            return act(model, op, targets, false);
        }
        Action::Check => return check(model),
        Action::Impersonate => match model.visible.get(model.cursor).copied() {
            None => model.warn("no profile here"),
            Some(i) => match model.sudo_refusal(i) {
                Some(why) => model.warn(why),
                None => {
                    model.mode = Mode::User {
                        row: i,
                        text: String::new(),
                    }
                }
            },
        },
        Action::CopyToken => return copy(model, CopyKind::Token),
        Action::CopyExport => return copy(model, CopyKind::Export),
        Action::Cancel => return cancel(model),
        Action::ToggleSelect => {
            if let Some(&i) = model.visible.get(model.cursor) {
                model.selected[i] = !model.selected[i];
                if model.selected[i] {
                    model.selected_count += 1;
                } else {
                    model.selected_count -= 1;
                }
                model.move_to(model.cursor + 1);
            }
        }
        Action::SelectAll => {
            let all = model.visible.iter().all(|&i| model.selected[i]);
            for k in 0..model.visible.len() {
                let i = model.visible[k];
                if model.selected[i] == all {
                    model.selected[i] = !all;
                    if all {
                        model.selected_count -= 1;
                    } else {
                        model.selected_count += 1;
                    }
                }
            }
            model.say(format!("{} selected", model.selected_count));
        }
        Action::Filter => model.mode = Mode::Filter,
        Action::Details => {
            model.details = !model.details;
            model.scroll_to_cursor();
        }
        Action::Sort | Action::Reverse => {
            if action == Action::Sort {
                model.sort = model.next_sort();
            } else {
                model.reverse = !model.reverse;
            }
            model.reorder();
            let text = model.sort_words();
            model.say(text);
        }
        Action::Escape => {
            // One thing at a time, the last opened first: the details pane, the filter, the
            // selection.
            if model.details {
                model.details = false;
                model.scroll_to_cursor();
            } else if !model.filter.is_empty() {
                model.filter.clear();
                model.reorder();
            } else if model.selected_count > 0 {
                model.selected.iter_mut().for_each(|s| *s = false);
                model.selected_count = 0;
            }
        }
        Action::Help => model.mode = Mode::Help,
        Action::Quit => return quit(model, "quitting"),
        _ => {}
    }
    Vec::new()
}
