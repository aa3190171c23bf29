"""`charlstm compare`: does the LSTM keep information over longer spans than a
vanilla RNN? Several cells are trained on the same text with the same seed and
budget, then measured side by side: loss, speed, samples, the recall of
training passages, the context curve and how far back gradients reach
(spans.py holds the measurements). With --probe, every cell is also trained on
the memory probe's tasks (tasks.py) at several difficulties: lag (Hochreiter &
Schmidhuber 1997, in small), parity and multi-query associative recall.
The report goes to the terminal (results.py), results.json, compare.png
(figure.py) and report.html (page.py)."""
from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, replace
from multiprocessing import get_context

import numpy as np

from ... import files
from .. import spans
from ... import stopping
from ...config import ModelConfig, TrainConfig, default_lr
from ...data import load_corpus
from ...errors import CharlstmError
from ...words import plural
from ...model import n_params
from ...stopping import Stop
from ...train import Trainer
from ..workers import die_with_parent, job_counts, one_blas_thread, stop_children
from .figure import _plot
from .results import _budget, _fmt, _print, agreement

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
                     "prefix": spans.exact_prefix(out, truth),
                     "teacher_forced": spans.teacher_forced_accuracy(sampler.model, prime, truth)})
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
    from ...sampling import Sampler
    sampler = Sampler(m, corpus.vocab, threads=job["threads"])
    sample = sampler.text(job["seed"], job["length"], temperature=0.8, rng_seed=tcfg.rng_seed)
    held = corpus.val if len(corpus.val) > job["context_max"] + 100 else corpus.train
    ks = spans.context_ks(job["context_max"])
    pos = spans.context_positions(len(held), ks[-1], job["context_positions"])
    t1 = time.perf_counter()
    ctx = spans.context_curve(m, held, ks, pos)
    ctx_s = time.perf_counter() - t1
    flow_ids = corpus.val if len(corpus.val) > 8 * job["flow_T"] else corpus.train
    flow = spans.gradient_flow(m, flow_ids, job["flow_T"])
    hist = np.array(tr.hist_val).reshape(-1, 3)
    return {
        "cell": mcfg.cell, "hidden": mcfg.hidden, "layers": mcfg.layers, "params": m.size,
        "lr": tcfg.lr,
        "steps": r.steps, "diverged": r.diverged,
        "train_loss": r.train_loss, "val_loss": r.val_loss,
        "val_overflow": diverged_val(r.val_loss, corpus.V),
        "best_val": r.best_val, "chars_per_s": r.chars_per_s, "wall_s": wall,
        "sample": sample, "recall": recall_scores(sampler, passages),
        "context": {"k": ks, "loss": ctx.tolist(), "span": spans.context_span(ks, ctx),
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
            out[path] = {stat: spans.horizon(v) for stat, v in flow[path].items()}
    reach = [out[p]["max"] for p in out]
    out["reach"] = None if None in reach else max(reach)
    out["T"] = flow["T"]
    return out


# ---------------------------------------------------------------------------
# The memory probe: every cell at every difficulty of every task (compare
# --probe --task lag|parity|mqar; tasks.py makes the lines).

def line_length(task, difficulty: int) -> int:
    """Characters in one line of the task at this difficulty."""
    return int(task.make(difficulty, 1, np.random.default_rng(0))[0].shape[1])


def probe_one(job: dict) -> dict:
    """Train one cell on one task at one difficulty, stopping once it is right
    at ≥ 99% of the scored positions of a check set of held-out lines; report
    its accuracy on the other held-out lines."""
    from ..tasks import TASKS, accuracy
    mcfg, tcfg = ModelConfig(**job["model"]), TrainConfig(**job["train"])
    name = job.get("task", "lag")
    task = TASKS[name]
    d = job["difficulty"] if "difficulty" in job else job["lag"]
    corpus, scored = task.corpus(d, seed=job["seed"])
    mcfg = replace(mcfg, vocab_size=corpus.V)
    n_check = len(corpus.val) // 4                    # scored as it trains, to stop early
    curve = []

    def solved(tr):
        acc = accuracy(tr.model, task, corpus.val[:n_check], scored[:n_check])
        curve.append([tr.state["step"], tr.state["elapsed"], acc])
        return acc >= 0.99

    tr = Trainer(f"probe {name} {d}", mcfg, tcfg, job["out"], progress=job["progress"],
                 log=lambda m: None, corpus=corpus, bar_position=job["position"],
                 workers=job["threads"], stop_when=solved)
    tr.bar_desc = f"{mcfg.cell} {name} {d}"
    head = {"cell": mcfg.cell, "task": name, "difficulty": d, **({"lag": d} if name == "lag"
                                                                 else {})}
    with files.locked(job["out"]):
        r = tr.run()
    if r.interrupted:
        return {**head, "interrupted": True, "signum": r.signum}
    acc = accuracy(tr.model, task, corpus.val[n_check:], scored[n_check:])
    flow = spans.gradient_flow(tr.model, corpus.val,
                               min(job["flow_T"], 2 * line_length(task, d)))
    return {**head, "accuracy": acc, "steps": r.steps,
            "seconds": r.seconds, "budget_s": 60 * tcfg.minutes if tcfg.minutes else None,
            "solved_early": tr.stopped_early, "seq_len": tcfg.seq_len,
            "val_loss": r.val_loss, "curve": curve, "diverged": r.diverged,
            "horizon": flow_horizons(flow)}


def probe_files(out_dir: str, cells, levels: dict) -> list[str]:
    """The checkpoint of every probe model: probe/<cell>-<task><difficulty>.npz."""
    return [os.path.join(out_dir, "probe", f"{c}-{name}{d}.npz")
            for name, ds in levels.items() for d in ds for c in cells]


def probe_levels(probe: dict) -> dict:
    """{task: difficulties} of a probe's settings (an older caller's: "lags")."""
    return dict(probe.get("tasks") or {"lag": probe["lags"]})


UNITS = {"lag": ("lag", "lags"), "parity": ("parity length", "parity lengths"),
         "mqar": ("MQAR size", "MQAR sizes")}


def run_probe(cells, levels, mcfg: ModelConfig, tcfg: TrainConfig, *, cell_lr=True,
              out_dir, jobs=None, progress=True, log=print, minutes=None) -> dict:
    """Every cell trained on every task at every difficulty, levels being
    {task: difficulties} (a list: lags alone), `jobs` at a time: each for
    tcfg's budget, or, with `minutes`, all of them sharing that much
    wall-clock time (_run_jobs), each task's easiest first, the tasks taking
    turns, so that the time the easy ones leave when they are solved early
    goes to the harder ones. Returns {task: its results} (task_results)."""
    from ..tasks import TASKS
    if not isinstance(levels, dict):
        levels = {"lag": list(levels)}
    levels = {name: sorted(ds) for name, ds in levels.items()}
    n_jobs, threads = job_counts(jobs, len(cells) * sum(map(len, levels.values())), JOBS)
    order = sorted(((k, j, name, d) for j, (name, ds) in enumerate(levels.items())
                    for k, d in enumerate(ds)))
    work = []
    for _, _, name, d in order:
        T = max(tcfg.seq_len, 2 * line_length(TASKS[name], d))   # BPTT must reach a line back
        for cell in cells:
            t = replace(tcfg, seq_len=T, lr=default_lr(cell) if cell_lr else tcfg.lr)
            work.append(dict(model=asdict(replace(mcfg, cell=cell)), train=asdict(t),
                             task=name, difficulty=d, seed=tcfg.rng_seed, progress=progress,
                             position=len(work) % n_jobs, threads=threads, flow_T=400,
                             out=probe_files(out_dir, [cell], {name: [d]})[0]))
    lag_only = list(levels) == ["lag"]
    first = "the shortest lags first" if lag_only else "each task's easiest first"
    budget = (f"{plural(minutes, 'minute')} shared, {first}" if minutes
              else f"{_budget(tcfg)} each")
    sizes = " + ".join(plural(len(ds), *UNITS[name]) for name, ds in levels.items())
    if lag_only:
        log(f"memory probe: {plural(len(cells), 'cell')} × {sizes}, {budget}; a model stops "
            f"once it recalls ≥ 99% of held-out keys; {n_jobs} at a time; --seq-len raised to "
            "2 × (lag + 4) where shorter")
    else:
        log(f"memory probe: {plural(len(cells), 'cell')} × ({sizes}), {budget}; a model stops "
            f"once it is right at ≥ 99% of a held-out check set; {n_jobs} at a time; --seq-len "
            "raised to twice a line's length where shorter")
    rows = _run_jobs(probe_one, work, n_jobs, minutes)
    _raise_if_stopped(rows)
    return {name: task_results(TASKS[name], cells, ds, mcfg.hidden,
                               [r for r in rows if r["task"] == name])
            for name, ds in levels.items()}


def task_results(task, cells, ds, hidden: int, rows) -> dict:
    """One task's part of the report: accuracy at each difficulty per cell,
    and each cell's span, the largest difficulty solved in ≥ 90% (for lag,
    also under the names the probe has always had: lags, example)."""
    acc = {c: [next(r["accuracy"] for r in rows if r["cell"] == c and r["difficulty"] == d)
               for d in ds] for c in cells}
    rng = np.random.default_rng(0)
    out = {"task": task.name, "unit": task.unit, "need": task.need,
           "difficulties": list(ds), "accuracy": acc, "chance": task.chance,
           "span": {c: spans.memory_span(ds, acc[c]) for c in cells},
           "threshold": 0.9, "hidden": hidden, "runs": rows,
           "example": task.text(task.make(min(ds), 2, rng)[0])}
    if task.name == "lag":
        out["lags"] = list(ds)
    return out


# ---------------------------------------------------------------------------
# The whole command: the models trained and measured, the probe, the report
# (printed by results.py, drawn by figure.py, paged by page.py).

def run_compare(text, cells, mcfg: ModelConfig, tcfg: TrainConfig, *, cell_lr=False,
                match_params=False, seed="", length=300, recall_chars=200, out_dir=None,
                jobs=None, progress=True, context_max=512, context_positions=2000,
                probe=None, force=False, echo=print, log=print, given=None) -> dict:
    """Train every cell in `cells` on `text` as mcfg/tcfg say, each in its own
    process when jobs > 1; with `probe` (a dict of tasks, {name:
    difficulties}, or of lags alone, and model and train settings), also run
    the memory probe (report["tasks"]; the lag task also as report["probe"]);
    then print the report and write results.json, compare.png and
    report.html into out_dir (check_outputs: an earlier run's folder is
    replaced only with force). text may be None
    when probe is given. cell_lr: each cell at its own default learning rate
    (config.default_lr) instead of tcfg.lr, as when the user gave no --lr.
    given: the model options the user gave (sizing.given_options); the rest is
    chosen for each cell (_sizes); None: mcfg and tcfg as they are."""
    report = {"text": text, "cells": cells, "model": asdict(mcfg), "train": asdict(tcfg),
              "match_params": match_params, "models": [], "probe": None, "tasks": {},
              "context": {}}
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
        from ...data import encode_text
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
    from ...train import best_path
    files.check_run_folder(out_dir, "compare", force=force, legacy=_legacy_run)
    inputs = {text: "the training text"} if text else {}
    outs = [(os.path.join(out_dir, n), k) for n, k in (("results.json", "json"),
                                                         ("compare.png", "png"),
                                                         ("report.html", "page"))]
    models = [os.path.join(out_dir, f"{c}.npz") for c in (cells if text else [])]
    if probe is not None:
        models += probe_files(out_dir, cells, probe_levels(probe))
    outs += [(p, "checkpoint") for m in models for p in (m, best_path(m))]
    for path, kind in outs:
        files.check_output(path, kind, option="--out-dir", inputs=inputs, continuing=True)


def _legacy_run(folder: str) -> bool:
    """A run folder of a charlstm before run folders were marked: its results.json."""
    d = files.json_doc(os.path.join(folder, "results.json"))
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
    from ... import sizing
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
        report["tasks"] = run_probe(cells, probe_levels(probe), probe["model"], probe["train"],
                                    cell_lr=cell_lr, out_dir=out_dir, jobs=jobs,
                                    progress=progress, log=log, minutes=probe.get("minutes"))
        report["probe"] = report["tasks"].get("lag")     # where it has always been
    report["wall_s"] = time.perf_counter() - t0
    report["jobs"] = jobs
    report["agreement"] = agreement(report)
    report["png"] = _plot(report, os.path.join(out_dir, "compare.png"), log)
    path = os.path.join(out_dir, "results.json")
    files.write_json(path, {"charlstm": "compare results", **report}, indent=1,
                     ensure_ascii=False)
    from .page import write_report
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


