//! Prometheus metrics of the sessions, in the text exposition format 0.0.4 (written by the
//! `prometheus` crate, which `promtool check metrics` accepts): `status --format prometheus` now,
//! a daemon's `/metrics` later (with its request counters, which a one-shot command has no
//! history for).

use crate::config::Profile;
use crate::session::{Cache, Entry, State};
use chrono::{DateTime, Utc};
use prometheus::{Encoder, GaugeVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use std::sync::Arc;

/// The content type of the exposition (`text/plain; version=0.0.4`).
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// The labels of every session metric. `sugar_instance` is the host (and port, and path) of the
/// instance: `instance` is Prometheus' own label for the scraped target.
const LABELS: [&str; 4] = ["profile", "sugar_instance", "platform", "user"];

/// The session gauges, registered in a registry of their own.
pub struct SessionMetrics {
    registry: Registry,
    up: IntGaugeVec,
    state: IntGaugeVec,
    access_expiry: GaugeVec,
    refresh_expiry: GaugeVec,
    last_success: GaugeVec,
    profiles: IntGauge,
    /// What the last update set, by profile: a scrape sets values in place and removes only what
    /// is gone (rebuilding thousands of series each scrape was most of its time).
    last: std::sync::Mutex<std::collections::HashMap<String, Seen>>,
}

/// The series one profile had.
#[derive(PartialEq, Eq)]
struct Seen {
    labels: [String; 4],
    session: bool,
    refresh: bool,
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

fn int_gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

impl Default for SessionMetrics {
    fn default() -> SessionMetrics {
        SessionMetrics::new()
    }
}

impl SessionMetrics {
    pub fn new() -> SessionMetrics {
        let registry = Registry::new();
        let with_state = [LABELS.as_slice(), &["state"]].concat();
        let up = int_gauge_vec(
            &registry,
            "sugar_session_up",
            "1 when the session holds a usable access token, else 0.",
            &LABELS,
        );
        let state = int_gauge_vec(
            &registry,
            "sugar_session_state",
            "The session's state: 1 for the state it is in, 0 for the others.",
            &with_state,
        );
        let access_expiry = gauge_vec(
            &registry,
            "sugar_session_access_expiry_timestamp_seconds",
            "When the session's access token expires (Unix time).",
            &LABELS,
        );
        let refresh_expiry = gauge_vec(
            &registry,
            "sugar_session_refresh_expiry_timestamp_seconds",
            "When the session's refresh token expires (Unix time).",
            &LABELS,
        );
        let last_success = gauge_vec(
            &registry,
            "sugar_session_last_success_timestamp_seconds",
            "When the session's tokens were last obtained by a login or a refresh (Unix time).",
            &LABELS,
        );
        let profiles = IntGauge::new("sugar_sessions_profiles", "Profiles in the profiles file.")
            .expect("a valid metric");
        registry
            .register(Box::new(profiles.clone()))
            .expect("registered once");
        let build = IntGaugeVec::new(
            Opts::new(
                "sugar_build_info",
                "The running sugar-sessions: always 1, its version as a label.",
            ),
            &["version"],
        )
        .expect("a valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build)).expect("registered once");
        SessionMetrics {
            registry,
            up,
            state,
            access_expiry,
            refresh_expiry,
            last_success,
            profiles,
            last: std::sync::Mutex::default(),
        }
    }

    /// The registry, for a daemon that adds its own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Sets every session gauge from the cache at `now`; the series of profiles no longer given
    /// (or of values a session no longer has) are removed. `in_file`: the number of profiles in the
    /// file (the ones given may add impersonations).
    pub fn update(
        &self,
        profiles: &[Arc<Profile>],
        in_file: usize,
        cache: &Cache,
        now: DateTime<Utc>,
    ) {
        self.profiles.set(in_file as i64);
        let empty = Entry::default();
        let mut seen = std::collections::HashMap::with_capacity(profiles.len());
        for p in profiles {
            let entry = cache.entry(&p.session_key()).unwrap_or(&empty);
            let labels = [
                p.name.clone(),
                sugar_instance(p),
                p.platform.clone(),
                p.username.clone(),
            ];
            let l: [&str; 4] = [&labels[0], &labels[1], &labels[2], &labels[3]];
            let state = entry.state(now);
            let up = state == State::Active && entry.usable_session(now).is_some();
            self.up.with_label_values(&l).set(i64::from(up));
            for s in State::ALL {
                self.state
                    .with_label_values(&[l[0], l[1], l[2], l[3], s.as_str()])
                    .set(i64::from(s == state));
            }
            let secs = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
            let session = entry.session.as_ref();
            if let Some(session) = session {
                self.access_expiry
                    .with_label_values(&l)
                    .set(secs(session.expires_at));
                self.last_success
                    .with_label_values(&l)
                    .set(secs(session.obtained_at));
            }
            let refresh = session.and_then(|s| s.refresh_token.as_ref().and(s.refresh_expires_at));
            if let Some(r) = refresh {
                self.refresh_expiry.with_label_values(&l).set(secs(r));
            }
            seen.insert(
                p.name.clone(),
                Seen {
                    labels,
                    session: session.is_some(),
                    refresh: refresh.is_some(),
                },
            );
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        for (name, old) in last.drain() {
            let l: [&str; 4] = [
                &old.labels[0],
                &old.labels[1],
                &old.labels[2],
                &old.labels[3],
            ];
            let new = seen.get(&name).filter(|n| n.labels == old.labels);
            if new.is_none() {
                let _ = self.up.remove_label_values(&l);
                for s in State::ALL {
                    let _ = self
                        .state
                        .remove_label_values(&[l[0], l[1], l[2], l[3], s.as_str()]);
                }
            }
            if old.session && !new.is_some_and(|n| n.session) {
                let _ = self.access_expiry.remove_label_values(&l);
                let _ = self.last_success.remove_label_values(&l);
            }
            if old.refresh && !new.is_some_and(|n| n.refresh) {
                let _ = self.refresh_expiry.remove_label_values(&l);
            }
        }
        *last = seen;
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding into memory does not fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The daemon's metrics: the sessions', and what a running process has a history of (the requests
/// it sent, the latency of its last live check of each session).
pub struct DaemonMetrics {
    pub sessions: SessionMetrics,
    requests: prometheus::IntCounterVec,
    duration: prometheus::HistogramVec,
    check_latency: GaugeVec,
}

impl Default for DaemonMetrics {
    fn default() -> DaemonMetrics {
        DaemonMetrics::new()
    }
}

impl DaemonMetrics {
    pub fn new() -> DaemonMetrics {
        let sessions = SessionMetrics::new();
        let registry = sessions.registry();
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
        let check_latency = gauge_vec(
            registry,
            "sugar_session_check_latency_seconds",
            "The round trip of the last live check of the session (GET /ping).",
            &LABELS,
        );
        DaemonMetrics {
            sessions,
            requests,
            duration,
            check_latency,
        }
    }

    /// Counts an operation that ended: `result` is `ok` or the failure's kind.
    pub fn request(&self, op: &str, result: &str, took: std::time::Duration) {
        self.requests.with_label_values(&[op, result]).inc();
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
        latencies: &std::collections::HashMap<String, std::time::Duration>,
    ) -> String {
        self.sessions.update(profiles, in_file, cache, now);
        self.check_latency.reset();
        for p in profiles {
            if let Some(latency) = latencies.get(&p.name) {
                let instance = sugar_instance(p);
                self.check_latency
                    .with_label_values(&[&p.name, &instance, &p.platform, &p.username])
                    .set(latency.as_secs_f64());
            }
        }
        self.sessions.encode()
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
        cache.sessions.insert(
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
    fn series_follow_the_profiles_and_sessions_from_one_scrape_to_the_next() {
        let now = Utc::now();
        let all = profiles();
        let m = SessionMetrics::new();
        m.update(&all, 2, &with_session(&all[0], now), now);
        let text = m.encode();
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
        m.update(&all[..1], 1, &Cache::default(), now);
        let text = m.encode();
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
