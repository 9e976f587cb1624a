#!/usr/bin/env bash
# Sets up a machine (missing Debian packages), builds with -Dwerror=true, and
# runs every test suite: the C unit tests under `meson test` and the pytest
# integration tests (tests/cli, tests/fuse, tests/reliability). Ends with
# exactly one line "N passed, N failed"; exits non-zero if anything failed.
#
# Environment: FB_BUILD_DIR (default: build), PYTEST_ARGS (extra arguments).
set -uo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
BUILD=${FB_BUILD_DIR:-build}
case $BUILD in /*) ;; *) BUILD=$REPO/$BUILD ;; esac

passed=0
failed=0
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

if ! bash scripts/install-deps.sh; then
    echo "test.sh: installing dependencies failed" >&2
    failed=$((failed + 1))
    finish
fi

echo "== build ($BUILD)" >&2
buildlog=$(mktemp)
trap 'rm -f "$buildlog"' EXIT
reconfigure=()
[ -f "$BUILD/build.ninja" ] && reconfigure=(--reconfigure)
if ! meson setup "${reconfigure[@]}" "$BUILD" -Dwerror=true >"$buildlog" 2>&1 ||
    ! ninja -C "$BUILD" >>"$buildlog" 2>&1; then
    tail -n 60 "$buildlog" >&2
    echo "test.sh: the build failed" >&2
    failed=$((failed + 1))
    finish
fi

echo "== unit tests (meson test --suite unit)" >&2
meson test -C "$BUILD" --suite unit --print-errorlogs --num-processes 2 >&2
testlog=$BUILD/meson-logs/testlog.json
if [ -f "$testlog" ]; then
    read -r up uf < <(python3 - "$testlog" <<'PY'
import json, sys
ok = bad = 0
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line).get("result")
    if r in ("OK", "EXPECTEDFAIL"):
        ok += 1
    elif r != "SKIP":
        bad += 1
print(ok, bad)
PY
)
    passed=$((passed + ${up:-0}))
    failed=$((failed + ${uf:-1}))
else
    echo "test.sh: meson test left no log" >&2
    failed=$((failed + 1))
fi

echo "== integration tests (pytest)" >&2
suites=(tests/cli)
for extra in tests/fuse tests/reliability; do
    if compgen -G "$extra/test_*.py" >/dev/null; then
        suites+=("$extra")
    fi
done
junit=$BUILD/pytest-junit.xml
rm -f "$junit"
# shellcheck disable=SC2086
PYTHONDONTWRITEBYTECODE=1 FB_BUILD_DIR=$BUILD /usr/bin/python3 -m pytest "${suites[@]}" -q --junitxml="$junit" \
    ${PYTEST_ARGS:-} >&2
if [ -f "$junit" ]; then
    read -r pp pf < <(python3 - "$junit" <<'PY'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
tests = fail = skip = 0
for s in suites:
    tests += int(s.get("tests", 0))
    fail += int(s.get("failures", 0)) + int(s.get("errors", 0))
    skip += int(s.get("skipped", 0))
print(tests - fail - skip, fail)
PY
)
    passed=$((passed + ${pp:-0}))
    failed=$((failed + ${pf:-1}))
else
    echo "test.sh: pytest produced no report" >&2
    failed=$((failed + 1))
fi

finish
