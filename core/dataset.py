"""The dataset format shared by ``mamakit synth``, ``mamakit label`` and training (see docs/dataset.md).

::

    ROOT/
      manifest.jsonl              one JSON line per *finished* clip, appended atomically
      clips/<clip_id>/
        meta.json                 source, fps, size, frames, alpha origin, quality scores
        frames/<name>.png|.jpg    RGB frames
        alpha/<name>.png          alpha (8- or 16-bit gray)
        masks/<name>.png          coarse masks (optional)
        fgr/<name>.png|.jpg       foreground colour (optional)

A clip is written into ``clips/.tmp-<clip_id>-<pid>/`` and renamed to ``clips/<clip_id>/`` when
complete; only then is its manifest line appended (one ``write`` of the whole line on an
``O_APPEND`` descriptor, then ``fsync``). A reader ignores a torn last line, and a writer cuts
it off before appending. Clip ids and paths read from a manifest are validated: no absolute
paths, no ``..``, nothing that resolves outside ``ROOT``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from mamakit._version import __version__
from mamakit.errors import ConfigError, VideoIOError
from mamakit.fsutil import write_json_atomic
from mamakit.io.images import (
    alpha_to_array,
    encode_png,
    natural_key,
    read_alpha,
    read_image,
    write_image,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
META = "meta.json"
FORMAT_VERSION = 1
KINDS = ("frames", "alpha", "masks", "fgr")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_clip_id(clip_id: str) -> str:
    """A clip id is a plain name: letters, digits, ``._-``, at most 128 chars, no ``..``."""
    if not isinstance(clip_id, str) or not _ID_RE.match(clip_id) or ".." in clip_id:
        raise ConfigError(f"invalid clip id {clip_id!r}: use letters, digits, '.', '_' and '-' only "
                          "(no path separators, no '..')")
    return clip_id


def validate_rel_path(root: Path, rel: str, what: str = "path") -> Path:
    """Resolve a manifest path relative to ``root``; reject absolute paths, ``..`` and escapes."""
    if not isinstance(rel, str) or not rel:
        raise ConfigError(f"manifest {what} {rel!r} is not a relative path: the manifest is damaged")
    p = Path(rel)
    if p.is_absolute() or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
        raise ConfigError(f"manifest {what} {rel!r} is an absolute path: dataset paths must be relative to "
                          f"{root} (the manifest is damaged or malicious)")
    if any(part == ".." for part in re.split(r"[\\/]", rel)):
        raise ConfigError(f"manifest {what} {rel!r} contains '..': dataset paths must stay inside {root} "
                          "(the manifest is damaged or malicious)")
    full = (root / p).resolve()
    if not full.is_relative_to(root.resolve()):
        raise ConfigError(f"manifest {what} {rel!r} resolves outside {root}: refusing to follow it")
    return full


def read_manifest(path: Path) -> list[dict]:
    """Parse ``manifest.jsonl``; a torn (unterminated or unparsable) *last* line is ignored."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise VideoIOError(f"manifest {path} cannot be read ({exc.strerror}): check its permissions") from exc
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    out = []
    for i, raw in enumerate(complete):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if i == len(complete) - 1 and not tail.strip():
                log.warning("ignoring a damaged last line in %s", path)
                continue
            raise ConfigError(f"manifest {path} line {i + 1} is not valid JSON: the dataset is damaged") from None
        if not isinstance(rec, dict):
            raise ConfigError(f"manifest {path} line {i + 1} is not a JSON object: the dataset is damaged")
        out.append(rec)
    if tail.strip():
        log.warning("ignoring a torn last line in %s (an interrupted append)", path)
    return out


# ------------------------------------------------------------------------------------------------
@dataclass
class Clip:
    """One clip of a :class:`Dataset`. File lists are aligned: ``alpha_paths[i]`` goes with
    ``frame_paths[i]``. Loaders return stacked arrays for the requested indices."""

    id: str
    root: Path
    meta: dict
    record: dict
    frame_paths: list[Path]
    alpha_paths: list[Path]
    mask_paths: list[Path] = field(default_factory=list)
    fgr_paths: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame_paths)

    @property
    def size(self) -> tuple[int, int]:
        w, h = self.meta.get("size") or self.record.get("size")
        return int(w), int(h)

    @property
    def fps(self) -> float | None:
        return self.meta.get("fps")

    @property
    def names(self) -> list[str]:
        return [p.stem for p in self.frame_paths]

    @property
    def has_masks(self) -> bool:
        return bool(self.mask_paths)

    @property
    def has_fgr(self) -> bool:
        return bool(self.fgr_paths)

    def _idx(self, indices) -> list[int]:
        if indices is None:
            return list(range(len(self)))
        if isinstance(indices, slice):
            return list(range(len(self)))[indices]
        return [int(i) for i in indices]

    def frames(self, indices: Sequence[int] | slice | None = None) -> np.ndarray:
        """``[T,H,W,3]`` uint8 RGB."""
        return np.stack([read_image(self.frame_paths[i]) for i in self._idx(indices)])

    def alpha(self, indices: Sequence[int] | slice | None = None) -> np.ndarray:
        """``[T,H,W]`` float32 0..1."""
        return np.stack([read_alpha(self.alpha_paths[i]) for i in self._idx(indices)])

    def masks(self, indices: Sequence[int] | slice | None = None) -> np.ndarray:
        """``[T,H,W]`` float32 0..1 (raises ConfigError when the clip has no masks)."""
        if not self.mask_paths:
            raise ConfigError(f"clip {self.id} has no masks")
        return np.stack([read_alpha(self.mask_paths[i]) for i in self._idx(indices)])

    def fgr(self, indices: Sequence[int] | slice | None = None) -> np.ndarray:
        """``[T,H,W,3]`` uint8 RGB foreground colour (raises ConfigError when absent)."""
        if not self.fgr_paths:
            raise ConfigError(f"clip {self.id} has no foreground colour (fgr/)")
        return np.stack([read_image(self.fgr_paths[i]) for i in self._idx(indices)])


def _list_kind(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


class Dataset:
    """Read a dataset folder: the clips listed in ``manifest.jsonl`` (finished clips only).

    ``len(ds)``, ``ds[i]`` / ``ds["clip_id"]`` -> :class:`Clip`, iteration, ``ds.ids``.
    Raises :class:`ConfigError` for a damaged or malicious manifest and :class:`VideoIOError`
    when the folder is missing or is not a dataset.
    """

    def __init__(self, root: str | os.PathLike, validate_files: bool = True) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise VideoIOError(f"dataset {self.root} does not exist: check the path")
        if not self.root.is_dir():
            raise VideoIOError(f"dataset {self.root} is a file, not a folder: pass the dataset folder")
        manifest = self.root / MANIFEST
        if not manifest.is_file():
            raise VideoIOError(f"{self.root} is not a mamakit dataset (no {MANIFEST}): pass a folder written by "
                               "`mamakit synth` or `mamakit label`")
        self.records = read_manifest(manifest)
        self._clips: dict[str, Clip] = {}
        self.ids: list[str] = []
        for rec in self.records:
            clip = self._load_clip(rec, validate_files)
            if clip.id in self._clips:
                log.warning("clip %s listed twice in %s; using the last entry", clip.id, manifest)
            else:
                self.ids.append(clip.id)
            self._clips[clip.id] = clip

    def _load_clip(self, rec: dict, validate_files: bool) -> Clip:
        clip_id = validate_clip_id(rec.get("id"))
        rel = rec.get("path", f"clips/{clip_id}")
        folder = validate_rel_path(self.root, rel, "clip path")
        meta = {}
        meta_path = folder / META
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"clip {clip_id}: {meta_path} is not valid JSON: the dataset is damaged") from exc
        elif validate_files:
            raise VideoIOError(f"clip {clip_id} is listed in the manifest but {folder} has no {META}: "
                               "the dataset is damaged (re-run the command that wrote it)")
        lists = {k: _list_kind(folder / k) for k in KINDS}
        for k, v in lists.items():
            for p in v:  # symlinks inside a clip must not lead outside the dataset either
                if p.is_symlink() and not p.resolve().is_relative_to(self.root.resolve()):
                    raise ConfigError(f"clip {clip_id}: {p.name} links outside the dataset: refusing to follow it")
        n = len(lists["frames"])
        if validate_files:
            if n == 0:
                raise VideoIOError(f"clip {clip_id} has no frames in {folder / 'frames'}: the dataset is damaged")
            for k in ("alpha", "masks", "fgr"):
                if lists[k] and len(lists[k]) != n:
                    raise VideoIOError(f"clip {clip_id} has {n} frames but {len(lists[k])} files in {k}/: "
                                       "the dataset is damaged")
            expected = rec.get("frames")
            if expected is not None and int(expected) != n:
                raise VideoIOError(f"clip {clip_id}: manifest says {expected} frames but {n} exist: the dataset is damaged")
        return Clip(clip_id, folder, meta, rec, lists["frames"], lists["alpha"], lists["masks"], lists["fgr"])

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Clip]:
        return (self._clips[i] for i in self.ids)

    def __getitem__(self, key: int | str) -> Clip:
        if isinstance(key, str):
            return self._clips[key]
        return self._clips[self.ids[key]]

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self._clips

    @property
    def total_frames(self) -> int:
        return sum(len(c) for c in self)


# ------------------------------------------------------------------------------------------------
class ClipWriter:
    """Writes one clip into a temporary folder; :meth:`finish` makes it visible atomically.

    ``add(frame, alpha, mask=None, fgr=None, name=None)`` appends one frame.
    """

    def __init__(self, dataset: "DatasetWriter", clip_id: str, *, source: str = "", fps: float | None = None,
                 alpha_origin: str = "gt", alpha_bits: int = 8, frame_format: str = "png",
                 extra: dict | None = None) -> None:
        self.ds = dataset
        self.id = validate_clip_id(clip_id)
        if frame_format not in ("png", "jpg"):
            raise ConfigError(f"frame format must be png or jpg, got {frame_format!r}")
        if alpha_bits not in (8, 16):
            raise ConfigError(f"alpha bits must be 8 or 16, got {alpha_bits}")
        if not (alpha_origin == "gt" or re.match(r"^teacher:[^@\s]+@\S+$", alpha_origin)):
            raise ConfigError(f"alpha origin must be 'gt' or 'teacher:<name>@<version>', got {alpha_origin!r}")
        self.meta: dict[str, Any] = {
            "id": self.id, "format_version": FORMAT_VERSION, "source": str(source), "fps": fps, "size": None,
            "frames": 0, "alpha": alpha_origin, "alpha_bits": alpha_bits, "frame_format": frame_format,
            "quality": {}, "created_by": f"mamakit {__version__}",
        }
        if extra:
            self.meta.update(extra)
        self.quality: dict[str, Any] = self.meta["quality"]
        self.final = dataset.clips_dir / self.id
        self.tmp = dataset.clips_dir / f".tmp-{self.id}-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        for k in ("frames", "alpha"):
            (self.tmp / k).mkdir(parents=True)
        self.count = 0
        self._kinds = {"frames", "alpha"}
        self._done = False

    def add(self, frame: np.ndarray, alpha: np.ndarray, mask: np.ndarray | None = None,
            fgr: np.ndarray | None = None, name: str | None = None) -> None:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ConfigError(f"clip {self.id}: frames must be HxWx3 uint8 RGB, got {frame.shape} {frame.dtype}")
        h, w = frame.shape[:2]
        if self.meta["size"] is None:
            self.meta["size"] = [w, h]
        elif self.meta["size"] != [w, h]:
            raise ConfigError(f"clip {self.id}: frame {self.count} is {w}x{h}, earlier frames are "
                              f"{self.meta['size'][0]}x{self.meta['size'][1]}")
        a = alpha_to_array(alpha, self.meta["alpha_bits"])
        if a.shape != (h, w):
            raise ConfigError(f"clip {self.id}: alpha {a.shape[1]}x{a.shape[0]} does not match frame {w}x{h}")
        stem = name if name is not None else f"{self.count:05d}"
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", stem):
            raise ConfigError(f"clip {self.id}: invalid frame name {stem!r}")
        ext = self.meta["frame_format"]
        write_image(self.tmp / "frames" / f"{stem}.{ext}", frame)
        (self.tmp / "alpha" / f"{stem}.png").write_bytes(encode_png(a))
        if self.count == 0:
            if mask is not None:
                (self.tmp / "masks").mkdir()
                self._kinds.add("masks")
            if fgr is not None:
                (self.tmp / "fgr").mkdir()
                self._kinds.add("fgr")
        for kind, value in (("masks", mask), ("fgr", fgr)):
            if (value is not None) != (kind in self._kinds):
                raise ConfigError(f"clip {self.id}: give {kind} for every frame or for none")
        if mask is not None:
            m = alpha_to_array(mask, 8)
            if m.shape != (h, w):
                raise ConfigError(f"clip {self.id}: mask {m.shape[1]}x{m.shape[0]} does not match frame {w}x{h}")
            (self.tmp / "masks" / f"{stem}.png").write_bytes(encode_png(m))
        if fgr is not None:
            fgr = np.asarray(fgr)
            if fgr.shape != frame.shape or fgr.dtype != np.uint8:
                raise ConfigError(f"clip {self.id}: fgr must be uint8 {frame.shape}, got {fgr.shape} {fgr.dtype}")
            write_image(self.tmp / "fgr" / f"{stem}.{ext}", fgr)
        self.count += 1

    def finish(self) -> dict:
        """Write meta.json, rename the folder into place, append the manifest line."""
        if self._done:
            raise ConfigError(f"clip {self.id} is already finished")
        if self.count == 0:
            self.abort()
            raise ConfigError(f"clip {self.id} has no frames: nothing to write")
        self.meta["frames"] = self.count
        self.meta["has"] = sorted(self._kinds)
        write_json_atomic(self.tmp / META, self.meta)
        if self.final.exists():
            shutil.rmtree(self.final)  # an unlisted leftover (listed clips are refused in begin)
        os.replace(self.tmp, self.final)
        record = {"id": self.id, "path": f"clips/{self.id}", "frames": self.count, "size": self.meta["size"],
                  "fps": self.meta["fps"], "alpha": self.meta["alpha"], "has": self.meta["has"],
                  "quality": self.meta["quality"]}
        self.ds._append(record)
        self._done = True
        return record

    def abort(self) -> None:
        self._done = True
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._done:
            return
        if exc_type is None:
            self.finish()
        else:
            self.abort()


class DatasetWriter:
    """Create or extend a dataset folder. Clips already in the manifest are ``done`` (resume)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"dataset output {self.root} is a file, not a folder: choose a folder")
        if not self.root.exists():
            if not self.root.parent.is_dir():
                raise ConfigError(f"folder {self.root.parent} does not exist: create it first or choose another output")
            if not os.access(self.root.parent, os.W_OK):
                raise ConfigError(f"folder {self.root.parent} is not writable: choose another output")
        elif not (self.root / MANIFEST).exists() and any(p for p in self.root.iterdir() if not p.name.startswith(".")):
            if not (self.root / "clips").is_dir():
                raise ConfigError(f"{self.root} is a non-empty folder that is not a mamakit dataset: "
                                  "choose a new or empty folder")
        self.manifest = self.root / MANIFEST
        self.clips_dir = self.root / "clips"
        self.done: set[str] = set()
        if self.manifest.exists():
            # validates every id/path (refuses damaged or malicious manifests before any work)
            for rec in read_manifest(self.manifest):
                validate_clip_id(rec.get("id"))
                validate_rel_path(self.root, rec.get("path", f"clips/{rec.get('id')}"), "clip path")
                self.done.add(rec["id"])
        self._opened = False

    def _ensure(self) -> None:
        if not self._opened:
            self.clips_dir.mkdir(parents=True, exist_ok=True)
            self._repair_tail()
            self._opened = True

    def _repair_tail(self) -> None:
        """Cut off a torn last line so the next append starts on a fresh line."""
        if not self.manifest.exists():
            return
        data = self.manifest.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.manifest, "r+b") as f:
                f.truncate(keep)
            log.warning("removed a torn last line from %s", self.manifest)

    def _append(self, record: dict) -> None:
        line = (json.dumps(record, sort_keys=False, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.manifest, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):  # pragma: no cover - regular files write fully
                raise OSError(f"short write to {self.manifest}")
            os.fsync(fd)
        finally:
            os.close(fd)
        self.done.add(record["id"])

    def clip(self, clip_id: str, **meta) -> ClipWriter:
        """Start a clip (use as a context manager: finishes on success, discards on error).

        Keyword arguments: ``source``, ``fps``, ``alpha_origin`` (``"gt"`` or
        ``"teacher:<name>@<version>"``), ``alpha_bits``, ``frame_format``, ``extra`` (more meta).
        """
        validate_clip_id(clip_id)
        if clip_id in self.done:
            raise ConfigError(f"clip {clip_id} is already in {self.manifest}: choose another id or skip it")
        self._ensure()
        return ClipWriter(self, clip_id, **meta)

    def write_clip(self, clip_id: str, frames, alpha, masks=None, fgr=None, names=None, **meta) -> dict:
        """Write a whole clip from arrays (``[T,H,W,3]`` uint8, ``[T,H,W]`` float) in one call."""
        with self.clip(clip_id, **meta) as cw:
            for t in range(len(frames)):
                cw.add(frames[t], alpha[t], None if masks is None else masks[t],
                       None if fgr is None else fgr[t], None if names is None else names[t])
            return cw.finish()

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self.done

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            for p in self.clips_dir.glob(f".tmp-*-{os.getpid()}"):
                shutil.rmtree(p, ignore_errors=True)
