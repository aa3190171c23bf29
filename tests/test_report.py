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

import pytest

from charlstm import compare
from charlstm.compare import plural

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
