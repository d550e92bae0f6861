"""Outputs of ``mamakit run``: alpha (PNG sequence / alpha video), composite video, foreground
video with alpha, an OpenCV window, a virtual camera and the web preview.

Every sink has ``check()`` (before any work: paths, dependencies; raises InputError = exit 2 and
writes nothing), ``open(size, fps)``, ``write(result)`` and ``close()`` (finalises the file so it
plays, also after Ctrl-C or a lost stream). Files appear under their final names only when closed.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from mamakit.errors import ConfigError, DependencyError, require
from mamakit.fsutil import check_writable_dir

log = logging.getLogger(__name__)


def _fit(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Frames after a resolution change are scaled to the size the video was opened with."""
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    return cv2.resize(img, tuple(size), interpolation=cv2.INTER_AREA if img.shape[1] > size[0] else cv2.INTER_LINEAR)


class Sink:
    needs_composite = False
    needs_fgr = False
    name = "sink"

    def check(self) -> None:
        pass

    def open(self, size: tuple[int, int], fps: float) -> None:
        pass

    def write(self, res) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass


class AlphaSink(Sink):
    name = "alpha"

    def __init__(self, path: str):
        self.path = Path(path)
        self.w = None
        self.size = None

    def check(self):
        from mamakit.io import VIDEO_FORMATS

        check_writable_dir(self.path, "--alpha")
        ext = self.path.suffix.lower()
        if ext and ext not in VIDEO_FORMATS and not self.path.is_dir():
            raise ConfigError(f"--alpha {self.path}: use a folder (PNG sequence) or a video ({', '.join(VIDEO_FORMATS)})")
        if self.path.exists() and not self.path.is_dir() and not ext:
            raise ConfigError(f"--alpha {self.path} is a file: give a folder for the PNG sequence")

    def open(self, size, fps):
        from mamakit.io import open_alpha_sink

        self.size = size
        self.w = open_alpha_sink(self.path, fps=fps, size=size)
        self.video = self.path.suffix.lower() != "" and not self.path.is_dir()

    def write(self, res):
        a = res.alpha
        frame = res.frame
        if self.video and (a.shape[1], a.shape[0]) != tuple(self.size):
            a = _fit(a, self.size)
            frame = _fit(frame, self.size)
        self.w.write(a, name=res.name, frame=frame)

    def close(self):
        if self.w is not None:
            self.w.close()


class VideoSink(Sink):
    """``--composite OUT`` (RGB video) or ``--foreground OUT.mov|.webm`` (colour + alpha)."""

    def __init__(self, path: str, kind: str):
        self.path = Path(path)
        self.kind = kind
        self.name = kind
        self.needs_composite = kind == "composite"
        self.w = None

    def check(self):
        from mamakit.io import ALPHA_VIDEO_EXTS, VIDEO_FORMATS

        check_writable_dir(self.path, f"--{self.kind}")
        ext = self.path.suffix.lower()
        if self.kind == "foreground":
            if ext not in ALPHA_VIDEO_EXTS:
                raise ConfigError(f"--foreground {self.path}: needs a video that carries alpha: "
                                  f"{' or '.join(ALPHA_VIDEO_EXTS)} (ProRes 4444 / VP9)")
        elif ext not in VIDEO_FORMATS:
            raise ConfigError(f"--composite {self.path}: use a video file ({', '.join(VIDEO_FORMATS)})")
        if self.path.is_dir():
            raise ConfigError(f"--{self.kind} {self.path} is a folder: give a file name")

    def open(self, size, fps):
        from mamakit.io import VideoWriter

        self.size = size
        self.w = VideoWriter(self.path, fps, size)
        self._fg = None

    def write(self, res):
        if self.kind == "composite":
            self.w.write(_fit(res.composite, self.size))
            return
        from .composite import estimate_foreground

        if res.fgr is not None:
            fg = np.clip(res.fgr * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            self._fg = estimate_foreground(res.frame, res.alpha, out=self._fg if self._fg is not None
                                           and self._fg.shape[:2] == res.alpha.shape else None)
            fg = self._fg.astype(np.uint8)
        self.w.write(_fit(fg, self.size), _fit(res.alpha, self.size))

    def close(self):
        if self.w is not None:
            self.w.close()


def gui_available() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return "NONE" not in line.upper()
    return False


class ShowSink(Sink):
    """An OpenCV window with the composite; a click prompts a SAM2-Matte guide; q/Esc stops."""

    name = "show"
    needs_composite = True

    def __init__(self, prompt_fn=None):
        self.prompt_fn = prompt_fn
        self.title = "mamakit"

    def check(self):
        if not gui_available():
            raise DependencyError("--show needs an OpenCV with a GUI, but this one is headless: "
                                  "`pip install opencv-python` (instead of opencv-python-headless), "
                                  "or use --serve PORT for a browser preview")

    def open(self, size, fps):
        cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        if self.prompt_fn is not None:
            def on_mouse(event, x, y, flags, _):
                if event == cv2.EVENT_LBUTTONDOWN:
                    self.prompt_fn(float(x), float(y), bool(flags & cv2.EVENT_FLAG_SHIFTKEY))
            cv2.setMouseCallback(self.title, on_mouse)

    def write(self, res):
        cv2.imshow(self.title, cv2.cvtColor(res.composite, cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF in (27, ord("q")):
            raise KeyboardInterrupt

    def close(self):
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


class VcamSink(Sink):
    """A virtual camera (pyvirtualcam: v4l2loopback on Linux, OBS on Windows/macOS)."""

    name = "vcam"
    needs_composite = True

    def __init__(self):
        self.cam = None

    def check(self):
        self.pvc = require("pyvirtualcam", "camera", "--vcam")

    def open(self, size, fps):
        self.size = size
        try:
            self.cam = self.pvc.Camera(width=size[0], height=size[1], fps=fps or 30)
        except Exception as exc:  # no v4l2loopback device / OBS: pyvirtualcam raises RuntimeError
            raise DependencyError(f"--vcam: no virtual camera device is available ({exc}): load v4l2loopback "
                                  "(Linux) or install OBS (Windows/macOS)") from exc
        log.info("virtual camera: %s", self.cam.device)

    def write(self, res):
        self.cam.send(np.ascontiguousarray(_fit(res.composite, self.size)))

    def close(self):
        if self.cam is not None:
            self.cam.close()


class ServeSink(Sink):
    name = "serve"
    needs_composite = True

    def __init__(self, port: int, stats_fn=None, prompt_fn=None):
        self.port, self.stats_fn, self.prompt_fn = port, stats_fn, prompt_fn
        self.server = None

    def check(self):
        from .serve import PreviewServer

        self.server = PreviewServer(self.port, stats_fn=self.stats_fn, prompt_fn=self.prompt_fn)
        log.info("preview: %s", self.server.url)

    def write(self, res):
        self.server.publish(res.composite)

    def close(self):
        if self.server is not None:
            self.server.close()
