"""Training on several workers (replicas.Replicas): the same result for any split, and the weight-gradient jobs shared out."""
import threading

import numpy as np
import pytest

from charlstm.cells import CELLS
from charlstm.config import ModelConfig
from charlstm.model import Model, Workspace

from . import naive



@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_workers_split_streams_without_changing_the_result(dropout):
    """Also with dropout: each worker makes its own streams' masks, the same
    as one worker makes for all."""
    from charlstm.replicas import Replicas
    cfg = ModelConfig(cell="lstm", hidden=16, layers=2, dropout=dropout, vocab_size=7)
    rng = np.random.default_rng(0)
    m = Model(cfg, np.float64).init(rng)
    T, B = 6, 5
    x, y = rng.integers(0, 7, (T, B)), rng.integers(0, 7, (T, B))
    h0, c0 = rng.normal(size=(2, B, 16)), rng.normal(size=(2, B, 16))
    out = []
    for W in (1, 3):
        r = Replicas(m, T, B, W)
        loss, h, c = r.loss(x, y, h0, c0, dropout_key=12345 if dropout else None)
        out.append((loss, m.grad.copy(), h, c))
    assert abs(out[0][0] - out[1][0]) < 1e-12
    for a, b in zip(out[0][1:], out[1][1:]):
        np.testing.assert_allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("cell", list(CELLS))
def test_each_gradient_is_written_by_one_weight_gradient_job(cell):
    """Model.backward's jobs (which Replicas shares out among its workers)
    write disjoint parts of the gradient that together cover every nonzero
    one, so whoever runs them, in whatever order, the gradient is the same."""
    cfg = ModelConfig(cell=cell, hidden=16, layers=2, dropout=0.0, vocab_size=7)
    rng = np.random.default_rng(1)
    m = Model(cfg, np.float32).init(rng)
    T, B = 5, 3
    x = rng.permutation(np.arange(T * B) % 7).reshape(T, B)    # every row of W_x has a gradient
    y = rng.integers(0, 7, (T, B))
    h0 = rng.normal(0, 0.5, (2, B, 16)).astype(np.float32)
    c0 = naive.random_c(cell, rng, (2, B), 16).astype(np.float32)
    m.grad[:] = 0
    m.loss(Workspace(cfg, T, B, np.float32), x, y, h0, c0)         # jobs run in place
    inline = m.grad.copy()
    m.grad[:] = 0
    jobs = []
    m.loss(Workspace(cfg, T, B, np.float32), x, y, h0, c0, jobs=jobs)
    assert len(jobs) > 1 and not m.grad.any()                       # nothing run yet
    written = np.zeros(m.size, int)
    for job in reversed(jobs):
        before = m.grad.copy()
        job()
        written += m.grad != before
    np.testing.assert_array_equal(written, inline != 0)    # each by one job (0: a dead ReLU)
    np.testing.assert_array_equal(m.grad, inline)


def _workers(*targets):
    """Run each target(k) on its own thread w{k}; fail if any is still running after 20 s."""
    threads = [threading.Thread(target=f, args=(k,), name=f"w{k}", daemon=True)
               for k, f in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)


def test_a_worker_done_first_runs_the_jobs_of_one_still_at_work():
    """_Jobs: worker 1's first job can only finish once its second has started,
    which worker 0, done with its own, must take (otherwise a timeout fails it)."""
    from charlstm.replicas import _Jobs
    shared, second_started, ran = _Jobs(2), threading.Event(), {}

    def first():
        ran["first"] = threading.current_thread().name
        assert second_started.wait(10), "worker 0 did not take worker 1's second job"

    def second():
        ran["second"] = threading.current_thread().name
        second_started.set()

    def worker(k, jobs=()):
        offer = shared.offer(k)
        for job in jobs:
            offer.append(job)
        shared.finish(k)
        shared.run(k)

    _workers(worker, lambda k: worker(k, [first, second]))
    assert ran == {"first": "w1", "second": "w0"}


def test_a_job_is_on_offer_before_its_worker_is_done():
    """A job offered while its worker is still in its backward pass can be run
    by an idle worker at once: here worker 1 is not done until it has been."""
    from charlstm.replicas import _Jobs
    shared, done, ran = _Jobs(2), threading.Event(), {}

    def job():
        ran["job"] = threading.current_thread().name
        done.set()

    def idle(k):
        shared.finish(k)
        shared.run(k)

    def busy(k):
        shared.offer(k).append(job)
        assert done.wait(10), "the job offered was not run while its worker was busy"
        shared.finish(k)
        shared.run(k)

    _workers(idle, busy)
    assert ran == {"job": "w0"}


def test_a_worker_that_fails_does_not_leave_the_others_waiting(monkeypatch):
    """A worker that raises in its backward pass is still marked done, so the
    others stop waiting for its jobs, and the error reaches the caller."""
    from charlstm.replicas import Replicas
    cfg = ModelConfig(cell="lstm", hidden=8, layers=1, vocab_size=5)
    m = Model(cfg, np.float32).init(np.random.default_rng(0))
    T, B = 4, 4
    r = Replicas(m, T, B, 2)
    loss = Model.loss

    def failing(self, ws, *args, **kwargs):
        if ws is r.ws[1]:
            raise RuntimeError("worker 1 failed")
        return loss(self, ws, *args, **kwargs)

    monkeypatch.setattr(Model, "loss", failing)
    x = np.zeros((T, B), np.int64)
    h, c = m.zero_state(B)
    errors = []

    def call():
        try:
            r.loss(x, x, h, c)
        except RuntimeError as e:
            errors.append(str(e))

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "Replicas.loss is still waiting for the failed worker"
    assert errors == ["worker 1 failed"]
