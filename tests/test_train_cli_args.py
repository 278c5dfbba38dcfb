"""``pnpdeblur.train._cli``: every engine option parsed from a known argv, bad values refused by
name, the help each option shows, and what ``export_weights`` asks of the trainer."""
import argparse
from pathlib import Path

import pytest
import torch
from torch import nn

from pnpdeblur.checkpoints import load_checkpoint, save_checkpoint
from pnpdeblur.train._cli import add_engine_arguments, engine_options, export_weights, parse_engine_args


def _parser(**kw):
    ap = argparse.ArgumentParser(prog="recipe")
    add_engine_arguments(ap, **{"run_dir": "runs/r", "out_name": "r.safetensors", "val_items": 5, **kw})
    return ap


def test_every_option_from_a_known_argv():
    argv = ["--grad-clip", "2.5", "--device", "cuda:1", "--amp", "--workers", "3", "--seed", "-4",
            "--val-items", "9", "--log-every", "6", "--val-every", "7", "--ckpt-every", "8",
            "--run-dir", "elsewhere", "--out", "w/x.safetensors", "--float32", "--no-progress"]
    args = parse_engine_args(_parser(), argv)
    assert vars(args) == dict(grad_clip=2.5, device="cuda:1", amp=True, workers=3, seed=-4, val_items=9,
                              log_every=6, val_every=7, ckpt_every=8, run_dir="elsewhere",
                              out=Path("w/x.safetensors"), out_name="r.safetensors", float32=True, no_progress=True)
    assert isinstance(args.out, Path) and isinstance(args.grad_clip, float)
    assert engine_options(args) == dict(seed=-4, num_workers=3, device="cuda:1", log_every=6, val_every=7,
                                        ckpt_every=8, out_dir="elsewhere", progress=False, amp=True, grad_clip=2.5)


def test_the_recipes_defaults_are_the_keyword_arguments():
    args = parse_engine_args(_parser(run_dir="runs/q", out_name="q.st", val_items=11, log_every=1, val_every=2,
                                     ckpt_every=3, amp=False, grad_clip=False, float32=False), [])
    # --out defaults to a file in the run folder, never the package's shipped weights
    assert vars(args) == dict(device="auto", workers=0, seed=0, val_items=11, log_every=1, val_every=2,
                              ckpt_every=3, run_dir="runs/q", out=Path("runs/q/q.st"), out_name="q.st",
                              no_progress=False)
    assert parse_engine_args(_parser(out_name="q.st"), ["--run-dir", "a/b"]).out == Path("a/b/q.st")
    # the documented defaults of the keyword arguments
    args = _parser().parse_args([])
    assert (args.log_every, args.val_every, args.ckpt_every) == (50, 500, 500)
    assert (args.amp, args.grad_clip, args.float32) == (False, None, False)


def test_engine_options_takes_the_run_folder_as_a_string_and_reads_only_present_flags():
    ns = argparse.Namespace(seed=1, workers=2, device="cpu", log_every=3, val_every=4, ckpt_every=5,
                            run_dir=Path("p") / "q", no_progress=False, grad_clip=0.1)
    assert engine_options(ns) == dict(seed=1, num_workers=2, device="cpu", log_every=3, val_every=4, ckpt_every=5,
                                      out_dir=str(Path("p") / "q"), progress=True, grad_clip=0.1)
    ns.amp = False
    del ns.grad_clip
    assert engine_options(ns)["amp"] is False and "grad_clip" not in engine_options(ns)


@pytest.mark.parametrize("option, value", [
    ("--workers", "two"), ("--seed", "1.5"), ("--val-items", "x"), ("--log-every", "1e3"),
    ("--val-every", ""), ("--ckpt-every", "ten"), ("--grad-clip", "big"),
])
def test_bad_values_are_refused_naming_the_option(capsys, option, value):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args([option, value])
    assert e.value.code == 2
    assert f"argument {option}: invalid" in capsys.readouterr().err


def test_flags_take_no_value(capsys):
    for flag in ("--amp", "--float32", "--no-progress"):
        with pytest.raises(SystemExit):
            _parser().parse_args([f"{flag}=1"])
        assert f"argument {flag}: ignored explicit argument" in capsys.readouterr().err


def test_help_says_what_each_option_means():
    text = " ".join(_parser(run_dir_help="where it all goes", out_help="the weights file").format_help().split())
    for option, meaning in (
        ("--grad-clip GRAD_CLIP", "clip the gradient norm to this"),
        ("--device DEVICE", "'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1' ..."),
        ("--amp", "mixed precision (CUDA only)"),
        ("--workers WORKERS", "data-loader worker processes"),
        ("--val-items VAL_ITEMS", "validation items"),
        ("--log-every LOG_EVERY", "steps between log rows"),
        ("--val-every VAL_EVERY", "steps between validations"),
        ("--ckpt-every CKPT_EVERY", "steps between checkpoints"),
        ("--run-dir RUN_DIR", "where it all goes"),
        ("--out OUT", "the weights file"),
        ("--float32", "export float32 weights (default float16)"),
        ("--no-progress", "no progress bar"),
    ):
        assert f"{option} {meaning}" in text, option
    assert "--seed SEED" in text
    default = " ".join(_parser().format_help().split())
    assert "--run-dir RUN_DIR logs, checkpoints (last.pt is resumed if present) and loss curve" in default
    assert "--out OUT exported weights (safetensors)" in default


class _Recorder:
    """A trainer stand-in that records ``export`` calls and writes a real checkpoint."""

    def __init__(self, net):
        self.net, self.calls = net, []

    def export(self, path, arch, config, meta, module=None):
        self.calls.append((Path(path), arch, config, meta, module))
        return save_checkpoint(path, module if module is not None else self.net, arch, config, meta)


def test_export_float32_is_one_direct_export(tmp_path):
    net, part = nn.Linear(2, 2), nn.Linear(3, 1)
    rec = _Recorder(net)
    out = export_weights(rec, str(tmp_path / "w.safetensors"), "Arch", {"k": 1}, {"m": 2}, float32=True,
                         module=part)
    assert out == tmp_path / "w.safetensors" and isinstance(out, Path)
    assert rec.calls == [(tmp_path / "w.safetensors", "Arch", {"k": 1}, {"m": 2}, part)]
    state, header = load_checkpoint(out)
    assert state["weight"].shape == (1, 3) and state["weight"].dtype == torch.float32
    assert "stored_dtype" not in header


def test_export_float16_goes_through_a_float32_file_that_is_removed(tmp_path):
    net, part = nn.Linear(2, 2), nn.Linear(3, 1)
    rec = _Recorder(net)
    out = export_weights(rec, tmp_path / "w.safetensors", "Arch", {"k": 1}, {"m": 2}, float32=False, module=part)
    assert out == tmp_path / "w.safetensors"
    assert rec.calls == [(tmp_path / "w.f32.safetensors", "Arch", {"k": 1}, {"m": 2}, part)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.json", "w.safetensors"]
    state, header = load_checkpoint(out, "Arch")
    assert state["weight"].dtype == torch.float16 and state["weight"].shape == (1, 3)
    assert header["stored_dtype"] == "float16" and header["m"] == 2 and header["config"] == {"k": 1}


def test_export_float16_without_a_sidecar_is_fine(tmp_path):
    class NoSidecar(_Recorder):
        def export(self, path, arch, config, meta, module=None):
            self.calls.append(Path(path))
            return save_checkpoint(path, self.net, arch, config, meta, sidecar=False)

    out = export_weights(NoSidecar(nn.Linear(2, 2)), tmp_path / "v.safetensors", "A", {}, {}, float32=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.json", "v.safetensors"]
    assert load_checkpoint(out)[0]["weight"].dtype == torch.float16
