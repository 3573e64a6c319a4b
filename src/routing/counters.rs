//! The routing table's counters: queries per zone and QTYPE, answers per service, region and
//! [`Outcome`], and the publisher's table swaps and compile times.
//!
//! Owns: [`TableMetrics`] (the families and the set of series the live table uses), the
//! handles a compiled table carries ([`ZoneCounters`], [`ServiceCounters`]) and the
//! [`CounterFactory`] `compile` creates them with, so a table is born with its counters and
//! nothing rewrites it afterwards. Series of zones and services that leave the table are
//! removed when the publisher commits the factory of the table it stores.
//!
//! Must never: take a lock or allocate when counting: the handles are `Arc`s of atomics
//! obtained while compiling (control plane), and the query path only calls `count`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

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
        if let Some(c) = rows.get(row).and_then(|r| r.get(outcome.index())) {
            c.inc();
        }
    }
}

/// Label sets of the zone and service series of one zone label (an origin, or [`NO_ZONE`]).
#[derive(Debug, Default, PartialEq)]
struct ZoneSeries {
    zones: HashSet<ZoneLabels>,
    answers: HashSet<AnswerLabels>,
}

/// The series a table uses, by zone label: a table that shares a zone with the one before it
/// keeps that zone's series without naming them again.
#[derive(Debug, Default)]
struct LabelSets {
    by_zone: HashMap<String, ZoneSeries>,
}

impl LabelSets {
    fn zone(&mut self, origin: &str) -> &mut ZoneSeries {
        self.by_zone.entry(origin.to_string()).or_default()
    }
}

/// The routing table's metrics: per-zone and per-service families, and the publisher's
/// swap, generation, build time, compile time and what each build reused. [`Default`]
/// registers nowhere.
#[derive(Debug)]
pub struct TableMetrics {
    zone_queries: Family<ZoneLabels, Counter>,
    answers: Family<AnswerLabels, Counter>,
    /// Series of the table serving now (committed by the publisher).
    live: Mutex<LabelSets>,
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
        Self {
            zone_queries: Family::default(),
            answers: Family::default(),
            live: Mutex::default(),
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
}

impl TableMetrics {
    /// Registers the per-zone and per-service families.
    pub fn register_queries(&self, registry: &mut Registry) {
        registry.register(
            "meridian_zone_queries",
            "Queries by zone (`none`: a name in no zone served here) and QTYPE (rare types \
             are `other`)",
            self.zone_queries.clone(),
        );
        registry.register(
            "meridian_service_answers",
            "Answers of traffic-managed names, by the region that answered (`none` for pools \
             and fixed fallbacks) and how (healthy, standby, fallback, nodata)",
            self.answers.clone(),
        );
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

    /// A factory for the counters of the next table. Control plane: the families lock.
    pub fn factory(&self) -> CounterFactory<'_> {
        CounterFactory {
            metrics: Some(self),
            made: LabelSets::default(),
        }
    }

    /// The table built with `factory` is the one serving from now on, and it was built whole:
    /// series of zones and services it no longer has are removed.
    pub fn commit(&self, mut factory: CounterFactory<'_>) {
        let made = std::mem::take(&mut factory.made);
        factory.metrics = None;
        let mut live = self.lock();
        for (zone, old) in &live.by_zone {
            let new = made.by_zone.get(zone);
            self.retire(old, new);
        }
        *live = made;
    }

    /// The table built with `factory` is the one serving from now on; it shares every zone of
    /// the previous table except those whose labels are in `replaced` (recompiled or
    /// removed), so only those zones' series are compared: what `factory` made for them
    /// stays, the rest of theirs goes. Shared zones keep their series untouched.
    pub fn commit_touched(&self, mut factory: CounterFactory<'_>, replaced: &[String]) {
        let mut made = std::mem::take(&mut factory.made);
        factory.metrics = None;
        let mut live = self.lock();
        let touched: HashSet<String> = made
            .by_zone
            .keys()
            .cloned()
            .chain(replaced.iter().cloned())
            .collect();
        for zone in touched {
            let old = live.by_zone.remove(&zone).unwrap_or_default();
            let new = made.by_zone.remove(&zone);
            self.retire(&old, new.as_ref());
            if let Some(new) = new {
                live.by_zone.insert(zone, new);
            }
        }
    }

    /// Removes the series of `old` that `new` does not have.
    fn retire(&self, old: &ZoneSeries, new: Option<&ZoneSeries>) {
        for gone in &old.zones {
            if !new.is_some_and(|n| n.zones.contains(gone)) {
                self.zone_queries.remove(gone);
            }
        }
        for gone in &old.answers {
            if !new.is_some_and(|n| n.answers.contains(gone)) {
                self.answers.remove(gone);
            }
        }
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

    fn lock(&self) -> std::sync::MutexGuard<'_, LabelSets> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
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

/// Creates the counter handles of one table while it is compiled. Detached (tables compiled
/// offline), it hands out handles that count nowhere. Dropped without
/// [`TableMetrics::commit`] (the compile failed), it removes the series it created that the
/// live table does not use, so a rejected configuration leaves no series behind.
#[derive(Debug)]
pub struct CounterFactory<'a> {
    metrics: Option<&'a TableMetrics>,
    made: LabelSets,
}

impl CounterFactory<'_> {
    /// A factory whose counters count nowhere.
    pub fn detached() -> Self {
        Self {
            metrics: None,
            made: LabelSets::default(),
        }
    }

    /// Counters of zone `origin` (with trailing dot, or [`NO_ZONE`]), one per QTYPE label.
    pub fn zone(&mut self, origin: &str) -> ZoneCounters {
        let Some(metrics) = self.metrics else {
            return ZoneCounters::default();
        };
        let counters = std::array::from_fn(|i| {
            let labels = ZoneLabels {
                zone: origin.to_string(),
                qtype: QTYPE_LABELS.get(i).copied().unwrap_or("other"),
            };
            let c = metrics.zone_queries.get_or_create(&labels).clone();
            self.made.zone(origin).zones.insert(labels);
            c
        });
        ZoneCounters {
            by_qtype: Some(Arc::new(counters)),
        }
    }

    /// Counters of `service` of zone `origin`: one row per region in `regions` (the
    /// service's region order) and a last row for [`NO_REGION`], one counter per outcome.
    pub fn service<'r>(
        &mut self,
        origin: &str,
        service: &str,
        regions: impl Iterator<Item = &'r str>,
    ) -> ServiceCounters {
        let Some(metrics) = self.metrics else {
            return ServiceCounters::default();
        };
        let rows: Vec<[Counter; OUTCOMES.len()]> = regions
            .chain([NO_REGION])
            .map(|region| {
                OUTCOMES.map(|o| {
                    let labels = AnswerLabels {
                        zone: origin.to_string(),
                        service: service.to_string(),
                        region: region.to_string(),
                        outcome: o.label(),
                    };
                    let c = metrics.answers.get_or_create(&labels).clone();
                    self.made.zone(origin).answers.insert(labels);
                    c
                })
            })
            .collect();
        ServiceCounters {
            rows: Some(rows.into()),
        }
    }
}

impl Drop for CounterFactory<'_> {
    fn drop(&mut self) {
        let Some(metrics) = self.metrics else { return };
        let live = metrics.lock();
        for (zone, made) in &self.made.by_zone {
            metrics.retire(made, live.by_zone.get(zone));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::metrics::tests::series;

    #[test]
    fn qtypes_outside_the_list_are_other() {
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(1)), Some(&"A"));
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(28)), Some(&"AAAA"));
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(65)), Some(&"HTTPS"));
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(99)), Some(&"other"));
        assert_eq!(QTYPE_LABELS.get(qtype_bucket(65535)), Some(&"other"));
    }

    /// The zone and service families of a rendering (not the process metrics, which move).
    fn table_series(m: &Metrics) -> Vec<String> {
        let mut lines: Vec<String> = m
            .render()
            .lines()
            .filter(|l| l.contains("zone_queries") || l.contains("service_answers"))
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn detached_counters_leave_the_rendering_unchanged() {
        let tables = TableMetrics::default();
        let m = Metrics::new(|r| tables.register_queries(r));
        let mut factory = tables.factory();
        let zone = factory.zone("gslb.test.");
        let svc = factory.service("gslb.test.", "www", ["eu"].into_iter());
        tables.commit(factory);
        let before = table_series(&m);
        assert_eq!(before.len(), 4 + 15 + 2 * 4, "{before:?}");
        let mut detached = CounterFactory::detached();
        let (dz, ds) = (
            detached.zone("gslb.test."),
            detached.service("gslb.test.", "www", ["eu"].into_iter()),
        );
        for counters in [ZoneCounters::default(), dz] {
            counters.count(1);
        }
        for counters in [ServiceCounters::default(), ds] {
            counters.count(Some(0), Outcome::Healthy);
            counters.count(Some(3), Outcome::Healthy);
            counters.count(None, Outcome::NoData);
        }
        assert_eq!(
            table_series(&m),
            before,
            "a detached counter counted somewhere"
        );
        // The attached handles of the same labels do count.
        zone.count(1);
        svc.count(Some(0), Outcome::Healthy);
        svc.count(None, Outcome::NoData);
        let text = m.render();
        let zone_a = r#"meridian_zone_queries_total{zone="gslb.test.",qtype="A"}"#;
        assert_eq!(series(&text, zone_a), Some(1.0), "{text}");
        let eu = r#"meridian_service_answers_total{zone="gslb.test.",service="www",region="eu",outcome="healthy"}"#;
        assert_eq!(series(&text, eu), Some(1.0), "{text}");
        let none = r#"meridian_service_answers_total{zone="gslb.test.",service="www",region="none",outcome="nodata"}"#;
        assert_eq!(series(&text, none), Some(1.0), "{text}");
    }

    #[test]
    fn series_of_removed_zones_go_and_a_failed_build_leaves_none() {
        let tables = TableMetrics::default();
        let m = Metrics::new(|r| tables.register_queries(r));
        let mut factory = tables.factory();
        factory.zone("a.test.");
        factory.service("a.test.", "www", ["eu"].into_iter());
        factory.zone("b.test.");
        tables.commit(factory);
        let text = m.render();
        assert!(text.contains(r#"zone="b.test.""#), "{text}");
        // A build that fails (dropped, not committed) takes back what only it created.
        let mut failed = tables.factory();
        failed.zone("a.test.");
        failed.zone("c.test.");
        drop(failed);
        let text = m.render();
        assert!(!text.contains(r#"zone="c.test.""#), "{text}");
        assert!(text.contains(r#"zone="a.test.""#), "{text}");
        // The next table has no b.test. and no www in a.test.: their series go.
        let mut next = tables.factory();
        next.zone("a.test.");
        tables.commit(next);
        let text = m.render();
        assert!(!text.contains(r#"zone="b.test.""#), "{text}");
        assert!(!text.contains(r#"service="www""#), "{text}");
        assert!(text.contains(r#"zone="a.test.""#), "{text}");
    }
}
