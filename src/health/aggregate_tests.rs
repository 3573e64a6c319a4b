use super::*;
use crate::health::report::EndpointReport;

const INTERVAL: u64 = 5; // seconds; votes are fresh for 15 s

/// A book created a minute before `t0`: past the start-up wait of every test interval.
fn settled(known: impl IntoIterator<Item = EndpointKey>, t0: Instant) -> HealthBook {
    HealthBook::new(known, t0.checked_sub(Duration::from_secs(60)).unwrap())
}

fn key(n: u8) -> EndpointKey {
    EndpointKey::new("shop.example", "www", [192, 0, 2, n].into()).unwrap()
}

/// One prober report: (prober, region, sequence, sent at (s), votes on key(1..)).
fn report(prober: &str, region: &str, seq: u64, at: u64, votes: &[VoteState]) -> ProbeReport {
    ProbeReport {
        prober_id: ProberId::new(prober),
        region: region.into(),
        boot_id: "boot-1".into(),
        sequence: seq,
        sent_at_ms: 1_700_000_000_000 + at * 1000,
        interval_ms: INTERVAL * 1000,
        config_digest: "d".into(),
        endpoints: votes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    key(u8::try_from(i).unwrap() + 1),
                    EndpointReport {
                        state: *s,
                        consecutive: 3,
                        latency_us: Some(100),
                        checked_at_ms: None,
                        reason: match s {
                            VoteState::Up => "ok".into(),
                            _ => "connect refused".into(),
                        },
                        load: None,
                        weight: None,
                    },
                )
            })
            .collect(),
    }
}

use VoteState::{Down as D, Unknown as U, Up as Up_};

/// A step: at `t` seconds, these probers report one vote on key(1) (prober, region, vote);
/// then decide and expect `want`.
struct Step {
    t: u64,
    votes: &'static [(&'static str, &'static str, VoteState)],
    want: Health,
}

fn run(name: &str, steps: &[Step]) -> HealthBook {
    let t0 = Instant::now();
    let mut book = settled([key(1)], t0);
    let mut seq = 0;
    for (i, step) in steps.iter().enumerate() {
        let now = t0 + Duration::from_secs(step.t);
        for (prober, region, vote) in step.votes {
            seq += 1;
            book.ingest(&report(prober, region, seq, step.t, &[*vote]), now)
                .unwrap();
        }
        let got = book.decide(now).view.health(&key(1));
        assert_eq!(got, step.want, "{name}: step {i} at t={}", step.t);
    }
    book
}

#[test]
fn decision_table() {
    let cases: &[(&str, &[Step])] = &[
        (
            "single region majority down",
            &[Step {
                t: 0,
                votes: &[("a1", "eu", D), ("a2", "eu", D), ("a3", "eu", Up_)],
                want: Health::Down,
            }],
        ),
        (
            "single region majority up after down",
            &[
                Step {
                    t: 0,
                    votes: &[("a1", "eu", D), ("a2", "eu", D)],
                    want: Health::Down,
                },
                Step {
                    t: 5,
                    votes: &[("a1", "eu", Up_), ("a2", "eu", Up_)],
                    want: Health::Up,
                },
            ],
        ),
        (
            "one of two regions says down: not enough",
            &[Step {
                t: 0,
                votes: &[("a1", "eu", D), ("b1", "us", Up_)],
                want: Health::Up,
            }],
        ),
        (
            "two regions agree on down",
            &[Step {
                t: 0,
                votes: &[("a1", "eu", D), ("b1", "us", D)],
                want: Health::Down,
            }],
        ),
        (
            "down region plus tied region is not two regions",
            &[Step {
                t: 0,
                votes: &[("a1", "eu", D), ("b1", "us", D), ("b2", "us", Up_)],
                want: Health::Up,
            }],
        ),
        (
            "partitioned prober sees everything down: no flip",
            &[Step {
                t: 0,
                votes: &[
                    ("a1", "eu", Up_),
                    ("a2", "eu", Up_),
                    ("a3", "eu", D),
                    ("b1", "us", Up_),
                    ("c1", "ap", D),
                ],
                want: Health::Up,
            }],
        ),
        (
            "two of three regions down",
            &[Step {
                t: 0,
                votes: &[("a1", "eu", D), ("b1", "us", D), ("c1", "ap", Up_)],
                want: Health::Down,
            }],
        ),
        (
            "tie between regions keeps down",
            &[
                Step {
                    t: 0,
                    votes: &[("a1", "eu", D), ("b1", "us", D)],
                    want: Health::Down,
                },
                Step {
                    t: 5,
                    votes: &[("a1", "eu", Up_)],
                    want: Health::Down,
                },
            ],
        ),
        (
            "tie inside the only region keeps state",
            &[
                Step {
                    t: 0,
                    votes: &[("a1", "eu", D), ("a2", "eu", D)],
                    want: Health::Down,
                },
                Step {
                    t: 5,
                    votes: &[("a1", "eu", Up_)],
                    want: Health::Down,
                },
            ],
        ),
        (
            "unknown votes are no votes inside a region",
            &[Step {
                t: 0,
                votes: &[("a1", "eu", D), ("a2", "eu", U)],
                want: Health::Down,
            }],
        ),
        (
            "a region still warming up counts as reporting: one down region is not enough",
            &[
                Step {
                    t: 0,
                    votes: &[("a1", "eu", D), ("a2", "eu", U), ("b1", "us", U)],
                    want: Health::Up,
                },
                // Once us sees it too, two regions agree.
                Step {
                    t: 1,
                    votes: &[("b1", "us", D)],
                    want: Health::Down,
                },
            ],
        ),
        (
            "a region whose unknown votes went stale stops counting",
            &[
                Step {
                    t: 0,
                    votes: &[("b1", "us", U)],
                    want: Health::Up,
                },
                Step {
                    t: 16,
                    votes: &[("a1", "eu", D)],
                    want: Health::Down,
                },
            ],
        ),
        (
            "stale up votes stop counting",
            &[
                // b1's up vote is fresh until t=15; at t=16 only eu (down) remains fresh.
                Step {
                    t: 0,
                    votes: &[("a1", "eu", D), ("b1", "us", Up_)],
                    want: Health::Up,
                },
                Step {
                    t: 15,
                    votes: &[("a1", "eu", D)],
                    want: Health::Up,
                },
                Step {
                    t: 16,
                    votes: &[("a1", "eu", D)],
                    want: Health::Down,
                },
            ],
        ),
        (
            "nobody heard: keep down for the grace period, then up",
            &[
                Step {
                    t: 0,
                    votes: &[("a1", "eu", D)],
                    want: Health::Down,
                },
                // stale from t=15; grace (300 s) runs out at t=315
                Step {
                    t: 100,
                    votes: &[],
                    want: Health::Down,
                },
                Step {
                    t: 314,
                    votes: &[],
                    want: Health::Down,
                },
                Step {
                    t: 315,
                    votes: &[],
                    want: Health::Up,
                },
            ],
        ),
    ];
    for (name, steps) in cases {
        run(name, steps);
    }
}

#[test]
fn right_after_start_a_lone_region_waits_one_freshness_window() {
    // The partitioned prober's report is the first to arrive after a restart.
    let t0 = Instant::now();
    let mut book = HealthBook::new([key(1)], t0);
    book.ingest(&report("c1", "us", 1, 0, &[D]), t0).unwrap();
    assert_eq!(book.decide(t0).view.health(&key(1)), Health::Up);
    // The honest region reports a second later: a tie, and the endpoint is still up.
    let t1 = t0 + Duration::from_secs(1);
    book.ingest(&report("a1", "eu", 1, 1, &[Up_]), t1).unwrap();
    assert_eq!(book.decide(t1).view.health(&key(1)), Health::Up);

    // A region that really is alone decides once the window (3 x 5 s) has passed.
    let mut alone = HealthBook::new([key(1)], t0);
    alone.ingest(&report("a1", "eu", 1, 0, &[D]), t0).unwrap();
    let t14 = t0 + Duration::from_secs(14);
    alone.ingest(&report("a1", "eu", 2, 14, &[D]), t14).unwrap();
    assert_eq!(alone.decide(t14).view.health(&key(1)), Health::Up);
    let t15 = t0 + Duration::from_secs(15);
    assert_eq!(alone.decide(t15).view.health(&key(1)), Health::Down);

    // Two regions agreeing need no wait.
    let mut two = HealthBook::new([key(1)], t0);
    two.ingest(&report("a1", "eu", 1, 0, &[D]), t0).unwrap();
    two.ingest(&report("b1", "us", 1, 0, &[D]), t0).unwrap();
    assert_eq!(two.decide(t0).view.health(&key(1)), Health::Down);
}

#[test]
fn transitions_are_reported_once_with_votes_and_cause() {
    let t0 = Instant::now();
    let mut book = settled([key(1), key(2)], t0);
    book.ingest(&report("a1", "eu", 1, 0, &[D, Up_]), t0)
        .unwrap();
    let d = book.decide(t0);
    assert_eq!(d.transitions.len(), 1);
    let tr = &d.transitions[0];
    assert_eq!(
        (tr.key.clone(), tr.from, tr.to),
        (key(1), Health::Up, Health::Down)
    );
    assert_eq!(tr.cause, Cause::Votes);
    assert_eq!(tr.votes.down_regions, 1);
    assert_eq!(tr.votes.regions[0].region, "eu");
    assert!(book.decide(t0).transitions.is_empty(), "no repeat");

    let late = t0 + Duration::from_secs(15) + DEFAULT_GRACE;
    let d = book.decide(late);
    assert_eq!(d.transitions.len(), 1);
    assert_eq!(d.transitions[0].cause, Cause::GraceExpired);
    assert_eq!(d.view.health(&key(1)), Health::Up);
}

#[test]
fn replay_is_rejected_without_changing_state() {
    let t0 = Instant::now();
    let mut book = settled([key(1)], t0);
    book.ingest(&report("a1", "eu", 5, 0, &[D]), t0).unwrap();
    for seq in [5, 4] {
        let replay = report("a1", "eu", seq, 1, &[Up_]);
        assert_eq!(book.ingest(&replay, t0), Err(RejectReason::Replay));
    }
    assert_eq!(book.decide(t0).view.health(&key(1)), Health::Down);

    // Same sequence under a new boot id is a restarted prober, not a replay.
    let mut rebooted = report("a1", "eu", 1, 2, &[Up_]);
    rebooted.boot_id = "boot-2".into();
    book.ingest(&rebooted, t0).unwrap();
    assert_eq!(book.decide(t0).view.health(&key(1)), Health::Up);

    // A different prober has its own sequence.
    book.ingest(&report("a2", "eu", 1, 2, &[Up_]), t0).unwrap();
}

#[test]
fn delayed_report_does_not_override_newer_vote() {
    let t0 = Instant::now();
    let mut book = settled([key(1)], t0);
    book.ingest(&report("a1", "eu", 8, 0, &[D]), t0).unwrap();
    // The prober restarts; its clock is behind now, which changes nothing.
    let mut newer = report("a1", "eu", 1, 0, &[Up_]);
    newer.boot_id = "boot-2".into();
    book.ingest(&newer, t0).unwrap();
    let older = report("a1", "eu", 9, 5, &[D]);
    let s = book.ingest(&older, t0).unwrap();
    assert_eq!((s.recorded, s.outdated), (0, 1));
    assert_eq!(book.decide(t0).view.health(&key(1)), Health::Up);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Recorded,
    Outdated,
    Replay,
}

/// One report of prober a1 on key(1): received at `t` s, from `boot` with `seq`, its
/// `sent_at` `sent` s away from the receiver's clock; then the outcome and the decision.
struct Order {
    t: u64,
    boot: &'static str,
    seq: u64,
    sent: i64,
    vote: VoteState,
    want: Outcome,
    health: Health,
}

const fn order(
    t: u64,
    boot: &'static str,
    seq: u64,
    sent: i64,
    vote: VoteState,
    want: Outcome,
    health: Health,
) -> Order {
    Order {
        t,
        boot,
        seq,
        sent,
        vote,
        want,
        health,
    }
}

#[test]
fn vote_order_is_boot_and_sequence_as_received_never_the_probers_clock() {
    use Health::{Down as HD, Up as HU};
    use Outcome::{Outdated, Recorded, Replay};
    let cases: &[(&str, &[Order])] = &[
        (
            "a report 29 s ahead does not shadow the correctly timed ones after it",
            &[
                order(0, "b1", 1, 29, Up_, Recorded, HU),
                order(1, "b1", 2, 0, D, Recorded, HD),
                order(2, "b1", 3, 0, D, Recorded, HD),
                order(3, "b1", 4, 0, Up_, Recorded, HU),
            ],
        ),
        (
            "a clock stepping back keeps being recorded",
            &[
                order(0, "b1", 1, 0, D, Recorded, HD),
                order(1, "b1", 2, -29, Up_, Recorded, HU),
                order(2, "b1", 3, -29, D, Recorded, HD),
            ],
        ),
        (
            "a clock jumping back and forth within the skew keeps being recorded",
            &[
                order(0, "b1", 1, 29, D, Recorded, HD),
                order(1, "b1", 2, -29, Up_, Recorded, HU),
                order(2, "b1", 3, 10, D, Recorded, HD),
                order(3, "b1", 4, -10, Up_, Recorded, HU),
            ],
        ),
        (
            "within a boot the sequence orders, whatever sent_at says",
            &[
                order(0, "b1", 5, 0, D, Recorded, HD),
                order(1, "b1", 4, 5, Up_, Replay, HD),
                order(2, "b1", 5, 5, Up_, Replay, HD),
                order(3, "b1", 6, -20, Up_, Recorded, HU),
            ],
        ),
        (
            "a newer boot supersedes; a delayed report of the older one is outdated",
            &[
                order(0, "b1", 10, 0, D, Recorded, HD),
                order(1, "b2", 1, -25, Up_, Recorded, HU),
                order(2, "b1", 11, 25, D, Outdated, HU),
                order(3, "b2", 2, 0, Up_, Recorded, HU),
                order(4, "b1", 11, 0, D, Replay, HU),
            ],
        ),
        (
            "the older boot's reports count until the newer one is heard",
            &[
                order(0, "b1", 10, 0, D, Recorded, HD),
                order(1, "b1", 11, 0, D, Recorded, HD),
                order(2, "b2", 1, 0, Up_, Recorded, HU),
            ],
        ),
        (
            "a late report of a short-lived boot freezes the live one for one window at most",
            &[
                order(0, "b1", 1, 0, Up_, Recorded, HU),
                // b2 lived briefly before b1 and its only report arrives now.
                order(1, "b2", 1, -5, D, Recorded, HD),
                // Its vote is fresh until t=16: b1 waits.
                order(2, "b1", 2, 0, Up_, Outdated, HD),
                order(16, "b1", 3, 0, Up_, Outdated, HD),
                order(17, "b1", 4, 0, Up_, Recorded, HU),
                // Now b1 is the newest, and b2 the superseded one.
                order(18, "b2", 2, 0, D, Outdated, HU),
                order(19, "b1", 5, 0, Up_, Recorded, HU),
            ],
        ),
    ];
    for (name, steps) in cases {
        let t0 = Instant::now();
        let mut book = settled([key(1)], t0);
        for (i, step) in steps.iter().enumerate() {
            let now = t0 + Duration::from_secs(step.t);
            let mut r = report("a1", "eu", step.seq, step.t, &[step.vote]);
            r.boot_id = step.boot.into();
            r.sent_at_ms = r.sent_at_ms.checked_add_signed(step.sent * 1000).unwrap();
            let got = match book.ingest(&r, now) {
                Ok(s) if (s.recorded, s.outdated) == (1, 0) => Outcome::Recorded,
                Ok(s) if (s.recorded, s.outdated) == (0, 1) => Outcome::Outdated,
                Ok(s) => panic!("{name}: step {i}: {s:?}"),
                Err(RejectReason::Replay) => Outcome::Replay,
                Err(e) => panic!("{name}: step {i}: {e}"),
            };
            assert_eq!(got, step.want, "{name}: step {i}");
            let view = book.decide(now).view;
            assert_eq!(view.health(&key(1)), step.health, "{name}: step {i}");
            let v = &view.status()[&key(1)].votes[0];
            assert_eq!(
                v.boot_id.as_str(),
                steps
                    .iter()
                    .take(i + 1)
                    .rev()
                    .find(|s| s.want == Outcome::Recorded)
                    .map_or("", |s| s.boot),
                "{name}: step {i}: the vote shown is not the last recorded one"
            );
        }
    }
}

#[test]
fn boot_memory_ends_after_a_quiet_period() {
    // After BOOT_MEMORY without a report, a boot's sequence is forgotten: by then a
    // captured report is far outside the ±30 s sent_at window anyway.
    let t0 = Instant::now();
    let mut book = settled([key(1)], t0);
    book.ingest(&report("a1", "eu", 5, 0, &[D]), t0).unwrap();
    let later = t0 + BOOT_MEMORY + Duration::from_secs(1);
    let s = book
        .ingest(&report("a1", "eu", 1, 0, &[Up_]), later)
        .unwrap();
    assert_eq!(s.recorded, 1);
    assert_eq!(
        book.ingest(&report("a1", "eu", 1, 0, &[Up_]), later),
        Err(RejectReason::Replay)
    );
}

#[test]
fn unknown_endpoints_are_counted_and_ignored() {
    let t0 = Instant::now();
    let mut book = settled([key(1)], t0);
    let s = book
        .ingest(&report("a1", "eu", 1, 0, &[D, D, D]), t0)
        .unwrap();
    assert_eq!(
        s,
        IngestSummary {
            recorded: 1,
            unknown_endpoints: 2,
            outdated: 0
        }
    );
    let view = book.decide(t0).view;
    assert_eq!(view.iter().count(), 1);
    assert_eq!(view.health(&key(2)), Health::Up, "unknown keys fail open");
}

#[test]
fn snapshot_without_an_endpoint_withdraws_the_vote() {
    let t0 = Instant::now();
    let mut book = settled([key(1), key(2)], t0);
    book.ingest(&report("a1", "eu", 1, 0, &[Up_, D]), t0)
        .unwrap();
    assert_eq!(book.decide(t0).view.health(&key(2)), Health::Down);
    book.ingest(&report("a1", "eu", 2, 1, &[Up_]), t0).unwrap();
    let view = book.decide(t0).view;
    assert!(view.status()[&key(2)].votes.is_empty());
    // Withdrawn is not "up": the state holds until the grace period says otherwise.
    assert_eq!(view.health(&key(2)), Health::Down);
}

#[test]
fn set_known_keeps_surviving_state() {
    let t0 = Instant::now();
    let mut book = settled([key(1), key(2)], t0);
    book.ingest(&report("a1", "eu", 1, 0, &[D, D]), t0).unwrap();
    book.decide(t0);
    let before = book.decide(t0).view.status()[&key(1)].clone();
    book.set_known([key(1), key(3)], t0);
    let view = book.decide(t0).view;
    let keys: Vec<_> = view.iter().map(|(k, h)| (k.clone(), h)).collect();
    assert_eq!(keys, [(key(1), Health::Down), (key(3), Health::Up)]);
    // The kept endpoint's votes are untouched, the same set again changes nothing.
    assert_eq!(view.status()[&key(1)], before);
    book.set_known([key(1), key(3)], t0);
    assert_eq!(book.decide(t0).view.status()[&key(1)], before);
    // Replay memory survives too: the same sequence is still refused.
    assert_eq!(
        book.ingest(&report("a1", "eu", 1, 0, &[Up_]), t0),
        Err(RejectReason::Replay)
    );
    // A reload that drops the endpoint and one that brings it back: it starts over, up.
    book.set_known([key(3)], t0);
    book.set_known([key(1), key(3)], t0);
    assert_eq!(book.decide(t0).view.health(&key(1)), Health::Up);
}

#[test]
fn status_shows_votes_ages_and_freshness() {
    let t0 = Instant::now();
    let mut book = settled([key(1)], t0);
    book.ingest(&report("a1", "eu", 1, 0, &[D]), t0).unwrap();
    book.ingest(
        &report("b1", "us", 1, 0, &[Up_]),
        t0 + Duration::from_secs(10),
    )
    .unwrap();
    let view = book.decide(t0 + Duration::from_secs(20)).view;
    let st = &view.status()[&key(1)];
    assert_eq!(st.votes.len(), 2);
    let a1 = &st.votes[0];
    assert_eq!(
        (
            a1.prober_id.as_str(),
            a1.age_ms,
            a1.fresh,
            a1.reason.as_str()
        ),
        ("a1", 20_000, false, "connect refused")
    );
    let b1 = &st.votes[1];
    assert_eq!((b1.age_ms, b1.fresh), (10_000, true));
    assert_eq!(st.tally.up_regions, 1);
    let json = serde_json::to_string(st).unwrap();
    assert!(json.contains("\"health\":\"up\""), "{json}");
}

#[test]
fn digest_depends_only_on_decided_states() {
    let t0 = Instant::now();
    let mut a = settled([key(1), key(2)], t0);
    let mut b = settled([key(2), key(1)], t0);
    a.ingest(&report("a1", "eu", 1, 0, &[D, Up_]), t0).unwrap();
    b.ingest(&report("x9", "us", 1, 0, &[D]), t0).unwrap();
    let (va, vb) = (a.decide(t0).view, b.decide(t0).view);
    assert_eq!(va.digest(), vb.digest());
    assert_eq!(va.digest().len(), 64);
    let fresh = settled([key(1), key(2)], t0).decide(t0).view;
    assert_ne!(fresh.digest(), va.digest());
    assert_eq!(va.down_count(), 1);
}

#[test]
fn severity_table() {
    // (to, service still serving, region still serving, severity)
    let cases = [
        (Health::Down, false, false, Severity::P1),
        (Health::Down, true, false, Severity::P2),
        (Health::Down, true, true, Severity::P3),
        (Health::Up, true, true, Severity::P4),
        (Health::Up, false, false, Severity::P4),
    ];
    for (to, service, region, want) in cases {
        assert_eq!(
            severity(to, service, region),
            want,
            "{to} {service} {region}"
        );
    }
    assert_eq!("p2".parse::<Severity>(), Ok(Severity::P2));
    assert!("P5".parse::<Severity>().is_err());
    assert!(Severity::P1 < Severity::P4, "P1 is the most urgent");
}

/// A report from `prober` with one vote on key(1) carrying load, weight and latency.
fn signal_report(prober: &str, seq: u64, state: VoteState, reason: &str, load: f64) -> ProbeReport {
    let mut r = report(prober, prober, seq, 0, &[state]);
    if let Some(ep) = r.endpoints.get_mut(&key(1)) {
        ep.reason = reason.into();
        ep.load = Some(load);
        ep.weight = Some(200);
        ep.latency_us = Some(seq * 1000);
        ep.checked_at_ms = Some(seq);
    }
    r
}

#[test]
fn signals_are_medians_of_fresh_votes_and_recovery_is_recorded() {
    let t0 = Instant::now();
    let mut book = settled([key(1)], t0);
    // (prober, seq, state, reason, load)
    for (p, seq, state, reason, load) in [
        ("a", 1, Up_, "ok", 0.2),
        ("b", 2, Up_, "ok", 0.9),
        ("c", 3, Up_, "ok", 2.0),
    ] {
        let r = signal_report(p, seq, state, reason, load);
        assert_eq!(
            book.new_checks(&r),
            [(key(1), seq * 1000)],
            "{p}: new check"
        );
        book.ingest(&r, t0).unwrap();
        assert!(book.new_checks(&r).is_empty(), "{p}: the same check twice");
    }
    let s = book.decide(t0).view.signals(&key(1));
    // The third load was clamped to 1.0; the median of 0.2, 0.9, 1.0 is 0.9.
    assert_eq!(s.load, Some(0.9));
    assert_eq!(s.weight, Some(200));
    assert_eq!(s.latency_us, Some(2000));
    assert!(!s.transition);
    assert_eq!(
        s.recovered_for, None,
        "endpoints start up: no slow start at start"
    );

    // One prober's latest check failed while it still says up: counting towards fall.
    let t1 = t0 + Duration::from_secs(1);
    book.ingest(&signal_report("a", 4, Up_, "status 503", 0.2), t1)
        .unwrap();
    assert!(book.decide(t1).view.signals(&key(1)).transition);

    // Down, then up again: recovered_for counts from the recovery.
    let t2 = t0 + Duration::from_secs(2);
    for (p, seq) in [("a", 5), ("b", 6), ("c", 7)] {
        book.ingest(&signal_report(p, seq, D, "timeout", 0.0), t2)
            .unwrap();
    }
    assert_eq!(book.decide(t2).view.health(&key(1)), Health::Down);
    let t3 = t0 + Duration::from_secs(3);
    for (p, seq) in [("a", 8), ("b", 9), ("c", 10)] {
        book.ingest(&signal_report(p, seq, Up_, "ok", 0.0), t3)
            .unwrap();
    }
    assert_eq!(book.decide(t3).view.health(&key(1)), Health::Up);
    let later = t3 + Duration::from_millis(1500);
    let s = book.decide(later).view.signals(&key(1));
    assert_eq!(s.recovered_for, Some(Duration::from_millis(1500)));
}
