//! Sugar's answers read into typed values: a status and body to JSON or Sugar's error, token
//! grants, the user, the server's info.

use super::error::ErrorKind;
use crate::secret::Secret;
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroize;

/// The longest lifetime a token answer may give a token or a refresh token: 10 years (3650 days).
/// Sugar's own are minutes to weeks; a longer one is a broken answer, and would overflow the
/// arithmetic on instants.
pub const MAX_LIFETIME_S: i64 = 3650 * 86_400;

/// Tokens granted by a login, a refresh or a sudo.
#[derive(Debug, Clone)]
pub struct Grant {
    pub access_token: Secret,
    pub expires_in: i64,
    pub refresh_token: Option<Secret>,
    pub refresh_expires_in: Option<i64>,
    pub download_token: Option<Secret>,
}

/// `GET /me`: who the session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    pub id: String,
    pub user_name: String,
    pub full_name: String,
    pub admin: bool,
}

/// `GET /metadata?type_filter=server_info`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerInfo {
    #[serde(default)]
    pub flavor: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub build: Option<String>,
    #[serde(default)]
    pub product_name: Option<String>,
}

/// Zeroizes every string in a parsed answer before it is dropped.
pub(super) fn scrub(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => map.values_mut().for_each(scrub),
        _ => {}
    }
}

/// Turns a status and body into JSON or a typed error.
pub(super) fn interpret(
    status: u16,
    html_type: bool,
    location: Option<String>,
    body: &[u8],
) -> Result<Value, ErrorKind> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let looks_html = html_type || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
    // Sugar's error JSON, whatever the status (a 301 incorrect_version included).
    if !(200..300).contains(&status) {
        if let Some(Value::Object(map)) = &parsed
            && let Some(Value::String(label)) = map.get("error")
        {
            let message = map
                .get("error_message")
                .and_then(|m| m.as_str())
                .map(str::to_string);
            return Err(ErrorKind::Sugar {
                status,
                label: label.clone(),
                message,
            });
        }
        if (300..400).contains(&status) {
            return Err(ErrorKind::Redirect { status, location });
        }
        return Err(ErrorKind::Http {
            status,
            html: looks_html,
        });
    }
    parsed.ok_or(ErrorKind::NotJson {
        status,
        html: looks_html,
    })
}

/// Reads a token answer as the client does: status and body to JSON (or Sugar's error), then
/// [`parse_grant`]. Never panics, whatever the bytes.
pub fn parse_grant_answer(status: u16, body: &[u8]) -> Result<Grant, ErrorKind> {
    let mut value = interpret(status, false, None, body).map_err(ErrorKind::cleaned)?;
    let parsed = parse_grant(&value).map_err(|what| ErrorKind::BadShape { status, what }.cleaned());
    scrub(&mut value);
    parsed
}

/// A lifetime in seconds, as a number or a string of digits: 1 s to [`MAX_LIFETIME_S`].
fn lifetime_field(v: &Value, key: &str) -> Result<Option<i64>, String> {
    let whole: Option<i128> = match v.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Some(Value::String(s)) => s.parse::<i128>().ok(),
        Some(_) => return Err(format!("\"{key}\" is not a number")),
    };
    let Some(n) = whole else {
        return Err(format!("\"{key}\" is not a whole number of seconds"));
    };
    match i64::try_from(n) {
        Ok(n) if (1..=MAX_LIFETIME_S).contains(&n) => Ok(Some(n)),
        // Only digits and a sign are quoted: nothing else of the server's text.
        _ => Err(format!(
            "\"{key}\" of {n} s is out of range (1 s to {} days)",
            MAX_LIFETIME_S / 86_400
        )),
    }
}

fn token_field(v: &Value, key: &str) -> Result<Option<Secret>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(Secret::new(s.as_str()))),
        Some(_) => Err(format!("\"{key}\" is not a non-empty string")),
    }
}

/// Parses a token answer; never assumes lifetimes.
pub fn parse_grant(v: &Value) -> Result<Grant, String> {
    if !v.is_object() {
        return Err("the token answer is not a JSON object".into());
    }
    let access_token =
        token_field(v, "access_token")?.ok_or("no \"access_token\" in the token answer")?;
    let expires_in =
        lifetime_field(v, "expires_in")?.ok_or("no \"expires_in\" in the token answer")?;
    let refresh_token = token_field(v, "refresh_token")?;
    let refresh_expires_in = lifetime_field(v, "refresh_expires_in")?;
    if refresh_token.is_some() && refresh_expires_in.is_none() {
        return Err("a \"refresh_token\" without \"refresh_expires_in\"".into());
    }
    let download_token = token_field(v, "download_token").unwrap_or(None);
    Ok(Grant {
        access_token,
        expires_in,
        refresh_token,
        refresh_expires_in,
        download_token,
    })
}

pub(super) fn parse_me(v: &Value) -> Result<Me, String> {
    let u = v
        .get("current_user")
        .filter(|u| u.is_object())
        .ok_or("no \"current_user\" object")?;
    // Shown by `check` and on the screen: no control characters from the server.
    let s = |k: &str| crate::text::strip_controls(u.get(k).and_then(|x| x.as_str()).unwrap_or(""));
    Ok(Me {
        id: s("id"),
        user_name: s("user_name"),
        full_name: s("full_name"),
        admin: s("type") == "admin",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_parsing_takes_lifetimes_from_the_answer() {
        let v = serde_json::json!({"access_token":"a-b","expires_in":90,"token_type":"bearer","scope":null,
            "refresh_token":"r","refresh_expires_in":"600","download_token":"d","extra":[1]});
        let g = parse_grant(&v).unwrap();
        assert_eq!((g.expires_in, g.refresh_expires_in), (90, Some(600)));
        assert!(
            parse_grant(&serde_json::json!({"access_token": 5, "expires_in": 1}))
                .unwrap_err()
                .contains("access_token")
        );
        assert!(
            parse_grant(&serde_json::json!({"access_token": "x"}))
                .unwrap_err()
                .contains("expires_in")
        );
        assert!(parse_grant(&serde_json::json!({"access_token": "x", "expires_in": -3})).is_err());
        assert!(parse_grant(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn lifetimes_must_be_from_one_second_to_ten_years() {
        let grant = |expires_in: Value, refresh: Value| {
            parse_grant(
                &serde_json::json!({"access_token": "a", "expires_in": expires_in,
                "refresh_token": "r", "refresh_expires_in": refresh}),
            )
        };
        let most = MAX_LIFETIME_S;
        let g = grant(most.into(), most.to_string().into()).unwrap();
        assert_eq!((g.expires_in, g.refresh_expires_in), (most, Some(most)));
        for (bad, shown) in [
            (Value::from(10_000_000_000_000_i64), "10000000000000"),
            ("10000000000000".into(), "10000000000000"),
            ((most + 1).into(), "315360001"),
            (u64::MAX.into(), "18446744073709551615"),
            ("99999999999999999999999".into(), "99999999999999999999999"),
            (0.into(), "0"),
            ("-1".into(), "-1"),
            (i64::MIN.into(), "-9223372036854775808"),
        ] {
            assert_eq!(
                grant(bad.clone(), 60.into()).unwrap_err(),
                format!("\"expires_in\" of {shown} s is out of range (1 s to 3650 days)")
            );
            assert_eq!(
                grant(60.into(), bad).unwrap_err(),
                format!("\"refresh_expires_in\" of {shown} s is out of range (1 s to 3650 days)")
            );
        }
        for bad in [
            Value::from(1.5),
            "1e3".into(),
            " 60".into(),
            "\u{1b}[2J".into(),
        ] {
            assert_eq!(
                grant(bad, 60.into()).unwrap_err(),
                "\"expires_in\" is not a whole number of seconds"
            );
        }
    }

    #[test]
    fn server_text_in_errors_is_stripped_of_control_characters() {
        let body = "{\"error\":\"need_login\\u001b[31m\",\"error_message\":\"bad\\u001b]52;c;AAAA\\u0007 pw\"}";
        assert_eq!(
            parse_grant_answer(401, body.as_bytes()).unwrap_err(),
            ErrorKind::Sugar {
                status: 401,
                label: "need_login".into(),
                message: Some("bad pw".into())
            }
        );
        let redirect = ErrorKind::Redirect {
            status: 302,
            location: Some("https://sso.\u{9b}31mexample.com/\x1b]0;t\x07".into()),
        };
        assert_eq!(
            redirect.cleaned(),
            ErrorKind::Redirect {
                status: 302,
                location: Some("https://sso.example.com/".into())
            }
        );
        let me = parse_me(
            &serde_json::json!({"current_user": {"user_name": "jim\u{1b}[2J",
            "full_name": "Jim\u{7}\u{9b}1m Halpert", "type": "user"}}),
        )
        .unwrap();
        assert_eq!(
            (me.user_name.as_str(), me.full_name.as_str()),
            ("jim", "Jim Halpert")
        );
    }

    #[test]
    fn scrubbing_blanks_every_string() {
        let mut v = serde_json::json!({"access_token": "abc", "n": 1, "a": ["xyz", {"r": "qq"}]});
        scrub(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"access_token": "", "n": 1, "a": ["", {"r": ""}]})
        );
    }

    #[test]
    fn sugar_error_json_wins_over_the_status_class() {
        let body = br#"{"error":"incorrect_version","error_message":"Incorrect API version"}"#;
        assert_eq!(
            interpret(301, false, None, body),
            Err(ErrorKind::Sugar {
                status: 301,
                label: "incorrect_version".into(),
                message: Some("Incorrect API version".into())
            })
        );
        assert_eq!(
            interpret(302, true, Some("https://sso.example.com/login".into()), b""),
            Err(ErrorKind::Redirect {
                status: 302,
                location: Some("https://sso.example.com/login".into())
            })
        );
        assert_eq!(
            interpret(502, false, None, b"<html>bad gateway</html>"),
            Err(ErrorKind::Http {
                status: 502,
                html: true
            })
        );
        assert_eq!(
            interpret(200, false, None, b"pong?"),
            Err(ErrorKind::NotJson {
                status: 200,
                html: false
            })
        );
    }
}
