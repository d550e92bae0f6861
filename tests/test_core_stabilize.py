"""mamakit.stabilize.FlowCarry: the stabiliser state moves with the image; the gate closes on new content."""
from __future__ import annotations

import numpy as np
import pytest

from mamakit.stabilize import FlowCarry, FlowParams


def _texture(h, w, seed):
    import cv2

    rng = np.random.default_rng(seed)
    t = cv2.resize((rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    return t


def test_flow_carry_moves_the_state_with_the_image_and_gates_new_content():
    W, H, w, h = 320, 192, 80, 48  # processing size and a 4x smaller state
    big = _texture(H + 40, W + 40, 0)
    f0, f1 = big[8:8 + H, 8:8 + W], big[8:8 + H, 16:16 + W]  # the scene moves 8 px left = 2 state px
    fc = FlowCarry((W, H), (w, h), FlowParams(flow_scale=0.5, sigma=0.04))
    # a state that is a picture of frame 0 at the state size (as the refiner's coefficients follow the image)
    import cv2

    pic = cv2.resize(cv2.cvtColor(f0, cv2.COLOR_RGB2GRAY), (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    state = np.stack([pic, 1 - pic, np.full_like(pic, 0.5)])[None]
    assert fc.carry(fc.features(f0), state) is state  # first frame: passes through
    moved = fc.carry(fc.features(f1), state)
    want = cv2.resize(cv2.cvtColor(f1, cv2.COLOR_RGB2GRAY), (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    inner = (slice(4, -4), slice(4, -8))
    err_moved = np.abs(moved[0, 0] - want)[inner].mean()
    err_still = np.abs(state[0, 0] - want)[inner].mean()
    assert err_moved < 0.35 * err_still, (err_moved, err_still)
    assert np.allclose(moved[0, 0] + moved[0, 1], 1, atol=1e-4)  # every channel moves the same way
    assert np.median(moved[0, 2][inner]) > 0.4  # motion explained: the weight stays near 0.5
    # new content: the gate closes
    other = _texture(H, W, 1)
    cut = fc.carry(fc.features(other), moved)
    assert np.median(cut[0, 2]) < 0.05
    # a reset forgets the previous frame
    fc.reset()
    assert fc.carry(fc.features(f1), state) is state


def test_flow_params_roundtrip_and_validation():
    p = FlowParams.from_dict({"flow_scale": 0.3, "sigma": 0.05, "preset": 1})
    assert FlowParams.from_dict(p.to_dict()) == p and FlowParams.from_dict(None) == FlowParams()
    with pytest.raises(ValueError, match="flow_scale"):
        FlowCarry((64, 36), (16, 9), FlowParams(flow_scale=2.0))


def test_bundle_state_carry_roundtrip_and_unknown_carry_refused():
    from mamakit.bundle import StateSpec
    from mamakit.errors import BundleError

    plain = StateSpec("r1i", "r1o", [1, 8, 4, 4])
    assert "carry" not in plain.to_dict() and StateSpec.from_dict(plain.to_dict()).carry == "copy"
    flow = StateSpec("c0i", "c0o", [1, 3, 4, 4], carry="flow", carry_params=FlowParams().to_dict())
    assert StateSpec.from_dict(flow.to_dict()) == flow
    with pytest.raises(BundleError, match="carry 'teleport'"):
        StateSpec.from_dict({**flow.to_dict(), "carry": "teleport"})
