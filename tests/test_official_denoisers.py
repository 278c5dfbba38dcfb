"""``DRUNet.from_official`` and ``DnCNN.from_official``: the authors' (DPIR / KAIR) checkpoints.

No weights are downloaded. Each test builds, from ``torch.nn`` parts, a network with the authors'
module tree — the reference, written here from their published layout, independent of
pnpdeblur's classes and of the key mapping — gives it random weights (and batch-norm
statistics), saves its state dict with ``torch.save`` and checks that the loaded pnpdeblur net
computes the reference's forward. Then the ways a file can be wrong.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.nets import DnCNN, DRUNet
from pnpdeblur.nets.drunet import official_keys

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- reference: KAIR's UNetRes module tree ------------------------------------------------------
class _KairRes(nn.Module):
    def __init__(self, c, bias):
        super().__init__()
        self.res = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=bias), nn.ReLU(),
                                 nn.Conv2d(c, c, 3, padding=1, bias=bias))

    def forward(self, x):
        return x + self.res(x)


class _KairUNetRes(nn.Module):
    """in_nc = channels + 1 (the noise map last), additive skips, 2×2 strided (transposed) convs."""

    def __init__(self, channels, nc, nb, bias):
        super().__init__()
        self.m_head = nn.Conv2d(channels + 1, nc[0], 3, padding=1, bias=bias)
        for level, (a, b) in enumerate(zip(nc[:-1], nc[1:]), start=1):
            setattr(self, f"m_down{level}", nn.Sequential(*[_KairRes(a, bias) for _ in range(nb)],
                                                          nn.Conv2d(a, b, 2, stride=2, bias=bias)))
            setattr(self, f"m_up{level}", nn.Sequential(nn.ConvTranspose2d(b, a, 2, stride=2, bias=bias),
                                                        *[_KairRes(a, bias) for _ in range(nb)]))
        self.m_body = nn.Sequential(*[_KairRes(nc[3], bias) for _ in range(nb)])
        self.m_tail = nn.Conv2d(nc[0], channels, 3, padding=1, bias=bias)

    def forward(self, x, sigma):
        x0 = torch.cat((x, torch.full_like(x[:, :1], sigma)), dim=1)
        x1 = self.m_head(x0)
        x2 = self.m_down1(x1)
        x3 = self.m_down2(x2)
        x4 = self.m_down3(x3)
        y = self.m_body(x4)
        y = self.m_up3(y + x4)
        y = self.m_up2(y + x3)
        y = self.m_up1(y + x2)
        return self.m_tail(y + x1)


def _randomised(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.2)
    return module.double().eval()


@pytest.mark.parametrize("channels, nc, nb, bias", [(3, (8, 12, 16, 20), 2, False), (1, (4, 6, 8, 10), 1, True),
                                                    (3, (4, 4, 4, 4), 3, False)])
def test_drunet_from_official_computes_the_reference_forward(tmp_path, channels, nc, nb, bias):
    ref = _randomised(_KairUNetRes(channels, nc, nb, bias))
    torch.save(ref.state_dict(), tmp_path / "drunet.pth")
    net = DRUNet.from_official(tmp_path / "drunet.pth").double()
    assert net.config == dict(channels=channels, features=list(nc), blocks=nb, bias=bias, residual=False)
    assert not net.training
    x = torch.rand(2, channels, 16, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for sigma in (0.0, 25 / 255, 0.3):
        with torch.no_grad():
            torch.testing.assert_close(net(x, sigma), ref(x, sigma), rtol=1e-12, atol=1e-12)


def test_drunet_from_official_reads_the_paper_configuration(tmp_path):
    # DPIR's released drunet_color: widths 64-512, 4 blocks, no biases (built on the meta device: no memory)
    with torch.device("meta"):
        ref = _KairUNetRes(3, (64, 128, 256, 512), 4, False)
    state = {k: torch.zeros(v.shape) for k, v in ref.state_dict().items()}
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "drunet_color.pth")
    net = DRUNet.from_official(tmp_path / "drunet_color.pth")
    assert net.config == dict(channels=3, features=[64, 128, 256, 512], blocks=4, bias=False, residual=False)
    assert sum(p.numel() for p in net.parameters()) == 32_640_960  # the paper's colour DRUNet


def test_official_keys_default_to_the_papers_network():
    with torch.device("meta"):
        assert sorted(official_keys()) == sorted(_KairUNetRes(3, (8, 8, 8, 8), 4, False).state_dict())


def test_official_keys_cover_every_tensor_once():
    for blocks, bias in ((1, False), (4, False), (2, True)):
        mapping = official_keys(blocks, bias)
        ours = DRUNet(3, (4, 4, 4, 4), blocks, bias=bias).state_dict()
        assert sorted(mapping.values()) == sorted(ours)
        theirs = _KairUNetRes(3, (4, 4, 4, 4), blocks, bias).state_dict()
        assert sorted(mapping) == sorted(theirs)


def _kair_state():
    ref = _randomised(_KairUNetRes(3, (4, 6, 8, 10), 2, False)).float()
    return dict(ref.state_dict())


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("m_body.1.res.2.weight"), "missing"),
    (lambda s: s.__setitem__("m_extra.weight", torch.zeros(1)), "unexpected"),
    (lambda s: s.__setitem__("m_head.weight", torch.zeros(4, 3, 5, 5)),
     "m_head takes 3 channels and m_tail gives 3; a DRUNet takes the image plus one noise-level map"),
    (lambda s: s.__setitem__("m_head.weight", torch.zeros(0, 4, 3, 3)), "invalid DRUNet: features"),
    (lambda s: s.__setitem__("m_up2.1.res.0.weight", torch.zeros(6, 6, 5, 5)), "shape"),
    (lambda s: s["m_down2.0.res.0.weight"].view(-1).__setitem__(0, float("nan")), "NaN"),
    (lambda s: s.pop("m_down3.2.weight"), "m_down3.2.weight"),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith("m_tail")], "m_tail"),
])
def test_drunet_from_official_rejects_a_wrong_file(tmp_path, edit, message):
    state = _kair_state()
    edit(state)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=message) as err:
        DRUNet.from_official(tmp_path / "bad.pth")
    assert str(tmp_path / "bad.pth") in str(err.value)  # the message names the file


class Opaque:
    """Pickled by reference: loading it needs this module's code."""


def test_a_file_that_needs_code_to_load_is_refused_in_one_line(tmp_path):
    torch.save({"m_head.weight": torch.zeros(1), "cfg": Opaque()}, tmp_path / "code.pth")
    from pnpdeblur.nets import IRCNNBank

    for load in (DRUNet.from_official, IRCNNBank.from_official):  # load_official, read_torch_state
        with pytest.raises(CheckpointError) as err:
            load(tmp_path / "code.pth")
        msg = str(err.value)
        assert "\n" not in msg and "refused it (Unsupported global" in msg and "Opaque" in msg, msg
        assert "never runs code" in msg and "set to `False`" not in msg and "add_safe_globals" not in msg


def test_drunet_from_official_rejects_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        DRUNet.from_official(tmp_path / "absent.pth")
    (tmp_path / "corrupt.pth").write_bytes(b"\x80\x02not a checkpoint")
    with pytest.raises(CheckpointError, match="readable"):
        DRUNet.from_official(tmp_path / "corrupt.pth")
    torch.save(DnCNN(1, 4, 3).state_dict(), tmp_path / "dncnn.pth")
    with pytest.raises(CheckpointError, match="UNetRes"):
        DRUNet.from_official(tmp_path / "dncnn.pth")


def test_drunet_from_official_works_as_a_prior_with_dpirs_schedule(tmp_path):
    from pnpdeblur.priors import DRUNetPrior
    from pnpdeblur.solvers.schedules import DEFAULT_LAMBDA, DEFAULT_SIGMA_START, prior_schedule

    torch.save(_kair_state(), tmp_path / "drunet.pth")
    prior = DRUNetPrior(DRUNet.from_official(tmp_path / "drunet.pth"), cycle=False)
    assert prior_schedule(prior) == (DEFAULT_LAMBDA, DEFAULT_SIGMA_START)
    z = torch.rand(1, 3, 16, 16)
    out = prior(z, 0.1)
    assert out.shape == z.shape and bool(torch.isfinite(out).all())


# -- reference: KAIR's DnCNN (an nn.Sequential called ``model``) --------------------------------
class _KairDnCNN(nn.Module):
    def __init__(self, channels, nc, nb, batch_norm):
        super().__init__()
        layers = [nn.Conv2d(channels, nc, 3, padding=1), nn.ReLU()]
        for _ in range(nb - 2):
            layers.append(nn.Conv2d(nc, nc, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(nc, eps=1e-4))
            layers.append(nn.ReLU())
        layers.append(nn.Conv2d(nc, channels, 3, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return x - self.model(x)


def _kair_dncnn(channels, nc, nb, batch_norm, seed=0):
    ref = _KairDnCNN(channels, nc, nb, batch_norm)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):  # statistics and affine parameters far from the identity
                m.running_mean.copy_(torch.randn(nc, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(nc, generator=g) * 2 + 0.1)
                m.weight.copy_(torch.randn(nc, generator=g))
                m.bias.copy_(torch.randn(nc, generator=g) * 0.3)
            elif isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.2)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return ref.eval()


@pytest.mark.parametrize("channels, nc, nb, batch_norm", [(1, 8, 5, False), (3, 6, 4, True), (1, 4, 2, False),
                                                          (3, 5, 3, True)])
def test_dncnn_from_official_computes_the_reference_forward(tmp_path, channels, nc, nb, batch_norm):
    ref = _kair_dncnn(channels, nc, nb, batch_norm)
    torch.save(ref.state_dict(), tmp_path / "dncnn.pth")
    net = DnCNN.from_official(tmp_path / "dncnn.pth")
    assert net.config == dict(channels=channels, features=nc, depth=nb, noise_map=False)
    assert not net.training
    x = torch.rand(2, channels, 13, 11, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = ref(x)
        torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(net(x, 0.3), want, rtol=1e-5, atol=1e-5)  # no noise-level input


def test_dncnn_from_official_uses_the_given_batch_norm_eps(tmp_path):
    ref = _kair_dncnn(1, 4, 4, True)
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 0.5
            m.running_var.fill_(0.01)  # so that ε matters
    torch.save(ref.state_dict(), tmp_path / "dncnn.pth")
    x = torch.rand(1, 1, 9, 9, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(DnCNN.from_official(tmp_path / "dncnn.pth", bn_eps=0.5)(x), ref(x),
                                   rtol=1e-5, atol=1e-5)
        assert not torch.allclose(DnCNN.from_official(tmp_path / "dncnn.pth")(x), ref(x), atol=1e-3)
    ref_zero = _kair_dncnn(1, 4, 4, True)  # ε = 0 is allowed: the variances here are positive
    for m in ref_zero.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 0.0
    torch.save(ref_zero.state_dict(), tmp_path / "dncnn0.pth")
    with torch.no_grad():
        torch.testing.assert_close(DnCNN.from_official(tmp_path / "dncnn0.pth", bn_eps=0)(x), ref_zero(x),
                                   rtol=1e-5, atol=1e-5)
    for bad in (-1e-3, 1.0, float("nan"), True, "1e-4"):
        with pytest.raises(ValueError, match="bn_eps"):
            DnCNN.from_official(tmp_path / "dncnn.pth", bn_eps=bad)


def test_dncnn_from_official_round_trips_through_a_pnpdeblur_checkpoint(tmp_path):
    torch.save({"state_dict": {f"module.{k}": v for k, v in _kair_dncnn(3, 4, 3, False).state_dict().items()}},
               tmp_path / "dncnn_color_blind.pth")
    net = DnCNN.from_official(tmp_path / "dncnn_color_blind.pth")
    net.save(tmp_path / "mine.safetensors")
    again = DnCNN.from_checkpoint(tmp_path / "mine.safetensors")
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x), rtol=0, atol=0)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("model.2.bias"), "no bias"),
    (lambda s: s.__setitem__("model.7.weight", torch.zeros(4, 4, 3, 3)), "layout"),
    (lambda s: s.__setitem__("model.1.weight", torch.zeros(4)), "layout"),  # a PReLU: not this network
    (lambda s: s.__setitem__("model.0.weight", torch.zeros(0, 1, 3, 3)), "invalid DnCNN"),
    (lambda s: s.__setitem__("head.weight", torch.zeros(1)), "unexpected key"),
    (lambda s: s.__setitem__("model.4.weight", torch.zeros(4, 5, 3, 3)), "shape"),
    (lambda s: s["model.0.weight"].view(-1).__setitem__(0, float("inf")), "NaN or Inf"),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith("model.0.")], "model.0.weight"),
])
def test_dncnn_from_official_rejects_a_wrong_file(tmp_path, edit, message):
    state = dict(_kair_dncnn(1, 4, 4, False).state_dict())
    edit(state)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=message) as err:
        DnCNN.from_official(tmp_path / "bad.pth")
    assert str(tmp_path / "bad.pth") in str(err.value)


def test_dncnn_from_official_rejects_a_batch_norm_without_its_statistics(tmp_path):
    state = dict(_kair_dncnn(1, 4, 4, True).state_dict())
    state.pop("model.3.running_mean")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="model.3"):
        DnCNN.from_official(tmp_path / "bad.pth")


# -- the priors take either kind of file -------------------------------------------------------
def test_priors_read_official_files_and_pnpdeblur_checkpoints_by_name(tmp_path):
    from pnpdeblur.priors import DnCNNPrior, DRUNetPrior

    ref = _randomised(_KairUNetRes(3, (4, 6, 8, 10), 1, False)).float()
    torch.save(ref.state_dict(), tmp_path / "drunet_color.pth")
    prior = DRUNetPrior(tmp_path / "drunet_color.pth", cycle=False)
    z = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(prior(z, 0.1), ref(z, 0.1), rtol=1e-4, atol=1e-5)
    prior.net.save(tmp_path / "mine.safetensors")
    again = DRUNetPrior(str(tmp_path / "mine.safetensors"), cycle=False)
    torch.testing.assert_close(again(z, 0.1), prior(z, 0.1), rtol=0, atol=0)
    with pytest.raises(CheckpointError):  # an official file under the checkpoint suffix is not guessed at
        DRUNetPrior(_copy(tmp_path / "drunet_color.pth", tmp_path / "official.safetensors"))
    with pytest.raises(TypeError, match="net must be"):
        DRUNetPrior(5)

    dn = _kair_dncnn(3, 4, 3, True)
    torch.save(dn.state_dict(), tmp_path / "dncnn_color_blind.pth")
    dprior = DnCNNPrior(tmp_path / "dncnn_color_blind.pth", ensemble=False)
    assert dprior.net.config == dict(channels=3, features=4, depth=3, noise_map=False)
    with torch.no_grad():
        torch.testing.assert_close(dprior(z, 0.1), dn(z), rtol=1e-4, atol=1e-5)
    dprior.net.save(tmp_path / "mine.safetensors")  # a pnpdeblur checkpoint without its suffix
    _copy(tmp_path / "mine.safetensors", tmp_path / "mine.ckpt")
    with pytest.raises(CheckpointError, match=r"mine.ckpt is not a readable torch checkpoint: torch's safe reader "
                                              r"\(weights_only=True\) refused it \([^\n]+\); pnpdeblur never runs "
                                              r"code from a checkpoint \(read as the authors' DnCNN file because its "
                                              r"name does not end in \.safetensors; a pnpdeblur checkpoint needs that "
                                              r"suffix\)$") as err:
        DnCNNPrior(tmp_path / "mine.ckpt")
    assert "weights_only` set to `False`" not in str(err.value)  # torch's advice would run the file's code
    with pytest.raises(TypeError, match="path must be a str or PathLike, got float"):
        DnCNNPrior(3.5)

    class Where:  # any os.PathLike, not only pathlib's
        def __fspath__(self):
            return str(tmp_path / "dncnn_color_blind.pth")

    assert DnCNNPrior(Where(), ensemble=False).net.config == dprior.net.config


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


# -- reference: KAIR's FFDNet (pixel unshuffle, the σ map, a conv stack, pixel shuffle) ----------
class _KairFFDNet(nn.Module):
    def __init__(self, channels, nc, nb, batch_norm=False):
        super().__init__()
        layers = [nn.Conv2d(4 * channels + 1, nc, 3, padding=1), nn.ReLU()]
        for _ in range(nb - 2):
            layers.append(nn.Conv2d(nc, nc, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(nc, eps=1e-4))
            layers.append(nn.ReLU())
        layers.append(nn.Conv2d(nc, 4 * channels, 3, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x, sigma):
        """``sigma``: a number, or a map already at the half size ``(N, 1, ⌈H/2⌉, ⌈W/2⌉)``."""
        h, w = x.shape[-2:]
        x = nn.ReplicationPad2d((0, w % 2, 0, h % 2))(x)
        n, c, hh, ww = x.shape
        # 2×2 blocks → channels c·4 + 2·row + col, written out with a reshape
        sub = x.reshape(n, c, hh // 2, 2, ww // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, hh // 2, ww // 2)
        smap = sigma if isinstance(sigma, torch.Tensor) else torch.full_like(sub[:, :1], sigma)
        out = self.model(torch.cat((sub, smap), dim=1))
        out = out.reshape(n, c, 2, 2, hh // 2, ww // 2).permute(0, 1, 4, 2, 5, 3).reshape(n, c, hh, ww)
        return out[..., :h, :w]


@pytest.mark.parametrize("channels, nc, nb, batch_norm, size", [(1, 8, 5, False, (16, 12)), (3, 6, 4, False, (13, 9)),
                                                                 (3, 5, 3, True, (7, 10))])
def test_ffdnet_from_official_computes_the_reference_forward(tmp_path, channels, nc, nb, batch_norm, size):
    from pnpdeblur.nets import FFDNet

    ref = _KairFFDNet(channels, nc, nb, batch_norm)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, t in ref.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.2)
            elif not name.endswith("num_batches_tracked"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    ref.eval()
    torch.save(ref.state_dict(), tmp_path / "ffdnet.pth")
    net = FFDNet.from_official(tmp_path / "ffdnet.pth")
    assert net.config == dict(channels=channels, features=nc, depth=nb) and not net.training
    x = torch.rand(2, channels, *size, generator=g)
    with torch.no_grad():
        for sigma in (0.0, 15 / 255, 0.2):
            torch.testing.assert_close(net(x, sigma), ref(x, sigma), rtol=1e-5, atol=1e-5)
        # a per-image σ and a constant map give the per-image result
        both = net(x, torch.tensor([0.05, 0.2]))
        torch.testing.assert_close(both[1:], ref(x[1:], 0.2), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(net(x, torch.full((2, 1) + size, 0.05)), ref(x, 0.05), rtol=1e-5, atol=1e-5)


def test_ffdnet_from_official_reads_the_released_configurations(tmp_path):
    from pnpdeblur.nets import FFDNet

    for channels, nc, nb in ((1, 64, 15), (3, 96, 12)):  # ffdnet_gray.pth, ffdnet_color.pth
        state = {k: torch.zeros(v.shape) for k, v in _KairFFDNet(channels, nc, nb).state_dict().items()}
        torch.save(state, tmp_path / "f.pth")
        assert FFDNet.from_official(tmp_path / "f.pth").config == dict(channels=channels, features=nc, depth=nb)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.__setitem__("model.0.weight", torch.zeros(6, 4, 3, 3)), "takes 4 channels and the last gives 12"),
    (lambda s: s.__setitem__("model.6.weight", torch.zeros(5, 6, 3, 3)),
     "gives 5; an FFDNet takes 4·C \\+ 1 \\(the unshuffled image and the noise map\\) and gives 4·C$"),
    (lambda s: s.__setitem__("model.7.weight", torch.zeros(1)), "do not follow KAIR's FFDNet layout"),
    (lambda s: s.__setitem__("model.0.weight", torch.zeros(0, 13, 3, 3)), "invalid FFDNet"),
    (lambda s: s.__setitem__("model.2.weight", torch.zeros(6, 6, 5, 5)), "shape"),
])
def test_ffdnet_from_official_rejects_a_wrong_file(tmp_path, edit, message):
    from pnpdeblur.nets import FFDNet

    state = {k: v.clone() for k, v in _KairFFDNet(3, 6, 4).state_dict().items()}
    edit(state)
    if "model.6.weight" in state and state["model.6.weight"].shape[0] == 5:
        state["model.6.bias"] = torch.zeros(5)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=message) as err:
        FFDNet.from_official(tmp_path / "bad.pth")
    assert str(tmp_path / "bad.pth") in str(err.value)


def test_ffdnet_averages_a_noise_map_over_blocks_of_the_replicated_image(tmp_path):
    from pnpdeblur.nets import FFDNet

    ref = _KairFFDNet(1, 4, 3).eval()
    torch.save(ref.state_dict(), tmp_path / "f.pth")
    net = FFDNet.from_official(tmp_path / "f.pth")
    x = torch.rand(1, 1, 5, 4, generator=torch.Generator().manual_seed(6))
    smap = torch.full((1, 1, 5, 4), 0.1)
    smap[..., 4, :] = 0.3  # the last row, alone in its block once replicated
    smap[..., 0, 0] = 0.5
    half = torch.tensor([[[[0.2, 0.1], [0.1, 0.1], [0.3, 0.3]]]])  # 2×2 means, (0.5+0.1+0.1+0.1)/4 = 0.2
    with torch.no_grad():
        torch.testing.assert_close(net(x, smap), ref(x, half), rtol=1e-5, atol=1e-6)


def test_ffdnet_shapes_errors_and_prior(tmp_path):
    from pnpdeblur.nets import FFDNet
    from pnpdeblur.priors import DenoiserPrior

    assert FFDNet().config == dict(channels=1, features=64, depth=15)  # the authors' grey FFDNet
    assert FFDNet(depth=2).config["depth"] == 2
    net = FFDNet(3, 4, 3)
    assert sum(p.numel() for p in net.parameters()) == (13 * 4 * 9 + 4) + (4 * 4 * 9 + 4) + (4 * 12 * 9 + 12)
    for bad, name in ((dict(channels=0), "channels"), (dict(features=True), "features"), (dict(depth=1), "depth")):
        with pytest.raises(ValueError, match=f"^{name} must be an int"):
            FFDNet(**bad)
    z0 = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(net(z0), net(z0, 0.0), rtol=0, atol=0)  # σ defaults to 0
    with pytest.raises(ValueError, match="sigma"):
        net(torch.rand(1, 3, 5, 5), float("nan"))
    with pytest.raises(ValueError):
        net(torch.rand(1, 1, 5, 5))
    assert net(torch.rand(1, 3, 1, 1), 0.1).shape == (1, 3, 1, 1)
    net.save(tmp_path / "f.safetensors")
    again = FFDNet.from_checkpoint(tmp_path / "f.safetensors")
    z = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(again(z, 0.1), net(z, 0.1), rtol=0, atol=0)
        out = DenoiserPrior(net)(z, 0.1)
    assert out.shape == z.shape and bool(torch.isfinite(out).all())


# -- reference: KAIR's IRCNN bank (25 dilated 7-layer nets) --------------------------------------
def _kair_ircnn(channels, nc, seed):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for i, (d, cin, cout) in enumerate(zip((1, 2, 3, 4, 3, 2, 1), [channels] + [nc] * 6, [nc] * 6 + [channels])):
        conv = nn.Conv2d(cin, cout, 3, padding=d, dilation=d)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.2)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * 0.1)
        layers += [conv, nn.ReLU()] if i < 6 else [conv]
    model = nn.Sequential(*layers)
    return model, (lambda x: x - model(x))


def _kair_bank(tmp_path, channels=3, nc=5, n=25):
    refs = [_kair_ircnn(channels, nc, seed) for seed in range(n)]
    # KAIR's IRCNN holds the stack as `self.model`: keys model.0.weight …
    torch.save({str(i): {f"model.{k}": v for k, v in m.state_dict().items()} for i, (m, _) in enumerate(refs)},
               tmp_path / "ircnn.pth")
    return [f for _, f in refs]


def test_ircnn_bank_from_official_calls_the_authors_denoiser_for_each_sigma(tmp_path):
    from pnpdeblur.nets import IRCNNBank

    refs = _kair_bank(tmp_path)
    bank = IRCNNBank.from_official(tmp_path / "ircnn.pth")
    assert bank.config["channels"] == 3 and bank.config["features"] == 5 and len(bank.nets) == 25
    assert not bank.training
    x = torch.rand(2, 3, 12, 9, generator=torch.Generator().manual_seed(5))
    # the authors' choice: index ceil(σ·255/2) − 1, clipped to the bank
    for grey in (0.0, 1.0, 2.0, 2.5, 3.999, 4.0, 4.01, 25.0, 49.0, 50.0, 80.0):
        want = min(max(math.ceil(grey / 2) - 1, 0), 24)
        assert bank.index(grey / 255) == want, grey
        with torch.no_grad():
            torch.testing.assert_close(bank(x, grey / 255), refs[want](x), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(bank(x, torch.tensor([grey / 255] * 2)), refs[want](x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="one value for the whole batch"):
        bank(x, torch.tensor([0.01, 0.02]))
    for bad in (-0.1, float("nan"), True):
        with pytest.raises(ValueError, match="sigma"):
            bank.index(bad)


def test_ircnn_bank_round_trips_and_works_as_a_prior(tmp_path):
    from pnpdeblur.nets import IRCNNBank
    from pnpdeblur.priors import DenoiserPrior

    refs = _kair_bank(tmp_path, channels=1, nc=4, n=3)
    levels = (5 / 255, 15 / 255, 30 / 255)
    bank = IRCNNBank.from_official(tmp_path / "ircnn.pth", levels=levels)
    bank.save(tmp_path / "bank.safetensors")
    again = IRCNNBank.from_checkpoint(tmp_path / "bank.safetensors")
    assert again.config == bank.config
    z = torch.rand(1, 1, 10, 10)
    prior = DenoiserPrior(again)
    with torch.no_grad():
        torch.testing.assert_close(prior(z, 10 / 255), refs[1](z), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(prior(z, 31 / 255), refs[2](z), rtol=1e-5, atol=1e-5)


def test_ircnn_bank_rejects_a_wrong_file(tmp_path):
    from pnpdeblur.nets import IRCNNBank

    _kair_bank(tmp_path, n=3)
    with pytest.raises(CheckpointError, match="bank of 25"):
        IRCNNBank.from_official(tmp_path / "ircnn.pth")  # 3 entries for the 25 default levels
    levels = (0.01, 0.02, 0.03)
    bank = torch.load(tmp_path / "ircnn.pth")
    bank["1"]["model.4.weight"] = torch.zeros(5, 5, 5, 5)
    with pytest.raises(CheckpointError, match="entry '1'.*shape"):
        IRCNNBank.from_official(bank, levels=levels)
    bank = torch.load(tmp_path / "ircnn.pth")
    bank["2"].pop("model.12.bias")
    torch.save(bank, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="bad.pth \\(entry '2'\\).*missing"):
        IRCNNBank.from_official(tmp_path / "bad.pth", levels=levels)
    with pytest.raises(CheckpointError, match="entry '0' is not an IRCNN"):
        IRCNNBank.from_official({"0": {"x": torch.zeros(1)}, "1": {}, "2": {}}, levels=levels)
    with pytest.raises(CheckpointError, match="not found"):
        IRCNNBank.from_official(tmp_path / "absent.pth")
    for bad in ((), (0.02, 0.01), (0.0, 0.1), (float("inf"),)):
        with pytest.raises(ValueError, match="levels"):
            IRCNNBank(levels=bad)


def test_ircnn_defaults_and_argument_checks():
    from pnpdeblur.nets import IRCNNBank
    from pnpdeblur.nets.ircnn import IRCNN, OFFICIAL_LEVELS

    assert IRCNN().config == dict(channels=1, features=64)
    assert IRCNN(2, 5).config == dict(channels=2, features=5)
    bank = IRCNNBank()
    assert bank.config == dict(channels=1, features=64, levels=list(OFFICIAL_LEVELS)) and len(bank.nets) == 25
    assert OFFICIAL_LEVELS[0] == 2 / 255 and OFFICIAL_LEVELS[-1] == 50 / 255
    for bad, name in ((dict(channels=0), "channels"), (dict(features=1.5), "features")):
        with pytest.raises(ValueError, match=f"^{name} must be an int"):
            IRCNN(**bad)
    with pytest.raises(ValueError, match="strictly increasing"):
        IRCNNBank(levels=(0.01, 0.01))
    small = IRCNNBank(1, 2, levels=(0.1, 0.2))
    x = torch.rand(1, 1, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(small(x, torch.tensor(0.15)), small.nets[1](x))  # a 0-d tensor
        torch.testing.assert_close(small(x), small.nets[0](x))  # σ defaults to 0: the first level
    with pytest.raises(ValueError, match="^sigma must hold one value for the whole batch: each IRCNN serves one "
                                         "noise level$"):
        small(x, torch.tensor([]))


def test_ircnn_bank_file_errors_name_the_problem(tmp_path):
    from pnpdeblur.nets import IRCNNBank

    levels = (0.01, 0.02, 0.03)
    refs = _kair_bank(tmp_path, channels=1, nc=3, n=3)
    good = torch.load(tmp_path / "ircnn.pth")
    ints = IRCNNBank.from_official({i: good[str(i)] for i in range(3)}, levels=levels)  # integer keys
    x = torch.rand(1, 1, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(ints(x, 0.02), refs[1](x), rtol=1e-5, atol=1e-5)
    with pytest.raises(CheckpointError, match="IRCNN checkpoint not found"):
        IRCNNBank.from_official(tmp_path / "absent.pth", levels=levels)
    with pytest.raises(CheckpointError, match=r"the given bank: not an IRCNN bank of 3 denoisers "
                                              r"\(a dict '0' … '2' of state dicts\); got \['0', '1'\]"):
        IRCNNBank.from_official({"0": good["0"], "1": good["1"]}, levels=levels)
    with pytest.raises(CheckpointError, match=r"not an IRCNN bank of 3 denoisers .*; got \['0', '1', '2', '3', "
                                              r"'4'\]$"):  # the first five keys of a longer bank
        IRCNNBank.from_official({str(i): good["0"] for i in range(7)}, levels=levels)
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(CheckpointError, match="tensor.pth: not an IRCNN bank.*got Tensor"):
        IRCNNBank.from_official(tmp_path / "tensor.pth", levels=levels)
    with pytest.raises(CheckpointError, match="the given bank: entry '0' is not an IRCNN state dict"):
        IRCNNBank.from_official({"0": torch.zeros(1), "1": good["1"], "2": good["2"]}, levels=levels)
    bad = dict(good)
    bad["0"] = {**good["0"], "model.0.weight": torch.zeros(0, 1, 3, 3)}
    torch.save(bad, tmp_path / "zero.pth")
    with pytest.raises(CheckpointError, match="zero.pth: the bank implies an invalid IRCNNBank"):
        IRCNNBank.from_official(tmp_path / "zero.pth", levels=levels)
    with pytest.raises(CheckpointError, match="the given bank: entry '1' is not a state dict of tensors"):
        IRCNNBank.from_official({"0": good["0"], "1": {"model.0.weight": "w"}, "2": good["2"]}, levels=levels)


def test_prior_from_weights_builds_each_kind(tmp_path):
    from pnpdeblur.nets import DRUNet, DnCNN, FFDNet, IRCNNBank
    from pnpdeblur.priors import WEIGHT_KINDS, DenoiserPrior, DnCNNPrior, DRUNetPrior, prior_from_weights

    assert sorted(WEIGHT_KINDS) == ["dncnn", "drunet", "ffdnet", "ircnn"]
    torch.save(_kair_state(), tmp_path / "drunet.pth")
    torch.save(_kair_dncnn(3, 4, 3, False).state_dict(), tmp_path / "dncnn.pth")
    torch.save(_KairFFDNet(3, 4, 3).state_dict(), tmp_path / "ffdnet.pth")
    _kair_bank(tmp_path, channels=3, nc=4)
    cases = {"dncnn": ("dncnn.pth", DnCNNPrior, None), "drunet": ("drunet.pth", DRUNetPrior, None),
             "ffdnet": ("ffdnet.pth", DenoiserPrior, FFDNet), "ircnn": ("ircnn.pth", DenoiserPrior, IRCNNBank)}
    for kind, (name, prior_type, net_type) in cases.items():
        prior = prior_from_weights(kind, tmp_path / name, clamp=True)  # options reach the prior
        assert type(prior) is prior_type and prior.clamp is True, kind
        if net_type is not None:
            assert type(prior.net) is net_type
        # The file's weights, not the shipped ones: the same tensors as the class's own loader reads.
        direct = {"dncnn": DnCNN, "drunet": DRUNet, "ffdnet": FFDNet, "ircnn": IRCNNBank}[kind].from_official(
            tmp_path / name)
        want, got = direct.state_dict(), prior.net.state_dict()
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k].to(want[k].dtype)) for k in want), kind
        assert prior(torch.rand(1, 3, 8, 8), 0.05).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="kind must be one of"):
        prior_from_weights("bm3d", tmp_path / "dncnn.pth")
    with pytest.raises(CheckpointError):
        prior_from_weights("ffdnet", tmp_path / "drunet.pth")


def test_parse_weights_spec():
    from pathlib import Path

    from pnpdeblur.priors.from_file import parse_weights_spec

    assert parse_weights_spec("drunet:drunet_color.pth") == ("drunet", Path("drunet_color.pth"))
    assert parse_weights_spec("ircnn:C:/w/ircnn.pth") == ("ircnn", Path("C:/w/ircnn.pth"))  # the first colon splits
    for bad in ("drunet", "drunet:", "bm3d:x.pth", ":x.pth"):
        with pytest.raises(ValueError, match=r"^expected KIND:PATH with KIND one of dncnn, drunet, ffdnet, ircnn, "):
            parse_weights_spec(bad)


def test_describe_load_error_keeps_one_line():
    from pnpdeblur.nets._official import describe_load_error

    assert describe_load_error(RuntimeError("PytorchStreamReader failed\nsecond line")) == "PytorchStreamReader failed"
    assert describe_load_error(EOFError("")) == "EOFError"
    refusal = ("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely "
               "succeed.\nPlease file an issue: WeightsUnpickler error: Unsupported global: GLOBAL a.B was not "
               "allowed. Please use `add_safe_globals`.\n\nCheck the documentation")
    assert describe_load_error(RuntimeError(refusal)) == (
        "torch's safe reader (weights_only=True) refused it (Unsupported global: GLOBAL a.B was not allowed); "
        "pnpdeblur never runs code from a checkpoint")
    operand = ("Weights only load failed. In PyTorch 2.6 …\nPlease file an issue with the following: "
               "WeightsUnpickler error: \n\nUnsupported operand 80\n\nCheck the documentation of torch.load to learn "
               "more. https://…")
    assert "(Unsupported operand 80);" in describe_load_error(RuntimeError(operand))
