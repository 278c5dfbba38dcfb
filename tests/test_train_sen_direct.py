"""The SEN training recipe's data, loss, options and export (``pnpdeblur.train.sen``), called directly.

``main`` runs with a stand-in Trainer (the real one, with ``fit`` replaced by a record of what
it was given), so the recipe's wiring — model, datasets, optimiser settings, loss, validation,
exported header — is checked in well under a second per run. The paper's numbers are written
here from Wu et al.'s text ("Training details": 256² crops, two stacks, batch 16, lr 1.25e-3
for 50 epochs then linearly to 1.25e-5 over the next 40, Adam β1 0.9, β2 0.99, ε 1e-8).
"""
import json
import math
import re
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset

import pnpdeblur.train as train_pkg
from pnpdeblur.checkpoints import load_checkpoint
from pnpdeblur.data import SyntheticBlurDataset, sample_images
from pnpdeblur.nets.sen import SEN
from pnpdeblur.operators import MotionBlur
from pnpdeblur.train import sen as R
from _photos import memoise_sample_image
from _recording_trainer import fake_clock, record_trainers


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(autouse=True)
def _decode_each_photo_once(monkeypatch):
    """Every dataset here loads the 13 scikit-image photos; decode each once per process."""
    import pnpdeblur.data.samples as S

    memoise_sample_image(monkeypatch, S)


def _corpus(tmp_path, n=2, size=(40, 44), grey_last=True):
    """``n`` small PNGs, the last one grey and in a sub-folder (recursive listing)."""
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        last = i == n - 1
        shape = size if (last and grey_last) else (*size, 3)
        p = (d / "sub" if last else d) / f"im{i}.png"
        iio.imwrite(p, (rng.random(shape) * 255).astype(np.uint8))
        paths.append(p)
    return d, paths


# ------------------------------------------------------------------ constants and sources
def test_training_and_held_out_photos_are_disjoint_and_the_benchmark_four_are_held_out():
    assert set(R.HELD_OUT_SAMPLES) == {"astronaut", "camera", "coffee", "chelsea"}
    assert not set(R.TRAIN_SAMPLES) & set(R.HELD_OUT_SAMPLES)
    assert set(R.TRAIN_SAMPLES) <= set(sample_images())


def test_sources_without_a_corpus_are_the_training_photos():
    assert R.training_sources(None) == [n for n in R.TRAIN_SAMPLES if n in sample_images()]
    assert R.training_sources(None) == R.TRAIN_SAMPLES  # all of them ship with scikit-image
    assert R.training_sources(None, preload=True) == R.TRAIN_SAMPLES  # nothing to preload


def test_corpus_sources_are_paths_listed_recursively_then_the_photos(tmp_path):
    d, paths = _corpus(tmp_path, n=3)
    got = R.training_sources(str(d))
    assert got[:3] == sorted(str(p) for p in paths) and all(isinstance(s, str) for s in got[:3])
    assert got[3:] == R.TRAIN_SAMPLES


def test_preloaded_corpus_is_decoded_once_as_float32_colour(tmp_path):
    d, paths = _corpus(tmp_path, n=2)
    got = R.training_sources(str(d), preload=True)
    assert got[2:] == R.TRAIN_SAMPLES
    for arr, p in zip(got[:2], sorted(paths)):
        raw = iio.imread(p).astype(np.float32) / 255.0
        ref = np.repeat(raw[..., None], 3, axis=2) if raw.ndim == 2 else raw
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float32 and arr.shape == (40, 44, 3)
        np.testing.assert_allclose(arr, ref, atol=1e-6)


def test_a_corpus_without_images_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(ValueError, match=r"^no images \(.*\) in .*empty$"):
        R.training_sources(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"^folder not found: "):
        R.training_sources(str(tmp_path / "missing"))


def test_samples_at_least_keeps_the_photos_that_hold_the_crop():
    # coins is (303, 384), colorwheel (370, 371): both sides count, and the crop may fill the photo
    assert R.samples_at_least(["coins", "colorwheel"], None) == ["coins", "colorwheel"]
    assert R.samples_at_least(["coins", "colorwheel"], 303) == ["coins", "colorwheel"]
    assert R.samples_at_least(["coins", "colorwheel"], 304) == ["colorwheel"]
    assert R.samples_at_least(["coins", "colorwheel"], (303, 384)) == ["coins"]
    assert R.samples_at_least(["coins", "colorwheel"], (300, 385)) == []
    assert R.samples_at_least(["coins", "not-a-sample"], 8) == ["coins"]


def test_a_large_crop_leaves_out_the_librarys_own_small_photos():
    # train sen --crop 320 stopped at "images[1] of size (303, 384) is smaller than the required (320, 320)"
    assert R.training_sources(None, min_size=320) == [n for n in R.TRAIN_SAMPLES if n != "coins"]
    assert R.held_out_samples(320) == ["astronaut", "camera", "coffee"]  # chelsea is (300, 451)
    train, val = R.build_datasets(None, 2, 320, ["23"], 0, 2)
    assert train[1]["sharp"].shape == (3, 320, 320) and val[0]["blurred"].shape == (3, 320, 320)
    with pytest.raises(ValueError, match=r"^no held-out sample photo \(astronaut, camera, coffee, chelsea; at most "
                                         r"512 px\) holds a 513 validation crop: lower the crop$"):
        R.held_out_samples(513)
    with pytest.raises(ValueError, match=r"^no training photo holds a 1001 crop"):
        R.training_sources(None, min_size=1001)


def test_a_preloaded_corpus_names_a_small_file_before_decoding_anything(tmp_path, monkeypatch):
    d, paths = _corpus(tmp_path, n=2)  # 40 × 44 photos
    monkeypatch.setattr(R, "read_image", lambda *a, **k: pytest.fail("decoded before the size check"))
    with pytest.raises(ValueError, match=r"^2 image file\(s\) are smaller than the required \(41, 41\) .*"
                                         + re.escape(str(sorted(paths)[0])) + r" \(40, 44\)"):
        R.training_sources(str(d), preload=True, min_size=41)
    assert R.training_sources(str(d), min_size=41)[:2] == sorted(str(p) for p in paths)  # listed, checked later


# ------------------------------------------------------------------ datasets
def _same_items(a, b, idx):
    for i in idx:
        x, y = a[i], b[i]
        assert set(x) == set(y)
        for k in x:
            if isinstance(x[k], torch.Tensor):
                assert torch.equal(x[k], y[k]), (i, k)
            else:
                assert x[k] == y[k]


def test_training_set_is_one_seeded_unblurred_part_per_preset(tmp_path):
    d, _ = _corpus(tmp_path, n=2)
    sources = R.training_sources(str(d))
    train, val = R.build_datasets(str(d), 5, 32, ["23", "46"], 3, 4)
    assert isinstance(train, ConcatDataset) and [len(p) for p in train.datasets] == [3, 3]  # ceil(5 / 2) each
    for k, (part, preset) in enumerate(zip(train.datasets, ["23", "46"])):
        assert part.preset == preset and part.crop == (32, 32) and not part.blur
        ref = SyntheticBlurDataset(sources, length=3, crop=32, preset=preset, seed=3 + 7919 * k, fixed=True,
                                   blur=False)
        _same_items(part, ref, [2, 0])  # fixed: the same in any order
    item = train[4]
    assert "blurred" not in item and item["sharp"].shape == (3, 32, 32) and item["flow"].shape == (2, 32, 32)
    # the two parts draw different flows (different seeds), and another seed gives other items
    assert not torch.equal(train[0]["flow"], train[3]["flow"])
    other, _ = R.build_datasets(str(d), 5, 32, ["23", "46"], 4, 4)
    assert not torch.equal(other[0]["flow"], train[0]["flow"])


def test_one_preset_and_an_odd_length(tmp_path):
    train, val = R.build_datasets(None, 7, 16, ["46"], 0, 3)
    assert len(train.datasets) == 1 and len(train) == 7 and train.datasets[0].preset == "46"
    assert len(val.datasets) == 1 and len(val) == 3
    # preset 46 flows reach beyond 23 px somewhere; preset 23 never does
    big = max(float(train[i]["flow"].abs().max()) for i in range(7))
    assert 23 < big <= 46
    t23, _ = R.build_datasets(None, 7, 16, ["23"], 0, 1)
    assert max(float(t23[i]["flow"].abs().max()) for i in range(7)) <= 23


def test_validation_is_fixed_held_out_blurred_with_noise_001(tmp_path):
    _, val = R.build_datasets(None, 2, 32, ["23", "46"], 5, 5)
    assert [len(p) for p in val.datasets] == [2, 2]  # 5 // 2 per preset
    for k, (part, preset) in enumerate(zip(val.datasets, ["23", "46"])):
        ref = SyntheticBlurDataset(R.HELD_OUT_SAMPLES, length=2, crop=32, preset=preset, noise_sigma=0.01,
                                   seed=10_000 + k, fixed=True)
        _same_items(part, ref, [1, 0])
        assert part.blur and part.noise_sigma == 0.01 and part.preset == preset
    # the training seed does not move the validation set
    _, val0 = R.build_datasets(None, 2, 32, ["23", "46"], 0, 5)
    _same_items(val, val0, range(4))
    # a blurred item is MotionBlur(flow)(sharp) plus noise of std 0.01 (held-out photos only)
    residual = torch.cat([(val[i]["blurred"] - MotionBlur(val[i]["flow"][None])(val[i]["sharp"][None])[0]).flatten()
                          for i in range(4)])
    assert float(residual.std()) == pytest.approx(0.01, rel=0.25)


def test_fewer_validation_items_than_presets_still_gives_one_each():
    _, val = R.build_datasets(None, 2, 16, ["23", "46"], 0, 1)
    assert [len(p) for p in val.datasets] == [1, 1]


def test_preload_reaches_the_training_set(tmp_path):
    d, _ = _corpus(tmp_path, n=2)
    train, _ = R.build_datasets(str(d), 2, 16, ["23"], 0, 1, preload=True)
    assert all(isinstance(s, np.ndarray) for s in train.datasets[0].sources[:2])
    lazy, _ = R.build_datasets(str(d), 2, 16, ["23"], 0, 1)
    assert not isinstance(lazy.datasets[0].sources[0], np.ndarray)
    _same_items(train, lazy, [0, 1])  # the same crops either way


# ------------------------------------------------------------------ loss
class _Spy(torch.nn.Module):
    """Records its input; returns ``outs`` (a trainable scale times fixed flows) as the stacks."""

    def __init__(self, outs):
        super().__init__()
        self.outs = outs
        self.scale = torch.nn.Parameter(torch.ones((), dtype=torch.float64))
        self.seen = []

    def forward(self, x):
        self.seen.append(x)
        return [self.scale * o for o in self.outs]


def _flow_batch(n=2, h=9, w=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    sharp = torch.rand(n, 3, h, w, generator=g)
    flow = 6 * (torch.rand(n, 2, h, w, generator=g) - 0.5)
    flow[:, 0] = flow[:, 0].abs() + 0.5  # canonical labels: u > 0
    return {"sharp": sharp, "flow": flow}


def _mse(a, b):
    return float(((a.double() - b.double()) ** 2).mean())


def _sym(a, b):
    a, b = a.double(), b.double()
    return float(torch.minimum(((a - b) ** 2).sum(1), ((a + b) ** 2).sum(1)).mean() / 2)


@pytest.mark.parametrize("symmetric", [True, False])
def test_loss_is_the_mean_over_stacks_and_logs_the_last_stacks_symmetric_mse(symmetric):
    batch = _flow_batch()
    flow = batch["flow"]
    g = torch.Generator().manual_seed(1)
    first = (flow + torch.randn(flow.shape, generator=g)).double()  # float64: the loss reads it as float32
    last = (-flow + 0.3 * torch.randn(flow.shape, generator=g)).double()  # the other representative, noisy
    model = _Spy([first, last])
    loss, extra = R.make_loss_fn(symmetric, 0.0)(model, batch)
    d = _sym if symmetric else _mse
    expected = (d(first.float(), flow) + d(last.float(), flow)) / 2
    assert loss.dtype == torch.float32 and float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert set(extra) == {"flow_mse"} and isinstance(extra["flow_mse"], float)
    assert extra["flow_mse"] == pytest.approx(_sym(last.float(), flow), rel=1e-5)  # both modes: the symmetric one
    assert not math.isclose(_sym(last, flow), _mse(last, flow), rel_tol=0.1)  # the two modes differ here
    loss.backward()
    assert model.scale.grad is not None and float(model.scale.grad) != 0.0


def test_loss_with_one_stack_and_a_canonical_flow():
    batch = _flow_batch(seed=2)
    out = batch["flow"] + 0.5
    loss, extra = R.make_loss_fn(False, 0.0)(_Spy([out]), batch)
    assert float(loss.detach()) == pytest.approx(0.25, rel=1e-6)  # every component off by 0.5
    assert extra["flow_mse"] == pytest.approx(_sym(out, batch["flow"]), rel=1e-6)


def test_the_network_sees_the_batch_blurred_by_its_flow_without_noise():
    batch = _flow_batch(seed=3)
    model = _Spy([batch["flow"]])
    R.make_loss_fn(True, 0.0)(model, batch)
    (seen,) = model.seen
    expected = MotionBlur(batch["flow"])(batch["sharp"]).clamp(0, 1)
    torch.testing.assert_close(seen, expected, rtol=0, atol=0)


def test_the_network_sees_noise_drawn_up_to_max_noise():
    batch = _flow_batch(n=3, seed=4)
    model = _Spy([batch["flow"]])
    torch.manual_seed(11)
    R.make_loss_fn(True, 0.3)(model, batch)
    torch.manual_seed(11)
    sigma = torch.rand(3, 1, 1, 1) * 0.3
    blurred = MotionBlur(batch["flow"])(batch["sharp"])
    expected = (blurred + sigma * torch.randn(blurred.shape)).clamp(0, 1)
    torch.testing.assert_close(model.seen[0], expected, rtol=0, atol=1e-6)


def test_highlights_brighten_some_samples_by_a_gain_before_the_clip():
    batch = _flow_batch(n=16, seed=5)
    batch["sharp"] = 0.3 + 0.6 * batch["sharp"]  # bright enough for gains up to 2 to clip
    model = _Spy([batch["flow"]])
    torch.manual_seed(12)
    R.make_loss_fn(True, 0.0, 2.0, 0.5)(model, batch)
    seen = model.seen[0]
    blurred = MotionBlur(batch["flow"])(batch["sharp"])
    gains = []
    for i in range(16):
        ok = seen[i] < 0.999  # unclipped pixels hold g · K x exactly
        g = seen[i][ok] / blurred[i][ok]
        assert float(g.max() - g.min()) < 1e-5  # one gain per sample
        gains.append(float(g.mean()))
        # the clipped ones are those g · K x pushed to 1 or beyond
        torch.testing.assert_close(seen[i], (gains[-1] * blurred[i]).clamp(0, 1), rtol=0, atol=1e-5)
    bright = [g for g in gains if g > 1 + 1e-6]
    assert all(1 - 1e-6 <= g <= 2 for g in gains)
    assert 2 <= len(bright) <= 14  # about half of the samples (probability 0.5)
    assert float((seen == 1).float().mean()) > 0.01  # the gains did saturate highlights


@pytest.mark.parametrize("max_gain, prob", [(1.0, 0.5), (2.0, 0.0)])
def test_highlights_off_draw_no_extra_random_numbers(max_gain, prob):
    batch = _flow_batch(n=3, seed=4)
    a, b = _Spy([batch["flow"]]), _Spy([batch["flow"]])
    torch.manual_seed(11)
    R.make_loss_fn(True, 0.3)(a, batch)
    torch.manual_seed(11)
    R.make_loss_fn(True, 0.3, max_gain, prob)(b, batch)
    torch.testing.assert_close(a.seen[0], b.seen[0], rtol=0, atol=0)


# ------------------------------------------------------------------ options
def test_defaults_follow_the_paper_where_it_gives_numbers():
    a = R.parse_args([])
    # Wu et al., "Training details"
    assert a.crop == 256 and a.batch == 16 and a.stacks == 2
    assert a.lr == pytest.approx(1.25e-3) and a.lr_end == pytest.approx(1.25e-5)
    assert a.decay_from == pytest.approx(50 / 90)
    # this recipe's documented choices: both flow presets, noise up to 0.02, the small width
    assert a.presets == "23,46" and a.max_noise == pytest.approx(0.02) and a.loss == "symmetric"
    assert a.width == 16 and a.levels == 4 and a.steps == 6000
    assert a.corpus is None and a.init is None and not a.preload and not a.float32 and not a.amp and a.grad_clip is None
    assert a.out == Path("runs/sen/sen.safetensors")  # not the shipped file


def test_every_option_is_read():
    a = R.parse_args(["--corpus", "c", "--preload", "--steps", "7", "--batch", "3", "--crop", "48",
                      "--presets", "46", "--max-noise", "0.1", "--width", "4", "--stacks", "3", "--levels", "2",
                      "--loss", "canonical", "--lr", "0.5", "--lr-end", "0.25", "--decay-from", "0.75"])
    assert (a.corpus, a.preload, a.steps, a.batch, a.crop, a.presets, a.max_noise, a.width, a.stacks, a.levels,
            a.loss, a.lr, a.lr_end, a.decay_from) == ("c", True, 7, 3, 48, "46", 0.1, 4, 3, 2, "canonical",
                                                      0.5, 0.25, 0.75)
    with pytest.raises(SystemExit):
        R.parse_args(["--loss", "l1"])


# ------------------------------------------------------------------ main, with a stand-in trainer
@pytest.fixture
def record(monkeypatch):
    return record_trainers(monkeypatch, {"flow_mse": 1.5}, [{"phase": "val", "val_flow_mse": 1.5}])


def _argv(tmp_path, *extra):
    return ["--steps", "10", "--batch", "2", "--crop", "32", "--width", "2", "--levels", "1", "--val-items", "2",
            "--device", "cpu", "--no-progress", "--run-dir", str(tmp_path / "run"),
            "--out", str(tmp_path / "sen.safetensors"), *extra]


def test_main_builds_the_model_data_and_schedule_from_the_options(tmp_path, record, capsys):
    argv = _argv(tmp_path, "--presets", " 46, ,23 ", "--stacks", "2", "--max-noise", "0.2", "--lr", "0.004",
                 "--lr-end", "0.0001", "--decay-from", "0.3", "--seed", "5", "--log-every", "3", "--val-every", "4",
                 "--ckpt-every", "6")
    out = R.main(argv)
    assert out == tmp_path / "sen.safetensors" and out.is_file()
    (t,) = record
    assert t.fitted == 1
    model, cfg, train, loss_fn = t.args
    assert isinstance(model, SEN)
    assert model.config == dict(SEN(in_channels=3, width=2, stacks=2, levels=1, flow_scale=23.0).config)
    c = cfg
    assert (c.steps, c.batch_size, c.lr, tuple(c.betas), c.eps) == (10, 2, 0.004, (0.9, 0.99), 1e-8)
    assert (c.decay_start, c.lr_end) == (3, 0.0001)
    assert (c.seed, c.device, c.log_every, c.val_every, c.ckpt_every, c.out_dir, c.progress) == (
        5, "cpu", 3, 4, 6, str(tmp_path / "run"), False)
    # 10 steps x 2 samples over the two presets, in the given order; 2 validation items
    assert [p.preset for p in train.datasets] == ["46", "23"] and len(train) == 20
    assert [p.crop for p in train.datasets] == [(32, 32)] * 2
    assert len(train.datasets[0].sources) == len(R.TRAIN_SAMPLES)  # no corpus: the photos only
    ref = SyntheticBlurDataset(R.TRAIN_SAMPLES, length=10, crop=32, preset="46", seed=5, fixed=True, blur=False)
    _same_items(train.datasets[0], ref, [9])  # --seed reaches the data
    assert t.kwargs["val_fn"] is R.val_fn and len(t.kwargs["val_data"]) == 2
    # the loss is the symmetric one with --max-noise: compare with make_loss_fn on one batch
    batch = _flow_batch(seed=5)
    net = _Spy([batch["flow"] + 1.0, -batch["flow"]])
    torch.manual_seed(0)
    got = loss_fn(net, batch)
    torch.manual_seed(0)
    ref = R.make_loss_fn(True, 0.2)(net, batch)
    assert float(got[0].detach()) == float(ref[0].detach()) and got[1] == ref[1]
    torch.testing.assert_close(net.seen[0], net.seen[1], rtol=0, atol=0)  # same noise: max_noise 0.2 reached it
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == {"weights": str(out), "validation": {"phase": "val", "val_flow_mse": 1.5}}


def test_main_canonical_loss_and_the_decay_default(tmp_path, record):
    R.main(_argv(tmp_path, "--loss", "canonical", "--steps", "9"))
    (t,) = record
    _, cfg, train, loss_fn = t.args
    assert cfg.decay_start == 5 and cfg.lr == pytest.approx(1.25e-3) and cfg.lr_end == pytest.approx(1.25e-5)
    assert t.args[0].config["flow_scale"] == 23.0 and t.args[0].config["stacks"] == 2  # presets 23, 46
    batch = _flow_batch(seed=6)
    out = -batch["flow"]
    loss, extra = loss_fn(_Spy([out]), batch)
    assert float(loss.detach()) == pytest.approx(_mse(out, batch["flow"]), rel=1e-5)  # canonical: -flow is wrong
    assert extra["flow_mse"] == pytest.approx(0.0, abs=1e-12)


def test_main_passes_the_corpus_and_preload(tmp_path, record):
    d, paths = _corpus(tmp_path, n=2)
    R.main(_argv(tmp_path, "--corpus", str(d), "--preload", "--presets", "23"))
    (t,) = record
    train = t.args[2]
    sources = train.datasets[0].sources
    assert [type(s) for s in sources[:2]] == [np.ndarray, np.ndarray] and len(sources) == 2 + len(R.TRAIN_SAMPLES)
    assert t.args[0].config["flow_scale"] == 11.5


def test_a_crop_larger_than_a_sample_photo_trains_without_it_and_says_so(tmp_path, record):
    out = R.main(_argv(tmp_path, "--crop", "320"))  # coins (303 × 384) and chelsea (300 × 451) cannot hold it
    (t,) = record
    train, val = t.args[2], t.kwargs["val_data"]
    assert len(train.datasets[0].sources) == len(R.TRAIN_SAMPLES) - 1
    assert len(val.datasets[0].sources) == len(R.HELD_OUT_SAMPLES) - 1
    data = load_checkpoint(out, "SEN")[1]["data"]
    assert data["skimage_photos"] == [n for n in R.TRAIN_SAMPLES if n != "coins"]


def test_exported_header_records_the_architecture_config_steps_and_provenance(tmp_path, record):
    d, paths = _corpus(tmp_path, n=2)
    argv = _argv(tmp_path, "--corpus", str(d), "--max-noise", "0.05", "--loss", "canonical")
    out = R.main(argv)
    state, header = load_checkpoint(out, "SEN")
    (t,) = record
    assert header["architecture"] == "SEN" and header["config"] == t.args[0].config
    assert header["steps"] == 10 and header["validation"] == {"flow_mse": 1.5}
    assert header["training"]["betas"] == [0.9, 0.99] and header["training"]["steps"] == 10
    assert header["output"] == "flow (N, 2, H, W) in pixels, u right, v down; canonical u >= 0"
    assert header["stored_dtype"] == "float16 weights, float32 BatchNorm statistics"
    data = header["data"]
    assert data["script"] == "scripts/train_sen.py (pnpdeblur.train.sen)"
    assert data["argv"] == argv and data["corpus"] == str(d)
    assert data["corpus_files"] == sorted(p.name for p in paths)  # recursive: the sub-folder's image too
    assert data["skimage_photos"] == R.TRAIN_SAMPLES and data["held_out"] == R.HELD_OUT_SAMPLES
    assert data["flow_presets"] == ["23", "46"] and data["max_noise"] == 0.05 and data["loss"] == "canonical"
    assert data["max_gain"] == 1.0 and data["highlight_prob"] == 0.0
    assert data["device"] == "cpu" and data["torch"] == torch.__version__
    assert isinstance(data["seconds"], float) and 0 <= data["seconds"] < 60
    # float16 weights, float32 BatchNorm statistics, no float32 temporary left
    assert state["stacks.0.head.weight"].dtype == torch.float16
    assert state["stacks.0.front.0.1.running_var"].dtype == torch.float32
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".safetensors") == ["sen.safetensors"]
    net = SEN.from_checkpoint(out)
    torch.testing.assert_close(net.stacks[0].head.weight.float(), t.model.stacks[0].head.weight.detach(),
                               rtol=1e-3, atol=1e-3)


def test_without_a_corpus_the_header_says_so_and_float32_keeps_float32(tmp_path, record):
    out = R.main(_argv(tmp_path, "--float32"))
    state, header = load_checkpoint(out, "SEN")
    assert header["data"]["corpus"] is None and header["data"]["corpus_files"] == []
    assert header["data"]["flow_presets"] == ["23", "46"] and header["data"]["loss"] == "symmetric"
    assert "stored_dtype" not in header
    assert state["stacks.0.head.weight"].dtype == torch.float32
    torch.testing.assert_close(state["stacks.0.head.weight"], record[0].model.stacks[0].head.weight.detach(),
                               rtol=0, atol=0)


def test_main_reads_sys_argv_when_given_none(tmp_path, record, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train_sen", *_argv(tmp_path, "--steps", "3")])
    out = R.main()
    _, header = load_checkpoint(out, "SEN")
    assert header["data"]["argv"] is None and header["steps"] == 3


def test_other_ranks_train_but_do_not_export(tmp_path, record, monkeypatch, capsys):
    import pnpdeblur.train.distributed as D

    monkeypatch.setattr(D, "is_main_process", lambda: False)
    out = R.main(_argv(tmp_path))
    assert out == tmp_path / "sen.safetensors" and not out.exists()
    assert record[0].fitted == 1 and capsys.readouterr().out == ""


def test_an_empty_history_prints_no_validation(tmp_path, record, monkeypatch, capsys):
    monkeypatch.setattr(train_pkg.Trainer, "fit", lambda self, resume=True: self)
    out = R.main(_argv(tmp_path, "--float32"))
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == {"weights": str(out), "validation": None}


def _help(parse):
    with pytest.raises(SystemExit):
        parse(["--help"])


def test_help_explains_each_recipe_option(capsys):
    _help(R.parse_args)
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert text.startswith("usage: pnpdeblur train sen ")
    assert "[--no-progress] Train SEN, the motion-flow estimator. options: -h, --help" in text
    for line in ("--corpus CORPUS folder of sharp photos (default: scikit-image photos only)",
                 "--preload decode the corpus into memory once",
                 "--batch BATCH global batch size (paper: 16)",
                 "--crop CROP training crop size (paper: 256)",
                 "--presets PRESETS flow presets mixed in equal parts",
                 "--max-noise MAX_NOISE noise std drawn in [0, this]",
                 "--width WIDTH first-layer width (paper: 64)",
                 "--lr LR peak learning rate (paper: 1.25e-3). If the loss stays flat near the zero-flow error "
                 "for ~1000 steps (SEN returns one flow for every input), lower it: on a CPU in float32, 3e-4 "
                 "left that plateau in 300 steps where 1.25e-3 stayed on it for 2000 (benchmarks/RESULTS.md) "
                 "--lr-end LR_END --decay-from DECAY_FROM fraction of steps "
                 "at constant lr --init INIT start from these SEN weights instead of a random initialisation: "
                 "a safetensors path, or 'shipped' for the library's own (same width/stacks/levels/presets) "
                 "--time-budget SECONDS train for about this long: a short probe measures the step rate and sets "
                 "--steps to fill 90% of it; training stops at this time regardless --grad-clip"):
        assert line in text, line


def test_auto_device_on_a_cpu_machine_is_recorded_as_cpu(tmp_path, record):
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine names its GPU")
    argv = _argv(tmp_path, "--float32")
    argv[argv.index("--device") + 1] = "auto"
    out = R.main(argv)
    assert load_checkpoint(out, "SEN")[1]["data"]["device"] == "cpu"


def test_stacks_option_reaches_the_model(tmp_path, record):
    R.main(_argv(tmp_path, "--stacks", "1", "--float32"))
    assert record[0].model.config["stacks"] == 1 and len(record[0].model.stacks) == 1


def test_seconds_are_recorded_to_a_tenth(tmp_path, record, monkeypatch):
    fake_clock(monkeypatch, R)  # t0 = 100, every later reading 101.2345
    out = R.main(_argv(tmp_path, "--float32"))
    assert load_checkpoint(out, "SEN")[1]["data"]["seconds"] == 1.2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_header_names_the_gpu_only_when_training_on_it(tmp_path, record):  # pragma: no cover - GPU only
    out = R.main(_argv(tmp_path, "--float32"))  # --device cpu on a GPU machine
    assert load_checkpoint(out, "SEN")[1]["data"]["device"] == "cpu"
    argv = _argv(tmp_path, "--float32")
    argv[argv.index("--device") + 1] = "cuda"
    out = R.main(argv)
    assert load_checkpoint(out, "SEN")[1]["data"]["device"] == torch.cuda.get_device_name()


def test_run_folder_and_validation_size_defaults():
    a = R.parse_args([])
    assert a.run_dir == "runs/sen" and a.val_items == 64
    assert (a.log_every, a.val_every, a.ckpt_every) == (50, 500, 500)


def test_the_header_names_the_device_the_trainer_resolved(tmp_path, record, monkeypatch):
    """'auto' on a machine without CUDA trains, and is recorded, on the CPU; a named card is that card's name."""
    argv = _argv(tmp_path, "--float32")
    argv[argv.index("--device") + 1] = "auto"
    out = R.main(argv)
    assert torch.cuda.is_available() or load_checkpoint(out, "SEN")[1]["data"]["device"] == "cpu"
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: asked.append(d) or "Card")
    import pnpdeblur.train as train_pkg

    real_init = train_pkg.Trainer.__init__

    def on_card(self, *a, **k):  # as if the trainer had resolved --device cuda:1
        real_init(self, *a, **k)
        self.device = torch.device("cuda", 1)

    monkeypatch.setattr(train_pkg.Trainer, "__init__", on_card)
    out = R.main(_argv(tmp_path, "--float32"))
    assert asked == [torch.device("cuda", 1)] and load_checkpoint(out, "SEN")[1]["data"]["device"] == "Card"


# ------------------------------------------------------------------ --init: a warm start
def test_init_starts_from_the_given_weights_and_the_header_records_them(tmp_path, record):
    import hashlib

    first = R.main(_argv(tmp_path, "--out", str(tmp_path / "first.safetensors"), "--seed", "1"))
    record.clear()
    argv = _argv(tmp_path, "--init", str(first), "--seed", "2")
    out = R.main(argv)
    (t,) = record
    ref = SEN.from_checkpoint(first)
    got = t.model.state_dict()
    for name, value in ref.state_dict().items():  # every tensor, float16 weights widened
        torch.testing.assert_close(got[name], value.to(got[name].dtype), rtol=0, atol=0, msg=name)
    _, header = load_checkpoint(out, "SEN")
    init = header["data"]["init"]
    assert init == {"file": "first.safetensors", "sha256": hashlib.sha256(first.read_bytes()).hexdigest(),
                    "steps": 10}
    assert header["data"]["argv"] == argv


def test_without_init_the_model_is_freshly_initialised_and_the_header_says_so(tmp_path, record):
    first = R.main(_argv(tmp_path, "--out", str(tmp_path / "first.safetensors"), "--seed", "1"))
    record.clear()
    torch.manual_seed(123)
    out = R.main(_argv(tmp_path))
    (t,) = record
    ref = SEN.from_checkpoint(first)
    assert not torch.equal(t.model.stacks[0].head.weight.detach(), ref.stacks[0].head.weight.float())
    assert load_checkpoint(out, "SEN")[1]["data"]["init"] is None


@pytest.mark.parametrize("other", [["--width", "3"], ["--presets", "23"], ["--levels", "2"]])
def test_init_with_weights_of_another_config_is_refused_by_name(tmp_path, record, other):
    first = R.main(_argv(tmp_path, "--out", str(tmp_path / "first.safetensors")))
    record.clear()
    with pytest.raises(ValueError, match=r"init: .*first\.safetensors.*holds SEN"):
        R.main(_argv(tmp_path, "--init", str(first), *other))
    assert record == []


def test_init_from_another_architecture_or_a_corrupt_file_is_a_checkpoint_error(tmp_path):
    from pnpdeblur.checkpoints import CheckpointError
    from pnpdeblur.nets import DnCNN

    model = SEN(in_channels=3, width=2, stacks=1, levels=1, flow_scale=23.0)
    dn = DnCNN(channels=3, features=4, depth=3).save(tmp_path / "dncnn.safetensors")
    with pytest.raises(CheckpointError, match="expected 'SEN'"):
        R.initialise_from(model, dn)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError):
        R.initialise_from(model, bad)
    nan = tmp_path / "nan.safetensors"
    poisoned = SEN(in_channels=3, width=2, stacks=1, levels=1, flow_scale=23.0)
    with torch.no_grad():
        poisoned.stacks[0].head.weight[0, 0, 0, 0] = float("nan")
    poisoned.save(nan)
    before = model.stacks[0].head.weight.detach().clone()
    with pytest.raises(CheckpointError, match="NaN|Inf|finite"):
        R.initialise_from(model, nan)
    torch.testing.assert_close(model.stacks[0].head.weight.detach(), before, rtol=0, atol=0)  # untouched


def test_init_shipped_starts_from_the_library_weights(tmp_path, record):
    from pnpdeblur.nets.sen import SEN_PRETRAINED_PATH

    out = R.main(["--steps", "2", "--batch", "2", "--crop", "64", "--val-items", "2", "--device", "cpu",
                  "--no-progress", "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "mine.safetensors"),
                  "--init", "shipped"])
    (t,) = record
    ref = SEN.pretrained().state_dict()
    got = t.model.state_dict()
    assert all(torch.equal(got[k], v.to(got[k].dtype)) for k, v in ref.items())
    init = load_checkpoint(out, "SEN")[1]["data"]["init"]
    assert init["file"] == SEN_PRETRAINED_PATH.name and init["steps"] == SEN.pretrained().header["steps"]


def test_init_refuses_to_overwrite_its_own_weights(tmp_path, record, monkeypatch):
    w = R.main(_argv(tmp_path, "--out", str(tmp_path / "w.safetensors")))
    record.clear()
    before = w.read_bytes()
    with pytest.raises(ValueError, match=r"--out .*w\.safetensors would overwrite the --init weights"):
        R.main(_argv(tmp_path, "--init", str(tmp_path / "run" / ".." / "w.safetensors"), "--out", str(w)))
    assert w.read_bytes() == before
    # 'shipped' with --out naming the package's file (a stand-in path here, so that a regression
    # cannot overwrite the real weights)
    shipped = tmp_path / "package" / "sen_small.safetensors"
    monkeypatch.setattr(R, "SEN_PRETRAINED_PATH", shipped)
    with pytest.raises(ValueError, match="would overwrite the --init weights"):
        R.main(["--init", "shipped", "--steps", "1", "--device", "cpu", "--run-dir", str(tmp_path / "r2"),
                "--out", str(shipped)])
    assert record == [] and not shipped.exists()


def test_highlight_options_reach_the_loss_and_the_header_and_are_checked(tmp_path, record, monkeypatch):
    seen = []
    real = R.make_loss_fn
    monkeypatch.setattr(R, "make_loss_fn", lambda *a: seen.append(a) or real(*a))
    out = R.main(_argv(tmp_path, "--max-gain", "1.6", "--highlight-prob", "0.3"))
    assert seen == [(True, 0.02, 1.6, 0.3)]
    _, header = load_checkpoint(out, "SEN")
    assert header["data"]["max_gain"] == 1.6 and header["data"]["highlight_prob"] == 0.3
    for bad, match in ((["--max-gain", "0.9"], "--max-gain must be a number >= 1"),
                       (["--max-gain", "inf"], "--max-gain must be a number >= 1"),
                       (["--highlight-prob", "1.5"], r"--highlight-prob must be in \[0, 1\]")):
        with pytest.raises(ValueError, match=match):
            R.main(_argv(tmp_path, *bad))
