"""mamakit.export: checkpoints -> verified bundles (ONNX fp32/fp16/int8) -> TensorRT engines.

Importing this package is cheap (no torch, no onnx); the names below load on first use.

- :func:`export_student(checkpoint, out, options)` / :class:`StudentExportOptions` — student bundles
  (:mod:`mamakit.export.student`);
- :func:`check_bundle(path)` — torch-free verification (:mod:`mamakit.export.check`);
- :func:`build_engines(bundle, ...)` — TensorRT / TensorRT-RTX engines (:mod:`mamakit.export.trt`);
- :func:`read_source(path)` — a checkpoint's kind and provenance (:mod:`mamakit.export.source`).

The bundle format is documented in ``docs/bundle.md``.
"""
from __future__ import annotations

__all__ = ["export_student", "StudentExportOptions", "check_bundle", "build_engines", "read_source"]

_WHERE = {"export_student": "student", "StudentExportOptions": "student", "check_bundle": "check",
          "build_engines": "trt", "read_source": "source"}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"mamakit.export.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'mamakit.export' has no attribute {name!r}")
