"""charlstm train: a model trained on a text, fresh (its size chosen for the
text, the budget and this machine unless given) or resumed; its outputs
checked before any work; the closing summary and the command that trains
the same again."""
from __future__ import annotations

import math
import os
import sys

import click
from click.core import ParameterSource

from ..config import ModelConfig, TrainConfig
from ..errors import CharlstmError
from ..words import path_arg, shell_line
from .options import SIZED, configs, echo_err, options_given, model_options, warm_up


@click.command("train")
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

    from .. import checkpoint as ckpt
    from .. import files
    from ..train import TrainLog, Trainer, default_out
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
            from .. import warmup
            warm_up(warmup.train_units(m.cell, tr.model.dtype, m.layers,
                                       dropout=m.dropout > 0, optimizer=c.optimizer),
                    echo_err, progress)
        else:
            from .. import sizing, warmup
            from ..data import load_corpus
            corpus = load_corpus(file, tcfg.val_frac)
            given = options_given(SIZED)
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
    for key, opt in (("schedule", "--schedule"), ("warmup", "--warmup"),
                     ("optimizer", "--optimizer"),
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

    from ..train import best_path, bits, unigram_loss
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
    from .. import files
    from ..train import TrainLog, best_path
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
        from ..train import lr_at
        log(f"note: the new budget stretches the cosine schedule over it, as if the run had "
            f"been started with this budget: the learning rate goes on at "
            f"{lr_at(tr.cfg, tr.state['step'], tr.progress_frac()):.3g}, which may be above "
            "where it had decayed to")
