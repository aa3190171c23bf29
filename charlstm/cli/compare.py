"""charlstm compare: several cells trained on one text with the same data,
seed and budget, and measured side by side (lab/compare)."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

import click

from ..config import CELL_NAMES, PROBE_HIDDEN, PROBE_MINUTES
from .options import (SIZED, FloatRange, configs, echo_err, options_given,
                      model_options_no_cell, warm_up)


def _levels(what: str, lo: int, hi: int, example: str):
    """A callback reading a comma list of difficulties, each from lo to hi."""
    def check(ctx, param, value):
        try:
            out = sorted({int(v) for v in value.split(",") if v.strip()})
        except ValueError:
            raise click.BadParameter(f"give whole numbers separated by commas, e.g. "
                                     f"{example}") from None
        if not out or out[0] < lo or out[-1] > hi:
            raise click.BadParameter(f"each {what} must be from {lo} to {hi}")
        return out
    return check


_lags = _levels("lag", 1, 2000, "5,10,50")

# The probe's tasks (lab/tasks.py), each with the option that sets its
# difficulties; the defaults are tasks.TASKS[name].difficulties (a test says so).
TASK_NAMES = ("lag", "parity", "mqar")
TASK_LEVELS = {"lag": "lags", "parity": "bits", "mqar": "pairs"}
MQAR_MAX_PAIRS = 26                           # tasks.MQAR_KEYS: one letter per key


def _tasks(ctx, param, value):
    names = [v.strip().lower() for item in value for v in item.split(",") if v.strip()]
    bad = [n for n in names if n not in TASK_NAMES]
    if bad or (value and not names):
        said = f"unknown task {bad[0]!r}" if bad else "no task given"
        raise click.BadParameter(f"{said}; choose from {', '.join(TASK_NAMES)}")
    return list(dict.fromkeys(names))          # in the order given, each once


@click.command("compare")
@click.argument("file", type=click.Path(exists=True, dir_okay=False), required=False)
@model_options_no_cell
@click.option("--cells", default="rnn,lstm", show_default=True,
              help=f"Comma-separated cells to compare, from {', '.join(CELL_NAMES)}.")
@click.option("--match-params", is_flag=True,
              help="Size each model's hidden layer so its parameter count is near the LSTM's.")
@click.option("--seed", default="", help="Prime text for the samples [default: a line of FILE].")
@click.option("--length", type=click.IntRange(1, 100_000), default=300, show_default=True,
              help="Characters per sample (at most 100,000).")
@click.option("--recall-chars", type=click.IntRange(1, 100_000), default=200, show_default=True,
              help="Characters scored in the recall test (at most 100,000).")
@click.option("--context-max", type=click.IntRange(2, 4096), default=512, show_default=True,
              help="Longest context of the context curve (k = 1, 2, 4, ... up to this).")
@click.option("--context-positions", type=click.IntRange(10, 100_000), default=2000,
              show_default=True,
              help="Held-out positions scored at every k of the context curve (at most "
                   "100,000).")
@click.option("--probe", is_flag=True,
              help="Also train every cell on the memory probe: each --task at each of its "
                   "difficulties (FILE is then optional; --task alone implies it).")
@click.option("--task", "tasks", multiple=True, callback=_tasks,
              help="The probe's tasks, repeatable or comma-separated: lag (one key kept "
                   "across a span), parity (a running XOR of bits: state tracking), mqar "
                   "(key-value pairs, each recalled by its key); naming one runs the probe "
                   "[default with --probe: lag].")
@click.option("--lags", default="5,10,20,50,100,200", show_default=True, callback=_lags,
              help="The lag task's difficulties: filler characters between the key and its "
                   "recall.")
@click.option("--bits", default="2,4,8,16,32,64", show_default=True,
              callback=_levels("length", 1, 2000, "4,8,16"),
              help="The parity task's difficulties: bits per string (1 to 2000).")
@click.option("--pairs", default="1,2,4,8,16", show_default=True,
              callback=_levels("number of pairs", 1, MQAR_MAX_PAIRS, "2,4,8"),
              help=f"The mqar task's difficulties: key-value pairs per line (1 to "
                   f"{MQAR_MAX_PAIRS}).")
@click.option("--probe-hidden", type=click.IntRange(1, 4096), default=PROBE_HIDDEN,
              show_default=True, help="Hidden units of the probe's models.")
@click.option("--probe-minutes", type=FloatRange(0, min_open=True), default=None,
              help=f"Budget of each probe model [default: all of them share {PROBE_MINUTES:g} "
                   "minutes, each taking its share of the time left as it starts]; a model "
                   "stops early once it is right at ≥ 99% of a held-out check set.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Run folder [default: checkpoints/compare-<timestamp>].")
@click.option("--force", is_flag=True,
              help="Replace an earlier compare run in --out-dir (only a compare run's folder "
                   "is ever replaced).")
@click.option("--jobs", type=click.IntRange(1, 64), default=None,
              help="Models trained at once, each in its own process with its share of the "
                   "cores [default: 2 when there are two or more cores and models].")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def compare(file, cells, match_params, seed, length, recall_chars, context_max,
            context_positions, probe, tasks, lags, bits, pairs, probe_hidden, probe_minutes,
            out_dir, force, jobs, progress, **kw):
    """Train several cells on FILE with the same data, seed and budget, then
    report losses, speed, samples, the recall of training passages, the
    context curve and gradient flow; with --probe, also the memory probe.

    Each model is validated on the first 100,000 held-out characters; unless
    --eval-every is given, as often as keeps that to about 5% of its time, so
    that the budget goes to training (and each model makes the steps its
    size was chosen for).
    Everything is written to the run folder: checkpoints, results.json,
    compare.png and report.html."""
    from ..lab.compare.run import check_outputs, run_compare
    names = [c.strip() for c in cells.split(",") if c.strip()]
    bad = [c for c in names if c not in CELL_NAMES]
    if bad or not names:
        raise click.BadParameter(f"unknown cell(s) {bad}; choose from {', '.join(CELL_NAMES)}",
                                 param_hint="--cells")
    if len(set(names)) != len(names):
        raise click.BadParameter("a cell is named twice", param_hint="--cells")
    given = _given(click.get_current_context(), ("tasks", "bits", "pairs", "lags"))
    probe = probe or "tasks" in given             # naming a task asks for the probe
    if file is None and not probe:
        raise click.UsageError("give a text FILE to compare on, or --probe (or --task) for "
                               "the memory probe alone")
    if not probe and given & {"bits", "pairs"}:
        opt = min(given & {"bits", "pairs"})
        name = next(n for n, o in TASK_LEVELS.items() if o == opt)
        raise click.UsageError(f"--{opt} sets the {name} task's difficulties: add "
                               f"--task {name}")
    tasks = tasks or ["lag"]
    for name, opt in TASK_LEVELS.items():
        if probe and opt in given and name not in tasks:
            raise click.UsageError(f"--{opt} sets the {name} task's difficulties, and it is "
                                   f"not run: add --task {name}")
    mcfg, tcfg = configs(kw)
    if kw.get("minutes") is None and kw.get("steps") is None and kw.get("epochs") is None:
        tcfg = replace(tcfg, minutes=2.0)
    tcfg = replace(tcfg, eval_chars=100_000)    # validated as train does (about 5% of the
                                                 # time, which sizing allows), on 100,000 chars
    probe_cfg = None
    if probe:
        levels = {"lag": lags, "parity": bits, "mqar": pairs}
        probe_cfg = {"tasks": {name: levels[name] for name in tasks},
                     "minutes": None if probe_minutes else PROBE_MINUTES,
                     "model": replace(mcfg, hidden=probe_hidden, dropout=0.0),
                     "train": replace(tcfg, steps=0, epochs=0.0, minutes=probe_minutes or 1.0,
                                      state_reset=0.0)}
    out_dir = out_dir or os.path.join("checkpoints",
                                      "compare-" + time.strftime("%Y%m%d-%H%M%S"))
    check_outputs(out_dir, file, names, probe_cfg, force)     # before compiling or training
    from .. import warmup
    from ..lab.compare.run import JOBS
    from ..lab.workers import job_counts
    threads = job_counts(jobs, len(names), JOBS)[1]  # each model's sampler's
    warm_up([u for c in names for u in
             warmup.train_units(c, "float32", mcfg.layers, dropout=mcfg.dropout > 0,
                                optimizer=tcfg.optimizer)
             + warmup.gradient_units(c, "float64", mcfg.layers)         # gradient flow
             + warmup.sample_units(c, "float32", threads)], echo_err, progress)
    from ..stopping import Stop
    try:
        run_compare(file, names, mcfg, tcfg, cell_lr=kw["lr"] is None,
                    match_params=match_params, seed=seed, length=length,
                    recall_chars=recall_chars, out_dir=out_dir, jobs=jobs, progress=progress,
                    context_max=context_max, context_positions=context_positions,
                    probe=probe_cfg, force=True, echo=click.echo, log=echo_err,
                    given=options_given(SIZED))
    except Stop as e:
        saved = os.path.isdir(out_dir) and any(n.endswith(".npz") for n in os.listdir(out_dir))
        echo_err(f"stopped by {e.name}: " + (f"each model's last checkpoint is in {out_dir}"
                 if saved else "before any model was saved") + "; no report was written")
        sys.exit(128 + e.signum)


def _given(ctx, names) -> set:
    """Those of the parameters `names` that the user gave."""
    from click.core import ParameterSource
    return {n for n in names if ctx.get_parameter_source(n)
            not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)}
