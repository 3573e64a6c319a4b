//! DNS: parsing queries (`wire`), writing responses (`answer`), the per-query logic
//! (`handler`, the hot path), the UDP/TCP listeners (`server`), one TCP connection's framing
//! and batching (`tcp`), the DoT/DoH/DoQ listeners (`encrypted`), and `explain`'s real answer
//! (`explain`). dns depends on routing (it implements `routing::AnswerSink`), never the
//! reverse.

pub mod answer;
pub mod encrypted;
pub mod explain;
pub mod handler;
pub mod metrics;
pub mod rrl;
pub mod server;
mod tcp;
pub mod transfer;
pub mod udp;
pub mod wire;
