"""Reblur2Deblur with a multi-frame network (DVD, Chen et al.'s first network): each frame is
restored from the stack of its neighbours, in fine-tuning, in the flows' refresh and in the
deblurred output; the supervised pairs are stacks too."""
import numpy as np
import pytest
import torch
from torch import nn

import pnpdeblur as pd
from pnpdeblur import cli
from pnpdeblur.data import SyntheticVideoDataset, sample_images
from pnpdeblur.train.reblur import (JointNets, ReblurObjective, _windows, deblur_frames, default_supervised_set,
                                    finetune_reblur, frame_stack, net_frames, run_net)
from pnpdeblur.train.sen import TRAIN_SAMPLES


class CentreOf(nn.Module):
    """A ``frames``-frame 'network' that returns its stack's centre frame times a learnable gain."""

    def __init__(self, frames: int = 3, c: int = 3):
        super().__init__()
        self.frames, self.c = frames, c
        self.gain = nn.Parameter(torch.ones(()))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        k = self.frames // 2
        return x[:, k * self.c:(k + 1) * self.c] * self.gain


def _indexed_clip(t=5, c=3, h=6, w=7):
    """Frame t holds the value t everywhere (plus a per-pixel ramp, to check windows)."""
    ramp = torch.arange(h * w, dtype=torch.float32).reshape(1, h, w) / 1000
    return torch.stack([torch.full((c, h, w), float(i)) + ramp for i in range(t)])


def test_net_frames_reads_the_networks_stack_length():
    assert net_frames(pd.nets.DVD(widths=(4, 4, 4, 4))) == 5
    assert net_frames(pd.nets.DVD(frames=3, widths=(4, 4, 4, 4))) == 3
    assert net_frames(pd.nets.DeepDeblur(features=4, blocks=1)) == 1
    assert net_frames(JointNets(CentreOf(7), nn.Identity())) == 7
    for not_a_count in (True, "3", 2.5, 0, -3, None):
        odd = nn.Identity()
        odd.frames = not_a_count
        assert net_frames(odd) == 1, not_a_count


def test_frame_stack_is_the_neighbourhood_in_order_clamped_at_the_ends():
    clip = _indexed_clip()
    order = lambda s: [int(s[0, 3 * i, 0, 0]) for i in range(s.shape[1] // 3)]  # noqa: E731
    assert frame_stack(clip, 0, 5).shape == (1, 15, 6, 7)
    assert order(frame_stack(clip, 0, 5)) == [0, 0, 0, 1, 2]
    assert order(frame_stack(clip, 2, 5)) == [0, 1, 2, 3, 4]
    assert order(frame_stack(clip, 4, 5)) == [2, 3, 4, 4, 4]
    assert order(frame_stack(clip, 3, 3)) == [2, 3, 4]
    assert torch.equal(frame_stack(clip, 1, 1), clip[1:2])
    # windows of stacks are the stacks of the windows
    got = _windows(clip, torch.tensor([0, 3]), torch.tensor([1, 2]), torch.tensor([3, 0]), 4, stack=3)
    assert got.shape == (2, 9, 4, 4)
    assert torch.equal(got[0], frame_stack(clip[..., 1:5, 3:7], 0, 3)[0])
    assert torch.equal(got[1], frame_stack(clip[..., 2:6, 0:4], 3, 3)[0])
    # an even stack holds the frame and the one before (half = 1): still a stack
    two = _windows(clip, torch.tensor([0, 3]), torch.tensor([0, 0]), torch.tensor([0, 0]), 4, stack=2)
    assert two.shape == (2, 6, 4, 4) and order(two[1:]) == [2, 3] and order(two[:1]) == [0, 0]


def test_run_net_maps_a_stack_to_its_centre_frame_shape():
    x = torch.rand(2, 9, 4, 4)
    net = CentreOf(3)
    assert torch.equal(run_net(net, x, 3), x[:, 3:6])
    with pytest.raises(ValueError, match=r"^the network must map stacks of 3 frames \(N, 3·C, H, W\) to the centre "
                                         r"frame's shape \(2, 3, 4, 4\), got \(2, 9, 4, 4\)$"):
        run_net(lambda v: v, x, 3)


def test_deblur_frames_gives_each_frame_its_own_stack():
    clip = _indexed_clip()
    net = CentreOf(5)
    out = deblur_frames(net, clip)
    assert torch.equal(out, clip)  # the centre of frame t's stack is frame t
    assert [tuple(s.shape) for s in net.seen] == [(1, 15, 6, 7)] * 5
    assert torch.equal(net.seen[0], frame_stack(clip, 0, 5))


def test_objective_feeds_stacks_and_compares_the_centre_crops():
    clip = _indexed_clip(t=4, h=12, w=12)
    net = CentreOf(3)
    obj = ReblurObjective(clip, [1, 2], frames=3, kernel="two_segment", tau=1.0, alpha=1.0, crop=8,
                          flow=lambda a, b: torch.zeros(a.shape[0], 2, *a.shape[-2:]), flow_every=5)
    batch = {"frames": torch.tensor([1, 2]), "ys": torch.tensor([0, 4]), "xs": torch.tensor([2, 1])}
    loss, extra = obj(net, batch)
    # zero flows: the reblur of the centre crop is itself, and the net returns exactly it
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-12) and extra["reblur"] == pytest.approx(0.0, abs=1e-12)
    assert len(net.seen) == 5  # the refresh deblurs frames 0..3 (centres 1, 2 and their neighbours), then the crops
    assert [s.shape for s in net.seen[:4]] == [(1, 9, 12, 12)] * 4
    assert torch.equal(net.seen[3], frame_stack(clip, 3, 3))
    crops = net.seen[-1]
    assert crops.shape == (2, 9, 8, 8)
    assert torch.equal(crops, _windows(clip, batch["frames"], batch["ys"], batch["xs"], 8, stack=3))


def test_default_supervised_pairs_are_stacks_and_their_centre_frame():
    sup = default_supervised_set(16, seed=3, length=2, frames=3)
    item = sup[1]
    assert item["blurred"].shape == (9, 16, 16) and item["sharp"].shape == (3, 16, 16)
    names = [n for n in TRAIN_SAMPLES if n in sample_images()]
    clip = SyntheticVideoDataset(names, length=2, crop=16, max_blur=16.0, seed=3, fixed=True, n_blurred=3)[1]
    assert torch.equal(item["blurred"], clip["blurred"].reshape(9, 16, 16))
    assert torch.equal(item["sharp"], clip["sharp"][1])


def test_finetune_a_dvd_on_a_clip():
    torch.manual_seed(0)
    net = pd.nets.DVD(frames=3, widths=(4, 4, 4, 4))
    clip = torch.rand(4, 3, 24, 24)
    tuned = finetune_reblur(net, clip, steps=2, crop=16, batch_size=2, flow_every=2, progress=False, lr=1e-2)
    changed = [not torch.equal(a, b) for a, b in zip(net.state_dict().values(), tuned.state_dict().values())]
    assert any(changed) and tuned.reblur_settings["hybrid"]
    assert {"reblur", "supervised"} <= set(tuned.reblur_history[-1])
    assert deblur_frames(tuned, clip).shape == clip.shape


def test_cli_finetunes_a_dvd_checkpoint(tmp_path):
    from skimage import io

    frames_dir = tmp_path / "clip"
    frames_dir.mkdir()
    rng = np.random.default_rng(0)
    for k in range(4):
        io.imsave(str(frames_dir / f"f{k}.png"), (rng.random((24, 24, 3)) * 255).astype(np.uint8), check_contrast=False)
    ckpt = tmp_path / "dvd.safetensors"
    pd.nets.DVD(frames=3, widths=(4, 4, 4, 4)).save(ckpt)
    out = tmp_path / "out"
    assert cli.main(["finetune", str(frames_dir), "--net", str(ckpt), "-o", str(out), "--steps", "1", "--crop", "16",
                     "--batch", "2", "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"f{k}.png" for k in range(4)]
    with pytest.raises(FileNotFoundError, match=r"^no shipped weights for DVD"):
        cli.load_deblur_net("dvd")


class GainFlow(nn.Module):
    """A trainable 'flow network': a constant flow of one learnable length along x."""

    def __init__(self):
        super().__init__()
        self.length = nn.Parameter(torch.tensor(3.0))

    def forward(self, a, b):
        f = torch.zeros(a.shape[0], 2, *a.shape[-2:])
        return f + torch.stack([self.length, 0 * self.length]).view(1, 2, 1, 1)


def test_joint_fine_tuning_deblurs_the_stacks_of_the_crops_and_their_neighbours():
    torch.manual_seed(0)
    net = CentreOf(3)
    clip = torch.rand(4, 3, 12, 12)
    tuned = finetune_reblur(net, clip, steps=1, crop=8, batch_size=2, flow=GainFlow(), train_flow=True,
                            supervised=False, progress=False, lr=1e-2)
    # one reblur step: the centre crops, their next and their previous frames, 2 each, all stacks of 3
    step_inputs = [s for s in tuned.seen if s.shape[0] == 6]
    assert step_inputs and all(s.shape == (6, 9, 8, 8) for s in step_inputs)
    assert tuned.reblur_flow_net.length.item() != 3.0  # the flow network learned too


def test_single_frame_supervised_pairs_are_refused_for_a_stack_network():
    class Items(torch.utils.data.Dataset):
        def __init__(self, items):
            self.items = items

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    pairs = Items([{"blurred": torch.rand(3, 16, 16), "sharp": torch.rand(3, 16, 16)}])
    with pytest.raises(ValueError, match=r"^net reads stacks of 3 frames: its supervised items need 'blurred' "
                                         r"stacks \(3·C, H, W\) .*supervised\[0\] has 'blurred' of shape \(3, 16, 16\)$"):
        finetune_reblur(CentreOf(3), torch.rand(4, 3, 16, 16), steps=1, crop=16, supervised=pairs, progress=False)
    stacks = Items([{"blurred": torch.rand(9, 16, 16), "sharp": torch.rand(3, 16, 16)}])
    tuned = finetune_reblur(CentreOf(3), torch.rand(4, 3, 16, 16), steps=1, crop=16, batch_size=2,
                            supervised=stacks, progress=False, flow_every=1)
    assert tuned.reblur_settings["n_supervised"] == 1
