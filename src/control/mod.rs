//! The control plane's one owner: the last-good config of every zone, the GeoIP database and
//! prober keys, the health book and overrides (through [`HealthHub`]), the embedded prober,
//! and the [`Publisher`] that turns them into the table queries read.
//!
//! Every way of changing what is served goes through [`ControlPlane`]: SIGHUP, the config
//! watcher ([`watch`]), `POST /v1/reload`, the control socket ([`socket`], `meridian ctl`),
//! probe reports and overrides. Loading and validating (config, geo, keys) happen here,
//! outside any lock that health updates need; compiling and swapping are the publisher's.
//!
//! Owns: reload serialisation and reporting, the decision of which zone version serves
//! ([`reload`]), serving/draining state for `/health`. Never: sits on the query path, or lets
//! a failed load replace anything that serves.

pub mod check;
pub mod health_change;
pub mod metrics;
pub mod reload;
pub mod socket;
pub mod watch;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::HeaderMap;
use serde::Serialize;

use crate::config::model::Zone;
use crate::geo::GeoDb;
use crate::health::aggregate::IngestSummary;
use crate::health::export::HealthMetrics;
use crate::health::hub::{HealthHub, HealthSnapshot};
use crate::health::overrides::{NewOverride, Override, OverrideError, Target, zone_key};
use crate::health::report::{Keyring, RejectReason};
use crate::probe::targets::{checked_endpoints, endpoint_layout};
use crate::prober::LocalProber;
use crate::routing::counters::TableMetrics;
use crate::routing::publish::{Build, Publisher, StartError, load_sources};
use crate::routing::table::RoutingTable;
use metrics::ReloadMetrics;
use reload::{KeptZone, reload_zones};

/// Where the configuration comes from: what a reload re-reads and the watcher watches.
#[derive(Clone, Debug)]
pub struct Sources {
    /// Directory of zone files.
    pub zones_dir: PathBuf,
    /// GeoIP database.
    pub geoip: PathBuf,
    /// Prober keys, if reports are accepted.
    pub keys: Option<PathBuf>,
}

/// What a reload did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReloadReport {
    /// True when every file (zones, GeoIP, keys) was taken.
    pub ok: bool,
    /// Generation of the table now serving.
    pub generation: u64,
    /// One message per file that was rejected (what and where).
    pub errors: Vec<String>,
    /// Zones serving their previous version, and why.
    pub kept: Vec<KeptZone>,
    /// Zones serving now.
    pub zones: usize,
    /// The table this reload built (what it compiled and shared), when it built one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<Build>,
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Zones or GeoIP do not load or compile.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The prober key file is bad.
    #[error(transparent)]
    Keys(#[from] crate::health::report::KeyringError),
}

/// Something else a reload re-reads (the DNS listeners' TLS certificate): it keeps its
/// previous version on error and returns the message for the reload report.
pub type ReloadHook = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The control plane of one `serve` process.
pub struct ControlPlane {
    sources: Sources,
    publisher: Arc<Publisher>,
    /// The table metrics the publisher counts into (the health task records its latency).
    tables: Arc<TableMetrics>,
    hub: Arc<HealthHub>,
    prober: Option<Mutex<LocalProber>>,
    metrics: ReloadMetrics,
    /// Serialises reloads (and only reloads: health never waits for file I/O).
    reloading: Mutex<Option<ReloadReport>>,
    serving: AtomicBool,
    draining: AtomicBool,
    /// Run by every reload after the zones (see [`ControlPlane::add_reload_hook`]).
    hooks: Mutex<Vec<ReloadHook>>,
    /// In distributed mode, where the zones come from (`etcd::zones` writes them to
    /// `sources.zones_dir` and calls [`ControlPlane::reload`]) and the revision serving.
    config_source: OnceLock<Arc<dyn ConfigSource>>,
}

impl ControlPlane {
    /// Loads everything once (any error stops start-up) and publishes generation 1. The
    /// embedded prober, when `local_probe`, starts with [`ControlPlane::start_probing`]. The
    /// publisher counts into `tables`, the health hub into `health`, reloads into `reloads`.
    pub fn start(
        sources: Sources,
        grace: Duration,
        local_probe: bool,
        tables: Arc<TableMetrics>,
        health: Arc<HealthMetrics>,
        reloads: ReloadMetrics,
    ) -> Result<Arc<Self>, ControlError> {
        let started = std::time::Instant::now();
        let (zones, geo) = load_sources(&sources.zones_dir, &sources.geoip)?;
        tracing::info!(
            zones = zones.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "zones loaded"
        );
        tracing::info!(geoip = %geo.description(), "geoip database loaded");
        let keyring = match &sources.keys {
            Some(path) => Some(Keyring::load(path)?),
            None => None,
        };
        let compiling = std::time::Instant::now();
        let publisher =
            Arc::new(Publisher::new(zones, geo, Arc::clone(&tables)).map_err(StartError::from)?);
        tracing::info!(
            elapsed_ms = compiling.elapsed().as_millis() as u64,
            "routing table compiled"
        );
        let hub = Arc::new(HealthHub::new(
            checked_endpoints(&publisher.zones()),
            grace,
            keyring,
            health,
        ));
        hub.set_layout(endpoint_layout(&publisher.zones()));
        Ok(Arc::new(Self {
            sources,
            publisher,
            tables,
            hub,
            prober: local_probe.then(|| Mutex::new(LocalProber::stopped())),
            metrics: reloads,
            reloading: Mutex::new(None),
            serving: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            hooks: Mutex::new(Vec::new()),
            config_source: OnceLock::new(),
        }))
    }

    /// Lets the embedded prober run exec checks from these directories (`serve
    /// --allow-exec`); call before [`ControlPlane::start_probing`].
    pub fn allow_exec(&self, allow: crate::probe::exec::AllowExec) {
        if let Some(prober) = &self.prober {
            prober
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_allow_exec(allow);
        }
    }

    /// Starts the health task (decisions -> recompiles) and the embedded prober. Needs the
    /// Tokio runtime.
    pub fn start_probing(self: &Arc<Self>) {
        // What caches may hold starts with the first table (drains, `health::overrides`).
        let observing = std::time::Instant::now();
        self.hub.observe_table(&self.publisher.table());
        tracing::debug!(
            elapsed_ms = observing.elapsed().as_millis() as u64,
            "first table observed for drains"
        );
        let publisher = Arc::clone(&self.publisher);
        let hub = Arc::downgrade(&self.hub);
        let tables = Arc::clone(&self.tables);
        // The health the table was compiled against: every endpoint up, which is what an
        // empty snapshot says. Only this task publishes health, so it stays in step.
        let compiled = Mutex::new(Arc::new(HealthSnapshot::default()));
        tokio::spawn(Arc::clone(&self.hub).run(move |snapshot| {
            let started = std::time::Instant::now();
            let snapshot = Arc::new(snapshot);
            let mut last = compiled.lock().unwrap_or_else(|p| p.into_inner());
            let change = health_change::health_change(&last, &snapshot);
            publisher.set_health_changed(Arc::clone(&snapshot) as _, &change);
            tables.record_health_update(started.elapsed());
            *last = snapshot;
            drop(last);
            if let Some(hub) = hub.upgrade() {
                // Only what the change rebuilt: the rest is shared and answers as before.
                hub.observe_change(&publisher.table(), &change);
            }
        }));
        if let Some(prober) = &self.prober {
            let mut p = prober.lock().unwrap_or_else(|p| p.into_inner());
            p.restart(&self.publisher.zones(), &self.hub);
        }
    }

    /// The table owner (the DNS handler reads through it).
    pub fn publisher(&self) -> &Arc<Publisher> {
        &self.publisher
    }

    /// Health decisions, votes and overrides.
    pub fn hub(&self) -> &Arc<HealthHub> {
        &self.hub
    }

    /// The table serving now.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.publisher.table()
    }

    /// Marks the zones as coming from `source` (first call wins): `/v1/status` and `ctl
    /// status` show its state.
    pub fn set_config_source(&self, source: Arc<dyn ConfigSource>) {
        let _ = self.config_source.set(source);
    }

    /// Where the zones come from, when not from the zone directory itself.
    pub fn config_source(&self) -> Option<&Arc<dyn ConfigSource>> {
        self.config_source.get()
    }

    /// The configuration sources.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Re-reads zones, GeoIP and keys; each part that fails keeps its previous version, and
    /// the report says which and why. Zone files whose metadata did not change are not read
    /// ([`reload::Reread::Changed`]). Blocking (file I/O, compile): call it off the runtime's
    /// worker threads (`spawn_blocking`), inside the runtime.
    pub fn reload(&self) -> ReloadReport {
        self.reload_with(reload::Reread::Changed)
    }

    /// [`Self::reload`], reading every zone file with [`reload::Reread::All`] (SIGHUP).
    pub fn reload_with(&self, reread: reload::Reread) -> ReloadReport {
        let mut last = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self.publisher.zone_files();
        let (table_before, zones_before) = (self.publisher.table(), self.publisher.zones());
        let zones = reload_zones(&self.sources.zones_dir, &previous, reread);
        let mut errors = zones.errors;
        let geo = match GeoDb::open(&self.sources.geoip) {
            Ok(geo) => Arc::new(geo),
            Err(e) => {
                errors.push(format!("{e} (previous database kept)"));
                self.publisher.geo()
            }
        };
        let keyring = match &self.sources.keys {
            Some(path) => match Keyring::load(path) {
                Ok(k) => Some(k),
                Err(e) => {
                    errors.push(format!("{e} (previous keys kept)"));
                    None
                }
            },
            None => None,
        };
        let mut kept = zones.kept;
        let count = zones.zones.len();
        let mut built = None;
        let generation = match self.publisher.set_config(zones.zones, geo) {
            Ok(g) => {
                built = Some(self.publisher.last_build());
                g
            }
            Err(e) => {
                errors.push(format!("{e} (previous table keeps serving)"));
                kept = self
                    .publisher
                    .zones()
                    .iter()
                    .map(|z| KeptZone {
                        origin: z.origin.to_string(),
                        file: z.file.display().to_string(),
                        reason: format!("the new configuration does not compile: {e}"),
                    })
                    .collect();
                self.publisher.generation()
            }
        };
        if let Some(k) = keyring {
            self.hub.set_keyring(Some(k));
        }
        let serving = self.publisher.zones();
        // The health side follows the zones this reload changed, not the whole table.
        self.hub
            .observe_reload(&table_before, &self.publisher.table());
        let (names, changed) = changed_zones(&zones_before, &serving);
        self.hub.replace_zones(
            &names,
            checked_endpoints(&changed),
            endpoint_layout(&changed),
        );
        if let Some(prober) = &self.prober {
            let mut p = prober.lock().unwrap_or_else(|p| p.into_inner());
            p.restart(&serving, &self.hub);
        }

        for hook in self.hooks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if let Err(e) = hook() {
                errors.push(e);
            }
        }
        let ok = errors.is_empty();
        self.metrics.record_reload(ok);
        let kept_labels: Vec<(String, String)> = kept
            .iter()
            .map(|k| (k.origin.clone(), k.file.clone()))
            .collect();
        self.metrics.set_zones_kept(&kept_labels);
        for e in &errors {
            tracing::warn!(error = %e, "rejected on reload");
        }
        for k in &kept {
            tracing::warn!(zone = %k.origin, file = %k.file, reason = %k.reason, "zone kept at its previous version");
        }
        tracing::info!(
            generation,
            ok,
            zones = count,
            kept = kept.len(),
            "reload finished"
        );
        let report = ReloadReport {
            ok,
            generation,
            errors,
            kept,
            zones: serving.len(),
            table: built,
        };
        *last = Some(report.clone());
        report
    }

    /// Adds something every reload re-reads after the zones; its error (its previous version
    /// kept) goes into the report's errors and makes the reload count as failed.
    pub fn add_reload_hook(&self, hook: ReloadHook) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    /// The last reload's report, if there was one.
    pub fn last_reload(&self) -> Option<ReloadReport> {
        self.reloading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Verifies and records a signed probe report.
    pub fn apply_reports(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<IngestSummary, RejectReason> {
        self.hub.accept_signed(headers, body)
    }

    /// Adds an override; its target must name at least one endpoint served now.
    pub fn set_override(&self, new: NewOverride) -> Result<Override, OverrideError> {
        let table = self.table();
        // The drain's progress counts the table serving until its recompile as answering now
        // (`health::overrides`): no observation of the whole table here.
        let added = self
            .hub
            .add_override(new, |t: &Target| target_matches(&table, t))?;
        Ok(self
            .hub
            .overrides()
            .into_iter()
            .find(|o| o.id == added.id)
            .unwrap_or(added))
    }

    /// Removes an override; false when there is none with this id.
    pub fn remove_override(&self, id: u64) -> bool {
        self.hub.remove_override(id)
    }

    /// Active overrides.
    pub fn overrides(&self) -> Vec<Override> {
        self.hub.overrides()
    }

    /// Marks the first table as served (listeners are up).
    pub fn set_serving(&self) {
        self.serving.store(true, Ordering::Release);
    }

    /// Marks the process as draining (SIGTERM).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Why the process is not ready to take traffic, or `None` when it is (`/health`).
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.draining.load(Ordering::Acquire) {
            Some("draining: shutting down")
        } else if !self.serving.load(Ordering::Acquire) {
            Some("starting: the first table is not served yet")
        } else {
            None
        }
    }

    /// A summary for `meridian ctl status`.
    pub fn status(&self) -> StatusSummary {
        let table = self.table();
        let mut zones: Vec<ZoneSummary> = table
            .zones()
            .map(|z| ZoneSummary {
                origin: z.origin.to_string(),
                serial: z.serial,
                file: z.source.file.display().to_string(),
            })
            .collect();
        zones.sort_by(|a, b| a.origin.cmp(&b.origin));
        let view = self.hub.view();
        StatusSummary {
            generation: table.generation,
            ready: self.not_ready().is_none(),
            zones,
            endpoints_down: view.down_count(),
            overrides: self.overrides(),
            last_reload: self.last_reload(),
            last_build: self.publisher.last_build(),
            etcd: self.config_source().map(|s| s.status_json()),
        }
    }
}

/// `meridian ctl status`.
#[derive(Clone, Debug, Serialize)]
pub struct StatusSummary {
    /// Table generation.
    pub generation: u64,
    /// Serving and not draining.
    pub ready: bool,
    /// Zones serving.
    pub zones: Vec<ZoneSummary>,
    /// Endpoints decided down.
    pub endpoints_down: usize,
    /// Active overrides.
    pub overrides: Vec<Override>,
    /// The last reload, if any.
    pub last_reload: Option<ReloadReport>,
    /// The last table built: why, what it compiled and shared, how long it took.
    pub last_build: Build,
    /// In distributed mode: etcd and the configuration revision serving.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd: Option<serde_json::Value>,
}

/// Where the zones come from when something else writes the zone directory (distributed
/// mode: `etcd::zones`), as `/v1/status` and `ctl status` show it. A trait, so that the
/// control plane does not depend on the module that depends on it.
pub trait ConfigSource: Send + Sync {
    /// Its key in `/v1/status` (`etcd`).
    fn name(&self) -> &'static str;
    /// Its state: connection, configuration revision serving.
    fn status_json(&self) -> serde_json::Value;
}

/// A zone in [`StatusSummary`].
#[derive(Clone, Debug, Serialize)]
pub struct ZoneSummary {
    /// Origin.
    pub origin: String,
    /// SOA serial.
    pub serial: u32,
    /// File.
    pub file: String,
}

/// The zones of `now` that are not those of `before` (added or edited: another `Arc`) and the
/// zones `before` had and `now` lacks: their names as endpoint keys give them (lowercase,
/// without the trailing dot), and the zones of `now` among them. Zones are told apart by
/// their `Arc` first, so the unchanged ones cost a pointer each.
fn changed_zones(before: &[Arc<Zone>], now: &[Arc<Zone>]) -> (HashSet<String>, Vec<Arc<Zone>>) {
    let name = |z: &Zone| zone_key(&z.origin.to_string());
    let kept: HashSet<*const Zone> = now.iter().map(Arc::as_ptr).collect();
    let old: HashSet<*const Zone> = before.iter().map(Arc::as_ptr).collect();
    let changed: Vec<Arc<Zone>> = now
        .iter()
        .filter(|z| !old.contains(&Arc::as_ptr(z)))
        .cloned()
        .collect();
    let names = before
        .iter()
        .filter(|z| !kept.contains(&Arc::as_ptr(z)))
        .chain(&changed)
        .map(|z| name(z))
        .collect();
    (names, changed)
}

/// True when `t` names at least one endpoint of the table: a look-up of the zone and the
/// service, not a walk over every endpoint (a million-service table answers at once).
fn target_matches(table: &RoutingTable, t: &Target) -> bool {
    let Ok(mut origin) = hickory_proto::rr::Name::from_str_relaxed(&t.zone) else {
        return false;
    };
    origin.set_fqdn(true);
    let Some(zone) = table.zone_at(&crate::routing::table::key_wire(&origin)) else {
        return false;
    };
    let Some(service) = zone
        .service_index(&t.service)
        .and_then(|i| zone.services.get(i))
    else {
        return false;
    };
    service.regions.iter().any(|region| {
        t.region.as_deref().is_none_or(|name| name == region.name)
            && service
                .endpoints
                .get(region.endpoints.clone())
                .unwrap_or(&[])
                .iter()
                .any(|e| t.address.is_none_or(|a| a == e.address))
    })
}
