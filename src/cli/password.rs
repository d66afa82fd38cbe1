//! `password set NAME` and `password delete NAME`: a profile's password in the OS keyring
//! (`password_keyring = true`), typed twice without echo, or one line of standard input.

use super::bulk::TtyModes;
use super::commands::select;
use super::{Cli, PasswordCommand, Targets, Usage, load_profiles, profiles_path};
use crate::config::{KEYRING_SERVICE, KeyringEntry, PasswordSource, Profile, Profiles};
use crate::exit;
use crate::runtime::password::keyring;
use crate::secret::Secret;
use std::io::BufRead;

pub(super) async fn password(cli: &Cli, command: &PasswordCommand) -> Result<i32, Usage> {
    let profiles = load_profiles(&profiles_path(cli)?)?;
    let (name, storing) = match command {
        PasswordCommand::Set { name, .. } => (name, true),
        PasswordCommand::Delete { name } => (name, false),
    };
    let p = one(&profiles, name)?;
    let entry = keyring_entry(p, storing)?;
    let shared = sharing(&profiles, p, entry);
    match command {
        PasswordCommand::Set { stdin, .. } => {
            let password = if *stdin { read_stdin()? } else { ask(p).await? };
            match keyring::set(entry, password).await {
                Ok(()) => {
                    println!(
                        "{}: password stored in the OS keyring for {} (service \
                         {KEYRING_SERVICE}){shared}",
                        p.name, entry.account
                    );
                    Ok(exit::OK)
                }
                Err(why) => {
                    eprintln!("sugar-sessions: {}: {why}", p.name);
                    Ok(exit::FAILED)
                }
            }
        }
        PasswordCommand::Delete { .. } => match keyring::delete(entry).await {
            Ok(true) => {
                println!(
                    "{}: password removed from the OS keyring for {} (service \
                     {KEYRING_SERVICE}){shared}",
                    p.name, entry.account
                );
                Ok(exit::OK)
            }
            Ok(false) => {
                println!(
                    "{}: no password in the OS keyring for {} (service {KEYRING_SERVICE}): \
                     nothing to remove",
                    p.name, entry.account
                );
                Ok(exit::OK)
            }
            Err(why) => {
                eprintln!("sugar-sessions: {}: {why}", p.name);
                Ok(exit::FAILED)
            }
        },
    }
}

/// The profile named, with the messages of every command for a name that is not in the file.
fn one<'a>(profiles: &'a Profiles, name: &str) -> Result<&'a Profile, Usage> {
    let targets = Targets {
        names: vec![name.to_string()],
        all: false,
        tags: vec![],
        json: false,
    };
    Ok(&**select(profiles, &targets, false)?.remove(0))
}

/// The profile's keyring entry; a profile with another password source is refused, saying how
/// to use the keyring.
fn keyring_entry(p: &Profile, storing: bool) -> Result<&KeyringEntry, Usage> {
    match &p.password {
        PasswordSource::Keyring(entry) => Ok(entry),
        other => Err(Usage(format!(
            "sugar-sessions: {name}: the profile does not take its password from the OS keyring \
             (its password source: {kind}), so {what}: add password_keyring = true to \
             [profiles.{name}] (or to [defaults]){instead}, then run this again",
            name = p.name,
            kind = other.kind(),
            what = if storing {
                "a password stored there would not be used"
            } else {
                "there is nothing of it there to remove"
            },
            instead = if other.is_non_interactive() {
                format!(" in place of its {}", key_of(other))
            } else {
                String::new()
            },
        ))),
    }
}

/// The key that sets a source, for messages.
fn key_of(source: &PasswordSource) -> &'static str {
    match source {
        PasswordSource::Env(_) => "password_env",
        PasswordSource::Cmd(_) => "password_cmd",
        PasswordSource::Plain(_) => "password",
        PasswordSource::Keyring(_) => "password_keyring",
        PasswordSource::Prompt => "prompt",
    }
}

/// `; shared with profiles a, b` when other profiles use the same keyring entry.
fn sharing(profiles: &Profiles, p: &Profile, entry: &KeyringEntry) -> String {
    let others: Vec<&str> = profiles
        .profiles
        .iter()
        .filter(|o| o.name != p.name)
        .filter(|o| matches!(&o.password, PasswordSource::Keyring(e) if e.account == entry.account))
        .map(|o| o.name.as_str())
        .collect();
    if others.is_empty() {
        String::new()
    } else {
        format!("; also used by {}", others.join(", "))
    }
}

/// One line of standard input, without its line end.
fn read_stdin() -> Result<Secret, Usage> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin().lock().read_line(&mut line).map_err(|e| {
        Usage(format!(
            "sugar-sessions: standard input could not be read: {e}"
        ))
    })?;
    let password = line.trim_end_matches('\n').trim_end_matches('\r');
    if password.is_empty() {
        return Err(Usage(
            "sugar-sessions: no password on standard input (--stdin reads its first line)".into(),
        ));
    }
    Ok(Secret::new(password))
}

/// The password typed twice on the terminal, without echo. Ctrl-C puts the terminal's modes back.
async fn ask(p: &Profile) -> Result<Secret, Usage> {
    let no_terminal = || {
        Usage(
            "sugar-sessions: no terminal to type the password on: pass it on standard input with \
             --stdin"
                .into(),
        )
    };
    if std::fs::File::open("/dev/tty").is_err() {
        return Err(no_terminal());
    }
    let first = format!(
        "Password for {} ({} at {}) to store in the OS keyring: ",
        p.name,
        p.username,
        p.host_port()
    );
    let password = read_hidden(first).await?.ok_or_else(no_terminal)?;
    if password.expose().is_empty() {
        return Err(Usage(
            "sugar-sessions: nothing typed: nothing stored".into(),
        ));
    }
    let again = read_hidden("The same password again: ".into())
        .await?
        .ok_or_else(no_terminal)?;
    if again.expose() != password.expose() {
        return Err(Usage(
            "sugar-sessions: the two passwords differ: nothing stored".into(),
        ));
    }
    Ok(password)
}

/// One password read from the terminal on a thread of its own (a read that is interrupted is left
/// behind, not waited for); `Ok(None)` when the terminal could not be read.
async fn read_hidden(prompt: String) -> Result<Option<Secret>, Usage> {
    let saved = TtyModes::save();
    let mut interrupt =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| Usage(format!("sugar-sessions: cannot listen for Ctrl-C: {e}")))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("prompt".into())
        .spawn(move || {
            let _ = tx.send(rpassword::prompt_password(prompt).map(Secret::new));
        })
        .map_err(|e| Usage(format!("sugar-sessions: {e}")))?;
    tokio::select! {
        biased;
        _ = interrupt.recv() => {
            if let Some(saved) = &saved {
                saved.restore();
            }
            eprintln!();
            Err(Usage("sugar-sessions: interrupted: nothing stored".into()))
        }
        read = rx => Ok(read.ok().and_then(Result::ok)),
    }
}
