//! What a nameserver in distributed mode reports about etcd: the configuration revision it
//! serves, whether etcd is reachable, since when, and the last error, for `/v1/status` and
//! `/metrics`.
//!
//! Owns: [`EtcdStatus`] and its series. Never: decides anything (the zone source and the
//! vote intake write it; the API and the registry read it).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::SystemTime;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::health::report::unix_ms;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// What a vote read from etcd became.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Verified and taken.
    Accepted,
    /// Already taken (it also came over HTTP, or was read again after a reconnect).
    Duplicate,
    /// Refused: bad signature, unknown key, malformed, clock skew.
    Rejected,
}

impl VoteOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
        }
    }
}

/// The state of the etcd connection and the configuration revision served.
#[derive(Debug)]
pub struct EtcdStatus {
    endpoints: Vec<String>,
    prefix: String,
    revision: AtomicI64,
    connected: AtomicBool,
    changed_at_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
    from_state_dir: AtomicBool,
    revision_gauge: Gauge,
    connected_gauge: Gauge,
    disconnects: Counter,
    votes: Family<ResultLabels, Counter>,
}

/// The `etcd` object of `/v1/status`.
#[derive(Clone, Debug, Serialize)]
pub struct EtcdView {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// Key prefix.
    pub prefix: String,
    /// The configuration revision serving (0 before any push).
    pub config_revision: i64,
    /// Whether etcd answers now.
    pub connected: bool,
    /// Since when (Unix ms) it has been connected or not.
    pub since_ms: u64,
    /// The same, RFC 3339 (UTC).
    pub since: String,
    /// One line for people (`meridian ctl status`): the revision serving, where it came
    /// from, and whether etcd is reachable since when.
    pub summary: String,
    /// The last error, while disconnected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// True while serving a revision read from `--state-dir` (etcd was down at start-up).
    pub from_state_dir: bool,
}

impl EtcdStatus {
    /// Not connected yet, revision 0.
    pub fn new(endpoints: Vec<String>, prefix: String) -> Self {
        Self {
            endpoints,
            prefix,
            revision: AtomicI64::new(0),
            connected: AtomicBool::new(false),
            changed_at_ms: AtomicU64::new(unix_ms(SystemTime::now())),
            last_error: Mutex::new(None),
            from_state_dir: AtomicBool::new(false),
            revision_gauge: Gauge::default(),
            connected_gauge: Gauge::default(),
            disconnects: Counter::default(),
            votes: Family::default(),
        }
    }

    /// Registers `meridian_config_revision`, `meridian_etcd_connected`,
    /// `meridian_etcd_disconnects_total` and `meridian_etcd_votes_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "meridian_config_revision",
            "The etcd revision of the configuration this nameserver serves",
            self.revision_gauge.clone(),
        );
        registry.register(
            "meridian_etcd_connected",
            "1 while etcd answers (with quorum), 0 while the last good state serves without it",
            self.connected_gauge.clone(),
        );
        registry.register(
            "meridian_etcd_disconnects",
            "Times the connection to etcd was lost",
            self.disconnects.clone(),
        );
        registry.register(
            "meridian_etcd_votes",
            "Prober vote sets read from etcd, by result",
            self.votes.clone(),
        );
    }

    /// The configuration revision serving.
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Records the configuration revision serving now.
    pub fn set_revision(&self, revision: i64, from_state_dir: bool) {
        self.revision.store(revision, Ordering::Release);
        self.revision_gauge.set(revision);
        self.from_state_dir.store(from_state_dir, Ordering::Release);
    }

    /// etcd answers.
    pub fn set_connected(&self) {
        if !self.connected.swap(true, Ordering::AcqRel) {
            self.changed_at_ms
                .store(unix_ms(SystemTime::now()), Ordering::Release);
            tracing::info!(endpoints = %self.endpoints.join(","), "etcd connected");
        }
        self.connected_gauge.set(1);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// etcd does not answer: the last good state keeps serving.
    pub fn set_disconnected(&self, error: &str) {
        if self.connected.swap(false, Ordering::AcqRel) {
            self.changed_at_ms
                .store(unix_ms(SystemTime::now()), Ordering::Release);
            self.disconnects.inc();
            tracing::warn!(
                error,
                revision = self.revision(),
                "etcd lost; serving the last good state"
            );
        }
        self.connected_gauge.set(0);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
    }

    /// Whether etcd answers now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Counts a vote set read from etcd.
    pub fn record_vote(&self, outcome: VoteOutcome) {
        self.votes
            .get_or_create(&ResultLabels {
                result: outcome.label(),
            })
            .inc();
    }

    /// For `/v1/status` and `ctl status`.
    pub fn view(&self) -> EtcdView {
        let since_ms = self.changed_at_ms.load(Ordering::Acquire);
        let since = crate::notify::rfc3339(std::time::Duration::from_millis(since_ms));
        let (revision, connected) = (self.revision(), self.connected());
        let from_state_dir = self.from_state_dir.load(Ordering::Acquire);
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        EtcdView {
            endpoints: self.endpoints.clone(),
            prefix: self.prefix.clone(),
            config_revision: revision,
            connected,
            since_ms,
            summary: summary(
                revision,
                connected,
                from_state_dir,
                &since,
                last_error.as_deref(),
            ),
            since,
            last_error,
            from_state_dir,
        }
    }
}

/// [`EtcdView::summary`].
fn summary(
    revision: i64,
    connected: bool,
    from_state_dir: bool,
    since: &str,
    last_error: Option<&str>,
) -> String {
    let serving = match (revision, from_state_dir) {
        (0, _) => "no configuration pushed yet".to_string(),
        (r, true) => format!("serving configuration revision {r} from the state directory"),
        (r, false) => format!("serving configuration revision {r}"),
    };
    if connected {
        format!("{serving}; etcd reachable since {since}")
    } else {
        let why = last_error.map(|e| format!(" ({e})")).unwrap_or_default();
        format!("{serving}; etcd unreachable since {since}{why}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_connection_and_revision() {
        let s = EtcdStatus::new(vec!["http://127.0.0.1:1".into()], "/m/".into());
        let mut registry = Registry::default();
        s.register(&mut registry);
        assert!(!s.connected());
        s.set_connected();
        s.set_revision(7, false);
        s.set_disconnected("connect failed");
        s.set_disconnected("connect failed");
        let v = s.view();
        assert_eq!((v.config_revision, v.connected), (7, false));
        assert_eq!(v.last_error.as_deref(), Some("connect failed"));
        s.record_vote(VoteOutcome::Accepted);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("meridian_config_revision 7"), "{text}");
        assert!(text.contains("meridian_etcd_connected 0"), "{text}");
        assert!(text.contains("meridian_etcd_disconnects_total 1"), "{text}");
        assert!(
            text.contains("meridian_etcd_votes_total{result=\"accepted\"} 1"),
            "{text}"
        );
        assert_eq!(
            v.summary,
            format!(
                "serving configuration revision 7; etcd unreachable since {} (connect failed)",
                v.since
            )
        );
        s.set_connected();
        let v = s.view();
        assert!(v.last_error.is_none());
        assert!(v.since.ends_with('Z') && v.since.len() == 24, "{}", v.since);
        assert_eq!(
            v.summary,
            format!(
                "serving configuration revision 7; etcd reachable since {}",
                v.since
            )
        );
    }

    #[test]
    fn summaries_say_where_the_revision_came_from() {
        let t = "2026-12-02T05:00:00.000Z";
        assert_eq!(
            summary(0, true, false, t, None),
            format!("no configuration pushed yet; etcd reachable since {t}")
        );
        assert_eq!(
            summary(9, false, true, t, Some("timeout")),
            format!(
                "serving configuration revision 9 from the state directory; etcd unreachable since {t} (timeout)"
            )
        );
    }
}
