"""Stop signals: SIGINT (Ctrl-C), SIGTERM and SIGHUP end every command within
seconds, with every file saved or left as it was, a line that names the
signal, and exit status 128 + its number.

The handler never raises in the middle of whatever the process is doing: a
stop raised inside a lock, a condition wait or a thread pool's bookkeeping
once left a worker thread waiting for ever. It records the signal; the long
loops (training steps, validation and recording chunks, sampling pieces,
compare's and tune's waits, the wait for the compiling thread) call check()
where stopping is safe, and Stop is raised there. Work with nothing to leave
half-done that may block for long (an export, bench) runs inside
interruptible(), where a signal raises Stop at once. Not compiling: LLVM
calls back into Python, and an exception raised in a callback is lost, so
warmup.run compiles in a thread of its own and the main thread waits.

A signal the process inherited as ignored stays ignored: a shell starts a
background job with SIGINT ignored, and nohup ignores SIGHUP.

A last guard: if the process has not ended GRACE seconds after a stop signal,
it says so and exits 128 + n. Every file is written through files.write_with
(a temporary file, then a rename), so even that leaves nothing half-written.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, n))
GRACE = 30.0                   # seconds from a stop signal to a forced exit


class Stop(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP), raised where stopping is safe."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal_name(self.signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


_pending: int | None = None      # the first stop signal received, until reset()
_raising = 0                     # depth of interruptible() blocks
_installed = 0                   # depth of installed() blocks
_saved: dict = {}
_generation = 0                  # a watchdog armed in an earlier generation does nothing
WATCH_TILL_EXIT = False          # the command line's own process: the watchdog stays
                                 # armed until the process ends (set by cli.entry)


def _handler(signum, frame):
    global _pending
    if _pending is None:
        _pending = signum
        _watchdog(signum)
    if _raising > 0:
        raise Stop(signum)


def _watchdog(signum: int) -> None:
    armed = _generation

    def watch():
        time.sleep(GRACE)
        if armed != _generation:
            return                           # the command ended; this process goes on
        with contextlib.suppress(Exception):
            sys.stderr.write(f"charlstm: still stopping {GRACE:.0f} s after "
                             f"{signal_name(signum)}; exiting now\n")
            sys.stderr.flush()
        os._exit(128 + signum)
    if GRACE > 0:
        threading.Thread(target=watch, name="charlstm-stop-watchdog", daemon=True).start()


@contextlib.contextmanager
def installed():
    """Take the stop signals for the duration of the block (main thread
    only; nested blocks share one installation; elsewhere nothing changes)."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _installed == 0:
        _saved.clear()
        for sig in STOP_SIGNALS:
            current = signal.getsignal(sig)
            if current is signal.SIG_IGN:
                continue                     # a background job's SIGINT, nohup's SIGHUP
            _saved[sig] = current
            signal.signal(sig, _handler)
    _installed += 1
    try:
        yield
    finally:
        _installed -= 1
        if _installed == 0:
            for sig, handler in _saved.items():
                signal.signal(sig, handler)
            _saved.clear()
            if not WATCH_TILL_EXIT:
                reset()


def entry() -> None:
    """Called once by the command line's entry point: a stop's watchdog then
    guards the whole process, to its very end (threads joined at exit included)."""
    global WATCH_TILL_EXIT
    WATCH_TILL_EXIT = True


def install_for_worker() -> None:
    """In a worker process (compare's pool, tune's workers): take the stop
    signals for the life of the process."""
    global _installed
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _handler)
    _installed += 1


def pending() -> int | None:
    """The stop signal received, if any."""
    return _pending


def check() -> None:
    """Raise Stop if a stop signal has arrived: call where stopping is safe."""
    if _pending is not None:
        raise Stop(_pending)


def reset() -> None:
    """Forget a stop signal and disarm its watchdog (a command that ended in a
    process that goes on: the tests, a library user)."""
    global _pending, _generation
    _pending = None
    _generation += 1


@contextlib.contextmanager
def interruptible():
    """A block with nothing to leave half-done, which a stop signal may end at
    once (compiling the kernels, an export): Stop is raised inside it."""
    global _raising
    if threading.current_thread() is not threading.main_thread():
        yield                                # only the main thread takes signals
        return
    check()
    _raising += 1
    try:
        yield
    finally:
        _raising -= 1


def sleep(seconds: float) -> None:
    """time.sleep that a stop signal ends at once (with Stop)."""
    with interruptible():
        time.sleep(seconds)
