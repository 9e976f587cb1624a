#!/usr/bin/env bash
# A first look at flowloom-backup: installs what is missing, builds, creates a
# realistic FlowLoom root (in a new temporary directory, or in $1), and runs
# what a user would: a full backup, an incremental one, list, verify, show;
# a diff against the live session after an edit; a recover into a separate
# directory, then into the session itself (with its safety backup); the
# retention report; and FlowLoom's entry point scripts/session_manager.sh.
# Then, when scripts/demo_mount.sh exists, it browses the backups via FUSE.
#
#   scripts/demo.sh            # demo root in a fresh /tmp/flowloom-demo.XXXXXX
#   scripts/demo.sh DIR        # demo root in DIR (created if missing)
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
BUILD=${FB_BUILD_DIR:-build}
case $BUILD in /*) ;; *) BUILD=$REPO/$BUILD ;; esac

bash scripts/install-deps.sh

echo "== building in $BUILD"
reconfigure=()
[ -f "$BUILD/build.ninja" ] && reconfigure=(--reconfigure)
meson setup "${reconfigure[@]}" "$BUILD" >/dev/null
ninja -C "$BUILD" >/dev/null
export PATH="$BUILD/cli:$BUILD/fs:$PATH"

if [ $# -ge 1 ]; then
    ROOT=$1
    mkdir -p "$ROOT"
else
    ROOT=$(mktemp -d /tmp/flowloom-demo.XXXXXX)
fi
ROOT=$(cd "$ROOT" && pwd)
SESSION=session_12345_1640995200_abc123
S=$ROOT/.flowloom/sessions/$SESSION

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
    local shown="" a q
    for a in "$@"; do
        case $a in
        '' | *[[:space:]\"\'\$\`\\\;\&\|\<\>\(\)\*\?]*)
            q=\'\\\'\'
            shown+=" '${a//\'/$q}'"
            ;;
        *) shown+=" $a" ;;
        esac
    done
    printf '\n$%s\n' "$shown"
    "$@"
}

cd "$ROOT"
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
echo "Demo root: $ROOT (try: cd $ROOT && flowloom-backup list --json)"
