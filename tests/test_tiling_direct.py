"""Tiled application (pnpdeblur._tiling) and the tile options of the learned priors, directly.

References are independent of the module: window/tile starts and the pixels each tile keeps
are written out by hand or follow from the closed form (start k·step, the last one at
``size - tile``); a local operator built from shifted slices (so every output pixel is the
same sum in the same order whatever the image size) must come back bit-identical; a
non-local function (the piece's mean) shows the seams, whose places are written out by hand.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pnpdeblur._tiling import _kept, apply_in_tiles, balanced_tile, tile_starts, window_starts
from pnpdeblur.nets.dncnn import DnCNN
from pnpdeblur.nets.drunet import DRUNet
from pnpdeblur.priors.drunet import DRUNetPrior
from pnpdeblur.priors.learned import DenoiserPrior, DnCNNPrior

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors (conftest)


def _x(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def box(radius: int):
    """``radius`` passes of a zero-padded 3×3 box mean, made of shifted slices: each output
    pixel is the same float operations in the same order whatever the image size, so tiling
    with an overlap of at least ``radius`` must be bit-identical. Receptive-field radius:
    exactly ``radius``."""
    def fn(x):
        h, w = x.shape[-2:]
        for _ in range(radius):
            p = F.pad(x, (1, 1, 1, 1))
            s = p[..., 0:h, 0:w]
            for dy in range(3):
                for dx in range(3):
                    if dy or dx:
                        s = s + p[..., dy:dy + h, dx:dx + w]
            x = s / 9
        return x
    return fn


def piece_mean(p):
    """A non-local function: every output pixel is the mean of its piece (per image, channel)."""
    return p.mean((-2, -1), keepdim=True).expand_as(p).clone()


def stitched_means(x, starts_y, owner_y, starts_x, owner_x, piece):
    """The tiled ``piece_mean`` written out: pixel (i, j) holds the mean of the
    ``piece = (height, width)`` tile at (starts_y[owner_y[i]], starts_x[owner_x[j]])."""
    out = torch.empty_like(x)
    ph, pw = piece
    for i, oy in enumerate(owner_y):
        for j, ox in enumerate(owner_x):
            y0, x0 = starts_y[oy], starts_x[ox]
            out[..., i, j] = x[..., y0:y0 + ph, x0:x0 + pw].mean((-2, -1))
    return out


# ----------------------------------------------------------------------- window_starts
@pytest.mark.parametrize("size,tile,step,want", [
    (10, 4, 3, [0, 3, 6]),          # lands exactly on size - tile: no repeat
    (11, 4, 3, [0, 3, 6, 7]),       # the last window pulled back to end at size
    (5, 4, 3, [0, 1]),
    (5, 4, 1, [0, 1]),
    (9, 4, 1, [0, 1, 2, 3, 4, 5]),
    (4, 4, 3, [0]),                 # size == tile: one window
    (3, 4, 3, [0]),                 # size < tile: one window at 0
    (1, 1, 1, [0]),
    (2, 1, 1, [0, 1]),
    (100, 30, 25, [0, 25, 50, 70]),
])
def test_window_starts_by_hand(size, tile, step, want):
    got = window_starts(size, tile, step)
    assert type(got) is list and got == want


def test_window_starts_closed_form():
    for size in range(1, 40):
        for tile in range(1, 14):
            for step in range(1, tile + 1):
                s = window_starts(size, tile, step)
                if size <= tile:
                    assert s == [0]
                    continue
                n = math.ceil((size - tile) / step) + 1
                assert len(s) == n, (size, tile, step)
                assert s[:-1] == [k * step for k in range(n - 1)]
                assert s[-1] == size - tile and s[0] == 0
                assert all(0 < b - a <= step for a, b in zip(s, s[1:]))  # increasing, no gap
                covered = set()
                for a in s:
                    covered.update(range(a, a + tile))
                assert covered == set(range(size))  # every index, none outside


# ------------------------------------------------------------------------- tile_starts
@pytest.mark.parametrize("size,tile,overlap,want", [
    (20, 10, 2, [0, 6, 10]),
    (30, 10, 3, [0, 4, 8, 12, 16, 20]),
    (11, 10, 2, [0, 1]),
    (23, 10, 2, [0, 6, 12, 13]),
    (23, 7, 0, [0, 7, 14, 16]),
    (50, 20, 4, [0, 12, 24, 30]),
    (10, 10, 4, [0]),
    (7, 10, 4, [0]),
])
def test_tile_starts_by_hand(size, tile, overlap, want):
    assert tile_starts(size, tile, overlap) == want


def axis_cases(max_size: int):
    """Every (size, tile, overlap) with size < max_size, tile < 16 and tile > 2·overlap."""
    for size in range(1, max_size):
        for tile in range(1, 16):
            for overlap in range(0, (tile + 1) // 2):
                yield size, tile, overlap


def test_tile_starts_closed_form_and_overlaps():
    for size, tile, overlap in axis_cases(50):
        s = tile_starts(size, tile, overlap)
        assert s == window_starts(size, tile, tile - 2 * overlap)
        assert s[0] == 0 and s[-1] == max(size - tile, 0)
        # neighbours share at least 2·overlap pixels: each cut's margins are inside both
        assert all(a + tile - b >= 2 * overlap for a, b in zip(s, s[1:]))
        # the kept parts (margins of `overlap` dropped at cuts, never at the borders) cover the axis
        covered = [False] * size
        for a in s:
            end = min(a + tile, size)
            for i in range(a + overlap if a else 0, end - overlap if end < size else size):
                covered[i] = True
        assert all(covered), (size, tile, overlap)


# ------------------------------------------------------------------------- balanced_tile
@pytest.mark.parametrize("size,tile,overlap,want", [
    (1280, 1024, 7, 647),  # a 720p row for the DnCNN prior: 2 pieces of 647, not 2 of 1024
    (40, 16, 3, 15),       # 4 pieces either way: 4·(15 - 6) + 6 = 42 >= 40, 4·(14 - 6) + 6 = 38 < 40
    (29, 12, 2, 11),
    (17, 16, 2, 11),       # one pixel more than the tile: 2 pieces of 11, not 16
    (23, 7, 0, 6),
    (31, 7, 0, 7),         # 5 pieces are needed; 5·6 = 30 < 31, so 7 stays
    (20, 10, 2, 10),       # already balanced
    (13, 5, 2, 5),         # the smallest tile for the overlap
    (16, 16, 4, 16),       # no longer than the tile: one piece, the whole axis
    (9, 12, 3, 9),
])
def test_balanced_tile_by_hand(size, tile, overlap, want):
    assert balanced_tile(size, tile, overlap) == want


def test_balanced_tile_is_the_shortest_piece_with_as_few_pieces_as_the_tile():
    for size, tile, overlap in axis_cases(60):
        p = balanced_tile(size, tile, overlap)
        if size <= tile:
            assert p == size
            continue
        n = len(tile_starts(size, tile, overlap))
        assert 2 * overlap < p <= tile
        assert len(tile_starts(size, p, overlap)) == n
        # one pixel shorter needs more pieces (or cannot cover the axis at all)
        if p - 1 > 2 * overlap:
            assert len(tile_starts(size, p - 1, overlap)) > n


@pytest.mark.parametrize("start,tile,size,overlap,want", [
    (0, 10, 20, 2, (0, 8)),     # first: its own left border is kept
    (6, 10, 20, 2, (8, 14)),    # inner: margins dropped at both cuts
    (10, 10, 20, 2, (12, 20)),  # last: its right border is kept
    (0, 10, 8, 2, (0, 8)),      # longer than the image: all of it
    (1, 10, 11, 2, (3, 11)),    # the last tile one pixel after the first
    (3, 5, 20, 0, (3, 8)),      # no margins
])
def test_kept_part_by_hand(start, tile, size, overlap, want):
    assert _kept(start, tile, size, overlap) == want


# ----------------------------------------------------------------------- apply_in_tiles
@pytest.mark.parametrize("shape,tile,overlap,radius,piece,n", [
    ((1, 1, 40, 40), 16, 3, 3, (15, 15), 16),
    ((2, 3, 33, 29), 12, 2, 2, (12, 11), 16),
    ((1, 1, 17, 17), 16, 2, 2, (11, 11), 4),     # one pixel more than the tile: 2 × 11, not 2 × 16
    ((1, 2, 9, 40), 12, 3, 2, (9, 12), 6),       # shorter than the tile, wider: tiles along x only
    ((1, 1, 40, 12), 12, 3, 3, (12, 12), 6),     # exactly one tile wide, taller: tiles along y only
    ((1, 1, 23, 31), 7, 0, 0, (6, 7), 20),       # no overlap, a pointwise function
    ((1, 1, 13, 13), 5, 2, 2, (5, 5), 81),       # the smallest tile for the overlap: kept parts 1 px
])
def test_a_local_function_in_tiles_is_bit_identical_to_it_whole(shape, tile, overlap, radius, piece, n):
    x = _x(*shape)
    fn = box(radius) if radius else (lambda p: p * p + 1)
    calls = []

    def rec(p):
        calls.append(tuple(p.shape[-2:]))
        return fn(p)

    out = apply_in_tiles(rec, x, tile, overlap)
    assert torch.equal(out, fn(x))
    # as many pieces as tile-long ones would need, all of the balanced size
    h, w = shape[-2:]
    assert len(tile_starts(h, tile, overlap)) * len(tile_starts(w, tile, overlap)) == n
    assert calls == [piece] * n


def test_an_overlap_below_the_radius_breaks_exactness_at_the_cuts_only():
    x = _x(1, 1, 20, 8, seed=1)
    fn = box(3)
    diff = (apply_in_tiles(fn, x, 10, 2) - fn(x)).abs()[0, 0]
    # rows: tiles [0, 10), [6, 16), [10, 20) keep [0, 8), [8, 12), [12, 20); a pixel is wrong
    # where its 3-px neighbourhood leaves its tile: rows 7, 8 and 12
    bad_rows = set(torch.nonzero(diff.amax(1) > 0).flatten().tolist())
    assert bad_rows == {7, 8, 12}
    assert diff.max() > 1e-6


@pytest.mark.parametrize("shape,tile,overlap,piece,starts_y,owner_y,starts_x,owner_x", [
    # 20 px, tile 10, overlap 2: pieces of 10 at 0, 6, 10; kept [0, 8) [8, 14) [12, 20), the last wins
    ((1, 1, 20, 20), 10, 2, (10, 10), [0, 6, 10], [0] * 8 + [1] * 4 + [2] * 8, [0, 6, 10],
     [0] * 8 + [1] * 4 + [2] * 8),
    # 11 px: 2 pieces of 8 at 0, 3; kept [0, 6) [5, 11). 23 px: 4 pieces of 9 at 0, 5, 10, 14;
    # kept [0, 7) [7, 12) [12, 17) [16, 23)
    ((2, 3, 11, 23), 10, 2, (8, 9), [0, 3], [0] * 5 + [1] * 6, [0, 5, 10, 14],
     [0] * 7 + [1] * 5 + [2] * 4 + [3] * 7),
    # no margins: 16 px, tile 5: 4 pieces of 4 at 0, 4, 8, 12, each kept whole
    ((1, 1, 16, 5), 5, 0, (4, 5), [0, 4, 8, 12], [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4, [0], [0] * 5),
])
def test_a_non_local_function_shows_each_tiles_own_result(shape, tile, overlap, piece, starts_y, owner_y,
                                                          starts_x, owner_x):
    x = _x(*shape, seed=2)
    out = apply_in_tiles(piece_mean, x, tile, overlap)
    want = stitched_means(x, starts_y, owner_y, starts_x, owner_x, piece)
    assert torch.equal(out, want)
    assert not torch.allclose(out, piece_mean(x))  # really tiled: the seams show


def test_pieces_are_cut_at_the_starts_in_row_major_order():
    h, w = 20, 23
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    x = torch.stack((yy, xx))[None]  # channel 0: row index, channel 1: column index
    seen = []

    def fn(p):
        seen.append((int(p[0, 0, 0, 0]), int(p[0, 1, 0, 0]), tuple(p.shape)))
        return p

    out = apply_in_tiles(fn, x, 10, 2)
    assert torch.equal(out, x)
    # rows: 3 pieces of 10 at 0, 6, 10; columns: 4 pieces of 9 at 0, 5, 10, 14
    assert seen == [(y0, x0, (1, 2, 10, 9)) for y0 in (0, 6, 10) for x0 in (0, 5, 10, 14)]


@pytest.mark.parametrize("h,w", [(16, 16), (5, 16), (16, 3), (1, 1)])
def test_an_image_no_larger_than_the_tile_goes_whole_and_comes_back_as_is(h, w):
    x = _x(2, 1, h, w)
    result = torch.zeros(2, 4, h, w)
    seen = []

    def fn(p):
        seen.append(p)
        return result

    assert apply_in_tiles(fn, x, 16, 7) is result
    assert len(seen) == 1 and seen[0] is x


def test_output_follows_the_functions_channels_and_dtype_in_tiles():
    x = _x(2, 3, 21, 18).float()
    out = apply_in_tiles(lambda p: box(1)(p.double()).sum(1, keepdim=True), x, 8, 1)
    assert out.shape == (2, 1, 21, 18) and out.dtype == torch.float64
    assert torch.equal(out, box(1)(x.double()).sum(1, keepdim=True))


@pytest.mark.parametrize("tile,overlap,msg", [
    (16.0, 2, r"^tile and overlap must be ints, got float and int$"),
    (16, 2.0, r"^tile and overlap must be ints, got int and float$"),
    (True, 0, r"^tile and overlap must be ints, got bool and int$"),
    (16, False, r"^tile and overlap must be ints, got int and bool$"),
    (None, 2, r"^tile and overlap must be ints, got NoneType and int$"),
])
def test_non_integer_tiles_are_a_type_error(tile, overlap, msg):
    with pytest.raises(TypeError, match=msg):
        apply_in_tiles(piece_mean, _x(1, 1, 40, 40), tile, overlap)


@pytest.mark.parametrize("tile,overlap", [(8, 4), (7, 4), (0, 0), (-3, 0), (16, -1), (3, -1)])
def test_tiles_no_larger_than_both_margins_or_negative_overlaps_are_a_value_error(tile, overlap):
    with pytest.raises(ValueError, match=rf"^tile must be > 2·overlap and overlap >= 0, got tile={tile}, "
                                         rf"overlap={overlap}$"):
        apply_in_tiles(piece_mean, _x(1, 1, 40, 40), tile, overlap)


def test_the_boundaries_of_the_tile_arguments_are_accepted():
    x = _x(1, 1, 12, 12)
    assert torch.equal(apply_in_tiles(box(4), x, 9, 4), box(4)(x))  # tile = 2·overlap + 1
    assert torch.equal(apply_in_tiles(lambda p: 2 * p, x, 1, 0), 2 * x)  # overlap 0, 1-px tiles


def test_a_function_that_changes_the_size_is_refused_with_both_sizes():
    with pytest.raises(ValueError, match=r"^fn must keep the spatial size, got \(15, 16\) for a \(16, 16\) piece$"):
        apply_in_tiles(lambda p: p[..., 1:, :], _x(1, 1, 40, 40), 16, 2)
    with pytest.raises(ValueError, match=r"^fn must keep the spatial size, got \(16, 32\) for a \(16, 16\) piece$"):
        apply_in_tiles(lambda p: torch.cat((p, p), -1), _x(1, 1, 40, 40), 16, 2)


# -------------------------------------------------------------------- DenoiserPrior tiles
def _mean_net(z, sigma):
    """A plain callable denoiser whose output is σ times each piece's mean: non-local."""
    return sigma * piece_mean(z)


def test_denoiser_prior_tiles_pieces_with_the_overlap_and_sigma():
    x = _x(1, 2, 20, 11, seed=3)
    out = DenoiserPrior(_mean_net, tile=10, tile_overlap=2)(x, 0.5)
    # rows: 3 pieces of 10 at [0, 6, 10]; columns: 2 pieces of 8 at [0, 3], kept [0, 6) [5, 11)
    want = 0.5 * stitched_means(x, [0, 6, 10], [0] * 8 + [1] * 4 + [2] * 8, [0, 3], [0] * 5 + [1] * 6, (10, 8))
    torch.testing.assert_close(out, want, rtol=0, atol=1e-15)
    whole = DenoiserPrior(_mean_net)(x, 0.5)  # default: whole images
    torch.testing.assert_close(whole, _mean_net(x, 0.5), rtol=0, atol=1e-15)


def test_denoiser_prior_default_overlap_is_32():
    p = DenoiserPrior(_mean_net)
    assert p.tile is None and p.tile_overlap == 32
    assert DenoiserPrior(_mean_net, tile=65).tile == 65  # 65 > 2·32
    with pytest.raises(ValueError, match=r"^tile must be > 2·tile_overlap = 64, got 64$"):
        DenoiserPrior(_mean_net, tile=64)


@pytest.mark.parametrize("kw,err,msg", [
    (dict(tile=64.0), TypeError, r"^tile must be an int, got float$"),
    (dict(tile=True), TypeError, r"^tile must be an int, got bool$"),
    (dict(tile="64"), TypeError, r"^tile must be an int, got str$"),
    (dict(tile=64, tile_overlap=2.5), TypeError, r"^tile_overlap must be an int, got float$"),
    (dict(tile_overlap=None), TypeError, r"^tile_overlap must be an int, got NoneType$"),
    (dict(tile_overlap=1.0), TypeError, r"^tile_overlap must be an int, got float$"),
    (dict(tile=64, tile_overlap=False), TypeError, r"^tile_overlap must be an int, got bool$"),
    (dict(tile_overlap=-1), ValueError, r"^tile_overlap must be >= 0, got -1$"),
    (dict(tile=10, tile_overlap=5), ValueError, r"^tile must be > 2·tile_overlap = 10, got 10$"),
    (dict(tile=3, tile_overlap=2), ValueError, r"^tile must be > 2·tile_overlap = 4, got 3$"),
    (dict(tile=0, tile_overlap=0), ValueError, r"^tile must be > 2·tile_overlap = 0, got 0$"),
])
def test_denoiser_prior_tile_errors_name_the_argument(kw, err, msg):
    with pytest.raises(err, match=msg):
        DenoiserPrior(_mean_net, **kw)


def test_denoiser_prior_tile_boundaries_are_accepted():
    p = DenoiserPrior(_mean_net, tile=11, tile_overlap=5)
    assert (p.tile, p.tile_overlap) == (11, 5)
    q = DenoiserPrior(_mean_net, tile=1, tile_overlap=0)
    x = _x(1, 1, 3, 4)
    torch.testing.assert_close(q(x, 0.5), 0.5 * x, rtol=0, atol=0)  # 1-px pieces: each its own mean
    assert DenoiserPrior(_mean_net, tile_overlap=0).tile_overlap == 0


class _LayoutSpy(torch.nn.Module):
    """Records every input's shape and whether it is channels-last; a local 3×3 operator on
    two channels (with one channel every contiguous tensor also counts as channels-last)."""

    channels_last_safe = True

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(9),
                                               dtype=torch.float64))
        self.calls = []

    def forward(self, z, sigma):
        self.calls.append((tuple(z.shape), z.is_contiguous(memory_format=torch.channels_last)))
        return F.conv2d(z, self.w, padding=1, groups=2) * sigma


def test_tiles_reach_a_channels_last_network_in_its_layout():
    net = _LayoutSpy()
    x = _x(1, 2, 20, 20, seed=4)
    out = DenoiserPrior(net, tile=10, tile_overlap=1)(x, 0.5)
    # 8-px pieces (3 cover 20 px with overlap 1, as 10-px ones would) at [0, 6, 12] × [0, 6, 12],
    # each made channels-last (a slice of a channels-last image is not)
    assert net.calls == [((1, 2, 8, 8), True)] * 9
    assert out.is_contiguous()
    whole = F.conv2d(x, net.w.detach(), padding=1, groups=2) * 0.5
    torch.testing.assert_close(out, whole, rtol=0, atol=1e-14)


def test_an_image_within_the_tile_is_denoised_whole():
    net = _LayoutSpy()
    DenoiserPrior(net, tile=20, tile_overlap=3)(_x(1, 2, 20, 13), 0.5)
    assert net.calls == [((1, 2, 20, 13), True)]


def test_tiles_with_the_flip_ensemble_flip_each_piece():
    # a net that adds the row index is not flip-equivariant: over the four flips a piece of
    # height h gets rows + (h - 1 - rows) on average, (h - 1) / 2 = 4.5 for 10-px pieces (9.5 whole)
    def net(z, sigma):
        rows = torch.arange(z.shape[-2], dtype=z.dtype)[:, None]
        return z + rows

    x = _x(1, 1, 20, 20, seed=5)
    out = DenoiserPrior(net, ensemble=True, tile=10, tile_overlap=2)(x, 0.1)
    torch.testing.assert_close(out, x + 4.5, rtol=0, atol=1e-14)


# ------------------------------------------------------------------------------ DnCNNPrior
def _tiny_dncnn(tmp_path, depth=3):
    torch.manual_seed(0)
    net = DnCNN(channels=1, features=4, depth=depth)
    return net, net.save(tmp_path / "d.safetensors")


def test_dncnn_prior_tiles_at_1024_by_default_with_its_depth_as_overlap(tmp_path):
    net, path = _tiny_dncnn(tmp_path, depth=3)
    p = DnCNNPrior(path)
    assert (p.tile, p.tile_overlap) == (1024, 3)
    assert DnCNNPrior(path, tile=None).tile is None
    # the overlap is the depth: a tile of 2·3 is refused, 7 accepted
    with pytest.raises(ValueError, match=r"^tile must be > 2·tile_overlap = 6, got 6$"):
        DnCNNPrior(path, tile=6)
    assert DnCNNPrior(path, tile=7).tile == 7


def test_dncnn_prior_in_tiles_equals_it_whole_and_really_tiles(tmp_path):
    net, path = _tiny_dncnn(tmp_path, depth=3)
    x = torch.rand(1, 1, 30, 26, generator=torch.Generator().manual_seed(6))
    calls = []
    p = DnCNNPrior(path, ensemble=False, tile=12)
    p.net.register_forward_pre_hook(lambda m, args: calls.append(tuple(args[0].shape)))
    out = p(x, 0.1)
    with torch.no_grad():
        want = net(x, 0.1)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-6)
    # rows: 4 pieces of 12 at [0, 6, 12, 18]; columns: 4 pieces of 11 at [0, 5, 10, 15]
    assert calls == [(1, 1, 12, 11)] * 16
    calls.clear()
    q = DnCNNPrior(path, ensemble=False)  # 1024: whole
    q.net.register_forward_pre_hook(lambda m, args: calls.append(tuple(args[0].shape)))
    q(x, 0.1)
    assert calls == [(1, 1, 30, 26)]


# ----------------------------------------------------------------------------- DRUNetPrior
def _drunet(channels=3):
    torch.manual_seed(0)
    net = DRUNet(channels=channels, features=(2, 3, 4, 5), blocks=1, residual=True).double()
    with torch.no_grad():  # random everywhere: a residual DRUNet starts as the identity
        for q in net.parameters():
            q.copy_(0.4 * torch.randn(q.shape, dtype=q.dtype))
    return net.eval()


def test_drunet_prior_whole_by_default_with_a_64_px_overlap():
    net = _drunet()
    p = DRUNetPrior(net)
    assert p.tile is None and p.tile_overlap == 64
    with pytest.raises(ValueError, match=r"^tile must be > 2·tile_overlap = 128, got 128$"):
        DRUNetPrior(net, tile=128)
    assert DRUNetPrior(net, tile=129).tile == 129


def test_drunet_prior_tiles_are_the_network_on_each_piece_stitched():
    net = _drunet()
    x = _x(1, 3, 40, 24, seed=7)
    p = DRUNetPrior(net, tile=24, tile_overlap=4)
    assert (p.tile, p.tile_overlap) == (24, 4)
    out = p(x, 0.1)
    with torch.no_grad():
        # rows: starts [0, 16] (step 16), kept [0, 20) and [20, 40); columns: one tile
        top, bottom = net(x[..., 0:24, :], 0.1), net(x[..., 16:40, :], 0.1)
        whole = net(x, 0.1)
    want = torch.cat((top[..., 0:20, :], bottom[..., 4:24, :]), -2)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
    assert (out - whole).abs().max() > 1e-6  # a U-Net: the tiled result is an approximation


def test_drunet_prior_tiles_grey_images_at_sigma_sqrt3():
    net = _drunet()
    x = _x(1, 1, 30, 16, seed=8)
    out = DRUNetPrior(net, tile=16, tile_overlap=2)(x, 0.1)
    s = 0.1 * math.sqrt(3.0)
    with torch.no_grad():
        # rows: 3 pieces (as 16-px ones would need) of 13 at [0, 9, 17]; kept [0, 11), [11, 20),
        # [19, 30) (the last wins)
        r = x.expand(-1, 3, -1, -1)
        a, b, c = net(r[..., 0:13, :], s), net(r[..., 9:22, :], s), net(r[..., 17:30, :], s)
    want = torch.cat((a[..., 0:11, :], b[..., 2:10, :], c[..., 2:13, :]), -2).mean(1, keepdim=True)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)


# ------------------------------------------------------- devices, dtypes (survivors of the run)
class _Recorder(torch.nn.Module):
    """A float64 network that records its input's dtype and device and returns zeros on the CPU
    (so nothing has to come back from the meta device, which stands in for a GPU here)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.seen = []

    def forward(self, x, sigma):
        self.seen.append((x.dtype, x.device.type))
        return torch.zeros(x.shape, dtype=x.dtype)


def test_following_an_input_to_a_new_device_still_casts_it_to_the_networks_dtype():
    net = _Recorder()
    DenoiserPrior(net)._denoise(torch.rand(1, 1, 8, 8, device="meta"), 0.1, None)  # float32 input
    assert net.w.device.type == "meta"  # followed the input
    assert net.seen == [(torch.float64, "meta")]


def test_a_pinned_device_gets_the_input():
    net = _Recorder()
    prior = DenoiserPrior(net, device="meta")
    out = prior._denoise(torch.rand(1, 1, 8, 8), 0.1, None)
    assert net.seen == [(torch.float64, "meta")]  # moved to the pinned device (and the net's dtype)
    assert out.device.type == "cpu" and out.dtype == torch.float32  # back to the input's


def test_the_doubled_angle_map_keeps_sub_pixel_lengths():
    # (u, v) = L (cos θ, sin θ) ↦ L (cos 2θ, sin 2θ) = ((u² − v²) / L, 2uv / L): closed form at
    # L = 0.5 and 0.05 (a floor on L meant only to avoid 0/0 must not touch them), and 0 ↦ 0
    from pnpdeblur.estimation.learned import _from_doubled, _to_doubled

    f = torch.tensor([[0.3, 0.4], [0.03, -0.04], [0.0, 0.0]], dtype=torch.float64).T.reshape(1, 2, 3, 1)
    want = torch.tensor([[-0.14, 0.48], [-0.014, -0.048], [0.0, 0.0]], dtype=torch.float64).T.reshape(1, 2, 3, 1)
    d = _to_doubled(f)
    torch.testing.assert_close(d, want, rtol=0, atol=1e-15)
    back = _from_doubled(d)
    torch.testing.assert_close(back[:, :, :2], f[:, :, :2], rtol=0, atol=1e-15)  # u ≥ 0 already
    assert torch.equal(back[:, :, 2], torch.zeros(1, 2, 1))


@pytest.mark.parametrize("step", [0, -1, -5])
def test_window_starts_refuses_a_step_below_one(step):
    # a negative step made range() empty: the windows would leave the axis uncovered
    with pytest.raises(ValueError, match=rf"^step must be >= 1, got {step}$"):
        window_starts(20, 8, step)
    assert window_starts(20, 8, 1)[:3] == [0, 1, 2]
