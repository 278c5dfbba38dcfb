"""Direct tests of pd.deblur's wiring (pnpdeblur.pipeline) with stand-ins: a flow network that
reports a known flow and a recording HQS, so each test checks exactly what reached the solver,
what came back to the caller, the safeguard's decisions and the history; plus
estimate_noise_level against closed forms."""
import re
import types
import warnings

import numpy as np
import pytest
import torch

import pnpdeblur.solvers
from _fakes import RecordingHQS
from _flow_standins import StandInSEN
from pnpdeblur import pipeline
from pnpdeblur.estimation import learned
from pnpdeblur.metrics import psnr
from pnpdeblur.operators import MotionBlur
from pnpdeblur.pipeline import estimate_noise_level


def deblur(*args, **kwargs):
    """pd.deblur with one SEN pass per flow estimate: the stand-in networks' flows do not turn with
    the image (the ensemble and its default: test_flow_ensemble.py); and on the photo's own grid
    (``boundary="replicate"``), so that these tests see the photo itself reach HQS (the default
    unknown boundary pads it: test_boundary.py)."""
    kwargs.setdefault("flow_ensemble", False)
    kwargs.setdefault("boundary", "replicate")
    return pipeline.deblur(*args, **kwargs)


@pytest.fixture
def fake_hqs(monkeypatch):
    rec = RecordingHQS()
    monkeypatch.setattr(pnpdeblur.solvers, "hqs", rec)
    return rec


def PRIOR(z, sigma):  # never called: the recording HQS only passes it on (callable: deblur checks that)
    raise AssertionError("the recording HQS does not call the prior")


def _photo(h=16, w=24, c=3, seed=0):
    return np.random.default_rng(seed).random((h, w, c)).astype(np.float32)


def _lengths_net(*lengths):
    """Stand-in whose k-th call (one image each) reports the horizontal flow ``lengths[k]``."""
    it = iter(lengths)

    def fn(x):
        f = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        f[:, 0] = next(it)
        return f

    return StandInSEN(fn=fn)


# -- what reaches HQS ------------------------------------------------------------------------------

def test_hqs_gets_the_image_the_flow_operator_the_prior_and_the_settings(fake_hqs):
    y = _photo()
    m = StandInSEN((3.0, 4.0))  # length 5, above the default threshold (4.5): blurred
    res = deblur(y, prior=PRIOR, noise_level=0.02, flow_model=m, noise_floor=0.01, n_iter=5, cg_iters=7,
                 cg_tol=1e-3)
    (call,) = fake_hqs.calls
    assert torch.equal(call["y"], torch.from_numpy(y.transpose(2, 0, 1))[None])
    assert isinstance(call["K"], MotionBlur)
    assert torch.allclose(torch.as_tensor(call["K"].flow), torch.tensor([3.0, 4.0]).view(1, 2, 1, 1).expand(1, 2, 16, 24))
    assert call["prior"] is PRIOR
    assert call["noise_level"] == 0.02 and call["n_iter"] == 5 and call["cg_iters"] == 7 and call["cg_tol"] == 1e-3
    assert call["progress"] is False
    assert res.x.dtype == np.float32 and res.x.shape == y.shape
    np.testing.assert_allclose(res.x, 0.5 * y + 0.1, atol=1e-6)
    assert res.noise_level == [0.02] and res.unchanged == [False]
    assert res.history[0]["hqs"] == [{"call": 1}]  # one image: its HQS history, not a list of one


def test_the_noise_floor_is_a_lower_bound_on_the_noise_level(fake_hqs):
    y = _photo()
    deblur(y, prior=PRIOR, noise_level=0.02, flow_model=StandInSEN((6.0, 0.0)), noise_floor=0.05)
    deblur(y, prior=PRIOR, noise_level=0.02, flow_model=StandInSEN((6.0, 0.0)), noise_floor=0.0)
    deblur(y, prior=PRIOR, noise_level=0.02, flow_model=StandInSEN((6.0, 0.0)))  # one SEN pass: floor 0.03
    # with the flow ensemble (pd.deblur's default) the default floor is 0.02
    pipeline.deblur(y, prior=PRIOR, noise_level=0.01, flow_model=StandInSEN((6.0, 0.0)), safeguard=False)
    pipeline.deblur(y, prior=PRIOR, noise_level=0.03, flow_model=StandInSEN((6.0, 0.0)), safeguard=False)
    assert [c["noise_level"] for c in fake_hqs.calls] == [0.05, 0.02, 0.03, 0.02, 0.03]
    assert (pipeline.DEFAULT_NOISE_FLOOR, pipeline.SINGLE_PASS_NOISE_FLOOR) == (0.02, 0.03)


def test_defaults_sent_to_hqs(fake_hqs):
    deblur(_photo(), prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((6.0, 0.0)))
    c = fake_hqs.calls[0]
    assert (c["n_iter"], c["cg_iters"], c["cg_tol"]) == (4, 5, 1e-4)
    assert (c["lam"], c["sigma_start"]) == (0.23, 49 / 255)


class CallableNamespace(types.SimpleNamespace):
    """A stand-in prior with attributes: callable, as deblur checks a prior is."""

    def __call__(self, z, sigma):
        return z


def test_dpirs_schedule_whatever_the_priors_own(fake_hqs):
    """The noise floors were tuned with DPIR's schedule: a prior's own does not change the blind solve."""
    prior = CallableNamespace(hqs_lam=0.5, hqs_sigma_start=0.6)
    deblur(_photo(), prior=prior, noise_level=0.1, flow_model=StandInSEN((6.0, 0.0)))
    c = fake_hqs.calls[0]
    assert c["prior"] is prior and (c["lam"], c["sigma_start"]) == (0.23, 49 / 255)


class ScheduledPrior:
    """A prior with its own β schedule (as RPGANPrior has): records the noise levels asked for."""

    def __init__(self, betas=(1e-3, 2e-2, 0.3)):
        self.betas, self.asked = list(betas), []

    def schedule(self, noise_level):
        self.asked.append(noise_level)
        return [b * (1 + noise_level) for b in self.betas]  # depends on σ, so the test sees which σ

    def __call__(self, z, sigma):  # a prior is callable (deblur checks); the recording HQS does not call it
        return z


def test_a_prior_with_its_own_schedule_gets_exactly_that_schedule(fake_hqs):
    """No DPIR keywords beside it (they would override or clash with the β the prior was trained on);
    the schedule is asked for at the noise level after the floor."""
    prior = ScheduledPrior()
    deblur(_photo(), prior=prior, noise_level=0.01, flow_model=StandInSEN((6.0, 0.0)), noise_floor=0.04, n_iter=7)
    deblur(_photo(), prior=prior, noise_level=0.05, flow_model=StandInSEN((6.0, 0.0)), noise_floor=0.04)
    assert prior.asked == [0.04, 0.05]
    for c, s in zip(fake_hqs.calls, (0.04, 0.05)):
        assert c["betas"] == pytest.approx([b * (1 + s) for b in prior.betas])
        assert not {"noise_level", "n_iter", "lam", "sigma_start"} & set(c)
        assert c["prior"] is prior and c["cg_iters"] == 5


def test_schedule_for_dpir_and_own():
    assert pipeline.schedule_for(PRIOR, 0.03, 6) == {"noise_level": 0.03, "lam": 0.23, "sigma_start": 49 / 255,
                                                      "n_iter": 6}
    assert pipeline.schedule_for(types.SimpleNamespace(schedule=None), 0.03, None)["n_iter"] is None
    assert pipeline.schedule_for(ScheduledPrior((1.0, 2.0)), 0.5, 6) == {"betas": [1.5, 3.0]}


def test_rpgan_prior_runs_its_levels_inside_deblur():
    """End to end with the real HQS: an RP-GAN prior of L levels makes L z-steps per global iteration
    (not pd.deblur's n_iter), at the β of its schedule for the floored noise level."""
    from pnpdeblur.nets.rpgan import RPGANGenerator
    from pnpdeblur.priors.rpgan import RPGANPrior, rpgan_schedule

    torch.manual_seed(0)
    prior = RPGANPrior(RPGANGenerator(3, width=4, n_res=1), levels=2)
    res = deblur(_photo(16, 20), prior=prior, noise_level=0.01, flow_model=StandInSEN((5.0, 2.0)), noise_floor=0.03,
                 n_iter=6, cg_iters=2, iterations=2, safeguard=False)
    assert res.history[0]["noise_level"] == [0.01]
    for entry in res.history:  # the second global iteration re-estimates the noise on the first's result
        level = max(entry["noise_level"][0], 0.03)
        assert [h["beta"] for h in entry["hqs"]] == pytest.approx(rpgan_schedule(level, 2))
    assert prior.levels_run == [1, 2]  # the second global iteration is a new observation: levels restart


def test_default_prior_and_flow_model(fake_hqs, monkeypatch):
    sentinel, m = object(), StandInSEN((6.0, 0.0))
    monkeypatch.setattr(pipeline, "default_prior", lambda: sentinel)
    monkeypatch.setattr(learned, "default_flow_model", lambda: m)
    deblur(_photo(), noise_level=0.1)
    assert fake_hqs.calls[0]["prior"] is sentinel and len(m.calls) == 1


def test_default_prior_is_the_shipped_dncnn_without_flips():
    from pnpdeblur.priors import DnCNNPrior

    p = pipeline.default_prior()
    assert isinstance(p, DnCNNPrior) and p.ensemble is False


def test_flow_scale_and_device_reach_estimate_flow(fake_hqs):
    m = StandInSEN((3.0, 0.0))
    res = deblur(_photo(16, 24), prior=PRIOR, noise_level=0.1, flow_model=m, flow_scale=0.5, device="cpu")
    assert m.calls[0][0] == (1, 3, 8, 12)
    np.testing.assert_allclose(res.flow[0][0], 6.0, rtol=1e-5)  # 3 px on the half-size image
    assert torch.allclose(torch.as_tensor(fake_hqs.calls[0]["K"].flow)[0, 0], torch.tensor(6.0))


# -- what comes back ------------------------------------------------------------------------------

def test_output_is_clipped_and_uint8_comes_back_as_uint8(monkeypatch):
    rec = RecordingHQS(out=lambda y: 3 * y - 1)
    monkeypatch.setattr(pnpdeblur.solvers, "hqs", rec)
    u8 = np.arange(16 * 24, dtype=np.int64).reshape(16, 24) % 256
    u8 = u8.astype(np.uint8)
    res = deblur(u8, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((6.0, 0.0)))
    want = np.round(np.clip(3 * (u8 / 255.0) - 1, 0, 1) * 255).astype(np.uint8)
    assert res.x.dtype == np.uint8 and res.x.shape == (16, 24)
    assert np.abs(res.x.astype(int) - want.astype(int)).max() <= 1 and (res.x == 0).any() and (res.x == 255).any()
    # the grey image went to HQS as one channel
    assert rec.calls[0]["y"].shape == (1, 1, 16, 24)
    assert res.flow[0].dtype == np.float32 and res.flow[0].shape == (2, 16, 24)


def test_float16_comes_back_as_float32_in_the_callers_type_and_layout(fake_hqs):
    img = _photo().astype(np.float16)  # (H, W, C)
    res = deblur(img, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((6.0, 0.0)))
    assert isinstance(res.x, np.ndarray) and res.x.dtype == np.float32 and res.x.shape == img.shape
    t = torch.from_numpy(img.transpose(2, 0, 1).copy())  # (C, H, W)
    res = deblur(t, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((6.0, 0.0)))
    assert isinstance(res.x, torch.Tensor) and res.x.dtype == torch.float32 and res.x.shape == t.shape
    assert np.array_equal(res.x.permute(1, 2, 0).numpy(), deblur(img, prior=PRIOR, noise_level=0.1,
                                                                  flow_model=StandInSEN((6.0, 0.0))).x)


def test_torch_batches_come_back_as_torch(fake_hqs):
    x = torch.from_numpy(np.stack([_photo(seed=1), _photo(seed=2)]).transpose(0, 3, 1, 2).copy()).double()
    res = deblur(x, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((6.0, 0.0)))
    assert isinstance(res.x, torch.Tensor) and res.x.dtype == torch.float64 and res.x.shape == x.shape
    assert torch.allclose(res.x, 0.5 * x + 0.1)
    assert len(fake_hqs.calls) == 2 and all(c["y"].shape == (1, 3, 16, 24) for c in fake_hqs.calls)
    assert torch.equal(fake_hqs.calls[1]["y"], x[1:])
    assert res.history[0]["hqs"] == [[{"call": 1}], [{"call": 2}]]
    assert isinstance(res.flow[0], torch.Tensor) and res.flow[0].shape == (2, 2, 16, 24)


# -- global iterations, history -----------------------------------------------------------------------

def test_global_iterations_feed_the_result_back_and_reestimate_the_noise(fake_hqs):
    rng = np.random.default_rng(0)
    y = np.clip(0.5 + 0.05 * rng.standard_normal((32, 32, 3)), 0, 1).astype(np.float32)
    m = StandInSEN((6.0, 0.0))
    res = deblur(y, iterations=3, prior=PRIOR, flow_model=m, noise_floor=0.0)
    assert len(fake_hqs.calls) == 3 and len(res.history) == 3 and len(res.flow) == 3 and len(m.calls) == 3
    xs = [torch.from_numpy(y.transpose(2, 0, 1))[None]]
    for _ in range(2):
        xs.append((0.5 * xs[-1] + 0.1).clamp(0, 1))
    for k in range(3):
        # the k-th flow was estimated on the k-th image, which HQS then got
        assert torch.allclose(m.inputs[k], xs[k], atol=1e-6)
        assert torch.allclose(fake_hqs.calls[k]["y"], xs[k], atol=1e-6)
        level = estimate_noise_level(xs[k])
        assert fake_hqs.calls[k]["noise_level"] == pytest.approx(level[0], rel=1e-5)
        assert res.history[k]["noise_level"] == pytest.approx(level, rel=1e-5)
        assert res.history[k]["iteration"] == k
    assert res.noise_level == pytest.approx(estimate_noise_level(xs[0]), rel=1e-5)  # the first one
    assert res.noise_level[0] == pytest.approx(0.05, rel=0.15)
    np.testing.assert_allclose(res.x, (0.5 * xs[2] + 0.1)[0].numpy().transpose(1, 2, 0), atol=1e-6)


def test_history_entries(fake_hqs):
    def ramp(x):  # u = column index: lengths 0 .. 23, mean 11.5, median 11 (lower middle)
        f = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        f[:, 0] = torch.arange(x.shape[-1], dtype=torch.float32)
        return f

    y, ref = _photo(seed=1), _photo(seed=2)
    res = deblur(y, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN(fn=ramp), reference=ref)
    (e,) = res.history
    assert set(e) == {"iteration", "noise_level", "mean_flow_length", "clipped_fraction", "hqs", "safeguard", "time",
                      "psnr"}
    assert e["mean_flow_length"] == pytest.approx([11.5])
    assert e["noise_level"] == [0.1] and e["iteration"] == 0
    assert isinstance(e["time"], float) and 0 <= e["time"] < 60
    assert e["psnr"] == pytest.approx(psnr(np.clip(0.5 * y + 0.1, 0, 1), ref, channel_axis=-1), abs=1e-4)
    g = e["safeguard"]
    assert g == {"measured": "median SEN flow length (px)", "blur_score": pytest.approx([11.0]), "threshold": 4.5,
                 "blurred": [True], "processed": [True]}
    # without a reference there is no psnr; with the safeguard off its entry is None
    res2 = deblur(y, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN(fn=ramp), safeguard=False)
    assert "psnr" not in res2.history[0] and res2.history[0]["safeguard"] is None


def test_callback_sees_each_entry_and_can_stop(fake_hqs):
    seen = []

    def cb(entry, x):
        seen.append((entry, x.clone()))
        return None  # not True: go on

    res = deblur(_photo(), iterations=3, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((6.0, 0.0)),
                 callback=cb)
    assert len(seen) == 3 and [s[0] for s in seen] == res.history
    assert torch.allclose(seen[0][1], (0.5 * torch.from_numpy(_photo().transpose(2, 0, 1))[None] + 0.1))
    stop = deblur(_photo(), iterations=3, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((6.0, 0.0)),
                  callback=lambda e, x: e["iteration"] == 1)
    assert len(stop.history) == 2


def test_progress_bar_reports_the_flow_length(fake_hqs, capsys, monkeypatch):
    import tqdm.std

    # no monitor thread: one started before a fork (mutmut's per-mutant processes) deadlocks tqdm's lock
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)
    deblur(_photo(), iterations=2, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((6.0, 8.0)), progress=True)
    err = capsys.readouterr().err
    assert "deblur" in err and "flow=10.0px" in err and "2/2" in err


# -- the safeguard ---------------------------------------------------------------------------------

def test_safeguard_decides_per_image_and_never_revisits_a_sharp_one(fake_hqs):
    x = torch.from_numpy(np.stack([_photo(seed=1), _photo(seed=2)]).transpose(0, 3, 1, 2).copy())
    # iteration 0: image 0 blurred (8 px), image 1 sharp (2 px); iteration 1: both report 8 px
    m = _lengths_net(8.0, 2.0, 8.0, 8.0)
    with pytest.warns(UserWarning) as w:
        warnings.filterwarnings("ignore", message="estimate_flow sees")  # small test image
        res = deblur(x, iterations=2, prior=PRIOR, noise_level=0.1, flow_model=m)
    msg = ("pd.deblur returned image(s) [1] unchanged: SEN's median flow length (2.00 px) is below "
           "blur_threshold=4.5 px, so the photo looks sharp or only mildly blurred and deblurring with the estimated "
           "flow would likely make it worse; pass safeguard=False to deblur anyway")
    assert [str(r.message) for r in w] == [msg]
    assert [e["safeguard"]["processed"] for e in res.history] == [[True, False], [True, False]]
    assert [e["safeguard"]["blurred"] for e in res.history] == [[True, False], [True, True]]
    # HQS ran on image 0 only: first the input, then its own first result
    assert len(fake_hqs.calls) == 2 and torch.equal(fake_hqs.calls[0]["y"], x[:1])
    assert torch.allclose(fake_hqs.calls[1]["y"], 0.5 * x[:1] + 0.1)
    assert res.unchanged == [False, True]
    assert torch.equal(res.x[1], x[1])
    assert torch.allclose(res.x[0], 0.25 * x[0] + 0.15)  # deblurred twice
    assert res.history[0]["hqs"] == [[{"call": 1}], None]


def test_safeguard_stops_when_every_image_looks_sharp(fake_hqs):
    res = deblur(_photo(), iterations=4, prior=PRIOR, noise_level=0.1, flow_model=_lengths_net(9.0, 1.0, 9.0, 9.0))
    assert len(res.history) == 2 and len(fake_hqs.calls) == 1 and res.unchanged == [False]
    # off: every iteration deblurs, whatever the flow's length
    off = deblur(_photo(), iterations=3, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((1.0, 0.0)),
                 safeguard=False)
    assert len(off.history) == 3 and len(fake_hqs.calls) == 4 and off.unchanged == [False]


def test_safeguard_threshold_is_inclusive_and_configurable(fake_hqs):
    y = _photo()
    assert deblur(y, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((7.0, 0.0)),
                  blur_threshold=7.0).unchanged == [False]
    with pytest.warns(UserWarning, match=r"\(7\.00 px\) is below blur_threshold=7\.5 px"):
        assert deblur(y, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((7.0, 0.0)),
                      blur_threshold=7.5).unchanged == [True]
    assert deblur(y, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((7.0, 0.0)),
                  blur_threshold=2).history[0]["safeguard"]["threshold"] == 2.0


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_an_image_left_unchanged_is_a_copy_of_the_callers_array(fake_hqs, kind):
    y = np.round(_photo() * 255).astype(np.uint8)
    if kind == "torch":
        y = torch.from_numpy(y.transpose(2, 0, 1).copy())
    with pytest.warns(UserWarning, match=r"image\(s\) \[0\] unchanged"):
        res = deblur(y, iterations=2, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((2.0, 0.0)))
    assert type(res.x) is type(y) and res.x is not y and res.x.dtype == y.dtype
    assert (res.x == y).all() and res.unchanged == [True] and fake_hqs.calls == []
    res.x[0, 0, 0] = 7 if res.x[0, 0, 0] != 7 else 8
    assert not (res.x == y).all()  # a copy, not a view


# -- argument checks ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -1, 1.0, True, "2"])
def test_rejects_bad_iterations(bad):
    with pytest.raises(ValueError, match=r"^iterations must be a positive int, got " + re.escape(repr(bad)) + "$"):
        deblur(_photo(), iterations=bad, flow_model=StandInSEN(), prior=PRIOR)


def test_rejects_bad_safeguard_and_thresholds(fake_hqs):
    with pytest.raises(TypeError, match=r"^safeguard must be True or False, got 'yes'$"):
        deblur(_photo(), safeguard="yes", flow_model=StandInSEN(), prior=PRIOR)
    with pytest.raises(TypeError, match=r"^safeguard must be True or False, got 1$"):
        deblur(_photo(), safeguard=1, flow_model=StandInSEN(), prior=PRIOR)
    deblur(_photo(), safeguard=np.bool_(True), noise_level=0.1, flow_model=StandInSEN(), prior=PRIOR)
    for name in ("blur_threshold", "noise_floor", "noise_level"):
        with pytest.raises(ValueError, match=name):
            deblur(_photo(), **{name: -1.0}, flow_model=StandInSEN(), prior=PRIOR)
    with pytest.raises(ValueError, match=r"^reference has shape \(1, 3, 8, 24\) \(as N, C, H, W\), "
                                         r"image \(1, 3, 16, 24\)$"):
        deblur(_photo(), reference=_photo()[:8], flow_model=StandInSEN(), prior=PRIOR)
    with pytest.raises(ValueError, match="reference"):
        deblur(_photo(), reference=np.full((16, 24, 3), np.nan, np.float32), flow_model=StandInSEN(), prior=PRIOR)


# -- estimate_noise_level -----------------------------------------------------------------------------

def test_noise_level_is_the_median_of_the_diagonal_haar_band_over_0_6745():
    # 2×2 blocks [[t, 0], [0, 0]] have the diagonal detail (t − 0 − 0 + 0)/2 = t/2
    t = np.array([[1.0, -3.0, 5.0], [0.2, 7.0, -0.4]])  # |t|/2 = .5 1.5 2.5 .1 3.5 .2: torch's (lower) median .5
    x = np.zeros((1, 2, 5, 7))  # odd H and W: the last row and column are left out
    x[0, 0, 0:4:2, 0:6:2] = t
    x[0, 1, 0:4:2, 0:6:2] = 2 * t  # channel 1: twice the noise
    x[0, :, 4, :] = 100.0
    x[0, :, :, 6] = -100.0
    mad = 0.6744897501960817
    est = estimate_noise_level(torch.from_numpy(x))
    assert isinstance(est, list) and est == pytest.approx([(0.5 + 1.0) / 2 / mad], rel=1e-12)
    # the other corners of the block enter with their signs: [[0, -t], [-t, t]] / 3 → |t|/2
    y = np.zeros((1, 1, 4, 6))
    y[0, 0, 0:4:2, 1:6:2] = -t / 3
    y[0, 0, 1:4:2, 0:6:2] = -t / 3
    y[0, 0, 1:4:2, 1:6:2] = t / 3
    assert estimate_noise_level(torch.from_numpy(y)) == pytest.approx([0.5 / mad], rel=1e-12)
    # per image of a batch; a smooth ramp has no diagonal detail at all
    ramp = np.add.outer(np.arange(4.0), np.arange(6.0))[None, None] * 0.1
    assert estimate_noise_level(torch.from_numpy(np.concatenate([y, ramp]))) == pytest.approx([0.5 / mad, 0.0],
                                                                                                abs=1e-12)


def test_noise_level_on_pure_gaussian_noise():
    rng = np.random.default_rng(5)
    x = 0.03 * rng.standard_normal((2, 1, 64, 64))
    est = estimate_noise_level(torch.from_numpy(x).float())
    assert est == pytest.approx([0.03, 0.03], rel=0.1)
    x2 = x.copy()
    x2[1] *= 3
    assert estimate_noise_level(torch.from_numpy(x2)) == pytest.approx([est[0], 3 * est[1]], rel=1e-5)


def test_noise_level_needs_two_by_two():
    assert estimate_noise_level(torch.ones(1, 1, 2, 2)) == [0.0]
    for shape in ((1, 1, 1, 5), (1, 1, 5, 1)):
        with pytest.raises(ValueError, match=r"^image must be at least 2×2 to estimate its noise, got "):
            estimate_noise_level(torch.zeros(shape))


def test_noise_level_takes_every_image_layout_deblur_takes():
    rng = np.random.default_rng(8)
    hwc = np.clip(0.5 + 0.03 * rng.standard_normal((20, 26, 3)), 0, 1)
    want = estimate_noise_level(torch.from_numpy(hwc).permute(2, 0, 1)[None])
    assert want[0] == pytest.approx(0.03, rel=0.25)
    assert estimate_noise_level(hwc) == want  # numpy (H, W, C)
    assert estimate_noise_level(torch.from_numpy(hwc).permute(2, 0, 1)) == want  # torch (C, H, W)
    grey = hwc[..., 1]
    assert estimate_noise_level(grey) == estimate_noise_level(torch.from_numpy(grey)[None, None])
    assert estimate_noise_level(torch.from_numpy(grey)) == estimate_noise_level(grey)
    # uint8 is read on the [0, 1] scale, as deblur reads it
    u8 = np.round(hwc * 255).astype(np.uint8)
    assert estimate_noise_level(u8) == pytest.approx(estimate_noise_level(u8 / 255.0), rel=1e-12)
    assert estimate_noise_level(u8)[0] == pytest.approx(want[0], rel=0.05)
    # values beyond [0, 1] are read as they are, not clipped (pure noise about 0)
    noise = 0.02 * rng.standard_normal((32, 32))
    assert estimate_noise_level(noise) == estimate_noise_level(torch.from_numpy(noise)[None, None])
    assert estimate_noise_level(noise) != estimate_noise_level(np.clip(noise, 0, 1))


@pytest.mark.parametrize("bad, exc, pattern", [
    (np.full((8, 8), np.nan), ValueError, r"^x contains NaN or Inf values$"),
    (torch.full((1, 3, 8, 8), float("inf")), ValueError, r"^x contains NaN or Inf values$"),
    (np.zeros((8, 8), np.int32), TypeError, r"^x must be uint8 or float, got dtype int32$"),
    (np.zeros((2, 2, 2, 2, 2)), ValueError, r"^x must have shape \(N, C, H, W\), \(H, W\) or a 3-D image, "
                                            r"got shape \(2, 2, 2, 2, 2\)$"),
    (np.zeros(8), ValueError, r"^x must have shape \(N, C, H, W\), \(H, W\) or a 3-D image, got shape \(8,\)$"),
    ([[0.1, 0.2], [0.3, 0.4]], TypeError, r"^x must be an array"),
    (np.array([["a", "b"], ["c", "d"]]), TypeError, r"^x must be a numeric array, got numpy dtype <U1$"),
])
def test_noise_level_refuses_what_is_not_an_image(bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        estimate_noise_level(bad)


def test_a_device_that_is_not_there_fails_before_any_work(fake_hqs, monkeypatch):
    import pnpdeblur as pd

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    m = StandInSEN()
    for run in (lambda d: deblur(_photo(), flow_model=m, prior=PRIOR, device=d),
                lambda d: pd.estimate_flow(_photo(), m, device=d),
                lambda d: pd.deblur_shake(_photo(32, 32), prior=PRIOR, device=d),
                lambda d: pd.deblur_auto(_photo(32, 32), flow_model=m, prior=PRIOR, device=d)):
        with pytest.raises(ValueError, match=r"^device='cuda': CUDA is not available to this torch"):
            run("cuda")
        with pytest.raises(ValueError, match=r"^device='gpu' is not a torch device"):
            run("gpu")
        with pytest.raises(TypeError, match=r"^device must be a str such as 'cpu' or 'cuda', a torch\.device or None"):
            run(0)
    assert m.calls == [] and fake_hqs.calls == []
    with pytest.raises(ValueError, match=r"^device='cuda': CUDA is not available"):
        pd.priors.DnCNNPrior(device="cuda")


def test_deblur_checks_progress_callback_and_flow_scale_by_name(fake_hqs):
    m = StandInSEN()
    for kwargs, exc, pattern in ((dict(progress="yes"), TypeError, r"^progress must be True or False, got 'yes'$"),
                                 (dict(callback=5), TypeError,
                                  r"^callback must be callable as callback\(entry, x\) or None, got int$"),
                                 (dict(flow_scale=0), ValueError, r"^flow_scale must be a number in \(0, 1\], got 0$"),
                                 (dict(flow_scale=1.5), ValueError, r"^flow_scale must be a number in \(0, 1\], got 1\.5$"),
                                 (dict(flow_scale=float("nan")), ValueError, r"^flow_scale must be a number in \(0, 1\]"),
                                 (dict(flow_scale=True), ValueError, r"^flow_scale must be a number in \(0, 1\], got True$")):
        with pytest.raises(exc, match=pattern):
            deblur(_photo(), flow_model=m, prior=PRIOR, **kwargs)
    assert m.calls == [] and fake_hqs.calls == []
    deblur(_photo(), flow_model=m, prior=PRIOR, noise_level=0.1, progress=np.bool_(False), flow_scale=1)
    assert len(m.calls) > 0


def test_messages_name_each_argument(fake_hqs):
    m = StandInSEN()
    for name in ("blur_threshold", "noise_floor", "noise_level"):
        with pytest.raises(ValueError, match=rf"^{name} must be"):
            deblur(_photo(), **{name: float("nan")}, flow_model=m, prior=PRIOR)
    with pytest.raises(ValueError, match=r"^image contains NaN or Inf values$"):
        deblur(np.full((16, 24, 3), np.inf, np.float32), flow_model=m, prior=PRIOR)
    with pytest.raises(ValueError, match=r"^reference contains NaN or Inf values$"):
        deblur(_photo(), reference=np.full((16, 24, 3), np.nan, np.float32), flow_model=m, prior=PRIOR)
    with pytest.raises(ValueError, match=re.escape("image must be at least 2×2 to estimate its noise, got (1, 5)")
                       + "$"):
        estimate_noise_level(torch.zeros(2, 3, 1, 5))


def test_no_progress_bar_unless_asked(fake_hqs, capsys):
    deblur(_photo(), iterations=2, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((6.0, 8.0)))
    assert capsys.readouterr().err == ""


def test_noise_level_is_computed_in_float64():
    # float32 input: the estimate is the float64 closed form, not float32 arithmetic (~3e-8 off)
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float32)
    x[0, 0, 0::2, 0::2] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # |HH| = .5 1 1.5 2: lower median 1
    assert estimate_noise_level(x) == pytest.approx([1.0 / 0.6744897501960817], rel=1e-13)


def test_a_batch_gets_one_operator_per_image_even_after_a_sharp_one(fake_hqs):
    x = torch.from_numpy(np.stack([_photo(seed=1), _photo(seed=2), _photo(seed=3)]).transpose(0, 3, 1, 2).copy())
    # image 0 looks sharp (2 px), images 1 and 2 are blurred (8 and 11 px)
    with pytest.warns(UserWarning, match=r"image\(s\) \[0\] unchanged"):
        res = deblur(x, prior=PRIOR, noise_level=0.1, flow_model=_lengths_net(2.0, 8.0, 11.0))
    assert len(fake_hqs.calls) == 2
    for call, i, length in zip(fake_hqs.calls, (1, 2), (8.0, 11.0)):
        assert torch.equal(call["y"], x[i:i + 1])
        kf = torch.as_tensor(call["K"].flow)
        assert kf.shape == (1, 2, 16, 24) and torch.all(kf[:, 0] == length) and torch.all(kf[:, 1] == 0)
    assert res.x.shape == x.shape and torch.equal(res.x[0], x[0])
    assert torch.allclose(res.x[1:], 0.5 * x[1:] + 0.1)
    assert res.unchanged == [True, False, False] and res.history[0]["hqs"] == [None, [{"call": 1}], [{"call": 2}]]


def test_each_global_iteration_starts_from_the_clipped_result(monkeypatch):
    rec = RecordingHQS(out=lambda y: 3 * y - 1)  # leaves [0, 1] on both sides
    monkeypatch.setattr(pnpdeblur.solvers, "hqs", rec)
    seen = []
    y = _photo()
    deblur(y, iterations=2, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((6.0, 0.0)),
           callback=lambda e, x: seen.append(x.clone()))
    first = (3 * torch.from_numpy(y.transpose(2, 0, 1))[None] - 1).clamp(0, 1)
    assert float(first.min()) == 0.0 and float(first.max()) == 1.0
    assert torch.allclose(seen[0], first) and torch.allclose(rec.calls[1]["y"], first)


def test_psnr_in_the_history_is_per_image_then_averaged(fake_hqs):
    x = torch.from_numpy(np.stack([_photo(seed=1), _photo(seed=2)]).transpose(0, 3, 1, 2).copy())
    ref = torch.stack([torch.from_numpy(_photo(seed=3).transpose(2, 0, 1).copy()), 0.5 * x[1] + 0.11])
    res = deblur(x, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((6.0, 0.0)), reference=ref)
    out = (0.5 * x + 0.1).double()
    mse = ((out - ref.double()) ** 2).flatten(1).mean(1)
    want = float((10 * torch.log10(1 / mse)).mean())
    assert res.history[0]["psnr"] == pytest.approx(want, abs=1e-4)
    assert abs(want - 10 * np.log10(1 / float(mse.mean()))) > 1e-3  # the pooled MSE would differ


def test_progress_bar_layout(fake_hqs, capsys, monkeypatch):
    import tqdm.std

    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)
    deblur(_photo(), iterations=2, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((6.0, 8.0)), progress=True)
    err = capsys.readouterr().err
    assert re.search(r"(^|\r)deblur: ", err) and "?it/s" in err
    assert "\n" not in err  # leave=False: the bar is cleared, not left behind


def test_the_warning_lists_every_unchanged_image(fake_hqs):
    x = torch.from_numpy(np.stack([_photo(seed=1), _photo(seed=2)]).transpose(0, 3, 1, 2).copy())
    with pytest.warns(UserWarning) as w:
        warnings.filterwarnings("ignore", message="estimate_flow sees")  # small test image
        deblur(x, prior=PRIOR, noise_level=0.1, flow_model=_lengths_net(2.0, 3.0))
    assert len(w) == 1 and w[0].category is UserWarning
    assert "image(s) [0, 1] unchanged: SEN's median flow length (2.00, 3.00 px) is below" in str(w[0].message)


def test_progress_bar_counts_one_per_global_iteration(fake_hqs, capsys, monkeypatch):
    import tqdm.std

    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)
    monkeypatch.setattr(tqdm.std.tqdm, "__init__", _eager_tqdm_init(tqdm.std.tqdm.__init__))
    deblur(_photo(), iterations=3, prior=PRIOR, noise_level=0.1, flow_model=StandInSEN((6.0, 8.0)), progress=True)
    counts = re.findall(r"\| (\d)/3 ", capsys.readouterr().err)
    assert list(dict.fromkeys(counts)) == ["0", "1", "2", "3"]  # each count drawn, in order (redraws repeat it)


def _eager_tqdm_init(init):
    def eager(self, *args, **kwargs):  # redraw on every update (no rate limiting)
        kwargs.update(mininterval=0, miniters=1)
        init(self, *args, **kwargs)
    return eager


# -- clipped (saturated) pixels --------------------------------------------------------------------

def test_clipped_pixels_reach_hqs_as_zero_weights(fake_hqs):
    y = _photo(seed=4)  # uniform in [0, 1): about 2 % of the values are >= 0.98
    y[2:5, 3:9, 0] = 1.0
    clipped = torch.from_numpy((y >= 0.98).transpose(2, 0, 1).copy())[None]
    res = deblur(y, iterations=2, prior=PRIOR, noise_level=0.02, flow_model=StandInSEN((6.0, 0.0)))
    first, second = fake_hqs.calls
    assert first["weights"].dtype == torch.float32
    assert torch.equal(first["weights"], (~clipped).float())
    assert res.history[0]["clipped_fraction"] == pytest.approx([float(clipped.float().mean())], abs=1e-7)
    # the second global iteration judges its own input, the first result 0.5 y + 0.1 (clipped to [0, 1])
    again = (0.5 * torch.from_numpy(y.transpose(2, 0, 1).copy())[None] + 0.1).clamp(0, 1) >= 0.98
    assert torch.equal(second["weights"], (~again).float())
    # a threshold of the caller's, and off
    fake_hqs.calls.clear()
    deblur(y, prior=PRIOR, noise_level=0.02, flow_model=StandInSEN((6.0, 0.0)), saturation=0.5)
    assert torch.equal(fake_hqs.calls[0]["weights"], torch.from_numpy((y < 0.5).transpose(2, 0, 1).copy())[None].float())
    fake_hqs.calls.clear()
    res = deblur(y, prior=PRIOR, noise_level=0.02, flow_model=StandInSEN((6.0, 0.0)), saturation=None)
    assert fake_hqs.calls[0]["weights"] is None and res.history[0]["clipped_fraction"] == [0.0]


def test_uint8_photos_clip_at_250(fake_hqs):
    y = (_photo(seed=5) * 240).astype(np.uint8)
    y[0, 0, 1], y[1, 1, 2], y[2, 2, 0] = 250, 255, 249
    deblur(y, prior=PRIOR, noise_level=0.02, flow_model=StandInSEN((6.0, 0.0)))
    w = fake_hqs.calls[0]["weights"]
    assert float(w.sum()) == w.numel() - 2 and w[0, 1, 0, 0] == 0 and w[0, 2, 1, 1] == 0 and w[0, 0, 2, 2] == 1


def test_saturation_argument_is_checked(fake_hqs):
    for bad in (0.0, 1.5, float("nan"), -0.5, float("-inf")):
        with pytest.raises(ValueError, match=rf"^saturation must be in \(0, 1\] or None, got {re.escape(repr(bad))}$"):
            deblur(_photo(), prior=PRIOR, flow_model=StandInSEN((6.0, 0.0)), saturation=bad)
    with pytest.raises(TypeError, match=r"^saturation must be"):
        deblur(_photo(), prior=PRIOR, flow_model=StandInSEN((6.0, 0.0)), saturation="high")


def test_noise_level_leaves_clipped_blocks_out():
    rng = np.random.default_rng(6)
    x = 0.5 + 0.02 * rng.standard_normal((1, 2, 64, 64))
    x[:, :, :, :40] = 1.0  # most of the photo clipped flat: zero detail there
    t = torch.from_numpy(x)
    plain = estimate_noise_level(t)
    aware = estimate_noise_level(t, saturation=0.98)
    assert plain[0] < 0.002  # the flat majority drags the plain median to zero
    assert aware == pytest.approx([0.02], rel=0.15)
    # by hand: the lower median of |HH| over the blocks with every value below the threshold
    blocks = [x[0, :, i::2, j::2][:, :32, :32] for i in (0, 1) for j in (0, 1)]
    hh = np.abs(blocks[0] - blocks[1] - blocks[2] + blocks[3]) / 2
    kept = np.max(blocks, axis=0) < 0.98
    per = [np.sort(hh[c][kept[c]])[(kept[c].sum() - 1) // 2] for c in range(2)]
    assert aware == pytest.approx([np.mean(per) / 0.6744897501960817], rel=1e-12)


def test_noise_level_with_saturation_is_unchanged_without_clipped_blocks_or_with_too_few_left():
    rng = np.random.default_rng(7)
    x = torch.from_numpy(np.clip(0.4 + 0.03 * rng.standard_normal((2, 3, 32, 30)), 0, 0.9))
    assert estimate_noise_level(x, saturation=0.98) == estimate_noise_level(x)
    y = x.clone()
    y[:, :, :, :-2] = 1.0  # 16 unclipped blocks per channel: fewer than MIN_NOISE_BLOCKS, all are used
    assert pipeline.MIN_NOISE_BLOCKS > 16
    assert estimate_noise_level(y, saturation=0.98) == estimate_noise_level(y)


def test_noise_level_leaves_out_a_block_with_one_clipped_pixel_at_the_threshold():
    """A block counts as clipped when any one of its four pixels reaches the threshold (equality
    included); judged per image and channel of a batch."""
    rng = np.random.default_rng(8)
    x = 0.4 + 0.05 * rng.standard_normal((2, 2, 20, 20))
    x = np.clip(x, 0, 0.9)
    x[0, 1, 1::2, 1::2][:, :6] = 0.98  # image 0, channel 1: one corner of 60 blocks at exactly 0.98
    t = torch.from_numpy(x)
    blocks = [x[:, :, i::2, j::2] for i in (0, 1) for j in (0, 1)]
    hh = np.abs(blocks[0] - blocks[1] - blocks[2] + blocks[3]) / 2
    kept = np.max(blocks, axis=0) < 0.98
    assert kept[0, 1].sum() == 40 and kept[1].all() and kept[0, 0].all()
    with monkeypatch_min_blocks(40):
        got = estimate_noise_level(t, saturation=0.98)
    lower = [[np.sort(hh[i, c][kept[i, c]])[(kept[i, c].sum() - 1) // 2] for c in range(2)] for i in range(2)]
    assert got == pytest.approx([np.mean(v) / 0.6744897501960817 for v in lower], rel=1e-12)
    assert got[0] != pytest.approx(estimate_noise_level(t)[0], rel=1e-6)
    assert got[1] == estimate_noise_level(t)[1]  # image 1 has no clipped block
    # MIN_NOISE_BLOCKS unclipped blocks are enough; one fewer falls back to all blocks
    with monkeypatch_min_blocks(41):
        assert estimate_noise_level(t, saturation=0.98) == estimate_noise_level(t)


class monkeypatch_min_blocks:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old, pipeline.MIN_NOISE_BLOCKS = pipeline.MIN_NOISE_BLOCKS, self.n

    def __exit__(self, *exc):
        pipeline.MIN_NOISE_BLOCKS = self.old


def test_deblur_estimates_the_noise_without_the_clipped_blocks(fake_hqs):
    rng = np.random.default_rng(9)
    y = np.clip(0.5 + 0.03 * rng.standard_normal((64, 64, 3)), 0, 1).astype(np.float32)
    y[:, :40] = 1.0  # most of the photo clipped flat
    t = torch.from_numpy(y.transpose(2, 0, 1).copy())[None]
    aware, plain = estimate_noise_level(t, saturation=0.98)[0], estimate_noise_level(t)[0]
    assert aware > 0.02 > plain
    deblur(y, prior=PRIOR, flow_model=StandInSEN((6.0, 0.0)), noise_floor=0.0)
    deblur(y, prior=PRIOR, flow_model=StandInSEN((6.0, 0.0)), noise_floor=0.0, saturation=None)
    assert [c["noise_level"] for c in fake_hqs.calls] == [pytest.approx(aware), pytest.approx(plain)]
    fake_hqs.calls.clear()
    deblur(y, prior=PRIOR, flow_model=StandInSEN((6.0, 0.0)), noise_floor=0.0, saturation=1.0)  # 1 is allowed
    assert float(fake_hqs.calls[0]["weights"].mean()) == pytest.approx(24 / 64)


def test_later_iterations_reestimate_the_noise_without_clipped_blocks(monkeypatch):
    """The noise estimate of global iteration 2 is taken on iteration 1's result, leaving its
    clipped blocks out as the first one does (``saturation``)."""
    def half_white(y):
        out = y.clone()
        out[..., :, : y.shape[-1] // 2] = 1.0  # a clipped half: constant blocks, no noise
        return out

    rec = RecordingHQS(out=half_white)
    monkeypatch.setattr(pnpdeblur.solvers, "hqs", rec)
    y = 0.9 * _photo(32, 40)
    deblur(y, iterations=2, prior=PRIOR, flow_model=StandInSEN((6.0, 0.0)), noise_floor=0.0, safeguard=False)
    first = half_white(torch.from_numpy(y.transpose(2, 0, 1))[None]).clamp(0, 1)
    with_mask = estimate_noise_level(first, saturation=0.98)[0]
    assert with_mask != pytest.approx(estimate_noise_level(first)[0], rel=0.05)
    assert rec.calls[1]["noise_level"] == pytest.approx(with_mask, rel=1e-12)


def test_result_reprs_summarise_without_printing_the_image():
    # the dataclass default printed every pixel of x (and of each flow) in a notebook cell
    from pnpdeblur.auto import AutoDeblurResult
    from pnpdeblur.camera_shake import ShakeDeblurResult
    from pnpdeblur.pipeline import DeblurResult

    x = np.zeros((4, 5, 3), np.float32)
    r = DeblurResult(x=x, flow=[np.zeros((2, 4, 5))] * 2, noise_level=[0.0123456], unchanged=[False],
                     history=[{"mean_flow_length": [1.0]}, {"mean_flow_length": [2.34567]}])
    assert repr(r) == ("DeblurResult(x=ndarray (4, 5, 3) float32, iterations=2, mean_flow_length=[2.346] px "
                       "(last iteration), noise_level=[0.01235], unchanged=[False])")
    t = torch.zeros(2, 3, 4, 5, dtype=torch.float64)
    assert repr(DeblurResult(x=t)) == ("DeblurResult(x=Tensor (2, 3, 4, 5) float64, iterations=0, "
                                       "mean_flow_length=[] px (last iteration), noise_level=[], unchanged=[])")
    s = ShakeDeblurResult(x=t, kernel=np.zeros((2, 7, 7)), noise_level=[0.01, 0.02],
                          history=[{"kernel_length": 3.0}, {"kernel_length": 12.3456}], unchanged=[True, False])
    assert repr(s) == ("ShakeDeblurResult(x=Tensor (2, 3, 4, 5) float64, kernel=ndarray (2, 7, 7) float64, "
                       "kernel_length=[3, 12.35] px, noise_level=[0.01, 0.02], unchanged=[True, False])")
    a = AutoDeblurResult(x=x, model=["shake"], residual_flow=[1.5e-4], residual_shake=[float("nan")])
    assert repr(a) == ("AutoDeblurResult(x=ndarray (4, 5, 3) float32, model=['shake'], residual_flow=[0.00015], "
                       "residual_shake=[nan])")
    assert "[[" not in repr(r) + repr(s) + repr(a)
    # a repr never raises, whatever a history holds
    odd = DeblurResult(x=None, history=[{"mean_flow_length": [None, "n/a"]}], noise_level=[np.float32(0.5)])
    assert repr(odd) == ("DeblurResult(x=None, iterations=1, mean_flow_length=[None, 'n/a'] px (last iteration), "
                         "noise_level=[0.5], unchanged=[])")
