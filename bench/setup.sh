#!/usr/bin/env bash
# Installs what the peer benchmark (npm run bench:peers) measures against and
# with, on a Debian machine: nginx and haproxy (the peers), wrk and h2load
# (nghttp2-client; the load generators). pm2 comes with `npm ci` (a
# devDependency). Runs as root, or through sudo when it is available.
# The nginx and haproxy services the packages install are not used: the
# bench starts its own instances with their own configuration and ports.
set -euo pipefail

need=()
command -v /usr/sbin/nginx >/dev/null || need+=(nginx)
command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
if [ ${#need[@]} -eq 0 ]; then
  echo "bench setup: nginx, haproxy, wrk and h2load are installed"
  exit 0
fi

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "bench setup: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "bench setup: done"
