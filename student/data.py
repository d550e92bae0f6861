"""Training data for distillation: clips of T frames with targets, coarse masks and augmentations.

Sources (``StudentData(source=...)``; ``auto`` = ``dataset`` when ``root`` is given, else ``synth``):

* ``"synth"``   — clips made on the fly by :func:`mamakit.synth.make_clip` (GT composites; anyone
  can regenerate them from the seed);
* ``"dataset"`` — a folder in the project's dataset format (:class:`mamakit.dataset.Dataset`),
  e.g. teacher pseudo-labels written by ``mamakit label``, or GT composites from ``mamakit synth``.

Targets (``targets=...``; ``auto`` = ``teacher`` for synth clips when a teacher is named, else
``alpha``): ``"alpha"`` uses the alpha stored with the clip (GT for synth, the
pseudo-label or GT for a dataset); ``"teacher"`` runs a teacher (``mamakit.teacher.build_teacher``)
on the whole clip the first time it is sampled and caches the result in ``cache_dir``, so each
clip is labelled once (across epochs, workers and resumed runs).

Each sample: one random window of ``clip_frames`` frames, one random resized crop (with a small
drift across frames for motion), flip, colour jitter, coarse masks from
:func:`mamakit.degrade.degrade_masks` (FIELD_GUIDE §1) and mask dropping for whole stretches
(``mask_valid`` False: the student is guided by its own previous alpha). Corrupt samples are
skipped and counted (``batch["skipped"]``); the system reports them at the end of each epoch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset as TorchDataset

from mamakit.errors import ConfigError, DependencyError

log = logging.getLogger(__name__)

SOURCES = ("auto", "synth", "dataset")
TARGETS = ("auto", "alpha", "teacher")


@dataclass
class RawClip:
    """A whole clip before windowing: uint8 frames ``[T,H,W,3]``, float alpha ``[T,H,W]``."""

    key: str
    frames: np.ndarray
    alpha: np.ndarray
    masks: Optional[np.ndarray] = None
    fgr: Optional[np.ndarray] = None


# ---------------------------------------------------------------------------------------------
class ClipSource:
    """Indexable clips. ``load(i)`` returns a :class:`RawClip`; ``lengths`` gives frame counts."""

    def __len__(self) -> int:
        return len(self.lengths)

    lengths: list[int]

    def key(self, i: int) -> str:
        raise NotImplementedError

    def load(self, i: int) -> RawClip:
        raise NotImplementedError


class SynthSource(ClipSource):
    def __init__(self, clips: int, frames: int, size: tuple[int, int], seed: int):
        if clips < 1:
            raise ConfigError(f"synth_clips must be >= 1, got {clips}: the dataset would be empty")
        self.n, self.frames, self.size, self.seed = int(clips), int(frames), (int(size[0]), int(size[1])), int(seed)
        self.lengths = [self.frames] * self.n

    def key(self, i: int) -> str:
        return f"synth-s{self.seed + i}-f{self.frames}-{self.size[0]}x{self.size[1]}"

    def load(self, i: int) -> RawClip:
        from mamakit.synth import make_clip

        c = make_clip(self.seed + i, self.frames, self.size)
        fgr = getattr(c, "fgr", None)
        if fgr is not None:
            fgr = np.asarray(fgr)
            if fgr.dtype != np.uint8:
                fgr = np.clip(np.asarray(fgr, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return RawClip(self.key(i), np.asarray(c.frames), np.asarray(c.alpha, np.float32),
                       None if c.masks is None else np.asarray(c.masks, np.float32), fgr)


class DatasetSource(ClipSource):
    def __init__(self, root: str):
        from mamakit.dataset import Dataset

        self.root = Path(root)
        self.ds = Dataset(self.root)
        self.lengths = [len(c) for c in self.ds]
        self._tag = hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:8]

    def key(self, i: int) -> str:
        return f"ds{self._tag}-{self.ds.ids[i]}"

    def load(self, i: int) -> RawClip:
        clip = self.ds[i]
        return RawClip(self.key(i), clip.frames(), clip.alpha(), clip.masks() if clip.has_masks else None,
                       clip.fgr() if clip.has_fgr else None)


class TeacherTargets:
    """Label whole clips with a teacher once; cache ``alpha`` as 16-bit in ``cache_dir/<key>.npz``."""

    def __init__(self, name: str, options: dict | None, cache_dir: str | os.PathLike | None):
        self.name, self.options = name, dict(options or {})
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._teacher = None
        tag = json.dumps({"teacher": name, "options": self.options}, sort_keys=True, default=str)
        self.tag = hashlib.sha1(tag.encode()).hexdigest()[:10]
        self.labelled = 0

    def teacher(self):
        if self._teacher is None:
            from mamakit.teacher import build_teacher

            self._teacher = build_teacher(self.name, **self.options)
        return self._teacher

    def path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"{key}-{self.name}-{self.tag}.npz"

    def __call__(self, clip: RawClip, masks: np.ndarray) -> np.ndarray:
        p = self.path(clip.key)
        if p is not None and p.is_file():
            with np.load(p, allow_pickle=False) as z:
                return z["alpha"].astype(np.float32) / 65535.0
        out = self.teacher()(clip.frames, masks.astype(np.float32))
        alpha = np.clip(np.asarray(out.alpha, np.float32), 0.0, 1.0)
        self.labelled += 1
        if p is not None:
            from mamakit.fsutil import atomic_path

            p.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(p) as tmp:
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, alpha=np.round(alpha * 65535.0).astype(np.uint16))
        return alpha


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentConfig:
    crop_size: tuple[int, int] = (192, 192)  # (width, height) of training crops
    scale_range: tuple[float, float] = (0.5, 1.0)  # crop side as a fraction of the frame's short side
    drift_px: float = 8.0  # max crop drift per frame (in output pixels): camera motion
    p_flip: float = 0.5
    color_jitter: float = 0.15  # brightness/contrast/saturation amplitude; hue shift = a third of it
    p_mask_drop: float = 0.4  # per clip: masks dropped for one whole stretch after frame 0
    p_first_frame_only: float = 0.2  # per clip: only frame 0 has a mask
    p_stored_masks: float = 0.5  # use the clip's own coarse masks (when it has them) instead of degrading


def _crop_boxes(rng: np.random.Generator, T: int, H: int, W: int, aug: AugmentConfig):
    cw, ch = aug.crop_size
    aspect = cw / ch
    hmax = min(float(H), W / aspect)
    bh = rng.uniform(*aug.scale_range) * hmax
    bw = bh * aspect
    x0 = rng.uniform(0, W - bw)
    y0 = rng.uniform(0, H - bh)
    v = rng.uniform(-1, 1, size=2) * aug.drift_px * (bw / cw)
    boxes = []
    for t in range(T):
        x = float(np.clip(x0 + v[0] * t, 0, W - bw))
        y = float(np.clip(y0 + v[1] * t, 0, H - bh))
        boxes.append((x, y, bw, bh))
    return boxes


def _resample(x: torch.Tensor, boxes, out_hw: tuple[int, int]) -> torch.Tensor:
    """Crop each frame ``x[t]`` ([T,C,H,W]) to its box and resize to ``out_hw`` (bilinear)."""
    T, C, H, W = x.shape
    oh, ow = out_hw
    theta = torch.zeros(T, 2, 3)
    for t, (bx, by, bw, bh) in enumerate(boxes):
        theta[t, 0, 0] = bw / W
        theta[t, 0, 2] = (2 * bx + bw) / W - 1
        theta[t, 1, 1] = bh / H
        theta[t, 1, 2] = (2 * by + bh) / H - 1
    grid = F.affine_grid(theta, [T, C, oh, ow], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _jitter(x: torch.Tensor, rng: np.random.Generator, amp: float) -> torch.Tensor:
    """Same colour jitter for every frame of the clip: ``x`` [T,3,H,W] 0..1."""
    if amp <= 0:
        return x
    b = 1 + rng.uniform(-amp, amp)
    c = 1 + rng.uniform(-amp, amp)
    s = 1 + rng.uniform(-amp, amp)
    shift = torch.tensor(rng.uniform(-amp / 3, amp / 3, size=3), dtype=x.dtype).view(1, 3, 1, 1)
    x = x * b
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean
    gray = x.mean(dim=1, keepdim=True)
    x = (x - gray) * s + gray + shift
    return x.clamp(0, 1)


def mask_validity(rng: np.random.Generator, T: int, aug: AugmentConfig) -> np.ndarray:
    valid = np.ones(T, bool)
    if T > 1:
        u = rng.random()
        if u < aug.p_first_frame_only:
            valid[1:] = False
        elif u < aug.p_first_frame_only + aug.p_mask_drop:
            start = int(rng.integers(1, T))
            length = int(rng.integers(1, T - start + 1))
            valid[start:start + length] = False
    return valid


# ---------------------------------------------------------------------------------------------
class ClipWindows(TorchDataset):
    """Map-style dataset of augmented windows. Sample ``i`` of epoch ``e`` is a pure function of
    ``(seed, e, i)``: deterministic whatever the number of workers, and resumable."""

    def __init__(self, source: ClipSource, clip_frames: int, samples: int, aug: AugmentConfig,
                 degrade: dict | None, targets: TeacherTargets | None, seed: int, train: bool = True,
                 degrade_ref_height: int | None = None):
        from mamakit.degrade import DegradeConfig

        self.source, self.T, self.samples, self.aug = source, int(clip_frames), int(samples), aug
        self.degrade = DegradeConfig.from_dict(degrade)
        #: None: masks are degraded on the training crop (the crop's pixels set how coarse 8x is);
        #: a height: masks are degraded on the whole source frame before cropping, with the pixel
        #: knobs scaled to that reference height (DegradeConfig.for_height), so a training mask is as
        #: coarse relative to the object as a mask on a video of that height.
        self.degrade_ref_height = int(degrade_ref_height) if degrade_ref_height else None
        self.targets, self.seed, self.train = targets, int(seed), train
        self.epoch = 0
        self.windows = [(c, s) for c, n in enumerate(source.lengths) for s in range(0, n - self.T + 1)]
        self.eligible = sorted({c for c, _ in self.windows})

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, self.epoch if self.train else 0, int(i)])
        if self.train:
            c = self.eligible[int(rng.integers(len(self.eligible)))]
            starts = [s for cc, s in self.windows if cc == c]
            start = starts[int(rng.integers(len(starts)))]
        else:
            c = self.eligible[i % len(self.eligible)]
            start = 0
        try:
            return self._make(c, start, rng)
        except (ConfigError, DependencyError):
            raise
        except Exception as exc:  # a corrupt or unreadable clip: skip it, count it
            log.warning("skipping sample %d (clip %s): %s", i, self.source.key(c), exc)
            return None

    def _make(self, c: int, start: int, rng: np.random.Generator) -> dict[str, Any]:
        raw = self.source.load(c)
        sl = slice(start, start + self.T)
        gt_alpha = raw.alpha
        if self.targets is not None:
            teacher_masks = raw.masks if raw.masks is not None else self._degrade(raw.alpha, np.random.default_rng(c))
            target = self.targets(raw, teacher_masks)
        else:
            target = raw.alpha
        frames = torch.from_numpy(np.ascontiguousarray(raw.frames[sl])).permute(0, 3, 1, 2).float() / 255.0
        T, _, H, W = frames.shape
        if not np.isfinite(target[sl]).all():
            raise ValueError("target alpha contains NaN/inf")
        planes = [frames, torch.from_numpy(np.ascontiguousarray(target[sl], np.float32))[:, None],
                  torch.from_numpy(np.ascontiguousarray(gt_alpha[sl], np.float32))[:, None]]
        use_stored = raw.masks is not None and (not self.train or rng.random() < self.aug.p_stored_masks)
        if use_stored:
            planes.append(torch.from_numpy(np.ascontiguousarray(raw.masks[sl], np.float32))[:, None])
        elif self.degrade_ref_height:  # degrade on the source frame, then crop like the frames
            cfg = self.degrade.for_height(H, self.degrade_ref_height)
            src_masks = self._degrade(np.ascontiguousarray(gt_alpha[sl], np.float32), rng, cfg)
            planes.append(torch.from_numpy(src_masks)[:, None])
        pre_masks = use_stored or bool(self.degrade_ref_height)
        has_fgr = raw.fgr is not None
        if has_fgr:
            planes.append(torch.from_numpy(np.ascontiguousarray(raw.fgr[sl])).permute(0, 3, 1, 2).float() / 255.0)
        x = torch.cat(planes, dim=1)
        cw, ch = self.aug.crop_size
        if self.train:
            boxes = _crop_boxes(rng, T, H, W, self.aug)
            x = _resample(x, boxes, (ch, cw))
            if rng.random() < self.aug.p_flip:
                x = x.flip(-1)
        elif (H, W) != (ch, cw):
            x = F.interpolate(x, size=(ch, cw), mode="bilinear", align_corners=False)
        frames, target, gt = x[:, :3], x[:, 3:4].clamp(0, 1), x[:, 4:5].clamp(0, 1)
        k = 5
        if pre_masks:
            masks = (x[:, k:k + 1] > 0.5).float()
            k += 1
        else:
            masks = torch.from_numpy(self._degrade(gt[:, 0].numpy(), rng))[:, None]
        fgr = x[:, k:k + 3] if has_fgr else frames.clone()
        if self.train:
            both = _jitter(torch.cat([frames, fgr], 0), rng, self.aug.color_jitter)
            frames, fgr = both[:T], both[T:]
            valid = mask_validity(rng, T, self.aug)
        else:
            valid = np.ones(T, bool)
            valid[T // 2:] = False  # validation measures mask-free tracking on the second half
        return {"src": frames.contiguous(), "target": target.contiguous(), "mask": masks.contiguous(),
                "mask_valid": torch.from_numpy(valid), "fgr": fgr.contiguous(),
                "has_fgr": torch.tensor(has_fgr)}

    def _degrade(self, alpha: np.ndarray, rng: np.random.Generator, cfg=None) -> np.ndarray:
        from mamakit.degrade import degrade_masks

        return degrade_masks(alpha, rng, cfg or self.degrade).astype(np.float32)


def collate_skip(batch: list) -> dict[str, Any] | None:
    """Stack samples, dropping corrupt ones (``None``); ``skipped`` counts them."""
    good = [b for b in batch if b is not None]
    skipped = len(batch) - len(good)
    if not good:
        return {"skipped": torch.tensor(skipped), "empty": True}
    out = {k: torch.stack([b[k] for b in good]) for k in good[0]}
    out["skipped"] = torch.tensor(skipped)
    return out


# ---------------------------------------------------------------------------------------------
class StudentData(pl.LightningDataModule):
    """Clips of ``clip_frames`` frames for distillation (see the module docstring)."""

    def __init__(
        self,
        source: str = "auto",
        root: Optional[str] = None,
        synth_clips: int = 32,
        synth_frames: int = 8,
        synth_size: tuple[int, int] = (256, 256),
        synth_seed: int = 0,
        targets: str = "auto",
        teacher: Optional[str] = None,
        teacher_options: Optional[dict] = None,
        cache_dir: Optional[str] = None,
        clip_frames: int = 6,
        crop_size: tuple[int, int] = (192, 192),
        scale_range: tuple[float, float] = (0.5, 1.0),
        drift_px: float = 8.0,
        p_flip: float = 0.5,
        color_jitter: float = 0.15,
        p_mask_drop: float = 0.4,
        p_first_frame_only: float = 0.2,
        p_stored_masks: float = 0.5,
        degrade: Optional[dict] = None,
        degrade_ref_height: Optional[int] = None,
        samples_per_epoch: int = 256,
        batch_size: int = 4,
        num_workers: int = 0,
        val_source: str = "synth",
        val_root: Optional[str] = None,
        val_clips: int = 4,
        val_frames: int = 8,
        val_size: tuple[int, int] = (256, 256),
        val_seed: int = 100_000,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        if source not in SOURCES:
            raise ConfigError(f"data.source {source!r} is unknown: use one of {', '.join(SOURCES)}")
        if targets not in TARGETS:
            raise ConfigError(f"data.targets {targets!r} is unknown: use one of {', '.join(TARGETS)}")
        # auto: a dataset when data.root is given (its alpha are the targets), else synth clips
        # (labelled online by data.teacher when one is named, else their GT alpha)
        self.source = source if source != "auto" else ("dataset" if root else "synth")
        self.targets_kind = targets if targets != "auto" else (
            "teacher" if (self.source == "synth" and teacher) else "alpha")
        if self.targets_kind == "teacher" and not teacher:
            raise ConfigError("data.targets is 'teacher' but data.teacher is not set: name one (videomama, closed-form)")
        if self.source == "dataset" and not root:
            raise ConfigError("data.source is 'dataset' but data.root is not set: pass --data.root FOLDER")
        if clip_frames < 2:
            raise ConfigError(f"data.clip_frames must be >= 2 (temporal losses need pairs), got {clip_frames}")
        if batch_size < 1 or samples_per_epoch < 1:
            raise ConfigError("data.batch_size and data.samples_per_epoch must be >= 1")
        self.aug = AugmentConfig(tuple(crop_size), tuple(scale_range), drift_px, p_flip, color_jitter,
                                 p_mask_drop, p_first_frame_only, p_stored_masks)
        self.train_set: ClipWindows | None = None
        self.val_set: ClipWindows | None = None

    def _source(self, kind: str, root: str | None, clips: int, frames: int, size, seed: int) -> ClipSource:
        if kind == "dataset":
            if not root:
                raise ConfigError("a dataset source needs a folder: set data.root (or data.val_root)")
            return DatasetSource(root)
        return SynthSource(clips, frames, size, seed)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if self.train_set is None:
            src = self._source(self.source, hp.root, hp.synth_clips, hp.synth_frames, hp.synth_size, hp.synth_seed)
            what = f"dataset {hp.root}" if self.source == "dataset" else "the synth source"
            if len(src) == 0:
                raise ConfigError(f"{what} has no clips: nothing to train on (write clips with `mamakit synth` "
                                  "or `mamakit label` first)")
            if max(src.lengths) < hp.clip_frames:
                raise ConfigError(f"every clip in {what} is shorter than data.clip_frames={hp.clip_frames} "
                                  f"(longest has {max(src.lengths)} frames): lower --data.clip_frames")
            short = sum(n < hp.clip_frames for n in src.lengths)
            if short:
                log.warning("%d of %d clips are shorter than %d frames and are not used", short, len(src), hp.clip_frames)
            targets = (TeacherTargets(hp.teacher, hp.teacher_options, hp.cache_dir)
                       if self.targets_kind == "teacher" else None)
            self.targets = targets
            self.train_set = ClipWindows(src, hp.clip_frames, hp.samples_per_epoch, self.aug, hp.degrade, targets,
                                         hp.seed, train=True, degrade_ref_height=hp.degrade_ref_height)
            vsrc = self._source(hp.val_source, hp.val_root, hp.val_clips, hp.val_frames, hp.val_size, hp.val_seed)
            vframes = min(hp.val_frames, max(vsrc.lengths)) if len(vsrc) else 0
            if len(vsrc) == 0 or vframes < 2:
                raise ConfigError("the validation source has no clips of >= 2 frames: check data.val_*")
            vaug = dataclasses.replace(self.aug, crop_size=tuple(hp.val_size))
            n_val = len({c for c, n in enumerate(vsrc.lengths) if n >= vframes})
            # validation targets are the clips' own alpha (GT for synth)
            self.val_set = ClipWindows(vsrc, vframes, n_val, vaug, hp.degrade, None, hp.val_seed, train=False,
                                       degrade_ref_height=hp.degrade_ref_height)

    def set_epoch(self, epoch: int) -> None:
        if self.train_set is not None:
            self.train_set.epoch = int(epoch)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=False,
                          num_workers=self.hparams.num_workers, collate_fn=collate_skip, drop_last=False,
                          persistent_workers=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=1, shuffle=False, num_workers=0, collate_fn=collate_skip)
