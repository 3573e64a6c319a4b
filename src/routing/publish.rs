//! The one owner of the live [`RoutingTable`]: loads zones, compiles, swaps.
//!
//! Readers call [`Publisher::routes`] and get the current table without a lock. Writers (start-up,
//! SIGHUP, `POST /v1/reload`) serialize on a control-plane mutex, build a complete new table
//! and store it in one atomic swap; a query sees the old table or the new one, never a mix.
//! A zone whose file fails to load keeps its previous version in the new table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::compile::{AllUp, CompileError, EndpointHealth, compile};
use super::table::RoutingTable;
use crate::config::load::{ZoneError, check_unique_origin, load_zone, zone_files};
use crate::config::{Zone, load_dir};
use crate::geo::{GeoDb, GeoError};
use crate::metrics::Metrics;

/// Why the first table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A zone file is bad.
    #[error(transparent)]
    Zone(#[from] ZoneError),
    /// Compiling failed.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The GeoIP database cannot be opened.
    #[error(transparent)]
    Geo(#[from] GeoError),
}

/// Loads zones and GeoIP and compiles a table with every endpoint up, without serving
/// (`meridian explain`).
pub fn compile_offline(zones_dir: &Path, geo_path: &Path) -> Result<RoutingTable, StartError> {
    let zones: Vec<Arc<Zone>> = load_dir(zones_dir)?.into_iter().map(Arc::new).collect();
    let geo = Arc::new(GeoDb::open(geo_path)?);
    Ok(compile(&zones, geo, &AllUp, 0)?)
}

/// What a reload did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReloadReport {
    /// True when every zone file loaded.
    pub ok: bool,
    /// Generation of the table now serving.
    pub generation: u64,
    /// One message per file that was rejected (its previous version, if any, still serves).
    pub errors: Vec<String>,
}

/// Control-plane state behind the mutex.
struct State {
    zones: BTreeMap<PathBuf, Arc<Zone>>,
    geo: Arc<GeoDb>,
    health: Arc<dyn EndpointHealth + Send + Sync>,
    generation: u64,
}

/// Owns the `ArcSwap` and the zones it was compiled from.
pub struct Publisher {
    routes: ArcSwap<RoutingTable>,
    state: Mutex<State>,
    zones_dir: PathBuf,
    geo_path: PathBuf,
    metrics: Arc<Metrics>,
}

impl Publisher {
    /// Loads every zone in `zones_dir` and the GeoIP database at `geo_path` (any error stops
    /// start-up) and publishes generation 1.
    pub fn start(
        zones_dir: &Path,
        geo_path: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let zones: Vec<Arc<Zone>> = load_dir(zones_dir)?.into_iter().map(Arc::new).collect();
        let geo = Arc::new(GeoDb::open(geo_path)?);
        tracing::info!(geoip = %geo.description(), "geoip database loaded");
        let started = std::time::Instant::now();
        let mut table = compile(&zones, Arc::clone(&geo), &AllUp, 1)?;
        metrics.record_compile(started.elapsed());
        metrics.attach(&mut table);
        metrics.record_swap(1);
        Ok(Self {
            routes: ArcSwap::from_pointee(table),
            state: Mutex::new(State {
                zones: zones.into_iter().map(|z| (z.file.clone(), z)).collect(),
                geo,
                health: Arc::new(AllUp),
                generation: 1,
            }),
            zones_dir: zones_dir.to_path_buf(),
            geo_path: geo_path.to_path_buf(),
            metrics,
        })
    }

    /// The table queries read now. Lock-free.
    pub fn routes(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.routes.load()
    }

    /// The table, as an owned handle (for the control plane).
    pub fn table(&self) -> Arc<RoutingTable> {
        self.routes.load_full()
    }

    /// The zones serving now.
    pub fn zones(&self) -> Vec<Arc<Zone>> {
        self.lock().zones.values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Recompiles with new endpoint health and publishes the table.
    pub fn set_health(&self, health: Arc<dyn EndpointHealth + Send + Sync>) {
        let mut state = self.lock();
        state.health = health;
        let generation = state.generation + 1;
        let zones: Vec<Arc<Zone>> = state.zones.values().cloned().collect();
        let started = std::time::Instant::now();
        match compile(
            &zones,
            Arc::clone(&state.geo),
            state.health.as_ref(),
            generation,
        ) {
            Ok(mut table) => {
                self.metrics.record_compile(started.elapsed());
                self.metrics.attach(&mut table);
                self.routes.store(Arc::new(table));
                state.generation = generation;
                self.metrics.record_swap(generation);
                tracing::debug!(generation, took = ?started.elapsed(), "table recompiled for health");
            }
            Err(e) => {
                tracing::error!(error = %e, "recompile for health failed; previous table keeps serving")
            }
        }
    }

    /// Re-reads the zones directory and publishes a new table.
    pub fn reload(&self) -> ReloadReport {
        let mut state = self.lock();
        let mut errors = Vec::new();
        let mut next: BTreeMap<PathBuf, Arc<Zone>> = BTreeMap::new();
        match zone_files(&self.zones_dir) {
            Err(e) => {
                errors.push(e.to_string());
                next = state.zones.clone();
            }
            Ok(files) => {
                for path in files {
                    let loaded = load_zone(&path).and_then(|zone| {
                        check_unique_origin(next.values().map(|z| &**z), &zone)?;
                        Ok(zone)
                    });
                    match loaded {
                        Ok(zone) => {
                            next.insert(path, Arc::new(zone));
                        }
                        Err(e) => {
                            errors.push(e.to_string());
                            if let Some(previous) = state.zones.get(&path) {
                                next.insert(path, Arc::clone(previous));
                            }
                        }
                    }
                }
            }
        }
        // The database is swapped with the table; a bad file keeps the previous one.
        let geo = match GeoDb::open(&self.geo_path) {
            Ok(geo) => Arc::new(geo),
            Err(e) => {
                errors.push(e.to_string());
                Arc::clone(&state.geo)
            }
        };
        let generation = state.generation + 1;
        let zones: Vec<Arc<Zone>> = next.values().cloned().collect();
        let started = std::time::Instant::now();
        match compile(&zones, Arc::clone(&geo), state.health.as_ref(), generation) {
            Ok(mut table) => {
                self.metrics.record_compile(started.elapsed());
                self.metrics.attach(&mut table);
                self.routes.store(Arc::new(table));
                state.zones = next;
                state.geo = geo;
                state.generation = generation;
                self.metrics.record_swap(generation);
            }
            Err(e) => errors.push(e.to_string()),
        }
        let ok = errors.is_empty();
        self.metrics.record_reload(ok);
        for e in &errors {
            tracing::warn!(error = %e, "zone rejected on reload; previous version keeps serving");
        }
        tracing::info!(generation = state.generation, ok, "reload finished");
        ReloadReport {
            ok,
            generation: state.generation,
            errors,
        }
    }
}
