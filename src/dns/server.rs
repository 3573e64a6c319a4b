//! UDP and TCP listeners: sockets in, handler calls, bytes out.
//!
//! UDP is served by one thread per worker, each with its own socket bound to the same address
//! with `SO_REUSEPORT` and its own reused buffers (see `udp.rs`). Each TCP
//! connection is a task that reads length-prefixed messages (RFC 7766), answers every one of
//! them in turn (pipelined queries all get answers), and is closed when idle for the timeout,
//! when the client closes, or when a per-connection query cap is reached. A semaphore bounds
//! the number of connections, so idle clients cannot starve new ones of memory or tasks.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::handler::{Handler, MAX_TCP_MESSAGE};
use crate::metrics::Transport;

/// Default idle timeout of a TCP connection (RFC 7766 §6.2.3 suggests seconds, not minutes).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on concurrent TCP connections.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 1024;
/// Default cap on queries answered on one TCP connection.
pub const DEFAULT_MAX_TCP_QUERIES: usize = 10_000;

/// Limits of the TCP listener.
#[derive(Clone, Debug)]
pub struct TcpLimits {
    /// Close a connection after this long without a complete query.
    pub idle_timeout: Duration,
    /// Concurrent connections.
    pub max_connections: usize,
    /// Queries per connection.
    pub max_queries: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_TCP_CONNECTIONS,
            max_queries: DEFAULT_MAX_TCP_QUERIES,
        }
    }
}

/// A UDP socket and a TCP listener on the same address.
pub struct Listener {
    /// UDP side: the first worker's socket (`SO_REUSEPORT`, blocking).
    pub udp: std::net::UdpSocket,
    /// TCP side.
    pub tcp: TcpListener,
    /// The bound address (port resolved when 0 was asked for).
    pub addr: SocketAddr,
}

/// Binds UDP and TCP on `addr`. With port 0 the UDP socket picks a port and TCP takes the same
/// one; if it is taken for TCP, another is tried.
pub async fn bind(addr: SocketAddr) -> io::Result<Listener> {
    let mut last_err = None;
    for _ in 0..20 {
        let udp = udp_socket(addr)?;
        let bound = udp.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => {
                return Ok(Listener {
                    udp,
                    tcp,
                    addr: bound,
                });
            }
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no free port for UDP and TCP")))
}

/// Receive buffer of each UDP socket: room for a burst of a few thousand queries while the
/// worker is busy, instead of dropping them.
const UDP_RECV_BUFFER: usize = 4 << 20;

/// A blocking UDP socket bound to `addr` with `SO_REUSEPORT`, so every worker can have its own.
fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Serves UDP on `socket`'s address with `workers` threads, one socket each (the first is
/// `socket`; the others are bound to the same address). If an extra socket cannot be had, the
/// workers that have one serve.
pub fn spawn_udp(socket: std::net::UdpSocket, handler: Arc<Handler>, workers: usize) {
    let addr = socket.local_addr();
    let mut sockets = vec![socket];
    if let Ok(addr) = addr {
        for _ in 1..workers.max(1) {
            match udp_socket(addr) {
                Ok(s) => sockets.push(s),
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot open another udp socket");
                    break;
                }
            }
        }
    }
    for (i, socket) in sockets.into_iter().enumerate() {
        if let Err(e) = super::udp::spawn(socket, Arc::clone(&handler), i) {
            tracing::warn!(error = %e, "cannot start a udp worker");
        }
    }
}

/// Accepts TCP connections and serves each in its own task.
pub fn spawn_tcp(listener: TcpListener, handler: Arc<Handler>, limits: TcpLimits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::debug!(%peer, "tcp connection refused: limit reached");
                drop(stream);
                continue;
            };
            let handler = Arc::clone(&handler);
            let limits = limits.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_connection(stream, peer, &handler, &limits).await {
                    tracing::debug!(%peer, error = %e, "tcp connection ended");
                }
                drop(permit);
            });
        }
    });
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: &Handler,
    limits: &TcpLimits,
) -> io::Result<()> {
    handler.metrics().record_tcp_connection();
    let _ = stream.set_nodelay(true);
    let mut packet = vec![0u8; MAX_TCP_MESSAGE];
    let mut out = Vec::with_capacity(MAX_TCP_MESSAGE);
    let mut frame = Vec::with_capacity(MAX_TCP_MESSAGE + 2);
    for _ in 0..limits.max_queries {
        let mut len = [0u8; 2];
        match tokio::time::timeout(limits.idle_timeout, stream.read_exact(&mut len)).await {
            Err(_) => return Ok(()), // idle: close
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(_)) => {}
        }
        let len = usize::from(u16::from_be_bytes(len));
        let Some(buf) = packet.get_mut(..len) else {
            return Ok(());
        };
        match tokio::time::timeout(limits.idle_timeout, stream.read_exact(buf)).await {
            Err(_) => return Ok(()),
            Ok(r) => {
                r?;
            }
        }
        if let Some(messages) = handler.transfer(buf, peer.ip()) {
            for message in messages {
                frame.clear();
                frame.extend_from_slice(
                    &u16::try_from(message.len())
                        .unwrap_or(u16::MAX)
                        .to_be_bytes(),
                );
                frame.extend_from_slice(&message);
                stream.write_all(&frame).await?;
            }
            continue;
        }
        if handler.handle(buf, peer.ip(), Transport::Tcp, &mut out) {
            // One write per response: length prefix and message in a single segment.
            frame.clear();
            frame.extend_from_slice(&u16::try_from(out.len()).unwrap_or(u16::MAX).to_be_bytes());
            frame.extend_from_slice(&out);
            stream.write_all(&frame).await?;
        }
    }
    Ok(())
}
