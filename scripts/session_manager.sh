#!/usr/bin/env bash
# FlowLoom's entry point for the session backup commands:
#
#   session_manager.sh <backup|recover|list-backups|cleanup> "$ARGUMENTS"
#   session_manager.sh --stdin <command>        (the argument string on stdin)
#   session_manager.sh words "$ARGUMENTS"       (print the words, NUL-terminated)
#
# FlowLoom hands a slash command's arguments over as ONE string
# (`/session:backup current full "Major milestone"`). It is split into words
# the way a POSIX shell splits a command line, and never evaluated:
#   - blanks (space, tab, newline) separate words;
#   - '...' groups, everything inside is literal;
#   - "..." groups; inside, a backslash escapes only $ ` " \ and newline;
#   - outside quotes a backslash makes the next character literal;
#   - quotes are removed; "" and '' give an empty word;
#   - $(...), `...`, $VAR, ~, globs, ;, &&, |, >, < and # are plain text.
# An unbalanced quote is refused (exit 2). The words are then handed to
# flowloom-backup as an argument vector (no shell in between):
#   backup       -> flowloom-backup backup  [options] -- [session_id] [type] [note]
#   recover      -> flowloom-backup recover [options] -- [session_id] [backup_id|latest]
#   list-backups -> flowloom-backup list    [options] -- [session_id]
#   cleanup      -> flowloom-backup cleanup [options] -- [session_id]
# A word that looks like an option (-x, --name, --name=value) is passed as
# one, with the next word as its value for the options that take one; every
# other word goes after "--", so a note such as "-1 regression" can never be
# taken for an option. After a literal "--" word everything is positional.
#
# flowloom-backup is the one on PATH, else the one built in this source tree
# (build/cli/flowloom-backup, or $FB_BUILD_DIR/cli/flowloom-backup). The
# FlowLoom root is found by flowloom-backup itself (--root, $FLOWLOOM_ROOT,
# else the nearest directory at or above the working directory with
# .flowloom/). The exit status is flowloom-backup's.
set -uo pipefail

PROG=session_manager.sh

usage() {
    cat <<'EOF'
Usage: session_manager.sh <backup|recover|list-backups|cleanup> "ARGUMENTS"
       session_manager.sh --stdin <backup|recover|list-backups|cleanup>   (ARGUMENTS on stdin)
       session_manager.sh words "ARGUMENTS"    (show how ARGUMENTS is split)

ARGUMENTS is one string, split like a shell command line (quotes group words and
are removed) but never evaluated: $(...), backticks, $VAR, ;, &&, > stay text.

  backup       [session_id] [full|incremental] [note]
  recover      [session_id] [backup_id|latest] [--target DIR] [--only]
               [--path PATTERN]... [--dry-run]
  list-backups [session_id|--all]
  cleanup      [session_id|--all] [--dry-run] [--keep-full N] [--max-age DAYS]
EOF
}

# Splits $1 into the global array WORDS. Returns 1 (message on stderr) on
# an unbalanced quote.
WORDS=()
split_words() {
    local s=$1
    # Byte by byte: multi-byte UTF-8 characters are copied through intact.
    local LC_ALL=C
    local n=${#s} i=0 c word="" have=0 state=plain
    WORDS=()
    while ((i < n)); do
        c=${s:i:1}
        case $state in
        plain)
            case $c in
            ' ' | $'\t' | $'\n')
                if ((have)); then
                    WORDS+=("$word")
                    word=""
                    have=0
                fi
                ;;
            "'")
                state=single
                have=1
                ;;
            '"')
                state=double
                have=1
                ;;
            "\\")
                if ((i + 1 < n)); then
                    i=$((i + 1))
                    c=${s:i:1}
                    # backslash-newline joins lines, as in a shell
                    [[ $c == $'\n' ]] || word+=$c
                else
                    word+="\\"
                fi
                have=1
                ;;
            *)
                word+=$c
                have=1
                ;;
            esac
            ;;
        single)
            if [[ $c == "'" ]]; then
                state=plain
            else
                word+=$c
            fi
            ;;
        double)
            case $c in
            '"')
                state=plain
                ;;
            "\\")
                local next=""
                ((i + 1 < n)) && next=${s:i+1:1}
                case $next in
                '$' | '`' | '"' | "\\")
                    word+=$next
                    i=$((i + 1))
                    ;;
                $'\n')
                    i=$((i + 1))
                    ;;
                *)
                    word+="\\"
                    ;;
                esac
                ;;
            *)
                word+=$c
                ;;
            esac
            ;;
        esac
        i=$((i + 1))
    done
    if [[ $state != plain ]]; then
        local q="'"
        [[ $state == double ]] && q='"'
        echo "$PROG: unbalanced $q quote in the arguments" >&2
        return 1
    fi
    if ((have)); then
        WORDS+=("$word")
    fi
    return 0
}

# Options of flowloom-backup (global and per command) that take a value.
takes_value() {
    case $1 in
    -C | --root | --session | --type | --note | --wait | -t | --target | --keep-full | \
        --max-age | --min-keep | -p | --path)
        return 0
        ;;
    esac
    return 1
}

find_tool() {
    if command -v flowloom-backup >/dev/null 2>&1; then
        command -v flowloom-backup
        return 0
    fi
    local self repo build
    self=$(readlink -f -- "${BASH_SOURCE[0]}") || return 1
    repo=$(dirname -- "$(dirname -- "$self")")
    build=${FB_BUILD_DIR:-$repo/build}
    case $build in /*) ;; *) build=$repo/$build ;; esac
    if [[ -x $build/cli/flowloom-backup ]]; then
        echo "$build/cli/flowloom-backup"
        return 0
    fi
    echo "$PROG: flowloom-backup is neither on PATH nor built in $build/cli" \
        "(build it with: meson setup build && ninja -C build)" >&2
    return 1
}

from_stdin=0
if [[ ${1-} == --stdin ]]; then
    from_stdin=1
    shift
fi
if [[ $# -lt 1 ]]; then
    usage >&2
    exit 2
fi
command=$1
shift
case $command in
-h | --help | help)
    usage
    exit 0
    ;;
backup) tool_command=backup ;;
recover) tool_command=recover ;;
list-backups) tool_command=list ;;
cleanup) tool_command=cleanup ;;
words) tool_command="" ;;
*)
    echo "$PROG: unknown command '$command' (backup, recover, list-backups or cleanup)" >&2
    usage >&2
    exit 2
    ;;
esac

if ((from_stdin)); then
    if [[ $# -gt 0 ]]; then
        echo "$PROG: with --stdin the arguments come from standard input only" >&2
        exit 2
    fi
    # All of stdin; a here-document's final newline is not part of it.
    arguments=$(cat; printf x)
    arguments=${arguments%x}
    arguments=${arguments%$'\n'}
elif [[ $# -gt 1 ]]; then
    echo "$PROG: expected the arguments as ONE string, e.g." \
        "$PROG $command 'current full \"Major milestone\"'" >&2
    exit 2
else
    arguments=${1-}
fi

split_words "$arguments" || exit 2

if [[ $command == words ]]; then
    if ((${#WORDS[@]})); then
        printf '%s\0' "${WORDS[@]}"
    fi
    exit 0
fi

options=()
positionals=()
only_positionals=0
i=0
while ((i < ${#WORDS[@]})); do
    w=${WORDS[i]}
    if ((only_positionals)); then
        positionals+=("$w")
    elif [[ $w == -- ]]; then
        only_positionals=1
    elif [[ $w =~ ^--[A-Za-z][A-Za-z0-9-]*(=.*)?$ || $w =~ ^-[A-Za-z]$ ]]; then
        options+=("$w")
        if [[ $w != *=* ]] && takes_value "$w" && ((i + 1 < ${#WORDS[@]})); then
            i=$((i + 1))
            options+=("${WORDS[i]}")
        fi
    else
        positionals+=("$w")
    fi
    i=$((i + 1))
done

tool=$(find_tool) || exit 5
exec "$tool" "$tool_command" "${options[@]}" -- "${positionals[@]}"
