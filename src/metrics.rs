//! Counters, created once and shared; the Prometheus registry behind `GET /metrics`.
//!
//! Owns every metric the server exports (a `prometheus-client` [`Registry`]), the per-zone and
//! per-service counter handles that compiled routing tables carry, a lock-free latency
//! histogram, and the scrape-time collectors for endpoint health and the process.
//!
//! Must never: take a lock or allocate on the query path. Query-path counters are handles to
//! atomics obtained once (at start-up, or when a table is compiled: [`Metrics::attach`]), and
//! only `inc()` is called on them; `Family::get_or_create`, which locks, runs on the control
//! plane only. Health and process metrics are read when scraped, never pushed from hot code.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::dns::answer::Rcode;
use crate::health::aggregate::{Health, HealthView};
use crate::health::report::{EndpointKey, RejectReason, VoteState};
use crate::routing::select::Outcome;
use crate::routing::table::RoutingTable;

/// DNS transports, for labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp = 0,
    /// TCP.
    Tcp = 1,
}

impl Transport {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

const TRANSPORTS: [Transport; 2] = [Transport::Udp, Transport::Tcp];

/// QTYPE label values; every type not listed is counted as `other`, so a client cannot grow
/// the number of series by asking for odd types.
pub const QTYPE_LABELS: [&str; 15] = [
    "A", "NS", "CNAME", "SOA", "PTR", "MX", "TXT", "AAAA", "SRV", "DS", "SVCB", "HTTPS", "CAA",
    "ANY", "other",
];

/// Position of `qtype` in [`QTYPE_LABELS`].
pub fn qtype_bucket(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        2 => 1,
        5 => 2,
        6 => 3,
        12 => 4,
        15 => 5,
        16 => 6,
        28 => 7,
        33 => 8,
        43 => 9,
        64 => 10,
        65 => 11,
        257 => 12,
        255 => 13,
        _ => 14,
    }
}

/// Outcomes of a service answer, in label order.
const OUTCOMES: [Outcome; 4] = [
    Outcome::Healthy,
    Outcome::Standby,
    Outcome::Fallback,
    Outcome::NoData,
];

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Healthy => 0,
        Outcome::Standby => 1,
        Outcome::Fallback => 2,
        Outcome::NoData => 3,
    }
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Healthy => "healthy",
        Outcome::Standby => "standby",
        Outcome::Fallback => "fallback",
        Outcome::NoData => "nodata",
    }
}

/// Zone label of queries for names in no zone we serve.
pub const NO_ZONE: &str = "none";
/// Region label of answers that come from no single region (weighted pools, fixed fallback
/// addresses, NODATA).
pub const NO_REGION: &str = "none";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    transport: &'static str,
    rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ZoneLabels {
    zone: String,
    qtype: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    zone: String,
    service: String,
    region: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Per-zone query counters by QTYPE, carried by a compiled zone. The default is detached
/// (counts nowhere): tables compiled offline or in unit tests.
#[derive(Clone, Debug, Default)]
pub struct ZoneCounters {
    by_qtype: Option<Arc<[Counter; QTYPE_LABELS.len()]>>,
}

impl ZoneCounters {
    /// Counts one query of `qtype`. One relaxed atomic add.
    pub fn count(&self, qtype: u16) {
        if let Some(c) = self
            .by_qtype
            .as_ref()
            .and_then(|c| c.get(qtype_bucket(qtype)))
        {
            c.inc();
        }
    }
}

/// Per-service answer counters by answering region and outcome, carried by a compiled
/// service. Row `i` is region `i` of the service; the last row is "no region".
#[derive(Clone, Debug, Default)]
pub struct ServiceCounters {
    rows: Option<Arc<[[Counter; OUTCOMES.len()]]>>,
}

impl ServiceCounters {
    /// Counts one answer from `region` (index into the service's regions) with `outcome`.
    pub fn count(&self, region: Option<u16>, outcome: Outcome) {
        let Some(rows) = &self.rows else { return };
        let row = match region {
            Some(i) => usize::from(i),
            None => rows.len().saturating_sub(1),
        };
        if let Some(c) = rows.get(row).and_then(|r| r.get(outcome_index(outcome))) {
            c.inc();
        }
    }
}

/// Upper bounds of the answer latency buckets, in nanoseconds (10 µs to 100 ms).
const LATENCY_BOUNDS_NS: [u64; 13] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
];

/// A fixed-bucket histogram of atomics: `observe` is a short scan and three relaxed adds,
/// no lock (prometheus-client's own histogram takes a mutex per observation).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Non-cumulative counts; the last slot is +Inf.
    buckets: [AtomicU64; LATENCY_BOUNDS_NS.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(LATENCY_BOUNDS_NS.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Sum in seconds, count, and `(upper bound in seconds, count)` per bucket, ending with
    /// +Inf; per bucket, not cumulative (the encoder accumulates).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut acc = 0;
        let mut out = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            acc += n;
            let bound = LATENCY_BOUNDS_NS
                .get(i)
                .map_or(f64::INFINITY, |ns| *ns as f64 / 1e9);
            out.push((bound, n));
        }
        // The count is the sum of the buckets read, so a scrape racing an observation never
        // shows a count below the +Inf bucket.
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, acc, out)
    }
}

/// The registry's handle on the shared histogram.
#[derive(Debug)]
struct SharedLatency(Arc<LatencyHistogram>);

impl EncodeMetric for SharedLatency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let (sum, count, buckets) = self.0.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
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

/// Builds the endpoint samples of `table` with the decided state of `view`.
pub fn endpoint_samples(table: &RoutingTable, view: &HealthView) -> Vec<EndpointSample> {
    let mut out = Vec::new();
    for zone in table.zones() {
        let origin = zone.origin.to_string();
        for svc in &zone.services {
            for region in &svc.regions {
                for e in svc.endpoints.get(region.endpoints.clone()).unwrap_or(&[]) {
                    let key = EndpointKey::new(&origin, &svc.key, e.address).ok();
                    let status = key.as_ref().and_then(|k| view.status().get(k));
                    out.push(EndpointSample {
                        zone: origin.clone(),
                        service: svc.key.clone(),
                        region: region.name.clone(),
                        address: e.address.to_string(),
                        up: status.is_none_or(|s| s.health == Health::Up),
                        serving: e.healthy,
                        effective_weight: e.weight,
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
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.zone, &a.service, &a.region, &a.address)
            .cmp(&(&b.zone, &b.service, &b.region, &b.address))
    });
    out
}

/// Produces endpoint samples at scrape time (set once the health hub exists).
pub type HealthSource = Box<dyn Fn() -> Vec<EndpointSample> + Send + Sync>;

/// Exports endpoint state and prober votes from the [`HealthSource`] when scraped.
#[derive(Default)]
struct HealthCollector {
    source: Arc<OnceLock<HealthSource>>,
}

impl fmt::Debug for HealthCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HealthCollector")
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

impl Collector for HealthCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(source) = self.source.get() else {
            return Ok(());
        };
        let samples = source();
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
            for s in &samples {
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
        for s in &samples {
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
        for s in &samples {
            for v in &s.votes {
                ConstGauge::new(v.age_seconds).encode(metric.encode_family(&vote_labels(s, v))?)?;
            }
        }
        Ok(())
    }
}

/// What `/proc/self` tells about this process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// Unix time the process started, seconds (None when `/proc/stat` is hidden, e.g.
    /// systemd's `ProcSubset=pid`).
    pub start_time_seconds: Option<f64>,
    /// OS threads.
    pub threads: u64,
}

/// Parses `/proc/self/stat` (fields after the parenthesised command name, which may contain
/// spaces): `(utime ticks, stime ticks, threads, starttime ticks since boot)`.
fn parse_stat(stat: &str) -> Option<(u64, u64, u64, u64)> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // After ")": field 3 (state) is index 0, so field N is index N - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    Some((num(14)?, num(15)?, num(20)?, num(22)?))
}

/// Reads the process statistics; `None` where `/proc` is unavailable.
pub fn process_stats() -> Option<ProcessStats> {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as u64;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (utime, stime, threads, start_ticks) = parse_stat(&stat)?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut statm = statm.split_whitespace().map(|v| v.parse::<u64>().ok());
    let virtual_pages = statm.next().flatten()?;
    let resident_pages = statm.next().flatten()?;
    let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())
    });
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        });
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks,
        resident_bytes: resident_pages * page,
        virtual_bytes: virtual_pages * page,
        open_fds,
        max_fds,
        start_time_seconds: boot_time.map(|b| b as f64 + start_ticks as f64 / ticks),
        threads,
    })
}

/// The standard `process_*` metrics, read from `/proc` when scraped.
#[derive(Debug)]
struct ProcessCollector {
    started: Instant,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let uptime = ConstGauge::new(self.started.elapsed().as_secs() as i64);
        uptime.encode(encoder.encode_descriptor(
            "meridian_uptime_seconds",
            "Seconds since the server started.",
            None,
            MetricType::Gauge,
        )?)?;
        let Some(p) = process_stats() else {
            return Ok(());
        };
        ConstCounter::new(p.cpu_seconds).encode(encoder.encode_descriptor(
            "process_cpu",
            "User and system CPU time spent.",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?)?;
        let gauges: [(&str, &str, Option<Unit>, Option<f64>); 5] = [
            (
                "process_resident_memory",
                "Resident memory size.",
                Some(Unit::Bytes),
                Some(p.resident_bytes as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size.",
                Some(Unit::Bytes),
                Some(p.virtual_bytes as f64),
            ),
            (
                "process_open_fds",
                "Open file descriptors.",
                None,
                Some(p.open_fds as f64),
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch.",
                Some(Unit::Seconds),
                p.start_time_seconds,
            ),
            (
                "process_threads",
                "OS threads.",
                None,
                Some(p.threads as f64),
            ),
        ];
        for (name, help, unit, v) in gauges {
            let Some(v) = v else { continue };
            ConstGauge::new(v).encode(encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                MetricType::Gauge,
            )?)?;
        }
        if let Some(max) = p.max_fds {
            ConstGauge::new(max as f64).encode(encoder.encode_descriptor(
                "process_max_fds",
                "Limit on open file descriptors.",
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

/// Label sets of the zone and service families currently attached to the live table, so
/// series of removed zones and services disappear after a reload.
#[derive(Default)]
struct Attached {
    zones: HashSet<ZoneLabels>,
    answers: HashSet<AnswerLabels>,
}

/// Why a TCP connection was closed by the server's limits (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpRefusal {
    /// The client already had its maximum number of connections open.
    PerClient = 0,
    /// All connection slots were taken and none had been idle long enough to be evicted.
    Full = 1,
}

impl TcpRefusal {
    /// Every reason, in label order.
    pub const ALL: [TcpRefusal; 2] = [TcpRefusal::PerClient, TcpRefusal::Full];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpRefusal::PerClient => "per_client",
            TcpRefusal::Full => "full",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeptLabels {
    zone: String,
    file: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

/// Every metric the server keeps.
pub struct Metrics {
    started: Instant,
    registry: Registry,
    queries: [[Counter; Rcode::ALL.len()]; 2],
    truncated: [Counter; 2],
    dropped: Counter,
    ecs_queries: Counter,
    latency: Arc<LatencyHistogram>,
    reloads_ok: Counter,
    reloads_failed: Counter,
    zones_kept: Family<KeptLabels, Gauge>,
    swaps: Counter,
    generation: Gauge,
    table_built: Gauge<f64, AtomicU64>,
    compile_seconds: Histogram,
    tcp_connections: Counter,
    tcp_refused: [Counter; TcpRefusal::ALL.len()],
    tcp_evicted: Counter,
    rrl_limited: Counter,
    rrl_slipped: Counter,
    reports_accepted: Counter,
    reports_rejected: [Counter; RejectReason::ALL.len()],
    report_unknown_endpoints: Counter,
    transitions: Counter,
    endpoints_down: Gauge,
    overrides_active: Gauge,
    notify_sent: Counter,
    notify_failed: Counter,
    notify_dropped: Counter,
    zone_queries: Family<ZoneLabels, Counter>,
    answers: Family<AnswerLabels, Counter>,
    attached: Mutex<Attached>,
    health_source: Arc<OnceLock<HealthSource>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let queries_family = Family::<QueryLabels, Counter>::default();
        registry.register(
            "meridian_queries",
            "DNS queries answered, by transport and response code",
            queries_family.clone(),
        );
        let queries = TRANSPORTS.map(|t| {
            Rcode::ALL.map(|r| {
                queries_family
                    .get_or_create(&QueryLabels {
                        transport: t.as_str(),
                        rcode: r.as_str(),
                    })
                    .clone()
            })
        });
        let truncated_family = Family::<TransportLabels, Counter>::default();
        registry.register(
            "meridian_responses_truncated",
            "Responses sent with TC=1 (the answer did not fit)",
            truncated_family.clone(),
        );
        let truncated = TRANSPORTS.map(|t| {
            truncated_family
                .get_or_create(&TransportLabels {
                    transport: t.as_str(),
                })
                .clone()
        });
        let zone_queries = Family::<ZoneLabels, Counter>::default();
        registry.register(
            "meridian_zone_queries",
            "Queries by zone (`none`: a name in no zone served here) and QTYPE (rare types \
             are `other`)",
            zone_queries.clone(),
        );
        let answers = Family::<AnswerLabels, Counter>::default();
        registry.register(
            "meridian_service_answers",
            "Answers of traffic-managed names, by the region that answered (`none` for pools \
             and fixed fallbacks) and how (healthy, standby, fallback, nodata)",
            answers.clone(),
        );
        let latency = Arc::new(LatencyHistogram::default());
        registry.register_with_unit(
            "meridian_answer_latency",
            "Time from a parsed packet to a finished response, in this process",
            Unit::Seconds,
            SharedLatency(Arc::clone(&latency)),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let dropped = counter(
            &mut registry,
            "meridian_packets_dropped",
            "Packets dropped without a response (too short, or responses)",
        );
        let ecs_queries = counter(
            &mut registry,
            "meridian_ecs_queries",
            "Queries that carried an EDNS Client Subnet option",
        );
        let tcp_connections = counter(
            &mut registry,
            "meridian_tcp_connections",
            "TCP connections accepted",
        );
        let refused_family = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "meridian_tcp_connections_refused",
            "TCP connections closed at accept by a limit",
            refused_family.clone(),
        );
        let tcp_refused = TcpRefusal::ALL.map(|r| {
            refused_family
                .get_or_create(&RefusalLabels { reason: r.as_str() })
                .clone()
        });
        let tcp_evicted = counter(
            &mut registry,
            "meridian_tcp_connections_evicted",
            "Idle TCP connections closed to make room for a new client",
        );
        let rrl_limited = counter(
            &mut registry,
            "meridian_rrl_limited",
            "UDP responses over the RRL rate (dropped or sent truncated)",
        );
        let rrl_slipped = counter(
            &mut registry,
            "meridian_rrl_slipped",
            "Rate-limited UDP responses sent truncated (TC=1) instead of dropped",
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "meridian_reloads",
            "Reloads of zones, GeoIP and keys, by result",
            reloads.clone(),
        );
        let reloads_ok = reloads
            .get_or_create(&ResultLabels { result: "ok" })
            .clone();
        let reloads_failed = reloads
            .get_or_create(&ResultLabels { result: "failed" })
            .clone();
        let zones_kept = Family::<KeptLabels, Gauge>::default();
        registry.register(
            "meridian_zone_kept_previous",
            "1 for each zone serving its previous version because the last reload rejected \
             its file (the reload response and log say why)",
            zones_kept.clone(),
        );
        let swaps = counter(
            &mut registry,
            "meridian_table_swaps",
            "Routing tables published",
        );
        let generation = Gauge::default();
        registry.register(
            "meridian_table_generation",
            "Generation of the routing table serving now",
            generation.clone(),
        );
        let table_built = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "meridian_table_built_timestamp",
            "Unix time the routing table serving now was compiled",
            Unit::Seconds,
            table_built.clone(),
        );
        let compile_seconds =
            Histogram::new([0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]);
        registry.register_with_unit(
            "meridian_table_compile",
            "Time to compile a routing table",
            Unit::Seconds,
            compile_seconds.clone(),
        );
        let reports_accepted = counter(
            &mut registry,
            "meridian_reports_accepted",
            "Probe reports accepted",
        );
        let rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "meridian_reports_rejected",
            "Probe reports rejected, by reason",
            rejected.clone(),
        );
        let reports_rejected = RejectReason::ALL.map(|r| {
            rejected
                .get_or_create(&ReasonLabels { reason: r.label() })
                .clone()
        });
        let report_unknown_endpoints = counter(
            &mut registry,
            "meridian_report_unknown_endpoints",
            "Endpoints in accepted reports that this server does not know (ignored)",
        );
        let transitions = counter(
            &mut registry,
            "meridian_health_transitions",
            "Endpoint health state changes",
        );
        let endpoints_down = Gauge::default();
        registry.register(
            "meridian_endpoints_down",
            "Endpoints decided down",
            endpoints_down.clone(),
        );
        let overrides_active = Gauge::default();
        registry.register(
            "meridian_overrides_active",
            "Operator overrides in force",
            overrides_active.clone(),
        );
        let notify = Family::<ResultLabels, Counter>::default();
        registry.register(
            "meridian_notifications",
            "Health-transition webhook deliveries: sent, failed (after all retries), dropped \
             (queue full)",
            notify.clone(),
        );
        let notify_sent = notify
            .get_or_create(&ResultLabels { result: "sent" })
            .clone();
        let notify_failed = notify
            .get_or_create(&ResultLabels { result: "failed" })
            .clone();
        let notify_dropped = notify
            .get_or_create(&ResultLabels { result: "dropped" })
            .clone();
        let started = Instant::now();
        let health_source: Arc<OnceLock<HealthSource>> = Arc::default();
        registry.register_collector(Box::new(HealthCollector {
            source: Arc::clone(&health_source),
        }));
        registry.register_collector(Box::new(ProcessCollector { started }));
        Self {
            started,
            registry,
            queries,
            truncated,
            dropped,
            ecs_queries,
            latency,
            reloads_ok,
            reloads_failed,
            zones_kept,
            swaps,
            generation,
            table_built,
            compile_seconds,
            tcp_connections,
            tcp_refused,
            tcp_evicted,
            rrl_limited,
            rrl_slipped,
            reports_accepted,
            reports_rejected,
            report_unknown_endpoints,
            transitions,
            endpoints_down,
            overrides_active,
            notify_sent,
            notify_failed,
            notify_dropped,
            zone_queries,
            answers,
            attached: Mutex::default(),
            health_source,
        }
    }

    /// Seconds since start-up.
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Counts one answered query.
    pub fn record_query(&self, transport: Transport, rcode: Rcode, truncated: bool, ecs: bool) {
        if let Some(c) = self
            .queries
            .get(transport as usize)
            .and_then(|row| row.get(rcode.index()))
        {
            c.inc();
        }
        if truncated {
            if let Some(c) = self.truncated.get(transport as usize) {
                c.inc();
            }
        }
        if ecs {
            self.ecs_queries.inc();
        }
    }

    /// Records how long one answer took.
    pub fn record_latency(&self, elapsed: Duration) {
        self.latency.observe(elapsed);
    }

    /// Counts a packet dropped without an answer.
    pub fn record_drop(&self) {
        self.dropped.inc();
    }

    /// Counts an accepted TCP connection.
    pub fn record_tcp_connection(&self) {
        self.tcp_connections.inc();
    }

    /// Counts a UDP response over the RRL rate; `slipped` when it went out truncated.
    pub fn record_rrl(&self, slipped: bool) {
        self.rrl_limited.inc();
        if slipped {
            self.rrl_slipped.inc();
        }
    }

    /// Counts a TCP connection refused by a limit.
    pub fn record_tcp_refused(&self, reason: TcpRefusal) {
        if let Some(c) = self.tcp_refused.get(reason as usize) {
            c.inc();
        }
    }

    /// Counts an idle TCP connection closed to make room for a new one.
    pub fn record_tcp_evicted(&self) {
        self.tcp_evicted.inc();
    }

    /// Counts a reload.
    pub fn record_reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.inc();
        } else {
            self.reloads_failed.inc();
        }
    }

    /// Replaces the set of zones kept at their previous version: (origin, file).
    pub fn set_zones_kept(&self, kept: &[(String, String)]) {
        self.zones_kept.clear();
        for (zone, file) in kept {
            self.zones_kept
                .get_or_create(&KeptLabels {
                    zone: zone.clone(),
                    file: file.clone(),
                })
                .set(1);
        }
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

    /// Counts a table swap to `generation`.
    pub fn record_swap(&self, generation: u64) {
        self.swaps.inc();
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.table_built.set(now);
    }

    /// Records how long compiling a table took.
    pub fn record_compile(&self, took: Duration) {
        self.compile_seconds.observe(took.as_secs_f64());
    }

    /// Counts a webhook notification: delivered, given up on, or dropped because the queue
    /// was full.
    pub fn record_notification(&self, outcome: NotifyOutcome) {
        match outcome {
            NotifyOutcome::Sent => self.notify_sent.inc(),
            NotifyOutcome::Failed => self.notify_failed.inc(),
            NotifyOutcome::Dropped => self.notify_dropped.inc(),
        };
    }

    /// Sets where endpoint health comes from at scrape time; only the first call counts.
    pub fn set_health_source(&self, source: HealthSource) {
        if self.health_source.set(source).is_err() {
            tracing::debug!("metrics health source already set");
        }
    }

    /// Gives a freshly compiled table its counter handles (before it is published): one per
    /// zone and QTYPE, one per service, region and outcome. Series of zones and services no
    /// longer in the table are removed. Control plane: takes the families' locks.
    pub fn attach(&self, table: &mut RoutingTable) {
        let mut zones = HashSet::new();
        let mut answers = HashSet::new();
        let mut zone_counters = |zone: String| -> ZoneCounters {
            let counters = std::array::from_fn(|i| {
                let labels = ZoneLabels {
                    zone: zone.clone(),
                    qtype: QTYPE_LABELS.get(i).copied().unwrap_or("other"),
                };
                let c = self.zone_queries.get_or_create(&labels).clone();
                zones.insert(labels);
                c
            });
            ZoneCounters {
                by_qtype: Some(Arc::new(counters)),
            }
        };
        table.unmatched = zone_counters(NO_ZONE.to_string());
        for zone in table.zones.values_mut() {
            let origin = zone.origin.to_string();
            zone.counters = zone_counters(origin.clone());
            for svc in &mut zone.services {
                let names = svc
                    .regions
                    .iter()
                    .map(|r| r.name.clone())
                    .chain([NO_REGION.to_string()]);
                let rows: Vec<[Counter; OUTCOMES.len()]> = names
                    .map(|region| {
                        OUTCOMES.map(|o| {
                            let labels = AnswerLabels {
                                zone: origin.clone(),
                                service: svc.key.clone(),
                                region: region.clone(),
                                outcome: outcome_label(o),
                            };
                            let c = self.answers.get_or_create(&labels).clone();
                            answers.insert(labels);
                            c
                        })
                    })
                    .collect();
                svc.counters = ServiceCounters {
                    rows: Some(rows.into()),
                };
            }
        }
        let mut attached = self.attached.lock().unwrap_or_else(|p| p.into_inner());
        for gone in attached.zones.difference(&zones) {
            self.zone_queries.remove(gone);
        }
        for gone in attached.answers.difference(&answers) {
            self.answers.remove(gone);
        }
        attached.zones = zones;
        attached.answers = answers;
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }

    /// OpenMetrics text format (1.0.0), ending with `# EOF`.
    pub fn render_openmetrics(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn series(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.parse().unwrap())
    }

    #[test]
    fn queries_render_by_transport_and_rcode() {
        let m = Metrics::new();
        m.record_query(Transport::Udp, Rcode::NoError, false, true);
        m.record_query(Transport::Udp, Rcode::NoError, true, false);
        m.record_query(Transport::Tcp, Rcode::NxDomain, false, false);
        let text = m.render();
        assert_eq!(
            series(
                &text,
                r#"meridian_queries_total{transport="udp",rcode="NOERROR"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            series(
                &text,
                r#"meridian_queries_total{transport="tcp",rcode="NXDOMAIN"}"#
            ),
            Some(1.0)
        );
        // Pre-created series are present at zero.
        assert_eq!(
            series(
                &text,
                r#"meridian_queries_total{transport="tcp",rcode="SERVFAIL"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            series(
                &text,
                r#"meridian_responses_truncated_total{transport="udp"}"#
            ),
            Some(1.0)
        );
        assert_eq!(series(&text, "meridian_ecs_queries_total "), Some(1.0));
    }

    #[test]
    fn latency_histogram_renders_cumulative_buckets() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(5));
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_secs(1));
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 1.000035).abs() < 1e-9, "{sum}");
        assert_eq!(buckets.first(), Some(&(0.00001, 1)));
        assert_eq!(buckets.get(1), Some(&(0.000025, 0)));
        assert_eq!(buckets.get(2), Some(&(0.00005, 1)));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
        let m = Metrics::new();
        m.record_latency(Duration::from_micros(70));
        let text = m.render();
        assert_eq!(
            series(
                &text,
                r#"meridian_answer_latency_seconds_bucket{le="0.001"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            series(
                &text,
                r#"meridian_answer_latency_seconds_bucket{le="5e-05"}"#
            ),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            series(&text, "meridian_answer_latency_seconds_count"),
            Some(1.0)
        );
    }

    #[test]
    fn qtypes_outside_the_list_are_other() {
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(1)), Some(&"A"));
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(28)), Some(&"AAAA"));
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(65)), Some(&"HTTPS"));
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(99)), Some(&"other"));
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(65535)), Some(&"other"));
    }

    #[test]
    fn detached_counters_count_nowhere_without_panicking() {
        ZoneCounters::default().count(1);
        ServiceCounters::default().count(Some(3), Outcome::Healthy);
        ServiceCounters::default().count(None, Outcome::NoData);
    }

    #[test]
    fn stat_fields_are_found_after_a_command_with_spaces() {
        let stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 7 0 123456 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((250, 50, 7, 123456)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn process_metrics_describe_this_process() {
        let p = process_stats().expect("/proc is readable on Linux");
        assert!(p.resident_bytes > 0);
        assert!(p.open_fds >= 3, "stdin/out/err at least: {p:?}");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = p.start_time_seconds.unwrap();
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0);
        let text = Metrics::new().render();
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
    }

    #[test]
    fn health_samples_render_per_endpoint_and_vote() {
        let m = Metrics::new();
        m.set_health_source(Box::new(|| {
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
}
