//! Printing: `println!` and `eprintln!` that drop what cannot be written, and the outcomes of a
//! command as lines or JSON.

use crate::outcome::Outcome;
use crate::session::State;
use serde_json::json;
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
}

impl From<Outcome> for Summary {
    fn from(o: Outcome) -> Summary {
        Summary {
            name: o.name,
            ok: o.ok,
            state: o.state,
            message: o.message,
        }
    }
}

pub(super) fn print_outcomes(outcomes: &[Summary], json: bool) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        let rows: Vec<_> = outcomes
            .iter()
            .map(|o| json!({"name": o.name, "ok": o.ok, "state": o.state.as_str(), "message": o.message}))
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
