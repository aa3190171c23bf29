"""charlstm export: ONNX run by onnxruntime and safetensors loaded into
PyTorch give charlstm's log-probabilities; the state carried through the ONNX
graph a character at a time gives `sample --greedy`'s text; a safetensors file
samples as its checkpoint does. Each test skips where its package is absent."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from charlstm import checkpoint as ckpt
from charlstm.cli import main
from charlstm.config import ModelConfig, TrainConfig
from charlstm.model import Model, Workspace
from charlstm.sampling import Sampler

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 4
VOCAB = "".join(sorted(set(TEXT)))


def checkpoint(tmp_path, cell, layers, seed=0):
    cfg = ModelConfig(cell=cell, hidden=12, layers=layers, dropout=0.0, vocab_size=len(VOCAB))
    m = Model(cfg).init(np.random.default_rng(seed))
    m.flat[:] += np.random.default_rng(seed + 1).normal(0, 0.3, m.size).astype(np.float32)
    if cell == "irnn":                  # a ReLU state that stays bounded over the text
        for l in range(layers):
            m.p[f"l{l}.Wh"] *= 0.5
    path = str(tmp_path / f"{cell}{layers}.npz")
    ckpt.save(ckpt.Checkpoint(model=cfg, train=TrainConfig(), vocab=VOCAB,
                              params={k: v.copy() for k, v in m.p.items()}), path)
    return path, m


def ids(text=TEXT):
    return np.array([VOCAB.index(c) for c in text], np.int64)


def charlstm_logprobs(m, tokens):
    ws = Workspace(m.cfg, len(tokens), 1, m.dtype)
    z = m.forward(ws, tokens[:, None], *m.zero_state(1)).astype(np.float64)
    return z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)


def export(path, fmt):
    r = CliRunner().invoke(main, ["export", path, "--format", fmt], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output.split("wrote ")[1].strip()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "irnn"])
@pytest.mark.parametrize("layers", [1, 2])
def test_onnxruntime_gives_charlstms_log_probabilities(tmp_path, cell, layers):
    ort = pytest.importorskip("onnxruntime")
    path, m = checkpoint(tmp_path, cell, layers)
    sess = ort.InferenceSession(export(path, "onnx"), providers=["CPUExecutionProvider"])
    tokens = ids()
    L, H = layers, 12
    feed = {"tokens": tokens[:, None], "h0": np.zeros((L, 1, H), np.float32)}
    if cell == "lstm":
        feed["c0"] = np.zeros((L, 1, H), np.float32)
    z = sess.run(["logits"], feed)[0][:, 0].astype(np.float64)
    lp = z - z.max(1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(1, keepdims=True))
    np.testing.assert_allclose(lp, charlstm_logprobs(m, tokens), atol=1e-5)
    meta = {p.key: p.value for p in __import__("onnx").load(path[:-4] + ".onnx").metadata_props}
    assert json.loads(meta["vocab"]) == VOCAB


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_state_carried_through_onnx_gives_the_greedy_sample(tmp_path, cell):
    ort = pytest.importorskip("onnxruntime")
    path, m = checkpoint(tmp_path, cell, 2, seed=3)
    sess = ort.InferenceSession(export(path, "onnx"), providers=["CPUExecutionProvider"])
    prime = ids("To be")
    h = np.zeros((2, 1, 12), np.float32)
    c = np.zeros((2, 1, 12), np.float32)
    out = []
    tok = prime
    for _ in range(120):                           # one character a step, the state carried
        feed = {"tokens": tok[:, None], "h0": h}
        if cell == "lstm":
            feed["c0"] = c
            z, h, c = sess.run(["logits", "hT", "cT"], feed)
        else:
            z, h = sess.run(["logits", "hT"], feed)
        nxt = int(z[-1, 0].argmax())
        out.append(nxt)
        tok = np.array([nxt], np.int64)
    text = "".join(VOCAB[i] for i in out)
    want = Sampler.from_checkpoint(path, weights="float32").text("To be", 120, greedy=True)
    assert text == want


@pytest.mark.parametrize("cell,module", [("lstm", "LSTM"), ("gru", "GRU"), ("rnn", "RNN"),
                                         ("irnn", "RNN")])
def test_safetensors_load_into_pytorch(tmp_path, cell, module):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    path, m = checkpoint(tmp_path, cell, 2)
    tensors = st.load_file(export(path, "safetensors"))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            kw = {"nonlinearity": "relu"} if cell == "irnn" else {}
            setattr(self, module.lower() if module != "RNN" else "rnn",
                    getattr(torch.nn, module)(len(VOCAB), 12, 2, **kw))
            self.decoder = torch.nn.Linear(12, len(VOCAB))

    net = Net().double()
    net.load_state_dict({k: v.double() for k, v in tensors.items()}, strict=True)
    tokens = ids()
    x = torch.nn.functional.one_hot(torch.tensor(tokens), len(VOCAB)).double()[:, None]
    y, _ = getattr(net, "rnn" if module == "RNN" else module.lower())(x)
    lp = torch.log_softmax(net.decoder(y[:, 0]), -1).detach().numpy()
    np.testing.assert_allclose(lp, charlstm_logprobs(m, tokens), atol=1e-5)


def _readme_cell(torch, cell, t, k, x, h, c):
    """One step of layer k of `cell`, written from the README's equations (How it
    works: the LSTM's successors), on the exported tensors t."""
    a = x @ t[f"l{k}.Wx"] + t[f"l{k}.b"]
    H = h.shape[-1]
    if cell == "mingru":
        z = torch.sigmoid(a[..., :H])
        return (1 - z) * h + z * a[..., H:], c
    if cell == "minlstm":
        f, i = torch.sigmoid(a[..., :H]), torch.sigmoid(a[..., H:2 * H])
        return (f * h + i * a[..., 2 * H:]) / (f + i), c
    pre = a + h @ t[f"l{k}.Wh"].T                                   # slstm
    z, it = torch.tanh(pre[..., :H]), pre[..., H:2 * H]
    f, o = torch.sigmoid(pre[..., 2 * H:3 * H]), torch.sigmoid(pre[..., 3 * H:])
    cp, n_prev, m_prev = c
    m = torch.maximum(torch.log(f) + m_prev, it)
    ip, fp = torch.exp(it - m), torch.exp(torch.log(f) + m_prev - m)
    cn, nn = fp * cp + ip * z, fp * n_prev + ip
    return o * cn / nn, (cn, nn, m)


@pytest.mark.parametrize("cell", ["mingru", "minlstm", "slstm"])
def test_safetensors_of_the_successors_score_as_the_readme_says(tmp_path, cell):
    """A plain PyTorch loop written from the README's equations, on the exported
    tensors, gives charlstm's log-probabilities (2 layers)."""
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    path, m = checkpoint(tmp_path, cell, 2)
    t = {k: v.double() for k, v in st.load_file(export(path, "safetensors")).items()}
    assert ("l0.Wh" in t) == (cell == "slstm")
    tokens = ids()
    H = 12
    hs = [torch.zeros(H, dtype=torch.float64) for _ in range(2)]
    cs = [tuple(torch.zeros(H, dtype=torch.float64) for _ in range(3)) for _ in range(2)]
    out = []
    for tok in tokens:
        x = torch.nn.functional.one_hot(torch.tensor(int(tok)), len(VOCAB)).double()
        for k in range(2):
            hs[k], cs[k] = _readme_cell(torch, cell, t, k, x, hs[k], cs[k])
            x = hs[k]
        out.append(torch.log_softmax(x @ t["decoder.weight"].T + t["decoder.bias"], -1))
    lp = torch.stack(out).numpy()
    np.testing.assert_allclose(lp, charlstm_logprobs(m, tokens), atol=1e-4)


def test_a_safetensors_file_samples_as_its_checkpoint(tmp_path):
    pytest.importorskip("safetensors")
    for cell in ("lstm", "gru", "cifg", "lstm-peephole"):
        path, _ = checkpoint(tmp_path, cell, 2, seed=7)
        st_path = export(path, "safetensors")
        runs = [CliRunner().invoke(main, ["sample", p, "--seed", "To", "--length", "200",
                                          "--rng-seed", "5"], catch_exceptions=False)
                for p in (path, st_path)]
        assert runs[0].exit_code == runs[1].exit_code == 0
        assert runs[0].stdout == runs[1].stdout, cell


def test_export_refuses_what_it_cannot_do(tmp_path):
    pytest.importorskip("onnx")
    path, _ = checkpoint(tmp_path, "cifg", 1)
    r = CliRunner().invoke(main, ["export", path, "--format", "onnx"])
    assert r.exit_code == 1 and "safetensors" in r.output
    export(path, "safetensors")
    r = CliRunner().invoke(main, ["export", path, "--format", "safetensors"])
    assert r.exit_code == 1 and "--force" in r.output
