"""pnpdeblur._warn.warn_at_caller: the warning lands on the first line outside the package."""
import inspect
import os
import types

import pytest

import pnpdeblur
from pnpdeblur import _warn


def _library_function(depth):
    """Compile a chain of ``depth`` functions whose code claims to live inside the package."""
    path = os.path.join(os.path.dirname(pnpdeblur.__file__), "fake_module_for_tests.py")
    src = "def f0():\n    warn_at_caller('deep', UserWarning)\n"
    for k in range(1, depth):
        src += f"def f{k}():\n    f{k - 1}()\n"
    module = types.ModuleType("fake")
    module.warn_at_caller = _warn.warn_at_caller
    exec(compile(src, path, "exec"), module.__dict__)
    return getattr(module, f"f{depth - 1}")


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_reported_at_the_first_frame_outside_the_package(depth):
    f = _library_function(depth)
    with pytest.warns(UserWarning, match="^deep$") as record:
        line = inspect.currentframe().f_lineno + 1
        f()
    (w,) = record
    assert (w.filename, w.lineno) == (__file__, line)


def test_called_from_outside_it_is_the_callers_line():
    with pytest.warns(RuntimeWarning, match="^here$") as record:
        line = inspect.currentframe().f_lineno + 1
        _warn.warn_at_caller("here", RuntimeWarning)
    assert (record[0].filename, record[0].lineno, record[0].category) == (__file__, line, RuntimeWarning)
