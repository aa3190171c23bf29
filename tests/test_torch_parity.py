"""Training in lock-step with PyTorch from the same weights: the same batches,
Adam and clipping must give the same losses step after step (skipped when
torch is not installed)."""
import numpy as np
import pytest

from charlstm.config import ModelConfig, TrainConfig
from charlstm.data import Corpus
from charlstm.train import Trainer

torch = pytest.importorskip("torch")


def pair(cell, V, H, B, T, steps):
    """Ours and PyTorch's trainer, from the same weights."""
    from charlstm.tools.rival import TorchTrainer
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, B * (T * 10 + 1)).astype(np.uint8)
    corpus = Corpus("".join(chr(65 + k) for k in range(V)), ids, ids[:200])
    ours = Trainer("<mem>", ModelConfig(cell=cell, hidden=H, dropout=0.0, forget_bias=0.0),
                   TrainConfig(seq_len=T, batch_size=B, lr=2e-3, schedule="constant", state_reset=0.0,
                               warmup_steps=0, steps=steps, clip=1.0),
                   "/dev/null", progress=False, log=lambda m: None, corpus=corpus, workers=2)
    ours.model.p["by"][:] = rng.uniform(-0.1, 0.1, V)
    theirs = TorchTrainer(cell, V, H, 1, B, T, lr=2e-3, clip=1.0, threads=1)
    p = ours.model.p
    with torch.no_grad():
        theirs.rnn.weight_ih_l0.copy_(torch.from_numpy(p["l0.Wx"].T.copy()))
        theirs.rnn.weight_hh_l0.copy_(torch.from_numpy(p["l0.Wh"].copy()))
        theirs.rnn.bias_ih_l0.copy_(torch.from_numpy(p["l0.b"].copy()))
        hh = np.zeros(p["l0.b"].shape, np.float32)
        if cell == "gru":
            hh[2 * H:] = p["l0.ex"][0]
        theirs.rnn.bias_hh_l0.copy_(torch.from_numpy(hh))
        theirs.out.weight.copy_(torch.from_numpy(p["Wy"].T.copy()))
        theirs.out.bias.copy_(torch.from_numpy(p["by"].copy()))
    if cell != "gru":     # torch has a second, redundant bias; ours has one: freeze it
        theirs.rnn.bias_hh_l0.requires_grad_(False)
    else:                 # GRU: only b_hn (our ex) is not redundant
        mask = torch.zeros(3 * H)
        mask[2 * H:] = 1
        theirs.rnn.bias_hh_l0.register_hook(lambda g: g * mask)
    return ours, theirs


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_training_matches_pytorch_step_by_step(cell):
    steps = 40
    ours, theirs = pair(cell, 20, 32, 6, 15, steps)
    for k in range(steps):
        x, y = ours.batches.get(ours.state["batch"])
        if ours.state["batch"] == 0:      # a new epoch starts from a zero state in both
            theirs.state = None
        a = theirs.step(np.array(x), np.array(y))
        b = ours.step()
        # float32 rounding (and our rational tanh) drift apart slowly through the
        # chaotic dynamics; a real difference shows in the first steps
        assert abs(a - b) < (2e-5 if k < 5 else 3e-3), (k, a, b)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_validation_loss_matches_pytorch(cell):
    """Both score every character of the held-out text but the first of each
    stream, the rest of each stream after the whole windows included."""
    ours, theirs = pair(cell, 20, 32, 6, 15, 1)
    ids = np.random.default_rng(1).integers(0, 20, 1010).astype(np.uint8)
    T, B = 15, 6                         # what ours picks for 1010 characters
    assert (len(ids) // B - 1) % T, "the streams should not be whole windows"
    a, b = theirs.evaluate(ids, T, B), ours.evaluate(ids)
    assert abs(a - b) < 2e-5, (a, b)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_pytorch_sampling_loops_agree(cell):
    """The bench's two PyTorch sampling loops (nn.LSTMCell copies of the layers,
    and the module called per character) compute the same states."""
    from charlstm.tools.rival import TorchTrainer
    tr = TorchTrainer(cell, 11, 16, 2, 1, 1, threads=1)
    cells, s1, s2 = tr._make_cell_step(), None, None
    with torch.no_grad():
        for idx in [3, 5, 7, 1, 0]:
            x = tr.eye[idx].view(1, -1)
            h1, s1 = tr._module_step(x, s1)
            h2, s2 = cells(x, s2)
            assert torch.allclose(h1, h2, atol=1e-6)
    assert len(tr.sample(20, loop="cell")) == len(tr.sample(20, loop="module")) == 20
