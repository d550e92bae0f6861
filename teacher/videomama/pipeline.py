"""One window through VideoMaMa: typed components in, ``check_inputs``, a single ``__call__``.

Conditioning follows FIELD_GUIDE §1 exactly:

* UNet input (channel order): noise latent (4) | VAE latent of the RGB frames (4) | mask latent —
  the mask in [-1, 1], repeated to 3 channels and VAE-encoded (4, 12-input UNet), or bilinearly
  resized to latent size (1, 9-input UNet);
* condition latents are the *unscaled* encoder latents (no ``scaling_factor``);
* zero image embeddings of shape ``(B, 1, cross_attention_dim)`` (no CLIP encoder is loaded);
* ``added_time_ids = [fps 7, motion bucket 127, noise aug 0]``;
* one step: timestep 1, the UNet output is the clean alpha latent (``steps > 1``: Euler sampler);
* latent / scaling_factor -> temporal VAE decode in chunks -> (x/2+0.5).clamp(0,1) -> channel mean.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from mamakit.errors import ConfigError

log = logging.getLogger(__name__)


class VideoMaMaPipeline:
    def __init__(self, unet, vae, sampler, *, fps_id: int = 7, motion_bucket_id: int = 127,
                 noise_aug_strength: float = 0.0, decode_chunk: int = 8, deterministic: bool = True,
                 device=None, dtype=None):
        from mamakit.teacher.videomama.config import SUPPORTED_IN_CHANNELS

        in_ch = int(unet.config.in_channels)
        if in_ch not in SUPPORTED_IN_CHANNELS:
            raise ConfigError(
                f"the UNet has {in_ch} input channels; VideoMaMa needs 12 (noise|RGB latent|mask latent) or 9 "
                f"(mask resized to latent size). A stock SVD UNet has 8: widen it with "
                f"mamakit.teacher.widen_unet(unet, 12) and train it, or pass the VideoMaMa unet folder"
            )
        if decode_chunk < 1:
            raise ConfigError(f"decode_chunk must be >= 1, got {decode_chunk}")
        self.unet, self.vae, self.sampler = unet, vae, sampler
        self.fps_id, self.motion_bucket_id, self.noise_aug_strength = fps_id, motion_bucket_id, noise_aug_strength
        self.decode_chunk = int(decode_chunk)
        self.deterministic = deterministic
        # the execution device/dtype (with CPU offload the weights rest on the CPU between calls)
        self._device = torch.device(device) if device is not None else unet.conv_in.weight.device
        self._dtype = dtype if dtype is not None else unet.conv_in.weight.dtype
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.unet_multiple = self.vae_scale * 2 ** (len(unet.config.block_out_channels) - 1)

    @property
    def mask_mode(self) -> str:
        return "vae" if int(self.unet.config.in_channels) == 12 else "resize"

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def check_inputs(self, frames: torch.Tensor, masks: torch.Tensor) -> None:
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ConfigError(f"frames must be [T,3,H,W], got {list(frames.shape)}")
        if masks.ndim != 4 or masks.shape[1] != 1:
            raise ConfigError(f"masks must be [T,1,H,W], got {list(masks.shape)}")
        if masks.shape[0] != frames.shape[0] or masks.shape[2:] != frames.shape[2:]:
            raise ConfigError(f"masks {list(masks.shape)} do not match frames {list(frames.shape)}")
        h, w = frames.shape[2:]
        if h % self.unet_multiple or w % self.unet_multiple:
            raise ConfigError(f"processing size {w}x{h} must be a multiple of {self.unet_multiple} for this model")

    # -- pieces ------------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor, generator) -> torch.Tensor:
        """Unscaled VAE latents of ``x`` ([N,3,H,W] in [-1,1]) in chunks."""
        out = []
        vae_dtype = self.vae.encoder.conv_in.weight.dtype
        for i in range(0, x.shape[0], self.decode_chunk):
            dist = self.vae.encode(x[i:i + self.decode_chunk].to(vae_dtype)).latent_dist
            out.append(dist.mode() if self.deterministic else dist.sample(generator))
        return torch.cat(out)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[T,4,h,w] clean latents -> [T,H,W] alpha (float32, 0..1)."""
        z = latents / self.vae.config.scaling_factor
        vae_dtype = self.vae.decoder.conv_in.weight.dtype
        out = []
        for i in range(0, z.shape[0], self.decode_chunk):
            chunk = z[i:i + self.decode_chunk].to(vae_dtype)
            img = self.vae.decode(chunk, num_frames=chunk.shape[0]).sample
            out.append((img.float() / 2 + 0.5).clamp(0, 1).mean(dim=1))
        return torch.cat(out)

    def conditioning(self, frames: torch.Tensor, masks: torch.Tensor, generator) -> torch.Tensor:
        """[T, 8 or 5, h, w]: RGB latent | mask latent (or resized mask)."""
        rgb = self._encode(frames, generator)
        m = masks * 2 - 1
        if self.mask_mode == "vae":
            mask_lat = self._encode(m.repeat(1, 3, 1, 1), generator)
        else:
            mask_lat = F.interpolate(m, size=rgb.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([rgb, mask_lat.to(rgb.dtype)], dim=1)

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor, masks: torch.Tensor, *, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        """``frames`` [T,3,H,W] in [-1,1], ``masks`` [T,1,H,W] in 0..1 (processing size) -> alpha [T,H,W]."""
        self.check_inputs(frames, masks)
        device, dtype = self.device, self.dtype
        frames = frames.to(device=device, dtype=dtype)
        masks = masks.to(device=device, dtype=dtype)
        cond = self.conditioning(frames, masks, generator).to(dtype).unsqueeze(0)  # [1,T,C,h,w]
        t_frames = frames.shape[0]
        emb = torch.zeros(1, 1, self.unet.config.cross_attention_dim, device=device, dtype=dtype)
        time_ids = torch.tensor([[self.fps_id, self.motion_bucket_id, self.noise_aug_strength]],
                                device=device, dtype=dtype)

        def denoise(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x = torch.cat([latents, cond], dim=2)
            return self.unet(x, t, encoder_hidden_states=emb, added_time_ids=time_ids, return_dict=False)[0]

        shape = (1, t_frames, 4, *cond.shape[-2:])
        latents = self.sampler.sample(denoise, shape, generator=generator, device=device, dtype=dtype)
        return self._decode(latents[0])
