"""tune's workers: processes of their own, each with its share of the cores,
each asking the study for a trial, training it with charlstm train's Trainer
for the trial budget, and telling the study the result. Optuna's TPE sampler
proposes the settings and its median pruner stops a trial whose loss is worse
than the median of the finished trials at the same point of their budget
(Reporter, the Trainer's stop_when). A worker that ends for any reason tells
the study how its trial ended; the best trial's checkpoint is kept."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import threading
import time

from ...errors import CharlstmError
from .space import MIN_TRIAL_STEPS, configs, expected_steps, suggest
from .study import (HEARTBEAT_S, HOST, PRUNE_UNTIL_PCT, claim, count_done, fail_lost, load_study,
                    need_optuna, open_storage, scrub, trial_id)


class Reporter:
    """Trainer.stop_when for a trial: after every validation pass, its loss is
    reported to Optuna at each tenth of the budget passed since the last pass
    (Optuna's step = percent of the budget, so that trials of any speed are
    compared at the same point: a tenth's value is that of the first pass
    at or after it, for every trial alike); True when the pruner says stop."""

    def __init__(self, trial, minutes: float):
        self.trial, self.budget_s = trial, 60 * minutes
        self.last_pct = 0
        self.last = None                  # (pct, loss) last reported

    def __call__(self, tr) -> bool:
        val = tr.state.get("last_val")
        if val is None or not math.isfinite(val):
            return False
        pct = min(100, int(10 * tr.state["elapsed"] / self.budget_s) * 10)
        if pct <= self.last_pct or pct >= 100:
            return False
        for p in range(self.last_pct + 10, pct + 1, 10):
            self.trial.report(val, p)
        self.last_pct, self.last = pct, (pct, val)
        return pct <= PRUNE_UNTIL_PCT and self.trial.should_prune()


class Heartbeat:
    """A thread that tells the study, every HEARTBEAT_S, that this worker is
    still at its trial (fail_lost reads it)."""

    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.beat()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def beat(self):
        self.storage.set_trial_system_attr(self.trial_id, "charlstm:worker",
                                           {"host": HOST, "pid": os.getpid(),
                                            "alive": time.time()})

    def _run(self):
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.beat()
            except Exception:
                pass

    def close(self):
        self.stop.set()
        self.thread.join()


class Interrupted(Exception):
    pass


def trial_path(run_dir: str, number: int) -> str:
    return os.path.join(run_dir, "trials", f"trial-{number:04d}.npz")


def run_trial(trial, spec: dict, corpus) -> float:
    """Train the trial's settings for the trial budget; its best validation
    loss. Raises optuna.TrialPruned when pruned, Interrupted when stopped."""
    optuna = need_optuna()
    from ...train import Diverged, Trainer
    settings = suggest(trial, spec["space"])
    trial.set_user_attr("settings", settings)
    trial.set_user_attr("host", HOST)
    trial.set_user_attr("worker", f"{HOST}:{os.getpid()}")
    mcfg, tcfg = configs(settings, spec["trial_minutes"])
    tcfg = dataclasses.replace(tcfg, val_frac=spec["val_frac"])
    if tcfg.batch_size * (tcfg.seq_len + 1) > len(corpus.train):
        trial.set_user_attr("reason", "batch x seq-len longer than the training text")
        raise optuna.TrialPruned()
    steps = expected_steps(spec, settings, corpus.V)
    if steps is not None and steps < MIN_TRIAL_STEPS:
        trial.set_user_attr("reason", f"too slow: ~{steps:.0f} steps")
        raise optuna.TrialPruned()
    out = trial_path(spec["run_dir"], trial.number)
    from ... import files
    from ...train import best_path
    for p in (out, best_path(out)):          # a trial's files are the run folder's own
        files.check_output(p, "checkpoint", option="--out-dir", continuing=True,
                           inputs={spec["text"]: "the training text"})
    reporter = Reporter(trial, spec["trial_minutes"])
    tr = Trainer(spec["text"], mcfg, tcfg, out, progress=False, log=lambda m: None,
                 corpus=corpus, workers=spec["threads"], stop_when=reporter)
    trial.set_user_attr("params", tr.model.size)
    from ... import files
    try:
        with files.locked(out):
            r = tr.run()
    except Diverged:
        r = None
    if r is not None:
        trial.set_user_attr("steps", r.steps)
        trial.set_user_attr("seconds", round(r.seconds, 1))
        trial.set_user_attr("chars_per_s", round(r.chars_per_s))
        if r.val_loss is not None:
            trial.set_user_attr("last_val", r.val_loss)
    if r is None or r.interrupted:
        if r is not None and r.interrupted:
            raise Interrupted()
    if r is None or r.diverged:
        trial.set_user_attr("diverged", True)
        if r is None or r.best_val is None:
            raise Diverged(0)
    if tr.stopped_early:
        trial.set_user_attr("pruned_at", reporter.last[0])
        trial.set_user_attr("last_val", reporter.last[1])
        raise optuna.TrialPruned()
    return float(r.best_val)


def keep_if_best(run_dir: str, number: int, value: float) -> bool:
    """Move the trial's best checkpoint to run_dir/best.npz when it beats the
    one there (best.json says whose it is); remove the trial's files either
    way. A lock file orders the workers of this machine."""
    import fcntl

    from ... import files
    from ...train import best_path
    out = trial_path(run_dir, number)
    kept = False
    with open(os.path.join(run_dir, ".best.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = os.path.join(run_dir, "best.json")
        try:
            with open(record, encoding="utf-8") as fh:
                held = json.load(fh)
        except (OSError, ValueError):
            held = None
        src = best_path(out)
        if not isinstance(held, dict) or not isinstance(held.get("value"), (int, float)):
            held = None
        best = os.path.join(run_dir, "best.npz")
        if (math.isfinite(value) and os.path.exists(src)
                and (held is None or value < held["value"] or not os.path.exists(best))
                and files.lock_holder(os.path.realpath(best)) is None
                and (not os.path.lexists(best) or files.is_checkpoint(best))):
            os.replace(src, best)         # our own trial's file, renamed within the folder
            files.write_json(record, {"charlstm": "tune best", "trial": number,
                                      "value": value})
            kept = True
    remove_trial_files(run_dir, number)
    return kept


def remove_trial_files(run_dir: str, number: int) -> None:
    from ...train import best_path
    out = trial_path(run_dir, number)
    for p in (out, best_path(out), out + ".lock"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def worker_main(spec: dict, messages) -> None:
    """One worker process: trials, one after another, until the study has
    `target` trials, or the next would overrun the deadline, or a stop signal.
    However it ends, the trial it was at is told to the study (a stopped one
    as interrupted, to be run again), and a problem goes to `messages`."""
    os.setpgrp()                    # Ctrl-C reaches the parent only, which tells us
    from ..workers import die_with_parent
    die_with_parent(spec["parent"])
    from ...stopping import Stop
    from ...train import Diverged
    optuna = need_optuna()
    FAIL, PRUNED = optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED
    study = trial = None

    def end(state, value=None, **attrs):
        """Tell the study how the current trial ended; its files go."""
        nonlocal trial
        if trial is None:
            return
        t, trial = trial, None
        try:
            for k, v in attrs.items():
                t.set_user_attr(k, v)
            study.tell(t, value, state=None if value is not None else state)
        except Exception:               # the study is unreachable: fail_lost will find it
            pass
        if value is not None:
            keep_if_best(spec["run_dir"], t.number, value)
        else:
            remove_trial_files(spec["run_dir"], t.number)

    try:
        storage = open_storage(spec["storage"], spec["run_dir"])
        study = load_study(storage, spec["study"])
        from ...data import load_corpus
        corpus = load_corpus(spec["text"], spec["val_frac"])
        from ... import stopping, warmup
        # (compiled by the parent: loaded, quietly; a stop is taken by warmup.run)
        warmup.run(warmup.tune_units(spec["space"]), log=lambda m: None, live=False)
        while True:                 # (loading the kernels is not charged to a trial)
            stopping.check()
            if spec["deadline"] is not None and (
                    time.time() + 60 * spec["trial_minutes"] * 1.02 + 5 > spec["deadline"]):
                return
            if spec["target"] is not None and count_done(study) >= spec["target"]:
                return
            fail_lost(study, storage)
            trial = study.ask()
            why = claim(study, trial, spec["target"])
            if why is not None:
                end(FAIL, withdrawn=why)
                if why == "surplus":
                    return
                continue
            beat = Heartbeat(storage, trial_id(storage, spec["study"], trial.number))
            try:
                value = run_trial(trial, spec, corpus)
            except optuna.TrialPruned:
                end(PRUNED)
            except Diverged:
                end(FAIL, diverged=True)
            else:
                end(None, value)
            finally:
                beat.close()
    except (Stop, KeyboardInterrupt, Interrupted):
        end(FAIL, interrupted=True)
    except CharlstmError as e:
        end(FAIL, reason=str(e))
        messages.put(str(e))
    except Exception as e:                  # the study's database went away, a bug, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        line = scrub(f"{type(e).__name__}: {first}" if first else type(e).__name__,
                     spec["storage"])
        end(FAIL, reason=line)
        messages.put(f"a tune worker stopped: {line}")
