//! The one owner of the live [`RoutingTable`]: compiles and swaps, nothing else.
//!
//! Readers call [`Publisher::routes`] and get the current table without a lock. Writers (the
//! control plane's reload and the health task) hand over *already loaded* zones and GeoIP
//! database, or new health; the publisher builds the next table under its own mutex and
//! stores it in one atomic swap, so a query sees the old table or the new one, never a mix.
//!
//! The next table shares what did not change with the one serving (`compile::recompile_zones`,
//! `compile::rebuild_services`): a reload compiles only zones whose loaded source is new (the
//! control plane hands back the same `Arc<Zone>` for a file it did not re-read), a health
//! change only the services named in its [`HealthChange`], DNSSEC re-signing only the signed
//! zones. Invariant: every service serving was compiled against the health held here.
//!
//! Owns: the `ArcSwap`, the zones and database the live table was compiled from, the health it
//! was compiled against, the generation counter. Never: reads a file or a database (the
//! control plane loads, `control::reload`), so nothing slow happens under the mutex that health
//! updates need; never stores a table that did not compile (the old one keeps serving).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::Name;

use arc_swap::ArcSwap;

use super::compile::{
    AllUp, CompileError, EndpointHealth, Recompiled, Reuse, compile, compile_counted,
    rebuild_services, recompile_zones,
};
use super::counters::{CounterFactory, TableMetrics};
use super::table::{RoutingTable, key_wire};
use super::weights;
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

/// What changed in endpoint health since the health the serving table was compiled against.
#[derive(Clone, Debug)]
pub enum HealthChange {
    /// Anything may have: every service is rebuilt.
    Everything,
    /// Only endpoints of these services (their decided state, signals or overrides).
    Services(Vec<ServiceChange>),
}

/// A service whose health inputs changed.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceChange {
    /// Zone origin, as health names it (with or without the trailing dot, any case).
    pub zone: String,
    /// Service key.
    pub service: String,
    /// When the only change is the slow-start clock of an endpoint (how long ago it came
    /// back: before, now), the service is rebuilt only if its ramp moved.
    pub recovered: Option<(Option<Duration>, Option<Duration>)>,
}

/// Why a table was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildCause {
    /// The first table.
    Start,
    /// A new configuration.
    Reload,
    /// Endpoint health or overrides changed.
    Health,
    /// DNSSEC re-signing.
    Resign,
}

/// The last table built: why, what it compiled and shared, and how long building it took
/// (`ctl status`, reload reports).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Build {
    /// Its generation.
    pub generation: u64,
    /// Why it was built.
    pub cause: BuildCause,
    /// What it compiled and what it shared with the table before it.
    #[serde(flatten)]
    pub reuse: Reuse,
    /// From the publisher taking the change to the table serving, seconds.
    pub seconds: f64,
}

/// What the live table was compiled from.
struct State {
    zones: ZoneFiles,
    geo: Arc<GeoDb>,
    health: Arc<dyn EndpointHealth + Send + Sync>,
    generation: u64,
    last: Build,
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
        let started = Instant::now();
        let mut counters = metrics.factory(None);
        let table = compile_counted(&list, Arc::clone(&geo), &AllUp, 1, &mut counters)?;
        metrics.record_compile(started.elapsed());
        let reuse = Reuse {
            zones_compiled: table.zone_count(),
            services_compiled: table.zones().map(|z| z.services.len()).sum(),
            ..Reuse::default()
        };
        metrics.record_reuse(&reuse);
        let table = Arc::new(table);
        metrics.publish(counters, &table);
        metrics.record_swap(1);
        Ok(Self {
            routes: ArcSwap::new(table),
            state: Mutex::new(State {
                zones,
                geo,
                health: Arc::new(AllUp),
                generation: 1,
                last: Build {
                    generation: 1,
                    cause: BuildCause::Start,
                    reuse,
                    seconds: started.elapsed().as_secs_f64(),
                },
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

    /// Rebuilds every service against new endpoint health and publishes the table (names,
    /// records and signatures are shared). See [`Publisher::set_health_changed`] to rebuild
    /// only what changed.
    pub fn set_health(&self, health: Arc<dyn EndpointHealth + Send + Sync>) {
        self.set_health_changed(health, &HealthChange::Everything);
    }

    /// Publishes a table for new endpoint health that rebuilds only the services `change`
    /// names, sharing everything else with the table serving. `change` must cover every
    /// difference between `health` and the health held now. Returns the generation.
    pub fn set_health_changed(
        &self,
        health: Arc<dyn EndpointHealth + Send + Sync>,
        change: &HealthChange,
    ) -> u64 {
        let mut state = self.lock();
        let started = Instant::now();
        state.health = health;
        let previous = self.routes.load_full();
        let changed = match change {
            HealthChange::Everything => previous
                .zones
                .iter()
                .map(|(key, z)| (Box::from(&**key), (0..z.services.len()).collect()))
                .collect(),
            HealthChange::Services(list) => affected(&previous, list),
        };
        let generation = state.generation + 1;
        let (table, reuse) =
            rebuild_services(&previous, &changed, state.health.as_ref(), generation);
        self.metrics.record_compile(started.elapsed());
        self.metrics.record_reuse(&reuse);
        // Rebuilt services share their counters: nothing to carry.
        self.store(&mut state, table, CounterFactory::detached());
        state.last = Build {
            generation,
            cause: BuildCause::Health,
            reuse,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::debug!(
            generation,
            services = reuse.services_compiled,
            "table rebuilt for health"
        );
        generation
    }

    /// Recompiles the signed zones from the same inputs and publishes the table: DNSSEC
    /// signatures are renewed and keys change state with time alone
    /// (`routing::signed::resign`). Unsigned zones are shared. On a compile error the
    /// previous table keeps serving (logged).
    pub fn recompile(&self) {
        let mut state = self.lock();
        let zones: Vec<Arc<Zone>> = state.zones.values().cloned().collect();
        let geo = Arc::clone(&state.geo);
        let signed = |z: &Zone| z.dnssec.is_some();
        match self.swap(&mut state, &zones, geo, &signed, BuildCause::Resign) {
            Ok(generation) => tracing::info!(generation, "table recompiled: DNSSEC re-signed"),
            Err(e) => {
                tracing::error!(error = %e, "re-signing failed; previous table keeps serving")
            }
        }
    }

    /// Publishes a new configuration (zones and database), compiled against the current
    /// health: zones whose `Arc<Zone>` is the one serving are shared, the others compiled.
    /// Returns the generation now serving; on error nothing changes.
    pub fn set_config(&self, zones: ZoneFiles, geo: Arc<GeoDb>) -> Result<u64, CompileError> {
        let mut state = self.lock();
        let list: Vec<Arc<Zone>> = zones.values().cloned().collect();
        let generation = self.swap(
            &mut state,
            &list,
            Arc::clone(&geo),
            &|_: &Zone| false,
            BuildCause::Reload,
        )?;
        state.zones = zones;
        state.geo = geo;
        Ok(generation)
    }

    /// Builds the next generation from `zones` (sharing what it can, compiling what `fresh`
    /// names) and stores it; the caller holds the state lock.
    fn swap(
        &self,
        state: &mut State,
        zones: &[Arc<Zone>],
        geo: Arc<GeoDb>,
        fresh: &(dyn Fn(&Zone) -> bool + Sync),
        cause: BuildCause,
    ) -> Result<u64, CompileError> {
        let generation = state.generation + 1;
        let started = Instant::now();
        let previous = self.routes.load_full();
        let mut counters = self.metrics.factory(Some(Arc::clone(&previous)));
        let Recompiled { table, reuse, .. } = recompile_zones(
            &previous,
            zones,
            geo,
            state.health.as_ref(),
            generation,
            &mut counters,
            fresh,
        )?;
        self.metrics.record_compile(started.elapsed());
        self.metrics.record_reuse(&reuse);
        self.store(state, table, counters);
        state.last = Build {
            generation,
            cause,
            reuse,
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok(generation)
    }

    /// Stores `table` (its generation already set) as the one serving, then hands it to the
    /// metrics with the `counters` it was compiled with (the collector reads it from there).
    fn store(&self, state: &mut State, table: RoutingTable, counters: CounterFactory) {
        let generation = table.generation;
        let table = Arc::new(table);
        self.routes.store(Arc::clone(&table));
        self.metrics.publish(counters, &table);
        state.generation = generation;
        self.metrics.record_swap(generation);
    }

    /// The last table built (the one serving, unless a build failed after it).
    pub fn last_build(&self) -> Build {
        self.lock().last
    }

    /// Generation of the table serving now.
    pub fn generation(&self) -> u64 {
        self.routes.load().generation
    }
}

/// The services of `table` that `changes` name, by zone (apex key) and index; a slow-start
/// clock that moved without moving the ramp (the service has no slow start, or the endpoint
/// is past it) rebuilds nothing. Names the table does not have are skipped.
fn affected(table: &RoutingTable, changes: &[ServiceChange]) -> Vec<(Box<[u8]>, Vec<usize>)> {
    let mut by_zone: HashMap<Box<[u8]>, Vec<usize>> = HashMap::new();
    for change in changes {
        let Ok(origin) = Name::from_str_relaxed(&change.zone) else {
            continue;
        };
        let mut origin = origin;
        origin.set_fqdn(true);
        let key = key_wire(&origin);
        let Some(zone) = table.zone_at(&key) else {
            continue;
        };
        let Some(index) = zone.service_index(&change.service) else {
            continue;
        };
        if let Some((before, now)) = change.recovered {
            let slow_start = zone
                .source
                .services
                .get(index)
                .and_then(|s| s.health.slow_start);
            if weights::ramp(before, slow_start) == weights::ramp(now, slow_start) {
                continue;
            }
        }
        by_zone.entry(key).or_default().push(index);
    }
    by_zone
        .into_iter()
        .map(|(key, mut list)| {
            list.sort_unstable();
            list.dedup();
            (key, list)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::metrics::Metrics;

    fn lines_with(text: &str, needle: &str) -> usize {
        text.lines().filter(|l| l.contains(needle)).count()
    }

    /// Endpoints down by address, the rest up.
    struct Down(Vec<std::net::IpAddr>);

    impl EndpointHealth for Down {
        fn state(
            &self,
            _: &Name,
            _: &str,
            _: &str,
            address: std::net::IpAddr,
        ) -> super::super::compile::EndpointState {
            use super::super::compile::EndpointState;
            if self.0.contains(&address) {
                EndpointState::Down
            } else {
                EndpointState::Up
            }
        }
    }

    fn fixtures() -> (ZoneFiles, GeoDb) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        load_sources(
            &root.join("fuzz/zones"),
            &root.join("geoip/meridian-sample.txt"),
        )
        .unwrap()
    }

    const GSLB: &str = "gslb.example.test.";

    fn apex(origin: &str) -> Box<[u8]> {
        key_wire(&Name::from_ascii(origin).unwrap())
    }

    /// (zone, service, (address, weight, healthy) per endpoint, TTL).
    type Answers = (String, String, Vec<(String, u32, bool)>, u32);

    /// What each service answers with.
    fn answers(table: &RoutingTable) -> Vec<Answers> {
        let mut out: Vec<_> = table
            .zones()
            .flat_map(|z| {
                z.services.iter().map(move |s| {
                    let eps = s
                        .endpoints
                        .iter()
                        .map(|e| (e.address.to_string(), e.weight, e.healthy))
                        .collect();
                    (z.origin.to_string(), s.key.clone(), eps, s.ttl)
                })
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_health_change_rebuilds_only_the_services_it_names() {
        let (zones, geo) = fixtures();
        let tables = Arc::new(TableMetrics::default());
        let m = Metrics::new(|r| tables.register_publish(r));
        let publisher = Publisher::new(zones.clone(), geo, Arc::clone(&tables)).unwrap();
        let before = publisher.table();
        let gslb = before.zone_at(&apex(GSLB)).unwrap();
        let www = gslb.service_index("www").unwrap();
        let down: std::net::IpAddr = "198.51.100.10".parse().unwrap();
        let health = Arc::new(Down(vec![down]));
        let change = HealthChange::Services(vec![ServiceChange {
            zone: "GSLB.example.test".into(),
            service: "www".into(),
            recovered: None,
        }]);
        assert_eq!(publisher.set_health_changed(health.clone(), &change), 2);
        let after = publisher.table();

        // Every other zone is the same allocation; in the changed zone, the names and every
        // other service are shared and only `www` is new.
        for (key, zone) in &before.zones {
            let next = after.zone_shared(key).unwrap();
            if **key == *apex(GSLB) {
                assert!(!Arc::ptr_eq(zone, next));
                assert!(Arc::ptr_eq(&zone.node_list, &next.node_list));
                // (The fixture's services share one chunk: the rebuilt chunk is a copy, and
                // only `www` in it was compiled: the counts below.)
                for i in 0..zone.services.len() {
                    let (a, b) = (zone.services.get(i).unwrap(), next.services.get(i).unwrap());
                    assert!(!std::ptr::eq(a, b), "service {i} in a rewritten chunk");
                    assert_eq!(a.key, b.key);
                }
            } else {
                assert!(Arc::ptr_eq(zone, next), "{} rebuilt", zone.origin);
            }
        }
        let svc = after
            .zone_at(&apex(GSLB))
            .unwrap()
            .services
            .get(www)
            .unwrap();
        let ep = svc.endpoints.iter().find(|e| e.address == down).unwrap();
        assert!(!ep.healthy);

        // The same as compiling everything against that health.
        let list: Vec<Arc<Zone>> = zones.values().cloned().collect();
        let whole = compile(&list, publisher.geo(), health.as_ref(), 9).unwrap();
        assert_eq!(answers(&after), answers(&whole));

        let text = m.render();
        let total: usize = after.zones().map(|z| z.services.len()).sum();
        assert_eq!(
            crate::metrics::tests::series(&text, "meridian_table_services_compiled_total"),
            Some((total + 1) as f64),
            "{text}"
        );
        assert_eq!(
            crate::metrics::tests::series(&text, "meridian_table_services_reused_total"),
            Some((total - 1) as f64),
            "{text}"
        );

        // A change that names nothing the table has, or a slow-start clock of a service
        // without slow start, rebuilds nothing.
        let idle = HealthChange::Services(vec![
            ServiceChange {
                zone: "nowhere.test.".into(),
                service: "www".into(),
                recovered: None,
            },
            ServiceChange {
                zone: GSLB.into(),
                service: "near".into(),
                recovered: Some((Some(Duration::from_secs(1)), Some(Duration::from_secs(2)))),
            },
        ]);
        publisher.set_health_changed(health, &idle);
        let again = publisher.table();
        for (key, zone) in &after.zones {
            assert!(Arc::ptr_eq(zone, again.zone_shared(key).unwrap()));
        }
    }

    #[test]
    fn a_reload_compiles_only_the_zones_whose_source_is_new_and_keeps_their_counters() {
        let (zones, geo) = fixtures();
        let tables = Arc::new(TableMetrics::default());
        let m = Metrics::new(|r| {
            tables.register_queries(r);
            tables.register_publish(r);
        });
        let publisher = Publisher::new(zones.clone(), geo, Arc::clone(&tables)).unwrap();
        let before = publisher.table();
        // Health first: a reload must not undo it in the zones it shares or compiles.
        let down: std::net::IpAddr = "198.51.100.10".parse().unwrap();
        publisher.set_health(Arc::new(Down(vec![down])));
        let healthy = publisher.table();
        // One zone loaded again (a new `Arc`, as a reload that parsed its file gives).
        let mut next = zones.clone();
        let (path, _) = zones
            .iter()
            .find(|(_, z)| z.origin.to_string() == GSLB)
            .unwrap();
        let reloaded = Arc::new(crate::config::load::load_zone(path).unwrap());
        next.insert(path.clone(), reloaded);
        assert_eq!(publisher.set_config(next, publisher.geo()).unwrap(), 3);
        let after = publisher.table();
        for (key, zone) in &healthy.zones {
            let shared = Arc::ptr_eq(zone, after.zone_shared(key).unwrap());
            assert_eq!(shared, **key != *apex(GSLB), "{}", zone.origin);
        }
        assert_eq!(answers(&after), answers(&healthy));
        assert_ne!(answers(&after), answers(&before));

        // The recompiled zone counts into the same series as before; the others still count.
        let text = m.render();
        assert!(text.contains(r#"zone="gslb.example.test.""#), "{text}");
        assert!(text.contains(r#"zone="neg.test.""#), "{text}");
        assert!(text.contains(r#"zone="none""#), "{text}");
        assert_eq!(
            crate::metrics::tests::series(&text, "meridian_table_zones_compiled_total"),
            Some((before.zone_count() + 1) as f64),
            "{text}"
        );
        assert_eq!(
            crate::metrics::tests::series(&text, "meridian_table_zones_reused_total"),
            Some((2 * before.zone_count() - 1) as f64),
            "{text}"
        );
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
