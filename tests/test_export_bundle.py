"""Export: tiny StudentNet -> fp32 / fp16 / int8 bundles, verified by `mamakit export check`
(with torch blocked), parity refusal, the bad inputs of issue 5 (exit 2, one line, nothing written),
and TensorRT-RTX ahead-of-time engine builds for every precision."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

torch = pytest.importorskip("torch")

SIZE = (128, 96)
FRAMES = 6


def _tiny_student(seed: int = 0):
    from mamakit.student.models import StudentConfig, StudentNet

    torch.manual_seed(seed)
    return StudentNet(StudentConfig(decoder_channels=(8, 8, 8, 8, 8), refiner_hidden=4)).eval()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def student_dir(work) -> Path:
    d = work / "tiny-student"
    _tiny_student().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def student_ckpt(work) -> Path:
    """A Lightning-style checkpoint as `mamakit distill` writes it (kind + config + prefixed weights)."""
    from mamakit.student.loading import STUDENT_PREFIX, checkpoint_meta

    m = _tiny_student()
    path = work / "tiny.ckpt"
    torch.save({"state_dict": {STUDENT_PREFIX + k: v for k, v in m.state_dict().items()},
                "mamakit": {**checkpoint_meta(m.config.to_dict()), "teacher": "videomama@1.0"},
                "global_step": 3}, path)
    return path


@pytest.fixture(scope="module")
def calib(work) -> Path:
    from mamakit.synth import synth_dataset

    synth_dataset(work / "calib", clips=2, frames=6, size=SIZE, seed=3)
    return work / "calib"


@pytest.fixture(scope="module")
def bundles(work, student_dir, calib) -> dict[str, Path]:
    from mamakit.export.student import StudentExportOptions, export_student

    out = {}
    for p in ("fp32", "fp16", "int8"):
        out[p] = export_student(student_dir, work / f"b-{p}", StudentExportOptions(
            size=SIZE, precision=p, calib=str(calib) if p == "int8" else None, parity_frames=FRAMES))
    return out


def _manifest(b: Path) -> dict:
    return json.loads((b / "bundle.json").read_text())


# ---------------------------------------------------------------------------------------------
def test_export_bundles_pass_check_without_torch(bundles, no_torch_path):
    for p, b in bundles.items():
        proc = run_cli("export", "check", b, block_torch=no_torch_path)
        assert proc.returncode == 0, (p, proc.stdout, proc.stderr)
        assert "OK" in proc.stdout and "sample main/pha" in proc.stdout


def test_export_manifest_records_everything(bundles, student_dir):
    from mamakit.bundle import FORMAT_VERSION, load_bundle
    from mamakit.fsutil import sha256_file

    for p, b in bundles.items():
        m = _manifest(b)
        assert m["format_version"] == FORMAT_VERSION and m["kind"] == "student" and m["precision"] == p
        assert m["processing_size"] == list(SIZE) and m["downsample_ratio"] == pytest.approx(0.4)
        g = m["graphs"]["main"]
        assert g["sha256"] == sha256_file(b / "main.onnx") == m["files"]["main.onnx"]
        assert [t["name"] for t in g["inputs"]] == ["src", "guide", "r1i", "r2i", "r3i", "r4i"]
        assert [t["name"] for t in g["outputs"]] == ["pha", "fgr", "r1o", "r2o", "r3o", "r4o"]
        assert all(t["dtype"] == "float32" for t in g["inputs"] + g["outputs"])  # fp32 I/O at every precision
        assert g["inputs"][0]["shape"] == [1, 3, SIZE[1], SIZE[0]] and "rgb 0..1" in g["inputs"][0]["normalisation"]
        assert [s["input"] for s in g["state"]] == ["r1i", "r2i", "r3i", "r4i"]
        assert all(s["init"] == "zeros" for s in g["state"])
        assert m["source"]["sha256"] == sha256_file(student_dir / "model.safetensors")
        assert m["toolkit_version"] and m["created"].endswith("+00:00")
        assert m["provenance"]["licence"] == m["licence"]
        par = m["parity"]
        assert par["passed"] and par["clip"]["frames"] == FRAMES
        assert par["ms_per_frame"]["onnxruntime"] > 0 and par["speedup_vs_fp32"] > 0
        assert m["sample"]["calls"] == 3 and m["sample"]["file"] in m["files"]
        b_ = load_bundle(b)
        assert b_.state()[0].shape == g["state"][0]["shape"]
    assert _manifest(bundles["fp32"])["parity"]["max_abs_diff_pha"] <= 1e-4
    assert _manifest(bundles["fp16"])["parity"]["max_abs_diff_pha"] <= 5e-3
    i8 = _manifest(bundles["int8"])
    assert i8["parity"]["mad_vs_gt_onnx"] <= 1.1 * i8["parity"]["mad_vs_gt_pytorch"]
    assert i8["export"]["conversion"]["calibration_frames"] == 12  # 2 clips x 6 frames, state carried
    conv = i8["export"]["conversion"]
    assert conv["scheme"] == "trt" and conv["convs"] == "spatial"
    # only the standard kxk convs are int8 (not depthwise, not 1x1): fewer than all, at least one
    assert 0 < conv["quantised_convs"] < conv["total_convs"]


def test_int8_quantises_only_the_spatial_convs(bundles):
    """The int8 graph dequantises exactly the weights of the group-1 kxk convs of the fp32 graph;
    depthwise and 1x1 convs keep float weights; ONNX Runtime fuses the kxk convs into QLinearConv."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from mamakit.export.graph import spatial_convs

    fp32 = onnx.load(str(bundles["fp32"] / "main.onnx"))
    int8 = onnx.load(str(bundles["int8"] / "main.onnx"))
    spatial = spatial_convs(fp32)
    inits = {i.name: i for i in int8.graph.initializer}
    producers = {o: n for n in int8.graph.node for o in n.output}
    int8_convs, float_convs = 0, 0
    for n in int8.graph.node:
        if n.op_type != "Conv":
            continue
        w = producers.get(n.input[1])
        if w is not None and w.op_type == "DequantizeLinear":
            q = inits[w.input[0]]
            assert q.data_type == onnx.TensorProto.INT8
            assert not numpy_helper.to_array(inits[w.input[2]]).any()  # symmetric: zero-point 0 (TensorRT)
            assert len(numpy_helper.to_array(inits[w.input[1]]).shape) == 1  # per output channel
            assert list(q.dims[2:]) != [1, 1]
            int8_convs += 1
        else:
            float_convs += 1
    assert int8_convs == len(spatial) > 0 and float_convs > 0
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(bundles["int8"].parent / "int8-optimized.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    ort.InferenceSession(str(bundles["int8"] / "main.onnx"), so, providers=["CPUExecutionProvider"])
    optimized = onnx.load(so.optimized_model_filepath)
    assert sum(n.op_type == "QLinearConv" for n in optimized.graph.node) == len(spatial)


def test_int8_cpu_scheme_quantises_the_whole_trunk_not_the_refiner(work, student_dir, calib):
    """--int8-scheme cpu --int8-convs trunk: besides convs, the trunk's element-wise, concat,
    resize and pooling ops are int8 (ONNX Runtime fuses them into QLinear* kernels), while every
    /refiner/ node stays fp32; alpha MAD vs GT within 10 % of fp32."""
    import onnx
    import onnxruntime as ort

    from mamakit.export.graph import REFINER_MARKER
    from mamakit.export.student import StudentExportOptions, export_student

    b = export_student(student_dir, work / "b-int8-cpu", StudentExportOptions(
        size=SIZE, precision="int8", int8_scheme="cpu", int8_convs="trunk", calib=str(calib), parity_frames=FRAMES))
    m = _manifest(b)
    conv = m["export"]["conversion"]
    assert conv["scheme"] == "cpu" and conv["convs"] == "trunk" and conv["fp32_nodes"] > 0
    assert conv["quantised_convs"] > 0
    assert m["parity"]["mad_vs_gt_onnx"] <= 1.1 * m["parity"]["mad_vs_gt_pytorch"]
    g = onnx.load(str(b / "main.onnx"))
    producers = {o: n for n in g.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    refiner = [n for n in g.graph.node if REFINER_MARKER in n.name]
    assert refiner, "the graph's refiner nodes are not named /refiner/...: the trunk selection would miss them"
    for n in refiner:  # fp32: no int8 weights, nothing of it re-quantised
        assert not any(producers.get(t) is not None and producers[t].op_type == "DequantizeLinear"
                       and REFINER_MARKER in producers[t].input[0] for t in n.input), n.name
        assert not any(c.op_type == "QuantizeLinear" for o in n.output for c in consumers.get(o, [])), n.name
    quantised_ops = {n.op_type for n in g.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                     and any(producers.get(t) is not None and producers[t].op_type == "DequantizeLinear"
                             for t in n.input) and REFINER_MARKER not in n.name}
    assert "Conv" in quantised_ops and quantised_ops & {"Add", "Mul", "Concat", "Resize", "AveragePool"}, quantised_ops
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(work / "int8-cpu-optimized.onnx")
    ort.InferenceSession(str(b / "main.onnx"), so, providers=["CPUExecutionProvider"])
    fused = {n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node}
    assert "QLinearConv" in fused and fused & {"QLinearAdd", "QLinearMul", "QLinearConcat"}, fused


def test_export_sample_is_not_trivial(bundles):
    """The reference sample must be able to fail: alpha varies, state is non-zero after frame 0."""
    from mamakit.export.check import load_sample

    calls = load_sample(bundles["fp32"] / "sample.npz")
    assert len(calls) == 3
    graph, ins, outs = calls[1]
    assert graph == "main" and set(ins) == {"src", "guide", "r1i", "r2i", "r3i", "r4i"}
    assert float(outs["pha"].std()) > 1e-2
    assert float(np.abs(ins["r1i"]).max()) > 0  # state carried from call 0
    np.testing.assert_array_equal(ins["r1i"], calls[0][2]["r1o"])


def test_export_onnx_cli_from_lightning_checkpoint(work, student_ckpt, no_torch_path):
    out = work / "cli-bundle"
    proc = run_cli("export", "onnx", "--checkpoint", student_ckpt, "--out", out, "--size", "128x96",
                   "--parity-frames", "4")
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    m = _manifest(out)
    assert m["provenance"]["teacher"] == "videomama@1.0"
    assert m["licence"] == "CC-BY-NC-4.0"  # inherited from the VideoMaMa teacher
    assert "non-commercial" in (out / "MODEL_CARD.md").read_text()
    # existing bundle: refused without --overwrite, nothing changed
    before = (out / "bundle.json").read_text()
    proc = run_cli("export", "onnx", "--checkpoint", student_ckpt, "--out", out, "--size", "128x96")
    assert_one_line_error(proc, 2, "--overwrite")
    assert (out / "bundle.json").read_text() == before


def test_export_alpha_only_graph_same_alpha_and_runtime_refuses_fg_student(work, student_ckpt, bundles,
                                                                          no_torch_path, tmp_path):
    """--no-fgr: a graph without the fgr output whose alpha equals the full graph's, frame after frame."""
    import onnxruntime as ort

    out = work / "cli-nofgr"
    proc = run_cli("export", "onnx", "--checkpoint", student_ckpt, "--out", out, "--size", "128x96",
                   "--parity-frames", "4", "--no-fgr")
    assert proc.returncode == 0, proc.stderr
    m = _manifest(out)
    assert [o["name"] for o in m["graphs"]["main"]["outputs"]] == ["pha", "r1o", "r2o", "r3o", "r4o"]
    assert m["parity"]["max_abs_diff_pha"] <= 1e-4 and m["parity"]["max_abs_diff_fgr"] is None
    assert run_cli("export", "check", out, block_torch=no_torch_path).returncode == 0
    full = ort.InferenceSession(str(bundles["fp32"] / "main.onnx"), providers=["CPUExecutionProvider"])
    alpha = ort.InferenceSession(str(out / "main.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    st_f = st_a = {i.name: np.zeros(i.shape, np.float32) for i in full.get_inputs() if i.name.endswith("i")}
    for _ in range(3):
        feed = {"src": rng.random((1, 3, 96, 128), dtype=np.float32),
                "guide": rng.random((1, 1, 96, 128), dtype=np.float32)}
        rf = dict(zip([o.name for o in full.get_outputs()], full.run(None, {**feed, **st_f})))
        ra = dict(zip([o.name for o in alpha.get_outputs()], alpha.run(None, {**feed, **st_a})))
        assert "fgr" not in ra and 0.01 < rf["pha"].std()
        np.testing.assert_allclose(ra["pha"], rf["pha"], atol=1e-5)
        st_f = {f"{k[:-1]}i": v for k, v in rf.items() if k.endswith("o")}
        st_a = {f"{k[:-1]}i": v for k, v in ra.items() if k.endswith("o")}
    # the runtime runs it, and refuses to composite with the student's (missing) foreground
    from mamakit.io import VideoWriter

    clip = tmp_path / "in.mp4"
    with VideoWriter(clip, 10, (128, 96)) as vw:
        for _ in range(3):
            vw.write(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    ok = run_cli("run", "--bundle", out, "--source", clip, "--composite", tmp_path / "c.mp4", block_torch=no_torch_path)
    assert ok.returncode == 0, ok.stderr
    bad = run_cli("run", "--bundle", out, "--source", clip, "--composite", tmp_path / "d.mp4", "--fg", "student")
    assert_one_line_error(bad, 2, "--fg estimate")
    assert not (tmp_path / "d.mp4").exists()


def test_export_downsample_ratio_override(work, student_dir, tmp_path):
    """--downsample-ratio rebuilds the trunk size baked into the graph (state shapes follow)."""
    out = tmp_path / "r025"
    proc = run_cli("export", "onnx", "--checkpoint", student_dir, "--out", out, "--size", "128x96",
                   "--parity-frames", "3", "--downsample-ratio", "0.25")
    assert proc.returncode == 0, proc.stderr
    m = _manifest(out)
    assert m["downsample_ratio"] == pytest.approx(0.25) and m["parity"]["passed"]
    # 128x96 at 0.25 -> trunk 32x24 -> r1 at half the trunk size
    assert m["graphs"]["main"]["state"][0]["shape"][2:] == [12, 16]
    bad = run_cli("export", "onnx", "--checkpoint", student_dir, "--out", tmp_path / "bad", "--size", "128x96",
                  "--downsample-ratio", "2")
    assert_one_line_error(bad, 2, "--downsample-ratio")
    assert not (tmp_path / "bad").exists()


def test_export_parity_failure_writes_nothing(work, student_dir, monkeypatch):
    import mamakit.export.student as S
    from mamakit.errors import ParityError

    monkeypatch.setitem(S.TOLERANCE, "fp16", 1e-9)  # the real fp16 graph differs from PyTorch by more
    out = work / "refused"
    with pytest.raises(ParityError, match="fails parity"):
        S.export_student(student_dir, out, S.StudentExportOptions(size=SIZE, precision="fp16", parity_frames=3))
    assert not out.exists()
    assert not [p for p in work.iterdir() if p.name.startswith(".tmp-")]


def test_export_tampered_bundle_names_the_file(work, bundles, no_torch_path):
    for victim in ("main.onnx", "sample.npz"):
        b = work / f"tampered-{victim}"
        shutil.copytree(bundles["fp32"], b)
        data = bytearray((b / victim).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (b / victim).write_bytes(bytes(data))
        proc = run_cli("export", "check", b, block_torch=no_torch_path)
        line = assert_one_line_error(proc, 2, victim)
        assert "checksum" in line
        assert proc.stdout == ""  # nothing printed before the error


def test_export_newer_format_version_refused(work, bundles, no_torch_path):
    b = work / "future"
    shutil.copytree(bundles["fp16"], b)
    m = _manifest(b)
    m["format_version"] = 99
    (b / "bundle.json").write_text(json.dumps(m))
    assert_one_line_error(run_cli("export", "check", b, block_torch=no_torch_path), 2, "newer")


def test_export_check_fails_when_the_sample_does_not_match(work, bundles, no_torch_path):
    """exit 0 only if everything holds: an fp16 graph cannot meet a 1e-9 tolerance."""
    b = work / "strict"
    shutil.copytree(bundles["fp16"], b)
    m = _manifest(b)
    m["sample"]["atol"] = 1e-9
    (b / "bundle.json").write_text(json.dumps(m))
    proc = run_cli("export", "check", b, block_torch=no_torch_path)
    assert_one_line_error(proc, 1, "sample main/pha")
    assert "FAIL" in proc.stdout and "checksums" in proc.stdout


def test_export_bad_inputs_exit_2_and_write_nothing(work, student_dir, calib, tmp_path):
    # a checkpoint of another model kind
    other = tmp_path / "teacher.ckpt"
    torch.save({"state_dict": {}, "mamakit": {"kind": "teacher", "config": {}, "version": 1}}, other)
    out = tmp_path / "b"
    assert_one_line_error(run_cli("export", "onnx", "--checkpoint", other, "--out", out), 2, "'teacher'")
    # int8 without calibration data
    assert_one_line_error(run_cli("export", "onnx", "--checkpoint", student_dir, "--out", out,
                                  "--precision", "int8"), 2, "--calib")
    # a calibration set with too few frames
    from mamakit.synth import synth_dataset

    synth_dataset(tmp_path / "few", clips=1, frames=3, size=SIZE, seed=1)
    assert_one_line_error(run_cli("export", "onnx", "--checkpoint", student_dir, "--out", out, "--precision",
                                  "int8", "--calib", tmp_path / "few", "--size", "128x96"), 2, "3 frames")
    # an unwritable output (its parent is a file)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert_one_line_error(run_cli("export", "onnx", "--checkpoint", student_dir, "--out", blocker / "b"), 2, "writ")
    assert_one_line_error(run_cli("export", "onnx", "--checkpoint", student_dir, "--out", tmp_path / "no" / "b"),
                          2, "does not exist")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "few", "teacher.ckpt"]


# ---------------------------------------------------------------------------------------------
# TensorRT-RTX: ahead-of-time engine builds (running engines needs a GPU: runtime tests)
@pytest.fixture(scope="module")
def rtx_bundles(work, bundles) -> dict[str, Path]:
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed (pip install \"mamakit[rtx]\")")
    out = {}
    for p, b in bundles.items():  # copies: building engines adds files to a bundle
        out[p] = work / f"rtx-{p}"
        shutil.copytree(b, out[p])
    return out


def test_export_trt_rtx_builds_every_precision(rtx_bundles, no_torch_path):
    """TensorRT-RTX builds an engine ahead of time (no GPU needed) for every exported precision."""
    from mamakit.bundle import load_bundle
    from mamakit.export.trt import build_engines

    for p, b in rtx_bundles.items():
        entries = build_engines(b, workspace_mb=256)
        assert len(entries) == 1
        e = entries[0]
        assert e["backend"] == "tensorrt-rtx" and e["trt_version"] == __import__("tensorrt_rtx").__version__
        assert e["precision"] == p and e["strongly_typed"] and e["precision_source"].startswith("graph")
        assert e["profiles"][0]["src"] == {"min": [1, 3, SIZE[1], SIZE[0]], "opt": [1, 3, SIZE[1], SIZE[0]],
                                           "max": [1, 3, SIZE[1], SIZE[0]]}
        assert e["timing_cache"]["used"] is False and "runtime" in e["timing_cache"]["reason"]
        engine = b / e["file"]
        assert engine.stat().st_size > 10_000
        bundle = load_bundle(b)  # re-checksummed: the engine is listed and verified
        assert e["file"] in bundle.manifest["files"] and bundle.engines[0]["file"] == e["file"]
        # deserialising needs a GPU; the plan is at least a real TensorRT-RTX file
        proc = run_cli("export", "check", b, block_torch=no_torch_path)
        assert proc.returncode == 0, proc.stderr
        assert "engine main" in proc.stdout


def test_export_trt_cli_targets_and_precision_rules(rtx_bundles, tmp_path):
    b = rtx_bundles["fp32"]
    cache = tmp_path / "timing.cache"
    proc = run_cli("export", "trt", "--bundle", b, "--workspace", "128", "--compute-capability", "8.6",
                   "--timing-cache", cache)
    assert proc.returncode == 0, proc.stderr
    assert "tensorrt-rtx" in proc.stdout
    m = json.loads((b / "bundle.json").read_text())
    rtx = [e for e in m["engines"] if e["backend"] == "tensorrt-rtx"]
    assert len(rtx) == 1 and rtx[0]["compute_capability"] == "8.6" and rtx[0]["workspace_mb"] == 128
    # strongly typed: precision must come from the graph
    assert_one_line_error(run_cli("export", "trt", "--bundle", b, "--precision", "fp16"), 2, "strongly typed")
    assert_one_line_error(run_cli("export", "trt", "--bundle", b, "--compute-capability", "5.0"), 2, "compute")
    assert not cache.exists()  # TensorRT-RTX has no timing cache: nothing pretends to be one
    # an int8 bundle in the ONNX-Runtime-only scheme is refused before any parsing
    cpu = tmp_path / "cpu-int8"
    shutil.copytree(rtx_bundles["int8"], cpu)
    m = json.loads((cpu / "bundle.json").read_text())
    m["export"]["conversion"]["scheme"] = "cpu"
    (cpu / "bundle.json").write_text(json.dumps(m))
    assert_one_line_error(run_cli("export", "trt", "--bundle", cpu), 2, "--int8-scheme trt")


def test_export_trt_engine_deserialises_on_a_gpu(rtx_bundles):
    """Where a CUDA GPU exists, the engine built ahead of time deserialises with the bundle's tensor names."""
    from mamakit.export.trt import _gpu, build_engines

    if _gpu() is None:
        pytest.skip("no usable CUDA GPU here: TensorRT-RTX engines are built ahead of time but cannot run")
    import tensorrt_rtx as trt

    b = rtx_bundles["fp16"]
    e = build_engines(b, workspace_mb=256)[0]
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine((b / e["file"]).read_bytes())
    assert engine is not None
    names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
    assert names == {"src", "guide", "pha", "fgr"} | {f"r{i}{io}" for i in range(1, 5) for io in "io"}


def test_int8_conv_selections_on_a_hand_built_graph(tmp_path):
    """spatial: group-1 kxk convs with an unshared input; dense: plus 1x1 convs >= 64 channels wide;
    never depthwise, never a conv whose input another node also reads."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from mamakit.export.graph import DENSE_MIN_CHANNELS, spatial_convs

    rng = np.random.default_rng(0)

    def conv(name, x, y, cout, cin, k, group=1):
        w = numpy_helper.from_array(rng.standard_normal((cout, cin // group, k, k)).astype(np.float32), name + "_w")
        return helper.make_node("Conv", [x, w.name], [y], name=name, group=group, pads=[k // 2] * 4), w

    nodes, inits = [], []
    for args in (("wide_1x1", "x", "a", 64, 8, 1), ("kxk", "a", "b", 64, 64, 3), ("dw", "b", "c", 64, 64, 3, 64),
                 ("wide_1x1_b", "c", "d", 96, 64, 1), ("thin_1x1", "d", "e", 8, 96, 1),
                 ("shared_kxk", "e", "f", 8, 8, 3)):
        n, w = conv(*args)
        nodes.append(n)
        inits.append(w)
    nodes.append(helper.make_node("Add", ["e", "f"], ["y"], name="add"))  # "e" is read twice
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])], inits)
    model = helper.make_model(graph)
    assert DENSE_MIN_CHANNELS == 64
    assert spatial_convs(model) == ["kxk"]
    # wide_1x1 reads the graph input x: 8 input channels -> too thin; wide_1x1_b: 64 -> 96
    assert spatial_convs(model, DENSE_MIN_CHANNELS) == ["kxk", "wide_1x1_b"]


@pytest.mark.parametrize("extra", ["mask", "chroma"])
def test_export_student_with_a_refiner_extra_guide(work, tmp_path, extra):
    """A student whose refiner has a second alpha guide exports with fp32 parity, alpha-only too."""
    import dataclasses

    from mamakit.student.models import StudentNet

    base = _tiny_student(5)
    m = StudentNet(dataclasses.replace(base.config, refiner_extra=extra)).eval()
    with torch.no_grad():
        for p in m.refiner.conv[-1].parameters():  # a non-zero slope on every guide
            p.normal_(0, 0.3)
    m.save_pretrained(tmp_path / "s")
    for flags in ([], ["--no-fgr"]):
        out = tmp_path / f"b{len(flags)}"
        proc = run_cli("export", "onnx", "--checkpoint", tmp_path / "s", "--out", out, "--size", "128x96",
                       "--parity-frames", "3", *flags)
        assert proc.returncode == 0, proc.stderr
        m_ = _manifest(out)
        assert m_["parity"]["passed"], m_["parity"]


def test_export_student_settings(work, student_dir, tmp_path):
    """--set KEY=VALUE applies a deployment setting (no weights change) before export: it is in the
    graph (two more AveragePools: the coefficients' box mean), in the bundle's source config, and
    parity holds; unknown keys and bad values are one-line usage errors that write nothing."""
    import onnx

    out = tmp_path / "smooth"
    proc = run_cli("export", "onnx", "--checkpoint", student_dir, "--out", out, "--size", "128x96",
                   "--parity-frames", "3", "--no-fgr", "--set", "refiner_smooth=1")
    assert proc.returncode == 0, proc.stderr
    m = _manifest(out)
    assert m["source"]["config"]["refiner_smooth"] == 1 and m["parity"]["passed"]
    plain = tmp_path / "plain"
    assert run_cli("export", "onnx", "--checkpoint", student_dir, "--out", plain, "--size", "128x96",
                   "--parity-frames", "3", "--no-fgr").returncode == 0

    def pools(d):
        return sum(n.op_type == "AveragePool" for n in onnx.load(str(d / "main.onnx")).graph.node)
    assert pools(out) == pools(plain) + 2
    for bad, what in ((["--set", "decoder_channels=8"], "--set"), (["--set", "refiner_smooth=x"], "refiner_smooth"),
                      (["--set", "trunk_resize=nearest"], "trunk_resize")):
        proc = run_cli("export", "onnx", "--checkpoint", student_dir, "--out", tmp_path / "bad", "--size", "128x96",
                       *bad)
        assert_one_line_error(proc, 2, what)
        assert not (tmp_path / "bad").exists()


def test_export_student_with_alpha_memory_runs_in_the_runtime(work, tmp_path):
    """A student with alpha memory exports its fifth state (a0: the trunk alpha, zeros at the start) into
    the manifest, passes parity, and the torch-free runtime carries it: Matter's alphas equal the torch
    student's frame by frame."""
    import dataclasses

    from mamakit.runtime import Matter
    from mamakit.student.models import StudentNet

    base = _tiny_student(6)
    m = StudentNet(dataclasses.replace(base.config, alpha_memory=True)).eval()
    with torch.no_grad():  # the memory on the path: non-zero weights for the previous alpha and a trained head
        m.encoder.stages[0][0][0].weight[:, 4].normal_(0, 0.5)
        for p in m.head.parameters():
            p.normal_(0, 0.3)
    m.save_pretrained(tmp_path / "s")
    out = tmp_path / "b"
    proc = run_cli("export", "onnx", "--checkpoint", tmp_path / "s", "--out", out, "--size", "128x96",
                   "--parity-frames", "3", "--no-fgr")
    assert proc.returncode == 0, proc.stderr
    man = _manifest(out)
    state = {s["input"]: s["shape"] for s in man["graphs"]["main"]["state"]}
    assert state["a0i"] == [1, 1, 38, 51] and len(state) == 5 and man["parity"]["passed"]
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (4, 96, 128, 3), dtype=np.uint8)
    mask = np.zeros((96, 128), np.float32)
    mask[20:80, 30:100] = 1
    matter = Matter.load(out, threads=1, announce=False, scene_cut=0)
    st = m.initial_state(1, 96, 128)
    diffs = []
    for f in frames:
        got = matter.step(f, mask)
        with torch.no_grad():
            want, _, *st = m(torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255, torch.from_numpy(mask)[None, None], *st)
        diffs.append(float(np.abs(got - want[0, 0].numpy()).max()))
    assert max(diffs) < 1e-3, diffs


def test_export_recover_rebuilds_a_trainable_student_from_a_bundle(work, calib, tmp_path):
    """`mamakit export recover` turns an fp32 bundle back into a student folder: its eval output equals
    the exported student's (BatchNorms unfolded with statistics measured on the --calib dataset, not the
    identity), it trains from there (a train-mode step stays close to the eval output); an fp16 bundle, a
    folder that is not a bundle, an existing --out and a missing --calib are one-line exit-2 errors that
    write nothing."""
    from mamakit.student import load_student

    src = _tiny_student(7)
    with torch.no_grad():  # a "trained" student: non-trivial BatchNorms and head
        for mod in src.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.2)
        for p in src.head.parameters():
            p.normal_(0, 0.3)
    src.save_pretrained(tmp_path / "s")
    b32, b16 = tmp_path / "b32", tmp_path / "b16"
    for b, prec in ((b32, "fp32"), (b16, "fp16")):
        proc = run_cli("export", "onnx", "--checkpoint", tmp_path / "s", "--out", b, "--size", "128x96",
                       "--parity-frames", "3", "--precision", prec)
        assert proc.returncode == 0, proc.stderr
    out = tmp_path / "recovered"
    proc = run_cli("export", "recover", b32, "--out", out, "--calib", calib)
    assert proc.returncode == 0, proc.stderr
    rec = load_student(out)
    assert rec.config == src.config
    bn = [mod for mod in rec.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    assert any(float((mod.running_var - 1).abs().max()) > 0.05 for mod in bn)
    x = torch.rand(2, 3, 96, 128)
    g = (torch.rand(2, 1, 96, 128) > 0.5).float()
    with torch.no_grad():
        want, _, *_ = src(x, g, *src.initial_state(2, 96, 128))
        got, _, *_ = rec(x, g, *rec.initial_state(2, 96, 128))
        assert float((got - want).abs().max()) < 1e-4
        rec.train()
        trained, _, *_ = rec(x, g, *rec.initial_state(2, 96, 128))
    # batch statistics near the measured ones: 0.014-0.018 here; 0.18 with the BatchNorms left unmeasured
    assert float((trained - want).abs().mean()) < 0.05
    for args, what in (([b16, "--out", tmp_path / "x16"], "fp16"),
                       ([tmp_path / "s", "--out", tmp_path / "xs"], "bundle"),
                       ([b32, "--out", out], "--overwrite"),
                       ([b32, "--out", tmp_path / "xc", "--calib", tmp_path / "nothing"], "nothing")):
        proc = run_cli("export", "recover", *args)
        assert_one_line_error(proc, 2, what)
    assert not any((tmp_path / n).exists() for n in ("x16", "xs", "xc"))
