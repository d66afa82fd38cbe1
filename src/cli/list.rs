//! `list`: the profiles of the file set, as lines for scripts, a table on a terminal, or JSON;
//! from the profiles' snapshot when it holds (no profile built), else from the loaded file.

use crate::config::{ListedProfile, Profile, Profiles};
use crate::guard::Guarded;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::sync::Arc;

/// What `list` shows of a profile: a loaded [`Profile`], or one read from the snapshot.
pub(super) trait Shown: Guarded {
    fn api(&self) -> &str;
    /// The password source's kind (`env`, `cmd`, …).
    fn password_kind(&self) -> &'static str;
    fn tags(&self) -> impl Iterator<Item = &str>;
    fn insecure(&self) -> bool;
}

impl Shown for Arc<Profile> {
    fn api(&self) -> &str {
        &self.api
    }
    fn password_kind(&self) -> &'static str {
        self.password.kind()
    }
    fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().map(String::as_str)
    }
    fn insecure(&self) -> bool {
        self.insecure
    }
}

impl Guarded for ListedProfile<'_> {
    fn name(&self) -> &str {
        self.name
    }
    fn url(&self) -> &str {
        self.url
    }
    fn username(&self) -> &str {
        self.username
    }
    fn platform(&self) -> &str {
        self.platform
    }
    fn client_id(&self) -> &str {
        self.client_id
    }
    /// A snapshot never holds an impersonation (`sudo` makes them at run time).
    fn is_impersonation(&self) -> bool {
        false
    }
}

impl Shown for ListedProfile<'_> {
    fn api(&self) -> &str {
        self.api
    }
    fn password_kind(&self) -> &'static str {
        self.password_kind
    }
    fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().copied()
    }
    fn insecure(&self) -> bool {
        self.insecure
    }
}

/// `list` (`--json`, `--origin`) of profiles loaded from the file; `origin` needs the keys'
/// origins ([`crate::config::load_with_origins`]).
pub(super) fn list(profiles: &Profiles, json: bool, origin: bool) {
    list_of(&profiles.profiles, json, origin.then_some(profiles));
}

/// `list` (`--json`) of the profiles as the snapshot holds them.
pub(super) fn list_listed(profiles: &[ListedProfile<'_>], json: bool) {
    list_of(profiles, json, None);
}

/// `list --origin`: where each key of a profile was set, as `key=FILE:LINE` pairs (keys left to
/// the built-in defaults are not named).
fn origin_line(profiles: &Profiles, name: &str) -> String {
    let pairs: Vec<String> = profiles
        .origin_of(name)
        .into_iter()
        .map(|(key, at)| format!("{key}={at}"))
        .collect();
    format!("from: {}", pairs.join(" "))
}

/// The padding of `list`'s name column (at most 40 wide).
const SPACES: &str = "                                        ";

fn list_of<P: Shown>(profiles: &[P], json: bool, origins: Option<&Profiles>) {
    let warnings = crate::guard::warnings(profiles);
    let warnings_of = |p: &P| -> Vec<String> {
        warnings
            .get(p.name())
            .into_iter()
            .flatten()
            .map(|w| w.message(p))
            .collect()
    };
    if json {
        let rows: Vec<_> = profiles
            .iter()
            .map(|p| {
                let mut row = json!({
                    "name": p.name(), "url": p.url().trim_end_matches('/'), "api": p.api(), "username": p.username(),
                    "platform": p.platform(), "client_id": p.client_id(), "tags": p.tags().collect::<Vec<_>>(),
                    "password_source": p.password_kind(), "warnings": warnings_of(p), "insecure": p.insecure(),
                });
                if let Some(all) = origins {
                    let keys: serde_json::Map<String, serde_json::Value> = all
                        .origin_of(p.name())
                        .into_iter()
                        .map(|(key, at)| (key.to_string(), json!(at)))
                        .collect();
                    row["origin"] = serde_json::Value::Object(keys);
                }
                row
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows).expect("json"));
        return;
    }
    // The name column is as wide as the longest name, up to 40: a longer name pushes its own line.
    let w = profiles
        .iter()
        .map(|p| p.name().len())
        .max()
        .unwrap_or(4)
        .clamp(4, 40);
    let mut out = super::output::stdout_buffered();
    let origin_of = |p: &P| origins.map(|all| origin_line(all, p.name()));
    if std::io::stdout().is_terminal() {
        list_table(profiles, &warnings_of, &origin_of, &mut out);
        return;
    }
    let mut line: Vec<&str> = Vec::with_capacity(32);
    for p in profiles {
        // `NAME  URL  USER on PLATFORM (password: KIND)  [TAGS]`, written piece by piece: for
        // thousands of profiles, formatting each line (and its tags) was a fifth of `list`.
        let pad = w.saturating_sub(p.name().chars().count());
        line.clear();
        line.extend([
            p.name(),
            &SPACES[..pad.min(SPACES.len())],
            "  ",
            p.url().trim_end_matches('/'),
            "  ",
            p.username(),
            " on ",
            p.platform(),
            " (password: ",
            p.password_kind(),
            ")",
        ]);
        let mut tags = 0;
        for tag in p.tags() {
            line.extend([if tags == 0 { "  [" } else { ", " }, tag]);
            tags += 1;
        }
        if tags > 0 {
            line.push("]");
        }
        if p.insecure() {
            line.push("  INSECURE (certificates not checked)");
        }
        line.push("\n");
        for piece in &line {
            let _ = out.write_all(piece.as_bytes());
        }
        for warning in warnings_of(p) {
            let _ = writeln!(out, "{:w$}  warning: {warning}", "");
        }
        if let Some(line) = origin_of(p) {
            let _ = writeln!(out, "{:w$}  {line}", "");
        }
    }
}

/// `list` on a terminal: a header, and every column aligned (widths capped, so that one long URL
/// does not push every row off the screen); a profile's warnings on lines of their own.
fn list_table<P: Shown>(
    profiles: &[P],
    warnings_of: &dyn Fn(&P) -> Vec<String>,
    origin_of: &dyn Fn(&P) -> Option<String>,
    out: &mut impl Write,
) {
    let rows: Vec<[String; 6]> = profiles
        .iter()
        .map(|p| {
            let mut flags = p.tags().collect::<Vec<_>>().join(",");
            if p.insecure() {
                flags.push_str(if flags.is_empty() { "" } else { " " });
                flags.push_str("INSECURE");
            }
            [
                p.name().to_string(),
                p.url().trim_end_matches('/').to_string(),
                p.username().to_string(),
                p.platform().to_string(),
                p.password_kind().to_string(),
                flags,
            ]
        })
        .collect();
    let header = ["NAME", "URL", "USER", "PLATFORM", "PASSWORD", "TAGS"];
    let caps = [40, 60, 30, 30, 8, 0];
    let mut widths = [0usize; 6];
    for (i, w) in widths.iter_mut().enumerate().take(5) {
        let longest = rows
            .iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0);
        *w = longest.min(caps[i]);
    }
    let line = |cells: [&str; 6]| -> String {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < 5 {
                text.push_str(&format!("{cell:w$}  ", w = widths[i]));
            } else {
                text.push_str(cell);
            }
        }
        text.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header));
    for (p, row) in profiles.iter().zip(&rows) {
        let cells = [&*row[0], &*row[1], &*row[2], &*row[3], &*row[4], &*row[5]];
        let _ = writeln!(out, "{}", line(cells));
        for warning in warnings_of(p) {
            let _ = writeln!(out, "{:w$}  warning: {warning}", "", w = widths[0]);
        }
        if let Some(line) = origin_of(p) {
            let _ = writeln!(out, "{:w$}  {line}", "", w = widths[0]);
        }
    }
}
