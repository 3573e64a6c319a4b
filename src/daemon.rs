//! `meridian serve`: wires the publisher, listeners, API and signals together.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::api::{self, ApiState};
use crate::cli::ServeArgs;
use crate::dns::handler::{Handler, HandlerConfig, txt_rdata};
use crate::dns::rrl::{DEFAULT_RRL_TABLE_SIZE, Rrl, RrlConfig};
use crate::dns::server::{self, TcpLimits};
use crate::health::hub::HealthHub;
use crate::health::report::{Keyring, KeyringError};
use crate::metrics::Metrics;
use crate::probe::targets::checked_endpoints;
use crate::prober::LocalProber;
use crate::routing::publish::{Publisher, ReloadReport, StartError};

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

/// Runs the server until SIGTERM or SIGINT.
pub async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::new());
    let publisher = Arc::new(Publisher::start(
        &args.zones,
        &args.geoip,
        Arc::clone(&metrics),
    )?);
    let keyring = match &args.keys {
        Some(path) => Some(Keyring::load(path).map_err(ServeError::Keys)?),
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
    let hub = Arc::new(HealthHub::new(
        checked_endpoints(&publisher.zones()),
        Duration::from_secs(args.health_grace),
        keyring,
        Arc::clone(&metrics),
    ));
    wire_observers(&args, &metrics, &publisher, &hub)?;
    let local_prober = Arc::new(std::sync::Mutex::new(LocalProber::stopped()));
    let control = Arc::new(Control {
        publisher: Arc::clone(&publisher),
        hub: Arc::clone(&hub),
        local_prober: (!args.no_local_probe).then(|| Arc::clone(&local_prober)),
        keys: args.keys.clone(),
    });
    let handler = Arc::new(Handler::new(
        Arc::clone(&publisher),
        Arc::clone(&metrics),
        HandlerConfig {
            max_udp_size: args.max_udp_size,
            identity: args.server_id.as_deref().map(txt_rdata),
            version: args.server_version.as_deref().map(txt_rdata),
            allow_transfer: args.allow_transfer.clone(),
        },
    ));
    let limits = TcpLimits {
        idle_timeout: Duration::from_secs(args.tcp_idle_timeout),
        session_timeout: Duration::from_secs(args.tcp_session_timeout),
        max_connections: args.max_tcp_connections,
        max_connections_per_client: usize::try_from(args.max_tcp_connections_per_client)
            .unwrap_or(usize::MAX),
        max_queries: usize::try_from(args.max_tcp_queries).unwrap_or(usize::MAX),
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
    let mut dns_addrs = Vec::new();
    for addr in &args.dns_listen {
        let listener = server::bind(*addr).await.map_err(|source| ServeError::Io {
            what: "cannot listen for DNS on",
            addr: addr.to_string(),
            source,
        })?;
        dns_addrs.push(listener.addr.to_string());
        server::spawn_udp(listener.udp, Arc::clone(&handler), workers, rrl.clone());
        server::spawn_tcp(listener.tcp, Arc::clone(&handler), limits.clone());
    }

    let api_listener = api::bind(args.api_listen)
        .await
        .map_err(|source| ServeError::Io {
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
        publisher: Arc::clone(&publisher),
        metrics: Arc::clone(&metrics),
        hub: Arc::clone(&hub),
        admin_token: admin_token.map(Arc::from),
        reload: {
            let control = Arc::clone(&control);
            Arc::new(move || control.reload())
        },
    };
    {
        let publisher = Arc::clone(&publisher);
        tokio::spawn(Arc::clone(&hub).run(move |snapshot| {
            publisher.set_health(Arc::new(snapshot));
        }));
    }
    if !args.no_local_probe {
        if let Ok(mut p) = local_prober.lock() {
            p.restart(&publisher.zones(), &hub);
        }
    }
    tokio::spawn(async move {
        if let Err(e) = api::tls::serve(api_listener, api::router(state), api_tls).await {
            tracing::error!(error = %e, "http api stopped");
        }
    });

    // Handlers go in before the ready line: a signal sent as soon as it is read must be seen.
    let signals = Signals::install();
    tracing::info!(dns = %dns_addrs.join(","), api = %api_addr, zones = %args.zones.display(), "serving");
    // The one machine-readable line: tests and scripts read the bound ports from it.
    println!("ready dns={} api={api_addr}", dns_addrs.join(","));

    signals.wait_for_shutdown(&control).await;
    tracing::info!("shutting down");
    Ok(())
}

/// Connects what reads health from the side: endpoint metrics at scrape time and the
/// transition webhooks. Both hold weak references, so neither keeps the other alive.
fn wire_observers(
    args: &ServeArgs,
    metrics: &Arc<Metrics>,
    publisher: &Arc<Publisher>,
    hub: &Arc<HealthHub>,
) -> Result<(), ServeError> {
    let (weak_pub, weak_hub) = (Arc::downgrade(publisher), Arc::downgrade(hub));
    metrics.set_health_source(Box::new(move || {
        match (weak_pub.upgrade(), weak_hub.upgrade()) {
            (Some(p), Some(h)) => crate::metrics::endpoint_samples(&p.table(), &h.view()),
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
            .zones()
            .filter(|z| z.origin.to_string().eq_ignore_ascii_case(zone))
            .flat_map(|z| z.services.iter())
            .filter(|s| s.key == service)
            .find_map(|s| {
                let e = s.endpoints.iter().find(|e| e.address == address)?;
                Some(s.regions.get(usize::from(e.region))?.name.clone())
            })
    });
    let notifier = crate::notify::Notifier::start(&args.notify_url, Arc::clone(metrics), region)?;
    hub.set_notifier(notifier);
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
    async fn wait_for_shutdown(self, control: &Arc<Control>) {
        let Some((mut hup, mut term, mut int)) = self.streams else {
            std::future::pending::<()>().await;
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading zones");
                    let control = Arc::clone(control);
                    let _ = tokio::task::spawn_blocking(move || control.reload()).await;
                }
                _ = term.recv() => return,
                _ = int.recv() => return,
            }
        }
    }
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

/// What a reload touches: zones and GeoIP (publisher), the endpoints health expects, the
/// embedded prober's targets, and the prober keys.
pub struct Control {
    publisher: Arc<Publisher>,
    hub: Arc<HealthHub>,
    local_prober: Option<Arc<std::sync::Mutex<LocalProber>>>,
    keys: Option<std::path::PathBuf>,
}

impl Control {
    /// Reloads everything; a part that fails keeps its previous version.
    pub fn reload(&self) -> ReloadReport {
        let mut report = self.publisher.reload();
        let zones = self.publisher.zones();
        self.hub.set_known(checked_endpoints(&zones));
        if let Some(path) = &self.keys {
            match Keyring::load(path) {
                Ok(k) => self.hub.set_keyring(Some(k)),
                Err(e) => {
                    tracing::warn!(error = %e, "prober keys rejected on reload; previous keys kept");
                    report.ok = false;
                    report.errors.push(e.to_string());
                }
            }
        }
        if let Some(prober) = &self.local_prober {
            // The runner is spawned on the runtime; reload runs on a blocking thread of it.
            if let Ok(mut p) = prober.lock() {
                p.restart(&zones, &self.hub);
            }
        }
        report
    }
}
