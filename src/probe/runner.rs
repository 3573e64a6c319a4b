//! The prober's main loop: scheduled checks in, reports out, new targets taken in place.
//!
//! Owns: the check schedule (each endpoint on its own interval, with a random initial phase
//! and ±10 % jitter per round so probers and endpoints do not synchronise), the in-flight bound
//! (a semaphore), the rise/fall trackers, and building each [`ProbeReport`] (sequence numbers,
//! timestamps).
//!
//! Never: signs or sends reports (the sink does, normally `Pusher::publish`), or decides
//! health for DNS (nameservers aggregate many probers).
//!
//! A report is published when the loop starts, every `report_interval`, at once whenever
//! an endpoint's rise/fall state changes, and after a [`TargetSet`] changed what is checked.
//!
//! # Reloads
//!
//! A reload hands the running loop a new [`TargetSet`] (over the `updates` channel); the loop
//! is never restarted for it. The boot id stays and the sequence keeps increasing, so
//! nameservers keep every vote. A target whose endpoint and check settings are unchanged
//! ([`ProbeTarget::same_check`]) keeps its rise/fall state, its last result and its schedule
//! (its check task only switches to the freshly built checker, e.g. a reloaded CA file); a
//! changed or new target starts fresh (`unknown` until `rise`/`fall` results); a removed one
//! is dropped from the next report.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::check::{CheckOutcome, Checker};
use super::state::{RiseFall, Tracker};
use super::targets::{config_digest, report_interval};
use crate::health::report::{EndpointKey, EndpointReport, ProbeReport, ProberId, unix_ms};

/// Default number of checks running at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

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

/// One target's state and its check task.
struct Slot {
    target: ProbeTarget,
    tracker: Tracker,
    last: Option<(CheckOutcome, SystemTime)>,
    /// The task checks with whatever checker this holds at the time.
    checker: watch::Sender<Arc<Checker>>,
    task: AbortHandle,
}

/// A check result, tagged with the slot it belongs to.
type CheckResult = (u64, CheckOutcome, SystemTime);

/// The check tasks and the state they feed.
struct Slots {
    slots: HashMap<u64, Slot>,
    next_id: u64,
    checks: JoinSet<()>,
    results: mpsc::Sender<CheckResult>,
    permits: Arc<Semaphore>,
}

impl Slots {
    fn start(&mut self, target: ProbeTarget) {
        let id = self.next_id;
        self.next_id += 1;
        let (checker_tx, checker_rx) = watch::channel(Arc::clone(&target.checker));
        let (tx, permits) = (self.results.clone(), Arc::clone(&self.permits));
        let (ip, interval) = (target.ip, target.interval);
        let task = self.checks.spawn(async move {
            let mut next = Instant::now() + interval.mul_f64(rand::random_range(0.0..1.0));
            loop {
                tokio::time::sleep_until(next).await;
                let Ok(permit) = permits.acquire().await else {
                    return;
                };
                let checker = Arc::clone(&checker_rx.borrow());
                let outcome = checker.check(ip).await;
                drop(permit);
                if tx.send((id, outcome, SystemTime::now())).await.is_err() {
                    return;
                }
                next = (next + interval.mul_f64(rand::random_range(0.9..1.1))).max(Instant::now());
            }
        });
        self.slots.insert(
            id,
            Slot {
                tracker: Tracker::new(target.thresholds),
                last: None,
                target,
                checker: checker_tx,
                task,
            },
        );
    }

    /// Replaces the targets: same checks keep their slot, the rest start or stop. Returns
    /// (kept, started, dropped).
    fn retarget(&mut self, targets: Vec<ProbeTarget>) -> (usize, usize, usize) {
        let mut old: HashMap<EndpointKey, u64> = self
            .slots
            .iter()
            .map(|(id, slot)| (slot.target.key.clone(), *id))
            .collect();
        let mut keep: HashMap<u64, Slot> = HashMap::new();
        let mut fresh = Vec::new();
        for target in targets {
            let same = old.get(&target.key).copied().filter(|id| {
                self.slots
                    .get(id)
                    .is_some_and(|s| s.target.same_check(&target))
            });
            match same.and_then(|id| self.slots.remove(&id).map(|slot| (id, slot))) {
                Some((id, mut slot)) => {
                    old.remove(&target.key);
                    slot.checker.send_replace(Arc::clone(&target.checker));
                    slot.target = target;
                    keep.insert(id, slot);
                }
                None => fresh.push(target),
            }
        }
        let dropped = self.slots.len();
        for slot in self.slots.values() {
            slot.task.abort();
        }
        self.slots = keep;
        let (kept, started) = (self.slots.len(), fresh.len());
        for target in fresh {
            self.start(target);
        }
        // Reap the aborted tasks.
        while self.checks.try_join_next().is_some() {}
        (kept, started, dropped)
    }
}

/// Runs checks and publishes reports to `sink` until `shutdown` completes, taking new target
/// sets from `updates` in place (module docs, "Reloads").
pub async fn run(
    mut config: RunnerConfig,
    targets: Vec<ProbeTarget>,
    mut updates: mpsc::UnboundedReceiver<TargetSet>,
    mut sink: impl FnMut(ProbeReport) + Send,
    shutdown: impl Future<Output = ()>,
) {
    // Bounded: a slow loop holds the check tasks back rather than queueing without limit.
    let (results, mut rx) = mpsc::channel::<CheckResult>(targets.len().clamp(64, 4096));
    let mut slots = Slots {
        slots: HashMap::new(),
        next_id: 0,
        checks: JoinSet::new(),
        results,
        permits: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
    };
    for target in targets {
        slots.start(target);
    }
    let mut sequence = 0u64;
    let mut ticker = report_ticker(config.report_interval, Instant::now());
    let mut updates_open = true;
    tokio::pin!(shutdown);
    loop {
        let publish = tokio::select! {
            () = &mut shutdown => break,
            _ = ticker.tick() => true,
            Some((id, outcome, at)) = rx.recv() => {
                match slots.slots.get_mut(&id) {
                    Some(slot) => {
                        let changed = slot.tracker.observe(outcome.ok).is_some();
                        slot.last = Some((outcome, at));
                        changed
                    }
                    // A target a reload removed or restarted: its result is no longer wanted.
                    None => false,
                }
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
                    tracing::info!(kept, started, dropped, "probe targets updated");
                    changed
                }
            },
        };
        if publish {
            sequence += 1;
            sink(build_report(&config, slots.slots.values(), sequence));
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
        assert_eq!(down.endpoints[&key].consecutive, 2);
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
            let targets = (1..=4)
                .map(|n| target(n, port, CheckKind::Http, Duration::from_millis(1)))
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

    /// Reads reports until `cond` holds for one (5 s at most).
    async fn until(
        rx: &mut mpsc::UnboundedReceiver<ProbeReport>,
        what: &str,
        cond: impl Fn(&ProbeReport) -> bool,
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
