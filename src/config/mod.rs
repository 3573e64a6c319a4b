//! Configuration: zone files on disk (`file`), their validated form (`model`), and the loader
//! between them (`load`).

pub mod check;
pub mod file;
pub mod load;
pub mod model;

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
