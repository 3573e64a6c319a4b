//! DNS over TLS (RFC 7858), HTTPS (RFC 8484) and QUIC (RFC 9250) for the authoritative server.
//!
//! Each transport is a listener that unwraps the message and hands its bytes to the same
//! [`Handler`] the UDP and TCP listeners use, as a stream query ([`Transport::Tcp`]: 64 KiB
//! messages, no truncation), with its own view of the DNS counters so queries are labelled
//! `tls`, `https` or `quic`. Same table, same ECS and GeoIP rules, same RCODEs, byte for byte
//! the same answer (the message ID aside): the client's address for GeoIP is the connection's
//! source, canonicalised as the UDP/TCP listeners do.
//!
//! - DoT ([`dot`]): TLS over TCP, then RFC 7766 framing (2-byte length), pipelined queries;
//!   AXFR/IXFR from `--allow-transfer` sources as over TCP (zone transfer over TLS, RFC 9103).
//! - DoH ([`doh`]): HTTP/2 or HTTP/1.1 (ALPN), `GET /dns-query?dns=` (base64url) and `POST
//!   /dns-query` (`application/dns-message`); bad requests get 400, 404, 405, 413 or 415.
//! - DoQ ([`doq`]): one query per QUIC stream (2-byte length, then FIN), message ID 0.
//!
//! Limits, per listener: connections in total and per client host ([`limits`]), a TLS
//! handshake timeout, and an idle timeout after which a connection with nothing in flight is
//! closed. The certificate ([`certs`]) is shared by all three and re-read on every reload.
//!
//! Why not hickory-server's listeners (docs/architecture.md has the longer version): they hand
//! the handler a decoded request and take the answer back only as hickory record objects
//! (`MessageResponse`), so identical answers would mean decoding Meridian's wire answer into
//! records and encoding them again per query (another EDNS/ECS writer, another compression,
//! allocations), they reject malformed queries with their own rules before the handler sees
//! them, and they have no connection caps. The listeners here are tokio-rustls (already used by
//! the API), hyper (already used by the API) and quinn; the query path stays the one handler.
//!
//! Owns: the encrypted sockets, their TLS configuration and limits. Must never: answer a
//! query except through the handler, hold a lock across an await, or stop serving when a
//! certificate reload fails.

pub mod certs;
pub mod doh;
pub mod doq;
pub mod dot;
pub mod limits;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::handler::{Handler, HandlerConfig};
use super::metrics::{DnsMetrics, StreamLabel};
use crate::routing::publish::Publisher;
use crate::tls::TlsError;
use certs::CertStore;
use limits::{Slot, Slots};

#[cfg(doc)]
use super::metrics::Transport;

/// Port of DoT (RFC 7858 §3.1) and DoQ (RFC 9250 §4.1.1) when a listen address has none.
pub const DEFAULT_DOT_PORT: u16 = 853;
/// Port of DoH when `--doh-listen` has none.
pub const DEFAULT_DOH_PORT: u16 = 443;
/// Default idle timeout of an encrypted connection (as TCP's).
pub const DEFAULT_TLS_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on concurrent connections per encrypted listener.
pub const DEFAULT_MAX_TLS_CONNECTIONS: usize = 1024;
/// Default cap on concurrent connections from one client host per encrypted listener.
pub const DEFAULT_MAX_TLS_CONNECTIONS_PER_CLIENT: usize = 64;
/// Time allowed for a TLS (or QUIC) handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses a listen address; without a port (`127.0.0.1`, `::1`, `[::1]`) `default_port`.
pub fn parse_listen(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let host = s
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(s);
    host.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| format!("`{s}` is not an IP address with an optional port"))
}

/// What the encrypted listeners are told at start-up.
#[derive(Clone, Debug, Default)]
pub struct EncryptedConfig {
    /// DoT addresses.
    pub dot: Vec<SocketAddr>,
    /// DoH addresses.
    pub doh: Vec<SocketAddr>,
    /// DoQ addresses.
    pub doq: Vec<SocketAddr>,
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Limits of each listener.
    pub limits: Limits,
}

/// Limits of one encrypted listener.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Close a connection with nothing in flight after this long (also bounds each read and
    /// write of a message).
    pub idle_timeout: Duration,
    /// Concurrent connections.
    pub max_connections: usize,
    /// Concurrent connections from one client host (IPv4 address, IPv6 /64).
    pub max_connections_per_client: usize,
    /// Time allowed for the handshake.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_TLS_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_TLS_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_TLS_CONNECTIONS_PER_CLIENT,
            handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
        }
    }
}

/// Why the encrypted listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum EncryptedError {
    /// A listen flag without a certificate (exit code 2).
    #[error("{flag} needs --tls-cert and --tls-key (PEM certificate chain and private key)")]
    NoCertificate {
        /// The first listen flag given.
        flag: &'static str,
    },
    /// The certificate or key is unusable (exit code 2).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// rustls or quinn refused the configuration (exit code 2).
    #[error("tls configuration: {0}")]
    Config(String),
    /// A socket could not be bound (exit code 1).
    #[error("cannot listen for {what} on {addr}: {source}")]
    Io {
        /// DoT, DoH or DoQ.
        what: &'static str,
        /// Where.
        addr: SocketAddr,
        /// The I/O error.
        source: io::Error,
    },
}

impl EncryptedError {
    /// True for errors of configuration (exit code 2), false for sockets (exit code 1).
    pub fn is_config(&self) -> bool {
        !matches!(self, Self::Io { .. })
    }
}

/// The running encrypted listeners.
pub struct Encrypted {
    /// Their certificate (reload it with [`CertStore::reload`]).
    pub certs: Arc<CertStore>,
    /// `(name, address)` of each bound listener: `dot`, `doh`, `doq`.
    pub addrs: Vec<(&'static str, SocketAddr)>,
    /// One task per listener; each ends when a drain has finished its connections.
    pub tasks: Vec<JoinHandle<()>>,
}

impl Encrypted {
    /// The ready line's fields for the bound addresses, e.g. ` dot=127.0.0.1:853`.
    pub fn ready_fields(&self) -> String {
        let mut out = String::new();
        for name in ["dot", "doh", "doq"] {
            let addrs: Vec<String> = self
                .addrs
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, a)| a.to_string())
                .collect();
            if !addrs.is_empty() {
                out.push_str(&format!(" {name}={}", addrs.join(",")));
            }
        }
        out
    }

    /// Re-reads the certificate, counting the result; the error (old certificate kept) is
    /// returned for the reload report.
    pub fn reload_certificate(certs: &CertStore, metrics: &DnsMetrics) -> Result<(), String> {
        let result = certs.reload();
        metrics.record_cert_reload(result.is_ok());
        match result {
            Ok(()) => {
                tracing::info!("tls certificate reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "tls certificate rejected; the previous one keeps serving");
                Err(format!("{e} (previous TLS certificate kept)"))
            }
        }
    }
}

/// Binds and starts every encrypted listener of `config`; `None` when none is asked for.
/// The handler of each is built from `handler_config` over `publisher`, counting into its
/// view of `metrics`.
pub fn start(
    config: &EncryptedConfig,
    publisher: &Arc<Publisher>,
    metrics: &DnsMetrics,
    handler_config: &HandlerConfig,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<Encrypted>, EncryptedError> {
    let first_flag = [
        (!config.dot.is_empty(), "--dot-listen"),
        (!config.doh.is_empty(), "--doh-listen"),
        (!config.doq.is_empty(), "--doq-listen"),
    ]
    .into_iter()
    .find_map(|(given, flag)| given.then_some(flag));
    let Some(flag) = first_flag else {
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (&config.cert, &config.key) else {
        return Err(EncryptedError::NoCertificate { flag });
    };
    let certs = CertStore::load(cert, key)?;
    let handler_for = |label: StreamLabel| {
        Arc::new(Handler::new(
            Arc::clone(publisher),
            Arc::new(metrics.for_stream(label)),
            handler_config.clone(),
        ))
    };
    let rustls_err = |e: tokio_rustls::rustls::Error| EncryptedError::Config(e.to_string());
    let limits = &config.limits;
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    if !config.dot.is_empty() {
        let acceptor =
            TlsAcceptor::from(certs.server_config(&[b"dot"], false).map_err(rustls_err)?);
        let handler = handler_for(StreamLabel::Tls);
        for addr in &config.dot {
            let listener = bind_tcp(*addr).map_err(|source| io_err("DoT", *addr, source))?;
            addrs.push(("dot", local(&listener, *addr)));
            tasks.push(dot::spawn(
                listener,
                acceptor.clone(),
                Arc::clone(&handler),
                limits.clone(),
                shutdown.clone(),
            ));
        }
    }
    if !config.doh.is_empty() {
        let acceptor = TlsAcceptor::from(
            certs
                .server_config(&[b"h2", b"http/1.1"], false)
                .map_err(rustls_err)?,
        );
        let handler = handler_for(StreamLabel::Https);
        for addr in &config.doh {
            let listener = bind_tcp(*addr).map_err(|source| io_err("DoH", *addr, source))?;
            addrs.push(("doh", local(&listener, *addr)));
            tasks.push(doh::spawn(
                listener,
                acceptor.clone(),
                Arc::clone(&handler),
                limits.clone(),
                shutdown.clone(),
            ));
        }
    }
    if !config.doq.is_empty() {
        let tls = certs.server_config(&[b"doq"], true).map_err(rustls_err)?;
        let handler = handler_for(StreamLabel::Quic);
        for addr in &config.doq {
            let socket = bind_udp(*addr).map_err(|source| io_err("DoQ", *addr, source))?;
            let bound = socket.local_addr().unwrap_or(*addr);
            let task = doq::spawn(
                socket,
                Arc::clone(&tls),
                Arc::clone(&handler),
                limits.clone(),
                shutdown.clone(),
            )
            .map_err(|e| match e {
                doq::StartError::Io(source) => io_err("DoQ", *addr, source),
                doq::StartError::Tls(m) => EncryptedError::Config(m),
            })?;
            addrs.push(("doq", bound));
            tasks.push(task);
        }
    }
    Ok(Some(Encrypted {
        certs,
        addrs,
        tasks,
    }))
}

fn io_err(what: &'static str, addr: SocketAddr, source: io::Error) -> EncryptedError {
    EncryptedError::Io { what, addr, source }
}

fn local(listener: &TcpListener, asked: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(asked)
}

/// A TCP listener; IPv6 addresses are IPv6-only, as the UDP/TCP listeners bind them.
fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    set_v6_only(&socket, addr)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// A UDP socket for QUIC; IPv6 addresses are IPv6-only.
fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    set_v6_only(&socket, addr)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn set_v6_only(socket: &Socket, addr: SocketAddr) -> io::Result<()> {
    match addr {
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_none() => socket.set_only_v6(true),
        _ => Ok(()),
    }
}

/// Resolves when a drain has been asked for; never, if the sender is gone without asking.
pub(crate) async fn drained(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|drain| *drain).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The accept loop DoT and DoH share: a slot per connection (refused at a cap), the TLS
/// handshake within its timeout in the connection's own task, then `serve`. On drain it
/// stops accepting (the listener closes) and returns once every connection has ended.
pub(crate) fn spawn_tls_listener<F, Fut>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handler: Arc<Handler>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) -> JoinHandle<()>
where
    F: Fn(TlsStream<TcpStream>, IpAddr, Arc<Handler>, Limits, watch::Receiver<bool>) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Slots::new(limits.max_connections, limits.max_connections_per_client);
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                () = drained(&mut shutdown) => break,
            };
            while connections.try_join_next().is_some() {}
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "encrypted listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let source = peer.ip().to_canonical();
            let slot: Slot = match slots.take(source) {
                Ok(slot) => slot,
                Err(reason) => {
                    handler.metrics().record_encrypted_refused(reason);
                    tracing::debug!(%peer, reason = reason.as_str(), "encrypted connection refused");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let handler = Arc::clone(&handler);
            let limits = limits.clone();
            let shutdown = shutdown.clone();
            let serve = serve.clone();
            connections.spawn(async move {
                let _slot = slot;
                let tls =
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            handler.metrics().record_handshake_failure();
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                            return;
                        }
                        Err(_) => {
                            handler.metrics().record_handshake_failure();
                            tracing::debug!(%peer, "tls handshake timed out");
                            return;
                        }
                    };
                handler.metrics().record_encrypted_connection();
                serve(tls, source, handler, limits, shutdown).await;
            });
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_take_the_default_port_when_they_have_none() {
        let cases = [
            ("127.0.0.1", "127.0.0.1:853"),
            ("127.0.0.1:8853", "127.0.0.1:8853"),
            ("::1", "[::1]:853"),
            ("[::1]", "[::1]:853"),
            ("[::1]:8853", "[::1]:8853"),
        ];
        for (given, want) in cases {
            assert_eq!(
                parse_listen(given, 853).unwrap().to_string(),
                want,
                "{given}"
            );
        }
        for bad in ["", "ns.example", "127.0.0.1:", "[::1", "1.2.3.4:99999"] {
            assert!(parse_listen(bad, 853).is_err(), "{bad}");
        }
    }
}
