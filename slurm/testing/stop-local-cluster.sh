#!/usr/bin/env bash
# Stop the one-node SLURM started by start-local-cluster.sh: ends only the daemons it started, by pid file
# (slurmd, slurmctld, and munged when it started it). State and logs stay in $SUITE_SLURM_DIR.
#   --keep-munge   leave munged running (used by the start script when the config changed)
set -uo pipefail

DIR="${SUITE_SLURM_DIR:-/tmp/suite-slurm}"
keep_munge=0
[[ ${1:-} == --keep-munge ]] && keep_munge=1

stop_pid_file() {  # name pidfile
    local name=$1 file=$2 pid
    [[ -s $file ]] || return 0
    pid="$(cat "$file")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "stop-local-cluster: $name (pid $pid) did not stop in 10 s: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "stop-local-cluster: stopped $name (pid $pid)" >&2
    fi
    rm -f "$file"
}

stop_pid_file slurmd "$DIR/slurmd.pid"
stop_pid_file slurmctld "$DIR/slurmctld.pid"
((keep_munge)) || stop_pid_file munged "$DIR/munged.pid"
[[ -f $DIR/start.status ]] && echo stopped >"$DIR/start.status"
exit 0
