"""Load VideoMaMa components from local folders (no hub access), with clear layout errors.

Expected layout (the official one)::

    BASE/                                  SVD-XT base model (e.g. stable-video-diffusion-img2vid-xt)
      vae/config.json
      vae/diffusion_pytorch_model[.fp16].safetensors
    VIDEOMAMA/                             VideoMaMa weights
      unet/config.json                     in_channels 12 (or 9)
      unet/diffusion_pytorch_model[.fp16].safetensors

``VIDEOMAMA`` may also be the ``unet/`` folder itself, or a single ``.safetensors`` file with a
``config.json`` beside it (or passed as ``unet_config``). The CLIP image encoder is never loaded.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from mamakit.errors import ConfigError

log = logging.getLogger(__name__)

WEIGHTS = "diffusion_pytorch_model.safetensors"
WEIGHTS_FP16 = "diffusion_pytorch_model.fp16.safetensors"
TREE = ("expected BASE/vae/{config.json, diffusion_pytorch_model[.fp16].safetensors} (the SVD-XT base folder) and "
        "VIDEOMAMA/unet/{config.json, diffusion_pytorch_model[.fp16].safetensors} (in_channels 12 or 9), or a "
        "single UNet .safetensors file with its config.json")

DTYPES = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16",
          "bf16": "bfloat16", "bfloat16": "bfloat16"}


def torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}: choose fp32, fp16 or bf16")
    return getattr(torch, DTYPES[name])


def _read_config(path: Path, what: str) -> dict:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{what} config {path} is not readable JSON ({exc}); {TREE}") from exc
    if not isinstance(cfg, dict):
        raise ConfigError(f"{what} config {path} is not a JSON object; {TREE}")
    return cfg


def _variant(folder: Path, dtype: str, what: str) -> str | None:
    plain, half = (folder / WEIGHTS).is_file(), (folder / WEIGHTS_FP16).is_file()
    if not plain and not half:
        bins = sorted(p.name for p in folder.glob("*.bin"))
        hint = f" (found {', '.join(bins)}: convert to safetensors; mamakit never unpickles weights)" if bins else ""
        raise ConfigError(f"{what} folder {folder} has no {WEIGHTS} or {WEIGHTS_FP16}{hint}; {TREE}")
    if half and (not plain or DTYPES.get(dtype, dtype) != "float32"):
        return "fp16"
    return None


def check_unet_config(cfg: dict, where: str) -> int:
    n = cfg.get("in_channels")
    from mamakit.teacher.videomama.config import SUPPORTED_IN_CHANNELS

    if n not in SUPPORTED_IN_CHANNELS:
        stock = " (a stock SVD UNet: widen it with mamakit.teacher.widen_unet and train it, or pass the VideoMaMa unet)" \
            if n == 8 else ""
        raise ConfigError(f"UNet {where} has in_channels={n}; VideoMaMa needs 12 or 9{stock}")
    return int(n)


def resolve_paths(base_model, unet, unet_config=None) -> dict:
    """Check the layout without loading anything (fast; run before any work)."""
    if base_model is None or unet is None:
        raise ConfigError(f"the videomama teacher needs --base-model and --unet (or the tiny random teacher); {TREE}")
    base, unet = Path(base_model), Path(unet)
    if not base.is_dir():
        raise ConfigError(f"base model folder {base} does not exist; {TREE}")
    vae_dir = base / "vae"
    if not (vae_dir / "config.json").is_file():
        raise ConfigError(f"base model folder {base} has no vae/config.json; {TREE}")
    out = {"vae_dir": vae_dir}
    if unet.is_file():
        if unet.suffix != ".safetensors":
            raise ConfigError(f"UNet file {unet} is not a .safetensors file; {TREE}")
        cfg_path = Path(unet_config) if unet_config else unet.with_name("config.json")
        if not cfg_path.is_file():
            raise ConfigError(f"UNet file {unet} needs its config: pass --unet-config or put config.json beside it")
        out.update(unet_file=unet, unet_config=cfg_path)
    elif unet.is_dir():
        udir = unet / "unet" if (unet / "unet").is_dir() else unet
        if not (udir / "config.json").is_file():
            raise ConfigError(f"VideoMaMa folder {unet} has no unet/config.json; {TREE}")
        out.update(unet_dir=udir, unet_config=udir / "config.json")
    else:
        raise ConfigError(f"VideoMaMa UNet path {unet} does not exist; {TREE}")
    cfg = _read_config(out["unet_config"], "UNet")
    out["in_channels"] = check_unet_config(cfg, str(out["unet_config"]))
    return out


def load_videomama(base_model, unet, *, unet_config=None, dtype: str = "fp32"):
    """Load ``(unet, vae)`` from local folders (see the module docstring for the layout)."""
    import torch
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from safetensors.torch import load_file

    paths = resolve_paths(base_model, unet, unet_config)
    tdtype = torch_dtype(dtype)
    vae_dir = paths["vae_dir"]
    quiet = dict(low_cpu_mem_usage=False)  # no `accelerate` needed
    vae = AutoencoderKLTemporalDecoder.from_pretrained(vae_dir, torch_dtype=tdtype,
                                                       variant=_variant(vae_dir, dtype, "VAE"), **quiet)
    if "unet_dir" in paths:
        udir = paths["unet_dir"]
        model = UNetSpatioTemporalConditionModel.from_pretrained(udir, torch_dtype=tdtype,
                                                                 variant=_variant(udir, dtype, "UNet"), **quiet)
    else:
        cfg = _read_config(paths["unet_config"], "UNet")
        model = UNetSpatioTemporalConditionModel.from_config(cfg)
        state = load_file(str(paths["unet_file"]))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(f"UNet file {paths['unet_file']} does not match its config: "
                              f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                              f"(e.g. {unexpected[:2]})")
        model = model.to(tdtype)
    log.info("loaded VideoMaMa: UNet %d inputs, VAE from %s, %s", paths["in_channels"], vae_dir, dtype)
    return model.eval(), vae.eval()
