"""diffusers models in errprop: small random UNet2DModels saved and loaded back (no download)."""

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    UNet2DModel,
    UniPCMultistepScheduler,
)
from safetensors.torch import load_file

import errprop
from errprop import checkpoint
from errprop.builders import grid_options, load_diffusers, load_run, sample_clip, sampler_settings
from errprop.cli import main
from errprop.errors import ErrpropError
from errprop.grids import make_grid
from errprop.samplers import sample, step_options

ROOT = Path(__file__).parents[1]
N = 10  # inference steps (divides T, as diffusers' step arithmetic assumes)


class FixedNoise:
    """Hands out given batch noise tensors in order (to share diffusers' injected noise)."""

    def __init__(self, draws):
        self.draws = list(draws)

    def randn(self, *shape, dtype=torch.float32):
        return self.draws.pop(0).to(dtype)


def _unet(seed=0, **extra) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4, **extra).eval()


def _save(folder: Path, scheduler, unet=None) -> Path:
    (unet or _unet()).save_pretrained(str(folder))
    scheduler.save_pretrained(str(folder))
    return folder


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _theirs(unet, sched, z, generator=None):
    x = z.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            out = unet(x, t).sample
            x = sched.step(out, t, x, generator=generator).prev_sample
    return x


def _ours(folder, z, sampler, draws=()):
    run = load_diffusers(f"diffusers:{folder}")
    sc = run.config.sample
    sigmas = make_grid("uniform", run.process, N, spacing=sc.spacing, steps_offset=sc.steps_offset)
    x = z / run.process.scale(sigmas[0]).float()
    with torch.no_grad():
        return sample(run.denoiser, x, sigmas, FixedNoise(draws), sampler, clip=sample_clip(run.config),
                      **({"variance": sc.variance, "process": run.process} if sampler == "ddpm" else {}))


SETTINGS = [  # prediction, clip_sample, spacing, steps_offset, thresholding, β schedule
    ("epsilon", False, "leading", 1, False, "linear"),
    ("epsilon", True, "trailing", 0, False, "scaled_linear"),
    ("v_prediction", False, "trailing", 0, False, "squaredcos_cap_v2"),
    ("v_prediction", True, "leading", 1, False, "linear"),
    ("epsilon", False, "leading", 0, True, "linear"),
]


@pytest.mark.parametrize("pred,clip,spacing,offset,thresh,betas", SETTINGS)
def test_ddim_of_a_loaded_model_equals_diffusers(tmp_path, pred, clip, spacing, offset, thresh, betas):
    sched = DDIMScheduler(prediction_type=pred, clip_sample=clip, timestep_spacing=spacing,
                          steps_offset=offset,
                          thresholding=thresh, sample_max_value=1.2, beta_schedule=betas)
    folder = _save(tmp_path / "m", sched)
    sched.set_timesteps(N)
    z = 2 * torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))  # far enough to clip
    theirs = _theirs(_unet(), sched, z)
    assert _rel(_ours(folder, z, "ddim"), theirs) < 1e-4


@pytest.mark.parametrize("pred,clip,spacing,offset,thresh,betas", SETTINGS)
def test_ddpm_of_a_loaded_model_equals_diffusers(tmp_path, pred, clip, spacing, offset, thresh, betas):
    sched = DDPMScheduler(prediction_type=pred, clip_sample=clip, timestep_spacing=spacing,
                          steps_offset=offset,
                          thresholding=thresh, sample_max_value=1.2, beta_schedule=betas)
    folder = _save(tmp_path / "m", sched)
    sched.set_timesteps(N)
    z = 2 * torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    theirs = _theirs(_unet(), sched, z, torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)  # diffusers draws one batch of noise per step with t > 0
    draws = [torch.randn(6, 1, 8, 8, generator=g) for _ in range(N - 1)]
    assert _rel(_ours(folder, z, "ddpm", draws), theirs) < 1e-4


def test_the_clip_and_threshold_settings_are_exercised(tmp_path):
    """The settings above would pass vacuously if nothing reached the clip: check that it does."""
    z = 2 * torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    on = _save(tmp_path / "on", DDIMScheduler(clip_sample=True))
    off = _save(tmp_path / "off", DDIMScheduler(clip_sample=False))
    thresh = _save(tmp_path / "th", DDIMScheduler(clip_sample=False, thresholding=True, sample_max_value=1.2))
    assert _rel(_ours(on, z, "ddim"), _ours(off, z, "ddim")) > 1e-3
    assert _rel(_ours(thresh, z, "ddim"), _ours(off, z, "ddim")) > 1e-3
    assert _rel(_ours(thresh, z, "ddim"), _ours(on, z, "ddim")) > 1e-3


def test_pipeline_folder_and_trained_betas_load(tmp_path):
    betas = torch.linspace(1e-4, 0.02, 1000) ** 1.1
    sched = DDPMScheduler(trained_betas=betas.tolist())
    DDPMPipeline(unet=_unet(), scheduler=sched).save_pretrained(str(tmp_path / "pipe"))
    run = errprop.load_diffusers(tmp_path / "pipe")  # the Python API; the prefix is optional
    assert run.config.process.schedule == "trained" and run.config.sample.sampler == "ddpm"
    torch.testing.assert_close(run.process.betas, betas.double(), rtol=1e-6, atol=0)
    assert run.shape == (1, 8, 8) and run.config.model.parameterization == "eps"


def test_class_conditional_needs_a_label(tmp_path):
    folder = _save(tmp_path / "c", DDIMScheduler(), _unet(num_class_embeds=3))
    with pytest.raises(ErrpropError, match="--class-label"):
        load_diffusers(f"diffusers:{folder}")
    run = load_diffusers(f"diffusers:{folder}", class_label=2)
    x = torch.randn(2, 1, 8, 8)
    assert run.denoiser(x, 1.0).shape == x.shape


def _fake(folder: Path, cls: str) -> None:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": cls}))
    DDIMScheduler().save_pretrained(str(folder))


@pytest.mark.parametrize("make,message", [
    (lambda d: d.mkdir(), "not a diffusers model folder"),
    (lambda d: _unet().save_pretrained(str(d)), "no scheduler config"),
    (lambda d: _fake(d, "UNet2DConditionModel"), "text-conditioned UNets"),
    (lambda d: _fake(d, "VQModel"), "unsupported model class 'VQModel'"),
    (lambda d: _save(d, DDPMScheduler(variance_type="learned_range")), "learned variance"),
    (lambda d: _save(d, DDIMScheduler(prediction_type="flow_prediction")),
     "prediction_type 'flow_prediction'"),
])
def test_clear_one_line_errors(tmp_path, capsys, make, message):
    folder = tmp_path / "m"
    make(folder)
    assert main(["sample", f"diffusers:{folder}", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["sample", f"diffusers:{tmp_path / 'missing'}", "--out", str(tmp_path / "s")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_cli_samples_diagnoses_and_evaluates_a_loaded_model(tmp_path, capsys):
    folder = _save(tmp_path / "m", DDIMScheduler())
    model = f"diffusers:{folder}"
    assert main(["sample", model, "--steps", "5", "--n", "8", "--out", str(tmp_path / "s"),
                 "--device", "cpu"]) == 0
    assert main(["diagnose", model, "--data", "digits", "--what", "modular,cumulative,gap", "--steps", "5",
                 "--n", "20", "--out", str(tmp_path / "d"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for what in ("modular", "cumulative", "gap"):
        assert re.search(rf"^{what}: model: ", out, re.M)
        assert (tmp_path / "d" / "diagnostics" / f"{what}.json").is_file()
    assert main(["evaluate", model, "--data", "digits", "--metric", "mmd,swd", "--steps", "5", "--n", "50",
                 "--out", str(tmp_path / "e"), "--device", "cpu"]) == 0
    assert len(list((tmp_path / "e" / "eval").glob("*.json"))) == 2
    assert main(["evaluate", model, "--metric", "mmd", "--steps", "5", "--out", str(tmp_path / "e")]) == 2
    assert "names no data set" in capsys.readouterr().err
    # their folder is left untouched
    assert not any(p.name.startswith("eval") or p.name == "samples" for p in folder.iterdir())


def test_diagnose_oracle_on_a_loaded_model_uses_the_ideal_denoiser_of_its_data(tmp_path, capsys):
    model = f"diffusers:{_save(tmp_path / 'm', DDIMScheduler())}"
    assert main(["diagnose", model, "--data", "digits", "--oracle", "--what", "learned,budget",
                 "--steps", "4", "--n", "16", "--out", str(tmp_path / "d"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^learned: model: learned error per step .* discretization share", out, re.M)
    d = tmp_path / "d" / "diagnostics"
    learned = json.loads((d / "learned.json").read_text())
    assert learned["reference"] == "ideal denoiser of the training set"
    assert learned["model"]["memorisation"]["sigma"]  # digits' test split is the held-out set
    assert (d / "report.html").is_file() and (d / "budget.json").is_file()


def test_fine_tune_with_sa2_then_export_round_trips_bitwise(tmp_path, capsys):
    folder = _save(tmp_path / "m", DDPMScheduler(prediction_type="v_prediction", clip_sample=False))
    run = tmp_path / "run"
    assert main(["train", "--init", f"diffusers:{folder}", "--config", str(ROOT / "configs/digits.yaml"),
                 "--set", "loss.name=sa", "--set", "train.steps=3", "--set", "train.batch_size=8",
                 "--set", "train.precision=fp32", "--out", str(run), "--no-progress"]) == 0
    cfg = load_run(run).config
    assert cfg.model.net == "diffusers" and cfg.model.parameterization == "v" and cfg.loss.name == "sa"
    out = tmp_path / "export"
    assert main(["export", str(run), "--to", "diffusers", str(out)]) == 0
    back = UNet2DModel.from_pretrained(str(out / "unet"))
    ema = {k[len("ema.unet."):]: v for k, v in checkpoint.load(run)[0].items() if k.startswith("ema.unet.")}
    theirs = back.state_dict()
    assert ema.keys() == theirs.keys() and all(torch.equal(ema[k], theirs[k]) for k in ema)
    assert ema.keys() == load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors")).keys()
    sched = DDPMScheduler.from_pretrained(str(out / "scheduler"))
    assert sched.config.prediction_type == "v_prediction" and not sched.config.clip_sample
    pipe = DDPMPipeline.from_pretrained(str(out))  # the folder is a pipeline diffusers loads unchanged
    assert isinstance(pipe.unet, UNet2DModel)
    # the fine-tuned weights moved away from the init (the training did something)
    init = _unet().state_dict()
    assert any(not torch.equal(init[k], theirs[k]) for k in init)
    # the run keeps the architecture in its checkpoint: it loads without the init folder
    import shutil

    shutil.rmtree(folder)
    again = load_run(run).denoiser.net.unet.state_dict()
    assert all(torch.equal(again[k], theirs[k]) for k in theirs)


def test_export_refuses_an_errprop_network(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", str(ROOT / "configs/gmm.yaml"), "--set", "train.steps=2",
                 "--set", "model.width=16", "--set", "model.depth=1", "--out", str(run),
                 "--no-progress"]) == 0
    assert main(["export", str(run), "--to", "diffusers", str(tmp_path / "x")]) == 2
    assert "only runs started from a diffusers model" in capsys.readouterr().err


def _image_folder(root: Path, labelled: bool) -> Path:
    """16×16 RGB images with train/ and test/ (one sub-folder per class when ``labelled``)."""
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for c in ("red", "blue") if labelled else ("",):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(24):
                arr = torch.randint(0, 255, (16, 16, 3), generator=rng, dtype=torch.uint8)
                if c:
                    arr[..., 0 if c == "red" else 2] = 255
                Image.fromarray(arr.numpy()).save(d / f"{i}.png")
    return root


def test_fd_on_the_users_own_rgb_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ERRPROP_CACHE", str(tmp_path / "cache"))
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    model = f"diffusers:{_save(tmp_path / 'm', DDIMScheduler(), unet)}"
    for kind in ("labelled", "flat"):
        data = _image_folder(tmp_path / kind, kind == "labelled")
        code = main(["evaluate", model, "--data", "folder", "--data-root", str(data), "--metric", "fd",
                     "--steps", "3", "--n", "40", "--out", str(tmp_path / f"e-{kind}"), "--device", "cpu"])
        if kind == "labelled":
            assert code == 0 and "FD (classifier features)" in capsys.readouterr().out
        else:
            assert code == 2 and "needs class labels" in capsys.readouterr().err


def test_grid_optimize_on_a_loaded_model(tmp_path, capsys):
    model = f"diffusers:{_save(tmp_path / 'm', DDIMScheduler())}"
    out = tmp_path / "grid.json"
    assert main(["grid", "optimize", model, "--data", "digits", "--objective", "klub", "--steps", "4",
                 "--n", "40", "--candidates", "12", "--out", str(out), "--device", "cpu"]) == 0
    sigmas = json.loads(out.read_text())["sigmas"]
    assert len(sigmas) == 4 and sigmas == sorted(sigmas, reverse=True)
    # the path KL given x0 needs no density either (DDIM η = 0: DDPM's step, transferred)
    assert main(["grid", "optimize", model, "--data", "digits", "--objective", "path_kl", "--steps", "4",
                 "--n", "40", "--candidates", "12", "--out", str(out), "--device", "cpu"]) == 0
    res = json.loads(out.read_text())
    assert res["form"].startswith("given x0") and res["step"].startswith("ddpm (transferred")
    assert len(res["sigmas"]) == 4 and res["start"] == "σ_max" and math.isfinite(res["value"])
    assert main(["grid", "optimize", model, "--data", "digits", "--objective", "local", "--steps", "4",
                 "--n", "40", "--candidates", "12", "--out", str(out), "--device", "cpu"]) == 0
    res = json.loads(out.read_text())
    assert res["step"] == "ddim" and res["start"].startswith("free") and len(res["sigmas"]) == 4
    assert math.isfinite(res["value"])
    assert main(["grid", "optimize", model, "--data", "digits", "--objective", "modular", "--steps", "4",
                 "--out", str(out)]) == 2
    assert "needs a Gaussian-mixture run" in capsys.readouterr().err


def _ours_as_configured(folder, x, draws=()):
    """Sample a loaded folder from x̂ = ``x(process, σ_0)`` with the sampler, grid and options its
    scheduler config maps to."""
    run = load_diffusers(f"diffusers:{folder}")
    sc = run.config.sample
    sigmas = make_grid(sc.grid, run.process, N, **grid_options(run.config))
    opts = step_options(sc.sampler, N, run.process, **sampler_settings(run.config))
    with torch.no_grad():
        return sample(run.denoiser, x(run.process, sigmas[0]), sigmas, FixedNoise(draws), sc.sampler, **opts)


MULTISTEP = [  # scheduler, whether it draws noise at every step
    (DPMSolverMultistepScheduler(use_karras_sigmas=True), False),
    (DPMSolverMultistepScheduler(solver_order=3, prediction_type="v_prediction", timestep_spacing="leading",
                                 steps_offset=1, thresholding=True, sample_max_value=1.2), False),
    (DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", timestep_spacing="linspace"), True),
    (UniPCMultistepScheduler(solver_order=3, use_karras_sigmas=True, prediction_type="v_prediction"), False),
    (UniPCMultistepScheduler(timestep_spacing="trailing", disable_corrector=[2]), False),
    (EulerAncestralDiscreteScheduler(timestep_spacing="trailing"), True),
    (EulerDiscreteScheduler(timestep_spacing="leading", steps_offset=1), False),
]


@pytest.mark.parametrize("sched,noisy", MULTISTEP, ids=lambda v: type(v).__name__ if not isinstance(v, bool)
                         else str(v))
def test_solvers_of_a_loaded_model_equal_diffusers(tmp_path, sched, noisy):
    """The folder's scheduler config alone picks errprop's sampler, grid and options (including
    the rounded timesteps diffusers' multistep schedulers evaluate on Karras grids)."""
    folder = _save(tmp_path / "m", sched)
    sched.set_timesteps(N)
    z = 2 * torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    x = z * sched.init_noise_sigma
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for t in sched.timesteps:
            out = _unet()(sched.scale_model_input(x, t), t).sample
            x = sched.step(out, t, x, **({"generator": g} if noisy else {})).prev_sample
    g2 = torch.Generator().manual_seed(2)
    draws = [torch.randn(6, 1, 8, 8, generator=g2) for _ in range(N)] if noisy else []
    # diffusers' DPM/UniPC start from x_t (init_noise_sigma 1), the Euler family from x̂ already
    start = z * sched.init_noise_sigma
    scaled = isinstance(sched, DPMSolverMultistepScheduler | UniPCMultistepScheduler)
    ours = _ours_as_configured(folder, lambda p, s0: start / p.scale(s0).float() if scaled else start, draws)
    assert _rel(ours, x) < 1e-4


@pytest.mark.parametrize("sched,expected", [
    (DDPMScheduler(variance_type="fixed_large"),
     {"sampler": "ddpm", "variance": "large", "clip_sample": True}),
    (DDIMScheduler(clip_sample=False), {"sampler": "ddim", "clip_sample": False, "spacing": "leading"}),
    (DPMSolverMultistepScheduler(), {"sampler": "dpmpp_2m", "grid": "uniform", "clip_sample": False,
                                     "spacing": "linspace_multistep", "lower_order_final": True}),
    (DPMSolverMultistepScheduler(solver_order=3, use_karras_sigmas=True, lower_order_final=False),
     {"sampler": "dpmpp_3m", "grid": "edm", "rho": 7.0, "lower_order_final": False}),
    (DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++"), {"sampler": "dpmpp_2m_sde"}),
    (DPMSolverMultistepScheduler(solver_order=1), {"sampler": "ddim"}),
    (UniPCMultistepScheduler(disable_corrector=[0, 3]), {"sampler": "unipc_2", "disable_corrector": [0, 3]}),
    (UniPCMultistepScheduler(solver_order=3, use_exponential_sigmas=True),
     {"sampler": "unipc_3", "grid": "exponential"}),
    (EulerDiscreteScheduler(), {"sampler": "euler", "spacing": "linspace", "clip_sample": False}),
    (EulerAncestralDiscreteScheduler(timestep_spacing="trailing"),
     {"sampler": "euler_ancestral", "spacing": "trailing"}),
    (HeunDiscreteScheduler(use_karras_sigmas=True), {"sampler": "heun", "grid": "edm"}),
], ids=lambda v: type(v).__name__ if not isinstance(v, dict) else v["sampler"])
def test_every_scheduler_class_maps_to_its_sampler(tmp_path, sched, expected):
    run = load_diffusers(f"diffusers:{_save(tmp_path / 'm', sched)}")
    got = dataclasses.asdict(run.config.sample)
    assert {k: got[k] for k in expected} == expected
    karras_multistep = getattr(sched.config, "use_karras_sigmas", False) and type(sched).__name__ in (
        "DPMSolverMultistepScheduler", "UniPCMultistepScheduler")
    assert run.config.model.round_timesteps == karras_multistep


@pytest.mark.parametrize("sched,message", [
    (DPMSolverSinglestepScheduler(), "scheduler class 'DPMSolverSinglestepScheduler' is not supported"),
    (LMSDiscreteScheduler(), "scheduler class 'LMSDiscreteScheduler' is not supported"),
    (DPMSolverMultistepScheduler(algorithm_type="dpmsolver", final_sigmas_type="sigma_min"),
     "algorithm_type 'dpmsolver' (noise"),
    (DPMSolverMultistepScheduler(solver_type="heun"), "solver_type='heun' is not supported"),
    (DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", solver_order=3), "solver_order 3"),
    (UniPCMultistepScheduler(solver_type="bh1"), "solver_type='bh1'"),
    (DPMSolverMultistepScheduler(use_lu_lambdas=True), "use_lu_lambdas=True"),
], ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_unsupported_schedulers_are_one_line_errors(tmp_path, capsys, sched, message):
    folder = _save(tmp_path / "m", sched)
    assert main(["sample", f"diffusers:{folder}", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("sched", [
    DDPMScheduler(variance_type="fixed_large", prediction_type="v_prediction"),
    DDIMScheduler(clip_sample=False, timestep_spacing="trailing"),
    DPMSolverMultistepScheduler(),
    DPMSolverMultistepScheduler(solver_order=3, use_karras_sigmas=True, lower_order_final=False),
    DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", timestep_spacing="leading", steps_offset=1),
    UniPCMultistepScheduler(disable_corrector=[0, 3]),
    UniPCMultistepScheduler(solver_order=3, use_exponential_sigmas=True, thresholding=True),
    EulerDiscreteScheduler(), EulerAncestralDiscreteScheduler(timestep_spacing="trailing"),
    HeunDiscreteScheduler(use_karras_sigmas=True),
], ids=lambda v: type(v).__name__)
def test_export_writes_the_scheduler_of_the_runs_sampler(tmp_path, sched):
    """Load → export → load gives the same sampler settings and process: export writes the scheduler
    a diffusers user gets the same sampling from, not DDIM/DDPM only."""
    from errprop.diffusers_io import write_pipeline

    run = load_diffusers(f"diffusers:{_save(tmp_path / 'm', sched)}")
    out = write_pipeline(run, tmp_path / "export")
    again = load_diffusers(f"diffusers:{out}")
    assert dataclasses.asdict(again.config.sample) == dataclasses.asdict(run.config.sample)
    assert dataclasses.asdict(again.config.process) == dataclasses.asdict(run.config.process)
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == \
        type(sched).__name__


def test_export_names_a_sampler_without_a_diffusers_scheduler(tmp_path):
    from errprop.diffusers_io import scheduler_config

    run = load_diffusers(f"diffusers:{_save(tmp_path / 'm', DDIMScheduler())}")
    for field, value, message in [("sampler", "analytic", "sampler 'analytic' has no diffusers scheduler"),
                                  ("grid", "quadratic", "sample.grid 'quadratic' has no diffusers")]:
        cfg = dataclasses.replace(run.config, sample=dataclasses.replace(
            run.config.sample, sampler="dpmpp_2m" if field == "grid" else value,
            **({"grid": value} if field == "grid" else {})))
        with pytest.raises(ErrpropError, match=message):
            scheduler_config(cfg)


def test_unet_and_scheduler_saved_separately_load_as_one_model(tmp_path, capsys):
    """``unet.save_pretrained(ROOT/unet)`` and ``scheduler.save_pretrained(ROOT/scheduler)`` without a
    ``model_index.json``: ROOT is the model; a folder holding a model elsewhere names that folder."""
    root = tmp_path / "parts"
    _unet().save_pretrained(str(root / "unet"))
    DDIMScheduler(clip_sample=False).save_pretrained(str(root / "scheduler"))
    run = load_diffusers(f"diffusers:{root}")
    assert run.shape == (1, 8, 8) and run.config.sample.sampler == "ddim"
    assert Path(run.config.model.diffusers_path) == (root / "unet").resolve()
    z = 2 * torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_ours(root, z, "ddim"), _ours(root / "unet", z, "ddim"))
    assert main(["sample", f"diffusers:{root}", "--steps", "3", "--n", "4", "--out",
                 str(tmp_path / "s")]) == 0
    capsys.readouterr()
    other = tmp_path / "other"
    _unet().save_pretrained(str(other / "my_unet"))
    assert main(["sample", f"diffusers:{other}", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "not a diffusers model folder" in err and f"diffusers:{other / 'my_unet'}" in err
    assert len(err.strip().splitlines()) == 1


def test_diffusers_advice_is_not_errprops_output_but_its_errors_are(tmp_path, capsys, caplog):
    """diffusers' own warnings (here: config keys this diffusers does not know, as a model saved by
    a newer diffusers has) are silenced around errprop's loads; errprop's messages and errors are not."""
    import subprocess
    import sys

    from diffusers.utils import logging as diffusers_logging

    folder = _save(tmp_path / "m", DDIMScheduler())
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "a_key_from_the_future": 1}))
    sched = json.loads((folder / "scheduler_config.json").read_text())
    (folder / "scheduler_config.json").write_text(json.dumps({**sched, "another_new_key": 2}))
    r = subprocess.run([sys.executable, "-m", "errprop", "sample", f"diffusers:{folder}", "--steps", "2",
                        "--n", "2", "--out", str(tmp_path / "s")], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().endswith(".npz")
    assert "a_key_from_the_future" not in r.stderr and "another_new_key" not in r.stderr
    assert "accelerate" not in r.stderr and "diffusers" not in r.stderr
    before = diffusers_logging.get_verbosity()
    load_diffusers(f"diffusers:{folder}")
    assert not [rec for rec in caplog.records if rec.name.startswith("diffusers")]
    assert diffusers_logging.get_verbosity() == before  # the user's setting is left as it was
    # the same load outside errprop's guard does log it (the test would pass vacuously otherwise)
    UNet2DModel.from_pretrained(str(folder), low_cpu_mem_usage=False)
    assert any("a_key_from_the_future" in rec.getMessage() for rec in caplog.records)
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"broken")
    assert main(["sample", f"diffusers:{folder}", "--out", str(tmp_path / "s")]) == 2
    assert "errprop: error: diffusers: cannot load the UNet" in capsys.readouterr().err


def test_init_on_data_of_another_shape_names_both_shapes(tmp_path, capsys):
    """train --init: a 1-channel 8×8 UNet on a folder of RGB images is a one-line error naming both
    shapes (not a RuntimeError from inside the network); a folder takes the model's image size."""
    model = f"diffusers:{_save(tmp_path / 'm', DDIMScheduler())}"
    data = _image_folder(tmp_path / "rgb", labelled=False)
    argv = ["train", "--init", model, "--set", "data.name=folder", "--set", f"data.root={data}",
            "--set", "train.steps=1", "--set", "train.batch_size=4", "--no-progress"]
    assert main([*argv, "--dry-run"]) == 0
    assert "image_size: 8" in capsys.readouterr().out  # the model's sample_size
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "takes samples of shape 1×8×8" in err and "shape 3×8×8" in err and "data.image_size=8" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r" / "checkpoints").exists()
    # digits are 1×8×8 but the ring of 8 is 2-D: named too
    assert main(["train", "--init", model, "--set", "data.name=ring8", "--out", str(tmp_path / "r2"),
                 "--no-progress"]) == 2
    assert "data 'ring8' has samples of shape 2" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", [["sample"], ["evaluate", "--data", "digits"],
                                 ["diagnose", "--data", "digits"]])
def test_results_of_a_diffusers_model_need_out(tmp_path, capsys, cmd):
    folder = _save(tmp_path / "m", DDIMScheduler())
    assert main([cmd[0], f"diffusers:{folder}", *cmd[1:], "--steps", "2"]) == 2
    assert f"{cmd[0]}: pass --out for a diffusers model" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors",
                                                         "scheduler_config.json"]
