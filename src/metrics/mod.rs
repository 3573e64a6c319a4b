//! The Prometheus registry behind `GET /metrics` and its rendering; nothing else.
//!
//! Each module owns its counters beside the code that counts (as hickory does):
//! `dns::metrics` (queries, latency, TCP, RRL), `routing::counters` (per zone and service,
//! table swaps), `health::export` (reports, decisions, endpoint and vote gauges),
//! `control::metrics` (reloads) and `notify` (webhooks). Whoever starts the server registers
//! them here once, in the order `/metrics` lists them ([`Metrics::new`]); the `/proc` reader
//! ([`process`]) is always registered last.
//!
//! Must never: know the modules it renders (this module imports none of them, so no import
//! cycle runs through it), or be touched on the query path: rendering runs the scrape-time
//! collectors and allocates.

pub mod process;

use std::time::Instant;

use prometheus_client::registry::Registry;

use process::ProcessCollector;

/// The registry every metric is rendered from.
pub struct Metrics {
    started: Instant,
    registry: Registry,
}

impl Metrics {
    /// Builds the registry: `register` adds every module's metrics (in rendering order), then
    /// the process collector (`meridian_uptime_seconds`, `process_*`) goes last.
    pub fn new(register: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::default();
        register(&mut registry);
        let started = Instant::now();
        registry.register_collector(Box::new(ProcessCollector { started }));
        Self { started, registry }
    }

    /// Seconds since start-up.
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }

    /// OpenMetrics text format (1.0.0), ending with `# EOF`.
    pub fn render_openmetrics(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The value of the first series of `text` whose line starts with `prefix`.
    pub(crate) fn series(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.parse().unwrap())
    }

    #[test]
    fn process_metrics_render_last() {
        let m = Metrics::new(|r| {
            r.register(
                "meridian_example",
                "An example",
                prometheus_client::metrics::counter::Counter::<u64>::default(),
            )
        });
        let text = m.render();
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
        let example = text.find("meridian_example_total").unwrap();
        let uptime = text.find("meridian_uptime_seconds").unwrap();
        assert!(example < uptime, "{text}");
        assert!(m.render_openmetrics().ends_with("# EOF\n"));
    }
}
