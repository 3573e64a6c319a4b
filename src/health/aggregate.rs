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
//! # Signals
//!
//! Besides up/down, fresh votes carry a load (0.0-1.0), a weight hint and the check latency;
//! each endpoint's [`EndpointSignals`] takes the median of the fresh votes that carry each (so
//! one odd prober cannot move it), and says whether the endpoint is in a *transition*: a fresh
//! vote still counting towards rise or fall (its state `up` while its latest check failed, or
//! `down` while it passed) or disagreeing with the decided state. An endpoint that goes from
//! down to up records when ([`EndpointSignals::recovered_for`]), for slow start.
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
pub use super::severity::{Severity, severity};

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
    checked_at_ms: Option<u64>,
    reason: String,
    load: Option<f64>,
    weight: Option<u32>,
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
    /// When it last went from down to up (never at start: endpoints start up).
    recovered: Option<Instant>,
}

impl EndpointBook {
    fn new(now: Instant) -> Self {
        Self {
            votes: BTreeMap::new(),
            health: Health::Up,
            since: now,
            heard_until: None,
            recovered: None,
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

/// What the fresh votes say about an endpoint besides up or down (module docs, "Signals").
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct EndpointSignals {
    /// Median load (0.0-1.0) of the fresh votes that report one.
    pub load: Option<f64>,
    /// Median weight hint of the fresh votes that report one.
    pub weight: Option<u32>,
    /// Median latency of the latest checks of fresh votes, microseconds.
    pub latency_us: Option<u64>,
    /// A fresh vote is counting towards rise or fall, or disagrees with the decided state.
    pub transition: bool,
    /// How long ago (as of the decision) the endpoint went from down to up; `None` if it
    /// never did since the book started, or is down.
    #[serde(skip)]
    pub recovered_for: Option<Duration>,
}

/// The decision on one endpoint and what it rests on, for the status API.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndpointStatus {
    /// The decided state.
    pub health: Health,
    /// Milliseconds the endpoint has been in this state.
    pub for_ms: u64,
    /// Load, weight hint, latency and transition, from the fresh votes.
    pub signals: EndpointSignals,
    /// The fresh votes.
    pub tally: Tally,
    /// Every prober's latest vote, fresh or not.
    pub votes: Vec<VoteStatus>,
}

/// The decided state of every known endpoint, as of one [`HealthBook::decide`] call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthView {
    health: HashMap<EndpointKey, Health>,
    status: BTreeMap<EndpointKey, EndpointStatus>,
}

impl HealthView {
    /// The decided state; endpoints the view does not know are up (fail open).
    pub fn health(&self, key: &EndpointKey) -> Health {
        self.health.get(key).copied().unwrap_or(Health::Up)
    }

    /// Load, weight hint, latency, transition and recovery of an endpoint (none when unknown).
    pub fn signals(&self, key: &EndpointKey) -> EndpointSignals {
        self.status.get(key).map(|s| s.signals).unwrap_or_default()
    }

    /// Counts an up endpoint as back `since` ago at most (its `recovered_for`), so slow start
    /// ramps it: the hub does this when an override that kept it out of answers is lifted.
    /// A down or unknown endpoint is left alone.
    pub fn back_within(&mut self, key: &EndpointKey, since: Duration) {
        if let Some(s) = self.status.get_mut(key).filter(|s| s.health == Health::Up) {
            let back = s.signals.recovered_for.map_or(since, |r| r.min(since));
            s.signals.recovered_for = Some(back);
        }
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
    /// True when the set changed.
    pub fn set_known(
        &mut self,
        known: impl IntoIterator<Item = EndpointKey>,
        now: Instant,
    ) -> bool {
        self.set_known_where(|_| true, known, now)
    }

    /// As [`HealthBook::set_known`] for the endpoints of `zones` only (lowercase, without
    /// the trailing dot): `known` lists every endpoint of those zones, the other zones keep
    /// theirs (a reload that changed a few zones). True when the set changed.
    pub fn set_known_in(
        &mut self,
        zones: &HashSet<String>,
        known: impl IntoIterator<Item = EndpointKey>,
        now: Instant,
    ) -> bool {
        self.set_known_where(|k| zones.contains(k.zone()), known, now)
    }

    fn set_known_where(
        &mut self,
        replaced: impl Fn(&EndpointKey) -> bool,
        known: impl IntoIterator<Item = EndpointKey>,
        now: Instant,
    ) -> bool {
        let known: HashSet<EndpointKey> = known.into_iter().collect();
        let before = self.endpoints.len();
        self.endpoints
            .retain(|k, _| !replaced(k) || known.contains(k));
        let mut changed = self.endpoints.len() != before;
        for key in known {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.endpoints.entry(key) {
                slot.insert(EndpointBook::new(now));
                changed = true;
            }
        }
        changed
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
                checked_at_ms: ep.checked_at_ms,
                reason: ep.reason.clone(),
                load: ep.load.filter(|l| l.is_finite()).map(|l| l.clamp(0.0, 1.0)),
                weight: ep.weight,
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

    /// The checks in `report` this book has not seen yet, with their latency in microseconds:
    /// endpoints whose `checked_at_ms` differs from this prober's recorded vote (a report
    /// repeats the latest check until the next one). Call before [`HealthBook::ingest`].
    pub fn new_checks(&self, report: &ProbeReport) -> Vec<(EndpointKey, u64)> {
        report
            .endpoints
            .iter()
            .filter_map(|(key, ep)| {
                let (latency, at) = (ep.latency_us?, ep.checked_at_ms?);
                let book = self.endpoints.get(key)?;
                let seen = book
                    .votes
                    .get(&report.prober_id)
                    .is_some_and(|v| v.checked_at_ms == Some(at));
                (!seen).then(|| (key.clone(), latency))
            })
            .collect()
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
                if book.health == Health::Down && next == Health::Up {
                    book.recovered = Some(now);
                }
                book.health = next;
                book.since = now;
            }
            let signals = signals(book, now);
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
                    signals,
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

fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> Option<T> {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    // The lower median: with two probers, the more optimistic load is not picked over the
    // other by chance of order.
    values.get(values.len().saturating_sub(1) / 2).copied()
}

/// The signals of an endpoint's fresh votes (module docs, "Signals").
fn signals(book: &EndpointBook, now: Instant) -> EndpointSignals {
    let fresh: Vec<&Vote> = book.votes.values().filter(|v| v.is_fresh(now)).collect();
    let transition = fresh.iter().any(|v| {
        let passed = v.reason == "ok";
        match v.state {
            VoteState::Up => !passed || book.health == Health::Down,
            VoteState::Down => passed || book.health == Health::Up,
            VoteState::Unknown => false,
        }
    });
    EndpointSignals {
        load: median(fresh.iter().filter_map(|v| v.load).collect()),
        weight: median(fresh.iter().filter_map(|v| v.weight).collect()),
        latency_us: median(fresh.iter().filter_map(|v| v.latency_us).collect()),
        transition,
        recovered_for: match book.health {
            Health::Up => book.recovered.map(|t| now.saturating_duration_since(t)),
            Health::Down => None,
        },
    }
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
#[path = "aggregate_tests.rs"]
mod tests;
