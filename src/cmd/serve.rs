//! `meridian serve`: runs [`crate::daemon::serve`] on a multi-threaded runtime.

use super::{CommandError, EXIT_CONFIG, EXIT_RUNTIME, RuntimeError, runtime};
use crate::cli::ServeArgs;
use crate::daemon::{ServeError, serve};

/// Why `meridian serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No runtime (exit 1).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The server could not start or stopped (see [`ServeError`] for each exit code).
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Serves until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> Result<(), Error> {
    runtime()?.block_on(serve(args))?;
    Ok(())
}

impl CommandError for Error {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Runtime(e) => e.exit_code(),
            Self::Serve(e) => e.exit_code(),
        }
    }
}

impl CommandError for ServeError {
    /// Anything read at start-up that is unusable is bad configuration (2); a socket that
    /// cannot be bound or served is a run-time failure (1).
    fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_)
            | Self::Keys(_)
            | Self::Token { .. }
            | Self::Notify(_)
            | Self::Tls(_)
            | Self::AllowExec(_)
            | Self::Control(_)
            | Self::EtcdSetup(_) => EXIT_CONFIG,
            Self::Io { .. } | Self::EtcdUnavailable(_) => EXIT_RUNTIME,
            Self::Encrypted(e) if e.is_config() => EXIT_CONFIG,
            Self::Encrypted(_) => EXIT_RUNTIME,
        }
    }
}
