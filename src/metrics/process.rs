//! The standard `process_*` metrics and `meridian_uptime_seconds`, read from `/proc/self`
//! when `/metrics` is scraped.
//!
//! Owns: the `/proc` parser and the collector the registry renders it with. Must never: be
//! read anywhere but at scrape time (it does file I/O), or fail a scrape when `/proc` is
//! missing (the `process_*` series are left out instead).

use std::fmt;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// What `/proc/self` tells about this process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// Unix time the process started, seconds (None when `/proc/stat` is hidden, e.g.
    /// systemd's `ProcSubset=pid`).
    pub start_time_seconds: Option<f64>,
    /// OS threads.
    pub threads: u64,
}

/// Parses `/proc/self/stat` (fields after the parenthesised command name, which may contain
/// spaces): `(utime ticks, stime ticks, threads, starttime ticks since boot)`.
fn parse_stat(stat: &str) -> Option<(u64, u64, u64, u64)> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // After ")": field 3 (state) is index 0, so field N is index N - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    Some((num(14)?, num(15)?, num(20)?, num(22)?))
}

/// Reads the process statistics; `None` where `/proc` is unavailable.
pub fn process_stats() -> Option<ProcessStats> {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as u64;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (utime, stime, threads, start_ticks) = parse_stat(&stat)?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut statm = statm.split_whitespace().map(|v| v.parse::<u64>().ok());
    let virtual_pages = statm.next().flatten()?;
    let resident_pages = statm.next().flatten()?;
    let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())
    });
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        });
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks,
        resident_bytes: resident_pages * page,
        virtual_bytes: virtual_pages * page,
        open_fds,
        max_fds,
        start_time_seconds: boot_time.map(|b| b as f64 + start_ticks as f64 / ticks),
        threads,
    })
}

/// The standard `process_*` metrics, read from `/proc` when scraped.
#[derive(Debug)]
pub(super) struct ProcessCollector {
    pub(super) started: Instant,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let uptime = ConstGauge::new(self.started.elapsed().as_secs() as i64);
        uptime.encode(encoder.encode_descriptor(
            "meridian_uptime_seconds",
            "Seconds since the server started.",
            None,
            MetricType::Gauge,
        )?)?;
        let Some(p) = process_stats() else {
            return Ok(());
        };
        ConstCounter::new(p.cpu_seconds).encode(encoder.encode_descriptor(
            "process_cpu",
            "User and system CPU time spent.",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?)?;
        let gauges: [(&str, &str, Option<Unit>, Option<f64>); 5] = [
            (
                "process_resident_memory",
                "Resident memory size.",
                Some(Unit::Bytes),
                Some(p.resident_bytes as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size.",
                Some(Unit::Bytes),
                Some(p.virtual_bytes as f64),
            ),
            (
                "process_open_fds",
                "Open file descriptors.",
                None,
                Some(p.open_fds as f64),
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch.",
                Some(Unit::Seconds),
                p.start_time_seconds,
            ),
            (
                "process_threads",
                "OS threads.",
                None,
                Some(p.threads as f64),
            ),
        ];
        for (name, help, unit, v) in gauges {
            let Some(v) = v else { continue };
            ConstGauge::new(v).encode(encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                MetricType::Gauge,
            )?)?;
        }
        if let Some(max) = p.max_fds {
            ConstGauge::new(max as f64).encode(encoder.encode_descriptor(
                "process_max_fds",
                "Limit on open file descriptors.",
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn stat_fields_are_found_after_a_command_with_spaces() {
        let stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 7 0 123456 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((250, 50, 7, 123456)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn process_stats_describe_this_process() {
        let p = process_stats().expect("/proc is readable on Linux");
        assert!(p.resident_bytes > 0);
        assert!(p.open_fds >= 3, "stdin/out/err at least: {p:?}");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = p.start_time_seconds.unwrap();
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0);
    }
}
