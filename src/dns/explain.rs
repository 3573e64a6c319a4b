//! `explain`'s real answer: the query of an explain request, answered by the same table
//! lookup and [`Writer`] the DNS path uses (counted nowhere), then explained by
//! `routing::explain`. Control plane only; here because encoding a response is dns's job and
//! routing never imports dns.

use std::net::IpAddr;

use hickory_proto::rr::Name;

use super::answer::{ResponseEdns, Writer};
use super::wire::{self, ClientSubnet};
use crate::routing::RoutingTable;
use crate::routing::explain::{Asker, ExplainError, Explanation, explanation, request};
use crate::routing::table::name_wire;

/// Explains `name`/`qtype` for `asker` against `table`.
pub fn explain(
    table: &RoutingTable,
    name: &str,
    qtype: &str,
    asker: Asker,
) -> Result<Explanation, ExplainError> {
    let req = request(name, qtype, asker)?;
    let subnet = req.client.subnet;
    // The real answer, through the real path.
    let packet = query_packet(&req.qname, u16::from(req.rtype), subnet);
    let mut out = Vec::with_capacity(4096);
    let answered = match wire::parse(&packet) {
        Ok(q) => {
            let mut w = Writer::new(&mut out, &packet, &q, 65_535);
            if let Some(ecs) = subnet {
                w.set_edns(ResponseEdns {
                    udp_size: 1232,
                    dnssec_ok: false,
                    client_subnet: Some((ecs, 0)),
                });
            }
            let scope = table.answer_uncounted(&q, &req.client, &mut w);
            w.set_ecs_scope(scope);
            w.finish();
            true
        }
        Err(_) => false,
    };
    Ok(explanation(table, &req, answered.then_some(&out[..])))
}

/// A query packet for `name`/`qtype`, with ECS when given.
fn query_packet(name: &Name, qtype: u16, subnet: Option<ClientSubnet>) -> Vec<u8> {
    let mut p = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(subnet.is_some())];
    p.extend_from_slice(&name_wire(name));
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    if let Some(ecs) = subnet {
        let addr_len = usize::from(ecs.source_prefix).div_ceil(8);
        let octets: Vec<u8> = match ecs.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let addr = octets.get(..addr_len).unwrap_or(&[]);
        let opt_len = 4 + addr.len();
        p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        p.extend_from_slice(&u16::try_from(4 + opt_len).unwrap_or(0).to_be_bytes());
        p.extend_from_slice(&wire::OPTION_ECS.to_be_bytes());
        p.extend_from_slice(&u16::try_from(opt_len).unwrap_or(0).to_be_bytes());
        p.extend_from_slice(&ecs.family().to_be_bytes());
        p.push(ecs.source_prefix);
        p.push(0);
        p.extend_from_slice(addr);
    }
    p
}
