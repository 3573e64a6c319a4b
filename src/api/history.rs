//! `GET /v1/history`: the last 15 minutes of queries per second by rcode and answers per second
//! by region, for the status page's charts. A background task samples the counters `/metrics`
//! exports every [`INTERVAL`] into a ring of [`SAMPLES`] samples; no external service.
//!
//! Owns: the ring buffer and the rates computed from it. Reads the counters through the
//! registry's own rendering (`meridian_queries_total` by `rcode`, summed over transports;
//! `meridian_service_answers_total` summed by `region` over zones, services and outcomes), so
//! it adds nothing to the query path. Control plane only.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ApiState;
use crate::metrics::Metrics;

/// Time between samples.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Samples kept: 15 minutes at [`INTERVAL`].
pub const SAMPLES: usize = 90;

/// Counter values at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Unix time, milliseconds.
    pub at_ms: u64,
    /// `meridian_queries_total` by rcode (all transports).
    pub queries: BTreeMap<String, u64>,
    /// `meridian_service_answers_total` by region.
    pub answers: BTreeMap<String, u64>,
}

/// Reads a sample from the text exposition format.
pub fn parse_sample(text: &str, at_ms: u64) -> Sample {
    let mut sample = Sample {
        at_ms,
        ..Sample::default()
    };
    for line in text.lines() {
        let (series, key, queries) =
            if let Some(rest) = line.strip_prefix("meridian_queries_total{") {
                (rest, "rcode", true)
            } else if let Some(rest) = line.strip_prefix("meridian_service_answers_total{") {
                (rest, "region", false)
            } else {
                continue;
            };
        let Some((labels, value)) = series.rsplit_once("} ") else {
            continue;
        };
        let Some(label) = label_value(labels, key) else {
            continue;
        };
        // Counters render as integers or floats ("5" or "5.0").
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let slot = if queries {
            &mut sample.queries
        } else {
            &mut sample.answers
        };
        *slot.entry(label.to_owned()).or_default() += value.max(0.0) as u64;
    }
    sample
}

/// The value of `key="..."` in a label list (`a="x",b="y"`; values need no unescaping here:
/// rcodes and region names are plain).
fn label_value<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.trim_matches('"'))
    })
}

/// Per-second rates between consecutive samples, by label.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Series {
    /// Start of the first interval (the oldest sample), Unix milliseconds; 0 when empty.
    pub from_ms: u64,
    /// End of each interval, Unix milliseconds.
    pub at_ms: Vec<u64>,
    /// Label -> one rate per interval (0 where the label did not exist yet).
    pub rates: BTreeMap<String, Vec<f64>>,
}

/// Rates of the counters `pick` selects. A counter that went down (a restart or reset)
/// counts its new value as the increase, as Prometheus' `rate` does.
pub fn rates(
    samples: &VecDeque<Sample>,
    pick: impl Fn(&Sample) -> &BTreeMap<String, u64>,
) -> Series {
    let mut series = Series {
        from_ms: samples.front().map_or(0, |s| s.at_ms),
        ..Series::default()
    };
    let labels: std::collections::BTreeSet<&String> =
        samples.iter().flat_map(|s| pick(s).keys()).collect();
    for label in &labels {
        series.rates.insert((*label).clone(), Vec::new());
    }
    for (a, b) in samples.iter().zip(samples.iter().skip(1)) {
        let secs = b.at_ms.saturating_sub(a.at_ms) as f64 / 1000.0;
        series.at_ms.push(b.at_ms);
        for (label, out) in series.rates.iter_mut() {
            let before = pick(a).get(label).copied().unwrap_or(0);
            let now = pick(b).get(label).copied().unwrap_or(0);
            let increase = if now >= before { now - before } else { now };
            out.push(if secs > 0.0 {
                increase as f64 / secs
            } else {
                0.0
            });
        }
    }
    series
}

/// The ring of samples.
#[derive(Debug)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
    interval: Duration,
}

impl History {
    /// An empty ring sampled every `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES + 1)),
            interval,
        }
    }

    /// Adds a sample, dropping the oldest beyond [`SAMPLES`] + 1 (90 intervals need 91).
    pub fn push(&self, sample: Sample) {
        let mut ring = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        ring.push_back(sample);
        while ring.len() > SAMPLES + 1 {
            ring.pop_front();
        }
    }

    /// A copy of the ring, oldest first.
    pub fn samples(&self) -> VecDeque<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Starts sampling `metrics` every `interval` ([`INTERVAL`] but in tests: the hidden
    /// `serve --history-interval-ms`) on the current Tokio runtime; the first sample is taken
    /// at once.
    pub fn start(metrics: Arc<Metrics>, interval: Duration) -> Arc<History> {
        let history = Arc::new(History::new(interval));
        let ring = Arc::clone(&history);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let at_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                ring.push(parse_sample(&metrics.render(), at_ms));
            }
        });
        history
    }
}

#[derive(Serialize)]
struct HistoryView {
    interval_seconds: f64,
    samples: usize,
    queries_per_second: Series,
    answers_per_second: Series,
}

/// `GET /v1/history`.
pub async fn history(State(state): State<ApiState>) -> Response {
    let samples = state.history.samples();
    let view = HistoryView {
        interval_seconds: state.history.interval.as_secs_f64(),
        samples: samples.len(),
        queries_per_second: rates(&samples, |s| &s.queries),
        answers_per_second: rates(&samples, |s| &s.answers),
    };
    axum::Json(view).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP meridian_queries DNS queries
# TYPE meridian_queries counter
meridian_queries_total{transport="udp",rcode="NOERROR"} 5
meridian_queries_total{transport="tcp",rcode="NOERROR"} 2
meridian_queries_total{transport="udp",rcode="NXDOMAIN"} 1
meridian_queries_total_other{transport="udp",rcode="NOERROR"} 100
meridian_service_answers_total{zone="a.test.",service="www",region="eu",outcome="healthy"} 7
meridian_service_answers_total{zone="a.test.",service="www",region="eu",outcome="fallback"} 1
meridian_service_answers_total{zone="b.test.",service="api",region="us",outcome="healthy"} 3.0
meridian_service_answers_total{zone="b.test.",service="api",region="none",outcome="nodata"} 0
"#;

    fn sample(at_ms: u64, queries: &[(&str, u64)], answers: &[(&str, u64)]) -> Sample {
        let map = |v: &[(&str, u64)]| v.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        Sample {
            at_ms,
            queries: map(queries),
            answers: map(answers),
        }
    }

    #[test]
    fn a_sample_sums_queries_by_rcode_and_answers_by_region() {
        let s = parse_sample(TEXT, 42);
        assert_eq!(
            s,
            sample(
                42,
                &[("NOERROR", 7), ("NXDOMAIN", 1)],
                &[("eu", 8), ("none", 0), ("us", 3)]
            )
        );
    }

    #[test]
    fn rates_are_per_second_between_samples_and_survive_resets_and_new_labels() {
        let ring: VecDeque<Sample> = [
            sample(0, &[("NOERROR", 100)], &[]),
            sample(10_000, &[("NOERROR", 150)], &[("eu", 20)]),
            sample(20_000, &[("NOERROR", 150), ("SERVFAIL", 5)], &[("eu", 40)]),
            // A reset (restart): the new value is the increase.
            sample(30_000, &[("NOERROR", 30), ("SERVFAIL", 5)], &[("eu", 10)]),
        ]
        .into();
        let q = rates(&ring, |s| &s.queries);
        assert_eq!(
            (q.from_ms, q.at_ms.clone()),
            (0, vec![10_000, 20_000, 30_000])
        );
        assert_eq!(q.rates["NOERROR"], [5.0, 0.0, 3.0]);
        assert_eq!(q.rates["SERVFAIL"], [0.0, 0.5, 0.0]);
        let a = rates(&ring, |s| &s.answers);
        assert_eq!(a.rates["eu"], [2.0, 2.0, 1.0]);
        // One sample or none: no intervals.
        let one: VecDeque<Sample> = ring.iter().take(1).cloned().collect();
        let r = rates(&one, |s| &s.queries);
        assert!(r.at_ms.is_empty() && r.rates["NOERROR"].is_empty());
        assert_eq!(rates(&VecDeque::new(), |s| &s.queries), Series::default());
    }

    #[test]
    fn the_ring_keeps_the_newest_91_samples() {
        let h = History::new(INTERVAL);
        for i in 0..200u64 {
            h.push(sample(i, &[], &[]));
        }
        let s = h.samples();
        assert_eq!(s.len(), SAMPLES + 1);
        assert_eq!(s.front().map(|x| x.at_ms), Some(109));
        assert_eq!(s.back().map(|x| x.at_ms), Some(199));
        assert_eq!(rates(&s, |x| &x.queries).at_ms.len(), SAMPLES);
    }
}
