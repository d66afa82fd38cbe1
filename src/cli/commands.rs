//! The commands without a screen: list, status, login, refresh, logout, token, check, sudo; which
//! profiles they act on, and Ctrl-C and password prompts while they run.

use super::output::print_outcomes;
use super::{Cli, Targets, Usage, load_profiles, open_store, profiles_path};
use crate::config::{PasswordSource, Profile, Profiles};
use crate::exit;
use crate::outcome::Outcome;
use crate::runtime::Engine;
use crate::secret::Secret;
use crate::session::{Entry, Op, State, rfc3339};
use crate::store::{Cache, Store};
use chrono::Utc;
use serde_json::json;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;

fn source_kind(p: &Profile) -> &'static str {
    match p.password {
        PasswordSource::Env(_) => "env",
        PasswordSource::Cmd(_) => "cmd",
        PasswordSource::Plain(_) => "plain",
        PasswordSource::Prompt => "prompt",
    }
}

pub(super) fn list(profiles: &Profiles, json: bool) {
    let warnings = crate::guard::warnings(&profiles.profiles);
    let warnings_of = |p: &Profile| -> Vec<String> {
        warnings
            .get(&p.name)
            .into_iter()
            .flatten()
            .map(|w| w.message(p))
            .collect()
    };
    if json {
        let rows: Vec<_> = profiles
            .profiles
            .iter()
            .map(|p| {
                json!({
                    "name": p.name, "url": p.url.as_str().trim_end_matches('/'), "api": p.api, "username": p.username,
                    "platform": p.platform, "client_id": p.client_id, "tags": p.tags, "password_source": source_kind(p),
                    "warnings": warnings_of(p), "insecure": p.insecure,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows).expect("json"));
        return;
    }
    // The name column is as wide as the longest name, up to 40: a longer name pushes its own line.
    let w = profiles
        .profiles
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 40);
    for p in &profiles.profiles {
        let tags = if p.tags.is_empty() {
            String::new()
        } else {
            format!("  [{}]", p.tags.join(", "))
        };
        println!(
            "{:w$}  {}  {} on {} (password: {}){tags}{}",
            p.name,
            p.url.as_str().trim_end_matches('/'),
            p.username,
            p.platform,
            source_kind(p),
            if p.insecure {
                "  INSECURE (certificates not checked)"
            } else {
                ""
            }
        );
        for warning in warnings_of(p) {
            println!("{:w$}  warning: {warning}", "");
        }
    }
}

/// The cache entry of a profile's session.
fn entry_for(p: &Profile, cache: &crate::store::Cache) -> Entry {
    cache.entry_or_default(&p.session_key())
}

pub(super) fn status(profiles: &Profiles, store: &Store, json: bool) -> Result<i32, Usage> {
    let cache = load_cache(store)?;
    let profiles = &with_impersonations(profiles, &cache);
    let now = Utc::now();
    let rows: Vec<(&Profile, Entry)> = profiles
        .profiles
        .iter()
        .map(|p| (p, entry_for(p, &cache)))
        .collect();
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(p, e)| {
                let s = e.session.as_ref();
                json!({
                    "name": p.name, "url": p.url.as_str().trim_end_matches('/'), "username": p.username, "platform": p.platform,
                    "tags": p.tags, "state": e.state(now).as_str(),
                    "reason": e.failure.as_ref().map(|f| f.render(&p.name)).or_else(|| e.reason(now)),
                    "obtained_at": s.map(|s| rfc3339(s.obtained_at)),
                    "expires_at": s.map(|s| rfc3339(s.expires_at)),
                    "refresh_expires_at": s.and_then(|s| s.refresh_token.as_ref().and(s.refresh_expires_at)).map(rfc3339),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
        return Ok(exit::OK);
    }
    // The name column is as wide as the longest name, up to 40: a longer name pushes its own line.
    let w = profiles
        .profiles
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 40);
    for (p, e) in &rows {
        let state = e.state(now);
        let mut line = format!("{:w$}  {:15}", p.name, state.words());
        if e.session.is_some() && matches!(state, State::Active | State::Expired | State::Error) {
            line.push_str(&format!("  {}", crate::runtime::describe(e, now)));
        }
        if let Some(r) = e.reason(now) {
            line.push_str(&format!("  ({r})"));
        }
        println!("{}", line.trim_end());
    }
    Ok(exit::OK)
}

/// The profiles named on the command line, in file order, each once.
fn select<'a>(
    profiles: &'a Profiles,
    t: &Targets,
    bulk_sudo: bool,
) -> Result<Vec<&'a Profile>, Usage> {
    if t.names.is_empty() && t.tags.is_empty() && !t.all {
        return Err(Usage(
            "sugar-sessions: name one or more profiles, or use --all or --tag TAG".into(),
        ));
    }
    let unknown: Vec<&str> = t
        .names
        .iter()
        .filter(|n| profiles.get(n).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = profiles
            .profiles
            .iter()
            .filter(|p| !p.is_impersonation())
            .map(|p| p.name.as_str())
            .collect();
        return Err(Usage(format!(
            "sugar-sessions: unknown profile{} {} in {} (known: {})",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", "),
            profiles.path.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )));
    }
    for tag in &t.tags {
        if !profiles.profiles.iter().any(|p| p.has_tag(tag)) {
            return Err(Usage(format!(
                "sugar-sessions: no profile has the tag {tag} in {}",
                profiles.path.display()
            )));
        }
    }
    Ok(profiles
        .profiles
        .iter()
        .filter(|p| {
            t.names.contains(&p.name)
                || ((t.all || t.tags.iter().any(|tag| p.has_tag(tag)))
                    && (bulk_sudo || !p.is_impersonation()))
        })
        .collect())
}

/// The file's profiles, each followed by the impersonations (`NAME>USER`) the cache holds for its
/// session.
fn with_impersonations(profiles: &Profiles, cache: &Cache) -> Profiles {
    let mut users: HashMap<crate::identity::SessionKey, Vec<&str>> = HashMap::new();
    for (key, entry) in &cache.sessions {
        if let Some(user) = &key.sudo
            && entry.session.is_some()
        {
            users.entry(key.without_sudo()).or_default().push(user);
        }
    }
    let mut out = Vec::with_capacity(profiles.profiles.len());
    for p in &profiles.profiles {
        out.push(p.clone());
        if users.is_empty() {
            continue;
        }
        for user in users.get(&p.session_key()).into_iter().flatten() {
            out.push(p.impersonation(user));
        }
    }
    Profiles {
        path: profiles.path.clone(),
        profiles: out,
        settings: profiles.settings.clone(),
    }
}

fn load_cache(store: &Store) -> Result<Cache, Usage> {
    let (cache, report) = store
        .load()
        .map_err(|e| Usage(format!("sugar-sessions: {e}")))?;
    if let Some(notice) = report.notice() {
        eprintln!("sugar-sessions: warning: {notice}");
    }
    Ok(cache)
}

/// Asks for a password on the terminal, without echo; `None` when there is no terminal.
/// Asks for a password on the terminal, without echo: `Ok(None)` when there is no terminal to ask
/// on (or nothing was typed), an error when the read failed (Ctrl-C interrupts it).
fn prompt_password(p: &Profile) -> std::io::Result<Option<Secret>> {
    if !std::io::stdin().is_terminal() && std::fs::File::open("/dev/tty").is_err() {
        return Ok(None);
    }
    let prompt = format!(
        "Password for {} ({} at {}): ",
        p.name,
        p.username,
        p.host_port()
    );
    let password = rpassword::prompt_password(prompt)?;
    Ok((!password.is_empty()).then(|| Secret::new(password)))
}

pub(super) async fn act(cli: &Cli, t: &Targets, op: Op) -> Result<i32, Usage> {
    let profiles = load_profiles(&profiles_path(cli)?)?;
    let store = open_store(cli, &profiles)?;
    let profiles = with_impersonations(&profiles, &load_cache(&store)?);
    let chosen = select(&profiles, t, op == Op::Logout)?;
    let engine = Arc::new(Engine::new(store, &profiles.settings));
    run_all(engine, chosen, op, t.json).await
}

/// `refresh --due`: exactly the sessions whose automatic refresh time has come.
pub(super) async fn refresh_due(cli: &Cli, t: &Targets) -> Result<i32, Usage> {
    let profiles = load_profiles(&profiles_path(cli)?)?;
    let chosen = if t.names.is_empty() && t.tags.is_empty() {
        profiles.profiles.iter().collect()
    } else {
        select(&profiles, t, false)?
    };
    let store = open_store(cli, &profiles)?;
    let engine = Arc::new(Engine::new(store, &profiles.settings));
    let cache = engine
        .cache()
        .await
        .map_err(|e| Usage(format!("sugar-sessions: {e}")))?;
    let now = Utc::now();
    let due: Vec<&Profile> = chosen
        .into_iter()
        .filter(|p| p.auto_refresh && refresh_due_at(p, &entry_for(p, &cache), now))
        .collect();
    run_all(engine, due, Op::Refresh, t.json).await
}

fn refresh_due_at(p: &Profile, entry: &Entry, now: chrono::DateTime<Utc>) -> bool {
    crate::session::refresh_due(&p.name, entry, p.refresh_before, now)
}

/// How long Ctrl-C waits for answers already on their way before the command ends.
const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs `op` on every profile concurrently and prints the outcomes in file order.
///
/// Ctrl-C withdraws the requests not sent yet and waits up to [`INTERRUPT_GRACE`] for the ones
/// already sent, so that a refresh token Sugar has already rotated is not lost (a second Ctrl-C
/// ends at once); the status is then 130.
async fn run_all(
    engine: Arc<Engine>,
    chosen: Vec<&Profile>,
    op: Op,
    json: bool,
) -> Result<i32, Usage> {
    // Listening before anything is asked or sent: from here on Ctrl-C is ours to handle.
    let mut interrupt = Interrupt::listen()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut jobs = Vec::with_capacity(chosen.len());
    let mut interrupted = false;
    for p in chosen {
        // Passwords that only a person can give are asked first, one profile at a time.
        let password = if op == Op::Login && p.password == PasswordSource::Prompt {
            match ask_password(p, &mut interrupt).await {
                Ok(pw) => pw,
                Err(Interrupted) => {
                    interrupted = true;
                    break;
                }
            }
        } else {
            None
        };
        let (engine, p, mut stopped) = (engine.clone(), p.clone(), stopped.clone());
        jobs.push(tokio::spawn(async move {
            tokio::select! {
                permit = engine.acquire(&p) => Ok(engine.execute(&p, op, password, permit).await),
                _ = async { drop(stopped.wait_for(|s| *s).await) } => Err(p.name.clone()),
            }
        }));
    }
    let mut all = Box::pin(futures::future::join_all(jobs));
    let results = if interrupted {
        let _ = stop.send(true);
        tokio::time::timeout(INTERRUPT_GRACE, &mut all).await.ok()
    } else {
        tokio::select! {
            results = &mut all => Some(results),
            _ = interrupt.recv() => {
                interrupted = true;
                let _ = stop.send(true);
                eprintln!(
                    "sugar-sessions: interrupted: waiting up to {} s for answers already on their way (Ctrl-C again to stop now)",
                    INTERRUPT_GRACE.as_secs()
                );
                tokio::select! {
                    results = tokio::time::timeout(INTERRUPT_GRACE, &mut all) => results.ok(),
                    _ = interrupt.recv() => None,
                }
            }
        }
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    for result in results.into_iter().flatten() {
        match result {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(name)) => eprintln!("{name}: not sent (interrupted)"),
            Err(e) => eprintln!("sugar-sessions: internal error: a task failed: {e}"),
        }
    }
    print_outcomes(&outcomes, json);
    Ok(if interrupted {
        exit::INTERRUPTED
    } else if outcomes.iter().all(|o| o.ok) {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// Ctrl-C at a password prompt.
struct Interrupted;

/// Asks for a profile's password on the terminal without echo. Ctrl-C puts the terminal's modes
/// back as they were before the prompt (echo on) and gives up.
async fn ask_password(
    p: &Profile,
    interrupt: &mut Interrupt,
) -> Result<Option<Secret>, Interrupted> {
    let saved = TtyModes::save();
    let profile = p.clone();
    let prompt = tokio::task::spawn_blocking(move || prompt_password(&profile));
    let give_up = || {
        if let Some(saved) = &saved {
            saved.restore();
        }
        eprintln!();
        Err(Interrupted)
    };
    tokio::select! {
        biased;
        _ = interrupt.recv() => give_up(),
        answer = prompt => match answer {
            Ok(Ok(pw)) => Ok(pw),
            // The read was cut short: by the Ctrl-C that the branch above is about to see.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                let _ = tokio::time::timeout(std::time::Duration::from_millis(200), interrupt.recv()).await;
                give_up()
            }
            Ok(Err(_)) | Err(_) => Ok(None),
        },
    }
}

/// SIGINT (Ctrl-C) as a stream, listened to from the moment it is made.
struct Interrupt(tokio::signal::unix::Signal);

impl Interrupt {
    fn listen() -> Result<Interrupt, Usage> {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map(Interrupt)
            .map_err(|e| Usage(format!("sugar-sessions: cannot listen for Ctrl-C: {e}")))
    }

    async fn recv(&mut self) {
        self.0.recv().await;
    }
}

/// The modes of the controlling terminal, to put back after an interrupted prompt.
struct TtyModes {
    tty: std::fs::File,
    modes: libc::termios,
}

impl TtyModes {
    fn save() -> Option<TtyModes> {
        use std::os::fd::AsRawFd;
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        // SAFETY: tcgetattr fills a plain C struct for an open file descriptor.
        let mut modes: libc::termios = unsafe { std::mem::zeroed() };
        (unsafe { libc::tcgetattr(tty.as_raw_fd(), &mut modes) } == 0)
            .then_some(TtyModes { tty, modes })
    }

    fn restore(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: sets the modes read by `save` on the same open terminal.
        unsafe {
            libc::tcsetattr(self.tty.as_raw_fd(), libc::TCSANOW, &self.modes);
        }
    }
}

pub(super) async fn token(cli: &Cli, name: &str) -> Result<i32, Usage> {
    let profiles = load_profiles(&profiles_path(cli)?)?;
    let targets = Targets {
        names: vec![name.to_string()],
        all: false,
        tags: vec![],
        json: false,
    };
    let store = open_store(cli, &profiles)?;
    let profiles = with_impersonations(&profiles, &load_cache(&store)?);
    let p = select(&profiles, &targets, false)?.remove(0).clone();
    let engine = Engine::new(store, &profiles.settings);
    match engine.token(&p).await {
        Ok(token) => {
            if let Some(note) = &token.note {
                eprintln!("{note}");
            }
            // Printed while the identity's lock is held: the stored, current token.
            println!("{}", token.session.access_token.expose());
            drop(token);
            Ok(exit::OK)
        }
        Err(crate::runtime::NoToken::NeedsLogin(msg)) => {
            eprintln!("{msg}");
            Ok(exit::NEEDS_LOGIN)
        }
        Err(crate::runtime::NoToken::Failed(msg)) => {
            eprintln!("{msg}");
            Ok(exit::FAILED)
        }
    }
}

pub(super) async fn check(cli: &Cli, t: &Targets) -> Result<i32, Usage> {
    let profiles = load_profiles(&profiles_path(cli)?)?;
    let store = open_store(cli, &profiles)?;
    let profiles = with_impersonations(&profiles, &load_cache(&store)?);
    let chosen = select(&profiles, t, true)?;
    let engine = Arc::new(Engine::new(store, &profiles.settings));
    let jobs: Vec<_> = chosen
        .into_iter()
        .map(|p| {
            let (engine, p) = (engine.clone(), p.clone());
            tokio::spawn(async move { engine.check(&p).await })
        })
        .collect();
    let mut all_ok = true;
    let mut rows = Vec::new();
    for job in jobs {
        let Ok((o, report)) = job.await else { continue };
        all_ok &= o.ok;
        if t.json {
            rows.push(json!({
                "name": o.name, "ok": o.ok, "state": o.state.as_str(), "message": o.message,
                "user_name": report.as_ref().map(|r| &r.user_name),
                "full_name": report.as_ref().map(|r| &r.full_name),
                "admin": report.as_ref().map(|r| r.admin),
                "flavor": report.as_ref().map(|r| &r.flavor),
                "version": report.as_ref().map(|r| &r.version),
                "clock_skew_s": report.as_ref().and_then(|r| r.skew_s),
                "latency_ms": report.as_ref().map(|r| r.latency_ms),
            }));
        } else {
            println!("{}", o.message);
        }
    }
    if t.json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("json"));
    }
    Ok(if all_ok { exit::OK } else { exit::FAILED })
}

pub(super) async fn sudo(cli: &Cli, name: &str, user: &str, json: bool) -> Result<i32, Usage> {
    let profiles = load_profiles(&profiles_path(cli)?)?;
    let targets = Targets {
        names: vec![name.to_string()],
        all: false,
        tags: vec![],
        json,
    };
    let p = select(&profiles, &targets, false)?.remove(0).clone();
    if !crate::identity::is_valid_user_name(user) {
        return Err(Usage(format!("sugar-sessions: not a user name: {user:?}")));
    }
    let engine = Engine::new(open_store(cli, &profiles)?, &profiles.settings);
    let o = engine.sudo(&p, user).await;
    print_outcomes(std::slice::from_ref(&o), json);
    Ok(if o.ok { exit::OK } else { exit::FAILED })
}
