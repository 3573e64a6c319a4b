//! The `meridian` binary: parse the command line, set up logging, run the subcommand
//! ([`meridian::cmd::run`]), print its error once and exit with the code the error names
//! (1 runtime, 2 bad configuration or flags; clap's own usage errors exit 2 too).

use std::process::ExitCode;

use clap::Parser;
use meridian::cli::{Cli, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(format) = cli.command.log_format() {
        init_logging(format);
    }
    match meridian::cmd::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each error's message carries its sources: this prints the whole chain.
            if !e.is_reported() {
                eprintln!("meridian: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
