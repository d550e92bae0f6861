"""Prediction writers: a single clip (``OUT/alpha/`` + ``OUT/quality.json``) or a dataset.

Both are resumable and idempotent. A clip is written under a temporary name and made visible
by one rename; the "done" record (``quality.json`` / the manifest line) is written last. A
failure inside one clip is logged, the clip is discarded (not marked done) and the run goes on.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from pytorch_lightning.callbacks import BasePredictionWriter

from mamakit.fsutil import write_json_atomic
from mamakit.teacher.label.quality import QualityAccumulator

log = logging.getLogger(__name__)

REJECTED = "rejected.jsonl"


def _fit(img: np.ndarray, size: tuple[int, int], interp) -> np.ndarray:
    import cv2

    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    return cv2.resize(img, tuple(size), interpolation=interp)


class Progress:
    """Clips/s and ETA, as a tqdm bar on a terminal and as log lines otherwise."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="clip", file=sys.stderr, dynamic_ncols=True)
        self.enabled = enabled

    def step(self, clip_id: str, frames: int, status: str) -> None:
        self.done += 1
        dt = max(1e-9, time.monotonic() - self.t0)
        rate = self.done / dt
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        if self.bar is not None:
            self.bar.set_postfix_str(f"{clip_id} {status}")
            self.bar.update(1)
        elif self.enabled:
            log.info("[%d/%d] %s: %s, %d frames | %.2f clips/s, ETA %.0fs", self.done, self.total, clip_id,
                     status, frames, rate, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Writer(BasePredictionWriter):
    def __init__(self, out: Path, teacher, *, min_quality: float | None, alpha_bits: int, total: int,
                 progress: bool = True):
        super().__init__(write_interval="batch")
        self.out = Path(out)
        self.teacher = teacher
        self.min_quality = min_quality
        self.alpha_bits = alpha_bits
        self.progress = Progress(total, progress)
        self.results: list[dict] = []   # one per clip handled by this rank
        self.frames = 0

    @property
    def origin(self) -> str:
        return f"teacher:{self.teacher.name}@{self.teacher.version}"

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        job = prediction.job
        t0 = time.monotonic()
        try:
            rec = self.write_clip(prediction)
        except Exception as exc:  # one clip fails; the run goes on (the clip is not marked done)
            if isinstance(exc, KeyboardInterrupt):
                raise
            msg = " ".join(str(exc).split()) or type(exc).__name__
            log.error("clip %s failed: %s", job.clip_id, msg)
            log.debug("clip %s failed", job.clip_id, exc_info=True)
            rec = {"id": job.clip_id, "status": "failed", "error": msg, "frames": 0}
        rec["seconds"] = round(time.monotonic() - t0, 3)
        self.results.append(rec)
        self.frames += rec.get("frames", 0)
        self.progress.step(job.clip_id, rec.get("frames", 0), rec["status"])

    def on_predict_end(self, trainer, pl_module):
        self.progress.close()

    def accepted(self, quality: dict) -> bool:
        return self.min_quality is None or quality["score"] >= self.min_quality


class SingleClipWriter(_Writer):
    """``OUT/alpha/<name>.png`` (+ ``OUT/quality.json``, written last = the clip is done)."""

    def write_clip(self, pred) -> dict:
        from mamakit.io import write_alpha_png

        job = pred.job
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / f".tmp-alpha-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        acc = QualityAccumulator()
        n = 0
        try:
            for name, frame, mask, alpha in pred.items:
                write_alpha_png(tmp / f"{name}.png", alpha, bits=self.alpha_bits)
                acc.update(alpha, mask)
                n += 1
            quality = acc.result()
            final = self.out / "alpha"
            if final.exists():  # a leftover from an earlier, different or interrupted run
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        status = "done" if self.accepted(quality) else "below-min-quality"
        record = {"id": job.clip_id, "source": job.source, "masks": job.masks, "frames": n, "alpha": self.origin,
                  "status": status, "accepted": status == "done", "min_quality": self.min_quality,
                  "quality": quality, "teacher": self.teacher.describe(), "key": self.key}
        write_json_atomic(self.out / "quality.json", record)
        if status != "done":
            log.warning("clip %s scored %.3f < --min-quality %.3f (kept, flagged in quality.json)", job.clip_id,
                        quality["score"], self.min_quality)
        if quality["empty_mask"]:
            log.warning("clip %s: every mask is empty, so the alpha is all zero (flagged in quality.json)",
                        job.clip_id)
        return {"id": job.clip_id, "status": status, "frames": n, "quality": quality}

    key: str = ""


class DatasetLabelWriter(_Writer):
    """Clips into a mamakit dataset (``mamakit.dataset.DatasetWriter``), one manifest line each."""

    def __init__(self, out: Path, teacher, *, frame_format: str = "png", **kw):
        super().__init__(out, teacher, **kw)
        from mamakit.dataset import DatasetWriter

        self.dataset = DatasetWriter(out)
        self.frame_format = frame_format

    def write_clip(self, pred) -> dict:
        import cv2

        job = pred.job
        fps = None
        if job.is_video:
            from mamakit.io import open_source

            with open_source(job.source) as src:
                fps = src.fps
        acc = QualityAccumulator()
        cw = self.dataset.clip(job.clip_id, source=job.source, fps=fps, alpha_origin=self.origin,
                               alpha_bits=self.alpha_bits, frame_format=self.frame_format,
                               extra={"teacher": self.teacher.describe(), "masks": job.masks})
        size = None
        try:
            for name, frame, mask, alpha in pred.items:
                acc.update(alpha, mask)
                if size is None:
                    size = (frame.shape[1], frame.shape[0])
                elif (frame.shape[1], frame.shape[0]) != size:
                    # the dataset format has one size per clip: later sizes are resized to the first
                    frame = _fit(frame, size, cv2.INTER_AREA)
                    alpha = _fit(alpha, size, cv2.INTER_LINEAR)
                    mask = _fit(mask, size, cv2.INTER_LINEAR)
                cw.add(frame, alpha, mask=_fit(mask, size, cv2.INTER_LINEAR), name=name)
            quality = acc.result()
            cw.quality.update(quality)
            if not self.accepted(quality):
                cw.abort()
                line = json.dumps({"id": job.clip_id, "source": job.source, "quality": quality,
                                   "min_quality": self.min_quality}) + "\n"
                fd = os.open(self.out / REJECTED, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, line.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
                return {"id": job.clip_id, "status": "rejected", "frames": acc.n, "quality": quality}
            cw.finish()
        except BaseException:
            cw.abort()
            raise
        return {"id": job.clip_id, "status": "done", "frames": acc.n, "quality": quality}


def rejected_ids(out: Path) -> set[str]:
    p = Path(out) / REJECTED
    ids = set()
    if p.is_file():
        for line in p.read_text().splitlines():
            try:
                ids.add(json.loads(line)["id"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line from a killed run
    return ids
