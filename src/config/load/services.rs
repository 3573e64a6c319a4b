//! Validation of a zone file's traffic-management half: `[region.*]` (names, countries,
//! continents, locations) and `[service.*]` (endpoints, weights, policies, GeoIP maps, fallback),
//! and the whole-zone rule that a service name is neither a record owner nor below a cut.
//!
//! Part of the loader (`super`): errors name the file and key; nothing here does I/O or panics on
//! what a file contains.

use std::net::IpAddr;

use hickory_proto::rr::{Name, Record, RecordType};
use indexmap::IndexMap;
use ipnet::IpNet;

use super::{Source, ZoneBuilder, ZoneError};
use crate::config::clip;
use crate::config::file::{FallbackFile, GeoFile, RegionFile, ServiceFile, ZoneFile};
use crate::config::model::{
    DEFAULT_ANSWERS, DEFAULT_MIN_TTL, DEFAULT_SERVICE_TTL, DEFAULT_WEIGHT, Endpoint, Fallback,
    GeoMap, MAX_ANSWERS, MAX_SLOW_START, MAX_WEIGHT, Policy, Region, Service, ServiceHealth, Zone,
};
use crate::geo::{Continent, Coords, CountryCode};

impl ZoneBuilder<'_> {
    pub(super) fn regions(
        &self,
        regions: &IndexMap<String, RegionFile>,
    ) -> Result<Vec<Region>, ZoneError> {
        let mut out = Vec::with_capacity(regions.len());
        for (name, region) in regions {
            let key = format!("region.{name}");
            if !valid_region_name(name) {
                return Err(self.invalid(
                    &key,
                    "region names use letters, digits, `-` and `_` (at most 63)",
                ));
            }
            let location = match region.location {
                None => None,
                Some([lat, lon]) => Some(Coords::new(lat, lon).ok_or_else(|| {
                    self.invalid(
                        format!("{key}.location"),
                        format!("[{lat}, {lon}] is not a latitude in -90..90 and a longitude in -180..180"),
                    )
                })?),
            };
            let mut countries = Vec::new();
            for (i, code) in region.countries.iter().enumerate() {
                countries.push(self.country(&format!("{key}.countries[{i}]"), code)?);
            }
            let mut continents = Vec::new();
            for (i, code) in region.continents.iter().enumerate() {
                continents.push(self.continent(&format!("{key}.continents[{i}]"), code)?);
            }
            out.push(Region {
                name: name.clone(),
                location,
                countries,
                continents,
            });
        }
        Ok(out)
    }

    fn country(&self, key: &str, code: &str) -> Result<CountryCode, ZoneError> {
        if code.len() != 2 || code.bytes().any(|b| !b.is_ascii_uppercase()) {
            return Err(self.invalid(
                key,
                format!(
                    "`{}` is not an ISO 3166 alpha-2 country code (two capital letters)",
                    clip(code)
                ),
            ));
        }
        code.parse()
            .map_err(|_| self.invalid(key, format!("unknown country code `{}`", clip(code))))
    }

    fn continent(&self, key: &str, code: &str) -> Result<Continent, ZoneError> {
        Continent::from_code(code)
            .filter(|c| c.as_str() == code)
            .ok_or_else(|| {
                self.invalid(
                    key,
                    format!(
                        "unknown continent code `{}` (one of AF AN AS EU NA OC SA)",
                        clip(code)
                    ),
                )
            })
    }

    fn region_list(
        &self,
        key: &str,
        names: &[String],
        regions: &[Region],
    ) -> Result<Vec<usize>, ZoneError> {
        let mut out = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let idx = regions
                .iter()
                .position(|r| &r.name == name)
                .ok_or_else(|| {
                    self.invalid(
                        format!("{key}[{i}]"),
                        format!(
                            "unknown region `{}` (declare it as [region.{}])",
                            clip(name),
                            clip(name)
                        ),
                    )
                })?;
            if out.contains(&idx) {
                return Err(self.invalid(
                    format!("{key}[{i}]"),
                    format!("region `{}` is listed twice", clip(name)),
                ));
            }
            out.push(idx);
        }
        Ok(out)
    }

    pub(super) fn service(
        &self,
        name: &str,
        service: &ServiceFile,
        origin: &Name,
        regions: &[Region],
        file: &ZoneFile,
    ) -> Result<Service, ZoneError> {
        let key = format!("service.{name}");
        if name.contains('*') {
            return Err(self.invalid(&key, "a service name cannot be a wildcard"));
        }
        let owner = self.owner(&key, name, origin)?;
        let ttl = self.ttl(
            &format!("{key}.ttl"),
            service.ttl.unwrap_or(DEFAULT_SERVICE_TTL),
        )?;
        let answers = match service.answers {
            None => DEFAULT_ANSWERS,
            Some(n) if (1..=MAX_ANSWERS as u32).contains(&n) => n as usize,
            Some(n) => {
                return Err(self.invalid(
                    format!("{key}.answers"),
                    format!("{n} is not between 1 and {MAX_ANSWERS}"),
                ));
            }
        };
        if let Some(check) = &service.check {
            if !file.check.contains_key(check) {
                return Err(self.invalid(
                    format!("{key}.check"),
                    format!(
                        "unknown check `{}` (declare it as [check.{}])",
                        clip(check),
                        clip(check)
                    ),
                ));
            }
        }
        let fallback = match &service.fallback {
            None => Fallback::All,
            Some(FallbackFile::Mode(mode)) if mode == "all" => Fallback::All,
            Some(FallbackFile::Mode(mode)) if mode == "none" => Fallback::None,
            Some(FallbackFile::Mode(mode)) => {
                return Err(self.invalid(
                    format!("{key}.fallback"),
                    format!(
                        "`{}` is not `all`, `none` or a list of addresses",
                        clip(mode)
                    ),
                ));
            }
            Some(FallbackFile::Addresses(list)) => {
                let mut out = Vec::with_capacity(list.len());
                for (i, a) in list.iter().enumerate() {
                    out.push(a.parse().map_err(|_| {
                        self.invalid(
                            format!("{key}.fallback[{i}]"),
                            format!("`{}` is not an IP address", clip(a)),
                        )
                    })?);
                }
                if out.is_empty() {
                    return Err(self.invalid(
                        format!("{key}.fallback"),
                        "an empty list; use \"none\" to answer nothing",
                    ));
                }
                Fallback::Addresses(out)
            }
        };

        if service.endpoint.is_empty() {
            return Err(self.invalid(&key, "has no endpoints ([[service.NAME.endpoint]])"));
        }
        let mut endpoints: Vec<Endpoint> = Vec::with_capacity(service.endpoint.len());
        for (i, e) in service.endpoint.iter().enumerate() {
            // Spelled out only for a message: a million endpoints need no key string.
            let ekey = || format!("{key}.endpoint[{i}]");
            let region = regions
                .iter()
                .position(|r| r.name == e.region)
                .ok_or_else(|| {
                    self.invalid(
                        format!("{}.region", ekey()),
                        format!(
                            "unknown region `{}` (declare it as [region.{}])",
                            clip(&e.region),
                            clip(&e.region)
                        ),
                    )
                })?;
            let address: IpAddr = e.address.parse().map_err(|_| {
                self.invalid(
                    format!("{}.address", ekey()),
                    format!("`{}` is not an IP address", clip(&e.address)),
                )
            })?;
            if endpoints.iter().any(|x| x.address == address) {
                return Err(self.invalid(
                    format!("{}.address", ekey()),
                    format!("endpoint {address} is listed twice"),
                ));
            }
            let weight = e.weight.unwrap_or(DEFAULT_WEIGHT);
            if weight > MAX_WEIGHT {
                return Err(self.invalid(
                    format!("{}.weight", ekey()),
                    format!("{weight} is not between 0 and {MAX_WEIGHT}"),
                ));
            }
            let probe_address = match &e.probe_address {
                None => None,
                Some(a) => Some(a.parse().map_err(|_| {
                    self.invalid(
                        format!("{}.probe_address", ekey()),
                        format!("`{}` is not an IP address", clip(a)),
                    )
                })?),
            };
            endpoints.push(Endpoint {
                region,
                address,
                weight,
                probe_address,
                probe_port: e.probe_port,
            });
        }

        let policy_name = service
            .policy
            .as_deref()
            .unwrap_or(if service.geo.is_some() {
                "geo"
            } else if !service.failover.is_empty() {
                "failover"
            } else {
                "weighted"
            });
        if service.geo.is_some() && policy_name != "geo" {
            return Err(self.invalid(
                format!("{key}.geo"),
                format!("only used by policy = \"geo\", not \"{policy_name}\""),
            ));
        }
        if !service.failover.is_empty() && policy_name != "failover" {
            return Err(self.invalid(
                format!("{key}.failover"),
                format!("only used by policy = \"failover\", not \"{policy_name}\""),
            ));
        }
        let policy = match policy_name {
            "geo" => Policy::Geo(self.geo_map(&key, service.geo.as_ref(), regions)?),
            "nearest" => {
                for e in &endpoints {
                    if let Some(region) = regions.get(e.region).filter(|r| r.location.is_none()) {
                        return Err(self.invalid(
                            format!("region.{}.location", region.name),
                            format!("needed by service `{}` (policy = \"nearest\")", clip(name)),
                        ));
                    }
                }
                Policy::Nearest
            }
            "failover" => {
                if service.failover.is_empty() {
                    return Err(self.invalid(
                        format!("{key}.failover"),
                        "policy = \"failover\" needs an ordered region list",
                    ));
                }
                Policy::Failover(self.region_list(
                    &format!("{key}.failover"),
                    &service.failover,
                    regions,
                )?)
            }
            "weighted" => Policy::Weighted,
            other => {
                return Err(self.invalid(
                    format!("{key}.policy"),
                    format!(
                        "unknown policy `{}` (geo, nearest, failover or weighted)",
                        clip(other)
                    ),
                ));
            }
        };

        let health = self.service_health(&key, service, ttl)?;
        Ok(Service {
            key: name.to_string(),
            name: owner,
            ttl,
            policy,
            answers,
            check: service.check.clone(),
            fallback,
            endpoints,
            health,
        })
    }

    /// `slow_start`, `dynamic_ttl`, `min_ttl`.
    fn service_health(
        &self,
        key: &str,
        service: &ServiceFile,
        ttl: u32,
    ) -> Result<ServiceHealth, ZoneError> {
        let slow_start = match &service.slow_start {
            None => None,
            Some(d) => {
                let d = crate::config::check::duration(d)
                    .map_err(|m| self.invalid(format!("{key}.slow_start"), m))?;
                if d.is_zero() || d > MAX_SLOW_START {
                    return Err(self.invalid(
                        format!("{key}.slow_start"),
                        format!("{d:?} is not between 1ms and {MAX_SLOW_START:?}"),
                    ));
                }
                Some(d)
            }
        };
        let min_ttl = service.min_ttl.unwrap_or(DEFAULT_MIN_TTL.min(ttl));
        if min_ttl > ttl {
            return Err(self.invalid(
                format!("{key}.min_ttl"),
                format!("{min_ttl} is above the service's ttl ({ttl})"),
            ));
        }
        Ok(ServiceHealth {
            slow_start,
            dynamic_ttl: service.dynamic_ttl.unwrap_or(false),
            min_ttl,
        })
    }

    fn geo_map(
        &self,
        key: &str,
        geo: Option<&GeoFile>,
        regions: &[Region],
    ) -> Result<GeoMap, ZoneError> {
        let mut map = GeoMap::default();
        let Some(geo) = geo else {
            // No tables: the regions' home countries and continents, then file order.
            map.default = (0..regions.len()).collect();
            for (i, region) in regions.iter().enumerate() {
                for &c in &region.countries {
                    map.country.push((c, home_first(i, regions.len())));
                }
                for &c in &region.continents {
                    map.continent.push((c, home_first(i, regions.len())));
                }
            }
            return Ok(map);
        };
        map.default = if geo.default.is_empty() {
            (0..regions.len()).collect()
        } else {
            self.region_list(&format!("{key}.geo.default"), &geo.default, regions)?
        };
        for (code, list) in &geo.country {
            let k = format!("{key}.geo.country.{code}");
            let c = self.country(&k, code)?;
            map.country.push((c, self.region_list(&k, list, regions)?));
        }
        for (code, list) in &geo.continent {
            let k = format!("{key}.geo.continent.{code}");
            let c = self.continent(&k, code)?;
            map.continent
                .push((c, self.region_list(&k, list, regions)?));
        }
        for (cidr, list) in &geo.subnet {
            let k = format!("{key}.geo.subnet.\"{cidr}\"");
            let net: IpNet = cidr
                .parse()
                .map_err(|_| self.invalid(&k, format!("`{}` is not a CIDR prefix", clip(cidr))))?;
            if net.trunc() != net {
                return Err(self.invalid(
                    &k,
                    format!(
                        "`{}` has bits set past the prefix; did you mean {}?",
                        clip(cidr),
                        net.trunc()
                    ),
                ));
            }
            map.subnet.push((net, self.region_list(&k, list, regions)?));
        }
        Ok(map)
    }

    /// A service name must not also be a static record's owner, nor sit under a cut (there
    /// it could only ever be referred away: RFC 1034 §4.3.2 step 3b comes first).
    pub(super) fn check_services(
        &self,
        zone: &Zone,
        records: &[Record],
        sources: &[Source],
    ) -> Result<(), ZoneError> {
        for service in &zone.services {
            if let Some(r) = records.iter().find(|r| r.name == service.name) {
                return Err(self.invalid(
                    format!("service.{}", service.key),
                    format!(
                        "{} is also a static {} record; a name is either a service or static data",
                        service.name,
                        r.record_type()
                    ),
                ));
            }
            let cut = records.iter().find(|r| {
                r.record_type() == RecordType::NS
                    && r.name != zone.origin
                    && r.name.zone_of(&service.name)
            });
            if let Some(cut) = cut {
                let at = sources
                    .iter()
                    .find(|s| s.rtype == RecordType::NS && s.owner == cut.name)
                    .map_or_else(|| "record".to_string(), |s| s.at.entry());
                return Err(self.invalid(
                    format!("service.{}", clip(&service.key)),
                    format!(
                        "{} is below the delegation {} (NS {at}); a service must be in the \
                         zone's own data, where it is answered rather than referred",
                        service.name,
                        cut.name.to_lowercase()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `home` first, then every other region in file order.
fn home_first(home: usize, count: usize) -> Vec<usize> {
    std::iter::once(home)
        .chain((0..count).filter(|&i| i != home))
        .collect()
}

fn valid_region_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
