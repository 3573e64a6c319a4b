//! `meridian config push` / `pull`: zones into and out of etcd (distributed mode). The work
//! is `etcd::config`'s; this prints what changed and picks the exit code.

use super::{CommandError, EXIT_CONFIG, EXIT_RUNTIME, RuntimeError, runtime};
use crate::cli::{ConfigCommand, EtcdArgs};
use crate::etcd::client::{Client, EtcdError};
use crate::etcd::config::{ConfigError, Plan, pull, push};
use crate::etcd::{Layout, OptionsError};

/// Why `meridian config` failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No runtime (exit 1).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// `--etcd` is missing (exit 2).
    #[error("config {0}: give --etcd URL")]
    NoEtcd(&'static str),
    /// The `--etcd*` flags are unusable (exit 2).
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The client cannot be set up (exit 2).
    #[error(transparent)]
    Client(EtcdError),
    /// The push or pull failed (exit 2 for invalid zones and names, 1 otherwise).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl CommandError for Error {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Runtime(e) => e.exit_code(),
            Self::NoEtcd(_) | Self::Options(_) | Self::Client(_) => EXIT_CONFIG,
            Self::Config(ConfigError::Invalid(_) | ConfigError::Name { .. }) => EXIT_CONFIG,
            Self::Config(ConfigError::Io { .. }) => EXIT_CONFIG,
            Self::Config(_) => EXIT_RUNTIME,
        }
    }
}

fn connect(what: &'static str, args: &EtcdArgs) -> Result<(std::sync::Arc<Client>, Layout), Error> {
    let (opts, layout) = args.options()?.ok_or(Error::NoEtcd(what))?;
    let client = Client::new(&opts).map_err(Error::Client)?;
    Ok((client, layout))
}

/// Runs `meridian config push|pull`.
pub fn run(command: ConfigCommand) -> Result<(), Error> {
    match command {
        ConfigCommand::Push(args) => {
            let (client, layout) = connect("push", &args.etcd)?;
            let pushed = runtime()?.block_on(push(
                &client,
                &layout,
                &args.zones,
                &args.geoip,
                args.if_revision,
                args.dry_run,
            ))?;
            print_plan(&pushed.plan);
            let verb = if args.dry_run { "would push" } else { "pushed" };
            if pushed.plan.is_empty() {
                println!(
                    "{} zones valid; nothing to change (revision {})",
                    pushed.zones, pushed.revision
                );
            } else {
                println!(
                    "{} zones valid; {verb} {} added, {} changed, {} removed ({} revision {})",
                    pushed.zones,
                    pushed.plan.added.len(),
                    pushed.plan.changed.len(),
                    pushed.plan.removed.len(),
                    if args.dry_run { "now at" } else { "now" },
                    pushed.revision
                );
            }
            Ok(())
        }
        ConfigCommand::Pull(args) => {
            let (client, layout) = connect("pull", &args.etcd)?;
            let (revision, count) = runtime()?.block_on(pull(&client, &layout, &args.out))?;
            println!(
                "pulled {count} files at revision {revision} into {}",
                args.out.display()
            );
            Ok(())
        }
    }
}

fn print_plan(plan: &Plan) {
    for name in &plan.added {
        println!("+ {name}");
    }
    for name in &plan.changed {
        println!("~ {name}");
    }
    for name in &plan.removed {
        println!("- {name}");
    }
}
