//! How the screen's width is shared: which columns of the table fit, and how wide each is. The
//! view draws with these numbers, and `s` moves the sort along the columns shown.

use super::model::Model;
use super::order::Sort;
use super::row::RowState;

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

    /// The column a `columns` list names (`crate::config::COLUMN_NAMES`), if any.
    pub fn from_name(name: &str) -> Option<Column> {
        ALL_COLUMNS[1..]
            .iter()
            .copied()
            .find(|c| c.title().eq_ignore_ascii_case(name))
    }

    /// The sort by this column (the marks column has none).
    pub fn sort(self) -> Option<Sort> {
        Some(match self {
            Column::Mark => return None,
            Column::Name => Sort::Name,
            Column::Tags => Sort::Tags,
            Column::Instance => Sort::Instance,
            Column::User => Sort::User,
            Column::Platform => Sort::Platform,
            Column::State => Sort::State,
            Column::Token => Sort::TokenLeft,
            Column::Refresh => Sort::Refresh,
            Column::Last => Sort::Last,
        })
    }
}

/// Every column, in the order shown.
pub const ALL_COLUMNS: [Column; 10] = [
    Column::Mark,
    Column::Name,
    Column::Tags,
    Column::Instance,
    Column::User,
    Column::Platform,
    Column::State,
    Column::Token,
    Column::Refresh,
    Column::Last,
];

/// Columns dropped first when the screen is narrow (and the file chose none). NAME, STATE and
/// TOKEN always stay. The first three go before LAST is narrowed below what it wants; the others
/// only after. Columns the file chose (`columns`) are dropped from the end of its list instead,
/// all but NAME and STATE.
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
    let wanted = |c: Column| -> usize {
        match c {
            Column::Mark => 2,
            Column::Name => (w.name + prod_mark).clamp(6, 32),
            Column::Tags => w.tags.clamp(4, 24),
            Column::Instance => w.instance.clamp(8, 36),
            Column::User => w.user.clamp(4, 20),
            Column::Platform => w
                .platform
                .max(w.platform_warned + usize::from(w.platform_warned > 0) * mark)
                .clamp(8, 16),
            Column::State => STATE_WIDTH,
            Column::Token => TIME_WIDTH,
            Column::Refresh => refresh,
            Column::Last => LAST_WANTED,
        }
    };
    let mut cols: Vec<(Column, usize)> =
        model.column_order.iter().map(|&c| (c, wanted(c))).collect();
    // The sorted column's title carries an arrow: room for it.
    let (sort, _) = model.sort();
    if let Some(c) = cols.iter_mut().find(|c| c.0.sort() == Some(sort)) {
        c.1 = c.1.max(c.0.title().len() + 1);
    }
    let avail = usize::from(inner_width);
    let drop_while_too_wide = |cols: &mut Vec<(Column, usize)>, drops: &[Column]| {
        for drop in drops {
            if total(cols) <= avail {
                break;
            }
            cols.retain(|c| c.0 != *drop);
        }
    };
    if model.columns_chosen {
        fit_chosen(model, &mut cols, avail);
        return finish(cols, avail, true);
    }
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
        let needed = state_needed(model);
        if let Some(c) = cols.iter_mut().find(|c| c.0 == Column::State) {
            c.1 = c.1.saturating_sub(over).max(needed);
        }
    }
    drop_while_too_wide(&mut cols, essential);
    finish(cols, avail, false)
}

/// The width of the columns with the spaces between them.
fn total(cols: &[(Column, usize)]) -> usize {
    cols.iter().map(|c| c.1).sum::<usize>() + cols.len().saturating_sub(1)
}

/// The widest state any row is in now, as its column shows it.
fn state_needed(model: &Model) -> usize {
    let ascii = model.options().ascii;
    RowState::ALL
        .iter()
        .filter(|s| model.count(**s) > 0)
        .map(|s| s.symbol(ascii).chars().count() + 1 + s.word().len())
        .max()
        .unwrap_or(STATE_WIDTH)
}

/// Columns the file chose: LAST narrowed first, then the chosen columns dropped from the end of
/// the list (never NAME or STATE), then STATE down to the widest state shown.
fn fit_chosen(model: &Model, cols: &mut Vec<(Column, usize)>, avail: usize) {
    let over = total(cols).saturating_sub(avail);
    if let Some(c) = cols.iter_mut().find(|c| c.0 == Column::Last) {
        c.1 = c.1.saturating_sub(over).max(LAST_MIN);
    }
    while total(cols) > avail {
        let Some(k) = cols
            .iter()
            .rposition(|c| !matches!(c.0, Column::Mark | Column::Name | Column::State))
        else {
            break;
        };
        cols.remove(k);
    }
    let over = total(cols).saturating_sub(avail);
    if over > 0 {
        let needed = state_needed(model);
        if let Some(c) = cols.iter_mut().find(|c| c.0 == Column::State) {
            c.1 = c.1.saturating_sub(over).max(needed);
        }
    }
}

/// Still too wide: narrow the name, then the state (its symbol stays first); room left goes to
/// LAST (else to NAME). Of chosen columns, only a LAST at the end of the list takes it: the
/// others keep their places and widths.
fn finish(mut cols: Vec<(Column, usize)>, avail: usize, chosen: bool) -> Vec<(Column, u16)> {
    for col in [Column::Name, Column::State] {
        let over = total(&cols).saturating_sub(avail);
        if let Some(c) = cols.iter_mut().find(|c| c.0 == col) {
            c.1 = c.1.saturating_sub(over).max(4);
        }
    }
    let spare = avail.saturating_sub(total(&cols));
    if chosen {
        if let Some(c) = cols.last_mut().filter(|c| c.0 == Column::Last) {
            c.1 += spare;
        }
    } else if let Some(c) = cols.iter_mut().find(|c| c.0 == Column::Last) {
        c.1 += spare;
    } else if let Some(c) = cols.iter_mut().find(|c| c.0 == Column::Name) {
        c.1 += spare.min(LAST_WANTED);
    }
    cols.into_iter()
        .map(|(c, w)| (c, u16::try_from(w).unwrap_or(u16::MAX)))
        .collect()
}

impl Model {
    /// The columns the table shows now.
    pub fn shown_columns(&self) -> Vec<(Column, u16)> {
        // The table's borders take a column on each side.
        columns(self, self.size.0.saturating_sub(2))
    }

    /// The sort after this one for `s`: the next column shown after the sorted one, and after
    /// the last, file order again.
    pub(super) fn next_sort(&self) -> Sort {
        let shown: Vec<Column> = self.shown_columns().into_iter().map(|c| c.0).collect();
        // Where the sorted column is (or would be, when it is not shown): the next shown one.
        let from = self
            .column_order
            .iter()
            .position(|c| c.sort() == Some(self.sort))
            .map_or(0, |p| p + 1);
        self.column_order[from..]
            .iter()
            .filter(|c| shown.contains(c))
            .find_map(|c| c.sort())
            .unwrap_or(Sort::File)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_a_columns_list_may_use_is_a_column_in_the_default_order() {
        let named: Vec<Column> = crate::config::COLUMN_NAMES
            .iter()
            .map(|n| Column::from_name(n).unwrap_or_else(|| panic!("{n}")))
            .collect();
        assert_eq!(named, ALL_COLUMNS[1..]);
        assert_eq!(Column::from_name(""), None);
    }
}
