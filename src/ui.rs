//! Drawing the screen: `view(&Model, now, &mut Frame)`. Reads the Model, never changes it.
//!
//! Only the rows in the window are built (the Model keeps the visible order cached), so a frame
//! costs the same with 20 profiles or 10,000. Colour is decoration only: every state has a symbol
//! and a word; `NO_COLOR` turns colour off and the ASCII option replaces every non-ASCII symbol
//! and border.

use crate::app::{
    Action, Binding, CONFIRM_KEYS, FILTER_KEYS, HELP_KEYS, Layout, Model, NORMAL_KEYS,
    PASSWORD_KEYS, Phase, ResultKind, Row as AppRow, RowState, Source, USER_KEYS,
};
use crate::session::{format_duration, remaining};
use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::border;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, Padding, Paragraph, Row, Table, Wrap};

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
        draw_help(&theme, frame, area);
    } else if let Some(confirm) = model.confirm() {
        draw_confirm(confirm, &theme, frame, area);
    } else if model.prompt().is_some() {
        draw_prompt(model, &theme, frame, area);
    } else if model.user_prompt().is_some() {
        draw_user_prompt(model, &theme, frame, area);
    }
}

fn draw_header(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
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
    let room = usize::from(area.width)
        .saturating_sub(counts_width + width(title) + width(theme.dot()) + 2);
    let mut spans = vec![Span::styled(title, theme.bold())];
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

fn draw_table(model: &Model, now: DateTime<Utc>, theme: &Theme, frame: &mut Frame, area: Rect) {
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
                    pick(
                        format!("{bad} {}{latency}", last.summary),
                        format!("{bad} {}", last.summary),
                    ),
                    theme.error(),
                ),
                ResultKind::Withdrawn => (format!("{} withdrawn", last.op), theme.dim()),
            }
        }
        None => match &row.entry.failure {
            Some(f) => (format!("{bad} {} failed", f.op), theme.error()),
            None => (String::new(), Style::new()),
        },
    }
}

fn label(text: &str) -> Span<'static> {
    Span::styled(
        format!("{text:<9} "),
        Style::new().add_modifier(Modifier::BOLD),
    )
}

/// Word-wraps `text` after a label, continuation lines indented under the text.
fn labelled(name: &str, text: &str, style: Style, cols: usize) -> Vec<Line<'static>> {
    const INDENT: usize = 10;
    let room = cols.saturating_sub(INDENT).max(10);
    let mut out: Vec<String> = vec![String::new()];
    for word in text.split(' ') {
        let last = out.last_mut().expect("one line");
        let w = width(word);
        if !last.is_empty() && width(last) + 1 + w > room {
            out.push(String::new());
        }
        let last = out.last_mut().expect("one line");
        if !last.is_empty() {
            last.push(' ');
        }
        last.push_str(word);
    }
    out.into_iter()
        .enumerate()
        .map(|(k, l)| {
            let head = if k == 0 {
                label(name)
            } else {
                Span::raw(" ".repeat(INDENT))
            };
            Line::from(vec![head, Span::styled(l, style)])
        })
        .collect()
}

fn draw_details(model: &Model, now: DateTime<Utc>, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(row) = model.current() else {
        frame.render_widget(theme.block().title(" details "), area);
        return;
    };
    let zone = model.options().zone;
    let dot = theme.dot();
    let p = &row.profile;
    let when = |t: DateTime<Utc>| zone.format(t, "%Y-%m-%d %H:%M:%S %:z");
    let cols = usize::from(area.width.saturating_sub(4));
    let mut lines: Vec<Line> = Vec::new();
    lines.push(Line::from(vec![
        label("URL"),
        Span::raw(format!("{}/rest/{}", p.root(), p.api)),
    ]));
    if row.insecure() {
        lines.extend(labelled(
            "Security",
            "INSECURE: the server's certificate is not checked (insecure = true); only for a throwaway test box",
            theme.error(),
            cols,
        ));
    }
    if row.plain_http {
        lines.extend(labelled(
            "Security",
            "plain HTTP to a host that is not loopback (allow_http = true): passwords and tokens cross the network unencrypted",
            theme.error(),
            cols,
        ));
    }
    let mut net = Vec::new();
    if let Some(ca) = &p.ca_cert {
        net.push(format!("ca_cert {}", ca.path.display()));
    }
    if let Some(proxy) = &p.proxy {
        net.push(format!("proxy {proxy}"));
    }
    if !net.is_empty() {
        lines.extend(labelled("Network", &net.join(dot), Style::new(), cols));
    }
    let mut who = format!(
        "{}{dot}platform {}{dot}client {}",
        p.username, p.platform, p.client_id
    );
    if !p.tags.is_empty() {
        who.push_str(&format!("{dot}tags {}", p.tags.join(" ")));
    }
    lines.push(Line::from(vec![label("User"), Span::raw(who)]));
    if let Some((parent, user)) = &row.sudo {
        lines.extend(labelled(
            "Sudo",
            &format!(
                "impersonating {user} through {}'s admin session; no refresh token: it ends when its access token does (o logs it out)",
                model.rows()[*parent].name()
            ),
            Style::new(),
            cols,
        ));
    }
    for warning in &row.warnings {
        lines.extend(labelled("Warning", warning, theme.warning(), cols));
    }
    match &row.entry.session {
        Some(s) => {
            let access = if row.superseded() {
                format!(
                    "no longer accepted by Sugar (it would have lasted until {})",
                    when(s.expires_at)
                )
            } else if s.access_valid(now) {
                format!(
                    "until {} ({} left)",
                    when(s.expires_at),
                    format_duration(remaining(s.expires_at, now))
                )
            } else {
                format!("expired at {}", when(s.expires_at))
            };
            lines.push(Line::from(vec![
                label("Access"),
                Span::styled(access, theme.state(row.state())),
            ]));
            let refresh = match (s.refresh_token.is_some(), s.refresh_expires_at) {
                (true, Some(at)) if s.refresh_valid(now) => {
                    let mut text = format!(
                        "until {} ({} left)",
                        when(at),
                        format_duration(remaining(at, now))
                    );
                    if let Some(end) = s.hard_end {
                        text.push_str(&format!(
                            "; the session ends at {}: refreshing no longer extends it (Sugar's max_session_lifetime), a login is needed then",
                            when(end)
                        ));
                    }
                    text
                }
                (true, Some(at)) => format!("expired at {}", when(at)),
                _ => {
                    "no refresh token: a login is needed when the access token expires".to_string()
                }
            };
            if !row.is_sudo() {
                lines.extend(labelled("Refresh", &refresh, Style::new(), cols));
            }
            // Tokens only masked: the first and last four characters.
            let ell = theme.ellipsis().to_string();
            let mask = |t: &crate::secret::Secret| t.masked().replace('…', &ell);
            let mut tokens = format!("access {}", mask(&s.access_token));
            if let Some(r) = &s.refresh_token {
                tokens.push_str(&format!("{dot}refresh {}", mask(r)));
            }
            if let Some(d) = &s.download_token {
                tokens.push_str(&format!("{dot}download {}", mask(d)));
            }
            lines.push(Line::from(vec![label("Tokens"), Span::raw(tokens)]));
        }
        None => lines.push(Line::from(vec![
            label("Session"),
            Span::raw("none: l logs in"),
        ])),
    }
    match (&row.check, row.state()) {
        (_, RowState::Unverified) => lines.push(Line::from(vec![
            label("Check"),
            Span::styled(
                "cached session, not yet confirmed by the server: checking",
                theme.state(RowState::Unverified),
            ),
        ])),
        (Some(c), _) => {
            lines.extend(labelled(
                "Check",
                &format!("{} (at {})", c.summary(), zone.format(c.at, "%H:%M:%S")),
                Style::new(),
                cols,
            ));
            if let Some(w) = c.skew_warning() {
                lines.extend(labelled("Clock", &w, theme.warning(), cols));
            }
        }
        (None, _) => {}
    }
    if let Some(f) = row.flight {
        let what = match (f.detached, f.phase) {
            (true, _) => "cancelled; the answer will still be stored when it arrives",
            (false, Phase::Queued) => "queued (waiting for a free connection)",
            (false, Phase::Sent) => "sent, waiting for the answer",
        };
        lines.push(Line::from(vec![
            label("Request"),
            Span::styled(
                format!(
                    "{} {what} (since {})",
                    f.op,
                    zone.format(f.since, "%H:%M:%S")
                ),
                theme.state(RowState::LoggingIn),
            ),
        ]));
    }
    if let Some((text, hint)) = row.error_text() {
        lines.extend(labelled("Error", &text, theme.error(), cols));
        if let Some(hint) = hint {
            lines.extend(labelled("Hint", &hint, Style::new(), cols));
        }
    }
    if let Some(last) = &row.last {
        let latency = last
            .latency_ms
            .map(|ms| format!(", {ms} ms"))
            .unwrap_or_default();
        let what = match last.kind {
            ResultKind::Ok => "ok",
            ResultKind::Failed => "failed",
            ResultKind::Withdrawn => "withdrawn",
        };
        lines.push(Line::from(vec![
            label("Last"),
            Span::raw(format!(
                "{} {what} at {}{latency}",
                last.op,
                zone.format(last.at, "%H:%M:%S")
            )),
        ]));
    }
    if !row.recent.is_empty() {
        lines.push(Line::from(label("Requests")));
        for r in row.recent.iter().rev() {
            let status = r
                .status
                .map_or_else(|| theme.dash().to_string(), |s| s.to_string());
            let style = match r.status {
                Some(s) if s < 400 => Style::new(),
                _ => theme.error(),
            };
            lines.push(Line::from(vec![
                Span::raw(format!("{:<10}", "")),
                Span::raw(format!(
                    "{}  {:<5}{:<22}",
                    zone.format(r.at, "%H:%M:%S"),
                    r.method,
                    r.path
                )),
                Span::styled(format!("{status:>4}"), style),
                Span::raw(format!("  {:>6} ms", r.latency_ms)),
            ]));
        }
    }
    let title = format!(
        " {} ",
        fit(
            row.name(),
            usize::from(area.width.saturating_sub(6)),
            theme.ellipsis()
        )
    );
    let block = theme.text_block().title(Span::styled(title, theme.bold()));
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}

fn draw_status(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let cols = usize::from(area.width);
    let line = if model.filtering() {
        let cursor = if theme.ascii { "_" } else { "▏" };
        let count = format!(
            "   {} of {} shown",
            model.visible().len(),
            model.rows().len()
        );
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
    } else if let Some(status) = model.status() {
        let style = if status.error {
            theme.error()
        } else {
            Style::new()
        };
        Line::from(Span::styled(
            format!(
                " {}",
                fit(&status.text, cols.saturating_sub(2), theme.ellipsis())
            ),
            style,
        ))
    } else {
        Line::default()
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_footer(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
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

fn draw_help(theme: &Theme, frame: &mut Frame, area: Rect) {
    let w = 100.min(area.width.saturating_sub(2)).max(20);
    let inner = usize::from(w.saturating_sub(4));
    let mut lines: Vec<Line> = Vec::new();
    // The main table's keys in a grid, from the same table that handles them; its Ctrl keys,
    // which work in every mode, on a line of their own below.
    let items: Vec<&Binding> = NORMAL_KEYS.iter().filter(|b| !b.ctrl).collect();
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
    let note = "Keys act on the selected rows shown, else on the cursor's row; logging out prod or \
                several asks first. c withdraws queued requests; sent ones finish and are stored. \
                Due sessions refresh by themselves.";
    let note_lines = width(note) / inner.max(1) + 2;
    lines.push(Line::from(note));
    let wanted = u16::try_from(lines.len() + note_lines + 1).unwrap_or(u16::MAX);
    let h = wanted.min(area.height.saturating_sub(2));
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

fn draw_confirm(confirm: &crate::app::Confirm, theme: &Theme, frame: &mut Frame, area: Rect) {
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

fn draw_prompt(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
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

fn draw_user_prompt(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
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
