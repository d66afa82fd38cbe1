//! A tiny JSON value with ordered keys, encoded the way PHP's `json_encode` does by default:
//! `/` escaped as `\/`, non-ASCII as `\uXXXX` (lower-case hex), no spaces.
//!
//! Sugar answers are produced by `json_encode`, so the emulator writes exactly that, key order included.

/// An ordered JSON value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum J {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    /// A JSON object from `(key, value)` pairs, in this order.
    pub(crate) fn obj<'a>(pairs: impl IntoIterator<Item = (&'a str, J)>) -> J {
        J::Obj(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    pub(crate) fn s(text: impl Into<String>) -> J {
        J::Str(text.into())
    }

    /// An object's value for `key`; `None` for a missing key or a value that is not an object.
    pub(crate) fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// PHP `json_encode` output for this value.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        write_value(self, &mut out);
        out
    }
}

fn write_value(value: &J, out: &mut String) {
    match value {
        J::Null => out.push_str("null"),
        J::Bool(true) => out.push_str("true"),
        J::Bool(false) => out.push_str("false"),
        J::Int(n) => out.push_str(&n.to_string()),
        J::Str(s) => write_string(s, out),
        J::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        J::Obj(pairs) => {
            out.push('{');
            for (i, (key, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) >= 0x80 => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::J;

    #[test]
    fn encodes_like_php() {
        let v = J::obj([
            ("url", J::s("http://x/y")),
            ("scope", J::Null),
            ("n", J::Int(-3)),
            ("ok", J::Bool(true)),
            ("name", J::s("Zoë \"q\" \\ 😀\n")),
            ("list", J::Arr(vec![J::Int(1), J::s("a")])),
        ]);
        assert_eq!(
            v.encode(),
            r#"{"url":"http:\/\/x\/y","scope":null,"n":-3,"ok":true,"name":"Zo\u00eb \"q\" \\ \ud83d\ude00\n","list":[1,"a"]}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&v.encode()).unwrap();
        assert_eq!(parsed["url"], "http://x/y");
        assert_eq!(parsed["name"], "Zoë \"q\" \\ 😀\n");
    }
}
