"""`charlstm bench` runs end to end (the quick subset) and reports what it measured."""
import pytest

from charlstm.tools import bench, rival


@pytest.mark.slow
def test_quick_bench_reports_every_row():
    res = bench.run(repeats=3, quick=True, memory=False, log=lambda m: None)
    assert len(res["train"]) == 2 and len(res["sample"]) == 1
    for row in res["train"]:             # each against the GEMM timed in turns with it
        assert row["peak_gflops"] > 0
        assert abs(row["ours_share"] - row["ours_gflops"] / row["peak_gflops"]) < 1e-12
    assert min(r["peak_gflops"] for r in res["train"]) <= res["gemm_peak_gflops"]
    for row in res["train"] + res["sample"]:
        assert row["ours"] > 0
        assert (row["ratio"] is not None) == rival.available()
    for key in ("_float16", "_float32"):                # int8 weights, float16 and float32
        assert res["sample"][0]["ours" + key] > 0
        assert (res["sample"][0]["ratio" + key] is not None) == rival.available()
    text = bench.table(res)
    assert "lstm 1x128 B=32" in text and "Start-up" in text and "i8/PT" in text and "f16/PT" in text


def test_table_explains_a_share_over_the_peak():
    def res(share):
        row = dict(cell="irnn", layers=1, hidden=512, batch=64, ours=1.0, ours_gflops=1.0,
                   peak_gflops=1.0, ours_share=share, torch=None, ratio=None)
        return dict(date="d", machine="m", workers=2, torch=None, gemm_peak_gflops=1.0,
                    train=[row], sample=[], startup_s=1.0)
    assert bench.OVER_PEAK in bench.table(res(1.09))
    assert bench.OVER_PEAK not in bench.table(res(0.99))


def test_sampling_speeds_pair_each_call_with_its_characters(monkeypatch):
    """Each speed is the characters its own call made over that call's time:
    stand-ins that take a known time per character must read back as that."""
    import time
    per_char = {"int8": 1e-6, "float16": 2e-6, "float32": 4e-6, "cell": 20e-6, "module": 50e-6}

    def fake(key, n):
        return lambda: time.sleep(n * per_char[key])
    monkeypatch.setattr(bench, "ours_sampler", lambda L, H, n, w: fake(w, n))
    monkeypatch.setattr(bench, "torch_sampler", lambda L, H, n, threads, loop: fake(loop, n))
    row = bench.sampling_row(1, 512, 2, True)
    got = {"int8": row["ours"], "float16": row["ours_float16"], "float32": row["ours_float32"],
           "cell": row["torch_cell"], "module": row["torch_module"]}
    for key, speed in got.items():        # sleep overshoots a little, never undershoots
        assert 0.7 / per_char[key] < speed <= 1.0 / per_char[key], key
    assert row["torch"] == row["torch_cell"]
    assert abs(row["ratio"] - row["ours"] / row["torch_cell"]) < 1e-9


def test_gemm_probe_multiplies_at_each_call():
    """Each call is one n×n product in the child: a larger n takes longer."""
    import time
    small, large = bench.GemmProbe(1, 64), bench.GemmProbe(1, 1024)
    try:
        times = []
        for probe in (small, large):
            probe()
            t = time.perf_counter()
            for _ in range(3):
                probe()
            times.append(time.perf_counter() - t)
        assert times[1] > 10 * times[0]          # 4096 times the arithmetic
        assert large.flops == 2.0 * 1024 ** 3
    finally:
        small.close()
        large.close()
