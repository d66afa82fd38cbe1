//! Boxes drawn over the screen: the help, a confirmation, the password prompt and the prompt
//! for the user to impersonate.

use super::{Theme, fit, fit_left, width};
use crate::app::{
    Action, Binding, CONFIRM_KEYS, FILTER_KEYS, HELP_KEYS, Model, NORMAL_KEYS, PASSWORD_KEYS,
    RowState, USER_KEYS,
};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Clear, Paragraph, Wrap};

/// A box of `w` x `h` centred in `area` (clamped to it).
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

pub(super) fn draw_help(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let w = 100.min(area.width.saturating_sub(2)).max(20);
    let inner = usize::from(w.saturating_sub(4));
    let mut lines: Vec<Line> = Vec::new();
    // The main table's keys in a grid, from the same table that handles them; its Ctrl keys,
    // which work in every mode, on a line of their own below.
    // Moving the cursor on a line of its own below, and so is a key whose words are too long
    // for a grid cell.
    let moves = |b: &Binding| {
        matches!(
            b.action,
            Action::Up
                | Action::Down
                | Action::PageUp
                | Action::PageDown
                | Action::First
                | Action::Last
        )
    };
    const CELL: usize = 20;
    let items: Vec<&Binding> = NORMAL_KEYS
        .iter()
        .filter(|b| !b.ctrl && !moves(b) && width(b.desc) <= CELL)
        .collect();
    // As many per line as fit, each grid column as wide as its own widest label and text.
    let grid = |per_line: usize| -> Vec<(usize, usize)> {
        (0..per_line)
            .map(|c| {
                let col = items.iter().skip(c).step_by(per_line);
                let label = col
                    .clone()
                    .map(|b| width(b.label(theme.ascii)))
                    .max()
                    .unwrap_or(0);
                let desc = col.map(|b| width(b.desc)).max().unwrap_or(0);
                (label + 1, desc + 2)
            })
            .collect()
    };
    let (per_line, widths) = (1..=items.len().max(1))
        .rev()
        .map(|n| (n, grid(n)))
        .find(|(_, g)| g.iter().map(|(l, d)| l + d).sum::<usize>() <= inner + 2)
        .unwrap_or_else(|| (1, grid(1)));
    for chunk in items.chunks(per_line) {
        let mut spans = Vec::new();
        for (b, (label_w, desc_w)) in chunk.iter().zip(&widths) {
            let label = b.label(theme.ascii);
            spans.push(Span::styled(
                format!("{label}{}", " ".repeat(label_w - width(label))),
                theme.bold(),
            ));
            spans.push(Span::raw(format!("{:<w$}", b.desc, w = desc_w)));
        }
        lines.push(Line::from(spans));
    }
    for b in NORMAL_KEYS
        .iter()
        .filter(|b| !b.ctrl && !moves(b) && width(b.desc) > CELL)
    {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<10}", b.label(theme.ascii)), theme.bold()),
            Span::raw(b.desc),
        ]));
    }
    let mut spans = vec![Span::styled(format!("{:<10}", "Move"), theme.bold())];
    // `↑/k ↓/j PgUp PgDn  g first  G last`: the arrows and pages say what they do.
    for (k, b) in NORMAL_KEYS.iter().filter(|b| moves(b)).enumerate() {
        let plain = matches!(b.action, Action::First | Action::Last);
        if k > 0 {
            spans.push(Span::raw(if plain { "  " } else { " " }));
        }
        spans.push(Span::styled(b.label(theme.ascii), theme.bold()));
        if plain {
            spans.push(Span::raw(format!(" {}", b.desc)));
        }
    }
    lines.push(Line::from(spans));
    // `Ctrl-C/Ctrl-\\ quit · Ctrl-Z suspend`: keys that do the same joined.
    let mut ctrl: Vec<(String, &str)> = Vec::new();
    for b in NORMAL_KEYS.iter().filter(|b| b.ctrl) {
        match ctrl.iter_mut().find(|(_, desc)| *desc == b.desc) {
            Some((label, _)) => {
                label.push('/');
                label.push_str(b.label(theme.ascii));
            }
            None => ctrl.push((b.label(theme.ascii).to_string(), b.desc)),
        }
    }
    let mut spans = vec![Span::styled(format!("{:<10}", "Any time"), theme.bold())];
    for (k, (label, desc)) in ctrl.into_iter().enumerate() {
        if k > 0 {
            spans.push(Span::raw(theme.dot()));
        }
        spans.push(Span::styled(label, theme.bold()));
        spans.push(Span::raw(format!(" {desc}")));
    }
    lines.push(Line::from(spans));
    let one_line = |title: &str, keys: &[Binding]| {
        let mut spans = vec![Span::styled(format!("{title:<10}"), theme.bold())];
        for (k, b) in keys.iter().filter(|b| !b.ctrl).enumerate() {
            if k > 0 {
                spans.push(Span::raw(theme.dot()));
            }
            spans.push(Span::styled(b.label(theme.ascii), theme.bold()));
            spans.push(Span::raw(format!(" {}", b.desc)));
        }
        Line::from(spans)
    };
    lines.push(one_line("Filter", FILTER_KEYS));
    lines.push(one_line("Confirm", CONFIRM_KEYS));
    lines.push(one_line("Password", PASSWORD_KEYS));
    let states = [
        RowState::LoggedOut,
        RowState::LoggingIn,
        RowState::Active,
        RowState::Unverified,
        RowState::Refreshing,
        RowState::Expiring,
        RowState::Expired,
        RowState::RefreshExpired,
        RowState::LoggingOut,
        RowState::Superseded,
        RowState::Error,
    ];
    let per_line = ((inner - 10) / 20).clamp(1, states.len());
    for (k, chunk) in states.chunks(per_line).enumerate() {
        let title = if k == 0 { "States" } else { "" };
        let mut spans = vec![Span::styled(format!("{title:<10}"), theme.bold())];
        for s in chunk {
            spans.push(Span::styled(
                format!("{:<20}", format!("{} {}", s.symbol(theme.ascii), s.word())),
                theme.state(*s),
            ));
        }
        lines.push(Line::from(spans));
    }
    lines.extend(marks(theme, inner));
    let note = if model.options().read_only {
        format!(
            "READ-ONLY: l, r, o, u, y, e and checks of several rows are refused, and no token is \
             shown. {}",
            if model.keeps_alive() {
                "Due sessions refresh by themselves (--keep-alive)."
            } else {
                "Nothing refreshes by itself (--keep-alive would)."
            }
        )
    } else {
        "Keys act on the selected rows shown, else on the cursor's row; logging out prod or \
         several asks first. c withdraws queued requests; sent ones finish and are stored. \
         Due sessions refresh by themselves."
            .to_string()
    };
    let note_lines = width(&note) / inner.max(1) + 2;
    lines.push(Line::from(note.as_str()));
    let wanted = u16::try_from(lines.len() + note_lines + 1).unwrap_or(u16::MAX);
    // Over the header and the footer too when it needs the room (80x24 does).
    let h = wanted.min(area.height);
    let rect = centered(area, w, h);
    frame.render_widget(Clear, rect);
    let close = HELP_KEYS
        .iter()
        .find(|b| !b.ctrl)
        .map_or("Esc", |b| b.label(theme.ascii));
    let block = theme
        .text_block()
        .title(Span::styled(" Help ", theme.bold()))
        .title_bottom(Line::from(format!(" {close} closes ")).right_aligned());
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .wrap(Wrap { trim: false })
            .block(block),
        rect,
    );
}

/// The marks the table uses besides the states, each with its meaning, word-wrapped after a
/// `Marks` title.
fn marks(theme: &Theme, inner: usize) -> Vec<Line<'static>> {
    let a = theme.ascii;
    let pick = |utf8: &'static str, ascii: &'static str| if a { ascii } else { utf8 };
    let (up, down) = (pick("↑", "^"), pick("↓", "v"));
    let items: Vec<(String, &str)> = vec![
        (pick("⚑", "(P)").into(), "prod"),
        (theme.warn_mark().into(), "warning (⏎ says why)"),
        (pick("▶", ">").into(), "cursor"),
        (pick("✓", "*").into(), "selected"),
        ("INSECURE/HTTP".into(), "unsafe transport"),
        (
            format!(
                "LAST {} ok {} failed {}",
                pick("✓", "ok"),
                pick("✗", "x"),
                pick("⟳", "~")
            ),
            "in flight",
        ),
        (
            format!("{up}/{down}"),
            "sorted column, ascending/descending",
        ),
        (theme.dash().into(), "none"),
    ];
    let enter = pick("⏎", "Enter");
    // Whole items to a line: each on the first line it fits on.
    let room = inner.saturating_sub(10).max(10);
    let mut rows: Vec<String> = Vec::new();
    for (mark, what) in &items {
        let item = format!("{mark} {}", what.replace('⏎', enter));
        let dot = width(theme.dot());
        match rows
            .iter_mut()
            .find(|l| width(l) + dot + width(&item) <= room)
        {
            Some(line) => {
                line.push_str(theme.dot());
                line.push_str(&item);
            }
            None => rows.push(item),
        }
    }
    rows.into_iter()
        .enumerate()
        .map(|(k, l)| {
            let title = if k == 0 { "Marks" } else { "" };
            Line::from(vec![
                Span::styled(format!("{title:<10}"), theme.bold()),
                Span::raw(l),
            ])
        })
        .collect()
}

/// `text` word-wrapped to `cols` columns (a word longer than a line is cut by the view).
fn wrap(text: &str, cols: usize) -> Vec<String> {
    let mut out: Vec<String> = vec![String::new()];
    for word in text.split(' ') {
        let last = out.last_mut().expect("one line");
        if !last.is_empty() && width(last) + 1 + width(word) > cols {
            out.push(String::new());
        }
        let last = out.last_mut().expect("one line");
        if !last.is_empty() {
            last.push(' ');
        }
        last.push_str(word);
    }
    out
}

pub(super) fn draw_confirm(
    confirm: &crate::app::Confirm,
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
) {
    let n = confirm.names.len();
    let login = confirm.op == crate::session::Op::Login;
    let question = match (login, n, confirm.prod) {
        (true, 1, _) => format!("Log in to {}?", confirm.names[0]),
        (true, n, _) => format!("Log in {n} profiles?"),
        (false, 1, 1) => format!("Log out {} (tagged prod)?", confirm.names[0]),
        (false, 1, _) => format!("Log out {}?", confirm.names[0]),
        (false, n, 0) => format!("Log out {n} profiles?"),
        (false, n, p) => format!("Log out {n} profiles ({p} tagged prod)?"),
    };
    let w = if login { 76 } else { 64 }.min(area.width.saturating_sub(2));
    let inner_w = usize::from(w.saturating_sub(4));
    let mut names = String::new();
    if n > 1 {
        for (k, name) in confirm.names.iter().enumerate() {
            let sep = if k == 0 { "" } else { ", " };
            let more = format!(", and {} more", n - k);
            if width(&names) + sep.len() + width(name) + more.len() > inner_w * 2 {
                names.push_str(&more);
                break;
            }
            names.push_str(sep);
            names.push_str(name);
        }
    }
    let label_of = |action| {
        CONFIRM_KEYS
            .iter()
            .find(|b| b.action == action)
            .map_or("", |b| b.label(theme.ascii))
    };
    let mut lines = vec![Line::from(Span::styled(
        fit(&question, inner_w, theme.ellipsis()),
        theme.bold(),
    ))];
    for l in wrap(&names, inner_w).into_iter().filter(|l| !l.is_empty()) {
        lines.push(Line::from(l));
    }
    // A login that would end another session: say which and why (a few; the details pane has all).
    const SHOWN: usize = 3;
    for (name, warning) in confirm.warnings.iter().take(SHOWN) {
        let text = if n == 1 {
            format!("{} {warning}", theme.warn_mark())
        } else {
            format!("{} {name}: {warning}", theme.warn_mark())
        };
        for l in wrap(&text, inner_w) {
            lines.push(Line::from(Span::styled(l, theme.warning())));
        }
    }
    if confirm.warnings.len() > SHOWN {
        lines.push(Line::from(format!(
            "and {} more warnings",
            confirm.warnings.len() - SHOWN
        )));
    }
    if !confirm.warnings.is_empty() {
        for l in wrap("Asked once per profile while the screen is open.", inner_w) {
            lines.push(Line::from(Span::styled(l, theme.dim())));
        }
    }
    lines.push(Line::default());
    lines.push(Line::from(vec![
        Span::styled(label_of(Action::Yes), theme.bold()),
        Span::raw(" yes    "),
        Span::styled(label_of(Action::No), theme.bold()),
        Span::raw(" no"),
    ]));
    let height = u16::try_from(lines.len() + 2)
        .unwrap_or(u16::MAX)
        .min(area.height);
    let rect = centered(area, w, height);
    frame.render_widget(Clear, rect);
    let block = theme
        .text_block()
        .title(Span::styled(" Confirm ", theme.bold()));
    frame.render_widget(Paragraph::new(Text::from(lines)).block(block), rect);
}

pub(super) fn draw_prompt(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(prompt) = model.prompt() else { return };
    let bullet = if theme.ascii { "*" } else { "•" };
    let masked = bullet.repeat(prompt.len);
    let w = 64.min(area.width.saturating_sub(2));
    let inner_w = usize::from(w.saturating_sub(4));
    let masked = fit_left(&masked, inner_w.saturating_sub(12), theme.ellipsis());
    let waiting = if prompt.waiting > 0 {
        format!("{}{} more waiting", theme.dot(), prompt.waiting)
    } else {
        String::new()
    };
    let enter = PASSWORD_KEYS
        .iter()
        .find(|b| b.action == Action::SendPassword)
        .map_or("", |b| b.label(theme.ascii));
    let lines = vec![
        Line::from(Span::styled(
            fit(
                &format!("Log in to {}", prompt.name),
                inner_w,
                theme.ellipsis(),
            ),
            theme.bold(),
        )),
        Line::from(fit(
            &format!("as {} on {}", prompt.username, prompt.instance),
            inner_w,
            theme.ellipsis(),
        )),
        Line::default(),
        Line::from(vec![
            Span::styled("Password: ", theme.bold()),
            Span::raw(masked.clone()),
        ]),
        Line::default(),
        Line::from(vec![
            Span::styled(enter, theme.bold()),
            Span::raw(" log in   "),
            Span::styled("Esc", theme.bold()),
            Span::raw(format!(" skip{waiting}")),
        ]),
    ];
    let rect = centered(area, w, 8);
    frame.render_widget(Clear, rect);
    let block = theme
        .text_block()
        .title(Span::styled(" Password ", theme.bold()));
    frame.render_widget(Paragraph::new(Text::from(lines)).block(block), rect);
    // The terminal cursor sits after the mask.
    let x = rect.x + 2 + 10 + u16::try_from(width(&masked)).unwrap_or(0);
    if x < rect.x + rect.width - 1 {
        frame.set_cursor_position((x, rect.y + 4));
    }
}

pub(super) fn draw_user_prompt(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(prompt) = model.user_prompt() else {
        return;
    };
    let w = 64.min(area.width.saturating_sub(2));
    let inner_w = usize::from(w.saturating_sub(4));
    let label = "User: ";
    let text = fit_left(
        &prompt.text,
        inner_w.saturating_sub(width(label) + 1),
        theme.ellipsis(),
    );
    let key = |action| {
        USER_KEYS
            .iter()
            .find(|b| b.action == action)
            .map_or("", |b| b.label(theme.ascii))
    };
    let lines = vec![
        Line::from(Span::styled(
            fit(
                &format!("Impersonate a user through {}", prompt.name),
                inner_w,
                theme.ellipsis(),
            ),
            theme.bold(),
        )),
        Line::from(fit(
            &format!(
                "with {}'s admin session on {}",
                prompt.username, prompt.instance
            ),
            inner_w,
            theme.ellipsis(),
        )),
        Line::default(),
        Line::from(vec![
            Span::styled(label, theme.bold()),
            Span::raw(text.clone()),
        ]),
        Line::default(),
        Line::from(vec![
            Span::styled(key(Action::SendUser), theme.bold()),
            Span::raw(" impersonate   "),
            Span::styled(key(Action::CancelUser), theme.bold()),
            Span::raw(" cancel"),
        ]),
    ];
    let rect = centered(area, w, 8);
    frame.render_widget(Clear, rect);
    let block = theme
        .text_block()
        .title(Span::styled(" Impersonate ", theme.bold()));
    frame.render_widget(Paragraph::new(Text::from(lines)).block(block), rect);
    let x = rect.x + 2 + u16::try_from(width(label) + width(&text)).unwrap_or(0);
    if x < rect.x + rect.width - 1 {
        frame.set_cursor_position((x, rect.y + 4));
    }
}
