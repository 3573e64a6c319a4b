//! The subcommands, one `run` each: what `main` calls once it has parsed the command line and
//! set up logging.
//!
//! Owns: each subcommand's own output (summaries, `check-config` warnings, `ctl` responses)
//! and the error it returns, which knows its exit code through [`CommandError`]: 2 for a bad
//! configuration or bad flags (nothing was started), 1 for a failure at run time.
//! Never: prints an error it returns or exits the process (`main` does both, once); holds
//! logic a library module owns (serving, probing, checking and explaining live there).

pub mod check_config;
pub mod config;
pub mod ctl;
pub mod dnssec;
pub mod explain;
pub mod geoip;
pub mod lab_backend;
pub mod manual;
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
        Command::Config { command } => config::run(command).map_err(boxed),
        Command::Dnssec { command } => dnssec::run(command).map_err(boxed),
        Command::Completions { shell } => manual::completions(shell).map_err(boxed),
        Command::Man { out } => manual::man_pages(&out).map_err(boxed),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::ServeError;

    fn io() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::AddrInUse)
    }

    /// The rule of the module doc, error by error: what was read at start-up is configuration
    /// (2), what failed while running is runtime (1), and only errors the subcommand already
    /// printed are left unprinted.
    #[test]
    fn every_error_names_its_exit_code() {
        let cases: Vec<(&str, Box<dyn CommandError>, u8, bool)> = vec![
            ("runtime", Box::new(RuntimeError(io())), EXIT_RUNTIME, false),
            (
                "serve: bad token file",
                Box::new(serve::Error::Serve(ServeError::Token {
                    path: "t".into(),
                    message: "too short".into(),
                })),
                EXIT_CONFIG,
                false,
            ),
            (
                "serve: cannot bind",
                Box::new(serve::Error::Serve(ServeError::Io {
                    what: "cannot listen for DNS on",
                    addr: "127.0.0.1:53".into(),
                    source: io(),
                })),
                EXIT_RUNTIME,
                false,
            ),
            (
                "serve: no runtime",
                Box::new(serve::Error::Runtime(RuntimeError(io()))),
                EXIT_RUNTIME,
                false,
            ),
            (
                "probe: no runtime",
                Box::new(probe::Error::Runtime(RuntimeError(io()))),
                EXIT_RUNTIME,
                false,
            ),
            (
                "probe: no key",
                Box::new(probe::Error::Probe(crate::prober::ProbeError::NoKey {
                    path: "k".into(),
                    id: "p".into(),
                })),
                EXIT_CONFIG,
                false,
            ),
            (
                "check-config --strict",
                Box::new(check_config::Error::Strict { count: 1 }),
                EXIT_CONFIG,
                true,
            ),
            (
                "ctl: refused with a message",
                Box::new(ctl::Error::Refused(Some("no override 9".into()))),
                EXIT_RUNTIME,
                false,
            ),
            (
                "ctl: refused, answer printed",
                Box::new(ctl::Error::Refused(None)),
                EXIT_RUNTIME,
                true,
            ),
            (
                "ctl: no server",
                Box::new(ctl::Error::Socket(
                    crate::control::socket::SocketError::Io {
                        path: "s".into(),
                        source: io(),
                    },
                )),
                EXIT_CONFIG,
                false,
            ),
            (
                "lab-backend",
                Box::new(lab_backend::Error::from(io())),
                EXIT_RUNTIME,
                false,
            ),
        ];
        for (label, e, code, reported) in cases {
            assert_eq!(e.exit_code(), code, "{label}: {e}");
            assert_eq!(e.is_reported(), reported, "{label}: {e}");
        }
    }

    /// `main` prints `meridian: {e}`: the messages are the ones the subcommands printed
    /// before they returned errors.
    #[test]
    fn messages_keep_their_wording() {
        assert_eq!(
            RuntimeError(io()).to_string(),
            format!("cannot start the runtime: {}", io())
        );
        assert_eq!(
            lab_backend::Error::from(io()).to_string(),
            format!("lab-backend: {}", io())
        );
        assert_eq!(
            ctl::Error::Refused(Some("no override 9".into())).to_string(),
            "no override 9"
        );
        let bad: serde_json::Error = serde_json::from_str::<u8>("x").unwrap_err();
        let text = format!("ctl override add: {bad}");
        assert_eq!(ctl::Error::Override(bad).to_string(), text);
    }
}
