"""charlstm tune: a search for the training settings that suit one text and
one time budget, run on Optuna (Akiba et al. 2019).

Each trial trains a model with `charlstm train`'s Trainer for the same number
of minutes (--trial-minutes, the budget the user means to train for) and is
scored by its best validation loss. The pieces:

- the search space (`Space`): the settings, their ranges, and the model sizes
  dropped up front because they cannot make enough steps in the budget;
- the study: Optuna's journal file in the run folder by default, or any
  database Optuna's RDBStorage takes (--storage), where every worker on every
  machine adds its trials and reads everyone else's;
- the workers (`worker_main`): processes of their own, each with its share of
  the cores, each asking the study for a trial, training it, and telling the
  study the result. Optuna's TPE sampler proposes the settings and its median
  pruner stops a trial whose loss is worse than the median of the finished
  trials at the same point of their budget (Trainer.stop_when is the hook);
- the parent (`run_tune`): starts the workers, shows a bar over the trials,
  and stops the workers cleanly on Ctrl-C. Nothing is lost but the trials
  that were running; the next run of the same command trains those again.

tune_report.py turns the study into the table, the command, the JSON and the
PNG.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass

from .cells import CELLS
from .config import CELL_NAMES, ModelConfig, TrainConfig
from .errors import CharlstmError

# -- the search space -------------------------------------------------------

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
            from .config import LIMITS
            low, high, _ = LIMITS[name]
            if x != int(x) or not low <= x <= high:
                raise bad(f"{x!r} is not a whole number from {low} to {high}, the range "
                          "charlstm train takes")
            return int(x)
        from .config import LIMITS, in_limits
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
    from .files import sniff
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
            from .files import loads
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
    from .train import Trainer
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
    slowest = max(cells, key=lambda c: CELLS[c].gates)
    sizes = [(f"{L}x{H}", math.inf if speed is None else
              60 * minutes * speed.chars_per_s(slowest, H, L, V) / (32 * 50))
             for L in sorted(layerss) for H in sorted(hiddens)]
    kept = [size for size, steps in sizes if steps >= MIN_TRIAL_STEPS]
    dropped = [(size, steps) for size, steps in sizes if steps < MIN_TRIAL_STEPS]
    if dropped:
        log(f"left out, too slow for {minutes:g}-minute trials (estimated steps of 32x50 "
            f"for {slowest}; at least {MIN_TRIAL_STEPS} wanted): "
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
        from .config import default_lr
        t["lr"] = default_lr(m.get("cell", ModelConfig.cell))
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


# -- the study --------------------------------------------------------------

HOST = socket.gethostname()
HEARTBEAT_S = 20.0          # a running trial's worker says it is alive this often
LOST_AFTER_S = 300.0        # ... and a trial not heard of for this long is lost
PRUNE_FROM_PCT = 30         # trials are pruned from 30% of their budget...
PRUNE_UNTIL_PCT = 70        # ...to 70%: later there is little time to save, and a trial
                            # near the best was seen pruned at 90% against two others
PRUNE_MIN_TRIALS = 3        # the median of at least three finished trials at that point
STATES_DONE = ("COMPLETE", "PRUNED")


def need_optuna():
    try:
        import optuna
    except ImportError:
        from .errors import install_hint
        raise CharlstmError("charlstm tune needs Optuna, an optional extra: install it with "
                            f"{install_hint('tune')}") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


SECRET_KEYS = ("password", "passwd", "pwd", "secret", "token", "sslpassword", "sslkey",
               "api_key", "apikey", "key")


def redact(url: str) -> str:
    """A storage URL without its secrets, for messages and reports: the
    password of user:password@host (one holding an unescaped '@' or '/'
    included: the host is what follows the last '@') and the values of
    password=, token=, ... in its query."""
    from urllib.parse import parse_qsl, urlencode
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    if "@" in rest:
        cred, after = rest.rsplit("@", 1)
        rest = f"{cred.split(':', 1)[0]}:***@{after}" if ":" in cred else rest
    if "?" in rest:
        base, query = rest.split("?", 1)
        frag = ""
        if "#" in query:
            query, frag = query.split("#", 1)
            frag = "#" + frag
        pairs = [(k, "***" if k.lower() in SECRET_KEYS else v)
                 for k, v in parse_qsl(query, keep_blank_values=True)]
        rest = f"{base}?{urlencode(pairs, safe='*')}{frag}"
    return f"{scheme}://{rest}"


def scrub(message: str, url: str | None) -> str:
    """A message with every secret of url (and url itself) replaced by its
    redacted form: database drivers quote the URL or its parts in errors."""
    if not url or "://" not in url:
        return message
    from urllib.parse import parse_qsl, unquote, urlsplit
    message = message.replace(url, redact(url))
    secrets = []
    rest = url.split("://", 1)[1]
    if "@" in rest:
        cred = rest.rsplit("@", 1)[0]
        if ":" in cred:
            secrets.append(cred.split(":", 1)[1])
    try:
        secrets += [v for k, v in parse_qsl(urlsplit(url).query) if k.lower() in SECRET_KEYS]
    except ValueError:
        pass
    import re
    parts = {x for s in secrets for x in (s, unquote(s))}
    parts |= {p for x in list(parts) for p in re.split(r"[@:/?#&]", x)}  # a driver that cut
    for sec in sorted((x for x in parts if len(x) >= 3), key=len, reverse=True):  # the URL
        message = message.replace(sec, "***")                    # at an '@' quotes a piece
    return message


def _with_driver(url: str) -> str:
    """postgresql://… goes through psycopg (version 3, in the tune extra)
    unless psycopg2 is installed, which SQLAlchemy would pick by default."""
    if url.startswith(("postgresql://", "postgres://")):
        import importlib.util
        if importlib.util.find_spec("psycopg2") is None:
            return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@contextlib.contextmanager
def reading_study(url: str | None, run_dir: str):
    """Errors of Optuna reading a study's storage (a damaged or crafted
    journal, a database of another Optuna version) as one line."""
    try:
        yield
    except CharlstmError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, RecursionError) as e:
        where = redact(url) if url else os.path.join(run_dir, "study.log")
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CharlstmError(scrub(f"the study in {where} does not read ({type(e).__name__}"
                                  + (f": {first}" if first else "") + "); it is damaged or "
                                  "was not written by charlstm tune: give another --out-dir "
                                  "or --storage", url)) from None


def check_storage(url: str | None, run_dir: str, inputs: dict) -> None:
    """Up front, under files.check_output's rules: a journal file (the run
    folder's, or one named by --storage) or an SQLite file is a tune study's
    own or new; never the training text or any other file."""
    from . import files
    if url is None or "://" not in url:
        path = url or os.path.join(run_dir, "study.log")
        own = url is None and os.path.isfile(path) and os.path.getsize(path) == 0
        if not own:                              # (an empty journal of our own run folder:
            files.check_output(path, "journal",  # its creation was cut short)
                               option="--storage" if url else "--out-dir",
                               inputs=inputs, continuing=True)
    elif re.match(r"sqlite(\+\w+)?:///", url, re.I):        # sqlite, sqlite+pysqlite, ...
        path = url.split(":///", 1)[1].split("?", 1)[0]
        if path and path != ":memory:":
            files.check_output(path, "sqlite", option="--storage", inputs=inputs,
                               continuing=True)


def open_storage(url: str | None, run_dir: str):
    """Optuna's storage: a journal file in the run folder (no server needed;
    processes on this machine share it through a lock file), another journal
    file named by a path, or a database URL (postgresql://, mysql://,
    sqlite:///) through SQLAlchemy. check_storage has checked it."""
    optuna = need_optuna()
    if url is None or "://" not in url:
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        path = url or os.path.join(run_dir, "study.log")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            with reading_study(url, run_dir):       # the journal is replayed here
                return JournalStorage(JournalFileBackend(path))
        except OSError as e:
            raise CharlstmError(f"cannot open the study's journal {path}: "
                                f"{os.strerror(e.errno).lower() if e.errno else e}") from None
        except (ValueError, UnicodeDecodeError) as e:
            from .files import sniff
            raise CharlstmError(f"--storage {path} is {sniff(path)}, not a tune study's "
                                f"journal ({type(e).__name__}); give another") from None
    try:
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(_with_driver(url),
                                                  engine_kwargs={"pool_pre_ping": True})
            except Exception as e:
                # Two workers meeting a new database both create Optuna's tables;
                # the second one's CREATE fails (duplicate key, already exists).
                # Once the first has made them, they are there to use.
                racing = "IntegrityError" in type(e).__name__ or "already exists" in str(e) \
                    or "UniqueViolation" in str(e)
                if not racing or attempt == 4:
                    raise
                time.sleep(0.5 + attempt)
    except ImportError as e:
        from .errors import install_hint
        raise CharlstmError(scrub(f"--storage {redact(url)}: the database driver is missing "
                                  f"({e}); for PostgreSQL, {install_hint('tune')} installs "
                                  "psycopg; for MySQL, pip install pymysql and give "
                                  "mysql+pymysql://", url)) from None
    except Exception as e:                       # sqlalchemy's errors, bad URLs
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        rest = url.split("://", 1)[1]
        hint = ("; write an '@', ':' or '/' in a password percent-encoded (%40, %3A, %2F)"
                if rest.count("@") > 1 else "")
        raise CharlstmError(scrub(f"cannot open the study at --storage {redact(url)}: {first}"
                                  + hint, url)) from None


def _sampler(seed: int | None = None):
    optuna = need_optuna()
    # constant_liar: a trial still running counts as a poor result, so that
    # parallel workers do not all try the same corner of the space.
    return optuna.samplers.TPESampler(n_startup_trials=5, multivariate=True,
                                      constant_liar=True, seed=seed)


def _pruner():
    optuna = need_optuna()
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=PRUNE_FROM_PCT,
                                       n_min_trials=PRUNE_MIN_TRIALS)


def open_study(storage, name: str, settings: dict | None = None, log=lambda m: None):
    """Load or create the study. `settings` (the text's digest, the trial
    budget, the space asked for and the space resolved) is stored with a new
    study; an existing one must have been asked for with the same, or the
    trials would not be comparable. Returns (study, its stored settings)."""
    optuna = need_optuna()
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize",
                                    sampler=_sampler(), pruner=_pruner(), load_if_exists=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CharlstmError(f"cannot open study {name!r}: {first}") from None
    saved = study.user_attrs.get("charlstm")
    for _ in range(50):                    # another worker is creating it: its settings
        if saved is not None or settings is not None:   # follow in a moment
            break
        time.sleep(0.1)
        saved = optuna.load_study(study_name=name, storage=storage).user_attrs.get("charlstm")
    if saved is None and settings is not None:
        study.set_user_attr("charlstm", settings)
        time.sleep(0.2)                    # two workers creating it at once: the last wins,
        saved = optuna.load_study(study_name=name, storage=storage).user_attrs["charlstm"]
    if saved is None:
        raise CharlstmError(f"study {name!r} was not made by charlstm tune")
    if settings is not None:
        check_same(saved, settings, name)
    return study, saved


def check_same(saved: dict, asked: dict, name: str) -> None:
    why = []
    if saved["text_sha256"] != asked["text_sha256"]:
        why.append(f"it searches another text ({saved['text_chars']:,} characters, sha256 "
                   f"{saved['text_sha256'][:12]}…)")
    if saved["trial_minutes"] != asked["trial_minutes"]:
        why.append(f"its trials have {saved['trial_minutes']:g} minutes, not "
                   f"{asked['trial_minutes']:g}")
    if saved["val_frac"] != asked["val_frac"]:
        why.append(f"it holds out {saved['val_frac']:g} of the text, not {asked['val_frac']:g}")
    if saved["requested"] != asked["requested"]:
        diff = sorted(k for k in set(saved["requested"]) | set(asked["requested"])
                      if saved["requested"].get(k) != asked["requested"].get(k))
        why.append("its space differs in " + ", ".join(diff))
    if why:
        raise CharlstmError(f"study {name!r} was begun with other settings: " + "; ".join(why)
                            + ". Run the command it was begun with to go on, or give a new "
                            "--study name (or --out-dir, for the local study)")


def trial_kind(t) -> str:
    """'complete', 'pruned', 'running', 'waiting', 'diverged' (complete, with
    the loss of its last finite model, so that the sampler learns from it), or
    why a failed trial failed: 'interrupted', 'lost', 'withdrawn', 'failed'."""
    state = t.state.name
    if state == "COMPLETE" and t.user_attrs.get("diverged"):
        return "diverged"
    if state == "FAIL":
        for why in ("withdrawn", "interrupted", "lost", "diverged"):
            if t.user_attrs.get(why):
                return why
        return "failed"
    return state.lower()


def retry_missing(study, log=lambda m: None) -> list[int]:
    """Queue again, with the same settings, every trial that was interrupted or
    lost and has not been queued again already. Returns their numbers."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    again = [t for t in trials if trial_kind(t) in ("interrupted", "lost")
             and t.number not in retried and t.params]
    for t in again:
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number,
                                                   "queued_as": f"retry:{t.number}"})
    if again:
        log("trained again, as they were cut short: trial "
            + ", ".join(str(t.number) for t in again))
    return [t.number for t in again]


def fail_lost(study, now: float | None = None) -> list[int]:
    """Mark failed (as 'lost') every running trial whose worker is gone: a
    process of this machine that no longer runs, or any worker not heard
    from for LOST_AFTER_S (killed with -9, or its machine went down)."""
    from .files import _alive
    now = time.time() if now is None else now
    storage = study._storage
    lost = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name != "RUNNING":
            continue
        w = t.system_attrs.get("charlstm:worker")
        if w is None:
            start = t.datetime_start.timestamp() if t.datetime_start else now
            gone = now - start > LOST_AFTER_S
        else:
            gone = ((w["host"] == HOST and not _alive(w["pid"]))
                    or now - w["alive"] > LOST_AFTER_S)
        if gone:
            try:
                storage.set_trial_user_attr(t._trial_id, "lost", True)
                storage.set_trial_state_values(t._trial_id, need_optuna().trial.TrialState.FAIL)
                lost.append(t.number)
            except Exception:          # finished in the meantime, or another worker did it
                pass
    return lost


def claim(study, trial, target: int | None) -> str | None:
    """Whether a trial just asked for may run; else why not. Optuna numbers
    trials in the order they were asked for, whoever asked, so the trials that
    count are the finished ones and the running ones asked for before this
    one: once `target` of them exist, this one is surplus. A queued trial
    (the defaults, a retry) popped twice by two workers runs once: the one
    asked for first."""
    trials = study.get_trials(deepcopy=False)
    me = trial.number
    key = trial.user_attrs.get("queued_as")
    if key and any(t.number < me and t.user_attrs.get("queued_as") == key
                   and trial_kind(t) != "withdrawn" for t in trials):
        return "duplicate"
    if target is not None:
        ahead = sum(1 for t in trials if t.number != me and (
            t.state.name in STATES_DONE or (t.state.name == "RUNNING" and t.number < me)))
        if ahead >= target:
            return "surplus"
    return None


def count_done(study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.name in STATES_DONE)


# -- one trial --------------------------------------------------------------

class Reporter:
    """Trainer.stop_when for a trial: after every validation pass, its loss is
    reported to Optuna at each tenth of the budget passed since the last pass
    (Optuna's step = percent of the budget, so that trials of any speed are
    compared at the same point: a tenth's value is that of the first pass
    at or after it, for every trial alike); True when the pruner says stop."""

    def __init__(self, trial, minutes: float):
        self.trial, self.budget_s = trial, 60 * minutes
        self.last_pct = 0
        self.last = None                  # (pct, loss) last reported

    def __call__(self, tr) -> bool:
        val = tr.state.get("last_val")
        if val is None or not math.isfinite(val):
            return False
        pct = min(100, int(10 * tr.state["elapsed"] / self.budget_s) * 10)
        if pct <= self.last_pct or pct >= 100:
            return False
        for p in range(self.last_pct + 10, pct + 1, 10):
            self.trial.report(val, p)
        self.last_pct, self.last = pct, (pct, val)
        return pct <= PRUNE_UNTIL_PCT and self.trial.should_prune()


class Heartbeat:
    """A thread that tells the study, every HEARTBEAT_S, that this worker is
    still at its trial (fail_lost reads it)."""

    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.beat()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def beat(self):
        self.storage.set_trial_system_attr(self.trial_id, "charlstm:worker",
                                           {"host": HOST, "pid": os.getpid(),
                                            "alive": time.time()})

    def _run(self):
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.beat()
            except Exception:
                pass

    def close(self):
        self.stop.set()
        self.thread.join()


class Interrupted(Exception):
    pass


def trial_path(run_dir: str, number: int) -> str:
    return os.path.join(run_dir, "trials", f"trial-{number:04d}.npz")


def run_trial(trial, spec: dict, corpus) -> float:
    """Train the trial's settings for the trial budget; its best validation
    loss. Raises optuna.TrialPruned when pruned, Interrupted when stopped."""
    optuna = need_optuna()
    from .train import Diverged, Trainer
    settings = suggest(trial, spec["space"])
    trial.set_user_attr("settings", settings)
    trial.set_user_attr("host", HOST)
    trial.set_user_attr("worker", f"{HOST}:{os.getpid()}")
    mcfg, tcfg = configs(settings, spec["trial_minutes"])
    tcfg = dataclasses.replace(tcfg, val_frac=spec["val_frac"])
    if tcfg.batch_size * (tcfg.seq_len + 1) > len(corpus.train):
        trial.set_user_attr("reason", "batch x seq-len longer than the training text")
        raise optuna.TrialPruned()
    steps = expected_steps(spec, settings, corpus.V)
    if steps is not None and steps < MIN_TRIAL_STEPS:
        trial.set_user_attr("reason", f"too slow: ~{steps:.0f} steps")
        raise optuna.TrialPruned()
    out = trial_path(spec["run_dir"], trial.number)
    from . import files
    from .train import best_path
    for p in (out, best_path(out)):          # a trial's files are the run folder's own
        files.check_output(p, "checkpoint", option="--out-dir", continuing=True,
                           inputs={spec["text"]: "the training text"})
    reporter = Reporter(trial, spec["trial_minutes"])
    tr = Trainer(spec["text"], mcfg, tcfg, out, progress=False, log=lambda m: None,
                 corpus=corpus, workers=spec["threads"], stop_when=reporter)
    trial.set_user_attr("params", tr.model.size)
    from . import files
    try:
        with files.locked(out):
            r = tr.run()
    except Diverged:
        r = None
    if r is not None:
        trial.set_user_attr("steps", r.steps)
        trial.set_user_attr("seconds", round(r.seconds, 1))
        trial.set_user_attr("chars_per_s", round(r.chars_per_s))
        if r.val_loss is not None:
            trial.set_user_attr("last_val", r.val_loss)
    if r is None or r.interrupted:
        if r is not None and r.interrupted:
            raise Interrupted()
    if r is None or r.diverged:
        trial.set_user_attr("diverged", True)
        if r is None or r.best_val is None:
            raise Diverged(0)
    if tr.stopped_early:
        trial.set_user_attr("pruned_at", reporter.last[0])
        trial.set_user_attr("last_val", reporter.last[1])
        raise optuna.TrialPruned()
    return float(r.best_val)


def keep_if_best(run_dir: str, number: int, value: float) -> bool:
    """Move the trial's best checkpoint to run_dir/best.npz when it beats the
    one there (best.json says whose it is); remove the trial's files either
    way. A lock file orders the workers of this machine."""
    import fcntl

    from . import files
    from .train import best_path
    out = trial_path(run_dir, number)
    kept = False
    with open(os.path.join(run_dir, ".best.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = os.path.join(run_dir, "best.json")
        try:
            with open(record, encoding="utf-8") as fh:
                held = json.load(fh)
        except (OSError, ValueError):
            held = None
        src = best_path(out)
        if not isinstance(held, dict) or not isinstance(held.get("value"), (int, float)):
            held = None
        best = os.path.join(run_dir, "best.npz")
        if (math.isfinite(value) and os.path.exists(src)
                and (held is None or value < held["value"] or not os.path.exists(best))
                and files.lock_holder(os.path.realpath(best)) is None
                and (not os.path.lexists(best) or files.is_checkpoint(best))):
            os.replace(src, best)         # our own trial's file, renamed within the folder
            files.write_json(record, {"charlstm": "tune best", "trial": number,
                                      "value": value})
            kept = True
    remove_trial_files(run_dir, number)
    return kept


def remove_trial_files(run_dir: str, number: int) -> None:
    from .train import best_path
    out = trial_path(run_dir, number)
    for p in (out, best_path(out), out + ".lock"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


# -- the workers ------------------------------------------------------------

def worker_main(spec: dict, messages) -> None:
    """One worker process: trials, one after another, until the study has
    `target` trials, or the next would overrun the deadline, or a stop signal.
    However it ends, the trial it was at is told to the study (a stopped one
    as interrupted, to be run again), and a problem goes to `messages`."""
    os.setpgrp()                    # Ctrl-C reaches the parent only, which tells us
    from .workers import die_with_parent
    die_with_parent(spec["parent"])
    from .stopping import Stop
    from .train import Diverged
    optuna = need_optuna()
    FAIL, PRUNED = optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED
    study = trial = None

    def end(state, value=None, **attrs):
        """Tell the study how the current trial ended; its files go."""
        nonlocal trial
        if trial is None:
            return
        t, trial = trial, None
        try:
            for k, v in attrs.items():
                t.set_user_attr(k, v)
            study.tell(t, value, state=None if value is not None else state)
        except Exception:               # the study is unreachable: fail_lost will find it
            pass
        if value is not None:
            keep_if_best(spec["run_dir"], t.number, value)
        else:
            remove_trial_files(spec["run_dir"], t.number)

    try:
        storage = open_storage(spec["storage"], spec["run_dir"])
        study = optuna.load_study(study_name=spec["study"], storage=storage,
                                  sampler=_sampler(), pruner=_pruner())
        from .data import load_corpus
        corpus = load_corpus(spec["text"], spec["val_frac"])
        from . import stopping, warmup
        # (compiled by the parent: loaded, quietly; a stop is taken by warmup.run)
        warmup.run(warmup.tune_units(spec["space"]), log=lambda m: None, live=False)
        while True:                 # (loading the kernels is not charged to a trial)
            stopping.check()
            if spec["deadline"] is not None and (
                    time.time() + 60 * spec["trial_minutes"] * 1.02 + 5 > spec["deadline"]):
                return
            if spec["target"] is not None and count_done(study) >= spec["target"]:
                return
            fail_lost(study)
            trial = study.ask()
            why = claim(study, trial, spec["target"])
            if why is not None:
                end(FAIL, withdrawn=why)
                if why == "surplus":
                    return
                continue
            beat = Heartbeat(storage, trial._trial_id)
            try:
                value = run_trial(trial, spec, corpus)
            except optuna.TrialPruned:
                end(PRUNED)
            except Diverged:
                end(FAIL, diverged=True)
            else:
                end(None, value)
            finally:
                beat.close()
    except (Stop, KeyboardInterrupt, Interrupted):
        end(FAIL, interrupted=True)
    except CharlstmError as e:
        end(FAIL, reason=str(e))
        messages.put(str(e))
    except Exception as e:                  # the study's database went away, a bug, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        line = scrub(f"{type(e).__name__}: {first}" if first else type(e).__name__,
                     spec["storage"])
        end(FAIL, reason=line)
        messages.put(f"a tune worker stopped: {line}")


# -- the parent -------------------------------------------------------------

def run_tune(spec: dict, jobs: int | None, progress: bool, log) -> dict:
    """Start the workers and watch the study until they end; on Ctrl-C (or
    SIGTERM, SIGHUP) tell them to stop, wait for them, and re-raise."""
    from multiprocessing import get_context

    from tqdm import tqdm

    from . import stopping
    from .stopping import Stop
    from .workers import job_counts, one_blas_thread, stop_children
    optuna = need_optuna()
    storage = open_storage(spec["storage"], spec["run_dir"])
    study = optuna.load_study(study_name=spec["study"], storage=storage)
    done0 = count_done(study)
    left = None if spec["target"] is None else max(0, spec["target"] - done0)
    # By default one trial at a time, on all the cores (docs/tune.md: on 2 cores, two
    # trials at once on one thread each made 0.99-1.19 times the steps of one on both,
    # and each ran at 49-59% of the speed its settings will train at later).
    n_jobs, threads = job_counts(jobs, left)
    spec = dict(spec, threads=threads, parent=os.getpid())
    if left == 0:
        log(f"the study has its {spec['target']} trials already; give a larger --trials "
            "to search on")
        return {"jobs": 0, "threads": threads, "interrupted": False}
    ctx = get_context("spawn")
    messages = ctx.SimpleQueue()
    procs = [ctx.Process(target=worker_main, args=(spec, messages), daemon=False)
             for _ in range(n_jobs)]
    with one_blas_thread():
        for p in procs:
            p.start()
    log(f"{n_jobs} trial{'s' if n_jobs > 1 else ''} at a time, {threads} thread"
        f"{'s' if threads > 1 else ''} each; {spec['trial_minutes']:g} minutes a trial")
    bar = tqdm(total=spec["target"], initial=done0, unit="trial", desc="tune",
               disable=not progress, dynamic_ncols=True)
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    interrupted = None
    from .tune_report import trial_line
    try:
        while True:
            stopping.check()
            alive = any(p.is_alive() for p in procs)
            trials = study.get_trials(deepcopy=False)
            for t in trials:
                if t.state.is_finished() and t.number not in seen:
                    seen.add(t.number)
                    if trial_kind(t) != "withdrawn":
                        log(trial_line(t))
            done = [t for t in trials if t.state.name == "COMPLETE"]
            bar.n = sum(1 for t in trials if t.state.name in STATES_DONE)
            if done:
                b = min(done, key=lambda t: t.value)
                bar.set_postfix(best=f"{b.value:.4f} (#{b.number})",
                                running=sum(t.state.name == "RUNNING" for t in trials),
                                refresh=False)
            bar.refresh()
            if not alive:
                break
            for _ in range(10):
                stopping.check()
                time.sleep(0.1)
    except KeyboardInterrupt as e:
        interrupted = e if isinstance(e, Stop) else Stop(signal.SIGINT)
        log("stopping: the running trials end and the study is kept; run the same command "
            "to resume")
        stop_children([p for p in procs if p.is_alive()], signal.SIGTERM)
    finally:
        bar.close()
    for p in procs:
        p.join()
    errors = []
    while not messages.empty():
        errors.append(messages.get())
    if errors:
        raise CharlstmError(errors[0])
    return {"jobs": n_jobs, "threads": threads, "interrupted": interrupted}


# -- the whole command ------------------------------------------------------

def default_run_dir(text: str) -> str:
    stem = os.path.splitext(os.path.basename(text))[0] or "text"
    return os.path.join("checkpoints", f"tune-{stem}")


def check_run_dir(run_dir: str) -> None:
    """tune writes into a new or empty folder, or an earlier tune run's (its
    marker, or the journal of a run of an earlier charlstm), which it goes on
    in: its study is resumed."""
    from . import files
    files.check_run_folder(run_dir, "tune", continuing=True, legacy=_legacy_run)
    trials = os.path.join(run_dir, "trials")
    if os.path.lexists(trials) and not os.path.isdir(trials):
        raise CharlstmError(f"--out-dir {run_dir}: {trials} is {files.sniff(trials)}, not "
                            "the folder of trials; give another --out-dir")


def _legacy_run(folder: str) -> bool:
    from . import files
    log = os.path.join(folder, "study.log")
    return os.path.isfile(log) and files.KINDS["journal"].recognise(log)


def check_outputs(run_dir: str, text: str, storage_url: str | None,
                  space_file: str | None) -> None:
    """Every file tune writes, checked before any work: the run folder, the
    study's storage, best.npz, best.json, tune.json and tune.png."""
    from . import files
    check_run_dir(run_dir)
    inputs = {text: "the training text"}
    if space_file:
        inputs[space_file] = "the --space file"
    check_storage(storage_url, run_dir, inputs)
    for name, kind in (("best.npz", "checkpoint"), ("best.json", "json"),
                       ("tune.json", "json"), ("tune.png", "png")):
        files.check_output(os.path.join(run_dir, name), kind, option="--out-dir",
                           inputs=inputs, continuing=True)


def search(text: str, *, space_file: str | None, fixed: dict, trial_minutes: float,
           trials: int | None, minutes: float | None, storage_url: str | None,
           study_name: str | None, run_dir: str | None, jobs: int | None,
           progress: bool, log, warm_up) -> dict:
    """charlstm tune, start to end: the study opened (or created and its space
    resolved), the interrupted trials queued again, the workers run, and the
    report built. The report's "interrupted" is the stop signal, if any."""
    from . import files
    from .data import load_corpus
    optuna = need_optuna()
    run_dir = run_dir or default_run_dir(text)
    if minutes is not None and 60 * trial_minutes * 1.02 + 5 > 60 * minutes:
        raise CharlstmError(f"--minutes {minutes:g} is shorter than one trial "
                            f"(--trial-minutes {trial_minutes:g}); give more minutes")
    check_outputs(run_dir, text, storage_url, space_file)
    val_frac = TrainConfig.val_frac
    corpus = load_corpus(text, val_frac)
    if len(corpus.val) < 2:
        raise CharlstmError(f"{text} is too short to hold out a validation part; use a "
                            "longer text")
    asked = {"text_sha256": corpus.sha256, "text_chars": int(len(corpus.train)
                                                                  + len(corpus.val)),
             "trial_minutes": trial_minutes, "val_frac": val_frac,
             "requested": requested_space(load_space_file(space_file) if space_file else None,
                                          fixed)}
    name = study_name or f"charlstm-{os.path.splitext(os.path.basename(text))[0]}"
    storage = open_storage(storage_url, run_dir)
    with reading_study(storage_url, run_dir):      # a journal that does not read: one line
        names = optuna.get_all_study_names(storage)
    from . import warmup
    warm_up(warmup.tune_units(asked["requested"]), log)
    if name in names:
        study, saved = open_study(storage, name, None)
        check_same(saved, asked, name)
    else:
        from .workers import job_counts
        n_jobs, threads = job_counts(jobs, trials)
        speed = measure_speed(text, corpus, threads)
        if speed is not None:
            log(f"speed: {speed.flops_rate / 1e9:.0f} GFLOP/s a trial on {threads} thread"
                f"{'s' if threads > 1 else ''} (LSTM 1x512)")
        asked["space"] = resolve_space(asked["requested"], speed, trial_minutes, corpus.V,
                                       len(corpus.train), log)
        asked["flops_rate"] = speed and speed.flops_rate
        study, saved = open_study(storage, name, asked)
        if not study.get_trials(deepcopy=False):
            from . import sizing
            cell = fixed.get("cell", ModelConfig.cell)
            given = set(fixed)
            m0 = ModelConfig(cell=cell, **{k: fixed[k] for k in ("hidden", "layers", "dropout")
                                          if k in fixed})
            t0 = TrainConfig(minutes=trial_minutes, **{k: fixed[k] for k in
                                                        ("lr", "seq_len", "batch_size")
                                                        if k in fixed})
            choice = sizing.choose(corpus, m0, t0, given, threads=threads)
            d = defaults_params(saved["space"], choice.model, choice.train)
            if d is not None:
                study.enqueue_trial(d, user_attrs={"queued_as": "defaults"})
                log(f"trial 0 is charlstm train's default for {trial_minutes:g}-minute runs, to "
                    f"compare against: {choice.reason}")
    fail_lost(study)
    retry_missing(study, log)
    deadline = None if minutes is None else time.time() + 60 * minutes
    spec = {"text": os.path.abspath(text), "storage": storage_url, "study": name,
            "run_dir": os.path.abspath(run_dir), "space": saved["space"],
            "trial_minutes": trial_minutes, "val_frac": val_frac, "target": trials,
            "deadline": deadline, "flops_rate": saved.get("flops_rate")}
    ran = run_tune(spec, jobs, progress, log)
    study = optuna.load_study(study_name=name, storage=storage)
    held = None
    try:
        with open(os.path.join(run_dir, "best.json"), encoding="utf-8") as fh:
            held = json.load(fh)
    except (OSError, ValueError):
        pass
    checkpoint = ({"path": os.path.join(run_dir, "best.npz"), "trial": held["trial"]}
                  if held and os.path.exists(os.path.join(run_dir, "best.npz")) else None)
    from . import tune_report as R
    rep = R.report(study, saved, text, run_dir, redact(storage_url) if storage_url else
                   os.path.join(run_dir, "study.log"), checkpoint)
    rep.update(jobs=ran["jobs"], threads=ran["threads"])
    path = os.path.join(run_dir, "tune.json")
    files.write_text(path, R.dumps(rep))
    png = os.path.join(run_dir, "tune.png")
    rep["png"] = png if R.plot(rep, png) else None
    rep["interrupted"] = ran["interrupted"]
    return rep
