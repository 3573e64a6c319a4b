//! `meridian probe` and the embedded prober of `meridian serve`: the runner wired to a sink.

use std::sync::Arc;

use crate::cli::ProbeArgs;
use crate::config::{Zone, load_dir};
use crate::health::hub::HealthHub;
use crate::health::report::{Keyring, ProberId};
use crate::probe::push::{PushPolicy, Pusher};
use crate::probe::runner::{self, DEFAULT_MAX_IN_FLIGHT, RunnerConfig, new_boot_id};
use crate::probe::targets::{TargetError, config_digest, report_interval, targets};

/// Why `meridian probe` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Zones do not load.
    #[error(transparent)]
    Zone(#[from] crate::config::ZoneError),
    /// The key file is bad.
    #[error(transparent)]
    Keys(#[from] crate::health::report::KeyringError),
    /// No key for this prober id.
    #[error("{path}: no key for prober `{id}`")]
    NoKey {
        /// Key file.
        path: String,
        /// Prober id.
        id: String,
    },
    /// A check cannot be prepared.
    #[error(transparent)]
    Targets(#[from] TargetError),
    /// The pusher cannot start.
    #[error("{0}")]
    Push(String),
}

/// Runs `meridian probe` until SIGTERM/SIGINT.
pub async fn probe(args: ProbeArgs) -> Result<(), ProbeError> {
    let zones: Vec<Arc<Zone>> = load_dir(&args.zones)?.into_iter().map(Arc::new).collect();
    let keyring = Keyring::load(&args.key_file)?;
    let prober = ProberId::new(args.id.clone());
    let key = keyring
        .signing_key(&prober)
        .cloned()
        .ok_or_else(|| ProbeError::NoKey {
            path: args.key_file.display().to_string(),
            id: args.id.clone(),
        })?;
    let targets = targets(&zones, args.only_region.as_deref())?;
    if targets.is_empty() {
        tracing::warn!("no endpoint has a health check here; reporting an empty view");
    }
    let pusher = Pusher::start(args.publish.clone(), key, PushPolicy::default())
        .map_err(|e| ProbeError::Push(e.to_string()))?;
    let config = RunnerConfig {
        prober_id: prober,
        region: args.region.clone(),
        boot_id: new_boot_id(),
        report_interval: report_interval(&targets),
        config_digest: config_digest(&targets),
        max_in_flight: args.max_in_flight.max(1),
    };
    tracing::info!(
        id = %args.id,
        region = %args.region,
        endpoints = targets.len(),
        nameservers = args.publish.len(),
        "prober started"
    );
    println!("ready probe id={} endpoints={}", args.id, targets.len());
    runner::run(
        config,
        targets,
        move |report| {
            if let Err(e) = pusher.publish(&report) {
                tracing::warn!(error = %e, "cannot queue report");
            }
        },
        shutdown_signal(),
    )
    .await;
    tracing::info!("prober stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

/// The embedded prober of `serve`: checks every checked endpoint from here (region `local`)
/// and feeds the hub directly. Restarted with new targets after a reload.
pub struct LocalProber {
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Region and id of the embedded prober.
pub const LOCAL_PROBER: &str = "local";

impl LocalProber {
    /// Not running.
    pub fn stopped() -> Self {
        Self { task: None }
    }

    /// (Re)starts on `zones`.
    pub fn restart(&mut self, zones: &[Arc<Zone>], hub: &Arc<HealthHub>) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let targets = match targets(zones, None) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "embedded prober not started");
                return;
            }
        };
        if targets.is_empty() {
            return;
        }
        let config = RunnerConfig {
            prober_id: ProberId::new(LOCAL_PROBER),
            region: LOCAL_PROBER.into(),
            boot_id: new_boot_id(),
            report_interval: report_interval(&targets),
            config_digest: config_digest(&targets),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        };
        tracing::info!(endpoints = targets.len(), "embedded prober started");
        let hub = Arc::clone(hub);
        self.task = Some(tokio::spawn(runner::run(
            config,
            targets,
            move |report| {
                if let Err(e) = hub.ingest(&report) {
                    tracing::warn!(reason = e.label(), "embedded prober report rejected");
                }
            },
            std::future::pending::<()>(),
        )));
    }
}
