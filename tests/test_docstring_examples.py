"""Every ``>>>`` example in a ``pnpdeblur`` docstring runs and prints what the docstring says.

One case per docstring that holds examples (its id is the object's qualified name), found with
:class:`doctest.DocTestFinder` in every module :func:`pkgutil.walk_packages` lists (but
``__main__``, which would run the command line). Each docstring runs in a namespace of its own
that holds nothing but ``__name__``: an example imports what it uses (``import numpy as np``,
``import pnpdeblur as pd``), so it runs as written when a user pastes it into a session, and
``pytest --doctest-modules pnpdeblur`` (which adds the module's globals) agrees with this file.

Options: ELLIPSIS and NORMALIZE_WHITESPACE (numpy's reprs wrap differently by width). Examples
print rounded floats or booleans with a margin, so that thread counts and BLAS do not change
them. ``# doctest: +SKIP`` is only for what cannot run here (CUDA, a user's file). A module that
cannot be imported because an optional dependency (cupy, bm3d) is missing is skipped.
"""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import pnpdeblur

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny images: threads only add latency

OPTIONAL = ("cupy", "cupyx", "bm3d")  # extras whose absence skips a module's examples
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules() -> list[str]:
    names = [pnpdeblur.__name__]
    for info in pkgutil.walk_packages(pnpdeblur.__path__, pnpdeblur.__name__ + ".", onerror=lambda name: None):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            names.append(info.name)
    return sorted(names)


def _collect() -> list:
    finder = doctest.DocTestFinder(exclude_empty=True)
    params = []
    for name in _modules():
        try:
            module = importlib.import_module(name)
        except ImportError as e:  # ModuleNotFoundError too
            if (e.name or "").split(".")[0] in OPTIONAL:
                params.append(pytest.param(None, id=name, marks=pytest.mark.skip(
                    reason=f"{name} needs the optional {e.name}")))
                continue
            raise
        for test in finder.find(module, name, globs={"__name__": name}):
            if test.examples:
                params.append(pytest.param(test, id=test.name))
    return params


CASES = _collect()


def test_the_package_has_examples():
    # the finder must see the docstrings (a refactor that hid them would pass every case vacuously)
    names = {p.id for p in CASES}
    assert len(CASES) >= 20, sorted(names)
    for expected in ("pnpdeblur.operators.motion.MotionBlur", "pnpdeblur.pipeline.deblur",
                     "pnpdeblur.solvers.cg.cg", "pnpdeblur.metrics.psnr"):
        assert expected in names


@pytest.mark.parametrize("test", CASES)
def test_docstring_example(test: doctest.DocTest):
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS, verbose=False)
    result = runner.run(test, out=report.append)
    assert result.attempted >= 1, f"{test.name}: every example is skipped"
    assert result.failed == 0, (f"{result.failed} of {result.attempted} examples of {test.name} failed "
                                f"({test.filename}, line {test.lineno + 1}):\n" + "".join(report))
