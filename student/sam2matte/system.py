"""The Lightning system that fine-tunes SAM2-Matte on clips through SAM2's memory mechanism.

Each batch is ``frames [B,T,3,S,S]`` (0..1) and ``alpha [B,T,S,S]``. Frame 0 gets a simulated
prompt (a click inside the object, its box with jitter, or its mask), the other frames are
tracked through the memory bank; losses are L1 + Laplacian + gradient on alpha, plus a
segmentation term on the logits and BCE on the occlusion score.
"""
from __future__ import annotations

import logging

import numpy as np
import pytorch_lightning as pl
import torch

from mamakit import __version__
from mamakit.errors import ConfigError

from . import adapter
from .config import Sam2MatteConfig, tiny_config
from .losses import matting_losses
from .model import Sam2Matte

log = logging.getLogger(__name__)

PROMPT_KINDS = ("click", "box", "mask")


#: prompts are padded to this many points (label -1), as in the exported ``prompt`` graph
PROMPT_POINTS = 4


def simulate_prompt(alpha0: torch.Tensor, kind: str, rng: np.random.Generator, jitter: float = 0.1,
                    max_points: int = PROMPT_POINTS):
    """alpha0 [B,S,S] -> (points [B,P,2] | None, labels [B,P] int32 | None, mask_inputs [B,1,S,S] | None).
    Click and box prompts are padded to ``max_points`` with label -1 (the runtime does the same)."""
    b, s, _ = alpha0.shape
    hard = (alpha0 > 0.5).cpu().numpy()
    if kind == "mask":
        return None, None, torch.from_numpy(hard.astype(np.float32))[:, None].to(alpha0.device)
    pts, lbs = [], []
    for i in range(b):
        ys, xs = np.nonzero(hard[i])
        if len(xs) == 0:  # nothing visible: a click in the middle (the loss then teaches "absent")
            ys, xs = np.array([s // 2]), np.array([s // 2])
        if kind == "click":
            # prefer interior pixels: those whose 5x5 neighbourhood is inside
            import cv2

            inner = cv2.erode(hard[i].astype(np.uint8), np.ones((5, 5), np.uint8))
            iy, ix = np.nonzero(inner)
            if len(ix):
                ys, xs = iy, ix
            j = rng.integers(len(xs))
            pts.append([[xs[j], ys[j]]])
            lbs.append([1])
        else:
            x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
            w, h = x1 - x0 + 1, y1 - y0 + 1
            d = rng.uniform(-jitter, jitter, 4) * np.array([w, h, w, h])
            box = np.clip([x0 + d[0], y0 + d[1], x1 + d[2], y1 + d[3]], 0, s - 1)
            pts.append([[box[0], box[1]], [box[2], box[3]]])
            lbs.append([2, 3])
    for pt, lb in zip(pts, lbs):
        while len(pt) < max_points:
            pt.append([0.0, 0.0])
            lb.append(-1)
    points = torch.tensor(np.asarray(pts, np.float32), device=alpha0.device)
    labels = torch.tensor(np.asarray(lbs, np.int32), device=alpha0.device)
    return points, labels, None


def build_config(model: dict | None) -> Sam2MatteConfig:
    """A full config dict, or ``{"preset": "tiny" | "sam2.1-tiny|small|base_plus|large", ...fields}``."""
    import dataclasses

    from .config import sam21_config

    model = dict(model or {"preset": "tiny"})
    preset = model.pop("preset", None)
    if preset is None:
        return Sam2MatteConfig.from_dict(model)
    size = int(model.pop("image_size", 256 if preset == "tiny" else 1024))
    if preset == "tiny":
        base = tiny_config(size)
    elif preset.startswith("sam2.1-"):
        base = sam21_config(preset[len("sam2.1-"):], size)
    else:
        raise ConfigError(f"unknown SAM2-Matte preset {preset!r} (tiny, sam2.1-tiny, sam2.1-small, "
                          "sam2.1-base_plus, sam2.1-large)")
    return dataclasses.replace(base, **model) if model else base


class Sam2MatteSystem(pl.LightningModule):
    """Losses, prompt simulation, freezing and optimisers around a :class:`Sam2Matte`."""

    def __init__(
        self,
        model: dict | None = None,
        sam2_checkpoint: str | None = None,
        init_weights: str | None = None,
        freeze: list[str] | tuple[str, ...] = ("image_encoder",),
        lr: float = 1e-4,
        encoder_lr_mult: float = 0.1,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        loss_weights: dict | None = None,
        prompt_probs: dict | None = None,
        low_res: int | None = None,
        low_res_fraction: float = 0.7,
        seed: int = 0,
        p_degrade: float = 0.0,
        frame0_weight: float = 1.0,
        p_teacher_memory: float = 0.0,
        memory_lr_mult: float = 1.0,
        locality_prior: float = 0.0,
        memory_read_gain: float = 1.0,
        memory_mask_gain: float = 1.0,
        p_blank: float = 0.0,
        p_drop_highres: float = 0.0,
        p_drop_highres_prompt: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        cfg = build_config(model)
        self.model = Sam2Matte(cfg)
        if sam2_checkpoint:
            adapter.load_sam2_checkpoint(self.model.sam, sam2_checkpoint)
        if init_weights:
            from .io import load_sam2_matte

            self.model.load_weights(load_sam2_matte(init_weights).state_dict())
        # weight-only nudges of the memory path (applied once, at construction; see model.py)
        if locality_prior > 0:
            self.model.add_locality_prior(locality_prior)
        if memory_read_gain != 1.0 or memory_mask_gain != 1.0:
            self.model.amplify_memory_read(memory_read_gain, memory_mask_gain)
        groups = adapter.frozen_groups(self.model.sam)
        bad = sorted(set(freeze) - set(groups))
        if bad:
            raise ConfigError(f"cannot freeze {bad}: known parts are {sorted(groups)}")
        for name in freeze:
            for mod in groups[name]:
                mod.requires_grad_(False)
        self.freeze = tuple(freeze)
        self.weights = {"l1": 1.0, "lap": 1.0, "grad": 1.0, "seg": 0.5, "obj": 0.2, **(loss_weights or {})}
        probs = {"click": 0.45, "box": 0.45, "mask": 0.1, **(prompt_probs or {})}
        tot = sum(probs.values())
        self.prompt_p = np.array([probs[k] / tot for k in PROMPT_KINDS])
        self.rng = np.random.default_rng(seed)
        # progressive resolution: the first part of the run at ``low_res`` with tied weights
        self._low = {"model": self.model.tied_copy(low_res)} if low_res else {}
        self._t0 = None
        self.p_degrade, self.frame0_weight = float(p_degrade), float(frame0_weight)
        self.p_teacher = float(p_teacher_memory)
        self.p_blank = float(p_blank)
        self.p_drop_highres = float(p_drop_highres)
        self.p_drop_highres_prompt = float(p_drop_highres_prompt)

    def _degrade(self, frames: torch.Tensor) -> torch.Tensor:
        """Training only: each tracked frame (t >= 1) is, with probability ``p_degrade``, washed
        out (contrast x0.1-0.4 towards its mean colour) and noised, so that segmenting it on its
        own is unreliable and the memory of the earlier frames has to carry the object."""
        b, t = frames.shape[:2]
        pick = self.rng.random((b, t)) < self.p_degrade + self.p_blank
        pick[:, 0] = False
        if not pick.any():
            return frames
        frames = frames.clone()
        for i, j in zip(*np.nonzero(pick)):
            x = frames[i, j]
            mean = x.mean(dim=(1, 2), keepdim=True)
            # p_blank of them keep nothing of the frame (mean colour + noise): only the memory knows
            blank = self.rng.random() < self.p_blank / (self.p_degrade + self.p_blank)
            c = 0.0 if blank else float(self.rng.uniform(0.1, 0.4))
            sigma = float(self.rng.uniform(0.02, 0.08))
            frames[i, j] = (mean + c * (x - mean) + sigma * torch.randn_like(x)).clamp(0, 1)
        return frames

    def _use_low_res(self) -> bool:
        """True in the first ``low_res_fraction`` of the budget (CPU budget, else max_time, else steps)."""
        if not self._low or self.trainer is None:
            return False
        frac = self.hparams.low_res_fraction
        for cb in self.trainer.callbacks:
            if type(cb).__name__ == "CpuBudget":
                return cb.fraction() < frac
        for cb in self.trainer.callbacks:
            if type(cb).__name__ == "Timer" and getattr(cb, "_duration", None):
                import time

                if self._t0 is None:
                    self._t0 = time.monotonic()
                return time.monotonic() - self._t0 < frac * cb._duration
        max_steps = self.trainer.max_steps
        return max_steps is not None and max_steps > 0 and self.global_step < frac * max_steps

    @property
    def config(self) -> Sam2MatteConfig:
        return self.model.config

    def forward(self, frames, points=None, labels=None, mask_inputs=None, model=None, teacher_masks=None,
                teacher=None, drop_highres=None):
        return (model or self.model).track_clip(frames, points, labels, mask_inputs,
                                                encoder_grad="image_encoder" not in self.freeze,
                                                teacher_masks=teacher_masks, teacher=teacher,
                                                drop_highres=drop_highres)

    def _step(self, batch, stage: str, kind: str | None = None):
        frames, alpha = batch["frames"], batch["alpha"]
        model = None
        if stage == "train" and self._use_low_res():
            import torch.nn.functional as F

            model = self._low["model"]
            s = model.config.image_size
            b, t = alpha.shape[:2]
            frames = F.interpolate(frames.flatten(0, 1), size=(s, s), mode="area").unflatten(0, (b, t))
            alpha = F.interpolate(alpha.flatten(0, 1)[:, None], size=(s, s), mode="area")[:, 0].unflatten(0, (b, t))
        if stage == "train" and self.p_degrade + self.p_blank > 0:
            frames = self._degrade(frames)
        kind = kind or str(self.rng.choice(PROMPT_KINDS, p=self.prompt_p))
        points, labels, mask_inputs = simulate_prompt(alpha[:, 0], kind, self.rng)
        teacher = None
        if stage == "train" and self.p_teacher > 0:
            # teacher-forced memory: some tracked frames memorise the true mask (SAM2 trains with
            # corrective prompts on later frames for the same reason: memories worth reading)
            teacher = torch.from_numpy(self.rng.random(alpha.shape[:2]) < self.p_teacher).to(alpha.device)
        drop = None
        if stage == "train" and (self.p_drop_highres > 0 or self.p_drop_highres_prompt > 0):
            # [B,T] frames whose decoder high-res skips are zeroed. The skips carry per-frame saliency
            # around the memory attention (the 1/16 features of sessions 1-5 were spatially flat):
            # p_drop_highres drops them for whole clips, so those masks must come through the
            # memory-conditioned features; p_drop_highres_prompt for the PROMPTED frame (0) only, so
            # its mask must come through the prompt-conditioned features (box/click tokens used)
            b, t = alpha.shape[:2]
            per = np.zeros((b, t), dtype=bool)
            if self.p_drop_highres > 0:
                per |= (self.rng.random(b) < self.p_drop_highres)[:, None]
            if self.p_drop_highres_prompt > 0:
                per[:, 0] |= self.rng.random(b) < self.p_drop_highres_prompt
            drop = torch.from_numpy(per).to(alpha.device)
        out = self(frames, points, labels, mask_inputs, model=model, teacher_masks=alpha, teacher=teacher,
                   drop_highres=drop)
        if self.frame0_weight != 1.0 and alpha.shape[1] > 1:
            # the prompted frame weighs frame0_weight, each tracked frame 1 (terms averaged that way)
            t = alpha.shape[1]
            first = matting_losses({k: v[:, :1] for k, v in out.items()}, alpha[:, :1], self.weights)
            rest = matting_losses({k: v[:, 1:] for k, v in out.items()}, alpha[:, 1:], self.weights)
            w0 = self.frame0_weight
            terms = {k: (w0 * first[k] + (t - 1) * rest[k]) / (w0 + t - 1) for k in first}
        else:
            terms = matting_losses(out, alpha, self.weights)
        with torch.no_grad():
            p, g = out["alpha"] > 0.5, alpha > 0.5
            inter = (p & g).flatten(2).sum(-1).float()
            union = (p | g).flatten(2).sum(-1).float()
            iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).mean()
        bs = frames.shape[0]
        self.log_dict({f"{stage}/{k}": v.detach() for k, v in terms.items()}, batch_size=bs,
                      prog_bar=False, on_step=stage == "train", on_epoch=stage != "train")
        if stage == "train":
            self.log("train/size", float(frames.shape[-1]), batch_size=bs)
        self.log(f"{stage}/iou", iou, batch_size=bs, prog_bar=True, on_step=stage == "train", on_epoch=stage != "train")
        return terms["loss"]

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val", kind="click")

    def configure_optimizers(self):
        enc = [p for p in self.model.sam.image_encoder.parameters() if p.requires_grad]
        enc_ids = {id(p) for p in enc}
        mem = []
        if self.hparams.memory_lr_mult != 1.0:  # the memory path: attention, encoder, pointers, tpos
            sam = self.model.sam
            mods = [sam.memory_attention, sam.memory_encoder, sam.obj_ptr_proj]
            if getattr(sam, "obj_ptr_tpos_proj", None) is not None:
                mods.append(sam.obj_ptr_tpos_proj)
            mem = [p for m in mods for p in m.parameters() if p.requires_grad]
            if getattr(sam, "maskmem_tpos_enc", None) is not None and sam.maskmem_tpos_enc.requires_grad:
                mem.append(sam.maskmem_tpos_enc)
        mem_ids = {id(p) for p in mem}
        rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in enc_ids | mem_ids]
        groups = [{"params": rest, "lr": self.hparams.lr}]
        if enc:
            groups.append({"params": enc, "lr": self.hparams.lr * self.hparams.encoder_lr_mult})
        if mem:
            groups.append({"params": mem, "lr": self.hparams.lr * self.hparams.memory_lr_mult})
        opt = torch.optim.AdamW(groups, weight_decay=self.hparams.weight_decay)
        warm = max(1, int(self.hparams.warmup_steps))
        total = self.trainer.estimated_stepping_batches if self.trainer else 10_000
        total = int(total) if np.isfinite(total) else 10_000

        def lr_at(step):
            if step < warm:
                return float((step + 1) / warm)
            frac = min(1.0, (step - warm) / max(1, total - warm))
            return float(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["mamakit"] = {"kind": "sam2-matte", "config": self.config.to_dict(), "version": __version__}
