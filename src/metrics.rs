//! Counters, created once at start-up and shared; rendering for `GET /metrics`.
//!
//! The query path only does relaxed atomic adds on fixed arrays indexed by enums: no lock, no
//! map lookup, no allocation. Rendering (the control plane) formats the Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::dns::answer::Rcode;

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

    /// Counts a reload.
    pub fn record_reload(&self, ok: bool) {
        let c = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
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
        let simple: [(&str, &str, &str, u64); 6] = [
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
