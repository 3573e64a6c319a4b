//! The nameserver's health state: probe reports in, decisions and overrides out.
//!
//! Owns the [`HealthBook`], the overrides and the recent transitions, behind one mutex (the
//! control plane; the query path never sees it). Reports are verified, ingested and a
//! recompile is requested; a single task (`run`) decides at most every
//! [`RECOMPILE_SPACING`], also on a tick so staleness and grace take effect without reports,
//! and hands a [`HealthSnapshot`] to the publisher when anything changed.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::http::HeaderMap;
use hickory_proto::rr::Name;
use serde::Serialize;
use tokio::sync::Notify;

use super::aggregate::{Cause, Health, HealthBook, HealthView, IngestSummary, Transition};
use super::export::HealthMetrics;
use super::overrides::{Forced, NewOverride, Override, OverrideError, Overrides, Target};
use super::report::{EndpointKey, Keyring, ProbeReport, RejectReason, verify};
use crate::routing::compile::{EndpointHealth, EndpointState};

/// Least time between two recompiles caused by health, however many reports arrive.
pub const RECOMPILE_SPACING: Duration = Duration::from_millis(200);
/// How often health is re-decided without reports (staleness, grace, override expiry).
pub const DECIDE_TICK: Duration = Duration::from_millis(500);
/// Transitions kept for the status page.
pub const RECENT_TRANSITIONS: usize = 100;

/// What the table is compiled against: decided health plus overrides.
#[derive(Clone, Debug, Default)]
pub struct HealthSnapshot {
    view: HealthView,
    overrides: Overrides,
}

impl EndpointHealth for HealthSnapshot {
    fn state(&self, zone: &Name, service: &str, region: &str, address: IpAddr) -> EndpointState {
        let zone_text = zone.to_string();
        match self.overrides.find(&zone_text, service, region, address) {
            Some(Forced::Up) => return EndpointState::Up,
            Some(Forced::Down) => return EndpointState::Down,
            Some(Forced::Drain) => return EndpointState::Drain,
            None => {}
        }
        let Ok(key) = EndpointKey::new(&zone_text, service, address) else {
            return EndpointState::Up;
        };
        match self.view.health(&key) {
            Health::Up => EndpointState::Up,
            Health::Down => EndpointState::Down,
        }
    }
}

/// One state change, as kept for `/v1/status`.
#[derive(Clone, Debug, Serialize)]
pub struct TransitionRecord {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// `zone/service/address`.
    pub endpoint: String,
    /// Before.
    pub from: String,
    /// After.
    pub to: String,
    /// Why: `votes` or `grace_expired`.
    pub cause: Cause,
    /// Regions voting up / down.
    pub up_regions: usize,
    /// Regions voting down.
    pub down_regions: usize,
}

struct Inner {
    book: HealthBook,
    view: HealthView,
    overrides: Overrides,
    recent: VecDeque<TransitionRecord>,
    /// Something changed since the last snapshot was handed out.
    dirty: bool,
    known: Vec<EndpointKey>,
    /// When the last report (from any prober) was accepted.
    last_report: Option<Instant>,
}

/// Receives every endpoint health transition as it is decided (the webhooks: the daemon
/// passes `notify::Notifier::notify`, so this module does not depend on `notify`).
pub type TransitionSink = Box<dyn Fn(&Transition) + Send + Sync>;

/// Shared between the API, the embedded prober and the decide task.
pub struct HealthHub {
    inner: Mutex<Inner>,
    keyring: Mutex<Option<Keyring>>,
    wake: Notify,
    metrics: Arc<HealthMetrics>,
    notifier: OnceLock<TransitionSink>,
}

impl HealthHub {
    /// A hub that knows `known` endpoints, with the given grace period and accepted keys.
    pub fn new(
        known: Vec<EndpointKey>,
        grace: Duration,
        keyring: Option<Keyring>,
        metrics: Arc<HealthMetrics>,
    ) -> Self {
        let now = Instant::now();
        let mut book = HealthBook::new(known.iter().cloned(), now).with_grace(grace);
        let view = book.decide(now).view;
        Self {
            inner: Mutex::new(Inner {
                book,
                view,
                overrides: Overrides::default(),
                recent: VecDeque::new(),
                last_report: None,
                dirty: false,
                known,
            }),
            keyring: Mutex::new(keyring),
            wake: Notify::new(),
            metrics,
            notifier: OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the set of endpoints after a reload (votes of kept endpoints stay).
    pub fn set_known(&self, known: Vec<EndpointKey>) {
        let mut inner = self.lock();
        if inner.known == known {
            return;
        }
        inner.book.set_known(known.iter().cloned(), Instant::now());
        inner.known = known;
        inner.dirty = true;
        drop(inner);
        self.wake.notify_one();
    }

    /// The counters of report ingest and decisions (the API counts what it rejects before
    /// the hub sees it).
    pub fn metrics(&self) -> &HealthMetrics {
        &self.metrics
    }

    /// Sends every later transition to `notifier` too (first call wins).
    pub fn set_notifier(&self, notifier: TransitionSink) {
        if self.notifier.set(notifier).is_err() {
            tracing::warn!("a webhook notifier is already set; ignoring the second");
        }
    }

    /// Replaces the accepted prober keys (SIGHUP).
    pub fn set_keyring(&self, keyring: Option<Keyring>) {
        *self.keyring.lock().unwrap_or_else(|p| p.into_inner()) = keyring;
    }

    /// Verifies and ingests a signed report. Nothing changes on any error.
    pub fn accept_signed(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<IngestSummary, RejectReason> {
        let outcome = self.accept_signed_uncounted(headers, body);
        match &outcome {
            Ok(summary) => self
                .metrics
                .record_report_accepted(summary.unknown_endpoints),
            Err(reason) => self.metrics.record_report_rejected(*reason),
        }
        outcome
    }

    /// Verifies and ingests a signed report read from etcd (`etcd::votes`): as
    /// [`HealthHub::accept_signed`], except that a report already taken (it came over HTTP
    /// too, or was read again after a reconnect) is not counted as a rejected replay.
    pub fn accept_stored(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<IngestSummary, RejectReason> {
        let outcome = self.accept_signed_uncounted(headers, body);
        match &outcome {
            Ok(summary) => self
                .metrics
                .record_report_accepted(summary.unknown_endpoints),
            Err(RejectReason::Replay) => {}
            Err(reason) => self.metrics.record_report_rejected(*reason),
        }
        outcome
    }

    fn accept_signed_uncounted(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<IngestSummary, RejectReason> {
        let result = {
            let keyring = self.keyring.lock().unwrap_or_else(|p| p.into_inner());
            match keyring.as_ref() {
                Some(k) => verify(headers, body, k, SystemTime::now()),
                None => Err(RejectReason::UnknownKey),
            }
        };
        result.and_then(|report| self.ingest(&report))
    }

    /// Ingests a report from the embedded prober (same process: no signature).
    pub fn ingest(&self, report: &ProbeReport) -> Result<IngestSummary, RejectReason> {
        let now = Instant::now();
        let summary = {
            let mut inner = self.lock();
            let summary = inner.book.ingest(report, now)?;
            inner.last_report = Some(now);
            summary
        };
        self.wake.notify_one();
        Ok(summary)
    }

    /// How long ago the newest report was accepted (`None` before the first): cheap, for
    /// `/health`, which load balancers poll.
    pub fn newest_report_age(&self) -> Option<Duration> {
        self.lock().last_report.map(|t| t.elapsed())
    }

    /// Decides now; true if the decided state or the overrides changed since the last call.
    pub fn decide(&self) -> bool {
        let now = Instant::now();
        let mut inner = self.lock();
        let decision = inner.book.decide(now);
        let expired = inner.overrides.expire(SystemTime::now());
        for o in &expired {
            tracing::info!(id = o.id, target = ?o.target, state = ?o.state, reason = %o.reason, "override expired");
        }
        let changed = !decision.transitions.is_empty() || !expired.is_empty() || inner.dirty;
        let at_ms = crate::health::report::unix_ms(SystemTime::now());
        for t in &decision.transitions {
            tracing::warn!(
                zone = t.key.zone(),
                service = t.key.service(),
                endpoint = %t.key.address(),
                from = %t.from,
                to = %t.to,
                cause = ?t.cause,
                up_regions = t.votes.up_regions,
                down_regions = t.votes.down_regions,
                "endpoint health changed"
            );
            self.metrics.record_transition();
            if let Some(notify) = self.notifier.get() {
                notify(t);
            }
            inner.recent.push_front(TransitionRecord {
                at_ms,
                endpoint: t.key.to_string(),
                from: t.from.to_string(),
                to: t.to.to_string(),
                cause: t.cause,
                up_regions: t.votes.up_regions,
                down_regions: t.votes.down_regions,
            });
        }
        inner.recent.truncate(RECENT_TRANSITIONS);
        inner.view = decision.view;
        inner.dirty = false;
        self.metrics
            .set_health_gauges(inner.view.down_count(), inner.overrides.list().len());
        changed
    }

    /// What the next table compiles against.
    pub fn snapshot(&self) -> HealthSnapshot {
        let inner = self.lock();
        HealthSnapshot {
            view: inner.view.clone(),
            overrides: inner.overrides.clone(),
        }
    }

    /// The current decided view (for `/v1/status`).
    pub fn view(&self) -> HealthView {
        self.lock().view.clone()
    }

    /// Recent transitions, newest first.
    pub fn recent(&self) -> Vec<TransitionRecord> {
        self.lock().recent.iter().cloned().collect()
    }

    /// Adds an override; `matches_any` checks the target names something.
    pub fn add_override(
        &self,
        new: NewOverride,
        matches_any: impl Fn(&Target) -> bool,
    ) -> Result<Override, OverrideError> {
        let mut inner = self.lock();
        let o = inner.overrides.add(new, SystemTime::now(), matches_any)?;
        tracing::warn!(id = o.id, target = ?o.target, state = ?o.state, expires_at = o.expires_at, reason = %o.reason, "override added");
        inner.dirty = true;
        drop(inner);
        self.wake.notify_one();
        Ok(o)
    }

    /// Removes an override.
    pub fn remove_override(&self, id: u64) -> bool {
        let mut inner = self.lock();
        let removed = inner.overrides.remove(id);
        if removed {
            tracing::warn!(id, "override removed");
            inner.dirty = true;
            drop(inner);
            self.wake.notify_one();
        }
        removed
    }

    /// Active overrides.
    pub fn overrides(&self) -> Vec<Override> {
        self.lock().overrides.list().to_vec()
    }

    /// Decides on every wake-up or tick and calls `publish` with a snapshot when something
    /// changed, never more often than [`RECOMPILE_SPACING`]. Runs until the process ends.
    pub async fn run(self: Arc<Self>, publish: impl Fn(HealthSnapshot) + Send + Sync + 'static) {
        let publish = Arc::new(publish);
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(DECIDE_TICK) => {}
            }
            if self.decide() {
                let snapshot = self.snapshot();
                let publish = Arc::clone(&publish);
                let _ = tokio::task::spawn_blocking(move || publish(snapshot)).await;
            }
            tokio::time::sleep(RECOMPILE_SPACING).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::report::{EndpointReport, ProberId, VoteState, unix_ms};

    fn key(n: u8) -> EndpointKey {
        EndpointKey::new("shop.example", "www", [192, 0, 2, n].into()).unwrap()
    }

    fn down_report(sequence: u64) -> ProbeReport {
        ProbeReport {
            prober_id: ProberId::new("p1"),
            region: "eu".into(),
            boot_id: "b1".into(),
            sequence,
            sent_at_ms: unix_ms(SystemTime::now()),
            interval_ms: 60_000,
            config_digest: "d".into(),
            endpoints: [(
                key(1),
                EndpointReport {
                    state: VoteState::Down,
                    consecutive: 3,
                    latency_us: None,
                    checked_at_ms: None,
                    reason: "connect refused".into(),
                },
            )]
            .into(),
        }
    }

    #[test]
    fn a_reload_never_resets_the_book() {
        let hub = HealthHub::new(
            vec![key(1), key(2)],
            DEFAULT_GRACE_FOR_TEST,
            None,
            Arc::default(),
        );
        hub.ingest(&down_report(1)).unwrap();
        hub.decide();
        // One region alone decides once the book is a freshness window old (3 x 60 s): the
        // vote is what must survive here, and the decision where it can be made.
        let before = hub.view().status()[&key(1)].votes.clone();
        assert_eq!(before.len(), 1);

        // The reload: the same endpoints, then one more, then one fewer.
        hub.set_known(vec![key(1), key(2)]);
        hub.set_known(vec![key(1), key(2), key(3)]);
        hub.set_known(vec![key(1), key(3)]);
        hub.decide();
        let view = hub.view();
        let after = &view.status()[&key(1)].votes;
        assert_eq!(after.len(), 1, "the vote was dropped by a reload");
        assert_eq!(
            (after[0].boot_id.as_str(), after[0].sequence, after[0].state),
            ("b1", 1, VoteState::Down)
        );
        assert!(view.status().contains_key(&key(3)));
        assert!(!view.status().contains_key(&key(2)));
        // Replay memory too: the same sequence is still refused after the reloads.
        assert_eq!(hub.ingest(&down_report(1)), Err(RejectReason::Replay));
        assert!(hub.ingest(&down_report(2)).is_ok());
    }

    const DEFAULT_GRACE_FOR_TEST: Duration = Duration::from_secs(300);
}
