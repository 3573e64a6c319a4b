//! Zone transfers (AXFR, RFC 5936), over TCP, to the addresses `--allow-transfer` names.
//!
//! Control-plane rate and cost: a transfer walks the compiled zone and writes several
//! messages. It sends the static data only: a service's answers depend on the client and on
//! health, so a secondary could only freeze one of them; service names are left out (and
//! documented so). IXFR is answered with a full transfer (RFC 1995 §4 allows it). A signed
//! zone goes with its RRSIGs and NSECs (`routing::signed::transfer_rrsets`).

use std::net::IpAddr;

use ipnet::IpNet;

use super::answer::{Owner, Section, Writer};
use super::wire::{self, qclass, qtype};
use crate::routing::RoutingTable;

/// Bytes after which a transfer message is closed and the next begun (well under 64 KiB).
const MESSAGE_TARGET: usize = 16 * 1024;
/// Largest message: the TCP length prefix is 16 bits (RFC 1035 §4.2.2).
const MESSAGE_LIMIT: usize = crate::config::model::MAX_MESSAGE;
/// Bytes of a record besides its owner and RDATA: type, class, TTL, RDLENGTH.
const RECORD_FIXED: usize = 10;
/// An owner written as a pointer to the question (the SOA at the apex).
const POINTER_LEN: usize = 2;

/// The messages of a transfer, or `None` when `packet` is not an allowed AXFR/IXFR for a zone
/// apex we serve (the normal path then answers it, with REFUSED).
///
/// A message is closed once it passes `MESSAGE_TARGET`, and also whenever the next RRset
/// would not fit in it, so no message is ever truncated. The loader rejects an RRset that
/// cannot fit one message (`config::model::MAX_RRSET_WIRE`); should one get here anyway, it
/// is sent record by record over several messages, as Knot does, rather than cut.
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
    let soa_len = POINTER_LEN + RECORD_FIXED + soa.1.len();
    let mut messages = Vec::new();
    let mut buf = Vec::with_capacity(MESSAGE_TARGET * 2);
    let mut w = Writer::new(&mut buf, packet, &q, MESSAGE_LIMIT);
    w.set_authoritative(true);
    // Closes the current message and starts the next (never an empty one).
    macro_rules! next_message_unless_empty {
        () => {
            if !w.is_empty() {
                w.finish();
                messages.push(std::mem::take(&mut buf));
                w = Writer::new(&mut buf, packet, &q, MESSAGE_LIMIT);
                w.set_authoritative(true);
            }
        };
    }
    w.rrset(
        Section::Answer,
        Owner::Question(0),
        qtype::SOA,
        soa.0,
        [soa.1],
    );
    let mut rdatas: Vec<&[u8]> = Vec::new();
    for (owner, rtype, ttl, data) in crate::routing::signed::transfer_rrsets(zone) {
        if rtype == qtype::SOA {
            continue;
        }
        rdatas.clear();
        rdatas.extend(data);
        let record_len = |rdata: &[u8]| owner.len() + RECORD_FIXED + rdata.len();
        let size: usize = rdatas.iter().map(|r| record_len(r)).sum();
        if w.len() > MESSAGE_TARGET || w.len() + size > MESSAGE_LIMIT {
            next_message_unless_empty!();
        }
        if w.len() + size <= MESSAGE_LIMIT {
            w.rrset(
                Section::Answer,
                Owner::Wire(owner),
                rtype,
                ttl,
                rdatas.iter().copied(),
            );
            continue;
        }
        for &rdata in &rdatas {
            if w.len() + record_len(rdata) > MESSAGE_LIMIT {
                next_message_unless_empty!();
            }
            w.rrset(Section::Answer, Owner::Wire(owner), rtype, ttl, [rdata]);
        }
    }
    if w.len() + soa_len > MESSAGE_LIMIT {
        next_message_unless_empty!();
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
