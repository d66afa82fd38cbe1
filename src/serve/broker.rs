//! The token broker: `GET /token/NAME` on a Unix socket answers `{"access_token", "expires_at",
//! "url", "platform"}` with a usable token of the profile, through the same protocol as `token`
//! (the identity's lock, a refresh or a login when needed, stored before it is handed out). The
//! workers of a host then share one Sugar session per user and platform instead of each logging
//! in and superseding the others.
//!
//! The socket is 0600 (in the 0700 state directory by default), and a connection from another
//! user is refused by its peer credentials (SO_PEERCRED) whatever the file's mode.

use super::Shared;
use crate::config::Profile;
use crate::identity::ProfileId;
use crate::runtime::NoToken;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};

/// A connection may use the broker: it comes from the daemon's own user.
pub fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == own_uid
}

/// The broker's listener: connections from other users are closed at once.
pub(super) struct SameUser {
    inner: UnixListener,
    uid: u32,
}

impl axum::serve::Listener for SameUser {
    type Io = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => match stream.peer_cred() {
                    Ok(cred) if peer_allowed(cred.uid(), self.uid) => return (stream, addr),
                    Ok(cred) => tracing::warn!(
                        uid = cred.uid(),
                        "broker: refused a connection from another user"
                    ),
                    Err(e) => tracing::warn!(error = %e, "broker: no peer credentials, refused"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "broker: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Binds the socket at `path` (0600). A socket left there by a daemon that was killed is
/// replaced; one that still answers, or anything that is not a socket, is refused.
pub(super) fn bind(path: &Path) -> Result<SameUser, String> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!(
                "{} exists and is not a socket: remove it, or pass --socket elsewhere",
                path.display()
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{} is served by another process: stop it, or pass --socket elsewhere",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?;
        tracing::info!(socket = %path.display(), "replaced a stale broker socket");
    }
    let inner = UnixListener::bind(path)
        .map_err(|e| format!("cannot bind the broker socket {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot make {} private: {e}", path.display()))?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    Ok(SameUser { inner, uid })
}

/// Removes the socket at the end (best effort).
pub(super) fn remove(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

pub(super) async fn serve(
    listener: SameUser,
    shared: Arc<Shared>,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let router = Router::new()
        .route("/token/{name}", get(token))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "the broker stopped");
    }
}

fn error(status: StatusCode, label: &str, message: &str) -> Response {
    let message = crate::text::strip_controls(message);
    (
        status,
        axum::Json(json!({"error": label, "message": message})),
    )
        .into_response()
}

/// The profile a worker asks for: one of the file, or an impersonation the cache holds.
async fn find(shared: &Shared, id: &ProfileId) -> Option<Profile> {
    let file = shared.file();
    let own = file.profiles.iter().find(|p| p.name == id.name())?;
    match id.sudo() {
        None => Some(Profile::clone(own)),
        Some(user) => {
            let p = own.impersonation(user);
            let cache = shared.cache().await.ok()?;
            cache
                .entry(&p.session_key())
                .is_some_and(|e| e.session.is_some())
                .then_some(p)
        }
    }
}

async fn token(State(shared): State<Arc<Shared>>, UrlPath(name): UrlPath<String>) -> Response {
    if let Some(source) = shared.read_only() {
        tracing::info!(profile = %crate::text::strip_controls(&name), "broker: refused, read-only");
        return error(
            StatusCode::FORBIDDEN,
            "read_only",
            &format!("read-only mode (set by {source}): the broker hands out no tokens"),
        );
    }
    let id: ProfileId = match name.parse() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_profile_name", &e.to_string()),
    };
    let Some(p) = find(&shared, &id).await else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_profile",
            &format!("no profile {id} in the profiles file"),
        );
    };
    // What the broker sends to Sugar itself (a refresh, a login) is counted as the daemon's.
    let counted = |o: &crate::outcome::Outcome, took: Duration| shared.metrics.sent(o, took);
    match shared
        .engine
        .token_with(&p, crate::runtime::Need::default(), counted)
        .await
    {
        Ok(token) => {
            let s = &token.session;
            // Written into a buffer zeroized once the answer is sent.
            let body = crate::secret::json_bytes(&[
                ("access_token", s.access_token.expose()),
                ("expires_at", &crate::session::rfc3339(s.expires_at)),
                ("url", &p.rest_root()),
                ("platform", &p.platform),
            ]);
            tracing::info!(profile = %p.name, "broker: token handed out");
            // Built while the identity's lock is held: the stored, current token (the lock goes
            // before the answer is written, as `token`'s goes once it has printed).
            let response = (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                axum::body::Body::from(body),
            )
                .into_response();
            drop(token);
            response
        }
        Err(NoToken::NeedsLogin(message)) => error(StatusCode::CONFLICT, "login_needed", &message),
        Err(NoToken::Failed(message)) => error(StatusCode::BAD_GATEWAY, "failed", &message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_daemons_own_user_is_served() {
        assert!(peer_allowed(1000, 1000));
        assert!(!peer_allowed(0, 1000), "not even root");
        assert!(!peer_allowed(1001, 1000));
    }

    #[tokio::test]
    async fn a_connection_from_another_user_is_closed_by_its_peer_credentials() {
        use axum::serve::Listener;
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.sock");
        let mut listener = bind(&path).unwrap();
        // The daemon runs as another user than this test: the kernel's credentials of this
        // process's connection are refused.
        listener.uid = listener.uid.wrapping_add(1);
        let mut client = tokio::net::UnixStream::connect(&path).await.unwrap();
        let accepted = tokio::time::timeout(Duration::from_millis(500), listener.accept()).await;
        assert!(
            accepted.is_err(),
            "a connection from another uid was accepted"
        );
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("the refused connection is closed at once");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // The daemon's own user is served.
        listener.uid = listener.uid.wrapping_sub(1);
        let _client = tokio::net::UnixStream::connect(&path).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the own user's connection is accepted");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_or_a_file_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.sock");
        // A socket nobody listens on any more (its listener dropped): replaced. A process
        // another test forks at that moment holds a copy of the listener until it execs, so
        // the socket is stale only once a connection is refused.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&path).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the dropped listener still answers"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let first = bind(&path).expect("the stale socket is replaced");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Served: refused.
        let err = bind(&path).err().expect("a live socket is refused");
        assert!(err.contains("another process"), "{err}");
        drop(first);
        remove(&path);
        // A plain file: refused, left alone.
        std::fs::write(&path, "x").unwrap();
        let err = bind(&path).err().expect("a file is refused");
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }
}
