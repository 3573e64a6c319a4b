//! Meridian's integration tests: each module starts the real `meridian` binary (through
//! `harness`) and talks to it over loopback only: DNS over UDP/TCP and the HTTP API.
//!
//! `cargo test --locked` runs them anywhere the Rust toolchain is (any user, no Docker). System
//! tests, which need root, Docker, Chromium or knotd, are `#[ignore = "system test: ..."]`
//! and run with `--include-ignored` (`bash .ci/run`); see `harness::system`.
//!
//! Owns: end-to-end behaviour as a client sees it. Must never: reach into the crate's
//! internals, send traffic anywhere but 127.0.0.1, or wait without a deadline.

// The deny-lints in Cargo.toml guard the server against panics on input; in test code a
// panic is how a check fails, and clippy's `allow-*-in-tests` does not reach helper
// functions of an integration-test crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

// The API against hostile clients: admin token, origin, status privacy, connection limits.
mod api_guard;
mod chaos;
mod control;
mod core;
mod dnsedge;
// DNS over TLS, HTTPS and QUIC.
mod encrypted;
// Distributed mode on a real etcd (system tests).
mod etcd;
// DNSSEC: signatures verified here, and by unbound and delv (system tests).
mod dnssec;
mod health;
// Health beyond up/down (issue 16): application and exec checks, shedding, slow start, drains.
mod health_app;
// Backends, probers and signed reports for `health`.
mod health_support;
// Incremental tables (issue 17): a health change or a reload rebuilds only what it touches.
mod incremental;
// contrib/: alert rules, dashboard, Debian package; man pages and completions.
mod kit;
mod ops;
// Issue 17: memory per service of the real binary.
mod scale;
mod steering;
mod steering_support;
// DNS over TCP: long pipelines, clients that do not read or close with answers pending.
mod tcp;
mod transfer;
mod zonecheck;
// The one harness (processes, DNS, HTTP, metrics, knotd, system prerequisites), shared by
// every test module; not each module uses every helper.
#[allow(dead_code)]
mod harness;
mod lab;
mod robust;
