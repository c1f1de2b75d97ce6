#!/usr/bin/env bash
# TLS audit: sslyze and testssl.sh against a running rampart.
#
# Builds rampart --release, writes a certificate (`rampart cert`) and a config with the default
# [tls] settings (min_version 1.2) into a temp dir, starts `rampart run` on a free loopback port,
# then scans it with sslyze (--json_out) and testssl.sh (--jsonfile). Exits non-zero when:
#   - any protocol other than TLS 1.2 and TLS 1.3 is accepted (SSL 2/3, TLS 1.0/1.1);
#   - any accepted cipher suite is not a forward-secret AEAD one (TLS 1.2: ECDHE/DHE key
#     exchange with AES-GCM, AES-CCM or ChaCha20-Poly1305; every TLS 1.3 suite qualifies);
#   - sslyze finds Heartbleed, ROBOT, CCS injection, client-initiated or insecure
#     renegotiation, or TLS compression (CRIME);
#   - testssl.sh reports any finding of severity HIGH or CRITICAL, except the certificate's
#     trust chain (the certificate is a self-signed one made for the scan).
#
#   bash benches/attacks/tls_audit.sh
#   MIN_VERSION=1.3 bash benches/attacks/tls_audit.sh      # audit a TLS-1.3-only config
#   TOOLS=sslyze bash benches/attacks/tls_audit.sh         # one tool (sslyze | testssl)
#   REPORT_DIR=/tmp/audit bash benches/attacks/tls_audit.sh # keep the tools' JSON and text
#   RAMPART_BIN=target/pgo/release/rampart bash benches/attacks/tls_audit.sh   # another build
#
# Needs python3; installs sslyze with pip and testssl.sh with apt-get when missing.
set -euo pipefail

MIN_VERSION=${MIN_VERSION:-1.2}
TOOLS=${TOOLS:-"sslyze testssl"}

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [[ " $TOOLS " == *" sslyze "* ]] && ! python3 -c "import sslyze" 2>/dev/null; then
    echo "installing sslyze with pip"
    python3 -m pip install --quiet sslyze
fi
if [[ " $TOOLS " == *" testssl "* ]] && ! command -v testssl >/dev/null && ! command -v testssl.sh >/dev/null; then
    echo "installing testssl.sh with apt-get"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq testssl.sh >/dev/null
fi
TESTSSL=$(command -v testssl || command -v testssl.sh || true)

cargo build --release --quiet
RAMPART=${RAMPART_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/rampart}

work=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    if [ -n "${REPORT_DIR:-}" ]; then
        mkdir -p "$REPORT_DIR"
        cp "$work"/*.json "$work"/*.txt "$REPORT_DIR"/ 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

"$RAMPART" cert --host localhost --host 127.0.0.1 --out "$work/certs" >/dev/null 2>&1
cat >"$work/rampart.toml" <<EOF
[listen]
https = "127.0.0.1:0"

[tls]
cert = "$work/certs/dev.crt"
key = "$work/certs/dev.key"
min_version = "$MIN_VERSION"

[log]
access = false

[[routes]]
name = "hello"
path = "/"
respond = { status = 200, body = "hello\n" }
EOF
NO_COLOR=1 RUST_LOG=info "$RAMPART" run --no-watch -c "$work/rampart.toml" 2>"$work/rampart.log" &
pid=$!
port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*rampart is serving.*https=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/rampart.log" | head -n1)
    [ -n "$port" ] && break
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "rampart did not start:" >&2
    cat "$work/rampart.log" >&2
    exit 1
fi
echo "rampart (min_version $MIN_VERSION) on 127.0.0.1:$port"

status=0

if [[ " $TOOLS " == *" sslyze "* ]]; then
    echo
    echo "== sslyze $(python3 -c "from sslyze.__version__ import __version__; print(__version__)" 2>/dev/null || true)"
    python3 -m sslyze "127.0.0.1:$port" --json_out="$work/sslyze.json" >"$work/sslyze.txt" 2>&1 || true
    python3 - "$work/sslyze.json" <<'PY' || status=1
import json, sys

report = json.load(open(sys.argv[1]))
failures = []
results = report["server_scan_results"]
if not results or results[0]["scan_status"] != "COMPLETED":
    sys.exit("sslyze could not scan the server: " + json.dumps(results)[:500])
scan = results[0]["scan_result"]


def result(command):
    attempt = scan.get(command) or {}
    if attempt.get("status") != "COMPLETED":
        failures.append(f"{command}: not completed ({attempt.get('error_reason')})")
        return None
    return attempt["result"]


def forward_secret_aead(name, protocol):
    if protocol == "tls_1_3":
        return True  # every TLS 1.3 suite is AEAD, and its key exchange is always (EC)DHE
    kex_ok = name.startswith(("TLS_ECDHE_", "TLS_DHE_"))
    aead = any(m in name for m in ("_GCM_", "_CCM", "CHACHA20_POLY1305"))
    return kex_ok and aead


accepted = {}
for protocol in ["ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1", "tls_1_2", "tls_1_3"]:
    r = result(f"{protocol}_cipher_suites")
    if r is None:
        continue
    names = [s["cipher_suite"]["name"] for s in r["accepted_cipher_suites"]]
    accepted[protocol] = names
    if names and protocol not in ("tls_1_2", "tls_1_3"):
        failures.append(f"{protocol} is accepted: {names}")
    for name in names:
        if not forward_secret_aead(name, protocol):
            failures.append(f"{protocol}: {name} is not a forward-secret AEAD suite")

checks = [
    ("heartbleed", lambda r: not r["is_vulnerable_to_heartbleed"], "Heartbleed"),
    ("openssl_ccs_injection", lambda r: not r["is_vulnerable_to_ccs_injection"], "CCS injection"),
    ("robot", lambda r: r["robot_result"].startswith("NOT_VULNERABLE"), "ROBOT"),
    ("tls_compression", lambda r: not r["supports_compression"], "TLS compression (CRIME)"),
    (
        "session_renegotiation",
        lambda r: not r["is_vulnerable_to_client_renegotiation_dos"],
        "client-initiated renegotiation",
    ),
]
findings = {}
for command, ok, what in checks:
    r = result(command)
    if r is None:
        continue
    findings[what] = "ok" if ok(r) else "VULNERABLE"
    if not ok(r):
        failures.append(f"{what}: vulnerable ({command})")
reneg = result("session_renegotiation")
if reneg is not None and reneg.get("supports_secure_renegotiation") is False and (
    accepted.get("tls_1_2")
):
    # rustls refuses renegotiation altogether; insecure (legacy) renegotiation would be a finding.
    findings["renegotiation"] = "refused (secure renegotiation not offered, no renegotiation at all)"
curves = result("elliptic_curves")
if curves is not None:
    findings["key exchange groups"] = ", ".join(
        c["name"] for c in curves.get("supported_curves") or []
    )

for protocol, names in accepted.items():
    print(f"  {protocol:8} {'; '.join(names) if names else 'refused'}")
for what, verdict in findings.items():
    print(f"  {what}: {verdict}")
if failures:
    print("sslyze: FAILED")
    for f in failures:
        print("  - " + f)
    sys.exit(1)
print("sslyze: passed")
PY
fi

if [[ " $TOOLS " == *" testssl "* ]]; then
    echo
    if [ -z "$TESTSSL" ]; then
        echo "testssl.sh is not installed" >&2
        status=1
    else
        echo "== testssl.sh $("$TESTSSL" --version 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' | grep -o 'testssl *[0-9][0-9.]*' | grep -o '[0-9][0-9.]*' | head -n1)"
        # --ip one: loopback only; --warnings batch: never ask a question.
        "$TESTSSL" --quiet --color 0 --warnings batch --ip one --fast \
            --jsonfile "$work/testssl.json" "127.0.0.1:$port" >"$work/testssl.txt" 2>&1 || true
        python3 - "$work/testssl.json" <<'PY' || status=1
import json, sys

findings = json.load(open(sys.argv[1]))
if isinstance(findings, dict):
    findings = findings.get("scanResult", findings)
# The certificate is a self-signed one made for this scan (rampart cert): its trust, validity
# period and revocation URLs are not what is audited, the TLS configuration is.
about_the_certificate = ("cert_", "OCSP_", "DNS_CAArecord")
# Findings that are rampart's policy, with the reason.
accepted = {
    "cipher_order": "the client picks among the offered suites, all forward-secret AEAD "
    "(Mozilla intermediate: prefer_server_ciphers off; ChaCha20 stays first for clients "
    "without AES hardware)",
}
high = [f for f in findings if f.get("severity") in ("HIGH", "CRITICAL")]
bad = []
for f in high:
    fid = str(f.get("id", ""))
    if fid.startswith(about_the_certificate):
        print(f"  (the scan's own certificate) {fid}: {f.get('severity')}: {f.get('finding')}")
    elif fid in accepted:
        print(f"  (policy) {fid}: {f.get('severity')}: {f.get('finding')}: {accepted[fid]}")
    else:
        bad.append(f)
by_id = {f.get("id"): f for f in findings}
for key in ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3", "cipherlist_NULL",
            "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
            "cipherlist_3DES_IDEA", "cipherlist_OBSOLETED", "FS", "heartbleed", "CCS",
            "ticketbleed", "ROBOT", "secure_renego", "secure_client_renego", "CRIME_TLS",
            "BREACH", "POODLE_SSL", "SWEET32", "FREAK", "DROWN", "LOGJAM", "BEAST",
            "LUCKY13", "RC4"]:
    f = by_id.get(key)
    if f:
        print(f"  {key:22} {f.get('severity'):8} {f.get('finding')}")
for f in findings:
    if f.get("severity") in ("LOW", "MEDIUM"):
        print(f"  {f.get('id'):22} {f.get('severity'):8} {f.get('finding')}")
counts = {}
for f in findings:
    counts[f.get("severity")] = counts.get(f.get("severity"), 0) + 1
print(f"  findings by severity: {dict(sorted(counts.items()))}")
if bad:
    print("testssl.sh: FAILED")
    for f in bad:
        print(f"  - {f.get('id')}: {f.get('severity')}: {f.get('finding')}")
    sys.exit(1)
print("testssl.sh: passed (no HIGH or CRITICAL finding about the TLS configuration)")
PY
    fi
fi

echo
if [ "$status" -ne 0 ]; then
    echo "TLS audit FAILED"
    exit 1
fi
echo "TLS audit passed"
