//! A process killed (SIGKILL) while writing the token cache leaves the old or the new cache, never a
//! broken one. The test re-runs its own binary as the writer and kills it at random moments.

use rand::Rng;
use std::process::{Command, Stdio};
use std::time::Duration;
use sugar_sessions::identity::SessionKey;
use sugar_sessions::session::{Failure, Op};
use sugar_sessions::store::Store;

const CHILD_ENV: &str = "SUGAR_SESSIONS_TEST_WRITER_DIR";

/// In the child: write the cache over and over, each time with different, large content.
#[test]
fn writer_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = Store::open(dir).unwrap();
    for round in 0u64.. {
        store
            .update(|cache| {
                for i in 0..200 {
                    let key = SessionKey::new("https://x.example.com", &format!("u{i}"), "p", "c");
                    let entry =
                        std::sync::Arc::make_mut(cache.sessions.entry(key.into()).or_default());
                    entry.failure = Some(Failure::local(
                        Op::Refresh,
                        chrono::Utc::now(),
                        format!("round {round}: {}", "x".repeat(200 + (round as usize % 50))),
                    ));
                }
            })
            .unwrap();
    }
}

#[test]
fn killed_writers_never_leave_a_broken_cache() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let me = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut saw_content = 0;
    for _ in 0..40 {
        let mut child = Command::new(&me)
            .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(5..60)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (cache, report) = store.load().expect("the cache is readable");
        assert!(
            report.moved_aside.is_none(),
            "the cache was broken: {:?}",
            report.moved_aside
        );
        if !cache.sessions.is_empty() {
            saw_content += 1;
            assert_eq!(cache.sessions.len(), 200, "a write is all or nothing");
        }
    }
    assert!(saw_content > 0, "the writers got to write at least once");
}
