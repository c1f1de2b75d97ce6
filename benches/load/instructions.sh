#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: a measure of rampart's own
# work that does not move with the load of a shared machine (req/s there swings by ±40% from one
# round to the next; this count by about 1%).
#
# For rampart, for the stack floor (examples/stack_floor.rs: the same crates, none of rampart's
# work) and for the per-core floor (examples/stack_floor_per_core.rs: that floor with a
# current-thread runtime per worker and the upstream connections driven in the request's task),
# over HTTP/1.1 keep-alive (h2load --h1, 10 connections) or HTTP/2 (H2=1): runs
# the server under callgrind twice, for N and 2N requests to the bench upstream, and prints
# (instructions of the 2N run - instructions of the N run) / N, so start-up, handshakes and
# shutdown cancel out. The callgrind files are kept in $OUT for `callgrind_annotate`.
#
#   bash benches/load/instructions.sh
#   N=5000 H2=1 bash benches/load/instructions.sh
#   SERVERS=rampart bash benches/load/instructions.sh   # rampart only
#   RAMPART_BIN=target/pgo/release/rampart SERVERS=rampart bash benches/load/instructions.sh
#                                                      # another build (tools/pgo-build.sh's)
#
# Needs valgrind and h2load (nghttp2-client): installed with apt-get when missing. Takes about
# three minutes. valgrind counts a `rep movsb` copy byte by byte, so large memcpy weighs more here
# than in time.
set -euo pipefail

N=${N:-3000}
H2=${H2:-0}
PORT=${PORT:-18643}
UPSTREAM_PORT=${UPSTREAM_PORT:-18680}

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
# shellcheck source=benches/load/lib.sh
source "$repo/benches/load/lib.sh"
need_tools valgrind:valgrind h2load:nghttp2-client

build_release bench_upstream stack_floor stack_floor_per_core
bin=${CARGO_TARGET_DIR:-$repo/target}/release
OUT=${OUT:-$(mktemp -d)}
"$bin/rampart" cert --host localhost --host 127.0.0.1 --out "$OUT/certs" >/dev/null 2>&1
proxy_config "$PORT" "$OUT/certs" "$UPSTREAM_PORT" >"$OUT/rampart.toml"

"$bin/examples/bench_upstream" "127.0.0.1:$UPSTREAM_PORT" 2>/dev/null &
upstream_pid=$!
trap 'kill $upstream_pid 2>/dev/null || true' EXIT
wait_http "$UPSTREAM_PORT" /

protocol=(--h1)
[ "$H2" = 1 ] && protocol=()

# count NAME REQUESTS COMMAND...: total instructions of one run serving REQUESTS requests.
count() {
    local name=$1 requests=$2 pid
    shift 2
    # GLIBC_TUNABLES as rampart sets it for itself on AMD Zen 3 and later (src/copy_tuning.rs),
    # for every server alike: with it already set rampart does not execute itself again, which
    # valgrind would not follow (the new image would run natively, uncounted).
    # shellcheck disable=SC2086 # CALLGRIND_ARGS: more options, e.g. "--cache-sim=yes".
    GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.cpu.x86_rep_movsb_threshold=4194304} \
        TOKIO_WORKER_THREADS=2 valgrind --tool=callgrind ${CALLGRIND_ARGS:-} --callgrind-out-file="$OUT/$name.out" \
        "$@" >/dev/null 2>"$OUT/$name.err" &
    pid=$!
    for _ in $(seq 1 100); do
        curl -ksf -o /dev/null "https://127.0.0.1:$PORT/" && break
        sleep 0.3
    done
    h2load -n "$requests" -c 10 "${protocol[@]}" "https://127.0.0.1:$PORT/" |
        grep -q "$requests succeeded" || echo "warning: not every request of $name succeeded" >&2
    # TERM, not INT: a background job of a script ignores SIGINT. rampart exits gracefully on
    # either; valgrind writes its counts either way.
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    # Less quanta's one-time clock calibration (governor's clock): it loops until the TSC looks
    # stable, 11 to 16 million instructions that vary from run to run, which alone moved the
    # per-request figure by up to 1,800 at N=3000.
    local total calibration
    total=$(awk '/^summary:/ { print $2 }' "$OUT/$name.out")
    # Inlining decides which frame holds it (a fat-LTO build inlines `calibrate` into
    # `<quanta::Clock as Default>::default`): the larger of the two is the calibration.
    calibration=$(callgrind_annotate --inclusive=yes "$OUT/$name.out" 2>/dev/null |
        awk '/quanta::Calibration::calibrate|<quanta::Clock as core::default::Default>::default/ {
            gsub(",", "", $1); if ($1 + 0 > max) max = $1 + 0 } END { print max + 0 }')
    echo $((total - ${calibration:-0}))
}

per_request() { # name command...
    local name=$1 once twice
    shift
    once=$(count "$name-n" "$N" "$@")
    twice=$(count "$name-2n" $((2 * N)) "$@")
    awk -v a="$once" -v b="$twice" -v n="$N" 'BEGIN { printf "%.0f", (b - a) / n }'
}

# SERVERS="rampart" measures only rampart (quicker, while working on it).
SERVERS=${SERVERS:-rampart floor floor2}
rampart=- floor=- floor2=-
case " $SERVERS " in *" rampart "*)
    rampart=$(per_request rampart "${RAMPART_BIN:-$bin/rampart}" run --no-watch -c "$OUT/rampart.toml") ;;
esac
case " $SERVERS " in *" floor "*)
    floor=$(per_request floor "$bin/examples/stack_floor" "127.0.0.1:$PORT" \
        "127.0.0.1:$UPSTREAM_PORT" "$OUT/certs/dev.crt" "$OUT/certs/dev.key") ;;
esac
# Two workers, as the others (TOKIO_WORKER_THREADS does not apply to its own threads).
case " $SERVERS " in *" floor2 "*)
    floor2=$(per_request floor2 "$bin/examples/stack_floor_per_core" "127.0.0.1:$PORT" \
        "127.0.0.1:$UPSTREAM_PORT" "$OUT/certs/dev.crt" "$OUT/certs/dev.key" 2) ;;
esac
echo "instructions per request ($([ "$H2" = 1 ] && echo HTTP/2 || echo HTTP/1.1), N=$N):"
echo "  rampart         $rampart"
echo "  stack floor     $floor"
echo "  per-core floor  $floor2"
if [ "$rampart" != - ] && [ "$floor" != - ] && [ "$floor2" != - ]; then
    echo "  rampart / floor: $(ratio "$rampart" "$floor"), rampart / per-core floor: $(ratio "$rampart" "$floor2"), per-core floor / floor: $(ratio "$floor2" "$floor")"
fi
echo "callgrind files: $OUT (callgrind_annotate $OUT/rampart-2n.out)"
