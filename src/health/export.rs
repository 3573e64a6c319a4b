//! What the health side exports to `/metrics`: the counters of report ingest and decisions
//! ([`HealthMetrics`]), and per endpoint its decided and serving state and every prober's
//! vote ([`HealthExport`]), joined at scrape time from the table serving now and the health
//! view ([`endpoint_samples`], [`HealthView::lookup`]).
//!
//! Owns: those metric names and labels. Must never: hold the table or the view beyond one
//! scrape (the [`HealthSource`] is set by the daemon with weak references), or be called on
//! the query path.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::aggregate::{EndpointStatus, Health, HealthView, Severity};
use super::report::{EndpointKey, RejectReason, VoteState};
use crate::routing::RoutingTable;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    zone: String,
    service: String,
    endpoint: String,
}

/// Buckets of `meridian_check_latency_seconds`: 1 ms to about 16 s, doubling.
fn check_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15)
}

/// Counters of report ingest and health decisions. [`Default`] registers nowhere.
#[derive(Debug)]
pub struct HealthMetrics {
    reports_accepted: Counter,
    rejected_family: Family<ReasonLabels, Counter>,
    reports_rejected: [Counter; RejectReason::ALL.len()],
    report_unknown_endpoints: Counter,
    transitions: Counter,
    endpoints_down: Gauge,
    overrides_active: Gauge,
    check_latency: Family<CheckLabels, Histogram, fn() -> Histogram>,
    alerts_family: Family<SeverityLabels, Counter>,
    alerts: [Counter; Severity::ALL.len()],
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabels {
    severity: &'static str,
}

impl Default for HealthMetrics {
    fn default() -> Self {
        let rejected_family = Family::<ReasonLabels, Counter>::default();
        let reports_rejected = RejectReason::ALL.map(|r| {
            rejected_family
                .get_or_create(&ReasonLabels { reason: r.label() })
                .clone()
        });
        let alerts_family = Family::<SeverityLabels, Counter>::default();
        Self {
            reports_accepted: Counter::default(),
            rejected_family,
            reports_rejected,
            report_unknown_endpoints: Counter::default(),
            transitions: Counter::default(),
            endpoints_down: Gauge::default(),
            overrides_active: Gauge::default(),
            check_latency: Family::new_with_constructor(|| Histogram::new(check_buckets())),
            alerts: Severity::ALL.map(|s| {
                alerts_family
                    .get_or_create(&SeverityLabels {
                        severity: s.as_str(),
                    })
                    .clone()
            }),
            alerts_family,
        }
    }
}

impl HealthMetrics {
    /// Registers every counter and gauge.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "meridian_reports_accepted",
            "Probe reports accepted",
            self.reports_accepted.clone(),
        );
        registry.register(
            "meridian_reports_rejected",
            "Probe reports rejected, by reason",
            self.rejected_family.clone(),
        );
        registry.register(
            "meridian_report_unknown_endpoints",
            "Endpoints in accepted reports that this server does not know (ignored)",
            self.report_unknown_endpoints.clone(),
        );
        registry.register(
            "meridian_health_transitions",
            "Endpoint health state changes",
            self.transitions.clone(),
        );
        registry.register(
            "meridian_endpoints_down",
            "Endpoints decided down",
            self.endpoints_down.clone(),
        );
        registry.register(
            "meridian_overrides_active",
            "Operator overrides in force",
            self.overrides_active.clone(),
        );
        registry.register(
            "meridian_alerts",
            "Health alerts by severity: P1 a service answers from its fallback, P2 a region of \
             a service has no serving endpoint, P3 an endpoint down or shedding, P4 \
             recoveries and completed drains",
            self.alerts_family.clone(),
        );
        registry.register_with_unit(
            "meridian_check_latency",
            "Health check duration per endpoint, as probers report it (each check once)",
            Unit::Seconds,
            self.check_latency.clone(),
        );
    }

    /// Counts an alert (an endpoint transition or a completed drain) by severity.
    pub fn record_alert(&self, severity: Severity) {
        if let Some(c) = Severity::ALL
            .iter()
            .position(|s| *s == severity)
            .and_then(|i| self.alerts.get(i))
        {
            c.inc();
        }
    }

    /// Alerts of `severity` counted so far.
    pub fn alerts_of(&self, severity: Severity) -> u64 {
        Severity::ALL
            .iter()
            .position(|s| *s == severity)
            .and_then(|i| self.alerts.get(i))
            .map_or(0, Counter::get)
    }

    /// Records one check's duration, in microseconds, for an endpoint.
    pub fn observe_check_latency(&self, key: &EndpointKey, latency_us: u64) {
        let zone = key.zone();
        #[allow(clippy::cast_precision_loss)]
        self.check_latency
            .get_or_create(&CheckLabels {
                zone: format!("{zone}."),
                service: key.service().to_owned(),
                endpoint: key.address().to_string(),
            })
            .observe(latency_us as f64 / 1e6);
    }

    /// Counts an accepted probe report and the endpoints in it this server does not know.
    pub fn record_report_accepted(&self, unknown_endpoints: usize) {
        self.reports_accepted.inc();
        self.report_unknown_endpoints
            .inc_by(unknown_endpoints as u64);
    }

    /// Counts a rejected probe report.
    pub fn record_report_rejected(&self, reason: RejectReason) {
        if let Some(c) = RejectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.reports_rejected.get(i))
        {
            c.inc();
        }
    }

    /// Counts an endpoint health transition.
    pub fn record_transition(&self) {
        self.transitions.inc();
    }

    /// Sets the endpoints-down and active-overrides gauges.
    pub fn set_health_gauges(&self, down: usize, overrides: usize) {
        self.endpoints_down
            .set(i64::try_from(down).unwrap_or(i64::MAX));
        self.overrides_active
            .set(i64::try_from(overrides).unwrap_or(i64::MAX));
    }
}

// The lookup lives beside the one join that needs it most; `aggregate.rs` stays free of
// anything keyed by the routing table's names.
impl HealthView {
    /// The decision on `address` of `service` in `zone` (any letter case, with or without
    /// the trailing dot); `None` for endpoints no probe checks.
    pub fn lookup(&self, zone: &str, service: &str, address: IpAddr) -> Option<&EndpointStatus> {
        let key = EndpointKey::new(zone, service, address).ok()?;
        self.status().get(&key)
    }
}

/// One endpoint as the health collector exports it.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointSample {
    /// Zone apex, with trailing dot.
    pub zone: String,
    /// Service name relative to the zone.
    pub service: String,
    /// Region of the endpoint.
    pub region: String,
    /// Its answered address.
    pub address: String,
    /// Decided by the probes (true when it has no check).
    pub up: bool,
    /// Answered now: health and overrides applied.
    pub serving: bool,
    /// Weight answers use now (0 when drained or down).
    pub effective_weight: u32,
    /// Each prober's latest vote.
    pub votes: Vec<VoteSample>,
}

/// One prober's vote on one endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct VoteSample {
    /// Prober id.
    pub prober: String,
    /// The prober's region.
    pub prober_region: String,
    /// 1 up, 0 down, -1 unknown.
    pub value: i64,
    /// Seconds since the report carrying it arrived.
    pub age_seconds: f64,
}

/// Builds the endpoint samples of `table` with the decided state of `view`, sorted by zone,
/// service, region and address.
pub fn endpoint_samples(table: &RoutingTable, view: &HealthView) -> Vec<EndpointSample> {
    let mut out: Vec<EndpointSample> = table
        .endpoints()
        .map(|e| {
            let zone = e.zone.origin.to_string();
            let status = view.lookup(&zone, &e.service.key, e.endpoint.address);
            EndpointSample {
                service: e.service.key.clone(),
                region: e.region.name.clone(),
                address: e.endpoint.address.to_string(),
                up: status.is_none_or(|s| s.health == Health::Up),
                serving: e.endpoint.healthy,
                effective_weight: e.endpoint.weight,
                votes: status
                    .map(|s| {
                        s.votes
                            .iter()
                            .map(|v| VoteSample {
                                prober: v.prober_id.as_str().to_string(),
                                prober_region: v.region.clone(),
                                value: match v.state {
                                    VoteState::Up => 1,
                                    VoteState::Down => 0,
                                    VoteState::Unknown => -1,
                                },
                                age_seconds: v.age_ms as f64 / 1000.0,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                zone,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.zone, &a.service, &a.region, &a.address)
            .cmp(&(&b.zone, &b.service, &b.region, &b.address))
    });
    out
}

/// Produces endpoint samples at scrape time (set once the health hub exists).
pub type HealthSource = Box<dyn Fn() -> Vec<EndpointSample> + Send + Sync>;

/// How endpoint health is broken down in `/metrics` (`serve --endpoint-metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EndpointSeries {
    /// Per endpoint: `meridian_endpoint_{up,serving,weight}`, and every prober's vote on it
    /// (`meridian_probe_vote`, `meridian_probe_vote_age_seconds`). The default.
    #[default]
    Endpoint,
    /// Per service and region: `meridian_service_endpoints{state}` counts endpoints up,
    /// down and serving; no per-endpoint or per-vote series. For catalogues of hundreds of
    /// thousands of endpoints, where those are millions of series.
    Service,
}

/// Exports endpoint state and prober votes from the [`HealthSource`] when scraped. Clones
/// share the source: register one, set the source through another.
#[derive(Clone, Default)]
pub struct HealthExport {
    source: Arc<OnceLock<HealthSource>>,
    series: EndpointSeries,
}

impl fmt::Debug for HealthExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HealthExport")
    }
}

impl HealthExport {
    /// An export broken down as `series` says.
    pub fn new(series: EndpointSeries) -> Self {
        Self {
            source: Arc::default(),
            series,
        }
    }

    /// Registers the collector (rendered after every plain metric).
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.clone()));
    }

    /// Sets where endpoint health comes from at scrape time; only the first call counts.
    pub fn set_source(&self, source: HealthSource) {
        if self.source.set(source).is_err() {
            tracing::debug!("metrics health source already set");
        }
    }
}

fn endpoint_labels(s: &EndpointSample) -> [(&'static str, String); 4] {
    [
        ("zone", s.zone.clone()),
        ("service", s.service.clone()),
        ("region", s.region.clone()),
        ("address", s.address.clone()),
    ]
}

impl Collector for HealthExport {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(source) = self.source.get() else {
            return Ok(());
        };
        let samples = source();
        encode_report_ages(&mut encoder, &samples)?;
        match self.series {
            EndpointSeries::Endpoint => encode_per_endpoint(&mut encoder, &samples),
            EndpointSeries::Service => encode_per_service(&mut encoder, &samples),
        }
    }
}

/// `meridian_probe_report_age_seconds`: per prober, the age of the newest report it is
/// counted by (the youngest of its votes): one series per prober, whatever the breakdown.
fn encode_report_ages(
    encoder: &mut DescriptorEncoder,
    samples: &[EndpointSample],
) -> Result<(), fmt::Error> {
    let mut newest: std::collections::BTreeMap<(&str, &str), f64> = Default::default();
    for v in samples.iter().flat_map(|s| &s.votes) {
        let age = newest
            .entry((v.prober.as_str(), v.prober_region.as_str()))
            .or_insert(f64::INFINITY);
        *age = age.min(v.age_seconds);
    }
    let mut metric = encoder.encode_descriptor(
        "meridian_probe_report_age",
        "Seconds since the newest report of each prober that votes on endpoints served here \
         arrived: a prober that went silent grows.",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?;
    for ((prober, region), age) in newest {
        let labels = [("prober", prober), ("prober_region", region)];
        ConstGauge::new(age).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// `meridian_service_endpoints{zone,service,region,state}`: endpoints up, down and serving
/// per service and region (`--endpoint-metrics service`).
fn encode_per_service(
    encoder: &mut DescriptorEncoder,
    samples: &[EndpointSample],
) -> Result<(), fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        "meridian_service_endpoints",
        "Endpoints of a service's region by state: up and down as decided, serving as \
         answers use them now (health and overrides applied).",
        None,
        MetricType::Gauge,
    )?;
    // Samples come sorted by zone, service, region and address: one run per region.
    for run in samples
        .chunk_by(|a, b| (&a.zone, &a.service, &a.region) == (&b.zone, &b.service, &b.region))
    {
        let Some(first) = run.first() else { continue };
        let count = |f: fn(&EndpointSample) -> bool| {
            i64::try_from(run.iter().filter(|s| f(s)).count()).unwrap_or(i64::MAX)
        };
        for (state, n) in [
            ("up", count(|s| s.up)),
            ("down", count(|s| !s.up)),
            ("serving", count(|s| s.serving)),
        ] {
            let labels = [
                ("zone", first.zone.as_str()),
                ("service", first.service.as_str()),
                ("region", first.region.as_str()),
                ("state", state),
            ];
            ConstGauge::new(n).encode(metric.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// The per-endpoint and per-vote series (`--endpoint-metrics endpoint`, the default).
fn encode_per_endpoint(
    encoder: &mut DescriptorEncoder,
    samples: &[EndpointSample],
) -> Result<(), fmt::Error> {
    let gauge = |v: i64| ConstGauge::new(v);
    type Pick = fn(&EndpointSample) -> i64;
    let per_endpoint: [(&str, &str, Pick); 3] = [
        (
            "meridian_endpoint_up",
            "Decided health of an endpoint: 1 up, 0 down (endpoints without a check are up).",
            |s| i64::from(s.up),
        ),
        (
            "meridian_endpoint_serving",
            "Whether answers use the endpoint now (health and overrides applied).",
            |s| i64::from(s.serving),
        ),
        (
            "meridian_endpoint_weight",
            "Weight answers draw the endpoint with now (0 when drained, down or standby).",
            |s| i64::from(s.effective_weight),
        ),
    ];
    for (name, help, pick) in per_endpoint {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for s in samples {
            let labels = endpoint_labels(s);
            gauge(pick(s)).encode(metric.encode_family(&labels)?)?;
        }
    }
    let vote_labels = |s: &EndpointSample, v: &VoteSample| {
        [
            ("zone", s.zone.clone()),
            ("service", s.service.clone()),
            ("address", s.address.clone()),
            ("prober", v.prober.clone()),
            ("prober_region", v.prober_region.clone()),
        ]
    };
    let mut metric = encoder.encode_descriptor(
        "meridian_probe_vote",
        "Latest vote of a prober on an endpoint: 1 up, 0 down, -1 unknown.",
        None,
        MetricType::Gauge,
    )?;
    for s in samples {
        for v in &s.votes {
            gauge(v.value).encode(metric.encode_family(&vote_labels(s, v))?)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "meridian_probe_vote_age",
        "Seconds since the report carrying a prober's latest vote arrived.",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?;
    for s in samples {
        for v in &s.votes {
            ConstGauge::new(v.age_seconds).encode(metric.encode_family(&vote_labels(s, v))?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::metrics::tests::series;

    #[test]
    fn health_samples_render_per_endpoint_and_vote() {
        let export = HealthExport::default();
        let m = Metrics::new(|r| export.register(r));
        export.set_source(Box::new(|| {
            vec![EndpointSample {
                zone: "gslb.test.".into(),
                service: "www".into(),
                region: "eu".into(),
                address: "192.0.2.1".into(),
                up: false,
                serving: false,
                effective_weight: 0,
                votes: vec![VoteSample {
                    prober: "p-us".into(),
                    prober_region: "us".into(),
                    value: 0,
                    age_seconds: 1.5,
                }],
            }]
        }));
        let text = m.render();
        assert_eq!(
            series(
                &text,
                r#"meridian_endpoint_up{zone="gslb.test.",service="www",region="eu",address="192.0.2.1"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            series(
                &text,
                r#"meridian_probe_vote{zone="gslb.test.",service="www",address="192.0.2.1",prober="p-us",prober_region="us"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            series(
                &text,
                r#"meridian_probe_vote_age_seconds{zone="gslb.test.""#
            ),
            Some(1.5)
        );
        let om = m.render_openmetrics();
        assert!(om.ends_with("# EOF\n"), "{om}");
    }

    fn sample(
        service: &str,
        region: &str,
        address: &str,
        up: bool,
        votes: &[(&str, f64)],
    ) -> EndpointSample {
        EndpointSample {
            zone: "gslb.test.".into(),
            service: service.into(),
            region: region.into(),
            address: address.into(),
            up,
            serving: up,
            effective_weight: u32::from(up) * 100,
            votes: votes
                .iter()
                .map(|(prober, age)| VoteSample {
                    prober: (*prober).into(),
                    prober_region: "us".into(),
                    value: i64::from(up),
                    age_seconds: *age,
                })
                .collect(),
        }
    }

    #[test]
    fn by_service_endpoints_are_counted_per_region_and_probers_get_one_age_each() {
        let export = HealthExport::new(EndpointSeries::Service);
        let m = Metrics::new(|r| export.register(r));
        export.set_source(Box::new(|| {
            vec![
                sample("api", "eu", "192.0.2.9", true, &[("p-us", 0.5)]),
                sample(
                    "www",
                    "eu",
                    "192.0.2.1",
                    true,
                    &[("p-us", 2.0), ("p-eu", 9.0)],
                ),
                sample("www", "eu", "192.0.2.2", false, &[("p-us", 1.0)]),
                sample("www", "us", "198.51.100.1", false, &[]),
            ]
        }));
        let text = m.render();
        let count = |service: &str, region: &str, state: &str| {
            series(
                &text,
                &format!(
                    r#"meridian_service_endpoints{{zone="gslb.test.",service="{service}",region="{region}",state="{state}"}}"#
                ),
            )
        };
        assert_eq!(count("www", "eu", "up"), Some(1.0));
        assert_eq!(count("www", "eu", "down"), Some(1.0));
        assert_eq!(count("www", "eu", "serving"), Some(1.0));
        assert_eq!(count("www", "us", "down"), Some(1.0));
        assert_eq!(count("www", "us", "up"), Some(0.0));
        assert_eq!(count("api", "eu", "up"), Some(1.0));
        // The newest report of each prober, over all its votes.
        let age = |prober: &str| {
            series(
                &text,
                &format!(
                    r#"meridian_probe_report_age_seconds{{prober="{prober}",prober_region="us"}}"#
                ),
            )
        };
        assert_eq!(age("p-us"), Some(0.5));
        assert_eq!(age("p-eu"), Some(9.0));
        // Nothing per endpoint or per vote.
        for name in [
            "meridian_endpoint_up{",
            "meridian_endpoint_weight{",
            "meridian_probe_vote{",
            "meridian_probe_vote_age_seconds{",
        ] {
            assert!(!text.contains(name), "{name} in\n{text}");
        }
    }
}
