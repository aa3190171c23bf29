"""The memory probe of `charlstm compare --probe`: every cell trained on every
task (lab/tasks.py: lag, parity, mqar) at each of its difficulties, the jobs
run and budgeted as run.py runs the models on a text (jobs.run_jobs), and each
task's part of the report (task_results)."""
from __future__ import annotations

import os
from dataclasses import asdict, replace

import numpy as np

from ... import files
from ...config import ModelConfig, TrainConfig, default_lr
from ...train import Trainer
from ...words import plural
from .. import spans
from ..workers import job_counts
from .results import _budget
from .jobs import JOBS, flow_horizons, raise_if_stopped, run_jobs


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
    wall-clock time (jobs.run_jobs), each task's easiest first, the tasks taking
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
    rows = run_jobs(probe_one, work, n_jobs, minutes)
    raise_if_stopped(rows)
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
