"""The DnCNN training recipe (``pnpdeblur.train.dncnn``): opponent planes, loss, validation, options, main.

The grey DnCNN is trained on the planes ``DenoiserPrior`` gives it for a colour image; the
planes are checked here against the opponent transform written out by hand and against what
the prior really passes the network. ``main`` runs with a stand-in Trainer (the real one,
its ``fit`` replaced by a record), except for one short real run.
"""
import hashlib
import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from skimage.color import rgb2gray

from pnpdeblur.checkpoints import CheckpointError, load_checkpoint
from pnpdeblur.data import read_image, sample_images
from pnpdeblur.nets.dncnn import PRETRAINED_PATH, DnCNN
from pnpdeblur.priors import DenoiserPrior, DnCNNPrior
from pnpdeblur.train import dncnn as R
from pnpdeblur.train import drunet as drunet_recipe
from _photos import memoise_sample_image
from _recording_trainer import record_trainers


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(autouse=True)
def _decode_each_photo_once(monkeypatch):
    memoise_sample_image(monkeypatch, drunet_recipe)


@pytest.fixture
def record(monkeypatch):
    return record_trainers(monkeypatch, {"psnr": 31.5})


def _by_hand(rgb):
    """The opponent planes written out: luminance, red − blue, red − 2 green + blue (orthonormal rows)."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    planes = torch.stack([(r + g + b) / math.sqrt(3), (r - b) / math.sqrt(2), (r - 2 * g + b) / math.sqrt(6)], 1)
    return planes.reshape(-1, 1, *rgb.shape[-2:])


def test_opponent_planes_are_the_orthonormal_opponent_transform_image_by_image():
    rgb = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    planes = R.opponent_planes(rgb)
    assert planes.shape == (6, 1, 5, 7) and planes.dtype == torch.float64
    torch.testing.assert_close(planes, _by_hand(rgb), rtol=0, atol=1e-15)
    # plane 3n + k belongs to image n: the planes of image 1 alone are planes 3..5
    torch.testing.assert_close(R.opponent_planes(rgb[1:]), planes[3:], rtol=0, atol=0)
    torch.testing.assert_close(R.colour_from_planes(planes), rgb, rtol=0, atol=1e-14)
    # orthonormal: the energy of every pixel is kept, so white noise keeps its σ
    torch.testing.assert_close(planes.reshape(2, 3, 5, 7).pow(2).sum(1), rgb.pow(2).sum(1), rtol=1e-13, atol=0)


def test_the_planes_are_what_the_prior_passes_a_grey_network():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x, sigma):
            seen.append((x.clone(), sigma))
            return 0.5 * x

    z = torch.rand(2, 3, 6, 5, dtype=torch.float64)
    out = DenoiserPrior(Spy(), channels=1, cycle=False)(z, 0.1)
    (x, sigma), = seen
    torch.testing.assert_close(x, R.opponent_planes(z), rtol=0, atol=1e-15)
    assert sigma == pytest.approx(0.1)
    torch.testing.assert_close(out, R.colour_from_planes(0.5 * R.opponent_planes(z)), rtol=0, atol=1e-15)


@pytest.mark.parametrize("bad, fn", [((2, 1, 4, 4), "opponent_planes"), ((3, 4, 4), "opponent_planes"),
                                     ((4, 1, 4, 4), "colour_from_planes"), ((3, 2, 4, 4), "colour_from_planes")])
def test_plane_shapes_are_checked(bad, fn):
    name = "rgb" if fn == "opponent_planes" else "planes"
    with pytest.raises(ValueError, match=rf"{name} must have shape .*got {re_tuple(bad)}"):
        getattr(R, fn)(torch.zeros(bad))


def re_tuple(shape):
    return r"\(" + r", ".join(str(s) for s in shape) + r"\)"


class _Scale(torch.nn.Module):
    """``a · noisy``; records ``(noisy, sigma)``."""

    def __init__(self, a=0.9):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.seen = []

    def forward(self, x, sigma):
        self.seen.append((x, sigma))
        return self.a * x


@pytest.mark.parametrize("max_sigma", [R.MAX_SIGMA, 0.05])
def test_loss_is_the_mse_of_noisy_planes_with_a_noise_level_per_plane(max_sigma):
    clean = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    model = _Scale()
    torch.manual_seed(7)
    loss, extra = (R.make_loss_fn() if max_sigma == R.MAX_SIGMA else R.make_loss_fn(max_sigma))(model, {"clean": clean})
    torch.manual_seed(7)
    planes = _by_hand(clean)
    sigma = torch.rand(6, dtype=torch.float64) * max_sigma
    noisy = planes + sigma.view(-1, 1, 1, 1) * torch.randn(planes.shape, dtype=torch.float64)
    (x, s), = model.seen
    torch.testing.assert_close(s, sigma, rtol=0, atol=0)
    torch.testing.assert_close(x, noisy, rtol=0, atol=1e-15)
    mse = float(((0.9 * noisy - planes) ** 2).mean())
    assert float(loss.detach()) == pytest.approx(mse, rel=1e-6)
    assert extra == {"psnr": pytest.approx(-10 * math.log10(mse), rel=1e-6)}
    loss.backward()
    assert model.a.grad is not None and float(model.a.grad) != 0.0
    assert R.MAX_SIGMA == pytest.approx(60 / 255)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_max_sigma_must_be_in_zero_one(bad):
    with pytest.raises(ValueError, match=r"max_sigma must be in \(0, 1\]"):
        R.make_loss_fn(bad)


def test_validation_denoises_colour_crops_through_their_planes():
    clean = torch.rand(2, 3, 6, 6)
    noisy = clean + 0.1 * torch.randn(clean.shape)
    sigma = torch.tensor([0.1, 0.2])
    model = _Scale(0.8).float()
    got = R.val_fn(model, {"clean": clean, "noisy": noisy, "sigma": sigma})
    (x, s), (xg, sg) = model.seen
    torch.testing.assert_close(x, _by_hand(noisy), rtol=0, atol=1e-6)
    assert s.tolist() == pytest.approx([0.1, 0.1, 0.1, 0.2, 0.2, 0.2])  # each image's σ for its three planes
    ref = drunet_recipe.psnr_batch(0.8 * noisy, clean).mean()
    assert got["psnr"] == pytest.approx(float(ref), rel=1e-5)
    assert got["psnr_noisy"] == pytest.approx(float(drunet_recipe.psnr_batch(noisy, clean).mean()), rel=1e-6)
    # the grey crops: rgb2gray of the clean crop plus the red channel's noise (std σ), at each crop's σ
    grey = torch.from_numpy(rgb2gray(clean.permute(0, 2, 3, 1).numpy()))[:, None].float()
    torch.testing.assert_close(xg, grey + (noisy - clean)[:, :1], rtol=0, atol=1e-6)
    assert sg.tolist() == pytest.approx([0.1, 0.2])
    ref_grey = drunet_recipe.psnr_batch(0.8 * (grey + (noisy - clean)[:, :1]), grey).mean()
    assert got["psnr_grey"] == pytest.approx(float(ref_grey), rel=1e-5)


def test_grey_planes_are_scikit_images_rgb2gray():
    rgb = torch.rand(2, 3, 5, 4, dtype=torch.float64)
    ref = rgb2gray(rgb.permute(0, 2, 3, 1).numpy())
    got = R.grey_planes(rgb)
    assert got.shape == (2, 1, 5, 4) and got.dtype == torch.float64
    np.testing.assert_allclose(got[:, 0].numpy(), ref, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match=r"rgb must have shape \(N, 3, H, W\), got \(2, 1, 5, 4\)"):
        R.grey_planes(got)


def test_training_planes_give_colour_crops_as_opponent_planes_then_grey_crops_as_one_plane():
    rgb = torch.rand(4, 3, 5, 6, dtype=torch.float64)
    grey = torch.tensor([False, True, False, True])
    got = R.training_planes(rgb, grey)
    assert got.shape == (3 * 2 + 2, 1, 5, 6)
    torch.testing.assert_close(got[:6], _by_hand(rgb[[0, 2]]), rtol=0, atol=1e-15)
    torch.testing.assert_close(got[6:], R.grey_planes(rgb[[1, 3]]), rtol=0, atol=0)
    torch.testing.assert_close(R.training_planes(rgb, torch.zeros(4, dtype=torch.bool)), _by_hand(rgb),
                               rtol=0, atol=1e-15)
    for bad in (torch.zeros(3, dtype=torch.bool), torch.zeros(4)):
        with pytest.raises(ValueError, match=r"grey must be a bool tensor of shape \(4,\)"):
            R.training_planes(rgb, bad)


@pytest.mark.parametrize("share", [0.5, 1.0])
def test_a_grey_share_of_the_crops_is_trained_as_grey_images(share):
    clean = torch.rand(6, 3, 4, 5, dtype=torch.float64)
    model = _Scale()
    torch.manual_seed(11)
    loss, _ = R.make_loss_fn(0.2, share)(model, {"clean": clean})
    torch.manual_seed(11)
    grey = torch.rand(6) < share
    assert 0 < int(grey.sum()) < 6 or share == 1.0  # the seed mixes both kinds at 0.5
    planes = R.training_planes(clean, grey)
    sigma = torch.rand(planes.shape[0], dtype=torch.float64) * 0.2
    noisy = planes + sigma.view(-1, 1, 1, 1) * torch.randn(planes.shape, dtype=torch.float64)
    (x, s), = model.seen
    assert x.shape[0] == 3 * int((~grey).sum()) + int(grey.sum())
    torch.testing.assert_close(s, sigma, rtol=0, atol=0)
    torch.testing.assert_close(x, noisy, rtol=0, atol=1e-15)
    assert float(loss.detach()) == pytest.approx(float(((0.9 * noisy - planes) ** 2).mean()), rel=1e-6)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_grey_share_must_be_a_probability(bad):
    with pytest.raises(ValueError, match=r"grey_share must be in \[0, 1\]"):
        R.make_loss_fn(R.MAX_SIGMA, bad)


def _folder(tmp_path, n=3):
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        iio.imwrite(d / f"p{i}.png", (rng.random((14, 12, 3)) * 255).astype(np.uint8))
    return d, sorted(d.iterdir())


def _argv(tmp_path, *extra):
    return ["--features", "4", "--depth", "3", "--steps", "16", "--batch", "2", "--crop", "8", "--val-items", "2",
            "--device", "cpu", "--no-progress", "--run-dir", str(tmp_path / "run"),
            "--out", str(tmp_path / "w.safetensors"), *extra]


def test_main_wires_photos_data_schedule_loss_and_validation(tmp_path, record, capsys):
    d, paths = _folder(tmp_path, n=4)
    out = R.main(_argv(tmp_path, "--data", str(d), "--no-skimage", "--val-images", "2", "--seed", "3", "--lr",
                       "0.002", "--halve-at", "0.25,0.5,,0.01", "--max-sigma", "0.3", "--grey-share", "1",
                       "--log-every", "3",
                       "--val-every", "5", "--ckpt-every", "7"))
    assert out == tmp_path / "w.safetensors" and out.is_file()
    (t,) = record
    model, cfg, train, loss_fn = t.args
    assert isinstance(model, DnCNN) and t.fitted == 1
    assert model.config == {"channels": 1, "features": 4, "depth": 3, "noise_map": True}
    assert (cfg.steps, cfg.batch_size, cfg.lr, tuple(cfg.betas), cfg.eps) == (16, 2, 0.002, (0.9, 0.999), 1e-8)
    assert tuple(cfg.lr_milestones) == (4, 8) and cfg.lr_gamma == 0.5
    assert (cfg.seed, cfg.log_every, cfg.val_every, cfg.ckpt_every, cfg.out_dir) == (3, 3, 5, 7, str(tmp_path / "run"))
    assert isinstance(train, drunet_recipe.CleanCropDataset) and len(train) == 32 and train.crop == 8
    assert train.seed == 3 and len(train.photos) == 2
    assert np.array_equal(train.photos[1], drunet_recipe._as_uint8(read_image(paths[1], 3)))
    val = t.kwargs["val_data"]
    assert isinstance(val, drunet_recipe.NoisyValDataset) and len(val) == 2 and val.crop == 8
    assert np.array_equal(val.photos[1], drunet_recipe._as_uint8(read_image(paths[3], 3)))
    assert t.kwargs["val_fn"] is R.val_fn
    spy = _Scale()
    torch.manual_seed(0)
    loss_fn(spy, {"clean": torch.ones(1, 3, 2, 2, dtype=torch.float64)})
    assert float(spy.seen[0][1].max()) <= 0.3 and spy.seen[0][0].shape == (1, 1, 2, 2)  # --grey-share 1: one plane
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "weights": str(out), "validation": {"psnr": 31.5}}


def test_the_header_records_the_recipe_and_the_weights_load_as_a_prior(tmp_path, record):
    d, paths = _folder(tmp_path, n=3)
    argv = _argv(tmp_path, "--data", str(d), "--val-images", "1", "--float32", "--grey-share", "0.25")
    out = R.main(argv)
    state, header = load_checkpoint(out, "DnCNN")
    assert header["config"] == {"channels": 1, "features": 4, "depth": 3, "noise_map": True}
    assert header["steps"] == 16 and header["validation"] == {"psnr": 31.5} and "stored_dtype" not in header
    data = header["data"]
    assert data["recipe"] == "pnpdeblur.train.dncnn" and data["argv"] == argv and data["loss"] == "MSE"
    assert data["train_files"] == [paths[0].name, paths[1].name] + [
        n for n in sample_images() if n not in drunet_recipe.HELD_OUT_SAMPLES]
    assert data["val_files"] == [paths[2].name] and data["max_sigma"] == pytest.approx(60 / 255)
    assert data["init"] is None and "opponent" in data["planes"]
    assert data["grey_share"] == 0.25 and data["grey_weights"] == pytest.approx([0.2125, 0.7154, 0.0721])
    assert all(v.dtype == torch.float32 for v in state.values())
    prior = DnCNNPrior(out, ensemble=False)
    z = np.random.default_rng(1).random((9, 10, 3))
    assert np.isfinite(prior(z, 0.05)).all()


def test_features_and_depth_must_be_positive(tmp_path, record):
    for flag in ("--features", "--depth"):
        with pytest.raises(ValueError, match=rf"{flag} must be >= 1, got 0"):
            R.main(_argv(tmp_path, flag, "0"))
    assert record == []


def test_init_shipped_starts_from_the_shipped_weights_and_records_them(tmp_path, record):
    out = R.main(["--steps", "2", "--batch", "1", "--crop", "8", "--device", "cpu", "--no-progress",
                  "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "w.safetensors"), "--init", "shipped"])
    shipped = DnCNN.pretrained()
    got = record[0].args[0].state_dict()
    assert all(torch.equal(got[k], v) for k, v in shipped.state_dict().items())
    init = load_checkpoint(out, "DnCNN")[1]["data"]["init"]
    assert init == {"file": PRETRAINED_PATH.name, "sha256": hashlib.sha256(PRETRAINED_PATH.read_bytes()).hexdigest(),
                    "steps": shipped.header.get("steps")}
    with pytest.raises(ValueError, match=r"init: .* holds DnCNN\{.*but the options build DnCNN\{"):
        R.main(_argv(tmp_path, "--init", "shipped"))  # 4 features, the shipped 32
    with pytest.raises(ValueError, match="would overwrite the --init weights"):
        R.main(_argv(tmp_path, "--init", str(out), "--out", str(out)))


def test_a_short_real_run_changes_the_weights_and_exports_them(tmp_path):
    torch.manual_seed(0)
    out = R.main(["--features", "4", "--depth", "3", "--steps", "3", "--batch", "2", "--crop", "12",
                  "--device", "cpu", "--no-progress", "--log-every", "1", "--run-dir", str(tmp_path / "run"),
                  "--out", str(tmp_path / "w.safetensors")])
    state, header = load_checkpoint(out, "DnCNN")
    assert header["steps"] == 3 and header["stored_dtype"] == "float16"
    torch.manual_seed(0)
    fresh = DnCNN(channels=1, features=4, depth=3).state_dict()
    assert any(not torch.allclose(state[k].float(), fresh[k], atol=1e-3) for k in fresh)
    assert all(torch.isfinite(v.float()).all() for v in state.values())
