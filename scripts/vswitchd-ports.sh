#!/usr/bin/env bash
# Many rows: how long ovs-vsctl waits for N new ports to be in force
# (`cur_cfg` catching up with `next_cfg`), for Open vSwitch's ovs-vswitchd and
# for `mswitch vswitchd`, one after the other in one run, each with its own
# ovsdb-server and its own network namespace.
#
#   one transaction   ovs-vsctl add-port br0 p1 -- set Interface p1 type=internal
#                     -- add-port br0 p2 ... (N ports in one command)
#   one at a time     N more ports, one ovs-vsctl command each (each command
#                     waits for its own change to be in force, as a script
#                     that adds ports would)
#   delete            ovs-vsctl del-br br0 (all 2N ports go)
#
# The ports are `internal` (a TAP each, in the daemon's namespace), the
# bridge `datapath_type=netdev` (Open vSwitch's userspace datapath, the one
# mswitch stands in for). Reported: seconds per phase, the ratio
# ovs-vswitchd / mswitch (above 1: mswitch faster), that every port got an
# ofport, and each daemon's resident memory with 2N ports.
#
# Usage: scripts/vswitchd-ports.sh [N]   (default 1000; root)
# Environment: NO_BUILD=1 skips `cargo build`; MSWITCH=PATH runs another
# binary; DAEMONS="ovs mswitch" picks the daemons.
set -eEuo pipefail
trap 'echo "$0: line $LINENO: \`$BASH_COMMAND\` failed" >&2' ERR
cd "$(dirname "$0")/.."
N=${1:-1000}
case $N in '' | *[!0-9]* | 0) echo "usage: $0 [N]" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "$0: needs root (namespaces, TAPs)" >&2; exit 1; }
command -v ovsdb-server >/dev/null || { echo "$0: needs openvswitch-switch (ovsdb-server, ovs-vsctl)" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet -p mswitch
M=${MSWITCH:-$PWD/target/release/mswitch}
DAEMONS=${DAEMONS:-"ovs mswitch"}

ID=$$
DIR=$(mktemp -d /tmp/mswitch-ports.XXXXXX)
NSS=()
OD=""
ovs() { OVS_RUNDIR=$OD OVS_DBDIR=$OD OVS_LOGDIR=$OD "$@"; }
vsctl() { ovs ovs-vsctl --db="unix:$OD/db.sock" --timeout=900 "$@"; }
stop_all() { # the daemons of $OD: exit through their control sockets, then signals
    local f p
    ovs timeout 20 ovs-appctl -t ovs-vswitchd exit >/dev/null 2>&1 || true
    ovs timeout 5 ovs-appctl -t ovsdb-server exit >/dev/null 2>&1 || true
    for f in "$OD"/ovs-vswitchd.pid "$OD"/ovsdb-server.pid; do
        [ -f "$f" ] || continue
        p=$(cat "$f" 2>/dev/null || true)
        [ -n "$p" ] || continue
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
}
cleanup() {
    set +e
    trap - ERR
    for d in "$DIR"/*/; do [ -d "$d" ] && OD=${d%/} stop_all; done
    for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
secs() { awk "BEGIN { printf \"%.2f\", $2 - $1 }"; }
rss_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }

echo "# $N + $N internal ports on one netdev bridge, $(date -u +%FT%TZ), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
RES=$DIR/results
: >"$RES"
for who in $DAEMONS; do
    OD=$DIR/$who
    mkdir -p "$OD"
    ns=msp-$who-$ID
    ip netns add "$ns"
    NSS+=("$ns")
    ip -n "$ns" link set lo up
    ovs ovsdb-tool create "$OD/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    ovs ovsdb-server "$OD/conf.db" --remote="punix:$OD/db.sock" --pidfile --detach --log-file --no-chdir -vconsole:off
    vsctl --no-wait init
    case $who in
        ovs) ovs ip netns exec "$ns" ovs-vswitchd "unix:$OD/db.sock" --pidfile --detach --log-file --no-chdir -vconsole:off ;;
        mswitch) ovs ip netns exec "$ns" "$M" vswitchd "unix:$OD/db.sock" --pidfile --detach --log-file --no-chdir -vconsole:off ;;
        *) echo "unknown daemon $who" >&2; exit 2 ;;
    esac
    vsctl add-br br0 -- set bridge br0 datapath_type=netdev
    pid=$(cat "$OD/ovs-vswitchd.pid")

    args=()
    for i in $(seq "$N"); do args+=(-- add-port br0 "a$i" -- set Interface "a$i" type=internal); done
    t0=$(now)
    vsctl "${args[@]}"
    t1=$(now)
    for i in $(seq "$N"); do vsctl add-port br0 "b$i" -- set Interface "b$i" type=internal; done
    t2=$(now)
    rss=$(rss_mib "$pid")
    bad=$(vsctl --format=csv --data=bare --no-headings -- --columns=name,ofport list Interface |
        awk -F, '$2 == "" || $2 < 1 { n++ } END { print n + 0 }')
    t3=$(now)
    vsctl del-br br0
    t4=$(now)
    one=$(secs "$t0" "$t1") each=$(secs "$t1" "$t2") del=$(secs "$t3" "$t4")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$who" "$one" "$each" "$del" "$rss" "$bad" >>"$RES"
    printf '  %-8s one transaction %7s s, one at a time %7s s, del-br %6s s, RSS %5s MiB, ports without an ofport: %s\n' \
        "$who" "$one" "$each" "$del" "$rss" "$bad"
    stop_all
done

python3 - "$RES" "$N" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    who, one, each, dele, rss, bad = line.split("\t")
    rows[who] = dict(one=float(one), each=float(each), delete=float(dele), rss_mib=int(rss), no_ofport=int(bad))
n = int(sys.argv[2])
names = {"ovs": "ovs-vswitchd 3.1", "mswitch": "mswitch vswitchd"}
print()
print(f"| daemon | {n} ports, one transaction | {n} more, one command each | del-br ({2 * n} ports) | RSS with {2 * n} ports |")
print("|---|---|---|---|---|")
for who, r in rows.items():
    print(f"| {names.get(who, who)} | {r['one']:.2f} s | {r['each']:.2f} s | {r['delete']:.2f} s | {r['rss_mib']} MiB |")
if "ovs" in rows and "mswitch" in rows:
    o, m = rows["ovs"], rows["mswitch"]
    ratio = lambda k: round(o[k] / m[k], 2) if m[k] > 0 else None
    print(f"ovs-vswitchd / mswitch: one transaction {ratio('one')}x, one at a time {ratio('each')}x, del-br {ratio('delete')}x")
for who, r in rows.items():
    print(json.dumps({"kind": "ports", "daemon": who, "ports": n, **r}))
PY
