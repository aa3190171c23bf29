"""The packed matrix products: float32, float16 and int8 packs, every block shape, without AVX-512."""

import numpy as np
import pytest

from charlstm import kernels as K



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


@pytest.mark.slow
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
