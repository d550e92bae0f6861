"""Coarse-mask sources aligned to frames.

A mask source is either a folder of masks (aligned to the frames by matching file stem when
the frame names are known and every mask stem matches one, otherwise by sorted order) or one
file holding the mask of the first frame only. Masks may have any size (they are resized to the
frame size: nearest for binary masks, bilinear for soft ones) and be gray (values used as a soft
mask) or colour (a pixel is "in" when any channel exceeds ``threshold``).

Count mismatches are *reported*, not decided: :meth:`MaskSource.mismatch` returns a message or
None, and each consumer chooses (the teacher refuses, the runtime carries on from its own alpha).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from mamakit.errors import VideoIOError
from mamakit.io.images import IMAGE_EXTS, _to_float, gray_or_alpha, list_images, quick_check, read_raw

log = logging.getLogger(__name__)


def mask_from_array(img: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """A decoded OpenCV image -> float32 ``HxW`` 0..1 mask.

    Gray (or colour with equal channels) keeps its soft values; colour with differing channels
    is binarised: a pixel is 1 when any channel exceeds ``threshold`` (of full scale). An RGBA
    mask whose alpha channel varies uses the alpha channel.
    """
    done, img = gray_or_alpha(img)
    if done is not None:
        return done
    if img.shape[2] == 1:
        return _to_float(np.ascontiguousarray(img[..., 0]))
    c0 = img[..., 0]
    if all(np.array_equal(c0, img[..., c]) for c in range(1, img.shape[2])):
        return _to_float(np.ascontiguousarray(c0))
    f = _to_float(img)
    return (f.max(axis=2) > threshold).astype(np.float32)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float mask to ``size`` (w, h): nearest when it is binary, bilinear when soft."""
    w, h = int(size[0]), int(size[1])
    if mask.shape[1] == w and mask.shape[0] == h:
        return mask
    binary = bool(np.all((mask == 0) | (mask == 1)))
    interp = cv2.INTER_NEAREST if binary else cv2.INTER_LINEAR
    out = cv2.resize(mask, (w, h), interpolation=interp)
    return np.clip(out, 0.0, 1.0, out=out)


def read_mask(path: str | os.PathLike, size: tuple[int, int] | None = None, threshold: float = 0.5) -> np.ndarray:
    m = mask_from_array(read_raw(path), threshold)
    return resize_mask(m, size) if size is not None else m


class MaskSource:
    """Masks for a frame sequence. ``get(index, name, size)`` -> float32 HxW 0..1 or None."""

    def __init__(self, path: str | os.PathLike, frame_names: list[str] | None = None,
                 threshold: float = 0.5) -> None:
        self.path = Path(path)
        self.threshold = float(threshold)
        self._by_name: dict[str, Path] | None = None
        if not self.path.exists():
            raise VideoIOError(f"mask path {self.path} does not exist: pass a mask folder or a first-frame mask file")
        if self.path.is_dir():
            self.paths = list_images(self.path, what="mask folder")
            self.first_frame_only = False
        else:
            if self.path.suffix.lower() not in IMAGE_EXTS:
                raise VideoIOError(
                    f"mask file {self.path} has an unknown extension {self.path.suffix!r}: "
                    "pass a png/jpg/tiff/webp mask or a folder of masks")
            self.paths = [self.path]
            self.first_frame_only = True
        for p in self.paths:
            quick_check(p)
        self.count = len(self.paths)
        self.frame_names = list(frame_names) if frame_names is not None else None
        if self.frame_names is not None and not self.first_frame_only:
            stems = {p.stem: p for p in self.paths}
            if len(stems) == len(self.paths) and all(s in set(self.frame_names) for s in stems):
                self._by_name = stems
        self.aligned_by = "first frame" if self.first_frame_only else ("stem" if self._by_name else "order")
        # decode the first mask now: a corrupt file is an input error before any work
        self._first = read_mask(self.paths[0], threshold=self.threshold)

    def __repr__(self) -> str:
        return f"MaskSource({str(self.path)!r}, count={self.count}, aligned_by={self.aligned_by})"

    @property
    def size(self) -> tuple[int, int]:
        """Native (w, h) of the first mask."""
        return self._first.shape[1], self._first.shape[0]

    def path_for(self, index: int, name: str | None = None) -> Path | None:
        if self.first_frame_only:
            return self.paths[0] if index == 0 else None
        if self._by_name is not None and name is not None:
            return self._by_name.get(name)
        return self.paths[index] if 0 <= index < len(self.paths) else None

    def get(self, index: int, name: str | None = None, size: tuple[int, int] | None = None) -> np.ndarray | None:
        """The mask for frame ``index`` (named ``name``) resized to ``size`` (w, h), or None."""
        p = self.path_for(index, name)
        if p is None:
            return None
        if p == self.paths[0]:
            m = self._first
        else:
            m = read_mask(p, threshold=self.threshold)
        return resize_mask(m, size) if size is not None else m.copy()

    def mismatch(self, n_frames: int | None) -> str | None:
        """A message when the masks do not cover ``n_frames`` frames one to one, else None."""
        if self.first_frame_only or n_frames is None:
            return None
        if self._by_name is not None and self.frame_names is not None:
            missing = [n for n in self.frame_names if n not in self._by_name]
            if n_frames != len(self.frame_names):
                return (f"mask folder {self.path} was aligned to {len(self.frame_names)} frame names "
                        f"but the input has {n_frames} frames")
            if missing:
                return (f"mask folder {self.path} has no mask for {len(missing)} of {len(self.frame_names)} "
                        f"frames (first missing: {missing[0]!r})")
            return None
        if self.count != n_frames:
            return (f"mask folder {self.path} holds {self.count} masks but the input has {n_frames} frames: "
                    "give one mask per frame (matching names or the same sorted order) or a first-frame mask file")
        return None


def open_masks(path: str | os.PathLike, frame_names: list[str] | None = None, threshold: float = 0.5) -> MaskSource:
    """Open a mask folder or a first-frame mask file (see :class:`MaskSource`)."""
    return MaskSource(path, frame_names=frame_names, threshold=threshold)
