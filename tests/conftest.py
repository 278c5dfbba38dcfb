"""Test-wide settings: caches in a temp folder, headless plotting, fixed seeds."""
import atexit
import os
import shutil
import tempfile

_CACHE = tempfile.mkdtemp(prefix="pnpdeblur-test-cache-")
_OWNER = os.getpid()


def _remove_cache() -> None:
    # only in the process that made it: a forked child (mutmut's mutant runs) that exits normally
    # runs the same handler, and must not delete the folder its parent still uses
    if os.getpid() == _OWNER:
        shutil.rmtree(_CACHE, ignore_errors=True)


atexit.register(_remove_cache)  # one folder per test process, not one left behind per run
os.environ["MPLCONFIGDIR"] = os.path.join(_CACHE, "mpl")
os.environ["TORCH_HOME"] = os.path.join(_CACHE, "torch")
os.environ["XDG_CACHE_HOME"] = os.path.join(_CACHE, "xdg")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# One intra-op thread per pytest-xdist worker: `make test` runs 2 workers on 2 cores, and
# oversubscribed threads make small convolutions many times slower. An explicit
# OMP_NUM_THREADS wins (scripts/mutation.sh sets 1: a thread pool started before mutmut
# forks its mutant processes hangs them).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) >= 1:
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
else:
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny-tensor tests (``pytestmark = usefixtures(...)``).

    On tiny tensors torch's thread pool only adds wake-up latency: a 5×6 irfft2 took 50 ms
    with 2 threads on the busy 2-core machine, 20 µs with 1.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng():
    """A seeded numpy Generator, fresh for each test."""
    return np.random.default_rng(1234)


def cuda_available() -> bool:
    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
