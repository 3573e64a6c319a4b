//! Response rate limiting (RRL) for UDP answers, after Knot DNS and NSD.
//!
//! A spoofed-source flood turns an authoritative server into an amplifier aimed at the spoofed
//! address. RRL counts the UDP responses sent to each client prefix (/24 for IPv4, /56 for
//! IPv6, Knot's defaults) per second; past the configured rate a response is dropped, except
//! that every `slip`-th limited response is sent truncated (TC=1, no records), so a real client
//! behind that prefix retries over TCP, which is never limited (a TCP handshake proves the
//! source address).
//!
//! The table is a fixed array of `AtomicU64` buckets indexed by a keyed hash of the prefix, as
//! in Knot: memory is bounded whatever the number of sources, the query path takes no lock
//! (one compare-and-swap per response), and the per-process random hash key keeps an attacker
//! from choosing prefixes that collide with a victim's bucket. A collision simply restarts the
//! bucket for the newcomer, which errs on the side of answering.
//!
//! Owns: the bucket table and the pass/drop/slip verdict. Must never: block, allocate per
//! query, or see TCP or API traffic (the UDP listener is its only caller).

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::wire::HEADER_LEN;
use crate::metrics::Metrics;

/// Default slip: every 2nd limited response goes out truncated (BIND's and NSD's default).
pub const DEFAULT_RRL_SLIP: u32 = 2;
/// Default number of buckets (Knot's `rate-limit-table-size`): 393,241 × 8 bytes ≈ 3 MiB.
pub const DEFAULT_RRL_TABLE_SIZE: usize = 393_241;
/// Highest accepted rate (responses per second per prefix); the counter holds 24 bits.
pub const MAX_RRL_RATE: u32 = 1_000_000;
/// IPv4 clients are grouped by this prefix length.
pub const IPV4_PREFIX_LEN: u8 = 24;
/// IPv6 clients are grouped by this prefix length.
pub const IPV6_PREFIX_LEN: u8 = 56;

/// RRL settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RrlConfig {
    /// Responses per second per prefix before limiting starts (1..=[`MAX_RRL_RATE`]).
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

const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const SECOND_BITS: u32 = 16;
const SECOND_MASK: u64 = (1 << SECOND_BITS) - 1;

/// The rate limiter: a fixed table of buckets, shared by every UDP worker.
pub struct Rrl {
    /// Each bucket packs `tag:24 | second:16 | count:24`.
    buckets: Box<[AtomicU64]>,
    rate: u64,
    slip: u64,
    hasher: foldhash::quality::RandomState,
    epoch: Instant,
}

impl Rrl {
    /// A limiter with all buckets empty. Rates above [`MAX_RRL_RATE`] are clamped to it, a
    /// rate of 0 to 1, and a table size of 0 to 1.
    pub fn new(config: RrlConfig) -> Self {
        let size = config.table_size.max(1);
        Self {
            buckets: (0..size).map(|_| AtomicU64::new(0)).collect(),
            rate: u64::from(config.rate.clamp(1, MAX_RRL_RATE)),
            slip: u64::from(config.slip),
            hasher: foldhash::quality::RandomState::default(),
            epoch: Instant::now(),
        }
    }

    /// Counts one response to `source` now and says what to do with it.
    pub fn check(&self, source: IpAddr) -> Verdict {
        self.check_at(source, self.epoch.elapsed().as_secs())
    }

    /// Counts one response to `source` at `second` (any monotonic second counter).
    pub fn check_at(&self, source: IpAddr, second: u64) -> Verdict {
        let hash = self.hasher.hash_one(prefix_key(source));
        let len = self.buckets.len() as u64;
        let Some(bucket) = usize::try_from(hash % len)
            .ok()
            .and_then(|i| self.buckets.get(i))
        else {
            return Verdict::Pass;
        };
        // The top 24 bits of the hash tell buckets shared by two prefixes apart.
        let tag = hash >> 40;
        let second = second & SECOND_MASK;
        let mut current = bucket.load(Ordering::Relaxed);
        let count = loop {
            let same = current >> 40 == tag && (current >> COUNT_BITS) & SECOND_MASK == second;
            let count = if same {
                ((current & COUNT_MAX) + 1).min(COUNT_MAX)
            } else {
                1
            };
            let next = (tag << 40) | (second << COUNT_BITS) | count;
            match bucket.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break count,
                Err(seen) => current = seen,
            }
        };
        if count <= self.rate {
            return Verdict::Pass;
        }
        let over = count - self.rate;
        if self.slip != 0 && over % self.slip == 0 {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// Applies the verdict for a response to `source` that is ready in `response`: returns
    /// whether to send it, truncating it first for a slip, and counts what was limited.
    pub fn apply(&self, source: IpAddr, response: &mut Vec<u8>, metrics: &Metrics) -> bool {
        match self.check(source) {
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

/// The bucket key of a source: its /24 or /56, tagged with the family.
fn prefix_key(source: IpAddr) -> (u8, u64) {
    match source {
        IpAddr::V4(a) => (4, u64::from(u32::from(a) >> (32 - IPV4_PREFIX_LEN))),
        IpAddr::V6(a) => (6, (u128::from(a) >> (128 - IPV6_PREFIX_LEN)) as u64),
    }
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

    fn rrl(rate: u32, slip: u32) -> Rrl {
        Rrl::new(RrlConfig {
            rate,
            slip,
            table_size: 1024,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn passes_up_to_the_rate_then_limits_within_the_second() {
        let r = rrl(5, 0);
        let verdicts: Vec<_> = (0..8).map(|_| r.check_at(ip("192.0.2.1"), 10)).collect();
        assert_eq!(&verdicts[..5], &[Verdict::Pass; 5]);
        assert_eq!(&verdicts[5..], &[Verdict::Drop; 3]);
        // The next second starts a fresh budget.
        assert_eq!(r.check_at(ip("192.0.2.1"), 11), Verdict::Pass);
    }

    #[test]
    fn addresses_in_one_prefix_share_a_budget_and_other_prefixes_do_not() {
        let r = rrl(3, 0);
        for last in 1..=3 {
            assert_eq!(
                r.check_at(ip(&format!("198.51.100.{last}")), 0),
                Verdict::Pass
            );
        }
        assert_eq!(r.check_at(ip("198.51.100.200"), 0), Verdict::Drop);
        assert_eq!(r.check_at(ip("198.51.101.1"), 0), Verdict::Pass);
        // IPv6: a /56 shares, the next /56 does not.
        for _ in 0..3 {
            assert_eq!(r.check_at(ip("2001:db8:0:100::1"), 0), Verdict::Pass);
        }
        assert_eq!(r.check_at(ip("2001:db8:0:1ff::9"), 0), Verdict::Drop);
        assert_eq!(r.check_at(ip("2001:db8:0:200::1"), 0), Verdict::Pass);
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
            assert_eq!(r.check_at(ip("203.0.113.9"), 0), Verdict::Pass);
            let got: Vec<_> = (0..6).map(|_| r.check_at(ip("203.0.113.9"), 0)).collect();
            assert_eq!(got, want, "slip {slip}");
        }
    }

    #[test]
    fn a_one_bucket_table_stays_correct_for_the_prefix_that_owns_it() {
        // Two prefixes in one bucket: each arrival of the other restarts the count, so
        // neither is ever limited wrongly (collisions err towards answering).
        let r = Rrl::new(RrlConfig {
            rate: 2,
            slip: 0,
            table_size: 1,
        });
        for _ in 0..10 {
            assert_eq!(r.check_at(ip("192.0.2.1"), 0), Verdict::Pass);
            assert_eq!(r.check_at(ip("198.51.100.1"), 0), Verdict::Pass);
        }
        assert_eq!(r.check_at(ip("198.51.100.1"), 0), Verdict::Pass);
        assert_eq!(r.check_at(ip("198.51.100.1"), 0), Verdict::Drop);
    }

    #[test]
    fn concurrent_workers_never_pass_more_than_the_rate() {
        let r = std::sync::Arc::new(rrl(1000, 0));
        let passed = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (r, passed) = (r.clone(), passed.clone());
                std::thread::spawn(move || {
                    for _ in 0..5000 {
                        if r.check_at(ip("192.0.2.77"), 42) == Verdict::Pass {
                            passed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(passed.load(Ordering::Relaxed), 1000);
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
