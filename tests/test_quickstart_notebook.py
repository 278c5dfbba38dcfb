"""``examples/quickstart.ipynb`` runs from top to bottom, and its own checks hold.

The README points users to the notebook; nothing ran it before, so an API change could break it
unseen. Its code cells are executed in order in one namespace (as a kernel would), without
Jupyter; the cells carry their assertions (the dot test, each prior beating the blurred input,
``pd.deblur`` between the blurred input and the true-flow bound).
"""
import json
from pathlib import Path

import matplotlib

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def _code_cells():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    return [("".join(c["source"]), i) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]


def test_quickstart_notebook_is_stored_without_outputs():
    # outputs would go stale (and bloat the repository) as the shipped models change
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in nb["cells"] if c["cell_type"] == "code")


def test_quickstart_notebook_runs(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)  # anything it writes stays out of the checkout
    matplotlib.use("Agg")
    ns = {"__name__": "__main__"}
    cells = _code_cells()
    assert len(cells) >= 5
    try:
        for source, i in cells:
            exec(compile(source, f"{NOTEBOOK.name}, cell {i}", "exec"), ns)
    finally:
        plt.close("all")
    # what the cells built: three priors' results, the blind result and its bound
    assert set(ns["results"]) == {"TV", "DnCNN (shipped)", "DRUNet (shipped)"}
    assert ns["psnrs"]["blurred"] < ns["psnrs"]["pd.deblur"] < ns["psnrs"]["true flow"]
