"""The training loop: data, model, loss, optimizer, EMA, checkpoints, logging — no diffusion math.

Every random draw of step k is a function of ``(train.seed, k)``: the data of global sample
``k·B + j`` and its loss noise come from per-sample streams, dropout from a per-step seed. So a run
resumed from a checkpoint continues bit for bit, and the same global batch split over DDP ranks
sees the same samples and the same noise.

Several processes: launch with ``torchrun --nproc_per_node N -m errprop.cli train ...`` or
``accelerate launch --multi_gpu --num_processes N -m errprop.cli train ...`` (which starts the
same workers through torchrun; see :mod:`errprop.distributed`). Rank r takes global samples
``k·B + r·B/N … k·B + (r+1)·B/N − 1`` of step k; gradients are averaged across ranks; rank 0
alone keeps the EMA, writes checkpoints, ``metrics.jsonl``, TensorBoard events and the progress
bar, and the logged losses are means over ranks. What couples the samples *within* a batch is
formed on each rank's local batch: EP's MMD² compares each rank's own two local half-batches (and
each rank draws its own rollout start and length from its first sample's stream), and antithetic
σ sampling mirrors within the local batch. So with the SIMPLE loss (uniform or log-normal σ) N
ranks give the single-process weights up to float rounding, while SA with antithetic sampling and
EP train on the same objective estimated with those local couplings.

Stopping is agreed: a SIGINT/SIGTERM on any rank, a non-finite loss or gradient, or a failed
checkpoint write stops every rank at the same step.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import checkpoint, distributed, files, run_rules
from .builders import build_denoiser, build_loss, build_process, build_source, check_sampling
from .config import Config, dump, from_dict, read_yaml
from .config_diff import changed
from .errors import ErrpropError
from .keys import KEY_INIT, KEY_LOSS, KEY_TRAIN_STEP
from .losses.cumulative import check_batch
from .noise import Noise, stream_seed, stream_seeds
from .provenance import has_amx

#: The version of the training numerics: bump it with any change that alters what a given config
#: and seed train to (the noise streams, the order of draws, the loss reductions, the optimiser).
#: Cached study results carry it, and a study retrains an arm whose cache was made by another
#: version rather than pair it with today's arms.
NUMERICS = 1


def pick_device(name: str) -> torch.device:
    """``auto`` → CUDA if available, else CPU; otherwise the named device (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ErrpropError(
            f"config: train.device {name!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ErrpropError(f"config: train.device is {name!r} but CUDA is not available here")
    return dev


def use_bf16(precision: str, net: str, device: torch.device) -> bool:
    """bf16 autocast: asked for, or ``auto`` for U-Nets on devices with bf16 matrix units.

    On a CPU that means AMX: with AVX-512-BF16 alone, bf16 convolutions ran at about half the fp32
    speed in B1 (docs/results/b1_train_throughput.md). MLPs on low-dimensional data stay fp32
    under ``auto``: their matmuls are too small to gain, and bf16 is coarse for 2-D coordinates.
    """
    if precision != "auto":
        return precision == "bf16"
    if net != "unet":
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return has_amx()


@dataclass
class TrainResult:
    """How a call to :func:`train` ended."""

    run: Path
    step: int
    interrupted: bool
    checkpoint: Path | None
    start: int = 0  #: the step training started from (0, or the resumed checkpoint's)


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step (then saves and stops).

    A second Ctrl-C (SIGINT) while the first is being handled quits at once, without saving.
    """

    def __init__(self, verbose: bool) -> None:
        self.signum: int | None = None
        self.verbose = verbose
        self._old: dict[int, object] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        if self.verbose:
            tqdm.write(f"{signal.Signals(signum).name}: saving a checkpoint after this step "
                       f"(Ctrl-C again quits without saving)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _seed_torch(seed: int, *key: int) -> None:
    # The CPU generator directly (torch.manual_seed also visits every accelerator backend: ~100×
    # the time, once per training step); CUDA's only where it is in use.
    s = stream_seed(seed, 0, *key) & (2**63 - 1)
    torch.default_generator.manual_seed(s)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(s)


def _lr(cfg: Config, step: int) -> float:
    """Linear warm-up to train.lr over train.warmup steps, then constant."""
    w = cfg.train.warmup
    return cfg.train.lr * min(1.0, (step + 1) / w) if w > 0 else cfg.train.lr


def ema_decay(decay: float, k: int, warmup: bool = True) -> float:
    """The EMA decay of the update made after ``k`` earlier updates.

    With ``warmup`` it is diffusers' ``EMAModel`` (``use_ema_warmup=False``): the first update
    copies the weights, then ``min(decay, (1 + k)/(10 + k))`` — so the random initialisation does
    not linger (at a fixed 0.999 it still holds 0.999^3000 ≈ 5 % of the EMA after 3,000 steps).
    """
    if not warmup:
        return decay
    return 0.0 if k == 0 else min(decay, (1 + k) / (10 + k))


def read_metrics(path: Path) -> list[dict]:
    """The rows of a ``metrics.jsonl``; a line cut short by a crash (or any unreadable line) is
    skipped, never an error — the checkpoints, not this log, are the record of a run."""
    rows = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                rows.append(row)
    return rows


def _trim_metrics(path: Path, step: int) -> None:
    """Keep the rows of ``metrics.jsonl`` up to ``step`` (a resumed run rewrites those after it,
    a fresh run starts empty); a line cut short by a crash is dropped. Replaced atomically."""
    if path.is_file():
        keep = [json.dumps(row) + "\n" for row in read_metrics(path) if row["step"] <= step]
        files.atomic_write_text(path, "".join(keep))


def train(cfg: Config, run: str | Path | None = None, resume: bool = False, progress: bool = True,
          resume_from: str | Path | None = None, allow_change: bool = False,
          name: str = "run") -> TrainResult:
    """Train the model of ``cfg`` into the run folder ``run`` (continuing it if ``resume``);
    without ``run``, into ``runs/<name>-<time>`` (:func:`errprop.run_rules.default_run_folder`).

    A resumed run follows the one resume rule, :func:`errprop.run_rules.resume_changes`: ``cfg``
    may differ from the run's ``config.yaml`` in its ``train`` and ``sample`` fields, in what the
    run learns (data, process, model, loss) only with ``allow_change``; an error naming the
    fields otherwise, before any work. Every change is appended to the run's ``changes.jsonl``.

    ``resume_from`` resumes from that checkpoint of the run instead of the latest (e.g. when the
    latest is corrupted); the later checkpoints are moved to ``checkpoints/abandoned-<step>/``,
    never deleted.

    Returns when ``train.steps`` are done or after a SIGINT/SIGTERM, in both cases with a
    checkpoint saved. A non-finite loss or gradient norm raises :class:`ErrpropError` naming the
    step and the last good checkpoint, after skipping up to ``train.skip_nonfinite`` such batches
    over the whole run (resumes included). A checkpoint that cannot be written raises
    :class:`ErrpropError`; the previous one stays intact.
    """
    if run is None and resume:
        raise ErrpropError("train: resume=True needs the run folder to continue")
    ctx = distributed.setup(pick_device(cfg.train.device))
    threads = torch.get_num_threads()
    if cfg.train.threads > 0:  # PyTorch's count is left alone unless the config asks
        torch.set_num_threads(cfg.train.threads)
    try:
        run = Path(run) if run is not None else run_rules.default_run_folder(name, ctx)
        result = _train(cfg, run, resume, progress and ctx.main, ctx, resume_from, allow_change)
        # every rank leaves the group together: a rank that tore its gloo connections down while
        # rank 0 still wrote the last checkpoint was seen to abort ("terminate called without an
        # active exception") in tests/test_distributed.py. Not on an error: a rank may be gone.
        ctx.barrier()
        return result
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        ctx.close()


def train_to_end(cfg: Config, run: str | Path, progress: bool = True, extend: bool = False) -> TrainResult:
    """Train ``run`` to ``cfg.train.steps`` for a script that measures the result afterwards.

    A finished run with the same config is left as it is; an interrupted one is continued; a run
    folder holding another config is an error naming the fields (never silently reused). Unlike
    :func:`train`, an interruption (SIGINT/SIGTERM, e.g. a job's time limit) raises
    :class:`ErrpropError` after the checkpoint is saved, so that a half-trained model is never
    scored as if it were finished — the cause of B4's EP numbers (docs/results/b4_quality.md).

    "The same config" is stricter than the resume rule of :func:`train`
    (:func:`errprop.run_rules.resume_changes`, which lets a person train on with other ``train``
    or ``sample`` fields): a script's folder stands for exactly one config — the one whose result
    it measures — so any difference, ``train.steps`` and ``train.lr`` included, is another run.
    A config saved before a field was added (which then takes its default) is the same.

    With ``extend`` a run may also differ in how long it trains (:data:`EXTENDABLE`): a study that
    measures checkpoints along one training (E8's budgets) trains an existing run on to a larger
    ``train.steps`` — the change recorded in its ``changes.jsonl`` — or reads a longer one as it is.
    This is exact, not approximate: every draw and the learning rate are functions of the step
    alone (the constant rate after warm-up), so the checkpoint at step k is the same whether the
    run was started for k steps or for more
    (``tests/test_train.py::test_train_to_end_extends_a_run_exactly``).
    """
    run = Path(run)
    if checkpoint.list_checkpoints(run):
        _check_same_config(run, cfg, EXTENDABLE if extend else ())
        _, meta = checkpoint.load(run)
        if meta["step"] >= cfg.train.steps:
            return TrainResult(run, meta["step"], False, checkpoint.resolve(run))
        result = train(cfg, run, resume=True, progress=progress)
    else:
        result = train(cfg, run, progress=progress)
    if result.interrupted:
        raise TrainingInterrupted(f"training of {run} was interrupted at step {result.step} of "
                           f"{cfg.train.steps} (checkpoint saved); run the same command again to continue")
    return result


class TrainingInterrupted(ErrpropError):
    """:func:`train_to_end`'s training was stopped by SIGINT/SIGTERM (its checkpoint saved)."""


#: What :func:`train_to_end` with ``extend`` lets differ: the length of the training and how many
#: of its checkpoints are kept — nothing that changes what step k trains to.
EXTENDABLE = ("train.steps", "train.keep_last")


def _check_same_config(run: Path, cfg: Config, free: tuple[str, ...] = ()) -> None:
    """An error naming the differing fields unless the run's ``config.yaml`` is ``cfg`` (the
    fields in ``free`` aside)."""
    stored = run / "config.yaml"
    if not stored.is_file():
        raise ErrpropError(f"{run} holds checkpoints but no config.yaml (another run, or a damaged one); "
                           "delete it or use another folder")
    try:
        old = from_dict(read_yaml(stored))
    except (ErrpropError, KeyError, TypeError) as e:
        raise ErrpropError(f"{run} holds a run with another config (its config.yaml does not load: {e}); "
                           "delete it or use another folder") from None
    diff = {k: v for k, v in changed(old, cfg).items() if k not in free}
    if diff:
        raise ErrpropError(f"{run} holds a run with another config ({run_rules.describe(diff)}); delete it "
                           "or use another folder")


def _train(cfg: Config, run: Path, resume: bool, progress: bool, ctx: distributed.Context,
           resume_from: str | Path | None = None, allow_change: bool = False) -> TrainResult:
    # the resume rule first: a refused change costs nothing and leaves the folder as it was
    changes = run_rules.resume_changes(run, run_rules.stored_config(run), cfg, allow_change) if resume else {}
    trainer = _Trainer(cfg, run, ctx)
    trainer.restore(resume, resume_from)
    trainer.prepare_folder(resume_from, changes)
    return trainer.loop(progress)


class _Trainer:
    """The training of one run on one rank, in named steps: build, restore, prepare the folder,
    then per step draw the batch, update (or skip a non-finite batch), update the EMA, log and
    checkpoint. The order of every random draw is that of the docstring of :mod:`errprop.train`."""

    def __init__(self, cfg: Config, run: Path, ctx: distributed.Context) -> None:
        tc = cfg.train
        if tc.batch_size % ctx.world:
            raise ErrpropError(f"config: train.batch_size {tc.batch_size} is not divisible by "
                               f"{ctx.world} ranks")
        self.local = tc.batch_size // ctx.world
        if cfg.loss.name == "ep":
            check_batch(tc.batch_size, ctx.world)
        self.cfg, self.tc, self.run, self.ctx, self.device = cfg, tc, run, ctx, ctx.device
        self.source = build_source(cfg)
        process = build_process(cfg)
        check_sampling(cfg, process, [cfg.sample.steps])  # a sampling config that cannot work fails now
        if ctx.main and cfg.data.name == "folder" and not (Path(cfg.data.root) / "test").is_dir():
            tqdm.write(f"warning: data.root {cfg.data.root} has no test/ sub-folder: training works, but "
                       "`errprop evaluate` scores against held-out images and will need it", file=sys.stderr)
        _seed_torch(tc.seed, KEY_INIT)  # the initial weights are a function of train.seed
        self.denoiser = build_denoiser(cfg, self.source.shape, process).to(self.device)
        self.loss_fn = build_loss(cfg, process)
        self.net = self.denoiser.net  # the bare module (the denoiser may hold its DDP wrapper)
        self.ema = copy.deepcopy(self.net).requires_grad_(False) if ctx.main else None  # rank 0 only
        self._params = list(self.net.parameters())
        self._ema_params = list(self.ema.parameters()) if self.ema is not None else []
        # buffers (e.g. normalisation statistics) are copied, not averaged; listed once, as walking
        # the module tree every step costs more than the copies
        self._ema_buffers = list(zip(self.ema.buffers(), self.net.buffers())) if self.ema is not None else []
        # The fused kernel: one call for all parameters, where PyTorch's CPU default is a Python loop
        # over them; the same update, several times faster for the U-Net
        # (docs/benchmarks.md#b1-training-throughput).
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                                     fused=self.device.type in ("cpu", "cuda"))
        self.bf16 = use_bf16(tc.precision, cfg.model.net, self.device)
        self.start, self.skipped, self.saved = 0, 0, None

    def restore(self, resume: bool, resume_from: str | Path | None) -> None:
        """Load the weights, EMA, optimiser and counters of the checkpoint to resume from."""
        run, tc = self.run, self.tc
        if not resume:
            if checkpoint.list_checkpoints(run):
                raise ErrpropError(f"{run} already holds a run; use --resume {run} or another --out")
            return
        tensors, meta = checkpoint.load(resume_from or run)
        checkpoint.load_state(self.net, checkpoint.split(tensors, "model"), "model weights")
        if self.ema is not None:
            checkpoint.load_state(self.ema, checkpoint.split(tensors, "ema"), "EMA weights")
        checkpoint.load_optimizer(self.opt, tensors, meta.get("optim"))
        self.start, self.skipped = meta["step"], int(meta.get("skipped_nonfinite", 0))
        self.saved = checkpoint.resolve(resume_from or run)
        if self.start > tc.steps:
            raise ErrpropError(f"{run} is at step {self.start}, past train.steps = {tc.steps}; "
                               f"to train on, raise it (e.g. --set train.steps={2 * self.start})")

    def prepare_folder(self, resume_from: str | Path | None, changes: dict | None = None) -> None:
        """Rank 0 writes the config (and the ``changes`` of a resume to ``changes.jsonl``), trims the
        log to the checkpoint and sets later checkpoints aside; then every rank wraps the network
        for gradient averaging."""
        ctx, run = self.ctx, self.run
        ctx.barrier()  # every rank has looked at the run folder before rank 0 writes into it
        if ctx.main:
            run.mkdir(parents=True, exist_ok=True)
            files.atomic_write_text(run / "config.yaml", dump(self.cfg))
            run_rules.record_changes(run, self.start, changes or {})
            _trim_metrics(run / "metrics.jsonl", self.start)  # rows past the checkpoint are rewritten
            if resume_from is not None:
                checkpoint.set_aside_after(run, self.start)
        self.denoiser.net = ctx.wrap(self.net)  # gradients averaged across ranks

    def batch(self, step: int) -> tuple[torch.Tensor, Noise]:
        """This rank's x0 and loss noise of ``step`` (and the step's global torch seed)."""
        tc = self.tc
        _seed_torch(tc.seed, KEY_TRAIN_STEP, step)  # dropout and any other global-RNG use
        first = step * tc.batch_size + self.ctx.rank * self.local  # global number of this rank's 1st sample
        idx = np.arange(first, first + self.local, dtype=np.uint64)  # the streams' own dtype: no copies
        return self.source.batch(tc.seed, idx).to(self.device), Noise(stream_seeds(tc.seed, idx, KEY_LOSS),
                                                                       self.device)

    def update(self, step: int, x0: torch.Tensor, noise: Noise) -> tuple[dict, torch.Tensor] | None:
        """Loss, backward and the optimiser step; returns (stats, gradient norm), or None for a
        non-finite batch that was skipped (an error once train.skip_nonfinite are used up).

        Steps are named as in metrics.jsonl: the update made here is step ``step + 1``. Every
        verdict is taken on values equal on all ranks (means over ranks, or the norm of the averaged
        gradients), so all ranks take the same branch.
        """
        tc, opt = self.tc, self.opt
        for g in opt.param_groups:
            g["lr"] = _lr(self.cfg, step)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.loss_fn(self.denoiser, x0, noise)
        values = [v.detach().float() for v in out.values()]
        if self.ctx.world > 1:  # one all-reduce for all of them
            values = self.ctx.all_mean(torch.stack(values)).unbind()
        stats = dict(zip(out, values))
        opt.zero_grad(set_to_none=True)
        # One look at the loss, and one at the gradient norm, every step (a sync on a GPU): a step
        # is applied, and the EMA, the log and the next checkpoint see it, only if both are finite.
        loss = stats["loss"].item()
        grad_norm = None
        if math.isfinite(loss):
            out["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self._params, tc.grad_clip or math.inf)
            if math.isfinite(grad_norm.item()):
                opt.step()
                return stats, grad_norm
        what = f"loss is {loss}" if grad_norm is None else f"gradient norm is {grad_norm.item()}"
        if self.skipped >= tc.skip_nonfinite:
            last = checkpoint.list_checkpoints(self.run)
            raise ErrpropError(
                f"{what} at step {step + 1}; training stopped. Last good checkpoint: "
                f"{last[-1] if last else 'none'} (try a lower train.lr or train.grad_clip, "
                f"or let train.skip_nonfinite skip a few bad batches)")
        self.skipped += 1  # the same verdict on every rank: skip this batch everywhere
        opt.zero_grad(set_to_none=True)
        if self.ctx.main:
            tqdm.write(f"warning: {what} at step {step + 1}; skipped the batch "
                       f"({self.skipped} of train.skip_nonfinite = {tc.skip_nonfinite})")
        return None

    def update_ema(self, step: int) -> None:
        """Rank 0's EMA after the update of ``step`` (diffusers' warm-up; see :func:`ema_decay`)."""
        if self.ema is None:
            return
        decay = ema_decay(self.tc.ema_decay, step, self.tc.ema_warmup)
        with torch.no_grad():
            torch._foreach_lerp_(self._ema_params, self._params, 1 - decay)  # one call for all
            for be, b in self._ema_buffers:
                be.copy_(b)

    def commit(self, step: int, transient: bool = False) -> Path:
        """Rank 0 writes the checkpoint of ``step`` (``transient``: where an interruption stopped
        the run, see :func:`errprop.checkpoint.save`); every rank learns whether that worked."""
        error = None
        if self.ema is not None:  # rank 0
            net, cfg = self.net, self.cfg
            tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
            tensors |= {f"ema.{k}": v for k, v in self.ema.state_dict().items()}
            opt_tensors, opt_meta = checkpoint.optimizer_tensors(self.opt)
            meta = {"config": cfg.to_dict(), "data_shape": list(self.source.shape), "optim": opt_meta,
                    "skipped_nonfinite": self.skipped}
            if cfg.model.net == "diffusers":  # the architecture, so the run loads without its init folder
                meta["diffusers_unet_config"] = dict(net.unet.config)
            try:
                checkpoint.save(self.run, step, tensors | opt_tensors, meta, keep_last=self.tc.keep_last,
                                transient=transient)
            except ErrpropError as e:
                error = e
        (failed,) = self.ctx.agree(error is not None)
        if error is not None:
            raise error
        if failed:
            raise ErrpropError(f"rank 0 could not write the checkpoint of step {step}; see its message")
        return checkpoint.checkpoint_path(self.run, step)

    def loop(self, progress: bool) -> TrainResult:
        """Train from the restored step to train.steps, or until a SIGINT/SIGTERM on any rank."""
        tc, ctx, run = self.tc, self.ctx, self.run
        log = _Log(run, self.start) if ctx.main else None
        bar = tqdm(total=tc.steps, initial=self.start, disable=not progress, desc=f"train {run.name}",
                   unit="step", dynamic_ncols=True, mininterval=1.0)
        step, t0 = self.start, time.time()
        self.denoiser.train()  # once: nothing in the loop switches a module to eval mode
        try:
            with _StopFlag(verbose=ctx.main) as stop:
                while step < tc.steps:
                    x0, noise = self.batch(step)
                    done = self.update(step, x0, noise)
                    if done is not None:
                        stats, grad_norm = done
                        self.update_ema(step)
                        if log is not None and ((step + 1) % tc.log_every == 0 or step + 1 == tc.steps):
                            row = {"step": step + 1, **{k: float(v) for k, v in stats.items()},
                                   "grad_norm": float(grad_norm), "lr": _lr(self.cfg, step),
                                   "time": round(time.time() - t0, 3)}
                            log.write(row)
                            bar.set_postfix(loss=f"{row['loss']:.4g}")
                    step += 1
                    bar.update(1)
                    if step % tc.ckpt_every == 0 or step == tc.steps:
                        self.saved = self.commit(step)
                    if ctx.agree(stop.signum is not None)[0]:  # all ranks stop at the same step
                        break
                interrupted = step < tc.steps
                if interrupted and self.saved != checkpoint.checkpoint_path(run, step):
                    self.saved = self.commit(step, transient=True)
        finally:
            bar.close()
            if log is not None:
                log.close()
        return TrainResult(run, step, interrupted, self.saved, self.start)


class _Log:
    """metrics.jsonl (one JSON object per logged step) and TensorBoard events, on rank 0."""

    def __init__(self, run: Path, purge_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run / "tb"), purge_step=purge_step)
        self.file = open(run / "metrics.jsonl", "a")

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        for k, v in row.items():
            if k != "step":
                self.writer.add_scalar(f"train/{k}", v, row["step"])

    def close(self) -> None:
        self.file.close()
        self.writer.close()

