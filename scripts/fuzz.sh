#!/usr/bin/env bash
# Runs every libFuzzer target of tests/fuzz/ for SECONDS each (default 20)
# on a scratch copy of its committed seeds and regression inputs, building
# build-fuzz/ first (clang, -Dfuzz=true) when needed. Prints one line per
# target (executions, findings) and exits non-zero if any target produced a
# crash, leak, timeout or out-of-memory artifact, or could not run.
# See tests/fuzz/README.md.
#
# Environment:
#   FB_FUZZ_BUILD_DIR  build directory (default: build-fuzz)
#   FB_FUZZ_TARGETS    targets to run, space separated (default: all)
#   FB_FUZZ_WORK       keep the work dir here (grown corpora, logs,
#                      artifacts) instead of a temporary one
#   FB_FUZZ_ARGS       extra libFuzzer arguments
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
SECONDS_EACH=${1:-20}
case $SECONDS_EACH in
'' | *[!0-9]*)
    echo "usage: scripts/fuzz.sh [SECONDS]" >&2
    exit 2
    ;;
esac
BUILD=${FB_FUZZ_BUILD_DIR:-build-fuzz}
case $BUILD in /*) ;; *) BUILD=$REPO/$BUILD ;; esac
ALL="manifest index config seek_table archive_raw archive_structured tar_header restore"
TARGETS=${FB_FUZZ_TARGETS:-$ALL}

if ! command -v clang >/dev/null; then
    echo "fuzz.sh: clang is needed (apt-get install clang libclang-rt-14-dev)" >&2
    exit 2
fi

# Build only the fuzz targets: the rest of the sanitized tree is not needed
# here and takes most of the build time.
if [ ! -f "$BUILD/build.ninja" ]; then
    if ! CC=clang meson setup "$BUILD" -Dfuzz=true -Dwerror=true >"$BUILD.setup.log" 2>&1; then
        cat "$BUILD.setup.log" >&2
        echo "fuzz.sh: meson setup failed" >&2
        exit 2
    fi
    rm -f "$BUILD.setup.log"
fi
ninja_targets=()
for t in $TARGETS; do
    ninja_targets+=("tests/fuzz/fuzz_$t")
done
if ! ninja -C "$BUILD" "${ninja_targets[@]}" >&2; then
    echo "fuzz.sh: the build failed" >&2
    exit 2
fi

if [ -n "${FB_FUZZ_WORK:-}" ]; then
    WORK=$FB_FUZZ_WORK
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/fbfuzz.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
fi

failed=0
for t in $TARGETS; do
    exe=$BUILD/tests/fuzz/fuzz_$t
    dir=$WORK/$t
    mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/tmp"
    # Copies, so the fuzzer's new inputs never land in the committed seeds.
    for src in "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t"; do
        [ -d "$src" ] && find "$src" -maxdepth 1 -type f -exec cp {} "$dir/corpus/" \;
    done
    # restore reads a manifest first: the manifest's keys help it too.
    dict=()
    d=$t
    [ "$t" = restore ] && d=manifest
    [ -f "tests/fuzz/dict/$d.dict" ] && dict=("-dict=$REPO/tests/fuzz/dict/$d.dict")
    # shellcheck disable=SC2086 # FB_FUZZ_ARGS is a list of arguments
    FB_FUZZ_TMPDIR=$dir/tmp "$exe" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "${dict[@]}" \
        ${FB_FUZZ_ARGS:-} "$dir/corpus" >"$dir/log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
    # -fork mode prints no stat:: lines; its last "#N" status line counts.
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$dir/log" | tail -n 1)
    found=$(find "$dir/artifacts" -type f | wc -l)
    printf '%-20s %12s executions  %s findings%s\n' "$t" "${execs:-?}" "$found" \
        "$([ "$rc" -ne 0 ] && echo "  (exit status $rc)")"
    if [ "$found" -ne 0 ] || [ "$rc" -ne 0 ]; then
        failed=1
        keep=$BUILD/fuzz-findings/$t
        mkdir -p "$keep"
        cp "$dir"/artifacts/* "$keep/" 2>/dev/null
        cp "$dir/log" "$keep/log"
        echo "  findings and log kept in $keep; the end of the log:" >&2
        tail -n 30 "$dir/log" | sed 's/^/  | /' >&2
    fi
done
exit $failed
