//! The [`Model`]: everything the screen knows, how it is built, read, and kept consistent.

use super::Command;
use super::columns::{ALL_COLUMNS, Column};
use super::copy::Clipboard;
use super::input::Typed;
use super::order::{Narrowed, Sort};
use super::requests::Confirm;
use super::row::{Phase, Row, RowState};
use crate::config::Profiles;
use crate::identity::ProfileId;
use crate::session::Op;
use chrono::{DateTime, FixedOffset, Local, Utc};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the profiles came from, for the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A profiles file.
    File(PathBuf),
    /// The built-in demo; `profiles_hint` is where a profiles file belongs.
    Demo { profiles_hint: PathBuf },
}

/// Time zone for the instants shown in the details pane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// The system's local time (from `TZ` / `/etc/localtime`).
    Local,
    /// A fixed offset (tests).
    Fixed(FixedOffset),
}

impl Zone {
    /// Formats `t` in this zone with a chrono format string.
    pub fn format(self, t: DateTime<Utc>, fmt: &str) -> String {
        match self {
            Zone::Local => t.with_timezone(&Local).format(fmt).to_string(),
            Zone::Fixed(off) => t.with_timezone(&off).format(fmt).to_string(),
        }
    }
}

/// How the screen draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// ASCII symbols only (locale not UTF-8, or `--ascii`).
    pub ascii: bool,
    /// Colours (off with `NO_COLOR`).
    pub color: bool,
    pub zone: Zone,
    /// How `y` and `e` copy (`SUGAR_SESSIONS_CLIPBOARD`).
    pub clipboard: Clipboard,
    /// Read-only (`--read-only`, or `read_only = true` in the file, which [`Model::new`] adds):
    /// nothing that changes a session or shows a token; see [`Model::read_only_refusal`].
    pub read_only: bool,
    /// `--keep-alive`: in read-only mode, sessions that are due are still refreshed, and cached
    /// sessions are checked at start.
    pub keep_alive: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ascii: false,
            color: true,
            zone: Zone::Local,
            clipboard: Clipboard::Osc52,
            read_only: false,
            keep_alive: false,
        }
    }
}

#[derive(Debug)]
pub(super) enum Mode {
    Normal,
    Filter,
    Help,
    Confirm(Confirm),
    /// The prompt for `prompts.front()`.
    Password(Typed),
    /// The prompt for the user to impersonate through row `row`'s session.
    User {
        row: usize,
        text: String,
    },
}

/// The widest text of each static column, in characters (for the column layout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldWidths {
    pub name: usize,
    pub tags: usize,
    pub instance: usize,
    pub user: usize,
    pub platform: usize,
    /// Some profile is tagged `prod`.
    pub any_prod: bool,
    /// Some profile has a warning (platform guard, insecure, plain HTTP): its mark may go next
    /// to the name when the column that shows it is dropped.
    pub any_warning: bool,
    /// The widest platform of a profile the platform guard warns of (its mark follows it).
    pub platform_warned: usize,
}

impl FieldWidths {
    fn of(rows: &[Row]) -> FieldWidths {
        let mut w = FieldWidths::default();
        for r in rows {
            w.add(r);
        }
        w
    }

    fn add(&mut self, r: &Row) {
        let len = |s: &str| s.chars().count();
        self.name = self.name.max(len(&r.profile.name));
        self.tags = self.tags.max(len(&r.profile.tags.join(" ")));
        // The screen marks an unsafe transport after the instance (` INSECURE`, ` HTTP`).
        let badge = if r.insecure() {
            9
        } else if r.plain_http {
            5
        } else {
            0
        };
        self.instance = self.instance.max(len(&r.instance) + badge);
        self.user = self.user.max(len(&r.profile.username));
        self.platform = self.platform.max(len(&r.profile.platform));
        if !r.warnings.is_empty() {
            self.platform_warned = self.platform_warned.max(len(&r.profile.platform));
        }
        self.any_prod |= r.prod;
        self.any_warning |= !r.warnings.is_empty() || r.insecure() || r.plain_http;
    }
}

/// A line for the status bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

/// How the screen's height is shared; `ui` draws with the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub header: u16,
    /// The table block, borders and column header included.
    pub table: u16,
    /// The details block (0 when closed or when there is no room).
    pub details: u16,
    pub status: u16,
    pub footer: u16,
}

impl Layout {
    /// `rows` is the number of profiles shown: when the details pane is open, the table takes
    /// no more room than they need and the pane gets the rest.
    pub fn new(height: u16, details: bool, rows: usize) -> Layout {
        let fixed = 3; // header, status, footer
        let avail = height.saturating_sub(fixed);
        if !details || avail < 12 {
            return Layout {
                header: 1,
                table: avail,
                details: 0,
                status: 1,
                footer: 1,
            };
        }
        let pane = (avail / 2).clamp(6, 16);
        let wanted = u16::try_from(rows)
            .unwrap_or(u16::MAX)
            .saturating_add(3)
            .max(4);
        let table = wanted.min(avail - pane);
        Layout {
            header: 1,
            table,
            details: avail - table,
            status: 1,
            footer: 1,
        }
    }

    /// Rows of profiles the table shows.
    pub fn table_rows(&self) -> usize {
        usize::from(self.table.saturating_sub(3))
    }
}

/// Everything the screen knows.
#[derive(Debug)]
pub struct Model {
    pub(super) source: Source,
    pub(super) options: Options,
    pub(super) rows: Vec<Row>,
    pub(super) widths: FieldWidths,
    pub(super) by_name: HashMap<String, usize>,
    /// Row indices in the order shown: the filter applied, sorted.
    pub(super) visible: Vec<usize>,
    /// Position in `visible`.
    pub(super) cursor: usize,
    /// First position shown.
    pub(super) offset: usize,
    pub(super) size: (u16, u16),
    pub(super) selected: Vec<bool>,
    pub(super) selected_count: usize,
    pub(super) filter: String,
    pub(super) mode: Mode,
    pub(super) sort: Sort,
    pub(super) reverse: bool,
    pub(super) details: bool,
    pub(super) status: Option<Status>,
    /// Rows waiting for the password prompt, the current one first.
    pub(super) prompts: VecDeque<usize>,
    pub(super) counts: [usize; RowState::ALL.len()],
    /// Rows shown (impersonations without a session are not).
    pub(super) total: usize,
    /// Impersonation rows, shown or not (file order then needs a sort).
    pub(super) sudo_rows: usize,
    /// Rows whose session has a hard end (the REFRESH column then needs more room).
    pub(super) hard_ends: usize,
    /// Rows whose last check found the server's clock off by more than a minute.
    pub(super) skews: usize,
    /// Background checks of cached sessions still outstanding, how many of them failed, how many
    /// found the server's clock off, and how many were withdrawn before they were sent.
    pub(super) verifying: usize,
    pub(super) verify_failed: usize,
    pub(super) verify_skewed: usize,
    pub(super) verify_withdrawn: usize,
    pub(super) sent: usize,
    pub(super) queued: usize,
    /// No row changes state by time alone before this instant.
    pub(super) next_change: Option<DateTime<Utc>>,
    pub(super) clock: DateTime<Utc>,
    pub(super) dirty: bool,
    /// Set by a handler that changed nothing (so that the message does not cause a draw).
    pub(super) noop: bool,
    pub(super) quitting: bool,
    /// Every row's filter text (see `Row::search`), one after another, and where each ends: the
    /// filter scans these 70 bytes a row in one place instead of visiting every row (10,000 rows
    /// are ~10 MB), which made one filter keystroke cost a few hundred µs.
    pub(super) search: String,
    pub(super) search_end: Vec<u32>,
    /// Where the filter `hits_for` first matches in the text of each row it shows (by row): a
    /// keystroke that extends the filter looks there first, and almost always finds it still.
    pub(super) hits: Vec<u32>,
    pub(super) hits_for: Option<String>,
    /// What each filter keystroke still in the filter took away: Backspace puts it back instead
    /// of filtering again.
    pub(super) undo: Vec<Narrowed>,
    /// The located error of the profiles file's last edit, while it cannot be used.
    pub(super) file_error: Option<String>,
    /// The table's columns, in order (the marks first): the file's `columns`, else all of them.
    pub(super) column_order: Vec<Column>,
    /// The file chose them (`columns`): a narrow screen drops from the end of its list.
    pub(super) columns_chosen: bool,
}

impl Model {
    /// A Model over the profiles (in file order); every row starts logged out until the cache is
    /// applied with [`Msg::CacheReloaded`](super::Msg::CacheReloaded) (or [`Model::apply_cache`]).
    pub fn new(
        profiles: &Profiles,
        source: Source,
        mut options: Options,
        now: DateTime<Utc>,
    ) -> Model {
        options.read_only |= profiles.settings.read_only;
        let mut warnings = crate::guard::warnings(&profiles.profiles);
        let rows: Vec<Row> = profiles
            .profiles
            .iter()
            .map(Arc::clone)
            .enumerate()
            .map(|(i, p)| {
                let found = warnings.remove(&p.name).unwrap_or_default();
                let messages = found.iter().map(|w| w.message(&p)).collect();
                let mut row = Row::new(p, i);
                row.warnings = messages;
                row
            })
            .collect();
        let by_name = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.profile.name.clone(), i))
            .collect();
        let n = rows.len();
        let mut search = String::new();
        let mut search_end = Vec::with_capacity(n);
        for r in &rows {
            search.push_str(&r.search);
            search_end.push(search.len() as u32);
        }
        let mut counts = [0; RowState::ALL.len()];
        counts[RowState::LoggedOut.index()] = n;
        let status = match &source {
            Source::Demo { profiles_hint } => Some(Status {
                text: format!(
                    "demo: your profiles file belongs at {}",
                    profiles_hint.display()
                ),
                error: false,
            }),
            Source::File(_) => None,
        };
        Model {
            source,
            options,
            widths: FieldWidths::of(&rows),
            by_name,
            visible: (0..n).collect(),
            selected: vec![false; n],
            rows,
            cursor: 0,
            offset: 0,
            size: (80, 24),
            selected_count: 0,
            filter: String::new(),
            mode: Mode::Normal,
            sort: Sort::File,
            reverse: false,
            details: false,
            status,
            prompts: VecDeque::new(),
            counts,
            total: n,
            sudo_rows: 0,
            hard_ends: 0,
            skews: 0,
            verifying: 0,
            verify_failed: 0,
            verify_skewed: 0,
            verify_withdrawn: 0,
            sent: 0,
            queued: 0,
            next_change: None,
            clock: now,
            dirty: true,
            noop: false,
            quitting: false,
            search,
            search_end,
            hits: vec![0; n],
            hits_for: Some(String::new()),
            undo: Vec::new(),
            file_error: None,
            column_order: match &profiles.settings.columns {
                Some(names) => std::iter::once(Column::Mark)
                    .chain(names.iter().filter_map(|n| Column::from_name(n)))
                    .collect(),
                None => ALL_COLUMNS.to_vec(),
            },
            columns_chosen: profiles.settings.columns.is_some(),
        }
    }

    // --- read access for the view and for tests ---

    pub fn source(&self) -> &Source {
        &self.source
    }
    pub fn options(&self) -> Options {
        self.options
    }
    /// Sessions are refreshed when due and checked at start: always, except in read-only mode
    /// without `--keep-alive`.
    pub fn keeps_alive(&self) -> bool {
        !self.options.read_only || self.options.keep_alive
    }
    /// The widest text of each static column (computed once).
    pub fn field_widths(&self) -> FieldWidths {
        self.widths
    }
    /// All rows: the profiles in file order, then impersonations in the order they came
    /// (hidden ones included: see [`Model::visible`] for what is shown).
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }
    /// How many rows there are to show (the filter aside).
    pub fn total(&self) -> usize {
        self.total
    }
    /// Some row's session has a hard end.
    pub fn any_hard_end(&self) -> bool {
        self.hard_ends > 0
    }
    /// How many rows' last check found the server's clock off by more than a minute.
    pub fn skews(&self) -> usize {
        self.skews
    }
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.by_name.get(name).map(|&i| &self.rows[i])
    }
    /// Row indices in the order shown.
    pub fn visible(&self) -> &[usize] {
        &self.visible
    }
    /// Names in the order shown.
    pub fn visible_names(&self) -> Vec<&str> {
        self.visible.iter().map(|&i| self.rows[i].name()).collect()
    }
    /// Position of the cursor in [`Model::visible`].
    pub fn cursor(&self) -> usize {
        self.cursor
    }
    /// The row under the cursor.
    pub fn current(&self) -> Option<&Row> {
        self.visible.get(self.cursor).map(|&i| &self.rows[i])
    }
    /// First position shown in the table.
    pub fn offset(&self) -> usize {
        self.offset
    }
    pub fn is_selected(&self, row: usize) -> bool {
        self.selected[row]
    }
    pub fn selected_names(&self) -> Vec<&str> {
        (0..self.rows.len())
            .filter(|&i| self.selected[i])
            .map(|i| self.rows[i].name())
            .collect()
    }
    pub fn selected_count(&self) -> usize {
        self.selected_count
    }
    pub fn filter(&self) -> &str {
        &self.filter
    }
    /// The filter is being typed.
    pub fn filtering(&self) -> bool {
        matches!(self.mode, Mode::Filter)
    }
    pub fn sort(&self) -> (Sort, bool) {
        (self.sort, self.reverse)
    }
    pub fn details_open(&self) -> bool {
        self.details
    }
    pub fn help_open(&self) -> bool {
        matches!(self.mode, Mode::Help)
    }
    pub fn confirm(&self) -> Option<&Confirm> {
        match &self.mode {
            Mode::Confirm(c) => Some(c),
            _ => None,
        }
    }
    pub fn status(&self) -> Option<&Status> {
        self.status.as_ref()
    }
    /// How many profiles are in the state (all profiles, not only the shown ones).
    pub fn count(&self, state: RowState) -> usize {
        self.counts[state.index()]
    }
    /// Requests being sent (`.0`) and queued (`.1`), cancelled ones still unanswered included.
    pub fn in_flight(&self) -> (usize, usize) {
        (self.sent, self.queued)
    }
    pub fn quitting(&self) -> bool {
        self.quitting
    }
    pub fn size(&self) -> (u16, u16) {
        self.size
    }
    pub fn layout(&self) -> Layout {
        Layout::new(self.size.1, self.details, self.visible.len())
    }
    /// The Model's notion of now: the `now` of the last update.
    pub fn clock(&self) -> DateTime<Utc> {
        self.clock
    }

    /// True once after something changed that the screen shows; the runtime draws then.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    // --- keeping derived data up to date ---

    /// Changes row `i` and keeps counts, next change and (when `reposition`) the order up to date.
    pub(super) fn change_row(&mut self, i: usize, reposition: bool, f: impl FnOnce(&mut Row)) {
        let now = self.clock;
        let row = &mut self.rows[i];
        let (state_before, phase_before, key_before, hidden_before) = (
            row.state,
            row.flight.map(|f| f.phase),
            row.token_key(),
            row.hidden,
        );
        let refresh_before = (self.sort == Sort::Refresh).then(|| row.refresh_key());
        let last_before = (self.sort == Sort::Last).then(|| row.last_key());
        let (hard_end_before, skew_before) = (row.hard_end().is_some(), row.skewed());
        f(row);
        row.state = RowState::of(&row.entry, row.flight.as_ref(), row.unverified, now);
        if row.is_sudo() {
            // An impersonation shows while it has a session (or a request in flight).
            row.hidden = row.entry.session.is_none() && row.flight.is_none();
        }
        let (state_after, phase_after, hidden_after) =
            (row.state, row.flight.map(|f| f.phase), row.hidden);
        let key_changed = match self.sort {
            Sort::State => state_before != state_after,
            Sort::TokenLeft => key_before != row.token_key(),
            Sort::Refresh => refresh_before != Some(row.refresh_key()),
            Sort::Last => last_before != Some(row.last_key()),
            Sort::File | Sort::Name | Sort::Tags | Sort::Instance | Sort::User | Sort::Platform => {
                false
            }
        };
        if let Some(t) = row.next_change(now) {
            self.next_change = Some(self.next_change.map_or(t, |n| n.min(t)));
        }
        let (hard_end_after, skew_after) = (row.hard_end().is_some(), row.skewed());
        self.hard_ends =
            self.hard_ends + usize::from(hard_end_after) - usize::from(hard_end_before);
        self.skews = self.skews + usize::from(skew_after) - usize::from(skew_before);
        if !hidden_before {
            self.counts[state_before.index()] -= 1;
        }
        if !hidden_after {
            self.counts[state_after.index()] += 1;
        }
        for (phase, add) in [(phase_before, false), (phase_after, true)] {
            let counter = match phase {
                Some(Phase::Sent) => &mut self.sent,
                Some(Phase::Queued) => &mut self.queued,
                None => continue,
            };
            if add {
                *counter += 1;
            } else {
                *counter -= 1;
            }
        }
        if hidden_before != hidden_after {
            if hidden_after {
                self.total -= 1;
                if std::mem::take(&mut self.selected[i]) {
                    self.selected_count -= 1;
                }
            } else {
                self.total += 1;
            }
            // Shown or no longer shown: the visible order changes (rare: impersonations only).
            self.reorder();
        } else if key_changed && reposition {
            self.reposition(i);
        }
    }

    /// The row of the impersonation of `user` through row `parent`, made (not shown until it
    /// has a session) when there is none yet.
    pub(super) fn sudo_row(&mut self, parent: usize, user: &str) -> usize {
        let base = &self.rows[parent];
        let name = ProfileId::stored_impersonation(&base.profile.name, user).to_string();
        if let Some(&i) = self.by_name.get(&name) {
            return i;
        }
        let mut row = Row::new(Arc::new(base.profile.impersonation(user)), base.order.0);
        row.order.1 = Some(user.to_string());
        row.sudo = Some((parent, user.to_string()));
        row.hidden = true;
        let i = self.rows.len();
        self.widths.add(&row);
        self.by_name.insert(name, i);
        self.search.push_str(&row.search);
        self.search_end.push(self.search.len() as u32);
        self.hits.push(0);
        self.rows.push(row);
        self.selected.push(false);
        self.sudo_rows += 1;
        i
    }

    /// Recomputes time-based states when the clock passed the next change.
    /// Recomputes time-based states when the clock passed the next change, and starts the
    /// automatic refreshes that are due. Returns whether a state changed.
    pub(super) fn advance(&mut self, now: DateTime<Utc>, cmds: &mut Vec<Command>) -> bool {
        self.clock = now;
        if self.next_change.is_none_or(|t| now < t) {
            return false;
        }
        let mut changed = false;
        let mut due = Vec::new();
        let keeps_alive = self.keeps_alive();
        let mut next: Option<DateTime<Utc>> = None;
        for (i, row) in self.rows.iter_mut().enumerate() {
            let state = RowState::of(&row.entry, row.flight.as_ref(), row.unverified, now);
            if state != row.state {
                if !row.hidden {
                    self.counts[row.state.index()] -= 1;
                    self.counts[state.index()] += 1;
                    changed = true;
                }
                row.state = state;
            }
            if !self.quitting && keeps_alive && row.auto_refresh_due(now) {
                due.push(i);
            }
            if let Some(t) = row.next_change(now) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        self.next_change = next;
        if changed && self.sort == Sort::State {
            self.reorder();
        }
        for &i in &due {
            let mut start = self.start(i, Op::Refresh, None, false);
            if let Command::Start { due, .. } = &mut start {
                *due = true;
            }
            cmds.push(start);
        }
        if !due.is_empty() {
            self.resort();
        }
        match due.as_slice() {
            [] => {}
            [i] => {
                let left = self.rows[*i].token_left(now).unwrap_or_else(|| "0s".into());
                let text = format!(
                    "{}: refreshing automatically ({left} left)",
                    self.rows[*i].name()
                );
                self.say(text);
            }
            more => self.say(format!("{} sessions refreshing automatically", more.len())),
        }
        changed || !due.is_empty()
    }

    pub(super) fn countdowns(&self, now: DateTime<Utc>) -> Vec<(Option<String>, Option<String>)> {
        let end = (self.offset + self.page()).min(self.visible.len());
        self.visible[self.offset.min(end)..end]
            .iter()
            .map(|&i| (self.rows[i].token_left(now), self.rows[i].refresh_left(now)))
            .collect()
    }

    pub(super) fn say(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
        });
    }

    pub(super) fn warn(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: true,
        });
    }
}
