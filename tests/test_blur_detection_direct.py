"""Direct tests of the blur detector (pnpdeblur.estimation.blur_detection): hand-computed
medians, a stand-in flow network, and a plain numpy re-blur score as the reference."""
import numpy as np
import pytest
import torch
from skimage.color import rgb2gray

from _flow_standins import StandInSEN
from pnpdeblur.estimation.blur_detection import (DEFAULT_THRESHOLD, SINGLE_PASS_THRESHOLD, blur_score,
                                                 default_threshold, flow_blur_score, is_blurred, reblur_score)
from pnpdeblur.operators import motion_kernel


def _flow_with_lengths(lengths, shape=(2, 3)):
    """(2, H, W) float32 flow whose pixel lengths are ``lengths`` (3-4-5 triangles, mixed signs)."""
    lengths = np.asarray(lengths, np.float64).reshape(shape)
    sign = np.where(np.arange(lengths.size).reshape(shape) % 2 == 0, 1.0, -1.0)
    return np.stack([0.6 * lengths * sign, -0.8 * lengths]).astype(np.float32)


# -- flow_blur_score --------------------------------------------------------------------------

def test_flow_blur_score_is_the_lower_median_of_the_lengths():
    # six lengths: torch's median is the lower of the two middle values (3, not 3.5)
    f = _flow_with_lengths([10, 1, 4, 3, 0, 20])
    s = flow_blur_score(f)
    assert isinstance(s, float) and s == pytest.approx(3.0, abs=1e-5)
    # odd count: the middle value; the median, not the mean (7.4) nor the max
    g = _flow_with_lengths([1, 2, 30, 4, 0], shape=(1, 5))
    assert flow_blur_score(g) == pytest.approx(2.0, abs=1e-5)


def test_flow_blur_score_batches_types_and_precision():
    a, b = _flow_with_lengths([1, 2, 3, 4, 5, 6]), _flow_with_lengths([7, 7, 8, 9, 9, 9])
    batch = np.stack([a, b])
    assert flow_blur_score(batch) == pytest.approx([3.0, 8.0], abs=1e-5)
    one = flow_blur_score(a[None])  # a batch of one is still a list
    assert isinstance(one, list) and one == pytest.approx([3.0], abs=1e-5)
    # torch input that needs a gradient (detached, no error), float16 and float64
    t = torch.from_numpy(batch).requires_grad_(True)
    assert flow_blur_score(t) == pytest.approx([3.0, 8.0], abs=1e-5)
    assert flow_blur_score(torch.from_numpy(a).half()) == pytest.approx(3.0, abs=1e-2)
    # computed in float64: a 3-4-5 triangle scaled to 1e20 does not overflow float32's square
    big = np.zeros((2, 1, 1), np.float64)
    big[:, 0, 0] = (3e20, 4e20)
    assert flow_blur_score(big) == pytest.approx(5e20, rel=1e-12)
    assert flow_blur_score(big.astype(np.float32)) == pytest.approx(5e20, rel=1e-6)


@pytest.mark.parametrize("shape", [(2, 4), (3, 4, 4), (1, 3, 4, 4), (1, 1, 2, 4, 4), (2, 0, 4), (2, 4, 0),
                                   (1, 2, 0, 4), (1, 2, 4, 0)])
def test_flow_blur_score_rejects_wrong_shapes(shape):
    with pytest.raises(ValueError, match=r"^flow must be \(2, H, W\) or \(N, 2, H, W\) with H, W > 0, got shape "
                                         + repr(shape).replace("(", r"\(").replace(")", r"\)")):
        flow_blur_score(np.zeros(shape, np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_flow_blur_score_rejects_non_finite_values(bad):
    f = np.ones((2, 3, 3), np.float32)
    f[1, 2, 2] = bad
    with pytest.raises(ValueError, match=r"^flow contains NaN or Inf$"):
        flow_blur_score(f)
    with pytest.raises(ValueError, match=r"^flow contains NaN or Inf$"):
        flow_blur_score(torch.from_numpy(f))


def test_flow_blur_score_rejects_non_arrays():
    with pytest.raises(TypeError, match=r"^flow must be a numpy array or torch tensor, got list$"):
        flow_blur_score([[[1.0]], [[2.0]]])


# -- blur_score and is_blurred ------------------------------------------------------------------

def _img(h=16, w=24, n=None):
    rng = np.random.default_rng(0)
    return rng.random((h, w, 3)).astype(np.float32) if n is None else \
        torch.from_numpy(rng.random((n, 3, h, w)).astype(np.float32))


def test_blur_score_runs_the_given_model_when_no_flow_is_given():
    m = StandInSEN((6.0, 8.0))  # length 10 everywhere
    assert blur_score(_img(), m, ensemble=False) == pytest.approx(10.0, abs=1e-5)
    assert len(m.calls) == 1 and m.calls[0][0] == (1, 3, 16, 24)
    # by default the flow is the 8-symmetry ensemble's: a fixed vector that does not turn with the
    # image averages out (tests/test_flow_ensemble.py), so the score is 0, from 8 passes
    m8 = StandInSEN((6.0, 8.0))
    assert blur_score(_img(), m8) == pytest.approx(0.0, abs=1e-5) and len(m8.calls) == 8
    # a batch: one score per image, from one estimate per image
    m2 = StandInSEN(fn=lambda x: torch.full((x.shape[0], 2) + tuple(x.shape[-2:]), float(len(m2.calls))))
    s = blur_score(_img(n=2), m2, ensemble=False)
    assert s == pytest.approx([np.sqrt(2.0), 2 * np.sqrt(2.0)], abs=1e-5)
    # a given flow skips the network
    m3 = StandInSEN()
    assert blur_score(_img(), m3, flow=_flow_with_lengths(np.arange(8 * 48).reshape(16, 24) % 7,
                                                           shape=(16, 24))) == pytest.approx(3.0, abs=1e-5)
    assert m3.calls == []


def test_is_blurred_passes_the_model_and_decides_per_image():
    m = StandInSEN((3.0, 4.0))  # score 5 from one pass (the stand-in does not turn with the image)
    assert is_blurred(_img(), 5.0, m, ensemble=False) is True
    assert is_blurred(_img(), 5.0001, m, ensemble=False) is False
    assert is_blurred(_img(), threshold=4.0, model=m, ensemble=False) is True
    assert is_blurred(_img(), threshold=4.0, model=m) is False  # the ensemble's flow: score 0
    flow = np.zeros((2, 2, 16, 24), np.float32)
    flow[0, 0], flow[1, 1] = 6.0, 4.4
    assert is_blurred(_img(n=2), 5.0, flow=flow) == [True, False]
    assert is_blurred(_img(n=2), flow=flow, ensemble=False) == [True, False]  # default threshold 4.5 px
    assert (DEFAULT_THRESHOLD, SINGLE_PASS_THRESHOLD) == (6.0, 4.5)
    assert (default_threshold(), default_threshold(True), default_threshold(False)) == (6.0, 6.0, 4.5)
    # the ensemble's threshold (6 px) by default, the single pass's (4.5 px) with ensemble=False
    f42 = np.zeros((2, 16, 24), np.float32)
    f42[0] = 5.0
    assert is_blurred(_img(), flow=f42) is False and is_blurred(_img(), flow=f42, ensemble=False) is True
    # an integer threshold is a number too
    assert is_blurred(_img(n=2), 6, flow=flow) == [True, False]


def test_blur_score_rejects_a_flow_of_another_batch_or_size():
    flow = np.zeros((2, 2, 16, 24), np.float32)
    with pytest.raises(ValueError, match=r"^flow of shape \(2, 2, 16, 24\) does not match image \(1, 3, 16, 24\) "
                                         r"\(as N, C, H, W\)$"):
        blur_score(_img(), flow=flow)
    for bad in (np.zeros((2, 15, 24), np.float32), np.zeros((2, 16, 23), np.float32)):
        with pytest.raises(ValueError, match=r"^flow of shape .* does not match image"):
            blur_score(_img(), flow=bad)
    with pytest.raises(ValueError, match=r"^flow of shape"):
        blur_score(_img(n=2), flow=np.zeros((1, 2, 16, 24), np.float32))


# -- reblur_score against a plain numpy reference -------------------------------------------------

def _reblur_reference(img, length):
    """Crété-Roffet re-blur score, four directions, written independently with numpy loops."""
    g = rgb2gray(img) if img.ndim == 3 else img
    g = g.astype(np.float64)
    h, w = g.shape
    best = -1.0
    for dx, dy in ((1, 0), (1, 1), (0, 1), (-1, 1)):
        k = motion_kernel(np.array([dx, dy]) * length / np.hypot(dx, dy))
        r = k.shape[0] // 2
        gp = np.pad(g, r, mode="edge")
        b = np.zeros_like(g)
        for a in range(k.shape[0]):
            for c in range(k.shape[1]):
                b += k[a, c] * gp[a:a + h, c:c + w]

        def grad(arr):
            shifted = np.zeros_like(arr)  # arr(p - d), wrapping around (only the border sees the wrap)
            for i in range(h):
                for j in range(w):
                    shifted[i, j] = arr[(i - dy) % h, (j - dx) % w]
            return np.abs(arr - shifted)[2 * r:h - 2 * r, 2 * r:w - 2 * r]

        gi, gb = grad(g), grad(b)
        total = gi.sum()
        s = 1.0 if total == 0 else 1.0 - np.maximum(gi - gb, 0).sum() / total
        best = max(best, s)
    return best


@pytest.mark.parametrize("length", [2, 3, 4])
def test_reblur_score_equals_the_numpy_reference(length):
    rng = np.random.default_rng(length)
    img = rng.random((4 * length + 9, 4 * length + 6, 3))
    # some structure along one direction so the four directions differ
    img[:, ::3] *= 0.3
    assert reblur_score(img, length) == pytest.approx(_reblur_reference(img, length), abs=1e-12)
    grey = img[..., 1]
    assert reblur_score(grey, length) == pytest.approx(_reblur_reference(grey, length), abs=1e-12)


def test_reblur_score_direction_and_batch():
    # stripes along x: nothing varies along 0°, so that direction scores 1 (nothing to lose) and wins
    rows = np.repeat(np.random.default_rng(1).random((20, 1)), 22, axis=1)
    assert reblur_score(rows, 2) == 1.0
    # a batch gives one score per image, in order, each as for the image alone
    rng = np.random.default_rng(2)
    a, b = rng.random((3, 20, 22)), rng.random((3, 20, 22)) ** 3
    s = reblur_score(torch.from_numpy(np.stack([a, b])), 3)
    assert isinstance(s, list) and s == pytest.approx([reblur_score(torch.from_numpy(a), 3),
                                                       reblur_score(torch.from_numpy(b), 3)], abs=1e-12)
    # default length 9 needs more than 36 px per side
    big = rng.random((37, 37))
    assert reblur_score(big) == pytest.approx(_reblur_reference(big, 9), abs=1e-12)


@pytest.mark.parametrize("bad", [1, 0, -3, 2.0, True, "9", None])
def test_reblur_score_rejects_bad_lengths(bad):
    with pytest.raises(ValueError, match=r"^length must be an int >= 2, got " + repr(bad).replace(".", r"\.")):
        reblur_score(np.zeros((40, 40)), bad)


def test_reblur_score_needs_more_than_four_lengths_per_side():
    assert 0 <= reblur_score(np.random.default_rng(0).random((13, 13)), 3) <= 1
    for shape in ((12, 13), (13, 12)):
        with pytest.raises(ValueError, match=r"^image must be larger than 12 px on each side for length=3, got "
                                             + repr(shape).replace("(", r"\(").replace(")", r"\)") + "$"):
            reblur_score(np.zeros(shape), 3)


def test_messages_name_the_image_and_the_threshold():
    with pytest.raises(ValueError, match=r"^image contains NaN or Inf values$"):
        blur_score(np.full((16, 24, 3), np.nan, np.float32), StandInSEN())
    with pytest.raises(ValueError, match=r"^image must have 1, 3 or 4 channels"):
        is_blurred(np.zeros((16, 24, 5), np.float32), flow=np.zeros((2, 16, 24), np.float32))
    with pytest.raises(ValueError, match=r"^threshold must be"):
        is_blurred(_img(), -1.0, flow=np.zeros((2, 16, 24), np.float32))
    with pytest.raises(TypeError, match=r"^threshold must be"):
        is_blurred(_img(), "4", flow=np.zeros((2, 16, 24), np.float32))


def test_torch_flows_are_measured_in_float64():
    big = torch.zeros(2, 1, 3, dtype=torch.float32)
    big[0], big[1] = 3e20, 4e20  # u² + v² overflows float32
    assert flow_blur_score(big) == pytest.approx(5e20, rel=1e-6)
    half = torch.zeros(2, 1, 1, dtype=torch.float16)
    half[0], half[1] = 300.0, 400.0  # 300² overflows float16
    assert flow_blur_score(half) == pytest.approx(500.0, rel=1e-3)


def test_reblur_score_of_faint_grey_batches():
    # little variation (Σ|∇| well below 1) is scored like any other image: the ratio, not a default
    rng = np.random.default_rng(3)
    faint = 0.5 + 1e-4 * rng.random((2, 1, 15, 17))
    s = reblur_score(torch.from_numpy(faint), 3)
    assert s == pytest.approx([_reblur_reference(faint[0, 0], 3), _reblur_reference(faint[1, 0], 3)], abs=1e-9)
    assert max(s) < 0.9
    with pytest.raises(ValueError, match=r"^image contains NaN or Inf values$"):
        reblur_score(np.full((20, 20), np.nan), 3)
