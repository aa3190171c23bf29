"""How compare runs its models: `jobs` at a time, each in a worker process of
its own (or in this one), optionally sharing a wall-clock budget (run_jobs);
a stop signal passed on to the workers (raise_if_stopped); and the gradient
horizons every model's row reports (flow_horizons). run.py trains the models
on a text with it, probe.py the memory probe's."""
from __future__ import annotations

import contextlib
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

from ... import stopping
from ...stopping import Stop
from .. import spans
from ..workers import die_with_parent, one_blas_thread, stop_children

JOBS = min(2, os.cpu_count() or 1)     # models trained at once by default (workers.job_counts)


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


def raise_if_stopped(rows) -> None:
    """A model that was stopped by a signal means compare is stopping."""
    stopped = [r for r in rows if r and r.get("interrupted")]
    if stopped:
        raise Stop(stopping.pending() or stopped[0].get("signum") or signal.SIGINT)


def run_jobs(fn, jobs_list, n_jobs, minutes=None):
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
    return in_processes(fn, jobs_list, n_jobs, budgeted)


MIN_JOB_SECONDS = 10.0


def in_processes(fn, jobs_list, n_jobs, budgeted):
    """Each worker is a fresh process with one BLAS thread, so n_jobs models
    share the cores without oversubscribing them. Jobs are handed out in
    order as workers come free, each through budgeted(job, promised, left)
    (see run_jobs). On a stop signal no job is begun; the workers get the
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
