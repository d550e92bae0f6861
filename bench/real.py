#!/usr/bin/env python3
"""Real-footage agreement: the student on real videos of people, where no GT alpha exists.

    python bench/real.py STUDENT [STUDENT ...] [--ratios 0.125,0.2,0.4] [--set KEY=VALUE ...] [--frames 8] [--json out.json]

STUDENT: a checkpoint from ``mamakit distill`` or a student folder. ``../shared/data`` holds real
footage with segmentation masks but no alpha (its README: "measure people and video by agreement
with masks, temporal stability (flicker) and speed"); this bench does that, so choices such as the
deployment downsample ratio can be validated on real footage without touching the held-out
alphamatting images:

* ``videomama_example`` — 24 real frames with a SAM2 mask per frame (the mask guides every frame);
* ``matanyone0_p1``, ``matanyone1``, ``matanyone2`` — real clips of people with a first-frame mask
  only (the mask guides frame 0, the student's own alpha the rest, as the runtime does).

Every frame is resized to 1280x720 (the shipped bundle's processing size). Each source runs twice:
with the masks as given and with the masks through ``mamakit.degrade.degrade_masks`` (fixed seed),
as coarse as the student bench's. Metrics (people are opaque; the masks are good but not exact):

* ``hole %``  — share of the mask eroded by 15 px where alpha < 0.9 (the student punching holes
  into an opaque person; per frame where a mask exists, else frame 0);
* ``spill %`` — share of the area outside the mask dilated by 15 px where alpha > 0.1;
* ``flicker`` — mean |alpha_t - alpha_{t-1}| x1e3 over the whole frame (people move, so this is not
  zero for a perfect matte; compare students on the same clips).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SIZE = (1280, 720)


def _frames(spec: Path, frames: int) -> np.ndarray:
    """The first ``frames`` frames of a video or image folder (mamakit.io), resized to SIZE."""
    import cv2

    from mamakit.io import open_source

    out = []
    with open_source(spec) as src:
        for f in src:
            out.append(cv2.resize(f.image, SIZE, interpolation=cv2.INTER_AREA))
            if len(out) == frames:
                break
    return np.stack(out)


def sources(frames: int) -> list[dict]:
    """The real clips: name, frames [T,H,W,3] uint8 RGB, masks [T,H,W] float 0..1, per-frame masks?"""
    from mamakit.io import list_images, read_mask

    out = []
    ex = DATA / "videomama_example"
    clip = _frames(ex / "image" / "0000", frames)
    masks = [read_mask(p, SIZE) for p in list_images(ex / "mask" / "0000")[:len(clip)]]
    out.append({"name": "videomama_example", "frames": clip, "masks": np.stack(masks), "per_frame": True})
    firsts = [("matanyone0_p1", DATA / "matanyone_sample0" / "frames", DATA / "matanyone_sample0" / "masks" / "0000_person1.png")]
    firsts += [(f"matanyone{k}", DATA / "videos" / f"matanyone_sample{k}.mp4",
                DATA / "videos" / f"matanyone_sample{k}_first_mask.png") for k in (1, 2)]
    for name, spec, first in firsts:
        clip = _frames(spec, frames)
        m0 = read_mask(first, SIZE)
        out.append({"name": name, "frames": clip, "masks": np.repeat(m0[None], len(clip), 0), "per_frame": False})
    return out


def agreement(pha: np.ndarray, masks: np.ndarray, per_frame: bool) -> dict[str, float]:
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (31, 31))
    hole, spill = [], []
    for t in (range(len(pha)) if per_frame else [0]):
        m = (masks[t] > 0.5).astype(np.uint8)
        inner = cv2.erode(m, k).astype(bool)
        outer = ~cv2.dilate(m, k).astype(bool)
        hole.append(float((pha[t][inner] < 0.9).mean() * 100) if inner.any() else 0.0)
        spill.append(float((pha[t][outer] > 0.1).mean() * 100) if outer.any() else 0.0)
    flicker = [float(np.abs(pha[t] - pha[t - 1]).mean() * 1e3) for t in range(1, len(pha))]
    return {"hole_pct": float(np.mean(hole)), "spill_pct": float(np.mean(spill)),
            "flicker": float(np.mean(flicker)) if flicker else 0.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("students", nargs="+", help="checkpoints or student folders")
    ap.add_argument("--ratios", default="", help="comma-separated downsample ratios (default: each student's own)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="student_set",
                    help="a deployment setting of every student, as `mamakit export onnx --set` (e.g. refiner_smooth=1)")
    ap.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=str(ROOT / "bench" / "raw" / "real.json"))
    args = ap.parse_args(argv)

    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from student import run_student  # the student bench's streaming loop (mask or own-alpha guide)

    from mamakit.degrade import degrade_masks
    from mamakit.export.student import apply_student_settings
    from mamakit.student import load_student

    torch.set_num_threads(args.threads)
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is missing: this bench needs ../shared/data beside the project")
    clips = sources(args.frames)
    rows = []
    print(f"| student | ratio | guide | hole % | spill % | flicker ×1e3 |\n|---|---:|---|---:|---:|---:|")
    for path in args.students:
        base = load_student(path).eval()
        ratios = [float(r) for r in args.ratios.split(",")] if args.ratios else [base.config.downsample_ratio]
        apply_student_settings(base, args.student_set)
        for r in ratios:
            model = base.reconfigure(downsample_ratio=r)
            for guide in ("mask", "degraded"):
                per_clip = {}
                for i, c in enumerate(clips):
                    g = c["masks"] if guide == "mask" else degrade_masks(
                        c["masks"], np.random.default_rng([7, i])).astype(np.float32)
                    pha = run_student(model, c["frames"], g, first_frame_only=not c["per_frame"])
                    per_clip[c["name"]] = agreement(pha, c["masks"], c["per_frame"])
                mean = {k: float(np.mean([v[k] for v in per_clip.values()])) for k in ("hole_pct", "spill_pct", "flicker")}
                rows.append({"student": str(path), "ratio": r, "settings": list(args.student_set), "guide": guide, **mean,
                             "per_clip": per_clip})
                print(f"| {Path(path).name} | {r:g} | {guide} | {mean['hole_pct']:.2f} | {mean['spill_pct']:.2f} | "
                      f"{mean['flicker']:.2f} |", flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"size": list(SIZE), "frames": args.frames, "rows": rows}, indent=1))
    tmp.replace(out)
    print(f"(JSON: {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
