"""The teacher stage: turns real videos plus coarse masks into alpha targets.

Two teachers share one interface (``teacher(frames, masks) -> TeacherOutput``):

* ``"videomama"`` — the VideoMaMa SVD teacher (:class:`VideoMaMaTeacher`), one-step,
  mask-conditioned, streamed over overlapping windows;
* ``"closed-form"`` — a CPU reference teacher (:class:`ClosedFormTeacher`): adaptive trimap +
  closed-form matting per frame.

Importing this package is cheap (no torch); the heavy modules load on first attribute access.
"""
from __future__ import annotations

import importlib

__all__ = ["build_teacher", "TeacherOutput", "VideoMaMaTeacher", "VideoMaMaOptions", "ClosedFormTeacher",
           "ClosedFormOptions", "TEACHERS", "widen_unet", "load_videomama"]

_LAZY = {
    "build_teacher": "mamakit.teacher.registry",
    "TEACHERS": "mamakit.teacher.registry",
    "TeacherOutput": "mamakit.teacher.output",
    "VideoMaMaTeacher": "mamakit.teacher.videomama.teacher",
    "VideoMaMaOptions": "mamakit.teacher.videomama.teacher",
    "load_videomama": "mamakit.teacher.videomama.loading",
    "widen_unet": "mamakit.teacher.videomama.widen",
    "ClosedFormTeacher": "mamakit.teacher.closed_form.teacher",
    "ClosedFormOptions": "mamakit.teacher.closed_form.teacher",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mamakit.teacher' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
