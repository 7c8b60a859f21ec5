#!/usr/bin/env bash
# SMTP ingest benchmark, Tern and Postfix side by side in one run: N messages of SIZE bytes
# at each concurrency, fsync on for both (Tern always; Postfix by default). Runs are
# interleaved (Tern, Postfix, Tern, ...) so both see the same machine state.
#
# Needs the Postfix peer of the shared harness running (../shared/bench/peers-setup.sh);
# without it only Tern is measured.
#
#   RUNS=3 N=10000 SIZE=10240 CONC="1 8 32" bench/run-smtp.sh
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$HERE/common.sh"
RUNS="${RUNS:-3}"
N="${N:-10000}"
SIZE="${SIZE:-10240}"
CONC="${CONC:-1 8 32}"
OUT="${OUT:-$HERE/results/$(date +%Y%m%d-%H%M%S)-smtp}"
mkdir -p "$OUT/tern" "$OUT/postfix"

start_tern
have_postfix=0
# CPU ticks (1/100 s) of the Tern process, and how many contents its indexer has indexed.
tern_cpu_ticks() { awk '{print $14+$15}' "/proc/$TERN_PID/stat"; }
tern_indexed() {
  local v
  v=$(curl -s "127.0.0.1:${BENCH_TERN_HTTP_PORT:-12059}/metrics" | awk '/^tern_fts_indexed_total/ {print $2}')
  echo "${v:-0}"
}
running "$PF_PID" && have_postfix=1

{
  echo "date: $(date -Is)"
  echo "tern: $(git -C "$HERE/.." rev-parse --short HEAD) release build"
  command -v postconf >/dev/null && echo "postfix: $(postconf -d -h mail_version 2>/dev/null)"
  echo "python: $(python3 --version)"
  echo "cpus: $(nproc)  kernel: $(uname -r)"
} >"$OUT/env.txt"


for run in $(seq 1 "$RUNS"); do
  for c in $CONC; do
    quiet
    cmd=(python3 "$HERE/clients/smtp_load.py" --host 127.0.0.1 --port 12050 -n "$N" -c "$c" --size "$SIZE"
         --rcpt 'user{i}@bench.test' --users 1:50 --server-pid "$TERN_PID" --label tern --drain-cmd true --json "$OUT/tern/smtp.jsonl"
        )
    echo "${cmd[*]}" >>"$OUT/commands.log"
    cpu0=$(tern_cpu_ticks); indexed0=$(tern_indexed)
    "${cmd[@]}" --quiet
    cpu_load=$(tern_cpu_ticks)
    # The full-text indexer works behind the sessions: wait until it has indexed this run's
    # messages (bounded), then count the CPU it took after the load.
    # (BENCH_NO_INDEXER=1: do not wait for it.)
    for _ in $(seq 1 120); do
      [ -n "${BENCH_NO_INDEXER:-}" ] && break
      [ "$(( $(tern_indexed) - indexed0 ))" -ge "$N" ] && break
      sleep 0.5
    done
    sleep 2 # tantivy's merges after the last commit
    cpu1=$(tern_cpu_ticks)
    python3 -c "import json,sys; t=100.0; print(json.dumps({'c': $c, 'n': $N, 'during_ms_per_msg': round(($cpu_load-$cpu0)*1000/t/$N, 3), 'after_ms_per_msg': round(($cpu1-$cpu_load)*1000/t/$N, 3), 'indexed': $(tern_indexed) - $indexed0}))" >>"$OUT/tern/cpu-split.jsonl"
    if [ "$have_postfix" = 1 ]; then
      "$PEERS/peers-reset-mail.sh" >/dev/null 2>&1 || true
      quiet
      cmd=(python3 "$HERE/clients/smtp_load.py" --host 127.0.0.1 --port 12025 -n "$N" -c "$c" --size "$SIZE"
           --rcpt 'user{i}@bench.test' --users 1:50 --server-pid "@$PF_PID" --label postfix
           --drain-cmd "$PEERS/peers-drain-wait.sh" --json "$OUT/postfix/smtp.jsonl")
      echo "${cmd[*]}" >>"$OUT/commands.log"
      "${cmd[@]}" --quiet
    fi
  done
done
dirs=("$OUT/tern")
[ "$have_postfix" = 1 ] && dirs+=("$OUT/postfix")
python3 "$HERE/clients/summarize.py" "${dirs[@]}" | tee "$OUT/summary.md"
if [ -s "$OUT/tern/cpu-split.jsonl" ]; then
  echo "Tern CPU per message, during the load and after it (indexing, merges):" | tee -a "$OUT/summary.md"
  tee -a "$OUT/summary.md" <"$OUT/tern/cpu-split.jsonl"
fi
