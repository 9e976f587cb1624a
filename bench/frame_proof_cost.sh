#!/usr/bin/env bash
# Frame proof cost (docs/archive-format.md, "Proving the frame map"): a
# backup of a generated session of SIZE_MIB MiB, then bench/frame_proof_cost
# times opening its archive and a first read in frame 0 (one frame proven)
# against a first read in the last frame (every frame proven first), warm
# page cache, best of RUNS; with root and FB_BENCH_COLD=1, also once with
# the page cache dropped. A benchmark, never a test.
#
# usage: bench/frame_proof_cost.sh [SIZE_MIB] [RUNS] [FRAME_SIZE]
#        env FB_BUILD_DIR (default ./build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
build=$(abs_build "${FB_BUILD_DIR:-build}")
cli=$build/cli/flowloom-backup
prog=$build/bench/frame_proof_cost
size_mib=${1:-1024}
runs=${2:-5}
frame_size=${3:-1048576}
for c in "$cli" "$prog"; do
    [ -x "$c" ] || { echo "bench: $c not built (run meson/ninja first)" >&2; exit 2; }
done
work=$(mktemp -d /tmp/fb-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
sess=$root/.flowloom/sessions/bench
python3 "$here/bench/gen_session.py" "$sess" "$size_mib"
printf '{"compression": {"frame_size": %s}}\n' "$frame_size" > "$root/.flowloom/backup.json"
FLOWLOOM_ROOT=$root "$cli" backup bench full --no-cleanup --quiet --no-verify >/dev/null
archive=$(echo "$root"/.flowloom/backups/bench/*/archive.tar.zst)
echo "frame proof cost: ${size_mib} MiB session, frame_size $frame_size, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "warm page cache, best of $runs:"
"$prog" "$archive" "$runs"
if [ "${FB_BENCH_COLD:-0}" = 1 ] && [ "$(id -u)" = 0 ]; then
    echo
    echo "cold page cache (drop_caches before the run), one run:"
    sync
    echo 3 > /proc/sys/vm/drop_caches
    "$prog" "$archive" 1
fi
