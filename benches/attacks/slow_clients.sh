#!/usr/bin/env bash
# Slow clients at scale: slowhttptest's slowloris (-H), slow body (-B) and slow read (-X)
# against rampart while wrk measures normal traffic, then the same slowloris against the
# default per-IP connection cap.
#
# Builds rampart --release and runs it with the default [client] timeouts (header_timeout 10s,
# body_timeout 30s, send_timeout 60s, idle_timeout 60s) in front of a small Python app (GET: a
# short page; POST: reads the whole body, then answers), response_timeout 30s. slowhttptest's
# slow bodies send a piece every 2 s, under body_timeout: their upload runs into
# response_timeout, 408 (the client's fault). Then:
#   1. baseline: wrk (HTTPS keep-alive) for DURATION, requests/s;
#   2. attack: slowloris + slow body + slow read connections from slowhttptest, held for
#      ATTACK_LENGTH seconds; once they are all open, wrk again for DURATION; then waits for
#      slowhttptest to end and reads its per-second CSV (connected / closed sockets) and
#      rampart's /metrics;
#   3. caps: the default max_connections_per_ip = 256 against a slowloris of 1000 connections
#      from this one address: how many were let in, how many refused.
# Phase 1-2 run with max_connections_per_ip = 0, because every client here (wrk too) comes
# from 127.0.0.1 and would share one cap.
#
#   bash benches/attacks/slow_clients.sh
#   SLOW=3000 DURATION=20s bash benches/attacks/slow_clients.sh
#   KEEP=1 bash benches/attacks/slow_clients.sh    # keep slowhttptest's CSV/HTML and wrk output
#   RAMPART_BIN=target/pgo/release/rampart bash benches/attacks/slow_clients.sh   # another build
#
# Needs wrk and slowhttptest (apt-get install when missing) and python3.
set -euo pipefail

SLOW=${SLOW:-1500}          # slowloris connections; slow body and slow read get a third each
DURATION=${DURATION:-15s}   # each wrk run
ATTACK_LENGTH=${ATTACK_LENGTH:-90}
CONNECTIONS=${CONNECTIONS:-20}

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

need_install=()
command -v wrk >/dev/null || need_install+=(wrk)
command -v slowhttptest >/dev/null || need_install+=(slowhttptest)
if [ ${#need_install[@]} -gt 0 ]; then
    echo "installing ${need_install[*]} with apt-get"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_install[@]}" >/dev/null
fi
# Thousands of sockets on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet
RAMPART=${RAMPART_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/rampart}

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "outputs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The app: GET answers at once, POST reads the declared body first (as Django or Flask do).
cat >"$work/app.py" <<'PY'
import http.server, sys

class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _answer(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        # /big: 64 KiB, more than a slow reader's windows take at once
        self._answer(b"x" * 65536 if self.path.startswith("/big") else b"hello from the app\n")
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._answer(b"got it\n")
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), App)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
PY
python3 "$work/app.py" >"$work/app.port" 2>"$work/app.log" &
pids+=($!)
for _ in $(seq 1 50); do [ -s "$work/app.port" ] && break; sleep 0.1; done
app_port=$(head -n1 "$work/app.port")

"$RAMPART" cert --host localhost --host 127.0.0.1 --out "$work/certs" >/dev/null 2>&1

# start_rampart PER_IP_CAP → sets $port and $admin
start_rampart() {
    cat >"$work/rampart.toml" <<EOF
[listen]
https = "127.0.0.1:0"
admin = "127.0.0.1:0"

[tls]
cert = "$work/certs/dev.crt"
key = "$work/certs/dev.key"

[client]
max_connections_per_ip = $1

[log]
access = false

[upstreams.app]
servers = ["http://127.0.0.1:$app_port"]
response_timeout = "30s"

[[routes]]
name = "app"
path = "/"
upstream = "app"
EOF
    NO_COLOR=1 RUST_LOG=warn,rampart=info "$RAMPART" run --no-watch -c "$work/rampart.toml" 2>"$work/rampart.log" &
    rampart_pid=$!
    pids+=($rampart_pid)
    port=""
    for _ in $(seq 1 100); do
        line=$(grep -m1 "rampart is serving" "$work/rampart.log" || true)
        if [ -n "$line" ]; then
            port=$(sed -n 's/.*https=127\.0\.0\.1:\([0-9]*\).*/\1/p' <<<"$line")
            admin=$(sed -n 's/.*admin=127\.0\.0\.1:\([0-9]*\).*/\1/p' <<<"$line")
            break
        fi
        sleep 0.1
    done
    [ -n "$port" ] || { cat "$work/rampart.log" >&2; exit 1; }
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$rampart_pid/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$rampart_pid/status"; }
metric() { curl -s "http://127.0.0.1:$admin/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
wrk_rate() {
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "https://127.0.0.1:$port/" 2>&1 |
        tee "$work/wrk.$1.txt" | awk '/Requests\/sec/ {print $2}'
}
wrk_errors() { grep -E "Non-2xx|Socket errors" "$work/wrk.$1.txt" || echo "none"; }

echo "== 1-2. slow clients vs normal traffic (max_connections_per_ip = 0)"
start_rampart 0
curl -sk -o /dev/null "https://127.0.0.1:$port/"
rss_before=$(rss_kib)
baseline=$(wrk_rate baseline)
echo "baseline: $baseline requests/s (wrk -t2 -c$CONNECTIONS -d$DURATION); errors: $(wrk_errors baseline)"

slow_body=$((SLOW / 3))
slow_read=$((SLOW / 3))
started=$(date +%s)
slowhttptest -H -c "$SLOW" -r 500 -i 2 -x 20 -l "$ATTACK_LENGTH" -p 3 -g -o "$work/slowloris" \
    -u "https://127.0.0.1:$port/" >"$work/slowloris.out" 2>&1 &
pids+=($!)
slowhttptest -B -c "$slow_body" -r 200 -i 2 -x 10 -s 1000000 -l "$ATTACK_LENGTH" -p 3 -g \
    -o "$work/slowbody" -u "https://127.0.0.1:$port/upload" >"$work/slowbody.out" 2>&1 &
pids+=($!)
slowhttptest -X -c "$slow_read" -r 200 -k 10 -n 5 -w 16 -y 64 -z 8 -l "$ATTACK_LENGTH" -p 3 -g \
    -o "$work/slowread" -u "https://127.0.0.1:$port/big" >"$work/slowread.out" 2>&1 &
pids+=($!)
sleep 5 # every slow connection is open
open_during=$(metric 'rampart_active_connections{listener="https"}')
during=$(wrk_rate attack)
echo "during the attack: $during requests/s; errors: $(wrk_errors attack); open https connections when wrk started: $open_during"
python3 -c "b=float('$baseline'); d=float('$during'); print(f'normal traffic during the attack: {100*d/b:.1f}% of its baseline')"

echo "waiting for slowhttptest to finish ($ATTACK_LENGTH s from the start)"
wait_for=$((started + ATTACK_LENGTH + 15 - $(date +%s)))
for _ in $(seq 1 $((wait_for > 0 ? wait_for : 1))); do
    pgrep -x slowhttptest >/dev/null || break
    sleep 1
done
# Per kind, from slowhttptest's per-second CSV and its last words: the most connections open
# at once, how many the proxy closed, and when the test ended (it ends early, "No open
# connections left", once the proxy closed them all).
summary() {
    python3 - "$work/$1.csv" "$work/$1.out" "$1" <<'PY'
import csv, re, sys
rows = list(csv.DictReader(open(sys.argv[1])))
out = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[2], errors="replace").read())
def col(row, name):
    return int(next(v for k, v in row.items() if k.strip().lower() == name))
peak = max(col(r, "connected") for r in rows)
opened_by = next(col(r, "seconds") for r in rows if col(r, "connected") == peak)
closed = max(col(r, "closed") for r in rows)
last = rows[-1]
ended = re.findall(r"Test ended on (\d+)\w* second", out)
status = re.findall(r"Exit status: *(.*)", out)
print(f"{sys.argv[3]:9}: {peak} open at once (all open by second {opened_by}); {closed} closed by "
      f"the proxy; {col(last, 'connected')} still open at second {col(last, 'seconds')}; test ended "
      f"on second {ended[-1] if ended else '?'}: {status[-1].strip() if status else '?'}")
PY
}
for kind in slowloris slowbody slowread; do summary "$kind"; done
echo "rampart RSS: $rss_before KiB before, peak $(hwm_kib) KiB, $(rss_kib) KiB after; open https connections after: $(metric 'rampart_active_connections{listener="https"}')"
kill "$rampart_pid" 2>/dev/null || true
wait "$rampart_pid" 2>/dev/null || true

echo
echo "== 3. slowloris of 1000 connections from one address against the default max_connections_per_ip = 256"
start_rampart 256
slowhttptest -H -c 1000 -r 500 -i 2 -x 20 -l 15 -p 3 -g -o "$work/capped" \
    -u "https://127.0.0.1:$port/" >"$work/capped.out" 2>&1 || true
summary capped
echo "rampart_connections_refused_total{reason=\"max_connections_per_ip\"} = $(metric 'rampart_connections_refused_total{reason="max_connections_per_ip"}')"
