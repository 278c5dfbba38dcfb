"""The data generators take a ``torch.Generator`` as DESIGN.md says ("every generator takes
``seed`` or a ``numpy.random.Generator``/``torch.Generator``"); they refused it with a TypeError.

One 63-bit draw from the torch generator seeds a numpy Generator: the same torch state gives the
same sample, and the torch stream advances as a numpy Generator's would.
"""
import numpy as np
import pytest
import torch

from pnpdeblur import data
from pnpdeblur.data._utils import as_generator

PHOTO = np.random.default_rng(0).random((48, 48, 3))

# name -> call(seed) returning the sample's arrays
DRAWS = {
    "random_motion_flow": lambda s: [data.random_motion_flow((12, 12), seed=s)],
    "random_motion_flows": lambda s: [data.random_motion_flows(2, (12, 12), seed=s).numpy()],
    "sample_camera_motion": lambda s: [data.sample_camera_motion((12, 12), 8, seed=s).flow((12, 12))],
    "random_shake_kernel": lambda s: [data.random_shake_kernel(9, seed=s)],
    "random_camera_path": lambda s: [data.random_camera_path((12, 12), 3, seed=s).scene_position((12, 12), 1.0)],
    "synthesize_flow_blur": lambda s: (lambda r: [r.blurred, r.flow])(data.synthesize_flow_blur(PHOTO, seed=s)),
    "synthesize_video_blur": lambda s: (lambda r: [r.blurred, r.sharp])(
        data.synthesize_video_blur(PHOTO, shape=(12, 12), max_blur=4, seed=s, order=1)),
    "synthesize_video_sequence": lambda s: [b for b in data.synthesize_video_sequence(
        PHOTO, shape=(12, 12), max_blur=4, seed=s, order=1).blurred],
}


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_a_torch_generator_seeds_every_data_generator(name):
    draw = DRAWS[name]
    first = draw(torch.Generator().manual_seed(5))
    assert _same(first, draw(torch.Generator().manual_seed(5)))  # same torch state, same sample
    g = torch.Generator().manual_seed(5)
    draw(g)
    assert not _same(first, draw(g))  # the stream advanced
    # and it is the sample of the numpy Generator that the torch draw seeds
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=torch.Generator().manual_seed(5), dtype=torch.int64))
    assert _same(first, draw(np.random.default_rng(seed)))


def test_as_generator_kinds():
    g = np.random.default_rng(1)
    assert as_generator(g) is g
    t = torch.Generator().manual_seed(3)
    before = t.get_state().clone()
    rng = as_generator(t)
    assert isinstance(rng, np.random.Generator) and not torch.equal(t.get_state(), before)
    with pytest.raises(TypeError, match=r"^seed must be None, an int, a numpy.random.Generator or a "
                                        r"torch.Generator, got float$"):
        as_generator(1.5)
