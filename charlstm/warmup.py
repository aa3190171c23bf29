"""Compile what a command needs before it starts, with a progress line.

Numba compiles a kernel once per tuple of argument types, and caches it
(kernels/_cache.py). A command lists what it will run: train_units,
sample_units, ... (kernels/units.py) give the kernels it calls from Python,
each with tiny arguments of the types its real calls pass. run() compiles the units
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

from . import kernels
from .kernels.units import (Unit, forward_units, gradient_units, is_cached,  # noqa: F401
                            sample_units, train_units)


# ---------------------------------------------------------------------------
# What each command runs: kernels/units.py; and tune's trials.

def tune_units(space: dict) -> list[Unit]:
    """Every trial of `charlstm tune` over `space` (lab.tune.space.requested_space's
    entries, or lab.tune.space.resolve_space's, whose `size` is "LxH"), and the LSTM
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


def missing(units, folder: str = kernels.CACHE_DIR) -> list[Unit]:
    """The units `folder` does not hold (each once)."""
    return [u for u in _unique(units) if not kernels.compiled(u.kernel, u.argtypes, folder)]


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
        with open(os.path.join(kernels.cache_root(), TIMES), encoding="utf-8") as fh:
            times = json.load(fh)
        return times if isinstance(times, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_times(times: dict) -> None:
    """Written beside and renamed over (another process may read it)."""
    path = os.path.join(kernels.cache_root(), TIMES)
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
        fh = open(os.path.join(kernels.CACHE_DIR, ".compiling"), "a")
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
