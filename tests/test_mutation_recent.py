"""Gaps found by planting bugs by hand in the code written after the fortieth session's record
(docs/mutation.md, "Semantic bugs planted by hand in the recent code"): the memory reading, the
weight tables' default limit, the small-photo rules of the camera-shake pipeline and the folded
batch norms of SEN. Each test failed with its planted bug and passes on the library."""
from __future__ import annotations

import os
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import pnpdeblur as pd
import pnpdeblur._memory as mem
import pnpdeblur.camera_shake as cs
from pnpdeblur.estimation import kernel as km
from pnpdeblur.nets import SEN
from pnpdeblur.operators import _segment as seg

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MiB, GiB = 2**20, 2**30


# -- the memory this process may use --------------------------------------------------------------


def _no_cgroup(monkeypatch, tmp_path):
    monkeypatch.setattr(mem, "CGROUP_LIMIT_FILES", (str(tmp_path / "absent_v2"), str(tmp_path / "absent_v1")))


def test_an_undeterminable_page_count_is_no_memory(monkeypatch, tmp_path):
    # POSIX sysconf returns -1 for a value it cannot determine: that is "unknown", never a negative size
    def sysconf(name):
        return {"SC_PHYS_PAGES": -1, "SC_PAGE_SIZE": 4096}[name]

    monkeypatch.setattr(mem.os, "sysconf", sysconf)
    _no_cgroup(monkeypatch, tmp_path)
    assert mem._physical_bytes() is None
    assert mem.machine_memory_bytes() is None
    limit = tmp_path / "memory.max"
    limit.write_text(f"{3 * GiB}\n")
    monkeypatch.setattr(mem, "CGROUP_LIMIT_FILES", (str(limit),))
    assert mem.machine_memory_bytes() == 3 * GiB  # the container's limit alone


# The control-group files as the kernel documents them: cgroup v2's "memory.max" in the unified
# hierarchy (Documentation/admin-guide/cgroup-v2.rst), cgroup v1's "memory.limit_in_bytes" in the
# memory controller's hierarchy (Documentation/admin-guide/cgroup-v1/memory.rst), mounted under
# /sys/fs/cgroup (v1: one folder per controller).
KERNEL_V2_LIMIT = "/sys/fs/cgroup/memory.max"
KERNEL_V1_LIMIT = "/sys/fs/cgroup/memory/memory.limit_in_bytes"


def test_the_limit_files_are_the_kernels_v2_then_v1_files():
    assert mem.CGROUP_LIMIT_FILES == (KERNEL_V2_LIMIT, KERNEL_V1_LIMIT)


def _independent_memory() -> int:
    """min(MemTotal, the documented control-group limits that hold a number)."""
    with open("/proc/meminfo") as fh:
        known = [next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemTotal:"))]
    for path in (KERNEL_V2_LIMIT, KERNEL_V1_LIMIT):
        if os.path.exists(path):
            with open(path) as fh:
                raw = fh.read().strip()
            if raw.isdigit() and int(raw) > 0:
                known.append(int(raw))
                break
    return min(known)


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="needs Linux's /proc/meminfo")
def test_this_machines_memory_is_the_lower_of_meminfo_and_its_control_group():
    assert abs(mem.machine_memory_bytes() - _independent_memory()) <= 16 * 4096  # pages the kernel keeps


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="needs Linux's /proc/meminfo")
def test_the_library_wide_weight_tables_get_the_machines_default_limit():
    # WEIGHT_TABLES is built at import: its limit must be the default of this machine (an eighth of the
    # memory, shared by a torchrun job's processes, within [768 MiB, 8 GiB]), or the variable's value
    raw = os.environ.get("PNPDEBLUR_WEIGHT_TABLE_BYTES")
    if raw is not None:
        assert seg.WEIGHT_TABLES.max_bytes == int(raw)
        return
    local = os.environ.get("LOCAL_WORLD_SIZE", "")
    processes = int(local) if local.isdigit() and int(local) > 0 else 1
    want = min(8 * GiB, max(768 * MiB, _independent_memory() // processes // 8))
    assert abs(seg.WEIGHT_TABLES.max_bytes - want) <= 16 * 4096
    assert seg.FLOW_CACHE.max_bytes != seg.WEIGHT_TABLES.max_bytes or want == 256 * MiB  # not the flow cache's


# -- the camera-shake pipeline on small photos ------------------------------------------------------


def _largest_odd_at_most(bound: float) -> int:
    return max(k for k in range(1, int(bound) + 2, 2) if k <= bound)


@pytest.mark.parametrize("shape", [(96, 128), (2, 3, 96, 128), (1, 1, 160, 120), (5, 720, 1280)])
def test_default_kernel_size_reads_the_last_two_axes(shape):
    # documented for a shape (..., H, W): a batch's (N, C, H, W) gets the size of its images
    h, w = shape[-2:]
    want = min(31, max(3, _largest_odd_at_most(min(h, w) / 6)))
    assert km.default_kernel_size(shape) == want == km.default_kernel_size((h, w))


@pytest.mark.parametrize("shape, size", [((300, 400), 51), ((600, 320), 59), ((96, 120), 31)])
def test_a_too_large_support_names_the_default_of_that_photo(shape, size):
    # the default is capped at 31 px: on a 300 px photo it is 31, not the 49 px bound
    side = min(shape)
    bound = _largest_odd_at_most(side / 6)
    default = min(31, bound)
    with pytest.warns(UserWarning) as rec:
        got = cs.check_shake_kernel_size(size, shape, warn=True)
    assert got == size
    message = str(rec[0].message)
    assert message.startswith(f"kernel_size {size} is too large for a photo whose shorter side is {side} px: ")
    assert message.endswith(f"pass kernel_size <= {bound}, or leave it unset (default {default} here)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the bound itself, above the 31-px default on a large photo, is no warning
        assert cs.check_shake_kernel_size(bound, shape, warn=True) == bound


def _small_photo_warnings(shape):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        cs.warn_if_small(shape)
    return [str(r.message) for r in rec]


@pytest.mark.parametrize("shape, warned", [((191, 500), True), ((192, 500), False), ((500, 192), False),
                                           ((150, 400), True), ((400, 150), True), ((2, 3, 150, 400), True),
                                           ((1, 1, 192, 192), False)])
def test_the_small_photo_warning_reads_the_shorter_side_against_192_px(shape, warned):
    said = _small_photo_warnings(shape)
    h, w = shape[-2:]
    assert said == ([f"pd.deblur_shake estimates the kernel on a {h}x{w} px photo: below 192 px on the shorter "
                     + said[0].split("on the shorter ", 1)[1]] if warned else [])


def test_a_batch_with_one_image_deblurred_still_says_what_the_estimate_is_worth(monkeypatch):
    # image 0 looks sharp (a 1-px estimate, left unchanged), image 1 is deblurred with a long estimate given
    # as kernel_size 31 on 64 px: the too-large and small-photo warnings concern image 1's result
    import pnpdeblur.solvers as solvers

    estimates = iter([1, 31])

    def estimate(image, size):
        k = np.zeros((size, size))
        length = next(estimates)
        k[size // 2, size // 2 - length // 2:size // 2 + length // 2 + 1] = 1.0 / length
        return k[None]

    monkeypatch.setattr(cs, "estimate_kernel", estimate)
    monkeypatch.setattr(solvers, "hqs", lambda y, K, prior, **kw: SimpleNamespace(x=y.clone(), history=[]))
    photos = np.random.default_rng(1).random((2, 1, 64, 64)).astype(np.float32)
    with pytest.warns(UserWarning) as rec:
        res = pd.deblur_shake(torch.from_numpy(photos), 31, pd.priors.TV(), noise_level=0.01)
    assert res.unchanged == [True, False]
    said = [str(r.message) for r in rec]
    assert any(m.startswith("pd.deblur_shake returned image(s) [0] unchanged") for m in said)
    assert any(m.startswith("kernel_size 31 is too large for a photo whose shorter side is 64 px") for m in said)
    assert any(m.startswith("pd.deblur_shake estimates the kernel on a 64x64 px photo") for m in said)


# -- SEN's folded batch norms -----------------------------------------------------------------------


def _tiny_sen(seed=0) -> SEN:
    torch.manual_seed(seed)
    net = SEN(width=4, stacks=2, levels=1).double()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.2, 3.0)
    return net.eval()


def test_eval_estimate_runs_no_batch_norm_layer():
    # the folded stacks carry no batch norm: none of the module's own may run in eval mode
    net = _tiny_sen()
    ran = []
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.register_forward_hook(lambda mod, inp, out: ran.append(mod))
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    net.estimate(x)
    net.estimate(x)
    assert ran == []
    net.train()
    net.estimate(x)  # training mode: the module itself, batch statistics and all
    assert len(ran) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_the_fold_follows_weights_assigned_as_new_tensors():
    # load_state_dict(assign=True) swaps in another net's tensors, built by the same steps: their version
    # counters equal the old ones, so only the storage tells the fold that the weights changed
    net = _tiny_sen(1)
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    net.estimate(x)
    other = _tiny_sen(2)
    net.load_state_dict(other.state_dict(), assign=True)
    with torch.no_grad():
        want = other(x)[-1]  # 16 px: a multiple of the stride already
    got = net.estimate(x)
    gap = torch.minimum((got - want).abs().sum(1), (got + want).abs().sum(1)).max()
    assert float(gap) < 1e-10
