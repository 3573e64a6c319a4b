//! `meridian lab-backend` (hidden): the compose lab's sample HTTP backend.

use super::{CommandError, EXIT_RUNTIME};
use crate::cli::LabBackendArgs;

/// The backend cannot start or stopped (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("lab-backend: {0}")]
pub struct Error(#[from] std::io::Error);

/// Serves on a single-threaded runtime until the process is killed.
pub fn run(args: LabBackendArgs) -> Result<(), Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(crate::lab::serve_backend(args.listen, args.name))?;
    Ok(())
}

impl CommandError for Error {
    fn exit_code(&self) -> u8 {
        EXIT_RUNTIME
    }
}
