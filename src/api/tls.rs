//! Serving the HTTP API with connection limits, over plain TCP or TLS (rustls).
//!
//! The API faces probers and operators, possibly across the internet, so one client must not
//! be able to starve the others. Every connection holds a slot of `api::limits` (a general
//! pool with a per-client cap and eviction of idle connections, and a reserve for report
//! ingest and `/health`), and a watchdog task per connection enforces its deadlines:
//! - idle (just accepted, or between keep-alive requests): closed after [`API_IDLE_TIMEOUT`];
//! - a request's headers *and* body must be complete [`API_REQUEST_TIMEOUT`] after its first
//!   byte, or the connection is cut (a body dripped a byte at a time cannot hold a slot); the
//!   response must be sent within as long again (a client that does not read is cut too);
//! - a TLS handshake gets [`API_HANDSHAKE_TIMEOUT`]; a connection is closed gracefully after
//!   its request in flight once it is [`API_CONNECTION_LIFETIME`] old;
//! - reserved connections: one request, within [`API_RESERVED_TIMEOUT`].
//!
//! Body sizes are capped per route in `api::router`.
//!
//! Owns: the accept loop, TLS configuration loading, per-connection deadlines and phases (the
//! I/O wrapper and body wrappers that tell `api::limits` when a request starts, is read and is
//! answered). Must never: block the runtime (certificate files are read once at start-up),
//! serve a request without the router's limits, or let a connection outlive its deadlines.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, Response, StatusCode, header};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

pub use crate::tls::{TlsError, load_pem};

use super::Scheme;
use super::limits::{Activity, Admitted, Phase, Pool, SlotTable};

/// Most connections in the general pool (every route); see `api::limits`.
pub const MAX_API_CONNECTIONS: usize = 256;
/// Most general connections one client (an IPv4 address, an IPv6 /64) may hold at once, so
/// that one address can take at most an eighth of the pool.
pub const MAX_API_CONNECTIONS_PER_CLIENT: usize = 32;
/// Extra connections for report ingest and `/health` only, used when the general pool is full
/// of busy connections, by clients that hold no general slot.
pub const API_RESERVED_CONNECTIONS: usize = 32;
/// Most reserved connections one client may hold at once.
pub const API_RESERVED_PER_CLIENT: usize = 2;
/// A reserved connection must deliver its one request (headers and body) this long after its
/// first byte, and send that byte this long after accept (probers send a report at once).
pub const API_RESERVED_TIMEOUT: Duration = Duration::from_secs(3);
/// A request's headers and body must be complete this long after its first byte, and its
/// response sent this long after the handler answered; otherwise the connection is cut.
pub const API_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in flight (fresh, or between keep-alive requests) is closed
/// after this long.
pub const API_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection idle at least this long may be closed for a newcomer when slots run short;
/// younger ones get the time to send their first request.
pub const API_MIN_IDLE_TO_EVICT: Duration = Duration::from_secs(1);
/// Time allowed for a TLS handshake.
pub const API_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed (gracefully, after its request in flight) this long after accept.
pub const API_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// A connection being closed gracefully (lifetime over, or evicted) is cut if its request in
/// flight takes longer than this.
pub const API_CLOSE_GRACE: Duration = Duration::from_secs(10);
/// How often a summary of refused connections is logged at most.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Builds a TLS server configuration (TLS 1.2 and 1.3, ring, HTTP/1.1 via ALPN) from a PEM
/// certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let (certs, key_der) = load_pem(cert, key)?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key_der))
        .map_err(|source| TlsError::Config {
            cert: cert.to_path_buf(),
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` on `listener`, over TLS when `tls` is given, until the process ends.
///
/// When `shutdown` turns true it stops accepting, asks every connection to close after the
/// request it is serving (idle ones close at once), and returns once all have ended; the
/// caller bounds how long that may take.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(SlotTable::new());
    let mut refused = 0u64;
    let mut refused_logged = Instant::now();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reap finished connections so the set does not grow with the server's uptime.
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = drained(&mut shutdown) => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning on the error.
                tracing::warn!(error = %e, "api accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admitted = match slots.admit(peer.ip()) {
            Ok(a) => a,
            Err(reason) => {
                tracing::debug!(%peer, reason = reason.as_str(), "api connection refused");
                super::limits::connection_metrics().record_refused(reason);
                refused += 1;
                if refused_logged.elapsed() >= REFUSAL_LOG_EVERY {
                    tracing::warn!(
                        refused,
                        last_peer = %peer,
                        reason = reason.as_str(),
                        "api connections refused: limits reached"
                    );
                    refused = 0;
                    refused_logged = Instant::now();
                }
                drop(stream);
                continue;
            }
        };
        if admitted.evicted {
            tracing::debug!(%peer, "idle api connection evicted for a newcomer");
            super::limits::connection_metrics().record_evicted();
        }
        let slot = Slot {
            table: Arc::clone(&slots),
            id: admitted.id,
        };
        let router = router.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            serve_admitted(stream, peer, acceptor, router, admitted, shutdown).await;
            drop(slot);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Resolves when a drain has been asked for; never, if the sender is gone without asking.
async fn drained(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|draining| *draining).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A connection's slot, released when the connection's task ends (or unwinds).
struct Slot {
    table: Arc<SlotTable>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.release(self.id);
    }
}

/// The deadlines of one connection, by pool.
#[derive(Clone, Copy)]
struct Deadlines {
    idle: Duration,
    request: Duration,
    handshake: Duration,
    keep_alive: bool,
}

impl Deadlines {
    fn of(pool: Pool) -> Self {
        match pool {
            Pool::General => Deadlines {
                idle: API_IDLE_TIMEOUT,
                request: API_REQUEST_TIMEOUT,
                handshake: API_HANDSHAKE_TIMEOUT,
                keep_alive: true,
            },
            Pool::Reserved => Deadlines {
                idle: API_RESERVED_TIMEOUT,
                request: API_RESERVED_TIMEOUT,
                handshake: API_HANDSHAKE_TIMEOUT.min(API_RESERVED_TIMEOUT),
                keep_alive: false,
            },
        }
    }
}

async fn serve_admitted(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    router: Router,
    admitted: Admitted,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = admitted.activity;
    let deadlines = Deadlines::of(admitted.pool);
    let service = ConnService {
        router: TowerToHyperService::new(router),
        activity: Arc::clone(&activity),
        scheme: Scheme::Http,
        reserved: admitted.pool == Pool::Reserved,
    };
    // Below TLS, so that handshake bytes count too: an idle-looking connection that is in
    // the middle of a handshake is not evicted.
    let io = Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    };
    let Some(acceptor) = acceptor else {
        return serve_http(io, service, &activity, deadlines, peer, shutdown).await;
    };
    let handshake = tokio::time::timeout(deadlines.handshake, acceptor.accept(io));
    tokio::pin!(handshake);
    let tls = loop {
        tokio::select! {
            r = &mut handshake => match r {
                Ok(Ok(tls)) => break tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "api tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "api tls handshake timed out");
                    return;
                }
            },
            () = activity.changed() => {
                if activity.phase().0 == Phase::Evicted {
                    return;
                }
            }
        }
    };
    // The handshake is not a request: idle until the first request byte.
    activity.finish_request();
    let service = ConnService {
        scheme: Scheme::Https,
        ..service
    };
    serve_http(tls, service, &activity, deadlines, peer, shutdown).await;
}

/// What the watchdog does when a deadline passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnDeadline {
    /// Stop taking requests; finish the one in flight (an idle connection closes at once).
    Close,
    /// Drop the connection now.
    Cut,
}

/// Serves HTTP/1.1 on `io` until the client leaves or a deadline of `activity`'s phase passes.
async fn serve_http<S>(
    io: S,
    service: ConnService,
    activity: &Activity,
    deadlines: Deadlines,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper's own header timer would start when a connection goes idle, not at a request's
    // first byte, and would not cover the body: the watchdog below owns every deadline.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(deadlines.keep_alive);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let lifetime_end = tokio::time::Instant::now() + API_CONNECTION_LIFETIME;
    let mut closing_since: Option<tokio::time::Instant> = None;
    loop {
        let (phase, since) = activity.phase();
        let since = tokio::time::Instant::from_std(since);
        let (mut deadline, mut action) = match phase {
            Phase::Idle => (
                (since + deadlines.idle).min(lifetime_end),
                OnDeadline::Close,
            ),
            Phase::Reading => (since + deadlines.request, OnDeadline::Cut),
            Phase::Handling => (lifetime_end, OnDeadline::Close),
            Phase::Writing => (since + deadlines.request, OnDeadline::Cut),
            Phase::Evicted => (since, OnDeadline::Close),
        };
        if let Some(closing) = closing_since {
            // Closing already: only the grace bound is left.
            (deadline, action) = match action {
                OnDeadline::Cut => (deadline.min(closing + API_CLOSE_GRACE), OnDeadline::Cut),
                OnDeadline::Close => (closing + API_CLOSE_GRACE, OnDeadline::Cut),
            };
        }
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "api connection ended");
                }
                return;
            }
            () = activity.changed() => {}
            () = drained(&mut shutdown), if closing_since.is_none() => {
                // Draining: finish the request in flight, take no more.
                conn.as_mut().graceful_shutdown();
                closing_since = Some(tokio::time::Instant::now());
            }
            () = tokio::time::sleep_until(deadline) => {
                // The phase may have moved just now; act only on the one the deadline is for.
                let (now_phase, now_since) = activity.phase();
                if now_phase != phase || tokio::time::Instant::from_std(now_since) != since {
                    continue;
                }
                match action {
                    OnDeadline::Cut => {
                        tracing::debug!(%peer, phase = ?phase, "api connection cut: deadline passed");
                        return;
                    }
                    OnDeadline::Close => {
                        conn.as_mut().graceful_shutdown();
                        closing_since = Some(tokio::time::Instant::now());
                    }
                }
            }
        }
    }
}

/// The routes a reserved connection may use.
fn reserved_route<B>(req: &Request<B>) -> bool {
    match req.uri().path() {
        "/v1/reports" => req.method() == Method::POST,
        "/health" => matches!(*req.method(), Method::GET | Method::HEAD),
        _ => false,
    }
}

/// The router for one connection, telling `activity` when each request starts, is read and
/// is answered, and marking how the request came in ([`Scheme`]).
#[derive(Clone)]
struct ConnService {
    router: TowerToHyperService<Router>,
    activity: Arc<Activity>,
    scheme: Scheme,
    reserved: bool,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        // A pipelined request read along with the previous one starts here, not at a byte.
        self.activity.begin_request();
        if req.body().is_end_stream() {
            self.activity.request_read();
        }
        let answered = Arc::clone(&self.activity);
        if self.reserved && !reserved_route(&req) {
            let busy = (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "api busy: every connection slot is taken; only /v1/reports and /health are \
                 served now\n",
            );
            let response = axum::response::IntoResponse::into_response(busy);
            return Box::pin(std::future::ready(Ok(track_response(response, answered))));
        }
        let read = Arc::clone(&self.activity);
        let mut req = req.map(|inner| {
            Body::new(RequestBody {
                inner,
                activity: read,
            })
        });
        req.extensions_mut().insert(self.scheme);
        let call = hyper::service::Service::call(&self.router, req);
        Box::pin(async move {
            let response = call.await?;
            Ok(track_response(response, answered))
        })
    }
}

fn track_response(response: Response<Body>, activity: Arc<Activity>) -> Response<Body> {
    activity.response_ready();
    response.map(|inner| Body::new(ResponseBody { inner, activity }))
}

/// A request body that tells its connection when the last byte arrived.
struct RequestBody {
    inner: Incoming,
    activity: Arc<Activity>,
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.activity.request_read();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that tells its connection, when hyper is done with it (sent or dropped),
/// that the connection is idle again.
struct ResponseBody {
    inner: Body,
    activity: Arc<Activity>,
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.activity.finish_request();
    }
}

/// The connection's socket, telling its [`Activity`] when bytes arrive: the first byte of a
/// request starts its deadline.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.begin_request();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
