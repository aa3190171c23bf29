"""The default model: sized for the text, the time budget and this machine.

When the user does not name a size, `charlstm train FILE` chooses the hidden
units (and the dropout and learning rate that go with them) from:

- the budget: minutes (the default), steps or epochs;
- the training text's length;
- this machine's speed: training steps per second of each candidate size,
  timed here for a fraction of a second each, or read from the measurement
  cached for this machine (speeds.json in the cache folder) and scaled to
  one size timed now, so that the load of the moment counts.

The rule (its evidence in docs/sizing.md): with a time budget, the largest
hidden size that will see at least MIN_CHARS training characters in it. A
bigger model learns more from each character but sees fewer of them in the
same time; in a sweep over 1, 3 and 10 minutes and texts of 100 KB to 5 MB,
prose and code, all at batches of 32 × 50, the size that won (or came within
0.03 of the winner) was the largest that still made a few thousand steps:
192 or 256 units in 1 minute, 384 in 3, 768 in 10, on this 2-core machine.
MIN_CHARS is the sweep's threshold of 3,500 such steps. It counts characters,
not steps, so that a window the user chooses does not move the size by
itself: at --seq-len 25 a model makes about 1.7 times the steps, and a count
of steps would choose 1024 units for 10 minutes of tinyshakespeare, which
fell far behind the 768 that the count of characters keeps (1.631 against
1.481 after 6 minutes). With a budget of steps or epochs, which
bounds the data but not the time, the largest size that sees at least
CHARS_PER_WEIGHT characters per weight (Hoffmann et al. 2022 found about 20
tokens per parameter compute-optimal for Transformers; here 3 to 40 won).

Every option the user gives wins, and the rest is still chosen around it:
--hidden 512 alone still gets its dropout and learning rate; --batch-size
64 or --seq-len 25 is timed at its own speed, and the size is the one that
sees enough characters at that speed.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from .config import ModelConfig, TrainConfig

# Hidden sizes the rule chooses from (1 layer, LSTM).
CANDIDATES = (64, 96, 128, 192, 256, 384, 512, 768, 1024)
MIN_CHARS = 3500 * 32 * 50   # a time budget: the largest size seeing this many characters
                             # (3,500 steps of the sweep's 32 × 50; see the docstring)
CHARS_PER_WEIGHT = 10.0      # a budget of steps or epochs: at least this many per weight
SPEED_SECONDS = 0.25         # how long each candidate's speed is timed
SPEED_FILE = "speeds.json"   # in kernels.cache_root(): this machine's speeds
SPEED_HOURS = 24.0           # a timing older than this is timed again (the load it saw has passed)
CHECK_HIDDEN = 256           # the size timed now to scale the cached speeds by (Speeds)
WARMUP_SHARE = 0.04          # the learning rate's warm-up, as a share of the budget, ...
WARMUP_FROM = 768            # ... for models of this many units or more (warmup_for)


def dropout_for(epochs: float) -> float:
    """Dropout for a run that will pass over its text `epochs` times: none
    while the text is seen about once (nothing to memorise yet), up to
    charlstm's long-standing 0.5 for many passes (docs/sizing.md)."""
    if epochs < 1.0:
        return 0.0
    if epochs < 4.0:
        return 0.25
    return 0.5


def warmup_for(hidden: int) -> float:
    """The learning rate's warm-up, as a share of the budget: WARMUP_SHARE
    from WARMUP_FROM units on, else none. Without one, at 1e-2, models of 768
    and 1024 units sometimes sat near the unigram loss for hundreds of steps
    (train loss 3.1-3.3 at step 100, against 2.8 in the runs that started
    well); with 4%, 1×768 in 10 minutes read 0.005-0.036 lower on three
    texts. Below, the warm-up cost up to 0.02 at 1 and 3 minutes (192 and
    256 units), whose starts were never slow (docs/sizing.md)."""
    return WARMUP_SHARE if hidden >= WARMUP_FROM else 0.0


def lr_for(hidden: int, cell: str) -> float:
    """The peak learning rate: config.default_lr (1e-2 for the gated cells)."""
    from .config import default_lr
    return default_lr(cell)


@dataclass(frozen=True)
class Choice:
    model: ModelConfig
    train: TrainConfig
    steps: float              # expected steps in the budget
    chars: float              # expected characters seen (steps x batch x seq-len)
    params: int
    speed_source: str         # "timed here", "cached for this machine", or "" (no timing)
    reason: str               # one line: what was chosen and why

    def line(self) -> str:
        return self.reason


def n_params_of(cell: str, hidden: int, layers: int, V: int) -> int:
    from .model import n_params
    return n_params(ModelConfig(cell=cell, hidden=hidden, layers=layers, vocab_size=V))


# -- speed ------------------------------------------------------------------------

def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), or "" where that cannot be read."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine_key() -> str:
    """This machine, as far as speed goes: the CPU's model name and core count."""
    import platform
    from . import __version__
    name = cpu_name() or platform.processor() or platform.machine()
    return f"{name}|{os.cpu_count()}|{__version__}"


def _speed_path() -> str:
    from .kernels import cache_root
    return os.path.join(cache_root(), SPEED_FILE)


def _config_key(cell, hidden, layers, B, T, V, dropout, threads) -> str:
    return f"{cell}:{layers}x{hidden}:B{B}:T{T}:V{V}:d{int(dropout > 0)}:w{threads}"


def load_speeds(now: float | None = None) -> dict:
    """This machine's speeds timed within SPEED_HOURS: {config key: steps/s}.
    Each is kept with the time it was taken ({"sps", "at"}), so that a timing
    made while the machine was busy is not trusted for ever; an entry of
    another shape is timed again."""
    try:
        with open(_speed_path(), encoding="utf-8") as fh:
            d = json.load(fh)
        mine = d.get(machine_key(), {}) if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}
    now = time.time() if now is None else now
    out = {}
    for k, v in (mine.items() if isinstance(mine, dict) else ()):
        if (isinstance(v, dict) and isinstance(v.get("sps"), (int, float))
                and isinstance(v.get("at"), (int, float)) and v["sps"] > 0
                and 0 <= now - v["at"] < 3600 * SPEED_HOURS):
            out[k] = float(v["sps"])
    return out


def save_speeds(speeds: dict) -> None:
    """Merge this machine's speeds into the cache file (best effort: a speed
    not kept is timed again next time)."""
    path = _speed_path()
    try:
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
        d = d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        d = {}
    mine = d.get(machine_key())
    mine = mine if isinstance(mine, dict) else {}
    now = time.time()
    mine.update({k: {"sps": float(v), "at": now} for k, v in speeds.items()})
    d[machine_key()] = mine
    try:
        from .files import write_json
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, d)
    except OSError:
        pass


def time_steps(corpus, cell, hidden, layers, B, T, dropout, threads,
               seconds: float = SPEED_SECONDS) -> float:
    """Training steps per second of this size here, timed after one untimed
    step (the kernels are compiled already)."""
    from .model import Model
    from .replicas import Replicas
    import numpy as np
    from . import kernels
    from .data import Batches
    cfg = ModelConfig(cell=cell, hidden=hidden, layers=layers, dropout=dropout,
                      vocab_size=corpus.V)
    m = Model(cfg).init(np.random.default_rng(0))
    rep = Replicas(m, T, B, threads)
    batches = Batches(corpus.train, B, T)
    mv = np.zeros_like(m.flat)
    vv = np.zeros_like(m.flat)
    h, c = m.zero_state(B)
    key = 1 if dropout > 0 else None

    def step(k):
        x, y = batches.get(k % batches.n)
        rep.loss(x, y, h, c, key)
        kernels.adam_update(m.flat, m.grad, mv, vv, 1e-3, 0.9, 0.999, 1e-8, k + 1)
    step(0)
    n, t0 = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - t0 < seconds:
        step(n + 1)
        n += 1
    return n / (time.perf_counter() - t0)


class Speeds:
    """Steps per second of candidate sizes: cached ones first, the rest timed.

    A cached speed says how this machine runs each size; how busy it is now
    is another matter. So when the cache holds sizes of this kind, one of
    them (CHECK_HIDDEN when it is cached) is timed now as well, and every cached
    speed is scaled by the ratio: a cache filled while the machine was busy
    does not size the runs of a quiet hour too small, nor the reverse.

    What is kept must stay one measure: a size timed now, beside scaled
    cached ones, is kept divided by the ratio, at the cache's level, and the
    size timed for the ratio is not kept again. (Before, it was kept as timed
    now: a cache filled under load then held one size at the quiet level and
    its neighbours at the busy level: on `pydoc.txt` at 3 minutes the rule
    chose 256 units from a speed of 384 units timed hours before under load,
    18.6 steps a second against about 27 quiet.)"""

    def __init__(self, corpus, B: int, T: int, threads: int | None = None):
        from .replicas import default_workers
        self.corpus, self.B, self.T = corpus, B, T
        self.threads = threads or default_workers()
        self.cached = load_speeds()
        self.new: dict = {}
        self.timed = False                     # a size timed fresh (not only the check)
        self.used = False                      # a cached speed answered
        self.scale: float | None = None        # now against the cache, once checked

    def _key(self, cell, hidden, layers, dropout) -> str:
        return _config_key(cell, hidden, layers, self.B, self.T, self.corpus.V, dropout,
                           self.threads)

    def _time(self, key, cell, hidden, layers, dropout) -> float:
        sps = time_steps(self.corpus, cell, hidden, layers, self.B, self.T, dropout,
                         self.threads)
        self.new[key] = sps
        return sps

    def __call__(self, cell: str, hidden: int, layers: int, dropout: float) -> float:
        key = self._key(cell, hidden, layers, dropout)
        if self.scale is None:
            self._check(cell, hidden, layers, dropout)
        if key in self.new:                         # timed here (perhaps for the ratio)
            return self.new[key]
        if key in self.cached:
            self.used = True
            return self.cached[key] * self.scale
        self.timed = True
        return self._time(key, cell, hidden, layers, dropout)

    def _check(self, cell: str, hidden: int, layers: int, dropout: float) -> None:
        """The ratio of now to the cache, from one size timed now: CHECK_HIDDEN
        if it is cached, else this size, else any other cached size of this
        cell, layers and batch. Taken before this size is timed fresh too, so
        that what is kept joins the cache at its level."""
        for H in (CHECK_HIDDEN, hidden) + CANDIDATES:
            ck = self._key(cell, H, layers, dropout)
            if ck in self.cached:
                self.scale = self._time(ck, cell, H, layers, dropout) / self.cached[ck]
                return

    def source(self) -> str:
        if not self.used:
            return "timed here"
        scaled = (f"scaled ×{self.scale:.2f} to a timing now" if abs(self.scale - 1) >= 0.05
                  else "a timing now agreed")
        return (f"partly timed here, partly cached ({scaled})" if self.timed
                else f"cached for this machine, {scaled}")

    def keep(self) -> None:
        """Keep the sizes timed here, at the level of the cache they join."""
        scale = self.scale or 1.0
        new = {k: v / scale for k, v in self.new.items() if k not in self.cached}
        if new:
            save_speeds(new)


# -- the choice --------------------------------------------------------------------

def choose(corpus, mcfg: ModelConfig, tcfg: TrainConfig, given: set, *,
           speeds: Speeds | None = None, threads: int | None = None) -> Choice:
    """The model for this text and budget: every setting in `given` (option
    names: hidden, layers, dropout, lr, batch_size, seq_len, cell) is the
    user's and kept; the rest is chosen by RULE."""
    from dataclasses import replace
    cell = mcfg.cell
    layers = mcfg.layers if "layers" in given else 1
    B = tcfg.batch_size
    T = tcfg.seq_len
    per_step = B * T
    n_text = len(corpus.train)
    V = corpus.V
    budget_s = 60 * tcfg.minutes if tcfg.minutes else None
    speeds = speeds if speeds is not None else (
        Speeds(corpus, B, T, threads) if budget_s else None)

    def steps_of(hidden, dropout):
        if tcfg.steps:
            return float(tcfg.steps)
        if tcfg.epochs:
            return tcfg.epochs * max(1, (n_text // B - 1) // T)
        return budget_s * speeds(cell, hidden, layers, dropout) * 0.95   # ~5% validating

    if "hidden" in given:
        hidden = mcfg.hidden
    else:
        hidden = CANDIDATES[0]
        for H in CANDIDATES:                       # steps, and chars/param, fall as H grows
            d = mcfg.dropout if "dropout" in given else 0.5
            steps = steps_of(H, d)
            enough = (steps * per_step >= MIN_CHARS if budget_s else
                      steps * per_step / n_params_of(cell, H, layers, V) >= CHARS_PER_WEIGHT)
            if not enough:
                break
            hidden = H
    steps = steps_of(hidden, mcfg.dropout if "dropout" in given else 0.5)
    chars = steps * per_step
    epochs = chars / max(1, n_text)
    dropout = mcfg.dropout if "dropout" in given else dropout_for(epochs)
    lr = tcfg.lr if "lr" in given else lr_for(hidden, cell)
    warmup = tcfg.warmup if "warmup" in given else warmup_for(hidden)
    params = n_params_of(cell, hidden, layers, V)
    model = replace(mcfg, hidden=hidden, layers=layers, dropout=dropout)
    train = replace(tcfg, lr=lr, warmup=warmup)
    src = speeds.source() if speeds is not None and budget_s else ""
    from .words import plural            # compare prints this line: counts read right
    budget = (f"{tcfg.minutes:g} min" if budget_s else plural(tcfg.steps, "step") if tcfg.steps
              else plural(tcfg.epochs, "epoch"))
    what = "" if "hidden" in given else f"; {_given_hint(given)}"
    ratio = chars / params                 # whole above 1, one figure below ("0.2")
    per_weight = plural(float(f"{ratio:.0f}" if ratio >= 0.95 else f"{ratio:.1g}"), "character")
    warm = f" after a {warmup:.0%} warm-up" if warmup else ""
    reason = (f"model: {cell} {layers}×{hidden}, dropout {dropout:g}, lr {lr:g}{warm} (about "
              f"{_round(steps)} step{'' if _round(steps) == '1' else 's'} in {budget} on "
              f"{_mb(n_text)} here, {per_weight} per weight"
              + (f"; speed {src}" if src else "") + what + ")")
    if speeds is not None:
        speeds.keep()
    return Choice(model, train, steps, chars, params, src, reason)


def _given_hint(given: set) -> str:
    return "--hidden to choose"


def _round(x: float) -> str:
    if x >= 1000:
        return f"{round(x, -2):,.0f}"
    return f"{x:,.0f}"


def _mb(n: int) -> str:
    """A text's length for the line: 0.9 MB, 120 KB, 730 characters."""
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.0f} KB" if n >= 1e4 else f"{n:,} characters"


def describe_rule() -> str:
    return (f"the largest hidden size that sees at least {MIN_CHARS / 1e6:g} million characters "
            f"in the time, or "
            f"with a budget of steps, sees at least {CHARS_PER_WEIGHT:g} characters per weight")


def given_options(ctx, names) -> set:
    """The options the user gave on the command line (or through Click's
    environment or default map), by name."""
    from click.core import ParameterSource
    out = set()
    for n in names:
        src = ctx.get_parameter_source(n)
        if src is not None and src is not ParameterSource.DEFAULT:
            out.add(n)
    return out


RULE = describe_rule()
