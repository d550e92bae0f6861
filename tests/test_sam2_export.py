"""SAM2-Matte export: four streaming graphs that match PyTorch over a 10-frame tracking run on
non-trivial alpha, a bundle `mamakit export check` accepts, and graphs TensorRT-RTX builds."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli

pytest.importorskip("torch")
pytest.importorskip("sam2")

FIXTURE = Path(__file__).parent / "fixtures" / "sam2_matte_tiny"


_EXPORTED: dict = {}


@pytest.fixture(scope="session")
def sam2_bundle(tmp_path_factory) -> Path:
    """The committed tiny checkpoint exported once per process (legacy exporter, opset 17: the fast
    one); test_sam2_runtime.py imports this fixture, the cache keeps it to one export."""
    if "bundle" not in _EXPORTED:
        from mamakit.export.sam2 import export_sam2_matte

        out = tmp_path_factory.mktemp("sam2") / "bundle"
        export_sam2_matte(FIXTURE, out, opset=17)
        _EXPORTED["bundle"] = out
    return _EXPORTED["bundle"]


def test_sam2_export_parity_on_nontrivial_alpha(sam2_bundle):
    m = json.loads((sam2_bundle / "bundle.json").read_text())
    assert m["kind"] == "sam2-matte" and set(m["graphs"]) == {"encoder", "prompt", "track", "memory"}
    par = m["parity"]
    print("sam2 parity:", par["summary"], "alpha mean", np.round(par["alpha_mean"], 3).tolist(),
          "std", np.round(par["alpha_std"], 3).tolist())
    assert par["ok"] and par["frames"] == 10 and par["image_size"] == 256
    assert len(par["max_abs_alpha"]) == 10 and max(par["max_abs_alpha"]) <= 1e-3
    # every compared frame has a real matte: neither blank nor full, with a spread of values
    for mean, std in zip(par["alpha_mean"], par["alpha_std"]):
        assert 0.02 < mean < 0.98 and std > 0.1, (mean, std)
    assert all(s > 0 for s in par["obj_score_pytorch"])
    # the runtime owns a bounded bank: fixed slot counts, recorded in the manifest
    s = m["sam2"]
    assert s["max_memories"] == 7 and s["max_obj_ptrs"] == 16
    track_inputs = {t["name"]: t["shape"] for t in m["graphs"]["track"]["inputs"]}
    assert track_inputs["mem"][1] == 7 and track_inputs["ptr"][1] == 16
    assert all(isinstance(d, int) for shape in track_inputs.values() for d in shape), "static shapes for TensorRT"


def test_sam2_export_check_cli(sam2_bundle):
    proc = run_cli("export", "check", sam2_bundle)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "OK" in proc.stdout


def test_sam2_export_check_catches_tampering(sam2_bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(sam2_bundle, bad)
    with open(bad / "track.onnx", "ab") as f:
        f.write(b"\0")
    assert_one_line_error(run_cli("export", "check", bad), 2, contains="checksum")


def test_sam2_export_refuses_int8(tmp_path):
    from mamakit.errors import ConfigError
    from mamakit.export.sam2 import export_sam2_matte

    with pytest.raises(ConfigError, match="fp32 or fp16"):
        export_sam2_matte(FIXTURE, tmp_path / "b", precision="int8")
    assert not (tmp_path / "b").exists()


def test_sam2_every_graph_builds_with_tensorrt_rtx(sam2_bundle, tmp_path):
    pytest.importorskip("tensorrt_rtx")
    from mamakit.export.trt import build_engines

    b = tmp_path / "b"
    shutil.copytree(sam2_bundle, b)
    entries = build_engines(b, backend="tensorrt-rtx")
    assert sorted(e["graph"] for e in entries) == ["encoder", "memory", "prompt", "track"]
    for e in entries:
        assert (b / e["file"]).stat().st_size > 10_000
