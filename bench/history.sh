#!/usr/bin/env bash
# Issue 12: the mount's history/ and as-of/ views on many backups of a
# many-small-files session. Generates a session of N small JSON files
# (gen_small_files.py, in 100 directories) plus state.json, takes B backups
# (a full every 10th, incrementals between, each holding every file: the
# config's incremental.include is "*" and "*/"), changing state.json and a
# few other files before each. Then, in one fresh mount (`flowloom-backup
# mount -f`, whose PID is the daemon's), times `ls -R history/`, `cat` of
# every version of state.json, `ls -R` of the newest as-of tree, and prints
# the daemon's VmHWM and VmRSS after each step. Whatever it mounts it
# unmounts (trap), and it ends its daemon by PID.
#
# Decoded frames of every archive read are kept in the frame cache
# (cache_size, default 64 MiB): --cache bounds it lower, --meta sets
# meta_cache_size.
#
# usage: bench/history.sh [--files N] [--backups B] [--meta MIB] [--cache MIB]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
files=2000
backups=100
meta=
cache=
usage="usage: bench/history.sh [--files N] [--backups B] [--meta MIB] [--cache MIB]"
while [ $# -gt 0 ]; do
    case $1 in
    --files) files=$2; shift 2 ;;
    --backups) backups=$2; shift 2 ;;
    --meta) meta=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
    esac
done
[[ $files =~ ^[1-9][0-9]*$ && $backups =~ ^[1-9][0-9]*$ ]] || { echo "$usage" >&2; exit 2; }
cli=$(abs_build "${FB_BUILD_DIR:-build}")/cli/flowloom-backup
[ -x "$cli" ] || { echo "bench: $cli not built (run meson/ninja first)" >&2; exit 2; }
command -v fusermount3 >/dev/null || { echo "bench: needs fusermount3" >&2; exit 2; }

work=$(mktemp -d /tmp/fb-hist.XXXXXX)
# The mount's manifest cache (docs/mount.md) lives in the run's directory.
export XDG_CACHE_HOME=$work/xdg-cache
mnt=$work/mnt
pid=
cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then
        fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true
    fi
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
root=$work/root
sess=$root/.flowloom/sessions/bench
step() { echo "bench: $(date -u +%H:%M:%S) $*" >&2; }
step "generating $files files, $backups backups"
python3 "$here/bench/gen_small_files.py" "$sess" "$files"
mkdir -p "$root/.flowloom"
echo '{"incremental": {"include": ["*", "*/"]}}' >"$root/.flowloom/backup.json"
t=1800000000
for k in $(seq 0 $((backups - 1))); do
    echo "{\"step\": $k}" >"$sess/state.json"
    for j in 0 1 2; do
        i=$(( (k * 7 + j * 131) % files ))
        f=$(printf 'd%03d/f%07d.json' $((i % 100)) "$i")
        echo "{\"id\":$i,\"v\":$k}" >"$sess/$f"
    done
    kind=incremental
    [ $((k % 10)) = 0 ] && kind=full
    t=$((t + 60))
    FLOWLOOM_ROOT=$root FLOWLOOM_NOW=$t "$cli" backup bench "$kind" --no-cleanup --quiet >/dev/null
done

mkdir -p "$mnt"
opts=()
[ -n "$meta" ] && opts+=(-o "meta_cache_size=$meta")
[ -n "$cache" ] && opts+=(-o "cache_size=$cache")
FLOWLOOM_ROOT=$root "$cli" mount "$mnt" -f "${opts[@]}" >"$work/mount.log" 2>&1 &
pid=$!
for _ in $(seq 600); do mountpoint -q "$mnt" && break; sleep 0.05; done
mountpoint -q "$mnt" || { cat "$work/mount.log" >&2; exit 1; }
kib() { awk -v f="$1:" '$1 == f {printf "%.1f", $2/1024}' "/proc/$pid/status"; }
now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(now)" 'BEGIN{printf "%.2f", e-s}'; }
row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$(kib VmHWM)" "$(kib VmRSS)"; }

machine_line
echo "session: $files files, $backups backups; meta_cache_size ${meta:-default}," \
    "cache_size ${cache:-default}"
echo
echo "| step | wall s | daemon VmHWM MiB | VmRSS MiB |"
echo "|---|---|---|---|"
s=$(now); ls -R "$mnt/bench/history" >/dev/null; row "ls -R history/ (first)" "$(since "$s")"
s=$(now); ls -R "$mnt/bench/history" >/dev/null; row "ls -R history/ (again)" "$(since "$s")"
n=$(ls "$mnt/bench/history/state.json" | wc -l)
s=$(now); cat "$mnt/bench/history/state.json/"*.json >/dev/null
row "cat history/state.json/* ($((n - 1)) versions)" "$(since "$s")"
s=$(now); ls -R "$mnt/bench/as-of/latest/" >/dev/null; row "ls -R as-of/latest/" "$(since "$s")"
s=$(now); find "$mnt/bench/history" -type f -print0 | xargs -0 cat >/dev/null
row "cat every version of every file" "$(since "$s")"
fusermount3 -u "$mnt"
wait "$pid" 2>/dev/null || true
pid=
