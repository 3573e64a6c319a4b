//! The one owner of the live [`RoutingTable`]: compiles and swaps, nothing else.
//!
//! Readers call [`Publisher::routes`] and get the current table without a lock. Writers (the
//! control plane's reload and the health task) hand over *already loaded* zones and GeoIP
//! database, or new health; the publisher compiles a complete new table under its own mutex
//! and stores it in one atomic swap, so a query sees the old table or the new one, never a mix.
//!
//! Owns: the `ArcSwap`, the zones and database the live table was compiled from, the health it
//! was compiled against, the generation counter. Never: reads a file or a database (the
//! control plane loads, `control::reload`), so nothing slow happens under the mutex that health
//! updates need; never stores a table that did not compile (the old one keeps serving).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::compile::{AllUp, CompileError, EndpointHealth, compile, compile_counted};
use super::counters::TableMetrics;
use super::table::RoutingTable;
use crate::config::{Zone, ZoneError, load_dir};
use crate::geo::{GeoDb, GeoError};

/// Why a table could not be built from files (start-up, `check-config`, `explain`).
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

/// Zones by the file they came from: the unit a reload keeps or replaces.
pub type ZoneFiles = BTreeMap<PathBuf, Arc<Zone>>;

/// Loads every zone of `zones_dir` (any error fails) and opens the GeoIP database: what
/// `serve` does at start-up, `check-config` and `explain` offline.
pub fn load_sources(zones_dir: &Path, geo_path: &Path) -> Result<(ZoneFiles, GeoDb), StartError> {
    let zones = load_dir(zones_dir)?
        .into_iter()
        .map(|z| (z.file.clone(), Arc::new(z)))
        .collect();
    let geo = GeoDb::open(geo_path)?;
    Ok((zones, geo))
}

/// Loads zones and GeoIP and compiles a table with every endpoint up, without serving
/// (`meridian explain`, `meridian check-config`).
pub fn compile_offline(zones_dir: &Path, geo_path: &Path) -> Result<RoutingTable, StartError> {
    let (zones, geo) = load_sources(zones_dir, geo_path)?;
    let zones: Vec<Arc<Zone>> = zones.into_values().collect();
    Ok(compile(&zones, Arc::new(geo), &AllUp, 0)?)
}

/// What the live table was compiled from.
struct State {
    zones: ZoneFiles,
    geo: Arc<GeoDb>,
    health: Arc<dyn EndpointHealth + Send + Sync>,
    generation: u64,
}

/// Owns the `ArcSwap` and the inputs of the table it holds.
pub struct Publisher {
    routes: ArcSwap<RoutingTable>,
    state: Mutex<State>,
    metrics: Arc<TableMetrics>,
}

impl Publisher {
    /// Compiles `zones` against `geo` with every endpoint up and publishes generation 1.
    pub fn new(
        zones: ZoneFiles,
        geo: GeoDb,
        metrics: Arc<TableMetrics>,
    ) -> Result<Self, CompileError> {
        let geo = Arc::new(geo);
        let list: Vec<Arc<Zone>> = zones.values().cloned().collect();
        let started = std::time::Instant::now();
        let mut counters = metrics.factory();
        let table = compile_counted(&list, Arc::clone(&geo), &AllUp, 1, &mut counters)?;
        metrics.record_compile(started.elapsed());
        metrics.commit(counters);
        metrics.record_swap(1);
        Ok(Self {
            routes: ArcSwap::from_pointee(table),
            state: Mutex::new(State {
                zones,
                geo,
                health: Arc::new(AllUp),
                generation: 1,
            }),
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

    /// The zones serving now, by file.
    pub fn zone_files(&self) -> ZoneFiles {
        self.lock().zones.clone()
    }

    /// The zones serving now.
    pub fn zones(&self) -> Vec<Arc<Zone>> {
        self.lock().zones.values().cloned().collect()
    }

    /// The GeoIP database serving now.
    pub fn geo(&self) -> Arc<GeoDb> {
        Arc::clone(&self.lock().geo)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Recompiles with new endpoint health and publishes the table. On a compile error the
    /// previous table keeps serving (logged: the health task has no one to return it to).
    pub fn set_health(&self, health: Arc<dyn EndpointHealth + Send + Sync>) {
        let mut state = self.lock();
        state.health = health;
        let zones: Vec<Arc<Zone>> = state.zones.values().cloned().collect();
        let geo = Arc::clone(&state.geo);
        match self.swap(&mut state, &zones, geo) {
            Ok(generation) => tracing::debug!(generation, "table recompiled for health"),
            Err(e) => {
                tracing::error!(error = %e, "recompile for health failed; previous table keeps serving")
            }
        }
    }

    /// Recompiles the same inputs and publishes the table: DNSSEC signatures are renewed and
    /// keys change state with time alone (`routing::signed::resign`). On a compile error the
    /// previous table keeps serving (logged).
    pub fn recompile(&self) {
        let mut state = self.lock();
        let zones: Vec<Arc<Zone>> = state.zones.values().cloned().collect();
        let geo = Arc::clone(&state.geo);
        match self.swap(&mut state, &zones, geo) {
            Ok(generation) => tracing::info!(generation, "table recompiled: DNSSEC re-signed"),
            Err(e) => {
                tracing::error!(error = %e, "re-signing failed; previous table keeps serving")
            }
        }
    }

    /// Publishes a new configuration (zones and database), compiled against the current
    /// health. Returns the generation now serving; on error nothing changes.
    pub fn set_config(&self, zones: ZoneFiles, geo: Arc<GeoDb>) -> Result<u64, CompileError> {
        let mut state = self.lock();
        let list: Vec<Arc<Zone>> = zones.values().cloned().collect();
        let generation = self.swap(&mut state, &list, Arc::clone(&geo))?;
        state.zones = zones;
        state.geo = geo;
        Ok(generation)
    }

    /// Compiles the next generation and stores it; the caller holds the state lock.
    fn swap(
        &self,
        state: &mut State,
        zones: &[Arc<Zone>],
        geo: Arc<GeoDb>,
    ) -> Result<u64, CompileError> {
        let generation = state.generation + 1;
        let started = std::time::Instant::now();
        let mut counters = self.metrics.factory();
        let table = compile_counted(zones, geo, state.health.as_ref(), generation, &mut counters)?;
        self.metrics.record_compile(started.elapsed());
        // Series of zones and services the new table lacks go before it serves.
        self.metrics.commit(counters);
        self.routes.store(Arc::new(table));
        state.generation = generation;
        self.metrics.record_swap(generation);
        Ok(generation)
    }

    /// Generation of the table serving now.
    pub fn generation(&self) -> u64 {
        self.routes.load().generation
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::metrics::Metrics;

    fn lines_with(text: &str, needle: &str) -> usize {
        text.lines().filter(|l| l.contains(needle)).count()
    }

    #[test]
    fn a_new_configuration_takes_the_series_of_removed_zones_with_it() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (zones, geo) = load_sources(
            &root.join("fuzz/zones"),
            &root.join("geoip/meridian-sample.txt"),
        )
        .unwrap();
        let tables = Arc::new(TableMetrics::default());
        let m = Metrics::new(|r| tables.register_queries(r));
        let publisher = Publisher::new(zones.clone(), geo, Arc::clone(&tables)).unwrap();
        let gslb = r#"zone="gslb.example.test.""#;
        let text = m.render();
        let answers = lines_with(&text, "meridian_service_answers_total{");
        assert!(answers > 0, "{text}");
        assert_eq!(lines_with(&text, gslb), 15 + answers, "{text}");
        let kept: ZoneFiles = zones
            .into_iter()
            .filter(|(_, z)| z.origin.to_string() != "gslb.example.test.")
            .collect();
        assert_eq!(publisher.set_config(kept, publisher.geo()).unwrap(), 2);
        let text = m.render();
        assert_eq!(lines_with(&text, gslb), 0, "{text}");
        assert!(text.contains(r#"zone="neg.test.""#), "{text}");
        assert!(text.contains(r#"zone="none""#), "{text}");
    }
}
