#!/usr/bin/env bash
# HTTP/2 abuse at scale: tests/attack_h2.rs on a release build with every flood multiplied.
#
# Each test runs the real rampart binary, sends raw frames (rapid reset, paced rapid reset,
# CONTINUATION flood, empty DATA flood, SETTINGS and PING floods, streams beyond the
# concurrency limit, connection-specific headers, content-length mismatches) while a normal
# HTTP/2 client runs on another connection, and prints what the attacking connection got, how
# many requests reached the upstream, how many normal requests were served meanwhile, and the
# proxy's RSS before, at its peak (VmHWM) and after.
#
#   bash benches/attacks/h2_abuse.sh             # floods ×50 (H2_ABUSE_SCALE)
#   H2_ABUSE_SCALE=200 bash benches/attacks/h2_abuse.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export H2_ABUSE_SCALE=${H2_ABUSE_SCALE:-50}
echo "H2_ABUSE_SCALE=$H2_ABUSE_SCALE"
# One test at a time, so each proxy's figures are its own.
# (libtest prints "test NAME ... " before a test's first line of output: cut it off.)
cargo test --release --test attack_h2 -- --nocapture --test-threads=1 2>&1 |
    sed -E 's/^test [a-z0-9_]+ \.\.\. (.)/\1/' |
    grep -E '^(rapid|paced|CONTINUATION|empty|SETTINGS|PING|[0-9]+ streams|\(|more|less|connection-specific|content-length|too many|test result|test .*FAILED)|panicked'
