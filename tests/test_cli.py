"""The ``errprop`` command end to end on the ring of 8."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from errprop import checkpoint
from errprop.cli import build_parser, main
from errprop.data.gmm import GaussianMixture

ROOT = Path(__file__).parents[1]
SMALL = ["--set", "train.steps=30", "--set", "model.width=32", "--set", "model.depth=1", "--no-progress"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--config", str(ROOT / "configs/gmm.yaml"), "--out", str(run), *SMALL]) == 0
    return run


def test_sample_writes_npz_and_png_and_prints_path(small_run, capsys):
    argv = ["sample", str(small_run), "--sampler", "ddpm", "--steps", "5", "--n", "40", "--seed", "1"]
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == str(small_run / "samples" / "ddpm-uniform-5-1.npz")
    assert np.load(last)["x"].shape == (40, 2)
    assert (small_run / "samples" / "ddpm-uniform-5-1.png").stat().st_size > 1000


def test_same_seed_same_samples_whatever_batch_size(small_run, capsys):
    arrays = []
    for bs in ("40", "7"):
        assert main(["sample", str(small_run), "--sampler", "ddim", "--eta", "1", "--steps", "4", "--n", "40",
                     "--seed", "2", "--batch-size", bs]) == 0
        arrays.append(np.load(capsys.readouterr().out.strip().splitlines()[-1])["x"])
    # Noise is identical per sample (bitwise: tests/test_samplers.py); the network's BLAS kernels
    # may round differently for another batch shape, so agreement is to float32 rounding, amplified
    # by the chain.
    np.testing.assert_allclose(arrays[0], arrays[1], rtol=1e-4, atol=1e-4)


def test_resume_continues(small_run, capsys):
    assert main(["train", "--resume", str(small_run), "--set", "train.steps=35", "--no-progress"]) == 0
    assert "trained 35 steps" in capsys.readouterr().out


def test_dry_run_prints_resolved_config(capsys):
    argv = ["train", "--config", str(ROOT / "configs/gmm.yaml"), "--set", "train.steps=7", "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "steps: 7" in out and "parameterization: eps" in out


@pytest.mark.parametrize("argv,message", [
    (["train", "--set", "train.steps=-1", "--dry-run"], "train.steps must be ≥ 1"),
    (["train", "--config", "missing.yaml"], "config file not found"),
    (["sample", "no/such/run"], "no run folder or checkpoint"),
    (["train", "--resume", "no/such/run"], "not a run folder"),
    (["train", "--set", "sample.sigmas=[1.0, 2.0]", "--dry-run"], "strictly decreasing"),
    (["train", "--set", "sample.steps=1001", "--set", "train.steps=1", "--out", "{tmp}/r"],
     "at most 1000"),
    (["train", "--out", "/dev/null/run", "--set", "train.steps=1"], "--out /dev/null/run"),
    (["compare", "{tmp}/a", "--out", "/dev/null/cmp"], "--out /dev/null/cmp"),
    (["demo", "--quick", "--out", "/dev/null/demo"], "--out /dev/null/demo"),
    (["train", "--checkpoint", "3"], "go with --resume"),
])
def test_user_errors_are_one_clear_line(argv, message, capsys, tmp_path):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_console_script_reports_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss:\n  name: magic\n")
    r = subprocess.run([sys.executable, "-m", "errprop.cli", "train", "--config", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "loss.name must be one of" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "errprop.cli", "sample", str(tmp_path), "--sampler", "nope"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "invalid choice" in r.stderr


@pytest.mark.slow
def test_gmm_config_covers_all_eight_modes(tmp_path, capsys):
    """The shipped config, at its default steps, puts 1/8 ± 30 % of 50-step samples on each mode."""
    run = tmp_path / "gmm"
    argv = ["train", "--config", str(ROOT / "configs/gmm.yaml"), "--out", str(run), "--no-progress"]
    assert main(argv) == 0
    assert main(["sample", str(run), "--steps", "50", "--n", "4000", "--seed", "0"]) == 0
    x = np.load(capsys.readouterr().out.strip().splitlines()[-1])["x"]
    import torch

    counts, off = GaussianMixture.ring8().mode_counts(torch.from_numpy(x))
    share = counts.numpy() / len(x)
    assert np.all(np.abs(share - 1 / 8) <= 0.3 / 8), (share, off)


@pytest.mark.parametrize("cfg,component", [("gmm_sa2.yaml", "loss_sa"), ("gmm_ep.yaml", "loss_ep")])
def test_each_objective_trains_end_to_end(tmp_path, cfg, component, capsys):
    import json

    run = tmp_path / cfg
    assert main(["train", "--config", str(ROOT / "configs" / cfg), "--out", str(run), *SMALL,
                 "--set", "train.log_every=10"]) == 0
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows and all({"loss", "loss_simple", component} <= r.keys() for r in rows)
    assert main(["sample", str(run), "--steps", "5", "--n", "20"]) == 0


def test_python_dash_m_errprop_is_the_cli():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "errprop", "demo", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "--quick" in out.stdout


def test_resume_refuses_to_change_what_the_run_learns_unless_asked(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", str(ROOT / "configs/gmm.yaml"), "--out", str(run), *SMALL]) == 0
    assert main(["train", "--resume", str(run), "--set", "loss.name=sa", "--set", "train.steps=35",
                 "--no-progress"]) == 2
    assert "loss.name" in capsys.readouterr().err and "name: simple" in (run / "config.yaml").read_text()
    assert main(["train", "--resume", str(run), "--set", "loss.input_perturbation=0.1",
                 "--set", "train.steps=35", "--allow-change", "--no-progress"]) == 0
    change = json.loads((run / "changes.jsonl").read_text().splitlines()[-1])
    assert change["resumed_at_step"] == 30
    assert change["changed"]["loss.input_perturbation"] == [0.0, 0.1]
    # train.steps alone (training on) needs no permission
    assert main(["train", "--resume", str(run), "--set", "train.steps=40", "--no-progress"]) == 0


def test_resume_from_a_chosen_checkpoint_sets_later_ones_aside(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--config", str(ROOT / "configs/gmm.yaml"), "--out", str(run), *SMALL,
            "--set", "train.ckpt_every=10"]
    assert main(argv) == 0
    ref = tmp_path / "ref"
    assert main([*argv[:4], str(ref), *argv[5:]]) == 0
    (run / "checkpoints" / "step-00000030.safetensors").write_bytes(b"broken")
    assert main(["sample", str(run)]) == 2
    assert "--checkpoint STEP" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--checkpoint", "20", "--no-progress"]) == 0
    assert (run / "checkpoints" / "abandoned-00000020" / "step-00000030.json").is_file()
    a, b = checkpoint.load(run)[0], checkpoint.load(ref)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same run as one that never broke


def test_sample_has_out_and_device(small_run, tmp_path, capsys):
    assert main(["sample", str(small_run), "--steps", "3", "--n", "10", "--out", str(tmp_path / "s"),
                 "--device", "cpu"]) == 0
    assert Path(capsys.readouterr().out.strip().splitlines()[-1]).parent == tmp_path / "s"


def test_evaluate_without_metric_fits_a_mixture_and_diagnose_prints_numbers(small_run, capsys):
    assert main(["evaluate", str(small_run), "--steps", "5", "--n", "100", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "excess cross-entropy" in out and "mode share" in out
    assert main(["diagnose", str(small_run), "--what", "modular,gap", "--sampler", "ddpm", "--steps", "5",
                 "--n", "50", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"modular: model: summed modular KL \(nats\) \d", out)
    assert re.search(r"gap: model: gap at the last step -?\d", out)


def test_help_shows_defaults_and_every_option_says_what_it_does(capsys):
    parser = build_parser()
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"errprop {name} {action.option_strings or action.dest}: no help"
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "(default: 10000)" in capsys.readouterr().out


def test_quick_demo_is_described_the_same_in_readme_and_help(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    assert "30-second smoke run" in helptext
    assert "`errprop demo --quick` is a 30-second smoke run" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("cmd", ["sample", "diagnose", "evaluate"])
def test_more_steps_than_the_process_has_is_an_error_before_any_work(small_run, capsys, cmd):
    before = sorted(str(p) for p in small_run.rglob("*"))
    assert main([cmd, str(small_run), "--steps", "2000", "--device", "cpu"]) == 2
    assert "allows at most 1000" in capsys.readouterr().err
    assert sorted(str(p) for p in small_run.rglob("*")) == before


def test_diagnose_checks_every_measurement_before_writing_any(small_run, capsys):
    out = small_run / "diagnostics"
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    assert main(["diagnose", str(small_run), "--what", "gap,amplification", "--sampler", "ddim",
                 "--steps", "5", "--n", "20", "--device", "cpu"]) == 2
    assert "needs a Gaussian sampler step" in capsys.readouterr().err
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else []) == before


def test_training_on_a_flat_image_folder_warns_that_evaluate_needs_test(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    assert main(["train", "--set", "data.name=folder", "--set", f"data.root={folder}",
                 "--set", "model.net=unet", "--set", "model.channels=8", "--set", "model.channel_mult=[1]",
                 "--set", "train.steps=1", "--set", "train.batch_size=4", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 0
    assert "has no test/ sub-folder" in capsys.readouterr().err


def test_help_and_argument_errors_do_not_import_torch():
    # `errprop --help` answers in well under a second because the parser needs no torch (B10).
    code = ("import sys\nfrom errprop.cli import main\n"
            "for argv in (['--help'], ['train', '--no-such-option'], ['demo', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc_2",
                                     "unipc_3"])
def test_sample_with_each_new_sampler_and_help_lists_them(small_run, tmp_path, capsys, sampler):
    argv = ["sample", str(small_run), "--sampler", sampler, "--steps", "6", "--n", "30", "--out",
            str(tmp_path)]
    assert main(argv) == 0
    x = np.load(capsys.readouterr().out.strip().splitlines()[-1])["x"]
    assert x.shape == (30, 2) and np.isfinite(x).all()
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    assert sampler in capsys.readouterr().out


def test_diagnose_local_error_of_a_multistep_solver(small_run, capsys):
    argv = ["diagnose", str(small_run), "--what", "local", "--sampler", "dpmpp_2m", "--steps", "6",
            "--n", "20", "--oracle"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^local: model: summed local .*; oracle: summed local", out, re.M)
    res = json.loads((small_run / "diagnostics" / "local.json").read_text())
    assert len(res["model"]["learned"]) == 6 and max(res["oracle"]["learned"]) == 0
    assert main(["diagnose", str(small_run), "--what", "local", "--sampler", "dpmpp_2m_sde", "--steps", "4",
                 "--n", "10"]) == 2
    assert "stochastic" in capsys.readouterr().err
