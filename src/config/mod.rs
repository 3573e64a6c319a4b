//! Configuration: zone files on disk (`file`), their validated form (`model`), and the loader
//! between them (`load`).

pub mod check;
mod dnssec;
pub mod file;
pub mod load;
mod master;
pub mod model;
pub mod wire;

#[cfg(test)]
mod tests;

pub use load::{ZoneError, load_dir, load_zone};

pub use model::Zone;

/// One line describing a loaded zone, as `check-config` prints it.
pub fn summary(zone: &Zone) -> String {
    format!(
        "ok {} ({}): serial {}, {} records, {} regions, {} services",
        zone.origin,
        zone.file.display(),
        zone.serial(),
        zone.record_count(),
        zone.regions.len(),
        zone.services.len()
    )
}

/// A loaded zone's record that RFC 2181 §10.3 advises against: an MX, NS or SRV whose target
/// is a CNAME. Served as written; `check-config --strict` makes it an error.
#[derive(Clone, Debug, PartialEq)]
pub struct Warning {
    /// The zone file.
    pub file: std::path::PathBuf,
    /// Owner of the record.
    pub owner: hickory_proto::rr::Name,
    /// MX, NS or SRV.
    pub rtype: hickory_proto::rr::RecordType,
    /// The target, which is a CNAME's owner.
    pub target: hickory_proto::rr::Name,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} {}: {} is a CNAME; an {} target must not be an alias (RFC 2181 §10.3)",
            self.file.display(),
            self.owner,
            self.rtype,
            self.target,
            self.rtype
        )
    }
}

/// Warnings for `zones` checked together (a target may be a CNAME in another of them), in
/// zone and record order. The loader logs a zone's own when it loads it; `check-config`
/// prints them all, and with `--strict` fails on them.
/// Takes the zones as they are held (`Zone` or `Arc<Zone>`), so checking never copies them.
pub fn lint<Z: std::borrow::Borrow<Zone>>(zones: &[Z]) -> Vec<Warning> {
    use hickory_proto::rr::{RData, RecordType};
    let (cname, mx, ns, srv) = (
        u16::from(RecordType::CNAME),
        u16::from(RecordType::MX),
        u16::from(RecordType::NS),
        u16::from(RecordType::SRV),
    );
    // Built once, from the stored owners (lowercase wire form) without decoding a record: a
    // zone may have many MX/NS/SRV records (delegations) and many CNAMEs.
    let cnames: std::collections::HashSet<Vec<u8>, foldhash::fast::RandomState> = zones
        .iter()
        .flat_map(|z| z.borrow().records.entries())
        .filter(|r| r.rtype == cname)
        .map(|r| r.owner.to_ascii_lowercase())
        .collect();
    let mut out = Vec::new();
    if cnames.is_empty() {
        return out;
    }
    for zone in zones {
        let zone: &Zone = zone.borrow();
        let pointing = zone
            .records
            .entries()
            .filter(|r| [mx, ns, srv].contains(&r.rtype));
        for record in pointing.filter_map(|r| r.record()) {
            let target = match &record.data {
                RData::MX(mx) => &mx.exchange,
                RData::NS(ns) => &ns.0,
                RData::SRV(srv) => &srv.target,
                _ => continue,
            };
            if cnames.contains(&wire::name_key(target)) {
                out.push(Warning {
                    file: zone.file.clone(),
                    owner: record.name.clone(),
                    rtype: record.record_type(),
                    target: target.clone(),
                });
            }
        }
    }
    out
}

/// Most bytes of an input value that an error message quotes.
const QUOTE_MAX: usize = 80;
/// Most bytes of a parser's own message (which may quote the input) repeated in an error.
const MESSAGE_MAX: usize = 200;

/// `value` cut to [`QUOTE_MAX`] bytes with an ellipsis, for quoting input in a message: a
/// 70 KB TXT value must not come back whole in an error line.
fn clip(value: &str) -> std::borrow::Cow<'_, str> {
    cut(value, QUOTE_MAX)
}

/// A foreign error's message (hickory's, toml's), each line cut to [`MESSAGE_MAX`] bytes.
fn clip_msg(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    if text.len() <= MESSAGE_MAX {
        return text;
    }
    text.split('\n')
        .map(|line| cut(line, MESSAGE_MAX))
        .collect::<Vec<_>>()
        .join("\n")
}

fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text.get(..end).unwrap_or_default()).into()
}

/// Support shared by unit tests in other modules.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Zone, load_zone};

    /// Loads `toml` as a zone file through the real loader, with `files` (name, text) written
    /// beside it first (e.g. the `records_file` it names). The files are gone afterwards; the
    /// zone does not need them.
    pub(crate) fn zone_from_text(toml: &str, files: &[(&str, &str)]) -> Zone {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("{e}"));
        }
        let path = dir.path().join("zone.toml");
        std::fs::write(&path, toml).unwrap_or_else(|e| panic!("{e}"));
        load_zone(&path).unwrap_or_else(|e| panic!("{e}"))
    }
}
