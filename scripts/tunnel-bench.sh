#!/usr/bin/env bash
# Host-to-host throughput through a tunnel, side by side, in one run on one
# topology:
#
#   VA ns: eth0 ==veth== vva [switch, host A ns] u ==veth== u [switch, host B ns] vvb ==veth== eth0 :VB ns
#                          10.99.0.1 (underlay)              10.99.0.2
#
# The VMs (192.168.99.1 and .2, MTU 1450 in every setup) run iperf3; the
# hosts' switches carry their traffic over the underlay veth. Setups:
#   msw-vxlan   mswitch run --module learn on each host: af_packet:vv?, and
#               vxlan:vx,remote=OTHER,key=42 (a kernel UDP socket on 'u')
#   msw-geneve  the same with geneve
#   msw-plain   the same switches with af_packet:u instead of the tunnel:
#               the same path without encapsulation (the underlay veth
#               carries the VMs' frames as they are)
#   ovs-vxlan   Open vSwitch's userspace datapath on each host, as its
#               userspace-tunneling guide says: br-phy owns 'u' (AF_PACKET)
#               and 10.99.0.x, br-int has the VM's veth (AF_PACKET) and a
#               vxlan port with remote_ip=OTHER key=42; NORMAL
# Each is measured for DUR seconds with `mswitch pkt-gen` (af_packet on the
# VMs' eth0, the generator in VA, the sink in VB; frames to a MAC nobody
# owns, which the learning switches flood): 64 B and 1400 B frames, 1 flow
# and 1000 flows (source addresses), kpps at the sink / kpps the generator
# sent (one direction, open loop: the generator sends as fast as it can, so
# the difference is what the path lost); and with iperf3
# between the VMs' stacks: TCP with 1 and 4 flows (Gbit/s at the receiver).
# Two more setups measure the ports alone, pkt-gen driving them directly
# on the hosts with no switch (pkt-gen only):
#   direct-veth   pkt-gen on af_packet:u in host A to pkt-gen on af_packet:u
#                 in host B
#   direct-vxlan  pkt-gen on a vxlan: port (encapsulation, kernel UDP send,
#                 the underlay veth, kernel UDP receive, decapsulation)
# msw-vxlan-nooffload and direct-vxlan-nooffload are the same with UDP
# segmentation/receive offload off (MSWITCH_TUNNEL_OFFLOAD=0): what it brings.
#
# Usage: scripts/tunnel-bench.sh [DUR] [SETUP...]   (root; release build)
set -euo pipefail
DUR=${1:-5}
shift || true
SETUPS=${*:-msw-vxlan msw-geneve msw-plain ovs-vxlan direct-veth direct-vxlan}
BIN=${MSWITCH:-$(cd "$(dirname "$0")/.." && pwd)/target/release/mswitch}
T=tb$$
W=/tmp/mswitch-tunnel-bench-$$
mkdir -p "$W"
NS=("${T}a" "${T}b" "${T}va" "${T}vb")

cleanup() {
    for p in "$W"/*.pid; do
        [ -e "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
    done
    sleep 0.3
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT

nx() { local n=$1; shift; ip netns exec "$n" "$@"; }

topology() {
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    for n in "${NS[@]}"; do
        ip netns add "$n"
        nx "$n" ip link set lo up
        nx "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    ip link add u netns "${T}a" type veth peer name u netns "${T}b"
    ip link add eth0 netns "${T}va" type veth peer name vva netns "${T}a"
    ip link add eth0 netns "${T}vb" type veth peer name vvb netns "${T}b"
    for p in "a u" "b u" "va eth0" "a vva" "vb eth0" "b vvb"; do
        set -- $p
        nx "$T$1" ip link set "$2" up
        nx "$T$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true
    done
    nx "${T}va" ip link set eth0 mtu 1450
    nx "${T}vb" ip link set eth0 mtu 1450
    nx "${T}va" ip addr add 192.168.99.1/24 dev eth0
    nx "${T}vb" ip addr add 192.168.99.2/24 dev eth0
}

mswitch_hosts() { # $1: tunnel kind or "plain"
    for h in a b; do
        local other=10.99.0.2 me=10.99.0.1
        [ $h = b ] && other=10.99.0.1 && me=10.99.0.2
        local tun="af_packet:u"
        if [ "$1" != plain ]; then
            nx "$T$h" ip addr add $me/24 dev u
            tun="$1:vx,remote=$other,key=42"
        fi
        ip netns exec "$T$h" "$BIN" run --module learn --ctl "$W/$h.sock" \
            --port "af_packet:vv$h" --port "$tun" >"$W/$h.log" 2>&1 &
        echo $! >"$W/msw$h.pid"
    done
}

ovs_hosts() {
    for h in a b; do
        local other=10.99.0.2 me=10.99.0.1
        [ $h = b ] && other=10.99.0.1 && me=10.99.0.2
        local d="$W/ovs$h"
        mkdir -p "$d"
        ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema
        nx "$T$h" ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" \
            --unixctl="$d/ovsdb.ctl" --pidfile="$d/ovsdb.pid" --detach --log-file="$d/ovsdb.log" 2>/dev/null
        cp "$d/ovsdb.pid" "$W/ovsdb$h.pid"
        local vs="ovs-vsctl --db=unix:$d/db.sock --timeout=20"
        $vs --no-wait init
        OVS_RUNDIR=$d nx "$T$h" ovs-vswitchd "unix:$d/db.sock" --unixctl="$d/vsd.ctl" \
            --pidfile="$d/vsd.pid" --detach --log-file="$d/vsd.log" 2>/dev/null
        cp "$d/vsd.pid" "$W/vsd$h.pid"
        local mac
        mac=$(nx "$T$h" cat /sys/class/net/u/address)
        $vs add-br brphy -- set bridge brphy datapath_type=netdev other_config:hwaddr="$mac"
        $vs add-port brphy u
        nx "$T$h" ip addr add $me/24 dev brphy
        nx "$T$h" ip link set brphy up
        $vs add-br brint -- set bridge brint datapath_type=netdev
        $vs add-port brint "vv$h"
        $vs add-port brint vx -- set interface vx type=vxlan options:remote_ip=$other options:key=42
    done
}

# iperf3 from VA to VB; prints the receiver's figure.
measure() { # $1: tcp  $2: flows
    local args=(-c 192.168.99.2 -t "$DUR" -J -P "$2")
    nx "${T}vb" iperf3 -s -1 -D -I "$W/iperf.pid" >/dev/null 2>&1
    sleep 0.3
    nx "${T}va" iperf3 "${args[@]}" >"$W/out.json" 2>/dev/null || true
    python3 - "$1" "$W/out.json" <<'EOF'
import json, sys
try:
    j = json.load(open(sys.argv[2]))
    r = j["end"]
    if sys.argv[1] == "udp":
        r["sum"]
except Exception:
    print("   failed (%s)" % j.get("error", "?") if "j" in dir() else "   failed", end="")
    sys.exit(0)
if sys.argv[1] == "tcp":
    print("%8.2f Gb/s" % (r["sum_received"]["bits_per_second"] / 1e9), end="")
else:
    s = r["sum"]
    print("%8.0f kpps" % ((s["packets"] - s["lost_packets"]) / s["seconds"] / 1e3), end="")
EOF
}

# pkt-gen from VA to VB; prints the sink's kpps / the generator's.
pktgen() { # $1: frame length  $2: flows (1 or 1000)
    local fl=(-s 192.168.99.1:1234)
    [ "$2" = 1000 ] && fl=(-s 192.168.99.1-192.168.99.250:1000-1003)
    ip netns exec "$RX_NS" "$BIN" pkt-gen -i "$RX_IF" -f rx -D "$((DUR + 3))" -T 0 --json \
        >"$W/rx.json" 2>/dev/null &
    local rx=$!
    sleep 0.5
    ip netns exec "$TX_NS" "$BIN" pkt-gen -i "$TX_IF" -f tx -l "$1" "${fl[@]}" \
        --dst-mac 02:00:00:00:00:63 -D "$DUR" -T 0 --json >"$W/tx.json" 2>/dev/null || true
    sleep 0.5
    kill "$rx" 2>/dev/null || true
    wait "$rx" 2>/dev/null || true
    python3 -c 'import json,sys
last = lambda f: json.loads(open(f).read().strip().splitlines()[-1])
try: rx = "%.0f" % (last(sys.argv[1])["pps"] / 1e3)
except Exception: rx = "failed"
try: tx = "%.0f" % (last(sys.argv[2])["pps"] / 1e3)
except Exception: tx = "?"
print("%14s" % ("%s/%s kpps" % (rx, tx)), end="")' "$W/rx.json" "$W/tx.json"
}

printf "%-11s %14s %14s %14s %14s %14s %14s\n" setup pkt64-1 pkt64-1000 pkt1400-1 pkt1400-1000 tcp-1 tcp-4
for s in $SETUPS; do
    topology
    export MSWITCH_TUNNEL_OFFLOAD=1
    case $s in *-nooffload) MSWITCH_TUNNEL_OFFLOAD=0 ;; esac
    case ${s%-nooffload} in
    msw-vxlan) mswitch_hosts vxlan ;;
    msw-geneve) mswitch_hosts geneve ;;
    msw-plain) mswitch_hosts plain ;;
    ovs-vxlan) ovs_hosts ;;
    direct-veth | direct-vxlan)
        TX_NS=${T}a RX_NS=${T}b TX_IF=af_packet:u RX_IF=af_packet:u
        if [ "${s%-nooffload}" = direct-vxlan ]; then
            nx "${T}a" ip addr add 10.99.0.1/24 dev u
            nx "${T}b" ip addr add 10.99.0.2/24 dev u
            nx "${T}a" ping -c 1 -W 1 10.99.0.2 >/dev/null # resolve the neighbour
            TX_IF=vxlan:t,remote=10.99.0.2,key=42 RX_IF=vxlan:t,remote=10.99.0.1,key=42
        fi
        printf "%-11s" "$s"
        printf " %s" "$(pktgen 60 1)" "$(pktgen 60 1000)" "$(pktgen 1400 1)" "$(pktgen 1400 1000)"
        echo
        continue
        ;;
    *) echo "unknown setup $s" >&2; exit 2 ;;
    esac
    TX_NS=${T}va RX_NS=${T}vb TX_IF=af_packet:eth0 RX_IF=af_packet:eth0
    ok=""
    for _ in $(seq 50); do
        if nx "${T}va" ping -c 1 -W 1 192.168.99.2 >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.2
    done
    [ -n "$ok" ] || { echo "$s: no ping"; cat "$W"/*.log; continue; }
    printf "%-11s" "$s"
    printf " %s" "$(pktgen 60 1)" "$(pktgen 60 1000)" "$(pktgen 1400 1)" "$(pktgen 1400 1000)" \
        "$(measure tcp 1)" "$(measure tcp 4)"
    echo
    for p in "$W"/*.pid; do kill "$(cat "$p")" 2>/dev/null || true; rm -f "$p"; done
    wait 2>/dev/null || true
    rm -f "$W"/*.sock
    sleep 0.5
done
