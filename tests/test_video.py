"""Frame-averaging video synthesis: exact flows, GOPRO averaging, agreement with the operators."""
import math

import numpy as np
import pytest

from pnpdeblur.data import (
    CameraPath,
    average_frames,
    random_camera_path,
    render_frames,
    sample_image,
    synthesize_video_blur,
)
from pnpdeblur.metrics import psnr


@pytest.fixture(scope="module")
def photo():
    return sample_image("astronaut", 160, channels=3).astype(np.float64)


def _crop(z, m=12):
    return z[m:-m, m:-m]


def test_average_frames_gamma_closed_form():
    fr = np.stack([np.full((2, 2, 1), 0.0), np.full((2, 2, 1), 1.0)])
    np.testing.assert_allclose(average_frames(fr, gamma=None), 0.5)
    np.testing.assert_allclose(average_frames(fr, gamma=2.2), 0.5 ** (1 / 2.2))
    with pytest.raises(ValueError):
        average_frames(fr[0])


def test_integer_translation_is_box_average(photo):
    # velocity 1 px/frame to the right, linear averaging: blurred = mean of 7 shifted crops
    path = CameraPath(velocity=(1.0, 0.0))
    s = synthesize_video_blur(photo, shape=(100, 100), n_frames=7, path=path, gamma=None, return_frames=True)
    ox, oy = s.meta["origin"]
    np.testing.assert_allclose(s.sharp, photo[oy:oy + 100, ox:ox + 100], atol=1e-6)
    want = np.mean([photo[oy:oy + 100, ox + k:ox + k + 100] for k in range(-3, 4)], axis=0)
    np.testing.assert_allclose(s.blurred, want, atol=1e-5)
    # the content moves left by 7 px per blurred frame; exposure covers 7 px
    np.testing.assert_allclose(s.flow_next[0], -7.0, atol=1e-5)
    np.testing.assert_allclose(s.flow_prev[0], 7.0, atol=1e-5)
    np.testing.assert_allclose(np.abs(s.exposure_flow[0]), 7.0, atol=1e-5)
    np.testing.assert_allclose(s.flow_next[1], 0.0, atol=1e-6)
    assert s.frames.shape == (7, 100, 100, 3)


def test_flows_closed_form_rotation_and_zoom():
    path = CameraPath(omega=0.01, zeta=0.02, center=(10.0, 5.0), velocity=(0.5, -0.25))
    shape = (20, 30)
    # a scene point seen at p in the middle frame is rendered at p'(τ) at time τ: q(p'(τ), τ) = q(p, 0)
    for tau in (-5.0, 3.0):
        pp = path.scene_position(shape, tau)
        q = CameraPath.source_coords(path, shape, tau)
        y, x = np.mgrid[0:20, 0:30].astype(float)
        # evaluate q at the (non-grid) points pp with the closed form
        s, th = math.exp(path.zeta * tau), path.omega * tau
        dx, dy = pp[0] - 10.0, pp[1] - 5.0
        qx = 10.0 + s * (math.cos(th) * dx - math.sin(th) * dy) + 0.5 * tau
        qy = 5.0 + s * (math.sin(th) * dx + math.cos(th) * dy) - 0.25 * tau
        np.testing.assert_allclose(qx, x, atol=1e-9)
        np.testing.assert_allclose(qy, y, atol=1e-9)
        assert q.shape == (2, 20, 30)
    np.testing.assert_allclose(path.flow(shape, 0.0), 0.0, atol=1e-12)


def test_reblur_matches_averaged_translation_linear(photo):
    from pnpdeblur.operators import MotionBlur, TwoSegmentBlur

    for seed in (0, 1):
        s = synthesize_video_blur(photo, n_frames=9, motion="translation", max_blur=16, min_blur=8,
                                  gamma=None, seed=seed)
        mb = MotionBlur(s.exposure_flow)(s.sharp)
        ts = TwoSegmentBlur(s.flow_next, s.flow_prev, tau=0.5)(s.sharp)
        assert psnr(_crop(mb), _crop(s.blurred)) > 35
        assert psnr(_crop(ts), _crop(s.blurred)) > 35
        # and the blur is substantial (the check is not trivially satisfied)
        assert psnr(_crop(s.sharp), _crop(s.blurred)) < 30


def test_rotation_zoom_reblur_better_than_no_blur(photo):
    from pnpdeblur.operators import MotionBlur

    for motion in ("rotation", "zoom", "mixed"):
        s = synthesize_video_blur(photo, n_frames=9, motion=motion, max_blur=16, min_blur=10, gamma=None, seed=3)
        reblur = psnr(_crop(MotionBlur(s.exposure_flow)(s.sharp)), _crop(s.blurred))
        assert reblur > 33, motion
        assert reblur > psnr(_crop(s.sharp), _crop(s.blurred)) + 8


def test_gamma_changes_blur_and_ranges(photo):
    a = synthesize_video_blur(photo, n_frames=7, motion="translation", gamma=2.2, seed=5)
    b = synthesize_video_blur(photo, n_frames=7, motion="translation", gamma=None, seed=5)
    np.testing.assert_allclose(a.sharp, b.sharp, atol=2e-6)  # the middle frame is the photo crop
    assert np.abs(a.blurred - b.blurred).max() > 0.01  # linear-intensity averaging differs
    for s in (a, b):
        assert s.blurred.dtype == np.float32 and s.blurred.min() >= 0 and s.blurred.max() <= 1
        assert s.flow_next.shape == (2,) + s.sharp.shape[:2]


def test_random_n_frames_seed_and_foreground(photo):
    s1 = synthesize_video_blur(photo, seed=7, foreground=True)
    s2 = synthesize_video_blur(photo, seed=7, foreground=True)
    assert s1.n_frames in (7, 9, 11, 13) and s1.n_frames % 2 == 1
    assert np.array_equal(s1.blurred, s2.blurred)
    assert np.array_equal(s1.flow_next, s2.flow_next)
    m = s1.foreground_mask > 0.5
    assert 0 < m.mean() < 0.5
    # inside the layer the flow is the layer's constant motion
    fn = s1.flow_next[:, m]
    assert np.allclose(fn, fn[:, :1])
    ns = {synthesize_video_blur(photo, seed=k, max_blur=4).n_frames for k in range(12)}
    assert len(ns) > 1


def test_random_camera_path_budget():
    for motion in ("translation", "rotation", "zoom", "mixed"):
        p = random_camera_path((64, 80), 9, motion, max_blur=12, min_blur=6, seed=2)
        disp = p.scene_position((64, 80), 4.5) - p.scene_position((64, 80), -4.5)
        peak = np.hypot(disp[0], disp[1]).max()
        assert 4 < peak < 16, (motion, peak)


@pytest.mark.parametrize("kwargs,exc", [
    (dict(n_frames=8), ValueError),
    (dict(motion="shake"), ValueError),
    (dict(shape=(500, 500)), ValueError),
    (dict(gamma=-1.0), ValueError),
    (dict(path="x"), TypeError),
])
def test_bad_arguments(photo, kwargs, exc):
    with pytest.raises(exc):
        synthesize_video_blur(photo, seed=0, **kwargs)


def test_bad_images():
    with pytest.raises(ValueError):
        synthesize_video_blur(np.full((64, 64), 2.0), seed=0, max_blur=4)
    with pytest.raises(ValueError):
        synthesize_video_blur(np.full((64, 64), np.nan), seed=0, max_blur=4)
    with pytest.raises(TypeError):
        synthesize_video_blur([[0.0]], seed=0)


def test_render_frames_middle_is_exact_crop(photo):
    fr = render_frames(photo, (50, 60), CameraPath(omega=0.05, center=(3.0, 4.0)), [0.0, 1.0], origin=(10, 20))
    np.testing.assert_allclose(fr[0], photo[20:70, 10:70], atol=1e-9)
    assert np.abs(fr[1] - fr[0]).max() > 0.05


def test_sequence_consistent_with_single_and_flows_warp(photo):
    from scipy.ndimage import map_coordinates

    from pnpdeblur.data import synthesize_video_sequence

    seq = synthesize_video_sequence(photo, 3, motion="mixed", n_frames=7, max_blur=8, min_blur=6,
                                    gamma=None, seed=4)
    assert seq.blurred.shape[0] == 3 and seq.flows_next.shape == (3, 2) + seq.blurred.shape[1:3]
    single = synthesize_video_blur(photo, shape=seq.sharp.shape[1:3], n_frames=7, path=seq.path, gamma=None)
    np.testing.assert_allclose(seq.blurred[1], single.blurred, atol=1e-6)
    np.testing.assert_allclose(seq.flows_next[1], single.flow_next, atol=1e-4)
    # sharp[k+1] sampled at p + flows_next[k](p) reproduces sharp[k] (away from borders)
    h, w = seq.sharp.shape[1:3]
    y, x = np.mgrid[0:h, 0:w].astype(float)
    for k in range(2):
        f = seq.flows_next[k]
        warped = np.stack([map_coordinates(seq.sharp[k + 1][..., c], [y + f[1], x + f[0]], order=3)
                           for c in range(3)], -1)
        assert psnr(warped[10:-10, 10:-10], seq.sharp[k][10:-10, 10:-10]) > 35
        # and flows_prev of the next frame points back
        fb = seq.flows_prev[k + 1]
        back = np.stack([map_coordinates(f[c], [y + fb[1], x + fb[0]], order=1) for c in range(2)])
        np.testing.assert_allclose((back + fb)[:, 10:-10, 10:-10], 0.0, atol=0.05)
    with pytest.raises(ValueError):
        synthesize_video_sequence(photo, 0, seed=0)


@pytest.mark.parametrize("n_frames", [0, -5, 2.5, True])
def test_random_camera_path_rejects_bad_n_frames(n_frames):
    # n_frames=0 used to return a path with infinite velocity and rates
    with pytest.raises(ValueError, match="n_frames"):
        random_camera_path((32, 32), n_frames, seed=0)
