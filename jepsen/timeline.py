#!/usr/bin/env python3
"""SVG timeline of one jepsen run ("a picture per run").

Owns: turning a run's records into one self-contained SVG drawn by hand (stdlib only, no
plotting library): the nemesis fault windows as shaded bands labelled by kind (result.json
`nemesis_ops`), acknowledged events per second and ack latency p50/p99 per second (history.jsonl
records, by the second their ack came), chunks that ended failed or unknown and the run's
anomalies as marks, and who led the cluster over time (result.json `leader_watch`, polled by the
harness; older runs without it show the leaders the nemesis saw at its faults).

Must not: run or poll anything, judge the run (the checker does) or change the records it reads.

    python3 jepsen/timeline.py WORKDIR [-o OUT.svg]    # default WORKDIR/timeline.svg
"""

import argparse
import json
import math
import os
import re
import sys
from xml.sax.saxutils import escape, quoteattr

WIDTH, HEIGHT = 1200, 600
LEFT, RIGHT = 80, 1180  # plot area, x
TITLE_Y, SUBTITLE_Y = 20, 38
LABELS_TOP = 46  # fault labels: two staggered rows above the panels
ACKS_TOP, ACKS_BOTTOM = 80, 245
LAT_TOP, LAT_BOTTOM = 260, 425
MARKS_Y = 440  # failed / unknown outcomes, anomalies
LEADER_TOP, LEADER_BOTTOM = 455, 475
AXIS_Y = LEADER_BOTTOM + 4
LEGEND_Y = 538  # up to three rows of legend, then a note at the bottom
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"

KIND_COLORS = {
    "kill": "#e45756",
    "pause": "#4c78a8",
    "partition": "#f58518",
    "disk-loss": "#b279a2",
    "power-loss": "#9d755d",
    "poison": "#72b7b2",
    "s3": "#eeca3b",
    "majority-loss": "#d62728",
    "double-fault": "#8c564b",
    "leader-disk-loss": "#9467bd",
}
OTHER_KIND_COLOR = "#888888"
ACK_COLOR = "#54a24b"
P50_COLOR = "#1f1f1f"
P99_COLOR = "#1f1f1f"
FAIL_COLOR = "#c00000"
UNKNOWN_COLOR = "#e08000"
ANOMALY_COLOR = "#8b0000"
NODE_COLORS = ["#a0cbe8", "#f1ce63", "#ff9d9a", "#86bcb6", "#d4a6c8", "#b6992d", "#79706e",
               "#d7b5a6", "#ffbe7d", "#bab0ac"]
# Phases that end a fault window (anything else after "start" extends it, e.g. disk-loss's
# old-id-refused / joined before its replaced).
END_PHASES = ("heal", "replaced", "replace-failed", "join-failed")


# ---------------------------------------------------------------------------------------------
# data


def fault_windows(ops, t_end):
    """One window per nemesis fault, in start order: dict(kind, t0, t1, target, open, steps).
    A fault's later records (same kind and slot; a "during" view: the latest open fault of its
    kind) extend it until one of END_PHASES closes it. A fault never healed (an interrupted
    run) is `open` and ends at `t_end`. Faults may overlap."""
    windows = []
    open_ = {}  # (kind, slot) -> window
    for op in ops:
        kind, phase, t = op.get("kind", "?"), op.get("phase"), op.get("t")
        if t is None or phase == "skipped":
            continue
        key = (kind, op.get("slot"))
        if phase == "start":
            if key in open_:
                open_.pop(key)["open"] = True  # started again before it was healed
            node = op.get("node_id")
            target = "n%s" % node if isinstance(node, int) else (node or "")
            if op.get("target") == "leader":
                target += " (leader)"
            w = dict(kind=kind, t0=t, t1=None, target=target, open=False, steps=[("start", t)])
            open_[key] = w
            windows.append(w)
            continue
        w = open_.get(key)
        if w is None and phase == "during":
            same = [v for k, v in open_.items() if k[0] == kind]
            w = max(same, key=lambda v: v["t0"]) if same else None
        if w is None:
            continue
        w["steps"].append((phase, t))
        if phase != "during":
            w["t1"] = t
        if phase in END_PHASES:
            open_ = {k: v for k, v in open_.items() if v is not w}
    for w in open_.values():
        w["open"] = True
    for w in windows:
        if w["open"] or w["t1"] is None:
            w["t1"] = max(t_end, w["t0"])
    return windows


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list (non-empty)."""
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def per_second(history):
    """By the second of completion: ({second: acked events}, {second: [latencies of acked
    chunks]}, {second: failed chunks}, {second: unknown chunks})."""
    acks, lat, failed, unknown = {}, {}, {}, {}
    for r in history:
        t = r.get("t_complete")
        if t is None:
            continue
        b = int(math.floor(t))
        outcome = r.get("outcome")
        if outcome == "ok":
            acks[b] = acks.get(b, 0) + r.get("count", 0)
            lat.setdefault(b, []).append(max(0.0, t - r.get("t_invoke", t)))
        elif outcome == "fail":
            failed[b] = failed.get(b, 0) + 1
        elif outcome == "unknown":
            unknown[b] = unknown.get(b, 0) + 1
    for v in lat.values():
        v.sort()
    return acks, lat, failed, unknown


def leader_segments(watch, t_end):
    """From the harness's leader poll (`leader_watch`): [(t0, t1, node_id or None, term)], one
    per change; None: no node said it leads."""
    changes = watch.get("changes") or []
    until = watch.get("until") or t_end
    segs = []
    for i, c in enumerate(changes):
        t1 = changes[i + 1]["t"] if i + 1 < len(changes) else until
        segs.append((c["t"], max(t1, c["t"]), c.get("node_id"), c.get("term")))
    return segs


def leaders_seen_at_faults(ops):
    """Fallback for runs without `leader_watch`: [(t, node_id, term)] from the views the nemesis
    recorded during its faults (the node that says it leads with the highest term)."""
    seen = []
    for op in ops:
        views = op.get("views")
        if not isinstance(views, dict):
            continue
        best = None
        for v in views.values():
            w = (v or "").split()  # "node 2 Leader term 6 leader 2"
            if len(w) >= 5 and w[2] == "Leader":
                try:
                    node, term = int(w[1]), int(w[4])
                except ValueError:
                    continue
                if best is None or term > best[1]:
                    best = (node, term)
        if best:
            seen.append((op["t"], best[0], best[1]))
    return seen


def nice_step(span, target_ticks):
    """A 1/2/5 x 10^k step giving about `target_ticks` ticks over `span`."""
    if span <= 0:
        return 1
    raw = span / float(target_ticks)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def fmt_count(v):
    if v >= 1000000:
        return "%gM" % round(v / 1e6, 2)
    if v >= 1000:
        return "%gk" % round(v / 1e3, 2)
    return "%g" % v


def fmt_secs(v):
    if v < 1:
        return "%g ms" % round(v * 1000, 3)
    return "%g s" % v


def node_label(node):
    return "n%s" % node if isinstance(node, int) else str(node)


# ---------------------------------------------------------------------------------------------
# drawing


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(v):
    """`v` as text XML 1.0 can hold (control characters dropped), not yet escaped."""
    return _NOT_XML.sub("", str(v))


class Svg:
    def __init__(self):
        self.parts = []

    def el(self, tag, text=None, title=None, **attrs):
        """One element; attribute names with `_` for `-` (`class_` for `class`); text and
        attribute values escaped."""
        a = "".join(" %s=%s" % (k.rstrip("_").replace("_", "-"), quoteattr(xml_text(v)))
                    for k, v in attrs.items() if v is not None)
        inner = (("<title>%s</title>" % escape(xml_text(title))) if title else "") + \
            (escape(xml_text(text)) if text is not None else "")
        self.parts.append("<%s%s>%s</%s>" % (tag, a, inner, tag) if inner else "<%s%s/>" % (tag, a))

    def raw(self, s):
        self.parts.append(s)

    def text(self, x, y, s, size=11, anchor="start", color="#222", title=None, **attrs):
        self.el("text", s, title=title, x=r1(x), y=r1(y), font_size=size, text_anchor=anchor,
                fill=color, **attrs)


def r1(v):
    return round(v, 1)


def render(result, history, title=None):
    """The run's timeline as SVG text."""
    ops = result.get("nemesis_ops") or []
    anomalies = [a for a in result.get("anomalies") or [] if a.get("t") is not None]
    watch = result.get("leader_watch") or {}
    acks, lat, failed, unknown = per_second(history)

    times = [r["t_complete"] for r in history if r.get("t_complete") is not None]
    times += [r["t_invoke"] for r in history if r.get("t_invoke") is not None]
    times += [o["t"] for o in ops if o.get("t") is not None]
    times += [a["t"] for a in anomalies]
    times += [c["t"] for c in watch.get("changes") or []]
    if watch.get("until"):
        times.append(watch["until"])
    t_lo = max(0.0, math.floor(min(times)) - 1) if times else 0.0
    t_hi = math.ceil(max(times)) + 1 if times else 10.0
    if t_hi - t_lo < 5:
        t_hi = t_lo + 5

    def x(t):
        return LEFT + (t - t_lo) * (RIGHT - LEFT) / (t_hi - t_lo)

    windows = fault_windows(ops, t_hi)
    svg = Svg()
    svg.raw('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
            'font-family=%s>' % (WIDTH, HEIGHT, WIDTH, HEIGHT, quoteattr(FONT)))
    svg.el("rect", x=0, y=0, width=WIDTH, height=HEIGHT, fill="#ffffff")

    # -- title and one line of numbers
    if title is None:
        title = "lograft jepsen run %s" % os.path.basename(str(result.get("workdir", "")).rstrip("/"))
    svg.text(LEFT, TITLE_Y, title, size=15, font_weight="bold")
    svg.text(LEFT, SUBTITLE_Y, subtitle(result, windows), size=11, color="#444")

    # -- fault bands (behind everything) and their labels, in two staggered rows
    row_end = [-1e9, -1e9]
    for i, w in enumerate(windows):
        color = KIND_COLORS.get(w["kind"], OTHER_KIND_COLOR)
        x0, x1 = x(w["t0"]), x(w["t1"])
        tip = "%s %s: %.2f-%.2f s (%.1f s)%s; %s" % (
            w["kind"], w["target"], w["t0"], w["t1"], w["t1"] - w["t0"],
            " NOT HEALED" if w["open"] else "",
            ", ".join("%s %.2f" % s for s in w["steps"]))
        svg.el("rect", title=tip, class_="fault fault-%s" % w["kind"], x=r1(x0), y=LABELS_TOP,
               width=r1(max(1.0, x1 - x0)), height=LEADER_BOTTOM - LABELS_TOP, fill=color,
               fill_opacity=0.18)
        # Two rows of labels: one may reach to where the window after next starts; else just
        # the kind; a label that finds no free row is left out (the band's colour and tooltip
        # still say what it was).
        label = "%s %s" % (w["kind"], w["target"].replace(" (leader)", "*"))
        room = x(windows[i + 2]["t0"]) - x0 if i + 2 < len(windows) else RIGHT - x0
        if 6.0 * len(label) + 6 > room:
            label = w["kind"]
        row = next((k for k, end in enumerate(row_end) if end <= x0), None)
        if row is not None:
            row_end[row] = x0 + 6.0 * len(label) + 6
            svg.text(x0 + 2, LABELS_TOP + 12 + 15 * row, label, size=10, color=darker(color),
                     class_="fault-label")
        if w["open"]:
            svg.el("line", x1=r1(x1), x2=r1(x1), y1=LABELS_TOP, y2=LEADER_BOTTOM, stroke=color,
                   stroke_dasharray="4 3")

    # -- panel 1: acked events per second (a step area over every second of the run)
    ymax_acks = max(acks.values()) if acks else 1
    step = max(1, nice_step(ymax_acks, 4))
    top_acks = step * math.ceil(ymax_acks / float(step)) or step

    def ya(v):
        return ACKS_BOTTOM - v * (ACKS_BOTTOM - ACKS_TOP) / float(top_acks)

    panel_frame(svg, ACKS_TOP, ACKS_BOTTOM, "acked events/s")
    v = 0
    while v <= top_acks + 1e-9:
        svg.el("line", x1=LEFT, x2=RIGHT, y1=r1(ya(v)), y2=r1(ya(v)), stroke="#e4e4e4")
        svg.text(LEFT - 6, ya(v) + 4, fmt_count(v), size=10, anchor="end", color="#555")
        v += step
    if history:
        first = int(math.floor(min(r["t_invoke"] for r in history if "t_invoke" in r)))
        last = int(math.floor(max(r["t_complete"] for r in history if "t_complete" in r)))
        pts = ["M%s,%s" % (r1(x(first)), r1(ya(0)))]
        for b in range(first, last + 1):
            y = r1(ya(acks.get(b, 0)))
            pts.append("L%s,%s L%s,%s" % (r1(x(b)), y, r1(x(b + 1)), y))
        pts.append("L%s,%s Z" % (r1(x(last + 1)), r1(ya(0))))
        svg.el("path", class_="acks", d=" ".join(pts), fill=ACK_COLOR, fill_opacity=0.55,
               stroke=ACK_COLOR, stroke_width=1)

    # -- panel 2: ack latency p50 / p99 per second, log scale
    lo_v = min((v[0] for v in lat.values()), default=0.01)
    hi_v = max((v[-1] for v in lat.values()), default=1.0)
    lo_dec = math.floor(math.log10(max(lo_v, 0.001)))
    hi_dec = max(lo_dec + 1, math.ceil(math.log10(max(hi_v, 0.001))))

    def yl(v):
        lv = math.log10(max(v, 10 ** lo_dec))
        return LAT_BOTTOM - (lv - lo_dec) * (LAT_BOTTOM - LAT_TOP) / float(hi_dec - lo_dec)

    panel_frame(svg, LAT_TOP, LAT_BOTTOM, "ack latency (log)")
    for d in range(lo_dec, hi_dec + 1):
        svg.el("line", x1=LEFT, x2=RIGHT, y1=r1(yl(10 ** d)), y2=r1(yl(10 ** d)), stroke="#d8d8d8")
        svg.text(LEFT - 6, yl(10 ** d) + 4, fmt_secs(10 ** d), size=10, anchor="end", color="#555")
        if d < hi_dec:
            for m in (2, 5):
                svg.el("line", x1=LEFT, x2=RIGHT, y1=r1(yl(m * 10 ** d)), y2=r1(yl(m * 10 ** d)),
                       stroke="#f0f0f0")
    for name, p, color, dash, width in (("lat-p99", 99, P99_COLOR, "5 3", 1.2),
                                        ("lat-p50", 50, P50_COLOR, None, 1.6)):
        segs, seg = [], []
        for b in sorted(lat):
            if seg and b != seg[-1][0] + 1:
                segs.append(seg)
                seg = []
            seg.append((b, percentile(lat[b], p)))
        if seg:
            segs.append(seg)
        d = []
        for s in segs:
            if len(s) == 1:  # a lone second: a short flat stroke so it shows
                b, v = s[0]
                d.append("M%s,%s L%s,%s" % (r1(x(b)), r1(yl(v)), r1(x(b + 1)), r1(yl(v))))
            else:
                d.append("M" + " L".join("%s,%s" % (r1(x(b + 0.5)), r1(yl(v))) for b, v in s))
        if d:
            svg.el("path", class_=name, d=" ".join(d), fill="none", stroke=color,
                   stroke_width=width, stroke_dasharray=dash, stroke_linejoin="round")

    # -- marks: failed and unknown chunks (per second, with a count), anomalies
    svg.text(LEFT - 6, MARKS_Y + 4, "outcomes", size=10, anchor="end", color="#555")
    svg.el("line", x1=LEFT, x2=RIGHT, y1=MARKS_Y, y2=MARKS_Y, stroke="#eeeeee")
    for b, n in sorted(unknown.items()):
        cx = x(b + 0.5)
        svg.el("path", class_="mark-unknown", title="%d unknown chunk(s) at %d-%d s" % (n, b, b + 1),
               d="M%s,%s l5,5 l-5,5 l-5,-5 Z" % (r1(cx), MARKS_Y - 5), fill=UNKNOWN_COLOR)
        if n > 1:
            svg.text(cx + 6, MARKS_Y - 2, str(n), size=9, color=UNKNOWN_COLOR)
    for b, n in sorted(failed.items()):
        cx = x(b + 0.5)
        svg.el("path", class_="mark-fail", title="%d chunk(s) never delivered at %d-%d s" % (n, b, b + 1),
               d="M%s,%s l8,8 m0,-8 l-8,8" % (r1(cx - 4), MARKS_Y - 4), stroke=FAIL_COLOR,
               stroke_width=2)
        if n > 1:
            svg.text(cx + 6, MARKS_Y + 9, str(n), size=9, color=FAIL_COLOR)
    for a in anomalies:
        cx = x(a["t"])
        detail = {k: v for k, v in a.items() if k not in ("kind", "t", "log_tail", "leader_status")}
        svg.el("line", x1=r1(cx), x2=r1(cx), y1=ACKS_TOP, y2=MARKS_Y - 6, stroke=ANOMALY_COLOR,
               stroke_width=1, stroke_dasharray="2 3")
        svg.el("path", class_="anomaly",
               title="anomaly %s at %.2f s %s" % (a["kind"], a["t"], json.dumps(detail, default=str)[:300]),
               d="M%s,%s l5,9 l-10,0 Z" % (r1(cx), MARKS_Y - 5), fill=ANOMALY_COLOR)

    # -- leader lane
    svg.text(LEFT - 6, LEADER_TOP + 14, "leader", size=10, anchor="end", color="#555")
    svg.el("rect", x=LEFT, y=LEADER_TOP, width=RIGHT - LEFT, height=LEADER_BOTTOM - LEADER_TOP,
           fill="none", stroke="#dddddd")
    nodes = []
    if watch.get("changes"):
        for t0, t1, node, term in leader_segments(watch, t_hi):
            x0, x1 = x(t0), x(t1)
            if node is None:
                svg.el("rect", class_="leader leader-none", title="no leader %.2f-%.2f s" % (t0, t1),
                       x=r1(x0), y=LEADER_TOP, width=r1(max(0.5, x1 - x0)),
                       height=LEADER_BOTTOM - LEADER_TOP, fill="#ffffff", stroke=FAIL_COLOR,
                       stroke_width=0.8)
                continue
            if node not in nodes:
                nodes.append(node)
            color = NODE_COLORS[nodes.index(node) % len(NODE_COLORS)]
            label = "%s t%s" % (node_label(node), term)
            svg.el("rect", class_="leader", title="leader %s (term %s) %.2f-%.2f s" % (
                node_label(node), term, t0, t1), x=r1(x0), y=LEADER_TOP,
                width=r1(max(0.5, x1 - x0)), height=LEADER_BOTTOM - LEADER_TOP, fill=color,
                stroke="#ffffff", stroke_width=0.5)
            if x1 - x0 > 6.5 * len(label):
                svg.text((x0 + x1) / 2, LEADER_TOP + 14, label, size=10, anchor="middle")
        for c in watch.get("changes")[1:]:
            svg.el("line", class_="leader-change", x1=r1(x(c["t"])), x2=r1(x(c["t"])),
                   y1=LEADER_TOP - 3, y2=LEADER_BOTTOM + 3, stroke="#333333", stroke_width=1)
    else:
        seen = leaders_seen_at_faults(ops)
        for t, node, term in seen:
            if node not in nodes:
                nodes.append(node)
            color = NODE_COLORS[nodes.index(node) % len(NODE_COLORS)]
            svg.el("circle", class_="leader-seen", title="leader %s (term %s) seen at %.2f s" % (
                node_label(node), term, t), cx=r1(x(t)), cy=(LEADER_TOP + LEADER_BOTTOM) / 2, r=5,
                fill=color, stroke="#333333", stroke_width=0.6)
            svg.text(x(t) + 7, LEADER_TOP + 14, "%s t%s" % (node_label(node), term), size=9)

    # -- x axis
    svg.el("line", x1=LEFT, x2=RIGHT, y1=AXIS_Y, y2=AXIS_Y, stroke="#333333")
    step = nice_step(t_hi - t_lo, 14)
    t = math.ceil(t_lo / step) * step
    while t <= t_hi + 1e-9:
        svg.el("line", x1=r1(x(t)), x2=r1(x(t)), y1=AXIS_Y, y2=AXIS_Y + 5, stroke="#333333")
        svg.el("line", x1=r1(x(t)), x2=r1(x(t)), y1=ACKS_TOP, y2=LAT_BOTTOM, stroke="#000000",
               stroke_opacity=0.06)
        svg.text(x(t), AXIS_Y + 17, "%g" % t, size=10, anchor="middle", color="#333")
        t += step
    svg.text((LEFT + RIGHT) / 2, AXIS_Y + 34, "run time (s, since the harness started; "
             "latency and outcomes by the second the chunk completed)", size=11, anchor="middle")

    legend(svg, windows, nodes, bool(watch.get("changes")))
    svg.raw("</svg>")
    return "\n".join(svg.parts) + "\n"


def subtitle(r, windows):
    kinds = {}
    for w in windows:
        kinds[w["kind"]] = kinds.get(w["kind"], 0) + 1
    parts = []
    if "acked_events" in r:
        parts.append("acked %s events (%s chunks)" % (r["acked_events"], r.get("acked_chunks", "?")))
        parts.append("lost %s" % r.get("lost"))
        parts.append("duplicated %s" % r.get("duplicated"))
        parts.append("unknown %s chunks" % r.get("unknown_chunks", 0))
    parts.append("faults: %s" % (", ".join("%d %s" % (n, k) for k, n in sorted(kinds.items())) or "none"))
    if r.get("seed") is not None:
        parts.append("seed %s" % r["seed"])
    if r.get("interrupted") or r.get("harness_error"):
        parts.append("DID NOT COMPLETE")
    elif "valid" in r:
        parts.append("VALID" if r["valid"] else "INVALID")
    if r.get("exit_code") is not None:
        parts.append("exit %s" % r["exit_code"])
    return " | ".join(parts)


def panel_frame(svg, top, bottom, label):
    svg.el("rect", x=LEFT, y=top, width=RIGHT - LEFT, height=bottom - top, fill="none",
           stroke="#bbbbbb")
    mid = (top + bottom) / 2.0
    svg.text(18, mid, label, size=11, anchor="middle", transform="rotate(-90 18 %s)" % r1(mid))


def legend(svg, windows, nodes, polled):
    x, y = LEFT, LEGEND_Y

    def newline():
        nonlocal x, y
        x, y = LEFT, y + 19

    def item(draw, label):
        width = 30 + 6.4 * len(label)
        if x + width - 10 > RIGHT:
            newline()
        draw(x, y)
        svg.text(x + 22, y + 4, label, size=11)
        advance(width)

    def advance(width):
        nonlocal x
        x += width

    kinds = []
    for w in windows:
        if w["kind"] not in kinds:
            kinds.append(w["kind"])
    if kinds:
        svg.text(x, y + 4, "faults:", size=11, color="#444")
        advance(48)
    for k in kinds:
        c = KIND_COLORS.get(k, OTHER_KIND_COLOR)
        item(lambda x0, y0, c=c: svg.el("rect", x=x0, y=y0 - 6, width=16, height=12, fill=c,
                                         fill_opacity=0.35), k)
    item(lambda x0, y0: svg.el("rect", x=x0, y=y0 - 6, width=16, height=12, fill=ACK_COLOR,
                               fill_opacity=0.55), "acked events/s")
    item(lambda x0, y0: svg.el("line", x1=x0, x2=x0 + 16, y1=y0, y2=y0, stroke=P50_COLOR,
                               stroke_width=1.6), "latency p50")
    item(lambda x0, y0: svg.el("line", x1=x0, x2=x0 + 16, y1=y0, y2=y0, stroke=P99_COLOR,
                               stroke_width=1.2, stroke_dasharray="5 3"), "latency p99")
    newline()
    item(lambda x0, y0: svg.el("path", d="M%s,%s l5,5 l-5,5 l-5,-5 Z" % (x0 + 8, y0 - 5),
                               fill=UNKNOWN_COLOR), "unknown outcome")
    item(lambda x0, y0: svg.el("path", d="M%s,%s l8,8 m0,-8 l-8,8" % (x0 + 4, y0 - 4),
                               stroke=FAIL_COLOR, stroke_width=2), "never delivered")
    item(lambda x0, y0: svg.el("path", d="M%s,%s l5,9 l-10,0 Z" % (x0 + 8, y0 - 5),
                               fill=ANOMALY_COLOR), "anomaly")
    for i, n in enumerate(nodes):
        c = NODE_COLORS[i % len(NODE_COLORS)]
        item(lambda x0, y0, c=c: svg.el("rect", x=x0, y=y0 - 6, width=16, height=12, fill=c),
             "leader %s" % node_label(n))
    if polled:
        item(lambda x0, y0: svg.el("rect", x=x0, y=y0 - 6, width=16, height=12, fill="#ffffff",
                                   stroke=FAIL_COLOR, stroke_width=0.8), "no leader")
        item(lambda x0, y0: svg.el("line", x1=x0 + 8, x2=x0 + 8, y1=y0 - 7, y2=y0 + 7,
                                   stroke="#333333"), "leader change")
    note = "* = the fault hit the leader; hover a band or mark for details"
    if not polled:
        note = ("leader: this run did not poll it, dots are the leaders the nemesis saw during "
                "its faults. " if nodes else "leader: no records in this run. ") + note
    svg.text(RIGHT, HEIGHT - 6, note, size=10, anchor="end", color="#666")


def darker(hex_color, f=0.7):
    v = int(hex_color[1:], 16)
    r, g, b = (v >> 16) & 255, (v >> 8) & 255, v & 255
    return "#%02x%02x%02x" % (int(r * f), int(g * f), int(b * f))


# ---------------------------------------------------------------------------------------------
# files


def write(path, result, history, title=None):
    """Render and write the timeline to `path` (via a temp file); returns `path`."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(render(result, history, title))
    os.replace(tmp, path)
    return path


def load_history(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def main(argv=None):
    p = argparse.ArgumentParser(prog="jepsen/timeline.py",
                                description="Draw the SVG timeline of a kept jepsen work dir.")
    p.add_argument("workdir")
    p.add_argument("-o", "--output", help="default WORKDIR/timeline.svg")
    a = p.parse_args(argv)
    with open(os.path.join(a.workdir, "result.json")) as f:
        result = json.load(f)
    history = load_history(os.path.join(a.workdir, "history.jsonl"))
    out = write(a.output or os.path.join(a.workdir, "timeline.svg"), result, history)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
