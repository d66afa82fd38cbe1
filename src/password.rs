//! Where a profile's password comes from when no person types it: `password_env`, `password`, or
//! the first line a `password_cmd` prints.

use crate::config::{PasswordSource, Profile};
use crate::secret::Secret;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How long a `password_cmd` may run.
pub const PASSWORD_CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// The password from the profile's non-interactive source; `Ok(None)` when a person must be asked.
pub async fn resolve_password(p: &Profile) -> Result<Option<Secret>, String> {
    match &p.password {
        PasswordSource::Plain(s) => Ok(Some(s.clone())),
        PasswordSource::Prompt => Ok(None),
        PasswordSource::Env(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(Secret::new(v))),
            Ok(_) => Err(format!(
                "the environment variable {var} (password_env) is empty"
            )),
            Err(_) => Err(format!(
                "the environment variable {var} (password_env) is not set"
            )),
        },
        PasswordSource::Cmd(cmd) => run_password_cmd(cmd, PASSWORD_CMD_TIMEOUT).await.map(Some),
    }
}

/// Kills a process group when dropped, unless disarmed (`.0 = None`).
struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: killpg only sends a signal, to a group we created whose leader has not been
            // reaped (so the id is still that group's).
            unsafe {
                libc::killpg(pgid as i32, libc::SIGKILL);
            }
        }
    }
}

/// Runs `sh -c cmd` with stdin closed, in a session of its own (no controlling terminal; its
/// process group is killed whole on timeout or when the request is given up); the password is the
/// first line of stdout. Stdout never appears in a message; stderr may.
pub async fn run_password_cmd(cmd: &str, timeout: Duration) -> Result<Secret, String> {
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // A session of its own: a process group that can be killed whole, and no controlling
    // terminal, so that nothing it runs can draw on (or read from) the screen's terminal.
    // SAFETY: setsid is async-signal-safe, the only call between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("password_cmd could not be started: {e}"))?;
    let pid = child.id();
    // Dropped before the command is done (the screen quit and stopped waiting for the request),
    // this kills the command's whole process group: `kill_on_drop` reaches only the shell, and
    // what the shell started would be left running.
    let mut group = KillGroupOnDrop(pid);
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let work = async {
        let mut out = zeroize::Zeroizing::new(Vec::new());
        let mut err = Vec::new();
        let (r1, r2) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        r1.and(r2)
            .map_err(|e| format!("password_cmd output could not be read: {e}"))?;
        let status = child
            .wait()
            .await
            .map_err(|e| format!("password_cmd: {e}"))?;
        Ok::<_, String>((status, out, err))
    };
    let (status, out, err) = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r?,
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: killpg only sends a signal to the process group we created.
                unsafe {
                    libc::killpg(pid as i32, libc::SIGKILL);
                }
            }
            tracing::warn!(
                timeout_s = timeout.as_secs(),
                "password_cmd timed out; killed its process group"
            );
            return Err(format!(
                "password_cmd did not finish within {} s and was killed",
                timeout.as_secs()
            ));
        }
    };
    // Done and reaped: its process group id may be reused from now on.
    group.0 = None;
    let stderr_text = String::from_utf8_lossy(&err).trim().to_string();
    if !status.success() {
        let code = status
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "a signal".into());
        return Err(if stderr_text.is_empty() {
            format!("password_cmd failed (exit {code})")
        } else {
            format!("password_cmd failed (exit {code}): {stderr_text}")
        });
    }
    let text = String::from_utf8_lossy(&out);
    let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if first.is_empty() {
        return Err("password_cmd printed no password on its first line".into());
    }
    Ok(Secret::new(first))
}
