"""Each cell's kernels, bound to its row of charlstm/cells.py.

A row names its kernel module, kernels/<cell.kernels>.py, which defines
<cell.kernels>_step and <cell.kernels>_backward (with the arguments every
cell's have: __init__.py) and, for a cell with extra parameters,
<cell.kernels>_extra_grad (plain NumPy, run after the backward kernel). So a
new cell needs its row and its module, and nothing here.

A cell's number, `kind`, is its place in the table: the loops compiled once
per cell (recurrence.FORWARD, sampling.GENERATE: _jit.per_cell) are indexed
by it."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, fields
from typing import Callable

from ..cells import CELLS, Cell


@dataclass(frozen=True, kw_only=True)
class BoundCell(Cell):
    """A cell's row with its kernels."""
    kind: int                       # its number: its place in cells.CELLS
    step: Callable                  # one forward time step (run by the loops of recurrence.py)
    backward: Callable              # the backward pass through a whole window
    extra_grad: Callable | None     # the extras' gradient, from the backward's outputs

    @classmethod
    def bind(cls, kind: int, cell: Cell) -> BoundCell:
        module = importlib.import_module(f".{cell.kernels}", __package__)
        prefix = cell.kernels
        return cls(**{f.name: getattr(cell, f.name) for f in fields(Cell)}, kind=kind,
                   step=getattr(module, f"{prefix}_step"),
                   backward=getattr(module, f"{prefix}_backward"),
                   extra_grad=getattr(module, f"{prefix}_extra_grad", None))


CELL_KERNELS = {name: BoundCell.bind(k, cell) for k, (name, cell) in enumerate(CELLS.items())}
KIND = {name: c.kind for name, c in CELL_KERNELS.items()}        # each cell's number
STEPS = tuple(c.step for c in CELL_KERNELS.values())             # the step kernels, by kind
RECURRENT = tuple(c.recurrent for c in CELL_KERNELS.values())    # whether each has a Wh, by kind
