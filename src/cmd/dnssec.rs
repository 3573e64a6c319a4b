//! `meridian dnssec keygen` and `meridian dnssec ds`: key files and DS records for the parent.

use std::path::Path;

use hickory_proto::rr::Name;

use super::{CommandError, EXIT_CONFIG};
use crate::cli::DnssecCommand;
use crate::config::{ZoneError, load_dir};
use crate::dnssec::key::ds_of_key_file;
use crate::dnssec::{Algorithm, KeyError, ZoneKey, time};

/// Why a `dnssec` subcommand failed (exit 2: nothing was written or printed).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag value is wrong.
    #[error("{0}")]
    Flag(String),
    /// A key could not be made, written or read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The zones could not be loaded.
    #[error(transparent)]
    Zone(#[from] ZoneError),
}

impl CommandError for Error {
    fn exit_code(&self) -> u8 {
        EXIT_CONFIG
    }
}

/// Runs the subcommand.
pub fn run(command: DnssecCommand) -> Result<(), Error> {
    match command {
        DnssecCommand::Keygen {
            zone,
            algorithm,
            ksk,
            dir,
        } => {
            let origin = absolute(&zone)?;
            let alg = Algorithm::from_name(&algorithm).ok_or_else(|| {
                Error::Flag(format!(
                    "--algorithm `{algorithm}`: use ecdsap256 (13) or ed25519 (15)"
                ))
            })?;
            let key = ZoneKey::generate(&origin, alg, ksk, time::now()).map_err(Error::Flag)?;
            let base = key.write_files(&dir)?;
            println!("{}", base.display());
        }
        DnssecCommand::Ds { zone, zones } => {
            for line in ds_lines(&zone, &zones)? {
                println!("{line}");
            }
        }
    }
    Ok(())
}

fn absolute(zone: &str) -> Result<Name, Error> {
    let text = if zone.ends_with('.') {
        zone.to_string()
    } else {
        format!("{zone}.")
    };
    Name::from_ascii(&text)
        .map(|n| n.to_lowercase())
        .map_err(|e| Error::Flag(format!("zone `{zone}`: {e}")))
}

/// DS lines for each argument: a `.key` file, or a zone origin whose KSKs (or CSK) it lists.
fn ds_lines(args: &[String], zones_dir: &Path) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let mut loaded = None;
    for arg in args {
        if arg.ends_with(".key") || Path::new(arg).is_file() {
            out.push(ds_of_key_file(Path::new(arg))?);
            continue;
        }
        let origin = absolute(arg)?;
        let zones = match &loaded {
            Some(z) => z,
            None => loaded.insert(load_dir(zones_dir)?),
        };
        let zone = zones
            .iter()
            .find(|z| z.origin == origin)
            .ok_or_else(|| Error::Flag(format!("no zone {origin} in {}", zones_dir.display())))?;
        let dnssec = zone.dnssec.as_ref().ok_or_else(|| {
            Error::Flag(format!(
                "zone {origin} ({}) has no [dnssec] table",
                zone.file.display()
            ))
        })?;
        let ksks: Vec<_> = dnssec.keys.iter().filter(|k| k.is_ksk()).collect();
        // Without a KSK, the ZSKs are what the parent points at (a CSK without the SEP flag).
        let keys = if ksks.is_empty() {
            dnssec.keys.iter().collect()
        } else {
            ksks
        };
        out.extend(keys.into_iter().map(|k| k.ds_text()));
    }
    Ok(out)
}
