"""PyTorch, as the rival we measure against (never a dependency of charlstm).

Written as PyTorch users write it: nn.LSTM / nn.GRU / nn.RNN + Linear +
cross-entropy + Adam + clip_grad_norm_, one-hot input, hidden state carried
(detached) across batches, and sampling one character per Python step. The
cells torch.nn lacks (minGRU, minLSTM, sLSTM) are plain modules here
(CellNet): the equations of charlstm/reference.py, a Python loop over time.

    python -m charlstm.tools.rival quality FILE --minutes 10          # the reference recipe
    python -m charlstm.tools.rival quality FILE --minutes 10 --ours   # charlstm train's defaults
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from ..cells import CELLS
from ..data import Batches

# charlstm's cells that torch.nn has no module for, written here (CellNet)
OWN_CELLS = ("mingru", "minlstm", "slstm")


def available() -> bool:
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


_CLASSES: dict = {}


def cell_net(cell: str, input_size: int, hidden_size: int, num_layers: int = 1):
    """A CellNet of `cell` (one of OWN_CELLS): called as nn.LSTM is, on x
    (T, B, D) and a state (None: zero), it returns (out (T, B, H), state)."""
    if "CellNet" not in _CLASSES:
        _CLASSES["CellNet"] = _define_cell_net()
    return _CLASSES["CellNet"](cell, input_size, hidden_size, num_layers)


def _define_cell_net():
    """The class, made when first asked for: torch is imported only then."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class CellNet(nn.Module):
        """minGRU, minLSTM (Feng et al. 2024, the sequential mode) or sLSTM
        (Beck et al. 2024, one head), layers stacked as nn.LSTM's, with the
        weights laid out as charlstm's (reference.py): per layer
        weight_ih_l{l} (G, D) = Wxᵀ, weight_hh_l{l} (G, H) = Wh (the sLSTM
        only: the min cells have none) and one bias, bias_l{l} (G,), the
        blocks side by side in cells.py's order. The state is h (L, B, H),
        and for the sLSTM (h, c) with c (L, B, 3H): its c, n and m, as
        charlstm carries them.

        The min cells' gates see only x, so each layer computes the x side
        of every step as one matmul and then runs the element-wise
        recurrence h_t = a_t ⊙ h_(t−1) + b_t step by step; the sLSTM needs
        h_(t−1) Whᵀ at every step."""

        def __init__(self, cell, input_size, hidden_size, num_layers=1):
            super().__init__()
            if cell not in OWN_CELLS:
                raise ValueError(f"CellNet has no {cell!r}: one of {', '.join(OWN_CELLS)}")
            row = CELLS[cell]
            self.cell, self.H, self.L = cell, hidden_size, num_layers
            self.recurrent, self.c_width = row.recurrent, row.c_width if row.has_c else 0
            self.dropout = 0.0                          # between layers, as nn.LSTM's
            G, k = row.gates * hidden_size, 1 / math.sqrt(hidden_size)
            for l in range(num_layers):
                D = input_size if l == 0 else hidden_size
                self.register_parameter(f"weight_ih_l{l}",
                                        nn.Parameter(torch.empty(G, D).uniform_(-k, k)))
                if self.recurrent:
                    self.register_parameter(f"weight_hh_l{l}", nn.Parameter(
                        torch.empty(G, hidden_size).uniform_(-k, k)))
                self.register_parameter(f"bias_l{l}",
                                        nn.Parameter(torch.empty(G).uniform_(-k, k)))

        def forward(self, x, state=None):
            T, B = x.shape[:2]
            H = self.H
            if state is None:
                h0 = x.new_zeros(self.L, B, H)
                c0 = x.new_zeros(self.L, B, self.c_width * H) if self.c_width else None
            else:
                h0, c0 = state if self.c_width else (state, None)
            hs, cs = [], []
            for l in range(self.L):
                if l and self.dropout and self.training:
                    x = F.dropout(x, self.dropout, training=True)
                W, b = getattr(self, f"weight_ih_l{l}"), getattr(self, f"bias_l{l}")
                a = torch.addmm(b, x.reshape(T * B, -1), W.t()).view(T, B, -1)  # x side
                if self.cell == "slstm":
                    x, h, c = self._slstm(a, getattr(self, f"weight_hh_l{l}"), h0[l], c0[l])
                    cs.append(c)
                else:
                    x, h = self._scan(*self._coefficients(a), h0[l])
                hs.append(h)
            h = torch.stack(hs)
            return x, ((h, torch.stack(cs)) if self.c_width else h)

        def _coefficients(self, a):
            """The min cells as h_t = A_t ⊙ h_(t−1) + B_t, for all steps at once."""
            H = self.H
            if self.cell == "mingru":        # h = (1 − z) h' + z n,  z = σ(a_z), n = a_n
                z = torch.sigmoid(a[..., :H])
                return 1 - z, z * a[..., H:]
            f, i = torch.sigmoid(a[..., :H]), torch.sigmoid(a[..., H:2 * H])
            s = f + i                        # minLSTM: h = f/(f+i) h' + i/(f+i) g, g = a_g
            return f / s, i / s * a[..., 2 * H:]

        @staticmethod
        def _scan(A, Bt, h):
            out = []
            for t in range(A.shape[0]):
                h = torch.addcmul(Bt[t], A[t], h)
                out.append(h)
            return torch.stack(out), h

        def _slstm(self, a, Wh, h, c):
            """reference.slstm_forward, step by step: m_t = max(log f + m', ĩ),
            i' = exp(ĩ − m_t), f' = exp(log f + m' − m_t), c = f' c' + i' z,
            n = f' n' + i', h = o ⊙ c / n."""
            H = self.H
            c, n, m = c[:, :H], c[:, H:2 * H], c[:, 2 * H:]
            out = []
            for t in range(a.shape[0]):
                pre = torch.addmm(a[t], h, Wh.t())
                z, it = torch.tanh(pre[:, :H]), pre[:, H:2 * H]
                lf = F.logsigmoid(pre[:, 2 * H:3 * H]) + m
                o = torch.sigmoid(pre[:, 3 * H:])
                m = torch.where(lf >= it, lf, it)
                ip, fp = torch.exp(it - m), torch.exp(lf - m)
                c, n = fp * c + ip * z, fp * n + ip
                h = o * c / n
                out.append(h)
            return torch.stack(out), h, torch.cat([c, n, m], dim=1)

    return CellNet


def _net(cell, V, H, L):
    import torch.nn as nn
    if cell in OWN_CELLS:
        return cell_net(cell, V, H, L), nn.Linear(H, V)
    if cell in ("lstm", "gru"):
        rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(V, H, L)
    else:
        rnn = nn.RNN(V, H, L, nonlinearity="relu" if cell == "irnn" else "tanh")
    return rnn, nn.Linear(H, V)


class TorchTrainer:
    def __init__(self, cell, V, H, L, B, T, lr=2e-3, clip=5.0, threads=2, seed=0, dropout=0.0,
                 forget_bias=0.0):
        import torch
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.torch = torch
        self.rnn, self.out = _net(cell, V, H, L)
        # charlstm's dropout: between layers (nn.LSTM's own) and before the output layer
        self.drop = torch.nn.Dropout(dropout) if dropout else None
        if forget_bias and cell == "lstm":           # gate order i, f, g, o: as charlstm's init
            with torch.no_grad():
                for l in range(L):
                    getattr(self.rnn, f"bias_ih_l{l}")[H:2 * H] += forget_bias
        if forget_bias and cell in OWN_CELLS and CELLS[cell].forget_gate >= 0:
            fg = CELLS[cell].forget_gate                 # minLSTM's f, sLSTM's f: as charlstm's
            with torch.no_grad():
                for l in range(L):
                    getattr(self.rnn, f"bias_l{l}")[fg * H:(fg + 1) * H] += forget_bias
        if dropout:
            self.rnn.dropout = dropout
        self.params = list(self.rnn.parameters()) + list(self.out.parameters())
        self.opt = torch.optim.Adam(self.params, lr=lr)
        self.cell, self.V, self.H, self.L, self.B, self.T, self.clip = cell, V, H, L, B, T, clip
        self.state = None
        self.eye = torch.eye(V)

    def step(self, x, y, lr=None) -> float:
        """x, y: (T, B) int64 arrays; lr: this step's learning rate (default: as set)."""
        torch = self.torch
        self.rnn.train()
        if lr is not None:
            for group in self.opt.param_groups:
                group["lr"] = lr
        xs = self.eye[torch.from_numpy(np.ascontiguousarray(x, np.int64))]   # one-hot (T, B, V)
        out, state = self.rnn(xs, self.state)
        self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        logits = self.out(out if self.drop is None else self.drop(out))
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, self.V), torch.from_numpy(np.ascontiguousarray(y, np.int64)).reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        return loss.item()

    def evaluate(self, ids, T=100, B=32) -> float:
        """Mean loss over `ids` in the windows charlstm's Trainer.evaluate scores
        (data.Batches: the whole windows, then the rest of each stream)."""
        torch = self.torch
        self.rnn.eval()
        batches = Batches(ids, B, T)
        state, total = None, 0.0
        with torch.no_grad():
            for k in range(batches.n + 1):
                x, y = (torch.from_numpy(w.astype(np.int64)) for w in batches.get(k))
                if len(x) == 0:
                    break
                out, state = self.rnn(self.eye[x], state)
                total += float(torch.nn.functional.cross_entropy(
                    self.out(out).reshape(-1, self.V), y.reshape(-1), reduction="sum"))
        return total / (B * (batches.L - 1))

    def sample(self, n: int, temperature=1.0, loop="cell") -> list[int]:
        """One character per Python step, as users write it, in one of two ways:
        loop="module" calls the nn.LSTM module itself once per character;
        loop="cell" runs nn.LSTMCell copies of its layers (the same weights).
        Measured here at 1x512, the cell loop is the faster (nn.LSTM's oneDNN
        path costs ~0.9 ms per one-step call, LSTMCell ~0.2 ms). A CellNet
        (OWN_CELLS) has no cell of torch.nn: it is called per character."""
        torch = self.torch
        self.rnn.eval()
        step = (self._module_step if loop == "module" or self.cell in OWN_CELLS
                else self._make_cell_step())
        idx, state, out = 0, None, []
        with torch.no_grad():
            for _ in range(n):
                h, state = step(self.eye[idx].view(1, -1), state)
                p = torch.softmax(self.out(h[0]) / temperature, dim=-1)
                idx = int(torch.multinomial(p, 1))
                out.append(idx)
        return out

    def _module_step(self, x, state):
        o, state = self.rnn(x.view(1, 1, -1), state)
        return o[0], state

    def _make_cell_step(self):
        nn, rnn, L = self.torch.nn, self.rnn, self.L
        make = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}.get(self.cell)
        cells = []
        for l in range(L):
            d = self.V if l == 0 else self.H
            c = (make(d, self.H) if make else
                 nn.RNNCell(d, self.H, nonlinearity="relu" if self.cell == "irnn" else "tanh"))
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(c, name).data = getattr(rnn, f"{name}_l{l}").data
            cells.append(c.eval())

        def step(x, state):
            state = state or [None] * L
            new = []
            for l, c in enumerate(cells):
                s = c(x, state[l])
                new.append(s)
                x = s[0] if isinstance(s, tuple) else s
            return x, new
        return step


def quality(path: str, minutes: float, H=512, L=1, B=32, T=100, lr=2e-3, schedule="constant",
            dropout=0.0, forget_bias=0.0, state_reset=0.0, warmup=0.0, threads=2,
            log=print) -> dict:
    """Train the PyTorch LSTM for `minutes` of wall time on FILE (last 10% held
    out); the clock includes evaluation, which follows charlstm train's
    automatic rule (train.auto_eval_due). schedule="cosine" decays lr over the
    minutes as charlstm train does (train.lr_at); state_reset zeroes each
    stream's carried state with that chance between batches, as charlstm
    train's --state-reset does; warmup raises lr over that share of the
    minutes, as charlstm train's --warmup does."""
    from ..config import TrainConfig
    from ..data import Batches, load_corpus
    from ..train import auto_eval_due, lr_at
    c = load_corpus(path, 0.1)
    tr = TorchTrainer("lstm", c.V, H, L, B, T, lr=lr, threads=threads, dropout=dropout,
                      forget_bias=forget_bias)
    sched = TrainConfig(lr=lr, schedule=schedule, minutes=minutes, warmup=warmup)
    batches = Batches(c.train, B, T)
    rng = np.random.default_rng(0)
    t0, step, k, hist = time.perf_counter(), 0, 0, []
    last_step, last_t, cost = 0, t0, 0.0
    while time.perf_counter() - t0 < 60 * minutes:
        x, y = batches.get(k)
        tr.step(x, y, lr_at(sched, step, (time.perf_counter() - t0) / (60 * minutes)))
        step, k = step + 1, (k + 1) % batches.n
        if k == 0:
            tr.state = None
        elif state_reset > 0:
            lost = tr.torch.from_numpy(rng.random(B) < state_reset)
            for s in tr.state:
                s[:, lost] = 0
        now = time.perf_counter()
        if auto_eval_due(step - last_step, now - last_t, cost):
            v = tr.evaluate(c.val, T, B)
            last_step, last_t = step, time.perf_counter()
            cost = last_t - now
            hist.append([step, last_t - t0, v])
            log(f"torch step {step} {hist[-1][1]:.0f}s val {v:.4f}")
    v = tr.evaluate(c.val, T, B)
    hist.append([step, time.perf_counter() - t0, v])
    best = min(h[2] for h in hist)
    return {"final_val": v, "best_val": best, "steps": step, "history": hist,
            "settings": dict(H=H, L=L, B=B, T=T, lr=lr, schedule=schedule, clip=5.0,
                             dropout=dropout, forget_bias=forget_bias, state_reset=state_reset,
                             warmup=warmup)}


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("what", choices=["quality"])
    ap.add_argument("file")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--ours", action="store_true",
                    help="charlstm train's default model and recipe (size, batch, learning "
                         "rate and schedule, dropout, forget-gate bias, state resets) instead of the "
                         "reference recipe below")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--forget-bias", type=float, default=0.0,
                    help="added to the forget-gate bias at init")
    ap.add_argument("--state-reset", type=float, default=0.0,
                    help="chance that a stream's carried state is zeroed between batches")
    ap.add_argument("--json", default=None, help="write the result here")
    a = ap.parse_args()
    if not available():
        sys.exit("PyTorch is not installed: pip install torch==2.13.0")
    kw = dict(H=a.hidden, B=a.batch_size, T=a.seq_len, lr=a.lr, schedule=a.schedule,
              dropout=a.dropout, forget_bias=a.forget_bias, state_reset=a.state_reset)
    if a.ours:
        from ..config import ModelConfig, TrainConfig
        from ..sizing import warmup_for
        mc, tc = ModelConfig(), TrainConfig()
        kw = dict(H=mc.hidden, L=mc.layers, B=tc.batch_size, T=tc.seq_len, lr=tc.lr,
                  schedule=tc.schedule, dropout=mc.dropout, forget_bias=mc.forget_bias,
                  state_reset=tc.state_reset, warmup=warmup_for(mc.hidden))
    r = quality(a.file, a.minutes, **kw)
    print(f"PyTorch LSTM, {r['settings']}: final val {r['final_val']:.4f}, "
          f"best {r['best_val']:.4f} nats/char ({r['best_val'] / math.log(2):.3f} bits) "
          f"after {r['steps']} steps")
    if a.json:
        from charlstm import files
        files.check_output(a.json, "json", option="--json", force=True)
        files.write_json(a.json, {"charlstm": "rival quality", **r}, indent=1)
