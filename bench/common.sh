# Sourced by the run-*.sh benchmarks after they set HERE (this folder) and OUT: where the
# peers' scripts and state live, the Tern bench instance, and logging to $OUT/commands.log.
PEERS="${PEERS_DIR:-$HERE/../../shared/bench}"
TMP="${TMPDIR:-/tmp}"
DC_PID="$TMP/bench-dovecot/run/master.pid"
PF_PID="$TMP/bench-postfix/spool/pid/master.pid"

# Whether the process whose pid file is $1 runs.
running() { [ -s "$1" ] && kill -0 "$(tr -dc 0-9 <"$1")" 2>/dev/null; }

# Starts (or finds) the Tern bench instance; sets TERN_PID.
start_tern() {
  "$HERE/tern-bench.sh" start
  TERN_PID="$("$HERE/tern-bench.sh" pid)"
}

log() { echo "$*" >>"$OUT/commands.log"; }
# What the results were measured on, into $OUT/env.txt.
record_env() {
  {
    echo "date: $(date -Is)"
    echo "tern: $(git -C "$HERE/.." rev-parse --short HEAD) release build"
    echo "cpus: $(nproc)  kernel: $(uname -r)"
  } >"$OUT/env.txt"
}
# Waits (bounded) until the machine is idle before a run.
quiet() { [ -x "$PEERS/wait_quiet.py" ] && python3 "$PEERS/wait_quiet.py" >>"$OUT/commands.log" 2>&1 || true; }

# One SMTP ingest run at a Tern bench instance: N messages of SIZE bytes at C sessions to
# user1..50, appended to $OUT/$1/smtp.jsonl with label tern-$1. $2: port (12050), $3: pid.
tern_smtp_run() {
  mkdir -p "$OUT/$1"
  quiet
  local cmd=(python3 "$HERE/clients/smtp_load.py" --host 127.0.0.1 --port "${2:-12050}" -n "$N" -c "$C"
             --size "$SIZE" --rcpt 'user{i}@bench.test' --users 1:50 --server-pid "${3:-$TERN_PID}"
             --label "tern-$1" --drain-cmd true --json "$OUT/$1/smtp.jsonl")
  log "${cmd[*]}"
  "${cmd[@]}" --quiet
}

# RUNS of them at the bench instance on 12050 (pid TERN_PID).
tern_smtp_runs() {
  local run
  for run in $(seq 1 "$RUNS"); do tern_smtp_run "$1"; done
}

# The same load at the shared harness's Postfix (port 12025), unless SKIP_POSTFIX is set or it
# does not run; results in $OUT/postfix.
postfix_smtp_runs() {
  [ -z "${SKIP_POSTFIX:-}" ] && running "$PF_PID" || return 0
  mkdir -p "$OUT/postfix"
  local run cmd
  for run in $(seq 1 "$RUNS"); do
    "$PEERS/peers-reset-mail.sh" >/dev/null 2>&1 || true
    quiet
    cmd=(python3 "$HERE/clients/smtp_load.py" --host 127.0.0.1 --port 12025 -n "$N" -c "$C" --size "$SIZE"
         --rcpt 'user{i}@bench.test' --users 1:50 --server-pid "@$PF_PID" --label postfix
         --drain-cmd "$PEERS/peers-drain-wait.sh" --json "$OUT/postfix/smtp.jsonl")
    log "${cmd[*]}"
    "${cmd[@]}" --quiet
  done
}

# The summary table of the variants given (and Postfix), into $OUT/summary.md.
summarize_smtp() {
  local dirs=() v
  for v in "$@" postfix; do [ -s "$OUT/$v/smtp.jsonl" ] && dirs+=("$OUT/$v"); done
  python3 "$HERE/clients/summarize.py" "${dirs[@]}" | tee "$OUT/summary.md"
}
