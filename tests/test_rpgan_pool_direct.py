"""RP-GAN recipe helpers called directly: the synthetic pool (``build_pool``) and the
deconvolutions of :class:`pnpdeblur.train.rpgan.DeconvolutionProducer`.

References are written out here: the pool's blurred images are ``MotionBlur(true_flow)(sharp)``
plus noise of the requested σ; every row is the seeded dataset's item of that index read on its
own; the level-k deconvolutions are dense solves of ``(KᵀK + β_k I) x = β_k z + KᵀO`` with the
operator's matrix probed column by column and an identity stand-in generator.
"""
import io
import sys

import numpy as np
import pytest
import torch
from torch import nn

from pnpdeblur.data import SyntheticBlurDataset
from pnpdeblur.estimation.learned import estimate_flow
from pnpdeblur.nets.sen import SEN
from pnpdeblur.operators import MotionBlur
from pnpdeblur.train.rpgan import DeconvolutionProducer, build_pool

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sources():
    rng = np.random.default_rng(0)
    return [rng.random((20, 20, 3)), rng.random((22, 22, 3))]


def _dataset_rows(sources, length, crop, preset, noise_sigma, seed, rows):
    """Items ``rows`` of the seeded, fixed dataset, each read on its own (a function of (seed, index))."""
    out = {k: [] for k in ("blurred", "sharp", "flow")}
    for i in rows:
        ds = SyntheticBlurDataset(list(sources), length=length, crop=crop, preset=preset, noise_sigma=noise_sigma,
                                  seed=seed, fixed=True)
        item = ds[i]
        for k in out:
            out[k].append(torch.as_tensor(item[k]))
    return {k: torch.stack(v) for k, v in out.items()}


# ------------------------------------------------------------------------------ build_pool
def test_pool_defaults_are_preset_23_noise_001_seed_0_on_the_cpu():
    src = _sources()
    pool = build_pool(src, 3, 16, flows="true")  # every other argument at its default
    assert set(pool) == {"blurred", "sharp", "flow", "true_flow"}
    for k, c in (("blurred", 3), ("sharp", 3), ("flow", 2), ("true_flow", 2)):
        assert pool[k].shape == (3, c, 16, 16) and pool[k].dtype == torch.float32 and pool[k].device.type == "cpu"
    # Row i is the seeded dataset's item i (read alone, in reverse order: no stream state).
    ref = _dataset_rows(src, 3, 16, "23", 0.01, 0, [2, 1, 0])
    for k, rk in (("blurred", "blurred"), ("sharp", "sharp"), ("true_flow", "flow")):
        assert torch.equal(pool[k], ref[rk].flip(0)), k
    # flows='true' stores a copy of the true flow (not the same storage)
    assert torch.equal(pool["flow"], pool["true_flow"]) and pool["flow"].data_ptr() != pool["true_flow"].data_ptr()
    # Independent of the dataset: blurred = K(true_flow) sharp + noise of std 0.01.
    r = pool["blurred"].double() - MotionBlur(pool["true_flow"].double())(pool["sharp"].double())
    assert 0.008 < float(r.std()) < 0.012 and abs(float(r.mean())) < 0.002
    # preset '23': flow components within the label range ±23
    assert float(pool["true_flow"].abs().max()) <= 23.0


def test_pool_passes_preset_noise_seed_and_crop():
    src = _sources()
    pool = build_pool(src, 2, 12, preset="46", noise_sigma=0.05, seed=7, flows="true")
    ref = _dataset_rows(src, 2, 12, "46", 0.05, 7, [0, 1])
    assert torch.equal(pool["blurred"], ref["blurred"]) and torch.equal(pool["true_flow"], ref["flow"])
    assert torch.equal(pool["sharp"], ref["sharp"]) and torch.equal(pool["flow"], ref["flow"])
    r = pool["blurred"].double() - MotionBlur(pool["true_flow"].double())(pool["sharp"].double())
    assert 0.04 < float(r.std()) < 0.06
    # a different seed draws other crops and flows
    other = build_pool(src, 2, 12, preset="46", noise_sigma=0.05, seed=8, flows="true")
    assert not torch.equal(other["true_flow"], pool["true_flow"])


def test_pool_longer_than_the_datasets_default_length():
    # the dataset must be as long as the pool (its default length is 1000, the paper's pool size)
    pool = build_pool(_sources(), 1001, 8, flows="true")
    assert pool["blurred"].shape == (1001, 3, 8, 8)
    last = _dataset_rows(_sources(), 1001, 8, "23", 0.01, 0, [1000])
    assert torch.equal(pool["blurred"][1000], last["blurred"][0])


def test_pool_sen_flows_are_the_given_models_estimates_per_image():
    torch.manual_seed(0)
    sen = SEN(width=2, stacks=1, levels=1)  # untrained and tiny: its estimates differ from the shipped SEN's
    src = _sources()
    pool = build_pool(src, 3, 16, flow_model=sen, chunk=2)  # flows='sen' is the default
    assert pool["flow"].shape == (3, 2, 16, 16) and pool["flow"].dtype == torch.float32
    ref = torch.cat([estimate_flow(pool["blurred"][i:i + 1], model=sen, ensemble=False) for i in range(3)])
    torch.testing.assert_close(pool["flow"], ref, atol=1e-6, rtol=1e-5)
    # 'sen-ensemble': the 8-symmetry ensemble's flows (what pd.deblur deconvolves with by default)
    ens = build_pool(src, 3, 16, flows="sen-ensemble", flow_model=sen, chunk=2)
    ref_ens = torch.cat([estimate_flow(ens["blurred"][i:i + 1], model=sen) for i in range(3)])
    torch.testing.assert_close(ens["flow"], ref_ens, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(ens["flow"], pool["flow"], atol=1e-3)
    assert not torch.allclose(pool["flow"], pool["true_flow"], atol=1.0)
    # the true flow is kept next to the estimate
    assert torch.equal(pool["true_flow"], _dataset_rows(src, 3, 16, "23", 0.01, 0, [0, 1, 2])["flow"])


def test_pool_context_blurs_and_estimates_the_large_crop_and_keeps_its_centre():
    """context=C: every tensor is the centre crop² of the pool of C² crops — the flow estimated on
    the C² image (not on the centre alone), the blurred centre holding light from outside it."""
    torch.manual_seed(0)
    sen = SEN(width=2, stacks=1, levels=1)
    src = _sources()
    pool = build_pool(src, 3, 8, flow_model=sen, chunk=2, context=16)
    big = build_pool(src, 3, 16, flow_model=sen, chunk=2)
    for k in ("blurred", "sharp", "flow", "true_flow"):
        assert pool[k].shape == (3, big[k].shape[1], 8, 8) and pool[k].is_contiguous()
        assert torch.equal(pool[k], big[k][..., 4:12, 4:12]), k
    own = torch.cat([estimate_flow(pool["blurred"][i:i + 1], model=sen, ensemble=False) for i in range(3)])
    assert not torch.allclose(pool["flow"], own, atol=1e-3)  # not the centre's own estimate
    # the centre's blur is the large image's (light from outside it), not K(flow) of the centre alone
    r = pool["blurred"].double() - MotionBlur(pool["true_flow"].double())(pool["sharp"].double())
    r_big = big["blurred"].double() - MotionBlur(big["true_flow"].double())(big["sharp"].double())
    assert float(r_big.std()) < 0.012 and float(r.abs().max()) > 0.1
    # odd margins round down; context == crop is the default
    odd = build_pool(src, 2, 7, flows="true", context=12)
    assert torch.equal(odd["sharp"], build_pool(src, 2, 12, flows="true")["sharp"][..., 2:9, 2:9])
    assert torch.equal(build_pool(src, 2, 8, flows="true", context=8)["blurred"],
                       build_pool(src, 2, 8, flows="true")["blurred"])


@pytest.mark.parametrize("context", [7, 8.0, True, "16"])
def test_pool_bad_context(context):
    with pytest.raises(ValueError, match=r"^context must be an int >= crop \(8\)"):
        build_pool(_sources(), 2, 8, flows="true", context=context)


def test_pool_lives_on_the_requested_device():
    # 'meta' stands in for a GPU on this machine: the tensors must be moved to the device asked for
    pool = build_pool(_sources(), 2, 8, flows="true", device="meta")
    assert {v.device.type for v in pool.values()} == {"meta"}
    assert set(pool) == {"blurred", "sharp", "flow", "true_flow"}


def test_pool_bad_flows():
    with pytest.raises(ValueError, match=r"^flows must be 'sen', 'sen-ensemble' or 'true', got 'TRUE'"):
        build_pool(_sources(), 2, 8, flows="TRUE")
    with pytest.raises(ValueError, match=r"^flows must be 'sen', 'sen-ensemble' or 'true', got 'estimated'"):
        build_pool(_sources(), 2, 8, flows="estimated")


# --------------------------------------------------------------------- DeconvolutionProducer
class _Identity(nn.Module):
    """Stand-in generator ``G(I*|O) = I*`` in float64 (RPGANPrior needs one parameter)."""

    def __init__(self):
        super().__init__()
        self.one = nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, deconv, blurred):
        return deconv * self.one


_H = 8


def _producer_pool():
    g = torch.Generator().manual_seed(0)
    o = torch.rand(3, 3, _H, _H, generator=g, dtype=torch.float64)
    flow = torch.zeros(3, 2, _H, _H, dtype=torch.float64)
    flow[:, 0] = 3.0
    flow[:, 1] = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)[:, None, None]
    flow += 0.5 * torch.rand(3, 2, _H, _H, generator=g, dtype=torch.float64)
    return {"blurred": o, "sharp": o.clone(), "flow": flow}


def _dense_blur(flow):
    """The (HW, HW) matrix of MotionBlur(flow) on one channel, probed with unit images."""
    n = _H * _H
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, _H, _H)
    return MotionBlur(flow[None].expand(n, -1, -1, -1))(eye).reshape(n, n).T


def _normal_system(pool, i, beta, z):
    """``A = KᵀK + βI`` and ``b = βz + KᵀO`` of pool image ``i`` (channels as columns)."""
    K = _dense_blur(pool["flow"][i])
    y = pool["blurred"][i].reshape(3, -1).T
    A = K.T @ K + beta * torch.eye(_H * _H, dtype=torch.float64)
    return A, beta * z + K.T @ y, y


def test_deconvolve_levels_are_dense_hqs_x_steps():
    pool = _producer_pool()
    prod = DeconvolutionProducer(_Identity(), pool, levels=3, noise_level=0.01, cg_iters=200, cg_tol=1e-12, chunk=2)
    idx = torch.tensor([2, 0, 1])
    for level in (1, 2, 3):
        out = prod.deconvolve(_Identity(), idx, level)
        assert out.shape == (3, 3, _H, _H) and out.dtype == torch.float64
        for j, i in enumerate(idx.tolist()):
            z = pool["blurred"][i].reshape(3, -1).T  # Z_0 = O; the identity G keeps Z_k = I*_k
            for k in range(level):
                A, b, _ = _normal_system(pool, i, prod.betas[k], z)
                z = torch.linalg.solve(A, b)
            torch.testing.assert_close(out[j], z.T.reshape(3, _H, _H), atol=1e-6, rtol=0)


def test_deconvolve_uses_the_producers_cg_tolerance():
    pool = _producer_pool()
    # A loose tolerance stops CG early: the relative residual is below 0.3 but far above the
    # 1e-4 that HQS would reach with its own default.
    prod = DeconvolutionProducer(_Identity(), pool, levels=3, noise_level=0.01, cg_iters=200, cg_tol=0.3, chunk=2)
    out = prod.deconvolve(_Identity(), torch.tensor([0, 1, 2]), 1)
    for i in range(3):
        A, b, _ = _normal_system(pool, i, prod.betas[0], pool["blurred"][i].reshape(3, -1).T)
        x = out[i].reshape(3, -1).T
        rel = float((A @ x - b).norm() / b.norm())
        assert 1e-2 < rel <= 0.3, (i, rel)


class _FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_deconvolve_draws_no_progress_bars_even_on_a_terminal(monkeypatch):
    # the producer runs inside a training loop with its own progress bar: HQS must stay quiet
    fake = _FakeTerminal()
    monkeypatch.setattr(sys, "stderr", fake)
    pool = _producer_pool()
    prod = DeconvolutionProducer(_Identity(), pool, levels=2, noise_level=0.01, cg_iters=3, chunk=2)
    out = prod.deconvolve(_Identity(), torch.tensor([0, 1]), 2)
    assert out.shape == (2, 3, _H, _H)
    assert fake.getvalue() == ""
