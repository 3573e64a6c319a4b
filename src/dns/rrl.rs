//! Response rate limiting (RRL) for UDP answers, after Knot DNS (3.2 `mod-rrl`) and BIND.
//!
//! A spoofed-source flood turns an authoritative server into an amplifier aimed at the spoofed
//! address. RRL counts the UDP responses sent per bucket, a bucket being what Knot keys on:
//! the client prefix (/24 for IPv4, /56 for IPv6), the response class (answer, NXDOMAIN,
//! NODATA, referral, error) and a name: the zone for NXDOMAIN (the zone's SOA owner in the
//! response), the root for errors, the QNAME otherwise. So a client asking for ten names gets
//! ten budgets, while a random-subdomain NXDOMAIN flood shares one per zone. Each bucket is a
//! token bucket as in Knot: `rate` tokens a second, holding at most four seconds' worth
//! ([`CAPACITY_SECONDS`]); a new bucket starts full. Past the rate a response is dropped,
//! except that every `slip`-th limited response is sent truncated (TC=1, no records), so a
//! real client behind that prefix retries over TCP, which is never limited (a TCP handshake
//! proves the source address).
//!
//! Answers (and NODATA) synthesised from a wildcard are keyed on the zone, as in Knot: the
//! response bytes do not say that a wildcard answered, so the handler says it
//! (`Responded::wildcard_zone`). Keyed on the QNAME, a flood of random names under a
//! wildcard got a fresh budget per name and was never limited. Knot's extra classes
//! (ANY, DNSSEC, large responses) are folded into the five above. Slip is a per-bucket
//! counter, not Knot's random draw, so it is exact.
//!
//! The table is a fixed array of `AtomicU64` buckets indexed by a keyed hash of the bucket
//! key, as in Knot: memory is bounded whatever the number of sources, the query path takes no
//! lock (one compare-and-swap per response), and the per-process random hash key keeps an
//! attacker from choosing keys that collide with a victim's bucket. A collision simply
//! restarts the bucket, full, for the newcomer, which errs on the side of answering.
//!
//! Owns: the bucket table, the response classification and the pass/drop/slip verdict. Must
//! never: block, allocate per query, or see TCP or API traffic (the UDP listener is its only
//! caller).

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::metrics::DnsMetrics;
use super::wire::{HEADER_LEN, MAX_NAME_LEN};

/// Default slip: every 2nd limited response goes out truncated (BIND's and NSD's default).
pub const DEFAULT_RRL_SLIP: u32 = 2;
/// Default number of buckets (Knot's `rate-limit-table-size`): 393,241 × 8 bytes ≈ 3 MiB.
pub const DEFAULT_RRL_TABLE_SIZE: usize = 393_241;
/// Highest accepted rate (responses per second per bucket).
pub const MAX_RRL_RATE: u32 = 1_000_000;
/// Highest accepted slip (the bucket keeps its slip counter in 7 bits).
pub const MAX_RRL_SLIP: u32 = 100;
/// A bucket holds this many seconds' worth of tokens (Knot's `RRL_CAPACITY`): a burst of
/// `4 × rate` passes, then `rate` a second.
pub const CAPACITY_SECONDS: u64 = 4;
/// IPv4 clients are grouped by this prefix length.
pub const IPV4_PREFIX_LEN: u8 = 24;
/// IPv6 clients are grouped by this prefix length.
pub const IPV6_PREFIX_LEN: u8 = 56;

/// RRL settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RrlConfig {
    /// Responses per second per bucket before limiting starts (1..=[`MAX_RRL_RATE`]).
    pub rate: u32,
    /// Every `slip`-th limited response is sent truncated; 0 drops them all, 1 truncates all.
    pub slip: u32,
    /// Number of buckets (at least 1).
    pub table_size: usize,
}

/// What to do with one UDP response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Under the rate: send it as it is.
    Pass,
    /// Over the rate: send nothing.
    Drop,
    /// Over the rate, but this one goes out truncated (TC=1) to invite a TCP retry.
    Slip,
}

/// The class of a response, part of its bucket key (Knot's and BIND's classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseClass {
    /// NOERROR with records in the answer section.
    Answer,
    /// NXDOMAIN: keyed on the zone, so random names share one bucket.
    NxDomain,
    /// NOERROR, no answer, authoritative (or truncated): keyed on the QNAME.
    NoData,
    /// NOERROR, no answer, not authoritative, NS in authority: keyed on the QNAME.
    Referral,
    /// Any other RCODE: keyed on the root, so garbage shares one bucket per prefix.
    Error,
}

// Bucket layout: tag:19 | second:16 | limited:7 | tokens:22.
const TOKEN_BITS: u32 = 22;
const TOKEN_MASK: u64 = (1 << TOKEN_BITS) - 1;
const LIMITED_BITS: u32 = 7;
const LIMITED_MASK: u64 = (1 << LIMITED_BITS) - 1;
const SECOND_BITS: u32 = 16;
const SECOND_MASK: u64 = (1 << SECOND_BITS) - 1;
const SECOND_SHIFT: u32 = TOKEN_BITS + LIMITED_BITS;
const TAG_SHIFT: u32 = SECOND_SHIFT + SECOND_BITS;
/// Always set in a used bucket's tag, so an empty bucket (0) never matches a key.
const TAG_USED: u64 = 1 << (63 - TAG_SHIFT);

/// The rate limiter: a fixed table of buckets, shared by every UDP worker.
pub struct Rrl {
    buckets: Box<[AtomicU64]>,
    rate: u64,
    capacity: u64,
    slip: u64,
    hasher: foldhash::quality::RandomState,
    epoch: Instant,
}

impl Rrl {
    /// A limiter with all buckets empty. Rates above [`MAX_RRL_RATE`] are clamped to it, a
    /// rate of 0 to 1, a slip above [`MAX_RRL_SLIP`] to it, and a table size of 0 to 1.
    pub fn new(config: RrlConfig) -> Self {
        let size = config.table_size.max(1);
        let rate = u64::from(config.rate.clamp(1, MAX_RRL_RATE));
        Self {
            buckets: (0..size).map(|_| AtomicU64::new(0)).collect(),
            rate,
            capacity: rate * CAPACITY_SECONDS,
            slip: u64::from(config.slip.min(MAX_RRL_SLIP)),
            hasher: foldhash::quality::RandomState::default(),
            epoch: Instant::now(),
        }
    }

    /// Counts `response` (about to go to `source`) now and says what to do with it.
    pub fn check(&self, source: IpAddr, response: &[u8]) -> Verdict {
        self.check_at(source, response, self.epoch.elapsed().as_secs())
    }

    /// Counts `response` to `source` at `second` (any monotonic second counter).
    pub fn check_at(&self, source: IpAddr, response: &[u8], second: u64) -> Verdict {
        self.check_keyed_at(source, response, None, second)
    }

    /// Like [`Rrl::check_at`] for a response that may answer from a wildcard of the zone
    /// `wildcard_zone` (`dns::handler::Responded`): an answer or NODATA so made is keyed on
    /// that zone instead of the QNAME, as Knot keys it, so random names under a wildcard
    /// share one budget per zone, as random NXDOMAIN names do.
    pub fn check_keyed_at(
        &self,
        source: IpAddr,
        response: &[u8],
        wildcard_zone: Option<u64>,
        second: u64,
    ) -> Verdict {
        let mut name = [0u8; MAX_NAME_LEN];
        let (class, len) = classify(response, &mut name);
        let hash = match (wildcard_zone, class) {
            (Some(zone), ResponseClass::Answer | ResponseClass::NoData) => {
                self.hasher.hash_one((prefix_key(source), class, zone))
            }
            _ => {
                let key = (prefix_key(source), class, name.get(..len).unwrap_or(&[]));
                self.hasher.hash_one(key)
            }
        };
        self.count(hash, second)
    }

    /// Takes a token from the bucket of `hash` at `second`.
    fn count(&self, hash: u64, second: u64) -> Verdict {
        let len = self.buckets.len() as u64;
        let Some(bucket) = usize::try_from(hash % len)
            .ok()
            .and_then(|i| self.buckets.get(i))
        else {
            return Verdict::Pass;
        };
        // The top bits of the hash tell keys sharing a bucket apart.
        let tag = (hash >> TAG_SHIFT) | TAG_USED;
        let second = second & SECOND_MASK;
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let (tokens, limited) = if current >> TAG_SHIFT == tag {
                // Refill for the seconds gone by (wrapping, capped: a bucket idle for four
                // seconds or more is full).
                let elapsed = (second.wrapping_sub(current >> SECOND_SHIFT) & SECOND_MASK)
                    .min(CAPACITY_SECONDS);
                let tokens = ((current & TOKEN_MASK) + self.rate * elapsed).min(self.capacity);
                (tokens, (current >> TOKEN_BITS) & LIMITED_MASK)
            } else {
                // New key, or another key's bucket: start full (Knot starts new buckets full).
                (self.capacity, 0)
            };
            let (tokens, limited, verdict) = if tokens > 0 {
                (tokens - 1, limited, Verdict::Pass)
            } else if self.slip == 0 {
                (0, 0, Verdict::Drop)
            } else {
                let limited = (limited + 1) % self.slip;
                let verdict = if limited == 0 {
                    Verdict::Slip
                } else {
                    Verdict::Drop
                };
                (0, limited, verdict)
            };
            let next =
                (tag << TAG_SHIFT) | (second << SECOND_SHIFT) | (limited << TOKEN_BITS) | tokens;
            match bucket.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return verdict,
                Err(seen) => current = seen,
            }
        }
    }

    /// Applies the verdict for a response to `source` that is ready in `response` (answered
    /// from a wildcard of `wildcard_zone`, if the handler says so): returns whether to send
    /// it, truncating it first for a slip, and counts what was limited.
    pub fn apply(
        &self,
        source: IpAddr,
        response: &mut Vec<u8>,
        wildcard_zone: Option<u64>,
        metrics: &DnsMetrics,
    ) -> bool {
        let second = self.epoch.elapsed().as_secs();
        match self.check_keyed_at(source, response, wildcard_zone, second) {
            Verdict::Pass => true,
            Verdict::Drop => {
                metrics.record_rrl(false);
                false
            }
            Verdict::Slip => {
                metrics.record_rrl(true);
                truncate(response);
                true
            }
        }
    }
}

/// The prefix part of a bucket key: the source's /24 or /56, tagged with the family.
fn prefix_key(source: IpAddr) -> (u8, u64) {
    match source.to_canonical() {
        IpAddr::V4(a) => (4, u64::from(u32::from(a) >> (32 - IPV4_PREFIX_LEN))),
        IpAddr::V6(a) => (6, (u128::from(a) >> (128 - IPV6_PREFIX_LEN)) as u64),
    }
}

/// Classifies a response and writes the name of its bucket key (lowercase wire form) into
/// `name`, returning the class and the name's length. A response it cannot read is an error
/// keyed on the root.
pub fn classify(response: &[u8], name: &mut [u8; MAX_NAME_LEN]) -> (ResponseClass, usize) {
    let root = |name: &mut [u8; MAX_NAME_LEN]| {
        if let Some(b) = name.first_mut() {
            *b = 0;
        }
        1
    };
    let (Some(&flags), Some(&low)) = (response.get(2), response.get(3)) else {
        return (ResponseClass::Error, root(name));
    };
    let count = |at: usize| match response.get(at..at + 2) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    };
    let (qdcount, ancount, nscount) = (count(4), count(6), count(8));
    let rcode = low & 0x0F;
    let class = match rcode {
        0 if ancount > 0 => ResponseClass::Answer,
        0 if flags & 0x04 == 0 && nscount > 0 => ResponseClass::Referral,
        0 => ResponseClass::NoData,
        3 => ResponseClass::NxDomain,
        _ => ResponseClass::Error,
    };
    if class == ResponseClass::Error || qdcount != 1 {
        return (class, root(name));
    }
    let Some((qname_len, mut at)) = read_name(response, HEADER_LEN, name) else {
        return (ResponseClass::Error, root(name));
    };
    if class != ResponseClass::NxDomain {
        return (class, qname_len);
    }
    // NXDOMAIN: the zone, i.e. the owner of the SOA in the authority section (after any
    // CNAME chain in the answer section); the root if there is none.
    at += 4;
    for _ in 0..ancount {
        let Some(next) = skip_record(response, at) else {
            return (class, root(name));
        };
        at = next;
    }
    let mut zone = [0u8; MAX_NAME_LEN];
    match read_name(response, at, &mut zone) {
        Some((len, after)) if count(after) == super::wire::qtype::SOA => {
            name.copy_from_slice(&zone);
            (class, len)
        }
        _ => (class, root(name)),
    }
}

/// Reads the (possibly compressed) name at `at` into `out`, lowercased; returns its length
/// and where the name ends in the message. The walk is bounded, so pointer loops end it.
fn read_name(msg: &[u8], at: usize, out: &mut [u8; MAX_NAME_LEN]) -> Option<(usize, usize)> {
    let mut at = at;
    let mut end = None;
    let mut len = 0usize;
    for _ in 0..(MAX_NAME_LEN + 16) {
        let label = *msg.get(at)?;
        match label & 0xC0 {
            0x00 => {
                let n = usize::from(label);
                let src = msg.get(at..at + 1 + n)?;
                let dst = out.get_mut(len..len + 1 + n)?;
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = s.to_ascii_lowercase();
                }
                len += 1 + n;
                at += 1 + n;
                if n == 0 {
                    return Some((len, end.unwrap_or(at)));
                }
            }
            0xC0 => {
                let low = *msg.get(at + 1)?;
                end.get_or_insert(at + 2);
                at = (usize::from(label & 0x3F) << 8) | usize::from(low);
            }
            _ => return None,
        }
    }
    None
}

/// Skips the resource record at `at`; returns where the next one starts.
fn skip_record(msg: &[u8], at: usize) -> Option<usize> {
    let mut scratch = [0u8; MAX_NAME_LEN];
    let (_, after) = read_name(msg, at, &mut scratch)?;
    let &[hi, lo] = msg.get(after + 8..after + 10)? else {
        return None;
    };
    let next = after + 10 + usize::from(u16::from_be_bytes([hi, lo]));
    (next <= msg.len()).then_some(next)
}

/// Turns a response into header + question with TC=1 and no records (no OPT either: the
/// client learns what it needs, that it should retry over TCP, from the TC bit).
pub fn truncate(response: &mut Vec<u8>) {
    let end = question_end(response).unwrap_or(HEADER_LEN);
    response.truncate(end);
    if let Some([_, _, flags, _, qd0, qd1, an0, an1, ns0, ns1, ar0, ar1]) =
        response.get_mut(..HEADER_LEN)
    {
        *flags |= 0x02;
        if end == HEADER_LEN {
            [*qd0, *qd1] = [0, 0];
        }
        [*an0, *an1, *ns0, *ns1, *ar0, *ar1] = [0; 6];
    }
}

/// Where the (single, uncompressed, echoed) question of a response ends, if it has one.
fn question_end(response: &[u8]) -> Option<usize> {
    let qdcount = response.get(4..6)?;
    if qdcount != [0, 1] {
        return None;
    }
    let mut at = HEADER_LEN;
    loop {
        let len = usize::from(*response.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
    let end = at + 4;
    (end <= response.len()).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limiter whose table is large enough that the few keys of a test do not share a
    /// bucket (the hash is seeded at random: with 1,024 buckets and ~16 keys, about one run in
    /// eight had two keys collide, and a colliding key takes the bucket over, as in Knot).
    /// Collisions are tested on purpose with a one-bucket table.
    fn rrl(rate: u32, slip: u32) -> Rrl {
        Rrl::new(RrlConfig {
            rate,
            slip,
            table_size: 1 << 20,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn name(n: &str) -> Vec<u8> {
        let mut p = Vec::new();
        for l in n.split('.').filter(|l| !l.is_empty()) {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.push(0);
        p
    }

    /// A response to `qname` A with `rcode`, `an` A records and, in authority, an SOA owned
    /// by `zone` (as a pointer into the question when it is a suffix of it) or an NS.
    fn response(
        qname: &str,
        rcode: u8,
        aa: bool,
        an: u16,
        authority: Option<(&str, u16)>,
    ) -> Vec<u8> {
        let ns = u16::from(authority.is_some());
        let mut r = vec![0x12, 0x34, 0x80 | if aa { 0x04 } else { 0 }, rcode, 0, 1];
        r.extend_from_slice(&an.to_be_bytes());
        r.extend_from_slice(&ns.to_be_bytes());
        r.extend_from_slice(&[0, 0]);
        let q = name(qname);
        r.extend_from_slice(&q);
        r.extend_from_slice(&[0, 1, 0, 1]);
        for i in 0..an {
            r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, i as u8]);
        }
        if let Some((owner, rtype)) = authority {
            let owner = name(owner);
            match q.windows(owner.len()).position(|w| w == owner.as_slice()) {
                Some(at) => r.extend_from_slice(&[0xC0, (12 + at) as u8]),
                None => r.extend_from_slice(&owner),
            }
            r.extend_from_slice(&rtype.to_be_bytes());
            r.extend_from_slice(&[0, 1, 0, 0, 0, 60, 0, 1, 0]);
        }
        r
    }

    fn answer(qname: &str) -> Vec<u8> {
        response(qname, 0, true, 1, None)
    }

    fn key_of(resp: &[u8]) -> (ResponseClass, Vec<u8>) {
        let mut n = [0u8; MAX_NAME_LEN];
        let (class, len) = classify(resp, &mut n);
        (class, n[..len].to_vec())
    }

    #[test]
    fn responses_are_classified_and_named_as_knot_keys_them() {
        let soa = Some(("example.test", 6));
        let cases = [
            (
                "answer",
                answer("WWW.example.test"),
                ResponseClass::Answer,
                "www.example.test",
            ),
            (
                "nodata",
                response("www.example.test", 0, true, 0, soa),
                ResponseClass::NoData,
                "www.example.test",
            ),
            (
                "referral",
                response(
                    "a.sub.example.test",
                    0,
                    false,
                    0,
                    Some(("sub.example.test", 2)),
                ),
                ResponseClass::Referral,
                "a.sub.example.test",
            ),
            (
                "nxdomain: the zone",
                response("X1.example.test", 3, true, 0, soa),
                ResponseClass::NxDomain,
                "example.test",
            ),
            (
                "nxdomain after a cname: the zone",
                response("alias.example.test", 3, true, 1, soa),
                ResponseClass::NxDomain,
                "example.test",
            ),
            (
                "nxdomain with an uncompressed SOA owner",
                response("x.example.test", 3, true, 0, Some(("other.test", 6))),
                ResponseClass::NxDomain,
                "other.test",
            ),
            (
                "nxdomain without SOA: the root",
                response("x.example.test", 3, true, 0, None),
                ResponseClass::NxDomain,
                "",
            ),
            (
                "refused: the root",
                response("x.elsewhere", 5, false, 0, None),
                ResponseClass::Error,
                "",
            ),
            ("garbage", vec![1, 2, 3], ResponseClass::Error, ""),
        ];
        for (what, resp, class, want) in cases {
            assert_eq!(key_of(&resp), (class, name(want)), "{what}");
        }
    }

    #[test]
    fn a_bucket_passes_four_seconds_of_rate_then_the_rate() {
        let r = rrl(5, 0);
        let www = answer("www.example.test");
        let at = |second| r.check_at(ip("192.0.2.1"), &www, second);
        let burst: Vec<_> = (0..22).map(|_| at(10)).collect();
        assert_eq!(&burst[..20], &[Verdict::Pass; 20]);
        assert_eq!(&burst[20..], &[Verdict::Drop; 2]);
        // One second later: five new tokens.
        let next: Vec<_> = (0..6).map(|_| at(11)).collect();
        assert_eq!(&next[..5], &[Verdict::Pass; 5]);
        assert_eq!(next[5], Verdict::Drop);
        // Idle for a long time: full again, but never more than four seconds' worth.
        let later: Vec<_> = (0..21).map(|_| at(100)).collect();
        assert_eq!(&later[..20], &[Verdict::Pass; 20]);
        assert_eq!(later[20], Verdict::Drop);
    }

    #[test]
    fn wildcard_answers_share_one_bucket_per_zone_and_prefix() {
        let r = rrl(1, 0);
        let src = ip("198.51.100.1");
        let (zone, other) = (Some(7), Some(8));
        let at = |qname: &str, zone: Option<u64>| r.check_keyed_at(src, &answer(qname), zone, 0);
        // Random names under one zone's wildcard: one budget (4 s x rate 1), then limited.
        let verdicts: Vec<_> = (0..6)
            .map(|i| at(&format!("r{i}.wild.example.test"), zone))
            .collect();
        assert_eq!(&verdicts[..4], &[Verdict::Pass; 4]);
        assert_eq!(&verdicts[4..], &[Verdict::Drop; 2]);
        // NODATA made from the wildcard shares the zone's key too (its own class).
        let nodata = response("x.wild.example.test", 0, true, 0, Some(("example.test", 6)));
        for _ in 0..4 {
            assert_eq!(r.check_keyed_at(src, &nodata, zone, 0), Verdict::Pass);
        }
        assert_eq!(r.check_keyed_at(src, &nodata, zone, 0), Verdict::Drop);
        // Another zone's wildcard, and the same names answered without a wildcard, are not
        // in that bucket.
        assert_eq!(at("r0.wild.other.test", other), Verdict::Pass);
        assert_eq!(at("r9.wild.example.test", None), Verdict::Pass);
        // NXDOMAIN keeps its own key (the zone's SOA owner) whatever the handler says.
        let nx = response("nx.example.test", 3, true, 0, Some(("example.test", 6)));
        assert_eq!(r.check_keyed_at(src, &nx, zone, 0), Verdict::Pass);
    }

    #[test]
    fn buckets_are_per_prefix_class_and_name() {
        let r = rrl(1, 0);
        let src = ip("198.51.100.1");
        let drain = |resp: &[u8], src: IpAddr| {
            for _ in 0..4 {
                assert_eq!(r.check_at(src, resp, 0), Verdict::Pass);
            }
            assert_eq!(r.check_at(src, resp, 0), Verdict::Drop);
        };
        // Ten names from one address: ten budgets (the defect: one shared budget).
        for i in 0..10 {
            drain(&answer(&format!("n{i}.example.test")), src);
        }
        // The same name from the same /24 shares; another /24 does not.
        assert_eq!(
            r.check_at(ip("198.51.100.200"), &answer("n0.example.test"), 0),
            Verdict::Drop
        );
        assert_eq!(
            r.check_at(ip("198.51.101.1"), &answer("n0.example.test"), 0),
            Verdict::Pass
        );
        // NODATA for a name is another class than its answer.
        let soa = Some(("example.test", 6));
        drain(&response("n0.example.test", 0, true, 0, soa), src);
        // NXDOMAIN for random names shares one bucket per zone.
        for i in 0..4 {
            let nx = response(&format!("rnd{i}.example.test"), 3, true, 0, soa);
            assert_eq!(r.check_at(src, &nx, 0), Verdict::Pass);
        }
        let nx = response("rnd-other.example.test", 3, true, 0, soa);
        assert_eq!(r.check_at(src, &nx, 0), Verdict::Drop);
        // IPv6: a /56 shares, the next /56 does not; a mapped IPv4 address is that address.
        let www = answer("www.example.test");
        for _ in 0..4 {
            assert_eq!(r.check_at(ip("2001:db8:0:100::1"), &www, 0), Verdict::Pass);
        }
        assert_eq!(r.check_at(ip("2001:db8:0:1ff::9"), &www, 0), Verdict::Drop);
        assert_eq!(r.check_at(ip("2001:db8:0:200::1"), &www, 0), Verdict::Pass);
        assert_eq!(
            r.check_at(ip("::ffff:198.51.100.7"), &answer("n0.example.test"), 0),
            Verdict::Drop
        );
    }

    #[test]
    fn slip_truncates_every_nth_limited_response() {
        for (slip, want) in [
            (0, [Verdict::Drop; 6]),
            (
                1,
                [Verdict::Slip; 6], // every limited response is truncated
            ),
            (
                2,
                [
                    Verdict::Drop,
                    Verdict::Slip,
                    Verdict::Drop,
                    Verdict::Slip,
                    Verdict::Drop,
                    Verdict::Slip,
                ],
            ),
            (
                3,
                [
                    Verdict::Drop,
                    Verdict::Drop,
                    Verdict::Slip,
                    Verdict::Drop,
                    Verdict::Drop,
                    Verdict::Slip,
                ],
            ),
        ] {
            let r = rrl(1, slip);
            let www = answer("www.example.test");
            for _ in 0..4 {
                assert_eq!(r.check_at(ip("203.0.113.9"), &www, 0), Verdict::Pass);
            }
            let got: Vec<_> = (0..6)
                .map(|_| r.check_at(ip("203.0.113.9"), &www, 0))
                .collect();
            assert_eq!(got, want, "slip {slip}");
        }
    }

    #[test]
    fn a_one_bucket_table_stays_correct_for_the_key_that_owns_it() {
        // Two keys in one bucket: each arrival of the other restarts it full, so neither is
        // ever limited wrongly (collisions err towards answering).
        let r = Rrl::new(RrlConfig {
            rate: 1,
            slip: 0,
            table_size: 1,
        });
        let www = answer("www.example.test");
        for _ in 0..10 {
            assert_eq!(r.check_at(ip("192.0.2.1"), &www, 0), Verdict::Pass);
            assert_eq!(r.check_at(ip("198.51.100.1"), &www, 0), Verdict::Pass);
        }
        for _ in 0..3 {
            assert_eq!(r.check_at(ip("198.51.100.1"), &www, 0), Verdict::Pass);
        }
        assert_eq!(r.check_at(ip("198.51.100.1"), &www, 0), Verdict::Drop);
    }

    #[test]
    fn concurrent_workers_never_pass_more_than_the_capacity() {
        let r = std::sync::Arc::new(rrl(1000, 0));
        let passed = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (r, passed) = (r.clone(), passed.clone());
                std::thread::spawn(move || {
                    let www = answer("www.example.test");
                    for _ in 0..5000 {
                        if r.check_at(ip("192.0.2.77"), &www, 42) == Verdict::Pass {
                            passed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(passed.load(Ordering::Relaxed), 4000);
    }

    #[test]
    fn the_largest_rate_fits_the_token_field() {
        let r = rrl(MAX_RRL_RATE, 0);
        assert!(r.capacity <= TOKEN_MASK);
        let www = answer("www.example.test");
        assert_eq!(r.check_at(ip("192.0.2.1"), &www, 0), Verdict::Pass);
    }

    #[test]
    fn truncate_keeps_header_and_question_and_sets_tc() {
        // id 0xabcd, QR AA RD, qd=1 an=1 ns=0 ar=1; question a.test. A IN; one A record; OPT.
        let mut resp = vec![0xab, 0xcd, 0x85, 0x00, 0, 1, 0, 1, 0, 0, 0, 1];
        let question = [1, b'a', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1];
        resp.extend_from_slice(&question);
        resp.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        resp.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        truncate(&mut resp);
        let mut want = vec![0xab, 0xcd, 0x87, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(&question);
        assert_eq!(resp, want);
    }

    #[test]
    fn truncate_of_a_header_only_response_keeps_the_header() {
        let mut resp = vec![0, 7, 0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        truncate(&mut resp);
        assert_eq!(resp, [0, 7, 0x82, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut short = vec![1, 2, 3];
        truncate(&mut short);
        assert_eq!(short, [1, 2, 3]);
    }
}
