"""Direct tests of pd.estimate_flow (pnpdeblur.estimation.learned) with stand-in networks:
tiles against the untiled answer, the blend's closed form, the doubled-angle maps, scale,
channels, modes and argument checks."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _flow_standins import StandInSEN
from pnpdeblur.data import canonicalize_flow
from pnpdeblur.estimation import learned
from pnpdeblur.estimation.learned import _from_doubled, _ramp, _starts, _to_doubled


def estimate_flow(*args, **kwargs):
    """The function under test with one network pass per tile (the ensemble: test_flow_ensemble.py)."""
    kwargs.setdefault("ensemble", False)
    return learned.estimate_flow(*args, **kwargs)


# -- the helpers, by hand --------------------------------------------------------------------------

def test_doubled_angle_maps_closed_form():
    # (u, v) = L (cos θ, sin θ) -> L (cos 2θ, sin 2θ)
    f = torch.tensor([[3.0, 4.0], [-3.0, -4.0], [0.0, 2.0], [5.0, 0.0], [0.0, 0.0]]).T.reshape(1, 2, 5, 1)
    d = _to_doubled(f)
    want = torch.tensor([[-7 / 5, 24 / 5], [-7 / 5, 24 / 5], [-2.0, 0.0], [5.0, 0.0], [0.0, 0.0]]).T.reshape(1, 2, 5, 1)
    assert torch.allclose(d, want, atol=1e-6)
    back = _from_doubled(d)
    # canonical representative: u >= 0 (the vertical (0, 2) comes back as (0, ±2), length kept)
    assert torch.allclose(back[0, :, :2, 0], torch.tensor([[3.0, 3.0], [4.0, 4.0]]), atol=1e-5)
    assert torch.allclose(back[0, :, 3, 0], torch.tensor([5.0, 0.0]), atol=1e-6)
    assert float(back[0, 0, 2, 0]) == pytest.approx(0.0, abs=1e-6)
    assert abs(float(back[0, 1, 2, 0])) == pytest.approx(2.0, abs=1e-6)
    assert torch.equal(back[0, :, 4, 0], torch.zeros(2))
    # a length-only doubled vector (a, 0), a > 0, decodes to (a, 0); (0, b), b > 0, to 45°
    assert torch.allclose(_from_doubled(torch.tensor([0.0, 8.0]).view(1, 2, 1, 1)).flatten(),
                          torch.full((2,), 8 / 2 ** 0.5), atol=1e-5)


def test_ramp_by_hand():
    third = torch.tensor([1 / 3, 2 / 3])
    assert torch.equal(_ramp(5, 2, True, True, "cpu"), torch.ones(5))
    assert torch.allclose(_ramp(6, 2, True, False, "cpu"), torch.cat([torch.ones(4), third.flip(0)]))
    assert torch.allclose(_ramp(6, 2, False, True, "cpu"), torch.cat([third, torch.ones(4)]))
    assert torch.allclose(_ramp(7, 2, False, False, "cpu"), torch.cat([third, torch.ones(3), third.flip(0)]))
    assert torch.equal(_ramp(4, 0, False, False, "cpu"), torch.ones(4))
    assert torch.allclose(_ramp(4, 1, False, False, "cpu"), torch.tensor([0.5, 1.0, 1.0, 0.5]))


def test_starts_by_hand():
    assert _starts(10, 10, 6) == [0]
    assert _starts(9, 10, 6) == [0]
    assert _starts(11, 10, 6) == [0, 1]
    assert _starts(16, 10, 6) == [0, 6]            # the last start already ends at the border
    assert _starts(17, 10, 6) == [0, 6, 7]
    assert _starts(200, 96, 64) == [0, 64, 104]


# -- tiles --------------------------------------------------------------------------------------

def _conv_net():
    """Stand-in whose flow is a fixed 3×3 convolution of the image: a local function of the input."""
    torch.manual_seed(3)
    weight = torch.randn(2, 3, 3, 3)

    def fn(x):
        return canonicalize_flow(10 * F.conv2d(x, weight.to(x.dtype), padding=1))

    return StandInSEN(fn=fn)


@pytest.mark.parametrize("shape", [(40, 72), (72, 40), (72, 72), (40, 33)])
def test_tiles_agree_with_the_untiled_flow_away_from_the_seams(shape):
    img = np.random.default_rng(0).random(shape + (3,)).astype(np.float32)
    m = _conv_net()
    whole = estimate_flow(img, m, tile=400, overlap=8)
    tiled = estimate_flow(img, m, tile=32, overlap=8)
    assert all(c[0][-2] <= 32 and c[0][-1] <= 32 for c in m.calls[1:]) and len(m.calls) > 2
    assert tiled.shape == whole.shape == (2,) + shape
    # tiles overlap by 8 px: a tile's own border pixel (zero padded) differs from the untiled
    # answer, so compare where every tile covering the pixel sees its 3×3 neighbourhood
    h, w = shape
    ok = np.ones(shape, bool)
    for size, axis in ((h, 0), (w, 1)):
        p = _piece(size, 32, 8)
        for s in _starts(size, p, p - 8):
            for edge in (s, s + p - 1):
                if 0 < edge < size - 1:
                    idx = [slice(None), slice(None)]
                    idx[axis] = edge
                    ok[tuple(idx)] = False
    np.testing.assert_allclose(tiled[:, ok], whole[:, ok], atol=2e-4)
    assert (~ok).sum() > 0


def test_tile_blend_is_the_linear_ramp_in_the_overlap():
    """Tiles report different constant lengths; across the overlap the length goes linearly from
    one to the other (doubled-angle blend of (L, 0) is the blend of L), as the ramp weights say."""
    w, tile, overlap = 56, 32, 8  # starts 0 and 24: one overlap of 8 px, columns 24..31

    def by_tile(x):
        f = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        f[:, 0] = 2.0 + 10 * float(x[0, 0, 0, 0])  # the image holds its column index / 100
        return f

    img = np.broadcast_to((np.arange(w) / 100.0)[None, :, None], (16, w, 3)).astype(np.float32)
    f = estimate_flow(img, StandInSEN(fn=by_tile), tile=tile, overlap=overlap)
    a, b = 2.0, 2.0 + 10 * 0.24
    k = np.arange(1, overlap + 1)
    want = np.concatenate([np.full(24, a), a + (b - a) * k / (overlap + 1), np.full(w - 32, b)])
    np.testing.assert_allclose(f[0], np.broadcast_to(want, (16, w)), atol=1e-5)
    np.testing.assert_allclose(f[1], 0.0, atol=1e-5)
    # the same along rows (the image transposed: the overlap runs down the columns)
    f_t = estimate_flow(np.ascontiguousarray(img.transpose(1, 0, 2)), StandInSEN(fn=by_tile), tile=tile,
                        overlap=overlap)
    np.testing.assert_allclose(f_t[0], np.broadcast_to(want[:, None], (w, 16)), atol=1e-5)


def test_tiles_are_the_given_size_and_cover_a_non_square_image():
    m = StandInSEN((4.0, 3.0))
    f = estimate_flow(np.zeros((50, 90, 3), np.float32), m, tile=40, overlap=8)
    shapes = [c[0] for c in m.calls]
    # rows: 2 pieces of 40 would be needed, 2 of 32 do (starts 0, 18); columns: 3 pieces of 40 (0, 32, 50)
    assert shapes == [(1, 3, 32, 40)] * 6
    np.testing.assert_allclose(f, np.broadcast_to(np.array([4.0, 3.0])[:, None, None], (2, 50, 90)), atol=1e-5)
    # one side smaller than the tile: that side is one piece of its full length
    m2 = StandInSEN((4.0, 3.0))
    estimate_flow(np.zeros((20, 90, 3), np.float32), m2, tile=40, overlap=8)
    assert [c[0] for c in m2.calls] == [(1, 3, 20, 40)] * 3
    m3 = StandInSEN((4.0, 3.0))
    estimate_flow(np.zeros((90, 20, 3), np.float32), m3, tile=40, overlap=8)
    assert [c[0] for c in m3.calls] == [(1, 3, 40, 20)] * 3


def test_an_image_no_larger_than_a_tile_is_one_pass_returned_as_is():
    torch.manual_seed(0)
    raw = canonicalize_flow(torch.randn(1, 2, 32, 24) * 7)
    m = StandInSEN(fn=lambda x: raw.clone())
    f = estimate_flow(torch.zeros(3, 32, 24), m, tile=32, overlap=8)
    assert len(m.calls) == 1 and torch.equal(f, raw[0])  # no doubled-angle round trip


# -- scale --------------------------------------------------------------------------------------

def test_scale_area_downsamples_and_brings_the_flow_back_bilinearly():
    img = np.random.default_rng(0).random((48, 30, 3)).astype(np.float32)

    def column_ramp(x):  # u = column index + 1 on the small grid (> 0: canonical), v = 0
        f = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        f[:, 0] = torch.arange(1, x.shape[-1] + 1, dtype=torch.float32)
        return f

    m = StandInSEN(fn=column_ramp)
    f = estimate_flow(img, m, scale=1 / 3)
    # the network saw the 3×3 block means (area interpolation), 16×10
    blocks = img.reshape(16, 3, 10, 3, 3).mean((1, 3)).transpose(2, 0, 1)
    assert m.calls[0][0] == (1, 3, 16, 10)
    np.testing.assert_allclose(m.inputs[0][0].numpy(), blocks, atol=1e-6)
    # bilinear, align_corners=False: output column j samples the small grid at (j + 0.5)/3 - 0.5,
    # clamped to [0, 9]; the ramp there is that coordinate + 1; lengths are divided by the scale
    src = np.clip((np.arange(30) + 0.5) / 3 - 0.5, 0, 9)
    np.testing.assert_allclose(f[0], np.broadcast_to(3 * (src + 1), (48, 30)), rtol=1e-5)
    np.testing.assert_allclose(f[1], 0.0, atol=1e-5)
    assert f.shape == (2, 48, 30)


def test_scale_rounds_the_small_size_and_keeps_at_least_one_pixel():
    m = StandInSEN((1.0, 0.0))
    f = estimate_flow(np.zeros((20, 30, 3), np.float32), m, scale=0.01)
    assert m.calls[0][0] == (1, 3, 1, 1)
    np.testing.assert_allclose(f[0], 100.0, rtol=1e-5)
    m2 = StandInSEN((1.0, 0.0))
    estimate_flow(np.zeros((25, 35, 3), np.float32), m2, scale=0.5)
    assert m2.calls[0][0] == (1, 3, round(12.5), round(17.5))  # Python's round: (12, 18)
    m3 = StandInSEN((2.0, 0.0))
    f3 = estimate_flow(np.zeros((20, 30, 3), np.float32), m3, scale=1)
    assert m3.calls[0][0] == (1, 3, 20, 30) and np.allclose(f3[0], 2.0)


# -- channels, modes, types -----------------------------------------------------------------------

def test_grey_input_is_replicated_for_an_rgb_model_and_kept_for_a_grey_one():
    grey = np.random.default_rng(0).random((16, 24)).astype(np.float32)
    m = StandInSEN()
    estimate_flow(grey, m)
    assert m.calls[0][0] == (1, 3, 16, 24)
    assert all(torch.equal(m.inputs[0][0, c], torch.from_numpy(grey)) for c in range(3))
    g = StandInSEN(in_channels=1)
    estimate_flow(grey, g)
    assert g.calls[0][0] == (1, 1, 16, 24) and torch.equal(g.inputs[0][0, 0], torch.from_numpy(grey))
    with pytest.raises(ValueError, match=r"^image has 3 channels, the model takes 1$"):
        estimate_flow(np.zeros((16, 24, 3), np.float32), g)


def test_the_network_runs_in_eval_mode_and_its_mode_is_restored():
    m = StandInSEN().train()
    estimate_flow(np.zeros((16, 16, 3), np.float32), m)
    assert m.calls[0][1] is False and m.training is True
    m.eval()
    estimate_flow(np.zeros((16, 16, 3), np.float32), m)
    assert m.calls[1][1] is False and m.training is False

    def boom(x):
        raise RuntimeError("boom")

    bad = StandInSEN(fn=boom).train()
    with pytest.raises(RuntimeError, match="boom"):
        estimate_flow(np.zeros((16, 16, 3), np.float32), bad)
    assert bad.training is True  # restored on error too


def _conv_weight(m):
    return next(p for p in m.parameters() if p.ndim == 4)


def _is_channels_last(w):
    return w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


def test_the_network_runs_channels_last_on_the_cpu_and_its_layout_is_restored():
    seen = []

    def record(x):
        seen.append(_is_channels_last(_conv_weight(m)))
        return torch.zeros(x.shape[0], 2, *x.shape[-2:])

    m = StandInSEN(fn=record)
    assert not _is_channels_last(_conv_weight(m))
    estimate_flow(np.zeros((16, 16, 3), np.float32), m)
    assert seen == [True]  # channels-last while it ran
    assert _conv_weight(m).is_contiguous()  # the usual layout again afterwards
    # a model the caller keeps channels-last stays so
    m.to(memory_format=torch.channels_last)
    estimate_flow(np.zeros((16, 16, 3), np.float32), m)
    assert seen == [True, True] and _is_channels_last(_conv_weight(m))

    def boom(x):
        raise RuntimeError("boom")

    bad = StandInSEN(fn=boom)
    with pytest.raises(RuntimeError, match="boom"):
        estimate_flow(np.zeros((16, 16, 3), np.float32), bad)
    assert _conv_weight(bad).is_contiguous()  # restored on error too


def test_channels_last_gives_the_flow_of_the_usual_layout():
    # a real (small, random) SEN: the flow estimate_flow returns on the CPU equals the network's
    # own NCHW pass to float rounding, and comes back contiguous
    from pnpdeblur.nets import SEN

    torch.manual_seed(0)
    net = SEN(width=8, levels=2, stacks=2).eval()
    x = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    want = net.estimate(x)
    got = estimate_flow(x[0], net)
    assert got.is_contiguous() and got.shape == (2, 40, 56)
    torch.testing.assert_close(got, want[0], rtol=1e-4, atol=1e-4)
    assert float(want.abs().max()) > 1e-3  # not a trivially zero flow


def test_the_network_gets_float32_and_the_caller_gets_its_type_and_device():
    m = StandInSEN((3.0, 1.0))
    x64 = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    f = estimate_flow(x64, m, device="cpu")
    assert m.inputs[0].dtype == torch.float32 and f.dtype == torch.float64 and f.shape == (2, 2, 16, 16)
    assert len(m.calls) == 2  # one image at a time
    assert torch.allclose(f, torch.tensor([3.0, 1.0], dtype=torch.float64).view(1, 2, 1, 1).expand(2, 2, 16, 16))
    u8 = np.full((16, 16, 3), 51, np.uint8)
    estimate_flow(u8, m, device=torch.device("cpu"))
    assert torch.allclose(m.inputs[-1], torch.full((1, 3, 16, 16), 0.2))


def test_the_default_model_is_the_shipped_sen_loaded_once(monkeypatch):
    loads = []

    def pretrained(cls):
        loads.append(cls)
        return StandInSEN((2.0, 0.0))

    monkeypatch.setattr(learned.SEN, "pretrained", classmethod(pretrained))
    learned.default_flow_model.cache_clear()
    try:
        a = learned.default_flow_model()
        assert a is learned.default_flow_model() and loads == [learned.SEN]
        f = estimate_flow(np.zeros((16, 16, 3), np.float32))  # model=None: the cached default
        assert loads == [learned.SEN] and len(a.calls) == 1 and np.allclose(f[0], 2.0)
    finally:
        learned.default_flow_model.cache_clear()  # later tests get the real shipped SEN


# -- argument checks ------------------------------------------------------------------------------

def test_rejects_a_model_that_is_not_a_sen():
    with pytest.raises(TypeError, match=r"^model must be a pnpdeblur.nets.SEN, got Conv2d$"):
        estimate_flow(np.zeros((16, 16, 3), np.float32), torch.nn.Conv2d(3, 2, 1))


@pytest.mark.parametrize("scale", [0, 0.0, -0.5, 1.5, "0.5", None])
def test_rejects_bad_scales(scale):
    with pytest.raises(ValueError, match=r"^scale must be a number in \(0, 1\], got "):
        estimate_flow(np.zeros((16, 16, 3), np.float32), StandInSEN(), scale=scale)


@pytest.mark.parametrize("name, value", [("tile", -8), ("tile", 32.0), ("tile", True), ("overlap", -1),
                                         ("overlap", 4.0), ("overlap", False), ("tile", "32")])
def test_rejects_bad_tile_and_overlap(name, value):
    kwargs = {"tile": 32, "overlap": 4, name: value}
    with pytest.raises(ValueError, match=rf"^{name} must be a non-negative int, got "):
        estimate_flow(np.zeros((16, 16, 3), np.float32), StandInSEN(), **kwargs)


def test_tile_must_be_a_stride_multiple_with_room_for_two_overlaps():
    img = np.zeros((16, 16, 3), np.float32)
    m = StandInSEN()  # stride 8
    estimate_flow(img, m, tile=24, overlap=8)   # 24 = 2·8 + 8: the smallest allowed
    estimate_flow(img, m, tile=8, overlap=0)
    for tile, overlap in ((24, 9), (20, 4), (16, 5), (0, 0)):
        with pytest.raises(ValueError, match=rf"^tile must be a multiple of 8 and >= 2·overlap \+ 8, "
                                             rf"got tile={tile}, overlap={overlap}$"):
            estimate_flow(img, m, tile=tile, overlap=overlap)


def _piece(size, tile, overlap, stride=8):
    """The piece length the docstring promises along an axis (StandInSEN's stride is 8): as many
    pieces as ``tile``-long ones need, each the shortest stride multiple that covers the axis."""
    if size <= tile:
        return size
    n = len(_starts(size, tile, tile - overlap))
    p = max(overlap + math.ceil((size - overlap) / n), 2 * overlap + stride)
    return min(tile, math.ceil(p / stride) * stride)


def test_piece_lengths_written_out():
    # 1280 px in 768-px pieces overlapping by 128 take 2 pieces: 2 × 704 px cover it (SEN's stride 16)
    assert _piece(1280, 768, 128, 16) == 704 and _piece(720, 768, 128, 16) == 720
    assert [_piece(s, 32, 8) for s in (36, 41, 70, 800)] == [24, 32, 32, 32]
    assert _piece(800, 768, 128) == 464
    # a piece must hold both ramps and a stride: 33 px, overlap 12 → 32, not the 24 that covering alone needs
    assert _piece(33, 32, 12) == 32
    m = StandInSEN((4.0, 3.0))
    estimate_flow(np.zeros((8, 33, 3), np.float32), m, tile=32, overlap=12)
    assert [c[0] for c in m.calls] == [(1, 3, 8, 32)] * 2


def _blend_reference(size, tile, overlap, lengths):
    """Horizontal lengths across a row: Σ_k w_k L_k / Σ_k w_k with the linear ramps written out."""
    tile = _piece(size, tile, overlap)
    starts = _starts(size, tile, tile - overlap)
    num, den = np.zeros(size), np.zeros(size)
    for k, (s, length) in enumerate(zip(starts, lengths)):
        c = np.arange(s, s + tile)
        w = np.ones(tile)
        if overlap and k > 0:
            w = np.minimum(w, (c - s + 1) / (overlap + 1))
        if overlap and k < len(starts) - 1:
            w = np.minimum(w, (s + tile - c) / (overlap + 1))
        num[c] += w * length
        den[c] += w
    return num / den


@pytest.mark.parametrize("w, tile, overlap", [(36, 32, 8), (41, 32, 8), (70, 32, 8), (33, 24, 0)])
def test_tile_blend_when_the_last_tiles_overlap_heavily(w, tile, overlap):
    """Short images put the last tile almost on top of the previous one: the first tile's leading
    and the last tile's trailing edges stay at full weight, the others ramp."""
    piece = _piece(w, tile, overlap)
    starts = _starts(w, piece, piece - overlap)
    lengths = [2.0 + 3 * k for k in range(len(starts))]

    def by_tile(x):
        f = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        f[:, 0] = lengths[starts.index(round(float(x[0, 0, 0, 0]) * 100))]  # the image holds its column / 100
        return f

    img = np.broadcast_to((np.arange(w) / 100.0)[None, :, None], (8, w, 3)).astype(np.float32)
    f = estimate_flow(img, StandInSEN(fn=by_tile), tile=tile, overlap=overlap)
    np.testing.assert_allclose(f[0], np.broadcast_to(_blend_reference(w, tile, overlap, lengths), (8, w)),
                               atol=1e-5)


def test_a_batch_is_tiled_image_by_image():
    rng = np.random.default_rng(1)
    batch = torch.from_numpy(rng.random((2, 3, 40, 56)).astype(np.float32))
    m = _conv_net()
    f = estimate_flow(batch, m, tile=32, overlap=8)
    assert f.shape == (2, 2, 40, 56)
    for i in range(2):
        assert torch.allclose(f[i], estimate_flow(batch[i], m, tile=32, overlap=8), atol=1e-6)


def test_an_image_exactly_one_tile_wide_is_one_pass():
    torch.manual_seed(1)
    raw = canonicalize_flow(torch.randn(1, 2, 24, 32) * 7)
    m = StandInSEN(fn=lambda x: raw.clone())
    f = estimate_flow(torch.zeros(3, 24, 32), m, tile=32, overlap=8)
    assert len(m.calls) == 1 and torch.equal(f, raw[0])


@pytest.mark.parametrize("h, tile, overlap", [(36, 32, 8), (41, 32, 8), (70, 32, 8)])
def test_tile_blend_down_the_rows_when_the_last_tiles_overlap_heavily(h, tile, overlap):
    piece = _piece(h, tile, overlap)
    starts = _starts(h, piece, piece - overlap)
    lengths = [2.0 + 3 * k for k in range(len(starts))]

    def by_tile(x):
        f = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        f[:, 0] = lengths[starts.index(round(float(x[0, 0, 0, 0]) * 100))]  # the image holds its row / 100
        return f

    img = np.broadcast_to((np.arange(h) / 100.0)[:, None, None], (h, 8, 3)).astype(np.float32)
    f = estimate_flow(img, StandInSEN(fn=by_tile), tile=tile, overlap=overlap)
    np.testing.assert_allclose(f[0], np.broadcast_to(_blend_reference(h, tile, overlap, lengths)[:, None], (h, 8)),
                               atol=1e-5)


def test_default_tiles_are_768_px_overlapping_by_128():
    w = 800  # 2 pieces: 464 px each (not 768) cover it, starting at 0 and 336
    lengths = [3.0, 9.0]

    def by_tile(x):
        f = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        f[:, 0] = lengths[0 if float(x[0, 0, 0, 0]) == 0 else 1]
        return f

    img = np.zeros((8, w, 3), np.float32)
    img[:, 336:] = 0.5
    m = StandInSEN(fn=by_tile)
    f = estimate_flow(img, m)
    assert [c[0] for c in m.calls] == [(1, 3, 8, 464)] * 2
    np.testing.assert_allclose(f[0], np.broadcast_to(_blend_reference(w, 768, 128, lengths), (8, w)), atol=1e-5)


def test_grey_batches_and_messages_that_name_the_image():
    grey = torch.rand(2, 1, 16, 24)
    m = StandInSEN()
    f = estimate_flow(grey, m)
    assert f.shape == (2, 2, 16, 24) and [c[0] for c in m.calls] == [(1, 3, 16, 24)] * 2
    assert torch.equal(m.inputs[1][0, 2], grey[1, 0])
    with pytest.raises(ValueError, match=r"^image contains NaN or Inf values$"):
        estimate_flow(np.full((16, 16, 3), np.nan, np.float32), m)
    with pytest.raises(TypeError, match=r"^image must be"):
        estimate_flow("photo.png", m)


# -- a warning where the network sees too little of the scene -----------------------------------

@pytest.mark.parametrize("shape, scale, seen", [((191, 400), 1.0, "191×400 px"),
                                                ((400, 96), 1.0, "400×96 px"),
                                                ((384, 400), 0.49, "188×196 px (at scale=0.49)")])
def test_warns_when_the_network_sees_less_than_the_reliable_size(shape, scale, seen):
    img = np.zeros(shape + (3,), np.float32)
    with pytest.warns(UserWarning) as record:
        estimate_flow(img, StandInSEN(), scale=scale)
    (w,) = record
    assert str(w.message).startswith(f"estimate_flow sees {seen}: below 192 px on the short side SEN has "
                                     "too little context")
    assert w.filename == __file__  # reported at the caller


@pytest.mark.parametrize("shape, scale", [((192, 192), 1.0), ((192, 500), 1.0), ((400, 384), 0.5)])
def test_no_warning_from_the_reliable_size_up(shape, scale):
    import warnings

    img = np.zeros(shape + (3,), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimate_flow(img, StandInSEN(), scale=scale)
    assert learned.MIN_RELIABLE_SIZE == 192


def test_the_warning_points_at_the_users_line_however_deep_the_call():
    import inspect

    import pnpdeblur as pd

    img = np.random.default_rng(0).random((40, 48, 3)).astype(np.float32)
    with pytest.warns(UserWarning) as record:
        line = inspect.currentframe().f_lineno + 1
        pd.deblur(img, flow_model=StandInSEN(vector=(0.0, 0.0)), noise_level=0.01)  # sharp: safeguard
    (w,) = [r for r in record if str(r.message).startswith("estimate_flow sees 40×48 px")]
    assert (w.filename, w.lineno) == (__file__, line)
    with pytest.warns(UserWarning, match="estimate_flow sees 40×48 px") as record:
        line = inspect.currentframe().f_lineno + 1
        pd.is_blurred(img, model=StandInSEN(), ensemble=False)
    assert (record[0].filename, record[0].lineno) == (__file__, line)
