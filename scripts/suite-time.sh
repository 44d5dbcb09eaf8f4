#!/usr/bin/env bash
# Side by side on this machine: the wall time of an older commit's `npm test`
# and of this checkout's `npm test` over the same real-process files (those the
# older commit has, in their current form) plus the fast tier. Tests added
# since are left out of the second run, so both runs cover the same behaviour.
# Then, unless SUITE_TIME_WHOLE=0, this checkout's whole `npm test` (SUITE_TIME_SAME=0 skips the
# same-files run).
#
#   bash scripts/suite-time.sh [commit]    # default 82dca35, the suite issue 14 measured
#
# Serial runs on a quiet machine; about 35 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-82dca35}
old=$(mktemp -d -t baton-suite-time.XXXXXX)
trap 'rm -rf "$old"' EXIT
# mktemp's 0700 would keep out the tests' processes of other uids (the peer-credential cases).
chmod 755 "$old"

git clone -q . "$old"
git -C "$old" checkout -q "$base"
(cd "$old" && npm ci --no-audit --no-fund >/dev/null && npm run build --silent)
npm run build --silent

files=()
for f in "$old"/test/*.test.ts; do
  js="dist/test/$(basename "${f%.ts}").js"
  [ -f "$js" ] || { echo "suite-time: $js is gone from this checkout" >&2; exit 1; }
  files+=("$js")
done

# Wall seconds of a command (its output to stderr). A failing suite's time means nothing (a
# timeout alone adds minutes): the script stops there. errexit does not reach into $(…).
seconds() {
  local t0 rc=0
  t0=$(date +%s%N)
  "$@" >&2 || rc=$?
  if [ "$rc" != 0 ]; then
    echo "suite-time: '$*' failed (exit $rc) in $PWD: no timing" >&2
    return "$rc"
  fi
  echo $((($(date +%s%N) - t0) / 1000000000))
}

echo "suite-time: $base's npm test (${#files[@]} files)…" >&2
t_old=$(cd "$old" && seconds npm test) || exit 1
echo "suite-time: $base npm test ${t_old} s"
if [ "${SUITE_TIME_SAME:-1}" != 0 ]; then
  echo "suite-time: this checkout, fast tier + the same ${#files[@]} files…" >&2
  t_new=$(seconds bash -c "npm run --silent test:unit && node --test --test-concurrency=2 --test-timeout=300000 ${files[*]}") || exit 1
  echo "suite-time: $(git rev-parse --short HEAD) fast tier + same files ${t_new} s ($((t_new * 100 / t_old)) % of $base's npm test)"
fi
if [ "${SUITE_TIME_WHOLE:-1}" != 0 ]; then
  t_all=$(seconds npm test) || exit 1
  echo "suite-time: $(git rev-parse --short HEAD) whole npm test ($(ls dist/test/*.test.js | wc -l) files) ${t_all} s ($((t_all * 100 / t_old)) % of $base's npm test)"
fi
