//! DNS: parsing queries (`wire`), writing responses (`answer`), the per-query logic
//! (`handler`, the hot path), the UDP/TCP listeners (`server`) and the DoT/DoH/DoQ listeners
//! (`encrypted`).

pub mod answer;
pub mod encrypted;
pub mod handler;
pub mod metrics;
pub mod rrl;
pub mod server;
pub mod transfer;
pub mod udp;
pub mod wire;
