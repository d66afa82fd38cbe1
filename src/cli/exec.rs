//! `exec NAME -- CMD`: a command run with a usable token in its environment.

use super::{Cli, ExecArgs, Usage, one_profile_engine};
use crate::exit;
use crate::runtime::{Need, NoToken};
use crate::session::rfc3339;
use std::os::unix::process::CommandExt;

/// What `exec` exits with when the command cannot be started (as shells do): not found 127,
/// found but not runnable 126.
const NOT_FOUND: i32 = 127;
const NOT_RUNNABLE: i32 = 126;

pub(super) async fn exec(cli: &Cli, args: &ExecArgs) -> Result<i32, Usage> {
    let (p, engine) = one_profile_engine(cli, "exec", &args.name)?;
    let need = Need {
        min_valid: Some(args.min_valid),
        rejected: None,
    };
    let result = engine.token_with(&p, need, |_, _| {}).await;
    for notice in engine.reader().take_notices() {
        eprintln!("sugar-sessions: warning: {notice}");
    }
    let token = match result {
        Ok(token) => token,
        Err(NoToken::NeedsLogin(msg)) => {
            eprintln!("{msg}");
            return Ok(exit::NEEDS_LOGIN);
        }
        Err(NoToken::Failed(msg)) => {
            eprintln!("{msg}");
            return Ok(exit::FAILED);
        }
    };
    if let Some(note) = &token.note {
        eprintln!("{note}");
    }
    let (program, rest) = args
        .command
        .split_first()
        .expect("clap requires the command");
    let mut command = std::process::Command::new(program);
    command
        .args(rest)
        .env("SUGAR_URL", p.rest_root())
        .env("SUGAR_TOKEN", token.session.access_token.expose())
        .env("SUGAR_TOKEN_EXPIRES", rfc3339(token.session.expires_at))
        .env("SUGAR_PLATFORM", &p.platform)
        .env("SUGAR_PROFILE", &p.name);
    // The identity's lock is let go first: the command may run for hours, and the token it got is
    // the stored, current one.
    drop(token);
    // Only returns when the command could not be started.
    let e = command.exec();
    eprintln!(
        "sugar-sessions: cannot run {}: {e}",
        crate::text::strip_controls(&program.to_string_lossy())
    );
    Ok(if e.kind() == std::io::ErrorKind::NotFound {
        NOT_FOUND
    } else {
        NOT_RUNNABLE
    })
}
