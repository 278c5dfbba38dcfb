"""Direct tests of the camera-shake kernel estimator's parts (pnpdeblur.estimation.kernel) against
independent references: dense periodic matrices built with scipy.ndimage.convolve(mode="wrap"),
a brute-force selection of salient gradients, and hand-made kernels for the clean-up. They pin
what the end-to-end tests of test_camera_shake.py cannot see (twentieth-session mutation run)."""
import math

import numpy as np
import pytest
from scipy import ndimage

from pnpdeblur.estimation import kernel as km


# --------------------------------------------------------------------------- dense references
def _conv_matrix(k, shape):
    """The periodic convolution ``x ↦ k ⊛ x`` (k centred at its middle pixel) as a dense matrix."""
    n = shape[0] * shape[1]
    cols = []
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1.0
        cols.append(ndimage.convolve(e.reshape(shape), k, mode="wrap").ravel())
    return np.stack(cols, axis=1)


def _diff_matrices(shape):
    """Forward differences with periodic wrap, x then y, as dense matrices."""
    n = shape[0] * shape[1]
    eye = np.eye(n).reshape(n, *shape)
    dx = (np.roll(eye, -1, axis=2) - eye).reshape(n, n).T
    dy = (np.roll(eye, -1, axis=1) - eye).reshape(n, n).T
    return dx, dy


def test_dense_references_match_the_fft_model():
    """The references agree with the module's FFT model of the convolution and the gradients."""
    rng = np.random.default_rng(0)
    x, k = rng.random((8, 10)), rng.random((3, 3))
    np.testing.assert_allclose(km._irfft(km._kernel_otf(k, x.shape) * km._rfft(x), x.shape),
                               (_conv_matrix(k, x.shape) @ x.ravel()).reshape(x.shape), atol=1e-12)
    dx, dy = _diff_matrices(x.shape)
    gx, gy = km._gradients(x)
    np.testing.assert_allclose(gx.ravel(), dx @ x.ravel(), atol=1e-15)
    np.testing.assert_allclose(gy.ravel(), dy @ x.ravel(), atol=1e-15)


# --------------------------------------------------------------------------- the latent image step
def _latent_reference(y, k, lam):
    """Half-quadratic L0-gradient deblurring with dense solves: β from 2λ, doubled while below
    1e5; gradients with |∇x|² < λ/β set to 0, then (KᵀK + β DᵀD) x = Kᵀy + β Dᵀg."""
    K = _conv_matrix(k, y.shape)
    dx, dy = _diff_matrices(y.shape)
    x = y.ravel().copy()
    beta = 2.0 * lam
    while beta < 1e5:
        gx, gy = dx @ x, dy @ x
        small = gx ** 2 + gy ** 2 < lam / beta
        gx[small], gy[small] = 0.0, 0.0
        lhs = K.T @ K + beta * (dx.T @ dx + dy.T @ dy)
        x = np.linalg.solve(lhs, K.T @ y.ravel() + beta * (dx.T @ gx + dy.T @ gy))
        beta *= 2.0
    return x.reshape(y.shape)


@pytest.mark.parametrize("lam", [4e-3, 2e-2])
def test_latent_l0_is_the_dense_half_quadratic_solve(lam):
    rng = np.random.default_rng(1)
    y = ndimage.uniform_filter(rng.random((8, 8)), 3, mode="wrap")
    k = np.zeros((3, 3))
    k[1, :] = [0.2, 0.5, 0.3]
    np.testing.assert_allclose(km._latent_l0(y, k, lam), _latent_reference(y, k, lam), atol=1e-9)


# --------------------------------------------------------------------------- salient gradients
def _salient_reference(x, mask, kernel_pixels):
    gx, gy = km._gradients(x)
    mag = np.sqrt(gx ** 2 + gy ** 2)
    theta = np.mod(np.arctan2(gy, gx), np.pi)
    # four orientation bins centred on 0°, 45°, 90°, 135°
    b = np.select([(theta < np.pi / 8) | (theta >= 7 * np.pi / 8), theta < 3 * np.pi / 8, theta < 5 * np.pi / 8],
                  [0, 1, 2], default=3)
    n = math.ceil(2.0 * math.sqrt(mask.sum() * kernel_pixels))
    threshold = np.inf
    for bin_ in range(4):
        vals = sorted(mag[(b == bin_) & mask & (mag > 1e-3)], reverse=True)
        if vals:
            threshold = min(threshold, vals[min(n, len(vals)) - 1])
    keep = (mag >= threshold) & (mag > 1e-3)
    return np.where(keep, gx, 0.0), np.where(keep, gy, 0.0)


@pytest.mark.parametrize("seed, kernel_pixels", [(0, 1), (1, 4), (2, 9)])
def test_salient_gradients_keep_enough_of_each_orientation(seed, kernel_pixels):
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random((24, 20)), 1.0)
    mask = np.zeros(x.shape, bool)
    mask[3:-3, 2:-4] = True
    got = km._salient_gradients(x, mask, kernel_pixels)
    want = _salient_reference(x, mask, kernel_pixels)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    kept = int(np.count_nonzero(np.hypot(*got)))
    assert math.ceil(2 * math.sqrt(mask.sum() * kernel_pixels)) <= kept < x.size  # a selection, not all


def test_salient_gradients_ignore_gradients_at_the_edge_floor():
    """A bin whose only gradients are exactly _MIN_EDGE (1e-3) sets no threshold, and such
    gradients are never kept; the threshold then comes from the stripes' bin."""
    x = np.zeros((16, 16))
    x[:, :8] = np.linspace(0.1, 0.9, 8)[None, :] ** 2  # vertical stripes: horizontal gradients only
    x[8, 12] = 1e-3                                   # gradients of exactly 1e-3 at (8, 11) and (7, 12)
    mask = np.zeros(x.shape, bool)
    mask[:, :7] = True
    mask[7, 12] = True                                # the vertical 1e-3 gradient: alone in its bin
    gx, gy = km._salient_gradients(x, mask, 1)
    want = _salient_reference(x, mask, 1)
    np.testing.assert_array_equal(gx, want[0])
    np.testing.assert_array_equal(gy, want[1])
    assert gx[8, 11] == 0 and gy[7, 12] == 0           # == 1e-3: not above the floor
    assert gx[8, 12] == 0 and gx[0, 7] != 0            # √2·1e-3: above the floor, below the threshold
    # n = ceil(2·sqrt(113)) = 22 of 16 rows × 7 stripe gradients: the two largest stripes' (32)
    assert np.count_nonzero(gx[:, :7]) == 32


def test_salient_gradients_flat_image_keeps_nothing():
    gx, gy = km._salient_gradients(np.full((8, 8), 0.5), np.ones((8, 8), bool), 9)
    assert not gx.any() and not gy.any()


# --------------------------------------------------------------------------- the kernel step
def _kernel_step_reference(x, y, mask, shape_k, reg):
    """argmin_k Σ_d ||m_d ⊙ (k ⊛ s_d − ∂_d y)||² + reg·E·||k||² by a dense solve; s_d the salient
    gradients of x, m_d where both pixels of ∂_d y are observed, E = Σ_d Σ m_d s_d²."""
    s = km._salient_gradients(x, mask, shape_k[0] * shape_k[1])
    dy_ = km._gradients(y)
    masks = [mask & np.roll(mask, -1, axis=1), mask & np.roll(mask, -1, axis=0)]
    n = shape_k[0] * shape_k[1]
    energy = sum(float((g ** 2 * m).sum()) for g, m in zip(s, masks))
    lhs, rhs = reg * energy * np.eye(n), np.zeros(n)
    for g, d, m in zip(s, dy_, masks):
        # column q: the response to the unit kernel e_q
        A = np.stack([ndimage.convolve(g, np.eye(n)[q].reshape(shape_k), mode="wrap").ravel() for q in range(n)], 1)
        A = A * m.ravel()[:, None]
        lhs += A.T @ A
        rhs += A.T @ (d * m).ravel()
    return np.linalg.solve(lhs, rhs).reshape(shape_k)


@pytest.mark.parametrize("seed, contrast", [(0, 1.0), (1, 1.0), (2, 0.01)])
def test_kernel_step_is_the_masked_least_squares_kernel(seed, contrast, monkeypatch):
    """With the clean-up turned off, 10 CG iterations on a 3×3 support (9 unknowns) reach the
    dense least-squares kernel, for an odd width, a mask that reaches the right edge (the
    y-gradient there pairs with the same row's first pixel, not the next row's) and an image of
    low contrast (the regularisation scales with its gradient energy, far below 1 here)."""
    monkeypatch.setattr(km, "_clean", lambda k: k)
    rng = np.random.default_rng(seed)
    x = contrast * ndimage.gaussian_filter(rng.random((14, 13)), 0.8)
    k_true = np.array([[0.0, 0.1, 0.0], [0.2, 0.4, 0.1], [0.0, 0.2, 0.0]])
    y = ndimage.convolve(x, k_true, mode="wrap") + 0.01 * contrast * rng.standard_normal(x.shape)
    mask = np.zeros(x.shape, bool)
    mask[2:-3, 3:] = True      # to the right edge
    mask[4:9, 0] = True        # and the left edge, except in the row after a right-edge pixel:
    mask[6, 0] = False         # a flattened roll would pair (5, 12) with (6, 0)
    mask[5, 6] = False         # a hole: both gradients that touch it leave the data term
    k0 = rng.random((3, 3))
    want = _kernel_step_reference(x, y, mask, (3, 3), 1e-3)
    np.testing.assert_allclose(km._kernel_step(x, y, mask, k0, 1e-3), want, rtol=1e-6, atol=1e-9)
    # started at the solution, CG stops at once and returns it
    np.testing.assert_allclose(km._kernel_step(x, y, mask, want, 1e-3), want, rtol=1e-9, atol=1e-12)


def test_kernel_step_of_a_flat_image_is_the_identity():
    k = km._kernel_step(np.full((10, 10), 0.3), np.random.default_rng(0).random((10, 10)),
                        np.ones((10, 10), bool), np.full((5, 5), 1 / 25), 1e-3)
    want = np.zeros((5, 5))
    want[2, 2] = 1.0
    np.testing.assert_array_equal(k, want)


# --------------------------------------------------------------------------- the clean-up
def test_clean_removes_a_small_isolated_piece_but_keeps_a_diagonal_neighbour():
    k = np.zeros((11, 11))
    k[5, 3:8] = 1.0   # the path, centred: nothing moves
    k[6, 8] = 0.2     # touches the path's end diagonally: the same 8-connected piece
    k[9, 1] = 0.3     # alone: 0.3 / 5.5 < 10 % of the mass
    out = km._clean(k)
    want = np.zeros((11, 11))
    want[5, 3:8] = 1.0
    want[6, 8] = 0.2
    np.testing.assert_allclose(out, want / 5.2, atol=1e-15)


def test_clean_keeps_a_separate_piece_of_at_least_a_tenth_of_the_mass():
    k = np.zeros((11, 11))
    k[5, 3:8] = 0.9   # 4.5
    k[1, 1] = 0.5     # 0.5 = 10 % of 5.0 exactly: kept (only pieces below a tenth go)
    out = km._clean(k)
    assert out[1, 1] > 0 and out.sum() == pytest.approx(1.0)
    assert np.count_nonzero(out) == 6


def test_clean_cuts_values_at_five_percent_of_the_peak():
    k = np.zeros((9, 9))
    k[4, 2:7] = 1.0
    k[3, 4] = 0.05    # exactly 5 % of the peak: cut (only larger values stay)
    k[5, 4] = 0.06    # above: kept
    out = km._clean(k)
    assert out[3, 4] == 0 and out[5, 4] > 0
    assert out.sum() == pytest.approx(1.0)


def test_clean_renormalises_after_centring_pushes_mass_out():
    k = np.zeros((11, 11))
    k[1, 1:4] = 1.0   # mass 3 near the top
    k[10, 10] = 1.0   # a quarter of the mass in the far corner: kept as a piece
    out = km._clean(k)
    # the centroid row (3·1 + 10)/4 = 3.25 moves down by 2, the column (3·2 + 10)/4 = 4 by 1:
    # the corner pixel leaves the window, and the rest sums to 1 again
    want = np.zeros((11, 11))
    want[3, 2:5] = 1 / 3
    np.testing.assert_allclose(out, want, atol=1e-15)


# --------------------------------------------------------------------------- the pyramid
def test_estimate_one_runs_the_pyramid_from_a_two_tap_start(monkeypatch):
    """Coarse to fine: each level's kernel side, the image resized with linear interpolation and
    anti-aliasing, the first kernel a centred horizontal pair of 0.5, every later level starting
    from the previous kernel resized to the new side."""
    calls = []

    def latent(y, k, lam):
        calls.append(("latent", y.copy(), k.copy(), lam))
        return y

    def step(x, y, mask, k0, reg):
        calls.append(("kernel", k0.shape))
        return k0

    monkeypatch.setattr(km, "_latent_l0", latent)
    monkeypatch.setattr(km, "_kernel_step", step)
    g = ndimage.gaussian_filter(np.random.default_rng(0).random((48, 40)), 1.0)
    km._estimate_one(g, 9, 2, 1e-3, 512)
    levels = km._n_levels(9)
    assert levels == 2  # 9 px, then 9/√2 ≈ 6.4 → 7 px; 9/2 would be below 5 px
    latents = [c for c in calls if c[0] == "latent"]
    assert len(latents) == 2 * levels and len(calls) == 4 * levels
    assert [c[2].shape[0] for c in latents[::2]] == [7, 9]
    first = latents[0][2]
    want = np.zeros((7, 7))
    want[3, 2:4] = 0.5
    np.testing.assert_array_equal(first, want)
    # λ decays by 1.1 within a level and restarts at 4e-3 at each level
    assert [c[3] for c in latents] == pytest.approx([4e-3, 4e-3 / 1.1] * levels)
    # the coarse image: g resized by 1/√2 (48×40 → 34×28), made periodic with a 7 px margin
    from skimage.transform import resize

    ys = resize(g, (34, 28), order=1, anti_aliasing=True, mode="edge")
    np.testing.assert_allclose(latents[0][1], km._smooth_periodic(ys, 7)[0], atol=1e-15)
    np.testing.assert_allclose(latents[2][1], km._smooth_periodic(g, 9)[0], atol=1e-15)  # the finest: g itself
    # the next level starts from the coarse kernel resized (linear) to 9×9 and cleaned
    nxt = km._clean(np.clip(resize(first, (9, 9), order=1, mode="constant"), 0.0, None))
    np.testing.assert_allclose(latents[2][2], nxt, atol=1e-15)


def test_estimate_one_keeps_coarse_images_at_least_eight_pixels(monkeypatch):
    seen = []
    monkeypatch.setattr(km, "_latent_l0", lambda y, k, lam: seen.append(y.copy()) or y)
    monkeypatch.setattr(km, "_kernel_step", lambda x, y, mask, k0, reg: k0)
    g = np.random.default_rng(0).random((10, 11))
    km._estimate_one(g, 9, 1, 1e-3, 512)
    # the coarse level would be 7 × 8 (10/√2, 11/√2): 8 × 8, then made periodic with a 7 px margin
    from skimage.transform import resize

    coarse = resize(g, (8, 8), order=1, anti_aliasing=True, mode="edge")
    np.testing.assert_allclose(seen[0], km._smooth_periodic(coarse, 7)[0], atol=1e-15)
    np.testing.assert_allclose(seen[1], km._smooth_periodic(g, 9)[0], atol=1e-15)


def test_estimate_one_crops_only_photos_larger_than_max_side(monkeypatch):
    seen = []
    monkeypatch.setattr(km, "_latent_l0", lambda y, k, lam: y)
    monkeypatch.setattr(km, "_kernel_step", lambda x, y, mask, k0, reg: seen.append(int(mask.sum())) or k0)
    g = np.random.default_rng(0).random((40, 32))
    km._estimate_one(g, 3, 1, 1e-3, 40)  # the longer side equals max_side: not cropped
    km._estimate_one(g, 3, 1, 1e-3, 39)  # one more pixel than allowed: the central 39 × 32
    assert seen == [40 * 32, 39 * 32]


def test_estimate_kernel_defaults_reach_the_estimator(monkeypatch):
    seen = []
    monkeypatch.setattr(km, "_estimate_one", lambda g, size, iterations, reg, max_side:
                        seen.append((size, iterations, max_side)) or np.eye(size) / size)
    km.estimate_kernel(np.random.default_rng(0).random((32, 32)), 9, denoise=False)
    assert seen == [(9, 10, 512)]


@pytest.mark.parametrize("bad", [np.array([[0.5, -0.1, 0.6]]), np.array([[np.nan, 1.0]]), np.zeros((2, 2))])
def test_kernel_length_refuses_negative_non_finite_and_empty_mass(bad):
    with pytest.raises(ValueError, match="^kernel must be finite and non-negative with a positive sum$"):
        km.kernel_length(bad)


def test_kernel_length_of_an_integer_kernel():
    # four unit taps: second moment (2.25 + 0.25 + 0.25 + 2.25) / 4 about their centre
    assert km.kernel_length(np.array([[1, 1, 1, 1]])) == pytest.approx(math.sqrt(12 * 1.25), rel=1e-15)
