//! Votes from many probers in, one up/down decision per endpoint out.
//!
//! Owns: the [`HealthBook`] (latest vote per endpoint and prober, replay memory per prober
//! boot, the decided state with hysteresis) and the [`HealthView`] it produces.
//!
//! Never: checks signatures (`health::report::verify` does, before [`HealthBook::ingest`]),
//! reads a clock (every call takes `now`), does I/O, or sits on the query path: the caller
//! compiles a routing table from the view and swaps that in.
//!
//! # Decision rules
//!
//! For each endpoint, only *fresh* votes count: a vote is fresh for [`FRESH_INTERVALS`] times
//! its prober's interval after it was received, and only `up`/`down` votes count (a prober's
//! `unknown` is no vote). Among fresh votes:
//!
//! 1. each region's verdict is the majority of its probers (a tie gives that region no verdict);
//! 2. the endpoint goes **down** when more regions say down than up, and, if more than one
//!    region reports (has fresh votes, `unknown` ones included), at least
//!    [`MIN_DOWN_REGIONS`] regions say down: a single partitioned region cannot take an
//!    endpoint out, not even while the other regions' probers are still warming up;
//! 3. it goes **up** when more regions say up than down;
//! 4. anything else (ties, a lone down region among several reporting) keeps the current state.
//!
//! Right after the nameserver starts, a lone reporting region may just be the first whose
//! report got in: a `down` resting on one region waits until the book is as old as that
//! vote's freshness window (every live prober has reported by then). Without this a
//! partitioned prober that happens to report first takes endpoints down, and once the other
//! regions say up the tie keeps them down.
//!
//! When no fresh `up`/`down` vote exists, the endpoint keeps its last decided state for the
//! grace period ([`DEFAULT_GRACE`]) counted from when its last vote went stale, then becomes up:
//! losing the probers must never take endpoints out of DNS. Endpoints start up.
//!
//! # Vote order
//!
//! Which of a prober's reports is newer is decided here, on the receiver's side, never by the
//! prober's clock: a report's `sent_at` is only checked against the receiver's clock (±30 s,
//! `report::verify`), so a prober whose clock jumps back or forward within that keeps being
//! recorded, and one report from the future cannot shadow the ones after it.
//!
//! - Within one boot of a prober, the sequence number orders reports: a sequence not above the
//!   last accepted one is a replay and is rejected ([`BOOT_MEMORY`] bounds that memory).
//! - Boots are ranked by when the book first heard them: a boot never heard before is a prober
//!   process started later and supersedes every other boot of that prober. A report from a
//!   superseded boot (a delayed report of a restarted prober) is accepted but its votes are
//!   `outdated`, not recorded.
//! - Unless the newest boot has gone silent (its last report's votes are no longer fresh) while
//!   an older boot keeps reporting: the older boot takes over again. A short-lived boot whose
//!   only report arrived late therefore freezes the live process out for at most one
//!   freshness window.
//!
//! A reload of the nameserver never resets the book: [`HealthBook::set_known`] keeps the votes,
//! state and replay memory of every endpoint that remains.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::report::{EndpointKey, ProbeReport, ProberId, RejectReason, VoteState};

/// How long a vote counts, in multiples of its prober's interval.
pub const FRESH_INTERVALS: u32 = 3;
/// Regions that must agree on `down` when more than one region reports an endpoint.
pub const MIN_DOWN_REGIONS: usize = 2;
/// How long an endpoint nobody reports on keeps its last state before it is treated as up.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5 * 60);
/// How long the sequence number of a prober boot is remembered after its last report. A
/// replayed report must also pass the ±30 s `sent_at` check, so anything well over a minute
/// closes the replay window.
pub const BOOT_MEMORY: Duration = Duration::from_secs(5 * 60);

/// The decided state of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Serve it.
    Up,
    /// Leave it out of answers.
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Up => "up",
            Self::Down => "down",
        })
    }
}

#[derive(Clone, Debug)]
struct Vote {
    region: String,
    state: VoteState,
    consecutive: u32,
    latency_us: Option<u64>,
    reason: String,
    boot_id: String,
    sequence: u64,
    received: Instant,
    interval: Duration,
}

impl Vote {
    fn fresh_until(&self) -> Instant {
        self.received + self.interval.saturating_mul(FRESH_INTERVALS)
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now <= self.fresh_until()
    }
}

#[derive(Clone, Debug)]
struct EndpointBook {
    votes: BTreeMap<ProberId, Vote>,
    health: Health,
    since: Instant,
    /// When the latest `up`/`down` vote ever received stops being fresh; `None` if never heard.
    heard_until: Option<Instant>,
}

impl EndpointBook {
    fn new(now: Instant) -> Self {
        Self {
            votes: BTreeMap::new(),
            health: Health::Up,
            since: now,
            heard_until: None,
        }
    }
}

/// What the book remembers of one boot of a prober.
#[derive(Clone, Copy, Debug)]
struct BootSeq {
    /// The highest sequence accepted from this boot.
    sequence: u64,
    /// When its latest report arrived.
    seen: Instant,
    /// When the votes of its latest report stop being fresh.
    fresh_until: Instant,
    /// Receiver-side order of boots: the boot with the highest rank is the prober's current
    /// one. A boot gets the next rank when its first report arrives (or when it takes over
    /// again from a newer boot that went silent).
    rank: u64,
}

/// The boots of one prober the book remembers (for [`BOOT_MEMORY`]).
#[derive(Clone, Debug, Default)]
struct ProberBoots {
    boots: HashMap<String, BootSeq>,
    next_rank: u64,
}

impl ProberBoots {
    /// The current boot: the one ranked highest.
    fn current(&self) -> Option<&BootSeq> {
        self.boots.values().max_by_key(|b| b.rank)
    }

    fn next_rank(&mut self) -> u64 {
        let rank = self.next_rank;
        self.next_rank += 1;
        rank
    }
}

/// What [`HealthBook::ingest`] did with an accepted report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// Votes recorded.
    pub recorded: usize,
    /// Endpoints in the report this nameserver does not know (counted, ignored).
    pub unknown_endpoints: usize,
    /// Votes skipped because the report comes from a boot of the prober that a newer boot
    /// has superseded (a delayed report of a restarted prober).
    pub outdated: usize,
}

/// Fresh votes of one region for one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegionTally {
    /// The region.
    pub region: String,
    /// Fresh `up` votes.
    pub up: usize,
    /// Fresh `down` votes.
    pub down: usize,
}

/// The fresh votes behind a decision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Per region, sorted by region; only regions with at least one fresh `up`/`down` vote.
    pub regions: Vec<RegionTally>,
    /// Regions whose majority says up.
    pub up_regions: usize,
    /// Regions whose majority says down.
    pub down_regions: usize,
    /// Regions with any fresh vote, `unknown` included: a region whose probers have not yet
    /// seen `rise`/`fall` results is reporting, it just has no verdict yet.
    pub reporting_regions: usize,
}

impl Tally {
    fn verdict(&self) -> Verdict {
        if self.regions.is_empty() {
            Verdict::Silent
        } else if self.down_regions > self.up_regions
            && (self.reporting_regions <= 1 || self.down_regions >= MIN_DOWN_REGIONS)
        {
            Verdict::Down
        } else if self.up_regions > self.down_regions {
            Verdict::Up
        } else {
            Verdict::Hold
        }
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} up / {} down regions",
            self.up_regions, self.down_regions
        )?;
        for r in &self.regions {
            write!(f, "; {}: {} up {} down", r.region, r.up, r.down)?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Up,
    Down,
    Hold,
    Silent,
}

/// Why an endpoint changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The fresh votes decided it.
    Votes,
    /// Nobody reported on it for the grace period, so it went back up.
    GraceExpired,
}

/// One endpoint changing state, for logging and counting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The endpoint.
    pub key: EndpointKey,
    /// State before.
    pub from: Health,
    /// State after.
    pub to: Health,
    /// Why.
    pub cause: Cause,
    /// The fresh votes at the time.
    pub votes: Tally,
}

/// One prober's latest vote on an endpoint, for the status API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VoteStatus {
    /// The prober.
    pub prober_id: ProberId,
    /// Its region.
    pub region: String,
    /// Its rise/fall state.
    pub state: VoteState,
    /// Its current streak of identical results.
    pub consecutive: u32,
    /// Its latest check duration in microseconds.
    pub latency_us: Option<u64>,
    /// Its latest check outcome.
    pub reason: String,
    /// The boot of the prober that sent it (random per prober process start).
    pub boot_id: String,
    /// The sequence number of the report that carried it, within that boot.
    pub sequence: u64,
    /// Milliseconds since the report carrying this vote arrived.
    pub age_ms: u64,
    /// Whether the vote still counts.
    pub fresh: bool,
}

/// The decision on one endpoint and what it rests on, for the status API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointStatus {
    /// The decided state.
    pub health: Health,
    /// Milliseconds the endpoint has been in this state.
    pub for_ms: u64,
    /// The fresh votes.
    pub tally: Tally,
    /// Every prober's latest vote, fresh or not.
    pub votes: Vec<VoteStatus>,
}

/// The decided state of every known endpoint, as of one [`HealthBook::decide`] call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthView {
    health: HashMap<EndpointKey, Health>,
    status: BTreeMap<EndpointKey, EndpointStatus>,
}

impl HealthView {
    /// The decided state; endpoints the view does not know are up (fail open).
    pub fn health(&self, key: &EndpointKey) -> Health {
        self.health.get(key).copied().unwrap_or(Health::Up)
    }

    /// True unless the endpoint is decided down.
    pub fn is_up(&self, key: &EndpointKey) -> bool {
        self.health(key) == Health::Up
    }

    /// Every endpoint and its decided state, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&EndpointKey, Health)> {
        self.status.iter().map(|(k, s)| (k, s.health))
    }

    /// Number of endpoints decided down.
    pub fn down_count(&self) -> usize {
        self.health.values().filter(|h| **h == Health::Down).count()
    }

    /// Detail per endpoint (votes, ages, reasons), sorted by key.
    pub fn status(&self) -> &BTreeMap<EndpointKey, EndpointStatus> {
        &self.status
    }

    /// A stable hex SHA-256 of the decided states only (not ages or votes), so operators can
    /// check that nameservers agree: lines `zone/service/address up|down`, sorted by key.
    pub fn digest(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for (key, status) in &self.status {
            ctx.update(format!("{key} {}\n", status.health).as_bytes());
        }
        data_encoding::HEXLOWER.encode(ctx.finish().as_ref())
    }
}

/// The result of [`HealthBook::decide`].
#[derive(Clone, Debug)]
pub struct Decision {
    /// The decided state of every known endpoint.
    pub view: HealthView,
    /// Endpoints whose state changed in this call.
    pub transitions: Vec<Transition>,
}

/// The nameserver's memory of probe votes: control-plane state behind a lock or a task.
#[derive(Clone, Debug)]
pub struct HealthBook {
    endpoints: BTreeMap<EndpointKey, EndpointBook>,
    boots: HashMap<ProberId, ProberBoots>,
    grace: Duration,
    /// When the book was created (the nameserver started).
    started: Instant,
}

impl HealthBook {
    /// A book for these endpoints, all up, with the default grace period.
    pub fn new(known: impl IntoIterator<Item = EndpointKey>, now: Instant) -> Self {
        Self {
            endpoints: known
                .into_iter()
                .map(|k| (k, EndpointBook::new(now)))
                .collect(),
            boots: HashMap::new(),
            grace: DEFAULT_GRACE,
            started: now,
        }
    }

    /// Sets how long an endpoint nobody reports on keeps its state.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Replaces the set of known endpoints after a config reload: endpoints that remain keep
    /// their votes and state, new ones start up, removed ones are forgotten.
    pub fn set_known(&mut self, known: impl IntoIterator<Item = EndpointKey>, now: Instant) {
        let known: HashSet<EndpointKey> = known.into_iter().collect();
        self.endpoints.retain(|k, _| known.contains(k));
        for key in known {
            self.endpoints
                .entry(key)
                .or_insert_with(|| EndpointBook::new(now));
        }
    }

    /// Records an authenticated report's votes (ordering rules in the module docs).
    ///
    /// Rejects with [`RejectReason::Replay`], changing nothing, when the sequence number is not
    /// newer than the last accepted one for the same prober and boot. A report from a boot that
    /// a newer boot of the prober superseded is accepted but its votes are not recorded
    /// ([`IngestSummary::outdated`]). The report's `sent_at_ms` plays no part here: it was
    /// only checked against the receiver's clock (`report::verify`). The report is a full
    /// snapshot: a known endpoint it leaves out loses this prober's vote.
    pub fn ingest(
        &mut self,
        report: &ProbeReport,
        now: Instant,
    ) -> Result<IngestSummary, RejectReason> {
        let prober = self.boots.entry(report.prober_id.clone()).or_default();
        prober
            .boots
            .retain(|_, b| now.saturating_duration_since(b.seen) <= BOOT_MEMORY);
        let fresh_until = now + report.interval().saturating_mul(FRESH_INTERVALS);
        let (rank, current) = match prober.boots.get(&report.boot_id) {
            Some(last) if report.sequence <= last.sequence => return Err(RejectReason::Replay),
            Some(last) => {
                let rank = last.rank;
                match prober.current() {
                    // The newest boot.
                    Some(newest) if newest.rank == rank => (rank, true),
                    // A newer boot is still being heard: this is a delayed report of a boot it
                    // replaced.
                    Some(newest) if now <= newest.fresh_until => (rank, false),
                    // The newer boot went silent while this one keeps reporting: that one was
                    // a short-lived boot whose reports arrived late, and this one is the live
                    // process. Taking over keeps it from being frozen out.
                    _ => (prober.next_rank(), true),
                }
            }
            // Never seen: a prober process started after every boot the book knows.
            None => (prober.next_rank(), true),
        };
        prober.boots.insert(
            report.boot_id.clone(),
            BootSeq {
                sequence: report.sequence,
                seen: now,
                fresh_until,
                rank,
            },
        );

        let mut summary = IngestSummary::default();
        for (key, ep) in &report.endpoints {
            let Some(book) = self.endpoints.get_mut(key) else {
                summary.unknown_endpoints += 1;
                continue;
            };
            if !current {
                summary.outdated += 1;
                continue;
            }
            let vote = Vote {
                region: report.region.clone(),
                state: ep.state,
                consecutive: ep.consecutive,
                latency_us: ep.latency_us,
                reason: ep.reason.clone(),
                boot_id: report.boot_id.clone(),
                sequence: report.sequence,
                received: now,
                interval: report.interval(),
            };
            if vote.state != VoteState::Unknown {
                let until = vote.fresh_until();
                book.heard_until = Some(book.heard_until.map_or(until, |h| h.max(until)));
            }
            book.votes.insert(report.prober_id.clone(), vote);
            summary.recorded += 1;
        }
        if current {
            for (key, book) in &mut self.endpoints {
                if !report.endpoints.contains_key(key) {
                    book.votes.remove(&report.prober_id);
                }
            }
        }
        Ok(summary)
    }

    /// Applies the decision rules (module docs) to every endpoint as of `now`.
    pub fn decide(&mut self, now: Instant) -> Decision {
        let mut view = HealthView::default();
        let mut transitions = Vec::new();
        let age = now.saturating_duration_since(self.started);
        for (key, book) in &mut self.endpoints {
            let tally = tally(book, now);
            let verdict = match tally.verdict() {
                Verdict::Down if tally.reporting_regions <= 1 && age < freshness(book, now) => {
                    Verdict::Hold
                }
                v => v,
            };
            let (next, cause) = match verdict {
                Verdict::Up => (Health::Up, Cause::Votes),
                Verdict::Down => (Health::Down, Cause::Votes),
                Verdict::Hold => (book.health, Cause::Votes),
                Verdict::Silent => {
                    let silent_since = book.heard_until.unwrap_or(book.since);
                    if now.saturating_duration_since(silent_since) >= self.grace {
                        (Health::Up, Cause::GraceExpired)
                    } else {
                        (book.health, Cause::Votes)
                    }
                }
            };
            if next != book.health {
                transitions.push(Transition {
                    key: key.clone(),
                    from: book.health,
                    to: next,
                    cause,
                    votes: tally.clone(),
                });
                book.health = next;
                book.since = now;
            }
            let votes = book
                .votes
                .iter()
                .map(|(prober, v)| VoteStatus {
                    prober_id: prober.clone(),
                    region: v.region.clone(),
                    state: v.state,
                    consecutive: v.consecutive,
                    latency_us: v.latency_us,
                    reason: v.reason.clone(),
                    boot_id: v.boot_id.clone(),
                    sequence: v.sequence,
                    age_ms: millis(now.saturating_duration_since(v.received)),
                    fresh: v.is_fresh(now),
                })
                .collect();
            view.health.insert(key.clone(), book.health);
            view.status.insert(
                key.clone(),
                EndpointStatus {
                    health: book.health,
                    for_ms: millis(now.saturating_duration_since(book.since)),
                    tally,
                    votes,
                },
            );
        }
        Decision { view, transitions }
    }
}

fn tally(book: &EndpointBook, now: Instant) -> Tally {
    let mut regions: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut reporting: HashSet<&str> = HashSet::new();
    for vote in book.votes.values().filter(|v| v.is_fresh(now)) {
        reporting.insert(vote.region.as_str());
        let (up, down) = match vote.state {
            VoteState::Up => (1, 0),
            VoteState::Down => (0, 1),
            VoteState::Unknown => continue,
        };
        let counts = regions.entry(vote.region.as_str()).or_default();
        counts.0 += up;
        counts.1 += down;
    }
    let mut t = Tally {
        reporting_regions: reporting.len(),
        ..Tally::default()
    };
    for (region, (up, down)) in regions {
        if up > down {
            t.up_regions += 1;
        } else if down > up {
            t.down_regions += 1;
        }
        t.regions.push(RegionTally {
            region: region.to_owned(),
            up,
            down,
        });
    }
    t
}

/// The longest freshness window among an endpoint's fresh votes.
fn freshness(book: &EndpointBook, now: Instant) -> Duration {
    book.votes
        .values()
        .filter(|v| v.is_fresh(now))
        .map(|v| v.interval.saturating_mul(FRESH_INTERVALS))
        .max()
        .unwrap_or_default()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::report::EndpointReport;

    const INTERVAL: u64 = 5; // seconds; votes are fresh for 15 s

    /// A book created a minute before `t0`: past the start-up wait of every test interval.
    fn settled(known: impl IntoIterator<Item = EndpointKey>, t0: Instant) -> HealthBook {
        HealthBook::new(known, t0.checked_sub(Duration::from_secs(60)).unwrap())
    }

    fn key(n: u8) -> EndpointKey {
        EndpointKey::new("shop.example", "www", [192, 0, 2, n].into()).unwrap()
    }

    /// One prober report: (prober, region, sequence, sent at (s), votes on key(1..)).
    fn report(prober: &str, region: &str, seq: u64, at: u64, votes: &[VoteState]) -> ProbeReport {
        ProbeReport {
            prober_id: ProberId::new(prober),
            region: region.into(),
            boot_id: "boot-1".into(),
            sequence: seq,
            sent_at_ms: 1_700_000_000_000 + at * 1000,
            interval_ms: INTERVAL * 1000,
            config_digest: "d".into(),
            endpoints: votes
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    (
                        key(u8::try_from(i).unwrap() + 1),
                        EndpointReport {
                            state: *s,
                            consecutive: 3,
                            latency_us: Some(100),
                            checked_at_ms: None,
                            reason: match s {
                                VoteState::Up => "ok".into(),
                                _ => "connect refused".into(),
                            },
                        },
                    )
                })
                .collect(),
        }
    }

    use VoteState::{Down as D, Unknown as U, Up as Up_};

    /// A step: at `t` seconds, these probers report one vote on key(1) (prober, region, vote);
    /// then decide and expect `want`.
    struct Step {
        t: u64,
        votes: &'static [(&'static str, &'static str, VoteState)],
        want: Health,
    }

    fn run(name: &str, steps: &[Step]) -> HealthBook {
        let t0 = Instant::now();
        let mut book = settled([key(1)], t0);
        let mut seq = 0;
        for (i, step) in steps.iter().enumerate() {
            let now = t0 + Duration::from_secs(step.t);
            for (prober, region, vote) in step.votes {
                seq += 1;
                book.ingest(&report(prober, region, seq, step.t, &[*vote]), now)
                    .unwrap();
            }
            let got = book.decide(now).view.health(&key(1));
            assert_eq!(got, step.want, "{name}: step {i} at t={}", step.t);
        }
        book
    }

    #[test]
    fn decision_table() {
        let cases: &[(&str, &[Step])] = &[
            (
                "single region majority down",
                &[Step {
                    t: 0,
                    votes: &[("a1", "eu", D), ("a2", "eu", D), ("a3", "eu", Up_)],
                    want: Health::Down,
                }],
            ),
            (
                "single region majority up after down",
                &[
                    Step {
                        t: 0,
                        votes: &[("a1", "eu", D), ("a2", "eu", D)],
                        want: Health::Down,
                    },
                    Step {
                        t: 5,
                        votes: &[("a1", "eu", Up_), ("a2", "eu", Up_)],
                        want: Health::Up,
                    },
                ],
            ),
            (
                "one of two regions says down: not enough",
                &[Step {
                    t: 0,
                    votes: &[("a1", "eu", D), ("b1", "us", Up_)],
                    want: Health::Up,
                }],
            ),
            (
                "two regions agree on down",
                &[Step {
                    t: 0,
                    votes: &[("a1", "eu", D), ("b1", "us", D)],
                    want: Health::Down,
                }],
            ),
            (
                "down region plus tied region is not two regions",
                &[Step {
                    t: 0,
                    votes: &[("a1", "eu", D), ("b1", "us", D), ("b2", "us", Up_)],
                    want: Health::Up,
                }],
            ),
            (
                "partitioned prober sees everything down: no flip",
                &[Step {
                    t: 0,
                    votes: &[
                        ("a1", "eu", Up_),
                        ("a2", "eu", Up_),
                        ("a3", "eu", D),
                        ("b1", "us", Up_),
                        ("c1", "ap", D),
                    ],
                    want: Health::Up,
                }],
            ),
            (
                "two of three regions down",
                &[Step {
                    t: 0,
                    votes: &[("a1", "eu", D), ("b1", "us", D), ("c1", "ap", Up_)],
                    want: Health::Down,
                }],
            ),
            (
                "tie between regions keeps down",
                &[
                    Step {
                        t: 0,
                        votes: &[("a1", "eu", D), ("b1", "us", D)],
                        want: Health::Down,
                    },
                    Step {
                        t: 5,
                        votes: &[("a1", "eu", Up_)],
                        want: Health::Down,
                    },
                ],
            ),
            (
                "tie inside the only region keeps state",
                &[
                    Step {
                        t: 0,
                        votes: &[("a1", "eu", D), ("a2", "eu", D)],
                        want: Health::Down,
                    },
                    Step {
                        t: 5,
                        votes: &[("a1", "eu", Up_)],
                        want: Health::Down,
                    },
                ],
            ),
            (
                "unknown votes are no votes inside a region",
                &[Step {
                    t: 0,
                    votes: &[("a1", "eu", D), ("a2", "eu", U)],
                    want: Health::Down,
                }],
            ),
            (
                "a region still warming up counts as reporting: one down region is not enough",
                &[
                    Step {
                        t: 0,
                        votes: &[("a1", "eu", D), ("a2", "eu", U), ("b1", "us", U)],
                        want: Health::Up,
                    },
                    // Once us sees it too, two regions agree.
                    Step {
                        t: 1,
                        votes: &[("b1", "us", D)],
                        want: Health::Down,
                    },
                ],
            ),
            (
                "a region whose unknown votes went stale stops counting",
                &[
                    Step {
                        t: 0,
                        votes: &[("b1", "us", U)],
                        want: Health::Up,
                    },
                    Step {
                        t: 16,
                        votes: &[("a1", "eu", D)],
                        want: Health::Down,
                    },
                ],
            ),
            (
                "stale up votes stop counting",
                &[
                    // b1's up vote is fresh until t=15; at t=16 only eu (down) remains fresh.
                    Step {
                        t: 0,
                        votes: &[("a1", "eu", D), ("b1", "us", Up_)],
                        want: Health::Up,
                    },
                    Step {
                        t: 15,
                        votes: &[("a1", "eu", D)],
                        want: Health::Up,
                    },
                    Step {
                        t: 16,
                        votes: &[("a1", "eu", D)],
                        want: Health::Down,
                    },
                ],
            ),
            (
                "nobody heard: keep down for the grace period, then up",
                &[
                    Step {
                        t: 0,
                        votes: &[("a1", "eu", D)],
                        want: Health::Down,
                    },
                    // stale from t=15; grace (300 s) runs out at t=315
                    Step {
                        t: 100,
                        votes: &[],
                        want: Health::Down,
                    },
                    Step {
                        t: 314,
                        votes: &[],
                        want: Health::Down,
                    },
                    Step {
                        t: 315,
                        votes: &[],
                        want: Health::Up,
                    },
                ],
            ),
        ];
        for (name, steps) in cases {
            run(name, steps);
        }
    }

    #[test]
    fn right_after_start_a_lone_region_waits_one_freshness_window() {
        // The partitioned prober's report is the first to arrive after a restart.
        let t0 = Instant::now();
        let mut book = HealthBook::new([key(1)], t0);
        book.ingest(&report("c1", "us", 1, 0, &[D]), t0).unwrap();
        assert_eq!(book.decide(t0).view.health(&key(1)), Health::Up);
        // The honest region reports a second later: a tie, and the endpoint is still up.
        let t1 = t0 + Duration::from_secs(1);
        book.ingest(&report("a1", "eu", 1, 1, &[Up_]), t1).unwrap();
        assert_eq!(book.decide(t1).view.health(&key(1)), Health::Up);

        // A region that really is alone decides once the window (3 x 5 s) has passed.
        let mut alone = HealthBook::new([key(1)], t0);
        alone.ingest(&report("a1", "eu", 1, 0, &[D]), t0).unwrap();
        let t14 = t0 + Duration::from_secs(14);
        alone.ingest(&report("a1", "eu", 2, 14, &[D]), t14).unwrap();
        assert_eq!(alone.decide(t14).view.health(&key(1)), Health::Up);
        let t15 = t0 + Duration::from_secs(15);
        assert_eq!(alone.decide(t15).view.health(&key(1)), Health::Down);

        // Two regions agreeing need no wait.
        let mut two = HealthBook::new([key(1)], t0);
        two.ingest(&report("a1", "eu", 1, 0, &[D]), t0).unwrap();
        two.ingest(&report("b1", "us", 1, 0, &[D]), t0).unwrap();
        assert_eq!(two.decide(t0).view.health(&key(1)), Health::Down);
    }

    #[test]
    fn transitions_are_reported_once_with_votes_and_cause() {
        let t0 = Instant::now();
        let mut book = settled([key(1), key(2)], t0);
        book.ingest(&report("a1", "eu", 1, 0, &[D, Up_]), t0)
            .unwrap();
        let d = book.decide(t0);
        assert_eq!(d.transitions.len(), 1);
        let tr = &d.transitions[0];
        assert_eq!(
            (tr.key.clone(), tr.from, tr.to),
            (key(1), Health::Up, Health::Down)
        );
        assert_eq!(tr.cause, Cause::Votes);
        assert_eq!(tr.votes.down_regions, 1);
        assert_eq!(tr.votes.regions[0].region, "eu");
        assert!(book.decide(t0).transitions.is_empty(), "no repeat");

        let late = t0 + Duration::from_secs(15) + DEFAULT_GRACE;
        let d = book.decide(late);
        assert_eq!(d.transitions.len(), 1);
        assert_eq!(d.transitions[0].cause, Cause::GraceExpired);
        assert_eq!(d.view.health(&key(1)), Health::Up);
    }

    #[test]
    fn replay_is_rejected_without_changing_state() {
        let t0 = Instant::now();
        let mut book = settled([key(1)], t0);
        book.ingest(&report("a1", "eu", 5, 0, &[D]), t0).unwrap();
        for seq in [5, 4] {
            let replay = report("a1", "eu", seq, 1, &[Up_]);
            assert_eq!(book.ingest(&replay, t0), Err(RejectReason::Replay));
        }
        assert_eq!(book.decide(t0).view.health(&key(1)), Health::Down);

        // Same sequence under a new boot id is a restarted prober, not a replay.
        let mut rebooted = report("a1", "eu", 1, 2, &[Up_]);
        rebooted.boot_id = "boot-2".into();
        book.ingest(&rebooted, t0).unwrap();
        assert_eq!(book.decide(t0).view.health(&key(1)), Health::Up);

        // A different prober has its own sequence.
        book.ingest(&report("a2", "eu", 1, 2, &[Up_]), t0).unwrap();
    }

    #[test]
    fn delayed_report_does_not_override_newer_vote() {
        let t0 = Instant::now();
        let mut book = settled([key(1)], t0);
        book.ingest(&report("a1", "eu", 8, 0, &[D]), t0).unwrap();
        // The prober restarts; its clock is behind now, which changes nothing.
        let mut newer = report("a1", "eu", 1, 0, &[Up_]);
        newer.boot_id = "boot-2".into();
        book.ingest(&newer, t0).unwrap();
        let older = report("a1", "eu", 9, 5, &[D]);
        let s = book.ingest(&older, t0).unwrap();
        assert_eq!((s.recorded, s.outdated), (0, 1));
        assert_eq!(book.decide(t0).view.health(&key(1)), Health::Up);
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Outcome {
        Recorded,
        Outdated,
        Replay,
    }

    /// One report of prober a1 on key(1): received at `t` s, from `boot` with `seq`, its
    /// `sent_at` `sent` s away from the receiver's clock; then the outcome and the decision.
    struct Order {
        t: u64,
        boot: &'static str,
        seq: u64,
        sent: i64,
        vote: VoteState,
        want: Outcome,
        health: Health,
    }

    const fn order(
        t: u64,
        boot: &'static str,
        seq: u64,
        sent: i64,
        vote: VoteState,
        want: Outcome,
        health: Health,
    ) -> Order {
        Order {
            t,
            boot,
            seq,
            sent,
            vote,
            want,
            health,
        }
    }

    #[test]
    fn vote_order_is_boot_and_sequence_as_received_never_the_probers_clock() {
        use Health::{Down as HD, Up as HU};
        use Outcome::{Outdated, Recorded, Replay};
        let cases: &[(&str, &[Order])] = &[
            (
                "a report 29 s ahead does not shadow the correctly timed ones after it",
                &[
                    order(0, "b1", 1, 29, Up_, Recorded, HU),
                    order(1, "b1", 2, 0, D, Recorded, HD),
                    order(2, "b1", 3, 0, D, Recorded, HD),
                    order(3, "b1", 4, 0, Up_, Recorded, HU),
                ],
            ),
            (
                "a clock stepping back keeps being recorded",
                &[
                    order(0, "b1", 1, 0, D, Recorded, HD),
                    order(1, "b1", 2, -29, Up_, Recorded, HU),
                    order(2, "b1", 3, -29, D, Recorded, HD),
                ],
            ),
            (
                "a clock jumping back and forth within the skew keeps being recorded",
                &[
                    order(0, "b1", 1, 29, D, Recorded, HD),
                    order(1, "b1", 2, -29, Up_, Recorded, HU),
                    order(2, "b1", 3, 10, D, Recorded, HD),
                    order(3, "b1", 4, -10, Up_, Recorded, HU),
                ],
            ),
            (
                "within a boot the sequence orders, whatever sent_at says",
                &[
                    order(0, "b1", 5, 0, D, Recorded, HD),
                    order(1, "b1", 4, 5, Up_, Replay, HD),
                    order(2, "b1", 5, 5, Up_, Replay, HD),
                    order(3, "b1", 6, -20, Up_, Recorded, HU),
                ],
            ),
            (
                "a newer boot supersedes; a delayed report of the older one is outdated",
                &[
                    order(0, "b1", 10, 0, D, Recorded, HD),
                    order(1, "b2", 1, -25, Up_, Recorded, HU),
                    order(2, "b1", 11, 25, D, Outdated, HU),
                    order(3, "b2", 2, 0, Up_, Recorded, HU),
                    order(4, "b1", 11, 0, D, Replay, HU),
                ],
            ),
            (
                "the older boot's reports count until the newer one is heard",
                &[
                    order(0, "b1", 10, 0, D, Recorded, HD),
                    order(1, "b1", 11, 0, D, Recorded, HD),
                    order(2, "b2", 1, 0, Up_, Recorded, HU),
                ],
            ),
            (
                "a late report of a short-lived boot freezes the live one for one window at most",
                &[
                    order(0, "b1", 1, 0, Up_, Recorded, HU),
                    // b2 lived briefly before b1 and its only report arrives now.
                    order(1, "b2", 1, -5, D, Recorded, HD),
                    // Its vote is fresh until t=16: b1 waits.
                    order(2, "b1", 2, 0, Up_, Outdated, HD),
                    order(16, "b1", 3, 0, Up_, Outdated, HD),
                    order(17, "b1", 4, 0, Up_, Recorded, HU),
                    // Now b1 is the newest, and b2 the superseded one.
                    order(18, "b2", 2, 0, D, Outdated, HU),
                    order(19, "b1", 5, 0, Up_, Recorded, HU),
                ],
            ),
        ];
        for (name, steps) in cases {
            let t0 = Instant::now();
            let mut book = settled([key(1)], t0);
            for (i, step) in steps.iter().enumerate() {
                let now = t0 + Duration::from_secs(step.t);
                let mut r = report("a1", "eu", step.seq, step.t, &[step.vote]);
                r.boot_id = step.boot.into();
                r.sent_at_ms = r.sent_at_ms.checked_add_signed(step.sent * 1000).unwrap();
                let got = match book.ingest(&r, now) {
                    Ok(s) if (s.recorded, s.outdated) == (1, 0) => Outcome::Recorded,
                    Ok(s) if (s.recorded, s.outdated) == (0, 1) => Outcome::Outdated,
                    Ok(s) => panic!("{name}: step {i}: {s:?}"),
                    Err(RejectReason::Replay) => Outcome::Replay,
                    Err(e) => panic!("{name}: step {i}: {e}"),
                };
                assert_eq!(got, step.want, "{name}: step {i}");
                let view = book.decide(now).view;
                assert_eq!(view.health(&key(1)), step.health, "{name}: step {i}");
                let v = &view.status()[&key(1)].votes[0];
                assert_eq!(
                    v.boot_id.as_str(),
                    steps
                        .iter()
                        .take(i + 1)
                        .rev()
                        .find(|s| s.want == Outcome::Recorded)
                        .map_or("", |s| s.boot),
                    "{name}: step {i}: the vote shown is not the last recorded one"
                );
            }
        }
    }

    #[test]
    fn boot_memory_ends_after_a_quiet_period() {
        // After BOOT_MEMORY without a report, a boot's sequence is forgotten: by then a
        // captured report is far outside the ±30 s sent_at window anyway.
        let t0 = Instant::now();
        let mut book = settled([key(1)], t0);
        book.ingest(&report("a1", "eu", 5, 0, &[D]), t0).unwrap();
        let later = t0 + BOOT_MEMORY + Duration::from_secs(1);
        let s = book
            .ingest(&report("a1", "eu", 1, 0, &[Up_]), later)
            .unwrap();
        assert_eq!(s.recorded, 1);
        assert_eq!(
            book.ingest(&report("a1", "eu", 1, 0, &[Up_]), later),
            Err(RejectReason::Replay)
        );
    }

    #[test]
    fn unknown_endpoints_are_counted_and_ignored() {
        let t0 = Instant::now();
        let mut book = settled([key(1)], t0);
        let s = book
            .ingest(&report("a1", "eu", 1, 0, &[D, D, D]), t0)
            .unwrap();
        assert_eq!(
            s,
            IngestSummary {
                recorded: 1,
                unknown_endpoints: 2,
                outdated: 0
            }
        );
        let view = book.decide(t0).view;
        assert_eq!(view.iter().count(), 1);
        assert_eq!(view.health(&key(2)), Health::Up, "unknown keys fail open");
    }

    #[test]
    fn snapshot_without_an_endpoint_withdraws_the_vote() {
        let t0 = Instant::now();
        let mut book = settled([key(1), key(2)], t0);
        book.ingest(&report("a1", "eu", 1, 0, &[Up_, D]), t0)
            .unwrap();
        assert_eq!(book.decide(t0).view.health(&key(2)), Health::Down);
        book.ingest(&report("a1", "eu", 2, 1, &[Up_]), t0).unwrap();
        let view = book.decide(t0).view;
        assert!(view.status()[&key(2)].votes.is_empty());
        // Withdrawn is not "up": the state holds until the grace period says otherwise.
        assert_eq!(view.health(&key(2)), Health::Down);
    }

    #[test]
    fn set_known_keeps_surviving_state() {
        let t0 = Instant::now();
        let mut book = settled([key(1), key(2)], t0);
        book.ingest(&report("a1", "eu", 1, 0, &[D, D]), t0).unwrap();
        book.decide(t0);
        let before = book.decide(t0).view.status()[&key(1)].clone();
        book.set_known([key(1), key(3)], t0);
        let view = book.decide(t0).view;
        let keys: Vec<_> = view.iter().map(|(k, h)| (k.clone(), h)).collect();
        assert_eq!(keys, [(key(1), Health::Down), (key(3), Health::Up)]);
        // The kept endpoint's votes are untouched, the same set again changes nothing.
        assert_eq!(view.status()[&key(1)], before);
        book.set_known([key(1), key(3)], t0);
        assert_eq!(book.decide(t0).view.status()[&key(1)], before);
        // Replay memory survives too: the same sequence is still refused.
        assert_eq!(
            book.ingest(&report("a1", "eu", 1, 0, &[Up_]), t0),
            Err(RejectReason::Replay)
        );
        // A reload that drops the endpoint and one that brings it back: it starts over, up.
        book.set_known([key(3)], t0);
        book.set_known([key(1), key(3)], t0);
        assert_eq!(book.decide(t0).view.health(&key(1)), Health::Up);
    }

    #[test]
    fn status_shows_votes_ages_and_freshness() {
        let t0 = Instant::now();
        let mut book = settled([key(1)], t0);
        book.ingest(&report("a1", "eu", 1, 0, &[D]), t0).unwrap();
        book.ingest(
            &report("b1", "us", 1, 0, &[Up_]),
            t0 + Duration::from_secs(10),
        )
        .unwrap();
        let view = book.decide(t0 + Duration::from_secs(20)).view;
        let st = &view.status()[&key(1)];
        assert_eq!(st.votes.len(), 2);
        let a1 = &st.votes[0];
        assert_eq!(
            (
                a1.prober_id.as_str(),
                a1.age_ms,
                a1.fresh,
                a1.reason.as_str()
            ),
            ("a1", 20_000, false, "connect refused")
        );
        let b1 = &st.votes[1];
        assert_eq!((b1.age_ms, b1.fresh), (10_000, true));
        assert_eq!(st.tally.up_regions, 1);
        let json = serde_json::to_string(st).unwrap();
        assert!(json.contains("\"health\":\"up\""), "{json}");
    }

    #[test]
    fn digest_depends_only_on_decided_states() {
        let t0 = Instant::now();
        let mut a = settled([key(1), key(2)], t0);
        let mut b = settled([key(2), key(1)], t0);
        a.ingest(&report("a1", "eu", 1, 0, &[D, Up_]), t0).unwrap();
        b.ingest(&report("x9", "us", 1, 0, &[D]), t0).unwrap();
        let (va, vb) = (a.decide(t0).view, b.decide(t0).view);
        assert_eq!(va.digest(), vb.digest());
        assert_eq!(va.digest().len(), 64);
        let fresh = settled([key(1), key(2)], t0).decide(t0).view;
        assert_ne!(fresh.digest(), va.digest());
        assert_eq!(va.down_count(), 1);
    }
}
