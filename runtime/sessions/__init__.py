"""One session class per bundle kind; :func:`open_session` picks it from ``bundle.json``."""
from __future__ import annotations

import importlib
import os

from mamakit.bundle import Bundle, load_bundle
from mamakit.errors import BundleError

from .base import Resizer, Session

#: bundle kind -> "module:Class"
SESSIONS: dict[str, str] = {
    "student": "mamakit.runtime.sessions.student:StudentSession",
    "sam2-matte": "mamakit.runtime.sessions.sam2:Sam2MatteSession",
}


def session_class(kind: str) -> type[Session]:
    try:
        spec = SESSIONS[kind]
    except KeyError as exc:
        raise BundleError(f"no runtime session for bundle kind {kind!r} (known: {', '.join(SESSIONS)})") from exc
    module, cls = spec.split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("mamakit"):
            raise BundleError(f"this mamakit has no runtime for {kind!r} bundles yet ({exc})") from exc
        raise
    return getattr(mod, cls)


def open_session(bundle: Bundle | str | os.PathLike, provider: str = "auto", threads: int | None = None,
                 **options) -> Session:
    """Verify ``bundle`` (a folder or a loaded :class:`Bundle`) and open the session for its kind."""
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)  # verifies every checksum before anything else
    return session_class(bundle.kind)(bundle, provider=provider, threads=threads, **options)


__all__ = ["Session", "Resizer", "open_session", "session_class", "SESSIONS"]
