#!/bin/sh
# Runs libFuzzer targets one after another, each for SECONDS, at low priority, keeping the
# growing corpus outside the repository (WORK/corpus/<target>) and printing per run the CPU
# time (user+system, from /usr/bin/time), executions and coverage, for docs/security.md.
#   fuzz/rotate.sh SECONDS TARGET...     (after `cargo +nightly fuzz build`)
set -eu
seconds=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
work=${FUZZ_WORK:-/tmp/fuzzwork}
bin=$here/target/x86_64-unknown-linux-gnu/release
# With autogroup scheduling (Debian's default) `nice` only ranks processes within their
# session's group: a fuzzer started in its own session (setsid) would get a full share beside
# builds and tests. Lowering the group's weight makes nice 19 mean it.
echo 19 > "/proc/$$/autogroup" 2>/dev/null || true
for target in "$@"; do
    mkdir -p "$work/corpus/$target" "$work/artifacts/$target"
    log=$work/$target.$(date +%s).log
    /usr/bin/time -f "cpu_seconds %U %S" -o "$log.time" nice -n 19 "$bin/$target" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/$target/" \
        "$work/corpus/$target" "$here/corpus/$target" >"$log" 2>&1 || true
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
    # slow-unit files are left out: pausing a run (SIGSTOP, while the test suite runs) makes
    # the unit in flight look slow. Re-run one by hand to check it.
    crashes=$(ls "$work/artifacts/$target" | grep -cv '^slow-unit-' || true)
    echo "$(date -u +%F) $target $(cat "$log.time" | tail -1) execs=$execs cov=$cov artifacts=$crashes"
done
