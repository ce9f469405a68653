#!/usr/bin/env python3
"""Plot A/B benchmark runs as an SVG: one panel per measurement, one column of dots per
variant (each dot a run, the bar its mean), so the spread between identical runs is visible
next to the difference between variants.

Reads the saved output of the bench scripts (the `=== <script> ... <VAR>=<value> round N`
headers that the A/B loops in docs/benchmarks.md print before each run) and writes SVG by
hand (stdlib only).

Usage: bench/plot_pairs.py OUT.svg LOG [LOG...]
"""
import re
import sys
from collections import defaultdict
from xml.sax.saxutils import escape

# (script, line prefix that holds the figure, key, panel title, variable names)
PANELS = [
    ("forwarder.sh", "events=", "events_per_s", "forwarder.sh|ingest events/s", {"0": "metrics off", "1": "metrics on"}),
    ("forward_e2e.sh", "end_to_end", "end_to_end_events_per_s", "forward_e2e.sh|end-to-end events/s", {"0": "metrics off", "1": "metrics on"}),
    ("cluster_e2e.sh", "direct, until every chunk was acked", "events_per_s", "cluster_e2e.sh direct|committed events/s", {"0": "plaintext", "1": "mutual TLS"}),
    ("cluster_e2e.sh", "direct, until every chunk was uploaded", "events_per_s", "cluster_e2e.sh direct|uploaded events/s", {"0": "plaintext", "1": "mutual TLS"}),
    ("cluster_e2e.sh", "forwarder, until the forwarder's buffer", "events_per_s", "cluster_e2e.sh via forwarder|committed events/s", {"0": "plaintext", "1": "mutual TLS"}),
]


def parse(paths):
    """{(script, prefix, key): {variant: [values]}}"""
    data = defaultdict(lambda: defaultdict(list))
    for path in paths:
        script = variant = None
        for line in open(path):
            m = re.match(r"=== (\S+) .*?\b(?:METRICS|TLS)=(\d)", line)
            if m:
                script, variant = m.group(1), m.group(2)
                seen = set()
                continue
            if script is None:
                continue
            for s, prefix, key, _, _ in PANELS:
                if s == script and line.startswith(prefix) and (prefix, key) not in seen:
                    m = re.search(r"\b%s=([\d.]+)" % key, line)
                    if m:
                        seen.add((prefix, key))
                        data[(s, prefix, key)][variant].append(float(m.group(1)))
    return data


def fmt(v):
    return "%.2f M" % (v / 1e6) if v >= 1e6 else "%.0f k" % (v / 1e3)


def svg(data):
    panels = [p for p in PANELS if data.get(p[:3])]
    pw, ph, top, left = 240, 300, 50, 20
    width = left * 2 + pw * len(panels)
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">' % (width, ph + top + 40),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="22" font-size="14" font-weight="bold">A/B runs, alternating back to back (dots: runs, bars: means; axes start at 0)</text>' % left]
    for i, (script, prefix, key, title, names) in enumerate(panels):
        runs = data[(script, prefix, key)]
        x0 = left + i * pw
        vmax = max(v for vs in runs.values() for v in vs) * 1.15
        base = top + ph - 30
        scale = (ph - 60) / vmax
        for n, part in enumerate(title.split("|")):
            out.append('<text x="%d" y="%d" text-anchor="middle" font-weight="%s">%s</text>'
                       % (x0 + pw // 2, top + 14 * n, "bold" if n == 0 else "normal", escape(part)))
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>' % (x0 + 20, base, x0 + pw - 20, base))
        for j, variant in enumerate(sorted(runs)):
            vs = runs[variant]
            mean = sum(vs) / len(vs)
            cx = x0 + 60 + j * 100
            colour = ["#7aa6d6", "#e39a5c"][j % 2]
            out.append('<rect x="%d" y="%.1f" width="60" height="%.1f" fill="%s" opacity="0.6"/>' % (cx - 30, base - mean * scale, mean * scale, colour))
            for k, v in enumerate(vs):
                out.append('<circle cx="%d" cy="%.1f" r="3" fill="black"><title>%s</title></circle>' % (cx - 15 + (k * 30) // max(1, len(vs) - 1), base - v * scale, fmt(v)))
            out.append('<text x="%d" y="%.1f" text-anchor="middle" font-weight="bold">%s</text>' % (cx, base - mean * scale / 2, fmt(mean)))
            out.append('<text x="%d" y="%d" text-anchor="middle">%s (%d)</text>' % (cx, base + 15, escape(names.get(variant, variant)), len(vs)))
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    with open(sys.argv[1], "w") as f:
        f.write(svg(parse(sys.argv[2:])))
