"""The engine options shared by every training recipe (``pnpdeblur.train._cli``)."""
import argparse
from pathlib import Path

import pytest
import torch
from torch import nn

from pnpdeblur.checkpoints import load_checkpoint
from pnpdeblur.train import TrainConfig
from pnpdeblur.train._cli import add_engine_arguments, engine_options, export_weights
from pnpdeblur.train.deblurnets import parse_args as deblurnets_args
from pnpdeblur.train.drunet import parse_args as drunet_args
from pnpdeblur.train.rpgan import parse_args as rpgan_args
from pnpdeblur.train.sen import parse_args as sen_args


def _parser(**kw):
    ap = argparse.ArgumentParser()
    add_engine_arguments(ap, run_dir="runs/x", out_name="x.safetensors", val_items=7, **kw)
    return ap


def test_defaults_and_the_config_fields_they_give():
    args = _parser(log_every=3, val_every=4, ckpt_every=5).parse_args([])
    opts = engine_options(args)
    assert opts == dict(seed=0, num_workers=0, device="auto", log_every=3, val_every=4, ckpt_every=5,
                        out_dir="runs/x", progress=True, amp=False, grad_clip=None)
    assert (args.val_items, args.out, args.out_name, args.float32) == (7, None, "x.safetensors", False)
    TrainConfig(steps=1, batch_size=1, lr=1e-3, **opts)  # every field is one TrainConfig knows


def test_given_values_reach_the_config():
    argv = ["--device", "cpu", "--amp", "--workers", "2", "--seed", "9", "--log-every", "11", "--val-every", "12",
            "--ckpt-every", "13", "--run-dir", "r", "--no-progress", "--grad-clip", "0.5"]
    opts = engine_options(_parser().parse_args(argv))
    assert opts == dict(seed=9, num_workers=2, device="cpu", log_every=11, val_every=12, ckpt_every=13,
                        out_dir="r", progress=False, amp=True, grad_clip=0.5)


def test_optional_options_are_absent_when_the_recipe_lacks_them():
    ap = _parser(amp=False, grad_clip=False, float32=False)
    for flag in ("--amp", "--grad-clip", "--float32"):
        with pytest.raises(SystemExit):
            ap.parse_args([flag] if flag != "--grad-clip" else [flag, "1"])
    opts = engine_options(ap.parse_args([]))
    assert "amp" not in opts and "grad_clip" not in opts


@pytest.mark.parametrize("parse, extra, defaults", [
    (sen_args, [], dict(run_dir="runs/sen", val_items=64, log_every=50, val_every=500, ckpt_every=500)),
    (drunet_args, [], dict(run_dir="runs/drunet", val_items=24, log_every=25, val_every=250, ckpt_every=50)),
    (rpgan_args, [], dict(run_dir="runs/rpgan", val_items=8, log_every=50, val_every=1000, ckpt_every=500)),
    (lambda a: deblurnets_args("deepdeblur", a), [],
     dict(run_dir="runs/deepdeblur", val_items=16, log_every=50, val_every=1000, ckpt_every=1000)),
])
def test_each_recipe_keeps_its_defaults(parse, extra, defaults):
    args = parse(extra)
    assert {k: getattr(args, k) for k in defaults} == defaults
    assert args.device == "auto" and args.seed == 0 and args.workers == 0 and not args.no_progress


class _Exporter:
    """What ``export_weights`` needs of a Trainer: ``export(path, arch, config, meta, module=None)``."""

    def __init__(self, net):
        self.net = net

    def export(self, path, arch, config, meta, module=None):
        from pnpdeblur.checkpoints import save_checkpoint

        save_checkpoint(path, module if module is not None else self.net, arch, config, meta)
        return Path(path)


@pytest.mark.parametrize("float32", [True, False])
def test_export_weights_float16_by_default_and_no_temporary_left(tmp_path, float32):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    net[1].running_var.fill_(1.2345678)
    out = export_weights(_Exporter(net), tmp_path / "w.safetensors", "Tiny", {"c": 1}, {"data": "x"},
                         float32=float32, stored_dtype="float16 here")
    assert out == tmp_path / "w.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir() if "f32" in p.name) == []
    state, header = load_checkpoint(out)
    w = state["0.weight"]
    assert w.dtype == (torch.float32 if float32 else torch.float16)
    torch.testing.assert_close(w.float(), net[0].weight.detach(), atol=0 if float32 else 1e-3, rtol=0 if float32 else 1e-3)
    assert state["1.running_var"].dtype == torch.float32  # statistics stay float32 in both
    assert (header.get("stored_dtype") == "float16 here") is (not float32)
