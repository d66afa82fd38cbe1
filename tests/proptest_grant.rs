//! The token-answer parser on arbitrary JSON and arbitrary bytes: it never panics, and it either
//! gives a grant that holds together or says what is wrong.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use sugar_sessions::sugar::{ErrorKind, MAX_LIFETIME_S, parse_grant, parse_grant_answer};

const KEYS: &[&str] = &[
    "access_token",
    "expires_in",
    "refresh_token",
    "refresh_expires_in",
    "download_token",
    "token_type",
    "scope",
    "error",
    "error_message",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-5i64..5000).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<u64>().prop_map(Value::from),
        "[ -~]{0,16}".prop_map(Value::String),
        prop::sample::select(vec!["", "3600", "-1", "0", "1e3", " 60", "abc"])
            .prop_map(|s| Value::String(s.to_string())),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(KEYS).prop_map(str::to_string),
        "[a-z_]{0,8}",
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Objects that look like token answers, with each field present, absent or of any kind.
fn answer() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (prop::sample::select(KEYS), prop::option::of(leaf())),
        0..10,
    )
    .prop_map(|fields| {
        let mut map = Map::new();
        for (k, v) in fields {
            if let Some(v) = v {
                map.insert(k.to_string(), v);
            }
        }
        Value::Object(map)
    })
}

/// A grant holds together; an error names a field or says the answer is not an object.
fn check(v: &Value) -> Result<(), TestCaseError> {
    match parse_grant(v) {
        Ok(g) => {
            prop_assert!(v.is_object());
            prop_assert!(!g.access_token.is_empty());
            prop_assert_eq!(Some(g.access_token.expose()), v["access_token"].as_str());
            prop_assert!((1..=MAX_LIFETIME_S).contains(&g.expires_in));
            prop_assert!(
                g.refresh_expires_in
                    .is_none_or(|n| (1..=MAX_LIFETIME_S).contains(&n))
            );
            if g.refresh_token.is_some() {
                prop_assert!(g.refresh_expires_in.is_some());
            }
        }
        Err(what) => {
            let names_a_field = KEYS.iter().any(|k| what.contains(&format!("\"{k}\"")));
            prop_assert!(
                names_a_field || what == "the token answer is not a JSON object",
                "{what:?} for {v}"
            );
        }
    }
    Ok(())
}

#[test]
fn a_real_answer_parses_and_broken_ones_say_why() {
    let good = json!({"access_token":"802b64c0-5eac","expires_in":3600,"token_type":"bearer",
        "scope":null,"refresh_token":"85053198","refresh_expires_in":1209600,"download_token":"8c9b"});
    check(&good).unwrap();
    assert!(parse_grant(&good).is_ok());
    let e =
        parse_grant(&json!({"access_token":"a","expires_in":60,"refresh_token":"r"})).unwrap_err();
    assert_eq!(e, "a \"refresh_token\" without \"refresh_expires_in\"");
    let e = parse_grant_answer(200, b"{\"access_token\":1,\"expires_in\":1}").unwrap_err();
    assert!(
        matches!(e, ErrorKind::BadShape { status: 200, ref what } if what.contains("access_token"))
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json(v in value()) {
        check(&v)?;
    }

    #[test]
    fn answer_shaped_json(v in answer()) {
        check(&v)?;
        // Whatever else is in it, a valid access token and lifetime alone make a grant.
        if let Some(Value::String(t)) = v.get("access_token")
            && !t.is_empty()
            && v.get("expires_in").and_then(Value::as_i64).is_some_and(|n| (1..=MAX_LIFETIME_S).contains(&n))
            && v.get("refresh_token").is_none_or(Value::is_null)
            && v.get("refresh_expires_in").is_none_or(Value::is_null)
            && v.get("download_token").is_none_or(Value::is_null)
        {
            prop_assert!(parse_grant(&v).is_ok(), "{v}");
        }
    }

    #[test]
    fn arbitrary_bytes(status in prop::sample::select(vec![200u16, 201, 301, 302, 400, 401, 422, 502, 503]),
                       body in prop::collection::vec(any::<u8>(), 0..256)) {
        check_bytes(status, &body)?;
    }

    #[test]
    fn mangled_answers(status in prop::sample::select(vec![200u16, 400, 401]),
                       v in answer(),
                       cut in any::<usize>(),
                       flip in any::<(usize, u8)>()) {
        let mut body = serde_json::to_vec(&v).unwrap();
        check_bytes(status, &body)?;
        if !body.is_empty() {
            let i = flip.0 % body.len();
            body[i] ^= flip.1;
            check_bytes(status, &body)?;
            body.truncate(cut % body.len());
            check_bytes(status, &body)?;
        }
    }
}

fn check_bytes(status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    match parse_grant_answer(status, body) {
        Ok(g) => {
            prop_assert!((200..300).contains(&status));
            prop_assert!(
                !g.access_token.is_empty() && (1..=MAX_LIFETIME_S).contains(&g.expires_in)
            );
        }
        Err(kind) => match (&kind, (200..300).contains(&status)) {
            (ErrorKind::NotJson { status: s, .. }, true)
            | (ErrorKind::BadShape { status: s, .. }, true) => {
                prop_assert_eq!(*s, status);
                if let ErrorKind::BadShape { what, .. } = &kind {
                    prop_assert!(!what.is_empty());
                }
            }
            (
                ErrorKind::Sugar {
                    status: s, label, ..
                },
                false,
            ) => {
                prop_assert_eq!(*s, status);
                let v: Value = serde_json::from_slice(body).unwrap();
                // Sugar's label, without control characters.
                let sent = v["error"]
                    .as_str()
                    .map(sugar_sessions::text::strip_controls);
                prop_assert_eq!(Some(label.as_str()), sent.as_deref());
            }
            (ErrorKind::Redirect { status: s, .. }, false) => {
                prop_assert!((300..400).contains(s));
            }
            (ErrorKind::Http { status: s, .. }, false) => prop_assert_eq!(*s, status),
            (other, _) => prop_assert!(false, "{other:?} for HTTP {status}"),
        },
    }
    Ok(())
}
