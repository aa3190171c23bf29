"""Nonlinearities: tanh_, sigmoid and exp_, fast in float32 (a rational tanh,
Cephes' expf) and exact in float64; _as, which casts constants to an array's
type, and _copy, an array copy that is quick to compile."""
import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from ._jit import JIT


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


def _copy(dst, src):
    """dst[...] = src for two arrays of one shape, 1- or 2-dimensional (jitted
    code only). NumPy's assignment, in Numba, compiles its broadcasting check's
    error message too: string formatting that took 4 s of compiling on its
    own, in the first kernel to use it (docs/performance.md, "Compiling")."""
    dst[...] = src


@overload(_copy, jit_options=JIT)
def _copy_impl(dst, src):
    if dst.ndim == 1:
        def impl(dst, src):
            for j in range(dst.shape[0]):
                dst[j] = src[j]
        return impl

    def impl2(dst, src):
        for i in range(dst.shape[0]):
            for j in range(dst.shape[1]):
                dst[i, j] = src[i, j]
    return impl2


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
