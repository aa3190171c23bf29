"""Numba kernels: every cell's forward pass and backward pass, side by side.

All jitted code lives in this file so that Numba's on-disk cache (which only
watches the file a function is defined in) stays consistent; `make clean-cache`
clears it.

Notation: f forget, i input, c~ candidate, o output gate (Hochreiter &
Schmidhuber 1997; Gers, Schmidhuber & Cummins 2000);
c is the cell state (long-term memory), h the hidden state (short-term).
Shapes: T time steps, B parallel streams, H hidden units, G = gates * H.

Every cell has a step kernel for the forward pass (run by `forward`, which
makes the recurrent product) and a backward kernel, each with the same
arguments for every cell, so training, sampling and the gradient checks never
need to know which cell they run:

    forward (kind, hs, cs, acts, aux, xp, Wh_nt, ex)     kind: the cell's number
    <cell>_step(t, gh, hs, cs, acts, aux, x, ex)          gh = h_{t-1} Whᵀ  (B, G)
    <cell>_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex)

    hs, cs  (T+1, B, H)  hs[0], cs[0] hold the initial state; step t writes hs[t+1]
    acts    (T, B, G)    gate activations saved for the backward pass
    aux     (T, B, H)    any other saved value a cell needs (GRU: h Wh_nᵀ + b_hn)
    xp      (T, B, G)    input pre-activations  x_t Wx + b  (one GEMM for all T
                         steps, done by the caller); the first layer's input is
                         one-hot, and forward_onehot gathers its rows step by step
    x       (B, G)       step t's input pre-activations (xp[t], or that gather)
    Wh_nt, Wh_nn         the recurrent weights Wh (G, H), PyTorch's weight_hh,
                         packed for the two products each step makes with it:
                         h_{t-1} Whᵀ = matmul_packed(h_{t-1}, Wh_nt)   (pack_nt)
                         dxp_t Wh    = matmul_packed(dxp_t, Wh_nn)     (pack_nn)
                         The caller packs them once per training step
                         (model.Model.packed_Wh)
    ex      (k, H)       a cell's extra per-unit parameters (peepholes, GRU's b_hn)

    dy      (T, B, H)    dL/dh_t arriving from above (output layer or next layer)
    dhs,dcs (T+1, B, H)  on entry [T] holds the gradient from beyond the window
                         (zero in truncated BPTT); on exit [t] is the total dL/dh_t,
                         dL/dc_t, so [0] is dL/dh0, dL/dc0
    dxp     (T, B, G)    dL/d(input pre-activations): gives dWx, db and dx; may be
                         acts itself, overwritten (LSTM, peephole, CIFG; see _same)
    dhp     (T, B, G)    dL/d(h_{t-1} Whᵀ): gives dWh = sum_t dhp_tᵀ h_{t-1}.
                         Equal to dxp for every cell but the GRU, and then the
                         caller passes the same array for both.

Kernels are serial; in training the cores are used by splitting the B streams
among workers (model.Replicas), each calling these kernels on its own rows, and
in sampling (batch 1) by a helper thread that shares every product
(post_product, finish_product, product_helper).
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

# Numba options, set here and nowhere else. error_model="numpy" drops Python's
# ZeroDivisionError check, which otherwise stops LLVM vectorising the gate loops;
# fastmath leaves out nnan/ninf so that inf and nan still behave.
FASTMATH = {"contract", "arcp", "reassoc", "nsz", "afn"}
JIT = dict(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
# No parallel=True: measured 2.7x slower here, as Numba's worker threads and
# OpenBLAS's fight over the cores. The cores are used one training worker each
# instead (model.Replicas), so every kernel is serial and deterministic.


# ---------------------------------------------------------------------------
# Nonlinearities. float32 uses a rational approximation of tanh (max error
# 2.6e-7, below float32's resolution near 1) that LLVM vectorises; float64 uses
# math.tanh so that gradient checks are exact. sigma(x) = (1 + tanh(x/2)) / 2.

def tanh_(x):
    """tanh, fast in float32 and exact in float64 (jitted code only)."""
    return math.tanh(x)


def sigmoid(x):
    """The logistic sigmoid (jitted code only)."""
    return 0.5 + 0.5 * math.tanh(0.5 * x)


@overload(tanh_, jit_options=JIT)
def _tanh_impl(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        lim = np.float32(7.90531110763549805)
        a1, a3, a5, a7 = (np.float32(4.89352455891786e-03), np.float32(6.37261928875436e-04),
                          np.float32(1.48572235717979e-05), np.float32(5.12229709037114e-08))
        a9, a11, a13 = (np.float32(-8.60467152213735e-11), np.float32(2.00018790482477e-13),
                        np.float32(-2.76076847742355e-16))
        b0, b2, b4, b6 = (np.float32(4.89352518554385e-03), np.float32(2.26843463243900e-03),
                          np.float32(1.18534705686654e-04), np.float32(1.19825839466702e-06))

        def impl(x):
            x = lim if x > lim else x
            x = -lim if x < -lim else x
            x2 = x * x
            p = x * (a1 + x2 * (a3 + x2 * (a5 + x2 * (a7 + x2 * (a9 + x2 * (a11 + x2 * a13))))))
            q = b0 + x2 * (b2 + x2 * (b4 + x2 * b6))
            return p / q
        return impl
    return lambda x: math.tanh(x)


@overload(sigmoid, jit_options=JIT)
def _sigmoid_impl(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        half = np.float32(0.5)
        return lambda x: half + half * tanh_(half * x)
    return lambda x: 0.5 + 0.5 * math.tanh(0.5 * x)


def _as(x, a):
    """x as a scalar of a's dtype (jitted code only)."""
    return a.dtype.type(x)


@overload(_as, jit_options=JIT)
def _as_impl(x, a):
    cast = np.float32 if a.dtype == types.float32 else np.float64
    return lambda x, a: cast(x)


def exp_(x):
    """exp, vectorisable in float32 and exact in float64 (jitted code only)."""
    return math.exp(x)


@intrinsic
def _f32_from_bits(typingctx, i):
    """The float32 whose bit pattern is the int32 i."""
    if not (isinstance(i, types.Integer) and i.bitwidth == 32):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(i), codegen


@overload(exp_, jit_options=JIT)
def _exp_impl(x):
    """float32: Cephes' expf (max relative error ~2e-7): n = round(x / ln 2),
    r = x − n ln 2 (in two parts), exp(r) by a degree-6 polynomial, times 2^n
    made from its bits. Every step vectorises; math.exp is a scalar call."""
    if isinstance(x, types.Float) and x.bitwidth == 32:
        hi, lo = np.float32(88.0), np.float32(-87.3365478515625)      # 2^n stays finite
        log2e, c1, c2 = (np.float32(1.44269504088896341), np.float32(0.693359375),
                         np.float32(-2.12194440e-4))
        p0, p1, p2 = np.float32(1.9875691500e-4), np.float32(1.3981999507e-3), np.float32(8.3334519073e-3)
        p3, p4, p5 = np.float32(4.1665795894e-2), np.float32(1.6666665459e-1), np.float32(5.0000001201e-1)
        one, half = np.float32(1.0), np.float32(0.5)

        def impl(x):
            x = hi if x > hi else x
            x = lo if x < lo else x
            y = x * log2e           # k = y rounded to nearest, by truncation of
            k = np.int32(y + half) if y >= 0 else np.int32(y - half)   # y ± 1/2
            n = np.float32(k)       # (math.floor would not vectorise)
            r = x - n * c1 - n * c2
            p = ((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5
            p = p * r * r + r + one
            return p * _f32_from_bits(np.int32((k + np.int32(127)) << np.int32(23)))
        return impl
    return lambda x: math.exp(x)


# ---------------------------------------------------------------------------
# The recurrent matrix product. Every cell computes h_{t-1} Whᵀ once per step
# (Wh is (G, H), PyTorch's weight_hh layout), and its backward pass dxp_t Wh,
# for a few dozen streams at a time. BLAS is slow at that shape: it repacks the
# whole weight matrix on every call. Here the weights are packed once per
# training step (pack_nt, pack_nn), and each step's product is a run of small
# register-blocked "micro-kernels", as in a BLAS: a block of MR rows of C times
# NR columns stays in vector registers while k runs over the whole sum,
#
#     for k:  C[r:r+MR, j:j+NR] += A[r:r+MR, k] (outer product) Wp[p, k, :]
#
# one broadcast of A and NV vector loads of Wp feeding MR·NV fused multiply-adds.
# Numba cannot express vector registers, so the micro-kernel is written in LLVM
# IR (_micro below); everything around it is ordinary Numba.

def _vector_bytes():
    """64 with AVX-512 (32 vector registers), else 32 (AVX2: 16 registers).
    Follows Numba's target: the host, unless NUMBA_CPU_NAME names another CPU,
    and then AVX-512 only if NUMBA_CPU_FEATURES has +avx512f."""
    import os
    from llvmlite import binding
    if os.environ.get("NUMBA_CPU_NAME", "host") != "host":
        return 64 if "+avx512f" in os.environ.get("NUMBA_CPU_FEATURES", "") else 32
    try:
        return 64 if binding.get_host_cpu_features().get("avx512f", False) else 32
    except RuntimeError:
        return 32


VBYTES = _vector_bytes()
NV = 2                                    # vectors per row of the C block
MR = 12 if VBYTES == 64 else 6            # rows of the C block: MR·NV accumulators
PREFETCH = 4096                           # bytes ahead the product asks for its panel


def panel_width(dtype) -> int:
    """NR, the columns of one packed panel, for arrays of this dtype."""
    return NV * VBYTES // np.dtype(dtype).itemsize


def _splat(builder, x, lanes):
    """IR: a vector of `lanes` copies of the scalar x."""
    undef = ir.Constant(ir.VectorType(x.type, lanes), ir.Undefined)
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
    first = builder.insert_element(undef, x, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(first, undef, zeros)


def _over_k(builder, K, U, step, before=None):
    """IR: step(k, u) for k = 0 … K−1, the sum split into U chains: unrolled,
    k = U·n + u, then the last K mod U terms on chain 0. before(k), if given,
    is emitted ahead of each unrolled step (not the last ones)."""
    i64 = ir.IntType(64)
    u_ = ir.Constant(i64, U)
    nk = builder.sdiv(K, u_)
    with cgutils.for_range(builder, nk) as loop:
        for u in range(U):
            k = builder.add(builder.mul(loop.index, u_), ir.Constant(i64, u))
            if before is not None:
                before(k)
            step(k, u)
    if U > 1:
        Ku = builder.mul(nk, u_)
        with cgutils.for_range(builder, builder.sub(K, Ku)) as loop:
            step(builder.add(Ku, loop.index), 0)


@intrinsic
def _micro(typingctx, n, A, r, Wp, p, C, rc, cc):
    """C[rc+i, cc:cc+NR] = Σ_k A[r+i, k] · Wp[p, k, :]   for i < n, 1 <= n <= MR.
    A (M, K), C (·, ·) row-contiguous; Wp (P, K, NR) packed (pack_nt, pack_nn),
    of A's dtype, or for float32 A the float16 bit patterns of the packed
    weights as uint16 (Model.sampling_packs("float16"): half the bytes to read;
    each vector is widened to float32 as it is loaded, so the sums are float32),
    or int8 weights with their scales (pack_int8; then n = 1, A holds the int16
    input quantise_input makes, and C is float32: _micro_int8).
    The IR has one unrolled block per row count n, chosen by a switch."""
    if not (A.layout == "C" and C.layout == "C" and Wp.layout == "C"
            and A.ndim == 2 and C.ndim == 2):
        return None
    if Wp.dtype == types.int8 and Wp.ndim == 4:                  # pack_int8
        if A.dtype != types.int16 or C.dtype != types.float32:
            return None
        return types.void(n, A, r, Wp, p, C, rc, cc), _micro_int8
    if Wp.ndim != 3:
        return None
    half = Wp.dtype == types.uint16
    if not (Wp.dtype == A.dtype or (half and A.dtype == types.float32)):
        return None
    sig = types.void(n, A, r, Wp, p, C, rc, cc)

    def codegen(context, builder, signature, args):
        i64, i32 = ir.IntType(64), ir.IntType(32)
        a, w, c = (context.make_array(signature.args[k])(context, builder, args[k])
                   for k in (1, 3, 5))
        n_, r_, p_, rc_, cc_ = (context.cast(builder, args[k], signature.args[k], types.int64)
                                for k in (0, 2, 4, 6, 7))
        elt = context.get_data_type(A.dtype)
        size = context.get_abi_sizeof(elt)
        lanes = VBYTES // size
        vec = ir.VectorType(elt, lanes)
        hvec = ir.VectorType(ir.HalfType(), lanes)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec, vec, vec]),
            "llvm.fma.v%d%s" % (lanes, "f32" if size == 4 else "f64"))
        K = cgutils.unpack_tuple(builder, a.shape, 2)[1]
        lda = builder.sdiv(cgutils.unpack_tuple(builder, a.strides, 2)[0], ir.Constant(i64, size))
        ldc = builder.sdiv(cgutils.unpack_tuple(builder, c.strides, 2)[0], ir.Constant(i64, size))
        NR = ir.Constant(i64, NV * lanes)
        zero = ir.Constant(vec, None)
        panel = builder.gep(w.data, [builder.mul(builder.mul(p_, K), NR)])
        row_bytes = NV * lanes * (2 if half else size)           # one k of the panel
        ahead = max(1, PREFETCH // row_bytes)
        i8p = ir.IntType(8).as_pointer()
        prefetch_ = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0i8")

        def step(k, a_row, acc):            # acc[i][v] += A[r+i, k] · Wp[p, k, v-th vector]
            wv = [builder.gep(panel, [builder.add(builder.mul(k, NR), ir.Constant(i64, v * lanes))])
                  for v in range(NV)]
            if half:
                wv = [builder.fpext(builder.load(builder.bitcast(w_, hvec.as_pointer()), align=2),
                                    vec) for w_ in wv]
            else:
                wv = [builder.load(builder.bitcast(w_, vec.as_pointer()), align=size) for w_ in wv]
            for i in range(len(a_row)):
                xb = _splat(builder, builder.load(builder.gep(a_row[i], [k])), lanes)
                for v in range(NV):
                    builder.store(builder.call(fma, [xb, wv[v], builder.load(acc[i][v])]),
                                  acc[i][v])

        def prefetch(k):                    # the cache lines of row k of the panel
            for line in range(0, row_bytes, 64):
                at = builder.gep(builder.bitcast(panel, i8p),
                                 [builder.add(builder.mul(k, ir.Constant(i64, row_bytes)),
                                              ir.Constant(i64, line))])
                builder.call(prefetch_, [at, ir.Constant(i32, 0), ir.Constant(i32, 3),
                                         ir.Constant(i32, 1)])

        def block(rows):                    # the kernel for a block of `rows` rows
            # One row has only NV chains of dependent FMAs, too few to hide their
            # latency, so its sum is split into U chains over k (then added up).
            # Every block asks for the panel PREFETCH bytes ahead (hints, which
            # never fault), so the loads do not wait on memory: a one-row product
            # reads each weight once only, and a panel of a weight matrix larger
            # than L2 (Wh at H=512, 4 MB) comes from L3 (measured at H=512, 32
            # rows: 10-17% faster than with prefetches for one row only).
            U = 4 if rows == 1 else 1
            accs = [[[cgutils.alloca_once_value(builder, zero) for _ in range(NV)]
                     for _ in range(rows)] for _ in range(U)]   # LLVM keeps these in registers
            a_row = [builder.gep(a.data, [builder.mul(builder.add(r_, ir.Constant(i64, i)), lda)])
                     for i in range(rows)]
            _over_k(builder, K, U, lambda k, u: step(k, a_row, accs[u]),
                    lambda k: prefetch(builder.add(k, ir.Constant(i64, ahead))))
            for i in range(rows):
                row = builder.add(builder.mul(builder.add(rc_, ir.Constant(i64, i)), ldc), cc_)
                for v in range(NV):
                    total = builder.load(accs[0][i][v])
                    for u in range(1, U):
                        total = builder.fadd(total, builder.load(accs[u][i][v]))
                    dst = builder.gep(c.data, [builder.add(row, ir.Constant(i64, v * lanes))])
                    builder.store(total, builder.bitcast(dst, vec.as_pointer()), align=size)

        done = builder.append_basic_block("micro.done")
        switch = builder.switch(n_, done)
        for rows in range(1, MR + 1):
            case = builder.append_basic_block("micro.rows%d" % rows)
            switch.add_case(ir.Constant(i64, rows), case)
            builder.position_at_end(case)
            block(rows)
            builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()
    return sig, codegen


@njit(**JIT)
def matmul_packed(A, Wp, C):
    """C = A Wᵀ for W packed by pack_nt (or C = A W for pack_nn).
    A (M, K), Wp (P, K, NR), C (M, N) with N <= P·NR; all row-contiguous."""
    matmul_panels(A, Wp, C, 0, Wp.shape[0])


@njit(**JIT)
def matmul_panels(A, Wp, C, p0, p1):
    """The columns of C that panels p0 … p1−1 of Wp give, as in matmul_packed.
    Each panel (K·NR values) is read from memory once and reused from cache by
    every block of rows; the rows are split into blocks of at most MR, as even
    as possible (16 rows: 8 + 8, not 12 + 4)."""
    M, N = C.shape
    NR = Wp.shape[2]
    nblk = (M + MR - 1) // MR
    for p in range(p0, p1):
        full = (p + 1) * NR <= N
        if not full:                              # the last panel is cut short:
            edge = np.empty((MR, NR), C.dtype)    # computed here, then copied
        r = 0
        for q in range(nblk):
            n = (M - r) // (nblk - q)
            if full:
                _micro(n, A, r, Wp, p, C, r, p * NR)
            else:
                _micro(n, A, r, Wp, p, edge, 0, 0)
                for i in range(n):
                    for j in range(N - p * NR):
                        C[r + i, p * NR + j] = edge[i, j]
            r += n


@njit(**JIT)
def pack_nt(W, Wp):
    """Wp[p, k, c] = W[p·NR + c, k] (zero past the end): W (N, K) packed so that
    matmul_packed(A, Wp, C) gives C = A Wᵀ. Each row k of a panel is written
    whole by a loop of fixed length NR, which LLVM vectorises."""
    N, K = W.shape
    P, _, NR = Wp.shape
    full = N // NR                          # panels with no columns past the end
    for p in range(full):
        for k in range(K):
            for c in range(NR):
                Wp[p, k, c] = W[p * NR + c, k]
    for p in range(full, P):
        for k in range(K):
            for c in range(NR):
                Wp[p, k, c] = W[p * NR + c, k] if p * NR + c < N else 0


@njit(**JIT)
def pack_nn(W, Wp):
    """Wp[p, k, c] = W[k, p·NR + c] (zero past the end): W (K, N) packed so that
    matmul_packed(A, Wp, C) gives C = A W. Row k of W is read once, in order."""
    K, N = W.shape
    P, _, NR = Wp.shape
    full = N // NR
    for k in range(K):
        for p in range(full):
            for c in range(NR):
                Wp[p, k, c] = W[k, p * NR + c]
        for p in range(full, P):
            for c in range(NR):
                Wp[p, k, c] = W[k, p * NR + c] if p * NR + c < N else 0


def packed_shape(N: int, K: int, dtype) -> tuple[int, int, int]:
    """Shape of the packed form of a product with N output columns and K terms."""
    NR = panel_width(dtype)
    return ((N + NR - 1) // NR, K, NR)


# ---------------------------------------------------------------------------
# Sampling's products with int8 weights (`charlstm sample --weights int8`).
# At batch 1 a product reads every weight once, for two multiply-adds, so the
# bytes read are the limit: int8 weights are a quarter of float32's, and an
# H=512 LSTM's Wh, 1 MB in int8, fits in the two cores' L2 caches (1 MB each).
# Each output column j has its own scale s_j = max_k |W[j, k]| / 127, the
# input x its scale s_x = max_k |x_k| / X, and with q = round(W / s) (int8)
# and r = round(x / s_x) (int16)
#
#     y_j = s_j s_x Σ_k q_jk r_k,
#
# the sum exact in int32 (X is chosen so it cannot overflow). The kernel takes
# k in pairs: each 32-bit lane multiplies two int16 pairs and adds both
# products (vpmaddwd; with AVX-512 VNNI one vpdpwssd also accumulates), 32
# multiply-adds per instruction where float16 weights give 16.

NV8 = 4                                    # int32 vectors per panel row (int8 packs)
SCALE_ROWS = 2                             # rows of a panel holding its NR scales


def pack_int8(W: np.ndarray) -> np.ndarray:
    """W (N, K) float, for y = x Wᵀ, as int8 panels (P, K2 + SCALE_ROWS, NR, 2):
    [p, k2, c, e] = q[p·NR + c, 2·k2 + e] (zero past the ends), and rows K2, K2+1
    of each panel hold its NR column scales s as float32 bytes."""
    N, K = W.shape
    NR = NV8 * VBYTES // 4
    P, K2 = -(-N // NR), -(-K // 2)
    s = np.abs(W).max(axis=1).astype(np.float32) / np.float32(127)
    s[s == 0] = 1
    q = np.zeros((P * NR, 2 * K2), np.int8)
    with np.errstate(invalid="ignore"):    # a broken (NaN) model: its NaN scales
        q[:N, :K] = np.rint(W / s[:, None])   # make NaN outputs whatever q holds
    out = np.zeros((P, K2 + SCALE_ROWS, NR, 2), np.int8)
    out[:, :K2] = q.reshape(P, NR, K2, 2).transpose(0, 2, 1, 3)
    scales = np.ones(P * NR, np.float32)
    scales[:N] = s
    out[:, K2:] = scales.view(np.int8).reshape(P, SCALE_ROWS, NR, 2)
    return out


def quantised_input_shape(K: int) -> tuple[int, int]:
    """Shape of quantise_input's A for an input of K values: the even number of
    int16 values, then the two int16 that hold the float32 scale."""
    return (1, 2 * -(-K // 2) + 2)


@njit(**JIT)
def quantise_input(h, A):
    """A[0] = r = round(h / s) as int16 and, in its last two elements, the float32
    bits of s = max |h| / X, for a product with int8 weights (pack_int8). With
    X = min(32767, (2³¹ − 1) // (127 · K)) no int32 sum can overflow."""
    K = A.shape[1] - 2
    X = min(32767, 2147483647 // (127 * K))
    m = np.float32(0)
    for k in range(h.shape[0]):
        m = max(m, abs(h[k]))
    s = m / np.float32(X) if m > 0 else np.float32(1)
    inv = np.float32(1) / s
    for k in range(h.shape[0]):
        A[0, k] = np.int16(np.rint(h[k] * inv))
    A[0, K:].view(np.float32)[0] = s


def _micro_int8(context, builder, signature, args):
    """_micro's codegen for int8 panels (see there): one row,
    C[rc, cc:cc+NR] = s_x · s · Σ_k2 (A[r, 2k2], A[r, 2k2+1]) · Wq[p, k2, :, :]."""
    i64, i32, i16, i8 = ir.IntType(64), ir.IntType(32), ir.IntType(16), ir.IntType(8)
    a, w, c = (context.make_array(signature.args[k])(context, builder, args[k])
               for k in (1, 3, 5))
    r_, p_, rc_, cc_ = (context.cast(builder, args[k], signature.args[k], types.int64)
                        for k in (2, 4, 6, 7))
    lanes = VBYTES // 4
    f32v, i32v = ir.VectorType(ir.FloatType(), lanes), ir.VectorType(i32, lanes)
    pairs_v = ir.VectorType(i16, 2 * lanes)
    wide = ir.VectorType(i32, 2 * lanes)
    RW = ir.Constant(i64, NV8 * 2 * lanes)                     # int8 per panel row
    K2 = builder.sub(cgutils.unpack_tuple(builder, w.shape, 4)[1], ir.Constant(i64, SCALE_ROWS))
    lda = builder.sdiv(cgutils.unpack_tuple(builder, a.strides, 2)[0], ir.Constant(i64, 4))
    ldc = builder.sdiv(cgutils.unpack_tuple(builder, c.strides, 2)[0], ir.Constant(i64, 4))
    panel = builder.gep(w.data, [builder.mul(builder.mul(p_, builder.add(
        K2, ir.Constant(i64, SCALE_ROWS))), RW)])
    x = builder.gep(builder.bitcast(a.data, i32.as_pointer()), [builder.mul(r_, lda)])
    even = ir.Constant(i32v, list(range(0, 2 * lanes, 2)))
    odd = ir.Constant(i32v, list(range(1, 2 * lanes, 2)))
    U = 4                                  # chains over k, as in a one-row _micro

    def step(k, acc):                      # acc[v] += pairs of A times row k of the panel
        xb = _splat(builder, builder.load(builder.gep(x, [k])), lanes)
        xb = builder.sext(builder.bitcast(xb, pairs_v), wide)
        row = builder.gep(panel, [builder.mul(k, RW)])
        for v in range(NV8):
            at = builder.gep(row, [ir.Constant(i64, v * 2 * lanes)])
            wv = builder.load(builder.bitcast(at, ir.VectorType(i8, 2 * lanes).as_pointer()),
                              align=1)
            prod = builder.mul(builder.sext(wv, wide), xb)
            pair_sums = builder.add(builder.shuffle_vector(prod, prod, even),
                                    builder.shuffle_vector(prod, prod, odd))
            builder.store(builder.add(builder.load(acc[v]), pair_sums), acc[v])

    accs = [[cgutils.alloca_once_value(builder, ir.Constant(i32v, None)) for _ in range(NV8)]
            for _ in range(U)]
    _over_k(builder, K2, U, lambda k, u: step(k, accs[u]))
    fp = ir.FloatType().as_pointer()
    sx = builder.load(builder.bitcast(builder.gep(x, [K2]), fp))
    sxv = _splat(builder, sx, lanes)
    scales = builder.bitcast(builder.gep(panel, [builder.mul(K2, RW)]), fp)
    out = builder.gep(builder.bitcast(c.data, fp), [builder.add(builder.mul(rc_, ldc), cc_)])
    for v in range(NV8):
        total = builder.load(accs[0][v])
        for u in range(1, U):
            total = builder.add(total, builder.load(accs[u][v]))
        sv = builder.load(builder.bitcast(builder.gep(scales, [ir.Constant(i64, v * lanes)]),
                                          f32v.as_pointer()), align=4)
        y = builder.fmul(builder.fmul(builder.sitofp(total, f32v), sv), sxv)
        builder.store(y, builder.bitcast(builder.gep(out, [ir.Constant(i64, v * lanes)]),
                                         f32v.as_pointer()), align=4)
    return context.get_dummy_value()


def _input(A, h):
    """Make A the input of the next product by the sampling weights: with float
    weights A is h itself, so nothing is done; with int8 weights (A int16) h is
    quantised into A (jitted code only)."""


@overload(_input, jit_options=JIT)
def _input_impl(A, h):
    if A.dtype == types.int16:
        return lambda A, h: quantise_input(h[0], A)
    return lambda A, h: None


# ---------------------------------------------------------------------------
# The forward pass of every cell: per time step the recurrent product, then the
# cell's own equations, its _step kernel (below, next to its backward kernel).

LSTM, PEEPHOLE, CIFG, GRU, RNN, IRNN = 0, 1, 2, 3, 4, 5     # cells.Cell.kind


@njit(**JIT)
def forward(kind, hs, cs, acts, aux, xp, Wh_nt, ex):
    """For t = 0 … T−1:  gh = h_{t−1} Whᵀ,  then the cell's step (cell_step)
    with x = xp[t]."""
    gh = np.empty(xp.shape[1:], xp.dtype)
    for t in range(xp.shape[0]):
        matmul_packed(hs[t], Wh_nt, gh)
        cell_step(kind, t, gh, hs, cs, acts, aux, xp[t], ex)


@njit(**JIT)
def forward_onehot(kind, hs, cs, acts, aux, tokens, Wx, b, Wh_nt, ex):
    """forward for the first layer, whose input is one-hot (tokens (T, B)):
    x = Wx[token] + b is gathered one step at a time into a (B, G) buffer that
    stays in cache, rather than for all T steps into an xp the steps would
    read back from memory (3 MB at H=128 for 16 streams)."""
    T, B = tokens.shape
    x = np.empty((B, Wx.shape[1]), Wx.dtype)
    gh = np.empty_like(x)
    for t in range(T):
        embed(x, tokens[t], Wx, b)
        matmul_packed(hs[t], Wh_nt, gh)
        cell_step(kind, t, gh, hs, cs, acts, aux, x, ex)


@njit(**JIT)
def cell_step(kind, t, gh, hs, cs, acts, aux, x, ex):
    """Time step t of the cell numbered `kind`, given gh = h_{t−1} Whᵀ."""
    if kind == LSTM:
        lstm_step(t, gh, hs, cs, acts, aux, x, ex)
    elif kind == PEEPHOLE:
        peephole_step(t, gh, hs, cs, acts, aux, x, ex)
    elif kind == CIFG:
        cifg_step(t, gh, hs, cs, acts, aux, x, ex)
    elif kind == GRU:
        gru_step(t, gh, hs, cs, acts, aux, x, ex)
    elif kind == RNN:
        rnn_step(t, gh, hs, cs, acts, aux, x, ex)
    else:
        irnn_step(t, gh, hs, cs, acts, aux, x, ex)


# ---------------------------------------------------------------------------
# LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers, Schmidhuber &
# Cummins 2000). Gate order i, f, c~, o, as PyTorch's nn.LSTM.

@njit(**JIT)
def _gate(a, x, g, squash):
    """a = σ(x + g) (squash=0) or tanh(x + g) (squash=1), over one row."""
    if squash:
        for j in range(a.shape[0]):
            a[j] = tanh_(x[j] + g[j])
    else:
        for j in range(a.shape[0]):
            a[j] = sigmoid(x[j] + g[j])


@njit(**JIT)
def lstm_step(t, gh, hs, cs, acts, aux, x, ex):
    """i = σ(.), f = σ(.), c~ = tanh(.), o = σ(.)   with (.) = xp_t + h_{t-1} Whᵀ
    c_t = f ⊙ c_{t-1} + i ⊙ c~
    h_t = o ⊙ tanh(c_t)
    Each pass below touches few arrays, so LLVM vectorises it; i and f, side
    by side, take one pass (fewer, longer passes measured 15-35% faster)."""
    B, G = x.shape
    H = G // 4
    for b in range(B):
        a, xb, r = acts[t, b], x[b], gh[b]
        _gate(a[:2 * H], xb[:2 * H], r[:2 * H], False)                     # i, f
        _gate(a[2 * H:3 * H], xb[2 * H:3 * H], r[2 * H:3 * H], True)       # c~
        _gate(a[3 * H:], xb[3 * H:], r[3 * H:], False)                     # o
        i, f, g, o = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
        c_prev, c, h = cs[t, b], cs[t + 1, b], hs[t + 1, b]
        for j in range(H):
            c[j] = f[j] * c_prev[j] + i[j] * g[j]
        for j in range(H):
            h[j] = o[j] * tanh_(c[j])


@njit(**JIT, inline="always")
def _same(a, b):
    """Whether a and b are one array. model.Workspace gives the LSTM, peephole
    and CIFG cells one array for acts and dxp (Cell.dxp_in_acts): their
    backward passes read each gate's activation before writing its gradient in
    the same place, and a (T, B, G) array less to stream through the caches
    measured 1-3% faster at 1×128. LLVM vectorises a loop over two arrays only
    after checking at run time that they do not overlap, and runs its scalar
    loop when they do (1.2 times slower), so those kernels pass acts for both
    to an inlined body: that copy is compiled knowing they are one array."""
    return a.ctypes.data == b.ctypes.data


@njit(**JIT, inline="always")
def _output_backward(t, b, H, O, dxp, dhs, dcs, dy, dh_next, dc_next, cs, acts):
    """The part of the backward step every LSTM cell shares, for stream b at
    time t (o in columns O … O+H−1 of acts):
    dh = dy_t + dh_{t+1 → t},  do = dh ⊙ tanh c_t ⊙ o(1 − o),
    dc = dc_{t+1 → t} + dh ⊙ o ⊙ (1 − tanh²c_t).
    Inlined into its callers (a call per stream measured 1.5 times slower)."""
    one = _as(1.0, dxp)
    for j in range(H):
        dhs[t + 1, b, j] = dy[t, b, j] + dh_next[b, j]
    for j in range(H):
        dh, o, tc = dhs[t + 1, b, j], acts[t, b, O + j], tanh_(cs[t + 1, b, j])
        dxp[t, b, O + j] = dh * tc * o * (one - o)
        dcs[t + 1, b, j] = dc_next[b, j] + dh * o * (one - tc * tc)


@njit(**JIT)
def lstm_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """The LSTM's backward pass (_lstm_backward below)."""
    if _same(dxp, acts):            # see _same
        _lstm_backward(acts, acts, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex)
    else:
        _lstm_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex)


@njit(**JIT, inline="always")
def _lstm_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """dh = dy_t + dh_{t+1 → t}                      (backprop through time: dv Wv + dh_next)
    dc = dh ⊙ o ⊙ (1 − tanh²c_t) + f_{t+1} ⊙ dc_{t+1}
    do = dh ⊙ tanh c_t,  df = dc ⊙ c_{t−1},  di = dc ⊙ c~,  dc~ = dc ⊙ i
    each times its nonlinearity's slope gives dxp_t;  dh_{t−1} = dxp_t Wh
    Four passes per stream, each over a few arrays, which LLVM vectorises (one
    loop over all of them per unit measured 2.5 times slower; so too the other
    cells' kernels below: one loop per unit was 1.3-1.9 times slower). Gate g
    of unit j is column g·H + j: indexing the whole arrays, rather than taking
    a view per gate and stream, saves the views' reference counting, and
    `one` keeps the arithmetic in float32 (an integer 1 would make it float64)."""
    T, B, G = dxp.shape
    H = G // 4
    I, F, C, O = 0, H, 2 * H, 3 * H                 # where each gate's columns start
    one = _as(1.0, dxp)
    dh_next = dhs[T].copy()
    dc_next = dcs[T].copy()
    for t in range(T - 1, -1, -1):
        for b in range(B):
            _output_backward(t, b, H, O, dxp, dhs, dcs, dy, dh_next, dc_next, cs, acts)
            for j in range(H):
                dc, i, g = dcs[t + 1, b, j], acts[t, b, I + j], acts[t, b, C + j]
                dxp[t, b, I + j] = dc * g * i * (one - i)
                dxp[t, b, C + j] = dc * i * (one - g * g)
            for j in range(H):
                dc, f = dcs[t + 1, b, j], acts[t, b, F + j]
                dxp[t, b, F + j] = dc * cs[t, b, j] * f * (one - f)
                dc_next[b, j] = dc * f
        matmul_packed(dxp[t], Wh_nn, dh_next)
    dhs[0] = dh_next
    dcs[0] = dc_next


# ---------------------------------------------------------------------------
# LSTM with peepholes (Gers & Schmidhuber 2000): f and i see c_{t-1}, o sees
# c_t, through diagonal weights ex = [p_i, p_f, p_o]. Gate order i, f, c~, o.

@njit(**JIT)
def _peep_gate(a, x, g, p, c):
    """a = σ(x + g + p ⊙ c), over one row: a gate that sees the cell state."""
    for j in range(a.shape[0]):
        a[j] = sigmoid(x[j] + g[j] + p[j] * c[j])


@njit(**JIT)
def peephole_step(t, gh, hs, cs, acts, aux, x, ex):
    """i = σ(. + p_i ⊙ c_{t−1}),  f = σ(. + p_f ⊙ c_{t−1}),  c~ = tanh(.)
    c_t = f ⊙ c_{t−1} + i ⊙ c~
    o = σ(. + p_o ⊙ c_t),  h_t = o ⊙ tanh(c_t)
    In passes over a few arrays each, as lstm_step."""
    B, G = x.shape
    H = G // 4
    for b in range(B):
        a, xb, r = acts[t, b], x[b], gh[b]
        i, f, g, o = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
        c_prev, c, h = cs[t, b], cs[t + 1, b], hs[t + 1, b]
        _peep_gate(i, xb[:H], r[:H], ex[0], c_prev)
        _peep_gate(f, xb[H:2 * H], r[H:2 * H], ex[1], c_prev)
        _gate(g, xb[2 * H:3 * H], r[2 * H:3 * H], True)
        for j in range(H):
            c[j] = f[j] * c_prev[j] + i[j] * g[j]
        _peep_gate(o, xb[3 * H:], r[3 * H:], ex[2], c)
        for j in range(H):
            h[j] = o[j] * tanh_(c[j])


@njit(**JIT)
def peephole_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """The peephole LSTM's backward pass (_peephole_backward below)."""
    if _same(dxp, acts):            # see _same
        _peephole_backward(acts, acts, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex)
    else:
        _peephole_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex)


@njit(**JIT, inline="always")
def _peephole_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """As the LSTM, plus the peephole paths:
    dc_t += da_o ⊙ p_o;  dc_{t−1} = f ⊙ dc_t + da_i ⊙ p_i + da_f ⊙ p_f.
    (dp is summed by the caller from dxp and cs.)"""
    T, B, G = dxp.shape
    H = G // 4
    I, F, C, O = 0, H, 2 * H, 3 * H
    p_i, p_f, p_o = ex[0], ex[1], ex[2]
    one = _as(1.0, dxp)
    dh_next = dhs[T].copy()
    dc_next = dcs[T].copy()
    for t in range(T - 1, -1, -1):
        for b in range(B):
            _output_backward(t, b, H, O, dxp, dhs, dcs, dy, dh_next, dc_next, cs, acts)
            for j in range(H):
                dc = dcs[t + 1, b, j] + dxp[t, b, O + j] * p_o[j]
                dcs[t + 1, b, j] = dc
                i, g = acts[t, b, I + j], acts[t, b, C + j]
                dxp[t, b, I + j] = dc * g * i * (one - i)
                dxp[t, b, C + j] = dc * i * (one - g * g)
            for j in range(H):
                dc, f = dcs[t + 1, b, j], acts[t, b, F + j]
                df = dc * cs[t, b, j] * f * (one - f)
                dxp[t, b, F + j] = df
                dc_next[b, j] = dc * f + dxp[t, b, I + j] * p_i[j] + df * p_f[j]
        matmul_packed(dxp[t], Wh_nn, dh_next)
    dhs[0] = dh_next
    dcs[0] = dc_next


# ---------------------------------------------------------------------------
# Coupled input-forget gate (CIFG, Greff et al. 2017). Gate order f, c~, o.

@njit(**JIT)
def cifg_step(t, gh, hs, cs, acts, aux, x, ex):
    """f = σ(.), c~ = tanh(.), o = σ(.)
    c_t = f ⊙ c_{t−1} + (1 − f) ⊙ c~
    h_t = o ⊙ tanh(c_t)"""
    B, G = x.shape
    H = G // 3
    one = _as(1.0, x)
    for b in range(B):
        a, xb, r = acts[t, b], x[b], gh[b]
        _gate(a[:H], xb[:H], r[:H], False)                                 # f
        _gate(a[H:2 * H], xb[H:2 * H], r[H:2 * H], True)                   # c~
        _gate(a[2 * H:], xb[2 * H:], r[2 * H:], False)                     # o
        f, g, o = a[:H], a[H:2 * H], a[2 * H:]
        c_prev, c, h = cs[t, b], cs[t + 1, b], hs[t + 1, b]
        for j in range(H):
            c[j] = f[j] * c_prev[j] + (one - f[j]) * g[j]
        for j in range(H):
            h[j] = o[j] * tanh_(c[j])


@njit(**JIT)
def cifg_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """The CIFG cell's backward pass (_cifg_backward below)."""
    if _same(dxp, acts):            # see _same
        _cifg_backward(acts, acts, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex)
    else:
        _cifg_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex)


@njit(**JIT, inline="always")
def _cifg_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """dc = dh ⊙ o ⊙ (1 − tanh²c_t) + f_{t+1} ⊙ dc_{t+1}
    df = dc ⊙ (c_{t−1} − c~),  dc~ = dc ⊙ (1 − f),  do = dh ⊙ tanh c_t"""
    T, B, G = dxp.shape
    H = G // 3
    F, C, O = 0, H, 2 * H
    one = _as(1.0, dxp)
    dh_next = dhs[T].copy()
    dc_next = dcs[T].copy()
    for t in range(T - 1, -1, -1):
        for b in range(B):
            _output_backward(t, b, H, O, dxp, dhs, dcs, dy, dh_next, dc_next, cs, acts)
            for j in range(H):
                dc, f, g = dcs[t + 1, b, j], acts[t, b, F + j], acts[t, b, C + j]
                dxp[t, b, F + j] = dc * (cs[t, b, j] - g) * f * (one - f)
                dxp[t, b, C + j] = dc * (one - f) * (one - g * g)
                dc_next[b, j] = dc * f
        matmul_packed(dxp[t], Wh_nn, dh_next)
    dhs[0] = dh_next
    dcs[0] = dc_next


# ---------------------------------------------------------------------------
# GRU (Cho et al. 2014), as PyTorch's nn.GRU. Gate order r, z, n; ex[0] = b_hn.

@njit(**JIT)
def gru_step(t, gh, hs, cs, acts, aux, x, ex):
    """r = σ(.), z = σ(.),  n = tanh(xp_n + r ⊙ (h_{t−1} Wh_nᵀ + b_hn))
    h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}"""
    B, G = x.shape
    H = G // 3
    b_hn = ex[0]
    one = _as(1.0, x)
    for b in range(B):
        act, xb, gr = acts[t, b], x[b], gh[b]
        _gate(act[:2 * H], xb[:2 * H], gr[:2 * H], False)                  # r, z
        r, z, n = act[:H], act[H:2 * H], act[2 * H:]
        a, xn, rn, h_prev, h = aux[t, b], xb[2 * H:], gr[2 * H:], hs[t, b], hs[t + 1, b]
        for j in range(H):
            a[j] = rn[j] + b_hn[j]
            n[j] = tanh_(xn[j] + r[j] * a[j])
        for j in range(H):
            h[j] = (one - z[j]) * n[j] + z[j] * h_prev[j]


@njit(**JIT)
def gru_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """dn = dh ⊙ (1 − z),  dz = dh ⊙ (h_{t−1} − n),  da_n = dn ⊙ (1 − n²)
    dr = da_n ⊙ (h_{t−1} Wh_nᵀ + b_hn);  the recurrent part of n sees r ⊙ da_n
    dh_{t−1} = dhp_t Wh + dh ⊙ z
    (Indexing as lstm_backward: gate g of unit j is column g·H + j.)"""
    T, B, G = dxp.shape
    H = G // 3
    R, Z, N = 0, H, 2 * H
    one = _as(1.0, dxp)
    dh_next = dhs[T].copy()
    direct = np.empty((B, H), dxp.dtype)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            for j in range(H):
                dh = dy[t, b, j] + dh_next[b, j]
                dhs[t + 1, b, j] = dh
                direct[b, j] = dh * acts[t, b, Z + j]
            for j in range(H):
                dh, r = dhs[t + 1, b, j], acts[t, b, R + j]
                z, n = acts[t, b, Z + j], acts[t, b, N + j]
                dn = dh * (one - z) * (one - n * n)
                dr = dn * aux[t, b, j] * r * (one - r)
                dxp[t, b, N + j] = dn
                dhp[t, b, N + j] = dn * r
                dxp[t, b, R + j] = dr
                dhp[t, b, R + j] = dr
            for j in range(H):
                dh, z, n = dhs[t + 1, b, j], acts[t, b, Z + j], acts[t, b, N + j]
                dz = dh * (hs[t, b, j] - n) * z * (one - z)
                dxp[t, b, Z + j] = dz
                dhp[t, b, Z + j] = dz
        matmul_packed(dhp[t], Wh_nn, dh_next)
        dh_next += direct
    dhs[0] = dh_next


# ---------------------------------------------------------------------------
# Vanilla tanh RNN and the ReLU RNN (IRNN, Le, Jaitly & Hinton 2015).

@njit(**JIT)
def rnn_step(t, gh, hs, cs, acts, aux, x, ex):
    """h_t = tanh(x_t Wx + h_{t−1} Whᵀ + b)"""
    B, H = x.shape
    for b in range(B):
        for j in range(H):
            hs[t + 1, b, j] = tanh_(x[b, j] + gh[b, j])


@njit(**JIT)
def rnn_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """da = (dy_t + dh_{t+1 → t}) ⊙ (1 − h_t²);  dh_{t−1} = da Wh"""
    T, B, H = dxp.shape
    one = _as(1.0, dxp)
    dh_next = dhs[T].copy()
    for t in range(T - 1, -1, -1):
        for b in range(B):
            for j in range(H):
                dh = dy[t, b, j] + dh_next[b, j]
                dhs[t + 1, b, j] = dh
                h = hs[t + 1, b, j]
                dxp[t, b, j] = dh * (one - h * h)
        matmul_packed(dxp[t], Wh_nn, dh_next)
    dhs[0] = dh_next


@njit(**JIT)
def irnn_step(t, gh, hs, cs, acts, aux, x, ex):
    """h_t = max(0, x_t Wx + h_{t−1} Whᵀ + b),  Wh initialised to the identity"""
    B, H = x.shape
    zero = _as(0.0, x)
    for b in range(B):
        for j in range(H):
            a = x[b, j] + gh[b, j]
            hs[t + 1, b, j] = a if a > zero else zero


@njit(**JIT)
def irnn_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """da = (dy_t + dh_{t+1 → t}) ⊙ [h_t > 0];  dh_{t−1} = da Wh"""
    T, B, H = dxp.shape
    zero = _as(0.0, dxp)
    dh_next = dhs[T].copy()
    for t in range(T - 1, -1, -1):
        for b in range(B):
            for j in range(H):
                dh = dy[t, b, j] + dh_next[b, j]
                dhs[t + 1, b, j] = dh
                dxp[t, b, j] = dh if hs[t + 1, b, j] > zero else zero
        matmul_packed(dxp[t], Wh_nn, dh_next)
    dhs[0] = dh_next


# ---------------------------------------------------------------------------
# Input layer, output layer and loss, optimizer.

@njit(**JIT)
def embed(x, tokens, Wx, b):
    """One-hot input as a row gather:  x[s] = Wx[tokens[s]] + b.
    x: (B, G), tokens: (B,), Wx: (V, G), b: (G,)"""
    B, G = x.shape
    for s in range(B):
        row = Wx[tokens[s]]
        for j in range(G):
            x[s, j] = row[j] + b[j]


@njit(**JIT)
def embed_backward(dWx, db, tokens, dxp):
    """dWx[token[t, b]] += dxp[t, b] and db += dxp[t, b], in one pass in a fixed
    order (deterministic). dWx: (V, G), db: (G,), dxp: (T, B, G)"""
    T, B, G = dxp.shape
    for t in range(T):
        for s in range(B):
            row, d = dWx[tokens[t, s]], dxp[t, s]
            for j in range(G):
                row[j] += d[j]
                db[j] += d[j]


@njit(**JIT)
def softmax_xent(dlogits, logits, targets, scale):
    """Softmax over the vocabulary and cross-entropy, fused.
    logits, dlogits: (N, V); targets: (N,). Returns sum_n -log p_n[target_n]
    (in float64) and writes dlogits = scale * (p − onehot(target)).
    A row's sums are in the logits' type, so that float32 rows vectorise."""
    N, V = logits.shape
    total = 0.0
    for n in range(N):
        x, d = logits[n], dlogits[n]
        m = x[0]
        for v in range(1, V):
            m = max(m, x[v])
        s = _as(0.0, x)
        for v in range(V):
            d[v] = exp_(x[v] - m)
            s += d[v]
        k = targets[n]
        total += math.log(s) - (x[k] - m)
        inv = _as(scale, x) / s
        for v in range(V):
            d[v] *= inv
        d[k] -= scale
    return total


@njit(**JIT)
def _mix64(z):
    """SplitMix64's finaliser: a bijection of uint64 that scrambles every bit."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(**JIT)
def dropout_mask(mask, key, b0, keep):
    """Inverted-dropout mask (T, B, H): 1/keep where a unit is kept, else 0.
    Unit (t, b0 + b, j) is kept when a hash of (key, t, b0 + b, j) falls below
    keep. The mask depends on the key and on the stream's number in the whole
    batch only, so workers make their own parts, in parallel, and any split
    of the batch gives the same masks."""
    T, B, H = mask.shape
    golden = np.uint64(0x9E3779B97F4A7C15)
    thresh = np.uint64(min(keep, 1.0) * 2.0 ** 53)
    scale = mask.dtype.type(1.0 / keep)
    zero = mask.dtype.type(0.0)
    k = _mix64(np.uint64(key))
    for t in range(T):
        kt = _mix64(k + np.uint64(t) * golden)
        for b in range(B):
            base = _mix64(kt + np.uint64(b0 + b) * golden)
            for j in range(H):
                z = _mix64(base + np.uint64(j) * golden)
                mask[t, b, j] = scale if (z >> np.uint64(11)) < thresh else zero


@njit(**JIT)
def adam_update(w, g, m, v, lr, beta1, beta2, eps, step):
    """Adam on the flat parameter buffer: m, v share w's layout. The constants
    are cast to w's type, so that float32 training runs in float32 (vectorised)."""
    b1, b2 = _as(beta1, w), _as(beta2, w)
    c1 = _as(lr / (1.0 - beta1 ** step), w)
    c2 = _as(1.0 / (1.0 - beta2 ** step), w)
    e, one = _as(eps, w), _as(1.0, w)
    for k in range(w.size):
        m[k] = b1 * m[k] + (one - b1) * g[k]
        v[k] = b2 * v[k] + (one - b2) * g[k] * g[k]
        w[k] -= c1 * m[k] / (math.sqrt(v[k] * c2) + e)


@njit(**JIT)
def adagrad_update(w, g, m, lr, eps):
    """Adagrad, as in min-char-rnn: m accumulates g²."""
    for k in range(w.size):
        m[k] += g[k] * g[k]
        w[k] -= lr * g[k] / (math.sqrt(m[k]) + eps)


# ---------------------------------------------------------------------------
# Sampling: the whole generation loop is jitted. The model is passed as its flat
# parameter buffer and a table of offsets, so one kernel serves every cell.

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
        matmul_panels(A, W, C, p, p + n)
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
        matmul_panels(A, W, C, 0, W.shape[0])
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


@njit(**JIT)
def model_step(tok, flat, offsets, A, Wp, kind, state_h, state_c, hs, cs, gh, acts, aux, x,
               sync, clamp_at, clamp_to, o_gate, posted=False):
    """Run one token, tok (1,), through every layer. state_h, state_c: (L, 1, H),
    updated in place; Wp: the packed products (Model.sampling_packs): Wp[2l] is
    layer l's Wh for h Whᵀ, Wp[2l − 1] its Wx for x Wx (l ≥ 1; layer 0's input
    is a row gather, embed); A: the products' input, hs[0] itself or, for int8 weights,
    its quantised copy (_input); hs, cs (2, 1, H), gh, x (1, G), acts (1, 1, G),
    aux (1, 1, H): scratch; sync: see CHUNK; posted: layer 0's
    product, A = state_h[0] times Wp[0], is already posted.
    clamp_at (K, 2) int64 rows [layer, unit], clamp_to (K,): after each step
    that unit's state is held at the value (sample --clamp): c_t = value and
    h_t = o_t ⊙ tanh(value) for cells with a c (o_gate: the output gate's index
    among the gates), h_t = value for cells without one (o_gate < 0)."""
    L, _, H = state_h.shape
    G = gh.shape[1]
    for l in range(L):
        o = offsets[l]
        b = flat[o[2]:o[2] + G]
        ex = flat[o[3]:o[3] + o[4] * H].reshape(o[4], H)
        if l == 0:
            embed(x, tok, flat[o[0]:o[1]].reshape(-1, G), b)
        else:
            hs[0] = state_h[l - 1]
            _input(A, hs[0])
            shared_product(2 * l - 1, A, Wp, gh, sync)
            for j in range(G):
                x[0, j] = gh[0, j] + b[j]
        cs[0] = state_c[l]
        if l == 0 and posted:
            finish_product(A, Wp, gh, sync)
        else:
            hs[0] = state_h[l]
            _input(A, hs[0])
            shared_product(2 * l, A, Wp, gh, sync)
        cell_step(kind, 0, gh, hs, cs, acts, aux, x, ex)
        for k in range(clamp_at.shape[0]):
            if clamp_at[k, 0] == l:
                u = clamp_at[k, 1]
                if o_gate >= 0:
                    cs[1, 0, u] = clamp_to[k]
                    hs[1, 0, u] = acts[0, 0, o_gate * H + u] * tanh_(clamp_to[k])
                else:
                    hs[1, 0, u] = clamp_to[k]
        state_h[l] = hs[1]
        state_c[l] = cs[1]


@njit(**JIT)
def generate(out, prime, u, flat, offsets, A, Wp, Wyp, kind, state_h, state_c,
             temperature, top_k, greedy, hs, gh, sync, clamp_at, clamp_to, o_gate):
    """Feed the `prime` tokens (may be empty), then sample len(out) tokens,
    each fed back in. The state (L, 1, H) always reflects every token consumed,
    so a later call continues where this one stopped.

    flat: the parameter buffer; offsets: (L + 1, 5) int64 rows
    [Wx, Wh, b, ex, n_ex] per layer, then [Wy, by, V, 0, 0].
    A, Wp: the products' input and the layers' packed weight matrices (see
    model_step); Wyp: the output layer's Wy, packed (Model.sampling_packs).
    hs (2, 1, H), gh (1, G): scratch shared with the helper thread; sync: see
    CHUNK (sync[4] = 1: no helper).
    u: one uniform number per sampled token (the random state is the caller's).
        p = softmax(logits / temperature) over the top_k largest logits
    clamp_at, clamp_to, o_gate: units held at a value (model_step); none when
    clamp_at has no rows."""
    L, _, H = state_h.shape
    G = offsets[0, 2] - offsets[0, 1]
    G = G // H
    V = offsets[L, 2]
    dt = flat.dtype
    cs = np.zeros((2, 1, H), dt)
    acts = np.empty((1, 1, G), dt)
    aux = np.empty((1, 1, H), dt)
    x = np.empty((1, G), dt)
    y = np.empty((1, Wyp.shape[0] * Wyp.shape[2]), dt)   # whole panels: no edge copy
    probs = np.empty(V, np.float64)
    ranked = np.empty(V, dt)                    # the logits sorted, for top_k
    by = flat[offsets[L, 1]:offsets[L, 1] + V]
    for n in range(prime.shape[0]):
        model_step(prime[n:n + 1], flat, offsets, A, Wp, kind, state_h, state_c, hs, cs, gh, acts,
                   aux, x, sync, clamp_at, clamp_to, o_gate)
    for k in range(out.shape[0]):
        hs[0] = state_h[0]
        _input(A, hs[0])
        post_product(0, sync)                    # layer 0's h Whᵀ, needed after the draw
        matmul_packed(state_h[L - 1], Wyp, y)
        logits = y[0, :V]
        for v in range(V):
            logits[v] += by[v]
        if greedy:
            pick = np.argmax(logits)
        else:
            cut = -np.inf
            if 0 < top_k < V:
                ranked[:] = logits
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
        model_step(out[k:k + 1], flat, offsets, A, Wp, kind, state_h, state_c, hs, cs, gh, acts,
                   aux, x, sync, clamp_at, clamp_to, o_gate, True)
