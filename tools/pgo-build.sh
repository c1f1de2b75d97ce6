#!/usr/bin/env bash
# A profile-guided (PGO) release build of rampart: an instrumented build is run under the load
# bench's own workloads, and the profile it writes lays out and inlines the real build (hot code
# packed together, cold code moved away). How to use it: docs/operations.md, "The profile-guided
# build"; what it buys on this machine, and what it does not: docs/performance.md, "Where it
# stands".
#
#   bash tools/pgo-build.sh              # 11 to 15 minutes on 2 cores; prints the binary's path
#   TRAIN=5s bash tools/pgo-build.sh     # a shorter training run (seconds, written "Ns")
#   SHIP=1 bash tools/pgo-build.sh       # also replace the shipped profile in tools/pgo
#
# The shipped profile (tools/pgo: the profile, the `rustc -vV` that recorded it and the commit it
# was trained at) guides every `cargo build --release` made with that rustc, through
# tools/rustc-wrapper.sh. Record it again after changing code on the request path, and commit
# tools/pgo: functions changed since the profile was recorded lose its guidance (LLVM drops a
# function's counts when its control flow no longer matches), the rest keep it.
#
# Builds into target/pgo-gen (instrumented) and target/pgo (the result: target/pgo/release/rampart,
# its profile target/pgo/rampart.profdata). Needs wrk and h2load (installed with apt-get when
# missing) and llvm-profdata from the toolchain's llvm-tools (added with rustup when missing): the
# profile format follows rustc's LLVM, so Debian's llvm-profdata is the wrong version.
#
# The training covers what the bench measures and what a deployment also runs: HTTPS keep-alive
# proxying over HTTP/1.1 and HTTP/2, new TLS handshakes, a small static file, and the access log
# (on for a second phase, after a SIGHUP reload). Code it never runs (ACME, Redis, errors) is
# laid out as cold and works the same; a route with IP rules, a rate limit and compression,
# outside the training, still ran 20% fewer instructions than in the default build.
set -euo pipefail

TRAIN=${TRAIN:-10s}
HTTPS_PORT=${HTTPS_PORT:-18643}
UPSTREAM_PORT=${UPSTREAM_PORT:-18680}

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=benches/load/lib.sh
source "$repo/benches/load/lib.sh"
need_tools wrk:wrk h2load:nghttp2-client

host=$(rustc -vV | sed -n 's/^host: //p')
profdata_tool="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata_tool" ]; then
    echo "adding llvm-tools (llvm-profdata) with rustup"
    rustup component add llvm-tools
fi

target_dir=${CARGO_TARGET_DIR:-$repo/target}
gen_dir="$target_dir/pgo-gen"
use_dir="$target_dir/pgo"
raw_dir="$gen_dir/profiles"
profile="$use_dir/rampart.profdata"
rm -rf "$raw_dir"
mkdir -p "$raw_dir" "$use_dir"

# The flags of .cargo/config.toml's `[build] rustflags`, which a RUSTFLAGS in the environment
# replaces: the profile is recorded and used with the same inlining as the default build's.
RUSTFLAGS=${RUSTFLAGS:-$(python3 -c 'import sys, tomllib
print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["build"]["rustflags"]))' "$repo/.cargo/config.toml")}

echo "1/3 the instrumented build ($gen_dir)"
RUSTFLAGS="$RUSTFLAGS -Cprofile-generate=$raw_dir" CARGO_TARGET_DIR="$gen_dir" \
    cargo build --release --quiet --locked --bin rampart
cargo build --release --quiet --locked --example bench_upstream

start_work

echo "2/3 training ($TRAIN per workload)"
"$target_dir/release/examples/bench_upstream" "127.0.0.1:$UPSTREAM_PORT" 2>"$work/upstream.log" &
pids+=($!)
wait_http "$UPSTREAM_PORT" / || { cat "$work/upstream.log" >&2; exit 1; }
"$gen_dir/release/rampart" cert --host localhost --host 127.0.0.1 --out "$work/certs" >/dev/null 2>&1
mkdir -p "$work/root"
for i in $(seq 1 40); do echo ".rule-$i { color: #333; margin: 0 auto; }"; done >"$work/root/app.css"
training_config() { # ACCESS_LOG
    proxy_config "$HTTPS_PORT" "$work/certs" "$UPSTREAM_PORT" | sed "s/^access = false/access = $1/"
    cat <<EOF

[[routes]]
name = "static"
path = "/static/"
static = { root = "$work/root" }
EOF
}
training_config false >"$work/rampart.toml"
"$gen_dir/release/rampart" run --no-watch -c "$work/rampart.toml" >/dev/null 2>"$work/rampart.log" &
rampart_pid=$!
pids+=("$rampart_pid")
wait_https "$HTTPS_PORT" / || { cat "$work/rampart.log" >&2; exit 1; }
url="https://127.0.0.1:$HTTPS_PORT"
wrk -t2 -c50 -d"$TRAIN" "$url/" >/dev/null
h2load -t2 -c10 -m10 -D "${TRAIN%s}" "$url/" >/dev/null
h2load -t1 -c64 -m10 -D "${TRAIN%s}" "$url/" >/dev/null
wrk -t2 -c50 -d"$TRAIN" -H "Connection: close" "$url/" >/dev/null
wrk -t2 -c50 -d"$TRAIN" "$url/static/app.css" >/dev/null
# The access log on, as it is by default.
training_config true >"$work/rampart.toml"
kill -HUP "$rampart_pid"
sleep 1
wrk -t2 -c50 -d"$TRAIN" "$url/" >/dev/null
# The profile is written when the process exits.
kill -TERM "$rampart_pid"
wait "$rampart_pid" || true
ls "$raw_dir"/*.profraw >/dev/null 2>&1 || { echo "no profile was written" >&2; exit 1; }
"$profdata_tool" merge -o "$profile" "$raw_dir"
if [ "${SHIP:-0}" = 1 ]; then
    # The whole profile: a sparse one (functions the training never ran left out, 4.9 instead
    # of 17 MB) ran 39,569 instructions per HTTP/1.1 request where this one runs 38,136, since
    # code marked as never run is kept out of the hot path's way.
    cp "$profile" "$repo/tools/pgo/rampart.profdata"
    rustc -vV >"$repo/tools/pgo/rustc-vV.txt"
    commit=$(git -C "$repo" rev-parse --short=12 HEAD)
    git -C "$repo" diff --quiet HEAD -- src Cargo.toml Cargo.lock || commit="$commit with changes"
    echo "$commit" >"$repo/tools/pgo/trained-at.txt"
    # Cargo does not see the wrapper's arguments, so it would keep the dependencies it compiled
    # with the previous profile: the next release build compiles everything with this one.
    cargo clean --release --quiet
    echo "wrote tools/pgo (trained at $commit) and cleaned target/release: commit tools/pgo"
fi

echo "3/3 the profile-guided build ($use_dir)"
RUSTFLAGS="$RUSTFLAGS -Cprofile-use=$profile" \
    CARGO_TARGET_DIR="$use_dir" cargo build --release --quiet --locked --bin rampart
echo "$use_dir/release/rampart"
