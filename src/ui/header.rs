//! The header line: where the profiles came from, and how many sessions are in each state.

use super::{Theme, fit_left, width};
use crate::app::{Model, RowState, Source};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

pub(super) fn draw_header(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let mut counts: Vec<Span> = Vec::new();
    for state in RowState::ALL {
        if state.in_flight() {
            continue;
        }
        let n = model.count(state);
        if n == 0 {
            continue;
        }
        counts.push(Span::styled(
            format!("{} {n} {}", state.symbol(theme.ascii), state.word()),
            theme.state(state),
        ));
        counts.push(Span::raw("  "));
    }
    if model.skews() > 0 {
        counts.push(Span::styled(
            format!("{} {} clock skew", theme.warn_mark(), model.skews()),
            theme.warning(),
        ));
        counts.push(Span::raw("  "));
    }
    let (sent, queued) = model.in_flight();
    if sent + queued > 0 {
        let sym = RowState::LoggingIn.symbol(theme.ascii);
        let text = if sent == 0 {
            format!("{sym} {queued} queued")
        } else if queued > 0 {
            format!("{sym} {sent} in flight, {queued} queued")
        } else {
            format!("{sym} {sent} in flight")
        };
        counts.push(Span::styled(text, theme.state(RowState::LoggingIn)));
        counts.push(Span::raw("  "));
    }
    counts.pop();
    let counts_width: usize = counts.iter().map(|s| s.width()).sum();

    let title = " sugar-sessions";
    // A read-only screen says so first, whatever else has to give way.
    let read_only = if model.options().read_only {
        if model.keeps_alive() {
            " READ-ONLY (keep-alive)"
        } else {
            " READ-ONLY"
        }
    } else {
        ""
    };
    let room = usize::from(area.width)
        .saturating_sub(counts_width + width(title) + width(read_only) + width(theme.dot()) + 2);
    let mut spans = vec![Span::styled(title, theme.bold())];
    if !read_only.is_empty() {
        spans.push(Span::styled(read_only, theme.warning()));
    }
    match model.source() {
        Source::File(path) if room >= 8 => {
            spans.push(Span::raw(theme.dot()));
            spans.push(Span::raw(fit_left(
                &path.display().to_string(),
                room,
                theme.ellipsis(),
            )));
        }
        Source::File(_) => {}
        Source::Demo { profiles_hint } => {
            // "demo" always shows; where the profiles file belongs, as far as there is room.
            spans.push(Span::raw(theme.dot()));
            spans.push(Span::styled("demo", theme.bold()));
            // Shown only whole: a cut path says nothing (the status line has it too).
            let hint = format!(" (profiles file: {})", profiles_hint.display());
            if width(&hint) + 4 <= room {
                spans.push(Span::raw(hint));
            }
        }
    }
    let left: usize = spans.iter().map(|s| s.width()).sum();
    let pad = usize::from(area.width).saturating_sub(left + counts_width + 1);
    spans.push(Span::raw(" ".repeat(pad.max(1))));
    spans.extend(counts);
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
