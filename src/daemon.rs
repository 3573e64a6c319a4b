//! `meridian serve`: wires the publisher, listeners, API and signals together.

use std::sync::Arc;
use std::time::Duration;

use crate::api::{self, ApiState};
use crate::cli::ServeArgs;
use crate::dns::handler::{Handler, HandlerConfig, txt_rdata};
use crate::dns::server::{self, TcpLimits};
use crate::metrics::Metrics;
use crate::routing::publish::{Publisher, StartError};

/// Why `serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is bad (exit code 2).
    #[error(transparent)]
    Config(#[from] StartError),
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
    let handler = Arc::new(Handler::new(
        Arc::clone(&publisher),
        Arc::clone(&metrics),
        HandlerConfig {
            max_udp_size: args.max_udp_size,
            identity: args.server_id.as_deref().map(txt_rdata),
            version: args.server_version.as_deref().map(txt_rdata),
        },
    ));
    let limits = TcpLimits {
        idle_timeout: Duration::from_secs(args.tcp_idle_timeout),
        max_connections: args.max_tcp_connections,
        ..TcpLimits::default()
    };

    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut dns_addrs = Vec::new();
    for addr in &args.dns_listen {
        let listener = server::bind(*addr).await.map_err(|source| ServeError::Io {
            what: "cannot listen for DNS on",
            addr: addr.to_string(),
            source,
        })?;
        dns_addrs.push(listener.addr.to_string());
        server::spawn_udp(listener.udp, Arc::clone(&handler), workers);
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
    };
    tokio::spawn(async move {
        if let Err(e) = api::serve(api_listener, state).await {
            tracing::error!(error = %e, "http api stopped");
        }
    });

    tracing::info!(dns = %dns_addrs.join(","), api = %api_addr, zones = %args.zones.display(), "serving");
    // The one machine-readable line: tests and scripts read the bound ports from it.
    println!("ready dns={} api={api_addr}", dns_addrs.join(","));

    wait_for_shutdown(&publisher).await;
    tracing::info!("shutting down");
    Ok(())
}

/// Reloads on SIGHUP; returns on SIGTERM or SIGINT.
async fn wait_for_shutdown(publisher: &Arc<Publisher>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; serving until killed");
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading zones");
                let publisher = Arc::clone(publisher);
                let _ = tokio::task::spawn_blocking(move || publisher.reload()).await;
            }
            _ = term.recv() => return,
            _ = int.recv() => return,
        }
    }
}
