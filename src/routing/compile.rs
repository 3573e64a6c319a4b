//! Turning validated zones into a [`RoutingTable`]: pure, allowed to be slow, unit-tested.
//!
//! Everything the query path would otherwise compute per query is done here once: RRsets
//! grouped and encoded, empty non-terminals created, cuts and occluded names marked,
//! wildcards linked to their parents, glue and additional data attached, the negative-answer
//! SOA prepared.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use foldhash::fast::RandomState;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::counters::CounterFactory;
use super::select::{
    CompiledFallback, CompiledPolicy, Endpoint, EndpointList, GeoOrders, NearestOrders, Order,
    RegionEndpoints, RegionList, Service,
};
use super::services::ServiceList;
use super::subnet_map::SubnetMap;
use super::table::{Glue, Node, RoutingTable, RrSet, ZoneTable};
pub use super::table::{key_wire, name_wire};
use super::weights;
use crate::config::Zone;
use crate::config::model::{self, Fallback, Policy};
use crate::config::wire::RecordStore;
use crate::geo::{Continent, GeoDb};

/// The decided state of one endpoint, as the compiler needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    /// Answer it.
    Up,
    /// Do not answer it (unless the fallback does).
    Down,
    /// Healthy, but weight 0: no new answers while anything weighted is up.
    Drain,
}

/// What the compiler weighs an endpoint with besides its state (see [`super::weights`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EndpointDetail {
    /// Load, 0.0-1.0, for shedding.
    pub load: Option<f64>,
    /// Weight hint of an exec check.
    pub weight: Option<u32>,
    /// How long ago it came back from down (as of the health snapshot), for slow start.
    pub recovered_for: Option<std::time::Duration>,
    /// A vote is counting towards rise or fall (dynamic TTL).
    pub transition: bool,
}

/// Where the compiler learns each endpoint's state (the health module implements it).
pub trait EndpointHealth: Sync {
    /// State of `address` (in `region`) of `service` in `zone`.
    fn state(
        &self,
        zone: &Name,
        service: &str,
        region: &str,
        address: std::net::IpAddr,
    ) -> EndpointState;

    /// Load, weight hint, recovery and transition of an endpoint; nothing by default.
    fn detail(&self, _zone: &Name, _service: &str, _address: std::net::IpAddr) -> EndpointDetail {
        EndpointDetail::default()
    }
}

/// Every endpoint up: before any health information exists, and for offline `explain`.
pub struct AllUp;

impl EndpointHealth for AllUp {
    fn state(&self, _: &Name, _: &str, _: &str, _: std::net::IpAddr) -> EndpointState {
        EndpointState::Up
    }
}

/// Why a zone could not be compiled (validation should have caught it; this is the backstop).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Encoding a record failed.
    #[error("{}: cannot encode {owner} {rtype}: {message}", file.display())]
    Encode {
        /// Zone file.
        file: std::path::PathBuf,
        /// Record owner.
        owner: String,
        /// Record type.
        rtype: RecordType,
        /// What the encoder said.
        message: String,
    },
}

/// RDATA in wire form with every name uncompressed (it is copied into responses verbatim).
pub fn rdata_wire(rdata: &RData) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    crate::config::wire::write_rdata(rdata, &mut buf)?;
    Ok(buf)
}

/// Compiles `zones` with `geo` and the endpoints' `health` into table number `generation`,
/// with counters that count nowhere (offline tables: `check-config`, `explain`, tests).
pub fn compile(
    zones: &[Arc<Zone>],
    geo: Arc<GeoDb>,
    health: &dyn EndpointHealth,
    generation: u64,
) -> Result<RoutingTable, CompileError> {
    compile_counted(
        zones,
        geo,
        health,
        generation,
        &mut CounterFactory::detached(),
    )
}

/// Zones one compiling thread takes at a time ([`each_zone`]).
const ZONES_PER_RUN: usize = 64;

/// `step` over `zones`, in runs of [`ZONES_PER_RUN`] on every core the loader may use: zones
/// compile independently. Each run has its own fork of `counters`, whose carries join it;
/// `take` gets the results in zone order, and the first error is the one a loop would meet.
fn each_zone<R: Send>(
    zones: &[Arc<Zone>],
    counters: &mut CounterFactory,
    step: impl Fn(&Arc<Zone>, &mut CounterFactory) -> Result<R, CompileError> + Sync,
    mut take: impl FnMut(R),
) -> Result<(), CompileError> {
    let runs: Vec<&[Arc<Zone>]> = zones.chunks(ZONES_PER_RUN).collect();
    let template = counters.fork();
    crate::config::load::map_in_order(
        &runs,
        |run| {
            let mut factory = template.fork();
            let out = run
                .iter()
                .map(|zone| step(zone, &mut factory))
                .collect::<Result<Vec<R>, _>>()?;
            Ok((out, factory))
        },
        |(out, factory)| {
            out.into_iter().for_each(&mut take);
            counters.join(factory);
            Ok(())
        },
    )
}

/// Like [`compile`], with the counters of every zone and service (and of names in no zone)
/// handed out by `counters` (those of the previous table's zone or service of the same name,
/// or new): the table is born with them. The caller hands the factory back when it publishes
/// the table ([`super::counters::TableMetrics::publish`]).
pub fn compile_counted(
    zones: &[Arc<Zone>],
    geo: Arc<GeoDb>,
    health: &dyn EndpointHealth,
    generation: u64,
    counters: &mut CounterFactory,
) -> Result<RoutingTable, CompileError> {
    let mut map = HashMap::with_capacity_and_hasher(zones.len(), RandomState::default());
    each_zone(
        zones,
        counters,
        |zone, factory| {
            Ok((
                Arc::from(key_wire(&zone.origin)),
                Arc::new(compile_zone(zone, health, factory)?),
            ))
        },
        |(key, table)| {
            map.insert(key, table);
        },
    )?;
    Ok(RoutingTable {
        generation,
        built_at: SystemTime::now(),
        zones: map,
        geo,
        unmatched: counters.unmatched(),
    })
}

/// How much of a table was built anew and how much was taken from the table before it
/// ([`recompile_zones`], [`rebuild_services`]): the publisher's metrics, and what tests check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reuse {
    /// Zones compiled from their source.
    pub zones_compiled: usize,
    /// Zones shared with the previous table (their services may have been rebuilt).
    pub zones_reused: usize,
    /// Services compiled (in compiled zones, or rebuilt for health).
    pub services_compiled: usize,
    /// Services shared with the previous table.
    pub services_reused: usize,
}

/// A table built from another: the table and what it reused.
pub struct Recompiled {
    /// The new table.
    pub table: RoutingTable,
    /// What was rebuilt and what shared.
    pub reuse: Reuse,
}

/// Compiles `zones` into table `generation`, sharing every zone of `previous` whose source
/// is the very same loaded zone (`Arc` identity: a reload that did not re-read a file hands
/// back the same `Arc`) unless `fresh` says it must be rebuilt (DNSSEC re-signing). Only the
/// compiled zones get counters from `counters` (a zone compiled again takes over its
/// predecessor's); shared zones keep theirs. Every shared zone must have been compiled
/// against `health` (the publisher's invariant).
pub fn recompile_zones(
    previous: &RoutingTable,
    zones: &[Arc<Zone>],
    geo: Arc<GeoDb>,
    health: &dyn EndpointHealth,
    generation: u64,
    counters: &mut CounterFactory,
    fresh: &(dyn Fn(&Zone) -> bool + Sync),
) -> Result<Recompiled, CompileError> {
    /// What became of one zone.
    enum Step {
        /// The previous table's zone, shared.
        Shared(Arc<[u8]>, Arc<ZoneTable>),
        /// Compiled: the zone, and how many of its services were compiled.
        Compiled(Arc<[u8]>, ZoneTable, usize),
    }
    let step = |zone: &Arc<Zone>, counters: &mut CounterFactory| -> Result<Step, CompileError> {
        let key = key_wire(&zone.origin);
        let shared = previous
            .zones
            .get_key_value(&*key)
            .filter(|(_, old)| Arc::ptr_eq(&old.source, zone) && !fresh(zone));
        if let Some((key, old)) = shared {
            return Ok(Step::Shared(Arc::clone(key), Arc::clone(old)));
        }
        let frame = previous
            .zones
            .get(&*key)
            .filter(|old| !fresh(zone) && same_frame(&old.source, zone));
        Ok(match frame {
            // Only services changed, none added, removed or moved: the names, records and
            // every service the file still says the same are shared.
            Some(old) => {
                let (table, rebuilt) = rebuild_changed(old, zone, health, counters);
                Step::Compiled(Arc::from(key), table, rebuilt)
            }
            None => Step::Compiled(
                Arc::from(key),
                compile_zone(zone, health, counters)?,
                zone.services.len(),
            ),
        })
    };
    let mut map = HashMap::with_capacity_and_hasher(zones.len(), RandomState::default());
    let mut reuse = Reuse::default();
    each_zone(zones, counters, step, |step| match step {
        Step::Shared(key, old) => {
            reuse.zones_reused += 1;
            reuse.services_reused += old.services.len();
            map.insert(key, old);
        }
        Step::Compiled(key, table, rebuilt) => {
            reuse.zones_compiled += 1;
            reuse.services_compiled += rebuilt;
            reuse.services_reused += table.services.len() - rebuilt;
            map.insert(key, Arc::new(table));
        }
    })?;
    Ok(Recompiled {
        table: RoutingTable {
            generation,
            built_at: SystemTime::now(),
            zones: map,
            geo,
            unmatched: previous.unmatched.clone(),
        },
        reuse,
    })
}

/// True when `new` differs from `old` (the source of the serving zone) in its services'
/// configuration at most: same records, SOA, regions, checks (as services compile them) and
/// service names in the same order, and neither is signed. Its node tree is then the same, and
/// a service the loader shared (`load::reload_zone`) compiles to the same service.
fn same_frame(old: &Zone, new: &Zone) -> bool {
    fn checks(z: &Zone) -> Vec<(&str, crate::config::check::Shed)> {
        z.checks
            .iter()
            .map(|c| (c.name.as_str(), c.spec.shed))
            .collect()
    }
    // Exactly as served: hickory compares names without regard to case, answers carry the
    // case as configured.
    fn same_records(a: &[Record], b: &[Record]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x == y
                    && name_wire(&x.name) == name_wire(&y.name)
                    && rdata_wire(&x.data).ok() == rdata_wire(&y.data).ok()
            })
    }
    old.dnssec.is_none()
        && new.dnssec.is_none()
        && name_wire(&old.origin) == name_wire(&new.origin)
        && same_records(
            std::slice::from_ref(&old.soa),
            std::slice::from_ref(&new.soa),
        )
        && old.records == new.records
        && old.regions == new.regions
        && checks(old) == checks(new)
        && old.services.len() == new.services.len()
        && old
            .services
            .iter()
            .zip(&new.services)
            .all(|(a, b)| a.key == b.key && a.name == b.name)
}

/// `zone` compiled from `old` (the serving zone of the same origin, [`same_frame`]): the
/// services whose model is not the one `old` was compiled from are compiled again, every
/// other one, the node tree and the negative SOA are shared. Returns the zone and how many
/// services were compiled.
fn rebuild_changed(
    old: &ZoneTable,
    zone: &Arc<Zone>,
    health: &dyn EndpointHealth,
    counters: &mut CounterFactory,
) -> (ZoneTable, usize) {
    let previous = counters.previous_zone(&zone.origin);
    let mut shared = Shared::default();
    let replacements: Vec<(usize, Service)> = zone
        .services
        .iter()
        .enumerate()
        .filter(|(i, svc)| {
            old.source
                .services
                .get(*i)
                .is_none_or(|before| !Arc::ptr_eq(before, svc))
        })
        .map(|(i, svc)| {
            let mut service = compile_service_shared(zone, svc, health, &mut shared, None);
            service.counters = counters.service(previous.as_deref(), i, &service);
            (i, service)
        })
        .collect();
    let rebuilt = replacements.len();
    let table = ZoneTable {
        origin: zone.origin.clone(),
        serial: zone.serial(),
        source: Arc::clone(zone),
        nodes: Arc::clone(&old.nodes),
        node_list: Arc::clone(&old.node_list),
        negative_soa: Arc::clone(&old.negative_soa),
        services: old.services.with_replaced(replacements),
        counters: counters.zone(previous.as_deref()),
        dnssec: None,
    };
    (table, rebuilt)
}

/// Table `generation`: `previous` with the services at `changed` (zone apex in lowercase wire
/// form, service indices) compiled again against `health`, everything else shared. A rebuilt
/// service keeps its counters (its regions do not depend on health). Unknown zones and
/// indices are skipped.
pub fn rebuild_services(
    previous: &RoutingTable,
    changed: &[(Box<[u8]>, Vec<usize>)],
    health: &dyn EndpointHealth,
    generation: u64,
) -> (RoutingTable, Reuse) {
    let mut zones = previous.zones.clone();
    let mut reuse = Reuse {
        zones_reused: zones.len(),
        ..Reuse::default()
    };
    let mut rebuilt = 0;
    for (key, indices) in changed {
        let Some(old) = zones.get_mut(&**key) else {
            continue;
        };
        let source = Arc::clone(&old.source);
        let mut shared = Shared::default();
        let replacements: Vec<(usize, Service)> = indices
            .iter()
            .filter_map(|&i| {
                let svc = source.services.get(i)?;
                let before = old.services.get(i)?;
                // The orders depend on the configuration only: keep the old handle.
                let mut service =
                    compile_service_shared(&source, svc, health, &mut shared, Some(&before.policy));
                if service.regions == before.regions {
                    service.regions = before.regions.clone();
                }
                service.counters = before.counters.clone();
                Some((i, service))
            })
            .collect();
        if replacements.is_empty() {
            continue;
        }
        rebuilt += replacements.len();
        *old = Arc::new(ZoneTable {
            origin: old.origin.clone(),
            serial: old.serial,
            source: Arc::clone(&old.source),
            nodes: Arc::clone(&old.nodes),
            node_list: Arc::clone(&old.node_list),
            negative_soa: Arc::clone(&old.negative_soa),
            services: old.services.with_replaced(replacements),
            counters: old.counters.clone(),
            dnssec: old.dnssec.clone(),
        });
    }
    let total: usize = zones.values().map(|z| z.services.len()).sum();
    reuse.services_compiled = rebuilt;
    reuse.services_reused = total.saturating_sub(rebuilt);
    (
        RoutingTable {
            generation,
            built_at: SystemTime::now(),
            zones,
            geo: Arc::clone(&previous.geo),
            unmatched: previous.unmatched.clone(),
        },
        reuse,
    )
}

impl ZoneTable {
    /// Position of the service with key `key` (as configured) in [`ZoneTable::services`].
    /// Found through the name index (the service's node), so a zone with a million services
    /// answers without a scan; falls back to a scan for keys that are not a plain label path.
    pub fn service_index(&self, key: &str) -> Option<usize> {
        let name = if key == "@" {
            Some(self.origin.clone())
        } else {
            Name::from_ascii(key)
                .ok()
                .and_then(|n| n.append_domain(&self.origin).ok())
        };
        let by_node = name
            .and_then(|n| self.nodes.get(&*key_wire(&n)).copied())
            .and_then(|i| self.node_list.get(usize::try_from(i).ok()?))
            .and_then(|node| usize::try_from(node.service?).ok())
            .filter(|&i| self.services.get(i).is_some_and(|s| s.key == key));
        by_node.or_else(|| self.services.iter().position(|s| s.key == key))
    }
}

/// An order over all of a service's `count` regions: `listed` (zone region indices, mapped
/// through `region_of`) first, then the rest in the service's (file) order. Linear in the
/// regions: no search per region.
fn full_order(listed: &[usize], region_of: &impl Fn(usize) -> Option<u16>, count: usize) -> Order {
    let mut seen = vec![false; count];
    let mut out: Vec<u16> = Vec::with_capacity(count);
    for idx in listed.iter().filter_map(|&i| region_of(i)) {
        if let Some(s) = seen.get_mut(usize::from(idx)) {
            if !*s {
                *s = true;
                out.push(idx);
            }
        }
    }
    for (idx, s) in seen.iter().enumerate() {
        if !*s {
            out.push(u16::try_from(idx).unwrap_or(u16::MAX));
        }
    }
    out.into_boxed_slice()
}

/// A or AAAA RDATA of an address.
fn address_rdata(address: std::net::IpAddr) -> Box<[u8]> {
    match address {
        std::net::IpAddr::V4(a) => Box::new(a.octets()),
        std::net::IpAddr::V6(a) => Box::new(a.octets()),
    }
}

/// A service's policy as an interning key: equal when the configured policies are (the
/// derived `PartialEq` of the model), hashed over the same fields.
struct PolicyKey<'z>(&'z Policy);

impl PartialEq for PolicyKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for PolicyKey<'_> {}

impl Hash for PolicyKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        std::mem::discriminant(self.0).hash(h);
        match self.0 {
            Policy::Geo(map) => {
                map.default.hash(h);
                map.country.hash(h);
                map.continent.hash(h);
                map.subnet.hash(h);
            }
            Policy::Failover(list) => list.hash(h),
            Policy::Nearest | Policy::Weighted => {}
        }
    }
}

/// A service's regions before interning: (zone region index, endpoint range, share) each.
type RegionsKey = Vec<(usize, Range<usize>, u16)>;

/// What the services of one zone share, compiled once per distinct input: region lists
/// (the same regions with the same endpoint counts and shares) and policy orders (the same
/// configured policy over the same regions). A catalogue of a million services with a
/// handful of shapes keeps a handful of each. Lives for one zone compile; a health rebuild
/// takes the orders from the service it replaces (they never depend on health).
#[derive(Default)]
pub struct Shared<'z> {
    regions: HashMap<RegionsKey, RegionList, RandomState>,
    policies: HashMap<(PolicyKey<'z>, Box<[usize]>), CompiledPolicy, RandomState>,
}

impl<'z> Shared<'z> {
    /// The list for `key`, built from `zone`'s regions the first time.
    fn regions(&mut self, zone: &Zone, key: RegionsKey) -> RegionList {
        if let Some(list) = self.regions.get(&key) {
            return list.clone();
        }
        let list: RegionList = key
            .iter()
            .filter_map(|(zi, range, share)| {
                let region = zone.regions.get(*zi)?;
                Some(RegionEndpoints {
                    name: region.name.clone(),
                    coords: region.location,
                    endpoints: range.clone(),
                    share: *share,
                })
            })
            .collect::<Vec<_>>()
            .into();
        self.regions.insert(key, list.clone());
        list
    }

    /// Distinct region lists so far (tests).
    pub fn region_lists(&self) -> usize {
        self.regions.len()
    }

    /// Distinct policies so far (tests).
    pub fn policies(&self) -> usize {
        self.policies.len()
    }
}

/// Compiles the orders of `policy` over a service's regions (`zone_regions`: their zone
/// indices, in the service's order).
fn compile_policy(zone: &Zone, policy: &Policy, zone_regions: &[usize]) -> CompiledPolicy {
    // (zone region index, service region index), sorted by the first.
    let mut region_map: Vec<(usize, u16)> = zone_regions
        .iter()
        .enumerate()
        .filter_map(|(i, zi)| Some((*zi, u16::try_from(i).ok()?)))
        .collect();
    region_map.sort_unstable();
    let region_of = |zi: usize| {
        region_map
            .binary_search_by_key(&zi, |(z, _)| *z)
            .ok()
            .and_then(|i| region_map.get(i))
            .map(|(_, s)| *s)
    };
    let count = zone_regions.len();
    let order = |list: &[usize]| full_order(list, &region_of, count);
    match policy {
        Policy::Geo(map) => {
            let mut country: Vec<_> = map
                .country
                .iter()
                .map(|(c, list)| (*c, order(list)))
                .collect();
            country.sort_by_key(|a| a.0);
            country.dedup_by(|a, b| a.0 == b.0);
            let mut continent: [Option<Order>; 7] = Default::default();
            for (c, list) in &map.continent {
                if let Some(pos) = Continent::ALL.iter().position(|x| x == c) {
                    if let Some(slot) = continent.get_mut(pos) {
                        if slot.is_none() {
                            *slot = Some(order(list));
                        }
                    }
                }
            }
            let default = order(&map.default);
            // When every country and continent entry orders like the default, GeoIP cannot
            // change the answer: ECS scopes then need not stop at GeoIP networks.
            let geo_fixed = country.iter().all(|(_, order)| *order == default)
                && continent.iter().flatten().all(|order| *order == default);
            let subnet = map
                .subnet
                .iter()
                .map(|(net, list)| (*net, order(list)))
                .collect();
            CompiledPolicy::Geo(Arc::new(GeoOrders {
                subnet: SubnetMap::new(subnet, geo_fixed.then_some(&default)),
                default,
                country,
                continent,
            }))
        }
        Policy::Nearest => {
            let coords: Vec<_> = zone_regions
                .iter()
                .map(|zi| zone.regions.get(*zi).and_then(|r| r.location))
                .collect();
            CompiledPolicy::Nearest(Arc::new(NearestOrders::new(&coords)))
        }
        Policy::Failover(list) => CompiledPolicy::Failover(Arc::new(order(list))),
        Policy::Weighted => CompiledPolicy::Weighted,
    }
}

/// Compiles one service: endpoints grouped by region with their health, orders resolved.
/// Shares nothing with other services (tests, and callers that compile one service).
pub fn compile_service(zone: &Zone, svc: &model::Service, health: &dyn EndpointHealth) -> Service {
    compile_service_shared(zone, svc, health, &mut Shared::default(), None)
}

/// [`compile_service`] with the region lists and orders interned in `shared` (or, with
/// `policy`, the orders of the compiled service it replaces).
pub fn compile_service_shared<'z>(
    zone: &Zone,
    svc: &'z model::Service,
    health: &dyn EndpointHealth,
    shared: &mut Shared<'z>,
    policy: Option<&CompiledPolicy>,
) -> Service {
    // The service's endpoints grouped by zone region, regions in zone file order: one sort
    // of the service's own endpoints, never a walk over every region of the zone.
    let mut members: Vec<&model::Endpoint> = svc.endpoints.iter().collect();
    members.sort_by_key(|e| e.region);
    let mut layout: RegionsKey = Vec::new();
    let mut endpoints = Vec::with_capacity(svc.endpoints.len());
    let shed = svc
        .check
        .as_ref()
        .and_then(|name| zone.checks.iter().find(|c| &c.name == name))
        .map(|c| c.spec.shed)
        .unwrap_or_default();
    let mut transition = false;
    for group in members.chunk_by(|a, b| a.region == b.region) {
        let Some(zi) = group.first().map(|e| e.region) else {
            continue;
        };
        let Some(region) = zone.regions.get(zi) else {
            continue;
        };
        let Ok(index) = u16::try_from(layout.len()) else {
            continue;
        };
        let start = endpoints.len();
        let states: Vec<EndpointState> = group
            .iter()
            .map(|e| health.state(&zone.origin, &svc.key, &region.name, e.address))
            .collect();
        let inputs: Vec<weights::Input> = group
            .iter()
            .zip(&states)
            .map(|(e, state)| {
                let d = health.detail(&zone.origin, &svc.key, e.address);
                weights::Input {
                    configured: e.weight,
                    serving: *state == EndpointState::Up,
                    hint: d.weight,
                    load: d.load,
                    recovered_for: d.recovered_for,
                    transition: d.transition,
                }
            })
            .collect();
        let weighing = weights::weigh(&inputs, svc.health.slow_start, shed);
        transition |= weighing.transition;
        for ((e, state), out) in group.iter().zip(&states).zip(&weighing.endpoints) {
            endpoints.push(Endpoint {
                address: e.address,
                weight: if *state == EndpointState::Drain {
                    0
                } else {
                    out.weight
                },
                configured_weight: e.weight,
                healthy: *state != EndpointState::Down,
                region: index,
            });
        }
        if endpoints.len() > start {
            let share = weights::per_mille(weighing.region_share);
            layout.push((zi, start..endpoints.len(), share));
        }
    }
    let policy = match policy {
        Some(p) => p.clone(),
        None => {
            let zone_regions: Box<[usize]> = layout.iter().map(|(zi, _, _)| *zi).collect();
            let key = (PolicyKey(&svc.policy), zone_regions);
            match shared.policies.get(&key) {
                Some(p) => p.clone(),
                None => {
                    let p = compile_policy(zone, &svc.policy, &key.1);
                    shared.policies.insert(key, p.clone());
                    p
                }
            }
        }
    };
    let regions = shared.regions(zone, layout);
    let fallback = match &svc.fallback {
        Fallback::All => CompiledFallback::All,
        Fallback::None => CompiledFallback::None,
        Fallback::Addresses(list) => {
            CompiledFallback::Addresses(list.iter().map(|a| (*a, address_rdata(*a))).collect())
        }
    };
    // Nothing healthy for a family that has endpoints: its answers are the fallback.
    let fallback_answers = [true, false].into_iter().any(|v4| {
        let family = endpoints.iter().filter(|e| e.address.is_ipv4() == v4);
        family.clone().next().is_some() && !family.clone().any(|e| e.healthy)
    });
    let ttl = weights::ttl(
        svc.ttl,
        svc.health.min_ttl,
        svc.health.dynamic_ttl,
        transition,
        fallback_answers,
    );
    Service {
        key: svc.key.clone(),
        ttl,
        answers: svc.answers,
        policy,
        regions,
        endpoints: EndpointList::from(endpoints),
        fallback,
        counters: Default::default(),
    }
}

/// An RRset while it is being gathered: each record's RDATA decoded (for targets and
/// duplicates) and in wire form as the model stores it.
struct Gathered {
    owner: Name,
    ttl: u32,
    rdata: Vec<RData>,
    wire: Vec<Box<[u8]>>,
}

fn compile_zone(
    zone: &Arc<Zone>,
    health: &dyn EndpointHealth,
    counters: &mut CounterFactory,
) -> Result<ZoneTable, CompileError> {
    let origin = zone.origin.to_lowercase();
    // (owner key, type) -> RRset; BTreeMap keeps the output deterministic.
    let mut sets: BTreeMap<(Box<[u8]>, u16), Gathered> = BTreeMap::new();
    // DNSSEC: the apex DNSKEY, CDS and CDNSKEY are served like any record.
    let keys = super::signed::apex_records(zone);
    let keys = RecordStore::new(&keys).map_err(|message| CompileError::Encode {
        file: zone.file.clone(),
        owner: zone.origin.to_string(),
        rtype: RecordType::DNSKEY,
        message,
    })?;
    for stored in zone.records.entries().chain(keys.entries()) {
        // Every stored record decodes (the loader checked); the RDATA bytes are served as
        // stored. One that did not would be a defect: the zone fails to compile (and keeps
        // its previous version) rather than serve without it.
        let Some(record) = stored.record() else {
            return Err(CompileError::Encode {
                file: zone.file.clone(),
                owner: wire_to_name(stored.owner).to_string(),
                rtype: stored.record_type(),
                message: "the stored record does not decode".into(),
            });
        };
        let key = (
            stored.owner.to_ascii_lowercase().into_boxed_slice(),
            stored.rtype,
        );
        let set = sets.entry(key).or_insert_with(|| Gathered {
            owner: record.name.clone(),
            ttl: record.ttl,
            rdata: Vec::new(),
            wire: Vec::new(),
        });
        set.ttl = set.ttl.min(record.ttl);
        if !set.rdata.contains(&record.data) {
            set.rdata.push(record.data);
            set.wire.push(stored.rdata.into());
        }
    }

    let mut builder = NodeBuilder {
        origin: &origin,
        nodes: HashMap::with_hasher(RandomState::default()),
        list: Vec::new(),
    };
    builder.ensure(&origin);
    for g in sets.values() {
        builder.ensure(&g.owner);
    }
    // A zone compiled again under the same origin keeps counting into its counters.
    let previous = counters.previous_zone(&zone.origin);
    let mut shared = Shared::default();
    let services: ServiceList = zone
        .services
        .iter()
        .enumerate()
        .map(|(i, svc)| {
            let mut service = compile_service_shared(zone, svc, health, &mut shared, None);
            service.counters = counters.service(previous.as_deref(), i, &service);
            service
        })
        .collect();
    for (i, svc) in zone.services.iter().enumerate() {
        let idx = builder.ensure(&svc.name);
        if let Some(node) = builder.list.get_mut(idx as usize) {
            node.service = u32::try_from(i).ok();
        }
    }

    // RRsets onto their nodes.
    for ((key, rtype), g) in sets.iter_mut() {
        let rrset = RrSet {
            rtype: *rtype,
            ttl: g.ttl,
            rdata: std::mem::take(&mut g.wire),
            additional: Vec::new(),
        };
        if let Some(node) = builder.get_mut(key) {
            if *rtype == u16::from(RecordType::CNAME) {
                if let Some(RData::CNAME(target)) = g.rdata.first() {
                    node.cname_target = Some(key_wire(&target.0));
                }
            }
            node.rrsets.push(rrset);
        }
    }

    let NodeBuilder {
        nodes, mut list, ..
    } = builder;

    // Cuts, then occlusion (names at or below a cut, the cut itself excepted).
    let apex_key = key_wire(&origin);
    for node in list.iter_mut() {
        node.cut = node.name_wire.to_ascii_lowercase().as_slice() != &*apex_key
            && node
                .rrsets
                .iter()
                .any(|r| r.rtype == u16::from(RecordType::NS));
    }
    let lookup = |name: &Name| nodes.get(&key_wire(name)).copied();
    let names: Vec<Name> = list.iter().map(|n| wire_to_name(&n.name_wire)).collect();
    for (i, name) in names.iter().enumerate() {
        let mut highest_cut = None;
        let mut ancestor = name.base_name();
        while ancestor.num_labels() > origin.num_labels() {
            if let Some(idx) = lookup(&ancestor) {
                if list.get(idx as usize).is_some_and(|n| n.cut) {
                    highest_cut = Some(idx);
                }
            }
            ancestor = ancestor.base_name();
        }
        if let Some(node) = list.get_mut(i) {
            node.occluded_by = highest_cut;
        }
        if name.is_wildcard() {
            if let Some(parent) = lookup(&name.base_name()) {
                if let Some(p) = list.get_mut(parent as usize) {
                    p.wildcard = u32::try_from(i).ok();
                }
            }
        }
    }

    // Additional data: A/AAAA of in-zone names that NS, MX and SRV records point to.
    let addresses = |target: &Name| -> Vec<Glue> {
        let Some(idx) = lookup(target) else {
            return Vec::new();
        };
        let Some(node) = list.get(idx as usize) else {
            return Vec::new();
        };
        [RecordType::A, RecordType::AAAA]
            .into_iter()
            .filter_map(|t| node.rrsets.iter().find(|r| r.rtype == u16::from(t)))
            .map(|r| Glue {
                node: idx,
                rtype: r.rtype,
            })
            .collect()
    };
    let mut extra: Vec<(usize, u16, Vec<Glue>)> = Vec::new();
    for ((key, rtype), g) in &sets {
        let targets: Vec<&Name> = g
            .rdata
            .iter()
            .filter_map(|r| match r {
                RData::NS(ns) => Some(&ns.0),
                RData::MX(mx) => Some(&mx.exchange),
                RData::SRV(srv) => Some(&srv.target),
                _ => None,
            })
            .filter(|t| origin.zone_of(t))
            .collect();
        if targets.is_empty() {
            continue;
        }
        let glue: Vec<Glue> = targets.into_iter().flat_map(&addresses).collect();
        if let Some(&idx) = nodes.get(key) {
            extra.push((idx as usize, *rtype, glue));
        }
    }
    for (idx, rtype, glue) in extra {
        if let Some(rrset) = list
            .get_mut(idx)
            .and_then(|n| n.rrsets.iter_mut().find(|r| r.rtype == rtype))
        {
            rrset.additional = glue;
        }
    }

    let (soa_ttl, minimum) = match &zone.soa.data {
        RData::SOA(soa) => (zone.soa.ttl, soa.minimum),
        _ => (zone.soa.ttl, zone.soa.ttl),
    };
    // A signed zone's serial follows its signing (`signed::serial`); SOA answers, negative
    // answers and transfers all carry it.
    let serial = super::signed::serial(zone);
    let resigned;
    let soa_data = match &zone.soa.data {
        RData::SOA(soa) if soa.serial != serial => {
            let mut soa = soa.clone();
            soa.serial = serial;
            resigned = RData::SOA(soa);
            &resigned
        }
        data => data,
    };
    let soa_wire = rdata_wire(soa_data).map_err(|message| CompileError::Encode {
        file: zone.file.clone(),
        owner: origin.to_string(),
        rtype: RecordType::SOA,
        message,
    })?;
    let soa = RrSet {
        rtype: u16::from(RecordType::SOA),
        ttl: soa_ttl,
        rdata: vec![soa_wire.clone().into_boxed_slice()],
        additional: Vec::new(),
    };
    if let Some(apex) = nodes.get(&apex_key).and_then(|&i| list.get_mut(i as usize)) {
        apex.rrsets.push(soa);
        apex.rrsets.sort_by_key(|r| r.rtype);
    }
    // The table lives as long as the zone serves: no spare capacity. A node's first RRset
    // reserved room for four (224 bytes) where most names have one or two: at 100,000 small
    // zones the slack was about 110 MB of the table.
    for node in list.iter_mut() {
        node.rrsets.sort_by_key(|r| r.rtype);
        node.rrsets.shrink_to_fit();
    }
    list.shrink_to_fit();

    let mut table = ZoneTable {
        origin: zone.origin.clone(),
        serial,
        source: Arc::clone(zone),
        nodes: Arc::new(nodes),
        node_list: Arc::new(list),
        negative_soa: Arc::new(RrSet {
            rtype: u16::from(RecordType::SOA),
            ttl: soa_ttl.min(minimum),
            rdata: vec![soa_wire.into_boxed_slice()],
            additional: Vec::new(),
        }),
        services,
        counters: counters.zone(previous.as_deref()),
        dnssec: None,
    };
    super::signed::sign(&mut table, crate::dnssec::time::now());
    Ok(table)
}

/// Parses a wire-form name back (only names this module produced, so it cannot fail).
fn wire_to_name(wire: &[u8]) -> Name {
    let mut labels = Vec::new();
    let mut pos = 0usize;
    while let Some(&len) = wire.get(pos) {
        if len == 0 {
            break;
        }
        let end = pos + 1 + usize::from(len);
        if let Some(label) = wire.get(pos + 1..end) {
            labels.push(label.to_vec());
        }
        pos = end;
    }
    Name::from_labels(labels).unwrap_or_else(|_| Name::root())
}

/// Creates nodes for names and every ancestor down to the apex (empty non-terminals).
struct NodeBuilder<'a> {
    origin: &'a Name,
    nodes: HashMap<Box<[u8]>, u32, RandomState>,
    list: Vec<Node>,
}

impl NodeBuilder<'_> {
    /// Adds `name` and its ancestors up to the origin that are missing; returns the index of
    /// `name`'s node. Works on the wire form: one encoding per name, each ancestor a suffix
    /// of it, its key the suffix lowercased (a label length is below 64, never a letter).
    fn ensure(&mut self, name: &Name) -> u32 {
        let wire = name_wire(name);
        let origin_labels = usize::from(self.origin.num_labels());
        let mut labels = usize::from(name.num_labels());
        let mut at = 0;
        let mut first = None;
        loop {
            let part = wire.get(at..).unwrap_or_default();
            let key: Box<[u8]> = part.to_ascii_lowercase().into_boxed_slice();
            let idx = match self.nodes.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    return first.unwrap_or(*e.get());
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    let idx = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
                    e.insert(idx);
                    idx
                }
            };
            self.list.push(Node {
                name_wire: part.into(),
                rrsets: Vec::new(),
                cut: false,
                occluded_by: None,
                wildcard: None,
                service: None,
                cname_target: None,
                dnssec: None,
            });
            let mine = *first.get_or_insert(idx);
            if labels <= origin_labels {
                return mine;
            }
            labels -= 1;
            at += 1 + usize::from(part.first().copied().unwrap_or(0));
        }
    }

    fn get_mut(&mut self, key: &[u8]) -> Option<&mut Node> {
        let idx = *self.nodes.get(key)?;
        self.list.get_mut(idx as usize)
    }
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
