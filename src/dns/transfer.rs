//! Zone transfers (AXFR, RFC 5936), over TCP, to the addresses `--allow-transfer` names.
//!
//! Control-plane rate and cost: a transfer walks the compiled zone and writes several
//! messages. It sends the static data only: a service's answers depend on the client and on
//! health, so a secondary could only freeze one of them; service names are left out (and
//! documented so). IXFR is answered with a full transfer (RFC 1995 §4 allows it).

use std::net::IpAddr;

use ipnet::IpNet;

use super::answer::{Owner, Section, Writer};
use super::wire::{self, qclass, qtype};
use crate::routing::RoutingTable;

/// Bytes after which a transfer message is closed and the next begun (well under 64 KiB).
const MESSAGE_TARGET: usize = 16 * 1024;

/// The messages of a transfer, or `None` when `packet` is not an allowed AXFR/IXFR for a zone
/// apex we serve (the normal path then answers it, with REFUSED).
pub fn transfer(
    table: &RoutingTable,
    allowed: &[IpNet],
    packet: &[u8],
    source: IpAddr,
) -> Option<Vec<Vec<u8>>> {
    let q = wire::parse(packet).ok()?;
    if q.qclass != qclass::IN || !matches!(q.qtype, qtype::AXFR | qtype::IXFR) {
        return None;
    }
    if !allowed.iter().any(|net| net.contains(&source)) {
        return None;
    }
    let zone = table.zone_at(q.lname())?;
    let soa = zone.apex_soa()?;
    let mut messages = Vec::new();
    let mut buf = Vec::with_capacity(MESSAGE_TARGET * 2);
    let mut w = Writer::new(&mut buf, packet, &q, usize::from(u16::MAX));
    w.set_authoritative(true);
    w.rrset(
        Section::Answer,
        Owner::Question(0),
        qtype::SOA,
        soa.0,
        [soa.1],
    );
    let mut written = 0usize;
    for (owner, rrset) in zone.all_rrsets() {
        if rrset.0 == qtype::SOA {
            continue;
        }
        if written > MESSAGE_TARGET {
            w.finish();
            messages.push(std::mem::take(&mut buf));
            w = Writer::new(&mut buf, packet, &q, usize::from(u16::MAX));
            w.set_authoritative(true);
            written = 0;
        }
        let before = w.len();
        w.rrset(
            Section::Answer,
            Owner::Wire(owner),
            rrset.0,
            rrset.1,
            rrset.2,
        );
        written += w.len().saturating_sub(before);
    }
    w.rrset(
        Section::Answer,
        Owner::Question(0),
        qtype::SOA,
        soa.0,
        [soa.1],
    );
    w.finish();
    messages.push(buf);
    tracing::info!(zone = %zone.origin, %source, messages = messages.len(), "zone transferred");
    Some(messages)
}
