#!/usr/bin/env bash
# Scale (issue 10): a session of many small files. Generates N JSON files of
# 20-200 bytes in 100 directories, then times `backup full` (validated, the
# default) and `backup full --no-verify` against `tar -cf - | zstd -3 -T0`
# of the same tree, in turns, best of RUNS, with each contender's peak RSS
# (/usr/bin/time). Then `show --files` and `verify` of the backup, time and
# peak RSS. With FB_BASE_BUILD_DIR set, a second build (say, before a
# change) runs in the same turns. A benchmark, never a test.
#
# usage: bench/scale.sh [--files N] [--runs R]
#        env FB_BUILD_DIR (default ./build), FB_BASE_BUILD_DIR (optional)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
files=100000
runs=3
while [ $# -gt 0 ]; do
    case $1 in
    --files) files=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: bench/scale.sh [--files N] [--runs R]" >&2; exit 2 ;;
    esac
done
cli=$(abs_build "${FB_BUILD_DIR:-build}")/cli/flowloom-backup
base_cli=
[ -n "${FB_BASE_BUILD_DIR:-}" ] && base_cli=$(abs_build "$FB_BASE_BUILD_DIR")/cli/flowloom-backup
for c in "$cli" $base_cli; do
    [ -x "$c" ] || { echo "bench: $c not built (run meson/ninja first)" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "bench: needs GNU time as /usr/bin/time" >&2; exit 2; }
target=1.5 # issue 10: a full backup within 1.5x the time of tar | zstd

work=$(mktemp -d /tmp/fb-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
sess=$root/.flowloom/sessions/bench
python3 "$here/bench/gen_small_files.py" "$sess" "$files"
entries=$(find "$sess" -mindepth 1 | wc -l)
bytes=$(du -sb "$sess" | cut -f1)

# Each command runs under /usr/bin/time, which appends its peak RSS (KiB)
# to rss.LABEL; the table keeps the largest.
timed() { # LABEL CMD...
    local label=$1
    shift
    /usr/bin/time -f %M -a -o "$work/rss.$label" "$@"
}
peak_mib() { sort -n "$work/rss.$1" | tail -1 | awk '{printf "%.0f", $1/1024}'; }

empty_store() { rm -rf "$root/.flowloom/backups"; }
tar_zstd() { timed tar sh -c 'tar -C "$1" -cf - . | zstd -3 -T0 -q -o "$2" -f' sh "$sess" \
    "$work/tar.zst"; }
fb_with() { # LABEL CLI ARGS...
    local label=$1 c=$2
    shift 2
    FLOWLOOM_ROOT=$root timed "$label" "$c" backup bench full --no-cleanup --quiet "$@"
}
fb_backup() { fb_with fb "$cli"; }
fb_backup_nv() { fb_with fbnv "$cli" --no-verify; }
base_backup() { fb_with base "$base_cli"; }
base_backup_nv() { fb_with basenv "$base_cli" --no-verify; }

bench_add tar : tar_zstd
bench_add fb empty_store fb_backup
bench_add fbnv empty_store fb_backup_nv
if [ -n "$base_cli" ]; then
    bench_add base empty_store base_backup
    bench_add basenv empty_store base_backup_nv
fi

load_before=$(machine_line)
sync
bench_run "$runs"

# One validated backup stays for show and verify.
empty_store
fb_backup_nv >/dev/null
stored_fb=$(stat -c %s "$root"/.flowloom/backups/bench/*/archive.tar.zst)
manifest_fb=$(stat -c %s "$root"/.flowloom/backups/bench/*/manifest.json)
stored_tar=$(stat -c %s "$work/tar.zst")
fb_show() { FLOWLOOM_ROOT=$root timed show "$cli" show bench latest --files; }
fb_verify() { FLOWLOOM_ROOT=$root timed verify "$cli" verify bench latest; }
bench_labels=()
bench_add show : fb_show
bench_add verify : fb_verify
bench_run "$runs"

printf '\n%d entries (%d files of 20-200 bytes in 100 dirs), %s MiB; %d runs each, in turns, best\n' \
    "$entries" "$files" "$(mib "$bytes")" "$runs"
printf 'before: %s\nafter:  %s\n' "$load_before" "$(machine_line)"
printf 'stored: archive %s MiB, manifest.json %s MiB; tar.zst %s MiB\n\n' "$(mib "$stored_fb")" \
    "$(mib "$manifest_fb")" "$(mib "$stored_tar")"
t_tar=$(bench_best tar)
printf '%-36s %9s %9s %9s %8s\n' what seconds peak_MiB vs_tar target
row() { # LABEL TEXT TARGET
    local t
    t=$(bench_best "$1")
    printf '%-36s %9s %9s %9s %8s\n' "$2" "$t" "$(peak_mib "$1")" \
        "$(awk -v a="$t" -v b="$t_tar" 'BEGIN{printf "%.2fx", a/b}')" "$3"
}
row tar "tar -cf - | zstd -3 -T0" -
row fb "backup full (validated)" "${target}x"
row fbnv "backup full --no-verify" "${target}x"
if [ -n "$base_cli" ]; then
    row base "base build: backup full (validated)" "${target}x"
    row basenv "base build: backup full --no-verify" "${target}x"
fi
row show "show --files" -
row verify "verify" -
