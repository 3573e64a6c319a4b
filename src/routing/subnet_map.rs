//! The `geo.subnet` overrides of one service, compiled into a table that answers, for a client
//! address, which override decides (if any) and the ECS scope that decision holds for.
//!
//! Owns the scope rule for overrides (RFC 7871 §7.2.1): the scope is the shortest prefix around
//! the client address on which the decision is the same for every address, so a resolver that
//! caches the answer for that prefix never hands it to a client that should get another one.
//! Nested overrides are the hard case: with `10.0.0.0/8` and `10.1.0.0/16` deciding differently,
//! `10.2.3.0` may only claim `10.2.0.0/15`, and `10.0.0.0` only `10.0.0.0/16`.
//!
//! Built once per compile (allocates, sorts); [`SubnetMap::lookup`] is on the query path: a
//! binary search and a few bit operations, never an allocation, a lock or a panic.
//!
//! The table cuts each family's address space at every override boundary into elementary
//! intervals, each decided by its longest matching override or by GeoIP. Neighbouring intervals
//! that decide the same (the same region order; GeoIP counts as one decision unless the policy's
//! GeoIP tables can only give one order) form a run, and each interval stores its run's bounds.
//! The scope is then the shortest prefix around the address that stays inside the run. Where
//! GeoIP decides, the caller also keeps the scope within the GeoIP network (see
//! [`SubnetMatch::geo_scope`]): runs cannot see GeoIP's own boundaries.

use std::net::IpAddr;

use ipnet::IpNet;

use super::select::Order;

/// One `geo.subnet` entry: the network and the region order it gives.
pub type Override = (IpNet, Order);

/// Addresses as 128-bit keys, IPv4 in the top 32 bits (so prefixes of both families are the
/// leading bits of the key and one piece of arithmetic serves both).
type Key = u128;

/// An elementary interval of one family's address space.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Interval {
    /// First key of the interval (the next interval's start ends it).
    start: Key,
    /// First key of the run of same-decision intervals this one belongs to.
    run_start: Key,
    /// Last key of that run.
    run_end: Key,
    /// The override deciding here (index into [`SubnetMap::overrides`]); `None`: GeoIP decides.
    entry: Option<u32>,
}

/// What the table says about one client address.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SubnetMatch<'m> {
    /// The override that decides, if one does.
    pub entry: Option<&'m Override>,
    /// The shortest prefix around the address inside which every address gets this decision
    /// (as far as overrides can tell; see [`SubnetMatch::geo_scope`] when GeoIP decides).
    pub scope: u8,
    /// True when GeoIP, not an override, decides and the GeoIP tables can give different
    /// orders: the scope must then also stay inside the GeoIP network.
    geo_dependent: bool,
}

impl SubnetMatch<'_> {
    /// The scope of a decision GeoIP made from a network of `geo_prefix` bits: the longer of
    /// the two prefixes around the address, which lies inside both the run and the GeoIP
    /// network. When the GeoIP tables cannot change the order, the network does not matter.
    pub fn geo_scope(&self, geo_prefix: u8) -> u8 {
        if self.geo_dependent {
            self.scope.max(geo_prefix)
        } else {
            self.scope
        }
    }
}

/// The compiled overrides of one service, both families (compared and hashed: equal maps are
/// shared between services, see `compile::Shared`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubnetMap {
    /// The overrides, longest prefix first (for explain and status).
    overrides: Vec<Override>,
    v4: Vec<Interval>,
    v6: Vec<Interval>,
    /// GeoIP decisions can differ from each other (the policy has country/continent entries
    /// that give an order other than the default).
    geo_dependent: bool,
}

/// Width in bits of an address family and the key of an address.
fn key(addr: IpAddr) -> (Key, u8) {
    match addr {
        IpAddr::V4(a) => (Key::from(u32::from(a)) << 96, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

/// First and last key of a network.
fn bounds(net: &IpNet) -> (Key, Key) {
    let (first, _) = key(net.network());
    // The host bits: all but the prefix (none for a /128).
    let host = Key::MAX
        .checked_shr(u32::from(net.prefix_len()))
        .unwrap_or(0);
    (first, first | host)
}

/// The shortest prefix around `k` that stays inside `[start, end]` (which contains `k`): long
/// enough to leave out `start - 1` and `end + 1`, the nearest keys outside.
fn prefix_within(k: Key, start: Key, end: Key) -> u8 {
    // Two keys share the first `leading_zeros(a ^ b)` bits; a prefix leaves `b` out exactly
    // when it is one bit longer than that.
    let exclude =
        |outside: Option<Key>| outside.map_or(0, |o| (k ^ o).leading_zeros().saturating_add(1));
    let bits = exclude(start.checked_sub(1)).max(exclude(end.checked_add(1)));
    u8::try_from(bits).unwrap_or(128)
}

impl SubnetMap {
    /// Compiles `overrides` (at most one per network). `geo_order` is the order every GeoIP
    /// decision gives when the policy's country and continent tables cannot give another one
    /// (then a run may span an override and the space around it that decides the same); `None`
    /// when GeoIP decisions can differ.
    pub fn new(mut overrides: Vec<Override>, geo_order: Option<&Order>) -> SubnetMap {
        // Longest first; should one network come twice, its first entry counts, as in a
        // first-match scan.
        overrides.sort_by_key(|(net, _)| (std::cmp::Reverse(net.prefix_len()), net.network()));
        overrides.dedup_by_key(|(net, _)| *net);
        let v4 = Self::intervals(&overrides, geo_order, true);
        let v6 = Self::intervals(&overrides, geo_order, false);
        SubnetMap {
            overrides,
            v4,
            v6,
            geo_dependent: geo_order.is_none(),
        }
    }

    /// The overrides, longest prefix first.
    pub fn overrides(&self) -> &[Override] {
        &self.overrides
    }

    /// The interval table of one family: elementary intervals with their deciding override,
    /// then runs of equal decisions.
    fn intervals(overrides: &[Override], geo_order: Option<&Order>, v4: bool) -> Vec<Interval> {
        // (first, last, prefix length, index), sorted so that a network comes right before the
        // networks nested in it: prefixes either nest or do not overlap.
        let mut nets: Vec<(Key, Key, u8, u32)> = overrides
            .iter()
            .enumerate()
            .filter(|(_, (net, _))| net.addr().is_ipv4() == v4)
            .filter_map(|(i, (net, _))| {
                let (first, last) = bounds(net);
                Some((first, last, net.prefix_len(), u32::try_from(i).ok()?))
            })
            .collect();
        nets.sort_by_key(|&(first, _, len, _)| (first, len));

        let mut cuts: Vec<Key> = vec![0];
        for &(first, last, _, _) in &nets {
            cuts.push(first);
            cuts.extend(last.checked_add(1));
        }
        cuts.sort_unstable();
        cuts.dedup();

        // Sweep the cuts in order with the chain of networks containing the current one
        // (outermost at the bottom): its top is the longest match.
        let mut out: Vec<Interval> = Vec::with_capacity(cuts.len());
        let mut chain: Vec<(Key, u32)> = Vec::new();
        let mut next = nets.iter().peekable();
        for &cut in &cuts {
            while chain.last().is_some_and(|&(last, _)| last < cut) {
                chain.pop();
            }
            while let Some(&&(first, last, _, i)) = next.peek() {
                if first > cut {
                    break;
                }
                chain.push((last, i));
                next.next();
            }
            let entry = chain.last().map(|&(_, i)| i);
            if out.last().is_some_and(|iv| iv.entry == entry) {
                continue;
            }
            out.push(Interval {
                start: cut,
                run_start: cut,
                run_end: Key::MAX,
                entry,
            });
        }

        // Runs: neighbours with the same order (an override's, or the one GeoIP always gives)
        // decide the same; "GeoIP decides" without a fixed order only equals itself.
        let order_of = |entry: Option<u32>| -> Option<&[u16]> {
            match entry {
                Some(i) => overrides
                    .get(usize::try_from(i).ok()?)
                    .map(|(_, order)| order.as_ref()),
                None => geo_order.map(|o| o.as_ref()),
            }
        };
        let same = |a: Option<u32>, b: Option<u32>| match (order_of(a), order_of(b)) {
            (Some(x), Some(y)) => x == y,
            (None, None) => a.is_none() && b.is_none(),
            _ => false,
        };
        let mut begin = 0;
        while begin < out.len() {
            let entry = out.get(begin).and_then(|iv| iv.entry);
            let mut end = begin + 1;
            while out.get(end).is_some_and(|iv| same(entry, iv.entry)) {
                end += 1;
            }
            let run_start = out.get(begin).map_or(0, |iv| iv.start);
            let run_end = out
                .get(end)
                .map_or(Key::MAX, |iv| iv.start.saturating_sub(1));
            for iv in out.get_mut(begin..end).into_iter().flatten() {
                iv.run_start = run_start;
                iv.run_end = run_end;
            }
            begin = end;
        }
        // IPv4 keys live in the top 32 bits: the last IPv4 address is the top of the space
        // too, so the table needs no special end for that family.
        debug_assert!(!v4 || out.iter().all(|iv| iv.start.trailing_zeros() >= 96));
        out
    }

    /// The override deciding for `addr` (if any) and the scope of the decision. Query path.
    pub fn lookup(&self, addr: IpAddr) -> SubnetMatch<'_> {
        let (k, width) = key(addr);
        let table = if width == 32 { &self.v4 } else { &self.v6 };
        // The first interval starts at 0, so the one holding `k` is the last that starts at or
        // before it.
        let at = table.partition_point(|iv| iv.start <= k).checked_sub(1);
        let Some(iv) = at.and_then(|i| table.get(i)) else {
            // Not reachable (the table covers the space); the full length never over-claims.
            return SubnetMatch {
                entry: None,
                scope: width,
                geo_dependent: self.geo_dependent,
            };
        };
        let entry = iv
            .entry
            .and_then(|i| self.overrides.get(usize::try_from(i).ok()?));
        SubnetMatch {
            entry,
            scope: prefix_within(k, iv.run_start, iv.run_end).min(width),
            geo_dependent: self.geo_dependent && entry.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(regions: &[u16]) -> Order {
        regions.to_vec().into_boxed_slice()
    }

    fn map(entries: &[(&str, &[u16])], geo: Option<&[u16]>) -> SubnetMap {
        let overrides = entries
            .iter()
            .map(|(net, o)| (net.parse().unwrap(), order(o)))
            .collect();
        SubnetMap::new(overrides, geo.map(order).as_ref())
    }

    /// (address, deciding network or None, scope)
    fn check(m: &SubnetMap, cases: &[(&str, Option<&str>, u8)]) {
        for &(addr, want_net, want_scope) in cases {
            let hit = m.lookup(addr.parse().unwrap());
            let net = hit.entry.map(|(n, _)| n.to_string());
            assert_eq!(net.as_deref(), want_net, "{addr}: deciding override");
            assert_eq!(hit.scope, want_scope, "{addr}: scope");
        }
    }

    #[test]
    fn nested_overrides_scope_excludes_the_inner_network() {
        // Issue 11: 10/8 -> [1], 10.1/16 -> [0]. GeoIP decides elsewhere (not fixed).
        let m = map(&[("10.0.0.0/8", &[1]), ("10.1.0.0/16", &[0])], None);
        check(
            &m,
            &[
                // The largest prefix around 10.2.3.0 that misses 10.1/16: 10.2.0.0/15.
                ("10.2.3.0", Some("10.0.0.0/8"), 15),
                ("10.0.0.0", Some("10.0.0.0/8"), 16),
                ("10.0.255.255", Some("10.0.0.0/8"), 16),
                ("10.1.0.0", Some("10.1.0.0/16"), 16),
                ("10.1.200.7", Some("10.1.0.0/16"), 16),
                ("10.128.0.0", Some("10.0.0.0/8"), 9),
                ("10.4.0.0", Some("10.0.0.0/8"), 14),
                ("10.255.255.255", Some("10.0.0.0/8"), 9),
                // Outside every override: GeoIP decides; the scope only keeps 10/8 out.
                ("11.0.0.0", None, 8),
                ("9.255.255.255", None, 7),
                ("0.0.0.0", None, 5),
                ("128.0.0.0", None, 1),
            ],
        );
    }

    #[test]
    fn an_inner_override_that_decides_the_same_is_no_boundary() {
        let m = map(
            &[
                ("10.0.0.0/8", &[1, 0]),
                ("10.1.0.0/16", &[1, 0]),
                ("10.1.2.0/24", &[0, 1]),
            ],
            None,
        );
        check(
            &m,
            &[
                // 10.1/16 says what 10/8 says, but 10.1.2/24 differs: only it is cut out.
                ("10.2.0.0", Some("10.0.0.0/8"), 15),
                ("10.1.128.0", Some("10.1.0.0/16"), 17),
                ("10.1.3.0", Some("10.1.0.0/16"), 24),
                ("10.1.2.9", Some("10.1.2.0/24"), 24),
                ("10.200.0.0", Some("10.0.0.0/8"), 9),
            ],
        );
        // Without the /24 the whole /8 decides the same.
        let m = map(&[("10.0.0.0/8", &[1]), ("10.1.0.0/16", &[1])], None);
        check(&m, &[("10.1.2.3", Some("10.1.0.0/16"), 8)]);
    }

    #[test]
    fn adjacent_overrides_with_one_order_merge() {
        // Two /25 halves with the same order: the /24 is one decision (scope 24, not 25);
        // a third /24 beside them with another order stays out.
        let m = map(
            &[
                ("192.0.2.0/25", &[2]),
                ("192.0.2.128/25", &[2]),
                ("192.0.3.0/24", &[0]),
            ],
            None,
        );
        check(
            &m,
            &[
                ("192.0.2.200", Some("192.0.2.128/25"), 24),
                ("192.0.2.0", Some("192.0.2.0/25"), 24),
                ("192.0.3.1", Some("192.0.3.0/24"), 24),
            ],
        );
    }

    #[test]
    fn when_geoip_always_gives_one_order_it_merges_with_overrides_that_agree() {
        // The policy's GeoIP tables can only give [0] (no country or continent entries).
        let m = map(&[("10.0.0.0/8", &[1]), ("10.1.0.0/16", &[0])], Some(&[0]));
        check(
            &m,
            &[
                // 10.1/16 agrees with everything outside 10/8, but 10/8 is in between.
                ("10.1.0.0", Some("10.1.0.0/16"), 16),
                ("10.2.0.0", Some("10.0.0.0/8"), 15),
                ("11.0.0.0", None, 8),
                ("200.0.0.0", None, 1),
            ],
        );
        let m = map(&[("10.0.0.0/8", &[0])], Some(&[0]));
        check(
            &m,
            &[("10.1.0.0", Some("10.0.0.0/8"), 0), ("11.0.0.0", None, 0)],
        );
        assert!(!m.lookup("11.0.0.0".parse().unwrap()).geo_dependent);
    }

    #[test]
    fn geo_scope_is_the_longer_of_the_run_and_the_geoip_network() {
        let m = map(&[("2.2.3.128/25", &[1])], None);
        let hit = m.lookup("2.2.3.0".parse().unwrap());
        assert_eq!((hit.entry, hit.scope), (None, 25));
        // GeoIP's network is 2.2.3.0/24: the override cuts into it, /25 it is.
        assert_eq!(hit.geo_scope(24), 25);
        // A GeoIP network longer than the run: it bounds the decision.
        assert_eq!(hit.geo_scope(28), 28);
        let hit = m.lookup("2.2.2.0".parse().unwrap());
        assert_eq!(hit.scope, 24);
        assert_eq!(hit.geo_scope(24), 24);
    }

    #[test]
    fn ipv6_overrides_and_families_are_apart() {
        let m = map(
            &[
                ("2001:db8::/32", &[1]),
                ("2001:db8:1::/48", &[0]),
                ("10.0.0.0/8", &[1]),
            ],
            None,
        );
        check(
            &m,
            &[
                ("2001:db8:2::", Some("2001:db8::/32"), 47),
                ("2001:db8::", Some("2001:db8::/32"), 48),
                ("2001:db8:1:2::", Some("2001:db8:1::/48"), 48),
                ("2001:db8:8000::", Some("2001:db8::/32"), 33),
                ("2001:db9::", None, 32),
                ("::", None, 3),
                // The IPv4 override does not reach into IPv6 and the other way round.
                ("::a00:0", None, 3),
                ("10.1.0.0", Some("10.0.0.0/8"), 8),
            ],
        );
    }

    #[test]
    fn host_routes_and_the_ends_of_the_space() {
        let m = map(
            &[
                ("0.0.0.0/32", &[1]),
                ("255.255.255.255/32", &[1]),
                ("::/128", &[1]),
                ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", &[1]),
            ],
            None,
        );
        check(
            &m,
            &[
                ("0.0.0.0", Some("0.0.0.0/32"), 32),
                ("0.0.0.1", None, 32),
                ("255.255.255.255", Some("255.255.255.255/32"), 32),
                ("255.255.255.254", None, 32),
                ("::", Some("::/128"), 128),
                (
                    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                    Some("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"),
                    128,
                ),
                ("8000::", None, 2),
            ],
        );
        // No overrides at all: one run per family, scope 0 when GeoIP cannot differ.
        let m = map(&[], Some(&[0]));
        check(&m, &[("192.0.2.1", None, 0), ("2001:db8::1", None, 0)]);
        let m = map(&[], None);
        assert_eq!(m.lookup("192.0.2.1".parse().unwrap()).geo_scope(24), 24);
    }

    #[test]
    fn the_same_network_twice_keeps_the_first() {
        let m = map(&[("10.0.0.0/8", &[1]), ("10.0.0.0/8", &[0])], None);
        assert_eq!(m.overrides().len(), 1);
        let hit = m.lookup("10.1.2.3".parse().unwrap());
        assert_eq!(hit.entry.map(|(_, o)| o.to_vec()), Some(vec![1]));
        assert_eq!(hit.scope, 8);
    }

    #[test]
    fn a_catch_all_override_covers_its_family() {
        let m = map(&[("0.0.0.0/0", &[1]), ("192.0.2.0/24", &[0])], None);
        check(
            &m,
            &[
                ("192.0.2.9", Some("192.0.2.0/24"), 24),
                ("192.0.3.0", Some("0.0.0.0/0"), 24),
                ("10.0.0.0", Some("0.0.0.0/0"), 1),
                ("2001:db8::", None, 0),
            ],
        );
    }
}
