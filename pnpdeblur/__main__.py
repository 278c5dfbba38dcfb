"""``python -m pnpdeblur …`` (and ``torchrun … -m pnpdeblur …``): the ``pnpdeblur`` command line."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
