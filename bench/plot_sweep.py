#!/usr/bin/env python3
"""Plot a bench/cluster_sweep.sh CSV as an SVG: committed and uploaded events/s and the ack p99
against connections, one line per binary (the mean of its rounds; every run is a dot). A dashed
line marks 80 % of the single-aggregator end-to-end rate of each binary (the goal of issue 14),
when the CSV has it. Stdlib only (SVG written by hand).

Usage: bench/plot_sweep.py SWEEP.csv OUT.svg [TITLE]
"""
import csv
import sys
from collections import defaultdict
from xml.sax.saxutils import escape

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
W, H = 360, 260  # one panel
ML, MR, MT, MB = 64, 16, 40, 44


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def panel(x0, title, ylabel, series, conns, goal=None):
    """series: [(label, color, {conn: [values]})]; goal: [(label, color, value)]"""
    values = [v for _, _, pts in series for vs in pts.values() for v in vs]
    values += [g for _, _, g in goal or []]
    ymax = max(values or [1]) * 1.1
    pw, ph = W - ML - MR, H - MT - MB

    def px(i):
        return x0 + ML + (pw * (i + 0.5) / len(conns))

    def py(v):
        return MT + ph - ph * v / ymax

    out = ['<text x="%g" y="20" font-size="13" font-weight="bold">%s</text>' % (x0 + ML, escape(title))]
    out.append('<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#999"/>' % (x0 + ML, MT, pw, ph))
    for k in range(5):
        v = ymax * k / 4
        y = py(v)
        label = "%.0fk" % (v / 1e3) if ymax > 5000 else "%.0f" % v
        out.append('<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="#eee"/>' % (x0 + ML, x0 + ML + pw, y, y))
        out.append('<text x="%g" y="%g" font-size="10" text-anchor="end">%s</text>' % (x0 + ML - 4, y + 3, label))
    for i, c in enumerate(conns):
        out.append('<text x="%g" y="%g" font-size="10" text-anchor="middle">%s</text>' % (px(i), MT + ph + 14, c))
    out.append('<text x="%g" y="%g" font-size="11" text-anchor="middle">connections (1 chunk in flight each)</text>'
               % (x0 + ML + pw / 2, MT + ph + 32))
    out.append('<text x="%g" y="%g" font-size="11" text-anchor="middle" transform="rotate(-90 %g %g)">%s</text>'
               % (x0 + 14, MT + ph / 2, x0 + 14, MT + ph / 2, escape(ylabel)))
    for label, color, g in goal or []:
        out.append('<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="%s" stroke-dasharray="5,4"/>'
                   % (x0 + ML, x0 + ML + pw, py(g), py(g), color))
    for label, color, pts in series:
        line = []
        for i, c in enumerate(conns):
            vs = pts.get(c, [])
            for v in vs:
                out.append('<circle cx="%g" cy="%g" r="2.5" fill="%s" fill-opacity="0.5"/>' % (px(i), py(v), color))
            if vs:
                line.append("%g,%g" % (px(i), py(sum(vs) / len(vs))))
        out.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>' % (" ".join(line), color))
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else "bench/cluster_sweep.sh"
    rows = list(csv.DictReader(open(src)))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    conns = sorted({int(r["connections"]) for r in rows})
    color = {l: COLORS[i % len(COLORS)] for i, l in enumerate(labels)}

    def series(key, scale=1.0):
        out = []
        for l in labels:
            pts = defaultdict(list)
            for r in rows:
                v = num(r[key])
                if r["label"] == l and v is not None:
                    pts[int(r["connections"])].append(v * scale)
            out.append((l, color[l], pts))
        return out

    goal = []
    for l in labels:
        singles = [num(r["single_events_per_s"]) for r in rows if r["label"] == l and num(r["single_events_per_s"])]
        if singles:
            goal.append((l, color[l], 0.8 * sum(singles) / len(singles)))
    parts = []
    parts += panel(0, "committed (acked) events/s", "events/s", series("committed_events_per_s"), conns, goal)
    parts += panel(W, "uploaded events/s", "events/s", series("uploaded_events_per_s"), conns, goal)
    parts += panel(2 * W, "ack latency p99", "ms", series("ack_p99_ms"), conns, [("goal", "#666", 50.0)])
    legend_y = H + 8
    for i, l in enumerate(labels):
        x = 10 + i * 220
        parts.append('<rect x="%d" y="%d" width="14" height="4" fill="%s"/>' % (x, legend_y, color[l]))
        parts.append('<text x="%d" y="%d" font-size="11">%s</text>' % (x + 20, legend_y + 6, escape(l)))
    parts.append('<text x="%d" y="%d" font-size="10" fill="#555">%s; dashed: 80 %% of the single-aggregator '
                 'end-to-end rate of the same binary (events/s panels), 50 ms (p99 panel)</text>'
                 % (10, legend_y + 22, escape(title)))
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">'
           % (3 * W, H + 40), '<rect width="100%" height="100%" fill="white"/>'] + parts + ["</svg>"]
    with open(dst, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
