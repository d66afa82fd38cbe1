//! The command line: clap definitions and the non-interactive commands.

use crate::config::{self, PasswordSource, Profile, Profiles};
use crate::engine::{Engine, Outcome, sudo_profile};
use crate::secret::Secret;
use crate::session::{Entry, Op, State, rfc3339};
use crate::store::Cache;
use crate::store::Store;
use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

// `println!` and `eprintln!` panic when the write fails: standard output is a pipe whose reader
// left (`sugar-sessions status | head -1`: Rust ignores SIGPIPE, so the write fails with EPIPE), or
// the terminal went away (EIO). Everything this module prints goes through these two instead,
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

/// Exit statuses (documented in README.md). The screen also ends with 128 + N on signal N
/// (143 SIGTERM, 129 SIGHUP or a terminal that went away, 130 SIGINT): see [`crate::tui::Ending`].
pub mod exit {
    /// Every profile succeeded.
    pub const OK: i32 = 0;
    /// At least one profile failed.
    pub const FAILED: i32 = 1;
    /// Bad usage, an unknown profile name, or a bad profiles file: nothing was done.
    pub const USAGE: i32 = 2;
    /// `token` only: a login is needed and no non-interactive password source can provide it.
    pub const NEEDS_LOGIN: i32 = 4;
    /// Ctrl-C (SIGINT) ended a command.
    pub const INTERRUPTED: i32 = 130;
    /// A panic (Rust's own status for one); the screen, if it was up, was restored first.
    pub const PANIC: i32 = 101;
}

#[derive(Parser, Debug)]
#[command(
    name = "sugar-sessions",
    version,
    about = "SugarCRM REST API OAuth2 sessions for many named profiles: a live screen, and commands for scripts",
    long_about = None,
    after_help = "Without a command, opens the screen over the profiles file (the built-in demo when there is none).\n\
                  Exit status: 0 all succeeded, 1 a profile failed, 2 bad usage or profiles file, 4 (token) a login is needed."
)]
pub struct Cli {
    /// The profiles file [default: profiles.toml in the config directory]
    #[arg(
        long,
        global = true,
        env = "SUGAR_SESSIONS_PROFILES",
        value_name = "FILE"
    )]
    pub profiles: Option<PathBuf>,
    /// Where the token cache lives [default: the platform's data directory]
    #[arg(
        long,
        global = true,
        env = "SUGAR_SESSIONS_STATE_DIR",
        value_name = "DIR"
    )]
    pub state_dir: Option<PathBuf>,
    /// ASCII symbols only on the screen (for terminals without UTF-8)
    #[arg(long, global = true)]
    pub ascii: bool,
    /// Give up waiting for a lock on the token cache (held by another process) after this long
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_lock_timeout)]
    pub lock_timeout: f64,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the profiles (no network)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show every profile's session from the token cache (no network)
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Log in (password grant)
    Login(Targets),
    /// Refresh (refresh-token grant)
    Refresh(RefreshArgs),
    /// Log out on the server and remove the local session
    Logout(Targets),
    /// Check sessions live: ping, who the user is, Sugar's version, the server's clock
    Check(Targets),
    /// With an admin session, get a session as another user (stored as NAME>USER)
    Sudo {
        /// The admin's profile
        name: String,
        /// The user to impersonate
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Print a usable access token: cached, refreshed, or from a new login
    Token {
        /// The profile
        name: String,
    },
    /// Run the built-in Sugar emulator in the foreground
    Emulator {
        /// Port on 127.0.0.1 (0: any free port)
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Write a profiles file for the emulator's demo users
        #[arg(long, value_name = "FILE")]
        write_profiles: Option<PathBuf>,
        /// Serve HTTPS with a certificate from a CA generated at start (its PEM is written beside
        /// the profiles file, or to a temporary directory, and named in the profiles file's ca_cert)
        #[arg(long)]
        tls: bool,
    },
    /// Open the screen on the built-in demo (an emulator with demo instances; nothing touches your cache)
    Demo,
}

#[derive(Args, Debug)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub targets: Targets,
    /// Only the sessions that are due for an automatic refresh (all profiles when none are named);
    /// for cron, without the screen
    #[arg(long)]
    pub due: bool,
}

#[derive(Args, Debug)]
pub struct Targets {
    /// Profile names
    pub names: Vec<String>,
    /// Every profile
    #[arg(long)]
    pub all: bool,
    /// Profiles with this tag (repeatable; adds to the names)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Print a JSON array of {name, ok, state, message}
    #[arg(long)]
    pub json: bool,
}

fn parse_lock_timeout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => Ok(s),
        _ => Err("a number of seconds from 0 to 86400".into()),
    }
}

/// A failure that ends the command before anything was done: printed, exit status 2.
struct Usage(String);

/// Parses the arguments and runs; returns the exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    limit_malloc_arenas();
    crate::logging::init(cli.state_dir.clone().or_else(default_state_dir).as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sugar-sessions: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    // A panic that reaches here has restored the terminal and printed its message (the hook
    // installed by the screen, or Rust's own); caught only so that the runtime below is shut
    // down with a time limit instead of dropped, which would wait for blocking tasks.
    let run = std::panic::AssertUnwindSafe(|| runtime.block_on(dispatch(cli)));
    let code = std::panic::catch_unwind(run).unwrap_or(exit::PANIC);
    // Tasks still running (requests abandoned at exit) must not hold the process.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

async fn dispatch(cli: Cli) -> i32 {
    match run(cli).await {
        Ok(code) => code,
        Err(Usage(msg)) => {
            eprintln!("{msg}");
            exit::USAGE
        }
    }
}

/// glibc gives each thread that allocates while another holds the arena an arena of its own (up
/// to 8 per core), and every arena keeps the memory it once held: with the dozens of blocking-pool
/// threads of a bulk action (cache reads and writes, profile locks) that nearly doubled its peak
/// memory. Two arenas are enough for a program that mostly waits on the network. And buffers of
/// 128 KiB and more (the token cache read and written whole) always get pages of their own, given
/// back when freed, instead of glibc raising that threshold after the first such free and then
/// leaving holes in the heap.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets parameters of the allocator; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// The default profiles file: `profiles.toml` in the platform's config directory.
pub fn default_profiles_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "sugar-sessions")
        .map(|d| d.config_dir().join("profiles.toml"))
}

fn default_state_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "sugar-sessions").map(|d| d.data_dir().to_path_buf())
}

fn profiles_path(cli: &Cli) -> Result<PathBuf, Usage> {
    cli.profiles
        .clone()
        .or_else(default_profiles_path)
        .ok_or_else(|| Usage("sugar-sessions: no home directory to find the profiles file in: pass --profiles FILE".into()))
}

fn load_profiles(path: &Path) -> Result<Profiles, Usage> {
    config::load(path).map_err(|e| Usage(format!("{e}")))
}

/// The token cache, with lock waits bounded by `--lock-timeout` and told on a terminal, and the
/// profiles' client ids for reading a cache of the first release.
fn open_store(cli: &Cli, profiles: &Profiles) -> Result<Store, Usage> {
    let policy = crate::store::LockPolicy {
        timeout: lock_timeout(cli),
        on_wait: Arc::new(|what: &str| {
            if std::io::stderr().is_terminal() {
                eprintln!("sugar-sessions: {what}");
            }
        }),
    };
    open_store_with(cli, profiles, policy)
}

fn lock_timeout(cli: &Cli) -> std::time::Duration {
    std::time::Duration::from_secs_f64(cli.lock_timeout)
}

fn open_store_with(
    cli: &Cli,
    profiles: &Profiles,
    policy: crate::store::LockPolicy,
) -> Result<Store, Usage> {
    let dir = cli
        .state_dir
        .clone()
        .or_else(default_state_dir)
        .ok_or_else(|| {
            Usage(
                "sugar-sessions: no home directory for the token cache: pass --state-dir DIR"
                    .into(),
            )
        })?;
    let names = profiles
        .profiles
        .iter()
        .map(|p| (p.name.clone(), p.client_id.clone(), p.username.clone()));
    Ok(Store::open(dir)
        .map_err(|e| Usage(format!("sugar-sessions: {e}")))?
        .with_lock_policy(policy)
        .with_profile_names(names))
}

async fn run(cli: Cli) -> Result<i32, Usage> {
    match &cli.command {
        None => screen(&cli).await,
        Some(Command::Demo) => demo(&cli).await,
        Some(Command::Emulator {
            port,
            write_profiles,
            tls,
        }) => emulator(*port, write_profiles.as_deref(), *tls).await,
        Some(Command::List { json }) => {
            let profiles = load_profiles(&profiles_path(&cli)?)?;
            list(&profiles, *json);
            Ok(exit::OK)
        }
        Some(Command::Status { json }) => {
            let profiles = load_profiles(&profiles_path(&cli)?)?;
            let store = open_store(&cli, &profiles)?;
            status(&profiles, &store, *json)
        }
        Some(Command::Login(t)) => act(&cli, t, Op::Login).await,
        Some(Command::Refresh(r)) if r.due => refresh_due(&cli, &r.targets).await,
        Some(Command::Refresh(r)) => act(&cli, &r.targets, Op::Refresh).await,
        Some(Command::Logout(t)) => act(&cli, t, Op::Logout).await,
        Some(Command::Token { name }) => token(&cli, name).await,
        Some(Command::Check(t)) => check(&cli, t).await,
        Some(Command::Sudo { name, user, json }) => sudo(&cli, name, user, *json).await,
    }
}

fn source_kind(p: &Profile) -> &'static str {
    match p.password {
        PasswordSource::Env(_) => "env",
        PasswordSource::Cmd(_) => "cmd",
        PasswordSource::Plain(_) => "plain",
        PasswordSource::Prompt => "prompt",
    }
}

fn list(profiles: &Profiles, json: bool) {
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

fn status(profiles: &Profiles, store: &Store, json: bool) -> Result<i32, Usage> {
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
            line.push_str(&format!("  {}", crate::engine::describe(e, now)));
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
            .map(|p| p.name.as_str())
            .filter(|n| !n.contains('>'))
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
                    && (bulk_sudo || !p.name.contains('>')))
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
            out.push(sudo_profile(p, user));
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

async fn act(cli: &Cli, t: &Targets, op: Op) -> Result<i32, Usage> {
    let profiles = load_profiles(&profiles_path(cli)?)?;
    let store = open_store(cli, &profiles)?;
    let profiles = with_impersonations(&profiles, &load_cache(&store)?);
    let chosen = select(&profiles, t, op == Op::Logout)?;
    let engine = Arc::new(Engine::new(store, &profiles.settings));
    run_all(engine, chosen, op, t.json).await
}

/// `refresh --due`: exactly the sessions whose automatic refresh time has come.
async fn refresh_due(cli: &Cli, t: &Targets) -> Result<i32, Usage> {
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

fn print_outcomes(outcomes: &[Outcome], json: bool) {
    let mut out = std::io::stdout().lock();
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

async fn token(cli: &Cli, name: &str) -> Result<i32, Usage> {
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
        Err(crate::engine::NoToken::NeedsLogin(msg)) => {
            eprintln!("{msg}");
            Ok(exit::NEEDS_LOGIN)
        }
        Err(crate::engine::NoToken::Failed(msg)) => {
            eprintln!("{msg}");
            Ok(exit::FAILED)
        }
    }
}

async fn start_demo_emulator(port: u16) -> Result<crate::emulator::Emulator, Usage> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    crate::emulator::Emulator::start(crate::emulator::demo_config(), addr)
        .await
        .map_err(|e| {
            Usage(format!(
                "sugar-sessions: cannot start the emulator on {addr}: {e}"
            ))
        })
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

async fn emulator(port: u16, write_profiles: Option<&Path>, tls: bool) -> Result<i32, Usage> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let config = crate::emulator::demo_config();
    let emu = if tls {
        let options = crate::emulator::TlsOptions::default();
        crate::emulator::Emulator::start_tls(config.clone(), addr, options).await
    } else {
        crate::emulator::Emulator::start(config.clone(), addr).await
    }
    .map_err(|e| {
        Usage(format!(
            "sugar-sessions: cannot start the emulator on {addr}: {e}"
        ))
    })?;
    // With TLS, the CA's certificate goes where a profiles file can name it.
    let mut _ca_dir = None;
    let ca_path = match emu.ca_pem() {
        None => None,
        Some(pem) => {
            let dir = match write_profiles.and_then(Path::parent) {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                Some(_) => PathBuf::from("."),
                None => {
                    let tmp = tempfile::Builder::new()
                        .prefix("sugar-sessions-emulator-")
                        .tempdir()
                        .map_err(|e| {
                            Usage(format!(
                                "sugar-sessions: cannot create a temporary directory: {e}"
                            ))
                        })?;
                    let path = tmp.path().to_path_buf();
                    _ca_dir = Some(tmp);
                    path
                }
            };
            let path = dir.join("emulator-ca.pem");
            std::fs::write(&path, pem).map_err(|e| {
                Usage(format!(
                    "sugar-sessions: cannot write {}: {e}",
                    path.display()
                ))
            })?;
            Some(std::fs::canonicalize(&path).unwrap_or(path))
        }
    };
    println!(
        "Sugar emulator listening on {}://{}",
        emu.scheme(),
        emu.addr()
    );
    if let Some(ca) = &ca_path {
        println!(
            "  its CA certificate: {} (name it in ca_cert, or pass it to curl --cacert)",
            ca.display()
        );
    }
    for inst in &config.instances {
        let mode = if inst.maintenance {
            "  (maintenance mode)"
        } else {
            ""
        };
        println!("  instance {:14} {}{mode}", inst.name, emu.url(&inst.name));
        for u in &inst.users {
            println!(
                "    user {:14} password {:14}{}",
                u.user_name,
                u.password,
                if u.admin { " (admin)" } else { "" }
            );
        }
        println!(
            "    platforms: base, mobile, portal, {}",
            inst.platforms.join(", ")
        );
    }
    if let Some(path) = write_profiles {
        let mut text = crate::emulator::demo_profiles_toml(&emu);
        if let Some(ca) = &ca_path {
            let line = format!(
                "[defaults]\nca_cert = {}\n",
                toml::Value::from(ca.display().to_string())
            );
            text = text.replacen("[defaults]\n", &line, 1);
        }
        write_private(path, &text).map_err(|e| {
            Usage(format!(
                "sugar-sessions: cannot write {}: {e}",
                path.display()
            ))
        })?;
        println!(
            "Wrote a profiles file for these users to {}",
            path.display()
        );
        println!(
            "Try: sugar-sessions --profiles {} login --all",
            path.display()
        );
    }
    println!("Ctrl-C stops the emulator.");
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    emu.shutdown().await;
    Ok(exit::OK)
}

async fn screen(cli: &Cli) -> Result<i32, Usage> {
    let path = profiles_path(cli)?;
    if cli.profiles.is_none() && !path.exists() {
        return run_demo(cli, Some(path)).await;
    }
    let profiles = load_profiles(&path)?;
    let (policy, notices) = crate::tui::notice_channel(lock_timeout(cli));
    let store = open_store_with(cli, &profiles, policy)?;
    let engine = Arc::new(Engine::new(store, &profiles.settings));
    let opts = crate::tui::TuiOptions {
        profiles,
        source: crate::tui::Source::File(path),
        ascii: cli.ascii,
        notices: Some(notices),
    };
    finish_screen(crate::tui::run(engine, opts).await)
}

async fn demo(cli: &Cli) -> Result<i32, Usage> {
    run_demo(cli, None).await
}

/// The demo: an emulator on a random port, a profiles file and a state directory in a temporary
/// directory (never the user's cache), and the screen over them.
async fn run_demo(cli: &Cli, missing_profiles: Option<PathBuf>) -> Result<i32, Usage> {
    let emu = start_demo_emulator(0).await?;
    let dir = tempfile::Builder::new()
        .prefix("sugar-sessions-demo-")
        .tempdir()
        .map_err(|e| {
            Usage(format!(
                "sugar-sessions: cannot create a temporary directory for the demo: {e}"
            ))
        })?;
    let path = dir.path().join("profiles.toml");
    write_private(&path, &crate::emulator::demo_profiles_toml(&emu)).map_err(|e| {
        Usage(format!(
            "sugar-sessions: cannot write the demo profiles: {e}"
        ))
    })?;
    let profiles = load_profiles(&path)?;
    let (policy, notices) = crate::tui::notice_channel(lock_timeout(cli));
    let store = Store::open(dir.path().join("state"))
        .map_err(|e| Usage(format!("sugar-sessions: {e}")))?
        .with_lock_policy(policy);
    let engine = Arc::new(Engine::new(store, &profiles.settings));
    let hint = missing_profiles
        .or_else(default_profiles_path)
        .unwrap_or_else(|| PathBuf::from("profiles.toml"));
    let opts = crate::tui::TuiOptions {
        profiles,
        source: crate::tui::Source::Demo {
            profiles_hint: hint,
        },
        ascii: cli.ascii,
        notices: Some(notices),
    };
    let result = finish_screen(crate::tui::run(engine, opts).await);
    emu.shutdown().await;
    result
}

fn finish_screen(result: anyhow::Result<crate::tui::Ending>) -> Result<i32, Usage> {
    match result {
        Ok(ending) => Ok(ending.exit_status()),
        Err(e) => {
            eprintln!("sugar-sessions: {e:#}");
            Ok(exit::FAILED)
        }
    }
}

async fn check(cli: &Cli, t: &Targets) -> Result<i32, Usage> {
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

async fn sudo(cli: &Cli, name: &str, user: &str, json: bool) -> Result<i32, Usage> {
    let profiles = load_profiles(&profiles_path(cli)?)?;
    let targets = Targets {
        names: vec![name.to_string()],
        all: false,
        tags: vec![],
        json,
    };
    let p = select(&profiles, &targets, false)?.remove(0).clone();
    if user.is_empty() || user.contains('>') {
        return Err(Usage(format!("sugar-sessions: not a user name: {user:?}")));
    }
    let engine = Engine::new(open_store(cli, &profiles)?, &profiles.settings);
    let o = engine.sudo(&p, user).await;
    print_outcomes(std::slice::from_ref(&o), json);
    Ok(if o.ok { exit::OK } else { exit::FAILED })
}
