//! The profiles parser on arbitrary and on mutated input: it never panics, and it either parses
//! or reports errors located inside the text (1-based line and column that exist).

use proptest::prelude::*;
use std::path::Path;
use sugar_sessions::config::{self, ConfigError};

const EXAMPLE: &str = include_str!("../profiles.example.toml");
const SMALL: &str = "[defaults]\nplatform = \"custom_api\"\ntimeout_s = 30\n\n\
                     [profiles.acme-prod]\nurl = \"https://acme.example.com/sugar\"\n\
                     username = \"integration\"\npassword_env = \"ACME_PW\"\ntags = [\"acme\", \"prod\"]\n\n\
                     [profiles.lab]\nurl = \"http://127.0.0.1:8080/lab\"\nusername = \"admin\"\n\
                     insecure = true\nproxy = \"socks5h://127.0.0.1:1080\"\n";

/// Checks what `parse` says about `text`: errors exist and point inside it.
fn check(text: &str) -> Result<(), TestCaseError> {
    let path = Path::new("fuzz/profiles.toml");
    match config::parse(text, path) {
        Ok(file) => {
            for p in &file.profiles {
                prop_assert!(!p.name.is_empty());
                prop_assert!(p.url.host_str().is_some());
                prop_assert!(!p.username.is_empty());
                prop_assert!(p.timeout.as_secs() >= 1);
            }
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty(), "an error without an error");
            let lines: Vec<&str> = text.split('\n').collect();
            for ConfigError {
                file,
                line,
                column,
                message,
                key,
            } in &errors
            {
                prop_assert_eq!(file.as_path(), path);
                prop_assert!(!message.is_empty());
                prop_assert!(
                    *line >= 1 && *line <= lines.len(),
                    "line {} of {}",
                    line,
                    lines.len()
                );
                let width = lines[line - 1].chars().count();
                prop_assert!(
                    *column >= 1 && *column <= width + 1,
                    "column {} of a line {} wide",
                    column,
                    width
                );
                if let Some(key) = key {
                    prop_assert!(!key.is_empty());
                }
            }
        }
    }
    Ok(())
}

/// Pieces that make the parser go deep: headers, keys, values, quotes, brackets, odd characters.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[profiles.a]\n".to_string()),
        Just("[profiles.\"b c\"]\n".to_string()),
        Just("[defaults]\n".to_string()),
        Just("[[profiles]]\n".to_string()),
        Just("url = \"https://a.example.com\"\n".to_string()),
        Just("url = \"http://10.0.0.1\"\n".to_string()),
        Just("username = \"u\"\n".to_string()),
        Just("password = \"pw\"\n".to_string()),
        Just("password_env = \"X\"\n".to_string()),
        Just("ca_cert = \"missing.pem\"\n".to_string()),
        Just("proxy = \"socks5h://h:1\"\n".to_string()),
        Just("tags = [\"a\", 1]\n".to_string()),
        Just("timeout_s = 0x1e\n".to_string()),
        Just("api = \"v11_16\"\n".to_string()),
        prop::sample::select(vec![
            "=",
            "\"",
            "'",
            "\"\"\"",
            "[",
            "]",
            "{",
            "}",
            ",",
            ".",
            "#",
            "\n",
            "\r\n",
            " ",
            "\t",
            "é",
            "\u{feff}",
            "\u{0}",
            "true",
            "1979-05-27",
            "1e3",
            "profiles",
            "url",
            "a.b",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

/// One edit of a text, by characters.
#[derive(Clone, Debug)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    DuplicateLine { line: usize },
    SwapLines { a: usize, b: usize },
    DropLine { line: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), fragment()).prop_map(|(at, text)| Edit::Insert { at, text }),
        any::<usize>().prop_map(|line| Edit::DuplicateLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines { a, b }),
        any::<usize>().prop_map(|line| Edit::DropLine { line }),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    match edit {
        Edit::Delete { at, len } => {
            let at = at % (chars.len() + 1);
            let end = (at + len).min(chars.len());
            chars.drain(at..end);
            chars.into_iter().collect()
        }
        Edit::Insert { at, text } => {
            let at = at % (chars.len() + 1);
            chars.splice(at..at, text.chars());
            chars.into_iter().collect()
        }
        Edit::DuplicateLine { line } => {
            let line = line % lines.len();
            lines.insert(line, lines[line].clone());
            lines.join("\n")
        }
        Edit::SwapLines { a, b } => {
            let (a, b) = (a % lines.len(), b % lines.len());
            lines.swap(a, b);
            lines.join("\n")
        }
        Edit::DropLine { line } => {
            let line = line % lines.len();
            lines.remove(line);
            lines.join("\n")
        }
    }
}

#[test]
fn the_valid_bases_parse() {
    check(EXAMPLE).unwrap();
    check(SMALL).unwrap();
    assert!(config::parse(EXAMPLE, Path::new("p.toml")).is_ok());
    assert!(config::parse(SMALL, Path::new("p.toml")).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn arbitrary_fragments(parts in prop::collection::vec(fragment(), 0..40)) {
        check(&parts.concat())?;
    }

    #[test]
    fn mutated_example_file(
        small in any::<bool>(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let mut text = if small { SMALL } else { EXAMPLE }.to_string();
        for e in &edits {
            text = apply(&text, e);
        }
        check(&text)?;
    }
}
