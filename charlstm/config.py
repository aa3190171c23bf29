"""Settings: one frozen dataclass for the model, one for training.

The CLI reads its defaults from here, and the checkpoint stores both as JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from .cells import CELLS
from .errors import CharlstmError

CELL_NAMES = tuple(CELLS)       # the cells, as the command line lists them (cells.py)


@dataclass(frozen=True)
class ModelConfig:
    cell: str = "lstm"          # one of CELL_NAMES
    hidden: int = 768           # units per layer (H); train and compare choose it for the
                                # text, budget and machine when not given (sizing.py)
    layers: int = 1             # stacked layers
    dropout: float = 0.5        # between layers and before the output layer (docs/quality.md)
    forget_bias: float = 1.0    # initial forget-gate bias (GRU: update gate z)
    vocab_size: int = 0         # V, set from the training text


@dataclass(frozen=True)
class TrainConfig:
    seq_len: int = 50           # T: truncated BPTT window (50 gives twice 100's updates)
    batch_size: int = 32        # B: parallel streams through the text
    lr: float = 1e-2            # measured against 2e-3 … 1.5e-2 (docs/quality.md)
    schedule: str = "cosine"    # "cosine" decays lr to lr * min_lr_frac over the budget
    min_lr_frac: float = 0.05
    warmup: float = 0.0         # linear warm-up over this share of the budget; without
                                # --warmup, sizing.warmup_for chooses it (docs/sizing.md)
    warmup_steps: int = 0       # or over this many steps, if > 0
    optimizer: str = "adam"     # "adam" or "adagrad"
    clip: float = 5.0           # global gradient-norm clip
    state_reset: float = 0.1    # chance a stream's carried state is zeroed between batches
    val_frac: float = 0.1       # the last part of the text, held out
    rng_seed: int = 1234
    epochs: float = 0.0         # budget: exactly one of epochs, steps, minutes is > 0
    steps: int = 0
    minutes: float = 0.0
    eval_every: int = 0         # steps between validation passes (and checkpoints);
                                # 0: automatic, keeping validation to ~5% of the time
    eval_chars: int = 0         # validate on the first this many held-out chars (0: all)
    dtype: str = "float32"
    text: str = ""              # the training text's absolute path (inspect reads its
                                # held-out part); "" in checkpoints from before it
    text_sha256: str = ""       # its SHA-256: a stored path is read only while the file
                                # there is still that text; "" in checkpoints from before it


# The peak learning rate when --lr is not given: TrainConfig.lr, except for the
# cells whose row in cells.py gives one (the plain RNNs: measured there).
CELL_LR = {name: cell.lr for name, cell in CELLS.items() if cell.lr is not None}


def default_lr(cell: str) -> float:
    return CELL_LR.get(cell, TrainConfig.lr)


DEFAULT_MINUTES = 12.0          # the budget when none is given
PROBE_HIDDEN = 64               # compare --probe: small models, many trainings
PROBE_MINUTES = 12.0            # ... which share this much wall-clock time (README, compare)
AUTO_EVAL_MIN_STEPS = 100       # eval_every=0: validate at most this often...
AUTO_EVAL_SHARE = 0.05          # ...and spend about this share of the time on it


# The range of every setting: one table for the command line (cli/), the
# check of a loaded checkpoint (check_settings) and tune's --space
# entries, so that anything one accepts, the others accept too.
# name: (low, high, low excluded)
LIMITS = {
    "hidden": (1, 8192, False), "layers": (1, 16, False),
    "dropout": (0.0, 0.99, False), "forget_bias": (-1e6, 1e6, False),
    "seq_len": (1, 100_000, False), "batch_size": (1, 65_536, False),
    "lr": (0.0, 1e30, True), "min_lr_frac": (0.0, 1.0, False),
    "warmup": (0.0, 0.5, False), "warmup_steps": (0, 2 ** 40, False),
    "clip": (0.0, 1e30, True),
    "state_reset": (0.0, 1.0, False), "val_frac": (0.0, 0.9, False),
    "rng_seed": (0, 2 ** 63 - 1, False), "epochs": (0.0, 1e9, False),
    "steps": (0, 2 ** 40, False), "minutes": (0.0, 1e9, False),
    "eval_every": (0, 2 ** 40, False), "eval_chars": (0, 2 ** 40, False),
}


def in_limits(name: str, v) -> bool:
    """Whether v is a number of the right kind within LIMITS[name]."""
    low, high, open_low = LIMITS[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(low, int) and not isinstance(v, int):
        return False
    import math
    return math.isfinite(v) and (low < v if open_low else low <= v) and v <= high


def from_dict(cls, d: dict):
    """Rebuild a settings dataclass; unknown keys are errors."""
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise CharlstmError(
            f"unknown {cls.__name__} settings {sorted(unknown)}: this checkpoint was "
            "written by a different charlstm version; retrain or upgrade charlstm")
    return cls(**d)

MAX_VOCAB = 1 << 20               # symbols a vocabulary read from a file may have


def check_settings(m: ModelConfig, t: TrainConfig, vocab: str, path: str) -> None:
    """The settings read from the file at `path` (a checkpoint or an export)
    must describe a model this charlstm can build, for this vocabulary, and a
    run it can resume: every value of the right type and within LIMITS, the
    ranges the command line allows."""
    problems = []
    for obj in (m, t):
        for name in LIMITS:
            if hasattr(obj, name) and not in_limits(name, getattr(obj, name)):
                low, high, _ = LIMITS[name]
                problems.append(f"{name} is {getattr(obj, name)!r}, not a number from {low} "
                                f"to {high}")
    if m.cell not in CELLS:
        problems.append(f"cell is {m.cell!r}, not one of {', '.join(CELLS)}")
    if not isinstance(m.vocab_size, int) or isinstance(m.vocab_size, bool) \
            or not 1 <= m.vocab_size <= MAX_VOCAB:
        problems.append(f"vocab_size is {m.vocab_size!r}, not a whole number from 1 to "
                        f"{MAX_VOCAB}")
    elif m.vocab_size != len(vocab):
        problems.append(f"vocab_size is {m.vocab_size} but the vocabulary has "
                        f"{len(vocab)} symbols")
    for key, options in (("schedule", ("cosine", "constant")), ("optimizer", ("adam", "adagrad")),
                         ("dtype", ("float32", "float64"))):
        if getattr(t, key) not in options:
            problems.append(f"{key} is {getattr(t, key)!r}, not one of {', '.join(options)}")
    for key in ("text", "text_sha256"):
        if not isinstance(getattr(t, key), str):
            problems.append(f"{key} is not a string")
    if problems:
        raise CharlstmError(f"{path} has settings charlstm cannot use: " + "; ".join(problems)
                            + "; retrain or pick another file")

# The precisions sampling can multiply by (model.Model.sampling_packs), the default first.
SAMPLING_WEIGHTS = ("int8", "float16", "float32")
