"""tune's search space: the settings a space may name and their ranges (the
default, a --space file, the options that fix one: requested_space); the
training speed that decides which model sizes fit a trial's budget
(measure_speed, resolve_space); a trial's settings from Optuna's suggestions
(suggest, configs), and those of charlstm train's default (defaults_params)."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

from ...cells import CELLS
from ...config import CELL_NAMES, ModelConfig, TrainConfig
from ...errors import CharlstmError

# The settings a space may name, and where each one goes.
MODEL_KEYS = ("cell", "hidden", "layers", "dropout", "forget_bias")
TRAIN_KEYS = ("lr", "seq_len", "batch_size", "clip", "state_reset", "optimizer", "schedule")
INT_KEYS = ("hidden", "layers", "seq_len", "batch_size")
STR_KEYS = {"cell": CELL_NAMES, "optimizer": ("adam", "adagrad"),
            "schedule": ("cosine", "constant")}

# The default space. Ranges: the sizes and rates the team tried by hand on
# tinyshakespeare (docs/quality.md), widened on both sides. The plain RNNs
# are left out (they lose to every gated cell there: docs/compare.md); name
# them with --cell or in a space file.
DEFAULT_SPACE = {
    "cell": ["lstm", "gru", "cifg"],
    "hidden": [64, 96, 128, 192, 256, 384, 512, 768, 1024],   # sizing.CANDIDATES
    "layers": [1, 2, 3],
    "dropout": {"low": 0.0, "high": 0.6, "step": 0.05},
    "lr": {"low": 5e-4, "high": 3e-2, "log": True},
    "seq_len": [25, 50, 100, 200],
    "batch_size": [16, 32, 64, 128],
}


# A model size fits the budget when it can take at least this many steps of
# charlstm train's default batch (32 x 50) in one trial, at the measured speed.
MIN_TRIAL_STEPS = 200


def _entry(name: str, v, where: str) -> dict:
    """One setting of a space, normalised to {"value": x} (fixed),
    {"choices": [...]}, or {"low", "high", "log", "step"} (a range)."""
    def bad(why):
        return CharlstmError(f"{where}: {name}: {why}")

    def check(x):
        if name in STR_KEYS:
            if x not in STR_KEYS[name]:
                raise bad(f"{x!r} is not one of {', '.join(STR_KEYS[name])}")
            return x
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise bad(f"{x!r} is not a number")
        if name in INT_KEYS:
            from ...config import LIMITS
            low, high, _ = LIMITS[name]
            if x != int(x) or not low <= x <= high:
                raise bad(f"{x!r} is not a whole number from {low} to {high}, the range "
                          "charlstm train takes")
            return int(x)
        from ...config import LIMITS, in_limits
        if name in LIMITS and not in_limits(name, float(x)):
            low, high, open_low = LIMITS[name]
            raise bad(f"{x!r} is outside {'(' if open_low else '['}{low}, {high}], the range "
                      "charlstm train takes")
        return float(x)

    if isinstance(v, list):
        if not v:
            raise bad("an empty list; give at least one value")
        choices = [check(x) for x in v]
        if len(set(choices)) != len(choices):
            raise bad("a value is listed twice")
        return {"choices": choices} if len(choices) > 1 else {"value": choices[0]}
    if isinstance(v, dict):
        if name in STR_KEYS or name in ("hidden", "layers"):
            raise bad("give a list of values (a range is for numbers such as lr or seq_len)")
        extra = set(v) - {"low", "high", "log", "step"}
        if extra or not {"low", "high"} <= set(v):
            raise bad('a range is {"low": a, "high": b}, with "log": true or "step": s '
                      "if wanted")
        low, high = check(v["low"]), check(v["high"])
        if not low < high:
            raise bad(f"low {low} is not below high {high}")
        log = v.get("log", False)
        if not isinstance(log, bool):
            raise bad(f'"log" is {log!r}; give true or false')
        if log and low <= 0:
            raise bad(f'a log range must start above 0, not at {low}')
        step = v.get("step")
        if step is not None:
            if log:
                raise bad('"log" and "step" cannot be combined')
            if isinstance(step, bool) or not isinstance(step, (int, float)) \
                    or not math.isfinite(step) or not step > 0:
                raise bad(f'"step" {step!r} is not a number above 0')
            if name in INT_KEYS and step != int(step):
                raise bad(f'"step" {step!r} is not a whole number ({name} is one)')
            if step > high - low:
                raise bad(f'"step" {step} is larger than the range {low} to {high}')
        e = {"low": low, "high": high, "log": log}
        if step is not None:
            e["step"] = int(step) if name in INT_KEYS else float(step)
        return e
    return {"value": check(v)}


MAX_SPACE_BYTES = 1 << 20


def load_space_file(path: str) -> dict:
    """A space of the user's own: JSON, or TOML (.toml), mapping setting names
    (as the options spell them, seq-len or seq_len) to a value, a list of
    values or a range {"low": a, "high": b, "log": true}."""
    from ...file_kinds import sniff
    try:
        if os.path.getsize(path) > MAX_SPACE_BYTES:
            raise CharlstmError(f"--space {path} is {sniff(path)} of "
                                f"{os.path.getsize(path):,} bytes, not a search space (a few "
                                "lines of JSON or TOML)")
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        raise CharlstmError(f"--space {path}: {os.strerror(e.errno).lower()}") from None
    try:
        if path.endswith(".toml"):
            try:
                import tomllib
            except ImportError:
                raise CharlstmError(f"--space {path}: reading TOML needs Python 3.11 or later; "
                                    "write the space as JSON instead") from None
            try:
                d = tomllib.loads(raw.decode("utf-8"))
            except RecursionError:
                raise ValueError("nested too deeply") from None
        else:
            from ...file_kinds import loads
            d = loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        kind = "TOML" if path.endswith(".toml") else "JSON"
        what = sniff(path)
        if what not in ("a text file", "a JSON file"):
            raise CharlstmError(f"--space {path} is {what}, not a search space in {kind}; give "
                                'a file such as {"cell": ["lstm", "gru"]}') from None
        raise CharlstmError(f"--space {path} is not valid {kind}: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(d, dict):
        raise CharlstmError(f"--space {path}: expected a table of settings, e.g. "
                            '{"cell": ["lstm", "gru"], "lr": {"low": 0.001, "high": 0.02}}')
    return d


def requested_space(user: dict | None, fixed: dict, where: str = "--space") -> dict:
    """The default space, with a space file's entries over it and the fixing
    options (--cell lstm, ...) over both; every entry normalised."""
    space = {k: _entry(k, v, "default space") for k, v in DEFAULT_SPACE.items()}
    for k, v in (user or {}).items():
        key = k.replace("-", "_")
        if key not in MODEL_KEYS + TRAIN_KEYS:
            raise CharlstmError(f"{where}: unknown setting {k!r}; a space may name "
                                f"{', '.join(MODEL_KEYS + TRAIN_KEYS)}")
        space[key] = _entry(key, v, where)
    for k, v in fixed.items():
        space[k] = _entry(k, v, f"--{k.replace('_', '-')}")
    return space


def flops_per_char(cell: str, hidden: int, layers: int, V: int) -> float:
    """The work of a character of training (Cell.flops_per_char)."""
    return CELLS[cell].flops_per_char(hidden, layers, V)


@dataclass(frozen=True)
class Speed:
    """A measured training speed, from which other sizes' are estimated: the
    kernels run near a fixed rate of floating-point work once a model is big
    enough to matter (docs/performance.md), so the chars/s of a size is
    flops_rate / flops_per_char."""
    flops_rate: float           # FLOP/s of one trial, measured at 1x512
    threads: int

    def chars_per_s(self, cell: str, hidden: int, layers: int, V: int) -> float:
        return self.flops_rate / flops_per_char(cell, hidden, layers, V)


def steps_per_s(text: str, mcfg: ModelConfig, threads: int, seconds: float,
                corpus=None, warm: int = 1, batch_size: int = TrainConfig.batch_size,
                seq_len: int = TrainConfig.seq_len) -> float:
    """Training steps per second of mcfg at batch_size x seq_len (default:
    charlstm train's) on `threads` threads, timed for `seconds` (and at least
    3 steps) after `warm` untimed ones."""
    from ...train import Trainer
    tr = Trainer(text, mcfg, TrainConfig(steps=10 ** 9, eval_every=10 ** 9,
                                         batch_size=batch_size, seq_len=seq_len), os.devnull,
                 progress=False, log=lambda m: None, corpus=corpus, workers=threads)
    for _ in range(warm):
        tr.step()
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        tr.step()
        n += 1
    return n / (time.perf_counter() - t0)


def measure_speed(text: str, corpus, threads: int, seconds: float = 1.5) -> Speed | None:
    """The rate of floating-point work of an LSTM 1x512 trial on `threads`
    threads (the kernels are compiled already), timed at charlstm train's
    batch, or a smaller one that a short text holds; None for a text too
    short for any."""
    B, T = TrainConfig.batch_size, TrainConfig.seq_len
    while B > 1 and B * (T + 1) > len(corpus.train):
        B //= 2
    while T > 1 and B * (T + 1) > len(corpus.train):
        T //= 2
    if B * (T + 1) > len(corpus.train):
        return None
    cps = steps_per_s(text, ModelConfig(cell="lstm", hidden=512, layers=1), threads, seconds,
                      corpus, batch_size=B, seq_len=T) * T * B
    return Speed(cps * flops_per_char("lstm", 512, 1, corpus.V), threads)


def resolve_space(space: dict, speed: Speed | None, minutes: float, V: int, n_train: int,
                  log=lambda m: None) -> dict:
    """The space the study searches: hidden and layers become one setting,
    `size` ("LxH"), whose choices are the sizes that fit the budget (at least
    MIN_TRIAL_STEPS steps of 32 x 50 at the measured speed, for the slowest
    cell in the space); batch sizes and seq-lens that cannot make one batch
    of the training text are dropped."""
    space = dict(space)
    hid, lay = space.pop("hidden"), space.pop("layers")
    hiddens = hid.get("choices") or [hid["value"]]
    layerss = lay.get("choices") or [lay["value"]]
    cells = space["cell"].get("choices") or [space["cell"]["value"]]
    def slowest(H, L):      # the most work per character at this size
        return max(cells, key=lambda c: flops_per_char(c, H, L, V))
    sizes = [(f"{L}x{H}", math.inf if speed is None else
              60 * minutes * speed.chars_per_s(slowest(H, L), H, L, V) / (32 * 50))
             for L in sorted(layerss) for H in sorted(hiddens)]
    kept = [size for size, steps in sizes if steps >= MIN_TRIAL_STEPS]
    dropped = [(size, steps) for size, steps in sizes if steps < MIN_TRIAL_STEPS]
    if dropped:
        log(f"left out, too slow for {minutes:g}-minute trials (estimated steps of 32x50 "
            f"for the slowest of {', '.join(cells)}; at least {MIN_TRIAL_STEPS} wanted): "
            + ", ".join(f"{size} ({steps:.0f})" for size, steps in dropped))
    if not kept:
        raise CharlstmError(
            f"no model size in the space fits {minutes:g}-minute trials (the smallest, "
            f"{dropped[0][0]}, makes about {dropped[0][1]:.0f} steps); give a longer "
            "--trial-minutes or smaller --hidden / --layers")
    space["size"] = {"choices": kept} if len(kept) > 1 else {"value": kept[0]}

    def least(e):
        return min(e["choices"]) if "choices" in e else e.get("value", e.get("low"))
    for key in ("batch_size", "seq_len"):           # a batch takes B x (T + 1) characters
        e = space[key]
        if "choices" not in e:
            continue
        if key == "batch_size":
            fit = [B for B in e["choices"] if B * (least(space["seq_len"]) + 1) <= n_train]
        else:
            fit = [T for T in e["choices"] if least(space["batch_size"]) * (T + 1) <= n_train]
        if len(fit) < len(e["choices"]):
            log(f"left out, too large for the training text ({n_train:,} characters): "
                f"{key.replace('_', '-')} "
                + ", ".join(str(v) for v in e["choices"] if v not in fit))
        if not fit:
            raise CharlstmError(f"the training text ({n_train:,} characters) is too short "
                                "for any batch of the space; use a longer text")
        space[key] = {"choices": fit} if len(fit) > 1 else {"value": fit[0]}
    return dict(sorted(space.items()))


def expected_steps(spec: dict, settings: dict, V: int) -> float | None:
    """The steps a trial of these settings should make in its budget, at the
    speed measured when the study began (None for a study without one)."""
    if not spec.get("flops_rate"):
        return None
    cps = Speed(spec["flops_rate"], 0).chars_per_s(settings["cell"], settings["hidden"],
                                                    settings["layers"], V)
    return 60 * spec["trial_minutes"] * cps / (settings["batch_size"] * settings["seq_len"])


def round_lr(lr: float) -> float:
    """Learning rates are tried at two significant digits, so that the printed
    command gives exactly the rate the trial used."""
    return float(f"{lr:.2g}")


def suggest(trial, space: dict) -> dict:
    """The trial's settings: Optuna suggests every entry that is not fixed."""
    s = {}
    for name, e in space.items():
        if "value" in e:
            v = e["value"]
        elif "choices" in e:
            v = trial.suggest_categorical(name, e["choices"])
        elif name in INT_KEYS:
            v = trial.suggest_int(name, e["low"], e["high"], log=e["log"], step=e.get("step", 1))
        else:
            v = trial.suggest_float(name, e["low"], e["high"], log=e["log"], step=e.get("step"))
        if name == "lr":
            v = round_lr(v)
        elif name == "dropout":
            v = round(v, 6)
        s[name] = v
    layers, hidden = (int(x) for x in s.pop("size").split("x"))
    return dict(s, layers=layers, hidden=hidden)


def configs(settings: dict, minutes: float) -> tuple[ModelConfig, TrainConfig]:
    """charlstm train's settings for a trial: its own, the rest train's defaults."""
    m = {k: settings[k] for k in MODEL_KEYS if k in settings}
    t = {k: settings[k] for k in TRAIN_KEYS if k in settings}
    if "lr" not in t:
        from ...config import default_lr
        t["lr"] = default_lr(m.get("cell", ModelConfig.cell))
    from ...sizing import warmup_for                # as charlstm train chooses it
    t["warmup"] = warmup_for(m.get("hidden", ModelConfig.hidden))
    return ModelConfig(**m), TrainConfig(**t, minutes=minutes)


def defaults_params(space: dict, M: ModelConfig | None = None,
                    T: TrainConfig | None = None) -> dict | None:
    """The Optuna params that make charlstm train's defaults (M, T: the model
    sizing.choose gives for the trial budget), or None when they are outside
    the space (a fixed setting differs, a size is left out)."""
    M, T = M or ModelConfig(), T or TrainConfig()
    want = {k: getattr(M, k) for k in MODEL_KEYS} | {k: getattr(T, k) for k in TRAIN_KEYS}
    want["size"] = f"{want.pop('layers')}x{want.pop('hidden')}"
    params = {}
    for name, e in space.items():
        v = want[name]
        if "value" in e:
            if e["value"] != v:
                return None
        elif "choices" in e:
            if v not in e["choices"]:
                return None
            params[name] = v
        else:
            if not e["low"] <= v <= e["high"]:
                return None
            params[name] = v
    return params
