//! `meridian explain`: compile the zones offline (every endpoint up) and explain one query.

use super::{CommandError, EXIT_CONFIG, EXIT_RUNTIME};
use crate::cli::ExplainArgs;
use crate::dns::explain::explain;
use crate::routing::explain::{Asker, ExplainError, parse_ecs};
use crate::routing::publish::{StartError, compile_offline};

/// Why there is no explanation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad `--ecs`, name or type (exit 2).
    #[error(transparent)]
    Query(#[from] ExplainError),
    /// Zones or GeoIP do not load or compile (exit 2).
    #[error(transparent)]
    Config(#[from] StartError),
    /// The explanation cannot be written as JSON (exit 1).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Explains what the client (`--client`, `--ecs`, or 127.0.0.1) gets for the name, as text
/// or JSON on stdout.
pub fn run(args: ExplainArgs) -> Result<(), Error> {
    let asker = match (&args.ecs, args.client) {
        (Some(text), _) => Asker::Subnet(parse_ecs(text)?),
        (None, Some(ip)) => Asker::Address(ip),
        (None, None) => Asker::Address(std::net::IpAddr::from([127, 0, 0, 1])),
    };
    let table = compile_offline(&args.zones, &args.geoip)?;
    let x = explain(&table, &args.name, &args.qtype, asker)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&x)?);
    } else {
        print!("{x}");
    }
    Ok(())
}

impl CommandError for Error {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Query(_) | Self::Config(_) => EXIT_CONFIG,
            Self::Json(_) => EXIT_RUNTIME,
        }
    }
}
