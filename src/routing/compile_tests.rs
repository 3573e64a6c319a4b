//! The compiler, unit-tested on what it hands the query path: RRsets grouped per owner and
//! type, nodes marked (cuts, occlusion, wildcards, empty non-terminals), additional data
//! attached, the negative-answer SOA TTL (RFC 2308 §5), and each service's endpoints grouped
//! by region with their health. Zones come from files through the real loader.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use hickory_proto::rr::{Name, RecordType};

use super::{AllUp, EndpointHealth, EndpointState, compile, compile_service, key_wire};
use crate::config::Zone;
use crate::geo::GeoDb;
use crate::routing::select::CompiledPolicy;
use crate::routing::table::{Node, RoutingTable, ZoneTable};

const CITY_DB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/geoip/GeoIP2-City-Test.mmdb"
);

/// Loads a zone file (and, when given, its master file `z.zone`) written to a tempdir.
fn zone(toml: &str, records: Option<&str>) -> Zone {
    crate::config::testing::zone_from_text(toml, records.map(|r| ("z.zone", r)).as_slice())
}

fn table(zone: Zone) -> RoutingTable {
    let geo = Arc::new(GeoDb::open(Path::new(CITY_DB)).unwrap_or_else(|e| panic!("{e}")));
    compile(&[Arc::new(zone)], geo, &AllUp, 1).unwrap_or_else(|e| panic!("{e}"))
}

fn only_zone(table: &RoutingTable) -> &ZoneTable {
    let zones: Vec<_> = table.zones().collect();
    assert_eq!(zones.len(), 1);
    zones[0]
}

fn node<'z>(zone: &'z ZoneTable, name: &str) -> Option<&'z Node> {
    let idx = *zone
        .nodes
        .get(&key_wire(&Name::from_ascii(name).unwrap()))?;
    zone.node_list.get(idx as usize)
}

fn name_of(zone: &ZoneTable, idx: Option<u32>) -> Option<String> {
    let node = zone.node_list.get(idx? as usize)?;
    Some(super::wire_to_name(&node.name_wire).to_string())
}

fn head(ttl: u32, minimum: u32) -> String {
    format!(
        r#"
origin = "z.test."
ttl = {ttl}
ns = ["ns1.z.test."]
records_file = "z.zone"
[soa]
mname = "ns1.z.test."
rname = "hostmaster.z.test."
serial = 1
minimum = {minimum}
"#
    )
}

const RECORDS: &str = r#"
$TTL 3600
@          NS     ns1
ns1        A      192.0.2.53
www        A      192.0.2.1
WWW        A      192.0.2.2
www        A      192.0.2.1
www        TXT    "one"
www        TXT    "two"
@          MX     10 mail
@          MX     20 mx.elsewhere.test.
mail       A      192.0.2.25
mail       AAAA   2001:db8::25
a.b.c      A      192.0.2.3
*.wild     A      192.0.2.4
sub        NS     ns.sub
ns.sub     A      192.0.2.10
x.y.sub    A      192.0.2.11
alias      CNAME  WWW
"#;

/// The same RRsets again from `[[record]]`, in another letter case: the compiler merges
/// what the loader keeps apart (the master-file parser already merges within its file).
const MORE_RECORDS: &str = r#"
[[record]]
name = "Www"
type = "A"
data = ["192.0.2.2"]
"#;

#[test]
fn rrsets_are_grouped_by_owner_and_type_sorted_and_without_duplicates() {
    let toml = format!("{}{MORE_RECORDS}", head(3600, 300));
    let table = table(zone(&toml, Some(RECORDS)));
    let z = only_zone(&table);
    let www = node(z, "www.z.test.").unwrap();
    let shape: Vec<(RecordType, usize)> = www
        .rrsets
        .iter()
        .map(|r| (RecordType::from(r.rtype), r.rdata.len()))
        .collect();
    // Owner case does not split an RRset; a repeated record is kept once.
    assert_eq!(shape, [(RecordType::A, 2), (RecordType::TXT, 2)]);
    let a = &www.rrsets[0];
    let mut rdata: Vec<&[u8]> = a.rdata.iter().map(|r| &r[..]).collect();
    rdata.sort();
    assert_eq!(rdata, [[192, 0, 2, 1], [192, 0, 2, 2]]);
    assert_eq!(a.ttl, 3600);

    // The apex gets the SOA next to the NS and MX, all in type order.
    let apex = node(z, "z.test.").unwrap();
    let types: Vec<RecordType> = apex.rrsets.iter().map(|r| r.rtype.into()).collect();
    assert_eq!(types, [RecordType::NS, RecordType::SOA, RecordType::MX]);
    // `ns = [...]` and the master file's apex NS are one record.
    assert_eq!(apex.rrsets[0].rdata.len(), 1);
    assert_eq!(z.apex_soa().map(|(ttl, _)| ttl), Some(3600));

    // A CNAME keeps its target as a lowercase key for the chase.
    let alias = node(z, "alias.z.test.").unwrap();
    assert_eq!(
        alias.cname_target.as_deref(),
        Some(&key_wire(&Name::from_ascii("www.z.test.").unwrap())[..])
    );
}

/// (name, exists, has data, cut, occluded by, wildcard child)
type NodeCase = (
    &'static str,
    bool,
    bool,
    bool,
    Option<&'static str>,
    Option<&'static str>,
);

#[test]
fn nodes_mark_cuts_occlusion_wildcards_and_empty_non_terminals() {
    let table = table(zone(&head(3600, 300), Some(RECORDS)));
    let z = only_zone(&table);
    let cases: &[NodeCase] = &[
        ("z.test.", true, true, false, None, None),
        ("www.z.test.", true, true, false, None, None),
        ("c.z.test.", true, false, false, None, None),
        ("b.c.z.test.", true, false, false, None, None),
        ("a.b.c.z.test.", true, true, false, None, None),
        (
            "wild.z.test.",
            true,
            false,
            false,
            None,
            Some("*.wild.z.test."),
        ),
        ("*.wild.z.test.", true, true, false, None, None),
        ("sub.z.test.", true, true, true, None, None),
        (
            "ns.sub.z.test.",
            true,
            true,
            false,
            Some("sub.z.test."),
            None,
        ),
        (
            "y.sub.z.test.",
            true,
            false,
            false,
            Some("sub.z.test."),
            None,
        ),
        (
            "x.y.sub.z.test.",
            true,
            true,
            false,
            Some("sub.z.test."),
            None,
        ),
        ("nope.z.test.", false, false, false, None, None),
        ("x.wild.z.test.", false, false, false, None, None),
    ];
    for &(name, exists, data, cut, occluded, wildcard) in cases {
        let Some(n) = node(z, name) else {
            assert!(!exists, "{name} should exist");
            continue;
        };
        assert!(exists, "{name} should not exist");
        assert_eq!(!n.rrsets.is_empty(), data, "{name}: has data");
        assert_eq!(n.cut, cut, "{name}: cut");
        assert_eq!(
            name_of(z, n.occluded_by).as_deref(),
            occluded,
            "{name}: occluded by"
        );
        assert_eq!(
            name_of(z, n.wildcard).as_deref(),
            wildcard,
            "{name}: wildcard"
        );
    }
}

#[test]
fn in_zone_targets_get_their_addresses_as_additional_data() {
    let table = table(zone(&head(3600, 300), Some(RECORDS)));
    let z = only_zone(&table);
    let additional = |name: &str, rtype: RecordType| -> Vec<(String, RecordType)> {
        let n = node(z, name).unwrap();
        let rrset = n
            .rrsets
            .iter()
            .find(|r| r.rtype == u16::from(rtype))
            .unwrap();
        rrset
            .additional
            .iter()
            .map(|g| {
                let (node, set) = z.glue(g).unwrap();
                let owner = super::wire_to_name(&node.name_wire).to_string();
                (owner, RecordType::from(set.rtype))
            })
            .collect()
    };
    let s = |n: &str| n.to_string();
    // The out-of-zone MX target gets nothing; the in-zone one both its address RRsets.
    assert_eq!(
        additional("z.test.", RecordType::MX),
        [
            (s("mail.z.test."), RecordType::A),
            (s("mail.z.test."), RecordType::AAAA)
        ]
    );
    assert_eq!(
        additional("z.test.", RecordType::NS),
        [(s("ns1.z.test."), RecordType::A)]
    );
    // Glue below the cut goes with the delegation's NS.
    assert_eq!(
        additional("sub.z.test.", RecordType::NS),
        [(s("ns.sub.z.test."), RecordType::A)]
    );
    assert!(additional("www.z.test.", RecordType::A).is_empty());
}

#[test]
fn negative_soa_ttl_is_the_smaller_of_soa_ttl_and_minimum() {
    // (zone TTL = SOA TTL, SOA minimum, negative TTL): RFC 2308 §5.
    for (ttl, minimum, negative) in [(3600, 300, 300), (60, 300, 60), (300, 300, 300)] {
        let table = table(zone(
            &head(ttl, minimum),
            Some("$TTL 3600\nns1 A 192.0.2.53\n"),
        ));
        let z = only_zone(&table);
        assert_eq!(z.negative_soa.ttl, negative, "ttl {ttl}, minimum {minimum}");
        assert_eq!(z.negative_soa.rtype, u16::from(RecordType::SOA));
        // Same RDATA as the apex SOA, whose own TTL is untouched.
        let (apex_ttl, apex_rdata) = z.apex_soa().unwrap();
        assert_eq!(apex_ttl, ttl);
        assert_eq!(&z.negative_soa.rdata[0][..], apex_rdata);
    }
}

/// Regions a, b, c (c without endpoints); endpoints listed out of region order.
const SERVICE_ZONE: &str = r#"
origin = "z.test."
ns = ["ns1.z.test."]
[soa]
mname = "ns1.z.test."
rname = "hostmaster.z.test."
serial = 1

[region.a]
[region.b]
[region.c]

[service.www]
policy = "failover"
failover = ["b"]
[[service.www.endpoint]]
region = "b"
address = "192.0.2.21"
[[service.www.endpoint]]
region = "a"
address = "192.0.2.11"
weight = 50
[[service.www.endpoint]]
region = "b"
address = "192.0.2.22"
[[service.www.endpoint]]
region = "a"
address = "2001:db8::12"
"#;

struct Health(HashMap<IpAddr, EndpointState>);

impl EndpointHealth for Health {
    fn state(&self, _: &Name, _: &str, _: &str, address: IpAddr) -> EndpointState {
        self.0.get(&address).copied().unwrap_or(EndpointState::Up)
    }
}

#[test]
fn service_endpoints_are_grouped_into_region_ranges_in_file_order() {
    let z = zone(SERVICE_ZONE, None);
    let health = Health(HashMap::from([
        ("192.0.2.11".parse().unwrap(), EndpointState::Drain),
        ("192.0.2.22".parse().unwrap(), EndpointState::Down),
    ]));
    let svc = compile_service(&z, &z.services[0], &health);

    // Regions with endpoints, in zone order (c has none); each a range of `endpoints`.
    let regions: Vec<(&str, std::ops::Range<usize>)> = svc
        .regions
        .iter()
        .map(|r| (r.name.as_str(), r.endpoints.clone()))
        .collect();
    assert_eq!(regions, [("a", 0..2), ("b", 2..4)]);
    // (address, region index, weight, configured weight, healthy)
    let endpoints: Vec<(String, u16, u32, u32, bool)> = svc
        .endpoints
        .iter()
        .map(|e| {
            let a = e.address.to_string();
            (a, e.region, e.weight, e.configured_weight, e.healthy)
        })
        .collect();
    let s = |a: &str| a.to_string();
    assert_eq!(
        endpoints,
        [
            // Drained: no weight for new answers, the configured one kept for reports.
            (s("192.0.2.11"), 0, 0, 50, true),
            (s("2001:db8::12"), 0, 100, 100, true),
            (s("192.0.2.21"), 1, 100, 100, true),
            (s("192.0.2.22"), 1, 100, 100, false),
        ]
    );
    for (i, r) in svc.regions.iter().enumerate() {
        for e in &svc.endpoints[r.endpoints.clone()] {
            assert_eq!(
                usize::from(e.region),
                i,
                "{} in region {}",
                e.address,
                r.name
            );
        }
    }
    // The failover list first, then the other regions with endpoints in file order.
    match &svc.policy {
        CompiledPolicy::Failover(order) => assert_eq!(&order[..], [1, 0]),
        other => panic!("not failover: {other:?}"),
    }
}

/// Health beyond up/down: the compiler's weights, region shares and TTL (issue 16).
#[test]
fn slow_start_shedding_and_dynamic_ttl_are_compiled_in() {
    use super::EndpointDetail;
    use std::time::Duration;
    struct Detailed(Health, HashMap<IpAddr, EndpointDetail>);
    impl EndpointHealth for Detailed {
        fn state(&self, z: &Name, s: &str, r: &str, a: IpAddr) -> EndpointState {
            self.0.state(z, s, r, a)
        }
        fn detail(&self, _: &Name, _: &str, a: IpAddr) -> EndpointDetail {
            self.1.get(&a).copied().unwrap_or_default()
        }
    }
    let text = SERVICE_ZONE.replace(
        "failover = [\"b\"]",
        "failover = [\"b\"]\nttl = 60\nslow_start = \"10s\"\ndynamic_ttl = true\nmin_ttl = 5",
    );
    let z = zone(&text, None);
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let back = |secs| EndpointDetail {
        recovered_for: Some(Duration::from_secs(secs)),
        ..EndpointDetail::default()
    };
    let weights = |svc: &crate::routing::select::Service| -> Vec<u32> {
        svc.endpoints.iter().map(|e| e.weight).collect()
    };

    // Steady: full weights and TTL; every region takes its whole share.
    let steady = Detailed(Health(HashMap::new()), HashMap::new());
    let svc = compile_service(&z, &z.services[0], &steady);
    assert_eq!(svc.ttl, 60);
    assert!(svc.regions.iter().all(|r| r.share == 1000));

    // Region b is coming back (both its endpoints ramp, 5 s of 10): 55 % of their weight
    // and of b's answers; a ramp is a transition, so answers carry min_ttl.
    let ramping = Detailed(
        Health(HashMap::new()),
        HashMap::from([(ip("192.0.2.21"), back(5)), (ip("192.0.2.22"), back(5))]),
    );
    let svc = compile_service(&z, &z.services[0], &ramping);
    // Endpoints: a: .11 (weight 50), 2001:db8::12; b: .21, .22.
    assert_eq!(weights(&svc), [50, 100, 55, 55]);
    let share: Vec<u16> = svc.regions.iter().map(|r| r.share).collect();
    assert_eq!(share, [1000, 550]);
    assert_eq!(svc.ttl, 5);

    // Load 0.875 on .11: half its weight; shedding is a transition too.
    let loaded = Detailed(
        Health(HashMap::new()),
        HashMap::from([(
            ip("192.0.2.11"),
            EndpointDetail {
                load: Some(0.875),
                ..EndpointDetail::default()
            },
        )]),
    );
    let svc = compile_service(&z, &z.services[0], &loaded);
    assert_eq!(weights(&svc)[0], 25);
    assert_eq!(svc.ttl, 5);

    // Every IPv4 endpoint down: A answers are the fallback, and carry min_ttl.
    let down = Detailed(
        Health(HashMap::from([
            (ip("192.0.2.11"), EndpointState::Down),
            (ip("192.0.2.21"), EndpointState::Down),
            (ip("192.0.2.22"), EndpointState::Down),
        ])),
        HashMap::new(),
    );
    assert_eq!(compile_service(&z, &z.services[0], &down).ttl, 5);
}

/// Regions a, b, c with locations; services of four shapes, two of each, and one more.
const SHAPES_ZONE: &str = r#"
origin = "z.test."
ns = ["ns1.z.test."]
[soa]
mname = "ns1.z.test."
rname = "hostmaster.z.test."
serial = 1

[region.a]
location = [50.0, 8.0]
countries = ["DE"]
[region.b]
location = [40.0, -74.0]
[region.c]
location = [1.0, 103.0]
"#;

/// A service of `policy` (TOML lines) named `name` with one endpoint per region listed.
fn shaped(name: &str, policy: &str, regions: &[&str], first: u8) -> String {
    let mut out = format!("[service.{name}]\n{policy}\n");
    for (i, r) in regions.iter().enumerate() {
        out += &format!(
            "[[service.{name}.endpoint]]\nregion = \"{r}\"\naddress = \"192.0.2.{}\"\n",
            usize::from(first) + i
        );
    }
    out
}

/// The orders of two compiled policies are the same (whether or not they are shared).
fn same_orders(a: &CompiledPolicy, b: &CompiledPolicy) -> bool {
    match (a, b) {
        (CompiledPolicy::Geo(a), CompiledPolicy::Geo(b)) => a == b,
        (CompiledPolicy::Nearest(a), CompiledPolicy::Nearest(b)) => a == b,
        (CompiledPolicy::Failover(a), CompiledPolicy::Failover(b)) => a == b,
        (CompiledPolicy::Weighted, CompiledPolicy::Weighted) => true,
        _ => false,
    }
}

/// The one allocation behind a policy's orders, when it has one.
fn orders_ptr(p: &CompiledPolicy) -> Option<*const u8> {
    match p {
        CompiledPolicy::Geo(a) => Some(Arc::as_ptr(a).cast()),
        CompiledPolicy::Nearest(a) => Some(Arc::as_ptr(a).cast()),
        CompiledPolicy::Failover(a) => Some(Arc::as_ptr(a).cast()),
        CompiledPolicy::Weighted => None,
    }
}

/// Services with the same regions (same endpoint counts) and the same policy hold one region
/// list and one set of orders; a different shape gets its own; and every service, shared or
/// not, has exactly what compiling it alone gives.
#[test]
fn services_of_one_shape_share_region_lists_and_orders() {
    let geo = "policy = \"geo\"\ngeo = { country = { GB = [\"b\"] } }";
    let home = "policy = \"geo\"";
    let nearest = "policy = \"nearest\"";
    let failover = "policy = \"failover\"\nfailover = [\"b\"]";
    let mut text = SHAPES_ZONE.to_string();
    let shapes = [
        ("g", geo, &["a", "b"][..]),
        ("h", home, &["a", "b", "c"][..]),
        ("n", nearest, &["a", "b", "c"][..]),
        ("f", failover, &["a", "b"][..]),
    ];
    let mut first = 1u8;
    for (prefix, policy, regions) in shapes {
        for i in 0..2 {
            text += &shaped(&format!("{prefix}{i}"), policy, regions, first);
            first += 4;
        }
    }
    // Same policy as g0/g1 over other regions: other lists, other orders.
    text += &shaped("g2", geo, &["b", "c"], first);
    let t = table(zone(&text, None));
    let z = only_zone(&t);
    let svc = |key: &str| &z.services[z.service_index(key).unwrap()];
    for prefix in ["g", "h", "n", "f"] {
        let (a, b) = (svc(&format!("{prefix}0")), svc(&format!("{prefix}1")));
        assert!(
            Arc::ptr_eq(a.regions.as_shared(), b.regions.as_shared()),
            "{prefix}: one region list"
        );
        assert_eq!(orders_ptr(&a.policy), orders_ptr(&b.policy), "{prefix}");
        assert!(!std::ptr::eq(&a.endpoints[0], &b.endpoints[0]));
    }
    let (g0, g2) = (svc("g0"), svc("g2"));
    assert!(!Arc::ptr_eq(g0.regions.as_shared(), g2.regions.as_shared()));
    assert_ne!(orders_ptr(&g0.policy), orders_ptr(&g2.policy));
    // Lists differ only in their region names: one list per distinct (regions, counts).
    let lists: std::collections::HashSet<*const u8> = z
        .services
        .iter()
        .map(|s| Arc::as_ptr(s.regions.as_shared()).cast::<u8>())
        .collect();
    assert_eq!(lists.len(), 3, "[a b], [a b c], [b c]");

    for (i, model) in z.source.services.iter().enumerate() {
        let alone = compile_service(&z.source, model, &AllUp);
        let shared = &z.services[i];
        assert_eq!(alone.regions, shared.regions, "{}", model.key);
        assert_eq!(alone.endpoints, shared.endpoints, "{}", model.key);
        assert!(same_orders(&alone.policy, &shared.policy), "{}", model.key);
        // And what a client of every country gets.
        for (code, continent, centroid) in crate::geo::countries() {
            let loc = crate::geo::Location::at_centroid(code, continent, centroid);
            assert_eq!(
                alone.route(alone.order_at(&loc).0),
                shared.route(shared.order_at(&loc).0),
                "{} {code}",
                model.key
            );
        }
    }
}

/// A health rebuild keeps the rebuilt service's orders (they do not depend on health) and its
/// region list when the shares did not change, so rebuilding never unshares them.
#[test]
fn a_health_rebuild_keeps_the_shared_lists_and_orders() {
    let mut text = SHAPES_ZONE.to_string();
    text += &shaped("n0", "policy = \"nearest\"", &["a", "b"], 1);
    text += &shaped("n1", "policy = \"nearest\"", &["a", "b"], 5);
    let t = table(zone(&text, None));
    let key = key_wire(&Name::from_ascii("z.test.").unwrap());
    let down = Health(HashMap::from([(
        "192.0.2.1".parse().unwrap(),
        EndpointState::Down,
    )]));
    let (next, reuse) = super::rebuild_services(&t, &[(key, vec![0])], &down, 2);
    assert_eq!((reuse.services_compiled, reuse.services_reused), (1, 1));
    let (before, after) = (only_zone(&t), only_zone(&next));
    let (old, new) = (&before.services[0], &after.services[0]);
    assert!(!new.endpoints[0].healthy && old.endpoints[0].healthy);
    assert_eq!(orders_ptr(&old.policy), orders_ptr(&new.policy));
    assert!(Arc::ptr_eq(
        old.regions.as_shared(),
        new.regions.as_shared()
    ));
    // Still the list its neighbour holds.
    assert!(Arc::ptr_eq(
        new.regions.as_shared(),
        after.services[1].regions.as_shared()
    ));
}

/// A zone of `n` one-endpoint services `s0`..; service `s{heavy}` has weight 7 instead of 1.
fn many_services(n: usize, heavy: usize) -> String {
    let mut text = String::from(
        "origin = \"z.test.\"\nns = [\"ns1.z.test.\"]\n[soa]\nmname = \"ns1.z.test.\"\n\
         rname = \"hostmaster.z.test.\"\nserial = 1\n[[record]]\nname = \"ns1\"\ntype = \"A\"\n\
         data = [\"192.0.2.53\"]\n[region.eu]\n",
    );
    for i in 0..n {
        let weight = if i == heavy { 7 } else { 1 };
        text.push_str(&format!(
            "[service.s{i}]\n[[service.s{i}.endpoint]]\nregion = \"eu\"\n\
             address = \"10.0.{}.{}\"\nweight = {weight}\n",
            i / 256,
            i % 256
        ));
    }
    text
}

#[test]
fn a_reload_of_an_edited_file_shares_every_service_it_did_not_change() {
    use crate::config::load::{Reread, reload_zone};
    use crate::routing::counters::CounterFactory;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.toml");
    std::fs::write(&path, many_services(600, usize::MAX)).unwrap();
    let first = reload_zone(&path, None, Reread::All).unwrap();
    let geo = Arc::new(GeoDb::open(Path::new(CITY_DB)).unwrap_or_else(|e| panic!("{e}")));
    let before = compile(&[Arc::clone(&first)], Arc::clone(&geo), &AllUp, 1).unwrap();

    // One service edited (s300's weight): the loader keeps the serving model of the others,
    // the compiler compiles s300 alone and shares the node tree and the untouched chunks.
    std::fs::write(&path, many_services(600, 300)).unwrap();
    let edited = reload_zone(&path, Some(&first), Reread::All).unwrap();
    let shared = |a: &Zone, b: &Zone, i: usize| Arc::ptr_eq(&a.services[i], &b.services[i]);
    assert!(!shared(&first, &edited, 300) && shared(&first, &edited, 299));
    assert_eq!(
        (0..600).filter(|&i| shared(&first, &edited, i)).count(),
        599
    );
    let mut counters = CounterFactory::detached();
    let recompiled = super::recompile_zones(
        &before,
        &[Arc::clone(&edited)],
        Arc::clone(&geo),
        &AllUp,
        2,
        &mut counters,
        &|_| false,
    )
    .unwrap();
    assert_eq!(
        (
            recompiled.reuse.services_compiled,
            recompiled.reuse.services_reused
        ),
        (1, 599)
    );
    let (old, new) = (only_zone(&before), only_zone(&recompiled.table));
    assert!(Arc::ptr_eq(&old.node_list, &new.node_list));
    assert!(Arc::ptr_eq(&new.source, &edited));
    let same = |i: usize| std::ptr::eq(old.services.get(i).unwrap(), new.services.get(i).unwrap());
    // s300 sits in the second chunk of 256: the first and third are shared.
    assert!(same(0) && same(255) && same(512) && same(599));
    assert!(!same(300));
    let weights = |z: &ZoneTable, i: usize| z.services.get(i).unwrap().endpoints[0].weight;
    assert_eq!((weights(old, 300), weights(new, 300)), (1, 7));

    // A record changed (the name server's address): the zone is compiled whole.
    std::fs::write(
        &path,
        many_services(600, 300).replace("192.0.2.53", "192.0.2.54"),
    )
    .unwrap();
    let moved = reload_zone(&path, Some(&edited), Reread::All).unwrap();
    let readdressed = super::recompile_zones(
        &recompiled.table,
        &[moved],
        Arc::clone(&geo),
        &AllUp,
        3,
        &mut counters,
        &|_| false,
    )
    .unwrap();
    assert_eq!(readdressed.reuse.services_compiled, 600);

    // A service added (or removed, renamed, moved) changes the names: compiled whole.
    let mut added = many_services(600, 300);
    added.push_str(
        "[service.extra]\n[[service.extra.endpoint]]\nregion = \"eu\"\naddress = \"10.9.9.9\"\n",
    );
    std::fs::write(&path, added).unwrap();
    let grown = reload_zone(&path, Some(&edited), Reread::All).unwrap();
    let again = super::recompile_zones(
        &recompiled.table,
        &[grown],
        geo,
        &AllUp,
        3,
        &mut counters,
        &|_| false,
    )
    .unwrap();
    assert_eq!(again.reuse.services_compiled, 601);
    assert!(!Arc::ptr_eq(
        &new.node_list,
        &only_zone(&again.table).node_list
    ));
}

#[test]
fn zones_compiled_and_recompiled_on_several_threads_keep_their_counters_and_carries() {
    use crate::routing::counters::{Outcome, TableMetrics};
    // More zones than one run of ZONES_PER_RUN: the runs are compiled on every core the
    // loader may use, each with a fork of the factory.
    const ZONES: usize = 3 * super::ZONES_PER_RUN + 5;
    let zone_text = |i: usize, regions: &[&str]| {
        let mut text = format!(
            "origin = \"z{i}.test.\"\nns = [\"ns1.z{i}.test.\"]\n[soa]\nmname = \"ns1.z{i}.test.\"\n\
             rname = \"hostmaster.z{i}.test.\"\nserial = 1\n[region.a]\n[region.b]\n\
             [service.www]\npolicy = \"failover\"\nfailover = [\"a\"]\n"
        );
        for (n, r) in regions.iter().enumerate() {
            text += &format!(
                "[[service.www.endpoint]]\nregion = \"{r}\"\naddress = \"192.0.2.{}\"\n",
                n + 1
            );
        }
        Arc::new(crate::config::testing::zone_from_text(&text, &[]))
    };
    let geo = Arc::new(GeoDb::open(Path::new(CITY_DB)).unwrap_or_else(|e| panic!("{e}")));
    let metrics = TableMetrics::default();
    let compile_with = |zones: &[Arc<Zone>], previous: Option<Arc<RoutingTable>>, g: u64| {
        let mut factory = metrics.factory(previous);
        let table = super::compile_counted(zones, Arc::clone(&geo), &AllUp, g, &mut factory)
            .unwrap_or_else(|e| panic!("{e}"));
        let table = Arc::new(table);
        metrics.publish(factory, &table);
        table
    };
    let www = |table: &RoutingTable, i: usize| {
        let key = key_wire(&Name::from_ascii(format!("z{i}.test.")).unwrap());
        let zone = table
            .zone_at(&key)
            .unwrap_or_else(|| panic!("zone {i} missing"));
        zone.services[0].clone()
    };
    let first: Vec<Arc<Zone>> = (0..ZONES).map(|i| zone_text(i, &["a"])).collect();
    let old = compile_with(&first, None, 1);
    assert_eq!(old.zones().count(), ZONES);
    for i in 0..ZONES {
        for _ in 0..=i {
            www(&old, i).counters.count(Some(0), Outcome::Healthy);
        }
    }
    // Every service gains region b: new rows, region a's counts carried from every run.
    let second: Vec<Arc<Zone>> = (0..ZONES).map(|i| zone_text(i, &["a", "b"])).collect();
    let new = compile_with(&second, Some(Arc::clone(&old)), 2);
    let count_a = |table: &RoutingTable, i: usize| -> u64 {
        let service = www(table, i);
        let a = service.regions.iter().position(|r| r.name == "a").unwrap();
        service.counters.row(a).unwrap().iter().sum()
    };
    for i in 0..ZONES {
        assert_eq!(count_a(&new, i), i as u64 + 1, "zone {i}");
    }

    // A reload through `recompile_zones`, on several threads too: the odd zones are the same
    // loaded zones (shared), the even ones lose region b again (compiled, counts carried).
    let third: Vec<Arc<Zone>> = (0..ZONES)
        .map(|i| {
            if i % 2 == 1 {
                Arc::clone(&second[i])
            } else {
                zone_text(i, &["a"])
            }
        })
        .collect();
    let mut factory = metrics.factory(Some(Arc::clone(&new)));
    let recompiled = super::recompile_zones(
        &new,
        &third,
        Arc::clone(&geo),
        &AllUp,
        3,
        &mut factory,
        &|_| false,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let evens = ZONES.div_ceil(2);
    assert_eq!(recompiled.reuse.zones_compiled, evens);
    assert_eq!(recompiled.reuse.zones_reused, ZONES - evens);
    let table = Arc::new(recompiled.table);
    metrics.publish(factory, &table);
    for i in 0..ZONES {
        let zone_of = |t: &RoutingTable| {
            let key = key_wire(&Name::from_ascii(format!("z{i}.test.")).unwrap());
            Arc::clone(t.zone_shared(&key).unwrap())
        };
        assert_eq!(
            i % 2 == 1,
            Arc::ptr_eq(&zone_of(&table), &zone_of(&new)),
            "zone {i}"
        );
        assert_eq!(count_a(&table, i), i as u64 + 1, "zone {i}");
    }
}

#[test]
fn a_stored_record_that_does_not_decode_fails_the_compile_naming_it() {
    use hickory_proto::rr::rdata::NULL;
    use hickory_proto::rr::{RData, Record};
    let mut z = zone(&head(300, 300), Some("www 300 A 192.0.2.1\n"));
    // Three bytes of "A" RDATA encode (as unknown data) and cannot decode: no loader stores
    // such a record, and a compile that met one would have served the zone without it.
    let mut records: Vec<Record> = z.records.iter().collect();
    records.push(Record::from_rdata(
        Name::from_ascii("bad.z.test.").unwrap(),
        300,
        RData::Unknown {
            code: RecordType::A,
            rdata: NULL::with(vec![1, 2, 3]),
        },
    ));
    z.records = crate::config::wire::RecordStore::new(&records).unwrap();
    let geo = Arc::new(GeoDb::open(Path::new(CITY_DB)).unwrap_or_else(|e| panic!("{e}")));
    let err = compile(&[Arc::new(z)], geo, &AllUp, 1)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("bad.z.test. A") && err.contains("does not decode"),
        "{err:?}"
    );
}
