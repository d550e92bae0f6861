"""Training clips for SAM2-Matte: synthetic moving objects (exact alpha) or the project's
dataset format (teacher pseudo-labels + GT composites), as ``frames [T,3,S,S]`` + ``alpha [T,S,S]``.

Synthetic clips come from :func:`mamakit.synth.make_clip`; :func:`exit_and_return` re-composites
a clip's foreground along a path that leaves the frame and comes back, so the occlusion score
learns "absent" and tracking learns to resume.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from mamakit.errors import ConfigError

log = logging.getLogger(__name__)


def exit_and_return(frames: np.ndarray, alpha: np.ndarray, fgr: np.ndarray, bg: np.ndarray,
                    rng: np.random.Generator, start: int | None = None, length: int | None = None,
                    profile: np.ndarray | None = None):
    """Shift the foreground out of the frame (to a random side) over ``length`` frames from
    ``start`` and back again; returns new (frames, alpha). ``bg`` is [T,H,W,3] or [H,W,3].
    ``profile`` (per frame of the window, 0..1 of the way out) replaces the default out-pause-back
    ramp (which leaves the object fully out of view on at most a frame or two)."""
    t, h, w = alpha.shape
    start = int(rng.integers(1, max(2, t // 3))) if start is None else start
    length = int(rng.integers(max(4, t // 3), max(5, t - start))) if length is None else length
    if profile is not None:
        length = len(profile)
    side = rng.integers(4)
    ys, xs = np.nonzero(alpha[start] > 0.05)
    if len(xs) == 0:
        return frames, alpha
    # distance that moves the object fully out of view
    far = {0: w - xs.min() + 2, 1: -(xs.max() + 2), 2: h - ys.min() + 2, 3: -(ys.max() + 2)}[int(side)]
    out_f, out_a = frames.copy(), alpha.copy()
    bgs = bg if bg.ndim == 4 else np.broadcast_to(bg, frames.shape)
    for i in range(start, min(t, start + length)):
        if profile is not None:
            s = far * float(profile[i - start])
        else:
            ph = (i - start) / max(1, length - 1)
            s = far * min(1.0, 2.2 * min(ph, 1 - ph))  # out, a pause outside, back
        dx, dy = (s, 0.0) if side < 2 else (0.0, s)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        a = cv2.warpAffine(alpha[i], m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        f = cv2.warpAffine(fgr[i].astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        comp = a[..., None] * f + (1 - a[..., None]) * bgs[i].astype(np.float32)
        out_f[i] = np.clip(comp + 0.5, 0, 255).astype(np.uint8)
        out_a[i] = a
    return out_f, out_a


def leave_profile(t: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """(start, profile) for a training clip of ``t`` frames: one frame half out, 1..t/3 frames fully
    out of view, then back in over one or two frames (so short clips really contain "absent")."""
    n_out = int(rng.integers(1, max(2, t // 3 + 1)))
    back = [0.5] if rng.random() < 0.5 else [0.6, 0.25]
    prof = np.array([0.5] + [1.0] * n_out + back, np.float32)
    prof = prof[: t - 1]
    start = int(rng.integers(1, max(2, t - len(prof) + 1)))
    return start, prof[: t - start]


def add_distractors(frames: np.ndarray, alpha: np.ndarray, rng: np.random.Generator, n: int = 1,
                    synth: dict | None = None):
    """Composite ``n`` more moving objects (other synthetic clips' foregrounds, scaled 0.7-1.0 and
    shifted off-centre, so they are similar in size) over a clip and pick one object as the
    target: the original (now partly covered) or one of the distractors. The prompt then has to
    say which object is meant. Returns (frames, alpha of the target's visible part)."""
    from mamakit.synth import SynthConfig, make_clip

    t, h, w = alpha.shape
    layers = [alpha.astype(np.float32)]
    comp = frames.astype(np.float32)
    for _ in range(n):
        d = make_clip(rng, t, (w, h), cfg=SynthConfig(**(TINY_SYNTH if synth is None else synth)))
        sc = rng.uniform(0.7, 1.0)
        ang = rng.uniform(0, 2 * np.pi)
        r = rng.uniform(0.3, 0.5) * min(w, h)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, sc)
        m[:, 2] += (r * np.cos(ang), r * np.sin(ang))
        da = np.stack([cv2.warpAffine(a, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
                       for a in np.asarray(d.alpha, np.float32)])
        df = np.stack([cv2.warpAffine(f, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
                       for f in np.asarray(d.fgr)]).astype(np.float32)
        comp = da[..., None] * df + (1 - da[..., None]) * comp
        layers = [lay * (1 - da) for lay in layers] + [da]
    k = int(rng.integers(len(layers)))
    return np.clip(comp + 0.5, 0, 255).astype(np.uint8), layers[k]


#: ``mamakit.synth.SynthConfig`` fields of the tiny recipe (opaque objects: "alpha > 0.5" is the object)
TINY_SYNTH = {"p_transparent": 0.0}


def synthetic_clip(seed: int, frames: int, size: int, p_exit: float = 0.0, synth: dict | None = None,
                   p_distractor: float = 0.0, exit_profile: str = "ramp"):
    """One synthetic clip (uint8 frames [T,S,S,3], alpha [T,S,S] float32) from ``mamakit.synth``;
    ``synth`` overrides fields of its ``SynthConfig`` (default :data:`TINY_SYNTH`). With
    probability ``p_distractor`` one or two more objects are composited in and one of the objects
    is the target (:func:`add_distractors`; training only — evaluation clips have one object and
    draw nothing extra from the generator, so they are unchanged). ``exit_profile`` "leave": the
    exiting object is fully out of view for 1..T/3 frames (:func:`leave_profile`), "ramp": the
    original out-pause-back path of :func:`exit_and_return`."""
    from mamakit.synth import SynthConfig, make_clip

    rng = np.random.default_rng(seed)
    clip = make_clip(rng, frames, (size, size), cfg=SynthConfig(**(TINY_SYNTH if synth is None else synth)))
    f, a = np.asarray(clip.frames), np.asarray(clip.alpha, np.float32)
    if p_exit > 0 and rng.random() < p_exit and clip.fgr is not None and clip.bg is not None:
        if exit_profile == "leave":
            start, prof = leave_profile(frames, rng)
            f, a = exit_and_return(f, a, np.asarray(clip.fgr), np.asarray(clip.bg), rng, start=start, profile=prof)
        else:
            f, a = exit_and_return(f, a, np.asarray(clip.fgr), np.asarray(clip.bg), rng)
    if p_distractor > 0 and rng.random() < p_distractor:
        f, a = add_distractors(f, a, rng, n=1 + int(rng.random() < 0.3), synth=synth)
    return f, a


def to_tensors(frames: np.ndarray, alpha: np.ndarray, size: int) -> dict:
    t, h, w = alpha.shape
    if (h, w) != (size, size):
        frames = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
        alpha = np.stack([cv2.resize(a, (size, size), interpolation=cv2.INTER_LINEAR) for a in alpha])
    return {"frames": torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0,
            "alpha": torch.from_numpy(np.ascontiguousarray(alpha, np.float32)).clamp(0, 1)}


class SyntheticClips(Dataset):
    """``length`` synthetic clips; item i is clip ``seed + i`` (a fixed, reproducible set)."""

    def __init__(self, length: int, frames: int = 8, size: int = 256, seed: int = 0, p_exit: float = 0.0,
                 synth: dict | None = None, p_distractor: float = 0.0, exit_profile: str = "ramp"):
        self.length, self.frames, self.size, self.seed, self.p_exit = length, frames, size, seed, p_exit
        self.synth, self.p_distractor, self.exit_profile = synth, p_distractor, exit_profile

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        f, a = synthetic_clip(self.seed + i, self.frames, self.size, self.p_exit, self.synth, self.p_distractor,
                              self.exit_profile)
        return to_tensors(f, a, self.size)


class DatasetClips(Dataset):
    """Random T-frame windows from a dataset-format folder (``mamakit.dataset``), resized to S."""

    def __init__(self, root: str, frames: int = 8, size: int = 1024, samples_per_epoch: int = 10_000, seed: int = 0):
        from mamakit.dataset import Dataset as MKDataset

        self.ds = MKDataset(root)
        self.clips = [c for c in self.ds if len(c) >= frames]
        if not self.clips:
            raise ConfigError(f"dataset {root} has no clip with at least {frames} frames")
        self.frames, self.size, self.n, self.seed = frames, size, samples_per_epoch, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng((self.seed, i))
        clip = self.clips[int(rng.integers(len(self.clips)))]
        s = int(rng.integers(0, len(clip) - self.frames + 1))
        idx = list(range(s, s + self.frames))
        if rng.random() < 0.5:
            idx = idx[::-1]
        f, a = clip.frames(idx), clip.alpha(idx).astype(np.float32)
        if rng.random() < 0.5:
            f, a = f[:, :, ::-1], a[:, :, ::-1]
        return to_tensors(f, a, self.size)


class Sam2MatteData(pl.LightningDataModule):
    """``dataset`` (a dataset-format folder) or, when it is None, synthetic clips."""

    def __init__(self, dataset: str | None = None, frames: int = 8, size: int = 256, batch_size: int = 2,
                 train_clips: int = 4000, val_clips: int = 8, p_exit: float = 0.2, num_workers: int = 0,
                 seed: int = 0, val_seed: int = 1_000_000, synth: dict | None = None, p_distractor: float = 0.0,
                 exit_profile: str = "ramp"):
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if hp.dataset:
            if not Path(hp.dataset).is_dir():
                raise ConfigError(f"dataset folder {hp.dataset} does not exist")
            self.train_set = DatasetClips(hp.dataset, hp.frames, hp.size, hp.train_clips, hp.seed)
        else:
            self.train_set = SyntheticClips(hp.train_clips, hp.frames, hp.size, hp.seed, hp.p_exit, hp.synth,
                                            hp.p_distractor, hp.exit_profile)
        self.val_set = SyntheticClips(hp.val_clips, hp.frames, hp.size, hp.val_seed, 0.0, hp.synth)

    def train_dataloader(self):
        hp = self.hparams
        return DataLoader(self.train_set, batch_size=hp.batch_size, shuffle=True, num_workers=hp.num_workers,
                          drop_last=True, persistent_workers=hp.num_workers > 0)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=0)
