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
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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
        }
    }

    /// The registry, for a daemon that adds its own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Sets every session gauge from the cache at `now` (profiles no longer given are dropped).
    /// `in_file`: the number of profiles in the file (the ones given may add impersonations).
    pub fn update(
        &self,
        profiles: &[Arc<Profile>],
        in_file: usize,
        cache: &Cache,
        now: DateTime<Utc>,
    ) {
        for g in [
            &self.access_expiry,
            &self.refresh_expiry,
            &self.last_success,
        ] {
            g.reset();
        }
        self.up.reset();
        self.state.reset();
        self.profiles.set(in_file as i64);
        let empty = Entry::default();
        for p in profiles {
            let entry = cache.entry(&p.session_key()).unwrap_or(&empty);
            let instance = sugar_instance(p);
            let labels = [
                p.name.as_str(),
                instance.as_str(),
                p.platform.as_str(),
                p.username.as_str(),
            ];
            let state = entry.state(now);
            let up = state == State::Active && entry.usable_session(now).is_some();
            self.up.with_label_values(&labels).set(i64::from(up));
            for s in State::ALL {
                let mut with_state = labels.to_vec();
                with_state.push(s.as_str());
                self.state
                    .with_label_values(&with_state)
                    .set(i64::from(s == state));
            }
            if let Some(session) = &entry.session {
                let secs = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
                self.access_expiry
                    .with_label_values(&labels)
                    .set(secs(session.expires_at));
                if let (Some(_), Some(r)) = (&session.refresh_token, session.refresh_expires_at) {
                    self.refresh_expiry.with_label_values(&labels).set(secs(r));
                }
                self.last_success
                    .with_label_values(&labels)
                    .set(secs(session.obtained_at));
            }
        }
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
