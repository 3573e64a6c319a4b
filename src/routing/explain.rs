//! `explain`: why a client gets the answer it gets, step by step.
//!
//! Control plane only. `dns::explain` runs the query through the same table and writer the DNS
//! path uses, so "what was returned" is the real thing; this module reads that response and
//! beside it replays the service's decision with every input shown: where the client is and
//! why, the region order and why, each endpoint's health and weight, the pass that answered,
//! the ECS scope and the TTL. (Encoding the response is dns's job: routing never imports dns.)

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};
use ipnet::IpNet;
use serde::Serialize;

use super::select::{Client, Endpoint, OrderReason, Outcome, RegionWalk, Selection, Service};
use super::table::RoutingTable;
use crate::config::model::MAX_ANSWERS;
use crate::geo::distance_km;
use crate::proto::{ClientSubnet, Rcode, qtype};

/// Why an explain request is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The name does not parse.
    #[error("name `{0}`: {1}")]
    Name(String, String),
    /// The type is not A or AAAA (or another known type).
    #[error("type `{0}` is not a record type")]
    Type(String),
    /// The ECS prefix is malformed.
    #[error("ecs `{0}`: {1}")]
    Ecs(String, String),
}

/// Who the explanation is for.
#[derive(Clone, Copy, Debug)]
pub enum Asker {
    /// A resolver at this address, no ECS.
    Address(IpAddr),
    /// A resolver sending this ECS prefix.
    Subnet(IpNet),
}

/// Parses `--ecs` / `ecs=`: a CIDR prefix with no bits past its length (RFC 7871 §6).
pub fn parse_ecs(text: &str) -> Result<IpNet, ExplainError> {
    let net: IpNet = text
        .parse()
        .map_err(|_| ExplainError::Ecs(text.into(), "not a CIDR prefix like 2.2.3.0/24".into()))?;
    if net.trunc() != net {
        return Err(ExplainError::Ecs(
            text.into(),
            format!("bits set past the prefix (did you mean {}?)", net.trunc()),
        ));
    }
    Ok(net)
}

/// Where the client was placed.
#[derive(Debug, Serialize)]
pub struct ClientView {
    /// `ecs`, `source address`, or `none` (ECS with source prefix 0).
    pub located_by: &'static str,
    /// The address looked up.
    pub address: Option<IpAddr>,
    /// ECS source prefix, if ECS.
    pub source_prefix: Option<u8>,
    /// Found in the database.
    pub geoip_found: bool,
    /// The database network that holds the address.
    pub geoip_network: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// Continent.
    pub continent: Option<String>,
    /// Coordinates.
    pub coords: Option<[f64; 2]>,
    /// True when the coordinates are the country's centroid.
    pub coords_from_centroid: bool,
}

/// An endpoint as the decision saw it.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    /// Address.
    pub address: IpAddr,
    /// Configured weight.
    pub weight: u32,
    /// Weight in effect (0 when drained).
    pub effective_weight: u32,
    /// Decided health.
    pub healthy: bool,
    /// Right family for the query.
    pub family_matches: bool,
    /// Chance that this endpoint is in the answer (0 to 1), for the decision shown.
    pub probability: f64,
}

/// A region in the order.
#[derive(Debug, Serialize)]
pub struct RegionView {
    /// Name.
    pub name: String,
    /// Distance from the client, for `nearest`.
    pub distance_km: Option<f64>,
    /// Slow start of a region coming back: the share (0.1-1.0) of the answers it would take
    /// that it takes now; the rest go on down the order.
    pub share: f64,
    /// Its endpoints of this service.
    pub endpoints: Vec<EndpointView>,
}

/// The service part of an explanation.
#[derive(Debug, Serialize)]
pub struct ServiceView {
    /// Service key.
    pub service: String,
    /// Policy.
    pub policy: &'static str,
    /// Why this order.
    pub order_reason: String,
    /// Regions in the order walked.
    pub regions: Vec<RegionView>,
    /// Which pass answered.
    pub outcome: String,
    /// Region that answered.
    pub chosen_region: Option<String>,
    /// Most addresses per answer.
    pub answers: usize,
}

/// The whole explanation.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// The name asked.
    pub name: String,
    /// The type asked.
    pub qtype: String,
    /// The zone that answers, if any.
    pub zone: Option<String>,
    /// Table generation explained against.
    pub generation: u64,
    /// The client.
    pub client: ClientView,
    /// The service decision, when the name is a service.
    pub service: Option<ServiceView>,
    /// Response code returned.
    pub rcode: String,
    /// Answer records, in presentation form.
    pub answer: Vec<String>,
    /// Authority records, in presentation form.
    pub authority: Vec<String>,
    /// ECS scope in the response.
    pub ecs_scope: Option<u8>,
}

/// An explain request, checked: what to ask and who asks.
#[derive(Clone, Debug)]
pub struct Request {
    /// The name as shown, fully qualified.
    pub fqdn: String,
    /// The name asked.
    pub qname: Name,
    /// The type asked.
    pub rtype: RecordType,
    /// Who asks: the source address, and the ECS option when the asker is a subnet.
    pub client: Client,
}

/// Checks `name`/`qtype` for `asker`: the request `dns::explain::explain` answers.
pub fn request(name: &str, qtype: &str, asker: Asker) -> Result<Request, ExplainError> {
    let fqdn = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    let qname =
        Name::from_ascii(&fqdn).map_err(|e| ExplainError::Name(name.into(), e.to_string()))?;
    let rtype: RecordType = qtype
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| ExplainError::Type(qtype.into()))?;

    let (source, subnet) = match asker {
        Asker::Address(a) => (a, None),
        Asker::Subnet(net) => (
            IpAddr::from([127, 0, 0, 1]),
            Some(ClientSubnet {
                addr: net.addr(),
                source_prefix: net.prefix_len(),
            }),
        ),
    };
    Ok(Request {
        fqdn,
        qname,
        rtype,
        client: Client { source, subnet },
    })
}

/// The explanation of `req` against `table`, given `response`: the message the DNS path
/// answered it with (`None` when no query could be built for it, which shows as REFUSED).
pub fn explanation(table: &RoutingTable, req: &Request, response: Option<&[u8]>) -> Explanation {
    let Request {
        fqdn,
        qname,
        rtype,
        client,
    } = req;
    let (qname, rtype, client, subnet) = (qname, *rtype, *client, client.subnet);
    let zone_name = response.and_then(|_| {
        table
            .zones()
            .filter(|z| z.origin.zone_of(qname))
            .max_by_key(|z| z.origin.num_labels())
            .map(|z| z.origin.to_string())
    });
    let response = response.and_then(|bytes| Message::from_vec(bytes).ok());

    let located = client.locate_addr();
    let loc = located.map(|(addr, _)| table.geo.lookup(addr));
    let client_view = ClientView {
        located_by: match (subnet, located) {
            (_, None) => "none",
            (Some(_), _) => "ecs",
            (None, _) => "source address",
        },
        address: located.map(|(a, _)| a),
        source_prefix: subnet.map(|s| s.source_prefix),
        geoip_found: loc.is_some_and(|l| l.found),
        geoip_network: located.zip(loc).and_then(|((a, _), l)| {
            IpNet::new(a, l.prefix_len)
                .ok()
                .map(|n| n.trunc().to_string())
        }),
        country: loc.and_then(|l| l.country).map(|c| c.to_string()),
        continent: loc.and_then(|l| l.continent).map(|c| c.to_string()),
        coords: loc.and_then(|l| l.coords).map(|c| [c.lat, c.lon]),
        coords_from_centroid: loc.is_some_and(|l| l.coords_from_centroid),
    };

    let service = find_service(table, qname).map(|svc| service_view(svc, table, &client, rtype));

    let (rcode, answer, authority, ecs_scope) = match &response {
        Some(m) => (
            rcode_name(u16::from(m.metadata.response_code)),
            m.answers.iter().map(|r| r.to_string()).collect(),
            m.authorities.iter().map(|r| r.to_string()).collect(),
            m.edns.as_ref().and_then(|e| {
                match e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet) {
                    Some(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(s)) => {
                        Some(s.scope_prefix())
                    }
                    _ => None,
                }
            }),
        ),
        None => ("REFUSED".to_string(), Vec::new(), Vec::new(), None),
    };

    Explanation {
        name: fqdn.clone(),
        qtype: rtype.to_string(),
        zone: zone_name,
        generation: table.generation,
        client: client_view,
        service,
        rcode,
        answer,
        authority,
        ecs_scope,
    }
}

fn rcode_name(code: u16) -> String {
    Rcode::ALL
        .into_iter()
        .find(|r| *r as u16 == code)
        .map_or_else(|| code.to_string(), |r| r.as_str().to_string())
}

fn find_service<'t>(table: &'t RoutingTable, qname: &Name) -> Option<&'t Service> {
    let key = super::compile::key_wire(qname);
    table.zones().find_map(|z| z.service_at(&key))
}

fn service_view(
    svc: &Service,
    table: &RoutingTable,
    client: &Client,
    rtype: RecordType,
) -> ServiceView {
    let (walk, reason, _, loc) = svc.order(client, &table.geo);
    let want_v4 = rtype != RecordType::AAAA;
    let order: Vec<(usize, Option<f64>)> = match walk {
        // A nearest order precomputed for the client's country: distances from its centroid.
        RegionWalk::List(list) => list
            .iter()
            .map(|&i| {
                let from = match reason {
                    OrderReason::Distance(from) => Some(from),
                    _ => None,
                };
                let coords = svc.regions.get(usize::from(i)).and_then(|r| r.coords);
                let d = from.zip(coords).map(|(from, c)| distance_km(from, c));
                (usize::from(i), d)
            })
            .collect(),
        RegionWalk::Pool => (0..svc.regions.len()).map(|i| (i, None)).collect(),
        RegionWalk::Nearest(from) => {
            let mut v: Vec<(usize, Option<f64>)> = svc
                .regions
                .iter()
                .enumerate()
                .map(|(i, r)| (i, r.coords.map(|c| distance_km(from, c))))
                .collect();
            v.sort_by(|a, b| {
                a.1.unwrap_or(f64::MAX)
                    .total_cmp(&b.1.unwrap_or(f64::MAX))
                    .then(a.0.cmp(&b.0))
            });
            v
        }
    };
    let qt = if want_v4 { qtype::A } else { qtype::AAAA };
    // The region and pass are decided without randomness (except for a region coming back
    // under slow start, which takes only its `share` and is shown with it); only which
    // endpoints of that region answer is drawn. Show that draw as each endpoint's probability instead of a
    // second draw that could differ from the answer shown.
    let sel = svc.select(qt, client, &table.geo);
    let probability = answer_probabilities(svc, &sel, want_v4);
    let regions = order
        .into_iter()
        .filter_map(|(i, distance_km)| {
            let region = svc.regions.get(i)?;
            let endpoints = svc
                .endpoints
                .get(region.endpoints.clone())?
                .iter()
                .enumerate()
                .map(|(j, e)| EndpointView {
                    address: e.address,
                    weight: e.configured_weight,
                    effective_weight: e.weight,
                    healthy: e.healthy,
                    family_matches: e.address.is_ipv4() == want_v4,
                    probability: probability
                        .get(region.endpoints.start + j)
                        .copied()
                        .unwrap_or(0.0),
                })
                .collect();
            Some(RegionView {
                share: f64::from(region.share) / f64::from(super::select::FULL_SHARE),
                name: region.name.clone(),
                distance_km: distance_km.map(|d| (d * 10.0).round() / 10.0),
                endpoints,
            })
        })
        .collect();
    let order_reason = match reason {
        OrderReason::Subnet(net) => format!("geo.subnet \"{net}\" matched (beats GeoIP)"),
        OrderReason::Country(c) => format!("geo.country {c} matched"),
        OrderReason::Continent(c) => {
            format!("geo.continent {c} matched (no entry for the country)")
        }
        OrderReason::Default => match loc {
            Some(l) if l.found => "no geo entry for this location: default order".to_string(),
            Some(_) => "client not in the GeoIP database: default order".to_string(),
            None => "no client address to locate: default order".to_string(),
        },
        OrderReason::Distance(c) => format!("nearest first, by distance from {c}"),
        OrderReason::Failover => "failover list".to_string(),
        OrderReason::Pooled => "weighted: all endpoints in one pool".to_string(),
    };
    ServiceView {
        service: svc.key.clone(),
        policy: svc.policy_name(),
        order_reason,
        regions,
        outcome: format!("{:?}", sel.outcome).to_lowercase(),
        chosen_region: sel
            .region
            .and_then(|i| svc.regions.get(usize::from(i)))
            .map(|r| r.name.clone()),
        answers: svc.answers,
    }
}

/// Each endpoint's chance of being in the answer for `sel`'s decision, by endpoint index.
fn answer_probabilities(svc: &Service, sel: &Selection, want_v4: bool) -> Vec<f64> {
    let mut p = vec![0.0; svc.endpoints.len()];
    let range = match sel.region {
        Some(r) => svc
            .regions
            .get(usize::from(r))
            .map_or(0..0, |r| r.endpoints.clone()),
        None => 0..svc.endpoints.len(),
    };
    let family = |e: &Endpoint| e.address.is_ipv4() == want_v4;
    let candidates: Vec<(usize, u64)> = svc
        .endpoints
        .iter()
        .enumerate()
        .skip(range.start)
        .take(range.len())
        .filter_map(|(i, e)| {
            let weight = match sel.outcome {
                Outcome::Healthy if e.healthy && family(e) && e.weight > 0 => u64::from(e.weight),
                Outcome::Standby if e.healthy && family(e) && e.weight == 0 => 1,
                Outcome::Fallback if family(e) && sel.count > 0 => return Some((i, 0)),
                _ => return None,
            };
            Some((i, weight))
        })
        .collect();
    if sel.outcome == Outcome::Fallback {
        // Fallback `all` answers every endpoint of the region (up to the record cap).
        for (i, _) in candidates.iter().take(MAX_ANSWERS) {
            if let Some(slot) = p.get_mut(*i) {
                *slot = 1.0;
            }
        }
        return p;
    }
    let weights: Vec<u64> = candidates.iter().map(|(_, w)| *w).collect();
    let limit = svc.answers.min(MAX_ANSWERS);
    for ((i, _), q) in candidates
        .iter()
        .zip(inclusion_probabilities(&weights, limit))
    {
        if let Some(slot) = p.get_mut(*i) {
            *slot = q;
        }
    }
    p
}

/// Most candidates for which the exact inclusion probabilities are computed (2^n states).
const EXACT_CANDIDATES: usize = 16;

/// The chance that each item is among `k` drawn one after another by weight without
/// replacement (what `Service::select` does). Exact for up to `EXACT_CANDIDATES` items (a
/// walk over the subsets drawn so far); beyond that, the first-order estimate
/// `min(1, k * w / total)`.
pub fn inclusion_probabilities(weights: &[u64], k: usize) -> Vec<f64> {
    let n = weights.len();
    let total: u64 = weights.iter().sum();
    if total == 0 {
        return vec![0.0; n];
    }
    let k = k.min(weights.iter().filter(|w| **w > 0).count());
    if n > EXACT_CANDIDATES {
        return weights
            .iter()
            .map(|&w| (k as f64 * w as f64 / total as f64).min(1.0))
            .collect();
    }
    let mut reach = vec![0.0f64; 1 << n];
    if let Some(first) = reach.first_mut() {
        *first = 1.0;
    }
    let mut result = vec![0.0; n];
    for set in 0..(1usize << n) {
        let p = reach.get(set).copied().unwrap_or(0.0);
        if p == 0.0 || set.count_ones() as usize >= k {
            continue;
        }
        let taken: u64 = (0..n)
            .filter(|i| set & (1 << i) != 0)
            .map(|i| weights.get(i).copied().unwrap_or(0))
            .sum();
        let left = total - taken;
        if left == 0 {
            continue;
        }
        for (i, &w) in weights.iter().enumerate() {
            if set & (1 << i) != 0 || w == 0 {
                continue;
            }
            let q = p * w as f64 / left as f64;
            if let Some(next) = reach.get_mut(set | (1 << i)) {
                *next += q;
            }
            if let Some(r) = result.get_mut(i) {
                *r += q;
            }
        }
    }
    result
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        let _ = writeln!(s, "query     {} {}", self.name, self.qtype);
        let _ = writeln!(
            s,
            "zone      {} (table generation {})",
            self.zone.as_deref().unwrap_or("none: REFUSED"),
            self.generation
        );
        let c = &self.client;
        let _ = write!(s, "client    located by {}", c.located_by);
        if let Some(a) = c.address {
            let _ = write!(s, ": {a}");
            if let Some(p) = c.source_prefix {
                let _ = write!(s, "/{p}");
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "geoip     {} network {}: country {}, continent {}, coordinates {}{}",
            if c.geoip_found {
                "found,"
            } else {
                "not found,"
            },
            c.geoip_network.as_deref().unwrap_or("-"),
            c.country.as_deref().unwrap_or("-"),
            c.continent.as_deref().unwrap_or("-"),
            c.coords
                .map_or("-".to_string(), |[a, b]| format!("{a}, {b}")),
            if c.coords_from_centroid {
                " (country centroid)"
            } else {
                ""
            },
        );
        if let Some(svc) = &self.service {
            let _ = writeln!(
                s,
                "service   {} (policy {}, up to {} per answer)",
                svc.service, svc.policy, svc.answers
            );
            let _ = writeln!(s, "order     {}", svc.order_reason);
            for (i, r) in svc.regions.iter().enumerate() {
                let dist = r
                    .distance_km
                    .map_or(String::new(), |d| format!(" ({d} km)"));
                let ramp = if r.share < 1.0 {
                    format!(
                        " (slow start: takes {:.0}% of its answers, the rest go on)",
                        r.share * 100.0
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(s, "  {}. {}{dist}{ramp}", i + 1, r.name);
                for e in &r.endpoints {
                    let _ = writeln!(
                        s,
                        "       {:<40} {} weight {} p={:.3}{}{}",
                        e.address.to_string(),
                        if e.healthy { "up  " } else { "down" },
                        e.effective_weight,
                        e.probability,
                        if e.effective_weight == 0 && e.weight > 0 {
                            format!(" (configured {}, drained)", e.weight)
                        } else if e.effective_weight != e.weight {
                            format!(
                                " (configured {}: slow start, shedding or a weight hint)",
                                e.weight
                            )
                        } else {
                            String::new()
                        },
                        if e.family_matches {
                            ""
                        } else {
                            " (other family)"
                        },
                    );
                }
            }
            let _ = writeln!(
                s,
                "decision  {}{}",
                svc.outcome,
                svc.chosen_region
                    .as_ref()
                    .map_or(String::new(), |r| format!(" from {r}")),
            );
        }
        let _ = writeln!(s, "rcode     {}", self.rcode);
        for r in &self.answer {
            let _ = writeln!(s, "answer    {r}");
        }
        for r in &self.authority {
            let _ = writeln!(s, "authority {r}");
        }
        match self.ecs_scope {
            Some(scope) => {
                let _ = writeln!(s, "ecs scope /{scope}");
            }
            None => {
                let _ = writeln!(s, "ecs scope (no ECS in the query)");
            }
        }
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::inclusion_probabilities;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
    }

    #[test]
    fn inclusion_probabilities_match_the_draw() {
        // (weights, answers, expected chance of each being in the answer)
        let cases: &[(&[u64], usize, &[f64])] = &[
            (&[100, 100], 1, &[0.5, 0.5]),
            (&[300, 100], 1, &[0.75, 0.25]),
            (&[100, 100, 100], 3, &[1.0, 1.0, 1.0]),
            (&[100, 100], 5, &[1.0, 1.0]),
            // Two of {3, 1}: both always.
            (&[3, 1], 2, &[1.0, 1.0]),
            // Two of {2, 1, 1}: P(third in) = P(first pick is 1st or 2nd, then it) ...
            // = 1/2 * 1/2 + 1/4 * 1/3 + 1/4 (picked first) = 1/4 + 1/12 + 1/4 = 7/12.
            (&[2, 1, 1], 2, &[5.0 / 6.0, 7.0 / 12.0, 7.0 / 12.0]),
            (&[100, 0], 1, &[1.0, 0.0]),
            (&[0, 0], 1, &[0.0, 0.0]),
        ];
        for (weights, k, want) in cases {
            let got = inclusion_probabilities(weights, *k);
            assert!(close(&got, want), "{weights:?} k={k}: {got:?} != {want:?}");
            let sum: f64 = got.iter().sum();
            let drawn = (*k).min(weights.iter().filter(|w| **w > 0).count());
            assert!((sum - drawn as f64).abs() < 1e-9, "{weights:?}: sum {sum}");
        }
    }

    /// A client a Country database places at its country's centroid gets the nearest order
    /// precomputed for the country; explain still shows each region's distance, nearest first.
    #[test]
    fn a_precomputed_nearest_order_shows_distances() {
        use std::sync::Arc;

        use hickory_proto::rr::RecordType;

        use crate::geo::GeoDb;
        use crate::proto::ClientSubnet;
        use crate::routing::compile::{AllUp, compile};
        use crate::routing::select::Client;

        let zone = crate::config::testing::zone_from_text(
            r#"
origin = "n.test."
ns = ["ns1.n.test."]
[soa]
mname = "ns1.n.test."
rname = "hostmaster.n.test."
serial = 1
[region.ap]
location = [1.35, 103.82]
[region.eu]
location = [53.35, -6.26]
[region.us]
location = [39.04, -77.49]
[service.www]
policy = "nearest"
[[service.www.endpoint]]
region = "ap"
address = "192.0.2.1"
[[service.www.endpoint]]
region = "eu"
address = "192.0.2.2"
[[service.www.endpoint]]
region = "us"
address = "192.0.2.3"
"#,
            &[],
        );
        let db = GeoDb::open(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/geoip/GeoLite2-Country-Test.mmdb"
        )))
        .unwrap();
        let table = compile(&[Arc::new(zone)], Arc::new(db), &AllUp, 1).unwrap();
        let svc = &table.zones().next().unwrap().services[0];
        // 50.114.0.0/22: the US, no coordinates in a Country database.
        let client = Client {
            source: "127.0.0.1".parse().unwrap(),
            subnet: Some(ClientSubnet {
                addr: "50.114.0.0".parse().unwrap(),
                source_prefix: 22,
            }),
        };
        let view = super::service_view(svc, &table, &client, RecordType::A);
        let names: Vec<&str> = view.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["us", "eu", "ap"]);
        let d: Vec<f64> = view
            .regions
            .iter()
            .map(|r| r.distance_km.expect("a distance for every region"))
            .collect();
        assert!(d.windows(2).all(|w| w[0] <= w[1]), "{d:?}");
        assert!(
            view.order_reason.starts_with("nearest first"),
            "{}",
            view.order_reason
        );
    }
}
