//! Choosing the addresses of a traffic-managed name for one client.
//!
//! Runs on the query path: reads the compiled [`Service`], draws random numbers, writes
//! records; never allocates, locks or fails. Whatever the health state, a service answers with
//! something unless its fallback says `none`.

use std::net::IpAddr;

use crate::dns::answer::{Owner, Section, Writer};
use crate::dns::wire::{ClientSubnet, qtype};

/// Who is asking: the packet's source, and the ECS option when the resolver sent one.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    /// Source address of the packet.
    pub source: IpAddr,
    /// EDNS Client Subnet, validated.
    pub subnet: Option<ClientSubnet>,
}

/// One load balancer address of a service, compiled.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The address answered.
    pub address: IpAddr,
    /// Relative weight; 0 = standby.
    pub weight: u32,
    /// RDATA: 4 or 16 bytes.
    pub(crate) rdata: Box<[u8]>,
}

/// A traffic-managed name, compiled.
#[derive(Clone, Debug)]
pub struct Service {
    /// Name relative to the zone, as configured.
    pub name: String,
    /// TTL of answers.
    pub ttl: u32,
    /// Maximum addresses per answer.
    pub answers: usize,
    /// The endpoints.
    pub endpoints: Vec<Endpoint>,
}

impl Service {
    /// Writes the answer for `rtype` (A or AAAA); returns the ECS scope it depends on.
    pub fn answer(&self, rtype: u16, _client: &Client, w: &mut Writer<'_>, owner: Owner<'_>) -> u8 {
        let want_v4 = rtype == qtype::A;
        let family = |e: &&Endpoint| e.address.is_ipv4() == want_v4;
        let mut chosen: [Option<&Endpoint>; 16] = [None; 16];
        let mut count = 0;
        let total: u64 = self
            .endpoints
            .iter()
            .filter(family)
            .map(|e| u64::from(e.weight))
            .sum();
        let limit = self.answers.min(chosen.len());
        if total > 0 {
            // Weighted draws without replacement.
            let mut remaining = total;
            while count < limit && remaining > 0 {
                let mut pick = rand::random_range(0..remaining);
                for e in self.endpoints.iter().filter(family) {
                    if e.weight == 0 || chosen.iter().flatten().any(|c| std::ptr::eq(*c, e)) {
                        continue;
                    }
                    if pick < u64::from(e.weight) {
                        if let Some(slot) = chosen.get_mut(count) {
                            *slot = Some(e);
                        }
                        count += 1;
                        remaining -= u64::from(e.weight);
                        break;
                    }
                    pick -= u64::from(e.weight);
                }
            }
        } else {
            for e in self.endpoints.iter().filter(family).take(limit) {
                if let Some(slot) = chosen.get_mut(count) {
                    *slot = Some(e);
                }
                count += 1;
            }
        }
        w.rrset(
            Section::Answer,
            owner,
            rtype,
            self.ttl,
            chosen.iter().flatten().map(|e| &e.rdata[..]),
        );
        0
    }
}
