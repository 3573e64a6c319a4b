//! The weights and TTL a service is compiled with: slow start, load shedding, weight hints,
//! dynamic TTL. Pure functions of what health says as of one compile; `compile` calls them,
//! the query path only ever sees their results (integer weights and one TTL per service).
//!
//! - **Slow start**: an endpoint that came back from down `t` ago, with `slow_start = T`,
//!   keeps `10 % + 90 % * t / T` of its weight until `t >= T` ([`ramp`]). A region whose every
//!   serving endpoint is ramping is a region coming back: its share of the answers it would
//!   take is the largest ramp of those endpoints ([`Weighting::region_share`]).
//! - **Load shedding**: above `shed_above` the weight falls linearly to zero at `shed_at`
//!   (`config::check::Shed::factor`); a region never sheds its last endpoint: when every
//!   weighted, healthy endpoint of a region would be at zero, the least loaded keeps weight 1.
//! - **Weight hint**: an exec check's `weight` replaces the configured weight (standbys, with
//!   a configured weight of 0, stay standbys).
//! - **Dynamic TTL**: while any endpoint is in a transition (rise/fall counting, ramping,
//!   shedding), or nothing is healthy (fallback answers), answers carry `min_ttl`.

use std::time::Duration;

use crate::config::check::Shed;

/// The share of its weight a ramping endpoint starts with.
pub const RAMP_START: f64 = 0.1;

/// The factor slow start applies `recovered_for` after an endpoint came back; `None` when it
/// is not ramping (no slow start, never came back, or the ramp is over).
pub fn ramp(recovered_for: Option<Duration>, slow_start: Option<Duration>) -> Option<f64> {
    let (t, total) = (recovered_for?, slow_start?);
    if total.is_zero() || t >= total {
        return None;
    }
    Some(RAMP_START + (1.0 - RAMP_START) * t.as_secs_f64() / total.as_secs_f64())
}

/// `base * factor` rounded, never rounded down to 0 when the factor is above 0 (that would
/// turn the endpoint into a standby).
pub fn scaled(base: u32, factor: f64) -> u32 {
    if base == 0 || factor <= 0.0 || factor.is_nan() {
        return 0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let w = (f64::from(base) * factor.min(1.0)).round() as u32;
    w.max(1)
}

/// A share (0.0-1.0) in per mille, as [`super::select::RegionEndpoints::share`] keeps it.
pub fn per_mille(share: f64) -> u16 {
    if share.is_nan() {
        return super::select::FULL_SHARE;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let v = (share.clamp(0.0, 1.0) * f64::from(super::select::FULL_SHARE)).round() as u16;
    v
}

/// One endpoint as the weighting sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Input {
    /// The configured weight (0 = standby).
    pub configured: u32,
    /// Serving: decided up (or forced up) and not drained.
    pub serving: bool,
    /// Weight hint from an exec check.
    pub hint: Option<u32>,
    /// Load, 0.0-1.0.
    pub load: Option<f64>,
    /// How long ago it came back from down.
    pub recovered_for: Option<Duration>,
    /// A vote is counting towards rise or fall.
    pub transition: bool,
}

/// What the weighting decided for one endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Output {
    /// Weight to draw with.
    pub weight: u32,
    /// The slow-start factor, when ramping.
    pub ramp: Option<f64>,
    /// The shedding factor, when below 1.
    pub shed: Option<f64>,
}

/// The weights of one region's endpoints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weighting {
    /// Per endpoint, in input order.
    pub endpoints: Vec<Output>,
    /// The region's share of the answers it would take (1.0 unless it is coming back).
    pub region_share: f64,
    /// Something here is in a transition (dynamic TTL).
    pub transition: bool,
}

/// Weighs one region's endpoints (module docs). Endpoints that are not serving keep their
/// configured weight: the query path skips them anyway.
pub fn weigh(region: &[Input], slow_start: Option<Duration>, shed: Shed) -> Weighting {
    let mut out: Vec<Output> = region
        .iter()
        .map(|e| {
            if !e.serving || e.configured == 0 {
                return Output {
                    weight: e.configured,
                    ..Output::default()
                };
            }
            let base = e.hint.unwrap_or(e.configured);
            let ramp = ramp(e.recovered_for, slow_start);
            let shed = e.load.map(|l| shed.factor(l)).filter(|f| *f < 1.0);
            Output {
                weight: scaled(base, ramp.unwrap_or(1.0) * shed.unwrap_or(1.0)),
                ramp,
                shed,
            }
        })
        .collect();
    // Never shed a region's last endpoint: the least loaded of its weighted, serving
    // endpoints stays answerable when all of them fell to zero.
    let weighted = |e: &&Input| e.serving && e.configured > 0;
    let any_weighted = region.iter().any(|e| weighted(&e));
    let all_zero = region
        .iter()
        .zip(&out)
        .filter(|(e, _)| weighted(e))
        .all(|(_, o)| o.weight == 0);
    if any_weighted && all_zero {
        let least = region
            .iter()
            .enumerate()
            .filter(|(_, e)| weighted(e))
            .min_by(|(_, a), (_, b)| {
                let (a, b) = (a.load.unwrap_or(0.0), b.load.unwrap_or(0.0));
                a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
            })
            .map(|(i, _)| i);
        if let Some(o) = least.and_then(|i| out.get_mut(i)) {
            o.weight = 1;
        }
    }
    let serving: Vec<&Output> = region
        .iter()
        .zip(&out)
        .filter(|(e, _)| weighted(e))
        .map(|(_, o)| o)
        .collect();
    let region_share = if !serving.is_empty() && serving.iter().all(|o| o.ramp.is_some()) {
        serving
            .iter()
            .filter_map(|o| o.ramp)
            .fold(RAMP_START, f64::max)
    } else {
        1.0
    };
    let transition = region.iter().any(|e| e.transition)
        || out.iter().any(|o| o.ramp.is_some() || o.shed.is_some());
    Weighting {
        endpoints: out,
        region_share,
        transition,
    }
}

/// The TTL of a service's answers: `min_ttl` under `dynamic_ttl` while anything is in a
/// transition or nothing is healthy (fallback answers), its `ttl` otherwise.
pub fn ttl(ttl: u32, min_ttl: u32, dynamic: bool, transition: bool, fallback: bool) -> u32 {
    if dynamic && (transition || fallback) {
        min_ttl.min(ttl)
    } else {
        ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Option<Duration> = |s| Some(Duration::from_secs(s));

    #[test]
    fn ramp_goes_from_ten_to_a_hundred_percent() {
        // (recovered for, slow start, factor)
        let cases: &[(Option<Duration>, Option<Duration>, Option<f64>)] = &[
            (S(0), S(60), Some(0.1)),
            (S(30), S(60), Some(0.55)),
            (S(59), S(60), Some(0.1 + 0.9 * 59.0 / 60.0)),
            (S(60), S(60), None),
            (S(600), S(60), None),
            (None, S(60), None),
            (S(1), None, None),
            (S(0), Some(Duration::ZERO), None),
        ];
        for (t, total, want) in cases {
            let got = ramp(*t, *total);
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{t:?}/{total:?}: {g}"),
                _ => assert_eq!(got, *want, "{t:?}/{total:?}"),
            }
        }
    }

    #[test]
    fn shedding_is_linear_between_the_thresholds() {
        let shed = Shed::default();
        let cases = [
            (0.0, 1.0),
            (0.8, 1.0),
            (0.875, 0.5),
            (0.9, 1.0 / 3.0),
            (0.95, 0.0),
            (1.0, 0.0),
            (f64::NAN, 1.0),
        ];
        for (load, want) in cases {
            assert!((shed.factor(load) - want).abs() < 1e-9, "{load}");
        }
        let custom = Shed {
            above: 0.5,
            at: 1.0,
        };
        assert!((custom.factor(0.75) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn scaled_never_rounds_a_live_weight_to_standby() {
        let cases = [
            (100, 1.0, 100),
            (100, 0.1, 10),
            (100, 0.555, 56),
            (1, 0.1, 1),
            (100, 0.0, 0),
            (0, 1.0, 0),
            (100, 2.0, 100),
            (100, f64::NAN, 0),
        ];
        for (base, factor, want) in cases {
            assert_eq!(scaled(base, factor), want, "{base} x {factor}");
        }
    }

    fn up(configured: u32) -> Input {
        Input {
            configured,
            serving: true,
            ..Input::default()
        }
    }

    #[test]
    fn region_weights() {
        let shed = Shed::default();
        let loaded = |l: f64| Input {
            load: Some(l),
            ..up(100)
        };
        let back = |secs: u64| Input {
            recovered_for: S(secs),
            ..up(100)
        };
        // (name, endpoints, slow start, weights, region share, transition)
        type Case = (
            &'static str,
            Vec<Input>,
            Option<Duration>,
            Vec<u32>,
            f64,
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                "steady",
                vec![up(100), up(50)],
                S(60),
                vec![100, 50],
                1.0,
                false,
            ),
            (
                "one sheds halfway, one is fine",
                vec![loaded(0.875), loaded(0.2)],
                None,
                vec![50, 100],
                1.0,
                true,
            ),
            (
                "all overloaded: the least loaded stays",
                vec![loaded(0.99), loaded(0.96), loaded(1.0)],
                None,
                vec![0, 1, 0],
                1.0,
                true,
            ),
            (
                "a lone overloaded endpoint stays",
                vec![
                    loaded(1.0),
                    Input {
                        serving: false,
                        ..up(100)
                    },
                ],
                None,
                vec![1, 100],
                1.0,
                true,
            ),
            (
                "one endpoint ramping, the region is not coming back",
                vec![back(30), up(100)],
                S(60),
                vec![55, 100],
                1.0,
                true,
            ),
            (
                "a region coming back takes its ramped share",
                vec![back(0), back(30)],
                S(60),
                vec![10, 55],
                0.55,
                true,
            ),
            (
                "ramp and shedding multiply",
                vec![
                    Input {
                        load: Some(0.875),
                        ..back(30)
                    },
                    up(100),
                ],
                S(60),
                vec![28, 100],
                1.0,
                true,
            ),
            (
                "no slow start: back at full weight",
                vec![back(0), back(0)],
                None,
                vec![100, 100],
                1.0,
                false,
            ),
            (
                "a weight hint replaces the configured weight, standbys stay",
                vec![
                    Input {
                        hint: Some(300),
                        ..up(100)
                    },
                    Input {
                        hint: Some(300),
                        ..up(0)
                    },
                ],
                None,
                vec![300, 0],
                1.0,
                false,
            ),
            (
                "counting votes are a transition",
                vec![Input {
                    transition: true,
                    ..up(100)
                }],
                None,
                vec![100],
                1.0,
                true,
            ),
        ];
        for (name, inputs, slow, want, share, transition) in cases {
            let got = weigh(&inputs, slow, shed);
            let weights: Vec<u32> = got.endpoints.iter().map(|o| o.weight).collect();
            assert_eq!(weights, want, "{name}");
            assert!((got.region_share - share).abs() < 1e-9, "{name}: {got:?}");
            assert_eq!(got.transition, transition, "{name}");
        }
    }

    #[test]
    fn dynamic_ttl() {
        // (dynamic, transition, fallback, ttl)
        let cases = [
            (false, true, true, 300),
            (true, false, false, 300),
            (true, true, false, 5),
            (true, false, true, 5),
        ];
        for (dynamic, transition, fallback, want) in cases {
            assert_eq!(ttl(300, 5, dynamic, transition, fallback), want);
        }
    }
}
