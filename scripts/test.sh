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
need curl curl
need sslscan sslscan
need python3 python3
need mbsync isync
need offlineimap offlineimap3
need fetchmail fetchmail
need mpop mpop
# Content scanners the scanning tests run for real.
need clamd clamav-daemon
need sigtool clamav
need rspamd rspamd
# The ACME tests run against pebble, Let's Encrypt's test CA.
need pebble pebble
# The IMAP migration tests copy from a private Dovecot.
need dovecot dovecot-imapd
# Cluster mode's tests start a private PostgreSQL (initdb + pg_ctl) and put HAProxy in front
# of the nodes.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
need haproxy haproxy
# The alert rules are checked and unit-tested with promtool (Debian ships it in prometheus).
need promtool prometheus
# The web admin's browser test drives Debian's Chromium (with Playwright, below).
need chromium chromium
# ManageSieve clients: Debian's sieve-connect (and sievelib, below).
need sieve-connect sieve-connect
# swaks --tls needs Perl's TLS modules (only recommended by the swaks package).
perl -MNet::SSLeay -MIO::Socket::SSL -e1 >/dev/null 2>&1 || missing+=(libnet-ssleay-perl libio-socket-ssl-perl)
# Python modules: the delivery tests' stub DNS, remote MX sink and DKIM verifier.
# The tests run /usr/bin/python3 (where Debian's packages go) when it exists.
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
# What the tests import, not just the top-level packages (a partly installed package must
# not pass this check and then fail a test with an empty message).
pymod() { "$py" -c "$1" >/dev/null 2>&1 || missing+=("$2"); }
if command -v "$py" >/dev/null 2>&1; then
  pymod "from dnslib import QTYPE, RCODE, RR, DNSRecord, A, AAAA, MX, TXT; from dnslib.dns import DNSHeader" python3-dnslib
  pymod "from aiosmtpd.controller import Controller; from aiosmtpd.smtp import SMTP" python3-aiosmtpd
  pymod "import dkim; dkim.arc_verify; dkim.arc_sign; dkim.verify" python3-dkim
  pymod "import nacl.signing" python3-nacl
  pymod "import authres" python3-authres
  pymod "from sievelib.managesieve import Client" python3-sievelib
else
  missing+=(python3-dnslib python3-aiosmtpd python3-dkim python3-nacl python3-authres python3-sievelib)
fi
pymod "import venv, ensurepip" python3-venv
if ((${#missing[@]})); then
  echo "installing test dependencies: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# What Debian does not package: Playwright (the web admin's browser test) and schemathesis
# (the REST API checked against its OpenAPI description), from PyPI into a virtual
# environment outside the clone, shared between runs. The tests find it at $TERN_TEST_VENV.
export TERN_TEST_VENV="${TERN_TEST_VENV:-$HOME/.cache/tern-venv}"
if ! "$TERN_TEST_VENV/bin/python" -c "import playwright.sync_api, schemathesis" >/dev/null 2>&1; then
  echo "installing Playwright and schemathesis into $TERN_TEST_VENV"
  "$py" -m venv "$TERN_TEST_VENV"
  "$TERN_TEST_VENV/bin/pip" install -q "playwright==1.65.*" "schemathesis==4.32.*"
fi

# Builds are shared between runs and clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tern-target}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Licences (no GPL/AGPL), duplicate-free sources, no wildcard versions (deny.toml). The
# advisory database cannot be fetched here (GitHub is out of reach): docs/security.md.
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked --version 0.20.2
cargo deny check licenses bans sources
# Every test binary runs even when one fails; cargo reports all failures at the end.
cargo test --workspace --locked --no-fail-fast
