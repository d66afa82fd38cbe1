//! Prometheus metrics of the sessions, in the text exposition format 0.0.4 (written by the
//! `prometheus` crate, which `promtool check metrics` accepts): `status --format prometheus` now,
//! a daemon's `/metrics` later (with its request counters, which a one-shot command has no
//! history for).

use crate::config::Profile;
use crate::outcome::Outcome;
use crate::session::{Cache, Entry, State};
use chrono::{DateTime, Utc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Opts, Registry, TextEncoder};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The content type of the exposition (`text/plain; version=0.0.4`).
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// The session gauges' families, built from the cache at each scrape as the crate's custom
/// collectors do: a profile's series exist exactly while it is given, with no registry of
/// thousands of children to keep in step (a scrape of 1,000 profiles spent most of its time
/// gathering those). Labels in the order the crate's own vectors write them (by name):
/// `platform`, `profile`, (`state`), `sugar_instance` (the host, port and path of the instance:
/// `instance` is Prometheus' own label for the scraped target), `user`.
struct Sessions<'a> {
    profiles: &'a [Arc<Profile>],
    in_file: usize,
    cache: &'a Cache,
    now: DateTime<Utc>,
    /// The round trip of each profile's last live check (the daemon only).
    latencies: Option<&'a HashMap<String, Duration>>,
}

/// One profile's label values: platform, profile, sugar_instance, user.
type Values = [String; 4];

fn pair(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn gauge(labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_gauge(g);
    m.set_label(labels);
    m
}

fn labels(v: &Values, state: Option<&str>) -> Vec<LabelPair> {
    let mut out = Vec::with_capacity(5);
    out.push(pair("platform", &v[0]));
    out.push(pair("profile", &v[1]));
    if let Some(state) = state {
        out.push(pair("state", state));
    }
    out.push(pair("sugar_instance", &v[2]));
    out.push(pair("user", &v[3]));
    out
}

fn family(name: &str, help: &str, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(MetricType::GAUGE);
    f.set_metric(metrics);
    f
}

/// Writes one family (none when it has no series: the text format has no empty families).
fn write(out: &mut Vec<u8>, f: &MetricFamily) {
    if !f.get_metric().is_empty() {
        TextEncoder::new()
            .encode(std::slice::from_ref(f), out)
            .expect("encoding a well-formed family into memory does not fail");
    }
}

fn secs(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

impl Sessions<'_> {
    /// Writes the session families, one at a time (only one family's series are in memory).
    fn write(&self, out: &mut Vec<u8>) {
        let empty = Entry::default();
        let rows: Vec<(Values, &Entry)> = self
            .profiles
            .iter()
            .map(|p| {
                let values = [
                    p.platform.clone(),
                    p.name.clone(),
                    sugar_instance(p),
                    p.username.clone(),
                ];
                let entry = self.cache.entry(&p.session_key()).unwrap_or(&empty);
                (values, entry)
            })
            .collect();
        let now = self.now;
        let per_row = |f: &dyn Fn(&Entry) -> Option<f64>| -> Vec<Metric> {
            rows.iter()
                .filter_map(|(v, e)| f(e).map(|value| gauge(labels(v, None), value)))
                .collect()
        };
        write(
            out,
            &family(
                "sugar_session_up",
                "1 when the session holds a usable access token, else 0.",
                per_row(&|e| {
                    let up = e.state(now) == State::Active && e.usable_session(now).is_some();
                    Some(f64::from(u8::from(up)))
                }),
            ),
        );
        let mut states = Vec::with_capacity(rows.len() * State::ALL.len());
        for (v, e) in &rows {
            let state = e.state(now);
            for s in State::ALL {
                states.push(gauge(
                    labels(v, Some(s.as_str())),
                    f64::from(u8::from(s == state)),
                ));
            }
        }
        write(
            out,
            &family(
                "sugar_session_state",
                "The session's state: 1 for the state it is in, 0 for the others.",
                states,
            ),
        );
        write(
            out,
            &family(
                "sugar_session_access_expiry_timestamp_seconds",
                "When the session's access token expires (Unix time).",
                per_row(&|e| e.session.as_ref().map(|s| secs(s.expires_at))),
            ),
        );
        write(
            out,
            &family(
                "sugar_session_refresh_expiry_timestamp_seconds",
                "When the session's refresh token expires (Unix time).",
                per_row(&|e| {
                    let s = e.session.as_ref()?;
                    s.refresh_expiry().map(secs)
                }),
            ),
        );
        write(
            out,
            &family(
                "sugar_session_last_success_timestamp_seconds",
                "When the session's tokens were last obtained by a login or a refresh (Unix time).",
                per_row(&|e| e.session.as_ref().map(|s| secs(s.obtained_at))),
            ),
        );
        if let Some(latencies) = self.latencies {
            let metrics = rows
                .iter()
                .filter_map(|(v, _)| {
                    let latency = latencies.get(&v[1])?;
                    Some(gauge(labels(v, None), latency.as_secs_f64()))
                })
                .collect();
            write(
                out,
                &family(
                    "sugar_session_check_latency_seconds",
                    "The round trip of the last live check of the session (GET /ping).",
                    metrics,
                ),
            );
        }
        write(
            out,
            &family(
                "sugar_sessions_profiles",
                "Profiles in the profiles file.",
                vec![gauge(Vec::new(), self.in_file as f64)],
            ),
        );
        write(
            out,
            &family(
                "sugar_build_info",
                "The running sugar-sessions: always 1, its version as a label.",
                vec![gauge(vec![pair("version", env!("CARGO_PKG_VERSION"))], 1.0)],
            ),
        );
    }
}

/// The exposition of the sessions of `profiles` as the cache has them at `now` (`status --format
/// prometheus`). `in_file`: the number of profiles in the file (the ones given may add
/// impersonations).
pub fn sessions_text(
    profiles: &[Arc<Profile>],
    in_file: usize,
    cache: &Cache,
    now: DateTime<Utc>,
) -> Vec<u8> {
    let mut out = Vec::new();
    Sessions {
        profiles,
        in_file,
        cache,
        now,
        latencies: None,
    }
    .write(&mut out);
    out
}

/// The daemon's metrics: the sessions', and what a running process has a history of (the requests
/// it sent, the latency of its last live check of each session).
pub struct DaemonMetrics {
    registry: Registry,
    requests: prometheus::IntCounterVec,
    duration: prometheus::HistogramVec,
}

impl Default for DaemonMetrics {
    fn default() -> DaemonMetrics {
        DaemonMetrics::new()
    }
}

impl DaemonMetrics {
    pub fn new() -> DaemonMetrics {
        let registry = Registry::new();
        let requests = prometheus::IntCounterVec::new(
            Opts::new(
                "sugar_requests_total",
                "Operations sent to Sugar by this daemon, by operation and result (ok, or the failure's kind).",
            ),
            &["op", "result"],
        )
        .expect("a valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        let duration = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "sugar_request_duration_seconds",
                "How long operations sent to Sugar took, by operation.",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["op"],
        )
        .expect("a valid metric");
        registry
            .register(Box::new(duration.clone()))
            .expect("registered once");
        DaemonMetrics {
            registry,
            requests,
            duration,
        }
    }

    /// Counts an operation that ended: `ok`, or its failure's kind (a failure found before
    /// anything was sent, such as a cache that cannot keep the result, counts too). One that found
    /// under the identity's lock that it was no longer needed (another process, or the broker,
    /// had just done it) sent nothing and did nothing, and is not counted.
    pub fn sent(&self, o: &Outcome, took: Duration) {
        if o.ok && o.requests.is_empty() {
            return;
        }
        let op = o.op.as_str();
        self.requests.with_label_values(&[op, o.result()]).inc();
        self.duration
            .with_label_values(&[op])
            .observe(took.as_secs_f64());
    }

    /// The exposition, with the sessions as the cache has them at `now`.
    pub fn render(
        &self,
        profiles: &[Arc<Profile>],
        in_file: usize,
        cache: &Cache,
        now: DateTime<Utc>,
        latencies: &HashMap<String, Duration>,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024 + profiles.len() * 1400);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding into memory does not fail");
        Sessions {
            profiles,
            in_file,
            cache,
            now,
            latencies: Some(latencies),
        }
        .write(&mut out);
        out
    }
}

/// `acme.sugarondemand.com`, `crm.example.com:8443/sugar`: the instance's host, port (when not
/// the default) and path, without the scheme.
pub fn sugar_instance(p: &Profile) -> String {
    let url = &p.url;
    let mut out = url.host_str().unwrap_or_default().to_string();
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(url.path().trim_end_matches('/'));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::session::Session;

    fn profiles() -> Vec<Arc<Profile>> {
        crate::config::parse(
            "[defaults]\nusername = \"u\"\n[profiles.a]\nurl = \"https://a.example.com/crm\"\n[profiles.b]\nurl = \"https://b.example.com:8443\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap()
        .profiles
    }

    fn with_session(p: &Profile, now: DateTime<Utc>) -> Cache {
        let mut cache = Cache::default();
        cache.insert(
            p.session_key(),
            Entry {
                session: Some(Session {
                    access_token: Secret::new("t"),
                    refresh_token: Some(Secret::new("r")),
                    download_token: None,
                    obtained_at: now,
                    expires_at: now + chrono::TimeDelta::hours(1),
                    refresh_expires_at: Some(now + chrono::TimeDelta::days(14)),
                    platform: p.platform.clone(),
                    username: p.username.clone(),
                    url: p.root().to_string(),
                    hard_end: None,
                }),
                ..Entry::default()
            },
        );
        cache
    }

    #[test]
    fn series_follow_the_profiles_and_their_sessions() {
        let now = Utc::now();
        let all = profiles();
        let text =
            String::from_utf8(sessions_text(&all, 2, &with_session(&all[0], now), now)).unwrap();
        assert!(
            text.contains("profile=\"a\",sugar_instance=\"a.example.com/crm\""),
            "{text}"
        );
        assert!(
            text.contains("sugar_instance=\"b.example.com:8443\""),
            "{text}"
        );
        assert!(text.contains("sugar_session_refresh_expiry_timestamp_seconds{"));
        // `b` is gone from the file; `a` logged out.
        let text = String::from_utf8(sessions_text(&all[..1], 1, &Cache::default(), now)).unwrap();
        assert!(!text.contains("profile=\"b\""), "{text}");
        assert!(
            !text.contains("sugar_session_refresh_expiry_timestamp_seconds{"),
            "{text}"
        );
        assert!(
            !text.contains("sugar_session_access_expiry_timestamp_seconds{"),
            "{text}"
        );
        assert!(text.contains(
            "sugar_session_state{platform=\"custom_api\",profile=\"a\",state=\"logged_out\",sugar_instance=\"a.example.com/crm\",user=\"u\"} 1"
        ), "{text}");
        assert!(text.contains("sugar_sessions_profiles 1"));
    }
}
