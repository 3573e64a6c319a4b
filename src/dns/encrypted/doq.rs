//! DNS over QUIC (RFC 9250): one query per client-initiated bidirectional stream, a 2-byte
//! length before the message as over TCP, the client's FIN after it; the answer goes back on
//! the same stream, which the server then finishes. Message IDs are 0 (§4.2.1): a query with
//! another ID closes the connection with `DOQ_PROTOCOL_ERROR`, as the RFC requires.
//!
//! Limits: the listener's connection slots (refused at accept), the handshake timeout, QUIC's
//! idle timeout (the listener's idle timeout), at most [`MAX_STREAMS`] queries in flight per
//! connection, each query read within the idle timeout. Zone transfers from
//! `--allow-transfer` sources go back on the query's stream (RFC 9250 §4.2).
//!
//! Drain: new connections are refused, open ones are closed with `DOQ_NO_ERROR` (a query's
//! answer is written as soon as it is read, so nothing is left half done for long).
//!
//! Owns: the QUIC endpoint of one address. Must never: answer except through the handler.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, Endpoint, EndpointConfig, RecvStream, SendStream, VarInt};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::rustls::ServerConfig;

use super::limits::Slots;
use super::{Limits, drained};
use crate::dns::handler::{Handler, MAX_TCP_MESSAGE};
use crate::dns::metrics::Transport;

/// RFC 9250 §4.3: no error (used when closing an idle or drained connection).
pub const DOQ_NO_ERROR: u32 = 0x0;
/// RFC 9250 §4.3: the peer broke the protocol.
pub const DOQ_PROTOCOL_ERROR: u32 = 0x2;
/// RFC 9250 §4.3: the request was cancelled (a query the handler does not answer).
pub const DOQ_REQUEST_CANCELLED: u32 = 0x3;
/// Queries in flight (open streams) on one connection.
pub const MAX_STREAMS: u32 = 100;
/// How long a drain waits for the endpoint to have told every client.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Why the DoQ listener could not start.
#[derive(Debug)]
pub enum StartError {
    /// The socket.
    Io(std::io::Error),
    /// The TLS configuration does not suit QUIC.
    Tls(String),
}

/// Serves DoQ on `socket` until a drain.
pub fn spawn(
    socket: std::net::UdpSocket,
    tls: Arc<ServerConfig>,
    handler: Arc<Handler>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, StartError> {
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| StartError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .max_idle_timeout(limits.idle_timeout.try_into().ok());
    server.transport_config(Arc::new(transport));
    let endpoint = Endpoint::new(
        EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(StartError::Io)?;
    let slots = Slots::new(limits.max_connections, limits.max_connections_per_client);
    Ok(tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let incoming = tokio::select! {
                i = endpoint.accept() => i,
                () = drained(&mut shutdown) => break,
            };
            while connections.try_join_next().is_some() {}
            let Some(incoming) = incoming else { break };
            let peer = incoming.remote_address();
            let source = peer.ip().to_canonical();
            let slot = match slots.take(source) {
                Ok(slot) => slot,
                Err(reason) => {
                    handler.metrics().record_encrypted_refused(reason);
                    incoming.refuse();
                    continue;
                }
            };
            let handler = Arc::clone(&handler);
            let limits = limits.clone();
            connections.spawn(async move {
                let _slot = slot;
                let connecting = match incoming.accept() {
                    Ok(c) => c,
                    Err(e) => {
                        handler.metrics().record_handshake_failure();
                        tracing::debug!(%peer, error = %e, "quic connection failed");
                        return;
                    }
                };
                let conn = match tokio::time::timeout(limits.handshake_timeout, connecting).await {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(e)) => {
                        handler.metrics().record_handshake_failure();
                        tracing::debug!(%peer, error = %e, "quic handshake failed");
                        return;
                    }
                    Err(_) => {
                        handler.metrics().record_handshake_failure();
                        tracing::debug!(%peer, "quic handshake timed out");
                        return;
                    }
                };
                handler.metrics().record_encrypted_connection();
                serve(conn, source, handler, limits).await;
            });
        }
        // Drain: refuse newcomers, tell every client, wait (bounded) until they were told.
        endpoint.set_server_config(None);
        endpoint.close(VarInt::from_u32(DOQ_NO_ERROR), b"");
        connections.shutdown().await;
        let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.wait_idle()).await;
    }))
}

/// Accepts the connection's streams until it closes (idle timeout, client, error).
async fn serve(conn: Connection, source: IpAddr, handler: Arc<Handler>, limits: Limits) {
    let mut streams = JoinSet::new();
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%source, error = %e, "doq connection ended");
                break;
            }
        };
        while streams.try_join_next().is_some() {}
        let handler = Arc::clone(&handler);
        let conn = conn.clone();
        let idle = limits.idle_timeout;
        streams.spawn(async move {
            answer(&conn, send, recv, source, &handler, idle).await;
        });
    }
    streams.shutdown().await;
}

/// Reads one query from its stream and writes the answer back.
async fn answer(
    conn: &Connection,
    mut send: SendStream,
    mut recv: RecvStream,
    source: IpAddr,
    handler: &Handler,
    idle: Duration,
) {
    let Ok(Ok(data)) = tokio::time::timeout(idle, recv.read_to_end(MAX_TCP_MESSAGE + 2)).await
    else {
        let _ = send.reset(VarInt::from_u32(DOQ_REQUEST_CANCELLED));
        return;
    };
    // RFC 9250 §4.2: exactly one length-prefixed message per stream, with ID 0 (§4.2.1).
    let query = match data.split_first_chunk::<2>() {
        Some((len, rest)) if usize::from(u16::from_be_bytes(*len)) == rest.len() => rest,
        _ => {
            conn.close(VarInt::from_u32(DOQ_PROTOCOL_ERROR), b"bad length");
            return;
        }
    };
    if query.get(..2).is_some_and(|id| id != [0, 0]) {
        conn.close(VarInt::from_u32(DOQ_PROTOCOL_ERROR), b"message id not 0");
        return;
    }
    let mut frame = Vec::new();
    if let Some(messages) = handler.transfer(query, source) {
        for message in messages {
            push_frame(&mut frame, &message);
        }
    } else {
        let mut out = Vec::new();
        if !handler.handle(query, source, Transport::Tcp, &mut out) {
            let _ = send.reset(VarInt::from_u32(DOQ_REQUEST_CANCELLED));
            return;
        }
        push_frame(&mut frame, &out);
    }
    if matches!(
        tokio::time::timeout(idle, send.write_all(&frame)).await,
        Ok(Ok(()))
    ) {
        let _ = send.finish();
    } else {
        let _ = send.reset(VarInt::from_u32(DOQ_REQUEST_CANCELLED));
    }
}

fn push_frame(frame: &mut Vec<u8>, message: &[u8]) {
    frame.extend_from_slice(
        &u16::try_from(message.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(message);
}
