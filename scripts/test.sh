#!/usr/bin/env bash
# Sets up a machine (missing Debian packages), builds with -Dwerror=true, and
# runs every test suite. Ends with exactly one line "N passed, N failed" (the
# sum over everything below); exits non-zero if anything failed.
#
#   scripts/test.sh            everything (what .ci/run runs):
#     1. build/        gcc: C unit tests (meson test --suite unit) and the
#                      pytest suites tests/cli, tests/fuse, tests/reliability;
#     2. build-asan/   gcc with -Db_sanitize=address,undefined and
#                      -fno-sanitize-recover=all: the unit tests, tests/cli and
#                      tests/fuse. Any sanitizer report fails the run, also one
#                      from a process whose exit status a test ignores: every
#                      report goes to a file in build-asan/sanitizer-logs/, and
#                      each file there counts as a failure. The reliability
#                      suite stays on the plain build: LeakSanitizer cannot run
#                      under ptrace (the strace tests) and ASan cannot reserve
#                      its shadow memory under `prlimit --as`;
#     3. build-clang/  clang -Werror with -fsanitize=thread: the whole tree
#                      builds, and the unit tests and tests/fuse (the
#                      daemon's request loop) run under ThreadSanitizer;
#                      any report fails the run (written to files, as for
#                      ASan: build-clang/sanitizer-logs/);
#     4. build-fuzz/   clang, -Dfuzz=true: every libFuzzer target of
#                      tests/fuzz/ runs FB_FUZZ_SECONDS (default 20) on its
#                      seeds (scripts/fuzz.sh); any finding fails the run.
#   scripts/test.sh --quick    (or FB_QUICK=1) step 1 without tests/reliability:
#                      the everyday check.
#
# Environment: FB_BUILD_DIR (default: build; the other trees are named
# after it: $FB_BUILD_DIR-asan, $FB_BUILD_DIR-clang, $FB_BUILD_DIR-fuzz), FB_QUICK,
# FB_FUZZ_SECONDS, PYTEST_ARGS
# (extra pytest arguments, for every pytest run).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)

case ${FB_QUICK:-0} in
'' | 0 | no | false) quick=0 ;;
*) quick=1 ;;
esac
for arg in "$@"; do
    case $arg in
    --quick) quick=1 ;;
    -h | --help)
        sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p;}' "$0"
        exit 0
        ;;
    *)
        echo "test.sh: unknown argument '$arg' (try --help)" >&2
        exit 2
        ;;
    esac
done

BUILD=${FB_BUILD_DIR:-build}
case $BUILD in /*) ;; *) BUILD=$REPO/$BUILD ;; esac
BUILD=${BUILD%/}
ASAN_BUILD=$BUILD-asan
CLANG_BUILD=$BUILD-clang
FUZZ_BUILD=$BUILD-fuzz

passed=0
failed=0
start=$SECONDS
# say TEXT: a progress line on stderr, with the seconds since the start.
say() {
    echo "== [$((SECONDS - start)) s] $*" >&2
}
finish() {
    say "finished"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

if ! bash scripts/install-deps.sh; then
    echo "test.sh: installing dependencies failed" >&2
    failed=$((failed + 1))
    finish
fi

buildlog=$(mktemp)
trap 'rm -f "$buildlog"' EXIT

# build DIR CC [meson options...]: configures (or reconfigures) and compiles.
build() {
    local dir=$1 compiler=$2
    shift 2
    say "build ($dir, $compiler)"
    local reconfigure=()
    [ -f "$dir/build.ninja" ] && reconfigure=(--reconfigure)
    if ! CC=$compiler meson setup "${reconfigure[@]}" "$dir" -Dwerror=true "$@" >"$buildlog" 2>&1 ||
        ! ninja -C "$dir" >>"$buildlog" 2>&1; then
        tail -n 60 "$buildlog" >&2
        echo "test.sh: the build in $dir failed" >&2
        failed=$((failed + 1))
        return 1
    fi
}

# unit_tests DIR: meson test --suite unit, counted from meson's JSON log.
unit_tests() {
    local dir=$1
    say "unit tests ($dir: meson test --suite unit)"
    local testlog=$dir/meson-logs/testlog.json
    rm -f "$testlog"
    meson test -C "$dir" --suite unit --print-errorlogs --num-processes 2 >&2
    if [ ! -f "$testlog" ]; then
        echo "test.sh: meson test left no log in $dir" >&2
        failed=$((failed + 1))
        return
    fi
    local up uf
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
}

# pytest_suites DIR SUITE...: the pytest suites that exist, run on the
# binaries of DIR (FB_BUILD_DIR), counted from the JUnit report.
pytest_suites() {
    local dir=$1
    shift
    local suites=() s
    for s in "$@"; do
        if compgen -G "$s/test_*.py" >/dev/null; then
            suites+=("$s")
        fi
    done
    [ ${#suites[@]} -gt 0 ] || return
    say "integration tests ($dir: pytest ${suites[*]})"
    local junit=$dir/pytest-junit.xml
    rm -f "$junit"
    # shellcheck disable=SC2086
    PYTHONDONTWRITEBYTECODE=1 FB_BUILD_DIR=$dir /usr/bin/python3 -m pytest "${suites[@]}" -q \
        --junitxml="$junit" ${PYTEST_ARGS:-} >&2
    if [ ! -f "$junit" ]; then
        echo "test.sh: pytest produced no report for $dir" >&2
        failed=$((failed + 1))
        return
    fi
    local pp pf
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
}

# count_sanitizer_reports DIR: each report file in DIR is a failure, shown.
count_sanitizer_reports() {
    local dir=$1 f
    local reports=()
    while IFS= read -r -d '' f; do
        reports+=("$f")
    done < <(find "$dir" -type f -print0 | sort -z)
    if [ ${#reports[@]} -gt 0 ]; then
        say "sanitizer reports: ${#reports[@]} (in $dir)"
        for f in "${reports[@]}"; do
            echo "--- $f" >&2
            head -n 80 "$f" >&2
        done
        failed=$((failed + ${#reports[@]}))
    else
        say "sanitizer reports: none"
    fi
}

# ---- 1. the plain build (gcc) ----
if ! build "$BUILD" gcc; then
    finish
fi
unit_tests "$BUILD"
if [ "$quick" = 1 ]; then
    pytest_suites "$BUILD" tests/cli tests/fuse
    finish
fi
pytest_suites "$BUILD" tests/cli tests/fuse tests/reliability

# ---- 2. AddressSanitizer + UndefinedBehaviorSanitizer (gcc) ----
# Reports go to files (log_path; one per process, named after the program
# and PID), so that a report from a process whose exit status a test ignores
# still fails the run. The directory is world-writable (sticky, like /tmp)
# for the tests that run the programs as another user.
#
# gcc links libasan and libubsan as two shared libraries, and libubsan's call
# to set its report path resolves to libasan's copy: UBSan's own report then
# goes to stderr whatever log_path says. So UBSan aborts (abort_on_error=1)
# and ASan catches that SIGABRT (handle_abort=1) and writes a report, with the
# stack of the undefined behaviour, to the log directory. Nothing in the code
# under test calls abort() otherwise.
if build "$ASAN_BUILD" gcc -Db_sanitize=address,undefined -Dc_args=-fno-sanitize-recover=all; then
    sanlogs=$ASAN_BUILD/sanitizer-logs
    rm -rf "$sanlogs"
    mkdir -p "$sanlogs"
    chmod 1777 "$sanlogs"
    common="log_exe_name=1:print_summary=1"
    export ASAN_OPTIONS="abort_on_error=1:halt_on_error=1:handle_abort=1:detect_leaks=1:$common:log_path=$sanlogs/asan"
    export UBSAN_OPTIONS="abort_on_error=1:halt_on_error=1:print_stacktrace=1:$common:log_path=$sanlogs/ubsan"
    unit_tests "$ASAN_BUILD"
    pytest_suites "$ASAN_BUILD" tests/cli tests/fuse
    unset ASAN_OPTIONS UBSAN_OPTIONS
    count_sanitizer_reports "$sanlogs"
fi

# ---- 3. clang -Werror, with ThreadSanitizer ----
# The writer's compression workers, hash lane and live check, the readers'
# decoding threads and prefetcher, the mount's janitor: a data race among
# them shows only now and then under load (the seek table read while the
# hashing turn moved it with realloc crashed a CI backup of a 1 GiB file), and
# TSan reports it on any run that has the two accesses, whatever the timing.
if build "$CLANG_BUILD" clang -Db_sanitize=thread -Db_lundef=false; then
    tsanlogs=$CLANG_BUILD/sanitizer-logs
    rm -rf "$tsanlogs"
    mkdir -p "$tsanlogs"
    chmod 1777 "$tsanlogs"
    export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:log_exe_name=1:log_path=$tsanlogs/tsan"
    unit_tests "$CLANG_BUILD"
    pytest_suites "$CLANG_BUILD" tests/fuse
    unset TSAN_OPTIONS
    count_sanitizer_reports "$tsanlogs"
fi

# ---- 4. fuzz smoke: every libFuzzer target for a short while ----
say "fuzz smoke (scripts/fuzz.sh ${FB_FUZZ_SECONDS:-20}, build $FUZZ_BUILD)"
if FB_FUZZ_BUILD_DIR=$FUZZ_BUILD bash scripts/fuzz.sh "${FB_FUZZ_SECONDS:-20}" >&2; then
    passed=$((passed + 1))
else
    echo "test.sh: the fuzz smoke run found something or could not run (see above)" >&2
    failed=$((failed + 1))
fi

finish
