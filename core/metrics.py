"""Video matting metrics, as the community reports them (FIELD_GUIDE §4). numpy + OpenCV, no torch.

All inputs are alpha maps in [0, 1] (float, or uint8/uint16 which are rescaled). Every function
returns the value **in the reported unit**:

======  ===========================================================  ========
metric  definition                                                   unit
======  ===========================================================  ========
MAD     mean |p − t|                                                 × 1e3
MSE     mean (p − t)²                                                × 1e3
SAD     Σ |p − t|                                                    ÷ 1e3
Grad    Σ (‖∇G_σ p‖ − ‖∇G_σ t‖)², maps min-max normalised first,     ÷ 1e3
        first-derivative-of-Gaussian filters, σ = 1.4, unit L2 norm,
        replicate borders
Conn    Σ |φ(p) − φ(t)| over θ = 0.1 … 1.0 (4-connectivity)          ÷ 1e3
dtSSD   sqrt(Σ((p_t − p_{t−1}) − (t_t − t_{t−1}))² / N); frame 0 = 0  × 1e2
======  ===========================================================  ========

:func:`evaluate` computes all of them per frame and their means over frames; the thresholds of
Conn are ``i / 10`` (correctly rounded) so values like 0.6 = 153/255 compare exactly.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import cv2
import numpy as np

from mamakit.errors import InputError

log = logging.getLogger(__name__)

METRICS = ("mad", "mse", "grad", "conn", "dtssd", "sad")
SCALE = {"mad": 1e3, "mse": 1e3, "grad": 1e-3, "conn": 1e-3, "dtssd": 1e2, "sad": 1e-3}
UNITS = {"mad": "×1e3", "mse": "×1e3", "grad": "÷1e3", "conn": "÷1e3", "dtssd": "×1e2", "sad": "÷1e3"}

GRAD_SIGMA = 1.4
CONN_STEP = 0.1


def as_alpha(a, what: str = "alpha") -> np.ndarray:
    """float64 ``HxW`` in [0, 1] from float / uint8 / uint16 input (an ``HxWx1`` map is squeezed)."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise InputError(f"{what} must be a 2-D map (HxW), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float64) / 65535.0
    if a.dtype == np.bool_:
        return a.astype(np.float64)
    return a.astype(np.float64, copy=False)


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    p, t = as_alpha(pred, "prediction"), as_alpha(gt, "ground truth")
    if p.shape != t.shape:
        raise InputError(f"prediction is {p.shape[1]}x{p.shape[0]} but ground truth is {t.shape[1]}x{t.shape[0]}: "
                         "predictions must have the ground truth's size")
    return p, t


def mad(pred, gt) -> float:
    p, t = _pair(pred, gt)
    return float(np.mean(np.abs(p - t)) * SCALE["mad"])


def mse(pred, gt) -> float:
    p, t = _pair(pred, gt)
    return float(np.mean((p - t) ** 2) * SCALE["mse"])


def sad(pred, gt) -> float:
    p, t = _pair(pred, gt)
    return float(np.sum(np.abs(p - t)) * SCALE["sad"])


# ---------------------------------------------------------------- Grad
def gaussian_derivative_kernels(sigma: float = GRAD_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """(g, dg): the separable factors of the x-derivative-of-Gaussian kernel ``hx = outer(g, dg)``,
    scaled so that ``hx`` has unit L2 norm. ``hy = hx.T``."""
    eps = 1e-2
    half = int(math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * eps))))
    x = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-x ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))
    dg = -x * g / sigma ** 2
    norm = math.sqrt(float(np.sum(g ** 2)) * float(np.sum(dg ** 2)))  # ‖outer(g, dg)‖_F
    return g / math.sqrt(norm), dg / math.sqrt(norm)


def _normalise(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    if hi - lo <= 0:
        return np.zeros_like(a)
    return (a - lo) / (hi - lo)


def gradient_magnitude(a: np.ndarray, sigma: float = GRAD_SIGMA) -> np.ndarray:
    g, dg = gaussian_derivative_kernels(sigma)
    gx = cv2.sepFilter2D(a, cv2.CV_64F, dg, g, borderType=cv2.BORDER_REPLICATE)  # d/dx along columns
    gy = cv2.sepFilter2D(a, cv2.CV_64F, g, dg, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(gx ** 2 + gy ** 2)


def grad(pred, gt, sigma: float = GRAD_SIGMA) -> float:
    p, t = _pair(pred, gt)
    mp = gradient_magnitude(_normalise(p), sigma)
    mt = gradient_magnitude(_normalise(t), sigma)
    return float(np.sum((mp - mt) ** 2) * SCALE["grad"])


# ---------------------------------------------------------------- Conn
def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))  # first of equal sizes, like MATLAB max
    return labels == biggest


def connectivity_levels(p: np.ndarray, t: np.ndarray, step: float = CONN_STEP) -> np.ndarray:
    """ℓ per pixel: the last threshold before the pixel leaves the largest 4-connected component
    of (p ≥ θ and t ≥ θ); pixels that never leave get 1."""
    n = int(round(1.0 / step))
    level = np.full(p.shape, -1.0)
    both = np.minimum(p, t)  # p >= θ and t >= θ  <=>  min(p, t) >= θ
    undecided = np.ones(p.shape, bool)
    for i in range(1, n + 1):
        theta = i / n
        omega = _largest_component(both >= theta)
        flag = undecided & ~omega
        level[flag] = (i - 1) / n
        undecided &= omega
    level[level == -1] = 1.0
    return level


def conn(pred, gt, step: float = CONN_STEP) -> float:
    p, t = _pair(pred, gt)
    level = connectivity_levels(p, t, step)
    dp, dt = p - level, t - level
    phi_p = 1.0 - dp * (dp >= 0.15)
    phi_t = 1.0 - dt * (dt >= 0.15)
    return float(np.sum(np.abs(phi_p - phi_t)) * SCALE["conn"])


# ---------------------------------------------------------------- dtSSD
def dtssd_frame(pred, pred_prev, gt, gt_prev) -> float:
    """dtSSD of one frame given the previous one (reported unit, ×1e2)."""
    p, t = _pair(pred, gt)
    pp, tp = _pair(pred_prev, gt_prev)
    d = (p - pp) - (t - tp)
    return float(math.sqrt(float(np.sum(d ** 2)) / d.size) * SCALE["dtssd"])


def dtssd(preds: Sequence, gts: Sequence) -> float:
    """Mean dtSSD over all frames of a clip (frame 0 counts as 0)."""
    if len(preds) != len(gts):
        raise InputError(f"{len(preds)} predictions but {len(gts)} ground-truth frames")
    if not len(preds):
        raise InputError("no frames to evaluate")
    vals = [0.0] + [dtssd_frame(preds[i], preds[i - 1], gts[i], gts[i - 1]) for i in range(1, len(preds))]
    return float(np.mean(vals))


# ---------------------------------------------------------------- evaluation
@dataclass
class Evaluator:
    """Streaming evaluation: ``update(pred, gt, name)`` per frame (``new_clip()`` between clips),
    ``result()`` -> the JSON structure of :func:`evaluate`. Holds only the previous frame."""

    per_frame: list[dict] = field(default_factory=list)
    _prev: tuple[np.ndarray, np.ndarray] | None = None
    clip: str | None = None

    def new_clip(self, clip: str | None = None) -> None:
        self._prev = None
        self.clip = clip

    def update(self, pred, gt, name: str | None = None) -> dict:
        p, t = _pair(pred, gt)
        row: dict = {"frame": name if name is not None else len(self.per_frame)}
        if self.clip is not None:
            row["clip"] = self.clip
        if self._prev is not None and self._prev[0].shape != p.shape:
            # a size change starts a new sequence (e.g. a folder of still images): dtSSD 0 there
            log.debug("frame %s changes size: dtSSD restarts", row["frame"])
            self._prev = None
        row.update(mad=mad(p, t), mse=mse(p, t), grad=grad(p, t), conn=conn(p, t),
                   dtssd=0.0 if self._prev is None else dtssd_frame(p, self._prev[0], t, self._prev[1]),
                   sad=sad(p, t))
        self._prev = (p, t)
        self.per_frame.append(row)
        return row

    def result(self) -> dict:
        if not self.per_frame:
            raise InputError("no frames were evaluated")
        out: dict = {k: float(np.mean([r[k] for r in self.per_frame])) for k in METRICS}
        out["frames"] = len(self.per_frame)
        out["per_frame"] = self.per_frame
        return out


def evaluate(preds: Iterable, gts: Iterable, names: Sequence[str] | None = None) -> dict:
    """All metrics for one clip: ``{"mad", "mse", "grad", "conn", "dtssd", "sad": mean over
    frames, "frames": n, "per_frame": [{"frame", "mad", ...}, ...]}``."""
    preds, gts = list(preds), list(gts)
    if len(preds) != len(gts):
        raise InputError(f"{len(preds)} predictions but {len(gts)} ground-truth frames: give one prediction per frame")
    ev = Evaluator()
    for i, (p, t) in enumerate(zip(preds, gts)):
        ev.update(p, t, None if names is None else names[i])
    return ev.result()


def format_table(result: dict) -> str:
    """A small text table of the means (and units)."""
    head = "  ".join(f"{k.upper() if k != 'dtssd' else 'dtSSD':>9}" for k in METRICS)
    units = "  ".join(f"{UNITS[k]:>9}" for k in METRICS)
    vals = "  ".join(f"{result[k]:>9.4f}" for k in METRICS)
    return f"{head}\n{units}\n{vals}\nframes: {result['frames']}"
