"""Compositing in pure numpy/cv2: backgrounds, foreground colour estimation, alpha smoothing.

Background specs (``--background``): a colour name (``green``, ``black``, ``white``, ...), a hex
colour (``#00b140`` / ``00b140``), ``blur`` or ``blur:STRENGTH`` (the source frame blurred,
STRENGTH = Gaussian sigma in source pixels, default 15), an image file, or a video file
(looped). Every background is produced at the frame's size into a reused buffer.

Foreground colour estimation (so hair does not keep the old background's colour): the old
background is estimated cheaply at low resolution as a normalised blur of the pixels with α ≈ 0, then each
pixel's colour is un-mixed, ``F = (I − (1−α)·B̂) / α`` (clipped), the single-image model
``I = αF + (1−α)B`` solved for F (the idea behind blur-fusion foreground estimation). The
composite is ``αF + (1−α)·B_new``.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import cv2
import numpy as np

from mamakit.errors import ConfigError

log = logging.getLogger(__name__)

COLOURS: dict[str, tuple[int, int, int]] = {
    "green": (0, 177, 64), "chroma": (0, 177, 64), "blue": (0, 71, 187), "black": (0, 0, 0),
    "white": (255, 255, 255), "gray": (128, 128, 128), "grey": (128, 128, 128), "red": (220, 30, 30),
    "yellow": (250, 220, 40), "cyan": (0, 200, 220), "magenta": (220, 0, 200), "pink": (255, 150, 190),
    "orange": (255, 140, 0), "purple": (120, 40, 170),
}
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif")
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


def parse_colour(spec: str) -> tuple[int, int, int] | None:
    s = spec.strip().lower()
    if s in COLOURS:
        return COLOURS[s]
    m = _HEX.match(s)
    if m:
        v = m.group(1)
        return int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16)
    return None


class Background:
    """Produces the background for one frame (``get(frame, index) -> uint8 HxWx3``)."""

    description = "background"

    def get(self, frame: np.ndarray, index: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass


class ColourBackground(Background):
    def __init__(self, rgb: tuple[int, int, int]):
        self.rgb = np.array(rgb, np.uint8)
        self.description = "colour #%02x%02x%02x" % tuple(int(v) for v in rgb)
        self._buf: np.ndarray | None = None

    def get(self, frame, index):
        h, w = frame.shape[:2]
        if self._buf is None or self._buf.shape[:2] != (h, w):
            self._buf = np.empty((h, w, 3), np.uint8)
            self._buf[...] = self.rgb
        return self._buf


class BlurBackground(Background):
    """The source frame, blurred (computed at low resolution: cost independent of the strength)."""

    def __init__(self, strength: float = 15.0):
        if strength <= 0:
            raise ConfigError(f"blur strength must be > 0, got {strength}")
        self.strength = float(strength)
        self.description = f"blur:{strength:g}"
        self._buf: np.ndarray | None = None

    def get(self, frame, index):
        h, w = frame.shape[:2]
        if self._buf is None or self._buf.shape[:2] != (h, w):
            self._buf = np.empty((h, w, 3), np.uint8)
        scale = 1.0 / max(1.0, self.strength / 3.0)  # blur at a size where sigma is ~3 px
        sw, sh = max(2, round(w * scale)), max(2, round(h * scale))
        small = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA)
        sigma = self.strength * sw / w
        small = cv2.GaussianBlur(small, (0, 0), max(0.8, sigma))
        cv2.resize(small, (w, h), dst=self._buf, interpolation=cv2.INTER_LINEAR)
        return self._buf


def _cover(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Scale ``img`` to cover ``w``x``h`` and centre-crop (no distortion)."""
    ih, iw = img.shape[:2]
    s = max(w / iw, h / ih)
    nw, nh = max(w, round(iw * s)), max(h, round(ih * s))
    r = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    x0, y0 = (nw - w) // 2, (nh - h) // 2
    return np.ascontiguousarray(r[y0:y0 + h, x0:x0 + w])


class ImageBackground(Background):
    def __init__(self, path: Path):
        from mamakit.io import read_image

        self.image = read_image(path)
        self.description = f"image {path}"
        self._cache: tuple[tuple[int, int], np.ndarray] | None = None

    def get(self, frame, index):
        h, w = frame.shape[:2]
        if self._cache is None or self._cache[0] != (w, h):
            self._cache = ((w, h), _cover(self.image, w, h))
        return self._cache[1]


class VideoBackground(Background):
    """A video file, looped; frames are scaled to cover the source frame."""

    def __init__(self, path: Path):
        from mamakit.io import open_source

        self.path = path
        self._open = open_source
        self._src = open_source(str(path))
        self._it = iter(self._src)
        self.description = f"video {path} (looped)"
        self._buf: np.ndarray | None = None

    def _next(self) -> np.ndarray:
        try:
            return next(self._it).image
        except StopIteration:
            self._src.close()
            self._src = self._open(str(self.path))
            self._it = iter(self._src)
            return next(self._it).image

    def get(self, frame, index):
        h, w = frame.shape[:2]
        return _cover(self._next(), w, h)

    def close(self):
        self._src.close()


def parse_background(spec: str | None) -> Background:
    """``--background`` value -> :class:`Background` (ConfigError/VideoIOError on bad specs)."""
    if spec is None or spec == "":
        return ColourBackground(COLOURS["green"])
    if not isinstance(spec, str):
        raise ConfigError(f"background must be a string, got {type(spec).__name__}")
    s = spec.strip()
    rgb = parse_colour(s)
    if rgb is not None:
        return ColourBackground(rgb)
    low = s.lower()
    if low == "blur" or low.startswith("blur:"):
        strength = 15.0
        if ":" in low:
            try:
                strength = float(low.split(":", 1)[1])
            except ValueError as exc:
                raise ConfigError(f"background {spec!r}: blur strength must be a number, e.g. blur:20") from exc
        return BlurBackground(strength)
    p = Path(os.path.expanduser(s))
    if p.suffix.lower() in IMAGE_EXTS or (p.is_file() and p.suffix.lower() not in VIDEO_EXTS):
        if not p.is_file():
            raise ConfigError(f"background image {p} does not exist: give a colour, blur[:strength], an image or a video")
        return ImageBackground(p)
    if p.suffix.lower() in VIDEO_EXTS:
        if not p.is_file():
            raise ConfigError(f"background video {p} does not exist: give a colour, blur[:strength], an image or a video")
        return VideoBackground(p)
    raise ConfigError(f"background {spec!r} is not a colour name, #hex colour, blur[:strength], image or video "
                      f"(colours: {', '.join(sorted(COLOURS))})")


def _old_background(image: np.ndarray, alpha: np.ndarray, scale: float, radius: int) -> np.ndarray:
    """Low-resolution estimate of the background behind the subject: the normalised blur of the
    pure-background pixels, ``blur(I·w) / blur(w)`` with ``w`` = the fraction of each low-resolution
    cell that is background (α ≤ 0.02). Everything after one area-downscale runs at ``scale``."""
    h, w = alpha.shape
    sw, sh = max(2, round(w * scale)), max(2, round(h * scale))
    bgmask = cv2.inRange(alpha, -1.0, 0.02)
    w_s = cv2.resize(bgmask, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32) * (1.0 / 255.0)
    i_s = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    # a cell's mean colour times its background fraction ~ the background pixels' sum (exact for
    # pure cells; mixed cells are down-weighted by w_s twice, so the subject barely leaks in)
    i_s *= (w_s * w_s)[..., None]
    k = (max(1, radius), max(1, radius))
    num = cv2.blur(i_s, k)
    den = cv2.blur(w_s * w_s, k)[..., None] + 1e-3
    return num / den


def _band(alpha: np.ndarray, lo: float = 0.02, hi: float = 0.98) -> np.ndarray:
    """Flat indices of the semi-transparent pixels (where colour un-mixing matters)."""
    return np.flatnonzero(cv2.inRange(alpha, lo, hi))


def _unmix(image, alpha, band, scale, radius):
    """(I_band float32 Nx3 un-mixed foreground F, α_band Nx1) for the band pixels."""
    h, w = alpha.shape
    b_low = _old_background(image, alpha, scale, radius)
    sh, sw = b_low.shape[:2]
    ys, xs = np.divmod(band, w)
    b = b_low[np.minimum((ys * sh) // h, sh - 1), np.minimum((xs * sw) // w, sw - 1)]
    i = image.reshape(-1, 3)[band].astype(np.float32)
    a = alpha.reshape(-1)[band][:, None]
    f = (i - (1.0 - a) * b) / np.maximum(a, 0.02)
    np.clip(f, 0, 255, out=f)
    return f, a


def estimate_foreground(image: np.ndarray, alpha: np.ndarray, *, scale: float = 0.25, radius: int = 8,
                        out: np.ndarray | None = None) -> np.ndarray:
    """Foreground colour (uint8 HxWx3) from ``image`` (uint8 RGB) and ``alpha`` (float 0..1).

    The old background B̂ is a normalised blur of the pure-background pixels at ``scale`` resolution; in the
    semi-transparent band (0.02 < α < 0.98) ``F = (I − (1−α)·B̂) / α`` (clipped); elsewhere F = I
    (opaque pixels are the foreground, fully transparent ones are invisible).
    """
    out = out if out is not None and out.shape == image.shape and out.dtype == np.uint8 else np.empty_like(image)
    np.copyto(out, image)
    band = _band(alpha)
    if band.size:
        f, _ = _unmix(image, alpha, band, scale, radius)
        out.reshape(-1, 3)[band] = (f + 0.5).astype(np.uint8)
    return out


class Compositor:
    """``alpha·F + (1−alpha)·B`` into a reused uint8 buffer (cv2.blendLinear); with foreground
    estimation the semi-transparent band is re-composited from the un-mixed colour F."""

    def __init__(self, background: Background, estimate_fg: bool = True, scale: float = 0.25, radius: int = 8):
        self.background = background
        self.estimate_fg = estimate_fg
        self.scale, self.radius = scale, radius
        self._out: np.ndarray | None = None
        self._inv: np.ndarray | None = None
        self._fg8: np.ndarray | None = None

    def __call__(self, frame: np.ndarray, alpha: np.ndarray, index: int = 0,
                 fgr: np.ndarray | None = None) -> np.ndarray:
        h, w = frame.shape[:2]
        if self._out is None or self._out.shape[:2] != (h, w):
            self._out = np.empty((h, w, 3), np.uint8)
            self._inv = np.empty((h, w), np.float32)
            self._fg8 = np.empty((h, w, 3), np.uint8)
        bg = self.background.get(frame, index)
        alpha = np.ascontiguousarray(alpha, np.float32)
        np.subtract(1.0, alpha, out=self._inv)
        fg = frame
        if fgr is not None:  # the student's own foreground colour (0..1)
            np.multiply(fgr, 255.0, out=fgr)
            np.copyto(self._fg8, np.clip(fgr, 0, 255), casting="unsafe")
            fg = self._fg8
        cv2.blendLinear(fg, bg, alpha, self._inv, dst=self._out)
        if self.estimate_fg and fgr is None:
            band = _band(alpha)
            if band.size:
                f, a = _unmix(frame, alpha, band, self.scale, self.radius)
                b = bg.reshape(-1, 3)[band]
                c = a * f + (1.0 - a) * b
                self._out.reshape(-1, 3)[band] = np.clip(c + 0.5, 0, 255).astype(np.uint8)
        return self._out

    def close(self):
        self.background.close()


def rgba(frame_or_fg: np.ndarray, alpha: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 HxWx4 straight (un-premultiplied) RGBA from colour (uint8 or float 0..255) and alpha 0..1."""
    h, w = alpha.shape
    out = out if out is not None and out.shape == (h, w, 4) else np.empty((h, w, 4), np.uint8)
    np.copyto(out[..., :3], np.clip(frame_or_fg, 0, 255) if frame_or_fg.dtype != np.uint8 else frame_or_fg,
              casting="unsafe")
    out[..., 3] = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


class AlphaSmoother:
    """Temporal smoothing of alpha: blends towards the previous alpha only where it barely changed
    (``|Δ| < threshold``), so static edges stop shimmering while motion stays sharp."""

    def __init__(self, strength: float = 0.5, threshold: float = 0.15):
        if not 0.0 <= strength < 1.0:
            raise ConfigError(f"--smooth must be in [0, 1), got {strength}")
        self.strength, self.threshold = float(strength), float(threshold)
        self._prev: np.ndarray | None = None

    def reset(self):
        self._prev = None

    def __call__(self, alpha: np.ndarray) -> np.ndarray:
        if self.strength == 0.0:
            return alpha
        if self._prev is None or self._prev.shape != alpha.shape:
            self._prev = alpha.copy()
            return alpha
        d = alpha - self._prev
        w = np.abs(d)
        w *= -1.0 / self.threshold
        w += 1.0
        np.clip(w, 0.0, 1.0, out=w)
        w *= self.strength
        d *= w
        np.subtract(alpha, d, out=self._prev)
        np.copyto(alpha, self._prev)
        return alpha
