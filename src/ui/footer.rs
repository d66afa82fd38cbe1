//! The two lines under the table: the status line (or the filter being typed) and the key hints.

use super::{Theme, fit, fit_left, width};
use crate::app::{Action, Binding, Model};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

pub(super) fn draw_status(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let cols = usize::from(area.width);
    let line = if model.filtering() {
        let cursor = if theme.ascii { "_" } else { "▏" };
        // Of the rows there are to show, as the table's title counts them (a logged-out
        // impersonation's row is kept, hidden, and counts in neither).
        let count = format!("   {} of {} shown", model.visible().len(), model.total());
        let text = fit_left(
            &format!("/{}", model.filter()),
            cols.saturating_sub(width(&count) + 2),
            theme.ellipsis(),
        );
        Line::from(vec![
            Span::styled(format!(" {text}"), theme.bold()),
            Span::raw(cursor),
            Span::styled(count, theme.dim()),
        ])
    } else {
        // The newest message first; while the profiles file's last edit cannot be used, its
        // located error after it, until the file is fixed.
        let room = cols.saturating_sub(2);
        let mut spans = Vec::new();
        if let Some(status) = model.status() {
            let style = if status.error {
                theme.error()
            } else {
                Style::new()
            };
            spans.push(Span::styled(
                format!(" {}", fit(&status.text, room, theme.ellipsis())),
                style,
            ));
        }
        if let Some(error) = model.file_error() {
            let used: usize = spans.iter().map(|s| width(&s.content)).sum();
            let text = format!(
                "{}profiles file not reloaded: {error}",
                if spans.is_empty() { " " } else { " · " }
            );
            spans.push(Span::styled(
                fit(&text, cols.saturating_sub(used + 1), theme.ellipsis()),
                theme.error(),
            ));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

pub(super) fn draw_footer(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let hints = model.footer();
    let item = |b: &Binding| width(b.label(theme.ascii)) + 1 + width(b.desc) + 2;
    let mut room = usize::from(area.width).saturating_sub(1);
    // Help and quit always show; the others in table order while they fit.
    let must: Vec<bool> = hints
        .iter()
        .map(|b| matches!(b.action, Action::Help | Action::Quit))
        .collect();
    room = room.saturating_sub(
        hints
            .iter()
            .zip(&must)
            .filter(|(_, m)| **m)
            .map(|(b, _)| item(b))
            .sum(),
    );
    let mut keep = must.clone();
    for (k, b) in hints.iter().enumerate() {
        if !must[k] && item(b) <= room {
            room -= item(b);
            keep[k] = true;
        } else if !must[k] {
            room = 0;
        }
    }
    let key_style = if theme.color {
        Style::new().fg(Color::Black).bg(Color::Gray)
    } else {
        Style::new().add_modifier(Modifier::REVERSED)
    };
    let mut spans = vec![Span::raw(" ")];
    for (b, _) in hints.iter().zip(&keep).filter(|(_, k)| **k) {
        spans.push(Span::styled(b.label(theme.ascii), key_style));
        spans.push(Span::raw(format!(" {}  ", b.desc)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
