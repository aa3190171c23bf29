"""How compare's results read: the report printed to the terminal (_print),
the notes a reader needs (unequal_steps, agreement), the columns of the
models' table (MODEL_COLUMNS, in the terminal's words and the page's), and
the series every chart of the curves draws, in the terminal, the PNG
(figure.py) and the page (page.py)."""
from __future__ import annotations

import math
from itertools import zip_longest

import numpy as np

from ..charts import text_chart
from ...config import TrainConfig
from ..spans import PROBE_KEYS
from ...words import plural


def _budget(tcfg: TrainConfig) -> str:
    return (plural(tcfg.steps, "step") if tcfg.steps else plural(tcfg.minutes, "minute")
            if tcfg.minutes else plural(tcfg.epochs, "epoch"))


STEPS_RATIO = 1.5      # equal minutes, steps this far apart: the report says so


def unequal_steps(rep: dict) -> str | None:
    """When every cell had the same minutes but the cells took very unequal
    numbers of steps (the fastest STEPS_RATIO times the slowest's, or more),
    what that means for the comparison; None otherwise. A slow cell that has
    seen fewer characters loses to a fast one on validation after a minute for
    that reason as much as for its cell (an RNN at 650 steps against an LSTM at
    250), and the steps column alone does not tell the reader so. Models that
    diverged are left out: their steps stopped for another reason."""
    tr, ms = rep["train"], [m for m in rep["models"] if not m.get("diverged")]
    if not tr.get("minutes") or len(ms) < 2 or min(m["steps"] for m in ms) < 1:
        return None
    fast = max(ms, key=lambda m: m["steps"])
    slow = min(ms, key=lambda m: m["steps"])
    ratio = fast["steps"] / slow["steps"]
    if ratio < STEPS_RATIO:
        return None
    per_step = tr["batch_size"] * tr["seq_len"]
    steps = ", ".join(f"{m['cell']} {m['steps']:,}" for m in ms)
    return (f"equal time, unequal training: each cell had the same "
            f"{plural(tr['minutes'], 'minute')} but not the same number of steps ({steps}); "
            f"{fast['cell']} took {ratio:.1f} times as many as {slow['cell']}. The slower cell "
            f"has seen fewer characters of the text ({slow['cell']} "
            f"{slow['steps'] * per_step:,} against {fast['cell']} "
            f"{fast['steps'] * per_step:,}), so a gap in loss or recall may come from its "
            "shorter training rather than from its cell. To compare the cells at equal "
            "training, give "
            f"--steps (e.g. --steps {slow['steps']}, which the slowest reached here), or give "
            "more --minutes, so that every cell is near the end of its learning.")


def agreement(rep: dict) -> list[str]:
    """Whether the gradient-flow reach, the context span and the probe's memory
    span order the cells the same way: one line per measure, then a verdict.
    The measures agree only when they order every pair of cells the same way,
    strictly: a pair disagrees when one measure puts a ahead of b and another
    b ahead of a; a measure that ties a and b cannot tell them apart, and a
    tie is not agreement (spans of 16 and 16 say nothing about the order)."""
    measures, short = {}, {}
    if rep["models"]:
        T = max(m["horizon"]["T"] for m in rep["models"])
        name = "gradient reach (k where the largest unit's |dL/dstate| < 1%)"
        short[name] = "gradient reach"
        measures[name] = {m["cell"]: T + 1 if m["horizon"]["reach"] is None
                          else m["horizon"]["reach"] for m in rep["models"]}
        name = "context span (k within 0.01 nats of the longest context)"
        short[name] = "context span"
        measures[name] = {m["cell"]: m["context"]["span"] for m in rep["models"]
                          if m["context"]["span"] is not None}
    if rep.get("probe"):
        name = "probe span (longest lag recalled ≥ 90%)"
        short[name] = "probe span"
        measures[name] = {c: 0 if s is None else s for c, s in rep["probe"]["span"].items()}
    if not measures:                     # the probe's other tasks alone: no span to order
        return []
    lines = []
    for name, vals in measures.items():
        order = sorted(vals, key=lambda c: -vals[c])
        lines.append(f"{name}: " + ", ".join(f"{c} {_reach(vals[c], name, rep)}" for c in order))
    if len(measures) < 2:
        return lines + ["only one measure of memory was taken, so there is nothing to agree"]
    clash, ties, alone = [], [], []
    cells = rep["cells"]
    for i, a in enumerate(cells):
        for b in cells[i + 1:]:
            signs = {n: np.sign(v[a] - v[b]) for n, v in measures.items() if a in v and b in v}
            if {1, -1} <= set(signs.values()):
                clash.append(f"{a} and {b}")
            tied = [n for n, sg in signs.items() if sg == 0]
            vs = {n: f"{_reach(measures[n][a], n, rep)} and {_reach(measures[n][b], n, rep)}"
                  for n in tied}
            if len(tied) == 1:
                ties.append(f"the {short[tied[0]]} ties {a} and {b} ({vs[tied[0]]}), so it "
                            "cannot tell them apart")
            elif tied:
                ties.append("the " + " and the ".join(f"{short[n]} ({vs[n]})" for n in tied)
                            + f" tie {a} and {b}, so they cannot tell them apart")
            elif len(signs) < 2:
                alone.append(f"only one measure orders {a} and {b}")
    if clash:
        lines.append("the measures disagree on the order of " + "; ".join(clash))
    if ties or alone:
        lines.append(("besides, " if clash else "the measures cannot be said to agree: ")
                     + "; ".join(ties + alone))
    if not (clash or ties or alone):
        lines.append("the measures agree on the order of the cells")
    return lines


def _reach(v, name, rep):
    if name.startswith("gradient") and rep["models"]:
        T = max(m["horizon"]["T"] for m in rep["models"])
        return f">{T}" if v > T else str(v)
    if name.startswith("probe"):
        return "none" if v == 0 else str(v)
    return str(v)


def _fmt(x, spec):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec) if abs(x) < 1e4 else format(x, ".1e")


FLOW_KS = (1, 5, 10, 20, 50, 100, 200, 400)


def tasks_hint(rep) -> str | None:
    """For a comparison on a text that ran no memory task: the tasks, what
    each needs of a memory, and how to run them (the terminal and the page)."""
    if not rep["models"] or probe_tasks(rep):
        return None
    from ..tasks import TASKS
    from ...config import PROBE_MINUTES
    return ("The memory tasks were not run. What each needs of a memory: " + "; ".join(
        f"{t.name}, {t.need}" for t in TASKS.values())
        + f". Add --task lag,parity,mqar to train every cell on each of them (about "
        f"{PROBE_MINUTES:g} minutes more, shared).")


def _print(rep, echo):
    ms = rep["models"]
    if ms:
        _print_models(rep, echo)
    if hint := tasks_hint(rep):
        echo("\n" + hint)
    for name, pr in probe_tasks(rep).items():
        if name == "lag":
            _print_probe(pr, echo)
        else:
            _print_task(pr, echo)
    if rep.get("agreement"):
        echo("\nDo the measures of memory agree?")
        for line in rep["agreement"]:
            echo("  " + line)


# The models' table, the same columns in the terminal and on the page (page.py):
# each column's heading in the terminal, on the page (None: not there), and a
# model's cell as `said` writes it (Terminal here, report.Page there), which
# says how each writes text, numbers that may be missing, and the marks.
MODEL_COLUMNS = (
    ("cell", "cell", lambda m, said: said.text(m["cell"])),
    ("hidden", "hidden", lambda m, said: str(m["hidden"])),
    ("params", "params", lambda m, said: f"{m['params']:,}"),
    ("lr", "lr", lambda m, said: f"{m['lr']:g}"),
    ("steps", "steps", lambda m, said: f"{m['steps']}" + (said.diverged if m.get("diverged")
                                                           else "")),
    ("train", "train", lambda m, said: said.num(m["train_loss"], ".3f")),
    ("val", "val", lambda m, said: said.val(said.num(m["val_loss"], ".3f"),
                                            m.get("val_overflow"))),
    ("val@{k}", "val@{k}", lambda m, said: said.num(m["context"]["loss"][-1], ".3f")),
    ("chars/s", "chars/s", lambda m, said: f"{m['chars_per_s']:,.0f}"),
    ("wall s", None, lambda m, said: f"{m['wall_s']:.0f}"),
    ("prefix", "recall prefix", lambda m, said: said.num(m["recall"]["prefix_mean"], ".1f")),
    ("forced", "teacher-forced",
     lambda m, said: said.num(m["recall"]["teacher_forced"]
                              and 100 * m["recall"]["teacher_forced"], ".0f") + "%"),
    ("context", "context span", lambda m, said: said.num(m["context"]["span"], "d")),
    ("reach", "gradient reach",
     lambda m, said: said.beyond + str(m["horizon"]["T"]) if m["horizon"]["reach"] is None
     else str(m["horizon"]["reach"])),
)


class Terminal:
    """How the terminal writes the models' table (MODEL_COLUMNS): a loss no
    better than a uniform guess marked †, the other rows keeping its place
    (keep) so that the numbers line up under "val"."""
    diverged = "!"
    beyond = ">"

    def __init__(self, keep: str = ""):
        self.keep = keep

    def text(self, s: str) -> str:
        return s

    def num(self, x, spec: str) -> str:
        return _fmt(x, spec)

    def val(self, text: str, bad) -> str:
        return text + ("†" if bad else self.keep)


def _print_models(rep, echo):
    ms = rep["models"]
    kmax = rep["context_max"]
    # a † marks a loss no better than a uniform guess; the other rows (and the
    # header) keep its place so that the numbers line up under "val"
    keep = " " if any(m.get("val_overflow") for m in ms) else ""
    said = Terminal(keep)
    rows = [[head.format(k=kmax) + (keep if head == "val" else "") for head, _, _ in MODEL_COLUMNS]]
    rows += [[cell(m, said) for _, _, cell in MODEL_COLUMNS] for m in ms]
    lines = _table(rows)
    echo("")
    echo(lines[0])
    echo("-" * max(map(len, lines)))
    for line in lines[1:]:
        echo(line)
    steps_note = unequal_steps(rep)
    if steps_note:                           # first, as it changes how the table reads
        echo("note: " + steps_note)
    ev = rep["train"]
    held = (f"the first {plural(ev['eval_chars'], 'held-out char')}" if ev["eval_chars"]
            else "all held-out text")
    notes = [f"losses in nats/char; val: {held}, the state carried through "
             f"it; val@{kmax}: held-out characters each given only the {kmax} before it, "
             "from a zero state (the context curve's last point)"]
    if any(m.get("diverged") for m in ms):
        notes.append("! training diverged (loss or gradient overflowed) after this many "
                     "steps; the row shows the last finite model")
    if any(m.get("val_overflow") for m in ms):
        notes.append(f"† no better than a uniform guess (ln V = {math.log(rep['vocab_size']):.2f})"
                     " or not finite; see the notes below")
    rc = ms[0]["recall"]
    primed = len(rc["passages"][0]["prime"]) if rc["passages"] else 100
    notes.append(f"prefix: characters of a training passage reproduced by greedy decoding "
                 f"before the first mistake, mean of {plural(len(rc['passages']), 'passage')} "
                 f"(primed with {plural(primed, 'character')}, {rc['chars']} scored); forced: "
                 "share of those characters predicted right given the true history")
    notes.append(f"context: the smallest k whose loss is within 0.01 of the loss at k = {kmax}; "
                 "reach: the k at which the largest unit's |dL_t/dh_(t-k)| (or dc) falls "
                 "below 1% of its value at k = 0")
    for n in notes:
        echo(n)
    for m in ms:
        for n in m.get("notes", []):
            echo(f"note, {m['cell']}: {n}")
    _print_recall(ms, echo)
    echo(f"\nSamples, each continuing {describe_prime(rep['seed'])}:")
    width = 38
    # a seed of only whitespace would start each column with blanks: its glyphs
    seed = rep["seed"] if rep["seed"].strip() else visible(rep["seed"])
    for group in range(0, len(ms), 3):
        cols = ms[group:group + 3]
        wrapped = [_wrap(seed + m["sample"], width) for m in cols]
        echo("")
        echo("  ".join(f"[{m['cell']}]".ljust(width) for m in cols))
        for row in zip_longest(*wrapped, fillvalue=""):
            echo("  ".join(r.ljust(width) for r in row).rstrip())
    pos = ms[0]["context"]["positions"]
    echo(f"\nContext curve: loss (nats/char) of the next character given only the last k "
         f"characters ({plural(pos, 'held-out position')}, the same for every k):")
    ks = ms[0]["context"]["k"]
    rows = [["k", *map(str, ks), "span"]]
    rows += [[m["cell"], *(_fmt(v, ".3f") for v in m["context"]["loss"]),
              _fmt(m["context"]["span"], "d")] for m in ms]
    for line in _table(rows):
        echo(line)
    curves = {m["cell"]: (np.array(m["val_curve"])[:, 0], np.array(m["val_curve"])[:, 2])
              for m in ms if len(m["val_curve"]) > 1}
    if curves:
        top = math.log(rep["vocab_size"])      # a uniform guess; a diverging model goes far above
        above = any(clip_curve(y, top)[1].any() for _, y in curves.values())
        echo("\nValidation loss (nats/char) against steps"
             + (f" (losses above ln V = {top:.2f}, a uniform guess, or not finite: on the top "
                f"line, '>{top:.3g}')" if above else "") + ":")
        for line in text_chart(curves, xlabel="step", ymax=top):
            echo(line)
    T = max(m["horizon"]["T"] for m in ms)
    kk = [k for k in FLOW_KS if k <= T]
    echo(f"\nGradient flow: |dL_t/d state_(t-k)| relative to k = 0, the largest unit / the "
         f"90th percentile / the median of {plural(ms[0]['hidden'], 'unit')} (over 16 held-out "
         "streams):")
    rows = [["k", *map(str, kk)]]
    for m in ms:
        for path in ("h", "c"):
            f = m["grad_flow"].get(path)
            if f:
                rows.append([f"{m['cell']} {path}"]
                            + ["/".join(_sci(f[s][k]) if k < len(f[s]) else "-"
                                        for s in ("max", "p90", "median")) for k in kk])
    for line in _table(rows):
        echo(line)


def _table(rows: list[list[str]], left: int = 1, gap: int = 2) -> list[str]:
    """Rows of cells as lines: each column as wide as its widest cell and the
    columns `gap` spaces apart, so that no two cells can ever run together
    (a fixed width once let '1e-8/1e-8/6e-9' touch '4e-21/3e-21/2e-21'); the
    first `left` columns flush left (names), the rest flush right (numbers)."""
    n = max(map(len, rows))
    rows = [list(r) + [""] * (n - len(r)) for r in rows]
    widths = [max(len(r[j]) for r in rows) for j in range(n)]
    return [(" " * gap).join(c.ljust(w) if j < left else c.rjust(w)
                             for j, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def _sci(v):
    return "0" if v == 0 else f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")


def _print_recall(ms, echo):
    """The first recall passage, side by side: the truth and each model's
    greedy continuation, its first wrong character in brackets."""
    rows = [m["recall"]["passages"] for m in ms]
    if not rows[0]:
        return
    first = rows[0][0]
    echo("\nRecall of a training passage, primed with:")
    for line in prime_lines(first["prime"], 100):
        echo("  | " + line)
    width = 100
    w = max(len("truth"), *(len(m["cell"]) for m in ms)) + 2
    echo(f"  {'truth':<{w}}" + _show(first["truth"], None, width))
    for m, ps in zip(ms, rows):
        p = ps[0]
        said = (f"all {p['prefix']} right" if p["prefix"] >= len(p["output"]) else
                f"{p['prefix']} right, then [the first miss]")
        echo(f"  {m['cell']:<{w}}" + _show(p["output"], p["prefix"], width) + f"   ({said})")


def _show(text, miss, width):
    """text on one line (newlines as ⏎, tabs as →), the character at `miss`
    in brackets, as a glyph if it is whitespace: [␠] for a space."""
    flat = lambda t: t.replace("\n", "⏎").replace("\t", "→")  # noqa: E731
    if miss is None or miss >= len(text):
        return flat(text)[:width + 2]
    return (flat(text[:miss]) + "[" + glyph(text[miss]) + "]" + flat(text[miss + 1:]))[:width + 2]


# Whitespace made visible: a first miss that is a space or a newline would
# otherwise print as an empty pair of brackets, or an empty red block on the page.
GLYPHS = {"\n": "⏎", " ": "␠", "\t": "→", "\r": "␍"}


WHITESPACE_NAMES = {"\n": "a newline", " ": "a space", "\t": "a tab", "\r": "a carriage return"}


def glyph(ch: str) -> str:
    """A character as it can be seen: whitespace as its symbol (⏎ a newline,
    ␠ a space, → a tab; other whitespace as its escape), the rest as itself."""
    if ch in GLYPHS:
        return GLYPHS[ch]
    return ch.encode("unicode_escape").decode("ascii") if ch.isspace() else ch


def visible(text: str) -> str:
    """text with every whitespace character as its glyph."""
    return "".join(map(glyph, text))


def describe_prime(text: str) -> str:
    """A prime or seed for a heading: its repr, and, when it is nothing but
    whitespace, what it is in words ('\\n' (a newline))."""
    if not text:
        return "'' (nothing: an empty prime)"
    if text.strip():
        return repr(text)
    words = (WHITESPACE_NAMES.get(text)
             or f"{plural(len(text), 'whitespace character')}: {visible(text)}")
    return f"{text!r} ({words})"


def prime_lines(text: str, width: int) -> list[str]:
    """A prime as lines to print after a bar: each line that ends in a newline
    ends in ⏎, and a line of nothing but whitespace shows it as glyphs, so no
    line prints blank; long lines wrapped at `width`."""
    if not text:
        return ["(nothing: an empty prime)"]
    out = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        body = visible(body) if not body.strip() else body.replace("\t", "→")
        out += _wrap(body + ("⏎" if line.endswith("\n") else ""), width)
    return out


def _print_probe(pr, echo):
    echo(f"\nMemory probe: each line is a key ({''.join(PROBE_KEYS)}), lag random filler "
         f"characters, '=', and the key again; accuracy of predicting that last key on "
         f"held-out lines (chance {100 * pr['chance']:.1f}%), {plural(pr['hidden'], 'unit')}:")
    rows = [["lag", *map(str, pr["lags"]), "span"]]
    rows += [[cell, *(f"{100 * a:.0f}%" for a in acc),
              "-" if pr["span"][cell] is None else str(pr["span"][cell])]
             for cell, acc in pr["accuracy"].items()]
    for line in _table(rows):
        echo(line)
    echo(f"span: the largest lag recalled in at least {100 * pr['threshold']:.0f}% of "
         "held-out lines")


def probe_tasks(rep: dict) -> dict:
    """The probe's tasks that were run, {name: results} (run.task_results):
    rep["tasks"], or, in a report from before there were tasks, the lag
    probe alone."""
    return rep.get("tasks") or ({"lag": rep["probe"]} if rep.get("probe") else {})


# The tasks besides lag, in words: a title, what a line is and what is scored,
# the x axis of its chart, and what its span is.
TASK_WORDS = {
    "parity": {"title": "Parity",
               "lines": "each line is a string of random bits, '=', and their parity (the "
                        "number of 1s, mod 2), every length from 1 bit to the difficulty "
                        "in one text; accuracy of predicting the parity of the longer half "
                        "(over half the difficulty's bits)",
               "axis": "longest string, bits",
               "span": "the longest strings whose parity is predicted right in at least "
                       "{pct}% of held-out lines"},
    "mqar": {"title": "Multi-query associative recall (MQAR)",
             "lines": "each line is key-value pairs (a letter, a digit), ':', and every key "
                      "again in a new order, each followed by its value; accuracy of "
                      "predicting those values",
             "axis": "key-value pairs in the line",
             "span": "the most pairs at which at least {pct}% of the held-out keys "
                     "queried are followed by their right value"},
}


def _print_task(pr, echo):
    w = TASK_WORDS[pr["task"]]
    echo(f"\n{w['title']}, which needs a memory {pr['need']}: {w['lines']} on held-out lines "
         f"(chance {100 * pr['chance']:.1f}%), {plural(pr['hidden'], 'unit')}:")
    rows = [[pr["unit"], *map(str, pr["difficulties"]), "span"]]
    rows += [[cell, *(f"{100 * a:.0f}%" for a in acc),
              "-" if pr["span"][cell] is None else str(pr["span"][cell])]
             for cell, acc in pr["accuracy"].items()]
    for line in _table(rows):
        echo(line)
    echo("span: " + w["span"].format(pct=f"{100 * pr['threshold']:.0f}"))


def _wrap(text, width):
    out = []
    for para in text.split("\n"):
        while len(para) > width:
            out.append(para[:width])
            para = para[width:]
        out.append(para)
    return out


def clip_curve(y, top: float):
    """A loss curve for plotting: values above `top` (ln V, a uniform guess) or
    not finite are drawn at `top`, so one diverged model cannot flatten the
    others' curves. Returns (clipped y, mask of the clipped points)."""
    y = np.asarray(y, float)
    over = ~np.isfinite(y) | (y > top)
    return np.where(over, top, y), over


def loss_range(curves, top: float) -> tuple[float, float]:
    """The y range of a validation-loss chart: from the lowest loss to a
    little above the highest finite one not above `top` (ln V, a uniform
    guess), so that the curves fill the chart rather than a third of it;
    points above top are drawn on the chart's upper edge, marked ×
    (clip_curve). ln V is inside the range only when the losses come near."""
    ys = np.concatenate([np.asarray(y, float).ravel() for y in curves] + [np.empty(0)])
    ys = ys[np.isfinite(ys) & (ys <= top)]
    if not ys.size:                      # every point clipped: all on the edge of a band
        return top - 1.0, top
    lo, hi = float(ys.min()), float(ys.max())
    pad = 0.05 * (hi - lo) if hi > lo else 0.05
    return lo - pad, hi + pad


# The gradient-flow curves, the same in the page and the PNG: one colour per
# model and one dash per (path, statistic), so that no two series look alike
# (the median of h and the largest unit of c were once both a dashed line).
FLOW_STYLES = {("h", "max"): ("-", ""), ("h", "median"): (":", "1.5,3"),
               ("c", "max"): ("--", "6,3")}


FLOW_FLOOR = 1e-12        # smaller gradients are drawn on this line, which says so


def flow_series(ms) -> list[dict]:
    """The gradient-flow curves to draw: each model's largest unit of h (and
    of c), and, with two models or fewer, the median unit of h as well. Each:
    model (its index, for its colour), path, stat, name, y (floored at
    FLOW_FLOOR), floored (whether any value was), matplotlib style and SVG
    stroke-dasharray."""
    out = []
    for k, m in enumerate(ms):
        for path, stat in FLOW_STYLES:
            f = m["grad_flow"].get(path)
            if not f or stat not in f or (stat == "median" and len(ms) > 2):
                continue
            raw = np.asarray(f[stat], float)
            unit = "largest" if stat == "max" else stat
            out.append({"model": k, "path": path, "stat": stat,
                        "name": f"{m['cell']} {path}, {unit} unit",
                        "y": np.maximum(raw, FLOW_FLOOR), "floored": bool(np.any(raw < FLOW_FLOOR)),
                        "style": FLOW_STYLES[path, stat][0], "dash": FLOW_STYLES[path, stat][1]})
    return out
