//! `meridian serve`: wires the control plane, listeners, API, control socket, config watch
//! and signals together, then drains on SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, ApiState};
use crate::cli::ServeArgs;
use crate::control::metrics::ReloadMetrics;
use crate::control::{self, ControlError, ControlPlane, Sources, socket};
use crate::dns::encrypted::{self, Encrypted};
use crate::dns::handler::{Handler, HandlerConfig, txt_rdata};
use crate::dns::metrics::DnsMetrics;
use crate::dns::rrl::{DEFAULT_RRL_TABLE_SIZE, Rrl, RrlConfig};
use crate::dns::server::{self, TcpLimits};
use crate::etcd::metrics::EtcdStatus;
use crate::etcd::zones::{Distributed, Reload, Reloaded, StartError as EtcdStartError};
use crate::health::export::{HealthExport, HealthMetrics, endpoint_samples};
use crate::health::hub::HealthHub;
use crate::health::report::KeyringError;
use crate::metrics::Metrics;
use crate::notify::NotifyMetrics;
use crate::routing::counters::{SeriesOptions, TableMetrics};
use crate::routing::publish::{Publisher, StartError};

/// Why `serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is bad (exit code 2).
    #[error(transparent)]
    Config(#[from] StartError),
    /// The prober key file is bad (exit code 2).
    #[error(transparent)]
    Keys(KeyringError),
    /// The admin token file is unusable (exit code 2).
    #[error("{path}: {message}")]
    Token {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A webhook URL is unusable (exit code 2).
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    /// The API's TLS certificate or key is unusable (exit code 2).
    #[error(transparent)]
    Tls(#[from] api::tls::TlsError),
    /// A DoT/DoH/DoQ listener cannot start (exit code 2 for its configuration, 1 for sockets).
    #[error(transparent)]
    Encrypted(#[from] crate::dns::encrypted::EncryptedError),
    /// An `--allow-exec` directory cannot be resolved (exit code 2).
    #[error(transparent)]
    AllowExec(#[from] crate::probe::exec::ExecError),
    /// The control socket cannot be created, or another server uses it (exit code 2).
    #[error(transparent)]
    Control(#[from] socket::SocketError),
    /// The `--etcd*` flags or files are unusable (exit code 2).
    #[error("{0}")]
    EtcdSetup(String),
    /// etcd is unreachable at start-up and no revision was saved (exit code 1).
    #[error("{0}")]
    EtcdUnavailable(String),
    /// A socket could not be bound or served (exit code 1).
    #[error("{what} {addr}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Every module's metrics, and the registry `/metrics` renders them from.
struct Counters {
    metrics: Arc<Metrics>,
    dns: Arc<DnsMetrics>,
    tables: Arc<TableMetrics>,
    health: Arc<HealthMetrics>,
    reloads: ReloadMetrics,
    notify: Arc<NotifyMetrics>,
    export: HealthExport,
}

impl Counters {
    /// Creates and registers them in the order `/metrics` has always listed them; etcd's
    /// series last, in distributed mode only.
    fn register(
        etcd: Option<&Arc<EtcdStatus>>,
        series: SeriesOptions,
        endpoints: crate::health::export::EndpointSeries,
    ) -> Self {
        let dns = Arc::new(DnsMetrics::default());
        let tables = Arc::new(TableMetrics::new(series));
        let health = Arc::new(HealthMetrics::default());
        let reloads = ReloadMetrics::default();
        let notify = Arc::new(NotifyMetrics::default());
        let export = HealthExport::new(endpoints);
        let metrics = Arc::new(Metrics::new(|r| {
            dns.register_queries(r);
            tables.register_queries(r);
            dns.register_transport(r);
            reloads.register(r);
            tables.register_publish(r);
            health.register(r);
            notify.register(r);
            // The embedded prober's checks (`meridian_probe_*`), when it runs.
            crate::probe::metrics::global().register(r);
            export.register(r);
            dns.register_encrypted(r);
            if let Some(etcd) = etcd {
                etcd.register(r);
            }
            crate::dnssec::metrics::metrics().register(r);
            crate::api::limits::connection_metrics().register(r);
        }));
        Self {
            metrics,
            dns,
            tables,
            health,
            reloads,
            notify,
            export,
        }
    }
}

/// Runs the server until SIGTERM or SIGINT, then drains (bounded by `--drain-timeout`).
pub async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    #[cfg(debug_assertions)]
    if args.dnssec_corrupt_signatures_for_tests {
        tracing::warn!("TEST ONLY: every DNSSEC signature is corrupted");
        crate::dnssec::sign::CORRUPT_FOR_TESTS.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let distributed = match args.etcd.options() {
        Ok(Some((opts, layout))) => Some(
            Distributed::prepare(&opts, layout, args.state_dir.as_deref())
                .map_err(etcd_start_error)?,
        ),
        Ok(None) => None,
        Err(e) => return Err(ServeError::EtcdSetup(e.to_string())),
    };
    let Counters {
        metrics,
        dns,
        tables,
        health,
        reloads,
        notify,
        export,
    } = Counters::register(
        distributed.as_ref().map(|d| &d.source.status),
        SeriesOptions {
            answers_by: args.answer_metrics,
            skip_zero: args.metrics_skip_zero,
        },
        args.endpoint_metrics,
    );
    // The status page's history reads these two directly, not the `/metrics` rendering.
    let totals = Arc::new(api::history::ServerTotals {
        dns: Arc::clone(&dns),
        tables: Arc::clone(&tables),
    });
    // In distributed mode the control plane loads the directory the etcd source writes.
    let zones_dir = match &distributed {
        Some(d) => d.source.dirs.live.clone(),
        None => args.zones.clone(),
    };
    let control = ControlPlane::start(
        Sources {
            zones_dir,
            geoip: args.geoip.clone(),
            keys: args.keys.clone(),
        },
        Duration::from_secs(args.health_grace),
        !args.no_local_probe,
        tables,
        health,
        reloads,
    )
    .map_err(|e| match e {
        ControlError::Start(e) => ServeError::Config(e),
        ControlError::Keys(e) => ServeError::Keys(e),
    })?;
    let distributed = match distributed {
        Some(d) => {
            control.set_config_source(Arc::clone(&d.source.status) as _);
            let reload: Arc<dyn Reload> = Arc::clone(&control) as _;
            let served = d.load(&reload).await.map_err(etcd_start_error)?;
            Some((d, served))
        }
        None => None,
    };
    let admin_token = match &args.admin_token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    let api_tls = match (&args.api_tls_cert, &args.api_tls_key) {
        (Some(cert), Some(key)) => Some(api::tls::load_config(cert, key)?),
        _ => None,
    };
    wire_observers(&args, &export, notify, control.publisher(), control.hub())?;
    let control_socket = match &args.control_socket {
        Some(path) => Some(socket::bind(path)?),
        None => None,
    };
    let handler_config = HandlerConfig {
        max_udp_size: args.max_udp_size,
        identity: args.server_id.as_deref().map(txt_rdata),
        version: args.server_version.as_deref().map(txt_rdata),
        allow_transfer: args.allow_transfer.clone(),
    };
    let handler = Arc::new(Handler::new(
        Arc::clone(control.publisher()),
        Arc::clone(&dns),
        handler_config.clone(),
    ));
    let limits = TcpLimits {
        idle_timeout: Duration::from_secs(args.tcp_idle_timeout),
        // 0 = off (the default), as for the query cap.
        session_timeout: (args.tcp_session_timeout > 0)
            .then(|| Duration::from_secs(args.tcp_session_timeout)),
        max_connections: args.max_tcp_connections,
        max_connections_per_client: usize::try_from(args.max_tcp_connections_per_client)
            .unwrap_or(usize::MAX),
        max_queries: (args.max_tcp_queries > 0)
            .then(|| usize::try_from(args.max_tcp_queries).unwrap_or(usize::MAX)),
    };
    let rrl = args.rrl_rate.map(|rate| {
        Arc::new(Rrl::new(RrlConfig {
            rate,
            slip: args.rrl_slip,
            table_size: usize::try_from(args.rrl_table_size).unwrap_or(DEFAULT_RRL_TABLE_SIZE),
        }))
    });

    let workers = match args.udp_workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    // Draining (SIGTERM) is announced on these channels: listeners stop accepting and finish
    // what is in flight. DNS first; the API after it, so that /health answers 503 meanwhile.
    let (drain_tx, drain_rx) = watch::channel(false);
    let (api_drain_tx, api_drain_rx) = watch::channel(false);
    let mut dns_addrs = Vec::new();
    let mut tcp_tasks = Vec::new();
    for addr in &args.dns_listen {
        let listener = server::bind(*addr).await.map_err(|source| ServeError::Io {
            what: "cannot listen for DNS on",
            addr: addr.to_string(),
            source,
        })?;
        dns_addrs.push(listener.addr.to_string());
        server::spawn_udp(listener.udp, Arc::clone(&handler), workers, rrl.clone());
        tcp_tasks.push(server::spawn_tcp_with_shutdown(
            listener.tcp,
            Arc::clone(&handler),
            limits.clone(),
            drain_rx.clone(),
        ));
    }

    // DoT, DoH, DoQ: the same handler settings and table, counted under their own transport;
    // their certificate is re-read by every reload.
    let encrypted = encrypted::start(
        &args.encrypted.to_config(),
        control.publisher(),
        &dns,
        &handler_config,
        &drain_rx,
    )?;
    let mut encrypted_ready = String::new();
    if let Some(enc) = encrypted {
        encrypted_ready = enc.ready_fields();
        let (certs, dns) = (Arc::clone(&enc.certs), Arc::clone(&dns));
        control.add_reload_hook(Box::new(move || {
            Encrypted::reload_certificate(&certs, &dns)
        }));
        tcp_tasks.extend(enc.tasks);
    }

    let api_listener = api_listener(args.api_listen).map_err(|source| ServeError::Io {
        what: "cannot listen for HTTP on",
        addr: args.api_listen.to_string(),
        source,
    })?;
    let api_addr = api_listener.local_addr().map_err(|source| ServeError::Io {
        what: "cannot read the address of",
        addr: args.api_listen.to_string(),
        source,
    })?;
    let state = ApiState {
        control: Arc::clone(&control),
        metrics: Arc::clone(&metrics),
        admin_token: admin_token.map(Arc::from),
        history: api::history::History::start(
            totals,
            args.history_interval_ms
                .map_or(api::history::INTERVAL, Duration::from_millis),
        ),
    };
    control.allow_exec(crate::probe::exec::AllowExec::new(&args.allow_exec)?);
    control.start_probing();
    // DNSSEC: signatures renewed and keys rolled as time passes, off the query path.
    tokio::spawn(crate::routing::signed::resign(Arc::clone(
        control.publisher(),
    )));
    let api_task = tokio::spawn({
        let drain = api_drain_rx;
        async move {
            if let Err(e) = api::tls::serve(api_listener, api::router(state), api_tls, drain).await
            {
                tracing::error!(error = %e, "http api stopped");
            }
        }
    });
    if let Some(socket) = control_socket {
        tracing::info!(path = %socket.path().display(), "control socket ready");
        tokio::spawn(socket.serve(Arc::clone(&control)));
    }
    let distributed_mode = distributed.is_some();
    if let Some((d, served)) = distributed {
        if args.keys.is_none() {
            tracing::warn!("no --keys: prober votes in etcd cannot be verified and are not read");
        }
        let hub = Arc::clone(control.hub());
        d.spawn(Arc::clone(&control) as _, hub, served, args.keys.is_some());
    }
    if distributed_mode {
        // The zones directory is etcd's copy, rewritten by the etcd source itself; GeoIP
        // and keys reload on SIGHUP.
        tracing::info!("distributed mode: zones follow etcd; file watch off");
    } else if !args.no_watch {
        // A watcher that cannot start (no inotify instances left) is worth a warning, not
        // an outage: SIGHUP and the control channel still reload.
        if let Err(e) = control::watch::spawn(Arc::clone(&control)) {
            tracing::warn!(error = %e, "configuration watch disabled");
        }
    }

    // Handlers go in before the ready line: a signal sent as soon as it is read must be seen.
    let signals = Signals::install();
    control.set_serving();
    tracing::info!(dns = %dns_addrs.join(","), api = %api_addr, zones = %args.zones.display(), "serving");
    // The one machine-readable line: tests and scripts read the bound ports from it.
    println!(
        "ready dns={} api={api_addr}{encrypted_ready}",
        dns_addrs.join(",")
    );

    signals.wait_for_shutdown(&control).await;
    // Drain: /health says 503 from now on; DNS over TCP stops accepting and answers what it
    // has read; then the API does the same (it keeps answering /health 503 until then).
    // Everything is bounded by --drain-timeout; UDP answers until the process exits.
    control.set_draining();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.drain_timeout);
    tracing::info!(timeout_s = args.drain_timeout, "draining");
    let _ = drain_tx.send(true);
    let mut drained = true;
    for task in tcp_tasks {
        drained &= tokio::time::timeout_at(deadline, task).await.is_ok();
    }
    let _ = api_drain_tx.send(true);
    drained &= tokio::time::timeout_at(deadline, api_task).await.is_ok();
    if drained {
        tracing::info!("drained; shutting down");
    } else {
        tracing::warn!("drain timeout reached; shutting down with work in flight");
    }
    Ok(())
}

/// Connects what reads health from the side: endpoint metrics at scrape time and the
/// transition webhooks. Both hold weak references, so neither keeps the other alive.
fn wire_observers(
    args: &ServeArgs,
    export: &HealthExport,
    notify: Arc<NotifyMetrics>,
    publisher: &Arc<Publisher>,
    hub: &Arc<HealthHub>,
) -> Result<(), ServeError> {
    let (weak_pub, weak_hub) = (Arc::downgrade(publisher), Arc::downgrade(hub));
    export.set_source(Box::new(move || {
        match (weak_pub.upgrade(), weak_hub.upgrade()) {
            (Some(p), Some(h)) => endpoint_samples(&p.table(), &h.view()),
            _ => Vec::new(),
        }
    }));
    if args.notify_url.is_empty() {
        return Ok(());
    }
    let weak_pub = Arc::downgrade(publisher);
    let region: crate::notify::RegionLookup = Arc::new(move |zone, service, address| {
        let table = weak_pub.upgrade()?.table();
        table
            .endpoints()
            .find(|e| {
                e.service.key == service
                    && e.endpoint.address == address
                    && e.zone.origin.to_string().eq_ignore_ascii_case(zone)
            })
            .map(|e| e.region.name.clone())
    });
    let notifier = crate::notify::Notifier::start(&args.notify_url, notify, region)?
        .with_min_severity(args.webhook_min_severity);
    hub.set_notifier(Box::new(move |t| notifier.notify(t)));
    tracing::info!(urls = args.notify_url.len(), "health webhooks enabled");
    Ok(())
}

/// SIGHUP, SIGTERM and SIGINT streams.
struct Signals {
    streams: Option<(Signal, Signal, Signal)>,
}

impl Signals {
    fn install() -> Self {
        let streams = match (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(h), Ok(t), Ok(i)) => Some((h, t, i)),
            _ => {
                tracing::error!("cannot install signal handlers; serving until killed");
                None
            }
        };
        Self { streams }
    }

    /// Reloads on SIGHUP; returns on SIGTERM or SIGINT.
    async fn wait_for_shutdown(self, control: &Arc<ControlPlane>) {
        let Some((mut hup, mut term, mut int)) = self.streams else {
            std::future::pending::<()>().await;
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading zones, every file read");
                    // Not awaited: a SIGTERM during a long reload is still seen at once;
                    // reloads serialise inside the control plane. SIGHUP reads every zone
                    // file (the watcher and the API trust unchanged file metadata).
                    let control = Arc::clone(control);
                    tokio::task::spawn_blocking(move || {
                        control.reload_with(crate::control::reload::Reread::All)
                    });
                }
                _ = term.recv() => return,
                _ = int.recv() => return,
            }
        }
    }
}

/// Connections the kernel may queue for the API before it accepts them.
const API_BACKLOG: u32 = 1024;

/// The API's listener, with a backlog of [`API_BACKLOG`] (as the DNS TCP listeners have).
/// `TcpListener::bind` gave 128: a burst of connections (probers reconnecting together, or
/// a flood the per-client cap refuses at once) overflowed the accept queue, the kernel
/// dropped the handshakes' last ACKs, and clients held connections the server had never
/// seen until SYN-ACK retries ran out, up to half a minute, outside every API deadline.
fn api_listener(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(API_BACKLOG)
}

/// Shortest admin token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

fn read_token(path: &std::path::Path) -> Result<String, ServeError> {
    let err = |message: String| ServeError::Token {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let token = text.trim().to_string();
    if token.len() < MIN_TOKEN_LEN || token.contains(char::is_whitespace) {
        return Err(err(format!(
            "the token must be one word of at least {MIN_TOKEN_LEN} characters"
        )));
    }
    Ok(token)
}

fn etcd_start_error(e: EtcdStartError) -> ServeError {
    match e {
        EtcdStartError::Setup(m) => ServeError::EtcdSetup(m),
        e @ EtcdStartError::Unavailable(_) => ServeError::EtcdUnavailable(e.to_string()),
    }
}

/// Distributed mode reloads the control plane through this (`etcd` does not depend on
/// `control`, whose status shows etcd's).
impl Reload for ControlPlane {
    fn reload_zones(&self) -> Reloaded {
        let report = self.reload();
        Reloaded {
            ok: report.ok,
            generation: report.generation,
            zones: report.zones,
            kept: report.kept.len(),
        }
    }
}

/// `/v1/status` and `ctl status` show etcd's state under `etcd`.
impl control::ConfigSource for EtcdStatus {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn status_json(&self) -> serde_json::Value {
        serde_json::json!(self.view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst of connections is queued whole for the accept loop: with the 128 of
    /// `TcpListener::bind` the kernel dropped the rest's handshakes (clients believed they
    /// were connected; the server saw them only after SYN-ACK retries, seconds later).
    #[tokio::test]
    async fn the_api_listener_queues_a_burst_of_connections() {
        let listener = api_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let burst = 400;
        // All at once, each bounded: a connect the kernel does not queue waits for SYN
        // retries, which the timeout cuts short.
        let connects: Vec<_> = (0..burst)
            .map(|_| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_millis(500),
                    tokio::net::TcpStream::connect(addr),
                ))
            })
            .collect();
        let mut clients = Vec::new();
        for c in connects {
            if let Ok(Ok(Ok(stream))) = c.await {
                clients.push(stream);
            }
        }
        let mut accepted = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while accepted < burst {
            match tokio::time::timeout_at(deadline, listener.accept()).await {
                Ok(Ok(_)) => accepted += 1,
                _ => break,
            }
        }
        assert_eq!(
            (clients.len(), accepted),
            (burst, burst),
            "connected, then accepted"
        );
    }
}
