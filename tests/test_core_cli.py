"""The core CLI (`mamakit eval`, `mamakit synth`) on bad and awkward inputs, core without torch,
and packaging (wheel contents, install into a target folder, editable install layout)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, run_cli
from mamakit.io import write_alpha_png


@pytest.fixture()
def good(tmp_path):
    """A valid GT folder and a matching prediction folder (3 frames, 40x30)."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        a = rng.random((30, 40)).astype(np.float32)
        write_alpha_png(gt / f"{i:03d}.png", a)
        write_alpha_png(pred / f"{i:03d}.png", np.clip(a + 0.1, 0, 1))
    return tmp_path, gt, pred


def _snapshot(d: Path):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def _bad_eval(tmp_path, *args, contains=None):
    out = tmp_path / "result.json"
    before = _snapshot(tmp_path)
    proc = run_cli("eval", *args, "--json", out) if "--json" not in args else run_cli("eval", *args)
    line = assert_one_line_error(proc, 2, contains)
    assert not out.exists()
    assert _snapshot(tmp_path) == before, "a failed command must write nothing"
    return line


def test_core_cli_bad_inputs_eval(good, shared_data):
    tmp, gt, pred = good
    # 1. truncated PNG
    bad = tmp / "trunc"
    shutil.copytree(pred, bad)
    data = (bad / "001.png").read_bytes()
    (bad / "001.png").write_bytes(data[: len(data) // 2])
    _bad_eval(tmp, "--pred", bad, "--gt", gt, contains="truncated")
    # 2. corrupt MP4
    real = (shared_data / "videos" / "matanyone_sample1.mp4").read_bytes()
    (tmp / "corrupt.mp4").write_bytes(real[:64] + os.urandom(4096) + real[-4096:])
    _bad_eval(tmp, "--pred", tmp / "corrupt.mp4", "--gt", gt, contains="corrupt.mp4")
    # 3. empty folder
    (tmp / "empty").mkdir()
    _bad_eval(tmp, "--pred", tmp / "empty", "--gt", gt, contains="no images")
    # 4. mismatched counts (a frame missing, names differ)
    short = tmp / "short"
    short.mkdir()
    for i in range(2):
        shutil.copy(pred / f"{i:03d}.png", short / f"p{i}.png")
    _bad_eval(tmp, "--pred", short, "--gt", gt, contains="2 predictions")
    # 5. unreadable / missing path
    _bad_eval(tmp, "--pred", tmp / "does-not-exist", "--gt", gt, contains="does not exist")
    if os.geteuid() != 0:  # root reads anything; the check is only meaningful for normal users
        locked = tmp / "locked"
        shutil.copytree(pred, locked)
        os.chmod(locked, 0)
        try:
            _bad_eval(tmp, "--pred", locked, "--gt", gt)
        finally:
            os.chmod(locked, 0o755)
    # 6. zero-frame video
    import av
    with av.open(str(tmp / "zero.mp4"), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()
    _bad_eval(tmp, "--pred", tmp / "zero.mp4", "--gt", gt, contains="zero.mp4")
    # 7. unknown extension
    (tmp / "pred.xyz").write_bytes(b"?")
    _bad_eval(tmp, "--pred", tmp / "pred.xyz", "--gt", gt, contains="unknown extension")
    # 8. a file where a folder is expected
    _bad_eval(tmp, "--pred", pred, "--gt", gt / "000.png", contains="is a file")
    # 9. a folder where a file is expected
    _bad_eval(tmp, "--pred", pred, "--gt", gt, "--json", tmp / "empty", contains="is a folder")
    # 10. path traversal in a dataset manifest
    ds = tmp / "ds"
    ds.mkdir()
    (ds / "manifest.jsonl").write_text(json.dumps({"id": "x", "path": "../gt"}) + "\n")
    _bad_eval(tmp, "--pred", pred, "--gt", ds, contains="..")
    # 11. prediction size differs from GT
    small = tmp / "small"
    small.mkdir()
    for i in range(3):
        write_alpha_png(small / f"{i:03d}.png", np.zeros((10, 10), np.float32))
    _bad_eval(tmp, "--pred", small, "--gt", gt, contains="size")
    # 12. bad arguments
    assert_one_line_error(run_cli("eval", "--pred", pred), 2, "--gt")


def test_core_cli_bad_inputs_synth(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    cases = [
        (["--out", f], "is a file"),                                        # file where folder expected
        (["--out", tmp_path / "missing" / "ds"], "does not exist"),         # unwritable (no parent)
        (["--out", tmp_path / "o", "--size", "12x"], "WxH"),
        (["--out", tmp_path / "o", "--size", "8x8"], "out of range"),
        (["--out", tmp_path / "o", "--clips", "0"], "--clips"),
        (["--out", tmp_path / "o", "--frames", "-3"], "--frames"),
        (["--out", tmp_path / "o", "--set", "p_glass=0.1"], "KEY=VALUE"),
        (["--out", tmp_path / "o", "--set", "p_transparent"], "KEY=VALUE"),
        (["--out", tmp_path / "o", "--set", "p_transparent=lots"], "p_transparent"),
        (["--out", tmp_path / "o", "--set", "transparency=0.2"], "2 comma-separated"),
        (["--out", tmp_path / "o", "--set", "p_hair=2"], "p_hair"),
        (["--out", tmp_path / "o", "--textures", tmp_path / "nope.png"], "does not exist"),
        (["--out", tmp_path / "o", "--textures", f], "unknown extension"),
        (["--out", tmp_path / "o", "--textures", tmp_path, "--textures-per-source", "0"], "--textures-per-source"),
    ]
    ds = tmp_path / "evil"
    ds.mkdir()
    (ds / "manifest.jsonl").write_text(json.dumps({"id": "a", "path": "/etc"}) + "\n")
    cases.append((["--out", ds], "absolute"))                              # traversal in a manifest
    other = tmp_path / "notds"
    other.mkdir()
    (other / "photo.jpg").write_bytes(b"x")
    cases.append((["--out", other], "not a mamakit dataset"))
    before = _snapshot(tmp_path)
    for args, needle in cases:
        assert_one_line_error(run_cli("synth", *args), 2, needle)
    assert _snapshot(tmp_path) == before


def test_core_cli_synth_then_eval(tmp_path):
    out = tmp_path / "ds"
    proc = run_cli("synth", "--out", out, "--clips", "2", "--frames", "3", "--size", "48x32", "--seed", "4")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 2 clips" in proc.stdout and "Traceback" not in proc.stderr
    from mamakit.dataset import Dataset
    # generator knobs: recorded per clip, and they change the content (no transparency, no hair, no holes)
    knobbed = tmp_path / "knobbed"
    proc = run_cli("synth", "--out", knobbed, "--clips", "2", "--frames", "3", "--size", "48x32", "--seed", "4",
                   "--set", "p_transparent=0", "--set", "transparency=0.3,0.9", "--set", "n_strands=2,4")
    assert proc.returncode == 0, proc.stderr
    metas = [json.loads((c.root / "meta.json").read_text()) for c in Dataset(knobbed)]
    assert all(m["synth"]["config"] == {"p_transparent": 0.0, "transparency": [0.3, 0.9], "n_strands": [2, 4]}
               for m in metas), metas[0]
    assert all("config" not in json.loads((c.root / "meta.json").read_text())["synth"] for c in Dataset(out))
    ds = Dataset(out)
    assert len(ds) == 2 and ds[0].size == (48, 32) and len(ds[0]) == 3
    pred = tmp_path / "pred"
    for clip in ds:
        shutil.copytree(clip.root / "masks", pred / clip.id)  # coarse masks as a "prediction"
    proc = run_cli("eval", "--pred", pred, "--gt", out, "--json", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "m.json").read_text())
    assert res["frames"] == 6 and res["mad"] > 1  # coarse masks are not the matte


def test_core_cli_awkward_valid_inputs(tmp_path):
    """16-bit RGBA PNG, grayscale JPG and an odd size are valid inputs."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    rng = np.random.default_rng(5)
    a = rng.random((359, 641))
    rgba = np.zeros((359, 641, 4), np.uint16)
    rgba[..., 3] = np.round(a * 65535).astype(np.uint16)
    cv2.imwrite(str(gt / "f0.png"), rgba)
    cv2.imwrite(str(pred / "f0.jpg"), np.round(a * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 100])
    proc = run_cli("eval", "--pred", pred, "--gt", gt, "--json", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "m.json").read_text())
    assert res["frames"] == 1 and res["mad"] < 10  # only JPEG error


# ------------------------------------------------------------------ core without torch
def test_core_cli_works_without_torch(tmp_path, no_torch_path, good):
    _, gt, pred = good
    env = dict(os.environ)
    env["PYTHONPATH"] = str(no_torch_path) + os.pathsep + env.get("PYTHONPATH", "")
    code = ("import sys, mamakit, mamakit.io, mamakit.metrics, mamakit.dataset, mamakit.degrade, mamakit.cli\n"
            "import mamakit.cli.eval_cmd, mamakit.cli.synth_cmd\n"
            "try:\n    import torch\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('torch not blocked')\n"
            "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    h = run_cli("--help", block_torch=no_torch_path)
    assert h.returncode == 0 and "eval" in h.stdout and "synth" in h.stdout, h.stderr
    e = run_cli("eval", "--pred", pred, "--gt", gt, "--json", tmp_path / "m.json", block_torch=no_torch_path)
    assert e.returncode == 0, e.stderr
    assert json.loads((tmp_path / "m.json").read_text())["frames"] == 3
    s = run_cli("synth", "--out", tmp_path / "s", "--clips", "1", "--frames", "2", "--size", "32x32",
                block_torch=no_torch_path)
    assert s.returncode == 0, s.stderr


# ------------------------------------------------------------------ packaging
def test_core_cli_wheel_contents_and_target_install(tmp_path):
    # build from a copy of what the build reads, so the shared checkout gets no build/ or egg-info
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.egg-info", "lightning_logs")
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in",
                 "core", "teacher", "student", "export", "runtime"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        elif (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(wheels), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = wheels.glob("mamakit-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    for required in ("mamakit/__init__.py", "mamakit/io/__init__.py", "mamakit/io/writers.py", "mamakit/metrics.py",
                     "mamakit/dataset.py", "mamakit/synth.py", "mamakit/degrade.py", "mamakit/cli/__init__.py",
                     "mamakit/cli/eval_cmd.py", "mamakit/teacher/__init__.py", "mamakit/student/__init__.py",
                     "mamakit/export/__init__.py", "mamakit/runtime/__init__.py"):
        assert required in names, required
    assert not any(n.startswith(("core/", "tests/", "runtime/")) for n in names)
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(whl)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = dict(os.environ, PYTHONPATH=str(target))
    code = ("import mamakit, mamakit.io, mamakit.metrics, mamakit.runtime, mamakit.teacher\n"
            "print(mamakit.__file__); print(mamakit.runtime.__file__)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    files = out.stdout.split()
    assert all(f.startswith(str(target)) for f in files), files


def test_core_cli_editable_install_layout():
    code = "import mamakit, mamakit.runtime, mamakit.io; print(mamakit.__file__); print(mamakit.runtime.__file__); print(mamakit.io.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    core, runtime, io_ = (Path(p) for p in out.stdout.split())
    assert core == ROOT / "core" / "__init__.py"
    assert runtime == ROOT / "runtime" / "__init__.py"
    assert io_ == ROOT / "core" / "io" / "__init__.py"


def test_core_cli_eval_alpha_videos(good):
    """`--pred` may be an alpha video: ProRes 4444 / VP9 alpha channel, or a gray matte MP4."""
    from mamakit.io import open_alpha_sink, read_alpha, video_has_alpha

    tmp, gt, _ = good
    alphas = [read_alpha(gt / f"{i:03d}.png") for i in range(3)]
    frame = np.full((30, 40, 3), 200, np.uint8)  # the RGB must not leak into the alpha
    for name in ("a.mov", "a.webm", "a.mp4"):
        with open_alpha_sink(tmp / name, fps=10, size=(40, 30)) as sink:
            for a in alphas:
                sink.write(a, frame=frame)
        assert video_has_alpha(tmp / name) == (name != "a.mp4")
        proc = run_cli("eval", "--pred", tmp / name, "--gt", gt, "--json", tmp / f"{name}.json")
        assert proc.returncode == 0, proc.stderr
        res = json.loads((tmp / f"{name}.json").read_text())
        assert res["frames"] == 3
        assert res["mad"] < {"a.mov": 3, "a.webm": 60, "a.mp4": 60}[name], (name, res["mad"])
