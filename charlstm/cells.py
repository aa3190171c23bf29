"""The recurrent cells: one row each, and in that row every fact about a cell
that the rest of charlstm needs (CELLS). Nothing here needs NumPy or Numba,
so the command line reads the table for --help.

Adding a cell takes four things, each in one place (tests/test_cells.py
checks that every row has all four):

    1. its row here;
    2. its kernels, kernels/<row.kernels>.py: <kernels>_step and
       <kernels>_backward, with the arguments every cell's have (see
       kernels/__init__.py), and <kernels>_extra_grad if it has extras;
    3. its forward/backward pair in reference.py (PAIRS);
    4. its names in PyTorch and ONNX, or None, in export.py (NAMES).

kernels/binding.py binds each row to its kernels; the command line's
choices, the model's layout (no Wh without `recurrent`) and initialisation,
the workspace and the carried state (c_width), the time loops and the
sampler (recurrent), inspect's gate names, the ablation, tune's cost
estimate and the default learning rate all read the row.

Notation: the G = gates·H columns of Wx (rows of Wh, entries of b) are the
cell's blocks side by side, H each, in the order `blocks` gives (PyTorch's:
torch.nn.LSTM, nn.GRU, nn.RNN). i input, f forget, o output gate; g the
LSTMs' candidate c~; r reset and z update gate, n the GRU's candidate; a an
RNN's one block, its pre-activation; the min cells' n (the paper's h~) is linear.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    name: str                    # as --cell names it
    doc: str                     # what it is, and its source
    kernels: str                 # its kernel module: kernels/<kernels>.py
    blocks: tuple[str, ...]      # its blocks of H columns, in order
    candidate: str               # the block that makes the new content (tanh; linear in
                                 # the min cells), not a gate
    has_c: bool                  # has a cell state c (long-term memory)
    extras: tuple[str, ...] = ()     # per-unit extra parameters: ex (len(extras), H), by row
    extras_init: str = "zero"    # ex starts at "zero", or "uniform" as a bias does (±1/√H)
    forget: str | None = None    # the gate whose bias starts at +forget_bias (start by remembering)
    output: str | None = None    # the output gate, for a cell whose h = o ⊙ tanh(c)
    identity_init: bool = False  # Wh starts as the identity and b at zero (Le et al. 2015)
    lr: float | None = None      # its default peak learning rate (None: TrainConfig.lr)
    separate_dhp: bool = False   # its backward writes dL/d(h Whᵀ) apart from dxp (the GRU)
    dxp_in_acts: bool = False    # its backward can write dxp over acts (kernels.lstm._same)
    # Whether it has recurrent weights Wh. A cell without (the min cells, Feng et al.
    # 2024: gates from x alone) has no l{l}.Wh in the model's layout, its loops make
    # no product h Whᵀ (gh is left unwritten: its step must not read it), and its
    # backward gives dL/dh_{t−1} directly, element-wise.
    recurrent: bool = True
    # c's columns per unit: its state c is (…, c_width·H). The sLSTM's c holds c, n and
    # m side by side (3H), so that they are carried between batches, saved with a
    # checkpoint and passed through the sampler as every cell's c is.
    c_width: int = 1
    # How a unit's state is held at zero (`charlstm inspect --ablate`,
    # lab/inspect/ablation.py): each (block or extra, how): "shut" a gate (bias -BIG:
    # σ = 0), "open" it (bias +BIG: σ = 1), or "zero" a block's weights and bias
    # (tanh(0) = relu(0) = 0) or an extra.
    held_at_zero: tuple[tuple[str, str], ...] = ()

    @property
    def gates(self) -> int:
        """Blocks of H columns: G = gates · H."""
        return len(self.blocks)

    @property
    def gate_names(self) -> tuple[str, ...]:
        """The blocks whose activations the step keeps in acts, as inspect
        names them; none for an RNN, whose one block is its pre-activation."""
        return self.blocks if len(self.blocks) > 1 else ()

    @property
    def sigmoid_gates(self) -> tuple[str, ...]:
        """The gates that squash with σ, to [0, 1]: every block but the candidate."""
        return tuple(g for g in self.gate_names if g != self.candidate)

    @property
    def n_extra(self) -> int:
        return len(self.extras)

    @property
    def forget_gate(self) -> int:
        """The index of the gate whose bias starts at forget_bias, or -1."""
        return self.blocks.index(self.forget) if self.forget else -1

    @property
    def output_gate(self) -> int:
        """The output gate's index among the gates, for cells whose h = o ⊙ tanh(c);
        -1 for cells without a c."""
        return self.blocks.index(self.output) if self.output else -1

    def flops_per_char(self, hidden: int, layers: int, V: int) -> float:
        """Multiply-adds ×2 per character of one training step, forward and back
        (×3): the recurrent weights G·H×H of every layer (none for a cell that
        is not recurrent), the input weights G·H×H of the layers above the
        first (the first's input is one-hot, a lookup), and the output layer V×H."""
        G, H = self.gates, hidden
        weights = self.recurrent * layers * G * H * H + (layers - 1) * G * H * H + V * H
        return 6.0 * weights


# The rows, in the order the command line lists them. A cell's number (its
# `kind`, by which the compiled loops are indexed) is its place here.
CELLS = {c.name: c for c in (
    Cell(name="lstm", doc="LSTM: gates i, f, o, candidate c~ (Hochreiter & Schmidhuber 1997)",
         kernels="lstm", blocks=("i", "f", "g", "o"), candidate="g", has_c=True,
         forget="f", output="o", dxp_in_acts=True,
         # i shut: nothing written; f shut: nothing kept; and c~ = tanh(0) = 0 besides
         held_at_zero=(("i", "shut"), ("f", "shut"), ("g", "zero"))),
    # The plain RNNs' default rates, measured on tinyshakespeare (1x512, 1600 steps,
    # docs/compare.md): the tanh RNN stops learning at 1e-2 (validation 3.18, unigram
    # level; 3e-3: 1.91, 2e-3: 2.01) and the ReLU RNN overflows at 5e-3 (1e-3: 2.64,
    # still falling).
    Cell(name="rnn", doc="vanilla RNN: h = tanh(x Wx + h Wh + b)",
         kernels="rnn", blocks=("a",), candidate="a", has_c=False, lr=3e-3,
         held_at_zero=(("a", "zero"),)),                 # h = tanh(x Wx + h Whᵀ + b) = 0
    Cell(name="irnn", doc="ReLU RNN, identity-initialised Wh (Le, Jaitly & Hinton 2015)",
         kernels="irnn", blocks=("a",), candidate="a", has_c=False, identity_init=True,
         lr=1e-3, held_at_zero=(("a", "zero"),)),         # h = relu(0) = 0
    Cell(name="lstm-peephole", doc="LSTM with peepholes: gates see c (Gers & Schmidhuber 2000)",
         kernels="peephole", blocks=("i", "f", "g", "o"), candidate="g", has_c=True,
         extras=("p_i", "p_f", "p_o"), forget="f", output="o", dxp_in_acts=True,
         held_at_zero=(("i", "shut"), ("f", "shut"), ("g", "zero"))),   # (as the LSTM)
    Cell(name="cifg", doc="coupled input-forget gate: c = f c + (1-f) c~ (Greff et al. 2017)",
         kernels="cifg", blocks=("f", "g", "o"), candidate="g", has_c=True,
         forget="f", output="o", dxp_in_acts=True,
         # c = f c + (1 - f) c~: f open, c keeps its zero start, and c~ = 0 adds nothing
         held_at_zero=(("f", "open"), ("g", "zero"))),
    # The GRU's update gate z plays the forget gate's part: h = (1 - z) n + z h'.
    Cell(name="gru", doc="GRU (Cho et al. 2014), as torch.nn.GRU",
         kernels="gru", blocks=("r", "z", "n"), candidate="n", has_c=False,
         extras=("b_hn",), extras_init="uniform", forget="z", separate_dhp=True,
         # z open: h keeps its zero start; n = tanh(0 + r·0) = 0, b_hn (inside r ⊙ (…)) too
         held_at_zero=(("z", "open"), ("n", "zero"), ("b_hn", "zero"))),
    # The min cells (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201),
    # run in the paper's sequential mode: every block from x_t alone, no Wh. Their z
    # is the paper's: the share of the new content, h = (1 − z) h' + z n (the GRU's
    # z above is the share kept). n, h~ in the paper, is linear: no tanh.
    Cell(name="mingru", doc="minGRU: z, h~ from x alone, no Wh (Feng et al. 2024)",
         kernels="mingru", blocks=("z", "n"), candidate="n", has_c=False, recurrent=False,
         dxp_in_acts=True,
         held_at_zero=(("n", "zero"),)),     # h = (1 − z) 0 + z ⊙ 0 = 0 whatever z
    # The minLSTM's f and i are normalised, f' = f / (f + i), i' = i / (f + i), and
    # h = f' h' + i' g: f starts at +forget_bias, so that h starts by remembering.
    Cell(name="minlstm", doc="minLSTM: f, i, h~ from x alone, no Wh (Feng et al. 2024)",
         kernels="minlstm", blocks=("f", "i", "g"), candidate="g", has_c=False,
         recurrent=False, forget="f", dxp_in_acts=True,
         held_at_zero=(("g", "zero"),)),     # h = f' 0 + i' ⊙ 0 = 0 whatever f, i
    # The sLSTM's i is exponential (i = exp(ĩ)) and its f a sigmoid, as the paper
    # allows; its state is (h, c, n, m), c_width = 3 (kernels/slstm.py). acts keeps the
    # stabilised i' = exp(ĩ − m) in [0, 1] as its i. h = o ⊙ c / n, not o ⊙ tanh(c):
    # no `output` for sample --clamp, which then holds h.
    Cell(name="slstm", doc="sLSTM: exponential input gate, normaliser n (Beck et al. 2024)",
         kernels="slstm", blocks=("z", "i", "f", "o"), candidate="z", has_c=True, c_width=3,
         forget="f",
         # z = tanh(0) = 0: c = f' c + i' ⊙ 0 keeps its zero start, n > 0, h = o ⊙ 0 / n.
         # (Not i shut: n too would stay 0, and h = 0 / 0.)
         held_at_zero=(("z", "zero"),)),
)}
