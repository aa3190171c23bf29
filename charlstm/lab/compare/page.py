"""compare's report.html: one self-contained page (inline CSS and SVG, no
script, nothing loaded from the network), so it opens from disk and can be
mailed. charts.svg_chart draws the line charts; write_report lays out the page."""
from __future__ import annotations

import html
import math
import re

import numpy as np

from ..charts import COLOURS, CSS, _label, svg_chart
from .results import MODEL_COLUMNS


def _esc(s):
    return html.escape(s)


def _num(x, spec=".3f"):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, spec) if abs(x) < 1e4 else format(x, ".2e")


def _marked(out: str, prefix: int) -> str:
    """A continuation with its right prefix shaded and its first miss in red:
    a miss that is whitespace as its glyph (⏎, ␠, →), never an empty block;
    a newline still breaks the line after its glyph."""
    from .results import WHITESPACE_NAMES, glyph
    right, rest = out[:prefix], out[prefix:]
    s = f'<span class="ok">{_esc(right)}</span>'
    if rest:
        ch = rest[0]
        name = WHITESPACE_NAMES.get(ch, repr(ch))
        # ␠ (U+2420) is missing from common fonts (DejaVu, Liberation), which
        # show an empty box: the page draws the letters it stands for (CSS
        # .miss.sp), and the text keeps ␠ itself, for copying and searching
        sp = " sp" if ch == " " else ""
        s += (f'<span class="miss{sp}" title="the first miss: {_esc(name)}">'
              f'{_esc(glyph(ch))}</span>'
              + ("\n" if ch == "\n" else "") + f'<span class="after">{_esc(rest[1:])}</span>')
    return s


def _prime(text: str) -> str:
    """A prime or seed for the page: as it is, unless it is nothing but
    whitespace (or nothing), which would show as an empty box: then as glyphs."""
    from .results import visible
    return _esc(text) if text.strip() else (_esc(visible(text)) or "(nothing)")


def write_report(rep: dict, path: str) -> str:
    from ...words import plural
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
             f'<meta name="generator" content="charlstm compare">'
             f"<title>charlstm compare</title><style>{CSS}</style></head><body>",
             "<h1>charlstm compare</h1>",
             f'<p class="note">{_esc(rep["text"] or "memory probe only")} · cells '
             f'{_esc(", ".join(rep["cells"]))} · '
             f'{plural(round(rep["wall_s"] / 60, 1), "minute")} in all</p>']
    if rep["models"]:
        parts += _models_html(rep)
    from .results import probe_tasks, tasks_hint
    if hint := tasks_hint(rep):
        parts.append(f'<h2>Memory tasks</h2><p class="note">{_esc(hint)}</p>')
    for name, pr in probe_tasks(rep).items():
        parts += _probe_html(pr) if name == "lag" else _task_html(pr)
    if rep.get("agreement"):
        parts.append("<h2>Do the measures of memory agree?</h2><ul>"
                     + "".join(f"<li>{_esc(a)}</li>" for a in rep["agreement"]) + "</ul>")
    parts.append("</body></html>")
    from ...files import write_text
    write_text(path, "\n".join(parts))
    return path


class Page:
    """How the page writes the models' table (results.MODEL_COLUMNS)."""
    diverged = ' <span class="bad">diverged</span>'
    beyond = "&gt;"

    def text(self, s: str) -> str:
        return _esc(s)

    def num(self, x, spec: str) -> str:
        return _num(x, spec)

    def val(self, text: str, bad) -> str:
        return f'<span class="bad">{text} †</span>' if bad else text


def _models_html(rep):
    ms, kmax = rep["models"], rep["context_max"]
    top = math.log(rep["vocab_size"])
    said = Page()
    rows = ["<tr>" + "".join(f"<td>{cell(m, said)}</td>" for _, head, cell in MODEL_COLUMNS
                             if head) + "</tr>" for m in ms]
    out = ["<h2>Models</h2><table><tr>" + "".join(f"<th>{head.format(k=kmax)}</th>" for _, head, _
                                                  in MODEL_COLUMNS if head)
           + "</tr>" + "".join(rows) + "</table>",
           f'<p class="note">Losses in nats/char. <b>val</b>: held-out text with the state carried '
           f'through it; <b>val@{kmax}</b>: each held-out character given only the {kmax} before '
           f'it, from a zero state. † no better than a uniform guess (ln V = {top:.2f}) or not '
           "finite (the diagnosis is below the table). "
           "<b>recall prefix</b>: characters of a training passage that greedy decoding "
           "reproduces before its first mistake (mean of the passages below); "
           "<b>teacher-forced</b>: share of those characters predicted right given the true "
           f"history. <b>context span</b>: the smallest k within 0.01 nats/char of k = {kmax}. "
           "<b>gradient reach</b>: the k at which the largest unit's |∂L_t/∂h_(t−k)| (or ∂c) "
           "falls below 1% of its value at k = 0.</p>"]
    from .results import unequal_steps
    steps_note = unequal_steps(rep)
    if steps_note:                 # right under the table: it changes how the table reads
        said = re.sub(r"(--[a-z-]+(?: \d+)?)", r"<code>\1</code>", _esc(steps_note))  # unbroken
        out.insert(1, f'<p class="note warn"><b>Note</b>: {said}</p>')
    notes = [m["cell"] + ": " + n for m in ms for n in m.get("notes", [])]
    if notes:
        out.append("<ul class=note>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>")
    from .results import FLOW_FLOOR, clip_curve, flow_series, loss_range
    charts = []
    series = []
    for m in ms:
        v = np.array(m["val_curve"]).reshape(-1, 3)
        y, over = clip_curve(v[:, 2], top)
        series.append({"x": v[:, 0], "y": y, "marks": over,
                       "name": m["cell"] + (f" ({int(over.sum())} points above ln V, ×)"
                                            if over.any() else "")})
    if series:
        lo, hi = loss_range([np.array(m["val_curve"]).reshape(-1, 3)[:, 2] for m in ms], top)
        clipped = any(s["marks"].any() for s in series)
        charts.append(svg_chart(series, title="Validation loss" + (", clipped at ln V" if clipped
                                                                   else ""),
                                xlabel="training step", ylabel="nats/char", ymin=lo, ymax=hi,
                                hlines=[(top, "ln V, a uniform guess")]))
    charts.append(svg_chart([{"x": m["context"]["k"], "y": m["context"]["loss"],
                              "name": f'{m["cell"]} (span {m["context"]["span"]})'} for m in ms],
                            title="Context curve on held-out text", logx=True,
                            xlabel="k, characters of context", ylabel="nats/char"))
    fl = flow_series(ms)
    for s in fl:
        s.update(x=np.arange(len(s["y"])), colour=COLOURS[s["model"] % len(COLOURS)])
    floored = any(s["floored"] for s in fl)
    ymin = FLOW_FLOOR if floored else min(float(np.min(s["y"])) for s in fl)
    charts.append(svg_chart(
        fl, title="Gradient flow on held-out text" + (f" (floor {_label(FLOW_FLOOR)})"
                                                      if floored else ""),
        logy=True, ymin=ymin, xlabel="k, steps back", ylabel="|∂L/∂state|, k=0 → 1",
        hlines=[(0.01, "1%")] + ([(FLOW_FLOOR, f"floor {_label(FLOW_FLOOR)}: smaller values "
                                   "drawn on it")] if floored else []),
        height=340, width=560, legend="right"))
    out.append('<h2>Curves</h2><div class="charts">' + "".join(charts) + "</div>")
    from .results import describe_prime
    out.append(f"<h2>Samples, each continuing {_esc(describe_prime(rep['seed']))}</h2>"
               "<div class=samples>"
               + "".join(f'<div class=sample><b>{_esc(m["cell"])}</b><pre>'
                         f'<span class=prime>{_prime(rep["seed"])}</span>'
                         f'{_esc(m["sample"])}</pre></div>'
                         for m in ms) + "</div>")
    out.append("<h2>Recall of training passages</h2><p class=note>Each model is primed with "
               "the passage's first 100 characters and continues it greedily. Green: the "
               "characters it reproduces; red: its first mistake; grey: what follows.</p>")
    for j, p in enumerate(ms[0]["recall"]["passages"]):
        out.append(f"<h3>Passage {j + 1}</h3><pre class=prime>{_prime(p['prime'])}</pre>"
                   f"<div class=samples><div class=sample><b>truth</b><pre>{_esc(p['truth'])}</pre></div>"
                   + "".join(f'<div class=sample><b>{_esc(m["cell"])}</b>: '
                             f'{m["recall"]["passages"][j]["prefix"]} right, teacher-forced '
                             f'{100 * m["recall"]["passages"][j]["teacher_forced"]:.0f}%<pre>'
                             + _marked(m["recall"]["passages"][j]["output"],
                                       m["recall"]["passages"][j]["prefix"]) + "</pre></div>"
                             for m in ms) + "</div>")
    return out


def _probe_html(pr):
    from ...words import plural
    head = "".join(f"<th>{lag}</th>" for lag in pr["lags"])
    rows = "".join(f"<tr><td>{_esc(c)}</td>" + "".join(f"<td>{100 * a:.0f}%</td>" for a in acc)
                   + f"<td>{pr['span'][c] if pr['span'][c] is not None else '–'}</td></tr>"
                   for c, acc in pr["accuracy"].items())
    chart = svg_chart([{"x": pr["lags"], "y": 100 * np.array(acc), "name": c}
                       for c, acc in pr["accuracy"].items()],
                      title="Memory probe: keys recalled on held-out lines", logx=True,
                      xlabel="lag, characters between the key and its recall",
                      ylabel="accuracy (%)", ymin=0, ymax=100, xticks=pr["lags"],
                      legend="bottom left", hlines=[(100 * pr["chance"], "chance"), (90, "90%")])
    cells = list(pr["accuracy"])
    runs = {(r["cell"], r["lag"]): r for r in pr["runs"]}
    steps = "".join(f"<tr><td>{_esc(c)}</td>" + "".join(
        f'<td>{runs[c, lag]["steps"]:,} / {runs[c, lag]["seconds"]:.0f} s'
        + (" ✓" if runs[c, lag]["solved_early"] else "") + "</td>" for lag in pr["lags"])
        + "</tr>" for c in cells)
    return [f"<h2>Memory probe</h2><p class=note>Each line is a key, <i>lag</i> random filler "
            f"characters drawn independently of it, '=', and the key again, e.g. "
            f"<code>{_esc(pr['example'].splitlines()[0])}</code>. Only that last key is "
            f"predictable, and only by remembering. Chance: {100 * pr['chance']:.1f}%; "
            f"{plural(pr['hidden'], 'unit')}; span: the largest lag recalled in ≥ 90% of "
            "held-out lines.</p>",
            f"<table><tr><th>lag</th>{head}<th>span</th></tr>{rows}</table>",
            "<p class=note>Training steps and seconds of each model (✓: stopped early, having "
            "recalled ≥ 99% of the keys of a check set of held-out lines):</p>"
            f"<table><tr><th>lag</th>{head}</tr>{steps}</table>",
            f'<div class="charts">{chart}</div>']


def _task_html(pr):
    """A task of the probe besides lag (parity, mqar): its accuracy at each
    difficulty per cell and span, the steps and seconds of each model, a chart."""
    from ...words import plural
    from .results import TASK_WORDS
    w, ds = TASK_WORDS[pr["task"]], pr["difficulties"]
    pct = f"{100 * pr['threshold']:.0f}"
    head = "".join(f"<th>{d}</th>" for d in ds)
    rows = "".join(f"<tr><td>{_esc(c)}</td>" + "".join(f"<td>{100 * a:.0f}%</td>" for a in acc)
                   + f"<td>{pr['span'][c] if pr['span'][c] is not None else '–'}</td></tr>"
                   for c, acc in pr["accuracy"].items())
    chart = svg_chart([{"x": ds, "y": 100 * np.array(acc), "name": c}
                       for c, acc in pr["accuracy"].items()],
                      title=f"{w['title']}: held-out accuracy", logx=True,
                      xlabel=w["axis"], ylabel="accuracy (%)", ymin=0, ymax=100, xticks=ds,
                      legend="bottom left",
                      hlines=[(100 * pr["chance"], "chance"), (90, f"{pct}%")])
    runs = {(r["cell"], r["difficulty"]): r for r in pr["runs"]}
    steps = "".join(f"<tr><td>{_esc(c)}</td>" + "".join(
        f'<td>{runs[c, d]["steps"]:,} / {runs[c, d]["seconds"]:.0f} s'
        + (" ✓" if runs[c, d]["solved_early"] else "") + "</td>" for d in ds)
        + "</tr>" for c in pr["accuracy"])
    lines = w["lines"][0].upper() + w["lines"][1:]
    return [f"<h2>{_esc(w['title'])}</h2><p class=note>It needs a memory {_esc(pr['need'])}. "
            f"{_esc(lines)} on held-out lines, e.g. "
            f"<code>{_esc(pr['example'].splitlines()[0])}</code>. Chance: "
            f"{100 * pr['chance']:.1f}%; {plural(pr['hidden'], 'unit')}; span: "
            f"{_esc(w['span'].format(pct=pct))}.</p>",
            f"<table><tr><th>{_esc(pr['unit'])}</th>{head}<th>span</th></tr>{rows}</table>",
            "<p class=note>Training steps and seconds of each model (✓: stopped early, having "
            "been right at ≥ 99% of a check set of held-out lines):</p>"
            f"<table><tr><th>{_esc(pr['unit'])}</th>{head}</tr>{steps}</table>",
            f'<div class="charts">{chart}</div>']
