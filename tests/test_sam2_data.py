"""SAM2-Matte training clips: distractor objects make the prompt matter; evaluation clips stay put."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("cv2")


def test_sam2_distractor_clips_pick_one_object_and_leave_eval_clips_unchanged():
    from mamakit.student.sam2matte.data import TINY_SYNTH, synthetic_clip
    from mamakit.synth import SynthConfig, make_clip

    # an evaluation clip (no exit, no distractor) is exactly the generator's clip for that seed:
    # the distractor option draws nothing from the rng when it is off
    f0, a0 = synthetic_clip(2_000_001, 4, 64, 0.0)
    ref = make_clip(np.random.default_rng(2_000_001), 4, (64, 64), cfg=SynthConfig(**TINY_SYNTH))
    assert np.array_equal(f0, ref.frames) and np.array_equal(a0, ref.alpha)
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


def test_sam2_leave_profile_really_leaves_short_training_clips():
    """The default exit path (out, pause, back over the window) never leaves a 4-6 frame clip
    completely; ``exit_profile="leave"`` must give frames with the object fully out of view."""
    from mamakit.student.sam2matte.data import synthetic_clip

    gone = 0
    for seed in range(6):
        _, a = synthetic_clip(seed, 6, 64, 1.0, None, 0.0, "leave")
        assert (a[0] > 0.5).sum() > 0, "frame 0 (the prompted frame) must show the object"
        gone += sum(int((a[i] > 0.05).sum() == 0) for i in range(1, 6))
        _, r = synthetic_clip(seed, 4, 64, 1.0)
        assert all((r[i] > 0.05).sum() > 0 for i in range(4)), "the ramp path is expected to stay in view"
    assert gone >= 4, gone
