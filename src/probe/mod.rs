//! The prober: checks endpoints, applies rise/fall, reports its view to every nameserver.
//!
//! Owns: single checks ([`check`]), the rise/fall state machine ([`state`]).
//!
//! Never: decides an endpoint's health for DNS answers (only the nameservers' aggregation of
//! many probers does), or sends check traffic anywhere but the configured endpoints.

pub mod check;
pub mod push;
pub mod state;
