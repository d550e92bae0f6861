"""Atomic writers: alpha PNG sequences and videos (H.264 MP4, ProRes 4444 MOV, VP9 WebM with alpha).

Every file is written under a hidden temporary name beside its target and renamed onto the
final name only when it is complete, so a crash never leaves a file that looks finished.
Video writers finalise what was written when the ``with`` block ends with an exception (a
failure during work leaves a usable, shorter file); :meth:`VideoWriter.abort` discards instead.
"""
from __future__ import annotations

import contextlib
import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from mamakit.errors import ConfigError, DependencyError, VideoIOError
from mamakit.fsutil import atomic_path, tmp_name
from mamakit.io.images import alpha_to_array, encode_png

log = logging.getLogger(__name__)

#: extension -> (encoder, pixel format, carries alpha, encoder options)
VIDEO_FORMATS: dict[str, tuple[str, str, bool, dict]] = {
    ".mp4": ("libx264", "yuv420p", False, {"preset": "veryfast", "crf": "18"}),
    ".mkv": ("libx264", "yuv420p", False, {"preset": "veryfast", "crf": "18"}),
    ".mov": ("prores_ks", "yuva444p10le", True, {"profile": "4444", "alpha_bits": "16"}),
    ".webm": ("libvpx-vp9", "yuva420p", True,
              {"crf": "24", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1", "auto-alt-ref": "0"}),
}
ALPHA_VIDEO_EXTS = tuple(k for k, v in VIDEO_FORMATS.items() if v[2])


def _check_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise ConfigError(f"invalid output frame name {name!r}: names must be plain file stems")
    return name


def _write_file_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


class AlphaPngWriter:
    """Writes alpha mattes as ``DIR/<name>.png`` (8- or 16-bit gray), each file atomically.

    ``name`` is the input frame's stem (image folders) or ``None`` for zero-padded indices.
    """

    def __init__(self, folder: str | os.PathLike, bits: int = 8, digits: int = 5) -> None:
        if bits not in (8, 16):
            raise ConfigError(f"alpha PNG bit depth must be 8 or 16, got {bits}")
        self.folder = Path(folder)
        self.bits = bits
        self.digits = digits
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"output {self.folder} is a file, not a folder: choose a folder for the PNG sequence")
        parent = self.folder.parent
        if not parent.is_dir():
            raise ConfigError(f"output folder {parent} does not exist: create it first or choose another path")
        self.folder.mkdir(exist_ok=True)
        if not os.access(self.folder, os.W_OK):
            raise ConfigError(f"output folder {self.folder} is not writable: choose a folder you can write to")
        self.count = 0
        self.written: list[Path] = []

    def write(self, alpha: np.ndarray, name: str | None = None, frame: np.ndarray | None = None) -> Path:
        stem = _check_name(name) if name is not None else f"{self.count:0{self.digits}d}"
        path = self.folder / f"{stem}.png"
        _write_file_atomic(path, encode_png(alpha_to_array(alpha, self.bits)))
        self.count += 1
        self.written.append(path)
        return path

    def close(self) -> None:
        pass

    def abort(self) -> None:
        for p in self.written:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self.written.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _even(n: int) -> int:
    return n + (n % 2)


class VideoWriter:
    """Encode RGB (``.mp4``/``.mkv``: H.264) or RGBA (``.mov``: ProRes 4444, ``.webm``: VP9) video.

    ``write(frame, alpha=None)``: ``frame`` is ``HxWx3`` uint8 RGB or ``HxWx4`` RGBA; for alpha
    formats ``alpha`` (float 0..1 or uint8 ``HxW``) becomes the alpha channel (default opaque).
    H.264 with 4:2:0 needs even sizes: odd sizes are padded by one replicated row/column
    (the file is then one pixel wider/taller). ProRes and VP9 keep odd sizes. A ``.mov`` whose
    width is not a multiple of 16 is written as lossless PNG-in-MOV (FFmpeg's ProRes encoder
    is unreliable at such widths).
    The file appears under its final name only on :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], *,
                 crf: int | None = None, options: dict | None = None) -> None:
        import av

        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in VIDEO_FORMATS:
            raise ConfigError(f"cannot write video with extension {ext or '(none)'!r}: "
                              f"use {', '.join(VIDEO_FORMATS)}")
        codec, pix_fmt, self.has_alpha, opts = VIDEO_FORMATS[ext]
        if codec == "prores_ks" and int(size[0]) % 16:
            # FFmpeg's prores_ks reads uninitialised memory when the width is not a multiple of
            # 16 (measured: random whole-frame errors of up to 70/255 on a flat frame, different
            # on every run). Such widths get lossless PNG-in-MOV instead, which editors also read.
            codec, pix_fmt, opts = "png", "rgba", {}
        if codec not in av.codecs_available:
            raise DependencyError(f"this PyAV build has no {codec} encoder needed for {ext} output: "
                                  "install the PyAV wheel from PyPI (`pip install -U av`) or choose another format")
        if self.path.exists() and self.path.is_dir():
            raise ConfigError(f"output {self.path} is a folder, not a file: choose a file name ending in {ext}")
        if not self.path.parent.is_dir():
            raise ConfigError(f"output folder {self.path.parent} does not exist: create it first")
        if not os.access(self.path.parent, os.W_OK):
            raise ConfigError(f"output folder {self.path.parent} is not writable: choose a folder you can write to")
        w, h = int(size[0]), int(size[1])
        if w <= 0 or h <= 0:
            raise ConfigError(f"invalid video size {w}x{h}")
        if not fps or fps <= 0:
            raise ConfigError(f"invalid frame rate {fps!r}: pass a positive fps")
        self.size = (w, h)
        self.fps = float(fps)
        self._pad = codec == "libx264" and bool(w % 2 or h % 2)  # x264 4:2:0 needs even sizes
        opts = dict(opts)
        if crf is not None and "crf" in opts:
            opts["crf"] = str(int(crf))
        opts.update(options or {})
        self._tmp = tmp_name(self.path)
        try:
            self._container = av.open(str(self._tmp), mode="w")
            rate = Fraction(self.fps).limit_denominator(1001)
            stream = self._container.add_stream(codec, rate=rate, options=opts)
            stream.width, stream.height = (_even(w), _even(h)) if self._pad else (w, h)
            stream.pix_fmt = pix_fmt
            stream.time_base = Fraction(1, 1) / rate
            self._stream = stream
        except Exception as exc:
            self._cleanup()
            raise VideoIOError(f"cannot create video {self.path} ({exc}): check the path and format") from exc
        self.count = 0
        self._closed = False

    # ---------------------------------------------------------------------------------------
    def _as_rgba_or_rgb(self, frame: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, str]:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] not in (3, 4):
            raise ConfigError(f"video frames must be HxWx3 (RGB) or HxWx4 (RGBA) uint8, got {frame.shape} {frame.dtype}")
        h, w = frame.shape[:2]
        if (w, h) != self.size:
            raise ConfigError(f"frame is {w}x{h} but the video {self.path.name} is {self.size[0]}x{self.size[1]}")
        if not self.has_alpha:
            if alpha is not None:
                raise ConfigError(f"{self.path.suffix} carries no alpha: use .mov (ProRes 4444) or .webm (VP9)")
            return np.ascontiguousarray(frame[..., :3]), "rgb24"
        if alpha is not None:
            a = alpha_to_array(alpha, 8)
            if a.shape != (h, w):
                raise ConfigError(f"alpha is {a.shape[1]}x{a.shape[0]} but the frame is {w}x{h}")
            rgba = np.concatenate([frame[..., :3], a[..., None]], axis=2)
        elif frame.shape[2] == 4:
            rgba = frame
        else:
            rgba = np.concatenate([frame, np.full((h, w, 1), 255, np.uint8)], axis=2)
        return np.ascontiguousarray(rgba), "rgba"

    def write(self, frame: np.ndarray, alpha: np.ndarray | None = None) -> None:
        import av

        if self._closed:
            raise VideoIOError(f"video {self.path} is already closed")
        arr, fmt = self._as_rgba_or_rgb(frame, alpha)
        if self._pad:
            h, w = arr.shape[:2]
            arr = np.pad(arr, ((0, _even(h) - h), (0, _even(w) - w), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(arr, format=fmt)
        vf.pts = self.count
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.count += 1

    def close(self) -> Path:
        """Flush the encoder and move the file onto its final name."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        except Exception as exc:
            self._cleanup()
            raise VideoIOError(f"could not finish video {self.path} ({exc})") from exc
        if self.count == 0:
            self._cleanup()
            log.warning("no frames written: %s not created", self.path)
            return self.path
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Discard the output: the temporary file is deleted, the final name never appears."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self._container.close()
        self._cleanup()

    def _cleanup(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # a failure during work: finalise what was written so it stays usable
        try:
            self.close()
        except Exception:
            if exc_type is None:
                raise
            self.abort()


class AlphaVideoSink:
    """Alpha mattes to a video: RGBA (``.mov``/``.webm``) or a gray matte video (``.mp4``/``.mkv``)."""

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]) -> None:
        self.writer = VideoWriter(path, fps, size)
        self.path = self.writer.path
        self.count = 0

    def write(self, alpha: np.ndarray, name: str | None = None, frame: np.ndarray | None = None) -> None:
        a8 = alpha_to_array(alpha, 8)
        if self.writer.has_alpha:
            rgb = frame if frame is not None else np.repeat(a8[..., None], 3, axis=2)
            self.writer.write(rgb, a8)
        else:
            self.writer.write(np.repeat(a8[..., None], 3, axis=2))
        self.count += 1

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.writer.__exit__(*exc)


def open_alpha_sink(path: str | os.PathLike, fps: float | None = None, size: tuple[int, int] | None = None,
                    bits: int = 8):
    """An alpha sink chosen by ``path``: no extension (or an existing folder) -> PNG sequence
    (:class:`AlphaPngWriter`), ``.mov``/``.webm`` -> RGBA video, ``.mp4``/``.mkv`` -> gray matte video.

    Every sink has ``write(alpha, name=None, frame=None)``, ``close()``, ``abort()`` and is a
    context manager.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if path.is_dir() or not ext:
        return AlphaPngWriter(path, bits=bits)
    if ext in VIDEO_FORMATS:
        if size is None or fps is None:
            raise ConfigError(f"writing {path} needs the frame size and fps")
        return AlphaVideoSink(path, fps, size)
    raise ConfigError(f"unknown alpha output {path}: use a folder (PNG sequence), .mov, .webm or .mp4")
