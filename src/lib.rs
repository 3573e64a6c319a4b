//! Meridian: a global DNS traffic manager and authoritative nameserver.
//!
//! The data flow, and the module that owns each step (`docs/architecture.md` draws it in full,
//! with the rules each module keeps):
//!
//! ```text
//! zones/*.toml -> config::load -> config::Zone ----------.
//! GeoIP .mmdb  -> geo::GeoDb -----------------------------+-> routing::compile -> RoutingTable
//! probes -> POST /v1/reports -> health::hub (aggregate) -'                           |
//!                                                     routing::publish: ArcSwap::store <-'
//! query -> dns::server -> dns::handler -> routes().answer(query, client, writer) -> bytes
//!            (routing decides into the AnswerSink `writer`; dns::answer encodes)
//! ```
//!
//! `control::ControlPlane` owns everything before the swap: the last good version of each
//! zone, the GeoIP database and keys, the health hub and overrides, the embedded prober and the
//! publisher; SIGHUP, the config watcher, `meridian ctl` and the HTTP API all change what is
//! served through it.
//!
//! Everything before the swap is the control plane: it may allocate, do I/O, log and fail.
//! Everything after it is the query path: no locks, no I/O, as little allocation as possible.
//!
//! The modules, one line each on what they own:
//! - [`cli`]: the command line (clap types); defaults come from the owners' `DEFAULT_*`.
//! - [`cmd`]: one `run` per subcommand, and the exit code each error stands for.
//! - [`daemon`]: `meridian serve`: wires control plane, listeners, API, socket, watch, signals.
//! - [`config`]: zone files: TOML shapes, validated model, loader with file-and-key errors.
//! - [`geo`]: GeoIP databases (reader, country table, text source and MMDB writer).
//! - [`proto`]: the DNS vocabulary routing and dns share (types, query, ECS, RCODE, sections);
//!   a leaf that imports no other module.
//! - [`routing`]: the compiled table, its lookup (into an `AnswerSink`), service selection, and
//!   the one `ArcSwap`. Never imports `dns`.
//! - [`dnssec`]: online signing: BIND-format keys, RRSIGs, compact denial, signature cache.
//! - [`dns`]: the query path: wire parsing, the handler, response writing (the `AnswerSink` the
//!   lookup fills), UDP/TCP, RRL, AXFR, DoT/DoH/DoQ listeners over the same handler, and
//!   `explain`'s real answer.
//! - [`health`]: probe reports (format, signatures), vote aggregation, the hub, overrides.
//! - [`control`]: the control plane's one owner: reload, health, overrides, socket, watcher.
//! - [`api`]: the HTTP API and status page: routes, who may call them, connection limits, TLS.
//! - [`tls`]: PEM certificate and key loading, shared by the API and the DoT/DoH/DoQ listeners.
//! - [`probe`]: checks, rise/fall, the schedule and signed report delivery.
//! - [`prober`]: `meridian probe` and the embedded prober: the probe runner wired to a sink.
//! - [`notify`]: health-transition webhooks (`--notify-url`).
//! - [`metrics`]: the Prometheus registry behind `/metrics` and the counters it renders.
//! - [`etcd`]: distributed mode: zones and votes in etcd (`--etcd`), `config push`/`pull`.
//! - [`lab`]: the hidden `lab-backend` HTTP server of the compose lab.

pub mod api;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dns;
pub mod dnssec;
pub mod etcd;
pub mod geo;
pub mod health;
pub mod lab;
pub mod metrics;
pub mod notify;
pub mod probe;
pub mod prober;
pub mod proto;
pub mod routing;
pub mod tls;

#[cfg(test)]
#[path = "module_graph_tests.rs"]
mod module_graph_tests;
