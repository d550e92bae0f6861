"""SAM2-Matte training clips: distractor objects make the prompt matter; evaluation clips stay put."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("cv2")


def test_sam2_distractor_clips_pick_one_object_and_leave_eval_clips_unchanged():
    from mamakit.student.sam2matte.data import synthetic_clip

    f0, a0 = synthetic_clip(2_000_001, 4, 64, 0.0)
    f1, a1 = synthetic_clip(2_000_001, 4, 64, 0.0, None, 0.0)  # p_distractor=0: same generator draws
    assert np.array_equal(f0, f1) and np.array_equal(a0, a1)
    changed = 0
    for seed in range(6):
        fp, ap = synthetic_clip(seed, 4, 64, 0.0)
        fd, ad = synthetic_clip(seed, 4, 64, 0.0, None, 1.0)
        assert fd.shape == fp.shape and ad.shape == ap.shape and fd.dtype == np.uint8
        assert ad.min() >= 0 and ad.max() <= 1
        assert not np.array_equal(fd, fp), "a distractor must be composited in"
        # the target is the original object (minus what covers it) or a distractor
        changed += not (ad <= ap + 1e-6).all()
    assert changed >= 1, "some clips must target a distractor, not always the original object"
