"""charlstm export: a model written in a format other tools run; the
output checked against the checkpoint read and its text, then written
atomically."""
from __future__ import annotations

import os

import click



@click.command("export")
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
    from .. import stopping
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
    from .. import checkpoint as ckpt
    from .. import files
    from ..export import need, onnx_model, safetensors_bytes
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
