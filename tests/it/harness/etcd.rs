//! etcd (Debian's `etcd-server`) for the distributed-mode tests: one member or a cluster of
//! several, loopback only, ports the kernel picked, temporary data directories; members are
//! killed and restarted on the same ports and data, and `etcdctl` reads and writes behind
//! Meridian's back.
//!
//! Owns: etcd's processes (through [`Process`]), their directories and start-up waits. Must
//! never: listen anywhere but 127.0.0.1, or wait without a deadline.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Process, system, wait_until};

/// How long etcd may take to elect a leader and answer.
const ETCD_START: Duration = Duration::from_secs(20);

struct Member {
    name: String,
    client: String,
    peer: String,
    process: Option<Process>,
}

/// A running etcd (one member or a cluster); killed (and its logs printed) on drop.
pub struct Etcd {
    /// Every member's client URL, comma-separated (what `--etcd` and `etcdctl
    /// --endpoints` take).
    pub url: String,
    members: Vec<Member>,
    initial_cluster: String,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    /// Starts a single member and waits until it answers. Fails naming the package if etcd
    /// is missing.
    pub fn start() -> Etcd {
        Self::cluster(1)
    }

    /// Starts a cluster of `size` members and waits until it answers.
    pub fn cluster(size: usize) -> Etcd {
        system::require_tool("etcd", "etcd-server");
        system::require_tool("etcdctl", "etcd-client");
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client: format!("http://127.0.0.1:{}", free_port()),
                peer: format!("http://127.0.0.1:{}", free_port()),
                process: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            url: members
                .iter()
                .map(|m| m.client.clone())
                .collect::<Vec<_>>()
                .join(","),
            members,
            initial_cluster,
            dir: tempfile::tempdir().unwrap(),
        };
        etcd.restart();
        etcd
    }

    /// Kills every member (SIGKILL), keeping their data.
    pub fn kill(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }

    /// Kills member `i` (SIGKILL), keeping its data.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].process.take() {
            p.kill();
        }
    }

    /// Starts every member again on the same ports and data (after [`Etcd::kill`]) and
    /// waits until the cluster answers.
    pub fn restart(&mut self) {
        for i in 0..self.members.len() {
            self.start_member(i);
        }
        wait_until(ETCD_START, "etcd answers", || {
            self.try_ctl(&["endpoint", "health"]).is_some()
        });
    }

    /// Starts member `i` again (after [`Etcd::kill_member`]), without waiting.
    pub fn start_member(&mut self, i: usize) {
        self.kill_member(i);
        let data = self.dir.path().join(format!("data-{i}"));
        let m = &self.members[i];
        let mut cmd = Command::new("etcd");
        cmd.args([
            "--name",
            &m.name,
            "--data-dir",
            &data.display().to_string(),
            "--listen-client-urls",
            &m.client,
            "--advertise-client-urls",
            &m.client,
            "--listen-peer-urls",
            &m.peer,
            "--initial-advertise-peer-urls",
            &m.peer,
            "--initial-cluster",
            &self.initial_cluster,
            "--log-level",
            "warn",
            "--logger",
            "zap",
        ]);
        let name = format!("etcd {}", m.name);
        self.members[i].process = Some(Process::spawn(&name, cmd));
    }

    /// The index of the member that is the leader now.
    pub fn leader(&self) -> usize {
        let out = self.ctl(&["endpoint", "status", "-w", "json"]);
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        for entry in list.as_array().unwrap() {
            let status = &entry["Status"];
            if status["header"]["member_id"] == status["leader"] {
                let endpoint = entry["Endpoint"].as_str().unwrap();
                return self
                    .members
                    .iter()
                    .position(|m| m.client == endpoint)
                    .unwrap();
            }
        }
        panic!("no leader in {out}");
    }

    fn try_ctl(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("etcdctl")
            .args([
                "--endpoints",
                &self.url,
                "--dial-timeout=1s",
                "--command-timeout=3s",
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `etcdctl ARGS` against it; fails the test when etcdctl does.
    pub fn ctl(&self, args: &[&str]) -> String {
        self.try_ctl(args)
            .unwrap_or_else(|| panic!("etcdctl {args:?} failed"))
    }

    /// Writes a key directly (as an operator or another tool would).
    pub fn put(&self, key: &str, value: &str) {
        let out = Command::new("etcdctl")
            .args(["--endpoints", &self.url, "--command-timeout=3s", "put", key])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                // The value on stdin: zone files start with `#` and hold newlines.
                child.stdin.take().unwrap().write_all(value.as_bytes())?;
                child.wait()
            })
            .unwrap();
        assert!(out.success(), "etcdctl put {key} failed");
    }

    /// Like [`Etcd::get`]; `None` when etcdctl fails (no leader yet).
    pub fn try_get(&self, key: &str) -> Option<Option<String>> {
        let out = self.try_ctl(&["get", "--print-value-only", key])?;
        Some((!out.is_empty()).then(|| out.trim_end_matches('\n').to_string()))
    }

    /// The value of a key, `None` when it does not exist.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.ctl(&["get", "--print-value-only", key]);
        (!out.is_empty()).then(|| out.trim_end_matches('\n').to_string())
    }
}

/// A loopback TCP relay in front of etcd that a test can cut like a network partition: while
/// cut, connections stay open and bytes are swallowed (no reset, no answer), as when packets
/// are lost; healed, it relays again (connections opened meanwhile stay dead).
pub struct Partition {
    /// The URL to give instead of etcd's, `http://127.0.0.1:PORT`.
    pub url: String,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

impl Partition {
    /// A relay to the first member of `etcd`.
    pub fn to(etcd: &Etcd) -> Partition {
        let target = etcd.members[0]
            .client
            .trim_start_matches("http://")
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (cut, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let accept = {
            let (cut, stop) = (Arc::clone(&cut), Arc::clone(&stop));
            thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            let cut_now = cut.load(Ordering::Relaxed);
                            match (cut_now, TcpStream::connect(&target)) {
                                (false, Ok(server)) => {
                                    for (from, to) in [
                                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                                        (server, client),
                                    ] {
                                        let (cut, stop) = (Arc::clone(&cut), Arc::clone(&stop));
                                        thread::spawn(move || pump(from, to, &cut, &stop));
                                    }
                                }
                                // Cut (or etcd down): accepted and never answered.
                                _ => held.push(client),
                            }
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Partition {
            url,
            cut,
            stop,
            accept: Some(accept),
        }
    }

    /// Cuts the path: nothing goes through, nothing is refused.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }

    /// Heals it: new connections go through.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, cut: &AtomicBool, stop: &AtomicBool) {
    from.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 16 * 1024];
    // Once a connection has been cut its stream is broken: it never relays again.
    let mut broken = false;
    while !stop.load(Ordering::Relaxed) {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => {
                broken |= cut.load(Ordering::Relaxed);
                if !broken && to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                broken |= cut.load(Ordering::Relaxed);
            }
            Err(_) => return,
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}
