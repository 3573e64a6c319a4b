//! The control plane's counters: reloads by result and the zones serving their previous
//! version.
//!
//! Owns: [`ReloadMetrics`]. Must never: be written from anywhere but the control plane's
//! reload (it replaces the kept-zone series wholesale).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeptLabels {
    zone: String,
    file: String,
}

/// Reload counters. [`Default`] registers nowhere.
#[derive(Debug)]
pub struct ReloadMetrics {
    reloads: Family<ResultLabels, Counter>,
    reloads_ok: Counter,
    reloads_failed: Counter,
    zones_kept: Family<KeptLabels, Gauge>,
}

impl Default for ReloadMetrics {
    fn default() -> Self {
        let reloads = Family::<ResultLabels, Counter>::default();
        let reloads_ok = reloads
            .get_or_create(&ResultLabels { result: "ok" })
            .clone();
        let reloads_failed = reloads
            .get_or_create(&ResultLabels { result: "failed" })
            .clone();
        Self {
            reloads,
            reloads_ok,
            reloads_failed,
            zones_kept: Family::default(),
        }
    }
}

impl ReloadMetrics {
    /// Registers the reload counters and the kept-zone gauges.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "meridian_reloads",
            "Reloads of zones, GeoIP and keys, by result",
            self.reloads.clone(),
        );
        registry.register(
            "meridian_zone_kept_previous",
            "1 for each zone serving its previous version because the last reload rejected \
             its file (the reload response and log say why)",
            self.zones_kept.clone(),
        );
    }

    /// Counts a reload.
    pub fn record_reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.inc();
        } else {
            self.reloads_failed.inc();
        }
    }

    /// Replaces the set of zones kept at their previous version: (origin, file).
    pub fn set_zones_kept(&self, kept: &[(String, String)]) {
        self.zones_kept.clear();
        for (zone, file) in kept {
            self.zones_kept
                .get_or_create(&KeptLabels {
                    zone: zone.clone(),
                    file: file.clone(),
                })
                .set(1);
        }
    }
}
