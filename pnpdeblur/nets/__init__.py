"""Networks: denoisers, flow estimators and deblurring models (torch modules)."""
from .dncnn import DnCNN
from .sen import SEN

__all__ = ["DnCNN", "SEN"]
