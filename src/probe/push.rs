//! Delivering signed reports to every nameserver.
//!
//! Owns: [`SignedReport`] (body + signature, made once per report), [`send`] (one report to one
//! URL with retries and backoff) and [`Pusher`] (one worker per nameserver URL, latest report
//! wins).
//!
//! Never: builds reports (the runner does) or lets one slow or dead nameserver delay delivery
//! to the others: every URL has its own worker and its own retries.
//!
//! Retries cover connect errors, timeouts, 429 and 5xx. Other 4xx answers mean the nameserver
//! looked at the report and refused it; sending the same bytes again cannot help. A 409
//! (replay) answering a *retry* means an earlier attempt got through and only its answer was
//! lost, so it counts as delivered. A worker abandons a report as soon as a newer one is
//! published: a nameserver only wants the latest snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::health::report::{KEY_ID_HEADER, Key, ProbeReport, SIGNATURE_HEADER, sign};

/// Default limit for one POST.
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Default attempts per report and URL, the first one included.
pub const DEFAULT_PUSH_ATTEMPTS: u32 = 4;
/// Default wait before the first retry; doubles per retry up to [`DEFAULT_MAX_BACKOFF`].
pub const DEFAULT_FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Default longest wait between retries.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How hard to try delivering one report to one URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushPolicy {
    /// Limit for one POST.
    pub timeout: Duration,
    /// Attempts, the first one included (at least one is made).
    pub attempts: u32,
    /// Wait before the first retry.
    pub first_backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
}

impl Default for PushPolicy {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_PUSH_TIMEOUT,
            attempts: DEFAULT_PUSH_ATTEMPTS,
            first_backoff: DEFAULT_FIRST_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl PushPolicy {
    /// The wait before retry number `retry` (1-based): doubling, capped, with up to 25 %
    /// random jitter taken off so probers that failed together do not retry together.
    fn backoff(&self, retry: u32) -> Duration {
        let base = self
            .first_backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let jitter = rand::random_range(0.0..0.25);
        base.mul_f64(1.0 - jitter)
    }
}

/// Reports at least this long go out gzipped (`Content-Encoding: gzip`). Smaller ones, as
/// every prober of a few hundred endpoints sends, go as they are, which any nameserver takes.
pub const GZIP_FROM_BYTES: usize = 64 * 1024;

/// A report serialised and signed once, ready for any number of URLs.
#[derive(Clone, Debug)]
pub struct SignedReport {
    /// Shared bytes: every URL's worker sends the same body without copying it.
    body: axum::body::Bytes,
    /// The body gzipped, for a body of at least [`GZIP_FROM_BYTES`]: a report takes 130-200
    /// bytes of JSON per endpoint, so a prober of 10,000 endpoints would send each
    /// nameserver about 1.5 MB a second, across regions; gzipped, about a seventh.
    gzipped: Option<axum::body::Bytes>,
    key_id: String,
    signature: String,
    sequence: u64,
}

impl SignedReport {
    /// Serialises and signs a report (the signature covers the JSON, however it is sent).
    pub fn new(report: &ProbeReport, key: &Key) -> Result<Self, serde_json::Error> {
        let body = report.to_body()?;
        Ok(Self {
            signature: sign(&body, key),
            gzipped: (body.len() >= GZIP_FROM_BYTES).then(|| gzip(&body).into()),
            body: body.into(),
            key_id: key.id().to_owned(),
            sequence: report.sequence,
        })
    }

    /// The report's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The signed JSON body (what etcd's vote key stores, `etcd::votes`).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The signing key's id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The hex HMAC of the body.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// The body gzipped: the copy made for sending when the body is big, else made now (a
    /// small body, cheap to compress). What etcd's vote key stores (`etcd::votes`), so a
    /// prober publishing to both compresses a big report once.
    pub fn gzipped_body(&self) -> std::borrow::Cow<'_, [u8]> {
        match &self.gzipped {
            Some(gzipped) => std::borrow::Cow::Borrowed(gzipped),
            None => std::borrow::Cow::Owned(gzip(&self.body)),
        }
    }
}

/// `body` gzipped at the fastest level: a report is sent every interval, and its repeated
/// names and field labels compress well even so.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = z.write_all(body);
    z.finish().unwrap_or_default()
}

/// What became of one report at one URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// A 2xx answer (or a 409 to a retry).
    Delivered {
        /// Attempts used.
        attempts: u32,
    },
    /// A 4xx answer other than 429: the nameserver refused the report.
    Rejected {
        /// The status.
        status: u16,
        /// Attempts used.
        attempts: u32,
    },
    /// Every attempt failed; the last error.
    Failed {
        /// Attempts used.
        attempts: u32,
        /// The last error, short.
        error: String,
    },
    /// A newer report was published before this one got through.
    Superseded,
}

/// POSTs one report to one URL, retrying per `policy`. When `newer` is given, waiting for a
/// retry stops as soon as it changes, giving [`PushOutcome::Superseded`].
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    report: &SignedReport,
    policy: &PushPolicy,
    mut newer: Option<&mut watch::Receiver<Option<SignedReport>>>,
) -> PushOutcome {
    let attempts = policy.attempts.max(1);
    let mut last_error = String::new();
    for attempt in 1..=attempts {
        if attempt > 1 {
            let wait = tokio::time::sleep(policy.backoff(attempt - 1));
            match newer.as_deref_mut() {
                Some(rx) => {
                    tokio::select! {
                        () = wait => {}
                        _ = rx.changed() => return PushOutcome::Superseded,
                    }
                }
                None => wait.await,
            }
        }
        let mut request = client
            .post(url)
            .timeout(policy.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(KEY_ID_HEADER, &report.key_id)
            .header(SIGNATURE_HEADER, &report.signature);
        request = match &report.gzipped {
            Some(gzipped) => request
                .header(reqwest::header::CONTENT_ENCODING, "gzip")
                .body(gzipped.clone()),
            None => request.body(report.body.clone()),
        };
        let sent = request.send().await;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() || (status == StatusCode::CONFLICT && attempt > 1) {
                    return PushOutcome::Delivered { attempts: attempt };
                }
                if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
                    return PushOutcome::Rejected {
                        status: status.as_u16(),
                        attempts: attempt,
                    };
                }
                last_error = format!("status {}", status.as_u16());
            }
            Err(e) if e.is_timeout() => last_error = "timeout".to_owned(),
            Err(e) if e.is_connect() => last_error = "connect failed".to_owned(),
            Err(e) => last_error = e.to_string(),
        }
    }
    PushOutcome::Failed {
        attempts,
        error: last_error,
    }
}

/// Delivery counters and the latest outcome of one URL.
#[derive(Debug, Default)]
pub struct UrlStats {
    delivered: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    last: Mutex<Option<PushOutcome>>,
}

impl UrlStats {
    /// Reports delivered.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Reports refused with a 4xx.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Reports given up on after every attempt failed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The latest outcome.
    pub fn last(&self) -> Option<PushOutcome> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn record(&self, outcome: PushOutcome) {
        let counter = match &outcome {
            PushOutcome::Delivered { .. } => Some(&self.delivered),
            PushOutcome::Rejected { .. } => Some(&self.rejected),
            PushOutcome::Failed { .. } => Some(&self.failed),
            PushOutcome::Superseded => None,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(outcome);
    }
}

/// Why a [`Pusher`] cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The HTTP client cannot be built.
    #[error("report client: {0}")]
    Client(#[from] reqwest::Error),
    /// TLS setup for HTTPS nameserver URLs failed.
    #[error("report client: {0}")]
    Tls(#[from] super::check::CheckError),
    /// A report cannot be serialised.
    #[error("report encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One worker per nameserver URL, each delivering the latest published report.
#[derive(Debug)]
pub struct Pusher {
    key: Key,
    tx: watch::Sender<Option<SignedReport>>,
    urls: Vec<(String, Arc<UrlStats>)>,
    workers: Vec<JoinHandle<()>>,
}

impl Pusher {
    /// Starts the workers; HTTPS URLs are verified against the system roots. Must be called
    /// inside a Tokio runtime.
    pub fn start(urls: Vec<String>, key: Key, policy: PushPolicy) -> Result<Self, PushError> {
        let spec = super::check::CheckSpec::new(super::check::CheckKind::Https, 443);
        let tls = super::check::tls_config(&spec)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("meridian-probe/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        let (tx, _) = watch::channel(None::<SignedReport>);
        let mut out = Vec::new();
        let mut workers = Vec::new();
        for url in urls {
            let stats = Arc::new(UrlStats::default());
            let mut rx = tx.subscribe();
            let (client, u, s) = (client.clone(), url.clone(), stats.clone());
            workers.push(tokio::spawn(async move {
                // After a superseded send the newer report is already marked seen (by
                // `changed()` inside `send`), so it is taken without waiting again.
                let mut superseded = false;
                loop {
                    if !superseded && rx.changed().await.is_err() {
                        break;
                    }
                    let Some(report) = rx.borrow_and_update().clone() else {
                        superseded = false;
                        continue;
                    };
                    let outcome = send(&client, &u, &report, &policy, Some(&mut rx)).await;
                    superseded = outcome == PushOutcome::Superseded;
                    s.record(outcome);
                }
            }));
            out.push((url, stats));
        }
        Ok(Self {
            key,
            tx,
            urls: out,
            workers,
        })
    }

    /// Signs a report and hands it to every URL's worker, replacing any undelivered one.
    pub fn publish(&self, report: &ProbeReport) -> Result<(), PushError> {
        self.publish_signed(SignedReport::new(report, &self.key)?);
        Ok(())
    }

    /// Hands a report already signed (by this prober's key) to every URL's worker: a prober
    /// that also writes its votes to etcd signs and compresses each report once.
    pub fn publish_signed(&self, signed: SignedReport) {
        self.tx.send_replace(Some(signed));
    }

    /// Delivery statistics per URL, in the order given to [`Pusher::start`].
    pub fn stats(&self) -> impl Iterator<Item = (&str, &UrlStats)> {
        self.urls.iter().map(|(u, s)| (u.as_str(), s.as_ref()))
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        for w in &self.workers {
            w.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::report::{Keyring, ProberId, verify};
    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::routing::post;
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicU32;
    use std::time::SystemTime;
    use tokio::net::TcpListener;

    fn key() -> Key {
        Key::new("k1", ProberId::new("p1"), &[7u8; 32]).unwrap()
    }

    fn report(seq: u64) -> ProbeReport {
        ProbeReport {
            prober_id: ProberId::new("p1"),
            region: "eu".into(),
            boot_id: "b".into(),
            sequence: seq,
            sent_at_ms: crate::health::report::unix_ms(SystemTime::now()),
            interval_ms: 1000,
            config_digest: "d".into(),
            endpoints: BTreeMap::new(),
        }
    }

    /// A receiver that answers `script[n]` to the n-th request (then the last entry forever)
    /// and verifies every body it accepts with the real `verify`.
    /// A request's `Content-Encoding` and its body's length on the wire.
    type Wire = (Option<String>, usize);

    #[derive(Clone)]
    struct Receiver {
        script: Arc<Vec<u16>>,
        hits: Arc<AtomicU32>,
        verified: Arc<Mutex<Vec<u64>>>,
        /// Per request: its `Content-Encoding` and the bytes on the wire.
        wire: Arc<Mutex<Vec<Wire>>>,
    }

    async fn receiver(script: &[u16]) -> (String, Receiver) {
        let state = Receiver {
            script: Arc::new(script.to_vec()),
            hits: Arc::default(),
            verified: Arc::default(),
            wire: Arc::default(),
        };
        async fn handle(
            State(r): State<Receiver>,
            headers: HeaderMap,
            body: Bytes,
        ) -> axum::http::StatusCode {
            let n = r.hits.fetch_add(1, Ordering::SeqCst) as usize;
            let code = *r.script.get(n).or(r.script.last()).unwrap();
            let encoding = headers
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_owned());
            r.wire.lock().unwrap().push((encoding, body.len()));
            if code == 200 {
                // As the nameserver's ingest does.
                let body = crate::health::report::decoded_body(&headers, &body).unwrap();
                let ring = Keyring::from_keys([key()]).unwrap();
                let rep = verify(&headers, &body, &ring, SystemTime::now()).unwrap();
                r.verified.lock().unwrap().push(rep.sequence);
            }
            axum::http::StatusCode::from_u16(code).unwrap()
        }
        let app = Router::new()
            .route("/v1/reports", post(handle))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(axum::serve(listener, app).into_future());
        (format!("http://{addr}/v1/reports"), state)
    }

    fn fast() -> PushPolicy {
        PushPolicy {
            timeout: Duration::from_secs(2),
            attempts: 3,
            first_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        }
    }

    #[tokio::test]
    async fn big_reports_go_gzipped_and_verify_small_ones_go_plain() {
        let (url, rx) = receiver(&[200]).await;
        let client = client();
        let small = SignedReport::new(&report(1), &key()).unwrap();
        let big = crate::health::report::many_endpoints("p1", 2, 2_000);
        let big = SignedReport::new(&big, &key()).unwrap();
        assert!(small.body().len() < GZIP_FROM_BYTES);
        assert!(big.body().len() >= GZIP_FROM_BYTES, "{}", big.body().len());
        for signed in [&small, &big] {
            let outcome = send(&client, &url, signed, &fast(), None).await;
            assert_eq!(outcome, PushOutcome::Delivered { attempts: 1 });
        }
        assert_eq!(*rx.verified.lock().unwrap(), [1, 2]);
        let wire = rx.wire.lock().unwrap().clone();
        assert_eq!(wire[0], (None, small.body().len()));
        assert_eq!(wire[1].0.as_deref(), Some("gzip"));
        assert!(
            wire[1].1 * 4 < big.body().len(),
            "{} bytes gzipped from {}",
            wire[1].1,
            big.body().len()
        );
    }

    /// A client as the pusher builds one (its TLS set up, no default provider needed).
    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(
                super::super::check::tls_config(&super::super::check::CheckSpec::new(
                    super::super::check::CheckKind::Https,
                    443,
                ))
                .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn send_retries_and_classifies() {
        let client = client();
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            format!("http://{}/v1/reports", l.local_addr().unwrap())
        };
        let signed = SignedReport::new(&report(1), &key()).unwrap();
        let cases: Vec<(&str, &[u16], PushOutcome, u32)> = vec![
            (
                "first try",
                &[200],
                PushOutcome::Delivered { attempts: 1 },
                1,
            ),
            (
                "503 then ok",
                &[503, 503, 200],
                PushOutcome::Delivered { attempts: 3 },
                3,
            ),
            (
                "429 is retried",
                &[429, 200],
                PushOutcome::Delivered { attempts: 2 },
                2,
            ),
            (
                "401 not retried",
                &[401],
                PushOutcome::Rejected {
                    status: 401,
                    attempts: 1,
                },
                1,
            ),
            (
                "409 on first try is a rejection",
                &[409],
                PushOutcome::Rejected {
                    status: 409,
                    attempts: 1,
                },
                1,
            ),
            (
                "409 on a retry means delivered",
                &[502, 409],
                PushOutcome::Delivered { attempts: 2 },
                2,
            ),
            (
                "gives up",
                &[500],
                PushOutcome::Failed {
                    attempts: 3,
                    error: "status 500".into(),
                },
                3,
            ),
        ];
        for (name, script, want, hits) in cases {
            let (url, rx) = receiver(script).await;
            let got = send(&client, &url, &signed, &fast(), None).await;
            assert_eq!(got, want, "{name}");
            assert_eq!(rx.hits.load(Ordering::SeqCst), hits, "{name}");
        }
        let got = send(&client, &closed, &signed, &fast(), None).await;
        assert_eq!(
            got,
            PushOutcome::Failed {
                attempts: 3,
                error: "connect failed".into()
            }
        );
    }

    #[tokio::test]
    async fn pusher_delivers_to_every_url_independently() {
        let (ok_url, ok) = receiver(&[200]).await;
        let (flaky_url, flaky) = receiver(&[503, 200]).await;
        let (bad_url, _bad) = receiver(&[403]).await;
        let pusher = Pusher::start(vec![ok_url, flaky_url, bad_url], key(), fast()).unwrap();
        pusher.publish(&report(1)).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let done: Vec<u64> = pusher
                .stats()
                .map(|(_, s)| s.delivered() + s.rejected() + s.failed())
                .collect();
            if done == [1, 1, 1] {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "stuck: {done:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stats: Vec<_> = pusher.stats().map(|(_, s)| s.last().unwrap()).collect();
        assert_eq!(
            stats,
            [
                PushOutcome::Delivered { attempts: 1 },
                PushOutcome::Delivered { attempts: 2 },
                PushOutcome::Rejected {
                    status: 403,
                    attempts: 1
                },
            ]
        );
        assert_eq!(*ok.verified.lock().unwrap(), [1]);
        assert_eq!(*flaky.verified.lock().unwrap(), [1]);
    }

    #[tokio::test]
    async fn newer_report_supersedes_a_retrying_one() {
        let (url, rx) = receiver(&[503, 503, 503, 200]).await;
        let slow = PushPolicy {
            attempts: 10,
            first_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
            ..fast()
        };
        let pusher = Pusher::start(vec![url], key(), slow).unwrap();
        pusher.publish(&report(1)).unwrap();
        // Wait until the first attempt failed and the worker is in its 30 s backoff.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while rx.hits.load(Ordering::SeqCst) < 1 {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        pusher.publish(&report(2)).unwrap();
        // Report 2 is sent at once (no 30 s wait): 503 twice more, then it waits again;
        // what matters is that report 1 was abandoned and report 2 attempted right away.
        while rx.hits.load(Ordering::SeqCst) < 2 {
            assert!(tokio::time::Instant::now() < deadline, "report 2 not sent");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (_, stats) = pusher.stats().next().unwrap();
        assert_eq!(stats.last(), Some(PushOutcome::Superseded));
    }
}
