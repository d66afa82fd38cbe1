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

/// Records a failed refresh for each of `users`, the i-th with the message `text(i)`, in one batch.
fn fail_each(store: &Store, users: &[String], text: impl Fn(usize) -> String) {
    let changes = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let text = text(i);
            Change {
                key: key(user),
                label: user.clone(),
                expect: Expect::Held,
                apply: Box::new(move |e: &mut Entry| {
                    e.failure = Some(Failure::local(Op::Refresh, Utc::now(), text));
                }),
            }
        })
        .collect();
    store.apply(changes).unwrap();
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
        cache.sessions.keys().map(|k| &**k).collect::<Vec<_>>(),
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
fn an_identity_lock_taken_without_creating_needs_its_file_and_is_still_exclusive() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let store = Store::open(&state).unwrap();
    let key = key("admin");
    // No lock directory, no lock file: nothing is taken, and nothing is made.
    assert!(matches!(
        store.lock_key_now(&key, Create::No).unwrap(),
        Now::NoFile
    ));
    assert!(!state.join(LOCK_DIR).exists());
    let first = store
        .lock_key_now(&key, Create::Yes)
        .unwrap()
        .taken()
        .unwrap();
    let record = || fs::read_to_string(store.key_lock_path(&key)).unwrap();
    let holders = record();
    // The file is there now, but held (by another open file, as by another process): not taken,
    // and the holder's record is left as it is.
    assert!(matches!(
        store.lock_key_now(&key, Create::No).unwrap(),
        Now::Held
    ));
    assert!(matches!(
        store.lock_key_now(&key, Create::Yes).unwrap(),
        Now::Held
    ));
    assert_eq!(record(), holders);
    assert!(holders.starts_with(&format!("{} ", std::process::id())));
    drop(first);
    let again = store
        .lock_key_now(&key, Create::No)
        .unwrap()
        .taken()
        .unwrap();
    let record = fs::read_to_string(store.key_lock_path(&key)).unwrap();
    assert!(
        record.starts_with(&format!("{} ", std::process::id())),
        "{record:?}"
    );
    drop(again);
    // Another identity's file is not this one's, and is not made.
    let jim = key.impersonating("jim");
    assert!(matches!(
        store.lock_key_now(&jim, Create::No).unwrap(),
        Now::NoFile
    ));
    assert!(!store.key_lock_path(&jim).exists());
    // A symlink is never followed, with or without creating.
    let victim = tmp.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    let other = self::key("other");
    std::os::unix::fs::symlink(&victim, store.key_lock_path(&other)).unwrap();
    for create in [Create::No, Create::Yes] {
        let err = store.lock_key_now(&other, create).unwrap_err().to_string();
        assert!(err.contains("cannot open the lock file"), "{err}");
    }
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
}

#[test]
fn a_holder_record_read_while_it_is_written_does_not_name_the_holder_wrongly() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path())
        .unwrap()
        .with_lock_policy(LockPolicy {
            timeout: Duration::from_millis(50),
            on_wait: Arc::new(|_| ()),
        });
    let key = key("admin");
    drop(
        store
            .lock_key_now(&key, Create::Yes)
            .unwrap()
            .taken()
            .unwrap(),
    );
    let path = store.key_lock_path(&key);
    let me = std::process::id();
    let comm = fs::read_to_string(format!("/proc/{me}/comm")).unwrap();
    // Another holder, caught by the reader in the middle of writing its record: no newline yet.
    for partial in [
        format!("{me}"),
        format!("{me} "),
        format!("{me} sugar-sess"),
    ] {
        let holder = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        holder.lock().unwrap();
        fs::write(&path, &partial).unwrap();
        let err = store.lock_key(&key).unwrap_err();
        match &err {
            StoreError::LockTimeout { holder, .. } => {
                assert_eq!(holder.pid, Some(me), "{partial:?}");
                assert_eq!(holder.command.as_deref(), Some(comm.trim()), "{partial:?}");
            }
            other => panic!("{other}"),
        }
        assert!(!err.to_string().contains("()"), "{err}");
        drop(holder);
    }
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
    // The write used it, and made the next write's file: one spare, a new one.
    let next = temps();
    assert_eq!(next.len(), 1, "{next:?}");
    assert_ne!(next[0], spare[0], "the write used the prepared file");
    assert_eq!(
        fs::metadata(&next[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(store.load().unwrap().0.sessions.len(), 1);
    // With the next file ready and the lock free, preparing again changes nothing.
    store.prepare().unwrap();
    assert_eq!(temps(), next);
}

/// Writes `text` as the cache file (mode 0600) and returns a fresh store on it.
fn store_with(dir: &Path, text: &[u8]) -> Store {
    let store = Store::open(dir).unwrap();
    fs::write(store.cache_path(), text).unwrap();
    fs::set_permissions(store.cache_path(), fs::Permissions::from_mode(0o600)).unwrap();
    store
}

#[test]
fn one_entry_read_alone_is_the_entry_of_the_whole_read() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = Store::open(tmp.path()).unwrap();
    for user in ["a", "b|c", "100%", "tab\there", "nel\u{85}x", "ümlaut", "d"] {
        put(&writer, user);
    }
    // Another key of the same user on another platform, a sudo session: neither is `d`'s.
    writer
        .apply(vec![Change {
            key: key("d").impersonating("jim"),
            label: "d>jim".into(),
            expect: Expect::Held,
            apply: Box::new(|e| {
                e.failure = Some(Failure::local(Op::Sudo, Utc::now(), "x"));
            }),
        }])
        .unwrap();
    let (whole, _) = writer.load().unwrap();
    for user in [
        "a",
        "b|c",
        "100%",
        "tab\there",
        "nel\u{85}x",
        "ümlaut",
        "d",
        "nobody",
    ] {
        // A fresh store: nothing remembered, so the entry is found by the scan.
        let store = Store::open(tmp.path()).unwrap();
        let (alone, report) = store.read_entry(&key(user)).unwrap();
        assert_eq!(alone, whole.entry_or_default(&key(user)), "{user}");
        assert!(report.moved_aside.is_none());
    }
    let sudo = key("d").impersonating("jim");
    let (alone, _) = Store::open(tmp.path()).unwrap().read_entry(&sudo).unwrap();
    assert_eq!(alone.profile.as_deref(), Some("d>jim"));
}

#[test]
fn one_entry_of_a_key_written_with_escapes_is_found_as_a_whole_read_finds_it() {
    let tmp = tempfile::tempdir().unwrap();
    // `%61` is `a`: not the canonical text, the same key.
    let text = br#"{"version": 2, "sessions": {
        "https://acme.example.com|%61|custom_api|sugar": {"generation": 7}
    }}"#;
    let store = store_with(tmp.path(), text);
    let (entry, _) = store.read_entry(&key("a")).unwrap();
    assert_eq!(entry.generation, 7);
    let (whole, _) = Store::open(tmp.path()).unwrap().load().unwrap();
    assert_eq!(whole.entry_or_default(&key("a")).generation, 7);
}

#[test]
fn one_entry_of_a_key_with_raw_control_characters_is_found_as_a_whole_read_finds_it() {
    // Not the canonical text, which %-escapes them: a tab (JSON's `\t`) and U+0085 (a C1 control,
    // two bytes in UTF-8) as they are.
    for user in ["tab\there", "nel\u{85}x"] {
        let tmp = tempfile::tempdir().unwrap();
        let json_key =
            serde_json::to_string(&format!("https://acme.example.com|{user}|custom_api|sugar"))
                .unwrap();
        let text = format!(r#"{{"version": 2, "sessions": {{{json_key}: {{"generation": 7}}}}}}"#);
        let store = store_with(tmp.path(), text.as_bytes());
        let (entry, _) = store.read_entry(&key(user)).unwrap();
        assert_eq!(entry.generation, 7, "{user:?}");
        let (whole, _) = Store::open(tmp.path()).unwrap().load().unwrap();
        assert_eq!(whole.entry_or_default(&key(user)).generation, 7, "{user:?}");
    }
}

#[test]
fn a_byte_that_is_not_utf_8_in_another_entry_costs_this_one_nothing() {
    // `b`'s entry is broken (a whole read moves the file aside); reading `a`'s alone skips it.
    let tmp = tempfile::tempdir().unwrap();
    let mut text = br#"{"version": 2, "sessions": {
        "https://acme.example.com|a|custom_api|sugar": {"generation": 7},
        "https://acme.example.com|b|custom_api|sugar": {"generation": 1, "profile": "b"#
        .to_vec();
    text.push(0xFF);
    text.extend_from_slice(br#""}}}"#);
    let store = store_with(tmp.path(), &text);
    let (entry, report) = store.read_entry(&key("a")).unwrap();
    assert_eq!(entry.generation, 7);
    assert!(report.moved_aside.is_none());
    assert_eq!(
        fs::read(store.cache_path()).unwrap(),
        text,
        "the file is kept"
    );
}

#[test]
fn a_file_that_is_not_plain_format_2_is_read_whole_for_one_entry() {
    let tmp = tempfile::tempdir().unwrap();
    // Broken: moved aside and said, as by a whole read.
    let store = store_with(tmp.path(), b"{ not json");
    let (entry, report) = store.read_entry(&key("a")).unwrap();
    assert_eq!(entry, Entry::default());
    assert!(
        report.moved_aside.is_some(),
        "the broken file is moved aside"
    );

    // A bad key anywhere makes the file broken for a whole read: so it is for one entry.
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with(
        tmp.path(),
        br#"{"version": 2, "sessions": {"no bars": {}, "https://acme.example.com|a|custom_api|sugar": {"generation": 1}}}"#,
    );
    let (_, report) = store.read_entry(&key("a")).unwrap();
    assert!(report.moved_aside.is_some());

    // Newer: refused, untouched.
    let tmp = tempfile::tempdir().unwrap();
    let text = br#"{"version": 3, "sessions": {}}"#;
    let store = store_with(tmp.path(), text);
    let err = store.read_entry(&key("a")).unwrap_err().to_string();
    assert!(err.contains("cache format 3"), "{err}");
    assert_eq!(fs::read(store.cache_path()).unwrap(), text);

    // Format 1 (keyed by profile name): migrated by the whole read.
    let tmp = tempfile::tempdir().unwrap();
    let text = br#"{"version": 1, "profiles": {"acme": {"session": {
        "access_token": "t", "obtained_at": "2026-12-01T13:00:00Z",
        "expires_at": "2026-12-01T14:00:00Z", "platform": "custom_api",
        "username": "a", "url": "https://acme.example.com/"}}}}"#;
    let store = store_with(tmp.path(), text);
    let (entry, _) = store.read_entry(&key("a")).unwrap();
    assert_eq!(
        entry.session.map(|s| s.access_token.expose().to_string()),
        Some("t".to_string())
    );
}

/// Hands out at most `most` bytes per read, as a pipe or a slow file system may.
struct Dribble<R> {
    inner: R,
    most: usize,
}

impl<R: io::Read> io::Read for Dribble<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.most);
        self.inner.read(&mut buf[..n])
    }
}

#[test]
fn one_entry_of_a_written_cache_is_found_by_its_key_wherever_the_reads_cut_it() {
    // 300 sessions (about 70 KB: more than one of the reads' chunks), one of them with a failure
    // of 100 KB (an entry longer than a chunk), read in pieces of every kind of size.
    let tmp = tempfile::tempdir().unwrap();
    let writer = Store::open(tmp.path()).unwrap();
    let users: Vec<String> = (0..300).map(|i| format!("u{i:03}")).collect();
    fail_each(&writer, &users, |i| {
        "x".repeat(if i == 150 { 100_000 } else { i })
    });
    let (whole, _) = writer.load().unwrap();
    let bytes = fs::read(writer.cache_path()).unwrap();
    assert!(bytes.len() > 2 * 64 * 1024, "{}", bytes.len());
    for most in [usize::MAX, 65_539, 4096, 997] {
        for user in users.iter().step_by(if most < 4096 { 7 } else { 1 }) {
            let mut file = Dribble {
                inner: io::Cursor::new(&bytes),
                most,
            };
            let found = format::seek_entry(&mut file, &key(user));
            assert_eq!(
                found.as_ref(),
                whole.sessions.get(&key(user)).map(|e| &**e),
                "{user} in reads of {most}"
            );
        }
    }
    // And through the store, as `token` reads it.
    let (alone, report) = Store::open(tmp.path())
        .unwrap()
        .read_entry(&key("u150"))
        .unwrap();
    assert_eq!(alone.failure.unwrap().message.len(), 100_000);
    assert!(report.moved_aside.is_none());
}

/// A cache as this program writes it (pretty-printed), with `a`'s entry twice and `b`'s once.
fn written_twice() -> String {
    let entry = |generation: u64| format!("{{\n      \"generation\": {generation}\n    }}");
    format!(
        "{{\n  \"version\": 2,\n  \"sessions\": {{\n    {a}: {},\n    {b}: {},\n    {a}: {}\n  }}\n}}",
        entry(1),
        entry(5),
        entry(2),
        a = serde_json::to_string(&key("a").canonical()).unwrap(),
        b = serde_json::to_string(&key("b").canonical()).unwrap(),
    )
}

#[test]
fn a_key_there_twice_gives_one_entry_read_alone_the_last_as_a_whole_read_does() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with(tmp.path(), written_twice().as_bytes());
    let (entry, _) = store.read_entry(&key("a")).unwrap();
    assert_eq!(entry.generation, 2);
    let (whole, _) = Store::open(tmp.path()).unwrap().load().unwrap();
    assert_eq!(whole.entry_or_default(&key("a")).generation, 2);
    let (entry, _) = Store::open(tmp.path())
        .unwrap()
        .read_entry(&key("b"))
        .unwrap();
    assert_eq!(entry.generation, 5);
}

#[test]
fn a_written_cache_cut_short_after_the_entry_is_moved_aside_for_one_entry_too() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = Store::open(tmp.path()).unwrap();
    put(&writer, "a");
    put(&writer, "b");
    let bytes = fs::read(writer.cache_path()).unwrap();
    // `a`'s entry is whole; the file ends inside `b`'s.
    let cut = &bytes[..bytes.len() - 12];
    let store = store_with(tmp.path(), cut);
    let (entry, report) = store.read_entry(&key("a")).unwrap();
    assert_eq!(entry, Entry::default());
    assert!(report.moved_aside.is_some(), "the cut file is moved aside");
}

#[test]
fn one_entry_whose_key_ends_where_a_read_ends_is_found() {
    // `a`'s failure pads the file so that `b`'s key ends exactly where the first chunk of the
    // read ends, one byte before, or one byte after: its entry begins in the next chunk.
    let cache_with = |pad: usize| {
        let tmp = tempfile::tempdir().unwrap();
        let writer = Store::open(tmp.path()).unwrap();
        writer
            .apply(vec![Change {
                key: key("a"),
                label: "a".into(),
                expect: Expect::Held,
                apply: Box::new(move |e| {
                    e.failure = Some(Failure::local(Op::Refresh, Utc::now(), "x".repeat(pad)));
                }),
            }])
            .unwrap();
        put(&writer, "b");
        let (whole, _) = writer.load().unwrap();
        (fs::read(writer.cache_path()).unwrap(), whole)
    };
    let needle = format!(
        "\n    {}: ",
        serde_json::to_string(&key("b").canonical()).unwrap()
    );
    let key_end =
        |bytes: &[u8]| memchr::memmem::find(bytes, needle.as_bytes()).unwrap() + needle.len();
    for target in [format::CHUNK - 1, format::CHUNK, format::CHUNK + 1] {
        // `a`'s instants are the clock's, written with 0, 3, 6 or 9 digits of a fraction of a
        // second (its zeros at the end dropped): the padding is found again until it fits.
        let mut pad = 1000;
        let (bytes, whole) = (0..8)
            .find_map(|_| {
                let (bytes, whole) = cache_with(pad);
                let end = key_end(&bytes);
                pad = (pad + target).checked_sub(end).expect("the padding fits");
                (end == target).then_some((bytes, whole))
            })
            .expect("b's key placed at the chunk's end");
        let found = format::seek_entry(&mut &bytes[..], &key("b"));
        assert_eq!(
            found.as_ref(),
            whole.sessions.get(&key("b")).map(|e| &**e),
            "b's key ends at {target}"
        );
    }
}

#[test]
fn a_key_after_the_sessions_object_is_no_session() {
    // Written as this program writes, and then a map of another name keyed by a session's key
    // (a hand edit, or a later format): a whole read ignores it, and so does one entry read alone.
    let tmp = tempfile::tempdir().unwrap();
    let writer = Store::open(tmp.path()).unwrap();
    put(&writer, "a");
    let text = String::from_utf8(fs::read(writer.cache_path()).unwrap()).unwrap();
    let b = serde_json::to_string(&key("b").canonical()).unwrap();
    let edited = text.trim_end().strip_suffix("\n}").unwrap().to_string()
        + &format!(",\n  \"later\": {{\n    {b}: {{\n      \"generation\": 9\n    }}\n  }}\n}}");
    let store = store_with(tmp.path(), edited.as_bytes());
    let (whole, _) = Store::open(tmp.path()).unwrap().load().unwrap();
    assert_eq!(whole.entry_or_default(&key("b")).generation, 0);
    let (entry, report) = store.read_entry(&key("b")).unwrap();
    assert_eq!(entry.generation, 0);
    assert!(report.moved_aside.is_none());
    let (entry, _) = Store::open(tmp.path())
        .unwrap()
        .read_entry(&key("a"))
        .unwrap();
    assert_eq!(entry, (**whole.sessions.get(&key("a")).unwrap()).clone());
}

/// A cache of megabytes (thousands of sessions) is read into memory of its own, advised to be
/// backed by huge pages: another process reads every entry of it, whole, as one of kilobytes.
#[test]
fn a_cache_of_megabytes_reads_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = Store::open(tmp.path()).unwrap();
    let users: Vec<String> = (0..30).map(|i| format!("u{i:02}")).collect();
    fail_each(&writer, &users, |i| {
        format!("{i}:{}", "x".repeat(100_000 + i))
    });
    let size = fs::metadata(writer.cache_path()).unwrap().len() as usize;
    assert!(size > files::HUGE_PAGE, "{size}");
    let (cache, report) = Store::open(tmp.path()).unwrap().load().unwrap();
    assert!(report.moved_aside.is_none());
    assert_eq!(cache.sessions.len(), users.len());
    for (i, user) in users.iter().enumerate() {
        let message = &cache
            .entry(&key(user))
            .unwrap()
            .failure
            .as_ref()
            .unwrap()
            .message;
        assert_eq!(
            message,
            &format!("{i}:{}", "x".repeat(100_000 + i)),
            "{user}"
        );
    }
    // The bytes as they are in the file, on either side of the size where the mapping begins.
    for len in [files::HUGE_PAGE - 1, files::HUGE_PAGE, size] {
        let path = tmp.path().join(format!("bytes-{len}"));
        let want: Vec<u8> = fs::read(writer.cache_path()).unwrap()[..len.min(size)].to_vec();
        fs::write(&path, &want).unwrap();
        let mut file = fs::File::open(&path).unwrap();
        let got = files::read_rest(&mut file, &path).unwrap();
        assert!(*got == *want, "{len} bytes read back differ");
    }
}
