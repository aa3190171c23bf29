"""Worker processes, for compare's models and tune's trials: each a fresh
process with its share of the cores, which ends when its parent ends, and
stops cleanly (saving its model) when the parent passes on a stop signal."""
from __future__ import annotations

import contextlib
import os
import signal
import time

from .. import stopping

ORPHAN_GRACE = 10.0      # seconds an orphaned worker has to save before it ends


def job_counts(jobs: int | None, items: int | None = None,
               default: int = 1) -> tuple[int, int]:
    """(worker processes, threads each): `jobs` at a time (None: `default`;
    compare's is two, tune's one: docs/tune.md), at least one and no more
    than `items`, the things to run (None: no bound); the cores shared
    among them."""
    cores = os.cpu_count() or 1
    n = jobs or default
    if items is not None:
        n = max(1, min(n, items))
    return n, max(1, cores // n)


def die_with_parent(parent: int | None = None):
    """A worker process ends when its parent (compare, tune) ends, however it
    ends (SIGTERM, SIGKILL): it would otherwise train on, orphaned, to the end
    of its budget. Linux's prctl(PR_SET_PDEATHSIG) sends this process SIGTERM
    when its parent dies; a parent that died before that call is seen by its
    pid (`parent`), and a thread watches for it everywhere else. The stop
    signals are taken as in the parent (stopping.install_for_worker)."""
    import ctypes
    import threading
    stopping.install_for_worker()
    parent = parent or os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:                  # the parent was gone already
        os._exit(1)

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)     # save and stop, as on a stop signal
        time.sleep(ORPHAN_GRACE)                 # (a checkpoint takes about a second;
        os._exit(1)                              # nobody is left to take a result)
    threading.Thread(target=watch, name="charlstm-parent-watch", daemon=True).start()


@contextlib.contextmanager
def one_blas_thread():
    """Worker processes started inside the block get one BLAS thread each, so
    that several of them share the cores without oversubscribing them."""
    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("OPENBLAS_NUM_THREADS")
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = saved


def stop_children(procs, signum: int, grace: float | None = None) -> None:
    """Pass a stop signal on to worker processes, wait for them to save and
    end (at most `grace` seconds, default half of stopping.GRACE), and kill
    any still running then."""
    grace = stopping.GRACE / 2 if grace is None else grace
    for proc in procs:
        if signum:                               # (0: pass nothing on, only wait)
            with contextlib.suppress(OSError, ProcessLookupError):
                os.kill(proc.pid, signum)
    deadline = time.monotonic() + grace
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join(5)
