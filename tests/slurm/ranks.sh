# Sourced by the SLURM tests. A tiny run finishes in seconds, so a signal sent to the job "while it
# runs" could land after its last step on a fast machine and test nothing. Instead the test freezes
# the ranks (SIGSTOP) at the event it waits for, sends the signal through SLURM, waits until the
# signal is pending in every rank, and only then lets them go on (SIGCONT): the ranks meet the
# signal mid-run whatever the machine's speed or load.

# ranks_pids EXE OUT_DIR: pids of the `EXE train` processes whose run.out_dir is OUT_DIR (none: empty).
ranks_pids() {
    pgrep -f "^$1 train .*run\.out_dir=$2( |\$)" || true
}

# _rank_state PID: the one-letter process state (T = stopped), empty once it is gone.
_rank_state() {
    sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null
}

# ranks_stop PID...: stop the ranks; return once each is stopped or gone (1 after 300 s).
ranks_stop() {
    kill -STOP "$@" 2>/dev/null
    local p deadline=$((SECONDS + 300)) st
    for p; do
        while st=$(_rank_state "$p") && [[ -n $st && $st != T ]]; do
            ((SECONDS < deadline)) || return 1
            sleep 0.05
        done
    done
}

# ranks_cont_on SIGNUM PID...: wait until signal SIGNUM is pending in each stopped rank, or the rank
# runs again (SLURM sends SIGCONT before it terminates a job) or is gone; then SIGCONT them all.
# Returns 1 when that has not happened within 300 s.
ranks_cont_on() {
    local bit=$((1 << ($1 - 1))) p st pnd deadline=$((SECONDS + 300))
    shift
    for p; do
        while st=$(_rank_state "$p") && [[ $st == T ]]; do
            # Pending signals: ShdPnd for the process, SigPnd for its main thread (hex masks).
            pnd=$(sed -n 's/^\(ShdPnd\|SigPnd\):[[:space:]]*/0x/p' "/proc/$p/status" 2>/dev/null |
                  paste -sd'|')
            [[ -n $pnd ]] && (((pnd) & bit)) && break
            ((SECONDS < deadline)) || { kill -CONT "$@" 2>/dev/null; return 1; }
            sleep 0.05
        done
    done
    kill -CONT "$@" 2>/dev/null
    return 0
}
