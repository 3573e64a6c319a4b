//! `meridian probe` and the embedded prober of `meridian serve`: the runner wired to a sink.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::cli::{DEFAULT_ZONES_DIR, ProbeArgs};
use crate::config::load::{check_unique_origin, zone_files};
use crate::config::{Zone, load_dir, load_zone};
use crate::etcd::client::Client;
use crate::etcd::votes::VotePublisher;
use crate::etcd::zones::{Distributed, Reload, Reloaded, StartError};
use crate::health::hub::HealthHub;
use crate::health::report::{Keyring, ProberId};
use crate::probe::exec::{AllowExec, ExecError};
use crate::probe::push::{PushPolicy, Pusher, SignedReport};
use crate::probe::runner::{
    self, DEFAULT_MAX_IN_FLIGHT, ProbeTarget, RunnerConfig, TargetSet, new_boot_id,
};
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
    /// An `--allow-exec` directory cannot be resolved.
    #[error(transparent)]
    AllowExec(#[from] ExecError),
    /// The pusher cannot start.
    #[error("{0}")]
    Push(String),
    /// The `--etcd*` flags or files are unusable (`--etcd` without `--zones`).
    #[error("{0}")]
    EtcdSetup(String),
    /// etcd is unreachable at start-up, the zones to check come from it, and no revision was
    /// saved in `--state-dir` (exit 1).
    #[error(
        "{0}; the zones to check come from etcd and no revision is saved (give --state-dir, \
         or --zones)"
    )]
    EtcdUnavailable(crate::etcd::client::EtcdError),
    /// The metrics listener cannot bind.
    #[error("--metrics-listen {addr}: {source}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl From<StartError> for ProbeError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Setup(m) => Self::EtcdSetup(m),
            StartError::Unavailable(e) => Self::EtcdUnavailable(e),
        }
    }
}

/// Runs `meridian probe` until SIGTERM/SIGINT; SIGHUP re-reads the zones (see `reload_on_hup`).
/// With `--etcd` and no `--zones`, the zones come from etcd: every configuration revision
/// becomes the running prober's targets, as a SIGHUP would (see [`EtcdTargets`]).
pub async fn probe(args: ProbeArgs) -> Result<(), ProbeError> {
    let allow = AllowExec::new(&args.allow_exec)?;
    let keyring = Keyring::load(&args.key_file)?;
    let prober = ProberId::new(args.id.clone());
    let key = keyring
        .signing_key(&prober)
        .cloned()
        .ok_or_else(|| ProbeError::NoKey {
            path: args.key_file.display().to_string(),
            id: args.id.clone(),
        })?;
    let etcd = args
        .etcd
        .options()
        .map_err(|e| ProbeError::Push(e.to_string()))?;
    // Installed before the ready line: a SIGHUP sent as soon as it is read must reload, and
    // the zone source of distributed mode hands its first targets over this channel too.
    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let (zones_dir, distributed) = match (&args.zones, &etcd) {
        (None, Some((opts, layout))) => {
            let d = Distributed::prepare(opts, layout.clone(), args.state_dir.as_deref())?;
            (d.source.dirs.live.clone(), Some(d))
        }
        (dir, _) => (
            dir.clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ZONES_DIR)),
            None,
        ),
    };
    let (targets, follow) = match distributed {
        None => (
            load_targets(&zones_dir, args.only_region.as_deref(), &allow)?.1,
            None,
        ),
        Some(d) => {
            let reload: Arc<dyn Reload> = Arc::new(EtcdTargets {
                dir: zones_dir.clone(),
                only_region: args.only_region.clone(),
                allow: allow.clone(),
                updates: updates_tx.clone(),
                sets: AtomicU64::new(0),
                last_good: Default::default(),
            });
            let served = d.load(&reload).await?;
            // The first revision's targets, if they loaded: what the runner starts with.
            let mut first = Vec::new();
            while let Ok(set) = updates.try_recv() {
                first = set.targets;
            }
            (first, Some((d, reload, served)))
        }
    };
    if targets.is_empty() {
        tracing::warn!("no endpoint has a health check here; reporting an empty view");
    }
    // Distributed mode: the votes also (or only) go to this prober's key in etcd.
    let votes = match (&etcd, &follow) {
        (_, Some((d, _, _))) => Some(Arc::clone(&d.source.client)),
        (Some((opts, _)), None) => {
            Some(Client::new(opts).map_err(|e| ProbeError::Push(e.to_string()))?)
        }
        (None, None) => None,
    }
    .zip(etcd.as_ref())
    .map(|(client, (_, layout))| VotePublisher::start(client, layout, &args.id));
    let pusher = if args.publish.is_empty() {
        None
    } else {
        Some(
            Pusher::start(args.publish.clone(), key.clone(), PushPolicy::default())
                .map_err(|e| ProbeError::Push(e.to_string()))?,
        )
    };
    let config = RunnerConfig {
        prober_id: prober,
        region: args.region.clone(),
        boot_id: new_boot_id(),
        report_interval: report_interval(&targets),
        config_digest: config_digest(&targets),
        max_in_flight: args.max_in_flight.max(1),
    };
    let zones_from_etcd = follow.is_some();
    if let (Some(dir), false) = (&args.state_dir, zones_from_etcd) {
        tracing::warn!(dir = %dir.display(), "--state-dir is only used when the zones come from etcd (--etcd without --zones)");
    }
    if let Some((d, reload, served)) = follow {
        d.follow(reload, served);
    }
    reload_on_hup(
        zones_dir.clone(),
        args.only_region.clone(),
        allow,
        updates_tx,
    );
    tracing::info!(
        id = %args.id,
        region = %args.region,
        endpoints = targets.len(),
        nameservers = args.publish.len(),
        etcd = etcd.is_some(),
        zones_from_etcd,
        "prober started"
    );
    let metrics = match args.metrics_listen {
        Some(addr) => {
            let bound = crate::probe::metrics::serve(addr)
                .await
                .map_err(|source| ProbeError::Metrics { addr, source })?;
            format!(" metrics={bound}")
        }
        None => String::new(),
    };
    let endpoints = targets.len();
    let id = args.id.clone();
    let signing_key = key;
    runner::run(
        config,
        targets,
        updates,
        move || println!("ready probe id={id} endpoints={endpoints}{metrics}"),
        move |report| {
            if pusher.is_none() && votes.is_none() {
                return;
            }
            // Serialised, signed (and, when big, gzipped) once for HTTP push and etcd alike.
            let signed = match SignedReport::new(&report, &signing_key) {
                Ok(signed) => signed,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot encode report");
                    return;
                }
            };
            if let Some(v) = &votes {
                v.publish_signed(signed.clone(), report.interval());
            }
            if let Some(p) = &pusher {
                p.publish_signed(signed);
            }
        },
        shutdown_signal(),
    )
    .await;
    tracing::info!("prober stopped");
    Ok(())
}

/// The zones loaded from `dir` and their probe targets (only `only_region`'s when given).
fn load_targets(
    dir: &Path,
    only_region: Option<&str>,
    allow: &AllowExec,
) -> Result<(usize, Vec<ProbeTarget>), ProbeError> {
    let zones: Vec<Arc<Zone>> = load_dir(dir)?.into_iter().map(Arc::new).collect();
    Ok((zones.len(), targets(&zones, only_region, allow)?))
}

/// A prober's zones in distributed mode: the etcd zone source writes each configuration
/// revision to `dir` whole and calls [`Reload::reload_zones`], which hands the running prober
/// the new targets in place (unchanged checks keep their state, as on SIGHUP). As on a
/// nameserver, a zone file that does not load (written past `config push`) is logged and its
/// last good version is checked instead; targets that cannot be prepared at all keep the
/// previous ones.
struct EtcdTargets {
    dir: PathBuf,
    only_region: Option<String>,
    allow: AllowExec,
    updates: mpsc::UnboundedSender<TargetSet>,
    /// Target sets handed over (the "generation" the zone source logs).
    sets: AtomicU64,
    /// The last version of each zone file that loaded, by file name.
    last_good: std::sync::Mutex<BTreeMap<std::ffi::OsString, Arc<Zone>>>,
}

impl EtcdTargets {
    /// The zones of `dir`, each file's last good version standing in for one that does not
    /// load; how many were kept that way.
    fn load_zones(&self) -> Result<(Vec<Arc<Zone>>, usize), crate::config::ZoneError> {
        let mut last_good = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        let mut good = BTreeMap::new();
        let mut zones: Vec<Arc<Zone>> = Vec::new();
        let mut kept = 0;
        for path in zone_files(&self.dir)? {
            let Some(name) = path.file_name().map(ToOwned::to_owned) else {
                continue;
            };
            let zone = match load_zone(&path) {
                Ok(z) => Arc::new(z),
                Err(e) => match last_good.get(&name) {
                    Some(previous) => {
                        tracing::error!(error = %e, "zone from etcd rejected; checking its previous version");
                        kept += 1;
                        Arc::clone(previous)
                    }
                    None => {
                        tracing::error!(error = %e, "zone from etcd rejected; not checked");
                        continue;
                    }
                },
            };
            if let Err(e) = check_unique_origin(zones.iter().map(AsRef::as_ref), &zone) {
                tracing::error!(error = %e, "zone from etcd rejected; not checked");
                continue;
            }
            good.insert(name, Arc::clone(&zone));
            zones.push(zone);
        }
        *last_good = good;
        Ok((zones, kept))
    }
}

impl Reload for EtcdTargets {
    fn reload_zones(&self) -> Reloaded {
        let loaded = self
            .load_zones()
            .map_err(ProbeError::from)
            .and_then(|(zones, kept)| {
                let t = targets(&zones, self.only_region.as_deref(), &self.allow)?;
                Ok((zones.len(), kept, t))
            });
        let (ok, zones, kept) = match loaded {
            Ok((zones, kept, targets)) => {
                tracing::info!(
                    zones,
                    kept,
                    endpoints = targets.len(),
                    "probe targets from etcd"
                );
                let sent = self.updates.send(TargetSet::new(targets)).is_ok();
                if sent {
                    self.sets.fetch_add(1, Ordering::Relaxed);
                }
                (sent && kept == 0, zones, kept)
            }
            Err(e) => {
                tracing::error!(error = %e, "zones from etcd rejected; still checking the previous targets");
                (false, 0, 0)
            }
        };
        Reloaded {
            ok,
            generation: self.sets.load(Ordering::Relaxed),
            zones,
            kept,
        }
    }
}

/// On every SIGHUP, re-reads the zones in `dir` and hands the new targets to the running
/// prober: checks whose endpoint and settings are unchanged keep their state, boot id and
/// sequence (see `probe::runner`). Zones that do not load are logged and the previous
/// targets keep being checked.
fn reload_on_hup(
    dir: std::path::PathBuf,
    only_region: Option<String>,
    allow: AllowExec,
    updates: mpsc::UnboundedSender<TargetSet>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot handle SIGHUP; zones will not be reloaded");
            return;
        }
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!(zones = %dir.display(), "SIGHUP: reloading zones");
            let (dir, only, allow) = (dir.clone(), only_region.clone(), allow.clone());
            let loaded =
                tokio::task::spawn_blocking(move || load_targets(&dir, only.as_deref(), &allow))
                    .await;
            match loaded {
                Ok(Ok((_, targets))) => {
                    if targets.is_empty() {
                        tracing::warn!(
                            "no endpoint has a health check here; reporting an empty view"
                        );
                    }
                    if updates.send(TargetSet::new(targets)).is_err() {
                        return;
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "zones rejected on reload; still checking the previous targets");
                }
                Err(e) => tracing::error!(error = %e, "zone reload failed"),
            }
        }
    });
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
/// and feeds the hub directly. A reload hands the running prober its new targets in place,
/// so unchanged checks keep their state, boot id and sequence (see `probe::runner`).
pub struct LocalProber {
    running: Option<Running>,
    allow: AllowExec,
}

struct Running {
    task: tokio::task::JoinHandle<()>,
    updates: mpsc::UnboundedSender<TargetSet>,
    hub: Arc<HealthHub>,
}

/// Region and id of the embedded prober.
pub const LOCAL_PROBER: &str = "local";

impl LocalProber {
    /// Not running; runs no exec check.
    pub fn stopped() -> Self {
        Self::allowing(AllowExec::default())
    }

    /// Not running; runs exec checks whose programs `allow` allows (`serve --allow-exec`).
    pub fn allowing(allow: AllowExec) -> Self {
        Self {
            running: None,
            allow,
        }
    }

    /// Which programs exec checks may run from the next (re)start on.
    pub fn set_allow_exec(&mut self, allow: AllowExec) {
        self.allow = allow;
    }

    /// Starts on `zones`, or, when already running for `hub`, hands it the targets of
    /// `zones` in place (a reload). Kept for its callers under its old name: it restarts
    /// nothing that did not change. Targets that cannot be prepared are logged and the
    /// previous ones keep being checked.
    pub fn restart(&mut self, zones: &[Arc<Zone>], hub: &Arc<HealthHub>) {
        let targets = match targets(zones, None, &self.allow) {
            Ok(t) => t,
            Err(e) => {
                let running = self.running.as_ref().is_some_and(|r| !r.task.is_finished());
                tracing::error!(error = %e, running, "embedded prober targets rejected; previous targets kept");
                return;
            }
        };
        let mut set = TargetSet::new(targets);
        if let Some(r) = self.running.take() {
            if !r.task.is_finished() && Arc::ptr_eq(&r.hub, hub) {
                match r.updates.send(set) {
                    Ok(()) => {
                        self.running = Some(r);
                        return;
                    }
                    Err(mpsc::error::SendError(back)) => set = back,
                }
            }
            r.task.abort();
        }
        if set.targets.is_empty() {
            return;
        }
        let config = RunnerConfig {
            prober_id: ProberId::new(LOCAL_PROBER),
            region: LOCAL_PROBER.into(),
            boot_id: new_boot_id(),
            report_interval: set.report_interval,
            config_digest: set.config_digest,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        };
        tracing::info!(endpoints = set.targets.len(), "embedded prober started");
        let (updates, rx) = mpsc::unbounded_channel();
        let sink_hub = Arc::clone(hub);
        let task = tokio::spawn(runner::run(
            config,
            set.targets,
            rx,
            || {},
            move |report| {
                if let Err(e) = sink_hub.ingest(&report) {
                    tracing::warn!(reason = e.label(), "embedded prober report rejected");
                }
            },
            std::future::pending::<()>(),
        ));
        self.running = Some(Running {
            task,
            updates,
            hub: Arc::clone(hub),
        });
    }
}
