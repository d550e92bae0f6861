"""``Matter``: the user-facing runtime object — a session plus state policy, one frame or a stream.

    from mamakit.runtime import Matter
    m = Matter.load("bundle/")                  # verifies the bundle, picks the provider, logs it
    alpha = m.step(frame_rgb, mask)             # any size in, alpha at that size out
    for r in m.stream("video.mp4", masks="first_mask.png"):
        use(r.frame, r.alpha)                   # buffers are reused: copy to keep

State policy: the state starts at zero; it is reset on a scene cut (cheap thumbnail difference),
on a change of frame size, and by :meth:`reset`. The guide is the mask when the mask source has
one for the frame, otherwise the session's own previous alpha.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from mamakit.bundle import Bundle, load_bundle

from .composite import AlphaSmoother
from .pipeline import Pipeline, Result, SceneCutDetector, Stats
from .sessions import Session, open_session

log = logging.getLogger(__name__)


class Matter:
    def __init__(self, session: Session, *, scene_cut: float = 0.25, smooth: float = 0.0):
        self.session = session
        self._cut = SceneCutDetector(scene_cut)
        self.smoother = AlphaSmoother(smooth) if smooth > 0 else None
        self._size: tuple[int, int] | None = None
        self._n = 0
        self._prompt = None          # (points, labels, box) waiting for its frame
        self._prompt_frame = -1
        self._prompted = False

    @classmethod
    def load(cls, bundle: Bundle | str | os.PathLike, provider: str = "auto", threads: int | None = None, *,
             fit: str = "letterbox", scene_cut: float = 0.25, smooth: float = 0.0, spin: bool = False,
             announce: bool = True, stabilize: bool = True) -> "Matter":
        """Verify ``bundle`` (checksums first), open its session and log the provider that runs.
        ``stabilize=False`` switches off a student bundle's flow-carried stabiliser (docs/runtime.md)."""
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle)
        options = {"fit": fit, "spin": spin, "stabilize": stabilize} if bundle.kind == "student" else {}
        session = open_session(bundle, provider=provider, threads=threads, **options)
        if announce:
            log.info("provider: %s (%s bundle %s, %s, %dx%d)", session.provider, bundle.kind, Path(bundle.root).name,
                     bundle.precision, *bundle.processing_size)
        return cls(session, scene_cut=scene_cut, smooth=smooth)

    # -- properties ------------------------------------------------------------------------------
    @property
    def provider(self) -> str:
        return self.session.provider

    @property
    def bundle(self) -> Bundle:
        return self.session.bundle

    # -- prompts (sessions with needs_prompt, e.g. SAM2-Matte) ---------------------------------------
    def set_prompt(self, *, points=None, labels=None, box=None, frame: int | None = None) -> None:
        """Prompt in source pixels, applied on frame ``frame`` (None: the next frame). Thread-safe."""
        self._prompt_frame = -1 if frame is None else int(frame)
        self._prompt = (points, labels, box)

    def click(self, x: float, y: float, negative: bool = False) -> None:
        self.set_prompt(points=np.array([[x, y]], np.float32), labels=np.array([0 if negative else 1], np.int32))

    def apply_prompt(self, index: int, has_mask: bool = False) -> bool:
        """Hand a due prompt to the session; False while a session that needs one has none yet."""
        p = self._prompt
        if p is not None and (self._prompt_frame < 0 or index >= self._prompt_frame):
            self._prompt = None
            self.session.set_prompt(points=p[0], labels=p[1], box=p[2])
            self._prompted = True
        if has_mask:
            self._prompted = True
        return self._prompted or not self.session.needs_prompt

    # -- one frame at a time ---------------------------------------------------------------------
    def scene_cut(self, frame: np.ndarray) -> bool:
        # a prompted tracker keeps its memory across cuts (it handles the object leaving itself)
        return False if self.session.needs_prompt else self._cut(frame)

    def step(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """HxWx3 uint8 RGB (any size) -> float32 HxW alpha at that size (a new array)."""
        size = (frame.shape[1], frame.shape[0])
        reset = self.scene_cut(frame) or (self._size is not None and size != self._size)
        self._size = size
        if reset:
            self.session.reset()
            if self.smoother is not None:
                self.smoother.reset()
            if self.session.needs_prompt and self._prompted:
                # the tracker's memory is gone with the old frame size: it needs a new prompt
                log.warning("frame size changed: the tracked object is lost; prompt again")
                self._prompted = False
        index, self._n = self._n, self._n + 1
        if not self.apply_prompt(index, mask is not None):
            return np.zeros(frame.shape[:2], np.float32)
        alpha = self.session.step(frame, mask)
        if self.smoother is not None:
            alpha = self.smoother(alpha)
        return alpha

    def reset(self) -> None:
        self.session.reset()
        self._cut.reset()
        self._size = None
        self._n = 0
        if self.session.needs_prompt:
            self._prompted = False
        if self.smoother is not None:
            self.smoother.reset()

    # -- streams ---------------------------------------------------------------------------------
    def pipeline(self, source, masks=None, *, live: bool | None = None, post=None, want_fgr: bool = False,
                 queue_size: int = 2, stats: Stats | None = None) -> Pipeline:
        from .masks import FileMasks, MaskProvider

        if isinstance(source, (str, int, os.PathLike)):
            from mamakit.io import open_source

            source = open_source(str(source) if isinstance(source, os.PathLike) else source)
        if live is None:
            live = bool(getattr(source, "is_live", False))
        if masks is not None and not isinstance(masks, MaskProvider):
            names = getattr(source, "names", None)
            masks = FileMasks(masks, frame_names=names, n_frames=getattr(source, "count", None))
        self.reset()
        return Pipeline(self, source, masks, live=live, post=post, want_fgr=want_fgr, queue_size=queue_size,
                        stats=stats)

    def stream(self, source, masks=None, *, live: bool | None = None, want_fgr: bool = False) -> Iterator[Result]:
        """Process a source (spec, FrameSource or iterable of frames) in the threaded pipeline.

        Yields :class:`Result` in order (offline) or newest-first with drops (live). Arrays in a
        result are reused once the next one is requested: copy what you keep.
        """
        yield from self.pipeline(source, masks, live=live, want_fgr=want_fgr)

    def close(self) -> None:
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
