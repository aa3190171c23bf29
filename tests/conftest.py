"""Fixtures shared by the tests."""
import json
import signal

import pytest

# A shell runs a background job with SIGINT ignored, and the ignoring is
# inherited: the Ctrl-C tests would then test nothing. They run with
# Python's own handler, however the suite was started.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# Likewise nohup's SIGHUP (and an ignored SIGTERM): the commands the tests start
# would inherit it, and rightly keep ignoring it (test_signals checks that).
for _sig in (signal.SIGHUP, signal.SIGTERM):
    if signal.getsignal(_sig) is signal.SIG_IGN:
        signal.signal(_sig, signal.SIG_DFL)

@pytest.fixture(autouse=True)
def leaves_the_folder_it_runs_in_alone():
    """No test writes into the folder the suite runs in (a user's clone, with
    its checkpoints/): every run a test starts writes under tmp_path, and a
    command refused there leaves not even an empty folder."""
    import os

    def entries():
        found = set(os.listdir("."))
        if os.path.isdir("checkpoints"):
            found |= {os.path.join("checkpoints", n) for n in os.listdir("checkpoints")}
        return found
    before = entries()
    yield
    left = entries() - before
    assert not left, f"left in {os.getcwd()}: {sorted(left)}"


POEM = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;"""


@pytest.fixture
def poem(tmp_path):
    p = tmp_path / "poem.txt"
    p.write_text(POEM, encoding="utf-8")
    return str(p)


@pytest.fixture
def run_probe(tmp_path):
    """compare's memory probe, run small in tmp_path/run: (the result, results.json).
    Its arguments are compare's (tasks, cells, difficulties) and the probe's size."""
    from click.testing import CliRunner
    from charlstm.cli import main

    def run(*args, minutes: float, hidden: int):
        out = tmp_path / "run"
        r = CliRunner().invoke(main, [
            "compare", *args, "--probe-minutes", str(minutes), "--probe-hidden", str(hidden),
            "--jobs", "1", "--no-progress", "--out-dir", str(out)], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r, json.loads((out / "results.json").read_text())
    return run
