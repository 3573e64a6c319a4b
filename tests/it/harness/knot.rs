//! `knotd`, the reference server some system tests compare Meridian with: one zone from a
//! master file, or transferred from a primary as a secondary does, on a free loopback port, in
//! a temporary directory.
//!
//! Owns: knotd's configuration, process (through [`Process`]) and start-up wait. Must never:
//! listen anywhere but 127.0.0.1, write outside its temporary directory, or wait without a
//! deadline.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use super::{Process, Query, Transport, exchange_raw, system};

/// How long knotd may take to load its zone and answer (a large zone takes a while).
const KNOT_START: Duration = Duration::from_secs(30);

/// What knotd serves beyond the zone itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct KnotOptions {
    /// `mod-rrl` with (rate, slip) on every zone.
    pub rrl: Option<(u32, u32)>,
    /// AXFR allowed from 127.0.0.0/8.
    pub allow_transfer: bool,
    /// A secondary: the zone is transferred from this primary (on loopback), not read from a
    /// file, and transferred again when [`Knot::refresh`] finds a higher serial.
    pub primary: Option<SocketAddr>,
}

/// A running knotd; killed (and its log printed) on drop.
pub struct Knot {
    /// Where it answers, over UDP and TCP.
    pub addr: SocketAddr,
    origin: String,
    _process: Process,
    dir: tempfile::TempDir,
}

impl Knot {
    /// Serves `origin` from the master file `zone_file` (copied into knotd's directory) and
    /// waits until it answers the zone's SOA. Fails naming the package if knotd is missing.
    pub fn serve(origin: &str, zone_file: &Path, options: KnotOptions) -> Knot {
        system::require_tool("knotd", "knot");
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(zone_file, dir.path().join("zone.db")).unwrap();
        Self::start(origin, dir, options)
    }

    /// A secondary of `origin` that transfers the zone from `primary` (which must allow
    /// transfers from 127.0.0.1) and waits until it serves it.
    pub fn secondary(origin: &str, primary: SocketAddr) -> Knot {
        system::require_tool("knotd", "knot");
        assert!(
            primary.ip().is_loopback(),
            "a test's primary is on loopback"
        );
        let options = KnotOptions {
            primary: Some(primary),
            ..KnotOptions::default()
        };
        Self::start(origin, tempfile::tempdir().unwrap(), options)
    }

    /// What a secondary does when its SOA refresh timer fires (`knotc zone-refresh`): ask the
    /// primary for its serial and transfer the zone only when it is higher. Returns once knotd
    /// has taken the command; the transfer itself follows in the background.
    pub fn refresh(&self) {
        let out = Command::new("timeout")
            .args(["-s", "KILL", "10", "knotc", "-c"])
            .arg(self.dir.path().join("knot.conf"))
            .args(["zone-refresh", &self.origin])
            .output()
            .unwrap();
        assert!(out.status.success(), "knotc zone-refresh: {out:?}");
    }

    fn start(origin: &str, dir: tempfile::TempDir, options: KnotOptions) -> Knot {
        // A port free for UDP and TCP now (knotd binds it a moment later).
        let port = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = udp.local_addr().unwrap().port();
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                break port;
            }
        };
        let d = dir.path().display();
        let (module, global_module) = match options.rrl {
            Some((rate, slip)) => (
                format!("mod-rrl:\n  - id: limit\n    rate-limit: {rate}\n    slip: {slip}\n"),
                "    global-module: mod-rrl/limit\n",
            ),
            None => (String::new(), ""),
        };
        let (acl, zone_acl) = if options.allow_transfer {
            (
                "acl:\n  - id: xfr\n    address: 127.0.0.0/8\n    action: transfer\n",
                "    acl: xfr\n",
            )
        } else {
            ("", "")
        };
        let (remote, primary) = match options.primary {
            Some(addr) => (
                format!(
                    "remote:\n  - id: primary\n    address: {}@{}\n",
                    addr.ip(),
                    addr.port()
                ),
                "    master: primary\n",
            ),
            None => (String::new(), ""),
        };
        // zonefile-sync -1 and no journal: knotd never rewrites the file it was given (a
        // secondary keeps what it transferred in memory only).
        let conf = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\n    udp-workers: 1\n    \
             tcp-workers: 1\n    background-workers: 1\n\
             database:\n    storage: {d}/db\n\
             control:\n    listen: {d}/knot.sock\n\
             log:\n  - target: stderr\n    any: notice\n\
             {acl}{remote}{module}\
             template:\n  - id: default\n    storage: {d}\n    zonefile-sync: -1\n    \
             journal-content: none\n{global_module}\
             zone:\n  - domain: {origin}\n    file: zone.db\n{zone_acl}{primary}"
        );
        let conf_path = dir.path().join("knot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = Command::new("knotd");
        cmd.arg("-c").arg(&conf_path);
        let process = Process::spawn("knotd", cmd);
        let knot = Knot {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            origin: origin.to_string(),
            _process: process,
            dir,
        };
        let soa = Query::new(origin, RecordType::SOA).id(1).to_bytes();
        let deadline = Instant::now() + KNOT_START;
        // Asked from 127.0.0.1: the tests' own sources (other /24s) start with fresh buckets.
        while exchange_raw(knot.addr, &soa, Transport::Udp, Duration::from_millis(200))
            .and_then(|raw| Message::from_vec(&raw).ok())
            .is_none_or(|m| m.answers.is_empty())
        {
            assert!(
                Instant::now() < deadline,
                "knotd did not serve {origin} within {KNOT_START:?} (its log follows)"
            );
        }
        knot
    }
}
