"""Batch-1 generation: the whole sampling loop in one kernel (one per cell),
and the helper thread that shares its products, meeting through atomics."""
import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from ._jit import JIT, per_cell
from .gemm import _input, matmul_row
from .loss import embed
from .nonlinear import _copy, tanh_
from .binding import RECURRENT, STEPS
from .recurrence import recurrent, step  # noqa: F401  (bound per cell: per_cell)


# ---------------------------------------------------------------------------
# Sampling: the whole generation loop is jitted. The model is passed as its flat
# parameter buffer and a table of offsets, so one kernel serves every model of
# a cell (one copy per cell: per_cell).

# Sampling on two cores. At batch 1 the recurrent product reads all of Wh for
# every character, and the memory bandwidth is the limit. A helper thread
# (product_helper) shares every product with the sampling thread: both take
# panels of Wp, CHUNK at a time, from a shared counter until none are left, so
# the work balances itself when one core is slowed. The sampling thread posts
# layer 0's product for the next character before it computes the output layer
# and draws the character, which do not need it, and joins in afterwards. They
# meet through `sync`, an int64 array read and written atomically:
#     [0] number of the job posted   [1] its matrix   [2] next panel to take
#     [3] stop   [4] threads: 1 (no helper) or 2   [5] panels finished
#     [6] number of the last job the helper has left

CHUNK = 4


def _int64_array(arr) -> bool:
    return isinstance(arr, types.Array) and arr.dtype == types.int64


def _element(context, builder, signature, args):
    """The address of arr[i], for an intrinsic whose first arguments are arr, i."""
    a = context.make_array(signature.args[0])(context, builder, args[0])
    k = context.cast(builder, args[1], signature.args[1], types.int64)
    return builder.gep(a.data, [k])


def _element_value(context, builder, signature, args):
    """The address of arr[i] and v as an int64, for an intrinsic (arr, i, v)."""
    return (_element(context, builder, signature, args),
            context.cast(builder, args[2], signature.args[2], types.int64))


@intrinsic
def _atomic_load(typingctx, arr, i):
    """arr[i], an acquire load: later reads see what was written before the
    matching release store."""
    if not _int64_array(arr):
        return None

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_element(context, builder, signature, args), "acquire", 8)
    return types.int64(arr, i), codegen


@intrinsic
def _atomic_store(typingctx, arr, i, v):
    """arr[i] = v, a release store: earlier writes are seen before it."""
    if not _int64_array(arr):
        return None

    def codegen(context, builder, signature, args):
        at, x = _element_value(context, builder, signature, args)
        builder.store_atomic(x, at, "release", 8)
        return context.get_dummy_value()
    return types.void(arr, i, v), codegen


@intrinsic
def _atomic_add(typingctx, arr, i, v):
    """arr[i] += v atomically; returns the value before."""
    if not _int64_array(arr):
        return None

    def codegen(context, builder, signature, args):
        return builder.atomic_rmw("add", *_element_value(context, builder, signature, args),
                                  "acq_rel")
    return types.int64(arr, i, v), codegen


@njit(**JIT)
def _take_panels(A, W, C, sync):
    """Compute panels of C = A W, CHUNK at a time, until none are left."""
    P = W.shape[0]
    while True:
        p = _atomic_add(sync, 2, CHUNK)
        if p >= P:
            return
        n = min(CHUNK, P - p)
        matmul_row(A, W, C, p, p + n)
        _atomic_add(sync, 5, n)


@njit(**JIT)
def post_product(k, sync):
    """Offer the helper thread C = A times the k-th matrix of Wp (A, C: the
    arrays it was started with). Call finish_product to take part and wait."""
    if sync[4] < 2:
        sync[1] = k
        return
    job = sync[0]
    while _atomic_load(sync, 6) != job:          # the helper has left the last job
        pass
    sync[1], sync[2], sync[5] = k, 0, 0
    _atomic_store(sync, 0, job + 1)


@njit(**JIT)
def finish_product(A, Wp, C, sync):
    """Take panels of the posted product until none are left, then wait for
    the helper's last ones."""
    W = Wp[sync[1]]
    if sync[4] < 2:
        matmul_row(A, W, C, np.int64(0), W.shape[0])   # not a literal 0: see matmul_packed
        return
    _take_panels(A, W, C, sync)
    while _atomic_load(sync, 5) != W.shape[0]:
        pass


@njit(**JIT)
def shared_product(k, A, Wp, C, sync):
    """C = A times the k-th packed matrix of Wp (n, P, K, NR), shared with the
    helper thread when there is one."""
    post_product(k, sync)
    finish_product(A, Wp, C, sync)


@njit(**JIT)
def product_helper(sync, A, Wp, C):
    """The helper thread: panels of every posted product, until stop. A job
    posted before it starts is still its to leave ([6]), though the sampling
    thread may have taken all of its panels."""
    seen = _atomic_load(sync, 6)
    while True:
        job = _atomic_load(sync, 0)
        if job != seen:
            _take_panels(A, Wp[sync[1]], C, sync)
            seen = job
            _atomic_store(sync, 6, job)
        elif _atomic_load(sync, 3) != 0:
            return


def _model_step(tok, flat, offsets, A, Wp, state_h, state_c, hs, cs, gh, acts, aux, x, sync,
                clamp_at, clamp_to, o_gate, posted):
    """Run one token, tok (1,), through every layer, each by the cell's step
    (per_cell binds it). state_h, state_c: (L, 1, H), updated in place; Wp:
    the packed products (Model.sampling_packs): Wp[2l] is layer l's Wh for
    h Whᵀ, Wp[2l − 1] its Wx for x Wx (l ≥ 1; layer 0's input is a row
    gather, embed); A: the products' input, hs[0] itself or, for int8 weights,
    its quantised copy (_input); hs, cs (2, 1, H), gh, x (1, G), acts (1, 1, G),
    aux (1, 1, H): scratch; sync: see CHUNK; posted: layer 0's
    product, A = state_h[0] times Wp[0], is already posted. A cell that is
    not recurrent makes no h Whᵀ (its Wp[2l] are never read) and posts nothing.
    clamp_at (K, 2) int64 rows [layer, unit], clamp_to (K,): after each step
    that unit's state is held at the value (sample --clamp): c_t = value and
    h_t = o_t ⊙ tanh(value) for cells with a c (o_gate: the output gate's index
    among the gates), h_t = value for cells without one (o_gate < 0)."""
    L, _, H = state_h.shape
    G = gh.shape[1]
    t = np.int64(0)          # the step's t, typed as in training (a literal 0 compiles anew)
    for l in range(L):
        o = offsets[l]
        b = flat[o[2]:o[2] + G]
        ex = flat[o[3]:o[3] + o[4] * H].reshape(o[4], H)
        if l == 0:
            embed(x, tok, flat[o[0]:o[1]].reshape(-1, G), b)
        else:
            _copy(hs[0], state_h[l - 1])
            _input(A, hs[0])
            shared_product(2 * l - 1, A, Wp, gh, sync)
            for j in range(G):
                x[0, j] = gh[0, j] + b[j]
        _copy(cs[0], state_c[l])
        if not recurrent:                   # no Wh: h_{t−1} goes to the step alone
            _copy(hs[0], state_h[l])
        elif l == 0 and posted:
            finish_product(A, Wp, gh, sync)
        else:
            _copy(hs[0], state_h[l])
            _input(A, hs[0])
            shared_product(2 * l, A, Wp, gh, sync)
        step(t, gh, hs, cs, acts, aux, x, ex)
        for k in range(clamp_at.shape[0]):
            if clamp_at[k, 0] == l:
                u = clamp_at[k, 1]
                if o_gate >= 0:
                    cs[1, 0, u] = clamp_to[k]
                    hs[1, 0, u] = acts[0, 0, o_gate * H + u] * tanh_(clamp_to[k])
                else:
                    hs[1, 0, u] = clamp_to[k]
        _copy(state_h[l], hs[1])
        _copy(state_c[l], cs[1])


def _generate(out, prime, u, flat, offsets, A, Wp, Wyp, state_h, state_c, temperature, top_k,
              greedy, hs, gh, sync, clamp_at, clamp_to, o_gate):
    """Feed the `prime` tokens (may be empty), then sample len(out) tokens,
    each fed back in. The state (L, 1, H) always reflects every token consumed,
    so a later call continues where this one stopped.

    flat: the parameter buffer; offsets: (L + 1, 5) int64 rows
    [Wx, Wh, b, ex, n_ex] per layer, then [Wy, by, V, 0, 0].
    A, Wp: the products' input and the layers' packed weight matrices (see
    _model_step); Wyp: the output layer's Wy, packed (Model.sampling_packs).
    hs (2, 1, H), gh (1, G): scratch shared with the helper thread; sync: see
    CHUNK (sync[4] = 1: no helper).
    u: one uniform number per sampled token (the random state is the caller's).
        p = softmax(logits / temperature) over the top_k largest logits
    clamp_at, clamp_to, o_gate: units held at a value (_model_step); none when
    clamp_at has no rows."""
    L, _, H = state_h.shape
    G = gh.shape[1]
    V = offsets[L, 2]
    dt = flat.dtype
    cs = np.zeros((2, 1, state_c.shape[2]), dt)       # c_width·H: the sLSTM's c, n, m
    acts = np.empty((1, 1, G), dt)
    aux = np.empty((1, 1, H), dt)
    x = np.empty((1, G), dt)
    y = np.empty((1, Wyp.shape[0] * Wyp.shape[2]), dt)   # whole panels: no edge copy
    probs = np.empty(V, np.float64)
    ranked = np.empty(V, dt)                    # the logits sorted, for top_k
    by = flat[offsets[L, 1]:offsets[L, 1] + V]
    layer0 = np.int64(0)        # not a literal 0: see matmul_packed
    posted = np.bool_(True)     # not the literal True, for which _model_step would compile anew
    for n in range(prime.shape[0]):
        _model_step(prime[n:n + 1], flat, offsets, A, Wp, state_h, state_c, hs, cs, gh, acts, aux,
                    x, sync, clamp_at, clamp_to, o_gate, not posted)
    for k in range(out.shape[0]):
        _copy(hs[0], state_h[0])
        if recurrent:
            _input(A, hs[0])
            post_product(layer0, sync)           # layer 0's h Whᵀ, needed after the draw
        matmul_row(state_h[L - 1], Wyp, y, layer0, Wyp.shape[0])
        logits = y[0, :V]
        for v in range(V):
            logits[v] += by[v]
        if greedy:
            pick = np.argmax(logits)
        else:
            cut = -np.inf
            if 0 < top_k < V:
                _copy(ranked, logits)
                ranked.sort()
                cut = ranked[V - top_k]
            m = logits.max()
            s = 0.0
            for v in range(V):
                probs[v] = math.exp((logits[v] - m) / temperature) if logits[v] >= cut else 0.0
                s += probs[v]
            r = u[k] * s
            acc = 0.0
            pick = V - 1
            for v in range(V):
                acc += probs[v]
                if r < acc:
                    pick = v
                    break
            while probs[pick] == 0.0 and pick > 0:   # rounding at the top end; a
                pick -= 1                             # broken (NaN) model gives 0
        out[k] = pick
        _model_step(out[k:k + 1], flat, offsets, A, Wp, state_h, state_c, hs, cs, gh, acts, aux,
                    x, sync, clamp_at, clamp_to, o_gate, posted)


MODEL_STEP = per_cell(_model_step, STEPS, recurrent=RECURRENT)   # model_step_lstm, …
GENERATE = per_cell(_generate, STEPS, _model_step=MODEL_STEP,
                    recurrent=RECURRENT)                           # generate_lstm, …


def generate(out, prime, u, flat, offsets, A, Wp, Wyp, kind, state_h, state_c, temperature,
             top_k, greedy, hs, gh, sync, clamp_at, clamp_to, o_gate):
    """_generate, for the cell numbered `kind` (its copy in GENERATE)."""
    GENERATE[kind](out, prime, u, flat, offsets, A, Wp, Wyp, state_h, state_c, temperature,
                   top_k, greedy, hs, gh, sync, clamp_at, clamp_to, o_gate)
