"""The recurrent cells. Each is a step/backward kernel pair in charlstm/kernels/
(one module a cell family) plus the few facts the model needs about it. Adding
a cell means adding its kernels, its step in kernels/recurrence.py's STEPS
(its number is its place there), and one entry here; the training loop does not change."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import kernels as K
from .config import CELL_NAMES


@dataclass(frozen=True)
class Cell:
    name: str
    kind: int            # its number: its place in kernels.STEPS
    gates: int           # G = gates * H columns in Wx, Wh, b
    has_c: bool          # has a cell state c (long-term memory)
    n_extra: int         # rows of per-unit extra parameters ex (k, H)
    separate_dhp: bool   # backward writes dhp apart from dxp (GRU)
    dxp_in_acts: bool    # backward can write dxp over acts (kernels._same)
    step: Callable       # one forward time step (run by kernels.forward, forward_onehot)
    backward: Callable
    forget_gate: int     # index of the gate whose bias starts at forget_bias, or -1
    doc: str

    @property
    def output_gate(self) -> int:
        """The output gate's index among the gates, for cells whose h = o ⊙ tanh(c);
        -1 for cells without a c."""
        return {"lstm": 3, "lstm-peephole": 3, "cifg": 2}.get(self.name, -1)

    def extra_grad(self, dex, dxp, dhp, hs, cs):
        """Gradient of the extra parameters, summed over time and streams."""
        H = dex.shape[1]
        if self.name == "lstm-peephole":   # p_i, p_f see c_{t-1}; p_o sees c_t
            dex[0] += np.einsum("tbh,tbh->h", dxp[:, :, 0:H], cs[:-1])
            dex[1] += np.einsum("tbh,tbh->h", dxp[:, :, H:2 * H], cs[:-1])
            dex[2] += np.einsum("tbh,tbh->h", dxp[:, :, 3 * H:4 * H], cs[1:])
        elif self.name == "gru":           # b_hn sits inside r ⊙ (h Wh_n + b_hn)
            dex[0] += dhp[:, :, 2 * H:].sum(axis=(0, 1))


def _cells(*cells: Cell) -> dict[str, Cell]:
    return {c.name: c for c in cells}


CELLS = _cells(
    Cell(name="lstm", kind=K.LSTM, gates=4, has_c=True, n_extra=0, separate_dhp=False,
         dxp_in_acts=True, step=K.lstm_step, backward=K.lstm_backward, forget_gate=1,
         doc="LSTM: gates i, f, o, candidate c~ (Hochreiter & Schmidhuber 1997)"),
    Cell(name="lstm-peephole", kind=K.PEEPHOLE, gates=4, has_c=True, n_extra=3,
         separate_dhp=False, dxp_in_acts=True, step=K.peephole_step,
         backward=K.peephole_backward, forget_gate=1,
         doc="LSTM with peepholes: gates see c (Gers & Schmidhuber 2000)"),
    Cell(name="cifg", kind=K.CIFG, gates=3, has_c=True, n_extra=0, separate_dhp=False,
         dxp_in_acts=True, step=K.cifg_step, backward=K.cifg_backward, forget_gate=0,
         doc="coupled input-forget gate: c = f c + (1-f) c~ (Greff et al. 2017)"),
    Cell(name="gru", kind=K.GRU, gates=3, has_c=False, n_extra=1, separate_dhp=True,
         dxp_in_acts=False, step=K.gru_step, backward=K.gru_backward, forget_gate=1,
         doc="GRU (Cho et al. 2014), as torch.nn.GRU"),
    Cell(name="rnn", kind=K.RNN, gates=1, has_c=False, n_extra=0, separate_dhp=False,
         dxp_in_acts=False, step=K.rnn_step, backward=K.rnn_backward, forget_gate=-1,
         doc="vanilla RNN: h = tanh(x Wx + h Wh + b)"),
    Cell(name="irnn", kind=K.IRNN, gates=1, has_c=False, n_extra=0, separate_dhp=False,
         dxp_in_acts=False, step=K.irnn_step, backward=K.irnn_backward, forget_gate=-1,
         doc="ReLU RNN, identity-initialised Wh (Le, Jaitly & Hinton 2015)"),
)
assert tuple(sorted(CELLS)) == tuple(sorted(CELL_NAMES)), "config.CELL_NAMES names every cell"
