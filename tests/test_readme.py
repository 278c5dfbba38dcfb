"""The README's Python examples run as written and do what the README says they do.

The blocks are executed statement by statement in one namespace (users copy them in
order), so every ``res = ...`` line can be checked, not only the last one.
"""
import ast
import pathlib
import re

import numpy as np

from pnpdeblur.metrics import psnr

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _run_readme():
    """Execute the README's python blocks; return the namespace and each ``res`` with its line."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    ns: dict = {}
    results = []  # (section of the README, source line, result)
    for code in blocks:
        section = text[: text.index(code)].rsplit("\n## ", 1)[-1].split("\n", 1)[0]
        for stmt in ast.parse(code).body:
            exec(compile(ast.Module([stmt], type_ignores=[]), str(README), "exec"), ns)  # noqa: S102
            if isinstance(stmt, ast.Assign) and any(getattr(t, "id", None) == "res" for t in stmt.targets):
                results.append((section, ast.get_source_segment(code, stmt), ns["res"]))
    return ns, results


def test_readme_python_blocks_run_and_keep_their_promises():
    ns, results = _run_readme()
    sharp, noisy = ns["sharp"], ns["noisy"]
    base = psnr(noisy, sharp)

    # the operator section: same layout back, and a real flow gradient
    assert ns["blurred"].shape == sharp.shape and ns["back"].shape == sharp.shape
    assert ns["flow_t"].grad is not None and float(ns["flow_t"].grad.abs().sum()) > 0

    # your own operator: the dot test passes it, and the scipy operator measures ‖K‖²: K's rows
    # sum to 1 (K1 = 1, so ‖K‖² >= ‖K1‖²/‖1‖² = 1) and ‖K‖² <= ‖K‖₁‖K‖∞ = max column sum (Kᵀ1),
    # which the replicated border makes > 1 for a long blur
    assert ns["gap"] < 1e-12 and ns["gap_blur"] < 1e-12
    assert ns["A"].shape == (3 * 128 * 128,) * 2
    col_sums = np.asarray(ns["K"].T(np.ones((128, 128), np.float32)), dtype=np.float64)
    assert 1.0 - 1e-6 <= float(ns["top"][0]) <= col_sums.max() + 1e-6 and col_sums.max() > 1.2

    # "swap the prior": every prior restores a sharper image than the blurred, noisy input
    # (measured at 128²: +8.3 dB TV, +9.3 dB DnCNN, +8.5 dB NLMeans; the margin leaves room
    # for thread-count rounding, not for a broken prior)
    nonblind = [(src, r) for sec, src, r in results if sec.startswith("Compose a solver")]
    priors = {"TV()": None, "DnCNNPrior()": None, "NLMeans()": None, "lambda z, sigma: z": None, "tv_skimage": None}
    for src, r in nonblind:
        for name in priors:
            if name in src:
                priors[name] = r
    assert all(r is not None for r in priors.values()), f"README examples changed: {list(priors)}"
    assert ns["restored"] is priors["TV()"].x
    for name, r in priors.items():
        assert isinstance(r.x, np.ndarray) and r.x.shape == noisy.shape and np.isfinite(r.x).all(), name
        assert r.history, name
        if name != "lambda z, sigma: z":  # the identity "prior" only shows the interface
            gain = psnr(r.x, sharp) - base
            assert gain > 3.0, f"HQS with {name} gains {gain:.2f} dB over the blurred input"

    # the unknown boundary: a padded solve cropped back to the photo, as good as a solve should be
    r = ns["r"]
    assert r == int(np.ceil(np.hypot(*ns["flow"]).max() / 2 + 1.5)) == ns["K"].reach()
    assert ns["y_pad"].shape == (noisy.shape[0] + 2 * r, noisy.shape[1] + 2 * r, 3)
    assert tuple(ns["K_pad"].flow.shape) == (1, 2) + ns["y_pad"].shape[:2]
    sharper = ns["sharper"]
    assert isinstance(sharper, np.ndarray) and sharper.shape == noisy.shape and np.isfinite(sharper).all()
    assert psnr(np.clip(sharper, 0, 1), sharp) - base > 3.0

    # "Blind deblurring": an image of the input's shape and dtype, one flow per iteration
    photo = ns["photo"]
    assert ns["estimated"].shape == (2,) + photo.shape[:2]
    blind = [(src, r) for sec, src, r in results if sec.startswith("Blind deblurring")]
    known = [(src, r) for src, r in blind if "flow=flow" in src or "kernel=k)" in src]
    blind = [(src, r) for src, r in blind if (src, r) not in known]
    shake = [(src, r) for src, r in blind if "deblur_shake" in src]
    blind = [(src, r) for src, r in blind if "deblur_shake" not in src]
    assert len(blind) == 2 and len(shake) == 2 and len(known) == 2
    # a known blur: the true flow of the README's photo deblurs it well; the estimated kernel given back is
    # used as given (no estimate, no registration)
    (_, with_flow), (_, with_kernel) = known
    assert with_flow.x.dtype == photo.dtype and with_flow.history[0]["safeguard"] is None
    np.testing.assert_array_equal(with_flow.flow[0], ns["flow"])
    assert psnr(np.clip(with_flow.x, 0, 1), sharp) - base > 3.0
    np.testing.assert_array_equal(with_kernel.kernel, ns["k"])
    assert with_kernel.history[0]["registration"] is None and with_kernel.x.shape == photo.shape
    # camera shake: one kernel per photo, the given one reused as given
    assert shake[0][1].kernel.shape == (21, 21) and ns["k"].shape == (41, 41)  # the default support at 128 px
    np.testing.assert_array_equal(shake[1][1].kernel, ns["k"])
    for src, r in shake:
        assert isinstance(r.x, np.ndarray) and r.x.shape == photo.shape and r.x.dtype == photo.dtype, src
        assert np.isfinite(r.x).all() and abs(r.kernel.sum() - 1) < 1e-9, src
    for src, r in blind:
        assert isinstance(r.x, np.ndarray) and r.x.shape == photo.shape and r.x.dtype == photo.dtype, src
        assert np.isfinite(r.x).all(), src
    assert len(blind[1][1].flow) == 2  # iterations=2
