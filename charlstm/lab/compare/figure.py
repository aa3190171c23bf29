"""compare.png: the validation loss, the context curve, the gradient flow and
the memory probe's tasks, drawn with matplotlib (an optional extra: without it,
compare draws no PNG)."""
from __future__ import annotations

import math

import numpy as np

from ... import files
from .results import FLOW_FLOOR, clip_curve, flow_series, loss_range


def _figure(rep):
    """compare.png: validation loss by step (its y axis fitted to the losses,
    points above ln V on the top edge, marked ×), the context curve, the
    gradient flow (floored at FLOW_FLOOR) and the probe's accuracy by lag, as
    present. Every legend goes under its panel, so none covers data or labels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, NullLocator
    from .results import TASK_WORDS, probe_tasks
    ms, pr = rep["models"], rep.get("probe")
    others = {n: t for n, t in probe_tasks(rep).items() if n != "lag"}   # parity, mqar
    panels = ((["loss", "context", "flow"] if ms else []) + (["probe"] if pr else [])
              + list(others))
    flows = flow_series(ms) if ms else []
    rows = max([len(ms), (len(flows) + 1) // 2]
               + [len(t["accuracy"]) + 2 for t in ([pr] if pr else []) + list(others.values())])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.4 + 0.14 * rows),
                             squeeze=False, layout="constrained")
    ax = dict(zip(panels, axes[0]))
    from ..charts import COLOURS              # each cell the colour it has on the page
    cells = rep.get("cells") or list(dict.fromkeys(     # a report that does not list them
        [m["cell"] for m in ms]
        + [c for t in ([pr] if pr else []) + list(others.values()) for c in t["accuracy"]]))
    colours = {cell: COLOURS[k % len(COLOURS)] for k, cell in enumerate(cells)}
    if ms:
        top = math.log(rep["vocab_size"])
        lo, hi = loss_range([np.array(m["val_curve"]).reshape(-1, 3)[:, 2] for m in ms], top)
        clipped = False
    for m in ms:
        v = np.array(m["val_curve"]).reshape(-1, 3)
        y, over = clip_curve(v[:, 2], top)
        y = np.minimum(y, hi)                   # above the fitted range: on its top edge
        lab = f"{m['cell']} (H={m['hidden']}, {m['params'] / 1e3:.0f}k)"
        if over.any():
            lab += f", {over.sum()} points above ln V (×)"
            clipped = True
        line, = ax["loss"].plot(v[:, 0], y, marker=".", label=lab, color=colours[m["cell"]])
        ax["loss"].plot(v[over, 0], y[over], "x", color="red", ms=9, mew=2)
        cx = m["context"]
        ax["context"].semilogx(cx["k"], cx["loss"], marker="o", ms=3, base=2,
                               color=line.get_color(),
                               label=f"{m['cell']} (span {cx['span']})")
        ax["context"].set_xticks(cx["k"], [str(k) for k in cx["k"]])
    for f in flows:
        ax["flow"].semilogy(np.arange(len(f["y"])), f["y"], f["style"],
                            color=colours[ms[f["model"]]["cell"]], label=f["name"])
    if ms:
        title = "Validation loss" + (", clipped at ln V" if clipped else "")
        if top <= hi:
            near_top = hi - top < 0.1 * (hi - lo)        # the label goes under the line
            ax["loss"].axhline(top, color="grey", lw=0.8, ls=":")
            ax["loss"].annotate("ln V, a uniform guess", (1, top),
                                xycoords=("axes fraction", "data"),
                                xytext=(-3, -3 if near_top else 3), textcoords="offset points",
                                ha="right", va="top" if near_top else "bottom", fontsize=7,
                                color="grey")
        else:
            title += f"\n(ln V = {top:.2f}, a uniform guess, lies above)"
        # room above the top edge for the × of the clipped points, inside the panel
        ax["loss"].set(xlabel="training step", ylabel="validation loss (nats/char)",
                       title=title, ylim=(lo, hi + (0.04 * (hi - lo) if clipped else 0)))
        ax["loss"].xaxis.set_major_locator(MaxNLocator(5))   # 10000 12000 … ran together
        ax["context"].set(xlabel="k, characters of context (log scale)",
                          ylabel="loss of the next character (nats/char)",
                          title="Context curve on held-out text")
        ax["flow"].axhline(0.01, color="grey", lw=0.8, ls=":")
        ax["flow"].set(xlabel="k (steps back in time)", ylabel="|dL_t / d state_(t-k)|, k=0 → 1",
                       title=f"Gradient flow on held-out text (floor {FLOW_FLOOR:.0e})",
                       ylim=(FLOW_FLOOR / 10, None))
        if any(f["floored"] for f in flows):
            # the flat line at the bottom is the floor: said in the band under it,
            # where no curve can be
            ax["flow"].axhline(FLOW_FLOOR, color="grey", lw=0.8, ls=":")
            ax["flow"].annotate(f"floor {FLOW_FLOOR:.0e}: smaller values drawn on it",
                                (1, FLOW_FLOOR), xycoords=("axes fraction", "data"),
                                xytext=(-3, -2), textcoords="offset points", ha="right",
                                va="top", fontsize=7, color="grey")
    if pr:
        for cell, acc in pr["accuracy"].items():
            ax["probe"].semilogx(pr["lags"], 100 * np.array(acc), marker="o", label=cell,
                                 color=colours.get(cell))
        ax["probe"].axhline(100 * pr["chance"], color="grey", lw=0.8, ls=":", label="chance")
        ax["probe"].axhline(90, color="grey", lw=0.8, ls="--", label="90%: the span's threshold")
        ax["probe"].set(xlabel="lag (characters between key and recall)", ylim=(0, 105),
                        ylabel="keys recalled, held-out lines (%)", title="Memory probe")
        # the lags themselves on the axis, not 3×10⁰, 4×10⁰, …
        ax["probe"].set_xticks(pr["lags"], [str(lag) for lag in pr["lags"]])
        ax["probe"].xaxis.set_minor_locator(NullLocator())
    for name, t in others.items():
        w, ds = TASK_WORDS[name], t["difficulties"]
        for cell, acc in t["accuracy"].items():
            ax[name].semilogx(ds, 100 * np.array(acc), marker="o", label=cell,
                              color=colours.get(cell))
        ax[name].axhline(100 * t["chance"], color="grey", lw=0.8, ls=":", label="chance")
        ax[name].axhline(90, color="grey", lw=0.8, ls="--", label="90%: the span's threshold")
        ax[name].set(xlabel=w["axis"], ylim=(0, 105), ylabel="right, held-out lines (%)",
                     title=w["title"])
        ax[name].set_xticks(ds, [str(d) for d in ds])
        ax[name].xaxis.set_minor_locator(NullLocator())
    for a in ax.values():
        a.grid(alpha=0.3)
        n = len(a.get_legend_handles_labels()[1])
        a.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                 ncol=2 if n > 4 else 1, frameon=False)
    return fig


def _plot(rep, path, log):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("matplotlib is not installed, so no PNG: pip install matplotlib")
        return None
    import matplotlib.pyplot as plt
    fig = _figure(rep)
    files.save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
