"""The end-to-end nets' training recipe (``pnpdeblur.train.deblurnets``), called directly.

The schedules are checked against the papers' text (written out here, not read from the
module): Nah et al. (DeepDeblur) "ADAM … mini-batch size 4 … learning rate … 5×10⁻⁵. After
1.5×10⁵ iterations … decreased to 1/10 … 4.5×10⁵ iterations", λ = 1e-4; Noroozi et al.
(DeblurNet) "Adam … β1 = 0.9, β2 = 0.999, and an initial learning rate of 0.001 … decrease the
learning rate by .75 every 10% iterations … batch size of 10"; Kupyn et al. (DeblurGAN) Adam
1e-4 with β1 = 0.5, constant for half the run then linearly to 0, batch 1, WGAN-GP λ = 10,
content weight 100; Dosovitskiy et al. (FlowNetS) Adam 1e-4, halved every 1e5 iterations after
the first 3e5, batch 8.

``main`` runs with a stand-in Trainer (the real one, its ``fit`` replaced by a record), so the
wiring — net, data, schedule, losses, exported header — costs no training.
"""
import json

import numpy as np
from pathlib import Path

import pytest
import torch
from torch import nn

from pnpdeblur.checkpoints import load_checkpoint
from pnpdeblur.data import SyntheticBlurDataset, SyntheticVideoDataset
from pnpdeblur.losses.adversarial import (
    gan_discriminator_loss,
    gan_generator_loss,
    gradient_penalty,
    wgan_critic_loss,
    wgan_generator_loss,
)
from pnpdeblur.losses.epe import endpoint_error, multiscale_epe
from pnpdeblur.losses.multiscale import multiscale_mse
from pnpdeblur.metrics import psnr, ssim
from pnpdeblur.train import AdversarialPair
from pnpdeblur.train import deblurnets as R
from pnpdeblur.train.sen import HELD_OUT_SAMPLES, TRAIN_SAMPLES
from _photos import memoise_sample_image
from _recording_trainer import record_trainers


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(autouse=True)
def _decode_each_photo_once(monkeypatch):
    """Every dataset here loads scikit-image photos; decode each once per process."""
    import pnpdeblur.data.samples as S

    memoise_sample_image(monkeypatch, S)


# ------------------------------------------------------------------ the papers' settings
def test_deepdeblur_spec_is_nah_et_al():
    s = R.SPECS["deepdeblur"]
    assert (s.module, s.cls, s.kind) == ("pnpdeblur.nets.deepdeblur", "DeepDeblur", "image")
    assert s.lr == 5e-5 and s.steps == 450_000 and s.batch == 4 and s.crop == 256
    assert s.steps * s.milestones[0] == pytest.approx(1.5e5) and len(s.milestones) == 1 and s.gamma == 0.1
    assert s.adversarial == "gan" and s.discriminator == "DeepDeblurDiscriminator" and s.adv_weight == 1e-4
    assert s.betas == (0.9, 0.999) and s.decay_from is None and s.lr_end is None


def test_deblurnet_spec_is_noroozi_et_al():
    s = R.SPECS["deblurnet"]
    assert (s.cls, s.kind, s.adversarial) == ("DeblurNet", "image", None)
    assert s.lr == 1e-3 and s.betas == (0.9, 0.999) and s.batch == 10 and s.gamma == 0.75
    assert s.milestones == pytest.approx([k / 10 for k in range(1, 10)])  # every 10 % of the iterations
    assert s.decay_from is None and s.lr_end is None


def test_deblurgan_spec_is_kupyn_et_al():
    s = R.SPECS["deblurgan"]
    assert (s.cls, s.kind, s.adversarial, s.discriminator) == ("DeblurGANGenerator", "image", "wgan-gp",
                                                               "DeblurGANCritic")
    assert s.lr == 1e-4 and s.betas == (0.5, 0.999) and s.batch == 1 and s.crop == 256
    assert s.decay_from == 0.5 and s.lr_end == 0.0 and s.milestones == ()
    assert s.adv_weight == pytest.approx(1 / 100) and R._GP_WEIGHT == 10.0


def test_flownets_spec_is_dosovitskiy_et_al():
    s = R.SPECS["flownets"]
    assert (s.cls, s.kind, s.adversarial) == ("FlowNetS", "flow", None)
    assert s.lr == 1e-4 and s.batch == 8 and s.gamma == 0.5
    assert [round(f * s.steps) for f in s.milestones] == [300_000, 400_000, 500_000]


def test_dvd_spec_is_a_video_net():
    s = R.SPECS["dvd"]
    assert (s.cls, s.kind, s.adversarial) == ("DVD", "video", None)
    assert R.parse_args("dvd", []).frames == 5  # Su et al.'s 5-frame stacks


# ------------------------------------------------------------------ nets
def test_build_net_paper_small_and_explicit_configs():
    from pnpdeblur.nets.deepdeblur import DeepDeblur
    from pnpdeblur.nets.flownets import FlowNetS

    assert R._net_class(R.SPECS["deepdeblur"]) is DeepDeblur
    assert R._net_class(R.SPECS["flownets"]) is FlowNetS
    from pnpdeblur.nets.deepdeblur import DeepDeblurDiscriminator

    assert R._net_class(R.SPECS["deepdeblur"], "DeepDeblurDiscriminator") is DeepDeblurDiscriminator
    small = R.build_net("flownets", small=True)
    assert isinstance(small, FlowNetS) and small.config["width"] == 8
    assert R.build_net("flownets", small=True, width=4).config["width"] == 4  # config overrides small
    assert R.build_net("flownets", width=4).config == FlowNetS(width=4).config  # no small: the paper's defaults
    net = R.build_net("deepdeblur", small=True, blocks=1)
    assert net.config == DeepDeblur(features=16, blocks=1, residual=True).config


def test_build_net_paper_default_is_the_class_default():
    from pnpdeblur.nets.deblurnet import DeblurNet

    assert R.build_net("deblurnet").config == DeblurNet().config


def test_build_net_refuses_an_unknown_name_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"^name must be one of \['deblurgan', 'deblurnet', 'deepdeblur', 'dvd', "
                                         r"'flownets'\], got 'unet'$"):
        R.build_net("unet")


def test_the_multiscale_view_calls_forward_multiscale():
    class Net(nn.Module):
        def forward_multiscale(self, *inputs):
            return ["multi", *inputs]

    net = Net()
    view = R._Multiscale(net)
    assert view.net is net and view(1, 2) == ["multi", 1, 2]
    assert R._inner(view) is net
    pair = AdversarialPair(view, nn.Linear(1, 1))
    assert R._inner(pair) is net
    assert R._inner(net) is net


# ------------------------------------------------------------------ data
def _clip(t=5, c=3, h=4, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"blurred": torch.rand(t, c, h, w, generator=g), "sharp": torch.rand(t, c, h, w, generator=g),
            "flow_next": torch.randn(t, 2, h, w, generator=g), "flow_prev": torch.randn(t, 2, h, w, generator=g)}


def test_video_items_stack_the_clip_and_target_the_centre_frame():
    clips = [_clip(seed=0), _clip(seed=1)]
    items = R._VideoItems(clips, "video")
    assert len(items) == 2 and items.clips is clips
    it = items[1]
    assert set(it) == {"blurred", "sharp"}
    assert it["blurred"].shape == (15, 4, 6)
    for k in range(5):  # frame k's channels are rows 3k .. 3k + 2
        assert torch.equal(it["blurred"][3 * k: 3 * k + 3], clips[1]["blurred"][k])
    assert torch.equal(it["sharp"], clips[1]["sharp"][2])
    four = R._VideoItems([_clip(t=4)], "video")[0]
    assert torch.equal(four["sharp"], _clip(t=4)["sharp"][2])  # t // 2


def test_flow_items_are_two_consecutive_sharp_frames_and_the_forward_flow():
    clip = _clip(t=2)
    it = R._VideoItems([clip], "flow")[0]
    assert set(it) == {"frame1", "frame2", "flow"}
    assert torch.equal(it["frame1"], clip["sharp"][0]) and torch.equal(it["frame2"], clip["sharp"][1])
    assert torch.equal(it["flow"], clip["flow_next"][0])


@pytest.mark.parametrize("kind, data, frames, want", [
    ("image", "gopro", 5, None),
    ("image", "flow", 5, (48, 48)),
    ("image", "video", 5, (48 + 2 * 10, 48 + 2 * 10)),  # one exposure: margin ceil(10 · 2 / 2)
    ("flow", "video", 5, (48 + 2 * 15, 48 + 2 * 15)),  # two frames: ceil(10 · 3 / 2)
    ("video", "video", 5, (48 + 2 * 30, 48 + 2 * 30)),  # five frames: ceil(10 · 6 / 2)
    ("video", "video", 3, (48 + 2 * 20, 48 + 2 * 20)),
])
def test_source_size_is_what_the_data_sets_crop_from(kind, data, frames, want):
    assert R.source_size(kind, data, 48, 10.0, frames) == want
    if data == "video":
        n = {"image": 1, "flow": 2, "video": frames}[kind]
        ds = SyntheticVideoDataset(images=[np.zeros((want[0], want[1], 3))], crop=48, max_blur=10.0, n_blurred=n)
        assert ds._src_crop.crop == want  # the data set's own margin
        with pytest.raises(ValueError, match=r"smaller than the required"):
            SyntheticVideoDataset(images=[np.zeros((want[0] - 1, want[1], 3))], crop=48, max_blur=10.0, n_blurred=n)


def test_source_size_rounds_the_margin_up():
    assert SyntheticVideoDataset.source_size(16, 2.5, 1) == (16 + 2 * 3, 16 + 2 * 3)  # ceil(2.5)
    assert SyntheticVideoDataset.source_size((16, 20), 0.0, 4) == (16, 20)


def test_build_datasets_refuses_unknown_data_and_non_video_data_for_clip_nets():
    with pytest.raises(ValueError, match=r"^data must be 'video', 'flow' or 'gopro', got 'kodak'$"):
        R.build_datasets("image", "kodak", ["rocket"], 4, 32, 0, 2)
    for kind in ("video", "flow"):
        for data in ("flow", "gopro"):
            with pytest.raises(ValueError, match=rf"^a '{kind}' net trains on data='video' \(clips with true flow\), "
                                                 rf"got data='{data}'$"):
                R.build_datasets(kind, data, ["rocket"], 4, 32, 0, 2, root="x")
    with pytest.raises(ValueError, match=r"^data='gopro' needs root \(the GOPRO folder\)$"):
        R.build_datasets("image", "gopro", ["rocket"], 4, 32, 0, 2)


def test_flow_data_is_gong_style_with_a_noise_range_and_fixed_half_noise_validation():
    train, val = R.build_datasets("image", "flow", ["rocket", "coins"], 7, 24, 3, 2, preset="46", noise=0.04)
    assert isinstance(train, SyntheticBlurDataset) and isinstance(val, SyntheticBlurDataset)
    assert len(train) == 7 and train.crop == (24, 24) and train.preset == "46" and train.noise_sigma == (0.0, 0.04)
    assert train.seed == 3 and not train.fixed and len(train.sources) == 2
    assert len(val) == 2 and val.crop == (24, 24) and val.preset == "46" and val.noise_sigma == 0.02
    assert val.seed == 10_000 and val.fixed and len(val.sources) == len(HELD_OUT_SAMPLES)
    ref = SyntheticBlurDataset(HELD_OUT_SAMPLES, length=2, crop=24, preset="46", noise_sigma=0.02, seed=10_000,
                               fixed=True)
    for i in (1, 0):
        a, b = val[i], ref[i]
        assert all(torch.equal(a[k], b[k]) for k in ("blurred", "sharp", "flow"))
    d, _ = R.build_datasets("image", "flow", ["rocket"], 2, 16, 0, 1)
    assert d.preset == "23" and d.noise_sigma == (0.0, 0.01)  # defaults


def test_video_data_for_an_image_net_is_single_blurred_frames():
    train, val = R.build_datasets("image", "video", ["rocket"], 5, 16, 2, 3, max_blur=6.0, noise=0.03)
    for ds, n, seed, fixed in ((train, 5, 2, False), (val, 3, 10_000, True)):
        assert isinstance(ds, SyntheticVideoDataset)
        assert len(ds) == n and ds.crop == (16, 16) and ds.max_blur == 6.0 and ds.n_blurred == 1
        assert ds.seed == seed and ds.fixed is fixed and ds.noise.noise_sigma == 0.03
    assert len(train.sources) == 1 and len(val.sources) == len(HELD_OUT_SAMPLES)
    d, _ = R.build_datasets("image", "video", ["rocket"], 2, 16, 0, 1)
    assert d.max_blur == 16.0 and d.noise.noise_sigma == 0.01  # defaults


def test_video_data_for_a_clip_net_has_frames_blurred_frames():
    train, val = R.build_datasets("video", "video", ["rocket"], 4, 16, 1, 2, frames=3, max_blur=4.0)
    assert isinstance(train, R._VideoItems) and isinstance(val, R._VideoItems)
    assert train.kind == "video" and val.kind == "video"
    assert train.clips.n_blurred == 3 and val.clips.n_blurred == 3 and len(train) == 4 and len(val) == 2
    assert train.clips.seed == 1 and val.clips.seed == 10_000 and val.clips.fixed
    assert train.clips.noise.noise_sigma == 0.01 and train.clips.max_blur == 4.0
    item = val[0]
    assert item["blurred"].shape == (9, 16, 16) and item["sharp"].shape == (3, 16, 16)
    d, _ = R.build_datasets("video", "video", ["rocket"], 2, 16, 0, 1)
    assert d.clips.n_blurred == 5  # the default: 5 frames


def test_video_data_for_flownets_is_noise_free_frame_pairs():
    train, val = R.build_datasets("flow", "video", ["rocket"], 3, 16, 0, 2, frames=7, noise=0.05)
    assert train.kind == "flow" and val.kind == "flow"
    assert train.clips.n_blurred == 2 and val.clips.n_blurred == 2  # two frames whatever `frames` says
    assert train.clips.noise is None and val.clips.noise is None  # the flow is exact for clean frames
    item = val[1]
    assert set(item) == {"frame1", "frame2", "flow"} and item["flow"].shape == (2, 16, 16)


def _gopro(tmp_path, n=3):
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for sub in ("blur", "sharp"):
            d = tmp_path / "GOPRO" / split / "seq0" / sub
            d.mkdir(parents=True)
            for i in range(n):
                iio.imwrite(d / f"{i:04d}.png", (rng.random((20, 24, 3)) * 255).astype(np.uint8))
    return tmp_path / "GOPRO"


def test_gopro_data_trains_on_train_with_flips_and_validates_on_a_prefix_of_test(tmp_path):
    root = _gopro(tmp_path)
    train, val = R.build_datasets("image", "gopro", [], 10, 8, 0, 2, root=str(root))
    assert len(train) == 3 and train.transform.crop == (8, 8) and train.transform.hflip and train.transform.vflip
    assert all("train" in str(p[0]) for p in train.pairs)
    assert isinstance(val, torch.utils.data.Subset) and list(val.indices) == [0, 1]
    assert val.dataset.transform.crop == (8, 8) and not val.dataset.transform.hflip
    assert all("test" in str(p[0]) for p in val.dataset.pairs)
    _, val_all = R.build_datasets("image", "gopro", [], 10, 8, 0, 5, root=str(root))
    assert list(val_all.indices) == [0, 1, 2]  # at most the split's size
    assert val[0]["blurred"].shape == (3, 8, 8)


# ------------------------------------------------------------------ losses
class _Gen(nn.Module):
    """Multi-scale stand-in: ``[a · (x at half size), a · x]``."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.8))

    def forward(self, x):
        return [self.a * nn.functional.avg_pool2d(x, 2), self.a * x]


class _Critic(nn.Module):
    """Per-sample score ``mean(w_c x²)``: its input gradient depends on the input (the penalty's ε matters)."""

    def __init__(self, c=3):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(0.5, 2.0, c))

    def forward(self, x):
        return (self.w.view(1, -1, 1, 1) * x ** 2).mean(dim=(1, 2, 3))


def _image_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"blurred": torch.rand(2, 3, 8, 8, generator=g), "sharp": torch.rand(2, 3, 8, 8, generator=g)}


def _grads(module, loss):
    params = list(module.parameters())
    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]


@pytest.mark.parametrize("pair_given, weight", [(False, 1e-4), (True, 0.0)])
def test_without_a_discriminator_or_weight_the_loss_is_the_multiscale_content(pair_given, weight):
    gen = _Gen()
    pair = AdversarialPair(gen, _Critic()) if pair_given else None
    batch = _image_batch()
    loss = R.make_loss_fn(R.SPECS["deepdeblur"], pair, weight)(gen, batch)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0
    expected = multiscale_mse(gen(batch["blurred"]), batch["sharp"])
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


def test_gan_loss_is_content_plus_weighted_generator_term_plus_discriminator_term():
    gen, disc = _Gen(), _Critic()
    pair = AdversarialPair(gen, disc)
    batch = _image_batch(1)
    total, parts = R.make_loss_fn(R.SPECS["deepdeblur"], pair, 0.3)(pair, batch)
    outs = gen(batch["blurred"])
    content = multiscale_mse(outs, batch["sharp"])
    l_g = gan_generator_loss(disc(outs[-1]))
    l_d = gan_discriminator_loss(disc(batch["sharp"]), disc(outs[-1]))
    assert set(parts) == {"content", "adv_g", "adv_d"} and all(isinstance(v, float) for v in parts.values())
    assert parts["content"] == pytest.approx(float(content.detach()), rel=1e-6)
    assert parts["adv_g"] == pytest.approx(float(l_g.detach()), rel=1e-6)
    assert parts["adv_d"] == pytest.approx(float(l_d.detach()), rel=1e-6)
    assert float(total.detach()) == pytest.approx(float((content + 0.3 * l_g + l_d).detach()), rel=1e-6)
    # the generator learns from content + weight·L_G only (L_D sees a detached fake) ...
    for a, b in zip(_grads(gen, total), _grads(gen, content + 0.3 * l_g)):
        torch.testing.assert_close(a, b)
    # ... and the discriminator from L_D only (L_G goes through frozen parameters)
    for a, b in zip(_grads(disc, total), _grads(disc, l_d)):
        torch.testing.assert_close(a, b)


def test_wgan_gp_loss_adds_the_critic_loss_and_ten_times_the_gradient_penalty():
    gen, disc = _Gen(), _Critic()
    pair = AdversarialPair(gen, disc)
    batch = _image_batch(2)
    torch.manual_seed(5)
    total, parts = R.make_loss_fn(R.SPECS["deblurgan"], pair, 0.01)(pair, batch)
    outs = gen(batch["blurred"])
    content = multiscale_mse(outs, batch["sharp"])
    l_g = wgan_generator_loss(disc(outs[-1]))
    torch.manual_seed(5)
    gp = gradient_penalty(disc, batch["sharp"], outs[-1])
    l_d = wgan_critic_loss(disc(batch["sharp"]), disc(outs[-1])) + 10.0 * gp
    assert float(gp.detach()) > 1e-3  # the penalty is not negligible here
    assert parts["adv_g"] == pytest.approx(float(l_g.detach()), rel=1e-6)
    assert parts["adv_d"] == pytest.approx(float(l_d.detach()), rel=1e-5)
    assert float(total.detach()) == pytest.approx(float((content + 0.01 * l_g + l_d).detach()), rel=1e-5)
    for a, b in zip(_grads(gen, total), _grads(gen, content + 0.01 * l_g)):
        torch.testing.assert_close(a, b)
    for a, b in zip(_grads(disc, total), _grads(disc, l_d)):
        torch.testing.assert_close(a, b)


def test_flow_loss_is_flownets_multiscale_epe():
    class Flow(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = nn.Parameter(torch.tensor(0.5))

        def forward(self, f1, f2):
            d = (f2 - f1)[:, :2] + self.b
            return [nn.functional.avg_pool2d(d, k) for k in (16, 8, 4, 2, 1)]  # FlowNet's 5 scales

    g = torch.Generator().manual_seed(3)
    batch = {"frame1": torch.rand(2, 3, 32, 32, generator=g), "frame2": torch.rand(2, 3, 32, 32, generator=g),
             "flow": torch.randn(2, 2, 32, 32, generator=g)}
    net = Flow()
    loss = R.make_loss_fn(R.SPECS["flownets"], None, 0.0)(net, batch)
    expected = multiscale_epe(net(batch["frame1"], batch["frame2"]), batch["flow"])
    assert isinstance(loss, torch.Tensor) and float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


def test_validation_scores_the_users_view_of_the_net():
    class Net(nn.Module):
        def forward(self, x):  # the user's call; leaves [0, 1] so the clamp matters
            return 1.4 * x - 0.2

        def forward_multiscale(self, x):
            raise AssertionError("validation must not use the training view")

    batch = _image_batch(4)
    got = R.make_val_fn("image")(AdversarialPair(R._Multiscale(Net()), _Critic()), batch)
    out = (1.4 * batch["blurred"] - 0.2).clamp(0, 1)
    assert set(got) == {"psnr", "ssim"}
    assert got["psnr"] == pytest.approx(float(psnr(out, batch["sharp"])), rel=1e-6)
    assert got["ssim"] == pytest.approx(float(ssim(out, batch["sharp"])), rel=1e-6)
    assert got["psnr"] != pytest.approx(float(psnr(1.4 * batch["blurred"] - 0.2, batch["sharp"])), rel=1e-3)


def test_flow_validation_is_the_mean_endpoint_error():
    class Net(nn.Module):
        def forward(self, f1, f2):
            return (f2 - f1)[:, :2] * 3.0

    g = torch.Generator().manual_seed(5)
    batch = {"frame1": torch.rand(2, 3, 8, 8, generator=g), "frame2": torch.rand(2, 3, 8, 8, generator=g),
             "flow": torch.randn(2, 2, 8, 8, generator=g)}
    got = R.make_val_fn("flow")(R._Multiscale(Net()), batch)
    pred = (batch["frame2"] - batch["frame1"])[:, :2] * 3.0
    assert set(got) == {"epe"}
    assert got["epe"] == pytest.approx(float(((pred - batch["flow"]) ** 2).sum(1).sqrt().mean()), rel=1e-6)
    assert got["epe"] == pytest.approx(float(endpoint_error(pred, batch["flow"])), rel=1e-6)


# ------------------------------------------------------------------ options
@pytest.mark.parametrize("name", sorted(R.SPECS))
def test_option_defaults_are_the_specs(name):
    s = R.SPECS[name]
    a = R.parse_args(name, [])
    assert (a.steps, a.batch, a.crop, a.lr, a.adv_weight) == (s.steps, s.batch, s.crop, s.lr, s.adv_weight)
    assert a.data == "video" and a.corpus is None and not a.preload and a.root is None and a.preset == "23"
    assert a.max_blur == 16.0 and a.frames == 5 and a.noise == 0.01 and not a.small and a.config == "{}"
    assert a.run_dir == f"runs/{name}" and a.out == Path(f"runs/{name}/{name}.safetensors")
    assert (a.val_items, a.val_every, a.ckpt_every, a.log_every) == (16, 1000, 1000, 50)
    assert not hasattr(a, "float32")


def test_every_option_is_read():
    argv = ["--data", "flow", "--corpus", "c", "--preload", "--root", "r", "--preset", "46", "--max-blur", "9",
            "--frames", "3", "--noise", "0.2", "--small", "--config", '{"blocks": 1}', "--steps", "7", "--batch", "3",
            "--crop", "48", "--lr", "0.5", "--adv-weight", "0.25"]
    a = R.parse_args("deepdeblur", argv)
    assert (a.data, a.corpus, a.preload, a.root, a.preset, a.max_blur, a.frames, a.noise, a.small, a.config,
            a.steps, a.batch, a.crop, a.lr, a.adv_weight) == (
        "flow", "c", True, "r", "46", 9.0, 3, 0.2, True, '{"blurred": 1}'.replace("blurred", "blocks"), 7, 3, 48,
        0.5, 0.25)
    with pytest.raises(SystemExit):
        R.parse_args("deepdeblur", ["--data", "kodak"])


def test_help_names_the_net_and_paper_and_hides_adv_weight_for_plain_nets(capsys):
    with pytest.raises(SystemExit):
        R.parse_args("deepdeblur", ["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "pnpdeblur train deepdeblur" in text and "Train DeepDeblur (Nah et al." in text
    assert ("--adv-weight ADV_WEIGHT weight of the adversarial term (0: content loss only) --init INIT start from "
            "these DeepDeblur weights") in text
    assert "training stops at this time regardless --grad-clip" in text
    assert "{'features': 16, 'blocks': 3, 'residual': True}" in text  # --small's configuration
    with pytest.raises(SystemExit):
        R.parse_args("flownets", ["--help"])
    text = capsys.readouterr().out
    assert "pnpdeblur train flownets" in text and "--adv-weight" not in text


# ------------------------------------------------------------------ main, with a stand-in trainer
@pytest.fixture
def record(monkeypatch):
    return record_trainers(monkeypatch, {"psnr": 20.5})


def _argv(tmp_path, name, *extra):
    # FlowNetS's forward_multiscale takes only multiples of its stride 64 (six stride-2 convolutions)
    crop = "64" if name == "flownets" else "16"
    return [name, "--small", "--steps", "12", "--batch", "2", "--crop", crop, "--val-items", "1",
            "--device", "cpu", "--no-progress", "--run-dir", str(tmp_path / "run"),
            "--out", str(tmp_path / f"{name}.safetensors"), *extra]


@pytest.mark.parametrize("argv", [[], None, ["unet"], ["--small"]])
def test_main_needs_a_known_net_first(argv):
    with pytest.raises(SystemExit, match=r"^usage: pnpdeblur train \{deepdeblur,deblurnet,dvd,deblurgan,flownets\} "
                                         r"\[options\]; got "):
        R.main(argv)


def test_main_deepdeblur_trains_a_pair_and_exports_the_generator(tmp_path, record, capsys):
    argv = _argv(tmp_path, "deepdeblur", "--data", "flow", "--preset", "46", "--noise", "0.02", "--seed", "4",
                 "--log-every", "3", "--val-every", "5", "--ckpt-every", "7", "--lr", "1e-4")
    out = R.main(argv)
    assert out == tmp_path / "deepdeblur.safetensors"
    (t,) = record
    assert t.fitted == 1
    model, cfg, train, loss_fn = t.args
    assert isinstance(model, AdversarialPair) and isinstance(model.generator, R._Multiscale)
    net = model.generator.net
    assert net.config["features"] == 16 and net.config["blocks"] == 3
    disc_cls = R._net_class(R.SPECS["deepdeblur"], "DeepDeblurDiscriminator")
    assert type(model.discriminator) is disc_cls
    assert model.discriminator.config == disc_cls(in_channels=3, base=8).config  # the small discriminator
    # the paper's ÷10 at a third of the steps; lr scaled; Adam's default betas
    assert (cfg.steps, cfg.batch_size, cfg.lr, tuple(cfg.betas)) == (12, 2, 1e-4, (0.9, 0.999))
    assert tuple(cfg.lr_milestones) == (4,) and cfg.lr_gamma == 0.1
    assert cfg.decay_start is None and cfg.lr_end is None
    assert (cfg.seed, cfg.device, cfg.log_every, cfg.val_every, cfg.ckpt_every, cfg.out_dir, cfg.progress) == (
        4, "cpu", 3, 5, 7, str(tmp_path / "run"), False)
    assert isinstance(train, SyntheticBlurDataset) and len(train) == 24 and train.crop == (16, 16)
    assert train.preset == "46" and train.noise_sigma == (0.0, 0.02) and train.seed == 4
    assert len(train.sources) == len(TRAIN_SAMPLES)
    val = t.kwargs["val_data"]
    assert len(val) == 1 and val.noise_sigma == 0.01
    # the loss and validation functions are this net's: adversarial parts, PSNR/SSIM
    batch = _image_batch(3)
    total, parts = loss_fn(model, {k: v[:, :, :16, :16] for k, v in batch.items()})
    assert set(parts) == {"content", "adv_g", "adv_d"}
    outs = net.forward_multiscale(batch["blurred"])
    l_g = float(gan_generator_loss(model.discriminator(outs[-1])).detach())
    assert float(total.detach()) == pytest.approx(parts["content"] + 1e-4 * l_g + parts["adv_d"], rel=1e-4)
    assert set(t.kwargs["val_fn"](model, batch)) == {"psnr", "ssim"}
    # export: the generator alone, its architecture and config, the provenance
    state, header = load_checkpoint(out, "DeepDeblur")
    assert set(state) == set(net.state_dict()) and header["config"] == net.config
    for k, v in net.state_dict().items():
        assert torch.equal(state[k], v), k
    assert header["steps"] == 12 and header["validation"] == {"psnr": 20.5}
    assert header["paper"] == R.SPECS["deepdeblur"].paper
    data = header["data"]
    assert data["script"] == "pnpdeblur train deepdeblur (pnpdeblur.train.deblurnets)"
    assert data["argv"] == argv and data["data"] == "flow" and data["corpus"] is None
    assert data["skimage_photos"] == TRAIN_SAMPLES and data["held_out"] == HELD_OUT_SAMPLES
    assert data["preset"] == "46" and data["max_blur"] is None
    assert data["adversarial"] == "gan" and data["adv_weight"] == 1e-4
    assert data["device"] == "cpu" and data["torch"] == torch.__version__
    assert isinstance(data["seconds"], float) and 0 <= data["seconds"] < 60
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == {"weights": str(out), "validation": {"psnr": 20.5}}


def test_main_without_the_adversarial_term_trains_the_net_alone(tmp_path, record):
    out = R.main(_argv(tmp_path, "deepdeblur", "--adv-weight", "0", "--max-blur", "5"))
    (t,) = record
    model = t.args[0]
    assert isinstance(model, R._Multiscale)
    train = t.args[2]
    assert isinstance(train, SyntheticVideoDataset) and train.max_blur == 5.0 and train.n_blurred == 1
    _, header = load_checkpoint(out, "DeepDeblur")
    d = header["data"]
    assert d["adversarial"] is None and d["adv_weight"] == 0.0 and d["data"] == "video"
    assert d["preset"] is None and d["max_blur"] == 5.0
    loss = t.args[3](model, _image_batch(2))
    assert isinstance(loss, torch.Tensor)  # content only, no parts


def test_main_deblurgan_scales_lr_end_and_keeps_kupyns_betas(tmp_path, record):
    R.main(_argv(tmp_path, "deblurgan", "--lr", "5e-5", "--steps", "9", "--corpus", str(_corpus(tmp_path)),
                 "--preload"))
    (t,) = record
    model, cfg, train, _ = t.args
    assert isinstance(model, AdversarialPair)
    crit_cls = R._net_class(R.SPECS["deblurgan"], "DeblurGANCritic")
    assert type(model.discriminator) is crit_cls and model.discriminator.config == crit_cls(in_channels=3,
                                                                                            features=16).config
    assert tuple(cfg.betas) == (0.5, 0.999) and cfg.decay_start == 4 and cfg.lr_end == 0.0
    assert cfg.lr_milestones == () or tuple(cfg.lr_milestones) == ()
    # the corpus (preloaded) comes first, then the photos
    assert len(train.sources) == 1 + len(TRAIN_SAMPLES) and isinstance(train.sources[0], np.ndarray)


def _corpus(tmp_path):
    import imageio.v3 as iio

    d = tmp_path / "corpus"
    d.mkdir(exist_ok=True)
    iio.imwrite(d / "a.png", (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    return d


def test_main_linear_decay_ends_at_the_papers_ratio(tmp_path, record):
    R.main(_argv(tmp_path, "dvd", "--lr", "2e-4", "--steps", "10", "--frames", "3"))
    (t,) = record
    cfg = t.args[1]
    s = R.SPECS["dvd"]
    assert cfg.decay_start == int(10 * s.decay_from) and cfg.lr_end == pytest.approx(s.lr_end * 2e-4 / s.lr)
    assert t.args[2].kind == "video" and t.args[2].clips.n_blurred == 3


def test_main_milestones_are_clamped_into_the_run_and_deduplicated(tmp_path, record):
    R.main(_argv(tmp_path, "deblurnet", "--steps", "5"))
    (t,) = record
    cfg = t.args[1]
    # every 10 % of 5 steps: round(0.5)=0 → 1, 1, 2, 2, 2, 3, 4, 4, 4 (rounding half to even) → 1..4
    assert tuple(cfg.lr_milestones) == (1, 2, 3, 4) and cfg.lr_gamma == 0.75 and cfg.lr == 1e-3
    R.main(_argv(tmp_path, "flownets", "--steps", "1"))
    cfg = record[1].args[1]
    assert tuple(cfg.lr_milestones) == (1,) and cfg.lr_gamma == 0.5  # never beyond the run, never at 0
    R.main(_argv(tmp_path, "flownets", "--steps", "12"))
    assert tuple(record[2].args[1].lr_milestones) == (6, 8, 10)


def test_main_config_json_overrides_small_and_reaches_the_export(tmp_path, record):
    out = R.main(_argv(tmp_path, "flownets", "--config", '{"width": 4}'))
    (t,) = record
    net = t.args[0].net
    assert net.config["width"] == 4 and isinstance(t.args[0], R._Multiscale)
    assert t.args[2].kind == "flow"
    _, header = load_checkpoint(out, "FlowNetS")
    assert header["config"]["width"] == 4 and header["data"]["adversarial"] is None
    assert header["data"]["adv_weight"] == 0.0  # a plain net has no adversarial term
    assert set(t.kwargs["val_fn"](t.args[0], {"frame1": torch.rand(1, 3, 16, 16), "frame2": torch.rand(1, 3, 16, 16),
                                              "flow": torch.zeros(1, 2, 16, 16)})) == {"epe"}


def test_main_without_small_builds_the_paper_config(tmp_path, record, monkeypatch):
    built = []
    real = R.build_net

    def spy(name, small=False, **config):
        built.append((name, small, config))
        return real(name, small=True, **config)  # the paper's DeblurNet is too big for a fast test

    monkeypatch.setattr(R, "build_net", spy)
    argv = _argv(tmp_path, "deblurnet")
    argv.remove("--small")
    R.main(argv + ["--config", '{"width": 8}'])
    assert built == [("deblurnet", False, {"width": 8})]


def test_other_ranks_train_but_do_not_export(tmp_path, record, monkeypatch, capsys):
    import pnpdeblur.train.distributed as D

    monkeypatch.setattr(D, "is_main_process", lambda: False)
    out = R.main(_argv(tmp_path, "flownets"))
    assert out == tmp_path / "flownets.safetensors" and not out.exists()
    assert record[0].fitted == 1 and capsys.readouterr().out == ""


def test_the_discriminator_takes_the_nets_channels(tmp_path, record):
    R.main(_argv(tmp_path, "deepdeblur", "--config", '{"in_channels": 1}', "--data", "flow"))
    (t,) = record
    assert t.args[0].discriminator.config["in_channels"] == 1
    # without --small the discriminator gets the paper's width
    record.clear()
    argv = _argv(tmp_path, "deepdeblur", "--config", '{"features": 4, "blocks": 1}', "--data", "flow")
    argv.remove("--small")
    R.main(argv)
    disc_cls = R._net_class(R.SPECS["deepdeblur"], "DeepDeblurDiscriminator")
    assert record[0].args[0].discriminator.config == disc_cls(in_channels=3).config


def test_help_explains_each_recipe_option(capsys):
    with pytest.raises(SystemExit):
        R.parse_args("dvd", ["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert text.startswith("usage: pnpdeblur train dvd ")
    assert f"[--no-progress] Train DVD ({R.SPECS['dvd'].paper}). options: -h, --help" in text
    for line in ("--data {video,flow,gopro} --corpus CORPUS folder of sharp photos (default: scikit-image photos only)",
                 "--preload decode the corpus into memory once",
                 "--root ROOT GOPRO folder for --data gopro",
                 "--preset PRESET flow preset for --data flow (23 or 46; default 23)",
                 "--max-blur MAX_BLUR largest blur length (px) for --data video (default 16)",
                 "--frames FRAMES frames per clip, DVD only (default 5)",
                 "--noise NOISE noise std (range [0, this] for --data flow)",
                 "--small the CPU configuration {'widths': [8, 16, 32, 64]}",
                 "--config CONFIG JSON of constructor arguments (override --small)",
                 "--steps STEPS --batch BATCH --crop CROP --lr LR --init INIT start from these DVD weights "
                 "instead of a random initialisation (fine-tuning): a safetensors path, or 'shipped' for the "
                 "library's own (built by --small); the options must build the same network --time-budget "
                 "SECONDS train for about this long: a short probe measures the step rate and sets --steps to fill "
                 "90% of it; training stops at this time regardless --grad-clip"):
        assert line in text, line


def test_main_usage_error_shows_only_the_first_argument():
    with pytest.raises(SystemExit) as e:
        R.main(["unet", "--small", "--steps", "2"])
    assert str(e.value).endswith("[options]; got ['unet']")
    with pytest.raises(SystemExit) as e:
        R.main([])
    assert str(e.value).endswith("[options]; got []")


def test_main_reads_a_gopro_folder(tmp_path, record):
    root = _gopro(tmp_path, n=2)
    out = R.main(_argv(tmp_path, "deblurnet", "--data", "gopro", "--root", str(root), "--crop", "8"))
    (t,) = record
    train = t.args[2]
    assert len(train) == 2 and all("train" in str(p[0]) for p in train.pairs) and train.transform.crop == (8, 8)
    assert list(t.kwargs["val_data"].indices) == [0]
    d = load_checkpoint(out, "DeblurNet")[1]["data"]
    assert d["data"] == "gopro" and d["preset"] is None and d["max_blur"] is None


def test_seconds_are_recorded_to_a_tenth(tmp_path, record, monkeypatch):
    readings = []

    def clock():  # t0 = 100, every later reading 101.2345
        readings.append(None)
        return 100.0 if len(readings) == 1 else 101.2345

    monkeypatch.setattr(R.time, "time", clock)
    out = R.main(_argv(tmp_path, "flownets"))
    assert load_checkpoint(out, "FlowNetS")[1]["data"]["seconds"] == 1.2


def test_the_adversarial_terms_judge_the_full_size_output_of_three_scales():
    """With DeepDeblur's three scales the discriminator sees the last (full-size) output, not a coarser one."""

    class Gen3(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor(0.8))

        def forward(self, x):
            return [self.a * nn.functional.avg_pool2d(x, 4), self.a * nn.functional.avg_pool2d(x, 2), self.a * x]

    seen = []

    class Judge(_Critic):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return super().forward(x)

    gen = Gen3()
    pair = AdversarialPair(gen, Judge())
    batch = _image_batch(1)
    R.make_loss_fn(R.SPECS["deepdeblur"], pair, 0.3)(pair, batch)
    full = tuple(batch["sharp"].shape[-2:])
    assert seen and all(s == full for s in seen)


def test_main_time_budget_sizes_the_run_from_a_probe_of_one_batch(tmp_path, record, monkeypatch):
    from pnpdeblur.train import budget

    probes = []

    def fake_rate(model, loss_fn, batch, **kw):
        probes.append((model, {k: tuple(v.shape) for k, v in batch.items() if hasattr(v, "shape")}, kw))
        return 5.0

    monkeypatch.setattr(budget, "measure_step_rate", fake_rate)
    argv = _argv(tmp_path, "deepdeblur", "--data", "flow", "--time-budget", "2", "--lr", "1e-4")
    R.main(argv)
    (t,) = record
    model, cfg, train, loss_fn = t.args
    (probed, shapes, kw), = probes
    assert probed is model and kw == {"device": "cpu", "amp": False, "lr": 1e-4}  # the pair, as trained
    assert shapes["blurred"] == (2, 3, 16, 16) and shapes["sharp"] == (2, 3, 16, 16)
    # floor(2 s × 5 steps/s × 0.9) = 9 steps of 2 images; the paper's ÷10 at a third of them
    assert cfg.steps == 9 and len(train) == 18 and tuple(cfg.lr_milestones) == (3,) and cfg.time_limit_s == 2.0


# ------------------------------------------------------------------ --init: fine-tuning from weights
def _same_weights(net, ref):
    got = net.state_dict()
    return set(got) == set(ref.state_dict()) and all(
        torch.equal(got[k], v.to(got[k].dtype)) for k, v in ref.state_dict().items())


def test_init_starts_from_the_given_weights_and_the_header_records_them(tmp_path, record):
    import hashlib

    from pnpdeblur.nets import DeepDeblur

    torch.manual_seed(1)
    first = R.main(_argv(tmp_path, "deepdeblur", "--out", str(tmp_path / "first.safetensors")))
    record.clear()
    torch.manual_seed(2)  # a fresh net would differ from the first
    out = R.main(_argv(tmp_path, "deepdeblur", "--init", str(first), "--adv-weight", "0"))
    (t,) = record
    net = R._inner(t.args[0])
    assert _same_weights(net, DeepDeblur.from_checkpoint(first))
    init = load_checkpoint(out, "DeepDeblur")[1]["data"]["init"]
    assert init == {"file": "first.safetensors", "sha256": hashlib.sha256(first.read_bytes()).hexdigest(),
                    "steps": 12}


def test_init_reaches_the_generator_of_an_adversarial_pair(tmp_path, record):
    from pnpdeblur.nets import DeblurGANGenerator

    torch.manual_seed(3)
    first = R.main(_argv(tmp_path, "deblurgan", "--out", str(tmp_path / "first.safetensors"), "--adv-weight", "0"))
    record.clear()
    torch.manual_seed(4)
    R.main(_argv(tmp_path, "deblurgan", "--init", str(first)))  # the paper's WGAN-GP pair
    (t,) = record
    assert isinstance(t.args[0], AdversarialPair)
    assert _same_weights(t.args[0].generator.net, DeblurGANGenerator.from_checkpoint(first))


def test_without_init_the_net_is_fresh_and_the_header_says_so(tmp_path, record):
    from pnpdeblur.nets import DeepDeblur

    torch.manual_seed(1)
    first = R.main(_argv(tmp_path, "deepdeblur", "--out", str(tmp_path / "first.safetensors")))
    record.clear()
    torch.manual_seed(2)
    out = R.main(_argv(tmp_path, "deepdeblur"))
    (t,) = record
    assert not _same_weights(R._inner(t.args[0]), DeepDeblur.from_checkpoint(first))
    assert load_checkpoint(out, "DeepDeblur")[1]["data"]["init"] is None
    assert R.parse_args("deepdeblur", []).init is None
    assert R.parse_args("dvd", ["--init", "w.safetensors"]).init == "w.safetensors"


def test_init_with_weights_of_another_config_is_refused_by_name(tmp_path, record):
    first = R.main(_argv(tmp_path, "deepdeblur", "--out", str(tmp_path / "first.safetensors")))
    record.clear()
    with pytest.raises(ValueError, match=r"init: .*first\.safetensors holds DeepDeblur\{.*'blocks': 3.*but the "
                                         r"options build DeepDeblur\{.*'blocks': 1"):
        R.main(_argv(tmp_path, "deepdeblur", "--init", str(first), "--config", '{"blocks": 1}'))
    assert record == []


def test_init_from_another_architecture_or_a_corrupt_file_is_a_checkpoint_error(tmp_path, record):
    from pnpdeblur.checkpoints import CheckpointError

    other = R.main(_argv(tmp_path, "deblurgan", "--out", str(tmp_path / "gan.safetensors")))
    record.clear()
    with pytest.raises(CheckpointError, match="expected 'DeepDeblur'"):
        R.main(_argv(tmp_path, "deepdeblur", "--init", str(other)))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        R.main(_argv(tmp_path, "deblurnet", "--init", str(bad)))
    assert record == []


@pytest.mark.parametrize("name", ["deepdeblur", "deblurgan"])
def test_init_shipped_starts_from_the_librarys_weights(tmp_path, record, name):
    cls = R._net_class(R.SPECS[name])
    out = R.main(_argv(tmp_path, name, "--init", "shipped", "--adv-weight", "0"))
    (t,) = record
    assert _same_weights(R._inner(t.args[0]), cls.pretrained())
    assert R.shipped_weights_for(name) == cls.pretrained_path()
    init = load_checkpoint(out, cls.__name__)[1]["data"]["init"]
    assert init["file"] == cls.pretrained_file and init["steps"] == cls.pretrained().header["steps"]


@pytest.mark.parametrize("name", ["deblurnet", "dvd", "flownets"])
def test_init_shipped_without_shipped_weights_names_the_nets_that_have_them(tmp_path, record, name):
    with pytest.raises(ValueError, match=r"--init shipped: no \w+ weights ship with pnpdeblur; they ship for "
                                         r"\['deblurgan', 'deepdeblur'\]"):
        R.main(_argv(tmp_path, name, "--init", "shipped"))
    assert record == []
    with pytest.raises(ValueError, match="unknown net 'unet'"):
        R.shipped_weights_for("unet")


def test_init_refuses_to_overwrite_its_own_weights(tmp_path, record):
    w = R.main(_argv(tmp_path, "deepdeblur", "--out", str(tmp_path / "w.safetensors")))
    record.clear()
    before = w.read_bytes()
    with pytest.raises(ValueError, match=r"--out .*w\.safetensors would overwrite the --init weights"):
        R.main(_argv(tmp_path, "deepdeblur", "--init", str(tmp_path / "run" / ".." / "w.safetensors"),
                     "--out", str(w)))
    assert w.read_bytes() == before and record == []
