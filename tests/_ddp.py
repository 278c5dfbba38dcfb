"""Launch a script as a torchrun-style gloo group of processes on the CPU (the DDP tests)."""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(script: Path, cwd: Path, world: int = 2, timeout: float = 120, tries: int = 3) -> List[str]:
    """Run ``script`` as ranks 0..world-1 (env RANK/LOCAL_RANK/WORLD_SIZE/MASTER_*, one thread each,
    no GPU, the repository on PYTHONPATH); assert that every rank exits 0; return their outputs.

    The port is free when chosen but may be taken before rank 0 binds it (other tests run
    beside this one): a run that failed only because the address was in use is retried on
    a new port, up to ``tries`` runs. So is a run where a rank was aborted by the C++ runtime
    with no Python error ("terminate called without an active exception", SIGABRT): gloo's
    teardown can do that on a loaded machine (seen in CI before the library's exit hook
    waited for every rank); a wrong result or a Python error is never retried.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(MASTER_ADDR="127.0.0.1", WORLD_SIZE=str(world),
               CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    for attempt in range(tries):
        env["MASTER_PORT"] = str(free_port())
        procs = [subprocess.Popen([sys.executable, str(script)], cwd=cwd, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True,
                                  env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(world)]
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
        codes = [p.returncode for p in procs]
        ok = codes == [0] * world
        if ok or attempt == tries - 1 or not _transient(codes, outs):
            break
    assert ok, "\n".join(outs)
    return outs


def _transient(codes: List[int], outs: List[str]) -> bool:
    """Whether a failed run failed only for a reason that is not the code under test."""
    if any("address already in use" in o.lower() for o in outs):
        return True
    failed = [(c, o) for c, o in zip(codes, outs) if c != 0]
    aborted = "terminate called without an active exception"
    return bool(failed) and all(c == -signal.SIGABRT and aborted in o and "Traceback" not in o for c, o in failed)
