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
# Waits (bounded) until the machine is idle before a run.
quiet() { [ -x "$PEERS/wait_quiet.py" ] && python3 "$PEERS/wait_quiet.py" >>"$OUT/commands.log" 2>&1 || true; }
