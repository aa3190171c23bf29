"""`charlstm show CHECKPOINT`: what a checkpoint holds and how its run went:
the settings, the text, the steps and time, the last and the best validation
loss with their steps, and the learning curve (in the terminal, as a PNG, as
a self-contained page). A safetensors export has settings only."""
from __future__ import annotations

import html
import os

import numpy as np

from ..errors import CharlstmError
from ..words import plural


def summary(ck, path: str) -> dict:
    """Everything show prints, as plain data."""
    from ..model import n_params
    m, t, s = ck.model, ck.train, ck.state
    hv = np.asarray(ck.history_val, float).reshape(-1, 3)
    ht = np.asarray(ck.history_train, float).reshape(-1, 3)
    ok = np.isfinite(hv[:, 2]) if len(hv) else np.zeros(0, bool)
    best = int(np.flatnonzero(ok)[np.argmin(hv[ok, 2])]) if ok.any() else None
    from ..train import best_path
    bp = best_path(path) if path.endswith(".npz") and not path.endswith(".best.npz") else None
    text_state = None
    if t.text:
        if not os.path.isfile(t.text):
            text_state = "not there any more"
        elif t.text_sha256:
            from ..data import file_sha256
            text_state = ("unchanged since training" if file_sha256(t.text) == t.text_sha256
                          else "changed since training")
        else:
            text_state = "not checked (no digest recorded)"
    budget = (plural(t.steps, "step") if t.steps else plural(t.minutes, "minute") if t.minutes
              else plural(t.epochs, "epoch") if t.epochs else None)
    return {
        "path": path, "cell": m.cell, "layers": m.layers, "hidden": m.hidden,
        "params": n_params(m), "vocab_size": m.vocab_size, "dropout": m.dropout,
        "batch_size": t.batch_size, "seq_len": t.seq_len, "lr": t.lr, "schedule": t.schedule,
        "optimizer": t.optimizer, "budget": budget, "text": t.text or None,
        "text_state": text_state, "steps": s.get("step"), "epoch": s.get("epoch"),
        "seconds": s.get("elapsed"),
        "last_val": None if not len(hv) else float(hv[-1, 2]),
        "last_val_step": None if not len(hv) else int(hv[-1, 0]),
        "best_val": None if best is None else float(hv[best, 2]),
        "best_val_step": None if best is None else int(hv[best, 0]),
        "best_file": bp if bp and os.path.exists(bp) else None,
        "last_train": None if not len(ht) else float(np.mean(ht[-50:, 2])),
        "history": bool(len(hv) or len(ht)),
    }


def describe(info: dict) -> list[str]:
    """The terminal lines, chart aside."""
    i = info
    lines = [f"{i['path']}: {i['cell']} {i['layers']}×{i['hidden']}, {i['params']:,} "
             f"parameters, vocabulary {i['vocab_size']}"]
    if i["text"]:
        lines.append(f"text: {i['text']} ({i['text_state']})")
    if i["steps"] is None:
        lines.append("an export: settings and weights only, no training history")
        return lines
    lines.append(f"trained: {plural(i['steps'], 'step')} in {_minutes(i['seconds'])}"
                 + (f", its budget {i['budget']}" if i["budget"] else "")
                 + f"; batch {i['batch_size']}×{i['seq_len']}, lr {i['lr']:g} "
                 f"({i['schedule']}, {i['optimizer']}), dropout {i['dropout']:g}")
    if i["last_val"] is None:
        lines.append("validation: none recorded")
    elif i["best_val"] is None:
        lines.append(f"validation: last {i['last_val']:.4f} nats/char at step "
                     f"{i['last_val_step']:,}; no finite loss recorded")
    else:
        lines.append(f"validation: last {i['last_val']:.4f} nats/char at step "
                     f"{i['last_val_step']:,}; best {i['best_val']:.4f} at step "
                     f"{i['best_val_step']:,}"
                     + (f" (in {i['best_file']})" if i["best_file"] else ""))
    return lines


def _minutes(seconds) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def curves(ck) -> dict:
    """The learning curves: training loss (a running mean over 50 steps) and
    validation loss, each against steps and against minutes."""
    ht = np.asarray(ck.history_train, float).reshape(-1, 3)
    hv = np.asarray(ck.history_val, float).reshape(-1, 3)
    out = {}
    if len(ht):
        k = min(50, len(ht))
        smooth = np.convolve(ht[:, 2], np.ones(k) / k, mode="valid")
        idx = np.arange(k - 1, len(ht))
        stride = max(1, len(idx) // 400)               # at most ~400 points drawn
        out["train"] = (ht[idx[::stride], 0], ht[idx[::stride], 1] / 60, smooth[::stride])
    if len(hv):
        out["val"] = (hv[:, 0], hv[:, 1] / 60, hv[:, 2])
    return out


def terminal_chart(ck) -> list[str]:
    from .charts import text_chart
    c = curves(ck)
    series = {name: (x, y) for name, (x, _, y) in c.items()}
    if not series:
        return []
    lines = text_chart(series, xlabel="step", height=10)
    return ["", "loss (nats/char) against steps: train (running mean of 50), validation:"] \
        + lines


def figure(ck, info: dict):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    c = curves(ck)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, by, label in ((axes[0], 0, "step"), (axes[1], 1, "minutes of training")):
        if "train" in c:
            ax.plot(c["train"][by], c["train"][2], color="#1f77b4", lw=1.2,
                    label="train (running mean of 50 steps)")
        if "val" in c:
            ax.plot(c["val"][by], c["val"][2], color="#d62728", marker=".", label="validation")
        if info["best_val"] is not None:
            hv = c["val"]
            k = int(np.flatnonzero(hv[0] == info["best_val_step"])[0])
            ax.plot([hv[by][k]], [hv[2][k]], "*", color="#2ca02c", ms=13,
                    label=f"best: {info['best_val']:.4f} at step {info['best_val_step']:,}")
        ax.set(xlabel=label, ylabel="loss (nats/char)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{os.path.basename(info['path'])}: {info['cell']} {info['layers']}×"
                 f"{info['hidden']}, {info['steps']:,} steps", fontsize=11)
    fig.tight_layout()
    return fig


def page(ck, info: dict) -> str:
    from .charts import CSS, svg_chart
    c = curves(ck)
    charts = []
    for by, label in ((0, "step"), (1, "minutes of training")):
        series = []
        if "train" in c:
            series.append({"x": c["train"][by], "y": c["train"][2], "name": "train (mean of 50)",
                           "colour": "#1f77b4"})
        if "val" in c:
            series.append({"x": c["val"][by], "y": c["val"][2], "name": "validation",
                           "colour": "#d62728"})
        if info["best_val"] is not None:
            hv = c["val"]
            k = int(np.flatnonzero(hv[0] == info["best_val_step"])[0])
            series.append({"x": [hv[by][k]], "y": [hv[2][k]], "colour": "#2ca02c",
                           "name": f"best {info['best_val']:.4f} (step {info['best_val_step']:,})"})
        if series:
            charts.append(svg_chart(series, title=f"loss against {label}", xlabel=label,
                                    ylabel="loss (nats/char)", width=540, height=320))
    rows = "".join(f"<tr><td>{html.escape(line.split(':', 1)[0])}</td>"
                   f"<td>{html.escape(line.split(':', 1)[1].strip() if ':' in line else '')}"
                   "</td></tr>" for line in describe(info)[1:])
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            '<meta name="generator" content="charlstm show">'
            f"<title>charlstm show: {html.escape(os.path.basename(info['path']))}</title>"
            f"<style>{CSS} td:last-child{{text-align:left}}</style></head><body>"
            f"<h1>{html.escape(describe(info)[0])}</h1><table>{rows}</table>"
            + (f'<div class="charts">{"".join(charts)}</div>' if charts else
               "<p class=note>No training history: an export holds settings and weights "
               "only.</p>") + "</body></html>")


def run_show(path: str, png: str | None, html_path: str | None, force: bool, echo) -> dict:
    from .. import checkpoint as ckpt
    from .. import files
    ck = ckpt.load(path)
    inputs = {path: "the checkpoint being shown", ck.train.text: "the training text"}
    if png and html_path and os.path.abspath(png) == os.path.abspath(html_path):
        raise CharlstmError(f"--png and --html are both {png}; give each its own file")
    for opt, out, kind in (("--png", png, "png"), ("--html", html_path, "page")):
        if out:
            files.check_output(out, kind, option=opt, inputs=inputs, force=force)
    info = summary(ck, path)
    for line in describe(info):
        echo(line)
    for line in terminal_chart(ck):
        echo(line)
    if png:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            from ..errors import install_hint
            raise CharlstmError(f"--png needs matplotlib: {install_hint('plot')}") from None
        import matplotlib.pyplot as plt
        fig = figure(ck, info)
        with files.locked(png):
            files.save_figure(fig, png, dpi=110)
        plt.close(fig)
        echo(f"picture: {png}")
    if html_path:
        with files.locked(html_path):
            files.write_text(html_path, page(ck, info))
        echo(f"page: {html_path}")
    return info
