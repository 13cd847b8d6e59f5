"""A DDPM-style U-Net for images (architecture only: it knows nothing of diffusion).

The layout is DDPM's (Ho et al. 2020, after PixelCNN++) with ADM's scale-shift conditioning
(Dhariwal & Nichol 2021): residual blocks ``GroupNorm → SiLU → conv3×3 → GroupNorm·(1+s)+b → SiLU
→ dropout → conv3×3`` plus a skip, the noise embedding entering as a per-channel scale and shift
of the second norm (added before a norm instead, as in DDPM, it is erased when the groups hold one
channel each, as at 32 channels and 32 groups); ``num_res_blocks`` blocks per level on the way
down and ``num_res_blocks + 1`` on the way up, each of those fed the matching encoder activation
by concatenation; stride-2 conv downsampling; nearest-neighbour upsampling straight into the next
residual block (EDM / NCSN++ style, no extra conv); self-attention in the middle and at the chosen
resolutions.

CPU speed: activations are kept channels-last (NHWC), where oneDNN's convolutions are fastest, and
GroupNorm (+ SiLU, + the scale-shift) is one autograd function written for that layout, because
PyTorch's channels-last GroupNorm kernel is several times slower than its NCHW one (and 32 groups
of one channel is its worst case). It runs errprop's compiled kernel (``group_norm_cpu.cpp``,
built on first use) where it can, PyTorch's ops otherwise; both keep statistics in float32 and
activations in the input dtype, so under bf16 autocast no activation is cast back and forth. Attention
uses explicit softmax on CPU (PyTorch's fused CPU kernel has a slow backward at these few hundred
tokens). On GPUs the network runs NCHW with PyTorch's own kernels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from ..errors import ErrpropError
from . import kernels
from .embedding import sinusoidal

# ---------------------------------------------------------------------------------------------
# Fused GroupNorm (+ SiLU) with a per-sample affine, for channels-last activations
# ---------------------------------------------------------------------------------------------


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, H·W, C): a free view of a channels-last tensor (a copy otherwise)."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)


def _unrows(y: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`_rows`: a channels-last (B, C, H, W) view."""
    b, c, h, w = shape
    return y.view(b, h, w, c).permute(0, 3, 1, 2)


def _group_mean(v: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, C) → (B, C): each entry replaced by the mean over its group of channels."""
    b, c = v.shape
    means = v.view(b, groups, c // groups).mean(-1, keepdim=True)
    return means.expand(b, groups, c // groups).reshape(b, c)


def _norm_forward(x, weight, bias, groups: int, eps: float, act: bool):
    """GroupNorm(x)·weight + bias (and SiLU) of channels-last x: (output, centred rows, pre-activation
    rows or None, offset, rstd); see :class:`_GroupNormAct`."""
    xr = _rows(x)
    n, acc = xr.shape[1], torch.promote_types(x.dtype, torch.float32)
    # Centre on a first estimate m_c of each channel's mean, rounded to x's dtype (then x − m_c
    # is exact), and take the rest of the mean and the variance from the small centred values:
    # a bf16 sum rounds to 1/256 of itself, which for a large mean is most of a std.
    m_c = (xr.sum(1).to(acc) / n).to(x.dtype)
    centred = xr - m_c[:, None]
    delta = centred.sum(1).to(acc) / n
    var_c = (centred * centred).sum(1).to(acc) / n - delta * delta
    m_c = m_c.to(acc)
    mean_c = m_c + delta
    mean = _group_mean(mean_c, groups)
    var = _group_mean(var_c + (mean_c - mean) ** 2, groups).clamp_min(0)  # total variance
    rstd = (var + eps).rsqrt()
    a = weight.to(acc) * rstd
    # x̂·w + b = (x − m_c)·a + (b + (m_c − μ)·a): both terms stay small.
    offset = m_c - mean
    y = torch.addcmul((bias.to(acc) + offset * a).to(x.dtype)[:, None], centred, a.to(x.dtype)[:, None])
    return _unrows(F.silu(y) if act else y, x.shape), centred, y if act else None, offset, rstd


def _norm_backward(grad_out, centred, y, weight, offset, rstd, groups: int):
    """Gradients (x, weight, bias) of :func:`_norm_forward` (``y`` None: no activation)."""
    g = _rows(grad_out)
    if y is not None:
        g = torch.ops.aten.silu_backward(g, y)
    b, n_pix, c = centred.shape
    per_group = c // groups
    n = n_pix * per_group
    # With c = x − m_c, d = m_c − μ (per channel) and r = rstd, x̂ = (c + d) r; channel sums of
    # g and g·c give every gradient:
    #   d bias = Σ g,  d weight = Σ g x̂ = r (Σ g c + d Σ g),
    #   dx = r w g − r ⟨w g⟩_G − x̂ r ⟨w g x̂⟩_G  (⟨·⟩_G: mean over the group and pixels).
    acc = rstd.dtype
    sum_g = g.sum(1).to(acc)
    sum_gc = (g * centred).sum(1).to(acc)
    grad_weight = (sum_gc + offset * sum_g) * rstd
    w = weight.to(acc)
    m1 = _group_mean(w * sum_g, groups) * per_group / n
    m2 = _group_mean(w * grad_weight, groups) * per_group / n
    u = -rstd * rstd * m2
    v = -rstd * m1 + offset * u  # dx = v + c·u + g·w·r
    dt = centred.dtype
    gx = torch.addcmul(v.to(dt)[:, None], centred, u.to(dt)[:, None])
    gx.addcmul_(g, (w * rstd).to(dt)[:, None])
    return gx, grad_weight.to(weight.dtype), sum_g.to(weight.dtype)


class _GroupNormAct(torch.autograd.Function):
    """``y = act(x̂ · weight + bias)``, x̂ = GroupNorm(x) without affine; weight, bias: (B, C).

    PyTorch's ops only (the fallback when the compiled kernel is unavailable, and its reference
    in the tests). Every pass over the activations runs in their dtype: reductions of bf16
    tensors accumulate in float32 inside the kernel and round once (asking for a float32 result
    instead converts the whole tensor first). The per-channel statistics are then combined in
    float32. Large tensors are centred on (nearly) the per-channel mean m_c before anything is
    multiplied, so a large mean costs no precision: the forward works on x − m_c and saves it
    for the backward.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, groups: int, eps: float, act: bool):  # noqa: D102
        out, centred, y, offset, rstd = _norm_forward(x, weight, bias, groups, eps, act)
        ctx.save_for_backward(centred, y, weight, offset, rstd)
        ctx.groups, ctx.shape = groups, x.shape
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        centred, y, weight, offset, rstd = ctx.saved_tensors
        gx, grad_weight, grad_bias = _norm_backward(grad_out, centred, y, weight, offset, rstd, ctx.groups)
        return _unrows(gx, ctx.shape), grad_weight, grad_bias, None, None, None


class _GroupNormActKernel(torch.autograd.Function):
    """The same function through errprop's compiled kernel (``group_norm_cpu.cpp``): two passes
    over x forward and two backward, float32 arithmetic on float32 or bf16 storage; it saves only
    x (alive anyway) and the per-group mean and rstd.

    Faster than :class:`_GroupNormAct` in a bf16 training step of the U-Net, where PyTorch's ops
    took half the step in a dozen passes over each activation; ``torch.compile`` of those ops did
    not pay for its compilation per process (docs/benchmarks.md#b1-training-throughput).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, groups: int, eps: float, act: bool):  # noqa: D102
        xr = _rows(x).contiguous()
        w, b = weight.float().contiguous(), bias.float().contiguous()
        y, mean, rstd = kernels.group_norm().forward(xr, w, b, groups, eps, act)
        ctx.save_for_backward(xr, w, b, mean, rstd)
        ctx.groups, ctx.act, ctx.shape, ctx.dtype = groups, act, x.shape, weight.dtype
        return _unrows(y, x.shape)

    @staticmethod
    @once_differentiable  # the C++ backward has no graph: a second derivative must fail loudly
    def backward(ctx, grad_out):  # noqa: D102
        xr, w, b, mean, rstd = ctx.saved_tensors
        gx, gw, gb = kernels.group_norm().backward(
            _rows(grad_out), xr, w, b, mean, rstd, ctx.groups, ctx.act
        )
        return _unrows(gx, ctx.shape), gw.to(ctx.dtype), gb.to(ctx.dtype), None, None, None


def group_norm_act(
    x: torch.Tensor,
    groups: int,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float = 1e-5,
    act: bool = True,
) -> torch.Tensor:
    """``act(GroupNorm(x) · weight + bias)`` with a per-sample affine ``weight, bias`` (B, C).

    One autograd function written for channels-last CPU tensors: it gives the numbers of
    ``nn.GroupNorm`` (+ ``nn.SiLU``) in a few passes over ``x``, through the compiled kernel for
    float32 and bf16 where it is available (:mod:`errprop.nets.kernels`), PyTorch's ops otherwise.
    """
    fused = (x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16)
             and kernels.group_norm() is not None)
    return (_GroupNormActKernel if fused else _GroupNormAct).apply(x, weight, bias, groups, eps, act)


class GroupNormAct(nn.Module):
    """GroupNorm with an optional fused SiLU and an optional per-sample scale and shift.

    ``forward(x, scale, shift)`` returns ``act(GroupNorm(x) · (1 + scale) + shift)`` with
    ``scale``, ``shift`` of shape (batch, channels) (ADM's scale-shift norm), or plain
    ``act(GroupNorm(x))`` without them; the norm's own affine applies before the scale and shift.
    Same numbers as ``nn.GroupNorm`` (+ ``nn.SiLU``).

    Args:
        channels: number of channels C.
        groups: number of groups (must divide C).
        act: apply SiLU after the norm.
        eps: added to the variance.
    """

    def __init__(self, channels: int, groups: int, act: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        if channels % groups:
            raise ErrpropError(f"model: {groups} groups do not divide {channels} channels")
        self.groups, self.act, self.eps = groups, act, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(
        self,
        x: torch.Tensor,
        scale: torch.Tensor | None = None,
        shift: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, C, H, W) → (B, C, H, W)."""
        if x.device.type != "cpu":
            # PyTorch's own kernel (one pass) is the better choice on GPUs.
            h = F.group_norm(x, self.groups, self.weight, self.bias, self.eps)
            if scale is not None or shift is not None:
                one_plus = 1 + (scale if scale is not None else torch.zeros_like(shift))
                add = shift if shift is not None else torch.zeros_like(scale)
                h = torch.addcmul(add[:, :, None, None], h, one_plus[:, :, None, None])
            return F.silu(h) if self.act else h
        weight, bias = self.weight.expand(x.shape[0], -1), self.bias.expand(x.shape[0], -1)
        if scale is not None:
            weight = weight * (1 + scale.to(weight.dtype))
            bias = bias * (1 + scale.to(weight.dtype))
        if shift is not None:
            bias = bias + shift.to(weight.dtype)
        return group_norm_act(x, self.groups, weight, bias, self.eps, self.act)


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    """DDPM residual block with ADM's scale-shift injection of the noise embedding."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.norm1 = GroupNormAct(cin, math.gcd(cin, groups))
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = GroupNormAct(cout, math.gcd(cout, groups))
        self.dropout = dropout
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x: (B, cin, H, W), emb: (B, emb_dim) (already through SiLU) → (B, cout, H, W)."""
        scale, shift = self.emb(emb).chunk(2, dim=1)
        h = self.conv1(self.norm1(x))
        h = self.norm2(h, scale, shift)
        if self.dropout > 0:
            h = F.dropout(h, self.dropout, self.training)
        h = self.conv2(h)
        return h + (x if self.skip is None else self.skip(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels, with a pre-norm and a residual."""

    def __init__(self, channels: int, groups: int, head_dim: int) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        if channels % self.heads:
            raise ErrpropError(f"model: {self.heads} heads do not divide {channels} channels")
        self.norm = GroupNormAct(channels, math.gcd(channels, groups), act=False)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C, H, W)."""
        b, c, h, w = x.shape
        d = c // self.heads
        qkv = _rows(self.qkv(self.norm(x))).view(b, h * w, 3, self.heads, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, HW, d)
        if x.device.type == "cpu":
            # Explicit softmax attention: at these few hundred tokens it is several times faster
            # on CPU than the fused kernel of scaled_dot_product_attention (its backward).
            out = torch.softmax((q * d**-0.5) @ k.transpose(-1, -2), dim=-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.permute(0, 2, 1, 3).reshape(b, h * w, c)
        return x + self.proj(_unrows(out, x.shape))


class Downsample(nn.Module):
    """Stride-2 conv3×3 (DDPM): H → ⌈H/2⌉."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C, ⌈H/2⌉, ⌈W/2⌉)."""
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to the skip's size.

    No conv of its own: the upsampled map is concatenated with the skip and goes straight into a
    residual block, whose norm and convs do the filtering (as in EDM's and NCSN++'s up blocks).
    DDPM's extra conv3×3 here costs 20 % of the network's FLOPs at 28×28 for little use.
    """

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """(B, C, h, w) → (B, C, *size)."""
        return F.interpolate(x, size=tuple(size), mode="nearest")


# ---------------------------------------------------------------------------------------------
# The U-Net
# ---------------------------------------------------------------------------------------------


class UNet(nn.Module):
    """``F(x, c_noise)`` for images x of shape (batch, in_channels, H, W).

    Args:
        in_channels: image channels (1 for Fashion-MNIST and digits, 3 for RGB).
        out_channels: output channels; defaults to ``in_channels`` (ε, x0 or v prediction).
        channels: base width: level i has ``channels * channel_mult[i]`` channels.
        channel_mult: width multiplier of each resolution level; there are
            ``len(channel_mult) - 1`` downsamplings (28 → 14 → 7 for three levels).
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attention_resolutions: spatial sizes (e.g. ``(14,)``) whose levels get self-attention
            after each residual block; sizes follow ``image_size`` halved with rounding up. The
            middle of the network always has one attention layer.
        dropout: dropout probability inside each residual block (before its second conv).
        image_size: side of the training images; only used to place attention.
        emb_dim: width of the noise embedding; defaults to ``4 * channels``.
        num_groups: GroupNorm groups (DDPM: 32); a layer of C channels uses ``gcd(C, num_groups)``.
        attention_head_dim: channels per attention head (heads = C // attention_head_dim, ≥ 1).

    The input may have any H, W (odd sizes are fine: upsampling goes to the encoder's sizes).
    On CPU, activations run channels-last; the output is returned contiguous, shaped like the
    input with ``out_channels`` channels.

    Fashion-MNIST on a small CPU: ``UNet(1, channels=32, dropout=0.1)`` (1.07 M parameters, the
    size of benchmark B1); with a GPU, ``channels=64`` (4.25 M). Digits (8×8):
    ``UNet(1, channels=32, image_size=8)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        image_size: int = 28,
        emb_dim: int | None = None,
        num_groups: int = 32,
        attention_head_dim: int = 64,
    ) -> None:
        super().__init__()
        if not channel_mult or num_res_blocks < 1 or channels < 1:
            raise ErrpropError(
                "model: need channels ≥ 1, num_res_blocks ≥ 1, a non-empty channel_mult"
            )
        if not 0 <= dropout < 1:
            raise ErrpropError(f"model.dropout must be in [0, 1), got {dropout}")
        out_channels = in_channels if out_channels is None else out_channels
        emb_dim = 4 * channels if emb_dim is None else emb_dim
        sizes = [image_size]
        for _ in channel_mult[1:]:
            sizes.append((sizes[-1] + 1) // 2)
        unknown = sorted(set(attention_resolutions) - set(sizes))
        if unknown:
            raise ErrpropError(
                f"model.attention_resolutions: {unknown} not among the U-Net's resolutions {sizes}"
            )
        self.channels = channels

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, dropout, num_groups)

        def attn(c: int) -> SelfAttention:
            return SelfAttention(c, num_groups, attention_head_dim)

        self.embed = nn.Sequential(
            nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)

        # Encoder: every block's output (and conv_in's, and each downsampling's) is a skip.
        self.down = nn.ModuleList()
        skips, c = [channels], channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                block = nn.ModuleList([res(c, channels * mult)])
                c = channels * mult
                if sizes[level] in attention_resolutions:
                    block.append(attn(c))
                self.down.append(block)
                skips.append(c)
            if level < len(channel_mult) - 1:
                self.down.append(Downsample(c))
                skips.append(c)

        self.mid = nn.ModuleList([res(c, c), attn(c), res(c, c)])

        # Decoder: one more block per level than the encoder, each eating one skip.
        self.up = nn.ModuleList()
        for level in reversed(range(len(channel_mult))):
            for _ in range(num_res_blocks + 1):
                block = nn.ModuleList([res(c + skips.pop(), channels * channel_mult[level])])
                c = channels * channel_mult[level]
                if sizes[level] in attention_resolutions:
                    block.append(attn(c))
                self.up.append(block)
            if level > 0:
                self.up.append(Upsample())

        self.norm_out = GroupNormAct(c, math.gcd(c, num_groups))
        self.conv_out = nn.Conv2d(c, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, H, W), c_noise: (B,) → (B, out_channels, H, W)."""
        emb = F.silu(self.embed(sinusoidal(c_noise, self.channels).to(x.dtype)))
        h = self.conv_in(x)
        if h.device.type == "cpu":
            # Channels-last from here on (after conv_in: a 1-channel input would keep every conv
            # in NCHW). On CUDA, NCHW with PyTorch's GroupNorm measured slightly faster.
            h = h.contiguous(memory_format=torch.channels_last)
        skips = [h]
        for block in self.down:
            if isinstance(block, Downsample):
                h = block(h)
            else:
                h = block[0](h, emb)
                for layer in block[1:]:
                    h = layer(h)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for block in self.up:
            if isinstance(block, Upsample):
                h = block(h, skips[-1].shape[-2:])
            else:
                h = block[0](torch.cat([h, skips.pop()], dim=1), emb)
                for layer in block[1:]:
                    h = layer(h)
        return self.conv_out(self.norm_out(h)).contiguous()
