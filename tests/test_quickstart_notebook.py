"""``examples/quickstart.ipynb`` is stored as a clean notebook.

``make test`` runs the notebook itself (``--nbmake tests examples``, its cells carry their own
assertions); this checks what running it cannot: that it is committed without outputs.
"""
import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_is_stored_without_outputs():
    # outputs would go stale (and bloat the repository) as the shipped models change
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert nb["nbformat"] == 4 and len(code) >= 5
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
