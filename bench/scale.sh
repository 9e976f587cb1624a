#!/usr/bin/env bash
# Scale (issue 10): a session of many small files. Generates N JSON files of
# 20-200 bytes in 100 directories, then times `backup full` (validated, the
# default) and `backup full --no-verify` against `tar -cf - | zstd -3 -T0`
# of the same tree, in turns, best of RUNS, with each contender's peak RSS
# (/usr/bin/time), and mksquashfs (-comp zstd -Xcompression-level 3) as the
# other peer. Then the CLI commands on that backup (show --files, verify,
# diff, list, cleanup, recover --target): time and peak RSS. Then the mount:
# `flowloom-backup mount -f` (the daemon, flowloom-backupfs, under its own
# PID) against squashfuse on the squashfs image, each freshly mounted per run:
# the first read of one file (the first mount after a backup, which parses
# the manifest's JSON, and a later one, which finds it in the manifest
# cache), reading every file (find | xargs cat), and the
# daemon's peak RSS (VmHWM) after that. Then four distinct full backups of
# the session (a few files changed between them) walked file by file in one
# fresh mount, and the daemon's VmHWM and VmRSS after it, against four
# squashfuse (one per image of the same four trees). Targets of issue 10
# beside each figure. Whatever it mounts it unmounts (trap). With
# FB_BASE_BUILD_DIR set, a second build (say, before a change) runs in the
# same backup turns. A benchmark, never a test.
#
# usage: bench/scale.sh [--files N] [--runs R] [--skip-peers]
#        env FB_BUILD_DIR (default ./build), FB_BASE_BUILD_DIR (optional)
# --skip-peers leaves out mksquashfs and squashfuse (their columns print
# n/a): at 1,000,000 files mksquashfs alone takes many minutes per image,
# and the run makes four images.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
files=100000
runs=3
skip_peers=0
usage="usage: bench/scale.sh [--files N] [--runs R] [--skip-peers]"
while [ $# -gt 0 ]; do
    case $1 in
    --files) files=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --skip-peers) skip_peers=1; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
    esac
done
[[ $files =~ ^[1-9][0-9]*$ && $runs =~ ^[1-9][0-9]*$ ]] ||
    { echo "$usage (N, R >= 1)" >&2; exit 2; }
cli=$(abs_build "${FB_BUILD_DIR:-build}")/cli/flowloom-backup
base_cli=
[ -n "${FB_BASE_BUILD_DIR:-}" ] && base_cli=$(abs_build "$FB_BASE_BUILD_DIR")/cli/flowloom-backup
for c in "$cli" $base_cli; do
    [ -x "$c" ] || { echo "bench: $c not built (run meson/ninja first)" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "bench: needs GNU time as /usr/bin/time" >&2; exit 2; }
target=1.5 # issue 10: a full backup within 1.5x the time of tar | zstd
have_sq=1
if [ "$skip_peers" = 1 ]; then
    have_sq=0
    echo "bench: --skip-peers: no mksquashfs, no squashfuse; their columns print n/a" >&2
elif ! command -v mksquashfs >/dev/null || ! command -v squashfuse >/dev/null; then
    have_sq=0
    echo "bench: mksquashfs/squashfuse not installed (apt-get install -y squashfs-tools" \
        "squashfuse): their columns print n/a" >&2
fi
command -v fusermount3 >/dev/null || { echo "bench: needs fusermount3" >&2; exit 2; }

work=$(mktemp -d /tmp/fb-bench.XXXXXX)
# The mount's manifest cache (docs/mount.md) lives in the run's directory.
export XDG_CACHE_HOME=$work/xdg-cache
exec 3>&2 # errors of a contender reach the terminal through bench_run's redirection
# Mounts and daemons of this run: unmounted and ended (by PID) on any exit.
mounts=()
pids=()
cleanup() {
    local m p
    for m in "${mounts[@]}"; do
        if mountpoint -q "$m" 2>/dev/null; then
            fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
        fi
    done
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
root=$work/root
sess=$root/.flowloom/sessions/bench
# Progress on stderr (a run at 1,000,000 files takes a while); the table is on stdout.
step() { echo "bench: $(date -u +%H:%M:%S) $*" >&2; }
step "generating $files files"
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
    FLOWLOOM_ROOT=$root timed "$label" "$c" backup bench full --no-cleanup --quiet "$@" \
        2>"$work/err" || { cat "$work/err" >&3; return 1; }
}
fb_backup() { fb_with fb "$cli"; }
fb_backup_nv() { fb_with fbnv "$cli" --no-verify; }
base_backup() { fb_with base "$base_cli"; }
base_backup_nv() { fb_with basenv "$base_cli" --no-verify; }

sq_img=$work/session.sqfs
sq_rm() { rm -f "$sq_img"; }
sq_make() { timed sq mksquashfs "$sess" "$sq_img" -comp zstd -Xcompression-level 3 \
    -noappend -quiet -no-progress; }

bench_add tar : tar_zstd
[ "$have_sq" = 1 ] && bench_add sq sq_rm sq_make
bench_add fb empty_store fb_backup
bench_add fbnv empty_store fb_backup_nv
if [ -n "$base_cli" ]; then
    bench_add base empty_store base_backup
    bench_add basenv empty_store base_backup_nv
fi

load_before=$(machine_line)
sync
step "backups and their peers, $runs runs"
bench_run "$runs"

# One validated backup stays for the commands and the mount.
empty_store
fb_backup >/dev/null
bid=$(ls "$root/.flowloom/backups/bench" | grep -v '^\.' | head -1)
stored_fb=$(stat -c %s "$root/.flowloom/backups/bench/$bid/archive.tar.zst")
manifest_fb=$(stat -c %s "$root/.flowloom/backups/bench/$bid/manifest.json")
stored_tar=$(stat -c %s "$work/tar.zst")
sq_sz=
if [ "$have_sq" = 1 ]; then
    [ -f "$sq_img" ] || sq_make >/dev/null
    sq_sz=$(stat -c %s "$sq_img")
fi
fbc() { FLOWLOOM_ROOT=$root "$cli" "$@"; }
fb_show() { FLOWLOOM_ROOT=$root timed show "$cli" show bench latest --files; }
fb_verify() { FLOWLOOM_ROOT=$root timed verify "$cli" verify bench latest; }
fb_list() { FLOWLOOM_ROOT=$root timed list "$cli" list bench; }
fb_cleanup() { FLOWLOOM_ROOT=$root timed cleanup "$cli" cleanup bench; }
rec_rm() { rm -rf "$work/rec"; }
fb_recover() { FLOWLOOM_ROOT=$root timed recover "$cli" recover bench latest --target "$work/rec"; }
bench_labels=()
bench_add show : fb_show
bench_add verify : fb_verify
bench_add list : fb_list
bench_add recover rec_rm fb_recover
# diff and cleanup want a second backup (a few files changed), after the mount.

# The mount rows. Each run mounts afresh (nothing cached in the daemon or the
# kernel), reads one file first, then every file, then reads the daemon's
# VmHWM, then unmounts.
mnt=$work/mnt
mkdir -p "$mnt"
mounts+=("$mnt")
one=d050/$(printf 'f%07d.json' $((files > 50 ? 50 : 0)))
[ -f "$sess/$one" ] || one=$(cd "$sess" && find . -type f | head -1)
now() { date +%s.%N; }
since_ms() { awk -v s="$1" -v e="$(now)" 'BEGIN{printf "%.1f", (e-s)*1000}'; }
since_s() { awk -v s="$1" -v e="$(now)" 'BEGIN{printf "%.2f", e-s}'; }
wait_mounted() { # PID MOUNTPOINT: until it is a mount point (or the daemon died)
    local i
    for i in $(seq 1200); do
        mountpoint -q "$2" && return 0
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
unmount_pid() { # PID MOUNTPOINT
    fusermount3 -u "$2" 2>/dev/null || fusermount3 -uz "$2" 2>/dev/null || true
    local i
    for i in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
started=
start_mount() { # NAME MOUNTPOINT CMD...: a daemon in the foreground of its own; its PID in $started
    local name=$1 mp=$2
    shift 2
    "$@" >"$work/mount.$name.log" 2>&1 &
    started=$!
    pids+=("$started")
    wait_mounted "$started" "$mp" || { echo "bench: $name did not mount (see below)" >&2;
        cat "$work/mount.$name.log" >&2; exit 1; }
}
walk() { # DIR: reads every file under it
    (cd "$1" && find . -type f -print0 | xargs -0 cat >/dev/null)
}
status_kib() { # PID FIELD: VmHWM or VmRSS, KiB
    awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"
}
declare -A mbest
keep_min() { # KEY VALUE
    if [ -z "${mbest[$1]:-}" ] || awk -v t="$2" -v b="${mbest[$1]}" 'BEGIN{exit !(t<b)}'; then
        mbest[$1]=$2
    fi
}
mount_run() { # NAME DIR_IN_MOUNT CMD...: one fresh mount, its three figures
    local name=$1 sub=$2 pid s
    shift 2
    start_mount "$name" "$mnt" "$@"
    pid=$started
    s=$(now)
    cat "$mnt/$sub/$one" >/dev/null
    keep_min "$name.first" "$(since_ms "$s")"
    s=$(now)
    walk "$mnt/$sub"
    keep_min "$name.all" "$(since_s "$s")"
    keep_min "$name.hwm" "$(status_kib "$pid" VmHWM | awk '{printf "%.0f", $1/1024}')"
    unmount_pid "$pid" "$mnt"
}
sync
# fb: the first mount after a backup (-o no_manifest_cache: its JSON
# parsed); fbk: any later mount (the manifest cache filled by an untimed
# mount, once the manifest is older than the cache's settle time).
while [ $(($(date +%s) - $(stat -c %Z "$root/.flowloom/backups/bench/$bid/manifest.json"))) -lt 3 ]; do
    sleep 0.5
done
start_mount fbk.fill "$mnt" env FLOWLOOM_ROOT="$root" "$cli" mount "$mnt" -f
cat "$mnt/bench/$bid/$one" >/dev/null
unmount_pid "$started" "$mnt"
step "mount: first read and every file, $runs runs"
for _ in $(seq "$runs"); do
    mount_run fb "bench/$bid" env FLOWLOOM_ROOT="$root" "$cli" mount "$mnt" -f -o no_manifest_cache
    mount_run fbk "bench/$bid" env FLOWLOOM_ROOT="$root" "$cli" mount "$mnt" -f
    [ "$have_sq" = 1 ] && mount_run sq . squashfuse -f "$sq_img" "$mnt"
done
# The mount is gone; the CLI rows run in their turns.
step "show, verify, list, recover, $runs runs"
bench_run "$runs"

# Backups 2 to 4, each of a session with a few files changed (and one added),
# so that the four are distinct; squashfs images of the same four trees
# (image 1 is the one timed above). diff and cleanup run after the second.
bstore=$root/.flowloom/backups/bench
next_backup() { # N: changes a few files, backs up, makes image N
    local n=$1 i k f
    for i in 1 2 3; do
        k=$(((n * 7919 + i * 104729) % files))
        f=$sess/$(printf 'd%03d/f%07d.json' $((k % 100)) "$k")
        [ -f "$f" ] && echo "$n" >>"$f"
    done
    echo "{\"backup\":$n}" >"$sess/d000/added-$n.json"
    FLOWLOOM_ROOT=$root "$cli" backup bench full --no-cleanup --quiet >/dev/null
    if [ "$have_sq" = 1 ]; then
        mksquashfs "$sess" "$work/session.$n.sqfs" -comp zstd -Xcompression-level 3 \
            -noappend -quiet -no-progress >/dev/null
    fi
}
step "backup 2 (and its image)"
echo x >>"$sess/$one"
next_backup 2
backup_ids() { # into bids: the backup directories of the session
    local b
    bids=()
    for b in "$bstore"/*-full-*/; do b=${b%/}; bids+=("${b##*/}"); done
}
backup_ids
bid2=
for b in "${bids[@]}"; do [ "$b" = "$bid" ] || bid2=$b; done
fb_diff() { FLOWLOOM_ROOT=$root timed diff "$cli" diff bench "$bid" "$bid2"; }
bench_labels=()
bench_add diff : fb_diff
bench_add cleanup : fb_cleanup
step "diff, cleanup, $runs runs"
bench_run "$runs"
step "backups 3 and 4 (and their images)"
next_backup 3
next_backup 4
backup_ids
[ "${#bids[@]}" = 4 ] || { echo "bench: expected 4 backups in $bstore, found ${#bids[@]}" >&2; exit 1; }

# One fresh mount of the store, every file of the four backups read, one
# backup after another; then the daemon's VmHWM and VmRSS. Squashfuse: four
# daemons mounted at once, one per image, each walked; their figures summed.
sync
step "mount: walking the 4 backups"
start_mount fb4 "$mnt" env FLOWLOOM_ROOT="$root" "$cli" mount "$mnt" -f
s=$(now)
for b in "${bids[@]}"; do walk "$mnt/bench/$b"; done
fb4_all=$(since_s "$s")
fb4_hwm=$(status_kib "$started" VmHWM)
fb4_rss=$(status_kib "$started" VmRSS)
unmount_pid "$started" "$mnt"
sq4_all='' sq4_hwm='' sq4_rss=''
if [ "$have_sq" = 1 ]; then
    step "squashfuse: walking the 4 images"
    sq4_pids=()
    for n in 1 2 3 4; do
        mkdir -p "$work/sqm.$n"
        mounts+=("$work/sqm.$n")
        img=$work/session.$n.sqfs
        [ "$n" = 1 ] && img=$sq_img
        start_mount "sq4.$n" "$work/sqm.$n" squashfuse -f "$img" "$work/sqm.$n"
        sq4_pids+=("$started")
    done
    s=$(now)
    for n in 1 2 3 4; do walk "$work/sqm.$n"; done
    sq4_all=$(since_s "$s")
    sq4_hwm=0 sq4_rss=0
    for p in "${sq4_pids[@]}"; do
        sq4_hwm=$((sq4_hwm + $(status_kib "$p" VmHWM)))
        sq4_rss=$((sq4_rss + $(status_kib "$p" VmRSS)))
    done
    for n in 1 2 3 4; do unmount_pid "${sq4_pids[$((n - 1))]}" "$work/sqm.$n"; done
fi
kib_mib() { [ -z "$1" ] || awk -v k="$1" 'BEGIN{printf "%.0f", k/1024}'; }

printf '\n%d entries (%d files of 20-200 bytes in 100 dirs), %s MiB; %d runs each, in turns, best\n' \
    "$entries" "$files" "$(mib "$bytes")" "$runs"
printf 'before: %s\nafter:  %s\n' "$load_before" "$(machine_line)"
printf 'stored: archive %s MiB, manifest.json %s MiB; tar.zst %s MiB\n\n' "$(mib "$stored_fb")" \
    "$(mib "$manifest_fb")" "$(mib "$stored_tar")"
t_tar=$(bench_best tar)
printf '%-36s %9s %9s %9s %s\n' what seconds peak_MiB vs_tar target
row() { # LABEL TEXT TARGET [-: no vs_tar]
    local t v=-
    t=$(bench_best "$1")
    [ -z "${4:-}" ] && v=$(ratio "$t" "$t_tar")
    printf '%-36s %9s %9s %9s %s\n' "$2" "$t" "$(peak_mib "$1")" "$v" "$3"
}
row tar "tar -cf - | zstd -3 -T0" -
row fb "backup full (validated)" "<=${target}x, <=64 MiB"
row fbnv "backup full --no-verify" "<=${target}x, <=64 MiB"
if [ -n "$base_cli" ]; then
    row base "base build: backup full (validated)" "${target}x"
    row basenv "base build: backup full --no-verify" "${target}x"
fi
row show "show --files" "<=64 MiB" -
row verify "verify" "<=64 MiB" -
row diff "diff (two full backups)" "<=64 MiB" -
row list "list" "<=64 MiB" -
row cleanup "cleanup" "<=64 MiB" -
row recover "recover --target" "<=64 MiB" -

na() { [ -n "${1:-}" ] && echo "$1" || echo n/a; }
printf '\n%-48s %10s %10s %8s %s\n' what flowloom peer ratio target
prow() { # TEXT FB PEER TARGET
    local r=n/a
    [ -n "$3" ] && [ "$3" != n/a ] && r=$(ratio "$2" "$3")
    printf '%-48s %10s %10s %8s %s\n' "$1" "$2" "$(na "$3")" "$r" "$4"
}
sq_t=; [ "$have_sq" = 1 ] && sq_t=$(bench_best sq)
sq_m=; [ "$have_sq" = 1 ] && sq_m=$(peak_mib sq)
prow "backup full vs mksquashfs, s" "$(bench_best fb)" "$sq_t" "<=1.5x tar|zstd ($t_tar s)"
prow "backup full vs mksquashfs, peak MiB" "$(peak_mib fb)" "$sq_m" "<=64 MiB"
prow "stored: archive+manifest vs image, MiB" "$(mib $((stored_fb + manifest_fb)))" \
    "$( [ -n "$sq_sz" ] && mib "$sq_sz")" "-"
printf '%-48s %10s %10s %8s %s\n' "manifest.json, bytes per entry" \
    "$((manifest_fb / entries))" - - "-"
# Issue 10 sets the first read at 150 ms for 100k entries and 5 ms for 2,000.
first_target=-
if [ "$files" -ge 100000 ]; then
    first_target="<=150 ms (at 100k entries)"
elif [ "$files" -le 2000 ]; then
    first_target="<=5 ms (at 2,000)"
fi
prow "mount: first read of one file, ms" "${mbest[fb.first]}" "${mbest[sq.first]:-}" "$first_target"
prow "mount: the same, manifest cache filled, ms" "${mbest[fbk.first]}" "${mbest[sq.first]:-}" "-"
prow "mount: read every file, s" "${mbest[fb.all]}" "${mbest[sq.all]:-}" "<=1.00x squashfuse"
prow "mount: daemon peak after walking 1 backup, MiB" "${mbest[fb.hwm]}" "${mbest[sq.hwm]:-}" \
    "- (128 MiB is for 4, below)"
prow "mount: read every file of 4 backups, s" "$fb4_all" "$sq4_all" "-"
prow "mount: daemon peak after walking 4 backups, MiB" "$(kib_mib "$fb4_hwm")" \
    "$(kib_mib "$sq4_hwm")" "<=128 MiB"
prow "mount: daemon RSS after walking 4 backups, MiB" "$(kib_mib "$fb4_rss")" \
    "$(kib_mib "$sq4_rss")" "-"
printf '\n4 backups: one fresh mount (default options), the four walked one after another;'
printf ' peak is VmHWM, RSS VmRSS at the end.\n'
if [ "$have_sq" = 1 ]; then
    printf 'peer: four squashfuse mounted at once, one per image of the same four trees,'
    printf ' each walked; their figures summed.\n'
fi
