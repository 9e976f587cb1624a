#!/usr/bin/env bash
# A first look at flowloom-backup: installs what is missing, builds, creates a
# realistic FlowLoom root (in a new temporary directory, or in $1), and runs
# what a user would: a full backup, an incremental one, list, verify, show;
# a diff against the live session after an edit; a recover into a separate
# directory, then into the session itself (with its safety backup); the
# retention report; and FlowLoom's entry point scripts/session_manager.sh.
# Then, when scripts/demo_mount.sh exists, it browses the backups via FUSE.
# Every line it prints after "$ " is a command as typed, quoted so that it
# can be pasted into a shell (after the `cd ... && export PATH=...` line the
# demo prints first); everything else is output or a comment in brackets.
#
#   scripts/demo.sh            # demo root in a fresh /tmp/flowloom-demo.XXXXXX
#   scripts/demo.sh DIR        # demo root in DIR (created if missing)
#
# Run again on the same DIR, the demo starts afresh: it deletes what its
# earlier run created there (DIR/.flowloom and DIR/restored-copy, which it
# marks with DIR/.flowloom-demo) and nothing else. A DIR holding either of
# those without the mark is refused (exit 2): it may be a real FlowLoom root.
#
# FB_BUILD_DIR: the build directory (default: build). FB_DEMO_NO_BUILD=1 uses
# the programs already built there, without installing or building (tests).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
BUILD=${FB_BUILD_DIR:-build}
case $BUILD in /*) ;; *) BUILD=$REPO/$BUILD ;; esac

case ${FB_DEMO_NO_BUILD:-0} in
'' | 0 | no | false)
    bash scripts/install-deps.sh
    echo "== building in $BUILD"
    # A configured tree is left as it is: ninja re-runs meson by itself when
    # a meson.build changed, and a forced reconfigure would rebuild it all.
    [ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" >/dev/null
    ninja -C "$BUILD" >/dev/null
    ;;
esac
[ -x "$BUILD/cli/flowloom-backup" ] || {
    echo "demo.sh: $BUILD/cli/flowloom-backup is not built" >&2
    exit 5
}
export PATH="$BUILD/cli:$BUILD/fs:$PATH"

# Quotes words so that a printed command pastes into a shell as it ran.
shell_words() {
    local out="" a q=\'\\\'\'
    for a in "$@"; do
        case $a in
        '' | *[!A-Za-z0-9_./:=@%+,-]*) out+=" '${a//\'/$q}'" ;;
        *) out+=" $a" ;;
        esac
    done
    printf '%s' "${out# }"
}

MARK=.flowloom-demo
if [ $# -ge 1 ]; then
    ROOT=$1
    mkdir -p "$ROOT"
else
    ROOT=$(mktemp -d /tmp/flowloom-demo.XXXXXX)
fi
ROOT=$(cd "$ROOT" && pwd)
SESSION=session_12345_1640995200_abc123
S=$ROOT/.flowloom/sessions/$SESSION

if [ -e "$ROOT/.flowloom" ] || [ -e "$ROOT/restored-copy" ]; then
    if [ ! -f "$ROOT/$MARK" ]; then
        echo "demo.sh: $ROOT already holds .flowloom or restored-copy that no earlier demo" \
             "created; give the demo an empty or new directory" >&2
        exit 2
    fi
    echo "== $ROOT holds an earlier run of the demo: starting afresh"
    rm -rf "$ROOT/.flowloom" "$ROOT/restored-copy"
fi
echo "This directory is a flowloom-backup demo root (scripts/demo.sh); running the demo on it" \
     "again deletes .flowloom and restored-copy here." >"$ROOT/$MARK"

echo "== creating a demo FlowLoom root in $ROOT"
mkdir -p "$S/artifacts/images" "$S/logs" "$S/state"
cat >"$S/metadata.json" <<EOF
{
  "session_id": "$SESSION",
  "title": "Port the tokenizer to C",
  "created": "2021-12-31T23:00:00Z",
  "tags": ["tokenizer", "port"]
}
EOF
cat >"$S/state.json" <<'EOF'
{"step": 1, "status": "running", "open_files": ["src/tok.c", "src/tok.h"]}
EOF
echo '{"todo": ["lexer", "tests"], "done": ["plan"]}' >"$S/state/plan.json"
printf '# Notes\n\n- keep the API of the Python version\n' >"$S/state/notes.md"
head -c $((2 * 1024 * 1024)) /dev/urandom >"$S/artifacts/model.bin"
head -c $((256 * 1024)) /dev/urandom >"$S/artifacts/images/plot.png"
ln -sfn model.bin "$S/artifacts/current-model"
# A few MiB of log text, compressible like real logs.
awk 'BEGIN { srand(7); for (i = 0; i < 60000; i++)
    printf "2021-12-31T23:%02d:%02dZ step=%d loss=%.4f tokens=%d status=ok\n",
           (i / 60) % 60, i % 60, i, 1 / (1 + i / 1000) + rand() / 100, int(rand() * 100000) }' \
    >"$S/logs/train.log"
seq 1 20000 | sed 's/^/tool call /' >"$S/logs/tools.log"
echo "$SESSION" >"$ROOT/.flowloom/current_session"

# Shows the command as a user would type it, then runs it.
run() {
    printf '\n$ %s\n' "$(shell_words "$@")"
    "$@"
}

cd "$ROOT"
echo "== the commands below run in $ROOT with the programs just built; to run them yourself:"
printf '$ cd %s && export PATH=%s:"$PATH"\n' "$(shell_words "$ROOT")" \
    "$(shell_words "$BUILD/cli:$BUILD/fs")"
run flowloom-backup backup full "Initial full backup"

# The session moves on: state changes, then an incremental backup.
echo '{"step": 2, "status": "running", "open_files": ["src/tok.c"]}' >"$S/state.json"
echo '{"todo": ["tests"], "done": ["plan", "lexer"]}' >"$S/state/plan.json"
run flowloom-backup backup incremental "After the lexer"

run flowloom-backup list
run flowloom-backup verify
run flowloom-backup show latest --files

# The session goes wrong: a state file is overwritten, a log is lost, a
# stray file appears. diff shows what changed since the full backup.
FULL=$(flowloom-backup list -q | head -n 1)
echo '{"step": 3, "status": "failed", "error": "tokenizer crashed"}' >"$S/state.json"
rm "$S/logs/tools.log"
echo "scratch" >"$S/artifacts/scratch.txt"
run flowloom-backup diff "$FULL" --live
run flowloom-backup diff "$FULL" latest

# Look at the full backup elsewhere first, then bring the session back to it.
run flowloom-backup recover "$FULL" --target "$ROOT/restored-copy"
run ls -l "$ROOT/restored-copy"
run flowloom-backup recover "$FULL" --dry-run
run flowloom-backup recover "$FULL"
run flowloom-backup diff "$FULL" --live
run diff -r --no-dereference "$ROOT/restored-copy" "$S"
echo "(no output from diff -r: the session equals the copy restored with --target)"
run flowloom-backup list

# Retention: what the policy would remove with at most one full backup kept.
run flowloom-backup cleanup --dry-run --keep-full 1

# FlowLoom's commands (/session:backup ...) call this with ONE string.
run "$REPO/scripts/session_manager.sh" backup 'current incremental "Back on track"'
run "$REPO/scripts/session_manager.sh" list-backups ''

if [ -f "$REPO/scripts/demo_mount.sh" ]; then
    echo
    echo "== browsing the backups through the FUSE mount"
    bash "$REPO/scripts/demo_mount.sh" "$ROOT"
fi

echo
echo "Demo root: $ROOT. To try it yourself:"
printf '$ cd %s && export PATH=%s:"$PATH"\n' "$(shell_words "$ROOT")" \
    "$(shell_words "$BUILD/cli:$BUILD/fs")"
echo '$ flowloom-backup list --json'
