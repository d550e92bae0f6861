"""Single images: read any common still format, normalise it, write alpha PNGs atomically.

Readers accept PNG, JPEG, TIFF and WebP in 8 or 16 bits (or float TIFF), gray, gray+alpha, RGB
or RGBA, and return

* :func:`read_image` -> ``uint8`` RGB ``HxWx3`` (16-bit is rounded down to 8 bits, alpha is
  dropped, gray is replicated);
* :func:`read_alpha` -> ``float32`` ``HxW`` in 0..1 (a gray image, the alpha channel of an RGBA
  image whose alpha is not constant, otherwise the largest colour channel).

Unreadable files raise :class:`~mamakit.errors.VideoIOError` with the path and what to do.
Truncated PNG/JPEG files are caught by a cheap structural check before decoding.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import cv2
import numpy as np

from mamakit.errors import ConfigError, VideoIOError
from mamakit.fsutil import write_bytes_atomic

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")

_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def natural_key(name: str):
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(folder: str | os.PathLike, what: str = "image folder") -> list[Path]:
    """Image files in ``folder`` (not recursive, hidden files skipped) in natural sort order.

    Raises :class:`VideoIOError` when ``folder`` is missing, is a file, or holds no images.
    """
    folder = Path(folder)
    if not folder.exists():
        raise VideoIOError(f"{what} {folder} does not exist: check the path")
    if not folder.is_dir():
        raise VideoIOError(f"{what} {folder} is a file, not a folder: pass the folder that holds the images")
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise VideoIOError(f"{what} {folder} cannot be read ({exc.strerror}): check its permissions") from exc
    files = [p for p in entries if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".") and p.is_file()]
    if not files:
        raise VideoIOError(
            f"{what} {folder} holds no images ({', '.join(e.lstrip('.') for e in IMAGE_EXTS)}): "
            "check the path or add frames")
    return sorted(files, key=lambda p: natural_key(p.name))


def quick_check(path: str | os.PathLike) -> None:
    """Cheap structural check (size, signature, end marker) that catches truncated files early.

    Reads only the first and last few bytes. Raises :class:`VideoIOError`.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise VideoIOError(f"{path} is a folder, not an image file: pass an image file")
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(max(0, size - 64))
            tail = f.read(64)
    except FileNotFoundError as exc:
        raise VideoIOError(f"image {path} does not exist: check the path") from exc
    except PermissionError as exc:
        raise VideoIOError(f"image {path} is not readable (permission denied): check its permissions") from exc
    except IsADirectoryError as exc:
        raise VideoIOError(f"{path} is a folder, not an image file: pass an image file") from exc
    if size == 0:
        raise VideoIOError(f"image {path} is empty (0 bytes): re-export or remove it")
    if head.startswith(_PNG_SIG):
        if b"IEND" not in tail:
            raise VideoIOError(f"image {path} is a truncated PNG (no IEND chunk): re-export or remove it")
    elif head.startswith(b"\xff\xd8"):
        if b"\xff\xd9" not in tail:
            raise VideoIOError(f"image {path} is a truncated JPEG (no end marker): re-export or remove it")


def _decode(path: Path) -> np.ndarray:
    quick_check(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise VideoIOError(f"image {path} cannot be read ({exc}): check the file") from exc
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise VideoIOError(
            f"image {path} cannot be decoded: it is corrupt or not an image "
            f"({', '.join(e.lstrip('.') for e in IMAGE_EXTS)})")
    return img


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if img.dtype.kind == "f":
        return (np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if img.dtype.kind in "iu":
        info = np.iinfo(img.dtype)
        return (np.clip(img, 0, info.max).astype(np.float64) / info.max * 255.0 + 0.5).astype(np.uint8)
    raise VideoIOError(f"unsupported image sample type {img.dtype}")


def _to_float(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    if img.dtype.kind == "f":
        return np.clip(np.nan_to_num(img.astype(np.float32)), 0.0, 1.0)
    if img.dtype.kind in "iu":
        info = np.iinfo(img.dtype)
        return (np.clip(img, 0, info.max).astype(np.float64) / info.max).astype(np.float32)
    raise VideoIOError(f"unsupported image sample type {img.dtype}")


def to_rgb_uint8(img: np.ndarray) -> np.ndarray:
    """Normalise a decoded OpenCV image (gray, gray+alpha, BGR, BGRA; any depth) to RGB uint8."""
    img = _to_uint8(img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    ch = img.shape[2]
    if ch == 1:
        return cv2.cvtColor(img[..., 0], cv2.COLOR_GRAY2RGB)
    if ch == 2:
        return cv2.cvtColor(np.ascontiguousarray(img[..., 0]), cv2.COLOR_GRAY2RGB)
    if ch == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a still image as ``uint8`` RGB ``HxWx3`` (see module doc for accepted inputs)."""
    return to_rgb_uint8(_decode(Path(path)))


def gray_or_alpha(img: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """The first step of reading an alpha or a mask: a single channel, or an alpha channel that
    varies, is the answer (float32 0..1); otherwise ``(None, colour channels)``."""
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        return _to_float(img), img
    ch = img.shape[2]
    if ch in (2, 4):
        a = img[..., ch - 1]
        if a.min() != a.max():
            return _to_float(np.ascontiguousarray(a)), img
        img = img[..., : ch - 1]
    return None, img


def alpha_from_array(img: np.ndarray) -> np.ndarray:
    """A decoded OpenCV image -> float32 ``HxW`` 0..1 alpha (see :func:`read_alpha`)."""
    done, img = gray_or_alpha(img)
    return done if done is not None else _to_float(img.max(axis=2))


def read_alpha(path: str | os.PathLike) -> np.ndarray:
    """Read an alpha matte as ``float32`` ``HxW`` in 0..1.

    Gray images are used directly; RGBA images use their alpha channel unless it is constant;
    otherwise the largest colour channel is used (a gray matte saved as RGB has equal channels).
    """
    return alpha_from_array(_decode(Path(path)))


def read_raw(path: str | os.PathLike) -> np.ndarray:
    """Decode an image without any conversion (OpenCV channel order, native depth)."""
    return _decode(Path(path))


def alpha_to_array(alpha: np.ndarray, bits: int = 8) -> np.ndarray:
    """float 0..1 (or uint8/uint16 already quantised) ``HxW`` -> uint8/uint16 array to encode."""
    if bits not in (8, 16):
        raise ConfigError(f"alpha PNG bit depth must be 8 or 16, got {bits}")
    a = np.asarray(alpha)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ConfigError(f"alpha must be a HxW array, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a if bits == 8 else a.astype(np.uint16) * 257
    if a.dtype == np.uint16:
        return a if bits == 16 else ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    scale = 255.0 if bits == 8 else 65535.0
    q = np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0) * scale + 0.5
    return q.astype(np.uint8 if bits == 8 else np.uint16)


def encode_png(arr: np.ndarray, compression: int = 3) -> bytes:
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:  # pragma: no cover - OpenCV only fails on impossible arrays
        raise VideoIOError(f"could not encode a {arr.shape} {arr.dtype} array as PNG")
    return buf.tobytes()


def write_alpha_png(path: str | os.PathLike, alpha: np.ndarray, bits: int = 8) -> Path:
    """Write an alpha matte (float 0..1 ``HxW``) as a gray 8- or 16-bit PNG, atomically."""
    path = Path(path)
    write_bytes_atomic(path, encode_png(alpha_to_array(alpha, bits)))
    return path


def write_image(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> Path:
    """Write an RGB uint8 image (PNG, JPEG or WebP by extension), atomically."""
    path = Path(path)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or rgb.dtype != np.uint8:
        raise ConfigError(f"expected an HxWx3 uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    code = cv2.COLOR_RGB2BGR if rgb.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
    bgr = cv2.cvtColor(rgb, code)
    ext = path.suffix.lower()
    if ext == ".png":
        data = encode_png(bgr)
    elif ext in (".jpg", ".jpeg"):
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        data = buf.tobytes()
    elif ext == ".webp":
        ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
        data = buf.tobytes()
    else:
        raise ConfigError(f"cannot write images with extension {ext!r}: use .png, .jpg or .webp")
    write_bytes_atomic(path, data)
    return path
