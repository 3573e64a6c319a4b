//! The docker-compose lab (two nameservers, probers in three regions, backends per region)
//! as tests: `lab/test.sh` builds the images from this test's `meridian` binary, brings
//! the lab up, queries both nameservers from the host, stops one region's backends, sees the
//! answers move, and tears everything down; once as the default (HTTP push) lab and once in
//! its etcd profile (`lab/test.sh --etcd`). System tests (`#[ignore]`d in the quick suite);
//! they fail loudly when Docker is unreachable.

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The lab's own bound (the first run also debootstraps the base image).
const LAB_TIMEOUT: Duration = Duration::from_secs(600);

/// One lab at a time: both profiles use the same compose project, networks and addresses.
static LAB: Mutex<()> = Mutex::new(());

fn run_lab(args: &[&str]) {
    crate::harness::system::require_docker();
    let _one = LAB.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/lab/test.sh");
    let started = Instant::now();
    let output = Command::new("timeout")
        .arg(LAB_TIMEOUT.as_secs().to_string())
        .arg("bash")
        .arg(script)
        .args(args)
        .env("MERIDIAN_BIN", env!("CARGO_BIN_EXE_meridian"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run lab/test.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "lab/test.sh {args:?} took {:?}\n{stdout}\n{stderr}",
        started.elapsed()
    );
    assert!(
        output.status.success(),
        "lab/test.sh {args:?} failed ({:?}); see its output above",
        output.status
    );
}

#[test]
#[ignore = "system test: needs Docker and docker-compose; run with `cargo test --locked -- --include-ignored` (bash .ci/run)"]
fn compose_lab_moves_answers_when_a_region_fails() {
    run_lab(&[]);
}

#[test]
#[ignore = "system test: needs Docker and docker-compose; run with `cargo test --locked -- --include-ignored` (bash .ci/run)"]
fn compose_lab_in_etcd_mode_moves_answers_when_a_region_fails() {
    run_lab(&["--etcd"]);
}
