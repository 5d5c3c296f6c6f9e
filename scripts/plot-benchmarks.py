#!/usr/bin/env python3
"""Benchmark results as data: tables and SVG bar charts from bench/results/*.json.

Usage:
  scripts/plot-benchmarks.py            write one SVG per comparison into bench/plots/
  scripts/plot-benchmarks.py --tables   rewrite the generated blocks of BENCHMARKS.md
  scripts/plot-benchmarks.py --check    exit 1 if BENCHMARKS.md or bench/plots/ differ
                                        from what the JSON gives, the JSON is invalid,
                                        or a relative link of BENCHMARKS.md or
                                        docs/lab-notes.md points nowhere

Python 3 standard library only. Every comparison file holds:
  id, title, short and vs (for the overview), what, against, date, commit, commit_is ("measured at" or
  "recorded in"), command, unit, columns, rows, goals, and optionally
  ratio_label, baseline_label, value_decimals, column_decimals (one per
  column), ratio_columns (the columns that get a ratio), ratio_decimals,
  lower_is_better, notes. A row may set its own decimals.
A row is {label, values[, ratios][, ratio_to][, role]}: values has one entry
per column (null for "not measured"); ratios, when present, are the ratios
the lab notes give (ratio of the medians); when absent and ratio_to names
another row, the ratio is computed here (value / that row's value, or the
inverse when lower_is_better). Rows with role "baseline" or "reference" are
drawn as no bar; rows with role "context" (another switch against the same
baseline) are drawn but left out of the overview's range. A goal is {text, met[, ratio][, columns][, rows]}: the
ratio (when given) is drawn as a dashed line over the bars of those columns
and rows (all when absent).

In BENCHMARKS.md each comparison's block lies between
<!-- results:ID --> and <!-- /results:ID -->, and the overview of all of
them between <!-- results-summary --> and <!-- /results-summary -->;
everything else is hand-written.
"""

import json
import os
import re
import sys
from html import escape

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
RESULTS = os.path.join(ROOT, "bench", "results")
PLOTS = os.path.join(ROOT, "bench", "plots")
PAGE = os.path.join(ROOT, "BENCHMARKS.md")

REQUIRED = ["id", "title", "short", "vs", "what", "against", "date", "commit", "commit_is", "command",
            "unit", "columns", "rows", "goals"]
# How far a ratio given in the lab notes may be from the one its rounded cells
# give before --check calls it a mistake (the notes' ratios are of unrounded
# medians).
RATIO_TOLERANCE = 0.03
GREYS = ["#a0a0a0", "#c8c8c8"]
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
          "#bcbd22"]


class Invalid(Exception):
    pass


def load(path):
    with open(path, encoding="utf-8") as f:
        c = json.load(f)
    name = os.path.basename(path)
    for key in REQUIRED:
        if key not in c:
            raise Invalid(f"{name}: missing '{key}'")
    if c["id"] + ".json" != name:
        raise Invalid(f"{name}: id '{c['id']}' does not match the file name")
    if c["commit_is"] not in ("measured at", "recorded in"):
        raise Invalid(f"{name}: commit_is must be 'measured at' or 'recorded in'")
    ncol = len(c["columns"])
    labels = [r["label"] for r in c["rows"]]
    for r in c["rows"]:
        if len(r["values"]) != ncol:
            raise Invalid(f"{name}: row '{r['label']}' has {len(r['values'])} values for {ncol} columns")
        if "ratios" in r and len(r["ratios"]) != ncol:
            raise Invalid(f"{name}: row '{r['label']}' has {len(r['ratios'])} ratios for {ncol} columns")
        if r.get("ratio_to") is not None and r["ratio_to"] not in labels:
            raise Invalid(f"{name}: row '{r['label']}': ratio_to '{r['ratio_to']}' is no row")
    for g in c["goals"]:
        if "text" not in g or "met" not in g:
            raise Invalid(f"{name}: a goal needs 'text' and 'met'")
        for i in g.get("columns", []):
            if not 0 <= i < ncol:
                raise Invalid(f"{name}: goal column {i} out of range")
        for i in g.get("rows", []):
            if not 0 <= i < len(c["rows"]):
                raise Invalid(f"{name}: goal row {i} out of range")
    c["_ratios"] = [ratios_of(c, r, name) for r in c["rows"]]
    return c


def ratios_of(c, row, name):
    """The row's ratio per column: as given (checked against its cells) or computed."""
    base = None
    if row.get("ratio_to") is not None:
        base = next(r for r in c["rows"] if r["label"] == row["ratio_to"])
    out = []
    ratio_columns = c.get("ratio_columns", range(len(c["columns"])))
    for i, v in enumerate(row["values"]):
        computed = None
        if i in ratio_columns and base is not None and v is not None and base["values"][i] not in (None, 0) and v != 0:
            b = base["values"][i]
            computed = b / v if c.get("lower_is_better") else v / b
        given = row["ratios"][i] if "ratios" in row else None
        if given is not None and computed is not None and abs(given - computed) > RATIO_TOLERANCE * computed:
            raise Invalid(f"{name}: row '{row['label']}', column '{c['columns'][i]}': ratio {given} "
                          f"but the cells give {computed:.3f}")
        out.append(given if given is not None else computed)
    return out


def load_all():
    files = sorted(f for f in os.listdir(RESULTS) if f.endswith(".json"))
    if not files:
        raise Invalid(f"no results in {RESULTS}")
    return [load(os.path.join(RESULTS, f)) for f in files]


def fmt(x, decimals):
    return "-" if x is None else f"{x:.{decimals}f}"


def table(c):
    """The Markdown block of one comparison (between its markers)."""
    vd = c.get("value_decimals", 2)
    rd = c.get("ratio_decimals", 2)
    out = [f"**{c['what']}** against **{c['against']}**. "
           f"{c['date']}, {c['commit_is']} `{c['commit']}`.", ""]
    out += ["```sh", c["command"], "```", ""]
    ratio_label = c.get("ratio_label", "the ratio to " + c["against"])
    out += [f"Cells: {c['unit']}; in brackets, {ratio_label}.", ""]
    out.append("| setup | " + " | ".join(c["columns"]) + " |")
    out.append("|---" * (len(c["columns"]) + 1) + "|")
    for row, ratios in zip(c["rows"], c["_ratios"]):
        cells = []
        for i, (v, r) in enumerate(zip(row["values"], ratios)):
            s = fmt(v, row.get("decimals", c.get("column_decimals", [vd] * len(c["columns"]))[i]))
            if v is not None and r is not None:
                s += f" (**{r:.{rd}f}x**)"
            cells.append(s)
        out.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    out.append("")
    for g in c["goals"]:
        out.append(f"- Goal: {g['text']} **{verdict(g)}**.")
    for n in c.get("notes", []):
        out.append(f"- {n}")
    alt = f"{c['title']}: {ratio_label}".replace("[", "(").replace("]", ")")
    out += ["", f"![{alt}](bench/plots/{c['id']}.svg)"]
    return "\n".join(out)


def verdict(g):
    return {True: "met", False: "not met"}.get(g["met"], str(g["met"]))


def summary(comparisons):
    """One line per comparison: the range of mswitch's ratios and its goals' verdicts."""
    out = ["| comparison | against | measured | ratio, lowest-highest cell | goals |",
           "|---|---|---|---|---|"]
    for c in comparisons:
        rs = [x for row, ratios in zip(c["rows"], c["_ratios"])
              if row.get("role") not in ("baseline", "reference", "context") for x in ratios if x is not None]
        span = f"{min(rs):.2f}-{max(rs):.2f}x" if rs else "-"
        counts = {}
        for g in c["goals"]:
            counts[verdict(g)] = counts.get(verdict(g), 0) + 1
        goals = ", ".join(f"{n} {v}" for v, n in counts.items()) or "-"
        out.append(f"| {c['short']} | {c['vs']} | {c['date'].split(',')[0]}, `{c['commit']}` "
                   f"| {span} | {goals} |")
    return "\n".join(out)


def svg(c):
    """A grouped bar chart of the ratios: one group per column, one bar per row."""
    rows = [(i, r) for i, r in enumerate(c["rows"])
            if r.get("role") not in ("baseline", "reference")
            and any(x is not None for x in c["_ratios"][i])]
    # Only the columns that have a ratio to draw.
    cols_drawn = [j for j in range(len(c["columns"]))
                  if any(c["_ratios"][i][j] is not None for i, _ in rows)]
    ncol = max(len(cols_drawn), 1)
    nbar = max(len(rows), 1)
    bar_w = max(10, min(56, 520 // (ncol * nbar + ncol)))
    gap = bar_w
    group_w = nbar * bar_w
    left, plot_h = 60, 240
    width = max(640, left + 20 + ncol * (group_w + gap) + gap)
    heading = wrap(c["title"], (width - left) // 9)
    col_lines = {j: wrap(c["columns"][j], max(6, (group_w + gap) // 7)) for j in cols_drawn}
    label_h = 14 * max([len(v) for v in col_lines.values()] + [1])
    sub = wrap(f'{c["date"]}, {c["commit_is"]} {c["commit"]}. Bars: '
               + c.get("ratio_label", "the ratio to " + c["against"]) + ".", (width - left) // 7)
    top = 22 + 18 * len(heading) + 15 * len(sub)
    has_goal = any(g.get("ratio") is not None for g in c["goals"])
    height = top + plot_h + label_h + 26 + 18 * (len(rows) + has_goal) + 12
    ymax = max([1.0] + [x for i, _ in rows for x in c["_ratios"][i] if x is not None]
               + [g["ratio"] for g in c["goals"] if g.get("ratio") is not None])
    ymax = nice_ceiling(ymax * 1.12)

    def y(v):
        return top + plot_h - v / ymax * plot_h

    # mswitch's rows in colour, other switches against the same baseline in grey.
    colors, n = [], 0
    for _, r in rows:
        if r.get("role") == "context":
            colors.append(GREYS[(len(colors) - n) % len(GREYS)])
        else:
            colors.append(COLORS[n % len(COLORS)])
            n += 1

    def bar_x(col, k):
        return left + gap + cols_drawn.index(col) * (group_w + gap) + k * bar_w

    e = []
    e.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">')
    e.append(f'<rect width="{width}" height="{height}" fill="white"/>')
    ty = 0
    for line in heading:
        ty += 18
        e.append(f'<text x="{left}" y="{ty}" font-size="14" font-weight="bold">{escape(line)}</text>')
    ty += 2
    for line in sub:
        ty += 15
        e.append(f'<text x="{left}" y="{ty}" fill="#444">{escape(line)}</text>')
    step = tick_step(ymax)
    t = 0.0
    while t <= ymax + 1e-9:
        yy = y(t)
        e.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{width - 10}" y2="{yy:.1f}" stroke="#e4e4e4"/>')
        e.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" fill="#444">{t:g}</text>')
        t += step
    e.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#444"/>')
    labels = []  # drawn last, above the goal lines
    for k, (i, r) in enumerate(rows):
        color = colors[k]
        for col, v in enumerate(c["_ratios"][i]):
            if v is None or col not in cols_drawn:
                continue
            x = bar_x(col, k)
            e.append(f'<rect x="{x + 1}" y="{y(v):.1f}" width="{bar_w - 2}" height="{y(0) - y(v):.1f}" '
                     f'fill="{color}"><title>{escape(r["label"])}, {escape(c["columns"][col])}: '
                     f'{v:.2f}x</title></rect>')
            if bar_w >= 24:
                labels.append(f'<text x="{x + bar_w / 2:.1f}" y="{y(v) - 3:.1f}" text-anchor="middle" '
                         f'font-size="10">{v:.2f}</text>')
    for col in cols_drawn:
        cx = bar_x(col, 0) + group_w / 2
        for n, line in enumerate(col_lines[col]):
            e.append(f'<text x="{cx:.1f}" y="{top + plot_h + 16 + 14 * n}" text-anchor="middle">'
                     f'{escape(line)}</text>')
    # The baseline: 1.0 across the whole plot.
    e.append(f'<line x1="{left}" y1="{y(1):.1f}" x2="{width - 10}" y2="{y(1):.1f}" stroke="black" '
             f'stroke-width="1.5"/>')
    # Goals: dashed lines over the bars they apply to.
    for g in c["goals"]:
        if g.get("ratio") is None:
            continue
        cols = [j for j in g.get("columns", cols_drawn) if j in cols_drawn]
        ks = [k for k, (i, _) in enumerate(rows) if i in g.get("rows", [i for i, _ in rows])]
        if not ks:
            continue
        for col in cols:
            x1, x2 = bar_x(col, min(ks)) - 3, bar_x(col, max(ks)) + bar_w + 3
            e.append(f'<line x1="{x1:.1f}" y1="{y(g["ratio"]):.1f}" x2="{x2:.1f}" y2="{y(g["ratio"]):.1f}" '
                     f'stroke="#d62728" stroke-width="2" stroke-dasharray="6,3"/>')
    for label in labels:
        e.append(label.replace("<text ", '<text stroke="white" stroke-width="3" paint-order="stroke" ', 1))
    ly = top + plot_h + label_h + 26
    e.append(f'<line x1="{left}" y1="{ly - 4}" x2="{left + 24}" y2="{ly - 4}" stroke="black" stroke-width="1.5"/>')
    base = c.get("baseline_label", c["against"])
    e.append(f'<text x="{left + 30}" y="{ly}">1.0 = {escape(base)}</text>')
    if has_goal:
        ly += 18
        e.append(f'<line x1="{left}" y1="{ly - 4}" x2="{left + 24}" y2="{ly - 4}" stroke="#d62728" '
                 f'stroke-width="2" stroke-dasharray="6,3"/>')
        e.append(f'<text x="{left + 30}" y="{ly}">goal (over the bars it applies to)</text>')
    for k, (i, r) in enumerate(rows):
        ly += 18
        e.append(f'<rect x="{left}" y="{ly - 11}" width="24" height="12" fill="{colors[k]}"/>')
        e.append(f'<text x="{left + 30}" y="{ly}">{escape(r["label"])}</text>')
    e.append("</svg>")
    return "\n".join(e) + "\n"


def wrap(text, width):
    """Lines of at most about `width` characters, broken at spaces."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + [line] if line else lines


def nice_ceiling(v):
    for step in (0.25, 0.5, 1, 2, 5, 10, 20, 50):
        if v / step <= 10:
            return step * -(-v // step)
    return v


def tick_step(ymax):
    for step in (0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 20, 50):
        if ymax / step <= 8:
            return step
    return ymax / 8


def page_with_tables(page, comparisons):
    """BENCHMARKS.md with every generated block replaced; errors for missing or unknown blocks."""
    ids = {c["id"] for c in comparisons}
    order = re.findall(r"<!-- results:([\w-]+) -->", page)
    found = set(order)
    if found - ids:
        raise Invalid(f"BENCHMARKS.md has blocks with no JSON: {', '.join(sorted(found - ids))}")
    if ids - found:
        raise Invalid(f"BENCHMARKS.md lacks blocks for: {', '.join(sorted(ids - found))}")
    pat = re.compile(r"(<!-- results-summary -->\n).*?(<!-- /results-summary -->)", re.S)
    if not pat.search(page):
        raise Invalid("BENCHMARKS.md lacks the <!-- results-summary --> block")
    page = pat.sub(lambda m: m.group(1) + summary(sorted(comparisons, key=lambda c: order.index(c["id"]))) + "\n" + m.group(2), page, count=1)
    for c in comparisons:
        pat = re.compile(rf"(<!-- results:{re.escape(c['id'])} -->\n).*?(<!-- /results:{re.escape(c['id'])} -->)",
                         re.S)
        if not pat.search(page):
            raise Invalid(f"BENCHMARKS.md: block {c['id']} has no end marker")
        page = pat.sub(lambda m: m.group(1) + table(c) + "\n" + m.group(2), page, count=1)
    return page


def broken_links(pages):
    """Relative Markdown links and images in these pages whose target is missing."""
    bad = []
    for page in pages:
        try:
            with open(page, encoding="utf-8") as f:
                text = f.read()
        except OSError as err:
            bad.append(f"{os.path.relpath(page, ROOT)}: {err.strerror}")
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = os.path.join(os.path.dirname(page), target.split("#")[0])
            if not os.path.exists(path):
                bad.append(f"{os.path.relpath(page, ROOT)}: broken link {target}")
    return bad


def main(argv):
    mode = argv[1] if len(argv) > 1 else "--plots"
    if mode not in ("--plots", "--tables", "--check") or len(argv) > 2:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        comparisons = load_all()
        with open(PAGE, encoding="utf-8") as f:
            page = f.read()
        new_page = page_with_tables(page, comparisons)
    except (Invalid, OSError, ValueError, KeyError, TypeError) as err:
        print(f"plot-benchmarks: {err}", file=sys.stderr)
        return 1
    if mode == "--check":
        bad = []
        if new_page != page:
            bad.append("BENCHMARKS.md tables differ from bench/results (run scripts/plot-benchmarks.py --tables)")
        for c in comparisons:
            path = os.path.join(PLOTS, c["id"] + ".svg")
            try:
                with open(path, encoding="utf-8") as f:
                    same = f.read() == svg(c)
            except OSError:
                same = False
            if not same:
                bad.append(f"bench/plots/{c['id']}.svg is missing or stale (run scripts/plot-benchmarks.py)")
        bad += broken_links([PAGE, os.path.join(ROOT, "docs", "lab-notes.md")])
        for b in bad:
            print(f"plot-benchmarks: {b}", file=sys.stderr)
        return 1 if bad else 0
    if mode == "--tables":
        if new_page != page:
            with open(PAGE, "w", encoding="utf-8") as f:
                f.write(new_page)
        return 0
    os.makedirs(PLOTS, exist_ok=True)
    for c in comparisons:
        with open(os.path.join(PLOTS, c["id"] + ".svg"), "w", encoding="utf-8") as f:
            f.write(svg(c))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
