"""What each command calls: the kernels, each with tiny arguments of the types
its calls pass (a Unit: one kernel compiled for one tuple of argument
types). charlstm/warmup.py compiles the units a command lists before it
starts; is_cached asks the cache for them.

The arguments follow the contract in __init__.py, as the model's own arrays
do (model.Model, model.Workspace): every float array C-ordered, of the
model's dtype; tokens intp; the sampler's table of offsets int64. Here they
are those of a 2-layer model of H = 4 units over V = 3 symbols, T = B = 2:
only their types matter, for nothing is computed. tests/test_cache.py checks
that training, sampling and the gradient flow call nothing else."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import _cache
from ._cache import CACHE_DIR
from .binding import CELL_KERNELS
from .gemm import pack_int8, pack_nn, pack_nt, packed_shape, quantised_input_shape
from .loss import embed_backward, softmax_xent
from .optim import adagrad_update, adam_update, dropout_mask
from .recurrence import FORWARD, FORWARD_ONEHOT
from .sampling import GENERATE, product_helper


@dataclass(frozen=True, eq=False)
class Unit:
    """One kernel compiled for one tuple of argument types."""
    kernel: object          # a Numba dispatcher
    args: tuple             # tiny arguments of the real calls' types
    what: str               # the dtype, or the sampling precision, for the label

    @property
    def argtypes(self) -> tuple:
        return tuple(self.kernel.typeof_pyval(a) for a in self.args)

    @property
    def label(self) -> str:
        return f"{self.kernel.py_func.__name__} ({self.what})"


class _Tiny:
    """The arrays of a tiny model of `cell` (a row of CELL_KERNELS): its
    parameters and their gradients, a workspace's layers, the sampler's table."""

    H, V, T, B, L = 4, 3, 2, 2, 2

    def __init__(self, cell: str, dtype):
        self.cell = CELL_KERNELS[cell]
        self.dtype = dtype = np.dtype(dtype)
        H, V, T, B, L = self.H, self.V, self.T, self.B, self.L
        G = self.cell.gates * H
        z = lambda *shape: np.zeros(shape, dtype)  # noqa: E731
        self.Wx = [z(V, G)] + [z(H, G) for _ in range(L - 1)]       # l{l}.Wx
        self.Wh, self.b, self.ex = z(G, H), z(G), z(self.cell.n_extra, H)
        self.gWx, self.gb = z(V, G), z(G)                            # their gradients
        self.Wy = z(H, V)
        n = sum(w.size for w in self.Wx) + L * (G * H + G + self.ex.size) + H * V + V
        self.flat, self.grad = z(n), z(n)
        self.tokens = np.zeros((T, B), np.intp)
        self.logits, self.dlogits = z(T * B, V), z(T * B, V)
        self.layers = []
        for l in range(L):
            w = dict(xp=z(T, B, G), hs=z(T + 1, B, H), cs=z(T + 1, B, H), acts=z(T, B, G),
                     aux=z(T, B, H), dhs=z(T + 1, B, H), dcs=z(T + 1, B, H), dy=z(T, B, H))
            w["dxp"] = w["acts"] if self.cell.dxp_in_acts else z(T, B, G)
            w["dhp"] = z(T, B, G) if self.cell.separate_dhp else w["dxp"]
            self.layers.append(w)
        self.offsets = np.zeros((L + 1, 5), np.int64)

    def packed(self, backward: bool):
        """Model.packed_Wh's arrays, unfilled (packing them would compile pack_nt)."""
        L, H, G = self.L, self.H, self.cell.gates * self.H
        return (np.empty((L,) + packed_shape(G, H, self.dtype), self.dtype),
                np.empty((L,) + packed_shape(H, G, self.dtype), self.dtype) if backward
                else None)


# ---------------------------------------------------------------------------
# What each command runs.

def forward_units(cell: str, dtype="float32", layers: int = 1) -> list[Unit]:
    """Model.forward (no gradient): the packing of Wh and the time loops."""
    m = _Tiny(cell, dtype)
    what, kind = str(m.dtype), m.cell.kind
    Wh_nt, _ = m.packed(backward=False)
    w0, w1 = m.layers
    units = [Unit(pack_nt, (m.Wh, Wh_nt[0]), what),
             Unit(FORWARD_ONEHOT[kind], (w0["hs"], w0["cs"], w0["acts"], w0["aux"], m.tokens,
                                         m.Wx[0], m.b, Wh_nt[0], m.ex), what)]
    if layers > 1:                            # the layers above: a dense input
        units.append(Unit(FORWARD[kind], (w1["hs"], w1["cs"], w1["acts"], w1["aux"], w1["xp"],
                                          Wh_nt[1], m.ex), what))
    return units


def train_units(cell: str, dtype="float32", layers: int = 1, dropout: bool = True,
                optimizer: str = "adam") -> list[Unit]:
    """Training (Trainer.step, Replicas.loss, Model.loss) and its validation."""
    m = _Tiny(cell, dtype)
    what = str(m.dtype)
    _, Wh_nn = m.packed(backward=True)
    w = m.layers[0]
    flat, g = m.flat, m.grad
    units = forward_units(cell, dtype, layers) + [
        Unit(pack_nn, (m.Wh, Wh_nn[0]), what),
        Unit(softmax_xent, (m.dlogits, m.logits, m.tokens.reshape(-1), 0.5), what),
        Unit(m.cell.backward, (w["dxp"], w["dhp"], w["dhs"], w["dcs"], w["dy"], w["hs"], w["cs"],
                               w["acts"], w["aux"], Wh_nn[0], m.ex), what),
        Unit(embed_backward, (m.gWx, m.gb, m.tokens, w["dxp"]), what)]
    if dropout:
        units.append(Unit(dropout_mask, (w["dy"], np.uint64(1), 0, 0.5), what))
    if optimizer == "adagrad":
        units.append(Unit(adagrad_update, (flat, g, g.copy(), 1e-3, 1e-8), what))
    else:
        units.append(Unit(adam_update, (flat, g, g.copy(), g.copy(), 1e-3, 0.9, 0.999, 1e-8, 1),
                          what))
    return units


def gradient_units(cell: str, dtype="float64", layers: int = 1) -> list[Unit]:
    """A forward and backward pass without an optimizer (compare's gradient
    flow, on a float64 copy of the model: lab.spans.gradient_flow)."""
    units = train_units(cell, dtype, layers, dropout=False)
    return [u for u in units if u.kernel is not adam_update]


def sample_units(cell: str, weights: str = "int8", threads: int | None = None) -> list[Unit]:
    """Sampling (sampling.Sampler) with `weights`, by `threads` threads (default:
    as Sampler chooses). Packing the weights is training's kernels again."""
    m = _Tiny(cell, np.float32)
    L, H, V = m.L, m.H, m.V
    G = m.cell.gates * H
    Wp = np.zeros((2 * L - 1,) + packed_shape(G, H, np.float32), np.float32)
    Wyp = np.zeros(packed_shape(V, H, np.float32), np.float32)
    units = [Unit(pack_nn, (m.Wy, Wyp), "float32")]                 # Model.sampling_packs
    if weights != "int8":
        units.append(Unit(pack_nt, (np.ascontiguousarray(m.Wh), Wp[0]), "float32"))
    hs = np.zeros((2, 1, H), np.float32)
    A = hs[0]                                                       # as Sampler makes them
    half = Wyp.astype(np.float16).view(np.uint16)
    if weights == "float16":
        Wp, Wyp = Wp.astype(np.float16).view(np.uint16), half
    elif weights == "int8":
        Wp, Wyp = np.stack([pack_int8(m.Wh)] * (2 * L - 1)), half
        A = np.zeros(quantised_input_shape(H), np.int16)
    gh = np.zeros((1, G), np.float32)
    sync = np.zeros(8, np.int64)
    h, c = np.zeros((L, 1, H), np.float32), np.zeros((L, 1, H), np.float32)   # zero_state(1)
    if min(2, threads or os.cpu_count() or 1) > 1:
        units.append(Unit(product_helper, (sync, A, Wp, gh), weights))
    units.append(Unit(GENERATE[m.cell.kind],
                      (np.empty(1, np.int64), np.zeros(1, np.int64), np.zeros(1), m.flat,
                       m.offsets, A, Wp, Wyp, h, c, 1.0, 0, False, hs, gh, sync,
                       np.zeros((0, 2), np.int64), np.zeros(0, np.float32), 0), weights))
    return units


# ---------------------------------------------------------------------------
# Whether they are compiled.

def _of_a_cell(u: Unit) -> bool:
    """Whether u is one cell's own kernel (its time loops, its backward pass)."""
    return u.kernel in FORWARD + FORWARD_ONEHOT + tuple(c.backward for c in
                                                        CELL_KERNELS.values())


def is_cached(cells=(), folder: str = CACHE_DIR) -> bool:
    """Whether `folder` holds, for this version of the kernels and this
    machine, every unit `charlstm train` needs with its default settings for
    each of `cells` (float32, one layer, dropout, Adam), and the units every
    cell's training shares (with no cells: those alone)."""
    units = ([u for c in cells for u in train_units(c)] or
             [u for u in train_units("lstm") if not _of_a_cell(u)])
    return all(_cache.compiled(u.kernel, u.argtypes, folder) for u in units)
