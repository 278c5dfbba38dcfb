"""Tiled application of image-to-image functions (pnpdeblur._tiling) and tiled denoiser priors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pnpdeblur as pd
from pnpdeblur._tiling import apply_in_tiles, tile_starts
from pnpdeblur.nets.dncnn import DnCNN
from pnpdeblur.priors.learned import DenoiserPrior


def box_blur(radius: int):
    """A local function of receptive-field radius exactly ``radius``: 3×3 box sums, zero padded."""
    def fn(x):
        c = x.shape[1]
        k = torch.ones(c, 1, 3, 3, dtype=x.dtype)
        for _ in range(radius):
            x = F.conv2d(x, k, padding=1, groups=c) / 9
        return x
    return fn


@pytest.mark.parametrize("size,tile,overlap", [(10, 10, 2), (11, 10, 2), (37, 10, 2), (40, 16, 3), (100, 9, 4),
                                               (23, 7, 0)])
def test_kept_parts_cover_every_index_once_from_some_tile(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0 and starts[-1] == max(size - tile, 0)
    assert all(0 <= s <= max(size - tile, 0) for s in starts)
    assert starts == sorted(set(starts))
    covered = np.zeros(size, int)
    for s in starts:
        end = min(s + tile, size)
        lo = s + overlap if s > 0 else 0
        hi = end - overlap if end < size else size
        covered[lo:hi] += 1
    assert (covered >= 1).all()


def test_tile_starts_step_is_tile_minus_both_margins():
    assert tile_starts(50, 20, 4) == [0, 12, 24, 30]
    assert tile_starts(20, 20, 4) == [0]
    assert tile_starts(5, 20, 4) == [0]


@pytest.mark.parametrize("shape", [(1, 1, 45, 70), (2, 3, 33, 29), (1, 2, 12, 90)])
def test_a_local_function_in_tiles_equals_it_whole_when_the_overlap_covers_its_radius(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fn = box_blur(3)
    whole = fn(x)
    for tile in (16, 21, 32):
        assert torch.allclose(apply_in_tiles(fn, x, tile, 3), whole, rtol=0, atol=1e-14), tile


def test_an_overlap_below_the_radius_is_not_exact():
    x = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    fn = box_blur(3)
    err = (apply_in_tiles(fn, x, 16, 2) - fn(x)).abs().max()
    assert err > 1e-4


def test_pieces_never_exceed_the_tile_and_small_images_go_whole():
    seen = []

    def fn(p):
        seen.append(tuple(p.shape[-2:]))
        return p * 2

    x = torch.rand(1, 1, 50, 31)
    out = apply_in_tiles(fn, x, 20, 4)
    assert torch.equal(out, x * 2)
    assert max(h for h, _ in seen) <= 20 and max(w for _, w in seen) <= 20
    assert len(seen) == len(tile_starts(50, 20, 4)) * len(tile_starts(31, 20, 4))
    seen.clear()
    apply_in_tiles(fn, x, 64, 4)
    assert seen == [(50, 31)]


def test_the_output_channels_and_dtype_are_the_functions():
    x = torch.rand(2, 3, 40, 40)
    out = apply_in_tiles(lambda p: p.sum(1, keepdim=True).double(), x, 16, 2)
    assert out.shape == (2, 1, 40, 40) and out.dtype == torch.float64
    assert torch.allclose(out, x.sum(1, keepdim=True).double())


@pytest.mark.parametrize("tile,overlap,err", [(8, 4, ValueError), (9, -1, ValueError), (True, 1, TypeError),
                                              (16.0, 2, TypeError), (16, 2.0, TypeError)])
def test_bad_tile_arguments(tile, overlap, err):
    with pytest.raises(err, match=r"tile"):
        apply_in_tiles(lambda p: p, torch.rand(1, 1, 40, 40), tile, overlap)


def test_a_function_that_changes_the_size_is_refused():
    with pytest.raises(ValueError, match=r"^fn must keep the spatial size"):
        apply_in_tiles(lambda p: p[..., 1:, :], torch.rand(1, 1, 40, 40), 16, 2)


# ----------------------------------------------------------------------------- denoiser priors
@pytest.mark.parametrize("ensemble", [False, True])
def test_the_shipped_dncnn_prior_in_tiles_equals_it_whole(ensemble):
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(3))
    whole = pd.priors.DnCNNPrior(ensemble=ensemble, tile=None)(x, 0.05)
    tiled = pd.priors.DnCNNPrior(ensemble=ensemble, tile=40)(x, 0.05)
    assert torch.allclose(tiled, whole, rtol=0, atol=1e-5)


def test_dncnn_prior_tiles_by_default_beyond_1024_with_its_depth_as_overlap():
    p = pd.priors.DnCNNPrior()
    assert p.tile == 1024 and p.tile_overlap == p.net.config["depth"]


def test_a_denoiser_prior_with_too_small_an_overlap_differs_from_whole():
    torch.manual_seed(0)
    net = DnCNN(channels=1, features=4, depth=5).double()
    x = torch.rand(1, 1, 48, 48, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    whole = DenoiserPrior(net)(x, 0.1)
    assert torch.allclose(DenoiserPrior(net, tile=20, tile_overlap=5)(x, 0.1), whole, rtol=0, atol=1e-12)
    assert (DenoiserPrior(net, tile=20, tile_overlap=4)(x, 0.1) - whole).abs().max() > 1e-6


@pytest.mark.parametrize("kw,err,msg", [
    (dict(tile=10, tile_overlap=5), ValueError, r"^tile must be > 2·tile_overlap"),
    (dict(tile_overlap=-1), ValueError, r"^tile_overlap must be >= 0"),
    (dict(tile=64.0), TypeError, r"^tile must be an int"),
    (dict(tile=True), TypeError, r"^tile must be an int"),
    (dict(tile_overlap=None), TypeError, r"^tile_overlap must be an int"),
])
def test_denoiser_prior_refuses_bad_tiles(kw, err, msg):
    with pytest.raises(err, match=msg):
        DenoiserPrior(DnCNN(features=4, depth=3), **kw)


def test_drunet_prior_in_tiles_is_close_to_whole_and_tiles_only_when_asked():
    from pnpdeblur.nets.drunet import DRUNet

    torch.manual_seed(0)
    net = DRUNet(channels=3, features=(4, 8, 8, 8), blocks=1).eval()
    x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(5))
    whole = pd.priors.DRUNetPrior(net)(x, 0.05)
    assert pd.priors.DRUNetPrior(net).tile is None
    tiled = pd.priors.DRUNetPrior(net, tile=48, tile_overlap=16)(x, 0.05)
    assert tiled.shape == whole.shape
    assert 0 < (tiled - whole).abs().max() < 0.05


def test_gradients_through_a_tiled_prior_equal_the_whole_images():
    torch.manual_seed(1)
    net = DnCNN(channels=1, features=4, depth=3).double()
    x0 = torch.rand(1, 1, 30, 41, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    grads = []
    for tile in (None, 16):
        x = x0.clone().requires_grad_(True)
        DenoiserPrior(net, tile=tile, tile_overlap=3)(x, 0.1).square().sum().backward()
        grads.append(x.grad)
    assert torch.allclose(grads[1], grads[0], rtol=0, atol=1e-12)
