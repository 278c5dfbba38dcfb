"""A process-wide cache of scikit-image photo decodes for tests that build many datasets."""
import numpy as np

_PHOTOS = {}


def memoise_sample_image(monkeypatch, owner) -> None:
    """Replace ``owner.sample_image`` by a copy-returning cache of the real one (one decode per photo)."""
    real = owner.sample_image

    def cached(name="astronaut", size=None, channels=None, dtype=np.float32):
        key = (real, name, size, channels, np.dtype(dtype).str)
        if key not in _PHOTOS:
            _PHOTOS[key] = real(name, size, channels, dtype)
        return _PHOTOS[key].copy()

    monkeypatch.setattr(owner, "sample_image", cached)
