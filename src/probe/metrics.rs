//! The prober's own metrics: how many checks it makes, how long they take, how many run or
//! wait for the concurrency cap, and how many distinct checks its targets come down to.
//!
//! Owns: the `meridian_probe_*` names ([`ProbeMetrics`]) and the small `/metrics` server of
//! `meridian probe --metrics-listen` ([`serve`]). The embedded prober of `serve` counts into
//! the same [`global`] instance, which the nameserver's registry renders beside its own.
//!
//! One process-wide instance: a process runs one prober, and the check tasks count without
//! being handed anything. Never: labels per endpoint (10,000 endpoints would be 10,000 series;
//! per-endpoint latency is the nameserver's `meridian_check_latency_seconds`).

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Buckets of `meridian_probe_check_duration_seconds`: 0.25 ms to about 16 s, doubling
/// (loopback and LAN checks take well under a millisecond).
fn duration_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.000_25, 2.0, 17)
}

/// The prober's counters, gauges and check-duration histogram.
#[derive(Debug)]
pub struct ProbeMetrics {
    checks_family: Family<ResultLabels, Counter>,
    passed: Counter,
    failed: Counter,
    duration: Histogram,
    in_flight: Gauge,
    waiting: Gauge,
    targets: Gauge,
    distinct_checks: Gauge,
    reports: Counter,
}

impl Default for ProbeMetrics {
    fn default() -> Self {
        let checks_family = Family::<ResultLabels, Counter>::default();
        let passed = checks_family
            .get_or_create(&ResultLabels { result: "pass" })
            .clone();
        let failed = checks_family
            .get_or_create(&ResultLabels { result: "fail" })
            .clone();
        Self {
            checks_family,
            passed,
            failed,
            duration: Histogram::new(duration_buckets()),
            in_flight: Gauge::default(),
            waiting: Gauge::default(),
            targets: Gauge::default(),
            distinct_checks: Gauge::default(),
            reports: Counter::default(),
        }
    }
}

static GLOBAL: LazyLock<ProbeMetrics> = LazyLock::new(ProbeMetrics::default);

/// The instance every prober of this process counts into.
pub fn global() -> &'static ProbeMetrics {
    &GLOBAL
}

impl ProbeMetrics {
    /// Registers every series.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "meridian_probe_checks",
            "Checks this prober made, by result (one per distinct check, however many \
             endpoints share it); rate() of it is the checks made per second",
            self.checks_family.clone(),
        );
        registry.register_with_unit(
            "meridian_probe_check_duration",
            "Duration of this prober's checks, from start to verdict (after a permit)",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register(
            "meridian_probe_checks_in_flight",
            "Checks running now (at most --max-concurrent-checks)",
            self.in_flight.clone(),
        );
        registry.register(
            "meridian_probe_checks_waiting",
            "Checks due but waiting for a permit: above zero for long, the cap is too low",
            self.waiting.clone(),
        );
        registry.register(
            "meridian_probe_targets",
            "Endpoints this prober reports on",
            self.targets.clone(),
        );
        registry.register(
            "meridian_probe_distinct_checks",
            "Distinct checks made for those endpoints (identical checks of one target are \
             made once and shared)",
            self.distinct_checks.clone(),
        );
        registry.register(
            "meridian_probe_reports",
            "Reports this prober built and handed to delivery",
            self.reports.clone(),
        );
    }

    /// One check finished.
    pub fn record_check(&self, ok: bool, took: Duration) {
        if ok {
            self.passed.inc();
        } else {
            self.failed.inc();
        }
        self.duration.observe(took.as_secs_f64());
    }

    /// A check became due and waits for a permit (`true`), or got one (`false`).
    pub fn set_waiting(&self, waiting: bool) {
        if waiting {
            self.waiting.inc();
        } else {
            self.waiting.dec();
        }
    }

    /// A check started (`true`) or ended (`false`).
    pub fn set_running(&self, running: bool) {
        if running {
            self.in_flight.inc();
        } else {
            self.in_flight.dec();
        }
    }

    /// The endpoints reported on and the distinct checks made for them.
    pub fn set_targets(&self, targets: usize, distinct: usize) {
        self.targets.set(i64::try_from(targets).unwrap_or(i64::MAX));
        self.distinct_checks
            .set(i64::try_from(distinct).unwrap_or(i64::MAX));
    }

    /// A report was built.
    pub fn record_report(&self) {
        self.reports.inc();
    }
}

/// Serves `GET /metrics` (this prober's metrics and the `process_*` series) on `listen`;
/// returns the bound address. Runs until the process ends.
pub async fn serve(listen: SocketAddr) -> std::io::Result<SocketAddr> {
    let registry = Arc::new(crate::metrics::Metrics::new(|r| global().register(r)));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = Arc::clone(&registry);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    registry.render(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "prober metrics server stopped");
        }
    });
    Ok(bound)
}
