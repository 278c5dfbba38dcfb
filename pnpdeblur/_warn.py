"""Warnings reported where the user called the library, however deep inside it they arise."""
from __future__ import annotations

import os
import sys
import warnings

__all__ = ["warn_at_caller"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_at_caller(message: str, category: type = UserWarning) -> None:
    """``warnings.warn`` with the stack level of the first frame outside pnpdeblur.

    A fixed ``stacklevel`` points at the right line only for one call path: ``estimate_flow``
    called by the user wants 2, called by ``pd.deblur`` it wants 3, by ``is_blurred`` more.
    Python 3.12's ``skip_file_prefixes`` does this; this helper also runs on 3.10 and 3.11.
    """
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
