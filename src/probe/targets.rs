//! Which endpoints a prober checks, and how: derived from the zones' services and checks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::check::{CheckError, CheckKind, Checker};
use super::exec::{AllowExec, ExecError};
use super::runner::ProbeTarget;
use super::state::RiseFall;
use crate::config::Zone;
use crate::health::report::EndpointKey;

/// Why the probe targets could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A check could not be prepared (CA file).
    #[error("{zone}: check `{check}`: {source}")]
    Check {
        /// Zone file.
        zone: String,
        /// Check name.
        check: String,
        /// Why.
        source: CheckError,
    },
    /// An exec check names a program this prober may not run (`--allow-exec`).
    #[error("{zone}: check `{check}`: {source}")]
    Exec {
        /// Zone file.
        zone: String,
        /// Check name.
        check: String,
        /// Why.
        source: ExecError,
    },
    /// An endpoint key could not be formed.
    #[error("{zone}: service `{service}`: {message}")]
    Key {
        /// Zone.
        zone: String,
        /// Service.
        service: String,
        /// Why.
        message: String,
    },
}

/// The key under which `address` of `service` in `zone` is reported.
pub fn endpoint_key(zone: &Zone, service: &str, address: std::net::IpAddr) -> Option<EndpointKey> {
    EndpointKey::new(&zone.origin.to_string(), service, address).ok()
}

/// Every endpoint of a service with a check: the keys a nameserver expects votes for.
pub fn checked_endpoints(zones: &[Arc<Zone>]) -> Vec<EndpointKey> {
    zones
        .iter()
        .flat_map(|zone| {
            zone.services
                .iter()
                .filter(|s| s.check.is_some())
                .flat_map(move |s| {
                    s.endpoints
                        .iter()
                        .filter_map(move |e| endpoint_key(zone, &s.key, e.address))
                })
        })
        .collect()
}

/// Every endpoint of every checked service with its region and its service's `slow_start`:
/// what the health hub needs to grade alerts (a region or a service without any serving
/// endpoint) and to recompile while a ramp runs. Services without a check have no health
/// transitions, ramps or shedding to look up (a check is per service: all of a service's
/// endpoints are checked or none), so they are left out: at a million unchecked services the
/// layout was about 140 MB and a sixth of the start-up time.
pub fn endpoint_layout(zones: &[Arc<Zone>]) -> Vec<crate::health::hub::LayoutEntry> {
    zones
        .iter()
        .flat_map(|zone| {
            zone.services
                .iter()
                .filter(|s| s.check.is_some())
                .flat_map(move |s| {
                    s.endpoints.iter().filter_map(move |e| {
                        Some(crate::health::hub::LayoutEntry {
                            key: endpoint_key(zone, &s.key, e.address)?,
                            region: zone.regions.get(e.region)?.name.clone(),
                            slow_start: s.health.slow_start.filter(|_| s.check.is_some()),
                            shed: s
                                .check
                                .as_ref()
                                .and_then(|name| zone.checks.iter().find(|c| &c.name == name))
                                .map(|c| c.spec.shed)
                                .unwrap_or_default(),
                        })
                    })
                })
        })
        .collect()
}

/// Probe targets for every checked endpoint (only those in `only_region` when given). An exec
/// check whose program is outside `allow` is an error: nothing of these zones runs.
pub fn targets(
    zones: &[Arc<Zone>],
    only_region: Option<&str>,
    allow: &AllowExec,
) -> Result<Vec<ProbeTarget>, TargetError> {
    let mut checkers: BTreeMap<(String, String, u16), Arc<Checker>> = BTreeMap::new();
    let mut out = Vec::new();
    for zone in zones {
        for svc in &zone.services {
            let Some(check_name) = &svc.check else {
                continue;
            };
            let Some(check) = zone.checks.iter().find(|c| &c.name == check_name) else {
                continue;
            };
            if check.spec.kind == CheckKind::Exec {
                let program = check.spec.command.first().map(std::path::Path::new);
                allow
                    .check(program.unwrap_or(std::path::Path::new("")))
                    .map_err(|source| TargetError::Exec {
                        zone: zone.file.display().to_string(),
                        check: check.name.clone(),
                        source,
                    })?;
            }
            for e in &svc.endpoints {
                let region = zone.regions.get(e.region).map(|r| r.name.as_str());
                if only_region.is_some_and(|only| Some(only) != region) {
                    continue;
                }
                let port = e.probe_port.unwrap_or(check.spec.port);
                let id = (zone.origin.to_string(), check.name.clone(), port);
                let checker = match checkers.get(&id) {
                    Some(c) => Arc::clone(c),
                    None => {
                        let mut spec = check.spec.clone();
                        spec.port = port;
                        let c =
                            Arc::new(Checker::new(spec).map_err(|source| TargetError::Check {
                                zone: zone.file.display().to_string(),
                                check: check.name.clone(),
                                source,
                            })?);
                        checkers.insert(id, Arc::clone(&c));
                        c
                    }
                };
                let key =
                    endpoint_key(zone, &svc.key, e.address).ok_or_else(|| TargetError::Key {
                        zone: zone.origin.to_string(),
                        service: svc.key.clone(),
                        message: "service name cannot be used in an endpoint key".into(),
                    })?;
                out.push(ProbeTarget {
                    key,
                    ip: e.probe_address.unwrap_or(e.address),
                    checker,
                    interval: check.interval,
                    thresholds: RiseFall::new(check.rise, check.fall),
                });
            }
        }
    }
    Ok(out)
}

/// The report interval for a set of targets: the shortest check interval (votes then stay
/// fresh for three of those), 5 s when there is nothing to check.
pub fn report_interval(targets: &[ProbeTarget]) -> Duration {
    targets
        .iter()
        .map(|t| t.interval)
        .min()
        .unwrap_or(Duration::from_secs(5))
}

/// A digest of what is being checked, so nameservers can tell probers run other configs.
pub fn config_digest(targets: &[ProbeTarget]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for t in targets {
        ctx.update(format!("{} {} {:?}\n", t.key, t.ip, t.interval).as_bytes());
    }
    data_encoding::HEXLOWER
        .encode(ctx.finish().as_ref())
        .chars()
        .take(16)
        .collect()
}
