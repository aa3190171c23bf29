"""Numba's options for every kernel, set here and nowhere else, and per_cell,
which compiles a loop written once as one kernel per cell."""
import types

from numba import njit

# error_model="numpy" drops Python's
# ZeroDivisionError check, which otherwise stops LLVM vectorising the gate loops;
# fastmath leaves out nnan/ninf so that inf and nan still behave.
FASTMATH = {"contract", "arcp", "reassoc", "nsz", "afn"}
JIT = dict(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
# No parallel=True: slower (docs/performance.md), as Numba's worker threads and
# OpenBLAS's fight over the cores. The cores are used one training worker each
# instead (replicas.Replicas), so every kernel is serial and deterministic.


def per_cell(fn, steps, inline=False, **tables):
    """One jitted copy of fn for each cell: copy k runs with the global name
    `step` bound to steps[k] (a cell's step kernel) and each other name in
    tables to tables[name][k]; returns the copies as a tuple, by the cells' kinds.

    Why: a loop that chose the cell at run time (`if kind == LSTM: …`) would
    compile all six cells' steps into every loop, and every command would pay
    for all six. Each copy is named after its cell (forward_lstm, …), so Numba
    caches it in a file of its own. inline: Numba inlines the copies into
    their callers rather than compiling them on their own."""
    name = fn.__name__.lstrip("_")
    copies = []
    for k, step in enumerate(steps):
        cell = step.py_func.__name__.removesuffix("_step")
        bound = dict(fn.__globals__, step=step, **{n: t[k] for n, t in tables.items()})
        f = types.FunctionType(fn.__code__, bound, f"{name}_{cell}", fn.__defaults__)
        f.__qualname__, f.__doc__, f.__module__ = f.__name__, fn.__doc__, fn.__module__
        copies.append(njit(**JIT, inline="always")(f) if inline else njit(**JIT)(f))
    return tuple(copies)
