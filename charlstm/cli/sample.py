"""charlstm sample: text from a model, streamed; with --interactive, a
prompt loop."""
from __future__ import annotations

import math
import signal
import sys

import click

from ..config import SAMPLING_WEIGHTS
from ..errors import CharlstmError
from .options import FloatRange, echo_err, warm_up


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


@click.command("sample")
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
                   "state c, or h for cells without one (and the sLSTM's). Repeatable. Try a unit that "
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

    from .. import checkpoint as ckpt
    from .. import warmup
    from ..data import encode_text
    from ..sampling import Sampler, check_clamp
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
    from ..sampling import StopAt
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

    from .. import stopping
    from ..data import encode_text
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
