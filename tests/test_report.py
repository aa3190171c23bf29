"""compare's report reads right: the terminal table, the HTML page and the PNG.

The report dicts come from a real run, tests/data/compare_run.json, made by
`charlstm compare ts30k.txt --cells rnn,lstm --hidden 16 --batch-size 4
--seq-len 16 --minutes 0.25 --eval-every 100 --jobs 1` on the first 30 KB of
tinyshakespeare (trimmed: two recall passages, every third validation point,
five significant digits). Each test changes a copy where it needs a case the
run did not give (a tie, a newline at the first miss, a diverged model)."""
import copy
import json
import os
import re
import shutil

import pytest

from charlstm.lab.compare import results as compare
from charlstm.words import plural

DATA = os.path.join(os.path.dirname(__file__), "data", "compare_run.json")


def real_run() -> dict:
    """A fresh copy of the real run's results.json."""
    with open(DATA, encoding="utf-8") as fh:
        rep = json.load(fh)
    return copy.deepcopy(rep)


def printed(rep) -> str:
    """compare's terminal report for rep."""
    lines = []
    compare._print(rep, lines.append)
    return "\n".join(lines)


# -- counts and their nouns --------------------------------------------------------

def test_plural_is_singular_only_for_one():
    assert plural(1, "minute") == "1 minute"
    assert plural(1.0, "step") == "1 step"
    assert plural(0.5, "minute") == "0.5 minutes"
    assert plural(0, "model") == "0 models"
    assert plural(2000, "held-out position") == "2,000 held-out positions"
    assert plural(1, "child", "children") == "1 child" and plural(3, "child", "children") \
        == "3 children"


def test_budgets_read_right():
    from charlstm.config import TrainConfig
    assert compare._budget(TrainConfig(minutes=1, steps=0)) == "1 minute"
    assert compare._budget(TrainConfig(minutes=2.5, steps=0)) == "2.5 minutes"
    assert compare._budget(TrainConfig(steps=1)) == "1 step"
    assert compare._budget(TrainConfig(steps=0, minutes=0, epochs=1)) == "1 epoch"


ONE_PLURAL = re.compile(r"(?<![\d.,])1 (minutes|steps|epochs|models|passages|characters|units|"
                        r"cells|lags|positions|chars|held-out \w+s)\b")


def test_no_count_of_one_takes_a_plural():
    rep = real_run()
    rep["train"].update(minutes=1, eval_chars=1)
    for m in rep["models"]:
        m["hidden"] = 1
        m["recall"]["passages"] = m["recall"]["passages"][:1]
        m["context"]["positions"] = 1
    out = printed(rep)
    assert not ONE_PLURAL.search(out), ONE_PLURAL.search(out).group(0)


def test_the_page_counts_right(tmp_path):
    rep = real_run()
    rep["wall_s"] = 61.0
    rep["probe"] = dict(PROBE, hidden=1)
    html = page(rep, tmp_path)
    assert "1 minute in all" in html and "; 1 unit;" in html


# -- the terminal tables ------------------------------------------------------------

def table(out: str, first: str) -> list[str]:
    """The printed table whose header row starts with `first`: its lines up to
    the first line that is blank or not a row (a rule of dashes is skipped)."""
    lines = out.split("\n")
    k = next(i for i, ln in enumerate(lines) if ln.split("  ")[0].strip() == first)
    rows = [lines[k]]
    for ln in lines[k + 1:]:
        if set(ln) == {"-"}:
            continue
        if not ln.strip() or "  " not in ln.strip():
            break
        rows.append(ln)
    return rows


def cells_of(line: str) -> list[tuple[int, int]]:
    """The (start, end) of each cell: runs of text with at most one space inside."""
    return [m.span() for m in re.finditer(r"\S+(?: \S+)*", line)]


def assert_columns(rows: list[str], cols: int):
    """Every row has `cols` cells, two spaces or more apart; the first column
    starts, and every other ends, at the same place in every row (a † after
    a loss keeps its place in the other rows, as a space)."""
    rows = [r.replace("†", " ") for r in rows]
    spans = [cells_of(r) for r in rows]
    for r, s in zip(rows, spans):
        assert len(s) == cols, f"{len(s)} cells, not {cols}: {r!r}"
        assert all(b[0] - a[1] >= 2 for a, b in zip(s, s[1:])), r
    assert len({s[0][0] for s in spans}) == 1
    for j in range(1, cols):
        assert len({s[j][1] for s in spans}) == 1, f"column {j} ragged:\n" + "\n".join(rows)


def test_table_cells_never_run_together():
    """The gradient-flow cell that ran into its neighbour (`3e-8/3e-82e-15/…`):
    every statistic tiny, so every cell is as wide as it gets; and a models
    row with the widest numbers compare prints."""
    rep = real_run()
    for m in rep["models"]:
        for f in m["grad_flow"].values():
            if isinstance(f, dict):
                for stat in f:
                    f[stat] = [1.0] + [3.2e-8 * 10.0 ** -(k // 5) for k in range(1, len(f[stat]))]
    big = rep["models"][0]
    big.update(params=12_345_678, lr=1e-05, steps=123_456, diverged=True, val_loss=3.2e6,
               val_overflow=True, chars_per_s=1_234_567.0, wall_s=12_345.0)
    big["horizon"]["reach"] = None
    rep["probe"] = {"lags": [3, 10, 30, 100], "chance": 0.125, "hidden": 16, "threshold": 0.9,
                    "accuracy": {"rnn": [1.0, 0.55, 0.12, 0.13], "lstm": [1.0, 1.0, 0.97, 0.2]},
                    "span": {"rnn": 3, "lstm": 30}, "runs": [], "example": "a...=a"}
    out = printed(rep)
    flow = table(out, "k")                            # the context curve's table comes first
    assert_columns(flow, 12)
    grad = [ln for ln in out.split("\n") if ln.startswith(("rnn h", "lstm h", "lstm c"))]
    head = next(ln for ln in out.split("\n") if ln.startswith("k ") and ln.rstrip().endswith("50"))
    assert_columns([head] + grad, 6)
    assert "3e-8/3e-8/3e-8" in out and "3e-8/3e-82" not in out
    models = table(out, "cell")
    assert_columns(models, 14)
    assert "123456!" in out and "3.2e+06†" in out and ">92" in out
    assert_columns(table(out, "lag"), 6)


# -- whitespace made visible ----------------------------------------------------------

def page(rep, tmp_path) -> str:
    """The report page for rep, as written to disk."""
    from charlstm.lab.compare.page import write_report
    return open(write_report(rep, str(tmp_path / "report.html")), encoding="utf-8").read()


@pytest.mark.parametrize("ch, shown", [(" ", "␠"), ("\n", "⏎"), ("\t", "→")])
def test_a_whitespace_first_miss_shows_as_a_glyph(tmp_path, ch, shown):
    rep = real_run()
    for m in rep["models"]:
        for p in m["recall"]["passages"]:       # the run's misses were spaces; any whitespace
            p["output"] = p["truth"][:p["prefix"]] + ch + p["output"][p["prefix"] + 1:]
    out = printed(rep)
    assert f"[{shown}]" in out and f"[{ch}]" not in out
    html = page(rep, tmp_path)
    misses = re.findall(r'<span class="miss[^"]*"[^>]*>(.*?)</span>', html, re.S)
    assert misses and all(m == shown for m in misses), misses
    # ␠ is missing from common fonts: the page draws its letters (CSS .miss.sp)
    assert (html.count('<span class="miss sp"') == len(misses)) == (ch == " ")


def test_no_prime_or_seed_prints_blank(tmp_path):
    """The run's first passage begins with a newline (a blank line between two
    speeches): every line of the prime shows something; so does a seed, or a
    prime, of nothing but whitespace, in the terminal and on the page."""
    rep = real_run()
    out = printed(rep)
    bars = [ln for ln in out.split("\n") if ln.startswith("  |")]
    assert bars[0] == "  | ⏎" and all(ln[4:].strip() for ln in bars), bars
    rep["seed"] = "\n"
    rep["models"][0]["recall"]["passages"][0]["prime"] = " \n\t"
    out = printed(rep)
    assert "Samples, each continuing '\\n' (a newline):" in out
    assert [ln for ln in out.split("\n") if ln.startswith("  |")] == ["  | ␠⏎", "  | →"]
    html = page(rep, tmp_path)
    assert "<span class=prime>⏎</span>" in html and "(a newline)" in html
    assert "<pre class=prime>␠⏎→</pre>" in html


def test_the_recall_labels_never_touch_the_text():
    """'truth' is longer than 'rnn' and 'gru': the labels' column fits it."""
    rep = real_run()
    for m, cell in zip(rep["models"], ("rnn", "gru")):
        m["cell"] = cell
    lines = printed(rep).split("\n")
    truth = next(ln for ln in lines if ln.startswith("  truth"))
    assert truth.startswith("  truth  ")


# -- the verdict: agree only when the order is the same, strictly --------------------------

def test_tied_spans_are_not_agreement():
    """The run of the report (16 and 16) that printed "the measures agree"."""
    rep = real_run()
    for m in rep["models"]:
        m["context"]["span"] = 16
    lines = compare.agreement(rep)
    assert "context span (k within 0.01 nats of the longest context): " in lines[1]
    verdict = lines[-1]
    assert "agree on" not in verdict and not verdict.startswith("the measures agree")
    assert "ties rnn and lstm (16 and 16)" in verdict and "cannot tell them apart" in verdict
    rep["agreement"] = lines                       # as compare stores it
    out = printed(rep)
    assert "the measures agree" not in out and "ties rnn and lstm (16 and 16)" in out


def test_agreement_needs_every_pair_ordered_alike():
    rep = real_run()                   # lstm ahead on both: reach 11 > 10, span 8 > 4
    assert compare.agreement(rep)[-1] == "the measures agree on the order of the cells"
    rep["models"][0]["horizon"]["reach"] = rep["models"][1]["horizon"]["reach"]
    for m in rep["models"]:
        m["context"]["span"] = 8
    verdict = compare.agreement(rep)[-1]
    assert verdict.startswith("the measures cannot be said to agree")
    assert "tie rnn and lstm" in verdict
    rep["probe"] = {"span": {"rnn": 50, "lstm": 10}}
    rep["models"][0]["context"]["span"] = 4
    lines = compare.agreement(rep)
    assert lines[-1].startswith("besides, the gradient reach ties rnn and lstm")
    assert lines[-2] == "the measures disagree on the order of rnn and lstm"


# -- equal minutes, unequal steps -------------------------------------------------------

def test_unequal_steps_are_explained(tmp_path):
    """The run had 0.25 minutes each: rnn took 15,500 steps, lstm 9,922 (1.6×)."""
    rep = real_run()
    note = compare.unequal_steps(rep)
    assert note is not None
    for said in ("same 0.25 minutes", "not the same number of steps", "rnn 15,500, lstm 9,922",
                 "1.6 times as many", "fewer characters", "lstm 635,008 against rnn 992,000",
                 "--steps 9922", "more --minutes"):
        assert said in note, said
    assert "note: equal time, unequal training" in printed(rep)
    html = page(rep, tmp_path)
    assert '<p class="note warn">' in html and "1.6 times as many" in html
    assert html.index("1.6 times as many") < html.index("<h2>Curves")   # by the table


def test_no_steps_note_when_the_steps_are_near_or_the_budget_is_steps(tmp_path):
    rep = real_run()
    rep["models"][1]["steps"] = 11_000                       # 15,500 / 11,000 = 1.41
    assert compare.unequal_steps(rep) is None
    rep = real_run()
    rep["train"].update(minutes=0, steps=15_500)
    assert compare.unequal_steps(rep) is None
    rep = real_run()
    rep["models"][1]["diverged"] = True                      # stopped for another reason
    assert compare.unequal_steps(rep) is None
    assert "unequal" not in printed(rep) and "class=\"note warn\"" not in page(rep, tmp_path)


def test_the_steps_note_reads_right_for_one_minute():
    rep = real_run()
    rep["train"]["minutes"] = 1
    rep["models"][0]["steps"], rep["models"][1]["steps"] = 650, 250
    note = compare.unequal_steps(rep)
    assert "the same 1 minute but" in note and "2.6 times as many" in note


# -- the charts ------------------------------------------------------------------------

def svg_of(html: str, title: str) -> str:
    """The <svg> whose aria-label starts with title."""
    start = html.index(f'aria-label="{title}')
    return html[html.rindex("<svg", 0, start):html.index("</svg>", start)]


def test_every_flow_series_has_its_own_colour_or_dash(tmp_path):
    """The page drew "lstm h, median unit" and "lstm c, largest unit" both red
    and dashed; the PNG must tell its series apart as well."""
    rep = real_run()
    svg = svg_of(page(rep, tmp_path), "Gradient flow")
    lines = re.findall(r'<polyline [^>]*stroke="([^"]+)"[^>]*?(?: stroke-dasharray="([^"]+)")?>'
                       r'<title>([^<]+)</title>', svg)
    names = [n for _, _, n in lines]
    assert names == ["rnn h, largest unit", "rnn h, median unit", "lstm h, largest unit",
                     "lstm h, median unit", "lstm c, largest unit"]
    looks = [(c, d) for c, d, _ in lines]
    assert len(set(looks)) == len(looks), looks
    legend = re.findall(r'<line [^>]*stroke="([^"]+)" stroke-width="2"(?: stroke-dasharray="'
                        r'([^"]+)")?/><text [^>]*class="lg">([^<]+)</text>', svg)
    assert [(c, d, n) for c, d, n in legend] == lines          # the legend shows each as drawn
    pytest.importorskip("matplotlib")
    from charlstm.lab.compare.figure import _figure
    fig = _figure(rep)
    drawn = [(ln.get_color(), ln.get_linestyle()) for ln in fig.axes[2].get_lines()
             if not ln.get_label().startswith("_")]
    assert len(drawn) == 5 and len(set(drawn)) == 5, drawn


def test_more_models_than_two_still_look_apart():
    """Six cells: no medians, one colour each, h solid and c dashed."""
    rep = real_run()
    rnn, lstm = rep["models"]
    names = ["rnn", "lstm", "irnn", "cifg", "lstm-peephole", "gru"]
    rep["models"] = [dict(m, cell=c) for m, c in zip([rnn, lstm] * 3, names)]
    from charlstm.lab.charts import COLOURS
    fl = compare.flow_series(rep["models"])
    looks = [(COLOURS[s["model"]], s["dash"]) for s in fl]
    assert len(set(looks)) == len(looks) == 9


def chart_cases():
    """Validation-chart layouts from the run: as it was; a diverged rnn (points
    above ln V, one not finite); first losses near ln V (the label at the top
    right, where the legend used to go)."""
    as_run = real_run()
    diverged = real_run()
    vc = diverged["models"][0]["val_curve"]
    for k in (13, 14, 30):
        vc[k][2] = 3.2e6
    vc[31][2] = float("nan")
    near = real_run()
    near["models"][0]["val_curve"][0][2] = 4.02
    near["models"][1]["val_curve"][0][2] = 3.98
    return {"as run": as_run, "diverged": diverged, "near ln V": near}


def validation_layout(rep):
    """The validation chart's layout, with the arguments the page gives it."""
    import math

    import numpy as np
    from charlstm.lab.charts import chart_layout
    top = math.log(rep["vocab_size"])
    series = []
    for m in rep["models"]:
        v = np.array(m["val_curve"]).reshape(-1, 3)
        y, over = compare.clip_curve(v[:, 2], top)
        series.append({"x": v[:, 0], "y": y, "marks": over,
                       "name": m["cell"] + (f" ({int(over.sum())} points above ln V, ×)"
                                            if over.any() else "")})
    lo, hi = compare.loss_range([np.array(m["val_curve"])[:, 2] for m in rep["models"]], top)
    return chart_layout(series, ymin=lo, ymax=hi, hlines=[(top, "ln V, a uniform guess")]), top


@pytest.mark.parametrize("case", ["as run", "diverged", "near ln V"])
def test_the_legend_covers_no_label_and_no_data(case):
    from charlstm.lab.charts import _hits, overlaps
    lay, top = validation_layout(chart_cases()[case])
    box = lay["legend_box"]
    if case == "near ln V":
        (label,) = lay["hlines"]                 # ln V is on the chart, labelled
        assert label["label"] == "ln V, a uniform guess"
        assert not overlaps(box, label["box"])
        assert not box[1] <= label["y"] <= box[3]
    assert _hits(box, lay["data"]) == 0
    inside = box[2] <= lay["width"] - lay["R"]
    assert inside or box[0] >= lay["width"] - lay["R"]      # in the plot, or wholly beside it


def test_the_legend_goes_beside_a_crowded_plot():
    """Curves through every corner and side: the legend goes beside the plot,
    and the chart grows by its width instead of squeezing the plot."""
    import numpy as np
    from charlstm.lab.charts import chart_layout
    x = np.linspace(0, 1, 200)
    series = [{"x": x, "y": y, "name": n} for y, n in
              ((x, "rising"), (1 - x, "falling"), (0.5 + 0.5 * np.sin(20 * x), "waving"))]
    lay = chart_layout(series, width=460)
    assert lay["legend"] == "right" and lay["width"] > 460
    assert lay["px"](1.0) == pytest.approx(460 - 12)            # the plot keeps its size
    assert lay["legend_box"][0] > lay["px"](1.0)


def test_the_validation_range_fits_the_losses(tmp_path):
    """The run's losses span 2.08 to 3.23 and ln V is 4.06: the chart used to
    run to ln V, two thirds of it empty."""
    import numpy as np
    for case, rep in chart_cases().items():
        lay, top = validation_layout(rep)
        ys = np.concatenate([np.array(m["val_curve"])[:, 2] for m in rep["models"]])
        shown = ys[np.isfinite(ys) & (ys <= top)]
        span = shown.max() - shown.min()
        assert lay["y0"] <= shown.min() and lay["y0"] >= shown.min() - 0.1 * span, case
        assert lay["y1"] >= shown.max() and lay["y1"] <= shown.max() + 0.1 * span, case
    html = page(chart_cases()["diverged"], tmp_path)
    svg = svg_of(html, "Validation loss")
    assert "ln V, a uniform guess (4.06) lies above the chart" in svg
    assert svg.count('class="x"') == 4                  # three above ln V, one not finite
    ticks = [float(t) for t in re.findall(r'text-anchor="end">([\d.]+)</text>', svg)]
    assert max(ticks) < 3.3 < top
    pytest.importorskip("matplotlib")
    from charlstm.lab.compare.figure import _figure
    lo, hi = _figure(chart_cases()["diverged"]).axes[0].get_ylim()
    assert 2.0 < lo < 2.08 and 3.23 < hi < 3.4


def test_the_flow_floor_is_labelled_on_the_page(tmp_path):
    """The run's rnn gradient falls below 1e-12 at k = 53 and lies on the floor."""
    rep = real_run()
    assert min(rep["models"][0]["grad_flow"]["h"]["max"]) < 1e-12
    svg = svg_of(page(rep, tmp_path), "Gradient flow")
    assert "Gradient flow on held-out text (floor 1e-12)" in svg
    assert re.search(r'class="hl">floor 1e-12: smaller values drawn on it</text>', svg)
    for m in rep["models"]:                              # nothing below the floor: no floor
        for f in m["grad_flow"].values():
            if isinstance(f, dict):
                for stat in f:
                    f[stat] = [max(v, 1e-9) for v in f[stat]]
    svg = svg_of(page(rep, tmp_path), "Gradient flow")
    assert "floor" not in svg


def test_png_legends_sit_outside_the_plots():
    """No legend covers a plot: each sits under its panel, clear of the axes,
    of every tick label and of the x label."""
    pytest.importorskip("matplotlib")
    from charlstm.lab.compare.figure import _figure
    for case, rep in chart_cases().items():
        fig = _figure(rep)
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        for ax in fig.axes:
            leg = ax.get_legend().get_window_extent(r)
            assert not leg.overlaps(ax.get_window_extent(r)), case
            assert not leg.overlaps(ax.xaxis.label.get_window_extent(r)), case
            for t in ax.get_xticklabels():
                assert not t.get_text() or not leg.overlaps(t.get_window_extent(r)), case
            assert leg.y0 >= 0, case                     # inside the figure


PROBE = {"lags": [3, 10], "chance": 0.125, "hidden": 8, "threshold": 0.9,
         "accuracy": {"rnn": [0.675, 0.244], "lstm": [0.73, 0.89]},
         "span": {"rnn": None, "lstm": None}, "example": "G" + "x" * 3 + "=G\n",
         "runs": [{"cell": c, "lag": lag, "steps": 3000, "seconds": 6.0, "solved_early": False}
                  for c in ("rnn", "lstm") for lag in (3, 10)]}   # from a real --probe run


def test_png_legends_sit_outside_the_probe_panel_too():
    pytest.importorskip("matplotlib")
    from charlstm.lab.compare.figure import _figure
    rep = real_run()
    rep["probe"] = PROBE
    fig = _figure(rep)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    ax = fig.axes[3]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["3", "10"]
    for a in fig.axes:
        assert not a.get_legend().get_window_extent(r).overlaps(ax.get_window_extent(r))


# -- the page in a real browser ----------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Run in the browser on a copy of the page (the page itself has no script):
# the boxes the browser really drew for each chart's legend entries, hline
# labels and note, and the chart's own size.
MEASURE = """<script>
const out = [];
for (const svg of document.querySelectorAll("svg.chart")) {
  const box = e => { const b = e.getBBox(); return [b.x, b.y, b.x + b.width, b.y + b.height]; };
  out.push({title: svg.getAttribute("aria-label"), width: +svg.getAttribute("width"),
            legend: [...svg.querySelectorAll("text.lg")].map(box),
            labels: [...svg.querySelectorAll("text.hl")].map(box),
            backs: [...svg.querySelectorAll("rect.lb")].map(box)});
}
document.getElementById("measured").textContent = JSON.stringify(out);
</script>"""


def drawn_boxes(html: str, tmp_path) -> list[dict]:
    """The boxes Chromium drew, per chart (MEASURE), read from its DOM."""
    import html as H
    import subprocess
    test_page = tmp_path / "measured.html"
    test_page.write_text(html.replace("</body>", "<pre id=measured></pre>" + MEASURE + "</body>"),
                         encoding="utf-8")
    r = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--proxy-server=127.0.0.1:9", "--dump-dom", "file://" + str(test_page)],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    found = re.search(r"<pre id=\"measured\">(.*?)</pre>", r.stdout, re.S)
    return json.loads(H.unescape(found.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_in_chromium_no_legend_touches_a_label_and_each_fits_its_box(tmp_path):
    """The overlap checks of chart_layout rest on estimated text widths: in a
    real browser, every legend entry stays inside its white box (or the
    chart, beside the plot) and clear of every hline label."""
    from charlstm.lab.charts import overlaps
    rep = chart_cases()["near ln V"]                     # ln V labelled at the top right
    rep["probe"] = PROBE
    charts = drawn_boxes(page(rep, tmp_path), tmp_path)
    assert len(charts) == 4
    for c in charts:
        for entry in c["legend"]:
            assert not any(overlaps(entry, lab) for lab in c["labels"]), c["title"]
            assert entry[2] <= c["width"], c["title"]
            for back in c["backs"]:                      # an inside legend: on its box
                assert back[0] <= entry[0] and entry[2] <= back[2], c["title"]
                assert back[1] <= entry[1] and entry[3] <= back[3], c["title"]


def test_the_terminal_chart_fits_the_losses_and_marks_the_rest():
    """A diverged rnn (3.2e6, and a loss that is not finite): the chart's
    scale runs over the other points, the rest sit on a >ln V line."""
    rep = chart_cases()["diverged"]
    out = printed(rep).split("\n")
    k = next(i for i, ln in enumerate(out) if ln.startswith("Validation loss"))
    assert "or not finite: on the top line, '>4.06'" in out[k]
    chart = out[k + 1:k + 13]
    assert chart[0].startswith("    >4.06 |") and chart[0].count("*") == 4
    assert float(chart[1].split("|")[0]) == pytest.approx(3.225, abs=0.01)   # the highest loss
    assert float(chart[-1].split("|")[0]) == pytest.approx(2.08, abs=0.01)   # the lowest


def test_a_series_without_a_legend_entry():
    """legend=False leaves a series out of the legend, and out of its size."""
    from charlstm.lab.charts import chart_layout, svg_chart
    series = [{"x": [0, 1], "y": [0, 1], "name": "shown"},
              {"x": [0, 1], "y": [1, 0], "name": "a much longer name, not shown", "legend": False}]
    svg = svg_chart(series)
    assert 'class="lg">shown</text>' in svg and 'class="lg">a much' not in svg
    box = chart_layout(series)["legend_box"]
    assert box[3] - box[1] == 13 + 4 and box[2] - box[0] < 100
    assert 'class="lb"' not in svg_chart([dict(s, legend=False) for s in series])


def test_a_comparison_without_tasks_says_how_to_run_them(tmp_path):
    """A plain comparison names the three memory tasks, what each needs and
    the option that runs them, in the terminal and on the page; a run that
    had them does not."""
    rep = real_run()
    assert not rep.get("probe") and not rep.get("tasks")
    for out in (printed(rep), page(rep, tmp_path)):
        assert "The memory tasks were not run" in out and "--task lag,parity,mqar" in out
        assert all(name in out for name in ("lag, to keep", "parity, to track", "mqar, to store"))
    rep["tasks"] = {"parity": {"task": "parity"}}       # a run that had a task
    assert compare.tasks_hint(rep) is None
    rep["tasks"], rep["probe"] = None, {"span": {}}     # or the lag probe alone
    assert compare.tasks_hint(rep) is None


def test_the_png_gives_each_cell_its_colour_on_the_page():
    """compare.png and report.html draw a cell in the same colour
    (charts.COLOURS by the cell's place in --cells), in every panel."""
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_hex
    from charlstm.lab.charts import COLOURS
    from charlstm.lab.compare.figure import _figure
    rep = real_run()
    want = {cell: COLOURS[k % len(COLOURS)] for k, cell in enumerate(rep["cells"])}
    fig = _figure(rep)
    seen = 0
    for ax in fig.axes:
        for line in ax.get_lines():
            cell = line.get_label().split(" ")[0]
            if cell in want:
                assert to_hex(line.get_color()) == want[cell], (ax.get_title(), cell)
                seen += 1
    assert seen >= 2 * len(want)          # the loss and the context panels at least
