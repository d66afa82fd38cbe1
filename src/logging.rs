//! Logging with `tracing`, to a file in the state directory; off unless asked for.
//!
//! `SUGAR_SESSIONS_LOG` sets the level: `error`, `warn`, `info`, `debug`, `trace`, or any
//! `tracing_subscriber::EnvFilter` string (`sugar_sessions=trace,warn`). Unset, empty or `off`:
//! no log at all. The file is `sugar-sessions.log` in the state directory, appended to, mode 0600
//! (the directory 0700); a symbolic link in its place is not followed (logging is then off).
//!
//! What is logged: requests (method, path, status, latency, profile, outcome kind), operations and
//! their outcomes, cache and process events. Never a request or response body, a header value, a
//! password or a token. The crates under the HTTP client and the emulator (hyper, reqwest, rustls,
//! ...) are held at `debug` at most whatever the filter says, since their `trace` output is about
//! the protocol's bytes.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// The environment variable that turns logging on and sets its level.
pub const ENV: &str = "SUGAR_SESSIONS_LOG";

/// The log file's name in the state directory.
pub const FILE: &str = "sugar-sessions.log";

/// Crates that never log below `debug` here.
const HELD_AT_DEBUG: &[&str] = &[
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "tokio_rustls",
    "rustls_platform_verifier",
    "axum",
    "tower",
    "tower_http",
    "mio",
    "want",
];

/// The filter a `SUGAR_SESSIONS_LOG` value asks for; `None` when logging is off.
pub fn filter(spec: &str) -> Result<Option<EnvFilter>, String> {
    let spec = spec.trim();
    if spec.is_empty() || spec.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    EnvFilter::builder()
        .with_default_directive(LevelFilter::OFF.into())
        .parse(spec)
        .map(Some)
        .map_err(|e| {
            format!(
                "{ENV}={spec:?} is not a level (error, warn, info, debug, trace) or a filter \
                 (e.g. sugar_sessions=debug): {e}"
            )
        })
}

/// Opens (creating it 0600, or making it 0600) the log file in `dir` (created 0700 if missing).
/// A symbolic link in its place is not followed (nothing is created, appended to or chmod-ed
/// through it), and anything but a regular file is refused (a FIFO does not make it wait).
pub fn open_file(dir: &Path) -> std::io::Result<(fs::File, PathBuf)> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let path = dir.join(FILE);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::new(
                e.kind(),
                format!(
                    "{} is a symbolic link, which is not followed",
                    path.display()
                ),
            ),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    // On the open file itself (fchmod): never through a path that could be swapped meanwhile.
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok((file, path))
}

/// Starts logging when `SUGAR_SESSIONS_LOG` asks for it; returns the log file's path then.
/// Problems (a bad filter, no state directory, a file that cannot be opened) are reported on
/// stderr once, and the program goes on without a log.
pub fn init(state_dir: Option<&Path>) -> Option<PathBuf> {
    let spec = std::env::var(ENV).ok()?;
    let filter = match filter(&spec) {
        Ok(Some(f)) => f,
        Ok(None) => return None,
        Err(e) => {
            eprintln!("sugar-sessions: {e}; logging is off");
            return None;
        }
    };
    let Some(dir) = state_dir else {
        eprintln!(
            "sugar-sessions: {ENV} is set, but there is no state directory for the log file: pass --state-dir DIR"
        );
        return None;
    };
    let (file, path) = match open_file(dir) {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!(
                "sugar-sessions: cannot open the log file in {}: {e}; logging is off",
                dir.display()
            );
            return None;
        }
    };
    let held = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(HELD_AT_DEBUG.iter().map(|t| (*t, LevelFilter::DEBUG)));
    let layer = fmt::layer()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_target(true)
        .with_filter(filter.and(held));
    if tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .is_err()
    {
        // Someone set a subscriber first (a test harness): theirs stays.
        return None;
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        "sugar-sessions started"
    );
    Some(path)
}

/// How a daemon's log lines on stderr are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StderrFormat {
    /// `2026-12-01T12:00:00.123Z  INFO sugar_sessions::serve: message key=value`
    Text,
    /// One JSON object per line.
    Json,
    /// `ts=... level=info target=... msg="..." key=value`
    Logfmt,
}

/// Logging to stderr for a daemon under a supervisor (systemd's journal takes stderr): `info` and
/// above unless `SUGAR_SESSIONS_LOG` says otherwise. The same rules as the file: no bodies, header
/// values, passwords or tokens; the HTTP crates held at `debug`.
pub fn init_stderr(format: StderrFormat) {
    let spec = std::env::var(ENV).unwrap_or_else(|_| "info".into());
    let filter = match filter(&spec) {
        Ok(Some(f)) => f,
        Ok(None) => return,
        Err(e) => {
            eprintln!("sugar-sessions: {e}; logging at info");
            filter("info").ok().flatten().expect("info is a level")
        }
    };
    let held = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(HELD_AT_DEBUG.iter().map(|t| (*t, LevelFilter::DEBUG)));
    let filter = filter.and(held);
    let layer = match format {
        StderrFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_filter(filter)
            .boxed(),
        StderrFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        StderrFormat::Logfmt => fmt::layer()
            .event_format(Logfmt)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// The logfmt line format: `ts=2026-12-01T12:00:00.123Z level=info target=sugar_sessions::serve
/// msg="kept 12 sessions" profile=acme`.
struct Logfmt;

impl<S, N> fmt::FormatEvent<S, N> for Logfmt
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &fmt::FmtContext<'_, S, N>,
        mut writer: fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        write!(
            writer,
            "ts={} level={} target={}",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            meta.level().as_str().to_ascii_lowercase(),
            meta.target()
        )?;
        let mut fields = LogfmtFields { out: String::new() };
        event.record(&mut fields);
        writeln!(writer, "{}", fields.out)
    }
}

struct LogfmtFields {
    out: String,
}

impl LogfmtFields {
    fn push(&mut self, key: &str, value: &str) {
        let key = if key == "message" { "msg" } else { key };
        let plain = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
        if plain {
            self.out.push_str(&format!(" {key}={value}"));
        } else {
            let mut quoted = String::with_capacity(value.len() + 2);
            for c in value.chars() {
                match c {
                    '"' => quoted.push_str("\\\""),
                    '\\' => quoted.push_str("\\\\"),
                    '\n' => quoted.push_str("\\n"),
                    c if c.is_control() => {}
                    c => quoted.push(c),
                }
            }
            self.out.push_str(&format!(" {key}=\"{quoted}\""));
        }
    }
}

impl tracing::field::Visit for LogfmtFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.push(field.name(), value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.push(field.name(), &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_filters() {
        for off in ["", "  ", "off", "OFF"] {
            assert!(filter(off).unwrap().is_none(), "{off:?}");
        }
        for on in [
            "error",
            "warn",
            "debug",
            "trace",
            "sugar_sessions=trace,warn",
            "info",
        ] {
            assert!(filter(on).unwrap().is_some(), "{on:?}");
        }
        let e = filter("sugar_sessions=loud").unwrap_err();
        assert!(
            e.starts_with("SUGAR_SESSIONS_LOG=\"sugar_sessions=loud\" is not a level"),
            "{e}"
        );
    }

    #[test]
    fn the_log_file_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let (_, path) = open_file(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        open_file(&dir).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn only_a_regular_file_is_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(FILE);
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), &path).unwrap();
        let e = open_file(tmp.path()).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("is a symbolic link, which is not followed"),
            "{e}"
        );
        assert!(!tmp.path().join("elsewhere").exists());
        fs::remove_file(&path).unwrap();
        // A FIFO nobody reads: refused at once rather than waited on.
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        assert!(open_file(tmp.path()).is_err());
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        assert!(open_file(tmp.path()).is_err());
    }
}
