//! The table of profiles: which columns fit, their widths, and one line per row.

use super::{Theme, fit, fit_cow, width};
use crate::app::{Column, Model, Phase, ResultKind, Row as AppRow, RowState, Sort, columns};
use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

fn table_title(model: &Model, theme: &Theme, cols: &[(Column, u16)]) -> String {
    let shown = model.visible().len();
    let total = model.total();
    let mut title = if shown == total {
        format!(" Profiles {total}")
    } else {
        format!(" Profiles {shown} of {total}")
    };
    // The sort shows as an arrow on its column's title; here only when that column is not
    // shown (a narrow screen), or for file order reversed.
    let (sort, _) = model.sort();
    let marked = cols.iter().any(|(c, _)| c.sort() == Some(sort));
    if !marked && model.sort() != (Sort::File, false) {
        title.push_str(&format!("{}{}", theme.dot(), model.sort_words()));
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
    let inner = theme.block().inner(area);
    let cols = columns(model, inner.width);
    let title = fit(
        &table_title(model, theme, &cols),
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
    let (sort, reverse) = model.sort();
    let arrow = match (reverse, theme.ascii) {
        (false, false) => "↑",
        (true, false) => "↓",
        (false, true) => "^",
        (true, true) => "v",
    };
    let header = Row::new(cols.iter().map(|(c, _)| {
        // The sorted column: ↑ ascending (A to Z, the least time left first), ↓ descending.
        let title = if c.sort() == Some(sort) {
            format!("{}{arrow}", c.title())
        } else {
            c.title().to_string()
        };
        if matches!(c, Column::Token | Column::Refresh) {
            Cell::from(Line::from(title).right_aligned())
        } else {
            Cell::from(title)
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
