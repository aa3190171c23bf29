"""`charlstm compare`: does the LSTM keep information over longer spans than a
vanilla RNN? Several cells are trained on the same text with the same seed and
budget, then measured side by side: loss, speed, samples, the recall of
training passages, the context curve and how far back gradients reach
(spans.py holds the measurements). With --probe, every cell is also trained on
the memory probe's tasks (probe.py, tasks.py) at several difficulties: lag
(Hochreiter & Schmidhuber 1997, in small), parity and multi-query associative
recall.
The report goes to the terminal (results.py), results.json, compare.png
(figure.py) and report.html (page.py)."""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, replace

import numpy as np

from ... import files
from .. import spans
from ...config import ModelConfig, TrainConfig, default_lr
from ...data import load_corpus
from ...errors import CharlstmError
from ...words import plural
from ...model import n_params
from ...train import Trainer
from ..workers import job_counts
from .figure import _plot
from .jobs import JOBS, flow_horizons, raise_if_stopped, run_jobs
from .results import _budget, _fmt, _print, agreement

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
        from .probe import probe_files, probe_levels
        models += probe_files(out_dir, cells, probe_levels(probe))
    outs += [(p, "checkpoint") for m in models for p in (m, best_path(m))]
    for path, kind in outs:
        files.check_output(path, kind, option="--out-dir", inputs=inputs, continuing=True)


def _legacy_run(folder: str) -> bool:
    """A run folder of a charlstm before run folders were marked: its results.json."""
    d = files.json_doc(os.path.join(folder, "results.json"))
    return isinstance(d, dict) and {"models", "cells", "probe"} <= set(d)


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
        report["models"] = run_jobs(train_one, jobs_list, n_jobs)
        raise_if_stopped(report["models"])
        report["context"] = {m["cell"]: {k: m["context"][k] for k in ("k", "loss", "span")}
                             for m in report["models"]}
    if probe is not None:
        from .probe import probe_levels, run_probe
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


def _default_seed(corpus) -> str:
    """The first full line of the validation text (or of the text), up to 40 chars."""
    ids = corpus.val if len(corpus.val) > 200 else corpus.train
    text = "".join(corpus.vocab[i] for i in ids[:2000])
    lines = [ln for ln in text.split("\n")[1:] if ln.strip()]
    line = lines[0] if lines else text
    return line[:40]


