//! The HTTP side: one fallback handler that parses `/{instance}/rest/{version}/{route...}` itself, so that
//! unknown instances, malformed versions and unknown routes get Sugar's answers rather than axum's.

use super::json::J;
use super::state::{ApiError, Args, Ctx};
use super::tls::TlsListener;
use super::{Fault, RecordedRequest, Shared};
use super::{dataset, records};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::serve::ListenerExt;
use bytes::Bytes;
use futures::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Larger request bodies get 413 (Sugar's PHP would refuse them too).
const MAX_REQUEST_BODY: usize = 1 << 20;

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// `http` or `https`: what the instances' own URLs start with.
    scheme: &'static str,
}

/// Serve until the shutdown flag turns true, then shut down gracefully; over TLS with `tls`.
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            tracing::error!(%error, "emulator listener has no address");
            return;
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let app = Router::new().fallback(handle).with_state(AppState {
        shared,
        addr,
        scheme,
    });
    let mut down = shutdown.clone();
    let signal = async move {
        let _ = down.wait_for(|down| *down).await;
    };
    let served = match tls {
        None => {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
        }
        Some(config) => match TlsListener::new(listener, config, shutdown) {
            Ok(listener) => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(signal)
                    .await
            }
            Err(error) => Err(error),
        },
    };
    if let Err(error) = served {
        tracing::error!(%error, "emulator server stopped");
    }
}

/// `v10`, `v11`, `v11_16` → (major, minor); `None` unless it matches `v\d\d(_\d{1,2})?`.
pub(super) fn parse_version(version: &str) -> Option<(u32, u32)> {
    let rest = version.strip_prefix('v')?;
    let (major, minor) = match rest.split_once('_') {
        Some((major, minor)) => (major, Some(minor)),
        None => (rest, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if major.len() != 2 || !digits(major) {
        return None;
    }
    let minor = match minor {
        Some(m) if m.len() <= 2 && digits(m) => m.parse().ok()?,
        Some(_) => return None,
        None => 0,
    };
    Some((major.parse().ok()?, minor))
}

/// A version as Sugar's configuration writes it: `v11_16` → `11.16`, `v11` → `11`.
fn version_number(version: &str) -> String {
    version.trim_start_matches('v').replace('_', ".")
}

/// An answer before it becomes an HTTP response (kept as bytes so that it can be cut short).
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    location: Option<String>,
}

impl Answer {
    fn json(status: u16, body: &J) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            body: body.encode().into_bytes(),
            location: None,
        }
    }

    fn error(err: &ApiError) -> Answer {
        Answer::json(err.status, &err.body())
    }

    fn html(status: u16, body: String) -> Answer {
        Answer {
            status,
            content_type: "text/html; charset=UTF-8",
            body: body.into_bytes(),
            location: None,
        }
    }

    fn from_result(result: Result<J, ApiError>) -> Answer {
        match result {
            Ok(body) => Answer::json(200, &body),
            Err(err) => Answer::error(&err),
        }
    }

    fn head(&self) -> axum::http::response::Builder {
        let mut builder = Response::builder()
            .status(StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header(header::CACHE_CONTROL, "no-store");
        if !self.body.is_empty() {
            builder = builder.header(header::CONTENT_TYPE, self.content_type);
        }
        if let Some(location) = &self.location
            && let Ok(value) = HeaderValue::from_str(location)
        {
            builder = builder.header(header::LOCATION, value);
        }
        builder
    }

    fn into_response(self) -> Response {
        let builder = self.head();
        builder
            .body(Body::from(self.body))
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }

    /// Headers announcing the whole body, about half of it, then the connection closes.
    fn into_truncated_response(self) -> Response {
        let full = self.body.len();
        let first = Bytes::copy_from_slice(&self.body[..full / 2]);
        let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(first) })
            .chain(futures::stream::once(async {
                // Give the connection a moment to send what it has before it is cut.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "emulator: dropped mid-body",
                ))
            }));
        let builder = self.head().header(header::CONTENT_LENGTH, full.to_string());
        builder
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }
}

fn not_found_html(path: &str) -> Answer {
    let path = path
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    Answer::html(
        404,
        format!(
            "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>\
             <p>The requested URL {path} was not found on this server.</p></body></html>\n"
        ),
    )
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The access token, as Sugar 13+ reads it: the `OAuth-Token` header (any name case) when there is one,
/// even empty; otherwise `Authorization` when it starts with exactly `Bearer ` (case-sensitive, one
/// space), the rest being the token. Also whether either header was taken as carrying a token.
fn token_from_headers(headers: &HeaderMap) -> (Option<String>, bool) {
    let (token, had_header) = match headers.get("oauth-token") {
        Some(oauth) => (oauth.to_str().ok().map(str::trim), true),
        None => {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            (bearer, bearer.is_some())
        }
    };
    let token = token.filter(|t| !t.is_empty()).map(str::to_string);
    (token, had_header)
}

/// Query parameters (PHP's brackets nest), overridden by body fields (JSON object or form-urlencoded).
fn parse_args(headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Args {
    let mut args = Args::default();
    if let Some(query) = query {
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            args.insert_query(&key, value.into_owned());
        }
    }
    let body = body.trim_ascii();
    if body.is_empty() {
        return args;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let json = content_type.contains("json")
        || (!content_type.contains("urlencoded") && body.starts_with(b"{"));
    if json {
        // Like PHP's json_decode: a body that does not parse is simply no arguments.
        if let Ok(serde_json::Value::Object(map)) =
            serde_json::from_slice::<serde_json::Value>(body)
        {
            for (key, value) in map {
                args.insert(key, value);
            }
        }
    } else {
        for (key, value) in url::form_urlencoded::parse(body) {
            args.insert(
                key.into_owned(),
                serde_json::Value::String(value.into_owned()),
            );
        }
    }
    args
}

/// The routes, after the REST root.
enum Route {
    Token,
    Logout,
    Sudo(String),
    Me,
    Ping,
    WhatTimeIsIt,
    Metadata,
    /// `GET {module}`, `GET|POST {module}/filter`.
    List(String),
    /// `GET {module}/count`, `GET|POST {module}/filter/count`.
    Count(String),
    /// `GET {module}/{id}`.
    Record(String, String),
}

/// First segments that are Sugar's own routes, never a module.
const NOT_MODULES: [&str; 4] = ["oauth2", "me", "ping", "metadata"];

fn route(method: &Method, path: &[String]) -> Option<Route> {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    if let Some(module) = path.first().filter(|m| !NOT_MODULES.contains(m)) {
        let module = module.to_string();
        return match (method, &path[1..]) {
            (&Method::GET, []) | (&Method::GET | &Method::POST, ["filter"]) => {
                Some(Route::List(module))
            }
            (&Method::GET, ["count"]) | (&Method::GET | &Method::POST, ["filter", "count"]) => {
                Some(Route::Count(module))
            }
            (&Method::GET, [id]) => Some(Route::Record(module, id.to_string())),
            _ => None,
        };
    }
    match (method, path.as_slice()) {
        (&Method::POST, ["oauth2", "token"]) => Some(Route::Token),
        (&Method::POST, ["oauth2", "logout"]) => Some(Route::Logout),
        (&Method::POST, ["oauth2", "sudo", user]) => Some(Route::Sudo(user.to_string())),
        (&Method::GET, ["me"]) => Some(Route::Me),
        (&Method::GET, ["ping"]) => Some(Route::Ping),
        (&Method::GET, ["ping", "whattimeisit"]) => Some(Route::WhatTimeIsIt),
        (&Method::GET, ["metadata"]) => Some(Route::Metadata),
        _ => None,
    }
}

async fn handle(State(app): State<AppState>, request: Request) -> Response {
    let shared = &app.shared;
    let (parts, body) = request.into_parts();
    let raw_path = parts.uri.path().to_string();
    let segments: Vec<String> = raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let instance = segments.first().cloned().unwrap_or_default();
    let (token, had_token_header) = token_from_headers(&parts.headers);
    let body = axum::body::to_bytes(body, MAX_REQUEST_BODY).await;
    let args = match &body {
        Ok(bytes) => parse_args(&parts.headers, parts.uri.query(), bytes),
        Err(_) => Args::default(),
    };
    let is_rest = segments.get(1).is_some_and(|s| s == "rest");
    let recorded_path = if is_rest && segments.len() >= 3 {
        format!("/{}", segments[3..].join("/"))
    } else {
        raw_path.clone()
    };
    let id = shared.record(RecordedRequest {
        instance: instance.clone(),
        method: parts.method.to_string(),
        path: recorded_path.clone(),
        grant_type: args.text("grant_type"),
        platform: args.text("platform"),
        refresh_token: args.text("refresh_token"),
        had_token_header,
        status: 0,
    });

    let Some((fault, latency)) =
        shared.with_instance(&instance, |i| (i.fault.clone(), i.cfg.latency))
    else {
        shared.set_status(id, 404);
        tracing::debug!(method = %parts.method, path = %raw_path, status = 404, "emulator: unknown instance");
        return not_found_html(&raw_path).into_response();
    };

    let rest_route = is_rest.then(|| {
        segments
            .get(3..)
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    });
    let is_token_route = rest_route
        .as_deref()
        .is_some_and(|r| r == ["oauth2", "token"]);
    let answer = match &fault {
        Some(Fault::Hang) => {
            shared.shutting_down().await;
            let answer = Answer::html(502, String::from("<html></html>"));
            return answer.into_truncated_response();
        }
        Some(Fault::Html502) => Answer::html(
            502,
            "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>\
             </center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
                .to_string(),
        ),
        Some(Fault::Html504) => Answer::html(
            504,
            "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway \
             Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
                .to_string(),
        ),
        Some(Fault::NonJson200) => Answer {
            status: 200,
            content_type: "text/plain",
            body: b"<html><head><title>Network login</title></head><body>Please accept the terms of use to \
                    continue.</body></html>"
                .to_vec(),
            location: None,
        },
        Some(Fault::WrongShape200) => {
            let body = if is_token_route {
                J::obj([
                    ("access_token", J::Int(802_645_827)),
                    ("expires_in", J::s("3600")),
                    ("token_type", J::s("bearer")),
                    ("scope", J::Null),
                ])
            } else {
                J::obj([("foo", J::Int(1))])
            };
            Answer::json(200, &body)
        }
        Some(Fault::Redirect(location)) => {
            Answer { status: 302, content_type: "text/html", body: Vec::new(), location: Some(location.clone()) }
        }
        Some(Fault::Oversized(size)) => Answer::json(200, &J::Null).with_body(oversized_body(*size)),
        None | Some(Fault::Slow(_)) | Some(Fault::DropMidBody) | Some(Fault::LicenseSeats) => match body {
            Err(_) => Answer::error(&ApiError::new(413, "request_too_large", "The request body is too large.")),
            Ok(_) => {
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .unwrap_or_else(|| app.addr.to_string());
                let ctx = Ctx { now: shared.now(), instance_url: format!("{}://{host}/{instance}", app.scheme) };
                sugar(shared, &instance, &parts.method, &segments, rest_route, token, &args, &ctx)
            }
        },
    };

    let extra = match &fault {
        Some(Fault::Slow(delay)) => *delay,
        _ => Duration::ZERO,
    };
    shared.sleep(latency.saturating_add(extra)).await;
    shared.set_status(id, answer.status);
    tracing::debug!(
        method = %parts.method,
        instance = %instance,
        path = %recorded_path,
        status = answer.status,
        "emulator request"
    );
    if fault == Some(Fault::DropMidBody) {
        answer.into_truncated_response()
    } else {
        answer.into_response()
    }
}

impl Answer {
    fn with_body(mut self, body: Vec<u8>) -> Answer {
        self.body = body;
        self
    }
}

/// Valid JSON of exactly `size` bytes: `{"data":"xxx…"}` (or digits when `size` < 11).
fn oversized_body(size: usize) -> Vec<u8> {
    const FRAME: usize = r#"{"data":""}"#.len();
    if size < FRAME {
        return vec![b'1'; size];
    }
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(br#"{"data":""#);
    body.resize(size - 2, b'x');
    body.extend_from_slice(br#""}"#);
    body
}

/// What the Sugar instance itself answers.
#[allow(clippy::too_many_arguments)]
fn sugar(
    shared: &Shared,
    instance: &str,
    method: &Method,
    segments: &[String],
    rest_route: Option<Vec<String>>,
    token: Option<String>,
    args: &Args,
    ctx: &Ctx,
) -> Answer {
    let Some(route_path) = rest_route else {
        // Not under /rest: the web UI, which the emulator only hints at.
        return if segments.len() == 1 && *method == Method::GET {
            Answer::html(
                200,
                format!(
                    "<!DOCTYPE html>\n<html><head><title>SugarCRM</title></head><body><h1>SugarCRM emulator</h1>\
                     <p>Instance {instance}. REST API under /{instance}/rest/v11.</p></body></html>\n"
                ),
            )
        } else {
            not_found_html(&format!("/{}", segments.join("/")))
        };
    };
    let max_version = shared
        .with_instance(instance, |i| i.cfg.max_version.clone())
        .unwrap_or_default();
    let served = match (
        segments.get(2).and_then(|v| parse_version(v)),
        parse_version(&max_version),
    ) {
        (Some(version), Some(max)) => version >= (10, 0) && version <= max,
        _ => false,
    };
    if !served {
        return Answer::error(&ApiError::new(
            301,
            "incorrect_version",
            format!(
                "Please change your requested API version to value between 10 and {}.",
                version_number(&max_version)
            ),
        ));
    }
    let Some(route) = route(method, &route_path) else {
        return Answer::error(&ApiError::new(
            404,
            "no_method",
            format!(
                "Could not find any route that accepted a path like: {}",
                route_path.join("/")
            ),
        ));
    };
    let token = token.as_deref();
    let result = shared.with_instance(instance, |state| -> Result<J, ApiError> {
        if let Route::Token = route {
            return state.token(args, ctx);
        }
        let user = state.authorize(token, ctx)?;
        match route {
            Route::Token => unreachable!("handled above"),
            Route::Logout => Ok(state.logout(user, token.unwrap_or_default(), args)),
            Route::Sudo(user_name) => state.sudo(user, &user_name, args, ctx),
            Route::Me => Ok(state.me(user)),
            Route::Ping => Ok(J::s("pong")),
            Route::WhatTimeIsIt => Ok(J::s(ctx.now.format("%Y-%m-%dT%H:%M:%S+00:00").to_string())),
            Route::Metadata => Ok(metadata(state.server_info(), args)),
            Route::List(module) => state.records().list(&module, args),
            Route::Count(module) => state.records().count(&module, args),
            Route::Record(module, id) => state.records().record(&module, &id, args),
        }
    });
    match result {
        Some(result) => Answer::from_result(result),
        None => not_found_html(&format!("/{}", segments.join("/"))),
    }
}

/// `GET metadata`, honouring `type_filter` (comma-separated) for the sections the emulator knows;
/// `full_module_list` only when named.
fn metadata(server_info: J, args: &Args) -> J {
    let config = J::obj([
        ("maxQueryResult", J::s("20")),
        ("maxRecordFetchSize", J::Int(records::MAX_NUM)),
        ("listMaxEntriesPerPage", J::Int(20)),
        ("systemStatus", J::Arr(Vec::new())),
    ]);
    let filter = args.non_empty("type_filter");
    let wanted = |section: &str| {
        filter
            .as_deref()
            .is_none_or(|f| f.split(',').any(|s| s.trim() == section))
    };
    let hash_input = server_info.encode();
    let mut pairs = Vec::new();
    if wanted("server_info") {
        pairs.push(("server_info".to_string(), server_info));
    }
    if wanted("config") {
        pairs.push(("config".to_string(), config));
    }
    if filter
        .as_deref()
        .is_some_and(|f| f.split(',').any(|s| s.trim() == "full_module_list"))
    {
        pairs.push(("full_module_list".to_string(), records::full_module_list()));
    }
    pairs.push(("_hash".to_string(), J::s(dataset::fnv_hex(&hash_input))));
    J::Obj(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("v10"), Some((10, 0)));
        assert_eq!(parse_version("v11_16"), Some((11, 16)));
        assert_eq!(parse_version("v11_4"), Some((11, 4)));
        assert_eq!(parse_version("v11_"), None);
        assert_eq!(parse_version("v11_123"), None);
        assert_eq!(parse_version("v1"), None);
        assert_eq!(parse_version("11"), None);
        assert_eq!(parse_version("v111"), None);
        assert_eq!(version_number("v11_16"), "11.16");
        assert_eq!(version_number("v11"), "11");
    }

    #[test]
    fn oversized_bodies_are_exact_json() {
        for size in [11, 12, 100, 2 << 20] {
            let body = oversized_body(size);
            assert_eq!(body.len(), size);
            serde_json::from_slice::<serde_json::Value>(&body).unwrap();
        }
        assert_eq!(oversized_body(3), b"111");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("jim%20bob"), "jim bob");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("a%zz"), "a%zz");
    }
}
