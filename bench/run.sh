#!/usr/bin/env bash
# The benchmark against every peer (issue 11). Generates a FlowLoom-like
# session (bench/gen_mixed_session.py: 2,000 small JSON/markdown files, three
# logs, three binaries of random, repetitive and zero bytes; deterministic),
# then measures, after one untimed warm-up and RUNS timed runs of each, the
# contenders taking turns (each backup starting with the session's files in
# the page cache):
#   backups  flowloom-backup backup full (validated, the default) and
#            --no-verify against tar -cf - | zstd -3 -T0, mksquashfs (zstd
#            level 3), restic backup and borg create (fresh unencrypted repo
#            for each run), with each one's peak RSS (/usr/bin/time);
#   size     archive.tar.zst + manifest.json against the tar.zst;
#   mount    flowloom-backup mount -f (the daemon under its own PID, with
#            -o cache_size=64) against squashfuse on the squashfs image and
#            archivemount on the archive, each freshly mounted for every
#            measure, the underlying file in the page cache: sequential read
#            of the largest file, first and second read of a small file (ours
#            with its manifest cache filled by the warm-up, as on any mount
#            after the first, and once more with -o no_manifest_cache), the
#            daemon's VmHWM while reading the largest file, and 8 parallel
#            readers of the 8 largest files (not archivemount).
# Each row prints the median and min-max of the runs, the peer's, their ratio
# and the issue's target with PASS or MISS. A missing peer is installed from
# Debian when run as root (apt-get), else its rows print n/a. Whatever it
# mounts it unmounts (trap, also on failure and Ctrl-C); daemons are ended by
# the PID it started. Progress goes to stderr, the table to stdout. A
# benchmark, never a test: timings depend on the machine and its load.
#
# usage: bench/run.sh [--size MIB] [--runs N]
#        env FB_BUILD_DIR (default ./build)
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
t_start=$SECONDS
size_mib=256
runs=3
usage="usage: bench/run.sh [--size MIB] [--runs N] (MIB >= 8, N >= 1)"
while [ $# -gt 0 ]; do
    case $1 in
    --size) size_mib=${2:-}; shift 2 || { echo "$usage" >&2; exit 2; } ;;
    --runs) runs=${2:-}; shift 2 || { echo "$usage" >&2; exit 2; } ;;
    -h | --help) echo "$usage"; exit 0 ;;
    *) echo "$usage" >&2; exit 2 ;;
    esac
done
[[ $size_mib =~ ^[1-9][0-9]*$ && $runs =~ ^[1-9][0-9]*$ ]] && [ "$size_mib" -ge 8 ] ||
    { echo "$usage" >&2; exit 2; }
build=$(abs_build "${FB_BUILD_DIR:-build}")
cli=$build/cli/flowloom-backup
for f in "$cli" "$build/fs/flowloom-backupfs"; do
    [ -x "$f" ] || { echo "bench: $f not built (run meson/ninja first)" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "bench: needs GNU time as /usr/bin/time (apt-get install time)" >&2; exit 2; }
for c in fusermount3 mountpoint python3 tar zstd; do
    command -v "$c" >/dev/null || { echo "bench: needs $c" >&2; exit 2; }
done

# Progress on stderr; the table is on stdout.
step() { echo "bench: $(date -u +%H:%M:%S) $*" >&2; }

# have CMD: CMD is installed.
have() { command -v "$1" >/dev/null; }
# install_peers: the Debian packages of the peers whose command is missing,
# installed with apt-get when run as root (printing which); otherwise, or if
# that fails, their rows print n/a.
install_peers() {
    local -A cmd_of=([squashfs-tools]=mksquashfs [squashfuse]=squashfuse
        [archivemount]=archivemount [restic]=restic [borgbackup]=borg)
    local missing=() p
    for p in squashfs-tools squashfuse archivemount restic borgbackup; do
        command -v "${cmd_of[$p]}" >/dev/null || missing+=("$p")
    done
    [ "${#missing[@]}" = 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "bench: not installed: ${missing[*]} (as root: apt-get install -y ${missing[*]});" \
            "their rows print n/a" >&2
        return 0
    fi
    step "installing from Debian: ${missing[*]}"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -q)
    "${apt[@]}" update >"$work/apt.log" 2>&1 || echo "bench: apt-get update failed" >&2
    if ! "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >>"$work/apt.log" 2>&1; then
        # One unavailable package must not keep the others out.
        for p in "${missing[@]}"; do
            "${apt[@]}" install -y --no-install-recommends "$p" >>"$work/apt.log" 2>&1 ||
                echo "bench: could not install $p (its rows print n/a); see apt-get's output:" \
                    "$(tail -2 "$work/apt.log" | tr '\n' ' ')" >&2
        done
    fi
    hash -r
}

work=$(mktemp -d /tmp/fb-run.XXXXXX)
# The mount's manifest cache (docs/mount.md) lives in the run's own
# directory: no user's cache is read or filled.
export XDG_CACHE_HOME=$work/xdg-cache
# Mounts, daemons and readers of this run: unmounted and ended (by PID) on
# any exit; the work directory is deleted only when nothing is mounted in it.
mounts=()
pids=()
readers=()
# cleanup: the EXIT trap; unmounts what this run mounted, ends what it started, deletes $work.
cleanup() {
    local m p left=0
    for p in "${readers[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    for m in "${mounts[@]}"; do
        if mountpoint -q "$m" 2>/dev/null; then
            fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
        fi
    done
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    for m in "${mounts[@]}"; do
        if mountpoint -q "$m" 2>/dev/null; then
            echo "bench: $m is still mounted; $work left in place" >&2
            left=1
        fi
    done
    [ "$left" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

install_peers

root=$work/root
sess=$root/.flowloom/sessions/bench
store=$root/.flowloom/backups/bench
step "generating a $size_mib MiB session"
python3 "$here/bench/gen_mixed_session.py" "$sess" "$size_mib"
nfiles=$(find "$sess" -type f | wc -l)
bytes=$(find "$sess" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
# The largest file, a small one, and the 8 largest (the parallel readers).
largest=$(cd "$sess" && find . -type f -printf '%s %P\n' | sort -k1,1nr -k2 | awk 'NR == 1' | cut -d' ' -f2-)
largest_bytes=$(stat -c %s "$sess/$largest")
small=artifacts/steps/s10/step-0610.json
[ -f "$sess/$small" ] || { echo "bench: generator did not write $small" >&2; exit 1; }
mapfile -t par_files < <(cd "$sess" && find . -type f -printf '%s %P\n' | sort -k1,1nr -k2 |
    awk 'NR <= 8' | cut -d' ' -f2-)
par_bytes=0
for f in "${par_files[@]}"; do par_bytes=$((par_bytes + $(stat -c %s "$sess/$f"))); done

# Samples: samples[KEY] is the space-separated values of KEY's timed runs.
declare -A samples failed ours
# sample KEY VALUE: keeps VALUE for KEY.
sample() { samples[$1]="${samples[$1]:-} $2"; }
# stat3 KEY: "median min max" of KEY's samples (empty if none).
stat3() {
    [ -n "${samples[$1]:-}" ] || return 0
    tr ' ' '\n' <<<"${samples[$1]}" | grep . | sort -g |
        awk '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
            print m, v[1], v[NR]}'
}
# med KEY: the median of KEY's samples.
med() { stat3 "$1" | cut -d' ' -f1; }
# elapsed START: seconds since START (an $EPOCHREALTIME).
elapsed() { awk -v s="$1" -v e="$EPOCHREALTIME" 'BEGIN{printf "%.4f", e - s}'; }
# peer_failed LABEL WHAT: a peer failed; its rows print n/a from now on. Our
# own tool failing ends the run (exit 1).
peer_failed() {
    if [ -n "${ours[$1]:-}" ]; then
        echo "bench: FAILED: $2 (flowloom-backup); its output:" >&2
        cat "$work/err.$1" >&2 2>/dev/null || true
        exit 1
    fi
    echo "bench: $1 failed ($2): its rows print n/a; its output:" >&2
    tail -5 "$work/err.$1" >&2 2>/dev/null || true
    failed[$1]=1
}
# usable LABEL: the peer is installed and has not failed.
usable() { [ -z "${failed[$1]:-}" ]; }

# ---- Backups ---------------------------------------------------------------
# Every contender is prep_LABEL (untimed: empties what the last run left) and
# do_LABEL (timed), each do_ under /usr/bin/time.
# timed LABEL CMD...: runs CMD; its peak RSS (KiB) goes to rss.LABEL.
timed() {
    local label=$1
    shift
    /usr/bin/time -f %M -o "$work/rss.$label" "$@"
}
prep_tar() { rm -f "$work/tar.zst"; }
do_tar() { timed tar bash -c 'set -o pipefail; tar -cf - -C "$1" . | zstd -3 -T0 -q >"$2"' \
    bash "$sess" "$work/tar.zst"; }
prep_fb() { rm -rf "$root/.flowloom/backups"; }
do_fb() { FLOWLOOM_ROOT=$root timed fb "$cli" backup bench full --no-cleanup --quiet; }
prep_fbnv() { prep_fb; }
do_fbnv() { FLOWLOOM_ROOT=$root timed fbnv "$cli" backup bench full --no-cleanup --quiet --no-verify; }
sq_img=$work/session.sqfs
prep_sq() { rm -f "$sq_img"; }
do_sq() { timed sq mksquashfs "$sess" "$sq_img" -comp zstd -Xcompression-level 3 -noappend \
    -quiet -no-progress; }
# restic and borg: a fresh repository each run, no encryption (or a fixed
# password where restic cannot do without), caches inside $work.
export RESTIC_CACHE_DIR=$work/restic-cache BORG_BASE_DIR=$work/borg-home
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
restic_pw=()
if have restic; then
    if restic init --help 2>/dev/null | grep -- --insecure-no-password >/dev/null; then
        restic_pw=(--insecure-no-password)
    else
        export RESTIC_PASSWORD=flowloom-bench
    fi
fi
prep_restic() { rm -rf "$work/restic"; restic -r "$work/restic" init "${restic_pw[@]}"; }
do_restic() { timed restic restic -r "$work/restic" backup "${restic_pw[@]}" "$sess"; }
prep_borg() { rm -rf "$work/borg"; borg init -e none "$work/borg"; }
do_borg() { timed borg borg create "$work/borg::bench" "$sess"; }

# run_contender LABEL RECORD: prep, then the timed run; with RECORD=1 its
# seconds and peak MiB are kept as samples LABEL.s and LABEL.mib.
# warm_session: reads every file of the session, so that each contender
# starts with it in the page cache. Needed between contenders: borg drops the
# files it read from the cache (posix_fadvise DONTNEED; at 256 MiB, 18 of
# model.bin's 83 MiB stayed cached), so whatever ran after it read cold
# (tar | zstd: 0.46 -> 0.60-0.72 s).
warm_session() { find "$sess" -type f -exec cat {} + >/dev/null; }
run_contender() {
    local label=$1 record=$2 s t
    usable "$label" || return 0
    "prep_$label" >"$work/err.$label" 2>&1 || { peer_failed "$label" "prep_$label"; return 0; }
    warm_session
    s=$EPOCHREALTIME
    "do_$label" >"$work/err.$label" 2>&1 || { peer_failed "$label" "do_$label"; return 0; }
    t=$(elapsed "$s")
    if [ "$record" = 1 ]; then
        sample "$label.s" "$t"
        sample "$label.mib" "$(tail -1 "$work/rss.$label" | awk '{printf "%.1f", $1 / 1024}')"
    fi
}
ours[fb]=1 ours[fbnv]=1
backup_labels=(tar)
have mksquashfs && backup_labels+=(sq) || failed[sq]=1
have restic && backup_labels+=(restic) || failed[restic]=1
have borg && backup_labels+=(borg) || failed[borg]=1
# fb last, so that its validated backup is the one left for the size and the mount.
backup_labels+=(fbnv fb)
load_before=$(machine_line)
sync
step "backups (${backup_labels[*]}): warm-up and $runs runs, in turns"
for r in $(seq 0 "$runs"); do
    for label in "${backup_labels[@]}"; do run_contender "$label" "$((r > 0))"; done
done

ids=("$store"/*-full-*/)
[ "${#ids[@]}" = 1 ] && [ -d "${ids[0]}" ] ||
    { echo "bench: expected one backup in $store, found ${ids[*]}" >&2; exit 1; }
bid=$(basename "${ids[0]}")
archive=$store/$bid/archive.tar.zst
stored_fb=$(($(stat -c %s "$archive") + $(stat -c %s "$store/$bid/manifest.json")))
stored_tar=$(stat -c %s "$work/tar.zst")
# size_of LABEL PATH: bytes under PATH, empty if the peer LABEL failed or is missing.
size_of() { usable "$1" && [ -e "$2" ] && du -sb "$2" | cut -f1 || true; }
stored_sq=$(size_of sq "$sq_img")
stored_restic=$(size_of restic "$work/restic")
stored_borg=$(size_of borg "$work/borg")

# ---- Mounts ----------------------------------------------------------------
# Mount tools: fb (ours), fbc (ours without the manifest cache: the first
# mount after a backup), sq (squashfuse on the image), am (archivemount on
# our archive.tar.zst, which rescans the archive). Each measure mounts afresh,
# after reading the underlying file(s) once so the page cache holds them.
ours[fbm]=1 ours[fbc]=1
usable sq && have squashfuse || failed[sqm]=1
have archivemount || failed[am]=1
started=
# wait_mounted PID MOUNTPOINT: until it is a mount point (false if the daemon died).
wait_mounted() {
    for _ in $(seq 3000); do
        mountpoint -q "$2" && return 0
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.02
    done
    return 1
}
# unmount_pid PID MOUNTPOINT: unmounts, then ends the daemon by its PID.
unmount_pid() {
    fusermount3 -u "$2" 2>/dev/null || fusermount3 -uz "$2" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
# mount_tool TOOL: warms the underlying file, mounts TOOL in the foreground of
# its own (PID in $started); sets $dir to where the session's files are.
# Returns false (the peer marked failed) if a peer does not mount.
mount_tool() {
    local tool=$1 mp=$work/mnt.$1
    mkdir -p "$mp"
    case $tool in
    fbm|fbc)
        find "$root/.flowloom/backups" -type f -exec cat {} + >/dev/null
        local o=cache_size=64
        [ "$tool" = fbc ] && o=$o,no_manifest_cache
        env FLOWLOOM_ROOT="$root" "$cli" mount "$mp" -f -o "$o" >"$work/err.$tool" 2>&1 &
        dir=$mp/bench/$bid ;;
    sqm)
        cat "$sq_img" >/dev/null
        squashfuse -f "$sq_img" "$mp" >"$work/err.$tool" 2>&1 &
        dir=$mp ;;
    am)
        cat "$archive" >/dev/null
        archivemount -f -o ro,readonly "$archive" "$mp" >"$work/err.$tool" 2>&1 &
        dir=$mp ;;
    esac
    started=$!
    pids+=("$started")
    mounts+=("$mp")
    wait_mounted "$started" "$mp" || { unmount_pid "$started" "$mp"; peer_failed "$tool" "mount"; return 1; }
    # mount -f execs the daemon, so $started must be flowloom-backupfs itself:
    # its VmHWM is the figure of row 8.
    if [[ $tool == fb* ]] && [[ $(readlink "/proc/$started/exe") != */flowloom-backupfs ]]; then
        echo "PID $started is $(readlink "/proc/$started/exe"), not flowloom-backupfs" >"$work/err.$tool"
        peer_failed "$tool" "mount -f"
    fi
}
# read_twice FILE: "first second" read of FILE in ms, timed inside one process
# (open, read to the end, close), so no fork or exec is in the figure.
read_py='import os, sys, time
def rd(p):
    t = time.perf_counter()
    fd = os.open(p, os.O_RDONLY)
    while os.read(fd, 1 << 20):
        pass
    os.close(fd)
    return (time.perf_counter() - t) * 1000
a = rd(sys.argv[1]); b = rd(sys.argv[1]); print("%.3f %.3f" % (a, b))'
# measure_small TOOL RECORD: first and second read of the small file in a fresh mount.
measure_small() {
    local tool=$1 v
    usable "$tool" && mount_tool "$tool" || return 0
    v=$(python3 -c "$read_py" "$dir/$small") || { unmount_pid "$started" "$work/mnt.$tool";
        peer_failed "$tool" "reading $small"; return 0; }
    if [ "$2" = 1 ]; then
        sample "$tool.first" "${v% *}"
        sample "$tool.second" "${v#* }"
    else
        cmp -s "$dir/$small" "$sess/$small" || { unmount_pid "$started" "$work/mnt.$tool";
            echo "content differs" >"$work/err.$tool"; peer_failed "$tool" "$small through the mount"; return 0; }
    fi
    unmount_pid "$started" "$work/mnt.$tool"
}
# measure_large TOOL RECORD: cat of the largest file in a fresh mount (MiB/s),
# then the daemon's VmHWM (MiB). The warm-up run compares the bytes instead.
measure_large() {
    local tool=$1 s t
    usable "$tool" && mount_tool "$tool" || return 0
    if [ "$2" = 1 ]; then
        s=$EPOCHREALTIME
        cat "$dir/$largest" >/dev/null || { unmount_pid "$started" "$work/mnt.$tool";
            peer_failed "$tool" "cat $largest"; return 0; }
        t=$(elapsed "$s")
        sample "$tool.mibs" "$(mbps "$largest_bytes" "$t")"
        sample "$tool.hwm" "$(awk '$1 == "VmHWM:" {printf "%.1f", $2 / 1024}' "/proc/$started/status")"
    else
        cmp -s "$dir/$largest" "$sess/$largest" || { unmount_pid "$started" "$work/mnt.$tool";
            echo "content differs" >"$work/err.$tool"; peer_failed "$tool" "$largest through the mount"; return 0; }
    fi
    unmount_pid "$started" "$work/mnt.$tool"
}
# measure_par TOOL RECORD: 8 readers at once, one per file of par_files, in a
# fresh mount; total MiB/s.
measure_par() {
    local tool=$1 s t p ok=1
    usable "$tool" && mount_tool "$tool" || return 0
    s=$EPOCHREALTIME
    readers=()
    for f in "${par_files[@]}"; do
        cat "$dir/$f" >/dev/null &
        readers+=($!)
    done
    for p in "${readers[@]}"; do wait "$p" || ok=0; done
    readers=()
    t=$(elapsed "$s")
    unmount_pid "$started" "$work/mnt.$tool"
    [ "$ok" = 1 ] || { peer_failed "$tool" "8 parallel readers"; return 0; }
    [ "$2" = 1 ] && sample "$tool.par" "$(mbps "$par_bytes" "$t")"
    return 0
}
[ -n "${failed[am]:-}" ] || step "archivemount rescans the archive at each mount and open: slow"
# The manifest cache keeps no manifest changed in the last 2 s (its
# timestamps could still move without a new ctime): wait that out, so that
# the warm-up fills it as any mount after the first would find it.
while [ $(($(date +%s) - $(stat -c %Z "$store/$bid/manifest.json"))) -lt 3 ]; do sleep 0.5; done
step "mounts (fbm fbc sqm am): warm-up and $runs runs, in turns"
# A small read takes under a millisecond, where a shared host's noise is of
# the same size: each timed run samples it in SMALL_SAMPLES fresh mounts per
# contender, in turns, so the medians rest on runs x SMALL_SAMPLES figures.
small_samples=3
for r in $(seq 0 "$runs"); do
    rec=$((r > 0))
    for _ in $(seq "$((rec ? small_samples : 1))"); do
        for tool in fbm fbc sqm am; do measure_small "$tool" "$rec"; done
    done
    for tool in fbm sqm am; do measure_large "$tool" "$rec"; done
    for tool in fbm sqm; do measure_par "$tool" "$rec"; done
done
load_after=$(machine_line)

# ---- Table -----------------------------------------------------------------
# cell KEY: "median (min-max)" of KEY, or n/a.
cell() {
    local m lo hi
    read -r m lo hi <<<"$(stat3 "$1")"
    if [ -z "$m" ]; then echo n/a; return; fi
    m=$(fmt "$m")
    if [ "$runs" = 1 ]; then echo "$m"; else echo "$m ($lo-$hi)"; fi
}
# fmt VALUE: a number to 3 significant places for the table.
fmt() { awk -v v="$1" 'BEGIN{if (v >= 100) printf "%.0f", v; else if (v >= 10) printf "%.1f", v;
    else if (v >= 1) printf "%.2f", v; else printf "%.3f", v}'; }
# fmt_key KEY: the median, min and max of KEY, formatted into samples.
fmt_key() {
    local v out=
    [ -n "${samples[$1]:-}" ] || return 0
    for v in ${samples[$1]}; do out="$out $(fmt "$v")"; done
    samples[$1]=$out
}
for k in "${!samples[@]}"; do fmt_key "$k"; done
passes=0 misses=0
# row TEXT OURS_KEY PEER_KEY OP LIMIT TARGET_TEXT [ABS]: OURS against PEER
# (medians), their ratio and the verdict: the ratio (or, with ABS, our
# median itself) OP (<=, <, >=) LIMIT. A key is a sample key or =VALUE.
row() {
    local text=$1 a=$2 b=$3 op=$4 lim=$5 target=$6 abs=${7:-} av bv ac bc r=n/a v=n/a x
    if [[ $a == =* ]]; then av=${a#=}; ac=$av; else av=$(med "$a"); ac=$(cell "$a"); fi
    if [[ $b == =* ]]; then bv=${b#=}; bc=${bv:-n/a}; else bv=$(med "$b"); bc=$(cell "$b"); fi
    [ -n "$av" ] && [ -n "$bv" ] && r=$(awk -v a="$av" -v b="$bv" 'BEGIN{printf "%.3f", a / b}')
    x=$r
    [ -n "$abs" ] && x=${av:-n/a}
    if [ "$op" != - ] && [ "$x" != n/a ]; then
        if awk -v x="$x" -v l="$lim" -v o="$op" \
            'BEGIN{exit !((o == "<=" && x <= l) || (o == "<" && x < l) || (o == ">=" && x >= l))}'; then
            v=PASS passes=$((passes + 1))
        else
            v=MISS misses=$((misses + 1))
        fi
    elif [ "$op" = - ]; then
        v=-
    fi
    [ "$r" != n/a ] && r=${r}x
    printf '%-50s %-22s %-22s %8s  %-18s %s\n' "$text" "$ac" "$bc" "$r" "$target" "$v"
}
# sqmib BYTES: MiB, or nothing when BYTES is empty (a peer that is n/a).
sqmib() { [ -n "$1" ] && mib "$1" || true; }

printf '\nflowloom-backup against its peers (bench/run.sh, issue 11)\n'
printf 'session: %d files, %s MiB (2,000 small JSON/markdown, 3 logs, 3 mixed binaries); ' \
    "$nfiles" "$(mib "$bytes")"
printf 'largest %s (%s MiB)\n' "$largest" "$(mib "$largest_bytes")"
printf 'runs: 1 warm-up + %d timed each, in turns (small reads, rows 6-7: %d fresh mounts per run); figures are median (min-max); ratio = flowloom / peer (medians)\n' "$runs" "$small_samples"
printf 'before: %s\nafter:  %s\n' "$load_before" "$load_after"
printf 'build: %s\n\n' "$build"
printf '%-50s %-22s %-22s %8s  %-18s %s\n' what flowloom peer ratio target result
row "1 backup full (validated) vs tar|zstd, s" fb.s tar.s "<=" 1.0 "<= 1.0x"
row "2 backup --no-verify vs tar|zstd, s" fbnv.s tar.s "<=" "$(awk 'BEGIN{print 1/1.3}')" "<= 0.77x (1/1.3)"
row "2 backup --no-verify vs mksquashfs, s" fbnv.s sq.s "<=" 1.0 "<= 1.0x"
row "3 backup full vs restic backup, s" fb.s restic.s "<" 1.0 "< 1.0x"
row "3 backup full vs borg create, s" fb.s borg.s "<" 1.0 "< 1.0x"
row "4 stored (archive+manifest) vs tar.zst, MiB" "=$(mib "$stored_fb")" "=$(mib "$stored_tar")" \
    "<=" 1.02 "<= 1.02x"
row "5 read largest file vs squashfuse, MiB/s" fbm.mibs sqm.mibs ">=" 1.0 ">= 1.0x"
row "5 read largest file vs archivemount, MiB/s" fbm.mibs am.mibs - - "-"
row "6 first read of a small file vs squashfuse, ms" fbm.first sqm.first "<=" 1.5 "<= 1.5x"
row "6 first read of a small file vs archivemount, ms" fbm.first am.first - - "-"
row "7 second read of the same file vs squashfuse, ms" fbm.second sqm.second "<=" 1.1 "<= 1.1x"
row "8 daemon VmHWM, cache_size=64, vs squashfuse, MiB" fbm.hwm sqm.hwm "<=" 80 "<= 80 MiB" abs
row "9 CLI peak RSS, backup full, vs tar|zstd, MiB" fb.mib tar.mib "<" 64 "< 64 MiB" abs
row "10 8 parallel readers vs squashfuse, MiB/s" fbm.par sqm.par ">=" 1.0 ">= 1.0x"
printf '\nother figures (no target)\n'
row "backup --no-verify vs restic backup, s" fbnv.s restic.s - - "-"
row "backup --no-verify vs borg create, s" fbnv.s borg.s - - "-"
row "stored vs squashfs image, MiB" "=$(mib "$stored_fb")" "=$(sqmib "$stored_sq")" - - "-"
row "stored vs restic repository, MiB" "=$(mib "$stored_fb")" "=$(sqmib "$stored_restic")" - - "-"
row "stored vs borg repository, MiB" "=$(mib "$stored_fb")" "=$(sqmib "$stored_borg")" - - "-"
row "peak RSS, backup --no-verify vs mksquashfs, MiB" fbnv.mib sq.mib - - "-"
row "peak RSS, backup full vs restic backup, MiB" fb.mib restic.mib - - "-"
row "peak RSS, backup full vs borg create, MiB" fb.mib borg.mib - - "-"
row "daemon VmHWM vs archivemount, MiB" fbm.hwm am.hwm - - "-"
row "first read, no manifest cache, vs squashfuse, ms" fbc.first sqm.first - - "-"
printf '\n%d PASS, %d MISS (n/a rows count as neither); wall time %d s\n' "$passes" "$misses" \
    "$((SECONDS - t_start))"
printf 'tar|zstd: tar -cf - DIR | zstd -3 -T0; mksquashfs: -comp zstd -Xcompression-level 3;'
printf ' restic %s, borg %s: fresh unencrypted repository each run\n' \
    "$(have restic && restic version 2>/dev/null | cut -d' ' -f2 || echo n/a)" \
    "$(have borg && borg --version 2>/dev/null | cut -d' ' -f2 || echo n/a)"
printf 'mounts: fresh for every measure, underlying file read once first; small reads timed'
printf ' in-process (open, read, close); archivemount mounts our archive.tar.zst;'
printf ' ours with its manifest cache filled by the warm-up, "no manifest cache": -o no_manifest_cache\n'
