//! The `[dnssec]` table of a zone file: key files (relative to the zone file), their timing,
//! and the signature policy, validated into a [`ZoneDnssec`].
//!
//! Errors name the zone file and the key (`dnssec.key[1].file`) and, for a key file that
//! cannot be used, that file too.

use std::path::Path;
use std::sync::Arc;

use hickory_proto::rr::Name;

use super::file::{DnssecFile, DurationFile, TimeFile};
use super::load::ZoneError;
use super::{clip, model::MAX_TTL};
use crate::dnssec::time::{format_compact, parse_duration, parse_time};
use crate::dnssec::zone::SigningPolicy;
use crate::dnssec::{ZoneDnssec, ZoneKey};

/// Most slots a signature cache may have.
pub const MAX_CACHE_SIZE: usize = 1 << 20;

fn invalid(path: &Path, key: impl Into<String>, message: impl Into<String>) -> ZoneError {
    ZoneError::Invalid {
        path: path.to_path_buf(),
        key: key.into(),
        message: message.into(),
    }
}

fn duration(path: &Path, key: &str, d: &DurationFile) -> Result<u64, ZoneError> {
    match d {
        DurationFile::Seconds(s) => Ok(*s),
        DurationFile::Text(t) => parse_duration(t).ok_or_else(|| {
            invalid(
                path,
                key,
                format!(
                    "`{}` is not a duration like \"14d\", \"12h\" or \"3600\"",
                    clip(t)
                ),
            )
        }),
    }
}

fn time(path: &Path, key: &str, t: &TimeFile) -> Result<u64, ZoneError> {
    let text = match t {
        TimeFile::Seconds(s) => return Ok(*s),
        TimeFile::Text(t) => t.clone(),
        TimeFile::Date(d) => d.to_string(),
    };
    parse_time(&text).ok_or_else(|| {
        invalid(
            path,
            key,
            format!(
                "`{}` is not a UTC time like 2026-01-02T03:04:05Z or 20260102030405",
                clip(&text)
            ),
        )
    })
}

/// Validates `file` (the `[dnssec]` of the zone `origin` in `path`) at time `now`.
pub(super) fn load(
    path: &Path,
    origin: &Name,
    file: &DnssecFile,
    now: u64,
) -> Result<ZoneDnssec, ZoneError> {
    let mut policy = SigningPolicy::default();
    if let Some(d) = &file.signature_validity {
        policy.validity = duration(path, "dnssec.signature_validity", d)?;
    }
    if let Some(d) = &file.signature_refresh {
        policy.refresh = duration(path, "dnssec.signature_refresh", d)?;
    }
    if let Some(d) = &file.inception_offset {
        policy.inception_offset = duration(path, "dnssec.inception_offset", d)?;
    }
    if policy.validity > u64::from(u32::MAX / 2) || policy.validity < 3600 {
        return Err(invalid(
            path,
            "dnssec.signature_validity",
            "must be between 1 hour and 68 years",
        ));
    }
    if policy.refresh == 0 || policy.refresh >= policy.validity {
        return Err(invalid(
            path,
            "dnssec.signature_refresh",
            format!(
                "must be above 0 and below signature_validity ({} s)",
                policy.validity
            ),
        ));
    }
    if let Some(ttl) = file.dnskey_ttl {
        if ttl > MAX_TTL {
            return Err(invalid(
                path,
                "dnssec.dnskey_ttl",
                format!("{ttl} is above {MAX_TTL}"),
            ));
        }
        policy.dnskey_ttl = ttl;
    }
    if let Some(n) = file.cache_size {
        if n == 0 || n > MAX_CACHE_SIZE {
            return Err(invalid(
                path,
                "dnssec.cache_size",
                format!("must be between 1 and {MAX_CACHE_SIZE}"),
            ));
        }
        policy.cache_slots = n;
    }
    if file.key.is_empty() {
        return Err(invalid(
            path,
            "dnssec.key",
            "no keys: add [[dnssec.key]] tables (`meridian dnssec keygen` makes keys)",
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut keys: Vec<Arc<ZoneKey>> = Vec::with_capacity(file.key.len());
    for (i, k) in file.key.iter().enumerate() {
        let at = |field: &str| format!("dnssec.key[{i}].{field}");
        let mut key = ZoneKey::load(&base.join(&k.file), origin)
            .map_err(|e| invalid(path, at("file"), e.to_string()))?;
        for (field, value, slot) in [
            ("publish", &k.publish, &mut key.timing.publish),
            ("activate", &k.activate, &mut key.timing.activate),
            ("retire", &k.retire, &mut key.timing.retire),
            ("remove", &k.remove, &mut key.timing.remove),
        ] {
            if let Some(v) = value {
                *slot = Some(time(path, &at(field), v)?);
            }
        }
        let t = key.timing;
        let order = [t.publish, t.activate, t.retire, t.remove];
        let mut last = None;
        for v in order.into_iter().flatten() {
            if last.is_some_and(|l| v < l) {
                return Err(invalid(
                    path,
                    format!("dnssec.key[{i}]"),
                    "times must come in the order publish <= activate <= retire <= remove",
                ));
            }
            last = Some(v);
        }
        if let Some(j) = keys
            .iter()
            .position(|o| o.dnskey_rdata() == key.dnskey_rdata())
        {
            return Err(invalid(
                path,
                at("file"),
                format!("the same key as dnssec.key[{j}]"),
            ));
        }
        keys.push(Arc::new(key));
    }
    let dnssec = ZoneDnssec::new(keys, policy);
    if dnssec.roles(now).zone_signers.is_empty() {
        let next = dnssec
            .keys
            .iter()
            .filter_map(|k| k.timing.activate.filter(|&a| a > now))
            .min()
            .map_or(String::new(), |t| {
                format!(" (the first activates at {})", format_compact(t))
            });
        return Err(invalid(
            path,
            "dnssec.key",
            format!("no key is active now{next}; a signed zone needs an active key"),
        ));
    }
    Ok(dnssec)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::load_zone;
    use crate::dnssec::Algorithm;

    const ZONE: &str = "origin = \"signed.test.\"\nns = [\"ns1.signed.test.\"]\n\
        [soa]\nmname = \"ns1.signed.test.\"\nrname = \"admin.signed.test.\"\nserial = 1\n";

    /// A directory with a key for `zone_of_key` and a zone file with `dnssec` appended.
    fn load(
        zone_of_key: &str,
        dnssec: &str,
    ) -> (
        tempfile::TempDir,
        Result<crate::config::Zone, String>,
        String,
    ) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let name =
            hickory_proto::rr::Name::from_ascii(zone_of_key).unwrap_or_else(|e| panic!("{e}"));
        let key = crate::dnssec::ZoneKey::generate(&name, Algorithm::EcdsaP256Sha256, true, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        let base = key
            .write_files(dir.path())
            .unwrap_or_else(|e| panic!("{e}"));
        let stem = base
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let path: PathBuf = dir.path().join("zone.toml");
        std::fs::write(&path, format!("{ZONE}{}", dnssec.replace("STEM", &stem)))
            .unwrap_or_else(|e| panic!("{e}"));
        let zone = load_zone(&path).map_err(|e| e.to_string());
        (dir, zone, stem)
    }

    #[test]
    fn a_zone_with_a_csk_loads_with_defaults_and_overrides() {
        let (_d, zone, _) = load(
            "signed.test.",
            "[dnssec]\nsignature_validity = \"10d\"\n[[dnssec.key]]\nfile = \"STEM.key\"\nretire = 2099-01-01T00:00:00Z\n",
        );
        let zone = zone.unwrap_or_else(|e| panic!("{e}"));
        let d = zone.dnssec.unwrap_or_else(|| panic!("signed"));
        assert_eq!(d.policy.validity, 10 * 86_400);
        assert_eq!(d.policy.refresh, crate::dnssec::zone::DEFAULT_REFRESH);
        assert_eq!(d.keys.len(), 1);
        assert_eq!(
            d.keys.first().and_then(|k| k.timing.retire),
            Some(4_070_908_800)
        );
    }

    #[test]
    fn ds_records_belong_at_delegations_and_must_parse() {
        let ds = "12345 13 2 B4C8C1FE2E7477127B27115656AD6256F424625BF5C1E2770CE6D6E37DF61D17";
        let delegation = format!(
            "[[record]]\nname = \"child\"\ntype = \"NS\"\ndata = [\"ns.other.test.\"]\n\
             [[record]]\nname = \"child\"\ntype = \"DS\"\ndata = [\"{ds}\"]\n"
        );
        let (_d, zone, _) = load("signed.test.", &delegation);
        let zone = zone.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            zone.records
                .iter()
                .any(|r| r.record_type() == hickory_proto::rr::RecordType::DS)
        );
        for (records, want) in [
            (
                format!("[[record]]\nname = \"@\"\ntype = \"DS\"\ndata = [\"{ds}\"]\n"),
                "record[0]: signed.test. has a DS but no NS records",
            ),
            (
                delegation.replace("17\"]", "\"]"),
                "record[1].data[0]: bad DS data",
            ),
        ] {
            let (_d, zone, _) = load("signed.test.", &records);
            let err = zone.map(|_| ()).expect_err(&records);
            assert!(err.contains(want), "{records}: {err}");
        }
    }

    #[test]
    fn bad_dnssec_tables_name_file_and_key() {
        let cases = [
            ("signed.test.", "[dnssec]\n", "dnssec.key: no keys"),
            (
                "signed.test.",
                "[dnssec]\n[[dnssec.key]]\nfile = \"Kmissing\"\n",
                "dnssec.key[0].file:",
            ),
            (
                "other.test.",
                "[dnssec]\n[[dnssec.key]]\nfile = \"STEM\"\n",
                "is for other.test., not for zone signed.test.",
            ),
            (
                "signed.test.",
                "[dnssec]\n[[dnssec.key]]\nfile = \"STEM\"\nactivate = \"2099-01-01T00:00:00Z\"\n",
                "dnssec.key: no key is active now (the first activates at 20990101000000)",
            ),
            (
                "signed.test.",
                "[dnssec]\n[[dnssec.key]]\nfile = \"STEM\"\nretire = \"soon\"\n",
                "dnssec.key[0].retire: `soon` is not a UTC time",
            ),
            (
                "signed.test.",
                "[dnssec]\nsignature_refresh = \"30d\"\n[[dnssec.key]]\nfile = \"STEM\"\n",
                "dnssec.signature_refresh: must be above 0 and below",
            ),
            (
                "signed.test.",
                "[dnssec]\n[[dnssec.key]]\nfile = \"STEM\"\n[[dnssec.key]]\nfile = \"STEM.private\"\n",
                "dnssec.key[1].file: the same key as dnssec.key[0]",
            ),
            (
                "signed.test.",
                "[dnssec]\n[[dnssec.key]]\nfile = \"STEM\"\nactivate = 200\nretire = 100\n",
                "dnssec.key[0]: times must come in the order",
            ),
            (
                "signed.test.",
                "[dnssec]\nkeys = []\n",
                "unknown field `keys`",
            ),
        ];
        for (owner, table, want) in cases {
            let (_d, zone, _) = load(owner, table);
            let err = zone.map(|_| ()).expect_err(table);
            assert!(
                err.contains("zone.toml") && err.contains(want),
                "{table}: {err}"
            );
        }
    }
}
