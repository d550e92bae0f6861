"""``build_teacher(name, **options)``: the one way other stages get a teacher."""
from __future__ import annotations

from mamakit.errors import ConfigError

TEACHERS = ("videomama", "closed-form")


def build_teacher(name: str, **options):
    """Build a teacher by name.

    ``"videomama"``: options are :class:`~mamakit.teacher.videomama.teacher.VideoMaMaOptions` fields
    plus ``base_model`` + ``unet`` (local folders, see ``docs/teacher.md``) or ``tiny=True``
    (random tiny weights, ``seed``). ``"closed-form"``: :class:`~mamakit.teacher.closed_form.teacher.ClosedFormOptions`
    fields.
    """
    if name == "videomama":
        from mamakit.teacher.videomama.teacher import VideoMaMaTeacher

        return VideoMaMaTeacher.build(**options)
    if name in ("closed-form", "closed_form", "closedform"):
        from mamakit.teacher.closed_form.teacher import ClosedFormTeacher

        return ClosedFormTeacher.build(**options)
    raise ConfigError(f"unknown teacher {name!r}: choose one of {', '.join(TEACHERS)}")
