//! The bounded cache of signatures over steered answer sets.
//!
//! A steered answer (a service's A or AAAA set for one client) cannot be signed when the
//! table is compiled: which endpoints go together depends on the client and on health. It is
//! signed the first time it is needed and kept here, so each distinct set is signed once per
//! validity window and key set. Reading is lock-free: a fixed array of slots, each an
//! `ArcSwapOption`, found by a hash of the set in one of two neighbouring slots (two-way set
//! associative); a miss signs and stores into an empty one of the two, else evicts one of
//! them (no lock, no list to maintain).
//! Hits, misses and evictions are counted.
//!
//! The cache belongs to one zone's signing state ([`super::zone::SigningState`]), which the
//! tables compiled from that zone's configuration share: a health change (new table, same
//! keys and window) keeps the entries; a new configuration, key set or window starts empty.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use prometheus_client::metrics::counter::Counter;

/// Default number of slots per zone.
pub const DEFAULT_CACHE_SLOTS: usize = 16384;

/// One cached RRset and its RRSIG RDATAs (one per signing key).
pub struct Entry {
    hash: u64,
    owner: Box<[u8]>,
    rtype: u16,
    ttl: u32,
    rdatas: Box<[Box<[u8]>]>,
    /// The RRSIG RDATAs.
    pub sigs: Box<[Box<[u8]>]>,
}

impl Entry {
    fn matches(&self, hash: u64, owner: &[u8], rtype: u16, ttl: u32, rdatas: &[&[u8]]) -> bool {
        self.hash == hash
            && self.rtype == rtype
            && self.ttl == ttl
            && self.rdatas.len() == rdatas.len()
            && &*self.owner == owner
            && rdatas
                .iter()
                .all(|r| self.rdatas.iter().any(|e| &**e == *r))
    }
}

/// Counters of a cache: handles to atomics (`/metrics` registers the same handles), shared
/// by every zone's cache of one kind so `/metrics` shows totals.
#[derive(Clone, Debug, Default)]
pub struct CacheCounters {
    /// Sets found signed.
    pub hits: Counter,
    /// Sets signed on demand.
    pub misses: Counter,
    /// Sets pushed out by another set that hashed to the same slot.
    pub evictions: Counter,
    /// Signing failures (random source): the answer went out unsigned.
    pub failures: Counter,
}

/// The cache itself.
pub struct SigCache {
    slots: Box<[ArcSwapOption<Entry>]>,
    hasher: foldhash::fast::FixedState,
    counters: CacheCounters,
}

impl SigCache {
    /// A cache with `slots` slots (rounded up to a power of two, at least 1).
    pub fn new(slots: usize, counters: CacheCounters) -> Self {
        let n = slots.max(1).next_power_of_two();
        Self {
            slots: (0..n).map(|_| ArcSwapOption::empty()).collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x6d65_7269_6469_616e),
            counters,
        }
    }

    /// Order-independent hash of the set: the answer order is the selector's, the signature's
    /// is canonical, and both must find the same slot.
    fn hash(&self, owner: &[u8], rtype: u16, ttl: u32, rdatas: &[&[u8]]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(owner);
        h.write_u16(rtype);
        h.write_u32(ttl);
        let mut sum = h.finish();
        for r in rdatas {
            let mut h = self.hasher.build_hasher();
            h.write(r);
            sum = sum.wrapping_add(h.finish());
        }
        sum
    }

    /// The RRSIGs over the set, from the cache or from `sign` (then cached). None when
    /// signing failed (nothing is cached then).
    pub fn get_or_sign(
        &self,
        owner: &[u8],
        rtype: u16,
        ttl: u32,
        rdatas: &[&[u8]],
        sign: impl FnOnce() -> Option<Vec<Box<[u8]>>>,
    ) -> Option<Arc<Entry>> {
        let hash = self.hash(owner, rtype, ttl, rdatas);
        // Two-way set associative: a set may live in its slot or the slot's neighbour, so
        // two sets whose hashes meet do not push each other out on every query.
        let mask = self.slots.len() - 1;
        let first = usize::try_from(hash).unwrap_or(0) & mask;
        let second = (first ^ 1) & mask;
        let slot_a = self.slots.get(first)?;
        let slot_b = self.slots.get(second)?;
        let current_a = slot_a.load_full();
        if let Some(e) = &current_a {
            if e.matches(hash, owner, rtype, ttl, rdatas) {
                self.counters.hits.inc();
                return current_a;
            }
        }
        let current_b = if second == first {
            None
        } else {
            slot_b.load_full()
        };
        if let Some(e) = &current_b {
            if e.matches(hash, owner, rtype, ttl, rdatas) {
                self.counters.hits.inc();
                return current_b;
            }
        }
        self.counters.misses.inc();
        let Some(sigs) = sign() else {
            self.counters.failures.inc();
            return None;
        };
        let entry = Arc::new(Entry {
            hash,
            owner: owner.into(),
            rtype,
            ttl,
            rdatas: rdatas.iter().map(|r| Box::<[u8]>::from(*r)).collect(),
            sigs: sigs.into_boxed_slice(),
        });
        // An empty way first; else a way picked by a hash bit the index did not use.
        let (slot, evicted) = match (&current_a, &current_b) {
            (None, _) => (slot_a, false),
            (Some(_), None) if second != first => (slot_b, false),
            _ if second != first && hash >> 63 == 1 => (slot_b, true),
            _ => (slot_a, true),
        };
        if evicted {
            self.counters.evictions.inc();
        }
        slot.store(Some(Arc::clone(&entry)));
        Some(entry)
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sigs(tag: u8) -> Option<Vec<Box<[u8]>>> {
        Some(vec![vec![tag].into_boxed_slice()])
    }

    #[test]
    fn signs_once_per_set_in_any_order_and_counts() {
        let counters = CacheCounters::default();
        let cache = SigCache::new(64, counters.clone());
        let (a, b): (&[u8], &[u8]) = (&[192, 0, 2, 1], &[192, 0, 2, 2]);
        let first = cache.get_or_sign(b"\x03www\x00", 1, 30, &[a, b], || sigs(1));
        let again = cache.get_or_sign(b"\x03www\x00", 1, 30, &[b, a], || panic!("signed twice"));
        assert_eq!(first.map(|e| e.sigs.clone()), again.map(|e| e.sigs.clone()));
        // Another set, TTL or type is another entry.
        let other = cache.get_or_sign(b"\x03www\x00", 1, 60, &[a, b], || sigs(2));
        assert_eq!(
            other.map(|e| e.sigs.clone()),
            sigs(2).map(Vec::into_boxed_slice)
        );
        assert_eq!(counters.hits.get(), 1);
        assert_eq!(counters.misses.get(), 2);
    }

    #[test]
    fn names_that_share_a_slot_do_not_push_each_other_out() {
        // 1,000 names asked over and over (the repeated-NXDOMAIN benchmark): with one way per
        // slot a quarter of them collided and missed on every pass.
        let counters = CacheCounters::default();
        let cache = SigCache::new(4096, counters.clone());
        let names: Vec<Vec<u8>> = (0..1000u32)
            .map(|i| format!("\x05n{i:04}\x00").into_bytes())
            .collect();
        for _ in 0..3 {
            for name in &names {
                let _ = cache.get_or_sign(name, 47, 30, &[], || sigs(1));
            }
        }
        let (hits, misses) = (counters.hits.get(), counters.misses.get());
        assert_eq!(hits + misses, 3000);
        // First pass: 1,000 misses; the next two miss only where three names share a set
        // (about 5 % a pass here; direct-mapped, about 24 %).
        assert!(
            misses < 1000 + 120,
            "{misses} misses in 3 passes over 1,000 names"
        );
    }

    #[test]
    fn a_full_slot_evicts_and_a_failure_caches_nothing() {
        let counters = CacheCounters::default();
        let cache = SigCache::new(1, counters.clone());
        let a: &[u8] = &[192, 0, 2, 1];
        let b: &[u8] = &[192, 0, 2, 2];
        assert!(cache.get_or_sign(b"\x00", 1, 30, &[a], || None).is_none());
        assert_eq!(counters.failures.get(), 1);
        let _ = cache.get_or_sign(b"\x00", 1, 30, &[a], || sigs(1));
        let _ = cache.get_or_sign(b"\x00", 1, 30, &[b], || sigs(2));
        assert_eq!(counters.evictions.get(), 1);
        let _ = cache.get_or_sign(b"\x00", 1, 30, &[a], || sigs(3));
        assert_eq!(counters.evictions.get(), 2);
        assert_eq!(counters.hits.get(), 0);
        assert_eq!(cache.capacity(), 1);
    }
}
