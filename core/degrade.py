"""Coarse-mask degradations (the VideoMaMa training family, FIELD_GUIDE §1), numpy + OpenCV.

From a ground-truth alpha sequence, :func:`degrade_masks` makes the kind of coarse mask a
segmenter would give:

1. binarise the alpha (``> threshold``, 127/255 by default);
2. per frame, 1 or 2 of {polygon simplification (``approxPolyDP``, epsilon 0.005 × arc length,
   holes kept), downsample by 8/16/32 then upsample and re-threshold};
3. optionally (per clip) replace every mask by its bounding box;
4. optionally one random frame gets a temporal corruption: a rectangle occluding 30–60 % of the
   mask's box, an empty mask, a full mask, a 5×5 erosion or a 5×5 dilation.

All probabilities live in the frozen :class:`DegradeConfig`. Same rng state -> same masks.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import cv2
import numpy as np

from mamakit.errors import ConfigError

SPATIAL_OPS = ("polygon", "downsample")
TEMPORAL_OPS = ("occlude", "empty", "full", "erode", "dilate")


@dataclass(frozen=True)
class DegradeConfig:
    """Probabilities and parameters of the mask degradations (all defaults follow FIELD_GUIDE §1)."""

    threshold: float = 127.0 / 255.0
    #: relative weights of the per-frame spatial ops
    p_polygon: float = 0.5
    p_downsample: float = 0.5
    #: probability that a frame gets two spatial ops instead of one
    p_two_ops: float = 0.5
    #: probability that a frame is left as the binarised alpha (no spatial op)
    p_clean: float = 0.0
    polygon_epsilon: float = 0.005
    downsample_factors: tuple[int, ...] = (8, 16, 32)
    #: per clip: masks become their bounding boxes
    p_box: float = 0.1
    #: per clip: one random frame gets a temporal corruption
    p_temporal: float = 0.5
    temporal_weights: tuple[float, ...] = (0.4, 0.15, 0.15, 0.15, 0.15)  # occlude, empty, full, erode, dilate
    occlusion_range: tuple[float, float] = (0.3, 0.6)
    kernel: int = 5

    def __post_init__(self):
        for name in ("p_polygon", "p_downsample", "p_two_ops", "p_clean", "p_box", "p_temporal"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"DegradeConfig.{name} must be in [0, 1], got {v}")
        if self.p_polygon + self.p_downsample <= 0:
            raise ConfigError("DegradeConfig: p_polygon + p_downsample must be > 0")
        if len(self.temporal_weights) != len(TEMPORAL_OPS) or sum(self.temporal_weights) <= 0:
            raise ConfigError(f"DegradeConfig.temporal_weights needs {len(TEMPORAL_OPS)} weights summing to > 0")
        if not self.downsample_factors or any(int(f) < 1 for f in self.downsample_factors):
            raise ConfigError("DegradeConfig.downsample_factors must be positive integers")
        lo, hi = self.occlusion_range
        if not 0 <= lo <= hi <= 1:
            raise ConfigError("DegradeConfig.occlusion_range must satisfy 0 <= lo <= hi <= 1")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict | None) -> "DegradeConfig":
        """From a recipe's ``degrade:`` mapping (YAML lists become tuples); an unknown key is a
        ConfigError naming it and the known ones, not a TypeError deep inside data setup."""
        data = dict(data or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"degrade: unknown setting(s) {', '.join(unknown)}: use {', '.join(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def for_height(self, height: int, ref_height: int) -> "DegradeConfig":
        """This config for frames ``height`` pixels tall, made as coarse *relative to the frame* as it
        is on ``ref_height``-pixel frames: the pixel-sized knobs (downsample factors, the erode/dilate
        kernel) are scaled by ``height / ref_height`` (at least 1 pixel). E.g. ``for_height(180, 720)``
        turns the 8x/16x/32x factors into 2x/4x/8x, so a 320x180 training clip gets masks as coarse
        as a 720p video's."""
        if height <= 0 or ref_height <= 0:
            raise ConfigError(f"for_height needs positive heights, got {height} and {ref_height}")
        k = height / float(ref_height)
        factors = tuple(max(1, int(round(f * k))) for f in self.downsample_factors)
        kernel = max(1, int(round(self.kernel * k)))
        return replace(self, downsample_factors=factors, kernel=kernel)


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _as_float_seq(alpha_seq) -> np.ndarray:
    a = np.asarray(alpha_seq)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ConfigError(f"alpha sequence must be [T,H,W] (or HxW), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return a.astype(np.float32, copy=False)


def binarize(alpha: np.ndarray, threshold: float = 127.0 / 255.0) -> np.ndarray:
    return (alpha > threshold).astype(np.uint8)


def polygon_simplify(mask: np.ndarray, epsilon: float = 0.005) -> np.ndarray:
    """Replace each contour (outer and holes) by ``approxPolyDP(eps × arc length)``; even-odd fill."""
    contours, _ = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    out = np.zeros_like(mask)
    polys = []
    for c in contours:
        eps = epsilon * cv2.arcLength(c, True)
        p = cv2.approxPolyDP(c, eps, True)
        if len(p) >= 3:
            polys.append(p)
        else:  # tiny blobs and strands: keep them as drawn points/lines
            cv2.polylines(out, [p], True, 1, 1)
    if polys:
        # fillPoly fills with the even-odd rule, so hole contours cut holes into their parents
        layer = np.zeros_like(mask)
        cv2.fillPoly(layer, polys, 1)
        out |= layer
    return out


def downsample_upsample(mask: np.ndarray, factor: int) -> np.ndarray:
    """Area-downsample by ``factor``, bilinear-upsample back, re-threshold at 0.5."""
    h, w = mask.shape
    sw, sh = max(1, round(w / factor)), max(1, round(h / factor))
    small = cv2.resize(mask.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return (big > 0.5).astype(np.uint8)


def bounding_box(mask: np.ndarray) -> np.ndarray:
    out = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    if len(ys):
        out[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1] = 1
    return out


def occlude(mask: np.ndarray, rng: np.random.Generator, frac: tuple[float, float] = (0.3, 0.6)) -> np.ndarray:
    """Zero a rectangle whose sides are ``frac`` of the mask's bounding box, inside that box."""
    out = mask.copy()
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return out
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    bh, bw = y1 - y0, x1 - x0
    rh = max(1, int(round(bh * rng.uniform(*frac))))
    rw = max(1, int(round(bw * rng.uniform(*frac))))
    ry = y0 + int(rng.integers(0, bh - rh + 1))
    rx = x0 + int(rng.integers(0, bw - rw + 1))
    out[ry: ry + rh, rx: rx + rw] = 0
    return out


def degrade_frame(mask: np.ndarray, rng: np.random.Generator, cfg: DegradeConfig) -> np.ndarray:
    """Apply 1–2 spatial ops (polygon / downsample) to one binary uint8 mask."""
    if cfg.p_clean and rng.random() < cfg.p_clean:
        return mask
    weights = np.array([cfg.p_polygon, cfg.p_downsample], dtype=np.float64)
    n = 2 if (rng.random() < cfg.p_two_ops and np.count_nonzero(weights) == 2) else 1
    ops = rng.choice(len(SPATIAL_OPS), size=n, replace=False, p=weights / weights.sum())
    out = mask
    for op in ops:
        if SPATIAL_OPS[op] == "polygon":
            out = polygon_simplify(out, cfg.polygon_epsilon)
        else:
            f = int(cfg.downsample_factors[int(rng.integers(len(cfg.downsample_factors)))])
            out = downsample_upsample(out, f)
    return out


def degrade_masks(alpha_seq, rng=None, cfg: DegradeConfig = DegradeConfig(), return_ops: bool = False):
    """Coarse masks from a GT alpha sequence ``[T,H,W]`` (float 0..1, uint8 or uint16).

    Returns float32 ``[T,H,W]`` with values 0/1 (and, with ``return_ops``, a dict describing what
    was applied: ``box`` and ``temporal`` = ``(frame, op)`` or None).
    """
    rng = _rng(rng)
    alpha = _as_float_seq(alpha_seq)
    T = alpha.shape[0]
    out = np.empty(alpha.shape, np.float32)
    use_box = rng.random() < cfg.p_box
    for t in range(T):
        m = degrade_frame(binarize(alpha[t], cfg.threshold), rng, cfg)
        if use_box:
            m = bounding_box(m)
        out[t] = m
    temporal = None
    if T > 0 and rng.random() < cfg.p_temporal:
        w = np.asarray(cfg.temporal_weights, np.float64)
        op = TEMPORAL_OPS[int(rng.choice(len(TEMPORAL_OPS), p=w / w.sum()))]
        t = int(rng.integers(T))
        m = out[t].astype(np.uint8)
        k = np.ones((cfg.kernel, cfg.kernel), np.uint8)
        if op == "occlude":
            m = occlude(m, rng, cfg.occlusion_range)
        elif op == "empty":
            m = np.zeros_like(m)
        elif op == "full":
            m = np.ones_like(m)
        elif op == "erode":
            m = cv2.erode(m, k)
        else:
            m = cv2.dilate(m, k)
        out[t] = m
        temporal = (t, op)
    if return_ops:
        return out, {"box": use_box, "temporal": temporal}
    return out
