"""Load a student from a ``save_pretrained`` folder or a mamakit Lightning checkpoint."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from mamakit.errors import ConfigError

log = logging.getLogger(__name__)

#: attribute name of the student inside the Lightning system (state-dict prefix).
STUDENT_PREFIX = "student."
VERSION = 1


def checkpoint_meta(config_dict: dict[str, Any]) -> dict[str, Any]:
    """The ``ckpt["mamakit"]`` record: kind, the plain StudentConfig dict, format version."""
    return {"kind": "student", "config": dict(config_dict), "version": VERSION}


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    import torch

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{path} cannot be loaded as a checkpoint ({str(exc).splitlines()[0]}): "
                          "pass a mamakit student checkpoint (.ckpt) or a save_pretrained folder") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"{path} is not a Lightning checkpoint (no state_dict): "
                          "pass a mamakit student checkpoint or a save_pretrained folder")
    meta = ckpt.get("mamakit")
    if not isinstance(meta, dict) or meta.get("kind") != "student":
        kind = meta.get("kind") if isinstance(meta, dict) else None
        raise ConfigError(f"{path} is not a mamakit student checkpoint (kind={kind!r}): "
                          "train one with `mamakit distill` or pass the matching loader")
    return ckpt


def student_state_dict(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The student's weights from a checkpoint: EMA weights when present (Lightning's
    EMAWeightAveraging stores the average in ``state_dict`` and the raw ones in ``current_model_state``)."""
    state = ckpt["state_dict"]
    return {k[len(STUDENT_PREFIX):]: v for k, v in state.items() if k.startswith(STUDENT_PREFIX)}


def load_student(path: str | os.PathLike, device: str = "cpu"):
    """Return an eval-mode :class:`StudentNet` from a folder (config.json + model.safetensors)
    or a ``.ckpt`` written by ``mamakit distill`` (EMA weights when present)."""
    from mamakit.student.models import StudentConfig, StudentNet

    path = Path(path)
    if path.is_dir():
        model = StudentNet.from_pretrained(path)
    elif path.is_file():
        ckpt = read_checkpoint(path)
        config = StudentConfig.from_dict(ckpt["mamakit"]["config"])
        model = StudentNet(config)
        model.load_weights(student_state_dict(ckpt), source=str(path))
        ema = "current_model_state" in ckpt
        log.debug("loaded student from %s (%s weights, step %s)", path, "EMA" if ema else "raw",
                  ckpt.get("global_step"))
    else:
        raise ConfigError(f"student {path} does not exist: pass a .ckpt from `mamakit distill` "
                          "or a folder written by StudentNet.save_pretrained")
    return model.to(device).eval()
