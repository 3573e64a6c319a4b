//! Build script: records the commit the binary is built from as `MERIDIAN_COMMIT`, shown by
//! `meridian --version`. Packagers building from a tarball set `MERIDIAN_COMMIT` themselves;
//! otherwise `git describe` names it, and a tree that is not a git checkout says `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MERIDIAN_COMMIT");
    let commit = std::env::var("MERIDIAN_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_describe)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=MERIDIAN_COMMIT={}", commit.trim());
    // Rebuild when HEAD moves: the files git keeps for HEAD and the branch it points to.
    for path in ["HEAD", "refs", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={}", p.trim());
        }
    }
    if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--git-path", head.trim()])
    {
        println!("cargo:rerun-if-changed={}", p.trim());
    }
}

/// `git describe --always --dirty --abbrev=12`: the commit, `-dirty` when the tree has
/// uncommitted changes.
fn git_describe() -> Option<String> {
    git(&[
        "describe",
        "--always",
        "--dirty",
        "--abbrev=12",
        "--exclude=*",
    ])
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()
}
