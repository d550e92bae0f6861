"""Streaming frame sources: video files, image folders, webcams, network streams, GStreamer.

Every source is an iterable of :class:`Frame` (``image`` is ``HxWx3`` uint8 RGB) that decodes one
frame at a time and never holds a whole video in memory. :func:`open_source` picks the class
from the spec and opens it eagerly: everything that can be checked before work (the path
exists, the container opens, a first frame decodes, the camera exists) is checked in the
constructor and raises :class:`~mamakit.errors.VideoIOError` (exit 2). A failure after the first
frame raises :class:`~mamakit.errors.StreamError` (exit 1).
"""
from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from mamakit.errors import StreamError, VideoIOError
from mamakit.io.images import IMAGE_EXTS, list_images, quick_check, read_image

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".gif")
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")


@dataclass
class Frame:
    """One decoded frame. ``name`` is the file stem (image folders) or a zero-padded index."""

    index: int
    name: str
    image: np.ndarray  # HxWx3 uint8 RGB


class FrameSource:
    """Base class: an iterable of :class:`Frame` and a context manager.

    Attributes: ``size`` (w, h), ``fps`` (float or None), ``count`` (int or None when unknown),
    ``is_live`` (camera / network stream), ``spec`` (what was opened), ``names`` (frame names
    when known up front, else None).
    """

    size: tuple[int, int]
    fps: float | None = None
    count: int | None = None
    is_live: bool = False
    names: list[str] | None = None
    kind: str = "source"

    def __init__(self, spec) -> None:
        self.spec = spec
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        if self.count is None:
            raise TypeError(f"{self.kind} {self.spec} has no known frame count")
        return self.count

    def __repr__(self) -> str:
        w, h = self.size
        return f"{type(self).__name__}({self.spec!r}, {w}x{h}, fps={self.fps}, count={self.count})"

    def _check_size(self, img: np.ndarray, index: int) -> np.ndarray:
        h, w = img.shape[:2]
        if (w, h) != tuple(self.size):
            raise StreamError(
                f"frame {index} of {self.spec} is {w}x{h} but the first frame is "
                f"{self.size[0]}x{self.size[1]}: all frames of a source must have one size")
        return img


# ------------------------------------------------------------------------------------------------
class ImageFolderSource(FrameSource):
    """A folder of still images in natural sort order; frame names are the file stems."""

    kind = "image folder"

    def __init__(self, folder: str | os.PathLike, fps: float | None = None) -> None:
        super().__init__(str(folder))
        self.paths = list_images(folder)
        for p in self.paths:  # cheap: header/trailer only, catches truncated files before work
            quick_check(p)
        first = read_image(self.paths[0])
        self._first = first
        self.size = (first.shape[1], first.shape[0])
        self.count = len(self.paths)
        self.names = [p.stem for p in self.paths]
        self.fps = fps

    def __iter__(self) -> Iterator[Frame]:
        for i, p in enumerate(self.paths):
            if i == 0 and self._first is not None:
                img = self._first
            else:
                try:
                    img = read_image(p)
                except VideoIOError as exc:
                    raise StreamError(str(exc)) from exc
            yield Frame(i, self.names[i], self._check_size(img, i))
        self._first = None


class ImageFileSource(FrameSource):
    """A single still image as a one-frame source."""

    kind = "image"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(str(path))
        self.image = read_image(path)
        self.size = (self.image.shape[1], self.image.shape[0])
        self.count = 1
        self.names = [Path(path).stem]

    def __iter__(self) -> Iterator[Frame]:
        yield Frame(0, self.names[0], self.image)


# ------------------------------------------------------------------------------------------------
def _av_error_text(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


class _PyAVSource(FrameSource):
    """Common decoding loop over PyAV (files and URLs)."""

    _open_options: dict | None = None
    _timeout: tuple[float, float] | float | None = None

    def _open(self):
        import av

        try:
            container = av.open(self._target, mode="r", options=self._open_options or {}, timeout=self._timeout)
        except Exception as exc:  # av.error.* (FFmpegError subclasses OSError/ValueError)
            raise VideoIOError(f"{self.kind} {self.spec} cannot be opened ({_av_error_text(exc)}): "
                               f"{self._hint}") from exc
        if not container.streams.video:
            container.close()
            raise VideoIOError(f"{self.kind} {self.spec} has no video stream: pass a video")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return container, stream

    def _setup(self) -> None:
        self._container, stream = self._open()
        self._stream = stream
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.count = int(stream.frames) if stream.frames else None
        self._gen = self._decode(self._container, stream)
        try:
            first = next(self._gen)
        except StopIteration:
            self.close()
            raise VideoIOError(f"{self.kind} {self.spec} has no decodable frames (zero-frame or corrupt video): "
                               f"{self._hint}") from None
        except StreamError as exc:
            self.close()
            why = _av_error_text(exc.__cause__) if exc.__cause__ is not None else str(exc)
            raise VideoIOError(f"{self.kind} {self.spec} cannot be decoded ({why}): {self._hint}") from exc
        self._first = first
        self.size = (first.shape[1], first.shape[0])
        self._used = False

    def _decode(self, container, stream) -> Iterator[np.ndarray]:
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except StreamError:
            raise
        except Exception as exc:
            raise StreamError(f"{self.kind} {self.spec} failed while decoding ({_av_error_text(exc)})") from exc

    def __iter__(self) -> Iterator[Frame]:
        if self._closed:
            raise StreamError(f"{self.kind} {self.spec} is closed")
        if self._used:  # a second pass re-opens the file (live streams cannot restart)
            if self.is_live:
                raise StreamError(f"{self.kind} {self.spec} is live and cannot be iterated twice")
            self._container.close()
            self._container, self._stream = self._open()
            gen = self._decode(self._container, self._stream)
        else:
            gen = self._prepend(self._first, self._gen)
            self._first = None
        self._used = True
        for i, img in enumerate(gen):
            yield Frame(i, f"{i:05d}", self._check_size(img, i))

    @staticmethod
    def _prepend(first, gen):
        yield first
        yield from gen

    def close(self) -> None:
        if getattr(self, "_container", None) is not None:
            try:
                self._container.close()
            except Exception:  # pragma: no cover
                pass
            self._container = None
        super().close()


class VideoFileSource(_PyAVSource):
    """A video file decoded with PyAV (mp4/mov/avi/mkv/webm, ...); frame names are ``00000``…"""

    kind = "video"
    _hint = "check that the file is a complete, supported video (mp4/mov/avi/mkv/webm)"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(str(path))
        path = Path(path)
        try:
            if path.stat().st_size == 0:
                raise VideoIOError(f"video {path} is empty (0 bytes): {self._hint}")
            with open(path, "rb"):
                pass
        except PermissionError as exc:
            raise VideoIOError(f"video {path} is not readable (permission denied): check its permissions") from exc
        self._target = str(path)
        self._setup()


class UrlSource(_PyAVSource):
    """A network stream (rtsp/rtmp/http/udp/...) read with PyAV, with a short open timeout."""

    kind = "stream"
    _hint = "check the URL, the network and that the stream is running"

    def __init__(self, url: str, open_timeout: float = 5.0, read_timeout: float = 10.0) -> None:
        super().__init__(url)
        self._target = url
        self._timeout = (float(open_timeout), float(read_timeout))
        scheme = url.split(":", 1)[0].lower()
        opts = {}
        if scheme in ("rtsp", "rtsps"):
            opts["rtsp_transport"] = "tcp"
        self._open_options = opts
        self.is_live = scheme not in ("http", "https")
        self._setup()
        if self.count is None:
            self.is_live = True


# ------------------------------------------------------------------------------------------------
class _CaptureSource(FrameSource):
    """OpenCV ``VideoCapture`` sources (webcam, GStreamer)."""

    is_live = True

    def _start(self, cap, what: str, hint: str) -> None:
        import cv2

        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            raise VideoIOError(f"{what} cannot be opened: {hint}")
        ok, bgr = cap.read()
        if not ok or bgr is None:
            cap.release()
            raise VideoIOError(f"{what} opened but delivered no frame: {hint}")
        self._cap = cap
        self._first = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self.size = (self._first.shape[1], self._first.shape[0])
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else None

    def __iter__(self) -> Iterator[Frame]:
        import cv2

        if self._cap is None:
            raise StreamError(f"{self.kind} {self.spec} is closed")
        i = 0
        if self._first is not None:
            yield Frame(0, "00000", self._first)
            self._first = None
            i = 1
        while self._cap is not None:
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                return
            yield Frame(i, f"{i:05d}", self._check_size(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), i))
            i += 1

    def close(self) -> None:
        if getattr(self, "_cap", None) is not None:
            self._cap.release()
            self._cap = None
        super().close()


class WebcamSource(_CaptureSource):
    """A camera by index through OpenCV. A missing camera raises VideoIOError before any work."""

    kind = "camera"

    def __init__(self, index: int, size: tuple[int, int] | None = None, fps: float | None = None) -> None:
        import cv2

        super().__init__(int(index))
        self._cap = None
        index = int(index)
        dev = Path(f"/dev/video{index}")
        if sys.platform.startswith("linux") and not dev.exists():  # V4L2: fail fast, no probing
            raise VideoIOError(f"camera {index} not found ({dev} does not exist): "
                               "plug a camera in or pass another index, a video file or a URL")
        cap = cv2.VideoCapture(index)
        if size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        self._start(cap, f"camera {index}", "check that it is connected and not used by another program")


class GStreamerSource(_CaptureSource):
    """A GStreamer pipeline string (ending in ``appsink``) through ``cv2.CAP_GSTREAMER``."""

    kind = "gstreamer pipeline"

    def __init__(self, pipeline: str) -> None:
        import cv2

        super().__init__(pipeline)
        self._cap = None
        if not gstreamer_available():
            raise VideoIOError("this OpenCV build has no GStreamer support, so the GStreamer pipeline cannot be "
                               "opened: install an OpenCV built with GStreamer (e.g. the system/JetPack one) "
                               "or pass a video file, URL or camera index")
        cap = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        self._start(cap, f"GStreamer pipeline {pipeline!r}", "check the pipeline (it must end in appsink)")


def gstreamer_available() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


# ------------------------------------------------------------------------------------------------
_URL_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def classify_spec(spec) -> str:
    """``camera`` | ``url`` | ``gstreamer`` | ``path`` for a source spec."""
    if isinstance(spec, bool):
        raise VideoIOError(f"invalid source {spec!r}: pass a camera index, a path or a URL")
    if isinstance(spec, int):
        return "camera"
    s = str(spec).strip()
    if s.isdigit():
        return "camera"
    m = _URL_RE.match(s)
    if m and m.group(1).lower() != "file":
        return "url"
    if " ! " in s or s.startswith(("v4l2src", "nvarguscamerasrc", "videotestsrc", "filesrc", "rtspsrc", "uridecodebin")):
        return "gstreamer"
    return "path"


def open_source(spec, *, fps: float | None = None, open_timeout: float = 5.0) -> FrameSource:
    """Open a frame source from a spec.

    * ``0`` / ``"0"`` — webcam by index (OpenCV);
    * ``"rtsp://…"``, ``"http://…"`` … — network stream (PyAV, ``open_timeout`` seconds);
    * a string with `` ! `` — a GStreamer pipeline (OpenCV with GStreamer);
    * a folder — image sequence (png/jpg/tiff/webp/bmp; ``fps`` may be given);
    * a video file (mp4/mov/avi/mkv/webm/…) or a single image file.

    Raises :class:`VideoIOError` for anything that cannot be opened.
    """
    kind = classify_spec(spec)
    if kind == "camera":
        return WebcamSource(int(spec))
    if kind == "url":
        return UrlSource(str(spec).strip(), open_timeout=open_timeout)
    if kind == "gstreamer":
        return GStreamerSource(str(spec).strip())
    s = str(spec)
    if s.startswith("file://"):
        s = s[len("file://"):]
    path = Path(s).expanduser()
    if not path.exists():
        raise VideoIOError(f"input {path} does not exist: check the path (a video, image folder, camera index or URL)")
    if path.is_dir():
        return ImageFolderSource(path, fps=fps)
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return ImageFileSource(path)
    if ext in VIDEO_EXTS:
        return VideoFileSource(path)
    raise VideoIOError(
        f"input {path} has an unknown extension {ext or '(none)'!r}: pass a video "
        f"({', '.join(e.lstrip('.') for e in VIDEO_EXTS[:5])}), an image folder, a camera index or a URL")


def read_video_rgba(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decode a video as ``HxWx4`` uint8 RGBA frames, keeping its alpha channel when it has one
    (ProRes 4444, VP9 with alpha, PNG/QTRLE ...). VP9 alpha lives in side data that FFmpeg's
    native decoder drops, so VP9 is decoded with ``libvpx-vp9`` when this PyAV build has it.
    Opaque videos get alpha 255. Raises :class:`VideoIOError` when the file cannot be opened.
    """
    import av

    try:
        container = av.open(str(path))
    except Exception as exc:
        raise VideoIOError(f"video {path} cannot be opened ({_av_error_text(exc)})") from exc
    try:
        if not container.streams.video:
            raise VideoIOError(f"video {path} has no video stream")
        stream = container.streams.video[0]
        n = 0
        if stream.codec_context.name == "vp9" and "libvpx-vp9" in av.codecs_available:
            ctx = av.CodecContext.create("libvpx-vp9", "r")
            packets = (pkt for pkt in container.demux(stream))
            def frames():
                for pkt in packets:
                    yield from ctx.decode(pkt if pkt.size else None)
        else:
            def frames():
                yield from container.decode(stream)
        for frame in frames():
            yield frame.to_ndarray(format="rgba")
            n += 1
            if max_frames is not None and n >= max_frames:
                return
    finally:
        container.close()


def video_has_alpha(path: str | os.PathLike) -> bool:
    """Whether a video file carries an alpha channel (pixel format with alpha, or VP9/Matroska
    ``alpha_mode``). Raises :class:`VideoIOError` when it cannot be opened."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return False
            stream = container.streams.video[0]
            if str(stream.metadata.get("alpha_mode", stream.metadata.get("ALPHA_MODE", "0"))) == "1":
                return True
            fmt = stream.codec_context.pix_fmt or ""
            return fmt.startswith(("yuva", "rgba", "bgra", "argb", "abgr", "gbrap", "ya", "pal8"))
    except av.FFmpegError as exc:
        raise VideoIOError(f"video {path} cannot be opened ({_av_error_text(exc)})") from exc
