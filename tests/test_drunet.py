"""DRUNet (issue 15): network, shipped weights, prior inside HQS, training recipe and CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pnpdeblur.checkpoints import CheckpointError, read_header
from pnpdeblur.nets.drunet import (DRUNET_MEDIUM_PATH, DRUNET_PRETRAINED_PATH, MEDIUM_CONFIG, PAPER_CONFIG, SMALL_CONFIG,
                                   DRUNet, noise_level_map)
from pnpdeblur.priors.drunet import DRUNetPrior

TINY = dict(features=(4, 6, 8, 10), blocks=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors (conftest)


def _tiny(channels=3, **kw):
    torch.manual_seed(0)
    return DRUNet(channels=channels, **{**TINY, **kw}).eval()


def _psnr(x, ref):
    x = np.clip(np.asarray(x, dtype=np.float64), 0, 1)
    return float(-10 * np.log10(np.mean((x - np.asarray(ref, dtype=np.float64)) ** 2)))


# ----------------------------------------------------------------------------- network
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("hw", [(37, 53), (8, 8), (1, 5), (64, 40)])
def test_any_size_and_channels_keep_the_shape(channels, hw):
    net = _tiny(channels)
    x = torch.rand(2, channels, *hw)
    with torch.no_grad():
        y = net(x, 0.1)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()


def test_sigma_forms_agree_and_are_per_sample():
    net = _tiny()
    x = torch.rand(2, 3, 19, 23)
    with torch.no_grad():
        a = net(x, 0.1)
        b = net(x, torch.tensor([0.1, 0.1]))
        c = net(x, torch.full((2, 1, 19, 23), 0.1))
        d = net(x, torch.tensor(0.1))
        mixed = net(x, torch.tensor([0.02, 0.15]))
        first = net(x[:1], 0.02)
        second = net(x[1:], 0.15)
    for o in (b, c, d):
        torch.testing.assert_close(o, a)
    torch.testing.assert_close(mixed[:1], first)
    torch.testing.assert_close(mixed[1:], second)
    assert not torch.allclose(mixed[:1], a[:1])  # the map reaches the network


def test_a_spatial_noise_map_is_used_locally():
    net = _tiny()
    x = torch.rand(1, 3, 128, 128)
    smap = torch.full((1, 1, 128, 128), 0.05)
    smap2 = smap.clone()
    smap2[..., 0, 0] = 0.3
    with torch.no_grad():
        d = (net(x, smap2) - net(x, smap)).abs().sum(1)[0]
    # changed where the map changed, not beyond the receptive field (far corner)
    assert d[0, 0] > 1e-4 and d[-1, -1] < 1e-7


@pytest.mark.parametrize(
    "sigma, exc",
    [(-0.1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
     (torch.tensor([0.1, 0.2, 0.3]), ValueError), (torch.tensor([0.1, -0.2]), ValueError),
     (torch.tensor([0.1, float("nan")]), ValueError), (torch.zeros(2, 1, 5, 5), ValueError),
     (torch.zeros(2, 3, 12, 12), ValueError), ("0.1", TypeError), (True, TypeError)],
)
def test_bad_sigma_is_refused_naming_it(sigma, exc):
    with pytest.raises(exc, match="sigma"):
        _tiny()(torch.rand(2, 3, 12, 12), sigma)


def test_bad_input_and_config_are_refused():
    net = _tiny()
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.rand(1, 1, 8, 8), 0.1)
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.rand(3, 8, 8), 0.1)
    with pytest.raises(TypeError, match="x must be"):
        net(np.zeros((1, 3, 8, 8), np.float32), 0.1)
    with pytest.raises(ValueError, match="features"):
        DRUNet(features=(4, 4, 4))
    with pytest.raises(ValueError, match="blocks"):
        DRUNet(blocks=0)
    with pytest.raises(ValueError, match="channels"):
        DRUNet(channels=0)


def test_noise_level_map_shape():
    x = torch.zeros(2, 3, 5, 7)
    m = noise_level_map(torch.tensor([0.1, 0.2]), x)
    assert m.shape == (2, 1, 5, 7)
    torch.testing.assert_close(m[:, 0, 3, 4], torch.tensor([0.1, 0.2]))


def _count_by_layers(channels, features, blocks):
    """Parameters of DRUNet from its layer list (bias-free convs: in·out·k²)."""
    f = list(features)
    total = (channels + 1) * f[0] * 9 + f[0] * channels * 9  # head, tail
    for level, c in enumerate(f):
        n_blocks = blocks if level == 3 else 2 * blocks  # coarsest: body only; others: encoder + decoder
        total += n_blocks * 2 * c * c * 9
    for a, b in zip(f[:-1], f[1:]):
        total += 2 * a * b * 4  # 2×2 strided conv down + 2×2 transposed conv up
    return total


def test_parameter_count_of_the_paper_and_small_configs():
    paper = DRUNet()
    assert paper.config == {**PAPER_CONFIG, "features": list(PAPER_CONFIG["features"])}
    n = sum(p.numel() for p in paper.parameters())
    assert n == _count_by_layers(3, (64, 128, 256, 512), 4) == 32_640_960  # the paper's "32.64M"
    small = DRUNet(**SMALL_CONFIG)
    assert sum(p.numel() for p in small.parameters()) == _count_by_layers(3, SMALL_CONFIG["features"],
                                                                          SMALL_CONFIG["blocks"])
    with_bias = DRUNet(features=(4, 6, 8, 10), blocks=1, bias=True)
    assert sum(p.numel() for p in with_bias.parameters()) > _count_by_layers(3, (4, 6, 8, 10), 1)


def test_bias_free_network_is_positively_homogeneous():
    # no biases + ReLU + linear padding: f(a·x, a·σ) = a·f(x, σ) for a > 0 (the paper's rationale)
    x = torch.rand(1, 3, 21, 18)
    with torch.no_grad():
        free = _tiny()
        torch.testing.assert_close(free(3 * x, 0.3), 3 * free(x, 0.1), rtol=1e-4, atol=1e-5)
        biased = _tiny(bias=True)
        for p in biased.parameters():  # make the biases matter
            torch.nn.init.uniform_(p, -0.3, 0.3)
        assert not torch.allclose(biased(3 * x, 0.3), 3 * biased(x, 0.1), rtol=1e-3, atol=1e-3)


def test_residual_configuration_starts_at_the_identity():
    net = _tiny(residual=True)
    x = torch.rand(1, 3, 13, 9)
    with torch.no_grad():
        torch.testing.assert_close(net(x, 0.2), x)


def test_save_and_reload_roundtrip(tmp_path):
    net = _tiny(residual=True)
    torch.nn.init.normal_(net.tail.weight, std=0.1)
    path = net.save(tmp_path / "d.safetensors")
    back = DRUNet.from_checkpoint(path)
    x = torch.rand(1, 3, 11, 17)
    with torch.no_grad():
        torch.testing.assert_close(back(x, 0.1), net(x, 0.1))


# ----------------------------------------------------------------------- shipped weights
def test_shipped_weights_load_with_a_checked_header():
    header = read_header(DRUNET_PRETRAINED_PATH)
    assert header["architecture"] == "DRUNet"
    net = DRUNet.pretrained()
    assert net.config == {**SMALL_CONFIG, "features": list(SMALL_CONFIG["features"])}
    assert DRUNET_PRETRAINED_PATH.stat().st_size < 5_000_000
    assert header["data"]["held_out"] == ["astronaut", "camera", "coffee", "chelsea"]
    assert not set(header["data"]["train_files"]) & {"astronaut", "camera", "coffee", "chelsea"}


def test_shipped_medium_weights_load_with_a_checked_header():
    header = read_header(DRUNET_MEDIUM_PATH)
    assert header["architecture"] == "DRUNet" and header["stored_dtype"] == "float16"
    net = DRUNet.pretrained("medium")
    assert net.config == {**MEDIUM_CONFIG, "features": list(MEDIUM_CONFIG["features"])}
    assert sum(p.numel() for p in net.parameters()) == 4_253_664
    assert DRUNET_MEDIUM_PATH.stat().st_size < 10_000_000
    assert header["data"]["held_out"] == ["astronaut", "camera", "coffee", "chelsea"]
    assert not set(header["data"]["train_files"]) & {"astronaut", "camera", "coffee", "chelsea"}


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_shipped_medium_denoises_better_than_small(name):
    # Held-out photos, 128², σ = 25/255, seeded noise: measured +0.28 / +0.37 dB.
    from pnpdeblur.data import sample_image

    x = sample_image(name, size=128, dtype=np.float32, channels=3)
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    noisy = t + 25 / 255 * torch.randn(t.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        small = DRUNet.pretrained("small")(noisy, 25 / 255)[0].permute(1, 2, 0)
        medium = DRUNet.pretrained("medium")(noisy, 25 / 255)[0].permute(1, 2, 0)
    assert _psnr(medium, x) > _psnr(small, x) + 0.15
    assert _psnr(medium, x) > _psnr(noisy[0].permute(1, 2, 0), x) + 8


def test_pretrained_variant_is_checked():
    with pytest.raises(ValueError, match=r"variant must be one of \['medium', 'small'\], got 'large'"):
        DRUNet.pretrained("large")
    with pytest.raises(ValueError, match="variant must be one of"):
        DRUNetPrior(variant="paper")
    with pytest.raises(ValueError, match="give it with net=None"):
        DRUNetPrior(DRUNET_PRETRAINED_PATH, variant="medium")


def test_prior_variant_loads_the_medium_weights():
    prior = DRUNetPrior(variant="medium")
    ref = DRUNet.pretrained("medium")
    for (k, a), (_, b) in zip(prior.net.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k
    assert prior.net.config["features"] == [32, 64, 128, 256]


def test_a_checkpoint_of_another_architecture_is_refused():
    from pnpdeblur.nets.dncnn import PRETRAINED_PATH as DNCNN_PATH

    with pytest.raises(CheckpointError, match="DRUNet"):
        DRUNet.from_checkpoint(DNCNN_PATH)
    with pytest.raises(CheckpointError):
        DRUNetPrior(DNCNN_PATH)


@pytest.fixture(scope="module")
def photo():
    from pnpdeblur.data import sample_image

    return sample_image("astronaut", size=64, dtype=np.float32)


def test_shipped_denoiser_strength_grows_with_the_noise_map(photo):
    # The measurable monotonicity: for one noisy image, the amount removed ‖out − noisy‖
    # grows with the σ fed to the map (a stronger map smooths more).
    net = DRUNet.pretrained()
    x = torch.from_numpy(photo).permute(2, 0, 1)[None]
    noisy = x + 25 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    levels = [0, 5, 10, 15, 25, 35, 50]
    with torch.no_grad():
        removed = [float((net(noisy, s / 255) - noisy).norm()) for s in levels]
    # strictly from 5/255 up; between 0 and 5/255, far below the input's noise, the map barely
    # acts (the shipped weights: 8.393 → 8.391, flat to 0.03 %)
    assert all(b > a for a, b in zip(removed[1:], removed[2:])), removed
    assert removed[1] > 0.999 * removed[0], removed
    assert removed[-1] > 1.3 * removed[0], removed  # measured 1.43× for the shipped weights
    # and the right level denoises: measured +7.6 dB over the noisy input at σ = 25/255
    with torch.no_grad():
        out = net(noisy, 25 / 255)
    gain = _psnr(out[0].permute(1, 2, 0), photo) - _psnr(noisy[0].permute(1, 2, 0), photo)
    assert gain > 6, gain


# ------------------------------------------------------------------------------ prior
def test_prior_on_grey_replicates_and_averages(photo):
    # grey → 3 equal channels at σ·√3 (all the noise is luminance noise of std σ√3) → mean
    prior = DRUNetPrior()
    grey = photo.mean(-1)
    noisy = (grey + 0.05 * np.random.default_rng(0).standard_normal(grey.shape)).astype(np.float32)
    out = prior(noisy, 0.05)
    assert out.shape == grey.shape and out.dtype == np.float32
    t = torch.from_numpy(noisy)[None, None].expand(1, 3, -1, -1)
    with torch.no_grad():
        ref = prior.net(t, 0.05 * 3**0.5).mean(1)[0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert _psnr(out, grey) > _psnr(noisy, grey) + 3.0  # measured +4.4 dB (the first weights: +3.5)


def test_prior_refuses_other_channel_counts():
    with pytest.raises(ValueError, match="channels"):
        DRUNetPrior()(torch.rand(1, 2, 8, 8), 0.1)
    with pytest.raises(TypeError, match="net"):
        DRUNetPrior(torch.nn.Conv2d(3, 3, 1))


def test_prior_zero_sigma_is_the_identity(photo):
    np.testing.assert_array_equal(DRUNetPrior()(photo, 0.0), photo)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_prior_inside_hqs_improves_on_the_blurred_image(photo, kind):
    from pnpdeblur.operators import UniformBlur
    from pnpdeblur.solvers import hqs

    x = photo[:48, :48]
    K = UniformBlur(np.ones((5, 5)) / 25)
    rng = np.random.default_rng(1)
    y = (np.asarray(K(x)) + 0.01 * rng.standard_normal(x.shape)).astype(np.float32)
    yy = torch.from_numpy(y).permute(2, 0, 1).contiguous() if kind == "torch" else y
    out = hqs(yy, K, prior=DRUNetPrior(), noise_level=0.01, n_iter=4, progress=False).x
    if kind == "torch":
        assert isinstance(out, torch.Tensor) and out.shape == (3, 48, 48)
        out = out.permute(1, 2, 0).numpy()
    else:
        assert isinstance(out, np.ndarray) and out.shape == x.shape
    assert _psnr(out, x) > _psnr(y, x) + 1.0


def test_prior_inside_admm_improves_on_the_blurred_image(photo):
    from pnpdeblur.operators import UniformBlur
    from pnpdeblur.solvers import admm

    x = photo[:48, :48]
    K = UniformBlur(np.ones((5, 5)) / 25)
    y = (np.asarray(K(x)) + 0.01 * np.random.default_rng(2).standard_normal(x.shape)).astype(np.float32)
    out = admm(y, K, prior=DRUNetPrior(), noise_level=0.01, n_iter=4, progress=False).x
    assert out.shape == x.shape and _psnr(out, x) > _psnr(y, x) + 1.0


# ---------------------------------------------------------------------------- training
def test_crop_dataset_is_deterministic_and_augmented():
    from pnpdeblur.train.drunet import CleanCropDataset

    img = (np.arange(20 * 30 * 3) % 251).astype(np.uint8).reshape(20, 30, 3)
    ds = CleanCropDataset([("a", img)], length=10, crop=8, seed=3)
    a, b = ds[4]["clean"], ds[4]["clean"]
    assert a.shape == (3, 8, 8) and a.dtype == torch.float32 and 0 <= a.min() and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert any(not torch.equal(ds[i]["clean"], a) for i in range(10))
    with pytest.raises(IndexError):
        ds[10]


def test_training_photos_hold_out_the_benchmark_and_the_validation_files(tmp_path):
    import imageio.v3 as iio

    from pnpdeblur.train.drunet import HELD_OUT_SAMPLES, training_photos

    for i in range(3):
        iio.imwrite(tmp_path / f"p{i}.png", np.full((10, 12, 3), 40 * i, np.uint8))
    train, val = training_photos(str(tmp_path), val_images=1)
    names = [n for n, _ in train]
    assert [n for n, _ in val] == ["p2.png"] and "p2.png" not in names and {"p0.png", "p1.png"} <= set(names)
    assert not set(HELD_OUT_SAMPLES) & set(names) and "rocket" in names
    with pytest.raises(ValueError, match="val_images"):
        training_photos(str(tmp_path), val_images=3)


def test_tiny_overfit_run_drops_the_loss():
    from pnpdeblur.train.drunet import make_loss_fn

    torch.manual_seed(0)
    net = DRUNet(features=(4, 4, 4, 4), blocks=1)
    img = torch.rand(1, 3, 4, 4).repeat_interleave(4, -1).repeat_interleave(4, -2)  # blocky, learnable
    batch = {"clean": img.repeat(2, 1, 1, 1)}
    loss_fn = make_loss_fn()
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    losses = []
    for _ in range(40):
        loss, extra = loss_fn(net, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) / 4, (losses[:3], losses[-5:])


def test_cli_help_lists_the_recipe_options(capsys):
    from pnpdeblur.cli import TRAINERS, main

    assert "drunet" in TRAINERS
    assert main(["train", "drunet", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--data", "--small", "--steps", "--batch", "--crop", "--out", "--device"):
        assert opt in out


def test_cli_two_step_run_writes_a_checkpoint(tmp_path):
    import imageio.v3 as iio

    from pnpdeblur.cli import main

    data = tmp_path / "photos"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        iio.imwrite(data / f"im{i}.png", (rng.random((24, 30, 3)) * 255).astype(np.uint8))
    out = tmp_path / "w.safetensors"
    rc = main(["train", "drunet", "--data", str(data), "--no-skimage", "--val-images", "1", "--val-items", "2",
               "--features", "4,4,4,4", "--blocks", "1", "--steps", "2", "--batch", "2", "--crop", "16",
               "--device", "cpu", "--run-dir", str(tmp_path / "run"), "--out", str(out), "--no-progress"])
    assert rc in (0, None)
    header = read_header(out)
    assert header["architecture"] == "DRUNet" and header["steps"] == 2
    assert header["data"]["val_files"] == ["im2.png"] and header["data"]["train_files"] == ["im0.png", "im1.png"]
    net = DRUNet.from_checkpoint(out)
    assert net.config["features"] == [4, 4, 4, 4]
    assert (tmp_path / "run" / "last.pt").is_file()
