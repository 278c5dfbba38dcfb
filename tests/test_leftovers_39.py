"""Leftovers of the audits: each case failed (or passed silently) on the code before its fix."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pnpdeblur import cli
from pnpdeblur.train import deblurnets as R


class _Work(AssertionError):
    """Raised where the run would have begun reading photos (not caught by the command line)."""


@pytest.fixture
def no_photos(monkeypatch):
    """Nets are built for real; reading the photos and the trainer are stood in for."""
    from pnpdeblur.train import engine

    def work(*args, **kwargs):
        raise _Work("the run reached its photos")

    monkeypatch.setattr(R, "training_sources", work)
    monkeypatch.setattr(engine.Trainer, "__init__", work)
    monkeypatch.delenv("PNPDEBLUR_DEBUG", raising=False)


def _train(capsys, recipe, *argv):
    rc = cli.main(["train", recipe, "--device", "cpu", *map(str, argv)])
    return rc, capsys.readouterr().err


def _one_step(name, argv):
    """Run net ``name``'s training view (and its discriminator) on one batch of the crop of ``argv``.

    What the first training step does; raises what it raised there.
    """
    args = R.parse_args(name, argv)
    spec = R.SPECS[name]
    net = R.build_net(name, small=True, **R.check_args(name, args)).train()  # DVD's frames from --frames
    c = net.config.get("in_channels", 3)
    shape = (args.batch, c, args.crop, args.crop)
    if spec.kind == "flow":
        net.forward_multiscale(torch.rand(shape), torch.rand(shape))
        return
    if spec.kind == "video":
        shape = (args.batch, c * args.frames, args.crop, args.crop)
    out = net.forward_multiscale(torch.rand(shape))[-1]
    if spec.adversarial and args.adv_weight > 0:
        R._net_class(spec, spec.discriminator)(**spec.disc_small)(out)


# -- 1a: --crop against each deblurnet's stride ---------------------------------------------------
CROP_REFUSED = [
    ("flownets", ["--crop", "16"], "--crop must be a multiple of FlowNetS.stride = 64 (its down-sampling), got 16"),
    ("flownets", ["--crop", "96"], "--crop must be a multiple of FlowNetS.stride = 64"),
    ("deepdeblur", ["--crop", "18"], "--crop must be a multiple of DeepDeblur.stride = 4 (its down-sampling), got 18"),
    # the stride follows the built net: four scales down-sample by 8
    ("deepdeblur", ["--crop", "12", "--config", '{"scales": 4}'], "--crop must be a multiple of DeepDeblur.stride = 8"),
    ("deblurnet", ["--crop", "6"], "--crop must be a multiple of DeblurNet.stride = 4 (its down-sampling), got 6"),
    ("dvd", ["--crop", "12", "--frames", "3"], "--crop must be a multiple of DVD.stride = 8 (its down-sampling)"),
    ("deblurgan", ["--crop", "10"], "--crop must be a multiple of DeblurGANGenerator.stride = 4"),
    # batch norm at the coarsest level: one value per channel with --batch 1
    ("deblurnet", ["--crop", "4", "--batch", "1"], "--crop 4 with --batch 1 leaves one value per channel at "
                                                   "DeblurNet's coarsest level (batch norm needs two)"),
    ("dvd", ["--crop", "8", "--batch", "1", "--frames", "3"], "--crop 8 with --batch 1 leaves one value per channel"),
    # the critic of DeblurGAN's WGAN-GP term
    ("deblurgan", ["--crop", "4"], "--crop must be >= 8 for DeblurGANCritic (--adv-weight 0.01 > 0), got 4"),
]
CROP_ACCEPTED = [
    ("flownets", ["--crop", "64"]),
    ("deepdeblur", ["--crop", "4"]),
    ("deepdeblur", ["--crop", "8", "--config", '{"scales": 4}']),
    ("deblurnet", ["--crop", "4", "--batch", "2"]),
    ("dvd", ["--crop", "8", "--batch", "2", "--frames", "3"]),
    ("deblurgan", ["--crop", "4", "--adv-weight", "0"]),
    ("deblurgan", ["--crop", "8"]),
]


@pytest.mark.parametrize("name, argv, message", CROP_REFUSED)
def test_a_crop_the_net_cannot_take_is_refused_before_the_photos(capsys, no_photos, name, argv, message):
    rc, err = _train(capsys, name, "--small", *argv)
    assert rc == 1
    assert err.startswith(f"pnpdeblur train {name}: error: {message}") and err.count("\n") == 1


@pytest.mark.parametrize("name, argv", CROP_ACCEPTED)
def test_a_crop_the_net_takes_reaches_the_photos(capsys, no_photos, name, argv):
    with pytest.raises(_Work):
        _train(capsys, name, "--small", *argv)


@pytest.mark.parametrize("name, argv", [case[:2] for case in CROP_REFUSED])
def test_each_refused_crop_fails_the_first_training_step(one_torch_thread, name, argv):
    with pytest.raises((ValueError, RuntimeError)):
        _one_step(name, argv)


@pytest.mark.parametrize("name, argv", CROP_ACCEPTED)
def test_each_accepted_crop_runs_the_first_training_step(one_torch_thread, name, argv):
    _one_step(name, argv)


# -- 1b: --init with a corrupt file names the option ----------------------------------------------
@pytest.fixture
def no_recipe_photos(monkeypatch, no_photos):
    """Every recipe with --init: its photo reading stood in for (nets are built for real)."""
    import pnpdeblur.train.dncnn as dncnn
    import pnpdeblur.train.drunet as drunet
    import pnpdeblur.train.sen as sen

    def work(*args, **kwargs):
        raise _Work("the run reached its photos")

    for module, name in ((sen, "training_sources"), (drunet, "training_photos"), (dncnn, "training_photos")):
        monkeypatch.setattr(module, name, work)


@pytest.mark.parametrize("recipe, small", [("deblurnet", ["--small"]), ("sen", []), ("drunet", ["--small"]),
                                           ("dncnn", [])])
def test_a_corrupt_init_file_is_named_with_its_option(capsys, no_recipe_photos, tmp_path, recipe, small):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    rc, err = _train(capsys, recipe, *small, "--init", bad, "--out", tmp_path / "out.safetensors")
    assert rc == 1
    assert err.startswith(f"pnpdeblur train {recipe}: error: --init: {bad} is not a readable safetensors file")
    assert err.count("\n") == 1


def test_init_of_another_net_or_config_is_named_with_its_option(tmp_path):
    from pnpdeblur.checkpoints import CheckpointError
    from pnpdeblur.nets import DnCNN
    from pnpdeblur.train._cli import initialise_from

    saved = DnCNN(channels=3, features=4, depth=3).save(tmp_path / "d.safetensors")
    with pytest.raises(CheckpointError, match=f"^--init: {saved} holds a 'DnCNN' checkpoint, expected 'DRUNet'"):
        initialise_from(DnCNN(channels=3, features=4, depth=3), saved, "DRUNet")
    with pytest.raises(ValueError, match=f"^--init: {saved} holds DnCNN"):
        initialise_from(DnCNN(channels=1, features=4, depth=3), saved, "DnCNN")
    with pytest.raises(CheckpointError, match="^--init: checkpoint not found: "):
        initialise_from(DnCNN(channels=3, features=4, depth=3), tmp_path / "missing.safetensors", "DnCNN")


# -- 1c: --root is read only by --data gopro ------------------------------------------------------
@pytest.mark.parametrize("data", [[], ["--data", "video"], ["--data", "flow"]])
def test_root_without_gopro_data_is_refused(capsys, no_photos, tmp_path, data):
    rc, err = _train(capsys, "deepdeblur", "--small", *data, "--root", tmp_path)
    assert rc == 1
    kind = data[1] if data else "video"
    assert err.startswith(f"pnpdeblur train deepdeblur: error: --root is read only with --data gopro, "
                          f"got --data {kind}")



# -- 1d: RP-GAN's smallest crop --------------------------------------------------------------------
@pytest.mark.parametrize("crop", [-1, 0, 1, 4, 7])
def test_rpgan_refuses_a_crop_under_its_minimum(capsys, crop):
    from pnpdeblur.train.rpgan import MIN_CROP, parse_args

    assert MIN_CROP == 8
    with pytest.raises(SystemExit) as e:
        parse_args(["--crop", str(crop)])
    assert e.value.code == 2
    assert (f"error: --crop must be >= 8 (the generator works at 1/4 of it, where batch norm needs 2×2 values), "
            f"got {crop}") in capsys.readouterr().err


def test_rpgan_accepts_its_minimum_crop():
    from pnpdeblur.train.rpgan import parse_args

    assert parse_args(["--crop", "8", "--flows", "true"]).crop == 8


def test_rpgan_minimum_crop_is_what_the_generator_needs_with_batch_one(one_torch_thread):
    """Why 8: at 2·stride the generator's 1/4-resolution batch norm has 2×2 values with --batch 1; at one stride
    it has one and fails (the critics pad their inputs, so they set no minimum)."""
    from pnpdeblur.nets.rpgan import ArtifactCritic, ConditionalDiscriminator, RPGANGenerator
    from pnpdeblur.train.rpgan import MIN_CROP

    torch.manual_seed(0)
    gen = RPGANGenerator(3, 4, 1).train()
    x = torch.rand(1, 3, MIN_CROP, MIN_CROP)
    assert gen(x, x).shape == x.shape
    assert ConditionalDiscriminator(3, 4).train()(x, x).numel() >= 1 and ArtifactCritic(3, 4).train()(x).numel() >= 1
    small = torch.rand(1, 3, RPGANGenerator.stride, RPGANGenerator.stride)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        gen(small, small)


# -- 3: tv_prox and tv_norm take the dtypes TV takes -------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_tv_functions_refuse_half_precision_as_tv_does(dtype):
    from pnpdeblur.priors import TV, tv_norm, tv_prox

    z = torch.rand(1, 3, 8, 8).to(dtype)
    with pytest.raises(TypeError) as tv:
        TV()(z, 0.1)
    name = str(dtype).removeprefix("torch.")
    assert str(tv.value) == f"z must be float32 or float64, got dtype {name} (convert half precision to float32 first)"
    with pytest.raises(TypeError) as prox:
        tv_prox(z, 0.1)
    assert str(prox.value) == str(tv.value)  # the same words for the same input
    with pytest.raises(TypeError) as prox0:
        tv_prox(z, 0.0)  # not even the weight-0 copy
    assert str(prox0.value) == str(tv.value)
    with pytest.raises(TypeError, match=f"^x must be float32 or float64, got dtype {name} "):
        tv_norm(z)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tv_functions_keep_taking_single_and_double(dtype):
    from pnpdeblur.priors import TV, tv_norm, tv_prox

    z = torch.rand(1, 3, 8, 8, dtype=dtype)
    assert tv_prox(z, 0.1, iters=3).dtype == TV()(z, 0.1).dtype == dtype
    assert tv_norm(z).dtype == dtype


# -- 4: the scikit-image priors give no gradient, so they refuse a z that asks for one ---------------
def _skimage_priors():
    from pnpdeblur import priors

    return {"SkimageTV": priors.SkimageTV, "Wavelet": priors.Wavelet, "NLMeans": priors.NLMeans,
            "Bilateral": priors.Bilateral,
            "SkimageDenoiser": lambda: priors.SkimageDenoiser(lambda x, **kw: x * 0.5, lambda s: {})}


@pytest.mark.parametrize("name", sorted(_skimage_priors()))
def test_skimage_priors_refuse_a_z_that_requires_grad(name):
    prior = _skimage_priors()[name]()
    z = torch.rand(1, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=f"^z requires grad, but {name} runs scikit-image on numpy arrays and gives "
                                         r"no gradient: pass z\.detach\(\) or call it under torch\.no_grad\(\)"):
        prior(z, 0.05)
    # the ways out the message names give the same result as a tensor that never asked for a gradient
    plain = prior(z.detach(), 0.05)
    with torch.no_grad():
        torch.testing.assert_close(prior(z, 0.05), plain, rtol=0, atol=0)
    assert not plain.requires_grad
    # sigma = 0 is the identity, which keeps the gradient: nothing to refuse
    out = prior(z, 0.0)
    out.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))


def test_bm3d_refuses_a_z_that_requires_grad():
    """BM3D runs the bm3d package on numpy arrays: the same refusal as the scikit-image priors."""
    pytest.importorskip("bm3d")
    from pnpdeblur import priors

    prior = priors.BM3D()
    z = torch.rand(1, 1, 16, 16, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=r"^z requires grad, but BM3D runs the bm3d package on numpy arrays and "
                                         r"gives no gradient: pass z\.detach\(\)"):
        prior(z, 0.05)
    with torch.no_grad():  # bm3d is not bitwise repeatable between two calls (1e-7 apart): a tolerance
        torch.testing.assert_close(prior(z, 0.05), prior(z.detach(), 0.05), rtol=0, atol=1e-5)


def test_hqs_asked_for_gradients_through_a_skimage_prior_says_so():
    import pnpdeblur as pd

    flow = torch.ones(1, 2, 12, 12, dtype=torch.float64)
    K = pd.MotionBlur(flow)
    y = K(torch.rand(1, 3, 12, 12, dtype=torch.float64)).requires_grad_()
    with pytest.raises(ValueError, match="^z requires grad, but SkimageTV runs scikit-image"):
        pd.solvers.hqs(y, K, pd.priors.SkimageTV(), 0.01, n_iter=1, differentiable=True)
    res = pd.solvers.hqs(y, K, pd.priors.SkimageTV(), 0.01, n_iter=1)  # no graph asked for: runs
    assert torch.isfinite(res.x).all()


# -- 5: synthesize_flow_blur blurs light, not alpha -----------------------------------------------
def test_synthesize_flow_blur_keeps_rgba_alpha_as_given():
    import numpy as np

    from pnpdeblur.data import synthesize_flow_blur

    rng = np.random.default_rng(0)
    colour = rng.random((20, 24, 3)).astype(np.float32)
    alpha = np.zeros((20, 24, 1), np.float32)
    alpha[5:15, 6:18] = 1.0  # an opaque rectangle on a transparent ground: blurring would soften its edge
    flow = np.stack([np.full((20, 24), 6.0), np.full((20, 24), 2.0)]).astype(np.float32)
    s = synthesize_flow_blur(np.concatenate((colour, alpha), -1), flow=flow, noise_sigma=0.05, seed=3)
    plain = synthesize_flow_blur(colour, flow=flow, noise_sigma=0.05, seed=3)
    assert s.blurred.shape == (20, 24, 4) and s.blurred.dtype == np.float32
    np.testing.assert_array_equal(s.blurred[..., 3:], alpha)  # neither blurred nor noised
    np.testing.assert_array_equal(s.blurred[..., :3], plain.blurred)  # the colours as without alpha
    np.testing.assert_array_equal(s.sharp[..., 3:], alpha)
    assert not np.array_equal(plain.blurred, colour)  # the colours were blurred


@pytest.mark.parametrize("channels", [1, 2, 3, 5])
def test_synthesize_flow_blur_blurs_every_channel_of_other_images(channels):
    import numpy as np

    from pnpdeblur.data import synthesize_flow_blur

    x = np.zeros((16, 16, channels), np.float32)
    x[:, 8:] = 1.0  # an edge in every channel
    flow = np.stack([np.full((16, 16), 6.0), np.zeros((16, 16))]).astype(np.float32)
    b = synthesize_flow_blur(x, flow=flow, seed=0).blurred
    assert b.shape == x.shape and all(0 < b[8, 8, c] < 1 for c in range(channels))


def test_video_synthesis_drops_rgba_alpha_as_the_photo_functions_do():
    """An RGBA photo's alpha is coverage, not light: the GOPRO-style synthesis films its colours,
    exactly as the RGB photo alone (same seed), instead of warping and averaging the alpha too."""
    from pnpdeblur.data import synthesize_video_blur, synthesize_video_sequence

    rng = np.random.default_rng(5)
    rgb = rng.random((40, 44, 3))
    alpha = rng.random((40, 44, 1))  # a varying alpha: blurring it would show
    rgba = np.concatenate((rgb, alpha), axis=-1)
    kw = dict(shape=(24, 28), n_frames=5, max_blur=4.0, seed=3)
    a, b = synthesize_video_blur(rgba, **kw), synthesize_video_blur(rgb, **kw)
    assert a.blurred.shape == (24, 28, 3)
    np.testing.assert_array_equal(a.blurred, b.blurred)
    np.testing.assert_array_equal(a.sharp, b.sharp)
    s, t = synthesize_video_sequence(rgba, n_blurred=2, **kw), synthesize_video_sequence(rgb, n_blurred=2, **kw)
    np.testing.assert_array_equal(s.blurred, t.blurred)
