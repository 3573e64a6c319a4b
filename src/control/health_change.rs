//! What changed between two health snapshots, as the publisher needs it to rebuild only the
//! services concerned (`routing::publish::HealthChange`).
//!
//! Owns: the comparison. Pure; walks the two decided views once (in key order, both sorted)
//! and the two override lists, so its cost is that of the health state, not of the table.
//! Never: looks at the table (the publisher resolves names to services).

use std::cmp::Ordering;

use crate::health::aggregate::{EndpointSignals, EndpointStatus, Health};
use crate::health::hub::HealthSnapshot;
use crate::health::overrides::Override;
use crate::health::report::EndpointKey;
use crate::routing::publish::{HealthChange, ServiceChange};

/// The services whose endpoints' state, signals or overrides differ between `before` and
/// `now`. An endpoint whose only difference is its slow-start clock is marked so
/// ([`ServiceChange::recovered`]); latency alone is no change (the compiler does not use it).
pub fn health_change(before: &HealthSnapshot, now: &HealthSnapshot) -> HealthChange {
    let mut out = Vec::new();
    let mut a = before.view().status().iter().peekable();
    let mut b = now.view().status().iter().peekable();
    loop {
        let (key, old, new) = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((ka, sa)), Some((kb, sb))) => match ka.cmp(kb) {
                Ordering::Equal => {
                    let item = (*ka, Some(*sa), Some(*sb));
                    a.next();
                    b.next();
                    item
                }
                Ordering::Less => {
                    let item = (*ka, Some(*sa), None);
                    a.next();
                    item
                }
                Ordering::Greater => {
                    let item = (*kb, None, Some(*sb));
                    b.next();
                    item
                }
            },
            (Some((ka, sa)), None) => {
                let item = (*ka, Some(*sa), None);
                a.next();
                item
            }
            (None, Some((kb, sb))) => {
                let item = (*kb, None, Some(*sb));
                b.next();
                item
            }
        };
        if let Some(change) = endpoint_change(key, old, new) {
            out.push(change);
        }
    }
    let same =
        |x: &Override, y: &Override| x.id == y.id && x.state == y.state && x.target == y.target;
    let olds = before.overrides().list();
    let news = now.overrides().list();
    let gone = olds.iter().filter(|o| !news.iter().any(|n| same(o, n)));
    let came = news.iter().filter(|n| !olds.iter().any(|o| same(o, n)));
    for o in gone.chain(came) {
        out.push(ServiceChange {
            zone: o.target.zone.clone(),
            service: o.target.service.clone(),
            recovered: None,
        });
    }
    HealthChange::Services(out)
}

/// What the compiler reads of an endpoint's status (an endpoint the view lacks is up, with
/// no signals: `HealthView::health`).
fn inputs(status: Option<&EndpointStatus>) -> (Health, EndpointSignals) {
    status.map_or((Health::Up, EndpointSignals::default()), |s| {
        (s.health, s.signals)
    })
}

fn endpoint_change(
    key: &EndpointKey,
    old: Option<&EndpointStatus>,
    new: Option<&EndpointStatus>,
) -> Option<ServiceChange> {
    let ((h0, s0), (h1, s1)) = (inputs(old), inputs(new));
    let weighed_alike =
        s0.load == s1.load && s0.weight == s1.weight && s0.transition == s1.transition;
    let recovered = if h0 != h1 || !weighed_alike {
        None
    } else if s0.recovered_for != s1.recovered_for {
        Some((s0.recovered_for, s1.recovered_for))
    } else {
        return None;
    };
    Some(ServiceChange {
        zone: key.zone().to_string(),
        service: key.service().to_string(),
        recovered,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::health::export::HealthMetrics;
    use crate::health::hub::HealthHub;
    use crate::health::overrides::{Forced, NewOverride, Target};

    fn hub() -> HealthHub {
        let key = EndpointKey::new("shop.example.", "www", [192, 0, 2, 1].into()).unwrap();
        HealthHub::new(
            vec![key],
            Duration::from_secs(60),
            None,
            Arc::new(HealthMetrics::default()),
        )
    }

    fn services(change: &HealthChange) -> Vec<(String, String)> {
        match change {
            HealthChange::Everything => vec![("*".into(), "*".into())],
            HealthChange::Services(list) => list
                .iter()
                .map(|c| (c.zone.clone(), c.service.clone()))
                .collect(),
        }
    }

    #[test]
    fn an_override_names_its_service_and_nothing_else_changes() {
        let hub = hub();
        hub.decide();
        let before = hub.snapshot();
        hub.decide();
        assert_eq!(services(&health_change(&before, &hub.snapshot())), vec![]);
        let new = NewOverride {
            target: Target {
                zone: "shop.example".into(),
                service: "api".into(),
                region: None,
                address: None,
            },
            state: Forced::Down,
            expires_in_seconds: 600,
            reason: "test".into(),
        };
        let added = hub.add_override(new, |_| true).unwrap();
        hub.decide();
        let after = hub.snapshot();
        let want = vec![("shop.example".to_string(), "api".to_string())];
        assert_eq!(services(&health_change(&before, &after)), want);
        assert!(hub.remove_override(added.id));
        hub.decide();
        assert_eq!(services(&health_change(&after, &hub.snapshot())), want);
    }
}
