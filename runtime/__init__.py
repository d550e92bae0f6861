"""mamakit.runtime: the torch-free streaming runtime (numpy + onnxruntime / TensorRT + cv2 + av).

``Matter.load(bundle, provider="auto")`` -> ``step(frame, mask=None) -> alpha``,
``stream(source, masks=...)``, ``reset()``. Sessions per bundle kind live in
:mod:`mamakit.runtime.sessions`; providers in :mod:`mamakit.runtime.providers`; compositing in
:mod:`mamakit.runtime.composite`; the ``mamakit run`` command in :mod:`mamakit.runtime.cli`.
"""
from __future__ import annotations

__all__ = ["Matter", "open_session", "Session", "Result", "Stats"]


def __getattr__(name):  # lazy: `import mamakit.runtime` stays cheap (no onnxruntime until used)
    if name in ("Matter",):
        from .matter import Matter

        return Matter
    if name in ("open_session", "Session"):
        from . import sessions

        return getattr(sessions, name)
    if name in ("Result", "Stats"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'mamakit.runtime' has no attribute {name!r}")
