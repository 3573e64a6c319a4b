//! `GET /v1/history`: the last 15 minutes of queries per second by rcode and answers per second
//! by region, for the status page's charts. A background task samples the counters `/metrics`
//! exports every [`INTERVAL`] into a ring of [`SAMPLES`] samples; no external service.
//!
//! Owns: the ring buffer and the rates computed from it. Reads the counters through the
//! registry's own rendering, streamed a line at a time into [`SampleParser`] (`meridian_queries_total` by `rcode`, summed over transports;
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
    let mut parser = SampleParser::new(at_ms);
    for line in text.lines() {
        parser.line(line);
    }
    parser.sample
}

/// Reads a sample from the exposition text as the registry writes it, a line at a time, so a
/// sample never holds the whole rendering: at 100,000 services that text is over 100 MB (one
/// series per service, region and outcome), which a `String` rendering kept alive once per
/// interval and which showed in the server's peak memory.
#[derive(Debug)]
pub struct SampleParser {
    sample: Sample,
    /// The unfinished last line of what was written so far.
    partial: String,
}

impl SampleParser {
    /// An empty sample taken at `at_ms`.
    pub fn new(at_ms: u64) -> Self {
        Self {
            sample: Sample {
                at_ms,
                ..Sample::default()
            },
            partial: String::new(),
        }
    }

    /// The sample, with a last line that had no newline counted too.
    pub fn finish(mut self) -> Sample {
        let last = std::mem::take(&mut self.partial);
        self.line(&last);
        self.sample
    }

    /// Adds one line of the exposition text.
    fn line(&mut self, line: &str) {
        let (series, key, queries) =
            if let Some(rest) = line.strip_prefix("meridian_queries_total{") {
                (rest, "rcode", true)
            } else if let Some(rest) = line.strip_prefix("meridian_service_answers_total{") {
                (rest, "region", false)
            } else {
                return;
            };
        let Some((labels, value)) = series.rsplit_once("} ") else {
            return;
        };
        let Some(label) = label_value(labels, key) else {
            return;
        };
        // Counters render as integers or floats ("5" or "5.0").
        let Ok(value) = value.trim().parse::<f64>() else {
            return;
        };
        let slot = if queries {
            &mut self.sample.queries
        } else {
            &mut self.sample.answers
        };
        let value = value.max(0.0) as u64;
        // Look up before inserting: a region's entry is allocated once per sample, not once
        // per series.
        match slot.get_mut(label) {
            Some(sum) => *sum += value,
            None => {
                slot.insert(label.to_owned(), value);
            }
        }
    }
}

impl std::fmt::Write for SampleParser {
    fn write_str(&mut self, mut s: &str) -> std::fmt::Result {
        while let Some(end) = s.find('\n') {
            let (head, rest) = s.split_at(end);
            if self.partial.is_empty() {
                self.line(head);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.push_str(head);
                self.line(&line);
                // Keep the buffer's allocation for the next split line.
                line.clear();
                self.partial = line;
            }
            s = rest.get(1..).unwrap_or_default();
        }
        self.partial.push_str(s);
        Ok(())
    }
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
                let mut parser = SampleParser::new(at_ms);
                metrics.render_into(&mut parser);
                ring.push(parser.finish());
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
    fn a_sample_streamed_in_any_pieces_is_the_same_and_holds_only_a_line() {
        use std::fmt::Write as _;
        let whole = parse_sample(TEXT, 42);
        for chunk in [1, 2, 7, 64, TEXT.len()] {
            let mut p = SampleParser::new(42);
            let mut longest = 0;
            let bytes = TEXT.as_bytes();
            for piece in bytes.chunks(chunk) {
                p.write_str(std::str::from_utf8(piece).unwrap()).unwrap();
                longest = longest.max(p.partial.len());
            }
            assert_eq!(p.finish(), whole, "chunks of {chunk}");
            let line = TEXT.lines().map(str::len).max().unwrap();
            assert!(longest <= line, "held {longest} bytes, longest line {line}");
        }
        // A last line without a newline still counts.
        let mut p = SampleParser::new(1);
        p.write_str("meridian_queries_total{rcode=\"REFUSED\"} 4")
            .unwrap();
        assert_eq!(p.finish(), sample(1, &[("REFUSED", 4)], &[]));
    }

    #[test]
    fn the_sampler_reads_the_registry_without_rendering_it_whole() {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        let answers = Family::<Vec<(String, String)>, Counter>::default();
        for i in 0..1000 {
            answers
                .get_or_create(&vec![
                    ("service".into(), format!("s{i}")),
                    ("region".into(), if i % 2 == 0 { "eu" } else { "us" }.into()),
                ])
                .inc_by(2);
        }
        let metrics = crate::metrics::Metrics::new(|r| {
            r.register("meridian_service_answers", "answers", answers.clone());
        });
        let mut p = SampleParser::new(0);
        metrics.render_into(&mut p);
        assert!(p.partial.capacity() < 4096, "{}", p.partial.capacity());
        assert_eq!(p.finish(), sample(0, &[], &[("eu", 1000), ("us", 1000)]));
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
