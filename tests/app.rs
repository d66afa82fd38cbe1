//! `app::update` with a fixed clock: keys and task results in, commands and Model changes out.

use chrono::{DateTime, TimeDelta, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::path::Path;
use sugar_sessions::app::{
    Command, Model, Msg, Options, ResultKind, RowState, Sort, Source, update,
};
use sugar_sessions::config::{self, Profiles};
use sugar_sessions::engine::Outcome;
use sugar_sessions::session::{Entry, Failure, Op, RequestLog, Session, State};
use sugar_sessions::store::Cache;
use sugar_sessions::sugar::{ErrorKind, SugarError};

/// In file order: acme-prod (prod), acme-sbx, globex, then initech and umbrella, whose passwords
/// come from the prompt (no password source). No automatic refresh (one test turns it on).
const PROFILES: &str = r#"
[defaults]
username = "integration"
auto_refresh = false

[profiles.acme-prod]
url = "https://acme.sugarondemand.com"
tags = ["acme", "prod"]
password_env = "SUGAR_TEST_PASSWORD"

[profiles.acme-sbx]
url = "https://acme-sbx.sugarondemand.com"
tags = ["acme", "sandbox"]
password_env = "SUGAR_TEST_PASSWORD"

[profiles.globex]
url = "https://crm.globex.com"
username = "svc_globex"
tags = ["globex"]
password_cmd = "echo pw"

[profiles.initech]
url = "https://initech.sugarcrm.eu"
username = "jim"

[profiles.umbrella]
url = "https://umbrella.example.com"
username = "alice"
"#;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn profiles(text: &str) -> Profiles {
    config::parse(text, Path::new("profiles.toml")).unwrap()
}

fn fixture() -> Profiles {
    profiles(PROFILES)
}

fn model() -> Model {
    let mut m = Model::new(
        &fixture(),
        Source::File("profiles.toml".into()),
        Options::default(),
        t0(),
    );
    update(
        &mut m,
        Msg::Resize {
            width: 120,
            height: 30,
        },
        t0(),
    );
    m
}

fn press(m: &mut Model, code: KeyCode) -> Vec<Command> {
    update(m, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)), t0())
}

fn ch(m: &mut Model, c: char) -> Vec<Command> {
    press(m, KeyCode::Char(c))
}

fn typed(m: &mut Model, text: &str) -> Vec<Command> {
    text.chars().flat_map(|c| ch(m, c)).collect()
}

fn starts(cmds: &[Command]) -> Vec<(String, Op)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Start { name, op, .. } => Some((name.clone(), *op)),
            _ => None,
        })
        .collect()
}

fn cancels(cmds: &[Command]) -> Vec<String> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Cancel { name } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn session(access_left: i64) -> Session {
    Session {
        access_token: "access-token-value-1234".into(),
        refresh_token: Some("refresh-token-value-5678".into()),
        download_token: None,
        obtained_at: t0(),
        expires_at: t0() + TimeDelta::seconds(access_left),
        refresh_expires_at: Some(t0() + TimeDelta::days(14)),
        platform: "custom_api".into(),
        username: "integration".into(),
        url: "https://acme.sugarondemand.com/".into(),
        hard_end: None,
    }
}

fn active_entry(access_left: i64) -> Entry {
    Entry {
        session: Some(session(access_left)),
        failure: None,
        updated_at: Some(t0()),
        relogin_at: None,
    }
}

fn request(status: u16, ms: u64) -> RequestLog {
    RequestLog {
        at: t0(),
        method: "POST",
        path: "/oauth2/token",
        status: Some(status),
        latency_ms: ms,
    }
}

fn ok(name: &str, op: Op, entry: Entry) -> Msg {
    Msg::Done(Box::new(Outcome {
        name: name.into(),
        op,
        ok: true,
        message: format!("{name}: {op} ok"),
        state: entry.state(t0()),
        entry,
        requests: vec![request(200, 120)],
        error: None,
    }))
}

fn failed(name: &str) -> Msg {
    let error = SugarError {
        profile: name.into(),
        op: "login",
        platform: "custom_api".into(),
        api: "v11".into(),
        host: "x".into(),
        kind: ErrorKind::Sugar {
            status: 422,
            label: "invalid_parameter".into(),
            message: Some("Invalid platform specified.".into()),
        },
    };
    let entry = Entry {
        session: None,
        failure: Some(Failure {
            at: t0(),
            op: Op::Login,
            message: error.to_string(),
            needs_login: false,
            superseded: false,
        }),
        updated_at: Some(t0()),
        relogin_at: None,
    };
    Msg::Done(Box::new(Outcome {
        name: name.into(),
        op: Op::Login,
        ok: false,
        message: error.to_string(),
        state: State::Error,
        entry,
        requests: vec![request(422, 80)],
        error: Some(Box::new(error)),
    }))
}

fn with_cache(m: &mut Model, entries: &[(&str, Entry)]) {
    let mut cache = Cache::default();
    for (name, e) in entries {
        cache.profiles.insert(name.to_string(), e.clone());
    }
    update(m, Msg::CacheReloaded(cache), t0());
}

#[test]
fn one_request_per_profile() {
    let mut m = model();
    assert_eq!(
        starts(&ch(&mut m, 'l')),
        [("acme-prod".to_string(), Op::Login)]
    );
    assert_eq!(m.row("acme-prod").unwrap().state(), RowState::LoggingIn);
    assert_eq!(m.in_flight(), (0, 1));
    // A second press while it is queued, and while it is sent: nothing.
    assert!(starts(&ch(&mut m, 'l')).is_empty());
    assert!(starts(&ch(&mut m, 'r')).is_empty());
    update(
        &mut m,
        Msg::Started {
            name: "acme-prod".into(),
        },
        t0(),
    );
    assert_eq!(m.in_flight(), (1, 0));
    assert!(starts(&ch(&mut m, 'l')).is_empty());
    assert!(starts(&ch(&mut m, 'o')).is_empty());
    // The answer arrives: the row is active, and a new request may start.
    update(&mut m, ok("acme-prod", Op::Login, active_entry(3600)), t0());
    let row = m.row("acme-prod").unwrap();
    assert_eq!(row.state(), RowState::Active);
    assert_eq!(row.last.as_ref().unwrap().kind, ResultKind::Ok);
    assert_eq!(row.last.as_ref().unwrap().latency_ms, Some(120));
    assert_eq!(row.recent.len(), 1);
    assert_eq!(m.in_flight(), (0, 0));
    assert_eq!(
        starts(&ch(&mut m, 'r')),
        [("acme-prod".to_string(), Op::Refresh)]
    );
}

#[test]
fn refresh_and_logout_need_a_session() {
    let mut m = model();
    assert!(starts(&ch(&mut m, 'r')).is_empty());
    assert!(
        m.status().unwrap().text.contains("log in first"),
        "{:?}",
        m.status()
    );
    assert!(starts(&ch(&mut m, 'o')).is_empty());
    assert!(m.status().unwrap().text.contains("not logged in"));
    assert!(m.confirm().is_none());
}

#[test]
fn selection_and_select_all_apply_to_the_selected_rows_the_filter_shows() {
    let mut m = model();
    // Space selects and moves down.
    ch(&mut m, ' ');
    assert_eq!(m.selected_names(), ["acme-prod"]);
    assert_eq!(m.cursor(), 1);
    ch(&mut m, ' ');
    ch(&mut m, ' ');
    assert_eq!(m.selected_names(), ["acme-prod", "acme-sbx", "globex"]);
    // Filter to the acme profiles: only the two selected acme rows are acted on.
    ch(&mut m, '/');
    typed(&mut m, "acme");
    press(&mut m, KeyCode::Enter);
    assert_eq!(m.visible_names(), ["acme-prod", "acme-sbx"]);
    let s = starts(&ch(&mut m, 'l'));
    assert_eq!(
        s,
        [
            ("acme-prod".to_string(), Op::Login),
            ("acme-sbx".to_string(), Op::Login)
        ]
    );
    // `a` selects all shown, and again deselects them.
    let mut m = model();
    ch(&mut m, '/');
    typed(&mut m, "globex");
    press(&mut m, KeyCode::Enter);
    ch(&mut m, 'a');
    assert_eq!(m.selected_names(), ["globex"]);
    ch(&mut m, 'a');
    assert!(m.selected_names().is_empty());
    // Esc clears the filter, then the selection.
    ch(&mut m, 'a');
    press(&mut m, KeyCode::Esc);
    assert_eq!(m.visible().len(), 5);
    assert_eq!(m.selected_count(), 1);
    press(&mut m, KeyCode::Esc);
    assert_eq!(m.selected_count(), 0);
}

#[test]
fn filter_typing_mode_keys_are_text_enter_keeps_esc_clears() {
    let mut m = model();
    ch(&mut m, '/');
    assert!(m.filtering());
    // While typing, `q`, `l` and `o` are text, not actions.
    let cmds = typed(&mut m, "lqo");
    assert!(cmds.is_empty());
    assert_eq!(m.filter(), "lqo");
    assert!(m.visible().is_empty());
    for _ in 0..3 {
        press(&mut m, KeyCode::Backspace);
    }
    assert_eq!(m.visible().len(), 5);
    // Name, tag, host and user, case-insensitive.
    typed(&mut m, "SANDBOX");
    assert_eq!(m.visible_names(), ["acme-sbx"]);
    for _ in 0..7 {
        press(&mut m, KeyCode::Backspace);
    }
    typed(&mut m, "sugarcrm.eu");
    assert_eq!(m.visible_names(), ["initech"]);
    press(&mut m, KeyCode::Esc);
    assert!(!m.filtering());
    assert_eq!(m.filter(), "");
    assert_eq!(m.visible().len(), 5);
    ch(&mut m, '/');
    typed(&mut m, "svc_");
    press(&mut m, KeyCode::Enter);
    assert!(!m.filtering());
    assert_eq!(m.filter(), "svc_");
    assert_eq!(m.visible_names(), ["globex"]);
    // Now keys are actions again.
    assert_eq!(
        starts(&ch(&mut m, 'l')),
        [("globex".to_string(), Op::Login)]
    );
    // Pasted text goes into the filter too.
    let mut m = model();
    ch(&mut m, '/');
    update(&mut m, Msg::Paste("umbr".into()), t0());
    assert_eq!(m.visible_names(), ["umbrella"]);
}

#[test]
fn logout_of_prod_or_several_asks_first() {
    let mut m = model();
    with_cache(
        &mut m,
        &[
            ("acme-prod", active_entry(3600)),
            ("acme-sbx", active_entry(3600)),
            ("globex", active_entry(3600)),
        ],
    );
    // acme-prod is tagged prod: asks.
    assert!(ch(&mut m, 'o').is_empty());
    let c = m.confirm().expect("a confirmation");
    assert_eq!(c.names, ["acme-prod"]);
    assert_eq!(c.prod, 1);
    // `n` says no: nothing is sent.
    assert!(ch(&mut m, 'n').is_empty());
    assert!(m.confirm().is_none());
    // Esc too.
    ch(&mut m, 'o');
    assert!(press(&mut m, KeyCode::Esc).is_empty());
    assert!(m.confirm().is_none());
    // `y` goes ahead.
    ch(&mut m, 'o');
    assert_eq!(
        starts(&ch(&mut m, 'y')),
        [("acme-prod".to_string(), Op::Logout)]
    );
    // A single profile not tagged prod: no question.
    ch(&mut m, 'j');
    assert_eq!(
        starts(&ch(&mut m, 'o')),
        [("acme-sbx".to_string(), Op::Logout)]
    );
    // Several: asks, and Enter says yes.
    let mut m = model();
    with_cache(
        &mut m,
        &[
            ("acme-sbx", active_entry(3600)),
            ("globex", active_entry(3600)),
        ],
    );
    ch(&mut m, 'j');
    ch(&mut m, ' ');
    ch(&mut m, ' ');
    assert!(ch(&mut m, 'o').is_empty());
    assert_eq!(m.confirm().unwrap().names, ["acme-sbx", "globex"]);
    let s = starts(&press(&mut m, KeyCode::Enter));
    assert_eq!(
        s,
        [
            ("acme-sbx".to_string(), Op::Logout),
            ("globex".to_string(), Op::Logout)
        ]
    );
}

#[test]
fn cancel_withdraws_queued_and_stops_waiting_for_sent_requests() {
    let mut m = model();
    ch(&mut m, 'l');
    // Queued: `c` asks the runtime to withdraw it.
    assert_eq!(cancels(&ch(&mut m, 'c')), ["acme-prod"]);
    update(
        &mut m,
        Msg::Withdrawn {
            name: "acme-prod".into(),
        },
        t0(),
    );
    let row = m.row("acme-prod").unwrap();
    assert!(row.flight.is_none());
    assert_eq!(row.last.as_ref().unwrap().kind, ResultKind::Withdrawn);
    assert_eq!(row.state(), RowState::LoggedOut);
    assert_eq!(m.in_flight(), (0, 0));

    // Sent: no Cancel command (it cannot be unsent); the screen stops waiting...
    ch(&mut m, 'l');
    update(
        &mut m,
        Msg::Started {
            name: "acme-prod".into(),
        },
        t0(),
    );
    assert!(cancels(&ch(&mut m, 'c')).is_empty());
    let row = m.row("acme-prod").unwrap();
    assert_eq!(row.state(), RowState::LoggedOut);
    assert!(row.flight.unwrap().detached);
    // ...but no second request starts before the answer,
    assert!(starts(&ch(&mut m, 'l')).is_empty());
    // and the answer is still applied when it arrives.
    update(&mut m, ok("acme-prod", Op::Login, active_entry(3600)), t0());
    let row = m.row("acme-prod").unwrap();
    assert_eq!(row.state(), RowState::Active);
    assert!(row.flight.is_none());
    assert!(
        m.status().unwrap().text.contains("cancelled"),
        "{:?}",
        m.status()
    );

    // A cancel that races with the start: Started arrives after `c`; still detached, still applied.
    let mut m = model();
    ch(&mut m, 'l');
    assert_eq!(cancels(&ch(&mut m, 'c')), ["acme-prod"]);
    update(
        &mut m,
        Msg::Started {
            name: "acme-prod".into(),
        },
        t0(),
    );
    assert!(m.row("acme-prod").unwrap().flight.unwrap().detached);
    update(&mut m, ok("acme-prod", Op::Login, active_entry(3600)), t0());
    assert_eq!(m.row("acme-prod").unwrap().state(), RowState::Active);
}

#[test]
fn password_prompt_one_profile_at_a_time_password_only_in_the_command() {
    let mut m = model();
    // initech and umbrella have no non-interactive password source.
    ch(&mut m, 'G');
    ch(&mut m, 'k');
    ch(&mut m, ' ');
    ch(&mut m, ' ');
    assert_eq!(m.selected_names(), ["initech", "umbrella"]);
    assert!(ch(&mut m, 'l').is_empty());
    let p = m.prompt().expect("a prompt");
    assert_eq!(p.name, "initech");
    assert_eq!(p.waiting, 1);
    // Keys are text: `q` does not quit, `l` does not log in.
    assert!(typed(&mut m, "lq-s3cret").is_empty());
    assert_eq!(m.prompt().unwrap().len, 9);
    press(&mut m, KeyCode::Backspace);
    let cmds = press(&mut m, KeyCode::Enter);
    match cmds.as_slice() {
        [
            Command::Start {
                name,
                op: Op::Login,
                password: Some(pw),
            },
        ] => {
            assert_eq!(name, "initech");
            assert_eq!(pw.expose(), "lq-s3cre");
        }
        other => panic!("{other:?}"),
    }
    // The Model holds no copy, and never prints it.
    assert!(!format!("{m:?}").contains("s3cre"));
    assert!(!format!("{cmds:?}").contains("s3cre"));
    // Next profile's prompt, empty; Esc skips it.
    let p = m.prompt().expect("the next prompt");
    assert_eq!((p.name.as_str(), p.len, p.waiting), ("umbrella", 0, 0));
    assert!(press(&mut m, KeyCode::Esc).is_empty());
    assert!(m.prompt().is_none());
    assert_eq!(m.row("initech").unwrap().state(), RowState::LoggingIn);
    assert_eq!(m.row("umbrella").unwrap().state(), RowState::LoggedOut);
    // An empty password is not sent.
    let mut m = model();
    ch(&mut m, 'G');
    ch(&mut m, 'l');
    assert!(press(&mut m, KeyCode::Enter).is_empty());
    assert!(m.prompt().is_some());
    // Pasting works.
    update(&mut m, Msg::Paste("pasted-pw".into()), t0());
    match press(&mut m, KeyCode::Enter).as_slice() {
        [
            Command::Start {
                password: Some(pw), ..
            },
        ] => assert_eq!(pw.expose(), "pasted-pw"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sort_cycles_and_reverses_keeping_the_cursor_on_its_row() {
    let mut m = model();
    with_cache(
        &mut m,
        &[
            ("globex", active_entry(300)),
            ("acme-sbx", active_entry(7200)),
            ("initech", active_entry(1800)),
        ],
    );
    update(&mut m, failed("umbrella"), t0());
    assert_eq!(m.sort(), (Sort::File, false));
    ch(&mut m, 'j'); // cursor on acme-sbx
    ch(&mut m, 's');
    assert_eq!(m.sort().0, Sort::Name);
    assert_eq!(
        m.visible_names(),
        ["acme-prod", "acme-sbx", "globex", "initech", "umbrella"]
    );
    assert_eq!(m.current().unwrap().name(), "acme-sbx");
    ch(&mut m, 's');
    assert_eq!(m.sort().0, Sort::State);
    // Errors first, then expiring, then active, then logged out.
    assert_eq!(
        m.visible_names(),
        ["umbrella", "globex", "acme-sbx", "initech", "acme-prod"]
    );
    assert_eq!(m.current().unwrap().name(), "acme-sbx");
    ch(&mut m, 's');
    assert_eq!(m.sort().0, Sort::TokenLeft);
    assert_eq!(
        m.visible_names(),
        ["globex", "initech", "acme-sbx", "acme-prod", "umbrella"]
    );
    ch(&mut m, 'S');
    assert_eq!(m.sort(), (Sort::TokenLeft, true));
    assert_eq!(
        m.visible_names(),
        ["umbrella", "acme-prod", "acme-sbx", "initech", "globex"]
    );
    ch(&mut m, 'S');
    ch(&mut m, 's');
    assert_eq!(m.sort().0, Sort::File);
    assert_eq!(
        m.visible_names(),
        ["acme-prod", "acme-sbx", "globex", "initech", "umbrella"]
    );
    // A result moves its row under a time-left sort.
    ch(&mut m, 's');
    ch(&mut m, 's');
    ch(&mut m, 's');
    update(&mut m, ok("acme-prod", Op::Login, active_entry(60)), t0());
    assert_eq!(m.visible_names()[0], "acme-prod");
    assert_eq!(m.current().unwrap().name(), "acme-sbx");
}

#[test]
fn time_moves_states_and_counts_and_only_visible_countdowns_cause_a_draw() {
    let mut m = model();
    with_cache(&mut m, &[("acme-prod", active_entry(10 * 60 + 30))]);
    assert_eq!(m.count(RowState::Active), 1);
    m.take_dirty();
    // Nothing visible changes: no draw.
    let mut m2 = model();
    m2.take_dirty();
    update(&mut m2, Msg::Tick, t0() + TimeDelta::seconds(1));
    assert!(!m2.take_dirty());
    // A countdown ticks: draw.
    update(&mut m, Msg::Tick, t0() + TimeDelta::seconds(1));
    assert!(m.take_dirty());
    // Crossing the 10-minute mark: expiring.
    update(&mut m, Msg::Tick, t0() + TimeDelta::seconds(31));
    assert_eq!(m.row("acme-prod").unwrap().state(), RowState::Expiring);
    assert_eq!(m.count(RowState::Active), 0);
    assert_eq!(m.count(RowState::Expiring), 1);
    update(&mut m, Msg::Tick, t0() + TimeDelta::seconds(631));
    assert_eq!(m.row("acme-prod").unwrap().state(), RowState::Expired);
    assert_eq!(m.count(RowState::Expired), 1);
    assert_eq!(m.count(RowState::LoggedOut), 4);
}

#[test]
fn errors_keep_their_hint_and_recent_requests_are_bounded() {
    let mut m = model();
    update(&mut m, failed("globex"), t0());
    let row = m.row("globex").unwrap();
    assert_eq!(row.state(), RowState::Error);
    let last = row.last.as_ref().unwrap();
    assert_eq!(last.summary, "422 invalid_parameter");
    let err = row.last_error.as_ref().unwrap();
    assert!(
        err.text.contains("Invalid platform specified."),
        "{}",
        err.text
    );
    assert!(
        err.hint
            .as_ref()
            .unwrap()
            .contains("Configure API Platforms")
    );
    assert!(m.status().unwrap().error);
    for _ in 0..30 {
        update(&mut m, ok("globex", Op::Refresh, active_entry(3600)), t0());
    }
    let row = m.row("globex").unwrap();
    assert_eq!(row.recent.len(), sugar_sessions::app::RECENT);
    assert!(row.last_error.is_none());
    assert_eq!(row.state(), RowState::Active);
    // An error remembered by the cache (from another run) shows with its hint split off.
    let mut m = model();
    let message =
        "globex: login failed: HTTP 401 need_login: bad (hint: check the username)".to_string();
    let e = Entry {
        session: None,
        failure: Some(Failure {
            at: t0(),
            op: Op::Login,
            message,
            needs_login: false,
            superseded: false,
        }),
        updated_at: Some(t0()),
        relogin_at: None,
    };
    with_cache(&mut m, &[("globex", e)]);
    let (text, hint) = m.row("globex").unwrap().error_text().unwrap();
    assert_eq!(text, "login failed: HTTP 401 need_login: bad");
    assert_eq!(hint.as_deref(), Some("check the username"));
}

#[test]
fn cache_reloads_apply_newer_entries_only() {
    let mut m = model();
    let newer = Entry {
        updated_at: Some(t0() + TimeDelta::seconds(5)),
        ..active_entry(3600)
    };
    with_cache(&mut m, &[("acme-prod", newer)]);
    assert_eq!(m.row("acme-prod").unwrap().state(), RowState::Active);
    // An older read (raced with our own write) does not undo it.
    let older = Entry {
        session: None,
        failure: None,
        updated_at: Some(t0()),
        relogin_at: None,
    };
    with_cache(&mut m, &[("acme-prod", older)]);
    assert_eq!(m.row("acme-prod").unwrap().state(), RowState::Active);
    // An unchanged reload does not redraw.
    m.take_dirty();
    let same = m.row("acme-prod").unwrap().entry.clone();
    with_cache(&mut m, &[("acme-prod", same)]);
    assert!(!m.take_dirty());
}

#[test]
fn quit_keys_navigation_and_releases() {
    let mut m = model();
    assert!(matches!(ch(&mut m, 'q').as_slice(), [Command::Quit]));
    assert!(m.quitting());
    // Ctrl-C quits from the filter and from the prompt, where `q` is text.
    let mut m = model();
    ch(&mut m, '/');
    let cmds = update(
        &mut m,
        Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        t0(),
    );
    assert!(matches!(cmds.as_slice(), [Command::Quit]));
    // Releases are ignored.
    let mut m = model();
    let mut release = KeyEvent::new(KeyCode::Char('l'), KeyModifiers::NONE);
    release.kind = KeyEventKind::Release;
    assert!(update(&mut m, Msg::Key(release), t0()).is_empty());
    // Navigation.
    ch(&mut m, 'G');
    assert_eq!(m.cursor(), 4);
    ch(&mut m, 'g');
    assert_eq!(m.cursor(), 0);
    press(&mut m, KeyCode::Down);
    press(&mut m, KeyCode::Down);
    press(&mut m, KeyCode::Up);
    assert_eq!(m.cursor(), 1);
    press(&mut m, KeyCode::PageDown);
    assert_eq!(m.cursor(), 4);
    press(&mut m, KeyCode::PageUp);
    assert_eq!(m.cursor(), 0);
    // Enter toggles details, `?` help.
    press(&mut m, KeyCode::Enter);
    assert!(m.details_open());
    ch(&mut m, '?');
    assert!(m.help_open());
    press(&mut m, KeyCode::Esc);
    assert!(!m.help_open());
    // Shutdown (a signal) quits like `q`.
    let mut m = model();
    assert!(matches!(
        update(
            &mut m,
            Msg::Shutdown {
                reason: "SIGTERM".into()
            },
            t0()
        )
        .as_slice(),
        [Command::Quit]
    ));
}

#[test]
fn footer_hints_come_from_the_key_table_and_follow_what_applies() {
    let mut m = model();
    let descs = |m: &Model| m.footer().iter().map(|b| b.desc).collect::<Vec<_>>();
    let d = descs(&m);
    assert!(
        d.contains(&"log in")
            && !d.contains(&"log out")
            && !d.contains(&"cancel")
            && !d.contains(&"refresh")
    );
    ch(&mut m, 'l');
    assert!(descs(&m).contains(&"cancel"));
    ch(&mut m, '/');
    assert_eq!(descs(&m), ["keep filter", "clear filter", "delete"]);
}

#[test]
fn ten_thousand_profiles_scroll_filter_and_sort() {
    let mut text = String::from("[defaults]\nusername = \"u\"\npassword_env = \"P\"\n");
    for i in 0..10_000 {
        text.push_str(&format!(
            "[profiles.p{i:05}]\nurl = \"https://h{}.example.com\"\n",
            i % 97
        ));
    }
    let p = profiles(&text);
    let mut m = Model::new(&p, Source::File("x".into()), Options::default(), t0());
    update(
        &mut m,
        Msg::Resize {
            width: 80,
            height: 24,
        },
        t0(),
    );
    ch(&mut m, 'G');
    assert_eq!(m.cursor(), 9_999);
    assert!(m.offset() > 9_980);
    ch(&mut m, '/');
    typed(&mut m, "h96.");
    assert_eq!(m.visible().len(), 103);
    typed(&mut m, "example");
    assert_eq!(m.visible().len(), 103);
    press(&mut m, KeyCode::Enter);
    ch(&mut m, 'S');
    assert_eq!(m.visible_names()[0], "p09990");
}

#[test]
fn due_sessions_refresh_automatically_once() {
    let text = PROFILES.replace(
        "auto_refresh = false",
        "auto_refresh = true\nrefresh_before_s = 60",
    );
    let mut m = Model::new(
        &profiles(&text),
        Source::File("p".into()),
        Options::default(),
        t0(),
    );
    // acme-prod: a 10-minute token obtained at t0; refreshed 60 s (less a small jitter) before expiry.
    let mut short = active_entry(600);
    short.session.as_mut().unwrap().obtained_at = t0();
    with_cache(
        &mut m,
        &[("acme-prod", short), ("acme-sbx", active_entry(7200))],
    );
    assert!(update(&mut m, Msg::Tick, t0() + TimeDelta::seconds(400)).is_empty());
    let cmds = update(&mut m, Msg::Tick, t0() + TimeDelta::seconds(541));
    assert_eq!(starts(&cmds), [("acme-prod".to_string(), Op::Refresh)]);
    assert_eq!(m.row("acme-prod").unwrap().state(), RowState::Refreshing);
    assert!(
        m.status()
            .unwrap()
            .text
            .contains("refreshing automatically")
    );
    // In flight: not started again.
    assert!(update(&mut m, Msg::Tick, t0() + TimeDelta::seconds(545)).is_empty());
    // A failure pauses it for 30 s, then it is tried again.
    let failure = Failure {
        at: t0() + TimeDelta::seconds(546),
        op: Op::Refresh,
        message: "acme-prod: refresh failed: HTTP 503 maintenance".into(),
        needs_login: false,
        superseded: false,
    };
    let mut failed_entry = m.row("acme-prod").unwrap().entry.clone();
    failed_entry.failure = Some(failure);
    failed_entry.updated_at = Some(t0() + TimeDelta::seconds(546));
    let at = t0() + TimeDelta::seconds(546);
    update(
        &mut m,
        Msg::Done(Box::new(Outcome {
            name: "acme-prod".into(),
            op: Op::Refresh,
            ok: false,
            message: "acme-prod: refresh failed: HTTP 503 maintenance".into(),
            state: State::Error,
            entry: failed_entry,
            requests: vec![request(503, 40)],
            error: None,
        })),
        at,
    );
    assert!(update(&mut m, Msg::Tick, t0() + TimeDelta::seconds(560)).is_empty());
    let cmds = update(&mut m, Msg::Tick, t0() + TimeDelta::seconds(577));
    assert_eq!(starts(&cmds), [("acme-prod".to_string(), Op::Refresh)]);
    // A session that is not due is left alone; a profile with auto_refresh = false too.
    let mut m = model();
    let mut short = active_entry(600);
    short.session.as_mut().unwrap().obtained_at = t0();
    with_cache(&mut m, &[("acme-prod", short)]);
    assert!(update(&mut m, Msg::Tick, t0() + TimeDelta::seconds(590)).is_empty());
}

#[test]
fn starting_many_under_the_state_sort_keeps_the_order_right() {
    let mut m = model();
    with_cache(&mut m, &[("globex", active_entry(7200))]);
    ch(&mut m, 's');
    ch(&mut m, 's');
    assert_eq!(m.sort().0, Sort::State);
    // Active first among these (logged out last).
    assert_eq!(m.visible_names()[0], "globex");
    // The cursor stayed on its row (acme-prod), now second.
    assert_eq!(m.current().unwrap().name(), "acme-prod");
    ch(&mut m, ' ');
    ch(&mut m, ' ');
    assert_eq!(m.selected_names(), ["acme-prod", "acme-sbx"]);
    let cmds = ch(&mut m, 'l');
    assert_eq!(starts(&cmds).len(), 2);
    // Logging in ranks before active: the two move to the top, in file order, cursor with its row.
    assert_eq!(m.visible_names()[..3], ["acme-prod", "acme-sbx", "globex"]);
    // Cancelling both (queued): back below globex.
    let cmds = ch(&mut m, 'c');
    assert_eq!(cancels(&cmds), ["acme-prod", "acme-sbx"]);
    update(
        &mut m,
        Msg::Withdrawn {
            name: "acme-prod".into(),
        },
        t0(),
    );
    update(
        &mut m,
        Msg::Withdrawn {
            name: "acme-sbx".into(),
        },
        t0(),
    );
    assert_eq!(m.visible_names()[0], "globex");
}
