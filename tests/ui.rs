//! Rendered frames (`TestBackend`) at 80x24 and 160x40: what a user would read on the screen.

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::path::Path;
use sugar_sessions::app::{Model, Msg, Options, Source, Zone, update};
use sugar_sessions::config;
use sugar_sessions::identity::SessionKey;
use sugar_sessions::outcome::Outcome;
use sugar_sessions::session::{Entry, Failure, FailureKind, Op, RequestLog, Session, State};
use sugar_sessions::store::Cache;
use sugar_sessions::ui::{self, Column};

const PROFILES: &str = r#"
[defaults]
username = "integration"
password = "not-shown-anywhere"
platform = "acme_sync"

[profiles.acme-prod]
url = "https://acme.sugarondemand.com"
tags = ["acme", "prod"]

[profiles.acme-sbx]
url = "https://acme-sbx.sugarondemand.com"
username = "admin"
platform = "custom_api"
tags = ["acme", "sandbox"]

[profiles.globex]
url = "https://crm.globex.com"
username = "svc_globex"
platform = "base"
password_keyring = true
tags = ["globex"]

[profiles.initech]
url = "https://initech.sugarcrm.eu"
username = "jim"
tags = ["initech"]
"#;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T13:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn options() -> Options {
    Options {
        ascii: false,
        color: true,
        zone: Zone::Fixed(FixedOffset::east_opt(3600).unwrap()),
        clipboard: Default::default(),
        read_only: false,
        keep_alive: false,
    }
}

fn session(access_left: i64, refresh_left: i64) -> Session {
    Session {
        access_token: "802b64c0-5eac-8431-a541-5342d38ac527".into(),
        refresh_token: Some("85053198-24b1-4521-b1a1-5342d382e0b7".into()),
        download_token: None,
        obtained_at: now() - TimeDelta::minutes(5),
        expires_at: now() + TimeDelta::seconds(access_left),
        refresh_expires_at: Some(now() + TimeDelta::seconds(refresh_left)),
        platform: "acme_sync".into(),
        username: "integration".into(),
        url: "https://acme.sugarondemand.com/".into(),
        hard_end: None,
    }
}

fn entry(session: Option<Session>, failure: Option<Failure>) -> Entry {
    Entry {
        session,
        failure,
        updated_at: Some(now() - TimeDelta::minutes(1)),
        ..Default::default()
    }
}

/// The identity an outcome about `name` (`NAME` or `NAME>USER`) is for, as the file defines it.
fn identity(name: &str) -> SessionKey {
    let profiles = config::parse(
        PROFILES,
        Path::new("/home/u/.config/sugar-sessions/profiles.toml"),
    )
    .unwrap();
    let (parent, user) = match name.split_once('>') {
        Some((parent, user)) => (parent, Some(user)),
        None => (name, None),
    };
    let key = profiles.get(parent).unwrap().session_key();
    match user {
        Some(user) => key.impersonating(user),
        None => key,
    }
}

/// The cache key of a row's session, or for `NAME>USER` of an impersonation through NAME.
fn key_of(m: &Model, name: &str) -> SessionKey {
    match name.split_once('>') {
        Some((parent, user)) => m.row(parent).unwrap().key.impersonating(user),
        None => m.row(name).unwrap().key.clone(),
    }
}

/// acme-prod active (52m 07s), acme-sbx expiring (4m 12s), globex logged out, initech logged out.
fn model(opts: Options) -> Model {
    model_with_defaults("", opts)
}

fn key(m: &mut Model, code: KeyCode) {
    update(m, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)), now());
}

fn resize(m: &mut Model, w: u16, h: u16) {
    update(
        m,
        Msg::Resize {
            width: w,
            height: h,
        },
        now(),
    );
}

fn render(m: &Model, w: u16, h: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| ui::view(m, now(), f)).unwrap();
    let buf = terminal.backend().buffer().clone();
    (0..h)
        .map(|y| {
            let mut line = String::new();
            let mut x = 0;
            while x < w {
                let cell = &buf[(x, y)];
                line.push_str(cell.symbol());
                x += 1;
            }
            line
        })
        .collect()
}

fn screen(lines: &[String]) -> String {
    lines.join("\n")
}

fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", screen(lines)))
}

fn failed_outcome() -> Outcome {
    let failure = Failure {
        op: Op::Login,
        at: now(),
        kind: FailureKind::Credentials,
        http_status: Some(401),
        label: Some("need_login".into()),
        message: "You must specify a valid username and password.".into(),
        hint: Some("check the username and the password source of the profile".into()),
        needs_login: false,
    };
    let message = failure.render("globex");
    Outcome {
        name: "globex".into(),
        key: identity("globex"),
        op: Op::Login,
        ok: false,
        message,
        entry: entry(None, Some(failure.clone())),
        state: State::Error,
        requests: vec![RequestLog {
            at: now() - TimeDelta::seconds(2),
            method: "POST",
            path: "/oauth2/token",
            status: Some(401),
            latency_ms: 184,
        }],
        failure: Some(failure),
    }
}

#[test]
fn main_table_at_160x40_shows_every_column_and_live_countdowns() {
    let mut m = model(options());
    resize(&mut m, 160, 40);
    let lines = render(&m, 160, 40);
    let s = screen(&lines);
    println!("{s}");
    for title in [
        "NAME", "TAGS", "INSTANCE", "USER", "PLATFORM", "STATE", "TOKEN", "REFRESH", "LAST",
    ] {
        assert!(
            lines[2].contains(title),
            "{title} missing at 160 cols:\n{s}"
        );
    }
    let prod = line_with(&lines, "acme-prod");
    assert!(prod.contains("⚑"), "prod marker: {prod}");
    assert!(prod.contains("● active"), "{prod}");
    assert!(prod.contains("52m 07s"), "{prod}");
    assert!(prod.contains("13d 23h"), "{prod}");
    assert!(prod.contains("acme.sugarondemand.com"), "{prod}");
    let sbx = line_with(&lines, "acme-sbx");
    assert!(
        sbx.contains("◐ expiring") && sbx.contains("4m 12s"),
        "{sbx}"
    );
    assert!(line_with(&lines, "initech").contains("○ logged out"));
    // Header: where the profiles come from, and counts per state with words.
    assert!(lines[0].contains("profiles.toml"), "{}", lines[0]);
    assert!(
        lines[0].contains("1 active")
            && lines[0].contains("1 expiring")
            && lines[0].contains("2 logged out"),
        "{}",
        lines[0]
    );
    // Footer: keys that apply.
    let footer = &lines[39];
    assert!(
        footer.contains("log in") && footer.contains("help") && footer.contains("quit"),
        "{footer}"
    );
    // The password never shows.
    assert!(!s.contains("not-shown-anywhere"));

    // One second later the countdown has moved.
    let later = now() + TimeDelta::seconds(1);
    let mut terminal = Terminal::new(TestBackend::new(160, 40)).unwrap();
    terminal.draw(|f| ui::view(&m, later, f)).unwrap();
    let text: String = terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    assert!(text.contains("52m 06s"));
}

#[test]
fn at_80x24_columns_drop_by_priority_and_nothing_overlaps() {
    let mut m = model(options());
    resize(&mut m, 80, 24);
    let lines = render(&m, 80, 24);
    let s = screen(&lines);
    println!("{s}");
    let header = &lines[2];
    for kept in ["NAME", "STATE", "TOKEN"] {
        assert!(header.contains(kept), "{kept} dropped:\n{s}");
    }
    for dropped in ["TAGS", "PLATFORM", "INSTANCE"] {
        assert!(!header.contains(dropped), "{dropped} kept at 80 cols:\n{s}");
    }
    let prod = line_with(&lines, "acme-prod");
    assert!(
        prod.contains("● active") && prod.contains("52m 07s"),
        "{prod}"
    );
    // Every line fits: the last column of the table is the border.
    for l in &lines[1..lines.len() - 2] {
        assert_eq!(l.chars().count(), 80);
    }
    // Columns as the layout computes them fit the inner width.
    let cols = ui::columns(&m, 78);
    let total: u16 = cols.iter().map(|c| c.1).sum::<u16>() + cols.len() as u16 - 1;
    assert!(total <= 78, "{cols:?}");
    // The drop order at decreasing widths.
    let names = |w| {
        ui::columns(&m, w)
            .into_iter()
            .map(|c| c.0)
            .collect::<Vec<_>>()
    };
    assert!(names(158).contains(&Column::Tags));
    assert!(!names(120).contains(&Column::Tags) || names(120).contains(&Column::Platform));
    let narrow = names(38);
    assert!(
        narrow.contains(&Column::Name)
            && narrow.contains(&Column::State)
            && narrow.contains(&Column::Token)
    );
    assert!(!narrow.contains(&Column::Refresh));
}

#[test]
fn details_pane_shows_url_user_expiry_in_local_time_and_requests() {
    let mut m = model(options());
    resize(&mut m, 160, 40);
    key(&mut m, KeyCode::Enter);
    let lines = render(&m, 160, 40);
    let s = screen(&lines);
    println!("{s}");
    assert!(s.contains("https://acme.sugarondemand.com/rest/v11"), "{s}");
    assert!(
        s.contains("integration · platform acme_sync · client sugar"),
        "{s}"
    );
    // 13:52:07Z in UTC+01:00.
    assert!(
        s.contains("until 2026-03-01 14:52:07 +01:00 (52m 07s left)"),
        "{s}"
    );
    assert!(!s.contains("802b64c0"), "a token is on the screen");
}

#[test]
fn the_details_pane_says_where_the_password_comes_from() {
    let mut m = model(options());
    resize(&mut m, 160, 40);
    key(&mut m, KeyCode::Enter);
    let s = screen(&render(&m, 160, 40));
    assert!(
        s.contains("Password  in the profiles file (password)"),
        "{s}"
    );
    assert!(!s.contains("not-shown-anywhere"), "{s}");
    go_to(&mut m, "globex");
    let s = screen(&render(&m, 160, 40));
    assert!(
        s.contains("Password  OS keyring, account svc_globex@crm.globex.com"),
        "{s}"
    );
}

#[test]
fn an_error_row_and_its_details_with_hint_at_80x24() {
    let mut m = model(options());
    resize(&mut m, 80, 24);
    key(&mut m, KeyCode::Char('j'));
    key(&mut m, KeyCode::Char('j'));
    update(&mut m, Msg::Done(Box::new(failed_outcome())), now());
    key(&mut m, KeyCode::Enter);
    let lines = render(&m, 80, 24);
    let s = screen(&lines);
    println!("{s}");
    let row = line_with(&lines, "globex");
    assert!(row.contains("✗ error"), "{row}");
    assert!(row.contains("401 need_l"), "{row}");
    assert!(s.contains("Error"), "{s}");
    assert!(s.contains("login failed: HTTP 401 need_login"), "{s}");
    assert!(s.contains("Hint"), "{s}");
    assert!(s.contains("POST /oauth2/token"), "{s}");
    assert!(s.contains("184 ms"), "{s}");
}

#[test]
fn help_overlay_lists_keys_and_states() {
    let mut m = model(options());
    resize(&mut m, 80, 24);
    key(&mut m, KeyCode::Char('?'));
    let lines = render(&m, 80, 24);
    let s = screen(&lines);
    println!("{s}");
    assert!(s.contains("Help"));
    assert!(s.contains("log in") && s.contains("refresh") && s.contains("log out"));
    assert!(s.contains("Ctrl-C/Ctrl-\\ quit · Ctrl-Z suspend"), "{s}");
    // The whole help fits at 80x24: its last words show.
    assert!(s.contains("by themselves."), "{s}");
    let mut m = model(options());
    resize(&mut m, 160, 40);
    key(&mut m, KeyCode::Char('?'));
    let s = screen(&render(&m, 160, 40));
    println!("{s}");
    assert!(s.contains("⊘ refresh expired"), "{s}");
    assert!(s.contains("◐ expiring"), "{s}");
    // Every mark the table uses is explained, and the keys y, e, s, S and Esc.
    for text in [
        "⚑ prod",
        "⚠ warning (⏎ says why)",
        "INSECURE/HTTP unsafe transport",
        "▶ cursor",
        "✓ selected",
        "↑/↓ sorted column, ascending/descending",
        "— none",
        "LAST ✓ ok ✗ failed ⟳ in flight",
        "copy token",
        "copy export line",
        "reverse sort",
        "Esc       close details/clear filter/selection",
    ] {
        assert!(s.contains(text), "{text}: {s}");
    }
    // With --ascii, their ASCII forms.
    let mut m = model(Options {
        ascii: true,
        ..options()
    });
    resize(&mut m, 80, 24);
    key(&mut m, KeyCode::Char('?'));
    let s = screen(&render(&m, 80, 24));
    println!("{s}");
    for text in [
        "(P) prod",
        "(!) warning (Enter says why)",
        "> cursor",
        "* selected",
        "^/v sorted column",
        "- none",
        "LAST ok ok x failed ~ in flight",
        "by themselves.",
    ] {
        assert!(s.contains(text), "{text}: {s}");
    }
}

#[test]
fn password_prompt_is_masked_and_names_the_profile() {
    let text = PROFILES.replace("password = \"not-shown-anywhere\"\n", "");
    let profiles = config::parse(&text, Path::new("p.toml")).unwrap();
    let mut m = Model::new(&profiles, Source::File("p.toml".into()), options(), now());
    resize(&mut m, 80, 24);
    key(&mut m, KeyCode::Char('l'));
    for c in "hunter2".chars() {
        key(&mut m, KeyCode::Char(c));
    }
    let lines = render(&m, 80, 24);
    let s = screen(&lines);
    println!("{s}");
    assert!(s.contains("Log in to acme-prod"), "{s}");
    assert!(
        s.contains("as integration on acme.sugarondemand.com"),
        "{s}"
    );
    assert!(s.contains("Password: •••••••"), "{s}");
    assert!(!s.contains("hunter2"));
}

#[test]
fn ascii_and_no_color() {
    let mut m = model(Options {
        ascii: true,
        color: false,
        ..options()
    });
    resize(&mut m, 80, 24);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| ui::view(&m, now(), f)).unwrap();
    let buf = terminal.backend().buffer();
    for cell in buf.content() {
        assert!(cell.symbol().is_ascii(), "non-ASCII {:?}", cell.symbol());
        assert_eq!(
            cell.fg,
            ratatui::style::Color::Reset,
            "a colour with NO_COLOR"
        );
        assert_eq!(
            cell.bg,
            ratatui::style::Color::Reset,
            "a colour with NO_COLOR"
        );
    }
    let lines = render(&m, 80, 24);
    println!("{}", screen(&lines));
    assert!(line_with(&lines, "acme-prod").contains("+ active"));
    assert!(line_with(&lines, "acme-sbx").contains("! expiring"));
}

#[test]
fn locale_and_no_color_detection() {
    assert!(ui::locale_is_utf8(None, None, Some("en_US.UTF-8")));
    assert!(ui::locale_is_utf8(Some("de_DE.utf8"), None, Some("C")));
    assert!(!ui::locale_is_utf8(Some("C"), None, Some("en_US.UTF-8")));
    assert!(!ui::locale_is_utf8(None, None, None));
    assert!(!ui::locale_is_utf8(
        Some(""),
        Some("POSIX"),
        Some("en_US.UTF-8")
    ));
    assert!(ui::no_color(Some("1")));
    assert!(!ui::no_color(Some("")));
    assert!(!ui::no_color(None));
}

// ---------------------------------------------------------------------------------------------
// Sessions that look after themselves: marks, checks, impersonations, hard ends.
// ---------------------------------------------------------------------------------------------

use sugar_sessions::app::RowState;
use sugar_sessions::session::CheckReport;

/// The fixture plus a profile whose certificates are not checked and one on plain HTTP.
fn marked_model(opts: Options) -> Model {
    let text = format!(
        "{PROFILES}\n[profiles.labbox]\nurl = \"https://lab.internal\"\ninsecure = true\n\n\
         [profiles.legacy]\nurl = \"http://legacy.example.com\"\nallow_http = true\n"
    );
    let profiles = config::parse(&text, Path::new("/tmp/p.toml")).unwrap();
    let mut m = Model::new(&profiles, Source::File("/tmp/p.toml".into()), opts, now());
    update(&mut m, Msg::CacheReloaded(Cache::default().into()), now());
    m
}

fn go_to(m: &mut Model, name: &str) {
    key(m, KeyCode::Char('g'));
    while m.current().unwrap().name() != name {
        key(m, KeyCode::Char('j'));
    }
}

#[test]
fn guard_insecure_and_plain_http_are_marked_on_rows_and_explained_in_details() {
    let mut m = marked_model(options());
    resize(&mut m, 160, 40);
    let lines = render(&m, 160, 40);
    let s = screen(&lines);
    println!("{s}");
    assert!(line_with(&lines, "globex").contains("base ⚠"), "{s}");
    assert!(
        line_with(&lines, "labbox").contains("lab.internal INSECURE"),
        "{s}"
    );
    assert!(
        line_with(&lines, "legacy").contains("legacy.example.com HTTP"),
        "{s}"
    );
    assert!(!line_with(&lines, "initech").contains('⚠'));
    // At 80 columns PLATFORM and INSTANCE are dropped: the mark goes next to the name.
    resize(&mut m, 80, 24);
    let lines = render(&m, 80, 24);
    let s = screen(&lines);
    println!("{s}");
    for name in ["globex", "labbox", "legacy"] {
        assert!(
            line_with(&lines, name).contains(&format!("{name} ⚠")),
            "{name}:\n{s}"
        );
    }
    assert!(!line_with(&lines, "acme-sbx").contains('⚠'));
    // Details say why.
    go_to(&mut m, "globex");
    key(&mut m, KeyCode::Enter);
    let s = screen(&render(&m, 80, 24));
    println!("{s}");
    assert!(s.contains("Warning"), "{s}");
    assert!(
        s.contains("platform base: a login here logs svc_globex out of Sugar's web UI"),
        "{s}"
    );
    go_to(&mut m, "labbox");
    let s = screen(&render(&m, 80, 24));
    assert!(
        s.contains("INSECURE: the server's certificate is not checked"),
        "{s}"
    );
    go_to(&mut m, "legacy");
    let s = screen(&render(&m, 80, 24));
    println!("{s}");
    assert!(
        s.contains("plain HTTP to a host that is not loopback"),
        "{s}"
    );
    // ASCII: the marks have a fallback.
    let mut m = marked_model(Options {
        ascii: true,
        color: false,
        ..options()
    });
    resize(&mut m, 80, 24);
    let lines = render(&m, 80, 24);
    println!("{}", screen(&lines));
    assert!(line_with(&lines, "globex").contains("globex (!)"));
    assert!(lines.iter().all(|l| l.is_ascii()));
    resize(&mut m, 160, 40);
    let lines = render(&m, 160, 40);
    assert!(line_with(&lines, "globex").contains("base (!)"));
}

#[test]
fn a_login_on_a_guarded_profile_asks_with_the_warning_at_80x24() {
    let mut m = model(options());
    resize(&mut m, 80, 24);
    go_to(&mut m, "globex");
    key(&mut m, KeyCode::Char('l'));
    let lines = render(&m, 80, 24);
    let s = screen(&lines);
    println!("{s}");
    assert!(s.contains("Log in to globex?"), "{s}");
    assert!(
        s.contains("⚠ platform base: a login here logs svc_globex out"),
        "{s}"
    );
    assert!(s.contains("Asked once per profile"), "{s}");
    assert!(s.contains("y/⏎ yes"), "{s}");
}

fn checked(name: &str, entry: Entry, skew_s: i64) -> Msg {
    let report = CheckReport {
        at: now(),
        user_name: "integration".into(),
        full_name: "Integration User".into(),
        admin: true,
        flavor: "ENT".into(),
        version: "14.0.0".into(),
        skew_s: Some(skew_s),
        latency_ms: 42,
    };
    Msg::Checked {
        outcome: Box::new(Outcome {
            name: name.into(),
            key: identity(name),
            op: Op::Refresh,
            ok: true,
            message: format!("{name}: alive; {}", report.summary()),
            state: entry.state(now()),
            entry,
            requests: vec![RequestLog {
                at: now(),
                method: "GET",
                path: "/ping",
                status: Some(200),
                latency_ms: 42,
            }],
            failure: None,
        }),
        report: Some(report),
    }
}

#[test]
fn a_check_shows_who_what_version_clock_skew_and_latency_with_tokens_masked() {
    let mut m = model(options());
    resize(&mut m, 160, 40);
    key(&mut m, KeyCode::Char('v'));
    let lines = render(&m, 160, 40);
    assert!(
        line_with(&lines, "acme-prod").contains("⟳ check queued"),
        "{}",
        screen(&lines)
    );
    let e = entry(Some(session(52 * 60 + 7, 14 * 86_400 - 3600)), None);
    update(&mut m, checked("acme-prod", e, 95), now());
    key(&mut m, KeyCode::Enter);
    let lines = render(&m, 160, 40);
    let s = screen(&lines);
    println!("{s}");
    assert!(
        line_with(&lines, "acme-prod").contains("✓ check 42 ms"),
        "{s}"
    );
    assert!(
        s.contains(
            "Integration User (integration, admin) · Sugar 14.0.0 ENT · ping 42 ms · clock skew +95 s (at 14:00:00)"
        ),
        "{s}"
    );
    assert!(
        s.contains("the server's clock is 95 s ahead of this machine's"),
        "{s}"
    );
    // The header warns too (and the status line).
    assert!(lines[0].contains("⚠ 1 clock skew"), "{}", lines[0]);
    // Tokens only masked: first and last four characters.
    assert!(s.contains("access 802b…c527 · refresh 8505…e0b7"), "{s}");
    assert!(!s.contains("802b64c0") && !s.contains("85053198"), "{s}");
    // At 80x24 the report still fits the details pane.
    resize(&mut m, 80, 24);
    let s = screen(&render(&m, 80, 24));
    println!("{s}");
    assert!(s.contains("Integration User (integration, admin)"), "{s}");
    assert!(s.contains("Sugar 14.0.0 ENT"), "{s}");
}

#[test]
fn unverified_impersonation_hard_end_and_superseded_rows_at_80x24_and_160x40() {
    let mut m = model(options());
    // acme-prod's session is capped: it ends in 3m 10s whatever is refreshed.
    let mut capped = session(52 * 60 + 7, 190);
    capped.hard_end = Some(now() + TimeDelta::seconds(190));
    let mut cache = Cache::default();
    cache.insert(key_of(&m, "acme-prod"), entry(Some(capped), None));
    cache.insert(
        key_of(&m, "acme-sbx"),
        entry(Some(session(40 * 60, 13 * 86_400)), None),
    );
    // An impersonation made by `sugar-sessions sudo` in another process.
    let mut sudo = session(30 * 60 + 5, 0);
    sudo.refresh_token = None;
    sudo.refresh_expires_at = None;
    sudo.username = "sally".into();
    cache.insert(key_of(&m, "acme-sbx>sally"), entry(Some(sudo), None));
    // initech: superseded by another login; its access token no longer counts down.
    let mut dead = session(45 * 60, 0);
    dead.refresh_token = None;
    dead.refresh_expires_at = None;
    cache.insert(key_of(&m, "initech"),
        entry(
            Some(dead),
            Some(Failure {
                kind: FailureKind::Superseded,
                needs_login: true,
                ..Failure::local(
                    Op::Refresh,
                    now(),
                    "another login as jim on platform acme_sync ended it (Sugar keeps one session per user and platform); give each integration a platform of its own (HTTP 400 invalid_grant: Invalid refresh token)",
                )
            }),
        ),
    );
    update(&mut m, Msg::CacheReloaded(cache.into()), now());
    update(&mut m, Msg::Verify, now());
    assert_eq!(m.count(RowState::Unverified), 3);
    for (w, h) in [(80, 24), (160, 40)] {
        resize(&mut m, w, h);
        let lines = render(&m, w, h);
        let s = screen(&lines);
        println!("{s}");
        let prod = line_with(&lines, "acme-prod ");
        assert!(prod.contains("◇ unverified"), "{prod}");
        assert!(prod.contains("ends 3m 10s"), "{prod}");
        assert!(lines[0].contains("◇ 3 unverified"), "{}", lines[0]);
        // The impersonation: right after its profile, own countdown, no refresh value.
        let k = lines
            .iter()
            .position(|l| l.contains("acme-sbx>sally"))
            .unwrap();
        assert!(lines[k - 1].contains("acme-sbx "), "{s}");
        let sudo = &lines[k];
        assert!(sudo.contains("30m 05s") && sudo.contains(" — "), "{sudo}");
        let initech = line_with(&lines, "initech");
        assert!(initech.contains("⊗ superseded"), "{initech}");
        assert!(
            !initech.contains("45m"),
            "a dead token counts down: {initech}"
        );
    }
    // Details of the superseded row: the reason.
    resize(&mut m, 160, 40);
    go_to(&mut m, "initech");
    key(&mut m, KeyCode::Enter);
    let s = screen(&render(&m, 160, 40));
    println!("{s}");
    assert!(s.contains("no longer accepted by Sugar"), "{s}");
    assert!(
        s.contains("superseded: another login as jim on platform acme_sync ended it"),
        "{s}"
    );
    // Details of the capped session: when it ends, and why.
    go_to(&mut m, "acme-prod");
    let s = screen(&render(&m, 160, 40));
    assert!(s.contains("refreshing no longer extends it"), "{s}");
    assert!(
        s.contains("cached session, not yet confirmed by the server"),
        "{s}"
    );
    // The impersonation's details.
    go_to(&mut m, "acme-sbx>sally");
    let s = screen(&render(&m, 160, 40));
    println!("{s}");
    assert!(
        s.contains("impersonating sally through acme-sbx's admin session"),
        "{s}"
    );
    assert!(s.contains("no refresh token"), "{s}");
}

#[test]
fn the_user_prompt_names_the_admin_profile_at_80x24() {
    let mut m = model(options());
    resize(&mut m, 80, 24);
    key(&mut m, KeyCode::Char('u'));
    for c in "sal".chars() {
        key(&mut m, KeyCode::Char(c));
    }
    let lines = render(&m, 80, 24);
    let s = screen(&lines);
    println!("{s}");
    assert!(s.contains("Impersonate a user through acme-prod"), "{s}");
    assert!(
        s.contains("with integration's admin session on acme.sugarondemand.com"),
        "{s}"
    );
    assert!(s.contains("User: sal"), "{s}");
    assert!(s.contains("⏎ impersonate"), "{s}");
    // The footer shows the prompt's keys.
    assert!(lines[23].contains("impersonate") && lines[23].contains("cancel"));
}

#[test]
fn after_an_impersonation_is_logged_out_the_title_and_the_filter_line_count_alike() {
    let mut m = model(options());
    let mut cache = Cache::default();
    let mut sudo = session(30 * 60, 0);
    sudo.refresh_token = None;
    sudo.refresh_expires_at = None;
    cache.insert(key_of(&m, "acme-sbx>sally"), entry(Some(sudo), None));
    update(&mut m, Msg::CacheReloaded(cache.into()), now());
    assert_eq!(m.total(), 5);
    // The impersonation is logged out: its row goes.
    let logged_out = Entry {
        generation: 7,
        updated_at: Some(now()),
        ..Default::default()
    };
    let outcome = Outcome {
        name: "acme-sbx>sally".into(),
        key: identity("acme-sbx>sally"),
        op: Op::Logout,
        ok: true,
        message: "acme-sbx>sally: logged out".into(),
        entry: logged_out,
        state: State::LoggedOut,
        requests: Vec::new(),
        failure: None,
    };
    update(&mut m, Msg::Done(Box::new(outcome)), now());
    assert_eq!(m.total(), 4);
    resize(&mut m, 120, 24);
    key(&mut m, KeyCode::Char('/'));
    for c in "acme".chars() {
        key(&mut m, KeyCode::Char(c));
    }
    let lines = render(&m, 120, 24);
    let s = screen(&lines);
    println!("{s}");
    assert!(lines[1].contains("Profiles 2 of 4"), "{s}");
    assert!(line_with(&lines, "/acme").contains("2 of 4 shown"), "{s}");
}

fn login_failure(name: &str, message: &str, hint: &str) -> Outcome {
    let mut o = failed_outcome();
    let f = o.failure.as_mut().unwrap();
    f.message = message.into();
    f.hint = Some(hint.into());
    let f = f.clone();
    o.name = name.into();
    o.key = identity(name);
    o.message = f.render(name);
    o.entry = entry(None, Some(f));
    o
}

#[test]
fn the_last_column_tells_a_wrong_password_from_a_maintenance_window() {
    let mut m = model(options());
    let wrong = login_failure(
        "globex",
        "You must specify a valid username and password.",
        "check the username and the password source of the profile",
    );
    let maintenance = login_failure(
        "initech",
        "SugarCRM is in maintenance mode. Only admins can login. Please contact your administrator for details.",
        "the instance is in maintenance mode: only admins can log in until it ends",
    );
    update(&mut m, Msg::Done(Box::new(wrong)), now());
    update(&mut m, Msg::Done(Box::new(maintenance)), now());
    // Wide: LAST takes the rest of the line and says it all, Sugar's words and the hint.
    resize(&mut m, 270, 30);
    let lines = render(&m, 270, 30);
    println!("{}", screen(&lines));
    let globex = line_with(&lines, "globex");
    assert!(
        globex.contains(
            "✗ 401 need_login: You must specify a valid username and password. (hint: check the \
             username and the password source of the profile) 184 ms"
        ),
        "{globex}"
    );
    let initech = line_with(&lines, "initech");
    assert!(
        initech
            .contains("✗ 401 need_login: SugarCRM is in maintenance mode. Only admins can login."),
        "{initech}"
    );
    assert!(!globex.contains('…'), "cut with room to spare: {globex}");
    // At 160 columns the end is cut, with an ellipsis; the words still differ.
    resize(&mut m, 160, 40);
    let lines = render(&m, 160, 40);
    let globex = line_with(&lines, "globex");
    assert!(
        globex.contains("✗ 401 need_login: You must specify"),
        "{globex}"
    );
    assert!(
        globex.trim_end_matches(['│', ' ']).ends_with('…'),
        "{globex}"
    );
    assert!(line_with(&lines, "initech").contains("401 need_login: SugarCRM is in maint"));
    // The details pane has the whole of it.
    go_to(&mut m, "initech");
    key(&mut m, KeyCode::Enter);
    let s = screen(&render(&m, 160, 40));
    assert!(
        s.contains("login failed: HTTP 401 need_login: SugarCRM is in maintenance mode."),
        "{s}"
    );
    assert!(s.contains("only admins can log in until it ends"), "{s}");
    // A failure remembered in the cache (the screen just started) reads the same.
    let mut m = model(options());
    let f = login_failure(
        "globex",
        "You must specify a valid username and password.",
        "check the username",
    )
    .failure
    .unwrap();
    let mut cache = Cache::default();
    cache.insert(key_of(&m, "globex"), entry(None, Some(f)));
    update(&mut m, Msg::CacheReloaded(cache.into()), now());
    resize(&mut m, 230, 30);
    let lines = render(&m, 230, 30);
    assert!(
        line_with(&lines, "globex").contains(
            "✗ 401 need_login: You must specify a valid username and password. (hint: check the username)"
        ),
        "{}",
        screen(&lines)
    );
}

#[test]
fn the_sorted_column_is_marked_in_the_header_with_its_direction() {
    let mut m = model(options());
    resize(&mut m, 160, 40);
    let header = |m: &Model, w, h| {
        let lines = render(m, w, h);
        (lines[1].clone(), line_with(&lines, "NAME").to_string())
    };
    // File order: no arrow anywhere.
    let (title, cols) = header(&m, 160, 40);
    assert!(!cols.contains('↑') && !cols.contains('↓'), "{cols}");
    assert!(!title.contains("sorted"), "{title}");
    // `s` moves the sort to the next column: NAME first, then TAGS (shown at 160).
    key(&mut m, KeyCode::Char('s'));
    let (_, cols) = header(&m, 160, 40);
    assert!(cols.contains("NAME↑"), "{cols}");
    key(&mut m, KeyCode::Char('s'));
    let (title, cols) = header(&m, 160, 40);
    assert!(cols.contains("TAGS↑") && cols.contains("NAME "), "{cols}");
    assert!(!title.contains("sorted"), "the header says it: {title}");
    // On to TOKEN: ↑ is the least time left first (as k9s marks an ascending sort).
    while m.sort().0 != sugar_sessions::app::Sort::TokenLeft {
        key(&mut m, KeyCode::Char('s'));
    }
    let lines = render(&m, 160, 40);
    let cols = line_with(&lines, "NAME");
    assert!(cols.contains("TOKEN↑"), "{cols}");
    let first = lines.iter().position(|l| l.contains("acme-sbx")).unwrap();
    let second = lines.iter().position(|l| l.contains("acme-prod")).unwrap();
    assert!(first < second, "4m before 52m: {}", screen(&lines));
    // `S` reverses: ↓, the most time left first.
    key(&mut m, KeyCode::Char('S'));
    let lines = render(&m, 160, 40);
    assert!(line_with(&lines, "NAME").contains("TOKEN↓"));
    assert!(
        lines.iter().position(|l| l.contains("acme-prod")).unwrap()
            < lines.iter().position(|l| l.contains("acme-sbx")).unwrap()
    );
    // REFRESH (7 wide) makes room for its arrow, right-aligned over the values.
    key(&mut m, KeyCode::Char('S'));
    key(&mut m, KeyCode::Char('s'));
    let (_, cols) = header(&m, 160, 40);
    assert!(cols.contains("REFRESH↑"), "{cols}");
    // At 60 columns REFRESH is not shown: the title says the sort in words.
    resize(&mut m, 60, 24);
    let lines = render(&m, 60, 24);
    assert!(!line_with(&lines, "NAME").contains("REFRESH"));
    assert!(
        lines[1].contains("sorted by refresh time left, ascending"),
        "{}",
        lines[1]
    );
    // ASCII: ^ and v.
    let mut m = model(Options {
        ascii: true,
        ..options()
    });
    resize(&mut m, 160, 40);
    key(&mut m, KeyCode::Char('s'));
    assert!(header(&m, 160, 40).1.contains("NAME^"));
    key(&mut m, KeyCode::Char('S'));
    assert!(header(&m, 160, 40).1.contains("NAMEv"));
}

/// [`model`] over the fixture with `extra` added to its `[defaults]`.
fn model_with_defaults(extra: &str, opts: Options) -> Model {
    let text = PROFILES.replace("[defaults]\n", &format!("[defaults]\n{extra}\n"));
    let path = Path::new("/home/u/.config/sugar-sessions/profiles.toml");
    let profiles = config::parse(&text, path).unwrap();
    let mut m = Model::new(&profiles, Source::File(path.to_path_buf()), opts, now());
    let mut cache = Cache::default();
    cache.insert(
        key_of(&m, "acme-prod"),
        entry(Some(session(52 * 60 + 7, 14 * 86_400 - 3600)), None),
    );
    cache.insert(
        key_of(&m, "acme-sbx"),
        entry(Some(session(4 * 60 + 12, 13 * 86_400)), None),
    );
    update(&mut m, Msg::CacheReloaded(cache.into()), now());
    m
}

#[test]
fn a_read_only_screen_says_so_in_the_header_and_shows_no_token_even_masked() {
    for (opts, header) in [
        (
            Options {
                read_only: true,
                ..options()
            },
            "sugar-sessions READ-ONLY · ",
        ),
        (
            Options {
                read_only: true,
                keep_alive: true,
                ..options()
            },
            "sugar-sessions READ-ONLY (keep-alive) · ",
        ),
    ] {
        let mut m = model(opts);
        resize(&mut m, 160, 40);
        key(&mut m, KeyCode::Enter);
        let lines = render(&m, 160, 40);
        let s = screen(&lines);
        println!("{s}");
        assert!(lines[0].contains(header), "{}", lines[0]);
        // The details pane: the session's times, no token line at all.
        assert!(s.contains("(52m 07s left)"), "{s}");
        assert!(!s.contains("Tokens") && !s.contains("802b…"), "{s}");
        // The footer offers no copy, login or logout; a refused key says why there.
        assert!(!s.contains("copy token") && !s.contains("log in"), "{s}");
        key(&mut m, KeyCode::Char('y'));
        let lines = render(&m, 160, 40);
        assert!(
            screen(&lines).contains(
                "read-only screen: y (copy token) is refused; this screen only shows sessions"
            ),
            "{}",
            screen(&lines)
        );
        // At 80 columns the header still says it.
        resize(&mut m, 80, 24);
        let lines = render(&m, 80, 24);
        assert!(lines[0].contains("READ-ONLY"), "{}", lines[0]);
    }
    // From the file's [defaults] too.
    let m = model_with_defaults("read_only = true", options());
    assert!(render(&m, 160, 40)[0].contains("READ-ONLY"));
    assert!(!render(&model(options()), 160, 40)[0].contains("READ-ONLY"));
}

#[test]
fn chosen_columns_are_shown_in_their_order_and_dropped_from_the_end_when_narrow() {
    let mut m = model_with_defaults(
        r#"columns = ["state", "name", "instance", "tags", "last"]"#,
        options(),
    );
    resize(&mut m, 160, 40);
    let lines = render(&m, 160, 40);
    let s = screen(&lines);
    println!("{s}");
    let header = lines[2].clone();
    let at = |t: &str| header.find(t).unwrap_or_else(|| panic!("no {t}:\n{s}"));
    assert!(
        at("STATE") < at("NAME") && at("NAME") < at("INSTANCE") && at("INSTANCE") < at("TAGS"),
        "{header}"
    );
    assert!(at("TAGS") < at("LAST"), "{header}");
    // Room left goes to LAST at the end of the list; the others keep their widths.
    assert_eq!(
        ui::columns(&m, 158).last(),
        Some(&(Last, 158 - (2 + 17 + 13 + 26 + 12 + 5)))
    );
    for not_chosen in ["USER", "PLATFORM", "TOKEN", "REFRESH"] {
        assert!(!header.contains(not_chosen), "{not_chosen}:\n{s}");
    }
    let prod = line_with(&lines, "acme-prod");
    assert!(prod.find("● active") < prod.find("acme-prod"), "{prod}");
    use Column::*;
    // Narrower: the end of the list goes first (LAST, then TAGS, then INSTANCE); NAME and STATE
    // stay.
    let names = |w| {
        ui::columns(&m, w)
            .into_iter()
            .map(|c| c.0)
            .collect::<Vec<_>>()
    };
    // Wanted: marks 2, STATE 17, NAME 13, INSTANCE 26, TAGS 12, LAST at least 10, and a space
    // between each two.
    assert_eq!(names(158), [Mark, State, Name, Instance, Tags, Last]);
    assert_eq!(names(85), [Mark, State, Name, Instance, Tags, Last]);
    assert_eq!(names(84), [Mark, State, Name, Instance, Tags]);
    assert_eq!(names(73), [Mark, State, Name, Instance]);
    assert_eq!(names(60), [Mark, State, Name]);
    assert_eq!(names(20), [Mark, State, Name]);
    for w in [158, 85, 84, 73, 61, 60, 40] {
        let cols = ui::columns(&m, w);
        let total: u16 = cols.iter().map(|c| c.1).sum::<u16>() + cols.len() as u16 - 1;
        assert!(total <= w, "{w}: {cols:?}");
    }
    // LAST in the middle of the list: it keeps its width, and TAGS its place after it.
    let middle = model_with_defaults(r#"columns = ["name", "state", "last", "tags"]"#, options());
    let cols = ui::columns(&middle, 158);
    assert_eq!(cols[3], (Last, 24), "{cols:?}");
    assert_eq!(cols[4], (Tags, 12), "{cols:?}");
    // `s` sorts along the chosen columns in their order: STATE first, then NAME.
    key(&mut m, KeyCode::Char('s'));
    assert_eq!(m.sort().0, sugar_sessions::app::Sort::State);
    key(&mut m, KeyCode::Char('s'));
    assert_eq!(m.sort().0, sugar_sessions::app::Sort::Name);
}

#[test]
fn the_help_of_a_read_only_screen_says_what_is_refused_and_whether_anything_refreshes() {
    for (keep_alive, says) in [
        (false, "Nothing refreshes by itself (--keep-alive would)."),
        (true, "sessions refresh by themselves (--keep-alive)."),
    ] {
        let mut m = model(Options {
            read_only: true,
            keep_alive,
            ..options()
        });
        resize(&mut m, 160, 40);
        key(&mut m, KeyCode::Char('?'));
        let s = screen(&render(&m, 160, 40));
        println!("{s}");
        assert!(
            s.contains(
                "READ-ONLY: l, r, o, u, y, e and checks of several rows are refused, and no"
            ),
            "{s}"
        );
        assert!(s.contains(says), "{s}");
    }
}
