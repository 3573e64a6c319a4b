//! `meridian lab-backend` (hidden): a tiny HTTP server that answers every request with its
//! name, for the docker-compose lab's sample backends (no other HTTP server is in the image).
//!
//! Owns nothing of the nameserver. Must never be used as a real backend: it serves one fixed
//! line and has no limits.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// Serves `name` on `listen` until SIGTERM or SIGINT.
pub async fn serve_backend(listen: SocketAddr, name: String) -> std::io::Result<()> {
    let body = format!("{name}\n");
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { body }
    });
    let listener = TcpListener::bind(listen).await?;
    println!("ready http={}", listener.local_addr()?);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
        .await
}
