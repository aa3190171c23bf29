"""charlstm inspect: what the cells of a model do (lab/inspect)."""
from __future__ import annotations

import click

from .options import echo_err, warm_up


@click.command("inspect")
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

    from .. import checkpoint as ckpt
    from .. import files
    from ..lab.inspect import probe
    from ..lab.inspect import view
    path = checkpoint or ckpt.newest()
    ck = ckpt.load(path)
    html_path = html_path or (path[:-4] if path.endswith(".npz") else path) + ".inspect.html"
    inputs = {path: "the checkpoint being inspected", ck.train.text: "the training text"}
    if text_path:
        inputs[text_path] = "the text being inspected"
    files.check_output(html_path, "page", option="--html", inputs=inputs, force=force)
    from .. import warmup
    warm_up(warmup.forward_units(ck.model.cell, "float32", ck.model.layers), echo_err)
    with files.locked(html_path):
        res, rec, text, model, ck = probe.run_inspect(path, text_path, chars, unit, top,
                                                      log=echo_err, ck=ck, ablate=ablate,
                                                      ablate_top=ablate_top or 0)
        ids, p = probe.top_next(rec["logits"], ck.vocab)
        view.write_page(html_path, res, rec, text, ck.vocab, ids, p, path)
    res["html"] = html_path
    if as_json:
        click.echo(_json.dumps({k: res[k] for k in (
            "features", "support", "effects", "ablation", "ablation_top", "base_loss", "gates",
            "counters", "html", "suggestion", "seconds", "chars") if k in res}))
        return
    view.print_report(res, rec, text, model, unit, excerpt, html_path, click.echo)
