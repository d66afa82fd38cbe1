//! The clap definitions: the global options and the commands with their arguments.

use clap::{Args, Parser, Subcommand};
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
        /// table for people, json for scripts, prometheus for a textfile collector or a scrape
        #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
        format: StatusFormat,
        /// The same as --format json
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
    /// Log in (password grant)
    Login(Targets),
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
        /// Serve HTTPS with a certificate from a CA generated at start (its PEM is written beside
        /// the profiles file, or to a temporary directory, and named in the profiles file's ca_cert)
        #[arg(long)]
        tls: bool,
    },
    /// Open the screen on the built-in demo (an emulator with demo instances; nothing touches your cache)
    Demo,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Profile names (none, and no --tag: every profile)
    pub names: Vec<String>,
    /// Every profile
    #[arg(long)]
    pub all: bool,
    /// Profiles with this tag (repeatable; adds to the names)
    #[arg(long = "tag", value_name = "TAG")]
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

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Profile names (a named profile that is not logged in is CRITICAL)
    pub names: Vec<String>,
    /// Every profile (one that is not logged in is OK, unless --require-active)
    #[arg(long)]
    pub all: bool,
    /// Profiles with this tag (repeatable; adds to the names)
    #[arg(long = "tag", value_name = "TAG")]
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
