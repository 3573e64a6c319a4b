//! The signatures of one compiled zone, made when the table is compiled (off the query path).
//!
//! For every name the zone is authoritative for: an RRSIG set per RRset, and the NSEC that
//! proves which types exist there (NODATA, RFC 9824 §3.2: owner the name, next `\000.name`,
//! the bitmap of its types, services' A/AAAA included). At a delegation: the DS RRset's
//! RRSIGs, or the NSEC that proves there is no DS (bitmap NS, RRSIG, NSEC). Glue and the NS
//! RRset of a delegation are not signed (RFC 4035 §2.2). The DNSKEY RRset is signed by the
//! KSKs, everything else by the ZSKs ([`super::zone::KeyRoles`]).
//!
//! Held by the table beside the nodes it signs (same index), so the query path finds a
//! signature with one index and one short scan, and never signs a static RRset.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, Restrict};

use super::select::CompiledFallback;
use super::sink::AnswerSink;
use super::table::{Node, ZoneTable};
use crate::dnssec::sign::{TYPE_DS, TYPE_NSEC, TYPE_RRSIG, canonical_rdata};
use crate::dnssec::zone::{Rrsigs, SignedNsec, ZoneDnssec, ZoneSigner};
use crate::proto::{Owner, Rcode, Section};

const TYPE_A: u16 = 1;
const TYPE_NS: u16 = 2;
const TYPE_SOA: u16 = 6;
const TYPE_AAAA: u16 = 28;

/// The signatures at one node.
#[derive(Debug, Default)]
pub struct NodeSigs {
    /// The owner in canonical form (lowercase wire).
    pub owner: Box<[u8]>,
    /// RRSIG RDATAs per RRset type.
    rrsigs: Vec<(u16, Rrsigs)>,
    /// The NSEC of this name (None for names the zone is not authoritative for).
    pub nsec: Option<SignedNsec>,
    /// Types that exist here (a service's A/AAAA included), for NSEC bitmaps of wildcard
    /// expansions.
    pub types: Box<[u16]>,
    /// For a wildcard (`*.x`): its RDATA in canonical form per type, to sign expansions.
    canonical: Vec<(u16, Vec<Box<[u8]>>)>,
}

impl NodeSigs {
    /// The RRSIGs over the RRset of `rtype` here (empty when it is not signed).
    pub fn rrsigs(&self, rtype: u16) -> &[Box<[u8]>] {
        self.rrsigs
            .iter()
            .find(|(t, _)| *t == rtype)
            .map_or(&[], |(_, s)| &s[..])
    }
}

/// A compiled zone's signatures and its signer.
#[derive(Debug)]
pub struct SignedZone {
    /// Signs what only the query path can: steered sets, per-name proofs.
    pub signer: ZoneSigner,
    /// Per node, same index as the zone's nodes.
    nodes: Vec<NodeSigs>,
    /// RRSIGs over the apex SOA (the negative-answer SOA has a lower TTL but the same data:
    /// validators rebuild it with the RRSIG's original TTL, RFC 4035 §5.3.2).
    pub soa: Rrsigs,
}

/// RDATA of a table RRset in canonical form: decoded and encoded again with the names of the
/// types RFC 4034 §6.2 lists lowercased; types hickory does not know are already canonical.
fn canonical(rtype: u16, wire: &[u8]) -> Vec<u8> {
    let mut decoder = BinDecoder::new(wire);
    let len = u16::try_from(wire.len()).unwrap_or(u16::MAX);
    match RData::read(&mut decoder, RecordType::from(rtype), Restrict::new(len)) {
        Ok(RData::Unknown { .. }) | Err(_) => wire.to_vec(),
        Ok(rdata) => canonical_rdata(&rdata).unwrap_or_else(|_| wire.to_vec()),
    }
}

/// A service's address types: A when it can answer IPv4, AAAA when IPv6.
fn service_types(zone: &ZoneTable, node: &Node) -> Vec<u16> {
    let Some(svc) = node
        .service
        .and_then(|i| zone.services.get(usize::try_from(i).ok()?))
    else {
        return Vec::new();
    };
    let mut addrs: Vec<IpAddr> = svc.endpoints.iter().map(|e| e.address).collect();
    if let CompiledFallback::Addresses(list) = &svc.fallback {
        addrs.extend(list.iter().map(|(a, _)| *a));
    }
    let mut out = Vec::new();
    if addrs.iter().any(IpAddr::is_ipv4) {
        out.push(TYPE_A);
    }
    if addrs.iter().any(IpAddr::is_ipv6) {
        out.push(TYPE_AAAA);
    }
    out
}

/// The apex DNSKEY, CDS and CDNSKEY records of a signed zone now (none when unsigned): the
/// compiler adds them to the zone's records.
pub fn apex_records(zone: &crate::config::Zone) -> Vec<hickory_proto::rr::Record> {
    let now = crate::dnssec::time::now();
    APEX_AT.with(|at| at.set(now));
    zone.dnssec
        .as_ref()
        .map(|d| d.apex_records(&zone.origin, now))
        .unwrap_or_default()
}

/// The SOA serial `zone` serves, signed ([`ZoneDnssec::serial`], for the moment
/// [`apex_records`] chose the keys for in the same compile) or not (as configured).
pub fn serial(zone: &crate::config::Zone) -> u32 {
    let configured = zone.serial();
    zone.dnssec.as_ref().map_or(configured, |d| {
        d.serial(configured, APEX_AT.with(std::cell::Cell::get))
    })
}

thread_local! {
    /// The moment [`apex_records`] last chose the keys for, on this thread: [`sign`], which
    /// the same compile calls next, checks that it signs for the same moment.
    static APEX_AT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl SignedZone {
    /// Signs `zone` with `dnssec` at `now`. None when no key is active now.
    pub fn build(zone: &ZoneTable, dnssec: &ZoneDnssec, now: u64) -> Option<Self> {
        let nsec_ttl = zone.negative_soa.ttl;
        let signer = dnssec.signer(&zone.origin, nsec_ttl, now)?;
        let mut soa = None;
        let nodes = zone
            .node_list
            .iter()
            .map(|node| {
                let owner: Box<[u8]> = node.name_wire.to_ascii_lowercase().into_boxed_slice();
                if node.occluded_by.is_some() {
                    // Glue and whatever else lies below a cut: not ours to sign or deny.
                    return NodeSigs {
                        owner,
                        ..NodeSigs::default()
                    };
                }
                let mut types: Vec<u16> = if node.cut {
                    node.rrsets
                        .iter()
                        .map(|r| r.rtype)
                        .filter(|&t| t == TYPE_NS || t == TYPE_DS)
                        .collect()
                } else {
                    node.rrsets.iter().map(|r| r.rtype).collect()
                };
                types.extend(service_types(zone, node));
                let mut rrsigs = Vec::new();
                let mut wildcard = Vec::new();
                for rrset in &node.rrsets {
                    if node.cut && rrset.rtype != TYPE_DS {
                        continue;
                    }
                    let rdatas: Vec<Vec<u8>> = rrset
                        .rdata
                        .iter()
                        .map(|r| canonical(rrset.rtype, r))
                        .collect();
                    let refs: Vec<&[u8]> = rdatas.iter().map(Vec::as_slice).collect();
                    if owner.starts_with(b"\x01*") {
                        let boxed = rdatas.iter().map(|r| r.clone().into_boxed_slice());
                        wildcard.push((rrset.rtype, boxed.collect()));
                    }
                    let sigs = signer.sign_static(&owner, rrset.rtype, rrset.ttl, &refs);
                    if rrset.rtype == TYPE_SOA && soa.is_none() {
                        soa = Some(Arc::clone(&sigs));
                    }
                    rrsigs.push((rrset.rtype, sigs));
                }
                let nsec = Some(signer.nsec_static(&owner, &types));
                NodeSigs {
                    owner,
                    rrsigs,
                    nsec,
                    types: types.into_boxed_slice(),
                    canonical: wildcard,
                }
            })
            .collect();
        signer.finish_compile();
        Some(Self {
            signer,
            nodes,
            soa: soa.unwrap_or_else(|| Arc::from(Vec::new())),
        })
    }

    /// The signatures of node `index` of the zone (before [`sign`] moved them to the nodes).
    pub fn node(&self, index: usize) -> Option<&NodeSigs> {
        self.nodes.get(index)
    }
}

/// Signs `zone` (compiled just now) when its configuration has `[dnssec]`: each node gets
/// its signatures, the zone its signer. A zone whose keys are all inactive now is served
/// unsigned (the loader refuses such a configuration; only time passing gets here).
pub fn sign(zone: &mut ZoneTable, now: u64) {
    let Some(dnssec) = zone.source.dnssec.clone() else {
        return;
    };
    let Some(mut signed) = SignedZone::build(zone, &dnssec, now) else {
        tracing::warn!(zone = %zone.origin, "no DNSSEC key is active: serving the zone unsigned");
        return;
    };
    // Only a zone compiled just now gets here: its nodes are not shared yet.
    if let Some(list) = Arc::get_mut(&mut zone.node_list) {
        for (node, sigs) in list.iter_mut().zip(std::mem::take(&mut signed.nodes)) {
            node.dnssec = Some(Box::new(sigs));
        }
    }
    zone.dnssec = Some(Arc::new(signed));
    let apex_at = APEX_AT.with(std::cell::Cell::get);
    if apex_at < now && dnssec.next_event(apex_at) <= now {
        // A key changed state between choosing the DNSKEY set and the signers, so they may
        // disagree: [`resign`] compiles again at once.
        STALE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    COMPILED_AT.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
    COMPILED.notify_one();
}

/// When the first signed zone of `zones` needs re-signing after `now` (a signature window
/// ends or a key changes state); None when no zone is signed.
pub fn next_resign(zones: &[Arc<crate::config::Zone>], now: u64) -> Option<u64> {
    zones
        .iter()
        .filter_map(|z| z.dnssec.as_ref())
        .map(|d| d.next_event(now))
        .min()
}

/// The RRsets a zone transfer sends, in zone order: each static RRset, followed when the
/// zone is signed by its RRSIGs, and each name's NSEC (compact, as queries see it) with its
/// RRSIGs; DNSKEY, CDS and CDNSKEY are records of the apex like any other. Glue and the NS
/// of a cut are sent unsigned, as they are served. A name that is a service sends no NSEC:
/// its bitmap would claim the A/AAAA a transfer leaves out. (Knot's `mod-onlinesign`
/// transfers the zone unsigned; a signed transfer lets a secondary serve the static data
/// securely until the signatures expire.)
pub fn transfer_rrsets(zone: &ZoneTable) -> impl Iterator<Item = (&[u8], u16, u32, Vec<&[u8]>)> {
    let nsec_ttl = zone.dnssec.as_ref().map(|z| z.signer.nsec_ttl);
    zone.node_list.iter().flat_map(move |node| {
        let owner = &node.name_wire[..];
        let sigs = node.dnssec.as_deref();
        let mut out = Vec::new();
        for rrset in &node.rrsets {
            out.push((
                owner,
                rrset.rtype,
                rrset.ttl,
                rrset.rdata.iter().map(|r| &r[..]).collect(),
            ));
            let rrsigs = sigs.map_or(&[][..], |s| s.rrsigs(rrset.rtype));
            if !rrsigs.is_empty() {
                out.push((
                    owner,
                    TYPE_RRSIG,
                    rrset.ttl,
                    rrsigs.iter().map(|r| &r[..]).collect(),
                ));
            }
        }
        let nsec = sigs.and_then(|s| s.nsec.as_ref());
        if let (Some(nsec), Some(ttl)) = (nsec, nsec_ttl) {
            if !node.rrsets.is_empty() && node.service.is_none() && !node.cut {
                out.push((owner, TYPE_NSEC, ttl, vec![&nsec.rdata[..]]));
                out.push((
                    owner,
                    TYPE_RRSIG,
                    ttl,
                    nsec.sigs.iter().map(|r| &r[..]).collect(),
                ));
            }
        }
        out
    })
}

/// Wakes [`resign`] after every compile of a signed zone: a reload may bring key times
/// sooner than the one it sleeps until.
static COMPILED: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// The `now` of the latest compile of a signed zone: what it signed for is up to date.
static COMPILED_AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Set when a compile's DNSKEY set and signers were chosen in different seconds.
static STALE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Re-signs off the query path for as long as the process runs: sleeps until the next
/// signature refresh or key event of the zones `publisher` serves, or until a compile (a
/// reload, a health change) brings other zones or key times, then recompiles and swaps the
/// table when a time has come.
pub async fn resign(publisher: Arc<super::publish::Publisher>) {
    use std::sync::atomic::Ordering;
    let mut checked = crate::dnssec::time::now();
    loop {
        let wait = next_resign(&publisher.zones(), checked)
            .map_or(RESIGN_CHECK, |t| {
                std::time::Duration::from_secs(t.saturating_sub(checked))
            })
            .clamp(std::time::Duration::from_secs(1), RESIGN_CHECK);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = COMPILED.notified() => {
                if STALE.swap(false, Ordering::Relaxed) {
                    publisher.recompile();
                }
                // That compile signed with the keys of its moment.
                checked = checked.max(COMPILED_AT.load(Ordering::Relaxed));
                continue;
            }
        }
        let now = crate::dnssec::time::now();
        // Something changed state in (checked, now]: compile what the time now says.
        if next_resign(&publisher.zones(), checked).is_some_and(|t| t <= now) {
            publisher.recompile();
        }
        checked = checked.max(now);
    }
}

/// Longest sleep of [`resign`] between checks.
pub const RESIGN_CHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// True when `node` is a wildcard standing in for `name` (RFC 4592 expansion).
pub fn is_expansion(node: &Node, name: &[u8]) -> bool {
    node.name_wire.starts_with(b"\x01*") && !node.name_wire.eq_ignore_ascii_case(name)
}

fn write_sigs<S: AnswerSink>(
    w: &mut S,
    section: Section,
    owner: Owner<'_>,
    ttl: u32,
    sigs: &[Box<[u8]>],
) {
    if !sigs.is_empty() {
        w.rrset(section, owner, TYPE_RRSIG, ttl, sigs.iter().map(|s| &s[..]));
    }
}

impl SignedZone {
    /// RRSIGs after the RRset `rtype` of `node` was written at `owner` (`name` canonical):
    /// made at compile time, or for a wildcard expansion signed for `name` (cached).
    #[allow(clippy::too_many_arguments)]
    pub fn rrsigs<S: AnswerSink>(
        &self,
        w: &mut S,
        section: Section,
        owner: Owner<'_>,
        node: &Node,
        rtype: u16,
        ttl: u32,
        name: &[u8],
    ) {
        let Some(sigs) = node.dnssec.as_deref() else {
            return;
        };
        if !is_expansion(node, name) {
            write_sigs(w, section, owner, ttl, sigs.rrsigs(rtype));
            return;
        }
        let Some((_, rdatas)) = sigs.canonical.iter().find(|(t, _)| *t == rtype) else {
            return;
        };
        let refs: Vec<&[u8]> = rdatas.iter().map(|r| &r[..]).collect();
        if let Some(e) = self.signer.sign_per_name(name, rtype, ttl, &refs) {
            write_sigs(w, section, owner, ttl, &e.sigs);
        }
    }

    /// RRSIGs over the negative-answer SOA just written at the apex.
    pub fn soa_sigs<S: AnswerSink>(&self, w: &mut S, owner: Owner<'_>, ttl: u32) {
        write_sigs(w, Section::Authority, owner, ttl, &self.soa);
    }

    /// The NODATA proof at `node` (`name` canonical): its NSEC, or for a wildcard expansion
    /// an NSEC at `name` with the wildcard's types (signed per name, cached).
    pub fn nodata<S: AnswerSink>(&self, w: &mut S, owner: Owner<'_>, node: &Node, name: &[u8]) {
        let Some(sigs) = node.dnssec.as_deref() else {
            return;
        };
        if is_expansion(node, name) {
            let mut rdata = Vec::new();
            if let Some(e) = self.signer.nsec_dynamic(name, &sigs.types, &mut rdata) {
                self.write_nsec(w, owner, &rdata, &e.sigs);
            }
        } else if let Some(nsec) = &sigs.nsec {
            self.write_nsec(w, owner, &nsec.rdata, &nsec.sigs);
        }
    }

    /// The compact denial of `name` (RFC 9824 §3.1: NOERROR and an NSEC with NXNAME). False
    /// when signing failed: the caller answers NXDOMAIN.
    pub fn deny_name<S: AnswerSink>(&self, w: &mut S, owner: Owner<'_>, name: &[u8]) -> bool {
        let mut rdata = Vec::new();
        match self
            .signer
            .nsec_dynamic(name, &ZoneSigner::NXNAME_TYPES, &mut rdata)
        {
            Some(e) => {
                self.write_nsec(w, owner, &rdata, &e.sigs);
                true
            }
            None => false,
        }
    }

    /// At a delegation, after its NS: the signed DS RRset, or the NSEC proving there is none.
    pub fn delegation<S: AnswerSink>(&self, w: &mut S, cut: &Node) {
        let owner = Owner::Wire(&cut.name_wire);
        if let Some(ds) = cut.rrset(TYPE_DS) {
            w.rrset(
                Section::Authority,
                owner,
                TYPE_DS,
                ds.ttl,
                ds.rdata.iter().map(|r| &r[..]),
            );
            if let Some(sigs) = cut.dnssec.as_deref() {
                write_sigs(w, Section::Authority, owner, ds.ttl, sigs.rrsigs(TYPE_DS));
            }
        } else if let Some(nsec) = cut.dnssec.as_deref().and_then(|s| s.nsec.as_ref()) {
            self.write_nsec(w, owner, &nsec.rdata, &nsec.sigs);
        }
    }

    /// Answers a DO=1 query for type NSEC or RRSIG at `node` (`name` canonical), which the
    /// zone's data cannot: true when it did. NSEC: the name's own NSEC (compact, its bitmap
    /// listing NSEC and RRSIG) and its RRSIGs, the one a NODATA proof would carry, in the
    /// answer section. RRSIG: every RRSIG at the name over its static RRsets and its NSEC (as
    /// BIND answers a signed zone's; Knot's `mod-onlinesign` refuses the query); a service's
    /// A/AAAA signatures depend on the client and are not among them. At a wildcard
    /// expansion both are made for `name` (cached per name).
    pub fn meta_query<S: AnswerSink>(
        &self,
        w: &mut S,
        owner: Owner<'_>,
        node: &Node,
        name: &[u8],
        qtype: u16,
    ) -> bool {
        if qtype != TYPE_NSEC && qtype != TYPE_RRSIG {
            return false;
        }
        let Some(sigs) = node.dnssec.as_deref() else {
            return false;
        };
        let ttl = self.signer.nsec_ttl;
        let mut rdata = Vec::new();
        let dynamic;
        let (nsec, nsec_sigs): (&[u8], &[Box<[u8]>]) = if is_expansion(node, name) {
            let Some(e) = self.signer.nsec_dynamic(name, &sigs.types, &mut rdata) else {
                return false;
            };
            dynamic = e;
            (&rdata, &dynamic.sigs)
        } else {
            let Some(n) = sigs.nsec.as_ref() else {
                return false;
            };
            (&n.rdata, &n.sigs)
        };
        if qtype == TYPE_NSEC {
            w.rrset(Section::Answer, owner, TYPE_NSEC, ttl, [nsec]);
            write_sigs(w, Section::Answer, owner, ttl, nsec_sigs);
            return true;
        }
        for rrset in &node.rrsets {
            self.rrsigs(
                w,
                Section::Answer,
                owner,
                node,
                rrset.rtype,
                rrset.ttl,
                name,
            );
        }
        write_sigs(w, Section::Answer, owner, ttl, nsec_sigs);
        true
    }

    /// The additional data of `rrset` (A/AAAA of the in-zone names its NS, MX or SRV records
    /// name) in `section`, each followed by its RRSIGs when it is authoritative data of
    /// `zone` (RFC 4035 §3.1.1); glue below a cut has none. The RRSIGs are optional data:
    /// when they do not fit, they are left out rather than the answer truncated.
    pub fn additional<S: AnswerSink>(
        &self,
        w: &mut S,
        zone: &ZoneTable,
        rrset: &super::table::RrSet,
        section: Section,
    ) {
        for glue in &rrset.additional {
            let Some((node, set)) = zone.glue(glue) else {
                continue;
            };
            let owner = Owner::Wire(&node.name_wire);
            w.rrset(
                section,
                owner,
                set.rtype,
                set.ttl,
                set.rdata.iter().map(|r| &r[..]),
            );
            if let Some(sigs) = node.dnssec.as_deref() {
                write_sigs(
                    w,
                    Section::Additional,
                    owner,
                    set.ttl,
                    sigs.rrsigs(set.rtype),
                );
            }
        }
    }

    fn write_nsec<S: AnswerSink>(
        &self,
        w: &mut S,
        owner: Owner<'_>,
        rdata: &[u8],
        sigs: &[Box<[u8]>],
    ) {
        let ttl = self.signer.nsec_ttl;
        w.rrset(Section::Authority, owner, TYPE_NSEC, ttl, [rdata]);
        write_sigs(w, Section::Authority, owner, ttl, sigs);
    }
}

/// Most records of a steered answer signed without allocating.
const STACK_RDATAS: usize = 32;

/// Passes a service's answer through to `inner` and adds the RRSIGs over it, from the answer
/// cache (signed on first need).
pub struct SigningSink<'a, S> {
    inner: &'a mut S,
    zone: &'a SignedZone,
    /// The owner in canonical form.
    name: &'a [u8],
}

impl<'a, S: AnswerSink> SigningSink<'a, S> {
    /// Wraps `inner` for answers at `name` (canonical) of `zone`.
    pub fn new(inner: &'a mut S, zone: &'a SignedZone, name: &'a [u8]) -> Self {
        Self { inner, zone, name }
    }
}

impl<S: AnswerSink> AnswerSink for SigningSink<'_, S> {
    fn set_rcode(&mut self, rcode: Rcode) {
        self.inner.set_rcode(rcode);
    }

    fn set_authoritative(&mut self, aa: bool) {
        self.inner.set_authoritative(aa);
    }

    fn answer_count(&self) -> u16 {
        self.inner.answer_count()
    }

    fn rrset<'r>(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rtype: u16,
        ttl: u32,
        rdatas: impl IntoIterator<Item = &'r [u8]>,
    ) {
        let mut stack: [&'r [u8]; STACK_RDATAS] = [&[]; STACK_RDATAS];
        let mut heap: Vec<&'r [u8]> = Vec::new();
        let mut n = 0usize;
        for r in rdatas {
            match stack.get_mut(n) {
                Some(slot) => *slot = r,
                None => {
                    if heap.is_empty() {
                        heap.extend_from_slice(&stack);
                    }
                    heap.push(r);
                }
            }
            n += 1;
        }
        let set: &[&[u8]] = if heap.is_empty() {
            stack.get(..n).unwrap_or(&[])
        } else {
            &heap
        };
        self.inner
            .rrset(section, owner, rtype, ttl, set.iter().copied());
        if set.is_empty() || section != Section::Answer {
            return;
        }
        if let Some(e) = self.zone.signer.sign_answer(self.name, rtype, ttl, set) {
            write_sigs(self.inner, section, owner, ttl, &e.sigs);
        }
    }
}

#[cfg(test)]
#[path = "signed_tests.rs"]
mod tests;
