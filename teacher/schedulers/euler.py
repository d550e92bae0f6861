"""Multi-step sampling with SVD's Euler scheduler (diffusers ``EulerDiscreteScheduler``).

For mask-conditioned checkpoints trained as diffusion models (v-prediction, Karras sigmas, as
SVD-XT). The official VideoMaMa checkpoint is one-step: use :class:`OneStepSampler` for it.
"""
from __future__ import annotations

import torch


class EulerSampler:
    def __init__(self, steps: int, scheduler_config: dict | None = None):
        from diffusers import EulerDiscreteScheduler

        from mamakit.teacher.videomama.config import SVD_SCHEDULER_CONFIG

        self.steps = int(steps)
        self.scheduler = EulerDiscreteScheduler.from_config(dict(scheduler_config or SVD_SCHEDULER_CONFIG))

    def sample(self, denoise, shape, *, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
        sched = self.scheduler
        sched.set_timesteps(self.steps, device=device)
        latents = torch.randn(shape, generator=generator, device=generator.device if generator else device,
                              dtype=torch.float32).to(device)
        latents = latents * sched.init_noise_sigma
        for t in sched.timesteps:
            model_in = sched.scale_model_input(latents, t).to(dtype)
            pred = denoise(model_in, t.reshape(1).to(device=device, dtype=dtype))
            latents = sched.step(pred.float(), t, latents, generator=generator).prev_sample
        return latents.to(dtype)
