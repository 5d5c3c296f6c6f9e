#!/usr/bin/env bash
# Switches with kernel interfaces, side by side, in one run on one topology:
#
#   GEN ns: eth0 ==veth== g<ID> [switch under test] s<ID> ==veth== eth0 :SINK ns
#   GEN ns: dir0 ==================veth=========================== dir0 :SINK ns
#
# The generator (`mswitch pkt-gen -f tx`) sends in the GEN namespace, the sink
# (`mswitch pkt-gen -f rx`, af_packet) counts what arrives in the SINK
# namespace. The switch-side ends g<ID>/s<ID> live in a switch namespace, and
# move to a namespace of their own for each Open vSwitch instance (its netdev
# datapath makes a tap `ovs-netdev` that must not meet another one). Setups:
#   direct        the generator straight into the sink over dir0 (the ceiling)
#   bridge        a Linux bridge joining g<ID> and s<ID>
#   ovs-afpacket  Open vSwitch userspace datapath (datapath_type=netdev),
#                 default (AF_PACKET) ports, flow in_port=1,actions=output:2
#   ovs-afxdp     the same with type=afxdp ports
#   msv-system    `mswitch vswitchd` in place of ovs-vswitchd: the same
#                 ovsdb-server, ovs-vsctl and ovs-ofctl commands as
#                 ovs-afpacket, word for word (default "system" ports, which
#                 mswitch opens as AF_XDP where it can, Open vSwitch as
#                 AF_PACKET)
#   msv-afxdp     the same as ovs-afxdp (type=afxdp) with mswitch vswitchd
#   ms-afxdp      mswitch run --module dummy --port af_xdp:g --port af_xdp:s
#   ms-afpacket   the same with af_packet ports
#   ms-flow-afxdp mswitch run --module flow with af_xdp ports, and the same
#                 flow as Open vSwitch (in_port=1,actions=output:2) installed
#                 with ovs-ofctl over its OpenFlow socket
# Each is measured with 64 B and 1500 B frames (with FCS; -l 60 / -l 1496)
# and 1 or 1000 flows (1000 source addresses), and reported in Mpps at the
# sink, as a ratio to ovs-afpacket and as a fraction of the direct ceiling.
# The generator is pkt-gen on af_packet:eth0 or af_xdp:eth0, whichever carries
# more over the direct pair in a 1 s probe (af_xdp that fell back to
# af_packet is reported as such).
#
# Then CPU at a fixed offered load below every maximum (0.15 Mpps, 64 B, 1
# flow), in % of one core: busy CPU of the machine (wall time x CPUs less
# /proc/stat's idle, iowait and steal), less the generator's and the sink's
# own process CPU (/proc/PID/stat utime+stime) and less what other user
# processes on the machine used (a build, say); the switch process's own CPU;
# and the busy CPU added over the direct pair at the same load. Samples are
# taken over 1 s windows; the window with the least CPU used by other
# processes is reported.
#
# Environment: RUNS=N repeats every setup N times in rounds (medians are
# reported; default 1); PIN=no leaves every process unpinned (default: switch
# processes on CPU 0, generator and sink on CPU 1); SETUPS="bridge ..." runs a
# subset (the direct pair always runs); MSWITCH_FLAGS="--busy-poll" adds
# flags to `mswitch run`; NO_BUILD=1 skips `cargo build`; MSWITCH=PATH runs
# another mswitch binary. NORMAL=1 compares the switches as bridges come out
# of the box: Open vSwitch keeps the `priority=0 actions=NORMAL` flow of
# `ovs-vsctl add-br`, and every mswitch setup is `run --module flow`, a
# standalone switch whose only flow is the same (ms-flow-afxdp is then
# ms-afxdp and is skipped). The destination MAC is never learned (the sink
# does not answer), so both switches flood each frame to their one other
# port.
# Prints a table and one JSON object per result (lines starting `{`).
set -eEuo pipefail
trap 'echo "$0: line $LINENO: \`$BASH_COMMAND\` failed" >&2' ERR
cd "$(dirname "$0")/.."
D=${1:-3}
case $D in '' | *[!0-9.]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "$0: needs root (namespaces, veths, XDP)" >&2; exit 1; }
SETUPS=${SETUPS:-"bridge ovs-afpacket ovs-afxdp msv-system msv-afxdp ms-afxdp ms-afpacket ms-flow-afxdp"}
RUNS=${RUNS:-1}
case $RUNS in '' | *[!0-9]* | 0) echo "RUNS must be a positive number" >&2; exit 2 ;; esac
CPU_PPS=150000
NOISY=10   # % of a core used by other processes that marks a measurement as noisy
NCPU=$(grep -c '^cpu[0-9]' /proc/stat)

if ! command -v ovs-vswitchd >/dev/null || ! command -v ethtool >/dev/null; then
    echo "# installing openvswitch-switch and ethtool" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openvswitch-switch ethtool >&2 ||
        echo "# could not install openvswitch-switch: Open vSwitch setups will be unavailable" >&2
fi
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet -p mswitch
M=${MSWITCH:-$PWD/target/release/mswitch}

ID=$$
GEN=msk-gen-$ID SINK=msk-sink-$ID SW=msk-sw-$ID OVSNS=msk-ovs-$ID
G=g$ID S=s$ID BR=br$ID
DIR=$(mktemp -d /tmp/mswitch-kcmp.XXXXXX)
RES=$DIR/results.tsv
: >"$RES"
PIDS=()     # background processes still to stop
OVSDIRS=()  # Open vSwitch run directories still to stop
if [ "${PIN:-yes}" = no ]; then SWPIN=() CLPIN=(); else SWPIN=(taskset -c 0) CLPIN=(taskset -c 1); fi

ovs_stop() { # DIR
    local od=$1 p
    OVS_RUNDIR=$od OVS_DBDIR=$od OVS_LOGDIR=$od timeout 10 ovs-appctl -t ovs-vswitchd exit --cleanup >/dev/null 2>&1 || true
    OVS_RUNDIR=$od OVS_DBDIR=$od OVS_LOGDIR=$od timeout 5 ovs-appctl -t ovsdb-server exit >/dev/null 2>&1 || true
    for f in "$od"/ovs-vswitchd.pid "$od"/ovsdb-server.pid; do
        [ -f "$f" ] || continue
        p=$(cat "$f" 2>/dev/null || true)
        [ -n "$p" ] || continue
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
}
cleanup() {
    set +e
    trap - ERR
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
    done
    for od in "${OVSDIRS[@]}"; do ovs_stop "$od"; done
    for ns in "$GEN" "$SINK" "$SW" "$OVSNS"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

untrack() { local p keep=(); for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }
stop_pid() { # PID: TERM, wait (bounded), KILL
    kill "$1" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    untrack "$1"
}
calc() { awk "BEGIN { print $* }"; }
json_field() { python3 -c "import json,sys
try: print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])[sys.argv[2]])
except Exception: print(0)" "$@"; }
# A link fit for counting: up, no IPv6 (no solicitations), no TX checksum
# offload (AF_XDP copy mode and AF_PACKET see whole frames).
prep_link() { # NS IF
    ip netns exec "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1"
    ip -n "$1" link set "$2" up
    ip netns exec "$1" ethtool -K "$2" tx off >/dev/null 2>&1 || true
}
move_ends() { # FROM TO: the switch-side ends change namespace
    ip -n "$1" link set "$G" netns "$2"
    ip -n "$1" link set "$S" netns "$2"
    prep_link "$2" "$G"
    prep_link "$2" "$S"
}

# --- topology ---------------------------------------------------------------
for ns in "$GEN" "$SINK" "$SW" "$OVSNS"; do
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
done
ip link add eth0 netns "$GEN" type veth peer name "$G" netns "$SW"
ip link add eth0 netns "$SINK" type veth peer name "$S" netns "$SW"
ip link add dir0 netns "$GEN" type veth peer name dir0 netns "$SINK"
prep_link "$GEN" eth0; prep_link "$GEN" dir0; prep_link "$SINK" eth0; prep_link "$SINK" dir0
prep_link "$SW" "$G"; prep_link "$SW" "$S"
DST=02:00:00:00:00:02   # a unicast MAC nobody owns: the sink's stack drops it early
FLOWS1=(-s 10.0.0.1:1234)
FLOWS1000=(-s 10.0.0.1-10.0.3.232:1234)   # 1000 source addresses

# --- one measurement --------------------------------------------------------
# measure IF GENKIND LEN FLOWS [RATE]: sink on SINK's IF, generator on GEN's
# IF; leaves the sink's and the generator's JSON in $DIR/rx.json, tx.json.
# With RATE, samples CPU over the middle of the run into $DIR/cpu.N.*.
SWPID_LIST=()   # switch processes whose own CPU is reported
measure() {
    local ifc=$1 kind=$2 len=$3 flows=$4 rate=${5:-} fl rx tx
    if [ "$flows" = 1000 ]; then fl=("${FLOWS1000[@]}"); else fl=("${FLOWS1[@]}"); fi
    rm -f "$DIR/rx.json" "$DIR/tx.json" "$DIR"/cpu.*
    ip netns exec "$SINK" "${CLPIN[@]}" "$M" pkt-gen -i "af_packet:$ifc" -f rx -D "$(calc "$D + 10")" -T 0 --json \
        >"$DIR/rx.json" 2>"$DIR/rx.err" &
    rx=$!; PIDS+=("$rx")
    sleep 0.3
    local rflag=() dur=$D nwin=0 w
    # At a fixed rate: 1 s windows of CPU samples from 0.5 s in, running
    # 1 s longer than D to have at least one whole window.
    if [ -n "$rate" ]; then
        nwin=$(calc "int($D) < 1 ? 1 : int($D)")
        rflag=(-R "$rate") dur=$((nwin + 1))
    fi
    ip netns exec "$GEN" "${CLPIN[@]}" "$M" pkt-gen -i "$kind:$ifc" -f tx -l "$len" "${fl[@]}" --dst-mac "$DST" \
        -D "$dur" -T 0 --json "${rflag[@]}" >"$DIR/tx.json" 2>"$DIR/tx.err" &
    tx=$!; PIDS+=("$tx")
    echo "$tx $rx $$" >"$DIR/cpu.pids"   # $$ gains the generator's CPU when it reaps it
    if [ -n "$rate" ]; then
        sleep 0.5
        cpu_sample 0 "$tx" "$rx"
        for w in $(seq "$nwin"); do
            sleep 1
            cpu_sample "$w" "$tx" "$rx"
        done
        wait "$tx" 2>/dev/null || true
    else
        # Over the whole run: how much other processes took (noise).
        cpu_sample 0 "$tx" "$rx"
        wait "$tx" 2>/dev/null || true
        cpu_sample 1 "$tx" "$rx"
    fi
    untrack "$tx"
    sleep 0.3
    stop_pid "$rx"
}
proc_ticks() { # PID: utime+stime in clock ticks (all threads)
    local s f
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    s=${s##*) }
    read -ra f <<<"$s"
    echo $(( f[11] + f[12] ))
}
# Busy CPU is wall time x CPUs less idle, iowait and steal: /proc/stat's busy
# fields are sampled at timer ticks, which miss much of a load that runs in
# short bursts (NO_HZ), while its idle time is measured exactly.
# Other processes on the machine (a build, say) are counted too, to be taken
# out: every user process's utime+stime+cutime+cstime (kernel threads, which
# carry packets too, are not taken out).
cpu_sample() { # N GENPID SINKPID -> $DIR/cpu.N.sys "wall_ns not_busy gen sink switch", $DIR/cpu.N.procs "pid ticks"
    local i w st t=0 p now
    now=$(date +%s%N)
    read -r _ _ _ _ i w _ _ st _ </proc/stat   # cpu user nice system idle iowait irq softirq steal
    for p in "${SWPID_LIST[@]}"; do t=$((t + $(proc_ticks "$p"))); done
    echo "$now $((i + w + st)) $(proc_ticks "$2") $(proc_ticks "$3") $t" >"$DIR/cpu.$1.sys"
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |   # processes come and go
        awk '{ pid = $1; sub(/^.*\) /, ""); if (pid == 2 || $2 == 2) next; print pid, $12 + $13 + $14 + $15 }' \
            >"$DIR/cpu.$1.procs"
}

record() { # SETUP SIZE FLOWS NOTE
    local tx_pps rx_pps rx_pkts others
    tx_pps=$(json_field "$DIR/tx.json" pps)
    rx_pps=$(json_field "$DIR/rx.json" pps)
    rx_pkts=$(json_field "$DIR/rx.json" packets)
    [ "$rx_pkts" = 0 ] && rx_pps=0
    others=$(cpu_windows | awk '{ printf "%.0f", 100 * $6 / ($2 / '"$NCPU"') }')
    printf 'tput\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$ROUND" "$2" "$3" "$rx_pps" "$tx_pps" "$4" "$others" >>"$RES"
    printf '  %-13s %4s B %4s flow(s): sent %6.3f Mpps, received %6.3f Mpps%s\n' "$1" "$2" "$3" \
        "$(calc "$tx_pps / 1e6")" "$(calc "$rx_pps / 1e6")" \
        "$([ "$others" -gt "$NOISY" ] && echo " (noisy: other processes used $others% of a core)")"
}
record_cpu() { # SETUP NOTE
    printf 'cpu\t%s\t%s\t%s\t%s\t%s\n' "$1" "$ROUND" "$(json_field "$DIR/rx.json" pps)" "$2" \
        "$(cpu_windows | paste -sd';')" >>"$RES"
}
# The CPU samples of the last measurement, one window a line:
# "busy total gen sink switch others" in clock ticks.
cpu_windows() {
    python3 - "$DIR" "$(getconf CLK_TCK)" "$NCPU" "${SWPID_LIST[@]}" <<'PY'
import glob, sys
d, hz, ncpu, sw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), set(sys.argv[4:])
def load(n):
    sysv = [int(x) for x in open(f"{d}/cpu.{n}.sys").read().split()]
    procs = {}
    for line in open(f"{d}/cpu.{n}.procs"):
        p, t = line.split()
        procs[p] = int(t)
    return sysv, procs
n = len(glob.glob(f"{d}/cpu.*.sys"))
for i in range(1, n):
    (a, pa), (b, pb) = load(i - 1), load(i)
    total = (b[0] - a[0]) * hz / 1e9 * ncpu
    busy = total - (b[1] - a[1])
    test = sw | set(open(f"{d}/cpu.pids").read().split())  # + the generator, the sink, this script
    others = sum(t - pa.get(p, 0) for p, t in pb.items() if p not in test)
    print(f"{busy:.1f} {total:.1f} {b[2] - a[2]} {b[3] - a[3]} {b[4] - a[4]} {others}")
PY
}
unavailable() { # SETUP REASON
    printf 'na\t%s\t%s\n' "$1" "$(echo "$2" | tr '\t\n' '  ')" >>"$RES"
    echo "  $1: unavailable: $2"
}

# Runs the throughput cases and the CPU case on the current setup.
run_cases() { # SETUP IF NOTE
    local size flows
    for size in 64 1500; do
        for flows in 1 1000; do
            measure "$2" "$GENKIND" $((size - 4)) "$flows"
            record "$1" "$size" "$flows" "$3"
        done
    done
    measure "$2" "$GENKIND" 60 1 "$CPU_PPS"
    record_cpu "$1" "$3"
}
# A short probe (1.5 s): does the setup forward at all?
forwards() {
    local d=$D
    D=0.5
    measure eth0 af_packet 60 1 10000 >/dev/null
    D=$d
    [ "$(json_field "$DIR/rx.json" packets)" != 0 ]
}

echo "# mswitch kernel-interface comparison, $(date -u +%FT%TZ), $(nproc) CPUs, ${D} s per measurement," \
    "pinning: ${PIN:-yes} (switch on CPU 0, generator and sink on CPU 1)${MSWITCH_FLAGS:+, mswitch run $MSWITCH_FLAGS}${NORMAL:+, NORMAL on both sides}"

# --- the generator: af_packet or af_xdp, whichever the direct pair carries faster
GENKIND=af_packet GENNOTE="" ROUND=0
D_SAVE=$D; D=1
measure dir0 af_packet 60 1; pa=$(json_field "$DIR/rx.json" pps)
measure dir0 af_xdp 60 1; px=$(json_field "$DIR/rx.json" pps)
D=$D_SAVE
if grep -q "using af_packet" "$DIR/tx.err"; then
    GENNOTE="af_xdp generator fell back to af_packet: $(grep -o 'af_xdp:[^;]*;' "$DIR/tx.err" | head -1)"
elif [ "$(calc "($px > $pa) ? 1 : 0")" = 1 ]; then
    GENKIND=af_xdp
fi
echo "# generator: probe af_packet $(calc "$pa / 1e6") Mpps, af_xdp $(calc "$px / 1e6") Mpps" \
    "-> using $GENKIND${GENNOTE:+ ($GENNOTE)}"
printf 'gen\t%s\t%s\t%s\t%s\n' "$GENKIND" "$pa" "$px" "$GENNOTE" >>"$RES"

# --- 2. Linux bridge --------------------------------------------------------
setup_bridge() {
    ip -n "$SW" link add "$BR" type bridge
    ip netns exec "$SW" sysctl -qw "net.ipv6.conf.$BR.disable_ipv6=1"
    ip -n "$SW" link set "$G" master "$BR"
    ip -n "$SW" link set "$S" master "$BR"
    ip -n "$SW" link set "$BR" up
    # The sink's MAC is static on its port: forwarded, not flooded.
    ip netns exec "$SW" bridge fdb add "$DST" dev "$S" master static
    sleep 0.2
}
teardown_bridge() { ip -n "$SW" link del "$BR" 2>/dev/null || true; }

# --- 3. Open vSwitch --------------------------------------------------------
OVS=""   # the current instance's directory
ovs() { OVS_RUNDIR=$OVS OVS_DBDIR=$OVS OVS_LOGDIR=$OVS "$@"; }
vsctl() { ovs timeout 10 ovs-vsctl --db="unix:$OVS/db.sock" --no-wait "$@"; }
setup_ovs() { # TYPE ("" for the default ports, or afxdp) [mswitch]; says why on failure
    # (called under `if`, where set -e does not apply: every step is checked)
    local type=$1 who=${2:-ovs} t=() i err of
    command -v ovs-vswitchd >/dev/null || { echo "Open vSwitch is not installed"; return 1; }
    OVS=$DIR/$who${type:+-$type}-$ROUND
    mkdir -p "$OVS"
    OVSDIRS+=("$OVS")
    move_ends "$SW" "$OVSNS" || { echo "could not move $G/$S into $OVSNS"; return 1; }
    ovs ovsdb-tool create "$OVS/conf.db" /usr/share/openvswitch/vswitch.ovsschema || { echo "ovsdb-tool create failed"; return 1; }
    ovs ovsdb-server "$OVS/conf.db" --remote="punix:$OVS/db.sock" --pidfile --detach --log-file ||
        { echo "ovsdb-server did not start"; return 1; }
    vsctl init || { echo "ovs-vsctl init failed"; return 1; }
    if [ "${PIN:-yes}" != no ]; then vsctl set Open_vSwitch . other_config:pmd-cpu-mask=0x1 || return 1; fi
    local daemon=(ovs-vswitchd)
    [ "$who" = mswitch ] && daemon=("$M" vswitchd)
    ovs ip netns exec "$OVSNS" "${SWPIN[@]}" "${daemon[@]}" "unix:$OVS/db.sock" --pidfile --detach --log-file ||
        { echo "$who vswitchd did not start: $(tail -1 "$OVS/ovs-vswitchd.log" 2>/dev/null)"; return 1; }
    SWPID_LIST=("$(cat "$OVS/ovs-vswitchd.pid")" "$(cat "$OVS/ovsdb-server.pid")")
    vsctl add-br "$BR" -- set bridge "$BR" datapath_type=netdev || { echo "add-br failed"; return 1; }
    [ -n "$type" ] && t=(type="$type")
    vsctl add-port "$BR" "$G" -- set Interface "$G" ofport_request=1 "${t[@]}" || { echo "add-port $G failed"; return 1; }
    vsctl add-port "$BR" "$S" -- set Interface "$S" ofport_request=2 "${t[@]}" || { echo "add-port $S failed"; return 1; }
    for i in $(seq 100); do
        [ "$(vsctl get Interface "$G" ofport)" = 1 ] && [ "$(vsctl get Interface "$S" ofport)" = 2 ] && break
        sleep 0.1
    done
    for i in "$G" "$S"; do
        err=$(vsctl get Interface "$i" error 2>&1 || true)
        of=$(vsctl get Interface "$i" ofport 2>&1 || true)
        if { [ "$of" != 1 ] && [ "$of" != 2 ]; } || { [ -n "$err" ] && [ "$err" != "[]" ]; }; then
            echo "port $i: ofport $of, error $err; log: $(grep -iE 'error|fail' "$OVS/ovs-vswitchd.log" | tail -1)"
            return 1
        fi
    done
    if [ -n "${NORMAL:-}" ]; then
        # The bridge as add-br made it: check its one NORMAL flow is there.
        for i in $(seq 50); do ovs ovs-ofctl dump-flows "$BR" 2>/dev/null | grep -q "actions=NORMAL" && break; sleep 0.1; done
        ovs ovs-ofctl dump-flows "$BR" | grep -q "actions=NORMAL" || { echo "no NORMAL flow on $BR"; return 1; }
    else
        for i in $(seq 50); do ovs ovs-ofctl del-flows "$BR" 2>/dev/null && break; sleep 0.1; done
        ovs ovs-ofctl add-flow "$BR" in_port=1,actions=output:2 || { echo "add-flow failed"; return 1; }
    fi
    sleep 0.5
}
teardown_ovs() {
    [ -n "$OVS" ] || return 0
    ovs_stop "$OVS"
    local keep=() od
    for od in "${OVSDIRS[@]}"; do [ "$od" = "$OVS" ] || keep+=("$od"); done
    OVSDIRS=("${keep[@]}")
    OVS="" SWPID_LIST=()
    move_ends "$OVSNS" "$SW"
}

# --- 4, 5. mswitch ----------------------------------------------------------
MSPID=""
setup_mswitch() { # KIND [MODULE]; prints a reason on failure
    local i
    rm -f "$DIR/ctl"
    # shellcheck disable=SC2086 # MSWITCH_FLAGS is a list of words
    ip netns exec "$SW" "${SWPIN[@]}" "$M" run --module "${2:-dummy}" --port "$1:$G" --port "$1:$S" --ctl "$DIR/ctl" \
        ${MSWITCH_FLAGS:-} >/dev/null 2>"$DIR/sw.err" &
    MSPID=$!; PIDS+=("$MSPID")
    SWPID_LIST=("$MSPID")
    for i in $(seq 100); do [ -S "$DIR/ctl" ] && break; kill -0 "$MSPID" 2>/dev/null || break; sleep 0.05; done
    if ! [ -S "$DIR/ctl" ]; then
        echo "mswitch run did not start: $(tail -1 "$DIR/sw.err")"
        return 1
    fi
    if [ "${2:-}" = flow ] && [ -z "${NORMAL:-}" ] &&
        ! timeout 10 ovs-ofctl -O OpenFlow13 add-flow "unix:$DIR/sw0.mgmt" in_port=1,actions=output:2 2>&1; then
        echo "ovs-ofctl add-flow failed"
        return 1
    fi
    sleep 0.3
}
teardown_mswitch() { [ -n "$MSPID" ] && stop_pid "$MSPID"; MSPID="" SWPID_LIST=(); }

run_setup() { # SETUP
    local setup=$1 note="" why="" down=true t k mod
    echo "$setup (round $ROUND)"
    case $setup in
        direct)
            run_cases direct dir0 ""
            return
            ;;
        bridge) setup_bridge; down=teardown_bridge ;;
        ovs-afpacket | ovs-afxdp | msv-system | msv-afxdp)
            t=""; [ "${setup#*-}" = afxdp ] && t=afxdp
            k=ovs; [ "${setup%%-*}" = msv ] && k=mswitch
            down=teardown_ovs
            if ! setup_ovs "$t" "$k" >"$DIR/why" 2>&1; then
                teardown_ovs
                unavailable "$setup" "$(tail -1 "$DIR/why")"
                return
            fi
            ;;
        ms-afxdp | ms-afpacket | ms-flow-afxdp)
            k=af_packet; [ "$setup" != ms-afpacket ] && k=af_xdp
            mod=dummy; [ "$setup" = ms-flow-afxdp ] && mod=flow
            if [ -n "${NORMAL:-}" ]; then
                [ "$setup" = ms-flow-afxdp ] && { echo "  (the same as ms-afxdp with NORMAL=1)"; return; }
                mod=flow
            fi
            down=teardown_mswitch
            if ! setup_mswitch "$k" "$mod" >"$DIR/why" 2>&1; then
                teardown_mswitch
                unavailable "$setup" "$(tail -1 "$DIR/why")"
                return
            fi
            if grep -q "using af_packet" "$DIR/sw.err"; then
                note="fell back to af_packet: $(grep -m1 'using af_packet' "$DIR/sw.err" | sed 's/^mswitch: //')"
                echo "  note: $note"
            fi
            ;;
        *) echo "unknown setup $setup" >&2; exit 2 ;;
    esac
    if ! forwards; then
        why="forwarded no packets in a short probe"
        [ -n "$OVS" ] && why="$why; log: $(grep -iE 'error|fail' "$OVS/ovs-vswitchd.log" | tail -1)"
        [ -n "$MSPID" ] && why="$why; stderr: $(tail -1 "$DIR/sw.err")"
        $down
        unavailable "$setup" "$why"
        return
    fi
    run_cases "$setup" eth0 "$note"
    $down
}

for ROUND in $(seq "$RUNS"); do
    for setup in direct $SETUPS; do run_setup "$setup"; done
done

# --- report -----------------------------------------------------------------
python3 - "$RES" "$CPU_PPS" "$D" "$RUNS" "$NCPU" "$(getconf CLK_TCK)" "$NOISY" <<'PY'
import json, statistics, sys
res, cpu_pps, dur, runs, ncpu, noisy = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[7])
tput, cpu, cpu_rx, na, notes, gen, order = {}, {}, {}, {}, {}, {}, []
for line in open(res):
    f = line.rstrip("\n").split("\t")
    if f[0] == "gen":
        gen = {"generator": f[1], "probe_af_packet_mpps": round(float(f[2]) / 1e6, 4),
               "probe_af_xdp_mpps": round(float(f[3]) / 1e6, 4), "note": f[4] if len(f) > 4 else ""}
        continue
    s = f[1]
    if s not in order:
        order.append(s)
    if f[0] == "tput":  # setup round size flows rx_pps tx_pps note
        tput.setdefault((s, int(f[3]), int(f[4])), []).append((float(f[5]), float(f[6]), int(f[8] or 0)))
        if f[7]: notes[s] = f[7]
    elif f[0] == "cpu":  # setup round rx_pps note samples
        cpu_rx.setdefault(s, []).append(float(f[3]))
        if f[4]: notes[s] = f[4]
        for w in f[5].split(";"):
            if w.strip():
                cpu.setdefault(s, []).append([float(x) for x in w.split()])
    elif f[0] == "na":
        na[s] = f[3]

def med(s, size, flows, k=0):
    v = tput.get((s, size, flows))
    return statistics.median(x[k] for x in v) if v else None

cases = [(64, 1), (64, 1000), (1500, 1), (1500, 1000)]
names = {"direct": "direct veth pair (ceiling)", "bridge": "Linux bridge",
         "ovs-afpacket": "OVS 3.1 netdev, AF_PACKET ports", "ovs-afxdp": "OVS 3.1 netdev, AF_XDP ports",
         "msv-system": "mswitch vswitchd, system ports", "msv-afxdp": "mswitch vswitchd, afxdp ports",
         "ms-afxdp": "mswitch, af_xdp ports", "ms-afpacket": "mswitch, af_packet ports",
         "ms-flow-afxdp": "mswitch flow module (OpenFlow), af_xdp ports"}
out = [{"kind": "generator", **gen}]
any_star = False
agg = "median of %d rounds" % runs if runs > 1 else "one round"
print()
print(f"Mpps received at the sink ({dur:g} s per measurement, {agg}); "
      "in brackets: ratio to OVS with AF_PACKET ports, fraction of the direct pair")
print("| setup | " + " | ".join(f"{sz} B, {n} flow{'s' if n > 1 else ''}" for sz, n in cases) + " |")
print("|---" * (len(cases) + 1) + "|")
for s in order:
    if all(med(s, sz, n) is None for sz, n in cases):
        print(f"| {names.get(s, s)} | " + " | ".join("n/a" for _ in cases) + " |")
        out.append({"kind": "throughput", "setup": s, "available": False, "reason": na.get(s, "")})
        continue
    cells = []
    for size, flows in cases:
        rx, tx = med(s, size, flows), med(s, size, flows, 1)
        if rx is None:
            cells.append("n/a")
            continue
        ovs, ceil = med("ovs-afpacket", size, flows), med("direct", size, flows)
        r_ovs = rx / ovs if ovs else None
        r_ceil = rx / ceil if ceil else None
        extra = []
        if s not in ("ovs-afpacket", "direct") and r_ovs is not None:
            extra.append(f"{r_ovs:.2f}x")
        if s != "direct" and r_ceil is not None:
            extra.append(f"{r_ceil:.2f}")
        oth = [x[2] for x in tput[(s, size, flows)]]
        star = "*" if 2 * sum(o > noisy for o in oth) >= len(oth) else ""
        any_star = any_star or bool(star)
        cells.append(f"{rx / 1e6:.3f}{star}" + (f" ({', '.join(extra)})" if extra else ""))
        out.append({"kind": "throughput", "setup": s, "frame_bytes": size, "flows": flows, "mpps": round(rx / 1e6, 4),
                    "sent_mpps": round(tx / 1e6, 4), "gbps_frames": round(rx * (size - 4) * 8 / 1e9, 3),
                    "ratio_ovs_afpacket": None if r_ovs is None else round(r_ovs, 3),
                    "of_direct": None if r_ceil is None else round(r_ceil, 3),
                    "runs": len(oth), "others_pct": oth, "note": notes.get(s, "")})
    print(f"| {names.get(s, s)} | " + " | ".join(cells) + " |")

if any_star:
    print(f"* noisy: in most runs of this cell other processes on the machine used more than {noisy}% of a core")
def pct(t, total):  # % of one core
    return 100.0 * t / (total / ncpu) if total > 0 else 0.0
print()
print(f"CPU at {cpu_pps / 1e6:.2f} Mpps offered (64 B, 1 flow), % of one core, in the 1 s window with the least CPU")
print("used by other processes on the machine. switch = all busy - generator - sink - other processes;")
print("added = (all busy - other processes) - the same for the direct pair (kernel work the switch causes in")
print("the generator's or the sink's context, e.g. a bridge forwarding in the sender's softirq, counts here)")
print("| setup | received Mpps | all busy | generator | sink | other processes | switch | switch process | added |")
print("|---|---|---|---|---|---|---|---|---|")
def quiet(s):
    return min(cpu[s], key=lambda w: (w[5], w[0]))
base = None
if cpu.get("direct"):
    busy, total, g, k, sw, oth = quiet("direct")
    base = pct(busy - oth, total)
for s in order:
    if not cpu.get(s):
        continue
    busy, total, g, k, sw, oth = quiet(s)
    b, rest = pct(busy, total), pct(busy - g - k - oth, total)
    extra = None if base is None or s == "direct" else pct(busy - oth, total) - base
    swp = None if s in ("direct", "bridge") else pct(sw, total)
    rx = statistics.median(cpu_rx[s])
    print(f"| {names.get(s, s)} | {rx / 1e6:.3f} | {b:.0f} | {pct(g, total):.0f} | {pct(k, total):.0f} | {pct(oth, total):.0f} | "
          f"{rest:.0f} | " + ("-" if swp is None else f"{swp:.0f}") + " | " + ("-" if extra is None else f"{extra:+.0f}") + " |")
    out.append({"kind": "cpu", "setup": s, "offered_pps": cpu_pps, "received_mpps": round(rx / 1e6, 4),
                "busy_pct": round(b, 1), "gen_pct": round(pct(g, total), 1), "sink_pct": round(pct(k, total), 1),
                "others_pct": round(pct(oth, total), 1), "switch_pct": round(rest, 1),
                "switch_process_pct": None if swp is None else round(swp, 1),
                "added_vs_direct_pct": None if extra is None else round(extra, 1), "windows": len(cpu[s])})
print()
for s, why in na.items():
    print(f"unavailable: {s}: {why}")
for s, n in notes.items():
    print(f"note: {s}: {n}")
if gen:
    print(f"generator: {gen['generator']}" + (f" ({gen['note']})" if gen["note"] else ""))
print()
for o in out:
    print(json.dumps(o))
PY
