//! The nameserver's zone source in distributed mode.
//!
//! The zones of one etcd revision are read with one range (a consistent snapshot), written
//! into a local directory (`live/`, replaced whole by renames) and loaded by the control
//! plane's ordinary reload: the same loader, the same per-file last-good rule
//! (`control::reload`), the same compile and swap. A watch on `config/` only says *when* to
//! read again, so a transaction is never seen half-applied and nothing is applied twice:
//! after any gap (a reconnect, a compacted watch) the next read is the whole current state.
//!
//! etcd down is not Meridian down: the table that serves keeps serving, reads are retried
//! with [`super::Backoff`], and [`EtcdStatus`] says so. A linearizable ping every
//! [`PING_INTERVAL`] finds a member that lost quorum or a partition the watch cannot see.
//! With `--state-dir`, every revision that loaded without error is also kept in
//! `<state-dir>/etcd/good/` (written beside and renamed into place), and a nameserver that
//! starts while etcd is unreachable serves it.
//!
//! Owns: snapshot, live and saved directories, the watch loop. Never: loads or compiles a
//! zone itself (the control plane does), or stops serving because etcd is gone.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::client::{Client, EtcdError, WatchMessage};
use super::config::{ConfigError, Files, Stored, read_dir_files, read_stored, write_files};
use super::metrics::EtcdStatus;
use super::{Backoff, Layout};
use crate::health::hub::HealthHub;

/// How often the watch loop checks that etcd still answers with quorum.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// How long start-up tries to reach etcd before falling back to `--state-dir`.
pub const STARTUP_WAIT: Duration = Duration::from_secs(5);
/// The file beside a saved revision's zones that holds its revision number.
const REVISION_FILE: &str = ".meridian-revision";

/// What applying a revision needs from the control plane: reload the zone directory
/// (blocking; `daemon` implements it for `ControlPlane`, so this module does not depend on
/// the control plane that shows its status).
pub trait Reload: Send + Sync + 'static {
    /// Reloads the zones from [`Dirs::live`] as on SIGHUP.
    fn reload_zones(&self) -> Reloaded;
}

/// What a reload did, as far as the zone source reports it.
#[derive(Clone, Copy, Debug)]
pub struct Reloaded {
    /// Every file taken.
    pub ok: bool,
    /// The table generation serving.
    pub generation: u64,
    /// Zones serving.
    pub zones: usize,
    /// Zones kept at their previous version.
    pub kept: usize,
}

/// The zones of one configuration revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The configuration revision.
    pub revision: i64,
    /// The files.
    pub files: Files,
}

/// Where a nameserver keeps the zones it reads from etcd.
#[derive(Clone, Debug)]
pub struct Dirs {
    /// What the control plane loads (`Sources::zones_dir`).
    pub live: PathBuf,
    /// The last revision that loaded without error, when `--state-dir` is given.
    pub good: Option<PathBuf>,
}

impl Dirs {
    /// Under `base`; `good` only when `persist`.
    pub fn new(base: &Path, persist: bool) -> Self {
        Self {
            live: base.join("live"),
            good: persist.then(|| base.join("good")),
        }
    }
}

/// Replaces `dir` with a directory holding `snapshot` (and its revision): written beside it,
/// then renamed into place, so a reader sees the old set or the new one.
pub fn write_snapshot(dir: &Path, snapshot: &Snapshot) -> Result<(), ConfigError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigError::Io { path, source }
    };
    let next = dir.with_extension("next");
    let old = dir.with_extension("old");
    for leftover in [&next, &old] {
        if leftover.exists() {
            fs::remove_dir_all(leftover).map_err(io(leftover))?;
        }
    }
    fs::create_dir_all(&next).map_err(io(&next))?;
    write_files(&next, &snapshot.files)?;
    let rev = next.join(REVISION_FILE);
    fs::write(&rev, snapshot.revision.to_string()).map_err(io(&rev))?;
    // Durable before it replaces the previous one (a crash leaves one or the other).
    if let Ok(f) = fs::File::open(&rev) {
        let _ = f.sync_all();
    }
    if dir.exists() {
        fs::rename(dir, &old).map_err(io(dir))?;
    }
    fs::rename(&next, dir).map_err(io(&next))?;
    if old.exists() {
        let _ = fs::remove_dir_all(&old);
    }
    Ok(())
}

/// The snapshot saved in `dir`, if there is a complete one.
pub fn read_snapshot(dir: &Path) -> Option<Snapshot> {
    let revision = fs::read_to_string(dir.join(REVISION_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let files = read_dir_files(dir).ok()?;
    Some(Snapshot { revision, files })
}

/// The revision a read represents: the newest change under `config/`; when that went
/// backwards (a file deleted outside `config push`), the read's own revision.
fn revision_of(read: &Stored, served: i64) -> i64 {
    if read.config_revision > served {
        read.config_revision
    } else {
        read.read_revision.max(served)
    }
}

/// Reads the configuration, retrying until `wait` has passed.
pub async fn fetch_initial(
    client: &Client,
    layout: &Layout,
    wait: Duration,
) -> Result<Snapshot, EtcdError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut backoff = Backoff::new();
    loop {
        match read_stored(client, layout).await {
            Ok(read) => {
                return Ok(Snapshot {
                    revision: read.config_revision,
                    files: read.files,
                });
            }
            Err(ConfigError::Etcd(e)) => {
                let pause = backoff.wait();
                if tokio::time::Instant::now() + pause >= deadline {
                    return Err(e);
                }
                tracing::info!(error = %e, "etcd not reachable yet; retrying");
                tokio::time::sleep(pause).await;
            }
            Err(other) => {
                return Err(EtcdError::Setup(other.to_string()));
            }
        }
    }
}

/// The running zone source of one nameserver.
pub struct ZoneSource {
    /// The etcd client.
    pub client: Arc<Client>,
    /// Key layout.
    pub layout: Layout,
    /// Local directories.
    pub dirs: Dirs,
    /// Connection state and revision.
    pub status: Arc<EtcdStatus>,
}

impl ZoneSource {
    /// Writes `snapshot` to `live/`, reloads the control plane, saves a revision that loaded
    /// without any error to the state directory, then reports the revision.
    pub async fn apply(
        &self,
        control: &Arc<dyn Reload>,
        snapshot: &Snapshot,
        from_state_dir: bool,
    ) {
        // A key that cannot be a file name (written past `config push`) is reported and left
        // out; the rest of the revision still loads.
        let mut usable = snapshot.clone();
        usable
            .files
            .retain(|name, _| match super::config::safe_relative(name) {
                Ok(_) => true,
                Err(e) => {
                    tracing::error!(error = %e, revision = snapshot.revision, "zone key ignored");
                    false
                }
            });
        let snapshot = &usable;
        if let Err(e) = write_snapshot(&self.dirs.live, snapshot) {
            tracing::error!(error = %e, revision = snapshot.revision, "cannot write the zones read from etcd; previous table keeps serving");
            return;
        }
        let c = Arc::clone(control);
        let report = match tokio::task::spawn_blocking(move || c.reload_zones()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "reload task failed");
                return;
            }
        };
        tracing::info!(
            revision = snapshot.revision,
            ok = report.ok,
            generation = report.generation,
            zones = report.zones,
            kept = report.kept,
            "configuration revision applied"
        );
        if let (true, false, Some(good)) = (report.ok, from_state_dir, &self.dirs.good) {
            let (good, snapshot) = (good.clone(), snapshot.clone());
            let saved = tokio::task::spawn_blocking(move || write_snapshot(&good, &snapshot)).await;
            if let Ok(Err(e)) = saved {
                tracing::warn!(error = %e, "cannot save the configuration revision to the state directory");
            }
        }
        // Reported once it serves (and, with a state directory, is saved).
        self.status.set_revision(snapshot.revision, from_state_dir);
    }

    /// Follows etcd until the process ends: resync, watch, ping; on any failure, the last
    /// good state keeps serving and the loop reconnects with backoff.
    pub async fn run(self, control: Arc<dyn Reload>, mut served: Snapshot) {
        let mut backoff = Backoff::new();
        loop {
            let error = self.session(&control, &mut served, &mut backoff).await;
            self.status.set_disconnected(&error.to_string());
            tokio::time::sleep(backoff.wait()).await;
        }
    }

    async fn resync(
        &self,
        control: &Arc<dyn Reload>,
        served: &mut Snapshot,
    ) -> Result<i64, EtcdError> {
        let read = match read_stored(&self.client, &self.layout).await {
            Ok(r) => r,
            Err(ConfigError::Etcd(e)) => return Err(e),
            Err(e) => return Err(EtcdError::Setup(e.to_string())),
        };
        self.status.set_connected();
        if read.files != served.files || self.status.view().from_state_dir {
            let snapshot = Snapshot {
                revision: revision_of(&read, served.revision),
                files: read.files,
            };
            self.apply(control, &snapshot, false).await;
            *served = snapshot;
        } else if read.config_revision > served.revision {
            served.revision = read.config_revision;
            self.status.set_revision(served.revision, false);
        }
        Ok(read.read_revision)
    }

    /// One connected period; returns why it ended.
    async fn session(
        &self,
        control: &Arc<dyn Reload>,
        served: &mut Snapshot,
        backoff: &mut Backoff,
    ) -> EtcdError {
        // Cheap and bounded first: a partition is found within PING_TIMEOUT.
        if let Err(e) = self.client.ping(&self.layout.meta_key()).await {
            return e;
        }
        let read_revision = match self.resync(control, served).await {
            Ok(r) => r,
            Err(e) => return e,
        };
        backoff.reset();
        let mut watch = match self
            .client
            .watch(&self.layout.config(), read_revision + 1)
            .await
        {
            Ok(w) => w,
            Err(e) => return e,
        };
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = watch.next() => match msg {
                    Ok(Some(WatchMessage::Events { .. })) => {
                        if let Err(e) = self.resync(control, served).await {
                            return e;
                        }
                    }
                    Ok(Some(WatchMessage::Created)) => {}
                    Ok(Some(WatchMessage::Canceled { reason })) => {
                        return EtcdError::Unreachable {
                            endpoints: self.client.endpoints().join(","),
                            error: format!("watch ended: {reason}"),
                        };
                    }
                    Ok(None) => {
                        return EtcdError::Unreachable {
                            endpoints: self.client.endpoints().join(","),
                            error: "watch closed".into(),
                        };
                    }
                    Err(e) => return e,
                },
                _ = ping.tick() => {
                    if let Err(e) = self.client.ping(&self.layout.meta_key()).await {
                        return e;
                    }
                    self.status.set_connected();
                }
            }
        }
    }
}

/// A nameserver's distributed mode, set up but not started: its client, directories and
/// status. `daemon` points the control plane at [`Dirs::live`], then calls [`Distributed::load`]
/// and, once serving, [`Distributed::spawn`].
pub struct Distributed {
    /// The zone source (client, layout, directories, status).
    pub source: ZoneSource,
    _scratch: Option<super::config::ScratchDir>,
}

/// Why distributed mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Flags or files are unusable (exit 2).
    #[error("{0}")]
    Setup(String),
    /// etcd cannot be reached and no revision was saved (exit 1).
    #[error("{0}; no saved configuration revision to serve meanwhile (give --state-dir)")]
    Unavailable(EtcdError),
}

impl Distributed {
    /// Builds the client and the directories: under `<state_dir>/etcd/` when given (the last
    /// good revision is kept there), else in a scratch directory removed at exit.
    pub fn prepare(
        opts: &super::EtcdOptions,
        layout: Layout,
        state_dir: Option<&Path>,
    ) -> Result<Self, StartError> {
        let client = Client::new(opts).map_err(|e| StartError::Setup(e.to_string()))?;
        let (base, scratch) = match state_dir {
            Some(dir) => (dir.join("etcd"), None),
            None => {
                let s = super::config::ScratchDir::new("etcd")
                    .map_err(|e| StartError::Setup(e.to_string()))?;
                (s.path().to_path_buf(), Some(s))
            }
        };
        let dirs = Dirs::new(&base, state_dir.is_some());
        let setup = |e: std::io::Error| StartError::Setup(format!("{}: {e}", dirs.live.display()));
        if dirs.live.exists() {
            fs::remove_dir_all(&dirs.live).map_err(setup)?;
        }
        fs::create_dir_all(&dirs.live).map_err(setup)?;
        let status = Arc::new(EtcdStatus::new(
            client.endpoints().to_vec(),
            layout.prefix().to_string(),
        ));
        Ok(Self {
            source: ZoneSource {
                client,
                layout,
                dirs,
                status,
            },
            _scratch: scratch,
        })
    }

    /// Loads the first revision: from etcd (tried for [`STARTUP_WAIT`]), else the one saved
    /// in the state directory. What serves, for [`Distributed::spawn`].
    pub async fn load(&self, control: &Arc<dyn Reload>) -> Result<Snapshot, StartError> {
        let src = &self.source;
        match fetch_initial(&src.client, &src.layout, STARTUP_WAIT).await {
            Ok(snapshot) => {
                src.status.set_connected();
                src.apply(control, &snapshot, false).await;
                Ok(snapshot)
            }
            Err(EtcdError::Setup(m)) => Err(StartError::Setup(m)),
            Err(e) => match src.dirs.good.as_deref().and_then(read_snapshot) {
                Some(saved) => {
                    src.status.set_disconnected(&e.to_string());
                    tracing::warn!(error = %e, revision = saved.revision, "etcd unreachable at start-up; serving the revision saved in the state directory");
                    src.apply(control, &saved, true).await;
                    Ok(saved)
                }
                None => Err(StartError::Unavailable(e)),
            },
        }
    }

    /// Follows etcd from now on (zones, and votes when `votes` is true). Keeps the scratch
    /// directory alive with the task.
    pub fn spawn(
        self,
        control: Arc<dyn Reload>,
        hub: Arc<HealthHub>,
        served: Snapshot,
        votes: bool,
    ) {
        if votes {
            tokio::spawn(super::votes::intake(
                Arc::clone(&self.source.client),
                self.source.layout.clone(),
                hub,
                Arc::clone(&self.source.status),
            ));
        }
        self.follow(control, served);
    }

    /// Follows the zones in etcd from now on, without votes (a prober's zone source: its
    /// [`Reload`] turns each revision into check targets). Keeps the scratch directory alive
    /// with the task.
    pub fn follow(self, control: Arc<dyn Reload>, served: Snapshot) {
        let Self { source, _scratch } = self;
        tokio::spawn(async move {
            let _keep = _scratch;
            source.run(control, served).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(revision: i64, items: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            revision,
            files: items
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn snapshots_replace_the_directory_whole_and_read_back() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("live");
        assert_eq!(read_snapshot(&dir), None);
        let first = snap(5, &[("a.toml", "A"), ("sub/r.zone", "R")]);
        write_snapshot(&dir, &first).unwrap();
        assert_eq!(read_snapshot(&dir), Some(first));
        let second = snap(9, &[("b.toml", "B")]);
        write_snapshot(&dir, &second).unwrap();
        assert_eq!(read_snapshot(&dir), Some(second));
        assert!(!dir.join("a.toml").exists());
        assert!(!base.path().join("live.next").exists() && !base.path().join("live.old").exists());
    }

    #[test]
    fn a_revision_never_goes_backwards() {
        let read = |config_revision, read_revision| Stored {
            config_revision,
            read_revision,
            ..Stored::default()
        };
        assert_eq!(revision_of(&read(12, 30), 10), 12);
        // A file deleted with etcdctl: the newest remaining change is older than what
        // served; the read's revision stands for the change instead.
        assert_eq!(revision_of(&read(8, 30), 10), 30);
        assert_eq!(revision_of(&read(0, 3), 0), 3);
    }
}
