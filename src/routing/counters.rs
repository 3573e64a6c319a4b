//! The routing table's counters: queries per zone and QTYPE, answers per service, region and
//! [`Outcome`], and the publisher's table swaps and compile times.
//!
//! Owns: the counters a compiled table carries ([`ZoneCounters`], [`ServiceCounters`]: plain
//! atomics, no labels), the [`CounterFactory`] `compile` creates or carries them with, and
//! the scrape-time collector that encodes `meridian_zone_queries` and
//! `meridian_service_answers` by walking the table serving now, its label values borrowed
//! from the table (zone origin, service key, region name): no series and no label string is
//! kept per counter, so a zone or service's counters live and die with it. A zone or service
//! compiled again under the same name (reload, health change) takes over the counters of the
//! one it replaces, so counts never go backwards.
//!
//! Must never: take a lock or allocate when counting: the query path does one relaxed atomic
//! add into counters obtained while compiling (control plane).

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use hickory_proto::rr::Name;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::select::Service;
use super::table::{RoutingTable, ZoneTable, key_wire};

/// Which pass of the walk produced the answer (the `outcome` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Healthy endpoints with weight.
    Healthy,
    /// Healthy standby (weight 0) endpoints: nothing weighted was healthy.
    Standby,
    /// Nothing healthy: the fallback.
    Fallback,
    /// No endpoint of the asked family, or fallback `none`.
    NoData,
}

/// Outcomes of a service answer, in label order.
const OUTCOMES: [Outcome; 4] = [
    Outcome::Healthy,
    Outcome::Standby,
    Outcome::Fallback,
    Outcome::NoData,
];

impl Outcome {
    fn index(self) -> usize {
        match self {
            Outcome::Healthy => 0,
            Outcome::Standby => 1,
            Outcome::Fallback => 2,
            Outcome::NoData => 3,
        }
    }

    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Healthy => "healthy",
            Outcome::Standby => "standby",
            Outcome::Fallback => "fallback",
            Outcome::NoData => "nodata",
        }
    }
}

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

/// Zone label of queries for names in no zone we serve.
pub const NO_ZONE: &str = "none";
/// Region label of answers that come from no single region (weighted pools, fixed fallback
/// addresses, NODATA).
pub const NO_REGION: &str = "none";

const ZONE_QUERIES: &str = "meridian_zone_queries";
const ZONE_QUERIES_HELP: &str = "Queries by zone (`none`: a name in no zone served here) and \
                                 QTYPE (rare types are `other`)";
const ANSWERS: &str = "meridian_service_answers";
const ANSWERS_HELP: &str = "Answers of traffic-managed names, by the region that answered \
                            (`none` for pools and fixed fallbacks) and how (healthy, standby, \
                            fallback, nodata)";

/// One answer row: a counter per [`Outcome`], in label order.
type Row = [AtomicU64; OUTCOMES.len()];

/// Per-zone query counters by QTYPE, carried by a compiled zone and shared with every later
/// compile of the same zone. The default is detached (counts nowhere): tables compiled
/// offline or in unit tests.
#[derive(Clone, Debug, Default)]
pub struct ZoneCounters {
    by_qtype: Option<Arc<[AtomicU64; QTYPE_LABELS.len()]>>,
}

impl ZoneCounters {
    fn attached() -> Self {
        Self {
            by_qtype: Some(Arc::default()),
        }
    }

    /// Counts one query of `qtype`. One relaxed atomic add.
    #[inline]
    pub fn count(&self, qtype: u16) {
        if let Some(c) = self
            .by_qtype
            .as_ref()
            .and_then(|c| c.get(qtype_bucket(qtype)))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts by QTYPE ([`QTYPE_LABELS`] order); `None` when detached.
    pub fn values(&self) -> Option<[u64; QTYPE_LABELS.len()]> {
        let c = self.by_qtype.as_ref()?;
        Some(std::array::from_fn(|i| {
            c.get(i).map_or(0, |v| v.load(Ordering::Relaxed))
        }))
    }
}

/// Per-service answer counters by answering region and outcome, carried by a compiled
/// service and shared with every later compile of it that has the same regions. Row `i` is
/// region `i` of the service; the last row is "no region".
#[derive(Clone, Debug, Default)]
pub struct ServiceCounters {
    rows: Option<Arc<[Row]>>,
}

impl ServiceCounters {
    fn attached(regions: usize) -> Self {
        Self {
            rows: Some((0..=regions).map(|_| Row::default()).collect()),
        }
    }

    /// Counts one answer from `region` (index into the service's regions) with `outcome`.
    /// One relaxed atomic add.
    #[inline]
    pub fn count(&self, region: Option<u16>, outcome: Outcome) {
        let Some(rows) = &self.rows else { return };
        let row = match region {
            Some(i) => usize::from(i),
            None => rows.len().saturating_sub(1),
        };
        if let Some(c) = rows.get(row).and_then(|r| r.get(outcome.index())) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts of row `row` ([`Outcome`] label order): region `row` of the service, or
    /// the last row, "no region". `None` past the end or when detached.
    pub fn row(&self, row: usize) -> Option<[u64; OUTCOMES.len()]> {
        let r = self.rows.as_ref()?.get(row)?;
        Some(std::array::from_fn(|o| {
            r.get(o).map_or(0, |v| v.load(Ordering::Relaxed))
        }))
    }
}

/// The region label of row `row` of `service`: its region's name, or [`NO_REGION`] for the
/// last row.
fn row_label(service: &Service, row: usize) -> &str {
    service
        .regions
        .get(row)
        .map_or(NO_REGION, |r| r.name.as_str())
}

/// How `meridian_service_answers` is broken down (`serve --answer-metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AnswersBy {
    /// One series per service, region and outcome (the default).
    #[default]
    Service,
    /// Summed over the services of each zone: one series per zone, region and outcome, with
    /// an empty `service` label (which Prometheus stores as no label). For catalogues of
    /// hundreds of thousands of services.
    Zone,
}

/// What the collector exports (`serve --answer-metrics`, `--metrics-skip-zero`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeriesOptions {
    /// Per service or per zone.
    pub answers_by: AnswersBy,
    /// Leave out zone and answer series whose count is zero. Off by default: every zone has
    /// its 15 QTYPE series and every service its region x outcome series from the start, so
    /// dashboards and alerts see every name and `rate()` sees the first answer.
    pub skip_zero: bool,
}

/// Answer rows whose regions changed: the new rows start from the old ones' counts, added
/// when the table that has them is published.
#[derive(Debug)]
struct Carry {
    from: Arc<[Row]>,
    to: Arc<[Row]>,
    /// (old row, new row) of each region both have, and of "no region".
    rows: Vec<(usize, usize)>,
}

impl Carry {
    fn apply(&self) {
        for &(from, to) in &self.rows {
            let (Some(from), Some(to)) = (self.from.get(from), self.to.get(to)) else {
                continue;
            };
            for (f, t) in from.iter().zip(to) {
                t.fetch_add(f.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }
}

/// The table serving now as the collector and the history sampler see it, and the options
/// it is exported with.
struct LiveTable {
    table: ArcSwapOption<RoutingTable>,
    /// Held by a scrape while it walks the table, and by a publish that carries counts into
    /// new answer rows until the table that has them is visible: a scrape sees the old rows
    /// or the new ones with the old counts in them, never the new ones without.
    carrying: Mutex<()>,
    options: SeriesOptions,
}

impl fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveTable")
            .field(
                "generation",
                &self.table.load().as_ref().map(|t| t.generation),
            )
            .field("options", &self.options)
            .finish()
    }
}

impl LiveTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.carrying.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The registry's view of [`LiveTable`]: encodes the zone and answer series at scrape time.
#[derive(Debug)]
struct TableCollector(Arc<LiveTable>);

impl Collector for TableCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let live = &self.0;
        let _carrying = live.lock();
        let table = live.table.load_full();
        let options = live.options;
        // Zones in key order, so the page is the same from one scrape to the next.
        let mut zones: Vec<&ZoneTable> = table.as_deref().map_or_else(Vec::new, |t| {
            let mut zones: Vec<(&[u8], &ZoneTable)> =
                t.zones.iter().map(|(k, z)| (&**k, &**z)).collect();
            zones.sort_unstable_by(|a, b| a.0.cmp(b.0));
            zones.into_iter().map(|(_, z)| z).collect()
        });
        let mut origin = String::new();
        {
            let mut metric = encoder.encode_descriptor(
                ZONE_QUERIES,
                ZONE_QUERIES_HELP,
                None,
                MetricType::Counter,
            )?;
            if let Some(t) = table.as_deref() {
                encode_zone(&mut metric, NO_ZONE, &t.unmatched, options)?;
            }
            for zone in &zones {
                origin.clear();
                write!(origin, "{}", zone.origin)?;
                encode_zone(&mut metric, &origin, &zone.counters, options)?;
            }
        }
        let mut metric =
            encoder.encode_descriptor(ANSWERS, ANSWERS_HELP, None, MetricType::Counter)?;
        let mut by_region: HashMap<&str, [u64; OUTCOMES.len()], foldhash::fast::RandomState> =
            HashMap::default();
        for zone in zones.drain(..) {
            origin.clear();
            write!(origin, "{}", zone.origin)?;
            match options.answers_by {
                AnswersBy::Service => {
                    for service in zone.services.iter() {
                        for row in 0..=service.regions.len() {
                            let Some(counts) = service.counters.row(row) else {
                                break;
                            };
                            let labels = [&*origin, &service.key, row_label(service, row)];
                            encode_row(&mut metric, labels, counts, options)?;
                        }
                    }
                }
                AnswersBy::Zone => {
                    by_region.clear();
                    for service in zone.services.iter() {
                        for row in 0..=service.regions.len() {
                            let Some(counts) = service.counters.row(row) else {
                                break;
                            };
                            let sum = by_region.entry(row_label(service, row)).or_default();
                            for (s, c) in sum.iter_mut().zip(counts) {
                                *s += c;
                            }
                        }
                    }
                    let mut rows: Vec<_> = by_region.iter().collect();
                    rows.sort_unstable_by_key(|(region, _)| **region);
                    for (region, counts) in rows {
                        encode_row(&mut metric, [&*origin, "", region], *counts, options)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The 15 QTYPE series of one zone label.
fn encode_zone(
    metric: &mut MetricEncoder<'_>,
    zone: &str,
    counters: &ZoneCounters,
    options: SeriesOptions,
) -> fmt::Result {
    let Some(values) = counters.values() else {
        return Ok(());
    };
    for (qtype, value) in QTYPE_LABELS.iter().zip(values) {
        if options.skip_zero && value == 0 {
            continue;
        }
        let labels = [("zone", zone), ("qtype", *qtype)];
        metric
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
    }
    Ok(())
}

/// The outcome series of one (zone, service, region) row.
fn encode_row(
    metric: &mut MetricEncoder<'_>,
    [zone, service, region]: [&str; 3],
    counts: [u64; OUTCOMES.len()],
    options: SeriesOptions,
) -> fmt::Result {
    for (outcome, value) in OUTCOMES.iter().zip(counts) {
        if options.skip_zero && value == 0 {
            continue;
        }
        let labels = [
            ("zone", zone),
            ("service", service),
            ("region", region),
            ("outcome", outcome.label()),
        ];
        metric
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
    }
    Ok(())
}

/// The routing table's metrics: the zone and answer counters of the table serving now
/// (encoded from it at scrape time), and the publisher's swap, generation, build time,
/// compile time and what each build reused. [`Default`] registers nowhere.
#[derive(Debug)]
pub struct TableMetrics {
    live: Arc<LiveTable>,
    swaps: Counter,
    generation: Gauge,
    table_built: Gauge<f64, AtomicU64>,
    compile_seconds: Histogram,
    zones_compiled: Counter,
    zones_reused: Counter,
    services_compiled: Counter,
    services_reused: Counter,
    health_update_seconds: Gauge<f64, AtomicU64>,
}

impl Default for TableMetrics {
    fn default() -> Self {
        Self::new(SeriesOptions::default())
    }
}

impl TableMetrics {
    /// Metrics whose zone and answer series are exported as `options` says.
    pub fn new(options: SeriesOptions) -> Self {
        Self {
            live: Arc::new(LiveTable {
                table: ArcSwapOption::empty(),
                carrying: Mutex::new(()),
                options,
            }),
            swaps: Counter::default(),
            generation: Gauge::default(),
            table_built: Gauge::default(),
            compile_seconds: Histogram::new([0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            zones_compiled: Counter::default(),
            zones_reused: Counter::default(),
            services_compiled: Counter::default(),
            services_reused: Counter::default(),
            health_update_seconds: Gauge::default(),
        }
    }

    /// Registers the collector of `meridian_zone_queries` and `meridian_service_answers`.
    pub fn register_queries(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(TableCollector(Arc::clone(&self.live))));
    }

    /// Registers the publisher's swap, generation, build time and compile time.
    pub fn register_publish(&self, registry: &mut Registry) {
        registry.register(
            "meridian_table_swaps",
            "Routing tables published",
            self.swaps.clone(),
        );
        registry.register(
            "meridian_table_generation",
            "Generation of the routing table serving now",
            self.generation.clone(),
        );
        registry.register_with_unit(
            "meridian_table_built_timestamp",
            "Unix time the routing table serving now was compiled",
            Unit::Seconds,
            self.table_built.clone(),
        );
        registry.register_with_unit(
            "meridian_table_compile",
            "Time to compile a routing table",
            Unit::Seconds,
            self.compile_seconds.clone(),
        );
        registry.register(
            "meridian_table_zones_compiled",
            "Zones compiled from their source for a new routing table (a reload compiles only \
             the zones whose files changed)",
            self.zones_compiled.clone(),
        );
        registry.register(
            "meridian_table_zones_reused",
            "Zones a new routing table shared with the one before it (their services may have \
             been rebuilt for health)",
            self.zones_reused.clone(),
        );
        registry.register(
            "meridian_table_services_compiled",
            "Services compiled for a new routing table (a health change rebuilds only the \
             services of the endpoints that changed)",
            self.services_compiled.clone(),
        );
        registry.register(
            "meridian_table_services_reused",
            "Services a new routing table shared with the one before it",
            self.services_reused.clone(),
        );
        registry.register_with_unit(
            "meridian_table_health_update",
            "Time from the last health decision handed to the publisher to its table serving",
            Unit::Seconds,
            self.health_update_seconds.clone(),
        );
    }

    /// A factory for the counters of a table compiled after `previous` (the table serving,
    /// or none at start-up): zones and services compiled again under the same name take over
    /// its counters.
    pub fn factory(&self, previous: Option<Arc<RoutingTable>>) -> CounterFactory {
        CounterFactory {
            attached: true,
            previous,
            carries: Vec::new(),
        }
    }

    /// `table`, built with `factory`, serves from now on (the publisher stored it): the
    /// collector and the history sampler read it. Answer rows whose regions changed get the
    /// old rows' counts first, before any scrape can see them (answers the old table counts
    /// after this are lost: queries in flight at the swap).
    pub fn publish(&self, factory: CounterFactory, table: &Arc<RoutingTable>) {
        if factory.carries.is_empty() {
            self.live.table.store(Some(Arc::clone(table)));
            return;
        }
        let _carrying = self.live.lock();
        for carry in &factory.carries {
            carry.apply();
        }
        self.live.table.store(Some(Arc::clone(table)));
    }

    /// Answers by region (`meridian_service_answers_total` summed over zones, services and
    /// outcomes) of the table serving now, for the status page's history: a walk of the
    /// table's counters, no rendering.
    pub fn answers_by_region(&self) -> BTreeMap<String, u64> {
        let _carrying = self.live.lock();
        let table = self.live.table.load_full();
        let mut sums: HashMap<&str, u64, foldhash::fast::RandomState> = HashMap::default();
        for zone in table.iter().flat_map(|t| t.zones()) {
            for service in zone.services.iter() {
                for row in 0..=service.regions.len() {
                    let Some(counts) = service.counters.row(row) else {
                        break;
                    };
                    *sums.entry(row_label(service, row)).or_default() += counts.iter().sum::<u64>();
                }
            }
        }
        sums.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// Counts what a new table compiled and what it shared with the one before it.
    pub fn record_reuse(&self, reuse: &super::compile::Reuse) {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        self.zones_compiled.inc_by(n(reuse.zones_compiled));
        self.zones_reused.inc_by(n(reuse.zones_reused));
        self.services_compiled.inc_by(n(reuse.services_compiled));
        self.services_reused.inc_by(n(reuse.services_reused));
    }

    /// Records how long the last health change took from the decision handed over to the
    /// table serving it.
    pub fn record_health_update(&self, took: Duration) {
        self.health_update_seconds.set(took.as_secs_f64());
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
}

/// Hands out the counters of one table while it is compiled: those of the zone or service
/// of the same name in the previous table, or new ones. Detached (tables compiled offline),
/// it hands out counters that count nowhere and cost nothing.
pub struct CounterFactory {
    attached: bool,
    previous: Option<Arc<RoutingTable>>,
    carries: Vec<Carry>,
}

impl fmt::Debug for CounterFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CounterFactory")
            .field("attached", &self.attached)
            .field("previous", &self.previous.as_ref().map(|t| t.generation))
            .field("carries", &self.carries.len())
            .finish()
    }
}

impl CounterFactory {
    /// A factory whose counters count nowhere.
    pub fn detached() -> Self {
        Self {
            attached: false,
            previous: None,
            carries: Vec::new(),
        }
    }

    /// A factory like this one, for compiling some zones on another thread; its carries come
    /// back with [`CounterFactory::join`].
    pub fn fork(&self) -> Self {
        Self {
            attached: self.attached,
            previous: self.previous.clone(),
            carries: Vec::new(),
        }
    }

    /// Takes the carries of `other`, a [`CounterFactory::fork`] of this one.
    pub fn join(&mut self, other: Self) {
        self.carries.extend(other.carries);
    }

    /// The previous table's zone at `origin`, whose counters the zone compiled at `origin`
    /// takes over ([`CounterFactory::zone`], [`CounterFactory::service`]).
    pub fn previous_zone(&self, origin: &Name) -> Option<Arc<ZoneTable>> {
        if !self.attached {
            return None;
        }
        self.previous
            .as_ref()?
            .zone_shared(&key_wire(origin))
            .cloned()
    }

    /// Counters of names in no zone.
    pub fn unmatched(&mut self) -> ZoneCounters {
        if !self.attached {
            return ZoneCounters::default();
        }
        match &self.previous {
            Some(t) if t.unmatched.by_qtype.is_some() => t.unmatched.clone(),
            _ => ZoneCounters::attached(),
        }
    }

    /// Query counters of a zone compiled in place of `previous` (same origin), or new.
    pub fn zone(&mut self, previous: Option<&ZoneTable>) -> ZoneCounters {
        if !self.attached {
            return ZoneCounters::default();
        }
        match previous {
            Some(z) if z.counters.by_qtype.is_some() => z.counters.clone(),
            _ => ZoneCounters::attached(),
        }
    }

    /// Answer counters of `service`, service `index` of a zone compiled in place of
    /// `previous`: the previous zone's service with the same key keeps counting into the same
    /// counters when its regions are the same; when they changed, new rows start from the
    /// counts of the regions both have (carried when the table is published); a new service
    /// starts at zero.
    pub fn service(
        &mut self,
        previous: Option<&ZoneTable>,
        index: usize,
        service: &Service,
    ) -> ServiceCounters {
        if !self.attached {
            return ServiceCounters::default();
        }
        let fresh = ServiceCounters::attached(service.regions.len());
        let Some(zone) = previous else { return fresh };
        // Services mostly keep their place in the file: try the same index before the name.
        let old = zone
            .services
            .get(index)
            .filter(|s| s.key == service.key)
            .or_else(|| {
                zone.service_index(&service.key)
                    .and_then(|i| zone.services.get(i))
            });
        let Some(old) = old else { return fresh };
        let Some(from) = &old.counters.rows else {
            return fresh;
        };
        let same_regions = old.regions.len() == service.regions.len()
            && old
                .regions
                .iter()
                .zip(&service.regions)
                .all(|(a, b)| a.name == b.name);
        if same_regions {
            return old.counters.clone();
        }
        if let Some(to) = &fresh.rows {
            let mut rows: Vec<(usize, usize)> = service
                .regions
                .iter()
                .enumerate()
                .filter_map(|(n, r)| {
                    let o = old.regions.iter().position(|x| x.name == r.name)?;
                    Some((o, n))
                })
                .collect();
            rows.push((old.regions.len(), service.regions.len()));
            self.carries.push(Carry {
                from: Arc::clone(from),
                to: Arc::clone(to),
                rows,
            });
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Zone;
    use crate::metrics::Metrics;
    use crate::metrics::tests::series;
    use crate::routing::publish::{Publisher, ZoneFiles, load_sources};

    #[test]
    fn qtypes_outside_the_list_are_other() {
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(1)), Some(&"A"));
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(28)), Some(&"AAAA"));
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(65)), Some(&"HTTPS"));
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(99)), Some(&"other"));
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(65535)), Some(&"other"));
    }

    const GSLB: &str = "gslb.example.test.";

    fn fixtures() -> (ZoneFiles, crate::geo::GeoDb) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        load_sources(
            &root.join("fuzz/zones"),
            &root.join("geoip/meridian-sample.txt"),
        )
        .unwrap()
    }

    /// A publisher of the fixture zones and a registry with only the table's series.
    fn serving(options: SeriesOptions) -> (Publisher, Metrics, Arc<TableMetrics>) {
        let (zones, geo) = fixtures();
        let tables = Arc::new(TableMetrics::new(options));
        let m = Metrics::new(|r| tables.register_queries(r));
        let publisher = Publisher::new(zones, geo, Arc::clone(&tables)).unwrap();
        (publisher, m, tables)
    }

    /// The zone and answer lines of a rendering, sorted.
    fn table_series(m: &Metrics) -> Vec<String> {
        let mut lines: Vec<String> = m
            .render()
            .lines()
            .filter(|l| {
                l.starts_with("meridian_zone_queries") || l.starts_with("meridian_service_answers")
            })
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    }

    fn answer(zone: &str, service: &str, region: &str, outcome: &str) -> String {
        format!(
            r#"meridian_service_answers_total{{zone="{zone}",service="{service}",region="{region}",outcome="{outcome}"}}"#
        )
    }

    fn zone_series(zone: &str, qtype: &str) -> String {
        format!(r#"meridian_zone_queries_total{{zone="{zone}",qtype="{qtype}"}}"#)
    }

    /// The service `key` of the zone at `origin` in the table serving.
    fn service(p: &Publisher, origin: &str, key: &str) -> Service {
        let table = p.table();
        let zone = table
            .zone_at(&key_wire(&Name::from_ascii(origin).unwrap()))
            .unwrap();
        zone.services
            .get(zone.service_index(key).unwrap())
            .unwrap()
            .clone()
    }

    #[test]
    fn the_collector_encodes_every_zone_and_service_of_the_table_with_their_counts() {
        let (publisher, m, _) = serving(SeriesOptions::default());
        let text = m.render();
        // Names, types and help as before the counters moved into the table.
        assert!(text.contains("# HELP meridian_zone_queries_total Queries by zone (`none`: a name in no zone served here) and QTYPE (rare types are `other`)\n# TYPE meridian_zone_queries_total counter\n"), "{text}");
        assert!(text.contains("# HELP meridian_service_answers_total Answers of traffic-managed names, by the region that answered (`none` for pools and fixed fallbacks) and how (healthy, standby, fallback, nodata)\n# TYPE meridian_service_answers_total counter\n"), "{text}");
        // Every zone (and `none`) has its 15 QTYPE series, every service a row per region
        // and one for `none`, four outcomes each, all at zero.
        let table = publisher.table();
        let rows: usize = table
            .zones()
            .flat_map(|z| z.services.iter())
            .map(|s| s.regions.len() + 1)
            .sum();
        let lines = table_series(&m);
        assert_eq!(
            lines.len(),
            15 * (table.zone_count() + 1) + 4 * rows,
            "{lines:#?}"
        );
        assert!(lines.iter().all(|l| l.ends_with(" 0")), "{lines:#?}");

        let www = service(&publisher, GSLB, "www");
        let zone = table
            .zone_at(&key_wire(&Name::from_ascii(GSLB).unwrap()))
            .unwrap();
        zone.counters.count(1);
        zone.counters.count(1);
        zone.counters.count(99);
        table.unmatched.count(28);
        www.counters.count(Some(1), Outcome::Standby);
        www.counters.count(None, Outcome::NoData);
        www.counters.count(None, Outcome::NoData);
        let text = m.render();
        assert_eq!(series(&text, &zone_series(GSLB, "A")), Some(2.0), "{text}");
        assert_eq!(series(&text, &zone_series(GSLB, "other")), Some(1.0));
        assert_eq!(series(&text, &zone_series(GSLB, "AAAA")), Some(0.0));
        assert_eq!(series(&text, &zone_series("none", "AAAA")), Some(1.0));
        let second = www.regions[1].name.as_str();
        let standby = answer(GSLB, "www", second, "standby");
        assert_eq!(series(&text, &standby), Some(1.0), "{text}");
        assert_eq!(
            series(&text, &answer(GSLB, "www", "none", "nodata")),
            Some(2.0)
        );
        assert_eq!(
            series(&text, &answer(GSLB, "www", second, "healthy")),
            Some(0.0)
        );
        // The same series, in the same order, from one scrape to the next (the process
        // metrics around them move between renders, so they are left out).
        let ours = |page: &str| -> Vec<String> {
            page.lines()
                .filter(|l| {
                    l.contains("meridian_zone_queries") || l.contains("meridian_service_answers")
                })
                .map(str::to_string)
                .collect()
        };
        assert_eq!(ours(&m.render()), ours(&text));
    }

    #[test]
    fn skip_zero_and_answers_by_zone_shrink_the_page() {
        let options = SeriesOptions {
            answers_by: AnswersBy::Zone,
            skip_zero: true,
        };
        let (publisher, m, _) = serving(options);
        assert_eq!(table_series(&m), Vec::<String>::new());
        let www = service(&publisher, GSLB, "www");
        let near = service(&publisher, GSLB, "near");
        assert_eq!(near.regions[0].name, www.regions[0].name);
        let first = www.regions[0].name.clone();
        www.counters.count(Some(0), Outcome::Healthy);
        near.counters.count(Some(0), Outcome::Healthy);
        near.counters.count(Some(0), Outcome::Healthy);
        near.counters.count(None, Outcome::Fallback);
        let table = publisher.table();
        table.unmatched.count(1);
        assert_eq!(
            table_series(&m),
            [
                format!("{} 3", answer(GSLB, "", &first, "healthy")),
                format!("{} 1", answer(GSLB, "", "none", "fallback")),
                format!("{} 1", zone_series("none", "A")),
            ]
        );
        // Per service, zeros left out.
        let tables = Arc::new(TableMetrics::new(SeriesOptions {
            answers_by: AnswersBy::Service,
            skip_zero: true,
        }));
        let m = Metrics::new(|r| tables.register_queries(r));
        tables.publish(CounterFactory::detached(), &table);
        assert_eq!(
            table_series(&m),
            [
                format!("{} 2", answer(GSLB, "near", &first, "healthy")),
                format!("{} 1", answer(GSLB, "near", "none", "fallback")),
                format!("{} 1", answer(GSLB, "www", &first, "healthy")),
                format!("{} 1", zone_series("none", "A")),
            ]
        );
    }

    #[test]
    fn detached_counters_count_nowhere_and_offline_tables_have_none() {
        let zone = ZoneCounters::default();
        zone.count(1);
        assert_eq!(zone.values(), None);
        let counters = ServiceCounters::default();
        counters.count(Some(0), Outcome::Healthy);
        counters.count(None, Outcome::NoData);
        assert_eq!(counters.row(0), None);
        let (zones, geo) = fixtures();
        let list: Vec<Arc<Zone>> = zones.values().cloned().collect();
        let table = crate::routing::compile::compile(
            &list,
            Arc::new(geo),
            &super::super::compile::AllUp,
            1,
        )
        .unwrap();
        assert!(table.unmatched.by_qtype.is_none());
        for zone in table.zones() {
            assert!(zone.counters.by_qtype.is_none(), "{}", zone.origin);
            assert!(zone.services.iter().all(|s| s.counters.rows.is_none()));
        }
    }

    /// Zones of `files` with `edit` applied to the one at GSLB (a new `Arc`, as a reload
    /// that read the file again gives).
    fn edited(files: &ZoneFiles, edit: impl FnOnce(&mut Zone)) -> ZoneFiles {
        let mut next = files.clone();
        let (path, zone) = files
            .iter()
            .find(|(_, z)| z.origin.to_string() == GSLB)
            .unwrap();
        let mut zone = (**zone).clone();
        edit(&mut zone);
        next.insert(path.clone(), Arc::new(zone));
        next
    }

    #[test]
    fn counts_survive_health_changes_and_reloads_and_go_with_their_zone() {
        let (publisher, m, _) = serving(SeriesOptions::default());
        let files = publisher.zone_files();
        let www = service(&publisher, GSLB, "www");
        let near = service(&publisher, GSLB, "near");
        let eu = near.regions[0].name.clone();
        let (gone, _) = (near.regions[1].name.clone(), ());
        let zone_a = zone_series(GSLB, "A");
        let table = publisher.table();
        let gslb = key_wire(&Name::from_ascii(GSLB).unwrap());
        for _ in 0..3 {
            table.zone_at(&gslb).unwrap().counters.count(1);
            www.counters.count(Some(0), Outcome::Healthy);
            near.counters.count(Some(0), Outcome::Healthy);
            near.counters.count(Some(1), Outcome::Healthy);
            near.counters.count(None, Outcome::Fallback);
        }
        table.unmatched.count(1);
        drop(table);
        let www_eu = answer(GSLB, "www", &www.regions[0].name, "healthy");
        let near_eu = answer(GSLB, "near", &eu, "healthy");
        let near_none = answer(GSLB, "near", "none", "fallback");
        let values = |m: &Metrics| {
            let text = m.render();
            [
                &zone_a,
                &www_eu,
                &near_eu,
                &near_none,
                &zone_series("none", "A"),
            ]
            .map(|s| series(&text, s))
        };
        let three = [Some(3.0), Some(3.0), Some(3.0), Some(3.0), Some(1.0)];
        assert_eq!(values(&m), three);

        // A health change rebuilds every service: the same counters.
        let keeps_rows = |publisher: &Publisher| {
            Arc::ptr_eq(
                service(publisher, GSLB, "www")
                    .counters
                    .rows
                    .as_ref()
                    .unwrap(),
                www.counters.rows.as_ref().unwrap(),
            )
        };
        publisher.set_health(Arc::new(super::super::compile::AllUp));
        assert!(keeps_rows(&publisher));
        assert_eq!(values(&m), three);

        // A reload that parsed the zone again: the zone and its services keep their counters.
        publisher
            .set_config(edited(&files, |_| ()), publisher.geo())
            .unwrap();
        assert!(keeps_rows(&publisher));
        assert_eq!(values(&m), three);

        // `near` moves its second endpoint to another region: new rows, the counts of the
        // region it keeps and of `none` carried over, the new region from zero, the region
        // it left gone.
        let mut moved_to = String::new();
        publisher
            .set_config(
                edited(&files, |z| {
                    let region = z
                        .regions
                        .iter()
                        .position(|r| r.name != eu && r.name != gone)
                        .unwrap();
                    moved_to = z.regions[region].name.clone();
                    let near = z
                        .services
                        .iter_mut()
                        .find(|s| s.key == "near")
                        .map(Arc::make_mut)
                        .unwrap();
                    near.endpoints[1].region = region;
                }),
                publisher.geo(),
            )
            .unwrap();
        let now = service(&publisher, GSLB, "near");
        assert!(!Arc::ptr_eq(
            now.counters.rows.as_ref().unwrap(),
            near.counters.rows.as_ref().unwrap()
        ));
        assert_eq!(values(&m), three);
        let text = m.render();
        assert_eq!(
            series(&text, &answer(GSLB, "near", &moved_to, "healthy")),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            series(&text, &answer(GSLB, "near", &gone, "healthy")),
            None,
            "{text}"
        );
        now.counters.count(Some(0), Outcome::Healthy);
        assert_eq!(series(&m.render(), &near_eu), Some(4.0));

        // A zone removed takes its series with it; the others stay.
        let kept: ZoneFiles = files
            .into_iter()
            .filter(|(_, z)| z.origin.to_string() != GSLB)
            .collect();
        publisher.set_config(kept, publisher.geo()).unwrap();
        let text = m.render();
        assert!(!text.contains(&format!(r#"zone="{GSLB}""#)), "{text}");
        assert!(text.contains(r#"zone="neg.test.""#), "{text}");
        assert_eq!(series(&text, &zone_series("none", "A")), Some(1.0));
    }
}
