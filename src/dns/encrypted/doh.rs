//! DNS over HTTPS (RFC 8484): HTTP/2 or HTTP/1.1 over TLS (chosen by ALPN), one path,
//! [`DOH_PATH`].
//!
//! - `GET /dns-query?dns=BASE64URL` (RFC 8484 §4.1, padding tolerated) and `POST /dns-query`
//!   with `Content-Type: application/dns-message` (§4.1) carry the query; the answer is
//!   `200` with `application/dns-message` and `Cache-Control: max-age=` the smallest TTL of
//!   the answer and authority records (§5.1).
//! - A missing or malformed `dns` parameter, or a message the handler will not answer (too
//!   short, or a response), is `400 Bad Request`; another content type `415`, a body over
//!   65,535 bytes `413`, another path `404`, another method `405`.
//!
//! The client's address for GeoIP and ECS defaults is the connection's source (never a
//! forwarded header: nothing here sits behind a trusted proxy).
//!
//! Owns: request decoding and response headers, the idle watchdog of a connection. Must
//! never: answer a query except through the handler.

use std::convert::Infallible;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::{Limits, drained, spawn_tls_listener};
use crate::dns::handler::{Handler, MAX_TCP_MESSAGE};
use crate::dns::metrics::Transport;

/// The one path DoH answers on (RFC 8484 §4.1's example, what clients default to).
pub const DOH_PATH: &str = "/dns-query";
/// The media type of DNS messages (RFC 8484 §6).
pub const DNS_MESSAGE: &str = "application/dns-message";
/// Streams one HTTP/2 connection may have open at once.
const MAX_STREAMS: u32 = 100;
/// How long a drained connection may take to finish its requests in flight.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves DoH on `listener` until a drain; see [`super::spawn_tls_listener`].
pub fn spawn(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handler: Arc<Handler>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    spawn_tls_listener(
        listener,
        acceptor,
        handler,
        limits,
        shutdown,
        |stream, source, handler, limits, mut shutdown| async move {
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let activity = Arc::new(Activity::new());
            let io = TokioIo::new(Watched {
                inner: stream,
                activity: Arc::clone(&activity),
            });
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handler = Arc::clone(&handler);
                async move { Ok::<_, Infallible>(respond(&handler, source, req).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.idle_timeout);
            builder.http2().max_concurrent_streams(MAX_STREAMS);
            let builder = if h2 {
                builder.http2_only()
            } else {
                builder.http1_only()
            };
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%source, error = %e, "doh connection ended");
                    }
                    return;
                }
                () = activity.idle_for(limits.idle_timeout) => {}
                () = drained(&mut shutdown) => {}
            }
            // Idle or draining: finish what is in flight (GOAWAY on HTTP/2), then close.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
        },
    )
}

/// Answers one HTTP request.
async fn respond(handler: &Handler, source: IpAddr, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() != DOH_PATH {
        return error(
            StatusCode::NOT_FOUND,
            "not found: DNS queries go to /dns-query",
        );
    }
    let query = match *req.method() {
        Method::GET => match dns_param(req.uri().query().unwrap_or("")) {
            Ok(q) => q,
            Err(why) => return error(StatusCode::BAD_REQUEST, why),
        },
        Method::POST => {
            let content_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(str::trim);
            if !content_type.is_some_and(|t| t.eq_ignore_ascii_case(DNS_MESSAGE)) {
                return error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "the body must be application/dns-message",
                );
            }
            match axum::body::to_bytes(Body::new(req.into_body()), MAX_TCP_MESSAGE).await {
                Ok(b) => b.to_vec(),
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "a DNS message is at most 65535 bytes",
                    );
                }
            }
        }
        _ => {
            let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            return r;
        }
    };
    answer(handler, source, &query)
}

/// The handler's answer to `query` as an HTTP response.
fn answer(handler: &Handler, source: IpAddr, query: &[u8]) -> Response<Body> {
    let mut out = Vec::new();
    if !handler.handle(query, source, Transport::Tcp, &mut out) {
        return error(StatusCode::BAD_REQUEST, "not a DNS query");
    }
    let ttl = min_ttl(&out);
    let mut response = Response::new(Body::from(out));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
    if let Some(ttl) = ttl {
        if let Ok(v) = HeaderValue::from_str(&format!("max-age={ttl}")) {
            headers.insert(header::CACHE_CONTROL, v);
        }
    }
    response
}

fn error(status: StatusCode, why: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("{why}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The DNS message in a GET query string's `dns` parameter (base64url, RFC 8484 §6).
fn dns_param(query: &str) -> Result<Vec<u8>, &'static str> {
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("dns="))
        .ok_or("the dns parameter is missing")?;
    // RFC 8484 §6: no padding; tolerated anyway (some clients send it, percent-encoded too).
    let value = value.trim_end_matches('=').trim_end_matches("%3D");
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(value.as_bytes())
        .map_err(|_| "the dns parameter is not base64url")?;
    if bytes.len() > MAX_TCP_MESSAGE {
        return Err("a DNS message is at most 65535 bytes");
    }
    Ok(bytes)
}

/// The smallest TTL of the answer and authority records of a response (`None` when it has
/// none, or does not parse): the freshness lifetime of RFC 8484 §5.1.
fn min_ttl(msg: &[u8]) -> Option<u32> {
    let count = |i: usize| Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]));
    let (qd, an, ns) = (count(4)?, count(6)?, count(8)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut min: Option<u32> = None;
    for _ in 0..(u32::from(an) + u32::from(ns)) {
        pos = skip_name(msg, pos)?;
        let fixed = msg.get(pos..pos + 10)?;
        let ttl = u32::from_be_bytes([
            *fixed.get(4)?,
            *fixed.get(5)?,
            *fixed.get(6)?,
            *fixed.get(7)?,
        ]);
        let rdlen = usize::from(u16::from_be_bytes([*fixed.get(8)?, *fixed.get(9)?]));
        min = Some(min.map_or(ttl, |m| m.min(ttl)));
        pos += 10 + rdlen;
    }
    min
}

/// The position after the (possibly compressed) name at `pos`.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xC0 == 0xC0 => return Some(pos + 2),
            l if l & 0xC0 == 0 => pos += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// When a connection last moved a byte, in milliseconds since `epoch`.
struct Activity {
    epoch: Instant,
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// Resolves once no byte has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let quiet = self.epoch.elapsed().saturating_sub(last);
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(limit - quiet).await;
        }
    }
}

/// The TLS stream, recording activity on every read and write.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_param_decodes_base64url_and_rejects_the_rest() {
        // RFC 8484 §4.1.1's example query for www.example.com A.
        let q = "dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB";
        let bytes = dns_param(q).unwrap();
        assert_eq!(bytes.len(), 33);
        assert_eq!(dns_param(&format!("x=1&{q}")).unwrap(), bytes);
        assert_eq!(dns_param(&format!("{q}=")).unwrap(), bytes);
        assert!(dns_param("").is_err());
        assert!(dns_param("dns=***").is_err());
        assert!(
            dns_param("dns=AAAB+AAB").is_err(),
            "standard base64 is not base64url"
        );
        assert!(dns_param("dn=AAAB").is_err());
    }

    #[test]
    fn min_ttl_reads_answer_and_authority() {
        // Header: 1 question, 2 answers (TTL 300, 60), 0 authority.
        let mut m = vec![0, 1, 0x84, 0, 0, 1, 0, 2, 0, 0, 0, 0];
        m.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        for ttl in [300u32, 60] {
            m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
        }
        assert_eq!(min_ttl(&m), Some(60));
        // No records: no freshness lifetime; truncated: none either.
        assert_eq!(min_ttl(&m[..12]), None);
        assert_eq!(min_ttl(&m[..30]), None);
    }
}
