//! Commands about sugar-sessions itself: `completions` (with the profile names and tags it
//! completes), `man`, `paths`.

use super::{Cli, CompletionShell, Usage, default_profiles_path};
use crate::exit;
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable through which a shell asks the program for completions (the
/// registration script sets it); a name of our own, so that a `COMPLETE` set for anything else
/// never turns a command into a completion.
pub const COMPLETE_ENV: &str = "SUGAR_SESSIONS_COMPLETE";

/// Answers a shell's completion request and exits, when the shell is asking (see
/// [`COMPLETE_ENV`]); else returns at once. Called first thing in `main`.
pub fn complete_if_asked() {
    clap_complete::CompleteEnv::with_factory(super::command)
        .var(COMPLETE_ENV)
        .complete();
}

/// `completions SHELL`: the script that registers the completion with the shell. It calls this
/// program back while completing, so that subcommands, flags and the profile names of the file
/// in use are always current.
pub(super) fn completions(shell: CompletionShell) -> Result<i32, Usage> {
    let completer: &dyn EnvCompleter = match shell {
        CompletionShell::Bash => &Bash,
        CompletionShell::Zsh => &Zsh,
        CompletionShell::Fish => &Fish,
        CompletionShell::Elvish => &Elvish,
        CompletionShell::Powershell => &Powershell,
    };
    // The program as it was called: a bare name is found on PATH when completing, a path is
    // made absolute so that completing works from any directory.
    let called = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("sugar-sessions"));
    let program = if called.components().count() > 1 {
        std::path::absolute(&called).unwrap_or(called)
    } else {
        called
    };
    let mut out = Vec::new();
    completer
        .write_registration(
            COMPLETE_ENV,
            "sugar-sessions",
            "sugar-sessions",
            &program.to_string_lossy(),
            &mut out,
        )
        .map_err(|e| Usage(format!("sugar-sessions: cannot write the script: {e}")))?;
    print!("{}", String::from_utf8_lossy(&out));
    Ok(exit::OK)
}

/// The profiles file a completion reads: an earlier `--profiles` on the command line being
/// completed, else `SUGAR_SESSIONS_PROFILES`, else the default.
fn completion_profiles_path(line: &[OsString]) -> Option<PathBuf> {
    let mut words = line.iter();
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        if word == "--profiles" {
            return words.next().map(PathBuf::from);
        }
        if let Some(path) = word.to_str().and_then(|w| w.strip_prefix("--profiles=")) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("SUGAR_SESSIONS_PROFILES")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(default_profiles_path)
}

/// The names and tags of the profiles file at `path`, read leniently: no validation, no password
/// source run, nothing sent; a file that cannot be read or parsed gives nothing (a completion
/// stays silent).
fn names_and_tags(path: &Path) -> (Vec<String>, Vec<String>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Default::default();
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Default::default();
    };
    let Some(toml::Value::Table(profiles)) = doc.get("profiles") else {
        return Default::default();
    };
    let mut tags: Vec<String> = Vec::new();
    for table in profiles.values() {
        if let Some(toml::Value::Array(list)) = table.get("tags") {
            for tag in list.iter().filter_map(toml::Value::as_str) {
                if !tags.iter().any(|t| t == tag) {
                    tags.push(tag.to_string());
                }
            }
        }
    }
    (profiles.keys().cloned().collect(), tags)
}

/// The line being completed, as the shell passed it (after `--`).
fn completed_line() -> Vec<OsString> {
    let all: Vec<OsString> = std::env::args_os().collect();
    match all.iter().position(|a| a == "--") {
        Some(i) => all[i + 1..].to_vec(),
        None => Vec::new(),
    }
}

/// Profile names, for the arguments that take one.
pub fn profile_candidates() -> Vec<CompletionCandidate> {
    let Some(path) = completion_profiles_path(&completed_line()) else {
        return Vec::new();
    };
    names_and_tags(&path)
        .0
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// Tags, for `--tag`.
pub fn tag_candidates() -> Vec<CompletionCandidate> {
    let Some(path) = completion_profiles_path(&completed_line()) else {
        return Vec::new();
    };
    names_and_tags(&path)
        .1
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// `man`: the man page, from the same clap definitions as `--help`.
pub(super) fn man(out_dir: Option<&Path>) -> Result<i32, Usage> {
    let cmd = super::command();
    match out_dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| Usage(format!("sugar-sessions: cannot write the man page: {e}")))?;
            print!("{}", String::from_utf8_lossy(&out));
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                Usage(format!(
                    "sugar-sessions: cannot create {}: {e}",
                    dir.display()
                ))
            })?;
            clap_mangen::generate_to(cmd, dir).map_err(|e| {
                Usage(format!(
                    "sugar-sessions: cannot write the man pages into {}: {e}",
                    dir.display()
                ))
            })?;
            eprintln!(
                "wrote sugar-sessions.1 and a page per command into {} (e.g. man -l {}/sugar-sessions.1)",
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(exit::OK)
}

/// `paths`: where everything is, and whether it exists.
pub(super) fn paths(cli: &Cli, json: bool) -> Result<i32, Usage> {
    let profiles = cli.profiles_file().or_else(default_profiles_path);
    let state = super::state_dir(cli);
    let in_state = |name: &str| state.as_ref().map(|d| d.join(name));
    let rows: Vec<(&str, Option<PathBuf>)> = vec![
        ("profiles", profiles),
        ("state_dir", state.clone()),
        ("cache", in_state(crate::store::CACHE_FILE)),
        ("lock", in_state(crate::store::LOCK_FILE)),
        ("session_locks", in_state(crate::store::LOCK_DIR)),
        ("log", in_state(crate::logging::FILE)),
        ("broker_socket", in_state(crate::store::BROKER_SOCKET)),
    ];
    if json {
        let mut doc = serde_json::Map::new();
        for (what, path) in &rows {
            doc.insert(
                what.to_string(),
                serde_json::json!({
                    "path": path.as_ref().map(|p| p.display().to_string()),
                    "exists": path.as_ref().is_some_and(|p| std::fs::symlink_metadata(p).is_ok()),
                }),
            );
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("JSON values serialise")
        );
        return Ok(exit::OK);
    }
    for (what, path) in &rows {
        let (shown, exists) = match path {
            Some(p) => (
                p.display().to_string(),
                if std::fs::symlink_metadata(p).is_ok() {
                    ""
                } else {
                    "  (does not exist)"
                },
            ),
            None => ("(no home directory)".to_string(), ""),
        };
        println!("{what:14} {shown}{exists}");
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_reads_an_earlier_profiles_option() {
        let line: Vec<OsString> = ["sugar-sessions", "--profiles", "team.toml", "login", "ac"]
            .into_iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            completion_profiles_path(&line),
            Some(PathBuf::from("team.toml"))
        );
        let line: Vec<OsString> = ["sugar-sessions", "--profiles=x.toml", "token", ""]
            .into_iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            completion_profiles_path(&line),
            Some(PathBuf::from("x.toml"))
        );
    }

    #[test]
    fn names_and_tags_come_from_a_file_read_leniently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "[profiles.acme]\nurl = 1\ntags = [\"prod\", \"eu\"]\n[profiles.\"globex.eu\"]\ntags = [\"eu\"]\npassword_cmd = \"touch ran\"\n",
        )
        .unwrap();
        let (names, tags) = names_and_tags(&path);
        assert_eq!(names, ["acme", "globex.eu"]);
        assert_eq!(tags, ["prod", "eu"]);
        assert!(!dir.path().join("ran").exists());
        std::fs::write(&path, "[profiles.acme\n").unwrap();
        assert_eq!(names_and_tags(&path), (vec![], vec![]));
        assert_eq!(
            names_and_tags(&dir.path().join("missing")),
            (vec![], vec![])
        );
    }
}
