"""pd.operators.dot_test: exact adjoints pass, a wrong adjoint or a wrong fused normal is measured as
the closed form says, and the argument checks name what is wrong."""
import re

import numpy as np
import pytest
import torch

import pnpdeblur as pd
from pnpdeblur.data import random_motion_flow
from pnpdeblur.operators import Identity, LinearOperator, dot_test

from _operators import Dense

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class WrongAdjoint(Dense):
    """Forward ``A``, "adjoint" ``B`` (not ``Aᵀ`` unless B is)."""

    def __init__(self, A, B):
        super().__init__(A)
        self.B = torch.as_tensor(B, dtype=torch.float64)

    def _adjoint(self, y):
        return (y.flatten(1) @ self.B.T.to(y.dtype)).reshape(y.shape)


class ScaledNormal(Dense):
    """A fused ``KᵀK`` that is off by a factor (a bug a fast path could have)."""

    def __init__(self, A, factor):
        super().__init__(A)
        self.factor = factor

    def _normal(self, x):
        return self.factor * self._adjoint(self._forward(x))


def _flows(h, w, seed):
    return random_motion_flow((h, w), max_len=10, seed=seed), random_motion_flow((h, w), max_len=10, seed=seed + 1)


@pytest.mark.parametrize("make, shape", [
    (lambda: pd.MotionBlur(_flows(13, 17, 0)[0]), None),
    (lambda: pd.MotionBlur(np.stack(_flows(13, 17, 2))), None),  # a batch of two flows
    (lambda: pd.WarpBlur(*_flows(13, 17, 4)), None),
    (lambda: pd.TwoSegmentBlur(*_flows(13, 17, 6)), None),
    (lambda: pd.Convolution(np.random.default_rng(8).random((5, 3)), "replicate"), (2, 3, 11, 12)),
    (lambda: pd.Convolution(np.random.default_rng(9).random((3, 3)), "reflect"), (1, 1, 9, 10)),
    (lambda: pd.UniformBlur(np.random.default_rng(10).random((3, 5))), (1, 3, 9, 10)),
    (lambda: (lambda K: K.T @ K + 0.5 * Identity())(pd.MotionBlur(_flows(13, 17, 11)[0])), None),
    (lambda: 2.0 * pd.MotionBlur(_flows(13, 17, 12)[0]) - pd.MotionBlur(_flows(13, 17, 13)[0]), None),
])
def test_the_librarys_operators_pass_to_round_off(make, shape):
    K = make()
    assert dot_test(K, shape, tol=1e-13) < 1e-13
    assert dot_test(K, shape, dtype=torch.float32, tol=1e-5) < 1e-5


def test_a_wrong_adjoint_is_measured_as_the_closed_form_says():
    rng = np.random.default_rng(20)
    m = 2 * 3 * 4
    A = rng.standard_normal((m, m))
    B = A.T + 0.1 * rng.standard_normal((m, m))  # an adjoint off by a small matrix
    x = rng.standard_normal(m)
    y = rng.standard_normal(m)
    lhs, rhs = (A @ x) @ y, x @ (B @ y)
    want = abs(lhs - rhs) / max(np.linalg.norm(A @ x) * np.linalg.norm(y), np.linalg.norm(x) * np.linalg.norm(B @ y))
    K = WrongAdjoint(A, B)
    xt, yt = (torch.from_numpy(v).reshape(1, 2, 3, 4) for v in (x, y))
    got = dot_test(K, x=xt, y=yt, normal=False)
    assert got == pytest.approx(want, rel=1e-12) and got > 1e-3
    with pytest.raises(AssertionError) as err:
        dot_test(K, x=xt, y=yt, tol=1e-10)
    said = re.fullmatch(r"WrongAdjoint fails the dot test: <K x, y> = (\S+) but <x, K\.T y> = (\S+): relative "
                        r"mismatch (\S+) > tol 1e-10 \(trial 0, images of shape \(1, 2, 3, 4\), float64\)", str(err.value))
    assert said, str(err.value)
    assert [float(v) for v in said.groups()] == pytest.approx([lhs, rhs, want], rel=1e-3)
    # an adjoint too small by half: now |Kx||y| is the larger of the two products
    half = WrongAdjoint(A, 0.5 * A.T)
    want_half = abs(lhs - 0.5 * lhs) / max(np.linalg.norm(A @ x) * np.linalg.norm(y),
                                           0.5 * np.linalg.norm(x) * np.linalg.norm(A.T @ y))
    assert np.linalg.norm(A @ x) * np.linalg.norm(y) > 0.5 * np.linalg.norm(x) * np.linalg.norm(A.T @ y)
    assert dot_test(half, x=xt, y=yt, normal=False) == pytest.approx(want_half, rel=1e-12)
    # random images find it too, and the exact adjoint of the same forward passes
    assert dot_test(K, (1, 2, 3, 4)) > 1e-3
    assert dot_test(WrongAdjoint(A, A.T), (1, 2, 3, 4), tol=1e-13) < 1e-13


def test_a_wrong_fused_normal_is_measured_and_can_be_left_out():
    A = np.random.default_rng(21).standard_normal((12, 12))
    K = ScaledNormal(A, 1.5)
    assert dot_test(K, (1, 1, 3, 4), normal=False, tol=1e-13) < 1e-13  # the adjoint itself is exact
    assert dot_test(K, (1, 1, 3, 4)) == pytest.approx(0.5, rel=1e-12)  # |1.5 v - v| / |v|
    tiny = 1e-4 * torch.randn(1, 1, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert dot_test(K, x=tiny, y=tiny) == pytest.approx(0.5, rel=1e-12)  # relative at any scale
    with pytest.raises(AssertionError, match=r"^ScaledNormal\.normal\(x\) differs from K\.T\(K x\) by .* "
                                             r"relative mismatch 0\.5 > tol 0\.01 \(trial 0,"):
        dot_test(K, (1, 1, 3, 4), tol=0.01)


def test_an_operator_returning_nan_fails_any_tolerance():
    class Broken(LinearOperator):
        def _forward(self, x):
            return x * float("nan")

        def _adjoint(self, y):
            return y

    assert np.isnan(dot_test(Broken(), (1, 1, 3, 3), normal=False))
    with pytest.raises(AssertionError, match=r"^Broken fails the dot test: <K x, y> = nan .* relative mismatch nan > tol 1"):
        dot_test(Broken(), (1, 1, 3, 3), tol=1.0)


def test_an_operator_returning_another_shape_is_named():
    class Shrinks(LinearOperator):
        def _forward(self, x):
            return x[..., 1:, :]

        def _adjoint(self, y):
            return y

    with pytest.raises(AssertionError, match=r"^Shrinks applied to x returned \(1, 3, 4, 6\), expected a tensor of "
                                             r"the input's shape \(1, 3, 5, 6\)$"):
        dot_test(Shrinks(), (1, 3, 5, 6))


def test_each_call_whose_output_has_another_shape_or_type_is_named():
    class Bad(LinearOperator):
        def __init__(self, where, what):
            self.where, self.what = where, what

        def _out(self, x, name):
            if name != self.where:
                return x
            return x.numpy() if self.what == "numpy" else x[..., 1:]

        def _forward(self, x):
            return self._out(x, "forward")

        def _adjoint(self, y):
            return self._out(y, "adjoint")

        def _normal(self, x):
            return self._out(x, "normal")

    for where, said in (("adjoint", r"the adjoint of Bad"), ("normal", r"Bad\.normal")):
        with pytest.raises(AssertionError, match=rf"^{said} returned \(1, 2, 3, 3\), expected a tensor of the "
                                                 r"input's shape \(1, 2, 3, 4\)$"):
            dot_test(Bad(where, "crop"), (1, 2, 3, 4))
    with pytest.raises(AssertionError, match=r"^Bad applied to x returned ndarray, expected a tensor"):
        dot_test(Bad("forward", "numpy"), (1, 2, 3, 4))


class Recording(LinearOperator):
    """The identity on images of any batch, recording what it is given."""

    def __init__(self, image_shape=(None, 4, 5)):
        self.image_shape, self.seen = image_shape, []

    def _forward(self, x):
        self.seen.append((tuple(x.shape), x.dtype, x.device.type))
        return x.clone()

    _adjoint = _forward


def test_the_default_images_and_their_dtype_and_device():
    op = Recording()
    assert dot_test(op, trials=1, normal=False) == 0.0
    assert op.seen == [((1, 3, 4, 5), torch.float64, "cpu")] * 2  # N = 1 where the operator takes any batch
    op = Recording()
    dot_test(op, trials=1, normal=False, dtype=torch.float32, device="cpu")
    assert op.seen == [((1, 3, 4, 5), torch.float32, "cpu")] * 2
    with pytest.raises(ValueError, match=r"^Recording works on images of any size: pass shape"):
        dot_test(Recording((None, 4, None)))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"cuda"):
            dot_test(Recording(), device="cuda")


def test_the_default_trials_and_seed():
    A = np.random.default_rng(24).standard_normal((12, 12))
    K = WrongAdjoint(A, A.T + 0.05 * np.random.default_rng(33).standard_normal((12, 12)))
    gen = torch.Generator().manual_seed(0)
    pairs = [[torch.randn((1, 3, 2, 2), generator=gen, dtype=torch.float64) for _ in range(2)] for _ in range(4)]
    each = [dot_test(K, x=x, y=y, normal=False) for x, y in pairs]
    assert each[3] > max(each[:3])  # a fourth trial would change the answer
    assert dot_test(K, (1, 3, 2, 2), normal=False) == max(each[:3])


def test_random_images_are_seeded_and_the_worst_trial_is_returned():
    A = np.random.default_rng(22).standard_normal((12, 12))
    K = WrongAdjoint(A, A.T + 0.05 * np.eye(12))
    one = [dot_test(K, (1, 3, 2, 2), trials=1, seed=s, normal=False) for s in range(4)]
    assert len(set(one)) == 4  # other seeds, other images
    assert dot_test(K, (1, 3, 2, 2), trials=1, seed=2, normal=False) == one[2]
    # the worst of the trials: the pairs are drawn (x, y), (x, y), ... from one generator of the seed
    gen = torch.Generator().manual_seed(1)
    pairs = [[torch.randn((1, 3, 2, 2), generator=gen, dtype=torch.float64) for _ in range(2)] for _ in range(3)]
    each = [dot_test(K, x=x, y=y, normal=False) for x, y in pairs]
    assert each[0] == one[1] and len(set(each)) == 3
    assert dot_test(K, (1, 3, 2, 2), trials=3, seed=1, normal=False) == max(each)
    assert dot_test(K, (1, 3, 2, 2), trials=2, seed=1, normal=False) == max(each[:2]) != each[1]  # not the last
    # the zero operator has nothing to mismatch
    assert dot_test(0.0 * pd.MotionBlur(np.zeros((2, 4, 5))), tol=0.0) == 0.0


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(K=np.eye(3)), TypeError, r"^K must be a pnpdeblur LinearOperator, got ndarray$"),
    (dict(dtype=torch.float16), TypeError, r"^dtype must be torch\.float32 or torch\.float64, got torch\.float16$"),
    (dict(trials=0), ValueError, r"^trials must be a positive int, got 0$"),
    (dict(trials=True), ValueError, r"^trials must be a positive int, got True$"),
    (dict(seed=1.5), TypeError, r"^seed must be an int, got float$"),
    (dict(tol=-1.0), ValueError, r"^tol must be a finite number >= 0 or None, got -1\.0$"),
    (dict(tol=float("nan")), ValueError, r"^tol must be a finite number >= 0 or None, got nan$"),
    (dict(tol=True), ValueError, r"^tol must be a finite number >= 0 or None, got True$"),
    (dict(shape=(1, True, 5, 6)), ValueError, r"^shape must be \(N, C, H, W\), four positive ints"),
    (dict(shape=b"\x01\x03\x05\x06"), ValueError, r"^shape must be \(N, C, H, W\), four positive ints"),
    (dict(x=torch.zeros(5, 6), y=torch.zeros(5, 6)), TypeError, r"^x must be a torch \(N, C, H, W\) tensor, got "
                                                                r"\(5, 6\)$"),
    (dict(x=torch.zeros(1, 3, 5, 6), y=torch.zeros(1, 3, 5, 6), shape=(1, 1, 5, 6)), ValueError,
     r"^x has shape \(1, 3, 5, 6\), but shape=\(1, 1, 5, 6\) was given$"),
    (dict(normal=1), TypeError, r"^normal must be True or False, got 1$"),
    (dict(shape=(1, 3, 5)), ValueError, r"^shape must be \(N, C, H, W\), four positive ints, got \(1, 3, 5\)$"),
    (dict(shape=(1, 3, 0, 6)), ValueError, r"^shape must be \(N, C, H, W\), four positive ints"),
    (dict(shape=(1, 3, 6, 6)), ValueError, r"^x has spatial size \(6, 6\), but MotionBlur was built for "
                                           r"\(H, W\) = \(5, 6\)$"),
    (dict(x=torch.zeros(1, 3, 5, 6)), ValueError, r"^give both x and y, or neither$"),
    (dict(y=torch.zeros(1, 3, 5, 6)), ValueError, r"^give both x and y, or neither$"),
    (dict(x=np.zeros((1, 3, 5, 6)), y=np.zeros((1, 3, 5, 6))), TypeError, r"^x must be a torch \(N, C, H, W\) "
                                                                          r"tensor, got ndarray$"),
    (dict(x=torch.zeros(1, 3, 5, 6), y=torch.zeros(1, 3, 5, 7)), ValueError, r"^x and y must have one shape"),
    (dict(x=torch.zeros(1, 3, 5, 6), y=torch.full((1, 3, 5, 6), float("nan"))), ValueError, r"^y contains NaN"),
    (dict(x=torch.zeros(1, 3, 5, 6, dtype=torch.int64), y=torch.zeros(1, 3, 5, 6)), TypeError,
     r"^x must be float32 or float64, got dtype int64"),
    (dict(x=torch.zeros(2, 3, 5, 6), y=torch.zeros(2, 3, 5, 6), shape=(1, 3, 5, 6)), ValueError,
     r"^x has shape \(2, 3, 5, 6\), but shape=\(1, 3, 5, 6\) was given$"),
])
def test_bad_arguments_name_the_argument(kwargs, exc, pattern):
    kwargs = {"K": pd.MotionBlur(np.ones((2, 5, 6))), **kwargs}
    with pytest.raises(exc, match=pattern):
        dot_test(**kwargs)


def test_a_size_free_operator_needs_a_shape():
    with pytest.raises(ValueError, match=r"^Convolution works on images of any size: pass shape=\(N, C, H, W\)"):
        dot_test(pd.Convolution(np.ones((3, 3)) / 9, "replicate"))
