"""The model: stacked recurrent layers, then a softmax over the vocabulary.

Parameters live in one flat buffer with a named view per tensor (gradients and
Adam's moments share that layout, so the optimizer and global-norm clipping are
one flat loop each). Python orchestrates; the arithmetic is in charlstm/kernels/.

Per layer l (gate order as torch.nn.LSTM / nn.GRU, so weight_ih_l{l} = Wx.T,
weight_hh_l{l} = Wh, bias_ih_l{l} = b, bias_hh_l{l} = 0):
    l{l}.Wx (D, G)  l{l}.Wh (G, H)  l{l}.b (G,)  l{l}.ex (k, H) if the cell has extras
(no l{l}.Wh for a cell that is not recurrent: the min cells), then the output
layer Wy (H, V), by (V,).
"""
from __future__ import annotations

import copy
from functools import partial

import numpy as np

from . import kernels
from .cells import CELLS
from .config import SAMPLING_WEIGHTS, ModelConfig
from .errors import CharlstmError


def layout(cfg: ModelConfig) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of every parameter, in buffer order."""
    cell = CELLS[cfg.cell]
    H, V = cfg.hidden, cfg.vocab_size
    G = cell.gates * H
    out = []
    for l in range(cfg.layers):
        out.append((f"l{l}.Wx", (V if l == 0 else H, G)))
        if cell.recurrent:
            out.append((f"l{l}.Wh", (G, H)))
        out.append((f"l{l}.b", (G,)))
        if cell.n_extra:
            out.append((f"l{l}.ex", (cell.n_extra, H)))
    return out + [("Wy", (H, V)), ("by", (V,))]


def views(flat: np.ndarray, lay) -> dict[str, np.ndarray]:
    """Named views into one flat buffer."""
    out, k = {}, 0
    for name, shape in lay:
        n = int(np.prod(shape))
        out[name] = flat[k:k + n].reshape(shape)
        k += n
    return out


def n_params(cfg: ModelConfig) -> int:
    return sum(int(np.prod(s)) for _, s in layout(cfg))


class Workspace:
    """Buffers for one (T, B) shape, allocated once and reused every step.
    backward=False: the forward pass's buffers only (Model.forward; not
    Model.loss, which writes dlogits), about half the memory."""

    def __init__(self, cfg: ModelConfig, T: int, B: int, dtype, backward: bool = True):
        cell = CELLS[cfg.cell]
        H, V, G = cfg.hidden, cfg.vocab_size, CELLS[cfg.cell].gates * cfg.hidden
        C = cell.c_width * H                # c's columns (the sLSTM's: c, n, m)
        self.T, self.B = T, B
        z = lambda *s: np.zeros(s, dtype)  # noqa: E731
        zb = z if backward else (lambda *s: None)  # noqa: E731
        self.layers = []
        for l in range(cfg.layers):        # no xp for the first layer: its input is a gather
            w = dict(xp=z(T, B, G) if l > 0 else None, hs=z(T + 1, B, H), cs=z(T + 1, B, C),
                     acts=z(T, B, G), aux=z(T, B, H), dhs=zb(T + 1, B, H),
                     dcs=zb(T + 1, B, C), dy=zb(T, B, H), y=None, mask=None)
            w["dxp"] = (w["acts"] if cell.dxp_in_acts else zb(T, B, G)) if backward else None
            w["dhp"] = (zb(T, B, G) if cell.separate_dhp else w["dxp"]) if backward else None
            self.layers.append(w)
        self.logits = z(T * B, V)
        self.dlogits = zb(T * B, V)
        self.tokens = np.zeros((T, B), np.intp)

    def first(self, T: int) -> Workspace:
        """The same buffers for a shorter window, of the first T steps (views)."""
        cut = lambda v: v if v is None else v[:T + len(v) - self.T]  # noqa: E731  (T or T+1 rows)
        ws = copy.copy(self)
        ws.T = T
        ws.layers = [{k: cut(v) for k, v in w.items()} for w in self.layers]
        ws.logits = self.logits[:T * self.B]
        ws.dlogits = None if self.dlogits is None else self.dlogits[:T * self.B]
        ws.tokens = self.tokens[:T]
        return ws


class Model:
    """A stack of `cfg.layers` cells of `cfg.hidden` units over a V-symbol vocabulary."""

    def __init__(self, cfg: ModelConfig, dtype=np.float32, flat: np.ndarray | None = None):
        if cfg.cell not in CELLS:
            raise CharlstmError(f"unknown cell {cfg.cell!r}; choose one of {', '.join(CELLS)}")
        self.cfg = cfg
        self.cell = kernels.CELL_KERNELS[cfg.cell]         # its row of cells.py, with its kernels
        self.dtype = np.dtype(dtype)
        self.layout = layout(cfg)
        size = sum(int(np.prod(s)) for _, s in self.layout)
        self.flat = np.zeros(size, self.dtype) if flat is None else flat
        if self.flat.shape != (size,) or self.flat.dtype != self.dtype:
            raise CharlstmError("parameter buffer does not match the model settings")
        self.grad = np.zeros(size, self.dtype)
        self.p = views(self.flat, self.layout)
        self.g = views(self.grad, self.layout)
        self.offsets = self._offsets()

    @property
    def size(self) -> int:
        return self.flat.size

    def _offsets(self) -> np.ndarray:
        """Table for the jitted sampler: [Wx, Wh, b, ex, n_ex] per layer, then [Wy, by, V]
        (a cell without Wh: its Wh starts, and is empty, where b starts)."""
        start, k = {}, 0
        for name, shape in self.layout:
            start[name] = k
            k += int(np.prod(shape))
        rows = []
        for l in range(self.cfg.layers):
            ex = start.get(f"l{l}.ex", start[f"l{l}.b"])
            rows.append([start[f"l{l}.Wx"], start.get(f"l{l}.Wh", start[f"l{l}.b"]),
                         start[f"l{l}.b"], ex,
                         self.cell.n_extra])
        rows.append([start["Wy"], start["by"], self.cfg.vocab_size, 0, 0])
        return np.array(rows, np.int64)

    def init(self, rng: np.random.Generator):
        """As PyTorch: weights and biases Uniform(±1/√H), a layer's bias b being
        the sum of two such draws (PyTorch's b_ih + b_hh), GRU's b_hn one draw.
        Then +forget_bias on the forget gate (Gers, Schmidhuber & Cummins 2000;
        Jozefowicz, Zaremba & Sutskever 2015: start by
        remembering). Extras start at zero (peepholes) or as a bias does (the
        GRU's b_hn): Cell.extras_init. IRNN: Wh = identity, zero biases.

        Random biases matter: measured on tinyshakespeare at 1×512 after 400
        steps, zero gate biases gave validation loss 2.99 against 1.98 with
        PyTorch's random ones (same weights otherwise, in PyTorch itself)."""
        cfg, H = self.cfg, self.cfg.hidden
        k = 1.0 / np.sqrt(H)
        for name, w in self.p.items():
            if name.endswith(".b"):
                w[...] = rng.uniform(-k, k, w.shape) + rng.uniform(-k, k, w.shape)
            elif name.endswith(".ex"):
                w[...] = rng.uniform(-k, k, w.shape) if self.cell.extras_init == "uniform" else 0
            else:
                w[...] = rng.uniform(-k, k, w.shape)
        for l in range(cfg.layers):
            if self.cell.forget_gate >= 0:
                fg = self.cell.forget_gate
                self.p[f"l{l}.b"][fg * H:(fg + 1) * H] += cfg.forget_bias
            if self.cell.identity_init:
                self.p[f"l{l}.Wh"][...] = np.eye(H)
                self.p[f"l{l}.b"][...] = 0
        return self

    def check_unit(self, layer: int, unit: int, named: str) -> None:
        """A unit the user named (sample --clamp, inspect --unit and --ablate)
        is one of this model's; `named` is how they named it, for the message."""
        L, H = self.cfg.layers, self.cfg.hidden
        if not (0 <= layer < L and 0 <= unit < H):
            raise CharlstmError(f"{named}: this model has layers 0-{L - 1} and units "
                                f"0-{H - 1} in each")

    def zero_state(self, B: int):
        """Initial (h, c): (L, B, H) and (L, B, c_width·H), zero (the sLSTM's c, n
        and m too: its n becomes i' > 0 at the first step)."""
        L, H = self.cfg.layers, self.cfg.hidden
        return (np.zeros((L, B, H), self.dtype),
                np.zeros((L, B, self.cell.c_width * H), self.dtype))

    # -- forward and backward, side by side --------------------------------

    def forward(self, ws: Workspace, tokens: np.ndarray, h0, c0, masks=None,
                packs=None) -> np.ndarray:
        """tokens: (T, B) input ids; h0, c0: (L, B, H), (L, B, c_width·H); masks: None or one (T, B, H)
        inverted-dropout mask per layer output; packs: packed_Wh() of the current
        weights (default: made here). Returns logits (T·B, V)."""
        T, B = ws.T, ws.B
        Wh_nt, _ = packs or self.packed_Wh(backward=False)
        ws.tokens[...] = tokens
        x = None
        for l, w in enumerate(ws.layers):
            Wx, b = self.p[f"l{l}.Wx"], self.p[f"l{l}.b"]
            w["hs"][0] = h0[l]
            w["cs"][0] = c0[l]
            if l == 0:                                  # one-hot input: a row gather
                kernels.forward_onehot(self.cell.kind, w["hs"], w["cs"], w["acts"], w["aux"],
                                       ws.tokens, Wx, b, Wh_nt[l], self._ex(l))
            else:
                np.matmul(x.reshape(T * B, -1), Wx, out=w["xp"].reshape(T * B, -1))
                w["xp"] += b
                kernels.forward(self.cell.kind, w["hs"], w["cs"], w["acts"], w["aux"], w["xp"],
                                Wh_nt[l], self._ex(l))
            w["mask"] = None if masks is None else masks[l]
            x = w["hs"][1:] if w["mask"] is None else w["hs"][1:] * w["mask"]
            w["y"] = x
        np.matmul(x.reshape(T * B, -1), self.p["Wy"], out=ws.logits)
        ws.logits += self.p["by"]
        return ws.logits

    def backward(self, ws: Workspace, dlogits: np.ndarray, dhT=None, dcT=None, g=None,
                 packs=None, jobs=None):
        """Accumulate (+=) parameter gradients into g (default self.g, named views
        of a buffer laid out as self.flat) from dlogits (T·B, V).
        dhT, dcT: (L, B, H) gradient arriving at the final state (default zero).
        packs: as in forward.
        jobs: None, or a list (anything with an append) to which the weight
        gradients that nothing later in the backward pass waits for (dW_y,
        dW_h, dW_x, db, ex) are appended, as functions of no arguments, as soon
        as they can run, instead of being run here: the caller runs them, in
        any order and on any thread (Replicas shares them out among its
        workers). Each writes its own part of g.
        Returns (dh0, dc0), each (L, B, H)."""
        T, B, L = ws.T, ws.B, self.cfg.layers
        g = self.g if g is None else g
        _, Wh_nn = packs or self.packed_Wh()
        todo = [] if jobs is None else jobs
        top = ws.layers[-1]
        todo.append(partial(_output_grads, g["Wy"], g["by"], top["y"].reshape(T * B, -1),
                            dlogits))
        dy = top["dy"]
        np.matmul(dlogits, self.p["Wy"].T, out=dy.reshape(T * B, -1))
        dh0 = np.zeros((L, B, self.cfg.hidden), self.dtype)
        dc0 = np.zeros((L, B, self.cell.c_width * self.cfg.hidden), self.dtype)
        for l in range(L - 1, -1, -1):
            w = ws.layers[l]
            if w["mask"] is not None:
                dy *= w["mask"]
            w["dhs"][T] = 0 if dhT is None else dhT[l]
            w["dcs"][T] = 0 if dcT is None else dcT[l]
            self.cell.backward(w["dxp"], w["dhp"], w["dhs"], w["dcs"], dy, w["hs"], w["cs"],
                               w["acts"], w["aux"], Wh_nn[l], self._ex(l))
            dxp = w["dxp"].reshape(T * B, -1)
            dhp, h = w["dhp"].reshape(T * B, -1), w["hs"][:-1].reshape(T * B, -1)
            G = dhp.shape[1]
            for lo, hi in ((0, G // 2), (G // 2, G)) if self.cell.recurrent else ():
                # dW_h = Σ_t dhp_tᵀ h_{t−1}, in two jobs, so that two workers can share it
                todo.append(partial(_add_product, g[f"l{l}.Wh"][lo:hi], dhp[:, lo:hi].T, h))
            if self.cell.n_extra:
                todo.append(partial(self.cell.extra_grad, g[f"l{l}.ex"], w["dxp"], w["dhp"],
                                    w["hs"], w["cs"]))
            if l == 0:                                              # dWx and db
                todo.append(partial(kernels.embed_backward, g["l0.Wx"], g["l0.b"], ws.tokens,
                                    w["dxp"]))
            else:
                below = ws.layers[l - 1]
                todo.append(partial(_output_grads, g[f"l{l}.Wx"], g[f"l{l}.b"],
                                    below["y"].reshape(T * B, -1), dxp))
                dy = below["dy"]
                np.matmul(dxp, self.p[f"l{l}.Wx"].T, out=dy.reshape(T * B, -1))
            dh0[l] = w["dhs"][0]
            dc0[l] = w["dcs"][0]
        if jobs is None:
            for job in todo:
                job()
        return dh0, dc0

    def packed_Wh(self, out=None, backward=True):
        """Every layer's Wh packed for the kernels' two recurrent products
        (kernels.matmul_packed): Wh_nt (L, ...) for h Whᵀ in the forward pass,
        Wh_nn (L, ...) for dxp Wh in the backward pass (None if not backward).
        Written into `out` (an earlier result) when given, so training reuses
        the buffers step after step. A cell without Wh gets empty arrays of the
        same types, which its kernels never read."""
        L, H = self.cfg.layers, self.cfg.hidden
        G = self.cell.gates * H
        if not self.cell.recurrent:
            none = np.zeros((L, 0, 0, 0), self.dtype)
            return none, (none if backward else None)
        if out is None or (backward and out[1] is None):
            out = (np.empty((L,) + kernels.packed_shape(G, H, self.dtype), self.dtype),
                   np.empty((L,) + kernels.packed_shape(H, G, self.dtype), self.dtype)
                   if backward else None)
        for l in range(L):
            kernels.pack_nt(self.p[f"l{l}.Wh"], out[0][l])
            if backward:
                kernels.pack_nn(self.p[f"l{l}.Wh"], out[1][l])
        return out

    def sampling_packs(self, weights: str = "float32") -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(over="ignore", invalid="ignore"):   # huge weights: inf in float16
            return self._sampling_packs(weights)

    def _sampling_packs(self, weights: str) -> tuple[np.ndarray, np.ndarray]:
        """The weight matrices batch-1 sampling multiplies by, packed for
        kernels.matmul_packed: Wp, in the order kernels.model_step uses them
        (Wh of layer 0, then Wx and Wh of each layer above, whose input is dense),
        and Wyp, the output layer's Wy.
        weights: "float32", the weights as they are; "float16", rounded to
        float16 and stored as their uint16 bit patterns (the products still sum
        in float32); "int8", Wp as int8 with a scale per output
        (kernels.pack_int8) and Wyp as float16. The last two are for float32
        models only."""
        L, H, V = self.cfg.layers, self.cfg.hidden, self.cfg.vocab_size
        if weights not in SAMPLING_WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(SAMPLING_WEIGHTS)}")
        if weights != "float32" and self.dtype != np.float32:
            raise ValueError(f"{weights} weights are for float32 models")
        G = self.cell.gates * H
        Wyp = np.empty(kernels.packed_shape(V, H, self.dtype), self.dtype)
        kernels.pack_nn(self.p["Wy"], Wyp)
        none = np.zeros((G, H), self.dtype)            # no Wh: a place the kernel never reads
        Wh = lambda l: self.p.get(f"l{l}.Wh", none)  # noqa: E731
        mats = [Wh(0)]                                 # each (N, K), for y = x Wᵀ
        for l in range(1, L):
            mats += [self.p[f"l{l}.Wx"].T, Wh(l)]
        if weights == "int8":
            return (np.stack([kernels.pack_int8(W) for W in mats]),
                    Wyp.astype(np.float16).view(np.uint16))
        Wp = np.empty((len(mats),) + kernels.packed_shape(G, H, self.dtype), self.dtype)
        for k, W in enumerate(mats):
            kernels.pack_nt(np.ascontiguousarray(W), Wp[k])
        if weights == "float16":
            return tuple(w.astype(np.float16).view(np.uint16) for w in (Wp, Wyp))
        return Wp, Wyp

    def _ex(self, l: int) -> np.ndarray:
        return self.p.get(f"l{l}.ex", np.zeros((0, self.cfg.hidden), self.dtype))

    def final_state(self, ws: Workspace):
        """(h_T, c_T) of every layer, copied: the state carried to the next batch."""
        h = np.stack([w["hs"][ws.T] for w in ws.layers])
        c = np.stack([w["cs"][ws.T] for w in ws.layers])
        return h, c

    def loss(self, ws: Workspace, tokens, targets, h0, c0, masks=None, grad=True,
             g=None, n_total=None, packs=None, jobs=None) -> float:
        """Cross-entropy (nats/char) of predicting targets (T, B) from tokens,
        summed and divided by n_total (default: this batch's size, a mean).
        With grad, accumulates parameter gradients into g (default self.g);
        packs and jobs as in forward and backward."""
        # A diverging model overflows; the trainer sees the non-finite loss or
        # gradient and stops with a message, so NumPy's warnings would only be noise.
        with np.errstate(over="ignore", invalid="ignore"):
            logits = self.forward(ws, tokens, h0, c0, masks, packs)
            tg = np.ascontiguousarray(targets, dtype=np.intp).reshape(-1)
            n = n_total or tg.size
            total = kernels.softmax_xent(ws.dlogits, logits, tg, 1.0 / n)
            if grad:
                self.backward(ws, ws.dlogits, g=g, packs=packs, jobs=jobs)
        return total / n


def _add_product(out, a, b):
    """out += a b: one of Model.backward's weight-gradient jobs."""
    out += a @ b


def _output_grads(dW, db, x, dz):
    """For z = x W + b:  dW += xᵀ dz,  db += Σ_rows dz."""
    dW += x.T @ dz
    db += dz.sum(axis=0)
