//! Meridian: a global DNS traffic manager and authoritative nameserver.
//!
//! The data flow, and the module that owns each step:
//!
//! ```text
//! zones/*.toml -> config::load -> config::Model ---.
//! GeoIP .mmdb  -> geo::GeoDb ----------------------+-> routing::compile -> Arc<RoutingTable>
//! probes -> POST /v1/reports -> health::aggregate -'                                     |
//!                                                     routing::publish: ArcSwap::store <-'
//! query -> dns::handler -> routes.load() -> table.lookup(qname, qtype, client) -> answer
//! ```
//!
//! `control::ControlPlane` owns everything before the swap: the last good version of each
//! zone, the GeoIP database and keys, the health hub and overrides, the embedded prober and the
//! publisher; SIGHUP, the config watcher, `meridian ctl` and the HTTP API all change what is
//! served through it.
//!
//! Everything before the swap is the control plane: it may allocate, do I/O, log and fail.
//! Everything after it is the query path: no locks, no I/O, as little allocation as possible.

pub mod api;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dns;
pub mod geo;
pub mod health;
pub mod lab;
pub mod metrics;
pub mod notify;
pub mod probe;
pub mod prober;
pub mod routing;
