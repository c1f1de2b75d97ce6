#!/usr/bin/env bash
# Reverse proxying: rampart against nginx doing the same job on this machine, and the upstream
# alone (the ceiling).
#
# The job: TLS 1.2/1.3 termination with the same ECDSA P-256 certificate (`rampart cert`), ALPN
# h2 + http/1.1, the strict security headers on every response (HSTS, CSP, X-Frame-Options,
# X-Content-Type-Options, Referrer-Policy, Permissions-Policy, COOP, X-Request-Id), the
# upstream's Server and X-Powered-By stripped, X-Forwarded-For/-Proto/-Host, X-Real-IP and
# X-Request-Id sent upstream, over keep-alive connections to the same upstream
# (examples/bench_upstream.rs: one thread, a fixed 499-byte page). Both: 2 workers, access log
# off, compression off, no rate limit.
#
# Measured in interleaved rounds (the order rotates each round), each for DURATION:
#   h1    wrk -t2 -c$CONNECTIONS --latency, HTTPS keep-alive, HTTP/1.1
#   h2    h2load -t2 -c$H2_CLIENTS -m$H2_STREAMS, HTTPS, HTTP/2 (percentiles from its --log-file)
#   h1hi  wrk -t1 -c$HIGH_CONNECTIONS --latency (PROFILE=high or both)
#   h2hi  h2load -t1 -c$HIGH_H2_CLIENTS -m$H2_STREAMS (PROFILE=high or both)
#   hs    wrk -t2 -c$CONNECTIONS -H "Connection: close": a new TCP connection and a full TLS
#         handshake per request (wrk does not resume sessions: checked against nginx's
#         $ssl_session_reused when the script was written)
# PROFILE=default runs h1 h2 hs, PROFILE=high h1hi h2hi hs, PROFILE=both all five.
# Two more servers: `floor` (examples/stack_floor.rs) is the same crates as rampart (tokio,
# rustls, hyper, hyper-util's pooled client) with none of its work: what rampart costs above it
# is rampart's own code, what it costs above nginx is the stack. `per-core`
# (examples/stack_floor_per_core.rs) is that floor in nginx's shape: a current-thread runtime
# and an SO_REUSEPORT listener per worker, upstream connections driven in the request's task.
# SERVERS limits the servers measured (all five by default: rampart nginx direct floor floor2).
# FLOOR_SAME_HEADERS=1 gives the per-core floor rampart's header work too (the forwarding headers,
# the strict security headers, the request id; examples/stack_floor_per_core.rs): the stack's
# cost for the job nginx does here, without rampart's own code.
# then prints the medians, the ratios to nginx, the CPU time per request (user + system of the
# server's processes over the run / requests done; direct: the upstream's), the new upstream
# connections it opened during a run (the upstream's accept count before and after; direct: the
# load generator's own connections), idle RSS (after start and a few requests) and peak RSS
# (VmHWM; nginx: master + workers summed).
#
#   bash benches/load/proxy.sh                        # about 5 minutes
#   ROUNDS=5 DURATION=10s PROFILE=both bash benches/load/proxy.sh
#   SERVERS="nginx floor floor2" PROFILE=high bash benches/load/proxy.sh
#   RAMPART_BIN=target/pgo/release/rampart bash benches/load/proxy.sh   # another build of
#                                                   # rampart (tools/pgo-build.sh's)
#
# Needs nginx, wrk and h2load (nghttp2-client): installed with apt-get when missing.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6s}
PROFILE=${PROFILE:-default}
RAMPART_PORT=${RAMPART_PORT:-18543}
NGINX_PORT=${NGINX_PORT:-18544}
UPSTREAM_PORT=${UPSTREAM_PORT:-18580}
FLOOR_PORT=${FLOOR_PORT:-18545}
FLOOR2_PORT=${FLOOR2_PORT:-18546}
WORKERS=${WORKERS:-2}
read -r -a servers <<<"${SERVERS:-rampart nginx direct floor floor2}"
case $PROFILE in
    default) tests=(h1 h2 hs) ;;
    high) tests=(h1hi h2hi hs) ;;
    both) tests=(h1 h2 h1hi h2hi hs) ;;
    *) echo "PROFILE is default, high or both" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
# shellcheck source=benches/load/lib.sh
source "$repo/benches/load/lib.sh"

need_tools wrk:wrk nginx:nginx h2load:nghttp2-client
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

build_release bench_upstream stack_floor stack_floor_per_core
target_dir=${CARGO_TARGET_DIR:-$repo/target}
RAMPART=${RAMPART_BIN:-$target_dir/release/rampart}
UPSTREAM="$target_dir/release/examples/bench_upstream"
FLOOR="$target_dir/release/examples/stack_floor"
FLOOR2="$target_dir/release/examples/stack_floor_per_core"

start_work

chmod 755 "$work"
"$RAMPART" cert --host localhost --host 127.0.0.1 --out "$work/certs" >/dev/null 2>&1
chmod 644 "$work/certs/dev.key" # nginx reads it as root, but its workers need nothing of it

CSP="default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"

proxy_config "$RAMPART_PORT" "$work/certs" "$UPSTREAM_PORT" >"$work/rampart.toml"

mkdir -p "$work/nginx-tmp"
cat >"$work/nginx.conf" <<EOF
worker_processes $WORKERS;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    gzip off;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    server_tokens off;
    client_body_temp_path $work/nginx-tmp/body;
    proxy_temp_path $work/nginx-tmp/proxy;
    fastcgi_temp_path $work/nginx-tmp/fastcgi;
    uwsgi_temp_path $work/nginx-tmp/uwsgi;
    scgi_temp_path $work/nginx-tmp/scgi;
    upstream app {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT ssl http2;
        ssl_certificate $work/certs/dev.crt;
        ssl_certificate_key $work/certs/dev.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Request-Id \$request_id;
            proxy_hide_header Server;
            proxy_hide_header X-Powered-By;
            add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
            add_header Content-Security-Policy "$CSP" always;
            add_header X-Frame-Options "DENY" always;
            add_header X-Content-Type-Options "nosniff" always;
            add_header Referrer-Policy "strict-origin-when-cross-origin" always;
            add_header Permissions-Policy "camera=(), microphone=(), geolocation=()" always;
            add_header Cross-Origin-Opener-Policy "same-origin" always;
            add_header X-Request-Id \$request_id always;
        }
    }
}
EOF

"$UPSTREAM" "127.0.0.1:$UPSTREAM_PORT" 2>"$work/upstream.log" &
pids+=($!)
wait_http "$UPSTREAM_PORT" / || { cat "$work/upstream.log" >&2; exit 1; }
# One worker thread per core is tokio's default; said explicitly so it matches nginx's workers.
TOKIO_WORKER_THREADS=$WORKERS "$RAMPART" run --no-watch -c "$work/rampart.toml" >"$work/rampart.log" 2>&1 &
rampart_pid=$!
pids+=("$rampart_pid")
"$NGINX" -c "$work/nginx.conf" -p "$work" 2>>"$work/nginx-error.log" &
nginx_pid=$!
pids+=("$nginx_pid")
TOKIO_WORKER_THREADS=$WORKERS "$FLOOR" "127.0.0.1:$FLOOR_PORT" "127.0.0.1:$UPSTREAM_PORT" \
    "$work/certs/dev.crt" "$work/certs/dev.key" 2>"$work/floor.log" &
floor_pid=$!
pids+=("$floor_pid")
# Its workers are threads of its own (one current-thread runtime each), not tokio's.
"$FLOOR2" "127.0.0.1:$FLOOR2_PORT" "127.0.0.1:$UPSTREAM_PORT" "$work/certs/dev.crt" \
    "$work/certs/dev.key" "$WORKERS" 2>"$work/floor2.log" &
floor2_pid=$!
pids+=("$floor2_pid")
wait_https "$RAMPART_PORT" / || { cat "$work/rampart.log" >&2; exit 1; }
wait_https "$FLOOR_PORT" / || { cat "$work/floor.log" >&2; exit 1; }
wait_https "$FLOOR2_PORT" / || { cat "$work/floor2.log" >&2; exit 1; }
wait_https "$NGINX_PORT" / || { cat "$work/nginx-error.log" >&2; exit 1; }

# Both do the job: the page, the security headers, the upstream's Server and X-Powered-By gone.
curl -s "http://127.0.0.1:$UPSTREAM_PORT/" >"$work/page"
for port in "$RAMPART_PORT" "$NGINX_PORT"; do
    for version in --http1.1 --http2; do
        curl -ks "$version" -D "$work/head" -o "$work/body" "https://127.0.0.1:$port/"
        cmp -s "$work/body" "$work/page" || { echo "port $port ($version) sent another body" >&2; exit 1; }
        for header in strict-transport-security content-security-policy x-frame-options \
            x-content-type-options referrer-policy permissions-policy cross-origin-opener-policy \
            x-request-id; do
            grep -qi "^$header:" "$work/head" ||
                { echo "port $port ($version) sent no $header" >&2; cat "$work/head" >&2; exit 1; }
        done
        if grep -qi '^x-powered-by:\|^server: bench-upstream' "$work/head"; then
            echo "port $port ($version) let the upstream's Server or X-Powered-By through" >&2
            exit 1
        fi
    done
done
# The floors: the page and HSTS (their only work); with FLOOR_SAME_HEADERS=1, the per-core floor
# does the proxies' header work, checked as theirs.
for port in "$FLOOR_PORT" "$FLOOR2_PORT"; do
    expected=(strict-transport-security)
    if [ "$port" = "$FLOOR2_PORT" ] && [ "${FLOOR_SAME_HEADERS:-0}" = 1 ]; then
        expected=(strict-transport-security content-security-policy x-frame-options
            x-content-type-options referrer-policy permissions-policy cross-origin-opener-policy
            x-request-id)
    fi
    for version in --http1.1 --http2; do
        curl -ks "$version" -D "$work/head" -o "$work/body" "https://127.0.0.1:$port/"
        cmp -s "$work/body" "$work/page" || { echo "port $port ($version) sent another body" >&2; exit 1; }
        for header in "${expected[@]}"; do
            grep -qi "^$header:" "$work/head" ||
                { echo "port $port ($version) sent no $header" >&2; cat "$work/head" >&2; exit 1; }
        done
    done
done

idle_rampart=$(tree_status_kib "$rampart_pid" VmRSS)
idle_nginx=$(tree_status_kib "$nginx_pid" VmRSS)
idle_upstream=$(tree_status_kib "${pids[0]}" VmRSS)
idle_floor=$(tree_status_kib "$floor_pid" VmRSS)
idle_floor2=$(tree_status_kib "$floor2_pid" VmRSS)

declare -A results
url_of() {
    case $1 in
        rampart) echo "https://127.0.0.1:$RAMPART_PORT/" ;;
        nginx) echo "https://127.0.0.1:$NGINX_PORT/" ;;
        direct) echo "http://127.0.0.1:$UPSTREAM_PORT/" ;;
        floor) echo "https://127.0.0.1:$FLOOR_PORT/" ;;
        floor2) echo "https://127.0.0.1:$FLOOR2_PORT/" ;;
    esac
}

pid_of() {
    case $1 in
        rampart) echo "$rampart_pid" ;;
        nginx) echo "$nginx_pid" ;;
        direct) echo "${pids[0]}" ;;
        floor) echo "$floor_pid" ;;
        floor2) echo "$floor2_pid" ;;
    esac
}

# Errors (non-2xx, socket errors) are printed: a fast error is not a fast answer.
warn_errors() { # label output
    if echo "$2" | grep -q "Non-2xx\|Socket errors"; then
        echo "$2" | grep "Non-2xx\|Socket errors" | sed "s/^/    $1: /" >&2
    fi
}

# Connections the upstream accepted so far (the query's own connection included).
upstream_accepted() { curl -s "http://127.0.0.1:$UPSTREAM_PORT/__bench/connections"; }

run_h1() { # server test threads connections
    local out before conns
    conns=$(upstream_accepted)
    before=$(tree_cpu_ticks "$(pid_of "$1")")
    out=$(wrk -t"$3" -c"$4" -d"$DURATION" --latency "$(url_of "$1")")
    warn_errors "$1 $2" "$out"
    record "$1" "$2" "$(echo "$out" | wrk_rps)" "$(echo "$out" | wrk_percentile_ms 50%)" \
        "$(echo "$out" | wrk_percentile_ms 99%)" \
        "$(cpu_us_per_request $(($(tree_cpu_ticks "$(pid_of "$1")") - before)) \
            "$(echo "$out" | wrk_requests)")" "$(($(upstream_accepted) - conns - 1))"
}

run_h2() { # server test threads clients
    local out log="$work/h2load.log" warmup=1 sampler before conns
    conns=$(upstream_accepted)
    rm -f "$log" "$work/cpu-before"
    # The CPU count starts when h2load's warm-up ends, as its request count does.
    (sleep "$warmup" && tree_cpu_ticks "$(pid_of "$1")" >"$work/cpu-before") &
    sampler=$!
    out=$(h2load -t"$3" -c"$4" -m"$H2_STREAMS" -D "${DURATION%s}" --warm-up-time="$warmup" \
        --log-file="$log" "$(url_of "$1")")
    wait "$sampler" || true
    before=$(cat "$work/cpu-before" 2>/dev/null || echo 0)
    if ! echo "$out" | grep -q "status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx"; then
        echo "$out" | grep "requests:\|status codes:" | sed "s/^/    $1 $2: /" >&2
    fi
    record "$1" "$2" "$(echo "$out" | h2load_rps)" "$(h2load_log_percentile_ms "$log" 50)" \
        "$(h2load_log_percentile_ms "$log" 99)" \
        "$(cpu_us_per_request $(($(tree_cpu_ticks "$(pid_of "$1")") - before)) \
            "$(echo "$out" | h2load_requests)")" "$(($(upstream_accepted) - conns - 1))"
}

run_handshakes() { # server
    local out before conns
    conns=$(upstream_accepted)
    before=$(tree_cpu_ticks "$(pid_of "$1")")
    out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -H "Connection: close" "$(url_of "$1")")
    warn_errors "$1 hs" "$out"
    record "$1" hs "$(echo "$out" | wrk_rps)" "$(echo "$out" | wrk_percentile_ms 50%)" \
        "$(echo "$out" | wrk_percentile_ms 99%)" \
        "$(cpu_us_per_request $(($(tree_cpu_ticks "$(pid_of "$1")") - before)) \
            "$(echo "$out" | wrk_requests)")" "$(($(upstream_accepted) - conns - 1))"
}

run_test() { # test server
    case $1 in
        h1) run_h1 "$2" h1 2 "$CONNECTIONS" ;;
        h2) run_h2 "$2" h2 2 "$H2_CLIENTS" ;;
        h1hi) run_h1 "$2" h1hi 1 "$HIGH_CONNECTIONS" ;;
        h2hi) run_h2 "$2" h2hi 1 "$HIGH_H2_CLIENTS" ;;
        hs) run_handshakes "$2" ;;
    esac
}

record() { # server test rps p50 p99 cpu upstream-connections
    results[$1,$2]+="$3 $4 $5 $6 $7;"
    printf '  %-4s %-8s %10s req/s   p50 %7s ms   p99 %7s ms   cpu %6s us/req   upstream conns %5s   (load %s)\n' \
        "$2" "$1" "$3" "$4" "$5" "$6" "$7" "$(load_average)"
}

echo "rampart $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?') vs $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(h2load --version | head -1), wrk $(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
[ -n "${RAMPART_BIN:-}" ] && echo "rampart binary: $RAMPART_BIN"
echo "$WORKERS workers each; PROFILE=$PROFILE: ${tests[*]}; wrk -t2 -c$CONNECTIONS, h2load -t2 -c$H2_CLIENTS -m$H2_STREAMS$(
    [ "$PROFILE" = default ] || echo ", wrk -t1 -c$HIGH_CONNECTIONS, h2load -t1 -c$HIGH_H2_CLIENTS -m$H2_STREAMS"
); $DURATION per run; $ROUNDS interleaved rounds"
echo "NOTE: the load generators, both proxies and the upstream share this machine's $(nproc) cores"
echo "      (load average now: $(load_average)); the figures compare the proxies under the same"
echo "      conditions, not their capacity on dedicated hardware."

# Warm-up: connection pools, page cache, CPU frequency.
for server in "${servers[@]}"; do
    wrk -t1 -c10 -d2s "$(url_of "$server")" >/dev/null
done

for round in $(seq 1 "$ROUNDS"); do
    # Rotate who goes first, so nobody always gets the machine right after the same neighbour.
    shift_by=$(((round - 1) % ${#servers[@]}))
    order=("${servers[@]:$shift_by}" "${servers[@]:0:$shift_by}")
    echo "round $round: ${order[*]}"
    for test in "${tests[@]}"; do
        for server in "${order[@]}"; do
            run_test "$test" "$server"
        done
    done
done

peak_rampart=$(tree_status_kib "$rampart_pid" VmHWM)
peak_nginx=$(tree_status_kib "$nginx_pid" VmHWM)
peak_upstream=$(tree_status_kib "${pids[0]}" VmHWM)
peak_floor=$(tree_status_kib "$floor_pid" VmHWM)
peak_floor2=$(tree_status_kib "$floor2_pid" VmHWM)

column_of() { echo "${results[$1,$2]:-}" | tr ';' '\n' | awk -v c="$3" 'NF { print $c }' | tr '\n' ' '; }
med() { column_of "$1" "$2" "$3" | median; }

echo
[ "${FLOOR_SAME_HEADERS:-0}" = 1 ] && echo "per-core floor: with rampart's header work (FLOOR_SAME_HEADERS=1)"
echo "medians over $ROUNDS rounds (ratios to nginx: above 1 is better for req/s, below 1 for latency, CPU and memory)"
line() { printf '%-38s %10s %10s %7s %12s %10s %7s %10s %7s\n' "$@"; }
line "" rampart nginx "r/nginx" "direct (ceil)" floor "f/nginx" "per-core" "p/nginx"
row() { # label test column unit
    local r n d f p
    r=$(med rampart "$2" "$3")
    n=$(med nginx "$2" "$3")
    d=$(med direct "$2" "$3")
    f=$(med floor "$2" "$3")
    p=$(med floor2 "$2" "$3")
    line "$1" "$(unit "$r" "$4")" "$(unit "$n" "$4")" "$(ratio "$r" "$n")" "$(unit "$d" "$4")" \
        "$(unit "$f" "$4")" "$(ratio "$f" "$n")" "$(unit "$p" "$4")" "$(ratio "$p" "$n")"
}
unit() { if [ "$1" = - ]; then echo -; else echo "$1$2"; fi; } # value unit: a server not measured is "-"
for test in "${tests[@]}"; do
    case $test in
        h1) name="HTTP/1.1 (wrk -t2 -c$CONNECTIONS)" ;;
        h2) name="HTTP/2 (h2load -t2 -c$H2_CLIENTS -m$H2_STREAMS)" ;;
        h1hi) name="HTTP/1.1 (wrk -t1 -c$HIGH_CONNECTIONS)" ;;
        h2hi) name="HTTP/2 (h2load -t1 -c$HIGH_H2_CLIENTS -m$H2_STREAMS)" ;;
        hs) name="new TLS handshakes (direct: TCP)" ;;
    esac
    echo "$name"
    row "  req/s" "$test" 1 ""
    row "  p50" "$test" 2 " ms"
    row "  p99" "$test" 3 " ms"
    row "  CPU per request (us)" "$test" 4 ""
    row "  new upstream connections" "$test" 5 ""
done
line "idle RSS (MiB)" "$(mib "$idle_rampart")" "$(mib "$idle_nginx")" "$(ratio "$idle_rampart" "$idle_nginx")" \
    "$(mib "$idle_upstream")" "$(mib "$idle_floor")" "$(ratio "$idle_floor" "$idle_nginx")" \
    "$(mib "$idle_floor2")" "$(ratio "$idle_floor2" "$idle_nginx")"
line "peak RSS (MiB)" "$(mib "$peak_rampart")" "$(mib "$peak_nginx")" "$(ratio "$peak_rampart" "$peak_nginx")" \
    "$(mib "$peak_upstream")" "$(mib "$peak_floor")" "$(ratio "$peak_floor" "$peak_nginx")" \
    "$(mib "$peak_floor2")" "$(ratio "$peak_floor2" "$peak_nginx")"
echo "load average at the end: $(load_average)"
