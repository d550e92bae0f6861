"""Motion-compensated carry of a student's stabiliser state from one frame to the next (numpy + OpenCV).

A student exported with ``stabilizer > 0`` (``mamakit export onnx --set stabilizer=0.5``) has one
recurrent state that is not fed back verbatim: ``c0`` [1, 3, h, w] at the trunk resolution holds
the refiner's alpha coefficients of the previous frame (the slope on the frame's gray and the
offset of the guided filter's locally linear model) and, in its last channel, how much of them
the next frame blends into its own. Between frames the caller moves the coefficients with the
image: :class:`FlowCarry` estimates dense optical flow from the current frame back to the
previous one (OpenCV's DIS, on a half-size gray frame), warps the two coefficient planes by it
and multiplies the blend weight by a photometric gate — ``exp(-(e / sigma)^2)`` of the
trunk-resolution colour error between the current frame and the previous one warped the same
way — so that occlusions, new content and flow failures fall back to the current frame's own
coefficients. At zero weight (the state's start, and after a reset) the graph computes exactly
what it computes without the stabiliser.

The same object serves the runtime (no torch), the benches and :func:`mamakit.student.stream`,
so every path measures the function that ships. The bundle manifest names the carry and its
parameters on the state (``"carry": "flow"``, ``"carry_params"``); a runtime that ignores them
feeds the state back as it is, which is a plain (unwarped, ungated) blend with the last frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: how a recurrent state goes from one frame's output to the next frame's input
CARRIES = ("copy", "flow")


@dataclass(frozen=True)
class FlowParams:
    #: size of the frame the flow is computed on, as a fraction of the processing size
    flow_scale: float = 0.4
    #: photometric gate: colour error (0..1) at which the blend weight falls to 1/e
    sigma: float = 0.04
    #: OpenCV DIS preset: 0 ultrafast, 1 fast, 2 medium
    preset: int = 0

    @classmethod
    def from_dict(cls, d: dict | None) -> "FlowParams":
        d = dict(d or {})
        return cls(float(d.get("flow_scale", cls.flow_scale)), float(d.get("sigma", cls.sigma)),
                   int(d.get("preset", cls.preset)))

    def to_dict(self) -> dict:
        return {"flow_scale": self.flow_scale, "sigma": self.sigma, "preset": self.preset}


@dataclass
class FrameFeatures:
    """What the carry needs of one frame (computed anywhere, e.g. in a prepare thread)."""

    gray: np.ndarray   # uint8 at the flow size
    small: np.ndarray  # uint8 RGB at the state's (trunk) size


@dataclass
class Motion:
    """The motion from frame ``prev`` to a frame, at the state size: remap coordinates and the gate."""

    prev: FrameFeatures
    mx: np.ndarray
    my: np.ndarray
    gate: np.ndarray


class FlowCarry:
    """Warp a stabiliser state ``[1, C, h, w]`` by the motion between consecutive frames.

    ``frame_size`` and ``state_size`` are (width, height): the processing size of the frames given
    to :meth:`features` and the state's trunk size.
    """

    def __init__(self, frame_size: tuple[int, int], state_size: tuple[int, int], params: FlowParams | None = None):
        import cv2

        self._cv2 = cv2
        self.params = params or FlowParams()
        W, H = (int(v) for v in frame_size)
        self.frame_size = (W, H)
        self.state_size = (int(state_size[0]), int(state_size[1]))
        s = float(self.params.flow_scale)
        if not 0.05 <= s <= 1.0:
            raise ValueError(f"flow_scale must be in [0.05, 1], got {s}")
        self.flow_size = (max(16, int(round(W * s))), max(16, int(round(H * s))))
        self._dis = cv2.DISOpticalFlow_create(int(self.params.preset))
        w, h = self.state_size
        self._gx, self._gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        self._prev: FrameFeatures | None = None
        self._err_weights = np.full((1, 3), 1.0 / (3 * 255.0 * self.params.sigma), np.float32)

    def features(self, frame: np.ndarray) -> FrameFeatures:
        """``frame``: HxWx3 uint8 RGB at the processing size. Pure: safe in any thread."""
        cv2 = self._cv2
        f = np.asarray(frame)
        # one exact 2x block mean of the frame first (OpenCV's fast path; a 2.5x or 5x INTER_AREA
        # costs 10x more at 1280x720), then the small sizes from that
        H, W = f.shape[:2]
        half = cv2.resize(f, (max(1, W // 2), max(1, H // 2)), interpolation=cv2.INTER_AREA) if min(W, H) >= 64 else f
        gray = cv2.cvtColor(half, cv2.COLOR_RGB2GRAY)
        if (gray.shape[1], gray.shape[0]) != self.flow_size:
            gray = cv2.resize(gray, self.flow_size, interpolation=cv2.INTER_LINEAR)
        quarter = half
        while quarter.shape[1] >= 2 * self.state_size[0] and quarter.shape[0] >= 2 * self.state_size[1]:
            quarter = cv2.resize(quarter, (quarter.shape[1] // 2, quarter.shape[0] // 2), interpolation=cv2.INTER_AREA)
        small = cv2.resize(quarter, self.state_size, interpolation=cv2.INTER_LINEAR)
        return FrameFeatures(gray, small)

    def reset(self) -> None:
        self._prev = None

    def new_flow(self):
        """A DIS optical-flow object with this carry's preset, for :meth:`motion` in another thread
        (one is not safe to share between threads)."""
        return self._cv2.DISOpticalFlow_create(int(self.params.preset))

    def motion(self, prev: FrameFeatures, feat: FrameFeatures, flow_object=None) -> Motion:
        """Where each state pixel of frame ``feat`` was in frame ``prev``, and the gate. Pure given
        its own ``flow_object`` (:meth:`new_flow`), so a pre-processing thread can compute it ahead."""
        cv2 = self._cv2
        w, h = self.state_size
        dis = flow_object if flow_object is not None else self._dis
        flow = dis.calc(feat.gray, prev.gray, None)  # current pixel -> where it was
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA)
        flow *= np.float32(w / self.flow_size[0])
        mx = self._gx + flow[..., 0]
        my = self._gy + flow[..., 1]
        seen = cv2.remap(prev.small, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # mean colour error 0..1, pre-scaled by 1/sigma (cv2.transform: 10x faster than numpy's mean)
        err = cv2.transform(cv2.absdiff(seen, feat.small).astype(np.float32), self._err_weights)
        return Motion(prev, mx, my, np.exp(-np.square(err.reshape(h, w))))

    def carry(self, feat: FrameFeatures, state: np.ndarray, motion: Motion | None = None) -> np.ndarray:
        """The state to feed with frame ``feat``: the previous output ``state`` moved onto this
        frame, its last channel (the blend weight) gated. The first frame after a reset passes
        through (its state is zeros: weight 0). ``motion``: computed ahead by :meth:`motion`; used
        only when it was computed from the frame this carry saw last, else computed here."""
        prev, self._prev = self._prev, feat
        if prev is None:
            return state
        if motion is None or motion.prev is not prev:
            motion = self.motion(prev, feat)
        cv2 = self._cv2
        mx, my, gate = motion.mx, motion.my, motion.gate
        st = np.asarray(state)
        out = np.empty(st.shape, np.float32)
        for c in range(st.shape[1]):
            out[0, c] = cv2.remap(np.ascontiguousarray(st[0, c], np.float32), mx, my, cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
        out[0, -1] *= gate
        return out.astype(st.dtype, copy=False)
