#!/usr/bin/env bash
# Runs the standard `mswitch bench` suite N times (default 3) and prints a
# Markdown table of the medians, with each case's raw-copy baseline and ratio
# from the same runs, and the issue's derived ratios.
#
#   scripts/bench-suite.sh [RUNS] [extra bench flags, e.g. --pin]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}; shift || true
cargo build --release --quiet -p mswitch
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for i in $(seq "$RUNS"); do
    ./target/release/mswitch bench --json "$@" 2>/dev/null >>"$OUT"
done
python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
cases = {}
for r in rows:
    k = (r["module"], r["pattern"], r["size"], r["workers"], r["ports"], r["idle_ports"])
    cases.setdefault(k, []).append(r)
med = lambda v: statistics.median(v)
print(f"medians of {sys.argv[2]} runs\n")
print("| module | pattern | size B | workers | ports (+idle) | Mpps | Gbit/s | baseline Mpps | ratio |")
print("|---|---|---|---|---|---|---|---|---|")
res = {}
for k, rs in cases.items():
    pps, bps = med([r["pps"] for r in rs]), med([r["bps"] for r in rs])
    base, ratio = med([r["baseline_pps"] for r in rs]), med([r["ratio"] for r in rs])
    res[k] = pps
    m, p, s, w, n, idle = k
    print(f"| {m} | {p} | {s} | {w} | {n} (+{idle}) | {pps/1e6:.2f} | {bps/1e9:.2f} | {base/1e6:.2f} | {ratio:.3f} |")
def get(m, p, s, w, n, idle):
    return res.get((m, p, s, w, n, idle))
d60, learn = get("dummy", "1to1", 60, 1, 2, 0), get("learn", "1to1", 60, 1, 2, 0)
n1, n2 = get("dummy", "nto1", 60, 1, 3, 0), get("dummy", "nto1", 60, 2, 3, 0)
idle = get("dummy", "1to1", 60, 1, 2, 1000)
print()
if d60 and learn: print(f"- learn / dummy at 60 B: {learn/d60:.3f}")
if d60 and idle: print(f"- 1000 idle ports / 2 ports: {idle/d60:.3f}")
if n1 and n2: print(f"- nto1 2 workers / 1 worker: {n2/n1:.3f}")
PY
