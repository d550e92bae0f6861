"""Compositing in pure numpy/cv2: backgrounds, foreground colour estimation, alpha smoothing.

Background specs (``--background``): a colour name (``green``, ``black``, ``white``, ...), a hex
colour (``#00b140`` / ``00b140``), ``blur`` or ``blur:STRENGTH`` (the source frame blurred,
STRENGTH = Gaussian sigma in source pixels, default 15), an image file, or a video file
(looped). Every background is produced at the frame's size into a reused buffer.

Foreground colour estimation (so hair does not keep the old background's colour): the old
background is estimated cheaply at low resolution as a normalised blur of ``I·(1−α)``, then each
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


def estimate_foreground(image: np.ndarray, alpha: np.ndarray, *, scale: float = 0.25, radius: int = 8,
                        out: np.ndarray | None = None) -> np.ndarray:
    """Foreground colour (float32 HxWx3, 0..255 scale) from ``image`` (uint8) and ``alpha`` (0..1).

    The old background B̂ is a normalised box blur of ``I·(1−α)`` at ``scale`` resolution;
    then ``F = (I − (1−α)·B̂) / α`` where α > 0.02 (clipped to 0..255), ``F = I`` elsewhere.
    """
    h, w = alpha.shape
    sw, sh = max(2, round(w * scale)), max(2, round(h * scale))
    a_s = cv2.resize(alpha, (sw, sh), interpolation=cv2.INTER_AREA)
    i_s = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    inv = 1.0 - a_s
    k = (max(1, radius), max(1, radius))
    num = cv2.blur(i_s * inv[..., None], k)
    den = cv2.blur(inv, k)[..., None] + 1e-4
    b_s = num / den
    b = cv2.resize(b_s, (w, h), interpolation=cv2.INTER_LINEAR)
    a = alpha[..., None]
    f = out if out is not None else np.empty((h, w, 3), np.float32)
    np.subtract(image, (1.0 - a) * b, out=f, casting="unsafe")
    np.divide(f, np.maximum(a, 0.02), out=f)
    np.clip(f, 0, 255, out=f)
    low = alpha < 0.02
    if low.any():
        f[low] = image[low]
    return f


class Compositor:
    """``alpha·F + (1−alpha)·B`` into a reused uint8 buffer; F estimated unless told otherwise."""

    def __init__(self, background: Background, estimate_fg: bool = True):
        self.background = background
        self.estimate_fg = estimate_fg
        self._out: np.ndarray | None = None
        self._f: np.ndarray | None = None

    def __call__(self, frame: np.ndarray, alpha: np.ndarray, index: int = 0,
                 fgr: np.ndarray | None = None) -> np.ndarray:
        h, w = frame.shape[:2]
        if self._out is None or self._out.shape[:2] != (h, w):
            self._out = np.empty((h, w, 3), np.uint8)
            self._f = np.empty((h, w, 3), np.float32)
        bg = self.background.get(frame, index)
        a = alpha[..., None]
        if fgr is not None:  # the student's own foreground (0..1)
            np.multiply(fgr, 255.0, out=self._f)
            fg = self._f
        elif self.estimate_fg:
            fg = estimate_foreground(frame, alpha, out=self._f)
        else:
            fg = frame
        # out = bg + a·(fg − bg)
        tmp = np.subtract(fg, bg, dtype=np.float32)
        tmp *= a
        tmp += bg
        np.clip(tmp, 0, 255, out=tmp)
        np.copyto(self._out, tmp, casting="unsafe")
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
