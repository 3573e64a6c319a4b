//! Operator overrides: force an endpoint, a region of a service, or a whole service up, down
//! or drained, until an expiry. Control plane only; consulted when the table is compiled.
//!
//! # Drains that finish
//!
//! A `drain` stops new answers with its endpoints at once (weight 0: they are answered only
//! while nothing weighted of their family is healthy), and is *complete* once no resolver can
//! still hold an answer with them: when the longest TTL they were answered with has passed
//! since the last such answer. The query path keeps no per-answer clock, so the last answer is
//! bounded from above: every table the control plane publishes is observed
//! ([`Overrides::observing`]), and each endpoint's [`Exposure`] remembers when a table that could
//! answer with it (it is weighted, or nothing else of its family is) was last replaced, and
//! until when the answers of such tables can be cached (replacement time + that table's TTL).
//! Endpoints are tracked whether drained or not, so a drain of an endpoint that went down a
//! moment ago still waits for the answers given before. A drain is complete when none of its
//! endpoints can be answered and every such expiry has passed
//! ([`Overrides::complete_drains`], clock passed in), reported once.
//!
//! Most endpoints are *plain*: the last table observed answers with them, and nothing cached
//! outlives what that table's TTL gives. Their exposure follows from that table alone, so it
//! is not stored: [`Exposures`] keeps only the others (no longer answerable but maybe still
//! cached, or answered before with a longer TTL than now), and each observation is given the
//! previous table's endpoints of what it covers ([`Answering`] reads the current one). A
//! million services at start cost nothing here: before, the first table alone was 2.9 s and
//! about 150 MB of entries that all said "answerable with the table's TTL".

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Longest an override may last (a forgotten override should not outlive a week).
pub const MAX_OVERRIDE_SECONDS: u64 = 7 * 24 * 3600;
/// How long an override lasts when `meridian ctl override add` is not told (`--expires-in`);
/// the HTTP API has no default: `expires_in_seconds` is mandatory there.
pub const DEFAULT_OVERRIDE_SECONDS: u64 = 3600;

/// What an override forces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forced {
    /// Serve it whatever the probes say.
    Up,
    /// Never serve it (the fallback may still).
    Down,
    /// Weight 0: no new answers while anything weighted is healthy; still checked.
    Drain,
}

/// What an override applies to. `zone` and `service` are always given; `region` narrows it to
/// one region's endpoints, `address` to one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Zone origin, with or without the trailing dot.
    pub zone: String,
    /// Service key.
    pub service: String,
    /// Region name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
}

impl Target {
    /// The zone as endpoint keys name it: lowercase, without the trailing dot.
    pub fn zone_key(&self) -> String {
        zone_key(&self.zone)
    }

    /// How specific the target is: endpoint 2, region 1, service 0.
    fn specificity(&self) -> u8 {
        match (&self.address, &self.region) {
            (Some(_), _) => 2,
            (None, Some(_)) => 1,
            (None, None) => 0,
        }
    }

    fn matches(&self, zone: &str, service: &str, region: &str, address: IpAddr) -> bool {
        self.zone_key() == zone_key(zone)
            && self.service == service
            && self.region.as_deref().is_none_or(|r| r == region)
            && self.address.is_none_or(|a| a == address)
    }
}

/// An override as posted.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOverride {
    /// What it applies to.
    pub target: Target,
    /// What it forces.
    pub state: Forced,
    /// Seconds from now until it expires (mandatory).
    pub expires_in_seconds: u64,
    /// Why (mandatory, for the audit log).
    pub reason: String,
}

/// Progress of a drain override (module docs, "Drains that finish").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DrainProgress {
    /// Unix milliseconds of the latest moment its endpoints could have been answered.
    pub last_answer_ms: u64,
    /// The TTL of the answers that are cached longest, seconds.
    pub max_ttl: u32,
    /// Unix milliseconds when the drain is (or will be) complete: when the answers cached
    /// longest expire.
    pub complete_at_ms: u64,
    /// True once no resolver can hold an answer with its endpoints.
    pub complete: bool,
    /// The table observed last can answer with its endpoints.
    pub answerable: bool,
}

/// What caches may hold of one endpoint, from the tables observed (module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exposure {
    /// The TTL of the table observed last, when that table can answer with the endpoint.
    answerable_ttl: Option<u32>,
    /// Unix milliseconds when a table that could answer with it was last serving.
    last_answer_ms: u64,
    /// Unix milliseconds until which answers with it may be cached.
    expires_ms: u64,
    /// The TTL behind `expires_ms`.
    ttl: u32,
}

impl Exposure {
    /// What a plain endpoint's exposure is, the table observed last answering with it at
    /// `ttl` (module docs): observing it again gives the same as the stored exposure would.
    fn answering(ttl: u32) -> Self {
        Exposure {
            answerable_ttl: Some(ttl),
            ..Exposure::default()
        }
    }

    /// True when the table observed last answers with the endpoint and nothing cached
    /// outlives that table's TTL: [`Exposure::answering`] says the same, nothing is stored.
    fn plain(&self) -> bool {
        self.answerable_ttl.is_some_and(|t| {
            t == self.ttl && self.expires_ms == self.last_answer_ms + u64::from(t) * 1000
        })
    }

    /// Records one observed table at `now_ms`: whether it can answer with the endpoint, and
    /// with which TTL.
    pub fn observe(&mut self, now_ms: u64, answerable: bool, ttl: u32) {
        // The previous table served until now; this one serves from now on.
        let serving = self
            .answerable_ttl
            .into_iter()
            .chain(answerable.then_some(ttl));
        for t in serving {
            self.last_answer_ms = self.last_answer_ms.max(now_ms);
            let expires = now_ms + u64::from(t) * 1000;
            if expires >= self.expires_ms {
                self.expires_ms = expires;
                self.ttl = t;
            }
        }
        self.answerable_ttl = answerable.then_some(ttl);
    }
}

/// An active override.
#[derive(Clone, Debug, Serialize)]
pub struct Override {
    /// Id for DELETE.
    pub id: u64,
    /// What it applies to.
    pub target: Target,
    /// What it forces.
    pub state: Forced,
    /// Unix seconds when it stops applying.
    pub expires_at: u64,
    /// Why.
    pub reason: String,
    /// Unix seconds when it was made.
    pub created_at: u64,
    /// For `drain`: when it is complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainProgress>,
}

/// One endpoint of the table just published, as drains see it.
#[derive(Clone, Copy, Debug)]
pub struct Answerable<'a> {
    /// Zone origin.
    pub zone: &'a str,
    /// Service key.
    pub service: &'a str,
    /// Region name.
    pub region: &'a str,
    /// Endpoint address.
    pub address: IpAddr,
    /// Whether the table can answer with it.
    pub answerable: bool,
    /// The TTL its answers carry.
    pub ttl: u32,
}

/// The endpoints of the table observed last, as drains see them (the health hub reads its
/// routing table): a plain endpoint's exposure follows from it (module docs).
pub trait Answering {
    /// Calls `f` with every endpoint of `service` in `zone` (lowercase, without the trailing
    /// dot) that the table has.
    fn each(&self, zone: &str, service: &str, f: &mut dyn FnMut(Answerable<'_>));
}

/// No table observed yet: nothing is answerable.
pub struct NoTable;

impl Answering for NoTable {
    fn each(&self, _: &str, _: &str, _: &mut dyn FnMut(Answerable<'_>)) {}
}

/// A table given as its endpoints (tests).
impl Answering for Vec<Answerable<'_>> {
    fn each(&self, zone: &str, service: &str, f: &mut dyn FnMut(Answerable<'_>)) {
        for e in self {
            if e.service == service && zone_key(e.zone) == zone {
                f(*e);
            }
        }
    }
}

/// An observation given service by service ([`Overrides::observing`]): every service the
/// published table rebuilt (a health swap: the services it names; a reload: every service of
/// the zones it compiled; a whole table: all), with its endpoints before and after
/// ([`Observing::service`]), then [`Observing::finish`]. Services not given are shared with
/// the table observed before, so nothing about them changed.
pub struct Observing<'o> {
    overrides: &'o mut Overrides,
    now_ms: u64,
}

impl Observing<'_> {
    /// One service (`zone` as a zone key): its endpoints in the table observed before and in
    /// this one (empty where it has none).
    pub fn service(
        &mut self,
        zone: &str,
        service: &str,
        before: &[Answerable<'_>],
        after: &[Answerable<'_>],
    ) {
        self.overrides
            .exposure
            .observe_service(self.now_ms, zone, service, before, after);
    }

    /// Ends it: stored exposures of services in `covered` zones that neither table has
    /// (`has`) are no longer answered, and the drains follow `table`, the table observed.
    pub fn finish(
        self,
        covered: impl Fn(&str) -> bool,
        has: impl Fn(&str, &str) -> bool,
        table: &dyn Answering,
    ) {
        self.overrides
            .exposure
            .retire_missing(self.now_ms, covered, has);
        self.overrides.update_drains(self.now_ms, table);
    }
}

/// Why an override was refused.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// Expiry out of range.
    #[error("expires_in_seconds must be between 1 and {MAX_OVERRIDE_SECONDS}")]
    Expiry,
    /// Empty reason.
    #[error("reason must not be empty")]
    Reason,
    /// Names nothing in the configuration.
    #[error("target matches no endpoint: {0}")]
    NoMatch(String),
}

/// The set of overrides.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    list: Vec<Override>,
    next_id: u64,
    /// What caches may hold of each endpoint of the tables observed (module docs).
    exposure: Exposures,
}

/// One endpoint's [`Exposure`], within its service.
#[derive(Clone, Debug)]
struct Exposed {
    /// Its region (interned: a region name is shared by every endpoint in it).
    region: Arc<str>,
    address: IpAddr,
    exposure: Exposure,
}

/// The exposures of the endpoints observed that are not plain (module docs), by zone
/// (lowercase, without the trailing dot, as [`Target`] compares) and service: one key per
/// service rather than three strings per endpoint, and a drain finds its endpoints by look-up.
#[derive(Clone, Debug, Default)]
struct Exposures {
    zones: HashMap<Box<str>, ByService, Fast>,
    regions: HashSet<Arc<str>, Fast>,
    /// Endpoints observed so far (tests count the work a swap costs).
    observed: u64,
}

/// One zone's stored exposures, by service.
type ByService = HashMap<Box<str>, Vec<Exposed>, Fast>;

/// The hasher of these maps: the keys are the operator's zone and service names, and the
/// first table of a million services is observed at start (SipHash was most of that).
type Fast = foldhash::fast::RandomState;

/// A zone name as endpoint keys and targets compare it: lowercase, without the trailing dot.
pub fn zone_key(zone: &str) -> String {
    zone.trim_end_matches('.').to_ascii_lowercase()
}

impl Exposures {
    fn intern(&mut self, region: &str) -> Arc<str> {
        if let Some(r) = self.regions.get(region) {
            return Arc::clone(r);
        }
        let r: Arc<str> = Arc::from(region);
        self.regions.insert(Arc::clone(&r));
        r
    }

    /// One service of an observation: its endpoints in the previous table (`before`) and in
    /// the one observed (`after`; empty when the service is gone). `zone` is the zone's key.
    fn observe_service(
        &mut self,
        now_ms: u64,
        zone: &str,
        service: &str,
        before: &[Answerable<'_>],
        after: &[Answerable<'_>],
    ) {
        self.observed += after.len() as u64;
        let stored = self.zones.get_mut(zone).and_then(|s| s.remove(service));
        let Some(stored) = stored.filter(|s| !s.is_empty()) else {
            // The usual case, without an allocation: nothing stored, and every endpoint that
            // was answerable still is, with at least the TTL it had (plain stays plain).
            let still_plain = before.iter().filter(|b| b.answerable).all(|b| {
                after.iter().any(|a| {
                    a.address == b.address && a.region == b.region && a.answerable && a.ttl >= b.ttl
                })
            });
            if !still_plain {
                self.store(zone, service, Vec::new(), before, after, now_ms);
            }
            return;
        };
        self.store(zone, service, stored, before, after, now_ms);
    }

    fn store(
        &mut self,
        zone: &str,
        service: &str,
        stored: Vec<Exposed>,
        before: &[Answerable<'_>],
        after: &[Answerable<'_>],
        now_ms: u64,
    ) {
        let endpoints = self.merge(stored, before, after, now_ms);
        if !endpoints.is_empty() {
            self.zones
                .entry(zone.into())
                .or_default()
                .insert(service.into(), endpoints);
        } else if self.zones.get(zone).is_some_and(HashMap::is_empty) {
            self.zones.remove(zone);
        }
    }

    /// Stored exposures of services in `covered` zones that neither table has (`has`): nothing
    /// of them is answered (removed earlier, still cached); forgotten once expired.
    fn retire_missing(
        &mut self,
        now_ms: u64,
        covered: impl Fn(&str) -> bool,
        has: impl Fn(&str, &str) -> bool,
    ) {
        self.zones.retain(|zone, services| {
            if !covered(zone) {
                return true;
            }
            services.retain(|service, endpoints| {
                if has(zone, service) {
                    return true;
                }
                retire_expired(endpoints, now_ms);
                !endpoints.is_empty()
            });
            !services.is_empty()
        });
    }

    /// One service's stored exposures after an observation that lists `listed` for it:
    /// `stored` is what was kept of it, `before` its endpoints in the previous table (those
    /// not stored were plain). Plain ones and expired ones are not kept.
    fn merge(
        &mut self,
        mut stored: Vec<Exposed>,
        before: &[Answerable<'_>],
        listed: &[Answerable<'_>],
        now_ms: u64,
    ) -> Vec<Exposed> {
        for e in before.iter().filter(|e| e.answerable) {
            if !stored
                .iter()
                .any(|x| x.address == e.address && &*x.region == e.region)
            {
                let region = self.intern(e.region);
                stored.push(Exposed {
                    region,
                    address: e.address,
                    exposure: Exposure::answering(e.ttl),
                });
            }
        }
        let mut next = Vec::new();
        for e in listed {
            let at = stored
                .iter()
                .position(|x| x.address == e.address && &*x.region == e.region);
            let mut x = match at {
                Some(i) => stored.swap_remove(i),
                None => Exposed {
                    region: self.intern(e.region),
                    address: e.address,
                    exposure: Exposure::default(),
                },
            };
            x.exposure.observe(now_ms, e.answerable, e.ttl);
            if !x.exposure.plain()
                && (x.exposure.answerable_ttl.is_some() || x.exposure.expires_ms > now_ms)
            {
                next.push(x);
            }
        }
        // Endpoints this observation does not list are no longer answered: forgotten once
        // expired.
        retire_expired(&mut stored, now_ms);
        next.extend(stored);
        next
    }

    /// The exposures of the endpoints `target` names, as of `now_ms` (an endpoint the last
    /// table can answer with counts as answered until now): those stored, and the plain ones
    /// of `current`, the table observed last.
    fn of(&self, target: &Target, current: &dyn Answering, now_ms: u64) -> Vec<Exposure> {
        let zone = zone_key(&target.zone);
        let wanted = |region: &str, address: IpAddr| {
            target.region.as_deref().is_none_or(|r| r == region)
                && target.address.is_none_or(|a| a == address)
        };
        let stored: &[Exposed] = self
            .zones
            .get(zone.as_str())
            .and_then(|services| services.get(target.service.as_str()))
            .map_or(&[], Vec::as_slice);
        let mut out: Vec<Exposure> = stored
            .iter()
            .filter(|x| wanted(&x.region, x.address))
            .map(|x| x.exposure)
            .collect();
        current.each(&zone, &target.service, &mut |e| {
            let known = stored
                .iter()
                .any(|x| x.address == e.address && &*x.region == e.region);
            if e.answerable && !known && wanted(e.region, e.address) {
                out.push(Exposure::answering(e.ttl));
            }
        });
        for exposure in &mut out {
            if let Some(ttl) = exposure.answerable_ttl {
                // What observing the same table again now would record.
                exposure.observe(now_ms, true, ttl);
            }
        }
        out
    }

    /// True when some endpoint's exposure is stored (not plain).
    fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }
}

/// Marks endpoints as no longer answered and drops those whose answers have expired.
fn retire_expired(endpoints: &mut Vec<Exposed>, now_ms: u64) {
    endpoints.retain_mut(|x| {
        x.exposure.observe(now_ms, false, 0);
        x.exposure.expires_ms > now_ms
    });
}

fn unix_ms(t: SystemTime) -> u64 {
    crate::health::report::unix_ms(t)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Overrides {
    /// Adds one; `matches_any` says whether the target names at least one configured endpoint,
    /// `current` is the table observed last (a drain's progress starts from it).
    pub fn add(
        &mut self,
        new: NewOverride,
        now: SystemTime,
        matches_any: impl Fn(&Target) -> bool,
        current: &dyn Answering,
    ) -> Result<Override, OverrideError> {
        if new.expires_in_seconds == 0 || new.expires_in_seconds > MAX_OVERRIDE_SECONDS {
            return Err(OverrideError::Expiry);
        }
        if new.reason.trim().is_empty() {
            return Err(OverrideError::Reason);
        }
        if !matches_any(&new.target) {
            return Err(OverrideError::NoMatch(
                serde_json::to_string(&new.target).unwrap_or_default(),
            ));
        }
        self.next_id += 1;
        let o = Override {
            id: self.next_id,
            target: new.target,
            state: new.state,
            expires_at: unix(now) + new.expires_in_seconds,
            reason: new.reason,
            created_at: unix(now),
            drain: None,
        };
        self.list.push(o.clone());
        self.update_drains(unix_ms(now), current);
        // The copy in the list now has its drain progress.
        Ok(self.list.last().cloned().unwrap_or(o))
    }

    /// The overrides without the drain bookkeeping: what a table is compiled against, cheap
    /// to copy whatever the size of the table.
    pub fn to_rules(&self) -> Overrides {
        Overrides {
            list: self.list.clone(),
            next_id: self.next_id,
            exposure: Exposures::default(),
        }
    }

    /// Removes one by id; true if it existed.
    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.list.len();
        self.list.retain(|o| o.id != id);
        self.list.len() != before
    }

    /// Drops expired overrides; returns them (for the audit log).
    pub fn expire(&mut self, now: SystemTime) -> Vec<Override> {
        let now = unix(now);
        let (gone, keep): (Vec<_>, Vec<_>) = self.list.drain(..).partition(|o| o.expires_at <= now);
        self.list = keep;
        gone
    }

    /// True when no endpoint's exposure is stored: every endpoint observed is plain, so a
    /// first table need not be listed at all (module docs).
    pub fn all_plain(&self) -> bool {
        self.exposure.is_empty()
    }

    /// Records a published table (what caches may hold of each endpoint, and from that each
    /// drain's progress; module docs, "Drains that finish"), one service at a time: no copy
    /// of a million endpoints is grouped. See [`Observing`].
    pub fn observing(&mut self, now: SystemTime) -> Observing<'_> {
        Observing {
            overrides: self,
            now_ms: unix_ms(now),
        }
    }

    /// Endpoints observed so far, in every table (tests: a swap observes what it rebuilt).
    pub fn observed(&self) -> u64 {
        self.exposure.observed
    }

    /// Recomputes every drain's progress from the exposures of the endpoints it names;
    /// `current` is the table observed last.
    fn update_drains(&mut self, now_ms: u64, current: &dyn Answering) {
        for o in &mut self.list {
            if o.state != Forced::Drain {
                continue;
            }
            let mut p = DrainProgress {
                last_answer_ms: 0,
                max_ttl: 0,
                complete_at_ms: now_ms,
                complete: o.drain.is_some_and(|d| d.complete),
                answerable: false,
            };
            let mut latest_expiry = 0;
            for x in self.exposure.of(&o.target, current, now_ms) {
                p.answerable |= x.answerable_ttl.is_some();
                p.last_answer_ms = p.last_answer_ms.max(x.last_answer_ms);
                if x.expires_ms >= latest_expiry {
                    latest_expiry = x.expires_ms;
                    p.max_ttl = x.ttl;
                }
            }
            if latest_expiry > 0 {
                p.complete_at_ms = latest_expiry;
            }
            p.complete &= !p.answerable;
            o.drain = Some(p);
        }
    }

    /// Marks drains whose time has come complete and returns them (each once).
    pub fn complete_drains(&mut self, now: SystemTime) -> Vec<Override> {
        let now_ms = unix_ms(now);
        let mut done = Vec::new();
        for o in &mut self.list {
            if let Some(d) = &mut o.drain {
                if !d.complete && !d.answerable && now_ms >= d.complete_at_ms {
                    d.complete = true;
                    done.push(o.clone());
                }
            }
        }
        done
    }

    /// The active overrides.
    pub fn list(&self) -> &[Override] {
        &self.list
    }

    /// The drain progress of the override in force for an endpoint, when it is a drain.
    pub fn drain_of(
        &self,
        zone: &str,
        service: &str,
        region: &str,
        address: IpAddr,
    ) -> Option<DrainProgress> {
        self.list
            .iter()
            .filter(|o| o.target.matches(zone, service, region, address))
            .max_by_key(|o| (o.target.specificity(), o.id))
            .and_then(|o| o.drain)
    }

    /// The most specific active override for an endpoint (latest wins among equals).
    pub fn find(&self, zone: &str, service: &str, region: &str, address: IpAddr) -> Option<Forced> {
        self.list
            .iter()
            .filter(|o| o.target.matches(zone, service, region, address))
            .max_by_key(|o| (o.target.specificity(), o.id))
            .map(|o| o.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The tables a health hub would observe, as endpoint lists, observed service by service
    /// as the hub does: each service rebuilt with its endpoints before and after.
    #[derive(Default)]
    struct Seen {
        table: Vec<Answerable<'static>>,
    }

    impl Seen {
        /// Replaces the endpoints of the services for which `rebuilt(zone key, service)`
        /// holds by `list`, and observes those services; `covered` zones' services that
        /// neither table has are retired.
        fn swap(
            &mut self,
            o: &mut Overrides,
            at: SystemTime,
            list: impl IntoIterator<Item = Answerable<'static>>,
            rebuilt: impl Fn(&str, &str) -> bool,
            covered: impl Fn(&str) -> bool,
        ) {
            let after: Vec<_> = list.into_iter().collect();
            let key = |e: &Answerable<'_>| (zone_key(e.zone), e.service.to_string());
            let (before, mut rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.table)
                .into_iter()
                .partition(|e| rebuilt(&zone_key(e.zone), e.service));
            rest.extend(after.iter().copied());
            self.table = rest;
            let services: std::collections::BTreeSet<(String, String)> =
                before.iter().chain(&after).map(key).collect();
            let of = |list: &[Answerable<'static>], (z, s): &(String, String)| -> Vec<_> {
                list.iter()
                    .filter(|e| key(e) == (z.clone(), s.clone()))
                    .copied()
                    .collect()
            };
            let mut observing = o.observing(at);
            for service in &services {
                observing.service(
                    &service.0,
                    &service.1,
                    &of(&before, service),
                    &of(&after, service),
                );
            }
            let has = |z: &str, s: &str| services.contains(&(z.to_string(), s.to_string()));
            observing.finish(covered, has, &self.table);
        }

        /// A new table, every endpoint of it listed.
        fn all(
            &mut self,
            o: &mut Overrides,
            at: SystemTime,
            list: impl IntoIterator<Item = Answerable<'static>>,
        ) {
            self.swap(o, at, list, |_, _| true, |_| true);
        }

        /// A health swap that rebuilt the services of `list`.
        fn services(
            &mut self,
            o: &mut Overrides,
            at: SystemTime,
            list: impl IntoIterator<Item = Answerable<'static>>,
        ) {
            let list: Vec<_> = list.into_iter().collect();
            let named: HashSet<(String, String)> = list
                .iter()
                .map(|e| (zone_key(e.zone), e.service.to_string()))
                .collect();
            let rebuilt = move |z: &str, s: &str| named.contains(&(z.to_string(), s.to_string()));
            self.swap(o, at, list, rebuilt, |_| false);
        }

        /// A reload that rebuilt `zones`, whose endpoints are now `list`.
        fn zones(
            &mut self,
            o: &mut Overrides,
            at: SystemTime,
            zones: &HashSet<String>,
            list: impl IntoIterator<Item = Answerable<'static>>,
        ) {
            self.swap(o, at, list, |z, _| zones.contains(z), |z| zones.contains(z));
        }
    }

    fn target(region: Option<&str>, address: Option<&str>) -> Target {
        Target {
            zone: "gslb.test.".into(),
            service: "www".into(),
            region: region.map(Into::into),
            address: address.map(|a| a.parse().unwrap()),
        }
    }

    fn new(t: Target, state: Forced, secs: u64) -> NewOverride {
        NewOverride {
            target: t,
            state,
            expires_in_seconds: secs,
            reason: "maintenance".into(),
        }
    }

    #[test]
    fn most_specific_override_wins_and_expires() {
        let now = SystemTime::now();
        let mut o = Overrides::default();
        o.add(
            new(target(None, None), Forced::Down, 60),
            now,
            |_| true,
            &NoTable,
        )
        .unwrap();
        o.add(
            new(target(Some("eu"), None), Forced::Drain, 60),
            now,
            |_| true,
            &NoTable,
        )
        .unwrap();
        o.add(
            new(target(None, Some("192.0.2.1")), Forced::Up, 10),
            now,
            |_| true,
            &NoTable,
        )
        .unwrap();
        let ip = |s: &str| s.parse().unwrap();
        assert_eq!(
            o.find("gslb.test", "www", "eu", ip("192.0.2.1")),
            Some(Forced::Up)
        );
        assert_eq!(
            o.find("gslb.test", "www", "eu", ip("192.0.2.2")),
            Some(Forced::Drain)
        );
        assert_eq!(
            o.find("gslb.test", "www", "us", ip("192.0.2.3")),
            Some(Forced::Down)
        );
        assert_eq!(o.find("gslb.test", "api", "us", ip("192.0.2.3")), None);
        let gone = o.expire(now + Duration::from_secs(11));
        assert_eq!(gone.len(), 1);
        assert_eq!(
            o.find("gslb.test", "www", "eu", ip("192.0.2.1")),
            Some(Forced::Drain)
        );
        assert!(o.expire(now + Duration::from_secs(61)).len() == 2 && o.list().is_empty());
    }

    #[test]
    #[allow(clippy::too_many_lines)]
    fn drain_completion_time() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let ip = "192.0.2.1".parse().unwrap();
        let e = |answerable: bool, ttl: u32| Answerable {
            zone: "gslb.test.",
            service: "www",
            region: "eu",
            address: ip,
            answerable,
            ttl,
        };
        let mut o = Overrides::default();
        let mut seen = Seen::default();
        o.add(
            new(target(None, Some("192.0.2.1")), Forced::Drain, 600),
            t0,
            |_| true,
            &NoTable,
        )
        .unwrap();
        o.add(
            new(target(None, None), Forced::Down, 600),
            t0,
            |_| true,
            &NoTable,
        )
        .unwrap();
        // The table serving when the drain was added answers with it, TTL 30.
        seen.all(&mut o, at(0), [e(true, 30)]);
        let progress = |o: &Overrides| o.list()[0].drain.unwrap();
        // Not complete while the serving table can still answer with it.
        assert!(o.complete_drains(at(60_000)).is_empty());
        // The drained table swapped in at 200 ms: no longer answerable, and a shorter TTL
        // (dynamic) does not shorten what caches hold.
        seen.all(&mut o, at(200), [e(false, 5)]);
        assert_eq!(progress(&o).max_ttl, 30);
        assert_eq!(progress(&o).complete_at_ms, unix_ms(at(30_200)));
        assert!(o.complete_drains(at(30_199)).is_empty());
        // Every other endpoint failed: the drained one is answered again (standby), TTL 60.
        seen.all(&mut o, at(10_000), [e(true, 60)]);
        seen.all(&mut o, at(12_000), [e(false, 60)]);
        assert_eq!(progress(&o).complete_at_ms, unix_ms(at(12_000 + 60_000)));
        assert!(o.complete_drains(at(71_999)).is_empty());
        let done = o.complete_drains(at(72_000));
        assert_eq!(done.len(), 1);
        assert!(done[0].drain.unwrap().complete);
        // Reported once; other overrides have no drain progress.
        assert!(o.complete_drains(at(99_000)).is_empty());
        assert!(o.list()[1].drain.is_none());
        // An endpoint the drain does not name changes nothing.
        let other = Answerable {
            address: "192.0.2.9".parse().unwrap(),
            ..e(true, 300)
        };
        seen.all(&mut o, at(100_000), [other]);
        assert!(progress(&o).complete);
    }

    #[test]
    fn a_drain_waits_for_answers_given_before_it() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let e = |answerable: bool| Answerable {
            zone: "gslb.test.",
            service: "www",
            region: "eu",
            address: "192.0.2.1".parse().unwrap(),
            answerable,
            ttl: 30,
        };
        let mut o = Overrides::default();
        let mut seen = Seen::default();
        // Answered with TTL 30, then down at 1 s (not answerable), then drained at 2 s.
        seen.all(&mut o, at(0), [e(true)]);
        seen.all(&mut o, at(1_000), [e(false)]);
        let d = o
            .add(
                new(target(None, Some("192.0.2.1")), Forced::Drain, 600),
                at(2_000),
                |_| true,
                &seen.table,
            )
            .unwrap()
            .drain
            .unwrap();
        assert_eq!((d.complete_at_ms, d.max_ttl), (unix_ms(at(31_000)), 30));
        assert!(o.complete_drains(at(30_999)).is_empty());
        assert_eq!(o.complete_drains(at(31_000)).len(), 1);
    }

    #[test]
    fn a_swap_observes_what_it_rebuilt_and_the_rest_answers_as_before() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let e = |zone: &'static str, service: &'static str, answerable: bool| Answerable {
            zone,
            service,
            region: "eu",
            address: "192.0.2.1".parse().unwrap(),
            answerable,
            ttl: 30,
        };
        let drain = |zone: &str, service: &str| {
            new(
                Target {
                    zone: zone.into(),
                    service: service.into(),
                    region: None,
                    address: None,
                },
                Forced::Drain,
                600,
            )
        };
        let mut o = Overrides::default();
        let mut seen = Seen::default();
        seen.all(
            &mut o,
            at(0),
            [
                e("gslb.test.", "www", true),
                e("gslb.test.", "api", true),
                e("Other.Test.", "www", true),
            ],
        );
        o.add(drain("gslb.test", "www"), at(0), |_| true, &seen.table)
            .unwrap();
        o.add(drain("other.test.", "www"), at(0), |_| true, &seen.table)
            .unwrap();
        assert_eq!(o.observed(), 3);
        // A health swap rebuilt `api` alone: `www` is shared, still answerable, so its drain
        // counts it as answered until now without being observed again.
        seen.services(&mut o, at(5_000), [e("gslb.test.", "api", false)]);
        assert_eq!(o.observed(), 4);
        let www = o.list()[0].drain.unwrap();
        assert!(www.answerable);
        assert_eq!(www.last_answer_ms, unix_ms(at(5_000)));
        // The rebuild that drains `www`, then a reload that removes the other zone.
        seen.services(&mut o, at(6_000), [e("gslb.test.", "www", false)]);
        let zones: HashSet<String> = ["other.test".to_string()].into();
        seen.zones(&mut o, at(7_000), &zones, []);
        assert_eq!(o.observed(), 5);
        let (www, other) = (o.list()[0].drain.unwrap(), o.list()[1].drain.unwrap());
        assert_eq!(
            (www.answerable, www.complete_at_ms),
            (false, unix_ms(at(36_000)))
        );
        assert_eq!(
            (other.answerable, other.complete_at_ms),
            (false, unix_ms(at(37_000)))
        );
        assert_eq!(o.complete_drains(at(36_000)).len(), 1);
        assert_eq!(o.complete_drains(at(37_000)).len(), 1);
        // Answers of the removed zone expired: forgotten at the next observation of it.
        seen.zones(&mut o, at(40_000), &zones, []);
        assert!(!o.exposure.zones.contains_key("other.test"));
    }

    #[test]
    fn only_endpoints_that_are_not_plain_are_stored() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let e = |n: u32, answerable: bool, ttl: u32| Answerable {
            zone: "gslb.test.",
            service: if n % 2 == 0 { "www" } else { "api" },
            region: "eu",
            address: IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n)),
            answerable,
            ttl,
        };
        let mut o = Overrides::default();
        let mut seen = Seen::default();
        seen.all(&mut o, at(0), (0..1_000).map(|n| e(n, true, 30)));
        assert!(
            o.all_plain(),
            "every endpoint answerable with the table's TTL"
        );
        // A second full table, the same: still nothing stored.
        seen.all(&mut o, at(1_000), (0..1_000).map(|n| e(n, true, 30)));
        assert!(o.all_plain());
        // `www` now answers with TTL 5 and endpoint 0 is down: answers given with TTL 30
        // may still be cached, so each of them is stored until that passes.
        let www = |n: u32| e(n, n != 0, 5);
        seen.services(&mut o, at(2_000), (0..1_000).step_by(2).map(www));
        let stored = |o: &Overrides| {
            o.exposure
                .zones
                .values()
                .flat_map(|s| s.values())
                .map(Vec::len)
                .sum::<usize>()
        };
        assert_eq!(stored(&o), 500);
        assert!(!o.exposure.zones["gslb.test"].contains_key("api"));
        // A drain of the down endpoint waits for those answers; one of a plain endpoint
        // counts it as answered until now, read from the table.
        let drain = |address: &str| new(target(None, Some(address)), Forced::Drain, 600);
        let down = o
            .add(drain("10.0.0.0"), at(3_000), |_| true, &seen.table)
            .unwrap();
        let d = down.drain.unwrap();
        assert_eq!(
            (d.answerable, d.max_ttl, d.complete_at_ms),
            (false, 30, unix_ms(at(32_000)))
        );
        let plain = Target {
            service: "api".into(),
            ..target(None, Some("10.0.0.1"))
        };
        let up = o
            .add(
                new(plain, Forced::Drain, 600),
                at(3_000),
                |_| true,
                &seen.table,
            )
            .unwrap();
        let d = up.drain.unwrap();
        assert_eq!(
            (d.answerable, d.max_ttl, d.last_answer_ms),
            (true, 30, unix_ms(at(3_000)))
        );
        // Once the TTL-30 answers have expired, observing `www` again stores nothing.
        seen.services(&mut o, at(40_000), (0..1_000).step_by(2).map(www));
        assert!(o.all_plain(), "{} stored", stored(&o));
    }

    #[test]
    fn refuses_bad_overrides() {
        let now = SystemTime::now();
        let mut o = Overrides::default();
        let cases = [
            (
                new(target(None, None), Forced::Down, 0),
                "expires_in_seconds",
            ),
            (
                new(target(None, None), Forced::Down, MAX_OVERRIDE_SECONDS + 1),
                "expires_in_seconds",
            ),
            (
                NewOverride {
                    reason: " ".into(),
                    ..new(target(None, None), Forced::Down, 5)
                },
                "reason",
            ),
        ];
        for (n, want) in cases {
            let e = o.add(n, now, |_| true, &NoTable).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let e = o
            .add(
                new(target(None, None), Forced::Down, 5),
                now,
                |_| false,
                &NoTable,
            )
            .unwrap_err();
        assert!(e.to_string().starts_with("target matches no endpoint"));
        assert!(o.list().is_empty());
    }
}
