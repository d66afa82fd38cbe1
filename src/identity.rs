//! Who a session is: [`SessionKey`], the identity Sugar itself gives a session (what the store
//! keys by), and [`ProfileId`], the label a user types (`acme`, `acme>jim`).
//!
//! Pure: no I/O. A profile's name is only a label for people; two profiles files that both name
//! an instance `acme-prod` never see each other's sessions, and two profiles that resolve to the
//! same key share one session (Sugar would end one of them anyway: one session per user, platform
//! and client).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The identity of a session: the normalised instance URL, the user, the platform, the OAuth2
/// client id, and for an impersonation (sudo) the user impersonated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// Scheme and host lower-cased, default port and trailing slash dropped: `https://acme.example.com/sugar`.
    pub instance: String,
    /// The user who logged in (for an impersonation: the admin whose session made it).
    pub username: String,
    pub platform: String,
    pub client_id: String,
    /// The impersonated user of a sudo session.
    pub sudo: Option<String>,
}

impl SessionKey {
    /// The key of a profile's own session. `instance` is normalised here.
    pub fn new(instance: &str, username: &str, platform: &str, client_id: &str) -> SessionKey {
        SessionKey {
            instance: normalise_instance(instance),
            username: username.to_string(),
            platform: platform.to_string(),
            client_id: client_id.to_string(),
            sudo: None,
        }
    }

    /// The key of an impersonation of `user` made with this session.
    pub fn impersonating(&self, user: &str) -> SessionKey {
        SessionKey {
            sudo: Some(user.to_string()),
            ..self.without_sudo()
        }
    }

    /// The admin session an impersonation was made with (itself for a session that is not one).
    pub fn without_sudo(&self) -> SessionKey {
        SessionKey {
            sudo: None,
            ..self.clone()
        }
    }

    /// [`without_sudo`](Self::without_sudo) is `other`, found without a copy.
    pub fn admin_session_is(&self, other: &SessionKey) -> bool {
        other.sudo.is_none()
            && self.instance == other.instance
            && self.username == other.username
            && self.platform == other.platform
            && self.client_id == other.client_id
    }

    /// The canonical text form, used in the cache file: the parts joined by `|`, each
    /// percent-encoded where it holds `%`, `|` or a control character.
    pub fn canonical(&self) -> String {
        let mut out = String::with_capacity(
            self.instance.len() + self.username.len() + self.platform.len() + 32,
        );
        let parts = [
            Some(self.instance.as_str()),
            Some(self.username.as_str()),
            Some(self.platform.as_str()),
            Some(self.client_id.as_str()),
            self.sudo.as_deref(),
        ];
        for (i, part) in parts.into_iter().enumerate() {
            let Some(part) = part else { continue };
            if i > 0 {
                out.push('|');
            }
            encode_into(part, &mut out);
        }
        out
    }

    /// Parses [`canonical`](Self::canonical).
    pub fn parse(text: &str) -> Result<SessionKey, String> {
        let count = text.bytes().filter(|&b| b == b'|').count() + 1;
        if !(4..=5).contains(&count) {
            return Err(format!(
                "a session key has 4 or 5 parts separated by |, not {count}"
            ));
        }
        let mut parts = text.split('|');
        let mut next = || decode(parts.next().unwrap_or_default());
        Ok(SessionKey {
            instance: next()?,
            username: next()?,
            platform: next()?,
            client_id: next()?,
            sudo: if count == 5 { Some(next()?) } else { None },
        })
    }

    /// A short stable digest of the key (hex), for file names: lock files are named from it, never
    /// from user or profile names (a user `../../x` stays inside the state directory).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let hash = Sha256::digest(self.canonical().as_bytes());
        hash[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for SessionKey {
    /// `integration@acme.example.com/sugar (platform acme_sync, client sugar)`, `… as jim`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self
            .instance
            .split_once("://")
            .map_or(self.instance.as_str(), |(_, rest)| rest);
        write!(
            f,
            "{}@{host} (platform {}, client {})",
            self.username, self.platform, self.client_id
        )?;
        if let Some(user) = &self.sudo {
            write!(f, " as {user}")?;
        }
        Ok(())
    }
}

impl Serialize for SessionKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.canonical())
    }
}

impl<'de> Deserialize<'de> for SessionKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        SessionKey::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Scheme and host lower-cased, the scheme's default port and any trailing slash dropped; the
/// path as written (Sugar's paths are case-sensitive on most servers).
pub fn normalise_instance(url: &str) -> String {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // Credentials never belong in a URL the profiles file accepts; drop them if present.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        Some(":443")
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(":80")
    } else {
        None
    };
    let authority = match default_port {
        Some(port) => authority.strip_suffix(port).unwrap_or(authority),
        None => authority,
    };
    let path = path.trim_end_matches('/');
    // One string, lowered in place: every profile's key is made from this, thousands at a time.
    let mut out = String::with_capacity(scheme.len() + 3 + authority.len() + path.len());
    if !scheme.is_empty() {
        out.push_str(scheme);
        out.push_str("://");
    }
    out.push_str(authority);
    out.make_ascii_lowercase();
    out.push_str(path);
    out
}

fn encode_into(part: &str, out: &mut String) {
    for c in part.chars() {
        if c == '%' || c == '|' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

fn decode(part: &str) -> Result<String, String> {
    if !part.contains('%') {
        return Ok(part.to_string());
    }
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = part
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("a bad %-escape in the session key part {part:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("the session key part {part:?} is not UTF-8"))
}

/// The longest profile name, in characters.
pub const MAX_PROFILE_NAME: usize = 128;
/// The longest user name an impersonation may name, in characters.
pub const MAX_USER_NAME: usize = 255;

/// A profile name: `[A-Za-z0-9._-]`, 1 to [`MAX_PROFILE_NAME`] characters.
pub fn is_valid_profile_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_PROFILE_NAME && profile_name_chars_ok(name)
}

/// Every character of `name` may be in a profile name: `[A-Za-z0-9._-]`.
pub fn profile_name_chars_ok(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A user name to impersonate: not empty, no `>`, no white space or control characters, at most
/// [`MAX_USER_NAME`] characters.
pub fn is_valid_user_name(user: &str) -> bool {
    !user.is_empty()
        && user.chars().count() <= MAX_USER_NAME
        && !user
            .chars()
            .any(|c| c == '>' || c.is_whitespace() || c.is_control())
}

/// The label of a row and of a command's target, as a user types it: a profile's name, and for
/// an impersonation the user it acts as (`acme>jim`). Validated once, when it is made.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProfileId {
    name: String,
    sudo: Option<String>,
}

impl ProfileId {
    /// A profile's own label. `None` when `name` is not a valid profile name.
    pub fn profile(name: &str) -> Option<ProfileId> {
        is_valid_profile_name(name).then(|| ProfileId {
            name: name.to_string(),
            sudo: None,
        })
    }

    /// The label of an impersonation of `user` through this profile (`acme>jim`); `None` when
    /// `user` is not a valid user name or this is an impersonation already.
    pub fn impersonating(&self, user: &str) -> Option<ProfileId> {
        (self.sudo.is_none() && is_valid_user_name(user)).then(|| ProfileId {
            name: self.name.clone(),
            sudo: Some(user.to_string()),
        })
    }

    /// The label of an impersonation of `user` through the profile `name`, as the token cache
    /// holds it (user names there came from an earlier, checked request; they are shown, never
    /// parsed back).
    pub fn stored_impersonation(name: &str, user: &str) -> ProfileId {
        ProfileId {
            name: name.to_string(),
            sudo: Some(user.to_string()),
        }
    }

    /// The profile's name (for `acme>jim`, `acme`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The impersonated user, for an impersonation.
    pub fn sudo(&self) -> Option<&str> {
        self.sudo.as_deref()
    }

    /// The profile this label goes through (for `acme>jim`, `acme`; itself otherwise).
    pub fn parent(&self) -> ProfileId {
        ProfileId {
            name: self.name.clone(),
            sudo: None,
        }
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sudo {
            Some(user) => write!(f, "{}>{user}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Why a text is not a [`ProfileId`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadProfileId(pub String);

impl fmt::Display for BadProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadProfileId {}

impl std::str::FromStr for ProfileId {
    type Err = BadProfileId;

    fn from_str(text: &str) -> Result<ProfileId, BadProfileId> {
        let shown = |t: &str| -> String {
            let cut: String = t.chars().take(40).filter(|c| !c.is_control()).collect();
            if t.chars().count() > 40 {
                format!("{cut}…")
            } else {
                cut
            }
        };
        let (name, user) = match text.split_once('>') {
            Some((name, user)) => (name, Some(user)),
            None => (text, None),
        };
        let id = ProfileId::profile(name).ok_or_else(|| {
            BadProfileId(format!(
                "not a profile name: {:?} (letters, digits, '.', '_' and '-', at most {MAX_PROFILE_NAME})",
                shown(name)
            ))
        })?;
        match user {
            None => Ok(id),
            Some(user) => id.impersonating(user).ok_or_else(|| {
                BadProfileId(format!(
                    "not a user name: {:?} (no spaces, '>' or control characters, at most {MAX_USER_NAME})",
                    shown(user)
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_session_of_an_impersonation_is_found_as_without_sudo_finds_it() {
        let admin = SessionKey::new("https://a.example.com", "admin", "p", "c");
        let jim = admin.impersonating("jim");
        let other = SessionKey::new("https://a.example.com", "admin", "q", "c");
        for (key, of) in [
            (&jim, &admin),
            (&jim, &other),
            (&jim, &jim),
            (&admin, &admin),
        ] {
            assert_eq!(
                key.admin_session_is(of),
                key.without_sudo() == *of,
                "{key:?} {of:?}"
            );
        }
        assert!(jim.admin_session_is(&admin));
        assert!(!jim.admin_session_is(&jim));
    }

    #[test]
    fn profile_ids_parse_print_and_refuse_what_no_profile_can_be() {
        let plain: ProfileId = "acme-prod".parse().unwrap();
        assert_eq!((plain.name(), plain.sudo()), ("acme-prod", None));
        assert_eq!(plain.to_string(), "acme-prod");
        let sudo: ProfileId = "acme-prod>jim".parse().unwrap();
        assert_eq!((sudo.name(), sudo.sudo()), ("acme-prod", Some("jim")));
        assert_eq!(sudo.to_string(), "acme-prod>jim");
        assert_eq!(sudo.parent(), plain);
        assert_eq!(plain.impersonating("jim"), Some(sudo.clone()));
        assert_eq!(sudo.impersonating("bob"), None, "no impersonation of one");
        for bad in [
            "",
            "a b",
            "acme>",
            ">jim",
            "acme>j im",
            "acme>a>b",
            "ac/me",
            "acme>\u{1b}[31m",
        ] {
            assert!(bad.parse::<ProfileId>().is_err(), "{bad:?}");
        }
        let long = "x".repeat(MAX_PROFILE_NAME + 1);
        let err = long.parse::<ProfileId>().unwrap_err().to_string();
        assert!(err.contains("at most 128") && err.len() < 200, "{err}");
        assert!("x".repeat(MAX_PROFILE_NAME).parse::<ProfileId>().is_ok());
    }

    #[test]
    fn instances_normalise_scheme_host_port_and_slash() {
        for (given, want) in [
            ("HTTPS://Acme.Example.COM/", "https://acme.example.com"),
            ("https://acme.example.com:443", "https://acme.example.com"),
            ("http://127.0.0.1:80/acme/", "http://127.0.0.1/acme"),
            ("http://127.0.0.1:8080/Acme", "http://127.0.0.1:8080/Acme"),
            (
                "https://acme.example.com:8443/",
                "https://acme.example.com:8443",
            ),
            ("  https://u:pw@Host.COM:443/x/ ", "https://host.com/x"),
            ("HTTP://h:80", "http://h"),
            ("Acme.example.com/Sugar/", "acme.example.com/Sugar"),
            ("ftp://H:21/", "ftp://h:21"),
        ] {
            assert_eq!(normalise_instance(given), want, "{given}");
        }
    }

    #[test]
    fn keys_round_trip_through_their_text_even_with_odd_user_names() {
        let key = SessionKey::new("https://a.example.com", "x|y%z", "p", "sugar")
            .impersonating("../../jim");
        let text = key.canonical();
        assert_eq!(text, "https://a.example.com|x%7Cy%25z|p|sugar|../../jim");
        assert_eq!(SessionKey::parse(&text).unwrap(), key);
        let plain = SessionKey::new("https://a.example.com", "u", "p", "c");
        assert_eq!(SessionKey::parse(&plain.canonical()).unwrap(), plain);
        assert!(SessionKey::parse("a|b").is_err());
        assert!(SessionKey::parse("a|b|c|d|e|f").is_err());
        assert!(SessionKey::parse("a|b%zz|c|d").is_err());
        assert_eq!(
            SessionKey::parse("a|b|c|d|").unwrap().sudo.as_deref(),
            Some("")
        );
    }

    #[test]
    fn digests_are_hex_file_names_and_differ_by_every_part() {
        let base = SessionKey::new("https://a.example.com", "u", "p", "c");
        let d = base.digest();
        assert_eq!(d.len(), 32);
        assert!(d.chars().all(|c| c.is_ascii_hexdigit()));
        let others = [
            SessionKey::new("https://b.example.com", "u", "p", "c"),
            SessionKey::new("https://a.example.com", "v", "p", "c"),
            SessionKey::new("https://a.example.com", "u", "q", "c"),
            SessionKey::new("https://a.example.com", "u", "p", "d"),
            base.impersonating("jim"),
        ];
        for o in others {
            assert_ne!(o.digest(), d, "{o}");
        }
        assert_eq!(
            SessionKey::new("HTTPS://A.example.com/", "u", "p", "c").digest(),
            d
        );
    }
}
