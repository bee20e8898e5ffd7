#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""plot_trace.py TRACE.csv OUT.svg [--title TEXT]

Draws an `iobench --trace` time series as a self-contained SVG: three panels sharing
the time axis - IOPS, P99 latency (the interval's, and the controller's window P99),
and the in-flight limit with the batch threshold - with the controller phase shaded
under the limit. Standard library only: no plotting package is needed.
"""
import csv
import sys

W, PANEL_H, LEFT, RIGHT, TOP, GAP = 900, 170, 80, 20, 40, 30
PHASE_COLOURS = {"probe": "#fde9c9", "steady": "#e3f1e3", "backoff": "#f8d0d0",
                 "drain": "#e6e0f2", "fixed": "#eeeeee"}


def nice_max(v):
    """A round axis maximum at or above v."""
    if v <= 0:
        return 1.0
    mag = 10 ** (len(str(int(v))) - 1)
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= v:
            return m * mag
    return 10 * mag


def fmt(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


class Panel:
    def __init__(self, index, tmax, ymax, label):
        self.y0 = TOP + index * (PANEL_H + GAP)
        self.tmax, self.ymax, self.label = tmax, ymax, label

    def x(self, t):
        return LEFT + (W - LEFT - RIGHT) * t / self.tmax

    def y(self, v):
        return self.y0 + PANEL_H - PANEL_H * min(v, self.ymax) / self.ymax

    def frame(self, out):
        out.append(f'<rect x="{LEFT}" y="{self.y0}" width="{W - LEFT - RIGHT}" '
                   f'height="{PANEL_H}" fill="none" stroke="#888"/>')
        for i in range(5):
            v = self.ymax * i / 4
            y = self.y(v)
            out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'stroke="#ddd"/>')
            out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                       f'font-size="11">{fmt(v)}</text>')
        out.append(f'<text x="14" y="{self.y0 + PANEL_H / 2}" font-size="12" '
                   f'transform="rotate(-90 14 {self.y0 + PANEL_H / 2})" '
                   f'text-anchor="middle">{self.label}</text>')

    def line(self, out, ts, vs, colour, width=1.5):
        pts = " ".join(f"{self.x(t):.1f},{self.y(v):.1f}" for t, v in zip(ts, vs))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" '
                   f'stroke-width="{width}"/>')


def legend(out, panel, items):
    x = W - RIGHT - 10
    for i, (name, colour) in enumerate(items):
        y = panel.y0 + 14 + 14 * i
        out.append(f'<text x="{x - 16}" y="{y + 4}" text-anchor="end" font-size="11">'
                   f'{name}</text>')
        out.append(f'<line x1="{x - 12}" x2="{x}" y1="{y}" y2="{y}" stroke="{colour}" '
                   f'stroke-width="3"/>')


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    title = argv[argv.index("--title") + 1] if "--title" in argv else argv[1]
    with open(argv[1]) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.stderr.write("plot_trace.py: empty trace\n")
        return 1
    t = [float(r["time_s"]) for r in rows]
    iops = [float(r["iops"]) for r in rows]
    p99 = [float(r["p99_us"]) / 1e3 for r in rows]
    wp99 = [float(r["window_p99_us"]) / 1e3 for r in rows]
    limit = [float(r["limit"]) for r in rows]
    batch = [float(r["batch_threshold"]) for r in rows]
    phase = [r["phase"] for r in rows]
    tmax = max(t) or 1
    panels = [Panel(0, tmax, nice_max(max(iops)), "IOPS"),
              Panel(1, tmax, nice_max(max(max(p99), max(wp99))), "P99 (ms)"),
              Panel(2, tmax, nice_max(max(limit)), "in flight")]
    height = TOP + 3 * (PANEL_H + GAP) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" '
           f'font-family="sans-serif">',
           f'<rect width="{W}" height="{height}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>']
    lim = panels[2]
    for i in range(len(t)):  # phase bands under the limit
        t0 = t[i - 1] if i else 0
        out.append(f'<rect x="{lim.x(t0):.1f}" y="{lim.y0}" '
                   f'width="{max(lim.x(t[i]) - lim.x(t0), 0.5):.1f}" height="{PANEL_H}" '
                   f'fill="{PHASE_COLOURS.get(phase[i], "#fff")}"/>')
    for p in panels:
        p.frame(out)
    panels[0].line(out, t, iops, "#1f77b4")
    panels[1].line(out, t, p99, "#d62728")
    panels[1].line(out, t, wp99, "#ff9896", 1)
    legend(out, panels[1], [("interval P99", "#d62728"), ("controller window P99", "#ff9896")])
    lim.line(out, t, limit, "#2ca02c", 2)
    lim.line(out, t, batch, "#9467bd", 1)
    legend(out, lim, [("in-flight limit", "#2ca02c"), ("batch threshold", "#9467bd")] +
           [(f"{k}", c) for k, c in PHASE_COLOURS.items() if k in set(phase)])
    base = lim.y0 + PANEL_H
    for i in range(6):
        v = tmax * i / 5
        out.append(f'<text x="{lim.x(v):.1f}" y="{base + 16}" text-anchor="middle" '
                   f'font-size="11">{v:.1f}s</text>')
    out.append("</svg>")
    with open(argv[2], "w") as f:
        f.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
