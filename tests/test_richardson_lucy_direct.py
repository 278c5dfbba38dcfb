"""Richardson–Lucy, SolverResult and the shared recorder against hand-written references.

RL runs on a 12-pixel problem with a non-negative dense operator and is compared with a
ten-line numpy loop of the update in its docstring; PSNR, the result's repr and the
recorder's bookkeeping are compared with values computed by hand.
"""
import math

import numpy as np
import pytest
import torch

from pnpdeblur.operators.convolution import Convolution
from pnpdeblur.solvers.result import SolverResult, _Recorder, psnr_torch
from pnpdeblur.solvers.richardson_lucy import richardson_lucy

from _operators import Dense  # tests/_operators.py (tests/ is on sys.path under pytest)


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    A = rng.random((12, 12)) * (rng.random((12, 12)) < 0.4) + 0.3 * np.eye(12)
    A[:, 3] = 0.0  # a pixel no measurement sees: Kᵀ1 = 0 there
    y = rng.random((1, 1, 3, 4))
    return Dense(A), A, y


def _rl_ref(A, y, iters, x0=None, normalize=True, eps=1e-12):
    yv = np.maximum(y.reshape(-1), 0)
    x = np.full(12, 0.5) if x0 is None else x0.reshape(-1).copy()
    norm = np.maximum(A.T @ np.ones(12), 1e-12)
    xs = []
    for _ in range(iters):
        x = x * (A.T @ (yv / (A @ x + eps)))
        if normalize:
            x = x / norm
        xs.append(x.copy())
    return xs


def test_every_iterate_and_residual_match_the_numpy_loop():
    K, A, y = _problem(0)
    y[0, 0, 0, 0] = -0.2  # negative data (Gaussian noise) is clamped to 0
    seen = []
    res = richardson_lucy(y, K, iters=4, callback=lambda e, x: seen.append(x.clone()), progress=False)
    xs = _rl_ref(A, y, 4)
    for k in range(4):
        np.testing.assert_allclose(seen[k].numpy().reshape(-1), xs[k], rtol=1e-12, atol=0)
        h = res.history[k]
        assert h["iteration"] == k and set(h) == {"iteration", "residual", "time"}
        assert h["residual"] == pytest.approx(np.linalg.norm(A @ xs[k] - y.reshape(-1)) / np.linalg.norm(y), rel=1e-12)
    assert res.x.shape == y.shape and isinstance(res.x, np.ndarray)
    np.testing.assert_allclose(res.x.reshape(-1), xs[-1], rtol=1e-12, atol=0)
    assert res.x.reshape(-1)[3] == 0.0  # 0 · Kᵀ(ratio) / 1e-12, not NaN
    assert res.settings == dict(iters=4, normalize=True, eps=1e-12, clip=False)
    assert res.converged is True and res.aux is None


def test_options_normalize_eps_x0_clip():
    K, A, y = _problem(1)
    x0 = np.linspace(0.1, 2.0, 12).reshape(y.shape)
    res = richardson_lucy(y, K, iters=3, x0=x0, normalize=False, eps=0.3, progress=False)
    np.testing.assert_allclose(res.x.reshape(-1), _rl_ref(A, y, 3, x0, False, 0.3)[-1], rtol=1e-12)
    assert res.settings == dict(iters=3, normalize=False, eps=0.3, clip=False)
    clipped = richardson_lucy(y, K, iters=3, x0=x0, normalize=False, eps=0.3, clip=True, progress=False)
    np.testing.assert_allclose(clipped.x, np.clip(res.x, 0, 1), rtol=0, atol=0)
    assert res.x.max() > 1.0  # so the clip did something
    assert clipped.settings["clip"] is True
    t = richardson_lucy(torch.from_numpy(y[0, 0]).float(), K, iters=2, progress=False)
    assert isinstance(t.x, torch.Tensor) and t.x.dtype == torch.float32 and t.x.shape == (3, 4)
    np.testing.assert_allclose(t.x.numpy().reshape(-1), _rl_ref(A, y, 2)[-1], rtol=1e-5)


def test_reference_callback_stop_and_errors():
    K, A, y = _problem(2)
    ref = np.random.default_rng(3).random(y.shape)
    res = richardson_lucy(y, K, iters=5, reference=ref, callback=lambda e, x: e["iteration"] == 1, progress=False)
    assert res.iterations == 2
    xs = _rl_ref(A, y, 2)
    assert res.history[1]["psnr"] == pytest.approx(10 * math.log10(1 / np.mean((xs[1] - ref.reshape(-1)) ** 2)), abs=1e-9)
    with pytest.raises(ValueError, match=r"^iters must be a positive int, got 0$"):
        richardson_lucy(y, K, iters=0)
    with pytest.raises(ValueError, match=r"^iters must be a positive int, got 2\.0$"):
        richardson_lucy(y, K, iters=2.0)
    assert richardson_lucy(y, K, iters=1, progress=False).iterations == 1
    with pytest.raises(ValueError, match=r"^iters must be a positive int, got True$"):
        richardson_lucy(y, K, iters=True)
    for bad in (0.0, -1e-3, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"^eps must be a finite positive number, got "):
            richardson_lucy(y, K, iters=1, eps=bad)
    with pytest.raises(TypeError, match=r"^eps must be a real number, got str$"):
        richardson_lucy(y, K, iters=1, eps="1e-12")
    with pytest.raises(ValueError, match=r"^richardson_lucy needs a non-negative blur; K's kernel has negative entries$"):
        richardson_lucy(y[0, 0], Convolution(np.array([[0.0, 1.2, -0.2]]), "zero"), iters=1)
    richardson_lucy(y[0, 0], Convolution(np.array([[0.0, 1.0, 0.0]]), "zero"), iters=1, progress=False)
    with pytest.raises(ValueError, match=r"^x0 must be non-negative for Richardson–Lucy$"):
        richardson_lucy(y, K, x0=np.full(y.shape, -0.1))
    with pytest.raises(ValueError, match=r"^x0 has shape"):
        richardson_lucy(y, K, x0=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"^reference has shape"):
        richardson_lucy(y, K, reference=np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"^K must be a pnpdeblur LinearOperator"):
        richardson_lucy(y, A)
    x0 = np.full(y.shape, 0.5)
    richardson_lucy(y, K, iters=1, x0=x0, progress=False)
    np.testing.assert_array_equal(x0, 0.5)  # x0 is not modified in place


# -- SolverResult, psnr_torch, _Recorder ---------------------------------------------------
def test_psnr_torch_is_per_image_then_averaged():
    ref = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    x = ref.clone()
    x[0] += 0.1  # mse 0.01 -> 20 dB
    x[1, 0, 0, 0] = 0.2  # mse 0.01 -> 20 dB ... make them differ:
    x[1] *= 0.5  # mse 0.0025 -> 26.0206 dB
    want = (20.0 + 10 * math.log10(1 / 0.0025)) / 2
    assert psnr_torch(x, ref) == pytest.approx(want, abs=1e-10)
    assert psnr_torch(x.float(), ref) == pytest.approx(want, abs=1e-5)
    assert psnr_torch(x * 255, ref, data_range=255.0) == pytest.approx(want, abs=1e-10)
    assert psnr_torch(ref, ref) == math.inf
    same = x.clone()
    same[1] = 0.0
    assert psnr_torch(same, ref) == math.inf  # one exact image: the mean is inf
    xg = x.clone().requires_grad_(True)
    assert isinstance(psnr_torch(xg, ref), float)


def test_solver_result_fields_and_repr():
    r = SolverResult(x=np.zeros(2))
    assert r.history == [] and r.settings == {} and r.converged is True and r.aux is None
    assert r.iterations == 0
    assert repr(r) == "SolverResult(iterations=0, converged=True)"
    r = SolverResult(x=None, history=[{"iteration": 0}, {"iteration": 1, "residual": 0.123456, "psnr": 30.0,
                                                          "cg_converged": True}], converged=False)
    assert r.iterations == 2
    assert repr(r) == "SolverResult(iterations=2, converged=False, last: residual=0.1235, psnr=30)"
    r = SolverResult(x=None, history=[{"iteration": 0}])
    assert repr(r) == "SolverResult(iterations=1, converged=True)"
    a, b = SolverResult(x=1), SolverResult(x=2)
    a.history.append({})
    assert b.history == []  # no shared default list


def test_recorder_bookkeeping():
    ref = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    calls = []

    def cb(entry, x):
        calls.append((dict(entry), x))
        return len(calls) == 2

    rec = _Recorder(5, ref, cb, False, "solver-name")
    assert rec.bar.disable is True
    x = torch.full_like(ref, 0.1)
    assert rec.record({"iteration": 0}, x) is False
    assert rec.record({"iteration": 1}, x) is True
    assert len(rec.history) == 2 and rec.history[0]["psnr"] == pytest.approx(20.0, abs=1e-10)
    assert 0 <= rec.history[0]["time"] <= rec.history[1]["time"]
    assert calls[0][0]["psnr"] == rec.history[0]["psnr"] and calls[0][1] is x
    rec.close()
    no_ref = _Recorder(3, None, None, None, "x")
    assert no_ref.record({"iteration": 0}, x) is False and "psnr" not in no_ref.history[0]
    no_ref.close()
    # progress=True shows a bar even without a terminal; it counts and shows the PSNR
    import io

    shown = _Recorder(3, ref, lambda e, x: 0, True, "hqs")
    shown.bar.fp = io.StringIO()
    assert shown.bar.disable is False and shown.bar.total == 3 and shown.bar.desc == "hqs"
    assert shown.bar.leave is False
    assert shown.record({"iteration": 0}, x) is False  # a falsy callback value does not stop
    assert shown.bar.n == 1 and shown.bar.postfix == "psnr=20.00"
    shown.close()
    with_none = _Recorder(3, None, None, None, "x")
    assert with_none.bar.disable is True  # None: only on an interactive terminal (pytest has none)
    with_none.close()


def test_default_iterations_and_zero_in_x0():
    K, A, y = _problem(4)
    res = richardson_lucy(y, K, progress=False)
    assert res.iterations == 30 and res.settings["iters"] == 30
    np.testing.assert_allclose(res.x.reshape(-1), _rl_ref(A, y, 30)[-1], rtol=1e-10)
    x0 = np.full(y.shape, 0.5)
    x0[0, 0, 0, 0] = 0.0  # non-negative: zero is allowed (and stays zero)
    res = richardson_lucy(y, K, iters=2, x0=x0, progress=False)
    assert res.x[0, 0, 0, 0] == 0.0


def test_recorded_time_is_seconds_since_the_start():
    import time

    t_before = time.perf_counter()
    rec = _Recorder(1, None, None, False, "x")
    rec.record({"iteration": 0}, torch.zeros(1, 1, 1, 1))
    elapsed = time.perf_counter() - t_before
    assert 0 <= rec.history[0]["time"] <= elapsed
    rec.close()


def test_progress_bar_names_the_solver_and_counts_iterations(capsys):
    A = np.abs(np.random.default_rng(5).random((6, 6))) + np.eye(6)
    y = np.random.default_rng(6).random((1, 1, 2, 3))
    richardson_lucy(y, Dense(A), iters=4, progress=True)
    err = capsys.readouterr().err
    assert "richardson_lucy: " in err and " 0/4 [" in err  # tqdm's first frame shows the total
    richardson_lucy(y, Dense(A), iters=4, progress=False)
    assert capsys.readouterr().err == ""
