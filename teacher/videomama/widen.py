"""Turn a stock SVD(-XT) UNet (8 inputs) into a 12- or 9-input VideoMaMa-style teacher.

The first 8 input channels of ``conv_in`` keep their weights; the new channels (mask latent or
resized mask) start at zero, so the widened UNet initially behaves exactly like the stock one.
"""
from __future__ import annotations

from mamakit.errors import ConfigError


def widen_unet(unet, in_channels: int = 12):
    import torch
    from diffusers import UNetSpatioTemporalConditionModel

    old = int(unet.config.in_channels)
    if in_channels not in (12, 9):
        raise ConfigError(f"in_channels must be 12 or 9, got {in_channels}")
    if old > in_channels:
        raise ConfigError(f"the UNet already has {old} input channels, more than {in_channels}")
    cfg = dict(unet.config)
    cfg["in_channels"] = in_channels
    new = UNetSpatioTemporalConditionModel.from_config(cfg)
    state = unet.state_dict()
    w = state["conv_in.weight"]
    wide = torch.zeros(w.shape[0], in_channels, *w.shape[2:], dtype=w.dtype, device=w.device)
    wide[:, :old] = w
    state["conv_in.weight"] = wide
    new.load_state_dict(state, strict=True)
    return new.to(dtype=w.dtype, device=w.device)
