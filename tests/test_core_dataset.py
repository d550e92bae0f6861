"""mamakit.dataset (atomic clips, torn manifests, path validation) and mamakit.degrade."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from mamakit.dataset import Dataset, DatasetWriter, read_manifest, validate_clip_id
from mamakit.degrade import (
    DegradeConfig,
    bounding_box,
    degrade_masks,
    downsample_upsample,
    occlude,
    polygon_simplify,
)
from mamakit.errors import ConfigError, VideoIOError


def _clip_arrays(T=3, h=20, w=24, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (T, h, w, 3), dtype=np.uint8)
    alpha = rng.random((T, h, w)).astype(np.float32)
    masks = (alpha > 0.5).astype(np.float32)
    fgr = rng.integers(0, 256, (T, h, w, 3), dtype=np.uint8)
    return frames, alpha, masks, fgr


# ---------------------------------------------------------------- dataset
def test_core_dataset_roundtrip(tmp_path):
    frames, alpha, masks, fgr = _clip_arrays()
    root = tmp_path / "ds"
    with DatasetWriter(root) as dw:
        rec = dw.write_clip("clip-a", frames, alpha, masks, fgr, source="synthetic", fps=25.0,
                            alpha_origin="gt", alpha_bits=16)
        with dw.clip("clip-b", source="video.mp4", fps=30.0, alpha_origin="teacher:videomama@0.1") as c:
            for t in range(2):
                c.add(frames[t], alpha[t], name=f"f{t:03d}")
            c.quality["agreement_iou"] = 0.91
    assert rec["frames"] == 3 and rec["path"] == "clips/clip-a"
    ds = Dataset(root)
    assert ds.ids == ["clip-a", "clip-b"] and len(ds) == 2 and ds.total_frames == 5
    a = ds["clip-a"]
    np.testing.assert_array_equal(a.frames(), frames)
    np.testing.assert_array_equal(a.fgr(), fgr)
    assert np.abs(a.alpha() - alpha).max() < 1e-4  # 16-bit
    np.testing.assert_array_equal(a.masks(), masks)
    assert a.size == (24, 20) and a.fps == 25.0 and a.meta["alpha"] == "gt"
    b = ds[1]
    assert b.names == ["f000", "f001"] and not b.has_masks and not b.has_fgr
    assert b.meta["alpha"] == "teacher:videomama@0.1" and b.meta["quality"] == {"agreement_iou": 0.91}
    assert np.abs(b.alpha([1])[0] - alpha[1]).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ConfigError, match="no masks"):
        b.masks()
    # resume: finished clips are known, re-writing one is refused
    dw2 = DatasetWriter(root)
    assert "clip-a" in dw2 and "clip-c" not in dw2
    with pytest.raises(ConfigError, match="already"):
        dw2.clip("clip-a")
    assert not [p for p in (root / "clips").iterdir() if p.name.startswith(".tmp")]


def test_core_dataset_failed_clip_leaves_nothing(tmp_path):
    frames, alpha, _, _ = _clip_arrays()
    root = tmp_path / "ds"
    dw = DatasetWriter(root)
    with pytest.raises(RuntimeError):
        with dw.clip("boom") as c:
            c.add(frames[0], alpha[0])
            raise RuntimeError("crash mid-clip")
    assert not (root / "clips" / "boom").exists()
    assert list((root / "clips").iterdir()) == []
    assert not (root / "manifest.jsonl").exists() or read_manifest(root / "manifest.jsonl") == []
    with pytest.raises(ConfigError, match="does not match"):
        with dw.clip("bad") as c:
            c.add(frames[0], alpha[0][:5])


def test_core_dataset_killed_writer_is_invisible(tmp_path):
    """A process killed mid-clip leaves only a hidden temp folder; readers see the finished clips."""
    root = tmp_path / "ds"
    code = textwrap.dedent(f"""
        import os, numpy as np
        from mamakit.dataset import DatasetWriter
        dw = DatasetWriter({str(root)!r})
        f = np.zeros((8, 8, 3), np.uint8); a = np.zeros((8, 8), np.float32)
        dw.write_clip("done", [f], [a])
        c = dw.clip("half")
        c.add(f, a)
        os._exit(9)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    ds = Dataset(root)
    assert ds.ids == ["done"]
    assert not (root / "clips" / "half").exists()


def test_core_dataset_torn_last_line(tmp_path):
    frames, alpha, _, _ = _clip_arrays(T=1)
    root = tmp_path / "ds"
    DatasetWriter(root).write_clip("one", frames, alpha)
    with open(root / "manifest.jsonl", "ab") as f:
        f.write(b'{"id": "two", "path": "cli')  # an interrupted append
    assert Dataset(root).ids == ["one"]
    dw = DatasetWriter(root)  # cuts the torn tail before appending
    dw.write_clip("three", frames, alpha)
    lines = (root / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(l)["id"] for l in lines] == ["one", "three"]
    # a damaged line in the middle is an error, not silently skipped
    (root / "manifest.jsonl").write_text(lines[0] + "\n{broken\n" + lines[1] + "\n")
    with pytest.raises(ConfigError, match="line 2"):
        Dataset(root)


@pytest.mark.parametrize("record,needle", [
    ({"id": "x", "path": "../outside"}, "'..'"),
    ({"id": "x", "path": "/etc"}, "absolute"),
    ({"id": "x", "path": "clips/../../etc"}, "'..'"),
    ({"id": "../x"}, "invalid clip id"),
    ({"id": "a/b"}, "invalid clip id"),
    ({"id": "x", "path": "C:\\\\evil"}, "absolute"),
])
def test_core_dataset_rejects_path_traversal(tmp_path, record, needle):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "manifest.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(ConfigError, match=needle):
        Dataset(root)
    with pytest.raises(ConfigError, match=needle):
        DatasetWriter(root)


def test_core_dataset_symlink_escape_and_bad_roots(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "ds"
    (root / "clips").mkdir(parents=True)
    os.symlink(outside, root / "clips" / "x")
    (root / "manifest.jsonl").write_text('{"id": "x", "path": "clips/x"}\n')
    with pytest.raises(ConfigError, match="outside"):
        Dataset(root)
    with pytest.raises(VideoIOError, match="not a mamakit dataset"):
        Dataset(outside)
    (tmp_path / "f").write_text("x")
    with pytest.raises(VideoIOError, match="is a file"):
        Dataset(tmp_path / "f")
    with pytest.raises(ConfigError, match="is a file"):
        DatasetWriter(tmp_path / "f")
    (outside / "stuff.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a mamakit dataset"):
        DatasetWriter(outside)
    for bad in ("", "..", "a..b", ".hidden", "x" * 200):
        with pytest.raises(ConfigError):
            validate_clip_id(bad)
    with pytest.raises(ConfigError, match="alpha origin"):
        DatasetWriter(tmp_path / "new").clip("ok", alpha_origin="teacher-without-version")


# ---------------------------------------------------------------- degradations
def _disc(h=96, w=96, r=30, soft=True):
    yy, xx = np.mgrid[:h, :w]
    d = np.sqrt((yy - h / 2) ** 2 + (xx - w / 2) ** 2)
    return np.clip((r - d) / 4 + 0.5, 0, 1).astype(np.float32) if soft else (d < r).astype(np.float32)


def test_core_degrade_ops():
    m = (_disc() > 0.5).astype(np.uint8)
    m[40:56, 40:56] = 0  # a hole
    p = polygon_simplify(m, 0.005)
    assert p[48, 48] == 0 and p[48, 20] == 1  # hole kept, body kept
    assert np.mean(p != m) < 0.05
    d = downsample_upsample(m, 16)
    assert d.shape == m.shape and set(np.unique(d)) <= {0, 1}
    assert 0 < np.mean(d != m) < 0.2  # coarse but close
    b = bounding_box(m)
    assert b.sum() == (np.ptp(np.nonzero(m)[0]) + 1) * (np.ptp(np.nonzero(m)[1]) + 1)
    o = occlude(m, np.random.default_rng(0), (0.3, 0.6))
    assert o.sum() < m.sum() and not (o & ~m.astype(bool)).any()


def test_core_degrade_masks_deterministic_and_configurable():
    seq = np.stack([np.roll(_disc(), 3 * t, axis=1) for t in range(6)])
    a = degrade_masks(seq, np.random.default_rng(7))
    b = degrade_masks(seq, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == seq.shape and set(np.unique(a)) <= {0.0, 1.0}
    gt = seq > 127 / 255
    iou = [np.logical_and(a[t], gt[t]).sum() / max(1, np.logical_or(a[t], gt[t]).sum()) for t in range(6)]
    assert np.median(iou) > 0.6  # coarse, still a mask of the object
    # forced ops
    box = degrade_masks(seq, 0, DegradeConfig(p_box=1.0, p_temporal=0.0))
    for t in range(6):
        np.testing.assert_array_equal(box[t], bounding_box(box[t].astype(np.uint8)))
    for op, check in (("empty", lambda m: m.sum() == 0), ("full", lambda m: m.all())):
        w = [1.0 if o == op else 0.0 for o in ("occlude", "empty", "full", "erode", "dilate")]
        out, info = degrade_masks(seq, 3, DegradeConfig(p_temporal=1.0, temporal_weights=tuple(w), p_box=0.0),
                                  return_ops=True)
        t, got = info["temporal"]
        assert got == op and check(out[t])
    clean = degrade_masks(seq, 0, DegradeConfig(p_clean=1.0, p_temporal=0.0, p_box=0.0))
    np.testing.assert_array_equal(clean, gt.astype(np.float32))
    with pytest.raises(ConfigError):
        DegradeConfig(p_box=1.5)
    with pytest.raises(ConfigError):
        degrade_masks(np.zeros((2, 3, 4, 5)), 0)


def test_core_degrade_for_height_scales_pixel_knobs():
    cfg = DegradeConfig().for_height(180, 720)
    assert cfg.downsample_factors == (2, 4, 8) and cfg.kernel == 1
    assert DegradeConfig().for_height(1440, 720).downsample_factors == (16, 32, 64)
    assert DegradeConfig(downsample_factors=(8,)).for_height(40, 720).downsample_factors == (1,)
    assert cfg.p_box == DegradeConfig().p_box  # probabilities untouched
    with pytest.raises(ConfigError):
        DegradeConfig().for_height(0, 720)
