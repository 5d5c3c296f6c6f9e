#!/usr/bin/env bash
# mswitch against Open vSwitch with DPDK on vhost-user ports, in one run, on
# the loop topology of issue 6:
#
#   dpdk-testpmd (io forwarding, two virtio-user ports, `start tx_first N`)
#        port 0 ==vhost-user== [switch under test] ==vhost-user== port 1
#
# testpmd forwards what arrives on port 0 out of port 1 and back, so a fixed
# population of packets circulates through the switch (both directions) and
# the switch is the bottleneck. Two busy threads on two cores, pinned the same
# way for both switches: testpmd's forwarding lcore on CPU 0, the switch's
# forwarding thread (OVS's PMD, mswitch's worker) on CPU 1.
#
# Setups: ovs-dpdk (ovs-vswitchd-dpdk 3.1, its own ovsdb-server and run
# directory, userspace datapath, dpdkvhostuserclient ports, flows
# in_port=1,actions=output:2 and the reverse), msv (`mswitch vswitchd` in
# place of ovs-vswitchd-dpdk: the same ovsdb-server, the same ovs-vsctl and
# ovs-ofctl commands, word for word), ovs-dpdk-normal and msv-normal (the
# same two with the bridge as `add-br` leaves it: one `actions=NORMAL`
# flow; testpmd then forwards in `mac` mode, so that each port's frames
# carry its own source address and the bridges learn them), ms-dummy, ms-learn,
# ms-flow (mswitch run --module flow:l2=2: eth_dst exact-match entries; the
# frames carry the other port's MAC). All switches connect to testpmd
# (virtio-user server=1) as vhost-user clients. Frames of 64 and 1518 bytes,
# 1 or 256 flows (testpmd --txonly-multi-flow: 256 source addresses).
#
# Each measurement first waits (up to QUIET_WAIT=20 s) for an idle second,
# and records the CPU used by other processes during its window; medians
# are over the runs with less than NOISY=10 % of a core of such load.
# Reported: packets/s through the switch (testpmd's RX counters, both ports,
# over a window of D seconds after a 1 s warm-up), the ratio to ovs-dpdk (of
# the medians, and the median of each run's own ratio), and
# the switch thread's cycles per packet: its CPU time in the window (from
# /proc/PID/task/TID/stat) times the nominal clock, over the packets.
#
# Then a fixed-load phase (issue 6: the CPU each switch uses at a load
# below both maxima): two `mswitch pkt-gen` processes as the frontends, in
# virtio-user server mode, both on CPU 0,
#
#   pkt-gen -f tx -R RATE -l 64  virtio-user:p0  == [switch] ==  virtio-user:p1  pkt-gen -f rx
#
# the switch connecting to both exactly as above (its forwarding thread on
# CPU 1), but mswitch runs WITHOUT --busy-poll, so it may nap and sleep.
# Over a window of D seconds after a 1 s warm-up: the switch process's CPU
# (all its threads, from /proc/PID/stat, in % of one core) and the rate
# delivered to the receiver in the same window (from its 250 ms reports);
# and the frames lost over the whole run (sent minus received).
#
# Usage: scripts/compare-vhost.sh [SECONDS]   (default 3; needs root)
# Environment: RUNS=N rounds (medians reported; default 1); SETUPS="..."
# subset (empty: only the fixed-load phase); POP=N bursts of 32 packets
# per port for tx_first (default 1, as plain `start tx_first`);
# HUGE_PMD=1 gives testpmd 2 MiB hugepages (--single-file-segments) instead
# of --no-huge; NO_BUILD=1 skips `cargo build --release`; MSWITCH=PATH
# runs another mswitch binary; PORT_OPTS=",ring=N" is appended to mswitch's
# vhost-user port specs. Fixed-load phase: RATE=PPS offered (default
# 1000000); CPU_SETUPS="..." (default SETUPS; empty skips the phase);
# GEN_OPTS=",ring=N" appended to the pkt-gens' virtio-user specs (default
# ",ring=4096": both pkt-gens share CPU 0, and when it stalls for a few ms
# the sender catches up with its rate in a burst that 1024 descriptors of
# the receiver's, 1 ms at 1 Mpps, often cannot hold); RX_BUSY=1 makes the
# receiver busy-poll (it then never asks the switch for calls).
# Hugepages (for ovs-vswitchd-dpdk) are raised and a private hugetlbfs
# mounted for the run, and both restored at exit.
set -eEuo pipefail
trap 'echo "$0: line $LINENO: \`$BASH_COMMAND\` failed" >&2' ERR
cd "$(dirname "$0")/.."
D=${1:-3}
case $D in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "$0: needs root (hugepages, namespaces)" >&2; exit 1; }
SETUPS=${SETUPS-"ovs-dpdk msv ovs-dpdk-normal msv-normal ms-dummy ms-learn ms-flow"}
RUNS=${RUNS:-1}
POP=${POP:-1}
OVSD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
if ! command -v dpdk-testpmd >/dev/null || [ ! -x $OVSD ]; then
    echo "# installing dpdk-dev and openvswitch-switch-dpdk" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        dpdk dpdk-dev openvswitch-switch-dpdk >&2
fi
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet -p mswitch
M=${MSWITCH:-$PWD/target/release/mswitch}
HZ=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1e6; exit}' /proc/cpuinfo)
TCK=$(getconf CLK_TCK)

ID=$$
DIR=$(mktemp -d /tmp/mswitch-vcmp.XXXXXX)
RES=$DIR/results.tsv
CPU_RES=$DIR/cpu.tsv
: >"$RES"
: >"$CPU_RES"
OLD_HP=$(cat /proc/sys/vm/nr_hugepages)
HUGE=$DIR/huge
OVSNS=msv-ovs-$ID
PIDS=()

stop_pids() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    PIDS=()
}

ovs_env() { env OVS_RUNDIR=$DIR/ovs OVS_DBDIR=$DIR/ovs OVS_LOGDIR=$DIR/ovs "$@"; }

ovs_stop() { # ovs-vswitchd-dpdk or mswitch vswitchd, and their ovsdb-server
    [ -d "$DIR/ovs" ] || return 0
    ovs_env timeout 10 ovs-appctl -t ovs-vswitchd-dpdk exit --cleanup >/dev/null 2>&1 || true
    ovs_env timeout 10 ovs-appctl -t ovs-vswitchd exit --cleanup >/dev/null 2>&1 || true
    ovs_env timeout 5 ovs-appctl -t ovsdb-server exit >/dev/null 2>&1 || true
    local f
    for f in "$DIR"/ovs/ovs-vswitchd-dpdk.pid "$DIR"/ovs/ovs-vswitchd.pid "$DIR"/ovs/ovsdb-server.pid; do
        [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
    done
    rm -rf "$DIR/ovs"
}

cleanup() {
    stop_pids
    ovs_stop
    ip netns del $OVSNS 2>/dev/null || true
    mountpoint -q "$HUGE" && umount "$HUGE"
    echo "$OLD_HP" >/proc/sys/vm/nr_hugepages
    rm -rf /var/run/dpdk/msv*$ID* "$DIR"
}
trap cleanup EXIT

mkdir -p "$HUGE"
if [ -n "${HUGE_PMD:-}" ]; then
    echo $((OLD_HP > 1100 ? OLD_HP : 1100)) >/proc/sys/vm/nr_hugepages
    mount -t hugetlbfs -o pagesize=2M none "$HUGE"
fi

# One testpmd: io forwarding between two virtio-user servers, driven over a
# fifo. Sets PMD_PID, PMD_IN (fd 3), PMD_OUT.
pmd_start() { # SIZE FLOWS
    local size=$1 flows=$2 multi=()
    [ "$flows" = 1 ] || multi=(--txonly-multi-flow)
    rm -f "$DIR"/p0.sock "$DIR"/p1.sock
    PMD_OUT=$DIR/testpmd.out
    rm -f "$DIR/pmd.in"
    mkfifo "$DIR/pmd.in"
    local mem=(--no-huge -m 1024)
    if [ -n "${HUGE_PMD:-}" ]; then
        rm -f "$HUGE"/msv-pmd-*
        mem=(-m 1024 --huge-dir="$HUGE" --single-file-segments)
    fi
    # FWD: io (forward as received) or mac (the port's own source address
    # and its peer's destination: what a learning bridge wants to see).
    stdbuf -o0 dpdk-testpmd "${mem[@]}" --no-pci -l 0,1 --main-lcore 1 --file-prefix=msv-pmd-$ID \
        --vdev=net_virtio_user0,path=$DIR/p0.sock,server=1,queues=1,queue_size=1024,mac=02:00:00:00:00:01 \
        --vdev=net_virtio_user1,path=$DIR/p1.sock,server=1,queues=1,queue_size=1024,mac=02:00:00:00:00:02 \
        -- -i --total-num-mbufs=16384 --forward-mode="${FWD:-io}" --txpkts="$size" "${multi[@]}" \
        --eth-peer=0,02:00:00:00:00:02 --eth-peer=1,02:00:00:00:00:01 \
        --rxd=1024 --txd=1024 <"$DIR/pmd.in" >"$PMD_OUT" 2>&1 &
    PMD_PID=$!
    PIDS+=("$PMD_PID")
    exec 3>"$DIR/pmd.in"
}

pmd_cmd() { echo "$*" >&3; }

pmd_wait_prompt() { # COUNT: wait until the output has COUNT prompts
    for _ in $(seq 300); do
        [ "$(grep -ao 'testpmd> ' "$PMD_OUT" | wc -l)" -ge "$1" ] && return 0
        kill -0 "$PMD_PID" 2>/dev/null || { cat "$PMD_OUT" >&2; return 1; }
        sleep 0.1
    done
    echo "testpmd did not answer" >&2
    tail -20 "$PMD_OUT" >&2
    return 1
}

# RX packets of both ports, summed, from the last `show port stats all`.
pmd_rx() {
    awk '/NIC statistics for port/ {blk++} /RX-packets:/ {rx[blk]=$2} END {print rx[blk-1] + rx[blk]}' "$PMD_OUT"
}

# Machine-wide busy ticks (user, nice, system, irq, softirq, steal).
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }

proc_ticks() { # PID: utime + stime of the whole process
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# Waits (at most QUIET_WAIT s) until the machine, the switch under test
# (which may busy-poll) aside, is idle for a second: another engineer's
# build makes every figure noise.
wait_quiet() {
    local a b sa sb
    for _ in $(seq "${QUIET_WAIT:-20}"); do
        a=$(busy_ticks) sa=$(proc_ticks "$SW_PID")
        sleep 1
        b=$(busy_ticks) sb=$(proc_ticks "$SW_PID")
        [ $(((b - a - (sb - sa)) * 100 / TCK)) -lt 15 ] && return 0
    done
    echo "# machine still busy; measuring anyway" >&2
}

cpu_ticks() { # PID TID
    awk '{print $14 + $15}' "/proc/$1/task/$2/stat"
}

thread_of() { # PID NAME-PREFIX
    local t
    for t in /proc/"$1"/task/*; do
        case "$(cat "$t/comm")" in "$2"*) basename "$t"; return 0 ;; esac
    done
    return 1
}

# Runs one measurement against the switch already connected-to-be. Needs
# SW_PID and SW_THREAD (a comm prefix). Appends a result line.
measure() { # SETUP SIZE FLOWS RUN
    local setup=$1 size=$2 flows=$3 run=$4
    wait_quiet
    pmd_start "$size" "$flows"
    local prompts=1
    pmd_wait_prompt $prompts || { echo "$setup: testpmd failed to start" >&2; return 1; }
    # Wait until the switch has connected both ports (links up).
    sleep 1.5
    pmd_cmd "start tx_first $POP"; prompts=$((prompts + 1))
    sleep 1
    local tid
    tid=$(thread_of "$SW_PID" "$SW_THREAD") || { echo "$setup: no thread $SW_THREAD" >&2; return 1; }
    pmd_cmd "show port stats all"; prompts=$((prompts + 1))
    pmd_wait_prompt $prompts
    local t0 c0 r0 t1 c1 r1
    t0=$(date +%s.%N) c0=$(cpu_ticks "$SW_PID" "$tid") r0=$(pmd_rx)
    local b0 o0
    b0=$(busy_ticks) o0=$(($(proc_ticks "$SW_PID") + $(proc_ticks "$PMD_PID")))
    sleep "$D"
    pmd_cmd "show port stats all"; prompts=$((prompts + 1))
    pmd_wait_prompt $prompts
    t1=$(date +%s.%N) c1=$(cpu_ticks "$SW_PID" "$tid") r1=$(pmd_rx)
    local b1 o1 noise
    b1=$(busy_ticks) o1=$(($(proc_ticks "$SW_PID") + $(proc_ticks "$PMD_PID")))
    # CPU used by everything else during the window, in % of one core.
    noise=$(awk -v b="$((b1 - b0))" -v o="$((o1 - o0))" -v s="$t0" -v e="$t1" -v t="$TCK" \
        'BEGIN {n = (b - o) / t / (e - s) * 100; printf "%.0f", n < 0 ? 0 : n}')
    pmd_cmd "stop"
    pmd_cmd "quit"
    exec 3>&-
    for _ in $(seq 100); do kill -0 "$PMD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PMD_PID" 2>/dev/null || true
    wait "$PMD_PID" 2>/dev/null || true
    local pps cyc
    pps=$(awk -v a="$r0" -v b="$r1" -v s="$t0" -v e="$t1" 'BEGIN {printf "%.0f", (b - a) / (e - s)}')
    cyc=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v t="$TCK" -v pa="$r0" -v pb="$r1" \
        'BEGIN {p = pb - pa; if (p > 0) printf "%.0f", (b - a) / t * hz / p; else print "nan"}')
    if [ "$pps" = 0 ]; then
        echo "$setup: no packets went round; testpmd said:" >&2
        grep -av '^\s*$' "$PMD_OUT" | tail -30 >&2
        tail -5 "$DIR/ms.log" >&2 2>/dev/null || true
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$setup" "$size" "$flows" "$run" "$pps" "$cyc" "$noise" >>"$RES"
    printf '%-9s %5s B %4s flows run %s: %7.2f Mpps  %s cycles/packet  (other load %s%%)\n' \
        "$setup" "$size" "$flows" "$run" "$(awk -v p="$pps" 'BEGIN {print p / 1e6}')" "$cyc" "$noise" >&2
}

# The database half of an Open vSwitch set-up, for either daemon.
db_setup() {
    mkdir -p "$DIR/ovs"
    ovs_env ovsdb-tool create "$DIR/ovs/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    ovs_env ovsdb-server "$DIR/ovs/conf.db" --remote=punix:"$DIR/ovs/db.sock" \
        --pidfile --detach --log-file
    VSCTL=(ovs_env ovs-vsctl --db=unix:"$DIR/ovs/db.sock" --no-wait)
    "${VSCTL[@]}" init
    # The forwarding thread on CPU 1 (Open vSwitch's PMD; mswitch's
    # busy-polling worker).
    "${VSCTL[@]}" set Open_vSwitch . other_config:pmd-cpu-mask=0x2
    ip netns add $OVSNS
}

# The bridge, as an Open vSwitch user makes it: the same commands for
# ovs-vswitchd-dpdk and for mswitch vswitchd. With `normal`, the flows are
# the one NORMAL flow of add-br; without, two explicit flows.
bridge_setup() { # [normal]
    # (ovs-vsctl waits for the daemon here: cur_cfg catches up.)
    ovs_env ovs-vsctl --db=unix:"$DIR/ovs/db.sock" --timeout=30 add-br br0 -- set bridge br0 datapath_type=netdev
    for i in 0 1; do
        "${VSCTL[@]}" add-port br0 vhu$i -- set Interface vhu$i type=dpdkvhostuserclient \
            options:vhost-server-path="$DIR/p$i.sock" ofport_request=$((i + 1))
    done
    if [ "${1:-}" = normal ]; then
        ovs_env ovs-ofctl dump-flows br0 | grep -q 'actions=NORMAL' || { echo "no NORMAL flow on br0" >&2; return 1; }
    else
        ovs_env ovs-ofctl del-flows br0
        ovs_env ovs-ofctl add-flow br0 in_port=1,actions=output:2
        ovs_env ovs-ofctl add-flow br0 in_port=2,actions=output:1
    fi
}

ovs_setup() { # [normal]
    [ -n "${HUGE_PMD:-}" ] || echo $((OLD_HP > 600 ? OLD_HP : 600)) >/proc/sys/vm/nr_hugepages
    mountpoint -q "$HUGE" || mount -t hugetlbfs -o pagesize=2M none "$HUGE"
    db_setup
    "${VSCTL[@]}" set Open_vSwitch . other_config:dpdk-init=true \
        other_config:dpdk-socket-mem=1024 \
        other_config:dpdk-extra="--huge-dir=$HUGE --no-pci --file-prefix=msv-ovs-$ID"
    # (The DPDK build names its pidfile and control socket ovs-vswitchd-dpdk.)
    ovs_env ip netns exec $OVSNS $OVSD unix:"$DIR/ovs/db.sock" --pidfile --detach \
        --log-file -vconsole:off
    SW_PID=$(cat "$DIR/ovs/ovs-vswitchd-dpdk.pid")
    SW_THREAD=pmd
    bridge_setup "$@"
}

# mswitch vswitchd where ovs-vswitchd-dpdk was (pmd-cpu-mask pins its
# worker as it pins Open vSwitch's PMD).
msv_setup() { # [normal]
    db_setup
    ovs_env ip netns exec $OVSNS "$M" vswitchd unix:"$DIR/ovs/db.sock" --pidfile --detach \
        --log-file -vconsole:off
    SW_PID=$(cat "$DIR/ovs/ovs-vswitchd.pid")
    SW_THREAD=br0-w
    bridge_setup "$@"
}

ms_setup() { # MODULE [--busy-poll]
    taskset -c 1 "$M" run ${2:-} --module "$1" --ctl "$DIR/ms.sock" \
        --port "vhost-user:$DIR/p0.sock,client,name=vm1${PORT_OPTS:-}" \
        --port "vhost-user:$DIR/p1.sock,client,name=vm2${PORT_OPTS:-}" 2>"$DIR/ms.log" &
    SW_PID=$!
    PIDS+=("$SW_PID")
    SW_THREAD=sw0-w
    sleep 0.5
}

RATE=${RATE:-1000000}
case $RATE in '' | *[!0-9]*) echo "RATE must be packets/s" >&2; exit 2 ;; esac
CPU_SETUPS=${CPU_SETUPS-$SETUPS}
GEN_OPTS=${GEN_OPTS-,ring=4096}

# Waits (at most 30 s) until pkt-gen's log FILE says its backend came.
gen_linked() { # FILE
    for _ in $(seq 300); do
        grep -q 'peer connected' "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "no switch connected to pkt-gen ($1):" >&2
    cat "$1" >&2
    return 1
}

# Copies lines from stdin to FILE, each prefixed with its arrival time.
stamp() { # FILE
    local l
    while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done >"$1"
}

# One fixed-load measurement: the switch starts (its ports connecting as
# clients), then the receiver listens, and once the switch is connected to
# it the sender, which runs at RATE for the warm-up, the window and a
# second more. Appends a line to CPU_RES.
cpu_measure() { # SETUP RUN
    local setup=$1 run=$2
    SW_PID=0 wait_quiet
    rm -f "$DIR"/p0.sock "$DIR"/p1.sock "$DIR"/gen-*
    FWD=io
    case $setup in
    ovs-dpdk) ovs_setup ;;
    msv) msv_setup ;;
    ovs-dpdk-normal) FWD=mac; ovs_setup normal ;;
    msv-normal) FWD=mac; msv_setup normal ;;
    ms-dummy) ms_setup dummy ;;
    ms-learn) ms_setup learn ;;
    ms-flow) ms_setup flow:l2=2 ;;
    *) echo "unknown setup $setup" >&2; exit 2 ;;
    esac
    local busy=()
    [ -z "${RX_BUSY:-}" ] || busy=(--busy-poll)
    # The receiver reports every 250 ms (on stderr, with --json): the rate
    # in the window is taken from the reports that arrived in it.
    taskset -c 0 "$M" pkt-gen -i "virtio-user:$DIR/p1.sock,server,name=gen-rx$GEN_OPTS" \
        -f rx -T 250 --json "${busy[@]}" >"$DIR/gen-rx.json" 2> >(stamp "$DIR/gen-rx.log") &
    local rxp=$!
    PIDS+=("$rxp")
    gen_linked "$DIR/gen-rx.log"
    taskset -c 0 "$M" pkt-gen -i "virtio-user:$DIR/p0.sock,server,name=gen-tx$GEN_OPTS" \
        -f tx -R "$RATE" -l 64 -D $((D + 2)) -T 0 --json \
        --src-mac 02:00:00:00:00:01 --dst-mac 02:00:00:00:00:02 >"$DIR/gen-tx.json" 2>"$DIR/gen-tx.log" &
    local txp=$!
    PIDS+=("$txp")
    gen_linked "$DIR/gen-tx.log"
    sleep 1
    local t0 c0 b0 o0 t1 c1 b1 o1
    t0=$EPOCHREALTIME c0=$(proc_ticks "$SW_PID")
    b0=$(busy_ticks) o0=$(($(proc_ticks "$SW_PID") + $(proc_ticks "$rxp") + $(proc_ticks "$txp")))
    sleep "$D"
    t1=$EPOCHREALTIME c1=$(proc_ticks "$SW_PID")
    b1=$(busy_ticks) o1=$(($(proc_ticks "$SW_PID") + $(proc_ticks "$rxp") + $(proc_ticks "$txp")))
    # The sender stops by itself; the receiver when told, once the
    # switch's rings have drained.
    for _ in $(seq 100); do kill -0 "$txp" 2>/dev/null || break; sleep 0.1; done
    sleep 0.3
    kill -INT "$rxp" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$rxp" 2>/dev/null || break; sleep 0.1; done
    wait "$txp" "$rxp" 2>/dev/null || true
    case $setup in ovs-dpdk* | msv*)
        ovs_stop
        ip netns del $OVSNS
    esac
    stop_pids
    local sent got pps cpu noise
    sent=$(sed -n 's/.*"packets":\([0-9]*\).*/\1/p' "$DIR/gen-tx.json")
    got=$(sed -n 's/.*"packets":\([0-9]*\).*/\1/p' "$DIR/gen-rx.json")
    # Reports that arrived in the window cover it (each the 250 ms before).
    pps=$(awk -v s="$t0" -v e="$t1" '$3 == "Mpps" && $1 > s + 0.25 && $1 <= e + 0.05 {t += $2; n++}
        END {if (n) printf "%.0f", t / n * 1e6}' "$DIR/gen-rx.log")
    if [ -z "$sent" ] || [ -z "$got" ] || [ -z "$pps" ]; then
        echo "$setup: no pkt-gen summary:" >&2
        cat "$DIR"/gen-*.log "$DIR"/gen-*.json >&2
        tail -5 "$DIR/ms.log" >&2 2>/dev/null || true
        return 1
    fi
    cpu=$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v t="$TCK" \
        'BEGIN {printf "%.1f", (b - a) / t / (e - s) * 100}')
    noise=$(awk -v b="$((b1 - b0))" -v o="$((o1 - o0))" -v s="$t0" -v e="$t1" -v t="$TCK" \
        'BEGIN {n = (b - o) / t / (e - s) * 100; printf "%.0f", n < 0 ? 0 : n}')
    printf '%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\n' "$setup" "$run" "$sent" "$got" "$pps" "$cpu" "$noise" \
        "$((sent - got))" >>"$CPU_RES"
    printf '%-9s fixed %s pps run %s: delivered %.3f Mpps, %s of %s lost, switch CPU %s%% of a core  (other load %s%%)\n' \
        "$setup" "$RATE" "$run" "$(awk -v p="$pps" 'BEGIN {print p / 1e6}')" "$((sent - got))" "$sent" "$cpu" "$noise" >&2
}

for run in $(seq "$RUNS"); do
    for setup in $SETUPS; do
        FWD=io
        case $setup in
        ovs-dpdk) ovs_setup ;;
        msv) msv_setup ;;
        ovs-dpdk-normal) FWD=mac; ovs_setup normal ;;
        msv-normal) FWD=mac; msv_setup normal ;;
        ms-dummy) ms_setup dummy --busy-poll ;;
        ms-learn) ms_setup learn --busy-poll ;;
        ms-flow) ms_setup flow:l2=2 --busy-poll ;;
        *) echo "unknown setup $setup" >&2; exit 2 ;;
        esac
        for size in 64 1518; do
            for flows in 1 256; do
                measure "$setup" $size $flows "$run"
            done
        done
        case $setup in
        ovs-dpdk* | msv*)
            ovs_stop
            ip netns del $OVSNS
            ;;
        *) stop_pids ;;
        esac
    done
done

# Medians, ratios to ovs-dpdk.
median() { sort -n | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# Medians over the runs whose window saw less than NOISY % of a core used
# by other processes, or over all runs if none did.
NOISY=${NOISY:-10}
med_of() { # SETUP SIZE FLOWS COLUMN
    local quiet
    quiet=$(awk -F'\t' -v s="$1" -v z="$2" -v f="$3" -v n="$NOISY" '$1 == s && $2 == z && $3 == f && $7 < n' "$RES" | wc -l)
    awk -F'\t' -v s="$1" -v z="$2" -v f="$3" -v c="$4" -v n="$NOISY" -v q="$quiet" \
        '$1 == s && $2 == z && $3 == f && (q == 0 || $7 < n) {print $c}' "$RES" | median
}
# The median over runs of each run's own ratio (this setup's rate over
# ovs-dpdk's in the same run, minutes apart): steadier than the ratio of
# medians when the machine's speed drifts between runs.
# The baseline of a setup: ovs-dpdk-normal for the NORMAL ones, else ovs-dpdk.
base_of() { case $1 in *-normal) echo ovs-dpdk-normal ;; *) echo ovs-dpdk ;; esac; }
ratio_of() { # SETUP SIZE FLOWS
    awk -F'\t' -v s="$1" -v z="$2" -v f="$3" -v base="$(base_of "$1")" '
        $2 == z && $3 == f && $1 == base {b[$4] = $5}
        $2 == z && $3 == f && $1 == s {p[$4] = $5}
        END {for (r in p) if (b[r] > 0) print p[r] / b[r]}' "$RES" | median
}
[ -z "$SETUPS" ] || {
echo
echo "median of $RUNS run(s), ${D} s windows, $((POP * 32)) packets per port in flight; clock $((HZ / 1000000)) MHz"
printf '| setup | frame B | flows | Mpps | vs ovs-dpdk (-normal) | per-run ratio | cycles/packet | other load %% |\n|---|---|---|---|---|---|---|---|\n'
for setup in $SETUPS; do
    for size in 64 1518; do
        for flows in 1 256; do
            p=$(med_of "$setup" $size $flows 5)
            c=$(med_of "$setup" $size $flows 6)
            o=$(med_of "$setup" $size $flows 7)
            b=$(med_of "$(base_of "$setup")" $size $flows 5)
            rr=$(ratio_of "$setup" $size $flows)
            awk -v s="$setup" -v z=$size -v f=$flows -v p="$p" -v b="$b" -v c="$c" -v o="$o" -v rr="$rr" 'BEGIN {
                r = (b != "" && b > 0) ? sprintf("%.2f", p / b) : "-"
                rr = (rr != "" && rr > 0) ? sprintf("%.2f", rr) : "-"
                printf "| %s | %s | %s | %.2f | %s | %s | %.0f | %.0f |\n", s, z, f, p / 1e6, r, rr, c, o
                printf "{\"setup\":\"%s\",\"size\":%s,\"flows\":%s,\"pps\":%d,\"cycles_per_packet\":%.0f}\n", s, z, f, p, c > "/dev/stderr"
            }'
        done
    done
done
}

[ -n "$CPU_SETUPS" ] || exit 0
echo >&2
echo "# fixed load: $RATE packets/s of 64 B frames, pkt-gen virtio-user -> switch -> pkt-gen" >&2
for run in $(seq "$RUNS"); do
    for setup in $CPU_SETUPS; do
        cpu_measure "$setup" "$run"
    done
done
cmed_of() { # SETUP COLUMN
    local quiet
    quiet=$(awk -F'\t' -v s="$1" -v n="$NOISY" '$1 == s && $7 < n' "$CPU_RES" | wc -l)
    awk -F'\t' -v s="$1" -v c="$2" -v n="$NOISY" -v q="$quiet" \
        '$1 == s && (q == 0 || $7 < n) {print $c}' "$CPU_RES" | median
}
echo
echo "fixed load: median of $RUNS run(s), ${D} s windows, $RATE packets/s of 64 B offered (mswitch without --busy-poll)"
printf '| setup | offered Mpps | delivered Mpps | lost (whole run) | switch CPU %% of a core | other load %% |\n|---|---|---|---|---|---|\n'
for setup in $CPU_SETUPS; do
    sent=$(cmed_of "$setup" 3)
    lost=$(cmed_of "$setup" 8)
    pps=$(cmed_of "$setup" 5)
    cpu=$(cmed_of "$setup" 6)
    o=$(cmed_of "$setup" 7)
    awk -v s="$setup" -v r="$RATE" -v p="$pps" -v c="$cpu" -v o="$o" -v sent="$sent" -v l="$lost" 'BEGIN {
        printf "| %s | %.3f | %.3f | %.0f of %.0f | %.1f | %.0f |\n", s, r / 1e6, p / 1e6, l, sent, c, o
        printf "{\"phase\":\"fixed_load\",\"setup\":\"%s\",\"offered_pps\":%d,\"pps\":%d,\"sent\":%d,\"lost\":%d,\"switch_cpu_pct\":%.1f}\n", s, r, p, sent, l, c > "/dev/stderr"
    }'
done
