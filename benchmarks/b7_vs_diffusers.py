"""B7 — errprop's baseline vs a matched plain diffusers DDPM (docs/benchmarks.md#b7-baseline-vs-diffusers).

Both sides train on the same Fashion-MNIST training images (in [−1, 1]) for the same steps × batch
128, with AdamW lr 2e-4 (errprop's 500-step linear warm-up on both: diffusers'
``get_constant_schedule_with_warmup``), EMA 0.999 with diffusers' warm-up, ε-prediction on a
linear-β DDPM with T = 1000, and bf16 autocast where ``errprop.train.use_bf16("auto", "unet", …)``
says so. Gradient clipping is off on both sides by default (errprop sums its loss over the 784
pixels, diffusers averages: a clip of c on the mean loss is c·784 on errprop's side).

- errprop: ``configs/fashion_mnist.yaml`` (channels, steps, seed, grad_clip overridden), sampled
  and scored by ``errprop.evaluate.evaluate`` (EMA weights, DDIM/DDPM, x̂0 clipped to ±1).
- diffusers: ``UNet2DModel`` (block_out_channels (c, 2c, 2c), one res layer per block, attention
  only in the default mid-block, as in B1), ``DDPMScheduler.add_noise``, ``F.mse_loss``,
  ``EMAModel``; sampled with diffusers' own ``DDIMScheduler`` / ``DDPMScheduler`` loops
  (clip_sample=True) at the same step counts and timestep spacing as errprop's sampler.

Both are scored by the same ``errprop.evaluate.Scorer`` (Fréchet distance on errprop's
Fashion-MNIST classifier features, n samples vs the test set, floor = n train images vs test),
for several seeds, with paired differences (errprop − diffusers) and t-based 95 % intervals
(``errprop.stats.paired``). Writes ``b7_vs_diffusers.{json,md}`` with ``errprop.results.write_result``.

    python benchmarks/b7_vs_diffusers.py --steps 8000 --n 10000 --seeds 0,1,2 --device cuda
    python benchmarks/b7_vs_diffusers.py --quick     # smoke run (< 2 min, numbers meaningless)

Run folders (``--runs``) are resumable: a side whose final weights exist is not retrained, a
partly trained one continues; a folder made with different settings is refused, never reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from errprop import checkpoint, config
from errprop.builders import load_run
from errprop.config_diff import BOOKKEEPING as _NOT_LEARNED
from errprop.evaluate import Scorer, evaluate
from errprop.files import atomic_write, write_json
from errprop.results import write_result
from errprop.stats import holm, paired, summary
from errprop.train import pick_device, train_to_end, use_bf16

ROOT = Path(__file__).resolve().parents[1]
SAMPLERS = ("ddim", "ddpm")
BATCH = 128
# errprop config keys that do not change what a run learns: not compared when resuming. The seed
# does change it (and names the folder), so it is compared here.
BOOKKEEPING = {f"train.{k}" for k in _NOT_LEARNED - {"seed"}}


class Refused(SystemExit):
    """A run folder holds a different run than the one asked for."""


def say(*parts) -> None:
    print(*parts, flush=True)


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out |= flat(v, key + ".") if isinstance(v, dict) else {key: v}
    return out


def check_same(folder: Path, have: dict, want: dict, ignore: set[str] = frozenset()) -> None:
    """Refuse (exit with a message) if the settings ``have`` of ``folder`` differ from ``want``."""
    a, b = flat(have), flat(want)
    diff = sorted(k for k in (a.keys() | b.keys()) - ignore if a.get(k, "<absent>") != b.get(k, "<absent>"))
    if diff:
        lines = [f"  {k}: folder has {a.get(k, '<absent>')!r}, this run asks for {b.get(k, '<absent>')!r}"
                 for k in diff]
        raise Refused(f"refusing to reuse {folder}: it was made with other settings:\n" + "\n".join(lines)
                      + "\nUse another --runs folder, or delete that one to retrain.")


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


# ----------------------------------------------------------------------------------------- errprop
def errprop_config(a, seed: int, device: str):
    over = [f"train.steps={a.steps}", f"train.seed={seed}", f"train.device={device}",
            f"train.ckpt_every={min(a.steps, a.ckpt_every)}", f"model.channels={a.channels}",
            f"train.grad_clip={a.grad_clip * 784}", f"train.log_every={a.log_every}"]
    if a.data_root:
        over.append(f"data.root={a.data_root}")
    return config.load(ROOT / "configs" / "fashion_mnist.yaml", over)


def check_errprop_folder(a, seed: int, device: str):
    """The config of seed's errprop run and its folder; refuses a folder made with another config."""
    cfg = errprop_config(a, seed, device)
    run = Path(a.runs) / f"errprop-s{seed}"
    if (run / "config.yaml").is_file():
        check_same(run, config.load(run / "config.yaml").to_dict(), cfg.to_dict(), BOOKKEEPING)
    return cfg, run


def train_errprop(a, seed: int, device: str) -> dict:
    """Train (or resume, or skip) errprop's baseline of ``seed``; returns its record."""
    cfg, run = check_errprop_folder(a, seed, device)
    record = read_json(run / "b7_side.json")
    if checkpoint.checkpoint_path(run, a.steps).is_file() and record:
        say(f"[errprop s{seed}] trained already ({run}); skipping training")
        return record
    resume = bool(checkpoint.list_checkpoints(run))
    say(f"[errprop s{seed}] {'resuming' if resume else 'training'} {run}: {a.steps} steps, "
        f"bf16 {use_bf16(cfg.train.precision, cfg.model.net, torch.device(device))}")
    t0 = time.time()
    train_to_end(cfg, run, progress=False)  # raises if interrupted: never score a half-trained model
    record = {"train_seconds": round(time.time() - t0, 1), "resumed": resume,
              "bf16": use_bf16(cfg.train.precision, cfg.model.net, torch.device(device)),
              "device": device}
    write_json(run / "b7_side.json", record)
    say(f"[errprop s{seed}] done in {record['train_seconds']} s")
    return record


# --------------------------------------------------------------------------------------- diffusers
def diffusers_unet(channels: int, dropout: float = 0.0):
    """``UNet2DModel`` at widths (c, 2c, 2c), one res layer per block, no attention in the
    down/up blocks (the default mid-block attention stays, as errprop's U-Net has one)."""
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1,
                       block_out_channels=(channels, 2 * channels, 2 * channels), layers_per_block=1,
                       down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
                       dropout=dropout)


def diffusers_spec(a, seed: int, cfg) -> dict:
    """What defines the diffusers side's training (compared when a folder is reused)."""
    tc = cfg.train
    return {"steps": a.steps, "seed": seed, "batch_size": BATCH, "lr": tc.lr, "warmup": tc.warmup,
            "weight_decay": tc.weight_decay, "ema_decay": tc.ema_decay, "channels": a.channels,
            "dropout": a.diffusers_dropout, "grad_clip": a.grad_clip,
            "scheduler": {"num_train_timesteps": 1000, "beta_schedule": "linear"},
            "data": {"name": "fashion-mnist", "split": "train", "root": a.data_root}}


def _gen(*key: int) -> torch.Generator:
    h = 0
    for k in key:
        h = (h * 1_000_003 + k) % (2**61 - 1)
    return torch.Generator().manual_seed(h)


def _batch_rows(seed: int, step: int, n_data: int) -> torch.Tensor:
    """Rows of step ``step``: global samples step·B … step·B + B − 1 of per-epoch permutations
    (a shuffled epoch loop, rebuilt exactly at any step so a resumed run continues the same)."""
    idx = torch.arange(step * BATCH, (step + 1) * BATCH)
    epochs, pos = idx // n_data, idx % n_data
    rows = torch.empty_like(idx)
    for e in epochs.unique().tolist():
        m = epochs == e
        rows[m] = torch.randperm(n_data, generator=_gen(seed, 1, e))[pos[m]]
    return rows


def check_diffusers_folder(a, seed: int, cfg) -> tuple[Path, dict]:
    """Seed's diffusers run folder and settings; refuses a folder made with other settings."""
    run = Path(a.runs) / f"diffusers-s{seed}"
    spec = diffusers_spec(a, seed, cfg)
    old = read_json(run / "spec.json")
    if old is not None:
        check_same(run, old, spec)
    return run, spec


def train_diffusers(a, seed: int, device: str, cfg) -> dict:
    """Train (or resume, or skip) the plain diffusers DDPM of ``seed``; returns its record."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_constant_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    from errprop.data.images import load_images

    run, spec = check_diffusers_folder(a, seed, cfg)
    record = read_json(run / "b7_side.json")
    if (run / "unet_ema" / "config.json").is_file() and record:
        say(f"[diffusers s{seed}] trained already ({run}); skipping training")
        return record
    run.mkdir(parents=True, exist_ok=True)
    write_json(run / "spec.json", spec)

    dev = torch.device(device)
    bf16 = use_bf16("auto", "unet", dev)  # the same rule as errprop's precision: auto
    x_data = load_images("fashion-mnist", split="train", root=a.data_root).x
    torch.manual_seed(seed)
    unet = diffusers_unet(a.channels, a.diffusers_dropout).to(dev)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    opt = torch.optim.AdamW(unet.parameters(), lr=spec["lr"], weight_decay=spec["weight_decay"])
    lr_sched = get_constant_schedule_with_warmup(opt, num_warmup_steps=spec["warmup"])
    ema = EMAModel(unet.parameters(), decay=spec["ema_decay"])  # default warm-up (1+k)/(10+k)
    start, state_path = 0, run / "state.pt"
    if state_path.is_file():
        st = torch.load(state_path, map_location=dev, weights_only=False)
        unet.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        lr_sched.load_state_dict(st["lr_sched"])
        ema.load_state_dict(st["ema"])
        ema.to(dev)
        start = st["step"]
    else:
        ema.to(dev)

    def save(step: int) -> None:
        state = {"model": unet.state_dict(), "opt": opt.state_dict(),
                 "lr_sched": lr_sched.state_dict(), "ema": ema.state_dict(), "step": step}
        atomic_write(state_path, lambda p: torch.save(state, p))

    say(f"[diffusers s{seed}] {'resuming at ' + str(start) if start else 'training'} {run}: "
        f"{a.steps} steps, bf16 {bf16}")
    t0, t_log = time.time(), time.time()
    for step in range(start, a.steps):
        g = _gen(seed, 2, step)
        torch.manual_seed(_gen(seed, 3, step).initial_seed())  # dropout: a function of (seed, step)
        clean = x_data[_batch_rows(seed, step, len(x_data))].to(dev)
        noise = torch.randn(clean.shape, generator=g).to(dev)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (BATCH,), generator=g).to(dev)
        noisy = noise_scheduler.add_noise(clean, noise, t)
        unet.train()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            pred = unet(noisy, t, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.grad_clip:
            torch.nn.utils.clip_grad_norm_(unet.parameters(), a.grad_clip)
        opt.step()
        lr_sched.step()
        ema.step(unet.parameters())
        if (step + 1) % a.log_every == 0 or step + 1 == a.steps:
            say(f"[diffusers s{seed}] step {step + 1}/{a.steps} loss {loss.item():.4f} "
                f"({(time.time() - t_log):.1f} s)")
            t_log = time.time()
        if (step + 1) % a.ckpt_every == 0 and step + 1 < a.steps:
            save(step + 1)
    save(a.steps)
    ema.copy_to(unet.parameters())
    unet.save_pretrained(run / "unet_ema")  # the EMA weights, in diffusers' own format
    record = {"train_seconds": round(time.time() - t0, 1), "resumed": start > 0, "bf16": bf16,
              "device": device}
    write_json(run / "b7_side.json", record)
    say(f"[diffusers s{seed}] done in {record['train_seconds']} s")
    return record


@torch.no_grad()
def sample_diffusers(a, unet, seed: int, device: str, sampler: str, k: int, spacing: str) -> torch.Tensor:
    """``a.n`` samples of ``unet`` with diffusers' own scheduler loop (fp32), on the CPU."""
    from diffusers import DDIMScheduler, DDPMScheduler

    train_sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    cls = DDIMScheduler if sampler == "ddim" else DDPMScheduler
    kw = {} if spacing == "default" else {"timestep_spacing": spacing}
    sched = cls.from_config(train_sched.config, **kw)
    sched.set_timesteps(k)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for b in range(0, a.n, a.batch):
        m = min(a.batch, a.n - b)
        x = torch.randn((m, 1, 28, 28), generator=gen).to(device)
        for t in sched.timesteps:
            eps = unet(x, t, return_dict=False)[0]
            x = sched.step(eps, t, x, generator=gen, return_dict=False)[0]
        out.append(x.float().cpu())
    return torch.cat(out)


# ------------------------------------------------------------------------------------------ stats
def score_key(a, seed: int, ks: list[int], spacing: str, device: str) -> dict:
    """Everything a seed's scores depend on beyond its trained folders (which are checked apart)."""
    return {"seed": seed, "steps": a.steps, "channels": a.channels, "grad_clip": a.grad_clip,
            "diffusers_dropout": a.diffusers_dropout, "n": a.n, "sampling_steps": ks,
            "samplers": list(SAMPLERS), "spacing": spacing, "batch": a.batch, "device": device}


def verdict_sentence(pairs: dict, n_seeds: int) -> str:
    """Which side gives the lower FD, setting by setting, by the 95 % paired interval and by Holm's
    correction over the settings (computed, never typed)."""
    def side(r: dict) -> str:
        lo, hi = r["diff_ci95"]
        return "errprop" if hi < 0 else "diffusers" if lo > 0 else "neither"

    groups: dict[str, list[str]] = {}
    for key, r in pairs.items():
        groups.setdefault(side(r), []).append(key)
    holm_sig = [k for k, r in pairs.items() if r.get("diff_p_holm", 1.0) < 0.05]
    words = {"errprop": "errprop's FD is lower (interval below 0)",
             "diffusers": "diffusers' FD is lower (interval above 0)",
             "neither": "no difference is resolved (the interval holds 0)"}
    found = [f"{words[s]} at {', '.join(groups[s])}" for s in words if s in groups]
    return (f"Over {n_seeds} paired seeds: " + "; ".join(found)
            + f". Surviving Holm's correction (p_Holm < 0.05): {', '.join(holm_sig) or 'none'}.")


def paired_stats(e: list[float], d: list[float]) -> dict:
    """Mean ± sd of both sides and the paired difference e − d with a t-based 95 % interval
    (:func:`errprop.stats.paired`); sds are NaN and the interval None for a single seed."""
    diff = paired(e, d, confidence=0.95)
    n = diff["n"]
    se, sd_ = summary(e), summary(d)
    nan = float("nan")
    return {"errprop_mean": se["mean"], "errprop_sd": se["std"] if n > 1 else nan,
            "diffusers_mean": sd_["mean"], "diffusers_sd": sd_["std"] if n > 1 else nan,
            "diff_mean": diff["mean"], "diff_sd": diff["std"] if n > 1 else nan, "n_seeds": n,
            "diffs": [float(x) - float(y) for x, y in zip(e, d)],
            "diff_ci95": [diff["lo"], diff["hi"]] if n > 1 else None, "diff_p": diff["p"]}


# ------------------------------------------------------------------------------------------- main
def quick_classifier(cache: Path) -> None:
    """--quick only: a throwaway classifier trained on 1,024 images, in a private cache folder, so
    a smoke run never trains (minutes) or pollutes the real cached classifier."""
    import errprop.metrics.features as feats

    os.environ["ERRPROP_CACHE"] = str(cache)
    full = feats.load_images

    def small(name, split="train", root=None, **kw):
        d = full(name, split, root, **kw)
        return dataclasses.replace(d, x=d.x[:1024], y=None if d.y is None else d.y[:1024])

    feats.load_images = small


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8000, help="training steps of each side (batch 128)")
    p.add_argument("--n", type=int, default=10_000, help="samples per (sampler, steps) and floor size")
    p.add_argument("--sampling-steps", default="10,20,50,100")
    p.add_argument("--seeds", default="0,1,2", help="training + sampling seeds (paired across sides)")
    p.add_argument("--channels", type=int, default=32, help="base width c: widths (c, 2c, 2c)")
    p.add_argument("--grad-clip", type=float, default=0.0,
                   help="clip on the mean-loss scale (diffusers); errprop gets 784× it; 0 = off")
    p.add_argument("--diffusers-dropout", type=float, default=0.0,
                   help="UNet2DModel dropout (diffusers' default 0; errprop's config uses 0.1)")
    p.add_argument("--diffusers-spacing", default="match",
                   help="timestep_spacing of diffusers' samplers: match (errprop's sample.spacing), "
                        "default (diffusers' own: leading), trailing, leading or linspace")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--runs", default=None, help="run folders (default runs/b7, runs/b7-quick)")
    p.add_argument("--out", default=None, help="results folder (default docs/results; quick: RUNS/results)")
    p.add_argument("--ckpt-every", type=int, default=2000)
    p.add_argument("--log-every", type=int, default=200)
    p.add_argument("--batch", type=int, default=None, help="sampling batch (default 2000 cuda, 500 cpu)")
    p.add_argument("--quick", action="store_true", help="smoke run: numbers meaningless")
    a = p.parse_args(argv)
    a.command = shlex.join(["python", "benchmarks/b7_vs_diffusers.py",
                            *(sys.argv[1:] if argv is None else argv)])
    if a.quick:
        a.steps, a.n, a.sampling_steps, a.seeds, a.log_every = 3, 64, "2", "0,1", 1
    a.runs = a.runs or str(ROOT / "runs" / ("b7-quick" if a.quick else "b7"))
    a.out = a.out or (str(Path(a.runs) / "results") if a.quick else str(ROOT / "docs" / "results"))
    if a.quick:
        quick_classifier(Path(a.runs) / "cache")
    if a.channels % 32:
        p.error("--channels must be a multiple of 32 (UNet2DModel's GroupNorm has 32 groups)")
    device = str(pick_device(a.device))
    a.batch = a.batch or (2000 if device.startswith("cuda") else 500)
    ks = [int(k) for k in a.sampling_steps.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]

    cfg0 = errprop_config(a, seeds[0], device)
    a.errprop_dropout = cfg0.model.dropout
    spacing = cfg0.sample.spacing if a.diffusers_spacing == "match" else a.diffusers_spacing
    from errprop.builders import build_net

    params = {"errprop": sum(q.numel() for q in build_net(cfg0, (1, 28, 28)).parameters()),
              "diffusers": sum(q.numel() for q in diffusers_unet(a.channels).parameters())}
    say(f"B7: {a.steps} steps × {BATCH}, seeds {seeds}, n {a.n}, sampling steps {ks}, device {device}, "
        f"params errprop {params['errprop']:,} / diffusers {params['diffusers']:,}, "
        f"grad clip {a.grad_clip or 'off'}, diffusers spacing {spacing}")

    for seed in seeds:  # refuse before training anything
        cfg, _ = check_errprop_folder(a, seed, device)
        check_diffusers_folder(a, seed, cfg)
    per_seed: dict[int, dict] = {}
    for seed in seeds:
        # A seed scored before with these very settings is read back, not sampled again: seeds can
        # be run in separate processes (one per core) and gathered by a last run over all of them.
        scores = Path(a.runs) / f"scores-s{seed}.json"
        key = score_key(a, seed, ks, spacing, device)
        cached = read_json(scores)
        if cached and cached.get("key") == key:
            say(f"[s{seed}] scored already ({scores}); reading it")
            per_seed[seed] = cached["scores"]
            payload = write(a, device, ks, seeds, per_seed, params, spacing)
            continue
        e_rec = train_errprop(a, seed, device)
        d_rec = train_diffusers(a, seed, device, errprop_config(a, seed, device))
        run = load_run(Path(a.runs) / f"errprop-s{seed}", device=device)
        say(f"[errprop s{seed}] sampling + scoring (evaluate, n = {a.n})")
        res = evaluate(run, ks, list(SAMPLERS), "fd", n=a.n, seed=seed, batch_size=a.batch, device=device,
                       progress=False, command=a.command)
        scorer = Scorer(run, "fd", a.n, seed, device)  # the very scorer evaluate() used
        floor = scorer.floor()["value"]
        if abs(floor - res["floor"]) > 1e-9 * max(1.0, abs(floor)):
            raise SystemExit(f"scorer mismatch: floor {floor} vs evaluate's {res['floor']}")
        e_vals = {(r["sampler"], r["steps"]): r["value"] for r in res["results"]}
        from diffusers import UNet2DModel

        unet = UNet2DModel.from_pretrained(Path(a.runs) / f"diffusers-s{seed}" / "unet_ema",
                                           low_cpu_mem_usage=False).to(device).eval()
        d_vals = {}
        for sampler in SAMPLERS:
            for k in ks:
                say(f"[diffusers s{seed}] sampling {sampler}-{k} (n = {a.n})")
                x = sample_diffusers(a, unet, seed, device, sampler, k, spacing)
                d_vals[(sampler, k)] = scorer(x)["value"]
        per_seed[seed] = {"floor": floor, "floor_n": len(scorer.floor_set),
                          "classifier_test_accuracy": scorer.accuracy,
                          "errprop": {"train": e_rec, "fd": {f"{s}-{k}": v for (s, k), v in e_vals.items()}},
                          "diffusers": {"train": d_rec,
                                        "fd": {f"{s}-{k}": v for (s, k), v in d_vals.items()}}}
        write_json(scores, {"key": key, "scores": per_seed[seed]})
        for sampler in SAMPLERS:
            for k in ks:
                say(f"  s{seed} {sampler:4} {k:4d}: errprop {e_vals[(sampler, k)]:.3f}  "
                    f"diffusers {d_vals[(sampler, k)]:.3f}  (floor {floor:.3f})")
        payload = write(a, device, ks, seeds, per_seed, params, spacing)
    return payload


def write(a, device: str, ks: list[int], seeds: list[int], per_seed: dict, params: dict,
          spacing: str) -> dict:
    """Write b7_vs_diffusers.{json,md} for the seeds finished so far; print the Markdown."""
    import diffusers

    done = sorted(per_seed)
    pairs = {}
    for sampler in SAMPLERS:
        for k in ks:
            key = f"{sampler}-{k}"
            pairs[key] = paired_stats([per_seed[s]["errprop"]["fd"][key] for s in done],
                                      [per_seed[s]["diffusers"]["fd"][key] for s in done])
    if len(done) > 1:  # the family: every sampler × steps setting, Holm-adjusted
        for r, ph in zip(pairs.values(), holm([r["diff_p"] for r in pairs.values()])):
            r["diff_p_holm"] = ph
    floors = [per_seed[s]["floor"] for s in done]
    settings = {"steps": a.steps, "batch_size": BATCH, "n": a.n, "sampling_steps": ks, "seeds": done,
                "seeds_asked": seeds, "channels": a.channels, "params": params,
                "grad_clip_mean_loss": a.grad_clip, "grad_clip_errprop": a.grad_clip * 784,
                "diffusers_dropout": a.diffusers_dropout, "errprop_dropout": a.errprop_dropout,
                "diffusers_timestep_spacing": spacing, "quick": a.quick, "runs": a.runs,
                "device": device, "diffusers_version": diffusers.__version__}

    def ms(mean, sd):
        return f"{mean:.3f}" if math.isnan(sd) else f"{mean:.3f} ± {sd:.3f}"

    def tr(side: str) -> str:
        rec = {s: per_seed[s][side]["train"] for s in done}
        return ", ".join(f"s{s} {r['train_seconds']} s" + (" (resumed)" if r["resumed"] else "")
                         for s, r in rec.items())

    intro = "\n\n".join([
        f"Device {device}; diffusers {diffusers.__version__}.",
        f"Training: {a.steps} steps × batch {BATCH} on each side, seeds {done}; parameters errprop "
        f"{params['errprop']:,}, diffusers {params['diffusers']:,}. Gradient clipping: "
        + (f"{a.grad_clip} on the mean loss (diffusers), {a.grad_clip * 784:g} on errprop's summed loss"
           if a.grad_clip else "off on both sides")
        + f". Dropout: errprop {a.errprop_dropout} (its config), diffusers {a.diffusers_dropout}. "
        f"Samplers: EMA weights, x̂0 clipped to ±1, errprop's DDIM/DDPM vs diffusers' DDIMScheduler/"
        f"DDPMScheduler (timestep_spacing {spacing}).",
        f"Metric: Fréchet distance on errprop's Fashion-MNIST classifier features (test accuracy "
        f"{per_seed[done[0]]['classifier_test_accuracy']:.4f}), n = {a.n} samples vs the test set, "
        f"one scorer for both sides. Floor (n = {per_seed[done[0]]['floor_n']} train images vs test): "
        + ", ".join(f"{f:.3f}" for f in floors) + " (per seed).",
        f"Training wall-clock — errprop: {tr('errprop')}; diffusers: {tr('diffusers')}."])
    table = [["sampler", "steps", "errprop FD", "diffusers FD", "errprop − diffusers", "95 % CI (t)",
              "p_Holm"]]
    for key, r in pairs.items():
        sampler, k = key.split("-")
        ci = "n/a" if r["diff_ci95"] is None else f"[{r['diff_ci95'][0]:+.3f}, {r['diff_ci95'][1]:+.3f}]"
        table.append([sampler, k, ms(r["errprop_mean"], r["errprop_sd"]),
                      ms(r["diffusers_mean"], r["diffusers_sd"]), ms(r["diff_mean"], r["diff_sd"]), ci,
                      f"{r['diff_p_holm']:.2g}" if "diff_p_holm" in r else "n/a"])
    notes = ("Mean ± sd over seeds; the difference is paired by seed (negative: errprop better); p_Holm: "
             f"the paired t-test's p-value Holm-adjusted over the {len(pairs)} settings.")
    if len(done) > 1:
        notes += "\n\n" + verdict_sentence(pairs, len(done))
    if a.quick:
        notes += ("\n\n**--quick smoke run: the numbers mean nothing (a few steps, tiny n, a throwaway "
                  "classifier).**")
    payload = write_result(a.out, "b7_vs_diffusers", "B7 — errprop baseline vs a plain diffusers DDPM",
                           a.command, {"settings": settings, "floor": floors, "paired": pairs,
                                       "per_seed": per_seed}, table, notes, intro=intro)
    say((Path(a.out) / "b7_vs_diffusers.md").read_text())
    return payload


if __name__ == "__main__":
    main()
