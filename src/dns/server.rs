//! UDP and TCP listeners: sockets in, handler calls, bytes out, under resource limits.
//!
//! UDP: one thread per worker, each with its own socket bound to the same address with
//! `SO_REUSEPORT`, its own reused buffers and batched `recvmmsg`/`sendmmsg` (see `udp.rs`), so
//! UDP work in flight is bounded by the worker count; what the workers cannot take waits in the
//! kernel's receive buffer and is dropped there when that is full. Responses pass through
//! response rate limiting ([`super::rrl`]) when enabled.
//!
//! TCP: each connection is a task that reads length-prefixed messages (RFC 7766), answers every
//! one in turn (pipelined queries all get answers), and is closed when idle for the idle
//! timeout, when its total lifetime is up, when the client closes, or when its query cap is
//! reached. A registry caps connections in total and per client address. When every slot is
//! taken, the connection idle for longest (at least [`MIN_IDLE_TO_EVICT`]) is closed to make
//! room, so a slow-loris client holding many silent connections cannot lock new clients out;
//! only when every connection is busy is a new one refused. Buffers are sized per message,
//! so an idle connection costs a task and a socket, not 64 KiB buffers.
//!
//! Owns: sockets, connection accounting and timeouts. Must never: block the runtime, hold the
//! registry lock across an await, or apply RRL to TCP (a completed handshake proves the source).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::handler::Handler;
use super::rrl::Rrl;
use crate::metrics::{TcpRefusal, Transport};

/// Default idle timeout of a TCP connection (RFC 7766 §6.2.3 suggests seconds, not minutes).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default total lifetime of a TCP connection, however busy.
pub const DEFAULT_TCP_SESSION_TIMEOUT: Duration = Duration::from_secs(120);
/// Default cap on concurrent TCP connections.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 1024;
/// Default cap on concurrent TCP connections from one client address.
pub const DEFAULT_MAX_TCP_CONNECTIONS_PER_CLIENT: usize = 64;
/// Default cap on queries answered on one TCP connection.
pub const DEFAULT_MAX_TCP_QUERIES: usize = 10_000;
/// A connection must have been idle at least this long to be closed for a newcomer.
pub const MIN_IDLE_TO_EVICT: Duration = Duration::from_secs(1);

/// Limits of the TCP listener.
#[derive(Clone, Debug)]
pub struct TcpLimits {
    /// Close a connection after this long without a complete query (also bounds each write).
    pub idle_timeout: Duration,
    /// Close a connection this long after it was accepted.
    pub session_timeout: Duration,
    /// Concurrent connections.
    pub max_connections: usize,
    /// Concurrent connections from one client address.
    pub max_connections_per_client: usize,
    /// Queries per connection.
    pub max_queries: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            session_timeout: DEFAULT_TCP_SESSION_TIMEOUT,
            max_connections: DEFAULT_MAX_TCP_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_TCP_CONNECTIONS_PER_CLIENT,
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
/// Responses pass through `rrl` when given.
pub fn spawn_udp(
    socket: std::net::UdpSocket,
    handler: Arc<Handler>,
    workers: usize,
    rrl: Option<Arc<Rrl>>,
) {
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
        if let Err(e) = super::udp::spawn(socket, Arc::clone(&handler), rrl.clone(), i) {
            tracing::warn!(error = %e, "cannot start a udp worker");
        }
    }
}

/// Accepts TCP connections and serves each in its own task, within `limits`.
pub fn spawn_tcp(listener: TcpListener, handler: Arc<Handler>, limits: TcpLimits) {
    let registry = Arc::new(Registry::new(&limits));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let conn = match registry.admit(peer.ip()) {
                Ok(conn) => conn,
                Err(reason) => {
                    handler.metrics().record_tcp_refused(reason);
                    tracing::debug!(%peer, reason = reason.as_str(), "tcp connection refused");
                    drop(stream);
                    continue;
                }
            };
            if conn.evicted {
                handler.metrics().record_tcp_evicted();
            }
            let handler = Arc::clone(&handler);
            let limits = limits.clone();
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                let shared = Arc::clone(&conn.shared);
                let serve = serve_connection(stream, &handler, &limits, &registry, &shared);
                tokio::select! {
                    r = tokio::time::timeout(limits.session_timeout, serve) => {
                        if let Ok(Err(e)) = r {
                            tracing::debug!(%peer, error = %e, "tcp connection ended");
                        }
                    }
                    () = shared.close.notified() => {
                        tracing::debug!(%peer, "idle tcp connection evicted for a new client");
                    }
                }
                registry.release(conn.id);
            });
        }
    });
}

/// What one connection shares with the registry.
struct ConnShared {
    /// Milliseconds since the registry's epoch when the last complete query arrived.
    last_active: AtomicU64,
    /// Signalled when the registry evicts the connection.
    close: Notify,
}

struct Admitted {
    id: u64,
    shared: Arc<ConnShared>,
    /// True when an idle connection was closed to make room.
    evicted: bool,
}

struct Conn {
    client: IpAddr,
    shared: Arc<ConnShared>,
}

#[derive(Default)]
struct Slots {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    per_client: HashMap<IpAddr, usize>,
}

/// Open connections, by id and by client address. Locked only at accept and close, never
/// while a connection reads or writes.
struct Registry {
    slots: Mutex<Slots>,
    epoch: Instant,
    max: usize,
    max_per_client: usize,
}

impl Registry {
    fn new(limits: &TcpLimits) -> Self {
        Self {
            slots: Mutex::new(Slots::default()),
            epoch: Instant::now(),
            max: limits.max_connections.max(1),
            max_per_client: limits.max_connections_per_client.max(1),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a connection from `client`, evicting the longest-idle connection when
    /// all are taken.
    fn admit(&self, client: IpAddr) -> Result<Admitted, TcpRefusal> {
        self.admit_at(client, self.now_ms())
    }

    /// [`Registry::admit`] at `now` (milliseconds since the registry's epoch).
    fn admit_at(&self, client: IpAddr, now: u64) -> Result<Admitted, TcpRefusal> {
        let min_idle = u64::try_from(MIN_IDLE_TO_EVICT.as_millis()).unwrap_or(u64::MAX);
        let mut slots = self.lock();
        if slots.per_client.get(&client).copied().unwrap_or(0) >= self.max_per_client {
            return Err(TcpRefusal::PerClient);
        }
        let mut evicted = false;
        if slots.conns.len() >= self.max {
            // O(connections) under the lock, but only when full; at the default cap that is a
            // scan of 1024 entries, far cheaper than the accept itself.
            let victim = slots
                .conns
                .iter()
                .map(|(id, c)| (*id, c.shared.last_active.load(Ordering::Relaxed)))
                .filter(|(_, last)| now.saturating_sub(*last) >= min_idle)
                .min_by_key(|(_, last)| *last)
                .map(|(id, _)| id);
            let Some(victim) = victim else {
                return Err(TcpRefusal::Full);
            };
            if let Some(conn) = Self::remove(&mut slots, victim) {
                // notify_one stores a permit, so the task sees it even if not waiting yet.
                conn.shared.close.notify_one();
                evicted = true;
            }
        }
        let id = slots.next_id;
        slots.next_id = slots.next_id.wrapping_add(1);
        let shared = Arc::new(ConnShared {
            last_active: AtomicU64::new(now),
            close: Notify::new(),
        });
        slots.conns.insert(
            id,
            Conn {
                client,
                shared: Arc::clone(&shared),
            },
        );
        *slots.per_client.entry(client).or_insert(0) += 1;
        Ok(Admitted {
            id,
            shared,
            evicted,
        })
    }

    /// Frees the slot of connection `id` (a no-op if it was evicted already).
    fn release(&self, id: u64) {
        let mut slots = self.lock();
        Self::remove(&mut slots, id);
    }

    fn remove(slots: &mut Slots, id: u64) -> Option<Conn> {
        let conn = slots.conns.remove(&id)?;
        if let Some(n) = slots.per_client.get_mut(&conn.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                slots.per_client.remove(&conn.client);
            }
        }
        Some(conn)
    }

    #[cfg(test)]
    fn open(&self) -> (usize, usize) {
        let slots = self.lock();
        (slots.conns.len(), slots.per_client.len())
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    handler: &Handler,
    limits: &TcpLimits,
    registry: &Registry,
    shared: &ConnShared,
) -> io::Result<()> {
    handler.metrics().record_tcp_connection();
    let peer = stream.peer_addr()?;
    let _ = stream.set_nodelay(true);
    // Grown to the largest message seen on this connection, not allocated up front.
    let mut packet = Vec::new();
    let mut out = Vec::new();
    let mut frame = Vec::new();
    for _ in 0..limits.max_queries {
        let mut len = [0u8; 2];
        match tokio::time::timeout(limits.idle_timeout, stream.read_exact(&mut len)).await {
            Err(_) => return Ok(()), // idle: close
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(_)) => {}
        }
        let len = usize::from(u16::from_be_bytes(len));
        packet.resize(len, 0);
        // The whole message must arrive within the idle timeout: dripping bytes buys nothing.
        match tokio::time::timeout(limits.idle_timeout, stream.read_exact(&mut packet)).await {
            Err(_) => return Ok(()),
            Ok(r) => {
                r?;
            }
        }
        shared
            .last_active
            .store(registry.now_ms(), Ordering::Relaxed);
        if let Some(messages) = handler.transfer(&packet, peer.ip()) {
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
        if handler.handle(&packet, peer.ip(), Transport::Tcp, &mut out) {
            // One write per response: length prefix and message in a single segment.
            frame.clear();
            frame.extend_from_slice(&u16::try_from(out.len()).unwrap_or(u16::MAX).to_be_bytes());
            frame.extend_from_slice(&out);
            // A client that does not read its answers is idle too.
            match tokio::time::timeout(limits.idle_timeout, stream.write_all(&frame)).await {
                Err(_) => return Ok(()),
                Ok(r) => r?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize, per_client: usize) -> Registry {
        Registry::new(&TcpLimits {
            max_connections: max,
            max_connections_per_client: per_client,
            ..TcpLimits::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_client_cap_refuses_only_that_client() {
        let r = registry(10, 2);
        let a = r.admit(ip("192.0.2.1")).unwrap();
        r.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(r.admit(ip("192.0.2.1")).err(), Some(TcpRefusal::PerClient));
        assert!(r.admit(ip("192.0.2.2")).is_ok());
        r.release(a.id);
        assert!(r.admit(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn full_table_evicts_the_longest_idle_connection() {
        let r = registry(3, 10);
        let conns: Vec<_> = (1..=3)
            .map(|i| r.admit(ip(&format!("192.0.2.{i}"))).unwrap())
            .collect();
        // Last activity at 5 s, 1 s and 8 s; at 10 s the one quiet since 1 s goes.
        for (c, last) in conns.iter().zip([5_000, 1_000, 8_000]) {
            c.shared.last_active.store(last, Ordering::Relaxed);
        }
        let newcomer = r.admit_at(ip("198.51.100.1"), 10_000).unwrap();
        assert!(newcomer.evicted);
        assert_eq!(r.open(), (3, 3));
        // The evicted one was told to close, and releasing it later changes nothing.
        let waiter = conns[1].shared.close.notified();
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(1), waiter)
                    .await
                    .expect("evicted connection was not notified");
            });
        r.release(conns[1].id);
        assert_eq!(r.open(), (3, 3));
        r.release(conns[0].id);
        assert_eq!(r.open(), (2, 2));
    }

    #[test]
    fn full_table_of_busy_connections_refuses() {
        let r = registry(2, 10);
        let _a = r.admit(ip("192.0.2.1")).unwrap();
        let _b = r.admit(ip("192.0.2.2")).unwrap();
        // Both just became active: nobody has been idle MIN_IDLE_TO_EVICT.
        assert_eq!(r.admit(ip("192.0.2.3")).err(), Some(TcpRefusal::Full));
        assert_eq!(r.open(), (2, 2));
    }
}
