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
    // In a worker task, beside the checks, not on this thread: every check result wakes the
    // prober's loop, and across threads each wake is a futex call and a context switch
    // (docs/performance.md, "Probe load").
    let done = runtime()?.block_on(async { tokio::spawn(probe(args)).await });
    match done {
        Ok(probed) => probed?,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
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
