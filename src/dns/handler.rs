//! The hot path: bytes in, bytes out, against the table published now.
//!
//! No error escapes: every failure becomes an RCODE (FORMERR, NOTIMP, REFUSED, BADVERS) plus a
//! counter, or a silent drop for packets that must not be answered. No lock, no I/O, no
//! allocation beyond what the caller's reused buffer already holds.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::answer::{Owner, Rcode, ResponseEdns, Section, Writer};
use super::metrics::{DnsMetrics, Transport};
use super::wire::{self, ParseError, Query, qclass, qtype};
use crate::routing::publish::Publisher;
use crate::routing::select::Client;

/// Default cap on the UDP payload we send (DNS flag day 2020 value).
pub const DEFAULT_MAX_UDP_SIZE: u16 = 1232;
/// UDP payload size without EDNS (RFC 1035 §4.2.1), also the floor with EDNS (RFC 6891 §6.2.5).
pub const CLASSIC_UDP_SIZE: u16 = 512;
/// Largest DNS message over TCP.
pub const MAX_TCP_MESSAGE: usize = 65_535;

/// What [`Handler::respond`] tells the UDP listener about a response it wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Responded {
    /// The QNAME was answered from a wildcard of this zone (a fixed hash of its apex):
    /// response rate limiting keys the answer on the zone, not on the QNAME.
    pub wildcard_zone: Option<u64>,
}

/// Settings of the handler.
#[derive(Clone, Debug)]
pub struct HandlerConfig {
    /// Cap on the UDP payload size we answer with.
    pub max_udp_size: u16,
    /// TXT RDATA for CH `id.server` / `hostname.bind`; None = REFUSED.
    pub identity: Option<Box<[u8]>>,
    /// TXT RDATA for CH `version.bind` / `version.server`; None = REFUSED.
    pub version: Option<Box<[u8]>>,
    /// Sources allowed to transfer zones (AXFR/IXFR over TCP); empty = REFUSED for all.
    pub allow_transfer: Vec<ipnet::IpNet>,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        Self {
            max_udp_size: DEFAULT_MAX_UDP_SIZE,
            identity: None,
            version: None,
            allow_transfer: Vec::new(),
        }
    }
}

/// Encodes a string as TXT RDATA (one character-string per 255 bytes).
pub fn txt_rdata(text: &str) -> Box<[u8]> {
    let mut out = Vec::with_capacity(text.len() + 2);
    for chunk in text.as_bytes().chunks(255) {
        out.push(u8::try_from(chunk.len()).unwrap_or(255));
        out.extend_from_slice(chunk);
    }
    out.into_boxed_slice()
}

/// Answers DNS messages.
pub struct Handler {
    publisher: Arc<Publisher>,
    metrics: Arc<DnsMetrics>,
    config: HandlerConfig,
}

impl Handler {
    /// A handler over the tables `publisher` publishes.
    pub fn new(publisher: Arc<Publisher>, metrics: Arc<DnsMetrics>, config: HandlerConfig) -> Self {
        Self {
            publisher,
            metrics,
            config,
        }
    }

    /// The counters this handler records into.
    pub fn metrics(&self) -> &DnsMetrics {
        &self.metrics
    }

    /// A zone transfer's messages when `packet` is an AXFR/IXFR from an allowed source (TCP
    /// only); `None` sends it down the normal path (REFUSED).
    pub fn transfer(&self, packet: &[u8], source: IpAddr) -> Option<Vec<Vec<u8>>> {
        if self.config.allow_transfer.is_empty() {
            return None;
        }
        // The listeners canonicalise already; this is the ACL, so make sure: a v4-mapped
        // source must match `allow-transfer 127.0.0.0/8` like the IPv4 address it is.
        let messages = super::transfer::transfer(
            &self.publisher.routes(),
            &self.config.allow_transfer,
            packet,
            source.to_canonical(),
        )?;
        self.metrics
            .record_query(Transport::Tcp, Rcode::NoError, false, false);
        Some(messages)
    }

    /// Handles one message from `source` (canonical: the listeners turn v4-mapped addresses
    /// into IPv4); fills `out` and returns true when there is something to send.
    pub fn handle(
        &self,
        packet: &[u8],
        source: IpAddr,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> bool {
        self.respond(packet, source, transport, out).is_some()
    }

    /// Like [`Handler::handle`], saying what response rate limiting needs beyond the bytes:
    /// `None` when there is nothing to send.
    pub fn respond(
        &self,
        packet: &[u8],
        source: IpAddr,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Option<Responded> {
        let started = Instant::now();
        let q = match wire::parse(packet) {
            Ok(q) => q,
            Err(ParseError::Drop) => {
                self.metrics.record_drop();
                return None;
            }
            Err(e) => {
                let Some(h) = wire::header(packet) else {
                    self.metrics.record_drop();
                    return None;
                };
                let rcode = if e == ParseError::NotImp {
                    Rcode::NotImp
                } else {
                    Rcode::FormErr
                };
                // The slow path: what parsed of the packet goes back with the error.
                let salvage = wire::salvage(packet);
                let mut w = Writer::rejection(out, packet, h, salvage.question_end, rcode);
                if let Some(edns) = salvage.edns {
                    w.set_edns(ResponseEdns {
                        udp_size: self.config.max_udp_size,
                        dnssec_ok: edns.dnssec_ok,
                        client_subnet: None,
                    });
                }
                return self.finish(w, transport, false, started);
            }
        };

        let limit = match (transport, &q.edns) {
            (Transport::Tcp, _) => MAX_TCP_MESSAGE,
            (Transport::Udp, None) => usize::from(CLASSIC_UDP_SIZE),
            (Transport::Udp, Some(edns)) => usize::from(edns.udp_size.clamp(
                CLASSIC_UDP_SIZE,
                self.config.max_udp_size.max(CLASSIC_UDP_SIZE),
            )),
        };
        let mut w = Writer::new(out, packet, &q, limit);
        let ecs = q.edns.and_then(|e| e.client_subnet);
        if let Some(edns) = q.edns {
            // RFC 6891 §6.1.3: an unknown version gets BADVERS, and no ECS echo.
            let known = edns.version == 0;
            w.set_edns(ResponseEdns {
                udp_size: self.config.max_udp_size,
                dnssec_ok: edns.dnssec_ok,
                client_subnet: if known { ecs.map(|e| (e, 0)) } else { None },
            });
            if !known {
                w.set_rcode(Rcode::BadVers);
                return self.finish(w, transport, false, started);
            }
        }

        match (q.qclass, q.qtype) {
            (_, wire::TYPE_OPT) => w.set_rcode(Rcode::FormErr),
            (qclass::CH, qtype::TXT) => self.chaos(&q, &mut w),
            // Transaction meta-types are not data: we implement neither TSIG nor TKEY, so
            // NOTIMP (Knot 3.2 answers NODATA, BIND FORMERR for TSIG; neither is data).
            (_, qtype::TSIG | qtype::TKEY) => w.set_rcode(Rcode::NotImp),
            (qclass::IN, qtype::AXFR | qtype::IXFR) => w.set_rcode(Rcode::Refused),
            (qclass::IN, qtype::MAILA | qtype::MAILB) => w.set_rcode(Rcode::NotImp),
            (qclass::IN, _) => {
                let client = Client {
                    source,
                    subnet: ecs,
                };
                let scope = self.publisher.routes().answer(&q, &client, &mut w);
                w.set_ecs_scope(scope);
            }
            _ => w.set_rcode(Rcode::Refused),
        }
        self.finish(w, transport, ecs.is_some(), started)
    }

    fn finish(
        &self,
        w: Writer<'_>,
        transport: Transport,
        ecs: bool,
        started: Instant,
    ) -> Option<Responded> {
        let wildcard_zone = w.wildcard_zone();
        let (rcode, truncated) = w.finish();
        self.metrics.record_query(transport, rcode, truncated, ecs);
        self.metrics.record_latency(started.elapsed());
        Some(Responded { wildcard_zone })
    }

    /// CH TXT server identity queries: answered only when configured, else REFUSED, so
    /// nothing about the software leaks by default.
    fn chaos(&self, q: &Query, w: &mut Writer<'_>) {
        let rdata = match q.lname() {
            b"\x07version\x04bind\x00" | b"\x07version\x06server\x00" => &self.config.version,
            b"\x02id\x06server\x00" | b"\x08hostname\x04bind\x00" => &self.config.identity,
            _ => &None,
        };
        match rdata {
            Some(rdata) => {
                w.set_authoritative(true);
                w.rrset(
                    Section::Answer,
                    Owner::Question(0),
                    qtype::TXT,
                    0,
                    [&rdata[..]],
                );
            }
            None => w.set_rcode(Rcode::Refused),
        }
    }
}

#[cfg(test)]
#[path = "handler_prop.rs"]
mod proptests;
