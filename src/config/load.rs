//! Reads zone files from disk and validates them into [`Zone`]s.
//!
//! Every error names the file and the key (or line) at fault. Loading never panics on what a
//! file contains; a bad file is an `Err`, and the caller decides whether that stops start-up
//! (it does) or only that zone's reload (the previous version keeps serving).
//!
//! This file reads files and checks the zone as a whole; the per-part validation lives beside
//! it: `records` (SOA, `[[record]]`, the master file, record rules) and `services` (regions,
//! services, endpoints).

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::file::ZoneFile;
use super::model::{DEFAULT_TTL, FileStamp, MAX_TTL, Service, Zone};
use super::wire::RecordStore;
use super::{clip, clip_msg};

mod records;
mod services;
mod split;

pub use records::{SUPPORTED_TYPES, parse_txt};

/// Why a zone file (or the zones directory) could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// The file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// What we tried to read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse, or has unknown keys or wrong types. toml's message quotes
    /// the line at fault; each of its lines is cut short.
    #[error("{}: {}", path.display(), clip_msg(source))]
    Syntax {
        /// The zone file.
        path: PathBuf,
        /// What toml said, with line and column.
        source: toml::de::Error,
    },
    /// A JSON zone file (`*.json`) does not parse, or has unknown keys or wrong types.
    /// serde_json's message ends with the line and column at fault.
    #[error("{}: {}", path.display(), clip_msg(source))]
    Json {
        /// The zone file.
        path: PathBuf,
        /// What serde_json said, with line and column.
        source: serde_json::Error,
    },
    /// A value is well-formed TOML (or JSON) but wrong.
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        /// The zone file.
        path: PathBuf,
        /// The key at fault, e.g. `record[2].data[0]`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The RFC 1035 master file named by `records_file` does not parse.
    #[error("{}: {message}", path.display())]
    MasterFile {
        /// The master file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// An entry of the RFC 1035 master file named by `records_file` is wrong.
    #[error("{}:{line}: {message}", path.display())]
    MasterLine {
        /// The master file (or a file it `$INCLUDE`s).
        path: PathBuf,
        /// The line the entry starts on, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Two files declare the same origin.
    #[error("{}: origin {origin} is already served by {}", path.display(), other.display())]
    DuplicateOrigin {
        /// The second file.
        path: PathBuf,
        /// The origin both declare.
        origin: String,
        /// The first file.
        other: PathBuf,
    },
}

/// Whether `path` names a zone file by its extension: `*.toml`, or `*.json` (the same schema,
/// for generated configurations).
pub fn is_zone_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml" || e == "json")
}

/// The zone files (`*.toml`, `*.json`) in `dir`, sorted by name so that loading is
/// deterministic. The directory entry's own type (`d_type`) says whether an entry is a plain
/// file; only symbolic links (and file systems that do not fill it in) cost a `stat`: with
/// 100,000 zones that is 100,000 system calls fewer per load and per reload.
pub fn zone_files(dir: &Path) -> Result<Vec<PathBuf>, ZoneError> {
    let read_err = |source| ZoneError::Read {
        path: dir.to_path_buf(),
        source,
    };
    // By name: every path has the same parent, so this is the paths' order, without
    // `Path`'s component-wise comparison (a tenth of a 10,000-zone reload's CPU).
    let mut files: Vec<(std::ffi::OsString, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let path = entry.path();
        if !is_zone_file(&path) {
            continue;
        }
        // `file_type` falls back to `lstat` where `d_type` is unknown; a link is followed.
        let plain = match entry.file_type() {
            Ok(t) if t.is_symlink() => path.is_file(),
            Ok(t) => t.is_file(),
            Err(_) => path.is_file(),
        };
        if plain {
            files.push((entry.file_name(), path));
        }
    }
    files.sort_unstable_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

/// Most threads the loader uses (one per core up to this).
const MAX_LOAD_THREADS: usize = 8;

/// Threads to load with: the cores this process may use, at most [`MAX_LOAD_THREADS`].
/// Asked once: `available_parallelism` reads the affinity mask and cgroup files (four opens
/// and nine reads), which per zone file tripled the system time of loading small zones.
fn load_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_LOAD_THREADS)
    })
}

/// `f` over `items` on up to [`load_threads`] threads, each result handed to `take` on the
/// calling thread in item order as soon as those before it are: exactly what a loop that calls
/// `f` then `take` per item and stops at the first error would do (the same error, nothing
/// taken after it). Threads take the next item in turn (one huge zone file does not hold up a
/// share of small ones) and stop taking items once an error is decided. Results wait for
/// `take` only while one before them is unfinished, so a load holds the model once, not once
/// more in results.
pub(crate) fn map_in_order<T, R, E>(
    items: &[T],
    f: impl Fn(&T) -> Result<R, E> + Sync,
    mut take: impl FnMut(R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Sync,
    R: Send,
    E: Send,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = if items.len() > 1 {
        load_threads().min(items.len())
    } else {
        1
    };
    if threads <= 1 {
        for item in items {
            take(f(item)?)?;
        }
        return Ok(());
    }
    // Items go to threads in runs: one hand-over (and one wake-up of this thread) per item
    // cost more than loading a small zone file (10,000 files: twice the time).
    let run = (items.len() / (threads * 32)).clamp(1, 64);
    let next = AtomicUsize::new(0);
    // Items from this index on are not needed: an error before them decides the outcome.
    let stop = AtomicUsize::new(usize::MAX);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Vec<Result<R, E>>)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, stop, f) = (&next, &stop, &f);
            scope.spawn(move || {
                loop {
                    let start = next.fetch_add(run, Ordering::Relaxed);
                    let Some(chunk) = items.get(start..(start + run).min(items.len())) else {
                        break;
                    };
                    if chunk.is_empty() || start >= stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let mut results = Vec::with_capacity(chunk.len());
                    for (i, item) in (start..).zip(chunk) {
                        let result = f(item);
                        let failed = result.is_err();
                        results.push(result);
                        if failed {
                            stop.fetch_min(i + 1, Ordering::Relaxed);
                            break;
                        }
                    }
                    // The receiver is gone only once the outcome is decided.
                    if tx.send((start, results)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Runs are taken in increasing order and every taken run is finished (up to its
        // first error) and sent, so every item before a decided error arrives.
        let mut pending = std::collections::BTreeMap::new();
        let mut expected = 0;
        for (start, results) in rx {
            pending.insert(start, results);
            while let Some(results) = pending.remove(&expected) {
                expected += run;
                for result in results {
                    if let Err(e) = result.and_then(&mut take) {
                        stop.store(0, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    })
}

/// Loads every zone in `dir`, failing on the first bad file (start-up and `check-config`).
/// Files are read and validated on every core; the zones, and the error reported (the first
/// bad file by name, or the first duplicate origin), are those of loading one after the other.
pub fn load_dir(dir: &Path) -> Result<Vec<Zone>, ZoneError> {
    let files = zone_files(dir)?;
    let mut zones: Vec<Zone> = Vec::with_capacity(files.len());
    // Origin -> index into `zones`: a linear search per file would make 100,000 zones take
    // minutes.
    let mut origins: std::collections::HashMap<Name, usize, foldhash::fast::RandomState> =
        std::collections::HashMap::with_capacity_and_hasher(
            files.len(),
            foldhash::fast::RandomState::default(),
        );
    map_in_order(
        &files,
        |path| load_zone(path),
        |zone| {
            if let Some(&first) = origins.get(&zone.origin) {
                check_unique_origin(zones.get(first), &zone)?;
            }
            origins.insert(zone.origin.clone(), zones.len());
            zones.push(zone);
            Ok(())
        },
    )?;
    Ok(zones)
}

/// Fails when `zone`'s origin is already one of `zones`'.
pub fn check_unique_origin<'a>(
    zones: impl IntoIterator<Item = &'a Zone>,
    zone: &Zone,
) -> Result<(), ZoneError> {
    match zones.into_iter().find(|z| z.origin == zone.origin) {
        Some(other) => Err(ZoneError::DuplicateOrigin {
            path: zone.file.clone(),
            origin: zone.origin.to_string(),
            other: other.file.clone(),
        }),
        None => Ok(()),
    }
}

/// Reads and validates one zone file.
pub fn load_zone(path: &Path) -> Result<Zone, ZoneError> {
    let (bytes, stamp) = read(path)?;
    let zone = finish(path, build_from(path, bytes, None)?)?;
    zone.stamp.set(stamp);
    Ok(zone)
}

/// How a reload treats zone files whose metadata did not change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reread {
    /// Trust the [`FileStamp`]: a file whose device, inode, size, mtime and ctime are those
    /// recorded when its serving version was read is not opened (the watcher, `POST
    /// /v1/reload`, `ctl reload`).
    Changed,
    /// Read every file and compare its content hash (SIGHUP): for file systems or tools that
    /// rewrite a file without moving its times.
    All,
}

/// Loads `path` again for a reload. The serving version `previous` is returned as it is, the
/// same `Arc`, without parsing, when
/// - its [`FileStamp`] was recorded and the file's is the same (with [`Reread::Changed`]):
///   the file is not even opened, one `stat` per unchanged zone; or
/// - the bytes read are those it was loaded from (same [`Zone::fingerprint`]).
///
/// So a reload of 10,000 zones rebuilds only those that changed, and the unchanged ones need
/// no second copy in memory. A stamp is recorded only once the file's times are
/// [`SETTLED`] in the past: a write within the file system's timestamp granularity of the
/// read could otherwise leave the times as they were, with other bytes.
pub fn reload_zone(
    path: &Path,
    previous: Option<&Arc<Zone>>,
    reread: Reread,
) -> Result<Arc<Zone>, ZoneError> {
    let previous = previous.filter(|p| p.fingerprint.is_some());
    if let Some(prev) = previous {
        if reread == Reread::Changed {
            if let Some(stamp) = prev.stamp.get() {
                if fs::metadata(path).is_ok_and(|m| stamp_of(&m) == stamp) {
                    return Ok(Arc::clone(prev));
                }
            }
        }
    }
    let (bytes, stamp) = read(path)?;
    if let Some(prev) = previous {
        if prev.fingerprint == Some(fingerprint(&bytes)) {
            prev.stamp.set(stamp);
            return Ok(Arc::clone(prev));
        }
    }
    // The serving version's services are kept where the file still says the same.
    let zone = finish(path, build_from(path, bytes, previous.map(|p| &**p))?)?;
    zone.stamp.set(stamp);
    Ok(Arc::new(zone))
}

/// How long ago a file's mtime and ctime must lie before its [`FileStamp`] is trusted: more
/// than the coarsest timestamp granularity of a common file system (FAT: 2 s; ext4 and XFS
/// stamp with the kernel's tick clock, a few ms).
pub const SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) fn stamp_of(meta: &fs::Metadata) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    FileStamp {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime: ns(meta.mtime(), meta.mtime_nsec()),
        ctime: ns(meta.ctime(), meta.ctime_nsec()),
    }
}

/// `stamp` when its times are [`SETTLED`] at `now` (a time in the future is not).
pub(super) fn settled(stamp: FileStamp, now: std::time::SystemTime) -> Option<FileStamp> {
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
    let window = i128::try_from(SETTLED.as_nanos()).unwrap_or(i128::MAX);
    (now - stamp.mtime.max(stamp.ctime) >= window).then_some(stamp)
}

/// A file read with `Read`'s default methods only.
struct Plain<'a>(&'a mut fs::File);

impl std::io::Read for Plain<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

/// The file's bytes, and its stamp when settled. The stamp is taken before the read: a write
/// during the read moves the times past it, and the next reload reads the file again.
fn read(path: &Path) -> Result<(Vec<u8>, Option<FileStamp>), ZoneError> {
    use std::io::Read;
    let err = |source| ZoneError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::open(path).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).saturating_add(1));
    // Through a plain `Read`: `File`'s own `read_to_end` asks for the size (`statx`) and
    // position (`lseek`) again, two system calls per file that the capacity above makes moot.
    Plain(&mut file).read_to_end(&mut bytes).map_err(err)?;
    let stamp = settled(stamp_of(&meta), std::time::SystemTime::now());
    Ok((bytes, stamp))
}

/// A zone file's content hash (64-bit SipHash: detects edits, not an adversary, who could
/// edit the zone anyway).
fn fingerprint(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// Logs the loaded zone's warnings.
fn finish(path: &Path, zone: Zone) -> Result<Zone, ZoneError> {
    for w in super::lint(std::slice::from_ref(&zone)) {
        tracing::warn!(
            file = %path.display(),
            owner = %w.owner,
            rtype = %w.rtype,
            target = %w.target,
            "record target is a CNAME (RFC 2181 §10.3)"
        );
    }
    Ok(zone)
}

/// Validates the zone file `path` whose content is `bytes` into a [`Zone`]. JSON (`*.json`)
/// deserializes straight into [`ZoneFile`] (serde_json keeps no document). TOML is cut into
/// the root and one piece per service (`split`), each deserialized and validated on its own,
/// so neither toml's document nor the file shape of every service is alive at once; a file
/// that is not plainly cut, or any error, goes the whole-document way, which gives the
/// messages of a whole-file parse.
fn build_from(path: &Path, bytes: Vec<u8>, serving: Option<&Zone>) -> Result<Zone, ZoneError> {
    let builder = ZoneBuilder::new(path, fingerprint(&bytes), serving);
    if path.extension().is_some_and(|e| e == "json") {
        let file: ZoneFile = serde_json::from_slice(&bytes).map_err(|source| ZoneError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        drop(bytes);
        return builder.build(file, &[]);
    }
    let text = String::from_utf8(bytes).map_err(|e| ZoneError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })?;
    // Most small zones have no service tables: no need to lex them twice.
    let pieces = if text.contains("[service.") {
        split::split(&text)
    } else {
        None
    };
    if let Some(pieces) = pieces {
        if let Ok(root) = toml::from_str::<ZoneFile>(&pieces.root) {
            if root.service.is_empty() {
                if let Ok(zone) = builder.build(root, &pieces.services) {
                    return Ok(zone);
                }
            }
        }
    }
    let file: ZoneFile = toml::from_str(&text).map_err(|source| ZoneError::Syntax {
        path: path.to_path_buf(),
        source,
    })?;
    builder.build(file, &[])
}

/// Service pieces validated as one task of [`map_in_order`]: enough to make the hand-over
/// cheap, few enough that a million services spread evenly over the cores.
const PIECES_PER_TASK: usize = 1024;

/// One service piece of a TOML zone file (see `split`): a `[service.NAME]` run of tables.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServicePiece {
    service: indexmap::IndexMap<String, super::file::ServiceFile>,
}

/// Where a record was written, for messages that point at it.
#[derive(Clone, Debug)]
enum At {
    /// A key of the zone file (`ns[0]`).
    Key(String),
    /// Value `value` of the `[[record]]` table number `index`.
    Value { index: usize, value: usize },
    /// A line of the master file (or of a file it includes).
    Line { path: PathBuf, line: usize },
}

impl At {
    /// The whole entry: for a `[[record]]` value, its table.
    fn entry(&self) -> String {
        match self {
            At::Value { index, .. } => format!("record[{index}]"),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Key(key) => f.write_str(key),
            At::Value { index, value } => write!(f, "record[{index}].data[{value}]"),
            At::Line { path, line } => {
                let file = path.file_name().unwrap_or(path.as_os_str());
                write!(f, "{}:{line}", file.to_string_lossy())
            }
        }
    }
}

/// One record as written (before the master-file parser merges or folds anything): owner
/// (lowercased), type and place.
#[derive(Clone, Debug)]
struct Source {
    owner: Name,
    rtype: RecordType,
    at: At,
}

/// Validation state for one file: its path, which every error names, and its content hash.
struct ZoneBuilder<'a> {
    path: &'a Path,
    fingerprint: u64,
    /// The services of the version of this zone that serves now, by key (a reload): one
    /// that validates to the same service is shared instead of held twice.
    serving: HashMap<&'a str, &'a Arc<Service>, foldhash::fast::RandomState>,
}

impl<'a> ZoneBuilder<'a> {
    fn new(path: &'a Path, fingerprint: u64, serving: Option<&'a Zone>) -> Self {
        let services = serving.map_or(&[][..], |z| z.services.as_slice());
        let mut by_key = HashMap::with_capacity_and_hasher(
            services.len(),
            foldhash::fast::RandomState::default(),
        );
        for s in services {
            by_key.insert(s.key.as_str(), s);
        }
        Self {
            path,
            fingerprint,
            serving: by_key,
        }
    }

    /// `service` as the zone keeps it: the serving version's when that is the same (a reload
    /// of an edited file holds only what changed twice), else a new one.
    fn keep(&self, service: Service) -> Arc<Service> {
        match self.serving.get(service.key.as_str()) {
            Some(old) if ***old == service => Arc::clone(old),
            _ => Arc::new(service),
        }
    }

    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ZoneError {
        ZoneError::Invalid {
            path: self.path.to_path_buf(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// An error at `at`: a key of the zone file, or a line of the master file. With
    /// `whole_entry`, a `[[record]]` value is named by its table.
    fn error_at(&self, at: &At, whole_entry: bool, message: String) -> ZoneError {
        match at {
            At::Line { path, line } => ZoneError::MasterLine {
                path: path.clone(),
                line: *line,
                message,
            },
            at if whole_entry => self.invalid(at.entry(), message),
            at => self.invalid(at.to_string(), message),
        }
    }

    /// Validates `file` into a zone; its services are `file.service` and then those of
    /// `pieces` (TOML texts of `[service.NAME]` runs, each parsed and dropped in turn).
    fn build(&self, file: ZoneFile, pieces: &[&str]) -> Result<Zone, ZoneError> {
        let origin = self.origin(&file.origin)?;
        let default_ttl = self.ttl("ttl", file.ttl.unwrap_or(DEFAULT_TTL))?;

        let mut soa = None;
        let mut records = Vec::new();
        let mut sources = Vec::new();
        if let Some(rel) = &file.records_file {
            let (parsed, entries) = self.master_file(rel, &origin)?;
            sources.extend(entries.into_iter().map(|e| Source {
                owner: e.owner,
                rtype: e.rtype,
                at: At::Line {
                    path: e.path,
                    line: e.line,
                },
            }));
            for record in parsed {
                if record.record_type() == RecordType::SOA {
                    if record.name != origin {
                        return Err(self.invalid(
                            "records_file",
                            format!("SOA owner {} is not the origin {origin}", record.name),
                        ));
                    }
                    soa = Some(record);
                } else {
                    records.push(record);
                }
            }
        }

        if let Some(soa_file) = &file.soa {
            if soa.is_some() {
                return Err(self.invalid("soa", "the SOA is given both here and in records_file"));
            }
            soa = Some(self.soa(soa_file, &origin, default_ttl)?);
        }
        let soa = soa.ok_or_else(|| {
            self.invalid(
                "soa",
                "missing: give a [soa] table or an SOA in records_file",
            )
        })?;

        for (i, ns) in file.ns.iter().enumerate() {
            let target = self.name(&format!("ns[{i}]"), ns, &origin)?;
            sources.push(Source {
                owner: origin.clone(),
                rtype: RecordType::NS,
                at: At::Key(format!("ns[{i}]")),
            });
            records.push(Record::from_rdata(
                origin.clone(),
                default_ttl,
                RData::NS(hickory_proto::rr::rdata::NS(target)),
            ));
        }

        for (i, record) in file.record.iter().enumerate() {
            let values = self.record(i, record, &origin, default_ttl)?;
            sources.extend(values.iter().enumerate().map(|(j, r)| Source {
                owner: r.name.to_lowercase(),
                rtype: r.record_type(),
                at: At::Value { index: i, value: j },
            }));
            records.extend(values);
        }

        let regions = self.regions(&file.region)?;
        let mut services = Vec::with_capacity(file.service.len() + pieces.len());
        for (key, service) in &file.service {
            services.push(self.keep(self.service(key, service, &origin, &regions, &file)?));
        }
        if !pieces.is_empty() {
            let first_piece = services.len();
            // Blocks of pieces validated on every core, merged in file order; the first error
            // in file order is the one a loop over the pieces would meet.
            let blocks: Vec<&[&str]> = pieces.chunks(PIECES_PER_TASK).collect();
            let failed = map_in_order(
                &blocks,
                |block| {
                    let mut out = Vec::with_capacity(block.len());
                    for piece in *block {
                        // Only the caller sees this error: it parses the whole file for the
                        // message.
                        let parsed: ServicePiece =
                            toml::from_str(piece).map_err(|source| ZoneError::Syntax {
                                path: self.path.to_path_buf(),
                                source,
                            })?;
                        for (key, service) in &parsed.service {
                            let service = self.service(key, service, &origin, &regions, &file)?;
                            out.push(self.keep(service));
                        }
                    }
                    Ok(out)
                },
                |block| {
                    services.extend(block);
                    Ok(())
                },
            )
            .err();
            // A key defined twice before the failing piece is met first, as in a loop.
            let mut keys: std::collections::HashSet<&str, foldhash::fast::RandomState> =
                std::collections::HashSet::with_capacity_and_hasher(
                    services.len() - first_piece,
                    foldhash::fast::RandomState::default(),
                );
            if let Some(dup) = services
                .get(first_piece..)
                .unwrap_or_default()
                .iter()
                .find(|s| !keys.insert(s.key.as_str()))
            {
                return Err(self.invalid(format!("service.{}", dup.key), "defined twice"));
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }

        let base = self.path.parent().unwrap_or(Path::new("."));
        let mut checks = Vec::with_capacity(file.check.len());
        for (name, c) in &file.check {
            checks.push(
                super::check::check(name, c, base).map_err(|(key, msg)| self.invalid(key, msg))?,
            );
        }

        // The model lives as long as the zone serves: no spare capacity. Its records are kept
        // in wire form (`RecordStore`); the whole-zone checks below read that form too.
        services.shrink_to_fit();
        let zone = Zone {
            origin: origin.clone(),
            file: self.path.to_path_buf(),
            records_file: file
                .records_file
                .as_ref()
                .map(|rel| self.path.parent().unwrap_or(Path::new(".")).join(rel)),
            soa,
            records: RecordStore::new(&records).map_err(|e| self.invalid("record", e))?,
            regions,
            services,
            checks,
            dnssec: file
                .dnssec
                .as_ref()
                .map(|d| super::dnssec::load(self.path, &origin, d, crate::dnssec::time::now()))
                .transpose()?,
            // A master file (and what it includes) or key files are inputs the hash of this
            // file does not cover: such a zone is always loaded again.
            fingerprint: (file.records_file.is_none() && file.dnssec.is_none())
                .then_some(self.fingerprint),
            stamp: super::model::StampCell::default(),
        };
        self.check_records(&zone, &records, &sources)?;
        self.check_services(&zone, &records, &sources)?;
        Ok(zone)
    }

    fn origin(&self, text: &str) -> Result<Name, ZoneError> {
        if !text.ends_with('.') {
            return Err(self.invalid(
                "origin",
                format!("`{}` must be absolute (end with a dot)", clip(text)),
            ));
        }
        Name::from_ascii(text)
            .map(|n| n.to_lowercase())
            .map_err(|e| self.invalid("origin", format!("`{}`: {}", clip(text), clip_msg(&e))))
    }

    /// A name relative to the origin, `@`, or absolute; it must lie inside the zone.
    fn owner(&self, key: &str, text: &str, origin: &Name) -> Result<Name, ZoneError> {
        let name = self.name(key, text, origin)?;
        if !origin.zone_of(&name) {
            return Err(self.invalid(
                key,
                format!("`{}` is outside the zone {origin}", clip(text)),
            ));
        }
        Ok(name)
    }

    fn name(&self, key: &str, text: &str, origin: &Name) -> Result<Name, ZoneError> {
        if text.is_empty() {
            return Err(self.invalid(key, "empty name"));
        }
        if text == "@" {
            return Ok(origin.clone());
        }
        Name::parse(text, Some(origin))
            .map_err(|e| self.invalid(key, format!("`{}`: {}", clip(text), clip_msg(&e))))
    }

    fn ttl(&self, key: &str, ttl: u32) -> Result<u32, ZoneError> {
        if ttl > MAX_TTL {
            return Err(self.invalid(key, format!("{ttl} is above the maximum TTL {MAX_TTL}")));
        }
        Ok(ttl)
    }
}

#[cfg(test)]
#[path = "load_prop.rs"]
mod proptests;
