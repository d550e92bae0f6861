"""The session contract: one class per bundle kind (see docs/architecture.md, "Runtime sessions").

A session owns the graph(s) of one bundle, their buffers and their recurrent state. It takes a
frame of any size (HxWx3 uint8 RGB) and returns alpha (float32 HxW, 0..1) at that frame's size,
pixel-aligned with it. :class:`Resizer` does the size mapping for every session kind, so the
alignment rule lives in one place.
"""
from __future__ import annotations

import abc
import logging
from typing import ClassVar

import cv2
import numpy as np

from mamakit.bundle import Bundle
from mamakit.errors import ConfigError

log = logging.getLogger(__name__)


class Resizer:
    """Maps frames of one source size to the processing size and alphas back, pixel for pixel.

    ``fit="letterbox"`` keeps the aspect ratio (scale to fit, pad the rest, crop it off again on
    the way back); ``"stretch"`` scales each axis independently. Both use cv2's pixel-centre
    convention, so the returned alpha lines up with the source frame exactly. Buffers are
    allocated once per source size and reused.
    """

    def __init__(self, src_size: tuple[int, int], proc_size: tuple[int, int], fit: str = "letterbox",
                 pad_value: int = 0):
        if fit not in ("letterbox", "stretch"):
            raise ConfigError(f"fit must be 'letterbox' or 'stretch', got {fit!r}")
        self.src_w, self.src_h = (int(v) for v in src_size)
        self.proc_w, self.proc_h = (int(v) for v in proc_size)
        if fit == "stretch":
            rw, rh = self.proc_w, self.proc_h
        else:
            s = min(self.proc_w / self.src_w, self.proc_h / self.src_h)
            rw = max(1, min(self.proc_w, round(self.src_w * s)))
            rh = max(1, min(self.proc_h, round(self.src_h * s)))
        self.rw, self.rh = rw, rh
        self.ox, self.oy = (self.proc_w - rw) // 2, (self.proc_h - rh) // 2
        self.identity = (rw, rh) == (self.src_w, self.src_h) and (self.ox, self.oy) == (0, 0)
        self.padded = (rw, rh) != (self.proc_w, self.proc_h)
        self._img = np.full((self.proc_h, self.proc_w, 3), pad_value, np.uint8)
        self._msk = np.zeros((self.proc_h, self.proc_w), np.float32)
        self._out = np.zeros((self.src_h, self.src_w), np.float32)

    @property
    def src_size(self) -> tuple[int, int]:
        return self.src_w, self.src_h

    def _interp(self, down: bool) -> int:
        return cv2.INTER_AREA if down else cv2.INTER_LINEAR

    def image(self, frame: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 at source size -> proc_h x proc_w x 3 uint8 (a reused buffer)."""
        if self.identity:
            np.copyto(self._img, frame)
            return self._img
        roi = self._img[self.oy:self.oy + self.rh, self.ox:self.ox + self.rw]
        cv2.resize(frame, (self.rw, self.rh), dst=roi, interpolation=self._interp(self.rw < self.src_w))
        return self._img

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """HxW float 0..1 at source size (or any size) -> processing size (a reused buffer)."""
        mask = np.asarray(mask, np.float32)
        if mask.shape == (self.proc_h, self.proc_w) and self.identity:
            np.copyto(self._msk, mask)
            return self._msk
        if mask.shape != (self.src_h, self.src_w):  # masks of another size cover the whole frame
            mask = cv2.resize(mask, (self.src_w, self.src_h), interpolation=cv2.INTER_LINEAR)
        roi = self._msk[self.oy:self.oy + self.rh, self.ox:self.ox + self.rw]
        cv2.resize(mask, (self.rw, self.rh), dst=roi, interpolation=self._interp(self.rw < self.src_w))
        return self._msk

    def back(self, alpha: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """proc_h x proc_w float -> src_h x src_w float32, clipped to 0..1 (a reused buffer unless ``out``)."""
        out = self._out if out is None else out
        crop = alpha[self.oy:self.oy + self.rh, self.ox:self.ox + self.rw]
        if self.identity:
            np.copyto(out, crop)
        else:
            cv2.resize(np.ascontiguousarray(crop, np.float32), (self.src_w, self.src_h), dst=out,
                       interpolation=cv2.INTER_LINEAR)
        np.clip(out, 0.0, 1.0, out=out)
        return out

    def to_proc_xy(self, x: float, y: float) -> tuple[float, float]:
        """A source-pixel coordinate -> processing-pixel coordinate (for prompts)."""
        return ((x + 0.5) * self.rw / self.src_w - 0.5 + self.ox,
                (y + 0.5) * self.rh / self.src_h - 0.5 + self.oy)


def check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        desc = (f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray)
                else type(frame).__name__)
        raise ConfigError(f"a frame must be an HxWx3 uint8 RGB array, got {desc}")
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise ConfigError(f"frame of size {frame.shape[1]}x{frame.shape[0]} is too small")
    return frame


class Session(abc.ABC):
    """Base class of every bundle-kind session. Subclasses set ``kind`` and implement ``step``/``reset``."""

    kind: ClassVar[str]
    needs_prompt: ClassVar[bool] = False
    #: the provider that actually runs (short name: cpu, cuda, tensorrt, trt-engine, ...)
    provider: str = "cpu"

    def __init__(self, bundle: Bundle, provider: str = "auto", threads: int | None = None):
        self.bundle = bundle
        self.requested_provider = provider
        self.threads = threads

    @property
    def processing_size(self) -> tuple[int, int]:
        return self.bundle.processing_size

    def set_prompt(self, *, points=None, labels=None, box=None) -> None:
        """Point/box prompt in source-pixel coordinates, used by the next :meth:`step`."""
        raise ConfigError(f"a {self.kind} bundle takes no point/box prompt; use a mask instead")

    @abc.abstractmethod
    def step(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """HxWx3 uint8 RGB (any size) -> alpha float32 HxW 0..1 at the frame's size."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget the recurrent state (the next step starts from zeros)."""

    def close(self) -> None:
        """Release the graphs and device buffers."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.bundle.root}, provider={self.provider!r})"
