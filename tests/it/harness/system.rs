//! What a test needs from the machine beyond the Rust toolchain, and what happens when it is
//! missing.
//!
//! Two kinds of need:
//! - A *second opinion* (`dig` checking an answer hickory already checked): runs when the tool
//!   is installed, otherwise prints a note and is skipped, except in strict mode, where a
//!   missing tool fails the test and names the Debian package to install.
//! - A *system test* (root for network namespaces, Docker, Chromium, knotd): such a test is
//!   `#[ignore = "system test: ..."]`, so plain `cargo test --locked` does not run it; when it
//!   does run (`cargo test --locked -- --include-ignored`, as `.ci/run` does) and what it needs
//!   is missing, it fails with the reason. It never passes silently.
//!
//! Owns: the strict-mode switch and the checks. Must never: install anything, or turn a
//! missing prerequisite of a system test into a pass.

use std::process::{Command, Stdio};

/// Strict mode: under CI (`CI` set, not `false`) or with `MERIDIAN_SYSTEM_TESTS=1` (what
/// `.ci/run` exports) every second opinion must run.
pub fn strict() -> bool {
    let on =
        |var: &str| std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    on("CI") || on("MERIDIAN_SYSTEM_TESTS")
}

/// True if `tool` can be started (looked up on `PATH`, run with `arg`, e.g. `-v`).
pub fn installed(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// For a second opinion: true if `tool` (from Debian `package`) is installed. When it is not,
/// prints a note and returns false, or, in [`strict`] mode, fails naming the package.
pub fn second_opinion(tool: &str, package: &str) -> bool {
    if installed(tool, "-v") {
        return true;
    }
    assert!(
        !strict(),
        "{tool} is not installed (strict mode: CI or MERIDIAN_SYSTEM_TESTS): \
         apt-get install {package}, as .ci/run does"
    );
    eprintln!(
        "note: {tool} is not installed (Debian package {package}); skipping the {tool} cross-check"
    );
    false
}

/// For a system test: fails with the reason unless `tool` (from Debian `package`) is installed.
pub fn require_tool(tool: &str, package: &str) {
    assert!(
        installed(tool, "--version"),
        "system test needs {tool}: apt-get install {package} (bash .ci/run installs it)"
    );
}

/// For a system test: the first of `tools` that is installed, or a failure naming `package`.
pub fn require_any_tool<'a>(tools: &[&'a str], package: &str) -> &'a str {
    tools
        .iter()
        .copied()
        .find(|t| installed(t, "--version"))
        .unwrap_or_else(|| {
            panic!("system test needs one of {tools:?}: apt-get install {package} (bash .ci/run installs it)")
        })
}

/// For a system test: fails unless the test runs as root (`why` says what needs it).
pub fn require_root(why: &str) {
    assert!(
        rustix::process::geteuid().is_root(),
        "system test needs root ({why}); run it as root, e.g. `sudo -E bash .ci/run`"
    );
}

/// For a system test: fails unless the Docker daemon answers `docker info`.
pub fn require_docker() {
    let ok = Command::new("docker")
        .arg("info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "system test needs a running Docker daemon (`docker info` failed or docker is not \
         installed) and permission to use it"
    );
}

/// Raises this process's open-file soft limit to `want` (or the hard limit, which an ordinary
/// user cannot exceed) and returns the limit now in force. Children started afterwards
/// (the server) inherit it: tests that open hundreds of sockets call it first, since a normal
/// user's default soft limit (1,024 on Debian) is too tight for them and root's often is not.
pub fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    let target = match lim.maximum {
        Some(max) => want.min(max),
        None => want,
    };
    if lim.current.is_some_and(|c| c < target) {
        lim.current = Some(target);
        setrlimit(Resource::Nofile, lim).unwrap();
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
