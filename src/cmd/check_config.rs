//! `meridian check-config`: what `serve` does before it opens a socket.

use super::{CommandError, EXIT_CONFIG};
use crate::cli::CheckConfigArgs;
use crate::control::check::{CheckError, check};

/// Why the configuration did not pass.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Zones, GeoIP, the compile or the key file (exit 2).
    #[error(transparent)]
    Check(#[from] CheckError),
    /// `--strict` and there were warnings, each already printed as an error (exit 2).
    #[error("{count} warnings with --strict")]
    Strict {
        /// How many.
        count: usize,
    },
}

/// Checks, prints the warnings on stderr, then one line per zone (and with `--print` the
/// compiled decisions) on stdout.
pub fn run(args: CheckConfigArgs) -> Result<(), Error> {
    let checked = check(&args.zones, &args.geoip, args.keys.as_deref())?;
    // RFC 2181 §10.3 and friends: legal, but worth a look; `--strict` refuses them.
    let level = if args.strict { "error" } else { "warning" };
    for w in &checked.warnings {
        eprintln!("meridian: {level}: {w}");
    }
    if args.strict && !checked.warnings.is_empty() {
        return Err(Error::Strict {
            count: checked.warnings.len(),
        });
    }
    print!("{}", checked.summary());
    if args.print {
        print!("{}", checked.print());
    }
    Ok(())
}

impl CommandError for Error {
    fn exit_code(&self) -> u8 {
        EXIT_CONFIG
    }

    fn is_reported(&self) -> bool {
        matches!(self, Self::Strict { .. })
    }
}
