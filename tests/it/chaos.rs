//! Chaos with nothing lost: two nameservers, three probers, a backend and a client, each a
//! separate host in its own network namespace on a private bridge, under a steady query load,
//! while probers are partitioned, processes are killed and restarted, and zones are reloaded
//! 200 times (two valid versions and a broken file, in turn).
//!
//! Owns: the namespaces, links and processes it creates (all removed on drop). Must never:
//! touch the host's own network namespace (every link is created directly inside the test's
//! namespaces, and the bridge lives in a namespace of its own), or wait without a deadline.
//! A system test (`#[ignore]`d in the quick suite): needs root (CI runs as root); where
//! namespaces cannot be created the test fails and says why.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::harness::{
    ADMIN_TOKEN, HttpResponse, PrintLog, Process, Query, a_records, fixture, http_request_within,
    metrics, probe_args,
};

const NS1: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 11);
const NS2: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 12);
const PROBERS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 77, 0, 21),
    Ipv4Addr::new(10, 77, 0, 22),
    Ipv4Addr::new(10, 77, 0, 23),
];
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 31);
const BACKENDS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 77, 0, 41), Ipv4Addr::new(10, 77, 0, 42)];
const BACKEND_PORT: u16 = 8080;
const API_PORT: u16 = 8053;
const RELOADS: usize = 200;

// ---- namespaces ----

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The test's private network: one namespace per host plus one for the bridge.
struct Net {
    prefix: String,
    created: Vec<String>,
}

impl Net {
    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    fn create(hosts: &[(&str, &[Ipv4Addr])]) -> Result<Net, String> {
        let mut net = Net {
            prefix: format!("mchaos{}", std::process::id()),
            created: Vec::new(),
        };
        let sw = net.ns("sw");
        sh(&["ip", "netns", "add", &sw])?;
        net.created.push(sw.clone());
        sh(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        sh(&["ip", "-n", &sw, "link", "set", "br0", "up"])?;
        for (i, (host, addrs)) in hosts.iter().enumerate() {
            let ns = net.ns(host);
            sh(&["ip", "netns", "add", &ns])?;
            net.created.push(ns.clone());
            let port = format!("port{i}");
            // Both ends are created directly inside the test's namespaces.
            sh(&[
                "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &sw,
            ])?;
            sh(&["ip", "-n", &sw, "link", "set", &port, "master", "br0"])?;
            sh(&["ip", "-n", &sw, "link", "set", &port, "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            for a in *addrs {
                sh(&[
                    "ip",
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{a}/24"),
                    "dev",
                    "eth0",
                ])?;
            }
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    /// Makes `host` unable to reach `to` (a blackhole route: packets go nowhere).
    fn cut(&self, host: &str, to: Ipv4Addr) {
        sh(&[
            "ip",
            "-n",
            &self.ns(host),
            "route",
            "add",
            "blackhole",
            &format!("{to}/32"),
        ])
        .unwrap();
    }

    fn heal(&self, host: &str, to: Ipv4Addr) {
        sh(&[
            "ip",
            "-n",
            &self.ns(host),
            "route",
            "del",
            "blackhole",
            &format!("{to}/32"),
        ])
        .unwrap();
    }

    /// Runs `f` on a thread that has entered `host`'s network namespace: sockets it creates
    /// live there (and keep working from any thread afterwards).
    fn within<T: Send + 'static>(
        &self,
        host: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = PathBuf::from("/var/run/netns").join(self.ns(host));
        thread::spawn(move || {
            let file =
                std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&file),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
            f()
        })
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

// ---- processes ----

/// `meridian ARGS` inside `host`'s namespace (through `ip netns exec`), waiting for its ready
/// line when `ready`; its log is printed only if the test fails (processes restart often).
fn spawn(net: &Net, host: &str, args: &[String], ready: bool) -> Process {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &net.ns(host),
        env!("CARGO_BIN_EXE_meridian"),
    ])
    .args(args);
    let process = if ready {
        Process::spawn_ready(host, cmd, Duration::from_secs(15))
    } else {
        Process::spawn(host, cmd)
    };
    process.print_log(PrintLog::OnPanic)
}

// ---- zones ----

const STATIC_V1: &[&str] = &["192.0.2.80"];
const STATIC_V2: &[&str] = &["192.0.2.81", "192.0.2.82"];

fn zone(static_addrs: &[&str]) -> String {
    let data: Vec<String> = static_addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"origin = "chaos.test."
ttl = 60
ns = ["ns1.chaos.test.", "ns2.chaos.test."]

[soa]
mname = "ns1.chaos.test."
rname = "hostmaster.chaos.test."
serial = 1

[[record]]
name = "ns1"
type = "A"
data = ["{NS1}"]

[[record]]
name = "ns2"
type = "A"
data = ["{NS2}"]

[[record]]
name = "static"
type = "A"
data = [{}]

[region.eu]

[check.tcp]
type = "tcp"
port = {BACKEND_PORT}
interval = 1
rise = 1
fall = 1

[service.www]
policy = "weighted"
answers = 2
check = "tcp"

[[service.www.endpoint]]
region = "eu"
address = "{}"

[[service.www.endpoint]]
region = "eu"
address = "{}"
"#,
        data.join(", "),
        BACKENDS[0],
        BACKENDS[1]
    )
}

// ---- load ----

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    retried: AtomicU64,
    lost: AtomicU64,
    servfail: AtomicU64,
    other_rcode: AtomicU64,
    empty: AtomicU64,
    wrong: AtomicU64,
    static_v1: AtomicU64,
    static_v2: AtomicU64,
}

fn a_set(msg: &Message) -> BTreeSet<Ipv4Addr> {
    a_records(msg).into_iter().collect()
}

fn set(addrs: &[&str]) -> BTreeSet<Ipv4Addr> {
    addrs.iter().map(|a| a.parse().unwrap()).collect()
}

/// Classifies one reply; returns a description when it is wrong.
fn judge(tally: &Tally, name: &str, msg: &Message) -> Option<String> {
    let got = a_set(msg);
    match msg.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::ServFail => {
            tally.servfail.fetch_add(1, Ordering::Relaxed);
            return Some(format!("{name}: SERVFAIL"));
        }
        other => {
            tally.other_rcode.fetch_add(1, Ordering::Relaxed);
            return Some(format!("{name}: {other}"));
        }
    }
    if got.is_empty() {
        tally.empty.fetch_add(1, Ordering::Relaxed);
        return Some(format!("{name}: empty answer"));
    }
    let ok = if name.starts_with("www") {
        got == BACKENDS.iter().copied().collect()
    } else if got == set(STATIC_V1) {
        tally.static_v1.fetch_add(1, Ordering::Relaxed);
        true
    } else if got == set(STATIC_V2) {
        tally.static_v2.fetch_add(1, Ordering::Relaxed);
        true
    } else {
        false
    };
    if ok {
        tally.ok.fetch_add(1, Ordering::Relaxed);
        None
    } else {
        tally.wrong.fetch_add(1, Ordering::Relaxed);
        Some(format!("{name}: {got:?} is in neither version"))
    }
}

fn exchange(sock: &UdpSocket, to: Ipv4Addr, packet: &[u8], id: u16) -> Option<Message> {
    sock.send_to(packet, (to, 53)).ok()?;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_millis(400);
    while Instant::now() < deadline {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            return None;
        };
        if let Ok(msg) = Message::from_vec(&buf[..n]) {
            if msg.metadata.id == id {
                return Some(msg);
            }
        }
    }
    None
}

/// One load worker: queries alternate between names and nameservers; a query that gets no
/// reply in 400 ms is retried once at the other nameserver, as a resolver would.
fn load_worker(
    worker: u16,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let sock = UdpSocket::bind((CLIENT, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut n: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        n = n.wrapping_add(1);
        let id = (worker << 12) | (n as u16 & 0x0fff);
        let name = if n % 2 == 0 {
            "www.chaos.test."
        } else {
            "static.chaos.test."
        };
        let (first, second) = if (n / 2) % 2 == 0 {
            (NS1, NS2)
        } else {
            (NS2, NS1)
        };
        let packet = Query::new(name, RecordType::A).id(id).to_bytes();
        tally.sent.fetch_add(1, Ordering::Relaxed);
        let reply = exchange(&sock, first, &packet, id).or_else(|| {
            tally.retried.fetch_add(1, Ordering::Relaxed);
            exchange(&sock, second, &packet, id)
        });
        match reply {
            Some(msg) => {
                if let Some(e) = judge(&tally, name, &msg) {
                    let mut errors = errors.lock().unwrap();
                    if errors.len() < 20 {
                        errors.push(e);
                    }
                }
            }
            None => {
                tally.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The sum of the series of `selector` in `/metrics` text (0 when absent).
fn metric(text: &str, selector: &str) -> f64 {
    metrics::sum(text, selector).unwrap_or(0.0)
}

// ---- the test ----

struct Cluster {
    net: Net,
    dir: tempfile::TempDir,
    geoip: PathBuf,
}

impl Cluster {
    fn zones(&self, which: &str) -> PathBuf {
        self.dir.path().join(which)
    }

    fn nameserver(&self, host: &str, addr: Ipv4Addr) -> Process {
        let args: Vec<String> = [
            "serve",
            "--dns-listen",
            &format!("{addr}:53"),
            "--api-listen",
            &format!("{addr}:{API_PORT}"),
            "--no-local-probe",
            "--keys",
            &self.dir.path().join("keys.txt").display().to_string(),
            "--zones",
            &self.zones(host).display().to_string(),
            "--geoip",
            &self.geoip.display().to_string(),
            // POST /v1/reload needs the admin token.
            "--admin-token-file",
            &fixture("core/admin.token").display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        spawn(&self.net, host, &args, true)
    }

    fn prober(&self, i: usize) -> Process {
        let host = format!("p{}", i + 1);
        let args = probe_args(
            &self.zones("probers"),
            ["eu", "us", "ap"][i],
            &host,
            &self.dir.path().join(format!("{host}.key")),
            &[
                format!("http://{NS1}:{API_PORT}/v1/reports"),
                format!("http://{NS2}:{API_PORT}/v1/reports"),
            ],
        );
        spawn(&self.net, &host, &args, false)
    }

    /// An API request with the admin token, from the client's namespace.
    fn api(&self, ns: Ipv4Addr, method: &'static str, path: &'static str) -> HttpResponse {
        let api = SocketAddr::from((ns, API_PORT));
        self.net
            .within("cl", move || {
                let auth = format!("Bearer {ADMIN_TOKEN}");
                http_request_within(
                    api,
                    method,
                    path,
                    &[("Authorization", &auth)],
                    b"",
                    Duration::from_secs(5),
                )
            })
            .join()
            .unwrap()
    }

    /// `prober`'s latest vote on `endpoint` at nameserver `ns`: its state and whether fresh.
    fn vote(&self, ns: Ipv4Addr, endpoint: Ipv4Addr, prober: &str) -> (String, bool) {
        let r = self.api(ns, "GET", "/v1/status");
        assert_eq!(r.status, 200, "{}", r.body);
        let json = r.json();
        let body = &r.body;
        let endpoints = json["services"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["regions"].as_array().into_iter().flatten())
            .flat_map(|r| r["endpoints"].as_array().into_iter().flatten());
        for e in endpoints {
            if e["address"] == endpoint.to_string() {
                for v in e["votes"].as_array().into_iter().flatten() {
                    if v["prober_id"] == prober {
                        return (
                            v["state"].as_str().unwrap_or("").to_string(),
                            v["fresh"].as_bool().unwrap_or(false),
                        );
                    }
                }
            }
        }
        panic!("no vote of {prober} on {endpoint} at {ns}: {body}");
    }

    fn reports_accepted(&self, ns: Ipv4Addr) -> f64 {
        metric(
            &self.api(ns, "GET", "/metrics").body,
            "meridian_reports_accepted_total",
        )
    }

    /// Waits until `ns` has accepted `more` reports beyond `from` (probers are pushing).
    fn wait_reports(&self, ns: Ipv4Addr, from: f64, more: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.reports_accepted(ns);
            if now >= from + more {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{ns} accepted {now} reports, wanted {}",
                from + more
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

fn phase(name: &str, started: Instant, tally: &Tally) {
    println!(
        "chaos [{:>5.1}s] {name}: sent {}, ok {}, retried {}, lost {}",
        started.elapsed().as_secs_f64(),
        tally.sent.load(Ordering::Relaxed),
        tally.ok.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed),
        tally.lost.load(Ordering::Relaxed),
    );
}

#[test]
#[ignore = "system test: needs root and iproute2 (ip netns); run with `cargo test --locked -- --include-ignored` (bash .ci/run)"]
fn chaos_partitions_kills_and_reloads_lose_nothing() {
    crate::harness::system::require_root("network namespaces");
    crate::harness::system::require_tool("ip", "iproute2");
    let _heavy = crate::robust::heavy();
    let hosts: Vec<(&str, Vec<Ipv4Addr>)> = vec![
        ("ns1", vec![NS1]),
        ("ns2", vec![NS2]),
        ("p1", vec![PROBERS[0]]),
        ("p2", vec![PROBERS[1]]),
        ("p3", vec![PROBERS[2]]),
        ("cl", vec![CLIENT]),
        ("be", BACKENDS.to_vec()),
    ];
    let refs: Vec<(&str, &[Ipv4Addr])> = hosts.iter().map(|(h, a)| (*h, a.as_slice())).collect();
    let net = Net::create(&refs).unwrap_or_else(|e| {
        panic!(
            "the chaos test needs network namespaces (root, iproute2) and could not create \
             them: {e}"
        )
    });
    let started = Instant::now();

    // Files: zones for each nameserver and for the probers, keys.
    let dir = tempfile::tempdir().unwrap();
    for which in ["ns1", "ns2", "probers"] {
        std::fs::create_dir(dir.path().join(which)).unwrap();
        std::fs::write(dir.path().join(which).join("chaos.toml"), zone(STATIC_V1)).unwrap();
    }
    let mut keys = String::new();
    for i in 1..=3 {
        let secret = format!("{i:02x}").repeat(32);
        keys.push_str(&format!("k{i} p{i} {secret}\n"));
        std::fs::write(
            dir.path().join(format!("p{i}.key")),
            format!("k{i} p{i} {secret}\n"),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("keys.txt"), keys).unwrap();
    let geoip = Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/meridian-sample.txt");
    let cluster = Cluster { net, dir, geoip };

    // The backends: TCP listeners the probers check.
    let stop = Arc::new(AtomicBool::new(false));
    for addr in BACKENDS {
        let stop = Arc::clone(&stop);
        let listener = cluster
            .net
            .within("be", move || {
                TcpListener::bind((addr, BACKEND_PORT)).unwrap()
            })
            .join()
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => drop(s),
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
    }

    let _ns1 = cluster.nameserver("ns1", NS1);
    let mut ns2 = cluster.nameserver("ns2", NS2);
    let mut probers: Vec<Process> = (0..3).map(|i| cluster.prober(i)).collect();
    cluster.wait_reports(NS1, 0.0, 6.0);
    cluster.wait_reports(NS2, 0.0, 6.0);
    println!(
        "chaos: 2 nameservers, 3 probers up after {:?}",
        started.elapsed()
    );

    // Steady load from the client namespace.
    let tally = Arc::new(Tally::default());
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let workers: Vec<_> = (0..4u16)
        .map(|w| {
            let (stop, tally, errors) =
                (Arc::clone(&stop), Arc::clone(&tally), Arc::clone(&errors));
            cluster
                .net
                .within("cl", move || load_worker(w, stop, tally, errors))
        })
        .collect();
    let load_started = Instant::now();
    thread::sleep(Duration::from_secs(3));
    phase("baseline", started, &tally);

    // Partitions: one prober from one nameserver, from both; a prober from one backend (it
    // votes down alone); each long enough for its votes to go stale (3 intervals of 1 s).
    cluster.net.cut("p1", NS1);
    thread::sleep(Duration::from_secs(5));
    phase("p1 cut from ns1", started, &tally);
    cluster.net.cut("p1", NS2);
    thread::sleep(Duration::from_secs(5));
    for ns in [NS1, NS2] {
        // The partition is real: p1's votes have gone stale at both nameservers.
        assert!(
            !cluster.vote(ns, BACKENDS[0], "p1").1,
            "p1 still fresh at {ns}"
        );
    }
    phase("p1 cut from both", started, &tally);
    cluster.net.heal("p1", NS1);
    cluster.net.heal("p1", NS2);
    cluster.net.cut("p2", BACKENDS[0]);
    thread::sleep(Duration::from_secs(4));
    for ns in [NS1, NS2] {
        // The lone down vote really reached the nameservers, and changed nothing.
        let votes = cluster.vote(ns, BACKENDS[0], "p2");
        assert_eq!(votes, ("down".to_string(), true), "p2's vote at {ns}");
    }
    thread::sleep(Duration::from_secs(1));
    phase("p2 cut from backend 1 (votes down alone)", started, &tally);
    cluster.net.heal("p2", BACKENDS[0]);

    // Kill and restart a nameserver and a prober.
    ns2.kill();
    thread::sleep(Duration::from_secs(2));
    phase("ns2 killed", started, &tally);
    ns2 = cluster.nameserver("ns2", NS2);
    probers[1].kill();
    thread::sleep(Duration::from_secs(2));
    probers[1] = cluster.prober(1);
    let accepted = cluster.reports_accepted(NS2);
    cluster.wait_reports(NS2, accepted, 3.0);
    phase("ns2 and p2 restarted", started, &tally);

    // 200 reloads of ns1: v1, v2, broken, in turn, while the load runs.
    let zone_file = cluster.zones("ns1").join("chaos.toml");
    let (mut reload_ok, mut reload_rejected) = (0, 0);
    for i in 0..RELOADS {
        let text = match i % 3 {
            0 => zone(STATIC_V2),
            1 => "origin = \"chaos.test.\"\n[[record]\nbroken".to_string(),
            _ => zone(STATIC_V1),
        };
        std::fs::write(&zone_file, text).unwrap();
        let HttpResponse { status, body } = cluster.api(NS1, "POST", "/v1/reload");
        match (i % 3, status) {
            (1, 422) => reload_rejected += 1,
            (0 | 2, 200) => reload_ok += 1,
            _ => panic!("reload {i}: status {status}: {body}"),
        }
        thread::sleep(Duration::from_millis(20));
    }
    phase("200 reloads", started, &tally);
    thread::sleep(Duration::from_secs(1));

    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let load_secs = load_started.elapsed().as_secs_f64();
    let metrics1 = cluster.api(NS1, "GET", "/metrics").body;
    let metrics2 = cluster.api(NS2, "GET", "/metrics").body;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let t = &tally;
    println!(
        "chaos totals over {load_secs:.1}s of load ({:.0} queries/s): sent {}, answered \
         correctly {}, retried at the other nameserver {}, lost {}, SERVFAIL {}, other rcode \
         {}, empty {}, in neither version {}; static answers v1 {} / v2 {}; reloads ok \
         {reload_ok}, rejected {reload_rejected}; ns1 reloads failed {}, ns1 reports rejected \
         {}, ns2 reports rejected {}; total {:?}",
        get(&t.sent) as f64 / load_secs,
        get(&t.sent),
        get(&t.ok),
        get(&t.retried),
        get(&t.lost),
        get(&t.servfail),
        get(&t.other_rcode),
        get(&t.empty),
        get(&t.wrong),
        get(&t.static_v1),
        get(&t.static_v2),
        metric(&metrics1, "meridian_reloads_total{result=\"failed\"}"),
        metric(&metrics1, "meridian_reports_rejected_total"),
        metric(&metrics2, "meridian_reports_rejected_total"),
        started.elapsed(),
    );
    // No endpoint ever changed state: not for the lone down vote, not for stale probers.
    assert_eq!(metric(&metrics1, "meridian_health_transitions_total"), 0.0);
    assert_eq!(metric(&metrics2, "meridian_health_transitions_total"), 0.0);
    let errors = errors.lock().unwrap();
    assert!(errors.is_empty(), "wrong answers, first ones: {errors:#?}");
    assert_eq!(get(&t.servfail), 0);
    assert_eq!(get(&t.empty), 0);
    assert_eq!(get(&t.wrong), 0);
    assert_eq!(get(&t.lost), 0, "queries unanswered by both nameservers");
    assert_eq!(get(&t.ok), get(&t.sent));
    let broken = (0..RELOADS).filter(|i| i % 3 == 1).count();
    assert_eq!((reload_ok, reload_rejected), (RELOADS - broken, broken));
    assert!(
        get(&t.static_v1) > 0 && get(&t.static_v2) > 0,
        "both versions served"
    );
    drop(probers);
    drop(ns2);
}
