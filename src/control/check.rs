//! `meridian check-config`: everything `serve` does before it opens a socket. The same zone
//! loader, the same GeoIP open, the same table compile (every endpoint up) and the same key
//! file parse, so a configuration it accepts starts; and with `--print`, the compiled
//! decisions of every service, one stable line each (golden-file friendly).
//!
//! Owns: the offline check and the text of `--print`. Never: binds a socket or starts a task.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use crate::config::{Warning, Zone, lint, summary};
use crate::health::report::{Keyring, KeyringError};
use crate::routing::compile::{AllUp, compile};
use crate::routing::publish::{StartError, load_sources};
use crate::routing::select::{CompiledFallback, CompiledPolicy, GeoOrders, Service};
use crate::routing::table::RoutingTable;

/// Why a configuration would not start.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Zones, GeoIP or the compile.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The key file.
    #[error(transparent)]
    Keys(#[from] KeyringError),
}

/// A configuration that passed: what `check-config` prints.
pub struct Checked {
    /// The zones, in file order.
    pub zones: Vec<Arc<Zone>>,
    /// The compiled table (every endpoint up).
    pub table: RoutingTable,
    /// The database's description.
    pub geoip: String,
    /// The prober key file, when one was given (parsed).
    pub keys: Option<String>,
    /// What is legal but suspect (`config::lint`).
    pub warnings: Vec<Warning>,
}

/// Loads, opens and compiles as `serve` does at start-up.
pub fn check(zones_dir: &Path, geoip: &Path, keys: Option<&Path>) -> Result<Checked, CheckError> {
    let (zones, geo) = load_sources(zones_dir, geoip)?;
    let zones: Vec<Arc<Zone>> = zones.into_values().collect();
    let description = geo.description().to_string();
    let table = compile(&zones, Arc::new(geo), &AllUp, 0).map_err(StartError::from)?;
    let keys = match keys {
        Some(path) => {
            Keyring::load(path)?;
            Some(path.display().to_string())
        }
        None => None,
    };
    let warnings = lint(&zones);
    Ok(Checked {
        zones,
        table,
        geoip: description,
        keys,
        warnings,
    })
}

impl Checked {
    /// One line per zone, then the database, keys and table lines.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for zone in &self.zones {
            let _ = writeln!(out, "{}", summary(zone));
        }
        let _ = writeln!(out, "ok geoip: {}", self.geoip);
        if let Some(path) = &self.keys {
            let _ = writeln!(out, "ok keys: {path}");
        }
        let services: usize = self.table.zones().map(|z| z.services.len()).sum();
        let _ = writeln!(
            out,
            "ok table: {} zones, {services} services compiled",
            self.zones.len()
        );
        out
    }

    /// The compiled decisions of every service, zones and services in name order.
    pub fn print(&self) -> String {
        let mut zones: Vec<_> = self.table.zones().collect();
        zones.sort_by_key(|z| z.origin.to_ascii().to_ascii_lowercase());
        let mut out = String::new();
        for zone in zones {
            let _ = writeln!(out, "zone {} serial {}", zone.origin, zone.serial);
            let mut services: Vec<&Service> = zone.services.iter().collect();
            services.sort_by(|a, b| a.key.cmp(&b.key));
            for svc in services {
                print_service(&mut out, svc);
            }
        }
        out
    }
}

fn print_service(out: &mut String, svc: &Service) {
    let fallback = match &svc.fallback {
        CompiledFallback::All => "all".to_string(),
        CompiledFallback::None => "none".to_string(),
        CompiledFallback::Addresses(list) => list
            .iter()
            .map(|(a, _)| a.to_string())
            .collect::<Vec<_>>()
            .join(","),
    };
    let _ = writeln!(
        out,
        "  service {} policy {} ttl {} answers {} fallback {}",
        svc.key,
        svc.policy_name(),
        svc.ttl,
        svc.answers,
        fallback
    );
    for region in &svc.regions {
        let endpoints = svc
            .endpoints
            .get(region.endpoints.clone())
            .unwrap_or(&[])
            .iter()
            .map(|e| format!("{} weight {}", e.address, e.configured_weight))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(out, "    region {}: {endpoints}", region.name);
    }
    let names = |order: &[u16]| {
        order
            .iter()
            .filter_map(|&i| svc.regions.get(usize::from(i)))
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(" > ")
    };
    match &svc.policy {
        CompiledPolicy::Geo(orders) => {
            let GeoOrders {
                default,
                country,
                continent,
                subnet,
            } = &**orders;
            for (net, order) in subnet.overrides() {
                let _ = writeln!(out, "    subnet {net}: {}", names(order));
            }
            for (code, order) in country {
                let _ = writeln!(out, "    country {code}: {}", names(order));
            }
            for (c, order) in crate::geo::Continent::ALL.iter().zip(continent.iter()) {
                if let Some(order) = order {
                    let _ = writeln!(out, "    continent {c}: {}", names(order));
                }
            }
            let _ = writeln!(out, "    default: {}", names(default));
        }
        CompiledPolicy::Nearest(orders) => {
            let _ = writeln!(
                out,
                "    nearest first; without coordinates: {}",
                names(&orders.default)
            );
        }
        CompiledPolicy::Failover(order) => {
            let _ = writeln!(out, "    order: {}", names(order));
        }
        CompiledPolicy::Weighted => {
            let _ = writeln!(out, "    one weighted pool");
        }
    }
}
