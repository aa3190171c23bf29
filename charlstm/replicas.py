"""Data parallelism over the streams of a batch: Replicas runs the model on
one worker thread per core, each on its own streams, and shares out the weight
gradients (_Jobs) so that a worker done first helps a slower one. The model
itself (model.py) knows nothing of threads."""
from __future__ import annotations

import copy
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import kernels
from .model import Model, Workspace, views


class _Jobs:
    """The weight-gradient jobs (Model.backward's `jobs`) of one Replicas.loss
    call. Each job is on offer as soon as Model.backward has made it (the
    output layer's before the recurrent backward pass, each layer's after its
    own); a worker runs jobs once its backward pass is done, its own first,
    then any other worker's, until none is left and every worker is done.
    So when one core runs slower than the other (on this machine, at times,
    by a third), the faster worker takes over part of the slower one's weight
    gradients instead of waiting for it. A job writes its own part of its
    worker's gradient buffer, so the result is the same whoever runs it."""

    def __init__(self, workers: int):
        self.lists = [[] for _ in range(workers)]   # each worker's jobs so far
        self.started = [0] * workers                # how many of them have been taken
        self.done = [False] * workers               # whether it will make any more
        self.aborted = False                        # a worker failed: nobody waits on
        self.cond = threading.Condition()

    def offer(self, k: int) -> _Offer:
        """What worker k passes as Model.backward's jobs."""
        return _Offer(self, k)

    def add(self, k: int, job):
        with self.cond:
            self.lists[k].append(job)
            self.cond.notify_all()

    def finish(self, k: int):
        with self.cond:
            self.done[k] = True
            self.cond.notify_all()

    def abort(self):
        """A worker failed: every worker stops taking jobs, and none waits."""
        with self.cond:
            self.aborted = True
            self.cond.notify_all()

    def run(self, k: int):
        W = len(self.lists)
        order = [(k + i) % W for i in range(W)]                 # its own first
        with np.errstate(over="ignore", invalid="ignore"):     # as in Model.loss
            while (job := self._take(order)) is not None:
                job()

    def _take(self, order):
        """The next job not yet started, waiting for workers still at work;
        None when every worker is done and every job has been taken."""
        with self.cond:
            while not self.aborted:
                for i in order:
                    if self.started[i] < len(self.lists[i]):
                        self.started[i] += 1
                        return self.lists[i][self.started[i] - 1]
                if all(self.done):
                    return None
                self.cond.wait()
            return None


class _Offer:
    """Worker k's side of a _Jobs: appending a job offers it to every worker."""

    def __init__(self, jobs: _Jobs, k: int):
        self.jobs, self.k = jobs, k

    def append(self, job):
        self.jobs.add(self.k, job)


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


class Replicas:
    """Data parallelism over the B streams: each of W workers runs the whole
    model on its own contiguous group of streams, with its own workspace and
    gradient buffer; the gradients are then summed in a fixed order.

    Streams are independent through the whole recurrence, so the workers never
    wait for each other in their forward and backward passes; the weight
    gradients, which nothing there waits for, are shared out among them
    (_Jobs), so that a worker done first takes over part of a slower one's.
    The calling thread is worker 0, so a step wakes W − 1 threads, not W.
    Measured on this 2-core machine this beats one worker with a 2-thread BLAS
    (small per-step GEMMs scale badly over threads), so charlstm runs BLAS on
    one thread (see __init__.py). For a given W the result is deterministic."""

    def __init__(self, model: Model, T: int, B: int, workers: int | None = None):
        self.model, self.T, self.B = model, T, B
        W = max(1, min(workers or default_workers(), B))
        edges = [round(B * k / W) for k in range(W + 1)]
        self.parts = [(edges[k], edges[k + 1]) for k in range(W)]
        self.ws = [Workspace(model.cfg, T, hi - lo, model.dtype) for lo, hi in self.parts]
        self.grads = [model.grad] + [np.zeros_like(model.grad) for _ in range(W - 1)]
        self.g = [views(buf, model.layout) for buf in self.grads]
        self.packs = None                # packed Wh, made once per call for all workers
        self.masks = [[np.empty((T, hi - lo, model.cfg.hidden), model.dtype)
                       for _ in range(model.cfg.layers)] if model.cfg.dropout > 0 else None
                      for lo, hi in self.parts]
        self.pool = ThreadPoolExecutor(W - 1) if W > 1 else None   # and this thread
        self.zero_grad()

    def zero_grad(self) -> None:
        """Zero the model's gradient, into which loss() adds (it is worker 0's
        buffer; each other worker zeroes its own as it starts)."""
        self.model.grad[:] = 0

    def first(self, T: int) -> Replicas:
        """These replicas on a shorter window, of the first T steps: the same
        workers, threads and buffers (Workspace.first)."""
        r = copy.copy(self)
        r.T, r.ws = T, [ws.first(T) for ws in self.ws]
        r.masks = [mk and [m[:T] for m in mk] for mk in self.masks]
        return r

    def loss(self, tokens, targets, h0, c0, dropout_key=None, grad=True, repack=True):
        """Mean loss over the batch; with grad, adds its gradient to model.grad
        (zero it first: zero_grad; a new Replicas starts at zero). With a
        dropout_key (an int, new for every step), each worker makes its
        streams' dropout masks (kernels.dropout_mask). repack=False reuses the
        packed weights of the call before (the weights unchanged since, and
        that call's grad the same or True). Returns (loss, h_T, c_T)."""
        n = tokens.size
        if repack or self.packs is None:
            self.packs = self.model.packed_Wh(self.packs, backward=grad)
        keep = 1.0 - self.model.cfg.dropout

        shared = _Jobs(len(self.parts))

        def part(k):
            lo, hi = self.parts[k]
            try:
                if grad and k > 0:          # a buffer of the worker's own, summed below
                    self.grads[k][:] = 0
                mk = None if dropout_key is None else self.masks[k]   # None without dropout
                for l, mask in enumerate(mk or []):
                    kernels.dropout_mask(mask, np.uint64((dropout_key + l) % 2 ** 64), lo, keep)
                loss = self.model.loss(self.ws[k], tokens[:, lo:hi], targets[:, lo:hi],
                                       h0[:, lo:hi], c0[:, lo:hi], mk, grad, self.g[k], n,
                                       self.packs, shared.offer(k))
            except BaseException:
                shared.abort()                   # no worker may wait for this one's jobs
                raise
            finally:
                shared.finish(k)
            shared.run(k)
            return loss

        others = [self.pool.submit(part, k) for k in range(1, len(self.parts))]
        try:
            first = part(0)
        finally:                                 # whatever happened here, the other
            rest = [f.result() for f in others]  # workers end before this call does
        losses = [first] + rest
        if grad:
            for buf in self.grads[1:]:
                self.model.grad += buf
        states = [self.model.final_state(ws) for ws in self.ws]
        h = np.concatenate([s[0] for s in states], axis=1)
        c = np.concatenate([s[1] for s in states], axis=1)
        return float(sum(losses)), h, c
