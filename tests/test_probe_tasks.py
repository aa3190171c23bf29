"""compare --probe --task lag|parity|mqar: the options, a tiny run of every
task with its tables and JSON keys, and the report drawn from a made-up run."""
import os

import numpy as np
import pytest
from click.testing import CliRunner

from charlstm.cli import main
from charlstm.cli.compare import MQAR_MAX_PAIRS, compare
from charlstm.lab import tasks as K
from charlstm.lab.spans import memory_span


def test_the_options_defaults_are_the_tasks_own():
    defaults = {p.name: p.default for p in compare.params}
    for name, opt in (("lag", "lags"), ("parity", "bits"), ("mqar", "pairs")):
        assert defaults[opt] == ",".join(map(str, K.TASKS[name].difficulties)), opt
    assert MQAR_MAX_PAIRS == len(K.MQAR_KEYS)


def test_compare_probe_runs_every_task(tmp_path, run_probe):
    out = tmp_path / "run"
    r, res = run_probe("--probe", "--task", "lag,parity,mqar", "--cells", "rnn,lstm",
                       "--lags", "3", "--bits", "4,2", "--pairs", "1,2", minutes=0.01, hidden=8)
    tasks = res["tasks"]
    assert list(tasks) == ["lag", "parity", "mqar"]
    want = {"lag": [3], "parity": [2, 4], "mqar": [1, 2]}
    for name, t in tasks.items():
        task = K.TASKS[name]
        assert t["task"] == name and t["unit"] == task.unit and t["chance"] == task.chance
        assert t["difficulties"] == want[name] and t["threshold"] == 0.9
        assert set(t["accuracy"]) == set(t["span"]) == {"rnn", "lstm"}
        for cell, acc in t["accuracy"].items():
            assert len(acc) == len(want[name]) and all(0 <= a <= 1 for a in acc)
            assert t["span"][cell] == memory_span(want[name], acc)
        assert len(t["runs"]) == 2 * len(want[name])
        for run in t["runs"]:
            line = K.TASKS[name].make(run["difficulty"], 1, np.random.default_rng(0))[0].shape[1]
            assert run["task"] == name and run["seq_len"] >= 2 * line
            assert os.path.exists(out / "probe" / f"{run['cell']}-{name}{run['difficulty']}.npz")
    assert res["probe"]["lags"] == [3] and res["probe"]["accuracy"] == tasks["lag"]["accuracy"]
    for text in ("Memory probe", "Parity, which needs a memory",
                 "Multi-query associative recall (MQAR), which needs a memory"):
        assert text in r.output, text
    page = (out / "report.html").read_text()
    assert "<h2>Parity</h2>" in page and "<h2>Multi-query associative recall (MQAR)</h2>" in page
    assert page.count("<svg") == 3                     # one chart per task


def test_compare_probe_without_lag_has_no_lag_probe(run_probe):
    r, res = run_probe("--task", "parity", "--cells", "lstm", "--bits", "2",   # --task: the probe
                       minutes=0.01, hidden=8)
    assert list(res["tasks"]) == ["parity"] and res["probe"] is None
    assert "Memory probe" not in r.output and "Parity" in r.output
    assert res["agreement"] == [] and "measures of memory agree" not in r.output   # no span


@pytest.mark.parametrize("args, said", [
    (["--task", "lag,sorting"], "unknown task 'sorting'; choose from lag, parity, mqar"),
    (["--task", ","], "no task given"),
    (["--task", "parity", "--bits", "0,4"], "each length must be from 1 to 2000"),
    (["--task", "parity", "--bits", "4,x"], "whole numbers"),
    (["--task", "mqar", "--pairs", "27"], "each number of pairs must be from 1 to 26"),
    (["--task", "parity", "--task", "mqar", "--lags", "5"],
     "--lags sets the lag task's difficulties, and it is not run: add --task lag"),
    (["--pairs", "4"], "--pairs sets the mqar task's difficulties"),
])
def test_bad_probe_settings_are_refused_in_one_line(args, said):
    r = CliRunner().invoke(main, ["compare", "--probe", *args])
    assert r.exit_code == 2, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and said in errors[0], r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("opt, value, task", [("--bits", "4", "parity"),
                                               ("--pairs", "2", "mqar")])
def test_task_difficulties_need_their_task(tmp_path, opt, value, task):
    p = tmp_path / "t.txt"
    p.write_text("abc " * 500)
    r = CliRunner().invoke(main, ["compare", str(p), opt, value])
    assert r.exit_code == 2 and f"{opt} sets the {task} task's difficulties: add --task {task}" \
        in r.output, r.output


def made_up_run():
    """A probe-only report of every task, as run.task_results writes it."""
    def part(name, ds, acc):
        task = K.TASKS[name]
        return {"task": name, "unit": task.unit, "need": task.need, "difficulties": ds,
                "accuracy": acc, "chance": task.chance,
                "span": {c: memory_span(ds, a) for c, a in acc.items()}, "threshold": 0.9,
                "hidden": 16, "example": task.text(task.make(ds[0], 2,
                                                             np.random.default_rng(0))[0]),
                "runs": [{"cell": c, "task": name, "difficulty": d, "steps": 100, "seconds": 2.0,
                          "solved_early": a >= 0.99, **({"lag": d} if name == "lag" else {})}
                         for c, accs in acc.items() for d, a in zip(ds, accs)]}
    tasks = {"lag": part("lag", [5, 50], {"rnn": [1.0, 0.2], "lstm": [1.0, 0.95]}),
             "parity": part("parity", [2, 8, 32], {"rnn": [1.0, 0.92, 0.5],
                                                   "lstm": [1.0, 0.6, 0.51]}),
             "mqar": part("mqar", [1, 4, 16], {"rnn": [0.95, 0.3, 0.1],
                                               "lstm": [1.0, 0.91, 0.2]})}
    tasks["lag"]["lags"] = [5, 50]
    return {"text": None, "cells": ["rnn", "lstm"], "models": [], "wall_s": 30.0,
            "probe": tasks["lag"], "tasks": tasks, "agreement": []}


def test_the_report_has_a_table_per_task(tmp_path):
    from charlstm.lab.compare.page import write_report
    from charlstm.lab.compare.results import _print
    rep = made_up_run()
    said = []
    _print(rep, said.append)
    out = "\n".join(said)
    lines = out.split("\n")
    head = next(k for k, ln in enumerate(lines) if ln.startswith("bits "))
    assert lines[head].split() == ["bits", "2", "8", "32", "span"]
    assert lines[head + 1].split() == ["rnn", "100%", "92%", "50%", "8"]
    assert lines[head + 2].split() == ["lstm", "100%", "60%", "51%", "2"]
    head = next(k for k, ln in enumerate(lines) if ln.startswith("pairs "))
    assert lines[head + 1].split() == ["rnn", "95%", "30%", "10%", "1"]
    assert lines[head + 2].split() == ["lstm", "100%", "91%", "20%", "4"]
    assert "chance 50.0%" in out and "chance 10.0%" in out
    page = write_report(rep, str(tmp_path / "report.html"))
    with open(page, encoding="utf-8") as fh:
        html = fh.read()
    assert html.count("<svg") == 3 and "longest string, bits" in html
    assert "<th>pairs</th><th>1</th><th>4</th><th>16</th><th>span</th>" in html


def test_the_png_has_a_panel_per_task():
    pytest.importorskip("matplotlib")
    from charlstm.lab.compare.figure import _figure
    fig = _figure(made_up_run())
    assert [a.get_title() for a in fig.axes] == ["Memory probe", "Parity",
                                                 "Multi-query associative recall (MQAR)"]
    assert [t.get_text() for t in fig.axes[2].get_xticklabels()] == ["1", "4", "16"]
