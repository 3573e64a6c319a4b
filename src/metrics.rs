//! Counters, created once at start-up and shared; rendering for `GET /metrics`.
//!
//! The query path only does relaxed atomic adds on fixed arrays indexed by enums: no lock, no
//! map lookup, no allocation. Rendering (the control plane) formats the Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::dns::answer::Rcode;
use crate::health::report::RejectReason;

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

const TRANSPORTS: [Transport; 2] = [Transport::Udp, Transport::Tcp];

/// Every counter the server keeps.
pub struct Metrics {
    started: Instant,
    queries: [[AtomicU64; Rcode::ALL.len()]; 2],
    truncated: [AtomicU64; 2],
    dropped: AtomicU64,
    ecs_queries: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    swaps: AtomicU64,
    generation: AtomicU64,
    tcp_connections: AtomicU64,
    reports_accepted: AtomicU64,
    reports_rejected: [AtomicU64; RejectReason::ALL.len()],
    report_unknown_endpoints: AtomicU64,
    transitions: AtomicU64,
    endpoints_down: AtomicU64,
    overrides_active: AtomicU64,
    rrl_limited: AtomicU64,
    rrl_slipped: AtomicU64,
    tcp_refused: [AtomicU64; TcpRefusal::ALL.len()],
    tcp_evicted: AtomicU64,
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All counters at zero.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            queries: Default::default(),
            truncated: Default::default(),
            dropped: AtomicU64::new(0),
            ecs_queries: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            swaps: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            tcp_connections: AtomicU64::new(0),
            reports_accepted: AtomicU64::new(0),
            reports_rejected: Default::default(),
            report_unknown_endpoints: AtomicU64::new(0),
            transitions: AtomicU64::new(0),
            endpoints_down: AtomicU64::new(0),
            overrides_active: AtomicU64::new(0),
            rrl_limited: AtomicU64::new(0),
            rrl_slipped: AtomicU64::new(0),
            tcp_refused: Default::default(),
            tcp_evicted: AtomicU64::new(0),
        }
    }

    /// Seconds since start-up.
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Counts one answered query.
    pub fn record_query(&self, transport: Transport, rcode: Rcode, truncated: bool, ecs: bool) {
        if let Some(c) = self
            .queries
            .get(transport as usize)
            .and_then(|row| row.get(rcode.index()))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if truncated {
            if let Some(c) = self.truncated.get(transport as usize) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        if ecs {
            self.ecs_queries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a packet dropped without an answer.
    pub fn record_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an accepted TCP connection.
    pub fn record_tcp_connection(&self) {
        self.tcp_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a UDP response over the RRL rate; `slipped` when it went out truncated.
    pub fn record_rrl(&self, slipped: bool) {
        self.rrl_limited.fetch_add(1, Ordering::Relaxed);
        if slipped {
            self.rrl_slipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a TCP connection refused by a limit.
    pub fn record_tcp_refused(&self, reason: TcpRefusal) {
        if let Some(c) = self.tcp_refused.get(reason as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an idle TCP connection closed to make room for a new one.
    pub fn record_tcp_evicted(&self) {
        self.tcp_evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reload.
    pub fn record_reload(&self, ok: bool) {
        let c = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an accepted probe report and the endpoints in it this server does not know.
    pub fn record_report_accepted(&self, unknown_endpoints: usize) {
        self.reports_accepted.fetch_add(1, Ordering::Relaxed);
        self.report_unknown_endpoints
            .fetch_add(unknown_endpoints as u64, Ordering::Relaxed);
    }

    /// Counts a rejected probe report.
    pub fn record_report_rejected(&self, reason: RejectReason) {
        if let Some(i) = RejectReason::ALL.iter().position(|r| *r == reason) {
            if let Some(c) = self.reports_rejected.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts an endpoint health transition.
    pub fn record_transition(&self) {
        self.transitions.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the endpoints-down and active-overrides gauges.
    pub fn set_health_gauges(&self, down: usize, overrides: usize) {
        self.endpoints_down.store(down as u64, Ordering::Relaxed);
        self.overrides_active
            .store(overrides as u64, Ordering::Relaxed);
    }

    /// Counts a table swap to `generation`.
    pub fn record_swap(&self, generation: u64) {
        self.swaps.fetch_add(1, Ordering::Relaxed);
        self.generation.store(generation, Ordering::Relaxed);
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str(
            "# HELP meridian_queries_total DNS queries answered, by transport and rcode.\n",
        );
        out.push_str("# TYPE meridian_queries_total counter\n");
        for t in TRANSPORTS {
            for rcode in Rcode::ALL {
                let v = self
                    .queries
                    .get(t as usize)
                    .and_then(|row| row.get(rcode.index()))
                    .map_or(0, get);
                let _ = writeln!(
                    out,
                    "meridian_queries_total{{transport=\"{}\",rcode=\"{}\"}} {v}",
                    t.as_str(),
                    rcode.as_str()
                );
            }
        }
        out.push_str(
            "# HELP meridian_responses_truncated_total UDP/TCP responses sent with TC=1.\n",
        );
        out.push_str("# TYPE meridian_responses_truncated_total counter\n");
        for t in TRANSPORTS {
            let v = self.truncated.get(t as usize).map_or(0, get);
            let _ = writeln!(
                out,
                "meridian_responses_truncated_total{{transport=\"{}\"}} {v}",
                t.as_str()
            );
        }
        let simple: [(&str, &str, &str, u64); 11] = [
            (
                "meridian_reports_accepted_total",
                "counter",
                "Probe reports accepted.",
                get(&self.reports_accepted),
            ),
            (
                "meridian_report_unknown_endpoints_total",
                "counter",
                "Endpoints in accepted reports that this server does not know (ignored).",
                get(&self.report_unknown_endpoints),
            ),
            (
                "meridian_health_transitions_total",
                "counter",
                "Endpoint health state changes.",
                get(&self.transitions),
            ),
            (
                "meridian_endpoints_down",
                "gauge",
                "Endpoints decided down.",
                get(&self.endpoints_down),
            ),
            (
                "meridian_overrides_active",
                "gauge",
                "Operator overrides in force.",
                get(&self.overrides_active),
            ),
            (
                "meridian_packets_dropped_total",
                "counter",
                "Packets dropped without a response (too short, or responses).",
                get(&self.dropped),
            ),
            (
                "meridian_ecs_queries_total",
                "counter",
                "Queries that carried an EDNS Client Subnet option.",
                get(&self.ecs_queries),
            ),
            (
                "meridian_tcp_connections_total",
                "counter",
                "TCP connections accepted.",
                get(&self.tcp_connections),
            ),
            (
                "meridian_table_swaps_total",
                "counter",
                "Routing tables published.",
                get(&self.swaps),
            ),
            (
                "meridian_table_generation",
                "gauge",
                "Generation of the routing table serving now.",
                get(&self.generation),
            ),
            (
                "meridian_uptime_seconds",
                "gauge",
                "Seconds since the process started.",
                self.uptime_seconds(),
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out.push_str("# HELP meridian_reports_rejected_total Probe reports rejected, by reason.\n");
        out.push_str("# TYPE meridian_reports_rejected_total counter\n");
        for (reason, c) in RejectReason::ALL.iter().zip(&self.reports_rejected) {
            let _ = writeln!(
                out,
                "meridian_reports_rejected_total{{reason=\"{}\"}} {}",
                reason.label(),
                get(c)
            );
        }
        let limits: [(&str, &str, u64); 3] = [
            (
                "meridian_rrl_limited_total",
                "UDP responses over the RRL rate (dropped or sent truncated).",
                get(&self.rrl_limited),
            ),
            (
                "meridian_rrl_slipped_total",
                "Rate-limited UDP responses sent truncated (TC=1) instead of dropped.",
                get(&self.rrl_slipped),
            ),
            (
                "meridian_tcp_connections_evicted_total",
                "Idle TCP connections closed to make room for a new client.",
                get(&self.tcp_evicted),
            ),
        ];
        for (name, help, value) in limits {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        out.push_str(
            "# HELP meridian_tcp_connections_refused_total TCP connections closed at accept by a limit.\n",
        );
        out.push_str("# TYPE meridian_tcp_connections_refused_total counter\n");
        for (reason, c) in TcpRefusal::ALL.iter().zip(&self.tcp_refused) {
            let _ = writeln!(
                out,
                "meridian_tcp_connections_refused_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                get(c)
            );
        }
        out.push_str("# HELP meridian_reloads_total Zone reloads, by result.\n");
        out.push_str("# TYPE meridian_reloads_total counter\n");
        let _ = writeln!(
            out,
            "meridian_reloads_total{{result=\"ok\"}} {}",
            get(&self.reloads_ok)
        );
        let _ = writeln!(
            out,
            "meridian_reloads_total{{result=\"failed\"}} {}",
            get(&self.reloads_failed)
        );
        out
    }
}
