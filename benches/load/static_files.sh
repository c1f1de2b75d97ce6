#!/usr/bin/env bash
# Static files: rampart against nginx serving the same files over HTTPS on this machine.
#
# Builds rampart --release, makes a temp root with a small CSS file (~2 KiB) and a 1 MiB file,
# a certificate (`rampart cert`), then runs nginx (2 workers, TLS 1.2/1.3 with the same
# certificate, access_log off, sendfile on, keep-alive, the same security headers, the same
# Cache-Control) and rampart (a `static` route on the same root) on their own ports, and
# measures both with wrk (HTTPS keep-alive) in interleaved rounds. Prints the median requests/s
# and median p99 latency per file and server, and the rampart/nginx ratio.
#
#   bash benches/load/static_files.sh
#   ROUNDS=5 DURATION=15s CONNECTIONS=100 bash benches/load/static_files.sh
#   RAMPART_BIN=target/pgo/release/rampart bash benches/load/static_files.sh   # another build
#
# Needs nginx and wrk: installed with apt-get when missing (Debian/Ubuntu).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-50}
RAMPART_PORT=${RAMPART_PORT:-18443}
NGINX_PORT=${NGINX_PORT:-18444}

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
# shellcheck source=benches/load/lib.sh
source "$repo/benches/load/lib.sh"

need_tools wrk:wrk nginx:nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

build_release
RAMPART=${RAMPART_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/rampart}

start_work

root="$work/root"
mkdir -p "$root"
# ~2 KiB of CSS, and 1 MiB of incompressible bytes.
# (Cut from a variable: `| head -c` could end the loop with SIGPIPE, fatal under pipefail.)
css=$(for i in $(seq 1 64); do echo ".rule-$i { color: #333; margin: 0 auto; }"; done)
printf '%s' "${css:0:2048}" >"$root/app.css"
head -c 1048576 /dev/urandom >"$root/big.bin"
# nginx's workers run as an unprivileged user when started as root: let them read the root.
chmod 755 "$work" "$root"
chmod 644 "$root"/*
"$RAMPART" cert --host localhost --host 127.0.0.1 --out "$work/certs" >/dev/null 2>&1

CACHE="public, max-age=31536000, immutable"
CSP="default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"

cat >"$work/rampart.toml" <<EOF
[listen]
https = "127.0.0.1:$RAMPART_PORT"

[tls]
cert = "$work/certs/dev.crt"
key = "$work/certs/dev.key"

[log]
access = false
level = "warn"

[[routes]]
name = "static"
path = "/static/"
static = { root = "$root", cache_control = "$CACHE" }
EOF

mkdir -p "$work/nginx-tmp"
cat >"$work/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    server_tokens off;
    client_body_temp_path $work/nginx-tmp/body;
    proxy_temp_path $work/nginx-tmp/proxy;
    fastcgi_temp_path $work/nginx-tmp/fastcgi;
    uwsgi_temp_path $work/nginx-tmp/uwsgi;
    scgi_temp_path $work/nginx-tmp/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl http2;
        ssl_certificate $work/certs/dev.crt;
        ssl_certificate_key $work/certs/dev.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        location /static/ {
            alias $root/;
            add_header Cache-Control "$CACHE" always;
            add_header Vary "Accept-Encoding" always;
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

"$RAMPART" run -c "$work/rampart.toml" >"$work/rampart.log" 2>&1 &
pids+=($!)
"$NGINX" -c "$work/nginx.conf" -p "$work" 2>>"$work/nginx-error.log" &
pids+=($!)

wait_https "$RAMPART_PORT" /static/app.css || { cat "$work/rampart.log" >&2; exit 1; }
wait_https "$NGINX_PORT" /static/app.css || { cat "$work/nginx-error.log" >&2; exit 1; }

# Both must send the same bytes.
for file in app.css big.bin; do
    for port in "$RAMPART_PORT" "$NGINX_PORT"; do
        curl -ksf "https://127.0.0.1:$port/static/$file" | cmp -s - "$root/$file" ||
            { echo "port $port sent a different $file" >&2; exit 1; }
    done
done

declare -A results
run_one() { # server port file
    local out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "https://127.0.0.1:$2/static/$3")
    if echo "$out" | grep -q "Non-2xx\|Socket errors"; then
        echo "$out" | grep "Non-2xx\|Socket errors" | sed "s/^/  $1 $3: /" >&2
    fi
    local r p
    r=$(echo "$out" | wrk_rps)
    p=$(echo "$out" | wrk_percentile_ms 99%)
    results[$1,$3]+="$r $p;"
    printf '  %-8s %-8s %10s req/s   p99 %8s ms\n' "$1" "$3" "$r" "$p"
}

echo "rampart $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?') vs $("$NGINX" -v 2>&1 | sed 's/.*: //')"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, HTTPS keep-alive, $ROUNDS interleaved rounds"
echo "NOTE: nginx, rampart and wrk share this machine's $(nproc) cores; figures compare the two"
echo "      servers under the same conditions, not their capacity on dedicated hardware."

# Warm-up (caches, TLS session state, page cache).
wrk -t1 -c10 -d2s "https://127.0.0.1:$RAMPART_PORT/static/big.bin" >/dev/null
wrk -t1 -c10 -d2s "https://127.0.0.1:$NGINX_PORT/static/big.bin" >/dev/null

for round in $(seq 1 "$ROUNDS"); do
    echo "round $round"
    for file in app.css big.bin; do
        # Alternate who goes first, so neither always gets the warmer machine.
        if [ $((round % 2)) -eq 1 ]; then
            run_one rampart "$RAMPART_PORT" "$file"
            run_one nginx "$NGINX_PORT" "$file"
        else
            run_one nginx "$NGINX_PORT" "$file"
            run_one rampart "$RAMPART_PORT" "$file"
        fi
    done
done

column_of() { echo "${results[$1,$2]}" | tr ';' '\n' | awk -v c="$3" 'NF { print $c }' | tr '\n' ' '; }

echo
echo "medians over $ROUNDS rounds"
printf '%-22s %14s %14s %10s %12s %12s\n' file "rampart req/s" "nginx req/s" ratio "rampart p99" "nginx p99"
for file in app.css big.bin; do
    r_rps=$(column_of rampart "$file" 1 | median)
    n_rps=$(column_of nginx "$file" 1 | median)
    r_p99=$(column_of rampart "$file" 2 | median)
    n_p99=$(column_of nginx "$file" 2 | median)
    ratio=$(ratio "$r_rps" "$n_rps")
    size=$(stat -c %s "$root/$file")
    printf '%-22s %14s %14s %10s %9s ms %9s ms\n' "$file ($size B)" "$r_rps" "$n_rps" "$ratio" "$r_p99" "$n_p99"
done
