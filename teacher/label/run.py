"""``label(...)``: the library entry point behind ``mamakit label``.

Everything that can be checked is checked before any work or any write (exit 2): the source
and masks, mask counts, the teacher's model folders, SAM2 availability, the output folder.
Then clips run through ``Trainer.predict`` with a prediction writer (one clip per batch; with
``devices``/``num_nodes``/``strategy`` Lightning's unrepeated distributed sampler gives every
clip to exactly one rank).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from mamakit.errors import ConfigError, WorkError
from mamakit.fsutil import check_writable_dir

log = logging.getLogger(__name__)


@dataclass
class LabelConfig:
    teacher: str
    source: str
    out: str
    masks: str | None = None
    prompts: list = field(default_factory=list)      # SAM2 prompts (see mamakit.teacher.sam2_masks.parse_prompt)
    prompt_frame: int = 0
    sam2_checkpoint: str | None = None
    sam2_config: str | None = None
    sam2_image_size: int = 512
    sam2_random_weights: bool = False
    base_model: str | None = None
    unet: str | None = None
    unet_config: str | None = None
    teacher_options: dict = field(default_factory=dict)
    min_quality: float | None = None
    alpha_bits: int = 8
    frame_format: str = "png"
    devices: str | int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "auto"
    progress: bool = True
    threads: int | None = None


def _key(cfg: LabelConfig, teacher) -> str:
    blob = json.dumps({"source": str(Path(cfg.source).resolve()),
                       "masks": str(Path(cfg.masks).resolve()) if cfg.masks else None,
                       "prompts": [str(p) for p in cfg.prompts], "prompt_frame": cfg.prompt_frame,
                       "teacher": teacher.describe(), "alpha_bits": cfg.alpha_bits}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_label_teacher(cfg: LabelConfig):
    from mamakit.teacher.registry import TEACHERS, build_teacher

    if cfg.teacher not in TEACHERS:
        raise ConfigError(f"unknown teacher {cfg.teacher!r}: choose one of {', '.join(TEACHERS)}")
    if cfg.teacher == "videomama":
        from mamakit.teacher.videomama.loading import resolve_paths

        resolve_paths(cfg.base_model, cfg.unet, cfg.unet_config)  # layout errors before loading anything
        return build_teacher("videomama", base_model=cfg.base_model, unet=cfg.unet, unet_config=cfg.unet_config,
                             **cfg.teacher_options)
    return build_teacher(cfg.teacher, **cfg.teacher_options)


def _clean_stale_tmp(out: Path) -> None:
    """Remove temporary clip folders left by killed runs on this machine (their pid is gone)."""
    for d in [*(out / "clips").glob(".tmp-*"), *out.glob(".tmp-alpha-*")]:
        try:
            pid = int(d.name.rsplit("-", 1)[-1])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
            alive = pid != os.getpid() and True
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            shutil.rmtree(d, ignore_errors=True)


def _require_installed(modules: list[str]) -> None:
    """The teacher extra is installed (found, not imported: importing Lightning takes seconds)."""
    import importlib.util

    from mamakit.errors import DependencyError

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise DependencyError(f"{', '.join(missing)} not installed for mamakit label: install them with "
                              f"`pip install \"mamakit[teacher]\"`")


def _check_output(out: Path) -> None:
    """The output folder can be created/written: probed with a real temporary file (root ignores modes)."""
    import tempfile

    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} is a file: pass a folder")
    if not out.exists() and out.parent.exists() and not out.parent.is_dir():
        raise ConfigError(f"output {out} cannot be created: {out.parent} is a file; choose another folder")
    check_writable_dir(out, "output")
    where = out if out.exists() else out.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".mamakit-probe-", dir=where)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"output path {out} is not writable ({exc.strerror}): choose a folder you can write to") \
            from None


def label(cfg: LabelConfig) -> dict:
    from mamakit.teacher.label.clips import check_job, discover
    from mamakit.teacher.sam2_masks import MaskProvider

    t_start = time.monotonic()
    if cfg.min_quality is not None and not 0.0 <= cfg.min_quality <= 1.0:
        raise ConfigError(f"--min-quality must be in [0, 1], got {cfg.min_quality}")
    if cfg.alpha_bits not in (8, 16):
        raise ConfigError(f"--alpha-bits must be 8 or 16, got {cfg.alpha_bits}")
    out = Path(cfg.out)
    _check_output(out)
    if cfg.prompts and cfg.masks:
        raise ConfigError("pass either --masks or --prompt, not both")

    _require_installed(["torch", "pytorch_lightning"] + (["pymatting"] if cfg.teacher == "closed-form" else []))
    mode, jobs = discover(cfg.source, cfg.masks)
    if cfg.prompts:
        from dataclasses import replace

        jobs = [replace(j, masks=None) for j in jobs]
    infos = {j.clip_id: check_job(j, cfg.prompts) for j in jobs}
    masks = MaskProvider.create(cfg, infos)   # SAM2 checks (dependency, checkpoint/config) happen here
    if cfg.threads is not None:
        if cfg.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {cfg.threads}")
        import torch

        torch.set_num_threads(cfg.threads)
    teacher = build_label_teacher(cfg)

    from mamakit.teacher.label.writer import DatasetLabelWriter, SingleClipWriter, rejected_ids

    skipped: list[str] = []
    if mode == "single":
        key = _key(cfg, teacher)
        qpath = out / "quality.json"
        if qpath.is_file() and (out / "alpha").is_dir():
            try:
                prev = json.loads(qpath.read_text())
            except (OSError, ValueError):
                prev = {}
            if prev.get("key") == key:
                skipped = [jobs[0].clip_id]
                jobs = []
        writer = SingleClipWriter(out, teacher, min_quality=cfg.min_quality, alpha_bits=cfg.alpha_bits,
                                  total=len(jobs), progress=cfg.progress)
        writer.key = key
        if out.exists():
            _clean_stale_tmp(out)
    else:
        writer = DatasetLabelWriter(out, teacher, min_quality=cfg.min_quality, alpha_bits=cfg.alpha_bits,
                                    frame_format=cfg.frame_format, total=0, progress=cfg.progress)
        done = writer.dataset.done | rejected_ids(out)
        skipped = [j.clip_id for j in jobs if j.clip_id in done]
        jobs = [j for j in jobs if j.clip_id not in done]
        writer.progress.total = len(jobs)
        if out.exists():
            _clean_stale_tmp(out)
    if skipped:
        log.info("%d clip(s) already done, skipped (resume)", len(skipped))

    results: list[dict] = []
    frames = 0
    if jobs:
        results, frames = _predict(cfg, teacher, masks, jobs, writer)
    seconds = time.monotonic() - t_start
    summary = _summary(mode, out, teacher, results, skipped, frames, seconds)
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        summary["error"] = WorkError(
            f"{len(failed)} of {len(results)} clip(s) failed (first: {failed[0]['id']}: {failed[0]['error']}); "
            f"the other clips are written; rerun the same command to retry the failed ones")
    return summary


def _predict(cfg: LabelConfig, teacher, masks, jobs, writer):
    import pytorch_lightning as pl
    import torch

    from mamakit.teacher.label.system import ClipJobs, LabelSystem, first_item

    import warnings

    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    for name in ("lightning.pytorch", "pytorch_lightning", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    accelerator = cfg.accelerator
    if accelerator == "auto":
        dev = str(getattr(teacher, "device", "cpu"))
        accelerator = "gpu" if dev.startswith("cuda") else "cpu"
    trainer = pl.Trainer(accelerator=accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
                         strategy=cfg.strategy, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[writer])
    loader = torch.utils.data.DataLoader(ClipJobs(jobs), batch_size=1, shuffle=False, num_workers=0,
                                         collate_fn=first_item)
    system = LabelSystem(teacher, masks)
    with torch.inference_mode():
        trainer.predict(system, dataloaders=loader, return_predictions=False)
    return writer.results, writer.frames


def _summary(mode, out, teacher, results, skipped, frames, seconds) -> dict:
    status = {}
    for r in results:
        status[r["status"]] = status.get(r["status"], 0) + 1
    scores = [r["quality"]["score"] for r in results if r.get("quality")]
    return {
        "mode": mode, "out": str(out), "teacher": f"{teacher.name}@{teacher.version}",
        "clips": len(results) + len(skipped), "labelled": status.get("done", 0), "skipped": len(skipped),
        "rejected": status.get("rejected", 0) + status.get("below-min-quality", 0), "failed": status.get("failed", 0),
        "frames": frames, "seconds": round(seconds, 2),
        "frames_per_s": round(frames / seconds, 3) if seconds > 0 else None,
        "mean_score": round(sum(scores) / len(scores), 4) if scores else None,
        "results": results,
    }
