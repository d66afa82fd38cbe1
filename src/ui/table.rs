//! The table of profiles: which columns fit, their widths, and one line per row.

use super::{Theme, fit, fit_cow, width};
use crate::app::{Model, Phase, ResultKind, Row as AppRow, RowState};
use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

/// A column of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// The cursor and selection marks.
    Mark,
    Name,
    Tags,
    Instance,
    User,
    Platform,
    State,
    Token,
    Refresh,
    Last,
}

impl Column {
    pub fn title(self) -> &'static str {
        match self {
            Column::Mark => "",
            Column::Name => "NAME",
            Column::Tags => "TAGS",
            Column::Instance => "INSTANCE",
            Column::User => "USER",
            Column::Platform => "PLATFORM",
            Column::State => "STATE",
            Column::Token => "TOKEN",
            Column::Refresh => "REFRESH",
            Column::Last => "LAST",
        }
    }
}

/// Columns dropped first when the screen is narrow. NAME, STATE and TOKEN always stay. The
/// first three go before LAST is narrowed below what it wants; the others only after.
pub const DROP_ORDER: [Column; 6] = [
    Column::Tags,
    Column::Platform,
    Column::Instance,
    Column::Refresh,
    Column::User,
    Column::Last,
];

const STATE_WIDTH: usize = 17; // "⊘ refresh expired"
const TIME_WIDTH: usize = 7; // "52m 07s", "13d 23h"
const HARD_END_WIDTH: usize = 12; // "ends 13d 23h"
const LAST_MIN: usize = 10;
const LAST_WANTED: usize = 24; // "✗ 401 need_login 184 ms"

/// The columns shown in a table `inner_width` wide, with their widths.
pub fn columns(model: &Model, inner_width: u16) -> Vec<(Column, u16)> {
    let w = model.field_widths();
    // Room for the marks after a name: prod (` ⚑`), and a warning (` ⚠`) whose column is dropped.
    let mark = if model.options().ascii { 4 } else { 2 };
    let prod_mark = usize::from(w.any_prod) * mark + usize::from(w.any_warning) * mark;
    let refresh = if model.any_hard_end() {
        HARD_END_WIDTH
    } else {
        TIME_WIDTH
    };
    let mut cols: Vec<(Column, usize)> = vec![
        (Column::Mark, 2),
        (Column::Name, (w.name + prod_mark).clamp(6, 32)),
        (Column::Tags, w.tags.clamp(4, 24)),
        (Column::Instance, w.instance.clamp(8, 36)),
        (Column::User, w.user.clamp(4, 20)),
        (
            Column::Platform,
            w.platform
                .max(w.platform_warned + usize::from(w.platform_warned > 0) * mark)
                .clamp(8, 16),
        ),
        (Column::State, STATE_WIDTH),
        (Column::Token, TIME_WIDTH),
        (Column::Refresh, refresh),
        (Column::Last, LAST_WANTED),
    ];
    let avail = usize::from(inner_width);
    let total = |cols: &[(Column, usize)]| {
        cols.iter().map(|c| c.1).sum::<usize>() + cols.len().saturating_sub(1)
    };
    let drop_while_too_wide = |cols: &mut Vec<(Column, usize)>, drops: &[Column]| {
        for drop in drops {
            if total(cols) <= avail {
                break;
            }
            cols.retain(|c| c.0 != *drop);
        }
    };
    let (tags, rest) = DROP_ORDER.split_at(1);
    let (decorative, essential) = rest.split_at(2);
    drop_while_too_wide(&mut cols, tags);
    // Narrow LAST before dropping anything that says more about the session (its platform and
    // instance): the last result's latency is the first thing to go.
    let over = total(&cols).saturating_sub(avail);
    if let Some(c) = cols.iter_mut().find(|c| c.0 == Column::Last) {
        c.1 = c.1.saturating_sub(over).max(LAST_MIN);
    }
    drop_while_too_wide(&mut cols, decorative);
    // Then STATE down to the widest state any row is in (rather than the widest there is).
    let over = total(&cols).saturating_sub(avail);
    if over > 0 {
        let ascii = model.options().ascii;
        let needed = RowState::ALL
            .iter()
            .filter(|s| model.count(**s) > 0)
            .map(|s| width(s.symbol(ascii)) + 1 + width(s.word()))
            .max()
            .unwrap_or(STATE_WIDTH);
        if let Some(c) = cols.iter_mut().find(|c| c.0 == Column::State) {
            c.1 = c.1.saturating_sub(over).max(needed);
        }
    }
    drop_while_too_wide(&mut cols, essential);
    // Still too wide: narrow the name, then the state (its symbol stays first).
    for col in [Column::Name, Column::State] {
        let over = total(&cols).saturating_sub(avail);
        if let Some(c) = cols.iter_mut().find(|c| c.0 == col) {
            c.1 = c.1.saturating_sub(over).max(4);
        }
    }
    // Room left goes to LAST (else to NAME).
    let spare = avail.saturating_sub(total(&cols));
    if let Some(c) = cols.iter_mut().find(|c| c.0 == Column::Last) {
        c.1 += spare;
    } else if let Some(c) = cols.iter_mut().find(|c| c.0 == Column::Name) {
        c.1 += spare.min(LAST_WANTED);
    }
    cols.into_iter()
        .map(|(c, w)| (c, u16::try_from(w).unwrap_or(u16::MAX)))
        .collect()
}

fn table_title(model: &Model, theme: &Theme) -> String {
    let shown = model.visible().len();
    let total = model.total();
    let mut title = if shown == total {
        format!(" Profiles {total}")
    } else {
        format!(" Profiles {shown} of {total}")
    };
    let (sort, reverse) = model.sort();
    if sort != crate::app::Sort::File || reverse {
        let arrow = match (reverse, theme.ascii) {
            (false, false) => " ↓",
            (true, false) => " ↑",
            (false, true) => "",
            (true, true) => ", reversed",
        };
        title.push_str(&format!("{}sorted by {}{arrow}", theme.dot(), sort.words()));
    }
    if !model.filter().is_empty() {
        title.push_str(&format!("{}filter: {}", theme.dot(), model.filter()));
    }
    if model.selected_count() > 0 {
        title.push_str(&format!(
            "{}{} selected",
            theme.dot(),
            model.selected_count()
        ));
    }
    title.push(' ');
    title
}

pub(super) fn draw_table(
    model: &Model,
    now: DateTime<Utc>,
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
) {
    let page = usize::from(area.height.saturating_sub(3));
    let visible = model.visible();
    let start = model.offset().min(visible.len());
    let end = (start + page).min(visible.len());
    let title = fit(
        &table_title(model, theme),
        usize::from(area.width.saturating_sub(4)),
        theme.ellipsis(),
    );
    let mut block = theme
        .block()
        .title(Line::from(Span::styled(title, theme.bold())));
    if visible.len() > page {
        block = block.title_bottom(
            Line::from(format!(" {}-{} of {} ", start + 1, end, visible.len())).right_aligned(),
        );
    }
    let inner = block.inner(area);
    let cols = columns(model, inner.width);
    let header = Row::new(cols.iter().map(|(c, _)| {
        let cell = Cell::from(c.title());
        if matches!(c, Column::Token | Column::Refresh) {
            Cell::from(Line::from(c.title()).right_aligned())
        } else {
            cell
        }
    }))
    .style(theme.bold());

    let rows: Vec<Row> = visible[start..end]
        .iter()
        .enumerate()
        .map(|(k, &i)| table_row(model, now, theme, &cols, i, start + k == model.cursor()))
        .collect();
    if visible.is_empty() {
        let text = if model.rows().is_empty() {
            "no profiles in the profiles file".to_string()
        } else {
            format!(
                "no profile matches \"{}\" (Esc clears the filter)",
                model.filter()
            )
        };
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    }
    let widths: Vec<Constraint> = cols.iter().map(|(_, w)| Constraint::Length(*w)).collect();
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(block);
    frame.render_widget(table, area);
}

fn table_row<'a>(
    model: &'a Model,
    now: DateTime<Utc>,
    theme: &Theme,
    cols: &[(Column, u16)],
    i: usize,
    cursor: bool,
) -> Row<'a> {
    let row = &model.rows()[i];
    let state = row.state();
    let ell = theme.ellipsis();
    let shown = |c: Column| cols.iter().any(|(col, _)| *col == c);
    let transport = transport_badge(row);
    // A warning whose column is dropped is marked next to the name instead.
    let name_warning = (!row.warnings.is_empty() && !shown(Column::Platform))
        || (transport.is_some() && !shown(Column::Instance));
    let cells = cols.iter().map(|&(col, w)| {
        let w = usize::from(w);
        match col {
            Column::Mark => {
                let c = match (cursor, theme.ascii) {
                    (true, false) => "▶",
                    (true, true) => ">",
                    (false, _) => " ",
                };
                let s = match (model.is_selected(i), theme.ascii) {
                    (true, false) => "✓",
                    (true, true) => "*",
                    (false, _) => " ",
                };
                Cell::from(format!("{c}{s}"))
            }
            Column::Name => {
                let mark = match (row.prod, theme.ascii) {
                    (true, false) => " ⚑",
                    (true, true) => " (P)",
                    (false, _) => "",
                };
                let warn = if name_warning {
                    format!(" {}", theme.warn_mark())
                } else {
                    String::new()
                };
                let name = fit_cow(
                    row.name(),
                    w.saturating_sub(width(mark) + width(&warn)),
                    ell,
                );
                Cell::from(Line::from(vec![
                    Span::raw(name),
                    Span::styled(mark, theme.fg(Color::Red)),
                    Span::styled(warn, theme.warning()),
                ]))
            }
            Column::Tags => Cell::from(fit(&row.profile.tags.join(" "), w, ell)),
            Column::Instance => match transport {
                Some(badge) => {
                    let badge = format!(" {badge}");
                    let room = w.saturating_sub(width(&badge));
                    Cell::from(Line::from(vec![
                        Span::raw(fit_cow(&row.instance, room, ell)),
                        Span::styled(badge, theme.error()),
                    ]))
                }
                None => Cell::from(fit_cow(&row.instance, w, ell)),
            },
            Column::User => Cell::from(fit_cow(&row.profile.username, w, ell)),
            Column::Platform if !row.warnings.is_empty() => {
                let mark = format!(" {}", theme.warn_mark());
                Cell::from(Line::from(vec![
                    Span::raw(fit_cow(
                        &row.profile.platform,
                        w.saturating_sub(width(&mark)),
                        ell,
                    )),
                    Span::styled(mark, theme.warning()),
                ]))
            }
            Column::Platform => Cell::from(fit_cow(&row.profile.platform, w, ell)),
            Column::State => Cell::from(Span::styled(
                fit(
                    &format!("{} {}", state.symbol(theme.ascii), state.word()),
                    w,
                    ell,
                ),
                theme.state(state),
            )),
            Column::Token => Cell::from(
                Line::from(row.token_left(now).unwrap_or_else(|| theme.dash().into()))
                    .right_aligned(),
            ),
            Column::Refresh => Cell::from(
                Line::from(row.refresh_left(now).unwrap_or_else(|| theme.dash().into()))
                    .right_aligned(),
            ),
            Column::Last => {
                let (text, style) = last_text(row, theme, w);
                Cell::from(Span::styled(fit(&text, w, ell), style))
            }
        }
    });
    let mut style = Style::new();
    if state == RowState::Expiring {
        style = style.add_modifier(Modifier::BOLD);
        if theme.color {
            style = style.fg(Color::Yellow);
        }
    }
    if cursor {
        style = style.add_modifier(Modifier::REVERSED);
    }
    Row::new(cells).style(style)
}

/// How the row's requests travel, when that is unsafe: `INSECURE` (certificates not checked) or
/// `HTTP` (plain HTTP to a host that is not loopback).
fn transport_badge(row: &AppRow) -> Option<&'static str> {
    if row.insecure() {
        Some("INSECURE")
    } else if row.plain_http {
        Some("HTTP")
    } else {
        None
    }
}

/// The LAST column: the request in flight, else the last result; a shorter form when
/// the column is narrower than the full text.
fn last_text(row: &AppRow, theme: &Theme, cols: usize) -> (String, Style) {
    let (ok, bad, wait) = if theme.ascii {
        ("ok", "x", "~")
    } else {
        ("✓", "✗", "⟳")
    };
    let pick = |full: String, short: String| if width(&full) <= cols { full } else { short };
    if let Some(f) = row.flight {
        let text = match (f.detached, f.phase) {
            (true, _) => pick(
                format!("{wait} {} cancelled, answer pending", f.op),
                format!("{wait} pending"),
            ),
            (false, Phase::Queued) => pick(
                format!("{wait} {} queued", f.op),
                format!("{wait} {}", f.op),
            ),
            (false, Phase::Sent) => {
                pick(format!("{wait} {} sent", f.op), format!("{wait} {}", f.op))
            }
        };
        return (text, theme.state(RowState::LoggingIn));
    }
    match &row.last {
        Some(last) => {
            let latency = last
                .latency_ms
                .map(|ms| format!(" {ms} ms"))
                .unwrap_or_default();
            match last.kind {
                ResultKind::Ok => (
                    pick(
                        format!("{ok} {}{latency}", last.op),
                        format!("{ok}{latency}"),
                    ),
                    theme.fg(Color::Green),
                ),
                ResultKind::Failed => (
                    failure_text(
                        bad,
                        &last.summary,
                        last.message.as_deref(),
                        last.hint.as_deref(),
                        &latency,
                    ),
                    theme.error(),
                ),
                ResultKind::Withdrawn => (format!("{} withdrawn", last.op), theme.dim()),
            }
        }
        None => match &row.entry.failure {
            Some(f) => (
                failure_text(bad, &f.short(), Some(&f.message), f.hint.as_deref(), ""),
                theme.error(),
            ),
            None => (String::new(), Style::new()),
        },
    }
}

/// A failure in the LAST column: `✗ 401 need_login: Sugar's own words (hint: what to do) 184 ms`,
/// most telling first, so that a narrow column cuts the hint and the latency before the words.
fn failure_text(
    bad: &str,
    summary: &str,
    message: Option<&str>,
    hint: Option<&str>,
    latency: &str,
) -> String {
    let mut text = format!("{bad} {summary}");
    if let Some(m) = message.filter(|m| !m.is_empty() && *m != summary) {
        text.push_str(": ");
        text.push_str(&crate::text::strip_controls(m));
    }
    if let Some(h) = hint {
        text.push_str(" (hint: ");
        text.push_str(&crate::text::strip_controls(h));
        text.push(')');
    }
    text.push_str(latency);
    text
}
