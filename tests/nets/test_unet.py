"""The image U-Net: shapes, conditioning, parameter count, gradients, determinism, and the fused
GroupNorm against PyTorch's reference."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from errprop.errors import ErrpropError
from errprop.nets import kernels
from errprop.nets.unet import GroupNormAct, UNet, group_norm_act


def _small(**kw) -> UNet:
    torch.manual_seed(0)
    kw = {"channels": 16, "channel_mult": (1, 2, 2), "num_res_blocks": 1, **kw}
    return UNet(kw.pop("in_channels", 1), **kw)


@pytest.mark.parametrize(
    "shape, kw",
    [
        ((3, 1, 28, 28), {"image_size": 28}),
        ((3, 1, 8, 8), {"image_size": 8}),
        ((2, 3, 32, 32), {"in_channels": 3, "image_size": 32, "attention_resolutions": (16, 8)}),
        ((2, 1, 28, 28), {"image_size": 28, "attention_resolutions": (14,), "dropout": 0.1}),
        ((2, 1, 28, 28), {"channel_mult": (1, 2, 2, 2), "num_res_blocks": 2}),  # 28→14→7→4
    ],
)
def test_output_shaped_like_input(shape, kw):
    net = _small(**kw)
    x = torch.randn(shape)
    y = net(x, torch.rand(shape[0]) * 999)
    assert y.shape == x.shape and y.dtype == x.dtype and y.is_contiguous()
    assert torch.isfinite(y).all()


def test_out_channels():
    net = _small(in_channels=3, out_channels=6, image_size=8)
    assert net(torch.randn(2, 3, 8, 8), torch.zeros(2)).shape == (2, 6, 8, 8)


def test_output_depends_on_c_noise():
    net = _small().eval()
    x = torch.randn(2, 1, 28, 28)
    y0, y1 = net(x, torch.full((2,), 10.0)), net(x, torch.full((2,), 900.0))
    assert (y0 - y1).abs().mean() > 1e-3 * y0.abs().mean()


def test_output_depends_on_input():
    net = _small().eval()
    c = torch.full((2,), 500.0)
    assert not torch.allclose(net(torch.randn(2, 1, 8, 8), c), net(torch.randn(2, 1, 8, 8), c))


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def _res(cin: int, cout: int, emb: int) -> int:
    norm1, conv1, scale_shift = 2 * cin, _conv(cin, cout, 3), emb * 2 * cout + 2 * cout
    norm2, conv2 = 2 * cout, _conv(cout, cout, 3)
    skip = _conv(cin, cout, 1) if cin != cout else 0
    return norm1 + conv1 + scale_shift + norm2 + conv2 + skip


def _attn(c: int) -> int:
    return 2 * c + _conv(c, 3 * c, 1) + _conv(c, c, 1)


def test_parameter_count_formula():
    """Counted by hand for channels c, widths (c, 2c, 2c), one block per level, emb = 4c."""
    c, e = 32, 128
    expected = (
        (c * e + e) + (e * e + e)  # noise embedding MLP
        + _conv(1, c, 3)  # conv_in
        + _res(c, c, e) + _conv(c, c, 3) + _res(c, 2 * c, e) + _conv(2 * c, 2 * c, 3)
        + _res(2 * c, 2 * c, e)  # encoder
        + 2 * _res(2 * c, 2 * c, e) + _attn(2 * c)  # middle
        + 2 * _res(4 * c, 2 * c, e)  # decoder at 7×7: skips of 2c
        + _res(4 * c, 2 * c, e) + _res(3 * c, 2 * c, e)  # 14×14: skips 2c, c
        + _res(3 * c, c, e) + _res(2 * c, c, e)  # 28×28: skips c, c
        + 2 * c + _conv(c, 1, 3)  # output
    )  # fmt: skip
    net = UNet(1, channels=c, channel_mult=(1, 2, 2), num_res_blocks=1)
    assert sum(p.numel() for p in net.parameters()) == expected == 1_067_073


def test_attention_adds_parameters():
    base = sum(p.numel() for p in _small().parameters())
    with_attn = sum(p.numel() for p in _small(attention_resolutions=(14,)).parameters())
    assert with_attn - base == 3 * _attn(32)  # one encoder block and two decoder blocks at 14×14


def test_gradients_reach_every_parameter():
    net = _small(attention_resolutions=(14, 7))
    x = torch.randn(2, 1, 28, 28)
    net(x, torch.tensor([3.0, 700.0])).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_deterministic_given_seed():
    x, c = torch.randn(2, 1, 28, 28), torch.tensor([1.0, 2.0])
    a, b = _small(dropout=0.2).eval(), _small(dropout=0.2).eval()
    assert torch.equal(a(x, c), b(x, c))
    a.train(), b.train()
    torch.manual_seed(1)
    ya = a(x, c)
    torch.manual_seed(1)
    assert torch.equal(ya, b(x, c))
    assert not torch.equal(ya, a(x, c))  # dropout is active in training


def test_rows_do_not_depend_on_the_batch():
    net = _small(attention_resolutions=(14,)).eval()
    x, c = torch.randn(4, 1, 28, 28), torch.rand(4) * 999
    torch.testing.assert_close(net(x, c)[:2], net(x[:2], c[:2]), rtol=1e-4, atol=1e-5)


def test_memory_format_of_input_does_not_matter():
    net = _small(in_channels=3, image_size=8).eval()
    x, c = torch.randn(2, 3, 8, 8), torch.rand(2)
    torch.testing.assert_close(net(x, c), net(x.contiguous(memory_format=torch.channels_last), c))


def test_bf16_autocast_close_to_fp32():
    net = _small().eval()
    x, c = torch.randn(2, 1, 28, 28), torch.rand(2) * 999
    ref = net(x, c)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x, c)
    assert y.dtype == torch.bfloat16
    assert (y.float() - ref).abs().mean() < 0.05 * ref.abs().mean()


def test_bad_attention_resolution_is_a_clear_error():
    with pytest.raises(ErrpropError, match="attention_resolutions"):
        UNet(1, image_size=28, attention_resolutions=(16,))


# --- GroupNorm (+ SiLU) against nn.GroupNorm -------------------------------------------------


@pytest.fixture(params=["kernel", "torch"])
def path(request, monkeypatch):
    """Each GroupNorm test runs through the compiled kernel and through PyTorch's ops."""
    if request.param == "torch":
        monkeypatch.setattr(kernels, "group_norm", lambda: None)
    elif kernels.group_norm() is None:
        if kernels.enabled() and (shutil.which("c++") or shutil.which("g++")):
            pytest.fail("the C++ GroupNorm kernel did not build although a compiler is present")
        pytest.skip("compiled kernel off or no C++ compiler here")
    return request.param


@pytest.mark.parametrize("act", [True, False])
@pytest.mark.parametrize("channels, groups", [(8, 4), (6, 6), (12, 3), (64, 32)])
def test_group_norm_matches_torch(act, channels, groups, path):
    """Against nn.GroupNorm in float64: PyTorch's path in float64 (to its rounding), the kernel
    (float32 and bf16 only) in float32 to float32's rounding, 1e-5."""
    dtype = torch.float64 if path == "torch" else torch.float32
    tol = {} if path == "torch" else {"rtol": 1e-5, "atol": 1e-5}
    torch.manual_seed(0)
    norm = GroupNormAct(channels, groups, act=act).to(dtype)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    ref = nn.GroupNorm(groups, channels).double()
    ref.load_state_dict(norm.state_dict())
    x = torch.randn(3, channels, 5, 4, dtype=dtype) * 3 + 5  # a large mean on purpose
    x_cl = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    x_ref = x.double().requires_grad_()
    w, b = norm.weight.expand(3, -1), norm.bias.expand(3, -1)
    y = group_norm_act(x_cl, groups, w, b, norm.eps, act)
    y_ref = nn.functional.silu(ref(x_ref)) if act else ref(x_ref)
    g = torch.randn_like(y_ref)
    y.backward(g.to(dtype))
    y_ref.backward(g)
    torch.testing.assert_close(y.double(), y_ref, **tol)
    torch.testing.assert_close(x_cl.grad.double(), x_ref.grad, **tol)
    torch.testing.assert_close(norm.weight.grad.double(), ref.weight.grad, **tol)
    torch.testing.assert_close(norm.bias.grad.double(), ref.bias.grad, **tol)


def test_group_norm_kernel_propagates_nan(path):
    """A NaN poisons its own sample's group, and nothing else (errprop stops on NaN losses)."""
    x = torch.randn(2, 8, 3, 3).contiguous(memory_format=torch.channels_last)
    x[0, 1, 2, 2] = float("nan")
    y = group_norm_act(x, 4, torch.ones(2, 8), torch.zeros(2, 8))
    assert torch.isnan(y[0, :2]).all() and not torch.isnan(y[0, 2:]).any()
    assert not torch.isnan(y[1]).any()


def test_second_derivative_is_an_error_not_zeros(path):
    """Neither path builds a graph in its backward (the C++ one cannot, PyTorch's SiLU backward has
    no derivative): create_graph must raise, never give silent zeros."""
    x = torch.randn(2, 8, 3, 3).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = group_norm_act(x, 4, torch.ones(2, 8), torch.zeros(2, 8))
    (g,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|not implemented"):
        g.sum().backward()


def test_kernel_build_failure_falls_back_with_a_warning(monkeypatch, tmp_path):
    import torch.utils.cpp_extension as ext

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(ext, "load", broken)
    monkeypatch.setenv("ERRPROP_CACHE", str(tmp_path))
    with pytest.warns(UserWarning, match="could not be built.*no compiler"):
        assert kernels.group_norm.__wrapped__() is None
    monkeypatch.setenv("ERRPROP_CPU_KERNELS", "0")
    assert kernels.group_norm.__wrapped__() is None


def test_group_norm_gradcheck_with_scale_shift():
    torch.manual_seed(0)
    norm = GroupNormAct(6, 3).double()
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    scale = torch.randn(2, 6, dtype=torch.float64)
    shift = torch.randn(2, 6, dtype=torch.float64)
    inputs = tuple(t.requires_grad_() for t in (x, scale, shift))
    assert torch.autograd.gradcheck(norm, inputs)


def test_group_norm_bf16_keeps_dtype_and_accuracy(path):
    torch.manual_seed(0)
    norm = GroupNormAct(32, 8)
    x = (torch.randn(4, 32, 7, 7) * 2 + 3).contiguous(memory_format=torch.channels_last)
    y = norm(x.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), norm(x), rtol=0.02, atol=0.02)


def _bf16_errors(norm_fn, x, scale, shift, g):
    """Max |bf16 − float64| / max |float64| of y, dx, d weight, d bias: the norm's parameters stay
    float32 and x, scale, shift arrive in bf16, as under autocast."""
    out = {}
    for dtype in (torch.float64, torch.bfloat16):
        weight = torch.ones(x.shape[1], requires_grad=True)
        bias = torch.zeros(x.shape[1], requires_grad=True)
        xi = x.to(dtype).requires_grad_()
        p = [t.double() if dtype == torch.float64 else t for t in (weight, bias)]
        y = norm_fn(xi, p[0], p[1], scale.to(dtype), shift.to(dtype))
        y.backward(g.to(dtype))
        out[dtype] = [t.double() for t in (y.detach(), xi.grad, weight.grad, bias.grad)]
    return [float((b - a).abs().max() / a.abs().max())
            for a, b in zip(out[torch.float64], out[torch.bfloat16], strict=True)]


@pytest.mark.parametrize("groups", [32, 8])
def test_group_norm_bf16_error_is_torchs(groups, path):
    """bf16 forward and backward against float64 on activations whose mean is 15 standard
    deviations, beside PyTorch's own GroupNorm in bf16: errprop's PyTorch path reduces and
    centres in bf16 to be fast; either path's error may be at most 2× the reference's."""
    torch.manual_seed(0)
    x = (torch.randn(4, 32, 7, 7) * 2 + 30).contiguous(memory_format=torch.channels_last)
    scale, shift, g = torch.randn(4, 32) * 0.1, torch.randn(4, 32), torch.randn(4, 32, 7, 7)
    # Both see the same bf16-representable inputs: what is measured is the kernels' rounding.
    x, scale, shift, g = (t.bfloat16().to(torch.float32) for t in (x, scale, shift, g))

    def ours(xi, w, b, s, sh):
        wb = w.to(xi.dtype) if xi.dtype == torch.float64 else w
        bb = b.to(xi.dtype) if xi.dtype == torch.float64 else b
        weight, bias = wb.expand(len(xi), -1) * (1 + s.to(wb.dtype)), bb.expand(len(xi), -1)
        return group_norm_act(xi, groups, weight, bias * (1 + s.to(wb.dtype)) + sh.to(wb.dtype))

    def torchs(xi, w, b, s, sh):
        h = nn.functional.group_norm(xi, groups, w.to(xi.dtype), b.to(xi.dtype))
        return nn.functional.silu(h * (1 + s)[:, :, None, None] + sh[:, :, None, None])

    mine, ref = _bf16_errors(ours, x, scale, shift, g), _bf16_errors(torchs, x, scale, shift, g)
    for name, e, r in zip(("y", "dx", "d weight", "d bias"), mine, ref, strict=True):
        assert e <= 2 * r, f"{name}: bf16 error {e:.3g} of the largest value; PyTorch's {r:.3g}"


def test_groups_must_divide_channels():
    with pytest.raises(ErrpropError, match="groups"):
        GroupNormAct(10, 4)
