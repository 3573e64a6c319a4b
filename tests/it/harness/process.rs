//! Child processes of a test: `meridian` (any subcommand), or any other program a test runs
//! beside it. One spawner: pipes drained into a log, the ready line read with a deadline,
//! killed and the log printed on drop.
//!
//! Owns: every process a test starts. Must never: wait without a deadline, or leave a child
//! running after its owner is gone.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::READY_TIMEOUT;

/// Log lines of a child process, shared with the threads that drain its pipes.
pub type Log = Arc<Mutex<Vec<String>>>;

/// When a [`Process`] prints its log as it is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrintLog {
    /// Always (most tests: the log explains a later failure of the test).
    Always,
    /// Only while the test is failing (a test that restarts processes hundreds of times).
    OnPanic,
}

/// A running child process; killed (and its log printed) on drop.
pub struct Process {
    name: String,
    child: Child,
    log: Log,
    drains: Vec<JoinHandle<()>>,
    print_log: PrintLog,
    /// The `ready ...` line it printed, if it was started with [`Process::spawn_ready`].
    pub ready: Option<String>,
}

impl Process {
    /// Spawns `cmd` with its output captured, without waiting for anything.
    pub fn spawn(name: &str, cmd: Command) -> Process {
        Self::start(name, cmd, None)
    }

    /// Spawns `cmd` and waits (up to `limit`) for its `ready ` line; fails the test with the
    /// exit status and log when none comes.
    pub fn spawn_ready(name: &str, cmd: Command, limit: Duration) -> Process {
        Self::start(name, cmd, Some(limit))
    }

    /// `meridian ARGS` (e.g. `probe ...`), waiting for its ready line.
    pub fn meridian(name: &str, args: &[String]) -> Process {
        Self::spawn_ready(name, meridian_command(args), READY_TIMEOUT)
    }

    fn start(name: &str, mut cmd: Command, ready_within: Option<Duration>) -> Process {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        let log: Log = Arc::default();
        let (ready_tx, ready_rx) = mpsc::channel();
        let drains = vec![
            drain(
                child.stdout.take().unwrap(),
                "out",
                log.clone(),
                Some(ready_tx),
            ),
            drain(child.stderr.take().unwrap(), "err", log.clone(), None),
        ];
        let mut process = Process {
            name: name.to_string(),
            child,
            log,
            drains,
            print_log: PrintLog::Always,
            ready: None,
        };
        if let Some(limit) = ready_within {
            match ready_rx.recv_timeout(limit) {
                Ok(line) => process.ready = Some(line),
                Err(e) => {
                    process.kill();
                    let status = process.child.wait();
                    wait_drained(&process.drains);
                    panic!(
                        "{name} did not print its ready line ({e}); exit: {status:?}\n{}",
                        process.log()
                    );
                }
            }
        }
        process
    }

    /// Prints the log on drop only when the test is failing.
    pub fn print_log(mut self, when: PrintLog) -> Self {
        self.print_log = when;
        self
    }

    /// The child's process id (for reading `/proc/PID/status`).
    pub fn id(&self) -> u32 {
        self.child.id()
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
            .unwrap_or_else(|e| panic!("{}: kill -{name}: {e}", self.name));
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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

    /// Kills it (SIGKILL: no goodbye) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        wait_drained(&self.drains);
        if self.print_log == PrintLog::Always || thread::panicking() {
            eprintln!(
                "---- {} log ----\n{}\n---- end of {} log ----",
                self.name,
                self.log(),
                self.name
            );
        }
    }
}

/// `meridian ARGS` as a command, not yet started.
pub fn meridian_command(args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meridian"));
    cmd.args(args);
    cmd
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
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut child = meridian_command(&args)
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

pub(super) fn parse_ready(line: &str) -> Option<(SocketAddr, SocketAddr)> {
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

pub(super) fn copy_dir(from: &Path, to: &Path) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ready_line() {
        let (d, a) =
            parse_ready("ready dns=127.0.0.1:40123,127.0.0.2:53 api=127.0.0.1:40124").unwrap();
        assert_eq!(d, "127.0.0.1:40123".parse().unwrap());
        assert_eq!(a, "127.0.0.1:40124".parse().unwrap());
        assert!(parse_ready("ready api=127.0.0.1:1").is_none());
    }
}
