"""The checkpoint is a file format: a fixture per version must keep loading."""
import os

import numpy as np
import pytest

from charlstm import checkpoint as ckpt
from charlstm.errors import CharlstmError
from charlstm.model import layout
from charlstm.sampling import Sampler

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "checkpoint-v1.npz")


def test_version_1_fixture_loads_and_samples():
    ck = ckpt.load(FIXTURE)
    assert ck.model.cell == "lstm" and ck.model.hidden == 8
    assert set(ck.params) == {name for name, _ in layout(ck.model)}
    assert ck.state["step"] == 20 and ck.opt_m.shape == ck.opt_v.shape
    text = Sampler.from_checkpoint(FIXTURE).text("to be", 30, greedy=True)
    assert text == " \n\nbo \n\nbo t h th th h th h th"


def test_file_holds_format_tag_and_plain_arrays():
    with np.load(FIXTURE, allow_pickle=False) as z:
        assert str(z["format"]) == ckpt.FORMAT and int(z["version"]) == 1
        assert z["param/l0.Wx"].shape == (len(z["vocab"]), 4 * 8)   # torch: weight_ih_l0.T


def test_newer_version_is_refused(tmp_path):
    with np.load(FIXTURE, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["version"] = np.array(ckpt.VERSION + 1)
    p = tmp_path / "future.npz"
    np.savez(p, **arrays)
    with pytest.raises(CharlstmError, match="upgrade charlstm"):
        ckpt.load(str(p))
