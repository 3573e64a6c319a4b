//! Alert severities (P1-P4, as operators page) and the pure rule that grades an endpoint
//! transition by what still serves afterwards. The hub applies it; webhooks and metrics carry
//! the result.

use std::fmt;

use serde::Serialize;

use super::aggregate::Health;

/// How urgent an alert is, as operators page: P1 most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Severity {
    /// A service answers from its fallback: no serving endpoint anywhere.
    P1,
    /// A region of a service has no serving endpoint.
    P2,
    /// A single endpoint went down or started shedding load.
    P3,
    /// A recovery (also of shedding) or a completed drain.
    P4,
}

impl Severity {
    /// Every severity, most urgent first.
    pub const ALL: [Self; 4] = [Self::P1, Self::P2, Self::P3, Self::P4];

    /// `P1` .. `P4`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::P1 => "P1",
            Self::P2 => "P2",
            Self::P3 => "P3",
            Self::P4 => "P4",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("`{s}` is not a severity (P1, P2, P3 or P4)"))
    }
}

/// The severity of an endpoint going to `to`, given whether its service and its region still
/// have a serving endpoint afterwards.
pub fn severity(to: Health, service_serving: bool, region_serving: bool) -> Severity {
    match to {
        Health::Up => Severity::P4,
        Health::Down if !service_serving => Severity::P1,
        Health::Down if !region_serving => Severity::P2,
        Health::Down => Severity::P3,
    }
}
