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

use super::aggregate::{
    Cause, Health, HealthBook, HealthView, IngestSummary, Severity, Transition, severity,
};
use super::export::HealthMetrics;
use super::overrides::{
    Answerable, Forced, NewOverride, Override, OverrideError, Overrides, Target,
};
use super::report::{EndpointKey, Keyring, ProbeReport, RejectReason, verify};
use crate::routing::RoutingTable;
use crate::routing::compile::{EndpointDetail, EndpointHealth, EndpointState};

/// Least time between two recompiles caused by health, however many reports arrive.
pub const RECOMPILE_SPACING: Duration = Duration::from_millis(200);
/// How often health is re-decided without reports (staleness, grace, override expiry).
pub const DECIDE_TICK: Duration = Duration::from_millis(500);
/// One endpoint of the configuration, as the hub needs it (see [`HealthHub::set_layout`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LayoutEntry {
    /// The endpoint.
    pub key: EndpointKey,
    /// Its region's name.
    pub region: String,
    /// Its service's `slow_start`, when the service has a check and one.
    pub slow_start: Option<Duration>,
    /// Its check's shedding thresholds.
    pub shed: crate::config::check::Shed,
}

/// Whether each service `(zone, service)` and each region of a service has a serving endpoint.
#[derive(Default)]
struct Serving {
    services: std::collections::HashMap<(String, String), bool>,
    regions: std::collections::HashMap<((String, String), String), bool>,
    region_of: std::collections::HashMap<EndpointKey, String>,
}

/// Smallest change of a shedding factor that recompiles the table (1 % of a weight): loads
/// move all the time, and below `shed_above` they change nothing.
const SHED_STEP: f64 = 0.01;

/// How often the table is recompiled while an endpoint or region is ramping up (slow start):
/// the weights are computed at compile time, so the ramp moves in steps this long. No ramp,
/// no recompiles.
pub const RAMP_STEP: Duration = Duration::from_secs(1);
/// Transitions kept for the status page.
pub const RECENT_TRANSITIONS: usize = 100;

/// What the table is compiled against: decided health plus overrides.
#[derive(Clone, Debug, Default)]
pub struct HealthSnapshot {
    view: HealthView,
    overrides: Overrides,
}

impl HealthSnapshot {
    /// The decided view (the control plane compares two snapshots to rebuild only what
    /// changed: `control::health_change`).
    pub fn view(&self) -> &HealthView {
        &self.view
    }

    /// The overrides in force.
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }
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

    fn detail(&self, zone: &Name, service: &str, address: IpAddr) -> EndpointDetail {
        let Ok(key) = EndpointKey::new(&zone.to_string(), service, address) else {
            return EndpointDetail::default();
        };
        let s = self.view.signals(&key);
        EndpointDetail {
            load: s.load,
            weight: s.weight,
            recovered_for: s.recovered_for,
            transition: s.transition,
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
    /// `slow_start` of the endpoints whose service has one.
    slow_start: std::collections::HashMap<EndpointKey, Duration>,
    /// When a snapshot was last handed out because of a ramp.
    ramp_published: Option<Instant>,
    /// Every endpoint's region and slow start.
    layout: Vec<LayoutEntry>,
    /// When an override that kept an endpoint out of answers (down or drain) was lifted:
    /// the endpoint comes back then and ramps like a recovery (slow start). Kept until its
    /// `slow_start` has passed.
    lifted: std::collections::HashMap<EndpointKey, Instant>,
}

/// Something the webhooks report.
#[derive(Clone, Copy, Debug)]
pub enum HealthEvent<'a> {
    /// An endpoint changed state, and how bad that is.
    Endpoint(&'a Transition, Severity),
    /// A drain override became complete (no resolver can still hold its endpoints).
    DrainComplete(&'a Override),
    /// An up endpoint started (P3) or stopped (P4) shedding load.
    Shedding(&'a Shedding),
}

/// An up endpoint whose reported load started or stopped shedding its weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Shedding {
    /// The endpoint.
    pub key: EndpointKey,
    /// Its region.
    pub region: String,
    /// True when it started shedding (P3), false when it stopped (P4).
    pub started: bool,
    /// The load now (median of the fresh votes), 0.0-1.0.
    pub load: f64,
    /// The share of its weight it keeps now, 0.0-1.0.
    pub weight_factor: f64,
}

impl Shedding {
    /// P3 when it started, P4 (a recovery) when it stopped.
    pub fn severity(&self) -> Severity {
        if self.started {
            Severity::P3
        } else {
            Severity::P4
        }
    }
}

/// Receives every endpoint health transition and completed drain as it is decided (the
/// webhooks: the daemon passes `notify::Notifier::notify`, so this module does not depend on
/// `notify`).
pub type TransitionSink = Box<dyn Fn(HealthEvent<'_>) + Send + Sync>;

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
                slow_start: std::collections::HashMap::new(),
                ramp_published: None,
                layout: Vec::new(),
                lifted: std::collections::HashMap::new(),
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

    /// Sets every endpoint's region and `slow_start` (start and reload): alerts are graded
    /// by whether their service and region still have a serving endpoint, and the hub
    /// republishes every [`RAMP_STEP`] while an endpoint with a `slow_start` ramps.
    pub fn set_layout(&self, layout: Vec<LayoutEntry>) {
        let mut inner = self.lock();
        inner.slow_start = layout
            .iter()
            .filter_map(|e| e.slow_start.map(|d| (e.key.clone(), d)))
            .collect();
        inner.layout = layout;
    }

    /// Which services and regions of services still have a serving endpoint (health and
    /// overrides applied): one walk of the layout per decision, whatever the transitions.
    fn serving_places(inner: &Inner) -> Serving {
        let mut serving = Serving::default();
        for e in &inner.layout {
            let zone = e.key.zone();
            let up = match inner
                .overrides
                .find(zone, e.key.service(), &e.region, e.key.address())
            {
                Some(Forced::Down) => false,
                Some(Forced::Up | Forced::Drain) => true,
                None => inner.view.is_up(&e.key),
            };
            let service = (zone.to_owned(), e.key.service().to_owned());
            *serving.services.entry(service.clone()).or_default() |= up;
            *serving
                .regions
                .entry((service, e.region.clone()))
                .or_default() |= up;
            serving.region_of.insert(e.key.clone(), e.region.clone());
        }
        serving
    }

    /// How bad an endpoint transition is, given what still serves after the decision.
    fn grade(serving: &Serving, t: &Transition) -> Severity {
        let service = (t.key.zone().to_owned(), t.key.service().to_owned());
        let region = serving.region_of.get(&t.key).cloned().unwrap_or_default();
        // Endpoints the layout does not know (a reload removed them) count as serving.
        let service_serving = serving.services.get(&service).copied().unwrap_or(true);
        let region_serving = serving
            .regions
            .get(&(service, region))
            .copied()
            .unwrap_or(true);
        severity(t.to, service_serving, region_serving)
    }

    /// True when `next` would weigh some endpoint differently from `inner.view`: its weight
    /// hint, its transition flag (dynamic TTL) or its shedding factor changed.
    fn weights_moved(inner: &Inner, next: &HealthView) -> bool {
        inner.layout.iter().any(|e| {
            let (a, b) = (inner.view.signals(&e.key), next.signals(&e.key));
            let factor = |l: Option<f64>| l.map_or(1.0, |l| e.shed.factor(l));
            a.weight != b.weight
                || a.transition != b.transition
                || (factor(a.load) - factor(b.load)).abs() >= SHED_STEP
        })
    }

    /// Up endpoints that started or stopped shedding between `before` and `after`. Starting
    /// takes a factor at least [`SHED_STEP`] below full, stopping takes full weight again, so
    /// a load hovering at `shed_above` does not page on every report.
    fn shedding_changes(inner: &Inner, before: &HealthView, after: &HealthView) -> Vec<Shedding> {
        let factor = |view: &HealthView, e: &LayoutEntry| {
            view.signals(&e.key)
                .load
                .map_or((1.0, 0.0), |l| (e.shed.factor(l), l))
        };
        inner
            .layout
            .iter()
            .filter(|e| before.is_up(&e.key) && after.is_up(&e.key))
            .filter_map(|e| {
                let ((was, _), (now, load)) = (factor(before, e), factor(after, e));
                let started = was >= 1.0 && now <= 1.0 - SHED_STEP;
                let stopped = was < 1.0 && now >= 1.0;
                (started || stopped).then(|| Shedding {
                    key: e.key.clone(),
                    region: e.region.clone(),
                    started,
                    load,
                    weight_factor: now,
                })
            })
            .collect()
    }

    /// Records as lifted now every endpoint of the layout that `before` kept out of answers
    /// (down or drain) and the current overrides no longer do.
    fn note_lifted(inner: &mut Inner, before: &Overrides, now: Instant) {
        let out = |o: &Overrides, e: &LayoutEntry| {
            matches!(
                o.find(e.key.zone(), e.key.service(), &e.region, e.key.address()),
                Some(Forced::Down | Forced::Drain)
            )
        };
        let lifted: Vec<EndpointKey> = inner
            .layout
            .iter()
            .filter(|e| e.slow_start.is_some() && out(before, e) && !out(&inner.overrides, e))
            .map(|e| e.key.clone())
            .collect();
        for key in lifted {
            inner.lifted.insert(key, now);
        }
    }

    /// Applies the lifted overrides to the view: an endpoint is back since the lift at most
    /// (module docs of `aggregate`, "slow start"); forgets lifts older than their ramp.
    fn apply_lifted(inner: &mut Inner, now: Instant) {
        let Inner {
            lifted,
            slow_start,
            view,
            ..
        } = inner;
        lifted.retain(|key, at| {
            let since = now.saturating_duration_since(*at);
            let ramping = slow_start.get(key).is_some_and(|total| since < *total);
            if ramping {
                view.back_within(key, since);
            }
            ramping
        });
    }

    /// True while an endpoint with a `slow_start` is within it since it came back.
    fn ramping(inner: &Inner) -> bool {
        inner.view.status().iter().any(|(key, status)| {
            let back = status.signals.recovered_for;
            inner
                .slow_start
                .get(key)
                .is_some_and(|total| back.is_some_and(|t| t < *total))
        })
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
            let checks = inner.book.new_checks(report);
            let summary = inner.book.ingest(report, now)?;
            inner.last_report = Some(now);
            for (key, latency_us) in &checks {
                self.metrics.observe_check_latency(key, *latency_us);
            }
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
        let before = (!inner.overrides.list().is_empty()).then(|| inner.overrides.clone());
        let expired = inner.overrides.expire(SystemTime::now());
        if let (Some(before), false) = (&before, expired.is_empty()) {
            Self::note_lifted(&mut inner, before, now);
        }
        for o in inner.overrides.complete_drains(SystemTime::now()) {
            let at = o.drain.map_or(0, |d| d.complete_at_ms);
            tracing::info!(id = o.id, target = ?o.target, complete_at_ms = at, "drain complete");
            self.metrics.record_alert(Severity::P4);
            if let Some(notify) = self.notifier.get() {
                notify(HealthEvent::DrainComplete(&o));
            }
        }
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
        let was_ramping = Self::ramping(&inner);
        let moved = Self::weights_moved(&inner, &decision.view);
        let shedding = Self::shedding_changes(&inner, &inner.view, &decision.view);
        inner.view = decision.view;
        Self::apply_lifted(&mut inner, now);
        for s in &shedding {
            tracing::warn!(
                zone = s.key.zone(),
                service = s.key.service(),
                endpoint = %s.key.address(),
                load = s.load,
                weight_factor = s.weight_factor,
                started = s.started,
                "endpoint shedding changed"
            );
            self.metrics.record_alert(s.severity());
            if let Some(notify) = self.notifier.get() {
                notify(HealthEvent::Shedding(s));
            }
        }
        // Graded against every endpoint's state after this decision.
        let serving = if decision.transitions.is_empty() {
            Serving::default()
        } else {
            Self::serving_places(&inner)
        };
        for t in &decision.transitions {
            let grade = Self::grade(&serving, t);
            self.metrics.record_alert(grade);
            if let Some(notify) = self.notifier.get() {
                notify(HealthEvent::Endpoint(t, grade));
            }
        }
        inner.dirty = false;
        // A ramp moves the weights without any state changing: publish every RAMP_STEP while
        // one runs, and once more when the last one ends (so the full weights are compiled).
        let ramping = Self::ramping(&inner);
        let step_due = inner
            .ramp_published
            .is_none_or(|at| now.saturating_duration_since(at) >= RAMP_STEP);
        let changed = changed || moved || (ramping && step_due) || (was_ramping && !ramping);
        if changed && ramping {
            inner.ramp_published = Some(now);
        }
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

    /// Records the table just published for the drains (see `overrides`, "Drains that
    /// finish"); the control plane calls it after every swap, and right after adding an
    /// override with the table that still serves.
    pub fn observe_table(&self, table: &RoutingTable) {
        let mut entries: Vec<Answerable<'_>> = Vec::new();
        let zones: Vec<(String, &crate::routing::table::ZoneTable)> =
            table.zones().map(|z| (z.origin.to_string(), z)).collect();
        for (origin, zone) in &zones {
            for service in &zone.services {
                // An endpoint at weight 0 is answered only while nothing weighted and healthy
                // of its family is (select's standby pass).
                let weighted = |v4: bool| {
                    service
                        .endpoints
                        .iter()
                        .any(|o| o.healthy && o.weight > 0 && o.address.is_ipv4() == v4)
                };
                let (v4, v6) = (weighted(true), weighted(false));
                for region in &service.regions {
                    let members = service
                        .endpoints
                        .get(region.endpoints.clone())
                        .unwrap_or(&[]);
                    for ep in members {
                        let peer = if ep.address.is_ipv4() { v4 } else { v6 };
                        entries.push(Answerable {
                            zone: origin,
                            service: &service.key,
                            region: &region.name,
                            address: ep.address,
                            answerable: ep.healthy && (ep.weight > 0 || !peer),
                            ttl: service.ttl,
                        });
                    }
                }
            }
        }
        self.lock().overrides.observe(SystemTime::now(), entries);
    }

    /// Removes an override.
    pub fn remove_override(&self, id: u64) -> bool {
        let mut inner = self.lock();
        let before = inner.overrides.clone();
        let removed = inner.overrides.remove(id);
        if removed {
            Self::note_lifted(&mut inner, &before, Instant::now());
            tracing::warn!(id, "override removed");
            inner.dirty = true;
            drop(inner);
            self.wake.notify_one();
        }
        removed
    }

    /// The drain progress of an endpoint under a drain override.
    pub fn drain_of(
        &self,
        zone: &str,
        service: &str,
        region: &str,
        address: IpAddr,
    ) -> Option<super::overrides::DrainProgress> {
        self.lock()
            .overrides
            .drain_of(zone, service, region, address)
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
    use crate::health::overrides::{Forced, NewOverride, Target};
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
                    load: None,
                    weight: None,
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

    fn up_report(sequence: u64, load: f64) -> ProbeReport {
        let mut r = down_report(sequence);
        for e in r.endpoints.values_mut() {
            e.state = VoteState::Up;
            e.reason = "ok".into();
            e.load = Some(load);
        }
        r
    }

    fn layout_entry(n: u8, slow_start: Option<Duration>) -> LayoutEntry {
        LayoutEntry {
            key: key(n),
            region: "a".into(),
            slow_start,
            shed: crate::config::check::Shed::default(),
        }
    }

    fn forced(address: Option<u8>, state: Forced) -> NewOverride {
        NewOverride {
            target: Target {
                zone: "shop.example.".into(),
                service: "www".into(),
                region: address.is_none().then(|| "a".to_owned()),
                address: address.map(|n| key(n).address()),
            },
            state,
            expires_in_seconds: 60,
            reason: "test".into(),
        }
    }

    #[test]
    fn lifting_a_down_or_drain_override_starts_the_slow_start_ramp() {
        let minute = Some(Duration::from_secs(60));
        // (override on endpoint 1 or on region a, its state)
        for (address, state) in [
            (Some(1), Forced::Down),
            (None, Forced::Down),
            (Some(1), Forced::Drain),
        ] {
            let hub = HealthHub::new(
                vec![key(1), key(2)],
                DEFAULT_GRACE_FOR_TEST,
                None,
                Arc::default(),
            );
            hub.set_layout(vec![layout_entry(1, minute), layout_entry(2, None)]);
            hub.decide();
            let back = |n: u8| hub.view().signals(&key(n)).recovered_for;
            assert_eq!(back(1), None, "up from the start: no ramp");
            let o = hub.add_override(forced(address, state), |_| true).unwrap();
            hub.decide();
            assert!(hub.remove_override(o.id));
            hub.decide();
            let ramp = back(1).unwrap_or_else(|| panic!("{address:?} {state:?}: no ramp"));
            assert!(ramp < Duration::from_secs(30), "{ramp:?}");
            assert_eq!(back(2), None, "no slow_start, no ramp");
            assert!(HealthHub::ramping(&hub.lock()));
        }
    }

    #[test]
    fn an_expired_down_override_starts_the_ramp_too() {
        let hub = HealthHub::new(vec![key(1)], DEFAULT_GRACE_FOR_TEST, None, Arc::default());
        hub.set_layout(vec![layout_entry(1, Some(Duration::from_secs(60)))]);
        let before = hub.lock().overrides.clone();
        hub.add_override(forced(Some(1), Forced::Down), |_| true)
            .unwrap();
        // Expiry is what decide() does with the overrides; lift the same way it does.
        let mut inner = hub.lock();
        let with = inner.overrides.clone();
        inner.overrides = before;
        HealthHub::note_lifted(&mut inner, &with, Instant::now());
        drop(inner);
        hub.decide();
        assert!(hub.view().signals(&key(1)).recovered_for.is_some());
    }

    #[test]
    fn shedding_start_pages_p3_and_its_end_p4() {
        let hub = HealthHub::new(vec![key(1)], DEFAULT_GRACE_FOR_TEST, None, Arc::default());
        hub.set_layout(vec![layout_entry(1, None)]);
        let events: Arc<Mutex<Vec<(bool, Severity, f64)>>> = Arc::default();
        let sink = Arc::clone(&events);
        hub.set_notifier(Box::new(move |e| {
            if let HealthEvent::Shedding(s) = e {
                sink.lock().unwrap().push((s.started, s.severity(), s.load));
            }
        }));
        // Rising load: 0.5 and 0.8 shed nothing (shed_above 0.8), 0.9 does, 0.93 still does,
        // then 0.3 stops it.
        for (seq, load) in [(1, 0.5), (2, 0.8), (3, 0.9), (4, 0.93), (5, 0.3)] {
            hub.ingest(&up_report(seq, load)).unwrap();
            hub.decide();
        }
        assert_eq!(
            *events.lock().unwrap(),
            [(true, Severity::P3, 0.9), (false, Severity::P4, 0.3)]
        );
        assert_eq!(hub.metrics().alerts_of(Severity::P3), 1);
        assert_eq!(hub.metrics().alerts_of(Severity::P4), 1);
    }

    const DEFAULT_GRACE_FOR_TEST: Duration = Duration::from_secs(300);

    #[test]
    fn alerts_are_graded_by_what_still_serves() {
        use crate::health::aggregate::Tally;
        let hub = HealthHub::new(
            vec![key(1), key(2), key(3)],
            DEFAULT_GRACE_FOR_TEST,
            None,
            Arc::default(),
        );
        let entry = |n: u8, region: &str| LayoutEntry {
            key: key(n),
            region: region.into(),
            slow_start: None,
            shed: crate::config::check::Shed::default(),
        };
        hub.set_layout(vec![entry(1, "a"), entry(2, "a"), entry(3, "b")]);
        let down = |n: u8| {
            hub.add_override(
                NewOverride {
                    target: Target {
                        zone: "shop.example.".into(),
                        service: "www".into(),
                        region: None,
                        address: Some(key(n).address()),
                    },
                    state: Forced::Down,
                    expires_in_seconds: 60,
                    reason: "test".into(),
                },
                |_| true,
            )
            .unwrap();
        };
        let t = |n: u8, to: Health| Transition {
            key: key(n),
            from: Health::Up,
            to,
            cause: Cause::Votes,
            votes: Tally::default(),
        };
        let grade = |n: u8, to: Health| {
            let inner = hub.lock();
            HealthHub::grade(&HealthHub::serving_places(&inner), &t(n, to))
        };
        // (endpoint forced down now, endpoint graded, severity)
        assert_eq!(grade(1, Health::Up), Severity::P4);
        down(1);
        assert_eq!(grade(1, Health::Down), Severity::P3, "2 still serves in a");
        down(2);
        assert_eq!(grade(2, Health::Down), Severity::P2, "region a is empty");
        down(3);
        assert_eq!(grade(3, Health::Down), Severity::P1, "nothing serves");
    }
}
