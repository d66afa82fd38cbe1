//! The command line: clap definitions and the non-interactive commands.
//!
//! `args`: the clap definitions; `commands`: the commands without a screen; `list`: `list`;
//! `output`: printing;
//! `demo`: the emulator command and what the demo needs. The screen (no command, or `demo`) is
//! started by `main.rs`, which also does the start-up (runtime, logging, the panic catch).

// Everything this module and its submodules print goes through the `println!` and `eprintln!` of
// `output`, which drop what cannot be written.
#[macro_use]
mod output;
mod api;
mod args;
mod bulk;
mod check;
mod commands;
mod exec;
mod list;
mod meta;
mod password;
pub use commands::{select, status_document, with_impersonations};
pub use meta::{complete_if_asked, profile_candidates, tag_candidates};
mod demo;

pub use crate::argv::command_word;

pub use crate::exit;
pub use args::{
    ApiArgs, CheckArgs, Cli, Command, CompletionShell, ExecArgs, LogFormat, LoginArgs,
    PasswordCommand, RefreshArgs, ServeArgs, StatusFormat, Targets, command, parse_from,
};
pub use check::unknown as check_unknown;
pub use demo::{start_demo_emulator, write_private};

use commands::{act, refresh_due, status, sudo, token};
use demo::emulator;

use crate::config::{self, Profiles};
use crate::runtime::Engine;
use crate::session::Op;
use crate::store::Store;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A failure that ends the command before anything was done: printed, exit status 2.
#[derive(Debug)]
pub struct Usage(pub String);

/// The default profiles file: `profiles.toml` in the platform's config directory.
pub fn default_profiles_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "sugar-sessions")
        .map(|d| d.config_dir().join("profiles.toml"))
}

/// The default state directory (token cache, log): the platform's data directory.
pub fn default_state_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "sugar-sessions").map(|d| d.data_dir().to_path_buf())
}

/// The state directory: `--state-dir`, else `SUGAR_SESSIONS_STATE_DIR`, else
/// [`default_state_dir`]; `None` only without a home directory.
pub fn state_dir(cli: &Cli) -> Option<PathBuf> {
    cli.state_dir().or_else(default_state_dir)
}

/// The profiles file: `--profiles`, else [`default_profiles_path`].
pub fn profiles_path(cli: &Cli) -> Result<PathBuf, Usage> {
    cli.profiles_file()
        .or_else(default_profiles_path)
        .ok_or_else(|| Usage("sugar-sessions: no home directory to find the profiles file in: pass --profiles FILE".into()))
}

/// Reads and validates the profiles file; its errors are a [`Usage`] failure.
pub fn load_profiles(path: &Path) -> Result<Profiles, Usage> {
    config::load(path).map_err(|e| Usage(format!("{e}")))
}

/// The profiles file of a shell command or the screen: through its validated snapshot in the state
/// directory ([`config::load_cached`]), which scripts calling `token` over and over, and the screen's
/// start, are spared the parse by.
pub fn load_for_command(cli: &Cli, path: &Path) -> Result<Profiles, Usage> {
    let state_dir = state_dir(cli);
    config::load_cached(path, state_dir.as_deref()).map_err(|e| Usage(format!("{e}")))
}

/// Where read-only mode came from, in the words a message uses: `--read-only`, or the file's
/// `[defaults]` with its path; `None` when it is off.
pub fn read_only_source(cli: &Cli, profiles: &Profiles) -> Option<String> {
    read_only_from(cli.read_only, profiles)
}

/// [`read_only_source`] with the flag given as a value (the daemon keeps it and reloads the file).
pub fn read_only_from(flag: bool, profiles: &Profiles) -> Option<String> {
    if flag {
        Some("--read-only".to_string())
    } else if profiles.settings.read_only {
        Some(format!(
            "read_only = true in [defaults] of {}",
            profiles.path.display()
        ))
    } else {
        None
    }
}

/// The refusal of `command` (one that changes or reveals sessions) in read-only mode.
pub fn read_only_refusal(command: &str, source: &str) -> Usage {
    Usage(format!(
        "sugar-sessions: {command} refused: read-only mode (set by {source}); it would change or \
         reveal a session (list, status and check work)"
    ))
}

/// The profiles file for a command that changes or reveals sessions: refused (exit status 2)
/// in read-only mode, before anything is read from the cache or sent.
pub(crate) fn load_writable(cli: &Cli, command: &str) -> Result<Profiles, Usage> {
    if cli.read_only {
        return Err(read_only_refusal(command, "--read-only"));
    }
    let profiles = load_for_command(cli, &profiles_path(cli)?)?;
    writable(cli, command, profiles)
}

/// `profiles`, unless read-only mode refuses `command`.
fn writable(cli: &Cli, command: &str, profiles: Profiles) -> Result<Profiles, Usage> {
    match read_only_source(cli, &profiles) {
        Some(source) => Err(read_only_refusal(command, &source)),
        None => Ok(profiles),
    }
}

/// What a command on one profile (`token`, `exec`, `api`) starts from: the profile that `name`
/// names, and an engine over the token cache; refused in read-only mode as [`load_writable`].
///
/// Scripts call these constantly, so through a valid snapshot only that profile is decoded, not
/// the thousands beside it. The store then gets the whole table of profiles (which only a cache
/// of the first release asks for) from the rest of the same snapshot, if it ever asks; and a name
/// the one profile does not answer (`acme>nobody`) is looked up again in the whole file, for its
/// closest names.
pub(crate) fn one_profile_engine(
    cli: &Cli,
    command: &str,
    name: &str,
) -> Result<(Arc<config::Profile>, Engine), Usage> {
    if cli.read_only {
        return Err(read_only_refusal(command, "--read-only"));
    }
    let path = profiles_path(cli)?;
    let state_dir = state_dir(cli);
    let only = name
        .parse::<crate::identity::ProfileId>()
        .ok()
        .map(|id| id.name().to_string());
    let (profiles, rest) = config::load_cached_for(&path, state_dir.as_deref(), only.as_deref())
        .map_err(|e| Usage(format!("{e}")))?;
    let profiles = writable(cli, command, profiles)?;
    let in_whole = |profiles: Profiles| {
        let engine = Engine::new(open_store(cli, &profiles)?, &profiles.settings);
        let p = commands::one_profile(&profiles, &engine, name)?;
        Ok((p, engine))
    };
    let Some(rest) = rest else {
        return in_whole(profiles);
    };
    let known = profiles.profiles.clone();
    let store = store_in(cli, cli_lock_policy(cli), move || {
        // A snapshot damaged where it was not read: the file as it is now, else this profile.
        rest.names()
            .or_else(|| config::load(&path).ok().map(|all| names_of(&all.profiles)))
            .unwrap_or_else(|| names_of(&known))
    })?;
    let engine = Engine::new(store, &profiles.settings);
    match commands::one_profile(&profiles, &engine, name) {
        Ok(p) => Ok((p, engine)),
        Err(_) => in_whole(load_writable(cli, command)?),
    }
}

/// The token cache, with lock waits bounded by `--lock-timeout` and told on a terminal, and the
/// profiles' client ids for reading a cache of the first release.
fn open_store(cli: &Cli, profiles: &Profiles) -> Result<Store, Usage> {
    open_store_with(cli, profiles, cli_lock_policy(cli))
}

/// Lock waits bounded by `--lock-timeout`, and told when stderr is a terminal.
fn cli_lock_policy(cli: &Cli) -> crate::store::LockPolicy {
    crate::store::LockPolicy {
        timeout: lock_timeout(cli),
        on_wait: Arc::new(|what: &str| {
            if std::io::stderr().is_terminal() {
                eprintln!("sugar-sessions: {what}");
            }
        }),
    }
}

/// `--lock-timeout`.
pub fn lock_timeout(cli: &Cli) -> std::time::Duration {
    std::time::Duration::from_secs_f64(cli.lock_timeout)
}

/// The token cache in `--state-dir` (else [`default_state_dir`]) with the given lock policy.
pub fn open_store_with(
    cli: &Cli,
    profiles: &Profiles,
    policy: crate::store::LockPolicy,
) -> Result<Store, Usage> {
    let all = profiles.profiles.clone();
    store_in(cli, policy, move || names_of(&all))
}

/// The token cache in `--state-dir` (else [`default_state_dir`]); `names` gives the profiles'
/// (name, client id, user) for reading a cache of the first release, and is called only then.
fn store_in(
    cli: &Cli,
    policy: crate::store::LockPolicy,
    names: impl Fn() -> Vec<(String, String, String)> + Send + Sync + 'static,
) -> Result<Store, Usage> {
    let dir = state_dir(cli).ok_or_else(|| {
        Usage("sugar-sessions: no home directory for the token cache: pass --state-dir DIR".into())
    })?;
    Ok(Store::open(dir)
        .map_err(|e| Usage(format!("sugar-sessions: {e}")))?
        .with_lock_policy(policy)
        .with_profile_names(names))
}

fn names_of(profiles: &[Arc<config::Profile>]) -> Vec<(String, String, String)> {
    profiles
        .iter()
        .map(|p| (p.name.clone(), p.client_id.clone(), p.username.clone()))
        .collect()
}

/// Leaves the profiles a read-only command read to the process's end, which is near (`main`
/// exits when the command returns): thousands of profiles freed one by one cost `list` a tenth
/// of its time, and the system takes the memory back at once. Profiles that hold a secret are
/// dropped, so that it is zeroized (as the sessions' tokens always are).
fn left_to_exit(profiles: Profiles) {
    if profiles.profiles.iter().any(|p| p.holds_secret()) {
        drop(profiles);
    } else {
        std::mem::forget(profiles);
    }
}

/// Runs a command without a screen; returns the exit status. `main.rs` opens the screen itself
/// (no command, or `demo`) and never passes those here.
pub async fn run(cli: &Cli) -> Result<i32, Usage> {
    match &cli.command {
        None | Some(Command::Demo) | Some(Command::Serve(_)) => {
            unreachable!("main.rs opens the screen and starts the daemon")
        }
        Some(Command::Emulator {
            port,
            write_profiles,
            force,
            tls,
        }) => emulator(*port, write_profiles.as_deref(), *force, *tls).await,
        Some(Command::List { json, origin }) => {
            let path = profiles_path(cli)?;
            // Through the snapshot when it holds: the profiles shown where they lie in it.
            let state_dir = state_dir(cli);
            if !*origin
                && config::with_listing(&path, state_dir.as_deref(), |profiles| {
                    list::list_listed(profiles, *json)
                })
                .is_some()
            {
                return Ok(exit::OK);
            }
            let profiles = if *origin {
                config::load_with_origins(&path).map_err(|e| Usage(format!("{e}")))?
            } else {
                load_for_command(cli, &path)?
            };
            list::list(&profiles, *json, *origin);
            left_to_exit(profiles);
            Ok(exit::OK)
        }
        Some(Command::Status { format, json }) => {
            let profiles = load_for_command(cli, &profiles_path(cli)?)?;
            let store = open_store(cli, &profiles)?;
            let format = if *json { StatusFormat::Json } else { *format };
            let status = status(&profiles, &store, format);
            left_to_exit(profiles);
            status
        }
        Some(Command::Login(l)) => act(cli, &l.targets, Op::Login, l.yes).await,
        Some(Command::Refresh(r)) if r.due => refresh_due(cli, &r.targets).await,
        Some(Command::Refresh(r)) => act(cli, &r.targets, Op::Refresh, false).await,
        Some(Command::Logout(t)) => act(cli, t, Op::Logout, false).await,
        Some(Command::Token { name }) => token(cli, name).await,
        Some(Command::Check(a)) => Ok(check::check(cli, a).await),
        Some(Command::Sudo { name, user, json }) => sudo(cli, name, user, *json).await,
        Some(Command::Exec(a)) => exec::exec(cli, a).await,
        Some(Command::Api(a)) => api::api(cli, a).await,
        Some(Command::Password(c)) => password::password(cli, c).await,
        Some(Command::Completions { shell }) => meta::completions(*shell),
        Some(Command::Man { out_dir }) => meta::man(out_dir.as_deref()),
        Some(Command::Paths { json }) => meta::paths(cli, *json),
    }
}
