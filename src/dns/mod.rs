//! DNS: parsing queries (`wire`), writing responses (`answer`), the per-query logic
//! (`handler`, the hot path), the UDP/TCP listeners (`server`)
//! and one TCP connection's framing and batching (`tcp`).

pub mod answer;
pub mod handler;
pub mod metrics;
pub mod rrl;
pub mod server;
mod tcp;
pub mod transfer;
pub mod udp;
pub mod wire;
