"""Package data reaches users: build a wheel offline, install it elsewhere, load from there.

The wheel is built from a copy of the repository's files (tracked plus untracked,
not-ignored ones, as ``git ls-files`` lists them) in a temp folder, so the build never
writes ``build/`` or ``*.egg-info`` into the working tree. It is installed with
``pip install --no-deps --target`` into a fresh folder, and a subprocess with only that
folder on ``PYTHONPATH`` (dependencies from the current environment) reports:

* where ``pnpdeblur`` was imported from (must be the installed copy, not the checkout);
* the CUDA source, read through ``pnpdeblur.operators._cupy.source()`` (the path the
  GPU code compiles from);
* every ``pnpdeblur/weights/*.safetensors`` of the installed package, loaded strictly
  through its architecture's ``from_checkpoint``, and ``DnCNN.pretrained()`` /
  ``SEN.pretrained()``.

The parent compares all of that with the files of the source tree (SHA-256). The test is
skipped, with the reason, when the environment cannot build a wheel offline (no git, no
pip, no setuptools >= 61 with a ``bdist_wheel`` command); a build that fails once those
are present is a failure, not a skip.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Run in the subprocess: imports the installed package and describes what it finds.
_PROBE = r"""
import hashlib, json, sys
from pathlib import Path

import pnpdeblur as pd
from pnpdeblur.checkpoints import read_header
from pnpdeblur.nets import _base
from pnpdeblur.operators import _cupy

def sha(b):
    return hashlib.sha256(b).hexdigest()

def attempt(fn):
    # Each check reports its own error, so one missing file fails only its own test.
    try:
        return fn()
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}

out = {"pnpdeblur_file": str(Path(pd.__file__).resolve()),
       "cuda_source": attempt(lambda: {"path": str(_cupy.SOURCE_PATH.resolve()),
                                       "sha": sha(_cupy.source().encode())}),
       "weights_dir": str(_base.WEIGHTS_DIR),
       "weights": {}, "pretrained": {}}

def load(f):
    arch = read_header(f)["architecture"]
    net = getattr(pd.nets, arch).from_checkpoint(f)
    return {"sha": sha(f.read_bytes()), "architecture": arch,
            "parameters": sum(p.numel() for p in net.parameters())}

def pretrained(cls):
    net = cls.pretrained()
    return {"path": str(cls.pretrained_path().resolve()), "type": type(net).__name__,
            "training": net.training}

for f in sorted(_base.WEIGHTS_DIR.glob("*.safetensors")):
    out["weights"][f.name] = attempt(lambda: load(f))
for name in ("DnCNN", "SEN"):
    out["pretrained"][name] = attempt(lambda: pretrained(getattr(pd.nets, name)))
print("PROBE " + json.dumps(out))
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _offline_build_unavailable() -> str | None:
    """Why this environment cannot build a wheel offline, or None when it can."""
    if shutil.which("git") is None:
        return "git is not installed (the repository copy is made from `git ls-files`)"
    if not (REPO / ".git").exists():
        return f"{REPO} is not a git checkout"
    if importlib.util.find_spec("pip") is None:
        return "pip is not importable in this environment"
    # Asked in a subprocess: importing setuptools here would fight the distutils shim
    # that other imports of this test session may already have set up.
    check = subprocess.run(
        [sys.executable, "-c",
         "import setuptools, sys\n"
         "if int(setuptools.__version__.split('.')[0]) < 61: sys.exit('setuptools ' + setuptools.__version__ + ' < 61')\n"
         "try:\n    import setuptools.command.bdist_wheel\n"  # setuptools >= 70.1
         "except ImportError:\n    import wheel.bdist_wheel\n"],
        capture_output=True, text=True, timeout=60,
    )
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["?"])[-1]
        return f"setuptools >= 61 with a bdist_wheel command is not available offline ({last})"
    return None


def _copy_repository(dst: Path) -> None:
    """Copy the files git would ship (tracked + untracked-not-ignored, existing) to dst."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, listing):
        src = REPO / rel
        if src.is_file():  # tracked files deleted in the working tree are skipped
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    shown = " ".join(str(c) for c in cmd[:6]) + (" ..." if len(cmd) > 6 else "")
    assert res.returncode == 0, f"{shown} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the wheel from a copy of the repository and install it into a fresh folder."""
    reason = _offline_build_unavailable()
    if reason:
        pytest.skip(f"cannot build a wheel offline: {reason}")
    root = tmp_path_factory.mktemp("package_data")
    src, dist, target = root / "src", root / "dist", root / "site"
    _copy_repository(src)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PIP_NO_INPUT": "1"}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "-q", "-w", str(dist), "."], cwd=src, env=env)
    wheels = sorted(dist.glob("pnpdeblur-*.whl"))
    assert len(wheels) == 1, f"expected one pnpdeblur wheel, got {wheels}"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
          "--target", str(target), str(wheels[0])], env=env)
    return {"src": src, "wheel": wheels[0], "site": target.resolve(), "root": root}


@pytest.fixture(scope="module")
def probe(installed):
    """What the installed package reports about itself (run from a neutral folder)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(installed["site"])
    res = _run([sys.executable, "-c", _PROBE], cwd=installed["root"], env=env)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("PROBE ")]
    assert len(line) == 1, res.stdout
    return json.loads(line[0][len("PROBE "):])


def test_wheel_lists_the_package_data(installed):
    src = installed["src"]
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    expected = sorted(p.relative_to(src).as_posix() for p in (src / "pnpdeblur").glob("*/_cuda/*.cu"))
    assert {"pnpdeblur/operators/_cuda/segment_blur.cu", "pnpdeblur/priors/_cuda/tv_prox.cu"} <= set(expected)
    expected += sorted(p.relative_to(src).as_posix() for p in (src / "pnpdeblur" / "weights").glob("*"))
    assert any(e.endswith(".cu") for e in expected) and any(e.endswith(".safetensors") for e in expected)
    missing = [e for e in expected if e not in names]
    assert not missing, f"package data missing from the wheel: {missing}"


def test_installed_package_is_imported_not_the_checkout(installed, probe):
    site = installed["site"]
    assert Path(probe["pnpdeblur_file"]) == site / "pnpdeblur" / "__init__.py"
    assert Path(probe["weights_dir"]).resolve() == site / "pnpdeblur" / "weights"


def test_cuda_source_is_installed_and_readable(installed, probe):
    site, src = installed["site"], installed["src"]
    info = probe["cuda_source"]
    assert "error" not in info, f"the installed CUDA source is not readable: {info}"
    assert Path(info["path"]) == site / "pnpdeblur" / "operators" / "_cuda" / "segment_blur.cu"
    assert info["sha"] == _sha(src / "pnpdeblur" / "operators" / "_cuda" / "segment_blur.cu")


def test_every_shipped_weight_file_is_installed_and_loads(installed, probe):
    src_weights = {p.name: p for p in (installed["src"] / "pnpdeblur" / "weights").glob("*.safetensors")}
    assert {"dncnn_small.safetensors", "sen_small.safetensors"} <= set(src_weights)
    assert set(probe["weights"]) == set(src_weights)
    for name, info in probe["weights"].items():
        assert "error" not in info, f"{name} does not load from the installed package: {info}"
        assert info["sha"] == _sha(src_weights[name]), f"{name} differs from the source tree"
        assert info["parameters"] > 0, name


def test_pretrained_loads_from_the_installed_copy(installed, probe):
    weights = installed["site"] / "pnpdeblur" / "weights"
    for name, fname in (("DnCNN", "dncnn_small.safetensors"), ("SEN", "sen_small.safetensors")):
        info = probe["pretrained"][name]
        assert "error" not in info, f"{name}.pretrained() fails from the installed package: {info}"
        assert Path(info["path"]) == weights / fname
        assert info["type"] == name
        assert info["training"] is False  # pretrained() returns eval mode
