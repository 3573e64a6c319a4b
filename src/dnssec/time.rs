//! Timestamps as DNSSEC writes them: seconds since the epoch, BIND's `YYYYMMDDHHMMSS`,
//! RFC 3339 (`2026-01-02T03:04:05Z`), and durations with a unit (`14d`).
//!
//! Plain arithmetic on the proleptic Gregorian calendar (UTC, no leap seconds), so no date
//! crate is needed for the few conversions keys and zone files use.

/// Days from 1970-01-01 to `y-m-d` (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `(year, month, day)` of a day count from 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Seconds since the epoch of the given UTC fields, or None when a field is out of range.
fn from_fields(f: [i64; 6]) -> Option<u64> {
    let [y, mo, d, h, mi, s] = f;
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || d < 1
        || d > days_in_month(y, mo)
        || !(0..24).contains(&h)
        || !(0..60).contains(&mi)
        || !(0..61).contains(&s)
    {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    u64::try_from(secs).ok()
}

fn digits(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses BIND's `YYYYMMDDHHMMSS` (as in `.private` timing fields and RRSIG presentation).
pub fn parse_compact(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.len() != 14 {
        return None;
    }
    let f = |a: usize, b: usize| t.get(a..b).and_then(digits);
    from_fields([
        f(0, 4)?,
        f(4, 6)?,
        f(6, 8)?,
        f(8, 10)?,
        f(10, 12)?,
        f(12, 14)?,
    ])
}

/// Parses a point in time as zone files write it: RFC 3339 in UTC (`2026-01-02T03:04:05Z`),
/// BIND's `YYYYMMDDHHMMSS`, or seconds since the epoch.
pub fn parse_time(text: &str) -> Option<u64> {
    let t = text.trim();
    if let Some(v) = parse_compact(t) {
        return Some(v);
    }
    if t.len() <= 11 && t.bytes().all(|b| b.is_ascii_digit()) && !t.is_empty() {
        return t.parse().ok();
    }
    let t = t.strip_suffix('Z').or_else(|| t.strip_suffix('z'))?;
    let (date, time) = t.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let mut c = time.split(':');
    let y = digits(d.next()?)?;
    let mo = digits(d.next()?)?;
    let day = digits(d.next()?)?;
    let h = digits(c.next()?)?;
    let mi = digits(c.next()?)?;
    let s = digits(c.next()?)?;
    if d.next().is_some() || c.next().is_some() {
        return None;
    }
    from_fields([y, mo, day, h, mi, s])
}

/// `YYYYMMDDHHMMSS` of `secs` since the epoch (UTC).
pub fn format_compact(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parses a duration: whole seconds, or a number with a unit `s`, `m`, `h`, `d` or `w`.
pub fn parse_duration(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = digits(num)?.try_into().ok()?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Seconds since the epoch now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_round_trips_and_matches_known_instants() {
        assert_eq!(parse_compact("19700101000000"), Some(0));
        assert_eq!(parse_compact("20000301000000"), Some(951_868_800));
        assert_eq!(parse_compact("20261202011500"), Some(1_796_174_100));
        for t in [0, 951_868_800, 1_796_174_100, 4_102_444_799] {
            assert_eq!(parse_compact(&format_compact(t)), Some(t));
        }
        assert_eq!(parse_compact("20260230000000"), None);
        assert_eq!(parse_compact("2026023000000x"), None);
    }

    #[test]
    fn rfc3339_epoch_and_durations() {
        assert_eq!(parse_time("2026-12-02T01:15:00Z"), Some(1_796_174_100));
        assert_eq!(parse_time("1796174100"), Some(1_796_174_100));
        assert_eq!(parse_time("2026-12-02T01:15:00"), None);
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_duration("14d"), Some(14 * 86_400));
        assert_eq!(parse_duration("1h"), Some(3600));
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("2y"), None);
        assert_eq!(parse_duration("d"), None);
    }
}
