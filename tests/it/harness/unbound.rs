//! `unbound`, the validating resolver the DNSSEC system tests put in front of Meridian: a
//! trust anchor for the test zone, a stub zone to Meridian on loopback, EDNS Client Subnet
//! forwarded (the `subnetcache` module), on a free 127.0.0.1 port in a temporary directory.
//!
//! Owns: unbound's configuration, process (through [`Process`]) and start-up wait. Must
//! never: send a query anywhere but loopback (every other name is forwarded to Meridian,
//! which refuses it, and outgoing packets leave from 127.0.0.1), or wait without a deadline.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use super::{Process, Query, Transport, exchange_raw, system};

/// How long unbound may take to start answering.
const UNBOUND_START: Duration = Duration::from_secs(20);

/// A running unbound; killed (and its log printed) on drop.
pub struct Unbound {
    /// Where it answers, over UDP and TCP.
    pub addr: SocketAddr,
    _process: Process,
    _dir: tempfile::TempDir,
}

/// A port free for UDP and TCP on 127.0.0.1 now.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Writes `conf` as `dir/unbound.conf`, checks it with `unbound-checkconf` (when installed) and
/// starts unbound in the foreground on it: for every test that puts unbound in front of
/// Meridian, validating or not.
pub fn spawn_with_config(dir: &std::path::Path, conf: &str) -> Process {
    system::require_tool("unbound", "unbound");
    let conf_path = dir.join("unbound.conf");
    std::fs::write(&conf_path, conf).unwrap();
    if let Ok(out) = Command::new("unbound-checkconf").arg(&conf_path).output() {
        assert!(
            out.status.success(),
            "unbound-checkconf: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut cmd = Command::new("unbound");
    cmd.arg("-d").arg("-c").arg(&conf_path);
    Process::spawn("unbound", cmd)
}

impl Unbound {
    /// Resolves `zone` through the authoritative server at `stub`, validating with
    /// `anchors` (DS or DNSKEY records in zone-file form). Waits until it answers the zone's
    /// SOA. Fails naming the package if unbound is missing.
    pub fn start(zone: &str, stub: SocketAddr, anchors: &str) -> Unbound {
        let unbound = Self::start_unchecked(zone, stub, anchors);
        let soa = Query::new(zone, RecordType::SOA).rd(true).id(1).to_bytes();
        let deadline = Instant::now() + UNBOUND_START;
        while exchange_raw(
            unbound.addr,
            &soa,
            Transport::Udp,
            Duration::from_millis(300),
        )
        .and_then(|raw| Message::from_vec(&raw).ok())
        .is_none_or(|m| m.answers.is_empty())
        {
            assert!(
                Instant::now() < deadline,
                "unbound did not resolve {zone} within {UNBOUND_START:?} (its log follows)"
            );
        }
        unbound
    }

    /// Like [`Unbound::start`], waiting only until it answers at all (any RCODE): for a
    /// resolver whose trust anchor is meant to fail.
    pub fn start_unchecked(zone: &str, stub: SocketAddr, anchors: &str) -> Unbound {
        system::require_tool("unbound", "unbound");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("anchors"), anchors).unwrap();
        let port = free_port();
        let stub = format!("{}@{}", stub.ip(), stub.port());
        let conf = format!(
            "server:\n  interface: 127.0.0.1@{port}\n  outgoing-interface: 127.0.0.1\n  \
             do-daemonize: no\n  use-syslog: no\n  logfile: \"\"\n  username: \"\"\n  \
             chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"\"\n  verbosity: 1\n  \
             val-log-level: 2\n  num-threads: 1\n  do-ip6: no\n  do-not-query-localhost: no\n  \
             access-control: 127.0.0.0/8 allow\n  trust-anchor-file: \"{d}/anchors\"\n  \
             module-config: \"subnetcache validator iterator\"\n  \
             send-client-subnet: 127.0.0.1\n  client-subnet-always-forward: yes\n  \
             max-client-subnet-ipv4: 24\n  cache-max-ttl: 0\n  cache-max-negative-ttl: 0\n  \
             qname-minimisation: no\n  minimal-responses: no\n  local-zone: \"test.\" nodefault\n\
             remote-control:\n  control-enable: no\n\
             stub-zone:\n  name: \"{zone}\"\n  stub-addr: {stub}\n\
             forward-zone:\n  name: \".\"\n  forward-addr: {stub}\n"
        );
        let process = spawn_with_config(dir.path(), &conf);
        let unbound = Unbound {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _process: process,
            _dir: dir,
        };
        let probe = Query::new("version.bind.", RecordType::TXT)
            .rd(true)
            .id(2)
            .to_bytes();
        let deadline = Instant::now() + UNBOUND_START;
        while exchange_raw(
            unbound.addr,
            &probe,
            Transport::Udp,
            Duration::from_millis(300),
        )
        .is_none()
        {
            assert!(
                Instant::now() < deadline,
                "unbound did not answer within {UNBOUND_START:?} (its log follows)"
            );
        }
        unbound
    }
}
