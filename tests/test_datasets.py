"""Datasets: folder layouts, pairing, errors, augmentations consistent with the blur operator."""
import numpy as np
import pytest
import torch
from skimage import io

from pnpdeblur.data import (
    BlurredFolderDataset,
    GoProDataset,
    KohlerDataset,
    PairAugment,
    PairedFolderDataset,
    SyntheticBlurDataset,
    SyntheticVideoDataset,
    read_image,
    synthesize_flow_blur,
)


def _save(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    io.imsave(str(path), (np.clip(img, 0, 1) * 255).round().astype(np.uint8), check_contrast=False)


@pytest.fixture
def rgb(rng):
    return lambda h=24, w=32: rng.random((h, w, 3))


def test_read_image_roundtrip_and_errors(tmp_path, rgb):
    img = rgb()
    _save(tmp_path / "a.png", img)
    r = read_image(tmp_path / "a.png")
    assert r.dtype == np.float32 and r.shape == (24, 32, 3)
    np.testing.assert_allclose(r, np.round(img * 255) / 255, atol=1e-6)
    _save(tmp_path / "g.png", img[:, :, 0])
    assert read_image(tmp_path / "g.png").shape == (24, 32, 3)
    assert read_image(tmp_path / "g.png", channels=None).shape == (24, 32, 1)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")


def test_paired_folder(tmp_path, rgb):
    for n in ("x1", "x2"):
        _save(tmp_path / "blur" / f"{n}.png", rgb())
        _save(tmp_path / "sharp" / f"{n}.png", rgb())
    ds = PairedFolderDataset(tmp_path / "blur", tmp_path / "sharp")
    assert len(ds) == 2
    item = ds[1]
    assert item["name"] == "x2" and item["blurred"].shape == (3, 24, 32) and item["sharp"].dtype == torch.float32
    np.testing.assert_allclose(item["sharp"].permute(1, 2, 0).numpy(), read_image(tmp_path / "sharp" / "x2.png"))
    with pytest.raises(IndexError):
        ds[2]
    # unpaired and mismatched
    _save(tmp_path / "blur" / "x3.png", rgb())
    with pytest.raises(ValueError, match="unpaired"):
        PairedFolderDataset(tmp_path / "blur", tmp_path / "sharp")
    assert len(PairedFolderDataset(tmp_path / "blur", tmp_path / "sharp", strict=False)) == 2
    _save(tmp_path / "sharp" / "x3.png", rgb(20, 32))
    with pytest.raises(ValueError, match="mismatched"):
        PairedFolderDataset(tmp_path / "blur", tmp_path / "sharp")[2]
    with pytest.raises(FileNotFoundError):
        PairedFolderDataset(tmp_path / "nope", tmp_path / "sharp")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        PairedFolderDataset(tmp_path / "empty", tmp_path / "sharp")


def test_gopro_layout_and_crop_loader(tmp_path, rgb):
    for seq in ("GOPR0001", "GOPR0002"):
        for f in ("000001", "000002"):
            s = rgb()
            _save(tmp_path / "train" / seq / "sharp" / f"{f}.png", s)
            _save(tmp_path / "train" / seq / "blur" / f"{f}.png", s * 0.5)
    ds = GoProDataset(tmp_path, split="train", transform=PairAugment(crop=16), seed=0)
    assert len(ds) == 4 and ds[3]["name"] == "GOPR0002/000002"
    item = ds[0]
    assert item["blurred"].shape == (3, 16, 16)
    # the same crop/flip is applied to both images
    np.testing.assert_allclose(item["blurred"].numpy(), np.round(item["sharp"].numpy() * 255 * 0.5) / 255, atol=1 / 255)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["blurred"].shape == (4, 3, 16, 16)
    assert len(GoProDataset(tmp_path / "train", sequences=["GOPR0001"])) == 2
    with pytest.raises(FileNotFoundError):
        GoProDataset(tmp_path, split="test")
    with pytest.raises(FileNotFoundError):
        GoProDataset(tmp_path, split="train", sequences=["GOPR9999"])
    (tmp_path / "train" / "GOPR0003" / "blur").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="sharp"):
        GoProDataset(tmp_path, split="train")


def test_kohler_layout(tmp_path, rgb):
    for i, j in ((1, 1), (1, 2)):
        _save(tmp_path / "BlurryImages" / f"Blurry{i}_{j}.png", rgb())
        for k in (1, 2, 3, 10):
            _save(tmp_path / "GroundTruth" / f"GroundTruth{i}_{j}_{k}.png", rgb())
    ds = KohlerDataset(tmp_path)
    assert len(ds) == 2
    item = ds[1]
    assert item["name"] == "Blurry1_2" and item["sharp_frames"].shape == (4, 3, 24, 32)
    # frames in numeric order (10 after 3), middle frame as "sharp"
    np.testing.assert_allclose(item["sharp_frames"][3].permute(1, 2, 0).numpy(),
                               read_image(tmp_path / "GroundTruth" / "GroundTruth1_2_10.png"))
    assert torch.equal(item["sharp"], item["sharp_frames"][2])
    assert KohlerDataset(tmp_path, max_frames=2)[0]["sharp_frames"].shape[0] == 2
    _save(tmp_path / "BlurryImages" / "Blurry2_1.png", rgb())
    with pytest.raises(ValueError, match="without GroundTruth"):
        KohlerDataset(tmp_path)


def test_blurred_folder(tmp_path, rgb):
    _save(tmp_path / "a.png", rgb())
    _save(tmp_path / "b.jpg", rgb())
    (tmp_path / "notes.txt").write_text("x")
    ds = BlurredFolderDataset(tmp_path)
    assert [ds[i]["name"] for i in range(len(ds))] == ["a", "b"]
    assert set(ds[0]) == {"blurred", "name"}


def test_augment_commutes_with_motion_blur(rng):
    """Flipping/rotating the blurred image equals blurring the flipped/rotated sharp image
    with the transformed flow: checks the flow transform of every geometric augmentation."""
    from pnpdeblur.operators import MotionBlur

    sharp = rng.random((20, 28, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:20, 0:28]
    flow = np.stack([np.rint(3 + xx / 9.0), np.rint(-2 + yy / 5.0)]).astype(np.float32)
    blurred = np.asarray(MotionBlur(flow)(sharp))
    aug = PairAugment(crop=(16, 16), hflip=True, vflip=True, rot90=True)
    seen = set()
    for seed in range(24):
        r = np.random.default_rng(seed)
        imgs, flows = aug({"blurred": blurred, "sharp": sharp}, r, {"flow": flow})
        f = flows["flow"]
        assert (f[0] >= 0).all()
        seen.add(imgs["sharp"].shape)
        re = np.asarray(MotionBlur(f)(imgs["sharp"]))
        # compare away from the crop border (the crop cut the blur support)
        np.testing.assert_allclose(re[5:-5, 5:-5], imgs["blurred"][5:-5, 5:-5], atol=1e-5)
    assert seen == {(16, 16, 3)}


def test_nah_colour_and_noise(rng):
    img = rng.random((12, 12, 3)).astype(np.float32)
    aug = PairAugment(hflip=False, permute_channels=True, noise_sigma=2 / 255)
    imgs, _ = aug({"blurred": img, "sharp": img}, np.random.default_rng(3))
    # same permutation for both; noise only on the blurred image, small
    assert any(np.allclose(imgs["sharp"], img[..., p]) for p in
               ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]))
    d = imgs["blurred"] - imgs["sharp"]
    assert 0 < np.abs(d).max() < 0.1
    sat = PairAugment(hflip=False, saturation=(0.0, 0.0))
    grey, _ = sat({"sharp": img}, np.random.default_rng(0))
    assert np.allclose(grey["sharp"][..., 0], grey["sharp"][..., 1], atol=1e-6)
    with pytest.raises(ValueError):
        PairAugment(crop=64)({"sharp": img}, np.random.default_rng(0))
    with pytest.raises(ValueError):
        PairAugment(saturation=(2.0, 1.0))


def test_synthetic_blur_dataset_consistency():
    from pnpdeblur.operators import MotionBlur

    ds = SyntheticBlurDataset(images=["astronaut", "coffee"], length=5, crop=48, preset="23",
                              noise_sigma=0.0, seed=3, fixed=True)
    a, b = ds[2], ds[2]
    assert torch.equal(a["blurred"], b["blurred"]) and torch.equal(a["flow"], b["flow"])
    assert a["flow"].shape == (2, 48, 48) and (a["flow"][0] >= 0).all() and a["flow"].abs().max() <= 23
    re = MotionBlur(a["flow"][None])(a["sharp"][None])[0]
    torch.testing.assert_close(re, a["blurred"], atol=1e-5, rtol=0)
    assert not torch.equal(ds[0]["flow"], ds[1]["flow"])
    with pytest.raises(ValueError):
        SyntheticBlurDataset(length=0)
    with pytest.raises(ValueError):
        SyntheticBlurDataset(fixed=True)


def test_synthesize_flow_blur_noise():
    img = np.full((16, 16, 3), 0.5, np.float32)
    s = synthesize_flow_blur(img, noise_sigma=0.05, seed=0)
    assert abs(np.std(s.blurred - 0.5) - 0.05) < 0.01
    with pytest.raises(ValueError):
        synthesize_flow_blur(img, flow=np.zeros((2, 8, 8), np.float32))


def test_synthesize_flow_blur_refuses_another_scale_only_when_it_clips():
    img = np.random.default_rng(3).random((24, 24, 3)).astype(np.float32)
    unit = synthesize_flow_blur(img, flow=np.full((2, 24, 24), 3.0, np.float32), clip=False).blurred
    with pytest.raises(ValueError, match=r"^sharp has values in \[.*, 2\d\d\.?\d*\]; .*pass clip=False"):
        synthesize_flow_blur(img * 255, seed=0)  # clipped, the blurred copy would be white
    with pytest.raises(ValueError, match=r"^sharp has values in \[-0\.5\d+, "):
        synthesize_flow_blur(img - 0.6, seed=0)
    np.testing.assert_allclose(synthesize_flow_blur(img * 1.5 - 0.25, seed=0).sharp, img * 1.5 - 0.25)  # overshoot
    scaled = synthesize_flow_blur(img * 255, flow=np.full((2, 24, 24), 3.0, np.float32), clip=False)
    np.testing.assert_allclose(scaled.blurred, 255 * unit, rtol=1e-5)  # linear: any scale without the clip


def test_synthetic_video_dataset():
    ds = SyntheticVideoDataset(images=["astronaut"], length=3, crop=40, max_blur=8, seed=1, fixed=True)
    it = ds[0]
    assert it["blurred"].shape == (3, 40, 40) and it["flow_next"].shape == (2, 40, 40)
    assert it["n_frames"] in (7, 9, 11, 13)
    assert torch.equal(it["blurred"], ds[0]["blurred"])


def test_synthetic_video_dataset_clips():
    ds = SyntheticVideoDataset(images=["coffee"], length=2, crop=32, max_blur=6, seed=2, fixed=True,
                               n_blurred=3, noise_sigma=2 / 255)
    it = ds[1]
    assert it["blurred"].shape == (3, 3, 32, 32) and it["sharp"].shape == (3, 3, 32, 32)
    assert it["flow_next"].shape == (3, 2, 32, 32)
    # noise on the blurred frames only: sharp frames are noise-free smooth crops, consecutive ones differ
    assert not torch.equal(it["sharp"][0], it["sharp"][1])
    assert torch.equal(it["blurred"], ds[1]["blurred"])


def test_synthetic_sources_too_small():
    # the default sample set drops photos smaller than the crop; user images are rejected
    ds = SyntheticBlurDataset(length=2, crop=300, seed=0, fixed=True)
    assert all(s.shape[0] >= 300 and s.shape[1] >= 300 for s in ds.sources)
    assert ds[0]["blurred"].shape == (3, 300, 300)
    with pytest.raises(ValueError, match="smaller"):
        SyntheticBlurDataset(images=[np.zeros((50, 50, 3))], crop=64)


@pytest.mark.parametrize("seed", [None, 5])
def test_dataloader_workers_do_not_share_the_main_process_stream(monkeypatch, seed):
    # A DataLoader worker receives a copy of the dataset. If the main process had already
    # drawn an item (which started the augmentation stream), every worker used to continue
    # that same copied stream, so the workers produced identical batches.
    import pickle
    from types import SimpleNamespace

    img = np.random.default_rng(0).random((48, 48, 3)).astype(np.float32)
    ds = SyntheticBlurDataset(images=[img], length=4, crop=16, noise_sigma=0.0, seed=seed)
    ds[0]  # peek in the main process
    items = []
    for wid in (0, 1):
        copy = pickle.loads(pickle.dumps(ds))
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda wid=wid: SimpleNamespace(id=wid))
        items.append(copy[1])
    assert not torch.equal(items[0]["flow"], items[1]["flow"]) or not torch.equal(items[0]["sharp"], items[1]["sharp"])
