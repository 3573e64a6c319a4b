//! A zone's signing configuration (keys and policy, from its `[dnssec]` table), the state
//! that lives as long as that configuration (signatures already made, the caches), and the
//! [`ZoneSigner`] one compiled table signs with.
//!
//! Signature windows are aligned to fixed steps of `validity - refresh`: a table compiled at
//! any moment inside a step uses the same inception and expiration, so recompiling for a
//! health change finds every static signature already made and signs nothing again; once a
//! step ends (less than `refresh` of validity left) the next compile re-signs everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::cache::{DEFAULT_CACHE_SLOTS, Entry, SigCache};
use super::key::{ZoneKey, canonical_name};
use super::metrics::metrics;
use super::sign::{
    TYPE_CDNSKEY, TYPE_CDS, TYPE_DNSKEY, TYPE_NSEC, TYPE_NXNAME, TYPE_RRSIG, Validity, nsec_rdata,
    sign_rrset, successor,
};

/// Default signature validity: 14 days.
pub const DEFAULT_VALIDITY: u64 = 14 * 86_400;
/// Default refresh threshold: signatures are renewed when less than 7 days remain.
pub const DEFAULT_REFRESH: u64 = 7 * 86_400;
/// Default inception offset: signatures start 1 hour in the past (clock skew).
pub const DEFAULT_INCEPTION_OFFSET: u64 = 3600;
/// Where a signed zone's serial offset counts from ([`ZoneDnssec::serial`]): 2026-01-01
/// 00:00:00 UTC. Small offsets keep the jump when signing is turned on well below 2^31, so a
/// secondary still sees it as a higher serial.
pub const SERIAL_EPOCH: u64 = 1_767_225_600;
/// Default TTL of DNSKEY, CDS and CDNSKEY.
pub const DEFAULT_DNSKEY_TTL: u32 = 3600;

/// How long signatures last and when they are renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigningPolicy {
    /// Seconds from a window's start to expiration.
    pub validity: u64,
    /// Renew when less than this remains (seconds).
    pub refresh: u64,
    /// Inception this long before the window's start (seconds).
    pub inception_offset: u64,
    /// TTL of DNSKEY, CDS and CDNSKEY.
    pub dnskey_ttl: u32,
    /// Slots of each signature cache.
    pub cache_slots: usize,
}

impl Default for SigningPolicy {
    fn default() -> Self {
        Self {
            validity: DEFAULT_VALIDITY,
            refresh: DEFAULT_REFRESH,
            inception_offset: DEFAULT_INCEPTION_OFFSET,
            dnskey_ttl: DEFAULT_DNSKEY_TTL,
            cache_slots: DEFAULT_CACHE_SLOTS,
        }
    }
}

impl SigningPolicy {
    fn step(&self) -> u64 {
        self.validity.saturating_sub(self.refresh).max(1)
    }

    /// When the signature window holding `now` started.
    fn window_start(&self, now: u64) -> u64 {
        now / self.step() * self.step()
    }

    /// The validity of signatures made at `now`, and when they need renewing.
    pub fn window(&self, now: u64) -> (Validity, u64) {
        let start = self.window_start(now);
        let validity = Validity {
            inception: start.saturating_sub(self.inception_offset) as u32,
            expiration: start.saturating_add(self.validity) as u32,
        };
        (validity, start + self.step())
    }
}

/// A zone's `[dnssec]`, validated: its keys (timing applied) and policy.
#[derive(Clone, Debug)]
pub struct ZoneDnssec {
    /// Every configured key, published or not.
    pub keys: Vec<Arc<ZoneKey>>,
    /// Signature lifetimes.
    pub policy: SigningPolicy,
    /// Signatures and caches shared by the tables compiled from this configuration.
    pub state: Arc<SigningState>,
}

/// Which configured keys do what at one moment.
#[derive(Clone, Debug, Default)]
pub struct KeyRoles {
    /// Published in the DNSKEY RRset.
    pub published: Vec<Arc<ZoneKey>>,
    /// Sign the DNSKEY RRset (active KSKs; active ZSKs when no KSK is active).
    pub dnskey_signers: Vec<Arc<ZoneKey>>,
    /// Sign everything else (active ZSKs; active KSKs when no ZSK is active: a CSK).
    pub zone_signers: Vec<Arc<ZoneKey>>,
    /// KSKs the parent should have DS records for: CDS and CDNSKEY.
    pub parent: Vec<Arc<ZoneKey>>,
}

impl ZoneDnssec {
    /// A configuration over `keys` with `policy` and fresh state.
    pub fn new(keys: Vec<Arc<ZoneKey>>, policy: SigningPolicy) -> Self {
        Self {
            keys,
            policy,
            state: Arc::new(SigningState::default()),
        }
    }

    /// The keys' roles at `now`.
    pub fn roles(&self, now: u64) -> KeyRoles {
        let published: Vec<_> = self
            .keys
            .iter()
            .filter(|k| k.timing.is_published(now))
            .cloned()
            .collect();
        let active = |ksk: bool| -> Vec<Arc<ZoneKey>> {
            self.keys
                .iter()
                .filter(|k| k.timing.is_active(now) && k.is_ksk() == ksk)
                .cloned()
                .collect()
        };
        let (ksks, zsks) = (active(true), active(false));
        let parent = self
            .keys
            .iter()
            .filter(|k| k.is_ksk() && k.timing.is_active(now))
            .cloned()
            .collect();
        KeyRoles {
            published,
            dnskey_signers: if ksks.is_empty() {
                zsks.clone()
            } else {
                ksks.clone()
            },
            zone_signers: if zsks.is_empty() { ksks } else { zsks },
            parent,
        }
    }

    /// The next moment a compiled table's signing goes stale: a signature window ends or a
    /// key changes state.
    pub fn next_event(&self, now: u64) -> u64 {
        let (_, refresh) = self.policy.window(now);
        self.keys
            .iter()
            .filter_map(|k| k.timing.next_event(now))
            .fold(refresh, u64::min)
    }

    /// When the signed zone's content last changed by itself, as of `now`: the start of the
    /// current signature window, or a key's later publish, activate, retire or remove time.
    /// Every nameserver with the same configuration computes the same moment.
    pub fn signing_time(&self, now: u64) -> u64 {
        let start = self.policy.window_start(now);
        self.keys
            .iter()
            .filter_map(|k| k.timing.last_event(now))
            .fold(start, u64::max)
    }

    /// The SOA serial a table compiled at `now` serves: the configured serial plus the seconds
    /// from [`SERIAL_EPOCH`] to [`Self::signing_time`] (RFC 1982 arithmetic). Re-signing
    /// changes the zone's signatures (and a key event its DNSKEY set) without an edit of the
    /// zone file, and a secondary only transfers again when the serial rises: without this it
    /// would serve the old signatures until they expired. Keys change state at whole seconds,
    /// so every state of the signed zone has its own serial; it rises with every window, key
    /// event and raise of the configured serial, and is the same on every nameserver.
    pub fn serial(&self, configured: u32, now: u64) -> u32 {
        let since = self.signing_time(now).wrapping_sub(SERIAL_EPOCH);
        // Modulo 2^32, as serials are: 2^31 seconds is 68 years of windows.
        configured.wrapping_add(since as u32)
    }

    /// DNSKEY, CDS and CDNSKEY records for the apex at `now`, to be served like any record.
    pub fn apex_records(&self, origin: &Name, now: u64) -> Vec<Record> {
        let roles = self.roles(now);
        let ttl = self.policy.dnskey_ttl;
        let record = |rtype: u16, rdata: Vec<u8>| {
            Record::from_rdata(
                origin.clone(),
                ttl,
                RData::Unknown {
                    code: RecordType::from(rtype),
                    rdata: NULL::with(rdata),
                },
            )
        };
        let mut out: Vec<Record> = roles
            .published
            .iter()
            .map(|k| record(TYPE_DNSKEY, k.dnskey_rdata()))
            .collect();
        for k in &roles.parent {
            out.push(record(TYPE_CDS, k.ds_rdata()));
            out.push(record(TYPE_CDNSKEY, k.dnskey_rdata()));
        }
        out
    }

    /// The signer of a table compiled at `now` for zone `origin`, whose denial TTL is
    /// `nsec_ttl`; None when no key is active (the loader rejects such a configuration at
    /// load time; a key that retires later makes the zone go unsigned, and is logged).
    pub fn signer(&self, origin: &Name, nsec_ttl: u32, now: u64) -> Option<ZoneSigner> {
        let roles = self.roles(now);
        if roles.zone_signers.is_empty() {
            return None;
        }
        let (validity, _) = self.policy.window(now);
        let epoch = Epoch {
            validity,
            zone: roles.zone_signers.iter().map(|k| k.tag).collect(),
            dnskey: roles.dnskey_signers.iter().map(|k| k.tag).collect(),
        };
        let (answers, denials, compile) = self.state.begin(&epoch, self.policy.cache_slots);
        Some(ZoneSigner {
            apex: canonical_name(origin).into_boxed_slice(),
            zone_keys: roles.zone_signers,
            dnskey_keys: roles.dnskey_signers,
            validity,
            nsec_ttl,
            answers,
            denials,
            state: Arc::clone(&self.state),
            compile,
        })
    }
}

/// What the signatures of one compile depend on besides the data.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Epoch {
    validity: Validity,
    zone: Vec<u16>,
    dnskey: Vec<u16>,
}

/// RRSIG RDATAs over one RRset, one per signing key, shared by the tables that serve them.
pub type Rrsigs = Arc<[Box<[u8]>]>;

/// The static signatures made so far, keyed by (owner, type, TTL, sorted RDATAs).
type StoreKey = (Box<[u8]>, u16, u32, Vec<Box<[u8]>>);

#[derive(Default)]
struct Store {
    epoch: Option<Epoch>,
    compiles: u64,
    /// Signatures and the compile that last used them.
    sigs: HashMap<StoreKey, (u64, Rrsigs)>,
    answers: Option<Arc<SigCache>>,
    denials: Option<Arc<SigCache>>,
}

/// State that outlives one table: static signatures (reused by the next compile in the same
/// epoch) and the caches of signatures made on the query path.
#[derive(Default)]
pub struct SigningState {
    store: Mutex<Store>,
}

impl std::fmt::Debug for SigningState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningState")
    }
}

impl SigningState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a compile in `epoch`: a new epoch forgets every signature and empties the caches.
    fn begin(&self, epoch: &Epoch, slots: usize) -> (Arc<SigCache>, Arc<SigCache>, u64) {
        let mut store = self.lock();
        if store.epoch.as_ref() != Some(epoch) {
            store.epoch = Some(epoch.clone());
            store.sigs.clear();
            store.answers = None;
            store.denials = None;
        }
        store.compiles += 1;
        let m = metrics();
        let answers = Arc::clone(
            store
                .answers
                .get_or_insert_with(|| Arc::new(SigCache::new(slots, m.answers.clone()))),
        );
        let denials = Arc::clone(
            store
                .denials
                .get_or_insert_with(|| Arc::new(SigCache::new(slots, m.denials.clone()))),
        );
        (answers, denials, store.compiles)
    }

    /// Number of static signature sets held (for tests and `check-config`).
    pub fn stored(&self) -> usize {
        self.lock().sigs.len()
    }
}

/// Signs for one compiled table of one zone.
pub struct ZoneSigner {
    /// The zone apex, canonical wire form (the RRSIG signer name).
    pub apex: Box<[u8]>,
    zone_keys: Vec<Arc<ZoneKey>>,
    dnskey_keys: Vec<Arc<ZoneKey>>,
    /// Validity of every signature of this table.
    pub validity: Validity,
    /// TTL of NSEC records (RFC 9077: the SOA's negative TTL).
    pub nsec_ttl: u32,
    answers: Arc<SigCache>,
    denials: Arc<SigCache>,
    state: Arc<SigningState>,
    compile: u64,
}

impl std::fmt::Debug for ZoneSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneSigner")
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

/// A denial-of-existence NSEC and its signatures.
#[derive(Clone, Debug)]
pub struct SignedNsec {
    /// NSEC RDATA.
    pub rdata: Box<[u8]>,
    /// RRSIG RDATAs over it.
    pub sigs: Rrsigs,
}

impl ZoneSigner {
    fn keys(&self, rtype: u16) -> &[Arc<ZoneKey>] {
        if rtype == TYPE_DNSKEY {
            &self.dnskey_keys
        } else {
            &self.zone_keys
        }
    }

    /// Signs now with every key for `rtype`. None when a signature failed.
    pub fn sign(
        &self,
        owner: &[u8],
        rtype: u16,
        ttl: u32,
        rdatas: &[&[u8]],
    ) -> Option<Vec<Box<[u8]>>> {
        self.keys(rtype)
            .iter()
            .map(|k| {
                sign_rrset(k, &self.apex, owner, rtype, ttl, rdatas, self.validity)
                    .map(Vec::into_boxed_slice)
            })
            .collect()
    }

    /// Signatures over a static RRset (compile time): made once per epoch and reused by every
    /// table compiled in it. Empty when signing failed (the set goes out unsigned, and the
    /// failure is counted).
    pub fn sign_static(&self, owner: &[u8], rtype: u16, ttl: u32, rdatas: &[&[u8]]) -> Rrsigs {
        let mut sorted: Vec<Box<[u8]>> = rdatas.iter().map(|r| Box::<[u8]>::from(*r)).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let key: StoreKey = (owner.into(), rtype, ttl, sorted);
        if let Some((used, sigs)) = self.state.lock().sigs.get_mut(&key) {
            *used = self.compile;
            return Arc::clone(sigs);
        }
        let sigs: Rrsigs = match self.sign(owner, rtype, ttl, rdatas) {
            Some(s) => {
                metrics().signed_compile.inc_by(s.len() as u64);
                s.into()
            }
            None => {
                metrics().answers.failures.inc();
                return Arc::from(Vec::new());
            }
        };
        self.state
            .lock()
            .sigs
            .insert(key, (self.compile, Arc::clone(&sigs)));
        sigs
    }

    /// Drops the static signatures this compile did not use (their RRsets are gone).
    pub fn finish_compile(&self) {
        let compile = self.compile;
        self.state
            .lock()
            .sigs
            .retain(|_, (used, _)| *used == compile);
    }

    /// The NSEC at an existing `owner` (canonical) with data of `types` (NODATA proof and the
    /// answer to an NSEC query), signed at compile time.
    pub fn nsec_static(&self, owner: &[u8], types: &[u16]) -> SignedNsec {
        let rdata = self.nsec_rdata(owner, types);
        let sigs = self.sign_static(owner, TYPE_NSEC, self.nsec_ttl, &[&rdata]);
        SignedNsec {
            rdata: rdata.into_boxed_slice(),
            sigs,
        }
    }

    fn nsec_rdata(&self, owner: &[u8], types: &[u16]) -> Vec<u8> {
        let mut all = types.to_vec();
        all.extend([TYPE_RRSIG, TYPE_NSEC]);
        nsec_rdata(&successor(owner), &all)
    }

    /// Signatures over a steered answer set, from the answer cache or signed now (query path).
    pub fn sign_answer(
        &self,
        owner: &[u8],
        rtype: u16,
        ttl: u32,
        rdatas: &[&[u8]],
    ) -> Option<Arc<Entry>> {
        self.cached(&self.answers, owner, rtype, ttl, rdatas)
    }

    /// Signatures over a set only one query name has (a wildcard expansion), from the denial
    /// cache or signed now (query path).
    pub fn sign_per_name(
        &self,
        owner: &[u8],
        rtype: u16,
        ttl: u32,
        rdatas: &[&[u8]],
    ) -> Option<Arc<Entry>> {
        self.cached(&self.denials, owner, rtype, ttl, rdatas)
    }

    /// The set's signatures from `cache`, or signed now and counted as query-path signing.
    fn cached(
        &self,
        cache: &SigCache,
        owner: &[u8],
        rtype: u16,
        ttl: u32,
        rdatas: &[&[u8]],
    ) -> Option<Arc<Entry>> {
        cache.get_or_sign(owner, rtype, ttl, rdatas, || {
            let s = self.sign(owner, rtype, ttl, rdatas)?;
            metrics().signed_query.inc_by(s.len() as u64);
            Some(s)
        })
    }

    /// The compact denial for `qname` (canonical): NSEC `qname` -> `\000.qname` with `types`
    /// (NXNAME for a name that does not exist, RFC 9824 §3.1; the wildcard's types for a
    /// NODATA at an expanded name), signed now or taken from the denial cache. Returns the
    /// NSEC RDATA written into `rdata` (a buffer the caller reuses) and the cache entry.
    pub fn nsec_dynamic(
        &self,
        qname: &[u8],
        types: &[u16],
        rdata: &mut Vec<u8>,
    ) -> Option<Arc<Entry>> {
        rdata.clear();
        rdata.extend_from_slice(&self.nsec_rdata(qname, types));
        self.sign_per_name(qname, TYPE_NSEC, self.nsec_ttl, &[rdata])
    }

    /// The types of a compact NXDOMAIN proof.
    pub const NXNAME_TYPES: [u16; 1] = [TYPE_NXNAME];
}

#[cfg(test)]
#[path = "zone_tests.rs"]
mod tests;
