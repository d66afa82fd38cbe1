//! `app::update` with a fixed clock: keys and task results in, commands and Model changes out.

mod common;

use chrono::TimeDelta;
use common::{screen_model, t0};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::path::Path;
use sugar_sessions::app::{
    Clipboard, Column, Command, Model, Msg, Options, ResultKind, RowState, Sort, Source,
    shell_quote, update,
};
use sugar_sessions::config::{self, Profiles};
use sugar_sessions::identity::SessionKey;
use sugar_sessions::outcome::Outcome;
use sugar_sessions::session::{
    CheckReport, Entry, Failure, FailureKind, Op, RequestLog, Session, State,
};
use sugar_sessions::store::Cache;

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

fn profiles(text: &str) -> Profiles {
    config::parse(text, Path::new("profiles.toml")).unwrap()
}

fn fixture() -> Profiles {
    profiles(PROFILES)
}

fn model() -> Model {
    screen_model(&fixture(), Options::default())
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
        ..Default::default()
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
        key: identity(name),
        op,
        ok: true,
        message: format!("{name}: {op} ok"),
        state: entry.state(t0()),
        entry,
        requests: vec![request(200, 120)],
        failure: None,
    }))
}

/// A failure as Sugar's answer gives it.
fn sugar_failure(op: Op, status: u16, label: &str, message: &str, hint: Option<&str>) -> Failure {
    Failure {
        op,
        at: t0(),
        kind: FailureKind::Credentials,
        http_status: Some(status),
        label: Some(label.into()),
        message: message.into(),
        hint: hint.map(str::to_string),
        needs_login: false,
    }
}

fn failed(name: &str) -> Msg {
    let failure = Failure {
        kind: FailureKind::Platform,
        ..sugar_failure(
            Op::Login,
            422,
            "invalid_parameter",
            "Invalid platform specified.",
            Some(
                "the platform \"custom_api\" must be registered in Sugar's Admin > Configure API Platforms, or the profile must use a registered one",
            ),
        )
    };
    let entry = Entry {
        failure: Some(failure.clone()),
        updated_at: Some(t0()),
        ..Default::default()
    };
    Msg::Done(Box::new(Outcome {
        name: name.into(),
        key: identity(name),
        op: Op::Login,
        ok: false,
        message: failure.render(name),
        state: State::Error,
        entry,
        requests: vec![request(422, 80)],
        failure: Some(failure),
    }))
}

/// The identity an outcome about `name` (`NAME` or `NAME>USER`) is for, as the test's files
/// define it.
fn identity(name: &str) -> SessionKey {
    let (parent, user) = match name.split_once('>') {
        Some((parent, user)) => (parent, Some(user)),
        None => (name, None),
    };
    let key = [fixture(), profiles(GUARDED)]
        .iter()
        .find_map(|f| f.get(parent).map(|p| p.session_key()))
        .unwrap_or_else(|| panic!("no profile {parent} in the test's files"));
    match user {
        Some(user) => key.impersonating(user),
        None => key,
    }
}

/// The cache key of a row's session, or for `NAME>USER` of an impersonation through NAME.
fn key_of(m: &Model, name: &str) -> SessionKey {
    match name.split_once('>') {
        Some((parent, user)) => match m.row(parent) {
            Some(row) => row.key.impersonating(user),
            // An identity no profile of the file has.
            None => SessionKey::new("https://gone.example.com", parent, "custom_api", "sugar")
                .impersonating(user),
        },
        None => m.row(name).unwrap().key.clone(),
    }
}

fn with_cache(m: &mut Model, entries: &[(&str, Entry)]) {
    let mut cache = Cache::default();
    for (name, e) in entries {
        cache.insert(key_of(m, name), e.clone());
    }
    update(m, Msg::CacheReloaded(cache.into()), t0());
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
                ..
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
    // Pasting works; control characters and escape sequences (a trailing line end) are left out.
    update(&mut m, Msg::Paste("pasted\x1b[31m-pw\r\n".into()), t0());
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
    // At 120 columns: `s` moves along the columns shown, then back to file order.
    let shown: Vec<Column> = m.shown_columns().iter().map(|c| c.0).collect();
    assert_eq!(
        shown,
        [
            Column::Mark,
            Column::Name,
            Column::Instance,
            Column::User,
            Column::Platform,
            Column::State,
            Column::Token,
            Column::Refresh,
            Column::Last
        ]
    );
    let mut cycle = Vec::new();
    loop {
        ch(&mut m, 's');
        cycle.push(m.sort().0);
        if m.sort().0 == Sort::File {
            break;
        }
    }
    use Sort::*;
    assert_eq!(
        cycle,
        [
            Name, Instance, User, Platform, State, TokenLeft, Refresh, Last, File
        ]
    );
    // Narrower, the columns dropped are skipped.
    update(
        &mut m,
        Msg::Resize {
            width: 44,
            height: 30,
        },
        t0(),
    );
    let mut cycle = Vec::new();
    loop {
        ch(&mut m, 's');
        cycle.push(m.sort().0);
        if m.sort().0 == File {
            break;
        }
    }
    assert_eq!(cycle, [Name, State, TokenLeft, File]);
    assert_eq!(m.sort(), (Sort::File, false));
    ch(&mut m, 'j'); // cursor on acme-sbx
    ch(&mut m, 's');
    assert_eq!(m.sort().0, Sort::Name);
    assert_eq!(m.status().unwrap().text, "sorted by name, ascending");
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
        m.status().unwrap().text,
        "sorted by token time left, descending"
    );
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
    let e = Entry {
        failure: Some(sugar_failure(
            Op::Login,
            401,
            "need_login",
            "bad",
            Some("check the username"),
        )),
        updated_at: Some(t0()),
        ..Default::default()
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
        updated_at: Some(t0()),
        ..Default::default()
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
    // Ctrl-\\ quits too, from anywhere: crossterm reads its byte (0x1C) as Ctrl-4, the kitty
    // keyboard protocol sends Ctrl-\\.
    for (code, mode) in [
        ('4', None),
        ('\\', None),
        ('4', Some('/')),
        ('\\', Some('/')),
    ] {
        let mut m = model();
        if let Some(c) = mode {
            ch(&mut m, c);
        }
        let key = KeyEvent::new(KeyCode::Char(code), KeyModifiers::CONTROL);
        let cmds = update(&mut m, Msg::Key(key), t0());
        assert!(
            matches!(cmds.as_slice(), [Command::Quit]),
            "{code:?}: {cmds:?}"
        );
        assert!(m.quitting());
    }
    // Ctrl-Z suspends, from the table and from the filter, where `z` is text; nothing else changes.
    for mode in [None, Some('/')] {
        let mut m = model();
        if let Some(c) = mode {
            ch(&mut m, c);
        }
        let key = KeyEvent::new(KeyCode::Char('z'), KeyModifiers::CONTROL);
        let cmds = update(&mut m, Msg::Key(key), t0());
        assert!(matches!(cmds.as_slice(), [Command::Suspend]), "{cmds:?}");
        assert!(!m.quitting());
    }
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
        kind: FailureKind::Maintenance,
        ..sugar_failure(Op::Refresh, 503, "maintenance", "", None)
    };
    let mut failed_entry = m.row("acme-prod").unwrap().entry.clone();
    failed_entry.failure = Some(failure);
    failed_entry.updated_at = Some(t0() + TimeDelta::seconds(546));
    let at = t0() + TimeDelta::seconds(546);
    update(
        &mut m,
        Msg::Done(Box::new(Outcome {
            name: "acme-prod".into(),
            key: identity("acme-prod"),
            op: Op::Refresh,
            ok: false,
            message: "acme-prod: refresh failed: HTTP 503 maintenance".into(),
            state: State::Error,
            entry: failed_entry,
            requests: vec![request(503, 40)],
            failure: None,
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
    while m.sort().0 != Sort::State {
        ch(&mut m, 's');
    }
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

// ---------------------------------------------------------------------------------------------
// Sessions that look after themselves: live checks, unverified sessions, the platform guard,
// impersonation, hard ends and re-logins.
// ---------------------------------------------------------------------------------------------

fn checks(cmds: &[Command]) -> Vec<String> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Check { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn sudos(cmds: &[Command]) -> Vec<(String, String)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Sudo { name, user, .. } => Some((name.clone(), user.clone())),
            _ => None,
        })
        .collect()
}

fn report(admin: bool, skew_s: i64) -> CheckReport {
    CheckReport {
        at: t0(),
        user_name: "integration".into(),
        full_name: "Integration User".into(),
        admin,
        flavor: "ENT".into(),
        version: "14.0.0".into(),
        skew_s: Some(skew_s),
        latency_ms: 42,
    }
}

fn get(path: &'static str) -> RequestLog {
    RequestLog {
        at: t0(),
        method: "GET",
        path,
        status: Some(200),
        latency_ms: 30,
    }
}

/// A check that found the session alive (the entry as the cache has it).
fn alive(name: &str, entry: Entry, report: CheckReport) -> Msg {
    let mut message = format!("{name}: alive; {}", report.summary());
    if let Some(w) = report.skew_warning() {
        message.push_str(&format!("; warning: {w}"));
    }
    Msg::Checked {
        outcome: Box::new(Outcome {
            name: name.into(),
            key: identity(name),
            op: Op::Refresh,
            ok: true,
            message,
            state: entry.state(t0()),
            entry,
            requests: vec![
                get("/ping"),
                get("/me"),
                get("/metadata"),
                get("/ping/whattimeisit"),
            ],
            failure: None,
        }),
        report: Some(report),
    }
}

fn sugar_error(op: Op, status: u16, label: &str, message: &str) -> Failure {
    sugar_failure(op, status, label, message, None)
}

#[test]
fn v_checks_the_current_row_and_the_details_get_the_report() {
    let mut m = model();
    with_cache(&mut m, &[("acme-prod", active_entry(3600))]);
    assert!(
        m.footer().iter().any(|b| b.desc == "check"),
        "the footer offers v"
    );
    let cmds = ch(&mut m, 'v');
    assert_eq!(checks(&cmds), ["acme-prod"]);
    // One request per profile: a check is one.
    assert!(m.row("acme-prod").unwrap().busy());
    assert_eq!(m.in_flight(), (0, 1));
    assert!(ch(&mut m, 'v').is_empty());
    assert!(starts(&ch(&mut m, 'r')).is_empty());
    assert!(!m.footer().iter().any(|b| b.desc == "check"));
    // While it runs the session keeps its state; LAST shows the request.
    assert_eq!(m.row("acme-prod").unwrap().state(), RowState::Active);
    assert_eq!(m.row("acme-prod").unwrap().flight.unwrap().op, Op::Check);
    update(
        &mut m,
        Msg::Started {
            name: "acme-prod".into(),
        },
        t0(),
    );
    assert_eq!(m.in_flight(), (1, 0));
    update(
        &mut m,
        alive("acme-prod", active_entry(3600), report(true, 1)),
        t0(),
    );
    let row = m.row("acme-prod").unwrap();
    assert!(!row.busy());
    let c = row.check.as_ref().expect("the report is kept");
    assert_eq!(
        (c.full_name.as_str(), c.admin, c.version.as_str()),
        ("Integration User", true, "14.0.0")
    );
    let last = row.last.as_ref().unwrap();
    assert_eq!(
        (last.op, last.kind, last.latency_ms),
        (Op::Check, ResultKind::Ok, Some(42))
    );
    assert_eq!(row.recent.len(), 4);
    assert_eq!(m.skews(), 0);
    let status = m.status().unwrap();
    assert!(!status.error && status.text.contains("alive"), "{status:?}");

    // A skew over a minute is a warning: red status line, counted for the header.
    ch(&mut m, 'v');
    update(
        &mut m,
        alive("acme-prod", active_entry(3600), report(true, -95)),
        t0(),
    );
    assert_eq!(m.skews(), 1);
    let status = m.status().unwrap();
    assert!(
        status.error && status.text.contains("95 s behind"),
        "{status:?}"
    );
    assert!(m.row("acme-prod").unwrap().skew_warning().is_some());

    // No session: nothing is sent, and the status line says why.
    ch(&mut m, 'j');
    assert!(ch(&mut m, 'v').is_empty());
    assert!(
        m.status().unwrap().text.contains("no active session"),
        "{:?}",
        m.status()
    );
    // A selection: checks the selected rows that have a session, skips the others.
    let mut m = model();
    with_cache(
        &mut m,
        &[
            ("acme-prod", active_entry(3600)),
            ("globex", active_entry(3600)),
        ],
    );
    ch(&mut m, 'a');
    let cmds = ch(&mut m, 'v');
    assert_eq!(checks(&cmds), ["acme-prod", "globex"]);
    assert!(
        m.status().unwrap().text.contains("3 skipped"),
        "{:?}",
        m.status()
    );
}

#[test]
fn a_check_that_sugar_refuses_changes_the_state() {
    let mut m = model();
    with_cache(&mut m, &[("acme-prod", active_entry(3600))]);
    ch(&mut m, 'v');
    // The engine marked the session superseded in the cache and reports that entry.
    let message = "acme-prod: superseded: Sugar no longer accepts this session (HTTP 401 invalid_grant: The access token provided is invalid.) although it had 59m 00s left: another login as integration on platform custom_api ended it (Sugar keeps one session per user and platform); give each integration a platform of its own";
    let mut entry = active_entry(3600);
    entry.session.as_mut().unwrap().refresh_token = None;
    let failure = Failure {
        op: Op::Check,
        at: t0(),
        kind: FailureKind::Superseded,
        http_status: None,
        label: None,
        message: message
            .strip_prefix("acme-prod: superseded: ")
            .unwrap()
            .into(),
        hint: None,
        needs_login: true,
    };
    entry.failure = Some(failure.clone());
    entry.updated_at = Some(t0() + TimeDelta::seconds(1));
    entry.generation = 1;
    let error = failure;
    update(
        &mut m,
        Msg::Checked {
            outcome: Box::new(Outcome {
                name: "acme-prod".into(),
                key: identity("acme-prod"),
                op: Op::Check,
                ok: false,
                message: message.into(),
                state: State::Superseded,
                entry,
                requests: vec![get("/ping")],
                failure: Some(error),
            }),
            report: None,
        },
        t0(),
    );
    let row = m.row("acme-prod").unwrap();
    assert_eq!(row.state(), RowState::Superseded);
    assert_eq!(m.count(RowState::Superseded), 1);
    assert_eq!(row.last.as_ref().unwrap().summary, "superseded");
    let (text, _) = row.error_text().unwrap();
    assert!(
        text.starts_with("superseded: Sugar no longer accepts this session")
            && text.contains("give each integration a platform of its own"),
        "{text}"
    );
    assert!(m.status().unwrap().error);
    // No refresh token any more: no automatic or manual refresh.
    assert!(starts(&ch(&mut m, 'r')).is_empty());
}

#[test]
fn cached_active_sessions_are_unverified_until_their_check_returns() {
    let mut m = model();
    with_cache(
        &mut m,
        &[
            ("acme-prod", active_entry(3600)),
            ("acme-sbx", active_entry(300)),
            ("initech", active_entry(-10)),
        ],
    );
    let cmds = update(&mut m, Msg::Verify, t0());
    // Active sessions only (an expired one has nothing to check), in the background.
    assert_eq!(checks(&cmds), ["acme-prod", "acme-sbx"]);
    let prod = m.row("acme-prod").unwrap();
    assert_eq!(prod.state(), RowState::Unverified);
    assert!(prod.flight.unwrap().background);
    // An expiring session keeps showing that it expires (it needs attention first).
    assert_eq!(m.row("acme-sbx").unwrap().state(), RowState::Expiring);
    assert_eq!(m.count(RowState::Unverified), 1);
    assert_eq!(m.count(RowState::Active), 0);
    assert!(
        m.status()
            .unwrap()
            .text
            .contains("checking 2 cached sessions")
    );
    // The user cannot send a second request for them meanwhile.
    assert!(starts(&ch(&mut m, 'r')).is_empty());
    // Time moves the countdowns, not the unverified mark.
    update(&mut m, Msg::Tick, t0() + TimeDelta::seconds(5));
    assert_eq!(m.row("acme-prod").unwrap().state(), RowState::Unverified);
    let t = t0() + TimeDelta::seconds(5);
    update(
        &mut m,
        alive("acme-prod", active_entry(3600), report(true, 0)),
        t,
    );
    assert_eq!(m.row("acme-prod").unwrap().state(), RowState::Active);
    assert_eq!(m.count(RowState::Unverified), 0);
    // Not the last one yet: no summary.
    assert!(!m.status().unwrap().text.contains("all alive"));
    update(
        &mut m,
        alive("acme-sbx", active_entry(300), report(false, 0)),
        t,
    );
    assert_eq!(
        m.status().unwrap().text,
        "checked the cached sessions: all alive"
    );
    // Nothing cached: nothing to do, nothing drawn.
    let mut m = model();
    m.take_dirty();
    assert!(update(&mut m, Msg::Verify, t0()).is_empty());
    assert!(!m.take_dirty());

    // A failed background check: the summary counts it.
    let mut m = model();
    with_cache(&mut m, &[("acme-prod", active_entry(3600))]);
    update(&mut m, Msg::Verify, t0());
    let error = sugar_error(Op::Check, 503, "maintenance", "down for maintenance");
    update(
        &mut m,
        Msg::Checked {
            outcome: Box::new(Outcome {
                name: "acme-prod".into(),
                key: identity("acme-prod"),
                op: Op::Check,
                ok: false,
                message: error.render("acme-prod"),
                state: State::Active,
                entry: active_entry(3600),
                requests: vec![get("/ping")],
                failure: Some(error),
            }),
            report: None,
        },
        t0(),
    );
    let row = m.row("acme-prod").unwrap();
    assert_eq!(
        row.state(),
        RowState::Active,
        "the session itself is untouched"
    );
    assert_eq!(row.last.as_ref().unwrap().summary, "503 maintenance");
    assert!(
        row.last_error
            .as_ref()
            .unwrap()
            .text
            .starts_with("check failed: HTTP 503")
    );
    let status = m.status().unwrap();
    assert!(
        status.error && status.text.contains("1 not accepted"),
        "{status:?}"
    );
}

const GUARDED: &str = r#"
[defaults]
password_env = "SUGAR_TEST_PASSWORD"
auto_refresh = false

[profiles.web]
url = "https://crm.globex.com"
username = "will"
platform = "base"

[profiles.sync-a]
url = "https://acme.sugarondemand.com"
username = "sync"

[profiles.sync-b]
url = "https://acme.sugarondemand.com"
username = "sync"
# Another OAuth2 client: another session of the same user and platform.
client_id = "sync_client"

[profiles.own]
url = "https://acme.sugarondemand.com"
username = "sync"
platform = "own"
"#;

#[test]
fn a_login_the_platform_guard_warns_of_asks_once_per_profile() {
    let mut m = Model::new(
        &profiles(GUARDED),
        Source::File("p".into()),
        Options::default(),
        t0(),
    );
    let warnings = |m: &Model, name: &str| m.row(name).unwrap().warnings.clone();
    assert!(warnings(&m, "web")[0].contains("logs will out of Sugar's web UI"));
    assert!(warnings(&m, "sync-a")[0].starts_with("sync-b also logs in as sync"));
    assert!(warnings(&m, "own").is_empty());
    // `l` on web: a question, with the warning.
    assert!(ch(&mut m, 'l').is_empty());
    let c = m.confirm().expect("a confirmation");
    assert_eq!(c.op, Op::Login);
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].0, "web");
    // No: nothing sent, and the next `l` asks again.
    assert!(ch(&mut m, 'n').is_empty());
    assert!(m.confirm().is_none());
    assert!(ch(&mut m, 'l').is_empty());
    assert!(m.confirm().is_some());
    // Yes: the login is sent.
    assert_eq!(starts(&ch(&mut m, 'y')), [("web".to_string(), Op::Login)]);
    update(&mut m, ok("web", Op::Login, active_entry(3600)), t0());
    // Asked once per profile while the screen runs: the next login goes straight out.
    assert_eq!(starts(&ch(&mut m, 'l')), [("web".to_string(), Op::Login)]);
    // A profile without warnings: no question.
    ch(&mut m, 'G');
    assert_eq!(starts(&ch(&mut m, 'l')), [("own".to_string(), Op::Login)]);
    // Several at once: one question naming the ones with warnings; yes starts them all.
    ch(&mut m, 'g');
    ch(&mut m, 'j');
    ch(&mut m, ' ');
    ch(&mut m, ' ');
    assert!(ch(&mut m, 'l').is_empty());
    let c = m.confirm().unwrap();
    assert_eq!(c.names, ["sync-a", "sync-b"]);
    let names: Vec<&str> = c.warnings.iter().map(|w| w.0.as_str()).collect();
    assert_eq!(names, ["sync-a", "sync-b"]);
    let s = starts(&press(&mut m, KeyCode::Enter));
    assert_eq!(
        s,
        [
            ("sync-a".to_string(), Op::Login),
            ("sync-b".to_string(), Op::Login)
        ]
    );
    // A refresh is no login: never asked.
    let mut m = Model::new(
        &profiles(GUARDED),
        Source::File("p".into()),
        Options::default(),
        t0(),
    );
    with_cache(&mut m, &[("web", active_entry(3600))]);
    assert_eq!(starts(&ch(&mut m, 'r')), [("web".to_string(), Op::Refresh)]);
}

/// An impersonation's session, as the engine stores it: no refresh token.
fn sudo_entry(user: &str, access_left: i64) -> Entry {
    let mut e = active_entry(access_left);
    let s = e.session.as_mut().unwrap();
    s.refresh_token = None;
    s.refresh_expires_at = None;
    s.username = user.into();
    e
}

fn impersonated(parent: &str, user: &str, entry: Entry) -> Msg {
    Msg::Impersonated {
        parent: parent.into(),
        outcome: Box::new(Outcome {
            name: format!("{parent}>{user}"),
            key: identity(&format!("{parent}>{user}")),
            op: Op::Login,
            ok: true,
            message: format!(
                "{parent}>{user}: impersonating {user} through {parent}'s admin session"
            ),
            state: entry.state(t0()),
            entry,
            requests: vec![RequestLog {
                at: t0(),
                method: "POST",
                path: "/oauth2/sudo",
                status: Some(200),
                latency_ms: 55,
            }],
            failure: None,
        }),
    }
}

#[test]
fn u_impersonates_through_the_current_row_and_the_result_is_a_row_after_it() {
    let mut m = model();
    with_cache(&mut m, &[("acme-prod", active_entry(3600))]);
    assert!(m.footer().iter().any(|b| b.desc == "impersonate"));
    // `u` opens the prompt; keys are text there (`q` and `l` too).
    assert!(ch(&mut m, 'u').is_empty());
    let p = m.user_prompt().expect("the user prompt");
    assert_eq!(
        (p.name.as_str(), p.username.as_str()),
        ("acme-prod", "integration")
    );
    assert!(typed(&mut m, "salq").is_empty());
    press(&mut m, KeyCode::Backspace);
    typed(&mut m, "ly");
    assert_eq!(m.user_prompt().unwrap().text, "sally");
    let cmds = press(&mut m, KeyCode::Enter);
    assert_eq!(
        sudos(&cmds),
        [("acme-prod".to_string(), "sally".to_string())]
    );
    assert!(m.user_prompt().is_none());
    // The request is the parent's: one at a time.
    let parent = m.row("acme-prod").unwrap();
    assert_eq!(parent.flight.unwrap().op, Op::Sudo);
    assert_eq!(parent.state(), RowState::Active);
    assert!(ch(&mut m, 'u').is_empty() && m.user_prompt().is_none());
    // The answer: a row of its own right after its profile, with its own countdown and no
    // refresh column value.
    update(
        &mut m,
        impersonated("acme-prod", "sally", sudo_entry("sally", 3600)),
        t0(),
    );
    assert_eq!(
        m.visible_names(),
        [
            "acme-prod",
            "acme-prod>sally",
            "acme-sbx",
            "globex",
            "initech",
            "umbrella"
        ]
    );
    assert_eq!(m.total(), 6);
    let row = m.row("acme-prod>sally").unwrap();
    assert!(row.is_sudo());
    assert_eq!(row.state(), RowState::Active);
    assert_eq!(row.token_left(t0()).as_deref(), Some("1h 00m"));
    assert_eq!(row.refresh_left(t0()), None);
    assert_eq!(row.last.as_ref().unwrap().op, Op::Sudo);
    assert_eq!(row.profile.username, "sally");
    assert_eq!(m.count(RowState::Active), 2);
    let parent = m.row("acme-prod").unwrap();
    assert!(!parent.busy());
    assert_eq!(parent.last.as_ref().unwrap().op, Op::Sudo);
    assert!(m.status().unwrap().text.contains("impersonating sally"));
    // Its countdown runs with the clock.
    let later = t0() + TimeDelta::seconds(61);
    update(&mut m, Msg::Tick, later);
    assert_eq!(
        m.row("acme-prod>sally")
            .unwrap()
            .token_left(later)
            .as_deref(),
        Some("58m 59s")
    );

    // On the impersonation: no login, no refresh, no impersonation; a check and a logout.
    ch(&mut m, 'j');
    assert_eq!(m.current().unwrap().name(), "acme-prod>sally");
    assert!(starts(&ch(&mut m, 'l')).is_empty());
    assert!(m.status().unwrap().text.contains("u on its profile"));
    assert!(starts(&ch(&mut m, 'r')).is_empty());
    assert!(ch(&mut m, 'u').is_empty() && m.user_prompt().is_none());
    assert!(m.status().unwrap().text.contains("is an impersonation"));
    // Tagged prod like its profile: the logout asks first.
    assert!(ch(&mut m, 'o').is_empty());
    assert_eq!(
        starts(&ch(&mut m, 'y')),
        [("acme-prod>sally".to_string(), Op::Logout)]
    );
    assert_eq!(
        m.row("acme-prod>sally").unwrap().state(),
        RowState::LoggingOut
    );
    let gone = Entry {
        updated_at: Some(later),
        ..Entry::default()
    };
    update(&mut m, ok("acme-prod>sally", Op::Logout, gone), later);
    // A logged-out impersonation is no longer shown (nor counted); the cursor stays in bounds.
    assert_eq!(
        m.visible_names(),
        ["acme-prod", "acme-sbx", "globex", "initech", "umbrella"]
    );
    assert_eq!(m.total(), 5);
    assert_eq!(m.count(RowState::LoggedOut), 4);
    assert_eq!(m.count(RowState::Active), 1);
    assert_eq!(m.current().unwrap().name(), "acme-sbx");
    // Impersonating the same user again brings the row back.
    ch(&mut m, 'g');
    ch(&mut m, 'u');
    typed(&mut m, "sally");
    press(&mut m, KeyCode::Enter);
    update(
        &mut m,
        impersonated("acme-prod", "sally", sudo_entry("sally", 3600)),
        later,
    );
    assert_eq!(m.visible_names()[1], "acme-prod>sally");
}

#[test]
fn impersonation_refusals_and_failures_show_plainly() {
    let mut m = model();
    // No session: refused before anything is sent.
    assert!(ch(&mut m, 'u').is_empty());
    assert!(m.user_prompt().is_none());
    assert!(
        m.status()
            .unwrap()
            .text
            .contains("needs an active admin session"),
        "{:?}",
        m.status()
    );
    assert!(!m.footer().iter().any(|b| b.desc == "impersonate"));
    with_cache(&mut m, &[("acme-prod", active_entry(3600))]);
    // Esc closes the prompt; an empty name or one with `>` is not sent.
    ch(&mut m, 'u');
    press(&mut m, KeyCode::Esc);
    assert!(m.user_prompt().is_none());
    ch(&mut m, 'u');
    assert!(press(&mut m, KeyCode::Enter).is_empty());
    assert!(m.user_prompt().is_some());
    typed(&mut m, "a>b");
    assert!(press(&mut m, KeyCode::Enter).is_empty());
    assert!(m.status().unwrap().text.contains("not a user name"));
    press(&mut m, KeyCode::Esc);

    // 404: the parent's row carries the error, and no row appears.
    ch(&mut m, 'u');
    typed(&mut m, "nobody");
    press(&mut m, KeyCode::Enter);
    let error = sugar_error(
        Op::Sudo,
        404,
        "not_found",
        "Could not find a user named nobody",
    );
    update(
        &mut m,
        Msg::Impersonated {
            parent: "acme-prod".into(),
            outcome: Box::new(Outcome {
                name: "acme-prod>nobody".into(),
                key: identity("acme-prod>nobody"),
                op: Op::Sudo,
                ok: false,
                message: error.render("acme-prod>nobody"),
                state: State::Error,
                entry: Entry::default(),
                requests: vec![RequestLog {
                    at: t0(),
                    method: "POST",
                    path: "/oauth2/sudo",
                    status: Some(404),
                    latency_ms: 12,
                }],
                failure: Some(error),
            }),
        },
        t0(),
    );
    assert!(
        m.row("acme-prod>nobody")
            .is_none_or(|r| !m.visible().iter().any(|&i| m.rows()[i].name() == r.name()))
    );
    assert_eq!(m.total(), 5);
    let parent = m.row("acme-prod").unwrap();
    assert_eq!(
        parent.state(),
        RowState::Active,
        "the admin's session is fine"
    );
    assert_eq!(parent.last.as_ref().unwrap().summary, "404 not_found");
    let (text, _) = parent.error_text().unwrap();
    assert_eq!(
        text,
        "sudo as nobody failed: HTTP 404 not_found: Could not find a user named nobody"
    );
    let status = m.status().unwrap();
    assert!(status.error && status.text.contains("404"), "{status:?}");

    // A check that found the user is no admin: refused with why.
    ch(&mut m, 'v');
    update(
        &mut m,
        alive("acme-prod", active_entry(3600), report(false, 0)),
        t0(),
    );
    assert!(ch(&mut m, 'u').is_empty());
    assert!(m.user_prompt().is_none());
    assert!(
        m.status()
            .unwrap()
            .text
            .contains("integration is not an admin"),
        "{:?}",
        m.status()
    );
}

#[test]
fn impersonations_in_the_cache_get_rows_after_their_profile() {
    let mut m = model();
    let mut later = sudo_entry("jsmith", 1800);
    later.updated_at = Some(t0());
    with_cache(
        &mut m,
        &[
            ("acme-sbx", active_entry(3600)),
            ("acme-sbx>jsmith", later.clone()),
            ("acme-sbx>alice", sudo_entry("alice", 900)),
            // No session (logged out elsewhere), or no such profile: no row.
            ("acme-prod>bob", Entry::default()),
            ("gone>carol", sudo_entry("carol", 900)),
        ],
    );
    assert_eq!(
        m.visible_names(),
        [
            "acme-prod",
            "acme-sbx",
            "acme-sbx>alice",
            "acme-sbx>jsmith",
            "globex",
            "initech",
            "umbrella"
        ]
    );
    assert_eq!(m.count(RowState::Active), 3);
    // The filter finds them by their profile's tags and their user.
    ch(&mut m, '/');
    typed(&mut m, "jsmith");
    assert_eq!(m.visible_names(), ["acme-sbx>jsmith"]);
    press(&mut m, KeyCode::Esc);
    // Another process logged one out: it disappears on the next reload.
    let gone = Entry {
        updated_at: Some(t0() + TimeDelta::seconds(5)),
        ..Entry::default()
    };
    let mut cache = Cache::default();
    cache.insert(key_of(&m, "acme-sbx"), active_entry(3600));
    cache.insert(key_of(&m, "acme-sbx>jsmith"), gone);
    cache.insert(key_of(&m, "acme-sbx>alice"), sudo_entry("alice", 900));
    update(&mut m, Msg::CacheReloaded(cache.into()), t0());
    assert_eq!(
        m.visible_names(),
        [
            "acme-prod",
            "acme-sbx",
            "acme-sbx>alice",
            "globex",
            "initech",
            "umbrella"
        ]
    );
    assert_eq!(m.count(RowState::Active), 2);
    // Selected and then gone: the selection count follows.
    let mut m = model();
    with_cache(&mut m, &[("acme-sbx>alice", sudo_entry("alice", 900))]);
    ch(&mut m, 'a');
    assert_eq!(m.selected_count(), 6);
    let gone = Entry {
        updated_at: Some(t0() + TimeDelta::seconds(5)),
        ..Entry::default()
    };
    with_cache(&mut m, &[("acme-sbx>alice", gone)]);
    assert_eq!(m.selected_count(), 5);
    // Under the name sort they sort by name.
    let mut m = model();
    with_cache(&mut m, &[("acme-sbx>alice", sudo_entry("alice", 900))]);
    ch(&mut m, 's');
    assert_eq!(
        m.visible_names()[..3],
        ["acme-prod", "acme-sbx", "acme-sbx>alice"]
    );
}

#[test]
fn the_refresh_column_shows_the_hard_end_once_refreshing_no_longer_extends() {
    let mut m = model();
    let mut capped = active_entry(3600);
    let end = t0() + TimeDelta::seconds(190);
    {
        let s = capped.session.as_mut().unwrap();
        s.expires_at = end;
        s.refresh_expires_at = Some(end);
        s.hard_end = Some(end);
    }
    with_cache(
        &mut m,
        &[("acme-prod", capped), ("acme-sbx", active_entry(3600))],
    );
    assert!(m.any_hard_end());
    assert_eq!(
        m.row("acme-prod").unwrap().refresh_left(t0()).as_deref(),
        Some("ends 3m 10s")
    );
    assert_eq!(
        m.row("acme-sbx").unwrap().refresh_left(t0()).as_deref(),
        Some("14d 00h")
    );
    // Logged in again: no hard end any more.
    update(&mut m, ok("acme-prod", Op::Login, active_entry(3600)), t0());
    assert!(!m.any_hard_end());
}

#[test]
fn a_refresh_saved_by_a_new_login_shows_as_a_re_login() {
    let mut m = model();
    with_cache(&mut m, &[("acme-prod", active_entry(3600))]);
    let at = t0() + TimeDelta::seconds(10);
    ch(&mut m, 'r');
    let mut entry = active_entry(3600);
    entry.relogin_at = Some(at);
    entry.updated_at = Some(at);
    // The engine reports a refresh whose token was rejected and that logged in again as such.
    update(&mut m, ok("acme-prod", Op::Relogin, entry.clone()), at);
    let last = m.row("acme-prod").unwrap().last.clone().unwrap();
    assert_eq!((last.op, last.kind), (Op::Relogin, ResultKind::Ok));
    // An ordinary refresh later (the re-login long past) is a refresh.
    let at = t0() + TimeDelta::seconds(20);
    update(
        &mut m,
        Msg::Key(KeyEvent::new(KeyCode::Char('r'), KeyModifiers::NONE)),
        at,
    );
    entry.updated_at = Some(at);
    update(&mut m, ok("acme-prod", Op::Refresh, entry), at);
    assert_eq!(
        m.row("acme-prod").unwrap().last.as_ref().unwrap().op,
        Op::Refresh
    );
}

#[test]
fn a_background_check_withdrawn_before_it_was_sent_leaves_the_session_unverified() {
    let mut m = model();
    with_cache(
        &mut m,
        &[
            ("acme-prod", active_entry(3600)),
            ("acme-sbx", active_entry(3600)),
        ],
    );
    assert_eq!(checks(&update(&mut m, Msg::Verify, t0())).len(), 2);
    assert!(m.footer().iter().any(|b| b.desc == "cancel"));
    assert_eq!(cancels(&ch(&mut m, 'c')), ["acme-prod"]);
    update(
        &mut m,
        Msg::Withdrawn {
            name: "acme-prod".into(),
        },
        t0(),
    );
    let row = m.row("acme-prod").unwrap();
    assert_eq!(row.state(), RowState::Unverified);
    assert_eq!(row.last.as_ref().unwrap().kind, ResultKind::Withdrawn);
    // It can be checked by hand now.
    assert!(m.footer().iter().any(|b| b.desc == "check"));
    update(
        &mut m,
        alive("acme-sbx", active_entry(3600), report(true, 0)),
        t0(),
    );
    assert_eq!(
        m.status().unwrap().text,
        "checked the cached sessions: all alive; 1 withdrawn, still unverified (v checks)"
    );
    assert_eq!(checks(&ch(&mut m, 'v')), ["acme-prod"]);
    update(
        &mut m,
        alive("acme-prod", active_entry(3600), report(true, 0)),
        t0(),
    );
    assert_eq!(m.row("acme-prod").unwrap().state(), RowState::Active);
    assert!(m.status().unwrap().text.starts_with("acme-prod: alive"));
}

fn copied(cmds: &[Command]) -> Vec<String> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Copy { text } => Some(text.expose().to_string()),
            _ => None,
        })
        .collect()
}

fn status_text(m: &Model) -> String {
    m.status().map(|s| s.text.clone()).unwrap_or_default()
}

#[test]
fn y_copies_the_token_and_e_an_export_line_and_the_status_line_never_shows_the_token() {
    let mut m = model();
    with_cache(&mut m, &[("acme-prod", active_entry(52 * 60 + 7))]);
    // `y`: the token alone, through a command for the runtime; the status line says what.
    assert_eq!(copied(&ch(&mut m, 'y')), ["access-token-value-1234"]);
    let said = status_text(&m);
    assert_eq!(
        said,
        "copied acme-prod's access token (valid 52m 07s) to the clipboard (OSC 52)"
    );
    assert!(!m.status().unwrap().error);
    // `e`: a line for a shell, values single-quoted.
    assert_eq!(
        copied(&ch(&mut m, 'e')),
        [
            "export SUGAR_URL='https://acme.sugarondemand.com/rest/v11' SUGAR_TOKEN='access-token-value-1234'"
        ]
    );
    assert!(status_text(&m).starts_with("copied an export line for acme-prod"));
    assert!(!status_text(&m).contains("access-token-value"));
    // The footer offers `y` while copying is on.
    assert!(m.footer().iter().any(|b| b.label == "y"));
    // A row without a usable token says so, and nothing goes to the terminal; the footer does
    // not offer `y` there.
    ch(&mut m, 'j');
    assert!(!m.footer().iter().any(|b| b.label == "y"));
    assert!(copied(&ch(&mut m, 'y')).is_empty());
    assert_eq!(
        status_text(&m),
        "acme-sbx: no usable access token to copy (logged out); nothing copied"
    );
    assert!(m.status().unwrap().error);
    // An expired token neither (nor one about to expire: it is not handed out).
    let mut m = model();
    with_cache(&mut m, &[("acme-prod", active_entry(-5))]);
    assert!(copied(&ch(&mut m, 'e')).is_empty());
    assert!(
        status_text(&m).contains("no usable access token"),
        "{}",
        status_text(&m)
    );
}

#[test]
fn copying_off_says_so_and_a_huge_payload_is_refused() {
    let mut m = Model::new(
        &fixture(),
        Source::File("profiles.toml".into()),
        Options {
            clipboard: Clipboard::Off,
            ..Options::default()
        },
        t0(),
    );
    with_cache(&mut m, &[("acme-prod", active_entry(3600))]);
    assert!(copied(&ch(&mut m, 'y')).is_empty());
    assert_eq!(
        status_text(&m),
        "copying is off (SUGAR_SESSIONS_CLIPBOARD=off)"
    );
    assert!(!m.footer().iter().any(|b| b.label == "y"));
    // Unknown values copy (OSC 52), `off` in any case turns it off.
    assert_eq!(Clipboard::from_env(Some("OFF")), Clipboard::Off);
    assert_eq!(Clipboard::from_env(Some("osc52")), Clipboard::Osc52);
    assert_eq!(Clipboard::from_env(Some("xclip")), Clipboard::Osc52);
    assert_eq!(Clipboard::from_env(None), Clipboard::Osc52);
    // A token too long for OSC 52 (over 100,000 bytes in base64): refused, with the reason.
    let mut m = model();
    let mut big = active_entry(3600);
    big.session.as_mut().unwrap().access_token = "t".repeat(75_001).into();
    with_cache(&mut m, &[("acme-prod", big)]);
    assert!(copied(&ch(&mut m, 'y')).is_empty());
    assert_eq!(
        status_text(&m),
        "acme-prod: not copied: acme-prod's access token (valid 1h 00m) is 100004 bytes in \
         base64, over the 100000 that terminals take in OSC 52"
    );
    // Just under the limit goes.
    let mut m = model();
    let mut fits = active_entry(3600);
    fits.session.as_mut().unwrap().access_token = "t".repeat(75_000).into();
    with_cache(&mut m, &[("acme-prod", fits)]);
    assert_eq!(copied(&ch(&mut m, 'y')).len(), 1);
    assert_eq!(shell_quote("it's"), r"'it'\''s'");
}

#[test]
fn esc_closes_the_details_pane_first_and_unknown_keys_point_to_the_help() {
    let mut m = model();
    typed(&mut m, "/acme");
    press(&mut m, KeyCode::Enter);
    press(&mut m, KeyCode::Enter);
    assert!(m.details_open());
    // Esc: the details pane first, then the filter.
    press(&mut m, KeyCode::Esc);
    assert!(!m.details_open());
    assert_eq!(m.filter(), "acme");
    press(&mut m, KeyCode::Esc);
    assert_eq!(m.filter(), "");
    // A key that means nothing here says so, and where to look.
    ch(&mut m, 'x');
    assert_eq!(status_text(&m), "unknown key, ? for help");
    press(&mut m, KeyCode::F(5));
    assert_eq!(status_text(&m), "unknown key, ? for help");
    // In the help, keys that mean nothing are ignored.
    ch(&mut m, '?');
    m.take_dirty();
    ch(&mut m, 'x');
    assert!(m.help_open() && !m.take_dirty());
}

// ---- Read-only -------------------------------------------------------------------------------

/// The fixture with `read_only = true` and automatic refreshes on; acme-prod's token is due for
/// its automatic refresh at t0 + 541 s.
fn read_only_model(keep_alive: bool) -> Model {
    let text = PROFILES.replace(
        "auto_refresh = false",
        "auto_refresh = true\nrefresh_before_s = 60\nread_only = true",
    );
    let mut m = screen_model(
        &profiles(&text),
        Options {
            keep_alive,
            ..Options::default()
        },
    );
    let mut short = active_entry(600);
    short.session.as_mut().unwrap().obtained_at = t0();
    with_cache(
        &mut m,
        &[("acme-prod", short), ("acme-sbx", active_entry(7200))],
    );
    m
}

#[test]
fn a_read_only_screen_refuses_what_changes_or_shows_a_session_and_says_so() {
    let mut m = read_only_model(false);
    assert!(m.options().read_only, "read from the file's [defaults]");
    for (c, what) in [
        ('l', "l (log in)"),
        ('r', "r (refresh)"),
        ('o', "o (log out)"),
        ('u', "u (impersonate)"),
        ('y', "y (copy token)"),
        ('e', "e (copy export line)"),
    ] {
        let cmds = ch(&mut m, c);
        assert!(cmds.is_empty(), "{c}: {cmds:?}");
        let status = m.status().unwrap();
        assert!(status.error);
        assert_eq!(
            status.text,
            format!("read-only screen: {what} is refused; this screen only shows sessions")
        );
    }
    assert!(
        m.prompt().is_none() && m.user_prompt().is_none() && m.confirm().is_none(),
        "no prompt opened"
    );
    // The footer offers none of them.
    let footer: Vec<&str> = m.footer().iter().map(|b| b.label).collect();
    for refused in ["l", "r", "o", "u", "y", "e"] {
        assert!(!footer.contains(&refused), "{footer:?}");
    }
    // A check of one session reads; a check or a login of many (a bulk action) is refused.
    let cmds = ch(&mut m, 'v');
    assert!(matches!(cmds.as_slice(), [Command::Check { name, .. }] if name == "acme-prod"));
    ch(&mut m, 'a');
    assert!(ch(&mut m, 'v').is_empty());
    assert!(m.status().unwrap().text.contains("read-only"));
    assert!(ch(&mut m, 'l').is_empty());
    // No automatic refresh, and no checks at start.
    assert!(update(&mut m, Msg::Tick, t0() + TimeDelta::seconds(541)).is_empty());
    assert!(update(&mut m, Msg::Verify, t0() + TimeDelta::seconds(542)).is_empty());
}

#[test]
fn a_read_only_screen_with_keep_alive_still_refreshes_what_is_due_and_checks_at_start() {
    let mut m = read_only_model(true);
    let cmds = update(&mut m, Msg::Verify, t0());
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    let mut m = read_only_model(true);
    let cmds = update(&mut m, Msg::Tick, t0() + TimeDelta::seconds(541));
    assert_eq!(starts(&cmds), [("acme-prod".to_string(), Op::Refresh)]);
    // The keys stay refused.
    assert!(ch(&mut m, 'r').is_empty());
    assert!(m.status().unwrap().text.starts_with("read-only screen"));
}
