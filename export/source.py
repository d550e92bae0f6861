"""What is being exported: read a checkpoint's kind and provenance without building the model.

A mamakit Lightning checkpoint carries ``ckpt["mamakit"] = {"kind", "config", "version", ...}``
(docs/architecture.md, "Checkpoints"); a ``save_pretrained`` folder holds ``config.json`` +
``model.safetensors`` (a student unless its config says otherwise).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from mamakit.errors import ConfigError
from mamakit.fsutil import sha256_file

log = logging.getLogger(__name__)

KNOWN_KINDS = ("student", "sam2-matte")

#: teacher name prefix -> licence the distilled weights inherit
TEACHER_LICENCES = {
    "videomama": ("CC-BY-NC-4.0",
                  "distilled from the official VideoMaMa weights (CC BY-NC 4.0 / Stability AI Community "
                  "licence): non-commercial use only"),
    "closed-form": ("Apache-2.0", "distilled from the closed-form CPU reference teacher (no third-party weights)"),
}


@dataclass
class Source:
    path: Path
    kind: str
    sha256: str
    is_folder: bool
    config: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)   # the checkpoint's "mamakit" block (files) / {} (folders)
    ema: bool | None = None                    # EMA weights present (Lightning EMAWeightAveraging)

    def provenance(self, *, teacher: str | None = None, data: str | None = None,
                   licence: str | None = None) -> dict:
        """Teacher, training data and the licence the weights inherit (explicit values win)."""
        meta = self.meta or {}
        prov = meta.get("provenance") if isinstance(meta.get("provenance"), dict) else {}
        cfg = self.config or {}
        teacher = teacher or prov.get("teacher") or meta.get("teacher") or cfg.get("teacher")
        data = data or prov.get("training_data") or prov.get("data") or meta.get("data") or meta.get("dataset")
        tname = str(teacher).split(":")[-1].split("@")[0].lower() if teacher else ""
        lic, note = None, None
        for prefix, (l, n) in TEACHER_LICENCES.items():
            if tname.startswith(prefix):
                lic, note = l, n
                break
        if licence:
            if lic == "CC-BY-NC-4.0" and "nc" not in licence.lower():
                raise ConfigError(
                    f"--licence {licence} conflicts with the teacher {teacher}: weights distilled from VideoMaMa "
                    "inherit its non-commercial CC BY-NC 4.0 terms; drop --licence or pass a non-commercial one"
                )
            lic, note = licence, note or "set at export time (--licence)"
        if lic is None:
            lic, note = "unknown", ("the checkpoint does not record its teacher: check the terms of the teacher "
                                    "and training data before redistributing these weights")
        return {"teacher": str(teacher) if teacher else "unknown",
                "training_data": str(data) if data else "unknown",
                "licence": lic, "licence_note": note,
                "checkpoint": self.path.name, "checkpoint_sha256": self.sha256}


def _safetensors_meta(path: Path) -> dict:
    """The ``__metadata__`` of a safetensors header (8-byte little-endian length + JSON); {} if unreadable."""
    import struct

    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100_000_000:
                return {}
            header = json.loads(f.read(n))
        meta = header.get("__metadata__") or {}
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError, struct.error):
        return {}


def read_source(path: str | Path) -> Source:
    """Identify a checkpoint file or a ``save_pretrained`` folder (exit 2 on anything else)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"checkpoint {path} does not exist: pass a Lightning .ckpt written by `mamakit distill` "
                          "or a folder written by save_pretrained")
    if path.is_dir():
        cfg_path, weights = path / "config.json", path / "model.safetensors"
        if not cfg_path.is_file() or not weights.is_file():
            raise ConfigError(f"checkpoint folder {path} lacks config.json and model.safetensors: pass a folder "
                              "written by save_pretrained or a Lightning .ckpt")
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{cfg_path} is not valid JSON ({exc}); re-save the model") from exc
        kind = str((cfg.get("kind") if isinstance(cfg, dict) else None) or _safetensors_meta(weights).get("kind")
                   or "student")
        if kind not in KNOWN_KINDS:
            raise ConfigError(f"checkpoint folder {path} holds a {kind!r} model; `mamakit export onnx` exports "
                              f"{' and '.join(KNOWN_KINDS)} models")
        meta = {}
        mk = path / "mamakit.json"
        if mk.is_file():
            try:
                meta = json.loads(mk.read_text())
            except (OSError, json.JSONDecodeError):
                meta = {}
        return Source(path, kind, sha256_file(weights), True, cfg if isinstance(cfg, dict) else {}, meta)
    import torch

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"checkpoint {path} cannot be loaded safely (torch.load weights_only=True: {first[:160]}); "
                          "pass a checkpoint written by `mamakit distill`") from exc
    meta = ckpt.get("mamakit") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or "kind" not in meta:
        raise ConfigError(f"checkpoint {path} is not a mamakit checkpoint (no ckpt['mamakit']['kind']): pass one "
                          "written by `mamakit distill`, or a save_pretrained folder")
    kind = str(meta["kind"])
    if kind not in KNOWN_KINDS:
        raise ConfigError(f"checkpoint {path} holds a {kind!r} model; `mamakit export onnx` exports "
                          f"{' and '.join(KNOWN_KINDS)} models")
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    ema = isinstance(ckpt, dict) and "current_model_state" in ckpt
    return Source(path, kind, sha256_file(path), False, cfg, meta, ema)
