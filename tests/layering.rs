//! The layers stay true: the core (`session`, `identity`, `outcome`, `guard`), the screen's state
//! machine (`app/`) and its drawing (`ui/`) never name the runtime, the HTTP client, the store,
//! tokio or reqwest, neither in `use` lines nor in fully qualified paths (ARCHITECTURE.md).

use std::path::{Path, PathBuf};

/// The modules that must stay free of I/O layers, as files or folders under `src/`.
const PURE: &[&str] = &[
    "session.rs",
    "identity.rs",
    "outcome.rs",
    "guard.rs",
    "time_serde.rs",
    "monitor.rs",
    "app",
    "ui",
];

/// What they must not name.
const FORBIDDEN: &[&str] = &[
    "runtime", "engine", "sugar", "store", "tokio", "reqwest", "tui", "cli",
];

fn files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The code of a line: without its comment, and with the text of string literals blanked out.
fn code(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_str = false;
    let mut chars = line.chars().peekable();
    let mut escaped = false;
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    in_str = false;
                    out.push('"');
                }
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push('"');
            }
            '/' if chars.peek() == Some(&'/') => break,
            _ => out.push(c),
        }
    }
    out
}

/// Where `line` names one of `FORBIDDEN` as a path: `use tokio::...`, `crate::store::Cache`,
/// `sugar_sessions::runtime`, `tokio::spawn(...)`, `use crate::{store, ...}`.
fn violations(line: &str) -> Vec<&'static str> {
    let code = code(line);
    let code = code.as_str();
    let mut found = Vec::new();
    for name in FORBIDDEN {
        let as_path = [
            format!("crate::{name}"),
            format!("super::{name}"),
            format!("sugar_sessions::{name}"),
        ];
        let named = as_path.iter().any(|p| {
            code.match_indices(p.as_str()).any(|(i, _)| {
                let after = code[i + p.len()..].chars().next();
                !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        });
        // A crate named at the start of a path (`tokio::`, `use reqwest;`).
        let as_crate = code.match_indices(&format!("{name}::")).any(|(i, _)| {
            let before = code[..i].chars().next_back();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
        }) || code.trim() == format!("use {name};");
        // In a grouped import: `use crate::{store, ...}`.
        let grouped = code.contains("crate::{")
            && code
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|w| w == *name);
        if named || as_crate || grouped {
            found.push(*name);
        }
    }
    found
}

#[test]
fn the_core_and_the_screen_name_no_io_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = Vec::new();
    for module in PURE {
        files(&src.join(module), &mut checked);
    }
    assert!(checked.len() >= 10, "the modules were found: {checked:?}");
    let mut problems = Vec::new();
    for file in &checked {
        let text = std::fs::read_to_string(file).unwrap();
        // Doc comments and the module doc are prose: `code` drops them with the other comments.
        for (n, line) in text.lines().enumerate() {
            for name in violations(line) {
                problems.push(format!(
                    "{}:{}: names `{name}`: {}",
                    file.strip_prefix(&src).unwrap().display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the core, app/ and ui/ must not use these layers:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_every_way_of_naming_a_layer() {
    for bad in [
        "use crate::store::Cache;",
        "use crate::runtime::{Engine, Outcome};",
        "    let x = crate::sugar::Client::new();",
        "use tokio::sync::mpsc;",
        "    tokio::spawn(async {});",
        "use crate::{config, store};",
        "use reqwest;",
        "fn f() -> sugar_sessions::engine::Outcome {",
    ] {
        assert!(!violations(bad).is_empty(), "{bad}");
    }
    for fine in [
        "use crate::session::Cache;",
        "/// the token cache (the store) keeps it",
        "    let restore = 1; // crate::store is not named here",
        "    let s = \"crate::store\";",
        "use crate::storefront::X;",
        "use my_tokio::x;",
    ] {
        assert!(
            violations(fine).is_empty(),
            "{fine}: {:?}",
            violations(fine)
        );
    }
}
