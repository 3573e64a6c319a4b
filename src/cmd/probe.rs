//! `meridian probe`: runs [`crate::prober::probe`] on a multi-threaded runtime.

use super::{CommandError, EXIT_CONFIG, EXIT_RUNTIME, RuntimeError, runtime};
use crate::cli::ProbeArgs;
use crate::prober::{ProbeError, probe};

/// Why `meridian probe` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No runtime (exit 1).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The prober cannot start: zones, keys or targets are unusable (exit 2), or etcd, where
    /// its zones come from, is unreachable (exit 1).
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

/// Probes and reports until SIGTERM or SIGINT.
pub fn run(args: ProbeArgs) -> Result<(), Error> {
    runtime()?.block_on(probe(args))?;
    Ok(())
}

impl CommandError for Error {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Runtime(e) => e.exit_code(),
            // etcd away at start-up is not a configuration error (systemd restarts on 1).
            Self::Probe(ProbeError::EtcdUnavailable(_)) => EXIT_RUNTIME,
            Self::Probe(_) => EXIT_CONFIG,
        }
    }
}
