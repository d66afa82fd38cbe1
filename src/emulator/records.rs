//! An instance's records and Sugar's list API over them.
//!
//! Accounts and Contacts are generated from the instance's name (the same every run, a few hundred of
//! each by default; see [`InstanceConfig::accounts`](super::InstanceConfig::accounts)); the other
//! modules of `full_module_list` exist and are empty. Routes (after the REST root, each needing a valid
//! access token): `GET {module}`, `GET|POST {module}/filter` (the list), `GET {module}/count`, `GET|POST
//! {module}/filter/count` (`{"record_count": N}`), `GET {module}/{id}` (one record).
//!
//! As Sugar's FilterApi does:
//! - `max_num`: default 20; below 1 or above 1000 means 1000. `offset`: default 0; `end` is past the
//!   last record. `next_offset` is the offset of the next page, -1 when nothing follows.
//! - Order: `date_modified` descending, or `order_by` (`name:asc,date_modified:desc`).
//! - `fields` (comma-separated): only those, with `id`, `date_modified` and `_module`.
//! - `filter`: an array of definitions, AND-ed; in a query string as JSON text or PHP brackets
//!   (`filter[0][name][$starts]=A`). A definition maps fields to a value (`$equals`) or to operators
//!   (`$equals`, `$not_equals`, `$starts`, `$ends`, `$contains`, `$not_contains`, `$in`, `$not_in`,
//!   `$empty`, `$not_empty`, `$is_null`, `$not_null`, `$lt`, `$lte`, `$gt`, `$gte`), or `$or` / `$and`
//!   to a nested array. Text compares regardless of ASCII case, as MySQL's default collation does;
//!   `email` matches any of a contact's addresses.
//! - Errors: 422 `invalid_parameter` ("Unknown field x", "Did not recognize the operand: $x",
//!   "Unexpected filter type string.", ...); 404 `not_found` for an unknown module or record.

use super::dataset;
use super::json::J;
use super::state::{ApiError, Args};
use serde_json::Value;
use std::cmp::Ordering;

/// The modules of `metadata?type_filter=full_module_list`; all but Accounts and Contacts are empty.
pub(crate) const MODULES: [&str; 17] = [
    "Accounts",
    "Bugs",
    "Calls",
    "Campaigns",
    "Cases",
    "Contacts",
    "Documents",
    "Emails",
    "Leads",
    "Meetings",
    "Notes",
    "Opportunities",
    "Project",
    "ProjectTask",
    "Prospects",
    "Quotes",
    "Tasks",
];

const DEFAULT_MAX_NUM: i64 = 20;
/// Sugar's `max_list_limit` here (the metadata's `maxRecordFetchSize`).
pub(crate) const MAX_NUM: i64 = 1000;

const COMMON_FIELDS: &[&str] = &["id", "name", "date_entered", "date_modified"];
const ACCOUNT_FIELDS: &[&str] = &[
    "id",
    "name",
    "date_entered",
    "date_modified",
    "account_type",
    "industry",
    "phone_office",
    "website",
    "billing_address_city",
    "billing_address_country",
];
const CONTACT_FIELDS: &[&str] = &[
    "id",
    "name",
    "first_name",
    "last_name",
    "date_entered",
    "date_modified",
    "title",
    "phone_work",
    "email",
    "email1",
    "account_id",
    "account_name",
    "primary_address_city",
];

/// A field's values as filters see them, lower-cased: its text, or a contact's email addresses.
fn texts(record: &J, key: &str) -> Vec<String> {
    match record.get(key) {
        Some(J::Str(s)) => vec![s.to_lowercase()],
        Some(J::Int(n)) => vec![n.to_string()],
        Some(J::Arr(items)) => items
            .iter()
            .filter_map(|item| match item.get("email_address") {
                Some(J::Str(s)) => Some(s.to_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Generated records, newest `date_modified` first.
pub(crate) struct Records {
    accounts: Vec<J>,
    contacts: Vec<J>,
}

impl Records {
    pub(crate) fn generate(instance: &str, accounts: usize, contacts: usize) -> Records {
        let (accounts, contacts) = dataset::generate(instance, accounts, contacts);
        Records { accounts, contacts }
    }

    fn module(&self, module: &str) -> Result<(&[J], &'static [&'static str]), ApiError> {
        match module {
            "Accounts" => Ok((&self.accounts, ACCOUNT_FIELDS)),
            "Contacts" => Ok((&self.contacts, CONTACT_FIELDS)),
            m if MODULES.contains(&m) => Ok((&[], COMMON_FIELDS)),
            _ => Err(ApiError::new(
                404,
                "not_found",
                format!("Could not find module: {module}"),
            )),
        }
    }

    /// The records of `module` that pass the request's `filter`, in the request's order.
    fn select(&self, module: &str, args: &Args) -> Result<Vec<&J>, ApiError> {
        let (records, fields) = self.module(module)?;
        let cond = match filter_arg(args)? {
            Some(defs) => compile(&defs, Mode::And, fields)?,
            None => Cond::Group(Mode::And, Vec::new()),
        };
        let order = order_by(args, fields)?;
        let mut selected: Vec<&J> = records.iter().filter(|r| cond.matches(r)).collect();
        if !order.is_empty() {
            selected.sort_by(|a, b| {
                order
                    .iter()
                    .map(|(key, descending)| {
                        let ordering = texts(a, key).cmp(&texts(b, key));
                        if *descending {
                            ordering.reverse()
                        } else {
                            ordering
                        }
                    })
                    .find(|o| *o != Ordering::Equal)
                    .unwrap_or(Ordering::Equal)
            });
        }
        Ok(selected)
    }

    /// `GET {module}`, `GET|POST {module}/filter`: `{"next_offset": N, "records": [...]}`.
    pub(crate) fn list(&self, module: &str, args: &Args) -> Result<J, ApiError> {
        let selected = self.select(module, args)?;
        let limit = match args.non_empty("max_num") {
            None => DEFAULT_MAX_NUM,
            Some(text) => match php_int(&text) {
                n if !(1..=MAX_NUM).contains(&n) => MAX_NUM,
                n => n,
            },
        } as usize;
        let offset = match args.non_empty("offset") {
            Some(text) if text == "end" => selected.len(),
            Some(text) => php_int(&text).max(0) as usize,
            None => 0,
        };
        let page: Vec<J> = selected
            .iter()
            .skip(offset)
            .take(limit)
            .map(|r| only_fields(r, args))
            .collect();
        let next_offset = if selected.len() > offset.saturating_add(limit) {
            (offset + limit) as i64
        } else {
            -1
        };
        Ok(J::obj([
            ("next_offset", J::Int(next_offset)),
            ("records", J::Arr(page)),
        ]))
    }

    /// `GET {module}/count`, `GET|POST {module}/filter/count`: `{"record_count": N}`.
    pub(crate) fn count(&self, module: &str, args: &Args) -> Result<J, ApiError> {
        let n = self.select(module, args)?.len();
        Ok(J::obj([("record_count", J::Int(n as i64))]))
    }

    /// `GET {module}/{id}`.
    pub(crate) fn record(&self, module: &str, id: &str, args: &Args) -> Result<J, ApiError> {
        let (records, _) = self.module(module)?;
        records
            .iter()
            .find(|r| matches!(r.get("id"), Some(J::Str(s)) if s == id))
            .map(|r| only_fields(r, args))
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "not_found",
                    format!("Could not find record: {id} in module: {module}"),
                )
            })
    }
}

/// `metadata?type_filter=full_module_list`: every module by name, and the list's own `_hash`.
pub(crate) fn full_module_list() -> J {
    let mut pairs: Vec<(String, J)> = MODULES.iter().map(|m| (m.to_string(), J::s(*m))).collect();
    pairs.push((
        "_hash".to_string(),
        J::s(dataset::fnv_hex(&MODULES.join(","))),
    ));
    J::Obj(pairs)
}

/// PHP's `(int)` of a string: optional sign and leading digits, else 0.
fn php_int(text: &str) -> i64 {
    let text = text.trim_start();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse::<i64>().map_or(0, |n| sign * n)
}

/// `fields=a,b`: those fields with `id`, `date_modified` and `_module`; the whole record without it.
fn only_fields(record: &J, args: &Args) -> J {
    let wanted: Vec<String> = match args.value("fields") {
        Some(Value::String(s)) if !s.is_empty() => {
            s.split(',').map(|f| f.trim().to_string()).collect()
        }
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => return record.clone(),
    };
    match record {
        J::Obj(pairs) => J::Obj(
            pairs
                .iter()
                .filter(|(k, _)| {
                    ["id", "date_modified", "_module"].contains(&k.as_str())
                        || wanted.iter().any(|w| w == k)
                })
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `order_by=name:asc,date_modified:desc`; empty for the generated order (`date_modified` descending).
fn order_by(args: &Args, fields: &[&str]) -> Result<Vec<(String, bool)>, ApiError> {
    let Some(text) = args.non_empty("order_by") else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(|part| {
            let (key, direction) = part.split_once(':').unwrap_or((part, "asc"));
            let key = key.trim();
            if !fields.contains(&key) {
                return Err(invalid(format!("Unknown field {key}")));
            }
            Ok((
                key.to_string(),
                direction.trim().eq_ignore_ascii_case("desc"),
            ))
        })
        .collect()
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(422, "invalid_parameter", message)
}

/// PHP's `gettype`, for Sugar's "Unexpected filter type" message.
fn php_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NULL",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "double",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) | Value::Object(_) => "array",
    }
}

/// The request's `filter`: a JSON array (body), or JSON text or PHP brackets (query); `""` is none.
fn filter_arg(args: &Args) -> Result<Option<Value>, ApiError> {
    let value = match args.value("filter") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(other) => other.clone(),
    };
    match value {
        Value::Array(_) | Value::Object(_) => Ok(Some(value)),
        other => Err(invalid(format!(
            "Unexpected filter type {}.",
            php_type(&other)
        ))),
    }
}

/// A PHP array's members: a JSON array's items, or an object's values (`filter[0]`, `filter[1]`...).
fn members(value: &Value) -> Option<Vec<(String, &Value)>> {
    match value {
        Value::Array(items) => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
        ),
        Value::Object(map) => Some(map.iter().map(|(k, v)| (k.clone(), v)).collect()),
        _ => None,
    }
}

/// A scalar operand as PHP would compare it, lower-cased.
fn operand(value: &Value) -> String {
    match value {
        Value::String(s) => s.to_lowercase(),
        Value::Bool(true) => "1".into(),
        Value::Bool(false) | Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    And,
    Or,
}

#[derive(Debug)]
enum Cond {
    Group(Mode, Vec<Cond>),
    /// Field, operator, operands (lower-cased).
    Field(String, &'static str, Vec<String>),
}

const OPERATORS: &[&str] = &[
    "$equals",
    "$not_equals",
    "$starts",
    "$ends",
    "$contains",
    "$not_contains",
    "$in",
    "$not_in",
    "$empty",
    "$not_empty",
    "$is_null",
    "$not_null",
    "$lt",
    "$lte",
    "$gt",
    "$gte",
];

/// Filter definitions, combined by `mode` as Sugar adds them to one `where` (AND) or `queryOr()`.
fn compile(defs: &Value, mode: Mode, fields: &[&str]) -> Result<Cond, ApiError> {
    let Some(defs) = members(defs) else {
        return Err(invalid(format!(
            "Did not recognize the definition: {}",
            operand(defs)
        )));
    };
    let mut conds = Vec::new();
    for (_, def) in defs {
        let Some(parts) = members(def) else {
            return Err(invalid(format!(
                "Did not recognize the definition: {}",
                operand(def)
            )));
        };
        for (key, filter) in parts {
            match key.as_str() {
                "$or" => conds.push(compile(filter, Mode::Or, fields)?),
                "$and" => conds.push(compile(filter, Mode::And, fields)?),
                _ if !fields.contains(&key.as_str()) => {
                    return Err(invalid(format!("Unknown field {key}")));
                }
                _ => match members(filter) {
                    None => conds.push(Cond::Field(key.clone(), "$equals", vec![operand(filter)])),
                    Some(ops) => {
                        for (op, value) in ops {
                            conds.push(field_cond(&key, &op, value)?);
                        }
                    }
                },
            }
        }
    }
    Ok(Cond::Group(mode, conds))
}

fn field_cond(key: &str, op: &str, value: &Value) -> Result<Cond, ApiError> {
    let Some(op) = OPERATORS.iter().copied().find(|o| *o == op) else {
        return Err(invalid(format!("Did not recognize the operand: {op}")));
    };
    let operands = match (op, members(value)) {
        ("$in" | "$not_in", Some(items)) => items.into_iter().map(|(_, v)| operand(v)).collect(),
        ("$in" | "$not_in", None) => return Err(invalid(format!("{op} requires an array"))),
        _ => vec![operand(value)],
    };
    Ok(Cond::Field(key.to_string(), op, operands))
}

impl Cond {
    fn matches(&self, record: &J) -> bool {
        match self {
            Cond::Group(Mode::And, conds) => conds.iter().all(|c| c.matches(record)),
            Cond::Group(Mode::Or, conds) => {
                conds.is_empty() || conds.iter().any(|c| c.matches(record))
            }
            Cond::Field(key, op, operands) => {
                let values = texts(record, key);
                let first = operands.first().map(String::as_str).unwrap_or("");
                let any = |test: &dyn Fn(&str) -> bool| values.iter().any(|v| test(v));
                match *op {
                    "$equals" => any(&|v| v == first),
                    "$not_equals" => !any(&|v| v == first),
                    "$starts" => any(&|v| v.starts_with(first)),
                    "$ends" => any(&|v| v.ends_with(first)),
                    "$contains" => any(&|v| v.contains(first)),
                    "$not_contains" => !any(&|v| v.contains(first)),
                    "$in" => any(&|v| operands.iter().any(|o| o == v)),
                    "$not_in" => !any(&|v| operands.iter().any(|o| o == v)),
                    "$empty" | "$is_null" => !any(&|v| !v.is_empty()),
                    "$not_empty" | "$not_null" => any(&|v| !v.is_empty()),
                    "$lt" => any(&|v| v < first),
                    "$lte" => any(&|v| v <= first),
                    "$gt" => any(&|v| v > first),
                    "$gte" => any(&|v| v >= first),
                    _ => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_records_are_deterministic_and_newest_first() {
        let a = Records::generate("acme", 50, 80);
        let b = Records::generate("acme", 50, 80);
        assert_eq!(a.accounts, b.accounts);
        assert_eq!(a.contacts, b.contacts);
        assert_ne!(a.accounts, Records::generate("globex", 50, 80).accounts);
        let modified: Vec<Vec<String>> = a
            .accounts
            .iter()
            .map(|r| texts(r, "date_modified"))
            .collect();
        assert!(modified.windows(2).all(|w| w[0] > w[1]));
        let id = texts(&a.accounts[0], "id").remove(0);
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        // Every contact belongs to one of the instance's accounts.
        for contact in &a.contacts {
            let account = texts(contact, "account_id");
            assert!(a.accounts.iter().any(|r| texts(r, "id") == account));
        }
    }

    #[test]
    fn php_ints() {
        assert_eq!(php_int("42"), 42);
        assert_eq!(php_int(" 7abc"), 7);
        assert_eq!(php_int("-3"), -3);
        assert_eq!(php_int("abc"), 0);
    }
}
