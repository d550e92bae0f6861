"""One family of typed exceptions. Only the CLI turns them into one-line messages + exit codes.

Exit codes (every subcommand):
  2  anything wrong found before work starts (bad arguments, missing/unreadable inputs,
     missing camera, bad or tampered model files, missing extras) -> :class:`InputError` family;
  1  a failure during work, after outputs were finalised -> :class:`WorkError`, :class:`ParityError`;
  0  success, and a user's Ctrl-C.
"""
from __future__ import annotations


class MamakitError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(MamakitError):
    """Bad input detected before any work started (exit 2)."""

    exit_code = 2


class ConfigError(InputError):
    """A configuration value, argument or option is invalid."""


class BundleError(InputError):
    """A bundle is missing, malformed, tampered with, or from an unsupported format version."""


class VideoIOError(InputError):
    """A video, image, mask or stream cannot be opened or decoded."""


class DependencyError(InputError):
    """An optional dependency (a pip extra) is missing; the message names the extra."""


class WorkError(MamakitError):
    """A failure during work (exit 1); whatever was written has been finalised."""


class StreamError(WorkError):
    """A source failed mid-stream: a corrupt frame, a camera unplugged, a network stream lost."""


class ParityError(WorkError):
    """An exported graph does not match the PyTorch model within tolerance."""


def require(module: str, extra: str, purpose: str = ""):
    """Import ``module`` or raise :class:`DependencyError` naming the pip extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised with blocked imports in tests
        what = f" for {purpose}" if purpose else ""
        raise DependencyError(
            f"{module} is not installed{what}: install it with `pip install \"mamakit[{extra}]\"` ({exc})"
        ) from exc
