"""Pluggable mask (guide) providers for the runtime.

Every provider answers ``get(index, name, frame) -> float32 HxW 0..1 at the frame's size | None``
(``None``: no mask for this frame, the student guides itself with its previous alpha).

* :class:`FileMasks` — a folder of per-frame masks or one first-frame mask file (:mod:`mamakit.io`);
  a folder shorter than the video warns once and the rest is guided by the previous alpha.
* :class:`SegmenterMasks` — a real CPU person/salient segmenter, run every ``every`` frames:
  MediaPipe's selfie segmenter (``mediapipe``, model shipped inside its wheel) or any ONNX
  segmentation model given by path (single-image models with a 1- or 2-channel output, and
  RVM-style recurrent matting graphs with ``r1i..`` / ``downsample_ratio`` inputs).
* :class:`PromptedMasks` — a SAM2-Matte bundle with a point/box prompt: its alpha (low
  resolution, tracked over time) guides the student (two-stage matting).
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from mamakit.errors import ConfigError, DependencyError

log = logging.getLogger(__name__)


class MaskProvider:
    description = "masks"
    #: the provider gives a mask on (almost) every frame
    dense = False

    def get(self, index: int, name: str | None, frame: np.ndarray) -> np.ndarray | None:  # pragma: no cover
        raise NotImplementedError

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


class FileMasks(MaskProvider):
    """Masks from files (``mamakit.io.open_masks``): a folder or a single first-frame mask."""

    def __init__(self, path: str | Path, frame_names: list[str] | None = None, n_frames: int | None = None):
        from mamakit.io import open_masks

        self.path = Path(path)
        self.src = open_masks(path, frame_names=frame_names)
        self.first_only = bool(getattr(self.src, "first_frame_only", False))
        self.dense = not self.first_only
        self.description = f"{'first-frame mask' if self.first_only else 'mask folder'} {self.path}"
        self._warned = False
        if n_frames and not self.first_only:
            msg = self.src.mismatch(n_frames) if hasattr(self.src, "mismatch") else None
            if msg:
                self._warned = True
                log.warning("%s; frames without a mask are guided by the previous alpha", msg)

    def get(self, index, name, frame):
        h, w = frame.shape[:2]
        m = self.src.get(index, name, (w, h))
        if m is None and self.dense and not self._warned:
            self._warned = True
            log.warning("mask folder %s has no mask for frame %s (%s); from here on frames without a mask "
                        "are guided by the previous alpha", self.path, index, name or "")
        return m

    def close(self):
        close = getattr(self.src, "close", None)
        if close:
            close()


# -- segmenters ---------------------------------------------------------------------------------------
class _MediaPipeSelfie:
    name = "mediapipe-selfie"

    def __init__(self):
        try:
            from mediapipe.python.solutions import selfie_segmentation
        except Exception as exc:  # ImportError, or mediapipe's own init failure (protobuf versions)
            raise DependencyError(
                "MediaPipe's selfie segmenter is not usable here: install it with "
                f"`pip install \"mamakit[segment]\"` or pass --segmenter MODEL.onnx ({exc})") from exc
        self._seg = selfie_segmentation.SelfieSegmentation(model_selection=1)  # landscape model, 256x144

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        res = self._seg.process(frame)
        m = res.segmentation_mask
        if m is None:
            return np.zeros(frame.shape[:2], np.float32)
        return np.asarray(m, np.float32)

    def close(self):
        self._seg.close()


class _OnnxSegmenter:
    """Any ONNX segmentation/matting graph: picks the layout from its inputs."""

    def __init__(self, path: Path, provider: str = "auto", threads: int | None = None, size: int = 320):
        from .providers import create_ort_session

        if not path.is_file():
            raise ConfigError(f"segmenter model {path} does not exist: pass an ONNX person/salient segmentation "
                              "model, or `mediapipe`")
        self.name = f"onnx:{path.name}"
        self.sess, self.provider = create_ort_session(path, provider, threads)
        ins = self.sess.get_inputs()
        names = [i.name for i in ins]
        self.recurrent = [n for n in names if n.startswith("r") and n.endswith("i") and n[1:-1].isdigit()]
        self.ratio = "downsample_ratio" if "downsample_ratio" in names else None
        self.image_in = next(i for i in ins if i.name not in self.recurrent and i.name != self.ratio)
        shape = list(self.image_in.shape)
        self.nhwc = len(shape) == 4 and shape[-1] == 3
        hw = shape[1:3] if self.nhwc else shape[2:4]
        self.fixed = tuple(hw) if all(isinstance(d, int) for d in hw) else None
        self.size = size
        outs = [o.name for o in self.sess.get_outputs()]
        self.out = "pha" if "pha" in outs else outs[0]
        self.state: dict[str, np.ndarray] = {}
        self.reset()

    def reset(self):
        self.state = {n: np.zeros((1, 1, 1, 1), np.float32) for n in self.recurrent}

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        if self.fixed:
            th, tw = self.fixed
        elif self.recurrent:  # matting graphs with a refiner: run at <= size*1.6 on the long side
            s = min(1.0, self.size * 1.6 / max(h, w))
            th, tw = max(2, round(h * s)), max(2, round(w * s))
        else:  # dynamic single-image model: longest side = size, multiples of 32
            s = self.size / max(h, w)
            th, tw = max(32, round(h * s / 32) * 32), max(32, round(w * s / 32) * 32)
        img = frame if (th, tw) == (h, w) else cv2.resize(frame, (tw, th), interpolation=cv2.INTER_AREA)
        x = img.astype(np.float32) * (1.0 / 255.0)
        x = x[None] if self.nhwc else x.transpose(2, 0, 1)[None]
        feeds = {self.image_in.name: np.ascontiguousarray(x), **self.state}
        if self.ratio:
            feeds[self.ratio] = np.array([min(1.0, 256.0 / max(th, tw))], np.float32)
        outs = self.sess.run(None, feeds)
        names = [o.name for o in self.sess.get_outputs()]
        res = dict(zip(names, outs))
        for n in self.recurrent:
            self.state[n] = res[n[:-1] + "o"]
        y = np.asarray(res[self.out], np.float32)
        y = y[0]
        if y.ndim == 3:
            if y.shape[-1] in (1, 2) and y.shape[0] not in (1, 2):
                y = y.transpose(2, 0, 1)
            if y.shape[0] == 2:  # two-class logits / probabilities: person = class 1
                e = np.exp(y - y.max(0, keepdims=True))
                y = e[1] / e.sum(0)
            else:
                y = y[0]
        if y.min() < -0.01 or y.max() > 1.01:  # logits
            y = 1.0 / (1.0 + np.exp(-y))
        if y.shape != (h, w):
            y = cv2.resize(y, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(y, 0, 1)

    def close(self):
        self.sess = None


def build_segmenter(spec: str, provider: str = "auto", threads: int | None = None):
    """``mediapipe`` or a path to an ONNX model -> a callable ``frame -> float32 HxW``."""
    if spec.lower() in ("mediapipe", "mediapipe-selfie", "selfie"):
        return _MediaPipeSelfie()
    return _OnnxSegmenter(Path(spec), provider=provider, threads=threads)


def default_segmenter():
    """The segmenter ``--source 0`` uses when no masks are given: MediaPipe's selfie segmenter when
    it is installed, else None (the caller warns and the student guides itself)."""
    try:
        return _MediaPipeSelfie()
    except DependencyError as exc:
        log.debug("no default segmenter: %s", exc)
        return None


class SegmenterMasks(MaskProvider):
    """A segmenter run on every ``every``-th frame (frames in between reuse the last mask)."""

    dense = True

    def __init__(self, segmenter, every: int = 1):
        if every < 1:
            raise ConfigError(f"--segment-every must be >= 1, got {every}")
        self.seg = segmenter
        self.every = every
        self.description = f"segmenter {segmenter.name}" + (f" every {every} frames" if every > 1 else "")
        self._last: np.ndarray | None = None
        self._n = 0

    def get(self, index, name, frame):
        if self._last is None or self._last.shape != frame.shape[:2] or self._n % self.every == 0:
            self._last = self.seg(frame)
        self._n += 1
        return self._last

    def reset(self):
        self._n = 0
        r = getattr(self.seg, "reset", None)
        if r:
            r()

    def close(self):
        self.seg.close()


class PromptedMasks(MaskProvider):
    """A SAM2-Matte bundle, prompted with points/box on one frame, tracking after it; its alpha
    (from its own low processing size, mapped to the frame's size) guides the student."""

    dense = True

    def __init__(self, bundle, *, points=None, labels=None, box=None, prompt_frame: int = 0,
                 provider: str = "auto", threads: int | None = None, init_mask: MaskProvider | None = None):
        from .sessions import open_session

        self.session = open_session(bundle, provider=provider, threads=threads)
        self.provider = self.session.provider
        if points is None and box is None and init_mask is None and self.session.needs_prompt:
            raise ConfigError(f"the guide bundle {getattr(self.session.bundle, 'root', bundle)} needs a prompt: "
                              "pass --prompt X,Y (or --prompt box:X0,Y0,X1,Y1)")
        self.points, self.labels, self.box = points, labels, box
        self.prompt_frame = int(prompt_frame)
        self.init_mask = init_mask
        self.description = (f"{getattr(self.session, 'kind', 'guide')} guide bundle "
                            f"{getattr(self.session.bundle, 'root', bundle)} on {self.provider}")
        self._n = 0
        self._started = False
        self._pending = None

    def set_prompt(self, *, points=None, labels=None, box=None) -> None:
        """A new prompt (e.g. clicked in the preview, any thread): applied from the next frame on."""
        self._pending = (points, labels, box)

    def click(self, x: float, y: float, negative: bool = False) -> None:
        self.set_prompt(points=np.array([[x, y]], np.float32), labels=np.array([0 if negative else 1], np.int32))

    def get(self, index, name, frame):
        n = self._n
        self._n += 1
        pending, self._pending = self._pending, None
        if pending is not None:
            self.points, self.labels, self.box = pending
            self.prompt_frame = n
            self._started = False
            self.session.reset()
        if not self._started:
            if n < self.prompt_frame:
                return None
            if self.points is not None or self.box is not None:
                self.session.set_prompt(points=self.points, labels=self.labels, box=self.box)
                self._started = True
            elif self.init_mask is not None:
                m = self.init_mask.get(index, name, frame)
                self._started = True
                return self.session.step(frame, m)
        return self.session.step(frame)

    def reset(self):
        self.session.reset()
        self._started = False

    def close(self):
        self.session.close()


def parse_prompt(spec: str | None, frame_hint: str = "--prompt"):
    """Prompt text -> ``(points, labels, box)`` in source pixels (None when ``spec`` is empty).

    Items separated by ``;``: ``X,Y`` or ``point=X,Y`` (positive point), ``-X,Y`` or ``neg=X,Y``
    (negative point), ``box=X0,Y0,X1,Y1`` or ``box:X0,Y0,X1,Y1`` (at most one box).
    """
    if not spec:
        return None, None, None
    pts, labels, box = [], [], None
    try:
        for part in str(spec).split(";"):
            part = part.strip()
            if not part:
                continue
            low = part.lower()
            if low.startswith(("box=", "box:")):
                vals = [float(v) for v in part[4:].split(",")]
                if len(vals) != 4 or box is not None:
                    raise ValueError
                box = np.array(vals, np.float32)
                continue
            neg = False
            for prefix, is_neg in (("point=", False), ("pos=", False), ("neg=", True), ("-", True), ("+", False)):
                if low.startswith(prefix):
                    part, neg = part[len(prefix):], is_neg
                    break
            x, y = (float(v) for v in part.split(","))
            pts.append((x, y))
            labels.append(0 if neg else 1)
    except ValueError as exc:
        raise ConfigError(f"{frame_hint} {spec!r} is not 'X,Y' / 'point=X,Y' (';'-separated, 'neg=X,Y' negative) "
                          "or 'box=X0,Y0,X1,Y1' in source pixels") from exc
    if box is not None and (box[2] <= box[0] or box[3] <= box[1]):
        raise ConfigError(f"{frame_hint} box {box.tolist()} has zero area: give X0,Y0,X1,Y1 with X1 > X0 and Y1 > Y0")
    if not pts and box is None:
        raise ConfigError(f"{frame_hint} {spec!r} holds no point or box")
    points = np.array(pts, np.float32) if pts else None
    return points, (np.array(labels, np.int32) if pts else None), box


def check_prompt_inside(points, box, size: tuple[int, int], what: str = "--prompt") -> None:
    """A prompt outside the frame is an input error (exit 2)."""
    w, h = size
    if points is not None:
        for x, y in np.asarray(points).reshape(-1, 2):
            if not (0 <= x < w and 0 <= y < h):
                raise ConfigError(f"{what} point ({x:g}, {y:g}) is outside the {w}x{h} frame")
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise ConfigError(f"{what} box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the {w}x{h} frame")
