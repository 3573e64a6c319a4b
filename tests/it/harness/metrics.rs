//! Reading Prometheus/OpenMetrics text: one parser for every test that looks at `/metrics`.
//!
//! Owns: selectors (`name{label="value"}`) and summing the series they match. Must never:
//! fetch anything (the caller brings the text).

use std::collections::BTreeMap;

/// The sum of the series in `text` that match `selector` (`name` or `name{k="v",...}`: the
/// given labels must match, others are ignored). `None` when the metric family is not in the
/// text at all; a family without (matching) series sums to 0.
pub fn sum(text: &str, selector: &str) -> Option<f64> {
    let (name, want) =
        parse_series(selector).unwrap_or_else(|| panic!("bad metric selector {selector:?}"));
    // OpenMetrics names a counter family without its `_total` suffix.
    let family = name.strip_suffix("_total").unwrap_or(&name);
    let mut family_seen = text.lines().any(|l| {
        l.starts_with("# TYPE ")
            && matches!(l.split_whitespace().nth(2), Some(f) if f == name || f == family)
    });
    let mut total = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((n, labels)) = parse_series(series) else {
            continue;
        };
        if n != name {
            continue;
        }
        family_seen = true;
        if want.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            total += value
                .parse::<f64>()
                .unwrap_or_else(|e| panic!("{series}: bad value {value:?}: {e}"));
        }
    }
    family_seen.then_some(total)
}

/// Splits `name{a="x",b="y"}` into the name and its labels.
fn parse_series(s: &str) -> Option<(String, BTreeMap<String, String>)> {
    let s = s.trim();
    let Some((name, labels)) = s.split_once('{') else {
        return Some((s.to_string(), BTreeMap::new()));
    };
    let labels = labels.strip_suffix('}')?;
    let mut map = BTreeMap::new();
    // Label values in these tests never contain `",` so a simple split is enough.
    for pair in labels.split("\",").filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair.split_once('=')?;
        map.insert(
            k.trim().trim_start_matches(',').to_string(),
            v.trim().trim_matches('"').to_string(),
        );
    }
    Some((name.to_string(), map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_series() {
        let (n, l) =
            parse_series(r#"meridian_queries_total{transport="udp",rcode="NOERROR"}"#).unwrap();
        assert_eq!(n, "meridian_queries_total");
        assert_eq!(l["transport"], "udp");
        assert_eq!(l["rcode"], "NOERROR");
        assert_eq!(
            parse_series("meridian_table_generation").unwrap().1.len(),
            0
        );
    }

    #[test]
    fn sums_matching_series_and_tells_a_missing_family() {
        let text = "# TYPE meridian_queries counter\n\
                    meridian_queries_total{transport=\"udp\",rcode=\"NOERROR\"} 3\n\
                    meridian_queries_total{transport=\"tcp\",rcode=\"NOERROR\"} 4\n\
                    meridian_queries_total{transport=\"udp\",rcode=\"REFUSED\"} 1\n";
        assert_eq!(sum(text, "meridian_queries_total"), Some(8.0));
        assert_eq!(
            sum(text, r#"meridian_queries_total{transport="udp"}"#),
            Some(4.0)
        );
        assert_eq!(
            sum(text, r#"meridian_queries_total{rcode="SERVFAIL"}"#),
            Some(0.0)
        );
        assert_eq!(sum(text, "meridian_reloads_total"), None);
    }
}
