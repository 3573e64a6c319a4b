//! Choosing the addresses of a traffic-managed name for one client.
//!
//! Runs on the query path: reads the compiled [`Service`], looks the client up in GeoIP, draws
//! random numbers, writes records; never allocates, locks or fails. The policy orders regions
//! (geo, nearest, failover) or pools them (weighted); the walk takes the first region with a
//! healthy weighted endpoint, then the first with a healthy standby, then the fallback, so a
//! service answers with something unless its fallback says `none`.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use ipnet::IpNet;

pub use super::counters::Outcome;
use super::counters::ServiceCounters;
use super::sink::AnswerSink;
use super::subnet_map::SubnetMap;
use crate::config::model::MAX_ANSWERS;
use crate::geo::{Continent, Coords, CountryCode, GeoDb, Location, distance_km};
use crate::proto::{ClientSubnet, Owner, Section, qtype};

/// Who is asking: the packet's source, and the ECS option when the resolver sent one.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    /// Source address of the packet.
    pub source: IpAddr,
    /// EDNS Client Subnet, validated.
    pub subnet: Option<ClientSubnet>,
}

impl Client {
    /// The address to locate, and the prefix of it that is known (ECS source prefix, or the
    /// whole address). `None` when the resolver said "no client information" (source /0).
    pub fn locate_addr(&self) -> Option<(IpAddr, u8)> {
        match self.subnet {
            Some(ecs) if ecs.source_prefix == 0 => None,
            Some(ecs) => Some((ecs.addr, ecs.source_prefix)),
            None => Some((self.source, if self.source.is_ipv4() { 32 } else { 128 })),
        }
    }
}

/// One load balancer address of a service, compiled with its health. 28 bytes, no heap: the
/// answer takes its RDATA from the address ([`Service::answer`] copies the octets of the
/// chosen few to the stack).
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// The address answered.
    pub address: IpAddr,
    /// Weight answers are drawn with (0 = standby; a drained endpoint has 0).
    pub weight: u32,
    /// Weight as configured.
    pub configured_weight: u32,
    /// Decided health at compile time.
    pub healthy: bool,
    /// Index of its region in [`Service::regions`].
    pub region: u16,
}

/// The endpoints of a service, grouped by region. A service with one endpoint (the common
/// shape of a large catalogue) keeps it inline: no allocation, and no pointer to follow on the
/// query path; more live in one boxed slice.
#[derive(Clone, Debug, PartialEq)]
pub enum EndpointList {
    /// Exactly one.
    One(Endpoint),
    /// Any other number (none for a service that only has fallback addresses).
    Many(Box<[Endpoint]>),
}

impl Default for EndpointList {
    fn default() -> Self {
        EndpointList::Many(Box::default())
    }
}

impl From<Vec<Endpoint>> for EndpointList {
    fn from(mut v: Vec<Endpoint>) -> Self {
        match v.pop() {
            Some(e) if v.is_empty() => EndpointList::One(e),
            Some(e) => {
                v.push(e);
                EndpointList::Many(v.into_boxed_slice())
            }
            None => EndpointList::default(),
        }
    }
}

impl std::ops::Deref for EndpointList {
    type Target = [Endpoint];

    #[inline]
    fn deref(&self) -> &[Endpoint] {
        match self {
            EndpointList::One(e) => std::slice::from_ref(e),
            EndpointList::Many(list) => list,
        }
    }
}

impl std::ops::DerefMut for EndpointList {
    fn deref_mut(&mut self) -> &mut [Endpoint] {
        match self {
            EndpointList::One(e) => std::slice::from_mut(e),
            EndpointList::Many(list) => list,
        }
    }
}

impl<'a> IntoIterator for &'a EndpointList {
    type Item = &'a Endpoint;
    type IntoIter = std::slice::Iter<'a, Endpoint>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A region as a service sees it: where it is and which of the service's endpoints live there.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionEndpoints {
    /// Region name.
    pub name: String,
    /// Location, for `nearest`.
    pub coords: Option<Coords>,
    /// Its endpoints: a range of [`Service::endpoints`] (sorted by region).
    pub endpoints: Range<usize>,
    /// Slow start of a region coming back: the share, per mille, of the answers it would
    /// take that it takes now ([`FULL_SHARE`] when it is not ramping); the rest go where they
    /// went while it was down (the next region of the walk).
    pub share: u16,
}

/// [`RegionEndpoints::share`] of a region that takes all it would.
pub const FULL_SHARE: u16 = 1000;

/// The regions of a service, shared: the services of a zone with the same regions, the same
/// number of endpoints in each and the same shares hold one list (`compile` interns them), so
/// a catalogue of a million one-region services keeps one list, not a million.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegionList(Arc<[RegionEndpoints]>);

impl RegionList {
    /// The list as one shared handle (tests compare handles across services).
    pub fn as_shared(&self) -> &Arc<[RegionEndpoints]> {
        &self.0
    }

    /// The regions to change, copied first when the list is shared (tests, and a compile that
    /// adjusts one service).
    pub fn make_mut(&mut self) -> &mut [RegionEndpoints] {
        if Arc::get_mut(&mut self.0).is_none() {
            self.0 = Arc::from(self.0.to_vec());
        }
        Arc::get_mut(&mut self.0).unwrap_or(&mut [])
    }
}

impl From<Vec<RegionEndpoints>> for RegionList {
    fn from(v: Vec<RegionEndpoints>) -> Self {
        RegionList(Arc::from(v))
    }
}

impl std::ops::Deref for RegionList {
    type Target = [RegionEndpoints];

    #[inline]
    fn deref(&self) -> &[RegionEndpoints] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a RegionList {
    type Item = &'a RegionEndpoints;
    type IntoIter = std::slice::Iter<'a, RegionEndpoints>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A region order, as indices into [`Service::regions`]. Every region appears once: the
/// configured ones first, then the rest in file order, so failover never runs out early.
pub type Order = Box<[u16]>;

/// The orders of a `geo` service, shared by the services of a zone with the same tables over
/// the same regions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GeoOrders {
    /// Clients nothing else matches.
    pub default: Order,
    /// Sorted by country for binary search.
    pub country: Vec<(CountryCode, Order)>,
    /// Indexed by [`Continent`] position in [`Continent::ALL`].
    pub continent: [Option<Order>; 7],
    /// The `subnet` overrides, with the ECS scope of every decision they take part in.
    pub subnet: SubnetMap,
}

/// Country codes are two uppercase letters: 26 x 26 slots index them directly.
const COUNTRY_SLOTS: usize = 26 * 26;

/// The slot of a country code in a [`NearestOrders`] index; `None` for anything but two
/// uppercase ASCII letters.
fn country_slot(c: CountryCode) -> Option<usize> {
    match c.as_str().as_bytes() {
        &[a @ b'A'..=b'Z', b @ b'A'..=b'Z'] => {
            Some(usize::from(a - b'A') * 26 + usize::from(b - b'A'))
        }
        _ => None,
    }
}

/// The orders of a `nearest` service, computed at compile time: for every country of the
/// built-in table, the service's regions by distance from the country's centroid (nearest
/// first, regions without a location last, ties in region order), which is what a client
/// gets that GeoIP places in the country without coordinates of its own. Shared by the
/// services of a zone with the same regions, so the query path does no per-region work for
/// such clients and compile time does not multiply by the regions per service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NearestOrders {
    /// For clients without coordinates: file order.
    pub default: Order,
    /// The service's region count: the length of every order.
    regions: usize,
    /// By country slot ([`country_slot`]): the index of its order in `orders`, `u16::MAX`
    /// when the built-in table has no such country.
    by_country: Box<[u16]>,
    /// The distinct orders, `regions` entries each, one after another.
    orders: Box<[u16]>,
}

impl NearestOrders {
    /// The orders over `regions` (their locations, in the service's order).
    pub fn new(regions: &[Option<Coords>]) -> NearestOrders {
        let count = regions.len();
        let mut by_country = vec![u16::MAX; COUNTRY_SLOTS].into_boxed_slice();
        let mut orders: Vec<u16> = Vec::new();
        let mut seen: std::collections::HashMap<Vec<u16>, u16> = Default::default();
        for (code, _, centroid) in crate::geo::countries() {
            let order = nearest_order(regions, centroid);
            let next = u16::try_from(seen.len()).unwrap_or(u16::MAX);
            let index = *seen.entry(order).or_insert_with_key(|order| {
                orders.extend_from_slice(order);
                next
            });
            if let Some(slot) = country_slot(code).and_then(|s| by_country.get_mut(s)) {
                *slot = index;
            }
        }
        NearestOrders {
            default: (0..count)
                .map(|i| u16::try_from(i).unwrap_or(u16::MAX))
                .collect(),
            regions: count,
            by_country,
            orders: orders.into_boxed_slice(),
        }
    }

    /// The order for a client GeoIP places in `country` at the country's centroid.
    #[inline]
    pub fn for_country(&self, country: CountryCode) -> Option<&[u16]> {
        let index = usize::from(*self.by_country.get(country_slot(country)?)?);
        let start = index.checked_mul(self.regions)?;
        self.orders.get(start..start.checked_add(self.regions)?)
    }

    /// How many distinct orders the countries have.
    pub fn distinct(&self) -> usize {
        self.orders.len().checked_div(self.regions).unwrap_or(0)
    }
}

/// Regions (their locations, in service order) sorted by distance from `from`: the order the
/// distance walk (`Service::walk`) visits them in for a client at `from` (ties, and regions
/// without a location, by index).
pub fn nearest_order(regions: &[Option<Coords>], from: Coords) -> Vec<u16> {
    let mut by: Vec<(f64, u16)> = regions
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let d = c.map_or(f64::MAX, |c| distance_km(from, c));
            Some((d, u16::try_from(i).ok()?))
        })
        .collect();
    by.sort_by(|a, b| {
        a.0.partial_cmp(&b.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
    });
    by.into_iter().map(|(_, i)| i).collect()
}

/// How a compiled service orders regions. The orders are shared (`Arc`): they depend on the
/// configuration and the service's regions, never on health, so a zone holds each distinct
/// one once and a health rebuild keeps the service's handle.
#[derive(Clone, Debug)]
pub enum CompiledPolicy {
    /// Lists by subnet (longest prefix first), country, continent; `default` otherwise.
    Geo(Arc<GeoOrders>),
    /// Nearest region with coordinates first; precomputed per country; `default` when the
    /// client has no coordinates.
    Nearest(Arc<NearestOrders>),
    /// A fixed order (one thin handle: the variant stays at a pointer's size).
    Failover(Arc<Order>),
    /// One pool of every endpoint.
    Weighted,
}

impl CompiledPolicy {
    /// The policy's name as configured (`geo`, `nearest`, `failover`, `weighted`).
    pub fn name(&self) -> &'static str {
        match self {
            CompiledPolicy::Geo(_) => "geo",
            CompiledPolicy::Nearest(_) => "nearest",
            CompiledPolicy::Failover(_) => "failover",
            CompiledPolicy::Weighted => "weighted",
        }
    }
}

/// What to answer when nothing is healthy.
#[derive(Clone, Debug)]
pub enum CompiledFallback {
    /// Every endpoint of the best region.
    All,
    /// NODATA.
    None,
    /// Fixed addresses (RDATA), by family.
    Addresses(Vec<(IpAddr, Box<[u8]>)>),
}

/// A traffic-managed name, compiled.
#[derive(Clone, Debug)]
pub struct Service {
    /// Name relative to the zone, as configured.
    pub key: String,
    /// TTL of answers.
    pub ttl: u32,
    /// Maximum addresses per answer.
    pub answers: usize,
    /// Region ordering (shared).
    pub policy: CompiledPolicy,
    /// Regions that have endpoints of this service, zone file order (shared).
    pub regions: RegionList,
    /// The endpoints, grouped by region.
    pub endpoints: EndpointList,
    /// When nothing is healthy.
    pub fallback: CompiledFallback,
    /// Answers by region and outcome (created by `compile`; detached in offline tables).
    pub counters: ServiceCounters,
}

/// Why a region order was chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OrderReason {
    /// A `geo.subnet` entry matched.
    Subnet(IpNet),
    /// A `geo.country` entry matched.
    Country(CountryCode),
    /// A `geo.continent` entry matched.
    Continent(Continent),
    /// Nothing matched: `geo.default` (or file order).
    Default,
    /// Sorted by distance from the client.
    Distance(Coords),
    /// `failover` list.
    Failover,
    /// All endpoints pooled.
    Pooled,
}

/// The decision for one client and family.
#[derive(Clone, Copy, Debug)]
pub struct Selection {
    /// Chosen endpoint indices (into [`Service::endpoints`]), `count` of them.
    pub chosen: [u16; MAX_ANSWERS],
    /// How many of `chosen` are set.
    pub count: usize,
    /// Region the answer came from (for weighted: none).
    pub region: Option<u16>,
    /// Which pass answered.
    pub outcome: Outcome,
    /// ECS scope: a prefix around the client address on which the order is the same for every
    /// address (the shortest one, but for not merging GeoIP networks that decide alike). May be
    /// longer than the ECS source prefix (RFC 7871 §7.2.1).
    pub scope: u8,
    /// Why the order was what it was.
    pub reason: OrderReason,
}

/// The order a client gets before health is considered.
#[derive(Clone, Copy, Debug)]
pub enum RegionWalk<'s> {
    /// A fixed list.
    List(&'s [u16]),
    /// By distance from a point.
    Nearest(Coords),
    /// All endpoints as one pool.
    Pool,
}

impl Service {
    /// Policy name, for explain and status (`geo`, `nearest`, `failover`, `weighted`).
    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }

    /// Locates the client and orders regions for it; returns the walk, why, and the ECS scope.
    pub fn order(
        &self,
        client: &Client,
        geo: &GeoDb,
    ) -> (RegionWalk<'_>, OrderReason, u8, Option<Location>) {
        match &self.policy {
            CompiledPolicy::Failover(order) => {
                (RegionWalk::List(order), OrderReason::Failover, 0, None)
            }
            CompiledPolicy::Weighted => (RegionWalk::Pool, OrderReason::Pooled, 0, None),
            CompiledPolicy::Nearest(nearest) => {
                let Some((addr, _)) = client.locate_addr() else {
                    return (
                        RegionWalk::List(&nearest.default),
                        OrderReason::Default,
                        0,
                        None,
                    );
                };
                let loc = super::geo_cache::lookup(geo, addr);
                let (walk, reason) = self.order_at(&loc);
                (walk, reason, loc.prefix_len, Some(loc))
            }
            CompiledPolicy::Geo(geo_orders) => {
                let Some((addr, _)) = client.locate_addr() else {
                    return (
                        RegionWalk::List(&geo_orders.default),
                        OrderReason::Default,
                        0,
                        None,
                    );
                };
                let hit = geo_orders.subnet.lookup(addr);
                if let Some((net, order)) = hit.entry {
                    return (
                        RegionWalk::List(order),
                        OrderReason::Subnet(*net),
                        hit.scope,
                        None,
                    );
                }
                let loc = super::geo_cache::lookup(geo, addr);
                // GeoIP decides: the answer holds for the GeoIP network, and for the run of
                // addresses no override decides differently; the longer prefix is inside both.
                let scope = hit.geo_scope(loc.prefix_len);
                let (walk, reason) = self.order_at(&loc);
                (walk, reason, scope, Some(loc))
            }
        }
    }

    /// Orders regions for a client at `loc`: the part of [`Service::order`] after locating
    /// the client (subnet overrides, which need an address, come before it). The traffic map
    /// (`routing::map`) calls it with each country's location, so it shows what queries get.
    #[inline]
    pub fn order_at(&self, loc: &Location) -> (RegionWalk<'_>, OrderReason) {
        match &self.policy {
            CompiledPolicy::Failover(order) => (RegionWalk::List(order), OrderReason::Failover),
            CompiledPolicy::Weighted => (RegionWalk::Pool, OrderReason::Pooled),
            CompiledPolicy::Nearest(nearest) => match loc.coords {
                // GeoIP placed the client at its country's centroid: the order is ready.
                Some(c) => match loc
                    .country
                    .filter(|_| loc.coords_from_centroid)
                    .and_then(|k| nearest.for_country(k))
                {
                    Some(order) => (RegionWalk::List(order), OrderReason::Distance(c)),
                    None => (RegionWalk::Nearest(c), OrderReason::Distance(c)),
                },
                None => (RegionWalk::List(&nearest.default), OrderReason::Default),
            },
            CompiledPolicy::Geo(geo_orders) => {
                let GeoOrders {
                    default,
                    country,
                    continent,
                    ..
                } = &**geo_orders;
                if let Some(c) = loc.country {
                    if let Ok(i) = country.binary_search_by(|(k, _)| k.cmp(&c)) {
                        if let Some((_, order)) = country.get(i) {
                            return (RegionWalk::List(order), OrderReason::Country(c));
                        }
                    }
                }
                if let Some(c) = loc.continent {
                    if let Some(Some(order)) = Continent::ALL
                        .iter()
                        .position(|x| *x == c)
                        .and_then(|i| continent.get(i))
                    {
                        return (RegionWalk::List(order), OrderReason::Continent(c));
                    }
                }
                (RegionWalk::List(default), OrderReason::Default)
            }
        }
    }

    /// Decides the answer for `rtype` (A or AAAA).
    pub fn select(&self, rtype: u16, client: &Client, geo: &GeoDb) -> Selection {
        let (walk, reason, scope, _) = self.order(client, geo);
        let want_v4 = rtype == qtype::A;
        let mut sel = Selection {
            chosen: [0; MAX_ANSWERS],
            count: 0,
            region: None,
            outcome: Outcome::NoData,
            scope,
            reason,
        };
        let family = |a: IpAddr| a.is_ipv4() == want_v4;
        let Some((region, range, outcome)) = self.passes(walk, true, family) else {
            return sel;
        };
        sel.region = region;
        sel.outcome = outcome;
        match outcome {
            Outcome::Healthy | Outcome::Standby => {
                let standby = outcome == Outcome::Standby;
                let limit = self.answers.min(MAX_ANSWERS);
                let usable = |e: &Endpoint| usable(e, family, standby);
                sel.count = self.draw(range, limit, standby, usable, &mut sel.chosen);
            }
            // Every endpoint of the fallback region (none for fixed addresses: empty range).
            Outcome::Fallback | Outcome::NoData => {
                for (i, e) in self
                    .endpoints
                    .iter()
                    .enumerate()
                    .skip(range.start)
                    .take(range.len())
                {
                    if family(e.address) && sel.count < MAX_ANSWERS {
                        if let Some(slot) = sel.chosen.get_mut(sel.count) {
                            *slot = u16::try_from(i).unwrap_or(u16::MAX);
                        }
                        sel.count += 1;
                    }
                }
            }
        }
        sel
    }

    /// Where a client with region order `walk` is answered from, and by which pass, when any
    /// address family will do (the traffic map: a country goes where its A or AAAA answers
    /// go). The same passes as [`Service::select`] without the random draws: a region coming
    /// back (slow start) counts as taking the answer (it takes its share of them); counts
    /// nothing.
    pub fn route(&self, walk: RegionWalk<'_>) -> (Option<u16>, Outcome) {
        self.passes(walk, false, |_| true)
            .map_or((None, Outcome::NoData), |(region, _, outcome)| {
                (region, outcome)
            })
    }

    /// The walk's passes for endpoints `family` accepts: the first region with a healthy
    /// weighted endpoint, then the first with a healthy standby, then the fallback (`all`: the
    /// first region with any endpoint; fixed addresses: no region and an empty range).
    /// Returns the region, its endpoint range and the pass; `None` means NODATA. With `ramp`
    /// the healthy pass passes over a ramping region with the chance its share leaves.
    #[inline]
    fn passes(
        &self,
        walk: RegionWalk<'_>,
        ramp: bool,
        family: impl Fn(IpAddr) -> bool + Copy,
    ) -> Option<(Option<u16>, Range<usize>, Outcome)> {
        for (outcome, standby) in [(Outcome::Healthy, false), (Outcome::Standby, true)] {
            let accept = |range: Range<usize>| {
                let any = self
                    .endpoints
                    .get(range.clone())?
                    .iter()
                    .any(|e| usable(e, family, standby));
                any.then_some(range)
            };
            // A ramping region takes its share; when the walk finds nothing after it, it
            // takes the answer after all (never a standby or fallback because of a ramp).
            let found = self
                .walk(walk, ramp && !standby, accept)
                .or_else(|| self.walk(walk, false, accept));
            if let Some((region, range)) = found {
                return Some((region, range, outcome));
            }
        }
        // Nothing healthy: the fallback, never nothing unless configured so.
        match &self.fallback {
            CompiledFallback::All => self
                .walk(walk, false, |range| {
                    self.endpoints
                        .get(range.clone())?
                        .iter()
                        .any(|e| family(e.address))
                        .then_some(range)
                })
                .map(|(region, range)| (region, range, Outcome::Fallback)),
            CompiledFallback::Addresses(list) => {
                list.iter()
                    .any(|(a, _)| family(*a))
                    .then_some((None, 0..0, Outcome::Fallback))
            }
            CompiledFallback::None => None,
        }
    }

    /// Walks regions in `walk` order; returns the first region (and its endpoint range) that
    /// `accept` takes. With `ramp`, a region coming back (slow start) is passed over with
    /// the chance its share leaves to the regions after it.
    fn walk(
        &self,
        walk: RegionWalk<'_>,
        ramp: bool,
        mut accept: impl FnMut(Range<usize>) -> Option<Range<usize>>,
    ) -> Option<(Option<u16>, Range<usize>)> {
        let passed_over = |region: &RegionEndpoints| {
            ramp && region.share < FULL_SHARE && rand::random_range(0..FULL_SHARE) >= region.share
        };
        match walk {
            RegionWalk::Pool => accept(0..self.endpoints.len()).map(|r| (None, r)),
            RegionWalk::List(order) => order.iter().find_map(|&i| {
                let region = self.regions.get(usize::from(i))?;
                if passed_over(region) {
                    return None;
                }
                accept(region.endpoints.clone()).map(|r| (Some(i), r))
            }),
            RegionWalk::Nearest(from) => {
                // Next-nearest each step, without sorting or allocating: most walks stop at
                // the first region.
                let mut last: Option<(f64, usize)> = None;
                loop {
                    let mut best: Option<(f64, usize)> = None;
                    for (i, region) in self.regions.iter().enumerate() {
                        let d = region.coords.map_or(f64::MAX, |c| distance_km(from, c));
                        let after_last = last.is_none_or(|(ld, li)| (d, i) > (ld, li));
                        if after_last && best.is_none_or(|(bd, bi)| (d, i) < (bd, bi)) {
                            best = Some((d, i));
                        }
                    }
                    let (d, i) = best?;
                    if let Some(region) = self.regions.get(i).filter(|r| !passed_over(r)) {
                        if let Some(r) = accept(region.endpoints.clone()) {
                            return Some((u16::try_from(i).ok(), r));
                        }
                    }
                    last = Some((d, i));
                }
            }
        }
    }

    /// Draws up to `limit` distinct endpoints from `range` that pass `usable`: by weight
    /// without replacement, or uniformly for standbys.
    fn draw(
        &self,
        range: Range<usize>,
        limit: usize,
        uniform: bool,
        usable: impl Fn(&Endpoint) -> bool,
        out: &mut [u16; MAX_ANSWERS],
    ) -> usize {
        let weight = |e: &Endpoint| if uniform { 1 } else { u64::from(e.weight) };
        let candidates = || {
            self.endpoints
                .iter()
                .enumerate()
                .skip(range.start)
                .take(range.len())
                .filter(|(_, e)| usable(e))
        };
        let mut count = 0;
        let mut remaining: u64 = candidates().map(|(_, e)| weight(e)).sum();
        while count < limit && remaining > 0 {
            let mut pick = rand::random_range(0..remaining);
            let taken = out.get(..count).unwrap_or(&[]);
            let next = candidates()
                .filter(|(i, _)| !taken.contains(&u16::try_from(*i).unwrap_or(u16::MAX)))
                .find(|(_, e)| {
                    let w = weight(e);
                    if pick < w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                });
            let Some((i, e)) = next else { break };
            if let Some(slot) = out.get_mut(count) {
                *slot = u16::try_from(i).unwrap_or(u16::MAX);
            }
            count += 1;
            remaining -= weight(e);
        }
        count
    }

    /// Writes the answer for `rtype` (A or AAAA); returns the ECS scope it depends on.
    /// Counts it in the service's counters when `COUNT`.
    pub fn answer<const COUNT: bool, S: AnswerSink>(
        &self,
        rtype: u16,
        client: &Client,
        geo: &GeoDb,
        w: &mut S,
        owner: Owner<'_>,
    ) -> u8 {
        let sel = self.select(rtype, client, geo);
        if COUNT {
            self.counters.count(sel.region, sel.outcome);
        }
        if sel.outcome == Outcome::Fallback && sel.count == 0 {
            if let CompiledFallback::Addresses(list) = &self.fallback {
                let want_v4 = rtype == qtype::A;
                let rdatas = list
                    .iter()
                    .filter(|(a, _)| a.is_ipv4() == want_v4)
                    .map(|(_, r)| &r[..]);
                w.rrset(Section::Answer, owner, rtype, self.ttl, rdatas);
            }
            return sel.scope;
        }
        let chosen = sel.chosen.get(..sel.count).unwrap_or(&[]);
        // The RDATA is the address: its octets go to the stack, not to a heap copy per
        // endpoint kept in the table.
        let mut wire = [([0u8; 16], 0usize); MAX_ANSWERS];
        let mut n = 0;
        for e in chosen
            .iter()
            .filter_map(|&i| self.endpoints.get(usize::from(i)))
        {
            if let Some(slot) = wire.get_mut(n) {
                *slot = octets(e.address);
                n += 1;
            }
        }
        let rdatas = wire
            .iter()
            .take(n)
            .map(|(bytes, len)| bytes.get(..*len).unwrap_or(&[]));
        w.rrset(Section::Answer, owner, rtype, self.ttl, rdatas);
        sel.scope
    }
}

/// An address as A or AAAA RDATA: its octets, and how many of the 16 are used.
#[inline]
fn octets(address: IpAddr) -> ([u8; 16], usize) {
    match address {
        IpAddr::V4(a) => {
            let mut out = [0u8; 16];
            if let Some(head) = out.get_mut(..4) {
                head.copy_from_slice(&a.octets());
            }
            (out, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}

/// An endpoint the healthy (`standby` false) or standby pass may answer with.
#[inline]
fn usable(e: &Endpoint, family: impl Fn(IpAddr) -> bool, standby: bool) -> bool {
    e.healthy && family(e.address) && (e.weight == 0) == standby
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "select_prop.rs"]
mod prop;
