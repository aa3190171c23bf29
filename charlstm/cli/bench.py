"""charlstm bench: training and sampling speed, start-up and memory on this
machine (tools/bench.py)."""
from __future__ import annotations


import click

from .options import echo_err, warm_up


@click.command("bench")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--repeats", type=click.IntRange(3, 100), default=9, show_default=True,
              help="Timed repeats per measurement (medians are reported).")
@click.option("--quick", is_flag=True, help="Only the two smallest training configs.")
@click.option("--no-memory", is_flag=True, help="Skip the 100 MB peak-RSS measurement.")
def bench(as_json, repeats, quick, no_memory):
    """Measure training and sampling speed, start-up and memory on this machine,
    against PyTorch when it is installed (pip install torch==2.13.0)."""
    from .. import stopping, warmup
    from ..tools.bench import TRAIN_CONFIGS, dumps, run, table
    warm_up([u for c in dict.fromkeys(row[0] for row in TRAIN_CONFIGS)
             for u in warmup.train_units(c, "float32", layers=2, dropout=c == "lstm")]
            + [u for w in ("int8", "float16", "float32") for u in warmup.sample_units("lstm", w)],
            echo_err)
    with stopping.interruptible():           # it writes nothing but its own temporary files
        res = run(repeats=repeats, quick=quick, memory=not no_memory, log=echo_err)
    click.echo(dumps(res) if as_json else table(res))
