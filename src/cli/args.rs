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
