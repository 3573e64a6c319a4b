//! Exec checks: a program run with arguments, no shell, bounded in time and output.
//!
//! Owns: [`AllowExec`] (the directories `meridian probe --allow-exec` lets programs run from)
//! and running one exec check ([`run`]).
//!
//! Never: runs a program outside the allowed directories (zones may come from elsewhere, so
//! only the prober's own command line decides what it executes: [`AllowExec::check`] rejects
//! such a zone as a configuration error before anything runs), goes through a shell, searches
//! `PATH`, passes the prober's environment on, or lets a program outlive its timeout (the
//! child is killed when the check is dropped).
//!
//! The program gets `{address}` and `{port}` in its arguments replaced by the endpoint's probe
//! address and port, and the same in `MERIDIAN_ADDRESS` and `MERIDIAN_PORT`. Exit status 0 is
//! up. Its standard output may be a JSON object with `load` (0.0-1.0, for load shedding)
//! and/or `weight` (0-1000, replaces the configured weight); anything else on it is ignored.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncReadExt;

use super::check::{CheckReason, CheckSpec, Signals, load_at, shorten, weight_at};

/// Most bytes of an exec check's standard output read.
pub const MAX_OUTPUT_BYTES: u64 = 64 * 1024;

/// The directories programs of exec checks may live in (`--allow-exec`, repeatable).
#[derive(Clone, Debug, Default)]
pub struct AllowExec {
    dirs: Vec<PathBuf>,
}

/// Why an exec check may not run on this prober.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// No `--allow-exec` directory holds the program.
    #[error(
        "program `{}` is outside the directories this prober may run programs from ({}); \
         start the prober with --allow-exec DIR to allow a directory",
        program.display(),
        allowed
    )]
    NotAllowed {
        /// The program as configured.
        program: PathBuf,
        /// The allowed directories, for the message.
        allowed: String,
    },
    /// An `--allow-exec` directory cannot be resolved.
    #[error("--allow-exec {}: {source}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl AllowExec {
    /// Resolves the directories (symbolic links, `..`), so that a program is judged by where
    /// it really is.
    pub fn new(dirs: &[PathBuf]) -> Result<Self, ExecError> {
        let dirs = dirs
            .iter()
            .map(|d| {
                d.canonicalize().map_err(|source| ExecError::Dir {
                    dir: d.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { dirs })
    }

    /// Ok when `program` resolves to a file inside one of the directories. A program that
    /// does not exist (or cannot be resolved) is refused too: it cannot be judged.
    pub fn check(&self, program: &Path) -> Result<(), ExecError> {
        let real = program.canonicalize().ok();
        let inside = real
            .as_ref()
            .is_some_and(|p| p.is_file() && self.dirs.iter().any(|d| p.starts_with(d)));
        if inside {
            Ok(())
        } else {
            Err(ExecError::NotAllowed {
                program: program.to_owned(),
                allowed: if self.dirs.is_empty() {
                    "none".to_owned()
                } else {
                    self.dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
        }
    }
}

/// Runs the exec check of `spec` against `ip`. The caller bounds it with the spec's timeout;
/// dropping the future kills the child.
pub(crate) async fn run(spec: &CheckSpec, ip: IpAddr) -> (CheckReason, Signals) {
    let none = Signals::default();
    let Some((program, args)) = spec.command.split_first() else {
        return (CheckReason::Exec("no program".to_owned()), none);
    };
    let (address, port) = (ip.to_string(), spec.port.to_string());
    let args = args
        .iter()
        .map(|a| a.replace("{address}", &address).replace("{port}", &port));
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("MERIDIAN_ADDRESS", &address)
        .env("MERIDIAN_PORT", &port)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return (CheckReason::Exec(shorten(&e.kind().to_string())), none),
    };
    let mut out = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        // A read error only loses the hints; the exit status still decides.
        let _ = stdout.take(MAX_OUTPUT_BYTES).read_to_end(&mut out).await;
    }
    let status = match child.wait().await {
        Ok(s) => s,
        Err(e) => return (CheckReason::Exec(shorten(&e.to_string())), none),
    };
    let signals = output_signals(&out);
    if status.success() {
        (CheckReason::Ok, signals)
    } else {
        (CheckReason::Exit(status.code()), signals)
    }
}

/// `load` and `weight` from a JSON object on standard output; nothing from anything else.
pub(crate) fn output_signals(out: &[u8]) -> Signals {
    match serde_json::from_slice::<serde_json::Value>(out) {
        Ok(json) if json.is_object() => Signals {
            load: load_at(&json, "/load"),
            weight: weight_at(&json, "/weight"),
        },
        _ => Signals::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::check::{CheckKind, Checker};
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn spec(command: Vec<String>, timeout: Duration) -> CheckSpec {
        CheckSpec {
            command,
            timeout,
            ..CheckSpec::new(CheckKind::Exec, 8080)
        }
    }

    #[test]
    fn output_hints() {
        let cases: &[(&str, Option<f64>, Option<u32>)] = &[
            (r#"{"load": 0.5}"#, Some(0.5), None),
            (r#"{"load": 7, "weight": 250}"#, Some(1.0), Some(250)),
            (r#"{"weight": 5000}"#, None, Some(1000)),
            (r#"{"weight": -3, "load": "high"}"#, None, Some(0)),
            ("ok\n", None, None),
            ("[0.5]", None, None),
            ("", None, None),
        ];
        for (out, load, weight) in cases {
            let s = output_signals(out.as_bytes());
            assert_eq!((s.load, s.weight), (*load, *weight), "{out}");
        }
    }

    #[test]
    fn only_programs_inside_the_allowed_directories() {
        let allowed = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let inside = script(allowed.path(), "ok.sh", "exit 0");
        let outside = script(other.path(), "ok.sh", "exit 0");
        let allow = AllowExec::new(&[allowed.path().to_owned()]).unwrap();
        assert!(allow.check(&inside).is_ok());
        let e = allow.check(&outside).unwrap_err().to_string();
        assert!(e.contains("outside the directories"), "{e}");
        // `..` cannot climb out, and a missing program is refused.
        let climbing = allowed.path().join("..").join(
            other
                .path()
                .strip_prefix(std::env::temp_dir())
                .unwrap_or(other.path()),
        );
        assert!(allow.check(&climbing.join("ok.sh")).is_err());
        assert!(allow.check(&allowed.path().join("missing.sh")).is_err());
        // A symbolic link inside pointing outside is judged by its target.
        let link = allowed.path().join("link.sh");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(allow.check(&link).is_err());
        // No directory allowed: nothing runs.
        assert!(AllowExec::default().check(&inside).is_err());
    }

    #[tokio::test]
    async fn exit_status_output_arguments_and_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str, body: &str| script(dir.path(), name, body).display().to_string();
        type Case<'a> = (Vec<String>, &'a str, Option<f64>, Option<u32>);
        let cases: Vec<Case<'_>> = vec![
            (vec![p("up.sh", "exit 0")], "ok", None, None),
            (vec![p("down.sh", "exit 3")], "exit 3", None, None),
            (
                vec![p("load.sh", r#"echo '{"load": 0.9, "weight": 40}'"#)],
                "ok",
                Some(0.9),
                Some(40),
            ),
            (
                // Arguments are passed as they are (no shell), placeholders replaced.
                vec![
                    p(
                        "args.sh",
                        r#"[ "$1" = "127.0.0.1:8080" ] && [ "$2" = 'a b;c' ] && [ "$MERIDIAN_ADDRESS" = 127.0.0.1 ]"#,
                    ),
                    "{address}:{port}".into(),
                    "a b;c".into(),
                ],
                "ok",
                None,
                None,
            ),
            (vec![p("slow.sh", "sleep 5")], "timeout", None, None),
            (
                vec![dir.path().join("missing").display().to_string()],
                "exec: entity not found",
                None,
                None,
            ),
        ];
        for (command, reason, load, weight) in cases {
            let c = Checker::new(spec(command.clone(), Duration::from_millis(300))).unwrap();
            let started = std::time::Instant::now();
            let o = c.check(IpAddr::from([127, 0, 0, 1])).await;
            assert_eq!(o.reason.to_string(), reason, "{command:?}");
            assert_eq!((o.load, o.weight), (load, weight), "{command:?}");
            assert_eq!(o.ok, reason == "ok");
            assert!(started.elapsed() < Duration::from_secs(2), "{command:?}");
        }
    }
}
