//! Health over etcd: each prober keeps one key, `votes/<prober-id>`, holding its latest
//! signed report, attached to a lease whose TTL is the report's freshness window
//! (`FRESH_INTERVALS` report intervals). The key is rewritten with every report (each one has
//! a new sequence number and time, which nameservers check against replay and clock skew)
//! and the lease is kept alive in between; when a prober dies its lease expires and its
//! votes vanish, which is exactly "stale = unknown". Nameservers read and watch `votes/` and
//! feed every report to the same health book as HTTP push, signature checked: etcd's roles
//! limit who may write a key, the HMAC proves which prober wrote it.
//!
//! The stored value is compact ([`encode`]): a format line, the key id, the signature and the
//! report body gzipped, the same gzip HTTP push sends ([`SignedReport::gzipped_body`]). A
//! report takes 130-200 bytes of JSON per endpoint, and etcd refuses a put over
//! `--max-request-bytes` (1.5 MiB by default): the signed report in a JSON object stopped
//! fitting at 8,000-10,000 endpoints; gzipped (about a seventh), 10,000 take about 210 KB.
//! Values in that JSON form, written by older probers, are still read.
//!
//! Owns: the stored vote format, [`VotePublisher`] (prober side) and [`intake`] (nameserver
//! side). Never: decides health (the hub does), or trusts a stored vote without verifying it.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::client::{Client, EtcdError, WatchMessage};
use super::metrics::{EtcdStatus, VoteOutcome};
use super::{Backoff, Layout};
use crate::health::aggregate::FRESH_INTERVALS;
use crate::health::hub::HealthHub;
use crate::health::report::{
    Inflate, KEY_ID_HEADER, MAX_REPORT_BYTES, RejectReason, SIGNATURE_HEADER, inflate_report,
};
use crate::probe::push::SignedReport;

/// etcd refuses shorter leases (its minimum TTL with default election settings).
pub const MIN_LEASE_TTL: i64 = 2;

/// The first line of a stored vote in the compact format.
const FORMAT_LINE: &[u8] = b"meridian-vote/2\n";

/// A vote key's value: the format line, the key id and the signature each on a line, then
/// the report body `gzipped`. Header values hold no line breaks ([`StoredVote::headers`]
/// refuses them), so the lines cannot be confused.
pub fn encode(key_id: &str, signature: &str, gzipped: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FORMAT_LINE.len() + key_id.len() + signature.len() + 2);
    out.extend_from_slice(FORMAT_LINE);
    for field in [key_id, signature] {
        out.extend_from_slice(field.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(gzipped);
    out
}

/// Why a stored value is not a vote.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VoteFormatError {
    /// Neither the compact format nor a JSON vote.
    #[error("not a stored vote")]
    Format,
    /// The gzipped body does not inflate.
    #[error("the report body does not inflate")]
    Inflate,
    /// The body inflates to more than a report may be.
    #[error("the report body inflates to more than {MAX_REPORT_BYTES} bytes")]
    TooLarge,
}

/// A vote key's value: the signed report exactly as it would be POSTed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredVote {
    /// The signing key's id ([`KEY_ID_HEADER`]).
    pub key_id: String,
    /// Hex HMAC of `body` ([`SIGNATURE_HEADER`]).
    pub signature: String,
    /// The report's JSON, byte for byte as signed.
    pub body: String,
}

impl StoredVote {
    /// From a signed report.
    pub fn from_signed(signed: &SignedReport) -> Self {
        Self {
            key_id: signed.key_id().to_string(),
            signature: signed.signature().to_string(),
            body: String::from_utf8_lossy(signed.body()).into_owned(),
        }
    }

    /// The value written to etcd ([`encode`]).
    pub fn encode(&self) -> Vec<u8> {
        encode(
            &self.key_id,
            &self.signature,
            &crate::probe::push::gzip(self.body.as_bytes()),
        )
    }

    /// A stored value back: the compact format, or the JSON object older probers wrote. The
    /// body may inflate to at most [`MAX_REPORT_BYTES`], the limit of an HTTP report: a
    /// value cannot make a nameserver hold more than a POST could.
    pub fn decode(value: &[u8]) -> Result<Self, VoteFormatError> {
        let Some(rest) = value.strip_prefix(FORMAT_LINE) else {
            return serde_json::from_slice(value).map_err(|_| VoteFormatError::Format);
        };
        let mut parts = rest.splitn(3, |&b| b == b'\n');
        let (Some(key_id), Some(signature), Some(gzipped)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(VoteFormatError::Format);
        };
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| VoteFormatError::Format);
        let body = inflate_report(flate2::read::GzDecoder::new(gzipped)).map_err(|e| match e {
            Inflate::Broken => VoteFormatError::Inflate,
            Inflate::TooLarge => VoteFormatError::TooLarge,
        })?;
        Ok(Self {
            key_id: text(key_id)?,
            signature: text(signature)?,
            body: String::from_utf8(body).map_err(|_| VoteFormatError::Format)?,
        })
    }

    /// The headers a POST of this report would carry.
    pub fn headers(&self) -> Option<HeaderMap> {
        let mut h = HeaderMap::new();
        h.insert(KEY_ID_HEADER, HeaderValue::from_str(&self.key_id).ok()?);
        h.insert(
            SIGNATURE_HEADER,
            HeaderValue::from_str(&self.signature).ok()?,
        );
        Some(h)
    }
}

/// The lease TTL for reports sent every `interval`: their freshness window, in whole
/// seconds rounded up, at least [`MIN_LEASE_TTL`].
pub fn lease_ttl(interval: Duration) -> i64 {
    let window = interval.saturating_mul(FRESH_INTERVALS);
    let secs = window.as_millis().div_ceil(1000);
    i64::try_from(secs).unwrap_or(i64::MAX).max(MIN_LEASE_TTL)
}

/// Latest report to write, with its lease TTL.
type Pending = Option<(SignedReport, i64)>;

/// A prober's writer of its vote key: the latest report wins, as with HTTP push.
pub struct VotePublisher {
    tx: watch::Sender<Pending>,
    task: JoinHandle<()>,
}

impl VotePublisher {
    /// Starts the writer for `prober` (inside a Tokio runtime).
    pub fn start(client: Arc<Client>, layout: &Layout, prober: &str) -> Self {
        let (tx, rx) = watch::channel(None);
        let vote_key = layout.vote_key(prober);
        let task = tokio::spawn(write_loop(client, vote_key, rx));
        Self { tx, task }
    }

    /// Hands the writer a report signed by this prober's key and sent every `interval`,
    /// replacing one not yet written (the prober signs and compresses each report once, for
    /// HTTP push and etcd alike).
    pub fn publish_signed(&self, signed: SignedReport, interval: Duration) {
        self.tx.send_replace(Some((signed, lease_ttl(interval))));
    }
}

impl Drop for VotePublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Lease {
    id: i64,
    ttl: i64,
    renew_at: tokio::time::Instant,
}

async fn write_once(
    client: &Client,
    key: &str,
    lease: &mut Option<Lease>,
    value: &[u8],
    ttl: i64,
) -> Result<(), EtcdError> {
    for _ in 0..2 {
        if lease.as_ref().is_none_or(|l| l.ttl != ttl) {
            let id = client.lease_grant(ttl).await?;
            *lease = Some(Lease {
                id,
                ttl,
                renew_at: renew_at(ttl),
            });
        }
        let id = lease.as_ref().map_or(0, |l| l.id);
        match client.put(key, value, id).await {
            Ok(_) => return Ok(()),
            // The lease expired while etcd was out of reach: take a new one.
            Err(e) if e.is_not_found() => *lease = None,
            Err(e) => return Err(e),
        }
    }
    Err(EtcdError::Setup("the vote lease keeps expiring".into()))
}

fn renew_at(ttl: i64) -> tokio::time::Instant {
    let secs = u64::try_from(ttl).unwrap_or(1);
    tokio::time::Instant::now() + Duration::from_millis(secs * 1000 / 3)
}

async fn write_loop(client: Arc<Client>, key: String, mut rx: watch::Receiver<Pending>) {
    let mut lease: Option<Lease> = None;
    let mut pending: Pending = None;
    let mut last: Pending = None;
    let mut backoff = Backoff::new();
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let renew = lease.as_ref().map(|l| l.renew_at);
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                pending = rx.borrow_and_update().clone();
            }
            () = sleep_until(renew), if renew.is_some() && retry_at.is_none() => {
                let id = lease.as_ref().map_or(0, |l| l.id);
                match client.lease_keepalive(id).await {
                    Ok(Some(_)) => {
                        if let Some(l) = lease.as_mut() {
                            l.renew_at = renew_at(l.ttl);
                        }
                    }
                    Ok(None) => {
                        tracing::warn!(key, "vote lease expired; writing the votes again");
                        lease = None;
                        pending = pending.or(last.clone());
                    }
                    Err(e) => {
                        tracing::warn!(key, error = %e, "cannot renew the vote lease");
                        if let Some(l) = lease.as_mut() {
                            l.renew_at = tokio::time::Instant::now() + backoff.wait();
                        }
                    }
                }
            }
            () = sleep_until(retry_at), if retry_at.is_some() => retry_at = None,
        }
        if retry_at.is_some() {
            continue;
        }
        if let Some((signed, ttl)) = pending.take() {
            // A big report comes gzipped already; a small one is gzipped here, which takes
            // microseconds, off the runtime's threads all the same (they run the checks).
            let to_encode = signed.clone();
            let value = tokio::task::spawn_blocking(move || {
                let s = to_encode;
                encode(s.key_id(), s.signature(), &s.gzipped_body())
            })
            .await
            .unwrap_or_default();
            match write_once(&client, &key, &mut lease, &value, ttl).await {
                Ok(()) => {
                    backoff.reset();
                    last = Some((signed, ttl));
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "cannot write the votes to etcd; retrying");
                    pending = Some((signed, ttl));
                    retry_at = Some(tokio::time::Instant::now() + backoff.wait());
                }
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Verifies and ingests one stored vote.
pub fn ingest(hub: &HealthHub, value: &[u8]) -> VoteOutcome {
    let vote = match StoredVote::decode(value) {
        Ok(vote) => vote,
        Err(e) => {
            tracing::debug!(error = %e, "stored vote set unreadable");
            return VoteOutcome::Rejected;
        }
    };
    let Some(headers) = vote.headers() else {
        return VoteOutcome::Rejected;
    };
    match hub.accept_stored(&headers, vote.body.as_bytes()) {
        Ok(_) => VoteOutcome::Accepted,
        Err(RejectReason::Replay) => VoteOutcome::Duplicate,
        Err(reason) => {
            // Counted (`meridian_etcd_votes_total`); as HTTP ingest, not logged per report.
            tracing::debug!(reason = reason.label(), "vote set from etcd rejected");
            VoteOutcome::Rejected
        }
    }
}

/// Reads and follows `votes/` until the process ends, feeding `hub`; reconnects with
/// backoff (while etcd is away, votes age as they would without reports).
pub async fn intake(
    client: Arc<Client>,
    layout: Layout,
    hub: Arc<HealthHub>,
    status: Arc<EtcdStatus>,
) {
    let mut backoff = Backoff::new();
    let prefix = layout.votes();
    loop {
        let error = intake_session(&client, &prefix, &hub, &status, &mut backoff).await;
        tracing::debug!(error = %error, "vote watch ended; reconnecting");
        tokio::time::sleep(backoff.wait()).await;
    }
}

async fn intake_session(
    client: &Client,
    prefix: &str,
    hub: &HealthHub,
    status: &EtcdStatus,
    backoff: &mut Backoff,
) -> EtcdError {
    let range = match client.range_prefix(prefix).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    for kv in &range.kvs {
        status.record_vote(ingest(hub, &kv.value));
    }
    let mut watch = match client.watch(prefix, range.revision + 1).await {
        Ok(w) => w,
        Err(e) => return e,
    };
    backoff.reset();
    // A silent partition never ends a watch by itself: ping as the zone source does.
    let mut ping = tokio::time::interval(super::zones::PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            msg = watch.next() => msg,
            _ = ping.tick() => match client.ping(prefix).await {
                Ok(_) => continue,
                Err(e) => return e,
            },
        };
        match msg {
            Ok(Some(WatchMessage::Events { events, .. })) => {
                for e in events {
                    if e.deleted {
                        tracing::info!(key = %e.kv.key_str(), "prober votes gone (lease expired or revoked)");
                    } else {
                        status.record_vote(ingest(hub, &e.kv.value));
                    }
                }
            }
            Ok(Some(WatchMessage::Created)) => {}
            Ok(Some(WatchMessage::Canceled { reason })) => {
                return EtcdError::Setup(format!("vote watch ended: {reason}"));
            }
            Ok(None) => return EtcdError::Setup("vote watch closed".into()),
            Err(e) => return e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::report::{Key, ProbeReport};

    #[test]
    fn lease_ttl_is_the_freshness_window_rounded_up() {
        assert_eq!(lease_ttl(Duration::from_secs(1)), 3);
        assert_eq!(lease_ttl(Duration::from_millis(1500)), 5);
        assert_eq!(lease_ttl(Duration::from_millis(100)), MIN_LEASE_TTL);
        assert_eq!(lease_ttl(Duration::from_secs(10)), 30);
    }

    #[test]
    fn stored_votes_are_verified_and_a_repeat_is_a_duplicate() {
        use crate::health::export::HealthMetrics;
        use crate::health::report::{Keyring, ProberId, unix_ms};
        let key = Key::new("k1", ProberId::new("p1"), &[7u8; 32]).unwrap();
        let keyring = Keyring::from_keys([key.clone()]).unwrap();
        let hub = HealthHub::new(
            Vec::new(),
            Duration::from_secs(10),
            Some(keyring),
            Arc::new(HealthMetrics::default()),
        );
        let report = ProbeReport {
            prober_id: ProberId::new("p1"),
            region: "eu".into(),
            boot_id: "boot".into(),
            sequence: 1,
            sent_at_ms: unix_ms(std::time::SystemTime::now()),
            interval_ms: 1000,
            config_digest: "d".into(),
            endpoints: Default::default(),
        };
        let signed = SignedReport::new(&report, &key).unwrap();
        let vote = StoredVote::from_signed(&signed);
        let value = serde_json::to_vec(&vote).unwrap();
        assert_eq!(ingest(&hub, &value), VoteOutcome::Accepted);
        assert_eq!(ingest(&hub, &value), VoteOutcome::Duplicate);
        let forged = StoredVote {
            body: vote.body.replace("\"eu\"", "\"us\""),
            ..vote.clone()
        };
        assert_eq!(
            ingest(&hub, &serde_json::to_vec(&forged).unwrap()),
            VoteOutcome::Rejected
        );
        assert_eq!(ingest(&hub, b"not json"), VoteOutcome::Rejected);
    }

    /// etcd's default `--max-request-bytes`.
    const ETCD_DEFAULT_REQUEST_LIMIT: usize = 3 * 512 * 1024;

    #[test]
    fn a_vote_of_ten_thousand_endpoints_fits_etcds_default_request_limit() {
        let key = Key::new(
            "k1",
            crate::health::report::ProberId::new("probe-eu-west-1"),
            &[7u8; 32],
        )
        .unwrap();
        let report = crate::health::report::many_endpoints("probe-eu-west-1", 123_456, 10_000);
        let signed = SignedReport::new(&report, &key).unwrap();
        let vote = StoredVote::from_signed(&signed);
        // etcd applies its limit to the put as gRPC carries it (the JSON gateway decodes the
        // base64 first): the key, the value and a few bytes of framing and lease.
        let key_name = b"/meridian/votes/probe-eu-west-1";
        let request = |value: &[u8]| key_name.len() + value.len() + 32;
        let compact = request(&vote.encode());
        let json = request(&serde_json::to_vec(&vote).unwrap());
        eprintln!(
            "10,000 endpoints: body {} bytes, put request {compact} bytes (JSON vote: {json})",
            vote.body.len()
        );
        assert!(
            json > ETCD_DEFAULT_REQUEST_LIMIT,
            "the JSON vote would fit: {json}"
        );
        assert!(
            compact * 3 < ETCD_DEFAULT_REQUEST_LIMIT,
            "{compact} bytes: 30,000 endpoints would not fit"
        );
        assert_eq!(StoredVote::decode(&vote.encode()), Ok(vote));
    }

    #[test]
    fn stored_values_in_either_format_decode_and_garbage_does_not() {
        let v = StoredVote {
            key_id: "k1".into(),
            signature: "ab01".into(),
            body: "{\"x\":1}".into(),
        };
        assert_eq!(StoredVote::decode(&v.encode()), Ok(v.clone()));
        // What probers before the compact format wrote.
        assert_eq!(
            StoredVote::decode(&serde_json::to_vec(&v).unwrap()),
            Ok(v.clone())
        );
        let encoded = v.encode();
        let cut = &encoded[..encoded.len() - 3];
        assert_eq!(StoredVote::decode(cut), Err(VoteFormatError::Inflate));
        assert_eq!(
            StoredVote::decode(b"meridian-vote/2\nk1\n"),
            Err(VoteFormatError::Format)
        );
        assert_eq!(StoredVote::decode(b"garbage"), Err(VoteFormatError::Format));
        // A small value that inflates past what a report may be is refused, not inflated.
        let bomb = StoredVote {
            body: " ".repeat(MAX_REPORT_BYTES + 1),
            ..v
        }
        .encode();
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        assert_eq!(StoredVote::decode(&bomb), Err(VoteFormatError::TooLarge));
    }

    #[test]
    fn stored_votes_carry_the_signed_bytes() {
        let v = StoredVote {
            key_id: "k1".into(),
            signature: "ab01".into(),
            body: "{\"x\":1}".into(),
        };
        let json = serde_json::to_vec(&v).unwrap();
        let back: StoredVote = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, v);
        let h = back.headers().unwrap();
        assert_eq!(h.get(KEY_ID_HEADER).unwrap(), "k1");
        assert_eq!(h.get(SIGNATURE_HEADER).unwrap(), "ab01");
        let bad = StoredVote {
            key_id: "a\nb".into(),
            ..v
        };
        assert!(bad.headers().is_none());
    }
}
