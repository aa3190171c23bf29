"""The packed matrix products: matmul_packed and its LLVM-IR micro-kernel,
the packing of W (pack_nt, pack_nn), and sampling's float16 and int8 variants."""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._jit import JIT


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
    The IR has one unrolled block per row count n, chosen by a switch; for a
    literal n (matmul_row's 1), only that block."""
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
            # than L2 (Wh at H=512, 4 MB) comes from L3 (docs/performance.md).
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

        if isinstance(n, types.IntegerLiteral):       # one row count, known: no switch
            block(n.literal_value)
            return context.get_dummy_value()
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


@njit(**JIT, inline="always")
def matmul_packed(A, Wp, C):
    """C = A Wᵀ for W packed by pack_nt (or C = A W for pack_nn).
    A (M, K), Wp (P, K, NR), C (M, N) with N <= P·NR; all row-contiguous.
    Inlined into the kernels that call it: compiled on its own as well, it
    only added a second compile of matmul_panels's code (a second a dtype)."""
    # np.int64(0), not 0: Numba types a literal 0 as a type of its own, and
    # would compile matmul_panels again for it (sampling passes int64 panels).
    matmul_panels(A, Wp, C, np.int64(0), Wp.shape[0])


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
def matmul_row(A, Wp, C, p0, p1):
    """matmul_panels for an A of one row (batch-1 sampling), by the
    micro-kernel's one-row block alone: the same arithmetic, without the
    other MR − 1 blocks, which would only lengthen the compiling of every
    sampling kernel (docs/performance.md, "Compiling")."""
    N = C.shape[1]
    NR = Wp.shape[2]
    for p in range(p0, p1):
        if (p + 1) * NR <= N:
            _micro(1, A, 0, Wp, p, C, 0, p * NR)
        else:                                     # the last panel is cut short
            edge = np.empty((1, NR), C.dtype)
            _micro(1, A, 0, Wp, p, edge, 0, 0)
            for j in range(N - p * NR):
                C[0, p * NR + j] = edge[0, j]


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
