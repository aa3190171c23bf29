"""The command line: Click checks the options, the modules do the work.

Heavy modules (NumPy, Numba) are imported inside the commands, so --help is
instant. Problems the user can fix are raised as CharlstmError and printed as
one line (exit 1); bad options are usage errors (exit 2)."""
from __future__ import annotations

import math
import os
import signal
import sys
import time
from dataclasses import replace

import click
from click.core import ParameterSource

from .config import (AUTO_EVAL_MIN_STEPS, CELL_LR, CELL_NAMES, DEFAULT_MINUTES, LIMITS,
                     PROBE_HIDDEN, PROBE_MINUTES, SAMPLING_WEIGHTS, ModelConfig, TrainConfig,
                     default_lr)
from .errors import CharlstmError
from .words import path_arg, shell_line

M, TR = ModelConfig(), TrainConfig()


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
    from .config import LIMITS
    low, high, open_low = LIMITS[name]
    if isinstance(low, int):
        return click.IntRange(low + 1 if open_low else low, high)
    return FloatRange(low, high, min_open=open_low, **kw)


# What to lower when a command runs out of memory anyway (the big allocations
# are checked up front with files.check_memory, which names the option).
MEMORY_HINTS = {
    "train": "lower --batch-size, --hidden or --seq-len",
    "compare": "lower --hidden, --batch-size, --seq-len, --context-positions or --length",
    "inspect": "lower --chars",
    "tune": "fix a smaller --hidden or --batch-size",
    "sample": "use --weights int8",
}


def _one_line(msg: str) -> str:
    """A message on one line: a newline or other control character inside it
    (in a file name, say) is shown escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in msg)


class Group(click.Group):
    def invoke(self, ctx):
        from . import stopping
        try:
            with stopping.installed():
                return super().invoke(ctx)
        except CharlstmError as e:               # one line, whatever a path holds
            raise click.ClickException(_one_line(str(e))) from None
        except stopping.Stop as e:
            click.echo(f"stopped by {e.name}", err=True)
            sys.exit(128 + e.signum)
        except MemoryError:
            hint = MEMORY_HINTS.get(ctx.invoked_subcommand, "close other programs")
            raise click.ClickException(f"out of memory; {hint}") from None
        except BrokenPipeError:
            sys.stderr.close()                   # `charlstm sample | head`: not an error
            sys.exit(0)
        except OSError as e:
            if e.errno is None:
                raise
            where = f"{e.filename}: " if e.filename else "writing the output: "
            raise click.ClickException(f"{where}{os.strerror(e.errno).lower()}") from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="charlstm")
def main():
    """charlstm: a character-level text generator with an LSTM written by hand
    in Numba. Train on any UTF-8 text, sample from the model, and compare the
    LSTM with a vanilla RNN and other cells."""


def model_options(f, cell: bool = True):
    opts = [
        click.option("--cell", type=click.Choice(CELL_NAMES), default=M.cell, show_default=True,
                     help="Recurrent cell."),
        click.option("--hidden", type=limit("hidden"), default=None,
                     help="Hidden units per layer [default: chosen for the text, the budget "
                          "and this machine's speed; the choice is printed]."),
        click.option("--layers", type=limit("layers"), default=None,
                     help=f"Stacked recurrent layers [default: {M.layers}]."),
        click.option("--dropout", type=limit("dropout"), default=None,
                     help="Dropout between layers and before the output [default: chosen with "
                          "the size, from the passes the budget makes over the text]."),
        click.option("--forget-bias", type=limit("forget_bias"), default=M.forget_bias, show_default=True,
                     help="Initial forget-gate bias (keeps memory at the start)."),
        click.option("--seq-len", type=limit("seq_len"), default=TR.seq_len,
                     show_default=True, help="Steps of truncated backpropagation through time."),
        click.option("--batch-size", type=limit("batch_size"), default=TR.batch_size,
                     show_default=True, help="Parallel streams through the text."),
        click.option("--lr", type=limit("lr"), default=None,
                     help=f"Peak learning rate [default: {TR.lr:g}; "
                          + ", ".join(f"{c} {lr:g}" for c, lr in CELL_LR.items()) + "]."),
        click.option("--schedule", type=click.Choice(["cosine", "constant"]),
                     default=TR.schedule, show_default=True,
                     help="Learning-rate decay over the budget."),
        click.option("--optimizer", type=click.Choice(["adam", "adagrad"]),
                     default=TR.optimizer, show_default=True, help="Optimizer."),
        click.option("--clip", type=limit("clip"), default=TR.clip, show_default=True,
                     help="Clip the gradient to this global norm."),
        click.option("--state-reset", type=limit("state_reset"), default=TR.state_reset,
                     show_default=True,
                     help="Chance that a stream's carried state is zeroed between batches."),
        click.option("--val-frac", type=limit("val_frac"), default=TR.val_frac,
                     show_default=True, help="Fraction at the end of the text held out."),
        click.option("--rng-seed", type=click.IntRange(0, 2 ** 63 - 1), default=TR.rng_seed,
                     show_default=True,
                     help="Random seed for initialisation and dropout."),
        click.option("--epochs", type=FloatRange(0, LIMITS["epochs"][1], min_open=True), default=None,
                     help="Budget: passes over the training text."),
        click.option("--steps", type=click.IntRange(1, LIMITS["steps"][1]), default=None,
                     help="Budget: optimizer steps."),
        click.option("--minutes", type=FloatRange(0, LIMITS["minutes"][1], min_open=True),
                     default=None, help=f"Budget: wall-clock minutes [default: {DEFAULT_MINUTES:g} when no "
                          "budget is given]."),
        click.option("--eval-every", type=limit("eval_every"), default=TR.eval_every,
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
    cell = kw.get("cell", M.cell)
    pick = lambda key, default: default if kw.get(key) is None else kw[key]  # noqa: E731
    mcfg = ModelConfig(cell=cell, hidden=pick("hidden", M.hidden), layers=pick("layers", M.layers),
                       dropout=pick("dropout", M.dropout), forget_bias=kw["forget_bias"])
    tcfg = TrainConfig(seq_len=kw["seq_len"], batch_size=kw["batch_size"],
                       lr=kw["lr"] or default_lr(cell),
                       schedule=kw["schedule"], optimizer=kw["optimizer"], clip=kw["clip"],
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
    from . import warmup
    warmup.run(units, log=log, live=progress and sys.stderr.isatty())


def echo_err(msg):
    click.echo(msg, err=True)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@model_options
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint path [default: checkpoints/<file>-<cell>.npz, or with "
                   "--resume the checkpoint resumed].")
@click.option("--resume", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Continue training from this checkpoint: its settings are kept, and with "
                   "no budget given its saved budget is finished. A larger budget, counted "
                   "from the start, stretches the learning-rate schedule over it: with "
                   "cosine decay the rate rises again from where it had fallen to (use "
                   "--schedule constant to avoid this when training from scratch).")
@click.option("--force", is_flag=True,
              help="Replace an existing checkpoint at --out (and its best file) with a new "
                   "run. Only charlstm checkpoints are ever replaced.")
@click.option("--progress/--no-progress", default=True, help="Show the progress bar.")
def train(file, out, resume, force, progress, **kw):
    """Train a model on FILE (any UTF-8 text) and write checkpoints.

    The last 10% of FILE is held out for validation. The last checkpoint and the
    best one (lowest validation loss, *.best.npz) are kept. Ctrl-C, SIGTERM and
    SIGHUP save and stop. An existing checkpoint is never replaced unless
    --force is given or it is the one resumed."""
    import numpy as np

    from . import checkpoint as ckpt
    from . import files
    from .train import TrainLog, Trainer, default_out
    mcfg, tcfg = configs(kw, default_budget=not resume)
    if resume and not out and resume.endswith(".best.npz"):
        raise CharlstmError(f"resuming {resume} would write the run's last model over its "
                            f"best one; give --out NEW.npz for the continued run")
    if resume and not files.is_checkpoint(resume):
        raise CharlstmError(f"--resume {resume} is {files.sniff(resume)}, not a charlstm "
                            "checkpoint: only a .npz written by charlstm train holds the "
                            "training state to resume")
    out = out or resume or default_out(file, mcfg.cell)     # a resumed run goes on in its file
    log_path = check_train_outputs(out, file, resume, force)
    with files.locked(out):
        corpus = None
        if resume:
            tr = Trainer(file, mcfg, tcfg, out, resume=resume, progress=progress, log=echo_err,
                         log_path=log_path)
            m, c = tr.model.cfg, tr.cfg
            ctx = click.get_current_context()
            ckpt.check_same_settings({k: v for k, v in kw.items() if ctx.get_parameter_source(k)
                                      is ParameterSource.COMMANDLINE},
                                     {**m.__dict__, **c.__dict__}, resume)
            _say_schedule(tr, kw, echo_err)
            from . import warmup
            warm_up(warmup.train_units(m.cell, tr.model.dtype, m.layers,
                                       dropout=m.dropout > 0, optimizer=c.optimizer),
                    echo_err, progress)
        else:
            from . import sizing, warmup
            from .data import load_corpus
            corpus = load_corpus(file, tcfg.val_frac)
            given = _given(SIZED)
            if tcfg.minutes and "hidden" not in given:       # the sizes are timed here
                warm_up(warmup.train_units(mcfg.cell, np.float32, 1, dropout=True,
                                           optimizer="adam"), echo_err, progress)
            choice = sizing.choose(corpus, mcfg, tcfg, given)
            mcfg, tcfg = choice.model, choice.train
            echo_err(choice.reason)
            tr = Trainer(file, mcfg, tcfg, out, progress=progress, log=echo_err,
                         log_path=log_path, corpus=corpus)
            m, c = tr.model.cfg, tr.cfg
            warm_up(warmup.train_units(m.cell, tr.model.dtype, m.layers,
                                       dropout=m.dropout > 0, optimizer=c.optimizer),
                    echo_err, progress)
        echo_err(f"{file}: {len(tr.corpus.train):,} training and {len(tr.corpus.val):,} validation "
                 f"characters, vocabulary {m.vocab_size}; {tr.model.size:,} parameters, batch "
                 f"{c.batch_size}×{c.seq_len}, {tr.batches.n:,} batches per epoch")
        if not resume:
            echo_err("the same run again: " + train_command(file, m, c, out))
        TrainLog(log_path).start(tr, fresh=not resume)
        r = tr.run()
        if r.written:
            for line in closing_summary(tr, r, out, log_path):
                click.echo(line)
        elif not r.diverged:
            click.echo(f"nothing to train: {out} has spent its budget already (step {r.steps}); "
                       "give a larger --steps, --epochs or --minutes to go on")
        if r.diverged:
            where = (f"the last finite model is in {out} (step {tr.saved_step})"
                     if tr.saved_step is not None else "no model was saved")
            why = ("an update overflowed the parameters" if tr.corrupt
                   else "the loss or gradient overflowed")
            raise CharlstmError(f"training diverged at step {r.steps} ({why}); {where}; "
                                "lower --lr, or --clip")
        if r.interrupted:
            sys.exit(128 + r.signum)


# The settings the default model chooses when not given (sizing.choose).
SIZED = ("hidden", "layers", "dropout", "lr", "batch_size", "seq_len", "cell")


def _given(names) -> set:
    from .sizing import given_options
    ctx = click.get_current_context()
    return given_options(ctx, [n for n in names if n in ctx.params])


def train_command(text: str, m: ModelConfig, c: TrainConfig, out: str | None = None) -> str:
    """The `charlstm train` command line that trains with exactly these
    settings (the budget included), quoted for the shell."""
    budget = (["--steps", c.steps] if c.steps else ["--epochs", f"{c.epochs:g}"] if c.epochs
              else ["--minutes", f"{c.minutes:g}"])
    args = ["charlstm", "train", path_arg(text), "--cell", m.cell, "--layers", m.layers, "--hidden",
            m.hidden, "--dropout", f"{m.dropout:g}", "--lr", f"{c.lr:g}", "--batch-size",
            c.batch_size, "--seq-len", c.seq_len] + budget
    for key, opt in (("forget_bias", "--forget-bias"),):
        if getattr(m, key) != getattr(ModelConfig(), key):
            args += [opt, f"{getattr(m, key):g}"]
    for key, opt in (("schedule", "--schedule"), ("optimizer", "--optimizer"),
                     ("clip", "--clip"), ("state_reset", "--state-reset"),
                     ("val_frac", "--val-frac"), ("rng_seed", "--rng-seed"),
                     ("eval_every", "--eval-every")):
        if getattr(c, key) != getattr(TrainConfig(), key):
            v = getattr(c, key)
            args += [opt, f"{v:g}" if isinstance(v, float) else v]
    if out:
        args += ["--out", path_arg(out)]
    return shell_line(args)


def closing_summary(tr, r, out: str, log_path: str) -> list[str]:
    """What happened: the last and the best validation loss and the step of
    the best, which file holds it, and, once, what to make of a run that
    memorised its text or did not learn."""
    import numpy as np

    from .train import best_path, bits, unigram_loss
    hv = np.asarray(tr.hist_val, float).reshape(-1, 3)
    best_file = best_path(out)
    lines = []
    val = "n/a" if r.val_loss is None else f"{r.val_loss:.4f} nats/char ({bits(r.val_loss):.3f} bits)"
    lines.append(f"step {r.steps:,}: train loss {r.train_loss:.4f}, validation {val}; "
                 f"{r.seconds / 60:.1f} min, {r.chars_per_s:,.0f} chars/s")
    finite = hv[np.isfinite(hv[:, 2])] if len(hv) else hv
    if len(finite):
        k = int(np.argmin(finite[:, 2]))
        best_val, best_step = float(finite[k, 2]), int(finite[k, 0])
        lines.append(f"best validation {best_val:.4f} at step {best_step:,}, in {best_file}")
        last = float(hv[-1, 2])
        if (math.isfinite(last) and last > best_val + max(0.02, 0.01 * best_val)
                and best_step <= 0.75 * r.steps and not r.diverged):
            lines.append(f"note: the validation loss has risen since step {best_step:,} "
                         f"({best_val:.4f} then, {last:.4f} now): the model is memorising its "
                         f"text. The best model is in {best_file}; a smaller --hidden or more "
                         "--dropout would do better on this text.")
        uni = unigram_loss(tr.corpus)
        if best_val > uni - 0.15 and not r.diverged:
            lines.append(f"note: the model did not learn beyond the characters' frequencies "
                         f"(validation {best_val:.3f}; {uni:.3f} for a guess from them alone), "
                         f"in {r.steps:,} step{'s' if r.steps != 1 else ''}. It is likely too big for the budget (try a "
                         "smaller --hidden or more --minutes) or its learning rate is off "
                         "(--lr).")
    lines.append(f"saved {out}; log {log_path}; see the run: "
                 f"{shell_line(['charlstm', 'show', path_arg(out)])}")
    return lines


def check_train_outputs(out: str, text: str, resume: str | None, force: bool) -> str:
    """train's outputs, X, X.best.npz and the log X.log.jsonl, under the rules
    of files.check_output: an existing checkpoint is continued with --resume X
    or replaced with --force; nothing else is ever replaced. Returns the
    log's path."""
    from . import files
    from .train import TrainLog, best_path
    continuing = bool(resume) and os.path.exists(out) and files.same_file(out, resume)
    inputs = {text: "the training text"}
    if resume and not continuing:
        inputs[resume] = "the checkpoint being resumed"
    hint = (f"continue it with --resume {shell_line([path_arg(out)])}, replace it with --force, "
            "or give another --out")
    for path in (out, best_path(out)):
        files.check_output(path, "checkpoint", option="--out", inputs=inputs, force=force,
                           continuing=continuing, exists_hint=hint)
    log = TrainLog.path_for(out)
    files.check_output(log, "log", option="--out", inputs=inputs, force=force or not continuing
                       and not os.path.exists(out), continuing=continuing, exists_hint=hint)
    return log


def _say_schedule(tr, kw, log):
    """Say plainly when a resumed cosine schedule is stretched over a new budget."""
    given = any(kw.get(k) is not None for k in ("epochs", "steps", "minutes"))
    if given and tr.cfg.schedule == "cosine" and tr.state["step"]:
        from .train import lr_at
        log(f"note: the new budget stretches the cosine schedule over it, as if the run had "
            f"been started with this budget: the learning rate goes on at "
            f"{lr_at(tr.cfg, tr.state['step'], tr.progress_frac()):.3g}, which may be above "
            "where it had decayed to")


def _clamps(ctx, param, values):
    out = []
    for v in values:
        try:
            where, value = v.split("=")
            layer, unit = where.split(":")
            out.append((int(layer), int(unit), float(value)))
        except ValueError:
            raise click.BadParameter(f"{v!r}: write LAYER:UNIT=VALUE, e.g. 0:17=0.9") from None
        if not math.isfinite(out[-1][2]):
            raise click.BadParameter(f"{v!r}: the value must be a finite number")
    return tuple(out)


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False), required=False)
@click.option("--seed", default="", help="Prime text: the output starts with it and continues it.")
@click.option("--length", type=click.IntRange(0), default=500, show_default=True,
              help="Characters to generate after the seed.")
@click.option("--temperature", type=FloatRange(0, min_open=True), default=0.8, show_default=True,
              help="Below 1: safer text; above 1: wilder.")
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True,
              help="Sample only among the k likeliest characters (0: all).")
@click.option("--greedy", is_flag=True, help="Always take the likeliest character.")
@click.option("--rng-seed", type=click.IntRange(0, 2 ** 63 - 1), default=None,
              help="Random seed of the sampler; the same value gives the same text.")
@click.option("--weights", type=click.Choice(SAMPLING_WEIGHTS), default=SAMPLING_WEIGHTS[0],
              show_default=True,
              help="Precision of the weight copies the sampler multiplies by: int8 (a scale "
                   "per output) reads a quarter of float32's bytes per character and is "
                   "about 3.5 times as fast; float16 half, about twice as fast; float32 is "
                   "the checkpoint exactly.")
@click.option("--clamp", "clamps", multiple=True, callback=_clamps, metavar="L:U=VALUE",
              help="Hold unit U of layer L (0-based) at VALUE after every step: its cell "
                   "state c, or h for cells without one. Repeatable. Try a unit that "
                   "charlstm inspect finds.")
@click.option("--stop-at", "stops", multiple=True, metavar="STRING",
              help="Stop after the first occurrence of STRING in the continuation (write a "
                   "newline as \\n, e.g. --stop-at '\\n\\n' for a blank line). Repeatable.")
@click.option("-i", "--interactive", is_flag=True,
              help="A prompt loop: each line typed is a seed, and its continuation streams "
                   "back. Ctrl-C stops one continuation, Ctrl-D quits.")
@click.option("--keep-state", is_flag=True,
              help="With --interactive: carry the model's state from one turn to the next.")
def sample(checkpoint, seed, length, temperature, top_k, greedy, rng_seed, weights, clamps,
           stops, interactive, keep_state):
    """Continue the --seed text with a model from CHECKPOINT (default: the
    best model of the newest run in checkpoints/), streaming it to stdout."""
    import numpy as np

    from . import checkpoint as ckpt
    from . import warmup
    from .data import encode_text
    from .sampling import Sampler, check_clamp
    if keep_state and not interactive:
        raise click.UsageError("--keep-state goes with --interactive")
    stops = tuple(x.encode("utf-8").decode("unicode_escape") if "\\" in x else x
                  for x in stops)
    if any(not x for x in stops):
        raise click.BadParameter("give a non-empty STRING", param_hint="--stop-at")
    path = checkpoint or ckpt.newest()
    if not checkpoint:
        echo_err(f"sampling from {path} (the best model of the newest run in checkpoints/)")
    ck = ckpt.load(path)
    model = ckpt.model_from_checkpoint(ck, np.float32)
    check_clamp(model, clamps)                     # bad options: refused before compiling,
    encode_text(seed, ck.vocab)                    # unknown characters before output
    warm_up(warmup.sample_units(model.cfg.cell, weights), echo_err)
    s = Sampler(model, ck.vocab, weights=weights, clamp=clamps)
    options = dict(temperature=temperature, top_k=top_k, greedy=greedy)
    if interactive:
        _interactive(s, length, stops, keep_state, rng_seed, options)
        return
    click.echo(seed, nl=False)
    sys.stdout.flush()
    _continue(s.stream(seed, length, rng_seed=rng_seed, **options), stops)
    click.echo()


def _continue(pieces, stops) -> None:
    """Print the pieces as they come, cut after the first of `stops`."""
    from .sampling import StopAt
    cut = StopAt(stops)
    for piece in pieces:
        click.echo(cut.feed(piece), nl=False)
        sys.stdout.flush()
        if cut.done:
            break
    click.echo(cut.flush(), nl=False)


def _interactive(s, length, stops, keep_state, rng_seed, options) -> None:
    """sample --interactive: a line typed is a seed; its continuation streams
    back. Ctrl-C (SIGINT) stops the continuation, or clears the prompt; Ctrl-D
    ends the loop (exit 0); SIGTERM and SIGHUP end it as any command."""
    import numpy as np

    from . import stopping
    from .data import encode_text
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    echo_err(f"Type a seed and press Enter: the model continues it ({length:,} characters"
             + (", the state kept between turns" if keep_state else "")
             + "). Ctrl-C stops a continuation; Ctrl-D quits.")
    state = s.model.zero_state(1) if keep_state else None
    rng = np.random.default_rng(rng_seed)
    while True:
        try:
            with stopping.interruptible():
                if tty:
                    line = input("> ")
                else:
                    sys.stderr.write("> ")
                    sys.stderr.flush()
                    line = sys.stdin.readline()
                    if not line:
                        raise EOFError
                    line = line.rstrip("\n")
        except EOFError:
            click.echo("", err=True)
            return
        except stopping.Stop as e:
            if e.signum != signal.SIGINT:
                raise
            stopping.reset()
            echo_err("\n(Ctrl-D quits)")
            continue
        try:
            encode_text(line, s.vocab)
        except CharlstmError as e:
            echo_err(str(e))
            continue
        try:
            _continue(s.stream(line, length, state=state, rng=rng, **options), stops)
        except stopping.Stop as e:
            if e.signum != signal.SIGINT:
                raise
            stopping.reset()
            click.echo(" ^C", nl=False)
        click.echo()


def _lags(ctx, param, value):
    try:
        lags = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise click.BadParameter("give whole numbers separated by commas, e.g. 5,10,50") from None
    if not lags or lags[0] < 1 or lags[-1] > 2000:
        raise click.BadParameter("each lag must be from 1 to 2000")
    return lags


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False), required=False)
@model_options_no_cell
@click.option("--cells", default="rnn,lstm", show_default=True,
              help=f"Comma-separated cells to compare, from {', '.join(CELL_NAMES)}.")
@click.option("--match-params", is_flag=True,
              help="Size each model's hidden layer so its parameter count is near the LSTM's.")
@click.option("--seed", default="", help="Prime text for the samples [default: a line of FILE].")
@click.option("--length", type=click.IntRange(1, 100_000), default=300, show_default=True,
              help="Characters per sample (at most 100,000).")
@click.option("--recall-chars", type=click.IntRange(1, 100_000), default=200, show_default=True,
              help="Characters scored in the recall test (at most 100,000).")
@click.option("--context-max", type=click.IntRange(2, 4096), default=512, show_default=True,
              help="Longest context of the context curve (k = 1, 2, 4, ... up to this).")
@click.option("--context-positions", type=click.IntRange(10, 100_000), default=2000,
              show_default=True,
              help="Held-out positions scored at every k of the context curve (at most "
                   "100,000).")
@click.option("--probe", is_flag=True,
              help="Also train every cell on the memory probe at each of --lags (FILE is "
                   "then optional).")
@click.option("--lags", default="5,10,20,50,100,200", show_default=True, callback=_lags,
              help="The probe's lags: filler characters between the key and its recall.")
@click.option("--probe-hidden", type=click.IntRange(1, 4096), default=PROBE_HIDDEN,
              show_default=True, help="Hidden units of the probe's models.")
@click.option("--probe-minutes", type=FloatRange(0, min_open=True), default=None,
              help=f"Budget of each probe model [default: all of them share {PROBE_MINUTES:g} "
                   "minutes, each taking its share of the time left as it starts]; a model "
                   "stops early once it recalls ≥ 99% of held-out keys.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Run folder [default: checkpoints/compare-<timestamp>].")
@click.option("--force", is_flag=True,
              help="Replace an earlier compare run in --out-dir (only a compare run's folder "
                   "is ever replaced).")
@click.option("--jobs", type=click.IntRange(1, 64), default=None,
              help="Models trained at once, each in its own process with its share of the "
                   "cores [default: 2 when there are two or more cores and models].")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def compare(file, cells, match_params, seed, length, recall_chars, context_max,
            context_positions, probe, lags, probe_hidden, probe_minutes, out_dir, force, jobs,
            progress, **kw):
    """Train several cells on FILE with the same data, seed and budget, then
    report losses, speed, samples, the recall of training passages, the
    context curve and gradient flow; with --probe, also the memory probe.

    Unless --eval-every is given, each model is validated every 50 steps on the
    first 100,000 held-out characters, so that the budget goes to training.
    Everything is written to the run folder: checkpoints, results.json,
    compare.png and report.html."""
    from .compare import check_outputs, run_compare
    names = [c.strip() for c in cells.split(",") if c.strip()]
    bad = [c for c in names if c not in CELL_NAMES]
    if bad or not names:
        raise click.BadParameter(f"unknown cell(s) {bad}; choose from {', '.join(CELL_NAMES)}",
                                 param_hint="--cells")
    if len(set(names)) != len(names):
        raise click.BadParameter("a cell is named twice", param_hint="--cells")
    if file is None and not probe:
        raise click.UsageError("give a text FILE to compare on, or --probe for the memory "
                               "probe alone")
    mcfg, tcfg = configs(kw)
    if kw.get("minutes") is None and kw.get("steps") is None and kw.get("epochs") is None:
        tcfg = replace(tcfg, minutes=2.0)
    if kw["eval_every"] == TR.eval_every:     # short comparisons want denser curves, and
        tcfg = replace(tcfg, eval_every=50, eval_chars=100_000)
    probe_cfg = None
    if probe:
        probe_cfg = {"lags": lags, "minutes": None if probe_minutes else PROBE_MINUTES,
                     "model": replace(mcfg, hidden=probe_hidden, dropout=0.0),
                     "train": replace(tcfg, steps=0, epochs=0.0, minutes=probe_minutes or 1.0,
                                      eval_every=50, eval_chars=100_000, state_reset=0.0)}
    out_dir = out_dir or os.path.join("checkpoints",
                                      "compare-" + time.strftime("%Y%m%d-%H%M%S"))
    check_outputs(out_dir, file, names, probe_cfg, force)     # before compiling or training
    from . import warmup
    from .compare import JOBS
    from .workers import job_counts
    threads = job_counts(jobs, len(names), JOBS)[1]  # each model's sampler's
    warm_up([u for c in names for u in
             warmup.train_units(c, "float32", mcfg.layers, dropout=mcfg.dropout > 0,
                                optimizer=tcfg.optimizer)
             + warmup.gradient_units(c, "float64", mcfg.layers)         # gradient flow
             + warmup.sample_units(c, "float32", threads)], echo_err, progress)
    from .stopping import Stop
    try:
        run_compare(file, names, mcfg, tcfg, cell_lr=kw["lr"] is None,
                    match_params=match_params, seed=seed, length=length,
                    recall_chars=recall_chars, out_dir=out_dir, jobs=jobs, progress=progress,
                    context_max=context_max, context_positions=context_positions,
                    probe=probe_cfg, force=True, echo=click.echo, log=echo_err,
                    given=_given(SIZED))
    except Stop as e:
        echo_err(f"stopped by {e.name}: each model's last checkpoint is in {out_dir}; no "
                 "report was written")
        sys.exit(128 + e.signum)


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False), required=False)
@click.option("--text", "text_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Text to run the model over [default: the held-out part of the text it "
                   "was trained on].")
@click.option("--chars", type=click.IntRange(2, 200_000), default=20_000, show_default=True,
              help="Characters of the text to run (at most 200,000, and at most what fits "
                   "1.5 GB of working memory for the model; the page shows the first "
                   "20,000).")
@click.option("--unit", default=None, metavar="L:U[:STATE]",
              help="Show this unit (0-based layer and unit; state c, h or a gate) instead of "
                   "each feature's best.")
@click.option("--top", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Best units listed per feature.")
@click.option("--excerpt", type=click.IntRange(1), default=400, show_default=True,
              help="Characters of coloured text shown per unit in the terminal.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Write the page here [default: <checkpoint>.inspect.html].")
@click.option("--force", is_flag=True,
              help="Replace an existing page (only a page charlstm wrote is ever replaced).")
@click.option("--ablate", multiple=True, metavar="L:U[,L:U…]",
              help="Hold these units (0-based layer:unit) at zero through the text and report "
                   "the loss change, overall and in each feature's classes, and the characters "
                   "it moved most. Repeatable: one ablation each.")
@click.option("--ablate-top", type=click.IntRange(1, 10), default=None,
              help="For each feature, hold its top-k units at zero for k = 1 … K, against k "
                   "random units (5 draws): the loss change on the feature's positions.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead.")
def inspect(checkpoint, text_path, chars, unit, top, excerpt, html_path, force, ablate,
            ablate_top, as_json):
    """See inside the cells of a model: run it over a text and find the units
    that track features of the text (line position, bracket depth, quotes,
    ...), the gates' saturation and the cells that count; print the text
    coloured by each unit and write an HTML page."""
    import json as _json

    import numpy as np

    from . import checkpoint as ckpt
    from . import files
    from . import inspect as I
    from . import inspect_view as view
    path = checkpoint or ckpt.newest()
    ck = ckpt.load(path)
    html_path = html_path or (path[:-4] if path.endswith(".npz") else path) + ".inspect.html"
    inputs = {path: "the checkpoint being inspected", ck.train.text: "the training text"}
    if text_path:
        inputs[text_path] = "the text being inspected"
    files.check_output(html_path, "page", option="--html", inputs=inputs, force=force)
    from . import warmup
    warm_up(warmup.forward_units(ck.model.cell, "float32", ck.model.layers), echo_err)
    with files.locked(html_path):
        res, rec, text, model, ck = I.run_inspect(path, text_path, chars, unit, top,
                                                  log=echo_err, ck=ck, ablate=ablate,
                                                  ablate_top=ablate_top or 0)
        ids, p = I.top_next(rec["logits"], ck.vocab)
        view.write_page(html_path, res, rec, text, ck.vocab, ids, p, path)
    res["html"] = html_path
    if as_json:
        click.echo(_json.dumps({k: res[k] for k in (
            "features", "support", "effects", "ablation", "ablation_top", "base_loss", "gates",
            "counters", "html", "suggestion", "seconds", "chars") if k in res}))
        return
    mode = view.colour_mode(sys.stdout)
    click.echo(res["subtitle"])
    click.echo(f"recorded in {res['seconds']['record']:.2f} s; score: Spearman's |ρ| between a "
               "unit's value after each character and a count, 2·|AUC − ½| for a yes-or-no "
               "feature (1: perfect, 0: none); chance: the best score any unit gets against "
               "the feature shifted round the text")
    for feat, units in res["features"].items():
        i = res["support"][feat]
        where = (f"{i['runs']:,} run{'s' if i['runs'] != 1 else ''}, {i['positions']:,} "
                 f"character{'s' if i['positions'] != 1 else ''}")
        if not units:
            click.echo(f"\n{feat} ({I.FEATURES[feat][1]}): too few to score ({where}; fewer "
                       f"than {I.MIN_RUNS} runs)")
            continue
        click.echo(f"\n{feat} ({I.FEATURES[feat][1]}; {where}; chance {i['chance']:.3f}): "
                   + ", ".join(f"{u['layer']}:{u['unit']} {u['state']} {u['score']:.3f}"
                               for u in units))
        e = res["effects"].get(feat)
        if e and e["on_feature"] is not None:
            click.echo(f"  held at zero, unit {e['unit'][0]}:{e['unit'][1]} costs "
                       f"{e['on_feature']:+.3f} nats/char on the feature's positions beyond "
                       f"its cost elsewhere ({e['overall']:+.3f} overall)")
    shown = ([I.parse_unit(unit, model, rec)] if unit else
             [(u[0]["layer"], u[0]["unit"], u[0]["state"], f)
              for f, u in res["features"].items() if u])
    st = I.states(rec)
    for item in shown:
        l, u, s = item[:3]
        v = st[s][l, :, u].astype(np.float32)
        lo, hi = view.unit_range(v)
        label = f" (best for {item[3]})" if len(item) > 3 else ""
        click.echo(f"\nlayer {l}, unit {u}, {s}{label}, {view.RANGE_NOTE} ({lo:.3g} to "
                   f"{hi:.3g}):")
        click.echo(view.coloured(text[:excerpt], view.scaled(v[:excerpt], lo, hi), mode))
    if mode == "plain":
        click.echo("\n(digits under each character: the unit's value on its own range, 0 at its "
                   "1st percentile ... 9 at its 99th)")
    for g, sat in res["gates"].items():
        if "always_open" in sat:
            click.echo(f"\ngate {g}: {len(sat['always_open'])} units above 0.9 for 90% of the "
                       f"text (long memory), {len(sat['always_shut'])} below 0.1 for 90%")
    if res["counters"]:
        click.echo("\ncounters (c moves by a near-constant step while f, i > 0.9): " + ", ".join(
            f"{c['layer']}:{c['unit']} step {c['step']:+.3f} over {100 * c['coverage']:.0f}% "
            "of the text" for c in res["counters"][:5]))
    else:
        click.echo(f"\ncounters: {res['counters_note']}")
    for a in res["ablation"]:
        units = ", ".join(f"{l}:{u}" for l, u in a["units"])
        click.echo(f"\nheld at zero: {units}: loss {a['loss']:.4f} nats/char "
                   f"({a['loss_change']:+.4f}; {res['base_loss']:.4f} without)")
        for feat, by in a["by_class"].items():
            click.echo(f"  {feat}: " + ", ".join(f"{c} {v:+.4f}" for c, v in by.items()
                                                if v is not None))
        click.echo("  moved most: " + "; ".join(
            f"{m['char']!r} after {m['context'][-12:]!r} {m['p_before']:.2f}→{m['p_after']:.2f}"
            for m in a["moved"][:5]))
    for feat, t in res.get("ablation_top", {}).items():
        rand = np.array([[np.nan if v is None else v for v in row] for row in t["random"]])
        click.echo(f"\n{feat}: its top-k units held at zero: "
                   + " ".join(f"{v:+.3f}" if v is not None else "-" for v in t["top"])
                   + "; k random units (mean of 5): "
                   + " ".join(f"{v:+.3f}" for v in np.nanmean(rand, axis=0)))
    click.echo(f"\npage: {html_path}")
    if res["suggestion"]:
        click.echo(f"try: {res['suggestion']}")


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False), required=False)
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Also draw the learning curves (per step and per minute) into this PNG.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Also write them as a self-contained page.")
@click.option("--force", is_flag=True,
              help="Replace an existing picture or page (only charlstm's own).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead.")
def show(checkpoint, png, html_path, force, as_json):
    """What a checkpoint holds and how its run went: the settings, the text,
    the steps and time, the last and the best validation loss and their
    steps, and the learning curve [default CHECKPOINT: the best model of the
    newest run in checkpoints/]. Works on safetensors exports (settings only)."""
    import json as _json

    from . import checkpoint as ckpt
    from .show import run_show
    path = checkpoint or ckpt.newest()
    if as_json:
        info = run_show(path, png, html_path, force, echo=lambda m: None)
        click.echo(_json.dumps(info))
    else:
        run_show(path, png, html_path, force, echo=click.echo)


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["safetensors", "onnx"]), required=True,
              help="safetensors: torch.nn names (nn.LSTM, nn.GRU, nn.RNN + nn.Linear); onnx: "
                   "the whole model as one graph, the state as inputs and outputs.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file [default: the checkpoint's name with .safetensors or .onnx].")
@click.option("--force", is_flag=True,
              help="Replace an existing export of the same format (nothing else is ever "
                   "replaced).")
def export(checkpoint, fmt, out, force):
    """Export a model for other tools: safetensors that load into PyTorch, or an
    ONNX graph that onnxruntime runs (ONNX needs the export extra). An
    existing file is replaced only with --force, and only if it is an export
    of the same format."""
    from . import stopping
    if out == "":
        raise click.BadParameter("give a file name", param_hint="--out")
    with stopping.interruptible():          # nothing is half-written: the file is renamed in
        path = write_export(checkpoint, fmt, out, force)
    click.echo(f"wrote {path}")


def write_export(path: str, fmt: str, out: str | None = None, force: bool = False) -> str:
    """Write the model of `path` (a checkpoint, or an earlier safetensors
    export) as `fmt` to `out`, under files.check_output's rules: never over
    the checkpoint read, its training text or any file not an export of the
    same kind; an earlier export only with --force; atomically."""
    from . import checkpoint as ckpt
    from . import files
    from .export import need, onnx_model, safetensors_bytes
    ck = ckpt.load(path)
    ckpt.model_from_checkpoint(ck)                 # every parameter checked, finite
    root = path[:-4] if path.endswith(".npz") else os.path.splitext(path)[0]
    out = out or f"{root}.{fmt}"
    inputs = {path: "the checkpoint being exported"}
    if ck.train.text:
        inputs[ck.train.text] = "the training text"
    files.check_output(out, fmt, option="--out", inputs=inputs, force=force)
    if fmt == "safetensors":
        data = safetensors_bytes(ck)
    else:
        need("onnx")
        data = onnx_model(ck).SerializeToString()
    with files.locked(out):
        files.write_bytes(out, data)
    return out


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--trial-minutes", type=FloatRange(0, min_open=True), default=3.0,
              show_default=True,
              help="Each trial's budget: the minutes you mean to train for.")
@click.option("--trials", type=click.IntRange(1), default=None,
              help="Trials in the study in all, on every machine (a rerun runs the missing "
                   "ones) [default: 20 when --minutes is not given].")
@click.option("--minutes", type=FloatRange(0, min_open=True), default=None,
              help="Wall-clock minutes for this run of the search; no trial is begun that "
                   "would end after them.")
@click.option("--cell", type=click.Choice(CELL_NAMES), default=None, help="Fix the cell.")
@click.option("--hidden", type=limit("hidden"), default=None,
              help="Fix the hidden units per layer.")
@click.option("--layers", type=limit("layers"), default=None, help="Fix the layers.")
@click.option("--dropout", type=limit("dropout"), default=None,
              help="Fix the dropout.")
@click.option("--lr", type=limit("lr"), default=None,
              help="Fix the peak learning rate.")
@click.option("--seq-len", type=limit("seq_len"), default=None,
              help="Fix the steps of backpropagation through time.")
@click.option("--batch-size", type=limit("batch_size"), default=None,
              help="Fix the batch size.")
@click.option("--space", "space_file", type=click.Path(exists=True, dir_okay=False),
              default=None,
              help="A search space of your own, JSON or TOML: setting names mapped to a value, "
                   'a list of values, or a range, e.g. {"cell": ["lstm", "gru"], "lr": '
                   '{"low": 0.001, "high": 0.02, "log": true}} (docs/tune.md).')
@click.option("--storage", default=None, metavar="URL",
              help="The study's database, shared by every machine that runs the same command: "
                   "postgresql://user:password@host/db, mysql+pymysql://..., sqlite:///file.db "
                   "[default: a journal file in the run folder].")
@click.option("--study", "study_name", default=None,
              help="The study's name in --storage [default: charlstm-<file name>].")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Run folder: the local study, the best checkpoint, tune.json and tune.png "
                   "[default: checkpoints/tune-<file name>].")
@click.option("--jobs", type=click.IntRange(1, 64), default=None,
              help="Trials at once on this machine, each in its own process with its share "
                   "of the cores [default: 1, on all cores: docs/tune.md].")
@click.option("--json", "as_json", is_flag=True,
              help="Print the results as JSON instead of the table.")
@click.option("--progress/--no-progress", default=True, help="Show the progress bar.")
def tune(file, trial_minutes, trials, minutes, cell, hidden, layers, dropout, lr, seq_len,
         batch_size, space_file, storage, study_name, out_dir, jobs, as_json, progress):
    """Search for the training settings that suit FILE and your time budget.

    Each trial trains a model for --trial-minutes, with settings proposed by
    Optuna's TPE sampler; trials whose validation loss falls behind are pruned.
    The study is kept (Ctrl-C stops cleanly): run the same command again to
    resume it, or the same command on other machines with one --storage to
    share it. Prints the trials, the best settings as a `charlstm train`
    command, and keeps the best model. Needs the tune extra (Optuna)."""
    from . import tune as T
    from . import tune_report as R
    T.need_optuna()
    if trials is None and minutes is None:
        trials = 20
    fixed = {k: v for k, v in dict(cell=cell, hidden=hidden, layers=layers, dropout=dropout,
                                   lr=lr, seq_len=seq_len, batch_size=batch_size).items()
             if v is not None}
    log = echo_err
    if progress:
        from tqdm import tqdm

        def log(msg):
            tqdm.write(msg, file=sys.stderr)
    rep = T.search(file, space_file=space_file, fixed=fixed, trial_minutes=trial_minutes,
                   trials=trials, minutes=minutes, storage_url=storage, study_name=study_name,
                   run_dir=out_dir, jobs=jobs, progress=progress, log=log,
                   warm_up=lambda units, log: warm_up(units, log, progress))
    stop = rep.pop("interrupted")
    if as_json:
        click.echo(R.dumps(rep))
    else:
        click.echo(R.table(rep))
        click.echo(R.summary(rep))
        click.echo(f"wrote {os.path.join(rep['run_dir'], 'tune.json')}"
                   + (f" and {rep['png']}" if rep["png"] else
                      " (no PNG: pip install matplotlib for it)"))
    if stop:
        echo_err(f"stopped by {stop.name}: the study is kept; run the same command to "
                 "resume it")
        sys.exit(128 + stop.signum)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--repeats", type=click.IntRange(3, 100), default=9, show_default=True,
              help="Timed repeats per measurement (medians are reported).")
@click.option("--quick", is_flag=True, help="Only the two smallest training configs.")
@click.option("--no-memory", is_flag=True, help="Skip the 100 MB peak-RSS measurement.")
def bench(as_json, repeats, quick, no_memory):
    """Measure training and sampling speed, start-up and memory on this machine,
    against PyTorch when it is installed (pip install torch==2.13.0)."""
    from . import stopping, warmup
    from .tools import bench as B
    warm_up([u for c in ("lstm", "rnn", "gru", "irnn")
             for u in warmup.train_units(c, "float32", layers=2, dropout=c == "lstm")]
            + [u for w in ("int8", "float16", "float32") for u in warmup.sample_units("lstm", w)],
            echo_err)
    with stopping.interruptible():           # it writes nothing but its own temporary files
        res = B.run(repeats=repeats, quick=quick, memory=not no_memory, log=echo_err)
    click.echo(B.dumps(res) if as_json else B.table(res))


def entry():
    """The `charlstm` command (and python -m charlstm): main, with a stop
    signal's last guard kept to the end of the process (stopping.GRACE)."""
    from . import stopping
    stopping.entry()
    main()


if __name__ == "__main__":
    entry()
