"""Shared helpers of the network-architecture tests: random weights and a hand-written
transposed convolution, both independent of the modules under test."""
import torch
import torch.nn.functional as F


def randomise_state(net, seed=0, scale=0.3):
    """Random values in every floating-point tensor of ``net.state_dict()``, in place.

    Convolution weights (4-D) ``N(0, 1/fan_in)``; normalisation weights (1-D ``…weight``) and
    running variances ``U(0.5, 1.5)`` (positive, so no layer is switched off); everything else
    (biases, running means, other weights) ``scale · N(0, 1)``. The defaults would hide layers
    (zero biases, BN as the identity), which a functional re-implementation must not get away with.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var") or (name.endswith("weight") and t.ndim == 1):
                t.copy_(0.5 + torch.rand(t.shape, generator=g, dtype=t.dtype))
            elif t.ndim == 4:
                t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) / t[0].numel() ** 0.5)
            else:
                t.copy_(scale * torch.randn(t.shape, generator=g, dtype=t.dtype))
    return net


def transposed_conv2x(x, w, b):
    """Stride-2 transposed convolution (padding k//2, output padding 1) by zero insertion.

    ``x`` (N, Cin, H, W), ``w`` (Cin, Cout, k, k) as ``nn.ConvTranspose2d`` stores it → (N, Cout, 2H, 2W).
    """
    n, c, h, wd = x.shape
    k = w.shape[-1]
    z = x.new_zeros(n, c, 2 * h - 1, 2 * wd - 1)
    z[..., ::2, ::2] = x
    lo = k - 1 - k // 2
    z = F.pad(z, (lo, lo + 1, lo, lo + 1))
    return F.conv2d(z, w.transpose(0, 1).flip(-1, -2), b)
