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

use super::sign::{TYPE_DS, canonical_rdata};
use super::zone::{SignedNsec, ZoneDnssec, ZoneSigner};
use crate::routing::select::CompiledFallback;
use crate::routing::table::{Node, ZoneTable};

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
    rrsigs: Vec<(u16, Arc<[Box<[u8]>]>)>,
    /// The NSEC of this name (None for names the zone is not authoritative for).
    pub nsec: Option<SignedNsec>,
    /// Types that exist here (a service's A/AAAA included), for NSEC bitmaps of wildcard
    /// expansions.
    pub types: Box<[u16]>,
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
    pub soa: Arc<[Box<[u8]>]>,
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
    zone.dnssec
        .as_ref()
        .map(|d| d.apex_records(&zone.origin, super::time::now()))
        .unwrap_or_default()
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

    /// The signatures of node `index` of the zone.
    pub fn node(&self, index: usize) -> Option<&NodeSigs> {
        self.nodes.get(index)
    }
}

#[cfg(test)]
#[path = "signed_tests.rs"]
mod tests;
