//! Rise/fall: turning a stream of check results into a prober's vote on one endpoint.
//!
//! Owns: [`RiseFall`] (the thresholds) and [`Tracker`] (the per-endpoint counters and state).
//!
//! Never: runs checks, reads clocks or knows about other probers; it is a pure state machine.
//!
//! A tracker starts [`VoteState::Unknown`]. It becomes `Up` after `rise` consecutive successes
//! and `Down` after `fall` consecutive failures, and the same thresholds apply when leaving
//! `Unknown`: a freshly started prober does not vote until it has as much evidence as it would
//! need to change its mind later. This keeps a restarted prober from voting an endpoint down on
//! one failed check.

use crate::health::report::VoteState;

/// Rise/fall defaults are configuration: defined in `config::check`, re-exported here.
pub use crate::config::check::{DEFAULT_FALL, DEFAULT_RISE};

/// The thresholds of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
}

impl Default for RiseFall {
    fn default() -> Self {
        Self {
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
        }
    }
}

impl RiseFall {
    /// Thresholds; zero is raised to one (a state change needs at least one result).
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    /// Consecutive successes needed to go up.
    pub fn rise(self) -> u32 {
        self.rise
    }

    /// Consecutive failures needed to go down.
    pub fn fall(self) -> u32 {
        self.fall
    }
}

/// A state change of one tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// State before.
    pub from: VoteState,
    /// State after.
    pub to: VoteState,
}

/// Rise/fall state of one endpoint as seen by this prober.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracker {
    thresholds: RiseFall,
    state: VoteState,
    successes: u32,
    failures: u32,
}

impl Tracker {
    /// A tracker in `Unknown` with no results yet.
    pub fn new(thresholds: RiseFall) -> Self {
        Self {
            thresholds,
            state: VoteState::Unknown,
            successes: 0,
            failures: 0,
        }
    }

    /// Current state.
    pub fn state(&self) -> VoteState {
        self.state
    }

    /// Length of the current streak of identical results (0 before the first result).
    pub fn consecutive(&self) -> u32 {
        self.successes.max(self.failures)
    }

    /// Records one check result; returns the change if the state moved.
    pub fn observe(&mut self, ok: bool) -> Option<StateChange> {
        let next = if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            (self.successes >= self.thresholds.rise).then_some(VoteState::Up)
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            (self.failures >= self.thresholds.fall).then_some(VoteState::Down)
        };
        match next {
            Some(to) if to != self.state => {
                let from = std::mem::replace(&mut self.state, to);
                Some(StateChange { from, to })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use VoteState::{Down, Unknown, Up};

    #[test]
    fn table() {
        // (name, rise, fall, results as 'o'k / 'x' fail, state after each result)
        let cases: &[(&str, u32, u32, &str, &[VoteState])] = &[
            ("no results", 2, 3, "", &[]),
            ("rise from unknown", 2, 3, "oo", &[Unknown, Up]),
            ("fall from unknown", 2, 3, "xxx", &[Unknown, Unknown, Down]),
            (
                "one failure does not drop an up endpoint",
                2,
                3,
                "ooxoxxo",
                &[Unknown, Up, Up, Up, Up, Up, Up],
            ),
            (
                "fall after consecutive failures",
                2,
                3,
                "ooxxx",
                &[Unknown, Up, Up, Up, Down],
            ),
            (
                "interrupted rise restarts",
                3,
                1,
                "xooxooo",
                &[Down, Down, Down, Down, Down, Down, Up],
            ),
            ("rise 1 fall 1 flaps", 1, 1, "oxo", &[Up, Down, Up]),
            ("zero thresholds act as one", 0, 0, "xo", &[Down, Up]),
        ];
        for (name, rise, fall, results, want) in cases {
            let mut t = Tracker::new(RiseFall::new(*rise, *fall));
            let got: Vec<VoteState> = results
                .chars()
                .map(|c| {
                    t.observe(c == 'o');
                    t.state()
                })
                .collect();
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn changes_and_streaks() {
        let mut t = Tracker::new(RiseFall::default());
        assert_eq!(t.consecutive(), 0);
        assert_eq!(t.observe(true), None);
        assert_eq!(
            t.observe(true),
            Some(StateChange {
                from: Unknown,
                to: Up
            })
        );
        assert_eq!(t.observe(true), None, "no change when already up");
        assert_eq!(t.consecutive(), 3);
        t.observe(false);
        assert_eq!(t.consecutive(), 1);
        t.observe(false);
        assert_eq!(t.observe(false), Some(StateChange { from: Up, to: Down }));
        assert_eq!(t.consecutive(), 3);
    }
}
