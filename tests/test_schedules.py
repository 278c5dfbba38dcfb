"""The schedule helpers on their own: closed forms, edge cases, argument checks.

Written against the survivors of `make mutation` on ``solvers/schedules.py``
(docs/mutation.md): the solver-level tests ran these functions only at their defaults, so
single-step schedules, ``sigma_end``, the documented default length and the argument names
in error messages went unchecked. References are computed here with ``math`` from the
formulas in the docstrings (never with ``np.geomspace``, which the code uses).
"""
import math

import numpy as np
import pytest

from pnpdeblur.solvers.schedules import (
    DEFAULT_LAMBDA,
    DEFAULT_SIGMA_START,
    MIN_NOISE_LEVEL,
    beta_from_sigma,
    dpir_schedule,
    geometric_betas,
    prior_schedule,
    resolve_schedule,
    sigma_from_beta,
)


def _geometric(a, b, n):
    """a · (b/a)^(k/(n−1)), k = 0 … n−1."""
    return [a * math.exp(math.log(b / a) * k / (n - 1)) for k in range(n)]


# -- geometric_betas ----------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 7])
def test_geometric_betas_closed_form(n):
    got = geometric_betas(0.02, 5.0, n)
    np.testing.assert_allclose(got, _geometric(0.02, 5.0, n), rtol=1e-12)
    assert all(type(v) is float for v in got)


def test_geometric_betas_single_step_is_the_last_value():
    assert geometric_betas(0.02, 5.0, 1) == [5.0]
    assert geometric_betas(0.02, 5.0, np.int64(2)) == pytest.approx([0.02, 5.0], rel=1e-12)


@pytest.mark.parametrize("args, exc, pattern", [
    ((0.0, 1.0, 3), ValueError, r"^beta_start must be a finite positive number"),
    ((float("nan"), 1.0, 3), ValueError, r"^beta_start must"),
    (("0.1", 1.0, 3), TypeError, r"^beta_start must be a real number"),
    ((0.1, -1.0, 3), ValueError, r"^beta_end must be a finite positive number"),
    ((0.1, None, 3), TypeError, r"^beta_end must be a real number"),
    ((0.1, 1.0, 0), ValueError, r"^n_iter must be a positive int, got 0$"),
    ((0.1, 1.0, 2.0), ValueError, r"^n_iter must be a positive int, got 2\.0$"),
    ((0.1, 1.0, "3"), ValueError, r"^n_iter must be a positive int, got '3'$"),
])
def test_geometric_betas_rejects_bad_arguments_by_name(args, exc, pattern):
    with pytest.raises(exc, match=pattern):
        geometric_betas(*args)


# -- dpir_schedule ------------------------------------------------------------------------
def test_dpir_schedule_closed_form_and_default_length():
    nl = 0.02
    sig, bet = dpir_schedule(nl)  # the documented default: 8 iterations
    want = _geometric(DEFAULT_SIGMA_START, nl, 8)
    np.testing.assert_allclose(sig, want, rtol=1e-12)
    np.testing.assert_allclose(bet, [DEFAULT_LAMBDA * nl**2 / s**2 for s in want], rtol=1e-12)


def test_dpir_schedule_two_steps_are_start_and_end():
    sig, bet = dpir_schedule(0.02, n_iter=2, sigma_start=0.3, lam=0.5)
    assert sig == pytest.approx([0.3, 0.02], rel=1e-12)
    assert bet == pytest.approx([0.5 * 0.02**2 / 0.3**2, 0.5], rel=1e-12)


def test_dpir_schedule_single_step_uses_the_final_strength():
    # one iteration: σ_0 is the noise level (not sigma_start), so β_0 = λ
    sig, bet = dpir_schedule(0.03, n_iter=1, lam=0.4)
    assert sig == [0.03] and bet == pytest.approx([0.4], rel=1e-12)


def test_dpir_schedule_sigma_end():
    # σ_k runs from sigma_start to sigma_end; β_k still uses the noise level
    nl, end, lam = 0.01, 0.04, 0.3
    sig, bet = dpir_schedule(nl, n_iter=4, sigma_start=0.2, lam=lam, sigma_end=end)
    np.testing.assert_allclose(sig, _geometric(0.2, end, 4), rtol=1e-12)
    np.testing.assert_allclose(bet, [lam * nl**2 / s**2 for s in sig], rtol=1e-12)
    # a start below the end is raised to it: a constant schedule
    sig, _ = dpir_schedule(nl, n_iter=3, sigma_start=0.01, sigma_end=end)
    np.testing.assert_allclose(sig, [end] * 3, rtol=1e-12)


def test_dpir_schedule_floors_the_noise_level():
    sig, bet = dpir_schedule(1e-4, n_iter=3, lam=0.5)
    assert sig[-1] == pytest.approx(MIN_NOISE_LEVEL, rel=1e-12)
    assert bet[-1] == pytest.approx(0.5, rel=1e-12)  # β = λ at σ_k = max(σ, floor)


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(noise_level=-0.1), ValueError, r"^noise_level must be a finite non-negative number"),
    (dict(noise_level=0.01, lam=0.0), ValueError, r"^lam must be a finite positive number"),
    (dict(noise_level=0.01, lam="1"), TypeError, r"^lam must be a real number"),
    (dict(noise_level=0.01, sigma_start=-0.2), ValueError, r"^sigma_start must be a finite positive"),
    (dict(noise_level=0.01, sigma_end=0.0), ValueError, r"^sigma_end must be a finite positive number"),
    (dict(noise_level=0.01, sigma_end="0.1"), TypeError, r"^sigma_end must be a real number"),
    (dict(noise_level=0.01, n_iter=0), ValueError, r"^n_iter must be a positive int, got 0$"),
    (dict(noise_level=0.01, n_iter=3.0), ValueError, r"^n_iter must be a positive int, got 3\.0$"),
    (dict(noise_level=0.01, n_iter="3"), ValueError, r"^n_iter must be a positive int, got '3'$"),
])
def test_dpir_schedule_rejects_bad_arguments_by_name(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        dpir_schedule(**kwargs)


def test_dpir_schedule_single_iteration_is_allowed():
    assert len(dpir_schedule(0.01, n_iter=np.int64(1))[0]) == 1


# -- sigma_from_beta / beta_from_sigma -----------------------------------------------------
def test_sigma_beta_relation_defaults_and_values():
    assert beta_from_sigma(0.1, 0.02) == pytest.approx(DEFAULT_LAMBDA * 0.02**2 / 0.1**2, rel=1e-12)
    assert sigma_from_beta(0.5, 0.02) == pytest.approx(0.02 * math.sqrt(DEFAULT_LAMBDA / 0.5), rel=1e-12)
    assert beta_from_sigma(0.1, 0.02, lam=0.7) == pytest.approx(0.7 * 0.04 / 1.0, rel=1e-12)
    assert sigma_from_beta(0.5, 0.02, lam=0.7) == pytest.approx(0.02 * math.sqrt(1.4), rel=1e-12)


# -- resolve_schedule -----------------------------------------------------------------------
def test_resolve_schedule_default_and_n_iter():
    bet, sig = resolve_schedule(0.02, None, None, None, DEFAULT_LAMBDA, DEFAULT_SIGMA_START)
    assert len(bet) == len(sig) == 8
    bet, sig = resolve_schedule(0.02, None, None, 3, 0.4, 0.3)
    np.testing.assert_allclose(sig, _geometric(0.3, 0.02, 3), rtol=1e-12)
    np.testing.assert_allclose(bet, [0.4 * 0.02**2 / s**2 for s in sig], rtol=1e-12)
    bet, sig = resolve_schedule(0.02, None, None, 1, 0.4, 0.3)  # one iteration is allowed
    assert sig == [0.02] and bet == pytest.approx([0.4], rel=1e-12)
    # no noise level with an explicit schedule: the floor MIN_NOISE_LEVEL stands in
    _, sig = resolve_schedule(None, [0.1, 1.0], None, None, 0.4, 0.3)
    np.testing.assert_allclose(sig, [MIN_NOISE_LEVEL * math.sqrt(0.4 / b) for b in (0.1, 1.0)], rtol=1e-12)
    # both lists given: used as they are, zero σ allowed (no prior step)
    bet, sig = resolve_schedule(0.02, [0.1, 1.0], [0.05, 0.0], 2, 0.4, 0.3)
    assert bet == [0.1, 1.0] and sig == [0.05, 0.0]


@pytest.mark.parametrize("args, exc, pattern", [
    ((None, None, None, None), ValueError,
     r"^give noise_level \(the std of the noise in y, e\.g\. 0\.01; pnpdeblur\.pipeline\.estimate_noise_level\(y\) "
     r"estimates it from y\) or an explicit betas/sigmas schedule$"),
    ((0.01, [0.1, 1.0], ["a", 0.1], None), TypeError, r"^sigmas\[0\] must be a real number"),
    ((0.01, [0.1, 1.0], None, 2.0), ValueError, r"^n_iter must be a positive int, got 2\.0$"),
    ((0.01, [], None, None), ValueError, r"^betas must not be empty$"),
    ((0.01, None, [], None), ValueError, r"^sigmas must not be empty$"),
    ((0.01, 0.5, None, None), TypeError, r"^betas must be a sequence of numbers, got float$"),
    ((0.01, b"ab", None, None), TypeError, r"^betas must be a sequence of numbers, got bytes$"),
    ((0.01, [0.1, -1.0], None, None), ValueError, r"^betas\[1\] must be a finite non-negative"),
    ((0.01, [0.1, 0.0], None, None), ValueError, r"^betas must be positive, got \[0\.1, 0\.0\]$"),
    ((0.01, None, [0.1, 0.0], None), ValueError, r"^sigmas must be positive when betas are derived"),
    ((0.01, [0.1, 1.0], [0.1], None), ValueError, r"^betas and sigmas must have the same length, got 2 and 1$"),
    ((0.01, [0.1, 1.0], None, 3), ValueError, r"^n_iter=3 disagrees with the schedule length 2$"),
    ((0.01, None, None, 0), ValueError, r"^n_iter must be a positive int, got 0$"),
    ((0.01, None, None, True), ValueError, r"^n_iter must be a positive int, got True$"),
])
def test_resolve_schedule_rejects_bad_arguments_by_name(args, exc, pattern):
    with pytest.raises(exc, match=pattern):
        resolve_schedule(*args, DEFAULT_LAMBDA, DEFAULT_SIGMA_START)


@pytest.mark.parametrize("lam, sigma_start, pattern", [
    (0.0, 0.2, r"^lam must be a finite positive number"),
    (0.2, -1.0, r"^sigma_start must be a finite positive number"),
])
def test_resolve_schedule_checks_lam_and_sigma_start_by_name(lam, sigma_start, pattern):
    with pytest.raises(ValueError, match=pattern):
        resolve_schedule(0.01, [0.1], None, None, lam, sigma_start)


# --------------------------------------------------------------------------- a prior's own schedule
class _OwnSchedule:
    """A prior that carries the schedule it was tuned for (or None: DPIR's)."""

    def __init__(self, lam=None, start=None):
        self.hqs_lam, self.hqs_sigma_start = lam, start

    def __call__(self, z, sigma, context=None):
        return z


def test_prior_schedule_is_the_priors_own_else_dpirs():
    assert prior_schedule(lambda z, s: z) == (DEFAULT_LAMBDA, DEFAULT_SIGMA_START) == (0.23, 49 / 255)
    assert prior_schedule(_OwnSchedule()) == (DEFAULT_LAMBDA, DEFAULT_SIGMA_START)
    assert prior_schedule(_OwnSchedule(0.37)) == (0.37, DEFAULT_SIGMA_START)
    assert prior_schedule(_OwnSchedule(None, 0.4)) == (DEFAULT_LAMBDA, 0.4)
    assert prior_schedule(_OwnSchedule(np.float32(0.5), np.float64(0.25))) == (0.5, 0.25)


@pytest.mark.parametrize("value, exc", [(0.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
                                        ("0.2", TypeError), (True, TypeError)])
@pytest.mark.parametrize("which", ["hqs_lam", "hqs_sigma_start"])
def test_prior_schedule_rejects_a_bad_attribute_by_name(which, value, exc):
    prior = _OwnSchedule()
    setattr(prior, which, value)
    with pytest.raises(exc, match=rf"^the prior's {which} must be"):
        prior_schedule(prior)


def test_hqs_takes_the_priors_schedule_unless_given_one():
    """The default schedule is DPIR's with the prior's λ and σ_1: σ_k geometric from σ_1 to σ,
    β_k = λσ²/σ_k² (closed form); explicit arguments win, each on its own."""
    from pnpdeblur.operators import UniformBlur
    from pnpdeblur.solvers import hqs

    y = np.random.default_rng(0).random((12, 12)) * 0.5 + 0.25
    K = UniformBlur(np.full((3, 3), 1 / 9))

    def check(res, lam, start):
        sig = _geometric(start, 0.02, 8)
        np.testing.assert_allclose([h["sigma"] for h in res.history], sig, rtol=1e-12)
        np.testing.assert_allclose([h["beta"] for h in res.history], [lam * 0.02**2 / s**2 for s in sig], rtol=1e-12)
        assert res.settings["lam"] == lam

    own = _OwnSchedule(0.4, 0.5)
    check(hqs(y, K, own, noise_level=0.02, progress=False), 0.4, 0.5)
    check(hqs(y, K, own, noise_level=0.02, lam=0.1, progress=False), 0.1, 0.5)
    check(hqs(y, K, own, noise_level=0.02, sigma_start=0.3, progress=False), 0.4, 0.3)
    check(hqs(y, K, _OwnSchedule(), noise_level=0.02, progress=False), DEFAULT_LAMBDA, DEFAULT_SIGMA_START)
    with pytest.raises(ValueError, match="hqs_lam"):
        hqs(y, K, _OwnSchedule(-1.0), noise_level=0.02, progress=False)
