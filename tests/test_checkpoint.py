"""The checkpoint is a file format: a fixture per version must keep loading."""
import os

import numpy as np
import pytest

from charlstm import checkpoint as ckpt
from charlstm.errors import CharlstmError
from charlstm.model import layout
from charlstm.sampling import Sampler

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
FIXTURE = os.path.join(FIXTURES, "checkpoint-v1.npz")


GREEDY = {1: " \n\nbo \n\nbo t h th th h th h th", 2: " \n\nbo \n\nbo t h th th h th h th",
          3: "bububububububububububububububu"}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_fixture_of_each_version_loads_and_samples(version):
    path = os.path.join(FIXTURES, f"checkpoint-v{version}.npz")
    ck = ckpt.load(path)
    assert ck.model.cell == "lstm" and ck.model.hidden == 8
    assert {name: shape for name, shape in layout(ck.model)} == \
        {name: p.shape for name, p in ck.params.items()}
    assert ck.state["step"] == 20 and ck.opt_m.shape == ck.opt_v.shape
    text = Sampler.from_checkpoint(path).text("to be", 30, greedy=True)
    assert text == GREEDY[version]
    assert (ck.train.text_sha256 != "") == (version >= 3)     # the text's digest, from v3


def test_version_1_upgrade_transposes_wh_and_its_moments():
    """Version 1 stored Wh as (H, G); version 2 as (G, H). The Adam moments in
    the flat buffer must move with their parameters, or a resumed run would
    apply them to the wrong weights."""
    with np.load(FIXTURE, allow_pickle=False) as z:
        old = {k: z[k] for k in z.files}
    new = ckpt.load(FIXTURE)
    H, G = old["param/l0.Wh"].shape
    np.testing.assert_array_equal(new.params["l0.Wh"], old["param/l0.Wh"].T)
    start = sum(int(np.prod(s)) for name, s in layout(new.model)[:1])     # after l0.Wx
    for key, moment in (("opt/m", new.opt_m), ("opt/v", new.opt_v)):
        seg = old[key][start:start + H * G].reshape(H, G)
        np.testing.assert_array_equal(moment[start:start + H * G].reshape(G, H), seg.T)
        np.testing.assert_array_equal(moment[:start], old[key][:start])


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
