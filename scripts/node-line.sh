#!/usr/bin/env bash
# Prints the bin directory of a Node.js line, fetching it on first use from the npm
# registry's node-linux-<arch> package (a plain binary distribution) and caching it under
# $BATON_NODE_CACHE (default ~/.cache/baton/node). Nothing comes from anywhere else.
# Usage: scripts/node-line.sh <major> [x64|arm64]
set -euo pipefail
major=${1:?usage: node-line.sh <major> [x64|arm64]}
arch=${2:-x64}
cache=${BATON_NODE_CACHE:-${HOME}/.cache/baton/node}
dir="$cache/node-linux-$arch@$major"
if [ ! -x "$dir/bin/node" ]; then
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # npm pack only downloads the tarball: no platform check (arm64 on x64) and no install scripts.
  tarball=$(cd "$tmp" && npm pack --silent "node-linux-$arch@$major")
  mkdir -p "$tmp/out"
  tar -xzf "$tmp/$tarball" -C "$tmp/out" --strip-components=1
  mkdir -p "$cache"
  rm -rf "$dir"
  mv "$tmp/out" "$dir"
fi
echo "$dir/bin"
