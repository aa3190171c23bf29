"""`charlstm compare`: does the LSTM keep information over longer spans than a
vanilla RNN? Several cells are trained on the same text with the same seed and
budget, then measured side by side: loss, speed, samples, the recall of
training passages, the context curve and how far back gradients reach
(memory.py holds the measurements). With --probe, every cell is also trained on
the memory probe at several lags (Hochreiter & Schmidhuber 1997, in small).
The report goes to the terminal, results.json, compare.png and report.html."""
from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, replace
from itertools import zip_longest
from multiprocessing import get_context

import numpy as np

from . import files
from . import memory as M
from . import stopping
from .config import ModelConfig, TrainConfig, default_lr
from .data import load_corpus
from .errors import CharlstmError
from .words import plural
from .model import n_params
from .stopping import Stop
from .train import Trainer
from .workers import die_with_parent, job_counts, one_blas_thread, stop_children

MARKERS = "*o+x#@%&"
JOBS = min(2, os.cpu_count() or 1)     # models trained at once by default (workers.job_counts)


# ---------------------------------------------------------------------------
# Sizing and recall: pure measurements, usable on their own.

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


def recall_scores(sampler, passages) -> dict:
    """For each passage: the greedy continuation after its prime, the exact
    prefix (characters right before the first mistake: what the lecture
    notes' demo shows) and the teacher-forced accuracy (the share of the
    continuation's characters that are the likeliest next one given the true
    history: memorisation, without the cascade after a first miss)."""
    vocab = sampler.vocab
    rows = []
    for prime, truth in passages:
        h, c = sampler.model.zero_state(1)
        out = np.empty(len(truth), np.int64)
        sampler.generate(out, prime, np.zeros(len(truth)), h, c, greedy=True)
        rows.append({"prime": "".join(vocab[i] for i in prime),
                     "truth": "".join(vocab[i] for i in truth),
                     "output": "".join(vocab[i] for i in out),
                     "prefix": M.exact_prefix(out, truth),
                     "teacher_forced": M.teacher_forced_accuracy(sampler.model, prime, truth)})
    mean = lambda key: float(np.mean([r[key] for r in rows])) if rows else None  # noqa: E731
    return {"prefix_mean": mean("prefix"), "teacher_forced": mean("teacher_forced"),
            "chars": len(passages[0][1]) if passages else 0, "passages": rows}


def diverged_val(loss, V: int) -> bool:
    """A loss no better than a uniform guess over the V symbols, or not finite."""
    return loss is None or not math.isfinite(loss) or loss > math.log(V)


# ---------------------------------------------------------------------------
# One model, start to finish (runs in a worker process when --jobs > 1).

def train_one(job: dict) -> dict:
    mcfg, tcfg = ModelConfig(**job["model"]), TrainConfig(**job["train"])
    corpus = load_corpus(job["text"], tcfg.val_frac)
    tr = Trainer(job["text"], mcfg, tcfg, job["out"], progress=job["progress"],
                 log=lambda m: None, corpus=corpus, bar_position=job["position"],
                 workers=job["threads"])
    t0 = time.perf_counter()
    with files.locked(job["out"]):
        r = tr.run()
    if r.interrupted:                 # compare is stopping: the checkpoint is saved
        return {"cell": mcfg.cell, "interrupted": True, "signum": r.signum}
    wall = time.perf_counter() - t0
    m = tr.model
    passages = recall_passages(corpus.train, corpus.vocab, job["recall_passages"],
                               job["recall_prime"], job["recall_chars"])
    from .sampling import Sampler
    sampler = Sampler(m, corpus.vocab, threads=job["threads"])
    sample = sampler.text(job["seed"], job["length"], temperature=0.8, rng_seed=tcfg.rng_seed)
    held = corpus.val if len(corpus.val) > job["context_max"] + 100 else corpus.train
    ks = M.context_ks(job["context_max"])
    pos = M.context_positions(len(held), ks[-1], job["context_positions"])
    t1 = time.perf_counter()
    ctx = M.context_curve(m, held, ks, pos)
    ctx_s = time.perf_counter() - t1
    flow_ids = corpus.val if len(corpus.val) > 8 * job["flow_T"] else corpus.train
    flow = M.gradient_flow(m, flow_ids, job["flow_T"])
    hist = np.array(tr.hist_val).reshape(-1, 3)
    return {
        "cell": mcfg.cell, "hidden": mcfg.hidden, "layers": mcfg.layers, "params": m.size,
        "lr": tcfg.lr,
        "steps": r.steps, "diverged": r.diverged,
        "train_loss": r.train_loss, "val_loss": r.val_loss,
        "val_overflow": diverged_val(r.val_loss, corpus.V),
        "best_val": r.best_val, "chars_per_s": r.chars_per_s, "wall_s": wall,
        "sample": sample, "recall": recall_scores(sampler, passages),
        "context": {"k": ks, "loss": ctx.tolist(), "span": M.context_span(ks, ctx),
                    "positions": len(pos), "held_out": held is corpus.val, "seconds": ctx_s},
        "grad_flow": flow, "horizon": flow_horizons(flow),
        "val_curve": hist.tolist(), "checkpoint": r.path,
        "notes": model_notes(r.val_loss, r.train_loss, ks, ctx, corpus.V),
    }


def model_notes(val, train, ks, ctx, V: int) -> list[str]:
    """What a reader should know to read a model's row: why its validation
    loss is no better than a uniform guess, and a context curve that rises."""
    notes, top, k_max = [], math.log(V), ks[-1]
    short = float(ctx[-1])
    if diverged_val(val, V):
        if math.isfinite(short) and short <= top and (val is None or not math.isfinite(val)
                                                      or val > short + 0.5):
            notes.append(f"the held-out loss with the state carried through the long streams "
                         f"({_fmt(val, '.3g')}) is far above the loss from {k_max}-character "
                         f"contexts ({short:.3f}): the carried state overflows, and val@{k_max} "
                         "shows what the model learned")
        elif train is not None and math.isfinite(train) and train < short - 1.0:
            notes.append(f"it has memorised its training text (training loss {train:.3f}) and "
                         f"does no better than a uniform guess on unseen text (ln V = "
                         f"{top:.2f})")
        else:
            notes.append(f"its held-out loss is no better than a uniform guess (ln V = {top:.2f})")
    best = float(np.min(ctx))
    if np.isfinite(best) and ctx[-1] > best + 0.05:
        notes.append(f"its context curve rises after its lowest point ({best:.3f} at "
                     f"k = {ks[int(np.argmin(ctx))]}): more context makes it worse on unseen text, as for a "
                     "model that has memorised its training text; its context span says little")
    return notes


def flow_horizons(flow: dict) -> dict:
    """The k at which each statistic of the gradient falls below 1% of its
    value at k = 0 (None: not within the flow_T steps measured), and the
    cell's reach: the furthest of the per-unit maxima of the h and c paths."""
    out = {}
    for path in ("h", "c"):
        if flow.get(path):
            out[path] = {stat: M.horizon(v) for stat, v in flow[path].items()}
    reach = [out[p]["max"] for p in out]
    out["reach"] = None if None in reach else max(reach)
    out["T"] = flow["T"]
    return out


# ---------------------------------------------------------------------------
# The memory probe: every cell at every lag (compare --probe).

def probe_one(job: dict) -> dict:
    """Train one cell on the probe at one lag, stopping once it recalls the key
    in ≥ 99% of held-out lines; report its accuracy on held-out lines."""
    mcfg, tcfg = ModelConfig(**job["model"]), TrainConfig(**job["train"])
    corpus = M.probe_corpus(job["lag"], seed=job["seed"])
    mcfg = replace(mcfg, vocab_size=corpus.V)
    check = corpus.val[:len(corpus.val) // 4]          # scored as it trains, to stop early
    curve = []

    def solved(tr):
        acc = M.probe_accuracy(tr.model, check, corpus.vocab)
        curve.append([tr.state["step"], tr.state["elapsed"], acc])
        return acc >= 0.99

    tr = Trainer(f"probe lag {job['lag']}", mcfg, tcfg, job["out"], progress=job["progress"],
                 log=lambda m: None, corpus=corpus, bar_position=job["position"],
                 workers=job["threads"], stop_when=solved)
    tr.bar_desc = f"{mcfg.cell} lag {job['lag']}"
    with files.locked(job["out"]):
        r = tr.run()
    if r.interrupted:
        return {"cell": mcfg.cell, "lag": job["lag"], "interrupted": True, "signum": r.signum}
    acc = M.probe_accuracy(tr.model, corpus.val[len(check):], corpus.vocab)
    flow = M.gradient_flow(tr.model, corpus.val, min(job["flow_T"], 2 * (job["lag"] + 4)))
    return {"cell": mcfg.cell, "lag": job["lag"], "accuracy": acc, "steps": r.steps,
            "seconds": r.seconds, "budget_s": 60 * tcfg.minutes if tcfg.minutes else None,
            "solved_early": tr.stopped_early, "seq_len": tcfg.seq_len,
            "val_loss": r.val_loss, "curve": curve, "diverged": r.diverged,
            "horizon": flow_horizons(flow)}


def run_probe(cells, lags, mcfg: ModelConfig, tcfg: TrainConfig, *, cell_lr=True,
              out_dir, jobs=None, progress=True, log=print, minutes=None) -> dict:
    """Every cell trained on the probe text of every lag, `jobs` at a time:
    each for tcfg's budget, or, with `minutes`, all of them sharing that much
    wall-clock time (_run_jobs), the shortest lags first, so that the time
    they leave when they are solved early goes to the longer ones."""
    n_jobs, threads = job_counts(jobs, len(cells) * len(lags), JOBS)
    work = []
    for lag in sorted(lags):
        T = max(tcfg.seq_len, 2 * (lag + 4))          # truncated BPTT must reach the key
        for cell in cells:
            t = replace(tcfg, seq_len=T, lr=default_lr(cell) if cell_lr else tcfg.lr)
            work.append(dict(model=asdict(replace(mcfg, cell=cell)), train=asdict(t),
                             lag=lag, seed=tcfg.rng_seed, progress=progress,
                             position=len(work) % n_jobs, threads=threads, flow_T=400,
                             out=os.path.join(out_dir, "probe", f"{cell}-lag{lag}.npz")))
    budget = (f"{plural(minutes, 'minute')} shared, the shortest lags first" if minutes
              else f"{_budget(tcfg)} each")
    log(f"memory probe: {plural(len(cells), 'cell')} × {plural(len(lags), 'lag')}, {budget}; "
        "a model stops once "
        f"it recalls ≥ 99% of held-out keys; {n_jobs} at a time; --seq-len raised to "
        "2 × (lag + 4) where shorter")
    rows = _run_jobs(probe_one, work, n_jobs, minutes)
    _raise_if_stopped(rows)
    acc = {c: [next(r["accuracy"] for r in rows if r["cell"] == c and r["lag"] == lag)
               for lag in lags] for c in cells}
    return {"lags": list(lags), "accuracy": acc, "chance": 1 / len(M.PROBE_KEYS),
            "span": {c: M.memory_span(lags, acc[c]) for c in cells},
            "threshold": 0.9, "hidden": mcfg.hidden, "runs": rows,
            "example": M.probe_text(M.probe_ids(min(lags), 2, np.random.default_rng(0)))}


# ---------------------------------------------------------------------------
# The report.

def run_compare(text, cells, mcfg: ModelConfig, tcfg: TrainConfig, *, cell_lr=False,
                match_params=False, seed="", length=300, recall_chars=200, out_dir=None,
                jobs=None, progress=True, context_max=512, context_positions=2000,
                probe=None, force=False, echo=print, log=print, given=None) -> dict:
    """Train every cell in `cells` on `text` as mcfg/tcfg say, each in its own
    process when jobs > 1; with `probe` (a dict of lags, model and train
    settings), also run the memory probe; then print the report and write
    results.json, compare.png and report.html into out_dir (check_outputs:
    an earlier run's folder is replaced only with force). text may be None
    when probe is given. cell_lr: each cell at its own default learning rate
    (config.default_lr) instead of tcfg.lr, as when the user gave no --lr.
    given: the model options the user gave (sizing.given_options); the rest is
    chosen for each cell (_sizes); None: mcfg and tcfg as they are."""
    report = {"text": text, "cells": cells, "model": asdict(mcfg), "train": asdict(tcfg),
              "match_params": match_params, "models": [], "probe": None, "context": {}}
    corpus = target = None
    if text is not None:
        corpus = load_corpus(text, tcfg.val_frac)         # checks the file once, up front
        need = tcfg.batch_size * (tcfg.seq_len + 1)
        if len(corpus.train) < need:
            raise CharlstmError(f"{text} is too short for one batch ({len(corpus.train)} "
                                f"training characters, need {need}); lower --batch-size or "
                                "--seq-len")
        context_max = _fit_context(len(corpus.val), context_max, log)
        if not seed:
            seed = _default_seed(corpus)
        from .data import encode_text
        encode_text(seed, corpus.vocab)                   # unknown characters: fail now
        target = n_params(replace(mcfg, cell="lstm", vocab_size=corpus.V))
        report.update(lstm_params=target, vocab_size=corpus.V, seed=seed,
                      context_max=context_max)
    out_dir = out_dir or os.path.join("checkpoints", "compare-" + time.strftime("%Y%m%d-%H%M%S"))
    check_outputs(out_dir, text, cells, probe, force)
    with files.locked(os.path.join(out_dir, files.RUN_MARKER)):
        return _compare(report, text, cells, mcfg, tcfg, corpus, target, cell_lr=cell_lr,
                        match_params=match_params, seed=seed, length=length,
                        recall_chars=recall_chars, out_dir=out_dir, jobs=jobs,
                        progress=progress, context_max=context_max,
                        context_positions=context_positions, probe=probe, echo=echo, log=log,
                        given=given)


def check_outputs(out_dir: str, text, cells, probe, force: bool) -> None:
    """Every file compare will write, checked before any training: the run
    folder is new, empty, or an earlier compare run's (replaced only with
    --force); no file in it is the training text, locked by a live run, or
    not charlstm's own of its kind."""
    from .train import best_path
    files.check_run_folder(out_dir, "compare", force=force, legacy=_legacy_run)
    inputs = {text: "the training text"} if text else {}
    outs = [(os.path.join(out_dir, n), k) for n, k in (("results.json", "json"),
                                                         ("compare.png", "png"),
                                                         ("report.html", "page"))]
    models = [os.path.join(out_dir, f"{c}.npz") for c in (cells if text else [])]
    if probe is not None:
        models += [os.path.join(out_dir, "probe", f"{c}-lag{lag}.npz")
                   for lag in probe["lags"] for c in cells]
    outs += [(p, "checkpoint") for m in models for p in (m, best_path(m))]
    for path, kind in outs:
        files.check_output(path, kind, option="--out-dir", inputs=inputs, continuing=True)


def _legacy_run(folder: str) -> bool:
    """A run folder of a charlstm before run folders were marked: its results.json."""
    d = files._json_doc(os.path.join(folder, "results.json"))
    return isinstance(d, dict) and {"models", "cells", "probe"} <= set(d)


def _raise_if_stopped(rows) -> None:
    """A model that was stopped by a signal means compare is stopping."""
    stopped = [r for r in rows if r and r.get("interrupted")]
    if stopped:
        raise Stop(stopping.pending() or stopped[0].get("signum") or signal.SIGINT)


def _sizes(cells, mcfg, tcfg, corpus, given, cell_lr, threads, log) -> dict:
    """Each cell's settings: the hidden size (and dropout) that sizing.choose
    gives it for its own speed on its share of the cores, unless --hidden was
    given; its own default learning rate unless --lr was."""
    from . import sizing
    out = {}
    for cell in cells:
        m = replace(mcfg, cell=cell)
        t = replace(tcfg, lr=default_lr(cell)) if cell_lr else tcfg
        if given is None:                  # a caller that sizes itself (tests, the probe)
            out[cell] = (m, t)
            continue
        choice = sizing.choose(corpus, m, t, set(given) | ({"lr"} if cell_lr else set()),
                               threads=threads)
        log(f"{cell}: {choice.reason}")
        out[cell] = (choice.model, choice.train)
    return out


def _compare(report, text, cells, mcfg, tcfg, corpus, target, *, cell_lr, match_params, seed,
             length, recall_chars, out_dir, jobs, progress, context_max, context_positions,
             probe, echo, log, given=None) -> dict:
    t0 = time.perf_counter()
    jobs_list = []
    if text is not None:
        n_jobs, threads = job_counts(jobs, len(cells), JOBS)
        chosen = _sizes(cells, mcfg, tcfg, corpus, given, cell_lr, threads, log)
        if match_params:
            target = n_params(replace(chosen.get("lstm", (mcfg, tcfg))[0], cell="lstm",
                                      vocab_size=corpus.V))
            report["lstm_params"] = target
        for k, cell in enumerate(cells):
            cfg, tc = chosen[cell]
            cfg = replace(cfg, vocab_size=corpus.V)
            if match_params:
                cfg = replace(cfg, hidden=match_hidden(cfg, target))
            jobs_list.append(dict(
                text=text, model=asdict(cfg), seed=seed, length=length, train=asdict(tc),
                out=os.path.join(out_dir, f"{cell}.npz"), progress=progress, position=k % n_jobs,
                recall_passages=5, recall_prime=100, recall_chars=recall_chars,
                flow_T=max(FLOW_STEPS, tcfg.seq_len), threads=threads,
                context_max=context_max, context_positions=context_positions))
        log(f"training {plural(len(cells), 'model')} ({_budget(tcfg)} each), {n_jobs} at a time"
            + (", one core each" if n_jobs > 1 else ""))
        report["models"] = _run_jobs(train_one, jobs_list, n_jobs)
        _raise_if_stopped(report["models"])
        report["context"] = {m["cell"]: {k: m["context"][k] for k in ("k", "loss", "span")}
                             for m in report["models"]}
    if probe is not None:
        report["probe"] = run_probe(cells, probe["lags"], probe["model"], probe["train"],
                                    cell_lr=cell_lr, out_dir=out_dir, jobs=jobs,
                                    progress=progress, log=log, minutes=probe.get("minutes"))
    report["wall_s"] = time.perf_counter() - t0
    report["jobs"] = jobs
    report["agreement"] = agreement(report)
    report["png"] = _plot(report, os.path.join(out_dir, "compare.png"), log)
    path = os.path.join(out_dir, "results.json")
    files.write_json(path, {"charlstm": "compare results", **report}, indent=1,
                     ensure_ascii=False)
    from .report import write_report
    page = write_report(report, os.path.join(out_dir, "report.html"))
    _print(report, echo)
    echo(f"\nresults: {path}" + (f"\nplot:    {report['png']}" if report["png"] else "")
         + f"\nreport:  {page}")
    return report


FLOW_STEPS = 200          # gradient flow is measured this many steps back, at least


def _fit_context(n_val: int, k_max: int, log) -> int:
    """The longest context the held-out text allows (k_max, or the largest
    power of two that leaves 50 positions), telling the user when it is cut."""
    if n_val >= k_max + 50:
        return k_max
    k = 1
    while 2 * k + 50 <= n_val:
        k *= 2
    if k < 2:
        raise CharlstmError(f"the held-out text has {n_val} characters, too few for the "
                            "context curve; raise --val-frac or use a longer text")
    log(f"the held-out text has {plural(n_val, 'character')}: the context curve stops at "
        f"k = {k} (asked for {k_max})")
    return k


def _budget(tcfg: TrainConfig) -> str:
    return (plural(tcfg.steps, "step") if tcfg.steps else plural(tcfg.minutes, "minute")
            if tcfg.minutes else plural(tcfg.epochs, "epoch"))


def _run_jobs(fn, jobs_list, n_jobs, minutes=None):
    """fn(job) for every job, n_jobs at a time in worker processes (in this
    process when n_jobs is 1), results in the jobs' order. With `minutes`, the
    jobs share that much wall-clock time: each is given, as it starts, its
    share of the time still free, (time left × n_jobs − time promised to the
    jobs running) / jobs not started, as its "train" budget; a job that ends
    early leaves its time to those after it."""
    deadline = None if minutes is None else time.monotonic() + 60 * minutes

    def budgeted(job, promised, left):
        if deadline is None:
            return job, 0.0
        now = time.monotonic()
        share = ((deadline - now) * n_jobs - promised) / left
        share = min(max(share, MIN_JOB_SECONDS), max(deadline - now, MIN_JOB_SECONDS))
        train = dict(job["train"], minutes=share / 60, steps=0, epochs=0.0)
        return dict(job, train=train), now + share

    if n_jobs == 1:
        out = []
        for k, job in enumerate(jobs_list):
            stopping.check()
            out.append(fn(budgeted(job, 0.0, len(jobs_list) - k)[0]))
            if out[-1].get("interrupted"):
                break                            # stopping: no model after this one
        return out
    return _in_processes(fn, jobs_list, n_jobs, budgeted)


MIN_JOB_SECONDS = 10.0


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


def _in_processes(fn, jobs_list, n_jobs, budgeted):
    """Each worker is a fresh process with one BLAS thread, so n_jobs models
    share the cores without oversubscribing them. Jobs are handed out in
    order as workers come free, each through budgeted(job, promised, left)
    (see _run_jobs). On a stop signal no job is begun; the workers get the
    same signal (each saves its model and stops) and are waited for, at most
    stopping.GRACE seconds, then Stop is raised."""
    import multiprocessing
    ctx = get_context("spawn")
    with one_blas_thread():
        pool = ProcessPoolExecutor(n_jobs, mp_context=ctx, initializer=die_with_parent,
                                   initargs=(os.getpid(),))
    results = [None] * len(jobs_list)
    running = {}                                  # future -> (index, promised end)
    queue = list(range(len(jobs_list)))
    try:
        while queue or running:
            while queue and len(running) < n_jobs:
                stopping.check()
                now = time.monotonic()
                promised = sum(max(0.0, end - now) for _, end in running.values())
                k = queue.pop(0)
                job, end = budgeted(jobs_list[k], promised, len(queue) + 1)
                running[pool.submit(fn, job)] = (k, end)
            done, _ = wait(running, timeout=0.25, return_when=FIRST_COMPLETED)
            for f in done:
                results[running.pop(f)[0]] = f.result()
            stopping.check()
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        children = multiprocessing.active_children()
        for proc in children:                     # each saves its model and stops ...
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signum)
        wait(running, timeout=stopping.GRACE / 2)  # ... and hands back its result
        pool.shutdown(wait=False, cancel_futures=True)   # then the idle workers leave
        stop_children(children, 0, grace=5.0)     # (signal 0: only waited for, then killed)
        raise Stop(signum) from None
    pool.shutdown(wait=True)
    return results


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


FLOW_KS = (1, 5, 10, 20, 50, 100, 200, 400)


def _print(rep, echo):
    ms = rep["models"]
    if ms:
        _print_models(rep, echo)
    if rep.get("probe"):
        _print_probe(rep["probe"], echo)
    if rep.get("agreement"):
        echo("\nDo the measures of memory agree?")
        for line in rep["agreement"]:
            echo("  " + line)


def _print_models(rep, echo):
    ms = rep["models"]
    kmax = rep["context_max"]
    # a † marks a loss no better than a uniform guess; the other rows (and the
    # header) keep its place so that the numbers line up under "val"
    keep = " " if any(m.get("val_overflow") for m in ms) else ""
    head = ["cell", "hidden", "params", "lr", "steps", "train", "val" + keep, f"val@{kmax}",
            "chars/s", "wall s", "prefix", "forced", "context", "reach"]
    rows = [head]
    for m in ms:
        reach = m["horizon"]["reach"]
        rec = m["recall"]
        rows.append([
            m["cell"], str(m["hidden"]), f"{m['params']:,}", f"{m['lr']:g}",
            f"{m['steps']}" + ("!" if m.get("diverged") else ""),
            _fmt(m["train_loss"], ".3f"),
            _fmt(m["val_loss"], ".3f") + ("†" if m.get("val_overflow") else keep),
            _fmt(m["context"]["loss"][-1], ".3f"), f"{m['chars_per_s']:,.0f}",
            f"{m['wall_s']:.0f}", _fmt(rec["prefix_mean"], ".1f"),
            _fmt(rec["teacher_forced"] and 100 * rec["teacher_forced"], ".0f") + "%",
            _fmt(m["context"]["span"], "d"),
            f">{m['horizon']['T']}" if reach is None else str(reach)])
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
    echo(f"\nMemory probe: each line is a key ({''.join(M.PROBE_KEYS)}), lag random filler "
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


def _figure(rep):
    """compare.png: validation loss by step (its y axis fitted to the losses,
    points above ln V on the top edge, marked ×), the context curve, the
    gradient flow (floored at FLOW_FLOOR) and the probe's accuracy by lag, as
    present. Every legend goes under its panel, so none covers data or labels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, NullLocator
    ms, pr = rep["models"], rep.get("probe")
    panels = (["loss", "context", "flow"] if ms else []) + (["probe"] if pr else [])
    flows = flow_series(ms) if ms else []
    rows = max([len(ms), (len(flows) + 1) // 2, len(pr["accuracy"]) + 2 if pr else 0])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.4 + 0.14 * rows),
                             squeeze=False, layout="constrained")
    ax = dict(zip(panels, axes[0]))
    colours = {}
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
        line, = ax["loss"].plot(v[:, 0], y, marker=".", label=lab)
        colours[m["cell"]] = line.get_color()
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
