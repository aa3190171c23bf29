"""What the commands share: the options of a model and its training (one
definition for train and compare), the settings they give, the float type
that refuses nan, the kernels compiled before a command starts, the messages
to stderr."""
from __future__ import annotations

import math
import sys

import click

from ..config import (AUTO_EVAL_MIN_STEPS, CELL_LR, CELL_NAMES, DEFAULT_MINUTES, LIMITS,
                      ModelConfig, TrainConfig, default_lr)

# The defaults the options show.
MODEL, TRAIN = ModelConfig(), TrainConfig()


class FloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and ±inf: every float option of
    charlstm wants a finite number (nan would pass every range check)."""

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


FINITE = FloatRange()


def limit(name: str, **kw):
    """The Click type for a setting, its range from config.LIMITS."""
    from ..config import LIMITS
    low, high, open_low = LIMITS[name]
    if isinstance(low, int):
        return click.IntRange(low + 1 if open_low else low, high)
    return FloatRange(low, high, min_open=open_low, **kw)


def model_options(f, cell: bool = True):
    opts = [
        click.option("--cell", type=click.Choice(CELL_NAMES), default=MODEL.cell, show_default=True,
                     help="Recurrent cell."),
        click.option("--hidden", type=limit("hidden"), default=None,
                     help="Hidden units per layer [default: chosen for the text, the budget "
                          "and this machine's speed; the choice is printed]."),
        click.option("--layers", type=limit("layers"), default=None,
                     help=f"Stacked recurrent layers [default: {MODEL.layers}]."),
        click.option("--dropout", type=limit("dropout"), default=None,
                     help="Dropout between layers and before the output [default: chosen with "
                          "the size, from the passes the budget makes over the text]."),
        click.option("--forget-bias", type=limit("forget_bias"), default=MODEL.forget_bias,
                     show_default=True,
                     help="Initial forget-gate bias (keeps memory at the start)."),
        click.option("--seq-len", type=limit("seq_len"), default=TRAIN.seq_len,
                     show_default=True, help="Steps of truncated backpropagation through time."),
        click.option("--batch-size", type=limit("batch_size"), default=TRAIN.batch_size,
                     show_default=True, help="Parallel streams through the text."),
        click.option("--lr", type=limit("lr"), default=None,
                     help=f"Peak learning rate [default: {TRAIN.lr:g}; "
                          + ", ".join(f"{c} {lr:g}" for c, lr in CELL_LR.items()) + "]."),
        click.option("--schedule", type=click.Choice(["cosine", "constant"]),
                     default=TRAIN.schedule, show_default=True,
                     help="Learning-rate decay over the budget."),
        click.option("--warmup", type=limit("warmup"), default=None,
                     help="Raise the learning rate linearly from 0 over this share of the "
                          "budget (0: none) [default: 0.04 for 768 units or more, else 0]."),
        click.option("--optimizer", type=click.Choice(["adam", "adagrad"]),
                     default=TRAIN.optimizer, show_default=True, help="Optimizer."),
        click.option("--clip", type=limit("clip"), default=TRAIN.clip, show_default=True,
                     help="Clip the gradient to this global norm."),
        click.option("--state-reset", type=limit("state_reset"), default=TRAIN.state_reset,
                     show_default=True,
                     help="Chance that a stream's carried state is zeroed between batches."),
        click.option("--val-frac", type=limit("val_frac"), default=TRAIN.val_frac,
                     show_default=True, help="Fraction at the end of the text held out."),
        click.option("--rng-seed", type=click.IntRange(0, 2 ** 63 - 1), default=TRAIN.rng_seed,
                     show_default=True,
                     help="Random seed for initialisation and dropout."),
        click.option("--epochs", type=FloatRange(0, LIMITS["epochs"][1], min_open=True), default=None,
                     help="Budget: passes over the training text."),
        click.option("--steps", type=click.IntRange(1, LIMITS["steps"][1]), default=None,
                     help="Budget: optimizer steps."),
        click.option("--minutes", type=FloatRange(0, LIMITS["minutes"][1], min_open=True),
                     default=None, help=f"Budget: wall-clock minutes [default: {DEFAULT_MINUTES:g} when no "
                          "budget is given]."),
        click.option("--eval-every", type=limit("eval_every"), default=TRAIN.eval_every,
                     show_default=True,
                     help="Steps between validation passes and checkpoints; 0: at least "
                          f"{AUTO_EVAL_MIN_STEPS} steps apart and at most ~5% of the time."),
    ]
    for opt in reversed(opts if cell else opts[1:]):
        f = opt(f)
    return f


def model_options_no_cell(f):
    """model_options for compare, whose cells are --cells."""
    return model_options(f, cell=False)


def configs(kw, default_budget: bool = True) -> tuple[ModelConfig, TrainConfig]:
    """The settings the options give. default_budget: DEFAULT_MINUTES when no
    budget is given (a resumed run has none, and finishes its saved one)."""
    budget = {k: kw[k] for k in ("epochs", "steps", "minutes") if kw.get(k) is not None}
    if len(budget) > 1:
        raise click.UsageError(f"give one budget, not {' and '.join('--' + k for k in budget)}")
    if not budget and default_budget:
        budget = {"minutes": DEFAULT_MINUTES}
    cell = kw.get("cell", MODEL.cell)
    pick = lambda key, default: default if kw.get(key) is None else kw[key]  # noqa: E731
    mcfg = ModelConfig(cell=cell, hidden=pick("hidden", MODEL.hidden),
                       layers=pick("layers", MODEL.layers), dropout=pick("dropout", MODEL.dropout),
                       forget_bias=kw["forget_bias"])
    tcfg = TrainConfig(seq_len=kw["seq_len"], batch_size=kw["batch_size"],
                       lr=kw["lr"] or default_lr(cell),
                       schedule=kw["schedule"], warmup=pick("warmup", TRAIN.warmup),
                       optimizer=kw["optimizer"], clip=kw["clip"],
                       state_reset=kw["state_reset"],
                       val_frac=kw["val_frac"], rng_seed=kw["rng_seed"],
                       eval_every=kw["eval_every"], **budget)
    return mcfg, tcfg


def warm_up(units, log, progress: bool = True) -> None:
    """Compile the kernels a command needs (warmup.run): silent when they are
    cached, else a line naming the kernel compiling, k of n, the time so far
    and an estimate of the time left, rewritten in place on a terminal, plain
    lines with --no-progress or when stderr is not a terminal. A stop signal
    ends it at once (warmup.run compiles in a thread of its own)."""
    from .. import warmup
    warmup.run(units, log=log, live=progress and sys.stderr.isatty())


def echo_err(msg):
    click.echo(msg, err=True)


# The settings the default model chooses when not given (sizing.choose).
SIZED = ("hidden", "layers", "dropout", "lr", "batch_size", "seq_len", "cell", "warmup")


def options_given(names) -> set:
    from ..sizing import given_options
    ctx = click.get_current_context()
    return given_options(ctx, [n for n in names if n in ctx.params])
