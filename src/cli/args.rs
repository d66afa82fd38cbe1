//! The clap definitions: the global options and the commands with their arguments.

use clap::{Args, Parser, Subcommand};
use clap_complete::ArgValueCandidates;
use std::path::PathBuf;

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
    // The environment variables are read by `profiles_file` and `state_dir`, not by clap: clap
    // would show an option set from the environment in usage lines as if it had to be given.
    /// The profiles file [env: SUGAR_SESSIONS_PROFILES] [default: profiles.toml in the config
    /// directory]
    #[arg(long, global = true, value_name = "FILE")]
    pub profiles: Option<PathBuf>,
    /// Where the token cache lives [env: SUGAR_SESSIONS_STATE_DIR] [default: the platform's data
    /// directory]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// ASCII symbols only on the screen (for terminals without UTF-8)
    #[arg(long, global = true)]
    pub ascii: bool,
    /// Give up waiting for a lock on the token cache (held by another process) after this long
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_lock_timeout)]
    pub lock_timeout: f64,
    /// Only show sessions (a shared dashboard): the screen never logs in or out, copies or shows a
    /// token; login, logout, refresh, sudo, token, exec, api and serve's broker refuse (also set by
    /// read_only = true in [defaults])
    #[arg(long, global = true)]
    pub read_only: bool,
    /// With read-only: still refresh the sessions that are due (the screen, serve)
    #[arg(long, global = true)]
    pub keep_alive: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The command line's definition: [`Cli`]'s, with the global options that `demo` and `emulator`
/// never read left out of their help (a help that lists `--profiles` for the demo misleads).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    // Global options reach each subcommand as it is built, except where one of the same id is
    // there already: a hidden copy.
    let unread: [(&str, &[&str]); 2] = [
        ("demo", &["profiles", "state_dir"]),
        (
            "emulator",
            &[
                "profiles",
                "state_dir",
                "ascii",
                "lock_timeout",
                "read_only",
                "keep_alive",
            ],
        ),
    ];
    for (sub, ids) in unread {
        let hidden: Vec<clap::Arg> = cmd
            .get_arguments()
            .filter(|a| ids.contains(&a.get_id().as_str()))
            .map(|a| a.clone().hide(true))
            .collect();
        cmd = cmd.mut_subcommand(sub, |c| c.args(hidden));
    }
    cmd
}

/// Parses the arguments with [`command`].
pub fn parse_from(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let matches = command().try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// An environment variable's value as a path; unset or empty: none.
fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Cli {
    /// The profiles file named by `--profiles`, else by `SUGAR_SESSIONS_PROFILES`.
    pub fn profiles_file(&self) -> Option<PathBuf> {
        self.profiles
            .clone()
            .or_else(|| env_path("SUGAR_SESSIONS_PROFILES"))
    }

    /// The state directory named by `--state-dir`, else by `SUGAR_SESSIONS_STATE_DIR`.
    pub fn state_dir(&self) -> Option<PathBuf> {
        self.state_dir
            .clone()
            .or_else(|| env_path("SUGAR_SESSIONS_STATE_DIR"))
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the profiles (no network)
    List {
        /// Print a JSON array of {name, url, api, username, platform, client_id, tags,
        /// password_source, warnings, insecure} (and origin, with --origin)
        #[arg(long)]
        json: bool,
        /// Show which file and line each key of a profile came from (with includes: the
        /// catalogue, an overlay, a [defaults])
        #[arg(long)]
        origin: bool,
    },
    /// Show every profile's session from the token cache (no network)
    Status {
        /// table for people, json for scripts, prometheus for a textfile collector or a scrape
        #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
        format: StatusFormat,
        /// The same as --format json
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
    /// Log in (password grant)
    Login(LoginArgs),
    /// Refresh (refresh-token grant)
    Refresh(RefreshArgs),
    /// Log out on the server and remove the local session
    Logout(Targets),
    /// A monitoring check (Nagios, Icinga, Zabbix, Sensu): checks the sessions live (or from the
    /// cache with --offline) and exits 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    Check(CheckArgs),
    /// With an admin session, get a session as another user (stored as NAME>USER)
    Sudo {
        /// The admin's profile
        #[arg(add = ArgValueCandidates::new(super::profile_candidates))]
        name: String,
        /// The user to impersonate
        user: String,
        /// Print a JSON array of {name, ok, state, message, expires_at}
        #[arg(long)]
        json: bool,
    },
    /// Print a usable access token: cached, refreshed, or from a new login
    Token {
        /// The profile
        #[arg(add = ArgValueCandidates::new(super::profile_candidates))]
        name: String,
    },
    /// Run a command with a usable token in its environment: SUGAR_URL (the REST root),
    /// SUGAR_TOKEN, SUGAR_TOKEN_EXPIRES (RFC 3339), SUGAR_PLATFORM, SUGAR_PROFILE
    #[command(
        override_usage = "sugar-sessions exec [OPTIONS] <NAME> -- <CMD> [ARGS]...",
        after_help = "The command replaces sugar-sessions (exec): its signals and exit status are its own.\n\
                      Example: sugar-sessions exec acme -- sh -c 'curl -sH \"OAuth-Token: $SUGAR_TOKEN\" \"$SUGAR_URL/me\"'"
    )]
    Exec(ExecArgs),
    /// One authenticated request to the profile's REST root, as `gh api` does for GitHub
    #[command(
        override_usage = "sugar-sessions api [OPTIONS] <NAME> [METHOD] <PATH>",
        after_help = "PATH is below the profile's REST root (https://host/rest/v11), e.g. /me or Accounts?max_num=5.\n\
                      The method is GET, or POST with --data. On a 401 the session is refreshed (or logged in again) once.\n\
                      Pretty JSON on a terminal, the body as it came otherwise; a status other than 2xx exits 1.\n\
                      Examples:\n  sugar-sessions api acme /me\n  sugar-sessions api acme Accounts -q max_num=100 --paginate\n  \
                      sugar-sessions api acme POST Contacts/filter --data '{\"filter\":[{\"last_name\":{\"$starts\":\"S\"}}]}' --paginate"
    )]
    Api(ApiArgs),
    /// Store or remove a profile's password in the OS keyring (profiles with password_keyring = true)
    #[command(
        subcommand,
        after_help = "The entry is the service sugar-sessions and the account USER@INSTANCE-HOST (or the profile's keyring_account).\n\
                      Over SSH (SSH_CONNECTION set) the keyring is not tried unless keyring_over_ssh = true."
    )]
    Password(PasswordCommand),
    /// Keep sessions alive unattended, in the foreground: refreshes and re-logins when due, a
    /// token broker on a Unix socket, /metrics, /healthz and /status over HTTP (systemd-friendly)
    Serve(ServeArgs),
    /// Run the built-in Sugar emulator in the foreground
    Emulator {
        /// Port on 127.0.0.1 (0: any free port)
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Write a profiles file for the emulator's demo users
        #[arg(long, value_name = "FILE")]
        write_profiles: Option<PathBuf>,
        /// Replace the --write-profiles file when it exists
        #[arg(long, requires = "write_profiles")]
        force: bool,
        /// Serve HTTPS with a certificate from a CA generated at start (its PEM is written beside
        /// the profiles file, or to a temporary directory, and named in the profiles file's ca_cert)
        #[arg(long)]
        tls: bool,
    },
    /// Open the screen on the built-in demo (an emulator with demo instances; nothing touches your cache)
    Demo,
    /// Print the shell's completion script (subcommands, flags, profile names and tags)
    #[command(
        after_help = "bash:  echo 'source <(sugar-sessions completions bash)' >> ~/.bashrc\n\
                            zsh:   echo 'source <(sugar-sessions completions zsh)' >> ~/.zshrc\n\
                            fish:  sugar-sessions completions fish > ~/.config/fish/completions/sugar-sessions.fish\n\
                            Profile names and tags are read from the profiles file as you type (an earlier --profiles on the line counts)."
    )]
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Write the man page (to stdout, or one page per command into a directory)
    Man {
        /// Write sugar-sessions.1 and a page per command into this directory
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Where sugar-sessions keeps things: profiles file, state directory, cache, locks, log, socket
    Paths {
        /// Print a JSON object instead of the table
        #[arg(long)]
        json: bool,
    },
}

/// `password set` and `password delete`.
#[derive(Subcommand, Debug)]
pub enum PasswordCommand {
    /// Store the profile's password in the OS keyring (asked twice on the terminal, without echo)
    Set {
        /// The profile
        #[arg(add = ArgValueCandidates::new(super::profile_candidates))]
        name: String,
        /// Read the password from the first line of standard input instead (for scripts)
        #[arg(long)]
        stdin: bool,
    },
    /// Remove the profile's password from the OS keyring
    Delete {
        /// The profile
        #[arg(add = ArgValueCandidates::new(super::profile_candidates))]
        name: String,
    },
}

/// The shells `completions` writes for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The profile
    #[arg(add = ArgValueCandidates::new(super::profile_candidates))]
    pub name: String,
    /// The token must stay valid at least this long (at most half a short token's lifetime);
    /// else it is refreshed, or logged in again, first
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub min_valid: chrono::TimeDelta,
    /// The command and its arguments, after --
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Args, Debug)]
pub struct ApiArgs {
    /// The profile
    #[arg(add = ArgValueCandidates::new(super::profile_candidates))]
    pub name: String,
    /// The HTTP method (GET, POST, PUT, PATCH, DELETE, HEAD), or the path when no method is given
    #[arg(value_name = "METHOD")]
    pub first: String,
    /// The path below the REST root (with a leading / or not; an absolute URL is refused)
    #[arg(value_name = "PATH")]
    pub second: Option<String>,
    /// The JSON body: the text itself, @FILE, or @- for standard input
    #[arg(long, short = 'd', value_name = "JSON|@FILE|@-")]
    pub data: Option<String>,
    /// A query parameter (repeatable)
    #[arg(long = "query", short = 'q', value_name = "KEY=VALUE")]
    pub query: Vec<String>,
    /// Follow next_offset to the last page (query for GET, body for POST .../filter) and print
    /// the records of all pages as one JSON array
    #[arg(long)]
    pub paginate: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Profile names (none, and no --tag: every profile)
    #[arg(add = ArgValueCandidates::new(super::profile_candidates))]
    pub names: Vec<String>,
    /// Every profile
    #[arg(long)]
    pub all: bool,
    /// Profiles with this tag (repeatable; adds to the names)
    #[arg(long = "tag", value_name = "TAG", add = ArgValueCandidates::new(super::tag_candidates))]
    pub tags: Vec<String>,
    /// Where /metrics, /healthz and /status are served
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9477")]
    pub listen: std::net::SocketAddr,
    /// Allow --listen on an address that is not loopback (the metrics name your instances and users)
    #[arg(long)]
    pub listen_any: bool,
    /// The token broker's Unix socket [default: broker.sock in the state directory]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// How the log lines on stderr are written
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The daemon's log lines on stderr.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
    Logfmt,
}

impl ServeArgs {
    pub fn targets(&self) -> Targets {
        Targets {
            names: self.names.clone(),
            all: self.all || (self.names.is_empty() && self.tags.is_empty()),
            tags: self.tags.clone(),
            json: false,
        }
    }
}

/// What `status` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFormat {
    Table,
    Json,
    /// The Prometheus text format 0.0.4
    Prometheus,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[command(flatten)]
    pub targets: Targets,
    /// Log in without asking on profiles the platform guard warns of (platform base, a platform
    /// shared with another profile of the same user)
    #[arg(long, short = 'y')]
    pub yes: bool,
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
    #[arg(add = ArgValueCandidates::new(super::profile_candidates))]
    pub names: Vec<String>,
    /// Every profile
    #[arg(long)]
    pub all: bool,
    /// Profiles with this tag (repeatable; adds to the names)
    #[arg(long = "tag", value_name = "TAG", add = ArgValueCandidates::new(super::tag_candidates))]
    pub tags: Vec<String>,
    /// Print a JSON array of {name, ok, state, message}
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Profile names (a named profile that is not logged in is CRITICAL)
    #[arg(add = ArgValueCandidates::new(super::profile_candidates))]
    pub names: Vec<String>,
    /// Every profile (one that is not logged in is OK, unless --require-active)
    #[arg(long)]
    pub all: bool,
    /// Profiles with this tag (repeatable; adds to the names)
    #[arg(long = "tag", value_name = "TAG", add = ArgValueCandidates::new(super::tag_candidates))]
    pub tags: Vec<String>,
    /// WARNING when a session's last usable instant is closer than this (90s, 10m, 2h, 1d)
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub warn: chrono::TimeDelta,
    /// CRITICAL when a session's last usable instant is closer than this
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub crit: chrono::TimeDelta,
    /// Judge from the token cache alone: no requests
    #[arg(long)]
    pub offline: bool,
    /// A profile that is not logged in is CRITICAL even when it was not named
    #[arg(long)]
    pub require_active: bool,
    /// Print the result as a JSON object (with `status`) instead of the plugin's text
    #[arg(long)]
    pub json: bool,
}

impl CheckArgs {
    pub fn targets(&self) -> Targets {
        Targets {
            names: self.names.clone(),
            all: self.all,
            tags: self.tags.clone(),
            json: self.json,
        }
    }
}

/// `90s`, `10m`, `2h`, `1d`, `1h30m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<chrono::TimeDelta, String> {
    let bad = || format!("not a duration: {text:?} (e.g. 90s, 10m, 2h, 1d, 1h30m)");
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = match rest.chars().next() {
            None => 1,
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            Some(_) => return Err(bad()),
        };
        rest = rest.get(1..).unwrap_or("");
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .filter(|s| *s <= 10 * 365 * 86_400)
            .ok_or_else(|| format!("{text:?} is longer than ten years"))?;
    }
    Ok(chrono::TimeDelta::seconds(total))
}

fn parse_lock_timeout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => Ok(s),
        _ => Err("a number of seconds from 0 to 86400".into()),
    }
}
