"""Camera shake on small photos: the default kernel support shrinks with the photo, a given support
that is too large for it warns, and so does a photo too small for a reliable estimate
(benchmarks/RESULTS.md, "Camera shake on small photos")."""
import inspect
import warnings

import numpy as np
import pytest

import pnpdeblur as pd
import pnpdeblur.camera_shake as cs
from pnpdeblur.estimation import kernel as km

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _recorded(monkeypatch, long=False):
    """Stand in for the estimate: record the support asked for, return a 1-px kernel (left unchanged
    by the safeguard, so nothing is solved) or, ``long``, a horizontal line across the support (so
    the photo is deblurred)."""
    calls = []

    def fake(image, size):
        k = np.zeros((size, size))
        if long:
            k[size // 2, :] = 1.0 / size
        else:
            k[size // 2, size // 2] = 1.0
        calls.append(size)
        return k[None]

    monkeypatch.setattr(cs, "estimate_kernel", fake)
    return calls


def _photo(h, w=None):
    return np.random.default_rng(0).random((h, w or h)).astype(np.float32)


# the rule: min(31, the largest odd size <= shorter side / 6), measured (SUPPORT_RATIO)
@pytest.mark.parametrize("shape, size", [((64, 64), 9), ((96, 96), 15), ((96, 300), 15), ((128, 128), 21),
                                         ((160, 120), 19), ((160, 160), 25), ((185, 185), 29), ((186, 186), 31),
                                         ((255, 255), 31), ((256, 256), 31), ((720, 1280), 31), ((30, 40), 5),
                                         ((16, 16), 3)])
def test_default_support_follows_the_photo(monkeypatch, shape, size):
    assert km.SUPPORT_RATIO == 6 and km.DEFAULT_KERNEL_SIZE == 31
    assert km.default_kernel_size(shape) == size
    calls = _recorded(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small-photo and safeguard warnings have their own tests
        pd.deblur_shake(_photo(*shape), noise_level=0.01)
    assert calls == [size]


@pytest.mark.parametrize("side", [192, 255, 256])
def test_large_photos_keep_the_31_px_default_and_warn_nothing(monkeypatch, side):
    # Levin et al.'s 255² images and the 256² synthetic benchmark: the old default, by construction
    assert km.default_kernel_size((side, side)) == 31 == km.DEFAULT_KERNEL_SIZE
    calls = _recorded(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=r"pd\.deblur_shake returned image\(s\) \[0\] unchanged")
        pd.deblur_shake(_photo(side), noise_level=0.01)
        pd.deblur_shake(_photo(side), 31, noise_level=0.01)  # given: within side / 6, no warning
    assert calls == [31, 31]


def test_a_given_support_too_large_for_the_photo_warns_at_the_callers_line(monkeypatch):
    calls = _recorded(monkeypatch, long=True)
    tv = pd.priors.TV()
    with pytest.warns(UserWarning, match=r"^kernel_size 31 is too large for a photo whose shorter side is 96 px: "
                                         r".* pass kernel_size <= 15, or leave it unset \(default 15 here\)$") as rec:
        line = inspect.currentframe().f_lineno + 1
        res = pd.deblur_shake(_photo(96, 120), 31, tv, noise_level=0.01)
    said = [r for r in rec if "too large" in str(r.message)]
    assert len(said) == 1 and (said[0].filename, said[0].lineno) == (__file__, line)
    assert calls == [31] and res.unchanged == [False]  # warned, and used as given
    # within the bound: no such warning
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        pd.deblur_shake(_photo(96, 120), 15, tv, noise_level=0.01)
    assert not [r for r in rec if "too large" in str(r.message)] and calls == [31, 15]


def test_nothing_is_said_about_the_estimate_when_nothing_is_deblurred(monkeypatch):
    # the safeguard returned the photo as given: no result rests on the estimate
    calls = _recorded(monkeypatch)
    for size in (31, None):  # too large for 96 px, and the default (15 px)
        with pytest.warns(UserWarning) as rec:
            res = pd.deblur_shake(_photo(96, 120), size, noise_level=0.01)
        assert res.unchanged == [True]
        assert [str(r.message)[:40] for r in rec] == ["pd.deblur_shake returned image(s) [0] un"]
    assert calls == [31, 15]


class _Reached(Exception):
    pass


def test_deblur_auto_leaves_the_default_to_deblur_shake(monkeypatch):
    import pnpdeblur.auto as A

    got = []

    def shake(image, kernel_size, **kw):
        got.append(kernel_size)
        raise _Reached

    monkeypatch.setattr(A, "deblur", lambda *a, **k: None)
    monkeypatch.setattr(A, "deblur_shake", shake)
    for size in (None, 9):
        with pytest.raises(_Reached):
            pd.deblur_auto(_photo(96), kernel_size=size)
    with pytest.raises(_Reached):
        pd.deblur_auto(_photo(96))
    assert got == [None, 9, None]  # deblur_shake picks 15 px for this 96 px photo, and warns
    assert inspect.signature(pd.deblur_auto).parameters["kernel_size"].default is None
    assert inspect.signature(pd.deblur_shake).parameters["kernel_size"].default is None


def test_a_photo_too_small_for_a_reliable_estimate_warns(monkeypatch):
    calls = _recorded(monkeypatch, long=True)
    assert km.MIN_RELIABLE_SHAKE_SIZE == 192
    with pytest.warns(UserWarning, match=r"^pd\.deblur_shake estimates the kernel on a 128x150 px photo: below 192 "
                                         r"px on the shorter side the estimate is unreliable") as rec:
        line = inspect.currentframe().f_lineno + 1
        pd.deblur_shake(_photo(128, 150), noise_level=0.01, prior=pd.priors.TV())
    said = [r for r in rec if "unreliable" in str(r.message)]
    assert len(said) == 1 and (said[0].filename, said[0].lineno) == (__file__, line)
    assert calls == [21]
    # a given kernel is not estimated: nothing to warn about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pd.deblur_shake(_photo(128, 150), kernel=np.full((3, 3), 1 / 9), noise_level=0.01, prior=pd.priors.TV())


def test_the_cli_names_the_flag_when_the_support_is_too_large(tmp_path, monkeypatch, capsys):
    from skimage import io

    from pnpdeblur import cli

    calls = []

    def shake(img, size, **kw):
        calls.append(size)
        raise _Reached("stop here")

    monkeypatch.setattr(cs, "deblur_shake", shake)
    src = tmp_path / "small.png"
    io.imsave(str(src), (255 * _photo(96, 100)).astype(np.uint8), check_contrast=False)
    with pytest.warns(UserWarning, match=r"^--kernel-size 31 is too large for a photo whose shorter side is 96 px"
                                         r": .* pass --kernel-size <= 15$"):
        assert cli.main(["deblur", str(src), "-o", str(tmp_path / "o"), "--shake", "--kernel-size", "31",
                         "--no-progress"]) == 1
    assert "stop here" in capsys.readouterr().err
    assert calls == [31]
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli.main(["deblur", str(src), "-o", str(tmp_path / "o"), "--shake", "--no-progress"]) == 1
    assert calls == [None]  # the library's default: 15 px here


def test_chelsea_at_128_px_no_longer_loses_several_db():
    # the case found on 2026-11-29: with the old 31-px default the estimate on this 128² photo was a
    # long tangle and the result 8.7 dB below the blurred photo; the default 21 px gains 2.6 dB
    sharp = pd.data.sample_image("chelsea", 128)
    y = pd.Convolution(pd.data.random_shake_kernel(15, seed=3))(sharp)
    y = np.clip(y + np.random.default_rng(0).normal(0.0, 0.01, y.shape), 0, 1).astype(np.float32)
    blurred = pd.metrics.psnr(y, sharp)  # 26.2 dB
    with pytest.warns(UserWarning, match="unreliable"):  # 128 px: warned all the same
        new = pd.deblur_shake(y)
    assert new.kernel.shape == (21, 21)
    assert pd.metrics.psnr(new.x, sharp) > blurred + 1.0  # measured 28.8 dB
    with pytest.warns(UserWarning, match="kernel_size 31 is too large"):
        old = pd.deblur_shake(y, 31)
    assert pd.metrics.psnr(old.x, sharp) < blurred - 5.0  # measured 17.5 dB


@pytest.mark.parametrize("shape, kernel_size, source", [((36, 40), None, "the default on a 36x40 px photo"),
                                                        ((200, 200), 5, "(kernel_size)")])
def test_a_support_below_the_threshold_is_named_as_the_reason(monkeypatch, shape, kernel_size, source):
    # a 5-px support cannot show a 7-px blur: "the photo looks sharp" would be the wrong reason
    calls = _recorded(monkeypatch)
    with pytest.warns(UserWarning) as record:
        res = pd.deblur_shake(_photo(*shape), noise_level=0.01, kernel_size=kernel_size)
    assert calls == [5] and res.unchanged == [True]
    message = " ".join(str(w.message) for w in record)
    assert "below blur_threshold=7 px" in message and "5x5 px support" in message and source in message
    assert "looks sharp" not in message


def test_a_support_at_the_threshold_keeps_the_looks_sharp_reason(monkeypatch):
    calls = _recorded(monkeypatch)
    with pytest.warns(UserWarning, match="looks sharp") as record:
        pd.deblur_shake(_photo(64, 64), noise_level=0.01, kernel_size=7)
    assert calls == [7] and not any("px support" in str(w.message) for w in record)
