//! systemd's notification protocol (`sd_notify`): `READY=1` once the daemon serves, `WATCHDOG=1`
//! while its loop runs, `STOPPING=1` when it ends, as datagrams to `$NOTIFY_SOCKET` (a path, or
//! `@name` in the abstract namespace). Without `NOTIFY_SOCKET`, nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go, from the environment.
pub struct Notifier {
    target: Option<String>,
    /// `WATCHDOG_USEC`: systemd expects a ping at least this often (sent at half of it).
    pub watchdog: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let target = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty());
        // WATCHDOG_PID, when set, must be ours.
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|pid| pid.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|us| *us > 0 && ours)
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// Sends `state` (e.g. `READY=1`); a failure is logged, never fatal.
    pub fn send(&self, state: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(e) = send_to(target, state) {
            tracing::warn!(error = %e, socket = %target, "sd_notify failed");
        }
    }
}

fn send_to(target: &str, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), target)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_reaches_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some(path.to_string_lossy().into_owned()),
            watchdog: None,
        };
        n.send("READY=1");
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        // No socket: nothing happens.
        Notifier {
            target: None,
            watchdog: None,
        }
        .send("READY=1");
    }
}
