"""PyTorch, as the rival we measure against (never a dependency of charlstm).

Written as PyTorch users write it: nn.LSTM / nn.GRU / nn.RNN + Linear +
cross-entropy + Adam + clip_grad_norm_, one-hot input, hidden state carried
(detached) across batches, and sampling one character per Python step.

    python -m charlstm.tools.rival quality FILE --minutes 10          # the reference recipe
    python -m charlstm.tools.rival quality FILE --minutes 10 --ours   # charlstm train's defaults
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from ..data import Batches


def available() -> bool:
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def _net(cell, V, H, L):
    import torch.nn as nn
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
        path costs ~0.9 ms per one-step call, LSTMCell ~0.2 ms)."""
        torch = self.torch
        self.rnn.eval()
        step = self._module_step if loop == "module" else self._make_cell_step()
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
            dropout=0.0, forget_bias=0.0, state_reset=0.0, threads=2, log=print) -> dict:
    """Train the PyTorch LSTM for `minutes` of wall time on FILE (last 10% held
    out); the clock includes evaluation, which follows charlstm train's
    automatic rule (train.auto_eval_due). schedule="cosine" decays lr over the
    minutes as charlstm train does (train.lr_at); state_reset zeroes each
    stream's carried state with that chance between batches, as charlstm
    train's --state-reset does."""
    from ..config import TrainConfig
    from ..data import Batches, load_corpus
    from ..train import auto_eval_due, lr_at
    c = load_corpus(path, 0.1)
    tr = TorchTrainer("lstm", c.V, H, L, B, T, lr=lr, threads=threads, dropout=dropout,
                      forget_bias=forget_bias)
    sched = TrainConfig(lr=lr, schedule=schedule, minutes=minutes)
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
                             dropout=dropout, forget_bias=forget_bias, state_reset=state_reset)}


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
        mc, tc = ModelConfig(), TrainConfig()
        kw = dict(H=mc.hidden, L=mc.layers, B=tc.batch_size, T=tc.seq_len, lr=tc.lr,
                  schedule=tc.schedule, dropout=mc.dropout, forget_bias=mc.forget_bias,
                  state_reset=tc.state_reset)
    r = quality(a.file, a.minutes, **kw)
    print(f"PyTorch LSTM, {r['settings']}: final val {r['final_val']:.4f}, "
          f"best {r['best_val']:.4f} nats/char ({r['best_val'] / math.log(2):.3f} bits) "
          f"after {r['steps']} steps")
    if a.json:
        from charlstm import files
        files.check_output(a.json, "json", option="--json", force=True)
        files.write_json(a.json, {"charlstm": "rival quality", **r}, indent=1)
