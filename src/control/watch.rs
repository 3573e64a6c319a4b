//! The config watcher: `serve` reloads by itself when a zone file, a `records_file`, the GeoIP
//! database or the prober key file changes, as gdnsd does by default (`--no-watch` turns it
//! off). Same reload path and reporting as SIGHUP.
//!
//! It watches the *directories* that hold those files (inotify through `notify`), not the
//! files: editors and config management write a temporary file and rename it over the old
//! one, which a watch on the old inode would miss. Events are debounced ([`DEBOUNCE`]): a burst
//! of writes becomes one reload after the last of them. A half-written file simply fails
//! validation and keeps the last good version; the write that completes it triggers the next
//! reload.
//!
//! Owns: the watch set (recomputed after each reload, since `records_file` may change) and the
//! debounce. Never: reloads anything itself except through [`ControlPlane::reload`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::Notify;

use super::ControlPlane;

/// Quiet time after the last change before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// What is watched: directories, and which names in them matter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct WatchSet {
    /// The zone directory: any `*.toml` or `*.json` in it.
    zones_dir: PathBuf,
    /// Exact files (records files, GeoIP, keys).
    files: BTreeSet<PathBuf>,
}

impl WatchSet {
    fn of(control: &ControlPlane) -> Self {
        let sources = control.sources();
        let mut files: BTreeSet<PathBuf> = control
            .publisher()
            .zones()
            .iter()
            .filter_map(|z| z.records_file.clone())
            .map(|p| absolute(&p))
            .collect();
        files.insert(absolute(&sources.geoip));
        if let Some(keys) = &sources.keys {
            files.insert(absolute(keys));
        }
        Self {
            zones_dir: absolute(&sources.zones_dir),
            files,
        }
    }

    fn dirs(&self) -> BTreeSet<PathBuf> {
        let mut dirs: BTreeSet<PathBuf> = self
            .files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        dirs.insert(self.zones_dir.clone());
        dirs
    }

    fn matters(&self, path: &Path) -> bool {
        let path = absolute(path);
        (path.parent() == Some(self.zones_dir.as_path())
            && crate::config::load::is_zone_file(&path))
            || self.files.contains(&path)
    }
}

/// Canonical where possible (symlinked directories), else made absolute, so event paths and
/// watched paths compare equal.
fn absolute(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    // The file may not exist right now (mid-rename): canonicalise its directory instead.
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => match dir.canonicalize() {
            Ok(d) => d.join(name),
            Err(_) => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
        },
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch the configuration: {0}")]
pub struct WatchError(#[from] notify::Error);

/// Starts watching; runs until the process ends. Needs the Tokio runtime.
pub fn spawn(control: Arc<ControlPlane>) -> Result<(), WatchError> {
    let set = Arc::new(Mutex::new(WatchSet::of(&control)));
    let wake = Arc::new(Notify::new());
    let watcher = {
        let set = Arc::clone(&set);
        let wake = Arc::clone(&wake);
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            let set = set.lock().unwrap_or_else(|p| p.into_inner());
            if event.paths.iter().any(|p| set.matters(p)) {
                wake.notify_one();
            }
        })?
    };
    let watcher = Arc::new(Mutex::new(watcher));
    let mut watched = BTreeSet::new();
    rewatch(
        &watcher,
        &mut watched,
        &set.lock().unwrap_or_else(|p| p.into_inner()),
    )?;
    tracing::info!(
        dirs = watched.len(),
        "watching the configuration for changes"
    );
    tokio::spawn(async move {
        loop {
            wake.notified().await;
            // Debounce: wait until nothing has changed for DEBOUNCE.
            while tokio::time::timeout(DEBOUNCE, wake.notified())
                .await
                .is_ok()
            {}
            tracing::info!("configuration changed on disk: reloading");
            let c = Arc::clone(&control);
            let next = match tokio::task::spawn_blocking(move || {
                c.reload();
                WatchSet::of(&c)
            })
            .await
            {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "reload task failed");
                    continue;
                }
            };
            let mut current = set.lock().unwrap_or_else(|p| p.into_inner());
            if *current != next {
                *current = next;
                if let Err(e) = rewatch(&watcher, &mut watched, &current) {
                    tracing::warn!(error = %e, "cannot watch a changed configuration path");
                }
                // A newly named file (a zone's new records_file) may have changed between the
                // reload reading it and the watch set learning its name: look once more.
                wake.notify_one();
            }
        }
    });
    Ok(())
}

/// Watches the directories of `set`, dropping those no longer needed.
fn rewatch(
    watcher: &Mutex<notify::RecommendedWatcher>,
    watched: &mut BTreeSet<PathBuf>,
    set: &WatchSet,
) -> Result<(), WatchError> {
    let mut w = watcher.lock().unwrap_or_else(|p| p.into_inner());
    let wanted = set.dirs();
    for gone in watched.difference(&wanted) {
        let _ = w.unwatch(gone);
    }
    let mut result = Ok(());
    let mut now = BTreeSet::new();
    for dir in &wanted {
        if watched.contains(dir) {
            now.insert(dir.clone());
            continue;
        }
        match w.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                now.insert(dir.clone());
            }
            Err(e) => result = Err(WatchError(e)),
        }
    }
    *watched = now;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_files_and_named_files_matter_editor_droppings_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let zones = dir.path().join("zones");
        std::fs::create_dir(&zones).unwrap();
        let set = WatchSet {
            zones_dir: absolute(&zones),
            files: [absolute(&dir.path().join("geo.mmdb"))].into(),
        };
        assert!(set.matters(&zones.join("a.toml")));
        assert!(
            set.matters(&zones.join("a.json")),
            "JSON zone files are zone files too"
        );
        assert!(set.matters(&dir.path().join("geo.mmdb")));
        assert!(!set.matters(&zones.join(".a.toml.swp")));
        assert!(!set.matters(&zones.join("a.toml~")));
        assert!(!set.matters(&dir.path().join("other.toml")));
        assert_eq!(set.dirs().len(), 2);
    }
}
