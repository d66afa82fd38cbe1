//! Copying the row's access token (`y`) or a shell `export` line (`e`) to the clipboard: what is
//! copied, whether it may be, and what the status line says. The runtime writes the text to the
//! terminal inside an OSC 52 sequence ([`super::Command::Copy`]); the token itself never reaches
//! the status line.

use super::Command;
use super::model::Model;
use crate::secret::Secret;
use crate::session::{format_duration, remaining};

/// How the screen copies to the clipboard (`SUGAR_SESSIONS_CLIPBOARD`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Clipboard {
    /// OSC 52: the terminal (through tmux or GNU screen when inside one) puts the text on the
    /// clipboard of the machine the user sits at, over SSH too.
    #[default]
    Osc52,
    /// `SUGAR_SESSIONS_CLIPBOARD=off`: nothing is copied.
    Off,
}

impl Clipboard {
    /// From `SUGAR_SESSIONS_CLIPBOARD`: `off` turns copying off; anything else (unset, `osc52`, a
    /// value this version does not know) is OSC 52.
    pub fn from_env(value: Option<&str>) -> Clipboard {
        match value {
            Some(v) if v.trim().eq_ignore_ascii_case("off") => Clipboard::Off,
            _ => Clipboard::Osc52,
        }
    }
}

/// The most a copy may be once base64-encoded: terminals and multiplexers drop longer OSC 52
/// sequences (xterm's default limit, tmux's and screen's buffers), mostly without a word.
pub const MAX_ENCODED: usize = 100_000;

/// What a copy key copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CopyKind {
    /// The access token alone.
    Token,
    /// `export SUGAR_URL='…' SUGAR_TOKEN='…'`.
    Export,
}

/// `text` quoted for a POSIX shell: in single quotes, a single quote as `'\''`.
pub fn shell_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_shell_quoted(&mut out, text);
    out
}

/// Appends `text` single-quoted for a POSIX shell to `out`, without a copy of it elsewhere (the
/// export line holds a token: it is built in one buffer that is wiped when dropped).
fn push_shell_quoted(out: &mut String, text: &str) {
    out.push('\'');
    for c in text.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
}

/// The length of `n` bytes in base64 (with padding).
fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

impl Model {
    /// Row `i` has an access token that may be copied: usable (as `token` would hand it out),
    /// not ended by Sugar, and no request in flight that may replace it.
    pub(super) fn copyable(&self, i: usize) -> bool {
        let row = &self.rows[i];
        row.entry.usable_session(self.clock).is_some() && !row.superseded() && !row.busy()
    }
}

pub(super) fn copy(model: &mut Model, what: CopyKind) -> Vec<Command> {
    if model.options.read_only {
        model.warn("read-only screen: tokens are never copied");
        return Vec::new();
    }
    if model.options.clipboard == Clipboard::Off {
        model.warn("copying is off (SUGAR_SESSIONS_CLIPBOARD=off)");
        return Vec::new();
    }
    let Some(&i) = model.visible.get(model.cursor) else {
        model.warn("no profile here");
        return Vec::new();
    };
    let now = model.clock;
    let row = &model.rows[i];
    let name = row.name().to_string();
    let session = row.entry.usable_session(now).filter(|_| model.copyable(i));
    let Some(session) = session else {
        let why = if row.busy() {
            "a request is in flight".to_string()
        } else {
            row.state().word().to_string()
        };
        model.warn(format!(
            "{name}: no usable access token to copy ({why}); nothing copied"
        ));
        return Vec::new();
    };
    let left = format_duration(remaining(session.expires_at, now));
    let token = session.access_token.expose();
    let (text, said) = match what {
        CopyKind::Token => (
            Secret::new(token),
            format!("{name}'s access token (valid {left})"),
        ),
        CopyKind::Export => {
            let p = &row.profile;
            let url = p.rest_root();
            // Room for the worst case of quoting: the buffer never grows (which would leave a
            // copy of the token behind).
            let mut line = String::with_capacity(40 + 4 * (url.len() + token.len()));
            line.push_str("export SUGAR_URL=");
            push_shell_quoted(&mut line, &url);
            line.push_str(" SUGAR_TOKEN=");
            push_shell_quoted(&mut line, token);
            (
                Secret::new(line),
                format!("an export line for {name} (SUGAR_URL, SUGAR_TOKEN; token valid {left})"),
            )
        }
    };
    let encoded = encoded_len(text.expose().len());
    if encoded > MAX_ENCODED {
        model.warn(format!(
            "{name}: not copied: {said} is {encoded} bytes in base64, over the {MAX_ENCODED} \
             that terminals take in OSC 52"
        ));
        return Vec::new();
    }
    model.say(format!("copied {said} to the clipboard (OSC 52)"));
    vec![Command::Copy { text }]
}
