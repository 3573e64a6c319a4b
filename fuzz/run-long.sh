#!/usr/bin/env bash
# Long fuzz runs, outside CI: each target for SECONDS_PER_TARGET (default 1800), one after the
# other on one core. Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain,
# RUSTC_BOOTSTRAP=1 lets it pass the nightly-only sanitizer flags. Appends a summary per target
# to fuzz/runs.log; crashes land in fuzz/artifacts/<target>/. CARGO_FUZZ_FLAGS adds flags to
# `cargo fuzz run`, e.g. "-a" for debug assertions and overflow checks.
set -uo pipefail
cd "$(dirname "$0")"
secs="${SECONDS_PER_TARGET:-1800}"
targets=("${@:-packet zone report}")
# shellcheck disable=SC2206
targets=(${targets[*]})
for t in "${targets[@]}"; do
    log="/tmp/meridian-fuzz-$t.log"
    start=$(date -u +%FT%TZ)
    # shellcheck disable=SC2086
    RUSTC_BOOTSTRAP=1 cargo fuzz run -O ${CARGO_FUZZ_FLAGS:-} "$t" -- -max_total_time="$secs" -rss_limit_mb=3072 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    {
        echo "== $t ${CARGO_FUZZ_FLAGS:-}: start $start, end $(date -u +%FT%TZ), max_total_time ${secs}s, exit $rc"
        grep -E "^#[0-9]+ +(INITED|DONE)|^Done|stat::number_of_executed_units|stat::peak_rss_mb|panicked|SUMMARY|Test unit written" "$log" | head -20
    } >>runs.log
done
