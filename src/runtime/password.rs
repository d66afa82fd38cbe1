//! Where a profile's password comes from when no person types it: `password_env`, `password`,
//! the first line a `password_cmd` prints, or the OS keyring (`password_keyring`: [`keyring`]).

pub mod keyring;

use crate::config::{PasswordSource, Profile};
use crate::secret::Secret;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How long a `password_cmd` may run.
pub const PASSWORD_CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// The most a `password_cmd` may print on its standard output (the password is its first line).
pub const MAX_PASSWORD_CMD_OUTPUT: usize = 64 * 1024;

/// The most of a `password_cmd`'s standard error that is kept for a message; the rest is read and
/// dropped.
const MAX_PASSWORD_CMD_STDERR: usize = 64 * 1024;

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
        PasswordSource::Keyring(entry) => keyring::get(entry, &p.name).await.map(Some),
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
/// process group is killed whole on timeout, when it prints more than
/// [`MAX_PASSWORD_CMD_OUTPUT`] on stdout, or when the request is given up); the password is the
/// first line of stdout. Stdout never appears in a message; the start of stderr may.
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
        let read = tokio::try_join!(read_capped(&mut stdout, MAX_PASSWORD_CMD_OUTPUT), async {
            read_start(&mut stderr, MAX_PASSWORD_CMD_STDERR)
                .await
                .map_err(Capped::Io)
        });
        let (out, err) = match read {
            Ok(both) => both,
            Err(Capped::TooMuch) => {
                // It may still be writing: the whole group is killed when `group` is dropped on
                // the way out, as the command is not done.
                tracing::warn!(
                    max_bytes = MAX_PASSWORD_CMD_OUTPUT,
                    "password_cmd printed too much; killing its process group"
                );
                return Err(format!(
                    "password_cmd printed more than {} KiB on its standard output (the password \
                     is its first line); it was stopped",
                    MAX_PASSWORD_CMD_OUTPUT / 1024
                ));
            }
            Err(Capped::Io(e)) => {
                return Err(format!("password_cmd output could not be read: {e}"));
            }
        };
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

/// Why [`read_capped`] stopped.
enum Capped {
    /// More than the cap.
    TooMuch,
    Io(std::io::Error),
}

/// Reads `r` to its end into a buffer that is zeroized when dropped, allocated once (no copies
/// left behind by growing); more than `cap` bytes is [`Capped::TooMuch`], as soon as it shows.
async fn read_capped(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    cap: usize,
) -> Result<zeroize::Zeroizing<Vec<u8>>, Capped> {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; cap + 1]);
    let mut len = 0;
    loop {
        if len > cap {
            return Err(Capped::TooMuch);
        }
        match r.read(&mut buf[len..]).await {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Capped::Io(e)),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// Reads `r` to its end, keeping the first `keep` bytes and dropping the rest.
async fn read_start(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    keep: usize,
) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    (&mut *r).take(keep as u64).read_to_end(&mut kept).await?;
    tokio::io::copy(r, &mut tokio::io::sink()).await?;
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The live processes whose command line starts with `prefix` (zombies left out).
    fn running(prefix: &str) -> Vec<u32> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rfind(')')
                .is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z'));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            if !zombie && cmdline.starts_with(prefix) {
                found.push(pid);
            }
        }
        found
    }

    #[tokio::test]
    async fn the_first_line_is_the_password() {
        let pw = run_password_cmd("printf 'pa ss\\r\\nsecond\\n'", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(pw.expose(), "pa ss");
        // Exactly the most there may be.
        let most = format!("head -c {MAX_PASSWORD_CMD_OUTPUT} /dev/zero | tr '\\0' a");
        let pw = run_password_cmd(&most, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(pw.expose().len(), MAX_PASSWORD_CMD_OUTPUT);
    }

    #[tokio::test]
    async fn more_than_64_kib_of_output_fails_without_showing_it() {
        let started = Instant::now();
        let e = run_password_cmd(
            "head -c 200000 /dev/zero | tr '\\0' a",
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert_eq!(
            e,
            "password_cmd printed more than 64 KiB on its standard output (the password is its \
             first line); it was stopped"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        // One byte over is over.
        let over = format!(
            "head -c {} /dev/zero | tr '\\0' a",
            MAX_PASSWORD_CMD_OUTPUT + 1
        );
        let e = run_password_cmd(&over, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            e.starts_with("password_cmd printed more than 64 KiB"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_command_that_never_stops_printing_is_stopped_at_once_with_its_whole_group() {
        // `yes` prints for ever; the `sleep` in the background holds standard output open too. The
        // odd duration tells it apart from any other `sleep` on the machine.
        let started = Instant::now();
        let e = run_password_cmd("sleep 31.0731 & yes", Duration::from_secs(20))
            .await
            .unwrap_err();
        assert!(
            e.starts_with("password_cmd printed more than 64 KiB"),
            "{e}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}: not stopped before the timeout",
            started.elapsed()
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        while !running("sleep 31.0731").is_empty() {
            assert!(
                Instant::now() < deadline,
                "the password_cmd's background process was left running"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn standard_error_is_kept_to_its_start_and_drained() {
        // Far more on standard error than is kept: read to the end, the start of it in the message.
        let e = run_password_cmd(
            "echo 'no such entry' >&2; head -c 1000000 /dev/zero >&2; exit 3",
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(
            e.starts_with("password_cmd failed (exit 3): no such entry"),
            "{e:.80}"
        );
        assert!(e.len() < MAX_PASSWORD_CMD_OUTPUT + 100, "{}", e.len());
    }
}
