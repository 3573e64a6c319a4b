//! The bounded cache of signatures over steered answer sets.
//!
//! A steered answer (a service's A or AAAA set for one client) cannot be signed when the
//! table is compiled: which endpoints go together depends on the client and on health. It is
//! signed the first time it is needed and kept here, so each distinct set is signed once per
//! validity window and key set. Reading is lock-free: a fixed array of slots, each an
//! `ArcSwapOption`, found by a hash of the set; a miss signs and stores into its slot,
//! evicting whatever set lived there (a direct-mapped cache: no lock, no list to maintain).
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
pub const DEFAULT_CACHE_SLOTS: usize = 4096;

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
        let slot = self
            .slots
            .get(usize::try_from(hash).unwrap_or(0) & (self.slots.len() - 1))?;
        let current = slot.load_full();
        if let Some(e) = &current {
            if e.matches(hash, owner, rtype, ttl, rdatas) {
                self.counters.hits.inc();
                return current;
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
        if current.is_some() {
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
