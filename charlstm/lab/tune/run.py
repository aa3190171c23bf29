"""charlstm tune: a search for the training settings that suit one text and
one time budget, run on Optuna (Akiba et al. 2019).

Each trial trains a model with `charlstm train`'s Trainer for the same number
of minutes (--trial-minutes, the budget the user means to train for) and is
scored by its best validation loss. The pieces, one module each:

- the search space (space.py): the settings, their ranges, and the
  model sizes dropped up front because they cannot make enough steps in the
  budget;
- the study (study.py): Optuna's journal file in the run folder by
  default, or any database Optuna's RDBStorage takes (--storage), where
  every worker on every machine adds its trials and reads everyone else's;
- the workers (worker.py): processes of their own, each asking the
  study for a trial, training it, and telling the study the result;
- the parent (run_tune, here): starts the workers, shows a bar over the
  trials, and stops the workers cleanly on Ctrl-C. Nothing is lost but the
  trials that were running; the next run of the same command trains those
  again;
- the report (report.py): the table, the command, the JSON and the PNG.
"""
from __future__ import annotations

import json
import os
import signal
import time

from ...config import ModelConfig, TrainConfig
from ...errors import CharlstmError
from .space import defaults_params, load_space_file, measure_speed, requested_space, resolve_space
from .study import (STATES_DONE, check_same, check_storage, count_done, fail_lost, need_optuna,
                    open_storage, open_study, reading_study, redact, retry_missing, trial_kind)
from .worker import worker_main
# The pieces' names, as tests/test_tune.py reads them here.
from .space import MIN_TRIAL_STEPS, Speed, configs, expected_steps, suggest  # noqa: F401
from .study import HOST, LOST_AFTER_S, PRUNE_FROM_PCT, _pruner, _with_driver, claim  # noqa: F401
from .study import trial_id  # noqa: F401
from .worker import Reporter, run_trial  # noqa: F401

# -- the parent -------------------------------------------------------------

def run_tune(spec: dict, jobs: int | None, progress: bool, log) -> dict:
    """Start the workers and watch the study until they end; on Ctrl-C (or
    SIGTERM, SIGHUP) tell them to stop, wait for them, and re-raise."""
    from multiprocessing import get_context

    from tqdm import tqdm

    from ... import stopping
    from ...stopping import Stop
    from ..workers import job_counts, one_blas_thread, stop_children
    optuna = need_optuna()
    storage = open_storage(spec["storage"], spec["run_dir"])
    study = optuna.load_study(study_name=spec["study"], storage=storage)
    done0 = count_done(study)
    left = None if spec["target"] is None else max(0, spec["target"] - done0)
    # By default one trial at a time, on all the cores (docs/tune.md: on 2 cores, two
    # trials at once on one thread each made 0.99-1.19 times the steps of one on both,
    # and each ran at 49-59% of the speed its settings will train at later).
    n_jobs, threads = job_counts(jobs, left)
    spec = dict(spec, threads=threads, parent=os.getpid())
    if left == 0:
        log(f"the study has its {spec['target']} trials already; give a larger --trials "
            "to search on")
        return {"jobs": 0, "threads": threads, "interrupted": False}
    ctx = get_context("spawn")
    messages = ctx.SimpleQueue()
    procs = [ctx.Process(target=worker_main, args=(spec, messages), daemon=False)
             for _ in range(n_jobs)]
    with one_blas_thread():
        for p in procs:
            p.start()
    log(f"{n_jobs} trial{'s' if n_jobs > 1 else ''} at a time, {threads} thread"
        f"{'s' if threads > 1 else ''} each; {spec['trial_minutes']:g} minutes a trial")
    bar = tqdm(total=spec["target"], initial=done0, unit="trial", desc="tune",
               disable=not progress, dynamic_ncols=True)
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    interrupted = None
    from .report import trial_line
    try:
        while True:
            stopping.check()
            alive = any(p.is_alive() for p in procs)
            trials = study.get_trials(deepcopy=False)
            for t in trials:
                if t.state.is_finished() and t.number not in seen:
                    seen.add(t.number)
                    if trial_kind(t) != "withdrawn":
                        log(trial_line(t))
            done = [t for t in trials if t.state.name == "COMPLETE"]
            bar.n = sum(1 for t in trials if t.state.name in STATES_DONE)
            if done:
                b = min(done, key=lambda t: t.value)
                bar.set_postfix(best=f"{b.value:.4f} (#{b.number})",
                                running=sum(t.state.name == "RUNNING" for t in trials),
                                refresh=False)
            bar.refresh()
            if not alive:
                break
            for _ in range(10):
                stopping.check()
                time.sleep(0.1)
    except KeyboardInterrupt as e:
        interrupted = e if isinstance(e, Stop) else Stop(signal.SIGINT)
        log("stopping: the running trials end and the study is kept; run the same command "
            "to resume")
        stop_children([p for p in procs if p.is_alive()], signal.SIGTERM)
    finally:
        bar.close()
    for p in procs:
        p.join()
    errors = []
    while not messages.empty():
        errors.append(messages.get())
    if errors:
        raise CharlstmError(errors[0])
    return {"jobs": n_jobs, "threads": threads, "interrupted": interrupted}


# -- the whole command ------------------------------------------------------

def default_run_dir(text: str) -> str:
    stem = os.path.splitext(os.path.basename(text))[0] or "text"
    return os.path.join("checkpoints", f"tune-{stem}")


def check_run_dir(run_dir: str) -> None:
    """tune writes into a new or empty folder, or an earlier tune run's (its
    marker, or the journal of a run of an earlier charlstm), which it goes on
    in: its study is resumed."""
    from ... import files
    files.check_run_folder(run_dir, "tune", continuing=True, legacy=_legacy_run)
    trials = os.path.join(run_dir, "trials")
    if os.path.lexists(trials) and not os.path.isdir(trials):
        raise CharlstmError(f"--out-dir {run_dir}: {trials} is {files.sniff(trials)}, not "
                            "the folder of trials; give another --out-dir")


def _legacy_run(folder: str) -> bool:
    from ... import files
    log = os.path.join(folder, "study.log")
    return os.path.isfile(log) and files.KINDS["journal"].recognise(log)


def check_outputs(run_dir: str, text: str, storage_url: str | None,
                  space_file: str | None) -> None:
    """Every file tune writes, checked before any work: the run folder, the
    study's storage, best.npz, best.json, tune.json and tune.png."""
    from ... import files
    check_run_dir(run_dir)
    inputs = {text: "the training text"}
    if space_file:
        inputs[space_file] = "the --space file"
    check_storage(storage_url, run_dir, inputs)
    for name, kind in (("best.npz", "checkpoint"), ("best.json", "json"),
                       ("tune.json", "json"), ("tune.png", "png")):
        files.check_output(os.path.join(run_dir, name), kind, option="--out-dir",
                           inputs=inputs, continuing=True)


def search(text: str, *, space_file: str | None, fixed: dict, trial_minutes: float,
           trials: int | None, minutes: float | None, storage_url: str | None,
           study_name: str | None, run_dir: str | None, jobs: int | None,
           progress: bool, log, warm_up) -> dict:
    """charlstm tune, start to end: the study opened (or created and its space
    resolved), the interrupted trials queued again, the workers run, and the
    report built. The report's "interrupted" is the stop signal, if any."""
    from ... import files
    from ...data import load_corpus
    optuna = need_optuna()
    run_dir = run_dir or default_run_dir(text)
    if minutes is not None and 60 * trial_minutes * 1.02 + 5 > 60 * minutes:
        raise CharlstmError(f"--minutes {minutes:g} is shorter than one trial "
                            f"(--trial-minutes {trial_minutes:g}); give more minutes")
    check_outputs(run_dir, text, storage_url, space_file)
    val_frac = TrainConfig.val_frac
    corpus = load_corpus(text, val_frac)
    if len(corpus.val) < 2:
        raise CharlstmError(f"{text} is too short to hold out a validation part; use a "
                            "longer text")
    asked = {"text_sha256": corpus.sha256, "text_chars": int(len(corpus.train)
                                                                  + len(corpus.val)),
             "trial_minutes": trial_minutes, "val_frac": val_frac,
             "requested": requested_space(load_space_file(space_file) if space_file else None,
                                          fixed)}
    name = study_name or f"charlstm-{os.path.splitext(os.path.basename(text))[0]}"
    storage = open_storage(storage_url, run_dir)
    with reading_study(storage_url, run_dir):      # a journal that does not read: one line
        names = optuna.get_all_study_names(storage)
    from ... import warmup
    warm_up(warmup.tune_units(asked["requested"]), log)
    if name in names:
        study, saved = open_study(storage, name, None)
        check_same(saved, asked, name)
    else:
        from ..workers import job_counts
        n_jobs, threads = job_counts(jobs, trials)
        speed = measure_speed(text, corpus, threads)
        if speed is not None:
            log(f"speed: {speed.flops_rate / 1e9:.0f} GFLOP/s a trial on {threads} thread"
                f"{'s' if threads > 1 else ''} (LSTM 1x512)")
        asked["space"] = resolve_space(asked["requested"], speed, trial_minutes, corpus.V,
                                       len(corpus.train), log)
        asked["flops_rate"] = speed and speed.flops_rate
        study, saved = open_study(storage, name, asked)
        if not study.get_trials(deepcopy=False):
            from ... import sizing
            cell = fixed.get("cell", ModelConfig.cell)
            given = set(fixed)
            m0 = ModelConfig(cell=cell, **{k: fixed[k] for k in ("hidden", "layers", "dropout")
                                          if k in fixed})
            t0 = TrainConfig(minutes=trial_minutes, **{k: fixed[k] for k in
                                                        ("lr", "seq_len", "batch_size")
                                                        if k in fixed})
            choice = sizing.choose(corpus, m0, t0, given, threads=threads)
            d = defaults_params(saved["space"], choice.model, choice.train)
            if d is not None:
                study.enqueue_trial(d, user_attrs={"queued_as": "defaults"})
                log(f"trial 0 is charlstm train's default for {trial_minutes:g}-minute runs, to "
                    f"compare against: {choice.reason}")
    fail_lost(study, storage)
    retry_missing(study, log)
    deadline = None if minutes is None else time.time() + 60 * minutes
    spec = {"text": os.path.abspath(text), "storage": storage_url, "study": name,
            "run_dir": os.path.abspath(run_dir), "space": saved["space"],
            "trial_minutes": trial_minutes, "val_frac": val_frac, "target": trials,
            "deadline": deadline, "flops_rate": saved.get("flops_rate")}
    ran = run_tune(spec, jobs, progress, log)
    study = optuna.load_study(study_name=name, storage=storage)
    held = None
    try:
        with open(os.path.join(run_dir, "best.json"), encoding="utf-8") as fh:
            held = json.load(fh)
    except (OSError, ValueError):
        pass
    checkpoint = ({"path": os.path.join(run_dir, "best.npz"), "trial": held["trial"]}
                  if held and os.path.exists(os.path.join(run_dir, "best.npz")) else None)
    from .report import dumps, plot, report
    rep = report(study, saved, text, run_dir, redact(storage_url) if storage_url else
                 os.path.join(run_dir, "study.log"), checkpoint)
    rep.update(jobs=ran["jobs"], threads=ran["threads"])
    path = os.path.join(run_dir, "tune.json")
    files.write_text(path, dumps(rep))
    png = os.path.join(run_dir, "tune.png")
    rep["png"] = png if plot(rep, png) else None
    rep["interrupted"] = ran["interrupted"]
    return rep
