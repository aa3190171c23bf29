"""`charlstm bench` runs end to end (the quick subset) and reports what it measured."""
from charlstm import bench, rival


def test_quick_bench_reports_every_row():
    res = bench.run(repeats=3, quick=True, memory=False, log=lambda m: None)
    assert len(res["train"]) == 2 and len(res["sample"]) == 1
    assert len(res["gemm_peak_readings"]) == 2
    assert res["gemm_peak_gflops"] == max(res["gemm_peak_readings"]) > 0
    for row in res["train"] + res["sample"]:
        assert row["ours"] > 0
        assert (row["ratio"] is not None) == rival.available()
    assert res["sample"][0]["ours_float32"] > 0         # float16 weights and float32 both
    assert (res["sample"][0]["ratio_float32"] is not None) == rival.available()
    text = bench.table(res)
    assert "lstm 1x128 B=32" in text and "Start-up" in text and "f16/PT" in text
