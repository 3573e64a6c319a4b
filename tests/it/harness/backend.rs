//! A programmable HTTP backend on a loopback address: the test sets what `GET` answers
//! (status, body, delay) while it runs, and reads back the bodies `POST`ed to it (a webhook
//! receiver). It counts the `GET`s it answered and the most it answered at once (probe load:
//! shared checks, the concurrency cap). Application checks, load shedding and webhooks are
//! tested against it.
//!
//! Owns: its own small Tokio runtime (stopped on drop). Must never: listen anywhere but
//! 127.0.0.x.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode};

/// What `GET` (any path) answers.
#[derive(Clone, Debug)]
pub struct BackendReply {
    /// HTTP status.
    pub status: u16,
    /// Body, sent as `application/json`.
    pub body: String,
    /// Wait this long before answering.
    pub delay: Duration,
}

#[derive(Default)]
struct Shared {
    reply: Mutex<Option<BackendReply>>,
    posts: Mutex<Vec<String>>,
    gets: AtomicUsize,
    active: AtomicUsize,
    peak: AtomicUsize,
}

/// A running backend; stops on drop.
pub struct AppBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _rt: tokio::runtime::Runtime,
}

impl AppBackend {
    /// Listens on `ip` (a 127.0.0.x address), port chosen by the kernel; answers `200 {}`
    /// until told otherwise.
    pub fn start(ip: Ipv4Addr) -> AppBackend {
        assert!(ip.is_loopback(), "{ip} is not a loopback address");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Shared::default());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind((ip, 0)))
            .unwrap_or_else(|e| panic!("bind {ip}: {e}"));
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        rt.spawn(axum::serve(listener, app).into_future());
        let b = AppBackend {
            addr,
            shared,
            _rt: rt,
        };
        b.set(200, "{}", Duration::ZERO);
        b
    }

    /// What `GET` answers from now on.
    pub fn set(&self, status: u16, body: &str, delay: Duration) {
        *self.shared.reply.lock().unwrap() = Some(BackendReply {
            status,
            body: body.to_owned(),
            delay,
        });
    }

    /// `GET`s received so far (counted when they arrive).
    pub fn gets(&self) -> usize {
        self.shared.gets.load(Ordering::SeqCst)
    }

    /// The most `GET`s it was answering at one time so far.
    pub fn peak_concurrency(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// Every body `POST`ed so far, oldest first.
    pub fn posts(&self) -> Vec<String> {
        self.shared.posts.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) for a posted body that `want` accepts, as JSON.
    pub fn wait_post(
        &self,
        limit: Duration,
        what: &str,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let found = self
                .posts()
                .iter()
                .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok())
                .find(|v| want(v));
            if let Some(v) = found {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no POST within {limit:?} where {what}; got {:?}",
                self.posts()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let json = [("content-type", "application/json")];
    if method == Method::POST {
        shared
            .posts
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&body).into_owned());
        return (StatusCode::OK, json, String::new());
    }
    shared.gets.fetch_add(1, Ordering::SeqCst);
    let now = shared.active.fetch_add(1, Ordering::SeqCst) + 1;
    shared.peak.fetch_max(now, Ordering::SeqCst);
    // Also when the client gives up mid-delay and the handler is dropped.
    let _active = Active(&shared.active);
    let reply = shared.reply.lock().unwrap().clone();
    let Some(reply) = reply else {
        return (StatusCode::NOT_FOUND, json, String::new());
    };
    tokio::time::sleep(reply.delay).await;
    (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        json,
        reply.body,
    )
}

/// One `GET` being answered; counts itself out when dropped.
struct Active<'a>(&'a AtomicUsize);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
