#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing, says what it installs,
# then checks formatting and lints and runs the whole suite. Run it from anywhere; CI runs
# exactly this (.ci/run).
#
# What the tests need beyond Rust, and why:
#   cargo-nextest          the test runner (runs each test in its own process, in parallel)
#   rustfmt, clippy        `cargo fmt --check` and `cargo clippy -D warnings`
#   chromium   (Debian)    renders the HTML email digest to a PNG
#   promtool   (Debian: prometheus)  lints the daemon's /metrics
#   systemd-analyze (Debian: systemd) verifies the shipped systemd unit
#   openai, aiosmtpd, cmarkgfm (PyPI, in target/test-venv)  the official OpenAI Python
#                          client as an independent check of the simulator; a real SMTP
#                          server process; GitHub's Markdown renderer for the Markdown report
#
# Installing Debian packages needs root and apt-get. Without them the script says what is
# missing and runs the suite anyway: the tests that need a missing tool fail with one line
# naming it and the command that installs it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

say() { printf 'test.sh: %s\n' "$*" >&2; }

# --- Disk space ------------------------------------------------------------------------
# A build from nothing writes about 2.5 GB under target/ (plus the Debian packages and the
# Python environment below). Running out shows up late, as a compiler "No space left on
# device" several minutes in, so say it first. It is a warning: an existing target/ needs less.
if free_kb=$(df -Pk . 2>/dev/null | awk 'NR == 2 { print $4 }') && [ -n "$free_kb" ] \
  && [ "$free_kb" -lt $((3 * 1024 * 1024)) ]; then
  say "warning: only $((free_kb / 1024)) MB free on the disk holding $(pwd); a build from nothing needs about 3 GB"
fi

# --- Rust components -------------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
      say "installing the Rust component $component (rustup)"
      rustup component add "$component"
    fi
  done
fi
if ! command -v cargo-nextest >/dev/null 2>&1; then
  say "installing cargo-nextest from crates.io (cargo install --locked; a few minutes)"
  cargo install cargo-nextest --locked --quiet
fi

# --- Debian packages -------------------------------------------------------------------
apt_packages=()
command -v chromium >/dev/null 2>&1 || apt_packages+=(chromium)
command -v promtool >/dev/null 2>&1 || apt_packages+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || apt_packages+=(systemd)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_packages+=(python3-venv)
if [ ${#apt_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian packages: ${apt_packages[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
    # The prometheus package starts a server; only its promtool is wanted here.
    if [[ " ${apt_packages[*]} " == *" prometheus "* ]]; then
      systemctl stop prometheus 2>/dev/null || pkill -x prometheus 2>/dev/null || true
    fi
  else
    say "cannot install ${apt_packages[*]} (needs root and apt-get); the tests that need them will say so"
  fi
fi

# --- Python packages, in a virtual environment under target/ ---------------------------
venv=target/test-venv
if [ ! -x "$venv/bin/python" ]; then
  say "creating the Python virtual environment $venv"
  python3 -m venv "$venv" || say "python3 -m venv failed; the Python-based tests will say so"
fi
if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c 'import openai, aiosmtpd, cmarkgfm' 2>/dev/null; then
  say "installing the Python packages openai>=3.57, aiosmtpd and cmarkgfm into $venv (pip)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'openai>=3.57' aiosmtpd cmarkgfm
fi
if [ -x "$venv/bin/python" ]; then
  ORGWARDEN_TEST_PYTHON="$(pwd)/$venv/bin/python"
  export ORGWARDEN_TEST_PYTHON
fi

# --- Checks and the suite --------------------------------------------------------------
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
say "cargo nextest run --no-fail-fast"
exec cargo nextest run --no-fail-fast "$@"
