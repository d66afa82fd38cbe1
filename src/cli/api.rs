//! `api NAME [METHOD] PATH`: one authenticated request to the profile's REST root, as `gh api`
//! does for GitHub; `--paginate` follows Sugar's `next_offset`.

use super::{ApiArgs, Cli, Usage, one_profile_engine};
use crate::config::Profile;
use crate::exit;
use crate::runtime::{ApiError, Engine, NoToken};
use crate::sugar::RawAnswer;
use crate::text::strip_controls;
use reqwest::Method;
use serde_json::Value;
use std::io::{IsTerminal, Read, Write};

/// The most pages `--paginate` follows (a server that never says -1 is not followed forever).
const MAX_PAGES: usize = 100_000;

fn usage(text: impl std::fmt::Display) -> Usage {
    Usage(format!("sugar-sessions: {text}"))
}

/// What was asked: the method, the path below the REST root and its query, the body.
#[derive(Debug, PartialEq)]
struct Request {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
}

impl Request {
    /// `/path?query`, as sent below `/rest/{api}`.
    fn target(&self) -> String {
        let mut out = format!("/{}", self.path);
        if !self.query.is_empty() {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &self.query {
                q.append_pair(k, v);
            }
            out.push('?');
            out.push_str(&q.finish());
        }
        out
    }

    fn set_query(&mut self, key: &str, value: String) {
        self.query.retain(|(k, _)| k != key);
        self.query.push((key.to_string(), value));
    }
}

fn parse_method(text: &str) -> Result<Method, Usage> {
    const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
    let upper = text.to_ascii_uppercase();
    if METHODS.contains(&upper.as_str()) {
        Ok(Method::from_bytes(upper.as_bytes()).expect("a known method"))
    } else {
        Err(usage(format!(
            "not an HTTP method: {:?} (one of {}; or give only the path)",
            strip_controls(text),
            METHODS.join(", ")
        )))
    }
}

/// The path below the REST root: relative (a leading `/` allowed). An absolute URL, or `//host`,
/// is refused: the token goes only to the profile's own instance.
fn split_path(path: &str) -> Result<(String, Vec<(String, String)>), Usage> {
    let refused = || {
        usage(format!(
            "{:?} is not a path below the profile's REST root (an absolute URL or //host is refused: the token goes only to the profile's instance)",
            strip_controls(path)
        ))
    };
    if path.starts_with("//") || path.starts_with("\\\\") || path.contains("://") {
        return Err(refused());
    }
    if url::Url::parse(path).is_ok() {
        return Err(refused());
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let query = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok((path.trim_start_matches('/').to_string(), query))
}

/// `--data`: the text, `@FILE`, or `@-` (standard input); it must be JSON.
fn read_data(data: &str) -> Result<Value, Usage> {
    let (text, from) = if data == "@-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| usage(format!("cannot read --data from standard input: {e}")))?;
        (buf, "standard input".to_string())
    } else if let Some(file) = data.strip_prefix('@') {
        let buf =
            std::fs::read(file).map_err(|e| usage(format!("cannot read --data {file}: {e}")))?;
        (buf, file.to_string())
    } else {
        (data.as_bytes().to_vec(), "--data".to_string())
    };
    serde_json::from_slice(&text).map_err(|e| usage(format!("{from} is not JSON: {e}")))
}

fn request(args: &ApiArgs) -> Result<Request, Usage> {
    let (method, path) = match &args.second {
        Some(path) => (parse_method(&args.first)?, path.as_str()),
        None if args.data.is_some() => (Method::POST, args.first.as_str()),
        None => (Method::GET, args.first.as_str()),
    };
    let (path, mut query) = split_path(path)?;
    for q in &args.query {
        let (k, v) = q
            .split_once('=')
            .ok_or_else(|| usage(format!("-q takes KEY=VALUE, not {:?}", strip_controls(q))))?;
        query.push((k.to_string(), v.to_string()));
    }
    let body = args.data.as_deref().map(read_data).transpose()?;
    Ok(Request {
        method,
        path,
        query,
        body,
    })
}

/// How `--paginate` moves to the next page.
#[derive(Debug, PartialEq)]
enum Paging {
    /// `offset` in the query (GET list endpoints).
    Query,
    /// `offset` in the JSON body (`POST {Module}/filter`).
    Body,
}

fn paging(r: &Request) -> Result<Paging, Usage> {
    let filter = r.path.trim_end_matches('/').ends_with("/filter") || r.path == "filter";
    match r.method {
        Method::GET => Ok(Paging::Query),
        Method::POST if filter => match &r.body {
            None | Some(Value::Object(_)) => Ok(Paging::Body),
            Some(_) => Err(usage(
                "--paginate needs a JSON object as the filter's --data",
            )),
        },
        _ => Err(usage(
            "--paginate follows next_offset of GET list endpoints (in the query) and of POST {Module}/filter (in the body)",
        )),
    }
}

pub(super) async fn api(cli: &Cli, args: &ApiArgs) -> Result<i32, Usage> {
    let mut r = request(args)?;
    let paging = if args.paginate {
        Some(paging(&r)?)
    } else {
        None
    };
    let (p, engine) = one_profile_engine(cli, "api", &args.name)?;
    let terminal = std::io::stdout().is_terminal();
    let Some(paging) = paging else {
        let answer = match send(&engine, &p, &r).await {
            Ok(answer) => answer,
            Err(code) => return Ok(code),
        };
        print_body(&answer, terminal);
        return Ok(judge(&p, &answer));
    };
    let mut records = Vec::new();
    let mut offset: Option<i64> = None;
    for page in 1..=MAX_PAGES {
        if let Some(at) = offset {
            match paging {
                Paging::Query => r.set_query("offset", at.to_string()),
                Paging::Body => {
                    let body = r
                        .body
                        .get_or_insert_with(|| Value::Object(Default::default()));
                    body["offset"] = Value::from(at);
                }
            }
        }
        let answer = match send(&engine, &p, &r).await {
            Ok(answer) => answer,
            Err(code) => return Ok(code),
        };
        if !(200..300).contains(&answer.status) {
            print_body(&answer, terminal);
            return Ok(judge(&p, &answer));
        }
        let (page_records, next) = match page_of(&answer.body) {
            Ok(found) => found,
            Err(what) => {
                eprintln!(
                    "{}: page {page} of {}: {what}",
                    p.name,
                    strip_controls(&r.path)
                );
                return Ok(exit::FAILED);
            }
        };
        records.extend(page_records);
        if next < 0 {
            let all = Value::Array(records);
            let text = if terminal {
                serde_json::to_string_pretty(&all)
            } else {
                serde_json::to_string(&all)
            }
            .expect("JSON values serialise");
            println!("{text}");
            return Ok(exit::OK);
        }
        if offset.is_some_and(|at| next <= at) {
            eprintln!(
                "{}: page {page} of {}: next_offset {next} does not move past {} (the server repeats a page)",
                p.name,
                strip_controls(&r.path),
                offset.unwrap_or_default()
            );
            return Ok(exit::FAILED);
        }
        offset = Some(next);
    }
    eprintln!("{}: more than {MAX_PAGES} pages: stopped", p.name);
    Ok(exit::FAILED)
}

/// A page of a list answer: its records and `next_offset`.
fn page_of(body: &[u8]) -> Result<(Vec<Value>, i64), String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let records = match v.get("records") {
        Some(Value::Array(r)) => r.clone(),
        _ => return Err("no \"records\" array: not a list endpoint".into()),
    };
    let next = v
        .get("next_offset")
        .and_then(Value::as_i64)
        .ok_or("no numeric \"next_offset\": not a list endpoint")?;
    Ok((records, next))
}

/// Sends the request; a failure to get an answer at all is said on stderr and becomes the exit
/// status.
async fn send(engine: &Engine, p: &Profile, r: &Request) -> Result<RawAnswer, i32> {
    let body = r
        .body
        .as_ref()
        .map(|b| serde_json::to_vec(b).expect("JSON values serialise"));
    match engine
        .api(p, r.method.clone(), &r.target(), body.as_deref())
        .await
    {
        Ok(answered) => {
            for note in answered.notes {
                eprintln!("{note}");
            }
            Ok(answered.answer)
        }
        Err(ApiError::NoToken(NoToken::NeedsLogin(msg))) => {
            eprintln!("{msg}");
            Err(exit::NEEDS_LOGIN)
        }
        Err(ApiError::NoToken(NoToken::Failed(msg)) | ApiError::Failed(msg)) => {
            eprintln!("{msg}");
            Err(exit::FAILED)
        }
    }
}

/// The body on stdout: pretty JSON on a terminal (text without control characters), the bytes
/// as they came otherwise.
fn print_body(answer: &RawAnswer, terminal: bool) {
    let mut out = std::io::stdout().lock();
    if answer.body.is_empty() {
        return;
    }
    if !terminal {
        let _ = out.write_all(&answer.body);
        return;
    }
    let text = match serde_json::from_slice::<Value>(&answer.body) {
        // serde_json escapes control characters in strings.
        Ok(v) => serde_json::to_string_pretty(&v).expect("JSON values serialise"),
        Err(_) => strip_controls(&String::from_utf8_lossy(&answer.body)),
    };
    let _ = writeln!(out, "{}", text.trim_end());
}

/// 0 for a 2xx answer; else 1, with Sugar's `error` label and `error_message` on stderr.
fn judge(p: &Profile, answer: &RawAnswer) -> i32 {
    if (200..300).contains(&answer.status) {
        return exit::OK;
    }
    let v: Option<Value> = serde_json::from_slice(&answer.body).ok();
    let field = |name: &str| {
        v.as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(strip_controls)
    };
    let mut line = format!("{}: HTTP {}", p.name, answer.status);
    if let Some(label) = field("error") {
        line.push(' ');
        line.push_str(&label);
    }
    if let Some(message) = field("error_message") {
        line.push_str(": ");
        line.push_str(&message);
    }
    eprintln!("{line}");
    exit::FAILED
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(first: &str, second: Option<&str>) -> ApiArgs {
        ApiArgs {
            name: "acme".into(),
            first: first.into(),
            second: second.map(Into::into),
            data: None,
            query: vec![],
            paginate: false,
        }
    }

    #[test]
    fn the_method_is_optional_and_the_path_relative() {
        let r = request(&args("/me", None)).unwrap();
        assert_eq!(
            (r.method.clone(), r.target()),
            (Method::GET, "/me".to_string())
        );
        let r = request(&args("delete", Some("Accounts/1"))).unwrap();
        assert_eq!(
            (r.method.clone(), r.target()),
            (Method::DELETE, "/Accounts/1".to_string())
        );
        let mut a = args("Accounts?fields=name", None);
        a.query = vec!["max_num=5".into(), "q=a b&c".into()];
        assert_eq!(
            request(&a).unwrap().target(),
            "/Accounts?fields=name&max_num=5&q=a+b%26c"
        );
        let mut a = args("Contacts/filter", None);
        a.data = Some("{\"max_num\": 2}".into());
        assert_eq!(request(&a).unwrap().method, Method::POST);
    }

    #[test]
    fn another_host_is_refused() {
        for path in [
            "https://evil.example.com/rest/v11/me",
            "//evil.example.com/me",
            "http:evil",
            "\\\\evil\\me",
        ] {
            let Err(Usage(e)) = request(&args(path, None)) else {
                panic!("{path} was accepted");
            };
            assert!(e.contains("refused"), "{e}");
        }
        let Err(Usage(e)) = request(&args("FETCH", Some("/me"))) else {
            panic!("a bad method was accepted");
        };
        assert!(e.contains("not an HTTP method"), "{e}");
    }

    #[test]
    fn bad_data_and_queries_are_located() {
        let mut a = args("Accounts", None);
        a.data = Some("{\"name\": }".into());
        let Err(Usage(e)) = request(&a) else {
            panic!("bad JSON was accepted")
        };
        assert!(
            e.contains("--data is not JSON") && e.contains("column"),
            "{e}"
        );
        let mut a = args("Accounts", None);
        a.query = vec!["max_num".into()];
        let Err(Usage(e)) = request(&a) else {
            panic!("a query without = was accepted")
        };
        assert!(e.contains("KEY=VALUE"), "{e}");
    }

    #[test]
    fn paging_is_by_query_for_get_and_by_body_for_filter() {
        let r = request(&args("Accounts", None)).unwrap();
        assert_eq!(paging(&r).unwrap(), Paging::Query);
        let r = request(&args("POST", Some("Contacts/filter"))).unwrap();
        assert_eq!(paging(&r).unwrap(), Paging::Body);
        let r = request(&args("POST", Some("Contacts"))).unwrap();
        assert!(paging(&r).is_err());
        assert_eq!(
            page_of(br#"{"next_offset": -1, "records": [{"id": "1"}]}"#).unwrap(),
            (vec![serde_json::json!({"id": "1"})], -1)
        );
        assert!(page_of(br#"{"id": "1"}"#).unwrap_err().contains("records"));
    }
}
