"""Samplers, separate from the denoiser (one algorithm per file).

A sampler turns a ``denoise(latents, timestep) -> model_output`` callable (the UNet with the
conditioning already bound) into a clean latent. ``OneStepSampler`` is VideoMaMa's own
procedure; ``EulerSampler`` drives diffusers' ``EulerDiscreteScheduler`` for ``steps > 1``.
"""
from mamakit.teacher.schedulers.euler import EulerSampler
from mamakit.teacher.schedulers.one_step import OneStepSampler


def build_sampler(steps: int):
    from mamakit.errors import ConfigError

    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    return OneStepSampler() if steps == 1 else EulerSampler(steps)


__all__ = ["OneStepSampler", "EulerSampler", "build_sampler"]
