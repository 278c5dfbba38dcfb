"""The quick-start notebook runs as shipped: its code cells, in order, in one namespace.

The notebook is the first thing many users open; it is not executed by any other test. Its
cells carry their own assertions (the adjoint dot test, every prior beating the blurred input).
"""
from __future__ import annotations

import json
import pathlib

import pytest

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def _code_cells() -> list[str]:
    nb = json.loads(NOTEBOOK.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_the_notebook_is_valid_json_with_code_cells():
    cells = _code_cells()
    assert len(cells) >= 3
    for src in cells:
        compile(src, str(NOTEBOOK), "exec")  # a syntax error is a broken notebook


def test_the_quickstart_notebook_runs(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)  # nothing it writes lands in the checkout
    ns: dict = {"__name__": "__quickstart__"}
    for src in _code_cells():
        exec(compile(src, str(NOTEBOOK), "exec"), ns)
    # what the cells promise: the adjoint identity and a restored image per prior
    assert abs(ns["lhs"] - ns["rhs"]) < 1e-10 * abs(ns["lhs"])
    assert set(ns["results"]) == {"TV", "DnCNN (shipped)", "DRUNet (shipped)"}
    psnr, sharp, blurred = ns["pd"].metrics.psnr, ns["sharp"], ns["np"].clip(ns["blurred"], 0, 1)
    for name, restored in ns["results"].items():
        assert restored.shape == sharp.shape, name
        assert psnr(restored, sharp) > psnr(blurred, sharp) + 1.0, name
    assert ns["fig"].axes  # the comparison figure was drawn
