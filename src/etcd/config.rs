//! `meridian config push` and `pull`: zone directories in and out of etcd.
//!
//! A push reads every file of the directory, validates the zones with the loader and
//! compiler `serve` uses (on a copy of exactly the bytes it will write, so a `records_file`
//! outside the directory is caught), reads what etcd holds, and writes the difference in one
//! transaction that only applies if nothing under `config/` changed since that read: the
//! comparison covers every key's revision *and* the version of the push record, which every
//! push rewrites, so a concurrent push that only deleted files is caught too. Either every
//! change lands or none does.
//!
//! Owns: the directory <-> key mapping, the diff and the transaction. Never: writes anything
//! that did not validate, or a key that would map outside the directory on pull.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};

use super::Layout;
use super::client::{Client, EtcdError, Range, b64};
use crate::routing::publish::{StartError, compile_offline};

/// Files by their path relative to the zone directory (`/`-separated).
pub type Files = BTreeMap<String, Vec<u8>>;

/// Why a push or pull failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or directory cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The zones do not validate; nothing was written.
    #[error("{0} (nothing was written to etcd)")]
    Invalid(#[source] StartError),
    /// A file name cannot be a key, or a key cannot be a file name.
    #[error("{name}: {message}")]
    Name {
        /// The name or key.
        name: String,
        /// Why.
        message: String,
    },
    /// etcd failed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// Someone else changed the configuration between the read and the write.
    #[error(
        "conflict: the configuration in etcd changed after it was read at revision {read} \
         (another push?); nothing was written; pull or push again"
    )]
    Conflict {
        /// The revision the push read.
        read: i64,
    },
    /// `--if-revision` does not match what etcd holds.
    #[error(
        "conflict: the configuration in etcd is at revision {found}, not {expected}; \
         nothing was written"
    )]
    NotAtRevision {
        /// What the operator expected.
        expected: i64,
        /// What etcd holds.
        found: i64,
    },
}

/// What a push changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New files.
    pub added: Vec<String>,
    /// Files whose bytes changed.
    pub changed: Vec<String>,
    /// Files no longer in the directory.
    pub removed: Vec<String>,
    /// Files left as they are.
    pub unchanged: usize,
}

impl Plan {
    /// True when nothing would be written.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// What etcd holds under `config/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// The zone files.
    pub files: Files,
    /// The store revision of the read.
    pub read_revision: i64,
    /// The configuration's revision: the newest change under `config/` (0: never pushed).
    pub config_revision: i64,
    /// The push record's version (0: never pushed).
    pub meta_version: i64,
    /// The id of the last push (from its record).
    pub push_id: Option<String>,
}

/// Splits a range over `config/` into files, revisions and the push record.
pub fn stored(layout: &Layout, range: &Range) -> Stored {
    let meta = layout.meta_key();
    let mut out = Stored {
        read_revision: range.revision,
        ..Stored::default()
    };
    for kv in &range.kvs {
        let key = kv.key_str();
        out.config_revision = out.config_revision.max(kv.mod_revision);
        if key == meta {
            out.meta_version = kv.version;
            out.push_id = serde_json::from_slice::<Value>(&kv.value)
                .ok()
                .and_then(|v| v.get("push_id")?.as_str().map(str::to_string));
        } else if let Some(rel) = layout.relative_zone(&key) {
            out.files.insert(rel.to_string(), kv.value.clone());
        }
    }
    out
}

/// The difference between what is stored and what the directory holds.
pub fn plan(current: &Files, new: &Files) -> Plan {
    let mut p = Plan::default();
    for (name, bytes) in new {
        match current.get(name) {
            None => p.added.push(name.clone()),
            Some(old) if old != bytes => p.changed.push(name.clone()),
            Some(_) => p.unchanged += 1,
        }
    }
    p.removed = current
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    p
}

/// The one transaction of a push: applies `plan` only if nothing under `config/` changed
/// after `read` (module doc), and rewrites the push record with `meta`.
pub fn txn_body(layout: &Layout, plan: &Plan, new: &Files, read: &Stored, meta: &[u8]) -> Value {
    let config = layout.config();
    let compare = vec![
        json!({
            "key": b64(config.as_bytes()),
            "range_end": b64(&super::range_end(config.as_bytes())),
            "target": "MOD",
            "result": "LESS",
            "mod_revision": (read.read_revision + 1).to_string(),
        }),
        json!({
            "key": b64(layout.meta_key().as_bytes()),
            "target": "VERSION",
            "result": "EQUAL",
            "version": read.meta_version.to_string(),
        }),
    ];
    let mut success = Vec::new();
    for name in plan.added.iter().chain(&plan.changed) {
        let value = new.get(name).map(Vec::as_slice).unwrap_or_default();
        success.push(json!({ "request_put": {
            "key": b64(layout.zone_key(name).as_bytes()),
            "value": b64(value),
        }}));
    }
    for name in &plan.removed {
        success.push(json!({ "request_delete_range": {
            "key": b64(layout.zone_key(name).as_bytes()),
        }}));
    }
    success.push(json!({ "request_put": {
        "key": b64(layout.meta_key().as_bytes()),
        "value": b64(meta),
    }}));
    json!({ "compare": compare, "success": success })
}

/// The path a stored name maps to under a directory: only plain relative components, so a
/// key written by anyone cannot reach outside the directory.
pub fn safe_relative(name: &str) -> Result<PathBuf, ConfigError> {
    let bad = |message: &str| ConfigError::Name {
        name: name.to_string(),
        message: message.to_string(),
    };
    if name.is_empty() || name.contains('\\') || name.contains('\0') {
        return Err(bad("not a usable file name"));
    }
    let path = PathBuf::from(name);
    let mut depth = 0;
    for c in path.components() {
        match c {
            Component::Normal(part) if !part.to_string_lossy().starts_with('.') => depth += 1,
            _ => {
                return Err(bad(
                    "must be a plain relative path (no `..`, `/` or hidden part)",
                ));
            }
        }
    }
    if depth == 0 {
        return Err(bad("not a usable file name"));
    }
    Ok(path)
}

/// Every regular, non-hidden file under `dir`, recursively, by relative path.
pub fn read_dir_files(dir: &Path) -> Result<Files, ConfigError> {
    let mut out = Files::new();
    walk(dir, "", &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, rel: &str, out: &mut Files) -> Result<(), ConfigError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigError::Io { path, source }
    };
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let rel_name = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs::metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            walk(&path, &rel_name, out)?;
        } else if meta.is_file() {
            safe_relative(&rel_name)?;
            out.insert(rel_name, fs::read(&path).map_err(io(&path))?);
        }
    }
    Ok(())
}

/// Writes `files` under `dir` (created if needed).
pub fn write_files(dir: &Path, files: &Files) -> Result<(), ConfigError> {
    for (name, bytes) in files {
        let path = dir.join(safe_relative(name)?);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|source| ConfigError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        fs::write(&path, bytes).map_err(|source| ConfigError::Io { path, source })?;
    }
    Ok(())
}

/// A directory of its own under the system's temporary directory, removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates it (`what` names it, for whoever lists /tmp).
    pub fn new(what: &str) -> Result<Self, ConfigError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "meridian-{what}-{}-{nanos}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self(path))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Validates `files` as `serve` would load them: written to a scratch directory, loaded and
/// compiled against `geoip`. The number of zones.
pub fn validate(files: &Files, geoip: &Path) -> Result<usize, ConfigError> {
    let scratch = ScratchDir::new("push")?;
    write_files(scratch.path(), files)?;
    let table = compile_offline(scratch.path(), geoip).map_err(ConfigError::Invalid)?;
    Ok(table.zones().count())
}

/// What a push did.
#[derive(Debug)]
pub struct Pushed {
    /// The changes (empty: nothing was written).
    pub plan: Plan,
    /// The configuration revision now.
    pub revision: i64,
    /// Zones validated.
    pub zones: usize,
}

/// Reads what etcd holds under `config/`.
pub async fn read_stored(client: &Client, layout: &Layout) -> Result<Stored, ConfigError> {
    let range = client.range_prefix(&layout.config()).await?;
    Ok(stored(layout, &range))
}

/// `meridian config push` (module doc). With `if_revision`, refuses unless the configuration
/// is still at that revision.
pub async fn push(
    client: &Client,
    layout: &Layout,
    dir: &Path,
    geoip: &Path,
    if_revision: Option<i64>,
    dry_run: bool,
) -> Result<Pushed, ConfigError> {
    let files = read_dir_files(dir)?;
    let zones = {
        let (files, geoip) = (files.clone(), geoip.to_path_buf());
        tokio::task::spawn_blocking(move || validate(&files, &geoip))
            .await
            .map_err(|e| ConfigError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::other(e),
            })??
    };
    let read = read_stored(client, layout).await?;
    if let Some(expected) = if_revision {
        if expected != read.config_revision {
            return Err(ConfigError::NotAtRevision {
                expected,
                found: read.config_revision,
            });
        }
    }
    let plan = plan(&read.files, &files);
    if plan.is_empty() || dry_run {
        return Ok(Pushed {
            plan,
            revision: read.config_revision,
            zones,
        });
    }
    // A random id in the push record tells, after an answer that was lost (a timeout while
    // etcd elects a leader), whether this transaction landed or not.
    let push_id = format!("{:016x}", rand::random::<u64>());
    let meta = json!({
        "push_id": push_id,
        "pushed_at_ms": crate::health::report::unix_ms(std::time::SystemTime::now()),
        "files": files.len(),
        "user": std::env::var("USER").unwrap_or_default(),
    })
    .to_string();
    let sent = client
        .txn(&txn_body(layout, &plan, &files, &read, meta.as_bytes()))
        .await;
    let (ok, revision) = match sent {
        Ok(answer) => answer,
        Err(e) => match landed(client, layout, &push_id).await {
            Some(revision) => (true, revision),
            None => return Err(ConfigError::Etcd(e)),
        },
    };
    if !ok {
        return Err(ConfigError::Conflict {
            read: read.read_revision,
        });
    }
    Ok(Pushed {
        plan,
        revision,
        zones,
    })
}

/// After a transaction whose answer was lost: the configuration revision if the push record
/// carries `push_id` (it was applied), `None` if it does not or cannot be read (it was not,
/// as far as anyone can tell: the error is reported).
async fn landed(client: &Client, layout: &Layout, push_id: &str) -> Option<i64> {
    for _ in 0..3 {
        match read_stored(client, layout).await {
            Ok(read) => {
                return (read.push_id.as_deref() == Some(push_id)).then_some(read.config_revision);
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
        }
    }
    None
}

/// `meridian config pull`: writes the stored zone files under `dir`; the configuration
/// revision and the number of files.
pub async fn pull(
    client: &Client,
    layout: &Layout,
    dir: &Path,
) -> Result<(i64, usize), ConfigError> {
    let read = read_stored(client, layout).await?;
    write_files(dir, &read.files)?;
    Ok((read.config_revision, read.files.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::client::Kv;

    fn files(items: &[(&str, &str)]) -> Files {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn plan_lists_added_changed_removed() {
        let current = files(&[("a.toml", "1"), ("b.toml", "2"), ("c.toml", "3")]);
        let new = files(&[("a.toml", "1"), ("b.toml", "22"), ("d.toml", "4")]);
        let p = plan(&current, &new);
        assert_eq!(p.added, ["d.toml"]);
        assert_eq!(p.changed, ["b.toml"]);
        assert_eq!(p.removed, ["c.toml"]);
        assert_eq!(p.unchanged, 1);
        assert!(plan(&new, &new).is_empty());
    }

    #[test]
    fn the_txn_compares_the_read_and_writes_every_change_and_the_record() {
        let layout = Layout::new("/m/").unwrap();
        let current = files(&[("old.toml", "x"), ("keep.toml", "k")]);
        let new = files(&[("keep.toml", "k"), ("new.toml", "n")]);
        let p = plan(&current, &new);
        let read = Stored {
            files: current,
            read_revision: 41,
            config_revision: 40,
            meta_version: 3,
            push_id: None,
        };
        let body = txn_body(&layout, &p, &new, &read, b"{}");
        let cmp = body["compare"].as_array().unwrap();
        assert_eq!(cmp[0]["key"], b64(b"/m/config/"));
        assert_eq!(cmp[0]["range_end"], b64(b"/m/config0"));
        assert_eq!(cmp[0]["target"], "MOD");
        assert_eq!(cmp[0]["result"], "LESS");
        assert_eq!(cmp[0]["mod_revision"], "42");
        assert_eq!(cmp[1]["key"], b64(b"/m/config/meta"));
        assert_eq!(cmp[1]["target"], "VERSION");
        assert_eq!(cmp[1]["version"], "3");
        let ops = body["success"].as_array().unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(
            ops[0]["request_put"]["key"],
            b64(b"/m/config/zones/new.toml")
        );
        assert_eq!(ops[0]["request_put"]["value"], b64(b"n"));
        assert_eq!(
            ops[1]["request_delete_range"]["key"],
            b64(b"/m/config/zones/old.toml")
        );
        assert!(ops[1]["request_delete_range"].get("range_end").is_none());
        assert_eq!(ops[2]["request_put"]["key"], b64(b"/m/config/meta"));
        assert!(body.get("failure").is_none());
    }

    #[test]
    fn stored_splits_files_record_and_revisions() {
        let layout = Layout::new("/m/").unwrap();
        let kv = |key: &str, value: &str, rev: i64, version: i64| Kv {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            mod_revision: rev,
            version,
            lease: 0,
        };
        let range = Range {
            revision: 50,
            kvs: vec![
                kv("/m/config/meta", r#"{"push_id":"ab"}"#, 12, 4),
                kv("/m/config/other", "?", 9, 1),
                kv("/m/config/zones/a.toml", "A", 12, 2),
                kv("/m/config/zones/sub/b.zone", "B", 7, 1),
            ],
        };
        let s = stored(&layout, &range);
        assert_eq!(s.read_revision, 50);
        assert_eq!(s.config_revision, 12);
        assert_eq!(s.meta_version, 4);
        assert_eq!(s.push_id.as_deref(), Some("ab"));
        assert_eq!(s.files, files(&[("a.toml", "A"), ("sub/b.zone", "B")]));
        assert_eq!(stored(&layout, &Range::default()), Stored::default());
    }

    #[test]
    fn only_plain_relative_names_map_to_files() {
        for good in ["a.toml", "sub/b.zone", "x/y/z"] {
            assert!(safe_relative(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "./a",
            ".hidden",
            "a/.b",
            "a\\b",
            "a//",
        ] {
            if bad == "a//" {
                // `a//` is `a` once normalised: harmless.
                continue;
            }
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_directory_round_trips_through_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("a.toml"), "A").unwrap();
        fs::write(dir.path().join("sub/b.zone"), "B").unwrap();
        fs::write(dir.path().join(".swp"), "hidden").unwrap();
        let read = read_dir_files(dir.path()).unwrap();
        assert_eq!(read, files(&[("a.toml", "A"), ("sub/b.zone", "B")]));
        let out = tempfile::tempdir().unwrap();
        write_files(out.path(), &read).unwrap();
        assert_eq!(read_dir_files(out.path()).unwrap(), read);
    }

    /// A stand-in for etcd's JSON gateway (range and txn only) whose transactions can lose
    /// their answer: the only way to reach `push`'s read-back deterministically.
    mod lost_answers {
        use std::sync::{Arc, Mutex};

        use axum::extract::State;
        use axum::http::StatusCode;
        use axum::routing::post;
        use data_encoding::BASE64;

        use super::super::*;
        use crate::etcd::EtcdOptions;

        #[derive(Default)]
        struct Store {
            /// key -> (value, mod_revision, version)
            kvs: BTreeMap<Vec<u8>, (Vec<u8>, i64, i64)>,
            revision: i64,
            /// Apply transactions (else refuse them); either way the answer is lost.
            apply: bool,
        }

        type Shared = Arc<Mutex<Store>>;

        fn b64d(v: &Value) -> Vec<u8> {
            BASE64
                .decode(v.as_str().unwrap_or_default().as_bytes())
                .unwrap()
        }

        async fn range(State(store): State<Shared>, body: String) -> String {
            let req: Value = serde_json::from_str(&body).unwrap();
            let (key, end) = (b64d(&req["key"]), b64d(&req["range_end"]));
            let store = store.lock().unwrap();
            let kvs: Vec<Value> = store
                .kvs
                .iter()
                .filter(|(k, _)| **k >= key && (end.is_empty() || **k < end))
                .map(|(k, (v, m, ver))| {
                    json!({ "key": b64(k), "value": b64(v),
                        "mod_revision": m.to_string(), "version": ver.to_string() })
                })
                .collect();
            json!({ "header": { "revision": store.revision.to_string() }, "kvs": kvs }).to_string()
        }

        async fn txn(State(store): State<Shared>, body: String) -> (StatusCode, String) {
            let req: Value = serde_json::from_str(&body).unwrap();
            let mut store = store.lock().unwrap();
            if store.apply {
                store.revision += 1;
                let rev = store.revision;
                for op in req["success"].as_array().unwrap() {
                    if let Some(put) = op.get("request_put") {
                        let entry = store.kvs.entry(b64d(&put["key"])).or_default();
                        *entry = (b64d(&put["value"]), rev, entry.2 + 1);
                    } else if let Some(del) = op.get("request_delete_range") {
                        store.kvs.remove(&b64d(&del["key"]));
                    }
                }
            }
            // As when the leader goes away before answering.
            let lost = json!({ "code": 14, "message": "etcdserver: leader changed" });
            (StatusCode::SERVICE_UNAVAILABLE, lost.to_string())
        }

        async fn gateway(apply: bool) -> (Arc<Client>, Shared) {
            let store: Shared = Arc::new(Mutex::new(Store {
                revision: 1,
                apply,
                ..Store::default()
            }));
            let app = axum::Router::new()
                .route("/v3/kv/range", post(range))
                .route("/v3/kv/txn", post(txn))
                .with_state(Arc::clone(&store));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await });
            let client = Client::new(&EtcdOptions {
                endpoints: vec![url],
                ..EtcdOptions::default()
            })
            .unwrap();
            (client, store)
        }

        fn zone_dir() -> tempfile::TempDir {
            let dir = tempfile::tempdir().unwrap();
            fs::write(
                dir.path().join("e.test.toml"),
                "origin = \"e.test.\"\nns = [\"ns1.e.test.\"]\n[soa]\nmname = \"ns1.e.test.\"\n\
                 rname = \"admin.e.test.\"\nserial = 1\n",
            )
            .unwrap();
            dir
        }

        const GEOIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/meridian-sample.txt");

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_push_whose_answer_is_lost_but_landed_reports_it_applied() {
            let (client, store) = gateway(true).await;
            let layout = Layout::new("/m/").unwrap();
            let dir = zone_dir();
            let pushed = push(&client, &layout, dir.path(), Path::new(GEOIP), None, false)
                .await
                .unwrap();
            assert_eq!(pushed.plan.added, ["e.test.toml"]);
            let store = store.lock().unwrap();
            assert_eq!(pushed.revision, store.revision);
            assert!(
                store
                    .kvs
                    .contains_key(b"/m/config/zones/e.test.toml".as_slice())
            );
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_push_whose_answer_is_lost_and_did_not_land_fails_with_nothing_written() {
            let (client, store) = gateway(false).await;
            let layout = Layout::new("/m/").unwrap();
            let dir = zone_dir();
            let err = push(&client, &layout, dir.path(), Path::new(GEOIP), None, false)
                .await
                .unwrap_err();
            assert!(matches!(err, ConfigError::Etcd(_)), "{err}");
            assert!(err.to_string().contains("leader changed"), "{err}");
            assert!(store.lock().unwrap().kvs.is_empty());
        }
    }
}
