#!/usr/bin/env bash
# Start a real one-node SLURM cluster on this machine (for the `slurm` tests, or to try `suite slurm` on a
# workstation). Debian/Ubuntu, as root, no systemd needed. Idempotent: a second call only checks the node.
#
#   slurm/testing/start-local-cluster.sh          # installs slurmctld slurmd slurm-client munge if missing
#   slurm/testing/stop-local-cluster.sh           # ends only the daemons this script started (pid files)
#
# Environment: SUITE_SLURM_DIR (state, logs, pid files, config; default /tmp/suite-slurm),
#              SUITE_SLURM_WAIT_S (how long to wait for the node to become idle; default 60).
# Writes $SUITE_SLURM_DIR/start.status: "starting", then "ready" or "failed: <reason>" (tests read it).
# A minimal one-node config: proctrack/linuxproc, task/none, no accounting,
# jobcomp/filetxt (a completion log that stands in for sacct), cons_tres with a default memory per CPU so jobs
# share the node, fast scheduling, cred_expire=5 so that requeued jobs restart in seconds.
set -euo pipefail

DIR="${SUITE_SLURM_DIR:-/tmp/suite-slurm}"
WAIT_S="${SUITE_SLURM_WAIT_S:-60}"
HOST="$(hostname -s)"
CONF="$DIR/slurm.conf"
ETC_CONF=/etc/slurm/slurm.conf
MARK="# written by suite slurm/testing/start-local-cluster.sh"

log() { echo "start-local-cluster: $*" >&2; }
fail() {
    log "error: $*"
    mkdir -p "$DIR" 2>/dev/null && echo "failed: $*" >"$DIR/start.status" 2>/dev/null || true
    exit 1
}
alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

[[ $(id -u) -eq 0 ]] || fail "must run as root (it installs packages and starts munged/slurmctld/slurmd)"
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
echo starting >"$DIR/start.status"

# ---------------------------------------------------------------- packages (only when missing)
need=()
for pair in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if ((${#need[@]})); then
    command -v apt-get >/dev/null || fail "missing ${need[*]} and no apt-get (Debian/Ubuntu only); install them by hand"
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { apt-get install -y -q --no-install-recommends "${need[@]}" >"$DIR/log/apt.log" 2>&1; }
    if ! apt_install; then
        log "apt-get install failed; running apt-get update first"
        apt-get update -q >>"$DIR/log/apt.log" 2>&1 || fail "apt-get update failed (see $DIR/log/apt.log)"
        apt_install || fail "apt-get install ${need[*]} failed (see $DIR/log/apt.log)"
    fi
fi

# ---------------------------------------------------------------- munge
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key --force
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running"
else
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged --pid-file="/run/munge/munged.pid" >>"$DIR/log/munged.out" 2>&1 \
        || fail "munged did not start (see $DIR/log/munged.out, /var/log/munge/munged.log)"
    cp /run/munge/munged.pid "$DIR/munged.pid"  # ours: the stop script ends it
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null 2>&1 || fail "munge does not answer (see /var/log/munge/munged.log)"
fi

# ---------------------------------------------------------------- config
cpus="$(nproc)"
mem_mb=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 1024 ))
((mem_mb > 512)) || mem_mb=512
cat >"$CONF.tmp" <<CONFEOF
$MARK
ClusterName=localcluster
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=5
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=2,sched_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$(( mem_mb / cpus < 2048 ? mem_mb / cpus : 2048 ))
MinJobAge=86400
ReturnToService=2
KillWait=5
SlurmdParameters=config_overrides
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONFEOF
changed=1
if [[ -f "$CONF" ]] && cmp -s "$CONF" "$CONF.tmp"; then changed=0; fi
mv "$CONF.tmp" "$CONF"
export SLURM_CONF="$CONF"
# client commands (sinfo, sbatch, submitit) read /etc/slurm/slurm.conf: point it at ours unless another exists
mkdir -p /etc/slurm
if [[ -L $ETC_CONF || ! -e $ETC_CONF ]] || grep -qF "$MARK" "$ETC_CONF"; then
    ln -sfn "$CONF" "$ETC_CONF"
else
    log "warning: $ETC_CONF exists and is not ours; use SLURM_CONF=$CONF for client commands"
fi

# ---------------------------------------------------------------- daemons
if ((changed)) && { alive "$DIR/slurmctld.pid" || alive "$DIR/slurmd.pid"; }; then
    log "config changed: restarting our daemons"
    "$(dirname "$0")/stop-local-cluster.sh" --keep-munge
    export SLURM_CONF="$CONF"
fi
if alive "$DIR/slurmctld.pid"; then
    log "slurmctld already running (pid $(cat "$DIR/slurmctld.pid"))"
else
    slurmctld -f "$CONF" >>"$DIR/log/slurmctld.out" 2>&1 || fail "slurmctld did not start (see $DIR/log/slurmctld.log)"
fi
if alive "$DIR/slurmd.pid"; then
    log "slurmd already running (pid $(cat "$DIR/slurmd.pid"))"
else
    slurmd -f "$CONF" -N "$HOST" >>"$DIR/log/slurmd.out" 2>&1 || fail "slurmd did not start (see $DIR/log/slurmd.log)"
fi

# ---------------------------------------------------------------- wait for the node
deadline=$((SECONDS + WAIT_S))
state=""
while ((SECONDS < deadline)); do
    state="$(sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -1 || true)"
    case "$state" in
        idle|mix|mixed|alloc|allocated) break ;;
        down*|drain*|drng*|fail*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
case "$state" in
    idle|mix|mixed|alloc|allocated) ;;
    *) fail "node $HOST not idle after ${WAIT_S}s (state '${state:-none}'; see $DIR/log/slurmctld.log and slurmd.log)" ;;
esac
echo ready >"$DIR/start.status"
log "ready: node $HOST is $state (config $CONF, logs $DIR/log)"
