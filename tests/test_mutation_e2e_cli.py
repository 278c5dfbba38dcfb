"""Tests that kill the surviving mutants of ``nets/_e2e.py`` and of ``deblur --net`` in ``pnpdeblur/cli/``.

Found by planting one-token mutants by hand (docs/mutation.md, "New code of the thirty-eighth and
thirty-ninth sessions"). Each test names the mutant it kills. The references are the networks'
own ``forward`` in eval mode without gradients, or the nets' public attributes, never the code
under test.
"""
import numpy as np
import torch
from torch import nn

from pnpdeblur import nets
from pnpdeblur.nets._e2e import check_input

from _nets import randomise_state


def _deepdeblur():
    torch.manual_seed(0)
    return randomise_state(nets.DeepDeblur(features=4, blocks=1, scales=2), seed=1, scale=0.1)


# -- PhotoRestorer.restore ---------------------------------------------------------------------
def test_restore_gives_an_eval_net_back_in_eval_mode():
    # kills `self.train(training)` -> `self.train(True)`: the mode the net had is restored, not "train"
    net = nets.DeblurGANGenerator(features=4, blocks=1).eval()
    photo = np.random.default_rng(0).random((16, 16, 3))
    net.restore(photo)
    assert not net.training and not any(m.training for m in net.modules())
    net.train()
    net.restore(photo)
    assert net.training and all(m.training for m in net.modules())


def test_restore_records_no_graph_and_accumulates_no_gradient():
    # kills `torch.no_grad()` -> `torch.enable_grad()`: "without gradients" (the docstring)
    net = _deepdeblur()
    assert all(p.requires_grad for p in net.parameters())
    chw = torch.rand(3, 16, 16)
    out = net.restore(chw)
    assert isinstance(out, torch.Tensor) and not out.requires_grad and out.grad_fn is None
    with torch.no_grad():
        ref = net.eval()(chw[None])[0].clamp(0, 1)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    assert all(p.grad is None for p in net.parameters())


# -- check_input(..., net=) --------------------------------------------------------------------
class _IntWeights(nn.Module):
    """A module whose only parameter is an integer table: it has no floating-point weights."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.arange(4), requires_grad=False)


def test_a_net_without_float_weights_puts_no_dtype_on_the_input():
    # kills `next(..., None)` -> `next(...)` (StopIteration) and `w is None or` -> `w is None and`
    # (AttributeError on None.device): with no floating-point weight there is nothing to match
    for net in (nn.Identity(), _IntWeights()):
        for dtype in (torch.float16, torch.float32, torch.float64):
            x = torch.rand(1, 3, 4, 4, dtype=dtype)
            assert check_input(x, 3, "x", net=net) is x


# -- deblur --net: _each_file ------------------------------------------------------------------
class _Invert(nn.Module):
    """A registered stand-in for a single-image net: its restore is 1 - photo."""

    @classmethod
    def pretrained(cls):
        return cls()

    def restore(self, photo):
        return 1.0 - photo


def test_a_type_error_while_writing_is_named_and_the_rest_written(tmp_path, monkeypatch, capsys):
    # kills `except (OSError, ValueError, TypeError)` -> `(OSError, ValueError)` in _each_file: an
    # encoder's TypeError on one result fails that file only, like a full disk
    from skimage import io

    from pnpdeblur import cli
    from test_cli import _save

    monkeypatch.setitem(cli.DEBLUR_NETS, "invert", _Invert)
    rng = np.random.default_rng(1)
    a = _save(tmp_path / "in" / "a.png", rng.integers(0, 256, (12, 14, 3), dtype=np.uint8))
    b = _save(tmp_path / "in" / "b.png", rng.integers(0, 256, (12, 14, 3), dtype=np.uint8))
    real = cli._imsave

    def imsave(path, img):
        if path.name == "a.png":
            raise TypeError("cannot write mode F as PNG")
        real(path, img)

    monkeypatch.setattr(cli._deblur, "_imsave", imsave)
    out = tmp_path / "out"
    assert cli.main(["deblur", str(a), str(b), "-o", str(out), "--net", "invert", "--no-progress"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"pnpdeblur: cannot write the result of {a}: cannot write mode F as PNG"
    assert err[-1] == f"pnpdeblur: 1 input(s) failed: {a}"
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]
    assert np.array_equal(io.imread(str(out / "b.png")), 255 - io.imread(str(b)))
