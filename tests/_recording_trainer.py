"""A stand-in for ``pnpdeblur.train.Trainer`` that builds everything but only records ``fit``."""
from typing import Any, Dict, List, Optional

import pnpdeblur.train as train_pkg


def record_trainers(monkeypatch, validation: Dict[str, float],
                    history: Optional[List[Dict[str, Any]]] = None) -> list:
    """Patch ``pnpdeblur.train.Trainer`` (which the recipes' ``main`` imports at call time).

    The stand-in is the real Trainer (model, data, optimiser, config are built and checked), except
    that ``fit`` trains nothing: it counts the call, sets ``step`` to the configured steps (what a
    finished run reports), ``last_validation`` to ``validation`` and, if given, ``history``. Returns
    the list the trainers made are appended to.
    """
    made = []

    class Recording(train_pkg.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.args, self.kwargs, self.fitted = args, kwargs, 0
            made.append(self)

        def fit(self, resume=True):
            self.fitted += 1
            self.step = self.cfg.steps
            self.last_validation = dict(validation)
            if history is not None:
                self.history = [dict(h) for h in history]
            return self

    monkeypatch.setattr(train_pkg, "Trainer", Recording)
    return made


def fake_clock(monkeypatch, module, start: float = 100.0, later: float = 101.2345) -> None:
    """``module.time.time()`` reads ``start`` the first time (a recipe's t0), ``later`` ever after."""
    readings = []

    def clock():
        readings.append(None)
        return start if len(readings) == 1 else later

    monkeypatch.setattr(module.time, "time", clock)
