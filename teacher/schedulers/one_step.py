"""VideoMaMa's one-step sampling: pure noise in, fixed timestep 1, the UNet output *is* the latent."""
from __future__ import annotations

import torch


class OneStepSampler:
    """``latent = denoise(noise, t=1)`` (FIELD_GUIDE §1)."""

    steps = 1
    timestep = 1.0

    def sample(self, denoise, shape, *, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
        noise = torch.randn(shape, generator=generator, device=generator.device if generator else device,
                            dtype=torch.float32).to(device=device, dtype=dtype)
        t = torch.tensor([self.timestep], device=device, dtype=dtype)
        return denoise(noise, t)
