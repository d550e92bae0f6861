"""``VideoMaMaTeacher``: numpy frames + masks in, alpha out, streamed over overlapping windows."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from mamakit.errors import ConfigError
from mamakit.teacher.output import TeacherOutput
from mamakit.teacher.prep import check_clip, empty_mask, fit_mask, resize_alpha, resize_image
from mamakit.teacher.windows import stream_windows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoMaMaOptions:
    """Inference options. Defaults follow the official inference (1024×576, 16 frames, seed 42)."""

    dtype: str = "fp32"                  # fp32 | fp16 | bf16
    device: str = "auto"                 # auto (cuda if available) | cpu | cuda | cuda:N
    deterministic: bool = True           # VAE latent mode() instead of sample(); fixed noise seed per window
    seed: int = 42                       # the official default noise seed
    processing_size: tuple = (1024, 576)  # (w, h) the model runs at; alpha is resized back to the source
    keep_aspect: bool = False            # fit the long side to max(processing_size), sides rounded to 64
    window: int = 16                     # frames per pass
    overlap: int = 2                     # frames shared by consecutive windows (guided by the previous alpha)
    decode_chunk: int = 8                # frames per VAE encode/decode call
    cpu_offload: bool = False            # sequential CPU offload: each layer moves to the device only to run
    steps: int = 1                       # 1 = VideoMaMa's one-step; >1 = SVD Euler sampling
    fps_id: int = 7
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.0

    def __post_init__(self):
        if len(tuple(self.processing_size)) != 2 or min(self.processing_size) < 16:
            raise ConfigError(f"processing_size must be (width, height) >= 16, got {self.processing_size}")
        if self.window < 1 or not 0 <= self.overlap < self.window:
            raise ConfigError(f"need window >= 1 and 0 <= overlap < window, got window={self.window} "
                              f"overlap={self.overlap}")


def processing_size_for(src_w: int, src_h: int, opts: VideoMaMaOptions, multiple: int = 64) -> tuple[int, int]:
    """The (w, h) the model runs at for a source of ``src_w``×``src_h``."""
    pw, ph = (int(v) for v in opts.processing_size)
    if not opts.keep_aspect:
        return pw, ph
    long_side = max(pw, ph)
    scale = long_side / max(src_w, src_h)

    def r(v: float) -> int:
        return max(multiple, int(round(v / multiple)) * multiple)

    return r(src_w * scale), r(src_h * scale)


def _sequential_offload(module, device) -> None:
    """Keep weights on the CPU; move each leaf module to ``device`` only while it runs."""
    import torch

    def pre(mod, args):
        mod.to(device)

    def post(mod, args, out):
        mod.to("cpu")

    for sub in module.modules():
        if any(True for _ in sub.parameters(recurse=False)) or any(True for _ in sub.buffers(recurse=False)):
            sub.register_forward_pre_hook(pre)
            sub.register_forward_hook(post)
    module.to(torch.device("cpu"))


class VideoMaMaTeacher:
    name = "videomama"
    version = "1.0"

    def __init__(self, unet, vae, options: VideoMaMaOptions | None = None, *, weights: str = "custom"):
        import torch

        from mamakit.teacher.schedulers import build_sampler
        from mamakit.teacher.videomama.loading import torch_dtype
        from mamakit.teacher.videomama.pipeline import VideoMaMaPipeline

        self.options = opts = options or VideoMaMaOptions()
        self.weights = weights
        device = opts.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.device = torch.device(device)
        except RuntimeError as exc:
            raise ConfigError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from exc
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device} asked for but CUDA is not available; use --device cpu")
        self.dtype = torch_dtype(opts.dtype)
        if unet.dtype != self.dtype:
            unet = unet.to(dtype=self.dtype)
        if vae.dtype != self.dtype:
            vae = vae.to(dtype=self.dtype)
        unet.eval().requires_grad_(False)
        vae.eval().requires_grad_(False)
        if opts.cpu_offload and self.device.type != "cpu":
            _sequential_offload(unet, self.device)
            _sequential_offload(vae, self.device)
        else:
            unet.to(self.device)
            vae.to(self.device)
        self.pipeline = VideoMaMaPipeline(
            unet, vae, build_sampler(opts.steps), fps_id=opts.fps_id, motion_bucket_id=opts.motion_bucket_id,
            noise_aug_strength=opts.noise_aug_strength, decode_chunk=opts.decode_chunk,
            deterministic=opts.deterministic, device=self.device, dtype=self.dtype)

    def to(self, device) -> "VideoMaMaTeacher":
        """Move the models to ``device`` (used by ``mamakit label`` to put each rank on its own GPU)."""
        import torch

        device = torch.device(device)
        if not self.options.cpu_offload:
            self.pipeline.unet.to(device)
            self.pipeline.vae.to(device)
        self.device = self.pipeline._device = device
        return self

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def tiny(cls, seed: int = 0, in_channels: int = 12, **options) -> "VideoMaMaTeacher":
        """The tiny random-weight configuration of the same classes (tests, demos)."""
        unet, vae = build_tiny_models(seed, in_channels)
        options.setdefault("processing_size", (128, 64))
        return cls(unet, vae, VideoMaMaOptions(**_tuple_size(options)), weights=f"tiny-random-seed{seed}")

    @classmethod
    def from_pretrained(cls, base_model, unet, *, unet_config=None, **options) -> "VideoMaMaTeacher":
        from mamakit.teacher.videomama.loading import load_videomama

        opts = VideoMaMaOptions(**_tuple_size(options))
        u, v = load_videomama(base_model, unet, unet_config=unet_config, dtype=opts.dtype)
        return cls(u, v, opts, weights=str(unet))

    @classmethod
    def build(cls, *, base_model=None, unet=None, unet_config=None, tiny: bool = False, seed: int = 0,
              **options) -> "VideoMaMaTeacher":
        if tiny:
            return cls.tiny(seed=seed, **options)
        return cls.from_pretrained(base_model, unet, unet_config=unet_config, **options)

    # -- inference ---------------------------------------------------------------------------------
    def run_window(self, frames, masks) -> list[np.ndarray]:
        """One window of same-size frames (source resolution) -> alphas at the source size."""
        import torch

        h, w = frames[0].shape[:2]
        pw, ph = processing_size_for(w, h, self.options, multiple=max(64, self.pipeline.unet_multiple))
        x = np.stack([resize_image(f, pw, ph) for f in frames]).astype(np.float32)
        m = np.stack([resize_alpha(mk, pw, ph) for mk in masks]).astype(np.float32)
        xt = torch.from_numpy(x).permute(0, 3, 1, 2).div_(127.5).sub_(1.0)
        mt = torch.from_numpy(m).unsqueeze(1)
        gen = torch.Generator("cpu").manual_seed(int(self.options.seed))
        alpha = self.pipeline(xt, mt, generator=gen).float().cpu().numpy()
        out = []
        for a, mk in zip(alpha, masks):
            if empty_mask(mk):
                out.append(np.zeros((h, w), np.float32))
            else:
                out.append(np.clip(resize_alpha(a, w, h), 0.0, 1.0))
        return out

    def stream(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        """``(frame uint8 HxWx3, mask float HxW)`` pairs -> one alpha (float32 HxW) per frame, bounded memory."""
        fitted = ((f, fit_mask(m, f.shape[1], f.shape[0])) for f, m in pairs)
        yield from stream_windows(fitted, self.run_window, self.options.window, self.options.overlap)

    def __call__(self, frames: np.ndarray, masks: np.ndarray) -> TeacherOutput:
        frames, masks = check_clip(frames, masks)
        alpha = np.stack(list(self.stream(zip(frames, masks))))
        return TeacherOutput(alpha=alpha, info={"teacher": self.name, "weights": self.weights})

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "weights": self.weights,
                "options": {k: (list(v) if isinstance(v, tuple) else v)
                            for k, v in dataclasses.asdict(self.options).items()}}


def _tuple_size(options: dict) -> dict:
    if "processing_size" in options and options["processing_size"] is not None:
        options["processing_size"] = tuple(int(v) for v in options["processing_size"])
    return options


def build_tiny_models(seed: int = 0, in_channels: int = 12):
    """Random-weight tiny UNet + VAE (the same diffusers classes as the official teacher)."""
    import torch
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from mamakit.teacher.videomama.config import TINY_UNET_CONFIG, TINY_VAE_CONFIG

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNetSpatioTemporalConditionModel(**{**TINY_UNET_CONFIG, "in_channels": in_channels})
        vae = AutoencoderKLTemporalDecoder(**TINY_VAE_CONFIG)
    return unet.eval(), vae.eval()
