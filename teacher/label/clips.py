"""What to label: one clip, or many (folder of videos / frame folders, a dataset, a list file).

A :class:`ClipJob` names a clip's frames (video file or frame folder) and its mask guidance
(mask folder, first-frame mask file, or SAM2 prompts). Frames are read lazily, one at a time.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from mamakit.errors import ConfigError, StreamError, VideoIOError
from mamakit.io import IMAGE_EXTS, VIDEO_EXTS, list_images, natural_key, open_masks, open_source, read_image

log = logging.getLogger(__name__)

LIST_EXTS = (".txt", ".lst", ".list")


@dataclass(frozen=True)
class ClipJob:
    clip_id: str
    source: str                 # a video file or a folder of frames
    masks: str | None = None    # a mask folder, or one first-frame mask file (SAM2 propagation)
    dataset_clip: bool = False  # frames/masks come from a mamakit dataset clip

    @property
    def is_video(self) -> bool:
        return Path(self.source).is_file()


def _safe_id(name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or "clip"
    if not base[0].isalnum():
        base = "c" + base
    base = base[:120]
    cid, k = base, 1
    while cid in used:
        k += 1
        cid = f"{base}-{k}"
    used.add(cid)
    return cid


def _is_frame_folder(p: Path) -> bool:
    if p.is_dir() and any(c.suffix.lower() in VIDEO_EXTS for c in p.iterdir()):
        return False
    return p.is_dir() and any(c.suffix.lower() in IMAGE_EXTS and c.is_file() and not c.name.startswith(".")
                              for c in p.iterdir())


def _clip_masks(masks_root: Path | None, stem: str) -> str | None:
    if masks_root is None:
        return None
    if (masks_root / stem).is_dir():
        return str(masks_root / stem)
    for ext in IMAGE_EXTS:
        if (masks_root / f"{stem}{ext}").is_file():
            return str(masks_root / f"{stem}{ext}")
        if (masks_root / f"{stem}_first_mask{ext}").is_file():
            return str(masks_root / f"{stem}_first_mask{ext}")
    return None


def discover(source: str, masks: str | None = None) -> tuple[str, list[ClipJob]]:
    """Return ``("single", [job])`` or ``("many", jobs)`` for a ``--source``/``--masks`` pair."""
    src = Path(source)
    if not src.exists():
        raise VideoIOError(f"source {src} does not exist: pass a video, a frame folder, a folder of clips, "
                           "a dataset or a text file listing clips")
    mroot = Path(masks) if masks else None
    if mroot is not None and not mroot.exists():
        raise VideoIOError(f"mask path {mroot} does not exist: pass a mask folder or a first-frame mask file")
    used: set[str] = set()
    if src.is_file():
        if src.suffix.lower() in LIST_EXTS:
            return "many", _from_list(src, used)
        if src.suffix.lower() in VIDEO_EXTS:
            return "single", [ClipJob(_safe_id(src.stem, used), str(src), masks)]
        raise VideoIOError(f"source {src} is neither a video ({', '.join(VIDEO_EXTS[:5])}, ...) nor a clip list "
                           f"({', '.join(LIST_EXTS)})")
    if _is_frame_folder(src):
        return "single", [ClipJob(_safe_id(src.name, used), str(src), masks)]
    if (src / "manifest.jsonl").is_file():
        from mamakit.dataset import Dataset

        jobs = []
        for clip in Dataset(src, validate_files=False):
            folder = clip.root if hasattr(clip, "root") else src / "clips" / clip.id
            m = folder / "masks"
            if mroot is not None:
                m = Path(_clip_masks(mroot, clip.id) or m)
            jobs.append(ClipJob(_safe_id(clip.id, used), str(folder / "frames"),
                                str(m) if m.exists() else None, dataset_clip=True))
        if not jobs:
            raise VideoIOError(f"dataset {src} lists no clips")
        return "many", jobs
    jobs = []
    for p in sorted(src.iterdir(), key=lambda q: natural_key(q.name)):
        if p.name.startswith("."):
            continue
        if (p.is_file() and p.suffix.lower() in VIDEO_EXTS) or _is_frame_folder(p):
            stem = p.stem if p.is_file() else p.name
            m = _clip_masks(mroot, stem) if mroot is not None else (_clip_masks(src, stem) if p.is_file() else None)
            jobs.append(ClipJob(_safe_id(stem, used), str(p), m))
    if not jobs:
        raise VideoIOError(f"source folder {src} holds no frames, videos, frame folders or dataset manifest")
    return "many", jobs


def _from_list(path: Path, used: set[str]) -> list[ClipJob]:
    """Each non-empty, non-# line: ``SOURCE [MASKS]`` (tab- or space-separated, relative to the file)."""
    jobs = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) > 2:
            raise ConfigError(f"{path}:{i}: expected 'SOURCE [MASKS]', got {line!r}")
        s = Path(parts[0]) if Path(parts[0]).is_absolute() else path.parent / parts[0]
        m = None
        if len(parts) == 2:
            m = str(Path(parts[1]) if Path(parts[1]).is_absolute() else path.parent / parts[1])
        if not s.exists():
            raise VideoIOError(f"{path}:{i}: clip {s} does not exist")
        jobs.append(ClipJob(_safe_id(s.stem if s.is_file() else s.name, used), str(s), m))
    if not jobs:
        raise VideoIOError(f"clip list {path} names no clips")
    return jobs


# -- reading one clip --------------------------------------------------------------------------------
def frame_names(job: ClipJob) -> tuple[list[str] | None, int | None, tuple[int, int] | None]:
    """(names, count, first size) without decoding more than the first frame."""
    if job.is_video:
        with open_source(job.source) as src:
            return None, src.count, tuple(src.size)
    paths = list_images(job.source, what="frame folder")
    first = read_image(paths[0])
    return [p.stem for p in paths], len(paths), (first.shape[1], first.shape[0])


def iter_frames(job: ClipJob) -> Iterator[tuple[str, np.ndarray]]:
    """(name, uint8 RGB) per frame, lazily. A folder's frames may change size mid-clip."""
    if job.is_video:
        with open_source(job.source) as src:
            for fr in src:
                yield fr.name, fr.image
        return
    for p in list_images(job.source, what="frame folder"):
        try:
            img = read_image(p)
        except VideoIOError as exc:
            raise StreamError(f"clip {job.clip_id}: frame {p.name} cannot be decoded ({exc})") from exc
        yield p.stem, img


def check_job(job: ClipJob, prompts: list | None = None) -> dict:
    """Everything that can be checked before work starts (exit 2 on failure)."""
    names, count, size = frame_names(job)
    info = {"names": names, "count": count, "size": size, "first_frame_mask": False}
    if job.masks is None:
        if not prompts:
            raise ConfigError(f"clip {job.clip_id} has no masks: pass --masks (a mask folder or a first-frame mask) "
                              "or --prompt for SAM2")
        info["first_frame_mask"] = True
        return info
    ms = open_masks(job.masks, frame_names=names)
    if ms.first_frame_only:
        info["first_frame_mask"] = True
        return info
    problem = ms.mismatch(count)
    if problem:
        raise ConfigError(f"clip {job.clip_id}: {problem}")
    return info
