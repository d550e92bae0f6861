"""mamakit.student: the one-step streaming matting student and its distillation.

Importing this package is cheap (no torch): the names below are loaded on first use.

- :class:`mamakit.student.models.StudentNet` / :class:`StudentConfig` — the network.
- :func:`load_student(path)` — a ``save_pretrained`` folder or a ``mamakit distill`` checkpoint.
- :func:`stream(model, frames, masks)` — a clip run as the runtime runs it (state carried, stabiliser included).
- :mod:`mamakit.student.distill` — the Lightning system; :mod:`mamakit.student.data` — data.
"""
from __future__ import annotations

__all__ = ["StudentNet", "StudentConfig", "load_student", "stream"]


def __getattr__(name: str):
    if name in ("StudentNet", "StudentConfig", "stream"):
        from mamakit.student import models

        return getattr(models, name)
    if name == "load_student":
        from mamakit.student.loading import load_student

        return load_student
    raise AttributeError(f"module 'mamakit.student' has no attribute {name!r}")
