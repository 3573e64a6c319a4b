//! `GET /v1/history`: the last 15 minutes of queries per second by rcode and answers per second
//! by region, for the status page's charts. A background task samples the counters `/metrics`
//! exports every [`INTERVAL`] into a ring of [`SAMPLES`] samples; no external service.
//!
//! Owns: the ring buffer and the rates computed from it. Reads the two totals it charts from
//! the counters through [`Totals`] (`meridian_queries_total` by `rcode`, summed over
//! transports; `meridian_service_answers_total` summed by `region` over zones, services and
//! outcomes), never by rendering `/metrics`, so it adds nothing to the query path and little
//! to an idle server. Control plane only.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ApiState;
use crate::dns::metrics::DnsMetrics;
use crate::routing::counters::TableMetrics;

/// Time between samples.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Samples kept: 15 minutes at [`INTERVAL`].
pub const SAMPLES: usize = 90;

/// Counter values at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Unix time, milliseconds.
    pub at_ms: u64,
    /// `meridian_queries_total` by rcode (all transports).
    pub queries: BTreeMap<String, u64>,
    /// `meridian_service_answers_total` by region.
    pub answers: BTreeMap<String, u64>,
}

/// Where the sampler reads the totals of a [`Sample`]: the counters themselves (the DNS
/// server's and the routing table's), not the `/metrics` rendering, which at a million services
/// is 8 million lines to write and parse back every interval.
pub trait Totals: Send + Sync + 'static {
    /// `meridian_queries_total` by rcode, summed over transports.
    fn queries_by_rcode(&self) -> BTreeMap<String, u64>;
    /// `meridian_service_answers_total` by region, summed over zones, services and outcomes.
    fn answers_by_region(&self) -> BTreeMap<String, u64>;
}

/// The server's totals: its DNS counters and the routing table's.
pub struct ServerTotals {
    /// Queries by transport and rcode.
    pub dns: Arc<DnsMetrics>,
    /// The zone and answer counters of the table serving.
    pub tables: Arc<TableMetrics>,
}

impl Totals for ServerTotals {
    fn queries_by_rcode(&self) -> BTreeMap<String, u64> {
        self.dns
            .queries_by_rcode()
            .map(|(rcode, n)| (rcode.to_owned(), n))
            .collect()
    }

    fn answers_by_region(&self) -> BTreeMap<String, u64> {
        self.tables.answers_by_region()
    }
}

/// A sample of `totals` taken at `at_ms`.
pub fn sample(totals: &dyn Totals, at_ms: u64) -> Sample {
    Sample {
        at_ms,
        queries: totals.queries_by_rcode(),
        answers: totals.answers_by_region(),
    }
}

/// Per-second rates between consecutive samples, by label.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Series {
    /// Start of the first interval (the oldest sample), Unix milliseconds; 0 when empty.
    pub from_ms: u64,
    /// End of each interval, Unix milliseconds.
    pub at_ms: Vec<u64>,
    /// Label -> one rate per interval (0 where the label did not exist yet).
    pub rates: BTreeMap<String, Vec<f64>>,
}

/// Rates of the counters `pick` selects. A counter that went down (a restart or reset)
/// counts its new value as the increase, as Prometheus' `rate` does.
pub fn rates(
    samples: &VecDeque<Sample>,
    pick: impl Fn(&Sample) -> &BTreeMap<String, u64>,
) -> Series {
    let mut series = Series {
        from_ms: samples.front().map_or(0, |s| s.at_ms),
        ..Series::default()
    };
    let labels: std::collections::BTreeSet<&String> =
        samples.iter().flat_map(|s| pick(s).keys()).collect();
    for label in &labels {
        series.rates.insert((*label).clone(), Vec::new());
    }
    for (a, b) in samples.iter().zip(samples.iter().skip(1)) {
        let secs = b.at_ms.saturating_sub(a.at_ms) as f64 / 1000.0;
        series.at_ms.push(b.at_ms);
        for (label, out) in series.rates.iter_mut() {
            let before = pick(a).get(label).copied().unwrap_or(0);
            let now = pick(b).get(label).copied().unwrap_or(0);
            let increase = if now >= before { now - before } else { now };
            out.push(if secs > 0.0 {
                increase as f64 / secs
            } else {
                0.0
            });
        }
    }
    series
}

/// The ring of samples.
#[derive(Debug)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
    interval: Duration,
}

impl History {
    /// An empty ring sampled every `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES + 1)),
            interval,
        }
    }

    /// Adds a sample, dropping the oldest beyond [`SAMPLES`] + 1 (90 intervals need 91).
    pub fn push(&self, sample: Sample) {
        let mut ring = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        ring.push_back(sample);
        while ring.len() > SAMPLES + 1 {
            ring.pop_front();
        }
    }

    /// A copy of the ring, oldest first.
    pub fn samples(&self) -> VecDeque<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Starts sampling `totals` every `interval` ([`INTERVAL`] but in tests: the hidden
    /// `serve --history-interval-ms`) on the current Tokio runtime. The first sample is taken
    /// here, before this returns, so every query the server answers once it is up falls after
    /// it: a first sample left to the task could be taken after the first queries on a busy
    /// machine, and those queries would never show in the rates.
    pub fn start(totals: Arc<dyn Totals>, interval: Duration) -> Arc<History> {
        let history = Arc::new(History::new(interval));
        let now_ms = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        };
        history.push(sample(totals.as_ref(), now_ms()));
        let ring = Arc::clone(&history);
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                ring.push(sample(totals.as_ref(), now_ms()));
            }
        });
        history
    }
}

#[derive(Serialize)]
struct HistoryView {
    interval_seconds: f64,
    samples: usize,
    queries_per_second: Series,
    answers_per_second: Series,
}

/// `GET /v1/history`.
pub async fn history(State(state): State<ApiState>) -> Response {
    let samples = state.history.samples();
    let view = HistoryView {
        interval_seconds: state.history.interval.as_secs_f64(),
        samples: samples.len(),
        queries_per_second: rates(&samples, |s| &s.queries),
        answers_per_second: rates(&samples, |s| &s.answers),
    };
    axum::Json(view).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, queries: &[(&str, u64)], answers: &[(&str, u64)]) -> Sample {
        let map = |v: &[(&str, u64)]| v.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        Sample {
            at_ms,
            queries: map(queries),
            answers: map(answers),
        }
    }

    #[test]
    fn a_sample_reads_queries_by_rcode_and_answers_by_region_from_the_counters() {
        use crate::proto::Rcode;
        use crate::routing::counters::Outcome;
        use crate::routing::publish::{Publisher, load_sources};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (zones, geo) = load_sources(
            &root.join("fuzz/zones"),
            &root.join("geoip/meridian-sample.txt"),
        )
        .unwrap();
        let tables = Arc::new(TableMetrics::default());
        let publisher = Publisher::new(zones, geo, Arc::clone(&tables)).unwrap();
        let dns = Arc::new(DnsMetrics::default());
        let totals = ServerTotals {
            dns: Arc::clone(&dns),
            tables,
        };
        let before = super::sample(&totals, 1);
        assert!(before.queries.values().all(|&n| n == 0), "{before:?}");
        assert_eq!(before.queries.len(), Rcode::ALL.len(), "{before:?}");
        assert!(before.answers.values().all(|&n| n == 0), "{before:?}");
        assert!(before.answers.contains_key("none"), "{before:?}");

        use crate::dns::metrics::Transport;
        dns.record_query(Transport::Udp, Rcode::NoError, false, false);
        dns.record_query(Transport::Tcp, Rcode::NoError, false, false);
        dns.record_query(Transport::Udp, Rcode::NxDomain, false, false);
        // Answers in two services: one from each's first region, one from no region.
        let table = publisher.table();
        let mut counted: BTreeMap<String, u64> = BTreeMap::new();
        let services = table
            .zones()
            .flat_map(|z| z.services.iter())
            .filter(|s| !s.regions.is_empty())
            .take(2);
        for service in services {
            service.counters.count(Some(0), Outcome::Healthy);
            service.counters.count(None, Outcome::NoData);
            *counted.entry(service.regions[0].name.clone()).or_default() += 1;
            *counted.entry("none".into()).or_default() += 1;
        }
        assert_eq!(counted.values().sum::<u64>(), 4, "{counted:?}");
        let after = super::sample(&totals, 2);
        assert_eq!(after.at_ms, 2);
        assert_eq!(after.queries["NOERROR"], 2);
        assert_eq!(after.queries["NXDOMAIN"], 1);
        assert_eq!(after.queries["SERVFAIL"], 0);
        for (region, n) in &after.answers {
            assert_eq!(*n, counted.get(region).copied().unwrap_or(0), "{region}");
        }
    }

    #[test]
    fn rates_are_per_second_between_samples_and_survive_resets_and_new_labels() {
        let ring: VecDeque<Sample> = [
            sample(0, &[("NOERROR", 100)], &[]),
            sample(10_000, &[("NOERROR", 150)], &[("eu", 20)]),
            sample(20_000, &[("NOERROR", 150), ("SERVFAIL", 5)], &[("eu", 40)]),
            // A reset (restart): the new value is the increase.
            sample(30_000, &[("NOERROR", 30), ("SERVFAIL", 5)], &[("eu", 10)]),
        ]
        .into();
        let q = rates(&ring, |s| &s.queries);
        assert_eq!(
            (q.from_ms, q.at_ms.clone()),
            (0, vec![10_000, 20_000, 30_000])
        );
        assert_eq!(q.rates["NOERROR"], [5.0, 0.0, 3.0]);
        assert_eq!(q.rates["SERVFAIL"], [0.0, 0.5, 0.0]);
        let a = rates(&ring, |s| &s.answers);
        assert_eq!(a.rates["eu"], [2.0, 2.0, 1.0]);
        // One sample or none: no intervals.
        let one: VecDeque<Sample> = ring.iter().take(1).cloned().collect();
        let r = rates(&one, |s| &s.queries);
        assert!(r.at_ms.is_empty() && r.rates["NOERROR"].is_empty());
        assert_eq!(rates(&VecDeque::new(), |s| &s.queries), Series::default());
    }

    /// Totals that count how often they were read.
    #[derive(Default)]
    struct Reads(std::sync::atomic::AtomicU64);

    impl Totals for Reads {
        fn queries_by_rcode(&self) -> BTreeMap<String, u64> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            BTreeMap::from([("NOERROR".to_owned(), n)])
        }

        fn answers_by_region(&self) -> BTreeMap<String, u64> {
            BTreeMap::new()
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_first_sample_is_taken_before_start_returns_and_then_one_per_interval() {
        // Nothing else runs on this runtime until the test awaits: a first sample left to
        // the sampling task would not be there yet.
        let h = History::start(Arc::new(Reads::default()), Duration::from_millis(200));
        assert_eq!(h.samples().len(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(h.samples().len(), 1, "a second sample before one interval");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(h.samples().len(), 2);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let counts: Vec<u64> = h.samples().iter().map(|s| s.queries["NOERROR"]).collect();
        assert_eq!(counts, [0, 1, 2, 3]);
    }

    #[test]
    fn the_ring_keeps_the_newest_91_samples() {
        let h = History::new(INTERVAL);
        for i in 0..200u64 {
            h.push(sample(i, &[], &[]));
        }
        let s = h.samples();
        assert_eq!(s.len(), SAMPLES + 1);
        assert_eq!(s.front().map(|x| x.at_ms), Some(109));
        assert_eq!(s.back().map(|x| x.at_ms), Some(199));
        assert_eq!(rates(&s, |x| &x.queries).at_ms.len(), SAMPLES);
    }
}
