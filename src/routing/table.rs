//! The immutable routing table and its lookup: the only structure DNS queries read.
//!
//! Built once per change by `compile.rs`, published by `publish.rs`, then only read. Names are
//! keys in lowercase wire form, so a query's QNAME and every suffix of it (each zone apex, each
//! closest encloser) is a slice of the parsed question: finding a zone or a node costs a hash
//! lookup per label and no allocation. RRsets hold pre-encoded RDATA; negative answers and
//! referrals are ready per zone and per cut.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use foldhash::fast::RandomState;
use hickory_proto::rr::Name;

use super::counters::ZoneCounters;
use super::select::{Client, Endpoint, RegionEndpoints, Service};
use super::services::ServiceList;
use super::signed::{NodeSigs, SignedZone, SigningSink};
use super::sink::AnswerSink;
use crate::config::Zone;
use crate::geo::GeoDb;
use crate::proto::{Owner, Query, Rcode, Section, qtype};

/// Longest CNAME chain followed inside a zone before giving up (loops end here too).
pub const MAX_CNAME_CHAIN: usize = 8;

/// A name in uncompressed wire form, letter case kept.
pub fn name_wire(name: &Name) -> Box<[u8]> {
    let mut buf = Vec::with_capacity(name.len() + 2);
    crate::config::wire::write_name(name, &mut buf);
    buf.into_boxed_slice()
}

/// A name in uncompressed wire form, lowercased: the table's key form.
pub fn key_wire(name: &Name) -> Box<[u8]> {
    crate::config::wire::name_key(name).into_boxed_slice()
}

/// Everything the query path needs, frozen.
pub struct RoutingTable {
    /// Increases by one with every table that is published.
    pub generation: u64,
    /// When it was compiled.
    pub built_at: SystemTime,
    /// The zones, keyed by lowercase wire-form apex; each shared with the tables before and
    /// after it that did not change it (`compile::recompile`).
    pub(crate) zones: HashMap<Arc<[u8]>, Arc<ZoneTable>, RandomState>,
    /// The GeoIP database this table answers with (swapped together with it).
    pub geo: Arc<GeoDb>,
    /// Counts queries for names in no zone here (created by `compile`).
    pub(crate) unmatched: ZoneCounters,
}

/// One zone, compiled. The parts health cannot change (names, records, signatures) are shared
/// behind `Arc`s, so a table that rebuilds some services of the zone copies only the handles.
pub struct ZoneTable {
    /// The apex.
    pub origin: Name,
    /// The SOA serial.
    pub serial: u32,
    /// Where the zone came from.
    pub source: Arc<Zone>,
    pub(crate) nodes: Arc<HashMap<Box<[u8]>, u32, RandomState>>,
    pub(crate) node_list: Arc<Vec<Node>>,
    /// SOA for negative answers: TTL = min(SOA TTL, SOA minimum) (RFC 2308 §3).
    pub(crate) negative_soa: Arc<RrSet>,
    /// Traffic-managed names, in file order (the zone source's order).
    pub services: ServiceList,
    /// Queries by QTYPE for this zone (created by `compile`).
    pub(crate) counters: ZoneCounters,
    /// Signatures and signer when the zone is signed (`routing::signed`).
    pub(crate) dnssec: Option<Arc<SignedZone>>,
}

/// A name that exists in a zone (with data, or as an empty non-terminal).
pub struct Node {
    /// The owner in wire form, letter case as configured.
    pub(crate) name_wire: Box<[u8]>,
    /// RRsets, sorted by type.
    pub(crate) rrsets: Vec<RrSet>,
    /// This name has NS records and is not the apex: a zone cut.
    pub(crate) cut: bool,
    /// The nearest cut strictly above this name, if any: the data here is glue, not answers.
    pub(crate) occluded_by: Option<u32>,
    /// The `*` child of this name, if there is one.
    pub(crate) wildcard: Option<u32>,
    /// The service that answers A/AAAA here.
    pub(crate) service: Option<u32>,
    /// For a CNAME, its target in lowercase wire form.
    pub(crate) cname_target: Option<Box<[u8]>>,
    /// RRSIGs and NSEC of this name when the zone is signed.
    pub(crate) dnssec: Option<Box<NodeSigs>>,
}

/// An RRset with pre-encoded RDATA and the additional records that go with it.
pub struct RrSet {
    /// TYPE.
    pub(crate) rtype: u16,
    /// TTL.
    pub(crate) ttl: u32,
    /// RDATA of each record, in wire form (names uncompressed).
    pub(crate) rdata: Vec<Box<[u8]>>,
    /// A/AAAA of in-zone targets (NS, MX, SRV): additional-section processing, precomputed.
    pub(crate) additional: Vec<Glue>,
}

/// Address records of a name that an RRset points to: the A or AAAA RRset of that name's
/// node, found in the zone's node list when answering (a copy of owner and RDATA per pointer
/// was a fifth of a small zone's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Glue {
    /// The name's node in the zone's node list.
    pub(crate) node: u32,
    /// A or AAAA.
    pub(crate) rtype: u16,
}

impl RrSet {
    fn rdatas(&self) -> impl Iterator<Item = &[u8]> {
        self.rdata.iter().map(|r| &r[..])
    }

    fn write<S: AnswerSink>(&self, w: &mut S, section: Section, owner: Owner<'_>) {
        w.rrset(section, owner, self.rtype, self.ttl, self.rdatas());
    }
}

impl Node {
    pub(crate) fn rrset(&self, rtype: u16) -> Option<&RrSet> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }
}

/// Where a name landed inside a zone.
enum Found<'t> {
    /// The name exists (or a wildcard stands in for it).
    Node(&'t Node),
    /// The name is at or below a zone cut.
    Referral(&'t Node),
    /// No such name.
    NxDomain,
}

/// Iterates the byte offsets of every label of a wire-form name, longest suffix first,
/// ending with the root's offset.
fn suffix_offsets(name: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut next = Some(0usize);
    std::iter::from_fn(move || {
        let off = next?;
        let len = usize::from(*name.get(off)?);
        next = if len == 0 { None } else { Some(off + 1 + len) };
        Some(off)
    })
}

impl RoutingTable {
    /// Answers `q` into `w` (on the query path, `dns::answer::Writer`). Returns the ECS scope
    /// prefix the answer depends on (0 when it does not depend on the client).
    pub fn answer<S: AnswerSink>(&self, q: &Query, client: &Client, w: &mut S) -> u8 {
        self.answer_counting::<true, S>(q, client, w)
    }

    /// Like [`RoutingTable::answer`], but counts nowhere: `explain` runs the real path
    /// without showing up in the query and answer metrics.
    pub fn answer_uncounted<S: AnswerSink>(&self, q: &Query, client: &Client, w: &mut S) -> u8 {
        self.answer_counting::<false, S>(q, client, w)
    }

    /// The one answer path; `COUNT` is a compile-time switch, so the query path pays nothing
    /// for `explain`'s silence.
    fn answer_counting<const COUNT: bool, S: AnswerSink>(
        &self,
        q: &Query,
        client: &Client,
        w: &mut S,
    ) -> u8 {
        let lname = q.lname();
        let zone_at = |off: usize| {
            let suffix = lname.get(off..)?;
            self.zones.get(suffix).map(|z| (off, z))
        };
        // RFC 4035 §3.1.4.1: the parent answers DS. When both sides of a cut are served
        // here, a DS query for the child's apex goes to the parent zone.
        let parent_side = q.qtype == qtype::DS
            && self.zones.contains_key(lname)
            && suffix_offsets(lname)
                .skip(1)
                .any(|off| zone_at(off).is_some());
        let Some((zone_off, zone)) = suffix_offsets(lname)
            .skip(usize::from(parent_side))
            .find_map(zone_at)
        else {
            if COUNT {
                self.unmatched.count(q.qtype);
            }
            w.set_rcode(Rcode::Refused);
            return 0;
        };
        if COUNT {
            zone.counters.count(q.qtype);
        }
        super::geo_cache::bind(&self.geo);
        zone.answer::<COUNT, S>(q, zone_off, client, &self.geo, w)
    }

    /// The zone whose apex is exactly `name` (lowercase wire form).
    pub fn zone_at(&self, name: &[u8]) -> Option<&ZoneTable> {
        self.zones.get(name).map(|z| &**z)
    }

    /// The zone at `name` (lowercase wire form) as the shared handle (tests compare handles
    /// across tables).
    pub fn zone_shared(&self, name: &[u8]) -> Option<&Arc<ZoneTable>> {
        self.zones.get(name)
    }

    /// The zones, in no particular order.
    pub fn zones(&self) -> impl Iterator<Item = &ZoneTable> {
        self.zones.values().map(|z| &**z)
    }

    /// Number of zones.
    pub fn zone_count(&self) -> usize {
        self.zones.len()
    }

    /// Every endpoint of every service with the zone, service and region it is in: zones in
    /// no particular order, then services in file order, regions in the service's order and
    /// endpoints in region order. The one walk over the table the control plane, the status
    /// API and `/metrics` share.
    pub fn endpoints(&self) -> impl Iterator<Item = EndpointEntry<'_>> {
        self.zones().flat_map(ZoneTable::endpoints)
    }
}

/// One endpoint of a [`RoutingTable`] and where it sits.
#[derive(Clone, Copy)]
pub struct EndpointEntry<'t> {
    /// The zone.
    pub zone: &'t ZoneTable,
    /// Position of the service in [`ZoneTable::services`].
    pub service_index: usize,
    /// The service.
    pub service: &'t Service,
    /// The region of the endpoint, as the service has it.
    pub region: &'t RegionEndpoints,
    /// The endpoint.
    pub endpoint: &'t Endpoint,
}

impl ZoneTable {
    /// The node and RRset `glue` stands for.
    pub(crate) fn glue(&self, glue: &Glue) -> Option<(&Node, &RrSet)> {
        let node = self.node_list.get(usize::try_from(glue.node).ok()?)?;
        Some((node, node.rrset(glue.rtype)?))
    }

    /// The additional data of `rrset` (unsigned zones; `signed` writes its own with RRSIGs).
    fn write_additional<S: AnswerSink>(&self, w: &mut S, rrset: &RrSet, section: Section) {
        for glue in &rrset.additional {
            if let Some((node, set)) = self.glue(glue) {
                set.write(w, section, Owner::Wire(&node.name_wire));
            }
        }
    }

    /// This zone's part of [`RoutingTable::endpoints`], in the same order.
    pub fn endpoints(&self) -> impl Iterator<Item = EndpointEntry<'_>> {
        self.services
            .iter()
            .enumerate()
            .flat_map(move |(service_index, service)| {
                service.regions.iter().flat_map(move |region| {
                    service
                        .endpoints
                        .get(region.endpoints.clone())
                        .unwrap_or(&[])
                        .iter()
                        .map(move |endpoint| EndpointEntry {
                            zone: self,
                            service_index,
                            service,
                            region,
                            endpoint,
                        })
                })
            })
    }

    fn node(&self, name: &[u8]) -> Option<&Node> {
        let idx = *self.nodes.get(name)?;
        self.node_list.get(usize::try_from(idx).ok()?)
    }

    /// The apex SOA: TTL and RDATA.
    pub fn apex_soa(&self) -> Option<(u32, &[u8])> {
        let apex = self.node(&key_wire(&self.origin))?;
        let soa = apex.rrset(qtype::SOA)?;
        Some((soa.ttl, soa.rdata.first()?))
    }

    /// The service at `name` (lowercase wire form), if that name is one.
    pub fn service_at(&self, name: &[u8]) -> Option<&Service> {
        let node = self.node(name)?;
        self.services.get(usize::try_from(node.service?).ok()?)
    }

    fn by_index(&self, idx: u32) -> Option<&Node> {
        self.node_list.get(usize::try_from(idx).ok()?)
    }

    /// Finds `name` (lowercase wire form, inside this zone) per RFC 1034 §4.3.2 and RFC 4592.
    fn find(&self, name: &[u8], qtype: u16) -> Found<'_> {
        if let Some(node) = self.node(name) {
            if let Some(cut) = node.occluded_by.and_then(|i| self.by_index(i)) {
                return Found::Referral(cut);
            }
            // The parent side answers DS at a cut (RFC 4035 §3.1.4.1).
            if node.cut && qtype != qtype::DS {
                return Found::Referral(node);
            }
            return Found::Node(node);
        }
        // Closest encloser: the longest existing ancestor (the apex at worst).
        for off in suffix_offsets(name).skip(1) {
            let Some(encloser) = name.get(off..).and_then(|s| self.node(s)) else {
                continue;
            };
            if let Some(cut) = encloser.occluded_by.and_then(|i| self.by_index(i)) {
                return Found::Referral(cut);
            }
            if encloser.cut {
                return Found::Referral(encloser);
            }
            return match encloser.wildcard.and_then(|i| self.by_index(i)) {
                Some(wild) => Found::Node(wild),
                None => Found::NxDomain,
            };
        }
        Found::NxDomain
    }

    fn answer<const COUNT: bool, S: AnswerSink>(
        &self,
        q: &Query,
        zone_off: usize,
        client: &Client,
        geo: &GeoDb,
        w: &mut S,
    ) -> u8 {
        w.set_authoritative(true);
        // DO=1 and a signed zone: RRSIGs and NSEC go along (RFC 4035 §3.1).
        let sign = match q.edns {
            Some(e) if e.dnssec_ok => self.dnssec.as_deref(),
            _ => None,
        };
        let mut owner = Owner::Question(0);
        // The name looked up now (QNAME, then each CNAME target), lowercase wire form.
        let mut name = q.lname();
        let mut found = self.find(q.lname(), q.qtype);
        if let Found::Node(node) = &found {
            if super::signed::is_expansion(node, name) {
                w.answered_from_wildcard(name.get(zone_off..).unwrap_or(&[]));
            }
        }
        let mut scope = 0;
        for _ in 0..MAX_CNAME_CHAIN {
            let node = match found {
                Found::NxDomain => {
                    self.negative(w, zone_off, sign);
                    // RFC 9824: a signed "no such name" is NOERROR with an NXNAME NSEC.
                    if !sign.is_some_and(|z| z.deny_name(w, owner, name)) {
                        w.set_rcode(Rcode::NxDomain);
                    }
                    return scope;
                }
                Found::Referral(cut) => {
                    // RFC 1034 §4.3.2 step 3b. AA stays set when a CNAME of ours led here
                    // (RFC 1035 §4.1.1: AA speaks for the first owner name).
                    if w.answer_count() == 0 {
                        w.set_authoritative(false);
                    }
                    if let Some(ns) = cut.rrset(qtype::NS) {
                        ns.write(w, Section::Authority, Owner::Wire(&cut.name_wire));
                        match sign {
                            Some(z) => {
                                z.delegation(w, cut);
                                z.additional(w, self, ns, Section::RequiredAdditional);
                            }
                            None => self.write_additional(w, ns, Section::RequiredAdditional),
                        }
                    }
                    return scope;
                }
                Found::Node(node) => node,
            };

            if q.qtype == qtype::ANY {
                // RFC 8482 §4.1: one RRset is a complete answer to ANY.
                if let Some(svc) = node.service.and_then(|i| self.services.get(i as usize)) {
                    let answer = |rtype, w: &mut S| match sign {
                        Some(z) => svc.answer::<COUNT, _>(
                            rtype,
                            client,
                            geo,
                            &mut SigningSink::new(w, z, name),
                            owner,
                        ),
                        None => svc.answer::<COUNT, S>(rtype, client, geo, w, owner),
                    };
                    scope = scope.max(answer(qtype::A, w));
                    if w.answer_count() == 0 {
                        scope = scope.max(answer(qtype::AAAA, w));
                    }
                    if w.answer_count() == 0 {
                        self.nodata(w, zone_off, sign, owner, node, name);
                    }
                } else if let Some(rrset) = node.rrsets.first() {
                    rrset.write(w, Section::Answer, owner);
                    if let Some(z) = sign {
                        z.rrsigs(
                            w,
                            Section::Answer,
                            owner,
                            node,
                            rrset.rtype,
                            rrset.ttl,
                            name,
                        );
                    }
                } else {
                    self.nodata(w, zone_off, sign, owner, node, name);
                }
                return scope;
            }
            // DO=1 queries for NSEC or RRSIG: answered from the signatures.
            if sign.is_some_and(|z| z.meta_query(w, owner, node, name, q.qtype)) {
                return scope;
            }
            if let Some(rrset) = node.rrset(q.qtype) {
                rrset.write(w, Section::Answer, owner);
                if let Some(z) = sign {
                    z.rrsigs(
                        w,
                        Section::Answer,
                        owner,
                        node,
                        rrset.rtype,
                        rrset.ttl,
                        name,
                    );
                }
                match sign {
                    Some(z) => z.additional(w, self, rrset, Section::Additional),
                    None => self.write_additional(w, rrset, Section::Additional),
                }
                return scope;
            }
            if let Some(svc) = node.service.and_then(|i| self.services.get(i as usize)) {
                if q.qtype == qtype::A || q.qtype == qtype::AAAA {
                    scope = scope.max(match sign {
                        Some(z) => svc.answer::<COUNT, _>(
                            q.qtype,
                            client,
                            geo,
                            &mut SigningSink::new(w, z, name),
                            owner,
                        ),
                        None => svc.answer::<COUNT, S>(q.qtype, client, geo, w, owner),
                    });
                    if w.answer_count() == 0 {
                        self.nodata(w, zone_off, sign, owner, node, name);
                    }
                    return scope;
                }
            }
            match (node.rrset(qtype::CNAME), &node.cname_target) {
                (Some(cname), Some(target)) => {
                    cname.write(w, Section::Answer, owner);
                    if let Some(z) = sign {
                        z.rrsigs(
                            w,
                            Section::Answer,
                            owner,
                            node,
                            qtype::CNAME,
                            cname.ttl,
                            name,
                        );
                    }
                    // Follow only inside this zone; the resolver chases the rest.
                    let apex = q.lname().get(zone_off..).unwrap_or(&[]);
                    if !target.ends_with(apex) || !is_label_suffix(target, apex.len()) {
                        return scope;
                    }
                    owner = Owner::Wire(target);
                    name = target;
                    found = self.find(target, q.qtype);
                }
                _ => {
                    self.nodata(w, zone_off, sign, owner, node, name);
                    return scope;
                }
            }
        }
        scope
    }

    /// NODATA/NXDOMAIN authority: the SOA, owner = apex (a suffix of QNAME), signed with DO.
    fn negative<S: AnswerSink>(&self, w: &mut S, zone_off: usize, sign: Option<&SignedZone>) {
        let apex = Owner::Question(zone_off);
        self.negative_soa.write(w, Section::Authority, apex);
        if let Some(z) = sign {
            z.soa_sigs(w, apex, self.negative_soa.ttl);
        }
    }

    /// NODATA at `node`: the SOA and, signed, the NSEC showing the types `name` has.
    fn nodata<S: AnswerSink>(
        &self,
        w: &mut S,
        zone_off: usize,
        sign: Option<&SignedZone>,
        owner: Owner<'_>,
        node: &Node,
        name: &[u8],
    ) {
        self.negative(w, zone_off, sign);
        if let Some(z) = sign {
            z.nodata(w, owner, node, name);
        }
    }
}

/// True when the last `suffix_len` bytes of `name` start at a label boundary.
fn is_label_suffix(name: &[u8], suffix_len: usize) -> bool {
    let start = name.len().saturating_sub(suffix_len);
    suffix_offsets(name).any(|off| off == start)
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
