"""Reblur2Deblur's recipe (``pnpdeblur/train/reblur.py``) called directly, on tiny stand-ins.

Chen et al. (``shared/papers/chen-reblur2deblur.txt``, section 4 and eq. 10): "L = L_S + α L_U ...
We set α = 0.1 in all our experiments"; "We performed 200 self-supervised learning iterations ...
ADAM solver with a learning rate of 0.0001 ... a learning rate decay of 0.5 applied at 30, 50, and
100 epochs"; "mini-batch size between 8 and 20". The tests check those defaults, the hybrid batch
(which crops and supervised pairs, how many of each), the loss terms and their weight α against
values computed by hand from the clip, the milestone arithmetic, the copy semantics of
``finetune_reblur`` and every argument check's message.

Stand-ins keep each value checkable: a network ``a·x`` (a = 1 at the start, so the first step's
loss is a function of the clip alone), a flow "method" built from the two frames it is given, and
``crop`` equal to the frame size, so every reblur crop is a whole frame whatever the RNG draws.
"""
import inspect
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pnpdeblur.data import SyntheticVideoDataset, sample_images
from pnpdeblur.losses.reblur import reblur_loss
from pnpdeblur.train.reblur import (
    PAPER_MILESTONES,
    HybridBatches,
    JointNets,
    ReblurObjective,
    _crop_pair,
    _int,
    _real,
    _windows,
    as_clip,
    default_supervised_set,
    finetune_reblur,
    first_item,
    run_net,
)
from pnpdeblur.train.sen import TRAIN_SAMPLES

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Scale(nn.Module):
    """``a·x`` with a scalar parameter a (1 at the start: the identity)."""

    def __init__(self, a=1.0):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a)))

    def forward(self, x):
        return self.a * x


def _flow(a, b):
    """F(a, b): u = 4·(mean b − mean a), v = 2·mean a − mean b (per pixel, in range of the operators)."""
    ma, mb = a.mean(1), b.mean(1)
    return torch.stack([4.0 * (mb - ma), 2.0 * ma - mb], 1)


def _clip(t=4, h=12, w=10, seed=0):
    return torch.rand(t, 3, h, w, generator=torch.Generator().manual_seed(seed))


class _Pairs(torch.utils.data.Dataset):
    """Item j: blurred = j/10 + ramp, sharp = blurred + 0.05 (every pair's MSE is 0.0025)."""

    def __init__(self, n=5, size=(12, 14)):
        self.n, self.size = n, size
        self.calls = []

    def __len__(self):
        return self.n

    def __getitem__(self, j):
        self.calls.append(j)
        h, w = self.size
        ramp = torch.arange(h * w, dtype=torch.float32).reshape(1, h, w) / (10 * h * w)
        b = (j / 10 + ramp).expand(3, h, w).clone()
        return {"blurred": b, "sharp": b + 0.05}


def _ft(net, clip, **kw):
    kw.setdefault("flow", _flow)
    kw.setdefault("progress", False)
    kw.setdefault("steps", 1)
    return finetune_reblur(net, clip, **kw)


def _reblur_ref(clip, centres, frames, kernel="two_segment", tau=1.0):
    """L_U of the identity network on whole centre frames, flows written out for each centre."""
    fn, fp = [], []
    t_len = clip.shape[0]
    for t in centres:
        x = clip[t:t + 1]
        if frames == 3:
            fn.append(_flow(x, clip[t + 1:t + 2]))
            fp.append(_flow(x, clip[t - 1:t]))
        elif t + 1 < t_len:
            fn.append(_flow(x, clip[t + 1:t + 2]))
        else:
            fn.append(-_flow(x, clip[t - 1:t]))
    b = clip[list(centres)]
    return float(reblur_loss(b, b, torch.cat(fn), torch.cat(fp) if fp else None, kernel=kernel, tau=tau))


# ------------------------------------------------------------------------- the paper's defaults
def test_defaults_are_the_papers_settings():
    p = inspect.signature(finetune_reblur).parameters
    # Chen et al.: α = 0.1, Adam lr 0.0001, 200 iterations, decay 0.5 at epochs 30, 50, 100,
    # 3 frames (their best), the two-segment kernel with τ = 1, mini-batch 8 (their lower end).
    assert p["alpha"].default == 0.1
    assert p["lr"].default == 1e-4
    assert p["steps"].default == 200
    assert PAPER_MILESTONES == (30, 50, 100) and p["milestones"].default == (30, 50, 100)
    assert p["lr_decay"].default == 0.5
    assert p["frames"].default == 3 and p["kernel"].default == "two_segment" and p["tau"].default == 1.0
    assert p["batch_size"].default == 8 and p["crop"].default == 128
    assert p["supervised"].default is None and p["supervised_share"].default == 0.5
    assert p["flow"].default == "tvl1" and p["flow_every"].default == 20
    assert p["group"].default is True and p["target"].default is None
    assert p["seed"].default == 0 and p["progress"].default is True and p["device"].default is None


def test_default_alpha_weighs_the_reblur_term_by_a_tenth():
    clip = _clip(4)
    tuned = _ft(_Scale(), clip, supervised=_Pairs(), batch_size=3, supervised_share=0.34, crop=10)
    row = tuned.reblur_history[-1]
    assert tuned.reblur_settings["alpha"] == 0.1 and tuned.reblur_settings["lr"] == 1e-4
    assert row["lr"] == pytest.approx(1e-4, rel=1e-12)
    assert row["loss"] == pytest.approx(row["supervised"] + 0.1 * row["reblur"], rel=1e-6)


# ------------------------------------------------------------------- the first step's loss by hand
@pytest.mark.parametrize("frames", [2, 3])
def test_first_step_reblur_loss_is_the_hand_computed_value(frames):
    clip = _clip(4, 10, 10)  # crop = frame: every crop is a whole frame
    centres = [1, 2] if frames == 3 else [0, 1, 2, 3]
    alpha = 0.3
    tuned = _ft(_Scale(), clip, frames=frames, supervised=False, batch_size=len(centres), crop=64, alpha=alpha,
                kernel="lut", tau=0.5)
    row = tuned.reblur_history[0]
    want = _reblur_ref(clip, centres, frames, kernel="lut", tau=0.5)
    assert row["reblur"] == pytest.approx(want, rel=1e-5)
    assert row["loss"] == pytest.approx(alpha * want, rel=1e-5)
    assert "supervised" not in row


def test_first_step_hybrid_loss_is_ls_plus_alpha_lu():
    clip = _clip(5, 10, 10, seed=1)
    alpha = 0.7
    tuned = _ft(_Scale(), clip, frames=3, supervised=_Pairs(), batch_size=5, supervised_share=0.4, crop=10,
                alpha=alpha, kernel="warp", tau=0.8)
    s = tuned.reblur_settings
    assert (s["n_reblur"], s["n_supervised"]) == (3, 2)
    row = tuned.reblur_history[0]
    l_u = _reblur_ref(clip, [1, 2, 3], 3, kernel="warp", tau=0.8)
    assert row["reblur"] == pytest.approx(l_u, rel=1e-5)
    assert row["supervised"] == pytest.approx(0.05 ** 2, rel=1e-4)  # identity net: (b − s)² = 0.05²
    assert row["loss"] == pytest.approx(0.05 ** 2 + alpha * l_u, rel=1e-5)


def test_alpha_zero_leaves_only_the_supervised_term():
    tuned = _ft(_Scale(), _clip(4), supervised=_Pairs(), batch_size=2, crop=10, alpha=0.0)
    row = tuned.reblur_history[0]
    assert row["reblur"] > 0 and row["loss"] == pytest.approx(row["supervised"], rel=1e-6)


# -------------------------------------------------------------------- the batch split and settings
@pytest.mark.parametrize("batch_size, share, n_s", [(4, 0.5, 2), (4, 0.0, 1), (4, 1.0, 3), (4, 0.3, 1),
                                                    (4, 0.4, 2), (2, 0.25, 1), (10, 0.55, 6)])
def test_supervised_share_rounds_with_at_least_one_of_each(batch_size, share, n_s):
    tuned = _ft(_Scale(), _clip(4), supervised=_Pairs(), batch_size=batch_size, supervised_share=share, crop=8)
    s = tuned.reblur_settings
    assert (s["n_supervised"], s["n_reblur"]) == (n_s, batch_size - n_s)


def test_reblur_only_uses_the_whole_batch_for_reblur_crops():
    tuned = _ft(_Scale(), _clip(4), supervised=False, batch_size=1, crop=8)
    s = tuned.reblur_settings
    assert (s["hybrid"], s["n_reblur"], s["n_supervised"]) == (False, 1, 0)


def test_settings_record_every_choice():
    clip = _clip(6, 16, 12)
    tuned = _ft(_Scale(), clip, frames=2, kernel="lut", tau=0.5, steps=5, lr=2e-3, alpha=0.25, supervised=_Pairs(),
                flow_every=2, crop=40, batch_size=3, supervised_share=0.3, milestones=(2, 9), lr_decay=0.5, seed=4,
                margin=2)
    assert tuned.reblur_settings == {
        "frames": 2, "kernel": "lut", "tau": 0.5, "margin": 2, "steps": 5, "lr": 2e-3, "alpha": 0.25, "hybrid": True,
        "n_reblur": 2, "n_supervised": 1, "flow": "function", "flow_every": 2, "flow_refreshes": 3,
        "train_flow": False, "group": True, "centres": [0, 1, 2, 3, 4, 5], "crop": 12, "milestone_steps": [], "seed": 4,
    }
    # epoch = ceil(6 centres / 2 reblur crops) = 3 steps: milestone epoch 2 is step 6 > 5 steps
    assert [r["step"] for r in tuned.reblur_history] == [5]
    assert isinstance(tuned.reblur_history, list)


def test_flow_refreshes_every_flow_every_steps():
    for every, want in ((1, 4), (2, 2), (3, 2), (4, 1), (10, 1)):
        tuned = _ft(_Scale(), _clip(3), frames=3, supervised=False, batch_size=1, crop=8, steps=4, flow_every=every)
        assert tuned.reblur_settings["flow_refreshes"] == want, every


def test_milestones_are_epochs_of_ceil_centres_over_reblur_crops():
    # 6 frames, 3-frame model: centres 1..4; 3 reblur crops a step -> an epoch is ceil(4/3) = 2 steps
    clip = _clip(6, 10, 10)
    lr, decay = 1e-3, 0.3
    tuned = _ft(_Scale(), clip, frames=3, supervised=False, batch_size=3, crop=8, steps=8, lr=lr, lr_decay=decay,
                milestones=(2, 3, 4, 5))
    s = tuned.reblur_settings
    assert s["milestone_steps"] == [4, 6, 8]  # epoch 5 = step 10 is past the last step; 8 == steps counts
    assert s["centres"] == [1, 2, 3, 4]
    # the 8th step (0-based 7) has passed the milestones at 4 and 6
    row = tuned.reblur_history[-1]
    assert row["step"] == 8 and row["lr"] == pytest.approx(lr * decay ** 2, rel=1e-9)


def test_log_rows_every_ten_steps_and_at_the_end():
    tuned = _ft(_Scale(), _clip(3), frames=3, supervised=False, batch_size=1, crop=8, steps=12, flow_every=12)
    assert [r["step"] for r in tuned.reblur_history] == [10, 12]


def test_group_false_uses_one_target_frame_default_the_middle():
    clip = _clip(7, 8, 8)
    tuned = _ft(_Scale(), clip, group=False, supervised=False, batch_size=1, crop=8)
    assert tuned.reblur_settings["centres"] == [3] and tuned.reblur_settings["group"] is False
    tuned = _ft(_Scale(), clip, group=False, target=5, supervised=False, batch_size=1, crop=8)
    assert tuned.reblur_settings["centres"] == [5]
    tuned = _ft(_Scale(), clip, frames=2, group=False, supervised=False, batch_size=1, crop=8)
    assert tuned.reblur_settings["centres"] == [3]  # usable 0..6, the middle
    tuned = _ft(_Scale(), clip, frames=2, group=False, target=np.int64(6), supervised=False, batch_size=1, crop=8)
    assert tuned.reblur_settings["centres"] == [6] and type(tuned.reblur_settings["centres"][0]) is int
    tuned = _ft(_Scale(), clip[:4], group=False, supervised=False, batch_size=1, crop=8)
    assert tuned.reblur_settings["centres"] == [2]  # usable 1, 2: index 2 // 2 = 1


def test_crop_is_clipped_to_the_frame():
    tuned = _ft(_Scale(), _clip(3, 14, 9), supervised=False, batch_size=1, crop=128)
    assert tuned.reblur_settings["crop"] == 9
    tuned = _ft(_Scale(), _clip(3, 9, 14), supervised=False, batch_size=1, crop=128)
    assert tuned.reblur_settings["crop"] == 9
    tuned = _ft(_Scale(), _clip(3, 14, 12), supervised=False, batch_size=1, crop=8)
    assert tuned.reblur_settings["crop"] == 8


# ------------------------------------------------------------------------------- the copy
def test_returns_a_trained_copy_in_eval_mode_that_shares_nothing():
    net = _Scale(1.0).train()
    tuned = _ft(net, _clip(4), supervised=False, batch_size=2, crop=8, steps=2, lr=0.1)
    assert tuned is not net and isinstance(tuned, _Scale)
    assert float(net.a.detach()) == 1.0 and net.training  # the input is untouched, still training
    assert float(tuned.a.detach()) != 1.0 and not tuned.training
    assert tuned.a.data_ptr() != net.a.data_ptr()
    with torch.no_grad():
        tuned.a.fill_(5.0)
    assert float(net.a.detach()) == 1.0


def test_flow_network_is_moved_and_put_in_eval_mode():
    class FlowNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor(0.5))
            self.modes = []

        def forward(self, a, b):
            self.modes.append(self.training)
            return self.w * _flow(a, b)

    fnet = FlowNet().train()
    tuned = _ft(_Scale(), _clip(3), supervised=False, batch_size=1, crop=8, flow=fnet, device="cpu")
    assert not fnet.training and fnet.modes == [False, False]  # 3-frame, one centre: two flows
    assert float(fnet.w.detach()) == 0.5  # not trained
    assert tuned.reblur_settings["flow"] == "FlowNet"


def test_callers_random_streams_are_untouched():
    torch.manual_seed(11)
    np.random.seed(11)
    want_t, want_n = torch.rand(4), np.random.rand(4)
    torch.manual_seed(11)
    np.random.seed(11)
    _ft(_Scale(), _clip(3), supervised=_Pairs(), batch_size=2, crop=8, steps=2)
    assert torch.equal(torch.rand(4), want_t) and np.array_equal(np.random.rand(4), want_n)


def test_seed_decides_the_crops():
    clip = _clip(4, 16, 16)
    a = _ft(_Scale(), clip, supervised=False, batch_size=1, crop=8, seed=0).reblur_history[0]["reblur"]
    b = _ft(_Scale(), clip, supervised=False, batch_size=1, crop=8, seed=0).reblur_history[0]["reblur"]
    c = _ft(_Scale(), clip, supervised=False, batch_size=1, crop=8, seed=3).reblur_history[0]["reblur"]
    assert a == b and a != c


def test_progress_bar_replaces_the_log_line(capsys, monkeypatch):
    import tqdm

    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)  # its monitor thread hangs forked children
    _ft(_Scale(), _clip(3), supervised=False, batch_size=1, crop=8, progress=False)
    out = capsys.readouterr()
    assert "step 1/1" in out.out
    _ft(_Scale(), _clip(3), supervised=False, batch_size=1, crop=8, progress=True)
    out = capsys.readouterr()
    assert "step 1/1" not in out.out and "train" in out.err


def test_default_supervised_half_is_the_librarys_synthetic_set():
    clip = _clip(3, 16, 16)
    tuned = _ft(_Scale(), clip, batch_size=2, crop=16, seed=2)
    s = tuned.reblur_settings
    assert s["hybrid"] is True and s["n_supervised"] == 1
    # the identity net's L_S is the MSE between the drawn pair of the library's set (seed 2, crop 16)
    item = HybridBatches(1, [1], (16, 16), 16, 1, 1, default_supervised_set(16, 2), seed=2)[0]
    want = float(F.mse_loss(item["sup_blurred"], item["sup_sharp"]))
    assert tuned.reblur_history[0]["supervised"] == pytest.approx(want, rel=1e-5)


def test_default_supervised_set_is_frame_averaged_training_photos():
    ds = default_supervised_set(12, seed=3)
    assert len(ds) == 256
    names = [n for n in TRAIN_SAMPLES if n in sample_images()]
    assert names
    ref = SyntheticVideoDataset(names, length=256, crop=12, max_blur=16.0, seed=3, fixed=True, n_blurred=1)
    got, want = ds[7], ref[7]
    for k in ("blurred", "sharp"):
        assert got[k].shape == (3, 12, 12) and torch.equal(got[k], want[k])
    assert torch.equal(ds[7]["blurred"], got["blurred"])  # a fixed function of the index
    short = default_supervised_set(12, seed=3, length=5, max_blur=4.0)
    assert len(short) == 5
    ref4 = SyntheticVideoDataset(names, length=5, crop=12, max_blur=4.0, seed=3, fixed=True, n_blurred=1)
    assert torch.equal(short[1]["blurred"], ref4[1]["blurred"])


# ------------------------------------------------------------------------------ argument checks
@pytest.mark.parametrize("kw, exc, msg", [
    (dict(frames=4), ValueError, r"^frames must be 2 or 3, got 4$"),
    (dict(frames=True), ValueError, r"^frames must be 2 or 3, got True$"),
    (dict(frames=2.0), ValueError, r"^frames must be 2 or 3, got 2\.0$"),
    (dict(kernel="box"), ValueError, r"^kernel must be one of \('two_segment', 'lut', 'warp'\), got 'box'$"),
    (dict(flow="farneback"), ValueError, r"^method must be one of"),
    (dict(tau=0.0), ValueError, r"^tau must be a number in \(0\.0, 1\.0\], got 0\.0$"),
    (dict(tau=1.01), ValueError, r"^tau must be a number in \(0\.0, 1\.0\], got 1\.01$"),
    (dict(steps=0), ValueError, r"^steps must be an int >= 1, got 0$"),
    (dict(steps=2.0), ValueError, r"^steps must be an int >= 1, got 2\.0$"),
    (dict(steps=True), ValueError, r"^steps must be an int >= 1, got True$"),
    (dict(lr=0.0), ValueError, r"^lr must be a number in \(0\.0, inf\], got 0\.0$"),
    (dict(lr=float("nan")), ValueError, r"^lr must be a number in \(0\.0, inf\], got nan$"),
    (dict(lr=float("inf")), ValueError, r"^lr must be a number in \(0\.0, inf\], got inf$"),
    (dict(alpha=-0.1), ValueError, r"^alpha must be a number in \[0\.0, inf\], got -0\.1$"),
    (dict(alpha=True), ValueError, r"^alpha must be a number in \[0\.0, inf\], got True$"),
    (dict(alpha="0.1"), ValueError, r"^alpha must be a number in \[0\.0, inf\], got '0\.1'$"),
    (dict(flow_every=0), ValueError, r"^flow_every must be an int >= 1, got 0$"),
    (dict(crop=7), ValueError, r"^crop must be an int >= 8, got 7$"),
    (dict(batch_size=0), ValueError, r"^batch_size must be an int >= 1, got 0$"),
    (dict(supervised_share=-0.1), ValueError, r"^supervised_share must be a number in \[0\.0, 1\.0\], got -0\.1$"),
    (dict(supervised_share=1.5), ValueError, r"^supervised_share must be a number in \[0\.0, 1\.0\], got 1\.5$"),
    (dict(lr_decay=0.0), ValueError, r"^lr_decay must be a number in \(0\.0, 1\.0\], got 0\.0$"),
    (dict(lr_decay=1.5), ValueError, r"^lr_decay must be a number in \(0\.0, 1\.0\], got 1\.5$"),
    (dict(seed=-1), ValueError, r"^seed must be an int >= 0, got -1$"),
    (dict(milestones=(3, 0)), ValueError, r"^milestones must be an int >= 1, got 0$"),
    (dict(group=1), TypeError, r"^group must be a bool, got int$"),
    (dict(supervised=True), TypeError, r"^supervised must be None, False or a torch Dataset of \{'blurred', "
                                       r"'sharp'\} items, got bool$"),
    (dict(supervised=[1, 2]), TypeError, r"^supervised must be None, False or a torch Dataset .* got list$"),
    (dict(batch_size=1), ValueError, r"^the hybrid loss needs batch_size >= 2 \(one reblur crop and one "
                                     r"supervised pair\)$"),
    (dict(group=False, target=0), ValueError, r"^target must be one of the frames 1\.\.2 \(frames=3 needs its "
                                              r"neighbours\), got 0$"),
    (dict(group=False, target=3), ValueError, r"^target must be one of the frames 1\.\.2 .*got 3$"),
    (dict(group=False, target=True), ValueError, r"^target must be one of the frames .*got True$"),
    (dict(group=False, target=1.0), ValueError, r"^target must be one of the frames .*got 1\.0$"),
])
def test_bad_arguments_raise_naming_the_argument(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        finetune_reblur(_Scale(), _clip(4, 8, 8), **{"flow": _flow, "progress": False, "steps": 1,
                                                     "supervised": _Pairs(), **kw})


def test_good_boundaries_are_accepted():
    clip = _clip(3, 8, 8)
    common = dict(supervised=False, batch_size=1, crop=8)
    s = _ft(_Scale(), clip, tau=1.0, alpha=0.0, lr_decay=1.0, seed=0, milestones=(1,), **common).reblur_settings
    assert (s["tau"], s["alpha"], s["seed"], s["crop"]) == (1.0, 0.0, 0, 8)
    s = _ft(_Scale(), clip, tau=1e-6, **common).reblur_settings
    assert s["tau"] == 1e-6


def test_clip_checks():
    net = _Scale()
    with pytest.raises(TypeError, match=r"^net must be a torch\.nn\.Module, got function$"):
        finetune_reblur(lambda x: x, _clip(3))
    with pytest.raises(ValueError, match=r"^frames=3 needs at least 3 blurred frames, got 2$"):
        finetune_reblur(net, _clip(2), flow=_flow)
    s = _ft(net, _clip(2), frames=2, supervised=False, batch_size=1, crop=8).reblur_settings
    assert s["centres"] == [0, 1]


# ------------------------------------------------------------------------------------ as_clip
def test_as_clip_list_of_frames():
    a = np.random.default_rng(0).random((6, 5, 3))
    b = np.random.default_rng(1).random((6, 5, 3))
    clip = as_clip([a, b])
    assert clip.shape == (2, 3, 6, 5)
    assert torch.allclose(clip[1], torch.from_numpy(np.moveaxis(b, -1, 0)).to(clip.dtype))
    # later frames take the first frame's dtype (no promotion to the widest)
    f32, f64 = torch.rand(3, 4, 4), torch.rand(3, 4, 4, dtype=torch.float64)
    assert as_clip([f32, f64]).dtype == f32.dtype and as_clip((f64, f32)).dtype == torch.float64


def test_as_clip_errors_name_the_frame():
    f = np.zeros((6, 5, 3))
    with pytest.raises(ValueError, match=r"^blurred_frames must hold at least 2 frames \(in temporal order\), got 1$"):
        as_clip([f])
    with pytest.raises(ValueError, match=r"^clip must hold at least 2 frames \(in temporal order\), got 0$"):
        as_clip([], "clip")
    with pytest.raises(ValueError, match=r"^blurred_frames\[1\] has \(C, H, W\) = \(3, 6, 4\), but "
                                         r"blurred_frames\[0\] has \(3, 6, 5\): all frames must have the same size$"):
        as_clip([f, np.zeros((6, 4, 3))])
    with pytest.raises(ValueError, match=r"^v\[1\] must be one image, got a batch of shape \(2, 3, 4, 4\)$"):
        as_clip([torch.rand(3, 4, 4), torch.rand(2, 3, 4, 4)], "v")
    bad = f.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^blurred_frames\[1\]"):
        as_clip([f, bad])
    with pytest.raises(ValueError, match=r"^blurred_frames must hold at least 2 frames \(in temporal order\), got 1$"):
        as_clip(torch.rand(1, 3, 4, 4))
    with pytest.raises(TypeError, match=r"^blurred_frames must be a \(T, C, H, W\) array or a sequence of images "
                                        r"in temporal order, got ndarray of shape \(8, 8, 3\)$"):
        as_clip(np.zeros((8, 8, 3)))
    with pytest.raises(TypeError, match=r"^x must be a \(T, C, H, W\) array .*got int$"):
        as_clip(3, "x")
    four = torch.rand(3, 1, 4, 5)
    assert torch.equal(as_clip(four), four)


# ------------------------------------------------------------------------------------ run_net
def test_run_net_takes_the_last_full_size_output():
    x = torch.rand(1, 3, 4, 4)
    assert torch.equal(run_net(lambda v: [v[..., :2, :2], v + 1, v + 2, v[..., :2]], x), x + 2)
    assert torch.equal(run_net(lambda v: (v + 3, v[..., :2, :2]), x), x + 3)
    assert torch.equal(run_net(lambda v: v * 2, x), x * 2)
    with pytest.raises(ValueError, match=r"^the network returned 2 outputs, none of the shape "
                                         r"\(1, 3, 4, 4\)$"):
        run_net(lambda v: [v[..., :2, :2], "no"], x)
    with pytest.raises(ValueError, match=r"^the network must map \(N, C, H, W\) images to the same shape "
                                         r"\(1, 3, 4, 4\), got \(1, 3, 2, 2\)$"):
        run_net(lambda v: v[..., :2, :2], x)
    with pytest.raises(ValueError, match=r"^the network must map .* got dict$"):
        run_net(lambda v: {"out": v}, x)


# ---------------------------------------------------------------------------- small helpers
def test_int_and_real_checks():
    assert _int(3, "n", 3) == 3 and type(_int(np.int64(4), "n", 0)) is int
    for bad in (2, 2.5, True, "3", None):
        with pytest.raises(ValueError, match=r"^n must be an int >= 3, got "):
            _int(bad, "n", 3)
    assert _real(2, "x", 2.0) == 2.0 and type(_real(np.float32(2.5), "x", 0.0)) is float
    assert _real(5.0, "x", 0.0, 5.0) == 5.0
    for bad, msg in ((2.0, r"\(2\.0, 5\.0\], got 2\.0"), (5.5, r"\(2\.0, 5\.0\], got 5\.5"),
                     (float("-inf"), r"\(2\.0, 5\.0\], got -inf"), (False, r"\(2\.0, 5\.0\], got False")):
        with pytest.raises(ValueError, match=r"^x must be a number in " + msg + "$"):
            _real(bad, "x", 2.0, 5.0, low_open=True)
    with pytest.raises(ValueError, match=r"^x must be a number in \[2\.0, inf\], got 1\.9$"):
        _real(1.9, "x", 2.0)


def test_first_item_and_windows():
    assert first_item(["a", "b"]) == "a"
    x = torch.arange(2 * 1 * 5 * 6, dtype=torch.float32).reshape(2, 1, 5, 6)
    w = _windows(x, torch.tensor([1, 0, 1]), torch.tensor([0, 2, 3]), torch.tensor([4, 1, 0]), 2)
    assert w.shape == (3, 1, 2, 2)
    assert torch.equal(w[0], x[1, :, 0:2, 4:6]) and torch.equal(w[1], x[0, :, 2:4, 1:3])
    assert torch.equal(w[2], x[1, :, 3:5, 0:2])


def test_crop_pair_window_and_errors():
    h, w = 7, 9
    b = torch.arange(3 * h * w, dtype=torch.float64).reshape(3, h, w)
    item = {"blurred": b, "sharp": b + 0.5}
    got = _crop_pair(item, 4, np.random.default_rng(5), "it")
    r = np.random.default_rng(5)
    y, x = int(r.integers(0, h - 4 + 1)), int(r.integers(0, w - 4 + 1))
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.float32
    assert torch.equal(got[0], b[:, y:y + 4, x:x + 4].float()) and torch.equal(got[1], got[0] + 0.5)
    # every position, the last ones included, is drawn
    rng = np.random.default_rng(0)
    corners = {(int(p[0, 0, 0]) // w, int(p[0, 0, 0]) % w) for p, _ in
               (_crop_pair(item, 4, rng, "it") for _ in range(400))}
    assert corners == {(yy, xx) for yy in range(h - 3) for xx in range(w - 3)}
    assert _crop_pair({"blurred": np.zeros((1, 4, 4)), "sharp": np.ones((1, 4, 4))}, 4, rng, "it")[1].sum() == 16
    with pytest.raises(ValueError, match=r"^it must be a dict with 'blurred' and 'sharp' images \(C, H, W\)$"):
        _crop_pair((b, b), 4, rng, "it")
    with pytest.raises(ValueError, match=r"^it must be a dict with 'blurred' and 'sharp'"):
        _crop_pair({"blurred": b}, 4, rng, "it")
    with pytest.raises(ValueError, match=r"^it must be a dict with 'blurred' and 'sharp'"):
        _crop_pair({"sharp": b}, 4, rng, "it")
    same = (r"^it: 'blurred' and 'sharp' must be \(C, H, W\) of the same shape \(or 'blurred' a stack of frames "
            r"\(T·C, H, W\) for a multi-frame network\), got ")
    with pytest.raises(ValueError, match=same + r"\(3, 7, 9\) and \(3, 7, 8\)$"):
        _crop_pair({"blurred": b, "sharp": b[..., :8]}, 4, rng, "it")
    with pytest.raises(ValueError, match=same + r"\(7, 9\) and \(7, 9\)$"):
        _crop_pair({"blurred": b[0], "sharp": b[0]}, 4, rng, "it")
    with pytest.raises(ValueError, match=same + r"\(3, 7, 9\) and \(7, 9\)$"):
        _crop_pair({"blurred": b, "sharp": b[0]}, 4, rng, "it")
    with pytest.raises(ValueError, match=same + r"\(8, 7, 9\) and \(3, 7, 9\)$"):  # not a whole number of frames
        _crop_pair({"blurred": np.zeros((8, 7, 9)), "sharp": b}, 4, rng, "it")
    # a stack of three frames and its centre frame's sharp image: the same window of both
    stack = np.concatenate([b, b + 100, b + 200])
    got_b, got_s = _crop_pair({"blurred": stack, "sharp": b}, 4, rng, "it")
    assert got_b.shape == (9, 4, 4) and got_s.shape == (3, 4, 4)
    assert torch.equal(got_b[:3], got_s) and torch.equal(got_b[3:6], got_s + 100)
    with pytest.raises(ValueError, match=r"^it is 7×9, smaller than crop=8$"):
        _crop_pair(item, 8, rng, "it")
    with pytest.raises(ValueError, match=r"^it is 7×9, smaller than crop=10$"):
        _crop_pair(item, 10, rng, "it")
    assert _crop_pair(item, 7, rng, "it")[0].shape == (3, 7, 7)


# ------------------------------------------------------------------------------ HybridBatches
def test_hybrid_batches_are_the_seeded_draws():
    sup = _Pairs(n=6, size=(11, 13))
    data = HybridBatches(3, [4, 1, 2], (9, 12), 5, n_u=2, n_s=3, supervised=sup, pool=4, seed=7)
    assert len(data) == 3 and data.pool == 4
    item = data[2]
    rng = np.random.default_rng([7, 2])
    frames = rng.choice(np.array([4, 1, 2]), 2, replace=False)
    ys, xs = rng.integers(0, 9 - 5 + 1, 2), rng.integers(0, 12 - 5 + 1, 2)
    assert item["frames"].dtype == torch.int64 and item["frames"].tolist() == frames.tolist()
    assert item["ys"].tolist() == ys.tolist() and item["xs"].tolist() == xs.tolist()
    js = rng.integers(0, 4, 3)
    pairs = [_crop_pair(sup[int(j)], 5, rng, "s") for j in js]
    assert torch.equal(item["sup_blurred"], torch.stack([p[0] for p in pairs]))
    assert torch.equal(item["sup_sharp"], torch.stack([p[1] for p in pairs]))
    assert torch.equal(data[2]["sup_blurred"], item["sup_blurred"])  # a function of (seed, index)


def test_hybrid_batches_ranges_pool_and_cache():
    sup = _Pairs(n=6, size=(8, 8))
    data = HybridBatches(40, [0, 3], (8, 10), 6, n_u=2, n_s=2, supervised=sup, pool=2, seed=0)
    items = [data[i] for i in range(40)]
    # without replacement when there are enough centres; every window corner in range, both ends reached
    assert all(sorted(it["frames"].tolist()) == [0, 3] for it in items)
    ys = torch.cat([it["ys"] for it in items])
    xs = torch.cat([it["xs"] for it in items])
    assert set(ys.tolist()) == {0, 1, 2} and set(xs.tolist()) == {0, 1, 2, 3, 4}
    # only the pool's first 2 items, each fetched once (cached)
    vals = torch.cat([it["sup_blurred"][:, 0, 0, 0] for it in items])
    assert set(np.round(vals.numpy() * 10).astype(int).tolist()) == {0, 1}
    assert sorted(sup.calls) == [0, 1]
    more = HybridBatches(5, [2], (8, 8), 8, n_u=3, n_s=0)
    assert more[0]["frames"].tolist() == [2, 2, 2] and "sup_blurred" not in more[0] and more.pool == 0
    assert HybridBatches(1, [0], (8, 8), 8, 1, 1, _Pairs(n=3)).pool == 3
    assert HybridBatches(1, [0], (8, 8), 8, 1, 1, _Pairs(n=3), pool=9).pool == 3


def test_hybrid_batches_argument_checks():
    sup = _Pairs()
    with pytest.raises(ValueError, match=r"^length must be an int >= 1, got 0$"):
        HybridBatches(0, [1], (8, 8), 4, 1, 0)
    with pytest.raises(ValueError, match=r"^centres must not be empty$"):
        HybridBatches(1, [], (8, 8), 4, 1, 0)
    with pytest.raises(ValueError, match=r"^crop must be an int >= 1, got 0$"):
        HybridBatches(1, [1], (8, 8), 0, 1, 0)
    with pytest.raises(ValueError, match=r"^crop=9 exceeds the frame size 8×10$"):
        HybridBatches(1, [1], (8, 10), 9, 1, 0)
    with pytest.raises(ValueError, match=r"^crop=9 exceeds the frame size 10×8$"):
        HybridBatches(1, [1], (10, 8), 9, 1, 0)
    assert HybridBatches(1, [1], (8, 10), 8, 1, 0).crop == 8
    with pytest.raises(ValueError, match=r"^n_u must be an int >= 1, got 0$"):
        HybridBatches(1, [1], (8, 8), 4, 0, 0)
    with pytest.raises(ValueError, match=r"^n_s must be an int >= 0, got -1$"):
        HybridBatches(1, [1], (8, 8), 4, 1, -1)
    with pytest.raises(ValueError, match=r"^n_s > 0 needs a supervised dataset$"):
        HybridBatches(1, [1], (8, 8), 4, 1, 1)
    with pytest.raises(ValueError, match=r"^pool must be an int >= 1, got 0$"):
        HybridBatches(1, [1], (8, 8), 4, 1, 1, sup, pool=0)
    assert HybridBatches(1, [1], (8, 8), 4, 1, 0, sup, pool=1).pool == 1


# --------------------------------------------------------------------------- ReblurObjective
def test_reblur_term_on_hand_cut_windows():
    clip = _clip(4, 9, 11, seed=2)
    obj = ReblurObjective(clip, [2, 1, 2], 3, kernel="lut", tau=0.6, alpha=0.2, crop=5, flow=_flow, flow_every=1)
    assert obj.centres == [1, 2] and obj.calls == 0 and obj.refreshes == 0
    net = _Scale(0.9)
    obj.refresh(net)
    frames, ys, xs = torch.tensor([2, 1]), torch.tensor([3, 0]), torch.tensor([1, 6])
    got = obj.reblur_term(net, frames, ys, xs)
    d = (0.9 * clip).clamp(0, 1)
    fn = {t: _flow(d[t:t + 1], d[t + 1:t + 2])[0] for t in (1, 2)}
    fp = {t: _flow(d[t:t + 1], d[t - 1:t])[0] for t in (1, 2)}
    cut = [(2, 3, 1), (1, 0, 6)]
    b = torch.stack([clip[t, :, y:y + 5, x:x + 5] for t, y, x in cut])
    f_n = torch.stack([fn[t][:, y:y + 5, x:x + 5] for t, y, x in cut])
    f_p = torch.stack([fp[t][:, y:y + 5, x:x + 5] for t, y, x in cut])
    want = reblur_loss(0.9 * b, b, f_n, f_p, kernel="lut", tau=0.6)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    assert got.requires_grad  # the gradient reaches the network


def test_objective_call_refreshes_weighs_and_reports():
    clip = _clip(3, 8, 8, seed=3)
    obj = ReblurObjective(clip, [1], 2, kernel="two_segment", tau=1.0, alpha=0.4, crop=8, flow=_flow, flow_every=3)
    net = _Scale(1.0)
    batch = {"frames": torch.tensor([1]), "ys": torch.tensor([0]), "xs": torch.tensor([0])}
    loss, extra = obj(net, batch)
    l_u = _reblur_ref(clip, [1], 2)
    assert set(extra) == {"reblur"} and extra["reblur"] == pytest.approx(l_u, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(0.4 * l_u, rel=1e-5) and loss.requires_grad
    sup = {"sup_blurred": torch.full((2, 3, 8, 8), 0.2), "sup_sharp": torch.full((2, 3, 8, 8), 0.5)}
    loss, extra = obj(net, {**batch, **sup})
    assert set(extra) == {"reblur", "supervised"} and extra["supervised"] == pytest.approx(0.09, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(0.09 + 0.4 * l_u, rel=1e-5)
    assert (obj.calls, obj.refreshes) == (2, 1)
    obj(net, batch)
    assert (obj.calls, obj.refreshes) == (3, 1)
    obj(net, batch)
    assert (obj.calls, obj.refreshes) == (4, 2)


# ------------------------------------------------------- checks added after the mutation run
def test_a_too_small_supervised_item_is_named_in_the_error():
    data = HybridBatches(1, [0], (8, 8), 6, n_u=1, n_s=1, supervised=_Pairs(n=1, size=(4, 5)))
    with pytest.raises(ValueError, match=r"^supervised\[0\] is 4×5, smaller than crop=6$"):
        data[0]


def test_default_supervised_set_default_seed_and_single_blurred_frame():
    ds = default_supervised_set(12)
    assert (ds.seed, ds.fixed, ds.n_blurred, ds.length, ds.max_blur, ds.crop) == (0, True, 1, 256, 16.0, (12, 12))


def test_as_clip_array_errors_name_the_argument():
    bad = torch.rand(3, 3, 4, 4)
    bad[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"^blurred_frames contains NaN or Inf"):
        as_clip(bad)
    with pytest.raises(ValueError, match=r"^v contains NaN or Inf"):
        as_clip(bad, "v")


def test_objective_has_no_flows_before_its_first_refresh():
    clip = _clip(3, 8, 8)
    obj = ReblurObjective(clip, [0, 1], 2, kernel="two_segment", tau=1.0, alpha=0.1, crop=8, flow=_flow,
                          flow_every=1)
    assert obj.flow_next is None and obj.flow_prev is None and (obj.calls, obj.refreshes) == (0, 0)
    obj.refresh(_Scale())
    assert obj.flow_next.shape == (2, 2, 8, 8) and obj.flow_prev is None  # 2-frame: F₋ = −F₊, nothing stored


def test_default_call_uses_the_papers_settings(capsys, monkeypatch):
    # mutmut-style trampolines keep the original signature, so the defaults are checked by behaviour
    import tqdm

    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)
    big = _clip(3, 129, 129)
    tuned = finetune_reblur(_Scale(), big, supervised=False, flow=_flow, steps=1)
    s = tuned.reblur_settings
    assert (s["crop"], s["n_reblur"], s["seed"], s["frames"], s["kernel"], s["tau"]) == (128, 8, 0, 3, "two_segment", 1.0)
    assert (s["lr"], s["alpha"], s["group"], s["centres"]) == (1e-4, 0.1, True, [1])
    assert "step 1/1" not in capsys.readouterr().out  # a progress bar by default, no log lines
    # 200 steps, TV-L1 flows re-estimated every 20 steps, lr halved at epochs 30, 50 and 100
    # (one centre, one reblur crop a step: an epoch is one step)
    tuned = finetune_reblur(_Scale(), _clip(3, 8, 8), supervised=False, batch_size=1, crop=8, progress=False)
    s = tuned.reblur_settings
    assert (s["steps"], s["flow"], s["flow_every"], s["flow_refreshes"]) == (200, "tvl1", 20, 10)
    assert s["milestone_steps"] == [30, 50, 100]
    assert tuned.reblur_history[-1]["step"] == 200
    assert tuned.reblur_history[-1]["lr"] == pytest.approx(1e-4 * 0.5 ** 3, rel=1e-9)
    assert [r["lr"] for r in tuned.reblur_history if r["step"] in (30, 40, 50)] == \
        pytest.approx([1e-4, 5e-5, 5e-5], rel=1e-9)  # row s logs step s − 1 (0-based): 29 < 30 ≤ 39


def test_flow_every_default_is_twenty_steps():
    tuned = finetune_reblur(_Scale(), _clip(3, 8, 8), supervised=False, batch_size=1, crop=8, flow=_flow, steps=21,
                            progress=False)
    assert tuned.reblur_settings["flow_refreshes"] == 2  # calls 0 and 20


def test_hybrid_batches_default_seed_is_zero():
    a = HybridBatches(1, [0, 1, 2, 3], (16, 16), 4, n_u=3, n_s=0)
    b = HybridBatches(1, [0, 1, 2, 3], (16, 16), 4, n_u=3, n_s=0, seed=0)
    c = HybridBatches(1, [0, 1, 2, 3], (16, 16), 4, n_u=3, n_s=0, seed=1)
    assert a.seed == 0
    for k in ("frames", "ys", "xs"):
        assert torch.equal(a[0][k], b[0][k])
    assert any(not torch.equal(a[0][k], c[0][k]) for k in ("frames", "ys", "xs"))


def test_target_error_names_the_first_and_last_usable_frames():
    with pytest.raises(ValueError, match=r"^target must be one of the frames 1\.\.4 \(frames=3 needs its "
                                         r"neighbours\), got 5$"):
        finetune_reblur(_Scale(), _clip(6, 8, 8), group=False, target=5, flow=_flow)
    with pytest.raises(ValueError, match=r"^target must be one of the frames 0\.\.5 \(frames=2 needs its "
                                         r"neighbours\), got 6$"):
        finetune_reblur(_Scale(), _clip(6, 8, 8), frames=2, group=False, target=6, flow=_flow)


def test_a_network_without_parameters_is_refused_by_the_engine():
    with pytest.raises(ValueError, match=r"^model has no trainable parameters"):
        finetune_reblur(nn.Identity(), _clip(3, 8, 8), supervised=False, batch_size=1, crop=8, flow=_flow,
                        progress=False)


def test_seed_orders_the_engines_batches():
    # The engine draws the batch order from TrainConfig.seed (DistributedSampler: randperm seeded by
    # seed + epoch). With lr ~ 0 every step's loss is its batch's L_U under the identity network, so
    # the first log row (step 10) is the mean over the first 10 batches of that permutation.
    clip = _clip(4, 12, 12, seed=4)
    seed, steps = 5, 11
    tuned = _ft(_Scale(), clip, frames=2, supervised=False, batch_size=2, crop=8, steps=steps, lr=1e-12,
                flow_every=100, seed=seed)
    data = HybridBatches(steps, [0, 1, 2, 3], (12, 12), 8, n_u=2, n_s=0, seed=seed)
    fn = torch.cat([_flow(clip[t:t + 1], clip[t + 1:t + 2]) if t < 3 else -_flow(clip[t:t + 1], clip[t - 1:t])
                    for t in range(4)])

    def item_loss(j):
        it = data[j]
        cut = list(zip(it["frames"].tolist(), it["ys"].tolist(), it["xs"].tolist()))
        b = torch.stack([clip[t, :, y:y + 8, x:x + 8] for t, y, x in cut])
        f = torch.stack([fn[t, :, y:y + 8, x:x + 8] for t, y, x in cut])
        return float(reblur_loss(b, b, f, None))

    perm = torch.randperm(steps, generator=torch.Generator().manual_seed(seed)).tolist()
    want = float(np.mean([item_loss(j) for j in perm[:10]]))
    row = tuned.reblur_history[0]
    assert row["step"] == 10 and row["reblur"] == pytest.approx(want, rel=1e-5)
    other = torch.randperm(steps, generator=torch.Generator().manual_seed(0)).tolist()
    assert float(np.mean([item_loss(j) for j in other[:10]])) != pytest.approx(want, rel=1e-5)


# ------------------------------------------- train_flow: the flow network fine-tuned jointly
class _ScaledFlow(nn.Module):
    """``w·F(a, b)`` with F the stand-in :func:`_flow` and a scalar parameter w; records its inputs."""

    def __init__(self, w=0.5):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(w)))
        self.inputs = []

    def forward(self, a, b):
        self.inputs.append((a.detach().clone(), b.detach().clone()))
        return self.w * _flow(a, b)


def _joint_ref(net_a, flow_w, clip, cut, crop, frames, kernel="two_segment", tau=1.0):
    """L_U of ``a·x`` and ``w·F`` on hand-cut windows, every flow written out."""
    t_len = clip.shape[0]
    a = torch.tensor(net_a, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(flow_w, dtype=torch.float64, requires_grad=True)
    c64 = clip.double()

    def win(t, y, x):
        return c64[t:t + 1, :, y:y + crop, x:x + crop]

    outs, blurred, fn, fp = [], [], [], []
    for t, y, x in cut:
        b = win(t, y, x)
        d = (a * b).clamp(0, 1)
        outs.append(a * b)
        blurred.append(b)
        if frames == 3:
            fn.append(w * _flow(d, (a * win(t + 1, y, x)).clamp(0, 1)))
            fp.append(w * _flow(d, (a * win(t - 1, y, x)).clamp(0, 1)))
        elif t + 1 < t_len:
            fn.append(w * _flow(d, (a * win(t + 1, y, x)).clamp(0, 1)))
        else:
            fn.append(-w * _flow(d, (a * win(t - 1, y, x)).clamp(0, 1)))
    loss = reblur_loss(torch.cat(outs), torch.cat(blurred), torch.cat(fn), torch.cat(fp) if fp else None,
                       kernel=kernel, tau=tau)
    loss.backward()
    return float(loss.detach()), float(a.grad), float(w.grad)


@pytest.mark.parametrize("frames, cut", [(3, [(2, 3, 1), (1, 0, 6)]), (2, [(3, 2, 0), (0, 4, 5), (1, 1, 1)])])
def test_joint_reblur_term_and_its_gradients_match_a_hand_computation(frames, cut):
    clip = _clip(4, 9, 11, seed=5)
    obj = ReblurObjective(clip, [0, 1, 2, 3], frames, kernel="lut", tau=0.6, alpha=0.2, crop=5, flow=None,
                          flow_every=1, joint=True)
    model = JointNets(_Scale(1.2), _ScaledFlow(0.7))  # 1.2: the clipping to [0, 1] matters
    f, ys, xs = (torch.tensor(v) for v in zip(*cut))
    got = obj.joint_reblur_term(model, f, ys, xs)
    got.backward()
    want, da, dw = _joint_ref(1.2, 0.7, clip, cut, 5, frames, kernel="lut", tau=0.6)
    assert float(got.detach()) == pytest.approx(want, rel=1e-5)
    # the gradient reaches the deblurring net (directly and through the flows) and the flow net
    assert float(model.deblur.a.grad) == pytest.approx(da, rel=1e-4)
    assert float(model.flow.w.grad) == pytest.approx(dw, rel=1e-4)
    assert dw != 0.0
    # the flow net saw the deblurred crops, clipped to [0, 1], and the same windows of their
    # neighbours: the next frame (the previous one for a 2-frame clip's last frame), then for
    # 3 frames the previous frame
    calls = model.flow.inputs
    assert len(calls) == (2 if frames == 3 else 1)
    for i, (t, y, x) in enumerate(cut):
        nb = t + 1 if (frames == 3 or t + 1 < clip.shape[0]) else t - 1
        torch.testing.assert_close(calls[0][0][i], (1.2 * clip[t, :, y:y + 5, x:x + 5]).clamp(0, 1))
        torch.testing.assert_close(calls[0][1][i], (1.2 * clip[nb, :, y:y + 5, x:x + 5]).clamp(0, 1))
        if frames == 3:
            torch.testing.assert_close(calls[1][1][i], (1.2 * clip[t - 1, :, y:y + 5, x:x + 5]).clamp(0, 1))
    assert obj.refreshes == 0 and obj.flow_next is None  # no whole-frame flows in joint mode


def test_train_flow_fine_tunes_a_copy_of_both_networks():
    clip = _clip(4, 10, 10, seed=6)
    fnet = _ScaledFlow(0.5)
    net = _Scale(1.0)
    tuned = _ft(net, clip, frames=3, supervised=False, batch_size=2, crop=8, steps=3, lr=0.05, flow=fnet,
                train_flow=True, device="cpu")
    assert isinstance(tuned, _Scale) and not tuned.training
    tf = tuned.reblur_flow_net
    assert isinstance(tf, _ScaledFlow) and tf is not fnet and not tf.training
    assert float(tf.w.detach()) != 0.5 and float(tuned.a.detach()) != 1.0  # both learned
    assert float(fnet.w.detach()) == 0.5 and float(net.a.detach()) == 1.0  # the caller's are untouched
    assert fnet.inputs == [] and fnet.training  # the caller's flow net was never run nor switched to eval
    assert tuned.reblur_settings["train_flow"] is True and tuned.reblur_settings["flow_refreshes"] == 0
    assert not hasattr(_ft(_Scale(), clip, supervised=False, batch_size=1, crop=8), "reblur_flow_net")


def test_train_flow_learns_from_the_reblur_term_alone():
    """With α = 0 the flow network gets no gradient and stays as it was (Adam moves nothing)."""
    clip = _clip(4, 10, 10, seed=7)
    pairs = _Pairs(size=(10, 10))
    tuned = _ft(_Scale(1.0), clip, supervised=pairs, alpha=0.0, batch_size=2, crop=8, steps=2, lr=0.05,
                flow=_ScaledFlow(0.5), train_flow=True)
    assert float(tuned.reblur_flow_net.w.detach()) == 0.5
    assert float(tuned.a.detach()) != 1.0  # the supervised term still trains the deblurring net
    tuned = _ft(_Scale(1.0), clip, supervised=pairs, alpha=0.1, batch_size=2, crop=8, steps=2, lr=0.05,
                flow=_ScaledFlow(0.5), train_flow=True)
    assert float(tuned.reblur_flow_net.w.detach()) != 0.5


def test_joint_first_step_loss_is_the_hand_computed_value():
    clip = _clip(3, 8, 8, seed=8)  # 3 frames, crop = frame: the one reblur crop is frame 1
    tuned = _ft(_Scale(1.0), clip, frames=3, supervised=False, batch_size=1, crop=8, alpha=0.5,
                flow=_ScaledFlow(0.7), train_flow=True)
    want, _, _ = _joint_ref(1.0, 0.7, clip, [(1, 0, 0)], 8, 3)
    assert tuned.reblur_history[0]["reblur"] == pytest.approx(want, rel=1e-5)
    assert tuned.reblur_history[0]["loss"] == pytest.approx(0.5 * want, rel=1e-5)


@pytest.mark.parametrize("flow, msg", [("tvl1", "got 'tvl1'"), (_flow, "got function"),
                                       (nn.Identity(), "got Identity")])
def test_train_flow_needs_a_trainable_flow_network(flow, msg):
    with pytest.raises(ValueError, match=r"train_flow=True needs flow to be a torch.nn.Module with trainable "
                                         r"parameters \(e.g. pnpdeblur.nets.FlowNetS\), " + msg):
        _ft(_Scale(), _clip(3), flow=flow, train_flow=True)
    frozen = _ScaledFlow().requires_grad_(False)
    with pytest.raises(ValueError, match="got _ScaledFlow"):
        _ft(_Scale(), _clip(3), flow=frozen, train_flow=True)
    with pytest.raises(TypeError, match="train_flow must be a bool, got int"):
        _ft(_Scale(), _clip(3), train_flow=1)
