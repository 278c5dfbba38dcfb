"""The one training recipe of the end-to-end nets (``pnpdeblur train <net>``), on tiny CPU runs."""
import json

import pytest
import torch

from pnpdeblur.checkpoints import read_header
from pnpdeblur.losses.multiscale import multiscale_mse
from pnpdeblur.train import AdversarialPair
from pnpdeblur.train import deblurnets as R


def _run(tmp_path, name, *extra):
    out = tmp_path / f"{name}.safetensors"
    argv = [name, "--small", "--steps", "2", "--batch", "2", "--crop", "64", "--val-items", "2",
            "--val-every", "0", "--ckpt-every", "0", "--device", "cpu", "--no-progress",
            "--run-dir", str(tmp_path / "run"), "--out", str(out), *extra]
    return R.main(argv)


def test_deepdeblur_recipe_trains_adversarially_and_exports_the_generator(tmp_path):
    path = _run(tmp_path, "deepdeblur", "--data", "flow")
    header = read_header(path)
    assert header["architecture"] == "DeepDeblur"
    assert header["config"]["features"] == R.SPECS["deepdeblur"].small["features"]
    assert header["steps"] == 2 and header["data"]["adversarial"] == "gan"
    assert set(header["validation"]) == {"psnr", "ssim"}
    net = R._net_class(R.SPECS["deepdeblur"]).from_checkpoint(path)
    x = torch.rand(1, 3, 30, 41)
    assert net(x).shape == x.shape
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    rows = log["history"] if isinstance(log, dict) else log
    train_rows = [r for r in rows if r.get("phase") == "train"]
    assert train_rows and {"content", "adv_g", "adv_d"} <= set(train_rows[-1])


def test_paper_schedule_becomes_milestones(tmp_path):
    # DeepDeblur: ÷10 after a third of the steps (1.5e5 of 4.5e5)
    _run(tmp_path, "deepdeblur", "--data", "flow", "--steps", "3", "--adv-weight", "0", "--log-every", "1")
    rows = json.loads((tmp_path / "run" / "log.json").read_text())
    rows = rows["history"] if isinstance(rows, dict) else rows
    lrs = [r["lr"] for r in rows if r.get("phase") == "train"]
    lr = R.SPECS["deepdeblur"].lr
    assert lrs == pytest.approx([lr, lr * 0.1, lr * 0.1])


def test_loss_fn_parts_and_content_term():
    torch.manual_seed(0)
    spec = R.SPECS["deepdeblur"]
    net = R.build_net("deepdeblur", small=True)
    disc = R._net_class(spec, spec.discriminator)(in_channels=3)
    pair = AdversarialPair(R._Multiscale(net), disc)
    batch = {"blurred": torch.rand(2, 3, 32, 32), "sharp": torch.rand(2, 3, 32, 32)}
    total, parts = R.make_loss_fn(spec, pair, 1e-4)(pair, batch)
    content = multiscale_mse(net.forward_multiscale(batch["blurred"]), batch["sharp"])
    assert parts["content"] == pytest.approx(float(content.detach()), rel=1e-5)
    assert float(total.detach()) == pytest.approx(parts["content"] + 1e-4 * parts["adv_g"] + parts["adv_d"], rel=1e-5)
    # without a discriminator the loss is the content loss alone
    plain = R.make_loss_fn(spec, None, 0.0)(R._Multiscale(net), batch)
    assert float(plain.detach()) == pytest.approx(float(content.detach()), rel=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="name must be one of"):
        R.build_net("unet")
    with pytest.raises(SystemExit):
        R.main(["unet"])
    with pytest.raises(ValueError, match="data"):
        R.build_datasets("image", "kodak", ["astronaut"], 4, 64, 0, 2)
    with pytest.raises(ValueError, match="data='video'"):
        R.build_datasets("flow", "flow", ["astronaut"], 4, 64, 0, 2)
    with pytest.raises(ValueError, match="root"):
        R.build_datasets("image", "gopro", ["astronaut"], 4, 64, 0, 2)


@pytest.mark.parametrize("name", ["deblurnet", "dvd", "deblurgan", "flownets"])
def test_every_recipe_runs_one_step_and_exports(tmp_path, name):
    path = _run(tmp_path, name, "--steps", "1", "--val-items", "1")
    header = read_header(path)
    spec = R.SPECS[name]
    assert header["architecture"] == spec.cls and header["steps"] == 1
    assert set(header["validation"]) == ({"epe"} if spec.kind == "flow" else {"psnr", "ssim"})
    net = R._net_class(spec).from_checkpoint(path)
    for k, v in spec.small.items():
        assert header["config"][k] == (list(v) if isinstance(v, tuple) else v)
    assert sum(p.numel() for p in net.parameters()) == sum(
        p.numel() for p in R.build_net(name, small=True).parameters())
