"""charlstm inspect: the features of a text, and hand-built checkpoints whose
planted units (a line-position counter, a bracket-depth counter, a quote
switch) must be ranked first among random distractors."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from charlstm import checkpoint as ckpt
from charlstm.lab.inspect import probe as I
from charlstm.cli import main
from charlstm.config import ModelConfig, TrainConfig
from charlstm.model import Model

# -- features, by hand ------------------------------------------------------------


def test_line_position():
    assert I.line_position("ab\ncde\n\nf").tolist() == [1, 2, 0, 1, 2, 3, 0, 0, 1]


def test_bracket_depth():
    assert I.bracket_depth("f(a[b]{c})) x(").tolist() == [0, 1, 1, 2, 2, 1, 2, 2, 1, 0, 0, 0, 0, 1]


def test_in_quotes():
    assert I.in_quotes('a "bc" d"e').tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 1, 1]


def test_word_position_and_indentation():
    assert I.word_position("ab c'd e").tolist() == [1, 2, 0, 1, 2, 3, 0, 1]
    assert I.indentation("  x\n\ty\nz").tolist() == [1, 2, 2, 0, 4, 4, 0, 0]


def test_in_comment():
    """The character that makes a comment of what came before (#, the second /
    of //, the * of /*) is inside, as is the closing /; the newline is not."""
    got = I.in_comment("a # b\nc // d\ne /* f */ g")
    assert "".join(str(int(v)) for v in got) == "001110" "000111" "0" "00011111100"


def test_sentence_start_and_caps_line():
    assert I.sentence_start("Hi. Yo").tolist() == [0, 0, 0, 1, 0, 0]
    assert I.caps_line("ROMEO.\nBy Ok").tolist() == [0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]


def test_features_drop_constant_ones():
    f = I.features("abc def")
    assert "bracket_depth" not in f and "in_quotes" not in f and "word_position" in f


def test_scores_are_fair_to_rare_binary_features():
    """A unit that separates a feature holding 10% of the time perfectly
    scores 1 (Spearman's ρ would give it 0.53); noise scores near 0, and so
    does a constant unit; a falling unit scores −1."""
    rng = np.random.default_rng(0)
    feat = (rng.random(400) < 0.1).astype(float)
    good = feat * 2 + rng.normal(0, 0.1, 400)
    noise = rng.normal(0, 1, 400)
    vals = np.stack([good, noise, np.ones(400), -good], 1)
    sc = I.unit_scores(I.rank_columns(vals), feat)
    assert sc[0] == pytest.approx(1.0) and abs(sc[1]) < 0.2 and sc[2] == 0
    assert sc[3] == pytest.approx(-1.0)
    assert I.spearman(vals[:, :1], feat)[0] < 0.6                 # why not Spearman here
    count = rng.integers(0, 9, 400).astype(float)
    sc = I.unit_scores(I.rank_columns(np.stack([np.tanh(count / 4), noise], 1)), count)
    assert sc[0] == pytest.approx(1.0) and abs(sc[1]) < 0.2
    x = rng.integers(0, 4, (300, 3)).astype(float)
    ranks = I.rank_columns(x)
    for j in range(3):
        assert np.allclose(ranks[:, j], I.rank_average(x[:, j]))
    a, b = rng.random(50), rng.random(50)
    ra, rb = I.rank_average(a), I.rank_average(b)
    assert I.spearman(a[:, None], b)[0] == pytest.approx(np.corrcoef(ra, rb)[0, 1])


# -- planted cells ----------------------------------------------------------------

BIG = 20.0


def code_text(n_lines=160, seed=0):
    rng = np.random.default_rng(seed)
    words = ["x", "foo", "bar", "y1", "z", "call", "n"]
    lines = []
    for _ in range(n_lines):
        depth, parts = 0, [" " * int(rng.integers(0, 3) * 2), rng.choice(words), " = "]
        for _ in range(int(rng.integers(3, 12))):
            r = rng.random()
            if r < 0.25:
                parts.append(rng.choice(["(", "[", "{"]))
                depth += 1
            elif r < 0.45 and depth:
                parts.append(")")
                depth -= 1
            elif r < 0.6:
                parts.append('"' + rng.choice(words) + " " + rng.choice(words) + '"')
            else:
                parts.append(rng.choice(words) + ", ")
        parts.append(")" * depth)
        lines.append("".join(parts))
    return "\n".join(lines) + "\n"


def planted(cell: str, text: str, H: int = 14, seed: int = 1) -> ckpt.Checkpoint:
    """A model with unit 0 counting the characters since a newline, unit 1 the
    bracket depth and (LSTM) unit 2 switching on and off at each '"', in c for
    the LSTM and in h for the IRNN; every other unit random."""
    vocab = "".join(sorted(set(text)))
    V = len(vocab)
    cfg = ModelConfig(cell=cell, hidden=H, layers=1, dropout=0.0, vocab_size=V)
    m = Model(cfg)
    rng = np.random.default_rng(seed)
    p = m.p
    Wx, Wh, b = p["l0.Wx"], p["l0.Wh"], p["l0.b"]
    Wx[...] = rng.normal(0, 1.0, Wx.shape)
    Wh[...] = rng.normal(0, 0.6 if cell == "lstm" else 0.08, Wh.shape)
    b[...] = rng.normal(0, 0.5, b.shape)
    p["Wy"][...] = rng.normal(0, 0.3, p["Wy"].shape)
    ix = {ch: k for k, ch in enumerate(vocab)}
    opens = [ix[c] for c in "([{" if c in ix]
    closes = [ix[c] for c in ")]}" if c in ix]
    if cell == "lstm":
        gate = lambda g, u: g * H + u  # noqa: E731   i, f, g (c~), o
        for u in (0, 1, 2):
            for g in range(4):
                Wx[:, gate(g, u)] = 0
                Wh[gate(g, u), :] = 0
                b[gate(g, u)] = BIG if g in (0, 1, 3) else 0.0
        b[gate(2, 0)] = np.arctanh(0.05)                  # unit 0: c += 0.05 a character,
        Wx[ix["\n"], gate(1, 0)] = -2 * BIG               # ... forgotten at a newline
        Wx[ix["\n"], gate(2, 0)] = -np.arctanh(0.05)
        Wx[opens, gate(2, 1)] = np.arctanh(0.1)           # unit 1: c = 0.1 × depth
        Wx[closes, gate(2, 1)] = -np.arctanh(0.1)
        q = ix['"']                                       # unit 2: at a quote, forget and
        b[gate(0, 2)] = -BIG                              # write tanh(3.8 − 10 h): +1 when
        Wx[q, gate(0, 2)] = 2 * BIG                       # outside, −1 when inside
        Wx[q, gate(1, 2)] = -2 * BIG
        Wx[q, gate(2, 2)] = 3.8
        Wh[gate(2, 2), 2] = -10.0
    else:                                                 # irnn: h = relu(x Wx + b + h Whᵀ)
        for u in (0, 1):
            Wx[:, u] = 0
            Wh[u, :] = 0
            Wh[u, u] = 1.0
            b[u] = 0.0
        b[0] = 0.05                                       # unit 0: h += 0.05, reset at \n
        Wx[ix["\n"], 0] = -BIG
        Wx[opens, 1] = 0.1                                # unit 1: h = 0.1 × depth
        Wx[closes, 1] = -0.1
    return ckpt.Checkpoint(model=cfg, train=TrainConfig(), vocab=vocab,
                           params={k: v.copy() for k, v in p.items()})


@pytest.mark.parametrize("cell,state,wanted", [
    ("lstm", "c", {"line_position": 0, "bracket_depth": 1, "in_quotes": 2}),
    ("irnn", "h", {"line_position": 0, "bracket_depth": 1}),
])
def test_planted_cells_are_ranked_first(tmp_path, cell, state, wanted):
    text = code_text()
    path = str(tmp_path / f"{cell}.npz")
    ckpt.save(planted(cell, text), path)
    tp = tmp_path / "code.txt"
    tp.write_text(text, encoding="utf-8")
    page = tmp_path / "page.html"
    r = CliRunner().invoke(main, ["inspect", path, "--text", str(tp), "--json", "--html",
                                  str(page)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert set(res) >= {"features", "gates", "counters"}
    for feat, unit in wanted.items():
        best = res["features"][feat][0]
        # (a counter's h = tanh(c) ranks as its c does: either may come first)
        assert (best["layer"], best["unit"]) == (0, unit), (feat, best)
        assert best["state"] == state or (state, best["state"]) == ("c", "h"), (feat, best)
        assert best["score"] > 0.8
        others = [u for u in res["features"][feat] if u["unit"] != unit]
        assert not others or others[0]["score"] < best["score"]
    for rows in res["features"].values():
        assert [u["score"] for u in rows] == sorted((u["score"] for u in rows), reverse=True)
        assert all(0 <= u["score"] <= 1 for u in rows)
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert "src=" not in html
    data = html.split('<script type="application/json" id="data">')[1].split("</script>")[0]
    d = json.loads(data)
    assert d["text"] == text and len(d["panels"]) >= len(wanted)
    import base64
    assert d["next"]["k"] == 5 and len(base64.b64decode(d["next"]["ids"])) == 5 * len(text)
    for feat in wanted:
        sup = res["support"][feat]
        assert sup["status"] == "scored" and sup["runs"] >= 20
        assert sup["chance"] < res["features"][feat][0]["score"]
    if cell == "lstm":
        counters = {(c["layer"], c["unit"]): c for c in res["counters"]}
        assert (0, 0) in counters and counters[(0, 0)]["step"] == pytest.approx(0.05, abs=1e-3)


def test_inspect_prints_colours_only_to_a_terminal(tmp_path, monkeypatch):
    text = code_text(40)
    path = str(tmp_path / "m.npz")
    ckpt.save(planted("lstm", text), path)
    tp = tmp_path / "code.txt"
    tp.write_text(text, encoding="utf-8")
    monkeypatch.setenv("NO_COLOR", "1")
    r = CliRunner().invoke(main, ["inspect", path, "--text", str(tp), "--excerpt", "60",
                                  "--unit", "0:0:c"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "\x1b[" not in r.output
    lines = r.output.splitlines()
    first = text.split("\n")[0]
    k = lines.index(first[:60]) if len(first) >= 60 else lines.index(first + "↵")
    digits = lines[k + 1]
    assert digits.isdigit() and len(digits) == len(lines[k])
    assert "try: charlstm sample" in r.output and "--clamp" in r.output


def test_colour_modes():
    from charlstm.lab.inspect import view

    class Tty:
        def isatty(self):
            return True
    assert view.colour_mode(Tty(), {"COLORTERM": "truecolor"}) == "truecolor"
    assert view.colour_mode(Tty(), {}) == "256"
    assert view.colour_mode(Tty(), {"NO_COLOR": "1"}) == "plain"
    assert view.colour_mode(object(), {}) == "plain"
    assert view.rgb(-1) == (0, 0, 255) and view.rgb(0) == (255, 255, 255)
    assert view.rgb(1) == (255, 0, 0) and view.rgb(7) == (255, 0, 0)
    s = view.coloured("ab\nc", np.array([-1.0, 0, 1, 0.5]), "truecolor")
    assert "48;2;0;0;255ma" in s and "48;2;255;0;0m↵" in s
    assert "48;5;" in view.coloured("ab", np.array([0.2, 0.3]), "256")


def test_inspect_refuses_bad_units_and_texts(tmp_path):
    text = code_text(30)
    path = str(tmp_path / "m.npz")
    ckpt.save(planted("lstm", text), path)
    tp = tmp_path / "code.txt"
    tp.write_text(text, encoding="utf-8")
    for unit, msg in (("0:99", "units 0-13"), ("2:0", "layers 0-0"), ("0:1:q", "no state"),
                      ("x", "LAYER:UNIT")):
        r = CliRunner().invoke(main, ["inspect", path, "--text", str(tp), "--unit", unit])
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output, r.output
    other = tmp_path / "other.txt"
    other.write_text("ÆØÅ", encoding="utf-8")
    r = CliRunner().invoke(main, ["inspect", path, "--text", str(other)])
    assert r.exit_code == 1 and "never saw" in r.output
    r = CliRunner().invoke(main, ["inspect", path])            # no text recorded in it
    assert r.exit_code == 1 and "--text" in r.output


def test_inspect_reads_the_held_out_text_of_a_trained_model(tmp_path):
    text = code_text(200)
    tp = tmp_path / "code.txt"
    tp.write_text(text, encoding="utf-8")
    out = str(tmp_path / "m.npz")
    r = CliRunner().invoke(main, ["train", str(tp), "--out", out, "--hidden", "8", "--seq-len",
                                  "16", "--batch-size", "4", "--steps", "5", "--no-progress",
                                  "--cell", "gru"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert ckpt.load(out).train.text == str(tp.resolve())
    r = CliRunner().invoke(main, ["inspect", out, "--json", "--chars", "300"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["chars"] == 300 and os.path.exists(res["html"])
    assert set(res["gates"]) == {"r", "z"} and res["counters"] == []


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_inspect_page_renders_in_chromium(tmp_path):
    text = code_text()
    path = str(tmp_path / "m.npz")
    ckpt.save(planted("lstm", text), path)
    tp = tmp_path / "code.txt"
    tp.write_text(text, encoding="utf-8")
    page = tmp_path / "page.html"
    r = CliRunner().invoke(main, ["inspect", path, "--text", str(tp), "--json", "--html",
                                  str(page)], catch_exceptions=False)
    assert r.exit_code == 0
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--proxy-server=127.0.0.1:9", "--dump-dom", "file://" + str(page) + "#selftest"],
        capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert html.count('class="panel"') >= 4                     # three features and the picker
    assert "line_position" in html and "bracket_depth" in html and "in_quotes" in html
    first_line = text.split("\n")[0]
    assert first_line[2] in html and html.count('<span class="v') >= 3 * len(text)
    assert html.count('class="dot"') >= 14 * 3                  # a dot per unit, i f o
    hovered = html.split('<pre id="selftest">')[1].split("</pre>")[0]   # the tooltip, hovered
    assert "value" in hovered and "next:" in hovered and hovered.count("%") == 5


# -- support, chance and ablation, on a quote unit the output depends on -------------

def quote_text(quoted: int, lines: int = 240, seed: int = 3) -> str:
    """Lines of b-words, `quoted` of them with a "aaa…" string: inside quotes
    the next character is an a (or the closing quote), outside a b or a space."""
    rng = np.random.default_rng(seed)
    with_quote = set(rng.choice(lines, quoted, replace=False).tolist())
    out = []
    for k in range(lines):
        words = ["b" * int(rng.integers(1, 5)) for _ in range(int(rng.integers(2, 5)))]
        if k in with_quote:
            words.insert(1, '"' + "a" * int(rng.integers(3, 9)) + '"')
        out.append(" ".join(words))
    return "\n".join(out) + "\n"


def quote_model(text: str) -> ckpt.Checkpoint:
    """planted's quote switch (unit 2, in c), wired to the output: its h says
    a inside quotes (and not outside). Unit 5 is a distractor, read by nothing."""
    ck = planted("lstm", text)
    vocab = ck.vocab
    m = ckpt.model_from_checkpoint(ck)
    ids = np.array([vocab.index(ch) for ch in text], np.intp)
    rec = I.record(m, ids)
    inside = I.in_quotes(text) == 1
    sign = np.sign(rec["h"][0, inside, 2].mean() - rec["h"][0, ~inside, 2].mean())
    Wy = ck.params["Wy"]
    Wy[2, :] = 0
    Wy[2, vocab.index("a")] = 6 * sign            # inside: a is likely; outside: it is not
    Wy[5, :] = 0
    return ck


def _inspect_json(tmp_path, text, *extra):
    path = str(tmp_path / "q.npz")
    ckpt.save(quote_model(text), path)
    tp = tmp_path / "q.txt"
    tp.write_text(text, encoding="utf-8")
    r = CliRunner().invoke(main, ["inspect", path, "--text", str(tp), "--json", "--html",
                                  str(tmp_path / "q.html"), *extra], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_a_handful_of_quotes_is_too_few_to_score(tmp_path):
    res = _inspect_json(tmp_path, quote_text(quoted=6))
    sup = res["support"]["in_quotes"]
    assert sup["runs"] == 6 and sup["status"] == "too few to score"
    assert res["features"]["in_quotes"] == [] and "in_quotes" not in res["effects"]
    assert sup["chance"] > 0.3            # six runs: many units separate them by chance


def test_many_quotes_rank_the_unit_first_and_ablation_shows_its_effect(tmp_path):
    res = _inspect_json(tmp_path, quote_text(quoted=120), "--ablate", "0:2", "--ablate", "0:5",
                        "--ablate-top", "2")
    best = res["features"]["in_quotes"][0]
    assert (best["layer"], best["unit"], best["state"]) == (0, 2, "c")
    sup = res["support"]["in_quotes"]
    assert sup["status"] == "scored" and best["score"] > sup["chance"] + 0.3
    assert res["effects"]["in_quotes"]["unit"] == [0, 2]
    assert res["effects"]["in_quotes"]["on_feature"] > 0.2       # it matters where it works
    wired, distractor = res["ablation"]
    assert wired["units"] == [[0, 2]] and wired["mode"] == "zero"
    assert wired["by_class"]["in_quotes"]["inside"] > 0.2
    assert abs(distractor["by_class"]["in_quotes"]["inside"]) < 0.05
    assert wired["moved"] and all(m["p_after"] <= m["p_before"] + 0.5 for m in wired["moved"])
    top = res["ablation_top"]["in_quotes"]
    assert top["units"][0] == [0, 2] and len(top["top"]) == 2 and len(top["random"]) == 5
    assert top["top"][0] > np.mean([row[0] for row in top["random"]]) + 0.2
    html = (tmp_path / "q.html").read_text()
    assert "Units held at zero" in html and "its top units" in html


def test_ablate_top_holds_k_units_even_when_top_lists_fewer(tmp_path):
    res = _inspect_json(tmp_path, quote_text(quoted=120), "--top", "1", "--ablate-top", "3")
    assert len(res["features"]["in_quotes"]) == 1
    top = res["ablation_top"]["in_quotes"]
    assert len(top["units"]) == len(top["top"]) == 3
    assert len({tuple(u) for u in top["units"]}) == 3          # distinct units, not states
    assert all(len(row) == 3 for row in top["random"])


def test_held_at_zero_keeps_the_state_at_zero():
    """Every cell's way keeps the unit's state at zero."""
    from charlstm.lab.inspect.ablation import held_at_zero
    text = code_text(40)
    from charlstm.cells import CELLS
    for cell in CELLS:
        vocab = "".join(sorted(set(text)))
        m = Model(ModelConfig(cell=cell, hidden=8, dropout=0.0, vocab_size=len(vocab)))
        m.init(np.random.default_rng(0))
        ids = np.array([vocab.index(ch) for ch in text], np.intp)
        rec = I.record(held_at_zero(m, [(0, 3)]), ids)
        assert np.abs(rec["h"][0, :, 3]).max() == 0, cell
        if rec["c"] is not None:
            assert np.abs(rec["c"][0, :, 3]).max() == 0, cell
        assert np.abs(rec["h"][0, :, 4]).max() > 1e-3, cell            # the others live on
