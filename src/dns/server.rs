//! UDP and TCP listeners: sockets in, handler calls, bytes out, under resource limits.
//!
//! UDP: one thread per worker, each with its own socket bound to the same address with
//! `SO_REUSEPORT`, its own reused buffers and batched `recvmmsg`/`sendmmsg` (see `udp.rs`), so
//! UDP work in flight is bounded by the worker count; what the workers cannot take waits in the
//! kernel's receive buffer and is dropped there when that is full. Responses pass through
//! response rate limiting ([`super::rrl`]) when enabled.
//!
//! TCP: each connection is a task (see [`super::tcp`]: many pipelined queries per read, their
//! answers in one write, backpressure on clients that do not read). Like NSD and Knot, a busy
//! connection stays open: it is closed when idle for the idle timeout, when the client closes,
//! and only if the operator set them, when its total lifetime is up or its query cap is
//! reached. A registry caps connections in total and per client host (the IPv4 address, the
//! IPv6 /64: one host's addresses are one client). When a client is at its cap, its own
//! connection idle for longest is closed for the new one; when every slot is taken, the
//! connection idle for longest overall is. Either way the victim must have been idle (not
//! answering a query) for at least [`MIN_IDLE_TO_EVICT`], so a slow-loris client holding many
//! silent connections cannot lock anyone out, itself included; only when the candidates are
//! all busy is a new connection refused. Read and write buffers are per thread, so an idle
//! connection costs a task and a socket, not buffers.
//!
//! Addresses: IPv6 sockets are `IPV6_V6ONLY` (as Knot and NSD bind them), so `[::]` serves
//! IPv6 only and IPv4 needs its own `0.0.0.0` listener. A v4-mapped listen address
//! (`[::ffff:a.b.c.d]`) cannot be V6ONLY and sees IPv4 clients as `::ffff:a.b.c.d`; every
//! source address is therefore canonicalised (`to_canonical`) where it is received, so RRL,
//! GeoIP/subnet overrides, `allow-transfer` and the per-client cap see the IPv4 address.
//!
//! Drain (graceful shutdown): [`spawn_tcp_with_shutdown`] stops accepting when told to, closes
//! idle connections at once, lets every connection answer the query it is reading, then
//! closes it, and its task ends when the last connection has.
//!
//! Owns: sockets, connection accounting and timeouts. Must never: block the runtime, hold the
//! registry lock across an await, or apply RRL to TCP (a completed handshake proves the source).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::handler::Handler;
use super::metrics::TcpRefusal;
use super::rrl::Rrl;

/// Default idle timeout of a TCP connection (RFC 7766 §6.2.3 suggests seconds, not minutes).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on concurrent TCP connections.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 1024;
/// Default cap on concurrent TCP connections from one client host (IPv4 address, IPv6 /64).
pub const DEFAULT_MAX_TCP_CONNECTIONS_PER_CLIENT: usize = 64;
/// How long, on SIGTERM/SIGINT, TCP queries and API requests in flight may take to finish
/// before the process exits (`serve --drain-timeout`). Kept with the TCP drain, the part that
/// can take longest, so that `cli` takes it without depending on `daemon` (no import cycle).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection must have been idle at least this long to be closed for a newcomer.
pub const MIN_IDLE_TO_EVICT: Duration = Duration::from_secs(1);

/// Limits of the TCP listener.
#[derive(Clone, Debug)]
pub struct TcpLimits {
    /// Close a connection after this long without a complete query (also bounds each write).
    pub idle_timeout: Duration,
    /// Close a connection this long after it was accepted, however busy (None: never, the
    /// default, as in NSD and Knot).
    pub session_timeout: Option<Duration>,
    /// Concurrent connections.
    pub max_connections: usize,
    /// Concurrent connections from one client host (IPv4 address, IPv6 /64).
    pub max_connections_per_client: usize,
    /// Queries answered on one connection before it is closed (None: no cap, the default,
    /// as in NSD and Knot).
    pub max_queries: Option<usize>,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            session_timeout: None,
            max_connections: DEFAULT_MAX_TCP_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_TCP_CONNECTIONS_PER_CLIENT,
            max_queries: None,
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
        match tcp_listener(bound) {
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

/// Backlog of the TCP listener (tokio's default).
const TCP_BACKLOG: i32 = 1024;

/// A blocking UDP socket bound to `addr` with `SO_REUSEPORT`, so every worker can have its own.
fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    set_v6_only(&socket, addr)?;
    socket.set_reuse_port(true)?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A TCP listener on `addr` (`SO_REUSEADDR`, V6ONLY for IPv6 as [`set_v6_only`] says).
fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    set_v6_only(&socket, addr)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// IPv6 sockets serve IPv6 only (Knot and NSD do the same): `[::]` then no longer takes IPv4
/// as v4-mapped addresses, and IPv4 is served by its own listener. A v4-mapped listen address
/// is the exception: the kernel refuses V6ONLY there (it only ever sees IPv4 clients, as
/// mapped addresses, which the receive paths canonicalise).
fn set_v6_only(socket: &Socket, addr: SocketAddr) -> io::Result<()> {
    match addr {
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_none() => socket.set_only_v6(true),
        _ => Ok(()),
    }
}

/// The key of the per-client TCP cap: the IPv4 address, or the IPv6 /64 (a host's usual
/// allocation, so one host cannot take every slot by cycling its addresses). Mapped IPv4
/// addresses count as the IPv4 address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(
            u128::from(a) & (u128::MAX << (128 - CLIENT_V6_PREFIX_LEN)),
        )),
        v4 => v4,
    }
}

/// IPv6 clients are counted per /64 for the per-client TCP cap.
pub const CLIENT_V6_PREFIX_LEN: u32 = 64;

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

/// Accepts TCP connections and serves each in its own task, within `limits`, until
/// `shutdown` turns true (drain). Then it stops accepting (the listener is closed, so new
/// connections are refused), closes idle connections at once, lets each connection answer
/// the query it has started reading, and closes it. The returned task completes when the
/// accept loop has stopped and every connection has finished (bounded by the idle timeout
/// per read or write; the caller bounds the whole drain). If the sender of `shutdown` is
/// dropped without sending true, no drain happens.
pub fn spawn_tcp_with_shutdown(
    listener: TcpListener,
    handler: Arc<Handler>,
    limits: TcpLimits,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let registry = Arc::new(Registry::new(&limits));
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                () = drained(&mut shutdown) => break,
            };
            // Reap finished connections so the set holds only live ones.
            while connections.try_join_next().is_some() {}
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Canonical once, here: a v4-mapped source is the IPv4 client it stands for.
            let source = peer.ip().to_canonical();
            let conn = match registry.admit(source) {
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
            let mut shutdown = shutdown.clone();
            connections.spawn(async move {
                let shared = Arc::clone(&conn.shared);
                let cx = super::tcp::Context {
                    handler: &handler,
                    limits: &limits,
                    registry: &registry,
                    shared: &shared,
                    source,
                };
                let serve = super::tcp::serve(stream, cx, &mut shutdown);
                let session = async {
                    match limits.session_timeout {
                        Some(lifetime) => tokio::time::timeout(lifetime, serve).await.ok(),
                        None => Some(serve.await),
                    }
                };
                tokio::select! {
                    r = session => {
                        if let Some(Err(e)) = r {
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
        drop(listener);
        while connections.join_next().await.is_some() {}
    })
}

/// Resolves when a drain has been asked for; never, if the sender is gone without asking.
pub(crate) async fn drained(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|drain| *drain).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What one connection shares with the registry.
pub(crate) struct ConnShared {
    /// Milliseconds since the registry's epoch when the connection last received a complete
    /// query or finished answering one.
    pub(crate) last_active: AtomicU64,
    /// True from a complete query until its answer is written: not idle, whatever
    /// `last_active` says (a long transfer, a slow reader).
    pub(crate) busy: AtomicBool,
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
    /// The client's [`client_key`].
    client: IpAddr,
    shared: Arc<ConnShared>,
}

#[derive(Default)]
struct Slots {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    per_client: HashMap<IpAddr, usize>,
}

/// Open connections, by id and by client key. Locked only at accept and close, never
/// while a connection reads or writes.
pub(crate) struct Registry {
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

    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a connection from `client`, evicting that client's longest-idle
    /// connection when it is at its cap, or the longest-idle connection of all when every
    /// slot is taken.
    fn admit(&self, client: IpAddr) -> Result<Admitted, TcpRefusal> {
        self.admit_at(client, self.now_ms())
    }

    /// [`Registry::admit`] at `now` (milliseconds since the registry's epoch).
    fn admit_at(&self, client: IpAddr, now: u64) -> Result<Admitted, TcpRefusal> {
        let client = client_key(client);
        let mut slots = self.lock();
        let mut evicted = false;
        // O(connections) under the lock, but only at a cap; at the default cap that is a
        // scan of 1024 entries, far cheaper than the accept itself.
        if slots.per_client.get(&client).copied().unwrap_or(0) >= self.max_per_client {
            let victim =
                Self::longest_idle(&slots, now, Some(client)).ok_or(TcpRefusal::PerClient)?;
            evicted |= Self::evict(&mut slots, victim);
        }
        if slots.conns.len() >= self.max {
            let victim = Self::longest_idle(&slots, now, None).ok_or(TcpRefusal::Full)?;
            evicted |= Self::evict(&mut slots, victim);
        }
        let id = slots.next_id;
        slots.next_id = slots.next_id.wrapping_add(1);
        let shared = Arc::new(ConnShared {
            last_active: AtomicU64::new(now),
            busy: AtomicBool::new(false),
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

    /// The connection (of `client`, or of anyone) idle for longest, if one has been idle for
    /// at least [`MIN_IDLE_TO_EVICT`] and is not in the middle of a query. Of connections
    /// last active in the same millisecond (a client that opens many quickly), the oldest
    /// goes: the map's order would pick any of them.
    fn longest_idle(slots: &Slots, now: u64, client: Option<IpAddr>) -> Option<u64> {
        let min_idle = u64::try_from(MIN_IDLE_TO_EVICT.as_millis()).unwrap_or(u64::MAX);
        slots
            .conns
            .iter()
            .filter(|(_, c)| client.is_none_or(|k| c.client == k))
            .filter(|(_, c)| !c.shared.busy.load(Ordering::Relaxed))
            .map(|(id, c)| (*id, c.shared.last_active.load(Ordering::Relaxed)))
            .filter(|(_, last)| now.saturating_sub(*last) >= min_idle)
            .min_by_key(|&(id, last)| (last, id))
            .map(|(id, _)| id)
    }

    /// Removes connection `id` and tells its task to close; true if it was there.
    fn evict(slots: &mut Slots, id: u64) -> bool {
        match Self::remove(slots, id) {
            Some(conn) => {
                // notify_one stores a permit, so the task sees it even if not waiting yet.
                conn.shared.close.notify_one();
                true
            }
            None => false,
        }
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

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
