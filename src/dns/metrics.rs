//! The DNS server's counters: queries by transport and RCODE, truncation, drops, ECS, answer
//! latency, TCP connection limits, response rate limiting, and the encrypted transports'
//! connections, handshakes and certificate reloads.
//!
//! The handler knows two transports ([`Transport`]: UDP, and a stream with 64 KiB messages);
//! the encrypted listeners (DoT, DoH, DoQ) run the same handler as streams, each with a view
//! of these counters ([`DnsMetrics::for_stream`]) whose stream row is labelled `tls`,
//! `https` or `quic` instead of `tcp`, so every transport has its own series.
//!
//! Owns: [`DnsMetrics`] and the label enums only the DNS server produces ([`Transport`],
//! [`StreamLabel`], [`TcpRefusal`], [`EncryptedRefusal`]). Every handle is created with the struct, so the query path only ever
//! calls `inc()` on an atomic or [`LatencyHistogram::observe`].
//!
//! Must never: take a lock or allocate when counting (no `Family::get_or_create` after
//! [`DnsMetrics::default`]); know about the registry beyond registering into it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use super::answer::Rcode;

/// DNS transports, for labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp = 0,
    /// TCP.
    Tcp = 1,
}

impl Transport {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// The `transport` label of a query that arrived over a stream: plain TCP or one of the
/// encrypted transports. The handler only tells UDP from stream ([`Transport`]); which
/// stream it was is a property of the listener, fixed in its [`DnsMetrics::for_stream`] view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamLabel {
    /// TCP (RFC 7766).
    Tcp = 1,
    /// DNS over TLS (RFC 7858).
    Tls = 2,
    /// DNS over HTTPS (RFC 8484).
    Https = 3,
    /// DNS over QUIC (RFC 9250).
    Quic = 4,
}

impl StreamLabel {
    /// The encrypted transports, in label order.
    pub const ENCRYPTED: [StreamLabel; 3] =
        [StreamLabel::Tls, StreamLabel::Https, StreamLabel::Quic];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        LABELS.get(self as usize).copied().unwrap_or("tcp")
    }
}

/// Every `transport` label value, indexed by [`Transport`] for UDP and [`StreamLabel`] for
/// streams.
const LABELS: [&str; 5] = ["udp", "tcp", "tls", "https", "quic"];

/// Why a connection to an encrypted listener was refused at accept (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncryptedRefusal {
    /// The client already had its maximum number of connections open.
    PerClient = 0,
    /// Every connection slot of the listener was taken.
    Full = 1,
}

impl EncryptedRefusal {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptedRefusal::PerClient => "per_client",
            EncryptedRefusal::Full => "full",
        }
    }
}

/// Why a TCP connection was closed by the server's limits (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpRefusal {
    /// The client already had its maximum number of connections open.
    PerClient = 0,
    /// All connection slots were taken and none had been idle long enough to be evicted.
    Full = 1,
}

impl TcpRefusal {
    /// Every reason, in label order.
    pub const ALL: [TcpRefusal; 2] = [TcpRefusal::PerClient, TcpRefusal::Full];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpRefusal::PerClient => "per_client",
            TcpRefusal::Full => "full",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    transport: &'static str,
    rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EncryptedRefusalLabels {
    transport: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The counters of the encrypted listeners, shared by every [`DnsMetrics::for_stream`] view.
#[derive(Debug, Clone)]
struct EncryptedCounters {
    connections_family: Family<TransportLabels, Counter>,
    /// Indexed by `StreamLabel as usize - 2` (tls, https, quic).
    connections: [Counter; 3],
    handshake_family: Family<TransportLabels, Counter>,
    handshake_failures: [Counter; 3],
    refused_family: Family<EncryptedRefusalLabels, Counter>,
    /// `[transport][reason]`.
    refused: [[Counter; 2]; 3],
    cert_family: Family<ResultLabels, Counter>,
    /// ok, error.
    cert_reloads: [Counter; 2],
}

impl Default for EncryptedCounters {
    fn default() -> Self {
        let connections_family = Family::<TransportLabels, Counter>::default();
        let handshake_family = Family::<TransportLabels, Counter>::default();
        let refused_family = Family::<EncryptedRefusalLabels, Counter>::default();
        let cert_family = Family::<ResultLabels, Counter>::default();
        let per = |f: &Family<TransportLabels, Counter>| {
            StreamLabel::ENCRYPTED.map(|t| {
                f.get_or_create(&TransportLabels {
                    transport: t.as_str(),
                })
                .clone()
            })
        };
        let connections = per(&connections_family);
        let handshake_failures = per(&handshake_family);
        let refused = StreamLabel::ENCRYPTED.map(|t| {
            [EncryptedRefusal::PerClient, EncryptedRefusal::Full].map(|r| {
                refused_family
                    .get_or_create(&EncryptedRefusalLabels {
                        transport: t.as_str(),
                        reason: r.as_str(),
                    })
                    .clone()
            })
        });
        let cert_reloads = ["ok", "error"]
            .map(|result| cert_family.get_or_create(&ResultLabels { result }).clone());
        Self {
            connections_family,
            connections,
            handshake_family,
            handshake_failures,
            refused_family,
            refused,
            cert_family,
            cert_reloads,
        }
    }
}

/// Index of an encrypted transport in [`EncryptedCounters`]' arrays (`None` for TCP).
fn encrypted_index(label: StreamLabel) -> Option<usize> {
    (label as usize).checked_sub(StreamLabel::Tls as usize)
}

/// Upper bounds of the answer latency buckets, in nanoseconds (10 µs to 100 ms).
const LATENCY_BOUNDS_NS: [u64; 13] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
];

/// A fixed-bucket histogram of atomics: `observe` is a short scan and three relaxed adds,
/// no lock (prometheus-client's own histogram takes a mutex per observation).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Non-cumulative counts; the last slot is +Inf.
    buckets: [AtomicU64; LATENCY_BOUNDS_NS.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(LATENCY_BOUNDS_NS.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Sum in seconds, count, and `(upper bound in seconds, count)` per bucket, ending with
    /// +Inf; per bucket, not cumulative (the encoder accumulates).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut acc = 0;
        let mut out = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            acc += n;
            let bound = LATENCY_BOUNDS_NS
                .get(i)
                .map_or(f64::INFINITY, |ns| *ns as f64 / 1e9);
            out.push((bound, n));
        }
        // The count is the sum of the buckets read, so a scrape racing an observation never
        // shows a count below the +Inf bucket.
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, acc, out)
    }
}

/// The registry's handle on the shared histogram.
#[derive(Debug)]
struct SharedLatency(Arc<LatencyHistogram>);

impl EncodeMetric for SharedLatency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let (sum, count, buckets) = self.0.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Every counter the DNS server keeps. [`Default`] creates them all at zero, registered
/// nowhere (benchmarks and unit tests); [`DnsMetrics::register_queries`] and
/// [`DnsMetrics::register_transport`] put them in the registry `/metrics` renders.
#[derive(Debug)]
pub struct DnsMetrics {
    queries_family: Family<QueryLabels, Counter>,
    queries: [[Counter; Rcode::ALL.len()]; LABELS.len()],
    truncated_family: Family<TransportLabels, Counter>,
    truncated: [Counter; LABELS.len()],
    /// The row [`Transport::Tcp`] counts into: `tcp`, or an encrypted transport's in a
    /// [`DnsMetrics::for_stream`] view.
    stream: StreamLabel,
    encrypted: EncryptedCounters,
    dropped: Counter,
    ecs_queries: Counter,
    latency: Arc<LatencyHistogram>,
    tcp_connections: Counter,
    refused_family: Family<RefusalLabels, Counter>,
    tcp_refused: [Counter; TcpRefusal::ALL.len()],
    tcp_evicted: Counter,
    rrl_limited: Counter,
    rrl_slipped: Counter,
}

impl Default for DnsMetrics {
    fn default() -> Self {
        let queries_family = Family::<QueryLabels, Counter>::default();
        let queries = LABELS.map(|t| {
            Rcode::ALL.map(|r| {
                queries_family
                    .get_or_create(&QueryLabels {
                        transport: t,
                        rcode: r.as_str(),
                    })
                    .clone()
            })
        });
        let truncated_family = Family::<TransportLabels, Counter>::default();
        let truncated = LABELS.map(|t| {
            truncated_family
                .get_or_create(&TransportLabels { transport: t })
                .clone()
        });
        let refused_family = Family::<RefusalLabels, Counter>::default();
        let tcp_refused = TcpRefusal::ALL.map(|r| {
            refused_family
                .get_or_create(&RefusalLabels { reason: r.as_str() })
                .clone()
        });
        Self {
            queries_family,
            queries,
            truncated_family,
            truncated,
            stream: StreamLabel::Tcp,
            encrypted: EncryptedCounters::default(),
            dropped: Counter::default(),
            ecs_queries: Counter::default(),
            latency: Arc::default(),
            tcp_connections: Counter::default(),
            refused_family,
            tcp_refused,
            tcp_evicted: Counter::default(),
            rrl_limited: Counter::default(),
            rrl_slipped: Counter::default(),
        }
    }
}

impl DnsMetrics {
    /// A view of the same counters in which queries the handler answers as
    /// [`Transport::Tcp`] count under `label` (an encrypted listener's own handler).
    pub fn for_stream(&self, label: StreamLabel) -> DnsMetrics {
        DnsMetrics {
            queries_family: self.queries_family.clone(),
            queries: self.queries.clone(),
            truncated_family: self.truncated_family.clone(),
            truncated: self.truncated.clone(),
            stream: label,
            encrypted: self.encrypted.clone(),
            dropped: self.dropped.clone(),
            ecs_queries: self.ecs_queries.clone(),
            latency: Arc::clone(&self.latency),
            tcp_connections: self.tcp_connections.clone(),
            refused_family: self.refused_family.clone(),
            tcp_refused: self.tcp_refused.clone(),
            tcp_evicted: self.tcp_evicted.clone(),
            rrl_limited: self.rrl_limited.clone(),
            rrl_slipped: self.rrl_slipped.clone(),
        }
    }

    /// The label of this view's stream transport.
    pub fn stream(&self) -> StreamLabel {
        self.stream
    }

    /// Registers the encrypted listeners' counters (after every other DNS counter).
    pub fn register_encrypted(&self, registry: &mut Registry) {
        let e = &self.encrypted;
        registry.register(
            "meridian_encrypted_connections",
            "Connections accepted by the DoT, DoH and DoQ listeners",
            e.connections_family.clone(),
        );
        registry.register(
            "meridian_encrypted_connections_refused",
            "Connections to an encrypted listener closed at accept by a limit",
            e.refused_family.clone(),
        );
        registry.register(
            "meridian_tls_handshake_failures",
            "TLS handshakes (DoT, DoH, DoQ) that failed or timed out",
            e.handshake_family.clone(),
        );
        registry.register(
            "meridian_tls_certificate_reloads",
            "Reloads of --tls-cert/--tls-key, by result (an error keeps the previous certificate)",
            e.cert_family.clone(),
        );
    }

    /// Counts a connection accepted by this view's encrypted listener.
    pub fn record_encrypted_connection(&self) {
        if let Some(c) =
            encrypted_index(self.stream).and_then(|i| self.encrypted.connections.get(i))
        {
            c.inc();
        }
    }

    /// Counts a failed TLS handshake on this view's encrypted listener.
    pub fn record_handshake_failure(&self) {
        if let Some(c) =
            encrypted_index(self.stream).and_then(|i| self.encrypted.handshake_failures.get(i))
        {
            c.inc();
        }
    }

    /// Counts a connection refused by this view's encrypted listener's limits.
    pub fn record_encrypted_refused(&self, reason: EncryptedRefusal) {
        if let Some(c) = encrypted_index(self.stream)
            .and_then(|i| self.encrypted.refused.get(i))
            .and_then(|row| row.get(reason as usize))
        {
            c.inc();
        }
    }

    /// Counts a reload of the TLS certificate: `ok`, or an error (the old one kept).
    pub fn record_cert_reload(&self, ok: bool) {
        if let Some(c) = self.encrypted.cert_reloads.get(usize::from(!ok)) {
            c.inc();
        }
    }

    /// `meridian_queries_total` by rcode, summed over transports (the status page's history
    /// reads it without rendering `/metrics`).
    pub fn queries_by_rcode(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Rcode::ALL.iter().map(|r| {
            let sum = self
                .queries
                .iter()
                .filter_map(|row| row.get(r.index()))
                .map(Counter::get)
                .sum();
            (r.as_str(), sum)
        })
    }

    /// Registers the query and truncation counters (listed first in `/metrics`).
    pub fn register_queries(&self, registry: &mut Registry) {
        registry.register(
            "meridian_queries",
            "DNS queries answered, by transport and response code",
            self.queries_family.clone(),
        );
        registry.register(
            "meridian_responses_truncated",
            "Responses sent with TC=1 (the answer did not fit)",
            self.truncated_family.clone(),
        );
    }

    /// Registers the latency histogram and the drop, ECS, TCP and RRL counters.
    pub fn register_transport(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "meridian_answer_latency",
            "Time from a parsed packet to a finished response, in this process",
            Unit::Seconds,
            SharedLatency(Arc::clone(&self.latency)),
        );
        let counters: [(&str, &str, &Counter); 2] = [
            (
                "meridian_packets_dropped",
                "Packets dropped without a response (too short, or responses)",
                &self.dropped,
            ),
            (
                "meridian_ecs_queries",
                "Queries that carried an EDNS Client Subnet option",
                &self.ecs_queries,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "meridian_tcp_connections",
            "TCP connections accepted",
            self.tcp_connections.clone(),
        );
        registry.register(
            "meridian_tcp_connections_refused",
            "TCP connections closed at accept by a limit",
            self.refused_family.clone(),
        );
        let counters: [(&str, &str, &Counter); 3] = [
            (
                "meridian_tcp_connections_evicted",
                "Idle TCP connections closed to make room for a new client",
                &self.tcp_evicted,
            ),
            (
                "meridian_rrl_limited",
                "UDP responses over the RRL rate (dropped or sent truncated)",
                &self.rrl_limited,
            ),
            (
                "meridian_rrl_slipped",
                "Rate-limited UDP responses sent truncated (TC=1) instead of dropped",
                &self.rrl_slipped,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
    }

    /// Counts one answered query.
    pub fn record_query(&self, transport: Transport, rcode: Rcode, truncated: bool, ecs: bool) {
        let row = match transport {
            Transport::Udp => Transport::Udp as usize,
            Transport::Tcp => self.stream as usize,
        };
        if let Some(c) = self.queries.get(row).and_then(|r| r.get(rcode.index())) {
            c.inc();
        }
        if truncated {
            if let Some(c) = self.truncated.get(row) {
                c.inc();
            }
        }
        if ecs {
            self.ecs_queries.inc();
        }
    }

    /// Records how long one answer took.
    pub fn record_latency(&self, elapsed: Duration) {
        self.latency.observe(elapsed);
    }

    /// Counts a packet dropped without an answer.
    pub fn record_drop(&self) {
        self.dropped.inc();
    }

    /// Counts an accepted TCP connection.
    pub fn record_tcp_connection(&self) {
        self.tcp_connections.inc();
    }

    /// Counts a UDP response over the RRL rate; `slipped` when it went out truncated.
    pub fn record_rrl(&self, slipped: bool) {
        self.rrl_limited.inc();
        if slipped {
            self.rrl_slipped.inc();
        }
    }

    /// Counts a TCP connection refused by a limit.
    pub fn record_tcp_refused(&self, reason: TcpRefusal) {
        if let Some(c) = self.tcp_refused.get(reason as usize) {
            c.inc();
        }
    }

    /// Counts an idle TCP connection closed to make room for a new one.
    pub fn record_tcp_evicted(&self) {
        self.tcp_evicted.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::metrics::tests::series;

    #[test]
    fn queries_render_by_transport_and_rcode() {
        let dns = DnsMetrics::default();
        let m = Metrics::new(|r| {
            dns.register_queries(r);
            dns.register_transport(r);
        });
        dns.record_query(Transport::Udp, Rcode::NoError, false, true);
        dns.record_query(Transport::Udp, Rcode::NoError, true, false);
        dns.record_query(Transport::Tcp, Rcode::NxDomain, false, false);
        let text = m.render();
        assert_eq!(
            series(
                &text,
                r#"meridian_queries_total{transport="udp",rcode="NOERROR"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            series(
                &text,
                r#"meridian_queries_total{transport="tcp",rcode="NXDOMAIN"}"#
            ),
            Some(1.0)
        );
        // Pre-created series are present at zero.
        assert_eq!(
            series(
                &text,
                r#"meridian_queries_total{transport="tcp",rcode="SERVFAIL"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            series(
                &text,
                r#"meridian_responses_truncated_total{transport="udp"}"#
            ),
            Some(1.0)
        );
        assert_eq!(series(&text, "meridian_ecs_queries_total "), Some(1.0));
    }

    #[test]
    fn stream_views_count_under_their_own_transport() {
        let dns = DnsMetrics::default();
        let m = Metrics::new(|r| {
            dns.register_queries(r);
            dns.register_transport(r);
            dns.register_encrypted(r);
        });
        let tls = dns.for_stream(StreamLabel::Tls);
        let quic = dns.for_stream(StreamLabel::Quic);
        tls.record_query(Transport::Tcp, Rcode::NoError, false, true);
        tls.record_query(Transport::Tcp, Rcode::NoError, true, false);
        quic.record_query(Transport::Tcp, Rcode::NxDomain, false, false);
        dns.record_query(Transport::Tcp, Rcode::NoError, false, false);
        tls.record_encrypted_connection();
        quic.record_handshake_failure();
        dns.for_stream(StreamLabel::Https)
            .record_encrypted_refused(EncryptedRefusal::PerClient);
        dns.record_cert_reload(false);
        // The plain TCP view records no encrypted connection (no row for it).
        dns.record_encrypted_connection();
        let text = m.render();
        for (selector, want) in [
            (
                r#"meridian_queries_total{transport="tls",rcode="NOERROR"}"#,
                2.0,
            ),
            (
                r#"meridian_queries_total{transport="quic",rcode="NXDOMAIN"}"#,
                1.0,
            ),
            (
                r#"meridian_queries_total{transport="tcp",rcode="NOERROR"}"#,
                1.0,
            ),
            (
                r#"meridian_queries_total{transport="https",rcode="NOERROR"}"#,
                0.0,
            ),
            (
                r#"meridian_responses_truncated_total{transport="tls"}"#,
                1.0,
            ),
            (
                r#"meridian_responses_truncated_total{transport="tcp"}"#,
                0.0,
            ),
            ("meridian_ecs_queries_total ", 1.0),
            (
                r#"meridian_encrypted_connections_total{transport="tls"}"#,
                1.0,
            ),
            (
                r#"meridian_encrypted_connections_total{transport="https"}"#,
                0.0,
            ),
            (
                r#"meridian_tls_handshake_failures_total{transport="quic"}"#,
                1.0,
            ),
            (
                r#"meridian_encrypted_connections_refused_total{transport="https",reason="per_client"}"#,
                1.0,
            ),
            (
                r#"meridian_tls_certificate_reloads_total{result="error"}"#,
                1.0,
            ),
            (
                r#"meridian_tls_certificate_reloads_total{result="ok"}"#,
                0.0,
            ),
        ] {
            assert_eq!(series(&text, selector), Some(want), "{selector}\n{text}");
        }
    }

    #[test]
    fn latency_histogram_renders_cumulative_buckets() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(5));
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_secs(1));
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 1.000035).abs() < 1e-9, "{sum}");
        assert_eq!(buckets.first(), Some(&(0.00001, 1)));
        assert_eq!(buckets.get(1), Some(&(0.000025, 0)));
        assert_eq!(buckets.get(2), Some(&(0.00005, 1)));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
        let dns = DnsMetrics::default();
        let m = Metrics::new(|r| dns.register_transport(r));
        dns.record_latency(Duration::from_micros(70));
        let text = m.render();
        assert_eq!(
            series(
                &text,
                r#"meridian_answer_latency_seconds_bucket{le="0.001"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            series(
                &text,
                r#"meridian_answer_latency_seconds_bucket{le="5e-05"}"#
            ),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            series(&text, "meridian_answer_latency_seconds_count"),
            Some(1.0)
        );
    }
}
