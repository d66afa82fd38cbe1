//! The visible order: the filter (narrowed and widened keystroke by keystroke), the sort, the
//! cursor and the scroll offset.

use super::model::Model;
use super::row::Row;
use std::cmp::Ordering;

/// The sort of the table: file order, or by a column (`s` moves along the columns shown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    File,
    Name,
    Tags,
    Instance,
    User,
    Platform,
    /// What needs attention first.
    State,
    /// Access token time left, shortest first (no session last).
    TokenLeft,
    /// Until a login is needed (refresh token or hard end), soonest first (none last).
    Refresh,
    /// The last result: failures first, then withdrawn, then successes, then none.
    Last,
}

impl Sort {
    pub fn words(self) -> &'static str {
        match self {
            Sort::File => "file order",
            Sort::Name => "name",
            Sort::Tags => "tags",
            Sort::Instance => "instance",
            Sort::User => "user",
            Sort::Platform => "platform",
            Sort::State => "state",
            Sort::TokenLeft => "token time left",
            Sort::Refresh => "refresh time left",
            Sort::Last => "last result",
        }
    }

    /// The order changes when rows change (results, the cache, time), not only when the sort does.
    pub(super) fn follows_rows(self) -> bool {
        matches!(
            self,
            Sort::State | Sort::TokenLeft | Sort::Refresh | Sort::Last
        )
    }
}

/// What one filter keystroke changed.
#[derive(Debug)]
pub(super) struct Narrowed {
    /// The filter before the keystroke (lower-cased).
    filter: String,
    /// The rows it hid: their place among the rows shown before, the row, and its `hits` entry.
    hidden: Vec<(usize, usize, u32)>,
    /// Rows still shown whose first match moved, with their `hits` entry before.
    moved: Vec<(usize, u32)>,
    /// `hits` held the matches of `filter` before the keystroke.
    known: bool,
}

/// A text column's sort key: its lower-case text, empty ones last.
fn text_key(sort: Sort, row: &Row) -> (bool, String) {
    let p = &row.profile;
    let text = match sort {
        Sort::Tags => p.tags.join(" "),
        Sort::Instance => row.instance.clone(),
        Sort::User => p.username.clone(),
        Sort::Platform => p.platform.clone(),
        _ => p.name.clone(),
    };
    (text.is_empty(), text.to_lowercase())
}

/// Row `i`'s filter text in `Model::search`.
fn search_text<'a>(search: &'a str, ends: &[u32], i: usize) -> &'a str {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &search[start..ends[i] as usize]
}

impl Model {
    /// The sort in words: `sorted by token time left, ascending`, `file order, reversed`.
    pub fn sort_words(&self) -> String {
        match (self.sort, self.reverse) {
            (Sort::File, false) => "file order".into(),
            (Sort::File, true) => "file order, reversed".into(),
            (sort, false) => format!("sorted by {}, ascending", sort.words()),
            (sort, true) => format!("sorted by {}, descending", sort.words()),
        }
    }

    /// Moves one row to its place in the sorted visible order, keeping the cursor on its row.
    pub(super) fn reposition(&mut self, i: usize) {
        let Some(from) = self.visible.iter().position(|&v| v == i) else {
            return;
        };
        // The rows shown before earlier filter keystrokes are in the old order.
        self.undo.clear();
        let cursor_row = self.visible.get(self.cursor).copied();
        self.visible.remove(from);
        let to = self
            .visible
            .partition_point(|&v| self.cmp_rows(v, i) == Ordering::Less);
        self.visible.insert(to, i);
        if let Some(c) = cursor_row {
            self.cursor = if c == i {
                to
            } else {
                let mut pos = self.cursor;
                if from < pos {
                    pos -= 1;
                }
                if to <= pos {
                    pos += 1;
                }
                pos
            };
        }
        self.scroll_to_cursor();
    }

    fn cmp_rows(&self, a: usize, b: usize) -> Ordering {
        let (ra, rb) = (&self.rows[a], &self.rows[b]);
        let by = match self.sort {
            Sort::File => ra.order.cmp(&rb.order),
            Sort::Name => {
                let lower = |r: &'_ Row| {
                    r.profile
                        .name
                        .bytes()
                        .map(|b| b.to_ascii_lowercase())
                        .collect::<Vec<_>>()
                };
                lower(ra).cmp(&lower(rb))
            }
            Sort::Tags | Sort::Instance | Sort::User | Sort::Platform => {
                text_key(self.sort, ra).cmp(&text_key(self.sort, rb))
            }
            Sort::State => ra.state.rank().cmp(&rb.state.rank()),
            Sort::TokenLeft => ra.token_key().cmp(&rb.token_key()),
            Sort::Refresh => ra.refresh_key().cmp(&rb.refresh_key()),
            Sort::Last => ra.last_key().cmp(&rb.last_key()),
        };
        let o = by.then(a.cmp(&b));
        if self.reverse { o.reverse() } else { o }
    }

    /// Recomputes the visible order from scratch: filter, then sort. Keeps the cursor on its row.
    pub(super) fn reorder(&mut self) {
        let cursor_row = self.visible.get(self.cursor).copied();
        let needle = self.filter.to_lowercase();
        self.undo.clear();
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        let (rows, search, ends, hits) =
            (&self.rows, &self.search, &self.search_end, &mut self.hits);
        let mut visible: Vec<usize> = if needle.is_empty() && self.sudo_rows == 0 {
            (0..rows.len()).collect()
        } else {
            (0..rows.len())
                .filter(|&i| {
                    // Only impersonations hide (and looking costs a visit to every row).
                    (self.sudo_rows == 0 || !rows[i].hidden)
                        && finder
                            .find(search_text(search, ends, i).as_bytes())
                            .map(|at| hits[i] = at as u32)
                            .is_some()
                })
                .collect()
        };
        self.hits_for = Some(needle);
        if self.sort == Sort::Name {
            // Compare each name's lower-case form once, not per comparison.
            let reverse = self.reverse;
            visible.sort_by_cached_key(|&i| (self.rows[i].profile.name.to_ascii_lowercase(), i));
            if reverse {
                visible.reverse();
            }
        } else if matches!(
            self.sort,
            Sort::Tags | Sort::Instance | Sort::User | Sort::Platform
        ) {
            let (sort, reverse) = (self.sort, self.reverse);
            visible.sort_by_cached_key(|&i| (text_key(sort, &self.rows[i]), i));
            if reverse {
                visible.reverse();
            }
        } else if self.sort != Sort::File || self.reverse || self.sudo_rows > 0 {
            visible.sort_by(|&a, &b| self.cmp_rows(a, b));
        }
        self.visible = visible;
        self.follow(cursor_row);
    }

    /// Keeps the shown rows whose filter text contains `needle`, which is `old` (the filter before
    /// this keystroke) with text appended: that can only narrow the result. A row's first match
    /// of `needle` is at or after its first match of `old`, and usually right there.
    pub(super) fn narrow(&mut self, old: &str, needle: &str) {
        let known = needle.starts_with(old) && self.hits_for.as_deref() == Some(old);
        let mut undo = Narrowed {
            filter: old.to_string(),
            hidden: Vec::new(),
            moved: Vec::new(),
            known,
        };
        let mut place = 0;
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        // Where `old` matched, `needle` matches too if what was typed follows (usually one byte).
        let added = &needle.as_bytes()[old.len().min(needle.len())..];
        let (search, ends, hits) = (&self.search, &self.search_end, &mut self.hits);
        self.visible.retain(|&i| {
            let (at_place, before) = (place, hits[i]);
            place += 1;
            let text = search_text(search, ends, i).as_bytes();
            let from = if known && !old.is_empty() {
                hits[i] as usize
            } else {
                0
            };
            let rest = &text[from..];
            let extends = match added {
                [b] if known => rest.get(old.len()) == Some(b),
                _ => rest.starts_with(needle.as_bytes()),
            };
            let found = if extends {
                Some(from)
            } else {
                finder.find(rest).map(|at| from + at)
            };
            match found {
                Some(at) => {
                    if known && at as u32 != before {
                        undo.moved.push((i, before));
                    }
                    hits[i] = at as u32;
                    true
                }
                None => {
                    undo.hidden.push((at_place, i, before));
                    false
                }
            }
        });
        self.undo.push(undo);
        self.hits_for = Some(needle.to_string());
    }

    /// After a character was taken off the filter: what the table showed before that character
    /// was typed, when nothing else changed since; else filters again.
    pub(super) fn widen(&mut self) {
        let needle = self.filter.to_lowercase();
        match self.undo.pop() {
            Some(undo) if undo.filter == needle => {
                let cursor_row = self.visible.get(self.cursor).copied();
                let mut shown = std::mem::take(&mut self.visible).into_iter();
                let mut visible = Vec::with_capacity(shown.len() + undo.hidden.len());
                for &(place, i, at) in &undo.hidden {
                    while visible.len() < place {
                        match shown.next() {
                            Some(v) => visible.push(v),
                            None => break,
                        }
                    }
                    visible.push(i);
                    self.hits[i] = at;
                }
                visible.extend(shown);
                for &(i, at) in &undo.moved {
                    self.hits[i] = at;
                }
                self.hits_for = undo.known.then_some(needle);
                self.visible = visible;
                self.follow(cursor_row);
            }
            _ => self.reorder(),
        }
    }

    /// Puts the cursor back on `row` if it is shown, else keeps the position within bounds.
    pub(super) fn follow(&mut self, row: Option<usize>) {
        if let Some(pos) = row.and_then(|r| self.visible.iter().position(|&v| v == r)) {
            self.cursor = pos;
        }
        self.cursor = self.cursor.min(self.visible.len().saturating_sub(1));
        self.scroll_to_cursor();
        self.dirty = true;
    }

    pub(super) fn page(&self) -> usize {
        self.layout().table_rows().max(1)
    }

    pub(super) fn scroll_to_cursor(&mut self) {
        let page = self.page();
        if self.cursor < self.offset {
            self.offset = self.cursor;
        } else if self.cursor >= self.offset + page {
            self.offset = self.cursor + 1 - page;
        }
        self.offset = self.offset.min(self.visible.len().saturating_sub(page));
    }

    pub(super) fn move_to(&mut self, pos: usize) {
        let pos = pos.min(self.visible.len().saturating_sub(1));
        if pos != self.cursor {
            self.cursor = pos;
            self.scroll_to_cursor();
        }
    }

    /// After rows changed without repositioning: sorts again when the sort depends on them.
    pub(super) fn resort(&mut self) {
        if self.sort.follows_rows() {
            self.reorder();
        }
    }
}
