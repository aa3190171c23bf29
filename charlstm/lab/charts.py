"""The charts the lab draws: line charts as inline SVG for its pages (svg_chart,
laid out by chart_layout so that no legend or label covers a curve or
another label; CSS, the pages' one stylesheet), and as text for the terminal
(text_chart)."""
from __future__ import annotations

import html
import math

import numpy as np

# ---------------------------------------------------------------------------
# On a page.

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf",
           "#e377c2"]


def _ticks(lo, hi, log):
    if log:
        a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        step = max(1, (b - a) // 6)
        return [10.0 ** e for e in range(a, b + 1, step)]
    span = hi - lo
    raw = span / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _label(v):
    if v == 0:
        return "0"
    if abs(v) >= 1e4 and abs(v) < 1e7:
        return f"{v / 1000:g}k"
    if abs(v) >= 1e4 or abs(v) < 1e-2:
        return f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{v:g}"


LEGEND_PX, LABEL_PX = 10.5, 10          # font sizes of svg .lg and svg .hl in CSS


ROW = 13                                 # px from one legend row to the next


CORNERS = ("top right", "top left", "bottom right", "bottom left")


def text_width(text: str, px: float) -> float:
    """A text's width, estimated on the large side: 0.6 em a character (DejaVu
    Sans, the usual fallback font, averages about 0.55 em), so that boxes
    checked for overlap are never smaller than what is drawn."""
    return 0.6 * px * len(text)


def overlaps(a, b) -> bool:
    """Whether two boxes (x0, y0, x1, y1) share any area."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _dash(s) -> str:
    """A series' stroke-dasharray: s["dash"] True (5,3), a pattern, or none."""
    d = s.get("dash")
    return "5,3" if d is True else (d or "")


def chart_layout(series, *, logx=False, logy=False, ymin=None, ymax=None, hlines=(),
                 legend="top right", width=460, height=300, note="") -> dict | None:
    """Where everything of an svg_chart goes, worked out before anything is
    drawn, so that it can be checked (and tested): the frame (L, R, T, B),
    the ranges and scales (px, py), each series' points in pixels, the hline
    labels and the legend. hlines outside the y range are left out and said
    in the note under the title. Each hline label goes to the end of its line
    where it covers less data. The legend goes to the first place inside the
    plot where its box covers no data (curves, points, × marks), no hline and
    no label: the corner `legend`, the other corners, then down the right and
    the left side; else (or with legend="right") beside the plot, which is
    always free and widens the chart by the legend's room. None when there is
    nothing to draw."""
    pts = [(np.asarray(s["x"], float), np.asarray(s["y"], float)) for s in series]
    ok = lambda v, log: np.isfinite(v) & ((v > 0) if log else True)  # noqa: E731
    xs = np.concatenate([x[ok(x, logx)] for x, _ in pts] or [np.array([0.0, 1.0])])
    ys = np.concatenate([y[ok(y, logy)] for _, y in pts] + [np.array([h for h, _ in hlines])])
    if not len(xs) or not len(ys):
        return None
    x0, x1 = xs.min(), xs.max()
    y0 = ys.min() if ymin is None else ymin
    y1 = ys.max() if ymax is None else ymax
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1
    shown = [(h, lab) for h, lab in hlines if y0 <= h <= y1 * (1 + 1e-9)]
    notes = [note] if note else []
    notes += [f"{lab} ({h:.3g}) lies {'above' if h > y1 else 'below'} the chart"
              for h, lab in hlines if (h, lab) not in shown]
    named = [s for s in series if s.get("legend", True)]   # legend=False: no entry
    tw = max((text_width(s["name"], LEGEND_PX) for s in named), default=0)
    lw, lh = 22 + tw + 6, ROW * len(named) + 4             # the legend's box
    tx = (lambda v: math.log10(v)) if logx else (lambda v: v)
    ty = (lambda v: math.log10(v)) if logy else (lambda v: v)
    L, R, T, B = 58, 12, 26 + 14 * bool(notes), 44
    xr, yb = width - R, height - B

    def px(v):
        return L + (tx(v) - tx(x0)) / (tx(x1) - tx(x0)) * (xr - L)

    def py(v):
        return T + (ty(y1) - ty(min(max(v, y0), y1))) / (ty(y1) - ty(y0)) * (yb - T)

    data = _traced(series, pts, px, py, ok, logx, logy)
    labels = [_hline_label(h, lab, py(h), L, xr, T, data) for h, lab in shown]
    # inside the plot: the corners, `legend` first, then down either side
    spots = {"top right": (xr - 4 - lw, T + 4), "top left": (L + 4, T + 4),
             "bottom right": (xr - 4 - lw, yb - 4 - lh), "bottom left": (L + 4, yb - 4 - lh)}
    order = [legend] + [c for c in CORNERS if c != legend] if legend in spots else []
    tries = [(c, spots[c]) for c in order]
    tries += [("inside", (x, y)) for x in (xr - 4 - lw, L + 4) for y in
              np.arange(T + 4, yb - 4 - lh, 6.0)] if order else []
    pos, box = "right", None
    if not named:                                          # nothing to show: no legend
        tries, pos, box = [], "none", (L, T, L, T)
    for name, (x, y) in tries:
        b = (x, y, x + lw, y + lh)
        if _free(b, data, labels, L, xr, T, yb):
            pos, box = name, b
            break
    if box is None:
        # beside the plot, which is always free: the chart grows by the legend's
        # width, and the plot keeps its size
        box = (xr + 6, T, xr + 6 + lw, T + lh)
        R += 6 + lw + 4
        width += 6 + lw + 4
    return dict(L=L, R=R, T=T, B=B, width=width, height=height, x0=x0, x1=x1, y0=y0, y1=y1,
                px=px, py=py, pts=pts, ok=ok, data=data, hlines=labels, legend=pos,
                legend_box=box, note="; ".join(notes))


def _traced(series, pts, px, py, ok, logx, logy) -> np.ndarray:
    """Every pixel a series covers, as (n, 2) points: along each polyline
    every 2 px, and the corners of each × mark."""
    out = [np.empty((0, 2))]
    for s, (x, y) in zip(series, pts):
        good = ok(x, logx) & ok(y, logy)
        xp = np.array([px(v) for v in x[good]])
        yp = np.array([py(v) for v in y[good]])
        if len(xp) > 1:
            n = np.maximum(1, np.ceil(np.hypot(np.diff(xp), np.diff(yp)) / 2)).astype(int)
            seg = np.repeat(np.arange(len(n)), n)
            t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / n[seg]
            out.append(np.column_stack([xp[seg] + t * (xp[seg + 1] - xp[seg]),
                                        yp[seg] + t * (yp[seg + 1] - yp[seg])]))
        out.append(np.column_stack([xp, yp]))
        for a, b, m in zip(x, y, s.get("marks", [False] * len(x))):
            if m:
                cx, cy = px(a), py(b)
                out.append(np.array([[cx + dx, cy + dy] for dx in (-4, 0, 4) for dy in (-4, 0, 4)]))
    return np.concatenate(out)


def _hits(box, data, pad=3.0) -> int:
    """How many data points fall in box, widened by pad (line width, dot radius)."""
    return int(np.sum((data[:, 0] > box[0] - pad) & (data[:, 0] < box[2] + pad)
                      & (data[:, 1] > box[1] - pad) & (data[:, 1] < box[3] + pad)))


def _hline_label(h, lab, y, L, xr, T, data) -> dict:
    """An hline's label: above its line (below, near the top), at the right
    end unless the left covers less data."""
    w = text_width(lab, LABEL_PX)
    base = y + 11 if y < T + 14 else y - 3
    right = {"h": h, "label": lab, "y": y, "x": xr - 2, "anchor": "end", "base": base,
             "box": (xr - 2 - w, base - 9, xr - 2, base + 1.5)}
    left = dict(right, x=L + 3, anchor="start", box=(L + 3, base - 9, L + 3 + w, base + 1.5))
    # pad 0: a curve lying on the line itself (a floor) runs under the text, not through it
    return left if _hits(left["box"], data, 0) < _hits(right["box"], data, 0) else right


def _free(box, data, labels, L, xr, T, yb) -> bool:
    """Whether a legend box inside the plot covers no data, hline or label."""
    if box[0] < L or box[2] > xr or box[1] < T or box[3] > yb:
        return False                      # too big for the plot
    if _hits(box, data):
        return False
    return not any(overlaps(box, lb["box"]) or box[1] - 2 < lb["y"] < box[3] + 2
                   for lb in labels)


def _labels(ticks) -> list[str]:
    """Tick labels in one format along an axis: thousands all as k once any
    tick needs it (5k 10k 15k, not 5000 10k 15k)."""
    ticks = list(ticks)
    if any(1e4 <= abs(v) < 1e7 for v in ticks) and all(v % 1000 == 0 and abs(v) < 1e7
                                                       for v in ticks):
        return [f"{v / 1000:g}k" if v else "0" for v in ticks]
    return [_label(v) for v in ticks]


def svg_chart(series, *, title="", xlabel="", ylabel="", logx=False, logy=False,
              ymin=None, ymax=None, hlines=(), xticks=None, legend="top right",
              width=460, height=300, note="") -> str:
    """A line chart as an inline <svg>. series: list of dicts with x, y, name,
    and optionally colour, dash (True, or a stroke-dasharray such as "1.5,3")
    and marks (a bool per point, drawn as a red × where the point is drawn: a
    point clipped to the chart's top). hlines: (y, label) pairs; xticks: where
    to label the x axis (default: round numbers, or powers of two on a log
    axis); legend: the corner tried first ("top right", "top left", "bottom
    right", "bottom left"), or "right" (beside the plot, the chart then wider
    than `width`); chart_layout finds it a place that covers nothing; a series
    with legend=False has no entry. note: a line under the title."""
    lay = chart_layout(series, logx=logx, logy=logy, ymin=ymin, ymax=ymax, hlines=hlines,
                       legend=legend, width=width, height=height, note=note)
    if lay is None:
        return ""
    L, R, T, B = lay["L"], lay["R"], lay["T"], lay["B"]
    width = lay["width"]                  # wider by the legend's room when it is beside the plot
    x0, x1, y0, y1, px, py = (lay[k] for k in ("x0", "x1", "y0", "y1", "px", "py"))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" class="chart" role="img" '
           f'aria-label="{html.escape(title)}">',
           f'<text x="{width / 2}" y="16" text-anchor="middle" class="t">{html.escape(title)}</text>']
    if lay["note"]:
        out.append(f'<text x="{width / 2}" y="31" text-anchor="middle" class="n">'
                   f'{html.escape(lay["note"])}</text>')
    for v in _ticks(y0, y1, logy):
        if y0 <= v <= y1 * (1 + 1e-9):
            y = py(v)
            out.append(f'<line x1="{L}" x2="{width - R}" y1="{y:.1f}" y2="{y:.1f}" class="g"/>'
                       f'<text x="{L - 4}" y="{y + 4:.1f}" text-anchor="end">{_label(v)}</text>')
    xt = (xticks if xticks is not None else
          [v for v in (2.0 ** np.arange(0, 20)) if x0 <= v <= x1] if logx
          else _ticks(x0, x1, False))
    for v, lab in zip(xt, _labels(xt)):
        x = px(v)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{T}" y2="{height - B}" class="g"/>'
                   f'<text x="{x:.1f}" y="{height - B + 14}" text-anchor="middle">{lab}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{width - L - R}" height="{height - T - B}" class="f"/>')
    for lb in lay["hlines"]:
        out.append(f'<line x1="{L}" x2="{width - R}" y1="{lb["y"]:.1f}" y2="{lb["y"]:.1f}" '
                   f'class="h"/><text x="{lb["x"]:.1f}" y="{lb["base"]:.1f}" '
                   f'text-anchor="{lb["anchor"]}" class="hl">{html.escape(lb["label"])}</text>')
    for k, (s, (x, y)) in enumerate(zip(series, lay["pts"])):
        col = s.get("colour") or COLOURS[k % len(COLOURS)]
        good = lay["ok"](x, logx) & lay["ok"](y, logy)
        d = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x[good], y[good]))
        dash = f' stroke-dasharray="{_dash(s)}"' if _dash(s) else ""
        out.append(f'<polyline points="{d}" fill="none" stroke="{col}" stroke-width="1.8"{dash}>'
                   f'<title>{html.escape(s["name"])}</title></polyline>')
        if len(x) <= 40:
            for a, b in zip(x[good], y[good]):
                out.append(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2.5" fill="{col}"/>')
        for a, b, m in zip(x, y, s.get("marks", [False] * len(x))):
            if m:
                cx, cy = px(a), py(b)
                out.append(f'<path d="M{cx - 4:.1f},{cy - 4:.1f}l8,8m0,-8l-8,8" class="x"/>')
    bx = lay["legend_box"]
    if lay["legend"] not in ("right", "none"):    # inside the plot: on white, over the grid
        out.append(f'<rect x="{bx[0]:.1f}" y="{bx[1]:.1f}" width="{bx[2] - bx[0]:.1f}" '
                   f'height="{bx[3] - bx[1]:.1f}" class="lb"/>')
    shown = [(k, s) for k, s in enumerate(series) if s.get("legend", True)]
    for row, (k, s) in enumerate(shown):          # a series with legend=False has no entry
        col = s.get("colour") or COLOURS[k % len(COLOURS)]
        dash = f' stroke-dasharray="{_dash(s)}"' if _dash(s) else ""
        lx, y = bx[0] + 3, bx[1] + 8 + ROW * row
        out.append(f'<line x1="{lx:.1f}" x2="{lx + 18:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="{col}" stroke-width="2"{dash}/><text x="{lx + 22:.1f}" '
                   f'y="{y + 4:.1f}" class="lg">{html.escape(s["name"])}</text>')
    out.append(f'<text x="{(L + width - R) / 2}" y="{height - 8}" text-anchor="middle">'
               f'{html.escape(xlabel)}</text>'
               f'<text transform="translate(13,{(T + height - B) / 2}) rotate(-90)" '
               f'text-anchor="middle">{html.escape(ylabel)}</text></svg>')
    return "\n".join(out)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1180px;
 color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0} td,th{padding:3px 9px;text-align:right;
 border-bottom:1px solid #eee} th{background:#f6f6f6} td:first-child,th:first-child{text-align:left}
.note{color:#555;font-size:12.5px;max-width:1000px} .bad{color:#b00;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:14px}
svg.chart{background:#fff;border:1px solid #ddd} svg text{font-size:11px;fill:#333}
svg .t{font-size:13px;font-weight:600} svg .g{stroke:#eee} svg .f{fill:none;stroke:#999}
svg .h{stroke:#888;stroke-dasharray:2,3} svg .hl{fill:#777;font-size:10px} svg .lg{font-size:10.5px}
svg .x{stroke:#d00;stroke-width:2;fill:none} svg .lb{fill:#fff;fill-opacity:.85;stroke:#ddd}
svg .n{font-size:10.5px;fill:#666}
.samples{display:flex;flex-wrap:wrap;gap:12px} .sample{flex:1 1 340px;min-width:300px}
pre{white-space:pre-wrap;word-break:break-word;background:#fafafa;border:1px solid #e4e4e4;
 padding:8px;margin:4px 0;font:12.5px/1.4 ui-monospace,Menlo,Consolas,monospace}
.ok{background:#e3f4e3} .miss{background:#d62728;color:#fff;font-weight:700}
.miss.sp{position:relative;color:transparent} .miss.sp::after{content:"SP";position:absolute;
 left:0;right:0;top:50%;transform:translateY(-50%);color:#fff;text-align:center;
 font:700 6.5px/1 system-ui,sans-serif;letter-spacing:-.3px}
.after{color:#888} .prime{color:#666}
.warn{color:#333;background:#fff8e1;border-left:4px solid #e0a000;padding:6px 10px}
.warn code{white-space:nowrap}
"""


# ---------------------------------------------------------------------------
# In the terminal.

def text_chart(series: dict, width=64, height=12, logy=False, xlabel="",
               ymax=None) -> list[str]:
    """A terminal chart of several (x, y) curves, one marker per curve. y above
    ymax (if given) is drawn on a top line of its own, labelled >ymax, and the
    rest of the chart fits the other points, so that one diverged model
    leaves the others' curves the whole height."""
    pts = {k: (np.asarray(x, float), np.asarray(y, float)) for k, (x, y) in series.items()}
    drawn = lambda y: np.isfinite(y) & ((y > 0) if logy else True)  # noqa: E731
    # with ymax, a loss that is not finite is drawn with those above it, as on the page
    over = {k: ~np.isfinite(y) | (y > ymax) if ymax is not None else np.zeros(len(y), bool)
            for k, (_, y) in pts.items()}
    top_row = any(o.any() for o in over.values())   # a line for the clipped points
    ys = np.concatenate([y[drawn(y) & ~over[k]] for k, (_, y) in pts.items()])
    xs = np.concatenate([x for x, _ in pts.values()])
    if ys.size == 0 and not top_row:
        return []
    tr = np.log10 if logy else (lambda v: v)
    lo, hi = (tr(ys.min()), tr(ys.max())) if ys.size else (tr(ymax) - 1, tr(ymax))
    hi = hi if hi > lo else lo + 1
    x0, x1 = xs.min(), max(xs.max(), xs.min() + 1)
    rows = height - top_row                        # rows for the points that fit
    grid = [[" "] * width for _ in range(height)]
    for mark, (name, (x, y)) in zip(MARKERS, pts.items()):
        for xi, yi, o in zip(x, y, over[name]):
            if not (o or drawn(np.array([yi]))[0]):
                continue
            col = int(round((xi - x0) / (x1 - x0) * (width - 1)))
            row = 0 if o else top_row + int(round((hi - tr(yi)) / (hi - lo) * (rows - 1)))
            grid[row][col] = mark
    label = (lambda v: f"{10 ** v:9.1e}") if logy else (lambda v: f"{v:9.4g}")
    lines = []
    for r, row in enumerate(grid):
        k = r - top_row                            # the row among those that fit
        if r == 0 and top_row:
            lab = f"{'>' + format(ymax, '.3g'):>9}"
        elif k in (0, rows // 2, rows - 1):
            lab = label(hi - (hi - lo) * k / (rows - 1))
        else:
            lab = " " * 9
        lines.append(lab + " |" + "".join(row))
    lines.append(" " * 10 + "+" + "-" * width)
    lines.append(" " * 11 + f"{x0:<.0f}".ljust(width - 8) + f"{x1:>8.0f}")
    lines.append(" " * 11 + xlabel + "   " + "  ".join(f"{m} {n}" for m, n in zip(MARKERS, pts)))
    return lines


MARKERS = "*o+x#@%&"
