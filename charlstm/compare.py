"""`charlstm compare`: the seeds' experiment. Several cells trained on the same
text with the same seed and budget, then measured side by side: loss, speed,
samples, the recall demo (seed 003) and how far back gradients reach."""
from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from itertools import zip_longest
from multiprocessing import get_context

import numpy as np

from . import kernels as K
from .config import ModelConfig, TrainConfig, default_lr
from .data import load_corpus
from .errors import CharlstmError
from .model import Model, Workspace, n_params
from .train import LN2, Trainer

MARKERS = "*o+x#@%&"


# ---------------------------------------------------------------------------
# Sizing, recall and gradient flow: pure measurements, usable on their own.

def match_hidden(cfg: ModelConfig, target: int) -> int:
    """The hidden size whose parameter count is closest to `target`."""
    lo, hi = 1, 16384
    while lo < hi:                                   # first H with count >= target
        mid = (lo + hi) // 2
        if n_params(replace(cfg, hidden=mid)) < target:
            lo = mid + 1
        else:
            hi = mid
    cands = [h for h in (lo - 1, lo) if h >= 1]
    return min(cands, key=lambda h: abs(n_params(replace(cfg, hidden=h)) - target))


def recall_passages(ids: np.ndarray, vocab: str, n: int, prime: int, length: int):
    """`n` passages evenly spread over the training text, each starting at a
    line start: (prime ids, true continuation ids)."""
    out = []
    nl = vocab.find("\n")
    span = len(ids) - prime - length - 1
    if span <= 0:
        return out
    for k in range(n):
        start = int(span * (k + 0.5) / n)
        if nl >= 0:
            hits = np.flatnonzero(ids[start:start + 2000] == nl)
            start = start + int(hits[0]) + 1 if len(hits) and start + hits[0] + 1 <= span else start
        out.append((ids[start:start + prime].astype(np.int64),
                    ids[start + prime:start + prime + length].astype(np.int64)))
    return out


def recall_score(sampler, passages) -> dict:
    """Greedy decoding after each prime: the fraction of the next characters that
    match the text, and the length of the exactly reproduced prefix."""
    fracs, prefixes = [], []
    for prime, truth in passages:
        h, c = sampler.model.zero_state(1)
        out = np.empty(len(truth), np.int64)
        sampler.generate(out, prime, np.zeros(len(truth)), h, c, greedy=True)
        same = out == truth
        fracs.append(float(same.mean()))
        prefixes.append(int(len(same) if same.all() else np.argmin(same)))
    return {"fraction": float(np.mean(fracs)) if fracs else None,
            "prefix_mean": float(np.mean(prefixes)) if prefixes else None,
            "per_passage": fracs, "prefixes": prefixes}


def gradient_flow(model: Model, ids: np.ndarray, T: int, B: int = 16):
    """Mean norm, over B streams of held-out text, of dL_t/dh_{t-k} and
    dL_t/dc_{t-k} for k = 0..T, where L_t is the loss at the last step of a
    T-step window and h, c are the first layer's states (so every path back
    through time and through the layers above counts). Each stream first runs
    T steps to get a realistic state. Runs on a float64 copy of the model, so
    that the RNN's vanishing gradient is measured rather than underflowing.
    Returns (gh, gc or None), arrays of T+1."""
    model = Model(model.cfg, np.float64, model.flat.astype(np.float64))
    T = min(T, (len(ids) - 1) // (2 * B) - 1)
    if T < 2:
        raise CharlstmError("too little held-out text to measure gradient flow")
    L = len(ids) // B
    streams = ids[:B * L].reshape(B, L)
    ws = Workspace(model.cfg, T, B, model.dtype)
    h, c = model.zero_state(B)
    model.forward(ws, streams[:, :T].T, h, c)                    # warm-up window
    h, c = model.final_state(ws)
    x, y = streams[:, T:2 * T].T, streams[:, T + 1:2 * T + 1].T
    logits = model.forward(ws, x, h, c)
    dlogits = np.zeros_like(logits)
    last = slice((T - 1) * B, T * B)                             # only L at the last step
    K.softmax_xent(dlogits[last], np.ascontiguousarray(logits[last]),
                   np.ascontiguousarray(y[-1], dtype=np.intp), 1.0)
    model.grad[:] = 0
    model.backward(ws, dlogits)
    w = ws.layers[0]
    gh = np.linalg.norm(w["dhs"][T::-1], axis=2).mean(axis=1)   # k = 0 .. T
    gc = np.linalg.norm(w["dcs"][T::-1], axis=2).mean(axis=1) if model.cell.has_c else None
    return gh.astype(float), None if gc is None else gc.astype(float)


def horizon(g, frac=0.01):
    """The first k at which g(k) < frac * g(0); None if it never does."""
    below = np.flatnonzero(np.asarray(g) < frac * g[0])
    return int(below[0]) if len(below) else None


# ---------------------------------------------------------------------------
# One model, start to finish (runs in a worker process when --jobs > 1).

def train_one(job: dict) -> dict:
    mcfg, tcfg = ModelConfig(**job["model"]), TrainConfig(**job["train"])
    corpus = load_corpus(job["text"], tcfg.val_frac)
    tr = Trainer(job["text"], mcfg, tcfg, job["out"], progress=job["progress"],
                 log=lambda m: None, corpus=corpus, bar_position=job["position"],
                 workers=job["threads"])
    t0 = time.perf_counter()
    r = tr.run()
    wall = time.perf_counter() - t0
    m = tr.model
    passages = recall_passages(corpus.train, corpus.vocab, job["recall_passages"],
                               job["recall_prime"], job["recall_chars"])
    from .sampling import Sampler
    sampler = Sampler(m, corpus.vocab, threads=job["threads"])
    sample = sampler.text(job["seed"], job["length"], temperature=0.8, rng_seed=tcfg.rng_seed)
    flow_ids = corpus.val if len(corpus.val) > 8 * tcfg.seq_len else corpus.train
    gh, gc = gradient_flow(m, flow_ids, job["flow_T"])
    hist = np.array(tr.hist_val).reshape(-1, 3)
    return {
        "cell": mcfg.cell, "hidden": mcfg.hidden, "layers": mcfg.layers, "params": m.size,
        "lr": tcfg.lr,
        "steps": r.steps, "diverged": r.diverged,
        "train_loss": r.train_loss, "val_loss": r.val_loss,
        "best_val": r.best_val, "chars_per_s": r.chars_per_s, "wall_s": wall,
        "sample": sample, "recall": recall_score(sampler, passages),
        "grad_flow_h": gh.tolist(), "grad_flow_c": None if gc is None else gc.tolist(),
        "horizon_h": horizon(gh), "horizon_c": None if gc is None else horizon(gc),
        "val_curve": hist.tolist(), "checkpoint": r.path,
    }


# ---------------------------------------------------------------------------
# The report.

def run_compare(text, cells, mcfg: ModelConfig, tcfg: TrainConfig, *, cell_lr=False,
                match_params=False,
                seed="", length=300, recall_chars=200, out_dir=None, jobs=None,
                progress=True, echo=print, log=print) -> dict:
    """Train every cell in `cells` as mcfg/tcfg say, each in its own process when
    jobs > 1, then print and save the report. cell_lr: each cell at its own
    default learning rate (config.default_lr) instead of tcfg.lr, as when the
    user gave no --lr."""
    corpus = load_corpus(text, tcfg.val_frac)            # checks the file once, up front
    need = tcfg.batch_size * (tcfg.seq_len + 1)
    if len(corpus.train) < need:
        raise CharlstmError(f"{text} is too short for one batch ({len(corpus.train)} training "
                            f"characters, need {need}); lower --batch-size or --seq-len")
    if not seed:
        seed = _default_seed(corpus)
    from .data import encode_text
    encode_text(seed, corpus.vocab)                      # unknown characters: fail now
    out_dir = out_dir or os.path.join("checkpoints", "compare-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)
    target = n_params(replace(mcfg, cell="lstm", vocab_size=corpus.V))
    n_jobs = jobs or (2 if len(cells) > 1 and (os.cpu_count() or 1) >= 2 else 1)
    threads = max(1, (os.cpu_count() or 1) // n_jobs)      # each model's share of the cores
    jobs_list = []
    for k, cell in enumerate(cells):
        cfg = replace(mcfg, cell=cell, vocab_size=corpus.V)
        if match_params:
            cfg = replace(cfg, hidden=match_hidden(cfg, target))
        jobs_list.append(dict(
            text=text, model=asdict(cfg), seed=seed, length=length,
            train=asdict(replace(tcfg, lr=default_lr(cell)) if cell_lr else tcfg),
            out=os.path.join(out_dir, f"{cell}.npz"), progress=progress, position=k,
            recall_passages=5, recall_prime=100, recall_chars=recall_chars,
            flow_T=tcfg.seq_len, threads=threads))
    budget = (f"{tcfg.steps} steps" if tcfg.steps else f"{tcfg.minutes:g} minutes"
              if tcfg.minutes else f"{tcfg.epochs:g} epochs")
    log(f"training {len(cells)} models ({budget} each), {n_jobs} at a time"
        + (", one core each" if n_jobs > 1 else ""))
    t0 = time.perf_counter()
    if n_jobs == 1:
        results = [train_one(j) for j in jobs_list]
    else:
        results = _in_processes(jobs_list, n_jobs)
    total = time.perf_counter() - t0
    report = {"text": text, "cells": cells, "model": asdict(mcfg), "train": asdict(tcfg),
              "match_params": match_params, "lstm_params": target, "jobs": n_jobs,
              "vocab_size": corpus.V,
              "seed": seed, "wall_s": total, "models": results}
    report["png"] = _plot(results, os.path.join(out_dir, "compare.png"), log)
    path = os.path.join(out_dir, "results.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=1, ensure_ascii=False)
    _print(report, echo)
    echo(f"\nresults: {path}" + (f"\nplot:    {report['png']}" if report["png"] else ""))
    return report


def _die_with_parent():
    """Worker processes end when compare's own process ends, however it ends
    (SIGTERM, SIGKILL): they would otherwise train on, orphaned, to the end of
    their budget. Linux only (prctl PR_SET_PDEATHSIG); elsewhere nothing."""
    import ctypes
    import signal
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:                     # the parent was gone already
        os._exit(1)


def _in_processes(jobs_list, n_jobs):
    """Each worker is a fresh process with one BLAS thread, so n_jobs models
    share the cores without oversubscribing them."""
    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        with ProcessPoolExecutor(n_jobs, mp_context=get_context("spawn"),
                                 initializer=_die_with_parent) as pool:
            return list(pool.map(train_one, jobs_list))
    finally:
        if saved is None:
            os.environ.pop("OPENBLAS_NUM_THREADS")
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = saved


def _default_seed(corpus) -> str:
    """The first full line of the validation text (or of the text), up to 40 chars."""
    ids = corpus.val if len(corpus.val) > 200 else corpus.train
    text = "".join(corpus.vocab[i] for i in ids[:2000])
    lines = [ln for ln in text.split("\n")[1:] if ln.strip()]
    line = lines[0] if lines else text
    return line[:40]


def _fmt(x, spec):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec) if abs(x) < 1e4 else format(x, ".1e")


def _print(rep, echo):
    ms = rep["models"]
    echo("")
    head = (f"{'cell':<14}{'hidden':>7}{'params':>11}{'lr':>7}{'steps':>7}{'train':>8}{'val':>8}"
            f"{'val bits':>9}{'chars/s':>9}{'wall s':>8}{'recall':>8}{'grad k1%':>9}")
    echo(head)
    echo("-" * len(head))
    for m in ms:
        rec = m["recall"]["fraction"]
        hz = m["horizon_h"]
        steps = f"{m['steps']}" + ("!" if m.get("diverged") else "")
        echo(f"{m['cell']:<14}{m['hidden']:>7}{m['params']:>11,}{m['lr']:>7g}{steps:>7}"
             f"{_fmt(m['train_loss'], '.3f'):>8}{_fmt(m['val_loss'], '.3f'):>8}"
             f"{_fmt(m['val_loss'] and m['val_loss'] / LN2, '.3f'):>9}"
             f"{m['chars_per_s']:>9,.0f}{m['wall_s']:>8.0f}"
             f"{_fmt(rec and 100 * rec, '.0f') + '%':>8}"
             f"{('>' + str(len(m['grad_flow_h']) - 1)) if hz is None else hz:>9}")
    if any(m.get("diverged") for m in ms):
        echo("! diverged (loss or gradient overflowed) after this many steps; the row shows "
             "the last finite model")
    ev = rep["train"]
    echo("losses in nats/char (val: " + (f"first {ev['eval_chars']:,} held-out chars"
         if ev["eval_chars"] else "all held-out text") + "); recall: greedy continuation of 5 training passages, share of "
         "characters right;\ngrad k1%: the k at which |dL_t/dh_(t-k)| falls below 1% of "
         "its value at k = 0")
    echo(f"\nSamples, each continuing {rep['seed']!r}:")
    width = 38
    for group in range(0, len(ms), 3):
        cols = ms[group:group + 3]
        wrapped = [_wrap(rep["seed"] + m["sample"], width) for m in cols]
        echo("")
        echo("  ".join(f"[{m['cell']}]".ljust(width) for m in cols))
        for row in zip_longest(*wrapped, fillvalue=""):
            echo("  ".join(r.ljust(width) for r in row).rstrip())
    echo("\nGradient flow, mean |dL_t/dh_(t-k)| relative to k = 0 (log scale):")
    series = {m["cell"]: (np.arange(len(m["grad_flow_h"])),
                          np.array(m["grad_flow_h"]) / m["grad_flow_h"][0]) for m in ms}
    for line in text_chart(series, logy=True, xlabel="k (steps back)"):
        echo(line)
    curves = {m["cell"]: (np.array(m["val_curve"])[:, 0], np.array(m["val_curve"])[:, 2])
              for m in ms if len(m["val_curve"]) > 1}
    if curves:
        top = math.log(rep["vocab_size"])      # a uniform guess; a diverging model goes far above
        above = any(np.nanmax(y) > top for _, y in curves.values())
        echo("\nValidation loss (nats/char) against steps"
             + (f" (losses above ln V = {top:.2f}, a uniform guess, drawn on the top line)"
                if above else "") + ":")
        for line in text_chart(curves, xlabel="step", ymax=top):
            echo(line)


def _wrap(text, width):
    out = []
    for para in text.split("\n"):
        while len(para) > width:
            out.append(para[:width])
            para = para[width:]
        out.append(para)
    return out


def text_chart(series: dict, width=64, height=12, logy=False, xlabel="",
               ymax=None) -> list[str]:
    """A terminal chart of several (x, y) curves, one marker per curve; y above
    ymax (if given) is drawn on the top line."""
    pts = {k: (np.asarray(x, float), np.asarray(y, float)) for k, (x, y) in series.items()}
    if ymax is not None:
        pts = {k: (x, np.minimum(y, ymax)) for k, (x, y) in pts.items()}
    ys = np.concatenate([y[np.isfinite(y) & ((y > 0) if logy else True)] for _, y in pts.values()])
    xs = np.concatenate([x for x, _ in pts.values()])
    if ys.size == 0:
        return []
    tr = np.log10 if logy else (lambda v: v)
    lo, hi = tr(ys.min()), tr(ys.max())
    hi = hi if hi > lo else lo + 1
    x0, x1 = xs.min(), max(xs.max(), xs.min() + 1)
    grid = [[" "] * width for _ in range(height)]
    for mark, (name, (x, y)) in zip(MARKERS, pts.items()):
        ok = np.isfinite(y) & ((y > 0) if logy else True)
        for xi, yi in zip(x[ok], y[ok]):
            col = int(round((xi - x0) / (x1 - x0) * (width - 1)))
            row = int(round((hi - tr(yi)) / (hi - lo) * (height - 1)))
            grid[row][col] = mark
    label = (lambda v: f"{10 ** v:9.1e}") if logy else (lambda v: f"{v:9.4g}")
    lines = []
    for r, row in enumerate(grid):
        v = hi - (hi - lo) * r / (height - 1)
        lines.append((label(v) if r in (0, height // 2, height - 1) else " " * 9) + " |" + "".join(row))
    lines.append(" " * 10 + "+" + "-" * width)
    lines.append(" " * 11 + f"{x0:<.0f}".ljust(width - 8) + f"{x1:>8.0f}")
    lines.append(" " * 11 + xlabel + "   " + "  ".join(f"{m} {n}" for m, n in zip(MARKERS, pts)))
    return lines


def _plot(results, path, log):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed, so no PNG: pip install matplotlib")
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for m in results:
        v = np.array(m["val_curve"]).reshape(-1, 3)
        lab = f"{m['cell']} (H={m['hidden']}, {m['params'] / 1e3:.0f}k params)"
        if len(v):
            axes[0].plot(v[:, 0], v[:, 2], marker=".", label=lab)
            axes[1].plot(v[:, 1], v[:, 2], marker=".", label=lab)
        g = np.array(m["grad_flow_h"])
        line, = axes[2].semilogy(np.arange(len(g)), g / g[0], label=f"{m['cell']}: h")
        if m["grad_flow_c"] is not None:
            gc = np.array(m["grad_flow_c"])
            axes[2].semilogy(np.arange(len(gc)), gc / gc[0], "--", color=line.get_color(),
                             label=f"{m['cell']}: c")
    axes[0].set(xlabel="training step", ylabel="validation loss (nats/char)",
                title="Validation loss by step")
    axes[1].set(xlabel="wall-clock seconds", ylabel="validation loss (nats/char)",
                title="Validation loss by time")
    axes[2].set(xlabel="k (steps back in time)", ylabel="mean |dL_t / d state_(t-k)|, k=0 → 1",
                title="Gradient flow on held-out text")
    axes[2].axhline(0.01, color="grey", lw=0.8, ls=":")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
