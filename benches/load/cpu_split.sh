#!/usr/bin/env bash
# User and system CPU per request, read apart: rampart, nginx and the per-core floor doing
# rampart's header work (FLOOR_SAME_HEADERS=1), each under `wrk -t2 -c50` (or another of
# proxy.sh's keep-alive shapes: LOAD=h1hi, h2 or h2hi) for DURATION seconds, ROUNDS interleaved
# rounds (docs/performance.md, "Where it stands"). proxy.sh's CPU per request is their sum;
# this tells whether a gap is in the program (user) or in the kernel (system). It also reads
# what the rest of the machine spends per request, the load generator and the upstream, which
# share the same cores, and from the medians prints the CPU budget: the CPU per request a
# server would need for 1.2x nginx's requests/s when the cores are saturated.
#
#   bash benches/load/cpu_split.sh               # 3 rounds of 8 s, about 2 minutes
#   ROUNDS=5 DURATION=10 bash benches/load/cpu_split.sh
#   ALSO_BIN=target/pgo/release/rampart bash benches/load/cpu_split.sh   # and another build of
#                                                  # rampart beside ("also": tools/pgo-build.sh's)
#   RAMPART_BIN=…                                  # another build in rampart's place
#   LOAD=h2 bash benches/load/cpu_split.sh        # h2load -t2 -c10 -m10 (HTTP/2) instead of wrk;
#                                                  # h1hi and h2hi: wrk -t1 -c64, h2load -t1 -c64 -m10
#                                                  # (the sizes are proxy.sh's, from lib.sh)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
RAMPART_PORT=${RAMPART_PORT:-19543}
NGINX_PORT=${NGINX_PORT:-19544}
FLOOR2_PORT=${FLOOR2_PORT:-19545}
UPSTREAM_PORT=${UPSTREAM_PORT:-19580}
ALSO_PORT=${ALSO_PORT:-19546}
WORKERS=${WORKERS:-2}
LOAD=${LOAD:-h1}

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
# shellcheck source=benches/load/lib.sh
source "$repo/benches/load/lib.sh"
# proxy.sh's four keep-alive shapes.
case "$LOAD" in
    h1) load_name="wrk -t2 -c$CONNECTIONS" ;;
    h1hi) load_name="wrk -t1 -c$HIGH_CONNECTIONS" ;;
    h2) load_name="h2load -t2 -c$H2_CLIENTS -m$H2_STREAMS" ;;
    h2hi) load_name="h2load -t1 -c$HIGH_H2_CLIENTS -m$H2_STREAMS" ;;
    *) echo "LOAD is h1, h1hi, h2 or h2hi" >&2; exit 2 ;;
esac
need_tools wrk:wrk h2load:nghttp2-client nginx:nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

build_release bench_upstream stack_floor_per_core
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
upstream_pid=$!
pids+=("$upstream_pid")
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

# Clock ticks used by this shell's waited-for children and their descendants (cutime + cstime):
# the load generator, run inside $(...), is counted once that subshell is reaped.
children_ticks() { sed 's/.*) //' "/proc/$$/stat" | awk '{ print $14 + $15 }'; }

hz=$(getconf CLK_TCK)
# The load generator against PORT for DURATION seconds; prints the requests it completed.
load() {
    case "$LOAD" in
        h2*) $load_name -D "$DURATION" "https://127.0.0.1:$1/" 2>&1 | h2load_requests ;;
        *) $load_name -d"${DURATION}s" "https://127.0.0.1:$1/" 2>&1 | wrk_requests ;;
    esac
}

echo "user / system CPU µs per request, $load_name for ${DURATION}s"
[ -n "${RAMPART_BIN:-}" ] && echo "rampart: $RAMPART_BIN"
[ -n "${ALSO_BIN:-}" ] && echo "also: $ALSO_BIN"
results="$work/results"
for round in $(seq "$ROUNDS"); do
    for server in "${servers[@]}"; do
        IFS=: read -r name port pid <<<"$server"
        read -r u0 s0 < <(tree_cpu_split_ticks "$pid")
        up0=$(tree_cpu_ticks "$upstream_pid")
        c0=$(children_ticks)
        requests=$(load "$port")
        c1=$(children_ticks)
        up1=$(tree_cpu_ticks "$upstream_pid")
        read -r u1 s1 < <(tree_cpu_split_ticks "$pid")
        awk -v n="$requests" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v w=$((c1 - c0)) \
            -v up=$((up1 - up0)) -v hz="$hz" -v d="$DURATION" -v name="$name" -v r="$round" \
            'BEGIN { k = 1e6 / hz / n
                     printf "round %d  %-20s %9d requests  user %5.1f  system %5.1f  load %5.1f  upstream %4.1f  cores busy %.2f\n",
                         r, name, n, u * k, s * k, w * k, up * k, (u + s + w + up) / hz / d }' | tee -a "$results"
    done
done

# Medians over the rounds (lib.sh's `median`), and the budget. With the cores saturated,
# requests/s is the cores divided by everything spent per request: server + load generator +
# upstream. For 1.2x nginx's requests/s at the same load generator and upstream cost, a server
# may spend (nginx + rest) / 1.2 - rest.
rounds_of() { # NAME AWK-EXPRESSION: the expression over each of NAME's result lines
    awk -v name="$1" '$3 == name { print '"$2"' }' "$results"
}
echo
echo "medians, µs per request"
for server in "${servers[@]}"; do
    name=${server%%:*}
    user=$(rounds_of "$name" '$7' | median)
    system=$(rounds_of "$name" '$9' | median)
    rest=$(rounds_of "$name" '$11 + $13' | median)
    busy=$(rounds_of "$name" '$16' | median)
    # The rounds are in the same order for every server: line k of each is round k.
    paired=$(paste <(rounds_of "$name" '$4') <(rounds_of nginx '$4') | awk '{ print $1 / $2 }' | median)
    awk -v name="$name" -v u="$user" -v s="$system" -v rest="$rest" -v busy="$busy" -v p="$paired" 'BEGIN {
        printf "%-20s user %5.1f  system %5.1f  server %5.1f  load + upstream %5.1f  cores busy %.2f  requests / nginx, paired %.2f\n",
            name, u, s, u + s, rest, busy, p }'
    if [ "$name" = nginx ]; then
        budget=$(awk -v u="$user" -v s="$system" -v rest="$rest" 'BEGIN {
            printf "%.1f µs per request in the server (nginx %.1f, system alone %.1f)", (u + s + rest) / 1.2 - rest, u + s, s }')
    fi
done
echo "budget for 1.2x nginx: $budget"
