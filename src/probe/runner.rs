//! The prober's main loop: scheduled checks in, reports out.
//!
//! Owns: the check schedule (each endpoint on its own interval, with a random initial phase
//! and ±10 % jitter per round so probers and endpoints do not synchronise), the in-flight bound
//! (a semaphore), the rise/fall trackers, and building each [`ProbeReport`] (sequence numbers,
//! timestamps).
//!
//! Never: signs or sends reports (the sink does, normally `Pusher::publish`), or decides
//! health for DNS (nameservers aggregate many probers).
//!
//! A report is published when the loop starts, every `report_interval`, and at once whenever
//! an endpoint's rise/fall state changes.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::check::{CheckOutcome, Checker};
use super::state::{RiseFall, Tracker};
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

struct Slot {
    tracker: Tracker,
    last: Option<(CheckOutcome, SystemTime)>,
}

/// Runs checks and publishes reports to `sink` until `shutdown` completes.
pub async fn run(
    config: RunnerConfig,
    targets: Vec<ProbeTarget>,
    mut sink: impl FnMut(ProbeReport) + Send,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let (tx, mut rx) = mpsc::channel::<(usize, CheckOutcome, SystemTime)>(targets.len().max(1));
    let mut checks = JoinSet::new();
    for (idx, target) in targets.iter().enumerate() {
        let (tx, permits) = (tx.clone(), permits.clone());
        let (checker, ip, interval) = (target.checker.clone(), target.ip, target.interval);
        checks.spawn(async move {
            let mut next = Instant::now() + interval.mul_f64(rand::random_range(0.0..1.0));
            loop {
                tokio::time::sleep_until(next).await;
                let Ok(permit) = permits.acquire().await else {
                    return;
                };
                let outcome = checker.check(ip).await;
                drop(permit);
                if tx.send((idx, outcome, SystemTime::now())).await.is_err() {
                    return;
                }
                next = (next + interval.mul_f64(rand::random_range(0.9..1.1))).max(Instant::now());
            }
        });
    }
    drop(tx);

    let mut slots: Vec<Slot> = targets
        .iter()
        .map(|t| Slot {
            tracker: Tracker::new(t.thresholds),
            last: None,
        })
        .collect();
    let mut sequence = 0u64;
    let mut ticker = tokio::time::interval(config.report_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let publish = tokio::select! {
            () = &mut shutdown => break,
            _ = ticker.tick() => true,
            Some((idx, outcome, at)) = rx.recv() => {
                match slots.get_mut(idx) {
                    Some(slot) => {
                        let changed = slot.tracker.observe(outcome.ok).is_some();
                        slot.last = Some((outcome, at));
                        changed
                    }
                    None => false,
                }
            }
        };
        if publish {
            sequence += 1;
            sink(build_report(&config, &targets, &slots, sequence));
            // A change-triggered report restarts the period: no full report right behind it.
            ticker.reset();
        }
    }
    checks.abort_all();
}

fn build_report(
    config: &RunnerConfig,
    targets: &[ProbeTarget],
    slots: &[Slot],
    sequence: u64,
) -> ProbeReport {
    let endpoints = targets
        .iter()
        .zip(slots)
        .map(|(target, slot)| {
            let (latency_us, checked_at_ms, reason) = match &slot.last {
                Some((o, at)) => (
                    Some(u64::try_from(o.latency.as_micros()).unwrap_or(u64::MAX)),
                    Some(unix_ms(*at)),
                    o.reason.to_string(),
                ),
                None => (None, None, "not checked yet".to_owned()),
            };
            let report = EndpointReport {
                state: slot.tracker.state(),
                consecutive: slot.tracker.consecutive(),
                latency_us,
                checked_at_ms,
                reason,
            };
            (target.key.clone(), report)
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
    ) -> (mpsc::UnboundedReceiver<ProbeReport>, oneshot::Sender<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        tokio::spawn(run(
            config,
            targets,
            move |r| {
                let _ = tx.send(r);
            },
            async move {
                let _ = stop_rx.await;
            },
        ));
        (rx, stop_tx)
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
        let (mut rx, _stop) = start(config(Duration::from_secs(3600), 4), vec![t]);

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
        let (mut rx, stop) = start(config(Duration::from_millis(20), 4), Vec::new());
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
            let (_rx, stop) = start(config(Duration::from_secs(3600), bound), targets);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while served.load(Ordering::SeqCst) < 12 {
                assert!(tokio::time::Instant::now() < deadline, "checks not running");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            drop(stop);
            assert_eq!(peak.load(Ordering::SeqCst), want_peak, "bound {bound}");
        }
    }
}
