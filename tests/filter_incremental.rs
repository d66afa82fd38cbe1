//! The filter narrows the previous result as characters are typed and puts it back on Backspace
//! (for speed with thousands of profiles): whatever is typed, the rows shown must be exactly
//! those of the same filter applied from scratch (pasted at once).

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use sugar_sessions::app::{Model, Msg, Options, Source, Zone, update};
use sugar_sessions::config::Profiles;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T13:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Profiles whose names, tags, hosts and users repeat letters, so that matches move and vanish.
fn profiles() -> &'static Profiles {
    static PROFILES: OnceLock<Profiles> = OnceLock::new();
    PROFILES.get_or_init(|| {
        let mut text =
            String::from("[defaults]\nplatform = \"custom_api\"\npassword_env = \"PW\"\n");
        for i in 0..60 {
            let host = ["acme", "aacme", "cmeac", "globex", "glob"][i % 5];
            let tag = ["prod", "pro", "sandbox", "ab"][i % 4];
            text.push_str(&format!(
                "\n[profiles.{host}-{i}]\nurl = \"https://{host}{}.example.com\"\nusername = \"u{}ac\"\ntags = [\"{tag}\"]\n",
                i % 3,
                i % 7
            ));
        }
        sugar_sessions::config::parse(&text, Path::new("/tmp/profiles.toml")).expect("profiles parse")
    })
}

fn model() -> Model {
    let options = Options {
        ascii: false,
        color: false,
        zone: Zone::Local,
        clipboard: Default::default(),
        read_only: false,
        keep_alive: false,
    };
    let path = PathBuf::from("/tmp/profiles.toml");
    Model::new(profiles(), Source::File(path), options, now())
}

fn key(m: &mut Model, code: KeyCode) {
    update(m, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)), now());
}

fn shown(m: &Model) -> Vec<String> {
    m.visible_names().iter().map(|s| s.to_string()).collect()
}

/// The same filter from scratch: `/`, then the whole text pasted.
fn from_scratch(filter: &str) -> Vec<String> {
    let mut m = model();
    key(&mut m, KeyCode::Char('/'));
    update(&mut m, Msg::Paste(filter.to_string()), now());
    shown(&m)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn typing_and_erasing_shows_what_filtering_from_scratch_shows(
        keys in proptest::collection::vec(
            prop_oneof![
                4 => proptest::sample::select(vec!['a', 'c', 'm', 'e', 'p', 'r', 'o', 'b', 'g', 'l', '1', '-', '.', 'A', 'X']).prop_map(Some),
                1 => Just(None),
            ],
            1..24,
        )
    ) {
        let mut m = model();
        key(&mut m, KeyCode::Char('/'));
        let mut typed = String::new();
        for k in keys {
            match k {
                Some(c) => {
                    typed.push(c);
                    key(&mut m, KeyCode::Char(c));
                }
                None => {
                    typed.pop();
                    key(&mut m, KeyCode::Backspace);
                }
            }
            prop_assert_eq!(m.filter(), typed.as_str());
            prop_assert_eq!(shown(&m), from_scratch(&typed), "after typing {:?}", typed);
        }
    }
}
