"""charlstm show: what a checkpoint holds and how its run went."""
from __future__ import annotations


import click



@click.command("show")
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

    from .. import checkpoint as ckpt
    from ..lab.show import run_show
    path = checkpoint or ckpt.newest()
    if as_json:
        info = run_show(path, png, html_path, force, echo=lambda m: None)
        click.echo(_json.dumps(info))
    else:
        run_show(path, png, html_path, force, echo=click.echo)
