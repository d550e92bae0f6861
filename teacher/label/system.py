"""The Lightning side of labelling: clips as a predict dataset, the teacher as a ``LightningModule``.

``predict_step`` returns a :class:`ClipPrediction` whose ``items`` is a *lazy* stream of
``(name, frame, mask, alpha)``: the prediction writer pulls it frame by frame, so a clip of any
length is labelled with bounded memory (the teacher holds at most one window).
"""
from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pytorch_lightning as pl
import torch

from mamakit.teacher.label.clips import ClipJob, iter_frames

log = logging.getLogger(__name__)


@dataclass
class ClipPrediction:
    job: ClipJob
    items: Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]
    info: dict = field(default_factory=dict)


class ClipJobs(torch.utils.data.Dataset):
    def __init__(self, jobs: list[ClipJob]):
        self.jobs = list(jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> ClipJob:
        return self.jobs[i]


class JobRef:
    """A batch of one clip. A plain object (not a dataclass), so Lightning's device transfer leaves it alone."""

    __slots__ = ("job",)

    def __init__(self, job: ClipJob):
        self.job = job


def first_item(batch) -> JobRef:
    return JobRef(batch[0])


def folder_masks(job: ClipJob, names: list[str] | None):
    """A ``(index, name, (w, h)) -> mask`` function for a mask folder."""
    from mamakit.io import open_masks

    ms = open_masks(job.masks, frame_names=names)

    def get(i: int, name: str, size: tuple[int, int]) -> np.ndarray:
        m = ms.get(i, name, size)
        if m is None:
            from mamakit.errors import StreamError

            raise StreamError(f"clip {job.clip_id}: no mask for frame {i} ({name})")
        return m

    return get


class LabelSystem(pl.LightningModule):
    """Holds a teacher; ``predict_step(job)`` streams that clip through it."""

    def __init__(self, teacher, mask_provider: Callable[[ClipJob], Callable[[Iterator], Iterator]]):
        super().__init__()
        self.teacher = teacher
        self.mask_provider = mask_provider

    def on_predict_start(self) -> None:
        dev = self.trainer.strategy.root_device
        move = getattr(self.teacher, "to", None)
        if move is not None and getattr(self.teacher, "device", dev) != dev:
            move(dev)

    def predict_step(self, batch: JobRef, batch_idx: int = 0) -> ClipPrediction:
        job = batch.job
        pending: collections.deque = collections.deque()
        with_masks = self.mask_provider(job)  # frames iterator -> (name, frame, mask) iterator

        def pairs():
            for name, frame, mask in with_masks(iter_frames(job)):
                pending.append((name, frame, mask))
                yield frame, mask

        def items():
            for alpha in self.teacher.stream(pairs()):
                name, frame, mask = pending.popleft()
                yield name, frame, mask, alpha

        return ClipPrediction(job, items())
