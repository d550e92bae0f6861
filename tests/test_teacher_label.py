"""`mamakit label`: single clip, dataset mode, resume after kill -9, quality, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

pytest.importorskip("torch")
pytest.importorskip("pytorch_lightning")

from mamakit.io import read_alpha, write_alpha_png, write_image  # noqa: E402

# one thread per subprocess: on a shared, busy CPU more threads spin-wait and run far slower
ONE_THREAD = {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _write_clip(folder: Path, seed: int, frames: int = 4, size=(64, 48), mask_scale: int = 1,
                empty: bool = False) -> tuple[Path, Path]:
    from mamakit.degrade import binarize, downsample_upsample
    from mamakit.synth import make_clip

    clip = make_clip(seed, frames, size)
    coarse = [downsample_upsample(binarize(a), 4).astype(np.float32) for a in clip.alpha]  # a coarse 4x mask
    fdir, mdir = folder / "frames" / f"clip{seed}", folder / "masks" / f"clip{seed}"
    fdir.mkdir(parents=True)
    mdir.mkdir(parents=True)
    for t in range(frames):
        write_image(fdir / f"f{t:03d}.png", clip.frames[t])
        m = coarse[t] * (0 if empty else 1)
        if mask_scale > 1:
            import cv2

            m = cv2.resize(m, (size[0] // mask_scale, size[1] // mask_scale), interpolation=cv2.INTER_AREA)
        write_alpha_png(mdir / f"f{t:03d}.png", m)
    return fdir, mdir


def _main(*args) -> int:
    from mamakit.cli import main

    return main(["-q", *map(str, args), "--threads", "1"])


def test_teacher_label_single_clip_resized_masks_and_resume(tmp_path, capsys):
    fdir, mdir = _write_clip(tmp_path, 1, frames=4, size=(64, 48), mask_scale=2)
    out = tmp_path / "out"
    assert _main("label", "--teacher", "closed-form", "--source", fdir, "--masks", mdir, "--out", out) == 0
    names = sorted(p.name for p in (out / "alpha").iterdir())
    assert names == [f"f{t:03d}.png" for t in range(4)]
    a = read_alpha(out / "alpha" / "f000.png")
    assert a.shape == (48, 64)
    q = json.loads((out / "quality.json").read_text())
    assert q["frames"] == 4 and q["status"] == "done" and q["alpha"] == "teacher:closed-form@1.0"
    for k in ("score", "mask_agreement", "temporal_stability", "soft_share", "edge_sharpness"):
        assert k in q["quality"]
    assert q["quality"]["mask_agreement"] > 0.5
    mtime = (out / "quality.json").stat().st_mtime_ns
    capsys.readouterr()
    assert _main("label", "--teacher", "closed-form", "--source", fdir, "--masks", mdir, "--out", out) == 0
    assert "skipped (already done)  1" in capsys.readouterr().out
    assert (out / "quality.json").stat().st_mtime_ns == mtime  # idempotent: nothing rewritten
    assert not list(out.glob(".tmp-*"))


def test_teacher_label_frames_changing_size_and_empty_masks(tmp_path):
    fdir, mdir = _write_clip(tmp_path, 2, frames=4, size=(64, 48), empty=True)
    # frames 2, 3 at another size (masks stay 64x48: resized to each frame)
    from mamakit.io import read_image

    for t in (2, 3):
        import cv2

        img = read_image(fdir / f"f{t:03d}.png")
        write_image(fdir / f"f{t:03d}.png", cv2.resize(img, (80, 40)))
    out = tmp_path / "out"
    assert _main("label", "--teacher", "closed-form", "--source", fdir, "--masks", mdir, "--out", out) == 0
    shapes = [read_alpha(out / "alpha" / f"f{t:03d}.png").shape for t in range(4)]
    assert shapes == [(48, 64), (48, 64), (40, 80), (40, 80)]
    assert all(read_alpha(out / "alpha" / f"f{t:03d}.png").max() == 0 for t in range(4))
    q = json.loads((out / "quality.json").read_text())["quality"]
    assert q["empty_mask"] is True and q["empty_mask_frames"] == 4 and q["score"] == 0.0


def test_teacher_label_dataset_mode_min_quality(tmp_path):
    from mamakit.dataset import Dataset

    for seed in (3, 4):
        _write_clip(tmp_path, seed, frames=3)
    _write_clip(tmp_path, 5, frames=3, empty=True)
    out = tmp_path / "ds"
    assert _main("label", "--teacher", "closed-form", "--source", tmp_path / "frames", "--masks",
                 tmp_path / "masks", "--out", out, "--min-quality", "0.01") == 0
    ds = Dataset(out)
    assert sorted(ds.ids) == ["clip3", "clip4"]  # the all-empty clip scored 0 and was filtered out
    clip = ds["clip3"]
    assert len(clip) == 3 and clip.has_masks
    assert clip.meta["alpha"] == "teacher:closed-form@1.0" and "score" in clip.meta["quality"]
    assert clip.alpha().shape == (3, 48, 64)
    rejected = [json.loads(l) for l in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rejected] == ["clip5"]
    assert not (out / "clips" / "clip5").exists()


def test_teacher_label_corrupt_frame_mid_clip_fails_only_that_clip(tmp_path, capsys):
    for seed in (6, 7):
        _write_clip(tmp_path, seed, frames=4)
    bad = tmp_path / "frames" / "clip6" / "f002.png"
    data = bad.read_bytes()
    bad.write_bytes(data[:40] + bytes(len(data) - 40))  # a damaged frame (valid size, broken data)
    out = tmp_path / "ds"
    capsys.readouterr()
    # in-process (the same `mamakit.cli.main` the console script runs; saves a 2nd Lightning start-up)
    code = _main("label", "--teacher", "closed-form", "--source", tmp_path / "frames", "--masks",
                 tmp_path / "masks", "--out", out)
    err = capsys.readouterr().err
    errors = [l for l in err.splitlines() if l.startswith("error: ")]
    assert code == 1 and len(errors) == 1 and "clip6" in errors[0] and "Traceback" not in err, err
    lines = [json.loads(l) for l in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == ["clip7"]
    assert not (out / "clips" / "clip6").exists()
    assert not list((out / "clips").glob(".tmp-*"))


def _many_clips(root: Path, n: int, frames: int, size) -> Path:
    lst = root / "clips.txt"
    rows = []
    for seed in range(n):
        fdir, mdir = _write_clip(root, 100 + seed, frames=frames, size=size)
        rows.append(f"{fdir.relative_to(root)}\t{mdir.relative_to(root)}")
    lst.write_text("\n".join(rows) + "\n")
    return lst


def _manifest(root: Path) -> list[dict]:
    return [json.loads(l) for l in (root / "manifest.jsonl").read_text().splitlines() if l.strip()]


def test_teacher_label_resume_after_kill_9(tmp_path):
    lst = _many_clips(tmp_path, 8, frames=6, size=(192, 144))
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mamakit", "-q", "label", "--teacher", "closed-form", "--source", str(lst),
           "--out", str(killed), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **ONE_THREAD})
    manifest = killed / "manifest.jsonl"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists() and manifest.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    n_before = len(_manifest(killed))
    assert 1 <= n_before < 8, f"the kill must land mid-run ({n_before} clips were done)"
    # the same command again finishes the rest
    assert _main("label", "--teacher", "closed-form", "--source", lst, "--out", killed) == 0
    fresh = tmp_path / "fresh"
    assert _main("label", "--teacher", "closed-form", "--source", lst, "--out", fresh) == 0
    assert _manifest(killed) == _manifest(fresh)  # no clip lost, duplicated or changed
    assert len(_manifest(killed)) == 8
    assert not list((killed / "clips").glob(".tmp-*"))
    for rec in _manifest(killed):
        a = sorted((killed / rec["path"] / "alpha").iterdir())
        b = sorted((fresh / rec["path"] / "alpha").iterdir())
        assert [p.name for p in a] == [p.name for p in b] and len(a) == 6
        assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    # and a third run is a no-op
    assert _main("label", "--teacher", "closed-form", "--source", lst, "--out", killed) == 0
    assert _manifest(killed) == _manifest(fresh)


# -- bad input: exit 2 before any work, nothing written ------------------------------------------------
@pytest.fixture(scope="module")
def clip_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("badinput")
    return _write_clip(root, 9, frames=4)


def _nothing_written(out: Path):
    assert not out.exists(), f"{out} was created"


def test_teacher_label_bad_base_model_without_vae(tmp_path, clip_dirs):
    fdir, mdir = clip_dirs
    base = tmp_path / "base"
    base.mkdir()
    unet = tmp_path / "vm" / "unet"
    unet.mkdir(parents=True)
    (unet / "config.json").write_text(json.dumps({"in_channels": 12}))
    out = tmp_path / "out"
    proc = run_cli("label", "--teacher", "videomama", "--base-model", base, "--unet", tmp_path / "vm",
                   "--source", fdir, "--masks", mdir, "--out", out)
    line = assert_one_line_error(proc, 2, contains="vae/config.json")
    assert "expected BASE/vae/" in line  # shows the expected tree
    _nothing_written(out)


def test_teacher_label_bad_eight_input_unet(tmp_path, clip_dirs):
    import torch  # noqa: F401
    from diffusers import UNetSpatioTemporalConditionModel

    from mamakit.teacher.make_tiny import make_tiny
    from mamakit.teacher.videomama.config import TINY_UNET_CONFIG

    fdir, mdir = clip_dirs
    paths = make_tiny(tmp_path / "tiny")
    stock = tmp_path / "stock"
    UNetSpatioTemporalConditionModel(**{**TINY_UNET_CONFIG, "in_channels": 8}).save_pretrained(stock / "unet")
    out = tmp_path / "out"
    proc = run_cli("label", "--teacher", "videomama", "--base-model", paths["base_model"], "--unet", stock,
                   "--source", fdir, "--masks", mdir, "--out", out)
    assert_one_line_error(proc, 2, contains="in_channels=8")
    _nothing_written(out)


def test_teacher_label_bad_fewer_masks_than_frames(tmp_path, clip_dirs):
    fdir, mdir = clip_dirs
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted(mdir.iterdir())[:2]:
        (few / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    proc = run_cli("label", "--teacher", "closed-form", "--source", fdir, "--masks", few, "--out", out)
    assert_one_line_error(proc, 2, contains="no mask for 2 of 4 frames")
    _nothing_written(out)


@pytest.mark.parametrize("where", ["sys", "under-file"])
def test_teacher_label_bad_unwritable_output(tmp_path, clip_dirs, where):
    fdir, mdir = clip_dirs
    if where == "sys":
        if not Path("/sys").is_dir():
            pytest.skip("no /sys")
        out = Path("/sys/mamakit-label-out")
    else:
        f = tmp_path / "file"
        f.write_text("x")
        out = f / "out"
    proc = run_cli("label", "--teacher", "closed-form", "--source", fdir, "--masks", mdir, "--out", out)
    assert_one_line_error(proc, 2, contains="out")
    assert not out.exists()


def test_teacher_label_sam2_missing_names_extra(tmp_path, clip_dirs):
    fdir, mdir = clip_dirs
    blocked = tmp_path / "blocked" / "sam2"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text('raise ImportError("sam2 is blocked for this test")\n')
    out = tmp_path / "out"
    proc = run_cli("label", "--teacher", "closed-form", "--source", fdir, "--prompt", "point=30,20",
                   "--sam2-random-weights", "--out", out,
                   env={"PYTHONPATH": str(blocked.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert_one_line_error(proc, 2, contains="mamakit[sam2]")
    _nothing_written(out)


def test_teacher_label_relabels_a_dataset(tmp_path):
    from mamakit.dataset import Dataset
    from mamakit.synth import synth_dataset

    src = tmp_path / "synth"
    synth_dataset(src, 2, 3, (64, 48), 0)
    out = tmp_path / "relabelled"
    assert _main("label", "--teacher", "closed-form", "--source", src, "--out", out) == 0
    a, b = Dataset(src), Dataset(out)
    assert sorted(a.ids) == sorted(b.ids)
    for cid in a.ids:
        assert len(b[cid]) == len(a[cid]) and b[cid].meta["alpha"] == "teacher:closed-form@1.0"
        np.testing.assert_array_equal(b[cid].frames(), a[cid].frames())
