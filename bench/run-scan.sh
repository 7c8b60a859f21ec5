#!/usr/bin/env bash
# SMTP ingest with content scanning, Tern's variants and Postfix side by side: N messages of
# SIZE bytes at C sessions, RUNS times each, on a fresh bench instance per variant:
#   off      [spam] enabled = false, no scanner: Tern without filtering
#   spam     the built-in classifier and rules (the default), its global model trained first
#            on MODEL_CORPUS (a directory with spam/ and ham/ message files) so it judges
#   clamd    the classifier and clamd (Debian's, started here with the EICAR test signature)
# and Postfix (the shared harness's peer, no filtering).
#
#   RUNS=3 N=10000 C=32 MODEL_CORPUS=/tmp/tern-spam-accuracy/split/train bench/run-scan.sh
#   (VARIANTS="off spam" to run some of them; SKIP_POSTFIX=1 to leave Postfix out)
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/common.sh"
RUNS="${RUNS:-3}"; N="${N:-10000}"; C="${C:-32}"; SIZE="${SIZE:-10240}"
VARIANTS="${VARIANTS:-off spam clamd}"
OUT="${OUT:-$HERE/results/$(date +%Y%m%d-%H%M%S)-scan}"
MODEL_CORPUS="${MODEL_CORPUS:-}"
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tern-target}"
TERN="${TERN_BIN:-$CARGO_TARGET_DIR/release/tern}"
record_env

CLAMD_DIR="$OUT/clamd"
clamd_start() {
  mkdir -p "$CLAMD_DIR/db"
  local hex
  hex=$(printf '%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' | od -An -tx1 | tr -d ' \n')
  echo "Tern.Test.EICAR:0:*:$hex" >"$CLAMD_DIR/db/test.ndb"
  printf 'DatabaseDirectory %s\nLocalSocket %s\nForeground yes\nLogFile %s\nPidFile %s\n' \
    "$CLAMD_DIR/db" "$CLAMD_DIR/clamd.sock" "$CLAMD_DIR/clamd.log" "$CLAMD_DIR/clamd.pid" >"$CLAMD_DIR/clamd.conf"
  clamd -c "$CLAMD_DIR/clamd.conf" >/dev/null 2>&1 &
  for _ in $(seq 1 120); do [ -S "$CLAMD_DIR/clamd.sock" ] && break; sleep 0.5; done
}
clamd_stop() { [ -s "$CLAMD_DIR/clamd.pid" ] && kill "$(cat "$CLAMD_DIR/clamd.pid")" 2>/dev/null; sleep 1; }

for variant in $VARIANTS; do
  case "$variant" in
    off) extra=$'[spam]\nenabled = false' ;;
    spam) extra="" ;;
    clamd) clamd_start
      extra=$'[[scanner]]\nname = "clamav"\nkind = "clamd"\naddress = "'"$CLAMD_DIR/clamd.sock"'"' ;;
  esac
  "$HERE/tern-bench.sh" reset >/dev/null 2>&1
  BENCH_TERN_EXTRA="$extra" TERN_BIN="$TERN" "$HERE/tern-bench.sh" start >/dev/null
  TERN_PID="$("$HERE/tern-bench.sh" pid)"
  if [ "$variant" != off ] && [ -n "$MODEL_CORPUS" ]; then
    "$TERN" --config "${BENCH_TERN_DIR:-$TMP/bench-tern}/tern.toml" spam train \
      --spam "$MODEL_CORPUS/spam" --ham "$MODEL_CORPUS/ham" | tail -1 | tee -a "$OUT/commands.log"
  fi
  tern_smtp_runs "$variant"
  "$HERE/tern-bench.sh" stop >/dev/null
  [ "$variant" = clamd ] && clamd_stop
done
postfix_smtp_runs
summarize_smtp $VARIANTS
