# Helpers shared by the load benches (sourced, not run): installing the tools, starting and
# waiting for servers, parsing wrk and h2load, medians, memory of a process tree.

# Builds rampart as `cargo run --release` does, then the examples named (bench_upstream, the
# floors). In two commands: built in one with the examples, rampart's dependencies would get the
# features the examples' dev-dependencies turn on, so other symbol names, and none of the shipped
# profile's guidance (tools/pgo matches functions by name): 45,567 instead of 37,847
# instructions per request under instructions.sh.
build_release() {
    cargo build --release --quiet --bin rampart
    local examples=()
    for name in "$@"; do examples+=(--example "$name"); done
    if [ ${#examples[@]} -gt 0 ]; then
        cargo build --release --quiet "${examples[@]}"
    fi
}

# Installs the Debian packages given as "command:package" pairs whose command is missing.
need_tools() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing ${missing[*]} with apt-get"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The load shapes of proxy.sh (and cpu_split.sh): wrk -t2 -c$CONNECTIONS and h2load -t2
# -c$H2_CLIENTS -m$H2_STREAMS; with PROFILE=high, wrk -t1 -c$HIGH_CONNECTIONS and h2load -t1
# -c$HIGH_H2_CLIENTS -m$H2_STREAMS. Each can be set from the environment.
CONNECTIONS=${CONNECTIONS:-50}
H2_CLIENTS=${H2_CLIENTS:-10}
H2_STREAMS=${H2_STREAMS:-10}
HIGH_CONNECTIONS=${HIGH_CONNECTIONS:-64}
HIGH_H2_CLIENTS=${HIGH_H2_CLIENTS:-64}

# start_work: a temporary directory in $work, and $pids for the background processes a script
# starts; on exit the processes are killed and the directory removed.
start_work() {
    work=$(mktemp -d)
    pids=()
    trap stop_work EXIT
}
stop_work() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}

# wait_https PORT PATH: until the server answers 2xx over HTTPS (10 s).
wait_https() {
    local _
    for _ in $(seq 1 100); do
        curl -ksf -o /dev/null "https://127.0.0.1:$1$2" && return 0
        sleep 0.1
    done
    echo "the server on port $1 did not come up" >&2
    return 1
}

# wait_http PORT PATH: the same over plain HTTP.
wait_http() {
    local _
    for _ in $(seq 1 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$1$2" && return 0
        sleep 0.1
    done
    echo "the server on port $1 did not come up" >&2
    return 1
}

# A latency as wrk prints it (`812.00us`, `1.20ms`, `2.01s`) → milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        unit = v; sub(/^[0-9.]+/, "", unit); n = v; sub(/[a-z]+$/, "", n);
        if (unit == "us") n /= 1000; else if (unit == "s") n *= 1000; else if (unit == "m") n *= 60000;
        printf "%.2f", n }'
}

# From wrk's output (with --latency): requests/s, and a percentile ("50%", "99%") in ms.
wrk_rps() { awk '$1 == "Requests/sec:" { print $2 }'; }
wrk_percentile_ms() { # PERCENT
    local value
    value=$(awk -v p="$1" '$1 == p { print $2; exit }')
    to_ms "${value:-0}"
}

# From wrk's output: the requests completed ("123456 requests in 10.00s, ...").
wrk_requests() { awk '$2 == "requests" && $3 == "in" { print $1 }'; }

# From h2load's output: requests/s.
h2load_rps() { awk '$1 == "finished" { for (i = 1; i <= NF; i++) if ($i == "req/s,") print $(i - 1) }'; }

# From h2load's output: the requests done in the measured period (after the warm-up).
h2load_requests() { awk '$1 == "requests:" { for (i = 2; i <= NF; i++) if ($i == "done,") print $(i - 1) }'; }

# From h2load's --log-file (start µs, status, duration µs per request): a percentile in ms.
h2load_log_percentile_ms() { # FILE PERCENT
    cut -f3 "$1" | sort -n | awk -v p="$2" '{ v[NR] = $1 }
        END { if (NR == 0) { print "0"; exit }
              i = int(NR * p / 100 + 0.5); if (i < 1) i = 1; if (i > NR) i = NR;
              printf "%.2f", v[i] / 1000 }'
}

# The median of the numbers on stdin (whitespace or newline separated).
median() {
    tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
              else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# A line of /proc/PID/status in KiB, summed over PID and its children (nginx: master + workers).
tree_status_kib() { # PID FIELD
    local pids total=0 pid kib
    pids="$1 $(pgrep -P "$1" | tr '\n' ' ')"
    for pid in $pids; do
        kib=$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null)
        total=$((total + ${kib:-0}))
    done
    echo "$total"
}

# CPU time of PID and its children (nginx: master + workers), in clock ticks, as "user system".
# Fields 14 and 15 of /proc/PID/stat; counted after the ")" that ends the command name.
tree_cpu_split_ticks() { # PID
    local pids user=0 system=0 pid u s
    # `|| true`: no children is not an error (this also runs outside a command substitution,
    # where `set -e` applies).
    pids="$1 $(pgrep -P "$1" | tr '\n' ' ' || true)"
    for pid in $pids; do
        read -r u s < <(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12, $13 }') || true
        user=$((user + ${u:-0}))
        system=$((system + ${s:-0}))
    done
    echo "$user $system"
}

# The same, user + system.
tree_cpu_ticks() { # PID
    local user system
    read -r user system < <(tree_cpu_split_ticks "$1")
    echo $((user + system))
}

# CPU µs per request from a tick count (tree_cpu_ticks) over a number of requests.
cpu_us_per_request() { # TICKS REQUESTS
    awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { if (n + 0 == 0) print "-"; else printf "%.1f", t * 1000000 / hz / n }'
}

# KiB → MiB with one decimal.
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }

load_average() { cut -d' ' -f1-3 /proc/loadavg; }

# The rampart config of the proxy benches: one catch-all route to the bench upstream over
# HTTPS with the dev certificate in CERTS, access log and compression off.
proxy_config() { # HTTPS_PORT CERTS UPSTREAM_PORT
    cat <<EOF
[listen]
https = "127.0.0.1:$1"

[tls]
cert = "$2/dev.crt"
key = "$2/dev.key"

[log]
access = false
level = "warn"

[upstreams.app]
servers = ["http://127.0.0.1:$3"]

[[routes]]
name = "app"
path = "/"
upstream = "app"
compress = false
EOF
}
