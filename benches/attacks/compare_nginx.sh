#!/usr/bin/env bash
# The smuggling catalogue (tests/it/attack_catalogue.rs) against nginx: every variant is sent to
# rampart and to nginx (TLS, one process, proxy_pass to the same kind of recording upstream,
# the usual hardened settings: proxy_http_version 1.1, proxy_set_header Connection "",
# ignore_invalid_headers on, underscores_in_headers off, 16k header buffers), and the table
# shows, per variant, the statuses and the requests that reached each upstream, with the
# verdict: same, rampart stricter, or rampart more permissive (which fails the run unless the
# test's KNOWN_MORE_PERMISSIVE list explains it).
#
#   bash benches/attacks/compare_nginx.sh
#   RAMPART_NGINX_BIN=/opt/nginx/sbin/nginx bash benches/attacks/compare_nginx.sh
#
# Needs nginx: installed with apt-get when missing (Debian/Ubuntu). About a minute: nginx is
# asked one variant at a time and closes keep-alive connections after 1 s.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${RAMPART_NGINX_BIN:-}" ] && ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    echo "installing nginx with apt-get"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq nginx >/dev/null
fi

cargo test --test it -- --ignored --exact attack_catalogue::compare_with_nginx --nocapture
