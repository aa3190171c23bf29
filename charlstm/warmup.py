"""Compile what a command needs before it starts, with a progress line.

Numba compiles a kernel once per tuple of argument types, and caches it
(kernels/_cache.py). A command lists what it will run: train_units,
sample_units, ... give the kernels it calls from Python, each with tiny
arguments of the types its real calls pass (taken from a tiny model of the
same cell and dtype, so they are the model's own). run() compiles the units
the cache does not hold, one at a time, with one line on stderr naming the
kernel, k of n, the time so far and, when the last compile of each was
recorded (compile-times.json in the cache root), an estimate of the time
left. Units in the cache are left to load when first called, and nothing is
printed: a command compiles only its cell, its dtype, its optimizer, and
sampling only its own precision.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from . import kernels as K


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


# ---------------------------------------------------------------------------
# What each command runs.

def _tiny(cell: str, dtype, layers: int = 2):
    """A tiny model of `cell` and its workspace: their arrays have the types a
    real model's have (nothing here calls a kernel, so nothing compiles)."""
    from .config import ModelConfig
    from .model import Model, Workspace
    cfg = ModelConfig(cell=cell, hidden=4, layers=layers, dropout=0.5, vocab_size=3)
    m = Model(cfg, dtype)
    return m, Workspace(cfg, 2, 2, m.dtype)


def _packed(m, backward: bool):
    """Model.packed_Wh's arrays, unfilled (packing them would compile pack_nt)."""
    L, H = m.cfg.layers, m.cfg.hidden
    G = m.cell.gates * H
    return (np.empty((L,) + K.packed_shape(G, H, m.dtype), m.dtype),
            np.empty((L,) + K.packed_shape(H, G, m.dtype), m.dtype) if backward else None)


def forward_units(cell: str, dtype="float32", layers: int = 1) -> list[Unit]:
    """Model.forward (no gradient): the packing of Wh and the time loops."""
    m, ws = _tiny(cell, dtype)
    what = str(m.dtype)
    Wh_nt, _ = _packed(m, backward=False)
    w0, w1 = ws.layers
    units = [Unit(K.pack_nt, (m.p["l0.Wh"], Wh_nt[0]), what),
             Unit(K.FORWARD_ONEHOT[m.cell.kind], (w0["hs"], w0["cs"], w0["acts"], w0["aux"],
                                                  ws.tokens, m.p["l0.Wx"], m.p["l0.b"],
                                                  Wh_nt[0], m._ex(0)), what)]
    if layers > 1:                            # the layers above: a dense input
        units.append(Unit(K.FORWARD[m.cell.kind], (w1["hs"], w1["cs"], w1["acts"], w1["aux"],
                                                   w1["xp"], Wh_nt[1], m._ex(1)), what))
    return units


def train_units(cell: str, dtype="float32", layers: int = 1, dropout: bool = True,
                optimizer: str = "adam") -> list[Unit]:
    """Training (Trainer.step, Replicas.loss, Model.loss) and its validation."""
    m, ws = _tiny(cell, dtype)
    what = str(m.dtype)
    _, Wh_nn = _packed(m, backward=True)
    w = ws.layers[0]
    flat, g = m.flat, m.grad
    units = forward_units(cell, dtype, layers) + [
        Unit(K.pack_nn, (m.p["l0.Wh"], Wh_nn[0]), what),
        Unit(K.softmax_xent, (ws.dlogits, ws.logits, ws.tokens.reshape(-1), 0.5), what),
        Unit(m.cell.backward, (w["dxp"], w["dhp"], w["dhs"], w["dcs"], w["dy"], w["hs"], w["cs"],
                               w["acts"], w["aux"], Wh_nn[0], m._ex(0)), what),
        Unit(K.embed_backward, (m.g["l0.Wx"], m.g["l0.b"], ws.tokens, w["dxp"]), what)]
    if dropout:
        units.append(Unit(K.dropout_mask, (w["dy"], np.uint64(1), 0, 0.5), what))
    if optimizer == "adagrad":
        units.append(Unit(K.adagrad_update, (flat, g, g.copy(), 1e-3, 1e-8), what))
    else:
        units.append(Unit(K.adam_update, (flat, g, g.copy(), g.copy(), 1e-3, 0.9, 0.999, 1e-8, 1),
                          what))
    return units


def gradient_units(cell: str, dtype="float64", layers: int = 1) -> list[Unit]:
    """A forward and backward pass without an optimizer (compare's gradient
    flow, on a float64 copy of the model: memory.gradient_flow)."""
    units = train_units(cell, dtype, layers, dropout=False)
    return [u for u in units if u.kernel is not K.adam_update]


def sample_units(cell: str, weights: str = "int8", threads: int | None = None) -> list[Unit]:
    """Sampling (sampling.Sampler) with `weights`, by `threads` threads (default:
    as Sampler chooses). Packing the weights is training's kernels again."""
    m, _ = _tiny(cell, np.float32)
    L, H, V = m.cfg.layers, m.cfg.hidden, m.cfg.vocab_size
    G = m.cell.gates * H
    Wp = np.zeros((2 * L - 1,) + K.packed_shape(G, H, np.float32), np.float32)
    Wyp = np.zeros(K.packed_shape(V, H, np.float32), np.float32)
    units = [Unit(K.pack_nn, (m.p["Wy"], Wyp), "float32")]         # Model.sampling_packs
    if weights != "int8":
        units.append(Unit(K.pack_nt, (np.ascontiguousarray(m.p["l0.Wh"]), Wp[0]), "float32"))
    hs = np.zeros((2, 1, H), np.float32)
    A = hs[0]                                                       # as Sampler makes them
    half = Wyp.astype(np.float16).view(np.uint16)
    if weights == "float16":
        Wp, Wyp = Wp.astype(np.float16).view(np.uint16), half
    elif weights == "int8":
        Wp, Wyp = np.stack([K.pack_int8(m.p["l0.Wh"])] * (2 * L - 1)), half
        A = np.zeros(K.quantised_input_shape(H), np.int16)
    gh = np.zeros((1, G), np.float32)
    sync = np.zeros(8, np.int64)
    h, c = m.zero_state(1)
    if min(2, threads or os.cpu_count() or 1) > 1:
        units.append(Unit(K.product_helper, (sync, A, Wp, gh), weights))
    units.append(Unit(K.GENERATE[m.cell.kind],
                      (np.empty(1, np.int64), np.zeros(1, np.int64), np.zeros(1), m.flat,
                       m.offsets, A, Wp, Wyp, h, c, 1.0, 0, False, hs, gh, sync,
                       np.zeros((0, 2), np.int64), np.zeros(0, np.float32), 0), weights))
    return units


def tune_units(space: dict) -> list[Unit]:
    """Every trial of `charlstm tune` over `space` (tune.requested_space's
    entries, or tune.resolve_space's, whose `size` is "LxH"), and the LSTM
    its speed measurement and its defaults trial train."""
    def values(name, default):
        e = space.get(name)
        if e is None:
            return [default]
        return e.get("choices") or ([e["value"]] if "value" in e else [e["low"], e["high"]])
    layers = max([int(v) for v in values("layers", 1)] +
                 [int(str(v).split("x")[0]) for v in values("size", "1x0")])
    return _unique([u for c in dict.fromkeys(["lstm"] + list(values("cell", "lstm")))
                    for o in values("optimizer", "adam")
                    for u in train_units(c, "float32", layers, optimizer=o)])


def _of_a_cell(u: Unit) -> bool:
    """Whether u is one cell's own kernel (its time loops, its backward pass)."""
    return u.kernel in K.FORWARD + K.FORWARD_ONEHOT + tuple(c.backward for c in
                                                            K.CELL_KERNELS.values())


def is_cached(cells=(), folder: str = K.CACHE_DIR) -> bool:
    """Whether `folder` holds, for this version of the kernels and this
    machine, every unit `charlstm train` needs with its default settings for
    each of `cells` (float32, one layer, dropout, Adam), and the units every
    cell's training shares (with no cells: those alone)."""
    units = ([u for c in cells for u in train_units(c)] or
             [u for u in train_units("lstm") if not _of_a_cell(u)])
    return all(K._cache.compiled(u.kernel, u.argtypes, folder) for u in units)


# ---------------------------------------------------------------------------
# Compiling them.

TIMES = "compile-times.json"            # in the cache root: every version's last times


def _unique(units) -> list[Unit]:
    seen, out = set(), []
    for u in units:
        key = (id(u.kernel), u.argtypes)
        if key not in seen:
            seen.add(key)
            out.append(u)
    return out


def missing(units, folder: str = K.CACHE_DIR) -> list[Unit]:
    """The units `folder` does not hold (each once)."""
    return [u for u in _unique(units) if not K._cache.compiled(u.kernel, u.argtypes, folder)]


def run(units, log=print, live: bool | None = None) -> None:
    """Compile every unit the cache does not hold, one at a time, telling the
    user: a line rewritten in place when `live` (default: stderr is a
    terminal), else a plain line per kernel. Nothing is printed when all are
    cached. Another charlstm process compiling into the same folder is waited
    for (then what it compiled is loaded, not compiled again)."""
    todo = missing(units)
    if not todo:
        return
    with _compiling_lock(log):
        todo = missing(todo)                  # what another process compiled meanwhile
        if todo:
            _compile(todo, log, sys.stderr.isatty() if live is None else live)


def _compile(todo: list[Unit], log, live: bool) -> None:
    times = _load_times()
    n = len(todo)
    log(f"Compiling the Numba kernels this command needs: {n} (once; they are cached for "
        "every later run)")
    line = _Line(live)
    t_start = time.perf_counter()
    failed = []

    def work():
        try:
            for k, u in enumerate(todo, 1):
                rest = [times.get(v.label) for v in todo[k - 1:]]
                line.show(f"{k}/{n} {u.label}", t_start, time.perf_counter(),
                          None if None in rest else rest)
                t0 = time.perf_counter()
                u.kernel.compile(u.argtypes)
                times[u.label] = round(time.perf_counter() - t0, 2)
                _save_times(times)
        except BaseException as e:                 # handed to the main thread
            failed.append(e)

    # The compiling runs in a thread of its own, and the main thread waits for
    # it: a stop signal then ends the command at once, in the main thread, at a
    # safe point (stopping.check), never inside LLVM's callbacks. What the
    # thread was compiling is lost; Numba writes its cache files whole.
    from . import stopping
    worker = threading.Thread(target=work, name="charlstm-compile", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
            stopping.check()
    finally:
        line.close()
    if failed:
        raise failed[0]
    log(f"Compiled {n} kernel{'s' * (n > 1)} in {time.perf_counter() - t_start:.0f} s.")


class _Line:
    """The progress line: rewritten in place every half second while a kernel
    compiles (live), or printed once per kernel."""

    def __init__(self, live: bool):
        self.live, self.text = live, None
        self.stop = threading.Event()
        self.thread = None
        if live:
            self.thread = threading.Thread(target=self._tick, daemon=True)
            self.thread.start()

    def show(self, what: str, t_start: float, t_unit: float, estimates) -> None:
        self.what, self.t_start, self.t_unit, self.estimates = what, t_start, t_unit, estimates
        if self.live:
            self._draw()
        else:
            print("  " + self._text(), file=sys.stderr, flush=True)

    def _text(self) -> str:
        now = time.perf_counter()
        text = f"compiling {self.what}, {now - self.t_start:.0f} s"
        if self.estimates is not None:    # the current kernel's share, then the others'
            left = max(0.0, self.estimates[0] - (now - self.t_unit)) + sum(self.estimates[1:])
            text += f", about {left:.0f} s left (as last time)"
        return text

    def _draw(self) -> None:
        width = shutil.get_terminal_size().columns - 1
        sys.stderr.write("\r  " + self._text()[:width - 2] + "\x1b[K")
        sys.stderr.flush()

    def _tick(self) -> None:
        while not self.stop.wait(0.5):
            if getattr(self, "what", None) is not None:
                self._draw()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _load_times() -> dict:
    try:
        with open(os.path.join(K.cache_root(), TIMES), encoding="utf-8") as fh:
            times = json.load(fh)
        return times if isinstance(times, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_times(times: dict) -> None:
    """Written beside and renamed over (another process may read it)."""
    path = os.path.join(K.cache_root(), TIMES)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(times, fh, indent=0, sort_keys=True)
        os.replace(tmp, path)
    except OSError:                           # only the estimate is lost
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@contextlib.contextmanager
def _compiling_lock(log):
    """One charlstm process at a time compiles into this version's folder
    (Numba's index files are rewritten whole, so two writers could lose each
    other's entries); the others wait, then find the kernels compiled."""
    try:
        import fcntl
        fh = open(os.path.join(K.CACHE_DIR, ".compiling"), "a")
    except (ImportError, OSError):            # no locks here: compile anyway
        yield
        return
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log("Waiting for another charlstm process to finish compiling the kernels...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
