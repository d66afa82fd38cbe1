//! Drawing the screen: `view(&Model, now, &mut Frame)`. Reads the Model, never changes it.
//!
//! Only the rows in the window are built (the Model keeps the visible order cached), so a frame
//! costs the same with 20 profiles or 10,000. Colour is decoration only: every state has a symbol
//! and a word; `NO_COLOR` turns colour off and the ASCII option replaces every non-ASCII symbol
//! and border.

mod details;
mod footer;
mod header;
mod popups;
mod table;

pub use crate::app::{Column, DROP_ORDER, columns};

use crate::app::{Layout, Model, RowState};
use chrono::{DateTime, Utc};
use details::draw_details;
use footer::{draw_footer, draw_status};
use header::draw_header;
use popups::{draw_confirm, draw_help, draw_prompt, draw_user_prompt};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::border;
use ratatui::text::Span;
use ratatui::widgets::{Block, Padding, Paragraph, Wrap};
use table::draw_table;

/// Borders drawn with `+`, `-` and `|`.
pub const ASCII_BORDER: border::Set<'static> = border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};

/// The smallest screen drawn; below it a one-line notice says so.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 8;

/// True when the locale's character set is UTF-8. Takes the values of `LC_ALL`, `LC_CTYPE` and
/// `LANG` (the first one set and non-empty decides, as in POSIX); none set means the C locale.
pub fn locale_is_utf8(lc_all: Option<&str>, lc_ctype: Option<&str>, lang: Option<&str>) -> bool {
    let value = [lc_all, lc_ctype, lang]
        .into_iter()
        .flatten()
        .find(|v| !v.is_empty());
    value.is_some_and(|v| {
        let v = v.to_ascii_lowercase();
        v.contains("utf-8") || v.contains("utf8")
    })
}

/// True when `NO_COLOR` asks for no colour (set and non-empty, per no-color.org).
pub fn no_color(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// Colours and symbols.
struct Theme {
    color: bool,
    ascii: bool,
}

impl Theme {
    fn of(model: &Model) -> Theme {
        let o = model.options();
        Theme {
            color: o.color,
            ascii: o.ascii,
        }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    fn bold(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    fn state(&self, s: RowState) -> Style {
        match s {
            RowState::Active => self.fg(Color::Green),
            RowState::Unverified => self.fg(Color::Blue),
            RowState::Expiring => self.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            RowState::Expired | RowState::RefreshExpired => self.fg(Color::Magenta),
            RowState::Error | RowState::Superseded => {
                self.fg(Color::Red).add_modifier(Modifier::BOLD)
            }
            RowState::LoggingIn | RowState::Refreshing | RowState::LoggingOut => {
                self.fg(Color::Cyan)
            }
            RowState::LoggedOut => Style::new(),
        }
    }

    fn error(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    fn dim(&self) -> Style {
        if self.color {
            Style::new().add_modifier(Modifier::DIM)
        } else {
            Style::new()
        }
    }

    fn border(&self) -> border::Set<'static> {
        if self.ascii {
            ASCII_BORDER
        } else {
            border::PLAIN
        }
    }

    fn block(&self) -> Block<'static> {
        Block::bordered().border_set(self.border())
    }

    /// A block for text: a space inside each side border.
    fn text_block(&self) -> Block<'static> {
        self.block().padding(Padding::horizontal(1))
    }

    fn dash(&self) -> &'static str {
        if self.ascii { "-" } else { "—" }
    }

    fn ellipsis(&self) -> char {
        if self.ascii { '~' } else { '…' }
    }

    fn dot(&self) -> &'static str {
        if self.ascii { " - " } else { " · " }
    }

    /// The mark of a warning (platform guard, insecure, plain HTTP, clock skew).
    fn warn_mark(&self) -> &'static str {
        if self.ascii { "(!)" } else { "⚠" }
    }

    fn warning(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }
}

/// Display width of a string (ASCII fast path).
fn width(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        Span::raw(s).width()
    }
}

/// `s` cut to `max` columns, with an ellipsis when cut.
fn fit(s: &str, max: usize, ellipsis: char) -> String {
    fit_cow(s, max, ellipsis).into_owned()
}

/// [`fit`], borrowing `s` when it fits (most table cells: no copy for every cell of every frame).
fn fit_cow(s: &str, max: usize, ellipsis: char) -> std::borrow::Cow<'_, str> {
    if width(s) <= max {
        return s.into();
    }
    if max == 0 {
        return "".into();
    }
    let mut out = String::new();
    let mut used = 0;
    let mut buf = [0u8; 4];
    for c in s.chars() {
        let w = width(c.encode_utf8(&mut buf));
        if used + w > max - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push(ellipsis);
    out.into()
}

/// `s` cut from the left (paths keep their end).
fn fit_left(s: &str, max: usize, ellipsis: char) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let rev: String = s.chars().rev().collect();
    let cut = fit(&rev, max, ellipsis);
    let mut chars: Vec<char> = cut.chars().collect();
    chars.pop();
    chars.reverse();
    std::iter::once(ellipsis).chain(chars).collect()
}

/// Draws the whole screen.
pub fn view(model: &Model, now: DateTime<Utc>, frame: &mut Frame) {
    let area = frame.area();
    let theme = Theme::of(model);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "terminal too small ({}x{}); needs {MIN_WIDTH}x{MIN_HEIGHT}; q quits",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let layout = Layout::new(area.height, model.details_open(), model.visible().len());
    let mut y = area.y;
    let mut take = |h: u16| {
        let r = Rect {
            x: area.x,
            y,
            width: area.width,
            height: h,
        };
        y += h;
        r
    };
    let header = take(layout.header);
    let table = take(layout.table);
    let details = take(layout.details);
    let status = take(layout.status);
    let footer = take(layout.footer);

    draw_header(model, &theme, frame, header);
    draw_table(model, now, &theme, frame, table);
    if layout.details > 0 {
        draw_details(model, now, &theme, frame, details);
    }
    draw_status(model, &theme, frame, status);
    draw_footer(model, &theme, frame, footer);

    if model.help_open() {
        draw_help(model, &theme, frame, area);
    } else if let Some(confirm) = model.confirm() {
        draw_confirm(confirm, &theme, frame, area);
    } else if model.prompt().is_some() {
        draw_prompt(model, &theme, frame, area);
    } else if model.user_prompt().is_some() {
        draw_user_prompt(model, &theme, frame, area);
    }
}
