"""Yes/no arguments: ``check_flag`` and every public flag that goes through it.

A flag read by its truth value turns ``clip="no"`` into clipping and ``fixed=0`` into "not
fixed" without a word; each public flag must refuse anything but True/False (numpy's bool_
included as a bool) with a TypeError that names it.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import pnpdeblur as pd
from pnpdeblur import checkpoints, estimation, metrics, nets, priors, solvers, viz
from pnpdeblur._checks import check_flag
from pnpdeblur.data import datasets as ds


def _image(h=16, w=16, c=3, seed=0):
    return np.random.default_rng(seed).random((h, w, c))


FLOW = np.ones((2, 16, 16))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import skimage.io

    d = tmp_path_factory.mktemp("flags")
    skimage.io.imsave(str(d / "a.png"), (255 * _image(24, 24)).astype(np.uint8), check_contrast=False)
    return d


def _operator_problem():
    K = pd.MotionBlur(FLOW)
    return K, K(_image())


# name -> call(value); every call is cheap and reaches the flag's check with valid other arguments
CASES = {
    "ssim gaussian_weights": lambda v, d: metrics.ssim(_image(), _image(), gaussian_weights=v),
    "ssim use_sample_covariance": lambda v, d: metrics.ssim(_image(), _image(), use_sample_covariance=v),
    "flow_epe symmetric": lambda v, d: metrics.flow_epe(FLOW, FLOW, symmetric=v),
    "flow_mse symmetric": lambda v, d: metrics.flow_mse(FLOW, FLOW, symmetric=v),
    "kohler_psnr return_details": lambda v, d: metrics.kohler_psnr(_image(), [_image()], return_details=v,
                                                                   channel_axis=-1),
    "richardson_lucy normalize": lambda v, d: solvers.richardson_lucy(_operator_problem()[1], _operator_problem()[0],
                                                                      1, normalize=v),
    "richardson_lucy clip": lambda v, d: solvers.richardson_lucy(_operator_problem()[1], _operator_problem()[0],
                                                                 1, clip=v),
    "richardson_lucy progress": lambda v, d: solvers.richardson_lucy(_operator_problem()[1],
                                                                     _operator_problem()[0], 1, progress=v),
    "hqs differentiable": lambda v, d: solvers.hqs(_operator_problem()[1], _operator_problem()[0], priors.TV(),
                                                   0.01, n_iter=1, differentiable=v),
    "admm differentiable": lambda v, d: solvers.admm(_operator_problem()[1], _operator_problem()[0], priors.TV(),
                                                     0.01, n_iter=1, differentiable=v),
    "flow_to_color symmetric": lambda v, d: viz.flow_to_color(FLOW, symmetric=v),
    "flow_legend symmetric": lambda v, d: viz.flow_legend(16, symmetric=v),
    "kernel_field_figure show_flow": lambda v, d: viz.kernel_field_figure(_image(), FLOW, show_flow=v),
    "comparison_figure show_ssim": lambda v, d: viz.comparison_figure([_image()], reference=_image(), show_ssim=v),
    "list_images recursive": lambda v, d: ds.list_images(d, recursive=v),
    "PairAugment hflip": lambda v, d: ds.PairAugment(hflip=v),
    "PairAugment vflip": lambda v, d: ds.PairAugment(vflip=v),
    "PairAugment rot90": lambda v, d: ds.PairAugment(rot90=v),
    "PairAugment permute_channels": lambda v, d: ds.PairAugment(permute_channels=v),
    "PairAugment canonical_flow": lambda v, d: ds.PairAugment(canonical_flow=v),
    "SyntheticBlurDataset fixed": lambda v, d: ds.SyntheticBlurDataset([_image(24, 24)], crop=16, seed=0, fixed=v),
    "SyntheticBlurDataset blur": lambda v, d: ds.SyntheticBlurDataset([_image(24, 24)], crop=16, blur=v),
    "PairedFolderDataset strict": lambda v, d: ds.PairedFolderDataset(d, d, strict=v),
    "PairedFolderDataset fixed": lambda v, d: ds.PairedFolderDataset(d, d, seed=0, fixed=v),
    "BlurredFolderDataset recursive": lambda v, d: ds.BlurredFolderDataset(d, recursive=v),
    "synthesize_flow_blur clip": lambda v, d: pd.data.synthesize_flow_blur(_image(), clip=v, seed=0),
    "random_motion_flow integer": lambda v, d: pd.data.random_motion_flow((16, 16), integer=v, seed=0),
    "random_motion_flow canonical": lambda v, d: pd.data.random_motion_flow((16, 16), canonical=v, seed=0),
    "synthesize_video_blur return_frames": lambda v, d: pd.data.synthesize_video_blur(
        _image(64, 64), shape=(16, 16), seed=0, return_frames=v),
    "default_threshold ensemble": lambda v, d: estimation.default_threshold(ensemble=v),
    "save_checkpoint sidecar": lambda v, d: checkpoints.save_checkpoint(
        d / "c.safetensors", torch.nn.Linear(1, 1), "x", {}, sidecar=v),
    "DenoiserPrior takes_sigma": lambda v, d: priors.DenoiserPrior(nets.DnCNN(), takes_sigma=v),
    "DenoiserPrior clamp": lambda v, d: priors.DenoiserPrior(nets.DnCNN(), clamp=v),
    "DenoiserPrior ensemble": lambda v, d: priors.DenoiserPrior(nets.DnCNN(), ensemble=v),
    "DnCNNPrior clamp": lambda v, d: priors.DnCNNPrior(clamp=v),
    "DRUNetPrior ensemble": lambda v, d: priors.DRUNetPrior(ensemble=v),
    "RPGANPrior clamp": lambda v, d: priors.RPGANPrior(clamp=v),
    "SkimageDenoiser nonnegative": lambda v, d: priors.SkimageDenoiser(lambda x: x, lambda s: {}, nonnegative=v),
    "FlowNetS batch_norm": lambda v, d: nets.FlowNetS(width=1, batch_norm=v),
    "FlowNetS head_bias": lambda v, d: nets.FlowNetS(width=1, head_bias=v),
    "DeblurGANGenerator clamp": lambda v, d: nets.DeblurGANGenerator(features=1, blocks=0, clamp=v),
}


# None is valid for these two (tqdm decides; the window decides)
BAD = [(case, bad) for case in sorted(CASES) for bad in ("no", 0, None)
       if not (bad is None and case.split()[1] in ("progress", "use_sample_covariance"))]


@pytest.mark.parametrize("case, bad", BAD)
def test_public_flags_refuse_non_bools_by_name(case, bad, folder):
    flag = case.split()[1]
    with pytest.raises(TypeError, match="^" + re.escape(f"{flag} must be True or False, got {bad!r}") + "$"):
        CASES[case](bad, folder)


def test_check_flag_returns_python_bools():
    assert check_flag(True, "f") is True and check_flag(False, "f") is False
    assert check_flag(np.bool_(True), "f") is True and check_flag(np.False_, "f") is False
    for bad in ("True", 1, 1.0, None, torch.tensor(True), np.array([True])):
        with pytest.raises(TypeError, match="^f must be True or False, got "):
            check_flag(bad, "f")


def test_numpy_bools_pass_where_python_bools_do():
    # these three refused np.bool_ while other flags of the same functions took it
    y = _image()
    m = metrics.flow_epe(FLOW, -FLOW, symmetric=np.True_)
    assert m == metrics.flow_epe(FLOW, -FLOW, symmetric=True) == 0.0
    assert metrics.flow_epe(FLOW, -FLOW, symmetric=np.False_) == pytest.approx(2 * np.sqrt(2))
    assert priors.TV(coupled=np.False_).coupled is False
    K = pd.MotionBlur(FLOW)
    np.testing.assert_array_equal(K.apply(y, check_finite=np.True_), K.apply(y))


# -- every public net's constructor flags go through check_flag ----------------------------------
#: Cheap other arguments per net (the flag is checked before any layer is built; np.True_ builds it).
_TINY_NETS = {
    "DnCNN": dict(features=1, depth=2),
    "DRUNet": dict(features=(1, 1, 1, 1), blocks=1),
    "RPGANGenerator": dict(width=1, n_res=0),
    "DeepDeblur": dict(features=1, blocks=0, scales=1),
    "DeblurGANGenerator": dict(features=1, blocks=0),
    "FlowNetS": dict(width=1),
}


def _net_flags():
    """``(class name, argument)`` of every bool argument (annotated or defaulted) of a public net's constructor."""
    import inspect

    found = []
    for name in nets.__all__:
        cls = getattr(nets, name)
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.annotation in (bool, "bool") or isinstance(p.default, bool):
                found.append((name, p.name))
    return found


NET_FLAGS = _net_flags()


def test_the_net_flags_are_found():
    # the ones known when this was written: a broken discovery would make the tests below vacuous
    assert {("DnCNN", "noise_map"), ("DRUNet", "bias"), ("DRUNet", "residual"), ("RPGANGenerator", "residual"),
            ("DeepDeblur", "residual"), ("DeblurGANGenerator", "clamp"), ("FlowNetS", "batch_norm"),
            ("FlowNetS", "head_bias")} <= set(NET_FLAGS)


@pytest.mark.parametrize("net, flag", NET_FLAGS)
@pytest.mark.parametrize("bad", [0, 1, "no", None])
def test_net_flags_refuse_non_bools_with_a_type_error(net, flag, bad):
    cls = getattr(nets, net)
    with pytest.raises(TypeError, match="^" + re.escape(f"{flag} must be True or False, got {bad!r}") + "$"):
        cls(**_TINY_NETS.get(net, {}), **{flag: bad})


@pytest.mark.parametrize("net, flag", NET_FLAGS)
def test_net_flags_take_numpy_bools_as_python_bools(net, flag):
    m = getattr(nets, net)(**_TINY_NETS.get(net, {}), **{flag: np.True_})
    assert m.config[flag] is True  # a Python bool: the config goes into a JSON checkpoint header
