# Shared by the bench/*.sh scripts (sourced, not run).

# Timings on a shared machine drift by tens of percent from one minute to
# the next, so the contenders of a table are run in turns (one run of each,
# N times over) and each keeps its best time: a slow minute then hurts all
# of them alike instead of whichever happened to run in it.
#
# bench_add LABEL PREP CMD...: registers a contender. PREP (a command, ":"
#   for none) runs untimed before each of its runs; output is dropped.
# bench_run N: runs them; then bench_best LABEL prints the best wall seconds.
bench_labels=()
declare -A bench_cmd bench_prep bench_t
bench_add() {
    local label=$1 prep=$2
    shift 2
    bench_labels+=("$label")
    bench_prep[$label]=$prep
    bench_cmd[$label]="$*"
}
bench_run() {
    local n=$1 label s e t
    for _ in $(seq "$n"); do
        for label in "${bench_labels[@]}"; do
            ${bench_prep[$label]}
            s=$(date +%s.%N)
            ${bench_cmd[$label]} >/dev/null 2>&1 ||
                { echo "bench: failed: ${bench_cmd[$label]}" >&2; exit 1; }
            e=$(date +%s.%N)
            t=$(awk -v s="$s" -v e="$e" 'BEGIN{printf "%.3f", e-s}')
            if [ -z "${bench_t[$label]:-}" ] ||
                awk -v t="$t" -v b="${bench_t[$label]}" 'BEGIN{exit !(t<b)}'; then
                bench_t[$label]=$t
            fi
        done
    done
}
bench_best() { echo "${bench_t[$1]}"; }

# mbps BYTES SECONDS
mbps() { awk -v b="$1" -v t="$2" 'BEGIN{printf "%.1f", b/1048576/t}'; }
# mib BYTES
mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b/1048576}'; }
# ratio A B: A/B as "1.23x"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2fx", a/b}'; }

# The machine's state, so a table can be read for what it is. The load
# average counts the benchmark's own threads too: read "before" for what
# else was running.
machine_line() {
    printf '%s cores, load average %s\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# abs_build DIR: DIR made absolute against the source tree ($here).
abs_build() { case $1 in /*) echo "$1" ;; *) echo "$here/$1" ;; esac; }
