"""The README's Python examples run as written (users copy them first)."""
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run_in_order():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 2
    ns: dict = {}
    for code in blocks:
        exec(compile(code, str(README), "exec"), ns)  # noqa: S102 - our own documentation
    # the examples end with a restored image and a flow gradient; check they are real results
    assert np.isfinite(ns["restored"]).all() and ns["restored"].shape == ns["sharp"].shape
    assert ns["flow_t"].grad is not None and float(ns["flow_t"].grad.abs().sum()) > 0
