"""The test cache folder (tests/conftest.py) is removed when its process ends, and only by it."""
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

_SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
import conftest
print(conftest._CACHE, flush=True)
pid = os.fork()
if pid == 0:          # a forked child that ends normally runs the atexit handlers too
    sys.exit(0)
os.waitpid(pid, 0)
print(os.path.isdir(conftest._CACHE), flush=True)   # still there for the parent
"""


def test_the_cache_folder_outlives_a_forked_child_and_not_its_process():
    out = subprocess.run([sys.executable, "-c", _SCRIPT.format(tests=str(TESTS))], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTEST_XDIST_WORKER_COUNT": "1"})
    assert out.returncode == 0, out.stderr
    cache, alive_after_child = out.stdout.split()[:2]
    assert Path(cache).name.startswith("pnpdeblur-test-cache-")
    assert alive_after_child == "True"
    assert not os.path.exists(cache)
