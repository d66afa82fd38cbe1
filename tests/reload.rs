//! Edits of the profiles file while the screen runs: the rows follow the file (new, removed,
//! changed identity), what the screen knows of the profiles that stayed is kept, and a broken
//! edit keeps the profiles as they were with its located error on the screen until fixed. The
//! Model through `app::update`, then the real binary in a pseudo-terminal.

mod common;
#[path = "common/pty.rs"]
mod pty;

use chrono::TimeDelta;
use common::{screen_model, t0};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use sugar_sessions::app::{Command, Model, Msg, Options, RowState, update};
use sugar_sessions::config::{self, Profiles};
use sugar_sessions::secret::Secret;
use sugar_sessions::session::{Entry, Session};
use sugar_sessions::store::Cache;

fn profiles(body: &str) -> Profiles {
    config::parse(
        &format!("[defaults]\nusername = \"u\"\nauto_refresh = false\n{body}"),
        Path::new("profiles.toml"),
    )
    .unwrap()
}

/// The file read again as `profiles`, with the cache as `cache`: what the screen's runtime sends.
fn reload(m: &mut Model, profiles: Profiles, cache: Cache) -> Vec<Command> {
    update(
        m,
        Msg::ProfilesReloaded {
            profiles: Box::new(profiles),
            cache: Arc::new(cache),
        },
        t0(),
    )
}

const A: &str = "[profiles.a]\nurl = \"https://a.example.com\"\n";
const B: &str = "[profiles.b]\nurl = \"https://b.example.com\"\n";
const C: &str = "[profiles.c]\nurl = \"https://c.example.com\"\n";

fn active(p: &Profiles, name: &str) -> Entry {
    let p = p.get(name).unwrap();
    Entry {
        session: Some(Session {
            access_token: Secret::new(format!("tok-{name}")),
            refresh_token: Some(Secret::new("r")),
            download_token: None,
            obtained_at: t0(),
            expires_at: t0() + TimeDelta::hours(1),
            refresh_expires_at: Some(t0() + TimeDelta::days(14)),
            platform: p.platform.clone(),
            username: p.username.clone(),
            url: p.root().to_string(),
            hard_end: None,
        }),
        ..Entry::default()
    }
}

fn key(m: &mut Model, code: KeyCode) {
    update(
        m,
        Msg::Key(KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: crossterm::event::KeyEventState::NONE,
        }),
        t0(),
    );
}

#[test]
fn rows_follow_the_file_and_keep_what_the_screen_knows() {
    let first = profiles(&format!("{A}{B}"));
    let mut m = screen_model(&first, Options::default());
    let mut cache = Cache::default();
    for name in ["a", "b"] {
        cache.insert(first.get(name).unwrap().session_key(), active(&first, name));
    }
    update(&mut m, Msg::CacheReloaded(Arc::new(cache.clone())), t0());
    // The cursor on `b`, which is selected.
    key(&mut m, KeyCode::Down);
    key(&mut m, KeyCode::Char(' '));
    assert_eq!(m.selected_names(), ["b"]);

    // `a` removed, `c` added, `b` stays: b keeps its session, its selection and the cursor.
    let second = profiles(&format!("{B}{C}"));
    reload(&mut m, second.clone(), cache.clone());
    assert_eq!(m.visible_names(), ["b", "c"]);
    assert_eq!(m.row("b").unwrap().state(), RowState::Active);
    assert_eq!(m.row("c").unwrap().state(), RowState::LoggedOut);
    assert_eq!(m.selected_names(), ["b"]);
    assert_eq!(m.current().unwrap().profile.name, "b");
    let said = m.status().unwrap().text.clone();
    assert!(
        said.contains("1 new") && said.contains("1 removed"),
        "{said}"
    );

    // `b` now logs in as another user: a new identity, whose session is not the old one.
    let third = profiles(&format!(
        "[profiles.b]\nurl = \"https://b.example.com\"\nusername = \"other\"\n{C}"
    ));
    reload(&mut m, third, cache);
    assert_eq!(m.row("b").unwrap().state(), RowState::LoggedOut);
    let said = m.status().unwrap().text.clone();
    assert!(
        said.contains(
            "b changed instance, user, platform or client: the old session is no longer its own"
        ),
        "{said}"
    );
    // An answer about b's old identity, arriving now, is not taken for the new one's (its token
    // would be copied with the new instance's URL).
    let old_b = active(&first, "b");
    update(
        &mut m,
        Msg::Done(Box::new(sugar_sessions::outcome::Outcome {
            name: "b".into(),
            key: first.get("b").unwrap().session_key(),
            op: sugar_sessions::session::Op::Login,
            ok: true,
            message: "b: logged in".into(),
            state: sugar_sessions::session::State::Active,
            entry: old_b,
            requests: Vec::new(),
            failure: None,
        })),
        t0(),
    );
    assert_eq!(m.row("b").unwrap().state(), RowState::LoggedOut);
    assert!(m.row("b").unwrap().entry.session.is_none());

    // A broken edit: the profiles stay, the error shows until a good edit.
    update(
        &mut m,
        Msg::ProfilesBroken("profiles.toml:3:7: profiles.b.url: not a URL".into()),
        t0(),
    );
    assert_eq!(m.visible_names(), ["b", "c"]);
    assert_eq!(
        m.file_error(),
        Some("profiles.toml:3:7: profiles.b.url: not a URL")
    );
    reload(&mut m, second, Cache::default());
    assert_eq!(m.file_error(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screen_applies_edits_of_its_profiles_file_within_a_moment() {
    let emu = common::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = emu.url("acme");
    let head = format!(
        "[defaults]\nusername = \"integration\"\npassword = \"{}\"\nplatform = \"custom_api\"\n",
        common::INTEGRATION_PW
    );
    let path = common::write_profiles(
        dir.path(),
        &format!("{head}[profiles.first]\nurl = \"{url}\"\n"),
    );
    let state = dir.path().join("state");
    let cmd = pty::screen_command(&path, &state, dir.path());
    let mut screen = tokio::task::block_in_place(|| pty::Pty::spawn(cmd, 30, 120, true));
    tokio::task::block_in_place(|| {
        screen.wait_for("the first profile", 10, |s| s.contains("first"));
    });
    // Saved as editors do: a new file renamed over the old one.
    let save = |text: String| {
        use std::os::unix::fs::PermissionsExt;
        let tmp = dir.path().join(".profiles.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        // It holds a password: private, or it is refused.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    save(format!(
        "{head}[profiles.first]\nurl = \"{url}\"\n[profiles.second]\nurl = \"{url}\"\nplatform = \"acme_sync\"\n"
    ));
    tokio::task::block_in_place(|| {
        screen.wait_for("the new profile", 10, |s| {
            s.contains("second") && s.contains("profiles file reloaded: 1 new")
        });
    });
    // A broken edit: the rows stay, the located error shows.
    save(format!(
        "{head}[profiles.first]\nurl = \"{url}\"\n[profiles.second]\nurl = 42\n"
    ));
    tokio::task::block_in_place(|| {
        screen.wait_for("the error", 10, |s| {
            s.contains("profiles file not reloaded:") && s.contains("profiles.second.url")
        });
    });
    assert!(screen.screen().contains("second"));
    // Fixed: the error goes, the removed profile too.
    save(format!(
        "{head}[profiles.second]\nurl = \"{url}\"\nplatform = \"acme_sync\"\n"
    ));
    tokio::task::block_in_place(|| {
        screen.wait_for("the fix", 10, |s| {
            !s.contains("not reloaded") && !s.contains("first") && s.contains("1 removed")
        });
    });
    screen.send(b"q");
    let exit = tokio::task::block_in_place(|| screen.wait_exit(Duration::from_secs(5)));
    assert_eq!(exit.and_then(|e| e.code()), Some(0));
}

/// The screen starts from the profiles' validated snapshot when the file holds no secret (as the
/// shell commands do), and never from a stale one: an edit made while it was not running, even one
/// that keeps the file's size and modification time, shows at the next start; and one made while
/// it runs shows as it does after a full read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screen_started_again_shows_an_edit_made_while_it_was_not_running() {
    let emu = common::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = emu.url("acme");
    let text = |name: &str| {
        format!("[defaults]\nusername = \"integration\"\n[profiles.{name}]\nurl = \"{url}\"\n")
    };
    let path = common::write_profiles(dir.path(), &text("first"));
    // A state directory made already (by an earlier command): the snapshot goes there.
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let start = |wanted: &'static str| {
        let cmd = pty::screen_command(&path, &state, dir.path());
        let mut screen = pty::Pty::spawn(cmd, 30, 120, true);
        screen.wait_for(wanted, 10, |s| s.contains(wanted));
        let shown = screen.screen().text();
        screen.send(b"q");
        let exit = screen.wait_exit(Duration::from_secs(5));
        assert_eq!(exit.and_then(|e| e.code()), Some(0));
        shown
    };
    tokio::task::block_in_place(|| start("first"));
    let snapshot = std::fs::read_dir(&state).unwrap().any(|f| {
        let name = f.unwrap().file_name();
        name.to_string_lossy().ends_with(".snapshot")
    });
    assert!(
        snapshot,
        "the screen's start left no snapshot of the profiles"
    );

    // The same length, and the old modification time put back.
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, text("fresh")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let shown = tokio::task::block_in_place(|| start("fresh"));
    assert!(!shown.contains("first"), "{shown}");

    // Started from the snapshot again (the last start wrote it anew), the screen still follows
    // the file it names: an edit while it runs shows.
    let cmd = pty::screen_command(&path, &state, dir.path());
    let mut screen = tokio::task::block_in_place(|| pty::Pty::spawn(cmd, 30, 120, true));
    tokio::task::block_in_place(|| screen.wait_for("fresh", 10, |s| s.contains("fresh")));
    std::fs::write(&path, text("added")).unwrap();
    tokio::task::block_in_place(|| {
        screen.wait_for("the edit", 10, |s| {
            s.contains("added") && s.contains("profiles file reloaded")
        });
    });
    screen.send(b"q");
    let exit = tokio::task::block_in_place(|| screen.wait_exit(Duration::from_secs(5)));
    assert_eq!(exit.and_then(|e| e.code()), Some(0));
}

/// A new catalogue in a directory the file includes by a glob shows up on the screen, and an edit
/// of it too: the watch covers the included files and the globs' directories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screen_follows_a_new_file_in_an_included_glob_directory() {
    use std::os::unix::fs::PermissionsExt;
    let emu = common::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = emu.url("acme");
    let conf = dir.path().join("conf.d");
    std::fs::create_dir(&conf).unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = common::write_profiles(
        dir.path(),
        &format!(
            "include = [\"conf.d/*.toml\"]\n[defaults]\nusername = \"integration\"\n\
             [profiles.first]\nurl = \"{url}\"\n"
        ),
    );
    let state = dir.path().join("state");
    let cmd = pty::screen_command(&path, &state, dir.path());
    let mut screen = tokio::task::block_in_place(|| pty::Pty::spawn(cmd, 30, 120, true));
    tokio::task::block_in_place(|| {
        screen.wait_for("the first profile", 10, |s| s.contains("first"));
    });
    // A catalogue dropped into conf.d, as a tool writes it: a new file renamed into place.
    let drop_in = |name: &str, text: String| {
        let tmp = dir.path().join("catalogue.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::rename(&tmp, conf.join(name)).unwrap();
    };
    drop_in(
        "team.toml",
        format!("[profiles.teamshared]\nurl = \"{url}\"\n"),
    );
    tokio::task::block_in_place(|| {
        screen.wait_for("the catalogue's profile", 10, |s| {
            s.contains("teamshared") && s.contains("profiles file reloaded: 1 new")
        });
    });
    // The catalogue edited: now watched as an included file.
    drop_in(
        "team.toml",
        format!("[profiles.teamrenamed]\nurl = \"{url}\"\n"),
    );
    tokio::task::block_in_place(|| {
        screen.wait_for("the catalogue's edit", 10, |s| {
            s.contains("teamrenamed") && !s.contains("teamshared")
        });
    });
    // A new include whose file is refused: the error shows; the file it names is watched from
    // then on, so that fixing it (and nothing else) is enough.
    let extra = dir.path().join("extra.toml");
    std::fs::write(
        &extra,
        format!("[profiles.extra]\nurl = \"{url}\"\ninsecure = true\n"),
    )
    .unwrap();
    std::fs::set_permissions(&extra, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        &path,
        format!(
            "include = [\"conf.d/*.toml\", \"extra.toml\"]\n[defaults]\nusername = \"integration\"\n\
             [profiles.first]\nurl = \"{url}\"\n"
        ),
    )
    .unwrap();
    tokio::task::block_in_place(|| {
        screen.wait_for("the catalogue's error", 10, |s| {
            s.contains("profiles file not reloaded:") && s.contains("profiles.extra.insecure")
        });
    });
    std::fs::write(&extra, format!("[profiles.extra]\nurl = \"{url}\"\n")).unwrap();
    tokio::task::block_in_place(|| {
        screen.wait_for("the fixed catalogue", 10, |s| {
            !s.contains("not reloaded") && s.contains("extra")
        });
    });
    screen.send(b"q");
    let exit = tokio::task::block_in_place(|| screen.wait_exit(Duration::from_secs(5)));
    assert_eq!(exit.and_then(|e| e.code()), Some(0));
}

/// A password prompt open for a profile the edit removed, or on a screen the edit made read-only,
/// is put away: Enter then starts nothing (and does not find a prompt without a profile).
/// A login still queued for a profile the edit removed, or whose instance it changed, is
/// withdrawn: it would go to an instance the file no longer names, and nothing would show it.
#[test]
fn a_queued_request_goes_with_its_profile() {
    let d = |url: &str| format!("[profiles.d]\nurl = \"{url}\"\npassword_env = \"D_PW\"\n");
    let queued = || {
        let mut m = screen_model(
            &profiles(&format!("{A}{}", d("https://d.example.com"))),
            Options::default(),
        );
        key(&mut m, KeyCode::Down);
        let started = update(
            &mut m,
            Msg::Key(KeyEvent::new(KeyCode::Char('l'), KeyModifiers::NONE)),
            t0(),
        );
        assert!(
            started
                .iter()
                .any(|c| matches!(c, Command::Start { name, .. } if name == "d")),
            "{started:?}"
        );
        m
    };
    let edited = |m: &mut Model, body: &str| reload(m, profiles(body), Cache::default());
    let cancels = |cmds: &[Command]| {
        cmds.iter()
            .any(|c| matches!(c, Command::Cancel { name } if name == "d"))
    };
    let mut m = queued();
    assert!(cancels(&edited(&mut m, A)), "removed");
    let mut m = queued();
    assert!(
        cancels(&edited(
            &mut m,
            &format!("{A}{}", d("https://other.example.com"))
        )),
        "moved"
    );
    let mut m = queued();
    let kept = edited(&mut m, &format!("{A}{}", d("https://d.example.com")));
    assert!(!cancels(&kept), "kept: {kept:?}");
}

/// An edit read while the screen closes does not take the closing back: no refresh starts after.
#[test]
fn a_reload_while_quitting_stays_quitting() {
    let first = profiles(&format!("{A}{B}"));
    let mut m = screen_model(&first, Options::default());
    update(
        &mut m,
        Msg::Shutdown {
            reason: "SIGTERM".into(),
        },
        t0(),
    );
    assert!(m.quitting());
    let second = profiles(&format!("{A}{B}{C}"));
    reload(&mut m, second, Cache::default());
    assert!(m.quitting(), "the reload took the closing back");
}

#[test]
fn a_prompt_goes_with_its_profile_and_with_read_only() {
    let start = |m: &mut Model| {
        // The cursor on `b` (no password source: asked for), then `l`.
        key(m, KeyCode::Down);
        key(m, KeyCode::Char('l'));
    };
    let opened = |body: &str| {
        let first = profiles(body);
        let mut m = screen_model(&first, Options::default());
        start(&mut m);
        m
    };
    let enter = |m: &mut Model| {
        update(
            m,
            Msg::Key(KeyEvent {
                code: KeyCode::Enter,
                modifiers: KeyModifiers::NONE,
                kind: KeyEventKind::Press,
                state: crossterm::event::KeyEventState::NONE,
            }),
            t0(),
        )
    };
    // The prompted profile removed.
    let mut m = opened(&format!("{A}{B}"));
    reload(&mut m, profiles(A), Cache::default());
    assert!(enter(&mut m).is_empty(), "nothing started");
    // The screen made read-only by the edit.
    let mut m = opened(&format!("{A}{B}"));
    let read_only = config::parse(
        &format!("[defaults]\nusername = \"u\"\nauto_refresh = false\nread_only = true\n{A}{B}"),
        Path::new("profiles.toml"),
    )
    .unwrap();
    reload(&mut m, read_only, Cache::default());
    for c in "pw".chars() {
        key(&mut m, KeyCode::Char(c));
    }
    assert!(enter(&mut m).is_empty(), "no login on a read-only screen");
}
