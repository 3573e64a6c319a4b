//! DNS: parsing queries (`wire`), writing responses (`answer`), the per-query logic
//! (`handler`, the hot path), the UDP/TCP listeners (`server`), and `explain`'s real answer
//! (`explain`). dns depends on routing (it implements `routing::AnswerSink`), never the reverse.

pub mod answer;
pub mod explain;
pub mod handler;
pub mod metrics;
pub mod rrl;
pub mod server;
pub mod transfer;
pub mod udp;
pub mod wire;
