//! Printing: `println!` and `eprintln!` that drop what cannot be written, and the outcomes of a
//! command as lines or JSON.

use crate::outcome::Outcome;
use crate::session::{Session, State, rfc3339};
use chrono::{DateTime, Utc};
use std::io::Write;

// `println!` and `eprintln!` panic when the write fails: standard output is a pipe whose reader
// left (`sugar-sessions status | head -1`: Rust ignores SIGPIPE, so the write fails with EPIPE), or
// the terminal went away (EIO). Everything `cli` prints goes through these two instead,
// which drop what cannot be written: the work is done and stored by then, and nobody is listening.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// What a command prints of an outcome: a bulk command keeps only this of each of its thousands
/// of outcomes (not the entry, the requests sent or the failure) until it prints them in order.
pub(super) struct Summary {
    pub name: String,
    pub ok: bool,
    pub state: State,
    pub message: String,
    /// When the session's access token and refresh token expire, when it has them.
    pub expires_at: Option<DateTime<Utc>>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
}

impl From<Outcome> for Summary {
    fn from(o: Outcome) -> Summary {
        let session = o.entry.session.as_ref();
        Summary {
            expires_at: session.map(|s| s.expires_at),
            refresh_expires_at: session.and_then(Session::refresh_expiry),
            name: o.name,
            ok: o.ok,
            state: o.state,
            message: o.message,
        }
    }
}

impl Summary {
    /// The message without the profile's name it starts with (JSON has the name on its own).
    fn message_unnamed(&self) -> &str {
        self.message
            .strip_prefix(self.name.as_str())
            .and_then(|m| m.strip_prefix(": "))
            .unwrap_or(&self.message)
    }
}

/// One outcome in `--json`.
#[derive(serde::Serialize)]
struct JsonOutcome<'a> {
    name: &'a str,
    ok: bool,
    state: &'static str,
    message: &'a str,
    expires_at: Option<String>,
    refresh_expires_at: Option<String>,
}

pub(super) fn print_outcomes(outcomes: &[Summary], json: bool) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        let rows: Vec<JsonOutcome> = outcomes
            .iter()
            .map(|o| JsonOutcome {
                name: &o.name,
                ok: o.ok,
                state: o.state.as_str(),
                message: o.message_unnamed(),
                expires_at: o.expires_at.map(rfc3339),
                refresh_expires_at: o.refresh_expires_at.map(rfc3339),
            })
            .collect();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&rows).expect("json")
        );
    } else {
        for o in outcomes {
            let _ = writeln!(out, "{}", o.message);
        }
    }
}

/// Standard output through one buffer: a table of thousands of lines is a few writes, not one per
/// line (standard output is line-buffered even into a pipe).
pub(super) fn stdout_buffered() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock())
}
