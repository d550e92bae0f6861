"""Small numpy helpers shared by the teachers: input checks, resizing, empty masks."""
from __future__ import annotations

import cv2
import numpy as np

from mamakit.errors import ConfigError

EMPTY_THRESHOLD = 1e-3


def check_clip(frames, masks) -> tuple[np.ndarray, np.ndarray]:
    """Validate the teacher contract: frames ``[T,H,W,3]`` uint8, masks ``[T,H,W]`` float 0..1.

    Masks of another size are accepted (resized per frame later); their count must match.
    """
    frames = np.asarray(frames)
    masks = np.asarray(masks)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ConfigError(f"frames must be uint8 [T,H,W,3] RGB, got {frames.dtype} {list(frames.shape)}")
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.ndim != 3:
        raise ConfigError(f"masks must be [T,H,W] float 0..1, got {list(masks.shape)}")
    if masks.shape[0] != frames.shape[0]:
        raise ConfigError(f"{masks.shape[0]} masks for {frames.shape[0]} frames: give one mask per frame")
    if masks.dtype == np.uint8:
        masks = masks.astype(np.float32) / 255.0
    return frames, masks.astype(np.float32, copy=False)


def resize_image(img: np.ndarray, w: int, h: int) -> np.ndarray:
    if img.shape[1] == w and img.shape[0] == h:
        return img
    interp = cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def resize_alpha(a: np.ndarray, w: int, h: int) -> np.ndarray:
    a = np.asarray(a, np.float32)
    if a.shape[1] == w and a.shape[0] == h:
        return a
    interp = cv2.INTER_AREA if w < a.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(a, (w, h), interpolation=interp)


def fit_mask(mask: np.ndarray, w: int, h: int) -> np.ndarray:
    """A mask resized to the frame (``w``×``h``), float32 0..1."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.dtype == np.uint8:
        m = m.astype(np.float32) / 255.0
    return np.clip(resize_alpha(m, w, h), 0.0, 1.0)


def empty_mask(mask: np.ndarray) -> bool:
    """An all-empty mask means "no object in this frame": the teachers output alpha 0 there."""
    return float(np.max(mask)) < EMPTY_THRESHOLD if mask.size else True
