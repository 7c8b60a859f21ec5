#!/usr/bin/env bash
# Tern's whole test suite: formatting, lints, unit/property tests and the end-to-end tests
# that run the real binary on loopback. Installs the external clients the tests use when
# they are missing (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need swaks swaks
need openssl openssl
need python3 python3
need mbsync isync
need offlineimap offlineimap3
need fetchmail fetchmail
need mpop mpop
if ((${#missing[@]})); then
  echo "installing test dependencies: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Builds are shared between runs and clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tern-target}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
