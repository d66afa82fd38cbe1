//! Secrets as types: passwords and tokens never print themselves.
//!
//! `Debug` and `Display` show a redaction; the text is zeroized when dropped.
//! The only ways to the text are [`Secret::expose`] (for building a request,
//! writing the 0600 token cache, or the screen's OSC 52 copy to the clipboard)
//! and [`Secret::masked`] (first and last four characters, for the screen).

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use zeroize::Zeroizing;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Secret(Zeroizing::new(text.into()))
    }

    /// The secret text itself. Call sites are the request builders and the cache writer.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `abcd…wxyz` for long secrets, `…` for short ones: safe to show on a screen.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() < 12 {
            return "…".to_string();
        }
        let head: String = chars[..4].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}…{tail}")
    }
}

/// Owns a body's bytes and zeroizes them when the last `Bytes` handle lets go.
struct ZeroOnDrop(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for ZeroOnDrop {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A JSON object of string fields.
struct Fields<'a>(&'a [(&'a str, &'a str)]);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// A JSON object of string fields (a request carrying a password or a token, the broker's
/// answer), written straight into a buffer that is zeroized when the body is dropped: no
/// intermediate `Value` or `String` holds the secret. The buffer is allocated once, big enough
/// for the worst case of escaping, so that growing it leaves no copies behind.
pub fn json_bytes(fields: &[(&str, &str)]) -> Bytes {
    // `\u00XX` is the longest escape: 6 bytes for 1; plus quotes, `:` and `,`.
    let capacity = 2 + fields
        .iter()
        .map(|(k, v)| 6 * (k.len() + v.len()) + 6)
        .sum::<usize>();
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity));
    serde_json::to_writer(&mut *buf, &Fields(fields)).expect("writing JSON to memory cannot fail");
    debug_assert!(buf.len() <= capacity);
    Bytes::from_owner(ZeroOnDrop(buf))
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_text() {
        let s = Secret::new("hunter2-very-secret");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn masked_keeps_only_the_ends() {
        let s = Secret::new("802b64c0-5eac-8431-a541-5342d38ac527");
        assert_eq!(s.masked(), "802b…c527");
        assert_eq!(Secret::new("short").masked(), "…");
    }
}
