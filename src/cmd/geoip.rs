//! `meridian geoip build`: a MaxMind DB file from Meridian's text source.

use super::{CommandError, EXIT_CONFIG};
use crate::cli::GeoipCommand;
use crate::geo::{GeoError, run_build};

/// Builds the database and prints what it holds.
pub fn run(command: GeoipCommand) -> Result<(), GeoError> {
    match command {
        GeoipCommand::Build { src, out } => {
            let summary = run_build(&src, &out)?;
            println!("{summary}");
        }
    }
    Ok(())
}

impl CommandError for GeoError {
    /// An unreadable or bad source, or an output that cannot be written: nothing was built.
    fn exit_code(&self) -> u8 {
        EXIT_CONFIG
    }
}
