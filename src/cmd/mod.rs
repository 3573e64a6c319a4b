//! The subcommands, one `run` each: what `main` calls once it has parsed the command line and
//! set up logging.
//!
//! Owns: each subcommand's own output (summaries, `check-config` warnings, `ctl` responses)
//! and the error it returns, which knows its exit code through [`CommandError`]: 2 for a bad
//! configuration or bad flags (nothing was started), 1 for a failure at run time.
//! Never: prints an error it returns or exits the process (`main` does both, once); holds
//! logic a library module owns (serving, probing, checking and explaining live there).

pub mod check_config;
pub mod ctl;
pub mod explain;
pub mod geoip;
pub mod lab_backend;
pub mod probe;
pub mod serve;

use crate::cli::Command;

/// Exit code of a failure at run time (a socket that cannot be bound, a refused request).
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code of a bad configuration or bad flags: the command did not start.
pub const EXIT_CONFIG: u8 = 2;

/// An error a subcommand returns to `main`: its message (`Display`, which carries its sources)
/// and the exit code it stands for.
pub trait CommandError: std::error::Error {
    /// [`EXIT_CONFIG`] or [`EXIT_RUNTIME`].
    fn exit_code(&self) -> u8;
    /// True when the subcommand has already said all there is on stderr (each `--strict`
    /// warning, the server's JSON answer), so `main` only exits.
    fn is_reported(&self) -> bool {
        false
    }
}

/// Runs one subcommand to its end.
pub fn run(command: Command) -> Result<(), Box<dyn CommandError>> {
    match command {
        Command::Serve(args) => serve::run(*args).map_err(boxed),
        Command::CheckConfig(args) => check_config::run(args).map_err(boxed),
        Command::Ctl(args) => ctl::run(args).map_err(boxed),
        Command::Probe(args) => probe::run(args).map_err(boxed),
        Command::Explain(args) => explain::run(args).map_err(boxed),
        Command::LabBackend(args) => lab_backend::run(args).map_err(boxed),
        Command::Geoip { command } => geoip::run(command).map_err(boxed),
    }
}

fn boxed<E: CommandError + 'static>(e: E) -> Box<dyn CommandError> {
    Box::new(e)
}

/// The Tokio runtime cannot be built (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("cannot start the runtime: {0}")]
pub struct RuntimeError(#[source] std::io::Error);

impl CommandError for RuntimeError {
    fn exit_code(&self) -> u8 {
        EXIT_RUNTIME
    }
}

/// The multi-threaded runtime `serve` and `probe` run on.
fn runtime() -> Result<tokio::runtime::Runtime, RuntimeError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RuntimeError)
}
