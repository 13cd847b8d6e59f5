"""``errprop demo``: the report opens with a verdict backed by seeds, renders in a real browser as
one self-contained file, and two runs give the same numbers."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from browser import render, require_browser

from errprop.demo import demo


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    report = demo(out / "a", quick=True, progress=False)
    return out, report


@pytest.mark.slow
def test_report_opens_with_a_verdict_and_renders_in_a_browser(quick_demo):
    out, report = quick_demo
    md = report.read_text()
    assert md.splitlines()[2].startswith("> **Verdict.**")
    study = json.loads((out / "a" / "study.json").read_text())
    assert study["settings"]["seeds"] == [0, 1]
    for arm in ("sa2", "ep"):  # the verdict names every compared objective with its counts
        label = next(a["label"] for a in study["arms"] if a["name"] == arm)
        assert label in md.split("\n\n")[1]
    require_browser()
    page = render(out / "a" / "report.html")
    assert page.verdict and "comparisons" in page.verdict and "seeds" in page.verdict
    assert page.table_rows >= 10
    assert len(page.images) >= 6 and all(img.decoded for img in page.images)
    assert all(img.src_prefix.startswith("data:image/png") for img in page.images)
    assert page.external_requests == [] and page.js_errors == []
    for label in ("excess cross-entropy, median (nats)", "floor", "exact denoiser", "95 % CI"):
        assert label in page.text


@pytest.mark.slow
def test_two_runs_give_identical_numbers(quick_demo):
    out, _ = quick_demo
    demo(out / "b", quick=True, progress=False)
    a = json.loads((out / "a" / "study.json").read_text())
    b = json.loads((out / "b" / "study.json").read_text())
    assert a == b


@pytest.mark.slow
def test_a_finished_demo_reuses_its_work(quick_demo, capsys):
    out, _ = quick_demo
    capsys.readouterr()
    demo(out / "a", quick=True, progress=False)  # everything cached: nothing is trained again
    said = capsys.readouterr().out
    assert "training" not in said and "trained" not in said


@pytest.mark.slow
def test_an_interrupted_parallel_demo_continues_to_the_same_numbers(quick_demo):
    out, _ = quick_demo
    cmd = [sys.executable, "-m", "errprop", "demo", "--quick", "--jobs", "2", "--out", str(out / "c")]
    p = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not any(f.stat().st_size for f in (out / "c").glob("runs/*/seed*/metrics.jsonl")):
        assert p.poll() is None and time.monotonic() < deadline, "the demo ended before training"
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGINT)  # Ctrl-C: to the demo and its workers, mid-training
    log = p.communicate(timeout=300)[0].decode()
    assert p.returncode == 130, log
    assert not (out / "c" / "study.json").exists()
    assert list((out / "c").glob("runs/*/seed*/checkpoints/*.safetensors")), log  # work kept
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    a = json.loads((out / "a" / "study.json").read_text())
    assert json.loads((out / "c" / "study.json").read_text()) == a
