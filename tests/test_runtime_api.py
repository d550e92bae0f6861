"""mamakit.runtime library: sessions, alignment, state policy, pipeline, providers, compositing.

Two kinds of bundle, each built once per test session in a temp dir:
* ``student_bundle``: a real tiny ``StudentNet`` (random weights) exported with ``mamakit.export``;
* ``probe_bundle``: a real ONNX graph built with onnx.helper whose outputs expose what the runtime
  feeds it (``pha = guide``, ``fgr = r1i/100``, ``r1o = r1i + 1``), so alignment, guidance and
  state resets are observable exactly.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mamakit.errors import ConfigError

# one xdist worker for the runtime tests: the exported bundles are built once and shared
pytestmark = pytest.mark.xdist_group("runtime")

PROC = (64, 36)  # probe bundle processing size (w, h)


# ------------------------------------------------------------------------------ bundle builders
def build_student_bundle(root: Path, size=(128, 72)) -> Path:
    """A real tiny StudentNet exported by mamakit.export (cached under ``root``)."""
    out = root / f"student_{size[0]}x{size[1]}"
    if (out / "bundle.json").is_file():
        return out
    import torch

    from mamakit.export.student import StudentExportOptions, export_student
    from mamakit.student.models import StudentConfig, StudentNet

    torch.manual_seed(0)
    ckpt = root / f"student_ckpt_{size[0]}x{size[1]}"
    StudentNet(StudentConfig.preset("small")).save_pretrained(ckpt)
    export_student(ckpt, out, StudentExportOptions(size=size, parity_frames=2, sample_calls=1, threads=1,
                                                   overwrite=True))
    return out


def build_probe_bundle(root: Path, size=PROC) -> Path:
    """pha = guide, fgr = r1i/100 (broadcast), r1o = r1i + 1: a graph that reports its inputs."""
    out = root / f"probe_{size[0]}x{size[1]}"
    if (out / "bundle.json").is_file():
        return out
    import onnx
    from onnx import TensorProto, helper

    from mamakit.bundle import StateSpec, TensorSpec, new_manifest, write_manifest

    w, h = size
    out.mkdir(parents=True)
    nodes = [
        helper.make_node("Identity", ["guide"], ["pha"]),
        helper.make_node("Mul", ["src", "zero"], ["src0"]),
        helper.make_node("Div", ["r1i", "hundred"], ["r1s"]),
        helper.make_node("Add", ["src0", "r1s"], ["fgr"]),
        helper.make_node("Add", ["r1i", "one"], ["r1o"]),
    ]
    init = [helper.make_tensor(n, TensorProto.FLOAT, [], [v]) for n, v in (("zero", 0.0), ("hundred", 100.0), ("one", 1.0))]
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    g = helper.make_graph(nodes, "probe", [vi("src", [1, 3, h, w]), vi("guide", [1, 1, h, w]), vi("r1i", [1, 1, 1, 1])],
                          [vi("pha", [1, 1, h, w]), vi("fgr", [1, 3, h, w]), vi("r1o", [1, 1, 1, 1])], init)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, out / "main.onnx")
    m = new_manifest("student", processing_size=size, precision="fp32")
    m["graphs"]["main"] = {
        "file": "main.onnx",
        "inputs": [TensorSpec("src", [1, 3, h, w]).to_dict(), TensorSpec("guide", [1, 1, h, w]).to_dict(),
                   TensorSpec("r1i", [1, 1, 1, 1]).to_dict()],
        "outputs": [TensorSpec("pha", [1, 1, h, w]).to_dict(), TensorSpec("fgr", [1, 3, h, w]).to_dict(),
                    TensorSpec("r1o", [1, 1, 1, 1]).to_dict()],
        "state": [StateSpec("r1i", "r1o", [1, 1, 1, 1]).to_dict()],
    }
    write_manifest(out, m)
    return out


@pytest.fixture(scope="session")
def runtime_root(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "runtime_bundles"


@pytest.fixture(scope="session")
def student_bundle(runtime_root) -> Path:
    runtime_root.mkdir(exist_ok=True)
    return build_student_bundle(runtime_root)


@pytest.fixture(scope="session")
def probe_bundle(runtime_root) -> Path:
    runtime_root.mkdir(exist_ok=True)
    return build_probe_bundle(runtime_root)


def _frame(w, h, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _disk(w, h, cx, cy, r):
    yy, xx = np.mgrid[0:h, 0:w]
    return (((xx - cx) ** 2 + (yy - cy) ** 2) <= r * r).astype(np.float32)


def _centroid(a):
    yy, xx = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    s = a.sum()
    return float((a * xx).sum() / s), float((a * yy).sum() / s)


# ------------------------------------------------------------------------------ sessions
def test_runtime_student_session_matches_export_reference(student_bundle):
    """The runtime's I/O-bound graph call reproduces the PyTorch outputs recorded at export time."""
    from mamakit.runtime.sessions import open_session

    s = open_session(student_bundle, threads=1)
    z = np.load(student_bundle / "sample.npz", allow_pickle=False)
    ins = {k.split("/")[-1]: z[k] for k in z.files if k.startswith("000/main/in/")}
    outs = {k.split("/")[-1]: z[k] for k in z.files if k.startswith("000/main/out/")}
    b = s.backend
    for st, v in zip(b.state, b._states[b._k]):
        v.update_inplace(np.ascontiguousarray(ins[st.input], np.float32))
    w, h = s.bundle.processing_size
    pha, fgr = np.zeros((1, 1, h, w), np.float32), np.zeros((1, 3, h, w), np.float32)
    b.run(np.ascontiguousarray(ins["src"]), np.ascontiguousarray(ins["guide"]), pha, fgr)
    assert np.abs(pha - outs["pha"]).max() < 1e-4
    assert np.abs(fgr - outs["fgr"]).max() < 1e-4
    for st, v in zip(b.state, b._states[b._k]):  # the new state landed in the other ping-pong set
        assert np.abs(v.numpy() - outs[st.output]).max() < 1e-4, st.output
    # Matter on real frames of any size: alpha at the source size, finite, 0..1
    from mamakit.runtime import Matter

    m = Matter.load(student_bundle, threads=1)
    for w_, h_ in ((200, 113), (57, 91)):
        a = m.step(_frame(w_, h_), _disk(w_, h_, w_ / 2, h_ / 2, min(w_, h_) / 3))
        assert a.shape == (h_, w_) and a.dtype == np.float32 and np.isfinite(a).all()
        assert 0.0 <= a.min() and a.max() <= 1.0


@pytest.mark.parametrize("size", [(64, 36), (200, 113), (101, 77), (45, 90), (1280, 720)])
def test_runtime_alpha_is_pixel_aligned_at_source_size(probe_bundle, size):
    """pha = guide: the alpha the runtime returns must sit exactly where the mask was."""
    from mamakit.runtime import Matter

    w, h = size
    m = Matter.load(probe_bundle, announce=False)
    cx, cy, r = w * 0.37, h * 0.58, min(w, h) * 0.3
    mask = _disk(w, h, cx, cy, r)
    a = m.step(_frame(w, h), mask)
    assert a.shape == (h, w)
    ex, ey = _centroid(mask)
    ax, ay = _centroid(a)
    assert abs(ax - ex) < 0.35 and abs(ay - ey) < 0.35, (ax, ay, ex, ey)
    # interior / exterior survive the round trip through the processing size
    scale = max(w / PROC[0], h / PROC[1])
    inner = _disk(w, h, cx, cy, r - 2 * scale) > 0
    outer = _disk(w, h, cx, cy, r + 2 * scale) == 0
    assert a[inner].min() > 0.9 and a[outer].max() < 0.1


def test_runtime_state_guide_and_resets(probe_bundle, caplog):
    """Zero initial state, guide = mask when present else previous alpha, reset on cut / size change."""
    from mamakit.runtime import Matter

    m = Matter.load(probe_bundle, announce=False, scene_cut=0.2)
    s = m.session
    w, h = 128, 72
    base = np.full((h, w, 3), 90, np.uint8)
    mask = _disk(w, h, 60, 30, 20)
    counts, alphas = [], []
    frames = [(base, mask), (base, None), (base, None), (255 - base, None),  # cut at 3
              (cv2.resize(255 - base, (96, 64)), None), (cv2.resize(255 - base, (96, 64)), None)]  # size at 4
    for f, mk in frames:
        alphas.append(m.step(f, mk))
        counts.append(round(float(s.last_fgr.mean()) * 100))
    assert counts == [0, 1, 2, 0, 0, 1]
    np.testing.assert_allclose(alphas[1], alphas[0], atol=1e-5)  # no mask: the previous alpha guides
    np.testing.assert_allclose(alphas[2], alphas[0], atol=1e-5)
    assert alphas[3].max() < 1e-6  # after the cut the old alpha is forgotten
    m.reset()
    m.step(base, None)
    assert round(float(s.last_fgr.mean()) * 100) == 0


# ------------------------------------------------------------------------------ pipeline
def test_runtime_stream_offline_keeps_every_frame_in_order_and_changes_size(probe_bundle):
    from mamakit.runtime import Matter

    m = Matter.load(probe_bundle, announce=False, scene_cut=0)
    sizes = [(80, 60)] * 4 + [(50, 90)] * 3 + [(80, 60)] * 2
    frames = [_frame(w, h, i) for i, (w, h) in enumerate(sizes)]
    got = []
    pipe = m.pipeline(iter(frames), None, live=False)
    for r in pipe:
        got.append((r.index, r.alpha.shape, r.reset, round(float(m.session._prev.mean()), 4)))
    assert [g[0] for g in got] == list(range(len(frames)))
    assert [g[1] for g in got] == [(h, w) for w, h in sizes]
    assert [g[2] for g in got] == [True, False, False, False, True, False, False, True, False]
    st = pipe.stats.to_dict()
    assert st["frames"] == len(frames) and st["dropped"] == 0 and st["resets"] == 3
    assert set(st["stage_ms"]) == {"decode", "pre", "infer", "post", "sink"}
    assert st["latency_ms"]["p50"] > 0


def test_runtime_stream_live_drops_instead_of_lagging(probe_bundle):
    from mamakit.runtime import Matter

    m = Matter.load(probe_bundle, announce=False)

    def camera(n=60):  # a 200 FPS "camera"
        for i in range(n):
            time.sleep(0.005)
            yield _frame(64, 36, i % 3)

    pipe = m.pipeline(camera(), None, live=True)
    seen = []
    for r in pipe:
        seen.append(r.index)
        time.sleep(0.03)  # a slow consumer (display)
    st = pipe.stats.to_dict()
    assert st["dropped"] > 10, st
    assert seen == sorted(seen) and seen[-1] >= 50  # newest frames win
    assert st["latency_ms"]["p95"] < 500


def test_runtime_stage_exception_is_reraised_in_caller(probe_bundle):
    from mamakit.runtime import Matter
    from mamakit.runtime.masks import MaskProvider

    m = Matter.load(probe_bundle, announce=False)

    def broken_source():
        yield _frame(64, 36)
        yield _frame(64, 36)
        raise ValueError("decoder exploded")

    with pytest.raises(ValueError, match="decoder exploded"):
        for _ in m.stream(broken_source()):
            pass

    class BadMasks(MaskProvider):
        def get(self, index, name, frame):
            if index == 2:
                raise RuntimeError("mask provider failed")
            return None

    with pytest.raises(RuntimeError, match="mask provider failed"):
        for _ in m.pipeline(iter([_frame(64, 36)] * 5), BadMasks()):
            pass


# ------------------------------------------------------------------------------ providers
def test_runtime_provider_unavailable_falls_back_with_one_line(probe_bundle, caplog):
    from mamakit.runtime import providers

    providers._warned.clear()
    caplog.set_level(logging.WARNING, logger="mamakit")
    sess, name = providers.create_ort_session(probe_bundle / "main.onnx", "cuda")
    sess2, name2 = providers.create_ort_session(probe_bundle / "main.onnx", "cuda")
    assert name == name2 == "cpu"
    lines = [r.getMessage() for r in caplog.records if "falling back" in r.getMessage()]
    assert len(lines) == 1 and "cuda" in lines[0] and "cpu" in lines[0]
    with pytest.raises(ConfigError, match="unknown provider"):
        providers.normalise("quantum")
    with pytest.raises(ConfigError):
        providers.create_ort_session(probe_bundle / "main.onnx", "cuda", strict=True)
    assert providers.normalise("CUDAExecutionProvider") == "cuda" and providers.normalise("dml") == "directml"


def test_runtime_engine_refused_for_other_trt_version_or_gpu(probe_bundle):
    from mamakit.errors import BundleError
    from mamakit.runtime.sessions.tensorrt import check_compatible

    gpu = {"name": "RTX 4090", "compute_capability": "8.9"}
    check_compatible({"file": "main.engine", "trt_version": "10.3.0", "compute_capability": "8.9"}, "10.3.0", gpu, "b")
    with pytest.raises(BundleError, match="rebuild"):
        check_compatible({"file": "main.engine", "trt_version": "10.0.1"}, "10.3.0", gpu, "b")
    with pytest.raises(BundleError, match="compute capability 8.6"):
        check_compatible({"file": "main.engine", "trt_version": "10.3.0", "compute_capability": [8, 6]}, "10.3.0",
                         gpu, "b")


# ------------------------------------------------------------------------------ compositing
def test_runtime_backgrounds_and_foreground_estimation(tmp_path):
    from mamakit.runtime.composite import AlphaSmoother, Compositor, estimate_foreground, parse_background

    f = _frame(160, 90)
    assert (parse_background("#FF00ff").get(f, 0) == [255, 0, 255]).all()
    assert (parse_background("green").get(f, 0) == [0, 177, 64]).all()
    blur = parse_background("blur:6").get(f, 0)
    assert blur.shape == f.shape and blur.std() < f.std() / 3
    img = tmp_path / "bg.png"
    cv2.imwrite(str(img), np.full((40, 30, 3), (10, 20, 30), np.uint8))
    assert (parse_background(str(img)).get(f, 0) == [30, 20, 10]).all()  # BGR file -> RGB
    from mamakit.io import VideoWriter

    vid = tmp_path / "bg.mp4"
    with VideoWriter(vid, 10, (64, 48)) as vw:
        for v in (20, 120, 220):
            vw.write(np.full((48, 64, 3), v, np.uint8))
    vb = parse_background(str(vid))
    got = [int(vb.get(f, i).mean()) for i in range(5)]
    assert [abs(g - e) < 6 for g, e in zip(got, (20, 120, 220, 20, 120))] == [True] * 5, got  # looped
    assert vb.get(f, 5).shape == f.shape
    vb.close()
    for bad in ("notacolour", "blur:x", str(tmp_path / "missing.png")):
        with pytest.raises(ConfigError):
            parse_background(bad)
    # un-mixing: a blue screen behind a red subject with a soft edge
    a = np.zeros((90, 160), np.float32)
    a[20:70, 40:120] = 1
    a = cv2.GaussianBlur(a, (0, 0), 3)
    F, B = np.array([200, 50, 50], np.float32), np.array([0, 0, 255], np.float32)
    img = (a[..., None] * F + (1 - a[..., None]) * B + 0.5).astype(np.uint8)
    band = (a > 0.1) & (a < 0.9)
    fe = estimate_foreground(img, a)
    assert np.abs(fe[band] - F).mean() < 5 < np.abs(img[band].astype(np.float32) - F).mean()
    white = np.array([255, 255, 255], np.float32)
    want = a[band][:, None] * F + (1 - a[band][:, None]) * white
    est = Compositor(parse_background("white"))(img, a)[band]
    raw = Compositor(parse_background("white"), estimate_fg=False)(img, a)[band]
    assert np.abs(est - want).mean() < 3 and np.abs(raw - want).mean() > 10
    sm = AlphaSmoother(0.5)
    a0 = np.full((4, 4), 0.5, np.float32)
    sm(a0.copy())
    out = sm(np.full((4, 4), 0.52, np.float32))
    assert 0.5 < out[0, 0] < 0.52  # small flicker damped
    out = sm(np.full((4, 4), 1.0, np.float32))
    assert out[0, 0] == 1.0  # real motion kept


def test_runtime_imports_and_runs_without_torch(probe_bundle, no_torch_path):
    code = (
        "import sys, numpy as np\n"
        "import mamakit.runtime as rt\n"
        "from mamakit.runtime import Matter\n"
        "import mamakit.runtime.cli, mamakit.runtime.pipeline, mamakit.runtime.composite, mamakit.runtime.serve\n"
        f"m = Matter.load({str(probe_bundle)!r})\n"
        "a = m.step(np.zeros((50, 70, 3), np.uint8), np.ones((50, 70), np.float32))\n"
        "assert a.shape == (50, 70) and abs(a.mean() - 1) < 1e-3\n"
        "bad = [k for k in sys.modules if k.split('.')[0] in ('torch', 'onnx', 'diffusers', 'lightning')\n"
        "       or k.startswith(('mamakit.teacher', 'mamakit.student', 'mamakit.export'))]\n"
        "assert not bad, bad\n"
        "print('ok', m.provider)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(no_torch_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "ok cpu" in p.stdout


def test_runtime_prompt_parsing_and_refusals():
    from mamakit.runtime.masks import check_prompt_inside, parse_prompt

    p, l, b = parse_prompt("point=10,20;neg=30,40")
    assert p.tolist() == [[10, 20], [30, 40]] and l.tolist() == [1, 0] and b is None
    p, l, b = parse_prompt("box=1,2,30,40")
    assert p is None and b.tolist() == [1, 2, 30, 40]
    assert parse_prompt("5,6")[0].tolist() == [[5, 6]] and parse_prompt(None) == (None, None, None)
    for bad in ("box=5,5,5,9", "nonsense", "point=1", "box=1,2,3"):
        with pytest.raises(ConfigError):
            parse_prompt(bad)
    check_prompt_inside(np.array([[0, 0], [99, 49]]), None, (100, 50))
    with pytest.raises(ConfigError, match="outside"):
        check_prompt_inside(np.array([[100, 10]]), None, (100, 50))
    with pytest.raises(ConfigError, match="outside"):
        check_prompt_inside(None, np.array([120, 0, 150, 20]), (100, 50))


def test_runtime_engine_request_without_gpu_falls_back(probe_bundle, tmp_path, caplog):
    import json
    import shutil

    from mamakit.bundle import write_manifest
    from mamakit.runtime import Matter, providers

    b = tmp_path / "with_engine"
    shutil.copytree(probe_bundle, b)
    (b / "main.engine").write_bytes(b"not a real engine: only its manifest entry is read without a GPU")
    m = json.loads((b / "bundle.json").read_text())
    m["engines"] = [{"graph": "main", "file": "main.engine", "backend": "tensorrt-rtx", "trt_version": "1.7.1",
                     "compute_capability": "8.9"}]
    write_manifest(b, m)
    providers._warned.clear()
    caplog.set_level(logging.WARNING, logger="mamakit")
    mt = Matter.load(b, provider="rtx-engine", announce=False)
    assert mt.provider == "cpu"
    lines = [r.getMessage() for r in caplog.records if "falling back" in r.getMessage()]
    assert len(lines) == 1 and "rtx-engine" in lines[0], lines
    assert mt.step(_frame(64, 36), np.ones((36, 64), np.float32)).mean() > 0.99


def test_runtime_stabilised_student_carries_its_state_by_flow_as_pytorch_does(runtime_root):
    """A student exported with ``--set stabilizer=0.5`` names its c0 state's carry in the manifest; the
    runtime moves that state by optical flow between frames (no torch needed for it) and streams
    what mamakit.student.stream computes in PyTorch, frame for frame; a reset starts it over."""
    import json

    import torch

    from mamakit.export.student import StudentExportOptions, export_student
    from mamakit.runtime import Matter
    from mamakit.student import load_student, stream
    from mamakit.student.models import StudentConfig, StudentNet

    torch.manual_seed(1)
    ckpt, out = runtime_root / "stab_ckpt", runtime_root / "stab_bundle"
    net = StudentNet(StudentConfig.preset("small"))
    with torch.no_grad():
        for p in [*net.head.parameters(), *net.refiner.conv[-1].parameters()]:
            p.normal_(0, 0.3)
    net.save_pretrained(ckpt)
    export_student(ckpt, out, StudentExportOptions(size=(128, 72), parity_frames=2, sample_calls=1, threads=1,
                                                   overwrite=True, fgr=False, student_set=("stabilizer=0.5",)))
    state = json.loads((out / "bundle.json").read_text())["graphs"]["main"]["state"]
    assert state[-1]["input"] == "c0i" and state[-1]["carry"] == "flow" and state[-1]["carry_params"]["flow_scale"] > 0
    assert all("carry" not in s for s in state[:-1])
    rng = np.random.default_rng(3)
    import cv2

    tex = cv2.resize((rng.random((12, 20, 3)) * 255).astype(np.uint8), (150, 90), interpolation=cv2.INTER_CUBIC)
    frames = np.stack([tex[3 + t: 3 + t + 72, 4 + 3 * t: 4 + 3 * t + 128] for t in range(4)])
    masks = np.stack([_disk(128, 72, 60 + 3 * t, 36, 20) for t in range(4)]).astype(np.float32)
    model = load_student(ckpt).eval()
    model.reconfigure(stabilizer=0.5)
    want = stream(model, frames, masks)
    model.reconfigure(stabilizer=0.0)
    plain = stream(model, frames, masks)
    m = Matter.load(out, threads=1)
    for rep in range(2):  # the second pass after a reset
        got = np.stack([m.step(f, k) for f, k in zip(frames, masks)])
        assert np.abs(got - want).max() < 1e-4
        m.reset()
    assert np.abs(want[1:] - plain[1:]).max() > 1e-3  # the carried state matters
    off = Matter.load(out, threads=1, stabilize=False)  # `mamakit run --no-stabilize`
    assert np.abs(np.stack([off.step(f, k) for f, k in zip(frames, masks)]) - plain).max() < 1e-4
    # the threaded pipeline (motion computed ahead in its pre-processing thread) streams the same,
    # here from a first-frame mask file: the student's own alpha guides the rest
    first = runtime_root / "stab_first_mask.png"
    cv2.imwrite(str(first), (masks[0] * 255).astype(np.uint8))
    model.reconfigure(stabilizer=0.5)
    want_ff = stream(model, frames, masks, first_frame_only=True)
    got_ff = np.stack([r.alpha.copy() for r in m.stream(iter(list(frames)), masks=first)])
    assert got_ff.shape == want_ff.shape and np.abs(got_ff - want_ff).max() < 1e-4
