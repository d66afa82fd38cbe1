//! Instants in the token cache: RFC 3339 text, read by chrono's dedicated RFC 3339 parser.
//!
//! chrono's own `Deserialize` goes through its generic format-item parser, which was a tenth of
//! reading a cache of 1,000 sessions; this reads the same texts (anything else RFC 3339-like
//! that chrono's `FromStr` accepts is still accepted, on a slower path). Writing is chrono's.
//! Pure: no I/O, no clock.

use chrono::{DateTime, Utc};
use serde::Deserializer;
use serde::de::{self, Visitor};
use std::fmt;

/// An instant from its text: RFC 3339 first, then whatever chrono's `FromStr` takes.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| text.parse().ok())
}

struct InstantVisitor;

impl Visitor<'_> for InstantVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an RFC 3339 date and time")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

struct OptionVisitor;

impl<'de> Visitor<'de> for OptionVisitor {
    type Value = Option<DateTime<Utc>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an RFC 3339 date and time, or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(InstantVisitor).map(Some)
    }
}

/// For `#[serde(deserialize_with = "crate::time_serde::instant")]`.
pub fn instant<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    d.deserialize_str(InstantVisitor)
}

/// For `#[serde(default, deserialize_with = "crate::time_serde::optional")]`.
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    d.deserialize_option(OptionVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct T {
        #[serde(deserialize_with = "instant")]
        a: DateTime<Utc>,
        #[serde(default, deserialize_with = "optional")]
        b: Option<DateTime<Utc>>,
    }

    #[test]
    fn reads_what_chrono_reads() {
        for text in [
            "2026-12-01T13:10:20Z",
            "2026-12-01T13:10:20.123456789Z",
            "2026-12-01T15:10:20+02:00",
            "2026-12-01 13:10:20Z",
            "2026-12-01t13:10:20z",
        ] {
            let ours = parse(text).unwrap_or_else(|| panic!("{text}"));
            let chrono: DateTime<Utc> = text.parse().unwrap();
            assert_eq!(ours, chrono, "{text}");
        }
        assert!(parse("yesterday").is_none());
        assert!(parse("2026-13-01T00:00:00Z").is_none());
    }

    #[test]
    fn fields_absent_null_and_wrong() {
        let t: T = serde_json::from_str(r#"{"a":"2026-12-01T13:10:20Z"}"#).unwrap();
        assert_eq!((t.a, t.b), (parse("2026-12-01T13:10:20Z").unwrap(), None));
        let t: T = serde_json::from_str(r#"{"a":"2026-12-01T13:10:20Z","b":null}"#).unwrap();
        assert_eq!(t.b, None);
        let t: T =
            serde_json::from_str(r#"{"a":"2026-12-01T13:10:20Z","b":"2026-12-01T14:10:20Z"}"#)
                .unwrap();
        assert_eq!(t.b, parse("2026-12-01T14:10:20Z"));
        let e = serde_json::from_str::<T>(r#"{"a":"soon"}"#).unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
        assert!(serde_json::from_str::<T>(r#"{"a":3}"#).is_err());
    }
}
