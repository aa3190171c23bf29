"""`charlstm export`: a trained model in formats other tools run.

- **safetensors**, with torch.nn's names: an LSTM checkpoint loads into
  `nn.LSTM` + `nn.Linear` (`lstm.weight_ih_l0`, …, `decoder.weight`) with
  strict=True, a GRU into `nn.GRU` (`gru.…`), the RNN and IRNN into `nn.RNN`
  (`rnn.…`; the IRNN with nonlinearity="relu"). The peephole and CIFG cells,
  which PyTorch has no module for, keep charlstm's names (`l0.Wx`, …). The
  vocabulary and the settings are in the metadata, as JSON strings.
- **ONNX**: the whole model as one graph: the one-hot input as a Gather from
  an identity matrix, ONNX's LSTM, GRU or RNN operator per layer (their gate
  orders differ from PyTorch's, so the blocks are permuted), the output layer;
  the recurrent state as graph inputs and outputs (h0, c0 → hT, cT), so that a
  caller can run a character at a time. The vocabulary is in the metadata.

charlstm's layout (model.py) is PyTorch's: weight_ih = Wxᵀ, weight_hh = Wh,
bias_ih = b, bias_hh = 0 (the GRU's bias_hh = [0, 0, b_hn]).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict

import numpy as np

from .config import ModelConfig
from .errors import CharlstmError

TORCH_MODULE = {"lstm": "lstm", "gru": "gru", "rnn": "rnn", "irnn": "rnn"}
ONNX_CELLS = ("lstm", "gru", "rnn", "irnn")
FORMAT = "charlstm-safetensors"


def need(module: str):
    """Import an optional package, or say how to install it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CharlstmError(f"exporting needs the {module} package; install the extra: "
                            "pip install -e '.[export]'") from None


def _charlstm_names(l: int, src: dict) -> dict[str, np.ndarray]:
    """Layer l's parameters under charlstm's own names (cells PyTorch lacks)."""
    return {f"l{l}.{n}": src[f"l{l}.{n}"] for n in ("Wx", "Wh", "b", "ex") if f"l{l}.{n}" in src}


def torch_tensors(cfg: ModelConfig, p: dict) -> dict[str, np.ndarray]:
    """The parameters under torch.nn's names (or charlstm's, for the cells
    PyTorch has no module for), as float32 arrays."""
    out = {}
    mod = TORCH_MODULE.get(cfg.cell)
    H = cfg.hidden
    for l in range(cfg.layers):
        if mod is None:
            out.update(_charlstm_names(l, p))
            continue
        out[f"{mod}.weight_ih_l{l}"] = p[f"l{l}.Wx"].T
        out[f"{mod}.weight_hh_l{l}"] = p[f"l{l}.Wh"]
        out[f"{mod}.bias_ih_l{l}"] = p[f"l{l}.b"]
        bias_hh = np.zeros_like(p[f"l{l}.b"])
        if cfg.cell == "gru":
            bias_hh[2 * H:] = p[f"l{l}.ex"][0]            # b_hn sits inside r ⊙ (…)
        out[f"{mod}.bias_hh_l{l}"] = bias_hh
    out["decoder.weight"] = p["Wy"].T
    out["decoder.bias"] = p["by"]
    return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def params_from_torch(cfg: ModelConfig, t: dict) -> dict[str, np.ndarray]:
    """torch_tensors, undone: charlstm's parameters from the exported tensors."""
    mod = TORCH_MODULE.get(cfg.cell)
    H = cfg.hidden
    p = {}
    for l in range(cfg.layers):
        if mod is None:
            p.update(_charlstm_names(l, t))
            continue
        p[f"l{l}.Wx"] = t[f"{mod}.weight_ih_l{l}"].T
        p[f"l{l}.Wh"] = t[f"{mod}.weight_hh_l{l}"]
        bhh = t[f"{mod}.bias_hh_l{l}"]
        p[f"l{l}.b"] = t[f"{mod}.bias_ih_l{l}"] + bhh     # the two biases add up ...
        if cfg.cell == "gru":                             # ... but the GRU's b_hn sits
            p[f"l{l}.b"][2 * H:] -= bhh[2 * H:]           # inside r ⊙ (h W_hnᵀ + b_hn)
            p[f"l{l}.ex"] = bhh[None, 2 * H:]
    p["Wy"] = t["decoder.weight"].T
    p["by"] = t["decoder.bias"]
    return p


def save_safetensors(ck, path: str) -> None:
    st = need("safetensors.numpy")
    meta = {"format": FORMAT, "vocab": json.dumps(ck.vocab, ensure_ascii=False),
            "model": json.dumps(asdict(ck.model)),
            "torch_module": TORCH_MODULE.get(ck.model.cell, ""),
            "nonlinearity": "relu" if ck.model.cell == "irnn" else "tanh"}
    st.save_file(torch_tensors(ck.model, ck.params), path, metadata=meta)


def load_safetensors(path: str):
    """(ModelConfig, vocabulary, charlstm parameters) from an exported file."""
    st = need("safetensors")
    from .config import from_dict
    try:
        with st.safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:                                   # its own error types
        raise CharlstmError(f"{path} is not a readable safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        raise CharlstmError(f"{path} was not exported by charlstm (no charlstm metadata); "
                            "sample needs the vocabulary and settings charlstm writes there")
    cfg = from_dict(ModelConfig, json.loads(meta["model"]))
    return cfg, json.loads(meta["vocab"]), params_from_torch(cfg, tensors)


def model_from_safetensors(path: str):
    """(model.Model, vocabulary) from an exported safetensors file, checked as
    a checkpoint's parameters are (checkpoint.model_from_checkpoint)."""
    from .checkpoint import Checkpoint, model_from_checkpoint
    from .config import TrainConfig
    cfg, vocab, params = load_safetensors(path)
    return model_from_checkpoint(Checkpoint(model=cfg, train=TrainConfig(), vocab=vocab,
                                            params=params)), vocab


# ---------------------------------------------------------------------------
# ONNX.

def _perm(cell: str):
    """ONNX's gate order in terms of ours: LSTM i, o, f, c (ours i, f, c~, o);
    GRU z, r, h (ours r, z, n); RNN one block."""
    return {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}.get(cell, [0])


def _blocks(a: np.ndarray, order, H: int) -> np.ndarray:
    """Reorder the gate blocks of a's first axis (each H long)."""
    return np.concatenate([a[k * H:(k + 1) * H] for k in order], axis=0)


def onnx_model(ck):
    """The ONNX graph of a checkpoint: inputs tokens (T, B) int64, h0 and (LSTM)
    c0 (L, B, H); outputs logits (T, B, V), hT and (LSTM) cT."""
    onnx = need("onnx")
    from onnx import TensorProto, helper, numpy_helper
    cfg, p = ck.model, ck.params
    if cfg.cell not in ONNX_CELLS:
        raise CharlstmError(f"ONNX has no operator for a {cfg.cell} cell; export it with "
                            "--format safetensors (charlstm's names)")
    L, H, V = cfg.layers, cfg.hidden, cfg.vocab_size
    op = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN", "irnn": "RNN"}[cfg.cell]
    has_c = cfg.cell == "lstm"
    order = _perm("lstm" if cfg.cell == "lstm" else "gru" if cfg.cell == "gru" else "rnn")
    f32 = lambda a: np.ascontiguousarray(a, np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(np.eye(V, dtype=np.float32), "onehot")]
    nodes = [helper.make_node("Gather", ["onehot", "tokens"], ["x0"], axis=0)]   # (T, B, V)
    nodes.append(helper.make_node("Split", ["h0"], [f"h0_{l}" for l in range(L)], axis=0,
                                  num_outputs=L) if L > 1 else
                 helper.make_node("Identity", ["h0"], ["h0_0"]))
    if has_c:
        nodes.append(helper.make_node("Split", ["c0"], [f"c0_{l}" for l in range(L)], axis=0,
                                      num_outputs=L) if L > 1 else
                     helper.make_node("Identity", ["c0"], ["c0_0"]))
    x = "x0"
    for l in range(L):
        W = _blocks(p[f"l{l}.Wx"].T, order, H)[None]                    # (1, G, D)
        R = _blocks(p[f"l{l}.Wh"], order, H)[None]                      # (1, G, H)
        Wb = _blocks(p[f"l{l}.b"], order, H)
        Rb = np.zeros_like(Wb)
        if cfg.cell == "gru":
            Rb = _blocks(np.concatenate([np.zeros(2 * H, np.float32), p[f"l{l}.ex"][0]]),
                         order, H)
        inits += [numpy_helper.from_array(f32(W), f"W{l}"),
                  numpy_helper.from_array(f32(R), f"R{l}"),
                  numpy_helper.from_array(f32(np.concatenate([Wb, Rb])[None]), f"B{l}")]
        ins = [x, f"W{l}", f"R{l}", f"B{l}", "", f"h0_{l}"] + ([f"c0_{l}"] if has_c else [])
        outs = [f"y{l}", f"hT_{l}"] + ([f"cT_{l}"] if has_c else [])
        kw = {"hidden_size": H}
        if cfg.cell == "gru":
            kw["linear_before_reset"] = 1                  # as PyTorch: r ⊙ (h W_hnᵀ + b_hn)
        if op == "RNN":
            kw["activations"] = ["Relu" if cfg.cell == "irnn" else "Tanh"]
        nodes.append(helper.make_node(op, ins, outs, **kw))
        nodes.append(helper.make_node("Squeeze", [f"y{l}", "axis1"], [f"x{l + 1}"]))
        x = f"x{l + 1}"
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    inits += [numpy_helper.from_array(f32(p["Wy"]), "Wy"),
              numpy_helper.from_array(f32(p["by"]), "by")]
    nodes += [helper.make_node("MatMul", [x, "Wy"], ["z"]),
              helper.make_node("Add", ["z", "by"], ["logits"]),
              helper.make_node("Concat", [f"hT_{l}" for l in range(L)], ["hT"], axis=0)]
    if has_c:
        nodes.append(helper.make_node("Concat", [f"cT_{l}" for l in range(L)], ["cT"], axis=0))
    state = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [L, "B", H])  # noqa: E731
    inputs = [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["T", "B"]),
              state("h0")] + ([state("c0")] if has_c else [])
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["T", "B", V]),
               state("hT")] + ([state("cT")] if has_c else [])
    graph = helper.make_graph(nodes, f"charlstm_{cfg.cell}", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              producer_name="charlstm")
    model.ir_version = 8
    helper.set_model_props(model, {"vocab": json.dumps(ck.vocab, ensure_ascii=False),
                                   "model": json.dumps(asdict(cfg))})
    onnx.checker.check_model(model)
    return model


def export(path: str, fmt: str, out: str | None = None, force: bool = False) -> str:
    from . import checkpoint as ckpt
    ck = ckpt.load(path)
    ckpt.model_from_checkpoint(ck)                 # every parameter checked, finite
    root = path[:-4] if path.endswith(".npz") else path
    out = out or f"{root}.{fmt}"
    if os.path.exists(out) and not force:
        raise CharlstmError(f"{out} exists; give --force to replace it, or another --out")
    if fmt == "safetensors":
        save_safetensors(ck, out)
    else:
        onnx = need("onnx")
        onnx.save(onnx_model(ck), out)
    return out
