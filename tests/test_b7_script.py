"""Cheap checks of benchmarks/b7_vs_diffusers.py's helpers (no training, no data)."""

import math
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("scipy")

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def b7(script):
    return script("benchmarks/b7_vs_diffusers.py")


def test_paired_stats_t_interval(b7):
    r = b7.paired_stats([1.0, 2.0, 3.0], [2.0, 2.5, 4.5])
    assert r["diffs"] == [-1.0, -0.5, -1.5]
    assert r["diff_mean"] == pytest.approx(-1.0)
    half = 4.302652729911275 * 0.5 / math.sqrt(3)  # t_{0.975, 2} · sd / √n
    assert r["diff_ci95"] == pytest.approx([-1.0 - half, -1.0 + half])
    assert b7.paired_stats([1.0], [2.0])["diff_ci95"] is None


def test_refuses_a_folder_made_with_other_settings(b7, tmp_path):
    b7.check_same(tmp_path, {"a": {"b": 1}, "d": "x"}, {"a": {"b": 1}, "d": "y"}, {"d"})
    with pytest.raises(SystemExit, match="a.b: folder has 1, this run asks for 2"):
        b7.check_same(tmp_path, {"a": {"b": 1}}, {"a": {"b": 2}})


def test_batches_walk_shuffled_epochs(b7):
    n = 300  # 128-batches over a 300-image set: step 2 crosses into epoch 1
    rows = [b7._batch_rows(0, k, n) for k in range(3)]
    first_epoch = [int(i) for r in rows for i in r][:n]
    assert sorted(first_epoch) == list(range(n))
    assert all((b7._batch_rows(0, k, n) == rows[k]).all() for k in range(3))
    assert not (b7._batch_rows(1, 0, n) == rows[0]).all()


def test_report_is_written_by_the_library_with_paired_intervals(b7, tmp_path):
    """write() on three synthetic seeds: one JSON + Markdown pair with provenance, the paired
    table of errprop.stats.paired, and the settings, floors and per-seed numbers."""
    import json
    import types

    from errprop.stats import holm, paired

    def rec(t):
        return {"train_seconds": t, "resumed": False, "bf16": False, "device": "cpu"}

    per_seed = {s: {"floor": 0.5 + s / 10, "floor_n": 64, "classifier_test_accuracy": 0.9,
                    "errprop": {"train": rec(10.0), "fd": {"ddim-2": 3.0 + s, "ddpm-2": 4.0}},
                    "diffusers": {"train": rec(12.0), "fd": {"ddim-2": 3.5 + 0.7 * s, "ddpm-2": 4.2}}}
                for s in (0, 1, 2)}
    a = types.SimpleNamespace(steps=3, n=64, channels=32, grad_clip=0.0, diffusers_dropout=0.0,
                              errprop_dropout=0.1, quick=False, runs=str(tmp_path / "runs"),
                              out=str(tmp_path), command="python benchmarks/b7_vs_diffusers.py")
    payload = b7.write(a, "cpu", [2], [0, 1, 2], per_seed, {"errprop": 1000, "diffusers": 1001}, "trailing")
    stored = json.loads((tmp_path / "b7_vs_diffusers.json").read_text())
    assert stored["commit"] == payload["commit"] and stored["command"] == a.command
    ref = paired([3.0, 4.0, 5.0], [3.5, 4.2, 4.9])
    assert stored["paired"]["ddim-2"]["diff_ci95"] == pytest.approx([ref["lo"], ref["hi"]])
    assert stored["per_seed"]["1"]["errprop"]["fd"]["ddim-2"] == 4.0 and stored["floor"] == [0.5, 0.6, 0.7]
    md = (tmp_path / "b7_vs_diffusers.md").read_text()
    ci = f"[{ref['lo']:+.3f}, {ref['hi']:+.3f}]"
    assert f"| ddim | 2 | 4.000 ± 1.000 | 4.200 ± 0.700 | -0.200 ± 0.300 | {ci} |" in md
    # the family of settings, Holm-adjusted, and the sentence computed from it
    p = [stored["paired"][k]["diff_p"] for k in ("ddim-2", "ddpm-2")]
    assert [stored["paired"][k]["diff_p_holm"] for k in ("ddim-2", "ddpm-2")] == pytest.approx(holm(p))
    assert "errprop's FD is lower (interval below 0) at ddpm-2" in md
    assert "no difference is resolved (the interval holds 0) at ddim-2" in md
    assert "Floor (n = 64 train images vs test): 0.500, 0.600, 0.700" in md and "- machine:" in md


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    """The whole script at its smoke size (< 2 min): trains both sides, scores them with one
    scorer, writes the report. Its helpers alone did not catch a scorer API change that broke the
    real run at its first seed."""
    import subprocess
    import sys

    from errprop.data.images import FASHION_MNIST_ROOT

    if not (FASHION_MNIST_ROOT / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("apt-get install dataset-fashion-mnist")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "b7_vs_diffusers.py"), "--quick",
                        "--runs", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    report = (tmp_path / "results" / "b7_vs_diffusers.md").read_text()
    assert "| ddim | 2 |" in report and "| ddpm | 2 |" in report and "Floor" in report
    # A second run over the same seeds reads each seed's scores back instead of sampling again,
    # and writes the same report.
    r2 = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "b7_vs_diffusers.py"), "--quick",
                         "--runs", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert r2.stdout.count("scored already") == 2 and "sampling + scoring" not in r2.stdout
    table = [line for line in report.splitlines() if line.startswith("| dd")]
    again = (tmp_path / "results" / "b7_vs_diffusers.md").read_text()
    assert [line for line in again.splitlines() if line.startswith("| dd")] == table
