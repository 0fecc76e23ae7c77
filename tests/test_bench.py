"""The benchmark runs end to end on the tiny checkpoint (two chunks), so it cannot rot."""

import json

import pytest

from bench.run import main, workload

KEYS = {"engine", "batch_size", "wall_s", "frames_per_s", "x_real_time", "peak_mem_mb", "ratio_to_seed_design",
        "cpu_s", "ratio_cpu_to_seed_design"}


def test_benchmark_smoke(tmp_path):
    out = tmp_path / "results.json"
    main(["--sizes", "tiny", "--chunks", "2", "--max-new-tokens", "24", "--render-batch-sizes", "1,2",
          "--fast-batch-sizes", "2", "--models-dir", str(tmp_path / "models"), "--json", str(out)])
    data = json.loads(out.read_text())
    records = data["results"]
    assert [r["engine"] for r in records] == ["seed_design", "sequential", "render_bs1", "render_bs2", "fast_bs2"]
    for r in records:
        assert KEYS <= set(r), r
        assert r["wall_s"] > 0 and r["frames"] > 0 and r["peak_mem_mb"] > 0 and r["cpu_s"] > 0
        assert r["same_lengths"], f"{r['engine']} did different work than the seed design"
        assert abs(r["frames_per_s"] - r["frames"] / r["wall_s"]) < 0.01 * r["frames_per_s"] + 0.01
    assert records[0]["ratio_to_seed_design"] == 1.0 and records[0]["ratio_cpu_to_seed_design"] == 1.0
    assert data["machine"] and data["chunks"] == 2


def test_workload_is_uneven_book_text():
    texts = workload(200)
    assert len(texts) >= 10
    assert max(map(len, texts)) > 5 * min(map(len, texts))  # titles and long paragraphs alike
    assert all(len(t) <= 200 for t in texts)


@pytest.mark.slow
def test_render_rows_run_the_real_render_at_equal_work(tmp_path):
    """``--render``: the real render (check off and on), the old loop, the bare engine and the seed design, one run."""
    out = tmp_path / "render.json"
    main(["--render", "--sizes", "tiny", "--rounds", "1", "--chunk-chars", "400", "--max-new-tokens", "64",
          "--chapters", "1", "--models-dir", str(tmp_path / "models"), "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["chunks"] == len(workload(400, chapters=1)) < len(workload(400))  # the first chapter only
    rows = data["render"][0]["rows"]
    assert [r["row"] for r in rows] == ["seed_design", "fast_bs5", "render_bs5", "render_check_bs5", "loop_bs5",
                                        "render_full_rows_bs5", "check_alone"]
    for r in rows:
        assert r["wall_s"] > 0 and r["cpu_s"] > 0 and r["vs_fast"] > 0 and r["vs_seed"] > 0
        assert r["vs_fast_cpu"] > 0 and r["vs_seed_cpu"] > 0
        assert r["same_work"], f"{r['row']} did different work than the seed design"
