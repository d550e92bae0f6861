"""The torch-free SAM2-Matte session and `mamakit run --bundle SAM2MATTE --prompt ...`."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli

pytest.importorskip("torch")
pytest.importorskip("sam2")

from test_sam2_export import sam2_bundle  # noqa: E402,F401  (the session-scoped exported bundle)

CLIP_SEED = 3_000_001  # held out: not a training or validation seed


@pytest.fixture(scope="module")
def sam2_clip(tmp_path_factory):
    """A held-out 12-frame synthetic clip at 256x256 as a PNG folder, its GT alpha and a box prompt."""
    import cv2

    from mamakit.student.sam2matte.data import synthetic_clip

    frames, alpha = synthetic_clip(CLIP_SEED, 12, 256)
    d = tmp_path_factory.mktemp("sam2clip") / "frames"
    d.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(d / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    ys, xs = np.nonzero(alpha[0] > 0.5)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return d, frames, alpha, box


def _iou(p, g):
    p, g = p > 0.5, g > 0.5
    u = np.logical_or(p, g).sum()
    return 1.0 if u == 0 else np.logical_and(p, g).sum() / u


def test_sam2_session_matches_pytorch_and_stays_bounded(sam2_bundle, sam2_clip):
    """Session alpha == the PyTorch model's over the clip; the bank never exceeds its slots."""
    import torch

    from mamakit.runtime.sessions import open_session
    from mamakit.student.sam2matte import load_sam2_matte

    _, frames, alpha, box = sam2_clip
    sess = open_session(sam2_bundle, provider="cpu", threads=2)
    assert sess.needs_prompt and sess.kind == "sam2-matte"
    sess.set_prompt(box=box)
    got = []
    for f in frames:
        got.append(sess.step(f))
        assert sess.memories <= 7
    assert sess.memories == 7  # 12 frames: the bank is full and bounded
    model = load_sam2_matte(Path(__file__).parent / "fixtures" / "sam2_matte_tiny")
    pts = torch.tensor([[[box[0], box[1]], [box[2], box[3]], [0, 0], [0, 0]]], dtype=torch.float32)
    lbs = torch.tensor([[2, 3, -1, -1]], dtype=torch.int32)
    with torch.no_grad():
        ref = model.track_clip(torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 255, pts, lbs)["alpha"][0]
    err = max(float(np.abs(g - r).max()) for g, r in zip(got, ref.numpy()))
    assert err <= 1e-3, err  # (non-trivial alpha is asserted by the export parity test)


def test_sam2_session_imports_without_torch(sam2_bundle, sam2_clip, no_torch_path, tmp_path):
    import subprocess
    import sys

    _, frames, _, box = sam2_clip
    np.save(tmp_path / "f.npy", frames[:3])
    code = ("import numpy as np, sys; from mamakit.runtime.sessions import open_session\n"
            f"s = open_session({str(sam2_bundle)!r}, provider='cpu'); s.set_prompt(box={box!r})\n"
            f"a = [s.step(f) for f in np.load({str(tmp_path / 'f.npy')!r})]\n"
            "assert 'torch' not in sys.modules; print(float(a[-1].mean()))")
    env = dict(os.environ, PYTHONPATH=str(no_torch_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.strip()) > 0.01


def test_sam2_cli_run_tracks_held_out_clip(sam2_bundle, sam2_clip, tmp_path):
    """`mamakit run --bundle SAM2MATTE --prompt box=...` writes, frame for frame, what the session
    computes (8-bit PNGs), and tracks the object like the model does. (On this held-out clip the
    committed tiny model segments the wrong region — IoU ~0: see docs/sam2-matte.md, the quality
    bar is not met yet; the tracking quality itself is tested in test_sam2_tracking.py.)"""
    from mamakit.io import read_alpha
    from mamakit.runtime.sessions import open_session

    d, frames, alpha, box = sam2_clip
    out = tmp_path / "alpha"
    proc = run_cli("run", "--bundle", sam2_bundle, "--source", d, "--prompt", "box=%d,%d,%d,%d" % box,
                   "--alpha", out, "--provider", "cpu", "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    files = sorted(out.glob("*.png"))
    assert len(files) == len(alpha)
    sess = open_session(sam2_bundle, provider="cpu", threads=2)
    sess.set_prompt(box=box)
    ref = [sess.step(f) for f in frames]
    got = [read_alpha(f) for f in files]
    assert max(float(np.abs(g - r).max()) for g, r in zip(got, ref)) <= 1 / 255 + 1e-3
    ious = [_iou(g, a) for g, a in zip(got, alpha)]
    print("sam2 CLI IoU per frame:", np.round(ious, 3).tolist())
    assert np.mean(ious) >= np.mean([_iou(r, a) for r, a in zip(ref, alpha)]) - 0.01


def test_sam2_cli_run_click_prompt(sam2_bundle, sam2_clip, tmp_path):
    import cv2

    d, _, alpha, _ = sam2_clip
    inner = cv2.distanceTransform((alpha[0] > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    y, x = np.unravel_index(int(np.argmax(inner)), inner.shape)
    proc = run_cli("run", "--bundle", sam2_bundle, "--source", d, "--prompt", f"point={x},{y}",
                   "--alpha", tmp_path / "a", "--provider", "cpu", "--max-frames", "3")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "a").glob("*.png"))) == 3


@pytest.mark.parametrize("prompt, needle", [
    ("point=300,20", "outside"),             # the clip is 256x256
    ("box=400,400,500,500", "outside"),
    ("box=10,10,10,50", "zero area"),
    (None, "prompt"),                        # a SAM2-Matte bundle needs one
])
def test_sam2_cli_bad_prompts_exit_2(sam2_bundle, sam2_clip, tmp_path, prompt, needle):
    d = sam2_clip[0]
    out = tmp_path / "alpha"
    args = ["run", "--bundle", sam2_bundle, "--source", d, "--alpha", out, "--provider", "cpu"]
    if prompt:
        args += ["--prompt", prompt]
    assert_one_line_error(run_cli(*args), 2, contains=needle)
    assert not out.exists() or not any(out.iterdir())


def test_sam2_session_bad_prompts_raise_config_error(sam2_bundle, sam2_clip):
    from mamakit.errors import ConfigError
    from mamakit.runtime.sessions import open_session

    frames = sam2_clip[1]
    sess = open_session(sam2_bundle, provider="cpu")
    with pytest.raises(ConfigError, match="needs a prompt"):
        sess.step(frames[0])
    with pytest.raises(ConfigError, match="zero area"):
        sess.set_prompt(box=(5, 5, 5, 9))
    with pytest.raises(ConfigError, match="at most 4"):
        sess.set_prompt(points=[(1, 1)] * 3, box=(0, 0, 9, 9))
    sess.set_prompt(points=[(900, 10)])
    with pytest.raises(ConfigError, match="outside"):
        sess.step(frames[0])


def test_sam2_matter_size_change_asks_for_a_new_prompt(sam2_bundle, sam2_clip, caplog):
    """A prompted tracker loses its memory when the frame size changes: empty alpha and a warning
    until the next prompt, then tracking resumes at the new size."""
    import cv2

    from mamakit.runtime import Matter

    _, frames, alpha, box = sam2_clip
    m = Matter.load(sam2_bundle, provider="cpu", threads=2, announce=False)
    m.set_prompt(box=box)
    first = [m.step(f) for f in frames[:3]]
    assert all(a.shape == (256, 256) for a in first) and max(a.max() for a in first) > 0.1  # the tiny model is weak but not empty
    big = [cv2.resize(f, (320, 320)) for f in frames[3:6]]
    with caplog.at_level("WARNING"):
        lost = m.step(big[0])
    assert lost.shape == (320, 320) and lost.max() == 0.0
    assert "prompt again" in caplog.text
    s = 320 / 256
    m.set_prompt(box=tuple(v * s for v in box))
    again = m.step(big[1])
    assert again.shape == (320, 320) and again.max() > 0.1
