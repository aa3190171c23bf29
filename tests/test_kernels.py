"""The fast float32 kernels against slow, plain references on the same weights."""
import math
import threading

import numpy as np
import pytest

from charlstm import kernels as K
from charlstm.cells import CELLS
from charlstm.config import SAMPLING_WEIGHTS, ModelConfig
from charlstm.model import Model, Workspace

from . import naive


@pytest.mark.parametrize("cell", list(CELLS))
def test_fast_float32_matches_reference(cell):
    cfg = ModelConfig(cell=cell, hidden=24, layers=2, dropout=0.0, vocab_size=9)
    rng = np.random.default_rng(3)
    m = Model(cfg, np.float32).init(rng)
    m.flat[:] += rng.normal(0, 0.2, m.size).astype(np.float32)
    T, B = 12, 4
    tokens = rng.integers(0, 9, (T, B))
    h0 = rng.normal(0, 0.5, (2, B, 24)).astype(np.float32)
    c0 = rng.normal(0, 0.5, (2, B, 24)).astype(np.float32)
    fast = m.forward(Workspace(cfg, T, B, np.float32), tokens, h0, c0)
    ref = naive.logits(m, tokens, h0, c0)
    np.testing.assert_allclose(fast, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", [c for c in CELLS if CELLS[c].dxp_in_acts])
def test_backward_writing_over_acts_matches_a_separate_dxp(cell, dtype):
    """The model gives these cells one array for acts and dxp (kernels._same);
    their backward kernels must give the same gradients as with two arrays."""
    cfg = ModelConfig(cell=cell, hidden=16, layers=1, dropout=0.0, vocab_size=9)
    rng = np.random.default_rng(5)
    m = Model(cfg, dtype).init(rng)
    m.flat[:] += rng.normal(0, 0.3, m.size).astype(dtype)
    T, B = 7, 3
    ws = Workspace(cfg, T, B, dtype)
    w = ws.layers[0]
    assert w["dxp"] is w["acts"]
    h0, c0 = (rng.normal(0, 0.5, (1, B, 16)).astype(dtype) for _ in range(2))
    m.forward(ws, rng.integers(0, 9, (T, B)), h0, c0)
    dy = rng.normal(0, 1, (T, B, 16)).astype(dtype)
    acts = w["acts"].copy()
    _, Wh_nn = m.packed_Wh()
    out = {}
    for name, dxp in (("separate", np.zeros_like(acts)), ("in acts", w["acts"])):
        w["acts"][...] = acts
        dhs, dcs = np.zeros((T + 1, B, 16), dtype), np.zeros((T + 1, B, 16), dtype)
        m.cell.backward(dxp, dxp, dhs, dcs, dy, w["hs"], w["cs"], w["acts"], w["aux"],
                        Wh_nn[0], m._ex(0))
        out[name] = (dxp.copy(), dhs, dcs)
    for a, b in zip(out["separate"], out["in acts"]):
        np.testing.assert_array_equal(a, b)
    assert np.abs(out["separate"][0]).max() > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,N,Kd", [(1, 1, 1), (1, 2048, 512), (3, 5, 7), (4, 4, 1), (16, 12, 33),
                                     (17, 22, 9), (8, 3, 64), (16, 2048, 64), (32, 40, 96),
                                     (25, 100, 13), (12, 64, 5)])
def test_matmul_packed_matches_numpy(dtype, M, N, Kd):
    """Every path of the recurrent product, both packings (each exactly the
    panel layout, zeros past the end): row blocks of every size up to MR, full
    panels and a last partial one."""
    rng = np.random.default_rng(M * 100 + N)
    A = rng.normal(size=(M, Kd)).astype(dtype)
    W = rng.normal(size=(N, Kd)).astype(dtype)
    ref = A.astype(np.float64) @ W.T.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    P, _, NR = K.packed_shape(N, Kd, dtype)
    padded = np.zeros((P * NR, Kd), dtype)             # zero columns past the end
    padded[:N] = W
    for pack, src in ((K.pack_nt, W), (K.pack_nn, np.ascontiguousarray(W.T))):
        Wp = np.full(K.packed_shape(N, Kd, dtype), np.nan, dtype)
        pack(src, Wp)
        np.testing.assert_array_equal(Wp, padded.reshape(P, NR, Kd).transpose(0, 2, 1))
        C = np.full((M + 1, N), np.nan, dtype)        # a row past the end stays untouched
        K.matmul_packed(A, Wp, C[:M])
        np.testing.assert_allclose(C[:M], ref, rtol=tol, atol=tol * np.sqrt(Kd))
        assert np.isnan(C[M]).all()


@pytest.mark.parametrize("M,N,Kd", [(1, 1, 1), (1, 2048, 512), (1, 40, 7), (1, 70, 33),
                                     (3, 5, 7), (13, 64, 33), (16, 100, 17)])
def test_matmul_with_float16_packs(M, N, Kd):
    """Packs of float16 bit patterns (`sample --weights float16`) give the float32
    product with the weights rounded to float16: one row (its sum split over
    k, with K mod 4 left over) and blocks of rows, both packings."""
    rng = np.random.default_rng(M * 100 + N + Kd)
    A = rng.normal(size=(M, Kd)).astype(np.float32)
    W = rng.normal(size=(N, Kd)).astype(np.float32)
    ref = A.astype(np.float64) @ W.astype(np.float16).astype(np.float64).T
    for pack, src in ((K.pack_nt, W), (K.pack_nn, np.ascontiguousarray(W.T))):
        Wp = np.empty(K.packed_shape(N, Kd, np.float32), np.float32)
        pack(src, Wp)
        C = np.full((M, N), np.nan, np.float32)
        K.matmul_packed(A, Wp.astype(np.float16).view(np.uint16), C)
        np.testing.assert_allclose(C, ref, rtol=1e-5, atol=1e-5 * np.sqrt(Kd))
    with pytest.raises(Exception):                    # float16 packs are for float32 sums
        K.matmul_packed(A.astype(np.float64), Wp.astype(np.float16).view(np.uint16),
                        C.astype(np.float64))


@pytest.mark.parametrize("N,Kd", [(1, 1), (2048, 512), (40, 7), (70, 33), (130, 64)])
def test_matmul_with_int8_packs(N, Kd):
    """int8 packs (sampling's default) times an int16 input give exactly
    s_j s_x Σ_k q_jk r_k, up to float32's rounding of the result: the int32 sums
    are exact. Odd K, a panel cut short, and q, r, s as documented."""
    rng = np.random.default_rng(N + Kd)
    W = rng.normal(size=(N, Kd)).astype(np.float32)
    h = np.tanh(rng.normal(size=Kd)).astype(np.float32)
    A = np.zeros(K.quantised_input_shape(Kd), np.int16)
    K.quantise_input(h, A)
    s = np.abs(W).max(axis=1) / np.float32(127)
    q = np.rint(W / s[:, None])
    sx = A[0, -2:].view(np.float32)[0]
    assert np.abs(q).max() == 127 and np.abs(A).max() == 32767
    np.testing.assert_array_equal(A[0, :Kd], np.rint(h / sx))
    C = np.full((1, N), np.nan, np.float32)
    K.matmul_packed(A, K.pack_int8(W), C)
    exact = (q.astype(np.float64) @ A[0, :Kd].astype(np.float64)) * s * sx
    np.testing.assert_allclose(C[0], exact, rtol=1e-6, atol=1e-7 * np.abs(exact).max())
    # against the float product: each term is off by at most |w| s_x/2 + s_j/2 |r s_x|
    bound = np.abs(W) @ np.full(Kd, sx / 2) + s / 2 * np.abs(A[0, :Kd] * sx).sum()
    assert (np.abs(C[0] - W.astype(np.float64) @ h) <= bound * 1.01 + 1e-6).all()


def test_int8_sums_cannot_overflow():
    """The largest sum, every q = 127 and every r at its top, for a K past
    2³¹ / (127 · 32767): quantise_input's smaller X keeps it in int32."""
    Kd = 4099
    W = np.ones((3, Kd), np.float32)
    A = np.zeros(K.quantised_input_shape(Kd), np.int16)
    K.quantise_input(np.ones(Kd, np.float32), A)
    top = int(A[0, :Kd].max())
    assert 0 < top < 32767 and 127 * top * Kd < 2 ** 31 and (A[0, :Kd] == top).all()
    C = np.zeros((1, 3), np.float32)
    K.matmul_packed(A, K.pack_int8(W), C)
    np.testing.assert_allclose(C[0], Kd, rtol=1e-6)


def test_matmul_packed_row_blocks():
    """Rows are cut into blocks of at most MR, as even as possible; every row
    count from 1 to 3·MR + 1 gives the right product."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(70, 8))
    Wp = np.empty(K.packed_shape(70, 8, np.float64))
    K.pack_nt(W, Wp)
    for M in range(1, 3 * K.MR + 2):
        A = rng.normal(size=(M, 8))
        C = np.empty((M, 70))
        K.matmul_packed(A, Wp, C)
        np.testing.assert_allclose(C, A @ W.T, rtol=1e-12, atol=1e-12)


def test_fast_tanh_and_sigmoid_accuracy():
    from numba import njit

    @njit(**K.JIT)
    def apply(out_t, out_s, x):
        for j in range(x.shape[0]):
            out_t[j] = K.tanh_(x[j])
            out_s[j] = K.sigmoid(x[j])
    x = np.linspace(-30, 30, 200001).astype(np.float32)
    t, s = np.empty_like(x), np.empty_like(x)
    apply(t, s, x)
    x64 = x.astype(np.float64)
    assert np.abs(t - np.tanh(x64)).max() < 5e-7
    assert np.abs(s - 1 / (1 + np.exp(-x64))).max() < 5e-7


def test_fast_exp_accuracy():
    """float32 exp_ (a polynomial, so that it vectorises) against float64 exp,
    over the range where exp is a normal float32; and float64 exp_ is exact."""
    from numba import njit

    @njit(**K.JIT)
    def apply(out, x):
        for j in range(x.shape[0]):
            out[j] = K.exp_(x[j])
    x = np.linspace(-87, 88, 400001).astype(np.float32)
    e = np.empty_like(x)
    apply(e, x)
    ref = np.exp(x.astype(np.float64))
    assert np.max(np.abs(e - ref) / ref) < 4e-7
    tiny = np.array([-200.0, -1e30], np.float32)    # clamped: stays a tiny positive number
    apply(out := np.empty_like(tiny), tiny)
    assert np.all((out >= 0) & (out < 2e-38))
    x64 = np.linspace(-700, 700, 1001)
    apply(e64 := np.empty_like(x64), x64)
    np.testing.assert_allclose(e64, np.exp(x64), rtol=1e-14)


def test_softmax_xent_float32_matches_float64():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, (300, 65))
    targets = rng.integers(0, 65, 300)
    d32, d64 = np.empty((300, 65), np.float32), np.empty((300, 65))
    t32 = K.softmax_xent(d32, logits.astype(np.float32), targets, 1 / 300)
    t64 = K.softmax_xent(d64, logits, targets, 1 / 300)
    assert abs(t32 - t64) < 1e-5 * abs(t64)
    np.testing.assert_allclose(d32, d64, atol=1e-8)


def test_softmax_xent_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (50, 13))
    targets = rng.integers(0, 13, 50)
    d = np.empty_like(logits)
    total = K.softmax_xent(d, logits, targets, 0.5)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert math.isclose(total, -np.log(p[np.arange(50), targets]).sum(), rel_tol=1e-12)
    p[np.arange(50), targets] -= 1
    np.testing.assert_allclose(d, 0.5 * p, atol=1e-14)


def test_embed_backward_is_a_scatter_add():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 5, (6, 3))
    dxp = rng.normal(size=(6, 3, 10))
    dW, db = np.zeros((5, 10)), np.ones(10)
    K.embed_backward(dW, db, tokens, dxp)
    ref = np.zeros((5, 10))
    np.add.at(ref, tokens.reshape(-1), dxp.reshape(-1, 10))
    np.testing.assert_allclose(dW, ref, atol=1e-12)
    np.testing.assert_allclose(db, 1 + dxp.sum(axis=(0, 1)), atol=1e-12)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_workers_split_streams_without_changing_the_result(dropout):
    """Also with dropout: each worker makes its own streams' masks, the same
    as one worker makes for all."""
    from charlstm.model import Replicas
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
    c0 = rng.normal(0, 0.5, (2, B, 16)).astype(np.float32)
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
    from charlstm.model import _Jobs
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
    from charlstm.model import _Jobs
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
    from charlstm.model import Replicas
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


@pytest.mark.parametrize("weights", SAMPLING_WEIGHTS)
@pytest.mark.parametrize("cell", list(CELLS))
def test_sampling_on_two_cores_matches_one(cell, weights):
    """The helper thread's share of each product changes nothing: the same ids
    and the same final state, for every cell, two layers, an odd panel count,
    and every precision of the weights."""
    from charlstm.sampling import Sampler
    cfg = ModelConfig(cell=cell, hidden=264, layers=2, vocab_size=11)
    m = Model(cfg, np.float32).init(np.random.default_rng(5))
    runs = []
    for threads in (1, 2):
        s = Sampler(m, threads=threads, weights=weights)
        assert s.Wp.shape[1] > K.CHUNK and s.Wp.shape[1] % 2 and s.threads == threads
        h, c = m.zero_state(1)
        out = np.empty(300, np.int64)
        u = np.random.default_rng(0).random(300)
        s.generate(out, np.array([1, 2, 3], np.int64), u, h, c)
        runs.append((out, h, c))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    np.testing.assert_array_equal(runs[0][2], runs[1][2])


def test_sampling_state_matches_the_forward_pass():
    """Feeding ids through the sampler leaves the state Model.forward computes."""
    from charlstm.sampling import Sampler
    cfg = ModelConfig(cell="lstm", hidden=40, layers=2, vocab_size=11)
    m = Model(cfg, np.float32).init(np.random.default_rng(5))
    ids = np.random.default_rng(1).integers(0, 11, 50)
    h, c = m.zero_state(1)
    Sampler(m, threads=2).generate(np.empty(0, np.int64), ids, np.zeros(0), h, c)
    ws = Workspace(cfg, len(ids), 1, np.float32)
    m.forward(ws, ids[:, None], *m.zero_state(1))
    hT, cT = m.final_state(ws)
    np.testing.assert_allclose(h, hT, atol=1e-5)
    np.testing.assert_allclose(c, cT, atol=1e-5)


@pytest.mark.parametrize("weights,tol", [("float16", 2e-3), ("int8", 2e-2)])
def test_sampling_with_rounded_weights_stays_close(weights, tol):
    """float16 and int8 weights move the sampler's state by about their
    rounding, for every layer: after 200 characters, h and c within tol of
    float32's."""
    from charlstm.sampling import Sampler
    cfg = ModelConfig(cell="lstm", hidden=64, layers=2, vocab_size=11)
    m = Model(cfg, np.float32).init(np.random.default_rng(5))
    ids = np.random.default_rng(1).integers(0, 11, 200)
    states = []
    for w in ("float32", weights):
        h, c = m.zero_state(1)
        Sampler(m, threads=2, weights=w).generate(np.empty(0, np.int64), ids, np.zeros(0), h, c)
        states.append((h, c))
    assert 0 < np.abs(states[0][0] - states[1][0]).max() < tol
    assert np.abs(states[0][1] - states[1][1]).max() < tol
    with pytest.raises(ValueError, match="float32 models"):
        Model(cfg, np.float64).init(np.random.default_rng(5)).sampling_packs(weights)
    with pytest.raises(ValueError, match="int8, float16, float32"):
        m.sampling_packs("int4")


def test_product_without_avx512(tmp_path):
    """Laptops without AVX-512 get 256-bit vectors and 6-row blocks: compile for
    Haswell (AVX2) in a fresh process and cache, and check the products there."""
    import os
    import subprocess
    import sys
    code = (
        "import numpy as np\n"
        "from charlstm import kernels as K\n"
        "assert K.VBYTES == 32 and K.MR == 6, (K.VBYTES, K.MR)\n"
        "rng = np.random.default_rng(0)\n"
        "for dt in (np.float32, np.float64):\n"
        "    for M, N, Kd in ((1, 40, 9), (13, 64, 33), (16, 100, 17)):\n"
        "        A = rng.normal(size=(M, Kd)).astype(dt); W = rng.normal(size=(N, Kd)).astype(dt)\n"
        "        Wp = np.empty(K.packed_shape(N, Kd, dt), dt); K.pack_nt(W, Wp)\n"
        "        C = np.empty((M, N), dt); K.matmul_packed(A, Wp, C)\n"
        "        np.testing.assert_allclose(C, A.astype(np.float64) @ W.T, rtol=1e-5, atol=1e-4)\n"
        "        if dt == np.float32:\n"
        "            K.matmul_packed(A, Wp.astype(np.float16).view(np.uint16), C)\n"
        "            W16 = W.astype(np.float16).astype(np.float64)\n"
        "            np.testing.assert_allclose(C, A @ W16.T, rtol=1e-5, atol=1e-4)\n"
        "            if M == 1:\n"
        "                Aq = np.zeros(K.quantised_input_shape(Kd), np.int16)\n"
        "                K.quantise_input(A[0], Aq)\n"
        "                K.matmul_packed(Aq, K.pack_int8(W), C)\n"
        "                np.testing.assert_allclose(C, A @ W.T, rtol=0.05, atol=0.05)\n"
        "print('ok')\n")
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CACHE_DIR=str(tmp_path),
               NUMBA_CPU_FEATURES="+avx,+avx2,+fma,+f16c,+popcnt,+sse4.2,+bmi,+bmi2,-avx512f")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("weights", SAMPLING_WEIGHTS)
def test_sampling_from_a_broken_model_stays_in_the_vocabulary(weights):
    """NaN weights (a diverged model) give NaN logits: every sampled id must still
    be a symbol of the vocabulary, not a read past the end of the table; packing
    them warns of nothing."""
    from charlstm.sampling import Sampler
    cfg = ModelConfig(cell="irnn", hidden=16, layers=1, vocab_size=5)
    m = Model(cfg, np.float32).init(np.random.default_rng(0))
    m.flat[:] = np.nan
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = Sampler(m, "abcde", weights=weights).text("ab", 50, rng_seed=0, temperature=0.8)
    assert len(text) == 50 and set(text) <= set("abcde")


def test_top_k_keeps_only_the_likeliest():
    """--top-k 1 is greedy decoding; with top_k = 3 every sampled character is
    one of the 3 likeliest after the text before it (checked by feeding the
    text back one character at a time)."""
    from charlstm.sampling import Sampler
    cfg = ModelConfig(hidden=32, layers=2, vocab_size=7)
    m = Model(cfg, np.float32).init(np.random.default_rng(4))
    s = Sampler(m, "abcdefg", threads=1, weights="float32")
    greedy = s.text("ab", 60, greedy=True)
    assert s.text("ab", 60, top_k=1, rng_seed=2) == greedy
    text = s.text("ab", 60, top_k=3, rng_seed=2, temperature=2.0)
    assert text != s.text("ab", 60, top_k=1, rng_seed=2)
    for n in range(len(text)):
        nxt = s.text("ab" + text[:n], 1, greedy=True)   # the likeliest next character
        tops = {s.text("ab" + text[:n], 1, top_k=3, rng_seed=r, temperature=50.0)
                for r in range(40)}                       # near-uniform over the top 3
        assert nxt in tops and text[n] in tops and len(tops) <= 3


def test_stream_pieces_join_to_text():
    """text() makes the continuation in one piece, stream() in growing pieces
    (one generate call each): the same random numbers, so the same text."""
    from charlstm.sampling import Sampler
    cfg = ModelConfig(hidden=32, layers=2, vocab_size=5)
    m = Model(cfg, np.float32).init(np.random.default_rng(3))
    s = Sampler(m, "abcde", threads=2, weights="int8")
    whole = s.text("ab", 300, rng_seed=5, temperature=0.9)
    pieces = list(s.stream("ab", 300, rng_seed=5, temperature=0.9, chunk=64, first=3))
    assert [len(p) for p in pieces] == [3, 6, 12, 24, 48, 64, 64, 64, 15]
    assert "".join(pieces) == whole and len(set(whole)) > 1


def test_dropout_mask():
    """Kept units are 1/keep, dropped ones 0, at the rate asked; a part of the
    batch made apart (a worker's) equals that part of the whole; another key
    gives an independent mask; neighbours are uncorrelated."""
    keep = 0.7
    whole = np.empty((50, 12, 200), np.float32)
    K.dropout_mask(whole, np.uint64(99), 0, keep)
    assert set(np.unique(whole)) == {0.0, np.float32(1 / keep)}
    assert abs((whole > 0).mean() - keep) < 0.01
    part = np.empty((50, 5, 200), np.float32)
    K.dropout_mask(part, np.uint64(99), 4, keep)
    np.testing.assert_array_equal(part, whole[:, 4:9])
    other = np.empty_like(whole)
    K.dropout_mask(other, np.uint64(100), 0, keep)
    both = ((whole > 0) & (other > 0)).mean()
    assert abs(both - keep * keep) < 0.01
    a = (whole > 0).astype(float)
    for x, y in [(a[1:], a[:-1]), (a[:, 1:], a[:, :-1]), (a[:, :, 1:], a[:, :, :-1])]:
        assert abs(np.corrcoef(x.ravel(), y.ravel())[0, 1]) < 0.02
