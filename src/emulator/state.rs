//! What a Sugar instance remembers (users, access and refresh tokens) and the rules of `sugar-api.md`:
//! login, rotation on refresh, one session per user per platform with a grace period for the superseded
//! access token, logout, sudo, maintenance mode, locked accounts.
//!
//! Everything here takes the emulator's time as an argument: no clock reads, no I/O.

use super::json::J;
use super::records::Records;
use super::{Fault, InstanceConfig, UserConfig};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Duration;

/// Platforms every instance knows without registration.
pub(crate) const BUILTIN_PLATFORMS: [&str; 3] = ["base", "mobile", "portal"];

const MSG_BAD_LOGIN: &str = "You must specify a valid username and password.";
const MSG_LOCKED: &str = "Too many failed login attempts.";
const MSG_NO_AUTH: &str = "No valid authentication for user.";
const MSG_ACCESS_INVALID: &str = "The access token provided is invalid.";
const MSG_ACCESS_EXPIRED: &str = "The access token provided has expired.";
const MSG_REFRESH_INVALID: &str = "Invalid refresh token";
const MSG_BAD_GRANT_TYPE: &str = "Invalid grant_type parameter or parameter missing";
const MSG_MISSING_CREDENTIALS: &str = "Missing parameters. \"username\" and \"password\" required";
const MSG_MISSING_REFRESH: &str = "No \"refresh_token\" parameter found";
const MSG_NO_CLIENT: &str = "Client id was not found in the headers or body";
const MSG_BAD_CLIENT: &str = "The client credentials are invalid";
const MSG_BAD_PLATFORM: &str = "Invalid platform specified.";
const MSG_MAINTENANCE_LOGIN: &str = "SugarCRM is in maintenance mode. Only admins can login. Please contact your administrator for details.";
const MSG_MAINTENANCE: &str = "SugarCRM is in maintenance mode. Please try again later.";
const MSG_LICENSE_SEATS: &str = "The number of active users exceeds the number of licensed seats. Please contact your administrator.";
const MSG_LICENSE_EXPIRED: &str = "The license for this instance has expired. \
    Only administrators can use the application until it is renewed.";
const MSG_NOT_AUTHORIZED: &str = "You are not authorized to perform this action.";

/// An error answer: `{"error": label, "error_message": message, ...extra}` with an HTTP status.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub label: &'static str,
    pub message: Option<String>,
    pub extra: Vec<(&'static str, J)>,
}

impl ApiError {
    pub(crate) fn new(status: u16, label: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            label,
            message: Some(message.into()),
            extra: Vec::new(),
        }
    }

    pub(crate) fn body(&self) -> J {
        let mut pairs = vec![("error".to_string(), J::s(self.label))];
        if let Some(message) = &self.message {
            pairs.push(("error_message".to_string(), J::s(message.clone())));
        }
        for (key, value) in &self.extra {
            pairs.push((key.to_string(), value.clone()));
        }
        J::Obj(pairs)
    }

    fn need_login(message: &str) -> ApiError {
        ApiError::new(401, "need_login", message)
    }
}

/// The arguments of a request: body fields (JSON or form) over query parameters, PHP `$_REQUEST` style.
#[derive(Clone, Debug, Default)]
pub(crate) struct Args {
    fields: HashMap<String, serde_json::Value>,
}

impl Args {
    pub(crate) fn insert(&mut self, key: String, value: serde_json::Value) {
        self.fields.insert(key, value);
    }

    /// A query parameter as PHP's `$_GET` reads it: `filter[0][name][$starts]=A` nests objects
    /// (`[]` appends to an array); a key without brackets is plain text.
    pub(crate) fn insert_query(&mut self, key: &str, text: String) {
        let (base, rest) = match key.find('[') {
            Some(i) if i > 0 && key.ends_with(']') => (&key[..i], &key[i + 1..key.len() - 1]),
            _ => {
                self.insert(key.to_string(), serde_json::Value::String(text));
                return;
            }
        };
        let mut slot = self
            .fields
            .entry(base.to_string())
            .or_insert(serde_json::Value::Null);
        for part in rest.split("][") {
            if !slot.is_object() && !slot.is_array() {
                *slot = if part.is_empty() {
                    serde_json::Value::Array(Vec::new())
                } else {
                    serde_json::Value::Object(serde_json::Map::new())
                };
            }
            slot = match slot {
                serde_json::Value::Array(items) => {
                    items.push(serde_json::Value::Null);
                    items.last_mut().expect("just pushed")
                }
                serde_json::Value::Object(map) => {
                    let part = if part.is_empty() {
                        map.len().to_string()
                    } else {
                        part.to_string()
                    };
                    map.entry(part).or_insert(serde_json::Value::Null)
                }
                _ => unreachable!("made an array or object above"),
            };
        }
        *slot = serde_json::Value::String(text);
    }

    /// A field as sent (JSON body) or nested by [`insert_query`](Self::insert_query).
    pub(crate) fn value(&self, key: &str) -> Option<&serde_json::Value> {
        self.fields.get(key)
    }

    /// A scalar field as text; `None` when absent, null, or not a scalar.
    pub(crate) fn text(&self, key: &str) -> Option<String> {
        match self.fields.get(key)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(if *b { "1".into() } else { String::new() }),
            _ => None,
        }
    }

    /// A field that is present and not PHP-`empty()` ("" and "0" are empty).
    pub(crate) fn non_empty(&self, key: &str) -> Option<String> {
        self.text(key).filter(|s| !s.is_empty() && s != "0")
    }

    /// PHP truthiness of a flag such as `needRefresh`.
    pub(crate) fn truthy(&self, key: &str) -> bool {
        self.non_empty(key)
            .is_some_and(|s| !s.eq_ignore_ascii_case("false"))
    }
}

/// Facts about the request that some answers need.
pub(crate) struct Ctx {
    pub now: DateTime<Utc>,
    /// The instance root as the client sees it, e.g. `http://127.0.0.1:4000/acme` (for the maintenance `url`).
    pub instance_url: String,
}

struct UserState {
    cfg: UserConfig,
    id: String,
    failed_logins: u32,
    locked: bool,
}

struct AccessToken {
    user: usize,
    session: u64,
    expires_at: DateTime<Utc>,
    /// Set when the session was superseded: the token stops working at this instant.
    dead_at: Option<DateTime<Utc>>,
}

struct RefreshToken {
    user: usize,
    platform: String,
    client_id: String,
    session: u64,
    session_start: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// Creation order, to find a user's newest sessions on a platform.
    seq: u64,
}

/// One session chain: a login and every refresh that follows from it.
#[derive(Clone, Copy)]
struct Session {
    id: u64,
    start: DateTime<Utc>,
}

struct Issued {
    access_token: String,
    access_expires: DateTime<Utc>,
    refresh: Option<(String, DateTime<Utc>)>,
}

/// The live state of one instance.
pub(crate) struct InstanceState {
    pub cfg: InstanceConfig,
    pub fault: Option<Fault>,
    users: Vec<UserState>,
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, RefreshToken>,
    seq: u64,
    /// Generated on first use (most tests never ask for records).
    records: Option<Records>,
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(chrono_duration(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn seconds_until(t: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (t - now).num_seconds().max(0)
}

fn new_token() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `[A-Za-z0-9_-]`, 1 to 127 characters (Sugar's Platforms extension: "a-z, A-Z, 0-9, hyphen,
/// underscore"). Names are then matched as written: `SCRIBE` is not `scribe`.
fn platform_name_ok(platform: &str) -> bool {
    !platform.is_empty()
        && platform.len() <= 127
        && platform
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// How many refresh tokens one user may hold on one platform.
fn platform_limit(platform: &str) -> usize {
    if platform == "mobile" { 2 } else { 1 }
}

impl InstanceState {
    pub(crate) fn new(cfg: InstanceConfig) -> InstanceState {
        let users = cfg
            .users
            .iter()
            .map(|u| UserState {
                cfg: u.clone(),
                id: if u.user_name == "admin" {
                    "1".to_string()
                } else {
                    new_token()
                },
                failed_logins: 0,
                locked: false,
            })
            .collect();
        InstanceState {
            cfg,
            fault: None,
            users,
            access: HashMap::new(),
            refresh: HashMap::new(),
            seq: 0,
            records: None,
        }
    }

    /// The instance's records, generated from its name on first use.
    pub(crate) fn records(&mut self) -> &Records {
        let cfg = &self.cfg;
        self.records
            .get_or_insert_with(|| Records::generate(&cfg.name, cfg.accounts, cfg.contacts))
    }

    /// Live refresh tokens (not expired at `now`).
    pub(crate) fn active_sessions(&self, now: DateTime<Utc>) -> usize {
        self.refresh.values().filter(|r| r.expires_at > now).count()
    }

    fn platform_ok(&self, platform: &str) -> bool {
        platform_name_ok(platform)
            && (BUILTIN_PLATFORMS.contains(&platform)
                || self.cfg.platforms.iter().any(|p| p == platform))
    }

    fn find_user(&self, user_name: &str) -> Option<usize> {
        self.users
            .iter()
            .position(|u| u.cfg.user_name.eq_ignore_ascii_case(user_name))
    }

    fn is_admin(&self, user: usize) -> bool {
        self.users[user].cfg.admin
    }

    /// Forget tokens that are long dead (a real server garbage-collects them too).
    fn collect_garbage(&mut self, now: DateTime<Utc>) {
        let horizon = now - chrono::Duration::days(1);
        self.access
            .retain(|_, a| a.expires_at > horizon && a.dead_at.is_none_or(|d| d > now));
        self.refresh.retain(|_, r| r.expires_at > horizon);
    }

    fn maintenance_error(&self, ctx: &Ctx) -> ApiError {
        let mut err = ApiError::new(503, "maintenance", MSG_MAINTENANCE);
        err.extra.push((
            "url",
            J::s(format!("{}/maintenance.html", ctx.instance_url)),
        ));
        err
    }

    fn check_client(&self, args: &Args) -> Result<String, ApiError> {
        let Some(client_id) = args.non_empty("client_id") else {
            return Err(ApiError::new(400, "invalid_client", MSG_NO_CLIENT));
        };
        let secret = args.text("client_secret").unwrap_or_default();
        if self
            .cfg
            .clients
            .iter()
            .any(|(id, s)| *id == client_id && *s == secret)
        {
            Ok(client_id)
        } else {
            Err(ApiError::new(400, "invalid_client", MSG_BAD_CLIENT))
        }
    }

    fn check_platform(&self, args: &Args) -> Result<String, ApiError> {
        let platform = args
            .non_empty("platform")
            .unwrap_or_else(|| "base".to_string());
        if self.platform_ok(&platform) {
            Ok(platform)
        } else {
            Err(ApiError::new(422, "invalid_parameter", MSG_BAD_PLATFORM))
        }
    }

    /// `POST oauth2/token`.
    pub(crate) fn token(&mut self, args: &Args, ctx: &Ctx) -> Result<J, ApiError> {
        self.collect_garbage(ctx.now);
        let grant_type = args.text("grant_type").unwrap_or_default();
        if grant_type != "password" && grant_type != "refresh_token" {
            return Err(ApiError::new(400, "invalid_request", MSG_BAD_GRANT_TYPE));
        }
        let client_id = self.check_client(args)?;
        if grant_type == "password" {
            self.login(args, client_id, ctx)
        } else {
            self.refresh(args, client_id, ctx)
        }
    }

    fn login(&mut self, args: &Args, client_id: String, ctx: &Ctx) -> Result<J, ApiError> {
        let (Some(user_name), Some(password)) = (args.non_empty("username"), args.text("password"))
        else {
            return Err(ApiError::new(
                400,
                "invalid_request",
                MSG_MISSING_CREDENTIALS,
            ));
        };
        if password.is_empty() {
            return Err(ApiError::new(
                400,
                "invalid_request",
                MSG_MISSING_CREDENTIALS,
            ));
        }
        let platform = self.check_platform(args)?;
        let Some(user) = self.find_user(&user_name) else {
            return Err(ApiError::need_login(MSG_BAD_LOGIN));
        };
        let max_failed = self.cfg.max_failed_logins;
        let state = &mut self.users[user];
        if state.locked {
            return Err(ApiError::need_login(MSG_LOCKED));
        }
        if state.cfg.password != password {
            state.failed_logins += 1;
            if max_failed.is_some_and(|max| state.failed_logins >= max) {
                state.locked = true;
            }
            return Err(ApiError::need_login(MSG_BAD_LOGIN));
        }
        if !state.cfg.active {
            return Err(ApiError::need_login(MSG_BAD_LOGIN));
        }
        state.failed_logins = 0;
        if self.cfg.maintenance && !self.is_admin(user) {
            return Err(ApiError::need_login(MSG_MAINTENANCE_LOGIN));
        }
        if self.fault == Some(Fault::LicenseSeats) {
            return Err(ApiError::new(
                403,
                "license_seats_needed",
                MSG_LICENSE_SEATS,
            ));
        }
        self.seq += 1;
        let session = Session {
            id: self.seq,
            start: ctx.now,
        };
        let issued = self.issue(user, &platform, &client_id, session, true, ctx.now);
        Ok(token_body(&issued, ctx.now, true))
    }

    fn refresh(&mut self, args: &Args, client_id: String, ctx: &Ctx) -> Result<J, ApiError> {
        let Some(refresh_token) = args.non_empty("refresh_token") else {
            return Err(ApiError::new(400, "invalid_request", MSG_MISSING_REFRESH));
        };
        let platform = self.check_platform(args)?;
        let Some(old) = self.refresh.get(&refresh_token) else {
            return Err(ApiError::new(400, "invalid_grant", MSG_REFRESH_INVALID));
        };
        if old.client_id != client_id {
            return Err(ApiError::new(400, "invalid_grant", MSG_REFRESH_INVALID));
        }
        if old.expires_at <= ctx.now {
            let expired_at = old.expires_at;
            self.refresh.remove(&refresh_token);
            return Err(ApiError::new(
                400,
                "invalid_grant",
                format!(
                    "Refresh token has expired: it expired at {}",
                    expired_at.format("%Y-%m-%d %H:%M:%S UTC")
                ),
            ));
        }
        let user = old.user;
        if !self.users[user].cfg.active {
            self.refresh.remove(&refresh_token);
            return Err(ApiError::new(400, "invalid_grant", MSG_REFRESH_INVALID));
        }
        if self.cfg.maintenance && !self.is_admin(user) {
            return Err(self.maintenance_error(ctx));
        }
        let session = Session {
            id: old.session,
            start: old.session_start,
        };
        self.refresh.remove(&refresh_token);
        let issued = self.issue(user, &platform, &client_id, session, true, ctx.now);
        Ok(token_body(&issued, ctx.now, true))
    }

    /// Create an access token (and a refresh token), applying the one-session-per-platform rule.
    fn issue(
        &mut self,
        user: usize,
        platform: &str,
        client_id: &str,
        session: Session,
        with_refresh: bool,
        now: DateTime<Utc>,
    ) -> Issued {
        let cap = self
            .cfg
            .max_session_lifetime
            .map(|max| add(session.start, max));
        let capped = |t: DateTime<Utc>| cap.map_or(t, |c| t.min(c));
        let access_token = new_token();
        let access_expires = capped(add(now, self.cfg.access_lifetime));
        self.access.insert(
            access_token.clone(),
            AccessToken {
                user,
                session: session.id,
                expires_at: access_expires,
                dead_at: None,
            },
        );
        let refresh = with_refresh.then(|| {
            let token = new_token();
            let expires = capped(add(now, self.cfg.refresh_lifetime));
            self.seq += 1;
            self.refresh.insert(
                token.clone(),
                RefreshToken {
                    user,
                    platform: platform.to_string(),
                    client_id: client_id.to_string(),
                    session: session.id,
                    session_start: session.start,
                    expires_at: expires,
                    seq: self.seq,
                },
            );
            self.enforce_platform_limit(user, platform, &token, now);
            (token, expires)
        });
        Issued {
            access_token,
            access_expires,
            refresh,
        }
    }

    /// Keep only the newest refresh tokens of `user` on `platform`; the older sessions die quietly.
    fn enforce_platform_limit(
        &mut self,
        user: usize,
        platform: &str,
        newest: &str,
        now: DateTime<Utc>,
    ) {
        let mut others: Vec<(u64, String, u64)> = self
            .refresh
            .iter()
            .filter(|(token, r)| {
                r.user == user && r.platform == platform && token.as_str() != newest
            })
            .map(|(token, r)| (r.seq, token.clone(), r.session))
            .collect();
        others.sort_by_key(|o| std::cmp::Reverse(o.0));
        let grace_end = add(now, self.cfg.superseded_access_grace);
        for (_, token, session) in others.into_iter().skip(platform_limit(platform) - 1) {
            self.refresh.remove(&token);
            for access in self.access.values_mut().filter(|a| a.session == session) {
                access.dead_at = Some(access.dead_at.map_or(grace_end, |d| d.min(grace_end)));
            }
        }
    }

    /// Check an access token; the user it belongs to.
    fn authenticate(&mut self, token: Option<&str>, now: DateTime<Utc>) -> Result<usize, ApiError> {
        let Some(token) = token else {
            return Err(ApiError::need_login(MSG_NO_AUTH));
        };
        let invalid = ApiError::new(401, "invalid_grant", MSG_ACCESS_INVALID);
        let Some(access) = self.access.get(token) else {
            return Err(invalid);
        };
        if access.dead_at.is_some_and(|d| now >= d) {
            self.access.remove(token);
            return Err(invalid);
        }
        if now >= access.expires_at {
            return Err(ApiError::new(401, "invalid_grant", MSG_ACCESS_EXPIRED));
        }
        Ok(access.user)
    }

    /// Authentication for every route but `oauth2/token`, including the maintenance gate (admins pass).
    pub(crate) fn authorize(&mut self, token: Option<&str>, ctx: &Ctx) -> Result<usize, ApiError> {
        self.collect_garbage(ctx.now);
        let result = self.authenticate(token, ctx.now);
        if self.cfg.maintenance {
            return match result {
                Ok(user) if self.is_admin(user) => Ok(user),
                _ => Err(self.maintenance_error(ctx)),
            };
        }
        let user = result?;
        if self.cfg.license_expired && !self.is_admin(user) {
            return Err(ApiError::new(503, "admin_only", MSG_LICENSE_EXPIRED));
        }
        Ok(user)
    }

    /// `POST oauth2/logout` after [`authorize`](Self::authorize) succeeded for `token`.
    pub(crate) fn logout(&mut self, user: usize, token: &str, args: &Args) -> J {
        self.access.remove(token);
        if let Some(refresh_token) = args.non_empty("refresh_token")
            && self
                .refresh
                .get(&refresh_token)
                .is_some_and(|r| r.user == user)
        {
            self.refresh.remove(&refresh_token);
        }
        J::obj([("success", J::Bool(true))])
    }

    /// `POST oauth2/sudo/{user_name}` after [`authorize`](Self::authorize) succeeded for `caller`.
    pub(crate) fn sudo(
        &mut self,
        caller: usize,
        user_name: &str,
        args: &Args,
        ctx: &Ctx,
    ) -> Result<J, ApiError> {
        if !self.is_admin(caller) {
            return Err(ApiError::new(403, "not_authorized", MSG_NOT_AUTHORIZED));
        }
        let client_id = args
            .non_empty("client_id")
            .unwrap_or_else(|| "sugar".to_string());
        if !self.cfg.clients.iter().any(|(id, _)| *id == client_id) {
            return Err(ApiError::new(400, "invalid_client", MSG_BAD_CLIENT));
        }
        let platform = self.check_platform(args)?;
        let Some(user) = self
            .find_user(user_name)
            .filter(|&u| self.users[u].cfg.active)
        else {
            return Err(ApiError::new(
                404,
                "not_found",
                format!("Could not find a user named {user_name}"),
            ));
        };
        let need_refresh = args.truthy("needRefresh");
        self.seq += 1;
        let session = Session {
            id: self.seq,
            start: ctx.now,
        };
        let issued = self.issue(user, &platform, &client_id, session, need_refresh, ctx.now);
        Ok(token_body(&issued, ctx.now, false))
    }

    /// `GET me`.
    pub(crate) fn me(&self, user: usize) -> J {
        let u = &self.users[user];
        let (first, last) = match u.cfg.full_name.rsplit_once(' ') {
            Some((first, last)) => (first.to_string(), last.to_string()),
            None => (String::new(), u.cfg.full_name.clone()),
        };
        J::obj([(
            "current_user",
            J::obj([
                ("type", J::s(if u.cfg.admin { "admin" } else { "user" })),
                ("id", J::s(u.id.clone())),
                ("full_name", J::s(u.cfg.full_name.clone())),
                ("first_name", J::s(first)),
                ("last_name", J::s(last)),
                ("user_name", J::s(u.cfg.user_name.clone())),
                ("is_manager", J::Bool(false)),
                ("is_top_level_manager", J::Bool(false)),
                ("is_password_expired", J::Bool(false)),
                ("status", J::s("Active")),
                (
                    "preferences",
                    J::obj([
                        ("timezone", J::s("UTC")),
                        ("tz_offset", J::s("+0000")),
                        ("tz_offset_sec", J::Int(0)),
                        ("datepref", J::s("m/d/Y")),
                        ("timepref", J::s("h:ia")),
                        ("currency_id", J::s("-99")),
                        ("currency_name", J::s("US Dollars")),
                        ("currency_symbol", J::s("$")),
                        ("language", J::s("en_us")),
                    ]),
                ),
            ]),
        )])
    }

    /// The `server_info` section of `GET metadata`.
    pub(crate) fn server_info(&self) -> J {
        J::obj([
            ("flavor", J::s(self.cfg.flavor.clone())),
            ("version", J::s(self.cfg.version.clone())),
            ("build", J::s("265")),
            (
                "marketing_version",
                J::s(marketing_version(&self.cfg.version)),
            ),
            (
                "product_name",
                J::s(format!("SugarCRM {}", self.cfg.flavor)),
            ),
            ("site_id", J::s(format!("emulator-{}", self.cfg.name))),
        ])
    }
}

/// Sugar's release naming: x.0 ships in Q2 of 2010 + x, each minor release one quarter later.
fn marketing_version(version: &str) -> String {
    let mut parts = version.split('.').map(|p| p.parse::<i64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), minor) if major >= 10 => {
            let quarters = 1 + minor.unwrap_or(0);
            format!("Q{} {}", quarters % 4 + 1, 2010 + major + quarters / 4)
        }
        _ => String::new(),
    }
}

/// The body of a token answer, in Sugar's key order.
fn token_body(issued: &Issued, now: DateTime<Utc>, login: bool) -> J {
    let mut pairs = vec![
        ("access_token", J::s(issued.access_token.clone())),
        (
            "expires_in",
            J::Int(seconds_until(issued.access_expires, now)),
        ),
        ("token_type", J::s("bearer")),
        ("scope", J::Null),
    ];
    if let Some((refresh_token, refresh_expires)) = &issued.refresh {
        pairs.push(("refresh_token", J::s(refresh_token.clone())));
        pairs.push((
            "refresh_expires_in",
            J::Int(seconds_until(*refresh_expires, now)),
        ));
    }
    if login || issued.refresh.is_some() {
        pairs.push(("download_token", J::s(new_token())));
    }
    J::obj(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marketing_versions() {
        assert_eq!(marketing_version("12.0.0"), "Q2 2022");
        assert_eq!(marketing_version("12.2.0"), "Q4 2022");
        assert_eq!(marketing_version("12.3"), "Q1 2023");
        assert_eq!(marketing_version("14.0.1"), "Q2 2024");
        assert_eq!(marketing_version("x"), "");
    }

    #[test]
    fn platform_names() {
        assert!(platform_name_ok("acme_sync-2"));
        assert!(platform_name_ok("SCRIBE"));
        assert!(platform_name_ok("Acme_Sync-2"));
        assert!(!platform_name_ok("Acme Sync"));
        assert!(!platform_name_ok("acmé"));
        assert!(!platform_name_ok("a.b"));
        assert!(!platform_name_ok(""));
        assert!(!platform_name_ok(&"a".repeat(128)));
    }
}
