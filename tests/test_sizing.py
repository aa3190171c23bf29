import json
import time
"""The default model (sizing.py): chosen for the budget, the text and the
machine; every option given wins and the rest is chosen around it; the
choice is printed, stored and reproduced by the command printed with it."""
import shlex

import numpy as np
import pytest
from click.testing import CliRunner

from charlstm import checkpoint as ckpt
from charlstm import sizing
from charlstm.cli import main
from charlstm.config import ModelConfig, TrainConfig
from charlstm.data import load_corpus

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 400


@pytest.fixture
def text(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(TEXT, encoding="utf-8")
    return str(p)


def fake_speeds(rate=1e11, T=TrainConfig.seq_len):
    """Steps per second in proportion to 1/FLOPs per step, as the kernels run."""
    def sps(cell, hidden, layers, dropout):
        return rate / (6 * (4 * hidden * hidden + 60 * hidden) * 32 * T)
    sps.source = lambda: "timed here"
    sps.keep = lambda: None
    return sps


@pytest.mark.parametrize("T", [25, 50, 100])
def test_the_largest_size_that_sees_enough_characters_in_the_time(text, T):
    """The threshold counts characters, whatever the window: the same size is
    chosen at any --seq-len that runs at the same characters per second."""
    corpus = load_corpus(text, 0.1)
    c = sizing.choose(corpus, ModelConfig(), TrainConfig(minutes=3, seq_len=T), {"seq_len"},
                      speeds=fake_speeds(T=T))
    assert c.chars == c.steps * 32 * T >= sizing.MIN_CHARS
    bigger = [H for H in sizing.CANDIDATES if H > c.model.hidden]
    assert bigger
    assert 180 * fake_speeds(T=T)("lstm", bigger[0], 1, 0.5) * 0.95 * 32 * T < sizing.MIN_CHARS
    assert c.model.hidden == sizing.choose(corpus, ModelConfig(), TrainConfig(minutes=3), set(),
                                           speeds=fake_speeds()).model.hidden


def test_a_step_budget_sees_enough_characters_per_weight(text):
    corpus = load_corpus(text, 0.1)
    c = sizing.choose(corpus, ModelConfig(), TrainConfig(steps=3000), set())
    assert c.chars / c.params >= sizing.CHARS_PER_WEIGHT
    bigger = [H for H in sizing.CANDIDATES if H > c.model.hidden]
    if bigger:
        assert 3000 * 32 * TrainConfig.seq_len / sizing.n_params_of("lstm", bigger[0], 1, corpus.V) \
            < sizing.CHARS_PER_WEIGHT


def test_more_time_gives_a_bigger_model(text):
    corpus = load_corpus(text, 0.1)
    sizes = [sizing.choose(corpus, ModelConfig(), TrainConfig(minutes=m), set(),
                           speeds=fake_speeds()).model.hidden for m in (0.2, 2, 20, 200)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_a_step_budget_needs_no_timing(text):
    corpus = load_corpus(text, 0.1)
    c = sizing.choose(corpus, ModelConfig(), TrainConfig(steps=500), set())
    assert c.speed_source == "" and c.steps == 500


def test_options_given_win_and_the_rest_is_chosen_around_them(text):
    corpus = load_corpus(text, 0.1)
    c = sizing.choose(corpus, ModelConfig(hidden=512), TrainConfig(steps=50), {"hidden"})
    assert c.model.hidden == 512
    assert c.model.dropout == sizing.dropout_for(c.chars / len(corpus.train))
    c = sizing.choose(corpus, ModelConfig(dropout=0.3), TrainConfig(steps=50, lr=0.004),
                      {"dropout", "lr"})
    assert c.model.dropout == 0.3 and c.train.lr == 0.004


def test_dropout_follows_the_passes_over_the_text():
    assert sizing.dropout_for(0.5) == 0.0
    assert sizing.dropout_for(0.5) <= sizing.dropout_for(3) <= sizing.dropout_for(50)


def test_speeds_are_cached_for_this_machine(text, tmp_path, monkeypatch):
    monkeypatch.setattr(sizing, "_speed_path", lambda: str(tmp_path / "speeds.json"))
    corpus = load_corpus(text, 0.1)
    s1 = sizing.Speeds(corpus, 4, 16, threads=1)
    v = s1("lstm", 16, 1, 0.0)
    s1("lstm", 24, 1, 0.0)
    s1.keep()
    assert v > 0 and s1.source() == "timed here"
    s2 = sizing.Speeds(corpus, 4, 16, threads=1)
    v2 = s2("lstm", 16, 1, 0.0)          # cached, and CHECK_HIDDEN is not: this one timed now
    assert v2 == s2.new[s2._key("lstm", 16, 1, 0.0)] and s2.scale > 0
    assert s2.source() == "timed here"   # ... so no cached speed has answered yet
    s2("lstm", 24, 1, 0.0)
    assert s2.source().startswith("cached for this machine")


def test_cached_speeds_are_scaled_to_a_timing_now(text, tmp_path, monkeypatch):
    """A cache filled on a busy machine (here: speeds a third of the truth)
    does not size a quiet run: one size is timed now, the rest scaled."""
    monkeypatch.setattr(sizing, "_speed_path", lambda: str(tmp_path / "speeds.json"))
    corpus = load_corpus(text, 0.1)
    timings = []
    monkeypatch.setattr(sizing, "time_steps", lambda c, cell, H, *a: timings.append(H) or 300.0)
    s = sizing.Speeds(corpus, 4, 16, threads=1)
    sizing.save_speeds({s._key("lstm", H, 1, 0.0): 100.0 for H in (64, 256, 512)})
    s = sizing.Speeds(corpus, 4, 16, threads=1)
    assert s("lstm", 64, 1, 0.0) == pytest.approx(300.0)      # 100 cached × 3
    assert s("lstm", 512, 1, 0.0) == pytest.approx(300.0)
    assert timings == [256] and s.scale == pytest.approx(3.0)  # CHECK_HIDDEN, timed once
    assert s.source() == "cached for this machine, scaled ×3.00 to a timing now"
    s("lstm", 1024, 1, 0.0)                                     # not cached: timed
    assert timings == [256, 1024] and s.source().startswith("partly timed here")


def test_what_is_kept_stays_at_the_level_of_the_cache(text, tmp_path, monkeypatch):
    """A cache filled on a busy machine, then used on a quiet one (three times
    the speed): the size timed now for the ratio is not kept again, and a size
    timed now beside the cached ones is kept divided by the ratio, so that the
    next run scales every size alike and keeps choosing by true speeds."""
    monkeypatch.setattr(sizing, "_speed_path", lambda: str(tmp_path / "speeds.json"))
    corpus = load_corpus(text, 0.1)
    true = {64: 900.0, 256: 300.0, 512: 90.0, 1024: 30.0}      # quiet, steps/s
    timings = []
    monkeypatch.setattr(sizing, "time_steps",
                        lambda c, cell, H, *a: timings.append(H) or true[H])
    s = sizing.Speeds(corpus, 4, 16, threads=1)
    sizing.save_speeds({s._key("lstm", H, 1, 0.0): true[H] / 3 for H in (64, 256, 512)})
    for run in range(3):
        s = sizing.Speeds(corpus, 4, 16, threads=1)
        for H in (64, 512, 1024):
            assert s("lstm", H, 1, 0.0) == pytest.approx(true[H])
        s.keep()
        kept = sizing.load_speeds()
        for H in (64, 256, 512, 1024):                        # one level: a third of true
            assert kept[s._key("lstm", H, 1, 0.0)] == pytest.approx(true[H] / 3)
    assert timings == [256, 1024, 256, 256]           # 1024 timed once, then cached
    s = sizing.Speeds(corpus, 4, 16, threads=1)       # as `--hidden 128` asks: a size
    true[128] = 600.0                                 # not cached, first of all
    assert s("lstm", 128, 1, 0.0) == pytest.approx(600.0)
    assert timings[-2:] == [256, 128] and s.source() == "timed here"
    s.keep()
    assert sizing.load_speeds()[s._key("lstm", 128, 1, 0.0)] == pytest.approx(200.0)


def test_a_cache_without_the_check_size_is_still_scaled_and_joined(text, tmp_path,
                                                                    monkeypatch):
    """When neither CHECK_HIDDEN nor the size asked is cached (256 expired
    first, say), another cached size of the kind gives the ratio, and the
    fresh timing is kept at the cache's level; a size asked first and timed
    for the ratio says "timed here"."""
    monkeypatch.setattr(sizing, "_speed_path", lambda: str(tmp_path / "speeds.json"))
    corpus = load_corpus(text, 0.1)
    true = {64: 900.0, 256: 300.0, 512: 90.0, 1024: 30.0}
    timings = []
    monkeypatch.setattr(sizing, "time_steps",
                        lambda c, cell, H, *a: timings.append(H) or true[H])
    s = sizing.Speeds(corpus, 4, 16, threads=1)
    sizing.save_speeds({s._key("lstm", H, 1, 0.0): true[H] / 3 for H in (64, 512)})
    s = sizing.Speeds(corpus, 4, 16, threads=1)
    assert s("lstm", 1024, 1, 0.0) == pytest.approx(30.0)
    assert timings == [64, 1024] and s.scale == pytest.approx(3.0)
    s.keep()
    assert sizing.load_speeds()[s._key("lstm", 1024, 1, 0.0)] == pytest.approx(10.0)
    s = sizing.Speeds(corpus, 4, 16, threads=1)
    assert s("lstm", 512, 1, 0.0) == pytest.approx(90.0) and s.source() == "timed here"


def test_a_speed_timed_long_ago_is_timed_again(text, tmp_path, monkeypatch):
    """A timing is trusted for SPEED_HOURS: the load it may have seen passes."""
    monkeypatch.setattr(sizing, "_speed_path", lambda: str(tmp_path / "speeds.json"))
    corpus = load_corpus(text, 0.1)
    s1 = sizing.Speeds(corpus, 4, 16, threads=1)
    s1("lstm", 16, 1, 0.0)
    s1.keep()
    (key,) = sizing.load_speeds()
    assert sizing.load_speeds(now=time.time() + 3600 * sizing.SPEED_HOURS + 1) == {}
    d = json.loads((tmp_path / "speeds.json").read_text())
    d[sizing.machine_key()][key]["at"] -= 3600 * sizing.SPEED_HOURS + 1
    (tmp_path / "speeds.json").write_text(json.dumps(d))
    s2 = sizing.Speeds(corpus, 4, 16, threads=1)
    s2("lstm", 16, 1, 0.0)
    assert s2.source() == "timed here"
    d[sizing.machine_key()][key] = 123.0                  # the older file's bare number
    (tmp_path / "speeds.json").write_text(json.dumps(d))
    assert sizing.load_speeds() == {}


@pytest.mark.parametrize("extra", [[], ["--hidden", "768"]], ids=["chosen", "warmed up"])
def test_train_prints_stores_and_reproduces_its_choice(text, tmp_path, extra):
    out = tmp_path / "m.npz"
    r = CliRunner().invoke(main, ["train", text, "--steps", "30", "--batch-size", "4",
                                  "--seq-len", "16", "--out", str(out), "--no-progress"] + extra)
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("model: "))
    ck = ckpt.load(str(out))
    assert f"×{ck.model.hidden}," in line and f"dropout {ck.model.dropout:g}" in line
    assert ck.train.warmup == sizing.warmup_for(ck.model.hidden)
    assert ("warm-up" in line) == (ck.train.warmup > 0), line
    again = next(ln for ln in r.output.splitlines() if ln.startswith("the same run again: "))
    args = shlex.split(again.split(": ", 1)[1])[1:]
    out2 = tmp_path / "again.npz"
    args[args.index("--out") + 1] = str(out2)
    r2 = CliRunner().invoke(main, args + ["--no-progress"])
    assert r2.exit_code == 0, r2.output
    ck2 = ckpt.load(str(out2))
    assert ck2.model == ck.model and ck2.train == ck.train
    for name in ck.params:
        np.testing.assert_array_equal(ck.params[name], ck2.params[name])


def test_the_warm_up_comes_with_the_big_models_and_a_given_one_wins(text):
    """A warm-up of WARMUP_SHARE of the budget from WARMUP_FROM units on,
    whether the size is chosen or given; --warmup, given, wins."""
    corpus = load_corpus(text, 0.1)
    for H in sizing.CANDIDATES:
        c = sizing.choose(corpus, ModelConfig(hidden=H), TrainConfig(minutes=3), {"hidden"},
                          speeds=fake_speeds())
        assert c.train.warmup == (sizing.WARMUP_SHARE if H >= sizing.WARMUP_FROM else 0.0)
    big = sizing.choose(corpus, ModelConfig(), TrainConfig(minutes=600), set(),
                        speeds=fake_speeds(rate=1e13))
    assert big.model.hidden >= sizing.WARMUP_FROM and big.train.warmup == sizing.WARMUP_SHARE
    for given in (0.0, 0.1):
        c = sizing.choose(corpus, ModelConfig(hidden=1024), TrainConfig(minutes=3, warmup=given),
                          {"hidden", "warmup"}, speeds=fake_speeds())
        assert c.train.warmup == given


@pytest.mark.parametrize("minutes, shown", [(0.001, r"0\.\d+ characters"), (3, r"\d+ characters")])
def test_the_line_never_says_zero_characters_per_weight(text, minutes, shown):
    """A model that sees fewer characters than it has weights shows the
    ratio to one figure, never 0."""
    import re
    corpus = load_corpus(text, 0.1)
    c = sizing.choose(corpus, ModelConfig(hidden=768), TrainConfig(minutes=minutes), {"hidden"},
                      speeds=fake_speeds())
    assert re.search(shown + " per weight", c.reason), c.reason
    assert " 0 characters" not in c.reason
