"""charlstm tune: the search for the training settings that suit a text and
a budget (lab/tune)."""
from __future__ import annotations

import os
import sys

import click

from ..config import CELL_NAMES
from .options import FloatRange, echo_err, limit, warm_up


@click.command("tune")
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
    from ..lab.tune.report import dumps, summary, table
    from ..lab.tune.run import need_optuna, search
    need_optuna()
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
    rep = search(file, space_file=space_file, fixed=fixed, trial_minutes=trial_minutes,
               trials=trials, minutes=minutes, storage_url=storage, study_name=study_name,
               run_dir=out_dir, jobs=jobs, progress=progress, log=log,
               warm_up=lambda units, log: warm_up(units, log, progress))
    stop = rep.pop("interrupted")
    if as_json:
        click.echo(dumps(rep))
    else:
        click.echo(table(rep))
        click.echo(summary(rep))
        click.echo(f"wrote {os.path.join(rep['run_dir'], 'tune.json')}"
                   + (f" and {rep['png']}" if rep["png"] else
                      " (no PNG: pip install matplotlib for it)"))
    if stop:
        echo_err(f"stopped by {stop.name}: the study is kept; run the same command to "
                 "resume it")
        sys.exit(128 + stop.signum)
