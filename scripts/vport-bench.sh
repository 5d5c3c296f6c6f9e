#!/usr/bin/env bash
# Cross-process benchmark over virtual ports, beside the in-process
# `mswitch bench` figure for the same frames in the same run:
#   - txrx: one pkt-gen thread sends on port a and drains port b (generator
#     and sink share one core without competing), switch worker on the other;
#   - tx|rx: separate pkt-gen processes for tx and rx (both on one core: with
#     2 cores, three busy processes cannot each have one);
#   - ping-pong round trips, the switch and the clients sleeping when idle or
#     busy-polling.
#
#   scripts/vport-bench.sh [SECONDS]        (default 5 per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-5}
cargo build --release --quiet -p mswitch
M=$PWD/target/release/mswitch
DIR=$(mktemp -d /tmp/mswitch-vbench.XXXXXX)
SW=""
cleanup() { [ -n "$SW" ] && kill "$SW" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
field() { python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])[sys.argv[2]])" "$@"; }
PG() { "$M" pkt-gen --ctl "$DIR/ctl" -T 0 --json "$@"; }

start_switch() { # extra run flags; PIN=no leaves the switch unpinned
    local cpus=0
    [ "${PIN:-yes}" = no ] && cpus=0-$(($(nproc) - 1))
    taskset -c "$cpus" "$M" run --module dummy --port vport:a --port vport:b --ctl "$DIR/ctl" "$@" 2>/dev/null &
    SW=$!
    for _ in $(seq 100); do [ -S "$DIR/ctl" ] && break; sleep 0.05; done
}
stop_switch() { kill "$SW"; wait "$SW" 2>/dev/null || true; SW=""; }

echo "# mswitch vport benchmark, $(date -u +%FT%TZ), $(nproc) CPUs, ${D} s per run; switch worker on CPU 0, clients on CPU 1"
for size in 60 1514; do
    "$M" bench --module dummy --size "$size" --duration "$D" --json --pin 2>/dev/null >"$DIR/in.json"
    start_switch
    taskset -c 1 "$M" pkt-gen --ctl "$DIR/ctl" -T 0 --json -i vport:sw0:a --rx-interface vport:sw0:b -f txrx -l "$size" -D "$D" >"$DIR/txrx.json"
    taskset -c 1 "$M" pkt-gen --ctl "$DIR/ctl" -T 0 --json -i vport:sw0:b -f rx -D $((D + 1)) >"$DIR/rx.json" &
    RX=$!
    sleep 0.3
    taskset -c 1 "$M" pkt-gen --ctl "$DIR/ctl" -T 0 --json -i vport:sw0:a -f tx -l "$size" -D "$D" >"$DIR/tx.json"
    wait $RX || true
    stop_switch
    python3 - "$size" "$(field "$DIR/in.json" pps)" "$(field "$DIR/txrx.json" pps)" \
        "$(field "$DIR/tx.json" pps)" "$(field "$DIR/rx.json" pps)" <<'PY'
import sys
size = int(sys.argv[1]); inproc, txrx, tx, rx = map(float, sys.argv[2:])
g = lambda pps: pps * size * 8 / 1e9
print(f"size {size:5d} B: in-process {inproc/1e6:7.2f} Mpps ({g(inproc):6.1f} Gbit/s) | "
      f"txrx {txrx/1e6:6.2f} Mpps ({g(txrx):5.1f} Gbit/s, {txrx/inproc:.3f} of in-process) | "
      f"tx|rx: sent {tx/1e6:6.2f} Mpps, received {rx/1e6:6.2f} Mpps ({rx/inproc:.3f})")
PY
done
# Round trips: ping on port a, pong on port b, one ping in flight at a time.
# Nothing is pinned here: each process sleeps between packets unless it busy-polls.
for mode in "sleep sleep" "busy sleep" "sleep busy"; do
    set -- $mode
    swflag=""; clflag=""
    [ "$1" = busy ] && swflag="--busy-poll"
    [ "$2" = busy ] && clflag="--busy-poll"
    PIN=no start_switch $swflag
    "$M" pkt-gen --ctl "$DIR/ctl" -i vport:sw0:b -f pong -D $((D + 2)) -T 0 $clflag >/dev/null &
    PONG=$!
    sleep 0.3
    "$M" pkt-gen --ctl "$DIR/ctl" -T 0 --json -i vport:sw0:a -f ping -R 5000 -D "$D" $clflag >"$DIR/ping.json"
    kill $PONG 2>/dev/null || true; wait $PONG 2>/dev/null || true
    stop_switch
    python3 - "$1" "$2" "$DIR/ping.json" <<'PY'
import json, sys
d = json.loads(open(sys.argv[3]).read().strip().splitlines()[-1])
w = lambda m: "busy-polls" if m == "busy" else "sleeps when idle"
print(f"ping-pong, switch {w(sys.argv[1])}, clients {w(sys.argv[2])}: "
      f"{d['packets']} round trips, p50 {d['rtt_p50_ns']/1e3:.1f} us, p99 {d['rtt_p99_ns']/1e3:.1f} us, "
      f"max {d['rtt_max_ns']/1e3:.1f} us, lost {d['lost']}")
PY
done
