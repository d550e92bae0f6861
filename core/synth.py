"""Synthetic matting clips with exact ground truth, for training and tests (no download).

A clip is a foreground with a procedural alpha (soft shapes, holes, thin hair-like strands,
semi-transparent regions, optional motion blur), textured with real photos shipped inside
scikit-image (``skimage.data``), composited over a background that is another photo or a
procedural texture. Foreground and background move independently (translation, rotation,
scale per frame). Coarse masks come from :func:`mamakit.degrade.degrade_masks`.

``frame = round(alpha * fgr + (1 - alpha) * bg)`` with ``alpha`` quantised to 8 bits, so the
ground truth stored in a dataset is exact. Same seed -> byte-identical clips and files.

scikit-image is optional (extras ``train``/``all``/``dev``) and imported lazily.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from mamakit.degrade import DegradeConfig, degrade_masks
from mamakit.errors import ConfigError, DependencyError

log = logging.getLogger(__name__)

#: photos bundled inside the scikit-image wheel (no download needed)
COLOUR_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
GRAY_PHOTOS = ("camera", "coins", "moon", "brick", "grass", "gravel", "clock", "cell", "text")


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator (fractions are of the frame size; probabilities in [0, 1])."""

    fg_scale: tuple[float, float] = (0.25, 0.45)     # object radius / min(w, h)
    n_shapes: tuple[int, int] = (1, 3)
    edge_sigma: tuple[float, float] = (0.4, 2.5)     # px, softness of shape edges
    p_hole: float = 0.3
    p_hair: float = 0.6
    n_strands: tuple[int, int] = (8, 48)
    strand_length: tuple[float, float] = (0.1, 0.35)  # of min(w, h)
    p_transparent: float = 0.4
    transparency: tuple[float, float] = (0.25, 0.8)
    p_motion_blur: float = 0.3
    max_translate: float = 0.25      # total path length of the fg over the clip, of the size
    max_rotate: float = 20.0         # degrees over the clip
    scale_range: tuple[float, float] = (0.85, 1.15)
    bg_motion: float = 0.5           # bg motion relative to fg motion limits
    p_procedural_bg: float = 0.35
    p_gray_fg_texture: float = 0.25
    p_extra_texture: float = 0.6     # with extra textures given: share of fg / photo bg textures taken from them
    fps: float = 25.0

    def __post_init__(self):
        for name in ("p_hole", "p_hair", "p_transparent", "p_motion_blur", "p_procedural_bg", "p_gray_fg_texture",
                     "p_extra_texture"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"SynthConfig.{name} must be in [0, 1], got {v}")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass
class SynthClip:
    """``frames``/``fgr``/``bg``: ``[T,H,W,3]`` uint8 RGB; ``alpha``/``masks``: ``[T,H,W]`` float32 0..1."""

    frames: np.ndarray
    alpha: np.ndarray
    masks: np.ndarray
    fgr: np.ndarray
    bg: np.ndarray
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)


# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _photo_bank() -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """(colour photos, gray photos) from ``skimage.data`` as uint8 arrays (loaded once)."""
    try:
        import skimage.data as data
    except ImportError as exc:
        raise DependencyError("scikit-image is needed for synthetic clips (it ships the photos used as textures): "
                              "install it with `pip install \"mamakit[train]\"`") from exc
    colour, gray = [], []
    for names, out in ((COLOUR_PHOTOS, colour), (GRAY_PHOTOS, gray)):
        for name in names:
            try:
                img = np.asarray(getattr(data, name)())
            except Exception as exc:  # a photo missing from this scikit-image build: skip it
                log.debug("skimage.data.%s unavailable: %s", name, exc)
                continue
            if img.dtype != np.uint8:
                img = (img.astype(np.float32) * (255.0 / max(1.0, float(img.max())))).astype(np.uint8)
            if img.ndim == 3:
                img = img[..., :3]
            out.append(np.ascontiguousarray(img))
    if len(colour) < 2:
        raise DependencyError("scikit-image is installed but its bundled photos cannot be loaded: "
                              "reinstall it with `pip install --force-reinstall \"mamakit[train]\"`")
    return tuple(colour), tuple(gray)


def load_textures(paths: Sequence[str | os.PathLike], per_source: int = 8, max_side: int = 1024) -> tuple[np.ndarray, ...]:
    """Extra texture photos for :func:`make_clip` from image files, image folders and videos.

    Up to ``per_source`` frames evenly spread over each folder or video (all of a single image),
    downscaled so that the longer side is at most ``max_side``. Real footage of the deployment domain
    (people, rooms, objects) gives the student textures that the few bundled photos lack.
    The order is fixed by the paths, so the same paths and seed give the same clips.
    """
    from mamakit.io import open_source

    if per_source < 1:
        raise ConfigError(f"per_source must be at least 1, got {per_source}")
    out: list[np.ndarray] = []
    for spec in paths:
        with open_source(str(spec)) as src:
            if src.is_live:
                raise ConfigError(f"texture source {spec} is a live stream: pass image files, folders or videos")
            if src.count:  # known length: keep only the picked frames while decoding (long videos stay cheap)
                want = set(_spread(src.count, per_source).tolist())
                frames = [f.image for f in src if f.index in want]
            else:
                frames = [f.image for f in src]
                frames = [frames[int(i)] for i in _spread(len(frames), per_source)]
        if not frames:
            raise ConfigError(f"texture source {spec} has no frames")
        for img in frames:
            s = max_side / max(img.shape[:2])
            if s < 1:
                img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
            out.append(np.ascontiguousarray(img[..., :3], dtype=np.uint8))
    return tuple(out)


def _spread(n: int, k: int) -> np.ndarray:
    """Up to ``k`` indices evenly spread over ``range(n)``, first and last included."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


def _rng(rng_or_seed) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(rng_or_seed)


def _uniform(rng, lo_hi) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _crop_resize(img: np.ndarray, w: int, h: int, rng: np.random.Generator, zoom: tuple[float, float]) -> np.ndarray:
    H, W = img.shape[:2]
    z = _uniform(rng, zoom)  # fraction of the photo covered
    cw = max(8, min(W, int(W * z)))
    ch = max(8, min(H, int(cw * h / w)))
    cw = max(8, min(W, int(ch * w / h)))
    x0 = int(rng.integers(0, W - cw + 1))
    y0 = int(rng.integers(0, H - ch + 1))
    crop = img[y0: y0 + ch, x0: x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_AREA if cw > w else cv2.INTER_LINEAR)


def _colour_jitter(img: np.ndarray, rng: np.random.Generator, strength: float = 0.25) -> np.ndarray:
    gains = 1.0 + rng.uniform(-strength, strength, 3)
    bias = rng.uniform(-20, 20, 3) * strength
    contrast = 1.0 + rng.uniform(-strength, strength)
    f = img.astype(np.float32)
    mean = f.mean(axis=(0, 1), keepdims=True)
    f = (f - mean) * contrast + mean
    f = f * gains + bias
    return np.clip(f + 0.5, 0, 255).astype(np.uint8)


def _tint_gray(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = gray.astype(np.float32)[..., None] / 255.0
    return np.clip(c0 * (1 - t) + c1 * t + 0.5, 0, 255).astype(np.uint8)


def procedural_texture(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A random RGB texture: multi-octave value noise, sinusoid gratings, checkers or gradients."""
    kind = int(rng.integers(4))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # value noise, 3 octaves
        t = np.zeros((h, w), np.float32)
        for octave in range(3):
            cells = int(rng.integers(2, 6)) * (2 ** octave)
            small = rng.random((cells + 1, cells + 1)).astype(np.float32)
            t += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) / (2 ** octave)
        t = (t - t.min()) / max(1e-6, float(np.ptp(t)))
    elif kind == 1:  # gratings
        t = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            ang = rng.uniform(0, np.pi)
            freq = rng.uniform(2, 12) * 2 * np.pi / max(w, h)
            t += np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * freq + rng.uniform(0, 2 * np.pi))
        t = (t - t.min()) / max(1e-6, float(np.ptp(t)))
    elif kind == 2:  # checkers / stripes
        cell = int(rng.integers(4, max(5, min(w, h) // 3)))
        t = (((xx // cell).astype(np.int32) + (yy // cell).astype(np.int32)) % 2).astype(np.float32)
        t = cv2.GaussianBlur(t, (0, 0), 0.7)
    else:  # gradient with noise
        ang = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(ang) + yy * np.sin(ang)
        t = (t - t.min()) / max(1e-6, float(np.ptp(t)))
        t = np.clip(t + rng.normal(0, 0.03, (h, w)).astype(np.float32), 0, 1)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    return np.clip(c0 * (1 - t[..., None]) + c1 * t[..., None] + 0.5, 0, 255).astype(np.uint8)


def _star_polygon(cx, cy, r, rng) -> np.ndarray:
    n = 48
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = np.ones(n)
    for k in range(2, 2 + int(rng.integers(1, 4))):
        rad += rng.uniform(0, 0.25) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    rad = np.clip(rad, 0.3, None) * r
    pts = np.stack([cx + rad * np.cos(theta), cy + rad * np.sin(theta)], axis=1)
    return np.round(pts * 4).astype(np.int32)  # 2 fractional bits (shift=2)


def _foreground_alpha(w: int, h: int, s: int, rng: np.random.Generator, cfg: SynthConfig):
    """Procedural alpha (float32 0..1, object centred on a ``w``x``h`` canvas, sized relative to
    the frame's short side ``s``) and the strand layer (for colouring)."""
    base = np.zeros((h, w), np.uint8)
    cx, cy = w / 2, h / 2
    R = _uniform(rng, cfg.fg_scale) * s
    for i in range(int(rng.integers(cfg.n_shapes[0], cfg.n_shapes[1] + 1))):
        ox, oy = (0.0, 0.0) if i == 0 else rng.uniform(-0.6, 0.6, 2) * R
        r = R * (1.0 if i == 0 else rng.uniform(0.35, 0.8))
        if rng.random() < 0.5:
            axes = (max(1, int(r * 4)), max(1, int(r * rng.uniform(0.45, 1.0) * 4)))
            cv2.ellipse(base, (int((cx + ox) * 4), int((cy + oy) * 4)), axes, rng.uniform(0, 180), 0, 360, 255,
                        -1, cv2.LINE_AA, shift=2)
        else:
            cv2.fillPoly(base, [_star_polygon(cx + ox, cy + oy, r, rng)], 255, cv2.LINE_AA, shift=2)
    if rng.random() < cfg.p_hole:
        hr = max(1, int(R * rng.uniform(0.1, 0.3) * 4))
        hx, hy = (np.array([cx, cy]) + rng.uniform(-0.4, 0.4, 2) * R) * 4
        cv2.circle(base, (int(hx), int(hy)), hr, 0, -1, cv2.LINE_AA, shift=2)
    alpha = base.astype(np.float32) / 255.0
    sigma = _uniform(rng, cfg.edge_sigma)
    if sigma > 0.3:
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
    if rng.random() < cfg.p_transparent:
        tr = np.ones((h, w), np.float32)
        er = R * rng.uniform(0.3, 0.7)
        ex, ey = np.array([cx, cy]) + rng.uniform(-0.5, 0.5, 2) * R
        cv2.ellipse(tr, (int(ex * 4), int(ey * 4)), (max(1, int(er * 4)), max(1, int(er * rng.uniform(0.4, 1) * 4))),
                    rng.uniform(0, 180), 0, 360, _uniform(rng, cfg.transparency), -1, cv2.LINE_AA, shift=2)
        alpha *= cv2.GaussianBlur(tr, (0, 0), 1.5)
    strands = np.zeros((h, w), np.uint8)
    if rng.random() < cfg.p_hair:
        ys, xs = np.nonzero(base > 127)
        if len(ys):
            for _ in range(int(rng.integers(cfg.n_strands[0], cfg.n_strands[1] + 1))):
                k = int(rng.integers(len(ys)))
                p = np.array([xs[k], ys[k]], np.float64)
                d = p - (cx, cy)
                ang = np.arctan2(d[1], d[0]) + rng.normal(0, 0.4)
                length = _uniform(rng, cfg.strand_length) * s + R * 0.4
                steps = 12
                pts = [p.copy()]
                curl = rng.normal(0, 0.12)
                for _ in range(steps):
                    ang += curl + rng.normal(0, 0.08)
                    p = p + (length / steps) * np.array([np.cos(ang), np.sin(ang)])
                    pts.append(p.copy())
                val = int(rng.uniform(0.35, 1.0) * 255)
                cv2.polylines(strands, [np.round(np.array(pts) * 4).astype(np.int32)], False, val, 1,
                              cv2.LINE_AA, shift=2)
    alpha = np.maximum(alpha, strands.astype(np.float32) / 255.0)
    return np.clip(alpha, 0.0, 1.0), strands


def _path(T: int, rng: np.random.Generator, w: int, h: int, translate: float, rotate: float,
          scale: tuple[float, float]) -> list[np.ndarray]:
    """Per-frame 2x3 affine matrices: a smooth path (linear drift + gentle wobble) about the centre."""
    s = min(w, h)
    t0 = rng.uniform(-0.15, 0.15, 2) * (w, h)
    drift = rng.normal(0, 1, 2)
    drift = drift / max(1e-6, np.linalg.norm(drift)) * rng.uniform(0, translate) * s
    wob_amp = rng.uniform(0, 0.03) * s
    wob_f = rng.uniform(0.5, 2.0)
    r0 = rng.uniform(-rotate, rotate)
    r1 = r0 + rng.uniform(-rotate, rotate)
    s0, s1 = rng.uniform(*scale), rng.uniform(*scale)
    out = []
    for t in range(T):
        u = t / max(1, T - 1)
        tx, ty = t0 + drift * (u - 0.5) + wob_amp * np.array([np.sin(2 * np.pi * wob_f * u),
                                                             np.cos(2 * np.pi * wob_f * u)])
        M = cv2.getRotationMatrix2D((w / 2, h / 2), r0 + (r1 - r0) * u, s0 + (s1 - s0) * u)
        M[:, 2] += (tx, ty)
        out.append(M)
    return out


def _line_kernel(dx: float, dy: float) -> np.ndarray | None:
    length = float(np.hypot(dx, dy))
    if length < 1.5:
        return None
    n = int(np.ceil(length)) | 1
    k = np.zeros((n, n), np.float32)
    c = n // 2
    ux, uy = dx / length * (n - 1) / 2, dy / length * (n - 1) / 2
    cv2.line(k, (int(round(c - ux)), int(round(c - uy))), (int(round(c + ux)), int(round(c + uy))), 1.0, 1, cv2.LINE_AA)
    return k / k.sum()


def make_clip(rng_or_seed=0, frames: int = 8, size: tuple[int, int] = (128, 128), *,
              cfg: SynthConfig = SynthConfig(), degrade_cfg: DegradeConfig = DegradeConfig(),
              textures: Sequence[np.ndarray] = ()) -> SynthClip:
    """Generate one clip in memory. ``size`` is (w, h); ``rng_or_seed`` an int, SeedSequence or Generator.

    ``textures`` (RGB uint8 photos, e.g. from :func:`load_textures`) are drawn for the foreground and
    for photo backgrounds with probability ``cfg.p_extra_texture`` each; without them the clip is the
    same as before they existed (no extra random draws)."""
    w, h = int(size[0]), int(size[1])
    T = int(frames)
    if w < 16 or h < 16:
        raise ConfigError(f"synthetic clips need a size of at least 16x16, got {w}x{h}")
    if T < 1:
        raise ConfigError(f"synthetic clips need at least 1 frame, got {T}")
    rng = _rng(rng_or_seed)
    colour, gray = _photo_bank()

    # ---- foreground layers on a padded canvas (object centred, nothing clipped when it moves)
    px, py = w // 2, h // 2
    cw, ch = w + 2 * px, h + 2 * py
    alpha0, strands = _foreground_alpha(cw, ch, min(w, h), rng, cfg)
    if textures and rng.random() < cfg.p_extra_texture:
        tex = _crop_resize(textures[int(rng.integers(len(textures)))], cw, ch, rng, (0.3, 0.9))
    elif gray and rng.random() < cfg.p_gray_fg_texture:
        tex = _tint_gray(_crop_resize(gray[int(rng.integers(len(gray)))], cw, ch, rng, (0.3, 0.9)), rng)
    else:
        tex = _crop_resize(colour[int(rng.integers(len(colour)))], cw, ch, rng, (0.3, 0.9))
    fg0 = _colour_jitter(tex, rng).astype(np.float32)
    if strands.any():  # hair colour along strands
        hair = rng.uniform(10, 240) * rng.uniform(0.6, 1.0, 3)
        m = (strands.astype(np.float32) / 255.0)[..., None]
        m = np.clip(m * 1.5, 0, 1)
        fg0 = fg0 * (1 - m) + hair * m

    # ---- background: a photo or a procedural texture (a little larger than needed, reflected)
    if rng.random() < cfg.p_procedural_bg:
        bg0 = procedural_texture(w, h, rng)
    else:
        pool = tuple(textures) if textures and rng.random() < cfg.p_extra_texture else colour + gray
        img = pool[int(rng.integers(len(pool)))]
        bg0 = _crop_resize(img, w, h, rng, (0.4, 1.0))
        bg0 = _tint_gray(bg0, rng) if bg0.ndim == 2 else bg0
        bg0 = _colour_jitter(bg0, rng, 0.15)

    fg_path = _path(T, rng, w, h, cfg.max_translate, cfg.max_rotate, cfg.scale_range)
    for M in fg_path:  # canvas -> frame: remove the padding offset
        M[:, 2] -= M[:, :2] @ np.array([px, py], np.float64)
    bgm = cfg.bg_motion
    bg_path = _path(T, rng, w, h, cfg.max_translate * bgm, cfg.max_rotate * bgm,
                    (1.0 + (cfg.scale_range[0] - 1) * bgm, 1.0 + (cfg.scale_range[1] - 1) * bgm))
    blur = rng.random() < cfg.p_motion_blur
    blur_gain = rng.uniform(0.5, 1.5)

    alpha = np.empty((T, h, w), np.float32)
    fgr = np.empty((T, h, w, 3), np.uint8)
    bg = np.empty((T, h, w, 3), np.uint8)
    flags = cv2.INTER_LINEAR
    for t in range(T):
        M = fg_path[t]
        a = cv2.warpAffine(alpha0, M, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        f = cv2.warpAffine(fg0, M, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT101)
        if blur:
            prev = fg_path[max(0, t - 1)] if t > 0 else fg_path[min(T - 1, 1)]
            c = np.array([cw / 2, ch / 2, 1.0])
            d = (M @ c - prev @ c) * blur_gain
            k = _line_kernel(float(d[0]), float(d[1]))
            if k is not None:
                pa = cv2.filter2D(a[..., None] * f, -1, k, borderType=cv2.BORDER_REFLECT101)
                a = cv2.filter2D(a, -1, k, borderType=cv2.BORDER_CONSTANT)
                fb = cv2.filter2D(f, -1, k, borderType=cv2.BORDER_REFLECT101)
                f = np.where(a[..., None] > 1e-3, pa / np.maximum(a[..., None], 1e-3), fb)
        alpha[t] = np.round(np.clip(a, 0, 1) * 255.0) / 255.0  # 8-bit exact GT
        fgr[t] = np.clip(f + 0.5, 0, 255).astype(np.uint8)
        bg[t] = cv2.warpAffine(bg0, bg_path[t], (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT101)
    a3 = alpha[..., None]
    comp = a3 * fgr.astype(np.float32) + (1.0 - a3) * bg.astype(np.float32)
    frames_out = np.clip(comp + 0.5, 0, 255).astype(np.uint8)
    masks, ops = degrade_masks(alpha, rng, degrade_cfg, return_ops=True)
    info = {"motion_blur": bool(blur), "hair": bool(strands.any()), "degrade": {
        "box": bool(ops["box"]), "temporal": list(ops["temporal"]) if ops["temporal"] else None}}
    return SynthClip(frames_out, alpha, masks, fgr, bg, info)


def clip_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of clip ``index`` of a dataset made with ``seed`` (independent of the clip count)."""
    return np.random.default_rng([int(seed), int(index)])


def clip_id(seed: int, index: int) -> str:
    return f"synth-s{int(seed)}-{int(index):05d}"


def synth_dataset(out: str | os.PathLike, clips: int, frames: int, size: tuple[int, int], seed: int = 0, *,
                  cfg: SynthConfig = SynthConfig(), degrade_cfg: DegradeConfig = DegradeConfig(),
                  frame_format: str = "png", progress: Callable[[int], None] | None = None,
                  textures: Sequence[np.ndarray] = (), texture_sources: Sequence[str] = ()) -> list[str]:
    """Write ``clips`` synthetic clips to the dataset folder ``out`` (see docs/dataset.md).

    ``textures``: extra texture photos (:func:`load_textures`); ``texture_sources`` (what they were
    loaded from) is recorded in every clip's meta.json with their count.

    Clip ``i`` depends only on ``(seed, i)``; clips already in the manifest are skipped, so an
    interrupted run resumes. ``progress(n)`` is called after each clip. Returns the clip ids.
    """
    from mamakit.dataset import DatasetWriter

    if clips < 1 or frames < 1:
        raise ConfigError(f"need at least one clip and one frame, got clips={clips} frames={frames}")
    w, h = int(size[0]), int(size[1])
    if w < 16 or h < 16:
        raise ConfigError(f"synthetic clips need a size of at least 16x16, got {w}x{h}")
    _photo_bank()  # fail on a missing extra before creating anything
    base = SynthConfig().to_dict()
    changed = {k: v for k, v in cfg.to_dict().items() if v != base[k] and k != "fps"}
    ids = []
    with DatasetWriter(out) as dw:
        for i in range(clips):
            cid = clip_id(seed, i)
            ids.append(cid)
            if cid in dw:
                if progress:
                    progress(1)
                continue
            clip = make_clip(clip_rng(seed, i), frames, (w, h), cfg=cfg, degrade_cfg=degrade_cfg, textures=textures)
            extra = {"synth": {"seed": int(seed), "index": i, **clip.info}}
            if changed:
                extra["synth"]["config"] = changed
            if textures:
                extra["synth"]["textures"] = {"count": len(textures), "sources": [str(t) for t in texture_sources]}
            dw.write_clip(cid, clip.frames, clip.alpha, clip.masks, clip.fgr, source="synth", fps=cfg.fps,
                          alpha_origin="gt", frame_format=frame_format, extra=extra)
            if progress:
                progress(1)
    return ids
