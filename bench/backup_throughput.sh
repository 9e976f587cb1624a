#!/usr/bin/env bash
# Backup throughput: flowloom-backup (full, verify on and off) against
# `tar -cf - | zstd -3 -T0` on the same generated session, best of N runs.
# Prints a table; it is a benchmark, never a test (timings vary by machine).
#
# usage: bench/backup_throughput.sh [SIZE_MIB] [RUNS]   (env FB_BUILD_DIR, default ./build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${FB_BUILD_DIR:-$here/build}
cli=$build/cli/flowloom-backup
size_mib=${1:-256}
runs=${2:-3}
[ -x "$cli" ] || { echo "bench: $cli not built (run meson/ninja first)" >&2; exit 2; }

work=$(mktemp -d /tmp/fb-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
sess=$root/.flowloom/sessions/bench
mkdir -p "$sess/logs" "$sess/artifacts"

# Half text logs (compress well), a quarter binary-ish artifacts (moderately),
# a quarter random (not at all): closer to a real session than zeros.
python3 - "$sess" "$size_mib" <<'PY'
import os, random, sys
sess, mib = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
words = [("w%d" % i) for i in range(5000)]
def text(n):
    out, size = [], 0
    while size < n:
        line = "%d INFO %s\n" % (rnd.randrange(10**9), " ".join(rnd.choice(words) for _ in range(12)))
        out.append(line); size += len(line)
    return "".join(out)[:n]
per = 8 * 1024 * 1024
for i in range(max(1, mib // 2 * 1024 * 1024 // per)):
    with open(os.path.join(sess, "logs", "run%03d.log" % i), "w") as f:
        f.write(text(per))
for i in range(max(1, mib // 4)):
    block = bytes(rnd.randrange(16) for _ in range(4096)) * 256
    with open(os.path.join(sess, "artifacts", "model%03d.bin" % i), "wb") as f:
        f.write(block)
for i in range(max(1, mib // 4)):
    with open(os.path.join(sess, "artifacts", "blob%03d.bin" % i), "wb") as f:
        f.write(os.urandom(1024 * 1024))
with open(os.path.join(sess, "metadata.json"), "w") as f:
    f.write('{"id": "bench"}\n')
PY
bytes=$(du -sb "$sess" | cut -f1)

best() { # best wall time in seconds of running "$@" $runs times
    local b="" t s e
    for _ in $(seq "$runs"); do
        s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
        t=$(awk -v s="$s" -v e="$e" 'BEGIN{printf "%.3f", e-s}')
        if [ -z "$b" ] || awk -v t="$t" -v b="$b" 'BEGIN{exit !(t<b)}'; then b=$t; fi
    done
    echo "$b"
}

fb_backup() { FLOWLOOM_ROOT=$root "$cli" backup bench full --no-cleanup --quiet "$@"; }
tar_zstd() { tar -C "$sess" -cf - . | zstd -3 -T0 -q -o "$work/tar.zst" -f; }

sync
t_tar=$(best tar_zstd)
t_fb=$(best fb_backup)
t_fbnv=$(best fb_backup --no-verify)
stored_fb=$(ls -t "$root"/.flowloom/backups/bench/*/archive.tar.zst | head -1 | xargs stat -c %s)
stored_tar=$(stat -c %s "$work/tar.zst")

mbps() { awk -v b="$bytes" -v t="$1" 'BEGIN{printf "%.1f", b/1048576/t}'; }
mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b/1048576}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2fx", a/b}'; }
printf '\nbackup of %s MiB (%d runs, best), %s cores\n' "$((bytes / 1048576))" "$runs" "$(nproc)"
printf '%-36s %9s %10s %12s %8s\n' tool seconds MiB/s stored_MiB vs_tar
row() { printf '%-36s %9s %10s %12s %8s\n' "$@"; }
row "tar | zstd -3 -T0" "$t_tar" "$(mbps "$t_tar")" "$(mib "$stored_tar")" "1.00x"
row "flowloom-backup full (validated)" "$t_fb" "$(mbps "$t_fb")" "$(mib "$stored_fb")" "$(ratio "$t_tar" "$t_fb")"
row "flowloom-backup full --no-verify" "$t_fbnv" "$(mbps "$t_fbnv")" "$(mib "$stored_fb")" "$(ratio "$t_tar" "$t_fbnv")"
