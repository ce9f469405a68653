#!/usr/bin/env python3
"""Plot bench/cluster_backlog.py RSS CSVs as one SVG: a panel per run, each node's RSS over time
(solid) and, when the CSV has them, its anonymous part (dotted; the rest is the program text
mapped from the page cache) and the heap's live bytes as jemalloc counts them (dash-dot), the phases (load: bucket unreachable while the backlog is
committed; held; drain: bucket back) shaded, and the 64 MB goal of issue 14 as a dashed line.
Stdlib only (SVG written by hand).

Usage: bench/plot_backlog.py OUT.svg LABEL=RUN.csv [LABEL=RUN.csv ...]
"""
import csv
import sys
from xml.sax.saxutils import escape

COLORS = ["#1f77b4", "#d62728", "#2ca02c"]
PHASE_FILL = {"load": "#fbe9e7", "held": "#fff8e1", "drain": "#e8f5e9"}
W, H = 420, 260  # one panel
ML, MR, MT, MB = 56, 12, 36, 40
LIMIT_MB = 64.0


def read(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    # The sampler restarts its clock once; keep rows in file order with a running time.
    out, offset, last = [], 0.0, None
    for r in rows:
        t = float(r["seconds"])
        if last is not None and t < last:
            offset += last
        last = t
        out.append((t + offset, r))
    return out


def panel(x0, title, rows, ymax):
    tmax = max(t for t, _ in rows) or 1.0
    pw, ph = W - ML - MR, H - MT - MB
    sx = lambda t: x0 + ML + t / tmax * pw
    sy = lambda v: MT + ph - v / ymax * ph
    parts = ['<text x="%.1f" y="20" font-size="13" font-weight="bold">%s</text>' % (x0 + ML, escape(title))]
    # Phases.
    start, phase = rows[0][0], rows[0][1]["phase"]
    for i, (t, r) in enumerate(rows + [(tmax, {"phase": None})]):
        if r["phase"] != phase or i == len(rows):
            if phase in PHASE_FILL:
                parts.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>' % (
                    sx(start), MT, max(sx(t) - sx(start), 0.5), ph, PHASE_FILL[phase]))
                parts.append('<text x="%.1f" y="%d" font-size="10" fill="#666">%s</text>' % (
                    sx(start) + 2, MT + 11, phase))
            start, phase = t, r["phase"]
    # Axes and grid.
    step = 10 if ymax <= 120 else 20
    v = 0
    while v <= ymax:
        parts.append('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (sx(0), sx(tmax), sy(v), sy(v)))
        parts.append('<text x="%.1f" y="%.1f" font-size="10" text-anchor="end">%d</text>' % (sx(0) - 4, sy(v) + 3, v))
        v += step
    for k in range(0, 6):
        t = tmax * k / 5
        parts.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%d</text>' % (sx(t), H - MB + 14, t))
    parts.append('<text x="%.1f" y="%d" font-size="11" text-anchor="middle">seconds</text>' % (x0 + ML + pw / 2, H - 8))
    parts.append('<text x="%.1f" y="%.1f" font-size="11" transform="rotate(-90 %.1f %.1f)" text-anchor="middle">RSS MB</text>' % (
        x0 + 14, MT + ph / 2, x0 + 14, MT + ph / 2))
    parts.append('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#000" stroke-dasharray="6,4"/>' % (
        sx(0), sx(tmax), sy(LIMIT_MB), sy(LIMIT_MB)))
    parts.append('<text x="%.1f" y="%.1f" font-size="10" text-anchor="end">64 MB</text>' % (sx(tmax) - 2, sy(LIMIT_MB) - 3))
    # Series.
    for n in range(3):
        color = COLORS[n]
        for key, dash in (("node%d_rss_mb" % (n + 1), ""), ("node%d_rss_anon_mb" % (n + 1), ' stroke-dasharray="2,2"'),
                          ("node%d_heap_allocated_mb" % (n + 1), ' stroke-dasharray="7,2,2,2"')):
            pts = [(t, float(r[key])) for t, r in rows if r.get(key) not in (None, "")]
            if not pts:
                continue
            d = " ".join("%.1f,%.1f" % (sx(t), sy(v)) for t, v in pts)
            parts.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="1.3"%s/>' % (d, color, dash))
        peak = max((float(r["node%d_rss_mb" % (n + 1)]) for _, r in rows), default=0)
        parts.append('<text x="%.1f" y="%d" font-size="10" fill="%s">node %d peak %.1f</text>' % (
            x0 + ML + 4 + n * 118, H - MB + 28, color, n + 1, peak))
    return parts


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, runs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
    data = [(label, read(path)) for label, path in runs]
    ymax = max(LIMIT_MB, max(float(r["node%d_rss_mb" % (n + 1)]) for _, rows in data for _, r in rows for n in range(3))) * 1.1
    parts = []
    for i, (label, rows) in enumerate(data):
        parts += panel(i * W, label, rows, ymax)
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">' % (W * len(data), H + 10),
           '<rect width="100%" height="100%" fill="white"/>'] + parts + [
           '<text x="8" y="%d" font-size="10" fill="#444">solid: RSS; dotted: its anonymous part (the rest is program text mapped from the page cache); dash-dot: live heap (jemalloc allocated)</text>' % (H + 6),
           "</svg>"]
    with open(out, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
