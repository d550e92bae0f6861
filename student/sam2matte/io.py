"""Loading SAM2-Matte weights: a ``save_pretrained`` folder or a Lightning checkpoint."""
from __future__ import annotations

import logging
from pathlib import Path

from mamakit.errors import ConfigError

from .config import Sam2MatteConfig

log = logging.getLogger(__name__)


def read_checkpoint(path: str | Path) -> tuple[Sam2MatteConfig, dict]:
    """(config, model state_dict) from a folder (config.json + model.safetensors) or a Lightning
    ``.ckpt`` written by :class:`~mamakit.student.sam2matte.system.Sam2MatteSystem` (EMA weights
    when the run used EMA: Lightning's weight averaging stores them as ``state_dict``)."""
    path = Path(path)
    if path.is_dir():
        cfg_path, w_path = path / "config.json", path / "model.safetensors"
        if not cfg_path.is_file() or not w_path.is_file():
            raise ConfigError(f"{path} is not a SAM2-Matte folder: expected config.json and model.safetensors")
        from safetensors.torch import load_file

        return Sam2MatteConfig.load(cfg_path), load_file(str(w_path))
    if not path.is_file():
        raise ConfigError(f"SAM2-Matte checkpoint {path} does not exist")
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot read checkpoint {path}: {exc}") from exc
    meta = ckpt.get("mamakit") if isinstance(ckpt, dict) else None
    if not meta or meta.get("kind") != "sam2-matte":
        kind = meta.get("kind") if meta else None
        raise ConfigError(f"{path} is not a SAM2-Matte checkpoint (mamakit kind {kind!r}, expected 'sam2-matte')")
    cfg = Sam2MatteConfig.from_dict(meta["config"])
    sd = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return cfg, sd


def load_sam2_matte(path: str | Path, image_size: int | None = None):
    """A :class:`~mamakit.student.sam2matte.model.Sam2Matte` in eval mode. ``image_size`` rebuilds
    the model at another input size (weights are size-independent; RoPE/position maps follow)."""
    from .model import Sam2Matte

    cfg, sd = read_checkpoint(path)
    if image_size is not None and int(image_size) != cfg.image_size:
        cfg = cfg.with_image_size(image_size)
    model = Sam2Matte(cfg)
    model.load_weights(sd)
    return model.eval()
