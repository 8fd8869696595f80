#!/bin/sh
# Runs the property tests on outside-input parsers with many cases (default 20,000 per
# property; pass a number to change it). Any failure prints the minimal failing input.
set -eu
cd "$(dirname "$0")/.."
ORGWARDEN_PROPTEST_CASES="${1:-20000}" exec cargo test --test it properties:: -- --nocapture
