#!/usr/bin/env bash
# The mount part of the demo (called by scripts/demo.sh with the demo's
# FlowLoom root): mounts <root>/.flowloom/backups with flowloom-backupfs,
# browses it with ls -l, compares the latest full backup with the live
# session (diff -r), restores it with cp -a, and unmounts.
#
# usage: scripts/demo_mount.sh <flowloom-root> [session_id]
set -euo pipefail

ROOT=${1:?usage: demo_mount.sh <flowloom-root> [session_id]}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FB_BUILD_DIR:-$REPO/build}
if [[ -x $BUILD/fs/flowloom-backupfs ]]; then
    FSD=$BUILD/fs/flowloom-backupfs
elif FSD=$(command -v flowloom-backupfs); then
    :
else
    echo "demo_mount: flowloom-backupfs not built (looked in $BUILD/fs and PATH)" >&2
    exit 5
fi
STORE=$ROOT/.flowloom/backups
[[ -d $STORE ]] || { echo "demo_mount: no store at $STORE" >&2; exit 3; }
# Readable and writable: a /dev/fuse this user cannot open (0600 in some
# containers) would make the mount fail instead of being skipped.
if [[ ! -r /dev/fuse || ! -w /dev/fuse ]] || ! command -v fusermount3 >/dev/null; then
    echo "demo_mount: FUSE is not available here (/dev/fuse, fusermount3); skipping the mount demo" >&2
    exit 0
fi

MNT=$(mktemp -d "${TMPDIR:-/tmp}/flowloom-mnt.XXXXXX")
RESTORE=$(mktemp -d "${TMPDIR:-/tmp}/flowloom-restore.XXXXXX")
unmount() {
    if mountpoint -q "$MNT"; then
        fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"
    fi
    rmdir "$MNT" 2>/dev/null || true
    rm -rf "$RESTORE"
}
trap unmount EXIT

# Prints the command quoted as it ran, so that it pastes into a shell (an
# argument such as '%y %A %n' stays one word), then runs it.
show() {
    local shown="" a q=\'\\\'\'
    for a in "$@"; do
        case $a in
        '' | *[!A-Za-z0-9_./:=@%+,-]*) shown+=" '${a//\'/$q}'" ;;
        *) shown+=" $a" ;;
        esac
    done
    printf '\n$%s\n' "$shown"
    "$@"
}

# The commands below name temporary directories; saying so keeps a reader
# from pasting them after the demo has removed them.
echo "(mount point $MNT and copy $RESTORE: temporary, removed when this part ends)"
# Without -f the daemon returns only once the mount is live, so the next
# line can use it.
show "$FSD" "$STORE" "$MNT"
show ls -l "$MNT"

SID=${2:-}
if [[ -z $SID ]]; then
    for d in "$MNT"/*/; do
        if [[ -L $d/latest-full ]]; then
            SID=$(basename "$d")
            break
        fi
    done
fi
if [[ -z $SID || ! -L $MNT/$SID/latest-full ]]; then
    echo "demo_mount: no session with a full backup to show" >&2
    exit 3
fi
FULL=$(readlink "$MNT/$SID/latest-full")
show ls -l "$MNT/$SID"
show ls -l "$MNT/$SID/$FULL"

# Compare the backup with the live session. Exit 1 only means they differ
# (the session moved on since that backup); 2 is trouble.
set +e
show diff -r --no-dereference "$MNT/$SID/$FULL" "$ROOT/.flowloom/sessions/$SID"
rc=$?
set -e
case $rc in
    0) echo "(no differences: the session is as backed up in $FULL)" ;;
    1) echo "(the lines above are what changed in the session since $FULL)" ;;
    *) echo "demo_mount: diff failed" >&2; exit 5 ;;
esac

# A restore is just a copy out of the mount: content, modes, mtimes, links.
show cp -a "$MNT/$SID/$FULL/." "$RESTORE/"
show diff -r --no-dereference "$MNT/$SID/$FULL" "$RESTORE"
echo "(restored copy identical to backup $FULL)"
if [[ -f $RESTORE/metadata.json ]]; then
    show stat -c '%y %A %n' "$MNT/$SID/$FULL/metadata.json" "$RESTORE/metadata.json"
fi

show fusermount3 -u "$MNT"
echo "(unmounted; the daemon exited)"
