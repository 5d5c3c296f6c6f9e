#!/usr/bin/env bash
# Cross-process benchmark: pkt-gen tx -> switch -> pkt-gen rx over virtual
# ports, beside the in-process `mswitch bench` figure of the same frames in
# the same run, plus ping-pong round trips in idle-sleep and busy-poll mode.
#
#   scripts/vport-bench.sh [SECONDS]        (default 5 per measurement)
#
# Prints one line per measurement and the cross-process/in-process ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-5}
cargo build --release --quiet
M=$PWD/target/release/mswitch
DIR=$(mktemp -d /tmp/mswitch-vbench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
json() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d['$1'])"; }

start_switch() { # $1: extra flags
    "$M" run --module dummy --port vport:a --port vport:b --ctl "$DIR/ctl" $1 2>/dev/null &
    PIDS+=($!)
    for _ in $(seq 100); do [ -S "$DIR/ctl" ] && break; sleep 0.05; done
}
stop_switch() { kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'; }

echo "# mswitch vport benchmark, $(date -u +%FT%TZ), $(nproc) CPUs, ${D}s per run"
for size in 60 1514; do
    inproc=$("$M" bench --module dummy --size "$size" --duration "$D" --json 2>/dev/null | json pps)
    start_switch ""
    "$M" pkt-gen --ctl "$DIR/ctl" -i vport:sw0:b -f rx -D $((D + 2)) -T 0 --json >"$DIR/rx.json" &
    RX=$!
    sleep 0.3
    "$M" pkt-gen --ctl "$DIR/ctl" -i vport:sw0:a -f tx -l "$size" -D "$D" -T 0 --json >"$DIR/tx.json"
    wait $RX || true
    stop_switch
    rxpps=$(json pps <"$DIR/rx.json"); txpps=$(json pps <"$DIR/tx.json")
    python3 - "$size" "$inproc" "$txpps" "$rxpps" <<'PY'
import sys
size, inproc, tx, rx = int(sys.argv[1]), *map(float, sys.argv[2:])
print(f"size {size:5d} B: in-process {inproc/1e6:8.2f} Mpps | cross-process tx {tx/1e6:7.2f} Mpps, "
      f"rx {rx/1e6:7.2f} Mpps ({rx*size*8/1e9:6.2f} Gbit/s) | rx/in-process {rx/inproc:.3}")
PY
done
for mode in idle busy; do
    flag=""; pflag=""
    [ $mode = busy ] && flag="--busy-poll" && pflag="--busy-poll"
    start_switch "$flag"
    "$M" pkt-gen --ctl "$DIR/ctl" -i vport:sw0:b -f pong -D $((D + 2)) -T 0 $pflag >/dev/null &
    PONG=$!
    sleep 0.3
    "$M" pkt-gen --ctl "$DIR/ctl" -i vport:sw0:a -f ping -R 5000 -D "$D" -T 0 --json $pflag >"$DIR/ping.json"
    kill $PONG 2>/dev/null || true; wait $PONG 2>/dev/null || true
    stop_switch
    python3 - "$mode" "$DIR/ping.json" <<'PY'
import json, sys
d = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
print(f"ping-pong {sys.argv[1]:4s}: {d['packets']} round trips, p50 {d['rtt_p50_ns']/1e3:.1f} us, "
      f"p99 {d['rtt_p99_ns']/1e3:.1f} us, max {d['rtt_max_ns']/1e3:.1f} us, lost {d['lost']}")
PY
done
