//! Start-up: parses the arguments, sets up the allocator, logging and the async runtime, catches a
//! panic, and dispatches: no command or `demo` opens the screen, any other command runs in `cli`.

// As `eprintln!` below: a write to a closed stdout is dropped, not a panic.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
use std::path::PathBuf;
use std::sync::Arc;
use sugar_sessions::cli::{
    self, Cli, Command, Usage, default_profiles_path, load_profiles, lock_timeout, open_store_with,
    profiles_path, start_demo_emulator, write_private,
};
use sugar_sessions::exit;
use sugar_sessions::runtime::Engine;
use sugar_sessions::store::Store;
use sugar_sessions::tui;

// As in `cli`: `eprintln!` panics when the write fails (the terminal went away); this one drops
// what cannot be written.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn main() {
    std::process::exit(start());
}

/// Parses the arguments and runs; returns the exit status.
fn start() -> i32 {
    // A shell asking for completions is answered before anything else, and nothing else runs.
    cli::complete_if_asked();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match cli::parse_from(&args) {
        Ok(cli) => cli,
        // `check` is a monitoring plugin: its usage errors are UNKNOWN (3), in its format.
        Err(e) if e.use_stderr() && cli::command_word(&args).as_deref() == Some("check") => {
            let _ = e.print();
            let json = args.iter().any(|a| a == "--json");
            let first = e.to_string();
            let first = first
                .lines()
                .next()
                .unwrap_or("bad arguments")
                .trim_start_matches("error: ");
            println!(
                "{}",
                cli::check_unknown(&format!("bad arguments: {first}"), json)
            );
            return exit::UNKNOWN;
        }
        Err(e) => e.exit(),
    };
    limit_malloc_arenas();
    match &cli.command {
        // A daemon logs to stderr (its supervisor's journal).
        Some(Command::Serve(args)) => {
            sugar_sessions::logging::init_stderr(sugar_sessions::serve::log_format(args.log_format))
        }
        _ => {
            sugar_sessions::logging::init(cli::state_dir(&cli).as_deref());
        }
    }
    // Commands that read and print, or send one request, run on one thread: no worker threads
    // to start for a command that scripts call constantly (`token`, `status`). The screen, the
    // daemon and the commands that act on many sessions at once use every core.
    let light = matches!(
        cli.command,
        Some(
            Command::List { .. }
                | Command::Status { .. }
                | Command::Token { .. }
                | Command::Exec(_)
                | Command::Api(_)
                | Command::Password(_)
                | Command::Paths { .. }
                | Command::Man { .. }
                | Command::Completions { .. }
        )
    );
    let mut builder = if light {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
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
    let result = match &cli.command {
        None => screen(&cli).await,
        Some(Command::Demo) => demo(&cli).await,
        Some(Command::Serve(args)) => sugar_sessions::serve::run(&cli, args).await,
        Some(_) => cli::run(&cli).await,
    };
    match result {
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

async fn screen(cli: &Cli) -> Result<i32, Usage> {
    let path = profiles_path(cli)?;
    if cli.profiles_file().is_none() && !path.exists() {
        return run_demo(cli, Some(path)).await;
    }
    let profiles = cli::load_for_command(cli, &path)?;
    let (policy, notices) = tui::notice_channel(lock_timeout(cli));
    let store = open_store_with(cli, &profiles, policy)?;
    let engine = Arc::new(Engine::new(store, &profiles.settings));
    let opts = tui::TuiOptions {
        profiles,
        source: tui::Source::File(path),
        ascii: cli.ascii,
        read_only: cli.read_only,
        keep_alive: cli.keep_alive,
        notices: Some(notices),
    };
    finish_screen(tui::run(engine, opts).await)
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
    write_private(&path, &sugar_sessions::emulator::demo_profiles_toml(&emu)).map_err(|e| {
        Usage(format!(
            "sugar-sessions: cannot write the demo profiles: {e}"
        ))
    })?;
    let profiles = load_profiles(&path)?;
    let (policy, notices) = tui::notice_channel(lock_timeout(cli));
    let store = Store::open(dir.path().join("state"))
        .map_err(|e| Usage(format!("sugar-sessions: {e}")))?
        .with_lock_policy(policy);
    let engine = Arc::new(Engine::new(store, &profiles.settings));
    let hint = missing_profiles
        .or_else(default_profiles_path)
        .unwrap_or_else(|| PathBuf::from("profiles.toml"));
    let opts = tui::TuiOptions {
        profiles,
        source: tui::Source::Demo {
            profiles_hint: hint,
        },
        ascii: cli.ascii,
        read_only: cli.read_only,
        keep_alive: cli.keep_alive,
        notices: Some(notices),
    };
    let result = finish_screen(tui::run(engine, opts).await);
    emu.shutdown().await;
    result
}

fn finish_screen(result: anyhow::Result<tui::Ending>) -> Result<i32, Usage> {
    match result {
        Ok(ending) => Ok(ending.exit_status()),
        Err(e) => {
            eprintln!("sugar-sessions: {e:#}");
            Ok(exit::FAILED)
        }
    }
}
