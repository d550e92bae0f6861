"""The bundle format: what leaves the training machine and lands on a device.

A bundle is a folder::

    BUNDLE/
      bundle.json          manifest (format version, kind, graphs, tensors, state, checksums, ...)
      *.onnx / *.engine    graph files, each listed with its sha256
      sample.npz           reference inputs + PyTorch outputs recorded at export time
      MODEL_CARD.md        optional

Every file the bundle uses is listed in ``manifest["files"]`` with its sha256; :func:`load_bundle`
verifies them all before anything else happens and raises :class:`BundleError` naming the first
file that does not match. See ``docs/bundle.md`` for every field.

No torch and no onnxruntime here: the runtime and ``mamakit export check`` read bundles anywhere.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mamakit._version import __version__
from mamakit.errors import BundleError
from mamakit.fsutil import sha256_file, write_json_atomic

FORMAT_VERSION = 1
MANIFEST = "bundle.json"
KINDS = ("student", "sam2-matte")


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output."""

    name: str
    shape: list  # ints, or strings for dynamic axes
    dtype: str = "float32"
    layout: str = "NCHW"
    #: how values are scaled, e.g. "rgb 0..1", "alpha 0..1", "state"
    normalisation: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "layout": self.layout, "normalisation": self.normalisation}

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], list(d["shape"]), d.get("dtype", "float32"), d.get("layout", "NCHW"),
                   d.get("normalisation", ""))


@dataclass(frozen=True)
class StateSpec:
    """A recurrent state tensor: fed as ``input``, returned as ``output``, starts as ``init``.

    ``carry`` says how the output becomes the next frame's input: ``"copy"`` (as it is) or ``"flow"``
    (moved by the motion between the two frames, its last channel gated: :mod:`mamakit.stabilize`,
    with ``carry_params``)."""

    input: str
    output: str
    shape: list
    dtype: str = "float32"
    init: str = "zeros"
    carry: str = "copy"
    carry_params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"input": self.input, "output": self.output, "shape": list(self.shape),
             "dtype": self.dtype, "init": self.init}
        if self.carry != "copy":
            d.update(carry=self.carry, carry_params=dict(self.carry_params))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StateSpec":
        from mamakit.stabilize import CARRIES

        carry = d.get("carry", "copy")
        if carry not in CARRIES:
            raise BundleError(f"bundle state {d.get('input')!r} has carry {carry!r}; this mamakit knows "
                              f"{', '.join(CARRIES)}: upgrade mamakit or re-export the bundle")
        return cls(d["input"], d["output"], list(d["shape"]), d.get("dtype", "float32"), d.get("init", "zeros"),
                   carry, dict(d.get("carry_params") or {}))


@dataclass
class Bundle:
    """A loaded (and verified) bundle. ``manifest`` is the parsed ``bundle.json``."""

    root: Path
    manifest: dict

    # -- typed accessors -------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def precision(self) -> str:
        return self.manifest.get("precision", "fp32")

    @property
    def processing_size(self) -> tuple[int, int]:
        w, h = self.manifest["processing_size"]
        return int(w), int(h)

    @property
    def graphs(self) -> dict[str, dict]:
        return self.manifest.get("graphs", {})

    def graph_path(self, name: str = "main") -> Path:
        try:
            return self.root / self.graphs[name]["file"]
        except KeyError as exc:
            raise BundleError(f"bundle {self.root} has no graph {name!r} (has: {', '.join(self.graphs)})") from exc

    def inputs(self, graph: str = "main") -> list[TensorSpec]:
        return [TensorSpec.from_dict(d) for d in self.graphs[graph].get("inputs", [])]

    def outputs(self, graph: str = "main") -> list[TensorSpec]:
        return [TensorSpec.from_dict(d) for d in self.graphs[graph].get("outputs", [])]

    def state(self, graph: str = "main") -> list[StateSpec]:
        return [StateSpec.from_dict(d) for d in self.graphs[graph].get("state", [])]

    @property
    def engines(self) -> list[dict]:
        return self.manifest.get("engines", [])

    def path(self, rel: str) -> Path:
        return self.root / rel


def _safe_rel(rel: str, root: Path) -> Path:
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or rel.strip() == "":
        raise BundleError(f"bundle {root}: file entry {rel!r} is not a plain relative path; the bundle is malformed")
    return root / p


def read_manifest(root: str | os.PathLike) -> dict:
    root = Path(root)
    if not root.exists():
        raise BundleError(f"bundle {root} does not exist: pass a folder made by `mamakit export onnx`")
    if not root.is_dir():
        raise BundleError(f"bundle {root} is a file, expected a folder containing {MANIFEST}")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"bundle {root} has no {MANIFEST}: pass a folder made by `mamakit export onnx`")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"bundle manifest {mpath} is not valid JSON ({exc}); re-export the bundle") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"bundle manifest {mpath} is not a JSON object; re-export the bundle")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise BundleError(f"bundle manifest {mpath} has no integer format_version; re-export the bundle")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"bundle {root} uses format version {version}, newer than this mamakit understands "
            f"({FORMAT_VERSION}): upgrade mamakit (`pip install -U mamakit`)"
        )
    if manifest.get("kind") not in KINDS:
        raise BundleError(f"bundle {root} has unknown kind {manifest.get('kind')!r} (known: {', '.join(KINDS)})")
    if not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        raise BundleError(f"bundle manifest {mpath} lists no files with checksums; re-export the bundle")
    return manifest


def verify_files(root: Path, manifest: dict) -> None:
    """Check every listed file's sha256; raise :class:`BundleError` naming the first mismatch."""
    for rel, digest in manifest["files"].items():
        path = _safe_rel(rel, root)
        if not path.is_file():
            raise BundleError(f"bundle file {path} is missing; the bundle is incomplete, re-export or re-copy it")
        actual = sha256_file(path)
        if actual != digest:
            raise BundleError(
                f"bundle file {path} does not match its checksum (expected sha256 {digest[:12]}…, "
                f"found {actual[:12]}…): the bundle is corrupt or was modified; re-export or re-copy it"
            )


def load_bundle(root: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read ``bundle.json`` and (by default) verify every file's checksum."""
    root = Path(root)
    manifest = read_manifest(root)
    if verify:
        verify_files(root, manifest)
    return Bundle(root=root, manifest=manifest)


def new_manifest(kind: str, *, processing_size: tuple[int, int], precision: str, **extra: Any) -> dict:
    """A manifest skeleton with the common fields filled in; callers add graphs, state, parity..."""
    if kind not in KINDS:
        raise BundleError(f"unknown bundle kind {kind!r} (known: {', '.join(KINDS)})")
    m = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "precision": precision,
        "processing_size": [int(processing_size[0]), int(processing_size[1])],
        "toolkit_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "graphs": {},
        "files": {},
    }
    m.update(extra)
    return m


def write_manifest(root: str | os.PathLike, manifest: dict, files: list[str] | None = None) -> Path:
    """Checksum ``files`` (default: every file in the bundle folder except the manifest) and
    write ``bundle.json`` atomically. Returns the manifest path."""
    root = Path(root)
    if files is None:
        files = sorted(
            str(p.relative_to(root)).replace(os.sep, "/")
            for p in root.rglob("*")
            if p.is_file() and p.name != MANIFEST and not p.name.startswith(".tmp")
        )
    manifest = dict(manifest)
    manifest["files"] = {rel: sha256_file(_safe_rel(rel, root)) for rel in files}
    path = root / MANIFEST
    write_json_atomic(path, manifest)
    return path
