#!/usr/bin/env bash
# Store invariants checked after every fault test (RELIABILITY "Invariants").
#
#   bash tests/lib/invariants.sh ROOT SESSION
#
# Exits 0 when every invariant holds for ROOT/.flowloom/backups/SESSION, else
# exits 1 with one line on stderr "invariants: INV<n> (<name>) FAILED ...".
# Checked, in this order, because a reader is allowed to repair the derived
# index (SPEC: index.json is rebuilt from the manifests and written back when
# the lock is free) and the raw post-fault state must hold on its own:
#   INV1 index.json (if present) is a regular file, `jq -e .` parses it, and it
#        has format 1, this session id and a backups array.
#   INV2 every indexed id has a directory (not a symlink) with manifest.json
#        and archive.tar.zst; the manifest parses and names this id and
#        session; sha256sum and size of the archive equal the manifest's
#        archive.sha256/size and the index's archive_sha256; seq equals the
#        manifest's and is strictly increasing along the index.
#   (INV1 and INV2 run on the raw index, then again after `list`.)
#   INV3 `list --json` exits 0 and lists exactly the index ids, in order, all
#        of backup-id shape (no .tmp-*/.trash-*); every backup-id directory on
#        disk with a manifest is listed (no unindexed backup); when the raw
#        index already matched the disk, `list` did not need to rebuild it
#        (i.e. our strict parser accepted it).
#   INV4 `verify` exits 0 with "OK <id>" for every listed backup and changes
#        nothing in the store.
#   INV5 (only with INV_EXTRACT=1) every indexed archive extracts with
#        `tar --zstd` and each file's sha256 and size equal the manifest's.
#   INV6 `flock -n .lock true` succeeds: no lock is left held (and .lock, if
#        present, is a regular file, never a symlink).
#
# Environment:
#   FB_BIN       the flowloom-backup binary (default: $FB_BUILD_DIR/cli/..., else
#                <repo>/build/cli/flowloom-backup)
#   INV_CORRUPT  space-separated backup ids a test damaged on purpose: INV2 and
#                INV5 skip them, and INV4 then expects exit 1 with CORRUPT lines
#                naming only them (the word "index.json" allows the
#                "<session>/index.json" line).
#   INV_EXTRACT  1 to run INV5.
set -u
export LC_ALL=C TZ=UTC

if [ $# -ne 2 ]; then
    echo "usage: invariants.sh ROOT SESSION" >&2
    exit 2
fi
root=$1
sid=$2
store="$root/.flowloom/backups/$sid"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -z "${FB_BIN:-}" ]; then
    if [ -n "${FB_BUILD_DIR:-}" ]; then
        FB_BIN="$FB_BUILD_DIR/cli/flowloom-backup"
    else
        FB_BIN="$here/../../build/cli/flowloom-backup"
    fi
fi
if [ ! -x "$FB_BIN" ]; then
    echo "invariants: $FB_BIN is not an executable (set FB_BIN)" >&2
    exit 2
fi
corrupt=" ${INV_CORRUPT:-} "
tmp=$(mktemp -d /tmp/fb-inv.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "invariants: INV$1 ($2) FAILED for $store: $3" >&2
    exit 1
}

fb() {
    env -u FLOWLOOM_SESSION -u FLOWLOOM_ROOT -u FLOWLOOM_NOW "$FB_BIN" --root "$root" "$@"
}

is_corrupt() {
    case "$corrupt" in *" $1 "*) return 0 ;; esac
    return 1
}

id_re='^[0-9]{8}T[0-9]{6}Z-(full|incr)-[0-9a-f]{6}$'

# Backup-id directories on disk that hold a manifest.json (what a reader trusts).
disk_ids() {
    [ -d "$store" ] || return 0
    local d name
    for d in "$store"/*/; do
        [ -d "$d" ] || continue
        name=$(basename "$d")
        [[ $name =~ $id_re ]] || continue
        [ -L "$store/$name" ] && continue
        [ -f "$store/$name/manifest.json" ] && [ ! -L "$store/$name/manifest.json" ] || continue
        echo "$name"
    done | sort
}

# INV1 + INV2 on index.json as it is now; prints the index ids (in order) on
# stdout. jq starts slowly, so the index and all manifests are read by one jq
# call each.
check_index() {
    local phase=$1 idx="$store/index.json"
    [ -e "$idx" ] || [ -L "$idx" ] || return 0
    [ -L "$idx" ] && fail 1 "index parses" "$phase: index.json is a symlink"
    [ -f "$idx" ] || fail 1 "index parses" "$phase: index.json is not a regular file"
    jq -e -r --arg s "$sid" '
        if .format == 1 and .session_id == $s and (.backups | type == "array") then
            .backups[] | [(.id | tostring), (.seq | tostring), (.archive_sha256 | tostring)] | @tsv
        else error("index.json lacks format 1 / session_id \($s) / a backups array") end' \
        "$idx" >"$tmp/idx.tsv" 2>"$tmp/jq.err" ||
        fail 1 "index parses" "$phase: jq -e . index.json: $(head -c 300 "$tmp/jq.err")"
    local prev_seq=0 id seq ish mdir m a
    local -a ids=() manifests=() archives=()
    declare -A want_seq=() want_sum=()
    while IFS=$'\t' read -r id seq ish; do
        [[ $id =~ $id_re ]] || fail 2 "indexed backups exist" "$phase: index lists a bad id '$id'"
        [[ $seq =~ ^[0-9]+$ ]] || fail 2 "seq increasing" "$phase: $id has seq '$seq'"
        [ "$seq" -gt "$prev_seq" ] ||
            fail 2 "seq increasing" "$phase: $id has seq $seq after seq $prev_seq"
        prev_seq=$seq
        ids+=("$id")
        is_corrupt "$id" && continue
        mdir="$store/$id"
        m="$mdir/manifest.json"
        a="$mdir/archive.tar.zst"
        [ -d "$mdir" ] && [ ! -L "$mdir" ] ||
            fail 2 "indexed backups exist" "$phase: index lists $id but there is no directory $mdir"
        [ -f "$m" ] && [ ! -L "$m" ] ||
            fail 2 "indexed backups exist" "$phase: $id has no manifest.json"
        [ -f "$a" ] && [ ! -L "$a" ] ||
            fail 2 "indexed backups exist" "$phase: $id has no archive.tar.zst"
        manifests+=("$m")
        archives+=("$a")
        want_seq[$id]=$seq
        want_sum[$id]=$ish
    done <"$tmp/idx.tsv"
    if [ ${#manifests[@]} -gt 0 ]; then
        jq -r '[input_filename, (.backup_id | tostring), (.session_id | tostring),
                (.seq | tostring), (.archive.sha256 | tostring), (.archive.size | tostring)]
               | @tsv' "${manifests[@]}" >"$tmp/man.tsv" 2>"$tmp/jq.err" ||
            fail 2 "manifest matches" "$phase: a manifest does not parse: $(head -c 300 "$tmp/jq.err")"
        declare -A got_sum=() got_size=()
        local h f
        while read -r h f; do
            got_sum[$f]=$h
            got_size[$f]=$(stat -c %s "$f")
        done < <(sha256sum "${archives[@]}")
        local file bid msid mseq msum msize
        while IFS=$'\t' read -r file bid msid mseq msum msize; do
            id=$(basename "$(dirname "$file")")
            a="$store/$id/archive.tar.zst"
            [ "$bid" = "$id" ] && [ "$msid" = "$sid" ] && [ "$mseq" = "${want_seq[$id]}" ] ||
                fail 2 "manifest matches" "$phase: $id/manifest.json names backup '$bid', session '$msid', seq $mseq; the index says $id, $sid, seq ${want_seq[$id]}"
            [ "${got_sum[$a]}" = "$msum" ] && [ "${got_size[$a]}" = "$msize" ] ||
                fail 2 "archive hash" "$phase: $id: sha256sum/size of archive.tar.zst (${got_sum[$a]}, ${got_size[$a]}) differ from manifest.json archive ($msum, $msize)"
            [ "${want_sum[$id]}" = "$msum" ] ||
                fail 2 "archive hash" "$phase: $id: index archive_sha256 ${want_sum[$id]} != manifest $msum"
        done <"$tmp/man.tsv"
    fi
    [ ${#ids[@]} -eq 0 ] || printf '%s\n' "${ids[@]}"
}

# ---- raw state, as the fault left it ----
index_hash() {
    if [ -f "$store/index.json" ]; then sha256sum <"$store/index.json"; fi
}
raw_ids=$(check_index raw) || exit 1
raw_hash=$(index_hash)
disk_before=$(disk_ids)
raw_sorted=$(printf '%s\n' "$raw_ids" | sed '/^$/d' | sort)

# ---- INV3: list ----
if ! fb list --session "$sid" --json >"$tmp/list.out" 2>"$tmp/list.err"; then
    fail 3 "list equals index" "list exited non-zero: $(head -c 500 "$tmp/list.err")"
fi
jq -e 'type == "array"' "$tmp/list.out" >/dev/null ||
    fail 3 "list equals index" "list --json is not a JSON array"
listed=$(jq -r '.[].id' "$tmp/list.out")
while read -r id; do
    [ -z "$id" ] && continue
    [[ $id =~ $id_re ]] || fail 3 "list equals index" "list shows '$id', not a backup id"
done <<<"$listed"
if [ -n "$listed" ] && [ ! -f "$store/index.json" ]; then
    fail 3 "list equals index" "list shows backups but index.json was not written back"
fi
if [ "$(index_hash)" = "$raw_hash" ]; then
    idx_ids=$raw_ids
else
    idx_ids=$(check_index "after list") || exit 1
fi
[ "$listed" = "$idx_ids" ] ||
    fail 3 "list equals index" "list shows [$(echo $listed)] but index.json lists [$(echo $idx_ids)]"
disk_now=$(disk_ids)
for id in $disk_now; do
    is_corrupt "$id" && continue
    grep -qx -- "$id" <<<"$listed" ||
        fail 3 "no unindexed backup" "backup directory $id (with a manifest) is not listed"
done
if [ "$raw_sorted" = "$disk_before" ] && grep -q "index rebuilt" "$tmp/list.err"; then
    fail 1 "strict validator accepts index" "the index matched the disk but list rebuilt it: $(grep 'index rebuilt' "$tmp/list.err" | head -1)"
fi

# ---- INV4: verify exits 0 (or 1 naming only INV_CORRUPT) and changes nothing ----
snapshot() {
    [ -d "$store" ] || return 0
    find "$store" -path "$store/.lock" -prune -o -printf '%P %y %m %s %T@\n' | sort
}
snapshot >"$tmp/before"
fb verify --session "$sid" >"$tmp/verify.out" 2>"$tmp/verify.err"
vrc=$?
snapshot >"$tmp/after"
cmp -s "$tmp/before" "$tmp/after" ||
    fail 4 "verify modifies nothing" "the store changed during verify: $(diff "$tmp/before" "$tmp/after" | head -5 | tr '\n' ' ')"
bad_lines=$(grep '^CORRUPT ' "$tmp/verify.out" || true)
if [ -z "${INV_CORRUPT:-}" ]; then
    [ "$vrc" -eq 0 ] && [ -z "$bad_lines" ] ||
        fail 4 "verify exits 0" "verify exited $vrc: $(head -c 600 "$tmp/verify.out") $(head -c 300 "$tmp/verify.err")"
else
    [ "$vrc" -eq 1 ] ||
        fail 4 "verify names the damage" "verify exited $vrc, expected 1 for [$INV_CORRUPT]: $(head -c 600 "$tmp/verify.out")"
    [ -n "$bad_lines" ] || fail 4 "verify names the damage" "verify printed no CORRUPT line"
    while read -r _ what _; do
        what=${what%:}
        case "$what" in
        "$sid/index.json") is_corrupt index.json && continue ;;
        *) is_corrupt "$what" && continue ;;
        esac
        fail 4 "verify names the damage" "verify reports $what, which the test did not damage: $bad_lines"
    done <<<"$bad_lines"
fi
for id in $listed; do
    is_corrupt "$id" && continue
    grep -qx "OK $id" "$tmp/verify.out" ||
        fail 4 "verify exits 0" "verify did not print 'OK $id': $(head -c 600 "$tmp/verify.out")"
done

# ---- INV5 (optional): archives extract and match their manifests ----
if [ "${INV_EXTRACT:-0}" = 1 ]; then
    for id in $listed; do
        is_corrupt "$id" && continue
        x="$tmp/x-$id"
        mkdir "$x"
        tar --zstd -xf "$store/$id/archive.tar.zst" -C "$x" 2>"$tmp/tar.err" ||
            fail 5 "archives extract" "$id: tar --zstd -x failed: $(head -c 300 "$tmp/tar.err")"
        while IFS=$'\t' read -r p h n; do
            [ -f "$x/$p" ] || fail 5 "archives extract" "$id: $p missing after extraction"
            got=$(sha256sum <"$x/$p" | cut -d' ' -f1)
            [ "$got" = "$h" ] && [ "$(stat -c %s "$x/$p")" = "$n" ] ||
                fail 5 "archives extract" "$id: $p extracts with sha256 $got, manifest says $h"
        done < <(jq -r '.entries[] | select(.type == "file" and (has("path_b64") | not)) | [.path, .sha256, (.size | tostring)] | @tsv' "$store/$id/manifest.json")
        rm -rf "$x"
    done
fi

# ---- INV6: no lock left held ----
lock="$store/.lock"
if [ -L "$lock" ]; then
    fail 6 "lock free" ".lock is a symlink"
elif [ -e "$lock" ]; then
    [ -f "$lock" ] || fail 6 "lock free" ".lock is not a regular file"
    flock -n "$lock" true || fail 6 "lock free" "flock -n .lock true failed: the lock is still held"
fi
exit 0
