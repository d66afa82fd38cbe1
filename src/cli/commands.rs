//! The commands without a screen: list, status, login, refresh, logout, token, check, sudo; which
//! profiles they act on, and Ctrl-C and password prompts while they run.

use super::bulk::run_jobs;
use super::output::{Summary, print_outcomes, stdout_buffered};
use super::{Cli, StatusFormat, Targets, Usage, load_writable, open_store};
use crate::config::{Profile, Profiles};
use crate::exit;
use crate::runtime::{CacheReader, Engine};
use crate::session::{Entry, Op, State, rfc3339};
use crate::store::{Cache, Store};
use chrono::{DateTime, Utc};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;

/// The cache entry of a profile's session.
fn entry_for(p: &Profile, cache: &crate::store::Cache) -> Entry {
    cache.entry_or_default(&p.session_key())
}

/// One row of `status --json`, borrowed from the profile and the cache.
#[derive(serde::Serialize)]
struct StatusRow<'a> {
    name: &'a str,
    url: &'a str,
    username: &'a str,
    platform: &'a str,
    tags: &'a [String],
    state: &'static str,
    reason: Option<String>,
    obtained_at: Option<String>,
    expires_at: Option<String>,
    refresh_expires_at: Option<String>,
}

fn status_row<'a>(p: &'a Profile, e: &'a Entry, now: DateTime<Utc>) -> StatusRow<'a> {
    let s = e.session.as_ref();
    StatusRow {
        name: &p.name,
        url: p.url.as_str().trim_end_matches('/'),
        username: &p.username,
        platform: &p.platform,
        tags: &p.tags,
        state: e.state(now).as_str(),
        reason: e
            .failure
            .as_ref()
            .map(|f| f.render(&p.name))
            .or_else(|| e.reason(now)),
        obtained_at: s.map(|s| rfc3339(s.obtained_at)),
        expires_at: s.map(|s| rfc3339(s.expires_at)),
        refresh_expires_at: s
            .and_then(crate::session::Session::refresh_expiry)
            .map(rfc3339),
    }
}

/// The rows of `status --json`, each made as it is written: ten thousand rows are never held at
/// once.
struct StatusRows<'r, 'a>(&'r [(&'a Profile, &'a Entry)], DateTime<Utc>);

impl serde::Serialize for StatusRows<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|&(p, e)| status_row(p, e, self.1)))
    }
}

/// The `status --json` document (also the daemon's `/status`): an array of one object per
/// profile, pretty-printed, with a final newline.
pub fn status_document(rows: &[(&Profile, &Entry)], now: DateTime<Utc>) -> Vec<u8> {
    let mut out = Vec::new();
    write_status_document(&mut out, rows, now).expect("rows serialise into memory");
    out
}

/// [`status_document`] written as it is made (a few megabytes at ten thousand profiles).
fn write_status_document(
    mut out: impl Write,
    rows: &[(&Profile, &Entry)],
    now: DateTime<Utc>,
) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut out, &StatusRows(rows, now))?;
    out.write_all(b"\n")
}

pub(super) fn status(
    profiles: &Profiles,
    store: &Store,
    format: StatusFormat,
) -> Result<i32, Usage> {
    let cache = load_cache(&CacheReader::new(store.clone()))?;
    let in_file = profiles.profiles.len();
    let profiles = &*with_impersonations(profiles, &cache);
    let now = Utc::now();
    if format == StatusFormat::Prometheus {
        let text = crate::metrics::sessions_text(&profiles.profiles, in_file, &cache, now);
        let mut out = stdout_buffered();
        let _ = out.write_all(&text);
        return Ok(exit::OK);
    }
    let json = format == StatusFormat::Json;
    let empty = Entry::default();
    let rows: Vec<(&Profile, &Entry)> = profiles
        .profiles
        .iter()
        .map(|p| (&**p, cache.entry(&p.session_key()).unwrap_or(&empty)))
        .collect();
    if json {
        // What cannot be written is dropped, as by `println!` here (output.rs).
        let _ = write_status_document(stdout_buffered(), &rows, now);
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
    let mut out = stdout_buffered();
    if std::io::stdout().is_terminal() {
        let _ = writeln!(out, "{:w$}  {:15}  DETAILS", "NAME", "STATE");
    }
    for &(p, e) in &rows {
        let state = e.state(now);
        let mut line = format!("{:w$}  {:15}", p.name, state.words());
        if e.session.is_some() && matches!(state, State::Active | State::Expired | State::Error) {
            line.push_str(&format!("  {}", crate::runtime::describe(e, now)));
        }
        if let Some(r) = e.reason(now) {
            line.push_str(&format!("  ({r})"));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    Ok(exit::OK)
}

/// The profiles named on the command line, in file order, each once.
pub fn select<'a>(
    profiles: &'a Profiles,
    t: &Targets,
    bulk_sudo: bool,
) -> Result<Vec<&'a Arc<Profile>>, Usage> {
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
        // A file of thousands of profiles is not listed in full: the closest names of each
        // unknown one, else the first few and `sugar-sessions list`.
        const SHOWN: usize = 8;
        let suggestions: Vec<(&str, Vec<&str>)> = unknown
            .iter()
            .map(|u| (*u, crate::config::close_names(u, &known)))
            .filter(|(_, close)| !close.is_empty())
            .collect();
        let or_list = |names: &[&str]| match names {
            [] => String::new(),
            [one] => one.to_string(),
            [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
        };
        let hint = match (suggestions.as_slice(), known.len()) {
            (_, 0) => "known: none".to_string(),
            ([(_, close)], _) if unknown.len() == 1 => {
                format!("did you mean {}?", or_list(close))
            }
            ([], n) if n <= SHOWN => format!("known: {}", known.join(", ")),
            ([], n) => format!(
                "known: {}, and {} more: `sugar-sessions list`",
                known[..SHOWN].join(", "),
                n - SHOWN
            ),
            (some, _) => some
                .iter()
                .map(|(u, close)| format!("{u}: did you mean {}?", or_list(close)))
                .collect::<Vec<_>>()
                .join("; "),
        };
        return Err(Usage(format!(
            "sugar-sessions: unknown profile{} {} in {} ({hint})",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", "),
            profiles.path.display(),
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
pub fn with_impersonations<'a>(profiles: &'a Profiles, cache: &Cache) -> Cow<'a, Profiles> {
    let mut users: HashMap<crate::identity::SessionKey, Vec<&str>> = HashMap::new();
    for (key, entry) in &cache.sessions {
        if let Some(user) = &key.sudo
            && entry.session.is_some()
        {
            users.entry(key.without_sudo()).or_default().push(user);
        }
    }
    if users.is_empty() {
        return Cow::Borrowed(profiles);
    }
    let mut out = Vec::with_capacity(profiles.profiles.len());
    for p in &profiles.profiles {
        out.push(p.clone());
        for user in users.get(&p.session_key()).into_iter().flatten() {
            out.push(Arc::new(p.impersonation(user)));
        }
    }
    Cow::Owned(Profiles {
        path: profiles.path.clone(),
        profiles: out,
        settings: profiles.settings.clone(),
        files: profiles.files.clone(),
        dirs: profiles.dirs.clone(),
        origins: profiles.origins.clone(),
    })
}

/// The cache through the one reader; what reading found goes to stderr.
pub(super) fn load_cache(reader: &CacheReader) -> Result<Arc<Cache>, Usage> {
    let read = reader
        .read()
        .map_err(|e| Usage(format!("sugar-sessions: {e}")))?;
    for notice in read.notices {
        eprintln!("sugar-sessions: warning: {notice}");
    }
    Ok(read.cache)
}

/// Before a login: the platform guard's warnings of the chosen profiles on stderr (in `list`'s
/// words), and on a terminal one question for all of them (`yes` skips it). Returns the profiles
/// to log in: without those the person declined.
async fn guard_logins(
    profiles: &Profiles,
    mut chosen: Vec<Arc<Profile>>,
    yes: bool,
) -> Vec<Arc<Profile>> {
    let warnings = crate::guard::warnings(&profiles.profiles);
    let flagged: Vec<String> = chosen
        .iter()
        .filter(|p| warnings.contains_key(&p.name))
        .map(|p| p.name.clone())
        .collect();
    for p in chosen.iter().filter(|p| warnings.contains_key(&p.name)) {
        for w in &warnings[&p.name] {
            eprintln!("{}: warning: {}", p.name, w.message(p));
        }
    }
    let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if flagged.is_empty() || yes || !terminal {
        return chosen;
    }
    let question = format!(
        "Log in on {} anyway? [y/N] (--yes skips this question) ",
        flagged.join(", ")
    );
    let confirmed = tokio::task::spawn_blocking(move || confirm(&question))
        .await
        .unwrap_or(false);
    if !confirmed {
        for name in &flagged {
            eprintln!("{name}: not logged in (not confirmed)");
        }
        chosen.retain(|p| !flagged.contains(&p.name));
    }
    chosen
}

/// Asks a yes/no question on stderr, read from stdin: only `y` or `yes` is yes.
fn confirm(question: &str) -> bool {
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{question}");
    let _ = stderr.flush();
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// `login` (see [`guard_logins`]), `refresh` or `logout` of the chosen profiles. `yes`: log in
/// without asking about the platform guard's warnings.
pub(super) async fn act(cli: &Cli, t: &Targets, op: Op, yes: bool) -> Result<i32, Usage> {
    let profiles = load_writable(cli, op.as_str())?;
    let engine = Arc::new(Engine::new(open_store(cli, &profiles)?, &profiles.settings));
    let profiles = with_impersonations(&profiles, &*load_cache(engine.reader())?);
    let mut chosen: Vec<Arc<Profile>> = select(&profiles, t, op == Op::Logout)?
        .into_iter()
        .cloned()
        .collect();
    let asked = chosen.len();
    if op == Op::Login {
        chosen = guard_logins(&profiles, chosen, yes).await;
        if chosen.is_empty() {
            return Ok(exit::FAILED);
        }
    }
    let code = run_all(engine, chosen.clone(), op, t.json).await?;
    // A profile left out (not confirmed) was not logged in: as a failure, for scripts.
    Ok(if code == exit::OK && chosen.len() < asked {
        exit::FAILED
    } else {
        code
    })
}

/// `refresh --due`: exactly the sessions whose automatic refresh time has come.
pub(super) async fn refresh_due(cli: &Cli, t: &Targets) -> Result<i32, Usage> {
    let profiles = load_writable(cli, "refresh --due")?;
    let chosen = if t.names.is_empty() && t.tags.is_empty() {
        profiles.profiles.iter().collect()
    } else {
        select(&profiles, t, false)?
    };
    let engine = Arc::new(Engine::new(open_store(cli, &profiles)?, &profiles.settings));
    let cache = load_cache(engine.reader())?;
    let now = Utc::now();
    let due: Vec<Arc<Profile>> = chosen
        .into_iter()
        .filter(|p| p.auto_refresh && refresh_due_at(p, &entry_for(p, &cache), now))
        .cloned()
        .collect();
    if due.is_empty() {
        // Said, so that a cron job's mail (or a person) can tell it ran.
        print_outcomes(&[], t.json);
        if !t.json {
            println!("nothing due");
        }
        return Ok(exit::OK);
    }
    // Each refresh decided again under its identity's lock.
    run_all_of(engine, due, Op::Refresh, true, t.json).await
}

fn refresh_due_at(p: &Profile, entry: &Entry, now: chrono::DateTime<Utc>) -> bool {
    crate::session::refresh_due(&p.name, entry, p.refresh_before, now)
}

/// Runs `op` on every profile concurrently and prints the outcomes in file order (see
/// [`run_jobs`]); the status is 130 after Ctrl-C.
async fn run_all(
    engine: Arc<Engine>,
    chosen: Vec<Arc<Profile>>,
    op: Op,
    json: bool,
) -> Result<i32, Usage> {
    run_all_of(engine, chosen, op, false, json).await
}

async fn run_all_of(
    engine: Arc<Engine>,
    chosen: Vec<Arc<Profile>>,
    op: Op,
    due: bool,
    json: bool,
) -> Result<i32, Usage> {
    let finished = run_jobs(engine, chosen, op, due).await?;
    let outcomes: Vec<Summary> = finished.outcomes.into_iter().map(|(o, _)| o).collect();
    print_outcomes(&outcomes, json);
    Ok(if finished.interrupted {
        exit::INTERRUPTED
    } else if outcomes.iter().all(|o| o.ok) {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// The profile a command for one profile names (`acme`, or an impersonation the cache holds,
/// `acme>jim`).
pub(super) fn one_profile(
    profiles: &Profiles,
    engine: &Engine,
    name: &str,
) -> Result<Arc<Profile>, Usage> {
    let targets = Targets {
        names: vec![name.to_string()],
        all: false,
        tags: vec![],
        json: false,
    };
    // A profile's own session needs only its entry (read alone in `Engine::token`); an
    // impersonation's label is known from the cache's sudo sessions.
    let id: crate::identity::ProfileId = name
        .parse()
        .map_err(|e| Usage(format!("sugar-sessions: {e}")))?;
    Ok(if id.sudo().is_some() {
        let profiles = with_impersonations(profiles, &*load_cache(engine.reader())?);
        select(&profiles, &targets, false)?.remove(0).clone()
    } else {
        select(profiles, &targets, false)?.remove(0).clone()
    })
}

pub(super) async fn token(cli: &Cli, name: &str) -> Result<i32, Usage> {
    let (p, engine) = super::one_profile_engine(cli, "token", name)?;
    let result = engine.token(&p).await;
    for notice in engine.reader().take_notices() {
        eprintln!("sugar-sessions: warning: {notice}");
    }
    match result {
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

pub(super) async fn sudo(cli: &Cli, name: &str, user: &str, json: bool) -> Result<i32, Usage> {
    let profiles = load_writable(cli, "sudo")?;
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
    let ok = o.ok;
    print_outcomes(&[Summary::from(o)], json);
    Ok(if ok { exit::OK } else { exit::FAILED })
}
