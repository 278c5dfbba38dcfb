"""Networks: denoisers, flow estimators and deblurring models (torch modules)."""
from .dncnn import DnCNN

__all__ = ["DnCNN"]
