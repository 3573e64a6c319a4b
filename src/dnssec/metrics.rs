//! DNSSEC counters: signatures made (at compile time and on the query path) and the
//! signature caches' hits, misses and evictions.
//!
//! One process-wide set: signing state is created by the zone loader, which has no registry
//! at hand, and every zone's cache adds to the same totals. The handles are atomics taken
//! once from the families `/metrics` renders; `daemon` registers the families.

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::cache::CacheCounters;

type Labels = [(&'static str, &'static str); 1];

/// The counters.
#[derive(Debug)]
pub struct DnssecMetrics {
    signatures: Family<Labels, Counter>,
    hits: Family<Labels, Counter>,
    misses: Family<Labels, Counter>,
    evictions: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    /// Steered answer sets (A/AAAA of services).
    pub answers: CacheCounters,
    /// Proofs and answers made per name: compact denial for names that do not exist,
    /// wildcard expansions.
    pub denials: CacheCounters,
    /// Signatures made while compiling a table.
    pub signed_compile: Counter,
    /// Signatures made on the query path (cache misses).
    pub signed_query: Counter,
}

impl Default for DnssecMetrics {
    fn default() -> Self {
        let signatures = Family::<Labels, Counter>::default();
        let (hits, misses, evictions, failures) = Default::default();
        let cache = |kind: &'static str| {
            let get = |f: &Family<Labels, Counter>| f.get_or_create(&[("cache", kind)]).clone();
            CacheCounters {
                hits: get(&hits),
                misses: get(&misses),
                evictions: get(&evictions),
                failures: get(&failures),
            }
        };
        let (answers, denials) = (cache("answer"), cache("denial"));
        let signed_compile = signatures.get_or_create(&[("when", "compile")]).clone();
        let signed_query = signatures.get_or_create(&[("when", "query")]).clone();
        Self {
            signatures,
            hits,
            misses,
            evictions,
            failures,
            answers,
            denials,
            signed_compile,
            signed_query,
        }
    }
}

/// The process's counters.
pub fn metrics() -> &'static DnssecMetrics {
    static METRICS: OnceLock<DnssecMetrics> = OnceLock::new();
    METRICS.get_or_init(DnssecMetrics::default)
}

impl DnssecMetrics {
    /// Registers the counters under `meridian_dnssec_*`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "meridian_dnssec_signatures",
            "RRSIGs made, when a table is compiled and on the query path (cache misses)",
            self.signatures.clone(),
        );
        registry.register(
            "meridian_dnssec_cache_hits",
            "Signed sets served from a signature cache (answer: steered A/AAAA sets; denial: \
             per-name proofs and wildcard expansions)",
            self.hits.clone(),
        );
        registry.register(
            "meridian_dnssec_cache_misses",
            "Sets signed on the query path because the cache did not hold them",
            self.misses.clone(),
        );
        registry.register(
            "meridian_dnssec_cache_evictions",
            "Cached signed sets replaced by another set that needed the slot",
            self.evictions.clone(),
        );
        registry.register(
            "meridian_dnssec_signing_failures",
            "Answers sent without signatures because signing failed (random source)",
            self.failures.clone(),
        );
    }
}
