"""mamakit.synth: clip content, exact compositing, speed, byte-identical determinism."""
from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from mamakit.dataset import Dataset
from mamakit.degrade import DegradeConfig
from mamakit.errors import ConfigError
from mamakit.synth import SynthConfig, load_textures, make_clip, procedural_texture, synth_dataset


def _tree_hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_core_synth_clip_shapes_and_exact_composite():
    c = make_clip(3, 6, (96, 64))
    assert c.frames.shape == (6, 64, 96, 3) and c.frames.dtype == np.uint8
    assert c.fgr.shape == c.bg.shape == c.frames.shape
    assert c.alpha.shape == c.masks.shape == (6, 64, 96) and c.alpha.dtype == np.float32
    # alpha is 8-bit exact and the frame is exactly its composite
    np.testing.assert_array_equal(np.round(c.alpha * 255) / 255, c.alpha)
    a = c.alpha[..., None]
    comp = np.clip(a * c.fgr + (1 - a) * c.bg.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(comp, c.frames)
    assert set(np.unique(c.masks)) <= {0.0, 1.0}
    assert 0.02 < c.alpha.mean() < 0.9


def test_core_synth_properties_over_many_clips():
    """Across seeds: soft edges, strands, semi-transparency, motion of fg and bg."""
    soft, moved_fg, moved_bg, partial = 0, 0, 0, 0
    for seed in range(12):
        c = make_clip(seed, 4, (64, 64))
        frac_soft = np.mean((c.alpha > 0.02) & (c.alpha < 0.98))
        soft += frac_soft > 0.01
        moved_fg += np.abs(c.alpha[-1] - c.alpha[0]).mean() > 1e-3
        moved_bg += np.abs(c.bg[-1].astype(int) - c.bg[0]).mean() > 0.5
        partial += np.mean(np.abs(c.alpha - 0.5) < 0.3) > 0.01
    assert soft == 12 and moved_fg >= 10 and moved_bg >= 8 and partial >= 6
    hairy = make_clip(0, 2, (128, 128), cfg=SynthConfig(p_hair=1.0, n_strands=(40, 40)))
    assert hairy.info["hair"]
    plain = make_clip(0, 2, (128, 128), cfg=SynthConfig(p_hair=0.0))
    assert not plain.info["hair"]
    blurred = make_clip(1, 3, (64, 64), cfg=SynthConfig(p_motion_blur=1.0))
    assert blurred.info["motion_blur"]


def test_core_synth_determinism_and_speed():
    a = make_clip(11, 8, (128, 128))
    b = make_clip(np.random.default_rng(11), 8, (128, 128))
    for k in ("frames", "alpha", "masks", "fgr", "bg"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(make_clip(12, 8, (128, 128)).frames, a.frames)
    t = time.perf_counter()
    for s in range(5):
        make_clip(s, 8, (128, 128))
    per = (time.perf_counter() - t) / 5
    assert per < 0.5, f"make_clip 8x128x128 took {per:.3f}s"


def test_core_synth_dataset_byte_identical(tmp_path):
    ids1 = synth_dataset(tmp_path / "a", clips=2, frames=3, size=(48, 40), seed=5)
    synth_dataset(tmp_path / "b", clips=2, frames=3, size=(48, 40), seed=5)
    h1, h2 = _tree_hashes(tmp_path / "a"), _tree_hashes(tmp_path / "b")
    assert h1 == h2 and any(k.startswith("clips/") and "/fgr/" in k for k in h1)
    ds = Dataset(tmp_path / "a")
    assert ds.ids == ids1 and len(ds[0]) == 3 and ds[0].has_fgr and ds[0].has_masks
    assert ds[0].meta["alpha"] == "gt" and ds[0].size == (48, 40)
    # the stored clip equals the in-memory one (exact GT)
    from mamakit.synth import clip_rng
    c = make_clip(clip_rng(5, 1), 3, (48, 40))
    np.testing.assert_array_equal(ds[1].frames(), c.frames)
    np.testing.assert_array_equal(ds[1].alpha(), c.alpha)
    np.testing.assert_array_equal(ds[1].fgr(), c.fgr)
    # a different seed differs; a resumed run adds only the missing clips
    synth_dataset(tmp_path / "c", clips=1, frames=3, size=(48, 40), seed=6)
    assert _tree_hashes(tmp_path / "c") != h1
    synth_dataset(tmp_path / "a", clips=3, frames=3, size=(48, 40), seed=5)
    h3 = _tree_hashes(tmp_path / "a")
    assert all(h3[k] == v for k, v in h1.items() if k != "manifest.jsonl") and len(Dataset(tmp_path / "a")) == 3


def test_core_synth_textures_and_bad_args():
    rng = np.random.default_rng(0)
    for _ in range(4):
        t = procedural_texture(40, 30, rng)
        assert t.shape == (30, 40, 3) and t.dtype == np.uint8 and t.std() > 1
    with pytest.raises(ConfigError):
        make_clip(0, 2, (8, 8))
    with pytest.raises(ConfigError):
        make_clip(0, 0, (32, 32))
    with pytest.raises(ConfigError):
        SynthConfig(p_hair=2.0)
    m = make_clip(0, 4, (64, 64), degrade_cfg=DegradeConfig(p_clean=1.0, p_temporal=0.0, p_box=0.0))
    np.testing.assert_array_equal(m.masks, (m.alpha > 127 / 255).astype(np.float32))


def test_core_synth_extra_textures_from_images_folders_and_videos(tmp_path):
    import cv2

    from mamakit.io import VideoWriter

    # a red photo, a folder of 3 green-ish images, a 5-frame blue video (all real files, decoded by mamakit.io)
    red = np.zeros((300, 400, 3), np.uint8)
    red[..., 0] = 220
    cv2.imwrite(str(tmp_path / "red.png"), red[..., ::-1])
    (tmp_path / "folder").mkdir()
    for i in range(3):
        g = np.zeros((60, 80, 3), np.uint8)
        g[..., 1] = 100 + 40 * i
        cv2.imwrite(str(tmp_path / "folder" / f"{i:03d}.png"), g[..., ::-1])
    with VideoWriter(tmp_path / "blue.mp4", 10, (64, 48)) as vw:
        for i in range(5):
            b = np.zeros((48, 64, 3), np.uint8)
            b[..., 2] = 200
            vw.write(b)
    tex = load_textures([tmp_path / "red.png", tmp_path / "folder", tmp_path / "blue.mp4"], per_source=2, max_side=200)
    assert len(tex) == 1 + 2 + 2 and all(t.dtype == np.uint8 and t.ndim == 3 for t in tex)
    assert tex[0].shape == (150, 200, 3)                      # downscaled to the longer side's limit
    assert tex[1][..., 1].mean() == pytest.approx(100, abs=3) and tex[2][..., 1].mean() == pytest.approx(180, abs=3)
    assert tex[3][..., 2].mean() > 150 and tex[3][..., 0].mean() < 40
    with pytest.raises(ConfigError):
        load_textures([tmp_path / "red.png"], per_source=0)
    # every texture drawn from the red photo: red foreground and background, exact composite kept
    cfg = SynthConfig(p_extra_texture=1.0, p_procedural_bg=0.0, p_hair=0.0)
    c = make_clip(3, 3, (96, 64), cfg=cfg, textures=tex[:1])
    opaque = c.alpha > 0.99
    assert opaque.sum() > 100
    f = c.fgr[opaque].astype(float).mean(0)
    b = c.bg.reshape(-1, 3).astype(float).mean(0)
    assert f[0] > 120 and f[0] > 3 * max(f[1], f[2]) and b[0] > 120 and b[0] > 3 * max(b[1], b[2]), (f, b)
    comp = c.alpha[..., None] * c.fgr + (1 - c.alpha[..., None]) * c.bg.astype(np.float32)
    assert np.abs(comp - c.frames).max() <= 1
    # with p_extra_texture 0 the photos are the bundled ones again: not red
    plain = make_clip(3, 3, (96, 64), cfg=SynthConfig(p_extra_texture=0.0, p_procedural_bg=0.0, p_hair=0.0), textures=tex[:1])
    f0 = plain.fgr[plain.alpha > 0.99].astype(float).mean(0)
    assert not (f0[0] > 120 and f0[0] > 3 * max(f0[1], f0[2])), f0
    # a dataset records where its textures came from
    synth_dataset(tmp_path / "ds", clips=1, frames=2, size=(48, 32), seed=1, cfg=cfg, textures=tex[:1],
                  texture_sources=["red.png"])
    meta = Dataset(tmp_path / "ds")[0].meta
    assert meta["synth"]["textures"] == {"count": 1, "sources": ["red.png"]}
    assert meta["synth"]["config"]["p_extra_texture"] == 1.0
