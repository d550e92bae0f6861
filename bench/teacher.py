#!/usr/bin/env python3
"""Teacher benchmark: speed, peak memory (flat in video length) and closed-form quality.

    python bench/teacher.py [--quick] [--json out.json]

1. **Speed and peak memory** of both teachers at 2–3 frame sizes: the tiny random-weight
   VideoMaMa (the real diffusers classes, processing size = frame size, CPU, fp32) and the
   closed-form CPU teacher (defaults). Frames/s over a clip of ``frames`` frames; peak memory =
   the measuring subprocess's max RSS (``ru_maxrss``), each measurement in a fresh process.
2. **Peak memory vs video length**: 100 vs 400 frames streamed through ``teacher.stream`` from a
   generator (never a whole-clip array), both teachers; must be flat.
3. **Closed-form quality** (evaluation only; nothing was tuned on these images): the
   alphamatting.com foregrounds with ground-truth alpha, foreground colour from pymatting's
   ``estimate_foreground_ml``, composited over backgrounds *panning* across the clip (photos
   shipped with scikit-image). Coarse masks from :func:`mamakit.degrade.degrade_masks` with a
   fixed seed per mode: ``8x`` / ``16x`` / ``32x`` (downsample), ``poly`` (polygon simplification), and ``mixed`` (one or two
   of {polygon, 8/16/32× downsample} per frame), each with a faulty frame (occlusion, empty,
   full, erosion, dilation) in half of the clips. MAD ×1e3 of the mask-as-is vs the teacher's
   alpha, averaged over frames; target: teacher ≤ 0.9 × mask.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("MAMAKIT_SHARED", HERE.parent.parent / "shared"))


# -- measurements in a fresh process ------------------------------------------------------------------
def _one(spec: dict) -> dict:
    """Run one speed/memory measurement in this (fresh) process."""
    import torch

    torch.set_num_threads(int(spec.get("threads", 1)))
    from mamakit.teacher import ClosedFormTeacher, VideoMaMaTeacher

    w, h = spec["size"]
    n = spec["frames"]
    if spec["teacher"] == "videomama-tiny":
        teacher = VideoMaMaTeacher.tiny(seed=0, processing_size=(w, h), device="cpu")
    else:
        teacher = ClosedFormTeacher()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]

    def pairs():
        for t in range(n):  # a moving disc over a shifting noise background, made on the fly
            frame = np.roll(base, t, axis=1)
            cx, cy = w * (0.4 + 0.2 * np.sin(t / 7)), h / 2
            m = (((xx - cx) ** 2 + (yy - cy) ** 2) < (0.25 * min(w, h)) ** 2).astype(np.float32)
            frame = np.where(m[..., None] > 0, 255 - frame, frame).astype(np.uint8)
            yield frame, m

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    count = 0
    for alpha in teacher.stream(pairs()):
        count += 1
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {**spec, "frames_per_s": round(count / dt, 3), "seconds": round(dt, 2),
            "peak_rss_mib": round(peak / 1024, 1), "rss_before_mib": round(rss0 / 1024, 1)}


def measure(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--_one", json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        return {**spec, "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- closed-form quality on alphamatting ----------------------------------------------------------------
def _backgrounds() -> list[np.ndarray]:
    from skimage import data as skd

    bgs = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry"):
        try:
            img = getattr(skd, name)()
        except Exception:  # noqa: BLE001 - a missing sample image just means fewer backgrounds
            continue
        if img.ndim == 3 and img.shape[2] == 3:
            bgs.append(img.astype(np.uint8))
    return bgs


def alphamatting_clips(n_images: int, frames: int, seed: int = 0):
    """(name, frames [T,H,W,3] uint8, gt alpha [T,H,W]) per image: static foreground, panning background."""
    import cv2
    from pymatting import estimate_foreground_ml

    from mamakit.io import read_alpha, read_image

    root = SHARED / "data" / "alphamatting"
    bgs = _backgrounds()
    rng = np.random.default_rng(seed)
    for i in range(1, n_images + 1):
        img = read_image(root / "input_training_lowres" / f"GT{i:02d}.png")
        gt = read_alpha(root / "gt_training_lowres" / f"GT{i:02d}.png")
        h, w = gt.shape
        fg = estimate_foreground_ml(img.astype(np.float64) / 255.0, gt.astype(np.float64))
        bg = bgs[int(rng.integers(len(bgs)))]
        big = cv2.resize(bg, (int(w * 1.5), int(h * 1.5)), interpolation=cv2.INTER_LINEAR)
        out = []
        for t in range(frames):  # the background pans diagonally under the object
            x0 = int(round((big.shape[1] - w) * t / max(1, frames - 1)))
            y0 = int(round((big.shape[0] - h) * t / max(1, frames - 1) * 0.5))
            b = big[y0:y0 + h, x0:x0 + w].astype(np.float64) / 255.0
            comp = gt[..., None] * fg + (1 - gt[..., None]) * b
            out.append(np.clip(comp * 255 + 0.5, 0, 255).astype(np.uint8))
        yield f"GT{i:02d}", np.stack(out), np.repeat(gt[None], frames, axis=0)


#: per-mode seed offsets (fixed, so a mode's masks do not depend on which other modes run)
MODE_SEEDS = {"8x": 0, "poly": 1, "mixed": 2, "16x": 3, "32x": 4}


def closed_form_quality(n_images: int, frames: int, modes: list[str], threads: int = 1) -> dict:
    from mamakit.degrade import DegradeConfig, degrade_masks
    from mamakit.teacher import build_teacher

    cfgs = {
        "8x": DegradeConfig(p_polygon=0.0, p_downsample=1.0, downsample_factors=(8,), p_two_ops=0.0, p_box=0.0),
        "poly": DegradeConfig(p_polygon=1.0, p_downsample=0.0, p_two_ops=0.0, p_box=0.0),
        "mixed": DegradeConfig(p_box=0.0),
        "16x": DegradeConfig(p_polygon=0.0, p_downsample=1.0, downsample_factors=(16,), p_two_ops=0.0, p_box=0.0),
        "32x": DegradeConfig(p_polygon=0.0, p_downsample=1.0, downsample_factors=(32,), p_two_ops=0.0, p_box=0.0),
    }
    unknown = sorted(set(modes) - set(cfgs))
    if unknown:
        raise SystemExit(f"unknown mask mode(s) {', '.join(unknown)}: use {', '.join(cfgs)}")
    teacher = build_teacher("closed-form")
    res = {m: {"mask": [], "teacher": [], "per_image": {}} for m in modes}
    t0 = time.perf_counter()
    n_frames = 0
    for k, (name, clip, gt) in enumerate(alphamatting_clips(n_images, frames)):
        for mode in modes:
            rng = np.random.default_rng(1000 * k + MODE_SEEDS[mode])  # same masks whichever modes run
            masks = degrade_masks(gt, rng, cfgs[mode])
            alpha = teacher(clip, masks).alpha
            mm = float(np.abs(masks - gt).mean() * 1e3)
            tm = float(np.abs(alpha - gt).mean() * 1e3)
            res[mode]["mask"].append(mm)
            res[mode]["teacher"].append(tm)
            res[mode]["per_image"][name] = [round(mm, 2), round(tm, 2)]
            n_frames += len(clip)
    dt = time.perf_counter() - t0
    out = {}
    for mode, r in res.items():
        mm, tm = float(np.mean(r["mask"])), float(np.mean(r["teacher"]))
        out[mode] = {"mask_mad": round(mm, 2), "teacher_mad": round(tm, 2), "ratio": round(tm / mm, 3),
                     "target_met": tm <= 0.9 * mm, "per_image": r["per_image"]}
    out["_timing"] = {"frames": n_frames, "seconds": round(dt, 1)}
    return out


def closed_form_quality_parallel(n_images: int, frames: int, modes: list[str], threads: int = 1) -> dict:
    """:func:`closed_form_quality` with the modes spread over the CPU's cores (one process per
    mode; quality only, so parallel runs do not skew anything; same masks as a serial run)."""
    from concurrent.futures import ProcessPoolExecutor

    workers = max(1, min(len(modes), os.cpu_count() or 1))
    if workers == 1:
        return closed_form_quality(n_images, frames, modes, threads)
    t0 = time.perf_counter()
    out: dict = {}
    n_frames = 0
    with ProcessPoolExecutor(workers) as pool:
        for part in pool.map(closed_form_quality, *zip(*[(n_images, frames, [m], threads) for m in modes])):
            n_frames += part.pop("_timing")["frames"]
            out.update(part)
    out["_timing"] = {"frames": n_frames, "seconds": round(time.perf_counter() - t0, 1), "processes": workers}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer sizes, frames and images")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-speed", action="store_true", help="only the closed-form quality table")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per measurement (default 1: on a shared, loaded CPU more threads "
                        "spin-wait and run far slower)")
    p.add_argument("--modes", help="comma-separated mask modes of the quality table (8x, 16x, 32x, poly, mixed; "
                   "default: 8x,16x,32x,poly with --quick, all five otherwise)")
    p.add_argument("--_one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._one:
        print(json.dumps(_one(json.loads(args._one))))
        return 0
    results: dict = {"quick": args.quick, "threads": args.threads, "cpus": os.cpu_count(),
                     "loadavg_start": list(os.getloadavg())}
    sizes = [(128, 64), (256, 128)] if args.quick else [(128, 64), (256, 128), (512, 256)]
    nframes = 8 if args.quick else 16
    speed = []
    for teacher in ([] if args.skip_speed else ["videomama-tiny", "closed-form"]):
        for size in sizes:
            speed.append(measure({"teacher": teacher, "size": list(size), "frames": nframes, "threads": args.threads}))
    results["speed"] = speed
    print(f"## Teacher speed and peak memory (this machine: {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}, torch threads {args.threads})\n")
    print("| teacher | size | frames | frames/s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for r in speed:
        print(f"| {r['teacher']} | {r['size'][0]}x{r['size'][1]} | {r['frames']} | {r.get('frames_per_s', r.get('error'))} "
              f"| {r.get('peak_rss_mib', '-')} |", flush=True)
    lengths = (100, 400)
    mem = []
    for teacher, size in (() if args.skip_speed else (("videomama-tiny", (64, 64)), ("closed-form", (128, 96)))):
        for n in lengths:
            mem.append(measure({"teacher": teacher, "size": list(size), "frames": n, "threads": args.threads}))
    results["memory_vs_length"] = mem
    print("\n## Peak memory vs video length (streamed)\n")
    print("| teacher | size | frames | peak RSS MiB | frames/s |")
    print("|---|---|---|---|---|")
    for r in mem:
        print(f"| {r['teacher']} | {r['size'][0]}x{r['size'][1]} | {r['frames']} | {r.get('peak_rss_mib', r.get('error'))} "
              f"| {r.get('frames_per_s', '-')} |")
    if not args.skip_quality and (SHARED / "data" / "alphamatting").is_dir():
        n_img, n_fr = (8, 4) if args.quick else (27, 6)
        modes = (args.modes.split(",") if args.modes else
                 ["8x", "16x", "32x", "poly"] if args.quick else ["8x", "16x", "32x", "poly", "mixed"])
        q = closed_form_quality_parallel(n_img, n_fr, modes, args.threads)
        results["closed_form_quality"] = {"images": n_img, "frames": n_fr, **q}
        print(f"\n## Closed-form teacher vs mask-as-is on alphamatting ({n_img} images x {n_fr} frames, "
              "panning backgrounds; MAD x1e3)\n")
        print("| masks | mask MAD | teacher MAD | ratio | target <= 0.9 |")
        print("|---|---|---|---|---|")
        for mode in modes:
            r = q[mode]
            print(f"| {mode} | {r['mask_mad']} | {r['teacher_mad']} | {r['ratio']} | {'yes' if r['target_met'] else 'NO'} |")
        print(f"\n({q['_timing']['frames']} frames in {q['_timing']['seconds']} s, "
              f"{q['_timing'].get('processes', 1)} processes)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
