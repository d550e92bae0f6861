"""`mamakit run`: the done-when command (torch blocked), bad inputs, lost camera, Ctrl-C, warnings."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import assert_one_line_error, popen_interruptible, run_cli
from test_runtime_api import build_probe_bundle, build_student_bundle

# one xdist worker for the runtime tests: the exported bundles are built once and shared
pytestmark = pytest.mark.xdist_group("runtime")


@pytest.fixture(scope="session")
def bundles(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "runtime_bundles"
    root.mkdir(exist_ok=True)
    return {"student": build_student_bundle(root), "probe": build_probe_bundle(root)}


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """A generated 12-frame 160x90 H.264 clip (a moving square)."""
    p = tmp_path_factory.mktemp("clip") / "clip.mp4"
    from mamakit.io import VideoWriter

    with VideoWriter(p, 25, (160, 90)) as w:
        for i in range(12):
            f = np.full((90, 160, 3), 40, np.uint8)
            f[20:70, 20 + 5 * i:70 + 5 * i] = (220, 180, 160)
            w.write(f)
    return p


def _count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    with av.open(str(path)) as c:
        n, size = 0, None
        for fr in c.decode(video=0):
            n += 1
            size = (fr.width, fr.height)
    return n, size


def _no_outputs(folder: Path, *names):
    for n in names:
        assert not (folder / n).exists(), f"{n} was written"
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp")], list(folder.iterdir())


# ------------------------------------------------------------------------------ done-when
def test_runtime_cli_done_when_command_without_torch(bundles, shared_data, tmp_path, no_torch_path):
    v = shared_data / "videos"
    p = run_cli("run", "--bundle", bundles["student"], "--source", v / "matanyone_sample1.mp4",
                "--masks", v / "matanyone_sample1_first_mask.png", "--composite", tmp_path / "out.mp4",
                "--alpha", str(tmp_path / "out_alpha") + "/", "--stats", tmp_path / "stats.json",
                "--max-frames", 16, "--threads", 2, block_torch=no_torch_path, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    prov = [l for l in p.stderr.splitlines() if l.startswith("provider:")]
    assert len(prov) == 1 and prov[0].startswith("provider: cpu"), p.stderr
    n, size = _count_frames(tmp_path / "out.mp4")
    assert n == 16 and size == (1280, 720)
    pngs = sorted((tmp_path / "out_alpha").glob("*.png"))
    assert len(pngs) == 16 and pngs[0].name == "00000.png"
    a = cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED)
    assert a.shape == (720, 1280) and a.dtype == np.uint8
    st = json.loads((tmp_path / "stats.json").read_text())
    assert st["frames"] == 16 and st["provider"] == "cpu" and st["fps"] > 0
    assert {"p50", "p95", "p99"} <= set(st["latency_ms"]) and "infer" in st["stage_ms"]
    assert "FPS" in p.stdout and "latency" in p.stdout


def test_runtime_cli_image_folder_short_masks_foreground_and_stems(bundles, tmp_path):
    frames, masks = tmp_path / "frames", tmp_path / "masks"
    frames.mkdir()
    masks.mkdir()
    for i in range(6):
        f = np.full((72, 96, 3), 30 + 10 * i, np.uint8)
        cv2.imwrite(str(frames / f"shot_{i:02d}.png"), f)
        if i < 3:
            m = np.zeros((72, 96), np.uint8)
            m[10:60, 20:70] = 255
            cv2.imwrite(str(masks / f"shot_{i:02d}.png"), m)
    p = run_cli("run", "--bundle", bundles["probe"], "--source", frames, "--masks", masks,
                "--alpha", tmp_path / "alpha", "--foreground", tmp_path / "fg.webm", "--scene-cut", 0)
    assert p.returncode == 0, p.stderr
    warn = [l for l in p.stderr.splitlines() if "mask" in l and "previous alpha" in l]
    assert len(warn) == 1, p.stderr
    names = sorted(x.name for x in (tmp_path / "alpha").iterdir())
    assert names == [f"shot_{i:02d}.png" for i in range(6)]
    # the probe's alpha is its guide: frames 3..5 (no mask) carry the previous alpha
    last = cv2.imread(str(tmp_path / "alpha" / "shot_05.png"), cv2.IMREAD_GRAYSCALE)
    assert last[35, 45] > 240 and last[5, 5] < 15
    from mamakit.io.writers import VideoWriter  # noqa: F401 - the format is core's; decode it here
    n, size = _count_frames(tmp_path / "fg.webm")
    assert n == 6 and size == (96, 72)


# ------------------------------------------------------------------------------ bad input: exit 2
def test_runtime_cli_bad_inputs_exit_2_nothing_written(bundles, clip, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    b = bundles["probe"]
    cases = [
        (["--source", "7"], "camera 7"),
        (["--source", "http://127.0.0.1:9/live.mp4"], "127.0.0.1:9"),
        (["--source", clip, "--bundle", tmp_path / "nope"], "does not exist"),
        (["--source", clip, "--composite", tmp_path / "missing" / "c.mp4"], "does not exist"),
        (["--source", clip, "--alpha", tmp_path / "missing" / "alpha"], "does not exist"),
        (["--source", clip, "--foreground", out / "fg.mp4"], ".mov"),
        (["--source", clip, "--vcam"], "mamakit[camera]"),
        (["--source", clip, "--show"], "--serve"),
        (["--source", clip, "--provider", "quantum"], "unknown provider"),
        (["--source", clip, "--background", "nocolour"], "background"),
        (["--source", clip, "--prompt", "3,4"], "--guide"),
    ]
    for extra, needle in cases:
        args = list(extra)
        if "--bundle" not in args:
            args += ["--bundle", b]
        if "--composite" not in args:
            args += ["--composite", out / "c.mp4"]
        if "--alpha" not in args:
            args += ["--alpha", out / "a"]
        p = run_cli("run", *args, "--stats", out / "s.json")
        assert_one_line_error(p, 2, needle)
        assert "provider:" not in p.stderr, p.stderr
        _no_outputs(out, "c.mp4", "a", "s.json", "fg.mp4")


def test_runtime_cli_tampered_bundle_named_before_any_provider_line(bundles, clip, tmp_path):
    import shutil

    bad = tmp_path / "tampered"
    shutil.copytree(bundles["probe"], bad)
    data = bytearray((bad / "main.onnx").read_bytes())
    data[-5] ^= 0xFF
    (bad / "main.onnx").write_bytes(bytes(data))
    p = run_cli("run", "--bundle", bad, "--source", clip, "--composite", tmp_path / "c.mp4")
    line = assert_one_line_error(p, 2, "main.onnx")
    assert "checksum" in line
    assert "provider" not in p.stderr.replace(line, "")
    assert not (tmp_path / "c.mp4").exists()
    # no --bundle and no default bundle installed: one line, exit 2
    from mamakit.runtime.cli import DEFAULT_BUNDLE

    if not (DEFAULT_BUNDLE / "bundle.json").exists():
        p = run_cli("run", "--source", clip, "--composite", tmp_path / "c.mp4")
        assert_one_line_error(p, 2, "default bundle")


def test_runtime_cli_provider_fallback_is_one_line(bundles, clip, tmp_path):
    p = run_cli("run", "--bundle", bundles["probe"], "--source", clip, "--provider", "cuda",
                "--alpha", tmp_path / "a.mp4")
    assert p.returncode == 0, p.stderr
    fb = [l for l in p.stderr.splitlines() if "falling back" in l]
    assert len(fb) == 1 and "cuda" in fb[0], p.stderr
    assert [l for l in p.stderr.splitlines() if l.startswith("provider:")] == [
        next(l for l in p.stderr.splitlines() if l.startswith("provider: cpu"))]
    assert _count_frames(tmp_path / "a.mp4")[0] == 12


# ------------------------------------------------------------------------------ lost camera: exit 1
def test_runtime_cli_camera_lost_mid_stream_finalises_and_exits_1(bundles, tmp_path, monkeypatch, capsys):
    import mamakit.io as mio
    from mamakit.cli import main
    from mamakit.io import Frame, FrameSource

    class UnpluggedCamera(FrameSource):
        """A camera that delivers 7 frames and then stops answering (as cv2 does on unplug)."""

        kind = "camera"
        is_live = True

        def __init__(self, spec):
            super().__init__(spec)
            self.size, self.fps, self.count = (96, 64), 30.0, None

        def __iter__(self):
            for i in range(7):
                time.sleep(0.01)
                yield Frame(i, f"{i:05d}", np.full((64, 96, 3), 20 * i, np.uint8))

    monkeypatch.setattr(mio, "open_source", lambda spec, **kw: UnpluggedCamera(spec))
    import logging

    lg = logging.getLogger("mamakit")  # main() configures it: restore it for the tests that follow
    for attr in ("handlers", "propagate", "level"):
        monkeypatch.setattr(lg, attr, getattr(lg, attr))
    code = main(["run", "--bundle", str(bundles["probe"]), "--source", "0", "--mode", "offline",
                 "--composite", str(tmp_path / "c.mp4"), "--alpha", str(tmp_path / "a"),
                 "--stats", str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert code == 1
    errors = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "stopped delivering frames" in errors[0], err
    assert _count_frames(tmp_path / "c.mp4")[0] == 7  # finalised, playable
    assert len(list((tmp_path / "a").glob("*.png"))) == 7
    assert json.loads((tmp_path / "s.json").read_text())["frames"] == 7


# ------------------------------------------------------------------------------ Ctrl-C: exit 0
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_runtime_cli_interrupt_while_writing_leaves_playable_outputs(bundles, clip, tmp_path, sig):
    cmd = [sys.executable, "-m", "mamakit", "run", "--bundle", str(bundles["probe"]), "--source", str(clip),
           "--loop", "--composite", str(tmp_path / "c.mp4"), "--foreground", str(tmp_path / "f.mov"),
           "--alpha", str(tmp_path / "a.webm"), "--stats", str(tmp_path / "s.json")]
    proc = popen_interruptible(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list(tmp_path.glob(".tmp-*c.mp4")):
            time.sleep(0.1)
        time.sleep(1.0)  # writing for a while
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:  # a failed or timed-out run must not leave a --loop process running forever
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "error" not in err.lower(), err
    assert "FPS" in out
    frames = json.loads((tmp_path / "s.json").read_text())["frames"]
    assert frames > 0
    for name in ("c.mp4", "f.mov", "a.webm"):
        n, size = _count_frames(tmp_path / name)
        assert n >= frames - 1 and n > 0 and size == (160, 90), (name, n, frames)
    assert not list(tmp_path.glob(".tmp-*"))


def test_runtime_cli_onnx_person_segmenter_guides_the_student(shared_dir, tmp_path_factory, tmp_path):
    """A real person segmenter (RVM's ONNX, given by path) as the guide: with the probe bundle the
    written alpha IS the guide, so its IoU with the first-frame person masks measures the segmenter."""
    rvm = shared_dir / "models" / "rvm_mobilenetv3_fp32.onnx"
    if not rvm.is_file():
        pytest.skip(f"{rvm} is absent")
    root = tmp_path_factory.getbasetemp() / "runtime_bundles"
    root.mkdir(exist_ok=True)
    probe = build_probe_bundle(root, size=(480, 270))
    d = shared_dir / "data" / "matanyone_sample0"
    p = run_cli("run", "--bundle", probe, "--source", d / "frames", "--segmenter", rvm, "--max-frames", 1,
                "--alpha", tmp_path / "alpha", "--threads", 2)
    assert p.returncode == 0, p.stderr
    assert "guide: segmenter onnx:rvm_mobilenetv3_fp32.onnx" in p.stderr
    a = cv2.imread(str(tmp_path / "alpha" / "0000.png"), cv2.IMREAD_GRAYSCALE) > 127
    gt = np.zeros_like(a)
    for n in ("0000_person1.png", "0000_person2.png"):
        m = cv2.imread(str(d / "masks" / n), cv2.IMREAD_GRAYSCALE)
        gt |= cv2.resize(m, a.shape[::-1], interpolation=cv2.INTER_NEAREST) > 127
    iou = (a & gt).sum() / (a | gt).sum()
    assert iou > 0.85, iou


def test_runtime_cli_two_stage_guide_bundle_feeds_the_student(bundles, tmp_path, tmp_path_factory):
    """--guide: a second bundle's alpha (its own processing size) is the student's guide on every frame."""
    root = tmp_path_factory.getbasetemp() / "runtime_bundles"
    guide = build_probe_bundle(root, size=(96, 54))  # the low-resolution stage
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(5):
        cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((90, 160, 3), 30 if i < 3 else 220, np.uint8))
    m = np.zeros((90, 160), np.uint8)
    m[20:70, 50:110] = 255
    cv2.imwrite(str(tmp_path / "first.png"), m)
    p = run_cli("run", "--bundle", bundles["probe"], "--guide", guide, "--masks", tmp_path / "first.png",
                "--source", frames, "--alpha", tmp_path / "alpha", "--scene-cut", 0.3)
    assert p.returncode == 0, p.stderr
    assert "scene cut" in p.stderr and "guide:" in p.stderr
    # the cut at frame 3 resets the student (its own previous alpha is gone): the square survives
    # only because the guide stage hands it over on every frame
    for i in range(5):
        a = cv2.imread(str(tmp_path / "alpha" / f"{i:03d}.png"), cv2.IMREAD_GRAYSCALE)
        assert a[45, 80] > 240 and a[5, 5] < 15 and a[45, 20] < 15, i


@pytest.mark.slow  # exporting even a tiny SAM2-Matte takes minutes on 2 cores
def test_runtime_cli_sam2_matte_bundle_and_two_stage_guide(bundles, clip, tmp_path):
    """A real (random-weight, tiny) SAM2-Matte bundle: as the main bundle with --prompt, and as
    the --guide of a student; prompt refusals exit 2."""
    import torch

    from mamakit.export.sam2 import export_sam2_matte
    from mamakit.student.sam2matte.config import tiny_config
    from mamakit.student.sam2matte.model import Sam2Matte

    torch.manual_seed(0)
    Sam2Matte(tiny_config(128)).save_pretrained(tmp_path / "sam_ckpt")
    sam = export_sam2_matte(tmp_path / "sam_ckpt", tmp_path / "sam_bundle", threads=1)
    p = run_cli("run", "--bundle", sam, "--source", clip, "--prompt", "point=80,45", "--alpha", tmp_path / "a1")
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "a1").glob("*.png"))) == 12
    p = run_cli("run", "--bundle", bundles["probe"], "--guide", sam, "--source", clip, "--prompt", "box=20,20,70,70",
                "--prompt-frame", 2, "--alpha", tmp_path / "a2")
    assert p.returncode == 0, p.stderr
    assert "sam2-matte guide bundle" in p.stderr
    assert len(list((tmp_path / "a2").glob("*.png"))) == 12
    assert_one_line_error(run_cli("run", "--bundle", sam, "--source", clip, "--alpha", tmp_path / "x"), 2, "prompt")
    assert_one_line_error(run_cli("run", "--bundle", sam, "--source", clip, "--prompt", "500,5"), 2, "outside")
    assert_one_line_error(run_cli("run", "--bundle", sam, "--source", clip, "--prompt", "box=5,5,5,9"), 2, "zero area")
    assert not (tmp_path / "x").exists()
