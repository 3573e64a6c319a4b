//! Routing: the compiled, immutable table queries read (`table`), how it is built from config
//! (`compile`), how a service picks addresses (`select`, with `subnet_map` for `geo.subnet`
//! overrides and their ECS scopes), the counters a table is compiled with (`counters`), the
//! weights and TTL health gives a service (`weights`: slow start, shedding, dynamic TTL), where
//! each country goes for a service now (`map`, for the status page), and the one place that
//! swaps it in (`publish`). The lookup writes into an [`AnswerSink`] (`sink`), which `dns`
//! implements: routing decides, dns encodes, and routing never imports dns.

pub mod compile;
pub mod counters;
pub mod explain;
pub mod geo_cache;
pub mod map;
pub mod publish;
pub mod select;
pub mod services;
pub mod signed;
pub mod sink;
pub mod subnet_map;
pub mod table;
pub mod weights;

pub use sink::AnswerSink;
pub use table::RoutingTable;
