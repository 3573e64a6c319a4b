//! The prober's main loop: scheduled checks in, reports out, new targets taken in place.
//!
//! Owns: the check schedule, the in-flight bound (a semaphore, `--max-concurrent-checks`),
//! sharing identical checks, the rise/fall trackers, and building each [`ProbeReport`]
//! (sequence numbers, timestamps).
//!
//! Never: signs or sends reports (the sink does, normally `Pusher::publish`), or decides
//! health for DNS (nameservers aggregate many probers).
//!
//! # Load
//!
//! Built for one prober checking 10,000 endpoints every second (docs/performance.md, "Probe
//! load"):
//! - **Shared checks.** Targets whose checks are identical (same probe address, interval and
//!   check settings: type, port, path, host, headers, expectations, timeout; see
//!   [`CheckIdentity`]) are checked once per interval and the result goes to every one of them:
//!   two services on one backend cost that backend one request per interval. Each target keeps
//!   its own rise/fall state (thresholds may differ).
//! - **Even spread.** The distinct checks started together with one interval get phases spread
//!   evenly over it ([`spread`], from a random rotation so probers do not line up), and each
//!   round runs on that grid plus up to [`JITTER`] of the interval: no synchronised bursts, and
//!   no drift that would bunch them up over time. A check that overruns its interval skips the
//!   rounds it missed instead of running back to back.
//! - **Bounded concurrency.** At most `max_in_flight` checks run at once; a due check waits for
//!   a permit (`meridian_probe_checks_waiting`). The default, [`DEFAULT_MAX_IN_FLIGHT`], covers
//!   10,000 checks a second at up to 50 ms each.
//! - **Few reports.** A report carries every endpoint, so change-triggered reports are at least
//!   [`CHANGE_REPORT_SPACING`] apart: 10,000 endpoints coming up in one second make about ten
//!   reports, not 10,000.
//!
//! A report is published when the loop starts, every `report_interval`, soon (within
//! [`CHANGE_REPORT_SPACING`]) whenever an endpoint's rise/fall state changes, and after a
//! [`TargetSet`] changed what is checked.
//!
//! # Reloads
//!
//! A reload hands the running loop a new [`TargetSet`] (over the `updates` channel); the loop
//! is never restarted for it. The boot id stays and the sequence keeps increasing, so
//! nameservers keep every vote. A target whose endpoint and check settings are unchanged
//! ([`ProbeTarget::same_check`]) keeps its rise/fall state and its last result; a distinct
//! check still needed keeps its schedule (its task only switches to the freshly built checker,
//! e.g. a reloaded CA file); a changed or new target starts fresh (`unknown` until
//! `rise`/`fall` results); a removed one is dropped from the next report.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::check::{CheckOutcome, Checker};
use super::metrics::{ProbeMetrics, global as metrics};
use super::state::{RiseFall, Tracker};
use super::targets::{config_digest, report_interval};
use crate::health::report::{EndpointKey, EndpointReport, ProbeReport, ProberId, unix_ms};

/// Default number of checks running at once (`--max-concurrent-checks`): 10,000 checks a
/// second at up to 50 ms each, with file descriptors to spare under the usual 1,024 limit.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;

/// Each round of a check runs up to this fraction of its interval after its place on the
/// grid (module docs, "Load").
pub const JITTER: f64 = 0.1;

/// Least time between two change-triggered reports (module docs, "Load").
pub const CHANGE_REPORT_SPACING: Duration = Duration::from_millis(100);

/// One endpoint to check.
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    /// The endpoint, as named in reports.
    pub key: EndpointKey,
    /// Where to send the check.
    pub ip: IpAddr,
    /// The prepared check (shared by every endpoint of a service).
    pub checker: Arc<Checker>,
    /// How often to check.
    pub interval: Duration,
    /// Rise/fall thresholds.
    pub thresholds: RiseFall,
}

impl ProbeTarget {
    /// True when `other` is the same check of the same endpoint: same key (zone, service,
    /// address), probe address, check settings, interval and rise/fall. A reload keeps the
    /// state of such a target.
    pub fn same_check(&self, other: &ProbeTarget) -> bool {
        self.key == other.key
            && self.ip == other.ip
            && self.interval == other.interval
            && self.thresholds == other.thresholds
            && self.checker.spec() == other.checker.spec()
    }

    /// What makes this target's check the same as another's (module docs, "Load").
    pub fn identity(&self) -> CheckIdentity {
        // Shedding thresholds are applied by the nameserver, not by the check.
        let mut spec = self.checker.spec().clone();
        spec.shed = Default::default();
        CheckIdentity {
            ip: self.ip,
            interval: self.interval,
            spec: format!("{spec:?}"),
        }
    }
}

/// Targets with equal identities are checked once per interval and share the result: the
/// probe address, the interval and every check setting (as their `Debug` form, which lists
/// every field of the spec in order).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckIdentity {
    ip: IpAddr,
    interval: Duration,
    spec: String,
}

/// The start offsets of `n` checks with one `interval`: evenly spread over it, all turned by
/// `rotation` (0.0-1.0, a fraction of the interval).
pub fn spread(n: usize, interval: Duration, rotation: f64) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            #[allow(clippy::cast_precision_loss)]
            let at = (rotation + i as f64 / n as f64).fract();
            interval.mul_f64(at)
        })
        .collect()
}

/// What a running prober checks; sent to [`run`] on a reload.
#[derive(Clone, Debug)]
pub struct TargetSet {
    /// The endpoints to check.
    pub targets: Vec<ProbeTarget>,
    /// How often a full report is published.
    pub report_interval: Duration,
    /// Digest of the probe configuration, passed through to reports.
    pub config_digest: String,
}

impl TargetSet {
    /// A set with the report interval and digest derived from the targets
    /// ([`report_interval`], [`config_digest`]).
    pub fn new(targets: Vec<ProbeTarget>) -> Self {
        Self {
            report_interval: report_interval(&targets),
            config_digest: config_digest(&targets),
            targets,
        }
    }
}

/// Identity and pacing of this prober.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// This prober's id (bound to its key).
    pub prober_id: ProberId,
    /// This prober's region.
    pub region: String,
    /// Random per process start; see [`new_boot_id`].
    pub boot_id: String,
    /// How often a full report is published, changes or not; sent as the report interval.
    pub report_interval: Duration,
    /// Digest of the probe configuration, passed through to reports.
    pub config_digest: String,
    /// Checks running at once (at least one).
    pub max_in_flight: usize,
}

/// A fresh random boot id (128 bits, hex).
pub fn new_boot_id() -> String {
    data_encoding::HEXLOWER.encode(&rand::random::<[u8; 16]>())
}

/// One target's state.
struct Slot {
    target: ProbeTarget,
    tracker: Tracker,
    last: Option<(CheckOutcome, SystemTime)>,
}

/// One distinct check and its task.
struct Probe {
    id: u64,
    /// The task checks with whatever checker this holds at the time.
    checker: watch::Sender<Arc<Checker>>,
    task: AbortHandle,
    /// The targets its results go to.
    subscribers: Vec<EndpointKey>,
}

/// A check result, tagged with the probe it belongs to.
type CheckResult = (u64, CheckOutcome, SystemTime);

/// The check tasks and the state they feed.
struct Slots {
    slots: HashMap<EndpointKey, Slot>,
    probes: HashMap<CheckIdentity, Probe>,
    by_id: HashMap<u64, CheckIdentity>,
    next_id: u64,
    checks: JoinSet<()>,
    results: mpsc::Sender<CheckResult>,
    permits: Arc<Semaphore>,
}

impl Slots {
    fn new(results: mpsc::Sender<CheckResult>, max_in_flight: usize) -> Self {
        Self {
            slots: HashMap::new(),
            probes: HashMap::new(),
            by_id: HashMap::new(),
            next_id: 0,
            checks: JoinSet::new(),
            results,
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Starts a task for each of `fresh` (distinct checks not running yet), spread evenly
    /// per interval.
    fn start_probes(&mut self, fresh: Vec<(CheckIdentity, ProbeTarget, Vec<EndpointKey>)>) {
        let mut by_interval: HashMap<Duration, Vec<(CheckIdentity, ProbeTarget, Vec<_>)>> =
            HashMap::new();
        for f in fresh {
            by_interval.entry(f.1.interval).or_default().push(f);
        }
        for (interval, group) in by_interval {
            let offsets = spread(group.len(), interval, rand::random_range(0.0..1.0));
            for ((identity, target, subscribers), offset) in group.into_iter().zip(offsets) {
                let id = self.next_id;
                self.next_id += 1;
                let (checker, checker_rx) = watch::channel(Arc::clone(&target.checker));
                let task = self.checks.spawn(check_loop(
                    id,
                    target.ip,
                    interval,
                    Instant::now() + offset,
                    checker_rx,
                    Arc::clone(&self.permits),
                    self.results.clone(),
                ));
                self.by_id.insert(id, identity.clone());
                self.probes.insert(
                    identity,
                    Probe {
                        id,
                        checker,
                        task,
                        subscribers,
                    },
                );
            }
        }
        metrics().set_targets(self.slots.len(), self.probes.len());
    }

    /// Replaces the targets: same checks keep their slot, distinct checks still needed keep
    /// their task, the rest start or stop. Returns (kept, started, dropped) targets.
    fn retarget(&mut self, targets: Vec<ProbeTarget>) -> (usize, usize, usize) {
        let mut old = std::mem::take(&mut self.slots);
        let mut started = 0;
        // Subscribers per distinct check, in target order; the first target of each is the
        // one its task is built from.
        let mut wanted: HashMap<CheckIdentity, (ProbeTarget, Vec<EndpointKey>)> = HashMap::new();
        let mut order = Vec::new();
        for target in targets {
            let identity = target.identity();
            match wanted.get_mut(&identity) {
                Some((_, subs)) => subs.push(target.key.clone()),
                None => {
                    order.push(identity.clone());
                    wanted.insert(identity, (target.clone(), vec![target.key.clone()]));
                }
            }
            let slot = match old.remove(&target.key) {
                Some(slot) if slot.target.same_check(&target) => Slot { target, ..slot },
                _ => {
                    started += 1;
                    Slot {
                        tracker: Tracker::new(target.thresholds),
                        last: None,
                        target,
                    }
                }
            };
            self.slots.insert(slot.target.key.clone(), slot);
        }
        let dropped = old.len();
        let kept = self.slots.len() - started;
        // Distinct checks: keep the running ones still wanted, stop the others.
        let mut running = std::mem::take(&mut self.probes);
        let mut fresh = Vec::new();
        for identity in order {
            let Some((target, subscribers)) = wanted.remove(&identity) else {
                continue;
            };
            match running.remove(&identity) {
                Some(mut probe) => {
                    probe.checker.send_replace(Arc::clone(&target.checker));
                    probe.subscribers = subscribers;
                    self.probes.insert(identity, probe);
                }
                None => fresh.push((identity, target, subscribers)),
            }
        }
        for probe in running.values() {
            probe.task.abort();
            self.by_id.remove(&probe.id);
        }
        self.start_probes(fresh);
        // Reap the aborted tasks.
        while self.checks.try_join_next().is_some() {}
        (kept, started, dropped)
    }

    /// Hands a result to every target of its check; true when one's rise/fall state changed.
    fn observe(&mut self, id: u64, outcome: &CheckOutcome, at: SystemTime) -> bool {
        // A check a reload stopped: its result is no longer wanted.
        let Some(probe) = self.by_id.get(&id).and_then(|i| self.probes.get(i)) else {
            return false;
        };
        let mut changed = false;
        for key in &probe.subscribers {
            if let Some(slot) = self.slots.get_mut(key) {
                changed |= slot.tracker.observe(outcome.ok).is_some();
                slot.last = Some((outcome.clone(), at));
            }
        }
        changed
    }
}

/// The task of one distinct check: on its grid (module docs, "Load"), one check at a time.
async fn check_loop(
    id: u64,
    ip: IpAddr,
    interval: Duration,
    start: Instant,
    checker: watch::Receiver<Arc<Checker>>,
    permits: Arc<Semaphore>,
    results: mpsc::Sender<CheckResult>,
) {
    let interval = interval.max(Duration::from_millis(1));
    let mut round: u32 = 0;
    loop {
        let slot = start + interval.saturating_mul(round);
        tokio::time::sleep_until(slot + interval.mul_f64(rand::random_range(0.0..JITTER))).await;
        let m: &ProbeMetrics = metrics();
        m.set_waiting(true);
        let permit = permits.acquire().await;
        m.set_waiting(false);
        let Ok(permit) = permit else {
            return;
        };
        let current = Arc::clone(&checker.borrow());
        m.set_running(true);
        let outcome = current.check(ip).await;
        m.set_running(false);
        drop(permit);
        m.record_check(outcome.ok, outcome.latency);
        if results
            .send((id, outcome, SystemTime::now()))
            .await
            .is_err()
        {
            return;
        }
        // The next round on the grid that has not started yet: an overrun skips rounds.
        let behind = Instant::now().saturating_duration_since(start);
        let next = u32::try_from(behind.as_nanos() / interval.as_nanos())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        round = next.max(round.saturating_add(1));
    }
}

/// Runs checks and publishes reports to `sink` until `shutdown` completes, taking new target
/// sets from `updates` in place (module docs, "Reloads"). `started` is called once the first
/// targets are registered (their checks scheduled, the target gauges set): the prober prints
/// its ready line there, so whoever reads that line finds the metrics already describing them.
pub async fn run(
    mut config: RunnerConfig,
    targets: Vec<ProbeTarget>,
    mut updates: mpsc::UnboundedReceiver<TargetSet>,
    started: impl FnOnce(),
    mut sink: impl FnMut(ProbeReport) + Send,
    shutdown: impl Future<Output = ()>,
) {
    // Bounded: a slow loop holds the check tasks back rather than queueing without limit.
    let (results, mut rx) = mpsc::channel::<CheckResult>(targets.len().clamp(64, 4096));
    let mut slots = Slots::new(results, config.max_in_flight);
    slots.retarget(targets);
    started();
    let mut sequence = 0u64;
    let mut ticker = report_ticker(config.report_interval, Instant::now());
    let mut updates_open = true;
    // A change waiting for CHANGE_REPORT_SPACING to pass since the last report.
    let mut change_pending = false;
    let mut last_report = Instant::now();
    tokio::pin!(shutdown);
    loop {
        let publish = tokio::select! {
            () = &mut shutdown => break,
            _ = ticker.tick() => true,
            () = tokio::time::sleep_until(last_report + CHANGE_REPORT_SPACING), if change_pending => true,
            Some((id, outcome, at)) = rx.recv() => {
                if slots.observe(id, &outcome, at) {
                    change_pending = true;
                }
                change_pending && last_report.elapsed() >= CHANGE_REPORT_SPACING
            }
            update = updates.recv(), if updates_open => match update {
                None => {
                    updates_open = false;
                    false
                }
                Some(set) => {
                    let (kept, started, dropped) = slots.retarget(set.targets);
                    let changed = started > 0
                        || dropped > 0
                        || set.report_interval != config.report_interval
                        || set.config_digest != config.config_digest;
                    if set.report_interval != config.report_interval {
                        ticker = report_ticker(set.report_interval, Instant::now());
                    }
                    config.report_interval = set.report_interval;
                    config.config_digest = set.config_digest;
                    tracing::info!(kept, started, dropped, checks = slots.probes.len(), "probe targets updated");
                    changed
                }
            },
        };
        if publish {
            sequence += 1;
            sink(build_report(&config, slots.slots.values(), sequence));
            metrics().record_report();
            change_pending = false;
            last_report = Instant::now();
            // A change-triggered report restarts the period: no full report right behind it.
            ticker.reset();
        }
    }
    slots.checks.abort_all();
}

/// The full-report ticker; its first tick is immediate (the report at start).
fn report_ticker(period: Duration, start: Instant) -> Interval {
    // A zero period would panic; reports declare at least 1 s anyway.
    let mut ticker = tokio::time::interval_at(start, period.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

fn build_report<'a>(
    config: &RunnerConfig,
    slots: impl Iterator<Item = &'a Slot>,
    sequence: u64,
) -> ProbeReport {
    let endpoints = slots
        .map(|slot| {
            let (latency_us, checked_at_ms, reason, load, weight) = match &slot.last {
                Some((o, at)) => (
                    Some(u64::try_from(o.latency.as_micros()).unwrap_or(u64::MAX)),
                    Some(unix_ms(*at)),
                    o.reason.to_string(),
                    o.load,
                    o.weight,
                ),
                None => (None, None, "not checked yet".to_owned(), None, None),
            };
            let report = EndpointReport {
                state: slot.tracker.state(),
                consecutive: slot.tracker.consecutive(),
                latency_us,
                checked_at_ms,
                reason,
                load,
                weight,
            };
            (slot.target.key.clone(), report)
        })
        .collect();
    ProbeReport {
        prober_id: config.prober_id.clone(),
        region: config.region.clone(),
        boot_id: config.boot_id.clone(),
        sequence,
        sent_at_ms: unix_ms(SystemTime::now()),
        interval_ms: u64::try_from(config.report_interval.as_millis()).unwrap_or(u64::MAX),
        config_digest: config.config_digest.clone(),
        endpoints,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::report::VoteState;
    use crate::probe::check::{CheckKind, CheckSpec};
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn config(report_interval: Duration, max_in_flight: usize) -> RunnerConfig {
        RunnerConfig {
            prober_id: ProberId::new("p1"),
            region: "eu".into(),
            boot_id: new_boot_id(),
            report_interval,
            config_digest: "d".into(),
            max_in_flight,
        }
    }

    fn target(n: u8, port: u16, kind: CheckKind, interval: Duration) -> ProbeTarget {
        ProbeTarget {
            key: EndpointKey::new("shop.example", "www", [192, 0, 2, n].into()).unwrap(),
            ip: LOCAL,
            checker: Arc::new(
                Checker::new(CheckSpec {
                    timeout: Duration::from_secs(1),
                    ..CheckSpec::new(kind, port)
                })
                .unwrap(),
            ),
            interval,
            thresholds: RiseFall::new(2, 2),
        }
    }

    /// Starts the runner; reports arrive on the returned channel; dropping the sender stops it.
    fn start(
        config: RunnerConfig,
        targets: Vec<ProbeTarget>,
    ) -> (
        mpsc::UnboundedReceiver<ProbeReport>,
        oneshot::Sender<()>,
        mpsc::UnboundedSender<TargetSet>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (updates_tx, updates) = mpsc::unbounded_channel();
        tokio::spawn(run(
            config,
            targets,
            updates,
            || {},
            move |r| {
                let _ = tx.send(r);
            },
            async move {
                let _ = stop_rx.await;
            },
        ));
        (rx, stop_tx, updates_tx)
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<ProbeReport>) -> ProbeReport {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("report within 5 s")
            .expect("runner alive")
    }

    #[tokio::test]
    async fn reports_at_start_and_at_once_on_every_change() {
        let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Full reports only every hour: every report after the first is change-triggered.
        let t = target(1, port, CheckKind::Tcp, Duration::from_millis(20));
        let key = t.key.clone();
        let (mut rx, _stop, _updates) = start(config(Duration::from_secs(3600), 4), vec![t]);

        let first = next(&mut rx).await;
        assert_eq!(first.sequence, 1);
        assert_eq!(first.endpoints[&key].state, VoteState::Unknown);
        assert_eq!(first.endpoints[&key].reason, "not checked yet");
        assert_eq!(first.interval_ms, 3_600_000);

        let up = next(&mut rx).await;
        assert_eq!(up.sequence, 2);
        assert_eq!(up.endpoints[&key].state, VoteState::Up);
        assert_eq!(up.endpoints[&key].reason, "ok");
        assert!(up.endpoints[&key].latency_us.is_some());

        drop(listener);
        let down = next(&mut rx).await;
        assert_eq!(down.sequence, 3);
        assert_eq!(down.endpoints[&key].state, VoteState::Down);
        assert_eq!(down.endpoints[&key].reason, "connect refused");
        // Change reports are CHANGE_REPORT_SPACING apart: more checks may have run by then.
        assert!(down.endpoints[&key].consecutive >= 2);
        assert_eq!(down.boot_id, first.boot_id);
    }

    #[tokio::test]
    async fn periodic_reports_have_increasing_sequences() {
        let (mut rx, stop, _updates) = start(config(Duration::from_millis(20), 4), Vec::new());
        let mut seqs = Vec::new();
        for _ in 0..3 {
            seqs.push(next(&mut rx).await.sequence);
        }
        assert_eq!(seqs, [1, 2, 3]);
        drop(stop);
        // After shutdown the sink is dropped and the channel closes.
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            while rx.recv().await.is_some() {}
        })
        .await;
        assert!(closed.is_ok(), "runner did not stop");
    }

    /// An HTTP backend that holds each request 50 ms and records the peak concurrency.
    async fn slow_backend() -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let (active, peak, served) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (a, p, s) = (active.clone(), peak.clone(), served.clone());
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let (a, p, s) = (a.clone(), p.clone(), s.clone());
                async move {
                    let now = a.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    a.fetch_sub(1, Ordering::SeqCst);
                    s.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            }),
        );
        let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(axum::serve(listener, app).into_future());
        (port, peak, served)
    }

    #[tokio::test]
    async fn in_flight_checks_are_bounded() {
        for (bound, want_peak) in [(1, 1), (4, 4)] {
            let (port, peak, served) = slow_backend().await;
            // Distinct checks (intervals 1 ms apart): identical ones would be made once.
            let targets = (1..=4)
                .map(|n| {
                    target(
                        n,
                        port,
                        CheckKind::Http,
                        Duration::from_millis(u64::from(n)),
                    )
                })
                .collect();
            let (_rx, stop, _updates) = start(config(Duration::from_secs(3600), bound), targets);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while served.load(Ordering::SeqCst) < 12 {
                assert!(tokio::time::Instant::now() < deadline, "checks not running");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            drop(stop);
            assert_eq!(peak.load(Ordering::SeqCst), want_peak, "bound {bound}");
        }
    }

    #[test]
    fn start_offsets_are_spread_evenly_over_the_interval() {
        for (n, rotation) in [(1, 0.0), (7, 0.5), (100, 0.37), (10_000, 0.99)] {
            let interval = Duration::from_secs(1);
            let mut offsets = spread(n, interval, rotation);
            assert_eq!(offsets.len(), n);
            assert!(offsets.iter().all(|o| *o < interval), "n {n}");
            offsets.sort();
            // Consecutive offsets (and the wrap to the next interval) are one n-th apart.
            let even = interval.as_secs_f64() / n as f64;
            let wrap = offsets[0] + interval - offsets[n - 1];
            for gap in offsets.windows(2).map(|w| w[1] - w[0]).chain([wrap]) {
                assert!(
                    (gap.as_secs_f64() - even).abs() < 1e-6,
                    "n {n}: gap {gap:?}, want {even}"
                );
            }
        }
    }

    #[tokio::test]
    async fn identical_checks_are_made_once_and_shared() {
        let ms = Duration::from_millis(20);
        let http = |n, port| target(n, port, CheckKind::Http, ms);
        // 1 and 2: the same check of the same address (another service, another key); 3:
        // another port; 4: another interval; 5: like 1 but other shedding thresholds only,
        // which the nameserver applies, not the check.
        let mut other_interval = http(4, 80);
        other_interval.interval = Duration::from_millis(30);
        let mut other_shed = http(5, 80);
        let mut spec = other_shed.checker.spec().clone();
        spec.shed.above = 0.5;
        other_shed.checker = Arc::new(Checker::new(spec).unwrap());
        let mut rise = http(6, 80);
        rise.thresholds = RiseFall::new(5, 1);
        let (results, _rx) = mpsc::channel(64);
        let mut slots = Slots::new(results, 4);
        slots.retarget(vec![
            http(1, 80),
            http(2, 80),
            http(3, 81),
            other_interval,
            other_shed,
            rise,
        ]);
        assert_eq!(slots.slots.len(), 6, "every target keeps its own state");
        let mut shared: Vec<Vec<u8>> = slots
            .probes
            .values()
            .map(|p| {
                let mut v: Vec<u8> = p
                    .subscribers
                    .iter()
                    .map(|k| match k.address() {
                        IpAddr::V4(a) => a.octets()[3],
                        IpAddr::V6(_) => 0,
                    })
                    .collect();
                v.sort();
                v
            })
            .collect();
        shared.sort();
        assert_eq!(shared, [vec![1, 2, 5, 6], vec![3], vec![4]]);

        // One result reaches every subscriber; each applies its own rise/fall.
        let id = slots.probes[&http(1, 80).identity()].id;
        let ok = CheckOutcome {
            ok: true,
            latency: Duration::from_millis(1),
            reason: crate::probe::check::CheckReason::Ok,
            load: None,
            weight: None,
        };
        assert!(!slots.observe(id, &ok, SystemTime::now()), "rise is 2");
        assert!(slots.observe(id, &ok, SystemTime::now()), "1, 2 and 5 rise");
        let state = |n: u8| slots.slots[&http(n, 80).key].tracker.state();
        assert_eq!(
            [state(1), state(2), state(5), state(6), state(3)],
            [
                VoteState::Up,
                VoteState::Up,
                VoteState::Up,
                VoteState::Unknown,
                VoteState::Unknown
            ]
        );

        // A reload dropping 1 keeps the shared check running for 2, 5 and 6; dropping 3
        // stops its check.
        let before = slots.probes[&http(2, 80).identity()].id;
        slots.retarget(vec![http(2, 80), http(5, 80), http(6, 80)]);
        assert_eq!(slots.probes.len(), 1);
        assert_eq!(slots.probes[&http(2, 80).identity()].id, before);
        assert_eq!(slots.by_id.len(), 1);
        slots.checks.abort_all();
    }

    #[tokio::test]
    async fn change_reports_are_spaced_however_many_endpoints_change() {
        let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // 50 distinct checks (intervals differ by 0.1 ms), coming up within a few tens of ms.
        let targets: Vec<ProbeTarget> = (1..=50u8)
            .map(|n| {
                let interval = Duration::from_micros(20_000 + u64::from(n) * 100);
                target(n, port, CheckKind::Tcp, interval)
            })
            .collect();
        let keys: Vec<EndpointKey> = targets.iter().map(|t| t.key.clone()).collect();
        let started = Instant::now();
        let (mut rx, _stop, _updates) = start(config(Duration::from_secs(3600), 64), targets);
        let mut reports = 0;
        until(&mut rx, "all 50 up", |r| {
            reports += 1;
            keys.iter().all(|k| r.endpoints[k].state == VoteState::Up)
        })
        .await;
        let spacings = started.elapsed().as_secs_f64() / CHANGE_REPORT_SPACING.as_secs_f64();
        // The report at start, then at most one per spacing (one more for rounding); far
        // fewer than one per change.
        assert!(
            f64::from(reports) <= spacings + 2.0 && reports < 25,
            "{reports} reports in {:?}",
            started.elapsed()
        );
        drop(listener);
    }

    /// Reads reports until `cond` holds for one (5 s at most).
    async fn until(
        rx: &mut mpsc::UnboundedReceiver<ProbeReport>,
        what: &str,
        mut cond: impl FnMut(&ProbeReport) -> bool,
    ) -> ProbeReport {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let r = tokio::time::timeout(left, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no report within 5 s where {what}"))
                .expect("runner alive");
            if cond(&r) {
                return r;
            }
        }
    }

    #[tokio::test]
    async fn new_targets_are_taken_in_place_keeping_unchanged_checks() {
        let open = TcpListener::bind((LOCAL, 0)).await.unwrap();
        let up_port = open.local_addr().unwrap().port();
        let closed = TcpListener::bind((LOCAL, 0)).await.unwrap();
        let down_port = closed.local_addr().unwrap().port();
        drop(closed);
        let ms = Duration::from_millis(20);
        let tcp = |n, port| target(n, port, CheckKind::Tcp, ms);
        let (k1, k2, k3, k4) = (tcp(1, 0).key, tcp(2, 0).key, tcp(3, 0).key, tcp(4, 0).key);
        let (mut rx, _stop, updates) = start(
            config(Duration::from_secs(3600), 4),
            vec![tcp(1, down_port), tcp(2, up_port), tcp(3, up_port)],
        );
        let before = until(&mut rx, "1 down, 2 and 3 up", |r| {
            r.endpoints[&k1].state == VoteState::Down
                && r.endpoints[&k2].state == VoteState::Up
                && r.endpoints[&k3].state == VoteState::Up
        })
        .await;

        // A reload: 1 unchanged (a freshly built checker with the same settings), 2 with new
        // thresholds, 3 gone, 4 new.
        let mut changed = tcp(2, up_port);
        changed.thresholds = RiseFall::new(3, 3);
        updates
            .send(TargetSet::new(vec![
                tcp(1, down_port),
                changed,
                tcp(4, up_port),
            ]))
            .unwrap();
        let after = until(&mut rx, "the new targets are reported", |r| {
            !r.endpoints.contains_key(&k3)
        })
        .await;
        assert_eq!(after.boot_id, before.boot_id);
        assert!(after.sequence > before.sequence);
        assert_eq!(after.endpoints.len(), 3);
        let kept = &after.endpoints[&k1];
        assert_eq!(
            kept.state,
            VoteState::Down,
            "unchanged check lost its state"
        );
        assert!(kept.consecutive >= before.endpoints[&k1].consecutive);
        for k in [&k2, &k4] {
            assert_eq!(after.endpoints[k].state, VoteState::Unknown, "{k}");
            assert_eq!(after.endpoints[k].reason, "not checked yet", "{k}");
        }
        // The kept target is still being checked, the new ones start.
        let later = until(&mut rx, "2 and 4 up again", |r| {
            r.endpoints[&k2].state == VoteState::Up && r.endpoints[&k4].state == VoteState::Up
        })
        .await;
        assert_eq!(later.endpoints[&k1].state, VoteState::Down);
        assert!(later.endpoints[&k1].consecutive > kept.consecutive);
        assert_eq!(later.boot_id, before.boot_id);
        assert_eq!(
            later.interval_ms, 20,
            "report interval follows the new targets"
        );
        drop(open);
    }
}
