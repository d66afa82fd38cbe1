//! The store's own tests: modes, merges, compare-and-swap, locks, formats.

use super::*;
use crate::outcome::{Failure, Op};
use crate::session::Entry;
use std::time::Instant;

fn key(user: &str) -> SessionKey {
    SessionKey::new("https://acme.example.com", user, "custom_api", "sugar")
}

fn put(store: &Store, user: &str) {
    store
        .apply(vec![Change {
            key: key(user),
            label: user.into(),
            expect: Expect::Held,
            apply: Box::new(|_| {}),
        }])
        .unwrap();
}

#[test]
fn cache_and_dir_have_private_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("state")).unwrap();
    put(&store, "a");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&store.cache_path()), 0o600);
    assert_eq!(mode(store.dir()), 0o700);
}

#[test]
fn updates_merge_instead_of_overwriting() {
    let tmp = tempfile::tempdir().unwrap();
    let one = Store::open(tmp.path()).unwrap();
    let two = Store::open(tmp.path()).unwrap();
    put(&one, "a");
    put(&two, "b");
    let (cache, _) = one.load().unwrap();
    assert_eq!(
        cache.sessions.keys().collect::<Vec<_>>(),
        [&key("a"), &key("b")]
    );
}

#[test]
fn a_change_from_an_old_generation_is_lost_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    put(&store, "a");
    put(&store, "a");
    let change = |g, text: &'static str| Change {
        key: key("a"),
        label: "a".into(),
        expect: Expect::Generation(g),
        apply: Box::new(move |e: &mut Entry| {
            e.failure = Some(Failure::local(Op::Check, Utc::now(), text))
        }),
    };
    let applied = store.apply(vec![change(1, "stale")]).unwrap();
    assert!(matches!(&applied[0], Applied::Lost(e) if e.generation == 2 && e.failure.is_none()));
    let applied = store.apply(vec![change(2, "current")]).unwrap();
    assert!(matches!(&applied[0], Applied::Done(e) if e.generation == 3));
    let (cache, _) = store.load().unwrap();
    assert_eq!(
        cache
            .entry(&key("a"))
            .unwrap()
            .failure
            .as_ref()
            .unwrap()
            .message,
        "current"
    );
}

#[test]
fn a_cache_others_can_read_is_refused_with_a_chmod_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    put(&store, "a");
    fs::set_permissions(store.cache_path(), fs::Permissions::from_mode(0o644)).unwrap();
    let err = store.load().unwrap_err().to_string();
    assert!(err.contains("readable by others (mode 644)"), "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", store.cache_path().display())),
        "{err}"
    );
    assert!(store.update(|_| ()).is_err(), "nor written");
    fs::set_permissions(store.cache_path(), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(store.load().unwrap().0.sessions.len(), 1);
}

#[test]
fn a_corrupt_cache_is_moved_aside_not_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    fs::write(store.cache_path(), b"{ not json").unwrap();
    fs::set_permissions(store.cache_path(), fs::Permissions::from_mode(0o600)).unwrap();
    let (cache, report) = store.load().unwrap();
    assert!(cache.sessions.is_empty());
    let (aside, why) = report.moved_aside.expect("moved aside");
    assert_eq!(fs::read(&aside).unwrap(), b"{ not json");
    assert!(!why.is_empty());
}

#[test]
fn a_cache_of_a_newer_release_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let text = br#"{"version": 3, "whatever": []}"#;
    fs::write(store.cache_path(), text).unwrap();
    fs::set_permissions(store.cache_path(), fs::Permissions::from_mode(0o600)).unwrap();
    let err = store.load().unwrap_err().to_string();
    assert!(
        err.contains("newer sugar-sessions (cache format 3"),
        "{err}"
    );
    assert!(store.update(|_| ()).is_err());
    assert_eq!(fs::read(store.cache_path()).unwrap(), text, "untouched");
}

#[test]
fn a_state_dir_others_can_write_to_is_refused_and_so_is_a_symlink_to_one() {
    let tmp = tempfile::tempdir().unwrap();
    let open = tmp.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let err = Store::open(&open).unwrap_err().to_string();
    assert!(err.contains("writable by others (mode 777)"), "{err}");
    assert!(
        err.contains(&format!("chmod 700 {}", open.display())),
        "{err}"
    );
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&open, &link).unwrap();
    assert!(Store::open(&link).is_err());
    fs::set_permissions(&open, fs::Permissions::from_mode(0o700)).unwrap();
    assert!(Store::open(&link).is_ok());
}

#[test]
fn a_symlink_planted_as_the_cache_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("state")).unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&victim, store.cache_path()).unwrap();
    assert!(store.load().is_err());
    assert!(store.update(|_| ()).is_err());
    std::os::unix::fs::symlink(&victim, store.lock_path()).unwrap_or(());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
}

#[test]
fn a_held_lock_is_waited_for_boundedly_and_its_holder_named() {
    let tmp = tempfile::tempdir().unwrap();
    let told = Arc::new(Mutex::new(Vec::<String>::new()));
    let heard = told.clone();
    let store = Store::open(tmp.path())
        .unwrap()
        .with_lock_policy(LockPolicy {
            timeout: Duration::from_millis(1500),
            on_wait: Arc::new(move |m| heard.lock().unwrap().push(m.to_string())),
        });
    let holder = acquire(&store.lock_path(), "test", &LockPolicy::default()).unwrap();
    let start = Instant::now();
    let err = store.prepare().unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(1500));
    let me = std::process::id();
    match &err {
        StoreError::LockTimeout { holder, .. } => assert_eq!(holder.pid, Some(me)),
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().contains(&format!("held by {me} (")),
        "{err}"
    );
    let told = told.lock().unwrap().clone();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].starts_with("waiting for the lock on the token cache held by"),
        "{told:?}"
    );
    drop(holder);
    store.prepare().unwrap();
}

#[test]
fn lock_files_are_named_from_the_identity_never_from_user_names() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let store = Store::open(&state).unwrap();
    for user in ["../../x", "x/y", "jim"] {
        let key = key("admin").impersonating(user);
        let guard = store.lock_key(&key).unwrap();
        let path = store.key_lock_path(&key);
        assert_eq!(path.parent().unwrap(), state.join(LOCK_DIR), "{user}");
        assert!(path.exists(), "{user}");
        drop(guard);
    }
    let outside: Vec<_> = fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert_eq!(
        outside.len(),
        1,
        "nothing was created outside the state directory"
    );
}

#[test]
fn a_lock_file_that_is_a_directory_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    fs::create_dir(store.lock_path()).unwrap();
    let err = store.prepare().unwrap_err().to_string();
    assert!(err.contains("cannot open the lock file"), "{err}");
    assert!(err.contains("Is a directory"), "{err}");
}

#[test]
fn prepare_leaves_a_preallocated_private_temporary_file_that_the_next_write_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store.prepare().unwrap();
    let temps = || {
        fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    let spare = temps();
    assert_eq!(spare.len(), 1);
    let m = fs::metadata(&spare[0]).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    assert!(
        m.blocks() * 512 >= 64 * 1024,
        "space reserved: {} blocks",
        m.blocks()
    );
    put(&store, "a");
    assert!(temps().is_empty(), "the write used it");
    assert_eq!(store.load().unwrap().0.sessions.len(), 1);
}
