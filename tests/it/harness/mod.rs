//! The one test harness: runs the real `meridian` binary for a test and talks to it.
//! - [`Meridian`] (here): `meridian serve` on loopback, with DNS, HTTP and metric shortcuts.
//! - [`process`]: every child process (spawn, ready line, log capture, kill on drop).
//! - [`dns`]: queries and replies over UDP/TCP with hickory-proto, raw wire helpers.
//! - [`http`]: the HTTP/1.1 client. [`metrics`]: the `/metrics` text parser.
//! - [`backend`]: a programmable HTTP backend (and webhook receiver) on 127.0.0.x.
//! - [`knot`]: knotd, the reference server of the comparisons.
//! - [`tls`]: DoT, DoH and DoQ clients and test certificates.
//! - [`etcd`]: a single-member etcd for the distributed-mode tests.
//! - [`unbound`]: a validating Unbound resolver in front of Meridian (DNSSEC, DoT).
//! - [`system`]: what a test needs from the machine (second opinions, system tests).
//!
//! Owns: process lifecycle and every network wait. Must never: wait without a deadline, sleep
//! to synchronise, or talk to anything but loopback.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

pub mod backend;
pub mod dns;
pub mod etcd;
pub mod http;
pub mod knot;
pub mod metrics;
pub mod process;
pub mod system;
pub mod tls;
pub mod unbound;

pub use dns::*;
pub use http::*;
pub use process::*;

/// How long the binary may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one DNS or HTTP exchange may take.
pub const NET_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to listen before deciding that the server dropped a packet.
pub const SILENCE: Duration = Duration::from_millis(800);

/// The admin token in `tests/fixtures/core/admin.token` (test-only).
pub const ADMIN_TOKEN: &str = "core-test-admin-token-0123456789";

/// Flags that give a server the token of [`ADMIN_TOKEN`]: every mutating API endpoint needs it.
pub fn admin_args() -> [String; 2] {
    [
        "--admin-token-file".into(),
        fixture("core/admin.token").display().to_string(),
    ]
}

/// The path of a fixture directory, e.g. `fixture("core/basic")`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A running `meridian serve`; killed (and its log printed) on drop.
pub struct Meridian {
    process: Process,
    /// First DNS address from the ready line (UDP and TCP share it).
    pub dns: SocketAddr,
    /// HTTP API address from the ready line.
    pub api: SocketAddr,
    zones: PathBuf,
    // Held so the copied zones live as long as the server.
    _temp: Option<tempfile::TempDir>,
}

impl Meridian {
    /// Serves the zones of a fixture directory (relative to `tests/fixtures`) in place.
    pub fn serve(fixture_name: &str) -> Self {
        Self::serve_with(fixture_name, &[])
    }

    /// Like [`Meridian::serve`], with extra flags (e.g. `["--tcp-idle-timeout", "1"]`).
    pub fn serve_with(fixture_name: &str, extra: &[&str]) -> Self {
        Self::start(fixture(fixture_name), None, extra)
    }

    /// Serves a zones directory the test made (it must outlive the server). With
    /// `local_probe` the embedded prober runs; every other constructor turns it off.
    pub fn serve_dir(zones: &Path, extra: &[&str], local_probe: bool) -> Self {
        Self::start_with(zones.to_path_buf(), None, extra, local_probe)
    }

    /// Like [`Meridian::serve_dir`] without the prober, for zones so large that loading them
    /// may take longer than [`READY_TIMEOUT`]: waits up to `ready_within` for the ready line.
    pub fn serve_dir_within(zones: &Path, extra: &[&str], ready_within: Duration) -> Self {
        Self::start_opts(zones.to_path_buf(), None, extra, false, false, ready_within)
    }

    /// Copies the fixture's files into a temporary directory first, so that the test may
    /// edit them (reload tests). See [`Meridian::write_zone`].
    pub fn serve_copy(fixture_name: &str, extra: &[&str]) -> Self {
        let temp = tempfile::tempdir().unwrap();
        copy_dir(&fixture(fixture_name), temp.path());
        Self::start(temp.path().to_path_buf(), Some(temp), extra)
    }

    /// Like [`Meridian::serve_copy`] with the config watcher on (every other constructor
    /// passes `--no-watch`, so that a test's file edits reload only when it asks).
    pub fn serve_copy_watched(fixture_name: &str, extra: &[&str]) -> Self {
        let temp = tempfile::tempdir().unwrap();
        copy_dir(&fixture(fixture_name), temp.path());
        let zones = temp.path().to_path_buf();
        Self::start_opts(zones, Some(temp), extra, false, true, READY_TIMEOUT)
    }

    fn start(zones: PathBuf, temp: Option<tempfile::TempDir>, extra: &[&str]) -> Self {
        Self::start_with(zones, temp, extra, false)
    }

    fn start_with(
        zones: PathBuf,
        temp: Option<tempfile::TempDir>,
        extra: &[&str],
        local_probe: bool,
    ) -> Self {
        Self::start_opts(zones, temp, extra, local_probe, false, READY_TIMEOUT)
    }

    fn start_opts(
        zones: PathBuf,
        temp: Option<tempfile::TempDir>,
        extra: &[&str],
        local_probe: bool,
        watch: bool,
        ready_within: Duration,
    ) -> Self {
        let mut args = loopback_serve_args(&zones, local_probe, watch);
        args.extend(extra.iter().map(|s| s.to_string()));

        let name = format!("meridian ({})", zones.display());
        let process = Process::spawn_ready(&name, meridian_command(&args), ready_within);
        let line = process.ready.clone().unwrap_or_default();
        let (dns, api) = parse_ready(&line)
            .unwrap_or_else(|| panic!("malformed ready line {line:?}, want `ready dns=.. api=..`"));
        Meridian {
            process,
            dns,
            api,
            zones,
            _temp: temp,
        }
    }

    /// The address of the ready line's `name=` field (`dot`, `doh`, `doq`: the encrypted
    /// listeners); panics when the server does not have one.
    pub fn listener(&self, name: &str) -> SocketAddr {
        let line = self.process.ready.clone().unwrap_or_default();
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.split(',').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= address in the ready line {line:?}"))
    }

    /// The server's process id (for reading `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The directory passed as `--zones`.
    pub fn zones_dir(&self) -> &Path {
        &self.zones
    }

    /// Overwrites (or creates) a file in the zones directory; only for [`Meridian::serve_copy`].
    pub fn write_zone(&self, file: &str, contents: &str) {
        assert!(self._temp.is_some(), "write_zone needs serve_copy");
        std::fs::write(self.zones.join(file), contents).unwrap();
    }

    /// The captured stdout/stderr lines so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Sends a signal (`"HUP"`, `"TERM"`, `"INT"`); see [`Process::signal`].
    pub fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    // ---- DNS ----

    /// Sends `query` over `transport` and decodes the reply (panics on timeout or bad reply).
    pub fn exchange(&self, query: &Query, transport: Transport) -> Reply {
        exchange_at(self.dns, query, transport)
    }

    /// A plain query (no EDNS) for `name`/`qtype` over `transport`.
    pub fn query(&self, name: &str, qtype: RecordType, transport: Transport) -> Reply {
        self.exchange(&Query::new(name, qtype), transport)
    }

    /// A plain query over UDP.
    pub fn query_udp(&self, name: &str, qtype: RecordType) -> Message {
        self.query(name, qtype, Transport::Udp).msg
    }

    /// A plain query over TCP.
    pub fn query_tcp(&self, name: &str, qtype: RecordType) -> Message {
        self.query(name, qtype, Transport::Tcp).msg
    }

    /// The A addresses in the answer to an A query over UDP, sorted.
    pub fn a(&self, name: &str) -> Vec<Ipv4Addr> {
        a_records(&self.query_udp(name, RecordType::A))
    }

    /// The AAAA addresses in the answer to an AAAA query over UDP, sorted.
    pub fn aaaa(&self, name: &str) -> Vec<Ipv6Addr> {
        aaaa_records(&self.query_udp(name, RecordType::AAAA))
    }

    /// Sends raw bytes over UDP; the reply, or `None` if nothing came within `wait`.
    pub fn send_raw_udp(&self, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
        udp_exchange(self.dns, bytes, wait)
    }

    /// Sends one length-framed raw message over a new TCP connection; the framed reply, or
    /// `None` if the server closed the connection or said nothing within `wait`.
    pub fn send_raw_tcp(&self, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
        tcp_exchange(self.dns, bytes, wait)
    }

    /// A new TCP connection to the DNS port, with read/write timeouts set.
    pub fn tcp_connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.dns, NET_TIMEOUT).unwrap();
        s.set_read_timeout(Some(NET_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(NET_TIMEOUT)).unwrap();
        s
    }

    // ---- HTTP API ----

    /// `GET path` on the API.
    pub fn get(&self, path: &str) -> HttpResponse {
        http(self.api, "GET", path, "")
    }

    /// `POST path` with `body` on the API.
    pub fn post(&self, path: &str, body: &str) -> HttpResponse {
        http(self.api, "POST", path, body)
    }

    /// `POST path` with `body` and `Authorization: Bearer` [`ADMIN_TOKEN`]; the server must
    /// have been started with [`admin_args`].
    pub fn admin_post(&self, path: &str, body: &str) -> HttpResponse {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        http_request(
            self.api,
            "POST",
            path,
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            body.as_bytes(),
        )
    }

    /// `GET /health`, checked for 200 and parsed.
    pub fn health(&self) -> serde_json::Value {
        let r = self.get("/health");
        assert_eq!(r.status, 200, "/health: {}", r.body);
        r.json()
    }

    /// The value of one series in `/metrics`, e.g.
    /// `meridian_reloads_total{result="failed"}` (given labels must match, others are
    /// ignored; values of matching series are summed). A series not (yet) exported counts as 0,
    /// but the metric family itself must be present.
    pub fn metric(&self, selector: &str) -> f64 {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "/metrics: {}", r.body);
        metrics::sum(&r.body, selector)
            .unwrap_or_else(|| panic!("metric {selector} not in /metrics:\n{}", r.body))
    }

    /// Polls `/health` until `generation >= n` (5 s deadline); returns the generation seen.
    pub fn wait_for_generation(&self, n: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let g = self.health()["generation"].as_u64().unwrap();
            if g >= n {
                return g;
            }
            assert!(
                Instant::now() < deadline,
                "generation stayed at {g}, wanted {n}"
            );
            thread::sleep(Duration::from_millis(25));
        }
    }

    // ---- dig ----

    /// Runs `dig @127.0.0.1 -p PORT +norec +time=2 +tries=1 ARGS`, a second opinion on an
    /// answer the test has already checked through hickory. `None` (with a printed note) when
    /// dig is not installed; in strict mode ([`system::strict`]) a missing dig fails the test.
    pub fn dig(&self, args: &[&str]) -> Option<String> {
        if !system::second_opinion("dig", "bind9-dnsutils") {
            return None;
        }
        let out = Command::new("dig")
            .arg(format!("@{}", self.dns.ip()))
            .args(["-p", &self.dns.port().to_string()])
            .args(["+norec", "+time=2", "+tries=1"])
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "dig {args:?} failed:\n{stdout}");
        Some(stdout)
    }
}

/// `meridian serve` on `127.0.0.1:0` (DNS and API) for `zones`, the embedded prober and the
/// config watcher off, then `extra`: the arguments every test server starts with.
pub fn serve_args(zones: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = loopback_serve_args(zones, false, false);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs `meridian serve` ([`serve_args`]) to completion: for servers that must refuse to start.
pub fn run_serve(zones: &Path, extra: &[&str]) -> Finished {
    let args = serve_args(zones, extra);
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `meridian probe` as `id` in `region` on `zones`, signing with `key_file` and publishing to
/// every URL of `publish`.
pub fn probe_args(
    zones: &Path,
    region: &str,
    id: &str,
    key_file: &Path,
    publish: &[String],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "probe".into(),
        "--zones".into(),
        zones.display().to_string(),
        "--region".into(),
        region.into(),
        "--id".into(),
        id.into(),
        "--key-file".into(),
        key_file.display().to_string(),
    ];
    for url in publish {
        args.push("--publish".into());
        args.push(url.clone());
    }
    args
}

fn loopback_serve_args(zones: &Path, local_probe: bool, watch: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "serve",
        "--dns-listen",
        "127.0.0.1:0",
        "--api-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !local_probe {
        args.push("--no-local-probe".into());
    }
    if !watch {
        args.push("--no-watch".into());
    }
    args.push("--zones".into());
    args.push(zones.display().to_string());
    args
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`. Returns the
/// time it took.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `check` every 20 ms until it returns `Some`; panics with `what` after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}
