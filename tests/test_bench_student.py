"""bench/student.py's by-mask-condition split (pure functions; the bench itself is run by hand)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location("bench_student", Path(__file__).resolve().parents[1] / "bench" / "student.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_frame_conditions_marks_the_faulty_frame_the_one_after_and_box_clips():
    assert bench.frame_conditions({"box": False, "temporal": (2, "empty")}, 5) == [
        "normal", "normal", "glitch", "after glitch", "normal"]
    assert bench.frame_conditions({"box": False, "temporal": (4, "full")}, 5) == ["normal"] * 4 + ["glitch"]
    assert bench.frame_conditions({"box": True, "temporal": (1, "occlude")}, 3) == ["box clip"] * 3
    assert bench.frame_conditions({"box": False, "temporal": None}, 2) == ["normal", "normal"]


def test_breakdown_puts_each_frame_error_under_its_condition():
    gt = np.zeros((4, 8, 8), np.float32)
    pred = gt.copy()
    pred[2] = 0.5  # the faulty frame is wrong everywhere, the others are exact
    clip = {"alpha": gt, "ops": {"box": False, "temporal": (2, "full")}}
    out = bench.breakdown([pred], [clip])
    assert out["normal"]["frames"] == 2 and out["normal"]["mad"] == 0.0
    assert out["glitch"]["frames"] == 1 and out["glitch"]["mad"] == pytest.approx(500.0)  # MAD x1e3
    assert out["after glitch"]["frames"] == 1 and out["after glitch"]["mad"] == 0.0
    # frame 3 jumps back from 0.5 to 0: its dtSSD is large, the normal frame 1 has none
    assert out["after glitch"]["dtssd"] > 0 and out["normal"]["dtssd"] == 0.0
    assert out["box clip"] == {"frames": 0, "mad": None, "dtssd": None}


def test_region_breakdown_parts_add_up_and_land_in_their_region():
    from mamakit import metrics as M

    gt = np.zeros((3, 40, 40), np.float32)
    gt[:, 10:30, 10:30] = 1.0
    gt[:, 10:30, 30] = 0.5  # a soft column on the right edge
    regions = bench.gt_regions(gt[0])
    assert regions["soft"][15, 30] and regions["edge"][10, 12] and regions["far"][20, 20] and regions["far"][0, 0]
    assert not (regions["soft"] & regions["edge"]).any() and (regions["soft"] | regions["edge"] | regions["far"]).all()
    pred = gt.copy()
    pred[2, 0:4, 0:4] = 1.0  # a spill blob far from the object on the last frame only
    clip = {"alpha": gt, "ops": {"box": False, "temporal": None}}
    out = bench.region_breakdown([pred], [clip])
    assert out["far"]["mad"] > 0 and out["soft"]["mad"] == 0 and out["edge"]["mad"] == 0
    assert out["far"]["dtssd2"] > 0 and out["edge"]["dtssd2"] == 0
    # the parts add up: mean over frames 1..2 of MAD and of dtSSD squared
    mads = [M.mad(pred[t], gt[t]) for t in (1, 2)]
    dts = [M.dtssd_frame(pred[t], pred[t - 1], gt[t], gt[t - 1]) ** 2 for t in (1, 2)]
    assert sum(v["mad"] for v in out.values()) == pytest.approx(np.mean(mads), rel=1e-6)
    assert sum(v["dtssd2"] for v in out.values()) == pytest.approx(np.mean(dts), rel=1e-6)
