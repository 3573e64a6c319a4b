//! The prober: checks endpoints, applies rise/fall, reports its view to every nameserver.
//!
//! Owns: single checks ([`check`]; exec checks and what they may run in [`exec`]), the rise/fall state machine ([`state`]), the schedule and
//! report building ([`runner`]), signed delivery to the nameservers ([`push`]) and the prober's
//! own metrics ([`metrics`]).
//!
//! TLS everywhere here is rustls with the ring provider: checks use it through `tokio-rustls`
//! (`check`), report delivery passes it to reqwest as a preconfigured config: reqwest is built
//! without its own provider (no aws-lc build), so a client built *without*
//! `tls_backend_preconfigured` panics unless a default rustls provider was installed first.
//!
//! Never: decides an endpoint's health for DNS answers (only the nameservers' aggregation of
//! many probers does), or sends check traffic anywhere but the configured endpoints.

pub mod check;
pub mod exec;
pub mod metrics;
pub mod push;
pub mod runner;
pub mod state;
pub mod targets;
