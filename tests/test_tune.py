"""charlstm tune: the search end to end, resumed, shared by two processes (on
a journal file and on a real PostgreSQL server), pruned, and the command it
prints. Trials are 3 seconds of a 16-unit model, so each search is short."""
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

optuna = pytest.importorskip("optuna")

from charlstm.lab.tune import run as T  # noqa: E402
from charlstm.lab.tune import report as R  # noqa: E402
from charlstm.errors import CharlstmError  # noqa: E402

from .conftest import POEM  # noqa: E402

SHAKESPEARE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                           "tinyshakespeare.txt")
SMALL = ["--trial-minutes", "0.05", "--hidden", "16", "--layers", "1", "--no-progress"]


@pytest.fixture
def text(tmp_path):
    """60,000 characters: the head of tinyshakespeare when it is here, else a poem."""
    p = tmp_path / "text.txt"
    if os.path.exists(SHAKESPEARE):
        with open(SHAKESPEARE, encoding="utf-8") as fh:
            p.write_text(fh.read(60_000), encoding="utf-8")
    else:
        p.write_text((POEM + "\n\n") * 110, encoding="utf-8")
    return str(p)


def tune(cwd, *args, timeout=400):
    return subprocess.run([sys.executable, "-m", "charlstm", "tune", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def journal(path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    return JournalStorage(JournalFileBackend(path))


def study_at(run_dir, name="charlstm-text"):
    return optuna.load_study(study_name=name, storage=journal(os.path.join(run_dir,
                                                                           "study.log")))


def kinds(study):
    return [T.trial_kind(t) for t in study.get_trials()]


def done(study):
    return [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]


# -- end to end -------------------------------------------------------------

def test_tiny_search_end_to_end(tmp_path, text):
    r = tune(tmp_path, text, "--trials", "3", "--json", *SMALL)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["counts"]["complete"] + rep["counts"]["pruned"] == 3
    assert len([t for t in rep["trials"] if t["state"] != "withdrawn"]) == 3
    best = rep["best"]
    assert best["value"] == min(t["value"] for t in rep["trials"] if t["state"] == "complete")
    assert best["command"].startswith(f"charlstm train {text} --cell ")
    run_dir = tmp_path / "checkpoints" / "tune-text"
    assert rep["checkpoint"] == os.path.join("checkpoints", "tune-text", "best.npz")
    assert json.loads((run_dir / "best.json").read_text())["trial"] == best["number"]
    from charlstm import checkpoint as ckpt
    ck = ckpt.load(str(run_dir / "best.npz"))
    assert R.settings_of(ck) | best["settings"] == R.settings_of(ck)   # the best trial's model
    assert json.loads((run_dir / "tune.json").read_text())["best"]["number"] == best["number"]
    if rep["png"]:
        assert (run_dir / "tune.png").stat().st_size > 10_000
    assert not os.listdir(run_dir / "trials")              # only the best model is kept
    # A second run of the same command finds the study full and shows the table.
    r = tune(tmp_path, text, "--trials", "3", *SMALL)
    assert r.returncode == 0, r.stderr
    assert "has its 3 trials already" in r.stderr
    assert "train with the best settings:" in r.stdout and best["command"] in r.stdout
    assert len(done(study_at(str(run_dir)))) == 3


def test_printed_command_gives_the_trials_settings(tmp_path, text):
    r = tune(tmp_path, text, "--trials", "2", "--json", *SMALL)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    args = rep["best"]["command"].split()
    assert args[:3] == ["charlstm", "train", text]
    out = str(tmp_path / "again.npz")
    p = subprocess.run([sys.executable, "-m", "charlstm", *args[1:], "--out", out,
                        "--no-progress"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    from charlstm import checkpoint as ckpt
    trial_ck = ckpt.load(str(tmp_path / rep["checkpoint"]))
    again = ckpt.load(out)
    assert R.settings_of(again) == R.settings_of(trial_ck)
    assert again.train.minutes == trial_ck.train.minutes == 0.05
    assert again.model == trial_ck.model


# -- resuming ---------------------------------------------------------------

def _wait_for_running(run_dir, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if os.path.exists(os.path.join(run_dir, "study.log")):
            try:
                s = study_at(run_dir)
            except KeyError:
                s = None
            if s and any(t.state.name == "RUNNING" and t.params for t in s.get_trials()):
                return
        time.sleep(0.3)
    raise AssertionError("no trial started")


def test_ctrl_c_keeps_the_study_and_a_rerun_runs_only_the_missing_trials(tmp_path, text):
    run_dir = str(tmp_path / "checkpoints" / "tune-text")
    args = [sys.executable, "-m", "charlstm", "tune", text, "--trials", "3",
            "--trial-minutes", "0.2", "--hidden", "16", "--layers", "1", "--no-progress"]
    p = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    _wait_for_running(run_dir)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "run the same command to resume" in err
    s = study_at(run_dir)
    cut = [t for t in s.get_trials() if T.trial_kind(t) == "interrupted"]
    assert len(cut) == 1 and not any(t.state.name == "RUNNING" for t in s.get_trials())
    n_before = len(done(s))
    assert n_before < 3
    assert not glob.glob(os.path.join(run_dir, "trials", "*.npz"))
    r = tune(tmp_path, text, "--trials", "3", "--trial-minutes", "0.2", "--hidden", "16",
             "--layers", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    s = study_at(run_dir)
    assert len(done(s)) == 3
    new = [t for t in done(s) if t.number > max(t.number for t in s.get_trials()
                                                  if T.trial_kind(t) == "interrupted")]
    assert len(new) == 3 - n_before                         # only the missing ones ran
    retry = [t for t in s.get_trials() if t.user_attrs.get("retry_of") == cut[0].number]
    assert len(retry) == 1 and retry[0].params == cut[0].params


def test_a_killed_workers_trial_is_found_lost_and_tried_again(tmp_path):
    storage = journal(str(tmp_path / "study.log"))
    study = optuna.create_study(study_name="s", storage=storage)
    t = study.ask()
    t.suggest_float("x", 0, 1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    storage.set_trial_system_attr(t._trial_id, "charlstm:worker",
                                  {"host": T.HOST, "pid": dead.pid, "alive": time.time()})
    alive = study.ask()                                       # this process's: alive
    alive.suggest_float("x", 0, 1)
    storage.set_trial_system_attr(alive._trial_id, "charlstm:worker",
                                  {"host": T.HOST, "pid": os.getpid(), "alive": time.time()})
    assert T.fail_lost(study, storage) == [t.number]
    assert T.fail_lost(study, storage, now=time.time() + T.LOST_AFTER_S + 1) == [alive.number]
    assert T.retry_missing(study) == [t.number, alive.number]
    assert T.retry_missing(study) == []                       # queued once only
    again = study.ask()
    assert again.user_attrs["retry_of"] == t.number
    assert again.suggest_float("x", 0, 1) == t.params["x"]


# -- two workers on one study -----------------------------------------------

def _two_workers(tmp_path, text, extra, n=5):
    args = ["--trials", str(n), *SMALL, *extra]
    ps = [subprocess.Popen([sys.executable, "-m", "charlstm", "tune", text, *args],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in ps]
    for p, (o, e) in zip(ps, outs):
        assert p.returncode == 0, e
    return outs


def _shared_fairly(study, n):
    trials = study.get_trials()
    finished = done(study)
    assert len(finished) == n                                 # N trials in all
    keys = [t.user_attrs.get("queued_as") for t in trials
            if t.user_attrs.get("queued_as") and T.trial_kind(t) != "withdrawn"]
    assert len(keys) == len(set(keys))                        # a queued trial ran once
    workers = {t.user_attrs["worker"] for t in finished}
    assert len(workers) == 2                                  # both commands ran trials
    assert not [t for t in trials if t.state.name == "RUNNING"]


def test_two_commands_on_one_journal_share_the_trials(tmp_path, text):
    _two_workers(tmp_path, text, [])
    _shared_fairly(study_at(str(tmp_path / "checkpoints" / "tune-text")), 5)


def test_claim_refuses_surplus_and_duplicate_trials(tmp_path):
    study = optuna.create_study(study_name="s", storage=journal(str(tmp_path / "j.log")))
    a = study.ask()
    assert T.claim(study, a, 1) is None
    b = study.ask()
    assert T.claim(study, b, 1) == "surplus"                  # a, running, came first
    assert T.claim(study, b, 2) is None
    study.enqueue_trial({}, user_attrs={"queued_as": "defaults"})
    study.enqueue_trial({}, user_attrs={"queued_as": "defaults"})   # two starts at once
    c, d = study.ask(), study.ask()
    assert T.claim(study, c, None) is None and T.claim(study, d, None) == "duplicate"


def _postgres():
    """A throwaway PostgreSQL server on a free port: (URL, stop), or None
    when PostgreSQL's programs are not installed."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    initdb = shutil.which("initdb") or (bins and os.path.join(bins[-1], "initdb"))
    if not initdb or not os.path.exists(initdb):
        return None
    pg_ctl = os.path.join(os.path.dirname(initdb), "pg_ctl")
    root = tempfile.mkdtemp(prefix="charlstm-pg-")
    as_user = []
    if os.getuid() == 0:                       # initdb refuses to run as root
        import pwd
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            return None
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(root, "data")
    subprocess.run(as_user + [initdb, "-D", data, "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(as_user + [pg_ctl, "-D", data, "-l", os.path.join(root, "log"), "-w",
                              "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                              "start"], check=True, capture_output=True)

    def stop():
        subprocess.run(as_user + [pg_ctl, "-D", data, "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


@pytest.fixture
def postgres():
    pytest.importorskip("psycopg")
    pg = _postgres()
    if pg is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    url, stop = pg
    yield url
    stop()


def test_two_commands_on_one_postgresql_study_share_the_trials(tmp_path, text, postgres):
    outs = _two_workers(tmp_path, text, ["--storage", postgres, "--study", "shared"])
    study = optuna.load_study(study_name="shared", storage=T.open_storage(postgres, ""))
    _shared_fairly(study, 5)
    best = min((t for t in study.get_trials() if t.state.name == "COMPLETE"),
               key=lambda t: t.value)
    # Each sees the best of both, or says that a trial was still running on the
    # other machine when it ended (it does not wait for another machine's trial).
    for out, _ in outs:
        assert f"best: trial {best.number}, {best.value:.4f}" in out or "running elsewhere" in out
    assert any(f"best: trial {best.number}, {best.value:.4f}" in out for out, _ in outs)


# -- pruning ----------------------------------------------------------------

def test_pruning_stops_a_clearly_worse_trial(tmp_path, text):
    from charlstm.data import load_corpus
    run_dir = str(tmp_path)
    storage = journal(str(tmp_path / "study.log"))
    study = optuna.create_study(study_name="p", storage=storage, pruner=T._pruner())
    corpus = load_corpus(text, 0.1)
    base = T.requested_space(None, {"cell": "lstm", "hidden": 16, "layers": 1,
                                    "dropout": 0.0, "seq_len": 50, "batch_size": 16})
    spec = {"text": text, "run_dir": run_dir, "trial_minutes": 0.05, "val_frac": 0.1,
            "threads": 1}

    def run(lr):
        space = T.resolve_space(dict(base, lr={"value": lr}), None, 0.05, corpus.V,
                                len(corpus.train))
        trial = study.ask()
        try:
            v = T.run_trial(trial, dict(spec, space=space), corpus)
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return None
        study.tell(trial, v)
        return v

    good = [run(1e-2) for _ in range(3)]
    assert all(v is not None and v < 3.0 for v in good)
    assert run(1e-6) is None                                    # no better than a guess
    bad = study.get_trials()[-1]
    assert bad.state.name == "PRUNED"
    assert T.PRUNE_FROM_PCT <= bad.user_attrs["pruned_at"] < 100
    assert bad.user_attrs["last_val"] > max(good) + 0.5


def test_reporter_reports_each_tenth_of_the_budget_once():
    class Trial:
        def __init__(self):
            self.reports = []

        def report(self, v, step):
            self.reports.append((step, v))

        def should_prune(self):
            return False

    class Tr:
        state = {}
    trial, tr = Trial(), Tr()
    rep = T.Reporter(trial, minutes=1.0)
    for elapsed, val in ((3, 2.0), (7, 1.9), (8, 1.8), (20, 1.5), (60, 1.4)):
        tr.state = {"elapsed": elapsed, "last_val": val}
        rep(tr)
    assert trial.reports == [(10, 1.9), (20, 1.5), (30, 1.5)]


# -- the space --------------------------------------------------------------

def test_space_file_json_and_toml(tmp_path):
    j = tmp_path / "s.json"
    j.write_text(json.dumps({"cell": ["lstm", "gru"], "seq-len": 100,
                             "lr": {"low": 0.001, "high": 0.02, "log": True}}))
    t = tmp_path / "s.toml"
    t.write_text('cell = ["lstm", "gru"]\nseq-len = 100\nlr = {low = 0.001, high = 0.02, '
                 'log = true}\n')
    a = T.requested_space(T.load_space_file(str(j)), {"hidden": 256})
    b = T.requested_space(T.load_space_file(str(t)), {"hidden": 256})
    assert a == b
    assert a["cell"] == {"choices": ["lstm", "gru"]} and a["seq_len"] == {"value": 100}
    assert a["hidden"] == {"value": 256} and a["dropout"]["step"] == 0.05


@pytest.mark.parametrize("space, says", [
    ({"units": [1]}, "unknown setting 'units'"),
    ({"cell": ["lstm", "transformer"]}, "'transformer' is not one of"),
    ({"hidden": {"low": 64, "high": 512}}, "give a list of values"),
    ({"lr": {"low": 0.1, "high": 0.01}}, "is not below high"),
    ({"dropout": [0.2, 1.5]}, "outside [0.0, 0.99]"),
    ({"batch_size": []}, "an empty list"),
])
def test_bad_space_files_are_named(tmp_path, text, space, says):
    p = tmp_path / "space.json"
    p.write_text(json.dumps(space))
    r = tune(tmp_path, text, "--space", str(p), *SMALL)
    assert r.returncode == 1 and says in r.stderr and "Traceback" not in r.stderr


def test_bad_json_and_a_foreign_folder_are_refused(tmp_path, text):
    p = tmp_path / "space.json"
    p.write_text("{cell: lstm")
    r = tune(tmp_path, text, "--space", str(p), *SMALL)
    assert r.returncode == 1 and "is not valid JSON" in r.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    r = tune(tmp_path, text, "--out-dir", "mine", *SMALL)
    assert r.returncode == 1 and "not a charlstm tune run's (notes.txt)" in r.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_sizes_too_slow_for_the_budget_are_left_out():
    space = T.requested_space(None, {})
    slow = T.Speed(flops_rate=20e9, threads=1)
    said = []
    r = T.resolve_space(space, slow, 1.0, 65, 1_000_000, said.append)
    sizes = r["size"]["choices"]
    assert "1x128" in sizes and "3x1024" not in sizes and "hidden" not in r
    for s in sizes:                                   # every size kept makes its steps
        L, H = map(int, s.split("x"))
        assert 60 * slow.chars_per_s("lstm", H, L, 65) / 1600 >= T.MIN_TRIAL_STEPS
    assert said and "3x1024" in said[0]
    with pytest.raises(CharlstmError, match="no model size"):
        T.resolve_space(T.requested_space(None, {"hidden": 1024, "layers": 3}), slow, 0.1,
                        65, 10 ** 6)
    short = T.resolve_space(space, None, 1.0, 65, 3000)
    assert short["batch_size"]["choices"] == [16, 32, 64] and short["seq_len"]["choices"] \
        == [25, 50, 100]


@pytest.mark.parametrize("cells", [["lstm", "mingru"], ["mingru", "slstm"], ["rnn", "gru"],
                                   ["minlstm", "mingru"]])
def test_the_cut_is_for_the_cell_with_the_most_work_per_character(cells):
    """A size is kept only if the costliest cell in the space (by
    flops_per_char, not by its number of gates) makes its steps there."""
    space = T.requested_space({"cell": cells}, {})
    slow = T.Speed(flops_rate=20e9, threads=1)
    kept = T.resolve_space(space, slow, 1.0, 65, 1_000_000)["size"]["choices"]
    sizes = [(L, H) for L in space["layers"]["choices"] for H in space["hidden"]["choices"]]
    assert 0 < len(kept) < len(sizes)                 # the budget cuts somewhere
    for L, H in sizes:
        steps = min(60 * slow.chars_per_s(c, H, L, 65) / 1600 for c in cells)
        assert (f"{L}x{H}" in kept) == (steps >= T.MIN_TRIAL_STEPS), (L, H, steps)


def test_defaults_trial_is_train_defaults():
    space = T.resolve_space(T.requested_space(None, {}), None, 3.0, 65, 10 ** 6)
    d = T.defaults_params(space)
    from charlstm.config import ModelConfig, TrainConfig
    m, t = T.configs(T.suggest(optuna.trial.FixedTrial(d), space), 3.0)
    from charlstm.sizing import warmup_for          # as train chooses it for the size
    assert m == ModelConfig() and t == TrainConfig(minutes=3.0, warmup=warmup_for(m.hidden))
    assert t.warmup > 0                              # (768 units: the warm-up)
    assert T.defaults_params(T.resolve_space(T.requested_space(None, {"cell": "gru"}), None,
                                             3.0, 65, 10 ** 6)) is None


def test_a_study_begun_with_other_settings_is_refused(tmp_path, text):
    r = tune(tmp_path, text, "--trials", "1", *SMALL)
    assert r.returncode == 0, r.stderr
    r = tune(tmp_path, text, "--trials", "2", *SMALL[:-1], "--dropout", "0.1")
    assert r.returncode == 1 and "its space differs in dropout" in r.stderr
    with open(text, "a", encoding="utf-8") as fh:
        fh.write("more text\n")
    r = tune(tmp_path, text, "--trials", "2", *SMALL)
    assert r.returncode == 1 and "it searches another text" in r.stderr


def test_without_optuna_tune_says_how_to_install_it(tmp_path, text):
    code = ("import sys; sys.modules['optuna'] = None; from charlstm.cli import main; "
            f"main(['tune', {text!r}])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1
    assert "-m pip install -e '" in r.stderr and "[tune]'" in r.stderr
    assert "Traceback" not in r.stderr


def test_storage_urls_are_redacted_and_bad_ones_named(tmp_path):
    assert T.redact("postgresql://me:secret@db/x") == "postgresql://me:***@db/x"
    assert T._with_driver("postgresql://h/db").startswith("postgresql+psycopg://") or \
        __import__("importlib").util.find_spec("psycopg2")
    with pytest.raises(CharlstmError, match=r"cannot open the study at --storage "
                                            r"nosuch://me:\*\*\*@h/x"):
        T.open_storage("nosuch://me:pw@h/x", str(tmp_path))


def test_a_trial_too_slow_for_its_batch_is_pruned_before_it_trains(tmp_path, text,
                                                                    monkeypatch):
    """The size check is at batch 32 x 50; a trial's own batch can be 16 times
    that (1x1024 at 64 x 200 made 2 steps of a 3-minute trial): such a trial is
    pruned at once, with the reason."""
    from charlstm.data import load_corpus
    corpus = load_corpus(text, 0.1)
    study = optuna.create_study(study_name="s", storage=journal(str(tmp_path / "j.log")))
    space = T.resolve_space(T.requested_space(None, {"cell": "lstm", "hidden": 64, "layers": 1,
                                                     "seq_len": 100, "batch_size": 64}),
                            None, 0.05, corpus.V, len(corpus.train))
    spec = {"text": text, "run_dir": str(tmp_path), "trial_minutes": 0.05, "val_frac": 0.1,
            "threads": 1, "space": space, "flops_rate": 1e9}     # a slow machine
    s = dict(cell="lstm", hidden=64, layers=1, batch_size=64, seq_len=100)
    assert T.expected_steps(spec, s, corpus.V) < T.MIN_TRIAL_STEPS
    trial = study.ask()
    import charlstm.train

    def no_training(*a, **k):
        raise AssertionError("the trial was built to train")
    monkeypatch.setattr(charlstm.train, "Trainer", no_training)    # pruned before it trains
    with pytest.raises(optuna.TrialPruned):
        T.run_trial(trial, spec, corpus)
    assert trial.user_attrs["reason"].startswith("too slow: ~")
    assert T.expected_steps(dict(spec, flops_rate=None), s, corpus.V) is None


def test_the_png_draws_every_kind_of_trial(tmp_path):
    """Complete, pruned in training, pruned before it (no loss), diverged, and
    a loss far above the rest, on a space with many sizes."""
    pytest.importorskip("matplotlib")
    space = T.resolve_space(T.requested_space(None, {}), None, 3.0, 65, 10 ** 6)

    def row(n, state, value=None, last=None, **s):
        settings = dict(cell="lstm", layers=1, hidden=256, dropout=0.2, lr=0.01, seq_len=50,
                        batch_size=32) | s
        return {"number": n, "state": state, "settings": settings, "value": value,
                "last_val": last, "pruned_at": 40 if last else None, "defaults": n == 0}
    rep = {"space": space, "trial_minutes": 3.0, "defaults": {"number": 0, "value": 1.68},
           "counts": {"complete": 3, "pruned": 2, "diverged": 1},
           "trials": [row(0, "complete", 1.68, hidden=768, dropout=0.5),
                      row(1, "pruned", last=2.1, cell="gru"),
                      row(2, "pruned", layers=3, hidden=1024, batch_size=128),
                      row(3, "diverged", 4.5, hidden=1024),
                      row(4, "complete", 1.50, lr=0.02), row(5, "complete", 3.3, lr=1e-3)]}
    path = tmp_path / "tune.png"
    assert R.plot(rep, str(path)) and path.stat().st_size > 20_000


def test_trials_are_found_by_optunas_public_storage_api(tmp_path):
    """A worker's heartbeat and fail_lost reach a trial through the storage
    charlstm opened, by the public get_study_id_from_name and
    get_trial_id_from_study_id_trial_number."""
    storage = journal(str(tmp_path / "study.log"))
    study = optuna.create_study(study_name="s", storage=storage)
    trials = [study.ask() for _ in range(3)]
    for t in trials:
        assert T.trial_id(storage, "s", t.number) == t._trial_id
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    storage.set_trial_system_attr(trials[1]._trial_id, "charlstm:worker",
                                  {"host": T.HOST, "pid": dead.pid, "alive": time.time()})
    assert T.fail_lost(study, storage) == [trials[1].number]
    assert study.get_trials()[1].user_attrs["lost"] and T.trial_kind(study.get_trials()[1]) == "lost"
