"""The DRUNet training recipe (``pnpdeblur.train.drunet``) called directly: photos, crops, noise, loss, options, main.

The paper's numbers are written here from Zhang et al. (DPIR, "Plug-and-play image restoration
with deep denoiser prior"): 128² patches, batch 16, noise σ ∈ [0, 50] grey levels, L1 loss, Adam
with learning rate 1e-4 halved every 100k iterations; validation at σ = 15, 25, 50.
``main`` runs with a stand-in Trainer (the real one, its ``fit`` replaced by a record), so the
wiring costs no training.
"""
import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from pnpdeblur.checkpoints import load_checkpoint
from pnpdeblur.data import read_image, sample_image, sample_images
from pnpdeblur.nets.drunet import PAPER_CONFIG, SMALL_CONFIG, DRUNet
from pnpdeblur.train import drunet as R
from _photos import memoise_sample_image
from _recording_trainer import fake_clock, record_trainers


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(autouse=True)
def _decode_each_photo_once(monkeypatch):
    """The recipe decodes every scikit-image photo; decode each once per process."""
    memoise_sample_image(monkeypatch, R)


def _folder(tmp_path, n=3, shape=(12, 14), name="photos"):
    """``n`` PNGs; the second is grey and sits in a sub-folder (recursive listing)."""
    d = tmp_path / name
    (d / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        grey = i == 1
        p = (d / "sub" if grey else d) / f"p{i}.png"
        iio.imwrite(p, (rng.random(shape if grey else (*shape, 3)) * 255).astype(np.uint8))
        paths.append(p)
    return d, sorted(paths)


# ------------------------------------------------------------------ constants
def test_paper_noise_levels_and_held_out_photos():
    assert R.MAX_SIGMA == 50 / 255
    assert R.VAL_SIGMAS == (15 / 255, 25 / 255, 50 / 255)
    assert set(R.HELD_OUT_SAMPLES) == {"astronaut", "camera", "coffee", "chelsea"}


# ------------------------------------------------------------------ photos
def test_as_uint8_rounds_and_clips():
    img = np.array([-0.1, 0.0, 0.4 / 255, 0.6 / 255, 100.3 / 255, 100.7 / 255, 1.0, 1.3], np.float32)
    got = R._as_uint8(img)
    assert got.dtype == np.uint8 and got.tolist() == [0, 0, 0, 1, 100, 101, 255, 255]


def test_photos_of_a_folder_hold_out_its_last_files(tmp_path):
    d, paths = _folder(tmp_path, n=3)
    train, val = R.training_photos(str(d), val_images=1, skimage=False)
    assert [n for n, _ in train] == [p.name for p in paths[:2]] and [n for n, _ in val] == [paths[2].name]
    for (name, arr), p in zip(train + val, paths):
        assert arr.dtype == np.uint8 and arr.shape == (12, 14, 3)
        assert np.array_equal(arr, R._as_uint8(read_image(p, 3)))  # grey → 3 channels
    train0, val0 = R.training_photos(str(d), skimage=False)
    assert [n for n, _ in train0] == [p.name for p in paths] and val0 == []  # val_images defaults to 0


def test_scikit_image_photos_except_the_held_out_four_come_after_the_folder(tmp_path):
    d, paths = _folder(tmp_path, n=2)
    train, val = R.training_photos(str(d), val_images=1)
    names = [n for n, _ in train]
    expected = [n for n in sample_images() if n not in R.HELD_OUT_SAMPLES]
    assert names == [paths[0].name] + expected and [n for n, _ in val] == [paths[1].name]
    k = names.index("rocket")
    assert np.array_equal(train[k][1], R._as_uint8(sample_image("rocket", channels=3)))
    only, none = R.training_photos(None)
    assert [n for n, _ in only] == expected and none == []
    assert all(a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 for _, a in only)


@pytest.mark.parametrize("bad", [-1, 1.0, True, "1"])
def test_val_images_must_be_a_non_negative_int(tmp_path, bad):
    with pytest.raises(ValueError, match=rf"^val_images must be an int >= 0, got {bad!r}$".replace("(", r"\(")):
        R.training_photos(None, val_images=bad)


def test_val_images_must_leave_training_files(tmp_path):
    d, _ = _folder(tmp_path, n=3)
    with pytest.raises(ValueError, match=rf"^val_images \(3\) must be smaller than the 3 images of {d}$"):
        R.training_photos(str(d), val_images=3)
    train, val = R.training_photos(str(d), val_images=2, skimage=False)  # one left: allowed
    assert len(train) == 1 and len(val) == 2


def test_no_photos_at_all_is_refused():
    with pytest.raises(ValueError, match=r"^no training photos: give --data or keep the scikit-image photos$"):
        R.training_photos(None, skimage=False)


# ------------------------------------------------------------------ crops
def _numbered(h, w):
    return (np.arange(h * w * 3) % 256).astype(np.uint8).reshape(h, w, 3)


def test_crop_positions_cover_every_offset_with_the_given_rng():
    img = _numbered(7, 9)
    seen_i, seen_j = set(), set()
    for s in range(200):
        got = R._crop(img, 4, np.random.default_rng(s))
        r = np.random.default_rng(s)
        i, j = int(r.integers(0, 4)), int(r.integers(0, 6))  # rows first, then columns
        assert np.array_equal(got, img[i:i + 4, j:j + 4])
        seen_i.add(i)
        seen_j.add(j)
    assert seen_i == set(range(4)) and seen_j == set(range(6))  # the last offsets too


def test_crop_equal_to_the_photo_is_the_photo():
    img = _numbered(6, 6)
    assert np.array_equal(R._crop(img, 6, np.random.default_rng(1)), img)


def test_small_photos_are_reflect_padded_up_to_the_crop():
    img = _numbered(5, 6)
    got = R._crop(img, 8, np.random.default_rng(0))
    assert np.array_equal(got, np.pad(img, ((0, 3), (0, 2), (0, 0)), mode="reflect"))
    tall = _numbered(10, 5)  # only the width is short: rows keep a random offset
    for s in range(20):
        r = np.random.default_rng(s)
        i = int(r.integers(0, 3))
        padded = np.pad(tall, ((0, 0), (0, 3), (0, 0)), mode="reflect")
        assert np.array_equal(R._crop(tall, 8, np.random.default_rng(s)), padded[i:i + 8, :8])


def test_to_chw_is_float32_channels_first_on_01():
    img = _numbered(3, 4)
    t = R._to_chw(img)
    assert t.dtype == torch.float32 and t.shape == (3, 3, 4) and t.is_contiguous()
    torch.testing.assert_close(t, torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1), rtol=0, atol=0)
    t2 = R._to_chw(np.rot90(img))  # a strided view is fine
    assert t2.shape == (3, 4, 3)


# ------------------------------------------------------------------ training crops
def _dihedral(img):
    out = []
    for k in range(4):
        r = np.rot90(img, k)
        out += [(k, False, r), (k, True, r[:, ::-1])]
    return out


def test_clean_crops_reproduce_the_documented_draws():
    a, b = _numbered(20, 24), 255 - _numbered(16, 16)
    ds = R.CleanCropDataset([("a", a), b], length=40, crop=8, seed=3)  # (name, array) or arrays
    assert len(ds) == 40 and ds.crop == 8 and ds.seed == 3
    for i in (0, 7, 39):
        rng = np.random.default_rng([3, i])
        img = [a, b][int(rng.integers(2))]
        patch = R._crop(img, 8, rng)
        patch = np.rot90(patch, int(rng.integers(4)))
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        item = ds[i]
        assert set(item) == {"clean"}
        torch.testing.assert_close(item["clean"], R._to_chw(patch), rtol=0, atol=0)


def test_clean_crops_use_every_photo_rotation_and_flip():
    a = _numbered(12, 12)
    b = (_numbered(12, 12).astype(int) + 128).astype(np.uint8)
    ds = R.CleanCropDataset([a, b], length=120, crop=12, seed=0)  # whole photos: only the symmetry varies
    found = set()
    for i in range(120):
        x = (ds[i]["clean"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        hits = [(p, k, f) for p, img in enumerate((a, b)) for k, f, t in _dihedral(img) if np.array_equal(t, x)]
        assert len(hits) == 1, i
        found.add(hits[0])
    assert found == {(p, k, f) for p in (0, 1) for k in range(4) for f in (False, True)}


def test_clean_crops_depend_on_seed_and_index_only():
    img = _numbered(30, 30)
    ds, again, other = (R.CleanCropDataset([img], 5, 8, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(ds[i]["clean"], again[i]["clean"]) for i in (4, 0, 2))  # any access order
    assert not all(torch.equal(ds[i]["clean"], other[i]["clean"]) for i in range(5))
    assert R.CleanCropDataset([img], 5, 8).seed == 0
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(IndexError):
        ds[-1]


@pytest.mark.parametrize("kwargs, match", [
    (dict(photos=[]), r"^photos must not be empty$"),
    (dict(length=0), r"^length must be a positive int, got 0$"),
    (dict(length=True), r"^length must be a positive int, got True$"),
    (dict(length=2.0), r"^length must be a positive int, got 2\.0$"),
    (dict(crop=7), r"^crop must be an int >= 8, got 7$"),
    (dict(crop=True), r"^crop must be an int >= 8, got True$"),
    (dict(crop=8.0), r"^crop must be an int >= 8, got 8\.0$"),
])
def test_clean_crop_arguments_are_checked(kwargs, match):
    args = dict(photos=[_numbered(10, 10)], length=1, crop=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        R.CleanCropDataset(**args)
    R.CleanCropDataset([_numbered(10, 10)], length=1, crop=8)  # the smallest accepted values


# ------------------------------------------------------------------ validation crops
def test_validation_crops_cycle_photos_and_noise_levels_with_seeded_noise():
    a, b = _numbered(20, 20), 255 - _numbered(12, 14)
    ds = R.NoisyValDataset([("a", a), b], items=5, crop=8, seed=7)
    assert len(ds) == 5 and ds.seed == 7 and ds.crop == 8
    for i in range(5):
        item = ds[i]
        rng = np.random.default_rng([7, i])
        clean = R._to_chw(R._crop([a, b][i % 2], 8, rng))
        sigma = (15 / 255, 25 / 255, 50 / 255)[i % 3]
        noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(7 * 1000 + i))
        assert set(item) == {"clean", "noisy", "sigma"}
        torch.testing.assert_close(item["clean"], clean, rtol=0, atol=0)
        torch.testing.assert_close(item["noisy"], clean + sigma * noise, rtol=0, atol=0)
        assert item["sigma"].dtype == torch.float32 and item["sigma"].ndim == 0
        assert float(item["sigma"]) == pytest.approx(sigma, rel=1e-6)
    assert R.NoisyValDataset([a], 1, 8).seed == 10_000
    with pytest.raises(ValueError, match=r"^photos must not be empty$"):
        R.NoisyValDataset([], 1, 8)


# ------------------------------------------------------------------ PSNR and loss
def test_psnr_batch_is_per_image_with_the_output_clipped():
    ref = torch.full((3, 1, 4, 4), 0.5, dtype=torch.float64)
    x = ref.clone()
    x[0] += 0.1  # MSE 0.01: 20 dB
    x[1, :, :2] = 2.0  # clipped to 1: half the pixels off by 0.5, MSE 0.125
    got = R.psnr_batch(x, ref)
    assert got.shape == (3,)
    torch.testing.assert_close(got[:2], torch.tensor([20.0, -10 * np.log10(0.125)], dtype=torch.float64))
    assert float(got[2]) == pytest.approx(120.0)  # identical: the 1e-12 floor


class _Spy(torch.nn.Module):
    """``a · noisy``; records ``(noisy, sigma)``."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.9, dtype=torch.float64))
        self.seen = []

    def forward(self, x, sigma):
        self.seen.append((x, sigma))
        return self.a * x


@pytest.mark.parametrize("max_sigma", [R.MAX_SIGMA, 0.3, 1.0])
def test_loss_is_l1_at_a_uniform_noise_level_per_sample(max_sigma):
    clean = torch.rand(3, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = _Spy()
    torch.manual_seed(4)
    loss, extra = (R.make_loss_fn(max_sigma) if max_sigma != R.MAX_SIGMA else R.make_loss_fn())(model, {"clean": clean})
    torch.manual_seed(4)
    sigma = torch.rand(3, dtype=torch.float64) * max_sigma
    noisy = clean + sigma.view(-1, 1, 1, 1) * torch.randn(clean.shape, dtype=torch.float64)
    (x, s), = model.seen
    torch.testing.assert_close(s, sigma, rtol=0, atol=0)
    torch.testing.assert_close(x, noisy, rtol=0, atol=0)
    out = 0.9 * noisy
    assert float(loss.detach()) == pytest.approx(float((out.float() - clean.float()).abs().mean()), rel=1e-6)
    assert set(extra) == {"psnr"} and isinstance(extra["psnr"], float)
    mse = ((out.clamp(0, 1) - clean) ** 2).flatten(1).mean(1)
    assert extra["psnr"] == pytest.approx(float((-10 * torch.log10(mse)).mean()), rel=1e-5)
    loss.backward()
    assert model.a.grad is not None and float(model.a.grad) != 0


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_max_sigma_must_be_in_zero_one(bad):
    with pytest.raises(ValueError, match=rf"^max_sigma must be in \(0, 1\], got {bad}$"):
        R.make_loss_fn(bad)


# ------------------------------------------------------------------ options
def test_defaults_are_the_papers_where_it_gives_numbers():
    a = R.parse_args([])
    assert a.batch == 16 and a.crop == 128 and a.lr == 1e-4 and a.max_sigma == 50 / 255
    assert [float(f) for f in a.halve_at.split(",")] == [0.5, 0.75, 0.875]  # halvings, compressed
    assert a.steps == 2000 and a.val_images == 8 and a.data is None and not a.no_skimage and not a.small
    assert a.features is None and a.blocks is None and a.residual is None and a.threads is None
    assert (a.val_items, a.log_every, a.val_every, a.ckpt_every) == (24, 25, 250, 50)
    assert not hasattr(a, "grad_clip") and not a.float32 and not a.amp
    assert str(a.out).endswith(".safetensors") and a.run_dir == "runs/drunet"


def test_every_option_is_read():
    a = R.parse_args(["--data", "d", "--no-skimage", "--small", "--features", "1,2,3,4", "--blocks", "2",
                      "--residual", "no", "--steps", "7", "--batch", "3", "--crop", "48", "--max-sigma", "0.5",
                      "--lr", "0.25", "--halve-at", "0.5", "--val-images", "2", "--threads", "1", "--init", "w.st"])
    assert (a.data, a.no_skimage, a.small, a.features, a.blocks, a.residual, a.steps, a.batch, a.crop,
            a.max_sigma, a.lr, a.halve_at, a.val_images, a.threads, a.init) == (
        "d", True, True, "1,2,3,4", 2, "no", 7, 3, 48, 0.5, 0.25, "0.5", 2, 1, "w.st")
    assert R.parse_args([]).init is None
    with pytest.raises(SystemExit):
        R.parse_args(["--residual", "maybe"])


# ------------------------------------------------------------------ main, with a stand-in trainer
@pytest.fixture
def record(monkeypatch):
    return record_trainers(monkeypatch, {"psnr": 30.5})


def _argv(tmp_path, *extra):
    return ["--features", "4,4,4,4", "--blocks", "1", "--steps", "16", "--batch", "2", "--crop", "8",
            "--val-items", "2", "--device", "cpu", "--no-progress", "--run-dir", str(tmp_path / "run"),
            "--out", str(tmp_path / "w.safetensors"), *extra]


def test_main_wires_photos_data_schedule_loss_and_validation(tmp_path, record, capsys):
    d, paths = _folder(tmp_path, n=4)
    argv = _argv(tmp_path, "--data", str(d), "--no-skimage", "--val-images", "2", "--seed", "3", "--lr", "0.002",
                 "--halve-at", "0.25, 0.5,,0.01", "--max-sigma", "0.3", "--log-every", "3", "--val-every", "5",
                 "--ckpt-every", "7")
    out = R.main(argv)
    assert out == tmp_path / "w.safetensors" and out.is_file()
    (t,) = record
    assert t.fitted == 1
    model, cfg, train, loss_fn = t.args
    assert isinstance(model, DRUNet)
    assert model.config == DRUNet(**{**PAPER_CONFIG, "features": (4, 4, 4, 4), "blocks": 1}).config
    assert (cfg.steps, cfg.batch_size, cfg.lr, tuple(cfg.betas), cfg.eps) == (16, 2, 0.002, (0.9, 0.999), 1e-8)
    assert tuple(cfg.lr_milestones) == (4, 8) and cfg.lr_gamma == 0.5  # int(16 · 0.01) = 0 is dropped
    assert (cfg.seed, cfg.device, cfg.log_every, cfg.val_every, cfg.ckpt_every, cfg.out_dir, cfg.progress) == (
        3, "cpu", 3, 5, 7, str(tmp_path / "run"), False)
    assert isinstance(train, R.CleanCropDataset) and len(train) == 32 and train.crop == 8 and train.seed == 3
    assert len(train.photos) == 2
    assert np.array_equal(train.photos[0], R._as_uint8(read_image(paths[0], 3)))
    val = t.kwargs["val_data"]
    assert isinstance(val, R.NoisyValDataset) and len(val) == 2 and val.crop == 8 and val.seed == 10_000
    assert [p.shape for p in val.photos] == [(12, 14, 3)] * 2
    assert np.array_equal(val.photos[1], R._as_uint8(read_image(paths[3], 3)))
    assert t.kwargs["val_fn"] is R.val_fn
    # --max-sigma reaches the loss: compare with make_loss_fn(0.3) under the same seed
    spy = _Spy()
    batch = {"clean": torch.rand(2, 3, 4, 4, dtype=torch.float64)}
    torch.manual_seed(0)
    got = loss_fn(spy, batch)
    torch.manual_seed(0)
    ref = R.make_loss_fn(0.3)(spy, batch)
    torch.testing.assert_close(spy.seen[0][1], spy.seen[1][1], rtol=0, atol=0)
    assert float(got[0].detach()) == float(ref[0].detach()) and float(spy.seen[0][1].max()) <= 0.3
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == {"weights": str(out), "validation": {"psnr": 30.5}}


def test_exported_header_and_float16_weights(tmp_path, record):
    d, paths = _folder(tmp_path, n=3)
    argv = _argv(tmp_path, "--data", str(d), "--val-images", "1", "--max-sigma", "0.1", "--crop", "12")
    out = R.main(argv)
    state, header = load_checkpoint(out, "DRUNet")
    (t,) = record
    assert header["architecture"] == "DRUNet" and header["config"] == json.loads(json.dumps(t.args[0].config))
    assert header["steps"] == 16 and header["validation"] == {"psnr": 30.5}
    assert header["input"] == "noisy (N, C, H, W) in [0, 1] and sigma on the [0, 1] scale"
    assert header["output"] == "clean image (N, C, H, W)" and header["stored_dtype"] == "float16"
    data = header["data"]
    assert data["recipe"] == "pnpdeblur.train.drunet" and data["argv"] == argv and data["data"] == str(d)
    expected = [n for n in sample_images() if n not in R.HELD_OUT_SAMPLES]
    assert data["train_files"] == [paths[0].name, paths[1].name] + expected
    assert data["val_files"] == [paths[2].name] and data["held_out"] == list(R.HELD_OUT_SAMPLES)
    assert data["max_sigma"] == 0.1 and data["loss"] == "L1" and data["crop"] == 12
    assert data["device"] == "cpu" and data["torch"] == torch.__version__
    assert isinstance(data["seconds"], float) and 0 <= data["seconds"] < 60
    w = [k for k, v in state.items() if v.is_floating_point()]
    assert w and all(state[k].dtype == torch.float16 for k in w)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".safetensors") == ["w.safetensors"]


def test_without_data_there_is_no_validation(tmp_path, record, monkeypatch):
    monkeypatch.setattr(R, "training_photos", _spy_photos(R.training_photos, calls := []))
    out = R.main(_argv(tmp_path, "--val-images", "3", "--float32", "--val-every", "9"))
    (t,) = record
    assert calls == [((None, 0), {"skimage": True})]  # --val-images is ignored without --data
    assert t.kwargs["val_data"] is None and t.kwargs["val_fn"] is None and t.args[1].val_every == 0
    assert len(t.args[2].photos) == len(sample_images()) - 4
    state, header = load_checkpoint(out, "DRUNet")
    assert header["data"]["val_files"] == [] and header["data"]["data"] is None and "stored_dtype" not in header
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    assert tuple(t.args[1].lr_milestones) == (8, 12, 14) and t.args[1].lr == 1e-4  # the defaults


def _spy_photos(real, calls):
    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    return spy


def test_no_skimage_and_the_small_and_explicit_configs(tmp_path, record, monkeypatch):
    d, _ = _folder(tmp_path, n=2)
    R.main(["--small", "--data", str(d), "--no-skimage", "--val-images", "1", *_argv(tmp_path)[4:]])
    assert record[0].args[0].config == DRUNet(**SMALL_CONFIG).config
    assert len(record[0].args[2].photos) == 1
    R.main(_argv(tmp_path, "--small", "--residual", "no", "--data", str(d), "--val-images", "1"))
    cfg = record[1].args[0].config
    assert cfg["residual"] is False and list(cfg["features"]) == [4, 4, 4, 4] and cfg["blocks"] == 1
    R.main(_argv(tmp_path, "--residual", "yes", "--blocks", "2"))
    cfg = record[2].args[0].config
    assert cfg["residual"] is True and cfg["blocks"] == 2 and cfg["bias"] is False


def test_threads_are_set_only_when_asked(tmp_path, record, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    R.main(_argv(tmp_path))
    assert calls == []
    R.main(_argv(tmp_path, "--threads", "1"))
    assert calls == [1]


def test_main_reads_sys_argv_and_other_ranks_do_not_export(tmp_path, record, monkeypatch, capsys):
    import sys

    import pnpdeblur.train.distributed as D

    monkeypatch.setattr(sys, "argv", ["drunet", *_argv(tmp_path, "--steps", "4")])
    out = R.main()
    assert load_checkpoint(out, "DRUNet")[1]["data"]["argv"] is None
    out.unlink()
    capsys.readouterr()
    monkeypatch.setattr(D, "is_main_process", lambda: False)
    assert R.main(_argv(tmp_path)) == out and not out.exists() and capsys.readouterr().out == ""
    assert record[-1].fitted == 1


def test_help_explains_each_recipe_option(capsys):
    with pytest.raises(SystemExit):
        R.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert text.startswith("usage: pnpdeblur train drunet ")
    assert "[--no-progress] Train DRUNet, the noise-level-aware denoiser prior (DPIR). options: -h, --help" in text
    for line in ("--data DATA folder of sharp colour photos, e.g. .data/bsds500/train (default: scikit-image photos "
                 "only)",
                 "--no-skimage do not add scikit-image's photos",
                 "--small the small CPU configuration (features 16-128, 1 block, global residual)",
                 "--features FEATURES four comma-separated widths (overrides --small)",
                 "--blocks BLOCKS residual blocks per level",
                 "--residual {yes,no} global residual (output = x + net)",
                 "--steps STEPS --batch BATCH batch size (paper: 16)",
                 "--crop CROP training crop (paper: 128)",
                 "--max-sigma MAX_SIGMA σ drawn in [0, this] (paper: 50/255)",
                 "--lr LR Adam learning rate (paper: 1e-4)",
                 "--warmup WARMUP linear lr warm-up: a number of steps, or a fraction of the steps if < 1",
                 "--halve-at HALVE_AT fractions of the steps where lr halves",
                 "--val-images VAL_IMAGES last files of --data held out for validation",
                 "--threads THREADS torch CPU threads --init INIT start from these DRUNet weights instead of a random "
                 "initialisation: a safetensors path, or 'shipped' for the library's own of the same configuration "
                 "(--small, or the medium one's --features 32,64,128,256 --blocks 2 --residual no) "
                 "--time-budget SECONDS train for about this long: a short "
                 "probe measures the step rate and sets --steps to fill 90% of it; training stops at this time "
                 "regardless --device"):
        assert line in text, line


def test_a_short_wide_photo_is_padded_in_height_only():
    wide = _numbered(5, 10)
    padded = np.pad(wide, ((0, 3), (0, 0), (0, 0)), mode="reflect")  # 8 × 10: three column offsets
    seen = set()
    for s in range(40):
        r = np.random.default_rng(s)
        assert int(r.integers(0, 1)) == 0
        j = int(r.integers(0, 3))
        seen.add(j)
        assert np.array_equal(R._crop(wide, 8, np.random.default_rng(s)), padded[:8, j:j + 8])
    assert seen == {0, 1, 2}


def test_an_index_past_the_end_names_the_index():
    ds = R.CleanCropDataset([_numbered(10, 10)], length=3, crop=8)
    with pytest.raises(IndexError, match=r"^3$"):
        ds[3]


def test_validation_sigma_is_float32_whatever_the_default_dtype():
    ds = R.NoisyValDataset([_numbered(10, 10)], items=1, crop=8)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        item = ds[0]
    finally:
        torch.set_default_dtype(before)
    assert item["sigma"].dtype == torch.float32


def test_seconds_are_recorded_to_a_tenth(tmp_path, record, monkeypatch):
    fake_clock(monkeypatch, R)  # t0 = 100, every later reading 101.2345
    out = R.main(_argv(tmp_path, "--float32"))
    assert load_checkpoint(out, "DRUNet")[1]["data"]["seconds"] == 1.2


def test_grey_training_photos_become_colour(tmp_path):
    d, paths = _folder(tmp_path, n=2)  # the grey one sorts last (sub-folder)
    train, val = R.training_photos(str(d), skimage=False)
    assert [a.shape for _, a in train] == [(12, 14, 3)] * 2 and val == []
    assert np.array_equal(train[1][1][..., 0], train[1][1][..., 2])


# ------------------------------------------------------------------ --init: a warm start
def _same_weights(model, ref):
    got = model.state_dict()
    return all(torch.equal(got[k], v.to(got[k].dtype)) for k, v in ref.state_dict().items())


def test_init_starts_from_the_given_weights_and_the_header_records_them(tmp_path, record):
    import hashlib

    first = R.main(_argv(tmp_path, "--out", str(tmp_path / "first.safetensors"), "--seed", "1"))
    record.clear()
    argv = _argv(tmp_path, "--init", str(first), "--seed", "2")
    out = R.main(argv)
    (t,) = record
    assert _same_weights(t.args[0], DRUNet.from_checkpoint(first))  # every tensor, float16 weights widened
    init = load_checkpoint(out, "DRUNet")[1]["data"]["init"]
    assert init == {"file": "first.safetensors", "sha256": hashlib.sha256(first.read_bytes()).hexdigest(),
                    "steps": 16}


def test_without_init_the_model_is_fresh_and_the_header_says_so(tmp_path, record):
    first = R.main(_argv(tmp_path, "--out", str(tmp_path / "first.safetensors"), "--seed", "1"))
    record.clear()
    torch.manual_seed(123)
    out = R.main(_argv(tmp_path))
    (t,) = record
    assert not _same_weights(t.args[0], DRUNet.from_checkpoint(first))
    assert load_checkpoint(out, "DRUNet")[1]["data"]["init"] is None


@pytest.mark.parametrize("other", [["--features", "4,4,4,8"], ["--blocks", "2"], ["--residual", "yes"]])
def test_init_with_weights_of_another_config_is_refused_by_name(tmp_path, record, other):
    first = R.main(_argv(tmp_path, "--out", str(tmp_path / "first.safetensors")))
    record.clear()
    with pytest.raises(ValueError, match=r"init: .*first\.safetensors holds DRUNet\{.*but the options build DRUNet\{"):
        R.main(_argv(tmp_path, "--init", str(first), *other))
    assert record == []


def test_init_from_another_architecture_a_corrupt_or_a_nan_file_is_a_checkpoint_error(tmp_path, record):
    from pnpdeblur.checkpoints import CheckpointError
    from pnpdeblur.nets import DnCNN

    dn = DnCNN(channels=3, features=4, depth=3).save(tmp_path / "dncnn.safetensors")
    with pytest.raises(CheckpointError, match="expected 'DRUNet'"):
        R.main(_argv(tmp_path, "--init", str(dn)))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        R.main(_argv(tmp_path, "--init", str(bad)))
    poisoned = DRUNet(**{**PAPER_CONFIG, "features": (4, 4, 4, 4), "blocks": 1})
    with torch.no_grad():
        poisoned.head.weight[0, 0, 0, 0] = float("nan")
    nan = poisoned.save(tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match="NaN|Inf|finite"):
        R.main(_argv(tmp_path, "--init", str(nan)))
    assert record == []


def test_init_shipped_picks_the_shipped_weights_of_the_same_config(tmp_path, record):
    from pnpdeblur.nets.drunet import DRUNET_MEDIUM_PATH, DRUNET_PRETRAINED_PATH

    engine = ["--steps", "2", "--batch", "1", "--crop", "8", "--val-items", "2", "--device", "cpu", "--no-progress",
              "--run-dir", str(tmp_path / "run"), "--init", "shipped"]
    for options, variant, path in ((["--small"], "small", DRUNET_PRETRAINED_PATH),
                                   (["--features", "32,64,128,256", "--blocks", "2", "--residual", "no"], "medium",
                                    DRUNET_MEDIUM_PATH)):
        out = R.main([*options, *engine, "--out", str(tmp_path / f"{variant}.safetensors")])
        assert _same_weights(record[-1].args[0], DRUNet.pretrained(variant))
        init = load_checkpoint(out, "DRUNet")[1]["data"]["init"]
        assert init["file"] == path.name and init["steps"] == DRUNet.pretrained(variant).header["steps"]
    assert R.shipped_weights_for(DRUNet(**SMALL_CONFIG).config) == DRUNET_PRETRAINED_PATH
    with pytest.raises(ValueError, match=r"--init shipped: no shipped DRUNet has the options' config .*'features': "
                                         r"\[4, 4, 4, 4\].*; shipped: small: \{.*\}; medium: \{.*\}"):
        R.main(_argv(tmp_path, "--init", "shipped"))


def test_init_refuses_to_overwrite_its_own_weights(tmp_path, record):
    w = R.main(_argv(tmp_path, "--out", str(tmp_path / "w.safetensors")))
    record.clear()
    before = w.read_bytes()
    with pytest.raises(ValueError, match=r"--out .*w\.safetensors would overwrite the --init weights"):
        R.main(_argv(tmp_path, "--init", str(tmp_path / "run" / ".." / "w.safetensors"), "--out", str(w)))
    assert w.read_bytes() == before and record == []


@pytest.mark.parametrize("warmup, steps", [("0", 0), ("1", 1), ("3", 3), ("0.5", 8), ("0.99", 16), ("100", 16)])
def test_warmup_is_a_step_count_from_one_and_a_fraction_below_it(tmp_path, record, warmup, steps):
    # 1 means one step, not the whole run; a count is capped by the run's 16 steps
    R.main(_argv(tmp_path, "--warmup", warmup))
    assert record[0].args[1].warmup_steps == steps
