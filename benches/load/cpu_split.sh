#!/usr/bin/env bash
# User and system CPU per request, read apart: rampart, nginx and the per-core floor doing
# rampart's header work (FLOOR_SAME_HEADERS=1), each under `wrk -t2 -c50` for DURATION seconds,
# ROUNDS interleaved rounds (docs/performance.md, "Where it stands"). proxy.sh's CPU per request
# is their sum; this tells whether a gap is in the program (user) or in the kernel (system).
#
#   bash benches/load/cpu_split.sh               # 3 rounds of 8 s, about 2 minutes
#   ROUNDS=5 DURATION=10 bash benches/load/cpu_split.sh
#   ALSO_BIN=target/pgo/release/rampart bash benches/load/cpu_split.sh   # and another build of
#                                                  # rampart beside ("also": tools/pgo-build.sh's)
#   RAMPART_BIN=…                                  # another build in rampart's place
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
RAMPART_PORT=${RAMPART_PORT:-19543}
NGINX_PORT=${NGINX_PORT:-19544}
FLOOR2_PORT=${FLOOR2_PORT:-19545}
UPSTREAM_PORT=${UPSTREAM_PORT:-19580}
ALSO_PORT=${ALSO_PORT:-19546}
WORKERS=${WORKERS:-2}

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
# shellcheck source=benches/load/lib.sh
source "$repo/benches/load/lib.sh"
need_tools wrk:wrk nginx:nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet --bin rampart --example bench_upstream --example stack_floor_per_core
bin=${CARGO_TARGET_DIR:-$repo/target}/release

start_work
chmod 755 "$work"
"$bin/rampart" cert --host localhost --host 127.0.0.1 --out "$work/certs" >/dev/null 2>&1
chmod 644 "$work/certs/dev.key"
proxy_config "$RAMPART_PORT" "$work/certs" "$UPSTREAM_PORT" >"$work/rampart.toml"
# nginx: the same configuration as proxy.sh's (its here-document, with this script's ports).
CSP="default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
mkdir -p "$work/nginx-tmp"
template=$(sed -n '/^cat >"\$work\/nginx.conf" <<EOF/,/^EOF/p' benches/load/proxy.sh | sed '1d;$d')
eval "cat <<EOF
$template
EOF" >"$work/nginx.conf"

"$bin/examples/bench_upstream" "127.0.0.1:$UPSTREAM_PORT" 2>/dev/null &
pids+=($!)
wait_http "$UPSTREAM_PORT" /
TOKIO_WORKER_THREADS=$WORKERS "${RAMPART_BIN:-$bin/rampart}" run --no-watch -c "$work/rampart.toml" >"$work/rampart.log" 2>&1 &
rampart_pid=$!
pids+=("$rampart_pid")
"$NGINX" -c "$work/nginx.conf" -p "$work" 2>>"$work/nginx-error.log" &
nginx_pid=$!
pids+=("$nginx_pid")
FLOOR_SAME_HEADERS=1 "$bin/examples/stack_floor_per_core" "127.0.0.1:$FLOOR2_PORT" \
    "127.0.0.1:$UPSTREAM_PORT" "$work/certs/dev.crt" "$work/certs/dev.key" "$WORKERS" 2>/dev/null &
floor2_pid=$!
pids+=("$floor2_pid")
wait_https "$RAMPART_PORT" / || { cat "$work/rampart.log" >&2; exit 1; }
wait_https "$NGINX_PORT" / || { cat "$work/nginx-error.log" >&2; exit 1; }
wait_https "$FLOOR2_PORT" /
servers=("rampart:$RAMPART_PORT:$rampart_pid" "nginx:$NGINX_PORT:$nginx_pid"
    "floor-same-headers:$FLOOR2_PORT:$floor2_pid")
if [ -n "${ALSO_BIN:-}" ]; then
    proxy_config "$ALSO_PORT" "$work/certs" "$UPSTREAM_PORT" >"$work/also.toml"
    TOKIO_WORKER_THREADS=$WORKERS "$ALSO_BIN" run --no-watch -c "$work/also.toml" >"$work/also.log" 2>&1 &
    pids+=($!)
    servers+=("also:$ALSO_PORT:$!")
    wait_https "$ALSO_PORT" / || { cat "$work/also.log" >&2; exit 1; }
fi

# "user system" clock ticks of a process and its children (nginx's workers), all threads.
ticks() {
    local pid user=0 system=0 u s
    for pid in "$1" $(pgrep -P "$1" || true); do
        read -r u s < <(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12, $13 }')
        user=$((user + u))
        system=$((system + s))
    done
    echo "$user $system"
}

hz=$(getconf CLK_TCK)
echo "user / system CPU µs per request, wrk -t2 -c50 -d${DURATION}s"
[ -n "${RAMPART_BIN:-}" ] && echo "rampart: $RAMPART_BIN"
[ -n "${ALSO_BIN:-}" ] && echo "also: $ALSO_BIN"
for round in $(seq "$ROUNDS"); do
    for server in "${servers[@]}"; do
        IFS=: read -r name port pid <<<"$server"
        read -r u0 s0 < <(ticks "$pid")
        out=$(wrk -t2 -c50 -d"${DURATION}s" "https://127.0.0.1:$port/" 2>&1)
        read -r u1 s1 < <(ticks "$pid")
        requests=$(echo "$out" | wrk_requests)
        awk -v n="$requests" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$hz" -v name="$name" -v r="$round" \
            'BEGIN { printf "round %d  %-20s %9d requests  user %5.1f  system %5.1f\n", r, name, n, u * 1e6 / hz / n, s * 1e6 / hz / n }'
    done
done
