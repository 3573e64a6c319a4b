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
//! reached. A registry caps connections in total and per client host (the IPv4 address, the
//! IPv6 /64: one host's addresses are one client). When a client is at its cap, its own
//! connection idle for longest is closed for the new one; when every slot is taken, the
//! connection idle for longest overall is. Either way the victim must have been idle (not
//! answering a query) for at least [`MIN_IDLE_TO_EVICT`], so a slow-loris client holding many
//! silent connections cannot lock anyone out, itself included; only when the candidates are
//! all busy is a new connection refused. Buffers are sized per message, so an idle connection
//! costs a task and a socket, not 64 KiB buffers.
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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::handler::Handler;
use super::metrics::{TcpRefusal, Transport};
use super::rrl::Rrl;

/// Default idle timeout of a TCP connection (RFC 7766 §6.2.3 suggests seconds, not minutes).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default total lifetime of a TCP connection, however busy.
pub const DEFAULT_TCP_SESSION_TIMEOUT: Duration = Duration::from_secs(120);
/// Default cap on concurrent TCP connections.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 1024;
/// Default cap on concurrent TCP connections from one client host (IPv4 address, IPv6 /64).
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
    /// Concurrent connections from one client host (IPv4 address, IPv6 /64).
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
                let serve = serve_connection(
                    stream,
                    source,
                    &handler,
                    &limits,
                    &registry,
                    &shared,
                    &mut shutdown,
                );
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
        drop(listener);
        while connections.join_next().await.is_some() {}
    })
}

/// Resolves when a drain has been asked for; never, if the sender is gone without asking.
async fn drained(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|drain| *drain).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What one connection shares with the registry.
struct ConnShared {
    /// Milliseconds since the registry's epoch when the connection last received a complete
    /// query or finished answering one.
    last_active: AtomicU64,
    /// True from a complete query until its answer is written: not idle, whatever
    /// `last_active` says (a long transfer, a slow reader).
    busy: AtomicBool,
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
    /// at least [`MIN_IDLE_TO_EVICT`] and is not in the middle of a query.
    fn longest_idle(slots: &Slots, now: u64, client: Option<IpAddr>) -> Option<u64> {
        let min_idle = u64::try_from(MIN_IDLE_TO_EVICT.as_millis()).unwrap_or(u64::MAX);
        slots
            .conns
            .iter()
            .filter(|(_, c)| client.is_none_or(|k| c.client == k))
            .filter(|(_, c)| !c.shared.busy.load(Ordering::Relaxed))
            .map(|(id, c)| (*id, c.shared.last_active.load(Ordering::Relaxed)))
            .filter(|(_, last)| now.saturating_sub(*last) >= min_idle)
            .min_by_key(|(_, last)| *last)
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

/// Marks a connection busy for as long as it lives (one query), idle again on drop.
struct Busy<'a> {
    shared: &'a ConnShared,
    registry: &'a Registry,
}

impl<'a> Busy<'a> {
    fn start(shared: &'a ConnShared, registry: &'a Registry) -> Self {
        shared.busy.store(true, Ordering::Relaxed);
        shared
            .last_active
            .store(registry.now_ms(), Ordering::Relaxed);
        Busy { shared, registry }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.shared
            .last_active
            .store(self.registry.now_ms(), Ordering::Relaxed);
        self.shared.busy.store(false, Ordering::Relaxed);
    }
}

/// Serves one connection from `source` (canonical) until it closes, times out, reaches its
/// query cap, or a drain finds it between queries.
async fn serve_connection(
    mut stream: TcpStream,
    source: IpAddr,
    handler: &Handler,
    limits: &TcpLimits,
    registry: &Registry,
    shared: &ConnShared,
    shutdown: &mut watch::Receiver<bool>,
) -> io::Result<()> {
    handler.metrics().record_tcp_connection();
    let _ = stream.set_nodelay(true);
    // Grown to the largest message seen on this connection, not allocated up front.
    let mut packet = Vec::new();
    let mut out = Vec::new();
    let mut frame = Vec::new();
    for _ in 0..limits.max_queries {
        // Draining: the previous query is answered; close between queries.
        if *shutdown.borrow() {
            return Ok(());
        }
        let mut len = [0u8; 2];
        // Idle: waiting for the next query. A drain closes the connection here at once;
        // bytes already waiting are read first (biased), so a query sent just before the
        // drain still counts as started.
        tokio::select! {
            biased;
            r = tokio::time::timeout(limits.idle_timeout, stream.read_exact(&mut len)) => match r {
                Err(_) => return Ok(()), // idle: close
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(_)) => {}
            },
            () = drained(shutdown) => return Ok(()),
        }
        let len = usize::from(u16::from_be_bytes(len));
        packet.resize(len, 0);
        // The whole message must arrive within the idle timeout: dripping bytes buys nothing.
        // Until it has, the connection is not busy: a slow-loris client dripping a message
        // stays evictable.
        match tokio::time::timeout(limits.idle_timeout, stream.read_exact(&mut packet)).await {
            Err(_) => return Ok(()),
            Ok(r) => {
                r?;
            }
        }
        let _busy = Busy::start(shared, registry);
        if let Some(messages) = handler.transfer(&packet, source) {
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
        if handler.handle(&packet, source, Transport::Tcp, &mut out) {
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
    fn client_key_is_the_ipv4_address_or_the_ipv6_slash_64() {
        for (addr, key) in [
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
            ("2001:db8:1:2::1", "2001:db8:1:2::"),
            ("2001:db8:1:3::1", "2001:db8:1:3::"),
            ("::1", "::"),
        ] {
            assert_eq!(client_key(ip(addr)), ip(key), "{addr}");
        }
    }

    #[test]
    fn one_ipv6_slash_64_shares_one_per_client_cap() {
        let r = registry(100, 2);
        r.admit(ip("2001:db8:0:1::1")).unwrap();
        r.admit(ip("2001:db8:0:1::2")).unwrap();
        assert_eq!(
            r.admit(ip("2001:db8:0:1:ffff::3")).err(),
            Some(TcpRefusal::PerClient)
        );
        assert!(r.admit(ip("2001:db8:0:2::1")).is_ok());
        // A mapped IPv4 address is that IPv4 client.
        r.admit(ip("192.0.2.1")).unwrap();
        r.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(r.admit(ip("192.0.2.1")).err(), Some(TcpRefusal::PerClient));
    }

    #[test]
    fn a_client_at_its_cap_loses_its_own_longest_idle_connection() {
        let r = registry(100, 3);
        let mine: Vec<_> = (0..3).map(|_| r.admit(ip("192.0.2.1")).unwrap()).collect();
        let other = r.admit(ip("192.0.2.2")).unwrap();
        // Idle since 4 s, 2 s and 6 s; the other client's has been idle longest of all.
        for (c, last) in mine.iter().zip([4_000, 2_000, 6_000]) {
            c.shared.last_active.store(last, Ordering::Relaxed);
        }
        other.shared.last_active.store(0, Ordering::Relaxed);
        let newcomer = r.admit_at(ip("192.0.2.1"), 10_000).unwrap();
        assert!(newcomer.evicted);
        assert_eq!(r.open(), (4, 2));
        let slots = r.lock();
        assert!(
            !slots.conns.contains_key(&mine[1].id),
            "the longest idle of its own"
        );
        assert!(
            slots.conns.contains_key(&other.id),
            "another client's is untouched"
        );
    }

    #[test]
    fn busy_or_recently_active_connections_are_never_evicted() {
        let r = registry(100, 2);
        let a = r.admit(ip("192.0.2.1")).unwrap();
        let b = r.admit(ip("192.0.2.1")).unwrap();
        a.shared.last_active.store(0, Ordering::Relaxed);
        a.shared.busy.store(true, Ordering::Relaxed); // e.g. a long transfer
        b.shared.last_active.store(9_500, Ordering::Relaxed); // active 0.5 s ago
        assert_eq!(
            r.admit_at(ip("192.0.2.1"), 10_000).err(),
            Some(TcpRefusal::PerClient)
        );
        a.shared.busy.store(false, Ordering::Relaxed);
        assert!(r.admit_at(ip("192.0.2.1"), 10_000).unwrap().evicted);
    }

    /// A handler over the fuzz corpus zones (`www.example.test` has A records).
    fn handler() -> Arc<Handler> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (zones, geo) = crate::routing::publish::load_sources(
            &root.join("fuzz/zones"),
            &root.join("geoip/meridian-sample.txt"),
        )
        .unwrap();
        let publisher =
            crate::routing::publish::Publisher::new(zones, geo, Arc::default()).unwrap();
        Arc::new(Handler::new(
            Arc::new(publisher),
            Arc::default(),
            super::super::handler::HandlerConfig::default(),
        ))
    }

    /// `www.example.test. A` with message id `id`, framed for TCP.
    fn framed_query(id: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(b"\x03www\x07example\x04test\x00\x00\x01\x00\x01");
        let mut framed = u16::try_from(q.len()).unwrap().to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        framed
    }

    /// Reads one framed answer; None on EOF.
    async fn read_answer(s: &mut TcpStream) -> Option<Vec<u8>> {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.ok()?;
        let mut msg = vec![0; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut msg).await.ok()?;
        Some(msg)
    }

    const BOUND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn drain_answers_the_query_in_flight_closes_idle_ones_and_refuses_new() {
        let listener = tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (drain, shutdown) = watch::channel(false);
        let task = spawn_tcp_with_shutdown(listener, handler(), TcpLimits::default(), shutdown);

        // Both connections are served before the drain (an answer proves it).
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut mid = TcpStream::connect(addr).await.unwrap();
        for (s, id) in [(&mut idle, 1), (&mut mid, 2)] {
            s.write_all(&framed_query(id)).await.unwrap();
            let answer = tokio::time::timeout(BOUND, read_answer(s)).await.unwrap();
            assert_eq!(answer.unwrap()[..2], id.to_be_bytes());
        }
        // `mid` starts its next query: the length and half the message.
        let query = framed_query(3);
        let (first, rest) = query.split_at(query.len() / 2);
        mid.write_all(first).await.unwrap();
        // Let the server read the length prefix (loopback delivers at once; this is margin).
        tokio::time::sleep(Duration::from_millis(200)).await;

        drain.send(true).unwrap();

        // The idle connection is closed at once.
        let closed = tokio::time::timeout(BOUND, read_answer(&mut idle)).await;
        assert_eq!(
            closed.unwrap(),
            None,
            "idle connection not closed by the drain"
        );
        // New connections are refused once the accept loop has stopped.
        let deadline = Instant::now() + BOUND;
        while TcpStream::connect(addr).await.is_ok() {
            assert!(Instant::now() < deadline, "still accepting after the drain");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The query in flight gets its answer, then the connection closes.
        mid.write_all(rest).await.unwrap();
        let answer = tokio::time::timeout(BOUND, read_answer(&mut mid))
            .await
            .unwrap();
        assert_eq!(
            answer.expect("query in flight unanswered")[..2],
            3u16.to_be_bytes()
        );
        let closed = tokio::time::timeout(BOUND, read_answer(&mut mid)).await;
        assert_eq!(
            closed.unwrap(),
            None,
            "connection left open after its last answer"
        );
        // And the drain task completes.
        tokio::time::timeout(BOUND, task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn without_a_drain_connections_are_served_after_the_sender_is_gone() {
        let listener = tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (drain, shutdown) = watch::channel(false);
        let _task = spawn_tcp_with_shutdown(listener, handler(), TcpLimits::default(), shutdown);
        drop(drain);
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&framed_query(9)).await.unwrap();
        let answer = tokio::time::timeout(BOUND, read_answer(&mut s))
            .await
            .unwrap();
        assert_eq!(answer.unwrap()[..2], 9u16.to_be_bytes());
    }

    #[test]
    fn ipv6_listeners_are_v6_only_and_mapped_ones_can_bind() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let Ok(l) = tcp_listener("[::1]:0".parse().unwrap()) else {
                return; // no IPv6 on this machine
            };
            assert!(socket2::SockRef::from(&l).only_v6().unwrap());
            let u = udp_socket("[::1]:0".parse().unwrap()).unwrap();
            assert!(socket2::SockRef::from(&u).only_v6().unwrap());
            // A v4-mapped address binds (not V6ONLY: it only ever sees IPv4 clients).
            let mapped = tcp_listener("[::ffff:127.0.0.1]:0".parse().unwrap()).unwrap();
            assert!(!socket2::SockRef::from(&mapped).only_v6().unwrap());
        });
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
