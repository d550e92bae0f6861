"""TensorRT-RTX builds an engine ahead of time (no GPU needed) for every exported precision, and
`mamakit export trt` records it in the manifest. Running engines needs a GPU (runtime tests)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli

torch = pytest.importorskip("torch")
trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed (pip install \"mamakit[rtx]\")")

SIZE = (96, 64)


@pytest.fixture(scope="module")
def rtx_bundles(tmp_path_factory) -> dict[str, Path]:
    from mamakit.export.student import StudentExportOptions, export_student
    from mamakit.student.models import StudentConfig, StudentNet
    from mamakit.synth import synth_dataset

    work = tmp_path_factory.mktemp("trt")
    torch.manual_seed(1)
    StudentNet(StudentConfig(decoder_channels=(8, 8, 8, 8, 8), refiner_hidden=4)).save_pretrained(work / "s")
    synth_dataset(work / "calib", clips=1, frames=8, size=SIZE, seed=5)
    out = {}
    for p in ("fp32", "fp16", "int8"):
        out[p] = export_student(work / "s", work / f"b-{p}", StudentExportOptions(
            size=SIZE, precision=p, calib=str(work / "calib") if p == "int8" else None, parity_frames=3,
            sample_calls=2))
    return out


def test_export_trt_rtx_builds_every_precision(rtx_bundles, no_torch_path):
    from mamakit.bundle import load_bundle
    from mamakit.export.trt import build_engines

    for p, b in rtx_bundles.items():
        entries = build_engines(b, workspace_mb=256)
        assert len(entries) == 1
        e = entries[0]
        assert e["backend"] == "tensorrt-rtx" and e["trt_version"] == trt.__version__
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
