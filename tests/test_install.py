"""charlstm installs like any package: `python -m build` makes a wheel and an
sdist, and the wheel, installed into a fresh venv, trains and samples from a
folder that has nothing to do with the checkout (slow: a venv and its
dependencies)."""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_a_wheel_trains_and_samples_from_an_unrelated_folder(tmp_path):
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    # build's default: the sdist, then the wheel from the sdist, built outside
    # the checkout (asked for both at once, it builds in place and leaves build/)
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), ROOT], check=True,
                   capture_output=True)
    wheels = glob.glob(str(dist / "charlstm-*.whl"))
    assert wheels and glob.glob(str(dist / "charlstm-*.tar.gz"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [wheels[0]], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "t.txt").write_text("the quick brown fox jumps over the lazy dog.\n" * 50)
    charlstm = str(venv / "bin" / "charlstm")
    env = dict(os.environ, PYTHONPATH="")
    r = subprocess.run([charlstm, "train", "t.txt", "--steps", "2", "--hidden", "16",
                        "--batch-size", "2", "--seq-len", "16", "--no-progress"],
                       cwd=elsewhere, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert (elsewhere / "checkpoints" / "t-lstm.npz").exists()
    r = subprocess.run([charlstm, "sample", "--seed", "the", "--length", "20"],
                       cwd=elsewhere, capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout.startswith("the"), r.stderr
    import charlstm as here                      # the venv's copy, not this checkout's
    r = subprocess.run([str(venv / "bin" / "python"), "-c",
                        "import charlstm, sys; print(charlstm.__file__)"],
                       cwd=elsewhere, capture_output=True, text=True, env=env)
    assert "site-packages" in r.stdout and os.path.dirname(here.__file__) not in r.stdout
    r = subprocess.run([str(venv / "bin" / "python"), "-c",
                        "from charlstm.errors import install_hint; print(install_hint('tune'))"],
                       cwd=elsewhere, capture_output=True, text=True, env=env)
    assert "'charlstm[tune]'" in r.stdout and "-e" not in r.stdout.split()
