#!/bin/sh
# Times the whole shipped rule pack over a generated 1,000-project organization
# (budget: under 2 s). Pass --release for optimized numbers.
set -eu
cd "$(dirname "$0")/.."
exec cargo test "$@" --test it rules_bench:: -- --ignored --nocapture
