"""The scikit-image and BM3D wrappers call their denoiser as documented (fast, direct).

A recording stand-in for the denoiser shows what the wrapper passes (image layout, dtype,
``channel_axis``, the keyword arguments derived from sigma, the non-negative shift) and that
the result comes back in the caller's layout. SkimageTV is also compared with
``denoise_tv_chambolle`` itself.
"""
import sys
import types

import numpy as np
import pytest
import torch
from skimage.restoration import denoise_bilateral, denoise_nl_means, denoise_tv_chambolle, denoise_wavelet

from pnpdeblur.priors.bm3d import BM3D, bm3d_available
from pnpdeblur.priors.skimage import Bilateral, NLMeans, SkimageDenoiser, SkimageTV, Wavelet


class _Recorder:
    """f(image) = 2·image + offset, recording (shape, dtype, kwargs, min) of each call."""

    __name__ = "recorder"

    def __init__(self, offset=0.0):
        self.calls, self.offset = [], offset

    def __call__(self, image, **kw):
        self.calls.append((image.shape, image.dtype, kw, float(image.min())))
        return 2 * image + self.offset


def test_skimage_denoiser_colour_batch_layout_and_kwargs():
    f = _Recorder()
    prior = SkimageDenoiser(f, lambda s: {"weight": 3 * s, "fixed": "from sigma"}, fixed="fixed", other=1)
    z = torch.rand(2, 3, 4, 5, dtype=torch.float32)
    out = prior(z, 0.1)
    assert [c[0] for c in f.calls] == [(4, 5, 3), (4, 5, 3)]
    assert all(c[1] == np.float64 for c in f.calls)
    kw = f.calls[0][2]
    # sigma's keywords override the fixed ones; colour images get channel_axis=-1
    assert kw == {"weight": pytest.approx(0.3), "fixed": "from sigma", "other": 1, "channel_axis": -1}
    assert prior.kwargs == {"fixed": "fixed", "other": 1}  # the fixed ones are not changed by a call
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, 2 * z, rtol=0, atol=1e-6)


def test_skimage_denoiser_grey_images_are_2d():
    f = _Recorder()
    z = np.random.default_rng(0).random((4, 5)).astype(np.float32)
    out = SkimageDenoiser(f, lambda s: {"s": s})(z, 0.2)
    assert f.calls[0][0] == (4, 5) and f.calls[0][2] == {"s": 0.2}
    assert out.dtype == np.float32 and out.shape == (4, 5)
    np.testing.assert_allclose(out, 2 * z, rtol=1e-6)


def test_nonnegative_shifts_each_image_and_back():
    f = _Recorder(offset=0.5)
    z = torch.tensor([[[[-0.25, 0.5], [1.0, 0.0]]], [[[0.2, 0.4], [0.6, 0.8]]]], dtype=torch.float64)
    out = SkimageDenoiser(f, lambda s: {}, nonnegative=True)(z, 0.1)
    assert [c[3] for c in f.calls] == [0.0, 0.2]  # the first image shifted by +0.25, the second not
    # f(z + 0.25) - 0.25 = 2 z + 0.5 + 0.25 for the first image; 2 z + 0.5 for the second
    torch.testing.assert_close(out[0], 2 * z[0] + 0.75, rtol=0, atol=1e-15)
    torch.testing.assert_close(out[1], 2 * z[1] + 0.5, rtol=0, atol=1e-15)
    plain = _Recorder()
    SkimageDenoiser(plain, lambda s: {})(z, 0.1)
    assert plain.calls[0][3] == -0.25


def test_skimage_denoiser_checks_and_repr():
    for args in ((1, lambda s: {}), (_Recorder(), 2)):
        with pytest.raises(TypeError, match=r"^func and sigma_kwargs must be callable$"):
            SkimageDenoiser(*args)
    assert repr(SkimageDenoiser(_Recorder(), lambda s: {}, a=1)) == "SkimageDenoiser(recorder, {'a': 1})"
    assert repr(SkimageTV()) == "SkimageTV(denoise_tv_chambolle, {})"

    class Nameless:  # a callable object without __name__ (e.g. functools.partial) shows its repr
        def __call__(self, image):
            return image

        def __repr__(self):
            return "<nameless>"

    assert repr(SkimageDenoiser(Nameless(), lambda s: {})) == "SkimageDenoiser(<nameless>, {})"


def test_wrappers_map_sigma_to_their_parameters():
    tv = SkimageTV(scale=2.5)
    assert tv.func is denoise_tv_chambolle and tv.sigma_kwargs(0.1) == {"weight": pytest.approx(0.25)}
    assert SkimageTV().sigma_kwargs(0.1) == {"weight": pytest.approx(0.1)} and not SkimageTV().nonnegative
    assert SkimageTV(eps=1e-3, max_num_iter=5).kwargs == {"eps": 1e-3, "max_num_iter": 5}
    nl = NLMeans()
    assert nl.func is denoise_nl_means
    assert nl.sigma_kwargs(0.1) == {"h": pytest.approx(0.08), "sigma": 0.1}
    assert nl.kwargs == {"patch_size": 5, "patch_distance": 6, "fast_mode": True}
    nl2 = NLMeans(h_scale=2.0, patch_size=3, patch_distance=2, fast_mode=False)
    assert nl2.sigma_kwargs(0.1) == {"h": pytest.approx(0.2), "sigma": 0.1}
    assert nl2.kwargs == {"patch_size": 3, "patch_distance": 2, "fast_mode": False}
    bi = Bilateral()
    assert bi.func is denoise_bilateral and bi.nonnegative is True
    assert bi.sigma_kwargs(0.1) == {"sigma_color": pytest.approx(0.1)} and bi.kwargs == {"sigma_spatial": 1.5}
    bi2 = Bilateral(color_scale=3.0, sigma_spatial=0.5, bins=100)
    assert bi2.sigma_kwargs(0.1) == {"sigma_color": pytest.approx(0.3)}
    assert bi2.kwargs == {"sigma_spatial": 0.5, "bins": 100}


def test_wavelet_parameters_and_missing_pywavelets(monkeypatch):
    pytest.importorskip("pywt")
    wv = Wavelet()
    assert wv.func is denoise_wavelet and wv.sigma_kwargs(0.1) == {"sigma": 0.1}
    assert wv.kwargs == {"method": "BayesShrink", "mode": "soft", "rescale_sigma": True}
    wv2 = Wavelet(method="VisuShrink", mode="hard", rescale_sigma=False)
    assert wv2.kwargs == {"method": "VisuShrink", "mode": "hard", "rescale_sigma": False}
    monkeypatch.setitem(sys.modules, "pywt", None)  # "import pywt" raises ImportError
    with pytest.raises(ImportError, match=r"^the Wavelet prior needs PyWavelets \(scikit-image's optional dependency\): "
                                          r"pip install 'pnpdeblur\[wavelet\]' \(or pip install PyWavelets\)$"):
        Wavelet()


def test_skimage_tv_is_denoise_tv_chambolle():
    rng = np.random.default_rng(1)
    rgb = rng.random((10, 12, 3))
    np.testing.assert_allclose(SkimageTV(scale=2.0)(rgb, 0.05), denoise_tv_chambolle(rgb, weight=0.1, channel_axis=-1),
                               rtol=0, atol=1e-12)
    grey = rng.random((10, 12))
    np.testing.assert_allclose(SkimageTV()(grey, 0.1), denoise_tv_chambolle(grey, weight=0.1), rtol=0, atol=1e-12)


# -- BM3D through a stand-in package -----------------------------------------------------
def _fake_bm3d(monkeypatch):
    calls = []
    mod = types.ModuleType("bm3d")

    def bm3d(im, sigma_psd, **kw):
        calls.append(("bm3d", im.shape, im.dtype, sigma_psd, kw))
        return im + sigma_psd

    def bm3d_rgb(im, sigma, **kw):
        calls.append(("bm3d_rgb", im.shape, im.dtype, sigma, kw))
        return im * 0.5 + np.arange(3)  # a per-channel offset shows the channel order

    mod.bm3d, mod.bm3d_rgb = bm3d, bm3d_rgb
    monkeypatch.setitem(sys.modules, "bm3d", mod)
    return calls


def test_bm3d_colour_uses_bm3d_rgb_in_hwc(monkeypatch):
    calls = _fake_bm3d(monkeypatch)
    z = torch.rand(2, 3, 4, 5, dtype=torch.float32)
    out = BM3D(profile="np")(z, 0.1)
    # the package gets float64 (H, W, C) images whatever the caller's dtype
    assert calls == [("bm3d_rgb", (4, 5, 3), np.float64, 0.1, {"profile": "np"})] * 2
    want = z.double() * 0.5 + torch.arange(3, dtype=torch.float64)[:, None, None]
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, want.float(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("c", [1, 2])
def test_bm3d_other_channel_counts_go_channel_by_channel(monkeypatch, c):
    calls = _fake_bm3d(monkeypatch)
    z = torch.rand(1, c, 4, 5, dtype=torch.float32)
    out = BM3D(stage_arg="all")(z, 0.2)
    assert calls == [("bm3d", (4, 5), np.float64, 0.2, {"stage_arg": "all"})] * c
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, z + 0.2, rtol=0, atol=1e-6)


def test_bm3d_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)
    assert bm3d_available() is False
    with pytest.raises(ImportError, match=r"^the BM3D prior needs the optional 'bm3d' package, which is not "
                                          r"installed: pip install 'pnpdeblur\[bm3d\]' \(or pip install bm3d\)\. "
                                          r"Note that bm3d is free for non-commercial use only"):
        BM3D()
    _fake_bm3d(monkeypatch)
    assert bm3d_available() is True
    assert BM3D(a=1).kwargs == {"a": 1}


def test_bm3d_carries_its_hqs_schedule(monkeypatch):
    """HQS with BM3D starts from σ_1 = 100/255 (tuned on BSDS500 val) and keeps DPIR's λ."""
    from pnpdeblur.solvers.schedules import prior_schedule

    _fake_bm3d(monkeypatch)
    prior = BM3D()
    assert prior_schedule(prior) == (0.23, 100 / 255)
    prior.hqs_sigma_start = None  # DPIR's schedule, on request
    assert prior_schedule(prior) == (0.23, 49 / 255)
    assert BM3D().hqs_sigma_start == 100 / 255  # the instance's choice is its own
