"""StudentNet: the one-step streaming matting student (encoder + recurrent decoder + refiner).

Contract (docs/architecture.md, "The student contract"):
``forward(src, guide, *state) -> (pha, fgr, *new_state)`` with static shapes, the downsample
ratio baked into the config, and states from ``initial_state(batch, height, width)`` (zeros).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mamakit.errors import ConfigError

from .decoder import RecurrentDecoder
from .encoder import ENCODERS, MobileNetV3Encoder
from .layers import half_size
from .refiner import REFINER_EXTRAS, DeepGuidedFilterRefiner

log = logging.getLogger(__name__)

#: StudentConfig.trunk_resize values
TRUNK_RESIZES = ("area", "bilinear")

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StudentConfig:
    """Everything needed to rebuild a StudentNet (saved as ``config.json``)."""

    size: str = "small"
    encoder: str = "mbv3-small"
    #: trunk size = round(frame size * ratio); 0.4 puts a 1280x720 frame at 512x288.
    downsample_ratio: float = 0.4
    #: decoder block widths (1/16, 1/8, 1/4, 1/2, trunk resolution).
    decoder_channels: tuple[int, ...] = (48, 32, 24, 16, 12)
    #: depthwise-separable convs per decoder block (same order as decoder_channels).
    decoder_separable: tuple[bool, ...] = (False, False, False, True, True)
    squeeze_excite: bool = True
    refiner_hidden: int = 16
    refiner_radius: int = 1
    #: box-mean radius (trunk pixels) of the refiner's coefficients before upsampling (He et al.'s
    #: mean_a / mean_b; 0 = off, as trained). A deployment setting: 1 steadies the edges of students
    #: trained at a 2x refinement and run at 5x (session 11); changes no weights.
    refiner_smooth: int = 0
    #: refine a *correction* of the full-resolution guide (alpha = guide + refined correction), so an
    #: untrained student returns the mask itself (experimental, off in the presets: with the
    #: cpu-default recipe it trained to a worse student, see docs/student.md); False: the guide
    #: enters only at the trunk resolution.
    guide_residual: bool = False
    #: a second full-resolution guide for the refiner's alpha: "none", "mask" (the coarse mask's own
    #: edge) or "chroma" (a learned colour projection of the frame); see refiner.py
    refiner_extra: str = "none"
    #: extra residual 3x3 blocks at 1/16 of the trunk (decoder.coarse); each starts as the identity, so
    #: ``model.init_from`` can grow a trained student by them exactly (see grow_state)
    coarse_blocks: int = 0
    #: how the frame and mask are shrunk to the trunk: "area" (an integer-factor block mean, then a
    #: bilinear resize for any remaining non-integer factor: every full-resolution pixel counts, so a
    #: moving object or a panning texture does not alias) or "bilinear" (samples ~2x2 pixels per trunk
    #: pixel: at a 5x reduction one pixel in 25; students before session 11 were deployed this way).
    #: Equal at an exact 2x reduction (the training crops' ratio 0.5), so a trained student can switch.
    trunk_resize: str = "area"
    #: alpha memory: the trunk-resolution alpha of the previous frame is a fifth recurrent state
    #: (``a0``, zeros at the start) and a fifth input channel of the encoder's first conv, so the student
    #: sees where the object was next to where this frame's mask says it is — a coarse mask that jitters
    #: from frame to frame (FIELD_GUIDE §1 degrades every frame on its own) can be weighed against the
    #: student's own last answer. Its first-conv weights start at zero (``grow_state``), so a trained
    #: student grows into this exactly and learns to use it in fine-tuning.
    alpha_memory: bool = False
    #: stabiliser (a deployment setting, changes no weights; 0 = off, as trained): the refiner's alpha
    #: coefficients of the previous frame, moved onto this frame by optical flow between the two
    #: frames and gated by how well that flow explains the frame (:mod:`mamakit.stabilize`), are
    #: blended into this frame's with this weight. They ride in a recurrent state ``c0`` that the
    #: caller carries with :class:`mamakit.stabilize.FlowCarry` (the runtime, the benches and
    #: :func:`mamakit.student.stream` do); fed back as it is, it is a plain blend with the last frame.
    stabilizer: float = 0.0
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        if self.encoder not in ENCODERS:
            raise ConfigError(f"student encoder {self.encoder!r} is unknown: use one of {', '.join(ENCODERS)}")
        if not 0.05 <= float(self.downsample_ratio) <= 1.0:
            raise ConfigError(f"student downsample_ratio must be in [0.05, 1], got {self.downsample_ratio}")
        if self.refiner_extra not in REFINER_EXTRAS:
            raise ConfigError(f"student refiner_extra {self.refiner_extra!r} is unknown: use one of "
                              f"{', '.join(REFINER_EXTRAS)}")
        if self.trunk_resize not in TRUNK_RESIZES:
            raise ConfigError(f"student trunk_resize {self.trunk_resize!r} is unknown: use one of "
                              f"{', '.join(TRUNK_RESIZES)}")
        if not 1 <= int(self.refiner_radius) <= 8 or not 0 <= int(self.refiner_smooth) <= 8:
            raise ConfigError(f"student refiner_radius must be in 1..8 and refiner_smooth in 0..8, got "
                              f"{self.refiner_radius} and {self.refiner_smooth}")
        object.__setattr__(self, "refiner_radius", int(self.refiner_radius))
        object.__setattr__(self, "refiner_smooth", int(self.refiner_smooth))
        if not 0 <= int(self.coarse_blocks) <= 8:
            raise ConfigError(f"student coarse_blocks must be in 0..8, got {self.coarse_blocks}")
        object.__setattr__(self, "coarse_blocks", int(self.coarse_blocks))
        if len(self.decoder_channels) != 5 or len(self.decoder_separable) != 5:
            raise ConfigError("student decoder_channels and decoder_separable need 5 entries (1/16 .. trunk)")
        if any(int(c) < 2 for c in self.decoder_channels):
            raise ConfigError(f"student decoder_channels must be >= 2, got {list(self.decoder_channels)}")
        object.__setattr__(self, "decoder_channels", tuple(int(c) for c in self.decoder_channels))
        object.__setattr__(self, "decoder_separable", tuple(bool(s) for s in self.decoder_separable))
        object.__setattr__(self, "downsample_ratio", float(self.downsample_ratio))
        if not 0.0 <= float(self.stabilizer) < 1.0:
            raise ConfigError(f"student stabilizer must be in [0, 1), got {self.stabilizer}")
        object.__setattr__(self, "stabilizer", float(self.stabilizer))
        if self.stabilizer > 0 and (self.refiner_extra != "none" or self.downsample_ratio >= 1.0):
            raise ConfigError("student stabilizer needs the refiner (downsample_ratio < 1) without an extra guide "
                              f"(refiner_extra 'none'), got ratio {self.downsample_ratio:g}, extra {self.refiner_extra!r}")

    @classmethod
    def preset(cls, name: str = "small", **overrides: Any) -> "StudentConfig":
        """``small`` (default, shipped, live: <= 4M params, <= 2 GFLOPs at 720p) or ``large`` (quality)."""
        if name not in PRESETS:
            raise ConfigError(f"student size {name!r} is unknown: use one of {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["decoder_channels"] = list(self.decoder_channels)
        d["decoder_separable"] = list(self.decoder_separable)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StudentConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"student config has unknown keys {unknown}: expected a subset of {sorted(names)}")
        version = int(data.get("format_version", FORMAT_VERSION))
        if version > FORMAT_VERSION:
            raise ConfigError(f"student config format_version {version} is newer than this mamakit "
                              f"({FORMAT_VERSION}): upgrade mamakit")
        return cls(**data)


PRESETS: dict[str, StudentConfig] = {
    "small": StudentConfig(),
    "large": StudentConfig(size="large", encoder="mbv3-large", decoder_channels=(128, 80, 40, 32, 16),
                           decoder_separable=(False, False, False, False, False), refiner_hidden=16),
}


def shrink(x: torch.Tensor, size: tuple[int, int], mode: str = "area") -> torch.Tensor:
    """``x`` [B,C,H,W] resized down to ``size`` (h, w) with static shapes only (ONNX: AveragePool
    and/or a Resize with a constant size). ``"area"``: a k x k block mean for the largest integer
    factor k both sides allow (k >= 2), then bilinear for what is left (nothing when the factor is
    exact, e.g. 1280x720 -> 256x144); ``"bilinear"``: bilinear only (aliases beyond 2x)."""
    H, W = int(x.shape[-2]), int(x.shape[-1])
    h, w = int(size[0]), int(size[1])
    if mode == "area":
        k = min(H // h, W // w)
        if k >= 2:
            x = F.avg_pool2d(x, k, stride=k)
            H, W = int(x.shape[-2]), int(x.shape[-1])
    if (H, W) == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def _down(x: torch.Tensor) -> torch.Tensor:
    """Halve (ceil) with a 3x3 average: same output size as the encoder's stride-2 convs."""
    return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


class StudentNet(nn.Module):
    """The student. Build with random weights from a config; load with :meth:`from_pretrained`."""

    def __init__(self, config: StudentConfig | None = None):
        super().__init__()
        self.config = config or StudentConfig()
        cfg = self.config
        self.encoder = MobileNetV3Encoder(cfg.encoder, in_channels=5 if cfg.alpha_memory else 4,
                                          se=cfg.squeeze_excite)
        self.decoder = RecurrentDecoder(self.encoder.channels, cfg.decoder_channels, img_channels=4,
                                        separable=cfg.decoder_separable, coarse_blocks=cfg.coarse_blocks)
        self.head = nn.Conv2d(cfg.decoder_channels[-1], 4, 1)
        self.refiner = DeepGuidedFilterRefiner(cfg.decoder_channels[-1], cfg.refiner_hidden, cfg.refiner_radius,
                                               cfg.refiner_extra, cfg.refiner_smooth, cfg.stabilizer)
        # start as "the guide, box-filtered and upsampled": zero alpha correction, zero foreground
        # residual, zero guided-filter slope (A = 0 -> output = local mean of the low-res prediction)
        for conv in (self.head, self.refiner.conv[-1]):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    #: config fields that change how a trained student runs but none of its weights
    DEPLOY_KEYS = ("downsample_ratio", "trunk_resize", "refiner_radius", "refiner_smooth", "stabilizer")

    def reconfigure(self, **changes: Any) -> "StudentNet":
        """Change deployment settings (:attr:`DEPLOY_KEYS`) of this student in place; returns it."""
        bad = sorted(set(changes) - set(self.DEPLOY_KEYS))
        if bad:
            raise ConfigError(f"student setting(s) {', '.join(bad)} cannot change after training: only "
                              f"{', '.join(self.DEPLOY_KEYS)} can")
        self.config = dataclasses.replace(self.config, **changes)
        self.refiner.radius = self.config.refiner_radius
        self.refiner.smooth = self.config.refiner_smooth
        self.refiner.stabilizer = self.config.stabilizer
        return self

    # ---- shapes -------------------------------------------------------------------------
    def trunk_size(self, height: int, width: int) -> tuple[int, int]:
        r = self.config.downsample_ratio
        if r >= 1.0:
            return int(height), int(width)
        return max(16, int(round(height * r))), max(16, int(round(width * r)))

    def state_names(self) -> list[str]:
        """r1..r4 (the GRUs, finest first), then ``a0`` (the previous trunk alpha) with alpha_memory,
        then ``c0`` (the stabiliser's coefficients and weight) with stabilizer > 0."""
        return (["r1", "r2", "r3", "r4"] + (["a0"] if self.config.alpha_memory else [])
                + (["c0"] if self.config.stabilizer > 0 else []))

    def state_carry(self) -> dict[str, str]:
        """How each state goes from one frame's output to the next frame's input
        (:data:`mamakit.stabilize.CARRIES`): ``"flow"`` for ``c0``, ``"copy"`` for the rest."""
        return {n: ("flow" if n == "c0" else "copy") for n in self.state_names()}

    def state_shapes(self, batch: int, height: int, width: int) -> list[tuple[int, int, int, int]]:
        h0, w0 = h, w = self.trunk_size(height, width)
        shapes = []
        for c in self.decoder.state_channels():
            h, w = half_size(h, w)
            shapes.append((int(batch), int(c), h, w))
        if self.config.alpha_memory:
            shapes.append((int(batch), 1, h0, w0))
        if self.config.stabilizer > 0:
            shapes.append((int(batch), 3, h0, w0))
        return shapes

    def initial_state(self, batch: int, height: int, width: int, device=None,
                      dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
        """Zeros with the static shapes the graph expects for a ``height x width`` frame."""
        if device is None or dtype is None:
            p = next(self.parameters())
            device = device or p.device
            dtype = dtype or p.dtype
        return tuple(torch.zeros(s, device=device, dtype=dtype) for s in self.state_shapes(batch, height, width))

    # ---- forward ------------------------------------------------------------------------
    def forward(self, src: torch.Tensor, guide: torch.Tensor, *state: torch.Tensor):
        """One frame. ``src`` [B,3,H,W] 0..1, ``guide`` [B,1,H,W] 0..1, ``state`` = :meth:`state_names`.

        Returns ``(pha [B,1,H,W], fgr [B,3,H,W], r1', r2', r3', r4'[, a0'])``.
        """
        pha, fgr, new_state, _ = self.forward_features(src, guide, *state)
        return (pha, fgr, *new_state)

    def forward_alpha(self, src: torch.Tensor, guide: torch.Tensor, *state: torch.Tensor):
        """Like :meth:`forward` without the foreground colour: ``(pha, r1', r2', r3', r4')``.

        The same alpha, bit for bit; the full-resolution refinement does a quarter of the work
        (exported with ``mamakit export onnx --no-fgr`` for runtimes that estimate colour themselves).
        """
        pha, _, new_state, _ = self.forward_features(src, guide, *state, want_fgr=False)
        return (pha, *new_state)

    def forward_features(self, src, guide, *state, want_fgr: bool = True):
        """Like :meth:`forward` but also returns the trunk's deepest features (for distillation)."""
        names = self.state_names()
        if len(state) != len(names):
            raise ValueError(f"StudentNet expects {len(names)} state tensors ({', '.join(names)}), got {len(state)}: "
                             "start with initial_state(batch, height, width)")
        extra = dict(zip(names[4:], state[4:]))
        a0, c0 = extra.get("a0"), extra.get("c0")
        state = state[:4]
        H, W = int(src.shape[-2]), int(src.shape[-1])
        h, w = self.trunk_size(H, W)
        if (h, w) == (H, W):
            low = torch.cat([src, guide], dim=1)
        else:  # resize, then concatenate at the trunk size (no full-resolution copy)
            mode = self.config.trunk_resize
            low = torch.cat([shrink(src, (h, w), mode), shrink(guide, (h, w), mode)], dim=1)
        x = low * 2 - 1
        f2, f4, f8, f16 = self.encoder(torch.cat([x, a0 * 2 - 1], dim=1) if a0 is not None else x)
        s2 = _down(x)
        s4 = _down(s2)
        s8 = _down(s4)
        hid, r1, r2, r3, r4 = self.decoder(x, f2, f4, f8, f16, s2, s4, s8, *state)
        out = self.head(hid)
        base_src = low[:, :3]
        base_fgr = out[:, :3] + base_src
        residual = self.config.guide_residual
        # a correction of the guide: the mask is a coarse alpha
        base_pha = out[:, 3:] if residual else out[:, 3:] + low[:, 3:]
        if (h, w) != (H, W):  # (the config keeps a stabiliser's c0 to students with a refiner)
            fgr, pha, c0 = self.refiner(src, base_src, base_fgr, base_pha, hid, want_fgr, guide, low[:, 3:], c0)
        else:
            fgr, pha = (base_fgr if want_fgr else None), base_pha
        if residual:
            pha = pha + guide
        pha = torch.clamp(pha, 0.0, 1.0)
        fgr = torch.clamp(fgr, 0.0, 1.0) if fgr is not None else None
        new_state = (r1, r2, r3, r4)
        if a0 is not None:
            new_state = new_state + (torch.clamp(base_pha, 0.0, 1.0),)
        if c0 is not None:
            new_state = new_state + (c0,)
        return pha, fgr, new_state, f16

    def forward_clip(self, src: torch.Tensor, guide: torch.Tensor, state: Sequence[torch.Tensor] | None = None,
                     mask_valid: torch.Tensor | None = None, detach_feedback: bool = True):
        """A clip, frame by frame: ``src`` [B,T,3,H,W], ``guide`` [B,T,1,H,W].

        ``mask_valid`` [B,T] bool: where False, the frame is guided by the previous predicted alpha
        (zeros before the first prediction), detached when ``detach_feedback``. Returns
        ``(pha [B,T,1,H,W], fgr [B,T,3,H,W], state)``.
        """
        B, T, _, H, W = src.shape
        if state is None:
            state = self.initial_state(B, H, W, device=src.device, dtype=src.dtype)
        phas, fgrs = [], []
        prev = torch.zeros_like(guide[:, 0])
        for t in range(T):
            g = guide[:, t]
            if mask_valid is not None:
                fb = prev.detach() if detach_feedback else prev
                g = torch.where(mask_valid[:, t].view(B, 1, 1, 1), g, fb)
            pha, fgr, *state = self.forward(src[:, t], g, *state)
            prev = pha
            phas.append(pha)
            fgrs.append(fgr)
        return torch.stack(phas, 1), torch.stack(fgrs, 1), tuple(state)

    # ---- disk ---------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into folder ``path`` (atomically)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "kind": "student"})
            (tmp / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "StudentNet":
        """Rebuild from ``config.json`` and load ``model.safetensors`` strictly."""
        from safetensors.torch import load_file

        path = Path(path)
        cfg_file, w_file = path / CONFIG_NAME, path / WEIGHTS_NAME
        if not cfg_file.is_file() or not w_file.is_file():
            raise ConfigError(f"{path} is not a student folder: expected {CONFIG_NAME} and {WEIGHTS_NAME} "
                              "(write one with StudentNet.save_pretrained)")
        try:
            config = StudentConfig.from_dict(json.loads(cfg_file.read_text()))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{cfg_file} is not valid JSON ({exc}): re-export the student") from exc
        model = cls(config)
        try:
            state = load_file(str(w_file))
        except Exception as exc:
            raise ConfigError(f"{w_file} cannot be read ({exc}): the file is corrupt; re-save it") from exc
        model.load_weights(state, source=str(w_file))
        model.eval()
        return model

    def grow_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` of a smaller student of the same trunk — no ``refiner_extra`` guide, no ``alpha_memory``, fewer
        ``coarse_blocks`` — grown to this model's shapes so that loading it gives exactly the smaller
        student's output: the extra guide gets a zero slope, the extra blocks this model's own
        identity-initialised weights. A state that already fits is returned as it is (a copy)."""
        from .refiner import extend_refiner_state

        out = dict(state)
        stem = "encoder.stages.0.0.0.weight"
        if self.config.alpha_memory and stem in out and out[stem].shape[1] == 4:
            w = out[stem]  # the previous-alpha channel enters with zero weights
            out[stem] = torch.cat([w, w.new_zeros(w.shape[0], 1, *w.shape[2:])], dim=1)
        key = "refiner.conv.0.weight"
        if (self.config.refiner_extra != "none" and key in out
                and out[key].shape[1] < self.state_dict()[key].shape[1]):
            out = extend_refiner_state(out, "refiner.", self.config.refiner_extra)
        for k, v in self.state_dict().items():
            if k.startswith("decoder.coarse.") and k not in out:
                out[k] = v.detach().clone()
        return out

    def load_weights(self, state: dict[str, torch.Tensor], source: str = "weights") -> None:
        """Load a state dict strictly; missing/unexpected keys or shape mismatches are a ConfigError."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        bad = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
        if missing or unexpected or bad:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
            if bad:
                parts.append(f"{len(bad)} with the wrong shape (e.g. {bad[0]})")
            raise ConfigError(f"{source} does not match the student config: " + ", ".join(parts)
                              + "; use the config the weights were trained with")
        self.load_state_dict(state, strict=True)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: StudentNet, height: int = 720, width: int = 1280) -> int:
    """FLOPs (= 2 x multiply-accumulates, torch FlopCounterMode convention) of one frame."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    src = torch.rand(1, 3, height, width)
    guide = torch.rand(1, 1, height, width)
    state = model.initial_state(1, height, width, device=src.device, dtype=src.dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(src, guide, *state)
    model.train(was_training)
    return int(counter.get_total_flops())


def stream(model: StudentNet, frames, masks=None, first_frame_only: bool = False):
    """Run ``model`` over a clip as the runtime does: frame by frame, state carried (``c0`` by
    :class:`mamakit.stabilize.FlowCarry`, the rest as it is), the mask as the guide — or, with
    ``first_frame_only`` or ``masks=None``, the student's own previous alpha after frame 0.

    ``frames`` THxWx3 uint8 RGB, ``masks`` THxW float 0..1. Returns THxW float32 alpha.
    """
    import numpy as np

    from mamakit.stabilize import FlowCarry

    frames = np.asarray(frames)
    T, H, W, _ = frames.shape
    p = next(model.parameters())
    state = list(model.initial_state(1, H, W, device=p.device, dtype=p.dtype))
    carry = model.state_carry()
    flows = {}
    for i, n in enumerate(model.state_names()):
        if carry[n] == "flow":
            h, w = state[i].shape[-2:]
            flows[i] = FlowCarry((W, H), (int(w), int(h)))
    out = np.empty((T, H, W), np.float32)
    prev = torch.zeros(1, 1, H, W, device=p.device, dtype=p.dtype)
    with torch.no_grad():
        for t in range(T):
            for i, fc in flows.items():
                s = fc.carry(fc.features(frames[t]), state[i].cpu().numpy())
                state[i] = torch.from_numpy(s).to(device=p.device, dtype=p.dtype)
            src = torch.from_numpy(frames[t]).permute(2, 0, 1)[None].to(device=p.device, dtype=p.dtype) / 255.0
            if masks is None or (first_frame_only and t > 0):
                guide = prev
            else:
                guide = torch.from_numpy(np.asarray(masks[t], np.float32))[None, None].to(device=p.device, dtype=p.dtype)
            pha, _, *state = model(src, guide, *state)
            prev = pha
            out[t] = pha[0, 0].float().cpu().numpy()
    return out
