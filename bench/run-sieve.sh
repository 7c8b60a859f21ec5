#!/usr/bin/env bash
# SMTP ingest with Sieve at delivery, Tern's variants and Postfix side by side: N messages of
# SIZE bytes at C sessions, RUNS times each, alternating, a fresh bench instance per variant:
#   none     no user has a script
#   rules50  each of the 50 users has an active script of 50 rules (header, address, envelope,
#            size, exists tests; fileinto, flags), the kind a mail client's filter editor
#            writes; the bench messages match none, so every rule is evaluated and the message
#            is kept (the usual case, and the most work per message)
# and Postfix (the shared harness's peer, no filtering). The Sieve CPU per message is read from
# Tern's own histogram (tern_sieve_run_seconds) after the rules50 runs.
#
#   RUNS=3 N=10000 C=32 bench/run-sieve.sh
#   (VARIANTS="rules50" to run some of them; SKIP_POSTFIX=1 to leave Postfix out)
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/common.sh"
RUNS="${RUNS:-3}"; N="${N:-10000}"; C="${C:-32}"; SIZE="${SIZE:-10240}"
VARIANTS="${VARIANTS:-none rules50}"
OUT="${OUT:-$HERE/results/$(date +%Y%m%d-%H%M%S)-sieve}"
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tern-target}"
TERN="${TERN_BIN:-$CARGO_TARGET_DIR/release/tern}"
record_env

# The 50-rule script.
rules50() {
  echo 'require ["fileinto", "envelope", "imap4flags", "mailbox", "relational", "comparator-i;ascii-numeric"];'
  for i in $(seq 1 20); do
    echo "if header :contains \"subject\" \"project-$i\" { fileinto :create \"Projects/p$i\"; stop; }"
  done
  for i in $(seq 1 10); do
    echo "if address :domain :is \"from\" \"vendor$i.example\" { fileinto :create \"Vendors/v$i\"; stop; }"
  done
  for i in $(seq 1 10); do
    echo "if header :matches \"list-id\" \"*<team$i.lists.example>*\" { addflag \"\\\\Seen\"; fileinto :create \"Lists/t$i\"; stop; }"
  done
  for i in $(seq 1 5); do
    echo "if envelope :localpart :is \"to\" \"alias$i\" { fileinto :create \"Alias/a$i\"; }"
  done
  for i in $(seq 1 4); do
    echo "if exists \"x-tracker-$i\" { addflag \"\$Tracked\"; }"
  done
  echo 'if size :over 20M { fileinto :create "Huge"; }'
}
rules50 >"$OUT/rules50.sieve"

# Every variant runs at once, each its own instance on its own ports, idle while another is
# loaded; the loads alternate (none, rules50, none, ...) so that the machine's drift during
# the benchmark falls on both alike.
port=12050
declare -A PORTS PIDS DIRS
for variant in $VARIANTS; do
  DIRS[$variant]="$TMP/bench-tern-sieve-$variant"
  PORTS[$variant]=$port
  env BENCH_TERN_DIR="${DIRS[$variant]}" "$HERE/tern-bench.sh" reset >/dev/null 2>&1
  env BENCH_TERN_DIR="${DIRS[$variant]}" BENCH_TERN_SMTP_PORT=$port BENCH_TERN_IMAP_PORT=$((port + 1)) \
    BENCH_TERN_POP3_PORT=$((port + 2)) BENCH_TERN_HTTP_PORT=$((port + 9)) \
    BENCH_TERN_EXTRA=$'[spam]\nenabled = false' TERN_BIN="$TERN" "$HERE/tern-bench.sh" start >/dev/null
  PIDS[$variant]="$(BENCH_TERN_DIR="${DIRS[$variant]}" "$HERE/tern-bench.sh" pid)"
  if [ "$variant" = rules50 ]; then
    for i in $(seq 1 50); do
      "$TERN" --config "${DIRS[$variant]}/tern.toml" sieve put "user$i@bench.test" rules <"$OUT/rules50.sieve" >/dev/null
      "$TERN" --config "${DIRS[$variant]}/tern.toml" sieve activate "user$i@bench.test" rules >/dev/null
    done
  fi
  port=$((port + 10))
done
for run in $(seq 1 "$RUNS"); do
  for variant in $VARIANTS; do
    tern_smtp_run "$variant" "${PORTS[$variant]}" "${PIDS[$variant]}"
  done
done
for variant in $VARIANTS; do
  if [ "$variant" = rules50 ]; then
    # Sieve time per message: the histogram's sum over its count.
    curl -s "http://127.0.0.1:$((PORTS[$variant] + 9))/metrics" | grep '^tern_sieve_run_seconds_\(sum\|count\)' \
      | tee "$OUT/rules50/sieve_metrics.txt" \
      | awk '/_sum/ {s=$2} /_count/ {c=$2} END { if (c > 0) printf "sieve runs: %d, mean %.1f us per run\n", c, s / c * 1e6 }' \
      | tee -a "$OUT/rules50/sieve_metrics.txt"
  fi
  BENCH_TERN_DIR="${DIRS[$variant]}" "$HERE/tern-bench.sh" stop >/dev/null
done
postfix_smtp_runs
summarize_smtp $VARIANTS
