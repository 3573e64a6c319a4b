//! DNS: parsing queries (`wire`), writing responses (`answer`), the per-query logic
//! (`handler`, the hot path), and the UDP/TCP listeners (`server`).

pub mod answer;
pub mod handler;
pub mod metrics;
pub mod rrl;
pub mod server;
pub mod transfer;
pub mod udp;
pub mod wire;
