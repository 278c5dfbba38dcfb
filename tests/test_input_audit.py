"""Bad arguments to public functions raise a TypeError/ValueError that names the argument.

Cases found by fuzzing the public API (wrong types, NaN/Inf, out-of-range sizes) that used to
pass silently, fail deep inside, or blame another argument.
"""
import numpy as np
import pytest
import torch

from pnpdeblur import priors


# -- priors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make, arg", [
    (lambda v: priors.SkimageTV(scale=v), "scale"),
    (lambda v: priors.NLMeans(h_scale=v), "h_scale"),
    (lambda v: priors.Bilateral(color_scale=v), "color_scale"),
    (lambda v: priors.Bilateral(sigma_spatial=v), "sigma_spatial"),
    (lambda v: priors.TV(tol=v), "tol"),
])
@pytest.mark.parametrize("value, error", [(float("nan"), ValueError), (float("inf"), ValueError),
                                          (-1.0, ValueError), ("1", TypeError), (True, TypeError)])
def test_prior_scalars_are_checked_when_made(make, arg, value, error):
    with pytest.raises(error, match=arg):
        make(value)


def test_bilateral_sigma_spatial_must_be_positive():
    with pytest.raises(ValueError, match="sigma_spatial"):
        priors.Bilateral(sigma_spatial=0.0)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_tv_coupled_must_be_bool(value):
    with pytest.raises(TypeError, match="coupled"):
        priors.TV(coupled=value)


def test_tv_iters_refuses_bool():
    with pytest.raises(ValueError, match="iters"):
        priors.TV(iters=True)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_tv_norm_refuses_nonfinite(bad):
    x = torch.rand(1, 3, 8, 8)
    x[0, 0, 2, 2] = bad
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        priors.tv_norm(x)


# -- solvers ---------------------------------------------------------------------------------
from pnpdeblur import operators, solvers  # noqa: E402


def _flow(h=16, w=16):
    return np.full((2, h, w), 1.5, np.float32)


@pytest.mark.parametrize("value, error", [(float("nan"), ValueError), (float("inf"), ValueError),
                                          (-1.0, ValueError), ("0.1", TypeError), ([0.1], TypeError)])
def test_cg_atol_is_checked(value, error):
    b = np.ones((1, 4), np.float64)
    with pytest.raises(error, match="atol"):
        solvers.cg(lambda x: x, b, atol=value)


def test_cg_maxiter_refuses_bool():
    with pytest.raises(ValueError, match="maxiter"):
        solvers.cg(lambda x: x, np.ones((1, 4)), maxiter=True)


@pytest.mark.parametrize("rhos", [[float("nan"), 1.0], [-1.0], [], [0.0]])
def test_admm_schedule_errors_name_rhos(rhos):
    y = np.full((16, 16), 0.5, np.float32)
    with pytest.raises(ValueError, match="rhos"):
        solvers.admm(y, operators.MotionBlur(_flow()), lambda z, s: z, 0.01, rhos=rhos, cg_iters=2)


@pytest.mark.parametrize("shape", [(16,), (0, 16), (-1, 16), (16.5, 16), (True, 16), "ab", (8, 8)])
def test_uniform_preconditioner_shape_is_checked(shape):
    with pytest.raises(ValueError, match="shape"):
        solvers.UniformPreconditioner(operators.MotionBlur(_flow()), shape, torch.float64, "cpu")


@pytest.mark.parametrize("cls", [solvers.TiledPreconditioner, solvers.JacobiPreconditioner])
def test_preconditioner_shape_refuses_fractions(cls):
    with pytest.raises(ValueError, match="shape"):
        cls(operators.MotionBlur(_flow()), (16.5, 16), torch.float64, "cpu")


@pytest.mark.parametrize("cls", [solvers.UniformPreconditioner, solvers.TiledPreconditioner,
                                 solvers.JacobiPreconditioner])
def test_preconditioner_dtype_and_device_are_checked(cls):
    K = operators.MotionBlur(_flow())
    with pytest.raises(TypeError, match="dtype"):
        cls(K, (16, 16), torch.int64, "cpu")
    with pytest.raises(ValueError, match="device"):
        cls(K, (16, 16), torch.float64, "bogus")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_pad_boundary_checks_weights(bad):
    y = np.full((16, 16), 0.5, np.float32)
    w = np.ones((16, 16), np.float32)
    w[3, 3] = bad
    with pytest.raises(ValueError, match="weights"):
        solvers.pad_boundary(y, 2, weights=w)
    with pytest.raises(ValueError, match="weights"):
        solvers.pad_problem(y, operators.MotionBlur(_flow()), weights=w)


def test_pad_boundary_weights_dtype_and_empty_y():
    y = np.full((16, 16), 0.5, np.float32)
    with pytest.raises(TypeError, match="weights"):
        solvers.pad_boundary(y, 2, weights=np.ones((16, 16), np.int64))
    with pytest.raises(ValueError, match="y is empty"):
        solvers.pad_boundary(np.zeros((0, 16), np.float32), 2)


# -- metrics and figures ---------------------------------------------------------------------
from pnpdeblur import metrics, viz  # noqa: E402


@pytest.mark.parametrize("arg", ["K1", "K2"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.01, True, "0.01"])
def test_ssim_constants_are_checked(arg, value):
    x = np.random.default_rng(0).random((16, 16))
    with pytest.raises(ValueError, match=arg):
        metrics.ssim(x, x * 0.9, **{arg: value})


@pytest.mark.parametrize("value", [float("inf"), True])
def test_ssim_sigma_is_checked(value):
    x = np.random.default_rng(0).random((32, 32))
    with pytest.raises(ValueError, match="sigma"):
        metrics.ssim(x, x, gaussian_weights=True, sigma=value)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_comparison_figure_ncols_is_checked(value):
    x = np.zeros((8, 8))
    with pytest.raises(ValueError, match="ncols"):
        viz.comparison_figure([x, x], ncols=value)


# -- losses ----------------------------------------------------------------------------------
from pnpdeblur import losses  # noqa: E402


@pytest.mark.parametrize("weights, error", [([float("nan")], ValueError), ([float("inf")], ValueError),
                                            ([-1.0], ValueError), (["a"], TypeError)])
def test_multiscale_epe_weights_are_checked(weights, error):
    p = torch.zeros(1, 2, 8, 8)
    with pytest.raises(error, match=r"weights\[0\]"):
        losses.multiscale_epe([p], p, weights=weights)


def test_multiscale_epe_units_named_before_weights():
    p = torch.zeros(1, 2, 8, 8)
    with pytest.raises(ValueError, match="units"):
        losses.multiscale_epe([p], p, units="bogus")  # the default weights have 5 entries, not 1


def test_perceptual_loss_refuses_a_corrupt_weights_file(tmp_path):
    from pnpdeblur.checkpoints import CheckpointError

    for name in ("vgg.pth", "vgg.safetensors"):
        bad = tmp_path / name
        bad.write_bytes(b"not a weights file" * 8)
        with pytest.raises(CheckpointError, match="VGG16 weights"):
            losses.PerceptualLoss(bad)


@pytest.mark.parametrize("value", [3, None])
def test_perceptual_loss_weights_type(value):
    with pytest.raises(TypeError, match="weights"):
        losses.PerceptualLoss(value)


# -- solvers: the x-step's CG budget (reached from pd.deblur's cg_iters / cg_tol) ---------------
def test_hqs_cg_budget_is_checked():
    y = np.full((16, 16), 0.5, np.float32)
    K = operators.MotionBlur(_flow())
    with pytest.raises(ValueError, match="cg_iters"):
        solvers.hqs(y, K, priors.TV(), 0.01, cg_iters=True, n_iter=1)
    with pytest.raises(TypeError, match="cg_tol"):
        solvers.hqs(y, K, priors.TV(), 0.01, cg_tol="1e-4", n_iter=1)
    with pytest.raises(ValueError, match="cg_tol"):
        solvers.hqs(y, K, priors.TV(), 0.01, cg_tol=float("inf"), n_iter=1)


# -- blind entry points ----------------------------------------------------------------------
import pnpdeblur as pd  # noqa: E402
from pnpdeblur import estimation  # noqa: E402


def _photo(h=32, w=32):
    return np.random.default_rng(0).random((h, w)).astype(np.float32)


@pytest.mark.parametrize("value", ["sen.safetensors", 3, torch.nn.Conv2d(3, 2, 3)])
def test_deblur_flow_model_is_named(value):
    with pytest.raises(TypeError, match="flow_model"):
        pd.deblur(_photo(), flow_model=value)
    with pytest.raises(TypeError, match="flow_model"):
        pd.deblur_auto(_photo(), flow_model=value, kernel_size=5)


def test_deblur_shake_checks_prior_and_progress_before_the_safeguard(monkeypatch):
    import pnpdeblur.camera_shake as cs

    def fail(*a, **k):
        raise AssertionError("no kernel should be estimated for a bad argument")

    monkeypatch.setattr(cs, "estimate_kernel", fail)
    with pytest.raises(TypeError, match="prior"):
        pd.deblur_shake(_photo(), 5, prior="tv")
    with pytest.raises(TypeError, match="prior"):
        pd.deblur_shake(_photo(), 5, prior=3)
    with pytest.raises(TypeError, match="progress"):
        pd.deblur_shake(_photo(), 5, progress=1)


def test_deblur_checks_prior_before_any_flow(monkeypatch):
    import pnpdeblur.pipeline as pl

    def fail(*a, **k):
        raise AssertionError("no flow should be estimated for a bad argument")

    monkeypatch.setattr(pl, "estimate_flow", fail)
    with pytest.raises(TypeError, match="prior"):
        pd.deblur(_photo(), prior="tv", flow_model=pd.nets.SEN(width=4, levels=2))


def test_estimate_flow_scale_refuses_bool():
    with pytest.raises(ValueError, match="scale"):
        pd.estimate_flow(_photo(), pd.nets.SEN(width=4, levels=2), scale=True)


@pytest.mark.parametrize("dtype", [np.int64, np.complex64, np.bool_])
def test_blur_score_flow_must_be_float(dtype):
    flow = np.full((2, 32, 32), 2, dtype)
    with pytest.raises(TypeError, match="flow"):
        pd.blur_score(_photo(), flow=flow)
    with pytest.raises(TypeError, match="flow"):
        pd.is_blurred(_photo(), flow=torch.from_numpy(flow))


@pytest.mark.parametrize("indices, error", [([1.5], TypeError), ([], ValueError), ([True], TypeError),
                                            ("a", TypeError), (3, TypeError), ([None], TypeError)])
def test_neighbour_flows_indices_are_checked(indices, error):
    frames = torch.rand(3, 1, 16, 16)
    with pytest.raises(error, match="indices"):
        estimation.neighbour_flows(frames, indices=indices)


def test_neighbour_flows_refuses_a_0_255_clip():
    with pytest.raises(ValueError, match="frames"):
        estimation.neighbour_flows(torch.rand(3, 1, 16, 16) * 255, indices=[1])


@pytest.mark.parametrize("channels", [2, 4])
def test_neighbour_flows_tvl1_takes_grey_or_rgb_only(channels):
    # optical_flow refuses such frames; neighbour_flows averaged the planes (alpha included) into grey
    frames = torch.rand(3, channels, 16, 16)
    with pytest.raises(ValueError, match=rf"^frames must have 1 \(grey\) or 3 \(RGB\) channels for "
                                         rf"method='tvl1', got {channels} "):
        estimation.neighbour_flows(frames, indices=[1])
    # a flow network decides for itself what it takes
    seen = []

    def net(a, b):
        seen.append(a.shape[1])
        return torch.zeros(a.shape[0], 2, *a.shape[2:])

    fn, fp = estimation.neighbour_flows(frames, method=net, indices=[1])
    assert seen == [channels, channels] and torch.equal(fn[1], torch.zeros(2, 16, 16))


# -- leftovers of the first audit ------------------------------------------------------------
from pnpdeblur import data  # noqa: E402


@pytest.mark.parametrize("value", [float("inf"), True])
def test_pair_augment_noise_sigma_is_finite(value):
    with pytest.raises(ValueError, match="noise_sigma"):
        data.PairAugment(noise_sigma=value)


def test_pair_augment_saturation_is_finite():
    with pytest.raises(ValueError, match="saturation"):
        data.PairAugment(saturation=(0.5, float("inf")))


@pytest.mark.parametrize("arg", ["content", "cgan", "penalty"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_rpgan_generator_loss_refuses_nonfinite_terms(arg, bad):
    terms = {"content": torch.tensor(1.0), "cgan": torch.tensor(1.0), "penalty": torch.tensor(1.0)}
    terms[arg] = torch.tensor(bad)
    with pytest.raises(ValueError, match=arg):
        losses.rpgan_generator_loss(**terms)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64])
def test_flow_l2_loss_refuses_non_float(dtype):
    f = torch.ones(1, 2, 4, 4)
    with pytest.raises(TypeError, match="pred"):
        losses.flow_l2_loss(f.to(dtype), f)
    with pytest.raises(TypeError, match="target"):
        losses.flow_l2_loss(f, f.to(dtype))
    with pytest.raises(TypeError, match="symmetric"):
        losses.flow_l2_loss(f, f, symmetric=1)


@pytest.mark.parametrize("value, error", [(0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
                                          (float("inf"), ValueError), ("6", TypeError), (True, TypeError),
                                          (None, TypeError)])
def test_figure_widths_are_checked(value, error):
    x = np.zeros((16, 16))
    with pytest.raises(error, match="width"):
        viz.kernel_field_figure(x, np.ones((2, 16, 16)), width=value)
    with pytest.raises(error, match="width_per_image"):
        viz.comparison_figure([x, x], width_per_image=value)


@pytest.mark.parametrize("kind", ["dncnn", "drunet"])
def test_prior_from_weights_refuses_no_path(kind):
    with pytest.raises(TypeError, match="path"):
        priors.prior_from_weights(kind, None)


# -- training command line -------------------------------------------------------------------
def test_train_recipe_errors_are_one_line(capsys):
    from pnpdeblur import cli

    assert cli.main(["train", "sen", "--max-gain", "0"]) == 1  # was a ValueError traceback
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pnpdeblur train sen: error: --max-gain" in err


@pytest.mark.parametrize("option, value", [("--max-noise", "nan"), ("--max-noise", "-1"), ("--decay-from", "nan"),
                                           ("--decay-from", "2"), ("--presets", "x"), ("--presets", ",")])
def test_train_sen_checks_its_options(monkeypatch, option, value):
    from pnpdeblur.train import sen

    def reached(*args, **kwargs):  # past the checks: the run would have started
        raise AssertionError("trained with a bad option")

    monkeypatch.setattr(sen, "training_sources", reached)
    with pytest.raises(ValueError, match=option):
        sen.main([option, value])


@pytest.mark.parametrize("value", ["nan,1", "-1,1", "0,0", ","])
def test_train_rpgan_checks_proportions_before_any_work(monkeypatch, value):
    """The buffer is first built after the level-1 phase: a bad share must be refused at once."""
    from pnpdeblur.train import sen

    def reached(*args, **kwargs):  # past the checks: the run would have started
        raise AssertionError("started with bad --proportions")

    monkeypatch.setattr(sen, "training_sources", reached)
    from pnpdeblur.train import rpgan

    with pytest.raises(ValueError, match="--proportions"):
        rpgan.main([f"--proportions={value}"])


@pytest.mark.parametrize("option", ["--workers", "--val-items", "--log-every", "--val-every", "--ckpt-every"])
def test_engine_counts_must_not_be_negative(capsys, option):
    import argparse

    from pnpdeblur.train._cli import add_engine_arguments, parse_engine_args

    ap = argparse.ArgumentParser(prog="recipe")
    add_engine_arguments(ap, run_dir="runs/x", out_name="x.safetensors", val_items=4)
    assert parse_engine_args(ap, [f"{option}=0"]).out.name == "x.safetensors"
    with pytest.raises(SystemExit) as exit_info:
        parse_engine_args(ap, [f"{option}=-1"])
    assert exit_info.value.code == 2 and f"{option} must be >= 0, got -1" in capsys.readouterr().err


# -- networks --------------------------------------------------------------------------------
def _tiny_dncnn():
    from pnpdeblur.nets import DnCNN
    return DnCNN(channels=1, features=4, depth=3)


def _tiny_sen():
    from pnpdeblur.nets import SEN
    return SEN(width=4, stacks=1, levels=2)


@pytest.mark.parametrize("make", [_tiny_dncnn, _tiny_sen])
@pytest.mark.parametrize("bad, error, match", [("nan", ValueError, "x holds NaN or Inf"),
                                               ("uint8", TypeError, "x must be a floating-point")])
def test_dncnn_and_sen_check_their_input(make, bad, error, match):
    net = make().eval()
    x = torch.rand(1, 1 if net.__class__.__name__ == "DnCNN" else 3, 16, 16)
    x = x.mul(255).to(torch.uint8) if bad == "uint8" else x.index_fill(2, torch.tensor([3]), float("nan"))
    with pytest.raises(error, match=match):  # NaN gave NaN silently; uint8 failed in the first convolution
        net(x)


@pytest.mark.parametrize("sigma", [True, "0.1"])
def test_dncnn_sigma_type_is_checked(sigma):
    with pytest.raises(TypeError, match="sigma"):
        _tiny_dncnn()(torch.rand(1, 1, 8, 8), sigma)


# -- data ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [-1, 1.5, float("nan"), True, "8", None, 1000])
def test_sample_camera_motion_max_len_is_checked(value):
    from pnpdeblur.data import sample_camera_motion

    with pytest.raises(ValueError, match="max_len"):  # -1 gave a motion, NaN failed converting to int
        sample_camera_motion((16, 16), value)


@pytest.mark.parametrize("arg", ["rotation_prob", "zoom_prob", "acceleration"])
def test_sample_camera_motion_refuses_bool_probabilities(arg):
    from pnpdeblur.data import sample_camera_motion

    with pytest.raises(ValueError, match=arg):
        sample_camera_motion((16, 16), 8, **{arg: True})


@pytest.mark.parametrize("flow", [np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4), complex),
                                  torch.zeros(2, 4, 4, dtype=torch.bool), torch.zeros(2, 4, 4, dtype=torch.complex64)])
def test_canonicalize_flow_refuses_bool_and_complex(flow):
    with pytest.raises(TypeError, match="^flow must hold real numbers"):
        data.canonicalize_flow(flow)
    assert data.canonicalize_flow(np.zeros((2, 4, 4), np.int32)).dtype == np.int32  # integers stay allowed


@pytest.mark.parametrize("seed, exc", [(-1, ValueError), (True, TypeError), (1.5, TypeError), ("0", TypeError)])
def test_random_shake_kernel_checks_its_seed(seed, exc):
    with pytest.raises(exc, match="^seed must be"):
        data.random_shake_kernel(9, seed=seed)


@pytest.mark.parametrize("channels", [True, 1.0, 3.0, 2])
def test_sample_image_channels_are_ints(channels):
    with pytest.raises(ValueError, match="^channels must be None, 1 or 3"):
        data.sample_image("camera", channels=channels)


@pytest.mark.parametrize("dtype", [None, "foo", np.int64])
def test_sample_image_dtype_is_named(dtype):
    with pytest.raises(TypeError, match="^dtype must be a floating dtype, got"):
        data.sample_image("camera", dtype=dtype)


def test_random_motion_flows_checks_device_before_drawing():
    with pytest.raises(ValueError, match="^device='xyz' is not a torch device"):
        data.random_motion_flows(1, (8, 8), device="xyz")


# -- network constructors ------------------------------------------------------------------------
@pytest.mark.parametrize("make, exc, match", [
    (lambda: pd.nets.SEN(dilations=(1, 2, 1.5)), ValueError, "^dilations must be three ints"),
    (lambda: pd.nets.SEN(dilations=(1, True, 3)), ValueError, "^dilations must be three ints"),
    (lambda: pd.nets.SEN(dilations=3), ValueError, "^dilations must be three ints"),
    (lambda: pd.nets.SEN(flow_scale=float("inf")), ValueError, "^flow_scale must be a finite positive"),
    (lambda: pd.nets.SEN(flow_scale=True), TypeError, "^flow_scale must be a real number"),
    (lambda: pd.nets.SEN(flow_scale="0.5"), TypeError, "^flow_scale must be a real number"),
    (lambda: pd.nets.ConditionalDiscriminator(relu_slope=float("nan")), ValueError, "^relu_slope must be"),
    (lambda: pd.nets.ArtifactCritic(relu_slope="0.2"), TypeError, "^relu_slope must be"),
    (lambda: pd.nets.FlowNetS(input_mean=(float("nan"),) * 3), ValueError, "^input_mean must be finite"),
    (lambda: pd.nets.FlowNetS(input_mean=(0.5, "a", 0.5)), ValueError, "^input_mean must be a sequence"),
    (lambda: pd.nets.DRUNet(features=8), ValueError, "^features must be 4 positive ints"),
    (lambda: pd.nets.IRCNNBank(levels=8), ValueError, "^levels must be a sequence of noise levels"),
])
def test_network_constructors_name_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_valid_network_arguments_still_build():
    assert pd.nets.SEN(width=4, stacks=1, levels=2, dilations=[1, 2, 3], flow_scale=46).config["flow_scale"] == 46.0
    assert pd.nets.ArtifactCritic(width=4, relu_slope=0.2).config["relu_slope"] == 0.2
    assert pd.nets.FlowNetS(width=1, input_mean=(0.4, 0.4, 0.4)).config["input_mean"] == [0.4, 0.4, 0.4]
    assert list(pd.nets.DRUNet(features=[4, 8, 16, 32], blocks=1).config["features"]) == [4, 8, 16, 32]


# -- video synthesis -------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(omega=float("nan")), r"^CameraPath\.omega must be a finite number"),
    (dict(zeta=True), r"^CameraPath\.zeta must be a finite number"),
    (dict(velocity=(1.0,)), r"^CameraPath\.velocity must be a pair of finite numbers"),
    (dict(acceleration=(0.0, float("inf"))), r"^CameraPath\.acceleration must be a pair of finite numbers"),
    (dict(center="ab"), r"^CameraPath\.center must be a pair of finite numbers"),
])
def test_camera_path_fields_are_finite(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.CameraPath(**kwargs)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(path="pan"), TypeError, "^path must be a CameraPath"),
    (dict(times=[0.0, float("nan")]), ValueError, "^times must be finite numbers"),
    (dict(times=0.5), TypeError, "^times must be a sequence"),
    (dict(origin=(1.5, 2)), ValueError, "^origin must be None or a pair"),
    (dict(origin=(1,)), ValueError, "^origin must be None or a pair"),
    (dict(foreground="car"), TypeError, "^foreground must be None or a foreground layer"),
    (dict(order=True), ValueError, "^order must be an int in 0..5"),
    (dict(order=6), ValueError, "^order must be an int in 0..5"),
])
def test_render_frames_checks_its_arguments(kwargs, exc, match):
    args = dict(path=data.CameraPath(velocity=(1.0, 0.0)), times=[0.0, 1.0], origin=None, order=1)
    args.update(kwargs)
    photo = np.random.default_rng(0).random((24, 24, 3))
    with pytest.raises(exc, match=match):
        data.render_frames(photo, (16, 16), args["path"], args["times"], origin=args["origin"],
                           foreground=args.get("foreground"), order=args["order"])
    assert data.render_frames(photo, (16, 16), data.CameraPath(), np.array([0.0]), origin=(np.int64(2), 3),
                              order=1).shape == (1, 16, 16, 3)


@pytest.mark.parametrize("order", [True, 2.0])
def test_video_synthesis_order_is_an_int(order):
    with pytest.raises(ValueError, match="^order must be an int in 0..5"):
        data.synthesize_video_blur(np.random.default_rng(0).random((64, 64, 3)), (32, 32), order=order, seed=0)


@pytest.mark.parametrize("bad", [3, 1.5, b"runs"])
def test_train_config_out_dir_is_a_path(bad, tmp_path):
    from pnpdeblur.train import TrainConfig

    with pytest.raises(ValueError, match="^TrainConfig.out_dir must be a str or None"):
        TrainConfig(steps=1, out_dir=bad)  # 3 became a folder named "3"
    assert TrainConfig(steps=1, out_dir=tmp_path).out_dir == str(tmp_path)


# -- datasets ----------------------------------------------------------------------------------------
def test_dataset_sources_and_lengths_are_named(tmp_path):
    photo = [np.zeros((160, 160, 3))]
    with pytest.raises(ValueError, match="^length must be a positive int, got True"):
        data.SyntheticBlurDataset(photo, length=True)  # read as one item before
    with pytest.raises(ValueError, match="^length must be a positive int, got True"):
        data.SyntheticVideoDataset(photo, length=True)
    with pytest.raises(TypeError, match="^images must be a folder, or a sequence"):
        data.SyntheticBlurDataset(3, length=2)
    with pytest.raises(TypeError, match="^images must be a folder, or a sequence"):
        data.SyntheticBlurDataset(np.zeros((160, 160, 3)), length=2)  # one photo, not a list of them
    with pytest.raises(TypeError, match="^root must be a path"):
        data.GoProDataset(3)
    for call in (lambda: data.list_images(None), lambda: data.BlurredFolderDataset(None)):
        with pytest.raises(TypeError, match="^folder must be a path"):
            call()
    assert len(data.SyntheticBlurDataset(photo, length=2, crop=64)) == 2
    assert len(data.SyntheticBlurDataset(np.zeros((2, 160, 160, 3)), length=2, crop=64).sources) == 2  # a stack
