//! `password_keyring = true`: the password in the OS keyring (the Secret Service over D-Bus on
//! Linux and the BSDs, the macOS Keychain, the Windows Credential Manager), through the `keyring`
//! crate, under the service [`KEYRING_SERVICE`] and the profile's account.
//!
//! Every call runs on a thread of its own and is waited for at most [`KEYRING_TIMEOUT`]: a
//! keyring that does not answer (a D-Bus peer that hangs, an unlock dialog nobody sees) costs
//! that long, and the thread is left behind, never joined, so that it cannot hold up the
//! program's exit. Over SSH the keyring is not tried unless `keyring_over_ssh = true`. Messages
//! name the keyring's account, never a password.

use crate::config::{KEYRING_SERVICE, KeyringEntry};
use crate::secret::Secret;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

/// How long one keyring call may take.
pub const KEYRING_TIMEOUT: Duration = Duration::from_secs(3);

/// What to do instead, said at the end of every failure.
pub const OTHER_SOURCES: &str = "or give the profile another password source: password_env, \
                                 password_cmd, password, or none of them to type it at the prompt";

/// The password stored for `entry`; `profile` names the profile in messages.
pub async fn get(entry: &KeyringEntry, profile: &str) -> Result<Secret, String> {
    refuse_over_ssh(entry)?;
    let account = entry.account.clone();
    let got = on_thread(move || {
        open(&account)?
            .get_password()
            .map(Secret::new)
            .map_err(Failed::Keyring)
    })
    .await;
    got.map_err(|e| match e {
        Failed::Keyring(keyring::Error::NoEntry) => format!(
            "no password in the OS keyring for {} (service {KEYRING_SERVICE}): store it with \
             `sugar-sessions password set {profile}`, {OTHER_SOURCES}",
            entry.account
        ),
        other => other.message(&entry.account),
    })
}

/// Stores `password` for `entry`, replacing what was there.
pub async fn set(entry: &KeyringEntry, password: Secret) -> Result<(), String> {
    refuse_over_ssh(entry)?;
    let account = entry.account.clone();
    on_thread(move || {
        open(&account)?
            .set_password(password.expose())
            .map_err(Failed::Keyring)
    })
    .await
    .map_err(|e| e.message(&entry.account))
}

/// Removes the password stored for `entry`: `Ok(false)` when there was none.
pub async fn delete(entry: &KeyringEntry) -> Result<bool, String> {
    refuse_over_ssh(entry)?;
    let account = entry.account.clone();
    let done = on_thread(move || open(&account)?.delete_credential().map_err(Failed::Keyring));
    match done.await {
        Ok(()) => Ok(true),
        Err(Failed::Keyring(keyring::Error::NoEntry)) => Ok(false),
        Err(e) => Err(e.message(&entry.account)),
    }
}

/// Over SSH (`SSH_CONNECTION` set) the keyring found would be the desktop's: a D-Bus client finds
/// the desktop's bus through `$XDG_RUNTIME_DIR/bus`, and an unlock dialog would open on someone's
/// screen. Refused without trying unless `keyring_over_ssh = true`.
pub fn refuse_over_ssh(entry: &KeyringEntry) -> Result<(), String> {
    let over_ssh = std::env::var_os("SSH_CONNECTION").is_some_and(|v| !v.is_empty());
    if over_ssh && !entry.over_ssh {
        tracing::info!(account = %entry.account, "OS keyring not tried over SSH");
        return Err(format!(
            "the OS keyring is not tried over SSH (SSH_CONNECTION is set): it would be the \
             desktop's (found through $XDG_RUNTIME_DIR/bus), and could open a dialog on its \
             screen; set keyring_over_ssh = true to use it anyway, {OTHER_SOURCES}"
        ));
    }
    Ok(())
}

/// Why a keyring call failed.
enum Failed {
    Keyring(keyring::Error),
    /// The platform's store could not be set up (no D-Bus session, no Secret Service).
    NoStore(String),
    /// No answer within [`KEYRING_TIMEOUT`].
    TimedOut,
    /// The thread could not be started.
    Thread(std::io::Error),
}

impl Failed {
    fn message(&self, account: &str) -> String {
        let why = match self {
            Failed::TimedOut => {
                tracing::warn!(
                    account,
                    "the OS keyring did not answer in time; thread left"
                );
                return format!(
                    "the OS keyring did not answer within {} s (is it locked, waiting for a \
                     dialog to unlock it?); {OTHER_SOURCES}",
                    KEYRING_TIMEOUT.as_secs()
                );
            }
            Failed::NoStore(why) => why.clone(),
            Failed::Thread(e) => format!("no thread to ask it on: {e}"),
            // Spelt out: these errors carry the bytes of what was stored.
            Failed::Keyring(keyring::Error::BadEncoding(_)) => {
                "what is stored there is not UTF-8 text".to_string()
            }
            Failed::Keyring(keyring::Error::BadDataFormat(..)) => {
                "what is stored there is malformed".to_string()
            }
            Failed::Keyring(keyring::Error::Ambiguous(found)) => format!(
                "{} entries match it; remove the extra ones with the keyring's own tool",
                found.len()
            ),
            Failed::Keyring(e) => e.to_string(),
        };
        tracing::warn!(account, error = %why, "OS keyring failed");
        format!(
            "the OS keyring could not be used for {account} (service {KEYRING_SERVICE}): {why}; \
             {OTHER_SOURCES}"
        )
    }
}

/// The entry for `account`, in the platform's store (set up on first use).
fn open(account: &str) -> Result<keyring::Entry, Failed> {
    keyring::Entry::new(KEYRING_SERVICE, account).map_err(|e| match e {
        keyring::Error::NoDefaultStore => match keyring::Entry::store_status() {
            Err(why) => Failed::NoStore(format!("no keyring to use: {why}")),
            Ok(()) => Failed::Keyring(e),
        },
        e => Failed::Keyring(e),
    })
}

/// Runs `f` on a thread of its own and waits at most [`KEYRING_TIMEOUT`] for it. A thread that
/// does not finish is left to end on its own, or with the process: it is never joined.
async fn on_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failed> + Send + 'static,
) -> Result<T, Failed> {
    on_thread_within(&STUCK, KEYRING_TIMEOUT, f).await
}

/// Calls that timed out and whose thread has not ended yet.
static STUCK: AtomicUsize = AtomicUsize::new(0);

/// A call's thread is running, has finished, or was given up on.
const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const TIMED_OUT: u8 = 2;

/// [`on_thread`] with the count of stuck calls and the timeout given.
async fn on_thread_within<T: Send + 'static>(
    stuck: &'static AtomicUsize,
    timeout: Duration,
    f: impl FnOnce() -> Result<T, Failed> + Send + 'static,
) -> Result<T, Failed> {
    // A call that never answered (the store's set-up hangs, say) holds the others behind it:
    // new calls fail at once instead of leaving one stuck thread each, until every call given up
    // on has ended (one that ended does not speak for another still hanging).
    if stuck.load(Ordering::SeqCst) > 0 {
        return Err(Failed::TimedOut);
    }
    let state = Arc::new(AtomicU8::new(RUNNING));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let ours = state.clone();
    std::thread::Builder::new()
        .name("keyring".into())
        .spawn(move || {
            let _ = tx.send(f());
            if ours.swap(FINISHED, Ordering::SeqCst) == TIMED_OUT {
                stuck.fetch_sub(1, Ordering::SeqCst);
            }
        })
        .map_err(Failed::Thread)?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(done)) => done,
        Ok(Err(_)) => Err(Failed::NoStore(
            "the keyring call ended without an answer".into(),
        )),
        Err(_) => {
            // Counted before it is marked, so that the thread's uncounting always follows.
            stuck.fetch_add(1, Ordering::SeqCst);
            if state
                .compare_exchange(RUNNING, TIMED_OUT, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                // It finished just now: not stuck.
                stuck.fetch_sub(1, Ordering::SeqCst);
            }
            Err(Failed::TimedOut)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_hangs_is_left_behind_after_the_timeout() {
        let started = std::time::Instant::now();
        let r: Result<(), Failed> = on_thread(|| {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(())
        })
        .await;
        assert!(matches!(r, Err(Failed::TimedOut)));
        let took = started.elapsed();
        assert!(
            took >= KEYRING_TIMEOUT && took < KEYRING_TIMEOUT * 2,
            "{took:?}"
        );
        let m = Failed::TimedOut.message("u@h");
        assert!(
            m.contains("within 3 s") && m.contains("password_cmd"),
            "{m}"
        );
        // While it hangs, later calls start no thread of their own to hang in turn.
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let r: Result<(), Failed> = on_thread(move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
        .await;
        assert!(matches!(r, Err(Failed::TimedOut)));
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// A call that ends after another was given up on does not let new calls through while that
    /// other one still hangs; once it ends too, calls go through again.
    #[tokio::test]
    async fn only_the_end_of_every_stuck_call_lets_new_calls_through() {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let short = Duration::from_millis(50);
        let (release_b, b_waits) = std::sync::mpsc::channel::<()>();
        let (release_a, a_waits) = std::sync::mpsc::channel::<()>();
        let b = tokio::spawn(on_thread_within(
            &COUNT,
            Duration::from_secs(60),
            move || {
                let _ = b_waits.recv();
                Ok(())
            },
        ));
        let a = on_thread_within(&COUNT, short, move || {
            let _ = a_waits.recv();
            Ok(())
        })
        .await;
        assert!(matches!(a, Err(Failed::TimedOut)));
        release_b.send(()).unwrap();
        assert!(b.await.unwrap().is_ok());
        let c = on_thread_within(&COUNT, short, || Ok(())).await;
        assert!(
            matches!(c, Err(Failed::TimedOut)),
            "a call went through while one hangs"
        );
        release_a.send(()).unwrap();
        while COUNT.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(on_thread_within(&COUNT, short, || Ok(())).await.is_ok());
    }

    #[test]
    fn messages_about_stored_bytes_do_not_show_them() {
        let secret = b"Hunter2-Secret".to_vec();
        let m = Failed::Keyring(keyring::Error::BadEncoding(secret)).message("u@h");
        assert!(!m.contains("Hunter2"), "{m}");
        assert!(m.contains("u@h") && m.contains("password_env"), "{m}");
    }
}
