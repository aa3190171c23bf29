"""The command line: Click checks the options, the modules do the work. One
module per command (train, sample, show, compare, inspect, export, tune,
bench), the options they share in options.py, the group here.

Heavy modules (NumPy, Numba) are imported inside the commands, so --help is
instant. Problems the user can fix are raised as CharlstmError and printed as
one line (exit 1); bad options are usage errors (exit 2)."""
from __future__ import annotations

import os
import sys

import click

from ..errors import CharlstmError
from . import bench, compare, export, inspect, sample, show, train, tune


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
        from .. import files
        files.forget_made_folders()
        try:
            return self._invoke(ctx)
        except BaseException:
            files.remove_made_folders()          # a failed command leaves no empty folder
            raise

    def _invoke(self, ctx):
        from .. import stopping
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


for command in (train.train, sample.sample, compare.compare, inspect.inspect, show.show,
                export.export, tune.tune, bench.bench):
    main.add_command(command)


def entry():
    """The `charlstm` command (and python -m charlstm): main, with a stop
    signal's last guard kept to the end of the process (stopping.GRACE)."""
    from .. import stopping
    stopping.entry()
    main()
