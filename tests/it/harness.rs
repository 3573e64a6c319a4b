//! Runs the real `meridian` binary for a test and talks to it: DNS over UDP/TCP (hickory-proto
//! messages and raw bytes), HTTP to the API, `dig` as a second opinion.
//!
//! Owns: process lifecycle (spawn, ready line, log capture, kill on drop) and every network
//! wait. Must never: wait without a deadline, sleep to synchronise, or talk to anything but
//! loopback.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

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

/// Log lines of a child process, shared with the threads that drain its pipes.
pub type Log = Arc<Mutex<Vec<String>>>;

/// A running `meridian serve`; killed (and its log printed) on drop.
pub struct Meridian {
    child: Child,
    /// First DNS address from the ready line (UDP and TCP share it).
    pub dns: SocketAddr,
    /// HTTP API address from the ready line.
    pub api: SocketAddr,
    log: Log,
    drains: Vec<JoinHandle<()>>,
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
        Self::start_opts(temp.path().to_path_buf(), Some(temp), extra, false, true)
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
        Self::start_opts(zones, temp, extra, local_probe, false)
    }

    fn start_opts(
        zones: PathBuf,
        temp: Option<tempfile::TempDir>,
        extra: &[&str],
        local_probe: bool,
        watch: bool,
    ) -> Self {
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
        args.extend(extra.iter().map(|s| s.to_string()));

        let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn meridian {args:?}: {e}"));
        let log: Log = Arc::default();
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let drains = vec![
            drain(stdout, "out", log.clone(), Some(ready_tx)),
            drain(stderr, "err", log.clone(), None),
        ];

        let line: String = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                wait_drained(&drains);
                panic!(
                    "meridian {args:?} did not print its ready line ({e}); exit: {status:?}\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let (dns, api) = parse_ready(&line)
            .unwrap_or_else(|| panic!("malformed ready line {line:?}, want `ready dns=.. api=..`"));
        Meridian {
            child,
            dns,
            api,
            log,
            drains,
            zones,
            _temp: temp,
        }
    }

    /// The directory passed as `--zones`.
    pub fn zones_dir(&self) -> &Path {
        &self.zones
    }

    /// Overwrites (or creates) a file in the zones directory; only for [`Meridian::serve_copy`].
    pub fn write_zone(&self, file: &str, contents: &str) {
        assert!(self._temp.is_some(), "write_zone needs serve_copy");
        fs::write(self.zones.join(file), contents).unwrap();
    }

    /// The captured stdout/stderr lines so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends a signal (`"HUP"`, `"TERM"`, `"INT"`) with kill(2), directly: no helper
    /// process, so a test can signal within microseconds of the ready line.
    pub fn signal(&self, name: &str) {
        use rustix::process::{Pid, Signal, kill_process};
        let sig = match name {
            "HUP" => Signal::HUP,
            "TERM" => Signal::TERM,
            "INT" => Signal::INT,
            other => panic!("signal {other} not supported by the harness"),
        };
        kill_process(Pid::from_child(&self.child), sig)
            .unwrap_or_else(|e| panic!("kill -{name}: {e}"));
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    // ---- DNS ----

    /// Sends `query` over `transport` and decodes the reply (panics on timeout or bad reply).
    pub fn exchange(&self, query: &Query, transport: Transport) -> Reply {
        let bytes = query.to_bytes();
        let raw = match transport {
            Transport::Udp => udp_exchange(self.dns, &bytes, NET_TIMEOUT),
            Transport::Tcp => tcp_exchange(self.dns, &bytes, NET_TIMEOUT),
        }
        .unwrap_or_else(|| panic!("no {transport:?} reply to {query:?}"));
        Reply::decode(raw, query.id)
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
        let mut v: Vec<Ipv4Addr> = self
            .query_udp(name, RecordType::A)
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    /// The AAAA addresses in the answer to an AAAA query over UDP, sorted.
    pub fn aaaa(&self, name: &str) -> Vec<Ipv6Addr> {
        let mut v: Vec<Ipv6Addr> = self
            .query_udp(name, RecordType::AAAA)
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::AAAA(a) => Some(a.0),
                _ => None,
            })
            .collect();
        v.sort();
        v
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
        let (name, want) =
            parse_series(selector).unwrap_or_else(|| panic!("bad metric selector {selector:?}"));
        // OpenMetrics names a counter family without its `_total` suffix.
        let family = name.strip_suffix("_total").unwrap_or(&name);
        let mut family_seen = r.body.lines().any(|l| {
            l.starts_with("# TYPE ")
                && matches!(l.split_whitespace().nth(2), Some(f) if f == name || f == family)
        });
        let mut sum = 0.0;
        for line in r.body.lines().filter(|l| !l.starts_with('#')) {
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
                sum += value.parse::<f64>().unwrap();
            }
        }
        assert!(family_seen, "metric {name} not in /metrics:\n{}", r.body);
        sum
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

    /// Runs `dig @127.0.0.1 -p PORT +norec +time=2 +tries=1 ARGS`. `None` (with a printed
    /// note) when dig is not installed locally; under CI a missing dig fails the test.
    pub fn dig(&self, args: &[&str]) -> Option<String> {
        if !tool_available("dig") {
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

impl Drop for Meridian {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        wait_drained(&self.drains);
        eprintln!(
            "---- meridian log ({}) ----\n{}\n---- end of log ----",
            self.zones.display(),
            self.log()
        );
    }
}

/// True if `tool` runs. A missing tool is a failure under CI (`CI` set), a skip note locally.
pub fn tool_available(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is not installed but CI is set: .ci/run must install it"
        );
        eprintln!("note: {tool} not installed, skipping the {tool} cross-check");
    }
    found
}

/// How a finished `meridian` invocation ended.
#[derive(Debug)]
pub struct Finished {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

/// Runs `meridian ARGS` to completion (10 s deadline, then killed and the test fails).
pub fn run(args: &[&str]) -> Finished {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out_log: Log = Arc::default();
    let err_log: Log = Arc::default();
    let drains = vec![
        drain(child.stdout.take().unwrap(), "", out_log.clone(), None),
        drain(child.stderr.take().unwrap(), "", err_log.clone(), None),
    ];
    let deadline = Instant::now() + READY_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            wait_drained(&drains);
            panic!(
                "meridian {args:?} still running after {READY_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                out_log.lock().unwrap().join("\n"),
                err_log.lock().unwrap().join("\n")
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    wait_drained(&drains);
    let stdout = out_log.lock().unwrap().join("\n");
    let stderr = err_log.lock().unwrap().join("\n");
    Finished {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Reads a child's pipe line by line into `log` (tagged), sending the first `ready ` line
/// to `ready`.
pub fn drain(
    pipe: impl Read + Send + 'static,
    tag: &'static str,
    log: Log,
    ready: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut ready = ready;
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("ready ")
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(line.clone());
            }
            let entry = if tag.is_empty() {
                line
            } else {
                format!("{tag}| {line}")
            };
            log.lock().unwrap().push(entry);
        }
    })
}

/// Gives the pipe readers a moment to reach EOF after the child is gone (bounded: a
/// grandchild holding the pipe must not hang the test).
pub fn wait_drained(drains: &[JoinHandle<()>]) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while drains.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
}

fn parse_ready(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let mut dns = None;
    let mut api = None;
    for field in line.strip_prefix("ready ")?.split_whitespace() {
        if let Some(v) = field.strip_prefix("dns=") {
            dns = v.split(',').next()?.parse().ok();
        } else if let Some(v) = field.strip_prefix("api=") {
            api = v.parse().ok();
        }
    }
    Some((dns?, api?))
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

// ---- DNS messages ----

/// DNS transports; one table of cases runs over [`Transport::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Datagrams (RFC 1035 §4.2.1).
    Udp,
    /// Two-byte length-framed stream (RFC 1035 §4.2.2, RFC 7766).
    Tcp,
}

impl Transport {
    /// Both transports.
    pub const ALL: [Transport; 2] = [Transport::Udp, Transport::Tcp];
}

/// A query to build: name, type, class, id, opcode, and optionally EDNS with options.
#[derive(Clone, Debug)]
pub struct Query {
    /// Query name, as given (case is kept).
    pub name: String,
    /// QTYPE.
    pub qtype: RecordType,
    /// QCLASS (IN unless set).
    pub class: DNSClass,
    /// Message id.
    pub id: u16,
    /// OPCODE.
    pub op_code: OpCode,
    /// The OPT record to send, if any.
    pub edns: Option<Edns>,
    /// The RD (recursion desired) bit.
    pub rd: bool,
}

impl Query {
    /// A QUERY for `name`/`qtype` in class IN, no EDNS, RD clear, random-ish id.
    pub fn new(name: &str, qtype: RecordType) -> Self {
        Query {
            name: name.to_string(),
            qtype,
            class: DNSClass::IN,
            id: next_id(),
            op_code: OpCode::Query,
            edns: None,
            rd: false,
        }
    }

    /// Sets QCLASS.
    pub fn class(mut self, class: DNSClass) -> Self {
        self.class = class;
        self
    }

    /// Sets the message id.
    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    /// Sets the RD bit.
    pub fn rd(mut self, rd: bool) -> Self {
        self.rd = rd;
        self
    }

    /// Sets OPCODE.
    pub fn op_code(mut self, op_code: OpCode) -> Self {
        self.op_code = op_code;
        self
    }

    /// Adds EDNS version 0 with this UDP payload size (keeps options already added).
    pub fn edns(mut self, payload: u16) -> Self {
        self.edns_mut().set_max_payload(payload);
        self
    }

    /// Sets the EDNS version (adds EDNS with payload 1232 if absent).
    pub fn edns_version(mut self, version: u8) -> Self {
        self.edns_mut().set_version(version);
        self
    }

    /// Adds an EDNS option (adds EDNS with payload 1232 if absent).
    pub fn edns_option(mut self, option: EdnsOption) -> Self {
        self.edns_mut().options_mut().insert(option);
        self
    }

    /// Adds an EDNS Client Subnet option (RFC 7871) for `addr/source_prefix`.
    pub fn ecs(self, addr: std::net::IpAddr, source_prefix: u8) -> Self {
        self.edns_option(EdnsOption::Subnet(ClientSubnet::new(
            addr,
            source_prefix,
            0,
        )))
    }

    fn edns_mut(&mut self) -> &mut Edns {
        self.edns.get_or_insert_with(|| {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            e
        })
    }

    /// The hickory message for this query.
    pub fn to_message(&self) -> Message {
        let mut m = Message::new(self.id, MessageType::Query, self.op_code);
        m.metadata.recursion_desired = self.rd;
        let mut q = hickory_proto::op::Query::query(name(&self.name), self.qtype);
        q.set_query_class(self.class);
        m.add_query(q);
        if let Some(e) = &self.edns {
            m.set_edns(e.clone());
        }
        m
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_message().to_vec().unwrap()
    }
}

fn next_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0x2a00);
    NEXT.fetch_add(7919, Ordering::Relaxed)
}

/// A name in presentation form, case kept (panics if invalid: test input).
pub fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|e| panic!("bad name {s:?}: {e}"))
}

/// A decoded reply plus its bytes (for checks hickory's decoder would normalise away).
#[derive(Clone, Debug)]
pub struct Reply {
    /// The decoded message.
    pub msg: Message,
    /// The bytes as received (without the TCP length prefix).
    pub raw: Vec<u8>,
}

impl Reply {
    /// Decodes `raw`, checking that it is a response to message `id`.
    pub fn decode(raw: Vec<u8>, id: u16) -> Self {
        let msg = Message::from_vec(&raw)
            .unwrap_or_else(|e| panic!("undecodable reply ({e}): {raw:02x?}"));
        assert_eq!(msg.metadata.id, id, "reply id");
        assert_eq!(msg.metadata.message_type, MessageType::Response, "QR bit");
        Reply { msg, raw }
    }

    /// The full (extended) RCODE as a number: header bits plus the OPT's upper 8 bits.
    pub fn rcode(&self) -> u16 {
        let low = u16::from(self.raw[3] & 0x0f);
        let high = self
            .msg
            .edns
            .as_ref()
            .map_or(0, |e| u16::from(e.rcode_high()));
        (high << 4) | low
    }

    /// Answer records of `rtype`.
    pub fn answers_of(&self, rtype: RecordType) -> Vec<&Record> {
        self.msg
            .answers
            .iter()
            .filter(|r| r.record_type() == rtype)
            .collect()
    }
}

impl std::ops::Deref for Reply {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.msg
    }
}

/// The RDATA of `data` in uncompressed wire form (RFC 4034 §6.2 canonical form, which for
/// the types tested here is the plain RFC 1035 encoding with lower-case names).
pub fn rdata_wire(data: &RData) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_canonical_form(true);
    data.emit(&mut enc).unwrap();
    buf
}

/// A domain name in uncompressed wire form.
pub fn wire_name(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in s.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).unwrap());
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A header (RFC 1035 §4.1.1) with the given id, flag word and counts.
pub fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

fn udp_exchange(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(server).unwrap();
    sock.send(bytes).unwrap();
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = vec![0u8; 65535];
    match sock.recv(&mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            None
        }
        Err(e) => panic!("udp recv: {e}"),
    }
}

fn tcp_exchange(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&server, NET_TIMEOUT).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.set_write_timeout(Some(NET_TIMEOUT)).unwrap();
    s.write_all(&frame(bytes)).ok()?;
    read_frame(&mut s)
}

/// `bytes` with the two-byte length prefix of DNS over TCP.
pub fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// Reads one length-framed message; `None` on EOF, reset or timeout.
pub fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).ok()?;
    Some(msg)
}

// ---- HTTP ----

/// Status and body of an HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body (de-chunked), as text.
    pub body: String,
}

impl HttpResponse {
    /// The body parsed as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A minimal HTTP/1.1 exchange (`Connection: close`, read to EOF); JSON when there is a body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> HttpResponse {
    let headers: &[(&str, &str)] = if body.is_empty() {
        &[]
    } else {
        &[("Content-Type", "application/json")]
    };
    http_request(addr, method, path, headers, body.as_bytes())
}

/// `METHOD path` with extra headers and a raw body. Tolerates the server answering and closing
/// before the whole body was sent (an early 413).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut s = TcpStream::connect_timeout(&addr, NET_TIMEOUT).unwrap();
    s.set_read_timeout(Some(NET_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(NET_TIMEOUT)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    let _ = s.write_all(&bytes);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no response head in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line {head:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    HttpResponse { status, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
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
    fn parses_ready_line() {
        let (d, a) =
            parse_ready("ready dns=127.0.0.1:40123,127.0.0.2:53 api=127.0.0.1:40124").unwrap();
        assert_eq!(d, "127.0.0.1:40123".parse().unwrap());
        assert_eq!(a, "127.0.0.1:40124".parse().unwrap());
        assert!(parse_ready("ready api=127.0.0.1:1").is_none());
    }

    #[test]
    fn dechunks_bodies() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
