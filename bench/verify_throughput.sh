#!/usr/bin/env bash
# Verify throughput: `flowloom-backup verify` of one full backup against
# command-line baselines that do part of its work on the same archive:
#   zstd -t                          every frame decoded, checksums checked
#   zstd -dc | openssl dgst -sha256  decoded and the whole stream hashed once
#   zstd -dc | sha256sum             the same with coreutils' SHA-256
# verify does more than any of them: the SHA-256 of the archive file, every
# frame decoded and checked, the tar parsed entry by entry against the
# manifest, and the SHA-256 of every file at its recorded offset. MiB/s are
# of the uncompressed tar stream. Best of N runs each, the contenders taking
# turns; with FB_BASE_BUILD_DIR set, that build's verify runs in the same
# turns. A benchmark, never a test.
#
# usage: bench/verify_throughput.sh [SIZE_MIB] [RUNS]
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
for tool in zstd openssl sha256sum; do
    command -v "$tool" >/dev/null || { echo "bench: $tool not found" >&2; exit 2; }
done

work=$(mktemp -d /tmp/fb-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
sess=$root/.flowloom/sessions/bench
python3 "$here/bench/gen_session.py" "$sess" "$size_mib"
FLOWLOOM_ROOT=$root "$cli" backup bench full --no-cleanup --quiet --no-verify >/dev/null
archive=$(echo "$root"/.flowloom/backups/bench/*/archive.tar.zst)
tar_bytes=$(zstd -dc "$archive" | wc -c)
stored=$(stat -c %s "$archive")

fb_verify() { FLOWLOOM_ROOT=$root "$cli" verify bench latest; }
base_verify() { FLOWLOOM_ROOT=$root "$base_cli" verify bench latest; }
zstd_t() { zstd -q -t "$archive"; }
zstd_openssl() { zstd -q -dc "$archive" | openssl dgst -sha256; }
zstd_sha256sum() { zstd -q -dc "$archive" | sha256sum; }

bench_add fb : fb_verify
[ -n "$base_cli" ] && bench_add base : base_verify
bench_add zt : zstd_t
bench_add zo : zstd_openssl
bench_add zs : zstd_sha256sum
load_before=$(machine_line)
bench_run "$runs"
t_fb=$(bench_best fb)

printf '\nverify of a %s MiB tar stream stored in %s MiB (%d runs each, in turns, best)\n' \
    "$(mib "$tar_bytes")" "$(mib "$stored")" "$runs"
printf 'before: %s\nafter:  %s\n' "$load_before" "$(machine_line)"
printf '%-36s %9s %10s %12s\n' tool seconds MiB/s time_vs_verify
row() { # NAME LABEL
    local t
    t=$(bench_best "$2")
    printf '%-36s %9s %10s %12s\n' "$1" "$t" "$(mbps "$tar_bytes" "$t")" "$(ratio "$t" "$t_fb")"
}
row "flowloom-backup verify" fb
[ -n "$base_cli" ] && row "base build: verify" base
row "zstd -t" zt
row "zstd -dc | openssl dgst -sha256" zo
row "zstd -dc | sha256sum" zs
