//! Routing: the compiled, immutable table queries read (`table`), how it is built from config
//! (`compile`), how a service picks addresses (`select`), and the one place that swaps it in
//! (`publish`).

pub mod compile;
pub mod explain;
pub mod geo_cache;
pub mod publish;
pub mod select;
pub mod table;

pub use table::RoutingTable;
