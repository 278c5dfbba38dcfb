"""``scripts/undecorate.py``: decorated functions rewritten for mutmut keep their behaviour."""
import importlib.util
import pathlib
import textwrap

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "undecorate.py"
_spec = importlib.util.spec_from_file_location("undecorate", _PATH)
undecorate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(undecorate)

SOURCE = textwrap.dedent(
    '''
    calls = []

    def tag(label):
        def deco(f):
            def wrapper(*args, **kwargs):
                calls.append(label)
                return f(*args, **kwargs)
            return wrapper
        return deco

    def twice(f):
        return lambda *a: 2 * f(*a)

    @tag("outer")
    @twice
    def plus_one(x):
        return x + 1

    class Box:
        def __init__(self, v):
            self._v = v

        @property
        def v(self):
            """the value"""
            return self._v

        @v.setter
        def v(self, new):
            if new < 0:
                raise ValueError("v must be >= 0")
            self._v = new

        @staticmethod
        def alone(x):
            return -x

        @staticmethod
        @twice
        def doubled(x):
            return x - 1

        @nb.njit(cache=True)
        def compiled(x):
            return x
    '''
)


def _run(source):
    ns = {"nb": None}
    src = source.replace("    @nb.njit(cache=True)\n", "")  # no numba in the executed sample
    exec(compile(src, "<sample>", "exec"), ns)
    return ns


def _behaviour(ns):
    box = ns["Box"](3)
    box.v = 5
    with pytest.raises(ValueError, match="^v must be >= 0"):
        box.v = -1
    return (ns["plus_one"](2), list(ns["calls"]), box.v, ns["Box"].alone(4),
            ns["Box"].doubled(4), ns["Box"].v.__doc__)


def test_rewrite_removes_decorators_and_keeps_behaviour():
    new, names = undecorate.undecorate_source(SOURCE)
    assert names == ["plus_one", "Box.v", "Box.v", "Box.doubled"]
    assert "@property" not in new and "@v.setter" not in new and "@twice" not in new
    assert "    v = property(v)\n" in new
    assert "    v = v.setter(_v_undecorated)\n" in new
    assert "plus_one = tag(\"outer\")(twice(plus_one))\n" in new
    assert "    doubled = staticmethod(twice(doubled))\n" in new
    # kept: a lone staticmethod (mutmut handles it) and numba (compiled code cannot trampoline)
    assert "    @staticmethod\n    def alone(x):" in new
    assert "    @nb.njit(cache=True)\n    def compiled(x):" in new
    assert _behaviour(_run(new)) == _behaviour(_run(SOURCE)) == (6, ["outer"], 5, -4, 6, "the value")


def test_rewrite_of_the_package_modules_is_valid_and_complete():
    root = _PATH.parents[1] / "pnpdeblur"
    rewritten = {}
    for path in sorted(root.rglob("*.py")):
        new, names = undecorate.undecorate_source(path.read_text(encoding="utf-8"))
        if names:
            rewritten[path.relative_to(root).as_posix()] = names
    # the decorated functions mutmut would skip in the core, by name
    assert "SegmentBlurFn.backward" in rewritten["operators/_segment.py"]
    assert rewritten["operators/_segment.py"].count("FlowCache.max_bytes") == 2
    assert "LinearOperator.T" in rewritten["operators/base.py"]
