//! The nameserver's health state: probe reports in, decisions and overrides out.
//!
//! Owns the [`HealthBook`], the overrides and the recent transitions, behind one mutex (the
//! control plane; the query path never sees it). Reports are verified, ingested and a
//! recompile is requested; a single task (`run`) decides on that wake-up, also on a tick so
//! staleness and grace take effect without reports, and hands a [`HealthSnapshot`] to the
//! publisher when anything changed, at most once every [`RECOMPILE_SPACING`].
//!
//! The hub's own work per decision, override or reload follows what changed, not the size
//! of the table: the layout is looked up by zone and service, ramping endpoints are a set,
//! and a swap is observed for drains by the services it rebuilt. (The health book decides
//! every checked endpoint each time: `aggregate`.)

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
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
    Answerable, Answering, Forced, NewOverride, NoTable, Override, OverrideError, Overrides,
    Target, zone_key,
};
use super::report::{EndpointKey, Keyring, ProbeReport, RejectReason, verify};
use crate::routing::RoutingTable;
use crate::routing::compile::{EndpointDetail, EndpointHealth, EndpointState};
use crate::routing::publish::HealthChange;
use crate::routing::select::Service;
use crate::routing::table::{ZoneTable, key_wire};

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

/// Where an endpoint sits, as the hub keeps it ([`Layout`]).
#[derive(Clone, Debug)]
struct Placed {
    address: IpAddr,
    /// Its region (interned: one allocation per region name, not per endpoint).
    region: Arc<str>,
    slow_start: Option<Duration>,
    shed: crate::config::check::Shed,
}

/// Every endpoint's region, slow start and shedding, by zone (as endpoint keys name it) and
/// service: a decision looks up the services it concerns instead of walking every endpoint,
/// and a reload replaces the zones it changed.
#[derive(Debug, Default)]
struct Layout {
    zones: HashMap<String, HashMap<String, Vec<Placed>, Fast>, Fast>,
    regions: HashSet<Arc<str>, Fast>,
}

/// The hasher of the hub's maps: keyed by the operator's own zone and service names, rebuilt
/// at every start and reload; SipHash was a tenth of the start-up time at a million services.
type Fast = foldhash::fast::RandomState;

impl Layout {
    /// The endpoints of a service (none when the layout does not know it).
    fn service(&self, zone: &str, service: &str) -> &[Placed] {
        self.zones
            .get(zone)
            .and_then(|services| services.get(service))
            .map_or(&[], Vec::as_slice)
    }

    fn endpoint(&self, key: &EndpointKey) -> Option<&Placed> {
        self.service(key.zone(), key.service())
            .iter()
            .find(|p| p.address == key.address())
    }

    /// Replaces the zones named by the endpoints of `entries` (each entry is in one of
    /// `zones`, which may name zones that have no endpoint now).
    fn replace<'z>(&mut self, zones: impl IntoIterator<Item = &'z str>, entries: Vec<LayoutEntry>) {
        for zone in zones {
            self.zones.remove(zone);
        }
        for e in entries {
            let region = match self.regions.get(e.region.as_str()) {
                Some(r) => Arc::clone(r),
                None => {
                    let r: Arc<str> = Arc::from(e.region.as_str());
                    self.regions.insert(Arc::clone(&r));
                    r
                }
            };
            let zone = e.key.zone();
            if !self.zones.contains_key(zone) {
                self.zones.insert(zone.to_owned(), HashMap::default());
            }
            let Some(services) = self.zones.get_mut(zone) else {
                continue;
            };
            let placed = Placed {
                address: e.key.address(),
                region,
                slow_start: e.slow_start,
                shed: e.shed,
            };
            match services.get_mut(e.key.service()) {
                Some(list) => list.push(placed),
                None => {
                    services.insert(e.key.service().to_owned(), vec![placed]);
                }
            }
        }
    }
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
    /// When the last report (from any prober) was accepted.
    last_report: Option<Instant>,
    /// When a snapshot was last handed out because of a ramp.
    ramp_published: Option<Instant>,
    /// Every checked endpoint's region, slow start and shedding.
    layout: Layout,
    /// The table the drains observed last (`overrides`: plain endpoints are read from it).
    observed: Option<Arc<RoutingTable>>,
    /// When an override that kept an endpoint out of answers (down or drain) was lifted:
    /// the endpoint comes back then and ramps like a recovery (slow start). Kept until its
    /// `slow_start` has passed.
    lifted: HashMap<EndpointKey, Instant>,
    /// Endpoints that may be ramping (slow start): those that came back (a transition to up,
    /// a lifted override) since, pruned once their ramp is over. A decision checks these,
    /// not every endpoint.
    ramps: HashSet<EndpointKey>,
    /// Endpoints visited by the hub's walks (layout, views, observed tables): the work a
    /// decision or an override costs, for tests that it does not grow with the table.
    walked: Cell<u64>,
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
        let mut book = HealthBook::new(known, now).with_grace(grace);
        let view = book.decide(now).view;
        Self {
            inner: Mutex::new(Inner {
                book,
                view,
                overrides: Overrides::default(),
                recent: VecDeque::new(),
                last_report: None,
                dirty: false,
                ramp_published: None,
                layout: Layout::default(),
                observed: None,
                lifted: HashMap::new(),
                ramps: HashSet::new(),
                walked: Cell::new(0),
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

    /// Replaces the set of endpoints (votes of kept endpoints stay). A reload calls
    /// [`HealthHub::replace_zones`] with the zones it changed instead.
    pub fn set_known(&self, known: Vec<EndpointKey>) {
        let mut inner = self.lock();
        if !inner.book.set_known(known, Instant::now()) {
            return;
        }
        inner.dirty = true;
        drop(inner);
        self.wake.notify_one();
    }

    /// Sets every endpoint's region and `slow_start` (start): alerts are graded by whether
    /// their service and region still have a serving endpoint, and the hub republishes every
    /// [`RAMP_STEP`] while an endpoint with a `slow_start` ramps.
    pub fn set_layout(&self, layout: Vec<LayoutEntry>) {
        let mut inner = self.lock();
        inner.layout = Layout::default();
        Self::place(&mut inner, std::iter::empty(), layout);
    }

    /// After a reload: the endpoints and layout of the zones it changed (`zones`, lowercase
    /// without the trailing dot, as endpoint keys name them; added, edited or removed), which
    /// `known` and `layout` list in full. Other zones keep what they had, without a walk.
    pub fn replace_zones(
        &self,
        zones: &HashSet<String>,
        known: Vec<EndpointKey>,
        layout: Vec<LayoutEntry>,
    ) {
        if zones.is_empty() {
            return;
        }
        let mut inner = self.lock();
        let changed = inner.book.set_known_in(zones, known, Instant::now());
        Self::place(&mut inner, zones.iter().map(String::as_str), layout);
        if changed {
            inner.dirty = true;
            drop(inner);
            self.wake.notify_one();
        }
    }

    /// Puts `layout` in place of the layout of `zones`; its endpoints that came back may
    /// ramp now (their `slow_start` may be new).
    fn place<'z>(
        inner: &mut Inner,
        zones: impl IntoIterator<Item = &'z str>,
        layout: Vec<LayoutEntry>,
    ) {
        let back: Vec<EndpointKey> = layout
            .iter()
            .filter(|e| e.slow_start.is_some())
            .filter(|e| inner.view.signals(&e.key).recovered_for.is_some())
            .map(|e| e.key.clone())
            .collect();
        inner.layout.replace(zones, layout);
        inner.ramps.extend(back);
    }

    fn walk(inner: &Inner, endpoints: usize) {
        inner.walked.set(inner.walked.get() + endpoints as u64);
    }

    /// How bad an endpoint transition is, given what still serves after the decision (health
    /// and overrides applied): its service's endpoints, looked up.
    fn grade(inner: &Inner, t: &Transition) -> Severity {
        let (zone, service) = (t.key.zone(), t.key.service());
        let placed = inner.layout.service(zone, service);
        Self::walk(inner, placed.len());
        let up = |p: &Placed| match inner.overrides.find(zone, service, &p.region, p.address) {
            Some(Forced::Down) => false,
            Some(Forced::Up | Forced::Drain) => true,
            None => EndpointKey::new(zone, service, p.address).is_ok_and(|k| inner.view.is_up(&k)),
        };
        // Endpoints the layout does not know (a reload removed them) count as serving.
        let service_serving = placed.is_empty() || placed.iter().any(up);
        let region_serving = inner
            .layout
            .endpoint(&t.key)
            .is_none_or(|mine| placed.iter().filter(|p| p.region == mine.region).any(up));
        severity(t.to, service_serving, region_serving)
    }

    /// Whether `next` weighs some endpoint differently from `inner.view` (its weight hint,
    /// its transition flag (dynamic TTL) or its shedding factor changed), and the up
    /// endpoints that started or stopped shedding. Starting takes a factor at least
    /// [`SHED_STEP`] below full, stopping takes full weight again, so a load hovering at
    /// `shed_above` does not page on every report. Only endpoints the views decide (checked
    /// ones) have signals: the walk is over them, the layout is looked up where they moved.
    fn compare_views(inner: &Inner, next: &HealthView) -> (bool, Vec<Shedding>) {
        let before = &inner.view;
        let gone = before
            .status()
            .keys()
            .filter(|k| !next.status().contains_key(*k));
        let keys: Vec<&EndpointKey> = next.status().keys().chain(gone).collect();
        Self::walk(inner, keys.len());
        let mut moved = false;
        let mut shedding = Vec::new();
        for key in keys {
            let (a, b) = (before.signals(key), next.signals(key));
            if a.weight == b.weight && a.transition == b.transition && a.load == b.load {
                continue;
            }
            let Some(p) = inner.layout.endpoint(key) else {
                continue;
            };
            let factor = |l: Option<f64>| l.map_or(1.0, |l| p.shed.factor(l));
            let (was, now) = (factor(a.load), factor(b.load));
            moved |= a.weight != b.weight
                || a.transition != b.transition
                || (was - now).abs() >= SHED_STEP;
            if !(before.is_up(key) && next.is_up(key)) {
                continue;
            }
            let started = was >= 1.0 && now <= 1.0 - SHED_STEP;
            let stopped = was < 1.0 && now >= 1.0;
            if started || stopped {
                shedding.push(Shedding {
                    key: key.clone(),
                    region: p.region.to_string(),
                    started,
                    load: b.load.unwrap_or(0.0),
                    weight_factor: now,
                });
            }
        }
        (moved, shedding)
    }

    /// Records as lifted now every endpoint that `before` kept out of answers (down or
    /// drain) and the current overrides no longer do. Only the services of the overrides
    /// that `before` has and the current ones lack can differ: those are looked up.
    fn note_lifted(inner: &mut Inner, before: &Overrides, now: Instant) {
        let out = |o: &Overrides, zone: &str, service: &str, p: &Placed| {
            matches!(
                o.find(zone, service, &p.region, p.address),
                Some(Forced::Down | Forced::Drain)
            )
        };
        let current = inner.overrides.list();
        let mut lifted: Vec<EndpointKey> = Vec::new();
        for o in before
            .list()
            .iter()
            .filter(|o| !current.iter().any(|c| c.id == o.id))
        {
            let (zone, service) = (o.target.zone_key(), o.target.service.as_str());
            let placed = inner.layout.service(&zone, service);
            Self::walk(inner, placed.len());
            lifted.extend(
                placed
                    .iter()
                    .filter(|p| {
                        p.slow_start.is_some()
                            && out(before, &zone, service, p)
                            && !out(&inner.overrides, &zone, service, p)
                    })
                    .filter_map(|p| EndpointKey::new(&zone, service, p.address).ok()),
            );
        }
        for key in lifted {
            inner.lifted.insert(key, now);
        }
    }

    /// Applies the lifted overrides to the view: an endpoint is back since the lift at most
    /// (module docs of `aggregate`, "slow start"); forgets lifts older than their ramp.
    fn apply_lifted(inner: &mut Inner, now: Instant) {
        let Inner {
            lifted,
            layout,
            view,
            ramps,
            ..
        } = inner;
        lifted.retain(|key, at| {
            let since = now.saturating_duration_since(*at);
            let ramping = layout
                .endpoint(key)
                .and_then(|p| p.slow_start)
                .is_some_and(|total| since < total);
            if ramping {
                view.back_within(key, since);
                ramps.insert(key.clone());
            }
            ramping
        });
    }

    /// True while the endpoint has a `slow_start` and is within it since it came back.
    fn ramps_now(inner: &Inner, key: &EndpointKey) -> bool {
        let back = inner.view.signals(key).recovered_for;
        inner
            .layout
            .endpoint(key)
            .and_then(|p| p.slow_start)
            .is_some_and(|total| back.is_some_and(|t| t < total))
    }

    /// True while an endpoint with a `slow_start` is within it since it came back.
    fn ramping(inner: &Inner) -> bool {
        Self::walk(inner, inner.ramps.len());
        inner.ramps.iter().any(|key| Self::ramps_now(inner, key))
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
        let before = (!inner.overrides.list().is_empty()).then(|| inner.overrides.to_rules());
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
        let (moved, shedding) = Self::compare_views(&inner, &decision.view);
        inner.view = decision.view;
        // Endpoints back up may ramp from now on (slow start).
        inner.ramps.extend(
            decision
                .transitions
                .iter()
                .filter(|t| t.to == Health::Up)
                .map(|t| t.key.clone()),
        );
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
        for t in &decision.transitions {
            let grade = Self::grade(&inner, t);
            self.metrics.record_alert(grade);
            if let Some(notify) = self.notifier.get() {
                notify(HealthEvent::Endpoint(t, grade));
            }
        }
        inner.dirty = false;
        let mut ramps = std::mem::take(&mut inner.ramps);
        ramps.retain(|key| Self::ramps_now(&inner, key));
        inner.ramps = ramps;
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
            overrides: inner.overrides.to_rules(),
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
        let Inner {
            overrides,
            observed,
            ..
        } = &mut *inner;
        let current: &dyn Answering = match observed {
            Some(table) => &**table,
            None => &NoTable,
        };
        let o = overrides.add(new, SystemTime::now(), matches_any, current)?;
        tracing::warn!(id = o.id, target = ?o.target, state = ?o.state, expires_at = o.expires_at, reason = %o.reason, "override added");
        inner.dirty = true;
        drop(inner);
        self.wake.notify_one();
        Ok(o)
    }

    /// Records the table just published for the drains, every endpoint of it (see
    /// `overrides`, "Drains that finish"): the control plane calls it with the first table;
    /// later swaps observe what they rebuilt ([`HealthHub::observe_change`],
    /// [`HealthHub::observe_reload`]). The first table, with nothing stored yet, costs no
    /// walk: every endpoint of it is plain.
    pub fn observe_table(&self, table: &Arc<RoutingTable>) {
        let mut inner = self.lock();
        let before = inner.observed.replace(Arc::clone(table));
        if before.is_none() && inner.overrides.all_plain() {
            inner
                .overrides
                .observing(SystemTime::now())
                .finish(|_| true, |_, _| false, &**table);
            return;
        }
        let covered: Vec<&ZoneTable> = table.zones().collect();
        let gone: Vec<&ZoneTable> = before
            .as_deref()
            .map(|b| {
                b.zones()
                    .filter(|z| table.zone_at(&key_wire(&z.origin)).is_none())
                    .collect()
            })
            .unwrap_or_default();
        Self::observe_zones(
            &mut inner,
            before.as_deref(),
            table,
            covered.into_iter().chain(gone),
            |_| true,
        );
    }

    /// Records a table that a health change built: only the services `change` names were
    /// rebuilt (`routing::publish`), every other one is shared with the table observed before
    /// and answers as it did.
    pub fn observe_change(&self, table: &Arc<RoutingTable>, change: &HealthChange) {
        let HealthChange::Services(list) = change else {
            self.observe_table(table);
            return;
        };
        let mut inner = self.lock();
        let before = inner.observed.replace(Arc::clone(table));
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        let mut walked = 0;
        let mut observing = inner.overrides.observing(SystemTime::now());
        for c in list {
            if !seen.insert((c.zone.as_str(), c.service.as_str())) {
                continue;
            }
            let Ok(mut origin) = Name::from_str_relaxed(&c.zone) else {
                continue;
            };
            origin.set_fqdn(true);
            let wire = key_wire(&origin);
            /// Appends the endpoints of the service `key` of the zone at `wire` in `t`;
            /// false when `t` has no such service.
            fn fill<'x>(
                t: &'x RoutingTable,
                wire: &[u8],
                zone: &'x str,
                key: &str,
                out: &mut Vec<Answerable<'x>>,
            ) -> bool {
                let Some(z) = t.zone_at(wire) else {
                    return false;
                };
                let Some(service) = z.service_index(key).and_then(|i| z.services.get(i)) else {
                    return false;
                };
                answerable(zone, service, out);
                true
            }
            let (mut old, mut new) = (Vec::new(), Vec::new());
            if !fill(table, &wire, &c.zone, &c.service, &mut new) {
                continue;
            }
            if let Some(t) = before.as_deref() {
                fill(t, &wire, &c.zone, &c.service, &mut old);
            }
            walked += old.len() + new.len();
            observing.service(&zone_key(&c.zone), &c.service, &old, &new);
        }
        // The services named are the only ones rebuilt: nothing else is retired.
        observing.finish(|_| false, |_, _| true, &**table);
        Self::walk(&inner, walked);
    }

    /// Records a table that a reload built from `before`: zones it shares with `before` answer
    /// as they did; every endpoint of the others (compiled anew) is observed, and the zones
    /// it dropped are no longer answered.
    pub fn observe_reload(&self, before: &RoutingTable, after: &Arc<RoutingTable>) {
        let mut names: HashSet<String> = HashSet::new();
        let mut zones: Vec<&ZoneTable> = Vec::new();
        for (key, zone) in &after.zones {
            if before.zones.get(key).is_some_and(|b| Arc::ptr_eq(b, zone)) {
                continue;
            }
            names.insert(zone_key(&zone.origin.to_string()));
            zones.push(zone);
        }
        for (key, zone) in &before.zones {
            if !after.zones.contains_key(key) {
                names.insert(zone_key(&zone.origin.to_string()));
                zones.push(zone);
            }
        }
        let mut inner = self.lock();
        // The table observed last is what the stored exposures follow (a health swap may
        // have come after `before`).
        let last = inner.observed.replace(Arc::clone(after));
        if names.is_empty() {
            return;
        }
        let previous = last.as_deref().unwrap_or(before);
        Self::observe_zones(&mut inner, Some(previous), after, zones.into_iter(), |z| {
            names.contains(z)
        });
    }

    /// Observes every service of `zones` (each named once, from either table), service by
    /// service: its endpoints in `previous` and in `table`, two reused buffers, no copy of
    /// the whole. Stored exposures of services in `covered` zones that neither table has
    /// are retired.
    fn observe_zones<'z>(
        inner: &mut Inner,
        previous: Option<&'z RoutingTable>,
        table: &'z RoutingTable,
        zones: impl Iterator<Item = &'z ZoneTable>,
        covered: impl Fn(&str) -> bool,
    ) {
        let mut observing = inner.overrides.observing(SystemTime::now());
        let mut walked = 0;
        let mut done: HashSet<&Name> = HashSet::new();
        for zone in zones {
            if !done.insert(&zone.origin) {
                continue;
            }
            let origin = zone.origin.to_string();
            let key = zone_key(&origin);
            let wire = key_wire(&zone.origin);
            let (mut old, mut new): (Vec<Answerable<'_>>, Vec<Answerable<'_>>) =
                (Vec::new(), Vec::new());
            let was = previous.and_then(|p| p.zone_at(&wire));
            let now = table.zone_at(&wire);
            let lookup = |z: &'z ZoneTable, service: &str| -> Option<&'z Service> {
                z.service_index(service).and_then(|i| z.services.get(i))
            };
            // The new zone's services, each with its twin in the previous zone.
            for service in now.iter().flat_map(|n| n.services.iter()) {
                old.clear();
                new.clear();
                if let Some(twin) = was.and_then(|w| lookup(w, &service.key)) {
                    answerable(&origin, twin, &mut old);
                }
                answerable(&origin, service, &mut new);
                walked += old.len() + new.len();
                observing.service(&key, &service.key, &old, &new);
            }
            // Services only the previous zone had: no longer answered.
            for service in was.iter().flat_map(|w| w.services.iter()) {
                if now.is_some_and(|n| n.service_index(&service.key).is_some()) {
                    continue;
                }
                old.clear();
                new.clear();
                answerable(&origin, service, &mut old);
                walked += old.len();
                observing.service(&key, &service.key, &old, &new);
            }
        }
        let has = |zone: &str, service: &str| {
            let Ok(mut origin) = Name::from_str_relaxed(zone) else {
                return false;
            };
            origin.set_fqdn(true);
            [previous, Some(table)]
                .into_iter()
                .flatten()
                .filter_map(|t| t.zone_at(&key_wire(&origin)))
                .any(|z| z.service_index(service).is_some())
        };
        observing.finish(covered, has, table);
        Self::walk(inner, walked);
    }

    /// Removes an override.
    pub fn remove_override(&self, id: u64) -> bool {
        let mut inner = self.lock();
        let before = inner.overrides.to_rules();
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
                // Spacing between recompiles, not decisions: a change that follows a
                // decision with nothing to publish (a tick, a report that moved nothing)
                // is decided at once.
                tokio::time::sleep(RECOMPILE_SPACING).await;
            }
        }
    }
}

/// A routing table as drains read it: a service's endpoints, looked up.
impl Answering for RoutingTable {
    fn each(&self, zone: &str, service: &str, f: &mut dyn FnMut(Answerable<'_>)) {
        let Ok(mut origin) = Name::from_str_relaxed(zone) else {
            return;
        };
        origin.set_fqdn(true);
        let Some(z) = self.zone_at(&key_wire(&origin)) else {
            return;
        };
        let Some(s) = z.service_index(service).and_then(|i| z.services.get(i)) else {
            return;
        };
        let mut out = Vec::new();
        answerable(zone, s, &mut out);
        for e in out {
            f(e);
        }
    }
}

/// Appends the endpoints of one service of a published table as drains see them: whether
/// the table can answer with each, and with which TTL.
fn answerable<'a>(origin: &'a str, service: &'a Service, out: &mut Vec<Answerable<'a>>) {
    // An endpoint at weight 0 is answered only while nothing weighted and healthy of its
    // family is (select's standby pass).
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
            out.push(Answerable {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::overrides::{Forced, NewOverride, Target};
    use crate::health::report::{EndpointReport, ProberId, VoteState, unix_ms};

    /// A compiled table of one zone with the service `www` (TTL 30) on `addresses` and an
    /// unrelated service `api`, every endpoint up.
    fn drain_table(addresses: &[&str]) -> Arc<RoutingTable> {
        let mut text = String::from(
            "origin = \"d.test.\"\nns = [\"ns1.d.test.\"]\n[soa]\nmname = \"ns1.d.test.\"\n\
             rname = \"hostmaster.d.test.\"\nserial = 1\n[region.eu]\n\
             [service.api]\nttl = 60\n[[service.api.endpoint]]\nregion = \"eu\"\n\
             address = \"198.51.100.1\"\n[service.www]\nttl = 30\n",
        );
        for a in addresses {
            text.push_str(&format!(
                "[[service.www.endpoint]]\nregion = \"eu\"\naddress = \"{a}\"\n"
            ));
        }
        let zone = crate::config::testing::zone_from_text(&text, &[]);
        let db = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/geoip/GeoIP2-City-Test.mmdb"
        );
        let geo = Arc::new(crate::geo::GeoDb::open(std::path::Path::new(db)).unwrap());
        let table = crate::routing::compile::compile(
            &[Arc::new(zone)],
            geo,
            &crate::routing::compile::AllUp,
            1,
        );
        Arc::new(table.unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn drains_walk_nothing_for_a_first_table_and_follow_a_reload_service_by_service() {
        let hub = HealthHub::new(Vec::new(), DEFAULT_GRACE_FOR_TEST, None, Arc::default());
        let first = drain_table(&["192.0.2.1", "192.0.2.2"]);
        hub.observe_table(&first);
        assert_eq!(hub.lock().walked.get(), 0, "a first table is all plain");
        assert!(hub.lock().overrides.all_plain());
        let drain = |address: &str| NewOverride {
            target: Target {
                zone: "d.test".into(),
                service: "www".into(),
                region: None,
                address: Some(address.parse().unwrap()),
            },
            state: Forced::Drain,
            expires_in_seconds: 600,
            reason: "maintenance".into(),
        };
        // Plain endpoints are read from the table observed: answerable until now.
        let d = hub.add_override(drain("192.0.2.1"), |_| true).unwrap();
        let progress = d.drain.unwrap();
        assert!(progress.answerable && !progress.complete);
        assert_eq!(progress.max_ttl, 30);
        // A reload takes 192.0.2.1 out of `www`: its answers stay cached for the TTL they
        // had, so the drain completes 30 s after the reload; the others stay plain.
        let reloaded = drain_table(&["192.0.2.2"]);
        let before = unix_ms(SystemTime::now());
        hub.observe_reload(&first, &reloaded);
        let after = unix_ms(SystemTime::now());
        let p = hub.overrides()[0].drain.unwrap();
        assert!(!p.answerable);
        assert_eq!(p.max_ttl, 30);
        assert!(
            (before + 30_000..=after + 30_000).contains(&p.complete_at_ms),
            "{p:?}"
        );
        // Every endpoint of the reloaded zone was looked at once before and once after.
        let walked = hub.lock().walked.get();
        assert_eq!(walked, (3 + 2), "old: api + 2 www, new: api + 1 www");
        let inner = hub.lock();
        assert!(
            !inner.overrides.all_plain(),
            "the removed endpoint is stored"
        );
    }

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

    /// Services in [`an_override_and_idle_decisions_do_not_walk_every_endpoint`].
    const MANY: u32 = 10_000;

    #[test]
    fn an_override_and_idle_decisions_do_not_walk_every_endpoint() {
        // MANY one-endpoint services, none checked (as bench/incremental.py): an override on
        // one of them, decisions with nothing else to do, its removal. Before, every
        // decision walked the whole layout twice (weights, shedding) and the lift once.
        let service_key = |n: u32| {
            EndpointKey::new(
                "big.test",
                &format!("s{n}"),
                std::net::Ipv4Addr::from(n).into(),
            )
            .unwrap()
        };
        let hub = HealthHub::new(Vec::new(), DEFAULT_GRACE_FOR_TEST, None, Arc::default());
        hub.set_layout(
            (0..MANY)
                .map(|n| LayoutEntry {
                    key: service_key(n),
                    region: "r0".into(),
                    slow_start: Some(Duration::from_secs(60)),
                    shed: crate::config::check::Shed::default(),
                })
                .collect(),
        );
        hub.decide();
        let before = hub.lock().walked.get();
        let target = service_key(7);
        let o = hub
            .add_override(
                NewOverride {
                    target: Target {
                        zone: "big.test.".into(),
                        service: target.service().into(),
                        region: None,
                        address: None,
                    },
                    state: Forced::Down,
                    expires_in_seconds: 60,
                    reason: "test".into(),
                },
                |_| true,
            )
            .unwrap();
        for _ in 0..3 {
            hub.decide();
        }
        assert!(hub.remove_override(o.id));
        for _ in 0..3 {
            hub.decide();
        }
        let walked = hub.lock().walked.get() - before;
        assert!(
            walked < 100,
            "{walked} endpoints walked for one service's override"
        );
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

    #[test]
    fn a_reload_replaces_the_zones_it_changed_and_keeps_the_others() {
        let other = |n: u8| EndpointKey::new("other.example", "api", [198, 51, 100, n].into());
        let other = |n: u8| other(n).unwrap();
        let hub = HealthHub::new(
            vec![key(1), other(1)],
            DEFAULT_GRACE_FOR_TEST,
            None,
            Arc::default(),
        );
        let entry = |key: EndpointKey, region: &str| LayoutEntry {
            key,
            region: region.into(),
            slow_start: None,
            shed: crate::config::check::Shed::default(),
        };
        hub.set_layout(vec![entry(key(1), "a"), entry(other(1), "b")]);
        hub.ingest(&down_report(1)).unwrap();
        hub.decide();
        // other.example changed: endpoint 1 moved to region c, endpoint 2 came.
        let zones: HashSet<String> = ["other.example".to_string()].into();
        hub.replace_zones(
            &zones,
            vec![other(1), other(2)],
            vec![entry(other(1), "c"), entry(other(2), "c")],
        );
        assert!(hub.decide(), "a new endpoint is a change");
        let inner = hub.lock();
        let regions = |zone: &str, service: &str| -> Vec<String> {
            let placed = inner.layout.service(zone, service);
            placed.iter().map(|p| p.region.to_string()).collect()
        };
        assert_eq!(regions("shop.example", "www"), ["a"], "kept as it was");
        assert_eq!(regions("other.example", "api"), ["c", "c"]);
        assert_eq!(
            inner.view.status()[&key(1)].votes.len(),
            1,
            "the vote of the zone not reloaded stays"
        );
        assert!(inner.view.status().contains_key(&other(2)));
        drop(inner);
        // Nothing changed: nothing to do.
        hub.replace_zones(&HashSet::new(), Vec::new(), Vec::new());
        assert!(!hub.decide());
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
            HealthHub::grade(&inner, &t(n, to))
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
