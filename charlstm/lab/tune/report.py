"""What charlstm tune shows of a study: one line a finished trial, the table,
the best settings as a `charlstm train` command, the JSON and the PNG."""
from __future__ import annotations

import json
import math
import shlex

from ...config import TrainConfig
from .space import MODEL_KEYS, TRAIN_KEYS
from .study import trial_kind

# The table's columns: the settings in the order a user reads a model.
ORDER = ("cell", "layers", "hidden", "dropout", "lr", "seq_len", "batch_size",
         "forget_bias", "clip", "state_reset", "optimizer", "schedule")


def trial_row(t) -> dict:
    """A trial as plain data (for the table, the JSON and the PNG)."""
    kind = trial_kind(t)
    a = t.user_attrs
    value = t.value if kind in ("complete", "diverged") else None
    return {"number": t.number, "state": kind, "settings": a.get("settings"),
            "value": value, "last_val": a.get("last_val"), "pruned_at": a.get("pruned_at"),
            "steps": a.get("steps"), "seconds": a.get("seconds"),
            "chars_per_s": a.get("chars_per_s"), "params": a.get("params"),
            "host": a.get("host"), "reason": a.get("reason"),
            "defaults": a.get("queued_as") == "defaults", "retry_of": a.get("retry_of"),
            "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())}}


def _short(settings: dict | None) -> str:
    if not settings:
        return ""
    s = settings
    parts = [f"{s['cell']} {s['layers']}x{s['hidden']}", f"dropout {s['dropout']:g}",
             f"lr {s['lr']:g}", f"batch {s['batch_size']}x{s['seq_len']}"]
    return ", ".join(parts)


def trial_line(t) -> str:
    """One line for a trial that has just finished."""
    r = trial_row(t)
    what = _short(r["settings"])
    if r["state"] == "complete":
        return f"trial {t.number}: {r['value']:.4f} nats/char after {r['steps']} steps ({what})"
    if r["state"] == "pruned":
        at = (f" at {r['pruned_at']}% of its budget, loss {r['last_val']:.4f}"
              if r["pruned_at"] is not None else "")
        why = f": {r['reason']}" if r["reason"] else ""
        return f"trial {t.number}: pruned{at}{why} ({what})"
    if r["state"] == "diverged":
        return (f"trial {t.number}: diverged after {r['steps']} steps; its last finite model "
                f"scored {r['value']:.4f} ({what})")
    return f"trial {t.number}: {r['state']} ({what})"


def best_row(rows: list[dict]) -> dict | None:
    done = [r for r in rows if r["state"] == "complete" and r["value"] is not None
            and math.isfinite(r["value"])]
    return min(done, key=lambda r: r["value"]) if done else None


def command(text: str, settings: dict, minutes: float, val_frac: float) -> str:
    """The `charlstm train` command line that trains with these settings for
    the trial budget (every tuned setting is spelled out, even a default)."""
    from ...words import path_arg
    args = ["charlstm", "train", path_arg(text)]
    for key in ORDER:
        if key in settings:
            v = settings[key]
            args += [f"--{key.replace('_', '-')}", f"{v:g}" if isinstance(v, float) else str(v)]
    if val_frac != TrainConfig.val_frac:
        args += ["--val-frac", f"{val_frac:g}"]
    args += ["--minutes", f"{minutes:g}"]
    return " ".join(shlex.quote(a) for a in args)


def _fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def table(rep: dict) -> str:
    """The trials, one row each; * marks the best, d charlstm train's defaults."""
    rows = [r for r in rep["trials"] if r["state"] != "withdrawn"]
    if not rows:
        return "no trials yet"
    tuned = [k for k in ORDER if any(r["settings"] and k in r["settings"] for r in rows)]
    heads = {"cell": "cell", "layers": "L", "hidden": "H", "dropout": "drop", "lr": "lr",
             "seq_len": "seq", "batch_size": "batch", "forget_bias": "fbias", "clip": "clip",
             "state_reset": "reset", "optimizer": "opt", "schedule": "sched"}
    best = rep["best"]["number"] if rep.get("best") else None
    retried = {r["retry_of"]: r["number"] for r in rows if r["retry_of"] is not None}
    head = ["#", "state"] + [heads[k] for k in tuned] + ["steps", "val", "min"]
    out = []
    for r in rows:
        s = r["settings"] or {}
        mark = ("*" if r["number"] == best else "") + ("d" if r["defaults"] else "")
        cells = [f"{r['number']}{mark}", r["state"]]
        for k in tuned:
            v = s.get(k)
            cells.append("" if v is None else f"{v:g}" if isinstance(v, float) else str(v))
        if r["state"] == "complete":
            val = f"{r['value']:.4f}"
        elif r["state"] == "pruned" and r["last_val"] is not None:
            val = f"({r['last_val']:.3f} @{r['pruned_at']}%)" if r["pruned_at"] else \
                f"({r['last_val']:.3f})"
        elif r["state"] == "diverged":
            val = f"({r['value']:.3f})"
        elif r["state"] in ("interrupted", "lost") and r["number"] in retried:
            val = f"again as #{retried[r['number']]}"
        else:
            val = r["reason"] or "-"
        cells += [_fmt(r["steps"], "d"), val,
                  _fmt(None if r["seconds"] is None else r["seconds"] / 60, ".1f")]
        out.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *out)]
    lines = ["  ".join(str(x).rjust(w) for x, w in zip(head, widths))]
    lines += ["  ".join(str(x).rjust(w) for x, w in zip(row, widths)) for row in out]
    lines.append("* best   d charlstm train's defaults   val: best validation loss, nats/char "
                 "(pruned: the loss when stopped, @ share of the budget; diverged: the last "
                 "finite model's)")
    return "\n".join(lines)


def summary(rep: dict) -> str:
    c = rep["counts"]
    lines = [f"study {rep['study']}: {c['complete']} complete, {c['pruned']} pruned"
             + (f", {c['diverged']} diverged" if c["diverged"] else "")
             + (f", {c['failed']} failed or cut short" if c["failed"] else "")
             + (f", {c['running']} running elsewhere" if c["running"] else "")]
    b, d = rep.get("best"), rep.get("defaults")
    if b:
        lines.append(f"best: trial {b['number']}, {b['value']:.4f} nats/char "
                     f"({b['value'] / math.log(2):.3f} bits) in {rep['trial_minutes']:g} minutes")
        if d and d["value"] is not None and d["number"] != b["number"]:
            lines.append(f"charlstm train's defaults (trial {d['number']}): "
                         f"{d['value']:.4f} nats/char, {d['value'] - b['value']:.4f} worse")
        lines.append("train with the best settings:")
        lines.append("  " + b["command"])
        if rep.get("checkpoint"):
            lines.append(f"its model: {rep['checkpoint']}"
                         + ("" if rep["checkpoint_trial"] == b["number"] else
                            f" (trial {rep['checkpoint_trial']}, the best one trained on "
                            f"this machine; trial {b['number']} ran on {b['host']})"))
    return "\n".join(lines)


def report(study, saved: dict, text: str, run_dir: str, storage: str, checkpoint=None) -> dict:
    """Everything tune shows, as plain data (the JSON is this)."""
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    counts = {"complete": 0, "pruned": 0, "diverged": 0, "failed": 0, "running": 0,
              "waiting": 0}
    for r in rows:
        k = r["state"]
        if k in counts:
            counts[k] += 1
        elif k != "withdrawn":
            counts["failed"] += 1
    b = best_row(rows)
    best = None
    if b:
        best = dict(b, command=command(text, b["settings"], saved["trial_minutes"],
                                       saved["val_frac"]))
    d = next((r for r in rows if r["defaults"] and r["state"] == "complete"), None)
    return {"study": study.study_name, "storage": storage, "text": text,
            "trial_minutes": saved["trial_minutes"], "val_frac": saved["val_frac"],
            "space": saved["space"], "counts": counts, "trials": rows, "best": best,
            "defaults": d and {"number": d["number"], "value": d["value"]},
            "checkpoint": checkpoint and checkpoint["path"],
            "checkpoint_trial": checkpoint and checkpoint["trial"], "run_dir": run_dir}


def dumps(rep: dict) -> str:
    return json.dumps({"charlstm": "tune results", **rep}, indent=1, default=float)


# -- the PNG ----------------------------------------------------------------

def plot(rep: dict, path: str) -> bool:
    """The search in one figure: each trial's loss in the order run, with the
    best so far, and below it the loss against each tuned setting. Losses
    above the chart (a trial no better than a guess) are drawn on its top
    edge as triangles. False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return False
    rows = [r for r in rep["trials"] if r["state"] in ("complete", "pruned", "diverged")
            and r["settings"]]
    space = rep["space"]
    tuned = [k for k in ORDER if k in space and "value" not in space[k]]
    if "size" in space and "value" not in space["size"]:
        tuned = ["size"] + [k for k in tuned if k not in ("hidden", "layers")]
    ncol = 4
    slots, row, col = [], 1, 0          # (key, row, col, span): a wide panel for many sizes
    for key in tuned:
        span = 2 if len(space[key].get("choices", ())) > 8 else 1
        if col + span > ncol:
            row, col = row + 1, 0
        slots.append((key, row, col, span))
        col += span
    nrow = 1 + (slots[-1][1] if slots else 0)
    fig = plt.figure(figsize=(13.6, 3.1 * nrow + 0.4), dpi=110)
    gs = fig.add_gridspec(nrow, ncol, hspace=0.6, wspace=0.3)
    ax = fig.add_subplot(gs[0, :])
    done = [r for r in rows if r["state"] == "complete"]
    others = [r for r in rows if r["state"] != "complete"
              and (r["last_val"] if r["state"] == "pruned" else r["value"]) is not None]
    top = None
    if done:
        vals = sorted(r["value"] for r in done)
        lo, hi = vals[0], vals[min(len(vals) - 1, max(2, len(vals) * 3 // 4))]
        d = rep.get("defaults")
        hi = max(hi, d["value"] if d else hi)
        pad = max(hi - lo, 0.02)
        top = hi + 0.35 * pad
        ax.set_ylim(lo - 0.08 * pad, top)
    _points(ax, [r["number"] for r in done], [r["value"] for r in done], top,
            color="#1f77b4", label="complete (best validation loss)")
    _points(ax, [r["number"] for r in others], [_loss(r) for r in others], top,
            color="#999999", marker="x", label="pruned or diverged (loss when stopped)")
    if done:
        xs, ys, best = [], [], math.inf
        for r in sorted(done, key=lambda r: r["number"]):
            best = min(best, r["value"])
            xs.append(r["number"])
            ys.append(best)
        ax.step(xs + [max(r["number"] for r in rows)], ys + ys[-1:], where="post",
                color="#d62728", label="best so far")
        d = rep.get("defaults")
        if d:
            ax.axhline(d["value"], color="#2ca02c", ls="--", lw=1,
                       label=f"charlstm train's defaults ({d['value']:.3f})")
    if top is not None and any(_loss(r) > top for r in done + others):
        ax.scatter([], [], marker="^", color="#999999", label="above the chart")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("validation loss (nats/char)")
    c = rep["counts"]
    fig.suptitle(f"charlstm tune: {c['complete']} complete, {c['pruned']} pruned"
                 + (f", {c['diverged']} diverged" if c.get("diverged") else "")
                 + f"; {rep['trial_minutes']:g} minutes a trial", fontsize=11, y=0.995)
    ax.legend(fontsize=8, ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.0),
              frameon=False)
    ax.grid(alpha=0.3)
    for key, row, col, span in slots:
        a = fig.add_subplot(gs[row, col:col + span])
        _effect(a, key, space[key], done, others, top)
        if done:
            a.set_ylim(*ax.get_ylim())
    from ...files import save_figure
    save_figure(fig, path, bbox_inches="tight")
    plt.close(fig)
    return True


def _loss(r):
    return r["last_val"] if r["state"] == "pruned" else r["value"]


def _points(ax, xs, ys, top, marker="o", **style):
    """A scatter whose points above `top` sit on the top edge as triangles."""
    inside = [(x, y) for x, y in zip(xs, ys) if top is None or y <= top]
    over = [x for x, y in zip(xs, ys) if top is not None and y > top]
    ax.scatter([x for x, _ in inside], [y for _, y in inside], marker=marker, zorder=3,
               s=style.pop("s", 28), **style)
    style.pop("label", None)
    if over:
        ax.scatter(over, [top] * len(over), marker="^", zorder=3, clip_on=False, s=28,
                   **style)


def _setting(r, key):
    s = r["settings"]
    return f"{s['layers']}x{s['hidden']}" if key == "size" else s[key]


def _effect(ax, key, entry, done, others, top):
    """Loss against one setting: a strip per choice, or a scatter on a range."""
    label = {"size": "layers x hidden", "seq_len": "seq-len", "batch_size": "batch size",
             "lr": "learning rate"}.get(key, key.replace("_", " "))
    styles = ((others, dict(marker="x", color="#999999")), (done, dict(color="#1f77b4")))
    if "choices" in entry:
        choices = entry["choices"]
        pos = {c: k for k, c in enumerate(choices)}
        for rows, style in styles:
            rows = [r for r in rows if _setting(r, key) in pos]
            _points(ax, [pos[_setting(r, key)] + 0.05 * ((r["number"] * 7) % 5 - 2)
                         for r in rows], [_loss(r) for r in rows], top, s=18, **style)
        ax.set_xticks(range(len(choices)))
        ax.set_xticklabels([str(c) for c in choices], fontsize=7,
                           rotation=45 if len(choices) > 6 else 0)
        ax.set_xlim(-0.5, len(choices) - 0.5)
    else:
        for rows, style in styles:
            _points(ax, [_setting(r, key) for r in rows], [_loss(r) for r in rows], top,
                    s=18, **style)
        if entry.get("log"):
            from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
            ax.xaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlim(entry["low"] * 0.8, entry["high"] * 1.25)
        else:
            pad = 0.05 * (entry["high"] - entry["low"])
            ax.set_xlim(entry["low"] - pad, entry["high"] + pad)
    ax.set_title(label, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def settings_of(ck) -> dict:
    """A checkpoint's settings in a trial's terms (the tests compare the printed
    command's settings with the trial's through this)."""
    m, t = ck.model, ck.train
    return {k: getattr(m, k) for k in MODEL_KEYS} | {k: getattr(t, k) for k in TRAIN_KEYS}

