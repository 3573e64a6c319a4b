//! Which version of each zone file a reload serves: the new one where it loads and fits, the
//! previous one (the last good) where it does not, and why, for every zone kept or refused.
//!
//! Owns: the per-file decision and the duplicate-origin rule across files. Never: compiles,
//! publishes or logs (the control plane does); the only I/O is reading the zone files.
//!
//! # Rules
//! 1. A file that loads is a candidate at its new version; a file that does not load keeps its
//!    previous version if it had one (the zone is *kept*), else it is not served.
//! 2. Two files may not serve one origin. The file that served that origin before the reload
//!    wins; when none did, the first file by name wins (as `load_dir` at start-up would). Each
//!    loser falls back to its own previous version, or is not served, with an error that names
//!    both files. Falling back can cause a new clash, so the rule repeats until none is left.
//! 3. A file that disappeared from the directory is no longer served (deleting a zone is a
//!    valid change, not an error).
//! 4. A file whose bytes are those its serving version was parsed from (the loader's
//!    `Zone::fingerprint`, a hash of the very bytes it parsed) is not parsed again: the
//!    serving `Arc<Zone>` is handed back (`config::load::reload_zone`), so the publisher
//!    shares its compiled zone. Zones that read other files (`records_file`, DNSSEC keys)
//!    have no fingerprint and are always parsed again, as the zone file alone does not say
//!    whether those changed.
//! 5. With [`Reread::Changed`] (the watcher, `POST /v1/reload`, `ctl reload`), a file whose
//!    device, inode, size, mtime and ctime are those recorded when its serving version was
//!    read is not even opened: a reload of 10,000 unchanged zones is 10,000 `stat`s. The
//!    stamp is only recorded once the file's times are [`SETTLED`](crate::config::load::SETTLED)
//!    in the past, so a same-size write within the file system's timestamp granularity is
//!    still read. [`Reread::All`] (SIGHUP) reads and hashes every file, for tools that write
//!    without moving the times.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::rr::Name;
use serde::Serialize;

use crate::config::Zone;
pub use crate::config::load::Reread;
use crate::config::load::{ZoneError, reload_zone, zone_files};
use crate::routing::publish::ZoneFiles;

/// A zone serving its previous version after a reload, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeptZone {
    /// The zone's origin.
    pub origin: String,
    /// Its file.
    pub file: String,
    /// Why its new version was not taken.
    pub reason: String,
}

/// The outcome of reading the zone directory against what serves now.
#[derive(Debug, Default)]
pub struct ZoneReload {
    /// What to serve.
    pub zones: ZoneFiles,
    /// One message per rejected file (file and reason).
    pub errors: Vec<String>,
    /// Zones serving their previous version.
    pub kept: Vec<KeptZone>,
}

enum Choice {
    New(Arc<Zone>),
    Kept(Arc<Zone>, String),
    Dropped,
}

impl Choice {
    fn zone(&self) -> Option<&Arc<Zone>> {
        match self {
            Choice::New(z) | Choice::Kept(z, _) => Some(z),
            Choice::Dropped => None,
        }
    }
}

/// Hashed look-ups by path: `Path`'s ordering compares component by component, which showed
/// up in a reload of 10,000 zones; foldhash rather than SipHash (the keys are our own files).
type ByPath<'a> = HashMap<&'a Path, &'a Arc<Zone>, foldhash::fast::RandomState>;

fn by_path(previous: &ZoneFiles) -> ByPath<'_> {
    let mut map = ByPath::with_capacity_and_hasher(previous.len(), Default::default());
    map.extend(previous.iter().map(|(p, z)| (p.as_path(), z)));
    map
}

/// Reads every zone file of `dir` and decides, per file, what serves (module rules). When the
/// directory itself cannot be read, everything serving stays as it is.
pub fn reload_zones(dir: &Path, previous: &ZoneFiles, reread: Reread) -> ZoneReload {
    match zone_files(dir) {
        Ok(files) => {
            let serving = by_path(previous);
            // An unchanged file gives back the serving version (rules 4 and 5). Files load on
            // every core the loader may use, as at start-up; every file's outcome is kept,
            // errors included, in file order.
            let mut loaded: Vec<(PathBuf, Result<Arc<Zone>, ZoneError>)> =
                Vec::with_capacity(files.len());
            let Ok(()) = crate::config::load::map_in_order(
                &files,
                |path| {
                    let zone = reload_zone(path, serving.get(path.as_path()).copied(), reread);
                    Ok::<_, std::convert::Infallible>((path.clone(), zone))
                },
                |one| {
                    loaded.push(one);
                    Ok(())
                },
            );
            decide(previous, loaded)
        }
        Err(e) => ZoneReload {
            zones: previous.clone(),
            errors: vec![e.to_string()],
            kept: previous
                .values()
                .map(|z| kept(z, &format!("the zone directory is unreadable: {e}")))
                .collect(),
        },
    }
}

fn kept(zone: &Zone, reason: &str) -> KeptZone {
    KeptZone {
        origin: zone.origin.to_string(),
        file: zone.file.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The rules of the module doc over already loaded files (pure: unit-tested).
pub fn decide<Z: Into<Arc<Zone>>>(
    previous: &ZoneFiles,
    loaded: impl IntoIterator<Item = (PathBuf, Result<Z, ZoneError>)>,
) -> ZoneReload {
    let mut errors = Vec::new();
    let serving = by_path(previous);
    let mut list: Vec<(PathBuf, Choice)> = Vec::new();
    for (path, result) in loaded {
        let choice = match (result, serving.get(path.as_path()).copied()) {
            (Ok(zone), _) => Choice::New(zone.into()),
            (Err(e), Some(prev)) => {
                errors.push(e.to_string());
                Choice::Kept(Arc::clone(prev), e.to_string())
            }
            (Err(e), None) => {
                errors.push(e.to_string());
                Choice::Dropped
            }
        };
        list.push((path, choice));
    }
    // Built in one pass (the files come sorted); a later duplicate path wins, as with insert.
    let mut choices: BTreeMap<PathBuf, Choice> = list.into_iter().collect();

    // Rule 2, until no origin is claimed twice. Each round turns at least one `New` into
    // `Kept` or `Dropped`, so it ends within as many rounds as there are files.
    loop {
        // Origins are lowercase (the loader makes them so); hashed, and only clashing ones
        // are spelled out, to pick the first by name as before.
        let mut by_origin: HashMap<&Name, Vec<&PathBuf>, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(choices.len(), Default::default());
        for (path, choice) in &choices {
            if let Some(zone) = choice.zone() {
                by_origin.entry(&zone.origin).or_default().push(path);
            }
        }
        let Some(claimants): Option<Vec<PathBuf>> = by_origin
            .into_iter()
            .filter(|(_, files)| files.len() > 1)
            .min_by_key(|(origin, _)| origin.to_ascii().to_ascii_lowercase())
            .map(|(_, files)| files.into_iter().cloned().collect())
        else {
            break;
        };
        let served_before = |path: &PathBuf| {
            let origin = choices.get(path).and_then(Choice::zone).map(|z| &z.origin);
            previous
                .get(path)
                .is_some_and(|p| Some(&p.origin) == origin)
        };
        let winner = claimants
            .iter()
            .find(|p| served_before(p))
            .or_else(|| claimants.first())
            .cloned()
            .unwrap_or_default();
        let mut changed = false;
        for loser in claimants.iter().filter(|p| **p != winner) {
            let Some(Choice::New(zone)) = choices.get(loser) else {
                continue;
            };
            let clash = ZoneError::DuplicateOrigin {
                path: loser.clone(),
                origin: zone.origin.to_string(),
                other: winner.clone(),
            }
            .to_string();
            errors.push(clash.clone());
            let next = match previous.get(loser) {
                Some(prev) => Choice::Kept(Arc::clone(prev), clash),
                None => Choice::Dropped,
            };
            choices.insert(loser.clone(), next);
            changed = true;
        }
        if !changed {
            // Only previous versions clash (they served together, so this cannot happen);
            // serve the winner alone rather than loop.
            for loser in claimants.iter().filter(|p| **p != winner) {
                choices.insert(loser.clone(), Choice::Dropped);
            }
        }
    }

    let mut out = ZoneReload {
        errors,
        ..ZoneReload::default()
    };
    let mut served = Vec::with_capacity(choices.len());
    for (path, choice) in choices {
        match choice {
            Choice::New(zone) => served.push((path, zone)),
            Choice::Kept(zone, reason) => {
                out.kept.push(kept(&zone, &reason));
                served.push((path, zone));
            }
            Choice::Dropped => {}
        }
    }
    out.zones = served.into_iter().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(file: &str, origin: &str) -> Zone {
        let text = format!(
            "origin = \"{origin}\"\nns = [\"ns1.example.\"]\n[soa]\nmname = \"ns1.example.\"\n\
             rname = \"admin.example.\"\nserial = 1\n"
        );
        let mut z = crate::config::testing::zone_from_text(&text, &[]);
        z.file = PathBuf::from(file);
        z
    }

    fn broken(file: &str) -> Result<Zone, ZoneError> {
        Err(ZoneError::Read {
            path: PathBuf::from(file),
            source: std::io::Error::other("broken"),
        })
    }

    fn prev(zones: &[(&str, &str)]) -> ZoneFiles {
        zones
            .iter()
            .map(|(f, o)| (PathBuf::from(f), Arc::new(zone(f, o))))
            .collect()
    }

    fn served(r: &ZoneReload) -> Vec<(String, String)> {
        r.zones
            .iter()
            .map(|(p, z)| (p.display().to_string(), z.origin.to_string()))
            .collect()
    }

    fn pair(f: &str, o: &str) -> (String, String) {
        (f.to_string(), o.to_string())
    }

    #[test]
    fn a_new_file_taking_the_origin_of_a_broken_one_is_refused_naming_both() {
        // Issue 10, item 5: b held x.test and is now broken; a new a.toml claims x.test.
        let previous = prev(&[("b.toml", "x.test.")]);
        let r = decide(
            &previous,
            [
                ("a.toml".into(), Ok(zone("a.toml", "x.test."))),
                ("b.toml".into(), broken("b.toml")),
            ],
        );
        assert_eq!(served(&r), [pair("b.toml", "x.test.")]);
        assert_eq!(r.kept.len(), 1);
        assert_eq!(r.kept[0].file, "b.toml");
        assert!(r.kept[0].reason.contains("broken"), "{:?}", r.kept);
        let clash = r
            .errors
            .iter()
            .find(|e| e.contains("a.toml"))
            .expect("an error for a.toml");
        assert!(
            clash.contains("x.test") && clash.contains("b.toml"),
            "{clash}"
        );
    }

    #[test]
    fn the_file_that_served_an_origin_keeps_it_against_a_newcomer() {
        let previous = prev(&[("b.toml", "x.test."), ("a.toml", "y.test.")]);
        let r = decide(
            &previous,
            [
                ("a.toml".into(), Ok(zone("a.toml", "x.test."))),
                ("b.toml".into(), Ok(zone("b.toml", "x.test."))),
            ],
        );
        // a falls back to its previous version (y.test), b keeps x.test at its new version.
        assert_eq!(
            served(&r),
            [pair("a.toml", "y.test."), pair("b.toml", "x.test.")]
        );
        assert_eq!(r.kept.len(), 1);
        assert_eq!(r.kept[0].origin, "y.test.");
        assert!(r.kept[0].reason.contains("b.toml"), "{:?}", r.kept);
    }

    #[test]
    fn two_new_files_with_one_origin_serve_the_first_by_name() {
        let r = decide(
            &ZoneFiles::new(),
            [
                ("a.toml".into(), Ok(zone("a.toml", "x.test."))),
                ("b.toml".into(), Ok(zone("b.toml", "x.test."))),
            ],
        );
        assert_eq!(served(&r), [pair("a.toml", "x.test.")]);
        assert!(r.kept.is_empty());
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].starts_with("b.toml"), "{:?}", r.errors);
    }

    #[test]
    fn falling_back_that_clashes_again_is_resolved_too() {
        // a: y -> x (clashes with b's x, which b served), a falls back to y;
        // c: new file claiming y, which a served before: c is refused.
        let previous = prev(&[("a.toml", "y.test."), ("b.toml", "x.test.")]);
        let r = decide(
            &previous,
            [
                ("a.toml".into(), Ok(zone("a.toml", "x.test."))),
                ("b.toml".into(), Ok(zone("b.toml", "x.test."))),
                ("c.toml".into(), Ok(zone("c.toml", "y.test."))),
            ],
        );
        assert_eq!(
            served(&r),
            [pair("a.toml", "y.test."), pair("b.toml", "x.test.")]
        );
        assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
    }

    #[test]
    fn good_changes_and_deletions_are_taken_without_errors() {
        let previous = prev(&[("a.toml", "x.test."), ("gone.toml", "z.test.")]);
        let r = decide(
            &previous,
            [("a.toml".into(), Ok(zone("a.toml", "x.test.")))],
        );
        assert_eq!(served(&r), [pair("a.toml", "x.test.")]);
        assert!(r.errors.is_empty() && r.kept.is_empty());
    }

    #[test]
    fn a_broken_new_file_is_reported_and_not_served() {
        let r = decide(&ZoneFiles::new(), [("n.toml".into(), broken("n.toml"))]);
        assert!(r.zones.is_empty());
        assert!(r.kept.is_empty());
        assert_eq!(r.errors.len(), 1);
    }

    #[test]
    fn an_unchanged_file_is_not_parsed_again_and_any_edit_is() {
        let dir = tempfile::tempdir().unwrap();
        let text = |origin: &str, serial: u32| {
            format!(
                "origin = \"{origin}\"\nns = [\"ns1.example.\"]\n[soa]\nmname = \"ns1.example.\"\n\
                 rname = \"admin.example.\"\nserial = {serial}\n"
            )
        };
        let (a, b) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
        std::fs::write(&a, text("a.test.", 1)).unwrap();
        std::fs::write(&b, text("b.test.", 1)).unwrap();
        let first = reload_zones(dir.path(), &ZoneFiles::new(), Reread::Changed);
        assert_eq!(first.zones.len(), 2);

        // Nothing changed: the very same zones come back.
        let same = reload_zones(dir.path(), &first.zones, Reread::Changed);
        for (path, zone) in &first.zones {
            assert!(Arc::ptr_eq(zone, &same.zones[path]), "{}", path.display());
        }
        // An edit of the same length (serial 1 -> 2) is an edit; the other file is shared.
        std::fs::write(&a, text("a.test.", 2)).unwrap();
        let edited = reload_zones(dir.path(), &same.zones, Reread::Changed);
        assert!(!Arc::ptr_eq(&same.zones[&a], &edited.zones[&a]));
        assert_eq!(edited.zones[&a].serial(), 2);
        assert!(Arc::ptr_eq(&same.zones[&b], &edited.zones[&b]));
        // A broken edit keeps the previous version; fixing the file back to the bytes that
        // version was parsed from hands that version back.
        std::fs::write(&b, "origin = ").unwrap();
        let broken = reload_zones(dir.path(), &edited.zones, Reread::Changed);
        assert_eq!(broken.kept.len(), 1);
        assert!(Arc::ptr_eq(&edited.zones[&b], &broken.zones[&b]));
        std::fs::write(&b, text("b.test.", 1)).unwrap();
        let fixed = reload_zones(dir.path(), &broken.zones, Reread::Changed);
        assert!(fixed.errors.is_empty(), "{:?}", fixed.errors);
        assert!(Arc::ptr_eq(&broken.zones[&b], &fixed.zones[&b]));
    }
}
