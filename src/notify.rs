//! Health-transition webhooks (`meridian serve --notify-url URL`): one JSON POST per endpoint
//! state change, per endpoint starting or stopping load shedding and per completed drain, for
//! alerting. Each event carries a severity (P1 a service answers from its fallback, P2 a
//! region of a service has no serving endpoint, P3 an endpoint down or shedding, P4
//! recoveries, shedding stopped and completed drains); `--webhook-min-severity` drops the
//! less urgent ones.
//!
//! Owns: a bounded queue and one delivery task per URL, retries with exponential backoff, and
//! the JSON shape of an event ([`TransitionEvent`], [`ShedEvent`], [`DrainEvent`]).
//!
//! Must never: block or slow the health hub. [`Notifier::notify`] only does `try_send`; a full
//! queue drops the event and counts it (`meridian_notifications_total{result="dropped"}`), so
//! a dead receiver costs memory bounded by [`QUEUE_CAPACITY`] and nothing else.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::health::aggregate::{Severity, Transition};
use crate::health::hub::HealthEvent;
use crate::health::overrides::Override;

/// Events waiting per URL before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 256;
/// Attempts per event (the first try plus retries).
pub const ATTEMPTS: u32 = 5;
/// Wait before the first retry; doubled after each failed attempt.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// How long one POST may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the notifier cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A URL is not http(s).
    #[error("--notify-url {0}: must be an http:// or https:// URL")]
    Url(String),
    /// The TLS setup failed.
    #[error("webhook tls setup: {0}")]
    Tls(String),
    /// The HTTP client cannot be built.
    #[error("webhook client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Region votes behind a transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Votes {
    /// Regions whose fresh votes say up.
    pub up_regions: usize,
    /// Regions whose fresh votes say down.
    pub down_regions: usize,
    /// Per region: fresh up and down votes.
    pub regions: Vec<RegionVotes>,
}

/// One region's fresh votes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegionVotes {
    /// The prober region.
    pub region: String,
    /// Fresh up votes.
    pub up: usize,
    /// Fresh down votes.
    pub down: usize,
}

/// The JSON body POSTed for one transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransitionEvent {
    /// Always `endpoint_health_changed`.
    pub event: &'static str,
    /// `P1` .. `P4`.
    pub severity: Severity,
    /// Zone apex.
    pub zone: String,
    /// Service name relative to the zone.
    pub service: String,
    /// Region of the endpoint (None when the table no longer has it).
    pub region: Option<String>,
    /// The endpoint's address.
    pub endpoint: IpAddr,
    /// State before (`up`/`down`).
    pub from: String,
    /// State after.
    pub to: String,
    /// `votes` or `grace_expired`.
    pub cause: String,
    /// The votes it rests on.
    pub votes: Votes,
    /// When it was decided, RFC 3339 UTC.
    pub time: String,
    /// When it was decided, Unix milliseconds.
    pub time_ms: u64,
}

impl TransitionEvent {
    /// Builds the event of `t` at `at`, with the endpoint's region.
    pub fn new(t: &Transition, region: Option<String>, at: SystemTime) -> Self {
        Self::graded(t, Severity::P3, region, at)
    }

    /// Builds the event of `t` with its severity.
    pub fn graded(
        t: &Transition,
        severity: Severity,
        region: Option<String>,
        at: SystemTime,
    ) -> Self {
        let since = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            event: "endpoint_health_changed",
            severity,
            zone: fqdn(t.key.zone()),
            service: t.key.service().to_string(),
            region,
            endpoint: t.key.address(),
            from: t.from.to_string(),
            to: t.to.to_string(),
            cause: match t.cause {
                crate::health::aggregate::Cause::Votes => "votes",
                crate::health::aggregate::Cause::GraceExpired => "grace_expired",
            }
            .to_string(),
            votes: Votes {
                up_regions: t.votes.up_regions,
                down_regions: t.votes.down_regions,
                regions: t
                    .votes
                    .regions
                    .iter()
                    .map(|r| RegionVotes {
                        region: r.region.clone(),
                        up: r.up,
                        down: r.down,
                    })
                    .collect(),
            },
            time: rfc3339(since),
            time_ms: u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// The JSON body POSTed when a drain override is complete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DrainEvent {
    /// Always `drain_complete`.
    pub event: &'static str,
    /// Always `P4`.
    pub severity: Severity,
    /// The override's id.
    pub override_id: u64,
    /// Zone apex.
    pub zone: String,
    /// Service name relative to the zone.
    pub service: String,
    /// The region it drains, when it names one.
    pub region: Option<String>,
    /// The endpoint it drains, when it names one.
    pub endpoint: Option<IpAddr>,
    /// Since when no resolver can hold an answer with its endpoints, RFC 3339 UTC.
    pub time: String,
    /// The same, Unix milliseconds.
    pub time_ms: u64,
    /// The latest moment its endpoints could have been answered, Unix milliseconds.
    pub last_answer_ms: u64,
    /// The longest TTL they were answered with, seconds.
    pub max_ttl: u32,
}

impl DrainEvent {
    /// The event of a completed drain override.
    pub fn new(o: &Override) -> Self {
        let (last_answer_ms, max_ttl, complete_at_ms) = o.drain.map_or((0, 0, 0), |d| {
            (d.last_answer_ms, d.max_ttl, d.complete_at_ms)
        });
        Self {
            event: "drain_complete",
            severity: Severity::P4,
            override_id: o.id,
            zone: fqdn(&o.target.zone.to_ascii_lowercase()),
            service: o.target.service.clone(),
            region: o.target.region.clone(),
            endpoint: o.target.address,
            time: rfc3339(Duration::from_millis(complete_at_ms)),
            time_ms: complete_at_ms,
            last_answer_ms,
            max_ttl,
        }
    }
}

/// The JSON body POSTed when an up endpoint starts or stops shedding load.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShedEvent {
    /// `endpoint_shedding_started` (P3) or `endpoint_shedding_stopped` (P4).
    pub event: &'static str,
    /// `P3` when it started, `P4` when it stopped.
    pub severity: Severity,
    /// Zone apex.
    pub zone: String,
    /// Service name relative to the zone.
    pub service: String,
    /// Region of the endpoint.
    pub region: String,
    /// The endpoint's address.
    pub endpoint: IpAddr,
    /// Its load now (median of the fresh votes), 0.0-1.0.
    pub load: f64,
    /// The share of its weight it keeps now, 0.0-1.0.
    pub weight_factor: f64,
    /// When it was decided, RFC 3339 UTC.
    pub time: String,
    /// When it was decided, Unix milliseconds.
    pub time_ms: u64,
}

impl ShedEvent {
    /// The event of `s` at `at`.
    pub fn new(s: &crate::health::hub::Shedding, at: SystemTime) -> Self {
        let since = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            event: if s.started {
                "endpoint_shedding_started"
            } else {
                "endpoint_shedding_stopped"
            },
            severity: s.severity(),
            zone: fqdn(s.key.zone()),
            service: s.key.service().to_string(),
            region: s.region.clone(),
            endpoint: s.key.address(),
            load: s.load,
            weight_factor: s.weight_factor,
            time: rfc3339(since),
            time_ms: u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// One webhook body.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    /// An endpoint changed state.
    Endpoint(TransitionEvent),
    /// A drain is complete.
    Drain(DrainEvent),
    /// An endpoint started or stopped shedding load.
    Shed(ShedEvent),
}

impl Event {
    fn severity(&self) -> Severity {
        match self {
            Self::Endpoint(e) => e.severity,
            Self::Drain(e) => e.severity,
            Self::Shed(e) => e.severity,
        }
    }

    fn subject(&self) -> String {
        match self {
            Self::Endpoint(e) => e.endpoint.to_string(),
            Self::Drain(e) => format!("override {}", e.override_id),
            Self::Shed(e) => e.endpoint.to_string(),
        }
    }
}

/// The zone as an absolute name (trailing dot), as zone files and metrics write it.
fn fqdn(zone: &str) -> String {
    if zone.ends_with('.') {
        zone.to_string()
    } else {
        format!("{zone}.")
    }
}

/// Formats a time since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (year, month, day) = crate::geo::civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// What became of one webhook notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// Delivered (2xx).
    Sent,
    /// Given up on after every retry.
    Failed,
    /// Not queued: the queue was full.
    Dropped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Webhook delivery counters. [`Default`] registers nowhere.
#[derive(Debug)]
pub struct NotifyMetrics {
    family: Family<ResultLabels, Counter>,
    sent: Counter,
    failed: Counter,
    dropped: Counter,
}

impl Default for NotifyMetrics {
    fn default() -> Self {
        let family = Family::<ResultLabels, Counter>::default();
        let counter = |result| family.get_or_create(&ResultLabels { result }).clone();
        let (sent, failed, dropped) = (counter("sent"), counter("failed"), counter("dropped"));
        Self {
            family,
            sent,
            failed,
            dropped,
        }
    }
}

impl NotifyMetrics {
    /// Registers `meridian_notifications_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "meridian_notifications",
            "Health-transition webhook deliveries: sent, failed (after all retries), dropped \
             (queue full)",
            self.family.clone(),
        );
    }

    /// Counts a webhook notification: delivered, given up on, or dropped because the queue
    /// was full.
    pub fn record_notification(&self, outcome: NotifyOutcome) {
        match outcome {
            NotifyOutcome::Sent => self.sent.inc(),
            NotifyOutcome::Failed => self.failed.inc(),
            NotifyOutcome::Dropped => self.dropped.inc(),
        };
    }
}

/// Finds the region of an endpoint: `(zone with trailing dot, service, address)`.
pub type RegionLookup = Arc<dyn Fn(&str, &str, IpAddr) -> Option<String> + Send + Sync>;

/// Queues transition events for each webhook URL.
pub struct Notifier {
    queues: Vec<(String, mpsc::Sender<Arc<Event>>)>,
    metrics: Arc<NotifyMetrics>,
    region: RegionLookup,
    min_severity: Severity,
}

impl Notifier {
    /// Starts one delivery task per URL. Must be called inside a Tokio runtime.
    pub fn start(
        urls: &[String],
        metrics: Arc<NotifyMetrics>,
        region: RegionLookup,
    ) -> Result<Self, NotifyError> {
        for url in urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(NotifyError::Url(url.clone()));
            }
        }
        let spec = crate::probe::check::CheckSpec::new(crate::probe::check::CheckKind::Https, 443);
        let tls =
            crate::probe::check::tls_config(&spec).map_err(|e| NotifyError::Tls(e.to_string()))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("meridian/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()?;
        let mut queues = Vec::new();
        for url in urls {
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            tokio::spawn(deliver(
                client.clone(),
                url.clone(),
                rx,
                Arc::clone(&metrics),
            ));
            queues.push((url.clone(), tx));
        }
        Ok(Self {
            queues,
            metrics,
            region,
            min_severity: Severity::P4,
        })
    }

    /// Sends only events at least as urgent as `min` (`--webhook-min-severity`; P4, all, by
    /// default).
    pub fn with_min_severity(mut self, min: Severity) -> Self {
        self.min_severity = min;
        self
    }

    /// Queues the event for every URL without waiting; a full queue drops it (counted,
    /// logged). Events less urgent than the minimum severity are not sent.
    pub fn notify(&self, e: HealthEvent<'_>) {
        let event = match e {
            HealthEvent::Endpoint(t, severity) => {
                let region = (self.region)(&fqdn(t.key.zone()), t.key.service(), t.key.address());
                Event::Endpoint(TransitionEvent::graded(
                    t,
                    severity,
                    region,
                    SystemTime::now(),
                ))
            }
            HealthEvent::DrainComplete(o) => Event::Drain(DrainEvent::new(o)),
            HealthEvent::Shedding(s) => Event::Shed(ShedEvent::new(s, SystemTime::now())),
        };
        if event.severity() > self.min_severity {
            return;
        }
        let event = Arc::new(event);
        for (url, tx) in &self.queues {
            if tx.try_send(Arc::clone(&event)).is_err() {
                self.metrics.record_notification(NotifyOutcome::Dropped);
                tracing::warn!(url = %url, subject = %event.subject(), "webhook queue full; notification dropped");
            }
        }
    }
}

/// Delivers the events of one URL in order, each with retries, until the notifier is gone.
async fn deliver(
    client: reqwest::Client,
    url: String,
    mut rx: mpsc::Receiver<Arc<Event>>,
    metrics: Arc<NotifyMetrics>,
) {
    while let Some(event) = rx.recv().await {
        let body = match serde_json::to_vec(&*event) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "webhook event does not serialize");
                continue;
            }
        };
        let mut delay = FIRST_RETRY;
        let mut attempt = 1;
        loop {
            let result = client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let error = match result {
                Ok(resp) if resp.status().is_success() => {
                    metrics.record_notification(NotifyOutcome::Sent);
                    tracing::debug!(url = %url, subject = %event.subject(), "webhook delivered");
                    break;
                }
                Ok(resp) => format!("status {}", resp.status().as_u16()),
                Err(e) => e.to_string(),
            };
            if attempt >= ATTEMPTS {
                metrics.record_notification(NotifyOutcome::Failed);
                tracing::warn!(url = %url, subject = %event.subject(), error = %error, attempts = attempt, "webhook failed; giving up on this event");
                break;
            }
            tracing::debug!(url = %url, error = %error, attempt, "webhook failed; retrying");
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::aggregate::{Cause, Health, Tally};
    use crate::health::report::EndpointKey;

    fn transition() -> Transition {
        Transition {
            key: EndpointKey::new("gslb.test", "www", "192.0.2.1".parse().unwrap()).unwrap(),
            from: Health::Up,
            to: Health::Down,
            cause: Cause::Votes,
            votes: Tally::default(),
        }
    }

    #[tokio::test]
    async fn a_stuck_receiver_costs_dropped_events_not_time() {
        // Accepts connections and never answers: the first POST hangs until its timeout.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let _hold = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                open.push(s);
            }
        });
        let metrics = Arc::new(NotifyMetrics::default());
        let registry = crate::metrics::Metrics::new(|r| metrics.register(r));
        let lookup: RegionLookup = Arc::new(|_, _, _| Some("eu".to_string()));
        let notifier = Notifier::start(&[url], Arc::clone(&metrics), lookup).unwrap();
        let extra = 50;
        let started = std::time::Instant::now();
        let t = transition();
        for _ in 0..QUEUE_CAPACITY + 1 + extra {
            notifier.notify(HealthEvent::Endpoint(&t, Severity::P3));
        }
        assert!(started.elapsed() < Duration::from_secs(1), "notify blocked");
        let text = registry.render();
        let dropped = text
            .lines()
            .find(|l| l.starts_with(r#"meridian_notifications_total{result="dropped"}"#))
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.parse::<f64>().unwrap())
            .unwrap();
        // At most one event is in flight; the queue holds QUEUE_CAPACITY; the rest drop.
        assert!(
            (extra as f64..=extra as f64 + 1.0).contains(&dropped),
            "dropped {dropped}"
        );
    }

    #[test]
    fn events_carry_the_zone_as_an_absolute_name() {
        let e = TransitionEvent::new(&transition(), Some("eu".into()), SystemTime::UNIX_EPOCH);
        assert_eq!(e.zone, "gslb.test.");
        assert_eq!(e.region.as_deref(), Some("eu"));
        assert_eq!((e.from.as_str(), e.to.as_str()), ("up", "down"));
        assert_eq!(e.time, "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(Duration::from_millis(951_782_400_123)),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(1_798_761_599)),
            "2026-12-31T23:59:59.000Z"
        );
    }
}
