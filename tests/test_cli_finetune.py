"""``pnpdeblur finetune``: Reblur2Deblur fine-tuning from the command line (issue 13).

A tiny identity-initialised deblurring net is registered in ``cli.FINETUNE_NETS`` for the
tests, so they do not depend on which shipped networks exist; 40×40 frames, 2–3 steps.
"""
import os

import numpy as np
import pytest
import torch
from skimage import io
from torch import nn

from pnpdeblur import cli
from pnpdeblur.data import sample_image, synthesize_video_sequence
from pnpdeblur.nets._base import CheckpointMixin
from pnpdeblur.nets.sen import SEN


class TinyDeblur(CheckpointMixin, nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.config = {"width": width}
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x):
        return x + self.conv(x)


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setitem(cli.FINETUNE_NETS, "tiny", TinyDeblur)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    img = sample_image("coffee", size=(80, 80))
    q = synthesize_video_sequence(img, 3, shape=(40, 40), n_frames=7, motion="translation", max_blur=5.0, seed=1)
    d = tmp_path_factory.mktemp("clip")
    for k, name in enumerate(["f9", "f10", "f11"]):  # natural order differs from plain sorting
        io.imsave(str(d / f"{name}.png"), np.round(q.blurred[k] * 255).astype(np.uint8), check_contrast=False)
    return d


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("net") / "tiny.safetensors"
    TinyDeblur().save(path)
    return path


FAST = ["--steps", "3", "--crop", "24", "--batch", "2", "--flow-every", "2", "--no-progress", "--lr", "1e-3"]


def test_finetune_writes_frames_deblurred_by_the_tuned_net(tmp_path, clip_dir, tiny_ckpt, registry):
    out, saved = tmp_path / "out", tmp_path / "tuned.safetensors"
    rc = cli.main(["finetune", str(clip_dir), "--net", str(tiny_ckpt), "-o", str(out), "--reblur-only",
                   "--save-net", str(saved), *FAST])
    assert rc == 0
    assert sorted(os.listdir(out)) == ["f10.png", "f11.png", "f9.png"]
    tuned = TinyDeblur.from_checkpoint(saved)
    assert any(float(p.detach().abs().sum()) > 0 for p in tuned.parameters())  # it was fine-tuned
    for name in ("f9", "f10", "f11"):
        inp = io.imread(str(clip_dir / f"{name}.png"))
        res = io.imread(str(out / f"{name}.png"))
        assert res.dtype == np.uint8 and res.shape == inp.shape
        with torch.no_grad():
            want = tuned(torch.from_numpy(inp / 255.0).permute(2, 0, 1)[None].float())[0].clamp(0, 1)
        want = np.round(want.permute(1, 2, 0).numpy() * 255)
        assert np.abs(res.astype(float) - want).max() <= 1  # the tuned net's output, rounded
        assert np.abs(res.astype(int) - inp.astype(int)).max() > 0


def test_finetune_single_two_frame_hybrid_with_pairs(tmp_path, clip_dir, tiny_ckpt, registry):
    pairs_b, pairs_s = tmp_path / "pb", tmp_path / "ps"
    for d in (pairs_b, pairs_s):
        d.mkdir()
    img = np.round(sample_image("astronaut", size=(32, 32)) * 255).astype(np.uint8)
    io.imsave(str(pairs_b / "a.png"), img, check_contrast=False)
    io.imsave(str(pairs_s / "a.png"), img, check_contrast=False)
    out = tmp_path / "out"
    rc = cli.main(["finetune", str(clip_dir), "--net", str(tiny_ckpt), "-o", str(out), "--frames", "2", "--single",
                   "--pairs", str(pairs_b), str(pairs_s), "--kernel", "warp", *FAST])
    assert rc == 0 and sorted(os.listdir(out)) == ["f10.png", "f11.png", "f9.png"]


def test_sorted_frames_natural_order(clip_dir):
    assert [p.name for p in cli.sorted_frames(clip_dir)] == ["f9.png", "f10.png", "f11.png"]


def test_net_names_shipped_or_a_clear_error(tmp_path, clip_dir, registry, capsys):
    rc = cli.main(["finetune", str(clip_dir), "--net", "tiny", "-o", str(tmp_path / "o"), *FAST])
    assert rc == 1 and "no shipped weights for TinyDeblur" in capsys.readouterr().err
    rc = cli.main(["finetune", str(clip_dir), "--net", "deepdeblur", "-o", str(tmp_path / "o"), *FAST])
    assert rc == 0, capsys.readouterr().err  # DeepDeblur ships (CPU demonstration) weights
    assert sorted(os.listdir(tmp_path / "o")) == ["f10.png", "f11.png", "f9.png"]


def test_foreign_checkpoint_and_missing_path(tmp_path, clip_dir, registry, capsys):
    sen = tmp_path / "sen.safetensors"
    SEN(in_channels=3, width=4, stacks=1, levels=2).save(sen)
    assert cli.main(["finetune", str(clip_dir), "--net", str(sen), "-o", str(tmp_path / "o"), *FAST]) == 1
    assert "'SEN'" in capsys.readouterr().err
    assert cli.main(["finetune", str(clip_dir), "--net", str(tmp_path / "nope.safetensors"), "-o",
                     str(tmp_path / "o"), *FAST]) == 1
    assert "neither a known network" in capsys.readouterr().err


def test_usage_errors(tmp_path, clip_dir, tiny_ckpt, registry, capsys):
    base = ["--net", str(tiny_ckpt), *FAST]
    # frames of different sizes
    d = tmp_path / "mixed"
    d.mkdir()
    io.imsave(str(d / "a.png"), np.zeros((40, 40, 3), np.uint8), check_contrast=False)
    io.imsave(str(d / "b.png"), np.zeros((40, 41, 3), np.uint8), check_contrast=False)
    io.imsave(str(d / "c.png"), np.zeros((40, 40, 3), np.uint8), check_contrast=False)
    assert cli.main(["finetune", str(d), "-o", str(tmp_path / "o"), *base]) == 2
    assert "same size" in capsys.readouterr().err
    # too few frames for the 3-frame model
    (d / "b.png").unlink()
    assert cli.main(["finetune", str(d), "-o", str(tmp_path / "o"), *base]) == 2
    assert "at least 3 frames" in capsys.readouterr().err
    # output over the inputs
    assert cli.main(["finetune", str(clip_dir), "-o", str(clip_dir), *base]) == 2
    assert "overwrite" in capsys.readouterr().err
    # no frames folder; a bad option value
    assert cli.main(["finetune", str(tmp_path / "none"), "-o", str(tmp_path / "o"), *base]) == 2
    assert cli.main(["finetune", str(clip_dir), "-o", str(tmp_path / "o"), "--tau", "2", *base]) == 2
    assert not (tmp_path / "o").exists()


def test_train_flow_fine_tunes_the_flownets_checkpoint_jointly(tmp_path, clip_dir, tiny_ckpt, registry,
                                                             monkeypatch, capsys):
    from pnpdeblur.nets.flownets import FlowNetS
    from pnpdeblur.train import reblur

    fpath = tmp_path / "flownets.safetensors"
    FlowNetS(width=4).save(fpath)
    seen = {}
    real = reblur.finetune_reblur

    def spy(net, clip, **kw):
        tuned = real(net, clip, **kw)
        seen.update(kw, flow_net=getattr(tuned, "reblur_flow_net", None))
        return tuned

    monkeypatch.setattr(reblur, "finetune_reblur", spy)
    out = tmp_path / "out"
    args = ["finetune", str(clip_dir), "-o", str(out), "--net", str(tiny_ckpt), *FAST, "--lr", "1e-2"]
    saved = tmp_path / "tuned.safetensors"
    assert cli.main(args + ["--flow", str(fpath), "--train-flow", "--save-net", str(saved)]) == 0
    assert seen["train_flow"] is True and isinstance(seen["flow"], FlowNetS)
    before = FlowNetS.from_checkpoint(fpath).state_dict()
    after = seen["flow_net"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the flow net was trained
    # --save-net keeps both networks: the tuned flow net beside the deblurring one
    flow_saved = tmp_path / "tuned_flownets.safetensors"
    assert saved.is_file() and flow_saved.is_file()
    reloaded = FlowNetS.from_checkpoint(flow_saved).state_dict()
    assert all(torch.equal(reloaded[k], after[k]) for k in after)
    assert f"saved the fine-tuned flow network to {flow_saved}" in capsys.readouterr().err
    assert len(list(out.glob("*.png"))) == 3
    # without a flow network there is nothing to train: a usage error before any work
    assert cli.main(args + ["--train-flow", "-o", str(tmp_path / "o2")]) == 2
    assert "--train-flow needs --flow PATH" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
