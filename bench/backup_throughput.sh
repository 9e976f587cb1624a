#!/usr/bin/env bash
# Backup throughput: flowloom-backup full (validated, the default, and with
# --no-verify) against `tar -cf - | zstd -3 -T0` on the same generated
# session, best of N runs each, the contenders taking turns. With
# FB_BASE_BUILD_DIR set, a second build (say, before a change) runs in the
# same turns, for a before/after table. Prints a table; it is a benchmark,
# never a test (timings vary by machine and by what else runs on it).
#
# usage: bench/backup_throughput.sh [SIZE_MIB] [RUNS]
#        env FB_BUILD_DIR (default ./build), FB_BASE_BUILD_DIR (optional)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
cli=$(abs_build "${FB_BUILD_DIR:-build}")/cli/flowloom-backup
base_cli=
[ -n "${FB_BASE_BUILD_DIR:-}" ] && base_cli=$(abs_build "$FB_BASE_BUILD_DIR")/cli/flowloom-backup
size_mib=${1:-256}
runs=${2:-3}
for c in "$cli" $base_cli; do
    [ -x "$c" ] || { echo "bench: $c not built (run meson/ninja first)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/fb-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
sess=$root/.flowloom/sessions/bench
python3 "$here/bench/gen_session.py" "$sess" "$size_mib"
bytes=$(du -sb "$sess" | cut -f1)

# Each backup starts from an empty store (emptied untimed), so every run
# does the same work.
empty_store() { rm -rf "$root/.flowloom/backups"; }
fb_backup() { FLOWLOOM_ROOT=$root "$cli" backup bench full --no-cleanup --quiet "$@"; }
fb_backup_nv() { fb_backup --no-verify; }
base_backup() { FLOWLOOM_ROOT=$root "$base_cli" backup bench full --no-cleanup --quiet "$@"; }
base_backup_nv() { base_backup --no-verify; }
tar_zstd() { tar -C "$sess" -cf - . | zstd -3 -T0 -q -o "$work/tar.zst" -f; }

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
empty_store
fb_backup_nv >/dev/null
stored_fb=$(stat -c %s "$root"/.flowloom/backups/bench/*/archive.tar.zst)
stored_tar=$(stat -c %s "$work/tar.zst")

printf '\nbackup of %s MiB (%d runs each, in turns, best)\n' "$((bytes / 1048576))" "$runs"
printf 'before: %s\nafter:  %s\n' "$load_before" "$(machine_line)"
printf '%-40s %9s %10s %12s %8s\n' tool seconds MiB/s stored_MiB vs_tar
t_tar=$(bench_best tar)
row() { # LABEL NAME STORED
    local t
    t=$(bench_best "$1")
    printf '%-40s %9s %10s %12s %8s\n' "$2" "$t" "$(mbps "$bytes" "$t")" "$(mib "$3")" \
        "$(ratio "$t_tar" "$t")"
}
row tar "tar | zstd -3 -T0" "$stored_tar"
row fb "flowloom-backup full (validated)" "$stored_fb"
row fbnv "flowloom-backup full --no-verify" "$stored_fb"
if [ -n "$base_cli" ]; then
    row base "base build: full (validated)" "$stored_fb"
    row basenv "base build: full --no-verify" "$stored_fb"
fi
