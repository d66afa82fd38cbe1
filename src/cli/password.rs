//! `password set NAME` and `password delete NAME`: a profile's password in the OS keyring
//! (`password_keyring = true`), typed twice without echo, or one line of standard input.

use super::bulk::TtyModes;
use super::commands::select;
use super::{Cli, PasswordCommand, Targets, Usage, load_for_command, profiles_path};
use crate::config::{KEYRING_SERVICE, KeyringEntry, PasswordSource, Profile, Profiles};
use crate::exit;
use crate::runtime::password::keyring;
use crate::secret::Secret;
use std::io::BufRead;

pub(super) async fn password(cli: &Cli, command: &PasswordCommand) -> Result<i32, Usage> {
    let profiles = load_for_command(cli, &profiles_path(cli)?)?;
    let (name, storing) = match command {
        PasswordCommand::Set { name, .. } => (name, true),
        PasswordCommand::Delete { name } => (name, false),
    };
    let p = one(&profiles, name)?;
    let entry = keyring_entry(p, storing)?;
    // Said before a password is asked for (twice) only to be refused.
    if let Err(e) = keyring::refuse_over_ssh(entry) {
        eprintln!("{}: {e}", p.name);
        return Ok(exit::FAILED);
    }
    let shared = sharing(&profiles, p, entry);
    match command {
        PasswordCommand::Set { stdin, .. } => {
            let password = if *stdin {
                read_stdin()?
            } else {
                match ask(p).await? {
                    Some(password) => password,
                    None => {
                        eprintln!("sugar-sessions: interrupted: nothing stored");
                        return Ok(exit::INTERRUPTED);
                    }
                }
            };
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

/// The password typed twice on the terminal, without echo; `None` when Ctrl-C interrupted it (the
/// terminal's modes are put back).
async fn ask(p: &Profile) -> Result<Option<Secret>, Usage> {
    if std::fs::File::open("/dev/tty").is_err() {
        return Err(no_terminal());
    }
    let first = format!(
        "Password for {} ({} at {}) to store in the OS keyring: ",
        p.name,
        p.username,
        p.host_port()
    );
    let password = match read_hidden(first).await? {
        Read::Got(password) => password,
        Read::Interrupted => return Ok(None),
    };
    if password.expose().is_empty() {
        return Err(Usage(
            "sugar-sessions: nothing typed: nothing stored".into(),
        ));
    }
    let again = match read_hidden("The same password again: ".into()).await? {
        Read::Got(again) => again,
        Read::Interrupted => return Ok(None),
    };
    if again.expose() != password.expose() {
        return Err(Usage(
            "sugar-sessions: the two passwords differ: nothing stored".into(),
        ));
    }
    Ok(Some(password))
}

fn no_terminal() -> Usage {
    Usage(
        "sugar-sessions: no terminal to type the password on: pass it on standard input with \
         --stdin"
            .into(),
    )
}

/// What [`read_hidden`] got.
enum Read {
    Got(Secret),
    Interrupted,
}

/// One password read from the terminal on a thread of its own (a read that is interrupted is left
/// behind, not waited for).
async fn read_hidden(prompt: String) -> Result<Read, Usage> {
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
    let interrupted = || {
        if let Some(saved) = &saved {
            saved.restore();
        }
        eprintln!();
        Ok(Read::Interrupted)
    };
    tokio::select! {
        biased;
        _ = interrupt.recv() => interrupted(),
        read = rx => match read {
            Ok(Ok(password)) => Ok(Read::Got(password)),
            // Cut short by the Ctrl-C that the branch above is about to see.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                let _ = tokio::time::timeout(
                    std::time::Duration::from_millis(200),
                    interrupt.recv(),
                )
                .await;
                interrupted()
            }
            Ok(Err(_)) | Err(_) => Err(no_terminal()),
        },
    }
}
