//! The docker-compose lab (two nameservers, probers in three regions, backends per region)
//! as one test: `lab/test.sh` builds the images from this test's `meridian` binary, brings
//! the lab up, queries both nameservers from the host, stops one region's backends, sees the
//! answers move, and tears everything down. A system test (`#[ignore]`d in the quick suite);
//! it fails loudly when Docker is unreachable.

use std::process::Command;
use std::time::{Duration, Instant};

/// The lab's own bound (the first run also debootstraps the base image).
const LAB_TIMEOUT: Duration = Duration::from_secs(600);

#[test]
#[ignore = "system test: needs Docker and docker-compose; run with `cargo test --locked -- --include-ignored` (bash .ci/run)"]
fn compose_lab_moves_answers_when_a_region_fails() {
    crate::harness::system::require_docker();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/lab/test.sh");
    let started = Instant::now();
    let output = Command::new("timeout")
        .arg(LAB_TIMEOUT.as_secs().to_string())
        .arg("bash")
        .arg(script)
        .env("MERIDIAN_BIN", env!("CARGO_BIN_EXE_meridian"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run lab/test.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "lab/test.sh took {:?}\n{stdout}\n{stderr}",
        started.elapsed()
    );
    assert!(
        output.status.success(),
        "lab/test.sh failed ({:?}); see its output above",
        output.status
    );
}
