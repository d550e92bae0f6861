"""mamakit: distil the VideoMaMa video matting teacher into real-time students.

The core package (``mamakit``) holds what every stage shares and never imports torch:
streaming video/mask I/O (:mod:`mamakit.io`), matting metrics (:mod:`mamakit.metrics`),
the dataset format (:mod:`mamakit.dataset`), the bundle format (:mod:`mamakit.bundle`),
synthetic clips (:mod:`mamakit.synth`) and the CLI (:mod:`mamakit.cli`).
"""
from mamakit._version import __version__
from mamakit.errors import (
    BundleError,
    ConfigError,
    DependencyError,
    InputError,
    MamakitError,
    ParityError,
    StreamError,
    VideoIOError,
    WorkError,
)

__all__ = [
    "__version__",
    "MamakitError",
    "InputError",
    "ConfigError",
    "BundleError",
    "VideoIOError",
    "DependencyError",
    "WorkError",
    "ParityError",
    "StreamError",
]
