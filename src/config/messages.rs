//! The wording of messages: unknown keys with suggestions, types, key paths and values as shown.

use super::schema::{COLUMN_NAMES, TOP_LEVEL_KEYS, Table, keys_allowed_in, spec};
use toml::de::DeValue;

// ---------------------------------------------------------------------------------------------
// Messages.
// ---------------------------------------------------------------------------------------------

pub(super) fn unknown_top_level_key(name: &str) -> String {
    let allowed = TOP_LEVEL_KEYS.join(", ");
    if spec(name).is_some() {
        return format!(
            "`{}` cannot be set at the top level: profile keys go in a [profiles.NAME] table, \
             shared ones in [defaults]; allowed keys here: {allowed}",
            shown(name)
        );
    }
    format!(
        "unknown key `{}`{}; allowed keys: {allowed}",
        shown(name),
        did_you_mean(name, TOP_LEVEL_KEYS)
    )
}

pub(super) fn unknown_key(name: &str, table: Table) -> String {
    let allowed = keys_allowed_in(table);
    match (spec(name), table) {
        (Some(_), Table::Defaults) => {
            format!("`{name}` cannot be set in [defaults]: each profile sets its own")
        }
        (Some(_), Table::Profile) => {
            format!("`{name}` can only be set in [defaults]: it applies to the whole file")
        }
        (None, _) if name == "include" => "`include` goes at the top of the file, before any \
             [table] (TOML puts a key written after a table header in that table)"
            .to_string(),
        (None, _) => format!(
            "unknown key `{}`{}; allowed keys: {}",
            shown(name),
            did_you_mean(name, &allowed),
            allowed.join(", ")
        ),
    }
}

/// An unknown name in a `columns` list, with the closest known one and every allowed name.
pub(super) fn unknown_column(name: &str) -> String {
    format!(
        "unknown column `{}`{}; allowed columns: {}",
        shown(name),
        did_you_mean(name, COLUMN_NAMES),
        COLUMN_NAMES.join(", ")
    )
}

/// ` (did you mean `x`?)` when a known key is close to `name`, else nothing.
fn did_you_mean(name: &str, known: &[&str]) -> String {
    match closest(name, known) {
        Some(k) => format!(" (did you mean `{k}`?)"),
        None => String::new(),
    }
}

/// The known key closest to a mistyped one: a small edit distance (ignoring case), else the only
/// key that one of them begins with (`user` for `username`).
pub(super) fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = name.to_lowercase();
    let best = known
        .iter()
        .map(|k| (edit_distance(&lower, k), *k))
        .filter(|(d, k)| *d <= (k.chars().count() / 4).max(1))
        .min_by_key(|(d, _)| *d);
    if let Some((_, k)) = best {
        return Some(k);
    }
    if lower.chars().count() < 3 {
        return None;
    }
    let mut prefixed = known
        .iter()
        .filter(|k| k.starts_with(&lower) || lower.starts_with(**k));
    match (prefixed.next(), prefixed.next()) {
        (Some(k), None) => Some(k),
        _ => None,
    }
}

/// Up to `max` known names close to a mistyped one, closest first: a small edit distance
/// (ignoring case), then names that it begins or that begin with it (at 3 characters or more).
pub(super) fn close<'k>(name: &str, known: &[&'k str], max: usize) -> Vec<&'k str> {
    let lower = name.to_lowercase();
    let mut near: Vec<(usize, &'k str)> = known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= (k.chars().count() / 4).max(1))
        .collect();
    near.sort_by_key(|(d, _)| *d);
    let mut out: Vec<&'k str> = near.into_iter().map(|(_, k)| k).collect();
    if lower.chars().count() >= 3 {
        for k in known {
            let k_lower = k.to_lowercase();
            if (k_lower.starts_with(&lower) || lower.starts_with(&k_lower)) && !out.contains(k) {
                out.push(k);
            }
        }
    }
    out.truncate(max);
    out
}

/// Edit distance in characters, a swap of two neighbours counting as one edit (optimal string
/// alignment): `shrot` is one edit from `short`, as a person sees it.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the table.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// `a`, `a and b`, `a, b and c`.
pub(super) fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

pub(super) fn a_type(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// One segment of a dotted key path, as it would be written in TOML: bare when it can be,
/// else quoted (`profiles."acme prod"`).
pub(super) fn key_segment(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A (non-secret) value for a message: control characters escaped, long text cut.
pub(super) fn shown(text: &str) -> String {
    const MAX: usize = 60;
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let profile = keys_allowed_in(Table::Profile);
        assert_eq!(closest("usernme", &profile), Some("username"));
        assert_eq!(closest("USERNAME", &profile), Some("username"));
        assert_eq!(closest("user", &profile), Some("username"));
        assert_eq!(closest("password-env", &profile), Some("password_env"));
        assert_eq!(closest("timeout", &profile), Some("timeout_s"));
        assert_eq!(closest("tag", &profile), Some("tags"));
        assert_eq!(closest("passwd", &profile), Some("password"));
        assert_eq!(closest("allowhttp", &profile), Some("allow_http"));
        assert_eq!(closest("colour", &profile), None);
        // Ambiguous prefixes suggest nothing.
        assert_eq!(closest("client", &profile), None);
        assert_eq!(closest("profile", TOP_LEVEL_KEYS), Some("profiles"));
        assert_eq!(closest("default", TOP_LEVEL_KEYS), Some("defaults"));
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("usernme", "username"), 1);
        assert_eq!(edit_distance("é", "e"), 1);
    }

    #[test]
    fn a_swap_of_neighbours_is_one_edit() {
        assert_eq!(edit_distance("shrot", "short"), 1);
        assert_eq!(edit_distance("usernmae", "username"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(
            close("acme", &["acme-prod", "globex", "acme-admin"], 3),
            ["acme-prod", "acme-admin"]
        );
    }

    #[test]
    fn key_segments_are_written_as_in_toml() {
        assert_eq!(key_segment("acme-prod_2"), "acme-prod_2");
        assert_eq!(key_segment("acme.prod"), "\"acme.prod\"");
        assert_eq!(key_segment(""), "\"\"");
        assert_eq!(key_segment("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }

    #[test]
    fn join_lists() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(join_and(&s(&["a"])), "a");
        assert_eq!(join_and(&s(&["a", "b"])), "a and b");
        assert_eq!(join_and(&s(&["a", "b", "c"])), "a, b and c");
    }

    #[test]
    fn shown_values_are_escaped_and_cut() {
        assert_eq!(shown("a\tb"), "a\\tb");
        assert_eq!(shown(&"x".repeat(61)), format!("{}…", "x".repeat(60)));
    }
}
